/*
 * sfs_lock.c — flock(2), fcntl and OFD locks across nodes.
 *
 * Locks live in the replicated table (itab.h, "Locks"): a request is an
 * ITAB_OP_SETLK that apply grants or refuses (-EAGAIN) identically on
 * every node. F_GETLK is answered from this node's table after a read
 * barrier. An owner is (node, FUSE lock_owner); the kernel stops keeping
 * locks itself once these handlers exist.
 *
 * Waiting (F_SETLKW, flock without LOCK_NB). No thread waits: a refused
 * request is parked, and retried (a new SETLK) when something that may
 * have freed its range was applied here: an unlock, a downgrade, a
 * refused flock conversion or a RELEASE_NODE, from any node (the apply
 * hook counts these per inode bucket; a request remembers the count from
 * before it was proposed, so an unlock applied in between is never
 * missed). An interrupt (fuse_req_interrupt_func) answers a parked request
 * EINTR; one in flight is answered EINTR if it is refused. Replies come
 * from the replicator thread (refusals, unlocks) or from the lock thread
 * (grants: it first waits for the kernel invalidations queued so far, so
 * a process that got a lock reads what the previous holder wrote).
 * Before an unlock or a downgrade the inode's buffered data is committed.
 *
 * Lease (every node must use the same LEASE, -o lock_lease_ms). A node's
 * locks are only valid while it is known to be alive:
 *  - Holder side. Every granted SETLK and every LOCK_RENEW proves that the
 *    cluster heard from this node no earlier than when it was SENT (s).
 *    The node trusts its locks until s + 3/4 LEASE of the newest such op,
 *    and renews every LEASE/4 while it holds any. Past that it considers
 *    them LOST: lock requests fail with ENOLCK and it proposes a
 *    RELEASE_NODE of its own locks until one commits (the processes that
 *    believed they held locks are not told; as with NFS).
 *  - Leader side. The leader notes, on its own clock, when it applied the
 *    newest lease op of each node (a >= s), or when it became leader if
 *    later. A node whose lease index has not moved for a whole LEASE gets
 *    RELEASE_NODE(node, since = that index): apply refuses it if the node
 *    renewed meanwhile, and the release bumps the node's lease generation
 *    so that a renewal that was already on its way is refused (-ESTALE)
 *    and tells the node.
 *  So a release takes effect at >= a + LEASE >= s + LEASE on the leader's
 *  clock, while the holder stopped trusting the lock at s + 3/4 LEASE on
 *  its own: safe while the clocks' rates differ by less than 25% (and no
 *  thread stalls for LEASE/4 between reading the clock and acting). A
 *  node that is removed from the cluster cannot renew and loses its locks
 *  the same way; its open records are released by the leader at once.
 *
 * Start: until sfs_locks_recover() released what a previous life left
 * (and learnt the lease generation), lock requests wait (up to the
 * proposal timeout, then ENOLCK).
 */
#include "fs/mono.h"
#include "fs/sfs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "transport/log.h"

#define LK_BUCKETS 256
#define LK_TICK_MS 100          /* lock thread period */
#define LK_RETRY_MS 1000        /* between releases proposed for one node */
#define LK_SETTLE_MS 200        /* a grant waits at most this for invalidations */
#define LK_MAX_NODES (2 * RAFT_MAX_NODES)

enum lk_state {
	LK_STARTING, /* previous lives not released yet */
	LK_VALID,
	LK_LOST,     /* the lease ran out: locks may be gone */
};

/* One lock request (a SETLK waiting to be granted). */
struct lkw {
	struct lkw *next;
	struct lkw *onext, **oprev; /* in L->out while its proposal is out */
	struct sfs_locks *L;
	fuse_req_t req;
	uint64_t ino;
	struct itab_lock lk;
	bool sleep;       /* wait for a conflict to go (F_SETLKW, flock w/o NB) */
	bool intr_set;    /* fuse_req_interrupt_func registered */
	bool interrupted; /* guarded by L->mu */
	uint64_t ev0;     /* event count of its bucket before the proposal */
	int64_t sent_ns;  /* when the current proposal was made (mono) */
};

/* What the leader knows about one node's lease. */
struct lk_seen {
	uint64_t node;
	uint64_t idx;       /* lease index last seen */
	int64_t at;         /* mono ns it was applied here (or first seen) */
	int64_t released;   /* mono ns a release was last proposed */
};

