/*
 * sfs.c — FUSE low-level handlers: namespace, attributes, xattrs, statfs,
 * the per-inode counts, and the generic completion that replies to the
 * kernel when a proposal has been applied on this node.
 *
 * Pattern of a mutating handler: validate what is cheap to validate
 * (name length, flags), build a struct itab_op stamped with the caller's
 * uid/gid/umask and the current time, fsm_propose_async() it with a
 * struct sfs_call naming the kind of reply, and return. call_done() runs
 * on the replicator thread when the op has been applied here and answers
 * the kernel with res->err or the new entry/attributes.
 */
#include "fs/mono.h"
#include "fs/sfs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "transport/log.h"

/* ---- per-inode counts ---------------------------------------------------- */

static size_t bucket(uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 52) % SFS_BUCKETS;
}

uint32_t sfs_ref(struct sfs *fs, uint64_t ino, int64_t dl, int32_t dopen)
{
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount **pp = &fs->tab[bucket(ino)], *c;
	while ((c = *pp) && c->ino != ino)
		pp = &c->next;
	if (!c) {
		if (dl <= 0 && dopen <= 0) {
			pthread_mutex_unlock(&fs->mu);
			return 0;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			pthread_mutex_unlock(&fs->mu);
			return 0;
		}
		c->ino = ino;
		*pp = c;
	}
	if (dl < 0 && (uint64_t)-dl > c->nlookup)
		c->nlookup = 0;
	else
		c->nlookup += (uint64_t)dl;
	if (dopen < 0 && (uint32_t)-dopen > c->nopen)
		c->nopen = 0;
	else
		c->nopen += (uint32_t)dopen;
	uint32_t nopen = c->nopen;
	if (!c->nlookup && !c->nopen && !c->rec_held && !c->rec_inflight) {
		*pp = c->next;
		free(c);
	}
	pthread_mutex_unlock(&fs->mu);
	return nopen;
}

/* ino's counts (mu held); created when add. NULL if absent or no memory. */
struct sfs_icount *sfs_icount(struct sfs *fs, uint64_t ino, bool add)
{
	struct sfs_icount **pp = &fs->tab[bucket(ino)], *c;
	while ((c = *pp) && c->ino != ino)
		pp = &c->next;
	if (!c && add && (c = calloc(1, sizeof(*c)))) {
		c->ino = ino;
		*pp = c;
	}
	return c;
}

/* Free ino's counts if nothing is left in them (mu held). */
void sfs_icount_trim(struct sfs *fs, uint64_t ino)
{
	struct sfs_icount **pp = &fs->tab[bucket(ino)], *c;
	while ((c = *pp) && c->ino != ino)
		pp = &c->next;
	if (c && !c->nlookup && !c->nopen && !c->rec_held && !c->rec_inflight) {
		*pp = c->next;
		free(c);
	}
}

