/*
 * fuzz_ops.h — build inode-table ops from fuzz bytes (for fuzz_fsm and
 * fuzz_snapshot). A raw op is whatever bytes the input holds; a built op
 * takes its fields from small sets of values that reach deep into apply
 * (inode numbers of a young table, the names it holds, the flag bits and
 * file types apply knows, ACL-shaped xattr values, lock payloads), so the
 * fuzzer spends its time in apply's rules, not in the decoder's first
 * length check.
 */
#ifndef SANDFS_FUZZ_OPS_H
#define SANDFS_FUZZ_OPS_H

#include <sys/stat.h>

#include "fs/itab.h"
#include "tests/fuzz/fuzz_util.h"
#include "transport/log.h"

/* Keep the fuzzer's output readable: errors only (SANDFS_LOG overrides). */
static inline void fo_quiet(void)
{
	static bool done;
	if (!done && !getenv("SANDFS_LOG"))
		log_set_level(LOG_LVL_ERROR);
	done = true;
}

static const char *const fo_names[] = {"a", "b", "c", "d", ".", "..", "", "a/b",
				       "x"};
static const char *const fo_xnames[] = {
    "user.a", "user.b", "system.posix_acl_access", "system.posix_acl_default",
    "trusted.t", "security.s", "", "user."};
static const uint32_t fo_types[] = {S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO,
				    S_IFSOCK, S_IFCHR, S_IFBLK, 0};
static const uint64_t fo_sizes[] = {0, 1, 4095, 65535, 65536, 65537,
				    1ull << 40, UINT64_MAX, 131072};
static const uint32_t fo_flags[] = {0, ITAB_RENAME_NOREPLACE, ITAB_RENAME_EXCHANGE,
				    ITAB_F_FREE_NOW, ITAB_F_KILL_SGID, ITAB_F_IF_SIZE,
				    ITAB_F_OPEN, 3};

#define FO_N(a) (sizeof(a) / sizeof((a)[0]))

/* Storage for one built op's strings and arrays. */
struct fo_buf {
	char longname[ITAB_NAME_MAX + 2];
	uint8_t value[ITAB_LOCK_ENC_LEN + 64];
	char target[64];
	struct itab_extent ext[4];
};

static const char *fo_name(struct fz *z, struct fo_buf *b, size_t *len)
{
	uint8_t c = fz_u8(z);
	if (c == 0xff) { /* one byte too long */
		memset(b->longname, 'n', ITAB_NAME_MAX + 1);
		*len = ITAB_NAME_MAX + 1;
		return b->longname;
	}
	const char *s = fo_names[c % FO_N(fo_names)];
	*len = strlen(s);
	return s;
}

/* An ACL value in the kernel's xattr format: u32 version 2, then
 * entries (u16 tag, u16 perm, u32 id), mostly valid in shape. */
static size_t fo_acl(struct fz *z, uint8_t *v, size_t cap)
{
	static const uint16_t tags[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20};
	unsigned n = 1 + fz_u8(z) % 6;
	v[0] = 2, v[1] = v[2] = v[3] = 0;
	size_t len = 4;
	for (unsigned i = 0; i < n && len + 8 <= cap; i++) {
		uint8_t t = fz_u8(z);
		uint16_t tag = tags[(i + (t >> 4)) % FO_N(tags)];
		uint16_t perm = t & 7;
		uint32_t id = (tag == 0x02 || tag == 0x08) ? fz_u8(z) : 0xffffffffu;
		v[len] = (uint8_t)tag, v[len + 1] = (uint8_t)(tag >> 8);
		v[len + 2] = (uint8_t)perm, v[len + 3] = 0;
		memcpy(v + len + 4, &id, 4); /* little-endian host */
		len += 8;
	}
	return len;
}

