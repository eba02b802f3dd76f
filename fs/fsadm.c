/*
 * fsadm.c — online fsck and the scrub inside a mounted node (see
 * fsadm.h).
 *
 * A check is a job: "fsck start" creates it and starts its thread, the
 * caller polls it for progress and, once it is done, for the report
 * (rendered at the end as text and as JSON, so a poll only copies). The
 * job stays until the next one starts, so a late poll still gets it.
 * Everything a request touches is guarded by a->mu; the check thread
 * takes it only to publish progress and its result.
 */
#include "fs/fsadm.h"

#include "fs/data.h"
#include "fs/fsck.h"
#include "fs/fsm.h"
#include "fs/scrub.h"
#include "transport/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct job {
	uint64_t id;
	bool repair;
	bool running; /* guarded by fsadm.mu */
	bool joinable;
	atomic_bool cancel;
	pthread_t thread;
	const char *phase;    /* guarded by fsadm.mu */
	uint64_t done, total; /* guarded by fsadm.mu */
	int exit_status;      /* when done */
	char *text, *json;    /* when done, owned */
};

struct fsadm {
	struct fsadm_cfg cfg;
	char *data_dir;
	struct blk_store *bs; /* BLK_NO_CLEAN: beside the data path's */
	struct scrub *scrub;
	pthread_mutex_t mu;
	struct job job; /* the latest check; id 0: none yet */
	uint64_t next_id;
	atomic_bool stopping;
};

/* ---- fsck hooks (the check thread) ----------------------------------------
 */

static int hook_fetch(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                      uint64_t *from)
{
	struct fsadm *a = ctx;
	return data_refetch(a->cfg.data, hash, from);
}

static int hook_propose(void *ctx, const struct itab_op *op)
{
	struct fsadm *a = ctx;
	return fsm_propose_sync(a->cfg.fsm, op, NULL);
}

static int hook_drop(void *ctx, uint64_t *dropped)
{
	struct fsadm *a = ctx;
	return data_gc(a->cfg.data, dropped);
}

static void hook_settle(void *ctx)
{
	struct fsadm *a = ctx;
	data_drain(a->cfg.data);
}

static void hook_progress(void *ctx, const char *phase, uint64_t done,
                          uint64_t total)
{
	struct fsadm *a = ctx;
	pthread_mutex_lock(&a->mu);
	a->job.phase = phase;
	a->job.done = done;
	a->job.total = total;
	pthread_mutex_unlock(&a->mu);
}

static bool hook_stopping(void *ctx)
{
	struct fsadm *a = ctx;
	return atomic_load(&a->job.cancel) || atomic_load(&a->stopping);
}

/* The log as the replicator sees it, as of a moment after the table's
 * view: its status is published once per tick, so wait (up to a second)
 * until it shows the view's entries applied; then commit and last index
 * are at least the view's. If it never does (a stalled loop), the log is
 * not compared. */
static void hook_read_log(void *ctx, uint64_t applied, struct fsck_log *l)
{
	struct fsadm *a = ctx;
	struct repl_status st;
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < 100; i++) {
		repl_status(a->cfg.repl, &st);
		if (st.raft.applied >= applied) {
			l->known = true;
			l->snap_index =
			    st.raft.first_index ? st.raft.first_index - 1 : 0;
			l->last = st.raft.last_index;
			l->commit = st.raft.commit;
			return;
		}
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
}

