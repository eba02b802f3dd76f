/*
 * itab_repair.c — ITAB_OP_REPAIR: fsck's fixes, applied through the log
 * like any other change (see itab_check.h for the rules).
 *
 * The idea: a repair op names a problem, not a new state. Each replica
 * looks for that problem in its own table when it applies the op and
 * fixes it only if it finds it; otherwise the op is refused (-ESTALE) and
 * changes nothing there. A replica is never made to take another
 * replica's view of what its state should be, and two replicas with the
 * same state compute the same result, so apply stays deterministic.
 * Every decision reads only replicated state (no clock, no node input).
 */
#include "fs/itab_check.h"
#include "fs/itab_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

struct dir_count {
	uint64_t entries;
	uint64_t subdirs;
};

/* Scan callback: count a directory's entries and subdirectories (by the
 * type the entry records, which is what apply keeps nlink by). */
static int count_one(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v,
                     size_t vl)
{
	struct dir_count *c = ctx;
	struct dent d;
	(void)k, (void)kl;
	if (dent_decode(v, vl, &d))
		return -EIO;
	c->entries++;
	if (is_type(d.type, S_IFDIR))
		c->subdirs++;
	return 0;
}

/* Count the entries of directory ino in the committed state. */
static int dir_count(struct txn *tx, uint64_t ino, struct dir_count *c)
{
	uint8_t p[KEY_MAX];
	memset(c, 0, sizeof(*c));
	int rc =
	    itab_scan(tx->t, p, key_ino(p, 'D', ino), NULL, 0, count_one, c);
	return rc ? txn_chk(tx, rc < 0 ? rc : -EIO) : 0;
}

/* Set a directory's nlink and size to what its entries say, less the
 * entries given in `less` (ones this op deletes). 0, or -EALREADY when
 * both were right. */
static int dir_recount(struct txn *tx, struct inode *dir,
                       const struct dir_count *less)
{
	struct dir_count c;
	int rc = dir_count(tx, dir->a.ino, &c);
	if (rc)
		return rc;
	c.entries -= less->entries < c.entries ? less->entries : c.entries;
	c.subdirs -= less->subdirs < c.subdirs ? less->subdirs : c.subdirs;
	uint64_t nlink = 2 + c.subdirs;
	if (dir->a.nlink == nlink && dir->a.size == c.entries)
		return -EALREADY;
	dir->a.nlink =
	    nlink > ITAB_NLINK_MAX ? ITAB_NLINK_MAX : (uint32_t)nlink;
	dir->a.size = c.entries;
	txn_dirty(tx, dir);
	return 0;
}

/* ITAB_REPAIR_DIR: recount a directory from its own entries. */
static int repair_dir(struct txn *tx)
{
	struct inode *dir;
	int rc = txn_get(tx, tx->op->ino, &dir);
	if (rc)
		return rc;
	if (!is_type(dir->a.mode, S_IFDIR))
		return -ENOTDIR;
	static const struct dir_count none;
	if ((rc = dir_recount(tx, dir, &none)))
		return rc;
	tx->res->ino = dir->a.ino;
	return 0;
}

/* ITAB_REPAIR_NLINK: nlink of a non-directory from the links the
 * proposer found, if it still has the nlink the proposer saw and every
 * one of those links exists here. */
static int repair_nlink(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct inode *in;
	int rc = txn_get(tx, op->ino, &in);
	if (rc)
		return rc;
	if (is_type(in->a.mode, S_IFDIR))
		return -EISDIR;
	if (in->a.nlink != op->size)
		return -ESTALE;
	struct rd r = {.p = op->value, .n = op->value_len};
	uint64_t n = 0;
	while (r.n > 0) {
		uint64_t parent = rd_u64(&r);
		uint16_t nl = rd_u16(&r);
		const char *name = (const char *)rd_bytes(&r, nl);
		if (r.bad || nl == 0 || nl > ITAB_NAME_MAX)
			return -EINVAL;
		/* the same link twice would count twice */
		struct rd s = {.p = op->value,
		               .n = (size_t)(name - (const char *)op->value) -
		                    10};
		while (s.n > 0) {
			uint64_t p2 = rd_u64(&s);
			uint16_t l2 = rd_u16(&s);
			const uint8_t *n2 = rd_bytes(&s, l2);
			if (!s.bad && p2 == parent && l2 == nl &&
			    memcmp(n2, name, nl) == 0)
				return -EINVAL;
		}
		struct dent d;
		rc = txn_chk(tx, db_dent(tx->t, parent, name, nl, &d));
		if (rc == -ENOENT || (rc == 0 && d.ino != op->ino))
			return -ESTALE;
		if (rc)
			return rc;
		n++;
	}
	if (n == 0)
		return -EINVAL;
	if (n > ITAB_NLINK_MAX)
		return -EMLINK;
	if (n == in->a.nlink)
		return -EALREADY;
	if (in->a.nlink == 0) {
		/* it was kept as an orphan: linked, it no longer is one */
		uint8_t k[KEY_MAX];
		leveldb_writebatch_delete(tx->wb, (char *)k,
		                          key_meta_u64(k, 'o', in->a.ino));
	}
	in->a.nlink = (uint32_t)n;
	txn_dirty(tx, in);
	tx->res->ino = in->a.ino;
	return 0;
}

