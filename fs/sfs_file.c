/*
 * sfs_file.c — FUSE handlers for open files and directories: open (with a
 * ReadIndex barrier for close-to-open), read/write/flush/fsync/release
 * through data.h, readdir(plus) from itab's stable cookies, fallocate (hole
 * punching and zeroing in sfs_punch.c) and SEEK_DATA/SEEK_HOLE.
 *
 * readdir offsets: "." is offset 1, ".." offset 2, every other entry is
 * its itab cookie (>= ITAB_COOKIE_FIRST). The offset handed to the kernel
 * with an entry is that entry's own cookie, so a continuation at offset
 * o starts at cookie o + 1; cookies never change while an entry lives,
 * so concurrent creates and removes never repeat or skip a survivor.
 */
#include "fs/sfs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "transport/log.h"

static struct sfs *get_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct sfs_fh *get_fh(struct fuse_file_info *fi)
{
	return (struct sfs_fh *)(uintptr_t)fi->fh;
}

/* The errno for the kernel from a data-path result on an open file: the
 * inode having gone (freed by another node while open here) is a stale
 * handle, not "no such file" from read/write/close/fsync. */
static int file_errno(long rc)
{
	return rc == -ENOENT ? ESTALE : (int)-rc;
}

/* ---- files ---------------------------------------------------------------------- */

void sfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	/* Close-to-open: catch up with the cluster, and let the kernel drop
	 * attributes (i_size) other nodes' changes made stale before the
	 * first read of this open. The inode's own attributes are dropped
	 * too: a lookup racing with another node's WRITE may have cached the
	 * old size after that WRITE's invalidation (see fsm_inval_inode). */
	bool caught_up = sfs_read_barrier(fs) == 0;
	if (caught_up)
		fsm_inval_inode(fs->fsm, ino);
	struct itab_attr a;
	int rc = itab_getattr(fs->itab, ino, &a);
	if (rc == -ENOENT)
		rc = -ESTALE; /* inode gone: ESTALE, see sfs_internal.h */
	if (rc == 0 && S_ISDIR(a.mode))
		rc = -EISDIR;
	/* The table learns that this node holds the file open (first handle
	 * here): a node that unlinks it meanwhile keeps it as an orphan. Cut
	 * off from the majority (no barrier) the open does not wait for
	 * that: reads of what this node has keep working. */
	bool held = rc == 0 && (rc = sfs_open_hold(fs, ino, caught_up)) == 0;
	if (rc == -ENOENT)
		rc = -ESTALE; /* removed before its OPEN applied: as above */
	if (rc == 0 && (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY &&
	    S_ISREG(a.mode)) {
		/* atomic O_TRUNC: the kernel leaves the truncation to us. The
		 * size is read after the flush, which may have grown it. */
		if (fs->data)
			rc = data_flush_ino(fs->data, ino);
		if (rc == 0)
			rc = itab_getattr(fs->itab, ino, &a);
		/* Also when empty: O_TRUNC sets mtime and ctime. */
		if (rc == 0) {
			struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = ino,
					     .valid = ITAB_SET_SIZE, .size = 0};
			sfs_stamp(req, &op);
			sfs_perm_truncate(req, &a, &op);
			rc = fsm_propose_sync(fs->fsm, &op, NULL);
		}
	}
	struct sfs_fh *fh = rc == 0 ? sfs_fh_new(ino) : NULL;
	if (rc == 0 && !fh)
		rc = -ENOMEM;
	if (rc) {
		if (held)
			sfs_open_unhold(fs, ino);
		fuse_reply_err(req, -rc);
		return;
	}
	sfs_fh_data(fs, fh); /* open the data handle now, on this worker */
	fi->fh = (uint64_t)(uintptr_t)fh;
	/* Pages cached by an earlier open stay when no change of the
	 * content was applied since they were last dropped (from any node,
	 * up to the commit index the barrier caught up with). Otherwise drop
	 * them before answering, and only then vouch for what is cached
	 * from now on (a concurrent open must not keep them before they are
	 * gone). Not caught up (no leader): drop them, as changes may be
	 * missing. The queued attribute invalidation is settled here too. */
	uint64_t ticket;
	bool keep = caught_up && fsm_pages_valid(fs->fsm, ino, &ticket);
	bool dropping = caught_up && !keep &&
			fsm_inval_pages(fs->fsm, ino) == 0;
	if (caught_up && fsm_inval_settle(fs->fsm, SFS_SETTLE_MS) == 0 &&
	    dropping)
		fsm_pages_dropped(fs->fsm, ino, ticket);
	fi->keep_cache = keep;
	fi->direct_io = (fi->flags & O_APPEND) != 0; /* see sfs_append.c */
	if (fuse_reply_open(req, fi) != 0) {
		if (fh->df)
			data_file_release(fs->data, fh->df);
		sfs_fh_free(fh);
		sfs_open_unhold(fs, ino);
	}
}

void sfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct data_file *df = sfs_fh_data(fs, get_fh(fi));
	if (!df) {
		fuse_reply_err(req, EIO);
		return;
	}
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = data_read(fs->data, df, ino, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, file_errno(n));
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void sfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
	       off_t off, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct data_file *df = sfs_fh_data(fs, get_fh(fi));
	if (!df) {
		fuse_reply_err(req, EIO);
		return;
	}
	int rc = sfs_perm_write(fs, req, ino);
	if (rc) {
		fuse_reply_err(req, file_errno(rc));
		return;
	}
	ssize_t n = (fi->flags & O_APPEND) ? sfs_append(fs, ino, buf, size)
					   : data_write(fs->data, df, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, file_errno(n));
	else
		fuse_reply_write(req, (size_t)n);
}

/* flush runs at every close(2) of a descriptor: its errors reach the
 * caller of close, so buffered data is committed here; then the closing
 * process's POSIX locks on the file are released (after its data, so the
 * next holder sees it). */
void sfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct sfs_fh *fh = get_fh(fi);
	pthread_mutex_lock(&fh->mu);
	struct data_file *df = fh->df;
	pthread_mutex_unlock(&fh->mu);
	int rc = df ? data_flush(fs->data, df) : 0;
	sfs_locks_flush(fs, ino, fi);
	fuse_reply_err(req, file_errno(rc));
}

void sfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct sfs_fh *fh = get_fh(fi);
	if (fh->df) {
		int rc = data_file_release(fs->data, fh->df);
		if (rc)
			LOG(WARN, "inode %llu: data lost at release: %s",
			    (unsigned long long)ino, strerror(-rc));
	}
	sfs_locks_release(fs, ino, fi, fh);
	sfs_fh_free(fh);
	sfs_open_unhold(fs, ino);
	fuse_reply_err(req, 0);
}

/* Data and the WRITE entry are on a majority once data_flush returns;
 * metadata changes were committed before their reply. */
void sfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
	       struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct sfs_fh *fh = get_fh(fi);
	pthread_mutex_lock(&fh->mu);
	struct data_file *df = fh->df;
	pthread_mutex_unlock(&fh->mu);
	int rc = df ? data_flush(fs->data, df) : 0;
	fuse_reply_err(req, file_errno(rc));
}

void sfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		   off_t len, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	int zero = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE);
	if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
		      FALLOC_FL_ZERO_RANGE)) ||
	    zero == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		/* Collapse/insert range and unsharing are not supported. */
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	struct itab_attr a;
	int rc = itab_getattr(fs->itab, ino, &a);
	if (rc == 0 && !S_ISREG(a.mode))
		rc = -ENODEV;
	if (rc == 0 && (uint64_t)off + (uint64_t)len > (uint64_t)INT64_MAX)
		rc = -EFBIG;
	if (rc == 0 && zero)
		rc = sfs_perm_write(fs, req, ino);
	if (rc == 0 && zero) {
		rc = sfs_zero_range(fs, req, ino, mode, (uint64_t)off,
				    (uint64_t)len, sfs_fh_data(fs, get_fh(fi)));
		fuse_reply_err(req, file_errno(rc));
		return;
	}
	if (rc || (mode & FALLOC_FL_KEEP_SIZE)) {
		/* Blocks are not reserved: KEEP_SIZE has nothing to do. */
		fuse_reply_err(req, -rc);
		return;
	}
	uint64_t end = (uint64_t)off + (uint64_t)len;
	if (fs->data && (rc = data_flush_ino(fs->data, ino)) == 0)
		rc = itab_getattr(fs->itab, ino, &a);
	if (rc || end <= a.size) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = ino,
			     .valid = ITAB_SET_SIZE, .size = end};
	sfs_stamp(req, &op);
	sfs_propose_err(fs, req, &op);
}

struct seek_scan {
	uint64_t want;  /* SEEK_DATA: first index >= this with an extent */
	uint64_t found; /* UINT64_MAX: none */
	uint32_t bs;
	uint64_t hole;  /* SEEK_HOLE: byte offset where data stops */
};

static int seek_data_cb(void *ctx, uint64_t index, const uint8_t *hash,
			uint32_t len)
{
	struct seek_scan *s = ctx;
	s->found = index;
	return 1;
}

static int seek_hole_cb(void *ctx, uint64_t index, const uint8_t *hash,
			uint32_t len)
{
	struct seek_scan *s = ctx;
	if (index != s->want)
		return 1; /* a missing block: the hole starts at want */
	s->want = index + 1;
	s->hole = index * s->bs + len;
	return len < s->bs; /* a short block ends in zeros */
}

void sfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	       struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	int rc = fs->data ? data_flush_ino(fs->data, ino) : 0;
	struct itab_attr a;
	if (rc == 0)
		rc = itab_getattr(fs->itab, ino, &a);
	if (rc == 0 && (off < 0 || (uint64_t)off >= a.size))
		rc = -ENXIO;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	uint32_t bs = itab_block_size(fs->itab);
	uint64_t first = (uint64_t)off / bs;
	struct seek_scan s = {.want = first, .found = UINT64_MAX, .bs = bs,
			      .hole = first * bs};
	uint64_t pos;
	if (whence == SEEK_DATA) {
		rc = itab_extents(fs->itab, ino, first, UINT64_MAX - first,
				  seek_data_cb, &s);
		pos = s.found == UINT64_MAX ? a.size : s.found * bs;
		if (pos < (uint64_t)off)
			pos = (uint64_t)off;
		if (rc == 0 && pos >= a.size)
			rc = -ENXIO;
	} else {
		rc = itab_extents(fs->itab, ino, first, UINT64_MAX - first,
				  seek_hole_cb, &s);
		pos = s.hole < (uint64_t)off ? (uint64_t)off : s.hole;
		if (pos > a.size)
			pos = a.size;
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, (off_t)pos);
}

/* ---- directories ------------------------------------------------------------------ */

void sfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	bool caught_up = sfs_read_barrier(fs) == 0;
	struct itab_attr a;
	int rc = itab_getattr(fs->itab, ino, &a);
	if (rc == -ENOENT)
		rc = -ESTALE; /* inode gone: ESTALE, see sfs_internal.h */
	if (rc == 0 && !S_ISDIR(a.mode))
		rc = -ENOTDIR;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* The kernel may cache the listing (in the directory's pages) and
	 * keep it across opendirs while no entry of the directory changed:
	 * every applied create/unlink/rename in it, from any node, marks its
	 * pages stale (fsm.c), another node's also drops them at once
	 * (inval.c), and the kernel drops them itself on this node's own
	 * changes. As for files (sfs_open): after the barrier, keep them
	 * when valid, else drop them before answering; not caught up (no
	 * leader): drop them and cache nothing. */
	uint64_t ticket = UINT64_MAX;
	bool keep = caught_up && fsm_pages_valid(fs->fsm, ino, &ticket);
	bool dropping = !keep && fsm_inval_pages(fs->fsm, ino) == 0;
	if (fsm_inval_settle(fs->fsm, SFS_SETTLE_MS) == 0 && dropping &&
	    caught_up)
		fsm_pages_dropped(fs->fsm, ino, ticket);
	fi->fh = 0;
	fi->keep_cache = keep;
	fi->cache_readdir = caught_up;
	fuse_reply_open(req, fi);
}