uint32_t sfs_nopen(struct sfs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = fs->tab[bucket(ino)];
	while (c && c->ino != ino)
		c = c->next;
	uint32_t n = c ? c->nopen : 0;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

/* ---- helpers ------------------------------------------------------------------ */

static struct sfs *get_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void sfs_attr_to_stat(struct sfs *fs, const struct itab_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	int64_t mtime = a->mtime_ns, ctime = a->ctime_ns;
	if (S_ISREG(a->mode) && fs->data) {
		uint64_t dirty = data_dirty_size(fs->data, a->ino);
		if (dirty > a->size)
			st->st_size = (off_t)dirty;
		/* Unflushed writes count as made (their WRITE will carry
		 * that time): a stat between write(2) and close(2) sees the
		 * new mtime and ctime, as on a local filesystem. */
		int64_t w = dirty ? data_dirty_mtime(fs->data, a->ino) : 0;
		if (w > mtime)
			mtime = w;
		if (w > ctime)
			ctime = w;
	}
	st->st_blksize = itab_block_size(fs->itab);
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_atim.tv_sec = a->atime_ns / 1000000000;
	st->st_atim.tv_nsec = a->atime_ns % 1000000000;
	st->st_mtim.tv_sec = mtime / 1000000000;
	st->st_mtim.tv_nsec = mtime % 1000000000;
	st->st_ctim.tv_sec = ctime / 1000000000;
	st->st_ctim.tv_nsec = ctime % 1000000000;
}

void sfs_fill_entry(struct sfs *fs, const struct itab_attr *a,
		    struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = a->generation;
	sfs_attr_to_stat(fs, a, &e->attr);
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
}

void sfs_stamp(fuse_req_t req, struct itab_op *op)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	op->uid = ctx->uid;
	op->gid = ctx->gid;
	op->umask = ctx->umask;
	op->now_ns = fsm_now_ns();
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* True when this node knows a leader to ask for a ReadIndex: a leader id,
 * and this node not campaigning (a candidate or pre-candidate has lost
 * its leader: with check-quorum a cut-off leader steps down and a cut-off
 * follower starts campaigning within an election timeout). */
static bool leader_known(void *ctx, struct repl *r)
{
	struct repl_status st;
	repl_status(r, &st);
	return st.raft.leader != 0 && st.raft.role != RAFT_CANDIDATE &&
	       st.raft.role != RAFT_PRE_CANDIDATE;
}

/* Barriers were working and no leader is known: an election may be under
 * way (start, leader change), so give one a chance for up to
 * SFS_LEADER_WAIT_MS before concluding that this node is cut off. 0 once a
 * leader is known, else -EHOSTUNREACH. */
static int wait_leader(struct sfs *fs)
{
	int64_t until = mono_ns() + SFS_LEADER_WAIT_MS * 1000000ll;
	for (;;) {
		struct repl *r = fsm_repl(fs->fsm);
		if (!r)
			return -ENOTCONN;
		if (leader_known(fs, r))
			return 0;
		if (mono_ns() >= until)
			return -EHOSTUNREACH;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
		nanosleep(&ts, NULL);
	}
}

int sfs_read_barrier(struct sfs *fs)
{
	int rc;
	if (mono_ns() < atomic_load(&fs->barrier_down_until))
		rc = -ETIMEDOUT;
	else if (!atomic_load(&fs->barrier_failing) &&
		 (rc = wait_leader(fs)) != 0)
		; /* no leader appeared: cut off (or no quorum yet) */
	else
		rc = fsm_read_barrier(fs->fsm, SFS_BARRIER_MS, leader_known, fs);
	if (rc == -ETIMEDOUT || rc == -EIO) {
		/* A leader is known but did not answer: do not make every
		 * open wait for it again for a while. (No leader known fails
		 * at once anyway.) */
		int64_t now = mono_ns();
		if (now >= atomic_load(&fs->barrier_down_until))
			atomic_store(&fs->barrier_down_until,
				     now + SFS_BARRIER_SKIP_MS * 1000000ll);
	}
	if (rc && !atomic_exchange(&fs->barrier_failing, true))
		LOG(WARN, "read barrier unavailable (%s): serving opens and "
			  "lookups from this node's state, which may miss "
			  "changes made elsewhere, until the cluster answers",
		    rc == -EHOSTUNREACH ? "no leader known" : strerror(-rc));
	else if (!rc && atomic_exchange(&fs->barrier_failing, false))
		LOG(WARN, "read barrier works again: opens and lookups see "
			  "every committed change");
	return rc;
}

/* -ENAMETOOLONG before anything is proposed (the kernel allows 1024). */
static int check_name(const char *name)
{
	return strlen(name) > ITAB_NAME_MAX ? -ENAMETOOLONG : 0;
}

bool sfs_in_group(fuse_req_t req, uint32_t gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	if (ctx->gid == gid)
		return true;
	gid_t groups[64];
	int n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

int sfs_check_access(fuse_req_t req, const struct itab_attr *a, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	mask &= R_OK | W_OK | X_OK;
	if (ctx->uid == 0) {
		if ((mask & X_OK) && !S_ISDIR(a->mode) && !(a->mode & 0111))
			return -EACCES;
		return 0;
	}
	unsigned bits;
	if (ctx->uid == a->uid) {
		bits = (a->mode >> 6) & 7;
	} else {
		bits = sfs_in_group(req, a->gid) ? (a->mode >> 3) & 7 : a->mode & 7;
	}
	/* R_OK=4, W_OK=2, X_OK=1 match the rwx bit order. */
	return ((unsigned)mask & ~bits) ? -EACCES : 0;
}

struct sfs_fh *sfs_fh_new(uint64_t ino)
{
	struct sfs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh)
		return NULL;
	fh->ino = ino;
	pthread_mutex_init(&fh->mu, NULL);
	return fh;
}

void sfs_fh_free(struct sfs_fh *fh)
{
	if (!fh)
		return;
	pthread_mutex_destroy(&fh->mu);
	free(fh);
}

struct data_file *sfs_fh_data(struct sfs *fs, struct sfs_fh *fh)
{
	pthread_mutex_lock(&fh->mu);
	if (!fh->df && fs->data)
		fh->df = data_file_open(fs->data, fh->ino);
	struct data_file *df = fh->df;
	pthread_mutex_unlock(&fh->mu);
	return df;
}

/* ---- proposals and their replies ---------------------------------------------------- */

enum call_kind {
	CALL_ERR,          /* fuse_reply_err */
	CALL_ENTRY,        /* fuse_reply_entry with the new inode */
	CALL_ATTR,         /* fuse_reply_attr */
	CALL_CREATE,       /* fuse_reply_create, or open the existing file */
	CALL_CREATE_OPEN,  /* create fell back to an existing file: its OPEN */
	CALL_CREATE_TRUNC, /* create fell back to an existing file + O_TRUNC */
};

struct sfs_call {
	struct sfs *fs;
	fuse_req_t req;
	enum call_kind kind;
	struct sfs_fh *fh;       /* CREATE: the handle to hand out */
	struct fuse_file_info fi;/* CREATE: copy of the request's */
	uint64_t parent;         /* CREATE: for the open-existing fallback */
	uint64_t seq;            /* CREATE: open sequence of its record */
	uint64_t ino;            /* CREATE_OPEN/TRUNC: the existing file */
	bool held;               /* CREATE_OPEN/TRUNC: its handle is counted */
	char name[ITAB_NAME_MAX + 1];
};

/* A new call; counted until call_free() so sfs_drain() can wait. */
static struct sfs_call *call_new(struct sfs *fs, fuse_req_t req,
				 enum call_kind kind)
{
	struct sfs_call *c = calloc(1, sizeof(*c));
	if (c) {
		c->fs = fs;
		c->req = req;
		c->kind = kind;
		pthread_mutex_lock(&fs->calls_mu);
		fs->calls++;
		pthread_mutex_unlock(&fs->calls_mu);
	}
	return c;
}

/* Free c (and a handle it still owns, and the count of an existing
 * file's handle it did not hand out); the last one wakes sfs_drain(). */
static void call_free(struct sfs_call *c)
{
	struct sfs *fs = c->fs;
	if (c->held)
		sfs_open_unhold(fs, c->ino);
	sfs_fh_free(c->fh);
	free(c);
	pthread_mutex_lock(&fs->calls_mu);
	if (--fs->calls == 0)
		pthread_cond_broadcast(&fs->calls_cv);
	pthread_mutex_unlock(&fs->calls_mu);
}

int sfs_drain(struct sfs *fs, uint32_t timeout_ms)
{
	struct timespec dl = mono_deadline(timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&fs->calls_mu);
	while (fs->calls > 0 && rc == 0)
		if (pthread_cond_timedwait(&fs->calls_cv, &fs->calls_mu, &dl) ==
		    ETIMEDOUT)
			rc = -ETIMEDOUT;
	if (fs->calls == 0)
		rc = 0;
	pthread_mutex_unlock(&fs->calls_mu);
	return rc;
}

static void call_done(void *ctx, const struct fsm_result *res);

/* Propose op; the reply goes out from call_done (c is consumed). */
static void propose(struct sfs_call *c, const struct itab_op *op)
{
	int rc = fsm_propose_async(c->fs->fsm, op, call_done, c);
	if (rc) {
		fuse_reply_err(c->req, rc == -ENOTCONN ? EIO : -rc);
		call_free(c);
	}
}

/* Propose op with a new call of the given kind (reply ENOMEM if none). */
static void propose_kind(struct sfs *fs, fuse_req_t req, enum call_kind kind,
			 const struct itab_op *op)
{
	struct sfs_call *c = call_new(fs, req, kind);
	if (!c) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	propose(c, op);
}

void sfs_propose_err(struct sfs *fs, fuse_req_t req, const struct itab_op *op)
{
	propose_kind(fs, req, CALL_ERR, op);
}

static void reply_entry(struct sfs *fs, fuse_req_t req, const struct itab_attr *a)
{
	struct fuse_entry_param e;
	sfs_fill_entry(fs, a, &e);
	sfs_ref(fs, a->ino, 1, 0);
	if (fuse_reply_entry(req, &e) != 0)
		sfs_ref(fs, a->ino, -1, 0); /* the kernel gave up the request */
}

/* Hand out the create handle for inode a. A new file's record came with
 * its CREATE (one handle counted here); an existing one's is held. */
static void finish_create(struct sfs_call *c, const struct itab_attr *a)
{
	struct sfs *fs = c->fs;
	struct fuse_entry_param e;
	sfs_fill_entry(fs, a, &e);
	c->fh->ino = a->ino;
	c->fi.fh = (uint64_t)(uintptr_t)c->fh;
	c->fi.keep_cache = 0;
	c->fi.direct_io = (c->fi.flags & O_APPEND) != 0; /* see sfs_append.c */
	if (!c->held)
		sfs_open_created(fs, a->ino, c->seq);
	c->held = false;
	sfs_ref(fs, a->ino, 1, 0);
	if (fuse_reply_create(c->req, &e, &c->fi) != 0) {
		sfs_ref(fs, a->ino, -1, 0);
		sfs_fh_free(c->fh);
		sfs_open_unhold(fs, a->ino);
	}
	c->fh = NULL;
}

/* The existing file is held open: truncate it if asked, then hand out
 * the handle. Returns true when c was handed on to another proposal. */
static bool create_opened(struct sfs_call *c, const struct itab_attr *a)
{
	if ((c->fi.flags & O_TRUNC) && S_ISREG(a->mode)) {
		/* Also when empty: O_TRUNC sets mtime and ctime. */
		struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = a->ino,
				     .valid = ITAB_SET_SIZE, .size = 0};
		sfs_stamp(c->req, &op);
		sfs_perm_truncate(c->req, a, &op);
		c->kind = CALL_CREATE_TRUNC;
		propose(c, &op);
		return true;
	}
	finish_create(c, a);
	return false;
}

