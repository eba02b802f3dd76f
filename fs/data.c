/*
 * data.c — file contents: handles, dirty buffers, write, read and flush
 * (see data.h for the contract).
 *
 * Block size. The inode table fixes it at creation; the mount code passes
 * DATA_BLOCK_SIZE (256 KiB, data.h) in itab_config. Measured on the
 * 2-core development VM (shared with other builds, so noisy; two runs
 * each) with throwaway programs:
 *
 *  (a) 256 MiB of random data: SHA-256 (OpenSSL); hash + local store
 *      (blk_put, no fsync); push = hash + one loopback link to a second
 *      store that verifies and stores, 16 requests in flight:
 *
 *   block    sha256          hash+local put             push
 *   64 KiB   1218/1166 MB/s  328/166 MB/s (200-400 us)  142/66 MB/s
 *   256 KiB  1221/1247       432/342      (600-770 us)  151/79
 *   1 MiB    1170/816        485/294      (2.2-3.6 ms)  160/77
 *   4 MiB    1206/859        405/344      (10-12 ms)    130/90
 *
 *  (b) this module end to end, 512 MiB written with 1 MiB data_write()s,
 *      then read back with 128 KiB data_read()s; one node, or two nodes
 *      in one process over loopback links (majority = both):
 *
 *   block    1 node: write / read     2 nodes: write / read
 *   64 KiB   332 / 437 MB/s           56 / 457 MB/s
 *   256 KiB  274 / 652                87 / 661
 *   1 MiB    353 / 550                80 / 563
 *
 * 64 KiB pays a visible per-block cost (file create + rename per block,
 * one frame per block, 16384 extents per GiB). From 256 KiB up the
 * per-block costs vanish into the noise, while larger blocks cost more
 * for every small change: a 4 KiB overwrite is a read-modify-write of a
 * whole block (read, hash, store, push to every voter) and a cold 4 KiB
 * read fetches and verifies a whole block. 256 KiB keeps sequential
 * throughput at the 1 MiB figure with a quarter of that amplification.
 * (Profile of the 2-node run: half of the CPU goes to the link's CRC32C
 * of each frame, computed bytewise on both ends; the block size does not
 * change that.)
 *
 * Write path. A handle keeps its dirty blocks in a sorted array; each
 * block buffer holds 32 bytes of room for the hash, then block_size bytes,
 * of which [lo, hi) were written by the application (a write that leaves
 * a gap to the existing range fills the gap from the committed content at
 * once). A flush completes partial blocks from the committed content
 * (read-modify-write) and hands each block to STORE_THREADS store threads
 * (blk_put writes the hash into the room in front of the data, so the
 * buffer IS the BLOCK_PUT body: no copy): stores are synced, and the disk
 * commits concurrent syncs together. A block is pushed to every other
 * voter once it is hashed, up to PUSH_WINDOW requests in flight per peer:
 * a big block once it is stored (blk_put hashes it; hashing it twice would
 * cost more CPU than the overlap gains), a small one (<= PREHASH_MAX: the
 * single block of a small file's flush) at once, hashed up front, so that
 * its local and remote syncs run at the same time. The flush waits for
 * every local store as well as for the majority. When every block is held
 * by a majority of the voters (self included when self is a voter), one
 * ITAB_OP_WRITE carries all extents. Nothing is proposed on any failure:
 * blocks already stored are then unreferenced and collected later.
 *
 * Blocks are loaded, cached, fetched and served to peers in data_block.c;
 * pushed to a majority and stored locally in data_push.c; applied entries,
 * catch-up and garbage collection are data_bg.c's.
 */
#include "fs/data_internal.h"

/* ---- configuration ------------------------------------------------------- */


/* Majority of the voters of the current configuration: floor(n/2)+1, our
 * own copy counting when this node is a voter. No configuration known
 * (or no link): this node alone. */
