/*
 * data.h — file contents: dirty buffers per open file, content-addressed
 * blocks, replication of blocks to a majority before their extents are
 * committed, fetching of blocks a node lacks, and block garbage
 * collection.
 *
 * Write path: data_write() copies into the handle's dirty buffer. At
 * data_flush() (flush, fsync, release) or when the buffer exceeds its cap,
 * the dirty range is cut into blocks (block index = offset / block_size;
 * a partially written block is merged with its committed content first),
 * each block is stored locally (blk_put, on store threads, synced) and
 * pushed to the peers (WIRE_KIND_BLOCK_PUT) until a majority of the
 * voters holds it and the local store finished, then ONE
 * ITAB_OP_WRITE with all the new extents, the new size and mtime (the
 * time of the last buffered write) is proposed and waited for. Only then
 * does flush return.
 *
 * Read path: data_read() overlays the handle's dirty bytes on the
 * committed extents (itab_extents); holes read as zeros; a block missing
 * locally is fetched from a peer at once (WIRE_KIND_BLOCK_GET), verified
 * against its hash and stored. Sequential reads of a handle have the next
 * blocks loaded (and verified) ahead on background threads. A background
 * thread fetches blocks that applied WRITEs reference but this node
 * lacks, and, when asked (data_catch_up), every referenced block it lacks
 * (after a snapshot install or a restart).
 *
 * Threads: every function may be called from any FUSE worker thread and
 * may block (waiting for peers or for the proposal); none may be called on
 * the replicator thread. data_applied() is the exception: it is called on
 * the replicator thread after each applied entry and never blocks.
 */
#ifndef SANDFS_DATA_H
#define SANDFS_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs/itab.h"

/* The block size to create the inode table with (itab_config.block_size);
 * chosen by measurement, see data.c. data uses itab_block_size() in any
 * case, so tables created with another size keep working. */
#define DATA_BLOCK_SIZE (256u << 10)

struct repl;
struct link;
struct blk;
struct data;
struct data_file;

/* Proposes an encoded itab op and waits for its local apply; returns the
 * op's result (0 or negative errno) and fills *res_attr when non-NULL.
 * Provided by the frontend (it owns the proposal plumbing). */
typedef int (*data_propose_fn)(void *ctx, const struct itab_op *op,
			       struct itab_attr *res_attr);

struct data_cfg {
	struct itab *itab;       /* borrowed */
	struct repl *repl;       /* borrowed: links, conf (for majority) */
	const char *blocks_dir;  /* the block store directory */
	uint64_t self_id;
	size_t dirty_max;        /* per handle before an implicit flush; 0: 64 MiB */
	data_propose_fn propose; /* used for ITAB_OP_WRITE */
	void *propose_ctx;
	/* Optional knobs (0: default). */
	uint32_t push_timeout_ms; /* majority push of a flush, 10000: -EIO */
	uint32_t gc_interval_ms;  /* orphan-block scan period, 300000 */
	uint32_t gc_grace_ms;     /* unreferenced blocks younger than this
				     (file mtime, and stored/received by this
				     process within it) are kept, 600000 */
	/* Without a replicator (repl == NULL: tests, tools): the link for
	 * block transfer (may be NULL: no peers) and the voter ids, self
	 * included (n_voters 0: self only). The owner of the link routes
	 * BLOCK_* requests to data_handle_request(). Ignored with repl. */
	struct link *link;       /* borrowed */
	const uint64_t *voters;  /* copied */
	size_t n_voters;
};

/* Start (opens the block store, registers the BLOCK_* request handler on
 * the replicator's links, starts the fetch/GC thread). */
int data_start(const struct data_cfg *cfg, struct data **out, char *err,
	       size_t errcap);
/* Unregister the request handler, stop the threads, free everything (open
 * handles are dropped without flushing). Order: after the FUSE session
 * loop ended and every frontend completion that may call
 * data_dirty_size() ran (sfs_drain), after fsm_set_data(NULL) (no
 * data_applied() in progress or to come), but BEFORE repl_stop(): the
 * threads use the replicator's status and links until they are joined
 * here. Returns within about a second even when peers do not answer. */
void data_stop(struct data *d);

/* Open handle state for ino (one per FUSE file handle). */
struct data_file *data_file_open(struct data *d, uint64_t ino);
/* Flushes (see data_flush) and frees. Returns the flush result. */
int data_file_release(struct data *d, struct data_file *f);

/* Read up to size bytes at off into buf; returns bytes read (short at
 * EOF) or a negative errno (-EIO if a block cannot be had from anyone). */
