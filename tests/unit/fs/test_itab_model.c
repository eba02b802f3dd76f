/*
 * Model-based randomized test of the inode table.
 *
 * Random op sequences are applied both to an itab and to a small reference
 * model (C arrays). For every op the errno must match, and the freed block
 * list must equal the blocks whose model refcount fell to zero. At the end
 * of a sequence every inode is compared: type/mode, owner, nlink, size,
 * st_blocks, directory entries, symlink targets, xattrs, extents, block
 * refcounts and orphans. Every tenth sequence is also replayed into a
 * second table and the snapshots must be byte-identical (determinism).
 *
 * Sequence i runs with seed BASE+i. Env: SEED=<base> (printed at start and
 * on failure, replays), SEQS=<n> (default 200), OPS=<n> (default 300).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <time.h>

#include "itab_test_util.h"

#define MAXN 1024
#define NNAMES 10   /* 0..4 valid, 5..9 invalid */
#define NVALID 5
#define NX 4        /* 0..2 valid xattr names, 3 = "" */
#define NBLK 8
#define NHASH 7     /* hash bytes 1..6; 0 = hole */
#define BS 4096u

static const char *const xnames[NX] = {"user.a", "user.b", "user.c", ""};
static char longname[300];

static const char *name_of(int id)
{
	static const char *const n[] = {"a", "b", "c", "d", "e", "", ".", "..", "x/y"};
	return id == 9 ? longname : n[id];
}

struct mn {
	bool live, orphan;
	uint32_t mode, nlink, uid, gid;  /* nlink: non-directories only */
	uint64_t size, parent;           /* size: non-directories only */
	uint64_t child[NVALID];          /* directories: ino per name, 0 = none */
	char target[16];
	bool xhas[3];
	char xval[3];
	uint8_t eh[NBLK];                /* extent hash byte, 0 = none */
	uint32_t el[NBLK];
};

struct model {
	struct mn n[MAXN];
	uint64_t next_ino;
	int64_t refs[NHASH];
};

