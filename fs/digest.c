/*
 * digest.c — count + running SHA-256 of applied entries, and the
 * per-origin dedupe table (see digest.h).
 *
 * State file: written at sync() (write temp, fsync, rename, fsync dir),
 * so a restart resumes at the durable applied index and the replicator
 * replays the log from there. Format (big-endian):
 *   "SFSD" u32 version=1 | u64 count | u64 applied | 32 hash | dedupe
 */
#include "fs/digest.h"

#include "fs/be.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/log.h"

struct dsm_result {
	uint64_t seq;
	uint16_t len;
	uint8_t res[DSM_RESULT_MAX];
};

struct dsm_origin {
	uint64_t origin; /* 0: free slot */
	uint64_t low;
	uint64_t last_use; /* apply counter, for eviction */
	size_t n, cap;
	struct dsm_result *r; /* sorted by seq */
};

struct dsm_dedupe {
	uint64_t clock;
	struct dsm_origin o[DSM_ORIGINS];
};

struct dsm {
	char *path;
	uint64_t count;
	uint64_t applied;
	uint8_t hash[32];
	struct dsm_dedupe *dd;
	EVP_MD_CTX *md;
};

struct dsm_dedupe *dsm_dedupe_new(void)
{
	return calloc(1, sizeof(struct dsm_dedupe));
}

void dsm_dedupe_free(struct dsm_dedupe *t)
{
	if (!t)
		return;
	for (int i = 0; i < DSM_ORIGINS; i++)
		free(t->o[i].r);
	free(t);
}

/* Find the slot of origin; with create, claim a free one or evict the
 * least recently used (deterministic: ties broken by slot order). */
static struct dsm_origin *origin_slot(struct dsm_dedupe *t, uint64_t origin,
				      int create)
{
	struct dsm_origin *free_slot = NULL, *lru = NULL;
	for (int i = 0; i < DSM_ORIGINS; i++) {
		struct dsm_origin *o = &t->o[i];
		if (o->origin == origin)
			return o;
		if (!o->origin && !free_slot)
			free_slot = o;
		if (o->origin && (!lru || o->last_use < lru->last_use))
			lru = o;
	}
	if (!create)
		return NULL;
	struct dsm_origin *o = free_slot ? free_slot : lru;
	free(o->r);
	memset(o, 0, sizeof(*o));
	o->origin = origin;
	return o;
}

int dsm_dedupe_lookup(struct dsm_dedupe *t, uint64_t origin, uint64_t seq,
		      uint64_t low, uint8_t *res, size_t rescap, size_t *reslen)
{
	struct dsm_origin *o = origin_slot(t, origin, 0);
	*reslen = 0;
	if (!o)
		return 0;
	if (seq < o->low)
		return 2;
	for (size_t i = 0; i < o->n; i++) {
		if (o->r[i].seq != seq)
			continue;
		size_t n = o->r[i].len < rescap ? o->r[i].len : rescap;
		memcpy(res, o->r[i].res, n);
		*reslen = n;
		return 1;
	}
	return 0;
}

void dsm_dedupe_record(struct dsm_dedupe *t, uint64_t origin, uint64_t seq,
		       uint64_t low, const uint8_t *res, size_t reslen)
{
	struct dsm_origin *o = origin_slot(t, origin, 1);
	o->last_use = ++t->clock;
	if (low > o->low)
		o->low = low;
	size_t w = 0; /* forget results below the low-water mark */
	for (size_t i = 0; i < o->n; i++)
		if (o->r[i].seq >= o->low)
			o->r[w++] = o->r[i];
	o->n = w;
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 8;
		if (cap > 4096) { /* a runaway origin: drop its oldest */
			memmove(o->r, o->r + 1, --o->n * sizeof(*o->r));
		} else {
			struct dsm_result *r = realloc(o->r, cap * sizeof(*r));
			if (!r)
				return; /* dedupe degrades, apply proceeds */
			o->r = r;
			o->cap = cap;
		}
	}
	struct dsm_result *e = &o->r[o->n++];
	e->seq = seq;
	e->len = (uint16_t)(reslen < DSM_RESULT_MAX ? reslen : DSM_RESULT_MAX);
	memset(e->res, 0, sizeof(e->res));
	memcpy(e->res, res, e->len);
}