void data_peers_get(struct data *d, struct peerset *ps)
{
	memset(ps, 0, sizeof *ps);
	uint64_t ids[RAFT_MAX_NODES];
	bool voter[RAFT_MAX_NODES];
	size_t n = 0;
	if (d->cfg.repl) {
		struct repl_status st;
		repl_status(d->cfg.repl, &st);
		for (uint32_t i = 0; i < st.raft.conf.n && n < RAFT_MAX_NODES;
		     i++) {
			ids[n] = st.raft.conf.nodes[i].id;
			voter[n++] = st.raft.conf.nodes[i].role == RAFT_VOTER;
		}
	} else {
		for (size_t i = 0; i < d->n_voters; i++) {
			ids[n] = d->voters[i];
			voter[n++] = true;
		}
	}
	size_t nv = 0;
	bool self_voter = false;
	for (size_t i = 0; i < n; i++) {
		if (voter[i])
			nv++;
		if (ids[i] == d->cfg.self_id) {
			self_voter = voter[i];
			continue;
		}
		if (!d->link)
			continue;
		ps->others[ps->n_others++] = ids[i];
		if (voter[i])
			ps->voters[ps->n_voters++] = ids[i];
	}
	if (nv == 0 || !d->link) {
		ps->n_voters = 0;
		ps->need = 0;
		return;
	}
	size_t majority = nv / 2 + 1;
	ps->need = majority - (self_voter ? 1 : 0);
}

/* ---- committed extents ----------------------------------------------------- */

struct ext_span {
	uint64_t first;
	size_t n;
	struct itab_extent *e; /* n entries; hash all zero = hole */
};

static int ext_collect(void *ctx, uint64_t index,
		       const uint8_t hash[ITAB_HASH_LEN], uint32_t len)
{
	struct ext_span *s = ctx;
	if (index >= s->first && index - s->first < s->n) {
		struct itab_extent *e = &s->e[index - s->first];
		e->index = index;
		memcpy(e->hash, hash, ITAB_HASH_LEN);
		e->len = len;
	}
	return 0;
}

/* Committed extents of ino for blocks [first, first+n) into e[] (holes
 * zeroed). */
static int extents_get(struct data *d, uint64_t ino, uint64_t first, size_t n,
		       struct itab_extent *e)
{
	memset(e, 0, n * sizeof *e);
	struct ext_span s = {.first = first, .n = n, .e = e};
	return itab_extents(d->cfg.itab, ino, first, n, ext_collect, &s);
}

/* Fill bytes [from, to) of dirty block b with its committed content (zeros
 * where there is none). *clen (may be NULL) gets the committed length. */
static int fill_committed(struct data *d, uint64_t ino, struct dblock *b,
			  uint32_t from, uint32_t to, uint32_t *clen)
{
	struct itab_extent e;
	int rc = extents_get(d, ino, b->index, 1, &e);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	uint32_t len = hash_is_zero(e.hash) ? 0 : e.len;
	if (len > d->bsize)
		len = d->bsize;
	if (clen)
		*clen = len;
	if (from >= to)
		return 0;
	if (len == 0) {
		memset(b->buf + ITAB_HASH_LEN + from, 0, to - from);
		return 0;
	}
	return data_block_read(d, e.hash, len, from, to - from,
			  b->buf + ITAB_HASH_LEN + from);
}

/* ---- dirty blocks of a handle --------------------------------------------- */

/* Position of index in f->blocks (or where it would go). */
static size_t dblock_pos(const struct data_file *f, uint64_t index)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->blocks[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Drop f's dirty blocks (f->mu held, or f unreachable). */
static void dblocks_free(struct data *d, struct data_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->blocks[i].buf);
	free(f->blocks);
	f->blocks = NULL;
	f->n = f->cap = 0;
	if (atomic_exchange(&f->dirty_end, 0) != 0)
		atomic_fetch_sub(&d->n_dirty, 1);
	atomic_store(&f->wtime_ns, 0);
}

/* ---- flush -------------------------------------------------------------------- */

