/* Unit tests of the inode table: every op, every error, refcounts, dedupe,
 * applied index, malformed entries, snapshot/restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "itab_test_util.h"

#include <pthread.h>
#include <stdatomic.h>

static void test_open_creates_root_dir_0755_nlink2(void **state)
{
	struct fx *f = *state;
	struct itab_attr a = ga(f, ITAB_ROOT_INO);
	assert_int_equal(a.ino, 1);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(a.uid, 0);
	assert_int_equal(a.size, 0);
	assert_int_equal(a.parent, 1);
	assert_int_equal(itab_applied_index(f->t), 0);
	assert_int_equal(lk(f, 1, ".."), 1);
	assert_int_equal(lk(f, 1, "."), 1);
}

static void test_create_sets_attrs_dentry_and_parent_times(void **state)
{
	struct fx *f = *state;
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "f");
	op.mode = S_IFREG | 0666;
	op.umask = 022;
	op.uid = 7, op.gid = 8;
	op.now_ns = 5555;
	assert_int_equal(fx_apply(f, &op), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(ino, 2);
	assert_int_equal(f->res.attr.mode, S_IFREG | 0644);
	assert_int_equal(f->res.attr.uid, 7);
	assert_int_equal(f->res.attr.gid, 8);
	assert_int_equal(f->res.attr.nlink, 1);
	assert_int_equal(f->res.attr.mtime_ns, 5555);
	assert_int_equal(f->res.attr.ctime_ns, 5555);
	assert_int_equal(f->res.attr.generation, f->index);
	assert_int_equal(lk(f, 1, "f"), ino);
	struct itab_attr r = ga(f, 1);
	assert_int_equal(r.size, 1);
	assert_int_equal(r.nlink, 2);
	assert_int_equal(r.mtime_ns, 5555);
	/* mode type 0 means regular */
	assert_int_equal(do_create(f, 1, "g", 0600), 0);
	assert_int_equal(f->res.attr.mode, S_IFREG | 0600);
	assert_int_equal(f->res.ino, 3); /* counter, never reused */
}

static void test_create_errors_leave_state_untouched(void **state)
{
	struct fx *f = *state;
	char longname[300];
	memset(longname, 'a', sizeof(longname));
	longname[256] = '\0';
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t fino = f->res.ino;
	struct itab_statfs before, after;
	itab_statfs(f->t, &before);
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), -EEXIST);
	assert_int_equal(do_create(f, 99, "x", S_IFREG | 0644), -ESTALE); /* parent gone */
	assert_int_equal(do_create(f, fino, "x", S_IFREG | 0644), -ENOTDIR);
	assert_int_equal(do_create(f, 1, ".", S_IFREG | 0644), -EINVAL);
	assert_int_equal(do_create(f, 1, "..", S_IFREG | 0644), -EINVAL);
	assert_int_equal(do_create(f, 1, "a/b", S_IFREG | 0644), -EINVAL);
	assert_int_equal(do_create(f, 1, "", S_IFREG | 0644), -EINVAL);
	assert_int_equal(do_create(f, 1, longname, S_IFREG | 0644), -ENAMETOOLONG);
	longname[255] = '\0';
	assert_int_equal(do_create(f, 1, "d", S_IFDIR | 0755), -EINVAL);
	assert_int_equal(do_create(f, 1, "l", S_IFLNK | 0777), -EINVAL);
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, NULL);
	op.name = "a\0b";
	op.name_len = 3;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	itab_statfs(f->t, &after);
	assert_int_equal(before.inodes, after.inodes);
	assert_int_equal(before.next_ino, after.next_ino);
	assert_int_equal(ga(f, 1).size, 1);
	/* 255 bytes is fine */
	assert_int_equal(do_create(f, 1, longname, S_IFREG | 0644), 0);
	assert_int_equal(itab_applied_index(f->t), f->index);
}

static void test_mknod_fifo_socket_chr_blk(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "fifo", S_IFIFO | 0600), 0);
	assert_int_equal(f->res.attr.mode, S_IFIFO | 0600);
	assert_int_equal(do_create(f, 1, "sock", S_IFSOCK | 0600), 0);
	assert_int_equal(f->res.attr.mode, S_IFSOCK | 0600);
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "chr");
	op.mode = S_IFCHR | 0600;
	op.rdev = 0x0103;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, f->res.ino).rdev, 0x0103);
	op.name = "blk";
	op.name_len = 3;
	op.mode = S_IFBLK | 0600;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, f->res.ino).mode, S_IFBLK | 0600);
	/* rdev ignored for non-devices */
	op.name = "reg";
	op.mode = S_IFREG | 0600;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, f->res.ino).rdev, 0);
}

static void test_mkdir_counts_subdirs_in_nlink_and_sets_parent(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(f->res.attr.nlink, 2);
	assert_int_equal(f->res.attr.mode, S_IFDIR | 0755);
	assert_int_equal(ga(f, 1).nlink, 3);
	assert_int_equal(do_mkdir(f, d, "e"), 0);
	uint64_t e = f->res.ino;
	assert_int_equal(ga(f, d).nlink, 3);
	assert_int_equal(lk(f, e, ".."), d);
	assert_int_equal(ga(f, e).parent, d);
	assert_int_equal(do_mkdir(f, 1, "d"), -EEXIST);
	/* setgid directory: children inherit the gid, subdirs the bit */
	struct itab_op op = op_mk(ITAB_OP_SETATTR, 0, NULL);
	op.ino = d;
	op.valid = ITAB_SET_MODE | ITAB_SET_GID;
	op.mode = 02775;
	op.gid = 50;
	assert_int_equal(fx_apply(f, &op), 0);
	op = op_mk(ITAB_OP_MKDIR, d, "sub");
	op.mode = 0755;
	op.gid = 9;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(f->res.attr.gid, 50);
	assert_int_equal(f->res.attr.mode, S_IFDIR | 02755);
}

