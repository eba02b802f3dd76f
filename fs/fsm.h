/*
 * fsm.h — the inode table as the replicator's state machine, and the
 * proposal plumbing the FUSE frontend and the data path use.
 *
 * State machine: fsm_sm() gives the struct repl_sm whose apply decodes an
 * entry (an encoded struct itab_op), stamps the replicator's envelope
 * (origin, seq) into it so itab dedupes on them, applies it with
 * itab_apply() and writes a small result (errno, inode, attributes) back
 * to the proposer. After each applied entry it tells the data path
 * (data_applied) and, for entries proposed by ANOTHER node, queues kernel
 * cache invalidations (inval.h) for what the entry changed. After a
 * snapshot replaced the table it asks the data path to fetch the blocks
 * the new table references and this node lacks (data_catch_up).
 *
 * Proposals: fsm_propose_async() encodes an op, hands it to the
 * replicator and calls back on the replicator thread once this node has
 * applied it; FUSE handlers reply to the kernel from that callback, so no
 * worker thread waits per metadata change. fsm_propose_sync() blocks (for
 * the data path and the few places where blocking is fine).
 *
 * Threads: apply/applied/sync/snapshot/restore run on the replicator
 * thread. The propose/read functions are thread-safe, but the *_sync ones
 * must never be called on the replicator thread (they would wait for
 * themselves). The set_* hooks may be called from any thread; a hook is
 * never called after its setter returned with NULL.
 */
#ifndef SANDFS_FS_FSM_H
#define SANDFS_FS_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/repl.h"
#include "fs/itab.h"

struct fsm;
struct data;
struct inval;

/* Outcome of one proposal as seen by the proposer. */
struct fsm_result {
	int err;               /* 0 or negative errno (op outcome or -EIO) */
	uint64_t ino;          /* inode created / changed, 0 if none */
	struct itab_attr attr; /* its attributes after the op (if ino) */
	uint64_t victim;       /* UNLINK/RMDIR/RENAME: inode that lost a link */
	uint64_t orphaned;     /* inode that reached nlink 0 and was kept */
};

/* Called once per proposal, on the replicator thread; must not block.
 * res is valid only during the call. */
typedef void (*fsm_done_fn)(void *ctx, const struct fsm_result *res);

/* Create the adapter for itab t (borrowed; outlives the fsm) on node
 * self_id. Caller frees with fsm_free() after the replicator stopped. */
int fsm_new(struct itab *t, uint64_t self_id, struct fsm **out);
void fsm_free(struct fsm *f);

/* The state machine to pass to node_start() (ctx = f). */
struct repl_sm fsm_sm(struct fsm *f);

/* Hooks, all borrowed; NULL detaches. Set repl before proposing. */
void fsm_set_repl(struct fsm *f, struct repl *r);
void fsm_set_data(struct fsm *f, struct data *d);
void fsm_set_inval(struct fsm *f, struct inval *iv);

/* Called on the replicator thread after every entry applied here (not
 * the skipped or duplicate ones), from any node, with the decoded op
 * (borrowed for the call) and its result; after a snapshot replaced the
 * table, once with op and res NULL. Runs under the fsm's hook lock: must
 * not block and must not call fsm functions. */
typedef void (*fsm_applied_fn)(void *ctx, uint64_t index,
			       const struct itab_op *op,
			       const struct itab_result *res);
void fsm_set_applied_hook(struct fsm *f, fsm_applied_fn fn, void *ctx);

/* Wait (at most timeout_ms) until the kernel invalidations queued so far
 * have been sent; see inval_settle(). 0 without an inval. */
int fsm_inval_settle(struct fsm *f, uint32_t timeout_ms);

/* Queue an invalidation of ino's cached attributes (not its pages) for
 * the kernel of this node; never blocks. For open(): a lookup that read
 * the inode before another node's WRITE was applied here may have handed
 * the kernel the old size AFTER that WRITE's invalidation found nothing
 * to invalidate (the inode was not cached yet). Nothing without an
 * inval. */
void fsm_inval_inode(struct fsm *f, uint64_t ino);

/* Kernel page cache across opens. fsm_pages_valid(): may the kernel keep
 * the pages it caches for ino? True when pages were last dropped (or
 * refilled) after the latest change of its content applied here (a WRITE,
 * a size change, from any node), and no snapshot was installed since.
 * Call after the read barrier and after any O_TRUNC of this open. When it
 * is false, drop the pages (and wait until they are dropped), then call
 * fsm_pages_dropped() with the ticket it gave: that marks them valid
 * unless the content changed meanwhile. fsm_pages_stale() marks them
 * invalid (what applying a content change does). Memory is bounded: past
 * FSM_PAGES_MAX inodes the set is forgotten (every next open drops its
 * pages once). */