/* Build one op from z into op (strings point into b or static data). */
static void fo_build(struct fz *z, struct fo_buf *b, struct itab_op *op)
{
	memset(op, 0, sizeof(*op));
	op->code = fz_u8(z) % ITAB_OP__COUNT;
	uint8_t f = fz_u8(z);
	op->flags = fo_flags[f % FO_N(fo_flags)] | (f & 0x80 ? ITAB_F_FREE_NOW : 0);
	op->now_ns = (int64_t)fz_u32(z) * 1000;
	op->ino = 1 + fz_u8(z) % 12;
	op->parent = 1 + fz_u8(z) % 12;
	op->newparent = 1 + fz_u8(z) % 12;
	uint8_t m = fz_u8(z);
	op->mode = fo_types[m % FO_N(fo_types)] | (fz_u16(z) & 07777);
	op->umask = fz_u8(z) & 077;
	op->uid = fz_u8(z) % 3 * 1000;
	op->gid = fz_u8(z) % 3 * 1000;
	op->rdev = fz_u8(z);
	op->valid = fz_u8(z);
	op->size = fo_sizes[fz_u8(z) % FO_N(fo_sizes)];
	op->atime_ns = (int64_t)fz_u64(z);
	op->mtime_ns = (int64_t)fz_u32(z);
	op->ctime_ns = (int64_t)fz_u32(z);
	op->name = fo_name(z, b, &op->name_len);
	op->newname = fo_name(z, b, &op->newname_len);
	uint8_t x = fz_u8(z);
	op->xname = fo_xnames[x % FO_N(fo_xnames)];
	op->xname_len = strlen(op->xname);
	uint8_t vk = fz_u8(z) % 4;
	if (op->code >= ITAB_OP_SETLK || (op->flags & ITAB_F_OPEN)) {
		struct itab_lock lk = {
		    .kind = 1 + fz_u8(z) % 2,
		    .type = fz_u8(z) % 4,
		    .owner = fz_u8(z) % 3,
		    .start = fz_u8(z),
		    .end = fz_u8(z) & 1 ? ITAB_LK_EOF : fz_u8(z),
		    .pid = 42,
		    .node = fz_u8(z) % 4,
		    .incarnation = fz_u8(z) % 3,
		    .gen = fz_u8(z) % 3,
		    .since = fz_u8(z) % 8,
		    .what = fz_u8(z) % 4,
		    .seq = fz_u8(z) % 8,
		};
		itab_lock_encode(&lk, b->value);
		op->value = b->value;
		op->value_len = vk ? ITAB_LOCK_ENC_LEN : fz_u8(z) % ITAB_LOCK_ENC_LEN;
	} else if (vk == 1 || x % FO_N(fo_xnames) == 2 || x % FO_N(fo_xnames) == 3) {
		op->value_len = fo_acl(z, b->value, sizeof b->value);
		op->value = b->value;
	} else {
		size_t got;
		const uint8_t *v = fz_bytes(z, fz_u8(z) % 32, &got);
		memcpy(b->value, v, got);
		op->value = b->value;
		op->value_len = got;
	}
	size_t tl = fz_u8(z) % sizeof b->target;
	memset(b->target, 't', tl);
	op->target = b->target;
	op->target_len = tl;
	if (op->code == ITAB_OP_WRITE) {
		size_t n = fz_u8(z) % 5;
		uint64_t idx = 0;
		for (size_t i = 0; i < n; i++) {
			struct itab_extent *e = &b->ext[i];
			uint8_t s = fz_u8(z);
			idx += s & 0x80 ? (uint64_t)1 << 40 : (s & 7);
			e->index = idx;
			memset(e->hash, 0, sizeof e->hash);
			if (s & 0x40)
				e->hash[0] = 1 + (s & 3); /* else a hole */
			e->len = s & 0x20 ? 65536 : fz_u16(z);
		}
		op->extents = b->ext;
		op->n_extents = n;
	}
}

/* Next entry of a fuzz input: a raw one (u16 length, bytes) or a built
 * op, encoded into *out (malloc'ed, caller frees). Returns its length, or
 * -1 at the end of the input. */
static inline long fo_next_entry(struct fz *z, uint8_t **out)
{
	if (z->n == 0)
		return -1;
	uint8_t k = fz_u8(z);
	if (k & 1) { /* raw */
		size_t got;
		const uint8_t *p = fz_bytes(z, fz_u16(z) % 4096, &got);
		*out = fz_copy(p, got);
		return (long)got;
	}
	struct fo_buf b;
	struct itab_op op;
	fo_build(z, &b, &op);
	size_t need = itab_op_encoded_size(&op);
	if (!need) {
		*out = fz_copy((const uint8_t *)"", 0);
		return 0;
	}
	*out = malloc(need);
	if (!*out)
		abort();
	long n = itab_op_encode(&op, *out, need);
	if (n < 0)
		abort(); /* sized it above */
	return n;
}

#endif

/* ---- reading a whole table back (every read must cope with what it finds) */

struct fo_walk {
	struct itab *t;
	unsigned visited;
};

struct fo_ent {
	char name[ITAB_NAME_MAX + 1];
	size_t len;
	uint64_t ino;
	uint32_t type;
};

struct fo_list {
	struct fo_ent e[64];
	size_t n;
};

static int fo_walk_ext(void *ctx, uint64_t index, const uint8_t hash[ITAB_HASH_LEN],
		       uint32_t len)
{
	(void)ctx, (void)index, (void)hash, (void)len;
	return 0;
}

