/*
 * fsck.h — the consistency check of one node's file system state: its
 * inode table, its block store and how the table stands to the Raft log.
 * The same engine runs offline (`sandfs fsck --data DIR` on a stopped
 * node: fs/cmd_fsck.c) and online (inside a running node, asked through
 * its admin socket: fs/fsadm.c); the caller supplies what differs (how to
 * fetch a block, how to propose a repair) as hooks.
 *
 * What is checked (each problem kind has a stable name, enum fsck_kind):
 *  - the table, at one point in time (an itab view): every record
 *    decodes; nlink of every file equals the entries naming it, of every
 *    directory 2 + its subdirectories; a directory's size equals its
 *    entries; every entry names a live inode of the type it records and
 *    sits in a live directory; every directory but the root is named by
 *    exactly one entry, its parent field names that entry's directory,
 *    and following parents from it reaches the root (no cycles, nothing
 *    detached); every entry has its readdir record and no directory
 *    reuses a cookie; extents belong to live regular files, lie inside
 *    the size and add up to st_blocks; symlinks have targets; xattrs,
 *    orphan and open records belong to live inodes; every inode without
 *    a name is an orphan kept for an open file (an open record of some
 *    node, or the node that unlinked it) and every orphan record is
 *    such an inode; block reference counts equal the extents naming the
 *    block; the counters (next ino, #inodes, #blocks) agree;
 *  - the blocks: every referenced block is stored and its content
 *    matches its SHA-256 (and its CRC); stored blocks nothing references
 *    (older than the grace period: younger ones belong to writes in
 *    flight) are reported;
 *  - the log: the table's applied index lies within what the log holds
 *    (at or after its snapshot, not past its last entry) and the log's
 *    records check (offline, where the log can be read).
 *
 * Repairs (fsck_env.repair), only what is safe:
 *  - a missing or corrupt block is fetched from a peer (env.fetch), the
 *    corrupt copy first moved to quarantine;
 *  - unreferenced blocks are dropped (env.drop_unreferenced);
 *  - nlink, directory counts, dangling entries and reference counts are
 *    fixed through the log (env.propose, online only) with ITAB_OP_REPAIR,
 *    which each replica applies only if it has the same problem (see
 *    itab_check.h); offline they are reported with what to do, because a
 *    replica changed outside the log would differ from the others;
 *  - everything else is reported with advice, never changed.
 *
 * Threads: fsck_run blocks (minutes for a big store: it hashes every
 * referenced block); call it on a thread of its own. The table may be
 * applied to meanwhile (a view is a point in time); findings about blocks
 * are re-checked against the current table before they are reported.
 */
#ifndef SANDFS_FS_FSCK_H
#define SANDFS_FS_FSCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs/itab.h"
#include "storage/blk.h"

enum fsck_kind {
	FSCK_BAD_RECORD,   /* a record of the table does not decode */
	FSCK_NLINK,        /* nlink differs from the entries naming the inode */
	FSCK_DIR_SIZE,     /* a directory's size differs from its entries */
	FSCK_DANGLING,     /* an entry names an inode that does not exist */
	FSCK_ENTRY_TYPE,   /* an entry records another type than its inode's */
	FSCK_ENTRY_PARENT, /* an entry sits in a missing inode or a
	                      non-directory */
	FSCK_DIR_LINKS, /* a directory named by more than one entry (or the root
	                   by any) */
	FSCK_PARENT,    /* a directory's parent field differs from its entry's
	                   directory */
	FSCK_CYCLE,     /* following parents from a directory loops */
	FSCK_DETACHED,  /* a directory no path from the root reaches */
	FSCK_READDIR,   /* readdir records and entries disagree, or a cookie is
	                   reused */
	FSCK_EXTENT,    /* an extent of a missing or non-regular inode, past the
	                   size, bad length */
	FSCK_ST_BLOCKS, /* st_blocks differs from the extents */
	FSCK_SYMLINK, /* a symlink without target (or size), or a target without
	                 symlink */
	FSCK_XATTR,   /* xattrs of a missing inode */
	FSCK_UNLINKED, /* an inode with nlink > 0 that no entry names */
	FSCK_ORPHAN, /* an orphan record or nameless inode that does not add up
	              */
	FSCK_OPEN_RECORD, /* an open record of a missing inode */
	FSCK_REFCOUNT, /* a block's reference count differs from its extents */
	FSCK_BLOCK_MISSING, /* a referenced block is not in the store */
	FSCK_BLOCK_CORRUPT, /* a referenced block fails its SHA-256 (or CRC) */
	FSCK_BLOCK_UNREF,   /* a stored block nothing references */
	FSCK_COUNTER, /* next ino / #inodes / #blocks disagree with the records
	               */
	FSCK_APPLIED, /* the applied index does not fit the log */
	FSCK_LOG,     /* the raft log does not read back */
	FSCK__KINDS
};

/* The stable name of a kind ("nlink", "block-corrupt", ...). */
const char *fsck_kind_name(enum fsck_kind k);

enum fsck_fix {
	FSCK_UNFIXED,   /* found; not repaired (see action) */
	FSCK_FIXED,     /* repaired (see action) */
	FSCK_FIX_FAILED /* a repair was tried and failed (see action) */
};

