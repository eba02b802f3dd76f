/*
 * itab_locks.c — the lock and open-file part of the inode table: the ops
 * SETLK, LOCK_RENEW, RELEASE_NODE, OPEN and CLOSE (applied inside a txn of
 * itab_ops.c), what UNLINK, RENAME, CREATE and RELEASE_ORPHAN ask about
 * open records, and the local reads (F_GETLK, lease records).
 *
 * Keys (itab.h has the table):
 *   'K' ino kind node owner start -> end, type, pid, incarnation
 *   'O' ino node                  -> incarnation, open sequence
 *   'M' 'n' node                  -> gen, lease index, #locks, #open
 * The lock rules themselves are locktab.c. Everything here is a function
 * of the committed state and the op only.
 */
#include "fs/itab_internal.h"
#include "fs/locktab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LKEY_LEN (1 + 8 + 1 + 8 + 8 + 8)
#define LVAL_LEN (8 + 1 + 4 + 8)
#define OKEY_LEN (1 + 8 + 8)
#define OVAL_LEN 16
#define NREC_LEN 32

/* ---- encodings ------------------------------------------------------------ */

static size_t lkey(uint8_t *k, uint64_t ino, const struct itab_lock *l)
{
	k[0] = 'K';
	be_put64(k + 1, ino);
	k[9] = l->kind;
	be_put64(k + 10, l->node);
	be_put64(k + 18, l->owner);
	be_put64(k + 26, l->start);
	return LKEY_LEN;
}

/* Decode a 'K' record into *l (with its inode in *ino). 0 or -EIO. */
static int lrec_decode(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
		       uint64_t *ino, struct itab_lock *l)
{
	if (kl != LKEY_LEN || vl != LVAL_LEN)
		return -EIO;
	memset(l, 0, sizeof(*l));
	*ino = be_get64(k + 1);
	l->kind = k[9];
	l->node = be_get64(k + 10);
	l->owner = be_get64(k + 18);
	l->start = be_get64(k + 26);
	l->end = be_get64(v);
	l->type = v[8];
	l->pid = be_get32(v + 9);
	l->incarnation = be_get64(v + 13);
	return l->start <= l->end ? 0 : -EIO;
}

static void lrec_put(struct txn *tx, uint64_t ino, const struct itab_lock *l)
{
	uint8_t k[LKEY_LEN], v[LVAL_LEN];
	lkey(k, ino, l);
	be_put64(v, l->end);
	v[8] = l->type;
	be_put32(v + 9, l->pid);
	be_put64(v + 13, l->incarnation);
	leveldb_writebatch_put(tx->wb, (char *)k, LKEY_LEN, (char *)v, LVAL_LEN);
}

static void lrec_del(struct txn *tx, uint64_t ino, const struct itab_lock *l)
{
	uint8_t k[LKEY_LEN];
	lkey(k, ino, l);
	leveldb_writebatch_delete(tx->wb, (char *)k, LKEY_LEN);
}

static size_t okey(uint8_t *k, uint64_t ino, uint64_t node)
{
	k[0] = 'O';
	be_put64(k + 1, ino);
	be_put64(k + 9, node);
	return OKEY_LEN;
}

static void nrec_decode(uint64_t node, const uint8_t *v, struct itab_node_rec *r)
{
	r->node = node;
	r->gen = be_get64(v);
	r->lease_idx = be_get64(v + 8);
	r->nlocks = be_get64(v + 16);
	r->nopen = be_get64(v + 24);
}

/* Read node's lease record (zeroed if none). 0 or -EIO. */
static int nrec_read(struct itab *t, uint64_t node, struct itab_node_rec *r)
{
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	memset(r, 0, sizeof(*r));
	r->node = node;
	int rc = db_get(t, NULL, k, key_meta_u64(k, 'n', node), &v, &vl);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (vl == NREC_LEN)
		nrec_decode(node, (const uint8_t *)v, r);
	else
		rc = -EIO;
	leveldb_free(v);
	return rc;
}