struct sfs_locks {
	struct sfs *fs;
	int64_t lease_ns;
	pthread_mutex_t mu;        /* guards everything below */
	pthread_cond_t cv;         /* CLOCK_MONOTONIC: work for the thread, state */
	enum lk_state state;
	uint64_t gen;              /* lease generation this node holds */
	int64_t valid_until;       /* mono ns: locks trusted until then */
	int64_t next_recover;      /* mono ns */
	uint64_t ev[LK_BUCKETS];   /* lock releases applied, per inode bucket */
	uint64_t ev_all;           /* releases of everything (RELEASE_NODE, snapshot) */
	struct lkw *parked;        /* refused, waiting for an event */
	struct lkw *granted;       /* granted, answered by the thread */
	struct lkw *out;           /* requests whose proposal is out */
	bool renewing, recovering; /* a LOCK_RENEW / own RELEASE_NODE is out */
	int64_t renew_sent;        /* mono ns the LOCK_RENEW out was sent */
	struct recs {              /* lock thread only: its copy of the records */
		struct itab_node_rec r[LK_MAX_NODES];
		size_t n;
	} recs;
	struct lk_seen seen[LK_MAX_NODES];
	size_t n_seen;
	uint64_t lead_term;        /* term we lead in (0: not leader) */
	int64_t leader_since;      /* mono ns */
	pthread_t thread;
	bool started, stop;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t lk_bucket(uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 56) % LK_BUCKETS;
}

/* Events that may have freed a range of ino (mu held). */
static uint64_t events(struct sfs_locks *L, uint64_t ino)
{
	return L->ev[lk_bucket(ino)] + L->ev_all;
}

static struct sfs *get_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- replies ------------------------------------------------------------- */

/* Answer w's request with errno e and free w. After the interrupt
 * callback is unregistered (fuse_req_interrupt_func waits for a running
 * one), nothing else refers to w. */
static void finish(struct lkw *w, int e)
{
	if (w->intr_set)
		fuse_req_interrupt_func(w->req, NULL, NULL);
	fuse_reply_err(w->req, e);
	free(w);
}

/* The kernel interrupted a waiting request (libfuse's reader thread). */
static void on_interrupt(fuse_req_t req, void *data)
{
	struct lkw *w = data;
	struct sfs_locks *L = w->L;
	pthread_mutex_lock(&L->mu);
	w->interrupted = true;
	pthread_cond_broadcast(&L->cv);
	pthread_mutex_unlock(&L->mu);
}

/* ---- lease ------------------------------------------------------------------ */

/* A lease op proposed at sent committed: the cluster heard from us then. */
static void lease_ok(struct sfs_locks *L, int64_t sent)
{
	int64_t until = sent + L->lease_ns * 3 / 4;
	if (until > L->valid_until)
		L->valid_until = until;
}

/* Give up the locks (mu held): requests fail until the cluster released
 * them (the lock thread proposes that). */
static void lease_lost(struct sfs_locks *L, const char *why)
{
	if (L->state == LK_LOST)
		return;
	L->state = LK_LOST;
	L->next_recover = 0;
	LOG(WARN, "lock lease lost (%s): locks taken on this node may have been "
		  "released; lock requests fail with ENOLCK until the cluster "
		  "has released them", why);
	pthread_cond_broadcast(&L->cv);
}

/* ---- requests ------------------------------------------------------------------ */

static void setlk_done(void *ctx, const struct fsm_result *res);

/* Track w while its proposal is out (mu held). */
static void out_add(struct sfs_locks *L, struct lkw *w)
{
	w->onext = L->out;
	if (L->out)
		L->out->oprev = &w->onext;
	w->oprev = &L->out;
	L->out = w;
}

static void out_del(struct lkw *w)
{
	*w->oprev = w->onext;
	if (w->onext)
		w->onext->oprev = w->oprev;
	w->onext = NULL;
	w->oprev = NULL;
}

/* Propose w's SETLK (any thread but the replicator's, or from its
 * completion). On an immediate failure w is answered. */
static void submit(struct lkw *w)
{
	struct sfs_locks *L = w->L;
	pthread_mutex_lock(&L->mu);
	w->ev0 = events(L, w->ino);
	w->lk.gen = L->gen;
	w->sent_ns = now_ns();
	out_add(L, w);
	pthread_mutex_unlock(&L->mu);
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&w->lk, pl);
	struct itab_op op = {.code = ITAB_OP_SETLK, .ino = w->ino, .value = pl,
			     .value_len = sizeof(pl), .now_ns = fsm_now_ns()};
	int rc = fsm_propose_async(L->fs->fsm, &op, setlk_done, w);
	if (rc) {
		pthread_mutex_lock(&L->mu);
		out_del(w);
		pthread_cond_broadcast(&L->cv);
		pthread_mutex_unlock(&L->mu);
		finish(w, rc == -ENOTCONN ? EIO : -rc);
	}
}

