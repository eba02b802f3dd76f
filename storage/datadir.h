/*
 * datadir.h — a node's data directory.
 *
 * Layout of DIR:
 *   LOCK.sandfs  flock()ed exclusively while a sandfs process uses DIR;
 *                holds that process's pid (for the "in use" message)
 *   FORMAT       "sandfs-format N\n": on-disk format version
 *   CLUSTER      "%016llx\n": the cluster id this node belongs to (absent
 *                until one is known)
 *   raft/        Raft log + hard state (rlog.h)
 *   meta/        filesystem state machine (meta.h)
 *   blocks/      content-addressed blocks (blk.h)
 *
 * ddir_open() creates DIR (mode 0700, parents 0755) when missing, takes the
 * lock, writes or checks FORMAT and CLUSTER. The sub-stores are opened by
 * their own modules at the paths given here. Small files are replaced
 * atomically (temp file, fsync, rename, fsync of DIR).
 *
 * A struct ddir is used by one thread at a time.
 */
#ifndef SANDFS_STORAGE_DATADIR_H
#define SANDFS_STORAGE_DATADIR_H

#include <stddef.h>
#include <stdint.h>

/* The on-disk format this build writes and the newest it can read. */
#define DDIR_FORMAT_VERSION 1

struct ddir;

/* Opens (creating if needed) the data directory at path and locks it.
 *
 * cluster_id: 0 adopts whatever id DIR stores (or none); nonzero must
 * equal the stored id, and is stored when DIR has none yet.
 *
 * Errors (a one-line, human-readable reason goes into err/errcap, which may
 * be NULL; it names DIR and says what to do):
 *   -EBUSY       another process holds the lock ("data directory DIR is in
 *                use by another sandfs process (pid N)")
 *   -EPROTONOSUPPORT  FORMAT names a newer or unknown version
 *   -ESTALE      cluster id mismatch (the message names both ids)
 *   -ENOTEMPTY   DIR has files but no FORMAT: not a sandfs directory
 *   other -errno from the file system (EACCES, ENOTDIR, EROFS, ...)
 * On success *out is owned by the caller; release with ddir_close(). */
int ddir_open(const char *path, uint64_t cluster_id, struct ddir **out,
              char *err, size_t errcap);

/* Releases the lock and frees d. NULL is fine. Never removes files. */
void ddir_close(struct ddir *d);

/* The cluster id stored in DIR, 0 if none yet. */
uint64_t ddir_cluster_id(const struct ddir *d);

/* Stores a cluster id in a directory that has none yet (a node that learns
 * its cluster after ddir_open(..., 0, ...)). Storing the same id again is a
 * no-op; a different one fails with -ESTALE and a message. */
int ddir_set_cluster_id(struct ddir *d, uint64_t cluster_id, char *err,
                        size_t errcap);

/* Paths, borrowed from d (valid until ddir_close()): DIR itself, and the
 * sub-store directories DIR/raft, DIR/meta, DIR/blocks. */
const char *ddir_path(const struct ddir *d);
const char *ddir_raft_path(const struct ddir *d);
const char *ddir_meta_path(const struct ddir *d);
const char *ddir_blocks_path(const struct ddir *d);

#endif
