/*
 * cmd_fsck.c — `sandfs fsck --data DIR [--repair] [--json] [--online |
 * --offline] [--id N --peers LIST [--secret-file F] [--tls-*]]`
 *
 * Where the check runs:
 *  - a node runs on DIR (it holds the directory's lock): online, inside
 *    that node, through its admin socket (fs/fsadm.c), without stopping
 *    it; this command starts the check, shows its progress and prints its
 *    report;
 *  - no node runs on DIR: offline, in this process, on the directory
 *    (locked meanwhile, so no node can start on it);
 *  - --online / --offline insist on one of the two and fail clearly when
 *    it is not possible (--offline refuses a directory a node runs on).
 *
 * Offline repair fetches blocks from the other nodes, which it reaches as
 * the stopped node itself would: give it the node's --id, --peers (and
 * --secret-file / TLS files); it listens on the node's address for their
 * replies. Without --peers, missing and corrupt blocks are reported with
 * that advice (a node that starts fetches what it lacks anyway).
 *
 * Output: the report on stdout (text, or JSON with --json), a progress bar
 * on stderr when stderr is a terminal, and the summary line (the last
 * line of the text report; on stderr with --json). Exit status: 0 nothing
 * left wrong (clean, or all repaired), 1 problems left or the check could
 * not run, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/be.h"
#include "fs/blkfetch.h"
#include "fs/cli.h"
#include "fs/digest.h"
#include "fs/fsck.h"
#include "fs/itab.h"
#include "fs/main.h"
#include "fs/node.h"
#include "storage/blk.h"
#include "storage/datadir.h"
#include "storage/rlog.h"
#include "transport/admin.h"
#include "transport/link.h"
#include "transport/log.h"

#define REPL_ENVELOPE    24 /* origin, seq, low: the replicator's entry header */
#define FETCH_TIMEOUT_MS 8000

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	g_interrupted++;
}

struct opts {
	const char *data;
	bool repair, json, online, offline;
	uint64_t id, cluster_id;
	struct repl_peer peers[RAFT_MAX_NODES];
	size_t n_peers;
	const uint8_t *secret;
	size_t secret_len;
	const char *tls_cert, *tls_key, *tls_ca;
	struct sfs_cli cli;  /* holds the strings above */
	struct sfs_cli full; /* ... and the secret, when parsed in full */
};

static const char fsck_help[] =
	"usage: sandfs fsck [--data DIR] [--repair] [--json] [--online | "
	"--offline]\n"
	"                   [--id N --peers 1=HOST:PORT,... [--secret-file F] "
	"...]\n\n"
	"Check a node: its inode table (nlink against the entries, entries "
	"naming\nlive inodes, no directory cycles, parent links, orphans), its "
	"blocks (every\nreferenced block stored and matching its SHA-256, "
	"reference counts against\nthe extents, unreferenced blocks) and its "
	"applied index against its log.\nWhen a node runs on DIR the check runs "
	"inside it, without stopping it\n(online); otherwise on the stopped "
	"node's directory (offline).\n\n"
	"Options:\n"
	"  --repair              fix what is safe: fetch missing and corrupt "
	"blocks\n"
	"                        from a peer, drop unreferenced blocks; online "
	"also\n"
	"                        nlink, directory counts, dangling entries and\n"
	"                        reference counts, through the Raft log "
	"(offline these\n"
	"                        are only reported: a change outside the log "
	"would\n"
	"                        set this replica apart)\n"
	"  --json                print the report as JSON (the summary line "
	"goes to\n"
	"                        stderr)\n"
	"  --online              only through a running node (fail if none "
	"runs)\n"
	"  --offline             only on a stopped node's directory (refuse a "
	"running\n"
	"                        one)\n"
	"  --id N, --peers LIST, --secret-file F, --tls-cert/--tls-key/--tls-ca,\n"
	"  --cluster-id HEX      offline --repair reaches the peers as the "
	"stopped node\n"
	"                        would (from the flags or the configuration "
	"file)\n"
	"  --data DIR            the node's data directory (default: data = in "
	"the\n"
	"                        configuration file; %i there needs --id)\n"
	"  --config FILE         configuration file (default\n"
	"                        " CONFIG_DEFAULT_PATH ")\n"
	"  --log-level LEVEL     error, warn (default), info or debug\n"
	"  -h, --help            this text\n"
	"\nExit status: 0 nothing left wrong (clean, or all repaired), 1 "
	"problems left\nor the check could not run, 2 usage error.\n";

