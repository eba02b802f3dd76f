/*
 * cmd_stats.c — `sandfs stats MOUNTPOINT | --data DIR`: a live view of one
 * node, refreshed every --interval seconds (like top): FUSE requests per
 * second by kind with their p50/p99 latency, proposals per second and
 * their latency, apply lag, bytes in and out per peer, block fetches,
 * hash/CRC failures and rejected frames.
 *
 * The figures come from the node's admin socket ("metrics": the same
 * Prometheus text as --metrics), parsed strictly; rates and quantiles are
 * over the last interval (differences of two scrapes). --once takes two
 * scrapes one interval apart and prints one view; --json prints the view
 * as one JSON object (one per refresh without --once).
 *
 * A MOUNTPOINT is mapped to its node's data directory through
 * /proc/self/mountinfo: a mount's source is "sandfs:DATADIR" (mount.c).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs/cli.h"
#include "fs/main.h"
#include "fs/metrics.h"
#include "fs/node.h"
#include "transport/admin.h"

#define STATS_TIMEOUT_MS 5000
#define MAX_ROWS 64

static volatile sig_atomic_t g_stats_stop;

static void stats_on_signal(int sig)
{
	(void)sig;
	g_stats_stop = 1;
}

static const char stats_help[] =
	"usage: sandfs stats [MOUNTPOINT | --data DIR] [--once] [--json]\n"
	"                    [--interval SECONDS] [--count N]\n"
	"                    [--config FILE] [--id N]\n"
	"\n"
	"A live view of one node: FUSE requests per second by kind with\n"
	"their p50/p99 latency, proposals and their latency, apply lag,\n"
	"bytes in and out per peer, block fetches, hash/CRC failures.\n"
	"Rates and latencies are over the last interval (default 1 s).\n"
	"  --once      print one view (two samples one interval apart)\n"
	"  --json      print the view as JSON (one object per refresh)\n"
	"  --interval  seconds between refreshes (0.1 .. 3600)\n"
	"  --count N   stop after N refreshes\n"
	"Without MOUNTPOINT or --data: the data directory of the\n"
	"configuration file (--config FILE, or the default file; --id N\n"
	"when its data path holds %i).\n"
	"Exit status: 0 ok, 1 no node answers, 2 usage error.\n";

/* Undo mountinfo's octal escapes (\040 ...) in place. */
static void unescape(char *s)
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

/* The absolute form of path without touching it (a dead FUSE mount fails
 * stat): realpath when it works, else cwd + path with . and .. folded. */
static int abs_path(const char *path, char *out, size_t cap)
{
	char tmp[PATH_MAX];
	if (realpath(path, tmp)) {
		snprintf(out, cap, "%s", tmp);
		return 0;
	}
	char joined[2 * PATH_MAX];
	if (path[0] == '/') {
		snprintf(joined, sizeof(joined), "%s", path);
	} else {
		if (!getcwd(tmp, sizeof(tmp)))
			return -errno;
		snprintf(joined, sizeof(joined), "%s/%s", tmp, path);
	}
	char *parts[PATH_MAX / 2];
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(joined, "/", &save); t && n < PATH_MAX / 2;
	     t = strtok_r(NULL, "/", &save)) {
		if (!strcmp(t, "."))
			continue;
		if (!strcmp(t, "..")) {
			if (n)
				n--;
			continue;
		}
		parts[n++] = t;
	}
	size_t w = 0;
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		int k = snprintf(out + w, cap - w, "/%s", parts[i]);
		if (k < 0 || (size_t)k >= cap - w)
			return -ENAMETOOLONG;
		w += (size_t)k;
	}
	if (!n)
		snprintf(out, cap, "/");
	return 0;
}

/* The data directory of the sandfs mounted at mp, from the mount's
 * source "sandfs:DIR" in /proc/self/mountinfo (the last mount on mp
 * wins, as the kernel shows it). 0, or -ENOENT / -EINVAL with a reason. */