/* create() found the name taken (another node won a race the kernel's
 * negative dentry did not see) without O_EXCL: open the existing file as
 * open(2) would, with its open record (proposed unless held already; an
 * OPEN another open of it has in flight may still be applied first, and
 * the completions, in apply order, keep the latest). Runs on the
 * replicator thread; returns true when c was handed on to another
 * proposal. */
static bool create_existing(struct sfs_call *c)
{
	struct sfs *fs = c->fs;
	uint64_t ino;
	struct itab_attr a;
	int rc = itab_lookup(fs->itab, c->parent, c->name, strlen(c->name), &ino, &a);
	if (rc == 0 && S_ISDIR(a.mode))
		rc = -EISDIR;
	int acc = c->fi.flags & O_ACCMODE;
	int mask = (acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK) |
		   (c->fi.flags & O_TRUNC ? W_OK : 0);
	if (rc == 0)
		rc = sfs_check_access(c->req, &a, mask);
	if (rc) {
		fuse_reply_err(c->req, -rc);
		return false;
	}
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *ic = sfs_icount(fs, ino, true);
	bool held = ic && ic->rec_held;
	if (ic) {
		ic->nopen++;
		if (!held) {
			ic->rec_inflight++;
			c->seq = ++fs->open_seq;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	if (!ic) {
		fuse_reply_err(c->req, ENOMEM);
		return false;
	}
	c->ino = ino;
	c->held = true;
	if (held)
		return create_opened(c, &a);
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	struct itab_op op = {.code = ITAB_OP_OPEN, .ino = ino, .now_ns = fsm_now_ns()};
	sfs_open_payload(fs, &op, c->seq, pl);
	c->kind = CALL_CREATE_OPEN;
	propose(c, &op);
	return true;
}

/* Completion of every frontend proposal (replicator thread). */
static void call_done(void *ctx, const struct fsm_result *res)
{
	struct sfs_call *c = ctx;
	struct sfs *fs = c->fs;
	switch (c->kind) {
	case CALL_ERR:
		fuse_reply_err(c->req, -res->err);
		break;
	case CALL_ENTRY:
		if (res->err)
			fuse_reply_err(c->req, -res->err);
		else
			reply_entry(fs, c->req, &res->attr);
		break;
	case CALL_ATTR:
		if (res->err) {
			fuse_reply_err(c->req, -res->err);
		} else {
			struct stat st;
			sfs_attr_to_stat(fs, &res->attr, &st);
			fuse_reply_attr(c->req, &st, fs->timeout);
		}
		break;
	case CALL_CREATE:
		if (res->err == -EEXIST && !(c->fi.flags & O_EXCL)) {
			if (create_existing(c))
				return; /* c lives on in the next proposal */
			break;
		}
		if (res->err)
			fuse_reply_err(c->req, -res->err);
		else
			finish_create(c, &res->attr);
		break;
	case CALL_CREATE_OPEN: {
		sfs_open_applied(fs, c->ino, c->seq, res->err);
		struct itab_attr a;
		int rc = res->err ? res->err : itab_getattr(fs->itab, c->ino, &a);
		if (rc == 0 && create_opened(c, &a))
			return;
		if (rc)
			fuse_reply_err(c->req, -rc);
		break;
	}
	case CALL_CREATE_TRUNC:
		if (res->err)
			fuse_reply_err(c->req, -res->err);
		else
			finish_create(c, &res->attr);
		break;
	}
	call_free(c);
}

/* ---- lookup and counts --------------------------------------------------------------- */

static void sfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *fs = get_fs(req);
	uint64_t ino;
	struct itab_attr a;
	int rc = itab_lookup(fs->itab, parent, name, strlen(name), &ino, &a);
	/* Not here (yet)? A name another node created before our caller
	 * started must be found (close-to-open starts with the path walk):
	 * catch up with the leader's commit index, then look again. */
	if (rc == -ENOENT && sfs_read_barrier(fs) == 0)
		rc = itab_lookup(fs->itab, parent, name, strlen(name), &ino, &a);
	if (rc == -ENOENT) {
		/* A negative entry the kernel must not keep (timeout 0):
		 * a cached miss would answer the next lookup without the
		 * barrier above, so a name another node created after this
		 * miss, and before the caller's next open started, would
		 * not be found until this node applied the create and its
		 * invalidation ran (close-to-open for new names). */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = 0;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(fs, req, &a);
}

static void sfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	sfs_ref(get_fs(req), ino, -(int64_t)nlookup, 0);
	fuse_reply_none(req);
}

static void sfs_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *forgets)
{
	struct sfs *fs = get_fs(req);
	for (size_t i = 0; i < count; i++)
		sfs_ref(fs, forgets[i].ino, -(int64_t)forgets[i].nlookup, 0);
	fuse_reply_none(req);
}

