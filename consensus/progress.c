/*
 * progress.c — the leader's view of each node of the configuration.
 *
 * Every node in the configuration (voter or learner) has a progress entry
 * in the same slot as in r->conf. A follower is in one of three states:
 *
 *   PROBE      we do not know where its log matches ours: send one
 *              AppendEntries, wait for the answer (or a heartbeat answer),
 *              and walk next back using the conflict hint on rejection;
 *   REPLICATE  its log matches up to match: stream entries optimistically
 *              (next runs ahead of match), bounded by max_inflight_msgs
 *              messages and max_inflight_bytes bytes in flight;
 *   SNAPSHOT   the entries it needs are compacted away: send the snapshot
 *              in chunks, one chunk per answer.
 *
 * Figure 2 (leaders): "If successful: update nextIndex and matchIndex for
 * follower. If AppendEntries fails because of log inconsistency:
 * decrement nextIndex and retry." The in-flight ring is what limits the
 * pipelining of the optimistic REPLICATE state.
 */
#include <string.h>

#include "consensus/raft_impl.h"

/* Progress of node id, or NULL when it is not in the configuration. */
struct raft_progress *raft_pr_find(struct raft *r, raft_id id)
{
	for (uint32_t i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

/* Forgets everything in flight. */
static void infl_clear(struct raft_progress *pr)
{
	pr->infl_head = 0;
	pr->infl_n = 0;
	pr->infl_bytes = 0;
}

/* Fresh leader view of pr: match 0, next = last + 1, PROBE. */
static void pr_reset(struct raft *r, struct raft_progress *pr)
{
	pr->state = RAFT_PR_PROBE;
	pr->match = 0;
	pr->next = raft_log_last(&r->log) + 1;
	pr->probe_sent = false;
	pr->recent_active = false;
	pr->read_ack = 0;
	pr->lease_tick = 0;
	pr->stall = 0;
	pr->pending_snap = 0;
	pr->snap_off = 0;
	pr->snap_wait = false;
	infl_clear(pr);
}

/* Resets every progress (a new leader, §5.3: "When a leader first comes to
 * power, it initializes all nextIndex values to the index just after the
 * last one in its log"). */
void raft_pr_reset_all(struct raft *r)
{
	for (uint32_t i = 0; i < r->n_prs; i++)
		pr_reset(r, &r->prs[i]);
}

/* Re-aligns prs[] with r->conf after a configuration change, keeping the
 * state of nodes that stay. */
void raft_pr_rebuild(struct raft *r)
{
	struct raft_progress old[RAFT_MAX_NODES];
	uint32_t n_old = r->n_prs;
	memcpy(old, r->prs, sizeof(old));
	bool used[RAFT_MAX_NODES] = {false};
	for (uint32_t i = 0; i < r->conf.n; i++) {
		struct raft_progress *pr = &r->prs[i];
		const struct raft_node *nd = &r->conf.nodes[i];
		bool found = false;
		for (uint32_t j = 0; j < n_old; j++) {
			if (old[j].id == nd->id) {
				*pr = old[j];
				found = true;
				break;
			}
		}
		if (!found) {
			memset(pr, 0, sizeof(*pr));
			pr->id = nd->id;
			pr->infl = NULL;
			pr_reset(r, pr);
		}
		pr->voter = nd->role == RAFT_VOTER;
	}
	r->n_prs = r->conf.n;
	/* Hand out ring buffers: keep the ones already owned. */
	for (uint32_t i = 0; i < r->n_prs; i++)
		for (uint32_t k = 0; k < RAFT_MAX_NODES; k++)
			if (r->prs[i].infl == r->infl_pool[k])
				used[k] = true;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		if (r->prs[i].infl)
			continue;
		for (uint32_t k = 0; k < RAFT_MAX_NODES; k++) {
			if (!used[k]) {
				used[k] = true;
				r->prs[i].infl = r->infl_pool[k];
				infl_clear(&r->prs[i]);
				break;
			}
		}
	}
}

/* PROBE from next = match + 1 (after a rejection, a snapshot, a stall). */
void raft_pr_become_probe(struct raft *r, struct raft_progress *pr)
{
	(void)r;
	if (pr->state == RAFT_PR_SNAPSHOT) {
		raft_index n = pr->pending_snap + 1;
		pr->next = pr->match + 1 > n ? pr->match + 1 : n;
	} else {
		pr->next = pr->match + 1;
	}
	pr->state = RAFT_PR_PROBE;
	pr->epoch++; /* refusals of earlier appends are stale now */
	pr->probe_sent = false;
	pr->pending_snap = 0;
	pr->snap_wait = false;
	pr->stall = 0;
	infl_clear(pr);
}

/* REPLICATE: the follower matches up to match; stream from match + 1. */
void raft_pr_become_replicate(struct raft *r, struct raft_progress *pr)
{
	(void)r;
	pr->state = RAFT_PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	pr->stall = 0;
	infl_clear(pr);
}

/* SNAPSHOT: the entries the follower needs are compacted away. */
void raft_pr_become_snapshot(struct raft *r, struct raft_progress *pr)
{
	(void)r;
	pr->state = RAFT_PR_SNAPSHOT;
	pr->probe_sent = false;
	pr->pending_snap = 0;
	pr->snap_off = 0;
	pr->snap_wait = false;
	infl_clear(pr);
}

/* The follower acknowledged up to m: advance match (and next), release
 * in-flight messages up to it. True if match moved. */
bool raft_pr_update(struct raft *r, struct raft_progress *pr, raft_index m)
{
	(void)r;
	bool moved = false;
	if (m > pr->match) {
		pr->match = m;
		moved = true;
		pr->stall = 0;
	}
	if (pr->next < m + 1)
		pr->next = m + 1;
	while (pr->infl_n > 0 && pr->infl[pr->infl_head].last <= m) {
		pr->infl_bytes -= pr->infl[pr->infl_head].bytes;
		pr->infl_head = (pr->infl_head + 1) % r->cfg.max_inflight_msgs;
		pr->infl_n--;
	}
	return moved;
}

/* True when nothing more may be sent to pr right now. */
bool raft_pr_paused(const struct raft *r, const struct raft_progress *pr)
{
	switch (pr->state) {
	case RAFT_PR_PROBE:
		return pr->probe_sent;
	case RAFT_PR_REPLICATE:
		return pr->infl_n >= r->cfg.max_inflight_msgs ||
		       pr->infl_bytes >= r->cfg.max_inflight_bytes;
	default:
		return true;
	}
}

/* Records an APPEND carrying entries up to `last` (REPLICATE state). */
void raft_pr_infl_add(struct raft *r, struct raft_progress *pr,
		      raft_index last, uint64_t bytes)
{
	uint32_t cap = r->cfg.max_inflight_msgs;
	if (pr->infl_n >= cap)
		return; /* callers check raft_pr_paused() first */
	uint32_t slot = (pr->infl_head + pr->infl_n) % cap;
	pr->infl[slot].last = last;
	pr->infl[slot].bytes = bytes;
	pr->infl_n++;
	pr->infl_bytes += bytes;
}