/* readdir callback: collect (callbacks must not call itab functions). */
static int fo_collect(void *ctx, const char *name, size_t name_len, uint64_t ino,
		      uint32_t type, uint64_t cookie)
{
	struct fo_list *l = ctx;
	(void)cookie;
	if (l->n == 64 || name_len > ITAB_NAME_MAX)
		return 1;
	struct fo_ent *e = &l->e[l->n++];
	memcpy(e->name, name, name_len);
	e->len = name_len;
	e->ino = ino;
	e->type = type;
	return 0;
}

static void fo_walk_dir(struct fo_walk *w, uint64_t dir, int depth)
{
	struct fo_list *l = calloc(1, sizeof *l);
	if (!l)
		abort();
	(void)itab_readdir(w->t, dir, 0, fo_collect, l);
	for (size_t i = 0; i < l->n && ++w->visited < 2000; i++) {
		struct fo_ent *e = &l->e[i];
		uint64_t found = 0;
		struct itab_attr a;
		(void)itab_lookup(w->t, dir, e->name, e->len, &found, &a);
		(void)itab_getattr(w->t, e->ino, &a);
		char buf[256];
		(void)itab_readlink(w->t, e->ino, buf, sizeof buf);
		long n = itab_listxattr(w->t, e->ino, buf, sizeof buf);
		for (long k = 0; n > 0 && k < n;) {
			size_t nl = strnlen(buf + k, (size_t)(n - k));
			char v[128];
			(void)itab_getxattr(w->t, e->ino, buf + k, nl, v, sizeof v);
			k += (long)nl + 1;
		}
		(void)itab_extents(w->t, e->ino, 0, UINT64_MAX, fo_walk_ext, NULL);
		if (e->type == S_IFDIR && depth < 8)
			fo_walk_dir(w, e->ino, depth + 1);
	}
	free(l);
}

struct fo_ids {
	uint64_t id[64];
	uint8_t hash[16][ITAB_HASH_LEN];
	size_t n, nh;
};

static int fo_walk_ino(void *ctx, uint64_t ino)
{
	struct fo_ids *l = ctx;
	if (l->n == 64)
		return 1;
	l->id[l->n++] = ino;
	return 0;
}

static int fo_walk_blk(void *ctx, const uint8_t hash[ITAB_HASH_LEN])
{
	struct fo_ids *l = ctx;
	if (l->nh == 16)
		return 1;
	memcpy(l->hash[l->nh++], hash, ITAB_HASH_LEN);
	return 0;
}

static int fo_walk_node(void *ctx, const struct itab_node_rec *rec)
{
	(void)ctx, (void)rec;
	return 0;
}

/* Read everything the table offers. */
static inline void fo_walk(struct itab *t)
{
	struct fo_walk w = {.t = t};
	fo_walk_dir(&w, ITAB_ROOT_INO, 0);
	for (uint64_t ino = 1; ino <= 14; ino++) {
		struct itab_attr a;
		(void)itab_getattr(t, ino, &a);
		struct itab_lock req = {.kind = ITAB_LK_POSIX, .type = ITAB_LK_WRITE,
					.start = 0, .end = ITAB_LK_EOF};
		struct itab_lock got;
		(void)itab_getlk(t, ino, 9, &req, &got);
	}
	struct fo_ids ids = {.n = 0};
	(void)itab_orphans(t, fo_walk_ino, &ids);
	(void)itab_orphans_held_by(t, 1, fo_walk_ino, &ids);
	(void)itab_blocks(t, fo_walk_blk, &ids);
	for (size_t i = 0; i < ids.n; i++) {
		struct itab_attr a;
		(void)itab_getattr(t, ids.id[i], &a);
	}
	for (size_t i = 0; i < ids.nh; i++)
		(void)itab_block_refs(t, ids.hash[i]);
	(void)itab_nodes(t, fo_walk_node, NULL);
	struct itab_statfs st;
	(void)itab_statfs(t, &st);
}

struct fo_dump {
	uint8_t *b;
	size_t len, cap;
};

static int fo_dump_write(void *ctx, const void *buf, size_t len)
{
	struct fo_dump *d = ctx;
	if (d->len + len > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 4096;
		while (cap < d->len + len)
			cap *= 2;
		uint8_t *nb = realloc(d->b, cap);
		if (!nb)
			abort();
		d->b = nb;
		d->cap = cap;
	}
	memcpy(d->b + d->len, buf, len);
	d->len += len;
	return 0;
}

/* The table's dump (itab_snapshot), malloc'ed into d. */
static inline void fo_dump(struct itab *t, struct fo_dump *d)
{
	memset(d, 0, sizeof *d);
	if (itab_snapshot(t, fo_dump_write, d) != 0)
		abort();
}
