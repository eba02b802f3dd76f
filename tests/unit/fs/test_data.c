/*
 * Unit tests of fs/data.c over a real inode table and real block stores.
 * The "proposal" of a WRITE is applied directly to the node's itab (and,
 * in the two-node tests, to the peer's itab too, as replication would);
 * the two-node tests use real links on loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fs/data.h"
#include "fs/itab.h"
#include "storage/blk.h"
#include "transport/link.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BS 65536u /* block size of the test tables */

struct tnode {
	char dir[64];
	uint64_t id;
	struct itab *itab;
	struct data *d;
	struct link *link;
	struct blk_store *bs; /* a second view of the node's block store */
	uint64_t index;       /* last applied log index */
	struct tnode *peer;   /* replicate every applied entry to it */
	int proposals;        /* WRITEs proposed through this node */
};

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

/* Apply one encoded entry on n (decoding it for data_applied). */
static int apply_entry(struct tnode *n, const uint8_t *buf, size_t len,
		       struct itab_attr *attr, uint64_t *ino)
{
	struct itab_op op;
	assert_int_equal(itab_op_decode(buf, len, &op), 0);
	struct itab_result res;
	assert_int_equal(itab_apply(n->itab, ++n->index, buf, len, &res), 0);
	if (n->d)
		data_applied(n->d, &op, &res);
	itab_op_release(&op);
	if (attr)
		*attr = res.attr;
	if (ino)
		*ino = res.ino;
	return res.err;
}

/* Apply op on n and on its peer; returns the op's result on n. */
static int apply_op(struct tnode *n, const struct itab_op *op,
		    struct itab_attr *attr, uint64_t *ino)
{
	size_t sz = itab_op_encoded_size(op);
	assert_true(sz > 0);
	uint8_t *buf = malloc(sz);
	long len = itab_op_encode(op, buf, sz);
	assert_true(len > 0);
	int rc = apply_entry(n, buf, (size_t)len, attr, ino);
	if (n->peer)
		apply_entry(n->peer, buf, (size_t)len, NULL, NULL);
	free(buf);
	return rc;
}

/* data_propose_fn: "commit" by applying locally (and on the peer). */
static int propose(void *ctx, const struct itab_op *op,
		   struct itab_attr *attr)
{
	struct tnode *n = ctx;
	n->proposals++;
	return apply_op(n, op, attr, NULL);
}

/* Route BLOCK_* requests arriving on a test link to the node's data. */
static void on_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	struct tnode *n = ctx;
	if (f->type == WIRE_REQUEST && __atomic_load_n(&n->d, __ATOMIC_ACQUIRE))
		data_handle_request(n->d, from, f->req_id, f->kind, f->body,
				    f->body_len);
}

