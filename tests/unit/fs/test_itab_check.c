/*
 * test_itab_check.c — views of the inode table (fs/itab_check.c) and the
 * repair op (fs/itab_repair.c): a view is one point in time, walks decode
 * every record kind, and a repair fixes a replica that has the problem it
 * names while leaving a replica without it untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fs/itab_check.h"
#include "tests/unit/fs/itab_plant.h"
#include "tests/unit/fs/itab_test_util.h"

struct tally {
	int n[ITAB_REC_BAD + 1];
	uint64_t last_ino;
	char name[64];
};

static int tally_one(void *ctx, const struct itab_record *r)
{
	struct tally *t = ctx;
	t->n[r->kind]++;
	t->last_ino = r->ino;
	if (r->name && r->name_len < sizeof(t->name)) {
		memcpy(t->name, r->name, r->name_len);
		t->name[r->name_len] = 0;
	}
	return 0;
}

static int walk_count(struct fx *f, struct itab_view *v, enum itab_rec kind,
                      struct tally *t)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(itab_view_walk(f->t, v, kind, tally_one, t), 0);
	return t->n[kind];
}

/* A write of one extent of len bytes (hash all b) to ino. */
static int do_write1(struct fx *f, uint64_t ino, uint64_t index, uint8_t b,
                     uint32_t len)
{
	struct itab_extent e = {.index = index, .len = len};
	mkhash(e.hash, b);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = &e, op.n_extents = 1;
	op.size = index * itab_block_size(f->t) + len;
	return fx_apply(f, &op);
}

static int do_repair(struct fx *f, uint32_t kind, struct itab_op *op)
{
	op->code = ITAB_OP_REPAIR;
	op->flags = kind;
	return fx_apply(f, op);
}

/* The view keeps the state it was opened at while apply goes on. */
static void view_is_one_point_in_time(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "a", 0644), 0);
	struct itab_view *v;
	assert_int_equal(itab_view_open(f->t, &v), 0);
	struct itab_view_info info;
	itab_view_info(v, &info);
	assert_int_equal(info.applied, f->index);
	assert_int_equal(info.inodes, 2);
	assert_int_equal(do_create(f, 1, "b", 0644), 0);
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	struct tally t;
	assert_int_equal(walk_count(f, v, ITAB_REC_INODE, &t), 2);
	assert_int_equal(walk_count(f, v, ITAB_REC_DENTRY, &t), 1);
	assert_string_equal(t.name, "a");
	itab_view_close(f->t, v);
	assert_int_equal(itab_view_open(f->t, &v), 0);
	assert_int_equal(walk_count(f, v, ITAB_REC_INODE, &t), 4);
	itab_view_close(f->t, v);
}

struct found {
	uint64_t ino, parent, cookie, count, index;
	uint32_t type, len;
	uint8_t hash0;
	char name[64];
	struct itab_attr attr;
};

static int find_one(void *ctx, const struct itab_record *r)
{
	struct found *x = ctx;
	x->ino = r->ino, x->parent = r->parent, x->cookie = r->cookie;
	x->count = r->count, x->index = r->index, x->type = r->type,
	x->len = r->len;
	x->hash0 = r->hash ? r->hash[0] : 0;
	x->attr = r->attr;
	x->name[0] = 0;
	if (r->name && r->name_len < sizeof(x->name)) {
		memcpy(x->name, r->name, r->name_len);
		x->name[r->name_len] = 0;
	}
	return 0;
}

