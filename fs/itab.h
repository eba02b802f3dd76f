/*
 * itab — the replicated inode table, sandfs's deterministic state machine.
 *
 * Every metadata change of the filesystem is an `struct itab_op`, encoded
 * with itab_op_encode() into a Raft log entry. Every node applies the same
 * committed entries in the same order with itab_apply() and therefore holds
 * the same table. Apply never reads the clock, the caller's credentials or
 * any other node-local input: the proposer stamps "now", uid/gid, umask and
 * so on into the op; new inode numbers come from a replicated counter.
 *
 * Storage: itab owns one LevelDB at the path given to itab_open(). Keys
 * (every integer big-endian so keys sort numerically):
 *
 *   'I' ino                       -> inode attributes (+ dir cookie counter)
 *   'D' parent ino, name          -> child ino, type, readdir cookie
 *   'C' parent ino, cookie        -> child ino, type, name   (readdir order)
 *   'L' ino                       -> symlink target
 *   'X' ino, name                 -> xattr value (POSIX ACLs included:
 *                                    "system.posix_acl_access"/"_default",
 *                                    Linux's little-endian xattr format)
 *   'E' ino, block index          -> block hash (32 bytes), valid length
 *   'B' block hash                -> reference count
 *   'M' 'K'                       -> config: format, block size, cluster id
 *   'M' 'S'                       -> next ino, applied index, #inodes, #blocks
 *   'M' 'd' origin, seq           -> remembered result of a request
 *   'M' 'w' origin                -> per-origin dedupe low-water mark
 *   'M' 'o' ino                   -> orphan (nlink 0, kept until released):
 *                                    the node holding it open (u64; 0 when
 *                                    the 'O' records below keep it)
 *   'M' 'n' node                  -> lock lease of a node: lease generation,
 *                                    index of its last lease op, #locks it
 *                                    holds, #inodes it holds open (4 x u64)
 *   'K' ino, kind(u8), node, owner, start
 *                                 -> a lock: end (u64, inclusive), type (u8),
 *                                    pid (u32), holder's incarnation (u64)
 *   'O' ino, node                 -> node holds ino open: incarnation, open
 *                                    sequence (2 x u64)
 *
 * Atomicity and durability: one log entry is applied as ONE LevelDB
 * WriteBatch that also carries the applied index and the dedupe record, so
 * a crash never leaves half an operation. Writes use sync=false: the Raft
 * log is the durable record; after a crash the node replays committed
 * entries above its stored applied index.
 *
 * Rules chosen here (every node must agree, so they are part of the format):
 *  - A change whose parent directory inode no longer exists fails with
 *    -ESTALE, not -ENOENT (the kernel then resolves the path again).
 *  - Root is ino 1, created by itab_open() on an empty DB: directory 0755,
 *    uid/gid 0, all times 0, generation 1. Inode numbers are never reused.
 *  - generation of an inode = log index of the entry that created it.
 *  - Directory size = number of entries (without "." and ".."); directory
 *    nlink = 2 + number of subdirectories.
 *  - st_blocks ("blocks") = sum over the inode's extents of ceil(len/512).
 *  - A file's data is a list of extents: block index -> (hash, len). The
 *    bytes of a block past its len, and every block without an extent, read
 *    as zeros. Apply keeps every extent inside the file size (truncate
 *    shortens or drops extents), so growing a file never shows old bytes.
 *  - Open files: a node records that it holds an inode open ('O' record,
 *    ITAB_OP_OPEN, or CREATE with ITAB_F_OPEN) at its first open of it and
 *    drops the record at its last close (ITAB_OP_CLOSE). When a file's
 *    nlink reaches 0 it becomes an ORPHAN (inode, xattrs and extents kept,
 *    'M''o' record) while any node holds it open; the CLOSE (or
 *    RELEASE_NODE) that drops its last 'O' record frees it. With no 'O'
 *    record it is freed at once if the op carries ITAB_F_FREE_NOW (what
 *    every proposer sends now); without that flag (entries of the format
 *    before 'O' records) it stays an orphan held by the op's origin until
 *    an explicit ITAB_OP_RELEASE_ORPHAN (refused while 'O' records exist).
 *    Freeing deletes inode + extents and drops the block references.
 *    Directories are deleted at once by RMDIR.
 *  - Locks (see struct itab_lock): flock (kind FLOCK, whole file) and
 *    POSIX/OFD byte-range locks (kind POSIX) of an owner = (node, owner on
 *    that node). The two kinds never conflict with each other. A request
 *    conflicts with a lock of another owner of the same kind when the
 *    ranges overlap and either is a write lock; a conflict is -EAGAIN and
 *    changes nothing, except that a flock conversion drops the owner's old
 *    lock first as Linux does. Otherwise the owner's locks over the range
 *    are replaced: split where the range cuts them, the new range added,
 *    then merged with the owner's adjacent or overlapping locks of the
 *    same type; UNLOCK only removes. Leases: every lock op and LOCK_RENEW
 *    of a node records its log index as the node's lease index; an op
 *    carrying a lease generation other than the node's gets -ESTALE. A
 *    RELEASE_NODE that drops locks bumps the generation; one with `since`
 *    applies only while the lease index still equals it (so a leader that
 *    saw no renewal since index `since` for a whole lease can release a
 *    silent node's locks, and a renewal that got in first wins).
 *  - POSIX ACLs (itab_acl.h) are xattrs with rules of their own, those of
 *    Linux: a SETXATTR of one is checked (-EINVAL) and stored canonical;
 *    a default ACL only on directories (-EACCES); an access ACL sets the
 *    mode's 0777 bits (owner, mask or group, other) and is not stored when
 *    the mode says it all; removing a missing ACL succeeds. A SETATTR of
 *    the mode rewrites the access ACL's owner, mask (or group) and other
 *    entries. CREATE and MKDIR in a directory with a default ACL ignore
 *    the op's umask and inherit: the new inode gets the default ACL
 *    limited by the create mode as its access ACL, a directory also gets
 *    it as its default ACL. Inheritance reads only the parent's
 *    replicated ACL, so every node computes the same result.
 *  - Dedupe: an op carrying (origin != 0, seq) is applied at most once. The
 *    last ITAB_DEDUPE_KEEP results per origin are kept; a retry of one of
 *    those returns the first result. A seq below the origin's low-water
 *    mark (its result was evicted) is not applied again and returns
 *    -ESTALE. Origins must never reuse a seq (e.g. persist a counter).
 *
 * Threads: itab_apply(), itab_restore() and itab_close() run on one thread
 * (the apply thread). The read functions may run on any number of other
 * threads at the same time: a read-write lock makes each apply's batch and
 * in-memory counters visible at once, so a reader never sees half an op.
 * Read callbacks run under the read lock and must not call any itab
 * function (the lock prefers the writer: a nested read lock would wait
 * behind a waiting apply that waits for the outer one).
 */
