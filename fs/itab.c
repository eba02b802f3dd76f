/*
 * The inode table: opening the LevelDB, local reads, snapshot and restore.
 * Applying log entries lives in itab_ops.c, byte formats in itab_codec.c.
 *
 * Readers take t->lock shared; the apply thread takes it exclusive only
 * around leveldb_write() + the in-memory counter update, so a reader sees
 * either all of an entry or none of it.
 */
#include "fs/itab_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_LEN 13
#define SNAP_MAGIC "SANDITAB"
#define SNAP_VERSION 1
#define SNAP_END 0xFFFFFFFFu

/* Fetch key k: 0 with *val (free with leveldb_free), -ENOENT, or -EIO. */
int db_get(struct itab *t, const leveldb_readoptions_t *ro, const uint8_t *k, size_t kl,
	   char **val, size_t *vl)
{
	char *err = NULL;
	*val = leveldb_get(t->db, ro ? ro : t->ropts, (const char *)k, kl, vl, &err);
	if (err) {
		leveldb_free(err);
		*val = NULL;
		return -EIO;
	}
	return *val ? 0 : -ENOENT;
}

/* Read and decode inode ino. */
int db_inode(struct itab *t, uint64_t ino, struct inode *in)
{
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	int rc = db_get(t, NULL, k, key_ino(k, 'I', ino), &v, &vl);
	if (rc)
		return rc;
	rc = inode_decode(ino, v, vl, in);
	leveldb_free(v);
	return rc;
}

/* Read and decode the dentry (parent, name). */
int db_dent(struct itab *t, uint64_t parent, const char *name, size_t nl, struct dent *d)
{
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	if (nl > ITAB_NAME_MAX)
		return -ENAMETOOLONG;
	int rc = db_get(t, NULL, k, key_ino_name(k, 'D', parent, name, nl), &v, &vl);
	if (rc)
		return rc;
	rc = dent_decode(v, vl, d);
	leveldb_free(v);
	return rc;
}

/* Find (or, if add, insert) the dedupe memory of origin; NULL if absent. */
static struct dedupe_origin *dd_find(struct itab *t, uint64_t origin, bool add)
{
	size_t lo = 0, hi = t->n_dd;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->dd[mid].origin == origin)
			return &t->dd[mid];
		if (t->dd[mid].origin < origin)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!add)
		return NULL;
	struct dedupe_origin *n = realloc(t->dd, (t->n_dd + 1) * sizeof(*n));
	if (!n)
		return NULL;
	t->dd = n;
	memmove(&n[lo + 1], &n[lo], (t->n_dd - lo) * sizeof(*n));
	t->n_dd++;
	memset(&n[lo], 0, sizeof(n[lo]));
	n[lo].origin = origin;
	return &n[lo];
}

/* Dedupe memory of origin (see itab_internal.h). */
struct dedupe_origin *itab_dd_find(struct itab *t, uint64_t origin, bool add)
{
	return dd_find(t, origin, add);
}

/* Iterate all keys starting with prefix p (pl bytes); cb returns non-zero
 * to stop (that value is returned). ro may carry a snapshot. */
static int scan(struct itab *t, const leveldb_readoptions_t *ro, const uint8_t *p, size_t pl,
		const uint8_t *start, size_t sl,
		int (*cb)(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl),
		void *ctx)
{
	leveldb_iterator_t *it = leveldb_create_iterator(t->db, ro ? ro : t->ropts);
	int rc = 0;
	if (start)
		leveldb_iter_seek(it, (const char *)start, sl);
	else
		leveldb_iter_seek(it, (const char *)p, pl);
	for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t kl, vl;
		const char *k = leveldb_iter_key(it, &kl);
		if (kl < pl || memcmp(k, p, pl) != 0)
			break;
		const char *v = leveldb_iter_value(it, &vl);
		rc = cb(ctx, (const uint8_t *)k, kl, (const uint8_t *)v, vl);
		if (rc)
			break;
	}
	char *err = NULL;
	leveldb_iter_get_error(it, &err);
	if (err) {
		leveldb_free(err);
		rc = -EIO;
	}
	leveldb_iter_destroy(it);
	return rc;
}