/* The op's lease record (one node per op), loaded once. */
static int nrec_get(struct txn *tx, uint64_t node, struct itab_node_rec **out)
{
	*out = &tx->nrec;
	if (!tx->nrec_loaded || tx->nrec.node != node) {
		int rc = nrec_read(tx->t, node, &tx->nrec);
		if (rc)
			return txn_chk(tx, rc);
		tx->nrec_loaded = true;
	}
	return 0;
}

/* Write the op's lease record (deleted when it says nothing). */
static void nrec_put(struct txn *tx)
{
	const struct itab_node_rec *r = &tx->nrec;
	uint8_t k[KEY_MAX], v[NREC_LEN];
	size_t kl = key_meta_u64(k, 'n', r->node);
	if (!r->gen && !r->lease_idx && !r->nlocks && !r->nopen) {
		leveldb_writebatch_delete(tx->wb, (char *)k, kl);
		return;
	}
	be_put64(v, r->gen);
	be_put64(v + 8, r->lease_idx);
	be_put64(v + 16, r->nlocks);
	be_put64(v + 24, r->nopen);
	leveldb_writebatch_put(tx->wb, (char *)k, kl, (char *)v, NREC_LEN);
}

/* ---- lock vectors ------------------------------------------------------------ */

struct lvec {
	struct itab_lock *l;
	size_t n, cap;
	uint64_t *ino; /* with want_ino: the inode of each lock */
	bool want_ino;
	uint64_t node; /* filter: only this node's locks (0: all) */
};

static int lvec_push(struct lvec *v, uint64_t ino, const struct itab_lock *l)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 16;
		struct itab_lock *nl = realloc(v->l, cap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		v->l = nl;
		if (v->want_ino) {
			uint64_t *ni = realloc(v->ino, cap * sizeof(*ni));
			if (!ni)
				return -ENOMEM;
			v->ino = ni;
		}
		v->cap = cap;
	}
	if (v->want_ino)
		v->ino[v->n] = ino;
	v->l[v->n++] = *l;
	return 0;
}

static void lvec_free(struct lvec *v)
{
	free(v->l);
	free(v->ino);
}

/* Scan callback: collect 'K' records (of v->node if set). */
static int lvec_collect(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct lvec *lv = ctx;
	struct itab_lock l;
	uint64_t ino;
	if (lrec_decode(k, kl, v, vl, &ino, &l))
		return -EIO;
	if (lv->node && l.node != lv->node)
		return 0;
	return lvec_push(lv, ino, &l);
}

/* The locks of (ino, kind) in the committed state. */
static int load_locks(struct txn *tx, uint64_t ino, uint8_t kind, struct lvec *out)
{
	uint8_t p[10];
	p[0] = 'K';
	be_put64(p + 1, ino);
	p[9] = kind;
	int rc = itab_scan(tx->t, p, sizeof(p), NULL, 0, lvec_collect, out);
	return rc ? txn_chk(tx, rc < 0 ? rc : -EIO) : 0;
}

/* ---- ops ----------------------------------------------------------------------- */

/* The payload of a lock or open op; -EINVAL if missing or malformed. */
static int payload(struct txn *tx, struct itab_lock *lk)
{
	const struct itab_op *op = tx->op;
	return itab_lock_decode(op->value, op->value_len, lk);
}

/* SETLK: see itab.h (Locks). The origin is the lock's node; a granted
 * request (or unlock) renews the node's lease. */