/* Commit f's dirty blocks (caller holds f->mu). On success the dirty state
 * is gone; on failure it is kept (a later flush retries) and nothing was
 * proposed. With if_size, the WRITE applies only while the file's size is
 * *if_size (ITAB_F_IF_SIZE); -EAGAIN when it was not, and then the dirty
 * state is dropped. */
static int flush_cond(struct data *d, struct data_file *f, const uint64_t *if_size)
{
	if (f->n == 0)
		return 0;
	struct itab_attr attr;
	int rc = itab_getattr(d->cfg.itab, f->ino, &attr);
	if (rc < 0) {
		/* The file is gone (freed while open): nothing to write to. */
		LOG(DEBUG, "ino %llu: dropping dirty data: %s",
		    (unsigned long long)f->ino, strerror(-rc));
		dblocks_free(d, f);
		/* Freed by another node (or an orphan release) while open
		 * here: say "stale handle", not "no such file", to close(2). */
		return rc == -ENOENT ? -ESTALE : rc;
	}
	size_t n = f->n;
	struct itab_extent *ext = calloc(n, sizeof *ext);
	uint32_t *lens = calloc(n, sizeof *lens);
	struct peerset ps;
	data_peers_get(d, &ps);
	struct push *p = ext && lens ? data_push_new(&ps, n) : NULL;
	if (!p) {
		free(ext);
		free(lens);
		return -ENOMEM;
	}
	struct timespec dl = mono_deadline(d->cfg.push_timeout_ms);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct dblock *b = &f->blocks[i];
		uint32_t clen = 0;
		/* Read-modify-write: complete a partial block from the
		 * committed content around the written range. */
		if (b->lo > 0 || b->hi < d->bsize) {
			rc = fill_committed(d, f->ino, b, 0, b->lo, &clen);
			if (rc == 0 && clen > b->hi)
				rc = fill_committed(d, f->ino, b, b->hi, clen,
						    NULL);
			if (rc < 0)
				break;
			b->lo = 0;
		}
		uint32_t len = clen > b->hi ? clen : b->hi;
		if (len > b->hi)
			b->hi = len;
		ext[i].index = b->index;
		ext[i].len = len;
		lens[i] = len;
		/* Stored (and hashed) on a store thread; pushed from the
		 * pumps below once stored, in order. */
		data_store_submit(d, p, b->buf, len, i, f->ino);
		pthread_mutex_lock(&p->mu);
		data_push_pump(d, p, f->blocks, lens);
		rc = p->store_err;
		pthread_mutex_unlock(&p->mu);
	}
	if (rc == 0)
		rc = data_push_wait(d, p, f->blocks, lens, &dl);
	data_store_wait(p); /* the jobs use f's buffers */
	data_push_unref(p); /* requests still in flight keep it alive */
	free(lens);
	for (size_t i = 0; rc == 0 && i < n; i++)
		memcpy(ext[i].hash, f->blocks[i].buf, ITAB_HASH_LEN);
	if (rc == 0) {
		int64_t now = atomic_load(&f->wtime_ns);
		if (now == 0)
			now = now_ns(CLOCK_REALTIME);
		struct itab_op op;
		memset(&op, 0, sizeof op);
		op.code = ITAB_OP_WRITE;
		op.ino = f->ino;
		op.now_ns = now;
		op.valid = ITAB_SET_MTIME;
		op.mtime_ns = now;
		/* The table grows the file to at least this size (a truncate
		 * applied meanwhile by someone else is not undone). */
		op.size = atomic_load(&f->dirty_end);
		op.extents = ext;
		op.n_extents = n;
		if (if_size) {
			op.flags |= ITAB_F_IF_SIZE;
			op.rdev = *if_size;
		}
		rc = d->cfg.propose(d->cfg.propose_ctx, &op, NULL);
		if (rc == -ENOENT)
			rc = -ESTALE; /* the inode went away meanwhile */
		if (rc == -EAGAIN && if_size)
			dblocks_free(d, f); /* placed at a size that is gone */
		else if (rc < 0)
			LOG(WARN, "ino %llu: WRITE of %zu blocks failed: %s",
			    (unsigned long long)f->ino, n, strerror(-rc));
	}
	free(ext);
	if (rc == 0)
		dblocks_free(d, f);
	return rc;
}

