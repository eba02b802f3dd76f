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
#include "fs/sfs_metrics.h"
#include "fs/sfs_reply.h" /* fuse_reply_* are timed (sfs_metrics.c) */

#define SFS_BUCKETS 4096
#define SFS_BARRIER_MS 2000 /* open/opendir wait at most this for ReadIndex */
#define SFS_BARRIER_SKIP_MS 1000 /* after a timed-out barrier, skip them */
#define SFS_LEADER_WAIT_MS 500 /* wait for an election before giving up */
#define SFS_SETTLE_MS 200   /* open waits at most this for invalidations */
#define SFS_APPEND_STRIPES 16 /* locks serializing appends per inode */

/* Per-inode counts, kept while any is nonzero or a record is held. */
struct sfs_icount {
	struct sfs_icount *next;
	uint64_t ino;
	uint64_t nlookup; /* kernel references (lookup replies - forgets) */
	uint32_t nopen;   /* open file handles on this node */
	/* This node's 'O' record of the inode in the table (sfs_open_hold):
	 * held with sequence rec_seq; OPEN proposals in flight. Updated by
	 * the proposals' completions, which run in apply order, so rec_seq
	 * is the sequence of the record the table holds. */
	bool rec_held;
	uint32_t rec_inflight;
	uint64_t rec_seq;
	/* Bumped each time the held record is queued for the closer (no
	 * handle, nothing in flight): only the newest queue entry counts. */
	uint64_t idle_gen;
};

/* An unused open record waiting for the closer (sfs_open.c). */
struct sfs_idle {
	uint64_t ino, seq;
	uint64_t gen; /* the icount's idle_gen when queued */
	int64_t due;  /* CLOCK_MONOTONIC ns at which to drop it */
};

#define SFS_IDLE_MAX 4096u /* unused records kept; past it, closed at once */

struct sfs_locks;

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
	uint64_t incarnation;                 /* this process life (open records) */
	uint32_t propose_timeout_ms;
	pthread_cond_t open_cv;               /* with mu: an OPEN completed */
	uint64_t open_seq;                    /* guarded by mu: last open sequence */
	struct sfs_close_retry *close_retry;  /* guarded by mu: CLOSEs to propose
	                                         again (sfs_close_retries) */
	struct sfs_locks *lk;                 /* sfs_lock.c */
	struct sfs_mx *mx;                    /* requests by kind (sfs_metrics.c) */
	/* Unused open records are dropped close_delay_ms after the last
	 * close (sfs_open.c), so reopening a file soon after needs no OPEN;
	 * 0 drops them at the last close. The FIFO is guarded by mu. */
	uint32_t close_delay_ms;
	struct sfs_idle *idle;                /* ring of SFS_IDLE_MAX */
	size_t idle_head, idle_n;
	pthread_cond_t idle_cv;               /* with mu: queued, or stop */
	bool idle_stop;                       /* guarded by mu */
	bool closer_started;
	pthread_t closer;
};

/* One open file (fi->fh). The data handle is opened lazily on a FUSE
 * worker (create replies from the replicator thread, where data_* must
 * not be called). */
#define SFS_FH_OWNERS 4
struct sfs_fh {
	uint64_t ino;
	pthread_mutex_t mu;    /* guards df and owners */
	struct data_file *df;  /* guarded by mu; NULL until first use */
	/* POSIX lock owners that locked through this handle (OFD locks are
	 * owned by the open file, and only its release ends them). */
	uint64_t owners[SFS_FH_OWNERS]; /* guarded by mu */
	uint8_t n_owners;               /* guarded by mu */
};

/* The handlers' own ops table; sfs_ops() wraps it (sfs_metrics.c). */
const struct fuse_lowlevel_ops *sfs_ops_untimed(void);

/* Adjust the counts of ino by dl lookups and dopen handles; returns the
 * open count after the change. */
uint32_t sfs_ref(struct sfs *fs, uint64_t ino, int64_t dl, int32_t dopen);

/* ino's counts (mu held); created when add. NULL if absent or no memory. */
struct sfs_icount *sfs_icount(struct sfs *fs, uint64_t ino, bool add);
/* Free ino's counts if nothing is left in them (mu held). */
void sfs_icount_trim(struct sfs *fs, uint64_t ino);

/* A CREATE with ITAB_F_OPEN (sequence seq) made ino and its record: one
 * handle (sfs_open.c). */
void sfs_open_created(struct sfs *fs, uint64_t ino, uint64_t seq);
/* An OPEN of ino (sequence seq) applied here with err, or failed; in
 * apply order (sfs_open.c). */
void sfs_open_applied(struct sfs *fs, uint64_t ino, uint64_t seq, int err);

