/*
 * replication.c — AppendEntries on both sides, the commit rule, proposals.
 *
 * Leader side: entries are sent when ready() flushes (so one APPEND carries
 * every entry proposed since the last batch, up to max_msg_bytes), to
 * followers that are not paused (progress.c). Heartbeats are empty APPENDs
 * that also run the consistency check (prev = match, or next - 1 while
 * probing, so a lost probe is retried by the next heartbeat), carry the
 * commit index capped by what the check verifies, and the latest ReadIndex
 * round.
 *
 * Follower side: the consistency check of Figure 2, truncation of
 * conflicting suffixes, and on rejection a hint that lets the leader skip a
 * whole term of entries per round trip (thesis §5.3 "accelerated log
 * backtracking"): the term of the conflicting entry and the first index we
 * hold of it, or our last index + 1 with term 0 when our log is too short.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

/* Majority of the voters of the configuration in effect. */
uint32_t raft_quorum(const struct raft *r)
{
	return raft_conf_voters(&r->conf) / 2 + 1;
}

/* The leader's own match: what its disk holds. */
raft_index raft_self_match(const struct raft *r)
{
	raft_index last = raft_log_last(&r->log);
	return r->stable < last ? r->stable : last;
}

/* Sends pr the entries from its next index (or an empty APPEND when
 * allow_empty), unless it is paused. Enters SNAPSHOT state when the
 * entries it needs are compacted. */
void raft_send_append(struct raft *r, struct raft_progress *pr,
		      bool allow_empty)
{
	if (pr->id == r->id || raft_pr_paused(r, pr))
		return;
	raft_index last = raft_log_last(&r->log);
	if (pr->next > last + 1)
		pr->next = last + 1;
	if (pr->next > last && !allow_empty)
		return;
	raft_index prev = pr->next - 1;
	raft_term pt;
	if (!raft_log_term(&r->log, prev, &pt)) {
		raft_pr_become_snapshot(r, pr);
		raft_trace(r, RAFT_EV_SNAPSHOT, pr->id, prev,
			   "follower needs compacted entries: snapshot");
		raft_send_snapshot(r, pr);
		return;
	}
	size_t n = 0;
	uint64_t bytes = 0;
	for (raft_index i = pr->next; i <= last; i++) {
		uint32_t len = raft_log_get(&r->log, i)->len;
		if (n > 0 && bytes + len > r->cfg.max_msg_bytes)
			break;
		n++;
		bytes += len;
	}
	struct raft_msg *m = raft_out_msg(r, false, RAFT_MSG_APPEND, pr->id);
	m->offset = pr->epoch; /* echoed in the answer */
	m->prev_index = prev;
	m->prev_term = pt;
	m->commit = r->commit;
	m->ctx = r->read_round;
	/* A commit notice to a follower that is in step (no entries, it
	 * holds everything) asks for no answer while no read waits for a
	 * round: the answer would say nothing new, and heartbeats keep
	 * check-quorum and the lease fed. That halves the messages of a
	 * mutation (append, answer, notice instead of four). */
	m->done = n == 0 && pr->state == RAFT_PR_REPLICATE && r->n_reads == 0;
	if (n && raft_out_entries(r, false, pr->next, n) != 0)
		return;
	if (pr->state == RAFT_PR_REPLICATE) {
		if (n) {
			pr->next = prev + n + 1;
			raft_pr_infl_add(r, pr, prev + n, bytes);
		}
	} else {
		pr->probe_sent = true;
	}
}

/* Heartbeat (empty APPEND) to pr; sent whatever its state. */
void raft_send_heartbeat(struct raft *r, struct raft_progress *pr)
{
	if (pr->id == r->id)
		return;
	raft_index p = pr->state == RAFT_PR_PROBE ? pr->next - 1 : pr->match;
	raft_term pt;
	if (!raft_log_term(&r->log, p, &pt)) {
		p = pr->match;
		if (!raft_log_term(&r->log, p, &pt)) {
			p = 0;
			pt = 0;
		}
	}
	struct raft_msg *m = raft_out_msg(r, false, RAFT_MSG_APPEND, pr->id);
	m->offset = pr->epoch; /* echoed in the answer */
	m->prev_index = p;
	m->prev_term = pt;
	m->commit = r->commit < p ? r->commit : p;
	m->ctx = r->read_round;
}