static int data_dir_of(const char *mp, char *out, size_t cap, char *err,
		       size_t errcap)
{
	char want[PATH_MAX];
	int rc = abs_path(mp, want, sizeof(want));
	if (rc) {
		snprintf(err, errcap, "%s: %s", mp, strerror(-rc));
		return rc;
	}
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f) {
		snprintf(err, errcap, "cannot read /proc/self/mountinfo: %s",
			 strerror(errno));
		return -errno;
	}
	char line[4 * PATH_MAX];
	bool found = false, plain = false, other = false;
	char fstype[64] = "";
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root point options... - type source super */
		char *save = NULL, *fld[5] = {0};
		char *dash = strstr(line, " - ");
		if (!dash)
			continue;
		*dash = 0;
		char *tail = dash + 3;
		int i = 0;
		for (char *t = strtok_r(line, " ", &save); t && i < 5;
		     t = strtok_r(NULL, " ", &save))
			fld[i++] = t;
		if (i < 5)
			continue;
		unescape(fld[4]);
		if (strcmp(fld[4], want))
			continue;
		char *type = strtok_r(tail, " ", &save);
		char *source = strtok_r(NULL, " \n", &save);
		if (!type || !source)
			continue;
		unescape(source);
		found = plain = other = false;
		snprintf(fstype, sizeof(fstype), "%s", type);
		if (strcmp(type, "fuse.sandfs")) {
			other = true;
			continue;
		}
		if (strncmp(source, "sandfs:/", 8)) {
			plain = true;
			continue;
		}
		snprintf(out, cap, "%s", source + 7);
		found = true;
	}
	fclose(f);
	if (found)
		return 0;
	if (plain)
		snprintf(err, errcap,
			 "%s is a sandfs mount that does not name its data "
			 "directory (a path with a comma or a space?); use "
			 "--data DIR",
			 want);
	else if (other)
		snprintf(err, errcap, "%s is a %s mount, not sandfs", want,
			 fstype);
	else
		snprintf(err, errcap,
			 "nothing is mounted on %s (give a sandfs mount point, "
			 "or --data DIR)",
			 want);
	return -ENOENT;
}

/* ---- samples --------------------------------------------------------------- */

