/*
 * Byte encodings of the inode table: log entries (struct itab_op), stored
 * values (inodes, dentries, remembered results) and keys. Everything is
 * big-endian and fixed-width; every decoder checks every length first.
 *
 * Log entry layout (version 1):
 *   u8 version, u8 code, u32 flags, u64 origin, u64 seq, i64 now,
 *   u64 ino, u64 parent, u64 newparent, u32 mode, u32 umask, u32 uid,
 *   u32 gid, u64 rdev, u32 valid, u64 size, i64 atime, i64 mtime, i64 ctime,
 *   u16 name_len, name, u16 newname_len, newname, u16 xname_len, xname,
 *   u32 value_len, value, u16 target_len, target,
 *   u32 n_extents, n x (u64 index, 32-byte hash, u32 len)
 * and nothing after.
 */
#include "fs/itab_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OP_VERSION 1
#define OP_FIXED_LEN 130
#define EXTENT_ENC_LEN (8 + ITAB_HASH_LEN + 4)

/* Take n bytes from r, or mark it bad. */
const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	if (r->bad || r->n < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->n -= n;
	return p;
}

/* Fixed-width big-endian readers over struct rd. */
uint8_t rd_u8(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 1);
	return p ? p[0] : 0;
}
uint16_t rd_u16(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 2);
	return p ? be_get16(p) : 0;
}
uint32_t rd_u32(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 4);
	return p ? be_get32(p) : 0;
}
uint64_t rd_u64(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 8);
	return p ? be_get64(p) : 0;
}

/* Encoded size of op, 0 if a length does not fit its field. */
size_t itab_op_encoded_size(const struct itab_op *op)
{
	if (op->name_len > UINT16_MAX || op->newname_len > UINT16_MAX ||
	    op->xname_len > UINT16_MAX || op->target_len > UINT16_MAX ||
	    op->value_len > UINT32_MAX / 2 || op->n_extents > ITAB_MAX_EXTENTS)
		return 0;
	if ((op->name_len && !op->name) || (op->newname_len && !op->newname) ||
	    (op->xname_len && !op->xname) || (op->value_len && !op->value) ||
	    (op->target_len && !op->target) || (op->n_extents && !op->extents))
		return 0;
	return OP_FIXED_LEN + op->name_len + op->newname_len + op->xname_len + op->value_len +
	       op->target_len + op->n_extents * EXTENT_ENC_LEN;
}

/* Append a length-prefixed byte string (16- or 32-bit length). */
static uint8_t *put_str(uint8_t *p, const void *s, size_t n, bool wide)
{
	if (wide) {
		be_put32(p, (uint32_t)n);
		p += 4;
	} else {
		be_put16(p, (uint16_t)n);
		p += 2;
	}
	if (n)
		memcpy(p, s, n);
	return p + n;
}

/* Encode op into buf; see the layout at the top of the file. */
long itab_op_encode(const struct itab_op *op, void *buf, size_t cap)
{
	size_t need = itab_op_encoded_size(op);
	if (need == 0)
		return -EINVAL;
	if (cap < need)
		return -ENOSPC;
	uint8_t *p = buf;
	*p++ = OP_VERSION;
	*p++ = op->code;
	be_put32(p, op->flags), p += 4;
	be_put64(p, op->origin), p += 8;
	be_put64(p, op->seq), p += 8;
	be_put64(p, (uint64_t)op->now_ns), p += 8;
	be_put64(p, op->ino), p += 8;
	be_put64(p, op->parent), p += 8;
	be_put64(p, op->newparent), p += 8;
	be_put32(p, op->mode), p += 4;
	be_put32(p, op->umask), p += 4;
	be_put32(p, op->uid), p += 4;
	be_put32(p, op->gid), p += 4;
	be_put64(p, op->rdev), p += 8;
	be_put32(p, op->valid), p += 4;
	be_put64(p, op->size), p += 8;
	be_put64(p, (uint64_t)op->atime_ns), p += 8;
	be_put64(p, (uint64_t)op->mtime_ns), p += 8;
	be_put64(p, (uint64_t)op->ctime_ns), p += 8;
	p = put_str(p, op->name, op->name_len, false);
	p = put_str(p, op->newname, op->newname_len, false);
	p = put_str(p, op->xname, op->xname_len, false);
	p = put_str(p, op->value, op->value_len, true);
	p = put_str(p, op->target, op->target_len, false);
	be_put32(p, (uint32_t)op->n_extents), p += 4;
	for (size_t i = 0; i < op->n_extents; i++) {
		be_put64(p, op->extents[i].index), p += 8;
		memcpy(p, op->extents[i].hash, ITAB_HASH_LEN), p += ITAB_HASH_LEN;
		be_put32(p, op->extents[i].len), p += 4;
	}
	return (long)(p - (uint8_t *)buf);
}