int dsm_dedupe_encode(const struct dsm_dedupe *t, uint8_t **buf, size_t *len)
{
	size_t n = 16;
	for (int i = 0; i < DSM_ORIGINS; i++)
		if (t->o[i].origin)
			n += 32 + t->o[i].n * (8 + 2 + DSM_RESULT_MAX);
	uint8_t *b = malloc(n), *p = b;
	if (!b)
		return -ENOMEM;
	be_put64(p, t->clock);
	p += 8;
	uint64_t cnt = 0;
	for (int i = 0; i < DSM_ORIGINS; i++)
		cnt += t->o[i].origin != 0;
	be_put64(p, cnt);
	p += 8;
	for (int i = 0; i < DSM_ORIGINS; i++) {
		const struct dsm_origin *o = &t->o[i];
		if (!o->origin)
			continue;
		be_put64(p, o->origin);
		be_put64(p + 8, o->low);
		be_put64(p + 16, o->last_use);
		be_put64(p + 24, o->n);
		p += 32;
		for (size_t j = 0; j < o->n; j++) {
			be_put64(p, o->r[j].seq);
			p[8] = (uint8_t)(o->r[j].len >> 8);
			p[9] = (uint8_t)o->r[j].len;
			memcpy(p + 10, o->r[j].res, DSM_RESULT_MAX);
			p += 10 + DSM_RESULT_MAX;
		}
	}
	*buf = b;
	*len = (size_t)(p - b);
	return 0;
}

int dsm_dedupe_decode(struct dsm_dedupe *t, const uint8_t *buf, size_t len,
		      size_t *used)
{
	const uint8_t *p = buf, *end = buf + len;
	for (int i = 0; i < DSM_ORIGINS; i++)
		free(t->o[i].r);
	memset(t, 0, sizeof(*t));
	if (end - p < 16)
		return -EINVAL;
	t->clock = be_get64(p);
	uint64_t cnt = be_get64(p + 8);
	p += 16;
	if (cnt > DSM_ORIGINS)
		return -EINVAL;
	for (uint64_t i = 0; i < cnt; i++) {
		struct dsm_origin *o = &t->o[i];
		if (end - p < 32)
			return -EINVAL;
		o->origin = be_get64(p);
		o->low = be_get64(p + 8);
		o->last_use = be_get64(p + 16);
		uint64_t n = be_get64(p + 24);
		p += 32;
		if (!o->origin || n > (uint64_t)(end - p) / (10 + DSM_RESULT_MAX))
			return -EINVAL;
		o->r = calloc(n ? n : 1, sizeof(*o->r));
		if (!o->r)
			return -ENOMEM;
		o->n = o->cap = n;
		for (uint64_t j = 0; j < n; j++) {
			o->r[j].seq = be_get64(p);
			o->r[j].len = (uint16_t)(p[8] << 8 | p[9]);
			if (o->r[j].len > DSM_RESULT_MAX)
				return -EINVAL;
			memcpy(o->r[j].res, p + 10, DSM_RESULT_MAX);
			p += 10 + DSM_RESULT_MAX;
		}
	}
	*used = (size_t)(p - buf);
	return 0;
}

/* ---- the digest state machine ---------------------------------------- */

static int dsm_encode(struct dsm *d, uint8_t **out, uint64_t *outlen)
{
	uint8_t *dd;
	size_t ddlen;
	int rc = dsm_dedupe_encode(d->dd, &dd, &ddlen);
	if (rc)
		return rc;
	size_t n = 8 + 16 + 32 + ddlen;
	uint8_t *b = malloc(n);
	if (!b) {
		free(dd);
		return -ENOMEM;
	}
	memcpy(b, "SFSD\0\0\0\1", 8);
	be_put64(b + 8, d->count);
	be_put64(b + 16, d->applied);
	memcpy(b + 24, d->hash, 32);
	memcpy(b + 56, dd, ddlen);
	free(dd);
	*out = b;
	*outlen = n;
	return 0;
}

/* Replace d's state by the encoding b (n bytes); on failure d is left as
 * it was (a refused snapshot must not wipe the dedupe table). */
static int dsm_decode(struct dsm *d, const uint8_t *b, uint64_t n)
{
	size_t used;
	if (n < 56 || memcmp(b, "SFSD\0\0\0\1", 8) != 0)
		return -EINVAL;
	struct dsm_dedupe *dd = dsm_dedupe_new();
	if (!dd)
		return -ENOMEM;
	int rc = dsm_dedupe_decode(dd, b + 56, n - 56, &used);
	if (rc == 0 && used != n - 56)
		rc = -EINVAL; /* nothing follows the table */
	if (rc) {
		dsm_dedupe_free(dd);
		return rc;
	}
	dsm_dedupe_free(d->dd);
	d->dd = dd;
	d->count = be_get64(b + 8);
	d->applied = be_get64(b + 16);
	memcpy(d->hash, b + 24, 32);
	return 0;
}

