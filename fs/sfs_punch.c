/*
 * sfs_punch.c — fallocate's FALLOC_FL_PUNCH_HOLE and FALLOC_FL_ZERO_RANGE.
 *
 * Both make a byte range read as zeros. Whole blocks inside the range
 * become holes: one WRITE entry whose extents carry the zero hash (the
 * inode table deletes those extents and drops their blocks' references),
 * only for blocks that hold data. The partial blocks at either edge get
 * zeros written through the file's data buffer, like a write(2). With
 * FALLOC_FL_KEEP_SIZE (always so for PUNCH_HOLE, as Linux requires) the
 * size does not change and nothing past it is touched; ZERO_RANGE without
 * it extends the file to the end of the range.
 *
 * This node's buffered writes to the file are committed first, so none
 * lands on the range afterwards; the kernel drops its cached pages of the
 * range itself once the call succeeds, and other nodes drop theirs when
 * they apply the WRITE (as for any write).
 */
#include "fs/sfs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct punch_list {
	uint64_t *idx;
	size_t n, cap;
	int err;
};

/* itab_extents callback: collect the indexes of blocks holding data. */
static int punch_collect(void *ctx, uint64_t index,
			 const uint8_t hash[ITAB_HASH_LEN], uint32_t len)
{
	struct punch_list *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint64_t *n = realloc(l->idx, cap * sizeof(*n));
		if (!n) {
			l->err = -ENOMEM;
			return 1;
		}
		l->idx = n;
		l->cap = cap;
	}
	l->idx[l->n++] = index;
	return 0;
}

/* Make the blocks [first, last) of ino holes. 0 or a negative errno. */
static int punch_blocks(struct sfs *fs, fuse_req_t req, uint64_t ino,
			uint64_t first, uint64_t last)
{
	struct punch_list l = {0};
	int rc = itab_extents(fs->itab, ino, first, last - first,
			      punch_collect, &l);
	if (rc == 0)
		rc = l.err;
	struct itab_extent *ext = NULL;
	if (rc == 0 && l.n) {
		size_t chunk = l.n < ITAB_MAX_EXTENTS ? l.n : ITAB_MAX_EXTENTS;
		ext = calloc(chunk, sizeof(*ext));
		if (!ext)
			rc = -ENOMEM;
	}
	for (size_t done = 0; rc == 0 && done < l.n;) {
		size_t k = l.n - done < ITAB_MAX_EXTENTS ? l.n - done
							 : ITAB_MAX_EXTENTS;
		for (size_t i = 0; i < k; i++) /* hash all zero: a hole */
			ext[i].index = l.idx[done + i];
		struct itab_op op = {.code = ITAB_OP_WRITE, .ino = ino,
				     .extents = ext, .n_extents = k};
		sfs_stamp(req, &op);
		rc = fsm_propose_sync(fs->fsm, &op, NULL);
		done += k;
	}
	free(ext);
	free(l.idx);
	return rc;
}

/* Write zeros over [from, to) through the file's buffer. */
static int zero_bytes(struct sfs *fs, struct data_file *df, uint64_t from,
		      uint64_t to)
{
	static const char zeros[65536];
	while (from < to) {
		size_t k = to - from < sizeof(zeros) ? (size_t)(to - from)
						     : sizeof(zeros);
		ssize_t n = data_write(fs->data, df, zeros, k, (off_t)from);
		if (n < 0)
			return (int)n;
		from += (uint64_t)n;
	}
	return 0;
}

int sfs_zero_range(struct sfs *fs, fuse_req_t req, uint64_t ino, int mode,
		   uint64_t off, uint64_t len, struct data_file *df)
{
	bool keep = (mode & FALLOC_FL_KEEP_SIZE) != 0;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !keep)
		return -EOPNOTSUPP; /* as Linux: a hole never changes the size */
	if (!fs->data || !df)
		return -EIO;
	uint64_t end = off + len;
	int rc = data_flush_ino(fs->data, ino);
	struct itab_attr a;
	if (rc == 0)
		rc = itab_getattr(fs->itab, ino, &a);
	if (rc)
		return rc;
	uint64_t size = a.size;
	uint64_t zend = keep && end > size ? size : end;
	if (off < zend) {
		uint64_t bs = itab_block_size(fs->itab);
		/* Bytes past the size read as zeros already, so the block
		 * holding the end of the file counts as whole when the
		 * range reaches the end. */
		uint64_t hole_end = zend;
		if (zend >= size && hole_end < (size + bs - 1) / bs * bs)
			hole_end = (size + bs - 1) / bs * bs;
		uint64_t first = (off + bs - 1) / bs, last = hole_end / bs;
		if (first < last) {
			rc = punch_blocks(fs, req, ino, first, last);
			if (rc == 0 && off < first * bs)
				rc = zero_bytes(fs, df, off, first * bs);
			uint64_t tail = last * bs;
			if (rc == 0 && tail < zend)
				rc = zero_bytes(fs, df, tail, zend);
		} else {
			rc = zero_bytes(fs, df, off, zend);
		}
		if (rc == 0)
			rc = data_flush(fs->data, df);
	}
	if (rc == 0 && !keep && end > size) {
		/* ZERO_RANGE past the end: the file ends at the range's end
		 * (zero_bytes may have got there already) */
		rc = itab_getattr(fs->itab, ino, &a);
		if (rc == 0 && a.size < end) {
			struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = ino,
					     .valid = ITAB_SET_SIZE, .size = end};
			sfs_stamp(req, &op);
			rc = fsm_propose_sync(fs->fsm, &op, NULL);
		}
	}
	return rc;
}