static void test_symlink_target_size_and_errors(void **state)
{
	struct fx *f = *state;
	char buf[64];
	assert_int_equal(do_symlink(f, 1, "l", "some/target"), 0);
	uint64_t l = f->res.ino;
	assert_int_equal(f->res.attr.mode, S_IFLNK | 0777);
	assert_int_equal(f->res.attr.size, 11);
	assert_int_equal(itab_readlink(f->t, l, buf, sizeof(buf)), 11);
	assert_memory_equal(buf, "some/target", 11);
	assert_int_equal(itab_readlink(f->t, 1, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(itab_readlink(f->t, 999, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(do_symlink(f, 1, "e", ""), -ENOENT);
	char *big = malloc(5000);
	memset(big, 'x', 4999);
	big[4999] = '\0';
	assert_int_equal(do_symlink(f, 1, "big", big), -ENAMETOOLONG);
	free(big);
	assert_int_equal(do_symlink(f, 1, "l", "x"), -EEXIST);
}

static void test_link_counts_and_errors(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(do_link(f, ino, d, "g"), 0);
	assert_int_equal(f->res.attr.nlink, 2);
	assert_int_equal(lk(f, d, "g"), ino);
	assert_int_equal(do_link(f, ino, d, "g"), -EEXIST);
	assert_int_equal(do_link(f, d, 1, "dl"), -EPERM);
	assert_int_equal(do_link(f, 999, 1, "x"), -ENOENT);
	assert_int_equal(do_link(f, ino, 999, "x"), -ESTALE);
	assert_int_equal(do_link(f, ino, ino, "x"), -ENOTDIR);
	assert_int_equal(do_link(f, ino, 1, ".."), -EINVAL);
	/* link to an nlink-0 (orphan) file is refused */
	assert_int_equal(do_unlink(f, 1, "f", 0), 0);
	assert_int_equal(do_unlink(f, d, "g", 0), 0);
	assert_int_equal(f->res.orphaned, ino);
	assert_int_equal(do_link(f, ino, 1, "again"), -ENOENT);
}

static void test_link_refuses_past_nlink_max_with_emlink(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	char name[32];
	int rc = 0;
	uint32_t i;
	for (i = 1; i < ITAB_NLINK_MAX; i++) {
		snprintf(name, sizeof(name), "l%u", i);
		rc = do_link(f, ino, 1, name);
		if (rc)
			break;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(ga(f, ino).nlink, ITAB_NLINK_MAX);
	assert_int_equal(do_link(f, ino, 1, "onemore"), -EMLINK);
}

static void test_unlink_orphans_then_release_frees_blocks(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	struct itab_extent e = {.index = 0, .len = 100};
	mkhash(e.hash, 0xAB);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = &e, op.n_extents = 1, op.size = 100;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(itab_block_refs(f->t, e.hash), 1);
	assert_int_equal(do_setxattr(f, ino, "user.a", "v", 0), 0);
	assert_int_equal(do_unlink(f, 1, "f", 0), 0);
	assert_int_equal(f->res.victim, ino);
	assert_int_equal(f->res.orphaned, ino);
	assert_int_equal(lk(f, 1, "f"), 0);
	struct itab_attr a = ga(f, ino);
	assert_int_equal(a.nlink, 0); /* still there for open handles */
	assert_int_equal(itab_block_refs(f->t, e.hash), 1);
	assert_int_equal(ga(f, 1).size, 0);
	/* releasing a linked inode is refused */
	assert_int_equal(do_create(f, 1, "g", S_IFREG | 0644), 0);
	assert_int_equal(do_release(f, f->res.ino), -EBUSY);
	assert_int_equal(do_release(f, ino), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_memory_equal(f->res.freed[0], e.hash, ITAB_HASH_LEN);
	struct itab_attr b;
	assert_int_equal(itab_getattr(f->t, ino, &b), -ENOENT);
	assert_int_equal(itab_block_refs(f->t, e.hash), 0);
	assert_int_equal(do_release(f, ino), -ENOENT);
	struct itab_statfs st;
	itab_statfs(f->t, &st);
	assert_int_equal(st.inodes, 2);
	assert_int_equal(st.blocks, 0);
}

static int count_orphan(void *ctx, uint64_t ino)
{
	(*(int *)ctx)++;
	(void)ino;
	return 0;
}

static void test_unlink_free_now_deletes_at_once_and_errors(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(do_create(f, 1, "o", S_IFREG | 0644), 0);
	assert_int_equal(do_unlink(f, 1, "o", 0), 0);
	assert_int_equal(do_unlink(f, 1, "f", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.orphaned, 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(f->t, ino, &a), -ENOENT);
	int n = 0;
	assert_int_equal(itab_orphans(f->t, count_orphan, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(do_unlink(f, 1, "f", 0), -ENOENT);
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	assert_int_equal(do_unlink(f, 1, "d", 0), -EISDIR);
	assert_int_equal(do_unlink(f, 99, "d", 0), -ESTALE);
	assert_int_equal(do_unlink(f, 1, ".", 0), -EINVAL);
}

static int count_block(void *ctx, const uint8_t hash[ITAB_HASH_LEN])
{
	(void)hash;
	(*(int *)ctx)++;
	return 0;
}

/* itab_blocks lists each referenced block once, and no freed one. */
static void test_blocks_lists_referenced_blocks(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	struct itab_extent e[3] = {{.index = 0, .len = 10},
				   {.index = 1, .len = 10},
				   {.index = 2, .len = 10}};
	mkhash(e[0].hash, 1);
	mkhash(e[1].hash, 2);
	mkhash(e[2].hash, 1); /* the same block twice */
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = e, op.n_extents = 3;
	op.size = 2ull * itab_block_size(f->t) + 10;
	assert_int_equal(fx_apply(f, &op), 0);
	int n = 0;
	assert_int_equal(itab_blocks(f->t, count_block, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(do_unlink(f, 1, "f", ITAB_F_FREE_NOW), 0);
	n = 0;
	assert_int_equal(itab_blocks(f->t, count_block, &n), 0);
	assert_int_equal(n, 0);
}

/* An orphan remembers the node that kept it (the unlinking op's origin),
 * so that node can release it after a crash. */
static void test_orphans_are_listed_by_their_holder(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "a", S_IFREG | 0644), 0);
	assert_int_equal(do_create(f, 1, "b", S_IFREG | 0644), 0);
	struct itab_op op = op_mk(ITAB_OP_UNLINK, 1, "a");
	op.origin = 7;
	op.seq = 1;
	assert_int_equal(fx_apply(f, &op), 0);
	op = op_mk(ITAB_OP_UNLINK, 1, "b");
	op.origin = 8;
	op.seq = 1;
	assert_int_equal(fx_apply(f, &op), 0);
	int n7 = 0, n8 = 0, n9 = 0, all = 0;
	assert_int_equal(itab_orphans_held_by(f->t, 7, count_orphan, &n7), 0);
	assert_int_equal(itab_orphans_held_by(f->t, 8, count_orphan, &n8), 0);
	assert_int_equal(itab_orphans_held_by(f->t, 9, count_orphan, &n9), 0);
	assert_int_equal(itab_orphans(f->t, count_orphan, &all), 0);
	assert_int_equal(n7, 1);
	assert_int_equal(n8, 1);
	assert_int_equal(n9, 0);
	assert_int_equal(all, 2);
}

static void test_rmdir_requires_empty_dir(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(do_create(f, d, "f", S_IFREG | 0644), 0);
	assert_int_equal(do_rmdir(f, 1, "d"), -ENOTEMPTY);
	assert_int_equal(do_rmdir(f, d, "f"), -ENOTDIR);
	assert_int_equal(do_rmdir(f, 1, "nope"), -ENOENT);
	assert_int_equal(do_rmdir(f, 1, ".."), -EINVAL);
	assert_int_equal(do_unlink(f, d, "f", ITAB_F_FREE_NOW), 0);
	assert_int_equal(ga(f, 1).nlink, 3);
	assert_int_equal(do_rmdir(f, 1, "d"), 0);
	assert_int_equal(f->res.victim, d);
	assert_int_equal(ga(f, 1).nlink, 2);
	assert_int_equal(ga(f, 1).size, 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(f->t, d, &a), -ENOENT);
}

/* Builds /a (dir) /a/x (file) /b (dir) /b/y (file) /c (dir, empty) /f (file). */
static void build_tree(struct fx *f, uint64_t *a, uint64_t *b, uint64_t *c, uint64_t *x,
		       uint64_t *y, uint64_t *file)
{
	assert_int_equal(do_mkdir(f, 1, "a"), 0);
	*a = f->res.ino;
	assert_int_equal(do_mkdir(f, 1, "b"), 0);
	*b = f->res.ino;
	assert_int_equal(do_mkdir(f, 1, "c"), 0);
	*c = f->res.ino;
	assert_int_equal(do_create(f, *a, "x", S_IFREG | 0644), 0);
	*x = f->res.ino;
	assert_int_equal(do_create(f, *b, "y", S_IFREG | 0644), 0);
	*y = f->res.ino;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	*file = f->res.ino;
}

static void test_rename_matrix_follows_posix(void **state)
{
	struct fx *f = *state;
	uint64_t a, b, c, x, y, file;
	build_tree(f, &a, &b, &c, &x, &y, &file);
	/* plain move of a file across dirs */
	assert_int_equal(do_rename(f, a, "x", b, "x2", 0), 0);
	assert_int_equal(lk(f, b, "x2"), x);
	assert_int_equal(lk(f, a, "x"), 0);
	assert_int_equal(ga(f, a).size, 0);
	assert_int_equal(ga(f, b).size, 2);
	/* file over file: victim loses its link */
	assert_int_equal(do_rename(f, b, "x2", b, "y", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.victim, y);
	assert_int_equal(lk(f, b, "y"), x);
	struct itab_attr at;
	assert_int_equal(itab_getattr(f->t, y, &at), -ENOENT);
	assert_int_equal(ga(f, b).size, 1);
	/* dir over empty dir */
	assert_int_equal(do_rename(f, 1, "a", 1, "c", 0), 0);
	assert_int_equal(lk(f, 1, "c"), a);
	assert_int_equal(itab_getattr(f->t, c, &at), -ENOENT);
	assert_int_equal(ga(f, 1).nlink, 4); /* root + a(c) + b */
	/* dir over non-empty dir */
	assert_int_equal(do_rename(f, 1, "c", 1, "b", 0), -ENOTEMPTY);
	/* dir over file, file over dir */
	assert_int_equal(do_rename(f, 1, "c", 1, "f", 0), -ENOTDIR);
	assert_int_equal(do_rename(f, 1, "f", 1, "c", 0), -EISDIR);
	/* to itself, and between two links of one file: no-op */
	uint64_t idx = itab_applied_index(f->t);
	assert_int_equal(do_rename(f, 1, "f", 1, "f", 0), 0);
	assert_int_equal(lk(f, 1, "f"), file);
	assert_int_equal(do_link(f, file, 1, "f2"), 0);
	assert_int_equal(do_rename(f, 1, "f", 1, "f2", 0), 0);
	assert_int_equal(lk(f, 1, "f"), file);
	assert_int_equal(lk(f, 1, "f2"), file);
	assert_true(itab_applied_index(f->t) > idx);
	/* directory into its own subtree / into itself */
	assert_int_equal(do_mkdir(f, a, "sub"), 0);
	uint64_t sub = f->res.ino;
	assert_int_equal(do_rename(f, 1, "c", sub, "loop", 0), -EINVAL);
	assert_int_equal(do_rename(f, 1, "c", a, "loop", 0), -EINVAL);
	/* a dir moved across parents updates nlink and '..' */
	assert_int_equal(do_rename(f, a, "sub", b, "sub", 0), 0);
	assert_int_equal(ga(f, a).nlink, 2);
	assert_int_equal(ga(f, b).nlink, 3);
	assert_int_equal(lk(f, sub, ".."), b);
	/* missing source, bad parents, bad names */
	assert_int_equal(do_rename(f, 1, "nope", 1, "z", 0), -ENOENT);
	assert_int_equal(do_rename(f, 1, "f", 999, "z", 0), -ESTALE);
	assert_int_equal(do_rename(f, 1, "f", file, "z", 0), -ENOTDIR);
	assert_int_equal(do_rename(f, 1, "f", 1, "a/b", 0), -EINVAL);
	assert_int_equal(do_rename(f, 1, ".", 1, "z", 0), -EINVAL);
}

/* A RENAME names the inode its proposer's kernel means by the source:
 * when another change put a different inode under that name first, the
 * rename is refused with -ESTALE and changes nothing. */
static void test_rename_of_a_replaced_source_is_stale(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "a", S_IFREG | 0644), 0);
	uint64_t old = lk(f, 1, "a");
	/* another node: a replaced by a new file */
	assert_int_equal(do_unlink(f, 1, "a", ITAB_F_FREE_NOW), 0);
	assert_int_equal(do_create(f, 1, "a", S_IFREG | 0644), 0);
	uint64_t now = lk(f, 1, "a");
	struct itab_op op = op_mk(ITAB_OP_RENAME, 1, "a");
	op.newparent = 1;
	op.newname = "b";
	op.newname_len = 1;
	op.ino = old;
	assert_int_equal(fx_apply(f, &op), -ESTALE);
	assert_int_equal(lk(f, 1, "a"), now);
	op.ino = now; /* looked up again */
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(lk(f, 1, "b"), now);
}

static void test_rename_noreplace_and_exchange(void **state)
{
	struct fx *f = *state;
	uint64_t a, b, c, x, y, file;
	build_tree(f, &a, &b, &c, &x, &y, &file);
	assert_int_equal(do_rename(f, 1, "f", 1, "a", ITAB_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(do_rename(f, 1, "f", 1, "new", ITAB_RENAME_NOREPLACE), 0);
	assert_int_equal(do_rename(f, 1, "new", 1, "missing", ITAB_RENAME_EXCHANGE), -ENOENT);
	assert_int_equal(do_rename(f, 1, "new", 1, "a", ITAB_RENAME_EXCHANGE |
						       ITAB_RENAME_NOREPLACE), -EINVAL);
	assert_int_equal(do_rename(f, 1, "new", 1, "a", 0x80), -EINVAL);
	/* exchange a file in root with a dir in root */
	assert_int_equal(do_rename(f, 1, "new", 1, "a", ITAB_RENAME_EXCHANGE), 0);
	assert_int_equal(lk(f, 1, "new"), a);
	assert_int_equal(lk(f, 1, "a"), file);
	/* exchange across parents: dir b (in root) with file x (in a): */
	assert_int_equal(do_rename(f, 1, "b", a, "x", ITAB_RENAME_EXCHANGE), 0);
	assert_int_equal(lk(f, 1, "b"), x);
	assert_int_equal(lk(f, a, "x"), b);
	assert_int_equal(ga(f, b).parent, a);
	assert_int_equal(ga(f, 1).nlink, 4); /* root holds a("new"), c and file "b" */
	assert_int_equal(ga(f, a).nlink, 3);
	/* exchange a dir with its own ancestor's entry: EINVAL */
	assert_int_equal(do_rename(f, a, "x", 1, "new", ITAB_RENAME_EXCHANGE), -EINVAL);
	assert_int_equal(do_rename(f, 1, "new", a, "x", ITAB_RENAME_EXCHANGE), -EINVAL);
	/* exchange two non-empty dirs is fine */
	assert_int_equal(do_create(f, c, "cc", S_IFREG | 0644), 0);
	assert_int_equal(do_rename(f, 1, "c", a, "x", ITAB_RENAME_EXCHANGE), 0);
	assert_int_equal(lk(f, a, "x"), c);
	assert_int_equal(lk(f, 1, "c"), b);
	assert_int_equal(ga(f, c).parent, a);
	assert_int_equal(ga(f, b).parent, 1);
}

static void test_setattr_mode_owner_times_and_size_rules(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	struct itab_op op = op_mk(ITAB_OP_SETATTR, 0, NULL);
	op.ino = ino;
	op.valid = ITAB_SET_MODE | ITAB_SET_UID | ITAB_SET_GID | ITAB_SET_ATIME | ITAB_SET_MTIME;
	op.mode = S_IFDIR | 04700; /* type bits in the op are ignored */
	op.uid = 11, op.gid = 12, op.atime_ns = 111, op.mtime_ns = 222, op.now_ns = 333;
	assert_int_equal(fx_apply(f, &op), 0);
	struct itab_attr a = ga(f, ino);
	assert_int_equal(a.mode, S_IFREG | 04700);
	assert_int_equal(a.uid, 11);
	assert_int_equal(a.gid, 12);
	assert_int_equal(a.atime_ns, 111);
	assert_int_equal(a.mtime_ns, 222);
	assert_int_equal(a.ctime_ns, 333);
	op.valid = ITAB_SET_CTIME;
	op.ctime_ns = 5;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).ctime_ns, 5);
	/* size: mtime = now; dirs EISDIR; others EINVAL; missing ENOENT */
	op.valid = ITAB_SET_SIZE;
	op.size = 1000;
	op.now_ns = 444;
	assert_int_equal(fx_apply(f, &op), 0);
	a = ga(f, ino);
	assert_int_equal(a.size, 1000);
	assert_int_equal(a.mtime_ns, 444);
	assert_int_equal(do_truncate(f, 1, 0), -EISDIR);
	assert_int_equal(do_create(f, 1, "p", S_IFIFO | 0644), 0);
	assert_int_equal(do_truncate(f, f->res.ino, 0), -EINVAL);
	assert_int_equal(do_truncate(f, 999, 0), -ENOENT);
	op.valid = 0x1000;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
}

static void test_write_and_truncate_adjust_refcounts_and_free_blocks(void **state)
{
	struct fx *f = *state;
	uint32_t bs = itab_block_size(f->t);
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(do_create(f, 1, "g", S_IFREG | 0644), 0);
	uint64_t g = f->res.ino;
	struct itab_extent e[3] = {{.index = 0, .len = bs}, {.index = 1, .len = bs},
				   {.index = 2, .len = bs}};
	mkhash(e[0].hash, 1), mkhash(e[1].hash, 2), mkhash(e[2].hash, 3);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = e, op.n_extents = 3, op.size = 3ull * bs, op.now_ns = 77;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(f->res.attr.size, 3ull * bs);
	assert_int_equal(f->res.attr.mtime_ns, 77);
	assert_int_equal(f->res.attr.blocks, 3ull * bs / 512);
	/* the same block in another file */
	op.ino = g, op.n_extents = 1, op.size = bs;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(itab_block_refs(f->t, e[0].hash), 2);
	/* truncate f to 1.5 blocks: block 2 freed, block 1 shortened */
	assert_int_equal(do_truncate(f, ino, bs + bs / 2), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_memory_equal(f->res.freed[0], e[2].hash, ITAB_HASH_LEN);
	assert_int_equal(itab_block_refs(f->t, e[2].hash), 0);
	assert_int_equal(itab_block_refs(f->t, e[1].hash), 1);
	assert_int_equal(ga(f, ino).blocks, (uint64_t)(bs + bs / 2) / 512);
	/* truncate up: no extents change, size grows */
	assert_int_equal(do_truncate(f, ino, 10ull * bs), 0);
	assert_int_equal(f->res.n_freed, 0);
	assert_int_equal(ga(f, ino).size, 10ull * bs);
	/* overwrite block 0 of f with a new hash: old ref drops to 1 (g keeps it) */
	struct itab_extent w[2] = {{.index = 0, .len = bs}, {.index = 1}};
	mkhash(w[0].hash, 4); /* w[1] is a hole: drops block 1 */
	op.ino = ino, op.extents = w, op.n_extents = 2, op.size = 0;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).size, 10ull * bs); /* never shrinks */
	assert_int_equal(itab_block_refs(f->t, e[0].hash), 1);
	assert_int_equal(itab_block_refs(f->t, w[0].hash), 1);
	assert_int_equal(f->res.n_freed, 1);
	assert_memory_equal(f->res.freed[0], e[1].hash, ITAB_HASH_LEN);
	/* truncate to 0 frees block 4; then g's unlink frees block 1 */
	assert_int_equal(do_truncate(f, ino, 0), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_int_equal(ga(f, ino).blocks, 0);
	assert_int_equal(do_unlink(f, 1, "g", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_memory_equal(f->res.freed[0], e[0].hash, ITAB_HASH_LEN);
	struct itab_statfs st;
	itab_statfs(f->t, &st);
	assert_int_equal(st.blocks, 0);
}

struct ext_seen {
	int n;
	uint64_t idx[8];
	uint32_t len[8];
};

static int ext_cb(void *ctx, uint64_t index, const uint8_t *hash, uint32_t len)
{
	struct ext_seen *s = ctx;
	(void)hash;
	if (s->n < 8) {
		s->idx[s->n] = index;
		s->len[s->n] = len;
	}
	s->n++;
	return 0;
}

static void test_write_clips_extents_to_size_and_rejects_bad_lists(void **state)
{
	struct fx *f = *state;
	uint32_t bs = itab_block_size(f->t);
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	struct itab_extent e[2] = {{.index = 0, .len = bs}, {.index = 1, .len = bs}};
	mkhash(e[0].hash, 1), mkhash(e[1].hash, 2);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = e, op.n_extents = 2, op.size = bs + 10;
	assert_int_equal(fx_apply(f, &op), 0);
	struct ext_seen s = {0};
	assert_int_equal(itab_extents(f->t, ino, 0, 100, ext_cb, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.len[1], 10);
	s.n = 0;
	assert_int_equal(itab_extents(f->t, ino, 1, 1, ext_cb, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.idx[0], 1);
	/* unsorted / duplicate indexes, len 0, len > block, beyond size */
	struct itab_extent bad[2] = {{.index = 1, .len = 5}, {.index = 1, .len = 5}};
	mkhash(bad[0].hash, 7), mkhash(bad[1].hash, 8);
	op.extents = bad, op.n_extents = 2, op.size = 0;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	op.n_extents = 1;
	bad[0].len = 0;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	bad[0].len = bs + 1;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	bad[0].len = 5, bad[0].index = 50;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	assert_int_equal(itab_block_refs(f->t, bad[0].hash), 0);
	op.ino = 1;
	assert_int_equal(fx_apply(f, &op), -EISDIR);
	op.ino = 999;
	assert_int_equal(fx_apply(f, &op), -ENOENT);
	assert_int_equal(do_create(f, 1, "p", S_IFIFO | 0644), 0);
	op.ino = f->res.ino;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	/* explicit mtime */
	op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.valid = ITAB_SET_MTIME, op.mtime_ns = 42, op.now_ns = 4300;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).mtime_ns, 42);
	assert_int_equal(ga(f, ino).ctime_ns, 4300);
	/* written before a later change (ctime 4300): ctime does not go back */
	op.mtime_ns = op.now_ns = 4200;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).mtime_ns, 4200);
	assert_int_equal(ga(f, ino).ctime_ns, 4300);
}

static void test_write_if_size_applies_only_at_that_size(void **state)
{
	struct fx *f = *state;
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	uint64_t ino = f->res.ino;
	struct itab_extent e = {.index = 0, .len = 10};
	mkhash(e.hash, 7);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = &e, op.n_extents = 1, op.size = 10;
	op.flags = ITAB_F_IF_SIZE, op.rdev = 0;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).size, 10);
	/* a second append placed at 0 lost the race: nothing changes */
	mkhash(e.hash, 8);
	assert_int_equal(fx_apply(f, &op), -EAGAIN);
	assert_int_equal(ga(f, ino).size, 10);
	assert_int_equal(itab_block_refs(f->t, e.hash), 0);
	op.rdev = 10, op.size = 20, e.len = 20;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(ga(f, ino).size, 20);
	op.flags = 0x800;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
}

static void test_xattr_create_replace_remove_semantics(void **state)
{
	struct fx *f = *state;
	char buf[64];
	assert_int_equal(do_setxattr(f, 1, "user.b", "two", 0), 0);
	assert_int_equal(do_setxattr(f, 1, "user.a", "one", ITAB_XATTR_CREATE), 0);
	assert_int_equal(do_setxattr(f, 1, "user.a", "x", ITAB_XATTR_CREATE), -EEXIST);
	assert_int_equal(do_setxattr(f, 1, "user.c", "x", ITAB_XATTR_REPLACE), -ENODATA);
	assert_int_equal(do_setxattr(f, 1, "user.a", "uno", ITAB_XATTR_REPLACE), 0);
	assert_int_equal(itab_getxattr(f->t, 1, "user.a", 6, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "uno", 3);
	assert_int_equal(itab_getxattr(f->t, 1, "user.a", 6, NULL, 0), 3);
	assert_int_equal(itab_getxattr(f->t, 1, "user.a", 6, buf, 2), -ERANGE);
	assert_int_equal(itab_getxattr(f->t, 1, "user.z", 6, buf, sizeof(buf)), -ENODATA);
	assert_int_equal(itab_listxattr(f->t, 1, NULL, 0), 14);
	assert_int_equal(itab_listxattr(f->t, 1, buf, sizeof(buf)), 14);
	assert_memory_equal(buf, "user.a\0user.b\0", 14);
	assert_int_equal(itab_listxattr(f->t, 1, buf, 5), -ERANGE);
	assert_int_equal(do_setxattr(f, 1, "", "x", 0), -ERANGE);
	assert_int_equal(do_setxattr(f, 99, "user.a", "x", 0), -ENOENT);
	assert_int_equal(do_setxattr(f, 1, "user.a", "x", 0x10), -EINVAL);
	assert_int_equal(do_removexattr(f, 1, "user.a"), 0);
	assert_int_equal(do_removexattr(f, 1, "user.a"), -ENODATA);
	assert_int_equal(itab_listxattr(f->t, 1, buf, sizeof(buf)), 7);
	/* an empty value is a value */
	assert_int_equal(do_setxattr(f, 1, "user.e", "", 0), 0);
	assert_int_equal(itab_getxattr(f->t, 1, "user.e", 6, buf, sizeof(buf)), 0);
}

static void test_dedupe_returns_first_result_and_applies_once(void **state)
{
	struct fx *f = *state;
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "f");
	op.mode = S_IFREG | 0644;
	op.origin = 3, op.seq = 10;
	assert_int_equal(fx_apply(f, &op), 0);
	uint64_t ino = f->res.ino;
	assert_false(f->res.duplicate);
	/* retried at a later index: same result, nothing applied */
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
	assert_int_equal(f->res.ino, ino);
	assert_int_equal(f->res.attr.mode, S_IFREG | 0644);
	assert_int_equal(itab_applied_index(f->t), f->index);
	struct itab_statfs st;
	itab_statfs(f->t, &st);
	assert_int_equal(st.inodes, 2);
	/* a failed op's errno is remembered too */
	op.seq = 11;
	assert_int_equal(fx_apply(f, &op), -EEXIST);
	assert_int_equal(do_unlink(f, 1, "f", ITAB_F_FREE_NOW), 0);
	assert_int_equal(fx_apply(f, &op), -EEXIST);
	assert_true(f->res.duplicate);
	assert_int_equal(lk(f, 1, "f"), 0);
	/* another origin with the same seq is independent */
	op.origin = 4;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_false(f->res.duplicate);
	/* survives a reopen */
	char p[128];
	snprintf(p, sizeof(p), "%s/db", f->dir);
	itab_close(f->t);
	assert_int_equal(itab_open(p, NULL, &f->t), 0);
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
	op.origin = 3;
	op.seq = 10;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
	assert_int_equal(f->res.ino, ino);
}

static void test_dedupe_evicts_old_results_and_refuses_them_with_estale(void **state)
{
	struct fx *f = *state;
	struct itab_op op = op_mk(ITAB_OP_SETXATTR, 0, NULL);
	op.ino = 1, op.xname = "user.k", op.xname_len = 6, op.value = "v", op.value_len = 1;
	op.origin = 9;
	for (uint64_t s = 1; s <= ITAB_DEDUPE_KEEP + 5; s++) {
		op.seq = s;
		assert_int_equal(fx_apply(f, &op), 0);
		assert_false(f->res.duplicate);
	}
	op.seq = 1;
	assert_int_equal(fx_apply(f, &op), -ESTALE);
	assert_true(f->res.duplicate);
	op.seq = 6; /* the oldest still kept */
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
	char p[128];
	snprintf(p, sizeof(p), "%s/db", f->dir);
	itab_close(f->t);
	assert_int_equal(itab_open(p, NULL, &f->t), 0);
	op.seq = 5;
	assert_int_equal(fx_apply(f, &op), -ESTALE);
	op.seq = 6;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
}

static void test_applied_index_is_monotonic_and_old_entries_are_skipped(void **state)
{
	struct fx *f = *state;
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "f");
	op.mode = S_IFREG | 0644;
	uint8_t buf[512];
	long n = itab_op_encode(&op, buf, sizeof(buf));
	assert_true(n > 0);
	struct itab_result r;
	assert_int_equal(itab_apply(f->t, 5, buf, (size_t)n, &r), 0);
	assert_int_equal(r.err, 0);
	assert_int_equal(itab_applied_index(f->t), 5);
	assert_int_equal(itab_apply(f->t, 5, buf, (size_t)n, &r), 0);
	assert_true(r.skipped);
	assert_int_equal(itab_apply(f->t, 3, buf, (size_t)n, &r), 0);
	assert_true(r.skipped);
	assert_int_equal(itab_applied_index(f->t), 5);
	/* gaps are allowed (raft entries that are not fs ops) */
	assert_int_equal(itab_apply(f->t, 9, buf, (size_t)n, &r), 0);
	assert_false(r.skipped);
	assert_int_equal(r.err, -EEXIST);
	assert_int_equal(itab_applied_index(f->t), 9);
	assert_int_equal(itab_sync(f->t), 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/db", f->dir);
	itab_close(f->t);
	assert_int_equal(itab_open(p, NULL, &f->t), 0);
	assert_int_equal(itab_applied_index(f->t), 9);
	assert_int_not_equal(lk(f, 1, "f"), 0);
	assert_int_equal(itab_apply(f->t, 9, buf, (size_t)n, &r), 0);
	assert_true(r.skipped);
}

static void test_malformed_entry_applies_as_einval_noop(void **state)
{
	struct fx *f = *state;
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "f");
	uint8_t buf[512];
	long n = itab_op_encode(&op, buf, sizeof(buf));
	struct itab_result r;
	assert_int_equal(itab_apply(f->t, 1, buf, (size_t)n - 1, &r), 0); /* short */
	assert_int_equal(r.err, -EINVAL);
	assert_int_equal(itab_applied_index(f->t), 1);
	assert_int_equal(itab_apply(f->t, 2, NULL, 0, &r), 0);
	assert_int_equal(r.err, -EINVAL);
	buf[0] = 99; /* version */
	assert_int_equal(itab_apply(f->t, 3, buf, (size_t)n, &r), 0);
	assert_int_equal(r.err, -EINVAL);
	buf[0] = 1;
	buf[1] = ITAB_OP__COUNT; /* op code */
	assert_int_equal(itab_apply(f->t, 4, buf, (size_t)n, &r), 0);
	assert_int_equal(r.err, -EINVAL);
	assert_int_equal(lk(f, 1, "f"), 0);
	assert_int_equal(itab_applied_index(f->t), 4);
	/* trailing garbage */
	buf[1] = ITAB_OP_CREATE;
	assert_int_equal(itab_apply(f->t, 5, buf, (size_t)n + 1, &r), 0);
	assert_int_equal(r.err, -EINVAL);
}

static void test_op_codec_roundtrips_and_random_bytes_never_crash(void **state)
{
	struct fx *f = *state;
	struct itab_extent e[2] = {{.index = 3, .len = 9}, {.index = 7, .len = 1}};
	mkhash(e[0].hash, 5), mkhash(e[1].hash, 6);
	struct itab_op op = {.code = ITAB_OP_RENAME, .flags = 2, .origin = 1, .seq = 2,
			     .now_ns = -3, .ino = 4, .parent = 5, .newparent = 6, .mode = 7,
			     .umask = 8, .uid = 9, .gid = 10, .rdev = 11, .valid = 12,
			     .size = 13, .atime_ns = 14, .mtime_ns = 15, .ctime_ns = 16,
			     .name = "n", .name_len = 1, .newname = "nn", .newname_len = 2,
			     .xname = "xxx", .xname_len = 3, .value = "vvvv", .value_len = 4,
			     .target = "ttttt", .target_len = 5, .extents = e, .n_extents = 2};
	uint8_t buf[1024];
	long n = itab_op_encode(&op, buf, sizeof(buf));
	assert_int_equal((size_t)n, itab_op_encoded_size(&op));
	assert_int_equal(itab_op_encode(&op, buf, (size_t)n - 1), -ENOSPC);
	struct itab_op d;
	assert_int_equal(itab_op_decode(buf, (size_t)n, &d), 0);
	assert_int_equal(d.code, op.code);
	assert_int_equal(d.now_ns, -3);
	assert_int_equal(d.ctime_ns, 16);
	assert_int_equal(d.rdev, 11);
	assert_memory_equal(d.newname, "nn", 2);
	assert_memory_equal(d.value, "vvvv", 4);
	assert_memory_equal(d.target, "ttttt", 5);
	assert_int_equal(d.n_extents, 2);
	assert_int_equal(d.extents[1].index, 7);
	assert_int_equal(d.extents[1].len, 1);
	assert_memory_equal(d.extents[1].hash, e[1].hash, ITAB_HASH_LEN);
	itab_op_release(&d);
	/* every truncation is rejected */
	for (long i = 0; i < n; i++)
		assert_int_equal(itab_op_decode(buf, (size_t)i, &d), -EINVAL);
	/* random bytes and random corruptions: decode and apply survive */
	unsigned seed = 12345;
	uint8_t rnd[600];
	for (int it = 0; it < 3000; it++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(rnd));
		if (it % 2) {
			memcpy(rnd, buf, (size_t)n);
			len = (size_t)n;
			rnd[rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
			rnd[rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
		} else {
			for (size_t i = 0; i < len; i++)
				rnd[i] = (uint8_t)rand_r(&seed);
			if (len > 2)
				rnd[0] = 1, rnd[1] = (uint8_t)(rand_r(&seed) % ITAB_OP__COUNT);
		}
		if (itab_op_decode(rnd, len, &d) == 0)
			itab_op_release(&d);
		struct itab_result r;
		assert_int_equal(itab_apply(f->t, ++f->index, rnd, len, &r), 0);
	}
	assert_int_equal(itab_applied_index(f->t), f->index);
	assert_int_equal(ga(f, 1).ino, 1);
}

struct names {
	int n;
	char name[16][16];
	uint64_t cookie[16];
};

static int collect(void *ctx, const char *name, size_t nl, uint64_t ino, uint32_t type,
		   uint64_t cookie)
{
	struct names *s = ctx;
	(void)ino, (void)type;
	memcpy(s->name[s->n], name, nl);
	s->name[s->n][nl] = '\0';
	s->cookie[s->n++] = cookie;
	return s->n == 3; /* stop after three: a "full buffer" */
}

static void test_readdir_offsets_are_stable_across_changes(void **state)
{
	struct fx *f = *state;
	const char *n[] = {"e", "d", "c", "b", "a"};
	for (int i = 0; i < 5; i++)
		assert_int_equal(do_create(f, 1, n[i], S_IFREG | 0644), 0);
	struct names s = {0};
	assert_int_equal(itab_readdir(f->t, 1, 0, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.name[0], "e");
	assert_string_equal(s.name[2], "c");
	assert_true(s.cookie[0] >= ITAB_COOKIE_FIRST);
	/* delete an already-read entry and one before the cursor: resume is exact */
	assert_int_equal(do_unlink(f, 1, "e", 0), 0);
	assert_int_equal(do_unlink(f, 1, "d", 0), 0);
	uint64_t resume = s.cookie[2] + 1;
	s.n = 0;
	assert_int_equal(itab_readdir(f->t, 1, resume, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.name[0], "b");
	assert_string_equal(s.name[1], "a");
	uint64_t f_ino = lk(f, 1, "a");
	assert_int_equal(itab_readdir(f->t, f_ino, 0, collect, &s), -ENOTDIR);
	assert_int_equal(itab_readdir(f->t, 999, 0, collect, &s), -ENOENT);
}

static void test_lookup_errors(void **state)
{
	struct fx *f = *state;
	uint64_t ino;
	char longname[300];
	memset(longname, 'a', 256);
	assert_int_equal(do_create(f, 1, "f", S_IFREG | 0644), 0);
	assert_int_equal(itab_lookup(f->t, 1, "zz", 2, &ino, NULL), -ENOENT);
	assert_int_equal(itab_lookup(f->t, f->res.ino, "zz", 2, &ino, NULL), -ENOTDIR);
	assert_int_equal(itab_lookup(f->t, 1, longname, 256, &ino, NULL), -ENAMETOOLONG);
	assert_int_equal(itab_lookup(f->t, 77, "zz", 2, &ino, NULL), -ENOENT);
}

static void build_some_state(struct fx *f)
{
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	uint64_t d = f->res.ino;
	assert_int_equal(do_create(f, d, "f", S_IFREG | 0600), 0);
	uint64_t ino = f->res.ino;
	assert_int_equal(do_symlink(f, 1, "s", "d/f"), 0);
	assert_int_equal(do_setxattr(f, ino, "user.x", "y", 0), 0);
	struct itab_extent e = {.index = 2, .len = 7};
	mkhash(e.hash, 9);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = &e, op.n_extents = 1, op.size = 3ull * 65536;
	op.origin = 2, op.seq = 77;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(do_create(f, 1, "orph", S_IFREG | 0600), 0);
	assert_int_equal(do_unlink(f, 1, "orph", 0), 0);
}

static void test_snapshot_restore_gives_identical_dump(void **state)
{
	struct fx *f = *state;
	build_some_state(f);
	struct snapbuf a = {0}, b = {0}, c = {0};
	assert_int_equal(itab_snapshot(f->t, snap_cb, &a), 0);
	struct itab *t2;
	assert_int_equal(fx_open_other(f, "other", &t2), 0);
	assert_int_equal(itab_restore(t2, a.p, a.len), 0);
	assert_int_equal(itab_snapshot(t2, snap_cb, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	assert_int_equal(itab_applied_index(t2), itab_applied_index(f->t));
	struct itab_statfs s1, s2;
	itab_statfs(f->t, &s1), itab_statfs(t2, &s2);
	assert_int_equal(s1.inodes, s2.inodes);
	assert_int_equal(s1.blocks, s2.blocks);
	assert_int_equal(s1.next_ino, s2.next_ino);
	/* the restored table keeps dedupe memory and goes on identically */
	struct fx g = *f;
	g.t = t2;
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = lk(f, lk(f, 1, "d"), "f"), op.origin = 2, op.seq = 77;
	assert_int_equal(fx_apply(&g, &op), 0);
	assert_true(g.res.duplicate);
	assert_int_equal(do_mkdir(&g, 1, "later"), 0);
	/* a corrupt dump is refused and the table is untouched */
	a.p[a.len / 2] ^= 1;
	assert_int_equal(itab_restore(t2, a.p, a.len), -EINVAL);
	assert_int_equal(itab_restore(t2, a.p, 10), -EINVAL);
	assert_int_not_equal(lk(&g, 1, "later"), 0);
	/* restore over a non-empty table replaces everything */
	a.p[a.len / 2] ^= 1;
	assert_int_equal(itab_restore(t2, a.p, a.len), 0);
	assert_int_equal(lk(&g, 1, "later"), 0);
	assert_int_equal(itab_snapshot(t2, snap_cb, &c), 0);
	assert_int_equal(c.len, a.len);
	assert_memory_equal(c.p, a.p, a.len);
	itab_close(t2);
	free(a.p), free(b.p), free(c.p);
}

static void test_open_refuses_other_block_size_or_cluster(void **state)
{
	struct fx *f = *state;
	char p[128];
	snprintf(p, sizeof(p), "%s/cfg", f->dir);
	struct itab_config cfg = {.block_size = 4096, .cluster_id = 77};
	struct itab *t;
	assert_int_equal(itab_open(p, &cfg, &t), 0);
	assert_int_equal(itab_block_size(t), 4096);
	itab_close(t);
	cfg.block_size = 8192;
	assert_int_equal(itab_open(p, &cfg, &t), -EINVAL);
	cfg.block_size = 0, cfg.cluster_id = 78;
	assert_int_equal(itab_open(p, &cfg, &t), -EINVAL);
	cfg.cluster_id = 0;
	assert_int_equal(itab_open(p, &cfg, &t), 0);
	itab_close(t);
}

struct race {
	struct itab *t;
	atomic_bool stop;
	long lookups, bad;
};

/* Reader: "x" is either absent, or present with a readable inode. */
static void *race_reader(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		uint64_t ino;
		struct itab_attr a;
		int rc = itab_lookup(r->t, 1, "x", 1, &ino, &a);
		if (rc != 0 && rc != -ENOENT)
			r->bad++;
		if (rc == 0 && (a.ino != ino || a.nlink != 1))
			r->bad++;
		r->lookups++;
	}
	return NULL;
}

static void test_reader_never_sees_half_an_op(void **state)
{
	struct fx *f = *state;
	struct race r = {.t = f->t};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, race_reader, &r), 0);
	for (int i = 0; i < 3000; i++) {
		assert_int_equal(do_create(f, 1, "x", S_IFREG | 0644), 0);
		assert_int_equal(do_unlink(f, 1, "x", ITAB_F_FREE_NOW), 0);
	}
	atomic_store(&r.stop, true);
	pthread_join(th, NULL);
	assert_true(r.lookups > 0);
	assert_int_equal(r.bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
		T(test_open_creates_root_dir_0755_nlink2),
		T(test_create_sets_attrs_dentry_and_parent_times),
		T(test_create_errors_leave_state_untouched),
		T(test_mknod_fifo_socket_chr_blk),
		T(test_mkdir_counts_subdirs_in_nlink_and_sets_parent),
		T(test_symlink_target_size_and_errors),
		T(test_link_counts_and_errors),
		T(test_link_refuses_past_nlink_max_with_emlink),
		T(test_unlink_orphans_then_release_frees_blocks),
		T(test_orphans_are_listed_by_their_holder),
		T(test_blocks_lists_referenced_blocks),
		T(test_unlink_free_now_deletes_at_once_and_errors),
		T(test_rmdir_requires_empty_dir),
		T(test_rename_matrix_follows_posix),
		T(test_rename_of_a_replaced_source_is_stale),
		T(test_rename_noreplace_and_exchange),
		T(test_setattr_mode_owner_times_and_size_rules),
		T(test_write_and_truncate_adjust_refcounts_and_free_blocks),
		T(test_write_clips_extents_to_size_and_rejects_bad_lists),
		T(test_write_if_size_applies_only_at_that_size),
		T(test_xattr_create_replace_remove_semantics),
		T(test_dedupe_returns_first_result_and_applies_once),
		T(test_dedupe_evicts_old_results_and_refuses_them_with_estale),
		T(test_applied_index_is_monotonic_and_old_entries_are_skipped),
		T(test_malformed_entry_applies_as_einval_noop),
		T(test_op_codec_roundtrips_and_random_bytes_never_crash),
		T(test_readdir_offsets_are_stable_across_changes),
		T(test_lookup_errors),
		T(test_snapshot_restore_gives_identical_dump),
		T(test_open_refuses_other_block_size_or_cluster),
		T(test_reader_never_sees_half_an_op),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
