/*
 * sfs_open.c — open records: the table notes which nodes hold an inode
 * open (ITAB_OP_OPEN at the first handle here, or a CREATE with
 * ITAB_F_OPEN; ITAB_OP_CLOSE once unused), so that a file unlinked on
 * any node stays as an orphan while a node still has it open.
 */
#include "fs/sfs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transport/log.h"

/* ---- open records ------------------------------------------------------ */

uint64_t sfs_open_seq(struct sfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	uint64_t seq = ++fs->open_seq;
	pthread_mutex_unlock(&fs->mu);
	return seq;
}

void sfs_open_payload(struct sfs *fs, struct itab_op *op, uint64_t seq,
		      uint8_t buf[ITAB_LOCK_ENC_LEN])
{
	struct itab_lock lk = {.incarnation = fs->incarnation, .seq = seq};
	itab_lock_encode(&lk, buf);
	op->value = buf;
	op->value_len = ITAB_LOCK_ENC_LEN;
}

struct open_wait {
	struct sfs *fs;
	uint64_t ino, seq;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

/* A CLOSE on its way, or waiting in fs->close_retry to be proposed
 * again. */
struct sfs_close_retry {
	struct sfs *fs;
	uint64_t ino, seq;
	int64_t due;                  /* mono ns: propose again from then on */
	struct sfs_close_retry *next; /* in fs->close_retry */
};

#define SFS_CLOSE_RETRY_MS 1000

static int64_t mono_ns(void);
static void propose_close_rec(struct sfs_close_retry *cr);

/* A CLOSE that did not commit (timeout, cut off, leader change) is
 * proposed again later: the record otherwise stays, and a file unlinked
 * meanwhile stays an orphan (its blocks referenced) until this node's
 * next start. A retry of a CLOSE that did commit after all is harmless:
 * -ENOENT (released already) or -ESTALE (a newer OPEN replaced it). */
static void close_done(void *ctx, const struct fsm_result *res)
{
	struct sfs_close_retry *cr = ctx;
	if (res->err == 0 || res->err == -ESTALE || res->err == -ENOENT) {
		free(cr);
		return;
	}
	LOG(INFO, "dropping the open record of inode %llu did not commit "
		  "(%s); trying again", (unsigned long long)cr->ino,
	    strerror(-res->err));
	struct sfs *fs = cr->fs;
	cr->due = mono_ns() + SFS_CLOSE_RETRY_MS * 1000000ll;
	pthread_mutex_lock(&fs->mu);
	cr->next = fs->close_retry;
	fs->close_retry = cr;
	pthread_mutex_unlock(&fs->mu);
}

static void propose_close_rec(struct sfs_close_retry *cr)
{
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	struct itab_op op = {.code = ITAB_OP_CLOSE, .ino = cr->ino,
			     .now_ns = fsm_now_ns()};
	sfs_open_payload(cr->fs, &op, cr->seq, pl);
	int rc = fsm_propose_async(cr->fs->fsm, &op, close_done, cr);
	if (rc) {
		struct fsm_result r = {.err = rc};
		close_done(cr, &r); /* queued for a retry */
	}
}

/* Propose the CLOSE of ino's record seq (fire and forget; any thread). */
static void propose_close(struct sfs *fs, uint64_t ino, uint64_t seq)
{
	struct sfs_close_retry *cr = calloc(1, sizeof(*cr));
	if (!cr) {
		LOG(WARN, "cannot propose dropping the open record of inode "
			  "%llu: out of memory (kept until this node restarts)",
		    (unsigned long long)ino);
		return;
	}
	cr->fs = fs, cr->ino = ino, cr->seq = seq;
	propose_close_rec(cr);
}

void sfs_close_retries(struct sfs *fs)
{
	int64_t now = mono_ns();
	struct sfs_close_retry *due = NULL, **pp;
	pthread_mutex_lock(&fs->mu);
	for (pp = &fs->close_retry; *pp;) {
		struct sfs_close_retry *cr = *pp;
		if (cr->due <= now) {
			*pp = cr->next;
			cr->next = due;
			due = cr;
		} else {
			pp = &cr->next;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	while (due) {
		struct sfs_close_retry *cr = due;
		due = cr->next;
		cr->next = NULL;
		propose_close_rec(cr);
	}
}

void sfs_close_retries_free(struct sfs *fs)
{
	while (fs->close_retry) { /* the node restarts with them released */
		struct sfs_close_retry *cr = fs->close_retry;
		fs->close_retry = cr->next;
		free(cr);
	}
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The record is no longer needed when no handle is left and no OPEN is
 * in flight (mu held). With a close delay it is queued for the closer and
 * stays held meanwhile (false); without one, for an orphan, or when the
 * queue is full or the closer stopped, returns true and its seq: close it
 * now. */
static bool record_unused(struct sfs *fs, struct sfs_icount *c, uint64_t *seq)
{
	if (c->nopen || !c->rec_held || c->rec_inflight)
		return false;
	/* An orphan (unlinked while open) is freed by the CLOSE: at once. */
	struct itab_attr a;
	bool orphan = itab_getattr(fs->itab, c->ino, &a) != 0 || a.nlink == 0;
	if (!orphan && fs->close_delay_ms && fs->closer_started &&
	    !fs->idle_stop && fs->idle_n < SFS_IDLE_MAX) {
		struct sfs_idle *e =
			&fs->idle[(fs->idle_head + fs->idle_n++) % SFS_IDLE_MAX];
		*e = (struct sfs_idle){c->ino, c->rec_seq, ++c->idle_gen,
				       mono_ns() + (int64_t)fs->close_delay_ms *
							   1000000};
		if (fs->idle_n == 1)
			pthread_cond_signal(&fs->idle_cv);
		return false;
	}
	c->rec_held = false;
	*seq = c->rec_seq;
	return true;
}

/* The closer: drops each queued record close_delay_ms after it became
 * unused, unless it was used since (a handle is open, an OPEN is in
 * flight, or it became unused again later: a newer queue entry). At stop
 * it drops every queued record at once (before the replicator goes). */
static void *closer_main(void *arg)
{
	struct sfs *fs = arg;
	pthread_setname_np(pthread_self(), "sfs-closer");
	pthread_mutex_lock(&fs->mu);
	for (;;) {
		if (!fs->idle_n) {
			if (fs->idle_stop)
				break;
			pthread_cond_wait(&fs->idle_cv, &fs->mu);
			continue;
		}
		struct sfs_idle e = fs->idle[fs->idle_head];
		if (!fs->idle_stop && mono_ns() < e.due) {
			struct timespec ts = {.tv_sec = e.due / 1000000000,
					      .tv_nsec = e.due % 1000000000};
			pthread_cond_timedwait(&fs->idle_cv, &fs->mu, &ts);
			continue;
		}
		fs->idle_head = (fs->idle_head + 1) % SFS_IDLE_MAX;
		fs->idle_n--;
		struct sfs_icount *c = sfs_icount(fs, e.ino, false);
		if (!c || c->nopen || !c->rec_held || c->rec_inflight ||
		    c->rec_seq != e.seq || c->idle_gen != e.gen)
			continue;
		c->rec_held = false;
		sfs_icount_trim(fs, e.ino);
		pthread_mutex_unlock(&fs->mu);
		propose_close(fs, e.ino, e.seq);
		pthread_mutex_lock(&fs->mu);
	}
	pthread_mutex_unlock(&fs->mu);
	return NULL;
}

void sfs_open_orphaned(struct sfs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = sfs_icount(fs, ino, false);
	if (c && !c->nopen && c->rec_held && !c->rec_inflight &&
	    fs->closer_started && !fs->idle_stop && fs->idle_n < SFS_IDLE_MAX) {
		/* Due now, queued first; the entry queued before is stale. */
		fs->idle_head = (fs->idle_head + SFS_IDLE_MAX - 1) % SFS_IDLE_MAX;
		fs->idle_n++;
		fs->idle[fs->idle_head] =
			(struct sfs_idle){ino, c->rec_seq, ++c->idle_gen, 0};
		pthread_cond_signal(&fs->idle_cv);
	}
	pthread_mutex_unlock(&fs->mu);
}

int sfs_open_start(struct sfs *fs, uint32_t close_delay_ms)
{
	if (!close_delay_ms)
		return 0;
	fs->idle = calloc(SFS_IDLE_MAX, sizeof(*fs->idle));
	if (!fs->idle)
		return -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->idle_cv, &ca);
	pthread_condattr_destroy(&ca);
	fs->close_delay_ms = close_delay_ms;
	if (pthread_create(&fs->closer, NULL, closer_main, fs) != 0) {
		pthread_cond_destroy(&fs->idle_cv);
		free(fs->idle);
		fs->idle = NULL;
		return -EAGAIN;
	}
	pthread_mutex_lock(&fs->mu);
	fs->closer_started = true;
	pthread_mutex_unlock(&fs->mu);
	return 0;
}

void sfs_open_stop(struct sfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	bool started = fs->closer_started;
	fs->idle_stop = true;
	pthread_cond_broadcast(&fs->idle_cv);
	pthread_mutex_unlock(&fs->mu);
	if (!started)
		return;
	pthread_join(fs->closer, NULL);
	pthread_mutex_lock(&fs->mu);
	fs->closer_started = false;
	pthread_mutex_unlock(&fs->mu);
	pthread_cond_destroy(&fs->idle_cv);
	free(fs->idle);
	fs->idle = NULL;
}

/* An OPEN applied here (or failed), in apply order: note its record. */
/* An OPEN that failed without an answer from the table (timeout, cut
 * off: it may still commit later, a copy being on its way to the leader)
 * is closed anyway (through the retries of close_done): a record this
 * node does not know of would keep an unlinked file alive until its next
 * start. The CLOSE finds no record (-ENOENT) when the OPEN never applied;
 * an OPEN arriving after the CLOSE committed is a stale duplicate the
 * table skips (its seq is below the low-water mark the CLOSE carried:
 * every older proposal of this node timed out before it, with the same
 * timeout). */
void sfs_open_applied(struct sfs *fs, uint64_t ino, uint64_t seq, int err)
{
	uint64_t cseq = 0;
	bool close = false;
	if (err && err != -ENOENT && err != -ESTALE)
		propose_close(fs, ino, seq);
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = sfs_icount(fs, ino, false);
	if (c) {
		if (c->rec_inflight)
			c->rec_inflight--;
		if (err == 0) {
			c->rec_held = true;
			c->rec_seq = seq;
		}
		close = record_unused(fs, c, &cseq);
		sfs_icount_trim(fs, ino);
	}
	pthread_cond_broadcast(&fs->open_cv);
	pthread_mutex_unlock(&fs->mu);
	if (close)
		propose_close(fs, ino, cseq);
}

static void open_done(void *ctx, const struct fsm_result *res)
{
	struct open_wait *w = ctx;
	sfs_open_applied(w->fs, w->ino, w->seq, res->err);
	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = res->err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void open_async_done(void *ctx, const struct fsm_result *res)
{
	struct open_wait *w = ctx;
	if (res->err)
		LOG(DEBUG, "recording inode %llu as open here: %s",
		    (unsigned long long)w->ino, strerror(-res->err));
	sfs_open_applied(w->fs, w->ino, w->seq, res->err);
	free(w);
}

int sfs_open_hold(struct sfs *fs, uint64_t ino, bool wait)
{
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = sfs_icount(fs, ino, true);
	if (!c) {
		pthread_mutex_unlock(&fs->mu);
		return -ENOMEM;
	}
	c->nopen++;
	while (wait && !c->rec_held && c->rec_inflight)
		pthread_cond_wait(&fs->open_cv, &fs->mu); /* c stays: nopen > 0 */
	if (c->rec_held || c->rec_inflight) { /* held, or on its way (!wait) */
		pthread_mutex_unlock(&fs->mu);
		return 0;
	}
	c->rec_inflight++;
	uint64_t seq = ++fs->open_seq;
	pthread_mutex_unlock(&fs->mu);

	uint8_t pl[ITAB_LOCK_ENC_LEN];
	struct itab_op op = {.code = ITAB_OP_OPEN, .ino = ino,
			     .now_ns = fsm_now_ns()};
	sfs_open_payload(fs, &op, seq, pl);
	if (!wait) {
		struct open_wait *w = calloc(1, sizeof(*w));
		int rc = w ? 0 : -ENOMEM;
		if (w) {
			w->fs = fs, w->ino = ino, w->seq = seq;
			rc = fsm_propose_async(fs->fsm, &op, open_async_done, w);
			if (rc)
				free(w);
		}
		if (rc)
			sfs_open_applied(fs, ino, seq, rc);
		return 0; /* the handle works without the record */
	}
	struct open_wait w = {.fs = fs, .ino = ino, .seq = seq};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	int rc = fsm_propose_async(fs->fsm, &op, open_done, &w);
	if (rc) {
		sfs_open_applied(fs, ino, w.seq, rc);
	} else {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.err;
	}
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	if (rc) {
		sfs_open_unhold(fs, ino);
		return rc == -ENOTCONN ? -EIO : rc;
	}
	return 0;
}

void sfs_open_unhold(struct sfs *fs, uint64_t ino)
{
	uint64_t seq = 0;
	bool close = false;
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = sfs_icount(fs, ino, false);
	if (c) {
		if (c->nopen)
			c->nopen--;
		close = record_unused(fs, c, &seq);
		sfs_icount_trim(fs, ino);
	}
	pthread_mutex_unlock(&fs->mu);
	if (close)
		propose_close(fs, ino, seq);
}

/* A CREATE with ITAB_F_OPEN (sequence seq) made ino and its record: one
 * handle. An OPEN proposed since by another open of the new file was
 * applied after the CREATE; its completion sets the record then. */
void sfs_open_created(struct sfs *fs, uint64_t ino, uint64_t seq)
{
	pthread_mutex_lock(&fs->mu);
	struct sfs_icount *c = sfs_icount(fs, ino, true);
	if (c) {
		c->nopen++;
		if (!c->rec_inflight && !c->rec_held) {
			c->rec_held = true;
			c->rec_seq = seq;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	if (!c) /* no memory: drop the record at once */
		propose_close(fs, ino, seq);
}