/* Completion of a SETLK (replicator thread). */
static void setlk_done(void *ctx, const struct fsm_result *res)
{
	struct lkw *w = ctx;
	struct sfs_locks *L = w->L;
	int err = res->err;
	bool unlock = w->lk.type == ITAB_LK_UNLOCK;
	int reply = -1; /* answer now with this errno; -1: queued */
	pthread_mutex_lock(&L->mu);
	out_del(w);
	if (err == 0)
		lease_ok(L, w->sent_ns);
	if (err == 0 && !unlock && now_ns() >= w->sent_ns + L->lease_ns * 3 / 4) {
		/* Granted too late to be sure the lease still covers it. */
		lease_lost(L, "a lock was granted after its lease window");
		reply = ENOLCK;
	} else if (err == 0 && !unlock && !L->stop) {
		w->next = L->granted;
		L->granted = w;
	} else if (err == 0) {
		reply = 0;
	} else if (err == -EAGAIN && w->sleep && !w->interrupted && !L->stop) {
		w->next = L->parked; /* the thread retries it after an event */
		L->parked = w;
	} else if (err == -EAGAIN) {
		reply = w->sleep ? EINTR : EAGAIN;
	} else if (err == -ESTALE) {
		lease_lost(L, "the cluster released this node's locks");
		reply = unlock ? 0 : ENOLCK;
	} else {
		reply = err == -ENOTCONN ? EIO : -err;
	}
	pthread_cond_broadcast(&L->cv);
	pthread_mutex_unlock(&L->mu);
	if (reply >= 0)
		finish(w, reply);
}

/* Wait (FUSE worker) until this node may take locks: 0, or -ENOLCK when
 * its lease is lost or the start-up release did not come in time. */
static int ready(struct sfs_locks *L)
{
	struct timespec dl = mono_deadline(L->fs->propose_timeout_ms);
	pthread_mutex_lock(&L->mu);
	while (L->state == LK_STARTING && !L->stop)
		if (pthread_cond_timedwait(&L->cv, &L->mu, &dl) == ETIMEDOUT)
			break;
	int rc = L->state == LK_VALID ? 0 : -ENOLCK;
	pthread_mutex_unlock(&L->mu);
	return rc;
}

/* Start one request: flush before giving up a range, then propose. */
static void request(fuse_req_t req, uint64_t ino, const struct itab_lock *lk, bool sleep)
{
	struct sfs *fs = get_fs(req);
	struct sfs_locks *L = fs->lk;
	int rc = ready(L);
	if (rc) {
		/* Nothing held can be given back: an unlock succeeds. */
		fuse_reply_err(req, lk->type == ITAB_LK_UNLOCK ? 0 : -rc);
		return;
	}
	if (lk->type != ITAB_LK_WRITE && fs->data) {
		/* The next holder must see what was written under the lock. */
		int e = data_flush_ino(fs->data, ino);
		if (e)
			LOG(WARN, "inode %llu: committing data before an unlock: %s",
			    (unsigned long long)ino, strerror(-e));
	}
	struct lkw *w = calloc(1, sizeof(*w));
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->L = L;
	w->req = req;
	w->ino = ino;
	w->lk = *lk;
	w->lk.incarnation = fs->incarnation;
	w->sleep = sleep && lk->type != ITAB_LK_UNLOCK;
	if (w->sleep) {
		w->intr_set = true;
		fuse_req_interrupt_func(req, on_interrupt, w);
	}
	submit(w);
}

/* A struct flock range as [start, end] (end ITAB_LK_EOF for l_len 0). */
static int flock_range(const struct flock *fl, struct itab_lock *lk)
{
	if (fl->l_start < 0 || fl->l_len < 0)
		return -EINVAL;
	lk->start = (uint64_t)fl->l_start;
	if (fl->l_len == 0 || (uint64_t)fl->l_len - 1 >= (uint64_t)INT64_MAX - lk->start)
		lk->end = ITAB_LK_EOF;
	else
		lk->end = lk->start + (uint64_t)fl->l_len - 1;
	switch (fl->l_type) {
	case F_RDLCK: lk->type = ITAB_LK_READ; return 0;
	case F_WRLCK: lk->type = ITAB_LK_WRITE; return 0;
	case F_UNLCK: lk->type = ITAB_LK_UNLOCK; return 0;
	default: return -EINVAL;
	}
}

/* Remember that owner took POSIX locks through fh (for its release). */
static void fh_note_owner(struct sfs_fh *fh, uint64_t owner)
{
	pthread_mutex_lock(&fh->mu);
	bool known = false;
	for (uint8_t i = 0; i < fh->n_owners && !known; i++)
		known = fh->owners[i] == owner;
	if (!known && fh->n_owners < SFS_FH_OWNERS)
		fh->owners[fh->n_owners++] = owner; /* beyond: the last release */
	pthread_mutex_unlock(&fh->mu);
}

