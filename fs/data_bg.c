/*
 * data_bg.c — the background thread: applied entries, catch-up after a
 * snapshot or restart, and block garbage collection.
 *
 * Catch-up. data_applied() only sees the WRITEs this node applies; after
 * a snapshot install (the table jumps ahead) or a restart (a crash between
 * apply and fetch) the table may reference blocks this node never got.
 * data_catch_up() has the background thread walk itab_blocks(), collect
 * the hashes blk_has() does not find (at most CATCHUP_BATCH per walk; a
 * full batch is followed by another walk) and fetch them, verified, with
 * CATCHUP_FETCHERS fetches in flight: the worker and two helper threads
 * started for the walk, each asking the peers in turn from a different
 * first peer, and skipping a peer for the rest of the walk once a request
 * to it failed. Every walk logs one summary line. When blocks are still
 * missing the walk is repeated after 5 s, doubling up to 60 s, until one
 * finds nothing missing; reads fetch on demand meanwhile. data_stop()
 * ends a walk within a fetch poll (200 ms).
 *
 * Garbage. Blocks whose reference count reached 0 in an applied entry are
 * deleted by the background thread after it re-checks itab_block_refs().
 * A block stored but never committed (a flush that failed, a crash before
 * the WRITE) is found by a periodic scan of the store (blk_list) and
 * deleted when unreferenced and older than gc_grace (file mtime). Both
 * paths also keep every block this process stored or received within
 * RECENT_PROTECT_MS (or gc_grace if shorter; the "recent" set): a flush
 * may reuse a block whose last reference is being dropped at the same
 * moment (rewriting a file with the same content), and its WRITE only
 * arrives after the push. A delete held back that way is tried again
 * when the protection ends, so the space of a file removed right after
 * it was written comes back within that window. Weakness:
 * after a restart the recent set is empty; a block pushed to this node by
 * a peer just before, with an old mtime from an earlier life, could be
 * deleted before its WRITE applies here; the fetcher then gets it back
 * from the majority that holds it.
 */
#include "fs/data_internal.h"

/* ---- applied entries and the background thread ---------------------------------- */

/* Queue one item (d->mu held). Returns false without memory. */
static bool wq_push(struct data *d, const uint8_t h[ITAB_HASH_LEN],
		    uint8_t what)
{
	if (d->qn == d->qcap) {
		size_t nc = d->qcap ? d->qcap * 2 : 256;
		struct wq_item *nq = realloc(d->q, nc * sizeof *nq);
		if (!nq)
			return false;
		d->q = nq;
		d->qcap = nc;
	}
	memcpy(d->q[d->qn].hash, h, ITAB_HASH_LEN);
	d->q[d->qn++].what = what;
	return true;
}

/* See data.h. */
void data_applied(struct data *d, const struct itab_op *op,
		  const struct itab_result *res)
{
	if (!res || res->skipped)
		return;
	bool fetch = op && op->code == ITAB_OP_WRITE && res->err == 0 &&
		     op->n_extents > 0;
	if (!fetch && res->n_freed == 0)
		return;
	pthread_mutex_lock(&d->mu);
	bool lost = false;
	for (size_t i = 0; i < res->n_freed; i++)
		lost |= !wq_push(d, res->freed[i], WQ_DELETE);
	for (size_t i = 0; fetch && i < op->n_extents; i++)
		if (!hash_is_zero(op->extents[i].hash))
			lost |= !wq_push(d, op->extents[i].hash, WQ_FETCH);
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	if (lost) /* the periodic scan and reads still cover these */
		LOG(WARN, "out of memory queueing block work");
}

/* Delete hash if nothing references it and it is not recently stored.
 * *recent (may be NULL) says the recent set alone kept it. */
static bool maybe_delete(struct data *d, const uint8_t h[ITAB_HASH_LEN],
			 bool *recent)
{
	if (recent)
		*recent = false;
	if (itab_block_refs(d->cfg.itab, h) != 0)
		return false;
	if (data_recent_has(d, h)) {
		if (recent)
			*recent = true;
		return false;
	}
	int rc = blk_delete(d->bs, h);
	if (rc < 0 && rc != -ENOENT) {
		char hx[17];
		hex8(h, hx);
		LOG(WARN, "block %s: cannot delete it: %s", hx, strerror(-rc));
	}
	return rc == 0;
}

/* Make sure hash is stored here (background catch-up). 0 when it is (or
 * is no longer needed), else the fetch error. */