/* Create the node's dirs, itab and (with_link) a loopback link. */
static void node_init(struct tnode *n, uint64_t id, bool with_link)
{
	memset(n, 0, sizeof *n);
	n->id = id;
	snprintf(n->dir, sizeof n->dir, "/tmp/data-test-XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	char p[128];
	snprintf(p, sizeof p, "%s/itab", n->dir);
	struct itab_config ic = {.block_size = BS};
	assert_int_equal(itab_open(p, &ic, &n->itab), 0);
	if (with_link) {
		char err[256];
		struct link_cfg lc = {.self_id = id,
				      .listen_addr = "tcp://127.0.0.1:0",
				      .cluster_id = 77,
				      .on_frame = on_frame,
				      .ctx = n};
		assert_int_equal(link_start(&lc, &n->link, err, sizeof err), 0);
	}
}

static void node_start_gc(struct tnode *n, const uint64_t *voters, size_t nv,
			  uint32_t gc_grace_ms);

/* Start the data module on n with the given voters (NULL: self only). */
static void node_start(struct tnode *n, const uint64_t *voters, size_t nv)
{
	node_start_gc(n, voters, nv, 1); /* tests: blocks are old after 1 ms */
}

/* The same with another GC grace (the periodic scan stays at 5 min). */
static void node_start_gc(struct tnode *n, const uint64_t *voters, size_t nv,
			  uint32_t gc_grace_ms)
{
	char p[128], err[256];
	snprintf(p, sizeof p, "%s/blocks", n->dir);
	struct data_cfg cfg = {
		.itab = n->itab,
		.blocks_dir = p,
		.self_id = n->id,
		.dirty_max = 8 * BS,
		.propose = propose,
		.propose_ctx = n,
		.push_timeout_ms = 3000,
		.gc_grace_ms = gc_grace_ms,
		.link = n->link,
		.voters = voters,
		.n_voters = nv,
	};
	struct data *d;
	assert_int_equal(data_start(&cfg, &d, err, sizeof err), 0);
	__atomic_store_n(&n->d, d, __ATOMIC_RELEASE);
	assert_int_equal(blk_open(p, 0, &n->bs, err, sizeof err), 0);
}

static void node_free(struct tnode *n)
{
	if (n->link)
		link_stop(n->link); /* no more requests into data */
	data_stop(n->d);
	blk_close(n->bs);
	itab_close(n->itab);
	nftw(n->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Connect two nodes' links both ways. */
static void link_pair(struct tnode *a, struct tnode *b)
{
	char aa[128], ab[128];
	assert_int_equal(link_listen_addr(a->link, aa, sizeof aa), 0);
	assert_int_equal(link_listen_addr(b->link, ab, sizeof ab), 0);
	assert_int_equal(link_add_peer(a->link, b->id, ab), 0);
	assert_int_equal(link_add_peer(b->link, a->id, aa), 0);
	a->peer = b;
	b->peer = a;
}

static uint64_t create_file(struct tnode *n, const char *name)
{
	struct itab_op op = {.code = ITAB_OP_CREATE,
			     .parent = ITAB_ROOT_INO,
			     .name = name,
			     .name_len = strlen(name),
			     .mode = S_IFREG | 0644,
			     .now_ns = 1};
	uint64_t ino = 0;
	assert_int_equal(apply_op(n, &op, NULL, &ino), 0);
	assert_true(ino > 1);
	return ino;
}

static void fill_random(uint8_t *p, size_t n, unsigned *seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rand_r(seed) >> 7);
}

static unsigned test_seed(void)
{
	const char *s = getenv("SEED");
	unsigned seed = s ? (unsigned)strtoul(s, NULL, 0) : (unsigned)time(NULL);
	printf("seed %u (replay with SEED=%u)\n", seed, seed);
	return seed;
}

/* Read [off, off+len) of ino through a fresh handle into a new buffer. */
static uint8_t *read_all(struct tnode *n, uint64_t ino, size_t len, off_t off,
			 ssize_t *got)
{
	uint8_t *buf = malloc(len + 1);
	struct data_file *f = data_file_open(n->d, ino);
	*got = data_read(n->d, f, ino, (char *)buf, len, off);
	assert_int_equal(data_file_release(n->d, f), 0);
	return buf;
}

static uint64_t file_size(struct tnode *n, uint64_t ino)
{
	struct itab_attr a;
	assert_int_equal(itab_getattr(n->itab, ino, &a), 0);
	return a.size;
}

struct ext_list {
	size_t n;
	struct itab_extent e[64];
};

static int ext_cb(void *ctx, uint64_t index, const uint8_t hash[ITAB_HASH_LEN],
		  uint32_t len)
{
	struct ext_list *l = ctx;
	if (l->n < 64) {
		l->e[l->n].index = index;
		memcpy(l->e[l->n].hash, hash, ITAB_HASH_LEN);
		l->e[l->n].len = len;
		l->n++;
	}
	return 0;
}

static void extents_of(struct tnode *n, uint64_t ino, struct ext_list *l)
{
	memset(l, 0, sizeof *l);
	assert_int_equal(itab_extents(n->itab, ino, 0, UINT64_MAX / 2, ext_cb, l),
			 0);
}

/* Overwrite the first bytes of a stored block file (same size). */
static void corrupt_block(struct tnode *n, const uint8_t hash[ITAB_HASH_LEN])
{
	char hex[BLK_HEX_LEN + 1], p[256];
	blk_hex(hash, hex);
	snprintf(p, sizeof p, "%s/blocks/%.2s/%s", n->dir, hex, hex);
	int fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "CORRUPT!", 8, 0), 8);
	close(fd);
}

/* ---- single node -------------------------------------------------------- */