/* Prefix scan over the committed state (see itab_internal.h). */
int itab_scan(struct itab *t, const uint8_t *p, size_t pl, const uint8_t *start, size_t sl,
	      int (*cb)(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl),
	      void *ctx)
{
	return scan(t, NULL, p, pl, start, sl, cb, ctx);
}

/* Prefix scan at a LevelDB snapshot (see itab_internal.h). */
int itab_scan_at(struct itab *t, const leveldb_readoptions_t *ro, const uint8_t *p, size_t pl,
		 const uint8_t *start, size_t sl, itab_scan_cb cb, void *ctx)
{
	return scan(t, ro, p, pl, start, sl, cb, ctx);
}

/* Load a low-water record 'M''w' origin. */
static int load_lw(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct itab *t = ctx;
	if (kl != 10 || vl != 8)
		return -EIO;
	struct dedupe_origin *o = dd_find(t, be_get64(k + 2), true);
	if (!o)
		return -ENOMEM;
	o->low_water = be_get64(v);
	return 0;
}

/* Load a remembered result 'M''d' origin seq (keys come sorted by seq). */
static int load_result(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct itab *t = ctx;
	if (kl != 18)
		return -EIO;
	struct dedupe_origin *o = dd_find(t, be_get64(k + 2), true);
	if (!o)
		return -ENOMEM;
	if (o->n == ITAB_DEDUPE_KEEP)
		return -EIO;
	struct dedupe_slot *s = &o->slot[o->n];
	s->seq = be_get64(k + 10);
	if (result_decode(v, vl, &s->r))
		return -EIO;
	o->n++;
	return 0;
}

/* Parse the config value. */
static int config_decode(const char *v, size_t vl, uint32_t *bs, uint64_t *cid)
{
	const uint8_t *p = (const uint8_t *)v;
	if (vl != CONFIG_LEN || p[0] != ITAB_FORMAT)
		return -EINVAL;
	*bs = be_get32(p + 1);
	*cid = be_get64(p + 5);
	return *bs ? 0 : -EINVAL;
}

/* (Re)load config, counters and dedupe memory from the DB. */
int itab_load_state(struct itab *t)
{
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	int rc = db_get(t, NULL, k, key_meta(k, 'K'), &v, &vl);
	if (rc)
		return rc == -ENOENT ? -EINVAL : rc;
	rc = config_decode(v, vl, &t->block_size, &t->cluster_id);
	leveldb_free(v);
	if (rc)
		return rc;
	rc = db_get(t, NULL, k, key_meta(k, 'S'), &v, &vl);
	if (rc)
		return rc == -ENOENT ? -EINVAL : rc;
	if (vl != 32) {
		leveldb_free(v);
		return -EIO;
	}
	const uint8_t *p = (const uint8_t *)v;
	t->ctr.next_ino = be_get64(p);
	t->ctr.applied = be_get64(p + 8);
	t->ctr.inodes = be_get64(p + 16);
	t->ctr.blocks = be_get64(p + 24);
	leveldb_free(v);
	free(t->dd);
	t->dd = NULL;
	t->n_dd = 0;
	uint8_t pfx[2];
	rc = scan(t, NULL, pfx, key_meta(pfx, 'w'), NULL, 0, load_lw, t);
	if (!rc)
		rc = scan(t, NULL, pfx, key_meta(pfx, 'd'), NULL, 0, load_result, t);
	return rc;
}