struct sample {
	struct metrics_parsed p;
	double t; /* CLOCK_MONOTONIC seconds */
	time_t wall;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Ask the node for its metrics and parse them. */
static int take(const char *sock, struct sample *s, char *err, size_t errcap)
{
	uint8_t *reply = NULL;
	size_t rlen = 0;
	int rc = admin_call(sock, "metrics", 7, &reply, &rlen, STATS_TIMEOUT_MS);
	if (rc < 0) {
		snprintf(err, errcap, "no node answers on %s (%s)", sock,
			 strerror(-rc));
		return rc;
	}
	if (rlen >= 4 && !memcmp(reply, "err ", 4)) {
		size_t n = rlen - 4;
		while (n && reply[4 + n - 1] == '\n')
			n--;
		snprintf(err, errcap,
			 "the node does not serve metrics (%.*s); is it an "
			 "older sandfs?",
			 (int)(n > 200 ? 200 : n), (char *)reply + 4);
		free(reply);
		return -EPROTO;
	}
	char why[256];
	rc = metrics_parse((const char *)reply, rlen, &s->p, why, sizeof(why));
	free(reply);
	if (rc) {
		metrics_parsed_free(&s->p);
		snprintf(err, errcap, "the node's metrics do not parse: %s", why);
		return rc;
	}
	s->t = mono_s();
	s->wall = time(NULL);
	return 0;
}

/* Value of name{labels} (NAN when absent). */
static double val(const struct sample *s, const char *name, const char *labels)
{
	const struct metrics_sample *x = metrics_find(&s->p, name, labels);
	return x ? x->value : NAN;
}

/* Rate of counter name{labels} between a and b (per second; NAN without
 * both values; a counter that went back (restart) counts from 0). */
static double rate(const struct sample *a, const struct sample *b,
		   const char *name, const char *labels)
{
	double va = val(a, name, labels), vb = val(b, name, labels);
	double dt = b->t - a->t;
	if (isnan(vb) || dt <= 0)
		return NAN;
	if (isnan(va) || vb < va)
		va = 0;
	return (vb - va) / dt;
}

/* p50 and p99 (seconds, -1 when nothing happened) of histogram name with
 * label text base over the interval, and since the start. */
struct quant {
	double p50, p99, all50, all99;
	uint64_t n; /* observations in the interval */
};

static void quantiles(const struct sample *a, const struct sample *b,
		      const char *name, const char *base, struct quant *q)
{
	struct metrics_hist_snap ha, hb, d;
	q->p50 = q->p99 = q->all50 = q->all99 = -1;
	q->n = 0;
	if (metrics_hist_from(&b->p, name, base, &hb) != 0)
		return;
	q->all50 = metrics_hist_quantile(&hb, 0.5);
	q->all99 = metrics_hist_quantile(&hb, 0.99);
	if (metrics_hist_from(&a->p, name, base, &ha) != 0)
		memset(&ha, 0, sizeof(ha));
	metrics_hist_sub(&hb, &ha, &d);
	q->n = d.count;
	q->p50 = metrics_hist_quantile(&d, 0.5);
	q->p99 = metrics_hist_quantile(&d, 0.99);
}

/* ---- the view ------------------------------------------------------------------- */

struct op_row {
	char op[32];
	double total, per_s, errors, err_per_s;
	struct quant q;
};

struct peer_row {
	char id[24];
	double in_total, out_total, in_s, out_s, reconnects, dropped;
	double lag; /* leader only: entries the peer lacks (NAN elsewhere) */
	int connected; /* -1 unknown */
};

struct view {
	char node[24], cluster[32], role[24];
	double dt;
	double term, leader, commit, applied, lag, last_index;
	double proposals, proposals_s, proposal_failures, elections;
	double snaps_sent, snaps_installed, reads_s;
	struct quant prop;
	bool fuse;
	struct op_row ops[MAX_ROWS];
	size_t n_ops;
	struct peer_row peers[MAX_ROWS];
	size_t n_peers;
	bool blocks;
	double stored, stored_bytes, fetches, fetches_s, fetch_failures;
	double crc_fail, sha_fail, rejected, rejected_s;
	bool scrub; /* the node reports a scrub (a mount) */
	double sc_on, sc_running, sc_done, sc_total, sc_passes, sc_corrupt,
	    sc_repaired, sc_unrepaired, sc_rate;
	time_t wall;
};

static int cmp_ops(const void *x, const void *y)
{
	const struct op_row *a = x, *b = y;
	if (a->per_s != b->per_s)
		return a->per_s < b->per_s ? 1 : -1;
	if (a->total != b->total)
		return a->total < b->total ? 1 : -1;
	return strcmp(a->op, b->op);
}

static void build(const struct sample *a, const struct sample *b,
		  struct view *v)
{
	memset(v, 0, sizeof(*v));
	v->dt = b->t - a->t;
	v->wall = b->wall;
	snprintf(v->role, sizeof(v->role), "?");
	for (size_t i = 0; i < b->p.n; i++) {
		const struct metrics_sample *x = &b->p.v[i];
		if (!strcmp(x->name, "sandfs_node_info")) {
			metrics_label_value(x->labels, "node_id", v->node,
					    sizeof(v->node));
			metrics_label_value(x->labels, "cluster_id", v->cluster,
					    sizeof(v->cluster));
		} else if (!strcmp(x->name, "sandfs_raft_role") &&
			   x->value == 1) {
			metrics_label_value(x->labels, "role", v->role,
					    sizeof(v->role));
		}
	}
	v->term = val(b, "sandfs_raft_term", NULL);
	v->leader = val(b, "sandfs_raft_leader_id", NULL);
	v->commit = val(b, "sandfs_raft_commit_index", NULL);
	v->applied = val(b, "sandfs_raft_applied_index", NULL);
	v->lag = val(b, "sandfs_raft_apply_lag_entries", NULL);
	v->last_index = val(b, "sandfs_raft_last_log_index", NULL);
	v->proposals = val(b, "sandfs_raft_proposals_total", NULL);
	v->proposals_s = rate(a, b, "sandfs_raft_proposals_total", NULL);
	v->proposal_failures = val(b, "sandfs_raft_proposal_failures_total",
				   NULL);
	v->elections = val(b, "sandfs_raft_elections_total", NULL);
	v->snaps_sent = val(b, "sandfs_raft_snapshots_sent_total", NULL);
	v->snaps_installed = val(b, "sandfs_raft_snapshots_installed_total",
				 NULL);
	v->reads_s = rate(a, b, "sandfs_raft_read_barriers_total", NULL);
	quantiles(a, b, "sandfs_raft_proposal_duration_seconds", "", &v->prop);
	v->rejected = val(b, "sandfs_transport_rejected_frames_total", NULL);
	v->rejected_s = rate(a, b, "sandfs_transport_rejected_frames_total",
			     NULL);