static void write_flush_read_round_trips_bytes_and_size(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "f");

	size_t len = 3 * BS + 1234;
	uint8_t *src = malloc(len);
	fill_random(src, len, &seed);
	struct data_file *f = data_file_open(n.d, ino);
	/* Uneven write sizes, in order. */
	for (size_t off = 0; off < len;) {
		size_t k = 1 + (size_t)rand_r(&seed) % 50000;
		if (k > len - off)
			k = len - off;
		assert_int_equal(data_write(n.d, f, (const char *)src + off, k,
					    (off_t)off),
				 (ssize_t)k);
		off += k;
	}
	/* Before the flush: the handle reads its own bytes, getattr size
	 * includes them, nothing is committed yet. */
	assert_int_equal(data_dirty_size(n.d, ino), len);
	assert_int_equal(file_size(&n, ino), 0);
	uint8_t *buf = malloc(len);
	assert_int_equal(data_read(n.d, f, ino, (char *)buf, len, 0),
			 (ssize_t)len);
	assert_memory_equal(buf, src, len);

	assert_int_equal(data_flush(n.d, f), 0);
	assert_int_equal(n.proposals, 1); /* one WRITE for all blocks */
	assert_int_equal(data_dirty_size(n.d, ino), 0);
	assert_int_equal(file_size(&n, ino), len);
	assert_int_equal(data_file_release(n.d, f), 0);
	assert_int_equal(n.proposals, 1); /* nothing left to flush */

	struct ext_list l;
	extents_of(&n, ino, &l);
	assert_int_equal(l.n, 4);
	for (size_t i = 0; i < l.n; i++) {
		assert_int_equal(l.e[i].index, i);
		assert_int_equal(l.e[i].len, i < 3 ? BS : 1234);
		assert_int_equal(blk_has(n.bs, l.e[i].hash), 1);
	}

	ssize_t got;
	uint8_t *rd = read_all(&n, ino, len + 100, 0, &got);
	assert_int_equal(got, (ssize_t)len); /* short at EOF */
	assert_memory_equal(rd, src, len);
	free(rd);
	/* An unaligned read in the middle. */
	rd = read_all(&n, ino, BS, BS / 2 + 7, &got);
	assert_int_equal(got, BS);
	assert_memory_equal(rd, src + BS / 2 + 7, BS);
	free(rd);
	rd = read_all(&n, ino, 10, (off_t)len, &got);
	assert_int_equal(got, 0); /* at EOF */
	free(rd);

	free(buf);
	free(src);
	node_free(&n);
}

static void partial_block_overwrite_merges_committed_content(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "rmw");

	size_t len = 2 * BS + 500;
	uint8_t *model = malloc(len);
	fill_random(model, len, &seed);
	struct data_file *f = data_file_open(n.d, ino);
	assert_int_equal(data_write(n.d, f, (const char *)model, len, 0),
			 (ssize_t)len);
	assert_int_equal(data_file_release(n.d, f), 0);

	/* Through a new handle: a write straddling blocks 0/1, and two
	 * separate small writes inside block 2 (leaving a gap between
	 * them that must come from the committed block). */
	uint8_t patch[300];
	fill_random(patch, sizeof patch, &seed);
	f = data_file_open(n.d, ino);
	assert_int_equal(data_write(n.d, f, (const char *)patch, 100, BS - 50),
			 100);
	memcpy(model + BS - 50, patch, 100);
	assert_int_equal(data_write(n.d, f, (const char *)patch + 100, 10,
				    2 * BS + 10),
			 10);
	memcpy(model + 2 * BS + 10, patch + 100, 10);
	assert_int_equal(data_write(n.d, f, (const char *)patch + 200, 20,
				    2 * BS + 300),
			 20);
	memcpy(model + 2 * BS + 300, patch + 200, 20);
	/* The dirty overlay already shows the merged picture. */
	uint8_t *buf = malloc(len);
	assert_int_equal(data_read(n.d, f, ino, (char *)buf, len, 0),
			 (ssize_t)len);
	assert_memory_equal(buf, model, len);
	assert_int_equal(data_file_release(n.d, f), 0);

	ssize_t got;
	uint8_t *rd = read_all(&n, ino, len, 0, &got);
	assert_int_equal(got, (ssize_t)len);
	assert_memory_equal(rd, model, len);
	assert_int_equal(file_size(&n, ino), len); /* did not grow */
	struct ext_list l;
	extents_of(&n, ino, &l);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.e[2].len, 500); /* tail block keeps its length */
	free(rd);
	free(buf);
	free(model);
	node_free(&n);
}