void sfs_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct flock *lock, int sleep)
{
	struct itab_lock lk = {.kind = ITAB_LK_POSIX, .owner = fi->lock_owner,
			       .pid = lock->l_pid > 0 ? (uint32_t)lock->l_pid : 0};
	if (flock_range(lock, &lk)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (lk.type != ITAB_LK_UNLOCK && fi->fh)
		fh_note_owner((struct sfs_fh *)(uintptr_t)fi->fh, fi->lock_owner);
	request(req, ino, &lk, sleep != 0);
}

void sfs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	struct itab_lock lk = {.kind = ITAB_LK_FLOCK, .owner = fi->lock_owner,
			       .start = 0, .end = ITAB_LK_EOF,
			       .pid = (uint32_t)fuse_req_ctx(req)->pid};
	switch (op & (LOCK_SH | LOCK_EX | LOCK_UN)) {
	case LOCK_SH: lk.type = ITAB_LK_READ; break;
	case LOCK_EX: lk.type = ITAB_LK_WRITE; break;
	case LOCK_UN: lk.type = ITAB_LK_UNLOCK; break;
	default:
		fuse_reply_err(req, EINVAL);
		return;
	}
	request(req, ino, &lk, !(op & LOCK_NB));
}

void sfs_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
	       struct flock *lock)
{
	struct sfs *fs = get_fs(req);
	struct itab_lock lk = {.kind = ITAB_LK_POSIX, .owner = fi->lock_owner}, c;
	int rc = flock_range(lock, &lk);
	if (rc == 0 && lk.type == ITAB_LK_UNLOCK)
		rc = -EINVAL;
	if (rc == 0)
		rc = ready(fs->lk);
	if (rc == 0) {
		/* Locks taken on other nodes before the call are applied here
		 * once the barrier passed (without a leader: what we have). */
		sfs_read_barrier(fs);
		rc = itab_getlk(fs->itab, ino, fs->self_id, &lk, &c);
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (rc == 0) {
		lock->l_type = F_UNLCK;
	} else {
		lock->l_type = c.type == ITAB_LK_WRITE ? F_WRLCK : F_RDLCK;
		lock->l_whence = SEEK_SET;
		lock->l_start = (off_t)c.start;
		lock->l_len = c.end == ITAB_LK_EOF || c.end >= (uint64_t)INT64_MAX
				      ? 0
				      : (off_t)(c.end - c.start + 1);
		lock->l_pid = (pid_t)c.pid;
	}
	fuse_reply_lock(req, lock);
}

/* ---- releases at close ----------------------------------------------------------- */

struct owner_list {
	uint8_t kind; /* 0: both */
	uint64_t owner;
	bool any_owner;
	struct { uint8_t kind; uint64_t owner; } o[16];
	size_t n;
	bool more;
};

/* itab_locks callback: collect distinct (kind, owner) pairs. */
static int owner_collect(void *ctx, const struct itab_lock *l)
{
	struct owner_list *ol = ctx;
	if (!ol->any_owner && l->owner != ol->owner)
		return 0;
	for (size_t i = 0; i < ol->n; i++)
		if (ol->o[i].kind == l->kind && ol->o[i].owner == l->owner)
			return 0;
	if (ol->n == sizeof(ol->o) / sizeof(ol->o[0])) {
		ol->more = true;
		return 1;
	}
	ol->o[ol->n].kind = l->kind;
	ol->o[ol->n++].owner = l->owner;
	return 0;
}

/* Unlock everything (kind, owner) holds on ino, waiting until applied.
 * FUSE worker only. */
static void drop(struct sfs *fs, uint64_t ino, uint8_t kind, uint64_t owner)
{
	struct sfs_locks *L = fs->lk;
	pthread_mutex_lock(&L->mu);
	bool valid = L->state == LK_VALID;
	struct itab_lock lk = {.kind = kind, .type = ITAB_LK_UNLOCK, .owner = owner,
			       .start = 0, .end = ITAB_LK_EOF, .gen = L->gen,
			       .incarnation = fs->incarnation};
	pthread_mutex_unlock(&L->mu);
	if (!valid)
		return; /* released with the rest once the cluster answers */
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&lk, pl);
	struct itab_op op = {.code = ITAB_OP_SETLK, .ino = ino, .value = pl,
			     .value_len = sizeof(pl), .now_ns = fsm_now_ns()};
	int64_t sent = now_ns();
	struct fsm_result r;
	int rc = fsm_propose_sync(fs->fsm, &op, &r);
	pthread_mutex_lock(&L->mu);
	if (rc == 0)
		lease_ok(L, sent);
	else if (rc == -ESTALE)
		lease_lost(L, "the cluster released this node's locks");
	pthread_mutex_unlock(&L->mu);
	if (rc && rc != -ESTALE && rc != -ENOENT)
		LOG(WARN, "inode %llu: releasing the locks of owner %llx: %s",
		    (unsigned long long)ino, (unsigned long long)owner, strerror(-rc));
}

/* Drop the locks matching ol on ino (collected from this node's table). */
static void drop_matching(struct sfs *fs, uint64_t ino, struct owner_list *ol)
{
	do {
		ol->n = 0;
		ol->more = false;
		if (itab_locks(fs->itab, ino, ol->kind, fs->self_id, owner_collect, ol))
			return;
		for (size_t i = 0; i < ol->n; i++)
			drop(fs, ino, ol->o[i].kind, ol->o[i].owner);
	} while (ol->more);
}

