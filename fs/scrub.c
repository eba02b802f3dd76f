/*
 * scrub.c — the background block scrub (see scrub.h).
 *
 * One thread: it sleeps until the next pass is due (or scrub_now), lists
 * the store, then checks the blocks one by one with blk_check (the full
 * SHA-256 check, which quarantines a failing file). The rate limit is a
 * byte budget: after each block the thread sleeps until the bytes read
 * so far in the pass fit the rate. Sleeps wait on a condition variable,
 * so stopping never waits for more than one block check.
 */
#include "fs/scrub.h"

#include "transport/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct scrub {
	struct scrub_cfg cfg;
	char *state_path;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* wakes the thread: stop or now */
	bool stop;               /* guarded by mu */
	bool now;                /* guarded by mu */
	struct scrub_counters c; /* guarded by mu */
};

static int64_t wall_s(void)
{
	return (int64_t)time(NULL);
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait up to secs (mu held); true when stopping. Returns early on now. */
static bool nap(struct scrub *s, double secs)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	double t = (double)dl.tv_sec + (double)dl.tv_nsec / 1e9 + secs;
	dl.tv_sec = (time_t)t;
	dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
	while (!s->stop && !s->now)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT)
			break;
	return s->stop;
}

static int64_t state_load(const char *path)
{
	if (!path)
		return 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	long long v = 0;
	if (fscanf(f, "last_pass_end %lld", &v) != 1)
		v = 0;
	fclose(f);
	return v > 0 ? (int64_t)v : 0;
}

/* Replace the state file atomically (best effort: the schedule only). */
static void state_save(const char *path, int64_t end)
{
	if (!path)
		return;
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	int ok = fprintf(f, "last_pass_end %lld\n", (long long)end) > 0;
	ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) != 0)
		unlink(tmp);
}

struct listing {
	uint8_t (*h)[BLK_HASH_LEN];
	size_t n, cap;
};

static int list_one(void *ctx, const uint8_t hash[BLK_HASH_LEN], uint64_t size)
{
	struct listing *l = ctx;
	(void)size;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		void *n = realloc(l->h, cap * BLK_HASH_LEN);
		if (!n)
			return -ENOMEM;
		l->h = n;
		l->cap = cap;
	}
	memcpy(l->h[l->n++], hash, BLK_HASH_LEN);
	return 0;
}

/* A block failed its check (and is in quarantine now): fetch it again if
 * the table still references it. Called without mu. */
static void corrupt_block(struct scrub *s, const uint8_t *h)
{
	char hex[BLK_HEX_LEN + 1], what[160];
	blk_hex(h, hex);
	uint64_t refs = itab_block_refs(s->cfg.itab, h);
	int rc = -ENOTCONN;
	uint64_t from = 0;
	if (refs && s->cfg.fetch)
		rc = s->cfg.fetch(s->cfg.ctx, h, &from);
	if (!refs)
		snprintf(what, sizeof(what),
		         "block %.16s: corrupt, referenced by nothing: "
		         "quarantined",
		         hex);
	else if (rc == 0)
		snprintf(what, sizeof(what),
		         "block %.16s: corrupt, a good copy fetched from "
		         "node %llu",
		         hex, (unsigned long long)from);
	else
		snprintf(what, sizeof(what),
		         "block %.16s: corrupt, no good copy from the peers "
		         "(%s); tried again on a read and next pass",
		         hex, strerror(-rc));
	if (refs && rc == 0)
		LOG(WARN, "scrub: %s", what);
	else
		LOG(ERROR, "scrub: %s", what);
	pthread_mutex_lock(&s->mu);
	s->c.corrupt++;
	if (!refs)
		s->c.unreferenced++;
	else if (rc == 0)
		s->c.repaired++;
	else
		s->c.unrepaired++;
	snprintf(s->c.last_finding, sizeof(s->c.last_finding), "%s", what);
	pthread_mutex_unlock(&s->mu);
}

