/*
 * Internals shared by fsck.c (walks and checks), fsck_fix.c (paths and
 * repairs) and fsck_report.c (text and JSON). Not part of the contract.
 */
#ifndef SANDFS_FS_FSCK_INTERNAL_H
#define SANDFS_FS_FSCK_INTERNAL_H

#include "fs/fsck.h"
#include "fs/itab_check.h"

#include <stdarg.h>

/* What fsck learnt of one inode (or of a directory entries name). */
#define IR_ORPHAN_REC 0x01u /* an orphan record names it */
#define IR_HOLDER     0x02u /* ... kept by a node (not by open records) */
#define IR_OPEN       0x04u /* an open record names it */
#define IR_TARGET     0x08u /* a symlink target record exists */
#define IR_WANT_PATH  0x10u /* a problem names it: resolve its path */
#define IR_WANT_LINKS 0x20u /* an nlink repair needs its links */
#define IR_LIVE       0x40u /* an inode record exists */
#define IR_FIXED_DIR  0x80u /* a directory repair was proposed */

struct irec {
	uint64_t ino;
	uint32_t mode, nlink;
	uint64_t size, aparent, ablocks, next_cookie;
	uint64_t links;        /* entries naming it */
	uint64_t entries;      /* entries in it (directories) */
	uint64_t subdirs;      /* of those, directory entries */
	uint64_t cookies;      /* readdir records in it */
	uint64_t max_cookie;   /* highest cookie of its entries */
	uint64_t first_parent; /* the directory of the first entry naming it */
	uint64_t units;        /* 512-byte units its extents cover */
	uint32_t target_len;
	uint8_t flags;
	uint8_t reach; /* directories: 0 unknown, 1 walking, 2 root reaches it,
	                  3 not */
	int fix_rc;    /* the directory repair's result (IR_FIXED_DIR) */
	char *name;    /* its name in first_parent (when wanted) */
};

struct brec {
	uint8_t hash[BLK_HASH_LEN];
	uint64_t extents;   /* extents naming it */
	uint64_t count;     /* its reference count record */
	uint64_t first_ino; /* an inode using it */
	bool has_count;
	bool used; /* the slot is taken */
};

struct lrec { /* one link of an inode whose nlink is repaired */
	uint64_t ino, parent;
	char *name;
	size_t name_len;
};

struct fsck {
	const struct fsck_env *env;
	struct fsck_report *rep;
	struct itab *t;
	struct itab_view *v;
	struct itab_view_info info;
	struct irec *it; /* open addressing by ino; ino 0 = empty */
	size_t icap, in;
	struct brec *bt; /* open addressing by hash */
	size_t bcap, bn;
	struct lrec *lk;
	size_t nl, capl;
	const char *phase;
	uint64_t done, total;
	int err; /* first fatal error (-ENOMEM, -EIO) */
};

/* Inode record of ino: found, or (add) created; NULL if absent or out of
 * memory (then c->err is set). */
struct irec *fsck_ino(struct fsck *c, uint64_t ino, bool add);
/* Add a problem; detail is printf-formatted. Returns it (NULL past
 * FSCK_MAX_PROBLEMS: counted in rep->n_more, or out of memory). */
struct fsck_problem *fsck_problem(struct fsck *c, enum fsck_kind kind,
                                  uint64_t ino, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Set a problem's action text (printf-formatted). */
void fsck_action(struct fsck_problem *p, enum fsck_fix fix, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));
/* Progress: start a phase of `total` steps (0: unknown) / one step done.
 * fsck_step returns true when the run should stop. */
void fsck_phase(struct fsck *c, const char *phase, uint64_t total);
bool fsck_step(struct fsck *c);

/* fsck_fix.c: resolve paths (and links) for what the problems name, then
 * repair what env allows. */
int fsck_paths(struct fsck *c);
void fsck_repair(struct fsck *c);

/* A string of n bytes as a NUL-terminated malloc'ed copy (NULL on ENOMEM). */
char *fsck_strndup(const char *s, size_t n);

#endif