	v->fuse = metrics_find(&b->p, "sandfs_fuse_ops_untimed_total", NULL);
	for (size_t i = 0; i < b->p.n && v->n_ops < MAX_ROWS; i++) {
		const struct metrics_sample *x = &b->p.v[i];
		if (strcmp(x->name, "sandfs_fuse_ops_total"))
			continue;
		struct op_row *r = &v->ops[v->n_ops];
		if (metrics_label_value(x->labels, "op", r->op, sizeof(r->op)))
			continue;
		r->total = x->value;
		r->per_s = rate(a, b, "sandfs_fuse_ops_total", x->labels);
		r->errors = val(b, "sandfs_fuse_op_errors_total", x->labels);
		r->err_per_s = rate(a, b, "sandfs_fuse_op_errors_total",
				    x->labels);
		quantiles(a, b, "sandfs_fuse_op_duration_seconds", x->labels,
			  &r->q);
		v->n_ops++;
	}
	qsort(v->ops, v->n_ops, sizeof(v->ops[0]), cmp_ops);

	for (size_t i = 0; i < b->p.n && v->n_peers < MAX_ROWS; i++) {
		const struct metrics_sample *x = &b->p.v[i];
		if (strcmp(x->name, "sandfs_transport_sent_bytes_total"))
			continue;
		struct peer_row *r = &v->peers[v->n_peers];
		if (metrics_label_value(x->labels, "peer", r->id, sizeof(r->id)))
			continue;
		const char *lb = x->labels;
		r->out_total = x->value;
		r->in_total = val(b, "sandfs_transport_received_bytes_total", lb);
		r->out_s = rate(a, b, "sandfs_transport_sent_bytes_total", lb);
		r->in_s = rate(a, b, "sandfs_transport_received_bytes_total", lb);
		r->reconnects = val(b, "sandfs_transport_reconnects_total", lb);
		r->dropped = val(b, "sandfs_transport_dropped_frames_total", lb);
		r->lag = val(b, "sandfs_raft_follower_lag_entries", lb);
		double c = val(b, "sandfs_transport_peer_connected", lb);
		r->connected = isnan(c) ? -1 : c == 1;
		v->n_peers++;
	}

	v->blocks = metrics_find(&b->p, "sandfs_blocks_stored", NULL);
	v->stored = val(b, "sandfs_blocks_stored", NULL);
	v->stored_bytes = val(b, "sandfs_blocks_stored_bytes", NULL);
	v->fetches = val(b, "sandfs_block_fetches_total", NULL);
	v->fetches_s = rate(a, b, "sandfs_block_fetches_total", NULL);
	v->fetch_failures = val(b, "sandfs_block_fetch_failures_total", NULL);
	v->crc_fail = val(b, "sandfs_block_verification_failures_total",
			  "check=\"crc32c\"");
	v->sha_fail = val(b, "sandfs_block_verification_failures_total",
			  "check=\"sha256\"");
	v->scrub = metrics_find(&b->p, "sandfs_scrub_enabled", NULL);
	v->sc_on = val(b, "sandfs_scrub_enabled", NULL);
	v->sc_rate = val(b, "sandfs_scrub_rate_limit_bytes_per_second", NULL);
	v->sc_running = val(b, "sandfs_scrub_running", NULL);
	v->sc_done = val(b, "sandfs_scrub_pass_checked_blocks", NULL);
	v->sc_total = val(b, "sandfs_scrub_pass_blocks", NULL);
	v->sc_passes = val(b, "sandfs_scrub_passes_total", NULL);
	v->sc_corrupt = val(b, "sandfs_scrub_corrupt_blocks_total", NULL);
	v->sc_repaired = val(b, "sandfs_scrub_repaired_blocks_total", NULL);
	v->sc_unrepaired = val(b, "sandfs_scrub_unrepaired_blocks_total", NULL);
}

/* ---- text ------------------------------------------------------------------------ */

static const char *fmt_dur(double s, char *buf, size_t cap)
{
	if (s < 0 || isnan(s))
		snprintf(buf, cap, "-");
	else if (s < 1e-3)
		snprintf(buf, cap, "%.0f us", s * 1e6);
	else if (s < 1)
		snprintf(buf, cap, "%.2f ms", s * 1e3);
	else
		snprintf(buf, cap, "%.2f s", s);
	return buf;
}

static const char *fmt_bytes(double b, char *buf, size_t cap)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	if (isnan(b)) {
		snprintf(buf, cap, "-");
		return buf;
	}
	int u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
	return buf;
}

