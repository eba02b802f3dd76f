/*
 * sfs_metrics.c — FUSE requests by kind (see sfs_metrics.h): the table of
 * requests in flight, the timed ops table that sfs_ops() hands to libfuse,
 * and the fuse_reply_* wrappers of sfs_reply.h.
 *
 * The in-flight table is open addressing over SFS_MX_SLOTS slots, probed
 * SFS_MX_PROBE slots from the request's hash. A slot is claimed by a
 * compare-and-swap of its key from 0 (or from the same key: libfuse
 * reuses the memory of a request it freed) and released by the reply
 * after reading its start time and kind. The start and the reply of one
 * request are ordered by libfuse's own hand-off (the reply of an
 * asynchronous request is made after a queue's mutex passed it on), so
 * relaxed accesses to the slot's fields suffice.
 */
#define SFS_REPLY_RAW
#include "fs/sfs_internal.h"

#include "fs/sfs_metrics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SFS_MX_PROBE 16

struct mx_slot {
	_Atomic uintptr_t key; /* 0: free */
	_Atomic uint64_t t0;   /* mono ns at the start */
	_Atomic uint32_t op;
};

struct sfs_mx {
	atomic_uint_fast64_t started[SFS_OP_COUNT];
	atomic_uint_fast64_t errors[SFS_OP_COUNT];
	struct metrics_hist lat[SFS_OP_COUNT];
	atomic_uint_fast64_t untimed;
	struct mx_slot slot[SFS_MX_SLOTS];
};

static const char *const op_names[SFS_OP_COUNT] = {
	[SFS_OP_LOOKUP] = "lookup",
	[SFS_OP_FORGET] = "forget",
	[SFS_OP_GETATTR] = "getattr",
	[SFS_OP_SETATTR] = "setattr",
	[SFS_OP_READLINK] = "readlink",
	[SFS_OP_MKNOD] = "mknod",
	[SFS_OP_MKDIR] = "mkdir",
	[SFS_OP_UNLINK] = "unlink",
	[SFS_OP_RMDIR] = "rmdir",
	[SFS_OP_SYMLINK] = "symlink",
	[SFS_OP_RENAME] = "rename",
	[SFS_OP_LINK] = "link",
	[SFS_OP_OPEN] = "open",
	[SFS_OP_READ] = "read",
	[SFS_OP_WRITE] = "write",
	[SFS_OP_FLUSH] = "flush",
	[SFS_OP_RELEASE] = "release",
	[SFS_OP_FSYNC] = "fsync",
	[SFS_OP_OPENDIR] = "opendir",
	[SFS_OP_READDIR] = "readdir",
	[SFS_OP_RELEASEDIR] = "releasedir",
	[SFS_OP_FSYNCDIR] = "fsyncdir",
	[SFS_OP_STATFS] = "statfs",
	[SFS_OP_SETXATTR] = "setxattr",
	[SFS_OP_GETXATTR] = "getxattr",
	[SFS_OP_LISTXATTR] = "listxattr",
	[SFS_OP_REMOVEXATTR] = "removexattr",
	[SFS_OP_ACCESS] = "access",
	[SFS_OP_CREATE] = "create",
	[SFS_OP_GETLK] = "getlk",
	[SFS_OP_SETLK] = "setlk",
	[SFS_OP_FORGET_MULTI] = "forget_multi",
	[SFS_OP_FLOCK] = "flock",
	[SFS_OP_FALLOCATE] = "fallocate",
	[SFS_OP_READDIRPLUS] = "readdirplus",
	[SFS_OP_LSEEK] = "lseek",
};

const char *sfs_op_name(enum sfs_op op)
{
	return (unsigned)op < SFS_OP_COUNT && op_names[op] ? op_names[op]
							   : "unknown";
}

struct sfs_mx *sfs_mx_new(void)
{
	return calloc(1, sizeof(struct sfs_mx));
}