/* ITAB_REPAIR_DENTRY: drop an entry whose inode does not exist here. */
static int repair_dentry(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct dent d;
	if (op->name_len == 0 || op->name_len > ITAB_NAME_MAX)
		return -EINVAL;
	int rc =
	    txn_chk(tx, db_dent(tx->t, op->parent, op->name, op->name_len, &d));
	if (rc == -ENOENT)
		return -ESTALE;
	if (rc)
		return rc;
	if (d.ino != op->ino)
		return -ESTALE;
	struct inode child;
	rc = txn_chk(tx, db_inode(tx->t, d.ino, &child));
	if (rc == 0)
		return -ESTALE; /* the inode exists here: nothing dangles */
	if (rc != -ENOENT)
		return rc;
	uint8_t k[KEY_MAX];
	leveldb_writebatch_delete(
	    tx->wb, (char *)k,
	    key_ino_name(k, 'D', op->parent, op->name, op->name_len));
	/* Its readdir record, if that is really this entry's. */
	char *v;
	size_t vl;
	size_t kl = key_ino_u64(k, 'C', op->parent, d.cookie);
	rc = txn_chk(tx, db_get(tx->t, NULL, k, kl, &v, &vl));
	if (rc && rc != -ENOENT)
		return rc;
	if (rc == 0) {
		bool same = vl >= 9 && be_get64((const uint8_t *)v) == d.ino &&
		            vl - 9 == op->name_len &&
		            memcmp(v + 9, op->name, op->name_len) == 0;
		leveldb_free(v);
		if (same)
			leveldb_writebatch_delete(tx->wb, (char *)k, kl);
	}
	struct inode *dir;
	rc = txn_get(tx, op->parent, &dir);
	if (rc == 0 && is_type(dir->a.mode, S_IFDIR)) {
		struct dir_count gone = {1, is_type(d.type, S_IFDIR) ? 1 : 0};
		rc = dir_recount(tx, dir, &gone);
		if (rc == -EALREADY)
			rc = 0;
		if (rc)
			return rc;
		tx->res->ino = dir->a.ino;
	} else if (rc && rc != -ENOENT) {
		return rc;
	}
	return 0;
}

/* ITAB_REPAIR_REFS: a block's reference count from the extents the
 * proposer counted, if it still has the count the proposer saw. */
static int repair_refs(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	if (op->value_len != ITAB_HASH_LEN)
		return -EINVAL;
	uint8_t k[1 + ITAB_HASH_LEN];
	k[0] = 'B';
	memcpy(k + 1, op->value, ITAB_HASH_LEN);
	char *v;
	size_t vl;
	uint64_t cur = 0;
	int rc = txn_chk(tx, db_get(tx->t, NULL, k, sizeof(k), &v, &vl));
	if (rc && rc != -ENOENT)
		return rc;
	if (rc == 0) {
		cur = vl == 8 ? be_get64((const uint8_t *)v) : 0;
		leveldb_free(v);
	}
	if (cur != op->size)
		return -ESTALE;
	if (op->rdev == cur)
		return -EALREADY;
	if (op->rdev > (uint64_t)INT64_MAX || cur > (uint64_t)INT64_MAX)
		return -EINVAL;
	return txn_ref_add(tx, op->value, (int64_t)op->rdev - (int64_t)cur);
}

/* Dispatch ITAB_OP_REPAIR by op->flags. */
int repair_op(struct txn *tx)
{
	switch (tx->op->flags) {
	case ITAB_REPAIR_DIR:
		return repair_dir(tx);
	case ITAB_REPAIR_NLINK:
		return repair_nlink(tx);
	case ITAB_REPAIR_DENTRY:
		return repair_dentry(tx);
	case ITAB_REPAIR_REFS:
		return repair_refs(tx);
	default:
		return -EINVAL;
	}
}