/* Every kind decodes with the fields apply wrote. */
static void walks_decode_every_kind(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_mkdir(f, 1, "dir"), 0);
	uint64_t dir = f->res.ino;
	assert_int_equal(do_create(f, dir, "file", 0644), 0);
	uint64_t file = f->res.ino;
	assert_int_equal(do_write1(f, file, 0, 0x5a, 1000), 0);
	assert_int_equal(do_symlink(f, 1, "ln", "dir/file"), 0);
	uint64_t ln = f->res.ino;
	assert_int_equal(do_setxattr(f, file, "user.k", "v", 0), 0);
	assert_int_equal(do_create(f, 1, "gone", 0644), 0);
	uint64_t gone = f->res.ino;
	assert_int_equal(do_unlink(f, 1, "gone", 0),
	                 0); /* no FREE_NOW: an orphan */
	struct itab_view *v;
	assert_int_equal(itab_view_open(f->t, &v), 0);
	struct found x;
	assert_int_equal(itab_view_walk(f->t, v, ITAB_REC_EXTENT, find_one, &x),
	                 0);
	assert_int_equal(x.ino, file);
	assert_int_equal(x.index, 0);
	assert_int_equal(x.len, 1000);
	assert_int_equal(x.hash0, 0x5a);
	assert_int_equal(
	    itab_view_walk(f->t, v, ITAB_REC_BLOCKREF, find_one, &x), 0);
	assert_int_equal(x.count, 1);
	assert_int_equal(x.hash0, 0x5a);
	assert_int_equal(
	    itab_view_walk(f->t, v, ITAB_REC_SYMLINK, find_one, &x), 0);
	assert_int_equal(x.ino, ln);
	assert_int_equal(x.len, strlen("dir/file"));
	assert_int_equal(itab_view_walk(f->t, v, ITAB_REC_XATTR, find_one, &x),
	                 0);
	assert_int_equal(x.ino, file);
	assert_string_equal(x.name, "user.k");
	assert_int_equal(itab_view_walk(f->t, v, ITAB_REC_ORPHAN, find_one, &x),
	                 0);
	assert_int_equal(x.ino, gone);
	assert_int_equal(itab_view_walk(f->t, v, ITAB_REC_COOKIE, find_one, &x),
	                 0);
	assert_int_equal(x.parent, dir);
	assert_int_equal(x.ino, file);
	assert_int_equal(x.type, S_IFREG);
	assert_string_equal(x.name, "file");
	uint64_t cookie = x.cookie;
	uint64_t ci;
	uint32_t ct;
	char nm[16];
	size_t nl;
	assert_int_equal(itab_view_cookie(f->t, v, dir, cookie, &ci, &ct, nm,
	                                  sizeof(nm), &nl),
	                 0);
	assert_int_equal(ci, file);
	assert_int_equal(nl, 4);
	assert_int_equal(itab_view_cookie(f->t, v, dir, cookie + 1, &ci, &ct,
	                                  nm, sizeof(nm), &nl),
	                 -ENOENT);
	struct itab_attr a;
	assert_int_equal(itab_view_inode(f->t, v, dir, &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(a.parent, 1);
	assert_int_equal(itab_view_inode(f->t, v, 999, &a), -ENOENT);
	itab_view_close(f->t, v);
}

/* A record that does not decode is reported, and the walk goes on. */
static void undecodable_records_are_reported(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "a", 0644), 0);
	uint8_t k[KEY_MAX];
	assert_int_equal(plant_put(f->t, k, key_ino(k, 'I', 77), "short", 5),
	                 0);
	struct itab_view *v;
	assert_int_equal(itab_view_open(f->t, &v), 0);
	struct tally t;
	assert_int_equal(walk_count(f, v, ITAB_REC_INODE, &t), 2);
	assert_int_equal(t.n[ITAB_REC_BAD], 1);
	itab_view_close(f->t, v);
}

/* REPAIR_DIR recounts a directory from its entries, once. */
static void repair_dir_recounts_nlink_and_size(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(do_mkdir(f, d, "sub"), 0);
	assert_int_equal(do_create(f, d, "x", 0644), 0);
	assert_int_equal(plant_nlink(f->t, d, 7), 0);
	struct itab_op op = {.ino = d};
	assert_int_equal(do_repair(f, ITAB_REPAIR_DIR, &op), 0);
	assert_int_equal(ga(f, d).nlink, 3);
	assert_int_equal(ga(f, d).size, 2);
	assert_int_equal(f->res.ino, d);
	assert_int_equal(do_repair(f, ITAB_REPAIR_DIR, &op), -EALREADY);
	op.ino = lk(f, d, "x");
	assert_int_equal(do_repair(f, ITAB_REPAIR_DIR, &op), -ENOTDIR);
}

/* REPAIR_NLINK applies only where nlink is the value fsck saw and every
 * link it found exists: a replica without the problem is left alone. */