int locks_op_setlk(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct itab_lock req, want, *res = NULL;
	struct inode *in;
	struct itab_node_rec *nr;
	struct lvec all = {0}, mine = {0};
	long n;
	int rc;
	if (op->origin == 0 || payload(tx, &req))
		return -EINVAL;
	if ((req.kind != ITAB_LK_POSIX && req.kind != ITAB_LK_FLOCK) ||
	    req.type > ITAB_LK_WRITE || req.start > req.end)
		return -EINVAL;
	if (req.kind == ITAB_LK_FLOCK)
		req.start = 0, req.end = ITAB_LK_EOF;
	req.node = op->origin;
	if ((rc = txn_get(tx, op->ino, &in)) || (rc = nrec_get(tx, op->origin, &nr)))
		return rc;
	if (req.gen != nr->gen)
		return -ESTALE; /* its locks were released since it last looked */
	if ((rc = load_locks(tx, op->ino, req.kind, &all)))
		goto out;
	for (size_t i = 0; i < all.n && rc == 0; i++)
		if (locktab_same_owner(&all.l[i], &req))
			rc = lvec_push(&mine, 0, &all.l[i]);
	if (rc) {
		rc = txn_chk(tx, rc);
		goto out;
	}
	want = req;
	if (locktab_conflict(all.l, all.n, &req) >= 0) {
		/* POSIX: refused, nothing changes. flock (as Linux): a
		 * conversion drops the old lock first, so a refused one
		 * leaves the owner without a lock. */
		if (req.kind != ITAB_LK_FLOCK || mine.n == 0) {
			rc = -EAGAIN;
			goto out;
		}
		want.type = ITAB_LK_UNLOCK;
		tx->soft_err = -EAGAIN;
	}
	if (!(res = malloc((mine.n + 2) * sizeof(*res)))) {
		rc = txn_chk(tx, -ENOMEM);
		goto out;
	}
	if ((n = locktab_apply(mine.l, mine.n, &want, res)) < 0) {
		rc = n == -EIO ? txn_chk(tx, -EIO) : (int)n;
		goto out;
	}
	for (size_t i = 0; i < mine.n; i++)
		lrec_del(tx, op->ino, &mine.l[i]);
	for (long i = 0; i < n; i++)
		lrec_put(tx, op->ino, &res[i]);
	nr->nlocks = nr->nlocks > mine.n ? nr->nlocks - mine.n : 0;
	nr->nlocks += (uint64_t)n;
	nr->lease_idx = tx->index;
	nrec_put(tx);
	tx->res->ino = op->ino;
out:
	free(res);
	lvec_free(&mine);
	lvec_free(&all);
	return rc;
}

/* LOCK_RENEW: the origin is alive and still holds generation gen. */
int locks_op_renew(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct itab_lock lk;
	struct itab_node_rec *nr;
	int rc;
	if (op->origin == 0 || payload(tx, &lk))
		return -EINVAL;
	if ((rc = nrec_get(tx, op->origin, &nr)))
		return rc;
	if (lk.gen != nr->gen)
		return -ESTALE;
	nr->lease_idx = tx->index;
	nrec_put(tx);
	return 0;
}

/* One 'O' record of a scan. */
struct orec {
	uint64_t ino, node, incarnation, seq;
};

struct ovec {
	struct orec *r;
	size_t n, cap;
};

