/*
 * election.c — roles, the election timer, pre-vote, votes, check-quorum.
 *
 * §5.2: "If a follower receives no communication over a period of time
 * called the election timeout, then it assumes there is no viable leader
 * and begins an election." The timeout is drawn from [T, 2T) by the seeded
 * PRNG each time the timer restarts.
 *
 * Pre-vote (thesis §9.6): before bumping its term a would-be candidate
 * asks whether it could win (PREVOTE with term + 1, no state change on
 * either side). A node cut off from the cluster therefore never inflates
 * its term and never disrupts a healthy leader when it comes back.
 *
 * Check-quorum (thesis §6.2): a leader that has not heard from a majority
 * of voters within an election timeout steps down; together with the
 * lease rule in step.c (ignore vote requests while a leader is live) this
 * keeps a partitioned leader from serving and a rejoining node from
 * deposing a healthy one.
 *
 * Only voters of the configuration campaign, and a candidate counts only
 * the votes of its configuration's voters. A node answers vote requests
 * whatever its own configuration says (it may lag the log), but ignores a
 * candidate outside its voters unless that candidate's log is strictly
 * ahead of its own (see raft_handle_vote).
 */
#include <string.h>

#include "consensus/raft_impl.h"

/* Draws a new election timeout in [T, 2T). */
void raft_reset_timeout(struct raft *r)
{
	uint32_t t = r->cfg.election_ticks;
	r->rand_timeout = raft_prng_range(&r->prng, t, 2 * t);
}

/* True while lease reads require us to refuse vote requests that do not
 * come from a leadership transfer (see raft_impl.h, readindex.c). */
bool raft_vote_held(const struct raft *r)
{
	return r->now < r->vote_hold_until;
}

/* Common to every role change: timers, votes, a new term if any. A
 * follower that forgets a leader it heard from less than election_ticks
 * ago keeps refusing votes for the rest of that window: the leader may
 * hold a lease that counts on it (readindex.c). */
static void reset(struct raft *r, raft_term term)
{
	if (r->cfg.lease_reads && r->cfg.check_quorum &&
	    r->role != RAFT_LEADER && r->leader != 0 &&
	    r->election_elapsed < r->cfg.election_ticks) {
		uint64_t until = r->now + r->cfg.election_ticks -
				 r->election_elapsed;
		if (until > r->vote_hold_until)
			r->vote_hold_until = until;
	}
	if (term != r->term) {
		r->term = term;
		r->vote = 0;
		raft_trace(r, RAFT_EV_TERM, 0, 0, "term changed");
	}
	r->leader = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	raft_reset_timeout(r);
	memset(r->votes, 0, sizeof(r->votes));
	r->campaign_transfer = false;
	if (r->transferee)
		raft_transfer_abort(r, "leadership changed");
	r->bcast_hb = false;
	r->bcast_commit = false;
}

/* Become a follower of `leader` (0: unknown) in `term`. A leader that
 * steps down drops its pending reads: it can no longer prove it leads. */
void raft_become_follower(struct raft *r, raft_term term, raft_id leader,
			  const char *why)
{
	bool was_leader = r->role == RAFT_LEADER;
	if (was_leader) {
		raft_reads_drop(r);
		raft_trace(r, RAFT_EV_STEPDOWN, 0, 0, why);
	}
	reset(r, term);
	enum raft_role old = r->role;
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	if (old != RAFT_FOLLOWER)
		raft_trace(r, RAFT_EV_ROLE, leader, 0, why);
	if (leader)
		raft_trace(r, RAFT_EV_LEADER, leader, 0, why);
}

/*
 * §5.3: "When a leader first comes to power, it initializes all nextIndex
 * values to the index just after the last one in its log." §8: "each
 * leader commit a blank no-op entry into the log at the start of its
 * term" — which also lets it commit entries of earlier terms (§5.4.2) and
 * serve reads (§6.4).
 */
