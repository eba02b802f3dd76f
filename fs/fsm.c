/*
 * fsm.c — the inode table behind the replicator, and proposals to it.
 *
 * Apply path (replicator thread): entry bytes -> itab_op_decode -> stamp
 * the envelope's (origin, seq) -> itab_op_encode into a reused buffer ->
 * itab_apply -> result bytes for the proposer -> data_applied -> kernel
 * invalidations for other nodes' changes. Entries without payload (the
 * leader's no-op, configuration changes) apply as ITAB_OP_NOOP so the
 * table's applied index follows the log.
 *
 * Result bytes (what fsm_propose_* decode), big-endian:
 *   'F' | i32 err | u64 ino | u64 victim | u64 orphaned | attr (13 x u64)
 */
#include "fs/fsm.h"

#include "fs/be.h"
#include "fs/mono.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs/data.h"
#include "fs/inval.h"
#include "transport/log.h"

#define FSM_RES_LEN (1 + 4 + 3 * 8 + 13 * 8)

struct fsm {
	struct itab *itab; /* borrowed */
	uint64_t self_id;
	pthread_mutex_t mu;  /* guards the three hooks below */
	struct repl *repl;   /* guarded by mu */
	struct data *data;   /* guarded by mu; used under mu in apply */
	struct inval *inval; /* guarded by mu; used under mu in apply */
	fsm_applied_fn hook; /* guarded by mu; called under mu in apply */
	void *hook_ctx;      /* guarded by mu */
	uint8_t *abuf;       /* apply thread only: re-encoded entry */
	size_t abuf_cap;
	/* Inodes whose kernel pages match the table (fsm_pages_valid): an
	 * open-addressing set (ino 0: empty slot). Inode numbers are never
	 * reused, so a slot is only ever cleared by forgetting the whole
	 * set. */
	pthread_mutex_t pmu;
	struct pslot {
		uint64_t ino;
		uint32_t gen; /* content changes seen while in the set */
		bool valid;   /* pages dropped after the latest change */
	} *pset;
	uint32_t pepoch; /* bumped whenever the set is forgotten */
	size_t pcap, pn;
};

int64_t fsm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- result encoding ------------------------------------------------------ */

static size_t result_encode(const struct itab_result *r, uint8_t *b)
{
	const struct itab_attr *a = &r->attr;
	uint64_t v[13] = {a->ino,	    a->mode,	      a->uid,
			  a->gid,	    a->nlink,	      a->size,
			  a->rdev,	    (uint64_t)a->atime_ns, (uint64_t)a->mtime_ns,
			  (uint64_t)a->ctime_ns, a->generation, a->blocks,
			  a->parent};
	b[0] = 'F';
	uint32_t e = (uint32_t)r->err;
	b[1] = (uint8_t)(e >> 24);
	b[2] = (uint8_t)(e >> 16);
	b[3] = (uint8_t)(e >> 8);
	b[4] = (uint8_t)e;
	be_put64(b + 5, r->ino);
	be_put64(b + 13, r->victim);
	be_put64(b + 21, r->orphaned);
	for (int i = 0; i < 13; i++)
		be_put64(b + 29 + 8 * i, v[i]);
	return FSM_RES_LEN;
}

static int result_decode(const uint8_t *b, size_t len, struct fsm_result *r)
{
	memset(r, 0, sizeof(*r));
	if (len != FSM_RES_LEN || b[0] != 'F')
		return -EINVAL;
	r->err = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 |
			   (uint32_t)b[3] << 8 | b[4]);
	r->ino = be_get64(b + 5);
	r->victim = be_get64(b + 13);
	r->orphaned = be_get64(b + 21);
	uint64_t v[13];
	for (int i = 0; i < 13; i++)
		v[i] = be_get64(b + 29 + 8 * i);
	struct itab_attr *a = &r->attr;
	a->ino = v[0];
	a->mode = (uint32_t)v[1];
	a->uid = (uint32_t)v[2];
	a->gid = (uint32_t)v[3];
	a->nlink = (uint32_t)v[4];
	a->size = v[5];
	a->rdev = v[6];
	a->atime_ns = (int64_t)v[7];
	a->mtime_ns = (int64_t)v[8];
	a->ctime_ns = (int64_t)v[9];
	a->generation = v[10];
	a->blocks = v[11];
	a->parent = v[12];
	return 0;
}