void sfs_locks_flush(struct sfs *fs, uint64_t ino, struct fuse_file_info *fi)
{
	struct owner_list ol = {.kind = ITAB_LK_POSIX, .owner = fi->lock_owner};
	drop_matching(fs, ino, &ol);
}

void sfs_locks_release(struct sfs *fs, uint64_t ino, struct fuse_file_info *fi,
		       struct sfs_fh *fh)
{
	if (fi->flock_release) {
		struct owner_list ol = {.kind = ITAB_LK_FLOCK, .owner = fi->lock_owner};
		drop_matching(fs, ino, &ol);
	}
	pthread_mutex_lock(&fh->mu);
	uint64_t owners[SFS_FH_OWNERS];
	uint8_t n = fh->n_owners;
	memcpy(owners, fh->owners, sizeof(owners));
	pthread_mutex_unlock(&fh->mu);
	for (uint8_t i = 0; i < n; i++) {
		struct owner_list ol = {.kind = ITAB_LK_POSIX, .owner = owners[i]};
		drop_matching(fs, ino, &ol);
	}
	if (sfs_nopen(fs, ino) <= 1) {
		/* The last handle here: no process on this node can hold a
		 * lock on the file any more. */
		struct owner_list ol = {.any_owner = true};
		drop_matching(fs, ino, &ol);
	}
}

/* ---- the apply hook ------------------------------------------------------------------ */

/* The leader's record of node (mu held); NULL if the table is full. */
static struct lk_seen *seen_get(struct sfs_locks *L, uint64_t node)
{
	for (size_t i = 0; i < L->n_seen; i++)
		if (L->seen[i].node == node)
			return &L->seen[i];
	if (L->n_seen == LK_MAX_NODES)
		return NULL;
	struct lk_seen *s = &L->seen[L->n_seen++];
	memset(s, 0, sizeof(*s));
	s->node = node;
	return s;
}

/* fsm_applied_fn: note lease ops (their apply time) and lock releases. */
static void applied(void *ctx, uint64_t index, const struct itab_op *op,
		    const struct itab_result *res)
{
	struct sfs_locks *L = ctx;
	if (res && res->orphaned)
		sfs_open_orphaned(L->fs, res->orphaned);
	pthread_mutex_lock(&L->mu);
	if (!op) { /* a snapshot replaced the table */
		L->ev_all++;
		pthread_cond_broadcast(&L->cv);
		pthread_mutex_unlock(&L->mu);
		return;
	}
	struct itab_lock lk;
	/* A SETLK refused with its changes kept (a flock conversion that
	 * dropped the old lock) names its inode; a plain refusal does not. */
	bool committed = res->err == 0 ||
			 (op->code == ITAB_OP_SETLK && res->err == -EAGAIN && res->ino);
	if (!committed || itab_lock_decode(op->value, op->value_len, &lk) != 0) {
		pthread_mutex_unlock(&L->mu);
		return;
	}
	switch (op->code) {
	case ITAB_OP_SETLK:
		if (res->err == 0) {
			struct lk_seen *s = seen_get(L, op->origin);
			if (s) {
				s->idx = index;
				s->at = now_ns();
			}
		}
		if (lk.type != ITAB_LK_WRITE || res->err == -EAGAIN) {
			L->ev[lk_bucket(op->ino)]++;
			pthread_cond_broadcast(&L->cv);
		}
		break;
	case ITAB_OP_LOCK_RENEW: {
		struct lk_seen *s = seen_get(L, op->origin);
		if (s) {
			s->idx = index;
			s->at = now_ns();
		}
		break;
	}
	case ITAB_OP_RELEASE_NODE:
		L->ev_all++;
		if (lk.node == L->fs->self_id && (lk.what & ITAB_REL_LOCKS) &&
		    op->origin != L->fs->self_id)
			lease_lost(L, "the leader released this node's locks");
		pthread_cond_broadcast(&L->cv);
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&L->mu);
}

/* ---- the lock thread ---------------------------------------------------------------- */

static void renew_done(void *ctx, const struct fsm_result *res)
{
	struct sfs_locks *L = ctx;
	pthread_mutex_lock(&L->mu);
	L->renewing = false;
	if (res->err == 0)
		lease_ok(L, L->renew_sent);
	else if (res->err == -ESTALE)
		lease_lost(L, "the cluster released this node's locks");
	pthread_mutex_unlock(&L->mu);
}

struct recover_call {
	struct sfs_locks *L;
	int64_t sent;
};

