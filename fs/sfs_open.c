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

static void close_done(void *ctx, const struct fsm_result *res)
{
	/* -ESTALE: the next OPEN got in first; -ENOENT: released already. */
	if (res->err && res->err != -ESTALE && res->err != -ENOENT)
		LOG(WARN, "dropping the open record of inode %llu: %s (kept "
			  "until this node restarts)",
		    (unsigned long long)(uintptr_t)ctx, strerror(-res->err));
}

/* Propose the CLOSE of ino's record seq (fire and forget; any thread). */
static void propose_close(struct sfs *fs, uint64_t ino, uint64_t seq)
{
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	struct itab_op op = {.code = ITAB_OP_CLOSE, .ino = ino,
			     .now_ns = fsm_now_ns()};
	sfs_open_payload(fs, &op, seq, pl);
	int rc = fsm_propose_async(fs->fsm, &op, close_done, (void *)(uintptr_t)ino);
	if (rc)
		LOG(WARN, "cannot propose dropping the open record of inode "
			  "%llu: %s", (unsigned long long)ino, strerror(-rc));
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
void sfs_open_applied(struct sfs *fs, uint64_t ino, uint64_t seq, int err)
{
	uint64_t cseq = 0;
	bool close = false;
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
