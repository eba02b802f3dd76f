/* Unit tests of POSIX ACLs in the inode table: value checks, the mode <->
 * ACL rules (setting an access ACL, chmod) and inheritance of default
 * ACLs in apply, which must match Linux's fs/posix_acl.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fs/itab_acl.h"
#include "itab_test_util.h"

#define UOBJ 0x01
#define USER 0x02
#define GOBJ 0x04
#define GROUP 0x08
#define MASK 0x10
#define OTHER 0x20
#define NOID 0xffffffffu

struct acl {
	uint8_t b[4 + 8 * 16];
	size_t len;
};

/* Build a value from (tag, perm, id) triples, little-endian. */
static struct acl mk(size_t n, const uint32_t (*e)[3])
{
	struct acl a = {.len = 4 + 8 * n};
	a.b[0] = 2;
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = a.b + 4 + 8 * i;
		p[0] = (uint8_t)e[i][0], p[1] = (uint8_t)(e[i][0] >> 8);
		p[2] = (uint8_t)e[i][1], p[3] = (uint8_t)(e[i][1] >> 8);
		for (int k = 0; k < 4; k++)
			p[4 + k] = (uint8_t)(e[i][2] >> (8 * k));
	}
	return a;
}
#define MK(...) mk(sizeof((const uint32_t[][3]){__VA_ARGS__}) / 12, (const uint32_t[][3]){__VA_ARGS__})

/* Perm of the entry with tag (and id for named ones) in a, or -1. */
static int perm_of(const uint8_t *v, size_t len, uint32_t tag, uint32_t id)
{
	for (size_t o = 4; o + 8 <= len; o += 8) {
		uint32_t t = v[o] | v[o + 1] << 8;
		uint32_t i = (uint32_t)v[o + 4] | (uint32_t)v[o + 5] << 8 |
			     (uint32_t)v[o + 6] << 16 | (uint32_t)v[o + 7] << 24;
		if (t == tag && ((tag != USER && tag != GROUP) || i == id))
			return v[o + 2] | v[o + 3] << 8;
	}
	return -1;
}

static int set_acl(struct fx *f, uint64_t ino, const char *name, const struct acl *a,
		   uint32_t flags)
{
	struct itab_op op = op_mk(ITAB_OP_SETXATTR, 0, NULL);
	op.ino = ino;
	op.xname = name;
	op.xname_len = strlen(name);
	op.value = a->b;
	op.value_len = a->len;
	op.flags = flags;
	op.now_ns = 7000;
	return fx_apply(f, &op);
}

static long get_acl(struct fx *f, uint64_t ino, const char *name, uint8_t *buf, size_t cap)
{
	return itab_getxattr(f->t, ino, name, strlen(name), buf, cap);
}

static int chmod_(struct fx *f, uint64_t ino, uint32_t mode)
{
	struct itab_op op = op_mk(ITAB_OP_SETATTR, 0, NULL);
	op.ino = ino;
	op.valid = ITAB_SET_MODE;
	op.mode = mode;
	return fx_apply(f, &op);
}

static int create_(struct fx *f, uint8_t code, uint64_t parent, const char *name,
		   uint32_t mode, uint32_t umask)
{
	struct itab_op op = op_mk(code, parent, name);
	op.mode = mode;
	op.umask = umask;
	return fx_apply(f, &op);
}