/* Create config, root and counters in an empty DB (one synced batch). */
static int bootstrap(struct itab *t, uint32_t bs, uint64_t cid)
{
	uint8_t k[KEY_MAX], v[INODE_ENC_LEN], c[32];
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	v[0] = ITAB_FORMAT;
	be_put32(v + 1, bs);
	be_put64(v + 5, cid);
	leveldb_writebatch_put(wb, (char *)k, key_meta(k, 'K'), (char *)v, CONFIG_LEN);
	struct inode root = {
		.a = {.ino = ITAB_ROOT_INO, .mode = S_IFDIR | 0755, .nlink = 2, .generation = 1,
		      .parent = ITAB_ROOT_INO},
		.next_cookie = ITAB_COOKIE_FIRST,
	};
	inode_encode(&root, v);
	leveldb_writebatch_put(wb, (char *)k, key_ino(k, 'I', ITAB_ROOT_INO), (char *)v,
			       INODE_ENC_LEN);
	struct counters ctr = {.next_ino = ITAB_ROOT_INO + 1, .inodes = 1};
	counters_encode(&ctr, c);
	leveldb_writebatch_put(wb, (char *)k, key_meta(k, 'S'), (char *)c, 32);
	char *err = NULL;
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(wo, 1);
	leveldb_write(t->db, wo, wb, &err);
	leveldb_writeoptions_destroy(wo);
	leveldb_writebatch_destroy(wb);
	if (err) {
		leveldb_free(err);
		return -EIO;
	}
	return 0;
}

/* True if the DB holds no key at all. */
static bool db_empty(struct itab *t)
{
	leveldb_iterator_t *it = leveldb_create_iterator(t->db, t->ropts);
	leveldb_iter_seek_to_first(it);
	bool empty = !leveldb_iter_valid(it);
	leveldb_iter_destroy(it);
	return empty;
}

/* Open or create the table. */
/* The errno for a LevelDB open error, and what the user can do. */
static int open_errno(const char *lerr, const char **hint)
{
	*hint = "";
	if (strstr(lerr, "lock") || strstr(lerr, "LOCK:")) {
		if (strstr(lerr, "Not a directory"))
			return -ENOTDIR;
		*hint = "; another process has it open (stop it first)";
		return -EBUSY;
	}
	if (strstr(lerr, "Corruption")) {
		*hint = "; the table is damaged: restore the directory from a "
			"backup, or give this node a new data directory and "
			"add it back to the cluster";
		return -EUCLEAN;
	}
	if (strstr(lerr, "Permission denied"))
		return -EACCES;
	if (strstr(lerr, "Not a directory"))
		return -ENOTDIR;
	if (strstr(lerr, "No space left"))
		return -ENOSPC;
	return -EIO;
}

static void set_err(char *err, size_t errcap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errcap, const char *fmt, ...)
{
	if (!err || !errcap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
}

int itab_open(const char *path, const struct itab_config *cfg, struct itab **out)
{
	return itab_open_err(path, cfg, out, NULL, 0);
}

int itab_open_err(const char *path, const struct itab_config *cfg,
		  struct itab **out, char *err, size_t errcap)
{
	uint32_t want_bs = cfg && cfg->block_size ? cfg->block_size : ITAB_DEFAULT_BLOCK_SIZE;
	uint64_t want_cid = cfg ? cfg->cluster_id : 0;
	struct itab *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = -EIO;
	/* Writer-preferring: glibc's default rwlock prefers readers, so a
	 * steady stream of overlapping reads (FUSE workers doing stat, lookup,
	 * readdir) could keep the apply thread -- the replicator, which also
	 * sends the heartbeats -- out of itab_apply() indefinitely. With this
	 * kind a read lock is never taken twice by one thread (a reader that
	 * blocks behind a waiting writer while holding the lock deadlocks):
	 * read callbacks must not call back into itab (see itab.h). */
	pthread_rwlockattr_t la;
	pthread_rwlockattr_init(&la);
	pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&t->lock, &la);
	pthread_rwlockattr_destroy(&la);
	t->opts = leveldb_options_create();
	t->cache = leveldb_cache_create_lru(8u << 20);
	t->filter = leveldb_filterpolicy_create_bloom(10);
	leveldb_options_set_create_if_missing(t->opts, 1);
	leveldb_options_set_cache(t->opts, t->cache);
	leveldb_options_set_filter_policy(t->opts, t->filter);
	t->ropts = leveldb_readoptions_create();
	t->wopts = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(t->wopts, 0); /* the raft log is the durable record */
	t->wb = leveldb_writebatch_create();
	char *lerr = NULL;
	t->db = leveldb_open(t->opts, path, &lerr);
	if (lerr) {
		const char *hint;
		rc = open_errno(lerr, &hint);
		set_err(err, errcap, "cannot open the inode table %s: %s%s",
			path, lerr, hint);
		leveldb_free(lerr);
		t->db = NULL;
		goto fail;
	}
	if (db_empty(t) && (rc = bootstrap(t, want_bs, want_cid))) {
		set_err(err, errcap, "cannot create the inode table in %s: %s",
			path, strerror(-rc));
		goto fail;
	}
	if ((rc = itab_load_state(t))) {
		set_err(err, errcap,
			"the inode table in %s is unreadable or damaged (%s)",
			path, strerror(-rc));
		goto fail;
	}
	if ((cfg && cfg->block_size && cfg->block_size != t->block_size) ||
	    (want_cid && t->cluster_id && want_cid != t->cluster_id)) {
		set_err(err, errcap,
			"the inode table in %s belongs to another cluster or "
			"block size (cluster %016llx, block size %u)",
			path, (unsigned long long)t->cluster_id,
			(unsigned)t->block_size);
		rc = -EINVAL;
		goto fail;
	}
	*out = t;
	return 0;
fail:
	itab_close(t);
	return rc;
}