static void sparse_regions_are_holes_that_read_zeros(void **state)
{
	(void)state;
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "sparse");
	struct data_file *f = data_file_open(n.d, ino);
	uint64_t off = 10 * (uint64_t)BS + 5;
	assert_int_equal(data_write(n.d, f, "hello", 5, (off_t)off), 5);
	assert_int_equal(data_file_release(n.d, f), 0);

	assert_int_equal(file_size(&n, ino), off + 5);
	struct ext_list l;
	extents_of(&n, ino, &l);
	assert_int_equal(l.n, 1); /* only the written block is stored */
	assert_int_equal(l.e[0].index, 10);
	assert_int_equal(l.e[0].len, 10);

	ssize_t got;
	size_t len = (size_t)off + 5;
	uint8_t *rd = read_all(&n, ino, len, 0, &got);
	assert_int_equal(got, (ssize_t)len);
	for (size_t i = 0; i < off; i++)
		if (rd[i] != 0)
			fail_msg("byte %zu of the hole is %u", i, rd[i]);
	assert_memory_equal(rd + off, "hello", 5);
	free(rd);
	node_free(&n);
}

static void truncate_then_grow_reads_zeros_and_frees_blocks(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "trunc");
	size_t len = 3 * BS;
	uint8_t *src = malloc(len);
	fill_random(src, len, &seed);
	struct data_file *f = data_file_open(n.d, ino);
	assert_int_equal(data_write(n.d, f, (const char *)src, len, 0),
			 (ssize_t)len);
	assert_int_equal(data_flush(n.d, f), 0);
	struct ext_list l;
	extents_of(&n, ino, &l);
	assert_int_equal(l.n, 3);

	/* Unflushed bytes are flushed before the truncate (as setattr does). */
	assert_int_equal(data_write(n.d, f, "xyz", 3, 5), 3);
	memcpy(src + 5, "xyz", 3);
	assert_int_equal(data_flush_ino(n.d, ino), 0);
	assert_int_equal(data_dirty_size(n.d, ino), 0);

	struct itab_op op = {.code = ITAB_OP_SETATTR,
			     .ino = ino,
			     .valid = ITAB_SET_SIZE,
			     .size = BS + 10,
			     .now_ns = 2};
	/* Blocks stored within the grace period (1 ms here) are kept even
	 * at refcount 0 (a flush may be reusing them): age them first. */
	usleep(5000);
	assert_int_equal(apply_op(&n, &op, NULL, NULL), 0);
	op.size = 3 * BS; /* grow again: no old bytes may show */
	assert_int_equal(apply_op(&n, &op, NULL, NULL), 0);
	ssize_t got;
	uint8_t *rd = read_all(&n, ino, len, 0, &got);
	assert_int_equal(got, (ssize_t)len);
	assert_memory_equal(rd, src, BS + 10);
	for (size_t i = BS + 10; i < len; i++)
		if (rd[i] != 0)
			fail_msg("byte %zu after truncate+grow is %u", i, rd[i]);
	free(rd);

	/* Block 2 lost its last reference: deleted in the background. */
	data_drain(n.d);
	struct ext_list after;
	extents_of(&n, ino, &after);
	assert_int_equal(blk_has(n.bs, l.e[2].hash), 0);
	assert_int_equal(blk_has(n.bs, after.e[0].hash), 1);
	assert_int_equal(data_file_release(n.d, f), 0);
	free(src);
	node_free(&n);
}

static void unreferenced_blocks_are_deleted_shared_ones_kept(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t a = create_file(&n, "a"), b = create_file(&n, "b");
	uint8_t *src = malloc(2 * BS);
	fill_random(src, 2 * BS, &seed);
	/* a = blocks X Y, b = block X (same content: one stored block). */
	struct data_file *f = data_file_open(n.d, a);
	assert_int_equal(data_write(n.d, f, (const char *)src, 2 * BS, 0),
			 (ssize_t)(2 * BS));
	assert_int_equal(data_file_release(n.d, f), 0);
	f = data_file_open(n.d, b);
	assert_int_equal(data_write(n.d, f, (const char *)src, BS, 0), BS);
	assert_int_equal(data_file_release(n.d, f), 0);
	struct ext_list la;
	extents_of(&n, a, &la);
	assert_int_equal(la.n, 2);
	assert_int_equal(itab_block_refs(n.itab, la.e[0].hash), 2);

	struct itab_op op = {.code = ITAB_OP_UNLINK,
			     .parent = ITAB_ROOT_INO,
			     .name = "a",
			     .name_len = 1,
			     .flags = ITAB_F_FREE_NOW,
			     .now_ns = 3};
	usleep(5000); /* older than the grace period: see above */
	assert_int_equal(apply_op(&n, &op, NULL, NULL), 0);
	data_drain(n.d);
	assert_int_equal(blk_has(n.bs, la.e[1].hash), 0); /* refcount 0 */
	assert_int_equal(blk_has(n.bs, la.e[0].hash), 1); /* still in b */
	ssize_t got;
	uint8_t *rd = read_all(&n, b, BS, 0, &got);
	assert_int_equal(got, BS);
	assert_memory_equal(rd, src, BS);
	free(rd);
	free(src);
	node_free(&n);
}