/* One pass over the store. Called with mu held; returns with it held. */
static void pass(struct scrub *s)
{
	s->c.running = true;
	s->c.next_pass = 0;
	s->c.pass_done = s->c.pass_total = 0;
	pthread_mutex_unlock(&s->mu);
	double t0 = mono_s();
	struct listing l = {0};
	int rc = blk_list(s->cfg.bs, list_one, &l);
	if (rc < 0)
		LOG(WARN, "scrub: cannot list the block store %s: %s",
		    blk_path(s->cfg.bs), strerror(-rc));
	pthread_mutex_lock(&s->mu);
	s->c.pass_total = l.n;
	double rate = (double)s->cfg.rate_mib_s * 1048576.0;
	uint64_t bytes = 0;
	for (size_t i = 0; i < l.n && !s->stop; i++) {
		pthread_mutex_unlock(&s->mu);
		uint64_t size = 0;
		rc = blk_size(s->cfg.bs, l.h[i], &size) == 0
		         ? blk_check(s->cfg.bs, l.h[i])
		         : -ENOENT;
		if (rc == -EBADMSG)
			corrupt_block(s, l.h[i]);
		pthread_mutex_lock(&s->mu);
		s->c.pass_done++;
		if (rc == 0 || rc == -EBADMSG) {
			s->c.blocks_checked++;
			s->c.bytes_checked += size;
			bytes += size;
		}
		/* the byte budget: bytes so far must take bytes/rate seconds */
		double ahead = (double)bytes / rate - (mono_s() - t0);
		if (ahead > 0 && nap(s, ahead))
			break;
	}
	free(l.h);
	s->c.running = false;
	s->now = false;
	if (!s->stop) {
		s->c.passes++;
		s->c.last_pass_end = wall_s();
		s->c.last_pass_secs = mono_s() - t0;
		/* as scrub_main will compute it, visible at once */
		s->c.next_pass = s->c.last_pass_end - (int64_t)s->c.last_pass_secs +
				 s->cfg.interval_s;
		int64_t end = s->c.last_pass_end;
		uint64_t corrupt = s->c.corrupt, repaired = s->c.repaired;
		pthread_mutex_unlock(&s->mu);
		state_save(s->state_path, end);
		LOG(INFO,
		    "scrub: pass done: %zu blocks checked in %.1f s (%llu "
		    "corrupt since "
		    "start, %llu repaired)",
		    l.n, mono_s() - t0, (unsigned long long)corrupt,
		    (unsigned long long)repaired);
		pthread_mutex_lock(&s->mu);
	}
}

static void *scrub_main(void *arg)
{
	struct scrub *s = arg;
	pthread_setname_np(pthread_self(), "sfs-scrub");
	int64_t started = wall_s();
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		if (!s->c.enabled) {
			nap(s, 3600);
			s->now = false;
			continue;
		}
		int64_t interval = s->cfg.interval_s;
		int64_t first = interval < SCRUB_FIRST_DELAY_S
		                    ? interval
		                    : SCRUB_FIRST_DELAY_S;
		/* interval after the last pass began (after a restart: ended)
		 */
		int64_t due = s->c.last_pass_end
		                  ? s->c.last_pass_end -
		                        (int64_t)s->c.last_pass_secs + interval
		                  : started + first;
		int64_t now = wall_s();
		if (!s->now && due > now) {
			s->c.next_pass = due;
			nap(s, (double)(due - now));
			continue;
		}
		s->now = false;
		pass(s);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* See scrub.h. */
int scrub_start(const struct scrub_cfg *cfg, struct scrub **out)
{
	struct scrub *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	if (!s->cfg.interval_s)
		s->cfg.interval_s = SCRUB_DEFAULT_INTERVAL_S;
	if (cfg->state_path && !(s->state_path = strdup(cfg->state_path))) {
		free(s);
		return -ENOMEM;
	}
	s->cfg.state_path = s->state_path;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->c.enabled = cfg->rate_mib_s > 0;
	s->c.rate_mib_s = cfg->rate_mib_s;
	s->c.interval_s = s->cfg.interval_s;
	s->c.last_pass_end = state_load(s->state_path);
	if (s->c.enabled) { /* as scrub_main computes it, known at once */
		int64_t iv = s->cfg.interval_s;
		s->c.next_pass = s->c.last_pass_end
		                     ? s->c.last_pass_end + iv
		                     : wall_s() + (iv < SCRUB_FIRST_DELAY_S
		                                       ? iv
		                                       : SCRUB_FIRST_DELAY_S);
	}
	int rc = pthread_create(&s->thread, NULL, scrub_main, s);
	if (rc) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		free(s->state_path);
		free(s);
		return -rc;
	}
	*out = s;
	return 0;
}

/* See scrub.h. */
void scrub_stop(struct scrub *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->state_path);
	free(s);
}

/* See scrub.h. */
void scrub_get(struct scrub *s, struct scrub_counters *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->c;
	pthread_mutex_unlock(&s->mu);
}

/* See scrub.h. */
void scrub_now(struct scrub *s)
{
	pthread_mutex_lock(&s->mu);
	if (s->c.enabled && !s->c.running) {
		s->now = true;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}