static int ensure_block(struct data *d, const uint8_t h[ITAB_HASH_LEN],
			uint8_t *tmp)
{
	if (blk_has(d->bs, h) == 1)
		return 0;
	if (itab_block_refs(d->cfg.itab, h) == 0)
		return 0;
	size_t len;
	return data_fetch_block(d, h, tmp, d->bsize, &len);
}

struct gc_walk {
	struct data *d;
	uint8_t (*cand)[ITAB_HASH_LEN];
	size_t n, cap;
};

static int gc_collect(void *ctx, const uint8_t hash[BLK_HASH_LEN],
		      uint64_t size)
{
	struct gc_walk *w = ctx;
	if (itab_block_refs(w->d->cfg.itab, hash) != 0)
		return 0;
	if (w->n == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 64;
		void *nn = realloc(w->cand, nc * ITAB_HASH_LEN);
		if (!nn)
			return -ENOMEM;
		w->cand = nn;
		w->cap = nc;
	}
	memcpy(w->cand[w->n++], hash, ITAB_HASH_LEN);
	return 0;
}

/* Age in ms of the stored block file (by the documented store layout
 * DIR/HH/<hex>), or -1 if unknown. */
static int64_t block_age_ms(struct data *d, const uint8_t h[ITAB_HASH_LEN])
{
	char hex[BLK_HEX_LEN + 1];
	blk_hex(h, hex);
	char path[4096];
	snprintf(path, sizeof path, "%s/%.2s/%s", blk_path(d->bs), hex, hex);
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000 +
		     st.st_mtim.tv_nsec / 1000000;
	return now_ns(CLOCK_REALTIME) / 1000000 - mt;
}

/* See data.h. */
int data_gc(struct data *d, uint64_t *deleted)
{
	struct gc_walk w = {.d = d};
	uint64_t n = 0;
	int rc = blk_list(d->bs, gc_collect, &w);
	for (size_t i = 0; i < w.n && !atomic_load(&d->quit); i++) {
		int64_t age = block_age_ms(d, w.cand[i]);
		if (age < 0 || age < (int64_t)d->cfg.gc_grace_ms)
			continue;
		if (maybe_delete(d, w.cand[i], NULL))
			n++;
	}
	free(w.cand);
	if (n)
		LOG(INFO, "block gc: deleted %llu unreferenced blocks",
		    (unsigned long long)n);
	if (deleted)
		*deleted = n;
	return rc;
}

/* ---- catch-up walk ---------------------------------------------------------------- */

/* One walk over the blocks the table references (data_catch_up). */
struct catchup {
	struct data *d;
	uint8_t (*miss)[ITAB_HASH_LEN]; /* missing here when collected */
	size_t n, cap;
	uint64_t referenced;            /* blocks seen by the walk */
	bool full;                      /* stopped collecting at CATCHUP_BATCH */
	bool oom;
	struct peerset ps;
	atomic_size_t next;             /* next miss[] to fetch */
	atomic_size_t got, gone, failed;
	atomic_bool dead[RAFT_MAX_NODES]; /* peer unreachable during this walk */
};

/* itab_blocks callback: remember hash if this node lacks it. */
static int catchup_collect(void *ctx, const uint8_t hash[ITAB_HASH_LEN])
{
	struct catchup *c = ctx;
	if (atomic_load(&c->d->quit))
		return 1;
	c->referenced++;
	if (blk_has(c->d->bs, hash) == 1)
		return 0;
	if (c->n == CATCHUP_BATCH) {
		c->full = true;
		return 1;
	}
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 256;
		void *nm = realloc(c->miss, nc * ITAB_HASH_LEN);
		if (!nm) {
			c->oom = true;
			return 1;
		}
		c->miss = nm;
		c->cap = nc;
	}
	memcpy(c->miss[c->n++], hash, ITAB_HASH_LEN);
	return 0;
}

/* Get missing block i: the peers in turn, starting at a different one for
 * each block (the load spreads over them), skipping a peer once a request
 * to it failed in this walk (a down peer costs one timeout per fetcher,
 * not one per block). tmp holds a block. */
