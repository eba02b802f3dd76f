/*
 * data_internal.h — what the data path's files share (data.c: handles,
 * write, read, flush; data_block.c: loading, caching and fetching blocks,
 * serving peers; data_push.c: the majority push and local stores;
 * data_bg.c: applied entries, catch-up and garbage collection). Not a
 * public header: only fs/data*.c include it.
 */
#ifndef SANDFS_DATA_INTERNAL_H
#define SANDFS_DATA_INTERNAL_H

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
/* How long a block this process stored or received stays protected from
 * deletion at reference count 0 (the "recent" set, data_bg.c): longer
 * than a flush takes from its first store to its WRITE applying here,
 * with the proposal timeout. A delete skipped for it is tried again when
 * the protection ends (at most gc_grace_ms, if that is shorter). */
#define RECENT_PROTECT_MS 120000u
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

static inline int64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t mono_ms(void) { return now_ns(CLOCK_MONOTONIC) / 1000000; }

/* Deadlines: mono_deadline() (fs/mono.h), for pthread_cond_timedwait on
 * condvars made by cond_init_mono() (a wall-clock step must not stretch or
 * cut a wait). */

static inline bool ts_passed(const struct timespec *dl)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > dl->tv_sec ||
	       (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* A condvar whose timed waits use CLOCK_MONOTONIC (see deadline_in). */
static inline void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

static inline bool hash_is_zero(const uint8_t h[ITAB_HASH_LEN])
{
	static const uint8_t zero[ITAB_HASH_LEN];
	return memcmp(h, zero, ITAB_HASH_LEN) == 0;
}

static inline void hex8(const uint8_t h[ITAB_HASH_LEN], char out[17])
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


/* Who to push to and how many of them must answer. */
struct peerset {
	uint64_t voters[RAFT_MAX_NODES]; /* voters other than self */
	size_t n_voters;
	uint64_t others[RAFT_MAX_NODES]; /* every other node (fetch sources) */
	size_t n_others;
	size_t need; /* acks needed from voters[] besides our own copy */
};

/* The majority push of one flush (data_push.c). */
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

/* data.c */
void data_peers_get(struct data *d, struct peerset *ps);

/* data_block.c */
void data_recent_add(struct data *d, const uint8_t h[ITAB_HASH_LEN]);
bool data_recent_has(struct data *d, const uint8_t h[ITAB_HASH_LEN]);
uint32_t data_recent_window(const struct data *d);
void data_recent_prune(struct data *d, bool all);
int data_fetch_from(struct data *d, uint64_t from,
		      const uint8_t hash[ITAB_HASH_LEN], uint8_t *buf,
		      size_t cap, size_t *len, bool *unreachable);
int data_fetch_block(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		       uint8_t *buf, size_t cap, size_t *len);
uint8_t *data_block_buf_alloc(const struct data *d);
int data_block_read(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		      uint32_t elen, uint32_t off, uint32_t n, uint8_t *dst);
void *data_ra_main(void *arg);
void data_ra_queue(struct data *d, const struct itab_extent *e, size_t n);

/* data_push.c */
void data_push_unref(struct push *p);
struct push *data_push_new(const struct peerset *ps, size_t nblocks);
void data_push_pump(struct data *d, struct push *p,
		      const struct dblock *blocks, const uint32_t *lens);
int data_push_wait(struct data *d, struct push *p,
		     const struct dblock *blocks, const uint32_t *lens,
		     const struct timespec *dl);
void *data_store_main(void *arg);
void data_store_submit(struct data *d, struct push *p, uint8_t *buf,
			 uint32_t len, size_t i, uint64_t ino);
void data_store_wait(struct push *p);

/* data_bg.c */
void *data_worker_main(void *arg);

#endif