static int flush_locked(struct data *d, struct data_file *f)
{
	return flush_cond(d, f, NULL);
}

/* ---- handles ---------------------------------------------------------------- */

/* See data.h. */
struct data_file *data_file_open(struct data *d, uint64_t ino)
{
	struct data_file *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	pthread_mutex_init(&f->mu, NULL);
	f->ino = ino;
	f->refs = 1;
	atomic_init(&f->dirty_end, 0);
	atomic_init(&f->wtime_ns, 0);
	atomic_init(&f->ra_pos, 0);
	atomic_init(&f->ra_next, 0);
	pthread_mutex_lock(&d->mu);
	f->next = d->files;
	if (d->files)
		d->files->prev = f;
	d->files = f;
	pthread_mutex_unlock(&d->mu);
	return f;
}

/* Drop a reference (d->mu held by caller); frees at the last one. */
static void file_unref_locked(struct data *d, struct data_file *f)
{
	if (--f->refs > 0)
		return;
	dblocks_free(d, f);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* See data.h. */
int data_file_release(struct data *d, struct data_file *f)
{
	if (!f)
		return 0;
	pthread_mutex_lock(&d->mu);
	if (f->prev)
		f->prev->next = f->next;
	else
		d->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->prev = f->next = NULL;
	pthread_mutex_unlock(&d->mu);

	pthread_mutex_lock(&f->mu);
	int rc = flush_locked(d, f);
	dblocks_free(d, f); /* the handle is gone: unflushable data is lost */
	pthread_mutex_unlock(&f->mu);

	pthread_mutex_lock(&d->mu);
	file_unref_locked(d, f);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

/* See data.h. */
int data_flush(struct data *d, struct data_file *f)
{
	pthread_mutex_lock(&f->mu);
	int rc = flush_locked(d, f);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

/* See data.h. */
int data_flush_if_size(struct data *d, struct data_file *f, uint64_t size)
{
	pthread_mutex_lock(&f->mu);
	int rc = flush_cond(d, f, &size);
	pthread_mutex_unlock(&f->mu);
	return rc;
}

/* See data.h. */
/* Flushes every handle of ino with unflushed bytes except skip (NULL:
 * all of them). */
static int flush_ino_except(struct data *d, uint64_t ino,
			    const struct data_file *skip)
{
	struct data_file **list = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		if (f == skip || f->ino != ino ||
		    atomic_load(&f->dirty_end) == 0)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 4;
			struct data_file **nl =
				realloc(list, nc * sizeof(struct data_file *));
			if (!nl) {
				rc = -ENOMEM;
				break;
			}
			list = nl;
			cap = nc;
		}
		f->refs++;
		list[n++] = f;
	}
	pthread_mutex_unlock(&d->mu);
	for (size_t i = 0; i < n; i++) {
		int r = data_flush(d, list[i]);
		if (r < 0 && rc == 0)
			rc = r;
	}
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < n; i++)
		file_unref_locked(d, list[i]);
	pthread_mutex_unlock(&d->mu);
	free(list);
	return rc;
}

/* See data.h. */
int data_flush_ino(struct data *d, uint64_t ino)
{
	return flush_ino_except(d, ino, NULL);
}

/* See data.h. */
uint64_t data_dirty_size(struct data *d, uint64_t ino)
{
	/* Hot path (every getattr, lookup and readdirplus entry): no handle
	 * holds unflushed bytes, so no need for the lock and the list walk. A
	 * write racing with this is as if the getattr came first. */
	if (atomic_load(&d->n_dirty) == 0)
		return 0;
	uint64_t end = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		uint64_t e = atomic_load(&f->dirty_end);
		if (f->ino == ino && e > end)
			end = e;
	}
	pthread_mutex_unlock(&d->mu);
	if (end == 0)
		return 0;
	struct itab_attr attr;
	if (itab_getattr(d->cfg.itab, ino, &attr) == 0 && attr.size > end)
		end = attr.size;
	return end;
}

