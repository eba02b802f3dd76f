/*
 * itab_check.c — views of the inode table at one point in time, decoded
 * record by record, for fsck (see itab_check.h). The repair op is in
 * itab_repair.c.
 *
 * A view is a LevelDB snapshot taken under the table's read lock together
 * with the counters of that moment, so the records and the applied index
 * describe the same state. Walks and lookups read the snapshot without
 * the lock: LevelDB serves them from the snapshot whatever apply writes
 * meanwhile.
 */
#include "fs/itab_check.h"

#include "fs/itab_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct itab_view {
	const leveldb_snapshot_t *snap;
	leveldb_readoptions_t *ro;
	struct itab_view_info info;
};

/* See itab_check.h. */
int itab_view_open(struct itab *t, struct itab_view **out)
{
	struct itab_view *v = calloc(1, sizeof(*v));
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	if (!v || !ro) {
		free(v);
		if (ro)
			leveldb_readoptions_destroy(ro);
		return -ENOMEM;
	}
	pthread_rwlock_rdlock(&t->lock);
	v->snap = leveldb_create_snapshot(t->db);
	v->info.applied = t->ctr.applied;
	v->info.next_ino = t->ctr.next_ino;
	v->info.inodes = t->ctr.inodes;
	v->info.blocks = t->ctr.blocks;
	pthread_rwlock_unlock(&t->lock);
	v->info.block_size = t->block_size;
	leveldb_readoptions_set_snapshot(ro, v->snap);
	/* A whole-table pass must not push the hot blocks out of the cache. */
	leveldb_readoptions_set_fill_cache(ro, 0);
	v->ro = ro;
	*out = v;
	return 0;
}

/* See itab_check.h. */
void itab_view_close(struct itab *t, struct itab_view *v)
{
	if (!v)
		return;
	leveldb_readoptions_destroy(v->ro);
	leveldb_release_snapshot(t->db, v->snap);
	free(v);
}

/* See itab_check.h. */
void itab_view_info(const struct itab_view *v, struct itab_view_info *info)
{
	*info = v->info;
}

struct walk {
	enum itab_rec kind;
	itab_record_fn cb;
	void *ctx;
};

/* Hand a record that does not decode to the callback. */
static int bad(struct walk *w, const uint8_t *k, size_t kl, const char *why)
{
	struct itab_record r = {
	    .kind = ITAB_REC_BAD, .key = k, .key_len = kl, .why = why};
	if (kl >= 9)
		r.ino = be_get64(k + 1);
	return w->cb(w->ctx, &r);
}

/* One raw record of the walked kind -> decoded callback. */
static int walk_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v,
                    size_t vl)
{
	struct walk *w = ctx;
	struct itab_record r = {.kind = w->kind, .key = k, .key_len = kl};
	switch (w->kind) {
	case ITAB_REC_INODE: {
		struct inode in;
		if (kl != 9)
			return bad(w, k, kl, "inode key of the wrong length");
		if (inode_decode(be_get64(k + 1), v, vl, &in))
			return bad(w, k, kl, "inode record does not decode");
		r.ino = in.a.ino;
		r.attr = in.a;
		r.cookie = in.next_cookie;
		break;
	}
	case ITAB_REC_DENTRY: {
		struct dent d;
		if (kl < 10 || kl > 9 + ITAB_NAME_MAX)
			return bad(w, k, kl,
			           "directory entry key of the wrong length");
		if (dent_decode(v, vl, &d))
			return bad(w, k, kl, "directory entry does not decode");
		r.parent = be_get64(k + 1);
		r.name = (const char *)k + 9;
		r.name_len = kl - 9;
		r.ino = d.ino;
		r.type = d.type;
		r.cookie = d.cookie;
		break;
	}
	case ITAB_REC_COOKIE:
		if (kl != 17 || vl < 10 || vl > 9 + ITAB_NAME_MAX)
			return bad(w, k, kl,
			           "readdir record of the wrong length");
		r.parent = be_get64(k + 1);
		r.cookie = be_get64(k + 9);
		r.ino = be_get64(v);
		r.type = (uint32_t)v[8] << 12;
		r.name = (const char *)v + 9;
		r.name_len = vl - 9;
		break;
	case ITAB_REC_EXTENT:
		if (kl != 17 || vl != ITAB_HASH_LEN + 4)
			return bad(w, k, kl,
			           "extent record of the wrong length");
		r.ino = be_get64(k + 1);
		r.index = be_get64(k + 9);
		r.hash = v;
		r.len = be_get32(v + ITAB_HASH_LEN);
		break;
	case ITAB_REC_BLOCKREF:
		if (kl != 1 + ITAB_HASH_LEN || vl != 8)
			return bad(
			    w, k, kl,
			    "block reference record of the wrong length");
		r.hash = k + 1;
		r.count = be_get64(v);
		break;
	case ITAB_REC_SYMLINK:
		if (kl != 9)
			return bad(w, k, kl, "symlink key of the wrong length");
		r.ino = be_get64(k + 1);
		r.len = (uint32_t)vl;
		break;
	case ITAB_REC_XATTR:
		if (kl < 10 || kl > 9 + ITAB_XATTR_NAME_MAX)
			return bad(w, k, kl, "xattr key of the wrong length");
		r.ino = be_get64(k + 1);
		r.name = (const char *)k + 9;
		r.name_len = kl - 9;
		break;
	case ITAB_REC_ORPHAN:
		if (kl != 10 || vl != 8)
			return bad(w, k, kl,
			           "orphan record of the wrong length");
		r.ino = be_get64(k + 2);
		r.count = be_get64(v);
		break;
	case ITAB_REC_OPEN:
		if (kl != 17 || vl != 16)
			return bad(w, k, kl, "open record of the wrong length");
		r.ino = be_get64(k + 1);
		r.count = be_get64(k + 9);
		break;
	default:
		return -EINVAL;
	}
	return w->cb(w->ctx, &r);
}

