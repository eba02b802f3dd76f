/*
 * data_block.c — loading, caching and fetching blocks; serving peers' block
 * requests.
 *
 * Read path. Committed extents come from the inode table; block contents
 * go through a small cache keyed by hash (content-addressed, so an entry
 * never goes stale), which spares re-reading and re-hashing a whole block
 * for each kernel read that covers part of it; then this handle's dirty
 * bytes are laid over them. A block is loaded (read and verified, or
 * fetched and verified) by one thread at a time: a reader of a block being
 * loaded waits for that load. A handle whose reads follow each other
 * queues the rest of the current read's blocks and the next RA_BLOCKS
 * blocks for RA_THREADS read-ahead threads, which load them into the
 * cache (verified like every read) while the reader copies. Measured on
 * the development VM (3 nodes, 1 MiB reads after dropping the page cache,
 * load average ~5 from other work): 120-200 MiB/s before; 260-300 with
 * the load deduplication and 2 blocks of read-ahead on one thread; ~370
 * with the kernel's 1 MiB requests (mount.c); 460-490 with 4 blocks on
 * two threads (the raw disk gives 300-450 MiB/s to cat).
 */
#include "fs/data_internal.h"

/* ---- the recent set ------------------------------------------------------ */

static unsigned recent_bucket(const uint8_t h[ITAB_HASH_LEN])
{
	return ((unsigned)h[0] << 16 | (unsigned)h[1] << 8 | h[2]) %
	       RECENT_BUCKETS;
}

/* Remember that this process stored hash just now. */
void data_recent_add(struct data *d, const uint8_t h[ITAB_HASH_LEN])
{
	unsigned b = recent_bucket(h);
	int64_t now = mono_ms();
	pthread_mutex_lock(&d->recent_mu);
	for (struct recent *r = d->recent[b]; r; r = r->next) {
		if (memcmp(r->hash, h, ITAB_HASH_LEN) == 0) {
			r->ms = now;
			pthread_mutex_unlock(&d->recent_mu);
			return;
		}
	}
	struct recent *r = malloc(sizeof *r);
	if (r) { /* without memory the block is merely less protected */
		memcpy(r->hash, h, ITAB_HASH_LEN);
		r->ms = now;
		r->next = d->recent[b];
		d->recent[b] = r;
	}
	pthread_mutex_unlock(&d->recent_mu);
}

/* How long the recent set protects a block (ms). */
uint32_t data_recent_window(const struct data *d)
{
	return d->cfg.gc_grace_ms < RECENT_PROTECT_MS ? d->cfg.gc_grace_ms
						      : RECENT_PROTECT_MS;
}

/* True if hash was stored by this process within the recent window. */
bool data_recent_has(struct data *d, const uint8_t h[ITAB_HASH_LEN])
{
	unsigned b = recent_bucket(h);
	int64_t limit = mono_ms() - data_recent_window(d);
	bool found = false;
	pthread_mutex_lock(&d->recent_mu);
	for (struct recent *r = d->recent[b]; r; r = r->next)
		if (memcmp(r->hash, h, ITAB_HASH_LEN) == 0) {
			found = r->ms > limit;
			break;
		}
	pthread_mutex_unlock(&d->recent_mu);
	return found;
}

/* Drop entries older than the recent window (all = everything). */
void data_recent_prune(struct data *d, bool all)
{
	int64_t limit = mono_ms() - data_recent_window(d);
	pthread_mutex_lock(&d->recent_mu);
	for (unsigned b = 0; b < RECENT_BUCKETS; b++) {
		struct recent **pp = &d->recent[b];
		while (*pp) {
			struct recent *r = *pp;
			if (all || r->ms <= limit) {
				*pp = r->next;
				free(r);
			} else {
				pp = &r->next;
			}
		}
	}
	pthread_mutex_unlock(&d->recent_mu);
}

/* ---- synchronous request (fetch) ----------------------------------------- */

struct sreq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs; /* the caller and the pending callback */
	bool done;
	int status;
	uint8_t *reply; /* malloc'ed copy */
	size_t len;
};

static void sreq_unref(struct sreq *s)
{
	pthread_mutex_lock(&s->mu);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&s->mu);
	if (last) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		free(s->reply);
		free(s);
	}
}