/* Close the table and free everything. */
void itab_close(struct itab *t)
{
	if (!t)
		return;
	if (t->db)
		leveldb_close(t->db);
	leveldb_writebatch_destroy(t->wb);
	leveldb_readoptions_destroy(t->ropts);
	leveldb_writeoptions_destroy(t->wopts);
	leveldb_options_destroy(t->opts);
	leveldb_cache_destroy(t->cache);
	leveldb_filterpolicy_destroy(t->filter);
	pthread_rwlock_destroy(&t->lock);
	free(t->dd);
	free(t->freed);
	free(t);
}

/* Highest applied index. */
uint64_t itab_applied_index(struct itab *t)
{
	pthread_rwlock_rdlock(&t->lock);
	uint64_t v = t->ctr.applied;
	pthread_rwlock_unlock(&t->lock);
	return v;
}

/* Durability point: rewrite the counters key (same value) with sync=true.
 * LevelDB syncs its log up to and including this record, and everything
 * older is either in that log or in already-synced tables. */
int itab_sync(struct itab *t)
{
	uint8_t k[2], c[32];
	char *err = NULL;
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(wo, 1);
	pthread_rwlock_wrlock(&t->lock);
	counters_encode(&t->ctr, c);
	leveldb_put(t->db, wo, (char *)k, key_meta(k, 'S'), (char *)c, 32, &err);
	pthread_rwlock_unlock(&t->lock);
	leveldb_writeoptions_destroy(wo);
	if (err) {
		leveldb_free(err);
		return -EIO;
	}
	return 0;
}

/* Block size of this table (fixed). */
uint32_t itab_block_size(struct itab *t)
{
	return t->block_size;
}

/* getattr. */
int itab_getattr(struct itab *t, uint64_t ino, struct itab_attr *attr)
{
	struct inode in;
	pthread_rwlock_rdlock(&t->lock);
	int rc = db_inode(t, ino, &in);
	pthread_rwlock_unlock(&t->lock);
	if (rc == 0)
		*attr = in.a;
	return rc;
}

/* lookup, with "." and ".." resolved through the directory's parent. */
int itab_lookup(struct itab *t, uint64_t parent, const char *name, size_t name_len,
		uint64_t *ino, struct itab_attr *attr)
{
	struct inode dir, child;
	struct dent d;
	if (name_len > ITAB_NAME_MAX)
		return -ENAMETOOLONG;
	if (name_len == 0)
		return -ENOENT;
	pthread_rwlock_rdlock(&t->lock);
	int rc = db_inode(t, parent, &dir);
	if (rc == 0 && !is_type(dir.a.mode, S_IFDIR))
		rc = -ENOTDIR;
	if (rc)
		goto out;
	if (name_len == 1 && name[0] == '.')
		d.ino = parent;
	else if (name_len == 2 && name[0] == '.' && name[1] == '.')
		d.ino = dir.a.parent;
	else if ((rc = db_dent(t, parent, name, name_len, &d)))
		goto out;
	rc = db_inode(t, d.ino, &child);
	if (rc == -ENOENT)
		rc = -EIO; /* a dentry without inode: broken table */
	if (rc == 0) {
		*ino = d.ino;
		if (attr)
			*attr = child.a;
	}
out:
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

struct readdir_ctx {
	itab_dirent_cb cb;
	void *ctx;
};

/* One 'C' record -> callback. Value: u64 ino, u8 type, name. */
static int readdir_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct readdir_ctx *c = ctx;
	if (kl != 17 || vl < 9)
		return -EIO;
	return c->cb(c->ctx, (const char *)v + 9, vl - 9, be_get64(v), (uint32_t)v[8] << 12,
		     be_get64(k + 9));
}