static void recover_done(void *ctx, const struct fsm_result *res)
{
	struct recover_call *rc = ctx;
	struct sfs_locks *L = rc->L;
	pthread_mutex_lock(&L->mu);
	L->recovering = false;
	if (res->err == 0) {
		L->gen = res->ino;
		L->state = LK_VALID;
		L->valid_until = rc->sent + L->lease_ns * 3 / 4;
		LOG(WARN, "this node's locks were released; lock requests work "
			  "again (lease generation %llu)", (unsigned long long)L->gen);
		pthread_cond_broadcast(&L->cv);
	} else {
		L->next_recover = now_ns() + (int64_t)LK_RETRY_MS * 1000000;
	}
	pthread_mutex_unlock(&L->mu);
	free(rc);
}

/* Propose RELEASE_NODE(node, since, what) async; done may be NULL. */
static int propose_release(struct sfs *fs, uint64_t node, uint64_t keep, uint64_t since,
			   uint32_t what, fsm_done_fn done, void *ctx)
{
	struct itab_lock lk = {.node = node, .incarnation = keep, .since = since,
			       .what = what};
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&lk, pl);
	struct itab_op op = {.code = ITAB_OP_RELEASE_NODE, .value = pl,
			     .value_len = sizeof(pl), .now_ns = fsm_now_ns()};
	return fsm_propose_async(fs->fsm, &op, done, ctx);
}

static void leader_release_done(void *ctx, const struct fsm_result *res)
{
	uint64_t node = (uint64_t)(uintptr_t)ctx;
	if (res->err == 0)
		LOG(WARN, "released what node %llu held (lease generation now %llu)",
		    (unsigned long long)node, (unsigned long long)res->ino);
	else if (res->err != -EAGAIN)
		LOG(DEBUG, "releasing what node %llu held: %s",
		    (unsigned long long)node, strerror(-res->err));
}

static int rec_collect(void *ctx, const struct itab_node_rec *rec)
{
	struct recs *rs = ctx;
	if (rs->n == LK_MAX_NODES)
		return 1;
	rs->r[rs->n++] = *rec;
	return 0;
}

/* Forget what the leader knew of nodes without a lease record (mu held). */
static void seen_gc(struct sfs_locks *L)
{
	for (size_t i = 0; i < L->n_seen;) {
		bool keep = false;
		for (size_t j = 0; j < L->recs.n && !keep; j++)
			keep = L->recs.r[j].node == L->seen[i].node;
		if (keep)
			i++;
		else
			L->seen[i] = L->seen[--L->n_seen];
	}
}

/* This node's own lease: renew while it holds locks, notice when it ran
 * out, and once lost propose the release of its locks. me: its record. */
static void own_lease(struct sfs_locks *L, const struct itab_node_rec *me, int64_t now)
{
	struct sfs *fs = L->fs;
	pthread_mutex_lock(&L->mu);
	bool renew = false, recover = false;
	uint64_t gen = L->gen;
	/* A grant may be applied (the record counts it) but not yet
	 * completed (valid_until not yet moved): a request still out that
	 * was sent at s would extend the lease to s + 3/4 LEASE. */
	int64_t until = L->valid_until;
	for (struct lkw *w = L->out; w; w = w->onext)
		if (w->sent_ns + L->lease_ns * 3 / 4 > until)
			until = w->sent_ns + L->lease_ns * 3 / 4;
	if (L->state == LK_VALID && me->nlocks > 0) {
		if (now >= until) {
			lease_lost(L, "no renewal reached the cluster in time");
		} else if (!L->renewing && L->valid_until - now <= L->lease_ns / 2) {
			renew = L->renewing = true;
			L->renew_sent = now;
		}
	}
	if (L->state == LK_LOST && !L->recovering && now >= L->next_recover)
		recover = L->recovering = true;
	pthread_mutex_unlock(&L->mu);
	if (renew) {
		struct itab_lock lk = {.gen = gen};
		uint8_t pl[ITAB_LOCK_ENC_LEN];
		itab_lock_encode(&lk, pl);
		struct itab_op op = {.code = ITAB_OP_LOCK_RENEW, .value = pl,
				     .value_len = sizeof(pl), .now_ns = fsm_now_ns()};
		if (fsm_propose_async(fs->fsm, &op, renew_done, L) != 0) {
			pthread_mutex_lock(&L->mu);
			L->renewing = false;
			pthread_mutex_unlock(&L->mu);
		}
	}
	if (recover) {
		struct recover_call *rc = malloc(sizeof(*rc));
		int e = rc ? 0 : -ENOMEM;
		if (rc) {
			rc->L = L;
			rc->sent = now;
			e = propose_release(fs, fs->self_id, 0, 0, ITAB_REL_LOCKS,
					    recover_done, rc);
			if (e)
				free(rc);
		}
		if (e) {
			pthread_mutex_lock(&L->mu);
			L->recovering = false;
			L->next_recover = now + (int64_t)LK_RETRY_MS * 1000000;
			pthread_mutex_unlock(&L->mu);
		}
	}
}

/* Leader duties: release the locks of nodes silent for a whole lease,
 * and the open records of nodes no longer in the configuration. */