static void *job_main(void *arg)
{
	struct fsadm *a = arg;
	pthread_setname_np(pthread_self(), "sfs-fsck");
	struct fsck_env env = {
	    .itab = a->cfg.itab,
	    .bs = a->bs,
	    .self_id = a->cfg.self_id,
	    .online = true,
	    .repair = a->job.repair,
	    .grace_ms = a->cfg.gc_grace_ms ? a->cfg.gc_grace_ms : 600000,
	    .read_log = hook_read_log,
	    .fetch = hook_fetch,
	    .propose = hook_propose,
	    .drop_unreferenced = hook_drop,
	    .settle = hook_settle,
	    .progress = hook_progress,
	    .stopping = hook_stopping,
	    .ctx = a,
	};
	LOG(INFO, "fsck: online check%s started (job %llu)",
	    env.repair ? " and repair" : "", (unsigned long long)a->job.id);
	struct fsck_report rep;
	fsck_run(&env, &rep);
	char *text = fsck_render(&rep, false);
	char *json = fsck_render(&rep, true);
	char *sum = fsck_summary(&rep);
	int status = fsck_exit_status(&rep);
	if (sum && rep.n_left)
		LOG(WARN, "fsck: %s", sum);
	else if (sum)
		LOG(INFO, "fsck: %s", sum);
	free(sum);
	fsck_report_free(&rep);
	pthread_mutex_lock(&a->mu);
	a->job.text = text;
	a->job.json = json;
	a->job.exit_status = status;
	a->job.running = false;
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* ---- admin requests ---------------------------------------------------------
 */

static char *msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *msg(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Join a finished check's thread (mu held; it no longer needs mu). */
static void job_reap(struct fsadm *a)
{
	if (a->job.joinable && !a->job.running) {
		pthread_join(a->job.thread, NULL);
		a->job.joinable = false;
	}
}

static char *fsck_start(struct fsadm *a, bool repair)
{
	pthread_mutex_lock(&a->mu);
	if (a->job.running) {
		char *s = msg("err a check is running already (job %llu, %s); "
		              "wait for it or "
		              "cancel it\n",
		              (unsigned long long)a->job.id,
		              a->job.phase ? a->job.phase : "starting");
		pthread_mutex_unlock(&a->mu);
		return s;
	}
	job_reap(a);
	free(a->job.text);
	free(a->job.json);
	memset(&a->job, 0, sizeof(a->job));
	a->job.id = ++a->next_id;
	a->job.repair = repair;
	a->job.running = true;
	a->job.phase = "starting";
	atomic_init(&a->job.cancel, false);
	int rc = pthread_create(&a->job.thread, NULL, job_main, a);
	char *s;
	if (rc) {
		a->job.running = false;
		s = msg("err cannot start the check: %s\n", strerror(rc));
	} else {
		a->job.joinable = true;
		s = msg("ok %llu\n", (unsigned long long)a->job.id);
	}
	pthread_mutex_unlock(&a->mu);
	return s;
}

static char *fsck_poll(struct fsadm *a, uint64_t id, bool json)
{
	pthread_mutex_lock(&a->mu);
	char *s;
	if (id == 0 || id != a->job.id)
		s = msg("err no check %llu here (the node may have restarted "
		        "since)\n",
		        (unsigned long long)id);
	else if (a->job.running)
		s = msg("running %s\t%llu\t%llu\n",
		        a->job.phase ? a->job.phase : "",
		        (unsigned long long)a->job.done,
		        (unsigned long long)a->job.total);
	else {
		const char *r = json ? a->job.json : a->job.text;
		s = msg("done %d\n%s", a->job.exit_status,
		        r ? r : "(out of memory)\n");
	}
	pthread_mutex_unlock(&a->mu);
	return s;
}

static char *fsck_cancel(struct fsadm *a, uint64_t id)
{
	pthread_mutex_lock(&a->mu);
	char *s;
	if (id == 0 || id != a->job.id) {
		s = msg("err no check %llu here\n", (unsigned long long)id);
	} else {
		atomic_store(&a->job.cancel, true);
		s = msg("ok\n");
	}
	pthread_mutex_unlock(&a->mu);
	return s;
}

/* node_ext.admin: the requests in fsadm.h. */
static int ext_admin(void *ctx, const uint8_t *req, size_t len, char **reply)
{
	struct fsadm *a = ctx;
	char line[128];
	if (len >= sizeof(line))
		return 0;
	memcpy(line, req, len);
	line[len] = 0;
	unsigned long long id = 0;
	char how[8] = "";
	if (!strcmp(line, "fsck start"))
		*reply = fsck_start(a, false);
	else if (!strcmp(line, "fsck start repair"))
		*reply = fsck_start(a, true);
	else if (sscanf(line, "fsck poll %llu %7s", &id, how) == 2 &&
	         (!strcmp(how, "text") || !strcmp(how, "json")))
		*reply = fsck_poll(a, id, !strcmp(how, "json"));
	else if (sscanf(line, "fsck cancel %llu", &id) == 1)
		*reply = fsck_cancel(a, id);
	else if (!strncmp(line, "fsck", 4))
		*reply = msg("err usage: fsck start [repair] | fsck poll JOB "
		             "text|json | fsck cancel JOB\n");
	else
		return 0;
	return 1;
}

/* ---- status
 * ------------------------------------------------------------------- */

static void fmt_time(int64_t t, char *out, size_t cap)
{
	if (t <= 0) {
		snprintf(out, cap, "never");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

/* node_ext.status: the scrub's figures (and a check in progress). */
static char *ext_status(void *ctx, int json)
{
	struct fsadm *a = ctx;
	struct scrub_counters c;
	scrub_get(a->scrub, &c);
	pthread_mutex_lock(&a->mu);
	bool checking = a->job.running;
	uint64_t job = a->job.id, done = a->job.done, total = a->job.total;
	const char *phase = a->job.phase ? a->job.phase : "";
	char phase_copy[64];
	snprintf(phase_copy, sizeof(phase_copy), "%s", phase);
	pthread_mutex_unlock(&a->mu);
	unsigned long long id = (unsigned long long)a->cfg.self_id;
	if (json) {
		char *fsck = checking
		                 ? msg(",\"fsck\":{\"node\":%llu,\"job\":%llu,"
		                       "\"phase\":\"%s\","
		                       "\"done\":%llu,\"total\":%llu}",
		                       id, (unsigned long long)job, phase_copy,
		                       (unsigned long long)done,
		                       (unsigned long long)total)
		                 : NULL;
		char *s = msg(
		    "\"scrub\":{\"node\":%llu,\"enabled\":%s,\"rate_mib_s\":%u,"
		    "\"interval_s\":%u,\"running\":%s,\"passes\":%llu,\"pass_"
		    "done\":%llu,"
		    "\"pass_total\":%llu,\"blocks_checked\":%llu,\"bytes_"
		    "checked\":%llu,"
		    "\"corrupt\":%llu,\"repaired\":%llu,\"unrepaired\":%llu,"
		    "\"unreferenced\":%llu,\"last_pass_end\":%lld,\"last_pass_"
		    "secs\":%.3f,"
		    "\"next_pass\":%lld,\"last_finding\":\"%s\"}%s",
		    id, c.enabled ? "true" : "false", c.rate_mib_s,
		    c.interval_s, c.running ? "true" : "false",
		    (unsigned long long)c.passes,
		    (unsigned long long)c.pass_done,
		    (unsigned long long)c.pass_total,
		    (unsigned long long)c.blocks_checked,
		    (unsigned long long)c.bytes_checked,
		    (unsigned long long)c.corrupt,
		    (unsigned long long)c.repaired,
		    (unsigned long long)c.unrepaired,
		    (unsigned long long)c.unreferenced,
		    (long long)c.last_pass_end, c.last_pass_secs,
		    (long long)c.next_pass, c.last_finding, fsck ? fsck : "");
		free(fsck);
		return s;
	}
	char last[32], next[32], state[160];
	fmt_time(c.last_pass_end, last, sizeof(last));
	fmt_time(c.next_pass, next, sizeof(next));
	if (!c.enabled)
		snprintf(state, sizeof(state), "off (scrub_mb_s=0)");
	else if (c.running)
		snprintf(state, sizeof(state),
		         "pass %llu running, %llu of %llu blocks",
		         (unsigned long long)c.passes + 1,
		         (unsigned long long)c.pass_done,
		         (unsigned long long)c.pass_total);
	else
		snprintf(state, sizeof(state), "idle, next pass %s", next);
	char *s = msg(
	    "scrub (node %llu): %s; %llu passes, %llu blocks checked, %llu "
	    "corrupt "
	    "(%llu repaired, %llu unrepaired, %llu unreferenced); %u MiB/s "
	    "every %u s; "
	    "last pass ended %s (%.1f s)\n%s%s%s",
	    id, state, (unsigned long long)c.passes,
	    (unsigned long long)c.blocks_checked, (unsigned long long)c.corrupt,
	    (unsigned long long)c.repaired, (unsigned long long)c.unrepaired,
	    (unsigned long long)c.unreferenced, c.rate_mib_s, c.interval_s,
	    last, c.last_pass_secs, c.last_finding[0] ? "  last finding: " : "",
	    c.last_finding, c.last_finding[0] ? "\n" : "");
	if (s && checking) {
		char *t =
		    msg("%sfsck (node %llu): job %llu running, %s %llu/%llu\n",
		        s, id, (unsigned long long)job, phase_copy,
		        (unsigned long long)done, (unsigned long long)total);
		free(s);
		s = t;
	}
	return s;
}

/* ---- lifecycle
 * ---------------------------------------------------------------- */

static int scrub_fetch(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                       uint64_t *from)
{
	struct fsadm *a = ctx;
	return data_refetch(a->cfg.data, hash, from);
}

/* See fsadm.h. */
int fsadm_start(const struct fsadm_cfg *cfg, struct fsadm **out, char *err,
                size_t errcap)
{
	struct fsadm *a = calloc(1, sizeof(*a));
	if (!a || !(a->data_dir = strdup(cfg->data_dir))) {
		free(a);
		return -ENOMEM;
	}
	a->cfg = *cfg;
	a->cfg.data_dir = a->data_dir;
	pthread_mutex_init(&a->mu, NULL);
	atomic_init(&a->stopping, false);
	char path[4200];
	snprintf(path, sizeof(path), "%s/blocks", a->data_dir);
	int rc = blk_open(path, BLK_NO_CLEAN, &a->bs, err, errcap);
	if (rc < 0) {
		fsadm_stop(a);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/scrub.state", a->data_dir);
	struct scrub_cfg sc = {
	    .bs = a->bs,
	    .itab = cfg->itab,
	    .fetch = scrub_fetch,
	    .ctx = a,
	    .rate_mib_s = cfg->scrub_mib_s,
	    .interval_s = cfg->scrub_interval_s,
	    .state_path = path,
	};
	rc = scrub_start(&sc, &a->scrub);
	if (rc < 0) {
		snprintf(err, errcap, "cannot start the scrub: %s",
		         strerror(-rc));
		fsadm_stop(a);
		return rc;
	}
	if (cfg->scrub_mib_s)
		LOG(INFO, "scrub: on, %u MiB/s, a pass every %u s",
		    cfg->scrub_mib_s,
		    cfg->scrub_interval_s ? cfg->scrub_interval_s
		                          : SCRUB_DEFAULT_INTERVAL_S);
	*out = a;
	return 0;
}

/* See fsadm.h. */
void fsadm_stop(struct fsadm *a)
{
	if (!a)
		return;
	atomic_store(&a->stopping, true);
	pthread_mutex_lock(&a->mu);
	bool join = a->job.joinable;
	pthread_t th = a->job.thread;
	a->job.joinable = false;
	pthread_mutex_unlock(&a->mu);
	if (join)
		pthread_join(th, NULL);
	scrub_stop(a->scrub);
	blk_close(a->bs);
	free(a->job.text);
	free(a->job.json);
	pthread_mutex_destroy(&a->mu);
	free(a->data_dir);
	free(a);
}

/* See fsadm.h. */
void fsadm_scrub_counters(struct fsadm *a, struct scrub_counters *out)
{
	scrub_get(a->scrub, out);
}

/* See fsadm.h. */
struct node_ext fsadm_ext(struct fsadm *a)
{
	return (struct node_ext){
	    .admin = ext_admin, .status = ext_status, .ctx = a};
}
