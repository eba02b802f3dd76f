/*
 * Internals shared by sfs.c (namespace, attributes, xattrs, statfs) and
 * sfs_file.c (open files and directories). Not part of the contract.
 */
#ifndef SANDFS_FS_SFS_INTERNAL_H
#define SANDFS_FS_SFS_INTERNAL_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fs/data.h"
#include "fs/fsm.h"
#include "fs/itab.h"
#include "fs/sfs.h"

#define SFS_BUCKETS 4096
#define SFS_BARRIER_MS 2000 /* open/opendir wait at most this for ReadIndex */
#define SFS_BARRIER_SKIP_MS 1000 /* after a timed-out barrier, skip them */
#define SFS_LEADER_WAIT_MS 500 /* wait for an election before giving up */
#define SFS_SETTLE_MS 200   /* open waits at most this for invalidations */
#define SFS_APPEND_STRIPES 16 /* locks serializing appends per inode */

/* Per-inode counts kept while either is nonzero. */
struct sfs_icount {
	struct sfs_icount *next;
	uint64_t ino;
	uint64_t nlookup; /* kernel references (lookup replies - forgets) */
	uint32_t nopen;   /* open file handles on this node */
};

struct sfs {
	struct itab *itab;
	struct fsm *fsm;
	struct data *data;
	uint64_t self_id;
	double timeout;
	bool acl;                             /* POSIX ACLs on (not -o noacl) */
	atomic_bool acl_kernel;               /* the kernel enforces them */
	pthread_mutex_t mu;                   /* guards tab */
	struct sfs_icount *tab[SFS_BUCKETS];  /* guarded by mu */
	_Atomic int64_t barrier_down_until;   /* atomic: CLOCK_MONOTONIC ns */
	atomic_bool barrier_failing;          /* warned that barriers fail */
	pthread_mutex_t calls_mu;             /* guards calls */
	pthread_cond_t calls_cv;              /* calls reached 0 */
	uint64_t calls;                       /* sfs_call alive (proposals whose
						 completion will still run) */
	pthread_mutex_t append_mu[SFS_APPEND_STRIPES]; /* held across one append
							  (sfs_append.c) */
};

/* One open file (fi->fh). The data handle is opened lazily on a FUSE
 * worker (create replies from the replicator thread, where data_* must
 * not be called). */
struct sfs_fh {
	uint64_t ino;
	pthread_mutex_t mu;    /* guards df */
	struct data_file *df;  /* guarded by mu; NULL until first use */
};

/* Adjust the counts of ino by dl lookups and dopen handles; returns the
 * open count after the change. */
uint32_t sfs_ref(struct sfs *fs, uint64_t ino, int64_t dl, int32_t dopen);

/* Attributes for the kernel (size includes this node's unflushed data). */
void sfs_attr_to_stat(struct sfs *fs, const struct itab_attr *a, struct stat *st);
void sfs_fill_entry(struct sfs *fs, const struct itab_attr *a,
		    struct fuse_entry_param *e);

/* Stamp the caller's uid/gid/umask and the current time into op. */
void sfs_stamp(fuse_req_t req, struct itab_op *op);

/* If ino has no open handle here and is an orphan, propose its release
 * (fire and forget; any thread). */
void sfs_release_orphan(struct sfs *fs, uint64_t ino);

/* The ReadIndex barrier of open, opendir and negative lookups: 0 once
 * this node applied everything committed before the call. When this node
 * knows no leader (cut off from the majority: it is campaigning, or a
 * leader without a quorum stepped down) it fails: after waiting up to
 * SFS_LEADER_WAIT_MS for an election if barriers worked so far, at once
 * while they are known to fail; when a known
 * leader does not answer within SFS_BARRIER_MS it fails, and for the next
 * SFS_BARRIER_SKIP_MS fails at once. So a minority node keeps serving its
 * own state promptly. Logs (WARN) once when barriers start failing and
 * once when they work again. */
int sfs_read_barrier(struct sfs *fs);

/* Propose op and answer req with its errno when applied. */
void sfs_propose_err(struct sfs *fs, fuse_req_t req, const struct itab_op *op);

/* Permission check as the kernel's default_permissions does it (owner,
 * group incl. supplementary groups, other; root passes R/W always and X
 * when any x bit is set). mask of R_OK|W_OK|X_OK. 0 or -EACCES. */
int sfs_check_access(fuse_req_t req, const struct itab_attr *a, int mask);

/* True when the caller's gid or one of its supplementary groups is gid. */
bool sfs_in_group(fuse_req_t req, uint32_t gid);

/* The setuid/setgid bits of a that a write or truncate by the caller of
 * req clears (Linux's rule; 0 for root, directories and the rest). */
uint32_t sfs_perm_kill(fuse_req_t req, const struct itab_attr *a);
/* Before a write by the caller of req: clear what sfs_perm_kill() says
 * (the kernel clears most of it itself, not setgid without group execute
 * for a caller outside the group). 0 or a negative errno (the proposal
 * failed). */
int sfs_perm_write(struct sfs *fs, fuse_req_t req, uint64_t ino);
/* A SETATTR op that truncates a (truncate, ftruncate, O_TRUNC) also
 * clears what sfs_perm_kill() says, unless it sets the mode itself. */
void sfs_perm_truncate(fuse_req_t req, const struct itab_attr *a, struct itab_op *op);

/* POSIX ACLs (sfs_perm.c). 1 for "system.posix_acl_access", 2 for
 * "system.posix_acl_default", else 0. */
int sfs_acl_name(const char *name);
/* Setting an access ACL on ino drops its setgid bit: the caller is
 * neither in the file's group nor root (posix_acl_update_mode). */
bool sfs_acl_kills_sgid(struct sfs *fs, fuse_req_t req, uint64_t ino);
/* At FUSE init: ask the kernel to enforce ACLs (FUSE_CAP_POSIX_ACL) and
 * to leave the umask to us (FUSE_CAP_DONT_MASK: a default ACL replaces
 * it), unless ACLs are off; logs what the kernel offered. */
void sfs_acl_init(struct sfs *fs, struct fuse_conn_info *conn);

/* The data handle of fh, opened on first use; NULL on failure. */
struct data_file *sfs_fh_data(struct sfs *fs, struct sfs_fh *fh);
struct sfs_fh *sfs_fh_new(uint64_t ino);
void sfs_fh_free(struct sfs_fh *fh);

/* An O_APPEND write of size bytes to ino, at the end of the file as the
 * cluster knows it, committed before it returns (sfs_append.c). Returns
 * size or a negative errno. FUSE worker thread. */
ssize_t sfs_append(struct sfs *fs, uint64_t ino, const char *buf, size_t size);

/* Handlers in sfs_file.c. */
void sfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi);
void sfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	       off_t off, struct fuse_file_info *fi);
void sfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void sfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void sfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	       struct fuse_file_info *fi);
void sfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi);
void sfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi);
void sfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void sfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		  struct fuse_file_info *fi);
void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		   off_t len, struct fuse_file_info *fi);
void sfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	       struct fuse_file_info *fi);

#endif