/* Read a length-prefixed string as a borrowed pointer. */
static const void *rd_str(struct rd *r, size_t *n, bool wide)
{
	*n = wide ? rd_u32(r) : rd_u16(r);
	const uint8_t *p = rd_bytes(r, *n);
	if (!p)
		*n = 0;
	return *n ? p : NULL;
}

/* Decode a log entry; strict: unknown version/code, short or long input
 * and too many extents are -EINVAL. */
int itab_op_decode(const void *buf, size_t len, struct itab_op *op)
{
	memset(op, 0, sizeof(*op));
	if (!buf || len < OP_FIXED_LEN)
		return -EINVAL;
	struct rd r = {.p = buf, .n = len};
	if (rd_u8(&r) != OP_VERSION)
		return -EINVAL;
	op->code = rd_u8(&r);
	if (op->code >= ITAB_OP__COUNT)
		return -EINVAL;
	op->flags = rd_u32(&r);
	op->origin = rd_u64(&r);
	op->seq = rd_u64(&r);
	op->now_ns = (int64_t)rd_u64(&r);
	op->ino = rd_u64(&r);
	op->parent = rd_u64(&r);
	op->newparent = rd_u64(&r);
	op->mode = rd_u32(&r);
	op->umask = rd_u32(&r);
	op->uid = rd_u32(&r);
	op->gid = rd_u32(&r);
	op->rdev = rd_u64(&r);
	op->valid = rd_u32(&r);
	op->size = rd_u64(&r);
	op->atime_ns = (int64_t)rd_u64(&r);
	op->mtime_ns = (int64_t)rd_u64(&r);
	op->ctime_ns = (int64_t)rd_u64(&r);
	op->name = rd_str(&r, &op->name_len, false);
	op->newname = rd_str(&r, &op->newname_len, false);
	op->xname = rd_str(&r, &op->xname_len, false);
	op->value = rd_str(&r, &op->value_len, true);
	op->target = rd_str(&r, &op->target_len, false);
	uint32_t n = rd_u32(&r);
	if (r.bad || n > ITAB_MAX_EXTENTS || r.n != (size_t)n * EXTENT_ENC_LEN)
		goto bad;
	if (n) {
		struct itab_extent *e = calloc(n, sizeof(*e));
		if (!e) {
			memset(op, 0, sizeof(*op));
			return -ENOMEM; /* not "malformed": apply must not decide on it */
		}
		for (uint32_t i = 0; i < n; i++) {
			e[i].index = rd_u64(&r);
			memcpy(e[i].hash, rd_bytes(&r, ITAB_HASH_LEN), ITAB_HASH_LEN);
			e[i].len = rd_u32(&r);
		}
		op->extents = e;
		op->n_extents = n;
	}
	return 0;
bad:
	memset(op, 0, sizeof(*op));
	return -EINVAL;
}

/* Free the decoded extent array. */
void itab_op_release(struct itab_op *op)
{
	free((void *)op->extents);
	op->extents = NULL;
	op->n_extents = 0;
}