/* See data.h. */
int64_t data_dirty_mtime(struct data *d, uint64_t ino)
{
	if (atomic_load(&d->n_dirty) == 0)
		return 0;
	int64_t t = 0;
	pthread_mutex_lock(&d->mu);
	for (struct data_file *f = d->files; f; f = f->next) {
		int64_t w = atomic_load(&f->wtime_ns);
		if (f->ino == ino && w > t)
			t = w;
	}
	pthread_mutex_unlock(&d->mu);
	return t;
}

/* ---- write and read ------------------------------------------------------------ */

/* See data.h. */
ssize_t data_write(struct data *d, struct data_file *f, const char *buf,
		   size_t size, off_t off)
{
	if (off < 0 || (uint64_t)off + size < (uint64_t)off)
		return -EINVAL;
	if (size == 0)
		return 0;
	if (size > (size_t)SSIZE_MAX)
		size = (size_t)SSIZE_MAX;
	pthread_mutex_lock(&f->mu);
	int rc = 0;
	/* Flush first if this write would overrun the buffer: an error then
	 * belongs to the bytes already buffered, and this write reports it. */
	uint64_t first = (uint64_t)off / d->bsize;
	uint64_t last = ((uint64_t)off + size - 1) / d->bsize;
	size_t add = (size_t)(last - first + 1);
	if (f->n > 0 && ((f->n + add) * (size_t)d->bsize > d->dirty_max ||
			 f->n + add > ITAB_MAX_EXTENTS))
		rc = flush_locked(d, f);
	size_t done = 0;
	while (rc == 0 && done < size) {
		uint64_t pos = (uint64_t)off + done;
		uint64_t idx = pos / d->bsize;
		uint32_t in = (uint32_t)(pos % d->bsize);
		uint32_t k = d->bsize - in;
		if (k > size - done)
			k = (uint32_t)(size - done);
		size_t at = dblock_pos(f, idx);
		struct dblock *b;
		if (at < f->n && f->blocks[at].index == idx) {
			b = &f->blocks[at];
			/* A gap between the valid range and this write is
			 * filled from the committed content now. */
			if (in > b->hi)
				rc = fill_committed(d, f->ino, b, b->hi, in,
						    NULL);
			else if (in + k < b->lo)
				rc = fill_committed(d, f->ino, b, in + k,
						    b->lo, NULL);
			if (rc < 0)
				break;
		} else {
			if (f->n == f->cap) {
				size_t nc = f->cap ? f->cap * 2 : 16;
				struct dblock *nb =
					realloc(f->blocks, nc * sizeof *nb);
				if (!nb) {
					rc = -ENOMEM;
					break;
				}
				f->blocks = nb;
				f->cap = nc;
			}
			uint8_t *mem = malloc(ITAB_HASH_LEN + (size_t)d->bsize);
			if (!mem) {
				rc = -ENOMEM;
				break;
			}
			memmove(&f->blocks[at + 1], &f->blocks[at],
				(f->n - at) * sizeof *f->blocks);
			f->n++;
			b = &f->blocks[at];
			b->index = idx;
			b->buf = mem;
			b->lo = in;
			b->hi = in + k;
		}
		memcpy(b->buf + ITAB_HASH_LEN + in, buf + done, k);
		if (in < b->lo)
			b->lo = in;
		if (in + k > b->hi)
			b->hi = in + k;
		done += k;
	}
	if (done > 0) {
		uint64_t end = (uint64_t)off + done;
		uint64_t old = atomic_load(&f->dirty_end);
		if (end > old)
			atomic_store(&f->dirty_end, end);
		if (old == 0)
			atomic_fetch_add(&d->n_dirty, 1);
		atomic_store(&f->wtime_ns, now_ns(CLOCK_REALTIME));
	}
	pthread_mutex_unlock(&f->mu);
	if (done > 0)
		return (ssize_t)done;
	return rc;
}