static void repair_nlink_needs_the_seen_value_and_the_links(void **state)
{
	struct fx *f = *state;
	struct itab *other;
	assert_int_equal(fx_open_other(f, "other", &other), 0);
	/* the same ops on two replicas */
	struct fx g = *f;
	g.t = other;
	g.index = 0;
	for (struct fx *r = f; r; r = r == f ? &g : NULL) {
		assert_int_equal(do_mkdir(r, 1, "d"), 0);
		assert_int_equal(do_create(r, 1, "f", 0644), 0);
		assert_int_equal(do_link(r, r->res.ino, 2, "g"), 0);
	}
	uint64_t ino = lk(f, 1, "f");
	assert_int_equal(plant_nlink(f->t, ino, 5), 0); /* only on f */
	uint8_t links[64];
	struct itab_link l[2] = {{1, "f", 1}, {2, "g", 1}};
	long n = itab_repair_links_encode(l, 2, links, sizeof(links));
	assert_int_equal(n, 2 * (10 + 1));
	struct itab_op op = {
	    .ino = ino, .size = 4, .value = links, .value_len = (size_t)n};
	/* every op goes to both replicas, as the log would carry it */
	assert_int_equal(do_repair(f, ITAB_REPAIR_NLINK, &op),
	                 -ESTALE); /* not the nlink seen */
	assert_int_equal(do_repair(&g, ITAB_REPAIR_NLINK, &op), -ESTALE);
	op.size = 5;
	struct itab_link bad[2] = {{1, "f", 1}, {2, "h", 1}};
	uint8_t badl[64];
	op.value = badl;
	op.value_len =
	    (size_t)itab_repair_links_encode(bad, 2, badl, sizeof(badl));
	assert_int_equal(do_repair(f, ITAB_REPAIR_NLINK, &op),
	                 -ESTALE); /* a link not here */
	assert_int_equal(do_repair(&g, ITAB_REPAIR_NLINK, &op), -ESTALE);
	struct itab_link dup[2] = {{1, "f", 1}, {1, "f", 1}};
	op.value_len =
	    (size_t)itab_repair_links_encode(dup, 2, badl, sizeof(badl));
	assert_int_equal(do_repair(f, ITAB_REPAIR_NLINK, &op), -EINVAL);
	assert_int_equal(do_repair(&g, ITAB_REPAIR_NLINK, &op), -ESTALE);
	op.value = links;
	op.value_len = (size_t)n;
	assert_int_equal(ga(f, ino).nlink, 5);
	assert_int_equal(do_repair(f, ITAB_REPAIR_NLINK, &op), 0);
	assert_int_equal(ga(f, ino).nlink, 2);
	/* the replica that never had the problem: refused, untouched */
	assert_int_equal(do_repair(&g, ITAB_REPAIR_NLINK, &op), -ESTALE);
	assert_int_equal(ga(&g, ino).nlink, 2);
	/* both replicas agree again: a snapshot of each is byte-identical */
	struct snapbuf a = {0}, b = {0};
	assert_int_equal(do_create(f, 1, "z", 0644),
	                 0); /* same index on both */
	assert_int_equal(do_create(&g, 1, "z", 0644), 0);
	assert_int_equal(f->index, g.index);
	assert_int_equal(itab_snapshot(f->t, snap_cb, &a), 0);
	assert_int_equal(itab_snapshot(other, snap_cb, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	free(a.p);
	free(b.p);
	itab_close(other);
}

static int list_names(void *ctx, const char *name, size_t nl, uint64_t ino,
                      uint32_t type, uint64_t cookie)
{
	int *n = ctx;
	(void)name, (void)nl, (void)ino, (void)type, (void)cookie;
	(*n)++;
	return 0;
}

/* REPAIR_DENTRY drops an entry only when its inode is missing here. */
static void repair_dentry_drops_only_a_dangling_entry(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(do_create(f, d, "real", 0644), 0);
	uint64_t real = f->res.ino;
	assert_int_equal(plant_dangling(f->t, d, "ghost", 4242), 0);
	int n = 0;
	assert_int_equal(itab_readdir(f->t, d, 0, list_names, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ga(f, d).size, 2);
	struct itab_op op = {
	    .parent = d, .name = "real", .name_len = 4, .ino = real};
	assert_int_equal(do_repair(f, ITAB_REPAIR_DENTRY, &op), -ESTALE);
	op.name = "ghost", op.name_len = 5, op.ino = 4243;
	assert_int_equal(do_repair(f, ITAB_REPAIR_DENTRY, &op),
	                 -ESTALE); /* another ino */
	op.ino = 4242;
	assert_int_equal(do_repair(f, ITAB_REPAIR_DENTRY, &op), 0);
	assert_int_equal(f->res.ino, d);
	n = 0;
	assert_int_equal(itab_readdir(f->t, d, 0, list_names, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ga(f, d).size, 1);
	assert_int_equal(ga(f, d).nlink, 2);
	assert_int_equal(do_repair(f, ITAB_REPAIR_DENTRY, &op),
	                 -ESTALE); /* gone */
}

/* REPAIR_REFS sets a count only from the count fsck saw; 0 frees. */
static void repair_refs_needs_the_seen_count(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", 0644), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(do_write1(f, ino, 0, 0x33, 10), 0);
	uint8_t h[ITAB_HASH_LEN];
	mkhash(h, 0x33);
	assert_int_equal(plant_refcount(f->t, h, 5), 0);
	struct itab_op op = {
	    .value = h, .value_len = ITAB_HASH_LEN, .size = 4, .rdev = 1};
	assert_int_equal(do_repair(f, ITAB_REPAIR_REFS, &op), -ESTALE);
	op.size = 5;
	assert_int_equal(do_repair(f, ITAB_REPAIR_REFS, &op), 0);
	assert_int_equal(itab_block_refs(f->t, h), 1);
	assert_int_equal(do_repair(f, ITAB_REPAIR_REFS, &op), -ESTALE);
	/* a count nobody references any more: dropped, and listed as freed */
	uint8_t h2[ITAB_HASH_LEN];
	mkhash(h2, 0x44);
	assert_int_equal(plant_refcount(f->t, h2, 2), 0);
	struct itab_op op2 = {
	    .value = h2, .value_len = ITAB_HASH_LEN, .size = 2, .rdev = 0};
	assert_int_equal(do_repair(f, ITAB_REPAIR_REFS, &op2), 0);
	assert_int_equal(itab_block_refs(f->t, h2), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_memory_equal(f->res.freed[0], h2, ITAB_HASH_LEN);
	struct itab_op bad = {.code = ITAB_OP_REPAIR, .flags = 99};
	assert_int_equal(fx_apply(f, &bad), -EINVAL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(view_is_one_point_in_time),
	    T(walks_decode_every_kind),
	    T(undecodable_records_are_reported),
	    T(repair_dir_recounts_nlink_and_size),
	    T(repair_nlink_needs_the_seen_value_and_the_links),
	    T(repair_dentry_drops_only_a_dangling_entry),
	    T(repair_refs_needs_the_seen_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
