/*
 * mount.c — `sandfs mount --id N --peers ... --data DIR [-f] [-o OPTS] MNT`
 * (each of the node options may come from the configuration file instead,
 * see cli.h; MNT too, as mountpoint =)
 *
 * Runs one node with the filesystem mounted at MNT. Without -f the
 * process forks FIRST (threads do not survive fork), the child does all
 * the work and tells the parent through a pipe when the mount is ready
 * (one zero byte) or why it failed (a message); the parent exits 0 only
 * after the mount is ready, so `sandfs mount ... && ls MNT` works.
 *
 * Options (-o, comma-separated): allow_other, ro, debug, log=PATH,
 * timeout_ms=N (mutation timeout, default 10000), entry_timeout=SECONDS,
 * lock_lease_ms=N (lock lease, default 12000, the same on every node),
 * close_delay_ms=N (an open record outlives the last close by N ms, default
 * 3000: reopening within it proposes nothing; 0: drop it at once),
 * block_gc_ms=N (unreferenced blocks are deleted after N ms, default
 * 600000, and looked for every N ms, default 300000),
 * scrub_mb_s=N (the background block scrub reads at most N MiB/s, default
 * 4; 0 turns it off), scrub_interval_s=N (a scrub pass every N s, default
 * 86400),
 * acl (the default: POSIX ACLs, enforced by the kernel) or noacl, and any
 * other FUSE mount option, passed through. default_permissions is always
 * on. A daemon logs to DIR/sandfs.log unless log= says where.
 *
 * Shutdown: fusermount3 -u MNT (or umount) ends the FUSE loop; SIGTERM
 * and SIGINT do too (fuse_set_signal_handlers). SIGHUP reopens the log
 * file (fs/hup.h; it stops the node like SIGTERM when there is no log
 * file). Then the start-up thread, the invalidation thread, the data path
 * and the node stop in that order, the mount is removed and the process
 * exits 0.
 *
 * Start-up chores (start_chores, a thread of its own): once the node has
 * caught up with the cluster, fetch the blocks it lacks, release the
 * locks and open records its previous run left in the table, and the
 * orphans (open-unlinked files) it kept alive before a crash.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/data.h"
#include "fs/fsadm.h"
#include "fs/scrub.h"
#include "fs/fsm.h"
#include "fs/hup.h"
#include "fs/inval.h"
#include "fs/itab.h"
#include "fs/cli.h"
#include "fs/main.h"
#include "fs/node.h"
#include "fs/node_metrics.h"
#include "fs/scrub_metrics.h"
#include "fs/sfs.h"
#include "storage/datadir.h"
#include "transport/log.h"

#define READY_TIMEOUT_MS 60000
#define DRAIN_SLACK_MS 10000 /* proposal timeout + this bounds sfs_drain */
#define INVAL_QUIESCE_MS 3000 /* then the FUSE connection is aborted */
#define CHORES_BARRIER_MS 1000 /* one catch-up read barrier attempt */
#define CHORES_PAUSE_MS 500    /* between failed attempts */

struct mount_opts {
	char fuse_opts[2048]; /* passed to fuse_session_new */
	const char *log_path;
	int debug;
	uint32_t timeout_ms;
	uint32_t lock_lease_ms;
	uint32_t close_delay_ms; /* open records kept after the last close */
	uint32_t block_gc_ms;
	uint32_t scrub_mib_s;      /* background scrub rate, 0 off */
	uint32_t scrub_interval_s; /* 0: the scrub's default */
	double entry_timeout;
	bool no_acl; /* -o noacl: no POSIX ACLs on this mount */
	char *copy; /* owns the strings above */
};

