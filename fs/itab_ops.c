/*
 * itab_apply(): one committed log entry -> one LevelDB WriteBatch.
 *
 * Every op runs in two phases inside a transaction (struct txn):
 *   1. validate against the committed state (reads only) and return the
 *      errno POSIX asks for;
 *   2. mutate: inodes touched are kept in a few in-memory slots (an op
 *      touches at most four: two parents, source, victim) and written once
 *      at the end; dentries, extents, xattrs go straight into the batch;
 *      block reference changes are summed per hash and written at the end.
 * If an op fails in either phase the batch is cleared, so the state stays
 * untouched; the applied index and the dedupe record are still written.
 *
 * Nothing here reads the clock or any node-local input: times come from
 * op->now_ns, new inode numbers from the replicated counter.
 */
#include "fs/itab_acl.h"
#include "fs/itab_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH (1u << 24) /* parent walk guard against a corrupt table */

/* Note a LevelDB failure (-EIO) so apply aborts instead of deciding on it. */
int txn_chk(struct txn *tx, int rc)
{
	if (rc == -EIO || rc == -ENOMEM)
		tx->io = true;
	return rc;
}

/* Inode ino for this op: from a slot or loaded. -ENOENT if absent/deleted. */
int txn_get(struct txn *tx, uint64_t ino, struct inode **out)
{
	for (int i = 0; i < tx->n; i++) {
		if (tx->slot[i].in.a.ino == ino) {
			if (tx->slot[i].dead)
				return -ENOENT;
			*out = &tx->slot[i].in;
			return 0;
		}
	}
	if (tx->n == TXN_SLOTS)
		return txn_chk(tx, -EIO);
	int rc = db_inode(tx->t, ino, &tx->slot[tx->n].in);
	if (rc)
		return txn_chk(tx, rc);
	tx->slot[tx->n].dirty = tx->slot[tx->n].dead = false;
	*out = &tx->slot[tx->n++].in;
	return 0;
}

/* Mark an inode (a slot pointer) to be written at commit. */
void txn_dirty(struct txn *tx, struct inode *in)
{
	for (int i = 0; i < tx->n; i++)
		if (&tx->slot[i].in == in)
			tx->slot[i].dirty = true;
}

/* A directory for this op: -ENOENT, -ENOTDIR. */
/* The directory a change names by inode (a parent). One that no longer
 * exists is -ESTALE, not -ENOENT: the caller's kernel resolved the path
 * from a cache that still held it (another node removed or replaced it
 * meanwhile), and ESTALE makes the kernel resolve the path again with
 * revalidation and retry once, so the change applies to what the path
 * names now. (ENOENT would be an answer that fits no moment: the path may
 * have existed all along.) */
static int txn_dir(struct txn *tx, uint64_t ino, struct inode **out)
{
	int rc = txn_get(tx, ino, out);
	if (rc == -ENOENT)
		return -ESTALE;
	if (rc == 0 && !is_type((*out)->a.mode, S_IFDIR))
		rc = -ENOTDIR;
	return rc;
}

/* Dentry lookup in the committed state. */
static int txn_dent(struct txn *tx, uint64_t parent, const char *name, size_t nl, struct dent *d)
{
	return txn_chk(tx, db_dent(tx->t, parent, name, nl, d));
}

/* Add a block reference change. */
int txn_ref_add(struct txn *tx, const uint8_t *h, int64_t d)
{
	if (tx->nrd == tx->caprd) {
		size_t cap = tx->caprd ? 2 * tx->caprd : 16;
		struct refd *n = realloc(tx->rd, cap * sizeof(*n));
		if (!n)
			return txn_chk(tx, -ENOMEM);
		tx->rd = n, tx->caprd = cap;
	}
	memcpy(tx->rd[tx->nrd].h, h, ITAB_HASH_LEN);
	tx->rd[tx->nrd++].d = d;
	return 0;
}

/* st_blocks units of an extent of len bytes. */
static uint64_t units(uint32_t len)
{
	return ((uint64_t)len + 511) / 512;
}

/* A valid entry name: 1..255 bytes, not "." or "..", no '/' or NUL. */
static int check_name(const char *n, size_t nl)
{
	if (nl > ITAB_NAME_MAX)
		return -ENAMETOOLONG;
	if (nl == 0 || (nl == 1 && n[0] == '.') || (nl == 2 && n[0] == '.' && n[1] == '.'))
		return -EINVAL;
	if (memchr(n, '/', nl) || memchr(n, '\0', nl))
		return -EINVAL;
	return 0;
}

/* Touch a directory's mtime and ctime. */
static void dir_touch(struct txn *tx, struct inode *dir)
{
	dir->a.mtime_ns = dir->a.ctime_ns = tx->op->now_ns;
	txn_dirty(tx, dir);
}

/* Write the 'C' record (dir, cookie) -> ino, type, name. */
static void put_cookie(struct txn *tx, uint64_t dir, uint64_t cookie, uint64_t ino, uint32_t type,
		       const char *name, size_t nl)
{
	uint8_t k[KEY_MAX], v[9 + ITAB_NAME_MAX];
	be_put64(v, ino);
	v[8] = (uint8_t)(type >> 12);
	memcpy(v + 8 + 1, name, nl);
	leveldb_writebatch_put(tx->wb, (char *)k, key_ino_u64(k, 'C', dir, cookie), (char *)v,
			       9 + nl);
}

/* Write the 'D' record (dir, name) -> d. */
static void put_dent(struct txn *tx, uint64_t dir, const char *name, size_t nl,
		     const struct dent *d)
{
	uint8_t k[KEY_MAX], v[DENT_ENC_LEN];
	dent_encode(d, v);
	leveldb_writebatch_put(tx->wb, (char *)k, key_ino_name(k, 'D', dir, name, nl), (char *)v,
			       DENT_ENC_LEN);
}