/* link_reply_fn of sreq_call: copies the reply, wakes the caller. */
static void sreq_cb(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct sreq *s = ctx;
	pthread_mutex_lock(&s->mu);
	if (status == 0) {
		s->reply = malloc(len ? len : 1);
		if (s->reply) {
			memcpy(s->reply, reply, len);
			s->len = len;
		} else {
			status = -ENOMEM;
		}
	}
	s->status = status;
	s->done = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	sreq_unref(s);
}

/* Send one request and wait for its reply. On 0, *reply (caller frees) and
 * *len hold the reply body. */
static int sreq_call(struct data *d, uint64_t to, uint16_t kind,
		     const void *payload, size_t plen, uint32_t timeout_ms,
		     uint8_t **reply, size_t *len)
{
	struct sreq *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	cond_init_mono(&s->cv);
	s->refs = 2;
	int rc = link_request(d->link, to, kind, payload, plen, timeout_ms,
			      sreq_cb, s);
	if (rc < 0) {
		s->refs = 1;
		sreq_unref(s);
		return rc;
	}
	/* The link always calls back (timeout, cancel); the extra second is
	 * a guard against waiting forever. data_stop() need not wait for the
	 * reply: look at d->quit every 200 ms (the callback still owns its
	 * reference). */
	struct timespec dl = mono_deadline(timeout_ms + 1000);
	pthread_mutex_lock(&s->mu);
	while (!s->done && !ts_passed(&dl) && !atomic_load(&d->quit)) {
		struct timespec w = mono_deadline(200);
		if (w.tv_sec > dl.tv_sec ||
		    (w.tv_sec == dl.tv_sec && w.tv_nsec > dl.tv_nsec))
			w = dl;
		pthread_cond_timedwait(&s->cv, &s->mu, &w);
	}
	rc = s->done ? s->status : atomic_load(&d->quit) ? -ECANCELED : -ETIMEDOUT;
	if (rc == 0) {
		*reply = s->reply;
		*len = s->len;
		s->reply = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	sreq_unref(s);
	return rc;
}

/* ---- blocks: fetch, load, cache ------------------------------------------ */

/* Ask node `from` for block hash; a copy that matches its hash is stored
 * and copied into buf (cap bytes). 0; -ENOENT (or another errno the peer
 * answered) when the peer lacks it; -EBADMSG for a wrong copy; -EPROTO for
 * a malformed reply; or the request's error (-ETIMEDOUT, -ENOTCONN,
 * -ECANCELED at data_stop...), which *unreachable flags. */
int data_fetch_from(struct data *d, uint64_t from,
		      const uint8_t hash[ITAB_HASH_LEN], uint8_t *buf,
		      size_t cap, size_t *len, bool *unreachable)
{
	char hx[17];
	hex8(hash, hx);
	uint8_t *rep = NULL;
	size_t rlen = 0;
	*unreachable = false;
	int rc = sreq_call(d, from, WIRE_KIND_BLOCK_GET, hash, ITAB_HASH_LEN,
			   FETCH_TIMEOUT_MS, &rep, &rlen);
	if (rc < 0) {
		LOG(DEBUG, "block %s: fetch from node %llu: %s", hx,
		    (unsigned long long)from, strerror(-rc));
		*unreachable = true;
		return rc;
	}
	int st = rlen >= 4 ? (int32_t)be_get32(rep) : -EPROTO;
	size_t dl = rlen >= 4 ? rlen - 4 : 0;
	if (st == 0 && dl > cap)
		st = -EFBIG;
	if (st != 0) {
		LOG(DEBUG, "block %s: node %llu answers %s", hx,
		    (unsigned long long)from, strerror(-st));
		free(rep);
		return st;
	}
	/* blk_put_hashed checks the hash before anything else: any error
	 * but -EBADMSG means the content is right. */
	rc = blk_put_hashed(d->bs, hash, rep + 4, dl);
	if (rc == -EBADMSG) {
		LOG(WARN, "block %s: node %llu sent content that does not "
			  "match its hash", hx, (unsigned long long)from);
		free(rep);
		return -EBADMSG;
	}
	if (rc < 0)
		LOG(WARN, "block %s: fetched but not stored: %s", hx,
		    strerror(-rc));
	else
		data_recent_add(d, hash);
	memcpy(buf, rep + 4, dl);
	*len = dl;
	free(rep);
	LOG(DEBUG, "block %s: fetched from node %llu", hx,
	    (unsigned long long)from);
	return 0;
}

/* Get block hash from the other nodes, one after the other; the first copy
 * that matches its hash is stored and copied into buf (cap bytes). */
int data_fetch_block(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		       uint8_t *buf, size_t cap, size_t *len)
{
	struct peerset ps;
	data_peers_get(d, &ps);
	for (size_t i = 0; i < ps.n_others && !atomic_load(&d->quit); i++) {
		bool unreachable;
		if (data_fetch_from(d, ps.others[i], hash, buf, cap, len,
			       &unreachable) == 0)
			return 0;
	}
	return -EIO;
}

/* See data.h. */
int data_refetch(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		 uint64_t *from)
{
	uint8_t *buf = data_block_buf_alloc(d);
	if (!buf)
		return -ENOMEM;
	struct peerset ps;
	data_peers_get(d, &ps);
	int rc = -EIO;
	for (size_t i = 0; i < ps.n_others && !atomic_load(&d->quit); i++) {
		bool unreachable;
		size_t len;
		size_t cap = ((size_t)d->bsize + 4095) & ~(size_t)4095;
		if (data_fetch_from(d, ps.others[i], hash, buf, cap, &len,
				    &unreachable) == 0) {
			*from = ps.others[i];
			rc = 0;
			break;
		}
	}
	free(buf);
	return rc;
}

/* A buffer for one block, page-aligned and a whole number of pages, so
 * the block store can read into it without the page cache (blk_get). */
uint8_t *data_block_buf_alloc(const struct data *d)
{
	size_t n = ((size_t)d->bsize + 4095) & ~(size_t)4095;
	return aligned_alloc(4096, n);
}

/* Read block hash into buf (cap bytes): locally, or from a peer if it is
 * missing or damaged here. -EIO when no node can give it. */
static int load_block(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		      uint8_t *buf, size_t cap, size_t *len)
{
	int rc = blk_get(d->bs, hash, buf, cap, len);
	if (rc == 0)
		return 0;
	char hx[17];
	hex8(hash, hx);
	if (rc == -EBADMSG) {
		LOG(WARN, "block %s: local copy does not match its hash; "
			  "deleting it and fetching it again", hx);
		blk_delete(d->bs, hash); /* blk_get moved it away already */
	} else if (rc != -ENOENT) {
		LOG(WARN, "block %s: cannot read it: %s", hx, strerror(-rc));
		if (rc == -ERANGE)
			return -EIO;
	}
	rc = data_fetch_block(d, hash, buf, cap, len);
	if (rc < 0)
		LOG(ERROR, "block %s: missing here and no peer could provide "
			   "it; the file reads EIO there", hx);
	return rc;
}

/* Index of hash in the cache, or -1 (cache_mu held). */
static int cache_find(struct data *d, const uint8_t hash[ITAB_HASH_LEN])
{
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		if (d->cache[i].valid &&
		    memcmp(d->cache[i].hash, hash, ITAB_HASH_LEN) == 0)
			return (int)i;
	return -1;
}

/* Index of hash among the loads in flight, or -1 (cache_mu held). */
static int loading_find(struct data *d, const uint8_t hash[ITAB_HASH_LEN])
{
	for (size_t i = 0; i < d->n_loading; i++)
		if (memcmp(d->loading[i], hash, ITAB_HASH_LEN) == 0)
			return (int)i;
	return -1;
}

/* Copy bytes [off, off+n) of a block's content (len bytes, of which the
 * extent uses the first elen) into dst; bytes past it read as zeros. */
static void copy_part(const uint8_t *content, uint32_t len, uint32_t elen,
		      uint32_t off, uint32_t n, uint8_t *dst)
{
	uint32_t have = len < elen ? len : elen;
	uint32_t k = off < have ? (have - off < n ? have - off : n) : 0;
	memcpy(dst, content + off, k);
	memset(dst + k, 0, n - k);
}

/* Make sure block hash is in the cache, loading it (verified: blk_get
 * checks every local read, data_fetch_block every peer's copy) unless another
 * thread is doing that already, in which case wait for it. With dst, copy
 * bytes [off, off+n) (extent length elen) into it, from the cache or from
 * the freshly loaded buffer. wait false (read-ahead): return at once if
 * the block is cached or being loaded. 0 or a negative errno (the load
 * failed). */
static int cache_get(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		     uint32_t elen, uint32_t off, uint32_t n, uint8_t *dst,
		     bool wait)
{
	bool registered = false;
	pthread_mutex_lock(&d->cache_mu);
	for (;;) {
		int i = cache_find(d, hash);
		if (i >= 0) {
			struct cslot *c = &d->cache[i];
			c->used = ++d->cache_clock;
			if (dst)
				copy_part(c->buf, c->len, elen, off, n, dst);
			pthread_mutex_unlock(&d->cache_mu);
			return 0;
		}
		if (loading_find(d, hash) < 0)
			break;
		if (!wait) {
			pthread_mutex_unlock(&d->cache_mu);
			return 0;
		}
		/* Someone else is loading it: wait, then look again (on a
		 * failed load the cache still misses and we try ourselves). */
		pthread_cond_wait(&d->cache_cv, &d->cache_mu);
	}
	if (d->n_loading < LOADING_MAX) {
		memcpy(d->loading[d->n_loading++], hash, ITAB_HASH_LEN);
		registered = true;
	}
	pthread_mutex_unlock(&d->cache_mu);

	uint8_t *buf = data_block_buf_alloc(d);
	size_t len = 0;
	int rc = buf ? load_block(d, hash, buf, d->bsize, &len) : -ENOMEM;
	if (rc == 0 && dst)
		copy_part(buf, (uint32_t)len, elen, off, n, dst);

	/* Keep it: in a free slot, else in the least recently used one. */
	pthread_mutex_lock(&d->cache_mu);
	if (registered) {
		int li = loading_find(d, hash);
		if (li >= 0) {
			d->n_loading--;
			if ((size_t)li != d->n_loading)
				memcpy(d->loading[li], d->loading[d->n_loading],
				       ITAB_HASH_LEN);
		}
	}
	if (rc == 0 && cache_find(d, hash) < 0) {
		struct cslot *victim = NULL;
		for (unsigned i = 0; i < CACHE_SLOTS; i++) {
			struct cslot *c = &d->cache[i];
			if (victim && !victim->valid)
				continue;
			if (!victim || !c->valid || c->used < victim->used)
				victim = c;
		}
		uint8_t *old = victim->buf;
		victim->buf = buf;
		buf = old;
		memcpy(victim->hash, hash, ITAB_HASH_LEN);
		victim->len = (uint32_t)len;
		victim->valid = true;
		victim->used = ++d->cache_clock;
	}
	pthread_cond_broadcast(&d->cache_cv);
	pthread_mutex_unlock(&d->cache_mu);
	free(buf);
	return rc;
}

/* Copy bytes [off, off+n) of block hash (of which the extent uses the first
 * elen bytes) into dst; bytes past the content read as zeros. */
int data_block_read(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		      uint32_t elen, uint32_t off, uint32_t n, uint8_t *dst)
{
	return cache_get(d, hash, elen, off, n, dst, true);
}

/* The read-ahead thread: loads queued blocks into the cache (verified
 * like any read), so that a sequential reader finds the next block there
 * while the kernel is still copying the current one. */
void *data_ra_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-readahead");
	struct data *d = arg;
	pthread_mutex_lock(&d->cache_mu);
	while (!d->ra_stop) {
		if (d->ra_n == 0) {
			pthread_cond_wait(&d->cache_cv, &d->cache_mu);
			continue;
		}
		struct itab_extent e = d->ra_q[0];
		d->ra_n--;
		memmove(&d->ra_q[0], &d->ra_q[1], d->ra_n * sizeof d->ra_q[0]);
		pthread_mutex_unlock(&d->cache_mu);
		if (!atomic_load(&d->quit))
			cache_get(d, e.hash, e.len, 0, 0, NULL, false);
		pthread_mutex_lock(&d->cache_mu);
	}
	pthread_mutex_unlock(&d->cache_mu);
	return NULL;
}