/* A read of [off, off+size) of a file of end bytes through handle h: if
 * it continues the handle's previous read (give or take two blocks, as the
 * kernel's parallel read-ahead requests arrive slightly out of order),
 * queue the blocks of this read after its first one (loaded in parallel
 * with it) and the next RA_BLOCKS committed blocks, those not queued
 * yet. */
static void read_ahead(struct data *d, struct data_file *h, uint64_t ino,
		       uint64_t off, size_t size, uint64_t end)
{
	uint64_t prev = atomic_exchange(&h->ra_pos, off + size);
	uint64_t slack = 2 * (uint64_t)d->bsize;
	if (off + slack < prev || off > prev + slack) {
		atomic_store(&h->ra_next, 0); /* a jump: start over */
		return;
	}
	uint64_t first = off / d->bsize;
	uint64_t last = (off + size - 1) / d->bsize;
	uint64_t lim = last + RA_BLOCKS; /* last block to read ahead */
	uint64_t eof_blk = (end - 1) / d->bsize;
	if (lim > eof_blk)
		lim = eof_blk;
	uint64_t from = atomic_load(&h->ra_next);
	if (from <= first)
		from = first + 1;
	if (from > lim)
		return;
	if (lim - from + 1 > RA_QUEUE)
		from = lim + 1 - RA_QUEUE;
	atomic_store(&h->ra_next, lim + 1);
	struct itab_extent e[RA_QUEUE];
	size_t n = (size_t)(lim - from + 1);
	if (extents_get(d, ino, from, n, e) == 0)
		data_ra_queue(d, e, n);
}

/* See data.h. */
ssize_t data_read(struct data *d, struct data_file *f, uint64_t ino,
		  char *buf, size_t size, off_t off)
{
	if (off < 0)
		return -EINVAL;
	if (size == 0)
		return 0;
	/* A read sees what any descriptor of this node wrote (POSIX): bytes
	 * another handle of the file still buffers are committed first
	 * (git's index-pack reads its pack through a second descriptor
	 * while writing it through the first). */
	if (atomic_load(&d->n_dirty) != 0) {
		int frc = flush_ino_except(d, ino, f);
		if (frc < 0)
			return frc;
	}
	struct itab_attr attr;
	int rc = itab_getattr(d->cfg.itab, ino, &attr);
	if (rc < 0)
		return rc;
	struct data_file *h = f; /* for read-ahead */
	/* Only a handle with unflushed bytes needs its lock (to lay them
	 * over); parallel reads of a clean handle (kernel readahead) do not
	 * serialize on it. */
	if (f && atomic_load(&f->dirty_end) == 0)
		f = NULL;
	if (f)
		pthread_mutex_lock(&f->mu);
	uint64_t end = attr.size;
	uint64_t dend = f ? atomic_load(&f->dirty_end) : 0;
	if (dend > end)
		end = dend;
	if ((uint64_t)off >= end) {
		if (f)
			pthread_mutex_unlock(&f->mu);
		return 0;
	}
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	if (size > (size_t)SSIZE_MAX)
		size = (size_t)SSIZE_MAX;
	uint64_t first = (uint64_t)off / d->bsize;
	uint64_t last = ((uint64_t)off + size - 1) / d->bsize;
	size_t nb = (size_t)(last - first + 1);
	struct itab_extent one, *ext = nb == 1 ? &one : calloc(nb, sizeof *ext);
	if (!ext) {
		rc = -ENOMEM;
		goto out;
	}
	rc = extents_get(d, ino, first, nb, ext);
	if (rc == -ENOENT)
		rc = 0; /* no extents: all holes (dirty bytes still count) */
	if (rc == 0 && h)
		read_ahead(d, h, ino, (uint64_t)off, size, end);
	for (size_t i = 0; i < nb && rc == 0; i++) {
		uint64_t bstart = (first + i) * d->bsize;
		uint64_t from = bstart > (uint64_t)off ? bstart : (uint64_t)off;
		uint64_t to = bstart + d->bsize;
		if (to > (uint64_t)off + size)
			to = (uint64_t)off + size;
		char *dst = buf + (from - (uint64_t)off);
		if (hash_is_zero(ext[i].hash))
			memset(dst, 0, to - from);
		else
			rc = data_block_read(d, ext[i].hash, ext[i].len,
					(uint32_t)(from - bstart),
					(uint32_t)(to - from), (uint8_t *)dst);
	}
	if (ext != &one)
		free(ext);
	/* This handle's unflushed bytes win. */
	if (rc == 0 && f) {
		for (size_t i = dblock_pos(f, first);
		     i < f->n && f->blocks[i].index <= last; i++) {
			const struct dblock *b = &f->blocks[i];
			uint64_t bstart = b->index * d->bsize;
			uint64_t from = bstart + b->lo, to = bstart + b->hi;
			if (from < (uint64_t)off)
				from = (uint64_t)off;
			if (to > (uint64_t)off + size)
				to = (uint64_t)off + size;
			if (from < to)
				memcpy(buf + (from - (uint64_t)off),
				       b->buf + ITAB_HASH_LEN + (from - bstart),
				       to - from);
		}
	}
out:
	if (f)
		pthread_mutex_unlock(&f->mu);
	return rc < 0 ? rc : (ssize_t)size;
}

