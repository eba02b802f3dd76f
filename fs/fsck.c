/*
 * fsck.c — the checks (see fsck.h): walk the inode table at one point in
 * time, kind by kind, into two in-memory tables (one record per inode,
 * one per block), check each inode and block against what the records
 * say of it, verify the blocks the table references, then look at the
 * block store for blocks nothing references and at how the table stands
 * to the log. Paths and repairs are in fsck_fix.c, the report's text and
 * JSON in fsck_report.c.
 *
 * Memory: about 150 bytes per inode and 70 per referenced block, for the
 * duration of the run (a million files: ~200 MB).
 */
#include "fs/fsck_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const kind_names[FSCK__KINDS] = {
    [FSCK_BAD_RECORD] = "bad-record",
    [FSCK_NLINK] = "nlink",
    [FSCK_DIR_SIZE] = "dir-size",
    [FSCK_DANGLING] = "dangling-entry",
    [FSCK_ENTRY_TYPE] = "entry-type",
    [FSCK_ENTRY_PARENT] = "entry-parent",
    [FSCK_DIR_LINKS] = "dir-links",
    [FSCK_PARENT] = "parent",
    [FSCK_CYCLE] = "cycle",
    [FSCK_DETACHED] = "detached",
    [FSCK_READDIR] = "readdir",
    [FSCK_EXTENT] = "extent",
    [FSCK_ST_BLOCKS] = "st-blocks",
    [FSCK_SYMLINK] = "symlink",
    [FSCK_XATTR] = "xattr",
    [FSCK_UNLINKED] = "unlinked",
    [FSCK_ORPHAN] = "orphan",
    [FSCK_OPEN_RECORD] = "open-record",
    [FSCK_REFCOUNT] = "refcount",
    [FSCK_BLOCK_MISSING] = "block-missing",
    [FSCK_BLOCK_CORRUPT] = "block-corrupt",
    [FSCK_BLOCK_UNREF] = "block-unreferenced",
    [FSCK_COUNTER] = "counter",
    [FSCK_APPLIED] = "applied-index",
    [FSCK_LOG] = "log",
};

/* See fsck.h. */
const char *fsck_kind_name(enum fsck_kind k)
{
	return (unsigned)k < FSCK__KINDS ? kind_names[k] : "?";
}

char *fsck_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static double mono_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the two tables ----------------------------------------------------- */

static size_t ino_slot(uint64_t ino, size_t cap)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 17) & (cap - 1);
}

static int ino_grow(struct fsck *c)
{
	size_t cap = c->icap ? c->icap * 2 : 1024;
	struct irec *n = calloc(cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < c->icap; i++) {
		if (!c->it[i].ino)
			continue;
		size_t j = ino_slot(c->it[i].ino, cap);
		while (n[j].ino)
			j = (j + 1) & (cap - 1);
		n[j] = c->it[i];
	}
	free(c->it);
	c->it = n;
	c->icap = cap;
	return 0;
}

/* See fsck_internal.h. */
struct irec *fsck_ino(struct fsck *c, uint64_t ino, bool add)
{
	if (ino == 0)
		return NULL;
	if (add && (c->in + 1) * 10 >= c->icap * 7 && ino_grow(c)) {
		c->err = -ENOMEM;
		return NULL;
	}
	if (!c->icap)
		return NULL;
	size_t j = ino_slot(ino, c->icap);
	while (c->it[j].ino && c->it[j].ino != ino)
		j = (j + 1) & (c->icap - 1);
	if (c->it[j].ino == ino)
		return &c->it[j];
	if (!add)
		return NULL;
	memset(&c->it[j], 0, sizeof(c->it[j]));
	c->it[j].ino = ino;
	c->in++;
	return &c->it[j];
}