void sfs_mx_free(struct sfs_mx *mx)
{
	free(mx);
}

static inline uint64_t mx_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Slot index to start probing at for key (Fibonacci hashing of the
 * pointer; its low bits are alignment). */
static inline size_t mx_home(uintptr_t key)
{
	uint64_t h = (uint64_t)(key >> 4) * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 52) & (SFS_MX_SLOTS - 1);
}

/* See sfs_metrics.h. */
void sfs_mx_start(struct sfs_mx *mx, const void *key, enum sfs_op op)
{
	atomic_fetch_add_explicit(&mx->started[op], 1, memory_order_relaxed);
	uintptr_t k = (uintptr_t)key;
	uint64_t t0 = mx_now();
	size_t home = mx_home(k);
	for (size_t i = 0; i < SFS_MX_PROBE; i++) {
		struct mx_slot *s = &mx->slot[(home + i) & (SFS_MX_SLOTS - 1)];
		uintptr_t cur = atomic_load_explicit(&s->key,
						     memory_order_relaxed);
		if (cur != 0 && cur != k)
			continue;
		if (!atomic_compare_exchange_strong_explicit(
			    &s->key, &cur, k, memory_order_acquire,
			    memory_order_relaxed))
			continue;
		atomic_store_explicit(&s->t0, t0, memory_order_relaxed);
		atomic_store_explicit(&s->op, (uint32_t)op,
				      memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&mx->untimed, 1, memory_order_relaxed);
}

/* See sfs_metrics.h. */
void sfs_mx_stop(struct sfs_mx *mx, const void *key, int err)
{
	uintptr_t k = (uintptr_t)key;
	size_t home = mx_home(k);
	for (size_t i = 0; i < SFS_MX_PROBE; i++) {
		struct mx_slot *s = &mx->slot[(home + i) & (SFS_MX_SLOTS - 1)];
		if (atomic_load_explicit(&s->key, memory_order_relaxed) != k)
			continue;
		uint64_t t0 = atomic_load_explicit(&s->t0, memory_order_relaxed);
		uint32_t op = atomic_load_explicit(&s->op, memory_order_relaxed);
		atomic_store_explicit(&s->key, 0, memory_order_release);
		if (op >= SFS_OP_COUNT)
			return;
		uint64_t now = mx_now();
		metrics_hist_observe(&mx->lat[op], now > t0 ? now - t0 : 0);
		if (err)
			atomic_fetch_add_explicit(&mx->errors[op], 1,
						  memory_order_relaxed);
		return;
	}
}

void sfs_mx_read(const struct sfs_mx *mx, enum sfs_op op,
		 struct sfs_op_stats *st)
{
	st->started = atomic_load_explicit(&mx->started[op],
					   memory_order_relaxed);
	st->errors = atomic_load_explicit(&mx->errors[op], memory_order_relaxed);
	metrics_hist_read(&mx->lat[op], &st->lat);
}

uint64_t sfs_mx_untimed(const struct sfs_mx *mx)
{
	return atomic_load_explicit(&mx->untimed, memory_order_relaxed);
}

/* See sfs_metrics.h. */
void sfs_mx_write(const struct sfs_mx *mx, struct metrics_out *o)
{
	struct sfs_op_stats st[SFS_OP_COUNT];
	for (int i = 0; i < SFS_OP_COUNT; i++)
		sfs_mx_read(mx, (enum sfs_op)i, &st[i]);
	char lb[64];
	metrics_family(o, "sandfs_fuse_ops_total", "counter",
		       "FUSE requests received, by kind");
	for (int i = 0; i < SFS_OP_COUNT; i++) {
		if (!st[i].started)
			continue;
		lb[0] = 0;
		metrics_label(lb, sizeof(lb), "op", sfs_op_name((enum sfs_op)i));
		metrics_u64(o, "sandfs_fuse_ops_total", lb, st[i].started);
	}
	metrics_family(o, "sandfs_fuse_op_errors_total", "counter",
		       "FUSE requests answered with an error (ENOENT "
		       "included), by kind");
	for (int i = 0; i < SFS_OP_COUNT; i++) {
		if (!st[i].started)
			continue;
		lb[0] = 0;
		metrics_label(lb, sizeof(lb), "op", sfs_op_name((enum sfs_op)i));
		metrics_u64(o, "sandfs_fuse_op_errors_total", lb, st[i].errors);
	}
	metrics_family(o, "sandfs_fuse_op_duration_seconds", "histogram",
		       "Time from a FUSE request reaching sandfs to its "
		       "reply, by kind");
	for (int i = 0; i < SFS_OP_COUNT; i++) {
		if (!st[i].started)
			continue;
		lb[0] = 0;
		metrics_label(lb, sizeof(lb), "op", sfs_op_name((enum sfs_op)i));
		metrics_hist_write(o, "sandfs_fuse_op_duration_seconds", lb,
				   &st[i].lat);
	}
	metrics_family(o, "sandfs_fuse_ops_untimed_total", "counter",
		       "FUSE requests counted but not timed (no free slot "
		       "in the in-flight table)");
	metrics_u64(o, "sandfs_fuse_ops_untimed_total", NULL,
		    sfs_mx_untimed(mx));
}

/* See sfs.h. */
void sfs_metrics(struct sfs *fs, struct metrics_out *o)
{
	if (fs && fs->mx)
		sfs_mx_write(fs->mx, o);
}

/* ---- the timed ops table --------------------------------------------------- */

static inline void begin(fuse_req_t req, enum sfs_op op)
{
	struct sfs *fs = fuse_req_userdata(req);
	if (fs && fs->mx)
		sfs_mx_start(fs->mx, req, op);
}

static inline void end(fuse_req_t req, int err)
{
	struct sfs *fs = fuse_req_userdata(req);
	if (fs && fs->mx)
		sfs_mx_stop(fs->mx, req, err);
}

#define IN sfs_ops_untimed()

static void t_init(void *userdata, struct fuse_conn_info *conn)
{
	IN->init(userdata, conn);
}

static void t_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	begin(req, SFS_OP_LOOKUP);
	IN->lookup(req, parent, name);
}