/* ---- kernel invalidations --------------------------------------------------- */

/* Queue what op changed, for the kernel of this node (the op came from
 * another node, so the kernel learnt nothing from a reply). Caller holds
 * f->mu. */
static void queue_invalidations(struct fsm *f, const struct itab_op *op,
				const struct itab_result *r)
{
	struct inval *iv = f->inval;
	if (!iv)
		return;
	switch (op->code) {
	case ITAB_OP_CREATE:
	case ITAB_OP_MKDIR:
	case ITAB_OP_SYMLINK:
	case ITAB_OP_LINK:
		inval_entry(iv, op->parent, op->name, op->name_len);
		inval_inode(iv, op->parent, 0);
		if (op->code == ITAB_OP_LINK)
			inval_inode(iv, op->ino, 0);
		break;
	case ITAB_OP_UNLINK:
	case ITAB_OP_RMDIR:
		inval_entry(iv, op->parent, op->name, op->name_len);
		inval_inode(iv, op->parent, 0);
		inval_inode(iv, r->victim, 0);
		break;
	case ITAB_OP_RENAME:
		inval_entry(iv, op->parent, op->name, op->name_len);
		inval_entry(iv, op->newparent, op->newname, op->newname_len);
		inval_inode(iv, op->parent, 0);
		if (op->newparent != op->parent)
			inval_inode(iv, op->newparent, 0);
		inval_inode(iv, r->victim, 0);
		break;
	case ITAB_OP_SETATTR:
		/* A size change drops cached pages too. */
		inval_inode(iv, op->ino, (op->valid & ITAB_SET_SIZE) != 0);
		break;
	case ITAB_OP_WRITE:
		inval_inode(iv, op->ino, 1);
		break;
	case ITAB_OP_SETXATTR:
	case ITAB_OP_REMOVEXATTR:
		inval_inode(iv, op->ino, 0);
		break;
	case ITAB_OP_REPAIR: /* fsck: an entry dropped, an nlink or size fixed */
		if (op->name_len)
			inval_entry(iv, op->parent, op->name, op->name_len);
		if (r->ino)
			inval_inode(iv, r->ino, 0);
		break;
	default:
		break;
	}
}

/* ---- kernel page cache validity ------------------------------------------------ */

/* ino's slot, or the empty slot where it would go (pcap > 0, pmu held). */
static struct pslot *pslot(const struct fsm *f, uint64_t ino)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull;
	size_t i = (size_t)(h >> 32) & (f->pcap - 1);
	while (f->pset[i].ino != 0 && f->pset[i].ino != ino)
		i = (i + 1) & (f->pcap - 1);
	return &f->pset[i];
}

/* ino's slot if it is in the set, else NULL (pmu held). */
static struct pslot *pfind(const struct fsm *f, uint64_t ino)
{
	if (!f->pcap)
		return NULL;
	struct pslot *sl = pslot(f, ino);
	return sl->ino == ino ? sl : NULL;
}

/* Forget every inode (pmu held); tickets handed out before stop
 * matching. */
static void pages_forget(struct fsm *f)
{
	if (f->pcap)
		memset(f->pset, 0, f->pcap * sizeof(*f->pset));
	f->pn = 0;
	f->pepoch++;
}

/* Room for one more inode (pmu held): forget everything at
 * FSM_PAGES_MAX, grow past 3/4 full. false when memory ran out. */