void raft_become_leader(struct raft *r)
{
	reset(r, r->term);
	r->role = RAFT_LEADER;
	r->leader = r->id;
	raft_pr_reset_all(r);
	raft_lease_reset(r);
	struct raft_progress *self = raft_pr_find(r, r->id);
	if (self)
		self->recent_active = true;
	r->uncommitted_bytes = 0;
	/* There may be an uncommitted conf entry in our log: no new change
	 * until everything up to here is committed. */
	r->pending_conf = raft_log_last(&r->log);
	r->removed_self = false;
	r->counters.elections_won++;
	raft_trace(r, RAFT_EV_ROLE, 0, 0, "won the election");
	raft_trace(r, RAFT_EV_LEADER, r->id, 0, "we lead");
	if (raft_log_append(r, r->term, RAFT_ENTRY_NOOP, NULL, 0) != 0)
		raft_trace(r, RAFT_EV_DROP, 0, 0, "no memory for the no-op");
	raft_maybe_commit(r);
}

static uint32_t count_votes(const struct raft *r, uint8_t what)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < r->conf.n; i++)
		if (r->conf.nodes[i].role == RAFT_VOTER && r->votes[i] == what)
			n++;
	return n;
}

/* Tallies after a vote: win, lose, or keep waiting. */
static void tally(struct raft *r)
{
	uint32_t q = raft_quorum(r);
	uint32_t voters = raft_conf_voters(&r->conf);
	if (count_votes(r, 1) >= q) {
		if (r->role == RAFT_PRE_CANDIDATE)
			raft_campaign(r, false, r->campaign_transfer,
				      "pre-vote won");
		else
			raft_become_leader(r);
	} else if (count_votes(r, 2) > voters - q) {
		raft_become_follower(r, r->term, 0,
				     r->role == RAFT_PRE_CANDIDATE
					     ? "pre-vote lost"
					     : "election lost");
	}
}

/*
 * Start an election (pre_vote: only ask whether we could win). §5.2: "To
 * begin an election, a follower increments its current term and
 * transitions to candidate state. It then votes for itself and issues
 * RequestVote RPCs in parallel to each of the other servers." The vote
 * requests of a real campaign promise the new term and our own vote are
 * on disk, so they go out after persistence.
 */
void raft_campaign(struct raft *r, bool pre_vote, bool transfer,
		   const char *why)
{
	int self = raft_conf_find(&r->conf, r->id);
	if (self < 0 || r->conf.nodes[self].role != RAFT_VOTER)
		return; /* learners and non-members never campaign */
	raft_term t;
	if (pre_vote) {
		reset(r, r->term);
		r->role = RAFT_PRE_CANDIDATE;
		t = r->term + 1;
		r->counters.pre_votes++;
		raft_trace(r, RAFT_EV_ELECTION, 0, 0, why);
		raft_trace(r, RAFT_EV_ROLE, 0, 0, "pre-candidate");
	} else {
		reset(r, r->term + 1);
		r->role = RAFT_CANDIDATE;
		r->vote = r->id;
		t = r->term;
		r->counters.elections++;
		raft_trace(r, RAFT_EV_ELECTION, 0, 0, why);
		raft_trace(r, RAFT_EV_ROLE, 0, 0, "candidate");
	}
	r->campaign_transfer = transfer;
	r->votes[self] = 1;
	if (count_votes(r, 1) >= raft_quorum(r)) {
		tally(r);
		return;
	}
	raft_index li = raft_log_last(&r->log);
	raft_term lt = raft_log_last_term(&r->log);
	for (uint32_t i = 0; i < r->conf.n; i++) {
		const struct raft_node *nd = &r->conf.nodes[i];
		if (nd->id == r->id || nd->role != RAFT_VOTER)
			continue;
		struct raft_msg *m = raft_out_msg(
			r, !pre_vote, pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
			nd->id);
		m->term = t;
		m->prev_index = li;
		m->prev_term = lt;
		m->transfer = transfer;
	}
}

/* Follower / candidate tick: start an election when the timer expires. */
void raft_tick_election(struct raft *r)
{
	r->election_elapsed++;
	if (r->election_elapsed < r->rand_timeout)
		return;
	r->election_elapsed = 0;
	raft_reset_timeout(r);
	if (!raft_conf_is_voter(&r->conf, r->id))
		return;
	raft_campaign(r, r->cfg.pre_vote, false,
		      r->role == RAFT_FOLLOWER ? "election timeout"
					       : "election timed out, retrying");
}

/*
 * Leader tick: heartbeats, check-quorum, transfer timeout, stalled
 * pipelines. Thesis §6.2: "the leader steps down if an election timeout
 * elapses without a successful round of heartbeats to a majority of its
 * cluster."
 */