static void leader_duties(struct sfs_locks *L, int64_t now)
{
	struct sfs *fs = L->fs;
	struct repl *r = fsm_repl(fs->fsm);
	if (!r)
		return;
	struct repl_status st;
	repl_status(r, &st);
	pthread_mutex_lock(&L->mu);
	if (st.raft.role != RAFT_LEADER) {
		L->lead_term = 0;
		pthread_mutex_unlock(&L->mu);
		return;
	}
	if (L->lead_term != st.raft.term) {
		/* Count from now: we may not have seen the others' latest
		 * renewals (a >= s holds for "now" too). */
		L->lead_term = st.raft.term;
		L->leader_since = now;
	}
	int64_t since_lead = L->leader_since;
	pthread_mutex_unlock(&L->mu);

	struct recs *rs = &L->recs; /* the lock thread's own */
	for (size_t i = 0; i < rs->n; i++) {
		const struct itab_node_rec *rec = &rs->r[i];
		if (rec->node == fs->self_id)
			continue;
		bool member = false;
		for (uint32_t j = 0; j < st.raft.conf.n; j++)
			member |= st.raft.conf.nodes[j].id == rec->node;
		uint64_t since = 0;
		uint32_t what = 0;
		int64_t idle = 0;
		pthread_mutex_lock(&L->mu);
		struct lk_seen *s = seen_get(L, rec->node);
		if (s && s->idx != rec->lease_idx) {
			s->idx = rec->lease_idx; /* not seen applied: count from now */
			s->at = now;
		}
		if (s && now - s->released >= (int64_t)LK_RETRY_MS * 1000000) {
			int64_t last = s->at > since_lead ? s->at : since_lead;
			idle = now - last;
			if (rec->nlocks > 0 && idle >= L->lease_ns) {
				what |= ITAB_REL_LOCKS;
				since = rec->lease_idx;
			}
			if (rec->nopen > 0 && !member)
				what |= ITAB_REL_OPENS;
			if (what)
				s->released = now;
		}
		pthread_mutex_unlock(&L->mu);
		if (!what)
			continue;
		if (what & ITAB_REL_LOCKS)
			LOG(WARN, "node %llu did not renew its lock lease for %lld ms "
				  "(lease index %llu): releasing its locks",
			    (unsigned long long)rec->node, (long long)(idle / 1000000),
			    (unsigned long long)since);
		if (what & ITAB_REL_OPENS)
			LOG(WARN, "node %llu is no longer a member: releasing its open "
				  "files", (unsigned long long)rec->node);
		if (what & ITAB_REL_LOCKS) /* opens of a removed node go on their own */
			propose_release(fs, rec->node, 0, since, ITAB_REL_LOCKS,
					leader_release_done, (void *)(uintptr_t)rec->node);
		if (what & ITAB_REL_OPENS)
			propose_release(fs, rec->node, 0, 0, ITAB_REL_OPENS,
					leader_release_done, (void *)(uintptr_t)rec->node);
	}
}

/* Every LK_TICK_MS: read the lease records, then this node's lease and
 * the leader's duties. */
static void tick(struct sfs_locks *L, int64_t now)
{
	struct sfs *fs = L->fs;
	L->recs.n = 0;
	if (itab_nodes(fs->itab, rec_collect, &L->recs) != 0)
		return;
	struct itab_node_rec me = {.node = fs->self_id};
	for (size_t i = 0; i < L->recs.n; i++)
		if (L->recs.r[i].node == fs->self_id)
			me = L->recs.r[i];
	pthread_mutex_lock(&L->mu);
	seen_gc(L);
	pthread_mutex_unlock(&L->mu);
	own_lease(L, &me, now);
	leader_duties(L, now);
}

/* Take the parked requests that may go again, the interrupted ones and
 * the grants (mu held). */
static void take_work(struct sfs_locks *L, struct lkw **retry, struct lkw **intr,
		      struct lkw **grants)
{
	for (struct lkw **pp = &L->parked; *pp;) {
		struct lkw *w = *pp;
		if (w->interrupted || L->stop) {
			*pp = w->next;
			w->next = *intr;
			*intr = w;
		} else if (events(L, w->ino) != w->ev0) {
			*pp = w->next;
			w->next = *retry;
			*retry = w;
		} else {
			pp = &w->next;
		}
	}
	*grants = L->granted;
	L->granted = NULL;
}