static bool pages_room(struct fsm *f)
{
	if (f->pn >= FSM_PAGES_MAX)
		pages_forget(f);
	if ((f->pn + 1) * 4 <= f->pcap * 3)
		return true;
	size_t ncap = f->pcap ? f->pcap * 2 : 256;
	struct pslot *nset = calloc(ncap, sizeof(*nset));
	if (!nset)
		return false;
	struct pslot *old = f->pset;
	size_t ocap = f->pcap;
	f->pset = nset;
	f->pcap = ncap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i].ino)
			*pslot(f, old[i].ino) = old[i];
	free(old);
	return true;
}

bool fsm_pages_valid(struct fsm *f, uint64_t ino, uint64_t *ticket)
{
	bool valid = false;
	*ticket = UINT64_MAX; /* matches nothing */
	if (ino == 0)
		return false;
	pthread_mutex_lock(&f->pmu);
	if (pages_room(f)) {
		struct pslot *sl = pslot(f, ino);
		if (sl->ino != ino) {
			*sl = (struct pslot){.ino = ino};
			f->pn++;
		}
		valid = sl->valid;
		*ticket = (uint64_t)f->pepoch << 32 | sl->gen;
	}
	pthread_mutex_unlock(&f->pmu);
	return valid;
}

void fsm_pages_dropped(struct fsm *f, uint64_t ino, uint64_t ticket)
{
	pthread_mutex_lock(&f->pmu);
	struct pslot *sl = pfind(f, ino);
	if (sl && ticket >> 32 == f->pepoch && sl->gen == (uint32_t)ticket)
		sl->valid = true;
	pthread_mutex_unlock(&f->pmu);
}

/* Does op add, remove or rename an entry of op->parent (and, for a
 * rename, of op->newparent)? */
static bool entries_change(const struct itab_op *op)
{
	switch (op->code) {
	case ITAB_OP_CREATE:
	case ITAB_OP_MKDIR:
	case ITAB_OP_SYMLINK:
	case ITAB_OP_LINK:
	case ITAB_OP_UNLINK:
	case ITAB_OP_RMDIR:
	case ITAB_OP_RENAME:
		return true;
	default:
		return false;
	}
}

/* A content change applied, or a caller that cannot vouch for the pages:
 * the next open drops them. */
void fsm_pages_stale(struct fsm *f, uint64_t ino)
{
	pthread_mutex_lock(&f->pmu);
	struct pslot *sl = pfind(f, ino);
	if (sl) {
		sl->valid = false;
		sl->gen++;
	}
	pthread_mutex_unlock(&f->pmu);
}

/* ---- the state machine --------------------------------------------------------- */

/* Make sure the apply buffer holds n bytes. */
static int abuf_reserve(struct fsm *f, size_t n)
{
	if (n <= f->abuf_cap)
		return 0;
	size_t cap = f->abuf_cap ? f->abuf_cap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *b = realloc(f->abuf, cap);
	if (!b)
		return -ENOMEM;
	f->abuf = b;
	f->abuf_cap = cap;
	return 0;
}

