/*
 * sfs_metrics.h — FUSE requests by kind: how many were started, how many
 * were answered with an error, and how long each took from the moment
 * the handler got it to its reply (latency histograms, metrics.h).
 *
 * The frontend's ops table (sfs_ops()) is a table of thin wrappers that
 * note (request, kind, time) in a small lock-free table and call the real
 * handler; every fuse_reply_* the frontend makes goes through sfs_reply.h,
 * which finds the request in the table, counts its latency and then
 * replies. So a reply made later from another thread (the replicator's
 * completions) is timed as well. The cost is two clock reads and a few
 * relaxed atomic operations per request (tests/bench/metrics_bench).
 *
 * The table has SFS_MX_SLOTS slots; a request that finds no free slot
 * near its hash (thousands in flight) is counted but not timed
 * (sandfs_fuse_ops_untimed_total).
 */
#ifndef SANDFS_FS_SFS_METRICS_H
#define SANDFS_FS_SFS_METRICS_H

#include <stdint.h>

#include "fs/metrics.h"

#define SFS_MX_SLOTS 4096 /* power of two */

enum sfs_op {
	SFS_OP_LOOKUP,
	SFS_OP_FORGET,
	SFS_OP_GETATTR,
	SFS_OP_SETATTR,
	SFS_OP_READLINK,
	SFS_OP_MKNOD,
	SFS_OP_MKDIR,
	SFS_OP_UNLINK,
	SFS_OP_RMDIR,
	SFS_OP_SYMLINK,
	SFS_OP_RENAME,
	SFS_OP_LINK,
	SFS_OP_OPEN,
	SFS_OP_READ,
	SFS_OP_WRITE,
	SFS_OP_FLUSH,
	SFS_OP_RELEASE,
	SFS_OP_FSYNC,
	SFS_OP_OPENDIR,
	SFS_OP_READDIR,
	SFS_OP_RELEASEDIR,
	SFS_OP_FSYNCDIR,
	SFS_OP_STATFS,
	SFS_OP_SETXATTR,
	SFS_OP_GETXATTR,
	SFS_OP_LISTXATTR,
	SFS_OP_REMOVEXATTR,
	SFS_OP_ACCESS,
	SFS_OP_CREATE,
	SFS_OP_GETLK,
	SFS_OP_SETLK,
	SFS_OP_FORGET_MULTI,
	SFS_OP_FLOCK,
	SFS_OP_FALLOCATE,
	SFS_OP_READDIRPLUS,
	SFS_OP_LSEEK,
	SFS_OP_COUNT
};

/* The kind's name as the op="" label shows it ("lookup", ...). */
const char *sfs_op_name(enum sfs_op op);

struct sfs_mx;

/* Zeroed counters and table; NULL without memory. */
struct sfs_mx *sfs_mx_new(void);
void sfs_mx_free(struct sfs_mx *mx);

/* Request key (a fuse_req_t) of kind op starts now. Lock-free. */
void sfs_mx_start(struct sfs_mx *mx, const void *key, enum sfs_op op);
/* Request key is answered with errno err (0: success): its latency is
 * counted. A key never started (or not timed) is ignored. Lock-free. */
void sfs_mx_stop(struct sfs_mx *mx, const void *key, int err);

struct sfs_op_stats {
	uint64_t started;
	uint64_t errors;
	struct metrics_hist_snap lat;
};
void sfs_mx_read(const struct sfs_mx *mx, enum sfs_op op,
		 struct sfs_op_stats *st);
/* Requests that found no slot (counted, not timed). */
uint64_t sfs_mx_untimed(const struct sfs_mx *mx);

/* The sandfs_fuse_* families (kinds seen so far only). */
void sfs_mx_write(const struct sfs_mx *mx, struct metrics_out *o);

#endif