/* New entry name -> ino in dir, with the dir's next cookie. */
static void add_dentry(struct txn *tx, struct inode *dir, const char *name, size_t nl,
		       uint64_t ino, uint32_t type)
{
	struct dent d = {.ino = ino, .type = type & S_IFMT, .cookie = dir->next_cookie++};
	put_dent(tx, dir->a.ino, name, nl, &d);
	put_cookie(tx, dir->a.ino, d.cookie, ino, d.type, name, nl);
	dir->a.size++;
	dir_touch(tx, dir);
}

/* Remove entry (dir, name) whose value is d. */
static void del_dentry(struct txn *tx, struct inode *dir, const char *name, size_t nl,
		       const struct dent *d)
{
	uint8_t k[KEY_MAX];
	leveldb_writebatch_delete(tx->wb, (char *)k, key_ino_name(k, 'D', dir->a.ino, name, nl));
	leveldb_writebatch_delete(tx->wb, (char *)k, key_ino_u64(k, 'C', dir->a.ino, d->cookie));
	dir->a.size--;
	dir_touch(tx, dir);
}

/* Scan callback: delete the key. */
static int del_key(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct txn *tx = ctx;
	leveldb_writebatch_delete(tx->wb, (const char *)k, kl);
	return 0;
}

struct drop_ctx {
	struct txn *tx;
	struct inode *in;
};

/* Scan callback: drop an extent (delete key, unref block, fix blocks). */
static int drop_extent(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	struct drop_ctx *c = ctx;
	if (vl != ITAB_HASH_LEN + 4)
		return -EIO;
	leveldb_writebatch_delete(c->tx->wb, (const char *)k, kl);
	uint64_t u = units(be_get32(v + ITAB_HASH_LEN));
	c->in->a.blocks -= u < c->in->a.blocks ? u : c->in->a.blocks;
	return txn_ref_add(c->tx, v, -1);
}

/* Delete an inode and everything hanging off it (target, xattrs, extents,
 * orphan record); extents drop their block references. */
int txn_kill_inode(struct txn *tx, struct inode *in)
{
	uint8_t k[KEY_MAX], p[KEY_MAX];
	uint64_t ino = in->a.ino;
	leveldb_writebatch_delete(tx->wb, (char *)k, key_ino(k, 'L', ino));
	leveldb_writebatch_delete(tx->wb, (char *)k, key_meta_u64(k, 'o', ino));
	int rc = itab_scan(tx->t, p, key_ino(p, 'X', ino), NULL, 0, del_key, tx);
	struct drop_ctx c = {tx, in};
	if (!rc)
		rc = itab_scan(tx->t, p, key_ino(p, 'E', ino), NULL, 0, drop_extent, &c);
	if (rc)
		return txn_chk(tx, rc < 0 ? rc : -EIO);
	for (int i = 0; i < tx->n; i++)
		if (&tx->slot[i].in == in)
			tx->slot[i].dead = true;
	tx->ctr.inodes--;
	return 0;
}

/* An inode lost its last link: keep it as an orphan while some node
 * holds it open ('O' records; freed by the CLOSE or RELEASE_NODE that
 * drops the last one), else free it now if the op says so (FREE_NOW).
 * Without FREE_NOW (the format before open records) it stays an orphan
 * held by the op's origin, which releases it with RELEASE_ORPHAN. */
static int unlinked(struct txn *tx, struct inode *in)
{
	int held = locks_held_open(tx, in->a.ino);
	if (held < 0)
		return held;
	if (!held && (tx->op->flags & ITAB_F_FREE_NOW))
		return txn_kill_inode(tx, in);
	uint8_t k[KEY_MAX], holder[8];
	be_put64(holder, held ? 0 : tx->op->origin);
	leveldb_writebatch_put(tx->wb, (char *)k, key_meta_u64(k, 'o', in->a.ino),
			       (const char *)holder, sizeof(holder));
	tx->res->orphaned = in->a.ino;
	return 0;
}

/* True (1) if anc is start or one of start's ancestors; walks the parent
 * pointers of directories up to the root. */
static int is_ancestor(struct txn *tx, uint64_t anc, uint64_t start)
{
	uint64_t ino = start;
	for (uint32_t depth = 0; depth < MAX_DEPTH; depth++) {
		if (ino == anc)
			return 1;
		if (ino == ITAB_ROOT_INO)
			return 0;
		struct inode in;
		int rc = db_inode(tx->t, ino, &in);
		if (rc)
			return txn_chk(tx, rc == -ENOENT ? -EIO : rc);
		ino = in.a.parent;
	}
	return txn_chk(tx, -EIO);
}

/* The ACL xattr `kind` of ino: 0 with *val (malloc'd, caller frees) and
 * *len, -ENOENT when there is none (or what is stored does not check:
 * treated as none), -EIO. */
static int acl_get(struct txn *tx, uint64_t ino, enum acl_kind kind, uint8_t **val, size_t *len)
{
	const char *name = kind == ACL_KIND_ACCESS ? ACL_XATTR_ACCESS : ACL_XATTR_DEFAULT;
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	int rc = txn_chk(tx, db_get(tx->t, NULL, k, key_ino_name(k, 'X', ino, name, strlen(name)),
				&v, &vl));
	if (rc)
		return rc;
	rc = acl_check(v, vl) ? -ENOENT : 0;
	if (rc == 0 && (*val = malloc(vl)) == NULL)
		rc = txn_chk(tx, -ENOMEM);
	if (rc == 0) {
		memcpy(*val, v, vl);
		*len = vl;
	}
	leveldb_free(v);
	return rc;
}