/* repl_sm.apply: see the file comment. Only a LevelDB failure is fatal. */
static int fsm_apply(void *ctx, uint64_t index, uint64_t origin, uint64_t seq,
		     uint64_t low, const uint8_t *data, uint32_t len, uint8_t *res,
		     size_t rescap, size_t *reslen)
{
	struct fsm *f = ctx;
	struct itab_op op;
	memset(&op, 0, sizeof(op));
	bool decoded = true;
	if (len == 0)
		op.code = ITAB_OP_NOOP;
	else if (itab_op_decode(data, len, &op) != 0)
		decoded = false;

	const void *entry = data;
	size_t elen = len;
	if (decoded) {
		/* The envelope, not the proposer's op, names the request. */
		op.origin = origin;
		op.seq = seq;
		size_t need = itab_op_encoded_size(&op);
		long n = need && abuf_reserve(f, need) == 0
				 ? itab_op_encode(&op, f->abuf, f->abuf_cap)
				 : -ENOMEM;
		if (n < 0) {
			itab_op_release(&op);
			LOG(ERROR, "index %llu: cannot re-encode %s: %s",
			    (unsigned long long)index, itab_op_name(op.code),
			    strerror((int)-n));
			return n == -ENOMEM ? -ENOMEM : -EIO;
		}
		entry = f->abuf;
		elen = (size_t)n;
	} else {
		LOG(WARN, "index %llu: malformed fs entry (%u bytes), applied as "
			  "a no-op",
		    (unsigned long long)index, len);
	}

	struct itab_result r;
	int rc = itab_apply(f->itab, index, entry, elen, &r);
	if (rc < 0) {
		itab_op_release(&op);
		return rc;
	}
	if (rescap >= FSM_RES_LEN)
		*reslen = result_encode(&r, res);
	else
		*reslen = 0;
	if (decoded && !r.skipped && !r.duplicate) {
		/* From any node: a local change drops the pages at the
		 * next open too (conservative: one re-read). */
		if (r.err == 0 && (op.code == ITAB_OP_WRITE ||
				   (op.code == ITAB_OP_SETATTR &&
				    (op.valid & ITAB_SET_SIZE))))
			fsm_pages_stale(f, op.ino);
		/* A directory's pages are its cached listing (opendir). */
		if (r.err == 0 && entries_change(&op)) {
			fsm_pages_stale(f, op.parent);
			if (op.code == ITAB_OP_RENAME &&
			    op.newparent != op.parent) {
				fsm_pages_stale(f, op.newparent);
				/* a moved directory's ".." changed */
				fsm_pages_stale(f, r.ino);
				if (r.victim)
					fsm_pages_stale(f, r.victim);
			}
		}
		pthread_mutex_lock(&f->mu);
		if (f->data)
			data_applied(f->data, &op, &r);
		/* A repair comes from fsck, not from a FUSE request: the
		 * kernel of its own node learnt nothing either. */
		if ((origin != f->self_id || op.code == ITAB_OP_REPAIR) && r.err == 0)
			queue_invalidations(f, &op, &r);
		if (f->hook)
			f->hook(f->hook_ctx, index, &op, &r);
		pthread_mutex_unlock(&f->mu);
	}
	if (r.err && r.err != -ENOENT && r.err != -EEXIST && !r.skipped)
		LOG(DEBUG, "index %llu: %s from node %llu: %s",
		    (unsigned long long)index, itab_op_name(op.code),
		    (unsigned long long)origin, strerror(-r.err));
	itab_op_release(&op);
	return 0;
}

static uint64_t fsm_applied(void *ctx)
{
	struct fsm *f = ctx;
	return itab_applied_index(f->itab);
}

/* repl_sm.sync: itab writes its batches with sync=false (the Raft log is
 * the durable record); before the replicator compacts the log behind an
 * index, everything up to it must be on disk: read the applied index,
 * then force LevelDB's log to disk. */
static int fsm_sync(void *ctx, uint64_t *index)
{
	struct fsm *f = ctx;
	uint64_t idx = itab_applied_index(f->itab);
	int rc = itab_sync(f->itab);
	if (rc == 0)
		*index = idx;
	return rc;
}

struct growbuf {
	uint8_t *b;
	size_t len, cap;
};

static int growbuf_write(void *ctx, const void *buf, size_t len)
{
	struct growbuf *g = ctx;
	if (g->len + len > g->cap) {
		size_t cap = g->cap ? g->cap : 65536;
		while (cap < g->len + len)
			cap *= 2;
		uint8_t *b = realloc(g->b, cap);
		if (!b)
			return -ENOMEM;
		g->b = b;
		g->cap = cap;
	}
	memcpy(g->b + g->len, buf, len);
	g->len += len;
	return 0;
}

/* repl_sm.snapshot_begin/finish: the itab dump at its applied index,
 * serialized away from the replicator thread (a LevelDB snapshot keeps the
 * point in time while entries go on being applied). */
static int fsm_snapshot_begin(void *ctx, uint64_t *index, void **job)
{
	struct fsm *f = ctx;
	struct itab_snap *sn;
	int rc = itab_snapshot_begin(f->itab, &sn, index);
	if (rc == 0)
		*job = sn;
	return rc;
}

