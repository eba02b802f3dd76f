/*
 * fsck_fix.c — after the checks: the paths of what the problems name,
 * and the repairs (see fsck.h for what is repaired and why only that).
 *
 * Paths come from a second walk of the directory entries of the same
 * view, which keeps only the names on the way from the problem inodes to
 * the root (a name per inode would cost memory for nothing). A path is
 * built from each inode's first entry; an inode that no path from the
 * root reaches gets "?" where the chain breaks.
 */
#include "fs/fsck_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 4096

static bool is_type_dir(uint32_t mode)
{
	return (mode & S_IFMT) == S_IFDIR;
}

/* Mark the directories on the way to the root of every wanted inode. */
static void want_ancestors(struct fsck *c)
{
	for (size_t i = 0; i < c->icap; i++) {
		struct irec *ir = &c->it[i];
		if (!ir->ino || !(ir->flags & IR_WANT_PATH))
			continue;
		uint64_t up = ir->first_parent;
		for (int d = 0; up && up != ITAB_ROOT_INO && d < MAX_DEPTH;
		     d++) {
			struct irec *p = fsck_ino(c, up, false);
			if (!p)
				break;
			p->flags |= IR_WANT_PATH;
			up = p->first_parent;
		}
	}
}

static int name_one(void *ctx, const struct itab_record *r)
{
	struct fsck *c = ctx;
	if (r->kind != ITAB_REC_DENTRY)
		return 0;
	if (fsck_step(c))
		return 1;
	struct irec *ir = fsck_ino(c, r->ino, false);
	if (!ir)
		return 0;
	if ((ir->flags & IR_WANT_PATH) && !ir->name &&
	    r->parent == ir->first_parent &&
	    !(ir->name = fsck_strndup(r->name, r->name_len)))
		return c->err = -ENOMEM;
	struct irec *dir = fsck_ino(c, r->parent, false);
	if ((ir->flags & IR_WANT_LINKS) && dir && is_type_dir(dir->mode)) {
		if (c->nl == c->capl) {
			size_t cap = c->capl ? c->capl * 2 : 16;
			struct lrec *n = realloc(c->lk, cap * sizeof(*n));
			if (!n)
				return c->err = -ENOMEM;
			c->lk = n;
			c->capl = cap;
		}
		struct lrec *l = &c->lk[c->nl];
		l->ino = r->ino;
		l->parent = r->parent;
		l->name_len = r->name_len;
		if (!(l->name = fsck_strndup(r->name, r->name_len)))
			return c->err = -ENOMEM;
		c->nl++;
	}
	return 0;
}

/* The path of ino (malloc'ed) from the names collected; "?" where the
 * chain to the root breaks. NULL for an unknown inode or on ENOMEM. */
static char *path_of(struct fsck *c, uint64_t ino)
{
	if (ino == ITAB_ROOT_INO)
		return strdup("/");
	const char *parts[MAX_DEPTH];
	int n = 0;
	bool broken = false;
	uint64_t cur = ino;
	while (cur != ITAB_ROOT_INO) {
		struct irec *ir = fsck_ino(c, cur, false);
		if (!ir || !ir->name || n == MAX_DEPTH) {
			broken = true;
			break;
		}
		parts[n++] = ir->name;
		if (is_type_dir(ir->mode) && ir->reach == 3) {
			broken = true; /* in a cycle, or below a detached
			                  directory */
			break;
		}
		cur = ir->first_parent;
	}
	if (n == 0 && broken)
		return NULL;
	size_t len = broken ? 2 : 1;
	for (int i = 0; i < n; i++)
		len += strlen(parts[i]) + 1;
	char *s = malloc(len);
	if (!s)
		return NULL;
	size_t w = 0;
	if (broken)
		s[w++] = '?';
	for (int i = n - 1; i >= 0; i--) {
		s[w++] = '/';
		size_t l = strlen(parts[i]);
		memcpy(s + w, parts[i], l);
		w += l;
	}
	if (w == 0)
		s[w++] = '/';
	s[w] = 0;
	return s;
}