/* Write (val != NULL) or delete the ACL xattr `kind` of ino. */
static void acl_put(struct txn *tx, uint64_t ino, enum acl_kind kind, const void *val,
		    size_t len)
{
	const char *name = kind == ACL_KIND_ACCESS ? ACL_XATTR_ACCESS : ACL_XATTR_DEFAULT;
	uint8_t k[KEY_MAX];
	size_t kl = key_ino_name(k, 'X', ino, name, strlen(name));
	if (val)
		leveldb_writebatch_put(tx->wb, (char *)k, kl, val, len);
	else
		leveldb_writebatch_delete(tx->wb, (char *)k, kl);
}

/* A new inode in dir: with a default ACL on dir, the inode's permission
 * bits come from *perm (the create mode, umask NOT applied) limited by
 * that ACL, which becomes its access ACL (when the mode cannot say it
 * all) and, for a directory, its default ACL too (posix_acl_create).
 * Without one, the umask applies. Symlinks take no ACL. */
static int acl_inherit(struct txn *tx, const struct inode *dir, const struct inode *in,
		       uint32_t *perm)
{
	uint8_t *dflt;
	size_t len;
	uint32_t type = in->a.mode & S_IFMT;
	int rc = type == S_IFLNK ? -ENOENT : acl_get(tx, dir->a.ino, ACL_KIND_DEFAULT, &dflt, &len);
	if (rc == -ENOENT) {
		*perm &= ~tx->op->umask;
		return 0;
	}
	if (rc)
		return rc;
	if (type == S_IFDIR)
		acl_put(tx, in->a.ino, ACL_KIND_DEFAULT, dflt, len);
	if (acl_create_masq(dflt, len, perm))
		acl_put(tx, in->a.ino, ACL_KIND_ACCESS, dflt, len);
	free(dflt);
	return 0;
}

/* CREATE (mknod), MKDIR, SYMLINK. */
static int op_create(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct inode *dir;
	struct dent d;
	uint32_t type;
	int rc = check_name(op->name, op->name_len);
	if (rc || (rc = txn_dir(tx, op->parent, &dir)))
		return rc;
	if (op->code == ITAB_OP_MKDIR) {
		type = S_IFDIR;
	} else if (op->code == ITAB_OP_SYMLINK) {
		type = S_IFLNK;
		if (op->target_len == 0)
			return -ENOENT;
		if (op->target_len > ITAB_SYMLINK_MAX)
			return -ENAMETOOLONG;
		if (memchr(op->target, '\0', op->target_len))
			return -EINVAL;
	} else {
		type = op->mode & S_IFMT;
		if (type == 0)
			type = S_IFREG;
		if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
		    type != S_IFBLK)
			return -EINVAL;
	}
	rc = txn_dent(tx, op->parent, op->name, op->name_len, &d);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	if (type == S_IFDIR && dir->a.nlink >= ITAB_NLINK_MAX)
		return -EMLINK;

	if (tx->n == TXN_SLOTS)
		return txn_chk(tx, -EIO);
	struct inode *in = &tx->slot[tx->n].in;
	tx->slot[tx->n].dirty = true;
	tx->slot[tx->n++].dead = false;
	memset(in, 0, sizeof(*in));
	in->a.ino = tx->ctr.next_ino++;
	in->a.mode = type;
	uint32_t perm = type == S_IFLNK ? 0777 : (op->mode & 07777);
	if (type != S_IFLNK && (rc = acl_inherit(tx, dir, in, &perm)))
		return rc;
	in->a.uid = op->uid;
	in->a.gid = op->gid;
	if (dir->a.mode & S_ISGID) { /* BSD group semantics for setgid dirs */
		in->a.gid = dir->a.gid;
		if (type == S_IFDIR)
			perm |= S_ISGID;
	}
	in->a.mode = type | perm;
	in->a.nlink = type == S_IFDIR ? 2 : 1;
	in->a.rdev = (type == S_IFCHR || type == S_IFBLK) ? op->rdev : 0;
	in->a.atime_ns = in->a.mtime_ns = in->a.ctime_ns = op->now_ns;
	in->a.generation = tx->index;
	if (type == S_IFDIR) {
		in->a.parent = dir->a.ino;
		in->next_cookie = ITAB_COOKIE_FIRST;
		dir->a.nlink++;
	}
	if (type == S_IFLNK) {
		uint8_t k[KEY_MAX];
		in->a.size = op->target_len;
		leveldb_writebatch_put(tx->wb, (char *)k, key_ino(k, 'L', in->a.ino), op->target,
				       op->target_len);
	}
	add_dentry(tx, dir, op->name, op->name_len, in->a.ino, type);
	tx->ctr.inodes++;
	tx->res->ino = in->a.ino;
	if (op->flags & ITAB_F_OPEN)
		return type == S_IFREG ? locks_create_open(tx, in->a.ino) : -EINVAL;
	return 0;
}

/* LINK: new name parent/name for inode op->ino. */
static int op_link(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct inode *src, *dir;
	struct dent d;
	int rc = check_name(op->name, op->name_len);
	if (rc || (rc = txn_get(tx, op->ino, &src)) || (rc = txn_dir(tx, op->parent, &dir)))
		return rc;
	rc = txn_dent(tx, op->parent, op->name, op->name_len, &d);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	if (is_type(src->a.mode, S_IFDIR))
		return -EPERM;
	if (src->a.nlink == 0)
		return -ENOENT;
	if (src->a.nlink >= ITAB_NLINK_MAX)
		return -EMLINK;
	src->a.nlink++;
	src->a.ctime_ns = op->now_ns;
	txn_dirty(tx, src);
	add_dentry(tx, dir, op->name, op->name_len, src->a.ino, src->a.mode);
	tx->res->ino = src->a.ino;
	return 0;
}