/* ---- attributes ------------------------------------------------------------------------- */

static void sfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct itab_attr a;
	int rc = itab_getattr(fs->itab, ino, &a);
	if (rc == -ENOENT)
		rc = -ESTALE; /* inode gone: ESTALE, see sfs_internal.h */
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct stat st;
	sfs_attr_to_stat(fs, &a, &st);
	fuse_reply_attr(req, &st, fs->timeout);
}

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void sfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	struct itab_op op = {.code = ITAB_OP_SETATTR, .ino = ino};
	sfs_stamp(req, &op);
	if (to_set & FUSE_SET_ATTR_MODE) {
		op.valid |= ITAB_SET_MODE;
		op.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		op.valid |= ITAB_SET_UID;
		op.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		op.valid |= ITAB_SET_GID;
		op.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (attr->st_size < 0) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		/* Buffered bytes of this inode must land before the cut. */
		int rc = fs->data ? data_flush_ino(fs->data, ino) : 0;
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
		op.valid |= ITAB_SET_SIZE;
		op.size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME) {
		op.valid |= ITAB_SET_ATIME;
		op.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? op.now_ns
								 : ts_ns(&attr->st_atim);
	}
	if (to_set & FUSE_SET_ATTR_MTIME) {
		op.valid |= ITAB_SET_MTIME;
		op.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? op.now_ns
								 : ts_ns(&attr->st_mtim);
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		op.valid |= ITAB_SET_CTIME;
		op.ctime_ns = ts_ns(&attr->st_ctim);
	}
	struct itab_attr cur;
	if ((op.valid & ITAB_SET_SIZE) && itab_getattr(fs->itab, ino, &cur) == 0)
		sfs_perm_truncate(req, &cur, &op);
	/* Times set while writes are buffered: the data goes first, or its
	 * WRITE (stamped with the time of the write) would undo them. */
	if ((op.valid & (ITAB_SET_ATIME | ITAB_SET_MTIME)) && fs->data) {
		int rc = data_flush_ino(fs->data, ino);
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	/* Nothing but a ctime (chown(f, -1, -1): the kernel sends no
	 * FATTR_CTIME without a writeback cache): op.valid 0 sets ctime to
	 * now, as Linux does. */
	propose_kind(fs, req, CALL_ATTR, &op);
}