/* xorshift64*: deterministic across platforms. */
static uint64_t rnd_state;
static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return (uint32_t)((rnd_state * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

static bool isdir(const struct mn *m) { return (m->mode & S_IFMT) == S_IFDIR; }

static struct mn *get(struct model *m, uint64_t ino)
{
	return ino > 0 && ino < MAXN && m->n[ino].live ? &m->n[ino] : NULL;
}

static int name_err(int id)
{
	if (id == 9)
		return -ENAMETOOLONG;
	return id >= NVALID ? -EINVAL : 0;
}

static int dir_of(struct model *m, uint64_t ino, struct mn **d)
{
	*d = get(m, ino);
	if (!*d)
		return -ESTALE; /* a parent that is gone (see txn_dir) */
	return isdir(*d) ? 0 : -ENOTDIR;
}

static uint32_t dsize(const struct mn *d)
{
	uint32_t c = 0;
	for (int i = 0; i < NVALID; i++)
		c += d->child[i] != 0;
	return c;
}

static uint32_t nlink_of(struct model *m, const struct mn *x)
{
	if (!isdir(x))
		return x->nlink;
	uint32_t c = 2;
	for (int i = 0; i < NVALID; i++)
		c += x->child[i] && isdir(&m->n[x->child[i]]);
	return c;
}

static void kill(struct model *m, uint64_t ino)
{
	struct mn *x = &m->n[ino];
	for (int b = 0; b < NBLK; b++)
		if (x->eh[b])
			m->refs[x->eh[b]]--;
	memset(x, 0, sizeof(*x));
}

static void lost_link(struct model *m, uint64_t ino, bool free_now)
{
	if (free_now)
		kill(m, ino);
	else
		m->n[ino].orphan = true;
}

static bool is_anc(struct model *m, uint64_t anc, uint64_t start)
{
	for (uint64_t i = start;; i = m->n[i].parent) {
		if (i == anc)
			return true;
		if (i == ITAB_ROOT_INO)
			return false;
	}
}

/* One op on the model: returns the expected errno. */
static int model_apply(struct model *m, const struct itab_op *op, int nid, int nnid, int xid,
		       const uint8_t *ext_hash)
{
	struct mn *p, *np, *x, *y;
	int rc;
	switch (op->code) {
	case ITAB_OP_CREATE:
	case ITAB_OP_MKDIR:
	case ITAB_OP_SYMLINK: {
		if ((rc = name_err(nid)) || (rc = dir_of(m, op->parent, &p)))
			return rc;
		uint32_t type = op->code == ITAB_OP_MKDIR ? S_IFDIR : S_IFLNK;
		if (op->code == ITAB_OP_SYMLINK && op->target_len == 0)
			return -ENOENT;
		if (op->code == ITAB_OP_CREATE) {
			type = op->mode & S_IFMT;
			if (!type)
				type = S_IFREG;
			if (type == S_IFDIR || type == S_IFLNK)
				return -EINVAL;
		}
		if (p->child[nid])
			return -EEXIST;
		uint64_t ino = m->next_ino++;
		assert_true(ino < MAXN);
		x = &m->n[ino];
		memset(x, 0, sizeof(*x));
		x->live = true;
		uint32_t perm = type == S_IFLNK ? 0777 : (op->mode & 07777 & ~op->umask);
		x->uid = op->uid, x->gid = op->gid;
		if (p->mode & S_ISGID) {
			x->gid = p->gid;
			if (type == S_IFDIR)
				perm |= S_ISGID;
		}
		x->mode = type | perm;
		x->nlink = 1;
		if (type == S_IFDIR)
			x->parent = op->parent;
		if (type == S_IFLNK) {
			memcpy(x->target, op->target, op->target_len);
			x->size = op->target_len;
		}
		p->child[nid] = ino;
		return 0;
	}
	case ITAB_OP_LINK:
		if ((rc = name_err(nid)))
			return rc;
		if (!(x = get(m, op->ino)))
			return -ENOENT;
		if ((rc = dir_of(m, op->parent, &p)))
			return rc;
		if (p->child[nid])
			return -EEXIST;
		if (isdir(x))
			return -EPERM;
		if (x->nlink == 0)
			return -ENOENT;
		x->nlink++;
		p->child[nid] = op->ino;
		return 0;
	case ITAB_OP_UNLINK:
	case ITAB_OP_RMDIR: {
		if ((rc = name_err(nid)) || (rc = dir_of(m, op->parent, &p)))
			return rc;
		uint64_t ino = p->child[nid];
		if (!ino)
			return -ENOENT;
		x = &m->n[ino];
		if (op->code == ITAB_OP_RMDIR && !isdir(x))
			return -ENOTDIR;
		if (op->code == ITAB_OP_UNLINK && isdir(x))
			return -EISDIR;
		if (op->code == ITAB_OP_RMDIR && dsize(x))
			return -ENOTEMPTY;
		p->child[nid] = 0;
		if (isdir(x)) {
			kill(m, ino);
		} else if (--x->nlink == 0) {
			lost_link(m, ino, op->flags & ITAB_F_FREE_NOW);
		}
		return 0;
	}
	case ITAB_OP_RENAME: {
		uint32_t fl = op->flags & ~ITAB_F_FREE_NOW;
		if ((fl & ~3u) || fl == 3)
			return -EINVAL;
		bool exch = fl & ITAB_RENAME_EXCHANGE;
		if ((rc = name_err(nid)) || (rc = name_err(nnid)) ||
		    (rc = dir_of(m, op->parent, &p)) || (rc = dir_of(m, op->newparent, &np)))
			return rc;
		uint64_t s = p->child[nid], d = np->child[nnid];
		if (!s)
			return -ENOENT;
		if (op->ino && s != op->ino)
			return -ESTALE; /* the source name holds another inode */
		if ((fl & ITAB_RENAME_NOREPLACE) && d)
			return -EEXIST;
		if (exch && !d)
			return -ENOENT;
		if (d == s)
			return 0;
		x = &m->n[s];
		y = d ? &m->n[d] : NULL;
		bool sdir = isdir(x), ddir = y && isdir(y), cross = op->parent != op->newparent;
		if (sdir && cross && is_anc(m, s, op->newparent))
			return -EINVAL;
		if (exch && ddir && cross && is_anc(m, d, op->parent))
			return -EINVAL;
		if (d && !exch) {
			if (sdir && !ddir)
				return -ENOTDIR;
			if (!sdir && ddir)
				return -EISDIR;
			if (ddir && dsize(y))
				return -ENOTEMPTY;
		}
		if (exch) {
			p->child[nid] = d;
			np->child[nnid] = s;
			if (cross && sdir)
				x->parent = op->newparent;
			if (cross && ddir)
				y->parent = op->parent;
			return 0;
		}
		if (d) {
			if (ddir)
				kill(m, d);
			else if (--y->nlink == 0)
				lost_link(m, d, op->flags & ITAB_F_FREE_NOW);
		}
		p->child[nid] = 0;
		np->child[nnid] = s;
		if (sdir && cross)
			x->parent = op->newparent;
		return 0;
	}
	case ITAB_OP_SETATTR:
		if (!(x = get(m, op->ino)))
			return -ENOENT;
		if (op->valid & ITAB_SET_SIZE) {
			if (isdir(x))
				return -EISDIR;
			if ((x->mode & S_IFMT) != S_IFREG)
				return -EINVAL;
			if (op->size < x->size) {
				uint64_t keep = (op->size + BS - 1) / BS;
				for (uint64_t b = keep; b < NBLK; b++) {
					if (x->eh[b])
						m->refs[x->eh[b]]--;
					x->eh[b] = 0, x->el[b] = 0;
				}
				uint64_t rem = op->size % BS, b = op->size / BS;
				if (rem && b < NBLK && x->eh[b] && x->el[b] > rem)
					x->el[b] = (uint32_t)rem;
			}
			x->size = op->size;
		}
		if (op->valid & ITAB_SET_MODE)
			x->mode = (x->mode & S_IFMT) | (op->mode & 07777);
		if (op->valid & ITAB_SET_UID)
			x->uid = op->uid;
		return 0;
	case ITAB_OP_SETXATTR:
	case ITAB_OP_REMOVEXATTR: {
		if (!(x = get(m, op->ino)))
			return -ENOENT;
		if (xid == 3)
			return -ERANGE;
		bool set = op->code == ITAB_OP_SETXATTR;
		if (set && x->xhas[xid] && (op->flags & ITAB_XATTR_CREATE))
			return -EEXIST;
		if (!x->xhas[xid] && (!set || (op->flags & ITAB_XATTR_REPLACE)))
			return -ENODATA;
		x->xhas[xid] = set;
		x->xval[xid] = set ? *(const char *)op->value : 0;
		return 0;
	}
	case ITAB_OP_WRITE: {
		if (!(x = get(m, op->ino)))
			return -ENOENT;
		if (isdir(x))
			return -EISDIR;
		if ((x->mode & S_IFMT) != S_IFREG)
			return -EINVAL;
		uint64_t size = op->size > x->size ? op->size : x->size;
		for (size_t i = 0; i < op->n_extents; i++) {
			const struct itab_extent *e = &op->extents[i];
			if (ext_hash[i] && (e->len == 0 || e->len > BS || e->index * BS >= size))
				return -EINVAL;
		}
		for (size_t i = 0; i < op->n_extents; i++) {
			const struct itab_extent *e = &op->extents[i];
			uint64_t b = e->index;
			if (x->eh[b])
				m->refs[x->eh[b]]--;
			x->eh[b] = ext_hash[i];
			x->el[b] = 0;
			if (ext_hash[i]) {
				uint64_t room = size - b * BS;
				x->el[b] = room < e->len ? (uint32_t)room : e->len;
				m->refs[ext_hash[i]]++;
			}
		}
		x->size = size;
		return 0;
	}
	case ITAB_OP_RELEASE_ORPHAN:
		if (!(x = get(m, op->ino)))
			return -ENOENT;
		if (nlink_of(m, x) != 0)
			return -EBUSY;
		kill(m, op->ino);
		return 0;
	}
	return -EINVAL;
}

/* Pick an ino: mostly a live directory (dirs=true) or any live inode,
 * sometimes anything up to next_ino (dead, missing, wrong type). */
static uint64_t pick(struct model *m, bool dirs)
{
	uint64_t cand[MAXN];
	size_t n = 0;
	if (rnd(100) < 85) {
		for (uint64_t i = 1; i < m->next_ino; i++)
			if (m->n[i].live && (!dirs || isdir(&m->n[i])))
				cand[n++] = i;
	}
	if (n == 0)
		return 1 + rnd((uint32_t)m->next_ino);
	return cand[rnd((uint32_t)n)];
}

/* Pick an existing entry (parent, name id), preferring directories if
 * want_dir; false if there is none. */
static bool pick_entry(struct model *m, bool want_dir, uint64_t *parent, int *nid)
{
	uint64_t cp[MAXN * NVALID / 4];
	int cn[MAXN * NVALID / 4];
	size_t n = 0;
	for (uint64_t i = 1; i < m->next_ino && n < sizeof(cn) / sizeof(cn[0]); i++) {
		if (!m->n[i].live || !isdir(&m->n[i]))
			continue;
		for (int k = 0; k < NVALID; k++) {
			uint64_t c = m->n[i].child[k];
			if (c && (!want_dir || isdir(&m->n[c])) && n < sizeof(cn) / sizeof(cn[0]))
				cp[n] = i, cn[n++] = k;
		}
	}
	if (n == 0)
		return false;
	size_t r = rnd((uint32_t)n);
	*parent = cp[r];
	*nid = cn[r];
	return true;
}

static int pick_name(void)
{
	return rnd(100) < 92 ? (int)rnd(NVALID) : NVALID + (int)rnd(NNAMES - NVALID);
}

struct gen {
	struct itab_op op;
	int nid, nnid, xid;
	struct itab_extent ext[3];
	uint8_t eh[3];
	char val[2];
	char desc[160];
};

/* Make a random op (from the model's current state). */
static void gen_op(struct model *m, struct gen *g)
{
	static const char *const targets[] = {"t", "../up", "a/b/c", ""};
	memset(g, 0, sizeof(*g));
	struct itab_op *op = &g->op;
	op->now_ns = 1000;
	g->nid = pick_name();
	g->nnid = pick_name();
	g->xid = rnd(10) == 0 ? 3 : (int)rnd(3);
	uint32_t r = rnd(100);
	if (r < 18) {
		static const uint32_t types[] = {S_IFREG, S_IFREG, S_IFREG, S_IFIFO, S_IFSOCK,
						 S_IFCHR, 0, S_IFDIR};
		op->code = ITAB_OP_CREATE;
		op->mode = types[rnd(8)] | (rnd(2) ? 0666 : 0600);
		op->umask = 022;
	} else if (r < 30) {
		op->code = ITAB_OP_MKDIR;
		op->mode = rnd(8) == 0 ? 02775 : 0777;
		op->umask = 022;
	} else if (r < 34) {
		op->code = ITAB_OP_SYMLINK;
		op->target = targets[rnd(4)];
		op->target_len = strlen(op->target);
	} else if (r < 40) {
		op->code = ITAB_OP_LINK;
	} else if (r < 48) {
		op->code = ITAB_OP_UNLINK;
	} else if (r < 54) {
		op->code = ITAB_OP_RMDIR;
	} else if (r < 70) {
		static const uint32_t fl[] = {0, 0, 0, ITAB_RENAME_NOREPLACE, ITAB_RENAME_EXCHANGE,
					      ITAB_RENAME_EXCHANGE, 3, 0x40};
		op->code = ITAB_OP_RENAME;
		op->flags = fl[rnd(8)];
	} else if (r < 76) {
		op->code = ITAB_OP_SETATTR;
		op->valid = (rnd(2) ? ITAB_SET_SIZE : 0) | (rnd(2) ? ITAB_SET_MODE : 0) |
			    (rnd(4) ? 0 : ITAB_SET_UID);
		op->size = rnd(3) ? rnd(NBLK * BS + 1) : rnd(BS);
		op->mode = rnd(4) ? 0644 : 02755;
	} else if (r < 83) {
		op->code = rnd(3) ? ITAB_OP_SETXATTR : ITAB_OP_REMOVEXATTR;
		op->flags = rnd(3);
		if (op->flags == 3)
			op->flags = 0;
		g->val[0] = (char)('a' + rnd(26));
		op->value = g->val;
		op->value_len = 1;
	} else if (r < 96) {
		op->code = ITAB_OP_WRITE;
		op->size = rnd(NBLK * BS + 1);
		size_t n = 1 + rnd(3);
		uint64_t idx = rnd(3);
		for (size_t i = 0; i < n && idx < NBLK; i++) {
			g->ext[i].index = idx;
			g->eh[i] = rnd(5) ? (uint8_t)(1 + rnd(NHASH - 1)) : 0;
			if (g->eh[i])
				mkhash(g->ext[i].hash, g->eh[i]);
			g->ext[i].len = rnd(20) ? 1 + rnd(BS) : (rnd(2) ? 0 : BS + 1);
			op->n_extents = i + 1;
			idx += 1 + rnd(3);
		}
		op->extents = g->ext;
		op->valid = rnd(2) ? ITAB_SET_MTIME : 0;
	} else {
		op->code = ITAB_OP_RELEASE_ORPHAN;
	}
	op->flags |= (op->code == ITAB_OP_UNLINK || op->code == ITAB_OP_RENAME) && rnd(2)
			     ? ITAB_F_FREE_NOW
			     : 0;
	op->uid = rnd(3);
	op->gid = rnd(3);
	op->parent = pick(m, true);
	op->newparent = rnd(3) ? pick(m, true) : op->parent;
	if ((op->code == ITAB_OP_UNLINK || op->code == ITAB_OP_RMDIR ||
	     op->code == ITAB_OP_RENAME) && rnd(2))
		pick_entry(m, op->code == ITAB_OP_RMDIR || rnd(3) == 0, &op->parent, &g->nid);
	if (op->code == ITAB_OP_RENAME && rnd(3) == 0) {
		uint64_t np = op->newparent;
		int nn = g->nnid;
		if (pick_entry(m, rnd(2), &np, &nn))
			op->newparent = np, g->nnid = nn;
	}
	op->name = name_of(g->nid);
	op->name_len = strlen(op->name);
	op->newname = name_of(g->nnid);
	op->newname_len = strlen(op->newname);
	op->xname = xnames[g->xid];
	op->xname_len = strlen(op->xname);
	if (op->code == ITAB_OP_RELEASE_ORPHAN) {
		uint64_t orph[MAXN];
		size_t n = 0;
		for (uint64_t i = 1; i < m->next_ino; i++)
			if (m->n[i].live && m->n[i].orphan)
				orph[n++] = i;
		op->ino = n && rnd(4) ? orph[rnd((uint32_t)n)] : pick(m, false);
	} else {
		op->ino = pick(m, false);
	}
	snprintf(g->desc, sizeof(g->desc),
		 "%s ino=%llu parent=%llu name='%.10s' newparent=%llu newname='%.10s' flags=%#x "
		 "valid=%#x size=%llu next=%zu",
		 itab_op_name(op->code), (unsigned long long)op->ino,
		 (unsigned long long)op->parent, op->name, (unsigned long long)op->newparent,
		 op->newname, op->flags, op->valid, (unsigned long long)op->size, op->n_extents);
}

struct dirlist {
	int n;
	char name[16][16];
	uint64_t ino[16];
};

static int dl_cb(void *ctx, const char *name, size_t nl, uint64_t ino, uint32_t type,
		 uint64_t cookie)
{
	struct dirlist *d = ctx;
	(void)type, (void)cookie;
	if (d->n < 16 && nl < 16) {
		memcpy(d->name[d->n], name, nl);
		d->name[d->n][nl] = '\0';
		d->ino[d->n] = ino;
	}
	d->n++;
	return 0;
}

struct extlist {
	uint8_t eh[NBLK];
	uint32_t el[NBLK];
	int bad;
};

static int el_cb(void *ctx, uint64_t index, const uint8_t *hash, uint32_t len)
{
	struct extlist *e = ctx;
	if (index >= NBLK) {
		e->bad++;
		return 0;
	}
	e->eh[index] = hash[0];
	e->el[index] = len;
	return 0;
}

static int orph_cb(void *ctx, uint64_t ino)
{
	struct model *m = ctx;
	return (ino < MAXN && m->n[ino].live && m->n[ino].orphan) ? 0 : -1;
}

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("MISMATCH seed=%llu: ", (unsigned long long)seed);           \
			printf(__VA_ARGS__);                                               \
			printf("\n");                                                      \
			return -1;                                                         \
		}                                                                          \
	} while (0)