/* readdir in cookie order from start. */
int itab_readdir(struct itab *t, uint64_t dir, uint64_t start, itab_dirent_cb cb, void *ctx)
{
	struct inode in;
	uint8_t p[KEY_MAX], s[KEY_MAX];
	pthread_rwlock_rdlock(&t->lock);
	int rc = db_inode(t, dir, &in);
	if (rc == 0 && !is_type(in.a.mode, S_IFDIR))
		rc = -ENOTDIR;
	if (rc == 0) {
		struct readdir_ctx c = {cb, ctx};
		if (start < ITAB_COOKIE_FIRST)
			start = ITAB_COOKIE_FIRST;
		rc = scan(t, NULL, p, key_ino(p, 'C', dir), s, key_ino_u64(s, 'C', dir, start),
			  readdir_one, &c);
		if (rc > 0)
			rc = 0; /* the callback stopped */
	}
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

/* readlink. */
long itab_readlink(struct itab *t, uint64_t ino, char *buf, size_t cap)
{
	struct inode in;
	uint8_t k[KEY_MAX];
	char *v = NULL;
	size_t vl = 0;
	pthread_rwlock_rdlock(&t->lock);
	long rc = db_inode(t, ino, &in);
	if (rc == 0 && !is_type(in.a.mode, S_IFLNK))
		rc = -EINVAL;
	if (rc == 0) {
		rc = db_get(t, NULL, k, key_ino(k, 'L', ino), &v, &vl);
		if (rc == -ENOENT)
			rc = -EIO; /* symlink without target: broken table */
	}
	pthread_rwlock_unlock(&t->lock);
	if (rc)
		return rc;
	memcpy(buf, v, vl < cap ? vl : cap);
	leveldb_free(v);
	return (long)vl;
}

/* getxattr. */
long itab_getxattr(struct itab *t, uint64_t ino, const char *name, size_t name_len, void *buf,
		   size_t cap)
{
	struct inode in;
	uint8_t k[KEY_MAX];
	char *v = NULL;
	size_t vl = 0;
	if (name_len == 0 || name_len > ITAB_XATTR_NAME_MAX)
		return -ERANGE;
	pthread_rwlock_rdlock(&t->lock);
	long rc = db_inode(t, ino, &in);
	if (rc == 0) {
		rc = db_get(t, NULL, k, key_ino_name(k, 'X', ino, name, name_len), &v, &vl);
		if (rc == -ENOENT)
			rc = -ENODATA;
	}
	pthread_rwlock_unlock(&t->lock);
	if (rc)
		return rc;
	if (cap && vl > cap)
		rc = -ERANGE;
	else if (cap)
		memcpy(buf, v, vl);
	leveldb_free(v);
	return rc ? rc : (long)vl;
}

struct listx_ctx {
	char *buf;
	size_t cap, len;
};

/* One 'X' key -> append its name and a NUL. */
static int listx_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct listx_ctx *c = ctx;
	size_t nl = kl - 9;
	if (c->cap && c->len + nl + 1 <= c->cap) {
		memcpy(c->buf + c->len, k + 9, nl);
		c->buf[c->len + nl] = '\0';
	}
	c->len += nl + 1;
	return 0;
}

/* listxattr. */
long itab_listxattr(struct itab *t, uint64_t ino, char *buf, size_t cap)
{
	struct inode in;
	uint8_t p[KEY_MAX];
	struct listx_ctx c = {buf, cap, 0};
	pthread_rwlock_rdlock(&t->lock);
	long rc = db_inode(t, ino, &in);
	if (rc == 0)
		rc = scan(t, NULL, p, key_ino(p, 'X', ino), NULL, 0, listx_one, &c);
	pthread_rwlock_unlock(&t->lock);
	if (rc)
		return rc;
	if (cap && c.len > cap)
		return -ERANGE;
	return (long)c.len;
}