struct fsck_problem {
	enum fsck_kind kind;
	uint64_t ino; /* the inode concerned, 0 if none */
	char *path;   /* its path (or the entry's), NULL if unknown; owned */
	bool has_hash;
	uint8_t hash[BLK_HASH_LEN]; /* the block concerned */
	char *detail;               /* what is wrong, one sentence; owned */
	enum fsck_fix fix;
	char *
	    action; /* what the repair did, or what to do; owned, may be NULL */
	/* For the repair (internal): */
	uint64_t parent; /* entry problems: the directory */
	char *name;      /* entry problems: the name; owned */
	uint64_t seen, want;
};

struct fsck_stats {
	uint64_t inodes, dirs, files, symlinks, specials;
	uint64_t entries, extents, xattrs;
	uint64_t orphans;           /* nameless inodes kept for open files */
	uint64_t blocks_referenced; /* distinct blocks extents name */
	uint64_t blocks_stored;     /* block files in the store */
	uint64_t blocks_verified;   /* referenced blocks hashed */
	uint64_t bytes_verified;
	uint64_t
	    unreferenced_recent; /* unreferenced but within the grace period */
};

/* What is known of the log (filled by the caller). */
struct fsck_log {
	bool known;
	uint64_t snap_index; /* entries up to here are compacted away */
	uint64_t last;       /* last index stored */
	uint64_t commit;     /* commit index (as persisted, or live) */
	bool digest_known;
	uint64_t digest_applied; /* the digest state machine's applied index */
	char error[512];         /* non-empty: the log does not read back */
};

struct fsck_env {
	struct itab *itab;    /* required; borrowed */
	struct blk_store *bs; /* required; borrowed */
	uint64_t self_id;     /* for the report */
	bool online;
	bool repair;
	uint32_t grace_ms; /* unreferenced blocks younger than this are not
	                      reported */
	struct fsck_log log;
	/* Fill *log once the table's view is taken, at log index `applied`
	 * (online: the log moves on meanwhile, and must be read as of a
	 * moment after the view to be compared with it); NULL: env->log as
	 * given. */
	void (*read_log)(void *ctx, uint64_t applied, struct fsck_log *log);
	/* Hooks (any may be NULL: that repair is not available). */
	/* Fetch a block from a peer into bs, verified: 0 and *from, or a
	 * negative errno. */
	int (*fetch)(void *ctx, const uint8_t hash[BLK_HASH_LEN],
	             uint64_t *from);
	/* Propose op and wait for its local apply: its result (0 or -errno). */
	int (*propose)(void *ctx, const struct itab_op *op);
	/* Drop the unreferenced blocks found (they were re-checked against
	 * the current table and the grace period by the hook's owner):
	 * 0 and *dropped, or -errno. With NULL, fsck deletes them itself
	 * (offline: nothing else writes). */
	int (*drop_unreferenced)(void *ctx, uint64_t *dropped);
	/* Called once when referenced blocks are missing, before they are
	 * reported (online: wait for the data path's background fetches,
	 * which bring a block a node lacks right after a write). */
	void (*settle)(void *ctx);
	/* True when hash must be kept although the table does not reference
	 * it (offline: a WRITE in the log above the applied index names it). */
	bool (*keep_block)(void *ctx, const uint8_t hash[BLK_HASH_LEN]);
	/* Progress: phase name, done of total (total 0: unknown). */
	void (*progress)(void *ctx, const char *phase, uint64_t done,
	                 uint64_t total);
	/* Asked often; true ends the run early (the report says so). */
	bool (*stopping)(void *ctx);
	void *ctx;
};

struct fsck_report {
	bool online, repair, stopped;
	uint64_t node_id;
	uint64_t applied; /* the log index the table was checked at */
	struct fsck_log log;
	struct fsck_stats st;
	struct fsck_problem *p; /* owned */
	size_t n, cap;
	size_t n_fixed, n_left;
	size_t n_more; /* problems past FSCK_MAX_PROBLEMS, counted only */
	double secs;
	char error[256]; /* the check itself failed (I/O): reason */
};

#define FSCK_MAX_PROBLEMS 10000

/* Check (and with env->repair repair) the state env describes; the
 * findings go to *rep (fsck_report_free it). 0, or a negative errno when
 * the check could not run to its end (rep->error says why; what was
 * found so far is in rep). */
int fsck_run(const struct fsck_env *env, struct fsck_report *rep);
void fsck_report_free(struct fsck_report *rep);

/* The report as text (one line per problem with what was done, then the
 * figures) or as one JSON object; malloc'ed, NUL-terminated. The summary
 * line (fsck_summary) ends the text form, not the JSON. */
char *fsck_render(const struct fsck_report *rep, bool json);
/* One line, no newline: "clean" or what was found and repaired. */
char *fsck_summary(const struct fsck_report *rep);

/* The exit status the report calls for: 0 nothing left wrong (clean, or
 * every problem repaired), 1 problems left (or the check failed). */
int fsck_exit_status(const struct fsck_report *rep);

#endif