/* Scan callback: collect 'O' records. */
static int ovec_collect(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct ovec *ov = ctx;
	if (kl != OKEY_LEN || vl != OVAL_LEN)
		return -EIO;
	if (ov->n == ov->cap) {
		size_t cap = ov->cap ? 2 * ov->cap : 16;
		struct orec *nr = realloc(ov->r, cap * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		ov->r = nr, ov->cap = cap;
	}
	ov->r[ov->n++] = (struct orec){be_get64(k + 1), be_get64(k + 9), be_get64(v),
				       be_get64(v + 8)};
	return 0;
}

/* Free inode ino (not in a txn slot) if it is an orphan (nlink 0). */
static int free_if_orphan(struct txn *tx, uint64_t ino)
{
	struct inode in;
	int rc = db_inode(tx->t, ino, &in);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return txn_chk(tx, rc);
	if (in.a.nlink != 0)
		return 0;
	if ((rc = txn_kill_inode(tx, &in)))
		return rc;
	uint8_t k[KEY_MAX];
	leveldb_writebatch_delete(tx->wb, (char *)k, key_ino(k, 'I', ino));
	return 0;
}

/* RELEASE_NODE: drop node's locks and/or open records of incarnations
 * other than lk.incarnation (0: all); with lk.since, only while the
 * node's lease index still equals it (-EAGAIN otherwise). Dropping locks
 * bumps the node's lease generation (res->ino). Orphans whose last open
 * record goes are freed. */
int locks_op_release_node(struct txn *tx)
{
	struct itab_lock lk;
	struct itab_node_rec *nr;
	int rc;
	if (payload(tx, &lk) || lk.node == 0 || lk.what == 0 ||
	    (lk.what & ~(ITAB_REL_LOCKS | ITAB_REL_OPENS)))
		return -EINVAL;
	if ((rc = nrec_get(tx, lk.node, &nr)))
		return rc;
	if (lk.since && nr->lease_idx != lk.since)
		return -EAGAIN; /* it renewed meanwhile */
	uint8_t p[1];
	if (lk.what & ITAB_REL_LOCKS) {
		struct lvec v = {.want_ino = true, .node = lk.node};
		p[0] = 'K';
		rc = itab_scan(tx->t, p, 1, NULL, 0, lvec_collect, &v);
		if (rc) {
			lvec_free(&v);
			return txn_chk(tx, rc < 0 ? rc : -EIO);
		}
		uint64_t dropped = 0;
		for (size_t i = 0; i < v.n; i++) {
			if (lk.incarnation && v.l[i].incarnation == lk.incarnation)
				continue;
			lrec_del(tx, v.ino[i], &v.l[i]);
			dropped++;
		}
		lvec_free(&v);
		nr->nlocks -= dropped < nr->nlocks ? dropped : nr->nlocks;
		nr->gen++;
	}
	if (lk.what & ITAB_REL_OPENS) {
		struct ovec v = {0};
		p[0] = 'O';
		rc = itab_scan(tx->t, p, 1, NULL, 0, ovec_collect, &v);
		if (rc) {
			free(v.r);
			return txn_chk(tx, rc < 0 ? rc : -EIO);
		}
		/* Records come sorted by inode: one group per inode. */
		for (size_t i = 0; i < v.n && rc == 0;) {
			size_t j = i, left = 0;
			bool dropped = false;
			for (; j < v.n && v.r[j].ino == v.r[i].ino; j++) {
				const struct orec *r = &v.r[j];
				if (r->node != lk.node ||
				    (lk.incarnation && r->incarnation == lk.incarnation)) {
					left++;
					continue;
				}
				uint8_t k[OKEY_LEN];
				okey(k, r->ino, r->node);
				leveldb_writebatch_delete(tx->wb, (char *)k, OKEY_LEN);
				if (nr->nopen)
					nr->nopen--;
				dropped = true;
			}
			if (dropped && left == 0)
				rc = free_if_orphan(tx, v.r[i].ino);
			i = j;
		}
		free(v.r);
		if (rc)
			return rc;
	}
	nrec_put(tx);
	tx->res->ino = nr->gen;
	return 0;
}

/* Record (origin holds ino open) with the payload's incarnation and seq. */
static int put_open(struct txn *tx, uint64_t ino, const struct itab_lock *lk)
{
	struct itab_node_rec *nr;
	uint8_t k[OKEY_LEN], v[OVAL_LEN];
	char *old;
	size_t ol;
	int rc = db_get(tx->t, NULL, k, okey(k, ino, tx->op->origin), &old, &ol);
	if (rc == 0) {
		leveldb_free(old);
	} else if (rc == -ENOENT) { /* a new holder */
		if ((rc = nrec_get(tx, tx->op->origin, &nr)))
			return rc;
		nr->nopen++;
		nrec_put(tx);
	} else {
		return txn_chk(tx, rc);
	}
	be_put64(v, lk->incarnation);
	be_put64(v + 8, lk->seq);
	leveldb_writebatch_put(tx->wb, (char *)k, OKEY_LEN, (char *)v, OVAL_LEN);
	return 0;
}

/* OPEN: the origin holds ino open (replaces its older record). */
int locks_op_open(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct itab_lock lk;
	struct inode *in;
	int rc;
	if (op->origin == 0 || payload(tx, &lk))
		return -EINVAL;
	if ((rc = txn_get(tx, op->ino, &in)))
		return rc;
	if ((rc = put_open(tx, op->ino, &lk)))
		return rc;
	tx->res->ino = op->ino;
	return 0;
}

int locks_create_open(struct txn *tx, uint64_t ino)
{
	struct itab_lock lk;
	if (tx->op->origin == 0 || payload(tx, &lk))
		return -EINVAL;
	return put_open(tx, ino, &lk);
}

struct held_ctx {
	uint64_t skip; /* a node not to count (0: none) */
	bool found;
};

/* Scan callback: an 'O' record of a node other than skip. */
static int held_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct held_ctx *c = ctx;
	if (kl != OKEY_LEN)
		return -EIO;
	if (be_get64(k + 9) == c->skip)
		return 0;
	c->found = true;
	return 1;
}