static void catchup_one(struct catchup *c, size_t i, uint8_t *tmp)
{
	struct data *d = c->d;
	const uint8_t *h = c->miss[i];
	if (blk_has(d->bs, h) == 1) { /* a read or data_applied got it */
		atomic_fetch_add(&c->got, 1);
		return;
	}
	if (itab_block_refs(d->cfg.itab, h) == 0) {
		atomic_fetch_add(&c->gone, 1);
		return;
	}
	size_t n = c->ps.n_others;
	for (size_t k = 0; k < n && !atomic_load(&d->quit); k++) {
		size_t p = (i + k) % n;
		if (atomic_load(&c->dead[p]))
			continue;
		bool unreachable;
		size_t len;
		int rc = data_fetch_from(d, c->ps.others[p], h, tmp, d->bsize, &len,
				    &unreachable);
		if (rc == 0) {
			atomic_fetch_add(&c->got, 1);
			return;
		}
		if (unreachable && rc != -ECANCELED && rc != -ENOMEM &&
		    rc != -EAGAIN)
			atomic_store(&c->dead[p], true);
	}
	if (!atomic_load(&d->quit))
		atomic_fetch_add(&c->failed, 1);
}

/* Work off miss[] until it is done or data_stop began. */
static void catchup_fetch(struct catchup *c, uint8_t *tmp)
{
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->n || atomic_load(&c->d->quit))
			return;
		catchup_one(c, i, tmp);
	}
}

/* A helper fetcher of a walk (the worker is another). */
static void *catchup_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-catchup");
	struct catchup *c = arg;
	uint8_t *tmp = malloc(c->d->bsize);
	if (tmp) /* without memory the other fetchers do the work */
		catchup_fetch(c, tmp);
	free(tmp);
	return NULL;
}

/* Walk every block the table references and fetch those this node lacks,
 * verified, from its peers, CATCHUP_FETCHERS at a time. Returns the number
 * of blocks still missing (failed fetches; SIZE_MAX when the walk could
 * not finish for want of memory or a table error), and sets *more when
 * the batch was full and another walk should follow at once. */