/* Heartbeat to every other node of the configuration. */
void raft_bcast_heartbeat(struct raft *r)
{
	for (uint32_t i = 0; i < r->n_prs; i++)
		raft_send_heartbeat(r, &r->prs[i]);
}

/* ready(): send everything that can go to each follower. */
void raft_flush_appends(struct raft *r)
{
	raft_index last = raft_log_last(&r->log);
	for (uint32_t i = 0; i < r->n_prs; i++) {
		struct raft_progress *pr = &r->prs[i];
		if (pr->id == r->id)
			continue;
		if (pr->state == RAFT_PR_SNAPSHOT) {
			if (!pr->snap_wait)
				raft_send_snapshot(r, pr);
			continue;
		}
		bool sent = false;
		while (pr->next <= last && !raft_pr_paused(r, pr) &&
		       pr->state != RAFT_PR_SNAPSHOT) {
			raft_index before = pr->next;
			bool probe = pr->state == RAFT_PR_PROBE;
			raft_send_append(r, pr, false);
			sent = true;
			if (probe || pr->next == before)
				break;
		}
		if (!sent && r->bcast_commit)
			raft_send_append(r, pr, true);
	}
	r->bcast_commit = false;
}

/*
 * Advances the commit index to c (c > commit). Committed configuration
 * entries take effect now (conf.c). A leader that just committed an entry
 * of its own term may start pending reads (§6.4), and one whose own removal
 * just committed hands over and steps down.
 */
void raft_commit_to(struct raft *r, raft_index c)
{
	raft_index old = r->commit;
	if (c <= old)
		return;
	if (c > raft_log_last(&r->log))
		c = raft_log_last(&r->log);
	r->commit = c;
	for (raft_index i = old + 1; i <= c; i++) {
		const struct raft_entry *e = raft_log_get(&r->log, i);
		if (!e)
			continue;
		if (r->role == RAFT_LEADER) {
			r->uncommitted_bytes = r->uncommitted_bytes > e->len
						       ? r->uncommitted_bytes -
								 e->len
						       : 0;
		}
		if (e->type == RAFT_ENTRY_CONF)
			raft_conf_apply_entry(r, e);
	}
	raft_trace(r, RAFT_EV_COMMIT, 0, c, "commit advanced");
	if (r->role != RAFT_LEADER)
		return;
	r->bcast_commit = true;
	raft_term t = 0;
	(void)raft_log_term(&r->log, c, &t);
	if (t == r->term)
		raft_reads_start(r);
	if (r->removed_self) {
		/* Tell the others the removal is committed, hand the lead to
		 * the most up-to-date voter, and step down. We are no longer
		 * in the configuration, so we count in no quorum. */
		r->removed_self = false;
		raft_bcast_heartbeat(r);
		struct raft_progress *best = NULL;
		for (uint32_t i = 0; i < r->n_prs; i++) {
			struct raft_progress *pr = &r->prs[i];
			if (pr->voter && (!best || pr->match > best->match))
				best = pr;
		}
		if (best && best->match == raft_log_last(&r->log)) {
			raft_out_msg(r, false, RAFT_MSG_TIMEOUT_NOW, best->id);
			raft_trace(r, RAFT_EV_TRANSFER, best->id, 0,
				   "removed: handing over leadership");
		}
		raft_become_follower(r, r->term, 0,
				     "removed from the configuration");
	}
}

