/* Shared helpers for the itab unit tests: a temp-dir fixture and op builders. */
#ifndef SANDFS_TEST_ITAB_UTIL_H
#define SANDFS_TEST_ITAB_UTIL_H

#include "fs/itab.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
	char dir[64];
	struct itab *t;
	uint64_t index;          /* last log index used */
	struct itab_result res;  /* result of the last apply */
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

/* Remove a directory tree (test temp dirs only). */
static inline void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Create a temp dir and open an itab in <dir>/db. Returns 0. */
static inline int fx_open(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/itab-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -errno;
	char p[128];
	snprintf(p, sizeof(p), "%s/db", f->dir);
	return itab_open(p, NULL, &f->t);
}

/* Open a second itab in <dir>/<name>. */
static inline int fx_open_other(struct fx *f, const char *name, struct itab **t)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/%s", f->dir, name);
	return itab_open(p, NULL, t);
}

static inline void fx_close(struct fx *f)
{
	itab_close(f->t);
	f->t = NULL;
	rm_tree(f->dir);
}

/* Encode op and apply it at the next index; returns res.err (or the
 * itab_apply error, which tests treat as a failure: -1000 + rc). */
/* cmocka setup/teardown: a fresh table in *state. */
static inline int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(fx_open(f), 0);
	*state = f;
	return 0;
}

static inline int fx_teardown(void **state)
{
	struct fx *f = *state;
	fx_close(f);
	free(f);
	return 0;
}

static inline int fx_apply(struct fx *f, const struct itab_op *op)
{
	size_t n = itab_op_encoded_size(op);
	uint8_t *buf = malloc(n ? n : 1);
	long len = itab_op_encode(op, buf, n);
	if (len < 0) {
		free(buf);
		return -2000;
	}
	int rc = itab_apply(f->t, ++f->index, buf, (size_t)len, &f->res);
	free(buf);
	return rc ? -1000 + rc : f->res.err;
}

static inline struct itab_op op_mk(uint8_t code, uint64_t parent, const char *name)
{
	struct itab_op op = {.code = code, .parent = parent, .now_ns = 1000};
	if (name) {
		op.name = name;
		op.name_len = strlen(name);
	}
	return op;
}

static inline int do_create(struct fx *f, uint64_t parent, const char *name, uint32_t mode)
{
	struct itab_op op = op_mk(ITAB_OP_CREATE, parent, name);
	op.mode = mode;
	return fx_apply(f, &op);
}

static inline int do_mkdir(struct fx *f, uint64_t parent, const char *name)
{
	struct itab_op op = op_mk(ITAB_OP_MKDIR, parent, name);
	op.mode = 0755;
	return fx_apply(f, &op);
}

static inline int do_symlink(struct fx *f, uint64_t parent, const char *name, const char *tg)
{
	struct itab_op op = op_mk(ITAB_OP_SYMLINK, parent, name);
	op.target = tg;
	op.target_len = strlen(tg);
	return fx_apply(f, &op);
}

static inline int do_link(struct fx *f, uint64_t ino, uint64_t parent, const char *name)
{
	struct itab_op op = op_mk(ITAB_OP_LINK, parent, name);
	op.ino = ino;
	return fx_apply(f, &op);
}

static inline int do_unlink(struct fx *f, uint64_t parent, const char *name, uint32_t flags)
{
	struct itab_op op = op_mk(ITAB_OP_UNLINK, parent, name);
	op.flags = flags;
	return fx_apply(f, &op);
}

static inline int do_rmdir(struct fx *f, uint64_t parent, const char *name)
{
	struct itab_op op = op_mk(ITAB_OP_RMDIR, parent, name);
	return fx_apply(f, &op);
}

static inline int do_rename(struct fx *f, uint64_t p, const char *n, uint64_t np, const char *nn,
			    uint32_t flags)
{
	struct itab_op op = op_mk(ITAB_OP_RENAME, p, n);
	op.newparent = np;
	op.newname = nn;
	op.newname_len = strlen(nn);
	op.flags = flags;
	return fx_apply(f, &op);
}

static inline int do_truncate(struct fx *f, uint64_t ino, uint64_t size)
{
	struct itab_op op = op_mk(ITAB_OP_SETATTR, 0, NULL);
	op.ino = ino;
	op.valid = ITAB_SET_SIZE;
	op.size = size;
	return fx_apply(f, &op);
}

static inline int do_setxattr(struct fx *f, uint64_t ino, const char *n, const char *v,
			      uint32_t flags)
{
	struct itab_op op = op_mk(ITAB_OP_SETXATTR, 0, NULL);
	op.ino = ino;
	op.xname = n;
	op.xname_len = strlen(n);
	op.value = v;
	op.value_len = strlen(v);
	op.flags = flags;
	return fx_apply(f, &op);
}

static inline int do_removexattr(struct fx *f, uint64_t ino, const char *n)
{
	struct itab_op op = op_mk(ITAB_OP_REMOVEXATTR, 0, NULL);
	op.ino = ino;
	op.xname = n;
	op.xname_len = strlen(n);
	return fx_apply(f, &op);
}

/* A test block hash: 32 bytes, all set to b (b != 0). */
static inline void mkhash(uint8_t h[ITAB_HASH_LEN], uint8_t b)
{
	memset(h, b, ITAB_HASH_LEN);
}

static inline int do_release(struct fx *f, uint64_t ino)
{
	struct itab_op op = op_mk(ITAB_OP_RELEASE_ORPHAN, 0, NULL);
	op.ino = ino;
	return fx_apply(f, &op);
}

/* Look up a name, returning the ino or 0. */
static inline uint64_t lk(struct fx *f, uint64_t parent, const char *name)
{
	uint64_t ino = 0;
	if (itab_lookup(f->t, parent, name, strlen(name), &ino, NULL))
		return 0;
	return ino;
}

static inline struct itab_attr ga(struct fx *f, uint64_t ino)
{
	struct itab_attr a;
	memset(&a, 0, sizeof(a));
	itab_getattr(f->t, ino, &a);
	return a;
}

struct snapbuf {
	uint8_t *p;
	size_t len, cap;
};

static inline int snap_cb(void *ctx, const void *buf, size_t len)
{
	struct snapbuf *s = ctx;
	if (s->len + len > s->cap) {
		size_t cap = (s->len + len) * 2;
		uint8_t *n = realloc(s->p, cap);
		if (!n)
			return -ENOMEM;
		s->p = n, s->cap = cap;
	}
	memcpy(s->p + s->len, buf, len);
	s->len += len;
	return 0;
}

#endif