static size_t blk_slot(const uint8_t *h, size_t cap)
{
	uint64_t v = 0;
	memcpy(&v, h, sizeof(v));
	return (size_t)(v * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

static int blk_grow(struct fsck *c)
{
	size_t cap = c->bcap ? c->bcap * 2 : 1024;
	struct brec *n = calloc(cap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < c->bcap; i++) {
		if (!c->bt[i].used)
			continue;
		size_t j = blk_slot(c->bt[i].hash, cap);
		while (n[j].used)
			j = (j + 1) & (cap - 1);
		n[j] = c->bt[i];
	}
	free(c->bt);
	c->bt = n;
	c->bcap = cap;
	return 0;
}

/* The block record of hash (add: created); NULL if absent or ENOMEM. */
static struct brec *fsck_blk(struct fsck *c, const uint8_t *h, bool add)
{
	if (add && (c->bn + 1) * 10 >= c->bcap * 7 && blk_grow(c)) {
		c->err = -ENOMEM;
		return NULL;
	}
	if (!c->bcap)
		return NULL;
	size_t j = blk_slot(h, c->bcap);
	while (c->bt[j].used && memcmp(c->bt[j].hash, h, BLK_HASH_LEN))
		j = (j + 1) & (c->bcap - 1);
	if (c->bt[j].used)
		return &c->bt[j];
	if (!add)
		return NULL;
	memset(&c->bt[j], 0, sizeof(c->bt[j]));
	memcpy(c->bt[j].hash, h, BLK_HASH_LEN);
	c->bt[j].used = true;
	c->bn++;
	return &c->bt[j];
}

/* ---- problems and progress ------------------------------------------------
 */

/* See fsck_internal.h. */
struct fsck_problem *fsck_problem(struct fsck *c, enum fsck_kind kind,
                                  uint64_t ino, const char *fmt, ...)
{
	struct fsck_report *r = c->rep;
	if (r->n >= FSCK_MAX_PROBLEMS) {
		r->n_more++;
		return NULL;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct fsck_problem *n = realloc(r->p, cap * sizeof(*n));
		if (!n) {
			c->err = -ENOMEM;
			r->n_more++;
			return NULL;
		}
		r->p = n;
		r->cap = cap;
	}
	struct fsck_problem *p = &r->p[r->n++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->ino = ino;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&p->detail, fmt, ap) < 0)
		p->detail = NULL;
	va_end(ap);
	struct irec *ir = fsck_ino(c, ino, false);
	if (ir)
		ir->flags |= IR_WANT_PATH;
	return p;
}

/* See fsck_internal.h. */
void fsck_action(struct fsck_problem *p, enum fsck_fix fix, const char *fmt,
                 ...)
{
	free(p->action);
	p->fix = fix;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&p->action, fmt, ap) < 0)
		p->action = NULL;
	va_end(ap);
}

static void progress(struct fsck *c)
{
	if (c->env->progress)
		c->env->progress(c->env->ctx, c->phase, c->done, c->total);
}

/* See fsck_internal.h. */
void fsck_phase(struct fsck *c, const char *phase, uint64_t total)
{
	c->phase = phase;
	c->done = 0;
	c->total = total;
	progress(c);
}

/* See fsck_internal.h. */
bool fsck_step(struct fsck *c)
{
	c->done++;
	if ((c->done & 255) == 0) {
		progress(c);
		if (c->env->stopping && c->env->stopping(c->env->ctx)) {
			c->rep->stopped = true;
			return true;
		}
	}
	return c->err != 0;
}

/* A problem about a record that does not decode. */
static void bad_record(struct fsck *c, const struct itab_record *r)
{
	char pfx = r->key_len ? (char)r->key[0] : '?';
	if (pfx < '!' || pfx > '~')
		pfx = '?';
	fsck_problem(c, FSCK_BAD_RECORD, 0,
	             "a '%c' record (%zu-byte key, inode field %llu): %s", pfx,
	             r->key_len, (unsigned long long)r->ino, r->why);
}

static bool is_dir(uint32_t mode)
{
	return (mode & S_IFMT) == S_IFDIR;
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return "directory";
	case S_IFREG:
		return "file";
	case S_IFLNK:
		return "symlink";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	case S_IFCHR:
		return "character device";
	case S_IFBLK:
		return "block device";
	default:
		return "unknown type";
	}
}

/* ---- walks ----------------------------------------------------------------
 */

static int walk_inode(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	struct irec *ir = fsck_ino(c, r->ino, true);
	if (!ir)
		return c->err ? c->err : 0;
	ir->mode = r->attr.mode;
	ir->nlink = r->attr.nlink;
	ir->size = r->attr.size;
	ir->aparent = r->attr.parent;
	ir->ablocks = r->attr.blocks;
	ir->next_cookie = r->cookie;
	ir->flags |= IR_LIVE;
	struct fsck_stats *st = &c->rep->st;
	st->inodes++;
	switch (r->attr.mode & S_IFMT) {
	case S_IFDIR:
		st->dirs++;
		break;
	case S_IFREG:
		st->files++;
		break;
	case S_IFLNK:
		st->symlinks++;
		break;
	default:
		st->specials++;
		break;
	}
	if (r->ino >= c->info.next_ino)
		fsck_problem(c, FSCK_COUNTER, r->ino,
		             "inode %llu is not below the next-inode counter "
		             "(%llu): a new file "
		             "would be given its number",
		             (unsigned long long)r->ino,
		             (unsigned long long)c->info.next_ino);
	return 0;
}

/* Entry problems carry the directory and name (for the path and the
 * repair). */
static struct fsck_problem *entry_problem(struct fsck *c, enum fsck_kind kind,
                                          const struct itab_record *r,
                                          uint64_t ino, const char *fmt,
                                          const char *what)
{
	struct fsck_problem *p = fsck_problem(
	    c, kind, ino, fmt, (int)r->name_len, r->name,
	    (unsigned long long)r->ino, (unsigned long long)r->parent, what);
	if (p) {
		p->parent = r->parent;
		p->name = fsck_strndup(r->name, r->name_len);
		struct irec *dir = fsck_ino(c, r->parent, false);
		if (dir)
			dir->flags |= IR_WANT_PATH;
	}
	return p;
}

