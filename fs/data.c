/*
 * data.c — file contents: dirty buffers, blocks, majority push, fetch and
 * block garbage collection (see data.h for the contract).
 *
 * Block size. The inode table fixes it at creation; the mount code passes
 * DATA_BLOCK_SIZE (256 KiB, data.h) in itab_config. Measured on the
 * 2-core development VM (shared with other builds, so noisy; two runs
 * each) with throwaway programs:
 *
 *  (a) 256 MiB of random data: SHA-256 (OpenSSL); hash + local store
 *      (blk_put, no fsync); push = hash + one loopback link to a second
 *      store that verifies and stores, 16 requests in flight:
 *
 *   block    sha256          hash+local put             push
 *   64 KiB   1218/1166 MB/s  328/166 MB/s (200-400 us)  142/66 MB/s
 *   256 KiB  1221/1247       432/342      (600-770 us)  151/79
 *   1 MiB    1170/816        485/294      (2.2-3.6 ms)  160/77
 *   4 MiB    1206/859        405/344      (10-12 ms)    130/90
 *
 *  (b) this module end to end, 512 MiB written with 1 MiB data_write()s,
 *      then read back with 128 KiB data_read()s; one node, or two nodes
 *      in one process over loopback links (majority = both):
 *
 *   block    1 node: write / read     2 nodes: write / read
 *   64 KiB   332 / 437 MB/s           56 / 457 MB/s
 *   256 KiB  274 / 652                87 / 661
 *   1 MiB    353 / 550                80 / 563
 *
 * 64 KiB pays a visible per-block cost (file create + rename per block,
 * one frame per block, 16384 extents per GiB). From 256 KiB up the
 * per-block costs vanish into the noise, while larger blocks cost more
 * for every small change: a 4 KiB overwrite is a read-modify-write of a
 * whole block (read, hash, store, push to every voter) and a cold 4 KiB
 * read fetches and verifies a whole block. 256 KiB keeps sequential
 * throughput at the 1 MiB figure with a quarter of that amplification.
 * (Profile of the 2-node run: half of the CPU goes to the link's CRC32C
 * of each frame, computed bytewise on both ends; the block size does not
 * change that.)
 *
 * Write path. A handle keeps its dirty blocks in a sorted array; each
 * block buffer holds 32 bytes of room for the hash, then block_size bytes,
 * of which [lo, hi) were written by the application (a write that leaves
 * a gap to the existing range fills the gap from the committed content at
 * once). A flush completes partial blocks from the committed content
 * (read-modify-write) and hands each block to STORE_THREADS store threads
 * (blk_put writes the hash into the room in front of the data, so the
 * buffer IS the BLOCK_PUT body: no copy): stores are synced, and the disk
 * commits concurrent syncs together. A block is pushed to every other
 * voter once it is hashed, up to PUSH_WINDOW requests in flight per peer:
 * a big block once it is stored (blk_put hashes it; hashing it twice would
 * cost more CPU than the overlap gains), a small one (<= PREHASH_MAX: the
 * single block of a small file's flush) at once, hashed up front, so that
 * its local and remote syncs run at the same time. The flush waits for
 * every local store as well as for the majority. When every block is held
 * by a majority of the voters (self included when self is a voter), one
 * ITAB_OP_WRITE carries all extents. Nothing is proposed on any failure:
 * blocks already stored are then unreferenced and collected later.
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
 * gc_grace (the "recent" set): a flush may reuse a block whose last
 * reference is being dropped at the same moment (rewriting a file with
 * the same content), and its WRITE only arrives after the push. Weakness:
 * after a restart the recent set is empty; a block pushed to this node by
 * a peer just before, with an old mtime from an earlier life, could be
 * deleted before its WRITE applies here; the fetcher then gets it back
 * from the majority that holds it.
 */
#include "fs/data.h"
#include "fs/be.h"
#include "fs/mono.h"

#include "consensus/repl.h"
#include "storage/blk.h"
#include "transport/link.h"
#include "transport/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DIRTY_MAX_DEFAULT (64u << 20)
#define PUSH_TIMEOUT_DEFAULT_MS 10000u
#define GC_INTERVAL_DEFAULT_MS 300000u
#define GC_GRACE_DEFAULT_MS 600000u
#define FETCH_TIMEOUT_MS 5000u   /* one BLOCK_GET to one peer */
#define FETCH_RETRY_MS 5000u     /* background fetches that failed */
#define PUSH_WINDOW 8u           /* BLOCK_PUTs in flight per peer */
#define PUSH_AGAIN_MS 50         /* resend delay after a busy (-EAGAIN) peer */
#define CACHE_SLOTS 24u
#define LOADING_MAX 16u          /* block loads in flight, deduplicated */
#define RA_BLOCKS 8u             /* blocks read ahead of a sequential reader */
#define RA_QUEUE 16u             /* read-ahead requests waiting */
#define RA_THREADS 3u            /* read-ahead loaders */
#define STORE_THREADS 4u         /* local block stores of a flush in parallel */
#define PREHASH_MAX (64u << 10)  /* blocks up to this are hashed up front */
#define RECENT_BUCKETS 16384u
#define HAS_MAX 4096u            /* hashes per BLOCK_HAS request */
#define CATCHUP_FETCHERS 3u      /* catch-up fetches in flight (one per thread) */
#define CATCHUP_BATCH 65536u     /* missing hashes collected per walk */
#define CATCHUP_RETRY_MAX_MS 60000u /* longest pause before walking again */

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ms(void) { return now_ns(CLOCK_MONOTONIC) / 1000000; }

/* Deadlines: mono_deadline() (fs/mono.h), for pthread_cond_timedwait on
 * condvars made by cond_init_mono() (a wall-clock step must not stretch or
 * cut a wait). */