static void t_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	begin(req, SFS_OP_FORGET);
	IN->forget(req, ino, nlookup);
}

static void t_forget_multi(fuse_req_t req, size_t count,
			   struct fuse_forget_data *forgets)
{
	begin(req, SFS_OP_FORGET_MULTI);
	IN->forget_multi(req, count, forgets);
}

static void t_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_GETATTR);
	IN->getattr(req, ino, fi);
}

static void t_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		      int to_set, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_SETATTR);
	IN->setattr(req, ino, attr, to_set, fi);
}

static void t_readlink(fuse_req_t req, fuse_ino_t ino)
{
	begin(req, SFS_OP_READLINK);
	IN->readlink(req, ino);
}

static void t_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		    mode_t mode, dev_t rdev)
{
	begin(req, SFS_OP_MKNOD);
	IN->mknod(req, parent, name, mode, rdev);
}

static void t_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		    mode_t mode)
{
	begin(req, SFS_OP_MKDIR);
	IN->mkdir(req, parent, name, mode);
}

static void t_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	begin(req, SFS_OP_UNLINK);
	IN->unlink(req, parent, name);
}

static void t_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	begin(req, SFS_OP_RMDIR);
	IN->rmdir(req, parent, name);
}

static void t_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		      const char *name)
{
	begin(req, SFS_OP_SYMLINK);
	IN->symlink(req, link, parent, name);
}

static void t_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		     fuse_ino_t newparent, const char *newname,
		     unsigned int flags)
{
	begin(req, SFS_OP_RENAME);
	IN->rename(req, parent, name, newparent, newname, flags);
}

static void t_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		   const char *newname)
{
	begin(req, SFS_OP_LINK);
	IN->link(req, ino, newparent, newname);
}