static const char *fmt_num(double x, const char *f, char *buf, size_t cap)
{
	if (isnan(x))
		snprintf(buf, cap, "-");
	else
		snprintf(buf, cap, f, x);
	return buf;
}

static void print_text(FILE *o, const struct view *v, double interval)
{
	char a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32];
	struct tm tm;
	localtime_r(&v->wall, &tm);
	char when[16];
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	fprintf(o, "sandfs stats: node %s (%s, term %s, leader %s), cluster %s, "
		   "every %.1f s, %s\n",
		v->node[0] ? v->node : "?", v->role,
		fmt_num(v->term, "%.0f", a, sizeof a),
		fmt_num(v->leader, "%.0f", b, sizeof b),
		v->cluster[0] ? v->cluster : "?", interval, when);
	fprintf(o, "raft     commit %s  applied %s  apply lag %s  proposals "
		   "%s/s  p50 %s  p99 %s  failed %s  elections %s\n",
		fmt_num(v->commit, "%.0f", a, sizeof a),
		fmt_num(v->applied, "%.0f", b, sizeof b),
		fmt_num(v->lag, "%.0f", c, sizeof c),
		fmt_num(v->proposals_s, "%.1f", d, sizeof d),
		fmt_dur(v->prop.p50, e, sizeof e),
		fmt_dur(v->prop.p99, f, sizeof f),
		fmt_num(v->proposal_failures, "%.0f", g, sizeof g),
		fmt_num(v->elections, "%.0f", h, sizeof h));
	if (v->blocks)
		fprintf(o, "blocks   stored %s (%s)  fetched %s/s (%s in all, %s "
			   "failed)  CRC failures %s  SHA-256 failures %s\n",
			fmt_num(v->stored, "%.0f", a, sizeof a),
			fmt_bytes(v->stored_bytes, b, sizeof b),
			fmt_num(v->fetches_s, "%.1f", c, sizeof c),
			fmt_num(v->fetches, "%.0f", d, sizeof d),
			fmt_num(v->fetch_failures, "%.0f", e, sizeof e),
			fmt_num(v->crc_fail, "%.0f", f, sizeof f),
			fmt_num(v->sha_fail, "%.0f", g, sizeof g));
	if (v->scrub && v->sc_on == 1)
		fprintf(o, "scrub    %s, pass %s of %s blocks, %s passes done, "
			   "%s corrupt found (%s repaired, %s not)\n",
			v->sc_running == 1 ? "running" : "waiting",
			fmt_num(v->sc_done, "%.0f", a, sizeof a),
			fmt_num(v->sc_total, "%.0f", b, sizeof b),
			fmt_num(v->sc_passes, "%.0f", c, sizeof c),
			fmt_num(v->sc_corrupt, "%.0f", d, sizeof d),
			fmt_num(v->sc_repaired, "%.0f", e, sizeof e),
			fmt_num(v->sc_unrepaired, "%.0f", f, sizeof f));
	else if (v->scrub)
		fprintf(o, "scrub    off\n");
	fprintf(o, "frames   rejected %s (%s/s)\n",
		fmt_num(v->rejected, "%.0f", a, sizeof a),
		fmt_num(v->rejected_s, "%.1f", b, sizeof b));
	fprintf(o, "\n%-6s %-5s %12s %12s %12s %12s %11s %8s %8s\n", "peer",
		"link", "in/s", "out/s", "in total", "out total", "reconnects",
		"dropped", "log lag");
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct peer_row *r = &v->peers[i];
		fprintf(o, "%-6s %-5s %12s %12s %12s %12s %11s %8s %8s\n", r->id,
			r->connected < 0 ? "?" : r->connected ? "up" : "down",
			fmt_bytes(r->in_s, a, sizeof a),
			fmt_bytes(r->out_s, b, sizeof b),
			fmt_bytes(r->in_total, c, sizeof c),
			fmt_bytes(r->out_total, d, sizeof d),
			fmt_num(r->reconnects, "%.0f", e, sizeof e),
			fmt_num(r->dropped, "%.0f", f, sizeof f),
			fmt_num(r->lag, "%.0f", g, sizeof g));
	}
	if (!v->n_peers)
		fprintf(o, "(no other members)\n");
	if (!v->fuse) {
		fprintf(o, "\n(no FUSE mount on this node: `sandfs serve`)\n");
		return;
	}
	fprintf(o, "\n%-13s %10s %10s %10s %10s %12s\n", "FUSE request",
		"per s", "errors/s", "p50", "p99", "total");
	for (size_t i = 0; i < v->n_ops; i++) {
		const struct op_row *r = &v->ops[i];
		fprintf(o, "%-13s %10s %10s %10s %10s %12s\n", r->op,
			fmt_num(r->per_s, "%.1f", a, sizeof a),
			fmt_num(r->err_per_s, "%.1f", b, sizeof b),
			fmt_dur(r->q.p50, c, sizeof c),
			fmt_dur(r->q.p99, d, sizeof d),
			fmt_num(r->total, "%.0f", e, sizeof e));
	}
	if (!v->n_ops)
		fprintf(o, "(no requests yet)\n");
}