/* Regression (found by fs_diskfaults): the blocks of a file deleted right
 * after it was written were kept by the recent set, and then only the
 * periodic scan (minutes later) deleted them, so a full disk stayed full.
 * The delete held back is now tried again when the protection ends. */
static void blocks_of_a_file_deleted_just_after_writing_go_when_protection_ends(
    void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode n;
	node_init(&n, 1, false);
	node_start_gc(&n, NULL, 0, 400);
	uint64_t a = create_file(&n, "young");
	uint8_t *src = malloc(BS);
	fill_random(src, BS, &seed);
	struct data_file *f = data_file_open(n.d, a);
	assert_int_equal(data_write(n.d, f, (const char *)src, BS, 0), BS);
	assert_int_equal(data_file_release(n.d, f), 0);
	struct ext_list l;
	extents_of(&n, a, &l);
	assert_int_equal(l.n, 1);
	struct itab_op op = {.code = ITAB_OP_UNLINK,
			     .parent = ITAB_ROOT_INO,
			     .name = "young",
			     .name_len = 5,
			     .flags = ITAB_F_FREE_NOW,
			     .now_ns = 3};
	assert_int_equal(apply_op(&n, &op, NULL, NULL), 0);
	data_drain(n.d);
	/* still protected: a flush may be reusing it */
	assert_int_equal(blk_has(n.bs, l.e[0].hash), 1);
	int waited = 0;
	while (blk_has(n.bs, l.e[0].hash) == 1 && waited < 6000) {
		usleep(50000);
		waited += 50;
	}
	printf("block deleted %d ms after the unlink (protection 400 ms)\n",
	       waited);
	assert_int_equal(blk_has(n.bs, l.e[0].hash), 0);
	free(src);
	node_free(&n);
}