#define FSM_PAGES_MAX (1u << 16)
bool fsm_pages_valid(struct fsm *f, uint64_t ino, uint64_t *ticket);
void fsm_pages_dropped(struct fsm *f, uint64_t ino, uint64_t ticket);
void fsm_pages_stale(struct fsm *f, uint64_t ino);

/* Queue an invalidation of ino's cached pages (and attributes) for the
 * kernel of this node; never blocks (fsm_inval_settle() waits for it).
 * 0 when queued, a negative errno when it was dropped; -ENOTCONN without
 * an inval (then nothing can be dropped). */
int fsm_inval_pages(struct fsm *f, uint64_t ino);

/* The replicator set with fsm_set_repl (borrowed; NULL before). */
struct repl *fsm_repl(struct fsm *f);

/* The inode table (borrowed). */
struct itab *fsm_itab(struct fsm *f);

/* Propose op (encoded and copied: op may go away on return). Returns 0
 * and later calls done exactly once, or returns a negative errno (-EINVAL
 * for an unencodable op, -ENOTCONN before fsm_set_repl, -ENOMEM) and
 * never calls done. */
int fsm_propose_async(struct fsm *f, const struct itab_op *op, fsm_done_fn done,
		      void *ctx);

/* Propose op and wait until this node applied it. Returns res->err (also
 * when res is NULL). Never on the replicator thread. */
int fsm_propose_sync(struct fsm *f, const struct itab_op *op,
		     struct fsm_result *res);

/* Linearizable read barrier: returns 0 once this node applied everything
 * committed before the call, -ETIMEDOUT after timeout_ms (0: no limit of
 * our own; the replicator fails it with -EIO after its proposal timeout),
 * or another negative errno. Never on the replicator thread. */
int fsm_read_index_sync(struct fsm *f, uint32_t timeout_ms);

/* fsm_read_index_sync for the frontend's barriers: fails at once with
 * -EHOSTUNREACH when leader_known(ctx, repl) says this node knows no
 * leader (on the minority side of a partition), and gives up with
 * -EHOSTUNREACH as soon as it says so while waiting (asked every 50 ms,
 * never under a lock of the fsm). Otherwise as fsm_read_index_sync.
 * Never on the replicator thread. */
int fsm_read_barrier(struct fsm *f, uint32_t timeout_ms,
		     bool (*leader_known)(void *ctx, struct repl *r), void *ctx);

/* fsm_propose_sync that gives up with -ECANCELED once stopping(ctx)
 * says so (asked every 100 ms; a proposal in flight still completes,
 * unobserved). stopping NULL: fsm_propose_sync. res may be NULL. */
int fsm_propose_stoppable(struct fsm *f, const struct itab_op *op,
			  bool (*stopping)(void *ctx), void *ctx,
			  struct fsm_result *res);

/* A data_propose_fn (data.h) over fsm_propose_sync; ctx = the fsm. */
int fsm_data_propose(void *ctx, const struct itab_op *op,
		     struct itab_attr *res_attr);

/* What fsm_release_orphans_held_by() did. */
struct fsm_orphan_stats {
	size_t found;    /* orphans the table says the holder keeps alive */
	size_t released; /* freed by a RELEASE_ORPHAN */
	size_t skipped;  /* in_use() said they are open here: left alone */
	size_t refused;  /* -EBUSY (linked again) or -ENOENT (already gone) */
	size_t failed;   /* the proposal failed (-EIO...): still orphans */
};

/* Release the orphans node `holder` keeps alive (itab_orphans_held_by):
 * one ITAB_OP_RELEASE_ORPHAN each, proposed and waited for one after the
 * other, except for those in_use(ctx, ino) says are open on this node
 * (in_use may be NULL: none is). stopping(ctx) (may be NULL) is asked
 * before each proposal and every 100 ms while one is waited for; true
 * ends the loop (a proposal in flight still completes, unobserved). For a node's own id once it
 * has caught up with the cluster after a (re)start: its previous life's
 * handles are gone, so nothing keeps those orphans alive any more.
 * Returns 0 (outcomes counted in *st), or -ENOMEM/-EIO listing the table,
 * or -ENOTCONN without a replicator. Never on the replicator thread. */
int fsm_release_orphans_held_by(struct fsm *f, uint64_t holder,
				bool (*in_use)(void *ctx, uint64_t ino),
				bool (*stopping)(void *ctx), void *ctx,
				struct fsm_orphan_stats *st);

/* The current time (CLOCK_REALTIME) in ns, the stamp ops carry. */
int64_t fsm_now_ns(void);

#endif