static void t_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_OPEN);
	IN->open(req, ino, fi);
}

static void t_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	begin(req, SFS_OP_READ);
	IN->read(req, ino, size, off, fi);
}

static void t_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		    size_t size, off_t off, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_WRITE);
	IN->write(req, ino, buf, size, off, fi);
}

static void t_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_FLUSH);
	IN->flush(req, ino, fi);
}

static void t_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_RELEASE);
	IN->release(req, ino, fi);
}

static void t_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi)
{
	begin(req, SFS_OP_FSYNC);
	IN->fsync(req, ino, datasync, fi);
}

static void t_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_OPENDIR);
	IN->opendir(req, ino, fi);
}

static void t_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	begin(req, SFS_OP_READDIR);
	IN->readdir(req, ino, size, off, fi);
}

static void t_releasedir(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_file_info *fi)
{
	begin(req, SFS_OP_RELEASEDIR);
	IN->releasedir(req, ino, fi);
}

static void t_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		       struct fuse_file_info *fi)
{
	begin(req, SFS_OP_FSYNCDIR);
	IN->fsyncdir(req, ino, datasync, fi);
}

static void t_statfs(fuse_req_t req, fuse_ino_t ino)
{
	begin(req, SFS_OP_STATFS);
	IN->statfs(req, ino);
}

static void t_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		       const char *value, size_t size, int flags)
{
	begin(req, SFS_OP_SETXATTR);
	IN->setxattr(req, ino, name, value, size, flags);
}

static void t_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		       size_t size)
{
	begin(req, SFS_OP_GETXATTR);
	IN->getxattr(req, ino, name, size);
}

static void t_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	begin(req, SFS_OP_LISTXATTR);
	IN->listxattr(req, ino, size);
}

static void t_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	begin(req, SFS_OP_REMOVEXATTR);
	IN->removexattr(req, ino, name);
}

static void t_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	begin(req, SFS_OP_ACCESS);
	IN->access(req, ino, mask);
}

static void t_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_CREATE);
	IN->create(req, parent, name, mode, fi);
}

static void t_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct flock *lock)
{
	begin(req, SFS_OP_GETLK);
	IN->getlk(req, ino, fi, lock);
}

static void t_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct flock *lock, int sleep)
{
	begin(req, SFS_OP_SETLK);
	IN->setlk(req, ino, fi, lock, sleep);
}

static void t_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    int op)
{
	begin(req, SFS_OP_FLOCK);
	IN->flock(req, ino, fi, op);
}

static void t_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			off_t length, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_FALLOCATE);
	IN->fallocate(req, ino, mode, offset, length, fi);
}

static void t_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off, struct fuse_file_info *fi)
{
	begin(req, SFS_OP_READDIRPLUS);
	IN->readdirplus(req, ino, size, off, fi);
}

static void t_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		    struct fuse_file_info *fi)
{
	begin(req, SFS_OP_LSEEK);
	IN->lseek(req, ino, off, whence, fi);
}

/* Every operation the untimed table has, and no other (libfuse answers
 * ENOSYS for missing ones, or changes behaviour: tests/unit/fs checks
 * that both tables have the same operations). */
static const struct fuse_lowlevel_ops timed_ops = {
	.init = t_init,
	.lookup = t_lookup,
	.forget = t_forget,
	.forget_multi = t_forget_multi,
	.getattr = t_getattr,
	.setattr = t_setattr,
	.readlink = t_readlink,
	.mknod = t_mknod,
	.mkdir = t_mkdir,
	.unlink = t_unlink,
	.rmdir = t_rmdir,
	.symlink = t_symlink,
	.rename = t_rename,
	.link = t_link,
	.open = t_open,
	.read = t_read,
	.write = t_write,
	.flush = t_flush,
	.release = t_release,
	.fsync = t_fsync,
	.opendir = t_opendir,
	.readdir = t_readdir,
	.releasedir = t_releasedir,
	.fsyncdir = t_fsyncdir,
	.statfs = t_statfs,
	.setxattr = t_setxattr,
	.getxattr = t_getxattr,
	.listxattr = t_listxattr,
	.removexattr = t_removexattr,
	.access = t_access,
	.create = t_create,
	.fallocate = t_fallocate,
	.readdirplus = t_readdirplus,
	.lseek = t_lseek,
	.getlk = t_getlk,
	.setlk = t_setlk,
	.flock = t_flock,
};

