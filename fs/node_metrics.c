/*
 * node_metrics.c — the node's metrics text (see node_metrics.h): Raft
 * state and counters from the replicator, transport counters per peer and
 * per request kind from its link, then every registered source.
 */
#include "fs/node_metrics.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/metrics_http.h"
#include "transport/link.h"
#include "transport/wire.h"

#define SOURCES_MAX 8

struct source {
	node_metrics_fn fn;
	void *ctx;
};

struct node_metrics {
	struct repl *repl;
	raft_id id;
	uint64_t cluster_id;
	struct metrics_http *http;
	pthread_mutex_t mu; /* guards src, n_src; held while collecting */
	struct source src[SOURCES_MAX];
	size_t n_src;
};

static char *http_body(void *ctx, size_t *len)
{
	return node_metrics_text(ctx, len);
}

/* See node_metrics.h. */
int node_metrics_start(struct repl *repl, raft_id id, uint64_t cluster_id,
		       const char *addr, struct node_metrics **out, char *err,
		       size_t errcap)
{
	struct node_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->repl = repl;
	m->id = id;
	m->cluster_id = cluster_id;
	pthread_mutex_init(&m->mu, NULL);
	if (addr) {
		int rc = metrics_http_start(addr, http_body, m, &m->http, err,
					    errcap);
		if (rc) {
			pthread_mutex_destroy(&m->mu);
			free(m);
			return rc;
		}
	}
	*out = m;
	return 0;
}

void node_metrics_stop(struct node_metrics *m)
{
	if (!m)
		return;
	metrics_http_stop(m->http);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

unsigned node_metrics_port(const struct node_metrics *m)
{
	return m && m->http ? metrics_http_port(m->http) : 0;
}

int node_metrics_add(struct node_metrics *m, node_metrics_fn fn, void *ctx)
{
	pthread_mutex_lock(&m->mu);
	int rc = -ENOSPC;
	if (m->n_src < SOURCES_MAX) {
		m->src[m->n_src++] = (struct source){fn, ctx};
		rc = 0;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void node_metrics_remove(struct node_metrics *m, node_metrics_fn fn, void *ctx)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n_src; i++)
		if (m->src[i].fn == fn && m->src[i].ctx == ctx) {
			m->src[i] = m->src[--m->n_src];
			break;
		}
	pthread_mutex_unlock(&m->mu);
}

/* ---- collection -------------------------------------------------------------- */

static void lat_snap(const struct repl_lat *l, struct metrics_hist_snap *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i <= METRICS_BUCKETS && i <= REPL_LAT_BUCKETS; i++)
		s->bucket[i] = l->bucket[i];
	s->count = l->count;
	s->sum_s = (double)l->sum_ns / 1e9;
}

static void gauge(struct metrics_out *o, const char *name, const char *help,
		  uint64_t v)
{
	metrics_family(o, name, "gauge", help);
	metrics_u64(o, name, NULL, v);
}

static void counter(struct metrics_out *o, const char *name, const char *help,
		    uint64_t v)
{
	metrics_family(o, name, "counter", help);
	metrics_u64(o, name, NULL, v);
}

static void hist(struct metrics_out *o, const char *name, const char *help,
		 const struct repl_lat *l)
{
	struct metrics_hist_snap s;
	lat_snap(l, &s);
	metrics_family(o, name, "histogram", help);
	metrics_hist_write(o, name, NULL, &s);
}

