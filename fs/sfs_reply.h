/*
 * sfs_reply.h — every fuse_reply_* of the frontend goes through a wrapper
 * that first counts the request's latency (sfs_metrics.h). Included by
 * sfs_internal.h after <fuse_lowlevel.h>: in the frontend's files a call
 * such as fuse_reply_err(req, ENOENT) is sfs_reply_err(req, ENOENT).
 * sfs_metrics.c, which defines the wrappers, defines SFS_REPLY_RAW first
 * to call libfuse itself.
 */
#ifndef SANDFS_FS_SFS_REPLY_H
#define SANDFS_FS_SFS_REPLY_H

#include <fuse_lowlevel.h>

int sfs_reply_err(fuse_req_t req, int err);
void sfs_reply_none(fuse_req_t req);
int sfs_reply_entry(fuse_req_t req, const struct fuse_entry_param *e);
int sfs_reply_create(fuse_req_t req, const struct fuse_entry_param *e,
		     const struct fuse_file_info *fi);
int sfs_reply_attr(fuse_req_t req, const struct stat *attr, double timeout);
int sfs_reply_readlink(fuse_req_t req, const char *link);
int sfs_reply_open(fuse_req_t req, const struct fuse_file_info *fi);
int sfs_reply_write(fuse_req_t req, size_t count);
int sfs_reply_buf(fuse_req_t req, const char *buf, size_t size);
int sfs_reply_data(fuse_req_t req, struct fuse_bufvec *bufv,
		   enum fuse_buf_copy_flags flags);
int sfs_reply_iov(fuse_req_t req, const struct iovec *iov, int count);
int sfs_reply_statfs(fuse_req_t req, const struct statvfs *stbuf);
int sfs_reply_xattr(fuse_req_t req, size_t count);
int sfs_reply_lock(fuse_req_t req, const struct flock *lock);
int sfs_reply_bmap(fuse_req_t req, uint64_t idx);
int sfs_reply_ioctl_retry(fuse_req_t req, const struct iovec *in_iov,
			  size_t in_count, const struct iovec *out_iov,
			  size_t out_count);
int sfs_reply_ioctl(fuse_req_t req, int result, const void *buf, size_t size);
int sfs_reply_ioctl_iov(fuse_req_t req, int result, const struct iovec *iov,
			int count);
int sfs_reply_poll(fuse_req_t req, unsigned revents);
int sfs_reply_lseek(fuse_req_t req, off_t off);

#ifndef SFS_REPLY_RAW
#define fuse_reply_err sfs_reply_err
#define fuse_reply_none sfs_reply_none
#define fuse_reply_entry sfs_reply_entry
#define fuse_reply_create sfs_reply_create
#define fuse_reply_attr sfs_reply_attr
#define fuse_reply_readlink sfs_reply_readlink
#define fuse_reply_open sfs_reply_open
#define fuse_reply_write sfs_reply_write
#define fuse_reply_buf sfs_reply_buf
#define fuse_reply_data sfs_reply_data
#define fuse_reply_iov sfs_reply_iov
#define fuse_reply_statfs sfs_reply_statfs
#define fuse_reply_xattr sfs_reply_xattr
#define fuse_reply_lock sfs_reply_lock
#define fuse_reply_bmap sfs_reply_bmap
#define fuse_reply_ioctl_retry sfs_reply_ioctl_retry
#define fuse_reply_ioctl sfs_reply_ioctl
#define fuse_reply_ioctl_iov sfs_reply_ioctl_iov
#define fuse_reply_poll sfs_reply_poll
#define fuse_reply_lseek sfs_reply_lseek
#endif

#endif