ssize_t data_read(struct data *d, struct data_file *f, uint64_t ino,
		  char *buf, size_t size, off_t off);
/* Buffer a write; returns size or a negative errno. May flush. */
ssize_t data_write(struct data *d, struct data_file *f, const char *buf,
		   size_t size, off_t off);
/* Commit buffered data: blocks to a majority, then the WRITE entry. */
int data_flush(struct data *d, struct data_file *f);

/* data_flush(), for an append: the buffered data was placed at the
 * file's committed size `size`, and the WRITE applies only if the size is
 * still that (ITAB_F_IF_SIZE). -EAGAIN when another append (or truncate)
 * came first: the buffered data is dropped, nothing was written. */
int data_flush_if_size(struct data *d, struct data_file *f, uint64_t size);

/* Flush every open handle of ino on this node (before a truncate or a
 * rename-over, so buffered bytes are not lost or misplaced). */
int data_flush_ino(struct data *d, uint64_t ino);

/* The size a getattr on ino should report given unflushed writes on this
 * node (max of committed size and dirty end), or 0 if no dirty data. */
uint64_t data_dirty_size(struct data *d, uint64_t ino);

/* The time (CLOCK_REALTIME ns) of the last unflushed write to ino on this
 * node, or 0 if no dirty data: getattr reports it as mtime and ctime, and
 * the WRITE that commits the data carries it (the times are those of the
 * write(2), not of the flush). */
int64_t data_dirty_mtime(struct data *d, uint64_t ino);

/* Replicator thread, after an entry was applied: blocks that reached
 * refcount 0 (delete them), and extents this node may lack (fetch them in
 * the background). Never blocks. */
void data_applied(struct data *d, const struct itab_op *op,
		  const struct itab_result *res);

/* Figures for statfs: bytes used/free on the block store's file system. */
int data_statfs(struct data *d, uint64_t *total, uint64_t *avail);

/* BLOCK_PUT / BLOCK_GET / BLOCK_HAS request handler (a repl_request_fn;
 * ctx is the struct data). data_start() registers it with the replicator;
 * call it yourself only when running without one (cfg.repl == NULL).
 * Runs on one of the replicator's request workers (never on the link's
 * receive thread, which delivers the Raft traffic), or on the caller's
 * thread without a replicator; does block-store I/O, never waits on the
 * network. Malformed requests get an error reply (-EINVAL, -EBADMSG for
 * content not matching its hash, -EOPNOTSUPP for unknown kinds).
 * Bodies (integers big-endian; status is 0 or a negative errno):
 *   PUT  request: hash[32] data      reply: i32 status
 *   GET  request: hash[32]           reply: i32 status [data if 0]
 *   HAS  request: hash[32] * n       reply: i32 status [n bytes 1/0] */
void data_handle_request(void *ctx, uint64_t from, uint64_t req_id,
			 uint16_t kind, const uint8_t *payload, size_t len);

/* Ask the background thread to walk every block the inode table
 * references (itab_blocks) and fetch, verified, from the peers each one
 * this node lacks (a few fetches in flight; a summary line is logged).
 * Call it after the table was replaced by a snapshot (fsm's restore) and
 * once at mount start. Blocks that could not be had are looked for again
 * by later walks (after 5 s, backing off to 60 s) and fetched by reads on
 * demand. Never blocks: any thread, also the replicator thread. Requests
 * made while a walk is pending are merged; one made during a walk starts
 * another walk after it. NULL is ignored. */
void data_catch_up(struct data *d);

/* Wait until the background thread has worked off everything queued so
 * far (deletions, fetches, a requested catch-up walk; failed fetches stay
 * queued for a retry and are not waited for). For tests and orderly
 * shutdown. */
void data_drain(struct data *d);

/* Run one orphan-block collection pass now (normally periodic): deletes
 * stored blocks that no extent references and that are older than the
 * grace period. *deleted (may be NULL) gets the count. */
int data_gc(struct data *d, uint64_t *deleted);

/* Fetch block hash from the other nodes now, through the data path's own
 * fetch (for fsck and the scrub): the first copy that matches its hash is
 * stored. A damaged local copy must be out of the way first (blk_check
 * quarantines it): a store keeps a block file it already holds. 0 and
 * *from (the node that gave it), or -EIO when no node could. Blocks (a
 * few seconds per unreachable peer); never on the replicator thread. */
int data_refetch(struct data *d, const uint8_t hash[ITAB_HASH_LEN],
		 uint64_t *from);

#endif
