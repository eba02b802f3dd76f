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
	uint8_t secret[4096];
	size_t secret_len;
	const char *tls_cert, *tls_key, *tls_ca;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sandfs fsck --data DIR [--repair] [--json] "
	           "[--online | --offline]\n"
	           "                   [--id N --peers 1=HOST:PORT,... "
	           "[--secret-file F]\n"
	           "                    [--tls-cert PEM --tls-key PEM --tls-ca "
	           "PEM] [--cluster-id HEX]]\n"
	           "\n"
	           "Checks a node's inode table, block store and log. Through "
	           "the running node\n"
	           "when one runs on DIR (online), else on the stopped node's "
	           "directory\n"
	           "(offline). --repair fixes what is safe: blocks are fetched "
	           "again from a\n"
	           "peer (offline: give the node's --id and --peers), "
	           "unreferenced blocks are\n"
	           "dropped, and (online only) nlink, directory counts, "
	           "dangling entries and\n"
	           "reference counts are fixed through the log. Exit status: 0 "
	           "nothing left\n"
	           "wrong, 1 problems left or the check failed, 2 usage.\n");
}

static int read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	*len = fread(buf, 1, cap, f);
	fclose(f);
	while (*len && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r'))
		(*len)--;
	return *len ? 0 : -EINVAL;
}

/* 0, 1 (--help: done), or 2 (usage error, printed). */
static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"data", required_argument, NULL, 'd'},
	    {"repair", no_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"online", no_argument, NULL, 'N'},
	    {"offline", no_argument, NULL, 'F'},
	    {"id", required_argument, NULL, 'i'},
	    {"peers", required_argument, NULL, 'p'},
	    {"secret-file", required_argument, NULL, 's'},
	    {"cluster-id", required_argument, NULL, 'c'},
	    {"tls-cert", required_argument, NULL, 'C'},
	    {"tls-key", required_argument, NULL, 'K'},
	    {"tls-ca", required_argument, NULL, 'A'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *peers = NULL;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'd':
			o->data = optarg;
			break;
		case 'r':
			o->repair = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'N':
			o->online = true;
			break;
		case 'F':
			o->offline = true;
			break;
		case 'i':
			o->id = strtoull(optarg, &end, 10);
			if (!*optarg || *end || !o->id) {
				fprintf(
				    stderr,
				    "sandfs fsck: --id wants a number >= 1\n");
				return 2;
			}
			break;
		case 'p':
			peers = optarg;
			break;
		case 's': {
			int rc = read_secret(optarg, o->secret,
			                     sizeof(o->secret), &o->secret_len);
			if (rc) {
				fprintf(stderr,
				        "sandfs fsck: cannot read secret file "
				        "%s: %s\n",
				        optarg,
				        rc == -EINVAL ? "empty"
				                      : strerror(-rc));
				return 2;
			}
			break;
		}
		case 'c':
			o->cluster_id = strtoull(optarg, &end, 16);
			if (!*optarg || *end || !o->cluster_id) {
				fprintf(stderr, "sandfs fsck: --cluster-id "
				                "wants a nonzero hex number\n");
				return 2;
			}
			break;
		case 'C':
			o->tls_cert = optarg;
			break;
		case 'K':
			o->tls_key = optarg;
			break;
		case 'A':
			o->tls_ca = optarg;
			break;
		case 'l': {
			enum log_level lvl;
			if (log_parse_level(optarg, &lvl)) {
				fprintf(stderr,
				        "sandfs fsck: --log-level wants "
				        "error|warn|info|debug\n");
				return 2;
			}
			log_set_level(lvl);
			break;
		}
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			fprintf(stderr,
			        "sandfs fsck: option '%s' needs a value (see "
			        "sandfs fsck "
			        "--help)\n",
			        argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr,
			        "sandfs fsck: unknown option '%s' (see sandfs "
			        "fsck --help)\n",
			        argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr,
		        "sandfs fsck: unexpected argument '%s' (see sandfs "
		        "fsck --help)\n",
		        argv[optind]);
		return 2;
	}
	if (!o->data) {
		fprintf(stderr, "sandfs fsck: --data DIR is required (see "
		                "sandfs fsck --help)\n");
		return 2;
	}
	if (o->online && o->offline) {
		fprintf(
		    stderr,
		    "sandfs fsck: --online and --offline exclude each other\n");
		return 2;
	}
	if ((o->tls_cert || o->tls_key || o->tls_ca) &&
	    !(o->tls_cert && o->tls_key && o->tls_ca)) {
		fprintf(stderr, "sandfs fsck: TLS needs all of --tls-cert, "
		                "--tls-key and --tls-ca\n");
		return 2;
	}
	if (peers) {
		char err[256];
		if (node_parse_peers(peers, o->peers, RAFT_MAX_NODES,
		                     &o->n_peers, err, sizeof(err))) {
			fprintf(stderr, "sandfs fsck: %s\n", err);
			return 2;
		}
		bool self = false;
		for (size_t i = 0; i < o->n_peers; i++)
			self |= o->peers[i].id == o->id;
		if (!o->id || !self) {
			fprintf(stderr, "sandfs fsck: --peers needs --id, the "
			                "id of this node in "
			                "the list (fsck listens on its address "
			                "for the peers' "
			                "replies)\n");
			return 2;
		}
	} else if (o->id) {
		fprintf(stderr, "sandfs fsck: --id is only used with --peers "
		                "(to fetch blocks "
		                "offline)\n");
		return 2;
	}
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

/* See main.h. */
int sfs_cmd_fsck(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof(o));
	log_set_level(
	    LOG_LVL_WARN); /* the report speaks; --log-level for more */
	int prc = parse(argc, argv, &o);
	if (prc)
		return prc == 1 ? 0 : 2;
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