/* Parse: fsck's own flags, then the shared node options (and the
 * configuration file) for the rest. 0, 1 (--help: done) or 2 (usage
 * error, printed). */
static int parse(int argc, char **argv, struct opts *o)
{
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	if (!rest)
		return 2;
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if (i > 0 && !strcmp(argv[i], "--"))
			break;
		if (i > 0 && !strcmp(argv[i], "--repair"))
			o->repair = true;
		else if (i > 0 && !strcmp(argv[i], "--online"))
			o->online = true;
		else if (i > 0 && !strcmp(argv[i], "--offline"))
			o->offline = true;
		else
			rest[n++] = argv[i];
	}
	struct node_opts no;
	o->cli.status_only = 1;
	o->cli.help = fsck_help;
	int prc = sfs_parse_node_opts(n, rest, &no, &o->cli);
	if (prc == 0 && o->cli.n_rest) {
		fprintf(stderr, "sandfs fsck: unexpected argument '%s' (see sandfs "
				"fsck --help)\n",
			o->cli.rest[0]);
		prc = -EINVAL;
	}
	if (prc == 0 && o->online && o->offline) {
		fprintf(stderr, "sandfs fsck: --online and --offline exclude each "
				"other\n");
		prc = -EINVAL;
	}
	/* Offline repair fetches from the peers: the full node options
	 * (id, secret, TLS), checked as `sandfs mount` checks them. */
	if (prc == 0 && o->repair && !o->online && no.n_peers) {
		o->full.status_only = 0;
		o->full.help = fsck_help;
		struct node_opts fo;
		const char *data = no.data_dir;
		prc = sfs_parse_node_opts(n, rest, &fo, &o->full);
		if (prc == 0) {
			no = fo;
			no.data_dir = data;
		}
	}
	free(rest);
	if (prc)
		return prc > 0 ? 1 : 2;
	o->data = no.data_dir;
	o->json = o->cli.json;
	o->id = no.id;
	o->cluster_id = no.cluster_id;
	memcpy(o->peers, no.peers, sizeof(no.peers));
	o->n_peers = no.n_peers;
	o->secret = no.secret;
	o->secret_len = no.secret_len;
	o->tls_cert = no.tls_cert;
	o->tls_key = no.tls_key;
	o->tls_ca = no.tls_ca;
	return 0;
}

/* ---- progress
 * ---------------------------------------------------------------- */

