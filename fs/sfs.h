/*
 * sfs.h — the FUSE low-level frontend of sandfs.
 *
 * Reads (lookup, getattr, readdir, readlink, xattrs, statfs) are served
 * from this node's inode table. Metadata changes become itab ops proposed
 * through fsm; the handler returns at once and the kernel gets its reply
 * from the proposal's completion (fuse_reply_* may be called from any
 * thread). open() and opendir() first pass a ReadIndex barrier, so
 * close-to-open holds across nodes. File contents go through data.h.
 *
 * Kernel caches: entries and attributes are cached for 1 s; changes made
 * by other nodes are invalidated explicitly by fsm (inval.h).
 *
 * Inodes are persistent (itab), so forget() only keeps lookup counts.
 * The frontend counts open handles per inode and records in the table
 * which nodes hold an inode open (ITAB_OP_OPEN at the first handle here,
 * ITAB_OP_CLOSE at the last): a file unlinked anywhere stays as an
 * orphan until the last node holding it closes it.
 *
 * Locks (flock, fcntl and OFD locks) live in the table too, so they hold
 * across nodes: see sfs_lock.c for the lease that bounds how long the
 * locks of a node that died or was cut off outlive it.
 */
#ifndef SANDFS_FS_SFS_H
#define SANDFS_FS_SFS_H

#include <stdbool.h>
#include <stdint.h>

struct fuse_lowlevel_ops;
struct fsm;
struct data;
struct itab;

struct sfs_cfg {
	struct itab *itab;  /* borrowed */
	struct fsm *fsm;    /* borrowed */
	struct data *data;  /* borrowed */
	uint64_t self_id;
	double timeout_s;   /* entry/attr timeout; 0: 1 s */
	bool no_acl;        /* no POSIX ACLs on this mount (-o noacl) */
	uint64_t incarnation;        /* this process life; 0: the start time */
	uint32_t propose_timeout_ms; /* how long a lock request waits at start; 0: 10 s */
	uint32_t lock_lease_ms;      /* lock lease; 0: SFS_LOCK_LEASE_MS */
};

#define SFS_LOCK_LEASE_MS 12000 /* default lock lease (every node the same) */

struct sfs;

/* Create the frontend state (caller frees with sfs_free() after the
 * session loop ended and every pending proposal completed). */
int sfs_new(const struct sfs_cfg *cfg, struct sfs **out);
void sfs_free(struct sfs *fs);

/* After the session loop ended: wait (at most timeout_ms) until every
 * proposal a handler made has completed. Their completions run on the
 * replicator thread and use the data path (sizes of unflushed data) and
 * the session, so stop the data path only after this returned 0. 0 or
 * -ETIMEDOUT. */
int sfs_drain(struct sfs *fs, uint32_t timeout_ms);

/* The operations table; pass the sfs as userdata to fuse_session_new. */
const struct fuse_lowlevel_ops *sfs_ops(void);

/* Open handles of ino on this node (thread-safe). */
uint32_t sfs_nopen(struct sfs *fs, uint64_t ino);

/* Keep an unused open record (no handle left on this node) for
 * close_delay_ms before dropping it (ITAB_OP_CLOSE), so a file reopened
 * meanwhile needs no OPEN proposal; 0 drops it at the last close (no
 * thread). After the replicator is set on the fsm. 0 or a negative errno. */
int sfs_open_start(struct sfs *fs, uint32_t close_delay_ms);

/* Drop every record still waiting, stop the closer (before the
 * replicator goes; before sfs_drain). Safe without sfs_open_start. */
void sfs_open_stop(struct sfs *fs);

#define SFS_CLOSE_DELAY_MS 3000 /* default close_delay_ms of a mount */

/* Start the lock thread (waiters, lease renewal, and on the leader the
 * release of silent nodes' locks) and hook it to the fsm's applies.
 * After the replicator is set on the fsm. 0 or a negative errno. */
int sfs_locks_start(struct sfs *fs);

/* Stop it (before the replicator goes): waiting lock requests get EINTR;
 * requests with a proposal in flight are answered by its completion. */
void sfs_locks_stop(struct sfs *fs);

/* Start-up: once this node has caught up with the cluster, release the
 * locks and open records its previous lives left in the table (one
 * ITAB_OP_RELEASE_NODE keeping this incarnation's open records), and
 * start taking locks: until then lock requests wait. stopping(ctx) ends
 * the wait for the proposal early. Never on the replicator thread.
 * 0 or a negative errno (then the next call tries again). */
int sfs_locks_recover(struct sfs *fs, bool (*stopping)(void *ctx), void *ctx);

#endif