/* See fsck_internal.h. */
int fsck_paths(struct fsck *c)
{
	want_ancestors(c);
	fsck_phase(c, "paths", c->rep->st.entries);
	int rc = itab_view_walk(c->t, c->v, ITAB_REC_DENTRY, name_one, c);
	if (rc < 0)
		return rc;
	if (c->err)
		return c->err;
	for (size_t i = 0; i < c->rep->n; i++) {
		struct fsck_problem *p = &c->rep->p[i];
		if (p->name) {
			char *dir = path_of(c, p->parent);
			if (dir &&
			    asprintf(&p->path, "%s%s%s", dir,
			             strcmp(dir, "/") ? "/" : "", p->name) < 0)
				p->path = NULL;
			free(dir);
		} else if (p->ino) {
			p->path = path_of(c, p->ino);
		}
	}
	return 0;
}

/* ---- repairs
 * ------------------------------------------------------------------ */

#define REBUILD                                                                \
	"if the other nodes check clean, rebuild this node from them (stop "   \
	"it, `sandfs member remove ID` through another node, empty its data "  \
	"directory, start it with --join and `sandfs member add` it again)"

static const char *const advice[FSCK__KINDS] = {
    [FSCK_BAD_RECORD] = "not repaired: fsck does not guess what an unreadable "
                        "record held; " REBUILD,
    [FSCK_ENTRY_TYPE] = "not repaired: " REBUILD,
    [FSCK_ENTRY_PARENT] = "not repaired: " REBUILD,
    [FSCK_DIR_LINKS] = "not repaired: " REBUILD,
    [FSCK_PARENT] = "not repaired: " REBUILD,
    [FSCK_CYCLE] = "not repaired: " REBUILD,
    [FSCK_DETACHED] =
        "not repaired (fsck does not relink directories): " REBUILD,
    [FSCK_READDIR] =
        "not repaired: listings may skip or repeat entries; " REBUILD,
    [FSCK_EXTENT] = "not repaired: " REBUILD,
    [FSCK_ST_BLOCKS] =
        "not repaired: harmless to the data (stat and du show another "
        "figure)",
    [FSCK_SYMLINK] = "not repaired: " REBUILD,
    [FSCK_XATTR] = "not repaired: harmless leftovers; " REBUILD,
    [FSCK_UNLINKED] =
        "not repaired (fsck does not relink files; its data is still "
        "referenced): " REBUILD,
    [FSCK_ORPHAN] = "not repaired: " REBUILD,
    [FSCK_OPEN_RECORD] = "not repaired: harmless leftover; " REBUILD,
    [FSCK_COUNTER] =
        "not repaired: statfs figures are off; a wrong next-inode counter "
        "is not harmless: " REBUILD,
    [FSCK_APPLIED] = "not repaired: the node cannot rebuild its state from its "
                     "log; " REBUILD,
    [FSCK_LOG] =
        "not repaired: the node will refuse to start on this log; " REBUILD,
};

static bool through_log(enum fsck_kind k)
{
	return k == FSCK_NLINK || k == FSCK_DIR_SIZE || k == FSCK_DANGLING ||
	       k == FSCK_REFCOUNT;
}