static void sfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct sfs *fs = get_fs(req);
	char buf[ITAB_SYMLINK_MAX + 1];
	long n = itab_readlink(fs->itab, ino, buf, ITAB_SYMLINK_MAX);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	if (n > ITAB_SYMLINK_MAX)
		n = ITAB_SYMLINK_MAX;
	buf[n] = 0;
	fuse_reply_readlink(req, buf);
}

/* ---- namespace ------------------------------------------------------------------------------ */

static void sfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	int rc = check_name(name);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_CREATE, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .mode = mode, .rdev = rdev};
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ENTRY, &op);
}

static void sfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	int rc = check_name(name);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_MKDIR, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .mode = S_IFDIR | (mode & 07777)};
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ENTRY, &op);
}

static void sfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			const char *name)
{
	int rc = check_name(name);
	if (rc == 0 && strlen(link) > ITAB_SYMLINK_MAX)
		rc = -ENAMETOOLONG;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_SYMLINK, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .target = link, .target_len = strlen(link)};
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ENTRY, &op);
}

static void sfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	int rc = check_name(newname);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_LINK, .ino = ino, .parent = newparent,
			     .name = newname, .name_len = strlen(newname)};
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ENTRY, &op);
}

/* UNLINK and RENAME free a victim that reaches nlink 0 unless some node
 * holds it open (the table's open records decide: ITAB_F_FREE_NOW). A
 * victim of a rename that is open here gets its buffered data committed
 * first (flush). */
