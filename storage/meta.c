/*
 * meta.c — metadata store over LevelDB (see meta.h).
 */
#include "storage/meta.h"

#include "storage/slowdisk.h"
#include "storage/util.h"

#include <errno.h>
#include <leveldb/c.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_MAGIC     "SFSMETA1"
#define DUMP_MAGIC_LEN 8
#define DUMP_REC_HDR   9  /* 'R' u32 klen u32 vlen */
#define DUMP_END_LEN   13 /* 'E' u64 count u32 crc */
#define DUMP_BUF       65536

struct meta {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_readoptions_t *ro;
	leveldb_writeoptions_t *wo_sync, *wo_nosync;
	char *path;
};

struct meta_batch {
	leveldb_writebatch_t *wb;
	size_t count;
};

struct meta_iter {
	leveldb_iterator_t *it;
	leveldb_readoptions_t *ro;
	uint8_t *prefix;
	size_t plen;
	int status;
};

/* See meta.h. */
int meta_open(const char *path, struct meta **out, char *err, size_t errcap)
{
	*out = NULL;
	struct meta *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->path = strdup(path);
	m->opts = leveldb_options_create();
	m->ro = leveldb_readoptions_create();
	m->wo_sync = leveldb_writeoptions_create();
	m->wo_nosync = leveldb_writeoptions_create();
	int rc = -ENOMEM;
	if (!m->path || !m->opts || !m->ro || !m->wo_sync || !m->wo_nosync) {
		stor_seterr(err, errcap, "out of memory opening %s", path);
		goto fail;
	}
	leveldb_options_set_create_if_missing(m->opts, 1);
	leveldb_options_set_paranoid_checks(m->opts, 1);
	leveldb_readoptions_set_verify_checksums(m->ro, 1);
	leveldb_writeoptions_set_sync(m->wo_sync, 1);
	char *lerr = NULL;
	m->db = leveldb_open(m->opts, path, &lerr);
	if (lerr) {
		rc = stor_leveldb_fail(lerr, "cannot open metadata store", path,
		                       err, errcap);
		goto fail;
	}
	*out = m;
	return 0;
fail:
	meta_close(m);
	return rc;
}

/* See meta.h. */
void meta_close(struct meta *m)
{
	if (!m)
		return;
	if (m->db)
		leveldb_close(m->db);
	if (m->opts)
		leveldb_options_destroy(m->opts);
	if (m->ro)
		leveldb_readoptions_destroy(m->ro);
	if (m->wo_sync)
		leveldb_writeoptions_destroy(m->wo_sync);
	if (m->wo_nosync)
		leveldb_writeoptions_destroy(m->wo_nosync);
	free(m->path);
	free(m);
}

const char *meta_path(const struct meta *m)
{
	return m->path;
}

/* See meta.h. */
int meta_get(struct meta *m, const void *key, size_t klen, void **val,
             size_t *vlen)
{
	char *lerr = NULL;
	size_t n = 0;
	char *v = leveldb_get(m->db, m->ro, key, klen, &n, &lerr);
	if (lerr)
		return stor_leveldb_fail(lerr, "metadata read failed", m->path,
		                         NULL, 0);
	if (!v)
		return -ENOENT;
	/* LevelDB's buffer must go back through leveldb_free(); hand the
	 * caller a plain malloc'ed copy so free() is the whole contract. */
	void *copy = malloc(n ? n : 1);
	if (!copy) {
		leveldb_free(v);
		return -ENOMEM;
	}
	memcpy(copy, v, n);
	leveldb_free(v);
	*val = copy;
	*vlen = n;
	return 0;
}

struct meta_batch *meta_batch_new(void)
{
	struct meta_batch *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->wb = leveldb_writebatch_create();
	if (!b->wb) {
		free(b);
		return NULL;
	}
	return b;
}

void meta_batch_free(struct meta_batch *b)
{
	if (!b)
		return;
	leveldb_writebatch_destroy(b->wb);
	free(b);
}

void meta_batch_put(struct meta_batch *b, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
	leveldb_writebatch_put(b->wb, key, klen, val, vlen);
	b->count++;
}

void meta_batch_delete(struct meta_batch *b, const void *key, size_t klen)
{
	leveldb_writebatch_delete(b->wb, key, klen);
	b->count++;
}

void meta_batch_clear(struct meta_batch *b)
{
	leveldb_writebatch_clear(b->wb);
	b->count = 0;
}

size_t meta_batch_count(const struct meta_batch *b)
{
	return b->count;
}

/* See meta.h. */
int meta_commit(struct meta *m, struct meta_batch *b, bool sync)
{
	char *lerr = NULL;
	if (sync)
		stor_sync_delay(); /* test hook: a slow disk */
	leveldb_write(m->db, sync ? m->wo_sync : m->wo_nosync, b->wb, &lerr);
	if (lerr)
		return stor_leveldb_fail(lerr, "metadata write failed", m->path,
		                         NULL, 0);
	return 0;
}