#ifndef SANDFS_FS_ITAB_H
#define SANDFS_FS_ITAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ITAB_ROOT_INO 1
#define ITAB_NAME_MAX 255          /* longer names: -ENAMETOOLONG */
#define ITAB_SYMLINK_MAX 4095      /* longer targets: -ENAMETOOLONG */
#define ITAB_XATTR_NAME_MAX 255    /* longer (or empty) names: -ERANGE */
#define ITAB_XATTR_SIZE_MAX 65536  /* longer values: -E2BIG */
#define ITAB_NLINK_MAX 65000       /* more links: -EMLINK */
#define ITAB_HASH_LEN 32           /* SHA-256 of a block */
#define ITAB_MAX_EXTENTS 16384     /* per WRITE op */
#define ITAB_DEDUPE_KEEP 64        /* results remembered per origin */
#define ITAB_COOKIE_FIRST 3        /* readdir cookies 0..2 are free for ".", ".." */
#define ITAB_DEFAULT_BLOCK_SIZE 65536

/* Operation codes (values are part of the log format: never renumber). */
enum itab_opcode {
	ITAB_OP_NOOP = 0,           /* advances the applied index only */
	ITAB_OP_CREATE = 1,         /* parent,name,mode(type: REG/FIFO/SOCK/CHR/BLK),umask,rdev,uid,gid */
	ITAB_OP_MKDIR = 2,          /* parent,name,mode,umask,uid,gid */
	ITAB_OP_SYMLINK = 3,        /* parent,name,target,uid,gid */
	ITAB_OP_LINK = 4,           /* ino -> parent,name */
	ITAB_OP_UNLINK = 5,         /* parent,name [ITAB_F_FREE_NOW] */
	ITAB_OP_RMDIR = 6,          /* parent,name */
	ITAB_OP_RENAME = 7,         /* parent,name -> newparent,newname [NOREPLACE|EXCHANGE|FREE_NOW] */
	ITAB_OP_SETATTR = 8,        /* ino, valid, mode,uid,gid,size,atime,mtime,ctime */
	ITAB_OP_SETXATTR = 9,       /* ino, xname, value [XATTR_CREATE|XATTR_REPLACE] */
	ITAB_OP_REMOVEXATTR = 10,   /* ino, xname */
	ITAB_OP_WRITE = 11,         /* ino, extents, size (file grows to >= size), mtime if valid&MTIME
				       [ITAB_F_IF_SIZE: only if the size is rdev, else -EAGAIN] */
	ITAB_OP_RELEASE_ORPHAN = 12,/* ino: free it if its nlink is 0 and nobody holds it open */
	ITAB_OP_SETLK = 13,         /* ino, value = itab_lock: lock, convert or unlock a range */
	ITAB_OP_LOCK_RENEW = 14,    /* value = itab_lock (gen): renew the origin's lock lease */
	ITAB_OP_RELEASE_NODE = 15,  /* value = itab_lock (node, incarnation kept, since, what) */
	ITAB_OP_OPEN = 16,          /* ino, value = itab_lock (incarnation, seq): origin holds ino open */
	ITAB_OP_CLOSE = 17,         /* ino, value = itab_lock (incarnation, seq): origin closed it */
	ITAB_OP_REPAIR = 18,        /* fsck: fix one problem IF this replica has it (flags =
				       ITAB_REPAIR_*; see itab_check.h) */
	ITAB_OP__COUNT
};