struct bar {
	bool on;
	double last;
	bool drawn;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bar_draw(struct bar *b, const char *phase, uint64_t done,
                     uint64_t total, bool force)
{
	if (!b->on)
		return;
	double t = now_s();
	if (!force && t - b->last < 0.1)
		return;
	b->last = t;
	char line[160];
	if (total) {
		if (done > total)
			done = total;
		int pct = (int)(done * 100 / total);
		char fill[31];
		int n = pct * 30 / 100;
		memset(fill, '#', (size_t)n);
		memset(fill + n, '.', (size_t)(30 - n));
		fill[30] = 0;
		snprintf(line, sizeof(line), "[%s] %3d%%  %s %llu/%llu", fill,
		         pct, phase, (unsigned long long)done,
		         (unsigned long long)total);
	} else {
		snprintf(line, sizeof(line),
		         "[..............................]       %s %llu",
		         phase, (unsigned long long)done);
	}
	fprintf(stderr, "\r\033[K%s", line);
	b->drawn = true;
}

static void bar_clear(struct bar *b)
{
	if (b->on && b->drawn)
		fprintf(stderr, "\r\033[K");
	b->drawn = false;
}

/* ---- online
 * ---------------------------------------------------------------------- */

/* One admin request; the reply as a NUL-terminated string (caller frees)
 * or NULL with the reason printed. */
static char *ask(const char *sock, const char *req, const char *data)
{
	uint8_t *reply = NULL;
	size_t rlen = 0;
	int rc = admin_call(sock, req, strlen(req), &reply, &rlen, 10000);
	if (rc < 0) {
		fprintf(stderr,
		        "sandfs fsck: the node on %s does not answer (%s)\n",
		        data, strerror(-rc));
		return NULL;
	}
	char *s = malloc(rlen + 1);
	if (s) {
		memcpy(s, reply, rlen);
		s[rlen] = 0;
	}
	free(reply);
	return s;
}

static int run_online(const struct opts *o, const char *sock)
{
	char *r =
	    ask(sock, o->repair ? "fsck start repair" : "fsck start", o->data);
	if (!r)
		return 1;
	if (!strncmp(r, "err unknown admin request", 25)) {
		fprintf(stderr,
		        "sandfs fsck: the node on %s runs `sandfs serve` (Raft "
		        "only, no "
		        "file system): there is nothing to check\n",
		        o->data);
		free(r);
		return 1;
	}
	unsigned long long job = 0;
	if (sscanf(r, "ok %llu", &job) != 1) {
		fprintf(stderr, "sandfs fsck: %s",
		        !strncmp(r, "err ", 4) ? r + 4 : r);
		free(r);
		return 1;
	}
	free(r);
	struct bar bar = {.on = isatty(2)};
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	bool cancelled = false;
	char req[64];
	for (;;) {
		if (g_interrupted && !cancelled) {
			snprintf(req, sizeof(req), "fsck cancel %llu", job);
			free(ask(sock, req, o->data));
			cancelled = true;
			bar_clear(&bar);
			fprintf(stderr, "sandfs fsck: cancelling the check "
			                "(Ctrl-C again to leave "
			                "at once)\n");
		}
		if (g_interrupted > 1)
			return 130;
		snprintf(req, sizeof(req), "fsck poll %llu %s", job,
		         o->json ? "json" : "text");
		r = ask(sock, req, o->data);
		if (!r)
			return 1;
		if (!strncmp(r, "running ", 8)) {
			char *phase = r + 8, *tab = strchr(phase, '\t');
			unsigned long long done = 0, total = 0;
			if (tab) {
				*tab = 0;
				sscanf(tab + 1, "%llu\t%llu", &done, &total);
			}
			bar_draw(&bar, phase, done, total, false);
			free(r);
			struct timespec ts = {0, 150000000};
			nanosleep(&ts, NULL);
			continue;
		}
		bar_clear(&bar);
		int status = 1;
		if (sscanf(r, "done %d", &status) != 1) {
			fprintf(stderr, "sandfs fsck: %s",
			        !strncmp(r, "err ", 4) ? r + 4 : r);
			free(r);
			return 1;
		}
		const char *report = strchr(r, '\n');
		report = report ? report + 1 : "";
		fputs(report, stdout);
		if (o->json) {
			/* the summary line on stderr: stdout stays one JSON
			 * object */
			const char *k = strstr(report, "\"summary\":\"");
			if (k) {
				k += 11;
				const char *e = strchr(k, '"');
				fprintf(stderr, "%.*s\n",
				        e ? (int)(e - k) : (int)strlen(k), k);
			}
		}
		free(r);
		return cancelled ? 1 : status;
	}
}

/* ---- offline
 * ----------------------------------------------------------------------- */

struct offline {
	struct bar bar;
	struct link *link;
	uint64_t peers[RAFT_MAX_NODES];
	size_t n_peers;
	struct blk_store *bs;
	uint8_t (*keep)[BLK_HASH_LEN]; /* blocks named by log entries not yet
	                                  applied */
	size_t n_keep, cap_keep;
};

static void off_progress(void *ctx, const char *phase, uint64_t done,
                         uint64_t total)
{
	struct offline *x = ctx;
	bar_draw(&x->bar, phase, done, total, done == 0);
}

static bool off_stopping(void *ctx)
{
	(void)ctx;
	return g_interrupted != 0;
}

static int off_fetch(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                     uint64_t *from)
{
	struct offline *x = ctx;
	return blkfetch(x->link, x->peers, x->n_peers, x->bs, hash,
	                FETCH_TIMEOUT_MS, from);
}

static bool off_keep(void *ctx, const uint8_t hash[BLK_HASH_LEN])
{
	struct offline *x = ctx;
	for (size_t i = 0; i < x->n_keep; i++)
		if (!memcmp(x->keep[i], hash, BLK_HASH_LEN))
			return true;
	return false;
}

/* The link fsck listens on for the peers' replies; other frames (Raft
 * traffic for the stopped node, requests) are dropped unanswered. */
static void off_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	(void)ctx, (void)from, (void)f;
}