static int fsm_snapshot_finish(void *ctx, void *job, uint8_t **data,
			       uint64_t *len)
{
	struct fsm *f = ctx;
	struct growbuf g = {0};
	int rc = itab_snapshot_write(f->itab, job, growbuf_write, &g);
	itab_snapshot_end(f->itab, job);
	if (rc < 0) {
		free(g.b);
		return rc;
	}
	*data = g.b;
	*len = g.len;
	return 0;
}

/* repl_sm.snapshot: the same in one go. */
static int fsm_snapshot(void *ctx, uint64_t *index, uint8_t **data,
			uint64_t *len)
{
	void *job;
	int rc = fsm_snapshot_begin(ctx, index, &job);
	return rc ? rc : fsm_snapshot_finish(ctx, job, data, len);
}

/* repl_sm.restore: replace the table. The kernel may cache anything of
 * the old table: entries and attributes expire after their 1 s timeout,
 * pages are dropped at the next open (no inode's pages are known valid
 * any more). */
static int fsm_restore(void *ctx, uint64_t index, const uint8_t *data,
		       uint64_t len)
{
	struct fsm *f = ctx;
	pthread_mutex_lock(&f->pmu);
	pages_forget(f);
	pthread_mutex_unlock(&f->pmu);
	int rc = itab_restore(f->itab, data, len);
	/* Again: an open during the restore (which reads the old table
	 * until it swaps) may have vouched for pages of the old content. */
	pthread_mutex_lock(&f->pmu);
	pages_forget(f);
	pthread_mutex_unlock(&f->pmu);
	if (rc == 0 && itab_applied_index(f->itab) != index)
		LOG(WARN, "snapshot for index %llu restored the table at %llu",
		    (unsigned long long)index,
		    (unsigned long long)itab_applied_index(f->itab));
	if (rc == 0) {
		/* The new table may reference blocks this node never saw a
		 * WRITE for: have the data path look (queued, never blocks). */
		LOG(INFO, "installed a snapshot at index %llu; looking for "
			  "blocks missing here", (unsigned long long)index);
		pthread_mutex_lock(&f->mu);
		data_catch_up(f->data);
		if (f->hook) /* locks and open records changed wholesale */
			f->hook(f->hook_ctx, index, NULL, NULL);
		pthread_mutex_unlock(&f->mu);
	}
	return rc;
}

static void fsm_describe(void *ctx, char *buf, size_t cap)
{
	struct fsm *f = ctx;
	struct itab_statfs st;
	if (itab_statfs(f->itab, &st) == 0)
		snprintf(buf, cap, "inodes=%llu blocks=%llu",
			 (unsigned long long)st.inodes,
			 (unsigned long long)st.blocks);
	else if (cap)
		buf[0] = 0;
}

struct repl_sm fsm_sm(struct fsm *f)
{
	struct repl_sm sm = {
		.ctx = f,
		.apply = fsm_apply,
		.applied = fsm_applied,
		.sync = fsm_sync,
		.snapshot = fsm_snapshot,
		.snapshot_begin = fsm_snapshot_begin,
		.snapshot_finish = fsm_snapshot_finish,
		.restore = fsm_restore,
		.describe = fsm_describe,
	};
	return sm;
}

/* ---- lifecycle and hooks ------------------------------------------------------ */

int fsm_new(struct itab *t, uint64_t self_id, struct fsm **out)
{
	struct fsm *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->itab = t;
	f->self_id = self_id;
	pthread_mutex_init(&f->mu, NULL);
	pthread_mutex_init(&f->pmu, NULL);
	*out = f;
	return 0;
}

void fsm_free(struct fsm *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->mu);
	pthread_mutex_destroy(&f->pmu);
	free(f->pset);
	free(f->abuf);
	free(f);
}

void fsm_set_repl(struct fsm *f, struct repl *r)
{
	pthread_mutex_lock(&f->mu);
	f->repl = r;
	pthread_mutex_unlock(&f->mu);
}

