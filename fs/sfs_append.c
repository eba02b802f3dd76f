/*
 * sfs_append.c — writes to handles opened with O_APPEND.
 *
 * POSIX puts every O_APPEND write at the end of the file, atomically. The
 * kernel computes that end from its own cached size, which knows nothing
 * of appends made on other nodes, and two nodes appending at once would
 * each write at the end they saw. So the end is decided here, against the
 * replicated size, and each append is committed on its own:
 *
 *   1. this node's buffered data for the file is flushed (so the
 *      committed size includes it), and appends to the file on this node
 *      are serialized (a striped lock);
 *   2. the bytes are buffered in a private data handle at the committed
 *      size S and flushed with ITAB_F_IF_SIZE: the WRITE applies only if
 *      the size is still S when it reaches the log;
 *   3. -EAGAIN (another node's append or a truncate came first): the size
 *      this node applied meanwhile is the new S; place the bytes again.
 *
 * The write's offset from the kernel is ignored (Linux ignores pwrite's
 * offset on O_APPEND too). O_APPEND handles are opened with direct I/O,
 * so the kernel keeps no pages of these writes at the offset IT chose;
 * the inode's attributes and pages are invalidated after each append.
 * Cost: every O_APPEND write is a majority store and a commit, like a
 * small write followed by fsync.
 */
#include "fs/sfs_internal.h"

#include <errno.h>
#include <string.h>

#include "transport/log.h"

#define APPEND_TRIES 1000 /* each failed try means another append won */

ssize_t sfs_append(struct sfs *fs, uint64_t ino, const char *buf, size_t size)
{
	if (!fs->data)
		return -EIO;
	if (size == 0)
		return 0;
	pthread_mutex_t *mu = &fs->append_mu[ino % SFS_APPEND_STRIPES];
	pthread_mutex_lock(mu);
	ssize_t rc = data_flush_ino(fs->data, ino);
	struct data_file *df = rc == 0 ? data_file_open(fs->data, ino) : NULL;
	if (rc == 0 && !df)
		rc = -ENOMEM;
	for (int tries = 0; rc == 0; tries++) {
		struct itab_attr a;
		rc = itab_getattr(fs->itab, ino, &a);
		if (rc)
			break;
		if (tries == APPEND_TRIES) {
			LOG(WARN, "inode %llu: append lost %d races in a row; giving up",
			    (unsigned long long)ino, tries);
			rc = -EIO;
			break;
		}
		if (a.size > (uint64_t)INT64_MAX - size) {
			rc = -EFBIG;
			break;
		}
		ssize_t n = data_write(fs->data, df, buf, size, (off_t)a.size);
		if (n < 0) {
			rc = n;
			break;
		}
		rc = data_flush_if_size(fs->data, df, a.size);
		if (rc == -EAGAIN) {
			rc = 0; /* the size this node applied meanwhile is newer */
			continue;
		}
		if (rc == 0)
			rc = n;
		break;
	}
	if (df)
		data_file_release(fs->data, df); /* clean: nothing left to flush */
	pthread_mutex_unlock(mu);
	fsm_inval_pages(fs->fsm, ino);
	return rc;
}