/* The blocks that WRITE entries above the applied index name: a block the
 * table does not reference yet may be needed by the next start. */
static void keep_unapplied(struct offline *x, const struct rlog_entry *e,
                           size_t n, uint64_t applied)
{
	for (size_t i = 0; i < n; i++) {
		if (e[i].index <= applied || e[i].type != RAFT_ENTRY_NORMAL ||
		    e[i].len <= REPL_ENVELOPE)
			continue;
		struct itab_op op;
		if (itab_op_decode(e[i].data + REPL_ENVELOPE,
		                   e[i].len - REPL_ENVELOPE, &op))
			continue;
		for (size_t k = 0; op.code == ITAB_OP_WRITE && k < op.n_extents;
		     k++) {
			if (x->n_keep == x->cap_keep) {
				size_t cap = x->cap_keep ? x->cap_keep * 2 : 64;
				void *nk = realloc(x->keep, cap * BLK_HASH_LEN);
				if (!nk)
					break;
				x->keep = nk;
				x->cap_keep = cap;
			}
			memcpy(x->keep[x->n_keep++], op.extents[k].hash,
			       BLK_HASH_LEN);
		}
		itab_op_release(&op);
	}
}

/* Read the log: positions, whether it reads back, what is not applied. */
static void read_log(struct offline *x, const char *dir, uint64_t applied,
                     struct fsck_log *l)
{
	char path[4200], err[400] = "";
	snprintf(path, sizeof(path), "%s/raft", dir);
	struct rlog *rl;
	l->known = true;
	if (rlog_open(path, &rl, err, sizeof(err)) < 0) {
		snprintf(l->error, sizeof(l->error),
		         "the raft log cannot be opened: %s", err);
		return;
	}
	l->snap_index = rlog_snap_index(rl);
	l->last = rlog_last_index(rl);
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents = NULL;
	size_t n = 0;
	if (rlog_load(rl, &hs, &snap, &ents, &n, err, sizeof(err)) < 0) {
		snprintf(l->error, sizeof(l->error),
		         "the raft log does not read back: %s", err);
	} else {
		l->commit = hs.commit;
		keep_unapplied(x, ents, n, applied);
		rlog_entries_free(ents, n);
		rlog_snap_free(&snap);
	}
	rlog_close(rl);
	snprintf(path, sizeof(path), "%s/digest.state", dir);
	struct dsm *d;
	if (access(path, F_OK) == 0 && dsm_open(path, &d) == 0) {
		uint64_t count;
		uint8_t h[32];
		dsm_figures(d, &count, &l->digest_applied, h);
		l->digest_known = true;
		dsm_close(d);
	}
}

static int start_link(const struct opts *o, uint64_t cluster_id,
                      struct offline *x)
{
	const char *listen = NULL;
	for (size_t i = 0; i < o->n_peers; i++) {
		if (o->peers[i].id == o->id)
			listen = o->peers[i].addr;
		else
			x->peers[x->n_peers++] = o->peers[i].id;
	}
	struct link_cfg lc = {
	    .self_id = o->id,
	    .listen_addr = listen,
	    .cluster_id = o->cluster_id ? o->cluster_id : cluster_id,
	    .secret = o->secret_len ? o->secret : NULL,
	    .secret_len = o->secret_len,
	    .tls_cert = o->tls_cert,
	    .tls_key = o->tls_key,
	    .tls_ca = o->tls_ca,
	    .on_frame = off_frame,
	    .ctx = x,
	};
	char err[512];
	int rc = link_start(&lc, &x->link, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr,
		        "sandfs fsck: cannot reach the peers (%s); blocks "
		        "cannot be "
		        "fetched\n",
		        err);
		return rc;
	}
	for (size_t i = 0; i < o->n_peers; i++)
		if (o->peers[i].id != o->id)
			link_add_peer(x->link, o->peers[i].id,
			              o->peers[i].addr);
	return 0;
}