/* Entries gathered from itab before any is formatted (itab's callback
 * runs under its read lock, where no other itab call may be made). */
struct dent {
	uint64_t ino, cookie;
	uint32_t type;
	uint16_t name_len;
	char name[ITAB_NAME_MAX + 1];
};

struct dent_list {
	struct dent *d;
	size_t n, cap;
};

static int collect_cb(void *ctx, const char *name, size_t name_len, uint64_t ino,
		      uint32_t type, uint64_t cookie)
{
	struct dent_list *l = ctx;
	if (name_len > ITAB_NAME_MAX)
		return 0; /* cannot be: itab refuses such names */
	struct dent *d = &l->d[l->n++];
	d->ino = ino;
	d->cookie = cookie;
	d->type = type;
	d->name_len = (uint16_t)name_len;
	memcpy(d->name, name, name_len);
	d->name[name_len] = 0;
	return l->n == l->cap;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       bool plus)
{
	struct sfs *fs = get_fs(req);
	struct itab_attr dir;
	int rc = itab_getattr(fs->itab, ino, &dir);
	if (rc == 0 && !S_ISDIR(dir.mode))
		rc = -ENOTDIR;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* Smallest plain entry is 24 bytes, a plus entry about 150. */
	struct dent_list l = {.cap = size / (plus ? 128 : 24) + 2};
	l.d = malloc(l.cap * sizeof(*l.d));
	char *buf = malloc(size ? size : 1);
	if (!l.d || !buf) {
		free(l.d);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off < 1) {
		l.d[l.n++] = (struct dent){.ino = ino, .cookie = 1, .type = S_IFDIR,
					   .name_len = 1, .name = "."};
	}
	if (off < 2) {
		l.d[l.n++] = (struct dent){.ino = dir.parent ? dir.parent : ino,
					   .cookie = 2, .type = S_IFDIR,
					   .name_len = 2, .name = ".."};
	}
	uint64_t start = off < ITAB_COOKIE_FIRST ? ITAB_COOKIE_FIRST : (uint64_t)off + 1;
	if (l.n < l.cap)
		rc = itab_readdir(fs->itab, ino, start, collect_cb, &l);
	size_t used = 0;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		struct dent *d = &l.d[i];
		bool dots = d->cookie < ITAB_COOKIE_FIRST;
		size_t n;
		if (!plus) {
			struct stat st;
			memset(&st, 0, sizeof(st));
			st.st_ino = d->ino;
			st.st_mode = d->type;
			n = fuse_add_direntry(req, buf + used, size - used, d->name,
					      &st, (off_t)d->cookie);
			if (n > size - used)
				break;
		} else {
			struct fuse_entry_param e;
			struct itab_attr a;
			if (dots) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->ino;
				e.attr.st_mode = d->type;
			} else if (itab_getattr(fs->itab, d->ino, &a) == 0) {
				sfs_fill_entry(fs, &a, &e);
			} else {
				continue; /* removed meanwhile */
			}
			n = fuse_add_direntry_plus(req, buf + used, size - used,
						   d->name, &e, (off_t)d->cookie);
			if (n > size - used)
				break;
			if (!dots)
				sfs_ref(fs, d->ino, 1, 0);
		}
		used += n;
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
	free(l.d);
}

void sfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false);
}

void sfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true);
}

void sfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* Directory changes are committed on a majority before their reply. */
void sfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		  struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}