/* op->flags. The rename and xattr values equal Linux's RENAME_* / XATTR_*. */
#define ITAB_RENAME_NOREPLACE 0x1u
#define ITAB_RENAME_EXCHANGE 0x2u
#define ITAB_XATTR_CREATE 0x1u
#define ITAB_XATTR_REPLACE 0x2u
#define ITAB_F_FREE_NOW 0x100u /* UNLINK/RENAME: free a victim at nlink 0 unless held open */
#define ITAB_F_KILL_SGID 0x200u /* SETXATTR of an access ACL: the caller may not keep
				  * setgid (not in the file's group, not privileged) */
#define ITAB_F_IF_SIZE 0x400u  /* WRITE: an append placed at size op->rdev; -EAGAIN if the
				  * file's size is no longer that */
#define ITAB_F_OPEN 0x800u     /* CREATE: the origin holds the new file open (value = itab_lock) */

/* Lock kinds, types and RELEASE_NODE parts (values are part of the format). */
#define ITAB_LK_POSIX 1     /* fcntl / OFD byte-range locks */
#define ITAB_LK_FLOCK 2     /* flock(2): always the whole file */
#define ITAB_LK_UNLOCK 0
#define ITAB_LK_READ 1
#define ITAB_LK_WRITE 2
#define ITAB_LK_EOF UINT64_MAX /* end of a range that runs to the end of the file */
#define ITAB_REL_LOCKS 0x1u /* RELEASE_NODE: the node's locks */
#define ITAB_REL_OPENS 0x2u /* RELEASE_NODE: the node's open records */
#define ITAB_LOCK_ENC_LEN 75

/*
 * The payload (op->value, ITAB_LOCK_ENC_LEN bytes from itab_lock_encode)
 * of the lock and open-file ops, and a lock as itab_getlk() reports it.
 * The node is the op's origin except in RELEASE_NODE (the node released).
 */
struct itab_lock {
	uint8_t kind;         /* ITAB_LK_POSIX / ITAB_LK_FLOCK */
	uint8_t type;         /* ITAB_LK_UNLOCK / READ / WRITE */
	uint64_t owner;       /* lock owner on its node (FUSE lock_owner) */
	uint64_t start, end;  /* inclusive byte range; end ITAB_LK_EOF: to the end */
	uint32_t pid;         /* process that asked (for F_GETLK) */
	uint64_t node;        /* RELEASE_NODE: the node; a reported lock: its holder */
	uint64_t incarnation; /* the holder's process life (RELEASE_NODE: kept, 0 none) */
	uint64_t gen;         /* SETLK/LOCK_RENEW: the lease generation the node holds */
	uint64_t since;       /* RELEASE_NODE: only while the lease index is this (0: always) */
	uint32_t what;        /* RELEASE_NODE: ITAB_REL_* */
	uint64_t seq;         /* OPEN/CLOSE/CREATE+ITAB_F_OPEN: the node's open sequence */
};

/* A node's lease record ('M''n'); all zero for a node never seen. */
struct itab_node_rec {
	uint64_t node;
	uint64_t gen;       /* bumped by every RELEASE_NODE that drops its locks */
	uint64_t lease_idx; /* log index of its last lock op or LOCK_RENEW */
	uint64_t nlocks;    /* locks it holds */
	uint64_t nopen;     /* inodes it holds open ('O' records) */
};

/* op->valid for SETATTR (and ITAB_SET_MTIME for WRITE). Times are explicit:
 * the caller resolves "now" requests into op->now_ns before proposing. */
#define ITAB_SET_MODE 0x01u
#define ITAB_SET_UID 0x02u
#define ITAB_SET_GID 0x04u
#define ITAB_SET_SIZE 0x08u
#define ITAB_SET_ATIME 0x10u
#define ITAB_SET_MTIME 0x20u
#define ITAB_SET_CTIME 0x40u

/* One block of a file: bytes [index*block_size, +len) are the first len
 * bytes of the block named hash. An all-zero hash is a hole (len ignored). */
struct itab_extent {
	uint64_t index;
	uint8_t hash[ITAB_HASH_LEN];
	uint32_t len;
};

/*
 * One operation. Strings are (pointer, length), not NUL-terminated, and
 * borrowed: after itab_op_decode() they point into the decoded buffer.
 * Fields an op does not use are ignored (and encoded as given).
 */
struct itab_op {
	uint8_t code;        /* enum itab_opcode */
	uint32_t flags;      /* ITAB_RENAME_*, ITAB_XATTR_*, ITAB_F_* */
	uint64_t origin;     /* proposing node id; 0 = no dedupe */
	uint64_t seq;        /* request sequence number, unique per origin */
	int64_t now_ns;      /* the proposer's "now": ctime/mtime stamps */
	uint64_t ino;        /* LINK source, SETATTR/xattr/WRITE/RELEASE target;
	                        RENAME: the inode the source name must still
	                        name (0: any), else -ESTALE */
	uint64_t parent;
	uint64_t newparent;  /* RENAME, and LINK's directory is `parent` */
	uint32_t mode;       /* CREATE/MKDIR: type + permission bits; SETATTR: new mode */
	uint32_t umask;      /* CREATE/MKDIR: mode &= ~umask (unless the parent has a default ACL) */
	uint32_t uid, gid;
	uint64_t rdev;
	uint32_t valid;      /* ITAB_SET_* */
	uint64_t size;       /* SETATTR new size; WRITE minimum size after write */
	int64_t atime_ns, mtime_ns, ctime_ns;
	const char *name;     size_t name_len;
	const char *newname;  size_t newname_len;
	const char *xname;    size_t xname_len;   /* xattr name */
	const void *value;    size_t value_len;   /* xattr value */
	const char *target;   size_t target_len;  /* symlink target */
	const struct itab_extent *extents; size_t n_extents; /* WRITE, sorted by index */
};

/* Inode attributes. */
struct itab_attr {
	uint64_t ino;
	uint32_t mode;        /* S_IFMT type + permission bits */
	uint32_t uid, gid;
	uint32_t nlink;
	uint64_t size;
	uint64_t rdev;
	int64_t atime_ns, mtime_ns, ctime_ns;
	uint64_t generation;
	uint64_t blocks;      /* st_blocks, 512-byte units */
	uint64_t parent;      /* directories: containing directory (root: 1); others 0 */
};

/* Result of applying one entry. */
struct itab_result {
	int err;              /* 0 or the op's negative errno (for the kernel) */
	bool skipped;         /* log index <= applied index: nothing done */
	bool duplicate;       /* (origin,seq) seen before: first result returned */
	uint64_t ino;         /* inode the op created / changed (0 if none) */
	struct itab_attr attr;/* its attributes after the op (if ino != 0) */
	uint64_t victim;      /* UNLINK/RMDIR/RENAME: inode whose link was removed */
	uint64_t orphaned;    /* inode that reached nlink 0 and was kept as orphan */
	/* RELEASE_NODE: res->ino is the node's lease generation after the op. */
	/* Blocks whose reference count reached zero: delete them from the block
	 * store after itab_apply() returns (re-check itab_block_refs() first if
	 * a later WRITE could reuse them). Borrowed: valid until the next
	 * itab_apply()/itab_restore()/itab_close() on this itab. */
	const uint8_t (*freed)[ITAB_HASH_LEN];
	size_t n_freed;
};

struct itab_config {
	uint32_t block_size;  /* bytes; 0 = ITAB_DEFAULT_BLOCK_SIZE. Fixed at creation */
	uint64_t cluster_id;  /* 0 = accept whatever the DB holds */
};

struct itab_statfs {
	uint64_t inodes;      /* live inodes (orphans included) */
	uint64_t blocks;      /* distinct referenced blocks */
	uint32_t block_size;
	uint64_t next_ino;
};

struct itab;

/* Encoded size of op (bytes), or 0 if a field is out of range. */
size_t itab_op_encoded_size(const struct itab_op *op);

/* Encode op into buf (cap bytes). Returns the length written, or -ENOSPC
 * if cap is too small, or -EINVAL for out-of-range fields. */
long itab_op_encode(const struct itab_op *op, void *buf, size_t cap);

/* Decode buf into *op. Bounds-checked; -EINVAL on malformed input. On
 * success the strings in op point into buf (borrowed) and op->extents is
 * allocated: release it with itab_op_release(). On error nothing to free. */
int itab_op_decode(const void *buf, size_t len, struct itab_op *op);

/* Free what itab_op_decode() allocated (safe on a zeroed op). */
void itab_op_release(struct itab_op *op);

/* Open (creating if missing, with root) the table at path. cfg may be NULL.
 * Returns 0 and *out (caller closes with itab_close), or -EINVAL if the DB
 * belongs to another cluster or block size, -EIO on LevelDB errors. */
int itab_open(const char *path, const struct itab_config *cfg, struct itab **out);

/* itab_open that says why it failed: a one-line reason naming path goes
 * to err (errcap bytes; err may be NULL), and LevelDB's refusals get
 * their own errno: -EBUSY (another process has the table open), -EUCLEAN
 * (damaged), -EACCES, -ENOTDIR, -ENOSPC, else -EIO. */
int itab_open_err(const char *path, const struct itab_config *cfg,
		  struct itab **out, char *err, size_t errcap);

/* Close and free. NULL is ignored. */
void itab_close(struct itab *t);

/*
 * Apply the committed log entry at log_index. Returns 0 (the op's own
 * outcome, success or errno, is in res->err) or -EIO if LevelDB failed (the
 * table must then be considered broken; nothing of the entry was applied).
 * An index <= itab_applied_index() is skipped (res->skipped). A malformed
 * entry applies as a no-op with res->err = -EINVAL (the index advances).
 */
int itab_apply(struct itab *t, uint64_t log_index, const void *entry, size_t len,
	       struct itab_result *res);

/* Highest applied log index (0 for a fresh table). */
uint64_t itab_applied_index(struct itab *t);

/* Make every batch applied so far durable (one synced LevelDB write). Any
 * thread. Read idx = itab_applied_index() BEFORE calling: on success every
 * entry up to idx survives power loss (e.g. before compacting the raft log).
 * 0 or -EIO. */
int itab_sync(struct itab *t);

/* Attributes of ino: 0, -ENOENT. */
int itab_getattr(struct itab *t, uint64_t ino, struct itab_attr *attr);

/* Look up name in dir parent; "." and ".." are resolved. attr may be NULL.
 * 0, -ENOENT, -ENOTDIR, -ENAMETOOLONG. */
int itab_lookup(struct itab *t, uint64_t parent, const char *name, size_t name_len,
		uint64_t *ino, struct itab_attr *attr);

/* readdir callback: one entry; cookie is its stable offset (>= ITAB_COOKIE_FIRST;
 * resume after it with start = cookie + 1). type is the S_IFMT bits. name is
 * borrowed for the call. Return non-zero to stop. */
typedef int (*itab_dirent_cb)(void *ctx, const char *name, size_t name_len, uint64_t ino,
			      uint32_t type, uint64_t cookie);

/* Enumerate entries of dir with cookie >= start in cookie order (creation
 * order). "." and ".." are not listed. 0, -ENOENT, -ENOTDIR. */
int itab_readdir(struct itab *t, uint64_t dir, uint64_t start, itab_dirent_cb cb, void *ctx);

/* Copy the symlink target into buf (cap bytes, no NUL added). Returns the
 * full target length (may exceed cap: truncated copy), -ENOENT, -EINVAL if
 * not a symlink. */
long itab_readlink(struct itab *t, uint64_t ino, char *buf, size_t cap);

/* getxattr semantics: cap 0 returns the value size; too small -ERANGE;
 * missing -ENODATA; no inode -ENOENT. Returns the value length. */
long itab_getxattr(struct itab *t, uint64_t ino, const char *name, size_t name_len, void *buf,
		   size_t cap);

/* listxattr semantics: names NUL-separated in name order; cap 0 returns the
 * size needed; too small -ERANGE. */
long itab_listxattr(struct itab *t, uint64_t ino, char *buf, size_t cap);

/* extent callback; hash and len describe the block; return non-zero to stop. */
typedef int (*itab_extent_cb)(void *ctx, uint64_t index, const uint8_t hash[ITAB_HASH_LEN],
			      uint32_t len);

/* Enumerate extents of ino with index in [first, first+n) (holes are not
 * reported). 0, -ENOENT. */
int itab_extents(struct itab *t, uint64_t ino, uint64_t first, uint64_t n, itab_extent_cb cb,
		 void *ctx);

/* Enumerate every block some extent references (hash order); return
 * non-zero to stop. Used after a snapshot install or a restart to fetch
 * blocks this node lacks. May see a state a little older than the latest
 * apply; never holds up apply. */
int itab_blocks(struct itab *t,
		int (*cb)(void *ctx, const uint8_t hash[ITAB_HASH_LEN]),
		void *ctx);

/* Reference count of a block (0 if unknown). */
uint64_t itab_block_refs(struct itab *t, const uint8_t hash[ITAB_HASH_LEN]);

/* Enumerate orphans (nlink 0 inodes kept alive); return non-zero to stop. */
int itab_orphans(struct itab *t, int (*cb)(void *ctx, uint64_t ino), void *ctx);

/* Enumerate the orphans kept alive for node `holder` (the origin of the op
 * that removed their last link). A node that restarts holds no handle, so
 * it releases these at mount. */
int itab_orphans_held_by(struct itab *t, uint64_t holder,
			 int (*cb)(void *ctx, uint64_t ino), void *ctx);

/* Encode / decode the lock payload; decode: 0 or -EINVAL (wrong length
 * or version). */
void itab_lock_encode(const struct itab_lock *lk, uint8_t out[ITAB_LOCK_ENC_LEN]);
int itab_lock_decode(const void *buf, size_t len, struct itab_lock *lk);

/* F_GETLK: the first lock (in key order) of ino that conflicts with req
 * held by an owner other than (node, req->owner); req->type READ or
 * WRITE. Returns 1 and fills *conflict (its node in conflict->node), 0 if
 * none, -EINVAL for a bad request. */
int itab_getlk(struct itab *t, uint64_t ino, uint64_t node, const struct itab_lock *req,
	       struct itab_lock *conflict);

/* Enumerate the locks of ino (kind 0: both kinds) held by node (0: any),
 * in key order; return non-zero to stop. lk is borrowed for the call. */
int itab_locks(struct itab *t, uint64_t ino, uint8_t kind, uint64_t node,
	       int (*cb)(void *ctx, const struct itab_lock *lk), void *ctx);

/* The lease record of node (zeroed with rec->node set if none): 0 / -EIO. */
int itab_node_get(struct itab *t, uint64_t node, struct itab_node_rec *rec);

/* Enumerate every lease record (node order); return non-zero to stop. */
int itab_nodes(struct itab *t, int (*cb)(void *ctx, const struct itab_node_rec *rec),
	       void *ctx);

/* Enumerate the nodes holding ino open ('O' records) with their
 * incarnation and open sequence; return non-zero to stop. */
int itab_open_holders(struct itab *t, uint64_t ino,
		      int (*cb)(void *ctx, uint64_t node, uint64_t incarnation, uint64_t seq),
		      void *ctx);

/* Counters for statfs. */
int itab_statfs(struct itab *t, struct itab_statfs *st);

/* Block size fixed for this table. */
uint32_t itab_block_size(struct itab *t);

/* Snapshot writer: return 0 or negative errno (aborts the snapshot). */
typedef int (*itab_write_cb)(void *ctx, const void *buf, size_t len);

/* Dump the whole table (consistent point in time: a LevelDB snapshot) as a
 * byte stream. Equal tables give equal bytes. Safe beside apply. */
int itab_snapshot(struct itab *t, itab_write_cb cb, void *ctx);

/* The same in two steps, for a dump made away from the apply thread:
 * itab_snapshot_begin() fixes the point in time (cheap; *index gets its
 * applied index), itab_snapshot_write() writes that state (any thread,
 * beside apply and restore), itab_snapshot_end() releases it. */
struct itab_snap;
int itab_snapshot_begin(struct itab *t, struct itab_snap **out,
			uint64_t *index);
int itab_snapshot_write(struct itab *t, struct itab_snap *s, itab_write_cb cb,
			void *ctx);
void itab_snapshot_end(struct itab *t, struct itab_snap *s);

/* Replace the whole table by a dump from itab_snapshot(). Validates the
 * whole dump first (-EINVAL, table untouched). Apply thread only. */
int itab_restore(struct itab *t, const void *data, size_t len);

/* Name of an op code ("CREATE"...), for logs. */
const char *itab_op_name(unsigned code);

#endif /* SANDFS_FS_ITAB_H */