/* UNLINK and RMDIR. */
static int op_remove(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	bool rmdir = op->code == ITAB_OP_RMDIR;
	struct inode *dir, *in;
	struct dent d;
	int rc = check_name(op->name, op->name_len);
	if (rc || (rc = txn_dir(tx, op->parent, &dir)) ||
	    (rc = txn_dent(tx, op->parent, op->name, op->name_len, &d)))
		return rc;
	if ((rc = txn_get(tx, d.ino, &in)))
		return txn_chk(tx, rc == -ENOENT ? -EIO : rc);
	bool isdir = is_type(in->a.mode, S_IFDIR);
	if (rmdir && !isdir)
		return -ENOTDIR;
	if (!rmdir && isdir)
		return -EISDIR;
	if (rmdir && in->a.size > 0)
		return -ENOTEMPTY;
	del_dentry(tx, dir, op->name, op->name_len, &d);
	tx->res->victim = in->a.ino;
	if (rmdir) {
		dir->a.nlink--;
		return txn_kill_inode(tx, in);
	}
	in->a.nlink--;
	in->a.ctime_ns = op->now_ns;
	txn_dirty(tx, in);
	return in->a.nlink == 0 ? unlinked(tx, in) : 0;
}

/* RENAME, RENAME_NOREPLACE, RENAME_EXCHANGE. Check order follows Linux:
 * names, parents, source, NOREPLACE/EXCHANGE existence, same-inode no-op,
 * "directory into its own subtree" (EINVAL), replace type rules, EMLINK. */
static int op_rename(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	uint32_t fl = op->flags & ~ITAB_F_FREE_NOW;
	struct inode *sp, *dp, *src, *dst = NULL;
	struct dent sd, dd;
	int rc;
	if ((fl & ~(ITAB_RENAME_NOREPLACE | ITAB_RENAME_EXCHANGE)) ||
	    fl == (ITAB_RENAME_NOREPLACE | ITAB_RENAME_EXCHANGE))
		return -EINVAL;
	bool exch = fl & ITAB_RENAME_EXCHANGE;
	if ((rc = check_name(op->name, op->name_len)) ||
	    (rc = check_name(op->newname, op->newname_len)) ||
	    (rc = txn_dir(tx, op->parent, &sp)) || (rc = txn_dir(tx, op->newparent, &dp)) ||
	    (rc = txn_dent(tx, op->parent, op->name, op->name_len, &sd)))
		return rc;
	/* The proposer's kernel moves its dentry of the source to the new
	 * name: that must be the inode that moves here, or its cache would
	 * name the wrong file afterwards (another node replaced the source
	 * between the proposal and this apply). -ESTALE makes it look the
	 * names up again and retry. */
	if (op->ino && sd.ino != op->ino)
		return -ESTALE;
	rc = txn_dent(tx, op->newparent, op->newname, op->newname_len, &dd);
	if (rc && rc != -ENOENT)
		return rc;
	bool exists = rc == 0;
	if ((fl & ITAB_RENAME_NOREPLACE) && exists)
		return -EEXIST;
	if (exch && !exists)
		return -ENOENT;
	if (exists && dd.ino == sd.ino)
		return 0; /* same file: POSIX says succeed and do nothing */
	if ((rc = txn_get(tx, sd.ino, &src)) || (exists && (rc = txn_get(tx, dd.ino, &dst))))
		return txn_chk(tx, rc == -ENOENT ? -EIO : rc);
	bool sdir = is_type(src->a.mode, S_IFDIR), ddir = dst && is_type(dst->a.mode, S_IFDIR);
	bool cross = op->parent != op->newparent;
	if (sdir && cross && (rc = is_ancestor(tx, src->a.ino, op->newparent)))
		return rc < 0 ? rc : -EINVAL;
	if (exch && ddir && cross && (rc = is_ancestor(tx, dst->a.ino, op->parent)))
		return rc < 0 ? rc : -EINVAL;
	if (exists && !exch) {
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir && dst->a.size > 0)
			return -ENOTEMPTY;
	}
	if (cross) {
		int gain = (int)sdir - (int)ddir; /* subdirs dp gains (sp loses, if exch) */
		if (gain > 0 && dp->a.nlink >= ITAB_NLINK_MAX)
			return -EMLINK;
		if (exch && gain < 0 && sp->a.nlink >= ITAB_NLINK_MAX)
			return -EMLINK;
	}

	int64_t now = op->now_ns;
	if (exch) {
		struct dent a = {.ino = dd.ino, .type = dd.type, .cookie = sd.cookie};
		struct dent b = {.ino = sd.ino, .type = sd.type, .cookie = dd.cookie};
		put_dent(tx, op->parent, op->name, op->name_len, &a);
		put_cookie(tx, op->parent, a.cookie, a.ino, a.type, op->name, op->name_len);
		put_dent(tx, op->newparent, op->newname, op->newname_len, &b);
		put_cookie(tx, op->newparent, b.cookie, b.ino, b.type, op->newname,
			   op->newname_len);
		if (cross && sdir) {
			src->a.parent = dp->a.ino;
			sp->a.nlink--, dp->a.nlink++;
		}
		if (cross && ddir) {
			dst->a.parent = sp->a.ino;
			dp->a.nlink--, sp->a.nlink++;
		}
		dst->a.ctime_ns = now;
		txn_dirty(tx, dst);
		dir_touch(tx, sp);
		dir_touch(tx, dp);
	} else {
		if (exists) {
			uint8_t k[KEY_MAX];
			leveldb_writebatch_delete(tx->wb, (char *)k,
						  key_ino_u64(k, 'C', dp->a.ino, dd.cookie));
			dp->a.size--;
			tx->res->victim = dst->a.ino;
			if (ddir) {
				dp->a.nlink--;
				if ((rc = txn_kill_inode(tx, dst)))
					return rc;
			} else {
				dst->a.nlink--;
				dst->a.ctime_ns = now;
				txn_dirty(tx, dst);
				if (dst->a.nlink == 0 && (rc = unlinked(tx, dst)))
					return rc;
			}
		}
		del_dentry(tx, sp, op->name, op->name_len, &sd);
		add_dentry(tx, dp, op->newname, op->newname_len, sd.ino, sd.type);
		if (cross && sdir) {
			src->a.parent = dp->a.ino;
			sp->a.nlink--, dp->a.nlink++;
		}
	}
	src->a.ctime_ns = now;
	txn_dirty(tx, src);
	tx->res->ino = src->a.ino;
	return 0;
}