/* ---- iterators ---------------------------------------------------------- */

/* Records a LevelDB iterator error, if any, into it->status. */
static void iter_check(struct meta_iter *it)
{
	char *lerr = NULL;
	leveldb_iter_get_error(it->it, &lerr);
	if (lerr)
		it->status = stor_leveldb_fail(
		    lerr, "metadata iteration failed", NULL, NULL, 0);
}

/* See meta.h. */
int meta_iter_new(struct meta *m, const void *prefix, size_t plen,
                  struct meta_iter **out)
{
	*out = NULL;
	struct meta_iter *it = calloc(1, sizeof *it);
	if (!it)
		return -ENOMEM;
	if (plen) {
		it->prefix = malloc(plen);
		if (!it->prefix) {
			free(it);
			return -ENOMEM;
		}
		memcpy(it->prefix, prefix, plen);
		it->plen = plen;
	}
	it->ro = leveldb_readoptions_create();
	leveldb_readoptions_set_verify_checksums(it->ro, 1);
	leveldb_readoptions_set_fill_cache(it->ro, 0);
	it->it = leveldb_create_iterator(m->db, it->ro);
	if (plen)
		leveldb_iter_seek(it->it, (const char *)it->prefix, plen);
	else
		leveldb_iter_seek_to_first(it->it);
	iter_check(it);
	if (it->status < 0) {
		int rc = it->status;
		meta_iter_free(it);
		return rc;
	}
	*out = it;
	return 0;
}

void meta_iter_free(struct meta_iter *it)
{
	if (!it)
		return;
	leveldb_iter_destroy(it->it);
	leveldb_readoptions_destroy(it->ro);
	free(it->prefix);
	free(it);
}

bool meta_iter_valid(const struct meta_iter *it)
{
	if (it->status || !leveldb_iter_valid(it->it))
		return false;
	size_t klen;
	const char *k = leveldb_iter_key(it->it, &klen);
	return it->plen == 0 ||
	       (klen >= it->plen && memcmp(k, it->prefix, it->plen) == 0);
}

void meta_iter_seek(struct meta_iter *it, const void *key, size_t klen)
{
	/* Never before the prefix: a key below it seeks to the prefix. */
	if (it->plen &&
	    (klen < it->plen ? memcmp(key, it->prefix, klen) <= 0
	                     : memcmp(key, it->prefix, it->plen) < 0))
		leveldb_iter_seek(it->it, (const char *)it->prefix, it->plen);
	else
		leveldb_iter_seek(it->it, key, klen);
	iter_check(it);
}

void meta_iter_next(struct meta_iter *it)
{
	if (leveldb_iter_valid(it->it))
		leveldb_iter_next(it->it);
	iter_check(it);
}

const void *meta_iter_key(const struct meta_iter *it, size_t *klen)
{
	return leveldb_iter_key(it->it, klen);
}

const void *meta_iter_value(const struct meta_iter *it, size_t *vlen)
{
	return leveldb_iter_value(it->it, vlen);
}

int meta_iter_status(const struct meta_iter *it)
{
	return it->status;
}

/* ---- dump / restore ----------------------------------------------------- */

/* Buffered writer for meta_dump(): accumulates, CRCs, flushes to cb. */
struct dumpw {
	meta_write_fn cb;
	void *ctx;
	uint32_t crc;
	size_t used;
	int rc;
	uint8_t buf[DUMP_BUF];
};

static void dw_flush(struct dumpw *w)
{
	if (w->rc == 0 && w->used)
		w->rc = w->cb(w->ctx, w->buf, w->used);
	w->used = 0;
}

static void dw_put(struct dumpw *w, const void *p, size_t n)
{
	const uint8_t *s = p;
	w->crc = stor_crc32c(w->crc, p, n);
	while (n && w->rc == 0) {
		if (w->used == DUMP_BUF)
			dw_flush(w);
		size_t k = DUMP_BUF - w->used;
		if (k > n)
			k = n;
		memcpy(w->buf + w->used, s, k);
		w->used += k;
		s += k;
		n -= k;
	}
}