static void test_check_accepts_valid_and_refuses_each_malformed_value(void **state)
{
	(void)state;
	struct acl ok = MK({UOBJ, 6, NOID}, {USER, 4, 1000}, {USER, 7, 1001}, {GOBJ, 4, NOID},
			   {GROUP, 2, 50}, {MASK, 6, NOID}, {OTHER, 0, NOID});
	assert_int_equal(acl_check(ok.b, ok.len), 0);
	struct acl min = MK({UOBJ, 7, 0}, {GOBJ, 5, 0}, {OTHER, 1, 0});
	assert_int_equal(acl_check(min.b, min.len), 0);
	struct acl maskonly = MK({UOBJ, 7, 0}, {GOBJ, 5, 0}, {MASK, 1, 0}, {OTHER, 1, 0});
	assert_int_equal(acl_check(maskonly.b, maskonly.len), 0);

	struct acl bad[] = {
		MK({UOBJ, 6, 0}, {USER, 4, 1}, {GOBJ, 4, 0}, {OTHER, 0, 0}),   /* no mask */
		MK({UOBJ, 8, 0}, {GOBJ, 4, 0}, {OTHER, 0, 0}),                 /* perm */
		MK({UOBJ, 6, 0}, {0x40, 4, 0}, {GOBJ, 4, 0}, {OTHER, 0, 0}),   /* tag */
		MK({GOBJ, 4, 0}, {UOBJ, 6, 0}, {OTHER, 0, 0}),                 /* order */
		MK({UOBJ, 6, 0}, {UOBJ, 6, 0}, {GOBJ, 4, 0}, {OTHER, 0, 0}),   /* 2 owners */
		MK({UOBJ, 6, 0}, {GOBJ, 4, 0}),                                /* no other */
		MK({UOBJ, 6, 0}, {GOBJ, 4, 0}, {OTHER, 0, 0}, {MASK, 0, 0}),   /* after other */
		MK({UOBJ, 6, 0}, {GOBJ, 4, 0}, {GROUP, 4, 1}, {USER, 4, 1}, {MASK, 4, 0},
		   {OTHER, 0, 0}),                                             /* user after group */
		MK({UOBJ, 6, 0}, {USER, 4, NOID}, {GOBJ, 4, 0}, {MASK, 4, 0}, {OTHER, 0, 0}),
		MK({UOBJ, 6, 0}, {GOBJ, 4, 0}, {MASK, 4, 0}, {MASK, 4, 0}, {OTHER, 0, 0}),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(acl_check(bad[i].b, bad[i].len), -EINVAL);
	assert_int_equal(acl_check(ok.b, ok.len - 3), -EINVAL); /* torn entry */
	assert_int_equal(acl_check(ok.b, 4), -EINVAL);          /* no entries */
	assert_int_equal(acl_check(ok.b, 2), -EINVAL);
	assert_int_equal(acl_check(NULL, 0), -EINVAL);
	ok.b[0] = 1;
	assert_int_equal(acl_check(ok.b, ok.len), -EINVAL); /* version */
}

static void test_access_acl_sets_mode_and_is_stored_canonical(void **state)
{
	struct fx *f = *state;
	uint8_t buf[256];
	assert_int_equal(create_(f, ITAB_OP_CREATE, 1, "f", S_IFREG | 0644, 0), 0);
	uint64_t ino = f->res.ino;
	struct acl a = MK({UOBJ, 6, 99}, {USER, 4, 1000}, {GOBJ, 0, 99}, {MASK, 5, 99},
			  {OTHER, 1, 99});
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &a, 0), 0);
	struct itab_attr at = ga(f, ino);
	assert_int_equal(at.mode, S_IFREG | 0651); /* owner, mask, other */
	assert_int_equal(at.ctime_ns, 7000);
	long n = get_acl(f, ino, ACL_XATTR_ACCESS, buf, sizeof(buf));
	assert_int_equal(n, a.len);
	/* unnamed ids become 0xffffffff, named ones stay */
	struct acl c = MK({UOBJ, 6, NOID}, {USER, 4, 1000}, {GOBJ, 0, NOID}, {MASK, 5, NOID},
			  {OTHER, 1, NOID});
	assert_memory_equal(buf, c.b, c.len);

	/* an ACL the mode says all about sets the mode and is not kept */
	struct acl m = MK({UOBJ, 7, 0}, {GOBJ, 5, 0}, {OTHER, 0, 0});
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &m, 0), 0);
	assert_int_equal(ga(f, ino).mode, S_IFREG | 0750);
	assert_int_equal(get_acl(f, ino, ACL_XATTR_ACCESS, buf, sizeof(buf)), -ENODATA);
	assert_int_equal(itab_listxattr(f->t, ino, NULL, 0), 0);
	/* removing a missing ACL succeeds */
	assert_int_equal(do_removexattr(f, ino, ACL_XATTR_ACCESS), 0);

	/* malformed: -EINVAL, nothing changes */
	struct acl bad = MK({UOBJ, 6, 0}, {USER, 4, 1}, {GOBJ, 4, 0}, {OTHER, 0, 0});
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &bad, 0), -EINVAL);
	assert_int_equal(set_acl(f, ino, ACL_XATTR_DEFAULT, &a, 0), -EACCES); /* not a dir */
	assert_int_equal(do_removexattr(f, ino, ACL_XATTR_DEFAULT), 0);
	assert_int_equal(ga(f, ino).mode, S_IFREG | 0750);
	/* setgid: dropped only when the proposer says the caller may not keep it */
	assert_int_equal(chmod_(f, ino, 02750), 0);
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &a, 0), 0);
	assert_int_equal(ga(f, ino).mode, S_IFREG | 02651);
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &a, ITAB_F_KILL_SGID), 0);
	assert_int_equal(ga(f, ino).mode, S_IFREG | 0651);
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &a, 0x4000), -EINVAL);
	/* a symlink takes none */
	assert_int_equal(do_symlink(f, 1, "l", "f"), 0);
	assert_int_equal(set_acl(f, f->res.ino, ACL_XATTR_ACCESS, &a, 0), -EOPNOTSUPP);
}