/* Shorten the file to size: drop extents past it, shorten the last one. */
static int truncate_to(struct txn *tx, struct inode *in, uint64_t size)
{
	if (size < in->a.size) {
		uint64_t bs = tx->t->block_size;
		uint64_t keep = size / bs + (size % bs ? 1 : 0);
		uint8_t p[KEY_MAX], s[KEY_MAX], k[KEY_MAX];
		struct drop_ctx c = {tx, in};
		int rc = itab_scan(tx->t, p, key_ino(p, 'E', in->a.ino), s,
				   key_ino_u64(s, 'E', in->a.ino, keep), drop_extent, &c);
		if (rc)
			return txn_chk(tx, rc < 0 ? rc : -EIO);
		if (size % bs) {
			char *v;
			size_t vl;
			size_t kl = key_ino_u64(k, 'E', in->a.ino, size / bs);
			rc = db_get(tx->t, NULL, k, kl, &v, &vl);
			if (rc && rc != -ENOENT)
				return txn_chk(tx, rc);
			if (rc == 0) {
				uint32_t len = vl == ITAB_HASH_LEN + 4
						       ? be_get32((uint8_t *)v + ITAB_HASH_LEN)
						       : 0;
				uint32_t nl = (uint32_t)(size % bs);
				if (len > nl) {
					be_put32((uint8_t *)v + ITAB_HASH_LEN, nl);
					leveldb_writebatch_put(tx->wb, (char *)k, kl, v, vl);
					in->a.blocks -= units(len) - units(nl);
				}
				leveldb_free(v);
			}
		}
	}
	in->a.size = size;
	return 0;
}

/* SETATTR: mode (permission bits), uid, gid, size, explicit times; ctime
 * is op->ctime if given, else now. A size change also sets mtime = now
 * unless an explicit mtime comes with it. */
static int op_setattr(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct inode *in;
	int rc = txn_get(tx, op->ino, &in);
	if (rc)
		return rc;
	if (op->valid & ~0x7fu)
		return -EINVAL;
	if (op->valid & ITAB_SET_SIZE) {
		if (is_type(in->a.mode, S_IFDIR))
			return -EISDIR;
		if (!is_type(in->a.mode, S_IFREG))
			return -EINVAL;
		if (op->size > (uint64_t)INT64_MAX)
			return -EFBIG;
		if ((rc = truncate_to(tx, in, op->size)))
			return rc;
		in->a.mtime_ns = op->now_ns;
	}
	if (op->valid & ITAB_SET_MODE) {
		in->a.mode = (in->a.mode & S_IFMT) | (op->mode & 07777);
		/* chmod rewrites the access ACL's owner, mask (or group) and
		 * other entries (posix_acl_chmod). */
		uint8_t *acl;
		size_t len;
		rc = is_type(in->a.mode, S_IFLNK) ? -ENOENT
						   : acl_get(tx, in->a.ino, ACL_KIND_ACCESS, &acl, &len);
		if (rc && rc != -ENOENT)
			return rc;
		if (rc == 0) {
			acl_chmod(acl, len, in->a.mode);
			acl_put(tx, in->a.ino, ACL_KIND_ACCESS, acl, len);
			free(acl);
		}
	}
	if (op->valid & ITAB_SET_UID)
		in->a.uid = op->uid;
	if (op->valid & ITAB_SET_GID)
		in->a.gid = op->gid;
	if (op->valid & ITAB_SET_ATIME)
		in->a.atime_ns = op->atime_ns;
	if (op->valid & ITAB_SET_MTIME)
		in->a.mtime_ns = op->mtime_ns;
	in->a.ctime_ns = (op->valid & ITAB_SET_CTIME) ? op->ctime_ns : op->now_ns;
	txn_dirty(tx, in);
	tx->res->ino = in->a.ino;
	return 0;
}

/* A valid xattr name: 1..255 bytes without NUL. */
static int check_xname(const char *n, size_t nl)
{
	if (nl == 0 || nl > ITAB_XATTR_NAME_MAX)
		return -ERANGE;
	return memchr(n, '\0', nl) ? -EINVAL : 0;
}

/* SETXATTR / REMOVEXATTR of an ACL (kind): the value is checked
 * (-EINVAL), stored canonical; a default ACL exists on directories only
 * (-EACCES); an access ACL sets the mode's permission bits and is stored
 * only when the mode cannot say it all (posix_acl_update_mode), dropping
 * setgid with ITAB_F_KILL_SGID. Removing a missing ACL succeeds, as on
 * Linux. ctime changes in every case. */
static int op_acl(struct txn *tx, struct inode *in, enum acl_kind kind)
{
	const struct itab_op *op = tx->op;
	bool set = op->code == ITAB_OP_SETXATTR;
	if (is_type(in->a.mode, S_IFLNK))
		return -EOPNOTSUPP;
	if (kind == ACL_KIND_DEFAULT && !is_type(in->a.mode, S_IFDIR)) {
		if (set)
			return -EACCES;
		tx->res->ino = in->a.ino;
		return 0;
	}
	if (op->flags & ~(ITAB_XATTR_CREATE | ITAB_XATTR_REPLACE | ITAB_F_KILL_SGID))
		return -EINVAL;
	if (set && op->value_len > ITAB_XATTR_SIZE_MAX)
		return -E2BIG;
	if (!set) {
		acl_put(tx, in->a.ino, kind, NULL, 0);
	} else {
		if (acl_check(op->value, op->value_len))
			return -EINVAL;
		uint8_t *v = malloc(op->value_len);
		if (!v)
			return txn_chk(tx, -ENOMEM);
		memcpy(v, op->value, op->value_len);
		acl_canonical(v, op->value_len);
		bool store = true;
		if (kind == ACL_KIND_ACCESS) {
			uint32_t perm;
			store = acl_equiv_mode(v, op->value_len, &perm) != 0;
			in->a.mode = (in->a.mode & ~0777u) | perm;
			if (op->flags & ITAB_F_KILL_SGID)
				in->a.mode &= ~(uint32_t)S_ISGID;
		}
		acl_put(tx, in->a.ino, kind, store ? v : NULL, op->value_len);
		free(v);
	}
	in->a.ctime_ns = op->now_ns;
	txn_dirty(tx, in);
	tx->res->ino = in->a.ino;
	return 0;
}

