/*
 * snapshot.c — log compaction, snapshot data, chunked InstallSnapshot.
 *
 * §7: "Each server takes snapshots independently, covering just the
 * committed entries in its log." raft_compact() drops the log prefix
 * (keeping snapshot_trailing entries so slightly lagging followers still
 * get entries) and records the snapshot metadata: last included index, its
 * term and the configuration as of that index.
 *
 * "The leader uses a new RPC called InstallSnapshot to send snapshots to
 * followers that are too far behind." The leader needs snapshot data that
 * covers the compacted prefix; if it holds none (or only an older one) it
 * raises rd.want_snapshot and the driver answers with raft_set_snapshot().
 * Data goes in chunks of snapshot_chunk_bytes, one chunk per answer: the
 * follower answers each chunk with the next offset it wants, so a lost
 * chunk is resent from there, and a follower that stopped answering gets
 * nothing more until it answers a heartbeat again. The follower
 * accumulates chunks for one (leader, index, term) and restarts from
 * offset 0 when that changes.
 *
 * Receiver, §7: "If existing log entry has same index and term as
 * snapshot's last included entry, retain log entries following it and
 * reply. Discard the entire log. Reset state machine using snapshot
 * contents (and load snapshot's cluster configuration)." Once the snapshot
 * is durable the follower acknowledges it with an APPEND_RESP at the
 * snapshot index, and the leader resumes probing from index + 1.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

/* Compact through index - snapshot_trailing (see raft.h). */
int raft_compact(struct raft *r, raft_index index)
{
	if (!r || index > r->applied)
		return RAFT_EINVAL;
	if (index <= r->snap_meta.index)
		return 0;
	raft_term t;
	if (!raft_log_term(&r->log, index, &t))
		return RAFT_EINVAL;
	r->snap_meta.index = index;
	r->snap_meta.term = t;
	r->snap_meta.conf = *raft_conf_at(r, index);
	raft_index upto = index > r->cfg.snapshot_trailing
				  ? index - r->cfg.snapshot_trailing
				  : 0;
	if (upto > r->log.off) {
		raft_log_compact(r, upto);
		raft_conf_hist_prune(r, upto);
	}
	raft_trace(r, RAFT_EV_SNAPSHOT, 0, index, "log compacted");
	return 0;
}

/* Replaces the held snapshot data (the old data may still be borrowed). */
static void hold_data(struct raft *r, uint8_t *data, uint64_t len,
		      const struct raft_snapshot_meta *meta)
{
	raft_defer_free(r, r->snap_data);
	r->snap_data = data;
	r->snap_len = len;
	r->snap_data_meta = *meta;
	r->has_snap_data = true;
}

/* Data of the state machine at `index` for lagging followers. */
int raft_set_snapshot(struct raft *r, raft_index index, const void *data,
		      uint64_t len)
{
	if (!r || index == 0 || index > r->applied || index < r->log.off ||
	    (len && !data))
		return RAFT_EINVAL;
	raft_term t;
	if (!raft_log_term(&r->log, index, &t))
		return RAFT_EINVAL;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return RAFT_ENOMEM;
	if (len)
		memcpy(copy, data, len);
	struct raft_snapshot_meta meta = {index, t, *raft_conf_at(r, index)};
	hold_data(r, copy, len, &meta);
	r->want_reported = false;
	r->want_snapshot = false;
	raft_trace(r, RAFT_EV_SNAPSHOT, 0, index, "snapshot data set");
	return 0;
}

/* See raft.h. */
int raft_snapshot_unavailable(struct raft *r)
{
	if (!r)
		return RAFT_EINVAL;
	r->want_reported = false;
	return 0;
}

/* Leader: send pr the next chunk of the held snapshot (from offset 0 when
 * the snapshot changed), or ask the driver for data. */
void raft_send_snapshot(struct raft *r, struct raft_progress *pr)
{
	if (!r->has_snap_data || r->snap_data_meta.index < r->log.off) {
		if (!r->want_reported)
			r->want_snapshot = true;
		pr->pending_snap = 0;
		return;
	}
	if (pr->pending_snap != r->snap_data_meta.index) {
		pr->pending_snap = r->snap_data_meta.index;
		pr->snap_off = 0;
		r->counters.snapshots_sent++;
		raft_trace(r, RAFT_EV_SNAPSHOT, pr->id, pr->pending_snap,
			   "sending snapshot");
	}
	uint64_t off = pr->snap_off > r->snap_len ? r->snap_len : pr->snap_off;
	uint64_t n = r->snap_len - off;
	if (n > r->cfg.snapshot_chunk_bytes)
		n = r->cfg.snapshot_chunk_bytes;
	struct raft_msg *m = raft_out_msg(r, false, RAFT_MSG_SNAPSHOT, pr->id);
	m->snap = r->snap_data_meta;
	m->commit = r->commit;
	m->offset = off;
	m->len = (uint32_t)n;
	m->data = n ? r->snap_data + off : NULL;
	m->done = off + n == r->snap_len;
	m->ctx = ++pr->snap_seq;
	pr->snap_wait = true;
	r->counters.snapshot_chunks_sent++;
}