static void test_chmod_rewrites_owner_mask_and_other_entries(void **state)
{
	struct fx *f = *state;
	uint8_t buf[256];
	assert_int_equal(create_(f, ITAB_OP_CREATE, 1, "f", S_IFREG | 0644, 0), 0);
	uint64_t ino = f->res.ino;
	struct acl a = MK({UOBJ, 7, 0}, {USER, 7, 1000}, {GOBJ, 7, 0}, {MASK, 7, 0},
			  {OTHER, 7, 0});
	assert_int_equal(set_acl(f, ino, ACL_XATTR_ACCESS, &a, 0), 0);
	assert_int_equal(chmod_(f, ino, 04640), 0);
	assert_int_equal(ga(f, ino).mode, S_IFREG | 04640);
	long n = get_acl(f, ino, ACL_XATTR_ACCESS, buf, sizeof(buf));
	assert_int_equal(n, a.len);
	assert_int_equal(perm_of(buf, (size_t)n, UOBJ, 0), 6);
	assert_int_equal(perm_of(buf, (size_t)n, USER, 1000), 7); /* named: kept */
	assert_int_equal(perm_of(buf, (size_t)n, GOBJ, 0), 7);    /* group: kept (mask) */
	assert_int_equal(perm_of(buf, (size_t)n, MASK, 0), 4);
	assert_int_equal(perm_of(buf, (size_t)n, OTHER, 0), 0);
	/* without a mask the group entry follows */
	assert_int_equal(create_(f, ITAB_OP_MKDIR, 1, "d", 0755, 0), 0);
	uint64_t d = f->res.ino;
	struct acl dflt = MK({UOBJ, 7, 0}, {GOBJ, 7, 0}, {OTHER, 7, 0});
	assert_int_equal(set_acl(f, d, ACL_XATTR_DEFAULT, &dflt, 0), 0);
	assert_int_equal(ga(f, d).mode, S_IFDIR | 0755); /* a default ACL leaves the mode */
	assert_int_equal(chmod_(f, d, 0700), 0);
	n = get_acl(f, d, ACL_XATTR_DEFAULT, buf, sizeof(buf));
	assert_int_equal(perm_of(buf, (size_t)n, GOBJ, 0), 7); /* chmod leaves the default */
}