/* Op code names for logs. */
const char *itab_op_name(unsigned code)
{
	static const char *const names[ITAB_OP__COUNT] = {
		"NOOP",	   "CREATE",   "MKDIR",	      "SYMLINK",     "LINK",
		"UNLINK",  "RMDIR",    "RENAME",      "SETATTR",     "SETXATTR",
		"REMOVEXATTR", "WRITE", "RELEASE_ORPHAN", "SETLK", "LOCK_RENEW",
		"RELEASE_NODE", "OPEN", "CLOSE", "REPAIR",
	};
	return code < ITAB_OP__COUNT ? names[code] : "?";
}

/* Lock payload: u8 version (1), u8 kind, u8 type, u64 owner, u64 start,
 * u64 end, u32 pid, u64 node, u64 incarnation, u64 gen, u64 since,
 * u32 what, u64 seq. */
#define LOCK_VERSION 1
void itab_lock_encode(const struct itab_lock *lk, uint8_t out[ITAB_LOCK_ENC_LEN])
{
	uint8_t *p = out;
	*p++ = LOCK_VERSION;
	*p++ = lk->kind;
	*p++ = lk->type;
	be_put64(p, lk->owner), p += 8;
	be_put64(p, lk->start), p += 8;
	be_put64(p, lk->end), p += 8;
	be_put32(p, lk->pid), p += 4;
	be_put64(p, lk->node), p += 8;
	be_put64(p, lk->incarnation), p += 8;
	be_put64(p, lk->gen), p += 8;
	be_put64(p, lk->since), p += 8;
	be_put32(p, lk->what), p += 4;
	be_put64(p, lk->seq);
}

/* Decode a lock payload: exact length and version, else -EINVAL. */
int itab_lock_decode(const void *buf, size_t len, struct itab_lock *lk)
{
	struct rd r = {.p = buf, .n = len};
	memset(lk, 0, sizeof(*lk));
	if (!buf || len != ITAB_LOCK_ENC_LEN || rd_u8(&r) != LOCK_VERSION)
		return -EINVAL;
	lk->kind = rd_u8(&r);
	lk->type = rd_u8(&r);
	lk->owner = rd_u64(&r);
	lk->start = rd_u64(&r);
	lk->end = rd_u64(&r);
	lk->pid = rd_u32(&r);
	lk->node = rd_u64(&r);
	lk->incarnation = rd_u64(&r);
	lk->gen = rd_u64(&r);
	lk->since = rd_u64(&r);
	lk->what = rd_u32(&r);
	lk->seq = rd_u64(&r);
	return r.bad ? -EINVAL : 0;
}

/* Inode value: u8 format, mode, uid, gid, nlink, size, rdev, atime, mtime,
 * ctime, generation, blocks, parent, next_cookie. */
void inode_encode(const struct inode *in, uint8_t out[INODE_ENC_LEN])
{
	uint8_t *p = out;
	*p++ = ITAB_FORMAT;
	be_put32(p, in->a.mode), p += 4;
	be_put32(p, in->a.uid), p += 4;
	be_put32(p, in->a.gid), p += 4;
	be_put32(p, in->a.nlink), p += 4;
	be_put64(p, in->a.size), p += 8;
	be_put64(p, in->a.rdev), p += 8;
	be_put64(p, (uint64_t)in->a.atime_ns), p += 8;
	be_put64(p, (uint64_t)in->a.mtime_ns), p += 8;
	be_put64(p, (uint64_t)in->a.ctime_ns), p += 8;
	be_put64(p, in->a.generation), p += 8;
	be_put64(p, in->a.blocks), p += 8;
	be_put64(p, in->a.parent), p += 8;
	be_put64(p, in->next_cookie);
}