void fsm_set_data(struct fsm *f, struct data *d)
{
	pthread_mutex_lock(&f->mu);
	f->data = d;
	pthread_mutex_unlock(&f->mu);
}

void fsm_set_inval(struct fsm *f, struct inval *iv)
{
	pthread_mutex_lock(&f->mu);
	f->inval = iv;
	pthread_mutex_unlock(&f->mu);
}

void fsm_set_applied_hook(struct fsm *f, fsm_applied_fn fn, void *ctx)
{
	pthread_mutex_lock(&f->mu);
	f->hook = fn;
	f->hook_ctx = ctx;
	pthread_mutex_unlock(&f->mu);
}

int fsm_inval_settle(struct fsm *f, uint32_t timeout_ms)
{
	/* The inval outlives every request handler (it stops after the FUSE
	 * loop), so it may be used outside mu. */
	pthread_mutex_lock(&f->mu);
	struct inval *iv = f->inval;
	pthread_mutex_unlock(&f->mu);
	return inval_settle(iv, timeout_ms);
}

void fsm_inval_inode(struct fsm *f, uint64_t ino)
{
	pthread_mutex_lock(&f->mu);
	inval_inode(f->inval, ino, 0);
	pthread_mutex_unlock(&f->mu);
}

int fsm_inval_pages(struct fsm *f, uint64_t ino)
{
	pthread_mutex_lock(&f->mu);
	int rc = f->inval ? inval_inode(f->inval, ino, 1) : -ENOTCONN;
	pthread_mutex_unlock(&f->mu);
	return rc;
}

struct itab *fsm_itab(struct fsm *f)
{
	return f->itab;
}

static struct repl *get_repl(struct fsm *f)
{
	pthread_mutex_lock(&f->mu);
	struct repl *r = f->repl;
	pthread_mutex_unlock(&f->mu);
	return r;
}

struct repl *fsm_repl(struct fsm *f)
{
	return get_repl(f);
}

/* ---- proposals ------------------------------------------------------------------- */

struct fsm_call {
	fsm_done_fn done;
	void *ctx;
};

/* Replicator completion: decode the result bytes and pass them on. */
static void call_done(void *ctx, int status, const uint8_t *res, size_t reslen)
{
	struct fsm_call *c = ctx;
	struct fsm_result r;
	if (status) {
		memset(&r, 0, sizeof(r));
		/* Timeouts and shutdown both reach the caller as EIO. */
		r.err = status == -ESHUTDOWN || status == -ETIMEDOUT ? -EIO : status;
	} else if (result_decode(res, reslen, &r) != 0) {
		LOG(ERROR, "proposal completed without an fs result (%zu bytes)",
		    reslen);
		r.err = -EIO;
	}
	c->done(c->ctx, &r);
	free(c);
}

int fsm_propose_async(struct fsm *f, const struct itab_op *op, fsm_done_fn done,
		      void *ctx)
{
	struct repl *r = get_repl(f);
	if (!r)
		return -ENOTCONN;
	size_t need = itab_op_encoded_size(op);
	if (need == 0 || need > UINT32_MAX)
		return -EINVAL;
	uint8_t stackbuf[1024];
	uint8_t *buf = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
	if (!buf)
		return -ENOMEM;
	long n = itab_op_encode(op, buf, need);
	struct fsm_call *c = n >= 0 ? malloc(sizeof(*c)) : NULL;
	int rc = n < 0 ? (int)n : c ? 0 : -ENOMEM;
	if (rc == 0) {
		c->done = done;
		c->ctx = ctx;
		rc = repl_propose(r, buf, (uint32_t)n, call_done, c);
		if (rc)
			free(c);
	}
	if (buf != stackbuf)
		free(buf);
	return rc;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	struct fsm_result res;
};

static void waiter_init(struct waiter *w)
{
	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}