static int walk_dentry(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	c->rep->st.entries++;
	struct irec *dir = fsck_ino(c, r->parent, false);
	if (!dir || !is_dir(dir->mode)) {
		entry_problem(
		    c, FSCK_ENTRY_PARENT, r, r->parent,
		    "entry '%.*s' (inode %llu) sits in inode %llu, %s",
		    dir ? "which is not a directory" : "which does not exist");
		return 0;
	}
	dir->entries++;
	if (is_dir(r->type))
		dir->subdirs++;
	if (r->cookie > dir->max_cookie)
		dir->max_cookie = r->cookie;
	uint64_t cino = 0;
	uint32_t ctype = 0;
	char cname[ITAB_NAME_MAX];
	size_t cnl = 0;
	int rc = itab_view_cookie(c->t, c->v, r->parent, r->cookie, &cino,
	                          &ctype, cname, sizeof(cname), &cnl);
	if (rc == -ENOENT ||
	    (rc == 0 && (cino != r->ino || cnl != r->name_len ||
	                 memcmp(cname, r->name, cnl) != 0)))
		entry_problem(c, FSCK_READDIR, r, r->parent,
		              "entry '%.*s' (inode %llu) in directory %llu %s: "
		              "readdir does not list it "
		              "as it is",
		              rc == -ENOENT
		                  ? "has no readdir record"
		                  : "has a readdir record for another entry");
	else if (rc)
		return c->err = rc;
	struct irec *child = fsck_ino(c, r->ino, false);
	if (!child) {
		entry_problem(c, FSCK_DANGLING, r, r->ino,
		              "entry '%.*s' names inode %llu, which does not "
		              "exist (directory %llu)%s",
		              "");
		return 0;
	}
	child->links++;
	if (!child->first_parent)
		child->first_parent = r->parent;
	if ((child->mode & S_IFMT) != (r->type & S_IFMT))
		entry_problem(c, FSCK_ENTRY_TYPE, r, r->ino,
		              "entry '%.*s' (inode %llu, in directory %llu) "
		              "says %s, the inode is a "
		              "different type",
		              type_name(r->type));
	return 0;
}

static int walk_cookie(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	struct irec *dir = fsck_ino(c, r->parent, false);
	if (dir && is_dir(dir->mode))
		dir->cookies++;
	else
		fsck_problem(c, FSCK_READDIR, r->parent,
		             "readdir record %llu of inode %llu, which is not "
		             "a live directory",
		             (unsigned long long)r->cookie,
		             (unsigned long long)r->parent);
	return 0;
}

static int walk_extent(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	c->rep->st.extents++;
	struct brec *b = fsck_blk(c, r->hash, true);
	if (!b)
		return c->err;
	if (!b->extents++)
		b->first_ino = r->ino;
	struct irec *ir = fsck_ino(c, r->ino, false);
	uint64_t bs = c->info.block_size;
	if (!ir) {
		fsck_problem(c, FSCK_EXTENT, r->ino,
		             "extent %llu of inode %llu, which does not exist "
		             "(its block stays "
		             "referenced)",
		             (unsigned long long)r->index,
		             (unsigned long long)r->ino);
		return 0;
	}
	if ((ir->mode & S_IFMT) != S_IFREG)
		fsck_problem(c, FSCK_EXTENT, r->ino,
		             "extent %llu of a %s (only files have data)",
		             (unsigned long long)r->index, type_name(ir->mode));
	else if (r->len == 0 || r->len > bs)
		fsck_problem(
		    c, FSCK_EXTENT, r->ino,
		    "extent %llu has length %u (want 1..%llu, the block size)",
		    (unsigned long long)r->index, r->len,
		    (unsigned long long)bs);
	else if (r->index * bs >= ir->size)
		fsck_problem(c, FSCK_EXTENT, r->ino,
		             "extent %llu starts at byte %llu, past the file's "
		             "size %llu",
		             (unsigned long long)r->index,
		             (unsigned long long)(r->index * bs),
		             (unsigned long long)ir->size);
	ir->units += ((uint64_t)r->len + 511) / 512;
	return 0;
}

static int walk_blockref(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	struct brec *b = fsck_blk(c, r->hash, true);
	if (!b)
		return c->err;
	b->has_count = true;
	b->count = r->count;
	return 0;
}

/* Records hanging off an inode: symlink targets, xattrs, orphan and open
 * records. One problem per inode and kind (records of one inode come
 * together). */
struct side {
	struct fsck *c;
	uint64_t last_bad;
};