struct ext_ctx {
	itab_extent_cb cb;
	void *ctx;
	uint64_t end;
};

/* One 'E' record -> callback, until index reaches end. */
static int ext_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct ext_ctx *c = ctx;
	if (kl != 17 || vl != ITAB_HASH_LEN + 4)
		return -EIO;
	uint64_t idx = be_get64(k + 9);
	if (idx >= c->end)
		return 1;
	return c->cb(c->ctx, idx, v, be_get32(v + ITAB_HASH_LEN));
}

/* Enumerate extents in [first, first + n). */
int itab_extents(struct itab *t, uint64_t ino, uint64_t first, uint64_t n, itab_extent_cb cb,
		 void *ctx)
{
	struct inode in;
	uint8_t p[KEY_MAX], s[KEY_MAX];
	struct ext_ctx c = {cb, ctx, first + n < first ? UINT64_MAX : first + n};
	pthread_rwlock_rdlock(&t->lock);
	int rc = db_inode(t, ino, &in);
	if (rc == 0)
		rc = scan(t, NULL, p, key_ino(p, 'E', ino), s, key_ino_u64(s, 'E', ino, first),
			  ext_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

/* Reference count of a block. */
uint64_t itab_block_refs(struct itab *t, const uint8_t hash[ITAB_HASH_LEN])
{
	uint8_t k[1 + ITAB_HASH_LEN];
	char *v;
	size_t vl;
	uint64_t n = 0;
	k[0] = 'B';
	memcpy(k + 1, hash, ITAB_HASH_LEN);
	pthread_rwlock_rdlock(&t->lock);
	if (db_get(t, NULL, k, sizeof(k), &v, &vl) == 0) {
		if (vl == 8)
			n = be_get64((const uint8_t *)v);
		leveldb_free(v);
	}
	pthread_rwlock_unlock(&t->lock);
	return n;
}

struct blocks_ctx {
	int (*cb)(void *ctx, const uint8_t hash[ITAB_HASH_LEN]);
	void *ctx;
};

/* One 'B' key -> callback. */
static int block_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v,
		     size_t vl)
{
	struct blocks_ctx *c = ctx;
	(void)v;
	(void)vl;
	return kl == 1 + ITAB_HASH_LEN ? c->cb(c->ctx, k + 1) : -EIO;
}

/* Enumerate referenced blocks. Runs on LevelDB's own consistent iterator
 * view without the table lock, so a long listing never holds up apply. */
int itab_blocks(struct itab *t,
		int (*cb)(void *ctx, const uint8_t hash[ITAB_HASH_LEN]),
		void *ctx)
{
	uint8_t p[1] = {'B'};
	struct blocks_ctx c = {cb, ctx};
	int rc = scan(t, NULL, p, sizeof(p), NULL, 0, block_one, &c);
	return rc < 0 ? rc : 0;
}

struct orphan_ctx {
	int (*cb)(void *ctx, uint64_t ino);
	void *ctx;
	bool filter;
	uint64_t holder;
};

/* One 'M''o' key -> callback (value: the holder node, 8 bytes BE). */
static int orphan_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct orphan_ctx *c = ctx;
	if (kl != 10)
		return -EIO;
	uint64_t holder = vl == 8 ? be_get64(v) : 0;
	if (c->filter && holder != c->holder)
		return 0;
	return c->cb(c->ctx, be_get64(k + 2));
}

