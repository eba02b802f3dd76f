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
 * The frontend counts open handles per inode: unlinking a file that is
 * open on this node keeps it as an orphan until the last local handle is
 * released, then proposes ITAB_OP_RELEASE_ORPHAN. Handles on OTHER nodes
 * are not known (see itab.h).
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
};

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

#endif