void raft_tick_leader(struct raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->transferee &&
	    ++r->transfer_elapsed >= r->cfg.election_ticks)
		raft_transfer_abort(r, "transfer timed out");
	if (r->election_elapsed >= r->cfg.election_ticks) {
		r->election_elapsed = 0;
		if (r->cfg.check_quorum) {
			uint32_t active = 0;
			for (uint32_t i = 0; i < r->n_prs; i++) {
				struct raft_progress *pr = &r->prs[i];
				if (pr->voter &&
				    (pr->recent_active || pr->id == r->id))
					active++;
			}
			if (active < raft_quorum(r)) {
				raft_become_follower(
					r, r->term, 0,
					"check-quorum: no majority heard "
					"from within an election timeout");
				return;
			}
		}
		for (uint32_t i = 0; i < r->n_prs; i++)
			if (r->prs[i].id != r->id)
				r->prs[i].recent_active = false;
		r->want_reported = false; /* ask again if still needed */
	}
	/* A REPLICATE follower that acknowledged nothing for two heartbeat
	 * intervals while entries are in flight probably lost one: probe
	 * (the probe is answered at once if nothing was lost). */
	for (uint32_t i = 0; i < r->n_prs; i++) {
		struct raft_progress *pr = &r->prs[i];
		if (pr->id == r->id || pr->state != RAFT_PR_REPLICATE ||
		    pr->infl_n == 0)
			continue;
		if (++pr->stall >= 2 * r->cfg.heartbeat_ticks)
			raft_pr_become_probe(r, pr);
	}
	if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		raft_bcast_heartbeat(r);
	}
}

/*
 * RequestVote receiver (Figure 2): "If votedFor is null or candidateId,
 * and candidate's log is at least as up-to-date as receiver's log, grant
 * vote." §5.4.1: "If the logs have last entries with different terms, then
 * the log with the later term is more up-to-date. If the logs end with the
 * same term, then whichever log is longer is more up-to-date." A pre-vote
 * is granted on the same log test when we could vote in the future term
 * (no leader known, or the request's term is above ours).
 */
void raft_handle_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	raft_index li = raft_log_last(&r->log);
	raft_term lt = raft_log_last_term(&r->log);
	/* Thesis §4.1: "servers process incoming RPC requests without
	 * consulting their current configurations" — our configuration may
	 * lag the log (a learner that missed its own promotion must still
	 * vote, or a committed {us, candidate} configuration deadlocks). So
	 * whether WE are a voter does not matter: the candidate counts votes
	 * by its own configuration. A candidate outside our voters is ignored
	 * (a removed node must not disrupt), unless its log is strictly ahead
	 * of ours, in which case our configuration may be the stale one. */
	bool ahead = m->prev_term > lt ||
		     (m->prev_term == lt && m->prev_index > li);
	if (!raft_conf_is_voter(&r->conf, m->from) && !ahead) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "vote request from a node outside the voters");
		return;
	}
	bool can = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
		   (pre && m->term > r->term);
	/* Lease reads: a same-term request gets no new vote while we hold
	 * (a higher-term one was already dropped in step.c). */
	if (can && r->vote != m->from && !m->transfer && raft_vote_held(r))
		can = false;
	bool uptodate = m->prev_term > lt ||
			(m->prev_term == lt && m->prev_index >= li);
	struct raft_msg *o = raft_out_msg(
		r, !pre, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
		m->from);
	if (can && uptodate) {
		o->term = pre ? m->term : r->term;
		if (!pre) {
			r->vote = m->from;
			r->election_elapsed = 0;
		}
		raft_trace(r, RAFT_EV_VOTE, m->from, 0,
			   pre ? "pre-vote granted" : "vote granted");
	} else {
		o->reject = true;
		raft_trace(r, RAFT_EV_VOTE, m->from, 0,
			   !uptodate ? "refused: candidate log not up to date"
				     : "refused: already voted or leader known");
	}
}

/* A (pre-)vote answer while campaigning. */
void raft_handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
	if (r->role != (pre ? RAFT_PRE_CANDIDATE : RAFT_CANDIDATE))
		return; /* late answer to a finished campaign */
	if (pre && !m->reject && m->term != r->term + 1)
		return; /* answer to an older pre-vote */
	int i = raft_conf_find(&r->conf, m->from);
	if (i < 0 || r->conf.nodes[i].role != RAFT_VOTER) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "vote from a node outside the voters");
		return;
	}
	r->votes[i] = m->reject ? 2 : 1;
	tally(r);
}
