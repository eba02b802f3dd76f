/*
 * inval.h — kernel cache invalidations, sent from a thread of their own.
 *
 * When this node applies a change that another node proposed, the kernel
 * may still cache the old directory entry, attributes or pages. The
 * state machine queues what changed here; a dedicated thread calls
 * fuse_lowlevel_notify_inval_entry() / _inval_inode(). Those calls may
 * wait for kernel locks held by requests in flight, so they are never
 * made from a FUSE request handler or the replicator thread (libfuse
 * documents the deadlock); queueing never blocks.
 *
 * The queue is bounded (INVAL_QUEUE_MAX items); beyond that new items
 * are dropped and counted: the kernel then only sees the change when its
 * entry/attribute timeout (1 s) runs out, and pages at the next open.
 */
#ifndef SANDFS_FS_INVAL_H
#define SANDFS_FS_INVAL_H

#include <stddef.h>
#include <stdint.h>

#define INVAL_QUEUE_MAX 65536

struct fuse_session;
struct inval;

/* Start the thread for session se (borrowed; outlives the inval).
 * Returns 0 or a negative errno. Stop with inval_stop(). */
int inval_start(struct fuse_session *se, struct inval **out);

/* Stop the thread (waits for the call in progress, drops the rest) and
 * free. NULL is ignored. */
void inval_stop(struct inval *iv);

/* Ask the thread to stop and wait at most timeout_ms for it: 0 when it
 * has ended (inval_stop() then returns at once), -ETIMEDOUT when a notify
 * call is still blocked in the kernel. That happens when the session loop
 * ended (SIGTERM) while a request that holds a lock the invalidation
 * needs (a lookup holds its directory) is still unanswered in the kernel:
 * only aborting the FUSE connection releases it. NULL: 0. */
int inval_quiesce(struct inval *iv, uint32_t timeout_ms);

/* Queue: forget the dentry parent/name (name copied, name_len <= 255). */
void inval_entry(struct inval *iv, uint64_t parent, const char *name,
		 size_t name_len);

/* Queue: forget the attributes of ino and, when data is set, its cached
 * pages too. 0 when queued (or no inval / ino 0: nothing to do), -EAGAIN
 * when dropped (queue full, stopping), -ENOMEM. */
int inval_inode(struct inval *iv, uint64_t ino, int data);

/* Wait until every item queued before the call has been sent (at most
 * timeout_ms: then -ETIMEDOUT). For a request handler that must not
 * answer before the kernel forgot what other nodes changed (open after
 * its ReadIndex barrier). Never call it where the kernel holds a lock an
 * invalidation needs (e.g. in lookup or create, which hold the
 * directory's lock). */
int inval_settle(struct inval *iv, uint32_t timeout_ms);

/* Items dropped because the queue was full, and items sent so far. */
void inval_counters(struct inval *iv, uint64_t *dropped, uint64_t *sent);

#endif
