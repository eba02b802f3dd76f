/*
 * itab_check.h — what a consistency checker (fsck) needs from the inode
 * table: every record of the table as of one point in time, decoded, and
 * the operation that repairs a problem through the Raft log.
 *
 * Views. itab_view_open() fixes a point in time (a LevelDB snapshot, and
 * the counters stored with it: applied index, next ino, #inodes, #blocks)
 * while holding the table's read lock for a moment, exactly as a Raft
 * snapshot does; the walks then read that state without any lock, beside
 * apply, so a long check never holds up the replicator or FUSE. Records
 * written after the view was opened are not seen.
 *
 * Repairs (ITAB_OP_REPAIR, op->flags one of ITAB_REPAIR_*). The table is
 * replicated: a repair must never make one replica unlike the others. So
 * a repair op does not carry "the right value" as the proposer sees it;
 * it carries the PROBLEM the proposer found, and every replica checks
 * that problem against its own state when it applies the op, and fixes
 * it only if it has that very problem there (-ESTALE otherwise: this
 * replica is fine, or the state changed since the check). Replicas that
 * share the problem get the same fix; replicas that do not are left
 * alone. The fixes:
 *
 *   ITAB_REPAIR_DIR     ino (a directory): recount nlink (2 + its
 *                       subdirectories) and size (its entries) from its
 *                       own entries; -EALREADY when both are right.
 *   ITAB_REPAIR_NLINK   ino (not a directory), size = the nlink the
 *                       proposer saw, value = the links it found
 *                       (itab_repair_links_encode): applies only while
 *                       ino's nlink is still that value and every listed
 *                       link (parent, name) exists here and names ino;
 *                       then nlink = the number of links. At least one
 *                       link (an inode without any is not relinked).
 *   ITAB_REPAIR_DENTRY  parent, name, ino: the entry (parent, name) names
 *                       ino and ino does not exist here: the entry (and
 *                       its readdir record) is dropped and the parent's
 *                       nlink and size recounted.
 *   ITAB_REPAIR_REFS    value = a block hash (32 bytes), size = the
 *                       reference count the proposer saw, rdev = the
 *                       number of extents it found naming the block:
 *                       applies only while the count is still that value;
 *                       then count = rdev (0 drops the record and lists
 *                       the block in res->freed).
 * Every repair also sets res->ino to the inode it changed (the parent
 * for DENTRY; 0 for REFS).
 *
 * Threads: as itab.h: views and walks from any thread, beside apply.
 */
#ifndef SANDFS_FS_ITAB_CHECK_H
#define SANDFS_FS_ITAB_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "fs/itab.h"

/* ITAB_OP_REPAIR kinds (op->flags; values are part of the log format). */
#define ITAB_REPAIR_DIR    1u
#define ITAB_REPAIR_NLINK  2u
#define ITAB_REPAIR_DENTRY 3u
#define ITAB_REPAIR_REFS   4u

struct itab_view;

/* The counters stored at the view's point in time. */
struct itab_view_info {
	uint64_t applied; /* log index the view is of */
	uint64_t next_ino;
	uint64_t inodes; /* live inodes the table counts */
	uint64_t blocks; /* distinct referenced blocks it counts */
	uint32_t block_size;
};

/* Fix the table's current state; *out is the caller's (itab_view_close
 * before itab_close). 0 or -ENOMEM. */
int itab_view_open(struct itab *t, struct itab_view **out);
void itab_view_close(struct itab *t, struct itab_view *v);
void itab_view_info(const struct itab_view *v, struct itab_view_info *info);

/* Record kinds, each a walk of its own (key order within a kind). */
enum itab_rec {
	ITAB_REC_INODE,    /* ino, attr, cookie = a directory's next cookie */
	ITAB_REC_DENTRY,   /* parent, name -> ino, type, cookie */
	ITAB_REC_COOKIE,   /* parent, cookie -> ino, type, name (readdir) */
	ITAB_REC_EXTENT,   /* ino, index -> hash, len */
	ITAB_REC_BLOCKREF, /* hash -> count */
	ITAB_REC_SYMLINK,  /* ino -> len (the target's length) */
	ITAB_REC_XATTR,    /* ino, name */
	ITAB_REC_ORPHAN,   /* ino -> count = the node keeping it (0: its open
	                      records) */
	ITAB_REC_OPEN,     /* ino, count = the node holding it open */
	ITAB_REC_BAD, /* a record of the walked kind that does not decode: key,
	                 why */
};

/* One record; every pointer is borrowed for the callback only. */
struct itab_record {
	enum itab_rec kind;
	uint64_t ino;
	uint64_t parent;
	const char *name;
	size_t name_len;
	uint32_t type; /* S_IFMT bits */
	uint64_t cookie;
	uint64_t index;
	const uint8_t *hash; /* ITAB_HASH_LEN bytes */
	uint32_t len;
	uint64_t count;
	struct itab_attr attr;
	const uint8_t *key; /* the raw key */
	size_t key_len;
	const char *why; /* ITAB_REC_BAD */
};

/* Return non-zero to stop the walk (that value is returned). */
typedef int (*itab_record_fn)(void *ctx, const struct itab_record *r);

/* Walk every record of `kind` in the view; records that do not decode
 * come as ITAB_REC_BAD (and the walk goes on). 0, the callback's value,
 * or -EIO (LevelDB). Callbacks may call itab_view_* functions (no lock
 * is held) but not the locking itab.h reads. */
int itab_view_walk(struct itab *t, struct itab_view *v, enum itab_rec kind,
                   itab_record_fn cb, void *ctx);

/* The readdir record (parent, cookie) in the view: 0 with *ino, *type and
 * the name (up to cap bytes; *name_len its full length), -ENOENT, -EIO
 * (or a record that does not decode). */
int itab_view_cookie(struct itab *t, struct itab_view *v, uint64_t parent,
                     uint64_t cookie, uint64_t *ino, uint32_t *type, char *name,
                     size_t cap, size_t *name_len);

/* The inode ino in the view: 0, -ENOENT, -EIO. */
int itab_view_inode(struct itab *t, struct itab_view *v, uint64_t ino,
                    struct itab_attr *attr);

/* ITAB_REPAIR_NLINK's list of links: n x (u64 parent, u16 name length,
 * name). encode returns the bytes written (needs 10 + name_len each), or
 * -ENOSPC when cap is short. */
struct itab_link {
	uint64_t parent;
	const char *name;
	size_t name_len;
};
long itab_repair_links_encode(const struct itab_link *links, size_t n,
                              uint8_t *buf, size_t cap);

#endif