/* Compare every inode of the model with the table. */
static int compare(struct model *m, struct fx *f, uint64_t seed)
{
	struct itab_statfs st;
	itab_statfs(f->t, &st);
	CHECK(st.next_ino == m->next_ino, "next_ino %llu vs %llu",
	      (unsigned long long)st.next_ino, (unsigned long long)m->next_ino);
	uint64_t live = 0, blocks = 0;
	for (int h = 1; h < NHASH; h++) {
		uint8_t hash[ITAB_HASH_LEN];
		mkhash(hash, (uint8_t)h);
		CHECK(itab_block_refs(f->t, hash) == (uint64_t)m->refs[h], "refs of %d: %llu vs %lld",
		      h, (unsigned long long)itab_block_refs(f->t, hash), (long long)m->refs[h]);
		blocks += m->refs[h] > 0;
	}
	CHECK(st.blocks == blocks, "distinct blocks %llu vs %llu", (unsigned long long)st.blocks,
	      (unsigned long long)blocks);
	for (uint64_t i = 1; i < m->next_ino; i++) {
		struct mn *x = &m->n[i];
		struct itab_attr a;
		int rc = itab_getattr(f->t, i, &a);
		if (!x->live) {
			CHECK(rc == -ENOENT, "ino %llu should be gone", (unsigned long long)i);
			continue;
		}
		live++;
		CHECK(rc == 0, "ino %llu missing", (unsigned long long)i);
		CHECK(a.mode == x->mode, "ino %llu mode %o vs %o", (unsigned long long)i, a.mode,
		      x->mode);
		CHECK(a.uid == x->uid && a.gid == x->gid, "ino %llu owner", (unsigned long long)i);
		CHECK(a.nlink == nlink_of(m, x), "ino %llu nlink %u vs %u", (unsigned long long)i,
		      a.nlink, nlink_of(m, x));
		uint64_t size = isdir(x) ? dsize(x) : x->size;
		CHECK(a.size == size, "ino %llu size %llu vs %llu", (unsigned long long)i,
		      (unsigned long long)a.size, (unsigned long long)size);
		uint64_t b = 0;
		for (int k = 0; k < NBLK; k++)
			b += x->eh[k] ? (x->el[k] + 511) / 512 : 0;
		CHECK(a.blocks == b, "ino %llu blocks %llu vs %llu", (unsigned long long)i,
		      (unsigned long long)a.blocks, (unsigned long long)b);
		if (isdir(x)) {
			CHECK(a.parent == x->parent || i == 1, "ino %llu parent",
			      (unsigned long long)i);
			struct dirlist d = {0};
			CHECK(itab_readdir(f->t, i, 0, dl_cb, &d) == 0, "readdir %llu",
			      (unsigned long long)i);
			CHECK(d.n == (int)dsize(x), "dir %llu has %d entries, model %u",
			      (unsigned long long)i, d.n, dsize(x));
			for (int k = 0; k < d.n; k++) {
				int id = -1;
				for (int n = 0; n < NVALID; n++)
					if (strcmp(d.name[k], name_of(n)) == 0)
						id = n;
				CHECK(id >= 0 && x->child[id] == d.ino[k], "dir %llu entry '%s'",
				      (unsigned long long)i, d.name[k]);
			}
		}
		if ((x->mode & S_IFMT) == S_IFLNK) {
			char buf[32];
			long n = itab_readlink(f->t, i, buf, sizeof(buf));
			CHECK(n == (long)strlen(x->target) && memcmp(buf, x->target, (size_t)n) == 0,
			      "symlink %llu target", (unsigned long long)i);
		}
		for (int k = 0; k < 3; k++) {
			char v[4];
			long n = itab_getxattr(f->t, i, xnames[k], 6, v, sizeof(v));
			if (x->xhas[k])
				CHECK(n == 1 && v[0] == x->xval[k], "ino %llu xattr %s",
				      (unsigned long long)i, xnames[k]);
			else
				CHECK(n == -ENODATA, "ino %llu has extra xattr %s",
				      (unsigned long long)i, xnames[k]);
		}
		struct extlist e = {0};
		CHECK(itab_extents(f->t, i, 0, UINT64_MAX, el_cb, &e) == 0 && !e.bad,
		      "extents of %llu", (unsigned long long)i);
		for (int k = 0; k < NBLK; k++)
			CHECK(e.eh[k] == x->eh[k] && (!x->eh[k] || e.el[k] == x->el[k]),
			      "ino %llu extent %d: %u/%u vs %u/%u", (unsigned long long)i, k, e.eh[k],
			      e.el[k], x->eh[k], x->el[k]);
	}
	CHECK(st.inodes == live, "inode count %llu vs %llu", (unsigned long long)st.inodes,
	      (unsigned long long)live);
	CHECK(itab_orphans(f->t, orph_cb, m) == 0, "orphan list has a non-orphan");
	return 0;
}