/* 1 if a node other than skip holds ino open, 0, or -EIO. */
static int held_except(struct txn *tx, uint64_t ino, uint64_t skip)
{
	uint8_t p[9];
	struct held_ctx c = {skip, false};
	p[0] = 'O';
	be_put64(p + 1, ino);
	int rc = itab_scan(tx->t, p, sizeof(p), NULL, 0, held_one, &c);
	if (rc < 0)
		return txn_chk(tx, rc);
	return c.found;
}

int locks_held_open(struct txn *tx, uint64_t ino)
{
	return held_except(tx, ino, 0);
}

/* CLOSE: the origin's last handle of ino closed. The record must be the
 * one this open made (same incarnation and seq: -ESTALE otherwise, e.g. a
 * CLOSE overtaken by the next OPEN; -ENOENT without a record). When it was
 * the last record of an orphan, the orphan is freed. */
int locks_op_close(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct itab_lock lk;
	struct itab_node_rec *nr;
	uint8_t k[OKEY_LEN];
	char *v;
	size_t vl;
	if (op->origin == 0 || payload(tx, &lk))
		return -EINVAL;
	int rc = db_get(tx->t, NULL, k, okey(k, op->ino, op->origin), &v, &vl);
	if (rc)
		return rc == -ENOENT ? rc : txn_chk(tx, rc);
	bool same = vl == OVAL_LEN && be_get64((uint8_t *)v) == lk.incarnation &&
		    be_get64((uint8_t *)v + 8) == lk.seq;
	leveldb_free(v);
	if (!same)
		return -ESTALE;
	leveldb_writebatch_delete(tx->wb, (char *)k, OKEY_LEN);
	if ((rc = nrec_get(tx, op->origin, &nr)))
		return rc;
	if (nr->nopen)
		nr->nopen--;
	nrec_put(tx);
	struct inode *in;
	rc = txn_get(tx, op->ino, &in);
	if (rc == -ENOENT)
		return 0; /* the record outlived its inode: nothing to free */
	if (rc)
		return rc;
	if (in->a.nlink == 0) {
		if ((rc = held_except(tx, op->ino, op->origin)) < 0)
			return rc;
		if (rc == 0 && (rc = txn_kill_inode(tx, in)))
			return rc;
	}
	tx->res->ino = op->ino;
	return 0;
}

/* ---- reads ----------------------------------------------------------------------- */

struct getlk_ctx {
	const struct itab_lock *req;
	struct itab_lock *out;
	int found;
};

/* Scan callback: the first lock that blocks the request. */
static int getlk_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct getlk_ctx *c = ctx;
	struct itab_lock l;
	uint64_t ino;
	if (lrec_decode(k, kl, v, vl, &ino, &l))
		return -EIO;
	if (locktab_conflict(&l, 1, c->req) != 0)
		return 0;
	*c->out = l;
	c->found = 1;
	return 1;
}