/* Write the state file atomically and durably. */
static int dsm_save(struct dsm *d)
{
	uint8_t *b;
	uint64_t n;
	int rc = dsm_encode(d, &b, &n);
	if (rc)
		return rc;
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		free(b);
		return rc;
	}
	ssize_t w = write(fd, b, n);
	free(b);
	if (w != (ssize_t)n || fsync(fd) != 0) {
		rc = w < 0 || w != (ssize_t)n ? -EIO : -errno;
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (rename(tmp, d->path) != 0)
		return -errno;
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s", d->path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int dsm_open(const char *path, struct dsm **out)
{
	struct dsm *d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path)) || !(d->dd = dsm_dedupe_new()) ||
	    !(d->md = EVP_MD_CTX_new())) {
		dsm_close(d);
		return -ENOMEM;
	}
	FILE *f = fopen(path, "rb");
	if (f) {
		uint8_t *b = NULL;
		size_t cap = 0, n = 0, got;
		do {
			if (n == cap) {
				cap = cap ? cap * 2 : 65536;
				uint8_t *nb = realloc(b, cap);
				if (!nb)
					break;
				b = nb;
			}
			got = fread(b + n, 1, cap - n, f);
			n += got;
		} while (got > 0);
		fclose(f);
		int rc = dsm_decode(d, b, n);
		free(b);
		if (rc) {
			LOG(ERROR, "digest state %s is corrupt; move it away to "
				  "rebuild it from the log",
				  path);
			dsm_close(d);
			return -EUCLEAN;
		}
	}
	*out = d;
	return 0;
}

void dsm_close(struct dsm *d)
{
	if (!d)
		return;
	dsm_dedupe_free(d->dd);
	EVP_MD_CTX_free(d->md);
	free(d->path);
	free(d);
}

static int dsm_apply(void *ctx, uint64_t index, uint64_t origin, uint64_t seq,
		     uint64_t low, const uint8_t *data, uint32_t len,
		     uint8_t *res, size_t rescap, size_t *reslen)
{
	struct dsm *d = ctx;
	if (index <= d->applied) {
		*reslen = 0;
		return 0;
	}
	d->applied = index;
	if (origin &&
	    dsm_dedupe_lookup(d->dd, origin, seq, low, res, rescap, reslen))
		return 0;
	uint8_t hdr[24];
	be_put64(hdr, origin);
	be_put64(hdr + 8, seq);
	be_put64(hdr + 16, len);
	if (!EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(d->md, d->hash, 32) ||
	    !EVP_DigestUpdate(d->md, hdr, sizeof(hdr)) ||
	    !EVP_DigestUpdate(d->md, data, len) ||
	    !EVP_DigestFinal_ex(d->md, d->hash, NULL))
		return -EIO;
	d->count++;
	/* The result: the entry's ordinal, so a client sees where it went. */
	uint8_t r[8];
	be_put64(r, d->count);
	size_t n = rescap < 8 ? rescap : 8;
	memcpy(res, r, n);
	*reslen = n;
	if (origin)
		dsm_dedupe_record(d->dd, origin, seq, low, r, 8);
	return 0;
}

static uint64_t dsm_applied(void *ctx)
{
	return ((struct dsm *)ctx)->applied;
}

static int dsm_sync(void *ctx, uint64_t *index)
{
	struct dsm *d = ctx;
	int rc = dsm_save(d);
	if (rc == 0)
		*index = d->applied;
	return rc;
}

static int dsm_snapshot(void *ctx, uint64_t *index, uint8_t **data,
			uint64_t *len)
{
	struct dsm *d = ctx;
	*index = d->applied;
	return dsm_encode(d, data, len);
}

static int dsm_restore(void *ctx, uint64_t index, const uint8_t *data,
		       uint64_t len)
{
	struct dsm *d = ctx;
	int rc = dsm_decode(d, data, len);
	if (rc)
		return rc;
	d->applied = index;
	return dsm_save(d);
}

struct repl_sm dsm_sm(struct dsm *d)
{
	struct repl_sm sm = {
		.ctx = d,
		.apply = dsm_apply,
		.applied = dsm_applied,
		.sync = dsm_sync,
		.snapshot = dsm_snapshot,
		.restore = dsm_restore,
	};
	return sm;
}

void dsm_figures(struct dsm *d, uint64_t *count, uint64_t *applied,
		 uint8_t hash[32])
{
	*count = d->count;
	*applied = d->applied;
	memcpy(hash, d->hash, 32);
}