/* ---- start / stop / statfs ------------------------------------------------------ */

/* Stop and join the store threads (no flush is running: nothing queued). */
static void store_join(struct data *d)
{
	pthread_mutex_lock(&d->store_mu);
	d->store_stop = true;
	pthread_cond_broadcast(&d->store_cv);
	pthread_mutex_unlock(&d->store_mu);
	for (unsigned i = 0; i < d->n_store_threads; i++)
		pthread_join(d->store_threads[i], NULL);
	d->n_store_threads = 0;
	pthread_mutex_destroy(&d->store_mu);
	pthread_cond_destroy(&d->store_cv);
}

/* Stop and join the read-ahead thread. */
static void ra_join(struct data *d)
{
	pthread_mutex_lock(&d->cache_mu);
	d->ra_stop = true;
	pthread_cond_broadcast(&d->cache_cv);
	pthread_mutex_unlock(&d->cache_mu);
	for (unsigned i = 0; i < d->n_ra_threads; i++)
		pthread_join(d->ra_threads[i], NULL);
	d->n_ra_threads = 0;
}

/* See data.h. */
int data_start(const struct data_cfg *cfg, struct data **out, char *err,
	       size_t errcap)
{
	*out = NULL;
	if (!cfg->itab || !cfg->blocks_dir || !cfg->propose) {
		snprintf(err, errcap, "data: itab, blocks_dir and propose "
				      "are required");
		return -EINVAL;
	}
	struct data *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	if (!d->cfg.push_timeout_ms)
		d->cfg.push_timeout_ms = PUSH_TIMEOUT_DEFAULT_MS;
	if (!d->cfg.gc_interval_ms)
		d->cfg.gc_interval_ms = GC_INTERVAL_DEFAULT_MS;
	if (!d->cfg.gc_grace_ms)
		d->cfg.gc_grace_ms = GC_GRACE_DEFAULT_MS;
	d->dirty_max = cfg->dirty_max ? cfg->dirty_max : DIRTY_MAX_DEFAULT;
	d->bsize = itab_block_size(cfg->itab);
	if (d->bsize == 0)
		d->bsize = ITAB_DEFAULT_BLOCK_SIZE;
	if (cfg->repl) {
		d->link = repl_link(cfg->repl);
	} else {
		d->link = cfg->link;
		if (cfg->n_voters > RAFT_MAX_NODES) {
			snprintf(err, errcap, "data: too many voters");
			free(d);
			return -EINVAL;
		}
		if (cfg->n_voters)
			memcpy(d->voters, cfg->voters,
			       cfg->n_voters * sizeof *cfg->voters);
		d->n_voters = cfg->n_voters;
	}
	d->cfg.voters = NULL;
	/* Blocks are synced when stored (here and on the peers that answer a
	 * BLOCK_PUT), so a flush/fsync that saw a majority of copies survives
	 * a power loss of those machines, not just a process crash. */
	int rc = blk_open(cfg->blocks_dir, BLK_SYNC, &d->bs, err, errcap);
	if (rc < 0) {
		free(d);
		return rc;
	}
	for (unsigned i = 0; i < CACHE_SLOTS; i++) {
		d->cache[i].buf = data_block_buf_alloc(d);
		if (!d->cache[i].buf)
			rc = -ENOMEM;
	}
	pthread_mutex_init(&d->mu, NULL);
	cond_init_mono(&d->cv);
	pthread_mutex_init(&d->cache_mu, NULL);
	pthread_mutex_init(&d->recent_mu, NULL);
	atomic_init(&d->quit, false);
	atomic_init(&d->n_dirty, 0);
	cond_init_mono(&d->cache_cv);
	pthread_mutex_init(&d->store_mu, NULL);
	pthread_cond_init(&d->store_cv, NULL);
	for (unsigned i = 0; rc == 0 && i < STORE_THREADS; i++) {
		if (pthread_create(&d->store_threads[i], NULL, data_store_main, d))
			break; /* fewer threads (none: flushes store inline) */
		d->n_store_threads++;
	}
	bool ra_started = false;
	if (rc == 0) {
		rc = -pthread_create(&d->ra_threads[0], NULL, data_ra_main, d);
		d->n_ra_threads = rc == 0;
		for (unsigned i = 1; rc == 0 && i < RA_THREADS; i++)
			if (pthread_create(&d->ra_threads[i], NULL, data_ra_main,
					   d) == 0)
				d->n_ra_threads++;
		ra_started = rc == 0;
	}
	if (rc == 0)
		rc = -pthread_create(&d->worker, NULL, data_worker_main, d);
	if (rc < 0)
		snprintf(err, errcap, "data: cannot start thread");
	if (rc < 0 && ra_started)
		ra_join(d);
	if (rc < 0)
		store_join(d);
	if (rc < 0) {
		pthread_cond_destroy(&d->cache_cv);
		for (unsigned i = 0; i < CACHE_SLOTS; i++)
			free(d->cache[i].buf);
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv);
		pthread_mutex_destroy(&d->cache_mu);
		pthread_mutex_destroy(&d->recent_mu);
		blk_close(d->bs);
		free(d);
		return rc;
	}
	if (cfg->repl)
		repl_set_request_handler(cfg->repl, data_handle_request, d);
	LOG(INFO, "data: block size %u, blocks in %s", d->bsize,
	    cfg->blocks_dir);
	*out = d;
	return 0;
}

/* See data.h. */
void data_stop(struct data *d)
{
	if (!d)
		return;
	if (d->cfg.repl)
		repl_set_request_handler(d->cfg.repl, NULL, NULL);
	atomic_store(&d->quit, true);
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	while (d->handlers > 0)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->worker, NULL);
	ra_join(d);
	store_join(d);
	while (d->files) {
		struct data_file *f = d->files;
		d->files = f->next;
		dblocks_free(d, f);
		pthread_mutex_destroy(&f->mu);
		free(f);
	}
	free(d->q);
	data_recent_prune(d, true);
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		free(d->cache[i].buf);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->cache_mu);
	pthread_cond_destroy(&d->cache_cv);
	pthread_mutex_destroy(&d->recent_mu);
	blk_close(d->bs);
	free(d);
}

/* See data.h. */
int data_statfs(struct data *d, uint64_t *total, uint64_t *avail)
{
	return blk_stats(d->bs, total, avail);
}

