/*
 * fsadm.h — the file system's operations inside a mounted node: online
 * fsck (run on a thread of its own, driven through the admin socket) and
 * the background block scrub, and what both add to `sandfs status`.
 *
 * Admin requests (node_ext.admin), answered at once:
 *   "fsck start" | "fsck start repair"   -> "ok JOB" | "err ..."
 *   "fsck poll JOB text|json"            -> "running PHASE\tDONE\tTOTAL"
 *                                           | "done EXIT\n" REPORT
 *   "fsck cancel JOB"                    -> "ok" | "err ..."
 * One check runs at a time. The check reads the table at one point in
 * time (an itab view), so FUSE requests and the replicator go on beside
 * it; its repairs go through the node's own paths: blocks are fetched by
 * the data path (data_refetch), metadata fixes are proposed to the log
 * (ITAB_OP_REPAIR), unreferenced blocks are left to the block GC
 * (data_gc, which honours its grace period and recently stored blocks).
 */
#ifndef SANDFS_FS_FSADM_H
#define SANDFS_FS_FSADM_H

#include <stdint.h>

#include "fs/node.h"

struct itab;
struct fsm;
struct data;
struct repl;

struct fsadm_cfg {
	struct itab *itab; /* all borrowed; they outlive the fsadm */
	struct fsm *fsm;
	struct data *data;
	struct repl *repl;
	const char *data_dir; /* DIR: blocks in DIR/blocks, DIR/scrub.state */
	uint64_t self_id;
	uint32_t gc_grace_ms; /* the data path's (0: its default, 600000) */
	uint32_t scrub_mib_s; /* 0: scrub off */
	uint32_t scrub_interval_s; /* 0: default */
};

struct fsadm;

/* Open a second handle on the block store and start the scrub. On
 * failure a reason is in err. */
int fsadm_start(const struct fsadm_cfg *cfg, struct fsadm **out, char *err,
                size_t errcap);
/* Cancel a running check and wait for it, stop the scrub, free. Call
 * after node_set_ext(n, NULL) and before the data path stops. NULL ok. */
void fsadm_stop(struct fsadm *a);
/* The node extension to install with node_set_ext. */
struct node_ext fsadm_ext(struct fsadm *a);

struct scrub_counters;
/* The scrub's counters now (for status, and for a metrics exporter). */
void fsadm_scrub_counters(struct fsadm *a, struct scrub_counters *out);

#endif