/* See meta.h. */
int meta_dump(struct meta *m, meta_write_fn write_cb, void *ctx)
{
	struct dumpw *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->cb = write_cb;
	w->ctx = ctx;
	const leveldb_snapshot_t *snap = leveldb_create_snapshot(m->db);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_readoptions_set_snapshot(ro, snap);
	leveldb_readoptions_set_verify_checksums(ro, 1);
	leveldb_readoptions_set_fill_cache(ro, 0);
	leveldb_iterator_t *it = leveldb_create_iterator(m->db, ro);

	uint64_t count = 0;
	dw_put(w, DUMP_MAGIC, DUMP_MAGIC_LEN);
	for (leveldb_iter_seek_to_first(it);
	     w->rc == 0 && leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = leveldb_iter_key(it, &klen);
		const char *v = leveldb_iter_value(it, &vlen);
		if (klen > UINT32_MAX || vlen > UINT32_MAX) {
			w->rc = -EOVERFLOW;
			break;
		}
		uint8_t hdr[DUMP_REC_HDR];
		hdr[0] = 'R';
		stor_put_be32(hdr + 1, (uint32_t)klen);
		stor_put_be32(hdr + 5, (uint32_t)vlen);
		dw_put(w, hdr, sizeof hdr);
		dw_put(w, k, klen);
		dw_put(w, v, vlen);
		count++;
	}
	char *lerr = NULL;
	leveldb_iter_get_error(it, &lerr);
	if (lerr) {
		int rc = stor_leveldb_fail(lerr, "metadata dump failed",
		                           m->path, NULL, 0);
		if (w->rc == 0)
			w->rc = rc;
	}
	if (w->rc == 0) {
		uint8_t end[DUMP_END_LEN];
		end[0] = 'E';
		stor_put_be64(end + 1, count);
		dw_put(w, end, 9);
		stor_put_be32(end + 9, w->crc);
		dw_put(w, end + 9, 4);
		dw_flush(w);
	}
	leveldb_iter_destroy(it);
	leveldb_readoptions_destroy(ro);
	leveldb_release_snapshot(m->db, snap);
	int rc = w->rc;
	free(w);
	return rc;
}

/* Compares two byte strings as LevelDB's default comparator does. */
static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* Validates a dump stream completely. Returns the record count or
 * -EBADMSG. */
static int64_t dump_validate(const uint8_t *p, size_t len)
{
	if (len < DUMP_MAGIC_LEN + DUMP_END_LEN ||
	    memcmp(p, DUMP_MAGIC, DUMP_MAGIC_LEN) != 0)
		return -EBADMSG;
	size_t off = DUMP_MAGIC_LEN;
	uint64_t count = 0;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	while (off < len && p[off] == 'R') {
		if (len - off < DUMP_REC_HDR)
			return -EBADMSG;
		size_t klen = stor_get_be32(p + off + 1);
		size_t vlen = stor_get_be32(p + off + 5);
		off += DUMP_REC_HDR;
		if (klen > len - off || vlen > len - off - klen)
			return -EBADMSG;
		if (prev && key_cmp(prev, prev_len, p + off, klen) >= 0)
			return -EBADMSG;
		prev = p + off;
		prev_len = klen;
		off += klen + vlen;
		count++;
	}
	if (len - off != DUMP_END_LEN || p[off] != 'E' ||
	    stor_get_be64(p + off + 1) != count ||
	    stor_crc32c(0, p, len - 4) != stor_get_be32(p + len - 4))
		return -EBADMSG;
	if (count > INT64_MAX)
		return -EBADMSG;
	return (int64_t)count;
}

/* See meta.h. */
int meta_restore(struct meta *m, const void *data, size_t len)
{
	const uint8_t *p = data;
	int64_t count = dump_validate(p, len);
	if (count < 0) {
		STOR_ERR("metadata restore (%s): malformed snapshot stream of "
		         "%zu bytes",
		         m->path, len);
		return (int)count;
	}
	leveldb_writebatch_t *b = leveldb_writebatch_create();
	/* 1. delete every key that exists now... */
	leveldb_iterator_t *it = leveldb_create_iterator(m->db, m->ro);
	for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t klen;
		const char *k = leveldb_iter_key(it, &klen);
		leveldb_writebatch_delete(b, k, klen);
	}
	char *lerr = NULL;
	leveldb_iter_get_error(it, &lerr);
	leveldb_iter_destroy(it);
	if (lerr) {
		leveldb_writebatch_destroy(b);
		return stor_leveldb_fail(lerr, "metadata restore failed",
		                         m->path, NULL, 0);
	}
	/* 2. ...then put every record (later ops in a batch win). */
	size_t off = DUMP_MAGIC_LEN;
	for (int64_t i = 0; i < count; i++) {
		size_t klen = stor_get_be32(p + off + 1);
		size_t vlen = stor_get_be32(p + off + 5);
		off += DUMP_REC_HDR;
		leveldb_writebatch_put(b, (const char *)p + off, klen,
		                       (const char *)p + off + klen, vlen);
		off += klen + vlen;
	}
	leveldb_write(m->db, m->wo_sync, b, &lerr);
	leveldb_writebatch_destroy(b);
	if (lerr)
		return stor_leveldb_fail(lerr, "metadata restore failed",
		                         m->path, NULL, 0);
	return 0;
}