static void test_default_acl_is_inherited_without_umask(void **state)
{
	struct fx *f = *state;
	uint8_t buf[256];
	assert_int_equal(create_(f, ITAB_OP_MKDIR, 1, "d", 0755, 0), 0);
	uint64_t d = f->res.ino;
	struct acl dflt = MK({UOBJ, 7, 0}, {USER, 7, 1000}, {GOBJ, 5, 0}, {GROUP, 6, 50},
			     {MASK, 7, 0}, {OTHER, 5, 0});
	assert_int_equal(set_acl(f, d, ACL_XATTR_DEFAULT, &dflt, 0), 0);

	/* file 0640, umask 077 ignored: owner 6, mask 7&4=4, other 5&0=0 */
	assert_int_equal(create_(f, ITAB_OP_CREATE, d, "f", S_IFREG | 0640, 077), 0);
	uint64_t fi = f->res.ino;
	assert_int_equal(ga(f, fi).mode, S_IFREG | 0640);
	long n = get_acl(f, fi, ACL_XATTR_ACCESS, buf, sizeof(buf));
	assert_int_equal(n, dflt.len);
	assert_int_equal(perm_of(buf, (size_t)n, UOBJ, 0), 6);
	assert_int_equal(perm_of(buf, (size_t)n, USER, 1000), 7);
	assert_int_equal(perm_of(buf, (size_t)n, GROUP, 50), 6);
	assert_int_equal(perm_of(buf, (size_t)n, MASK, 0), 4);
	assert_int_equal(perm_of(buf, (size_t)n, OTHER, 0), 0);
	assert_int_equal(get_acl(f, fi, ACL_XATTR_DEFAULT, buf, sizeof(buf)), -ENODATA);

	/* a directory gets the default ACL as its own default too */
	assert_int_equal(create_(f, ITAB_OP_MKDIR, d, "s", 0777, 022), 0);
	uint64_t s = f->res.ino;
	assert_int_equal(ga(f, s).mode, S_IFDIR | 0775);
	n = get_acl(f, s, ACL_XATTR_DEFAULT, buf, sizeof(buf));
	assert_int_equal(n, dflt.len);
	assert_memory_equal(buf, dflt.b, 4); /* header */
	assert_int_equal(perm_of(buf, (size_t)n, OTHER, 0), 5);
	assert_true(get_acl(f, s, ACL_XATTR_ACCESS, buf, sizeof(buf)) > 0);
	/* and passes it on */
	assert_int_equal(create_(f, ITAB_OP_CREATE, s, "g", S_IFIFO | 0666, 077), 0);
	assert_int_equal(ga(f, f->res.ino).mode, S_IFIFO | 0664);

	/* symlinks take none */
	assert_int_equal(do_symlink(f, d, "l", "f"), 0);
	assert_int_equal(itab_listxattr(f->t, f->res.ino, NULL, 0), 0);

	/* a minimal default: the mode says it all, nothing stored */
	assert_int_equal(create_(f, ITAB_OP_MKDIR, 1, "m", 0755, 0), 0);
	uint64_t m = f->res.ino;
	struct acl mini = MK({UOBJ, 7, 0}, {GOBJ, 5, 0}, {OTHER, 0, 0});
	assert_int_equal(set_acl(f, m, ACL_XATTR_DEFAULT, &mini, 0), 0);
	assert_int_equal(create_(f, ITAB_OP_CREATE, m, "f", S_IFREG | 0666, 0), 0);
	assert_int_equal(ga(f, f->res.ino).mode, S_IFREG | 0640);
	assert_int_equal(itab_listxattr(f->t, f->res.ino, NULL, 0), 0);
	/* without a default ACL the umask applies again */
	assert_int_equal(do_removexattr(f, m, ACL_XATTR_DEFAULT), 0);
	assert_int_equal(create_(f, ITAB_OP_CREATE, m, "g", S_IFREG | 0666, 027), 0);
	assert_int_equal(ga(f, f->res.ino).mode, S_IFREG | 0640);
	assert_int_equal(create_(f, ITAB_OP_CREATE, m, "h", S_IFREG | 0666, 077), 0);
	assert_int_equal(ga(f, f->res.ino).mode, S_IFREG | 0600);
}

static void test_inheritance_is_the_same_on_every_replica(void **state)
{
	struct fx *f = *state;
	struct itab *other;
	assert_int_equal(fx_open_other(f, "replica", &other), 0);
	struct acl dflt = MK({UOBJ, 7, 0}, {USER, 5, 1000}, {GOBJ, 5, 0}, {MASK, 5, 0},
			     {OTHER, 0, 0});
	struct itab_op ops[4] = {op_mk(ITAB_OP_MKDIR, 1, "d"), op_mk(ITAB_OP_SETXATTR, 0, NULL),
				 op_mk(ITAB_OP_CREATE, 2, "f"), op_mk(ITAB_OP_MKDIR, 2, "s")};
	ops[0].mode = 0755;
	ops[1].ino = 2, ops[1].xname = ACL_XATTR_DEFAULT;
	ops[1].xname_len = strlen(ACL_XATTR_DEFAULT);
	ops[1].value = dflt.b, ops[1].value_len = dflt.len;
	ops[2].mode = S_IFREG | 0666, ops[2].umask = 022;
	ops[3].mode = 0711;
	struct itab_result res;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(fx_apply(f, &ops[i]), 0);
		uint8_t buf[512];
		long n = itab_op_encode(&ops[i], buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(itab_apply(other, (uint64_t)i + 1, buf, (size_t)n, &res), 0);
		assert_int_equal(res.err, 0);
	}
	struct snapbuf a = {0}, b = {0};
	assert_int_equal(itab_snapshot(f->t, snap_cb, &a), 0);
	assert_int_equal(itab_snapshot(other, snap_cb, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	free(a.p);
	free(b.p);
	itab_close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
		T(test_check_accepts_valid_and_refuses_each_malformed_value),
		T(test_access_acl_sets_mode_and_is_stored_canonical),
		T(test_chmod_rewrites_owner_mask_and_other_entries),
		T(test_default_acl_is_inherited_without_umask),
		T(test_inheritance_is_the_same_on_every_replica),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