static void *lock_thread(void *arg)
{
	struct sfs_locks *L = arg;
	int64_t next_tick = 0;
	pthread_mutex_lock(&L->mu);
	for (;;) {
		struct lkw *retry = NULL, *intr = NULL, *grants = NULL;
		take_work(L, &retry, &intr, &grants);
		bool stop = L->stop;
		pthread_mutex_unlock(&L->mu);
		while (intr) {
			struct lkw *w = intr;
			intr = w->next;
			finish(w, EINTR);
		}
		while (retry) {
			struct lkw *w = retry;
			retry = w->next;
			submit(w);
		}
		if (grants)
			fsm_inval_settle(L->fs->fsm, LK_SETTLE_MS);
		while (grants) {
			struct lkw *w = grants;
			grants = w->next;
			finish(w, 0);
		}
		int64_t now = now_ns();
		if (!stop && now >= next_tick) {
			tick(L, now);
			sfs_close_retries(L->fs); /* not a lock matter: a timer */
			next_tick = now + (int64_t)LK_TICK_MS * 1000000;
		}
		pthread_mutex_lock(&L->mu);
		if (stop)
			break;
		if (!L->granted && !L->stop) {
			bool work = false;
			for (struct lkw *w = L->parked; w && !work; w = w->next)
				work = w->interrupted || events(L, w->ino) != w->ev0;
			if (!work) {
				struct timespec dl = mono_deadline(LK_TICK_MS);
				pthread_cond_timedwait(&L->cv, &L->mu, &dl);
			}
		}
	}
	pthread_mutex_unlock(&L->mu);
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int sfs_locks_new(struct sfs *fs, uint32_t lease_ms)
{
	struct sfs_locks *L = calloc(1, sizeof(*L));
	if (!L)
		return -ENOMEM;
	L->fs = fs;
	L->lease_ns = (int64_t)(lease_ms ? lease_ms : SFS_LOCK_LEASE_MS) * 1000000;
	L->state = LK_STARTING;
	pthread_mutex_init(&L->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&L->cv, &ca);
	pthread_condattr_destroy(&ca);
	fs->lk = L;
	return 0;
}

void sfs_locks_free(struct sfs_locks *L)
{
	if (!L)
		return;
	pthread_mutex_destroy(&L->mu);
	pthread_cond_destroy(&L->cv);
	free(L);
}

int sfs_locks_start(struct sfs *fs)
{
	struct sfs_locks *L = fs->lk;
	fsm_set_applied_hook(fs->fsm, applied, L);
	int rc = pthread_create(&L->thread, NULL, lock_thread, L);
	if (rc) {
		fsm_set_applied_hook(fs->fsm, NULL, NULL);
		return -rc;
	}
	L->started = true;
	return 0;
}

void sfs_locks_stop(struct sfs *fs)
{
	struct sfs_locks *L = fs->lk;
	if (!L)
		return;
	fsm_set_applied_hook(fs->fsm, NULL, NULL);
	pthread_mutex_lock(&L->mu);
	L->stop = true;
	pthread_cond_broadcast(&L->cv);
	pthread_mutex_unlock(&L->mu);
	if (L->started)
		pthread_join(L->thread, NULL);
	L->started = false;
	/* Whatever the thread did not get to. Requests in flight are
	 * answered by their completions (the replicator fails them when it
	 * stops); L lives until sfs_free(). */
	pthread_mutex_lock(&L->mu);
	struct lkw *rest = L->parked, *g = L->granted;
	L->parked = L->granted = NULL;
	pthread_mutex_unlock(&L->mu);
	while (rest) {
		struct lkw *w = rest;
		rest = w->next;
		finish(w, EINTR);
	}
	while (g) {
		struct lkw *w = g;
		g = w->next;
		finish(w, 0);
	}
}

int sfs_locks_recover(struct sfs *fs, bool (*stopping)(void *ctx), void *ctx)
{
	struct sfs_locks *L = fs->lk;
	struct itab_node_rec me;
	int rc = itab_node_get(fs->itab, fs->self_id, &me);
	if (rc)
		return rc;
	struct fsm_result r = {.ino = me.gen};
	if (me.nlocks || me.nopen) {
		/* Keep this life's open records (files opened since the mount). */
		struct itab_lock lk = {.node = fs->self_id, .incarnation = fs->incarnation,
				       .what = ITAB_REL_LOCKS | ITAB_REL_OPENS};
		uint8_t pl[ITAB_LOCK_ENC_LEN];
		itab_lock_encode(&lk, pl);
		struct itab_op op = {.code = ITAB_OP_RELEASE_NODE, .value = pl,
				     .value_len = sizeof(pl), .now_ns = fsm_now_ns()};
		rc = fsm_propose_stoppable(fs->fsm, &op, stopping, ctx, &r);
		if (rc)
			return rc;
		LOG(INFO, "released what a previous run of this node left in the "
			  "table (it counted %llu locks and %llu open files, those "
			  "opened since this mount kept)",
		    (unsigned long long)me.nlocks, (unsigned long long)me.nopen);
	}
	pthread_mutex_lock(&L->mu);
	L->gen = r.ino;
	if (L->state == LK_STARTING)
		L->state = LK_VALID;
	pthread_cond_broadcast(&L->cv);
	pthread_mutex_unlock(&L->mu);
	return 0;
}