static void gc_deletes_uncommitted_blocks_only(void **state)
{
	(void)state;
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "g");
	struct data_file *f = data_file_open(n.d, ino);
	assert_int_equal(data_write(n.d, f, "committed", 9, 0), 9);
	assert_int_equal(data_file_release(n.d, f), 0);
	struct ext_list l;
	extents_of(&n, ino, &l);
	assert_int_equal(l.n, 1);
	/* A block stored but never referenced (a crash before the WRITE). */
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(n.bs, "orphan block", 12, h), 0);
	usleep(5000); /* older than the 1 ms grace of the tests */
	uint64_t deleted = 99;
	assert_int_equal(data_gc(n.d, &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(blk_has(n.bs, h), 0);
	assert_int_equal(blk_has(n.bs, l.e[0].hash), 1);
	node_free(&n);
}

static void damaged_block_without_peer_reads_eio(void **state)
{
	(void)state;
	struct tnode n;
	node_init(&n, 1, false);
	node_start(&n, NULL, 0);
	uint64_t ino = create_file(&n, "bad");
	struct data_file *f = data_file_open(n.d, ino);
	char text[64] = "some content that will be damaged on disk";
	assert_int_equal(data_write(n.d, f, text, sizeof text, 0),
			 (ssize_t)sizeof text);
	assert_int_equal(data_file_release(n.d, f), 0);
	struct ext_list l;
	extents_of(&n, ino, &l);
	corrupt_block(&n, l.e[0].hash);
	ssize_t got;
	uint8_t *rd = read_all(&n, ino, sizeof text, 0, &got);
	assert_int_equal(got, -EIO); /* detected, nobody to refetch from */
	assert_int_equal(blk_has(n.bs, l.e[0].hash), 0); /* damaged copy gone */
	free(rd);
	node_free(&n);
}

/* ---- two nodes over loopback links ----------------------------------------- */

static void two_nodes_push_before_commit_and_fetch_missing(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode a, b;
	node_init(&a, 1, true);
	node_init(&b, 2, true);
	link_pair(&a, &b);
	const uint64_t voters[] = {1, 2};
	node_start(&a, voters, 2);
	node_start(&b, voters, 2);
	uint64_t ino = create_file(&a, "shared");

	size_t len = 5 * BS + 77;
	uint8_t *src = malloc(len);
	fill_random(src, len, &seed);
	struct data_file *f = data_file_open(a.d, ino);
	assert_int_equal(data_write(a.d, f, (const char *)src, len, 0),
			 (ssize_t)len);
	assert_int_equal(data_file_release(a.d, f), 0);
	struct ext_list l;
	extents_of(&b, ino, &l);
	assert_int_equal(l.n, 6);
	/* Majority of {1,2} is both: b held every block before the WRITE. */
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(blk_has(b.bs, l.e[i].hash), 1);
	/* Before b reads anything (its block cache is cold): one block
	 * missing on b, one damaged there. The read fetches both at once
	 * from a, verifies and stores them. */
	assert_int_equal(blk_delete(b.bs, l.e[1].hash), 0);
	corrupt_block(&b, l.e[2].hash);
	ssize_t got;
	uint8_t *rd = read_all(&b, ino, len, 0, &got);
	assert_int_equal(got, (ssize_t)len);
	assert_memory_equal(rd, src, len);
	free(rd);
	assert_int_equal(blk_has(b.bs, l.e[1].hash), 1);
	size_t blen;
	uint8_t *chk = malloc(BS);
	assert_int_equal(blk_get(b.bs, l.e[2].hash, chk, BS, &blen), 0);
	assert_int_equal(blen, BS);
	free(chk);

	/* Blocks of a WRITE applied without them are fetched in the
	 * background (a node catching up). */
	assert_int_equal(blk_delete(b.bs, l.e[3].hash), 0);
	assert_int_equal(blk_delete(b.bs, l.e[4].hash), 0);
	struct itab_extent ex[2];
	memcpy(ex, &l.e[3], sizeof ex);
	struct itab_op op = {.code = ITAB_OP_WRITE, .ino = ino, .size = len,
			     .extents = ex, .n_extents = 2, .now_ns = 9};
	struct itab_result res;
	memset(&res, 0, sizeof res);
	data_applied(b.d, &op, &res);
	data_drain(b.d);
	assert_int_equal(blk_has(b.bs, l.e[3].hash), 1);
	assert_int_equal(blk_has(b.bs, l.e[4].hash), 1);

	free(src);
	node_free(&a);
	node_free(&b);
}

struct snapbuf {
	uint8_t *b;
	size_t len, cap;
};

static int snap_write(void *ctx, const void *buf, size_t len)
{
	struct snapbuf *s = ctx;
	if (s->len + len > s->cap) {
		s->cap = (s->len + len) * 2;
		s->b = realloc(s->b, s->cap);
		assert_non_null(s->b);
	}
	memcpy(s->b + s->len, buf, len);
	s->len += len;
	return 0;
}

/* Replace dst's table by src's, as a Raft snapshot install does: dst's
 * data path sees no WRITE for any of the blocks. */
static void install_snapshot(struct tnode *src, struct tnode *dst)
{
	struct snapbuf sb = {0};
	assert_int_equal(itab_snapshot(src->itab, snap_write, &sb), 0);
	assert_int_equal(itab_restore(dst->itab, sb.b, sb.len), 0);
	dst->index = src->index;
	free(sb.b);
}

static void catch_up_fetches_every_referenced_block_missing_here(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode a, b;
	node_init(&a, 1, true);
	node_init(&b, 2, true);
	link_pair(&a, &b);
	a.peer = NULL; /* b learns nothing but the snapshot below */
	b.peer = NULL;
	const uint64_t only_a[] = {1}, both[] = {1, 2};
	node_start(&a, only_a, 1); /* a's flushes need no copy on b */
	node_start(&b, both, 2);   /* b fetches from a */

	/* Three files on a, 15 extents over 8 distinct blocks (f1 and f2
	 * share four, f3 shares three of them). */
	size_t len = 4 * BS + 123;
	uint8_t *src = malloc(len);
	fill_random(src, len, &seed);
	const char *names[] = {"f1", "f2", "f3"};
	uint64_t ino[3];
	for (int i = 0; i < 3; i++) {
		ino[i] = create_file(&a, names[i]);
		src[len - 1] = (uint8_t)i; /* last block differs per file */
		if (i == 2)
			src[0] ^= 0xff; /* f3: first block differs too */
		struct data_file *f = data_file_open(a.d, ino[i]);
		assert_int_equal(data_write(a.d, f, (const char *)src, len, 0),
				 (ssize_t)len);
		assert_int_equal(data_file_release(a.d, f), 0);
		if (i == 2)
			src[0] ^= 0xff;
	}
	struct ext_list l[3];
	size_t missing = 0;
	for (int i = 0; i < 3; i++) {
		extents_of(&a, ino[i], &l[i]);
		assert_int_equal(l[i].n, 5);
		for (size_t k = 0; k < l[i].n; k++)
			missing += blk_has(b.bs, l[i].e[k].hash) == 0;
	}
	assert_int_equal(missing, 15); /* b holds none of them */

	/* One block is lost on a as well: nobody can provide it now. */
	const uint8_t *lost = l[2].e[0].hash; /* only f3 uses it */
	uint8_t *lost_copy = malloc(BS);
	size_t lost_len;
	assert_int_equal(blk_get(a.bs, lost, lost_copy, BS, &lost_len), 0);
	assert_int_equal(blk_delete(a.bs, lost), 0);

	install_snapshot(&a, &b);
	data_catch_up(b.d);
	data_drain(b.d);
	for (int i = 0; i < 3; i++) {
		for (size_t k = 0; k < l[i].n; k++) {
			const uint8_t *h = l[i].e[k].hash;
			if (memcmp(h, lost, ITAB_HASH_LEN) == 0) {
				assert_int_equal(blk_has(b.bs, h), 0);
				continue;
			}
			/* Present and verified: blk_get checks the hash. */
			uint8_t *chk = malloc(BS);
			size_t got;
			assert_int_equal(blk_get(b.bs, h, chk, BS, &got), 0);
			assert_int_equal(got, l[i].e[k].len);
			free(chk);
		}
	}
	/* b reads f1 and f2 with a gone: the data is local. */
	link_stop(a.link);
	a.link = NULL;
	for (int i = 0; i < 2; i++) {
		ssize_t got;
		src[len - 1] = (uint8_t)i;
		uint8_t *rd = read_all(&b, ino[i], len, 0, &got);
		assert_int_equal(got, (ssize_t)len);
		assert_memory_equal(rd, src, len);
		free(rd);
	}
	free(lost_copy);
	free(src);
	node_free(&a);
	node_free(&b);
}

static void catch_up_walks_again_later_for_blocks_it_could_not_get(void **state)
{
	(void)state;
	unsigned seed = test_seed();
	struct tnode a, b;
	node_init(&a, 1, true);
	node_init(&b, 2, true);
	link_pair(&a, &b);
	a.peer = NULL;
	b.peer = NULL;
	const uint64_t only_a[] = {1}, both[] = {1, 2};
	node_start(&a, only_a, 1);
	node_start(&b, both, 2);
	uint64_t ino = create_file(&a, "late");
	size_t len = 2 * BS;
	uint8_t *src = malloc(len);
	fill_random(src, len, &seed);
	struct data_file *f = data_file_open(a.d, ino);
	assert_int_equal(data_write(a.d, f, (const char *)src, len, 0),
			 (ssize_t)len);
	assert_int_equal(data_file_release(a.d, f), 0);
	struct ext_list l;
	extents_of(&a, ino, &l);
	assert_int_equal(l.n, 2);
	/* a lost block 1 (e.g. a disk replaced): the first walk on b fails
	 * for it. */
	uint8_t *copy = malloc(BS);
	size_t clen;
	assert_int_equal(blk_get(a.bs, l.e[1].hash, copy, BS, &clen), 0);
	assert_int_equal(blk_delete(a.bs, l.e[1].hash), 0);
	install_snapshot(&a, &b);
	data_catch_up(b.d);
	data_drain(b.d);
	assert_int_equal(blk_has(b.bs, l.e[0].hash), 1);
	assert_int_equal(blk_has(b.bs, l.e[1].hash), 0);
	/* Once a has it again, a later walk (5 s backoff) gets it without
	 * anyone asking or reading. */
	uint8_t h[ITAB_HASH_LEN];
	assert_int_equal(blk_put(a.bs, copy, clen, h), 0);
	assert_memory_equal(h, l.e[1].hash, ITAB_HASH_LEN);
	int waited = 0;
	while (blk_has(b.bs, l.e[1].hash) != 1 && waited < 15000) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
		nanosleep(&ts, NULL);
		waited += 100;
	}
	printf("refetched after %d ms\n", waited);
	assert_int_equal(blk_has(b.bs, l.e[1].hash), 1);
	free(copy);
	free(src);
	node_free(&a);
	node_free(&b);
}