static void waiter_wake(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void sync_done(void *ctx, const struct fsm_result *res)
{
	struct waiter *w = ctx;
	w->res = *res;
	waiter_wake(w);
}

int fsm_propose_sync(struct fsm *f, const struct itab_op *op,
		     struct fsm_result *res)
{
	struct waiter w;
	waiter_init(&w);
	int rc = fsm_propose_async(f, op, sync_done, &w);
	if (rc) {
		pthread_mutex_destroy(&w.mu);
		pthread_cond_destroy(&w.cv);
		if (res) {
			memset(res, 0, sizeof(*res));
			res->err = rc;
		}
		return rc;
	}
	waiter_wait(&w);
	if (res)
		*res = w.res;
	return w.res.err;
}

/* A wait shared between a waiter that may give up (timeout, shutdown)
 * and the completion that may still come: whoever lets go last frees it.
 * Used for read barriers and stoppable proposals. */
struct shwait {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	int refs;          /* guarded by mu */
	bool done;         /* guarded by mu */
	int rc;            /* guarded by mu */
	struct fsm_result res; /* guarded by mu: a proposal's result */
};

/* A new wait held by two parties (the waiter and the completion). */
static struct shwait *shwait_new(void)
{
	struct shwait *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	w->refs = 2;
	return w;
}

/* Free a wait whose completion was never registered. */
static void shwait_free(struct shwait *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

/* Let go of w (mu held on entry, released). */
static void shwait_put(struct shwait *w)
{
	int last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last)
		shwait_free(w);
}

/* Record the outcome and wake the waiter. */
static void shwait_finish(struct shwait *w, int rc)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cv);
	shwait_put(w);
}

static void read_done(void *ctx, int status, const uint8_t *res, size_t reslen)
{
	shwait_finish(ctx, status == -ESHUTDOWN || status == -ETIMEDOUT ? -EIO
									 : status);
}

/* fsm_read_index_sync and fsm_read_barrier; with leader_known, give up
 * (-EHOSTUNREACH) when it says no leader is known, at the start or while
 * waiting (asked every LEADER_POLL_MS). */
#define LEADER_POLL_MS 50
static int read_index(struct fsm *f, uint32_t timeout_ms,
		      bool (*leader_known)(void *ctx, struct repl *r),
		      void *lctx)
{
	struct repl *r = get_repl(f);
	if (!r)
		return -ENOTCONN;
	bool need_leader = leader_known != NULL;
	if (need_leader && !leader_known(lctx, r))
		return -EHOSTUNREACH;
	struct shwait *w = shwait_new();
	if (!w)
		return -ENOMEM;
	int rc = repl_read_index(r, read_done, w);
	if (rc) {
		shwait_free(w);
		return rc;
	}
	struct timespec dl = mono_deadline(timeout_ms);
	bool lost = false;
	pthread_mutex_lock(&w->mu);
	while (!w->done) {
		if (!timeout_ms && !need_leader) {
			pthread_cond_wait(&w->cv, &w->mu);
			continue;
		}
		struct timespec now, until;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timeout_ms && (now.tv_sec > dl.tv_sec ||
				   (now.tv_sec == dl.tv_sec &&
				    now.tv_nsec >= dl.tv_nsec)))
			break;
		until = now;
		if (need_leader) {
			until.tv_nsec += LEADER_POLL_MS * 1000000L;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			if (timeout_ms && (until.tv_sec > dl.tv_sec ||
					   (until.tv_sec == dl.tv_sec &&
					    until.tv_nsec > dl.tv_nsec)))
				until = dl;
		} else {
			until = dl;
		}
		if (pthread_cond_timedwait(&w->cv, &w->mu, &until) ==
			    ETIMEDOUT &&
		    need_leader && !w->done) {
			pthread_mutex_unlock(&w->mu);
			lost = !leader_known(lctx, r);
			pthread_mutex_lock(&w->mu);
			if (lost && !w->done)
				break;
			lost = false;
		}
	}
	rc = w->done ? w->rc : lost ? -EHOSTUNREACH : -ETIMEDOUT;
	shwait_put(w);
	return rc;
}

int fsm_read_index_sync(struct fsm *f, uint32_t timeout_ms)
{
	return read_index(f, timeout_ms, NULL, NULL);
}