static void write_raft(struct node_metrics *m, struct metrics_out *o,
		       const struct repl_status *st)
{
	const struct raft_status *rs = &st->raft;
	char lb[160] = "", v[32];
	snprintf(v, sizeof(v), "%llu", (unsigned long long)m->id);
	metrics_label(lb, sizeof(lb), "node_id", v);
	snprintf(v, sizeof(v), "%016llx", (unsigned long long)m->cluster_id);
	metrics_label(lb, sizeof(lb), "cluster_id", v);
	metrics_family(o, "sandfs_node_info", "gauge",
		       "Always 1; the labels name this node and its cluster");
	metrics_u64(o, "sandfs_node_info", lb, 1);

	gauge(o, "sandfs_raft_term", "Current Raft term", rs->term);
	metrics_family(o, "sandfs_raft_role", "gauge",
		       "1 for the Raft role this node is in, 0 for the others");
	static const enum raft_role roles[] = {RAFT_FOLLOWER,
					       RAFT_PRE_CANDIDATE,
					       RAFT_CANDIDATE, RAFT_LEADER};
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		lb[0] = 0;
		metrics_label(lb, sizeof(lb), "role", raft_role_name(roles[i]));
		metrics_u64(o, "sandfs_raft_role", lb, rs->role == roles[i]);
	}
	gauge(o, "sandfs_raft_leader_id",
	      "Node id of the leader this node knows (0: none)", rs->leader);
	gauge(o, "sandfs_raft_commit_index", "Highest log index known committed",
	      rs->commit);
	gauge(o, "sandfs_raft_applied_index",
	      "Highest log index applied to the state machine here",
	      rs->applied);
	gauge(o, "sandfs_raft_durable_applied_index",
	      "Applied index the state machine last confirmed durable "
	      "(checked at log compaction)",
	      st->durable_applied);
	gauge(o, "sandfs_raft_apply_lag_entries",
	      "Committed entries not yet applied here (commit - applied)",
	      rs->commit > rs->applied ? rs->commit - rs->applied : 0);
	gauge(o, "sandfs_raft_last_log_index", "Last index in the local log",
	      rs->last_index);
	gauge(o, "sandfs_raft_first_log_index",
	      "First index still in the local log (older ones are compacted)",
	      rs->first_index);
	uint64_t voters = 0, learners = 0;
	for (uint32_t i = 0; i < rs->conf.n; i++) {
		if (rs->conf.nodes[i].role == RAFT_VOTER)
			voters++;
		else
			learners++;
	}
	gauge(o, "sandfs_raft_voters", "Voters in the configuration", voters);
	gauge(o, "sandfs_raft_learners", "Learners in the configuration",
	      learners);
	gauge(o, "sandfs_raft_peers_connected",
	      "Other members whose control connection is up",
	      st->peers_connected);
	gauge(o, "sandfs_raft_proposals_pending",
	      "Proposals of this node not yet applied here",
	      st->proposals_pending);
	if (rs->role == RAFT_LEADER) {
		metrics_family(o, "sandfs_raft_follower_lag_entries", "gauge",
			       "Leader only: entries each member still lacks "
			       "(last index - its match index)");
		for (uint32_t i = 0; i < rs->conf.n; i++) {
			if (rs->conf.nodes[i].id == m->id)
				continue;
			lb[0] = 0;
			snprintf(v, sizeof(v), "%llu",
				 (unsigned long long)rs->conf.nodes[i].id);
			metrics_label(lb, sizeof(lb), "peer", v);
			uint64_t mt = rs->match[i];
			metrics_u64(o, "sandfs_raft_follower_lag_entries", lb,
				    rs->last_index > mt ? rs->last_index - mt
							: 0);
		}
	}
	const struct raft_counters *c = &rs->counters;
	counter(o, "sandfs_raft_elections_total",
		"Elections this node started (its term raised)", c->elections);
	counter(o, "sandfs_raft_pre_votes_total",
		"Pre-vote rounds this node started", c->pre_votes);
	counter(o, "sandfs_raft_elections_won_total",
		"Times this node became leader", c->elections_won);
	counter(o, "sandfs_raft_snapshots_sent_total",
		"Snapshot transfers this node (as leader) began to a member",
		c->snapshots_sent);
	counter(o, "sandfs_raft_snapshot_chunks_sent_total",
		"InstallSnapshot chunks sent", c->snapshot_chunks_sent);
	counter(o, "sandfs_raft_snapshots_installed_total",
		"Snapshots received from a leader and installed here",
		c->snapshots_installed);
}

static void write_repl(struct metrics_out *o, const struct repl_counters *c)
{
	counter(o, "sandfs_raft_proposals_total",
		"Proposals made on this node and applied here", c->proposals);
	counter(o, "sandfs_raft_proposal_failures_total",
		"Proposals made on this node that failed (timeout, no memory, "
		"shutdown)",
		c->proposal_failures);
	hist(o, "sandfs_raft_proposal_duration_seconds",
	     "Time from a proposal on this node to its local apply (or "
	     "failure)",
	     &c->proposal_lat);
	counter(o, "sandfs_raft_read_barriers_total",
		"ReadIndex barriers passed (open, opendir, ...)", c->reads);
	counter(o, "sandfs_raft_read_barrier_failures_total",
		"ReadIndex barriers that timed out", c->read_failures);
	hist(o, "sandfs_raft_read_barrier_duration_seconds",
	     "Time a ReadIndex barrier took", &c->read_lat);
	counter(o, "sandfs_raft_log_syncs_total",
		"Synced writes of the Raft log (one per group commit)",
		c->persists);
	counter(o, "sandfs_raft_log_synced_entries_total",
		"Entries written by those syncs", c->persisted_entries);
	hist(o, "sandfs_raft_log_sync_duration_seconds",
	     "Time one synced log write took", &c->persist_lat);
	counter(o, "sandfs_raft_applied_entries_total",
		"Entries handed to the state machine", c->applied_entries);
}

static void kind_label(char *lb, size_t cap, uint16_t kind)
{
	char name[32];
	const char *k = wire_kind_name(kind);
	size_t i = 0;
	for (; k[i] && i + 1 < sizeof(name); i++)
		name[i] = (char)tolower((unsigned char)k[i]);
	name[i] = 0;
	lb[0] = 0;
	metrics_label(lb, cap, "kind", name);
}