static void catch_up_without_peers_returns_and_stop_is_prompt(void **state)
{
	(void)state;
	struct tnode a, b;
	node_init(&a, 1, false);
	node_init(&b, 2, true); /* b's peers 1 and 3 do not exist */
	node_start(&a, NULL, 0);
	const uint64_t voters[] = {1, 2, 3};
	node_start(&b, voters, 3);
	uint64_t ino = create_file(&a, "x");
	struct data_file *f = data_file_open(a.d, ino);
	assert_int_equal(data_write(a.d, f, "hello", 5, 0), 5);
	assert_int_equal(data_file_release(a.d, f), 0);
	install_snapshot(&a, &b);
	data_catch_up(b.d);
	data_drain(b.d); /* returns although nobody has the block */
	struct ext_list l;
	extents_of(&b, ino, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(blk_has(b.bs, l.e[0].hash), 0);
	/* The walk stays scheduled; stopping does not wait for it. */
	data_catch_up(b.d);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	link_stop(b.link);
	b.link = NULL;
	data_stop(b.d);
	b.d = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("data_stop took %ld ms\n", ms);
	assert_true(ms < 3000);
	node_free(&a);
	node_free(&b);
}

static void flush_fails_eio_without_majority_and_commits_nothing(void **state)
{
	(void)state;
	struct tnode a, b;
	node_init(&a, 1, true);
	node_init(&b, 2, true);
	link_pair(&a, &b);
	/* Voters 1,2,3: node 3 does not exist; a and b are a majority. */
	const uint64_t three[] = {1, 2, 3};
	node_start(&a, three, 3);
	node_start(&b, three, 3);
	uint64_t ino = create_file(&a, "m");
	struct data_file *f = data_file_open(a.d, ino);
	assert_int_equal(data_write(a.d, f, "majority", 8, 0), 8);
	assert_int_equal(data_flush(a.d, f), 0);
	assert_int_equal(file_size(&b, ino), 8);

	/* Voters 1,3,4 (a's view): no peer can hold the block. */
	data_stop(a.d);
	blk_close(a.bs);
	const uint64_t lonely[] = {1, 3, 4};
	a.d = NULL;
	node_start(&a, lonely, 3);
	int props = a.proposals;
	f = data_file_open(a.d, ino);
	assert_int_equal(data_write(a.d, f, "lost", 4, 100), 4);
	assert_int_equal(data_flush(a.d, f), -EIO);
	assert_int_equal(a.proposals, props); /* nothing proposed */
	assert_int_equal(file_size(&a, ino), 8);
	/* The data stays buffered: the handle still reads it. */
	char buf[4];
	assert_int_equal(data_read(a.d, f, ino, buf, 4, 100), 4);
	assert_memory_equal(buf, "lost", 4);
	data_file_release(a.d, f);
	node_free(&a);
	node_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(write_flush_read_round_trips_bytes_and_size),
		cmocka_unit_test(partial_block_overwrite_merges_committed_content),
		cmocka_unit_test(sparse_regions_are_holes_that_read_zeros),
		cmocka_unit_test(truncate_then_grow_reads_zeros_and_frees_blocks),
		cmocka_unit_test(unreferenced_blocks_are_deleted_shared_ones_kept),
		cmocka_unit_test(
		    blocks_of_a_file_deleted_just_after_writing_go_when_protection_ends),
		cmocka_unit_test(gc_deletes_uncommitted_blocks_only),
		cmocka_unit_test(damaged_block_without_peer_reads_eio),
		cmocka_unit_test(two_nodes_push_before_commit_and_fetch_missing),
		cmocka_unit_test(flush_fails_eio_without_majority_and_commits_nothing),
		cmocka_unit_test(catch_up_fetches_every_referenced_block_missing_here),
		cmocka_unit_test(catch_up_walks_again_later_for_blocks_it_could_not_get),
		cmocka_unit_test(catch_up_without_peers_returns_and_stop_is_prompt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