/* Queue blocks for read-ahead (the oldest request gives way when the
 * queue is full: the reader has moved past it). */
void data_ra_queue(struct data *d, const struct itab_extent *e, size_t n)
{
	pthread_mutex_lock(&d->cache_mu);
	for (size_t i = 0; i < n; i++) {
		if (hash_is_zero(e[i].hash) || cache_find(d, e[i].hash) >= 0 ||
		    loading_find(d, e[i].hash) >= 0)
			continue;
		if (d->ra_n == RA_QUEUE) {
			d->ra_n--;
			memmove(&d->ra_q[0], &d->ra_q[1],
				d->ra_n * sizeof d->ra_q[0]);
		}
		d->ra_q[d->ra_n++] = e[i];
	}
	pthread_cond_broadcast(&d->cache_cv);
	pthread_mutex_unlock(&d->cache_mu);
}

/* ---- peers' requests ---------------------------------------------------------- */

static void reply_status(struct data *d, uint64_t to, uint64_t req_id,
			 uint16_t kind, int st)
{
	uint8_t b[4];
	be_put32(b, (uint32_t)(int32_t)st);
	link_reply(d->link, to, req_id, kind, b, sizeof b);
}

/* Answer one BLOCK_* request (block-store I/O; never waits on the
 * network). Every input is checked: a peer's garbage gets an error reply. */