/* SETXATTR and REMOVEXATTR. */
static int op_xattr(struct txn *tx)
{
	const struct itab_op *op = tx->op;
	struct inode *in;
	uint8_t k[KEY_MAX];
	char *v;
	size_t vl;
	bool set = op->code == ITAB_OP_SETXATTR;
	int rc = txn_get(tx, op->ino, &in);
	if (rc || (rc = check_xname(op->xname, op->xname_len)))
		return rc;
	enum acl_kind kind = acl_kind_of(op->xname, op->xname_len);
	if (kind != ACL_KIND_NONE)
		return op_acl(tx, in, kind);
	if (set && op->value_len > ITAB_XATTR_SIZE_MAX)
		return -E2BIG;
	if (set && (op->flags & ~(ITAB_XATTR_CREATE | ITAB_XATTR_REPLACE)))
		return -EINVAL;
	size_t kl = key_ino_name(k, 'X', op->ino, op->xname, op->xname_len);
	rc = db_get(tx->t, NULL, k, kl, &v, &vl);
	if (rc && rc != -ENOENT)
		return txn_chk(tx, rc);
	bool exists = rc == 0;
	if (exists)
		leveldb_free(v);
	if (set && exists && (op->flags & ITAB_XATTR_CREATE))
		return -EEXIST;
	if (!exists && (!set || (op->flags & ITAB_XATTR_REPLACE)))
		return -ENODATA;
	if (set)
		leveldb_writebatch_put(tx->wb, (char *)k, kl, op->value ? op->value : "",
				       op->value_len);
	else
		leveldb_writebatch_delete(tx->wb, (char *)k, kl);
	in->a.ctime_ns = op->now_ns;
	txn_dirty(tx, in);
	tx->res->ino = in->a.ino;
	return 0;
}

/* WRITE: commit extents (sorted, distinct indexes; zero hash = hole) if
 * the ITAB_F_IF_SIZE condition holds, grow the size to at least op->size, set mtime (op's if ITAB_SET_MTIME, else
 * now) and ctime (now, unless ctime is later already). Extents are
 * clipped to the new size. */