static int walk_side(void *ctx, const struct itab_record *r)
{
	struct side *s = ctx;
	struct fsck *c = s->c;
	if (fsck_step(c))
		return 1;
	if (r->kind == ITAB_REC_BAD) {
		bad_record(c, r);
		return 0;
	}
	struct irec *ir = fsck_ino(c, r->ino, false);
	bool repeat = s->last_bad == r->ino;
	switch (r->kind) {
	case ITAB_REC_SYMLINK:
		if (ir && (ir->mode & S_IFMT) == S_IFLNK) {
			ir->flags |= IR_TARGET;
			ir->target_len = r->len;
		} else {
			fsck_problem(c, FSCK_SYMLINK, r->ino,
			             "a symlink target for inode %llu, %s",
			             (unsigned long long)r->ino,
			             ir ? "which is not a symlink"
			                : "which does not exist");
		}
		return 0;
	case ITAB_REC_XATTR:
		c->rep->st.xattrs++;
		if (!ir && !repeat) {
			fsck_problem(
			    c, FSCK_XATTR, r->ino,
			    "xattrs of inode %llu, which does not exist",
			    (unsigned long long)r->ino);
			s->last_bad = r->ino;
		}
		return 0;
	case ITAB_REC_ORPHAN:
		if (ir) {
			ir->flags |= IR_ORPHAN_REC;
			if (r->count)
				ir->flags |= IR_HOLDER;
		} else {
			fsck_problem(c, FSCK_ORPHAN, r->ino,
			             "an orphan record for inode %llu, which "
			             "does not exist",
			             (unsigned long long)r->ino);
		}
		return 0;
	case ITAB_REC_OPEN:
		if (ir) {
			ir->flags |= IR_OPEN;
		} else if (!repeat) {
			fsck_problem(c, FSCK_OPEN_RECORD, r->ino,
			             "node %llu holds inode %llu open, which "
			             "does not exist",
			             (unsigned long long)r->count,
			             (unsigned long long)r->ino);
			s->last_bad = r->ino;
		}
		return 0;
	default:
		return 0;
	}
}

/* ---- per-inode checks -------------------------------------------------------
 */

static void check_dir(struct fsck *c, struct irec *ir)
{
	uint64_t want = 2 + ir->subdirs;
	if (ir->nlink != want) {
		struct fsck_problem *p =
		    fsck_problem(c, FSCK_NLINK, ir->ino,
		                 "directory nlink is %u, but it holds %llu "
		                 "subdirectories (want %llu)",
		                 ir->nlink, (unsigned long long)ir->subdirs,
		                 (unsigned long long)want);
		if (p)
			p->seen = ir->nlink, p->want = want;
	}
	if (ir->size != ir->entries) {
		struct fsck_problem *p = fsck_problem(
		    c, FSCK_DIR_SIZE, ir->ino,
		    "directory size is %llu, but it holds %llu entries",
		    (unsigned long long)ir->size,
		    (unsigned long long)ir->entries);
		if (p)
			p->seen = ir->size, p->want = ir->entries;
	}
	if (ir->cookies != ir->entries)
		fsck_problem(c, FSCK_READDIR, ir->ino,
		             "%llu readdir records for %llu entries",
		             (unsigned long long)ir->cookies,
		             (unsigned long long)ir->entries);
	if (ir->entries && ir->next_cookie <= ir->max_cookie)
		fsck_problem(c, FSCK_READDIR, ir->ino,
		             "the next readdir cookie %llu is not above the "
		             "highest in use (%llu): a "
		             "new entry would reuse it",
		             (unsigned long long)ir->next_cookie,
		             (unsigned long long)ir->max_cookie);
	if (ir->ino == ITAB_ROOT_INO) {
		if (ir->links)
			fsck_problem(
			    c, FSCK_DIR_LINKS, ir->ino,
			    "the root directory is named by %llu entries",
			    (unsigned long long)ir->links);
		if (ir->aparent != ITAB_ROOT_INO)
			fsck_problem(
			    c, FSCK_PARENT, ir->ino,
			    "the root's parent field is %llu (want itself)",
			    (unsigned long long)ir->aparent);
		return;
	}
	if (ir->links > 1)
		fsck_problem(c, FSCK_DIR_LINKS, ir->ino,
		             "directory named by %llu entries (a directory has "
		             "exactly one)",
		             (unsigned long long)ir->links);
	if (ir->links >= 1 && ir->aparent != ir->first_parent)
		fsck_problem(c, FSCK_PARENT, ir->ino,
		             "parent field says directory %llu, but its entry "
		             "is in directory %llu",
		             (unsigned long long)ir->aparent,
		             (unsigned long long)ir->first_parent);
}