int fsm_read_barrier(struct fsm *f, uint32_t timeout_ms,
		     bool (*leader_known)(void *ctx, struct repl *r), void *ctx)
{
	return read_index(f, timeout_ms, leader_known, ctx);
}

int fsm_data_propose(void *ctx, const struct itab_op *op,
		     struct itab_attr *res_attr)
{
	struct fsm_result r;
	int rc = fsm_propose_sync(ctx, op, &r);
	if (rc == 0 && res_attr)
		*res_attr = r.attr;
	return rc;
}

/* ---- orphans of a previous life ----------------------------------------------- */

struct orphan_list {
	uint64_t *ino;
	size_t n, cap;
	bool oom;
};

/* itab_orphans_held_by callback (under itab's read lock: only collect). */
static int orphan_collect(void *ctx, uint64_t ino)
{
	struct orphan_list *l = ctx;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		uint64_t *ni = realloc(l->ino, nc * sizeof(*ni));
		if (!ni) {
			l->oom = true;
			return 1;
		}
		l->ino = ni;
		l->cap = nc;
	}
	l->ino[l->n++] = ino;
	return 0;
}

static void swait_done(void *ctx, const struct fsm_result *res)
{
	struct shwait *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->res = *res;
	pthread_mutex_unlock(&w->mu);
	shwait_finish(w, res->err);
}

int fsm_propose_stoppable(struct fsm *f, const struct itab_op *op,
			  bool (*stopping)(void *ctx), void *ctx,
			  struct fsm_result *res)
{
	if (!stopping)
		return fsm_propose_sync(f, op, res);
	if (res)
		memset(res, 0, sizeof(*res));
	struct shwait *w = shwait_new();
	if (!w)
		return res ? (res->err = -ENOMEM) : -ENOMEM;
	int rc = fsm_propose_async(f, op, swait_done, w);
	if (rc) {
		shwait_free(w);
		return res ? (res->err = rc) : rc;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done) {
		pthread_mutex_unlock(&w->mu);
		bool stop = stopping(ctx);
		pthread_mutex_lock(&w->mu);
		if (stop && !w->done)
			break;
		struct timespec dl = mono_deadline(100);
		if (!w->done)
			pthread_cond_timedwait(&w->cv, &w->mu, &dl);
	}
	rc = w->done ? w->rc : -ECANCELED;
	if (res) {
		if (w->done)
			*res = w->res;
		res->err = rc;
	}
	shwait_put(w);
	return rc;
}

int fsm_release_orphans_held_by(struct fsm *f, uint64_t holder,
				bool (*in_use)(void *ctx, uint64_t ino),
				bool (*stopping)(void *ctx), void *ctx,
				struct fsm_orphan_stats *st)
{
	memset(st, 0, sizeof(*st));
	struct orphan_list l = {0};
	int rc = itab_orphans_held_by(f->itab, holder, orphan_collect, &l);
	if (rc == 0 && l.oom)
		rc = -ENOMEM;
	st->found = l.n;
	for (size_t i = 0; i < l.n && rc == 0; i++) {
		if (stopping && stopping(ctx))
			break;
		if (in_use && in_use(ctx, l.ino[i])) {
			st->skipped++;
			continue;
		}
		struct itab_op op = {.code = ITAB_OP_RELEASE_ORPHAN,
				     .ino = l.ino[i],
				     .now_ns = fsm_now_ns()};
		int e = fsm_propose_stoppable(f, &op, stopping, ctx, NULL);
		if (e == -ECANCELED)
			break;
		if (e == 0) {
			st->released++;
		} else if (e == -EBUSY || e == -ENOENT) {
			st->refused++; /* linked again, or released meanwhile */
		} else if (e == -ENOTCONN) {
			rc = e; /* no replicator (any more) */
		} else {
			st->failed++;
			LOG(WARN, "releasing orphan %llu: %s",
			    (unsigned long long)l.ino[i], strerror(-e));
		}
	}
	free(l.ino);
	return rc;
}