static int cmp_desc(const void *a, const void *b)
{
	raft_index x = *(const raft_index *)a, y = *(const raft_index *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Leader commit rule. Figure 2: "If there exists an N such that
 * N > commitIndex, a majority of matchIndex[i] >= N, and log[N].term ==
 * currentTerm: set commitIndex = N." §5.4.2: "Raft never commits log
 * entries from previous terms by counting replicas. Only log entries from
 * the leader's current term are committed by counting replicas." The
 * majority is of the voters of the configuration; the leader counts with
 * its stable index only.
 */
bool raft_maybe_commit(struct raft *r)
{
	if (r->role != RAFT_LEADER)
		return false;
	raft_index m[RAFT_MAX_NODES];
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		const struct raft_progress *pr = &r->prs[i];
		if (!pr->voter)
			continue;
		m[k++] = pr->id == r->id ? raft_self_match(r) : pr->match;
	}
	if (k == 0)
		return false;
	qsort(m, k, sizeof(m[0]), cmp_desc);
	raft_index n = m[raft_quorum(r) - 1];
	raft_term t;
	if (n <= r->commit || !raft_log_term(&r->log, n, &t) || t != r->term)
		return false;
	raft_commit_to(r, n);
	return true;
}

/* Rejection hint: the conflicting term and the first index we hold of it,
 * or (last + 1, 0) when the log is too short. */
static void conflict_hint(const struct raft *r, raft_index prev,
			  raft_index *hi, raft_term *ht)
{
	raft_index last = raft_log_last(&r->log);
	raft_term t;
	if (prev > last || !raft_log_term(&r->log, prev, &t)) {
		*hi = last + 1;
		*ht = 0;
		return;
	}
	raft_index j = prev;
	raft_term u;
	while (j - 1 > r->log.off && raft_log_term(&r->log, j - 1, &u) &&
	       u == t)
		j--;
	*hi = j;
	*ht = t;
}

/*
 * AppendEntries receiver (Figure 2):
 * "1. Reply false if term < currentTerm (§5.1)" (step.c)
 * "2. Reply false if log doesn't contain an entry at prevLogIndex whose
 *     term matches prevLogTerm (§5.3)
 *  3. If an existing entry conflicts with a new one (same index but
 *     different terms), delete the existing entry and all that follow it
 *  4. Append any new entries not already in the log
 *  5. If leaderCommit > commitIndex, set commitIndex = min(leaderCommit,
 *     index of last new entry)"
 * The acknowledgement promises the entries are on disk: after persist.
 */
void raft_handle_append(struct raft *r, const struct raft_msg *m)
{
	if (r->leader != m->from) {
		r->leader = m->from;
		raft_trace(r, RAFT_EV_LEADER, m->from, 0, "leader learned");
	}
	r->election_elapsed = 0;
	struct raft_msg *o;
	if (r->conf.n == 0 && r->log.off == 0 && r->log.n == 0) {
		/* Never bootstrapped nor loaded: we lack the configuration
		 * at index 0, so ask for a snapshot (hint 0/0). */
		o = raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
		o->reject = true;
		o->index = m->prev_index;
		o->ctx = m->ctx;
		o->offset = m->offset;
		return;
	}
	if (m->prev_index < r->commit) {
		/* Stale or duplicated: everything up to commit matches. */
		o = raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
		o->index = r->commit;
		o->ctx = m->ctx;
		o->offset = m->offset;
		return;
	}
	raft_term t;
	if (!raft_log_term(&r->log, m->prev_index, &t) || t != m->prev_term) {
		raft_index hi;
		raft_term ht;
		conflict_hint(r, m->prev_index, &hi, &ht);
		o = raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
		o->reject = true;
		o->index = m->prev_index;
		o->hint_index = hi;
		o->hint_term = ht;
		o->ctx = m->ctx;
		o->offset = m->offset;
		return;
	}
	uint32_t i = 0;
	raft_index last = raft_log_last(&r->log);
	for (; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (e->index > last)
			break;
		raft_term have;
		(void)raft_log_term(&r->log, e->index, &have);
		if (have == e->term)
			continue;
		if (e->index <= r->commit) {
			raft_trace(r, RAFT_EV_DROP, m->from, e->index,
				   "APPEND conflicts with a committed entry");
			return;
		}
		raft_log_truncate(r, e->index);
		if (r->stable >= e->index)
			r->stable = e->index - 1;
		if (r->unstable > e->index)
			r->unstable = e->index;
		break;
	}
	for (; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (raft_log_append(r, e->term, e->type, e->data, e->len) != 0)
			return; /* no memory: the leader will retry */
	}
	raft_index last_new = m->prev_index + m->n_entries;
	raft_index c = m->commit < last_new ? m->commit : last_new;
	if (c > r->commit)
		raft_commit_to(r, c);
	if (m->done && m->n_entries == 0)
		return; /* a commit notice that wants no answer */
	o = raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
	o->index = last_new;
	o->ctx = m->ctx;
	o->offset = m->offset;
}

/* Where to probe next after a rejection of prev index `rej` with hint
 * (hi, ht): past our last entry of term ht if we have that term, else at
 * the follower's first entry of it (or its last + 1). */
static raft_index backoff(const struct raft *r, raft_index rej,
			  raft_index hi, raft_term ht)
{
	if (ht == 0)
		return hi;
	raft_index j = rej < raft_log_last(&r->log) ? rej
						   : raft_log_last(&r->log);
	raft_term t;
	while (j > r->log.off && raft_log_term(&r->log, j, &t) && t > ht)
		j--;
	if (raft_log_term(&r->log, j, &t) && t == ht && j >= 1)
		return j + 1;
	return hi;
}

/*
 * Leader: an AppendEntries answer. Figure 2: "If successful: update
 * nextIndex and matchIndex for follower (§5.3). If AppendEntries fails
 * because of log inconsistency: decrement nextIndex and retry (§5.3)."
 */
void raft_handle_append_resp(struct raft *r, const struct raft_msg *m)
{
	struct raft_progress *pr = raft_pr_find(r, m->from);
	if (!pr) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "answer from a node outside the configuration");
		return;
	}
	pr->recent_active = true;
	pr->probe_sent = false;
	if (m->ctx > pr->read_ack && m->ctx <= r->read_round) {
		pr->read_ack = m->ctx;
		raft_lease_ack(r, pr, m->ctx);
		raft_reads_check(r);
		if (r->role != RAFT_LEADER)
			return;
	}
	if (m->reject) {
		if (m->hint_index == 0 && m->hint_term == 0) {
			if (pr->state != RAFT_PR_SNAPSHOT) {
				raft_pr_become_snapshot(r, pr);
				raft_trace(r, RAFT_EV_SNAPSHOT, pr->id, 0,
					   "follower is uninitialized: "
					   "snapshot");
			} else {
				pr->snap_wait = false;
			}
			return;
		}
		if (pr->state == RAFT_PR_SNAPSHOT)
			return;
		/* Appends carry the follower's probe epoch (msg.offset),
		 * which grows each time we fall back to probing. A refusal
		 * of an append sent before that is stale: acting on it would
		 * restart the window once per old message still in flight,
		 * and under reordering and duplication each restart puts a
		 * whole new window in flight — a message storm. */
		if (m->offset != pr->epoch)
			return;
		if (pr->state == RAFT_PR_REPLICATE && m->index <= pr->match)
			return; /* stale */
		if (pr->state == RAFT_PR_PROBE && m->index != pr->next - 1)
			return; /* stale */
		raft_index nx = backoff(r, m->index, m->hint_index,
					m->hint_term);
		if (nx > m->index)
			nx = m->index;
		if (nx < pr->match + 1)
			nx = pr->match + 1;
		if (pr->state == RAFT_PR_REPLICATE)
			raft_pr_become_probe(r, pr);
		pr->next = nx;
		return;
	}
	if (m->index > raft_log_last(&r->log)) {
		raft_trace(r, RAFT_EV_DROP, m->from, m->index,
			   "acknowledges entries we do not have");
		return;
	}
	bool moved = raft_pr_update(r, pr, m->index);
	switch (pr->state) {
	case RAFT_PR_PROBE:
		raft_pr_become_replicate(r, pr);
		break;
	case RAFT_PR_SNAPSHOT:
		if (pr->match >= r->log.off)
			raft_pr_become_probe(r, pr);
		else
			pr->snap_wait = false; /* it is alive: resend */
		break;
	default:
		break;
	}
	if (moved) {
		raft_maybe_commit(r);
		if (r->role == RAFT_LEADER)
			raft_transfer_check(r, pr);
	}
}

/* Leader: append a NORMAL entry (see raft.h). */
int raft_propose(struct raft *r, const void *data, uint32_t len,
		 raft_index *index, raft_term *term)
{
	if (!r || (len && !data))
		return RAFT_EINVAL;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (r->transferee)
		return RAFT_EBUSY;
	if (r->uncommitted_bytes > 0 &&
	    r->uncommitted_bytes + len > r->cfg.max_uncommitted_bytes)
		return RAFT_EBUSY;
	int rc = raft_log_append(r, r->term, RAFT_ENTRY_NORMAL, data, len);
	if (rc)
		return rc;
	r->uncommitted_bytes += len;
	if (index)
		*index = raft_log_last(&r->log);
	if (term)
		*term = r->term;
	raft_maybe_commit(r); /* single voter whose disk is ahead */
	return 0;
}