static void check_other(struct fsck *c, struct irec *ir)
{
	uint32_t type = ir->mode & S_IFMT;
	bool kept = (ir->flags & (IR_HOLDER | IR_OPEN)) != 0;
	if (ir->links == 0 && ir->nlink == 0) {
		if (!(ir->flags & IR_ORPHAN_REC))
			fsck_problem(c, FSCK_ORPHAN, ir->ino,
			             "%s with nlink 0, no entry and no orphan "
			             "record: leaked (its "
			             "blocks stay referenced)",
			             type_name(ir->mode));
		else if (!kept)
			fsck_problem(c, FSCK_ORPHAN, ir->ino,
			             "kept as an orphan, but no node holds it "
			             "open: it should have "
			             "been freed");
		else
			c->rep->st.orphans++;
	} else if (ir->links == 0) {
		fsck_problem(c, FSCK_UNLINKED, ir->ino,
		             "%s with nlink %u that no entry names: it cannot "
		             "be reached",
		             type_name(ir->mode), ir->nlink);
	} else {
		if (ir->nlink != ir->links) {
			struct fsck_problem *p = fsck_problem(
			    c, FSCK_NLINK, ir->ino,
			    "nlink is %u, but %llu %s name%s it", ir->nlink,
			    (unsigned long long)ir->links,
			    ir->links == 1 ? "entry" : "entries",
			    ir->links == 1 ? "s" : "");
			if (p) {
				p->seen = ir->nlink, p->want = ir->links;
				ir->flags |= IR_WANT_LINKS;
			}
		}
		if (ir->flags & IR_ORPHAN_REC)
			fsck_problem(c, FSCK_ORPHAN, ir->ino,
			             "has an orphan record although %llu "
			             "entries name it",
			             (unsigned long long)ir->links);
	}
	if (type == S_IFREG && ir->units != ir->ablocks)
		fsck_problem(c, FSCK_ST_BLOCKS, ir->ino,
		             "st_blocks is %llu, its extents cover %llu "
		             "(512-byte units)",
		             (unsigned long long)ir->ablocks,
		             (unsigned long long)ir->units);
	if (type == S_IFLNK && !(ir->flags & IR_TARGET))
		fsck_problem(c, FSCK_SYMLINK, ir->ino,
		             "symlink without a target");
	else if (type == S_IFLNK && ir->target_len != ir->size)
		fsck_problem(c, FSCK_SYMLINK, ir->ino,
		             "symlink size %llu, its target has %u bytes",
		             (unsigned long long)ir->size, ir->target_len);
}

/* Every directory must lead to the root by its entries' directories. */
static void check_reach(struct fsck *c)
{
	uint64_t *chain = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < c->icap && !c->err; i++) {
		struct irec *ir = &c->it[i];
		if (!ir->ino || !is_dir(ir->mode) || ir->reach)
			continue;
		size_t n = 0;
		uint8_t state = 0;
		struct irec *cur = ir;
		for (;;) {
			if (cur->ino == ITAB_ROOT_INO) {
				state = 2;
				break;
			}
			if (cur->reach >= 2) {
				state = cur->reach;
				break;
			}
			if (cur->reach == 1) {
				/* the chain came back to a directory on it: a
				 * loop */
				char loop[256] = "";
				size_t w = 0;
				size_t k = 0;
				while (k < n && chain[k] != cur->ino)
					k++;
				for (size_t m = k;
				     m < n && w < sizeof(loop) - 24; m++)
					w += (size_t)snprintf(
					    loop + w, sizeof(loop) - w,
					    "%llu -> ",
					    (unsigned long long)chain[m]);
				snprintf(loop + w, sizeof(loop) - w, "%llu",
				         (unsigned long long)cur->ino);
				fsck_problem(c, FSCK_CYCLE, cur->ino,
				             "following the directories' "
				             "entries loops (%s) and never "
				             "reaches the root",
				             loop);
				state = 3;
				break;
			}
			if (cur->links == 0) {
				fsck_problem(c, FSCK_DETACHED, cur->ino,
				             "directory that no entry names: "
				             "nothing below it can be "
				             "reached (%llu entries)",
				             (unsigned long long)cur->entries);
				state = 3;
				break;
			}
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				uint64_t *nn = realloc(chain, nc * sizeof(*nn));
				if (!nn) {
					c->err = -ENOMEM;
					break;
				}
				chain = nn;
				cap = nc;
			}
			chain[n++] = cur->ino;
			cur->reach = 1;
			struct irec *up = fsck_ino(c, cur->first_parent, false);
			if (!up) { /* cannot be: entries are counted in live
				      directories */
				state = 3;
				break;
			}
			cur = up;
		}
		for (size_t k = 0; k < n; k++) {
			struct irec *x = fsck_ino(c, chain[k], false);
			if (x)
				x->reach = state ? state : 3;
		}
	}
	free(chain);
}