/* Forget a partially received snapshot. */
void raft_rx_reset(struct raft *r)
{
	r->rx_from = 0;
	r->rx_index = 0;
	r->rx_term = 0;
	r->rx_len = 0;
}

static void snapshot_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *o =
		raft_out_msg(r, true, RAFT_MSG_SNAPSHOT_RESP, m->from);
	o->index = r->rx_len;
	o->hint_index = m->snap.index;
	o->hint_term = m->snap.term;
	o->ctx = m->ctx; /* names the chunk this answers */
}

/* The whole snapshot arrived: install it (see the top of the file). */
static void install(struct raft *r, const struct raft_msg *m)
{
	struct raft_snapshot_meta meta = m->snap;
	for (uint32_t i = 0; i < meta.conf.n; i++)
		meta.conf.nodes[i].addr[RAFT_ADDR_MAX - 1] = '\0';
	raft_term t;
	if (raft_log_term(&r->log, meta.index, &t) && t == meta.term)
		raft_log_compact(r, meta.index);
	else
		raft_log_reset(r, meta.index, meta.term);
	r->commit = meta.index;
	r->applied = meta.index;
	if (r->stable > meta.index)
		r->stable = meta.index;
	r->unstable = meta.index + 1; /* retained entries: persist again */
	r->n_prec = 0;
	r->conf = meta.conf;
	if (raft_conf_hist_reset(r, meta.index, &meta.conf) != 0)
		raft_trace(r, RAFT_EV_DROP, 0, meta.index,
			   "no memory for configuration history");
	raft_pr_rebuild(r);
	r->snap_meta = meta;
	uint8_t *data = r->rx_buf;
	uint64_t len = r->rx_len;
	if (!data) {
		data = malloc(1);
		if (!data) {
			raft_rx_reset(r);
			return;
		}
	}
	r->rx_buf = NULL;
	r->rx_cap = 0;
	raft_rx_reset(r);
	hold_data(r, data, len, &meta);
	r->install_pending = true;
	r->counters.snapshots_installed++;
	raft_trace(r, RAFT_EV_SNAPSHOT, m->from, meta.index,
		   "snapshot received: installing");
	raft_trace(r, RAFT_EV_CONF, 0, meta.index,
		   "configuration from snapshot");
	struct raft_msg *o =
		raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
	o->index = meta.index;
}

/* Follower: one InstallSnapshot chunk. */
void raft_handle_snapshot(struct raft *r, const struct raft_msg *m)
{
	if (r->leader != m->from) {
		r->leader = m->from;
		raft_trace(r, RAFT_EV_LEADER, m->from, 0, "leader learned");
	}
	r->election_elapsed = 0;
	if (m->snap.index <= r->commit) {
		/* Nothing new for us: tell the leader where we are. */
		struct raft_msg *o =
			raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
		o->index = r->commit;
		return;
	}
	if (r->rx_from != m->from || r->rx_index != m->snap.index ||
	    r->rx_term != m->snap.term) {
		raft_rx_reset(r);
		r->rx_from = m->from;
		r->rx_index = m->snap.index;
		r->rx_term = m->snap.term;
	}
	if (m->offset != r->rx_len) {
		snapshot_resp(r, m); /* asks for the offset we need */
		return;
	}
	if (m->len && r->rx_len + m->len > r->rx_cap) {
		uint64_t cap = r->rx_cap ? r->rx_cap : 64 * 1024;
		while (cap < r->rx_len + m->len)
			cap *= 2;
		uint8_t *b = realloc(r->rx_buf, cap);
		if (!b) {
			raft_trace(r, RAFT_EV_DROP, m->from, 0,
				   "no memory for snapshot chunk");
			return;
		}
		r->rx_buf = b;
		r->rx_cap = cap;
	}
	if (m->len)
		memcpy(r->rx_buf + r->rx_len, m->data, m->len);
	r->rx_len += m->len;
	if (!m->done) {
		snapshot_resp(r, m);
		return;
	}
	install(r, m);
}

/* Leader: the follower wants the chunk at m->index next. */
void raft_handle_snapshot_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = raft_pr_find(r, m->from);
	if (!pr)
		return;
	pr->recent_active = true;
	if (pr->state != RAFT_PR_SNAPSHOT)
		return;
	if (m->hint_index && m->hint_index != pr->pending_snap)
		return; /* about another snapshot */
	/* One chunk in flight: only the answer to the chunk sent last moves
	 * the transfer on. A duplicated or stale answer (or one to a chunk
	 * that was resent since) is dropped, or every duplicate would become
	 * one more chunk in flight, and duplicates of those more again. */
	if (m->ctx != pr->snap_seq || !pr->snap_wait) {
		raft_trace(r, RAFT_EV_DROP, m->from, m->index,
			   "stale snapshot answer");
		return;
	}
	pr->snap_off = m->index;
	/* Every byte sent: wait for the APPEND_RESP of the install. */
	pr->snap_wait = r->has_snap_data && m->index >= r->snap_len &&
			pr->pending_snap == r->snap_data_meta.index;
}