static void serve_one(struct data *d, uint64_t from, uint64_t req_id,
		      uint16_t kind, const uint8_t *p, size_t len)
{
	if (kind == WIRE_KIND_BLOCK_PUT) {
		int rc = -EINVAL;
		if (len >= ITAB_HASH_LEN && len - ITAB_HASH_LEN <= d->bsize) {
			rc = blk_put_hashed(d->bs, p, p + ITAB_HASH_LEN,
					    len - ITAB_HASH_LEN);
			if (rc == 0)
				data_recent_add(d, p);
		}
		reply_status(d, from, req_id, kind, rc);
	} else if (kind == WIRE_KIND_BLOCK_GET) {
		uint64_t sz = 0;
		int rc = len == ITAB_HASH_LEN ? blk_size(d->bs, p, &sz)
					       : -EINVAL;
		uint8_t *out = rc == 0 && sz <= d->bsize ? malloc(4 + sz)
							 : NULL;
		if (rc == 0 && !out)
			rc = sz > d->bsize ? -EFBIG : -ENOMEM;
		size_t got = 0;
		if (rc == 0) {
			rc = blk_get(d->bs, p, out + 4, sz, &got);
			if (rc == -EBADMSG) /* damaged here (now quarantined) */
				rc = -ENOENT;
		}
		if (rc == 0) {
			be_put32(out, 0);
			link_reply(d->link, from, req_id, kind, out, 4 + got);
		} else {
			reply_status(d, from, req_id, kind, rc);
		}
		free(out);
	} else if (kind == WIRE_KIND_BLOCK_HAS) {
		size_t n = len / ITAB_HASH_LEN;
		if (len % ITAB_HASH_LEN || n > HAS_MAX) {
			reply_status(d, from, req_id, kind, -EINVAL);
		} else {
			uint8_t *out = malloc(4 + n);
			if (!out) {
				reply_status(d, from, req_id, kind, -ENOMEM);
			} else {
				be_put32(out, 0);
				for (size_t i = 0; i < n; i++)
					out[4 + i] = blk_has(d->bs,
							     p + i * ITAB_HASH_LEN) == 1;
				link_reply(d->link, from, req_id, kind, out,
					   4 + n);
				free(out);
			}
		}
	} else {
		reply_status(d, from, req_id, kind, -EOPNOTSUPP);
	}
}

/* See data.h. */
void data_handle_request(void *ctx, uint64_t from, uint64_t req_id,
			 uint16_t kind, const uint8_t *p, size_t len)
{
	struct data *d = ctx;
	pthread_mutex_lock(&d->mu);
	if (d->stop || !d->link) {
		pthread_mutex_unlock(&d->mu);
		return;
	}
	d->handlers++;
	pthread_mutex_unlock(&d->mu);

	serve_one(d, from, req_id, kind, p, len);

	pthread_mutex_lock(&d->mu);
	d->handlers--;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