static uint32_t free_flag(struct sfs *fs, uint64_t parent, const char *name,
			  bool flush)
{
	uint64_t ino;
	struct itab_attr a;
	if (flush && fs->data &&
	    itab_lookup(fs->itab, parent, name, strlen(name), &ino, &a) == 0 &&
	    !S_ISDIR(a.mode) && sfs_nopen(fs, ino))
		data_flush_ino(fs->data, ino);
	return ITAB_F_FREE_NOW;
}

static void sfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sfs *fs = get_fs(req);
	int rc = check_name(name);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_UNLINK, .parent = parent,
			     .name = name, .name_len = strlen(name)};
	op.flags = free_flag(fs, parent, name, false);
	sfs_stamp(req, &op);
	propose_kind(fs, req, CALL_ERR, &op);
}

static void sfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int rc = check_name(name);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_RMDIR, .parent = parent,
			     .name = name, .name_len = strlen(name)};
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ERR, &op);
}

static void sfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct sfs *fs = get_fs(req);
	int rc = check_name(name);
	if (rc == 0)
		rc = check_name(newname);
	if (rc == 0 && (flags & ~(unsigned)(ITAB_RENAME_NOREPLACE | ITAB_RENAME_EXCHANGE)))
		rc = -EINVAL;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_RENAME, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .newparent = newparent, .newname = newname,
			     .newname_len = strlen(newname), .flags = flags};
	/* The inode the kernel means by the source is the one its lookup on
	 * this node found: what the name holds here now. Gone here already
	 * (a removal applied, its invalidation not yet run): the kernel's
	 * dentry is stale, ESTALE makes it look again. Otherwise the apply
	 * checks the name still holds that inode (see op_rename). */
	uint64_t src_ino = 0;
	if (itab_lookup(fs->itab, parent, name, strlen(name), &src_ino, NULL) != 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	op.ino = src_ino;
	if (!(flags & ITAB_RENAME_EXCHANGE))
		op.flags |= free_flag(fs, newparent, newname, true);
	sfs_stamp(req, &op);
	propose_kind(fs, req, CALL_ERR, &op);
}