const struct fuse_lowlevel_ops *sfs_ops(void)
{
	return &timed_ops;
}

/* ---- the reply wrappers (sfs_reply.h) ------------------------------------- */

int sfs_reply_err(fuse_req_t req, int err)
{
	end(req, err);
	return fuse_reply_err(req, err);
}

void sfs_reply_none(fuse_req_t req)
{
	end(req, 0);
	fuse_reply_none(req);
}

int sfs_reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	end(req, 0);
	return fuse_reply_entry(req, e);
}

int sfs_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		     const struct fuse_file_info *fi)
{
	end(req, 0);
	return fuse_reply_create(req, e, fi);
}

int sfs_reply_attr(fuse_req_t req, const struct stat *attr, double timeout)
{
	end(req, 0);
	return fuse_reply_attr(req, attr, timeout);
}

int sfs_reply_readlink(fuse_req_t req, const char *link)
{
	end(req, 0);
	return fuse_reply_readlink(req, link);
}

int sfs_reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	end(req, 0);
	return fuse_reply_open(req, fi);
}

int sfs_reply_write(fuse_req_t req, size_t count)
{
	end(req, 0);
	return fuse_reply_write(req, count);
}

int sfs_reply_buf(fuse_req_t req, const char *buf, size_t size)
{
	end(req, 0);
	return fuse_reply_buf(req, buf, size);
}

int sfs_reply_data(fuse_req_t req, struct fuse_bufvec *bufv,
		   enum fuse_buf_copy_flags flags)
{
	end(req, 0);
	return fuse_reply_data(req, bufv, flags);
}

int sfs_reply_iov(fuse_req_t req, const struct iovec *iov, int count)
{
	end(req, 0);
	return fuse_reply_iov(req, iov, count);
}

int sfs_reply_statfs(fuse_req_t req, const struct statvfs *stbuf)
{
	end(req, 0);
	return fuse_reply_statfs(req, stbuf);
}

int sfs_reply_xattr(fuse_req_t req, size_t count)
{
	end(req, 0);
	return fuse_reply_xattr(req, count);
}

int sfs_reply_lock(fuse_req_t req, const struct flock *lock)
{
	end(req, 0);
	return fuse_reply_lock(req, lock);
}

int sfs_reply_bmap(fuse_req_t req, uint64_t idx)
{
	end(req, 0);
	return fuse_reply_bmap(req, idx);
}

int sfs_reply_ioctl_retry(fuse_req_t req, const struct iovec *in_iov,
			  size_t in_count, const struct iovec *out_iov,
			  size_t out_count)
{
	end(req, 0);
	return fuse_reply_ioctl_retry(req, in_iov, in_count, out_iov,
				      out_count);
}

int sfs_reply_ioctl(fuse_req_t req, int result, const void *buf, size_t size)
{
	end(req, 0);
	return fuse_reply_ioctl(req, result, buf, size);
}

int sfs_reply_ioctl_iov(fuse_req_t req, int result, const struct iovec *iov,
			int count)
{
	end(req, 0);
	return fuse_reply_ioctl_iov(req, result, iov, count);
}

int sfs_reply_poll(fuse_req_t req, unsigned revents)
{
	end(req, 0);
	return fuse_reply_poll(req, revents);
}

int sfs_reply_lseek(fuse_req_t req, off_t off)
{
	end(req, 0);
	return fuse_reply_lseek(req, off);
}