static int run_offline(const struct opts *o, struct ddir *dd)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/meta", o->data);
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr,
		        "sandfs fsck: %s has no inode table (%s): a node that "
		        "only ran "
		        "`sandfs serve` keeps no file system to check\n",
		        o->data, path);
		return 1;
	}
	struct itab *t;
	int rc = itab_open(path, NULL, &t);
	if (rc < 0) {
		fprintf(stderr,
		        "sandfs fsck: cannot open the inode table %s: %s\n",
		        path, strerror(-rc));
		return 1;
	}
	struct offline x = {.bar = {.on = isatty(2)}};
	snprintf(path, sizeof(path), "%s/blocks", o->data);
	char err[512];
	rc = blk_open(path, o->repair ? 0 : BLK_NO_CLEAN, &x.bs, err,
	              sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sandfs fsck: %s\n", err);
		itab_close(t);
		return 1;
	}
	uint64_t self = o->id;
	struct fsck_env env = {
	    .itab = t,
	    .bs = x.bs,
	    .self_id = self,
	    .online = false,
	    .repair = o->repair,
	    .grace_ms = 600000,
	    .keep_block = off_keep,
	    .progress = off_progress,
	    .stopping = off_stopping,
	    .ctx = &x,
	};
	read_log(&x, o->data, itab_applied_index(t), &env.log);
	if (o->repair && o->n_peers) {
		/* without the link the check still runs: blocks are then
		 * reported as not repaired, with the reason above */
		if (start_link(o, ddir_cluster_id(dd), &x) == 0)
			env.fetch = off_fetch;
	}
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct fsck_report rep;
	fsck_run(&env, &rep);
	bar_clear(&x.bar);
	char *out = fsck_render(&rep, o->json);
	if (out)
		fputs(out, stdout);
	free(out);
	if (o->json) {
		char *sum = fsck_summary(&rep);
		if (sum)
			fprintf(stderr, "%s\n", sum);
		free(sum);
	}
	int status = fsck_exit_status(&rep);
	fsck_report_free(&rep);
	if (x.link)
		link_stop(x.link);
	blk_close(x.bs);
	itab_close(t);
	free(x.keep);
	return status;
}

static int cmd_fsck(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof(o));
	log_set_level(LOG_LVL_WARN); /* the report speaks; --log-level for more */
	int prc = parse(argc, argv, &o);
	if (prc)
		return prc == 1 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	log_set_prefix("fsck");
	char path[4200];
	snprintf(path, sizeof(path), "%s/FORMAT", o.data);
	if (access(path, F_OK) != 0) {
		fprintf(
		    stderr,
		    "sandfs fsck: %s is not a sandfs data directory (%s: %s)\n",
		    o.data, path, strerror(errno));
		return 1;
	}
	char sock[4200];
	node_admin_path(o.data, sock, sizeof(sock));
	if (o.online)
		return run_online(&o, sock);
	/* The lock says whether a node runs on DIR (and keeps one from
	 * starting while the check runs). */
	struct ddir *dd;
	char err[1024];
	int rc = ddir_open(o.data, 0, &dd, err, sizeof(err));
	if (rc == -EBUSY) {
		if (o.offline) {
			fprintf(stderr,
			        "sandfs fsck: %s\nsandfs fsck: --offline needs "
			        "a stopped node; "
			        "without --offline the check runs through the "
			        "running node\n",
			        err);
			return 1;
		}
		if (o.n_peers)
			fprintf(stderr,
			        "sandfs fsck: a node runs on %s: checking "
			        "through it (the "
			        "node fetches from its peers itself; --peers "
			        "is not used)\n",
			        o.data);
		else
			fprintf(stderr,
			        "sandfs fsck: a node runs on %s: checking "
			        "through it\n",
			        o.data);
		return run_online(&o, sock);
	}
	if (rc < 0) {
		fprintf(stderr, "sandfs fsck: %s\n", err);
		return 1;
	}
	int status = run_offline(&o, dd);
	ddir_close(dd);
	return status;
}

const struct sfs_cmd sfs_cmd_fsck = {
	.name = "fsck",
	.summary = "check (and --repair) a node's table, blocks and log",
	.help = fsck_help,
	.run = cmd_fsck,
};