static void write_transport(struct node_metrics *m, struct metrics_out *o,
			    const struct repl_status *st)
{
	struct link *l = repl_link(m->repl);
	const struct raft_conf *conf = &st->raft.conf;
	struct link_peer_stats ps[RAFT_MAX_NODES];
	bool have[RAFT_MAX_NODES] = {false};
	char lbs[RAFT_MAX_NODES][32];
	for (uint32_t i = 0; i < conf->n && i < RAFT_MAX_NODES; i++) {
		raft_id id = conf->nodes[i].id;
		if (id == m->id || link_stats(l, id, &ps[i]) != 0)
			continue;
		have[i] = true;
		char v[24];
		snprintf(v, sizeof(v), "%llu", (unsigned long long)id);
		lbs[i][0] = 0;
		metrics_label(lbs[i], sizeof(lbs[i]), "peer", v);
	}
#define PER_PEER(name, type, help, expr)                                       \
	do {                                                                   \
		metrics_family(o, name, type, help);                           \
		for (uint32_t i = 0; i < conf->n && i < RAFT_MAX_NODES; i++)   \
			if (have[i])                                           \
				metrics_u64(o, name, lbs[i], (expr));          \
	} while (0)
	PER_PEER("sandfs_transport_sent_bytes_total", "counter",
		 "Bytes of frames sent to each peer (both connections)",
		 ps[i].sent_bytes);
	PER_PEER("sandfs_transport_received_bytes_total", "counter",
		 "Bytes of verified frames received from each peer",
		 ps[i].recv_bytes);
	PER_PEER("sandfs_transport_sent_frames_total", "counter",
		 "Frames queued to each peer", ps[i].sent);
	PER_PEER("sandfs_transport_received_frames_total", "counter",
		 "Verified frames received from each peer", ps[i].recv_frames);
	PER_PEER("sandfs_transport_dropped_frames_total", "counter",
		 "Frames to each peer dropped because its send queue was full",
		 ps[i].dropped);
	PER_PEER("sandfs_transport_connections_total", "counter",
		 "Connections to each peer established (two lanes: control "
		 "and bulk)",
		 ps[i].connects);
	PER_PEER("sandfs_transport_reconnects_total", "counter",
		 "Connections to each peer established again after one was "
		 "lost",
		 (ps[i].lane[0].connects ? ps[i].lane[0].connects - 1 : 0) +
			 (ps[i].lane[1].connects ? ps[i].lane[1].connects - 1
						 : 0));
	PER_PEER("sandfs_transport_peer_connected", "gauge",
		 "1 while the control connection to each peer is up",
		 (uint64_t)ps[i].connected);
	PER_PEER("sandfs_transport_send_queue_frames", "gauge",
		 "Frames waiting to be sent to each peer",
		 ps[i].lane[0].queued + ps[i].lane[1].queued);
#undef PER_PEER
	struct link_rx_stats rx;
	link_rx_stats(l, &rx);
	counter(o, "sandfs_transport_rejected_frames_total",
		"Received frames dropped as malformed or unauthenticated (bad "
		"checksum or HMAC, wrong cluster, bad length)",
		rx.rejected);
	counter(o, "sandfs_transport_rejected_bytes_total",
		"Bytes of those frames", rx.rejected_bytes);
	counter(o, "sandfs_transport_stray_replies_total",
		"Replies that matched no waiting request (came too late)",
		rx.stray_replies);
	struct link_kind_stats ks[WIRE_KIND_MAX + 1];
	for (uint16_t k = 1; k <= WIRE_KIND_MAX; k++)
		if (link_kind_stats(l, k, &ks[k]) != 0)
			memset(&ks[k], 0, sizeof(ks[k]));
	char lb[64];
#define PER_KIND(name, help, field)                                          \
	do {                                                                 \
		metrics_family(o, name, "counter", help);                    \
		for (uint16_t k = 1; k <= WIRE_KIND_MAX; k++) {              \
			if (!ks[k].sent && !ks[k].received && !ks[k].failed) \
				continue;                                    \
			kind_label(lb, sizeof(lb), k);                       \
			metrics_u64(o, name, lb, ks[k].field);               \
		}                                                            \
	} while (0)
	PER_KIND("sandfs_transport_requests_sent_total",
		 "Requests sent to peers, by kind (block_get: block fetches, "
		 "block_put: block pushes)",
		 sent);
	PER_KIND("sandfs_transport_request_failures_total",
		 "Requests sent that got no answer (timeout, peer not "
		 "connected), by kind",
		 failed);
	PER_KIND("sandfs_transport_requests_received_total",
		 "Requests received from peers, by kind", received);
#undef PER_KIND
}

/* See node_metrics.h. */
char *node_metrics_text(struct node_metrics *m, size_t *len)
{
	struct metrics_out o = {0};
	struct repl_status st;
	struct repl_counters rc;
	repl_status(m->repl, &st);
	repl_counters(m->repl, &rc);
	write_raft(m, &o, &st);
	write_repl(&o, &rc);
	write_transport(m, &o, &st);
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n_src; i++)
		m->src[i].fn(m->src[i].ctx, &o);
	pthread_mutex_unlock(&m->mu);
	if (o.failed || !o.s) {
		free(o.s);
		return NULL;
	}
	if (len)
		*len = o.len;
	return o.s;
}