/* Split -o into ours and FUSE's. Returns 0 or -EINVAL (message printed). */
static int parse_mount_opts(const char *s, struct mount_opts *m)
{
	memset(m, 0, sizeof(*m));
	m->close_delay_ms = SFS_CLOSE_DELAY_MS;
	m->scrub_mib_s = SCRUB_DEFAULT_MIB_S; /* -o scrub_mb_s=0 turns it off */
	int w = snprintf(m->fuse_opts, sizeof(m->fuse_opts),
			 "fsname=sandfs,subtype=sandfs,default_permissions");
	if (!s)
		return 0;
	m->copy = strdup(s);
	if (!m->copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *tok = strtok_r(m->copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end = NULL;
		if (!strcmp(tok, "debug")) {
			m->debug = 1;
		} else if (!strncmp(tok, "log=", 4)) {
			m->log_path = tok + 4;
		} else if (!strncmp(tok, "timeout_ms=", 11)) {
			unsigned long v = strtoul(tok + 11, &end, 10);
			if (!tok[11] || *end || v < 100 || v > 3600000) {
				fprintf(stderr, "sandfs mount: timeout_ms wants "
						"100..3600000 (milliseconds)\n");
				return -EINVAL;
			}
			m->timeout_ms = (uint32_t)v;
		} else if (!strncmp(tok, "lock_lease_ms=", 14)) {
			unsigned long v = strtoul(tok + 14, &end, 10);
			if (!tok[14] || *end || v < 1000 || v > 600000) {
				fprintf(stderr, "sandfs mount: lock_lease_ms wants "
						"1000..600000 (milliseconds, the same "
						"on every node)\n");
				return -EINVAL;
			}
			m->lock_lease_ms = (uint32_t)v;
		} else if (!strncmp(tok, "close_delay_ms=", 15)) {
			unsigned long v = strtoul(tok + 15, &end, 10);
			if (!tok[15] || *end || v > 600000) {
				fprintf(stderr, "sandfs mount: close_delay_ms wants "
						"0..600000 (milliseconds)\n");
				return -EINVAL;
			}
			m->close_delay_ms = (uint32_t)v;
		} else if (!strncmp(tok, "block_gc_ms=", 12)) {
			unsigned long v = strtoul(tok + 12, &end, 10);
			if (!tok[12] || *end || v < 1000 || v > 86400000) {
				fprintf(stderr, "sandfs mount: block_gc_ms wants "
						"1000..86400000 (milliseconds)\n");
				return -EINVAL;
			}
			m->block_gc_ms = (uint32_t)v;
		} else if (!strncmp(tok, "scrub_mb_s=", 11)) {
			unsigned long v = strtoul(tok + 11, &end, 10);
			if (!tok[11] || *end || v > 10000) {
				fprintf(stderr, "sandfs mount: scrub_mb_s wants "
						"0..10000 (MiB/s; 0 turns the scrub off)\n");
				return -EINVAL;
			}
			m->scrub_mib_s = (uint32_t)v;
		} else if (!strncmp(tok, "scrub_interval_s=", 17)) {
			unsigned long v = strtoul(tok + 17, &end, 10);
			if (!tok[17] || *end || v < 1 || v > 31536000) {
				fprintf(stderr, "sandfs mount: scrub_interval_s wants "
						"1..31536000 (seconds between passes)\n");
				return -EINVAL;
			}
			m->scrub_interval_s = (uint32_t)v;
		} else if (!strncmp(tok, "entry_timeout=", 14)) {
			double v = strtod(tok + 14, &end);
			if (!tok[14] || *end || v < 0 || v > 3600) {
				fprintf(stderr, "sandfs mount: entry_timeout "
						"wants 0..3600 (seconds)\n");
				return -EINVAL;
			}
			m->entry_timeout = v;
		} else if (!strcmp(tok, "noacl")) {
			m->no_acl = true;
		} else if (!strcmp(tok, "acl")) {
			m->no_acl = false;
		} else if (!strcmp(tok, "default_permissions") || !*tok) {
			/* always on */
		} else {
			if (strchr(tok, '\\')) {
				fprintf(stderr, "sandfs mount: bad option '%s'\n", tok);
				return -EINVAL;
			}
			w += snprintf(m->fuse_opts + w, sizeof(m->fuse_opts) - (size_t)w,
				      ",%s", tok);
			if ((size_t)w >= sizeof(m->fuse_opts)) {
				fprintf(stderr, "sandfs mount: -o is too long\n");
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Run fusermount3 -u -z on a dead mount point (before any thread). */
static int clear_stale_mount(const char *mp)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("fusermount3", "fusermount3", "-u", "-z", mp, (char *)NULL);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* The mount point must be an existing directory; a dead FUSE mount
 * (ENOTCONN: its process died) is cleared first. Writes the absolute
 * path into abs. */
static int check_mountpoint(const char *mp, char *abs, char *err, size_t errcap)
{
	struct stat st;
	if (stat(mp, &st) != 0 && errno == ENOTCONN) {
		if (clear_stale_mount(mp) != 0) {
			snprintf(err, errcap,
				 "%s is a dead FUSE mount and fusermount3 -u -z "
				 "failed; unmount it by hand",
				 mp);
			return -EBUSY;
		}
		LOG(INFO, "cleared the dead mount at %s", mp);
	}
	if (stat(mp, &st) != 0) {
		snprintf(err, errcap, "mount point %s: %s", mp, strerror(errno));
		return -ENOENT;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errcap, "mount point %s is not a directory", mp);
		return -ENOTDIR;
	}
	if (!realpath(mp, abs)) {
		snprintf(err, errcap, "mount point %s: %s", mp, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Everything that lives while mounted. */
struct mounted {
	struct itab *itab;
	struct fsm *fsm;
	struct node *node;
	struct data *data;
	struct sfs *sfs;
	struct fuse_session *se;
	struct inval *inval;
	struct fsadm *fsadm;     /* online fsck and the scrub */
	int signals;
	int mounted;
	uint32_t drain_ms; /* sfs_drain bound: proposal timeout + slack */
	char mp[PATH_MAX]; /* absolute mount point */
	bool log;          /* logging to a file (log_open) */
	struct sfs_hup *hup; /* SIGHUP: reopen the log */
	char data_abs[PATH_MAX]; /* absolute data directory */
	uint64_t self_id;
	pthread_t chores;        /* start-up chores (start_chores) */
	bool chores_started;
	bool locks_started;      /* sfs_locks_start() succeeded */
	atomic_bool chores_stop; /* teardown began: chores give up */
};

/* Undo the octal escapes (\040 ...) of a /proc/self/mountinfo field. */
static void unescape_field(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* Abort the FUSE connection mounted at mp through the fusectl file
 * system (root only): every request still waiting in the kernel fails,
 * so the locks they hold are released. Best effort; the mount point is
 * never stat'ed (nobody answers requests any more). */
static void abort_fuse_connection(const char *mp)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return;
	char line[3 * PATH_MAX];
	unsigned maj = 0, min = 0;
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *save = NULL, *tok, *dev = NULL, *point = NULL;
		int i = 0;
		for (tok = strtok_r(line, " ", &save); tok && i < 5;
		     tok = strtok_r(NULL, " ", &save), i++) {
			if (i == 2)
				dev = tok;
			else if (i == 4)
				point = tok;
		}
		if (!dev || !point)
			continue;
		unescape_field(point);
		if (strcmp(point, mp) == 0 && sscanf(dev, "%u:%u", &maj, &min) == 2)
			found = true;
	}
	fclose(f);
	if (!found)
		return;
	char path[96];
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
		 maj << 20 | min);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		LOG(WARN, "cannot abort the FUSE connection (%s: %s); the "
			  "invalidation thread may stay blocked", path,
		    strerror(errno));
		return;
	}
	if (write(fd, "1", 1) != 1)
		LOG(WARN, "aborting the FUSE connection: %s", strerror(errno));
	else
		LOG(WARN, "aborted the FUSE connection of %s to release a "
			  "blocked kernel invalidation", mp);
	close(fd);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool chores_stopping(void *ctx)
{
	struct mounted *m = ctx;
	return atomic_load(&m->chores_stop);
}

/* in_use for fsm_release_orphans_held_by: an orphan this mount made
 * (unlinked while open here) stays until its last handle here closes. */
static bool orphan_open_here(void *ctx, uint64_t ino)
{
	struct mounted *m = ctx;
	return sfs_nopen(m->sfs, ino) != 0;
}

/* Start-up chores, on a thread of their own so the mount is not delayed.
 * First wait until this node has caught up with the cluster: a ReadIndex
 * barrier that succeeded means every entry committed before it was applied
 * here, including the UNLINKs this node proposed in its previous run
 * (a leader answers ReadIndex only after committing an entry of its own
 * term, which commits every older entry it holds; an entry it does not
 * hold was never committed and will be overwritten). Then:
 *  - the blocks the caught-up table references and this node lacks are
 *    fetched (data_catch_up; also done at once at mount, for the state
 *    replayed from the local log);
 *  - the orphans the table says this node keeps alive are released: the
 *    handles of the previous run died with it. Orphans of this mount are
 *    open here (sfs_nopen) and left alone; an orphan cannot be opened
 *    anew (it has no name), so one found closed stays closed.
 * Retries the barrier until it works (a node on the minority side waits
 * for the partition to heal) or teardown begins. */
static void *start_chores(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-chores");
	struct mounted *m = arg;
	int64_t t0 = mono_ms();
	unsigned tries = 0;
	int rc = -EAGAIN;
	while (!atomic_load(&m->chores_stop)) {
		rc = fsm_read_index_sync(m->fsm, CHORES_BARRIER_MS);
		if (rc == 0 || rc == -ENOTCONN)
			break;
		if (++tries == 1)
			LOG(INFO, "not caught up with the cluster yet (%s); orphans "
				  "of the previous run are released once it is",
			    strerror(-rc));
		for (int i = 0; i < CHORES_PAUSE_MS / 50 &&
				!atomic_load(&m->chores_stop); i++) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};
			nanosleep(&ts, NULL);
		}
	}
	if (rc != 0 || atomic_load(&m->chores_stop))
		return NULL;
	LOG(INFO, "caught up with the cluster at applied index %llu (%lld ms "
		  "after start)",
	    (unsigned long long)itab_applied_index(m->itab),
	    (long long)(mono_ms() - t0));
	data_catch_up(m->data);
	/* Locks and open records of the previous run (lock requests wait for
	 * this); retried while the proposal fails. */
	while (!atomic_load(&m->chores_stop) &&
	       (rc = sfs_locks_recover(m->sfs, chores_stopping, m)) != 0 &&
	       rc != -ECANCELED) {
		LOG(WARN, "cannot release the locks of the previous run yet (%s); "
			  "lock requests wait", strerror(-rc));
		for (int i = 0; i < CHORES_PAUSE_MS / 50 &&
				!atomic_load(&m->chores_stop); i++) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 50000000};
			nanosleep(&ts, NULL);
		}
	}
	struct fsm_orphan_stats st;
	rc = fsm_release_orphans_held_by(m->fsm, m->self_id, orphan_open_here,
					 chores_stopping, m, &st);
	if (rc < 0)
		LOG(WARN, "cannot release the orphans of the previous run: %s",
		    strerror(-rc));
	else if (st.found == 0)
		LOG(INFO, "released 0 orphans: none left by a previous run");
	else
		LOG(INFO, "released %zu of %zu orphans this node kept alive "
			  "(%zu already gone or linked again, %zu open here, "
			  "%zu failed: those are tried again at the next start)",
		    st.released, st.found, st.refused, st.skipped, st.failed);
	return NULL;
}

/* Stop in reverse order of start. The FUSE loop has ended (its workers
 * are joined), so no handler runs. Then:
 *  - the invalidation thread (nothing queues any more);
 *  - the frontend's proposals in flight complete while the replicator
 *    still runs (their completions read the data path's dirty sizes and
 *    reply through the session); the replicator fails any of them after
 *    its proposal timeout, so this ends;
 *  - the data path: detached from the apply first, stopped before the
 *    node because its threads use the replicator's links and status;
 *  - the node: whatever is still pending completes with -ESHUTDOWN; no
 *    proposal can be made any more (fsm has no replicator);
 *  - the session, which took the last replies. */
/* The mount's metrics: FUSE requests, the block store, the scrub. */
static void mount_metrics(void *ctx, struct metrics_out *o)
{
	struct mounted *m = ctx;
	sfs_metrics(m->sfs, o);
	data_metrics(m->data, o);
	if (m->fsadm) {
		struct scrub_counters sc;
		fsadm_scrub_counters(m->fsadm, &sc);
		scrub_metrics_write(&sc, o);
	}
}

static void teardown(struct mounted *m)
{
	if (m->node)
		node_metrics_remove(node_metrics(m->node), mount_metrics, m);
	/* The chores use the replicator, the data path and the frontend's
	 * counts: they end first (within a barrier attempt, ~1 s). */
	atomic_store(&m->chores_stop, true);
	if (m->chores_started)
		pthread_join(m->chores, NULL);
	m->chores_started = false;
	/* fsck and the scrub use the data path, the proposals and the
	 * replicator: detached from the admin socket and stopped first. */
	if (m->node)
		node_set_ext(m->node, NULL);
	fsadm_stop(m->fsadm);
	m->fsadm = NULL;
	/* The lock thread proposes and reads the replicator's status. */
	if (m->sfs)
		sfs_open_stop(m->sfs); /* proposes the waiting CLOSEs */
	if (m->locks_started)
		sfs_locks_stop(m->sfs);
	m->locks_started = false;
	if (m->fsm)
		fsm_set_inval(m->fsm, NULL);
	/* After a signal the kernel may still hold unanswered requests; an
	 * invalidation waiting for a lock one of them holds never returns
	 * on its own. */
	if (inval_quiesce(m->inval, INVAL_QUIESCE_MS) != 0)
		abort_fuse_connection(m->mp);
	inval_stop(m->inval);
	bool data_safe = true;
	if (m->sfs && m->node && sfs_drain(m->sfs, m->drain_ms) != 0) {
		/* Cannot happen while the replicator runs (it fails every
		 * proposal at its deadline); never free under a completion. */
		LOG(ERROR, "frontend proposals still pending after %u ms; "
			   "leaving the data path allocated",
		    (unsigned)m->drain_ms);
		data_safe = false;
	}
	if (m->fsm)
		fsm_set_data(m->fsm, NULL);
	if (m->data && data_safe)
		data_stop(m->data);
	if (m->fsm)
		fsm_set_repl(m->fsm, NULL);
	if (m->node)
		node_stop(m->node);
	if (m->se) {
		if (m->signals)
			fuse_remove_signal_handlers(m->se);
		if (m->mounted)
			fuse_session_unmount(m->se);
		fuse_session_destroy(m->se);
	}
	sfs_free(m->sfs);
	fsm_free(m->fsm);
	itab_close(m->itab);
	sfs_hup_stop(m->hup);
	if (m->log)
		log_close();
}

/* Bring everything up and mount. On failure a reason is in err. */
/* mountinfo's octal escapes (\040 for a space, ...) undone in place. */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
				      (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
}

/* Raise the kernel's read-ahead for the new mount to SFS_READAHEAD_KB
 * (the bdi default is 128 KiB, which caps each FUSE read at 128 KiB; with
 * 1 MiB the kernel asks for 1 MiB at a time, an eighth of the round
 * trips). Must run after fuse_session_mount and before the INIT reply,
 * which can only lower it (sfs_init offers the same figure). The device
 * comes from /proc/self/mountinfo: a stat() of the mount point would wait
 * for the not yet running FUSE loop. Best effort (root only). */
#define SFS_READAHEAD_KB 1024
static void raise_readahead(const char *mp)
{
	FILE *mi = fopen("/proc/self/mountinfo", "r");
	if (!mi)
		return;
	char line[4096 + PATH_MAX], dev[64] = "";
	while (fgets(line, sizeof(line), mi)) {
		char *save = NULL, *f[5];
		int n = 0;
		for (char *t = strtok_r(line, " ", &save); t && n < 5;
		     t = strtok_r(NULL, " ", &save))
			f[n++] = t;
		if (n < 5)
			continue;
		unescape_octal(f[4]);
		if (!strcmp(f[4], mp) && strlen(f[2]) < sizeof(dev))
			snprintf(dev, sizeof(dev), "%s", f[2]); /* last wins */
	}
	fclose(mi);
	if (!dev[0])
		return;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	FILE *f = fopen(path, "w");
	if (!f || fprintf(f, "%d\n", SFS_READAHEAD_KB) < 0 || fclose(f) != 0) {
		if (f)
			fclose(f);
		LOG(DEBUG, "cannot raise read-ahead (%s): %s", path,
		    strerror(errno));
		return;
	}
	LOG(DEBUG, "read-ahead of %s raised to %d KiB", mp, SFS_READAHEAD_KB);
}

static int bring_up(struct node_opts *o, const struct mount_opts *mo,
		    const char *mp, struct mounted *m, int daemon, char *err,
		    size_t errcap)
{
	uint64_t cid = o->cluster_id ? o->cluster_id
				     : node_cluster_id(o->peers, o->n_peers);
	/* Create/check the data directory (FORMAT, cluster id) before we put
	 * anything into it; node_start() takes the lock again below. */
	struct ddir *dd;
	int rc = ddir_open(o->data_dir, cid, &dd, err, errcap);
	if (rc < 0)
		return rc;
	ddir_close(dd);
	char *data_abs = m->data_abs;
	if (!realpath(o->data_dir, data_abs)) {
		snprintf(err, errcap, "%s: %s", o->data_dir, strerror(errno));
		return -errno;
	}
	o->data_dir = data_abs;

	char path[PATH_MAX + 32];
	const char *log_path = mo->log_path;
	if (!log_path && daemon) {
		snprintf(path, sizeof(path), "%s/sandfs.log", data_abs);
		log_path = path;
	}
	if (log_path) {
		rc = log_open(log_path);
		if (rc < 0) {
			snprintf(err, errcap, "cannot open log %s: %s", log_path,
				 strerror(-rc));
			return rc;
		}
		m->log = true;
	}
	/* SIGHUP is blocked in every thread (sfs_cmd_mount); this one
	 * reopens the log on it. */
	rc = sfs_hup_start(&m->hup);
	if (rc < 0) {
		snprintf(err, errcap, "cannot start the SIGHUP thread: %s",
			 strerror(-rc));
		return rc;
	}

	snprintf(path, sizeof(path), "%s/meta", data_abs);
	struct itab_config icfg = {.cluster_id = cid,
				   .block_size = DATA_BLOCK_SIZE};
	rc = itab_open_err(path, &icfg, &m->itab, err, errcap);
	if (rc < 0)
		return rc;
	if ((rc = fsm_new(m->itab, o->id, &m->fsm)) < 0)
		return rc;
	struct repl_sm sm = fsm_sm(m->fsm);
	o->fs_sm = &sm;
	if (mo->timeout_ms)
		o->propose_timeout_ms = mo->timeout_ms;
	m->drain_ms = (o->propose_timeout_ms ? o->propose_timeout_ms : 10000) +
		      DRAIN_SLACK_MS;
	rc = node_start(o, &m->node, err, errcap);
	if (rc < 0)
		return rc;
	fsm_set_repl(m->fsm, node_repl(m->node));

	snprintf(path, sizeof(path), "%s/blocks", data_abs);
	struct data_cfg dcfg = {
		.itab = m->itab,
		.repl = node_repl(m->node),
		.blocks_dir = path,
		.self_id = o->id,
		.propose = fsm_data_propose,
		.propose_ctx = m->fsm,
		/* Blocks wait for a majority as long as metadata does. */
		.push_timeout_ms = o->propose_timeout_ms,
		/* block_gc_ms: how long an unreferenced block is kept, and the
		 * period of the scan for them (tests use a short one). */
		.gc_grace_ms = mo->block_gc_ms,
		.gc_interval_ms = mo->block_gc_ms,
	};
	rc = data_start(&dcfg, &m->data, err, errcap);
	if (rc < 0)
		return rc;
	fsm_set_data(m->fsm, m->data);
	/* Blocks the table references but this node lacks (a crash between
	 * apply and fetch; entries replayed before the line above). */
	data_catch_up(m->data);

	struct sfs_cfg scfg = {
		.itab = m->itab,
		.fsm = m->fsm,
		.data = m->data,
		.self_id = o->id,
		.timeout_s = mo->entry_timeout,
		.no_acl = mo->no_acl,
		.propose_timeout_ms = o->propose_timeout_ms,
		.lock_lease_ms = mo->lock_lease_ms,
	};
	if ((rc = sfs_new(&scfg, &m->sfs)) < 0)
		return rc;
	if ((rc = sfs_locks_start(m->sfs)) < 0) {
		snprintf(err, errcap, "cannot start the lock thread: %s",
			 strerror(-rc));
		return rc;
	}
	m->locks_started = true;
	if ((rc = sfs_open_start(m->sfs, mo->close_delay_ms)) < 0) {
		snprintf(err, errcap, "cannot start the open-record closer: %s",
			 strerror(-rc));
		return rc;
	}
	struct fsadm_cfg acfg = {
		.itab = m->itab,
		.fsm = m->fsm,
		.data = m->data,
		.repl = node_repl(m->node),
		.data_dir = data_abs,
		.self_id = o->id,
		.gc_grace_ms = mo->block_gc_ms,
		.scrub_mib_s = mo->scrub_mib_s,
		.scrub_interval_s = mo->scrub_interval_s,
	};
	if ((rc = fsadm_start(&acfg, &m->fsadm, err, errcap)) < 0)
		return rc;
	struct node_ext ext = fsadm_ext(m->fsadm);
	node_set_ext(m->node, &ext);
	node_metrics_add(node_metrics(m->node), mount_metrics, m);
	/* The source shows the data directory ("sandfs:/var/lib/sandfs" in
	 * mountinfo and df), which is how `sandfs stats MOUNTPOINT` finds
	 * the node; a path -o cannot carry stays plain "sandfs". */
	char fopts[sizeof(mo->fuse_opts) + PATH_MAX + 16];
	snprintf(fopts, sizeof(fopts), "%s%s%s", mo->fuse_opts,
		 strpbrk(data_abs, ", \t\n\\") ? "" : ",fsname=sandfs:",
		 strpbrk(data_abs, ", \t\n\\") ? "" : data_abs);
	char *argv[] = {"sandfs", "-o", fopts, "-d", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(mo->debug ? 4 : 3, argv);
	m->se = fuse_session_new(&args, sfs_ops(), sizeof(struct fuse_lowlevel_ops),
				 m->sfs);
	fuse_opt_free_args(&args);
	if (!m->se) {
		snprintf(err, errcap, "cannot create the FUSE session (bad -o "
				      "option? see the messages above)");
		return -EINVAL;
	}
	if (fuse_set_signal_handlers(m->se) != 0) {
		snprintf(err, errcap, "cannot install signal handlers");
		return -EIO;
	}
	m->signals = 1;
	if (fuse_session_mount(m->se, mp) != 0) {
		snprintf(err, errcap,
			 "cannot mount on %s (is /dev/fuse usable, fusermount3 "
			 "installed, and allow_other permitted in /etc/fuse.conf?)",
			 mp);
		return -EIO;
	}
	m->mounted = 1;
	snprintf(m->mp, sizeof(m->mp), "%s", mp);
	raise_readahead(mp);
	rc = inval_start(m->se, &m->inval);
	if (rc < 0) {
		snprintf(err, errcap, "cannot start the invalidation thread: %s",
			 strerror(-rc));
		return rc;
	}
	fsm_set_inval(m->fsm, m->inval);
	m->self_id = o->id;
	if (pthread_create(&m->chores, NULL, start_chores, m) == 0)
		m->chores_started = true;
	else
		LOG(WARN, "cannot start the start-up thread: orphans of a "
			  "previous run are not released");
	return 0;
}

/* Tell the waiting parent how it went: one 0 byte, or the message. */
static void notify_parent(int fd, const char *msg)
{
	if (fd < 0)
		return;
	ssize_t w = msg ? write(fd, msg, strlen(msg)) : write(fd, "", 1);
	(void)w;
	close(fd);
}

/* Parent side: wait for the child's verdict. */
static int wait_child(pid_t pid, int fd)
{
	char msg[1024];
	size_t n = 0;
	int waited = 0;
	while (n < sizeof(msg) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, 1000);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			waited += 1000;
			if (waited >= READY_TIMEOUT_MS) {
				fprintf(stderr,
					"sandfs mount: not ready after %d s; "
					"the daemon (pid %d) keeps trying, see "
					"its log\n",
					READY_TIMEOUT_MS / 1000, (int)pid);
				return 1;
			}
			continue;
		}
		ssize_t r = read(fd, msg + n, sizeof(msg) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (msg[0] == 0)
			return 0; /* ready */
	}
	msg[n] = 0;
	int st;
	waitpid(pid, &st, 0);
	if (n)
		fprintf(stderr, "sandfs mount: %s\n", msg);
	else
		fprintf(stderr, "sandfs mount: the daemon died before the mount "
				"was ready (see its log)\n");
	return 1;
}

/* Detach from the terminal once mounted. */
static void detach(void)
{
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (chdir("/") != 0)
		LOG(WARN, "chdir /: %s", strerror(errno));
}

static const char mount_help[] =
	"usage: sandfs mount [--id N] [--peers 1=HOST:PORT,...] [--data DIR]\n"
	"                    [-f] [-o OPTIONS] [OPTIONS] [MOUNTPOINT]\n\n"
	"Run a node and mount the filesystem at MOUNTPOINT (default: mountpoint "
	"=\nin the configuration file). Returns once the mount is ready; the "
	"node runs\nin the background and logs to DIR/sandfs.log (or --log "
	"FILE). `fusermount3 -u\nMOUNTPOINT` unmounts and stops it. A dead "
	"mount left at MOUNTPOINT by a node\nthat died is cleared first. "
	"SIGHUP reopens the log file.\n\n"
	"Mount options:\n"
	"  -f, --foreground      stay in the foreground (log to stderr unless "
	"--log)\n"
	"  -o OPT[,OPT...]       allow_other, ro, debug, log=PATH, "
	"timeout_ms=N,\n"
	"                        entry_timeout=SECONDS, lock_lease_ms=N, "
	"block_gc_ms=N,\n"
	"                        close_delay_ms=N, scrub_mb_s=N (the block "
	"scrub's\n"
	"                        rate, default 4, 0 off), scrub_interval_s=N,\n"
	"                        acl (default) or noacl; others go to FUSE. "
	"Added\n"
	"                        after mount-options = of the configuration "
	"file.\n\n" SFS_NODE_OPTS_HELP SFS_EXIT_HELP;

static int cmd_mount(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli;
	memset(&cli, 0, sizeof(cli));
	cli.help = mount_help;
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	const char *mpath = cli.n_rest == 1 ? cli.rest[0]
			    : cli.n_rest == 0 ? cli.mountpoint
					      : NULL;
	if (!mpath) {
		fprintf(stderr,
			"sandfs mount: want exactly one MOUNTPOINT%s (see sandfs "
			"mount --help)\n",
			cli.n_rest ? "" : " (or mountpoint = in the configuration "
					  "file)");
		return SFS_EXIT_USAGE;
	}
	struct mount_opts mo;
	if (parse_mount_opts(cli.mount_opts, &mo) != 0) {
		free(mo.copy);
		return SFS_EXIT_USAGE;
	}
	if (!mo.log_path)
		mo.log_path = cli.log_path;
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "node %llu", (unsigned long long)o.id);
	log_set_prefix(prefix);
	signal(SIGPIPE, SIG_IGN);

	char mp[PATH_MAX], err[3 * PATH_MAX] = "";
	if (check_mountpoint(mpath, mp, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandfs mount: %s\n", err);
		free(mo.copy);
		return 1;
	}

	int daemon = !cli.foreground;
	int pipefd[2] = {-1, -1};
	if (daemon) {
		if (pipe(pipefd) != 0) {
			perror("sandfs mount: pipe");
			free(mo.copy);
			return 1;
		}
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("sandfs mount: fork");
			free(mo.copy);
			return 1;
		}
		if (pid > 0) {
			close(pipefd[1]);
			int rc = wait_child(pid, pipefd[0]);
			close(pipefd[0]);
			free(mo.copy);
			return rc;
		}
		close(pipefd[0]);
	}

	/* Before any thread starts: they all inherit the mask, and the
	 * SIGHUP thread (bring_up) takes the signal. */
	sfs_hup_block();
	struct mounted m;
	memset(&m, 0, sizeof(m));
	atomic_init(&m.chores_stop, false);
	int rc = bring_up(&o, &mo, mp, &m, daemon, err, sizeof(err));
	if (rc < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-rc));
		LOG(ERROR, "mount failed: %s", err);
		if (!daemon)
			fprintf(stderr, "sandfs mount: %s\n", err);
		notify_parent(pipefd[1], err);
		teardown(&m);
		free(mo.copy);
		return 1;
	}
	LOG(INFO, "mounted at %s (data in %s)", mp, o.data_dir);
	if (daemon) {
		detach();
		notify_parent(pipefd[1], NULL);
	}
	struct fuse_loop_config lc = {.clone_fd = 0, .max_idle_threads = 16};
	rc = fuse_session_loop_mt(m.se, &lc);
	LOG(INFO, "unmounting %s (%s)", mp,
	    rc == 0 ? "unmounted" : rc > 0 ? "signal" : strerror(-rc));
	teardown(&m);
	free(mo.copy);
	return rc < 0 ? 1 : 0;
}

const struct sfs_cmd sfs_cmd_mount = {
	.name = "mount",
	.summary = "run a node and mount the filesystem",
	.help = mount_help,
	.run = cmd_mount,
};