static size_t catchup_walk(struct data *d, uint8_t *tmp, bool *more)
{
	struct catchup *c = calloc(1, sizeof *c);
	*more = false;
	if (!c) {
		LOG(WARN, "block catch-up: out of memory; trying again later");
		return SIZE_MAX;
	}
	c->d = d;
	int64_t t0 = mono_ms();
	int rc = itab_blocks(d->cfg.itab, catchup_collect, c);
	data_peers_get(d, &c->ps);
	pthread_t th[CATCHUP_FETCHERS];
	unsigned nth = 0;
	while (c->n > 1 + nth && nth + 1 < CATCHUP_FETCHERS &&
	       pthread_create(&th[nth], NULL, catchup_main, c) == 0)
		nth++;
	catchup_fetch(c, tmp);
	for (unsigned i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	size_t got = atomic_load(&c->got), gone = atomic_load(&c->gone);
	size_t failed = atomic_load(&c->failed);
	bool quit = atomic_load(&d->quit);
	size_t left = failed;
	if (rc < 0 || c->oom)
		left = SIZE_MAX;
	if (c->n || rc < 0 || c->oom || quit)
		LOG(INFO, "block catch-up%s: %llu blocks referenced%s, %zu missing "
			  "here: %zu fetched, %zu no longer referenced, %zu failed "
			  "(%lld ms)%s%s",
		    quit ? " (stopped)" : "",
		    (unsigned long long)c->referenced,
		    c->full ? " so far" : "", c->n, got, gone, failed,
		    (long long)(mono_ms() - t0),
		    failed ? "; walking again later, reads fetch on demand" : "",
		    rc < 0 || c->oom ? "; the walk stopped early (table error "
				       "or no memory)" : "");
	else
		LOG(DEBUG, "block catch-up: all %llu referenced blocks are here",
		    (unsigned long long)c->referenced);
	*more = c->full && failed == 0 && !quit;
	free(c->miss);
	free(c);
	return left;
}

/* See data.h. */
void data_catch_up(struct data *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->walk_req = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* The background thread: deletions, catch-up fetches, periodic GC. */
void *data_worker_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-data");
	struct data *d = arg;
	uint8_t *tmp = malloc(d->bsize);
	struct wq_item *retry = NULL;
	size_t nretry = 0, retry_cap = 0;
	/* deletes the recent set held back, tried again when it lets go:
	 * a file deleted soon after it was written frees its space then, not
	 * only at the periodic scan after gc_grace */
	struct wq_item *later = NULL;
	size_t nlater = 0, later_cap = 0;
	int64_t later_at = INT64_MAX;
	int64_t next_gc = mono_ms() + d->cfg.gc_interval_ms;
	int64_t next_retry = mono_ms() + FETCH_RETRY_MS;
	int64_t next_walk = INT64_MAX; /* a walk that left blocks missing */
	uint32_t walk_backoff = FETCH_RETRY_MS;
	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		if (d->qn == 0 && !d->walk_req) {
			int64_t now = mono_ms();
			int64_t wake = next_gc < next_retry ? next_gc : next_retry;
			if (next_walk < wake)
				wake = next_walk;
			if (later_at < wake)
				wake = later_at;
			if (wake > now) {
				struct timespec dl =
					mono_deadline((uint32_t)(wake - now));
				pthread_cond_timedwait(&d->cv, &d->mu, &dl);
				if (d->stop)
					break;
			}
		}
		bool walk = d->walk_req || mono_ms() >= next_walk;
		d->walk_req = false;
		struct wq_item *q = d->q;
		size_t qn = d->qn;
		d->q = NULL;
		d->qn = d->qcap = 0;
		d->busy = true;
		pthread_mutex_unlock(&d->mu);

		for (size_t i = 0; i < qn && !atomic_load(&d->quit); i++) {
			if (q[i].what == WQ_DELETE) {
				bool recent;
				maybe_delete(d, q[i].hash, &recent);
				if (!recent)
					continue;
				if (nlater == later_cap) {
					size_t nc = later_cap ? later_cap * 2 : 64;
					struct wq_item *nl =
						realloc(later, nc * sizeof *nl);
					if (!nl)
						continue; /* the periodic scan */
					later = nl;
					later_cap = nc;
				}
				later[nlater++] = q[i];
				if (later_at == INT64_MAX)
					later_at = mono_ms() +
						   data_recent_window(d) + 1000;
				continue;
			}
			if (!tmp || ensure_block(d, q[i].hash, tmp) == 0)
				continue;
			if (nretry == retry_cap) {
				size_t nc = retry_cap ? retry_cap * 2 : 64;
				struct wq_item *nr =
					realloc(retry, nc * sizeof *nr);
				if (!nr)
					continue;
				retry = nr;
				retry_cap = nc;
			}
			retry[nretry++] = q[i];
		}
		free(q);

		if (walk && tmp && !atomic_load(&d->quit)) {
			bool more;
			size_t left = catchup_walk(d, tmp, &more);
			if (left && !atomic_load(&d->quit)) {
				next_walk = mono_ms() + walk_backoff;
				walk_backoff = walk_backoff * 2 > CATCHUP_RETRY_MAX_MS
						       ? CATCHUP_RETRY_MAX_MS
						       : walk_backoff * 2;
			} else {
				next_walk = more ? mono_ms() : INT64_MAX;
				walk_backoff = FETCH_RETRY_MS;
			}
		}

		int64_t now = mono_ms();
		if (now >= later_at) {
			/* held back later than the first of them, or stored
			 * again meanwhile: wait another window */
			size_t keep = 0;
			for (size_t i = 0; i < nlater && !atomic_load(&d->quit); i++) {
				bool recent;
				maybe_delete(d, later[i].hash, &recent);
				if (recent)
					later[keep++] = later[i];
			}
			nlater = keep;
			later_at = keep ? mono_ms() + data_recent_window(d) + 1000
					: INT64_MAX;
		}
		if (now >= next_retry) {
			size_t keep = 0;
			for (size_t i = 0; i < nretry; i++)
				if (atomic_load(&d->quit) ||
				    (tmp && ensure_block(d, retry[i].hash, tmp) != 0))
					retry[keep++] = retry[i];
			if (keep)
				LOG(INFO, "%zu blocks still missing here; "
					  "retrying in %u s",
				    keep, FETCH_RETRY_MS / 1000);
			nretry = keep;
			next_retry = mono_ms() + FETCH_RETRY_MS;
		}
		if (now >= next_gc && !atomic_load(&d->quit)) {
			data_gc(d, NULL);
			data_recent_prune(d, false);
			next_gc = mono_ms() + d->cfg.gc_interval_ms;
		}
		pthread_mutex_lock(&d->mu);
		d->busy = false;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	free(retry);
	free(later);
	free(tmp);
	return NULL;
}

/* See data.h. */
void data_drain(struct data *d)
{
	pthread_mutex_lock(&d->mu);
	while ((d->qn > 0 || d->busy || d->walk_req) && !d->stop)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
}