static void set_advice(struct fsck *c, struct fsck_problem *p)
{
	const struct fsck_env *e = c->env;
	if (through_log(p->kind)) {
		if (!e->repair)
			fsck_action(
			    p, FSCK_UNFIXED, "%s",
			    e->online
			        ? "--repair fixes it through the log"
			        : "start the node and run `sandfs fsck "
			          "--repair` through it: the fix goes "
			          "through the log");
		else
			fsck_action(p, FSCK_UNFIXED,
			            "not repaired offline: a change made here, "
			            "outside the log, "
			            "would make this replica differ from the "
			            "others; start the node "
			            "and run `sandfs fsck --repair` through it "
			            "(every replica then "
			            "checks and applies the fix alike)");
	} else if (p->kind == FSCK_BLOCK_MISSING ||
	           p->kind == FSCK_BLOCK_CORRUPT) {
		if (!e->repair)
			fsck_action(p, FSCK_UNFIXED,
			            "--repair fetches a good copy from a peer");
		else
			fsck_action(p, FSCK_UNFIXED,
			            "not repaired: no peer to fetch it from "
			            "(offline, give the node's --id and "
			            "--peers, or a configuration file naming "
			            "them), or start the node: it fetches "
			            "missing blocks by itself, and a corrupt "
			            "one when it is read or scrubbed");
	} else if (p->kind == FSCK_BLOCK_UNREF) {
		fsck_action(p, FSCK_UNFIXED, "%s",
		            e->repair
		                ? "kept"
		                : "--repair drops it (the block GC does too)");
	} else if (advice[p->kind]) {
		fsck_action(p, FSCK_UNFIXED, "%s", advice[p->kind]);
	}
}

/* The outcome of a repair proposed through the log. */
static void log_outcome(struct fsck_problem *p, int rc)
{
	if (rc == 0)
		fsck_action(p, FSCK_FIXED,
		            "repaired through the log (each replica checks it "
		            "against its own state)");
	else if (rc == -EALREADY)
		fsck_action(p, FSCK_FIXED,
		            "already right when the repair was applied");
	else if (rc == -ESTALE || rc == -ENOENT)
		fsck_action(p, FSCK_UNFIXED,
		            "not repaired: the state changed since the check; "
		            "run fsck again");
	else
		fsck_action(p, FSCK_FIX_FAILED, "the repair failed: %s",
		            strerror(-rc));
}

static int propose(struct fsck *c, struct itab_op *op)
{
	op->code = ITAB_OP_REPAIR;
	return c->env->propose(c->env->ctx, op);
}

static void fix_dir(struct fsck *c, struct fsck_problem *p)
{
	struct irec *ir = fsck_ino(c, p->ino, false);
	if (!ir)
		return;
	if (!(ir->flags & IR_FIXED_DIR)) {
		struct itab_op op = {.flags = ITAB_REPAIR_DIR, .ino = p->ino};
		ir->fix_rc = propose(c, &op);
		ir->flags |= IR_FIXED_DIR;
	}
	log_outcome(p, ir->fix_rc);
}

static void fix_nlink(struct fsck *c, struct fsck_problem *p)
{
	size_t need = 0, n = 0;
	for (size_t i = 0; i < c->nl; i++)
		if (c->lk[i].ino == p->ino)
			need += 10 + c->lk[i].name_len, n++;
	if (n == 0 || n != p->want) {
		fsck_action(p, FSCK_UNFIXED,
		            "not repaired: its links could not be listed");
		return;
	}
	uint8_t *buf = malloc(need);
	struct itab_link *links = calloc(n, sizeof(*links));
	if (!buf || !links) {
		free(buf);
		free(links);
		fsck_action(p, FSCK_FIX_FAILED,
		            "the repair failed: out of memory");
		return;
	}
	for (size_t i = 0, k = 0; i < c->nl; i++)
		if (c->lk[i].ino == p->ino)
			links[k++] = (struct itab_link){
			    c->lk[i].parent, c->lk[i].name, c->lk[i].name_len};
	long len = itab_repair_links_encode(links, n, buf, need);
	struct itab_op op = {.flags = ITAB_REPAIR_NLINK,
	                     .ino = p->ino,
	                     .size = p->seen,
	                     .value = buf,
	                     .value_len = len > 0 ? (size_t)len : 0};
	log_outcome(p, len < 0 ? (int)len : propose(c, &op));
	free(buf);
	free(links);
}

