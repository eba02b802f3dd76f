/*
 * fuzz_itab.c — fuzz the inode table's byte codecs: what the Raft log
 * carries (an op), what LevelDB hands back (inode, dentry and saved-result
 * records, lock payloads), what a user hands to setxattr (a POSIX ACL in
 * the kernel's xattr format) and the digest's dedupe table (a snapshot
 * part). No LevelDB: every decoder is pure.
 *
 *   first byte % 7 picks the decoder, the rest is its input
 *   0  itab_op_decode: what it accepts re-encodes to the same bytes, its
 *      strings lie inside the input
 *   1  itab_lock_decode: exact length, re-encodes to the same bytes
 *   2  inode_decode   3  dent_decode   4  result_decode: the same
 *   5  acl_check and the rewrites: whatever acl_check accepts stays valid
 *      through acl_canonical, acl_chmod and acl_create_masq, and the mode
 *      bits those report are within 0777
 *   6  dsm_dedupe_decode: what it accepts re-encodes to the bytes it used
 */
#include "fs/digest.h"
#include "fs/itab.h"
#include "fs/itab_acl.h"
#include "fs/itab_internal.h"
#include "tests/fuzz/fuzz_util.h"

static void inside(const void *s, size_t n, const uint8_t *p, size_t len)
{
	const uint8_t *b = s;
	if (n && (!b || b < p || b + n > p + len))
		abort();
}

static void check_op(const uint8_t *p, size_t n)
{
	struct itab_op op;
	if (itab_op_decode(p, n, &op) != 0)
		return;
	inside(op.name, op.name_len, p, n);
	inside(op.newname, op.newname_len, p, n);
	inside(op.xname, op.xname_len, p, n);
	inside(op.value, op.value_len, p, n);
	inside(op.target, op.target_len, p, n);
	size_t need = itab_op_encoded_size(&op);
	uint8_t *again = malloc(need ? need : 1);
	if (!again || need != n || itab_op_encode(&op, again, need) != (long)n ||
	    memcmp(again, p, n) != 0)
		abort();
	free(again);
	itab_op_release(&op);
}

static void check_lock(const uint8_t *p, size_t n)
{
	struct itab_lock lk;
	uint8_t out[ITAB_LOCK_ENC_LEN];
	if (itab_lock_decode(p, n, &lk) != 0)
		return;
	itab_lock_encode(&lk, out);
	if (n != ITAB_LOCK_ENC_LEN || memcmp(out, p, n) != 0)
		abort();
}

static void check_records(int which, const uint8_t *p, size_t n)
{
	if (which == 2) {
		struct inode in;
		uint8_t out[INODE_ENC_LEN];
		if (inode_decode(7, p, n, &in) != 0)
			return;
		inode_encode(&in, out);
		if (n != INODE_ENC_LEN || memcmp(out, p, n) || in.a.ino != 7)
			abort();
	} else if (which == 3) {
		struct dent d;
		uint8_t out[DENT_ENC_LEN];
		if (dent_decode(p, n, &d) != 0)
			return;
		dent_encode(&d, out);
		if (n != DENT_ENC_LEN || memcmp(out, p, n))
			abort();
	} else {
		struct saved_result r;
		uint8_t out[RESULT_ENC_LEN];
		if (result_decode(p, n, &r) != 0)
			return;
		/* a saved result keeps the attributes, not the directory
		 * cookie counter of the inode encoding it reuses: its last 8
		 * bytes are dropped and encoded as zeros */
		result_encode(&r, out);
		if (n != RESULT_ENC_LEN || memcmp(out, p, n - 8) ||
		    memcmp(out + n - 8, "\0\0\0\0\0\0\0\0", 8))
			abort();
	}
}

static void check_acl(const uint8_t *p, size_t n)
{
	(void)acl_kind_of((const char *)p, n);
	if (n < 4 || acl_check(p + 4, n - 4) != 0)
		return;
	uint32_t mode = (uint32_t)p[0] << 8 | p[1];
	size_t len = n - 4;
	uint8_t *v = fz_copy(p + 4, len);
	acl_canonical(v, len);
	if (acl_check(v, len) != 0)
		abort();
	uint32_t perm = 0xdead;
	int r = acl_equiv_mode(v, len, &perm);
	if ((r != 0 && r != 1) || (perm & ~0777u))
		abort();
	uint8_t *c = fz_copy(v, len);
	acl_chmod(c, len, mode);
	if (acl_check(c, len) != 0)
		abort();
	memcpy(c, v, len);
	uint32_t m = 0100000 | (mode & 07777);
	r = acl_create_masq(c, len, &m);
	if ((r != 0 && r != 1) || acl_check(c, len) != 0 ||
	    (m & ~07777u) != 0100000)
		abort();
	free(c);
	free(v);
}

static void check_dedupe(const uint8_t *p, size_t n)
{
	struct dsm_dedupe *t = dsm_dedupe_new();
	if (!t)
		abort();
	size_t used = 0;
	if (dsm_dedupe_decode(t, p, n, &used) == 0) {
		uint8_t *again = NULL;
		size_t alen = 0;
		if (used > n || dsm_dedupe_encode(t, &again, &alen) != 0 ||
		    alen != used || memcmp(again, p, used) != 0)
			abort();
		free(again);
		/* and it is usable */
		uint8_t res[DSM_RESULT_MAX];
		size_t rl;
		(void)dsm_dedupe_lookup(t, 1, 1, 0, res, sizeof res, &rl);
		dsm_dedupe_record(t, 1, 2, 1, res, 8);
	}
	dsm_dedupe_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t *buf = fz_copy(data + 1, size - 1);
	size_t n = size - 1;
	int which = data[0] % 7;
	switch (which) {
	case 0:
		check_op(buf, n);
		break;
	case 1:
		check_lock(buf, n);
		break;
	case 2:
	case 3:
	case 4:
		check_records(which, buf, n);
		break;
	case 5:
		check_acl(buf, n);
		break;
	case 6:
		check_dedupe(buf, n);
		break;
	}
	free(buf);
	return 0;
}