/* Enumerate the orphans that node `holder` keeps alive. */
int itab_orphans_held_by(struct itab *t, uint64_t holder,
			 int (*cb)(void *ctx, uint64_t ino), void *ctx)
{
	uint8_t p[2];
	struct orphan_ctx c = {cb, ctx, true, holder};
	pthread_rwlock_rdlock(&t->lock);
	int rc = scan(t, NULL, p, key_meta(p, 'o'), NULL, 0, orphan_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

/* Enumerate orphans. */
int itab_orphans(struct itab *t, int (*cb)(void *ctx, uint64_t ino), void *ctx)
{
	uint8_t p[2];
	struct orphan_ctx c = {cb, ctx, false, 0};
	pthread_rwlock_rdlock(&t->lock);
	int rc = scan(t, NULL, p, key_meta(p, 'o'), NULL, 0, orphan_one, &c);
	pthread_rwlock_unlock(&t->lock);
	return rc < 0 ? rc : 0;
}

/* statfs counters. */
int itab_statfs(struct itab *t, struct itab_statfs *st)
{
	pthread_rwlock_rdlock(&t->lock);
	st->inodes = t->ctr.inodes;
	st->blocks = t->ctr.blocks;
	st->next_ino = t->ctr.next_ino;
	st->block_size = t->block_size;
	pthread_rwlock_unlock(&t->lock);
	return 0;
}

/* ---- snapshot / restore ----
 * Stream: "SANDITAB", u32 version, then per key in key order
 * (u32 klen, key, u32 vlen, value), then u32 0xFFFFFFFF, u64 key count,
 * u64 FNV-1a-64 of every byte before the checksum. */

struct snap_out {
	itab_write_cb cb;
	void *ctx;
	uint8_t buf[65536];
	size_t len;
	uint64_t fnv;
	uint64_t count;
	int err;
};

/* FNV-1a 64 over bytes. */
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

/* Append bytes to the snapshot stream (hashing them unless raw). */
static void snap_put(struct snap_out *o, const void *data, size_t n, bool hash)
{
	const uint8_t *p = data;
	if (hash)
		o->fnv = fnv1a(o->fnv, p, n);
	while (n && !o->err) {
		size_t room = sizeof(o->buf) - o->len;
		size_t c = n < room ? n : room;
		memcpy(o->buf + o->len, p, c);
		o->len += c, p += c, n -= c;
		if (o->len == sizeof(o->buf)) {
			o->err = o->cb(o->ctx, o->buf, o->len);
			o->len = 0;
		}
	}
}

/* One key -> stream. */
static int snap_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct snap_out *o = ctx;
	uint8_t n[4];
	be_put32(n, (uint32_t)kl);
	snap_put(o, n, 4, true);
	snap_put(o, k, kl, true);
	be_put32(n, (uint32_t)vl);
	snap_put(o, n, 4, true);
	snap_put(o, v, vl, true);
	o->count++;
	return o->err;
}

/* Dump the whole DB at one LevelDB snapshot. */
struct itab_snap {
	const leveldb_snapshot_t *s;
	leveldb_readoptions_t *ro;
};

int itab_snapshot_begin(struct itab *t, struct itab_snap **out,
			uint64_t *index)
{
	struct itab_snap *sn = calloc(1, sizeof(*sn));
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	if (!sn || !ro) {
		free(sn);
		if (ro)
			leveldb_readoptions_destroy(ro);
		return -ENOMEM;
	}
	/* Under the lock apply writes with: the LevelDB snapshot and the
	 * applied index are of the same point. */
	pthread_rwlock_rdlock(&t->lock);
	sn->s = leveldb_create_snapshot(t->db);
	*index = t->ctr.applied;
	pthread_rwlock_unlock(&t->lock);
	leveldb_readoptions_set_snapshot(ro, sn->s);
	leveldb_readoptions_set_fill_cache(ro, 0);
	sn->ro = ro;
	*out = sn;
	return 0;
}

int itab_snapshot_write(struct itab *t, struct itab_snap *sn, itab_write_cb cb,
			void *ctx)
{
	struct snap_out *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->cb = cb, o->ctx = ctx, o->fnv = FNV_INIT;
	uint8_t hdr[12];
	memcpy(hdr, SNAP_MAGIC, 8);
	be_put32(hdr + 8, SNAP_VERSION);
	snap_put(o, hdr, 12, true);
	int rc = scan(t, sn->ro, (const uint8_t *)"", 0, NULL, 0, snap_one, o);
	uint8_t tail[20];
	be_put32(tail, SNAP_END);
	be_put64(tail + 4, o->count);
	snap_put(o, tail, 12, true);
	be_put64(tail, o->fnv);
	snap_put(o, tail, 8, false);
	if (!o->err && o->len)
		o->err = cb(ctx, o->buf, o->len);
	if (!rc)
		rc = o->err;
	free(o);
	return rc < 0 ? rc : (rc ? -EIO : 0);
}

void itab_snapshot_end(struct itab *t, struct itab_snap *sn)
{
	if (!sn)
		return;
	leveldb_readoptions_destroy(sn->ro);
	leveldb_release_snapshot(t->db, sn->s);
	free(sn);
}

int itab_snapshot(struct itab *t, itab_write_cb cb, void *ctx)
{
	struct itab_snap *sn;
	uint64_t index;
	int rc = itab_snapshot_begin(t, &sn, &index);
	if (rc)
		return rc;
	rc = itab_snapshot_write(t, sn, cb, ctx);
	itab_snapshot_end(t, sn);
	return rc;
}

/* Walk a dump; with wb, add its puts to wb. -EINVAL if malformed. */
static int restore_walk(const uint8_t *data, size_t len, leveldb_writebatch_t *wb)
{
	struct rd r = {.p = data, .n = len};
	if (len < 12 + 20 || memcmp(data, SNAP_MAGIC, 8) != 0)
		return -EINVAL;
	if (fnv1a(FNV_INIT, data, len - 8) != be_get64(data + len - 8))
		return -EINVAL;
	rd_bytes(&r, 8);
	if (rd_u32(&r) != SNAP_VERSION)
		return -EINVAL;
	uint64_t count = 0;
	const uint8_t *prev = NULL;
	size_t prevl = 0;
	bool have_k = false, have_s = false;
	for (;;) {
		uint32_t kl = rd_u32(&r);
		if (r.bad)
			return -EINVAL;
		if (kl == SNAP_END)
			break;
		const uint8_t *k = rd_bytes(&r, kl);
		uint32_t vl = rd_u32(&r);
		const uint8_t *v = rd_bytes(&r, vl);
		if (r.bad || kl == 0)
			return -EINVAL;
		if (prev) { /* keys strictly increasing */
			size_t m = prevl < kl ? prevl : kl;
			int c = memcmp(prev, k, m);
			if (c > 0 || (c == 0 && prevl >= kl))
				return -EINVAL;
		}
		prev = k, prevl = kl;
		if (kl == 2 && k[0] == 'M' && k[1] == 'K') {
			uint32_t bs;
			uint64_t cid;
			if (config_decode((const char *)v, vl, &bs, &cid))
				return -EINVAL;
			have_k = true;
		}
		if (kl == 2 && k[0] == 'M' && k[1] == 'S')
			have_s = vl == 32;
		if (wb)
			leveldb_writebatch_put(wb, (const char *)k, kl, (const char *)v, vl);
		count++;
	}
	if (rd_u64(&r) != count || r.bad || r.n != 8 || !have_k || !have_s)
		return -EINVAL;
	return 0;
}

/* Delete every key into the batch. */
static int del_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	leveldb_writebatch_delete(ctx, (const char *)k, kl);
	return 0;
}

/* Replace the DB content by a dump, in one synced batch. */
int itab_restore(struct itab *t, const void *data, size_t len)
{
	if (!data || restore_walk(data, len, NULL))
		return -EINVAL;
	leveldb_writebatch_t *wb = leveldb_writebatch_create();
	int rc = scan(t, NULL, (const uint8_t *)"", 0, NULL, 0, del_one, wb);
	if (!rc)
		rc = restore_walk(data, len, wb);
	if (!rc) {
		char *err = NULL;
		leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
		leveldb_writeoptions_set_sync(wo, 1);
		pthread_rwlock_wrlock(&t->lock);
		leveldb_write(t->db, wo, wb, &err);
		if (err) {
			leveldb_free(err);
			rc = -EIO;
		} else {
			rc = itab_load_state(t);
		}
		pthread_rwlock_unlock(&t->lock);
		leveldb_writeoptions_destroy(wo);
	}
	leveldb_writebatch_destroy(wb);
	t->n_freed = 0;
	return rc;
}