static void sfs_create_op(fuse_req_t req, fuse_ino_t parent, const char *name,
		   mode_t mode, struct fuse_file_info *fi)
{
	struct sfs *fs = get_fs(req);
	int rc = check_name(name);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct sfs_call *c = call_new(fs, req, CALL_CREATE);
	if (c)
		c->fh = sfs_fh_new(0);
	if (!c || !c->fh) {
		if (c)
			call_free(c);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	c->fi = *fi;
	c->parent = parent;
	c->seq = sfs_open_seq(fs);
	memcpy(c->name, name, strlen(name) + 1);
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	struct itab_op op = {.code = ITAB_OP_CREATE, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .mode = (mode & S_IFMT) ? mode : (S_IFREG | mode),
			     .flags = ITAB_F_OPEN};
	sfs_open_payload(fs, &op, c->seq, pl);
	sfs_stamp(req, &op);
	propose(c, &op);
}

/* ---- permissions, xattrs, statfs ------------------------------------------------------------ */

static void sfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct sfs *fs = get_fs(req);
	struct itab_attr a;
	int rc = itab_getattr(fs->itab, ino, &a);
	if (rc == 0 && mask != F_OK)
		rc = sfs_check_access(req, &a, mask);
	fuse_reply_err(req, -rc);
}

static void sfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	struct sfs *fs = get_fs(req);
	struct itab_op op = {.code = ITAB_OP_SETXATTR, .ino = ino,
			     .xname = name, .xname_len = strlen(name),
			     .value = value, .value_len = size,
			     .flags = (uint32_t)flags &
				      (ITAB_XATTR_CREATE | ITAB_XATTR_REPLACE)};
	/* POSIX ACLs (when the kernel enforces them) but no other system.*
	 * attributes: say so, so tools like cp -a carry on without them. */
	int acl = sfs_acl_name(name);
	if ((acl && !atomic_load(&fs->acl_kernel)) || (!acl && strncmp(name, "system.", 7) == 0)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (acl == 1 && sfs_acl_kills_sgid(fs, req, ino))
		op.flags |= ITAB_F_KILL_SGID;
	if (op.xname_len == 0 || op.xname_len > ITAB_XATTR_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > ITAB_XATTR_SIZE_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	sfs_stamp(req, &op);
	propose_kind(fs, req, CALL_ERR, &op);
}

/* getxattr/listxattr: n is what the table gave for a buffer of `size`
 * bytes (size 0: only the length is asked for). */
static void reply_xattr(fuse_req_t req, long n, size_t size, const char *buf)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void sfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size)
{
	struct sfs *fs = get_fs(req);
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req,
		    itab_getxattr(fs->itab, ino, name, strlen(name), buf, size),
		    size, buf);
	free(buf);
}

static void sfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sfs *fs = get_fs(req);
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, itab_listxattr(fs->itab, ino, buf, size), size, buf);
	free(buf);
}

static void sfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (sfs_acl_name(name) && !atomic_load(&get_fs(req)->acl_kernel)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	struct itab_op op = {.code = ITAB_OP_REMOVEXATTR, .ino = ino,
			     .xname = name, .xname_len = strlen(name)};
	if (op.xname_len == 0 || op.xname_len > ITAB_XATTR_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	sfs_stamp(req, &op);
	propose_kind(get_fs(req), req, CALL_ERR, &op);
}

static void sfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct sfs *fs = get_fs(req);
	struct itab_statfs its;
	uint64_t total = 0, avail = 0;
	int rc = itab_statfs(fs->itab, &its);
	if (rc == 0 && fs->data)
		rc = data_statfs(fs->data, &total, &avail);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct statvfs st;
	memset(&st, 0, sizeof(st));
	st.f_bsize = its.block_size;
	st.f_frsize = 4096;
	st.f_blocks = total / 4096;
	st.f_bfree = st.f_bavail = avail / 4096;
	/* No inode limit: report one free inode per free 4 KiB. */
	st.f_ffree = st.f_favail = avail / 4096;
	st.f_files = its.inodes + st.f_ffree;
	st.f_namemax = ITAB_NAME_MAX;
	fuse_reply_statfs(req, &st);
}