/* ---- JSON ------------------------------------------------------------------------- */

static void jnum(struct metrics_out *o, const char *key, double x, bool comma)
{
	if (isnan(x) || isinf(x))
		metrics_printf(o, "%s\"%s\":null", comma ? "," : "", key);
	else if (x == floor(x) && fabs(x) < 9e15)
		metrics_printf(o, "%s\"%s\":%.0f", comma ? "," : "", key, x);
	else
		metrics_printf(o, "%s\"%s\":%.6g", comma ? "," : "", key, x);
}

/* Milliseconds, null when nothing was measured. */
static void jms(struct metrics_out *o, const char *key, double s)
{
	jnum(o, key, s < 0 ? NAN : s * 1e3, true);
}

/* A JSON string of our own labels (no quotes or controls in them, but
 * escape anyway). */
static void jstr(struct metrics_out *o, const char *key, const char *s,
		 bool comma)
{
	metrics_printf(o, "%s\"%s\":\"", comma ? "," : "", key);
	for (const char *p = s; *p; p++) {
		if (*p == '"' || *p == '\\')
			metrics_printf(o, "\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			metrics_printf(o, "\\u%04x", (unsigned char)*p);
		else
			metrics_printf(o, "%c", *p);
	}
	metrics_printf(o, "\"");
}

static void print_json(FILE *f, const struct view *v)
{
	struct metrics_out o = {0};
	metrics_printf(&o, "{");
	jnum(&o, "node", v->node[0] ? strtod(v->node, NULL) : NAN, false);
	jstr(&o, "cluster_id", v->cluster, true);
	jstr(&o, "role", v->role, true);
	jnum(&o, "term", v->term, true);
	jnum(&o, "leader", v->leader, true);
	jnum(&o, "interval_s", v->dt, true);
	jnum(&o, "time", (double)v->wall, true);
	metrics_printf(&o, ",\"raft\":{");
	jnum(&o, "commit", v->commit, false);
	jnum(&o, "applied", v->applied, true);
	jnum(&o, "apply_lag", v->lag, true);
	jnum(&o, "last_index", v->last_index, true);
	jnum(&o, "proposals_total", v->proposals, true);
	jnum(&o, "proposals_per_s", v->proposals_s, true);
	jnum(&o, "proposal_failures_total", v->proposal_failures, true);
	jms(&o, "proposal_p50_ms", v->prop.p50);
	jms(&o, "proposal_p99_ms", v->prop.p99);
	jms(&o, "proposal_p50_ms_all", v->prop.all50);
	jms(&o, "proposal_p99_ms_all", v->prop.all99);
	jnum(&o, "read_barriers_per_s", v->reads_s, true);
	jnum(&o, "elections_total", v->elections, true);
	jnum(&o, "snapshots_sent_total", v->snaps_sent, true);
	jnum(&o, "snapshots_installed_total", v->snaps_installed, true);
	metrics_printf(&o, "},\"transport\":{");
	jnum(&o, "rejected_frames_total", v->rejected, false);
	jnum(&o, "rejected_frames_per_s", v->rejected_s, true);
	metrics_printf(&o, "},\"peers\":[");
	for (size_t i = 0; i < v->n_peers; i++) {
		const struct peer_row *r = &v->peers[i];
		metrics_printf(&o, "%s{", i ? "," : "");
		jnum(&o, "id", strtod(r->id, NULL), false);
		if (r->connected < 0)
			metrics_printf(&o, ",\"connected\":null");
		else
			metrics_printf(&o, ",\"connected\":%s",
				       r->connected ? "true" : "false");
		jnum(&o, "bytes_in_total", r->in_total, true);
		jnum(&o, "bytes_out_total", r->out_total, true);
		jnum(&o, "bytes_in_per_s", r->in_s, true);
		jnum(&o, "bytes_out_per_s", r->out_s, true);
		jnum(&o, "reconnects_total", r->reconnects, true);
		jnum(&o, "dropped_frames_total", r->dropped, true);
		jnum(&o, "log_lag_entries", r->lag, true);
		metrics_printf(&o, "}");
	}
	metrics_printf(&o, "]");
	if (v->fuse) {
		metrics_printf(&o, ",\"fuse\":{");
		for (size_t i = 0; i < v->n_ops; i++) {
			const struct op_row *r = &v->ops[i];
			metrics_printf(&o, "%s\"%s\":{", i ? "," : "", r->op);
			jnum(&o, "total", r->total, false);
			jnum(&o, "per_s", r->per_s, true);
			jnum(&o, "errors_total", r->errors, true);
			jnum(&o, "errors_per_s", r->err_per_s, true);
			jms(&o, "p50_ms", r->q.p50);
			jms(&o, "p99_ms", r->q.p99);
			jms(&o, "p50_ms_all", r->q.all50);
			jms(&o, "p99_ms_all", r->q.all99);
			metrics_printf(&o, "}");
		}
		metrics_printf(&o, "}");
	} else {
		metrics_printf(&o, ",\"fuse\":null");
	}
	if (v->blocks) {
		metrics_printf(&o, ",\"blocks\":{");
		jnum(&o, "stored", v->stored, false);
		jnum(&o, "stored_bytes", v->stored_bytes, true);
		jnum(&o, "fetches_total", v->fetches, true);
		jnum(&o, "fetches_per_s", v->fetches_s, true);
		jnum(&o, "fetch_failures_total", v->fetch_failures, true);
		jnum(&o, "crc_failures_total", v->crc_fail, true);
		jnum(&o, "sha256_failures_total", v->sha_fail, true);
		metrics_printf(&o, "}");
	} else {
		metrics_printf(&o, ",\"blocks\":null");
	}
	if (v->scrub) {
		metrics_printf(&o, ",\"scrub\":{\"enabled\":%s,\"running\":%s",
			       v->sc_on == 1 ? "true" : "false",
			       v->sc_running == 1 ? "true" : "false");
		jnum(&o, "rate_limit_bytes_per_s", v->sc_rate, true);
		jnum(&o, "pass_checked_blocks", v->sc_done, true);
		jnum(&o, "pass_blocks", v->sc_total, true);
		jnum(&o, "passes_total", v->sc_passes, true);
		jnum(&o, "corrupt_total", v->sc_corrupt, true);
		jnum(&o, "repaired_total", v->sc_repaired, true);
		jnum(&o, "unrepaired_total", v->sc_unrepaired, true);
		metrics_printf(&o, "}");
	} else {
		metrics_printf(&o, ",\"scrub\":null");
	}
	metrics_printf(&o, "}\n");
	if (!o.failed)
		fputs(o.s, f);
	free(o.s);
	fflush(f);
}

/* ---- the command ------------------------------------------------------------------- */

/* Sleep up to secs, waking early on a signal. */
static void nap(double secs)
{
	double end = mono_s() + secs;
	while (!g_stats_stop) {
		double left = end - mono_s();
		if (left <= 0)
			break;
		struct timespec ts = {.tv_sec = (time_t)left,
				      .tv_nsec = (long)((left - floor(left)) *
							1e9)};
		nanosleep(&ts, NULL);
	}
}

static int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"data", required_argument, NULL, 'd'},
		{"once", no_argument, NULL, '1'},
		{"json", no_argument, NULL, 'j'},
		{"interval", required_argument, NULL, 'i'},
		{"count", required_argument, NULL, 'n'},
		{"config", required_argument, NULL, 'F'},
		{"id", required_argument, NULL, 'I'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *data = NULL, *config = NULL, *id = NULL;
	bool once = false, json = false;
	double interval = 1.0;
	long count = 0;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'd':
			data = optarg;
			break;
		case 'F':
			config = optarg;
			break;
		case 'I':
			id = optarg;
			break;
		case '1':
			once = true;
			break;
		case 'j':
			json = true;
			break;
		case 'i':
			interval = strtod(optarg, &end);
			if (!*optarg || *end || !(interval >= 0.1) ||
			    interval > 3600) {
				fprintf(stderr, "sandfs stats: --interval wants "
						"seconds, 0.1 .. 3600\n");
				return 2;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (!*optarg || *end || count < 1) {
				fprintf(stderr, "sandfs stats: --count wants a "
						"number >= 1\n");
				return 2;
			}
			break;
		case 'h':
			fputs(stats_help, stdout);
			return 0;
		case ':':
			fprintf(stderr, "sandfs stats: option '%s' needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr,
				"sandfs stats: unknown option '%s' (see sandfs "
				"stats --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	int rest = argc - optind;
	if ((data && rest) || rest > 1) {
		fprintf(stderr, "sandfs stats: give either a MOUNTPOINT or "
				"--data DIR\n");
		fputs(stats_help, stderr);
		return 2;
	}
	char dir[PATH_MAX], err[PATH_MAX + 256];
	/* Neither: the configuration file's data directory, as for the
	 * other commands that talk to a node. */
	struct node_opts no;
	struct sfs_cli *cli = NULL;
	if (!data && !rest) {
		cli = calloc(1, sizeof(*cli));
		if (!cli)
			return 1;
		cli->status_only = 1;
		cli->help = stats_help;
		char *av[6] = {"stats"};
		int ac = 1;
		if (config) {
			av[ac++] = "--config";
			av[ac++] = (char *)config;
		}
		if (id) {
			av[ac++] = "--id";
			av[ac++] = (char *)id;
		}
		int prc = sfs_parse_node_opts(ac, av, &no, cli);
		if (prc != 0) {
			free(cli);
			return prc > 0 ? 0 : 2;
		}
		snprintf(dir, sizeof(dir), "%s", no.data_dir);
		free(cli);
		data = dir;
	}
	if (!data) {
		if (data_dir_of(argv[optind], dir, sizeof(dir), err,
				sizeof(err)) != 0) {
			fprintf(stderr, "sandfs stats: %s\n", err);
			return 1;
		}
		data = dir;
	}
	char sock[PATH_MAX + 32];
	node_admin_path(data, sock, sizeof(sock));
	if (once)
		count = 1;

	struct sigaction sa = {.sa_handler = stats_on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	bool tty = !json && isatty(STDOUT_FILENO);

	struct sample prev, cur;
	if (take(sock, &prev, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandfs stats: %s; is a node running with "
				"--data %s?\n",
			err, data);
		return 1;
	}
	int rc = 0;
	for (long shown = 0; !g_stats_stop && (!count || shown < count);
	     shown++) {
		nap(interval);
		if (g_stats_stop)
			break;
		if (take(sock, &cur, err, sizeof(err)) != 0) {
			fprintf(stderr, "sandfs stats: %s\n", err);
			rc = 1;
			break;
		}
		struct view *v = malloc(sizeof(*v));
		if (!v) {
			metrics_parsed_free(&cur.p);
			rc = 1;
			break;
		}
		build(&prev, &cur, v);
		if (json) {
			print_json(stdout, v);
		} else {
			if (tty)
				fputs("\033[H\033[J", stdout);
			else if (shown)
				fputc('\n', stdout);
			print_text(stdout, v, interval);
			fflush(stdout);
		}
		free(v);
		metrics_parsed_free(&prev.p);
		prev = cur;
	}
	metrics_parsed_free(&prev.p);
	return rc;
}

const struct sfs_cmd sfs_cmd_stats = {
	.name = "stats",
	.summary = "live view of one node: requests, latencies, peers",
	.help = stats_help,
	.run = cmd_stats,
};