int itab_getlk(struct itab *t, uint64_t ino, uint64_t node, const struct itab_lock *req,
	       struct itab_lock *conflict)
{
	if ((req->kind != ITAB_LK_POSIX && req->kind != ITAB_LK_FLOCK) ||
	    (req->type != ITAB_LK_READ && req->type != ITAB_LK_WRITE) ||
	    req->start > req->end)
		return -EINVAL;
	struct itab_lock r = *req;
	r.node = node;
	uint8_t p[10];
	p[0] = 'K';
	be_put64(p + 1, ino);
	p[9] = req->kind;
	struct getlk_ctx c = {&r, conflict, 0};
	pthread_rwlock_rdlock(&t->lock);
	int rc = itab_scan(t, p, sizeof(p), NULL, 0, getlk_one, &c);
	pthread_rwlock_unlock(&t->lock);
	if (rc < 0)
		return rc;
	return c.found;
}

struct locks_ctx {
	uint64_t node;
	int (*cb)(void *ctx, const struct itab_lock *lk);
	void *ctx;
};

static int locks_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct locks_ctx *c = ctx;
	struct itab_lock l;
	uint64_t ino;
	if (lrec_decode(k, kl, v, vl, &ino, &l))
		return -EIO;
	if (c->node && l.node != c->node)
		return 0;
	return c->cb(c->ctx, &l);
}

int itab_locks(struct itab *t, uint64_t ino, uint8_t kind, uint64_t node,
	       int (*cb)(void *ctx, const struct itab_lock *lk), void *ctx)
{
	uint8_t p[10];
	p[0] = 'K';
	be_put64(p + 1, ino);
	p[9] = kind;
	struct locks_ctx c = {node, cb, ctx};
	pthread_rwlock_rdlock(&t->lock);
	int rc = itab_scan(t, p, kind ? 10 : 9, NULL, 0, locks_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

int itab_node_get(struct itab *t, uint64_t node, struct itab_node_rec *rec)
{
	pthread_rwlock_rdlock(&t->lock);
	int rc = nrec_read(t, node, rec);
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

struct nodes_ctx {
	int (*cb)(void *ctx, const struct itab_node_rec *rec);
	void *ctx;
};

static int nodes_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct nodes_ctx *c = ctx;
	struct itab_node_rec r;
	if (kl != 10 || vl != NREC_LEN)
		return -EIO;
	nrec_decode(be_get64(k + 2), v, &r);
	return c->cb(c->ctx, &r);
}

int itab_nodes(struct itab *t, int (*cb)(void *ctx, const struct itab_node_rec *rec),
	       void *ctx)
{
	uint8_t p[2];
	struct nodes_ctx c = {cb, ctx};
	pthread_rwlock_rdlock(&t->lock);
	int rc = itab_scan(t, p, key_meta(p, 'n'), NULL, 0, nodes_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

struct holders_ctx {
	int (*cb)(void *ctx, uint64_t node, uint64_t incarnation, uint64_t seq);
	void *ctx;
};

static int holders_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct holders_ctx *c = ctx;
	if (kl != OKEY_LEN || vl != OVAL_LEN)
		return -EIO;
	return c->cb(c->ctx, be_get64(k + 9), be_get64(v), be_get64(v + 8));
}

int itab_open_holders(struct itab *t, uint64_t ino,
		      int (*cb)(void *ctx, uint64_t node, uint64_t incarnation, uint64_t seq),
		      void *ctx)
{
	uint8_t p[9];
	p[0] = 'O';
	be_put64(p + 1, ino);
	struct holders_ctx c = {cb, ctx};
	pthread_rwlock_rdlock(&t->lock);
	int rc = itab_scan(t, p, sizeof(p), NULL, 0, holders_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}