/* Decode an inode value; -EIO if it is not one. */
int inode_decode(uint64_t ino, const void *buf, size_t len, struct inode *in)
{
	struct rd r = {.p = buf, .n = len};
	memset(in, 0, sizeof(*in));
	if (len != INODE_ENC_LEN || rd_u8(&r) != ITAB_FORMAT)
		return -EIO;
	in->a.ino = ino;
	in->a.mode = rd_u32(&r);
	in->a.uid = rd_u32(&r);
	in->a.gid = rd_u32(&r);
	in->a.nlink = rd_u32(&r);
	in->a.size = rd_u64(&r);
	in->a.rdev = rd_u64(&r);
	in->a.atime_ns = (int64_t)rd_u64(&r);
	in->a.mtime_ns = (int64_t)rd_u64(&r);
	in->a.ctime_ns = (int64_t)rd_u64(&r);
	in->a.generation = rd_u64(&r);
	in->a.blocks = rd_u64(&r);
	in->a.parent = rd_u64(&r);
	in->next_cookie = rd_u64(&r);
	return r.bad ? -EIO : 0;
}

/* Dentry value: u64 ino, u8 type (mode >> 12), u64 readdir cookie. */
void dent_encode(const struct dent *d, uint8_t out[DENT_ENC_LEN])
{
	be_put64(out, d->ino);
	out[8] = (uint8_t)(d->type >> 12);
	be_put64(out + 9, d->cookie);
}

/* Decode a dentry value; -EIO if malformed. */
int dent_decode(const void *buf, size_t len, struct dent *d)
{
	const uint8_t *p = buf;
	if (len != DENT_ENC_LEN)
		return -EIO;
	d->ino = be_get64(p);
	d->type = (uint32_t)p[8] << 12;
	d->cookie = be_get64(p + 9);
	return 0;
}

/* Remembered result: i32 err, u64 ino, inode encoding of attr. */
void result_encode(const struct saved_result *r, uint8_t out[RESULT_ENC_LEN])
{
	struct inode in = {.a = r->attr};
	be_put32(out, (uint32_t)r->err);
	be_put64(out + 4, r->ino);
	inode_encode(&in, out + 12);
}

/* Decode a remembered result; -EIO if malformed. */
int result_decode(const void *buf, size_t len, struct saved_result *r)
{
	const uint8_t *p = buf;
	struct inode in;
	if (len != RESULT_ENC_LEN)
		return -EIO;
	r->err = (int)be_get32(p);
	r->ino = be_get64(p + 4);
	if (inode_decode(r->ino, p + 12, INODE_ENC_LEN, &in))
		return -EIO;
	r->attr = in.a;
	return 0;
}

/* Counters value: next_ino, applied, inodes, blocks. */
void counters_encode(const struct counters *c, uint8_t out[32])
{
	be_put64(out, c->next_ino);
	be_put64(out + 8, c->applied);
	be_put64(out + 16, c->inodes);
	be_put64(out + 24, c->blocks);
}

/* Key builders (see the table in itab.h). */
size_t key_ino(uint8_t *k, char pfx, uint64_t ino)
{
	k[0] = (uint8_t)pfx;
	be_put64(k + 1, ino);
	return 9;
}
size_t key_ino_u64(uint8_t *k, char pfx, uint64_t ino, uint64_t v)
{
	key_ino(k, pfx, ino);
	be_put64(k + 9, v);
	return 17;
}
size_t key_ino_name(uint8_t *k, char pfx, uint64_t ino, const char *n, size_t nl)
{
	key_ino(k, pfx, ino);
	if (nl)
		memcpy(k + 9, n, nl);
	return 9 + nl;
}
size_t key_meta(uint8_t *k, char sub)
{
	k[0] = 'M';
	k[1] = (uint8_t)sub;
	return 2;
}
size_t key_meta_u64(uint8_t *k, char sub, uint64_t a)
{
	key_meta(k, sub);
	be_put64(k + 2, a);
	return 10;
}
size_t key_meta_u64_u64(uint8_t *k, char sub, uint64_t a, uint64_t b)
{
	key_meta_u64(k, sub, a);
	be_put64(k + 10, b);
	return 18;
}