static void check_inodes(struct fsck *c)
{
	fsck_phase(c, "inode checks", c->in);
	uint64_t live = 0;
	for (size_t i = 0; i < c->icap && !c->err; i++) {
		struct irec *ir = &c->it[i];
		if (!ir->ino || !(ir->flags & IR_LIVE))
			continue;
		live++;
		if (is_dir(ir->mode))
			check_dir(c, ir);
		else
			check_other(c, ir);
		if (fsck_step(c))
			return;
	}
	check_reach(c);
	if (live != c->info.inodes)
		fsck_problem(c, FSCK_COUNTER, 0,
		             "the table counts %llu inodes, it holds %llu "
		             "(statfs shows the count)",
		             (unsigned long long)c->info.inodes,
		             (unsigned long long)live);
}

/* ---- blocks
 * --------------------------------------------------------------------- */

/* True while the current table (not the view) still references hash:
 * online, a block dropped after the view was taken is no finding. */
static bool still_referenced(struct fsck *c, const uint8_t *h)
{
	return !c->env->online || itab_block_refs(c->t, h) > 0;
}

static void check_refs(struct fsck *c)
{
	uint64_t counted = 0;
	for (size_t i = 0; i < c->bcap && !c->err; i++) {
		struct brec *b = &c->bt[i];
		if (!b->used)
			continue;
		if (b->has_count)
			counted++;
		if (b->extents)
			c->rep->st.blocks_referenced++;
		uint64_t have = b->has_count ? b->count : 0;
		if (have == b->extents)
			continue;
		struct fsck_problem *p;
		if (!b->has_count)
			p = fsck_problem(c, FSCK_REFCOUNT, b->first_ino,
			                 "block has no reference count, but "
			                 "%llu extents name it",
			                 (unsigned long long)b->extents);
		else
			p = fsck_problem(
			    c, FSCK_REFCOUNT, b->extents ? b->first_ino : 0,
			    "block reference count is %llu, but %llu extents "
			    "name it%s",
			    (unsigned long long)b->count,
			    (unsigned long long)b->extents,
			    b->count < b->extents
			        ? " (too low: it could be deleted while in use)"
			        : " (too high: it would never be freed)");
		if (p) {
			p->has_hash = true;
			memcpy(p->hash, b->hash, BLK_HASH_LEN);
			p->seen = have;
			p->want = b->extents;
		}
	}
	if (counted != c->info.blocks)
		fsck_problem(c, FSCK_COUNTER, 0,
		             "the table counts %llu referenced blocks, it "
		             "holds %llu reference "
		             "counts (statfs shows the count)",
		             (unsigned long long)c->info.blocks,
		             (unsigned long long)counted);
}

static void block_problem(struct fsck *c, enum fsck_kind kind,
                          const struct brec *b, const char *detail)
{
	struct fsck_problem *p =
	    fsck_problem(c, kind, b->first_ino, "%s; %llu extent%s it", detail,
	                 (unsigned long long)b->extents,
	                 b->extents == 1 ? " names" : "s name");
	if (p) {
		p->has_hash = true;
		memcpy(p->hash, b->hash, BLK_HASH_LEN);
	}
}

/* Hash every referenced block. Missing ones are looked at again once
 * env->settle ran (a node fetches what it lacks in the background). */
static void check_blocks(struct fsck *c)
{
	fsck_phase(c, "verifying blocks", c->rep->st.blocks_referenced);
	size_t *missing = NULL, n_missing = 0, cap = 0;
	for (size_t i = 0; i < c->bcap && !c->err; i++) {
		struct brec *b = &c->bt[i];
		if (!b->used || !b->extents)
			continue;
		const char *what = NULL;
		int rc = blk_verify(c->env->bs, b->hash, &what);
		if (rc == 0) {
			uint64_t size = 0;
			if (blk_size(c->env->bs, b->hash, &size) == 0)
				c->rep->st.bytes_verified += size;
			c->rep->st.blocks_verified++;
		} else if (!still_referenced(c, b->hash)) {
			/* freed after the view: nothing to say */
		} else if (rc == -ENOENT) {
			if (n_missing == cap) {
				size_t nc = cap ? cap * 2 : 16;
				size_t *nm = realloc(missing, nc * sizeof(*nm));
				if (!nm) {
					c->err = -ENOMEM;
					break;
				}
				missing = nm;
				cap = nc;
			}
			missing[n_missing++] = i;
		} else if (rc == -EBADMSG) {
			block_problem(c, FSCK_BLOCK_CORRUPT, b,
			              what && !strcmp(what, "crc32c")
			                  ? "block content matches its "
			                    "SHA-256, its stored CRC32C "
			                    "does not"
			                  : "block content does not match its "
			                    "SHA-256, its name");
		} else {
			char why[128];
			snprintf(why, sizeof(why), "block cannot be read: %s",
			         strerror(-rc));
			block_problem(c, FSCK_BLOCK_CORRUPT, b, why);
		}
		if (fsck_step(c))
			break;
	}
	if (n_missing && c->env->settle && !c->err && !c->rep->stopped)
		c->env->settle(c->env->ctx);
	for (size_t k = 0; k < n_missing && !c->err; k++) {
		struct brec *b = &c->bt[missing[k]];
		if (c->env->settle && still_referenced(c, b->hash) &&
		    blk_verify(c->env->bs, b->hash, NULL) == 0) {
			c->rep->st.blocks_verified++; /* fetched meanwhile */
			continue;
		}
		if (still_referenced(c, b->hash))
			block_problem(c, FSCK_BLOCK_MISSING, b,
			              "referenced block is not stored here");
	}
	free(missing);
}