/* ---- the table ------------------------------------------------------------------------------------ */

static void sfs_init(void *userdata, struct fuse_conn_info *conn)
{
	/* No writeback cache: every write reaches data.c, which owns the
	 * dirty buffers, and the kernel's page cache is dropped at open. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	/* Reads of up to 1 MiB: the kernel keeps the smaller of this and the
	 * device's read-ahead, which the mount raises (mount.c). Parallel
	 * read-ahead requests (data.c serves a clean handle without its
	 * lock and loads each block once). */
	if (conn->max_readahead < (1u << 20))
		conn->max_readahead = 1u << 20;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	sfs_acl_init(userdata, conn);
}

static const struct fuse_lowlevel_ops ops = {
	.init = sfs_init,
	.lookup = sfs_lookup,
	.forget = sfs_forget,
	.forget_multi = sfs_forget_multi,
	.getattr = sfs_getattr,
	.setattr = sfs_setattr,
	.readlink = sfs_readlink,
	.mknod = sfs_mknod,
	.mkdir = sfs_mkdir,
	.unlink = sfs_unlink,
	.rmdir = sfs_rmdir,
	.symlink = sfs_symlink,
	.rename = sfs_rename,
	.link = sfs_link,
	.open = sfs_open,
	.read = sfs_read,
	.write = sfs_write,
	.flush = sfs_flush,
	.release = sfs_release,
	.fsync = sfs_fsync,
	.opendir = sfs_opendir,
	.readdir = sfs_readdir,
	.releasedir = sfs_releasedir,
	.fsyncdir = sfs_fsyncdir,
	.statfs = sfs_statfs,
	.setxattr = sfs_setxattr,
	.getxattr = sfs_getxattr,
	.listxattr = sfs_listxattr,
	.removexattr = sfs_removexattr,
	.access = sfs_access,
	.create = sfs_create_op,
	.fallocate = sfs_fallocate,
	.readdirplus = sfs_readdirplus,
	.lseek = sfs_lseek,
	.getlk = sfs_getlk,
	.setlk = sfs_setlk,
	.flock = sfs_flock,
};

const struct fuse_lowlevel_ops *sfs_ops_untimed(void)
{
	return &ops;
}

int sfs_new(const struct sfs_cfg *cfg, struct sfs **out)
{
	struct sfs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->itab = cfg->itab;
	fs->fsm = cfg->fsm;
	fs->data = cfg->data;
	fs->self_id = cfg->self_id;
	fs->timeout = cfg->timeout_s > 0 ? cfg->timeout_s : 1.0;
	fs->acl = !cfg->no_acl;
	fs->incarnation = cfg->incarnation ? cfg->incarnation : (uint64_t)fsm_now_ns();
	fs->propose_timeout_ms = cfg->propose_timeout_ms ? cfg->propose_timeout_ms : 10000;
	pthread_mutex_init(&fs->mu, NULL);
	pthread_cond_init(&fs->open_cv, NULL);
	pthread_mutex_init(&fs->calls_mu, NULL);
	for (int i = 0; i < SFS_APPEND_STRIPES; i++)
		pthread_mutex_init(&fs->append_mu[i], NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->calls_cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = sfs_locks_new(fs, cfg->lock_lease_ms);
	if (rc == 0 && !(fs->mx = sfs_mx_new()))
		rc = -ENOMEM;
	if (rc) {
		sfs_free(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

void sfs_free(struct sfs *fs)
{
	if (!fs)
		return;
	for (size_t i = 0; i < SFS_BUCKETS; i++) {
		while (fs->tab[i]) {
			struct sfs_icount *c = fs->tab[i];
			fs->tab[i] = c->next;
			free(c);
		}
	}
	sfs_close_retries_free(fs);
	sfs_locks_free(fs->lk);
	sfs_mx_free(fs->mx);
	pthread_mutex_destroy(&fs->mu);
	pthread_cond_destroy(&fs->open_cv);
	pthread_mutex_destroy(&fs->calls_mu);
	for (int i = 0; i < SFS_APPEND_STRIPES; i++)
		pthread_mutex_destroy(&fs->append_mu[i]);
	pthread_cond_destroy(&fs->calls_cv);
	free(fs);
}