/* See itab_check.h. */
int itab_view_walk(struct itab *t, struct itab_view *v, enum itab_rec kind,
                   itab_record_fn cb, void *ctx)
{
	static const char pfx[] = {
	    [ITAB_REC_INODE] = 'I',    [ITAB_REC_DENTRY] = 'D',
	    [ITAB_REC_COOKIE] = 'C',   [ITAB_REC_EXTENT] = 'E',
	    [ITAB_REC_BLOCKREF] = 'B', [ITAB_REC_SYMLINK] = 'L',
	    [ITAB_REC_XATTR] = 'X',    [ITAB_REC_ORPHAN] = 'M',
	    [ITAB_REC_OPEN] = 'O',
	};
	if ((unsigned)kind >= ITAB_REC_BAD)
		return -EINVAL;
	uint8_t p[2] = {(uint8_t)pfx[kind], 'o'};
	size_t pl = kind == ITAB_REC_ORPHAN ? 2 : 1;
	struct walk w = {kind, cb, ctx};
	return itab_scan_at(t, v->ro, p, pl, NULL, 0, walk_one, &w);
}

/* See itab_check.h. */
int itab_view_cookie(struct itab *t, struct itab_view *v, uint64_t parent,
                     uint64_t cookie, uint64_t *ino, uint32_t *type, char *name,
                     size_t cap, size_t *name_len)
{
	uint8_t k[KEY_MAX];
	char *val;
	size_t vl;
	int rc =
	    db_get(t, v->ro, k, key_ino_u64(k, 'C', parent, cookie), &val, &vl);
	if (rc)
		return rc;
	if (vl < 9) {
		leveldb_free(val);
		return -EIO;
	}
	const uint8_t *p = (const uint8_t *)val;
	*ino = be_get64(p);
	*type = (uint32_t)p[8] << 12;
	*name_len = vl - 9;
	memcpy(name, p + 9, vl - 9 < cap ? vl - 9 : cap);
	leveldb_free(val);
	return 0;
}

/* See itab_check.h. */
int itab_view_inode(struct itab *t, struct itab_view *v, uint64_t ino,
                    struct itab_attr *attr)
{
	uint8_t k[KEY_MAX];
	char *val;
	size_t vl;
	struct inode in;
	int rc = db_get(t, v->ro, k, key_ino(k, 'I', ino), &val, &vl);
	if (rc)
		return rc;
	rc = inode_decode(ino, val, vl, &in);
	leveldb_free(val);
	if (rc == 0)
		*attr = in.a;
	return rc;
}

/* See itab_check.h. */
long itab_repair_links_encode(const struct itab_link *links, size_t n,
                              uint8_t *buf, size_t cap)
{
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		if (links[i].name_len > ITAB_NAME_MAX)
			return -EINVAL;
		if (cap - off < 10 + links[i].name_len)
			return -ENOSPC;
		be_put64(buf + off, links[i].parent);
		be_put16(buf + off + 8, (uint16_t)links[i].name_len);
		memcpy(buf + off + 10, links[i].name, links[i].name_len);
		off += 10 + links[i].name_len;
	}
	return (long)off;
}