struct store_walk {
	struct fsck *c;
	uint8_t (*cand)[BLK_HASH_LEN];
	size_t n, cap;
};

/* blk_list callback: count, and keep those the view does not reference. */
static int store_one(void *ctx, const uint8_t hash[BLK_HASH_LEN], uint64_t size)
{
	struct store_walk *w = ctx;
	struct fsck *c = w->c;
	(void)size;
	c->rep->st.blocks_stored++;
	struct brec *b = fsck_blk(c, hash, false);
	if (b && b->extents)
		return fsck_step(c) ? 1 : 0;
	if (w->n == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 64;
		void *nn = realloc(w->cand, nc * BLK_HASH_LEN);
		if (!nn)
			return c->err = -ENOMEM;
		w->cand = nn;
		w->cap = nc;
	}
	memcpy(w->cand[w->n++], hash, BLK_HASH_LEN);
	return fsck_step(c) ? 1 : 0;
}

/* Age in ms of a stored block file (the store's documented layout
 * DIR/HH/<hex>), -1 if unknown. */
static int64_t block_age_ms(struct fsck *c, const uint8_t *h)
{
	char hex[BLK_HEX_LEN + 1], path[4200];
	blk_hex(h, hex);
	snprintf(path, sizeof(path), "%s/%.2s/%s", blk_path(c->env->bs), hex,
	         hex);
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return ((int64_t)now.tv_sec - st.st_mtim.tv_sec) * 1000 +
	       ((int64_t)now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
}

/* Stored blocks nothing references. */
static void check_store(struct fsck *c)
{
	fsck_phase(c, "block store", 0);
	struct store_walk w = {.c = c};
	int rc = blk_list(c->env->bs, store_one, &w);
	if (rc < 0 && !c->err)
		snprintf(c->rep->error, sizeof(c->rep->error),
		         "cannot list the block store %s: %s",
		         blk_path(c->env->bs), strerror(-rc));
	for (size_t i = 0; i < w.n && !c->err && !c->rep->stopped; i++) {
		const uint8_t *h = w.cand[i];
		if (c->env->online && itab_block_refs(c->t, h) > 0)
			continue; /* a write committed after the view */
		if (c->env->keep_block && c->env->keep_block(c->env->ctx, h)) {
			c->rep->st.unreferenced_recent++;
			continue;
		}
		int64_t age = block_age_ms(c, h);
		if (age < 0)
			continue; /* deleted meanwhile */
		if (age < (int64_t)c->env->grace_ms) {
			c->rep->st.unreferenced_recent++;
			continue;
		}
		struct fsck_problem *p = fsck_problem(
		    c, FSCK_BLOCK_UNREF, 0,
		    "stored block that nothing references (%lld s old)",
		    (long long)(age / 1000));
		if (p) {
			p->has_hash = true;
			memcpy(p->hash, h, BLK_HASH_LEN);
		}
	}
	free(w.cand);
}

/* ---- the log
 * ---------------------------------------------------------------------- */

static void check_log(struct fsck *c)
{
	const struct fsck_log *l = &c->env->log;
	if (!l->known)
		return;
	uint64_t a = c->info.applied;
	if (l->error[0])
		fsck_problem(c, FSCK_LOG, 0, "%s", l->error);
	if (a < l->snap_index)
		fsck_problem(c, FSCK_APPLIED, 0,
		             "the table is at log index %llu, but the log was "
		             "compacted up to %llu: "
		             "the entries between are lost to this node",
		             (unsigned long long)a,
		             (unsigned long long)l->snap_index);
	if (a > l->last && !l->error[0])
		fsck_problem(c, FSCK_APPLIED, 0,
		             "the table is at log index %llu, past the log's "
		             "last entry %llu: the "
		             "log lost entries this node applied",
		             (unsigned long long)a,
		             (unsigned long long)l->last);
	if (c->env->online && a > l->commit)
		fsck_problem(c, FSCK_APPLIED, 0,
		             "the table is at log index %llu, past the commit "
		             "index %llu",
		             (unsigned long long)a,
		             (unsigned long long)l->commit);
	if (l->digest_known && l->digest_applied < l->snap_index)
		fsck_problem(c, FSCK_APPLIED, 0,
		             "the digest state is at log index %llu, but the "
		             "log was compacted up "
		             "to %llu",
		             (unsigned long long)l->digest_applied,
		             (unsigned long long)l->snap_index);
	if (l->digest_known && l->digest_applied > l->last && !l->error[0])
		fsck_problem(c, FSCK_APPLIED, 0,
		             "the digest state is at log index %llu, past the "
		             "log's last entry %llu",
		             (unsigned long long)l->digest_applied,
		             (unsigned long long)l->last);
}

/* ---- the run
 * ------------------------------------------------------------------------ */

/* See fsck.h. */
int fsck_run(const struct fsck_env *env, struct fsck_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	rep->online = env->online;
	rep->repair = env->repair;
	rep->node_id = env->self_id;
	rep->log = env->log;
	double t0 = mono_secs();
	struct fsck c = {.env = env, .rep = rep, .t = env->itab};
	int rc = itab_view_open(env->itab, &c.v);
	if (rc) {
		snprintf(rep->error, sizeof(rep->error),
		         "cannot open a view of the table: %s", strerror(-rc));
		return rc;
	}
	itab_view_info(c.v, &c.info);
	rep->applied = c.info.applied;
	struct fsck_env e2;
	if (env->read_log) {
		e2 = *env;
		env->read_log(env->ctx, c.info.applied, &e2.log);
		c.env = env = &e2;
		rep->log = e2.log;
	}
	static const struct {
		enum itab_rec kind;
		const char *phase;
	} walks[] = {
	    {ITAB_REC_INODE, "inodes"},
	    {ITAB_REC_DENTRY, "directory entries"},
	    {ITAB_REC_COOKIE, "readdir records"},
	    {ITAB_REC_EXTENT, "extents"},
	    {ITAB_REC_BLOCKREF, "block references"},
	    {ITAB_REC_SYMLINK, "symlinks"},
	    {ITAB_REC_XATTR, "xattrs"},
	    {ITAB_REC_ORPHAN, "orphans"},
	    {ITAB_REC_OPEN, "open files"},
	};
	for (size_t i = 0;
	     i < sizeof(walks) / sizeof(walks[0]) && !c.err && !rep->stopped;
	     i++) {
		itab_record_fn fn = walk_side;
		void *ctx = &c;
		struct side side = {.c = &c, .last_bad = 0};
		switch (walks[i].kind) {
		case ITAB_REC_INODE:
			fn = walk_inode;
			break;
		case ITAB_REC_DENTRY:
			fn = walk_dentry;
			break;
		case ITAB_REC_COOKIE:
			fn = walk_cookie;
			break;
		case ITAB_REC_EXTENT:
			fn = walk_extent;
			break;
		case ITAB_REC_BLOCKREF:
			fn = walk_blockref;
			break;
		default:
			ctx = &side;
			break;
		}
		fsck_phase(&c, walks[i].phase,
		           walks[i].kind == ITAB_REC_INODE ? c.info.inodes : 0);
		rc = itab_view_walk(env->itab, c.v, walks[i].kind, fn, ctx);
		if (rc < 0 && !c.err)
			c.err = rc;
	}
	if (!c.err && !rep->stopped)
		check_inodes(&c);
	if (!c.err && !rep->stopped)
		check_refs(&c);
	if (!c.err && !rep->stopped)
		check_blocks(&c);
	if (!c.err && !rep->stopped)
		check_store(&c);
	if (!c.err && !rep->stopped)
		check_log(&c);
	if (!c.err && !rep->stopped)
		c.err = fsck_paths(&c);
	if (!c.err && !rep->stopped)
		fsck_repair(&c);
	itab_view_close(env->itab, c.v);
	for (size_t i = 0; i < c.icap; i++)
		free(c.it[i].name);
	free(c.it);
	free(c.bt);
	for (size_t i = 0; i < c.nl; i++)
		free(c.lk[i].name);
	free(c.lk);
	for (size_t i = 0; i < rep->n; i++)
		rep->n_fixed += rep->p[i].fix == FSCK_FIXED;
	rep->n_left = rep->n - rep->n_fixed + rep->n_more;
	rep->secs = mono_secs() - t0;
	if (c.err && !rep->error[0])
		snprintf(rep->error, sizeof(rep->error),
		         "the check stopped: %s", strerror(-c.err));
	if (rep->stopped && !rep->error[0])
		snprintf(rep->error, sizeof(rep->error),
		         "the check was cancelled before its end");
	return c.err ? c.err : rep->stopped ? -ECANCELED : 0;
}

/* See fsck.h. */
void fsck_report_free(struct fsck_report *rep)
{
	for (size_t i = 0; i < rep->n; i++) {
		free(rep->p[i].path);
		free(rep->p[i].detail);
		free(rep->p[i].action);
		free(rep->p[i].name);
	}
	free(rep->p);
	rep->p = NULL;
	rep->n = rep->cap = 0;
}

/* See fsck.h. */
int fsck_exit_status(const struct fsck_report *rep)
{
	return rep->n_left || rep->error[0] ? 1 : 0;
}