/* An applied entry left ino an orphan (nlink 0, kept open): when this
 * node's record of it is only waiting for the closer, drop it now (any
 * thread, also under the fsm's hook lock: it only queues). */
void sfs_open_orphaned(struct sfs *fs, uint64_t ino);

/* Attributes for the kernel (size includes this node's unflushed data). */
void sfs_attr_to_stat(struct sfs *fs, const struct itab_attr *a, struct stat *st);
void sfs_fill_entry(struct sfs *fs, const struct itab_attr *a,
		    struct fuse_entry_param *e);

/* Stamp the caller's uid/gid/umask and the current time into op. */
void sfs_stamp(fuse_req_t req, struct itab_op *op);

/* A new handle of ino on this node: counts it, and makes sure the table
 * records that this node holds ino open (proposes ITAB_OP_OPEN and, with
 * wait, waits for it at the first handle; later ones wait for a record
 * in flight). Without wait (a node cut off from the majority, which
 * could not commit it) the record is proposed and the handle works
 * without it meanwhile. FUSE worker only. 0 or a negative errno (then
 * nothing is counted). */
int sfs_open_hold(struct sfs *fs, uint64_t ino, bool wait);

/* A handle of ino went away; at the last one the record is dropped
 * (ITAB_OP_CLOSE, fire and forget: an orphan nobody else holds open is
 * freed by it). Any thread. */
void sfs_open_unhold(struct sfs *fs, uint64_t ino);

/* Next open sequence for an OPEN or a CREATE with ITAB_F_OPEN. */
uint64_t sfs_open_seq(struct sfs *fs);

/* The payload of an OPEN/CLOSE/CREATE+ITAB_F_OPEN for sequence seq
 * (encoded into buf; op->value points at it). */
void sfs_open_payload(struct sfs *fs, struct itab_op *op, uint64_t seq,
		      uint8_t buf[ITAB_LOCK_ENC_LEN]);

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

/* Propose again the CLOSEs of open records that failed to commit (cut
 * off from the majority) once they are due, so that an unlinked file's
 * last close on this node frees it when the cluster answers again, not
 * only at this node's next start. Called periodically (the lock thread's
 * tick); any thread. */
void sfs_close_retries(struct sfs *fs);
/* Frees the CLOSEs still waiting for a retry (at teardown). */
void sfs_close_retries_free(struct sfs *fs);

/* ESTALE for an inode that is gone. The kernel resolves a path from its
 * dentry cache, which may still name an inode another node removed or
 * replaced (rename over it, unlink and create) when this node applied
 * that only after the lookup. open, opendir and getattr of such an inode
 * answer -ESTALE, not -ENOENT: the kernel then walks the path once more
 * with revalidation (LOOKUP_REVAL, as for NFS) and finds what the name
 * holds now, so an open after the replacing rename returned elsewhere
 * opens the new file (close-to-open) instead of failing. */

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

/* sfs_punch.c: fallocate's PUNCH_HOLE / ZERO_RANGE (mode as given, with
 * or without KEEP_SIZE) over [off, off+len) of regular file ino, through
 * the open file's df. Blocks the worker until committed. 0 or -errno. */
int sfs_zero_range(struct sfs *fs, fuse_req_t req, uint64_t ino, int mode,
		   uint64_t off, uint64_t len, struct data_file *df);
struct sfs_fh *sfs_fh_new(uint64_t ino);
void sfs_fh_free(struct sfs_fh *fh);

/* An O_APPEND write of size bytes to ino, at the end of the file as the
 * cluster knows it, committed before it returns (sfs_append.c). Returns
 * size or a negative errno. FUSE worker thread. */
ssize_t sfs_append(struct sfs *fs, uint64_t ino, const char *buf, size_t size);
/* Locks (sfs_lock.c). Handlers: */
void sfs_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct flock *lock);
void sfs_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct flock *lock, int sleep);
void sfs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       int op);
/* flush(2) of a descriptor: release the POSIX locks of fi->lock_owner on
 * ino (POSIX: closing any descriptor of a file releases the process's
 * locks on it). Waits until applied. FUSE worker only. */
void sfs_locks_flush(struct sfs *fs, uint64_t ino, struct fuse_file_info *fi);
/* release of handle fh: its flock (fi->flock_release), the POSIX locks
 * taken through it (OFD locks), and at the last handle of ino on this
 * node every lock this node still holds on it. FUSE worker only. */
void sfs_locks_release(struct sfs *fs, uint64_t ino, struct fuse_file_info *fi,
		       struct sfs_fh *fh);
int sfs_locks_new(struct sfs *fs, uint32_t lease_ms);
void sfs_locks_free(struct sfs_locks *lk);

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