static bool ts_passed(const struct timespec *dl)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > dl->tv_sec ||
	       (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* A condvar whose timed waits use CLOCK_MONOTONIC (see deadline_in). */
static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

static bool hash_is_zero(const uint8_t h[ITAB_HASH_LEN])
{
	static const uint8_t zero[ITAB_HASH_LEN];
	return memcmp(h, zero, ITAB_HASH_LEN) == 0;
}

static void hex8(const uint8_t h[ITAB_HASH_LEN], char out[17])
{
	char full[BLK_HEX_LEN + 1];
	blk_hex(h, full);
	memcpy(out, full, 16);
	out[16] = '\0';
}

/* ---- state --------------------------------------------------------------- */

/* One dirty block of a handle. */
struct dblock {
	uint64_t index;
	uint32_t lo, hi; /* bytes [lo, hi) of the block are valid in buf */
	uint8_t *buf;    /* ITAB_HASH_LEN bytes of room, then block_size */
};

struct data_file {
	struct data_file *prev, *next; /* d->files; guarded by d->mu */
	unsigned refs;                 /* guarded by d->mu */
	uint64_t ino;
	pthread_mutex_t mu;    /* guards blocks/n/cap; held across a flush */
	struct dblock *blocks; /* sorted by index */
	size_t n, cap;
	/* End of the dirty bytes (0: none); written under mu, read without
	 * it by data_dirty_size(). */
	_Atomic uint64_t dirty_end;
	/* CLOCK_REALTIME of the last buffered write (0: none): the WRITE's
	 * mtime and ctime, so the times are those of the write(2), not of
	 * the flush. Written under mu, read by data_dirty_mtime(). */
	_Atomic int64_t wtime_ns;
	/* Read-ahead: where the last read ended, and the first block index
	 * not yet queued for read-ahead (sequential detection only; races
	 * between parallel readers merely skip or repeat a hint). */
	_Atomic uint64_t ra_pos;
	_Atomic uint64_t ra_next;
};

struct cslot {
	uint8_t hash[ITAB_HASH_LEN];
	bool valid;
	uint32_t len;  /* bytes of block content in buf */
	uint64_t used; /* LRU clock */
	uint8_t *buf;  /* block_size bytes */
};

struct recent {
	struct recent *next;
	uint8_t hash[ITAB_HASH_LEN];
	int64_t ms; /* mono_ms() when stored/received */
};

enum { WQ_FETCH = 1, WQ_DELETE = 2 };

struct wq_item {
	uint8_t hash[ITAB_HASH_LEN];
	uint8_t what; /* WQ_* */
};

struct data {
	struct data_cfg cfg;
	struct blk_store *bs;
	struct link *link; /* NULL: no peers */
	uint32_t bsize;
	size_t dirty_max;
	uint64_t voters[RAFT_MAX_NODES]; /* fixed voters when cfg.repl == NULL */
	size_t n_voters;

	pthread_mutex_t mu;       /* guards everything up to worker */
	pthread_cond_t cv;        /* worker wake-ups and data_drain() */
	struct data_file *files;  /* open handles */
	struct wq_item *q;        /* work for the background thread */
	size_t qn, qcap;
	bool busy;                /* worker is processing a batch */
	bool walk_req;            /* data_catch_up() asked for a walk */
	bool stop;
	unsigned handlers;        /* request handlers running */
	pthread_t worker;
	atomic_bool quit;         /* data_stop began: long loops give up */
	atomic_size_t n_dirty;    /* handles with unflushed bytes (hot-path
				     shortcut of data_dirty_size) */

	pthread_mutex_t cache_mu; /* guards cache, cache_clock, loading, ra_* */
	pthread_cond_t cache_cv;  /* a load finished; read-ahead queued/stop */
	struct cslot cache[CACHE_SLOTS];
	uint64_t cache_clock;
	/* Blocks being loaded (read + verified, or fetched) right now: a
	 * reader of one of them waits for that load instead of doing it
	 * again (the kernel reads a 256 KiB block as two 128 KiB requests,
	 * often in parallel). */
	uint8_t loading[LOADING_MAX][ITAB_HASH_LEN];
	size_t n_loading;
	/* Read-ahead queue, worked off by ra_threads. */
	struct itab_extent ra_q[RA_QUEUE];
	size_t ra_n;
	bool ra_stop;
	pthread_t ra_threads[RA_THREADS];
	unsigned n_ra_threads;

	/* Local stores of flushes, done by STORE_THREADS threads: a synced
	 * store waits for the disk, and the disk commits concurrent fsyncs
	 * together (one at a time: ~35 MiB/s of 256 KiB blocks on the
	 * development VM; four at a time: 360-640 MiB/s). */
	pthread_mutex_t store_mu;  /* guards store_q, store_stop */
	pthread_cond_t store_cv;
	struct store_job *store_q; /* singly linked, FIFO */
	struct store_job *store_tail;
	bool store_stop;
	pthread_t store_threads[STORE_THREADS];
	unsigned n_store_threads;

	pthread_mutex_t recent_mu; /* guards recent */
	struct recent *recent[RECENT_BUCKETS];
};

/* ---- the recent set ------------------------------------------------------ */

static unsigned recent_bucket(const uint8_t h[ITAB_HASH_LEN])
{
	return ((unsigned)h[0] << 16 | (unsigned)h[1] << 8 | h[2]) %
	       RECENT_BUCKETS;
}

/* Remember that this process stored hash just now. */
static void recent_add(struct data *d, const uint8_t h[ITAB_HASH_LEN])
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

/* True if hash was stored by this process within the grace period. */
static bool recent_has(struct data *d, const uint8_t h[ITAB_HASH_LEN])
{
	unsigned b = recent_bucket(h);
	int64_t limit = mono_ms() - d->cfg.gc_grace_ms;
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

/* Drop entries older than the grace period (all = everything). */
static void recent_prune(struct data *d, bool all)
{
	int64_t limit = mono_ms() - d->cfg.gc_grace_ms;
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

/* ---- configuration ------------------------------------------------------- */

/* Who to push to and how many of them must answer. */
struct peerset {
	uint64_t voters[RAFT_MAX_NODES]; /* voters other than self */
	size_t n_voters;
	uint64_t others[RAFT_MAX_NODES]; /* every other node (fetch sources) */
	size_t n_others;
	size_t need; /* acks needed from voters[] besides our own copy */
};

/* Majority of the voters of the current configuration: floor(n/2)+1, our
 * own copy counting when this node is a voter. No configuration known
 * (or no link): this node alone. */
static void peers_get(struct data *d, struct peerset *ps)
{
	memset(ps, 0, sizeof *ps);
	uint64_t ids[RAFT_MAX_NODES];
	bool voter[RAFT_MAX_NODES];
	size_t n = 0;
	if (d->cfg.repl) {
		struct repl_status st;
		repl_status(d->cfg.repl, &st);
		for (uint32_t i = 0; i < st.raft.conf.n && n < RAFT_MAX_NODES;
		     i++) {
			ids[n] = st.raft.conf.nodes[i].id;
			voter[n++] = st.raft.conf.nodes[i].role == RAFT_VOTER;
		}
	} else {
		for (size_t i = 0; i < d->n_voters; i++) {
			ids[n] = d->voters[i];
			voter[n++] = true;
		}
	}
	size_t nv = 0;
	bool self_voter = false;
	for (size_t i = 0; i < n; i++) {
		if (voter[i])
			nv++;
		if (ids[i] == d->cfg.self_id) {
			self_voter = voter[i];
			continue;
		}
		if (!d->link)
			continue;
		ps->others[ps->n_others++] = ids[i];
		if (voter[i])
			ps->voters[ps->n_voters++] = ids[i];
	}
	if (nv == 0 || !d->link) {
		ps->n_voters = 0;
		ps->need = 0;
		return;
	}
	size_t majority = nv / 2 + 1;
	ps->need = majority - (self_voter ? 1 : 0);
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
static int fetch_from(struct data *d, uint64_t from,
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
		recent_add(d, hash);
	memcpy(buf, rep + 4, dl);
	*len = dl;
	free(rep);
	LOG(DEBUG, "block %s: fetched from node %llu", hx,
	    (unsigned long long)from);
	return 0;
}

/* Get block hash from the other nodes, one after the other; the first copy
 * that matches its hash is stored and copied into buf (cap bytes). */
static int fetch_block(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		       uint8_t *buf, size_t cap, size_t *len)
{
	struct peerset ps;
	peers_get(d, &ps);
	for (size_t i = 0; i < ps.n_others && !atomic_load(&d->quit); i++) {
		bool unreachable;
		if (fetch_from(d, ps.others[i], hash, buf, cap, len,
			       &unreachable) == 0)
			return 0;
	}
	return -EIO;
}

/* A buffer for one block, page-aligned and a whole number of pages, so
 * the block store can read into it without the page cache (blk_get). */
static uint8_t *block_buf_alloc(const struct data *d)
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
	rc = fetch_block(d, hash, buf, cap, len);
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
 * checks every local read, fetch_block every peer's copy) unless another
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

	uint8_t *buf = block_buf_alloc(d);
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
static int block_read(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		      uint32_t elen, uint32_t off, uint32_t n, uint8_t *dst)
{
	return cache_get(d, hash, elen, off, n, dst, true);
}

/* The read-ahead thread: loads queued blocks into the cache (verified
 * like any read), so that a sequential reader finds the next block there
 * while the kernel is still copying the current one. */
static void *ra_main(void *arg)
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
static void ra_queue(struct data *d, const struct itab_extent *e, size_t n)
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

/* ---- committed extents ----------------------------------------------------- */

struct ext_span {
	uint64_t first;
	size_t n;
	struct itab_extent *e; /* n entries; hash all zero = hole */
};

static int ext_collect(void *ctx, uint64_t index,
		       const uint8_t hash[ITAB_HASH_LEN], uint32_t len)
{
	struct ext_span *s = ctx;
	if (index >= s->first && index - s->first < s->n) {
		struct itab_extent *e = &s->e[index - s->first];
		e->index = index;
		memcpy(e->hash, hash, ITAB_HASH_LEN);
		e->len = len;
	}
	return 0;
}

/* Committed extents of ino for blocks [first, first+n) into e[] (holes
 * zeroed). */
static int extents_get(struct data *d, uint64_t ino, uint64_t first, size_t n,
		       struct itab_extent *e)
{
	memset(e, 0, n * sizeof *e);
	struct ext_span s = {.first = first, .n = n, .e = e};
	return itab_extents(d->cfg.itab, ino, first, n, ext_collect, &s);
}

/* Fill bytes [from, to) of dirty block b with its committed content (zeros
 * where there is none). *clen (may be NULL) gets the committed length. */
static int fill_committed(struct data *d, uint64_t ino, struct dblock *b,
			  uint32_t from, uint32_t to, uint32_t *clen)
{
	struct itab_extent e;
	int rc = extents_get(d, ino, b->index, 1, &e);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	uint32_t len = hash_is_zero(e.hash) ? 0 : e.len;
	if (len > d->bsize)
		len = d->bsize;
	if (clen)
		*clen = len;
	if (from >= to)
		return 0;
	if (len == 0) {
		memset(b->buf + ITAB_HASH_LEN + from, 0, to - from);
		return 0;
	}
	return block_read(d, e.hash, len, from, to - from,
			  b->buf + ITAB_HASH_LEN + from);
}

/* ---- dirty blocks of a handle --------------------------------------------- */

/* Position of index in f->blocks (or where it would go). */
static size_t dblock_pos(const struct data_file *f, uint64_t index)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->blocks[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Drop f's dirty blocks (f->mu held, or f unreachable). */
static void dblocks_free(struct data *d, struct data_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->blocks[i].buf);
	free(f->blocks);
	f->blocks = NULL;
	f->n = f->cap = 0;
	if (atomic_exchange(&f->dirty_end, 0) != 0)
		atomic_fetch_sub(&d->n_dirty, 1);
	atomic_store(&f->wtime_ns, 0);
}

/* ---- the majority push ------------------------------------------------------ */

struct push_peer {
	uint64_t id;
	size_t next;       /* next block to send */
	unsigned inflight; /* requests sent, not answered */
	bool dead;         /* connection failed: its remaining blocks fail */
	uint32_t *again;   /* blocks to send again (peer was busy); nblocks */
	size_t n_again;
	int64_t again_at;  /* mono_ms() from which to resend them */
};

struct push {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned refs; /* the flusher + one per request in flight */
	size_t nblocks, ready; /* blocks [0, ready) may be sent */
	uint8_t *stored;       /* per block: 1 hashed (may be pushed), 2 also
				  stored locally */
	size_t n_stored;       /* blocks stored locally */
	size_t stores_pending; /* store jobs queued or running */
	int store_err;         /* first failed local store */
	size_t need;           /* acks per block needed from peers */
	uint32_t *acks, *fails; /* per block */
	size_t npeers;
	struct push_peer peer[RAFT_MAX_NODES];
	int peer_err; /* e.g. -ENOSPC answered by a peer */
	bool started_all;
};

struct push_req {
	struct push *p;
	uint32_t block;
	uint32_t peer;
};

static void push_unref_locked(struct push *p, bool *freed)
{
	*freed = --p->refs == 0;
}

static void push_free(struct push *p)
{
	for (size_t i = 0; i < p->npeers; i++)
		free(p->peer[i].again);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->acks);
	free(p->fails);
	free(p->stored);
	free(p);
}

static void push_unref(struct push *p)
{
	bool freed;
	pthread_mutex_lock(&p->mu);
	push_unref_locked(p, &freed);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
}

/* Fail every block not yet sent to peer i (under p->mu). */
static void push_kill_peer(struct push *p, size_t i)
{
	struct push_peer *pp = &p->peer[i];
	pp->dead = true;
	for (size_t b = pp->next; b < p->nblocks; b++)
		p->fails[b]++;
	pp->next = p->nblocks;
	for (size_t k = 0; k < pp->n_again; k++)
		p->fails[pp->again[k]]++;
	pp->n_again = 0;
}

/* link_reply_fn for one BLOCK_PUT. */
static void push_cb(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct push_req *r = ctx;
	struct push *p = r->p;
	pthread_mutex_lock(&p->mu);
	struct push_peer *pp = &p->peer[r->peer];
	pp->inflight--;
	int st = status;
	if (st == 0)
		st = len >= 4 ? (int32_t)be_get32(reply) : -EPROTO;
	if (st == 0) {
		p->acks[r->block]++;
	} else if (status == 0 && st == -EAGAIN && !pp->dead) {
		/* The peer's request queue is full: not a failure, send this
		 * block to it again a little later (each block is at most once
		 * in flight or in `again` per peer, so it fits). */
		pp->again[pp->n_again++] = r->block;
		pp->again_at = mono_ms() + PUSH_AGAIN_MS;
	} else {
		p->fails[r->block]++;
		if (status == 0 && st == -ENOSPC)
			p->peer_err = -ENOSPC;
		if (status != 0 && !pp->dead) {
			/* No answer at all: do not queue more behind it. */
			LOG(WARN, "block push to node %llu failed: %s",
			    (unsigned long long)pp->id, strerror(-status));
			push_kill_peer(p, r->peer);
		}
	}
	bool freed;
	push_unref_locked(p, &freed);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
	free(r);
}

static struct push *push_new(const struct peerset *ps, size_t nblocks)
{
	struct push *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->acks = calloc(nblocks, sizeof *p->acks);
	p->fails = calloc(nblocks, sizeof *p->fails);
	p->stored = calloc(nblocks, 1);
	if (!p->acks || !p->fails || !p->stored) {
		free(p->acks);
		free(p->fails);
		free(p->stored);
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	cond_init_mono(&p->cv);
	p->refs = 1;
	p->nblocks = nblocks;
	p->need = ps->need;
	p->npeers = ps->n_voters;
	for (size_t i = 0; i < ps->n_voters; i++) {
		p->peer[i].id = ps->voters[i];
		p->peer[i].again = calloc(nblocks, sizeof(uint32_t));
		if (!p->peer[i].again) {
			push_free(p);
			return NULL;
		}
	}
	return p;
}

/* Send what the window allows (caller holds p->mu; drops it around
 * link_request so that replies are not held up). blocks[b].buf is the
 * body: hash then data; lens[b] the data length. */
static void push_pump(struct data *d, struct push *p,
		      const struct dblock *blocks, const uint32_t *lens)
{
	for (size_t i = 0; i < p->npeers; i++) {
		struct push_peer *pp = &p->peer[i];
		while (!pp->dead && pp->inflight < PUSH_WINDOW) {
			/* Blocks the peer was too busy for come first, once
			 * their delay passed; then the next new one. */
			size_t b;
			if (pp->n_again && mono_ms() >= pp->again_at)
				b = pp->again[--pp->n_again];
			else if (pp->next < p->ready)
				b = pp->next++;
			else
				break;
			/* Enough copies of this block already? Skip it. */
			if (p->acks[b] >= p->need)
				continue;
			struct push_req *r = malloc(sizeof *r);
			if (!r) {
				pp->again[pp->n_again++] = (uint32_t)b;
				return;
			}
			r->p = p;
			r->block = (uint32_t)b;
			r->peer = (uint32_t)i;
			pp->inflight++;
			p->refs++;
			pthread_mutex_unlock(&p->mu);
			int rc = link_request(d->link, pp->id,
					      WIRE_KIND_BLOCK_PUT, blocks[b].buf,
					      ITAB_HASH_LEN + lens[b],
					      d->cfg.push_timeout_ms, push_cb, r);
			pthread_mutex_lock(&p->mu);
			if (rc < 0) {
				free(r);
				pp->inflight--;
				p->refs--;
				if (rc == -EAGAIN) { /* queue full: later */
					pp->again[pp->n_again++] = (uint32_t)b;
					break;
				}
				p->fails[b]++;
				LOG(WARN, "block push to node %llu: %s",
				    (unsigned long long)pp->id, strerror(-rc));
				push_kill_peer(p, i);
			}
		}
	}
}

/* 1: every block has enough copies; -EIO (or the peers' error): some
 * block can no longer get them; 0: keep waiting. Under p->mu. */
static int push_state(const struct push *p)
{
	if (p->store_err)
		return p->store_err;
	bool all = true;
	for (size_t b = 0; b < p->nblocks; b++) {
		if (p->acks[b] >= p->need)
			continue;
		all = false;
		if (p->npeers - p->fails[b] < p->need)
			return p->peer_err ? p->peer_err : -EIO;
	}
	return all && p->n_stored == p->nblocks ? 1 : 0;
}

/* Wait until every block reached a majority (0), or fail. */
static int push_wait(struct data *d, struct push *p,
		     const struct dblock *blocks, const uint32_t *lens,
		     const struct timespec *dl)
{
	pthread_mutex_lock(&p->mu);
	int st;
	for (;;) {
		push_pump(d, p, blocks, lens);
		st = push_state(p);
		if (st != 0)
			break;
		if (ts_passed(dl)) {
			st = -EIO;
			LOG(WARN, "blocks did not reach a majority of the "
				  "voters in time; is a majority of the nodes "
				  "up and reachable?");
			break;
		}
		/* Wake up at least every 50 ms to retry a full queue. */
		struct timespec w = mono_deadline(50);
		if (w.tv_sec > dl->tv_sec ||
		    (w.tv_sec == dl->tv_sec && w.tv_nsec > dl->tv_nsec))
			w = *dl;
		pthread_cond_timedwait(&p->cv, &p->mu, &w);
	}
	pthread_mutex_unlock(&p->mu);
	return st == 1 ? 0 : st;
}

/* ---- local stores ------------------------------------------------------------- */

/* One block of a flush to store locally (blk_put hashes it and writes the
 * hash into the room in front of the data, which makes the buffer the
 * BLOCK_PUT body). */
struct store_job {
	struct store_job *next;
	struct push *p;    /* one reference held by the job */
	uint8_t *buf;      /* hash room + data; owned by the flushing handle */
	uint32_t len;
	size_t block;
	uint64_t ino;
	bool hashed; /* the hash is in buf already (and it may be in flight) */
};

/* Run one job, then mark its block stored (or the flush failed) and
 * extend the prefix of blocks that may be pushed. */
static void store_run(struct data *d, struct store_job *j)
{
	int rc = j->hashed ? blk_put_hashed(d->bs, j->buf,
					    j->buf + ITAB_HASH_LEN, j->len)
			   : blk_put(d->bs, j->buf + ITAB_HASH_LEN, j->len,
				     j->buf);
	if (rc == 0)
		recent_add(d, j->buf);
	else if (rc != -ENOSPC)
		LOG(ERROR, "ino %llu: cannot store a block: %s",
		    (unsigned long long)j->ino, strerror(-rc));
	struct push *p = j->p;
	pthread_mutex_lock(&p->mu);
	if (rc < 0 && !p->store_err)
		p->store_err = rc;
	if (rc == 0) {
		p->stored[j->block] = 2;
		p->n_stored++;
	}
	while (p->ready < p->nblocks && p->stored[p->ready])
		p->ready++;
	p->stores_pending--;
	bool freed;
	push_unref_locked(p, &freed);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
	free(j);
}

static void *store_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-store");
	struct data *d = arg;
	pthread_mutex_lock(&d->store_mu);
	for (;;) {
		struct store_job *j = d->store_q;
		if (!j) {
			if (d->store_stop)
				break;
			pthread_cond_wait(&d->store_cv, &d->store_mu);
			continue;
		}
		d->store_q = j->next;
		if (!d->store_q)
			d->store_tail = NULL;
		pthread_mutex_unlock(&d->store_mu);
		store_run(d, j);
		pthread_mutex_lock(&d->store_mu);
	}
	pthread_mutex_unlock(&d->store_mu);
	return NULL;
}

/* Queue the local store of block i of push p (done on this thread when
 * no store thread runs or memory is short). */
static void store_submit(struct data *d, struct push *p, uint8_t *buf,
			 uint32_t len, size_t i, uint64_t ino)
{
	/* A small block (the usual single-block flush of a small file) is
	 * hashed here so that its push to the peers and its local store
	 * (each waiting for a disk sync) run at the same time; big blocks
	 * are hashed once, by blk_put, and pushed once stored (a flush of
	 * many of them overlaps the two across blocks anyway). */
	bool hashed = len <= PREHASH_MAX;
	if (hashed)
		blk_sha256(buf + ITAB_HASH_LEN, len, buf);
	struct store_job *j = malloc(sizeof *j);
	pthread_mutex_lock(&p->mu);
	p->refs++;
	p->stores_pending++;
	if (hashed) {
		p->stored[i] = 1;
		while (p->ready < p->nblocks && p->stored[p->ready])
			p->ready++;
	}
	pthread_mutex_unlock(&p->mu);
	struct store_job tmp;
	struct store_job *jj = j ? j : &tmp;
	*jj = (struct store_job){.p = p, .buf = buf, .len = len, .block = i,
				 .ino = ino, .hashed = hashed};
	if (j && d->n_store_threads) {
		pthread_mutex_lock(&d->store_mu);
		if (d->store_tail)
			d->store_tail->next = j;
		else
			d->store_q = j;
		d->store_tail = j;
		pthread_cond_signal(&d->store_cv);
		pthread_mutex_unlock(&d->store_mu);
		return;
	}
	if (!j) {
		j = malloc(sizeof *j); /* store_run frees it: retry once */
		if (!j) {
			pthread_mutex_lock(&p->mu);
			if (!p->store_err)
				p->store_err = -ENOMEM;
			p->stores_pending--;
			p->refs--;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
			return;
		}
		*j = tmp;
	}
	store_run(d, j);
}

/* Wait until no store job of p is queued or running (their buffers belong
 * to the flushing handle). */
static void store_wait(struct push *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->stores_pending)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

/* ---- flush -------------------------------------------------------------------- */

/* Commit f's dirty blocks (caller holds f->mu). On success the dirty state
 * is gone; on failure it is kept (a later flush retries) and nothing was
 * proposed. With if_size, the WRITE applies only while the file's size is
 * *if_size (ITAB_F_IF_SIZE); -EAGAIN when it was not, and then the dirty
 * state is dropped. */
static int flush_cond(struct data *d, struct data_file *f, const uint64_t *if_size)
{
	if (f->n == 0)
		return 0;
	struct itab_attr attr;
	int rc = itab_getattr(d->cfg.itab, f->ino, &attr);
	if (rc < 0) {
		/* The file is gone (freed while open): nothing to write to. */
		LOG(DEBUG, "ino %llu: dropping dirty data: %s",
		    (unsigned long long)f->ino, strerror(-rc));
		dblocks_free(d, f);
		/* Freed by another node (or an orphan release) while open
		 * here: say "stale handle", not "no such file", to close(2). */
		return rc == -ENOENT ? -ESTALE : rc;
	}
	size_t n = f->n;
	struct itab_extent *ext = calloc(n, sizeof *ext);
	uint32_t *lens = calloc(n, sizeof *lens);
	struct peerset ps;
	peers_get(d, &ps);
	struct push *p = ext && lens ? push_new(&ps, n) : NULL;
	if (!p) {
		free(ext);
		free(lens);
		return -ENOMEM;
	}
	struct timespec dl = mono_deadline(d->cfg.push_timeout_ms);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct dblock *b = &f->blocks[i];
		uint32_t clen = 0;
		/* Read-modify-write: complete a partial block from the
		 * committed content around the written range. */
		if (b->lo > 0 || b->hi < d->bsize) {
			rc = fill_committed(d, f->ino, b, 0, b->lo, &clen);
			if (rc == 0 && clen > b->hi)
				rc = fill_committed(d, f->ino, b, b->hi, clen,
						    NULL);
			if (rc < 0)
				break;
			b->lo = 0;
		}
		uint32_t len = clen > b->hi ? clen : b->hi;
		if (len > b->hi)
			b->hi = len;
		ext[i].index = b->index;
		ext[i].len = len;
		lens[i] = len;
		/* Stored (and hashed) on a store thread; pushed from the
		 * pumps below once stored, in order. */
		store_submit(d, p, b->buf, len, i, f->ino);
		pthread_mutex_lock(&p->mu);
		push_pump(d, p, f->blocks, lens);
		rc = p->store_err;
		pthread_mutex_unlock(&p->mu);
	}
	if (rc == 0)
		rc = push_wait(d, p, f->blocks, lens, &dl);
	store_wait(p); /* the jobs use f's buffers */
	push_unref(p); /* requests still in flight keep it alive */
	free(lens);
	for (size_t i = 0; rc == 0 && i < n; i++)
		memcpy(ext[i].hash, f->blocks[i].buf, ITAB_HASH_LEN);
	if (rc == 0) {
		int64_t now = atomic_load(&f->wtime_ns);
		if (now == 0)
			now = now_ns(CLOCK_REALTIME);
		struct itab_op op;
		memset(&op, 0, sizeof op);
		op.code = ITAB_OP_WRITE;
		op.ino = f->ino;
		op.now_ns = now;
		op.valid = ITAB_SET_MTIME;
		op.mtime_ns = now;
		/* The table grows the file to at least this size (a truncate
		 * applied meanwhile by someone else is not undone). */
		op.size = atomic_load(&f->dirty_end);
		op.extents = ext;
		op.n_extents = n;
		if (if_size) {
			op.flags |= ITAB_F_IF_SIZE;
			op.rdev = *if_size;
		}
		rc = d->cfg.propose(d->cfg.propose_ctx, &op, NULL);
		if (rc == -ENOENT)
			rc = -ESTALE; /* the inode went away meanwhile */
		if (rc == -EAGAIN && if_size)
			dblocks_free(d, f); /* placed at a size that is gone */
		else if (rc < 0)
			LOG(WARN, "ino %llu: WRITE of %zu blocks failed: %s",
			    (unsigned long long)f->ino, n, strerror(-rc));
	}
	free(ext);
	if (rc == 0)
		dblocks_free(d, f);
	return rc;
}

static int flush_locked(struct data *d, struct data_file *f)
{
	return flush_cond(d, f, NULL);
}

/* ---- handles ---------------------------------------------------------------- */

/* See data.h. */
struct data_file *data_file_open(struct data *d, uint64_t ino)
{
	struct data_file *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	pthread_mutex_init(&f->mu, NULL);
	f->ino = ino;
	f->refs = 1;
	atomic_init(&f->dirty_end, 0);
	atomic_init(&f->wtime_ns, 0);
	atomic_init(&f->ra_pos, 0);
	atomic_init(&f->ra_next, 0);
	pthread_mutex_lock(&d->mu);
	f->next = d->files;
	if (d->files)
		d->files->prev = f;
	d->files = f;
	pthread_mutex_unlock(&d->mu);
	return f;
}

/* Drop a reference (d->mu held by caller); frees at the last one. */
static void file_unref_locked(struct data *d, struct data_file *f)
{
	if (--f->refs > 0)
		return;
	dblocks_free(d, f);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* See data.h. */
int data_file_release(struct data *d, struct data_file *f)
{
	if (!f)
		return 0;
	pthread_mutex_lock(&d->mu);
	if (f->prev)
		f->prev->next = f->next;
	else
		d->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->prev = f->next = NULL;
	pthread_mutex_unlock(&d->mu);

	pthread_mutex_lock(&f->mu);
	int rc = flush_locked(d, f);
	dblocks_free(d, f); /* the handle is gone: unflushable data is lost */
	pthread_mutex_unlock(&f->mu);

	pthread_mutex_lock(&d->mu);
	file_unref_locked(d, f);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

/* See data.h. */
int data_flush(struct data *d, struct data_file *f)
{
	pthread_mutex_lock(&f->mu);
	int rc = flush_locked(d, f);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

/* See data.h. */
int data_flush_if_size(struct data *d, struct data_file *f, uint64_t size)
{
	pthread_mutex_lock(&f->mu);
	int rc = flush_cond(d, f, &size);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

/* See data.h. */
/* Flushes every handle of ino with unflushed bytes except skip (NULL:
 * all of them). */
static int flush_ino_except(struct data *d, uint64_t ino,
			    const struct data_file *skip)
{
	struct data_file **list = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		if (f == skip || f->ino != ino ||
		    atomic_load(&f->dirty_end) == 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 4;
			struct data_file **nl =
				realloc(list, nc * sizeof(struct data_file *));
			if (!nl) {
				rc = -ENOMEM;
				break;
			}
			list = nl;
			cap = nc;
		}
		f->refs++;
		list[n++] = f;
	}
	pthread_mutex_unlock(&d->mu);
	for (size_t i = 0; i < n; i++) {
		int r = data_flush(d, list[i]);
		if (r < 0 && rc == 0)
			rc = r;
	}
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < n; i++)
		file_unref_locked(d, list[i]);
	pthread_mutex_unlock(&d->mu);
	free(list);
	return rc;
}

/* See data.h. */
int data_flush_ino(struct data *d, uint64_t ino)
{
	return flush_ino_except(d, ino, NULL);
}

/* See data.h. */
uint64_t data_dirty_size(struct data *d, uint64_t ino)
{
	/* Hot path (every getattr, lookup and readdirplus entry): no handle
	 * holds unflushed bytes, so no need for the lock and the list walk. A
	 * write racing with this is as if the getattr came first. */
	if (atomic_load(&d->n_dirty) == 0)
		return 0;
	uint64_t end = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		uint64_t e = atomic_load(&f->dirty_end);
		if (f->ino == ino && e > end)
			end = e;
	}
	pthread_mutex_unlock(&d->mu);
	if (end == 0)
		return 0;
	struct itab_attr attr;
	if (itab_getattr(d->cfg.itab, ino, &attr) == 0 && attr.size > end)
		end = attr.size;
	return end;
}

/* See data.h. */
int64_t data_dirty_mtime(struct data *d, uint64_t ino)
{
	if (atomic_load(&d->n_dirty) == 0)
		return 0;
	int64_t t = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		int64_t w = atomic_load(&f->wtime_ns);
		if (f->ino == ino && w > t)
			t = w;
	}
	pthread_mutex_unlock(&d->mu);
	return t;
}

/* ---- write and read ------------------------------------------------------------ */

/* See data.h. */
ssize_t data_write(struct data *d, struct data_file *f, const char *buf,
		   size_t size, off_t off)
{
	if (off < 0 || (uint64_t)off + size < (uint64_t)off)
		return -EINVAL;
	if (size == 0)
		return 0;
	if (size > (size_t)SSIZE_MAX)
		size = (size_t)SSIZE_MAX;
	pthread_mutex_lock(&f->mu);
	int rc = 0;
	/* Flush first if this write would overrun the buffer: an error then
	 * belongs to the bytes already buffered, and this write reports it. */
	uint64_t first = (uint64_t)off / d->bsize;
	uint64_t last = ((uint64_t)off + size - 1) / d->bsize;
	size_t add = (size_t)(last - first + 1);
	if (f->n > 0 && ((f->n + add) * (size_t)d->bsize > d->dirty_max ||
			 f->n + add > ITAB_MAX_EXTENTS))
		rc = flush_locked(d, f);
	size_t done = 0;
	while (rc == 0 && done < size) {
		uint64_t pos = (uint64_t)off + done;
		uint64_t idx = pos / d->bsize;
		uint32_t in = (uint32_t)(pos % d->bsize);
		uint32_t k = d->bsize - in;
		if (k > size - done)
			k = (uint32_t)(size - done);
		size_t at = dblock_pos(f, idx);
		struct dblock *b;
		if (at < f->n && f->blocks[at].index == idx) {
			b = &f->blocks[at];
			/* A gap between the valid range and this write is
			 * filled from the committed content now. */
			if (in > b->hi)
				rc = fill_committed(d, f->ino, b, b->hi, in,
						    NULL);
			else if (in + k < b->lo)
				rc = fill_committed(d, f->ino, b, in + k,
						    b->lo, NULL);
			if (rc < 0)
				break;
		} else {
			if (f->n == f->cap) {
				size_t nc = f->cap ? f->cap * 2 : 16;
				struct dblock *nb =
					realloc(f->blocks, nc * sizeof *nb);
				if (!nb) {
					rc = -ENOMEM;
					break;
				}
				f->blocks = nb;
				f->cap = nc;
			}
			uint8_t *mem = malloc(ITAB_HASH_LEN + (size_t)d->bsize);
			if (!mem) {
				rc = -ENOMEM;
				break;
			}
			memmove(&f->blocks[at + 1], &f->blocks[at],
				(f->n - at) * sizeof *f->blocks);
			f->n++;
			b = &f->blocks[at];
			b->index = idx;
			b->buf = mem;
			b->lo = in;
			b->hi = in + k;
		}
		memcpy(b->buf + ITAB_HASH_LEN + in, buf + done, k);
		if (in < b->lo)
			b->lo = in;
		if (in + k > b->hi)
			b->hi = in + k;
		done += k;
	}
	if (done > 0) {
		uint64_t end = (uint64_t)off + done;
		uint64_t old = atomic_load(&f->dirty_end);
		if (end > old)
			atomic_store(&f->dirty_end, end);
		if (old == 0)
			atomic_fetch_add(&d->n_dirty, 1);
		atomic_store(&f->wtime_ns, now_ns(CLOCK_REALTIME));
	}
	pthread_mutex_unlock(&f->mu);
	if (done > 0)
		return (ssize_t)done;
	return rc;
}

/* A read of [off, off+size) of a file of end bytes through handle h: if
 * it continues the handle's previous read (give or take two blocks, as the
 * kernel's parallel read-ahead requests arrive slightly out of order),
 * queue the blocks of this read after its first one (loaded in parallel
 * with it) and the next RA_BLOCKS committed blocks, those not queued
 * yet. */
static void read_ahead(struct data *d, struct data_file *h, uint64_t ino,
		       uint64_t off, size_t size, uint64_t end)
{
	uint64_t prev = atomic_exchange(&h->ra_pos, off + size);
	uint64_t slack = 2 * (uint64_t)d->bsize;
	if (off + slack < prev || off > prev + slack) {
		atomic_store(&h->ra_next, 0); /* a jump: start over */
		return;
	}
	uint64_t first = off / d->bsize;
	uint64_t last = (off + size - 1) / d->bsize;
	uint64_t lim = last + RA_BLOCKS; /* last block to read ahead */
	uint64_t eof_blk = (end - 1) / d->bsize;
	if (lim > eof_blk)
		lim = eof_blk;
	uint64_t from = atomic_load(&h->ra_next);
	if (from <= first)
		from = first + 1;
	if (from > lim)
		return;
	if (lim - from + 1 > RA_QUEUE)
		from = lim + 1 - RA_QUEUE;
	atomic_store(&h->ra_next, lim + 1);
	struct itab_extent e[RA_QUEUE];
	size_t n = (size_t)(lim - from + 1);
	if (extents_get(d, ino, from, n, e) == 0)
		ra_queue(d, e, n);
}

/* See data.h. */
ssize_t data_read(struct data *d, struct data_file *f, uint64_t ino,
		  char *buf, size_t size, off_t off)
{
	if (off < 0)
		return -EINVAL;
	if (size == 0)
		return 0;
	/* A read sees what any descriptor of this node wrote (POSIX): bytes
	 * another handle of the file still buffers are committed first
	 * (git's index-pack reads its pack through a second descriptor
	 * while writing it through the first). */
	if (atomic_load(&d->n_dirty) != 0) {
		int frc = flush_ino_except(d, ino, f);
		if (frc < 0)
			return frc;
	}
	struct itab_attr attr;
	int rc = itab_getattr(d->cfg.itab, ino, &attr);
	if (rc < 0)
		return rc;
	struct data_file *h = f; /* for read-ahead */
	/* Only a handle with unflushed bytes needs its lock (to lay them
	 * over); parallel reads of a clean handle (kernel readahead) do not
	 * serialize on it. */
	if (f && atomic_load(&f->dirty_end) == 0)
		f = NULL;
	if (f)
		pthread_mutex_lock(&f->mu);
	uint64_t end = attr.size;
	uint64_t dend = f ? atomic_load(&f->dirty_end) : 0;
	if (dend > end)
		end = dend;
	if ((uint64_t)off >= end) {
		if (f)
			pthread_mutex_unlock(&f->mu);
		return 0;
	}
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	if (size > (size_t)SSIZE_MAX)
		size = (size_t)SSIZE_MAX;
	uint64_t first = (uint64_t)off / d->bsize;
	uint64_t last = ((uint64_t)off + size - 1) / d->bsize;
	size_t nb = (size_t)(last - first + 1);
	struct itab_extent one, *ext = nb == 1 ? &one : calloc(nb, sizeof *ext);
	if (!ext) {
		rc = -ENOMEM;
		goto out;
	}
	rc = extents_get(d, ino, first, nb, ext);
	if (rc == -ENOENT)
		rc = 0; /* no extents: all holes (dirty bytes still count) */
	if (rc == 0 && h)
		read_ahead(d, h, ino, (uint64_t)off, size, end);
	for (size_t i = 0; i < nb && rc == 0; i++) {
		uint64_t bstart = (first + i) * d->bsize;
		uint64_t from = bstart > (uint64_t)off ? bstart : (uint64_t)off;
		uint64_t to = bstart + d->bsize;
		if (to > (uint64_t)off + size)
			to = (uint64_t)off + size;
		char *dst = buf + (from - (uint64_t)off);
		if (hash_is_zero(ext[i].hash))
			memset(dst, 0, to - from);
		else
			rc = block_read(d, ext[i].hash, ext[i].len,
					(uint32_t)(from - bstart),
					(uint32_t)(to - from), (uint8_t *)dst);
	}
	if (ext != &one)
		free(ext);
	/* This handle's unflushed bytes win. */
	if (rc == 0 && f) {
		for (size_t i = dblock_pos(f, first);
		     i < f->n && f->blocks[i].index <= last; i++) {
			const struct dblock *b = &f->blocks[i];
			uint64_t bstart = b->index * d->bsize;
			uint64_t from = bstart + b->lo, to = bstart + b->hi;
			if (from < (uint64_t)off)
				from = (uint64_t)off;
			if (to > (uint64_t)off + size)
				to = (uint64_t)off + size;
			if (from < to)
				memcpy(buf + (from - (uint64_t)off),
				       b->buf + ITAB_HASH_LEN + (from - bstart),
				       to - from);
		}
	}
out:
	if (f)
		pthread_mutex_unlock(&f->mu);
	return rc < 0 ? rc : (ssize_t)size;
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
				recent_add(d, p);
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

/* Delete hash if nothing references it and it is not recently stored. */
static bool maybe_delete(struct data *d, const uint8_t h[ITAB_HASH_LEN])
{
	if (itab_block_refs(d->cfg.itab, h) != 0 || recent_has(d, h))
		return false;
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
	return fetch_block(d, h, tmp, d->bsize, &len);
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
		if (maybe_delete(d, w.cand[i]))
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
		int rc = fetch_from(d, c->ps.others[p], h, tmp, d->bsize, &len,
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
	peers_get(d, &c->ps);
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
static void *worker_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-data");
	struct data *d = arg;
	uint8_t *tmp = malloc(d->bsize);
	struct wq_item *retry = NULL;
	size_t nretry = 0, retry_cap = 0;
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
				maybe_delete(d, q[i].hash);
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
			recent_prune(d, false);
			next_gc = mono_ms() + d->cfg.gc_interval_ms;
		}
		pthread_mutex_lock(&d->mu);
		d->busy = false;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	free(retry);
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

/* ---- start / stop / statfs ------------------------------------------------------ */

/* Stop and join the store threads (no flush is running: nothing queued). */
static void store_join(struct data *d)
{
	pthread_mutex_lock(&d->store_mu);
	d->store_stop = true;
	pthread_cond_broadcast(&d->store_cv);
	pthread_mutex_unlock(&d->store_mu);
	for (unsigned i = 0; i < d->n_store_threads; i++)
		pthread_join(d->store_threads[i], NULL);
	d->n_store_threads = 0;
	pthread_mutex_destroy(&d->store_mu);
	pthread_cond_destroy(&d->store_cv);
}

/* Stop and join the read-ahead thread. */
static void ra_join(struct data *d)
{
	pthread_mutex_lock(&d->cache_mu);
	d->ra_stop = true;
	pthread_cond_broadcast(&d->cache_cv);
	pthread_mutex_unlock(&d->cache_mu);
	for (unsigned i = 0; i < d->n_ra_threads; i++)
		pthread_join(d->ra_threads[i], NULL);
	d->n_ra_threads = 0;
}

/* See data.h. */
int data_start(const struct data_cfg *cfg, struct data **out, char *err,
	       size_t errcap)
{
	*out = NULL;
	if (!cfg->itab || !cfg->blocks_dir || !cfg->propose) {
		snprintf(err, errcap, "data: itab, blocks_dir and propose "
				      "are required");
		return -EINVAL;
	}
	struct data *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	if (!d->cfg.push_timeout_ms)
		d->cfg.push_timeout_ms = PUSH_TIMEOUT_DEFAULT_MS;
	if (!d->cfg.gc_interval_ms)
		d->cfg.gc_interval_ms = GC_INTERVAL_DEFAULT_MS;
	if (!d->cfg.gc_grace_ms)
		d->cfg.gc_grace_ms = GC_GRACE_DEFAULT_MS;
	d->dirty_max = cfg->dirty_max ? cfg->dirty_max : DIRTY_MAX_DEFAULT;
	d->bsize = itab_block_size(cfg->itab);
	if (d->bsize == 0)
		d->bsize = ITAB_DEFAULT_BLOCK_SIZE;
	if (cfg->repl) {
		d->link = repl_link(cfg->repl);
	} else {
		d->link = cfg->link;
		if (cfg->n_voters > RAFT_MAX_NODES) {
			snprintf(err, errcap, "data: too many voters");
			free(d);
			return -EINVAL;
		}
		if (cfg->n_voters)
			memcpy(d->voters, cfg->voters,
			       cfg->n_voters * sizeof *cfg->voters);
		d->n_voters = cfg->n_voters;
	}
	d->cfg.voters = NULL;
	/* Blocks are synced when stored (here and on the peers that answer a
	 * BLOCK_PUT), so a flush/fsync that saw a majority of copies survives
	 * a power loss of those machines, not just a process crash. */
	int rc = blk_open(cfg->blocks_dir, BLK_SYNC, &d->bs, err, errcap);
	if (rc < 0) {
		free(d);
		return rc;
	}
	for (unsigned i = 0; i < CACHE_SLOTS; i++) {
		d->cache[i].buf = block_buf_alloc(d);
		if (!d->cache[i].buf)
			rc = -ENOMEM;
	}
	pthread_mutex_init(&d->mu, NULL);
	cond_init_mono(&d->cv);
	pthread_mutex_init(&d->cache_mu, NULL);
	pthread_mutex_init(&d->recent_mu, NULL);
	atomic_init(&d->quit, false);
	atomic_init(&d->n_dirty, 0);
	cond_init_mono(&d->cache_cv);
	pthread_mutex_init(&d->store_mu, NULL);
	pthread_cond_init(&d->store_cv, NULL);
	for (unsigned i = 0; rc == 0 && i < STORE_THREADS; i++) {
		if (pthread_create(&d->store_threads[i], NULL, store_main, d))
			break; /* fewer threads (none: flushes store inline) */
		d->n_store_threads++;
	}
	bool ra_started = false;
	if (rc == 0) {
		rc = -pthread_create(&d->ra_threads[0], NULL, ra_main, d);
		d->n_ra_threads = rc == 0;
		for (unsigned i = 1; rc == 0 && i < RA_THREADS; i++)
			if (pthread_create(&d->ra_threads[i], NULL, ra_main,
					   d) == 0)
				d->n_ra_threads++;
		ra_started = rc == 0;
	}
	if (rc == 0)
		rc = -pthread_create(&d->worker, NULL, worker_main, d);
	if (rc < 0)
		snprintf(err, errcap, "data: cannot start thread");
	if (rc < 0 && ra_started)
		ra_join(d);
	if (rc < 0)
		store_join(d);
	if (rc < 0) {
		pthread_cond_destroy(&d->cache_cv);
		for (unsigned i = 0; i < CACHE_SLOTS; i++)
			free(d->cache[i].buf);
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->cache_mu);
		pthread_mutex_destroy(&d->recent_mu);
		blk_close(d->bs);
		free(d);
		return rc;
	}
	if (cfg->repl)
		repl_set_request_handler(cfg->repl, data_handle_request, d);
	LOG(INFO, "data: block size %u, blocks in %s", d->bsize,
	    cfg->blocks_dir);
	*out = d;
	return 0;
}

/* See data.h. */
void data_stop(struct data *d)
{
	if (!d)
		return;
	if (d->cfg.repl)
		repl_set_request_handler(d->cfg.repl, NULL, NULL);
	atomic_store(&d->quit, true);
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	while (d->handlers > 0)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->worker, NULL);
	ra_join(d);
	store_join(d);
	while (d->files) {
		struct data_file *f = d->files;
		d->files = f->next;
		dblocks_free(d, f);
		pthread_mutex_destroy(&f->mu);
		free(f);
	}
	free(d->q);
	recent_prune(d, true);
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		free(d->cache[i].buf);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->cache_mu);
	pthread_cond_destroy(&d->cache_cv);
	pthread_mutex_destroy(&d->recent_mu);
	blk_close(d->bs);
	free(d);
}

/* See data.h. */
int data_statfs(struct data *d, uint64_t *total, uint64_t *avail)
{
	return blk_stats(d->bs, total, avail);
}