static int op_write(struct txn *tx)
{
	static const uint8_t zero[ITAB_HASH_LEN];
	const struct itab_op *op = tx->op;
	struct inode *in;
	uint64_t bs = tx->t->block_size;
	int rc = txn_get(tx, op->ino, &in);
	if (rc)
		return rc;
	if (is_type(in->a.mode, S_IFDIR))
		return -EISDIR;
	if (!is_type(in->a.mode, S_IFREG))
		return -EINVAL;
	if (op->size > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (op->flags & ~ITAB_F_IF_SIZE)
		return -EINVAL;
	/* An append lost a race (another append or a truncate came first):
	 * the proposer places its bytes again at the new end. */
	if ((op->flags & ITAB_F_IF_SIZE) && in->a.size != op->rdev)
		return -EAGAIN;
	uint64_t size = op->size > in->a.size ? op->size : in->a.size;
	for (size_t i = 0; i < op->n_extents; i++) {
		const struct itab_extent *e = &op->extents[i];
		if (i && e->index <= op->extents[i - 1].index)
			return -EINVAL;
		if (e->index > (uint64_t)INT64_MAX / bs)
			return -EFBIG;
		if (memcmp(e->hash, zero, ITAB_HASH_LEN) == 0)
			continue;
		if (e->len == 0 || e->len > bs || e->index * bs >= size)
			return -EINVAL;
	}
	for (size_t i = 0; i < op->n_extents; i++) {
		const struct itab_extent *e = &op->extents[i];
		uint8_t k[KEY_MAX], v[ITAB_HASH_LEN + 4];
		size_t kl = key_ino_u64(k, 'E', in->a.ino, e->index);
		char *old;
		size_t ol;
		rc = db_get(tx->t, NULL, k, kl, &old, &ol);
		if (rc && rc != -ENOENT)
			return txn_chk(tx, rc);
		if (rc == 0) {
			if (ol == ITAB_HASH_LEN + 4) {
				uint64_t u = units(be_get32((uint8_t *)old + ITAB_HASH_LEN));
				in->a.blocks -= u < in->a.blocks ? u : in->a.blocks;
				rc = txn_ref_add(tx, (uint8_t *)old, -1);
			}
			leveldb_free(old);
			if (rc)
				return rc;
		}
		bool hole = memcmp(e->hash, zero, ITAB_HASH_LEN) == 0;
		if (hole) {
			leveldb_writebatch_delete(tx->wb, (char *)k, kl);
			continue;
		}
		uint64_t room = size - e->index * bs;
		uint32_t len = room < e->len ? (uint32_t)room : e->len;
		memcpy(v, e->hash, ITAB_HASH_LEN);
		be_put32(v + ITAB_HASH_LEN, len);
		leveldb_writebatch_put(tx->wb, (char *)k, kl, (char *)v, sizeof(v));
		in->a.blocks += units(len);
		if ((rc = txn_ref_add(tx, e->hash, 1)))
			return rc;
	}
	in->a.size = size;
	in->a.mtime_ns = (op->valid & ITAB_SET_MTIME) ? op->mtime_ns : op->now_ns;
	/* now is when the bytes were written, which may be before a change
	 * applied meanwhile (a chmod): ctime never goes back. */
	if (op->now_ns > in->a.ctime_ns)
		in->a.ctime_ns = op->now_ns;
	txn_dirty(tx, in);
	tx->res->ino = in->a.ino;
	return 0;
}

/* RELEASE_ORPHAN: free an inode whose nlink is 0 (-EBUSY if it has links
 * or some node holds it open). */
static int op_release(struct txn *tx)
{
	struct inode *in;
	int rc = txn_get(tx, tx->op->ino, &in);
	if (rc)
		return rc;
	if (in->a.nlink != 0)
		return -EBUSY;
	if ((rc = locks_held_open(tx, in->a.ino)) != 0)
		return rc < 0 ? rc : -EBUSY;
	return txn_kill_inode(tx, in);
}

/* Dispatch one decoded op. */
static int run_op(struct txn *tx)
{
	switch (tx->op->code) {
	case ITAB_OP_NOOP:
		return 0;
	case ITAB_OP_CREATE:
	case ITAB_OP_MKDIR:
	case ITAB_OP_SYMLINK:
		return op_create(tx);
	case ITAB_OP_LINK:
		return op_link(tx);
	case ITAB_OP_UNLINK:
	case ITAB_OP_RMDIR:
		return op_remove(tx);
	case ITAB_OP_RENAME:
		return op_rename(tx);
	case ITAB_OP_SETATTR:
		return op_setattr(tx);
	case ITAB_OP_SETXATTR:
	case ITAB_OP_REMOVEXATTR:
		return op_xattr(tx);
	case ITAB_OP_WRITE:
		return op_write(tx);
	case ITAB_OP_RELEASE_ORPHAN:
		return op_release(tx);
	case ITAB_OP_SETLK:
		return locks_op_setlk(tx);
	case ITAB_OP_LOCK_RENEW:
		return locks_op_renew(tx);
	case ITAB_OP_RELEASE_NODE:
		return locks_op_release_node(tx);
	case ITAB_OP_OPEN:
		return locks_op_open(tx);
	case ITAB_OP_CLOSE:
		return locks_op_close(tx);
	case ITAB_OP_REPAIR:
		return repair_op(tx);
	default:
		return -EINVAL;
	}
}

/* Order reference changes by hash. */
static int refd_cmp(const void *a, const void *b)
{
	return memcmp(((const struct refd *)a)->h, ((const struct refd *)b)->h, ITAB_HASH_LEN);
}

/* Remember a freed hash for the caller. */
static int freed_push(struct itab *t, const uint8_t *h)
{
	if (t->n_freed == t->cap_freed) {
		size_t cap = t->cap_freed ? 2 * t->cap_freed : 16;
		void *n = realloc(t->freed, cap * ITAB_HASH_LEN);
		if (!n)
			return -ENOMEM;
		t->freed = n, t->cap_freed = cap;
	}
	memcpy(t->freed[t->n_freed++], h, ITAB_HASH_LEN);
	return 0;
}

/* Write the summed reference changes; counts reaching 0 delete the 'B' key
 * and list the hash in t->freed. */
static int flush_refs(struct txn *tx)
{
	struct itab *t = tx->t;
	if (tx->nrd > 1)
		qsort(tx->rd, tx->nrd, sizeof(*tx->rd), refd_cmp);
	for (size_t i = 0; i < tx->nrd;) {
		int64_t d = 0;
		size_t j = i;
		for (; j < tx->nrd && memcmp(tx->rd[j].h, tx->rd[i].h, ITAB_HASH_LEN) == 0; j++)
			d += tx->rd[j].d;
		if (d != 0) {
			uint8_t k[1 + ITAB_HASH_LEN], v[8];
			char *old;
			size_t ol;
			uint64_t cnt = 0;
			k[0] = 'B';
			memcpy(k + 1, tx->rd[i].h, ITAB_HASH_LEN);
			int rc = db_get(t, NULL, k, sizeof(k), &old, &ol);
			if (rc && rc != -ENOENT)
				return rc;
			if (rc == 0) {
				cnt = ol == 8 ? be_get64((uint8_t *)old) : 0;
				leveldb_free(old);
			}
			int64_t n = (int64_t)cnt + d;
			if (n <= 0) { /* < 0 would be a refcount bug; clamp */
				leveldb_writebatch_delete(tx->wb, (char *)k, sizeof(k));
				if (cnt > 0) {
					tx->ctr.blocks--;
					if ((rc = freed_push(t, tx->rd[i].h)))
						return rc;
				}
			} else {
				be_put64(v, (uint64_t)n);
				leveldb_writebatch_put(tx->wb, (char *)k, sizeof(k), (char *)v, 8);
				if (cnt == 0)
					tx->ctr.blocks++;
			}
		}
		i = j;
	}
	return 0;
}

/* Forget the op's effects (validation failed late): keep only meta. */
static void txn_reset(struct txn *tx)
{
	struct itab_result *res = tx->res;
	leveldb_writebatch_clear(tx->wb);
	tx->n = 0;
	tx->nrd = 0;
	tx->ctr = tx->t->ctr;
	tx->t->n_freed = 0;
	tx->soft_err = 0;
	tx->nrec_loaded = false;
	res->ino = res->victim = res->orphaned = 0;
}

/* Insert (seq, r) into a copy of origin o's dedupe memory and add the
 * batch writes. Past ITAB_DEDUPE_KEEP results the lowest seq is evicted and
 * the low-water mark raised above it. */
static void dedupe_record(struct txn *tx, struct dedupe_origin *o, uint64_t seq,
			  const struct saved_result *r)
{
	uint8_t k[KEY_MAX], v[RESULT_ENC_LEN];
	uint64_t lw = o->low_water;
	size_t pos = o->n;
	while (pos > 0 && o->slot[pos - 1].seq > seq)
		pos--;
	if (o->n == ITAB_DEDUPE_KEEP && pos == 0) {
		lw = seq + 1; /* older than all kept results: evicted at once */
	} else {
		if (o->n == ITAB_DEDUPE_KEEP) {
			uint64_t ev = o->slot[0].seq;
			leveldb_writebatch_delete(tx->wb, (char *)k,
						  key_meta_u64_u64(k, 'd', o->origin, ev));
			memmove(&o->slot[0], &o->slot[1], (o->n - 1) * sizeof(o->slot[0]));
			o->n--, pos--;
			lw = ev + 1;
		}
		memmove(&o->slot[pos + 1], &o->slot[pos], (o->n - pos) * sizeof(o->slot[0]));
		o->slot[pos].seq = seq;
		o->slot[pos].r = *r;
		o->n++;
		result_encode(r, v);
		leveldb_writebatch_put(tx->wb, (char *)k, key_meta_u64_u64(k, 'd', o->origin, seq),
				       (char *)v, RESULT_ENC_LEN);
	}
	if (lw > o->low_water) {
		o->low_water = lw;
		be_put64(v, lw);
		leveldb_writebatch_put(tx->wb, (char *)k, key_meta_u64(k, 'w', o->origin),
				       (char *)v, 8);
	}
}

/* Apply one committed entry; see itab.h for the contract. */
int itab_apply(struct itab *t, uint64_t log_index, const void *entry, size_t len,
	       struct itab_result *res)
{
	memset(res, 0, sizeof(*res));
	t->n_freed = 0;
	if (log_index <= t->ctr.applied) {
		res->skipped = true;
		return 0;
	}
	struct itab_op op;
	struct txn tx = {.t = t, .wb = t->wb, .op = &op, .index = log_index, .res = res,
			 .ctr = t->ctr};
	leveldb_writebatch_clear(t->wb);
	int rc = itab_op_decode(entry, len, &op);
	if (rc == -ENOMEM)
		return -EIO;
	struct dedupe_origin *o = NULL, oc;
	bool dup = false;
	if (rc) {
		res->err = -EINVAL; /* malformed: a no-op that still advances the index */
	} else if (op.origin != 0 && (o = itab_dd_find(t, op.origin, false)) != NULL) {
		for (size_t i = 0; i < o->n; i++) {
			if (o->slot[i].seq == op.seq) {
				dup = true;
				res->err = o->slot[i].r.err;
				res->ino = o->slot[i].r.ino;
				res->attr = o->slot[i].r.attr;
			}
		}
		if (!dup && op.seq < o->low_water) {
			dup = true; /* applied long ago, result forgotten */
			res->err = -ESTALE;
		}
		res->duplicate = dup;
	}
	if (rc == 0 && !dup) {
		int err = run_op(&tx);
		if (tx.io) {
			rc = -EIO;
			goto out;
		}
		if (err) {
			txn_reset(&tx);
			res->err = err;
		} else if (tx.soft_err) {
			res->err = tx.soft_err; /* refused, but what it did stays */
		}
		if ((rc = flush_refs(&tx)) != 0) {
			rc = -EIO;
			goto out;
		}
		for (int i = 0; i < tx.n; i++) {
			uint8_t k[KEY_MAX], v[INODE_ENC_LEN];
			struct inode *in = &tx.slot[i].in;
			size_t kl = key_ino(k, 'I', in->a.ino);
			if (tx.slot[i].dead) {
				leveldb_writebatch_delete(t->wb, (char *)k, kl);
			} else if (tx.slot[i].dirty) {
				inode_encode(in, v);
				leveldb_writebatch_put(t->wb, (char *)k, kl, (char *)v,
						       INODE_ENC_LEN);
			}
			if (in->a.ino == res->ino)
				res->attr = tx.slot[i].dead ? (struct itab_attr){0} : in->a;
		}
		if (op.origin != 0) {
			struct dedupe_origin *cur = itab_dd_find(t, op.origin, false);
			if (cur)
				oc = *cur;
			else
				memset(&oc, 0, sizeof(oc)), oc.origin = op.origin;
			struct saved_result sr = {.err = res->err, .ino = res->ino,
						  .attr = res->attr};
			dedupe_record(&tx, &oc, op.seq, &sr);
			o = &oc;
		}
	}
	uint8_t k[KEY_MAX], c[32];
	tx.ctr.applied = log_index;
	counters_encode(&tx.ctr, c);
	leveldb_writebatch_put(t->wb, (char *)k, key_meta(k, 'S'), (char *)c, 32);

	char *err = NULL;
	pthread_rwlock_wrlock(&t->lock);
	leveldb_write(t->db, t->wopts, t->wb, &err);
	if (err) {
		/* a full disk is worth telling apart (the fix differs) */
		rc = strstr(err, "No space left") ? -ENOSPC : -EIO;
		leveldb_free(err);
	} else {
		t->ctr = tx.ctr;
		rc = 0;
	}
	pthread_rwlock_unlock(&t->lock);
	if (rc == 0 && o == &oc) {
		struct dedupe_origin *dst = itab_dd_find(t, op.origin, true);
		if (dst)
			*dst = oc;
		else
			rc = -EIO; /* memory now disagrees with the DB */
	}
out:
	leveldb_writebatch_clear(t->wb);
	free(tx.rd);
	itab_op_release(&op);
	res->freed = (const uint8_t(*)[ITAB_HASH_LEN])t->freed;
	res->n_freed = t->n_freed;
	if (rc)
		t->n_freed = 0, res->n_freed = 0;
	return rc;
}