/* Run one sequence; returns 0 or -1 (after printing why). */
static long stat_ok[ITAB_OP__COUNT], stat_total[ITAB_OP__COUNT];

static int run_sequence(uint64_t seed, int nops, bool replay)
{
	static struct model m;
	struct fx f;
	struct itab_config cfg = {.block_size = BS};
	memset(&m, 0, sizeof(m));
	m.next_ino = 2;
	m.n[1] = (struct mn){.live = true, .mode = S_IFDIR | 0755, .parent = 1};
	memset(&f, 0, sizeof(f));
	snprintf(f.dir, sizeof(f.dir), "/tmp/itab-model-XXXXXX");
	assert_non_null(mkdtemp(f.dir));
	char p[128];
	snprintf(p, sizeof(p), "%s/db", f.dir);
	assert_int_equal(itab_open(p, &cfg, &f.t), 0);
	rnd_state = seed * 0x9E3779B97F4A7C15ULL + 1;
	uint8_t **log = calloc((size_t)nops, sizeof(*log));
	size_t *loglen = calloc((size_t)nops, sizeof(*loglen));
	int fail = 0;
	for (int i = 0; i < nops && !fail; i++) {
		struct gen g;
		gen_op(&m, &g);
		int64_t before[NHASH];
		memcpy(before, m.refs, sizeof(before));
		int want = model_apply(&m, &g.op, g.nid, g.nnid, g.xid, g.eh);
		size_t n = itab_op_encoded_size(&g.op);
		log[i] = malloc(n);
		loglen[i] = (size_t)itab_op_encode(&g.op, log[i], n);
		int rc = itab_apply(f.t, ++f.index, log[i], loglen[i], &f.res);
		int got = rc ? -1000 + rc : f.res.err;
		stat_total[g.op.code]++;
		stat_ok[g.op.code] += got == 0;
		if (got != want) {
			printf("MISMATCH seed=%llu op #%d %s: itab %d, model %d\n",
			       (unsigned long long)seed, i, g.desc, got, want);
			fail = 1;
			break;
		}
		int freed = 0;
		for (int h = 1; h < NHASH; h++)
			freed += before[h] > 0 && m.refs[h] == 0;
		bool ok = (int)f.res.n_freed == freed;
		for (size_t k = 0; ok && k < f.res.n_freed; k++) {
			uint8_t h = f.res.freed[k][0];
			ok = h > 0 && h < NHASH && before[h] > 0 && m.refs[h] == 0;
		}
		if (!ok) {
			printf("MISMATCH seed=%llu op #%d %s: freed %zu blocks, model %d\n",
			       (unsigned long long)seed, i, g.desc, f.res.n_freed, freed);
			fail = 1;
		}
	}
	if (!fail && compare(&m, &f, seed))
		fail = 1;
	if (!fail && replay) { /* same entries -> byte-identical table */
		struct itab *t2;
		snprintf(p, sizeof(p), "%s/db2", f.dir);
		assert_int_equal(itab_open(p, &cfg, &t2), 0);
		struct itab_result r;
		for (int i = 0; i < nops; i++)
			assert_int_equal(itab_apply(t2, (uint64_t)i + 1, log[i], loglen[i], &r), 0);
		struct snapbuf a = {0}, b = {0};
		assert_int_equal(itab_snapshot(f.t, snap_cb, &a), 0);
		assert_int_equal(itab_snapshot(t2, snap_cb, &b), 0);
		if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0) {
			printf("MISMATCH seed=%llu: replayed table differs\n",
			       (unsigned long long)seed);
			fail = 1;
		}
		free(a.p), free(b.p);
		itab_close(t2);
	}
	for (int i = 0; i < nops; i++)
		free(log[i]);
	free(log), free(loglen);
	fx_close(&f);
	return fail ? -1 : 0;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : def;
}

static void test_random_op_sequences_match_reference_model(void **state)
{
	(void)state;
	memset(longname, 'n', 256);
	uint64_t base = env_u64("SEED", (uint64_t)time(NULL));
	int seqs = (int)env_u64("SEQS", 200), ops = (int)env_u64("OPS", 300);
	printf("itab model test: SEED=%llu SEQS=%d OPS=%d (sequence i uses seed SEED+i)\n",
	       (unsigned long long)base, seqs, ops);
	int failures = 0;
	for (int s = 0; s < seqs; s++) {
		if (run_sequence(base + (uint64_t)s, ops, s % 10 == 0)) {
			printf("replay: SEED=%llu SEQS=1 OPS=%d %s\n",
			       (unsigned long long)(base + (uint64_t)s), ops, "fs_itab_model");
			failures++;
			break;
		}
	}
	for (int c = 1; c < ITAB_OP__COUNT; c++)
		printf("  %-15s %6ld applied, %6ld succeeded\n", itab_op_name((unsigned)c),
		       stat_total[c], stat_ok[c]);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_op_sequences_match_reference_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