static void fix_block(struct fsck *c, struct fsck_problem *p)
{
	const struct fsck_env *e = c->env;
	if (p->kind == FSCK_BLOCK_CORRUPT) {
		/* out of the way first: a store keeps a block file it holds */
		int rc = blk_check(e->bs, p->hash);
		if (rc == 0) {
			fsck_action(
			    p, FSCK_FIXED,
			    "the block checks now (rewritten meanwhile)");
			return;
		}
	}
	uint64_t from = 0;
	int rc = e->fetch(e->ctx, p->hash, &from);
	if (rc == 0)
		rc = blk_verify(e->bs, p->hash, NULL);
	if (rc == 0)
		fsck_action(p, FSCK_FIXED, "fetched a good copy from node %llu",
		            (unsigned long long)from);
	else
		fsck_action(p, FSCK_FIX_FAILED,
		            "no peer could give a good copy (%s)%s",
		            strerror(-rc),
		            p->kind == FSCK_BLOCK_CORRUPT
		                ? "; the corrupt copy is in quarantine"
		                : "");
}

/* See fsck_internal.h. */
void fsck_repair(struct fsck *c)
{
	const struct fsck_env *e = c->env;
	struct fsck_report *r = c->rep;
	fsck_phase(c, e->repair ? "repairing" : "advice", r->n);
	size_t unref = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct fsck_problem *p = &r->p[i];
		set_advice(c, p);
		if (!e->repair)
			continue;
		if (e->stopping && e->stopping(e->ctx)) {
			r->stopped = true;
			return;
		}
		switch (p->kind) {
		case FSCK_NLINK:
		case FSCK_DIR_SIZE: {
			if (!e->propose)
				break;
			struct irec *ir = fsck_ino(c, p->ino, false);
			if (ir && is_type_dir(ir->mode))
				fix_dir(c, p);
			else if (p->kind == FSCK_NLINK)
				fix_nlink(c, p);
			break;
		}
		case FSCK_DANGLING:
			if (e->propose) {
				struct itab_op op = {
				    .flags = ITAB_REPAIR_DENTRY,
				    .parent = p->parent,
				    .name = p->name,
				    .name_len = strlen(p->name),
				    .ino = p->ino};
				log_outcome(p, propose(c, &op));
			}
			break;
		case FSCK_REFCOUNT:
			if (e->propose) {
				struct itab_op op = {.flags = ITAB_REPAIR_REFS,
				                     .value = p->hash,
				                     .value_len = BLK_HASH_LEN,
				                     .size = p->seen,
				                     .rdev = p->want};
				log_outcome(p, propose(c, &op));
			}
			break;
		case FSCK_BLOCK_MISSING:
		case FSCK_BLOCK_CORRUPT:
			if (e->fetch)
				fix_block(c, p);
			break;
		case FSCK_BLOCK_UNREF:
			if (e->drop_unreferenced) {
				unref++;
			} else {
				int rc = blk_delete(e->bs, p->hash);
				if (rc == 0 || rc == -ENOENT)
					fsck_action(p, FSCK_FIXED, "dropped");
				else
					fsck_action(p, FSCK_FIX_FAILED,
					            "cannot drop it: %s",
					            strerror(-rc));
			}
			break;
		default:
			break;
		}
		fsck_step(c);
	}
	if (!unref)
		return;
	uint64_t dropped = 0;
	int rc = e->drop_unreferenced(e->ctx, &dropped);
	for (size_t i = 0; i < r->n; i++) {
		struct fsck_problem *p = &r->p[i];
		if (p->kind != FSCK_BLOCK_UNREF)
			continue;
		if (rc < 0)
			fsck_action(p, FSCK_FIX_FAILED,
			            "the block GC failed: %s", strerror(-rc));
		else if (blk_has(e->bs, p->hash) == 0)
			fsck_action(p, FSCK_FIXED, "dropped by the block GC");
		else
			fsck_action(p, FSCK_UNFIXED,
			            "kept by the block GC (it was stored or "
			            "used again recently)");
	}
}
