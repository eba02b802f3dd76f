/*
 * step.c — raft_step(): one message from a peer.
 *
 * Peer input is never trusted: a message is validated first (known type,
 * a sender that is neither 0 nor us, addressed to us, entries consecutive
 * and without index overflow, terms that make sense) and a bad one is
 * dropped with a RAFT_EV_DROP trace. Then the term rules apply, and the
 * message is dispatched to the file that owns its concept.
 */
#include <string.h>

#include "consensus/raft_impl.h"

/* Why m is malformed, or NULL when it is acceptable. */
static const char *validate(const struct raft *r, const struct raft_msg *m)
{
	if (m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_TYPE_MAX)
		return "unknown message type";
	if (m->from == 0)
		return "sender id is 0";
	if (m->from == r->id)
		return "message claims to come from us";
	if (m->to != r->id)
		return "message addressed to another node";
	if (m->n_entries && m->type != RAFT_MSG_APPEND)
		return "entries on a message that carries none";
	if (m->n_entries && !m->entries)
		return "entries missing";
	if (m->type == RAFT_MSG_APPEND) {
		if (m->prev_index > UINT64_MAX - 1 - m->n_entries)
			return "entry index overflows";
		if (m->prev_term > m->term)
			return "previous entry term above message term";
		raft_term prev = m->prev_term;
		for (uint32_t i = 0; i < m->n_entries; i++) {
			const struct raft_entry *e = &m->entries[i];
			if (e->index != m->prev_index + 1 + i)
				return "entries not consecutive";
			if (e->term < prev || e->term > m->term)
				return "entry terms out of order";
			if (e->type > RAFT_ENTRY_CONF)
				return "unknown entry type";
			if (e->len && !e->data)
				return "entry data missing";
			prev = e->term;
		}
		if (m->commit > UINT64_MAX / 2)
			return "commit index overflows";
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		if (m->len && !m->data)
			return "snapshot data missing";
		if (m->offset > UINT64_MAX - m->len ||
		    m->offset > (uint64_t)1 << 48)
			return "snapshot offset overflows";
		if (m->snap.index == 0 || m->snap.index > UINT64_MAX / 2)
			return "bad snapshot index";
		if (m->snap.term > m->term)
			return "snapshot term above message term";
		if (m->snap.conf.n > RAFT_MAX_NODES || m->snap.conf.n == 0)
			return "bad snapshot configuration";
		for (uint32_t i = 0; i < m->snap.conf.n; i++)
			if (m->snap.conf.nodes[i].id == 0 ||
			    m->snap.conf.nodes[i].role > RAFT_LEARNER)
				return "bad snapshot configuration";
	}
	if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) &&
	    (m->prev_index > UINT64_MAX / 2 || m->term == 0))
		return "bad vote request";
	if (m->type == RAFT_MSG_APPEND_RESP && m->index > UINT64_MAX / 2)
		return "acknowledged index overflows";
	return NULL;
}

/* Answers a message from a lower term so that its stale sender (a deposed
 * leader or candidate) learns our term and steps down. */
static void answer_stale(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *o;
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_SNAPSHOT:
		o = raft_out_msg(r, true, RAFT_MSG_APPEND_RESP, m->from);
		o->reject = true;
		o->index = m->prev_index;
		break;
	case RAFT_MSG_VOTE:
		o = raft_out_msg(r, true, RAFT_MSG_VOTE_RESP, m->from);
		o->reject = true;
		break;
	case RAFT_MSG_PREVOTE:
		o = raft_out_msg(r, false, RAFT_MSG_PREVOTE_RESP, m->from);
		o->reject = true;
		break;
	default:
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "message from an older term");
		return;
	}
	raft_trace(r, RAFT_EV_DROP, m->from, 0,
		   "message from an older term answered with ours");
}

/*
 * Term rules. Figure 2 (all servers): "If RPC request or response contains
 * term T > currentTerm: set currentTerm = T, convert to follower (§5.1)".
 * Exceptions: a pre-vote request or a granted pre-vote response carries a
 * term nobody is in yet, so it changes nothing (thesis §9.6); and a vote
 * request that arrives while we hear from a live leader is ignored
 * (thesis §4.2.3: "if a server receives a RequestVote request within the
 * minimum election timeout of hearing from a current leader, it does not
 * update its term or grant its vote") unless a leadership transfer asked
 * for it. With lease_reads the rule also holds while raft_vote_held():
 * for the first election_ticks ticks after a restart (we may have
 * acknowledged a leader just before crashing), and for the rest of the
 * window when some other message moved us to a higher term before it
 * ended; that leader's lease (readindex.c) counts on this rule. Returns
 * false when m must not be processed further.
 */
static bool term_rules(struct raft *r, const struct raft_msg *m)
{
	bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
	if (m->term > r->term) {
		if (vote_req && !m->transfer && r->cfg.check_quorum &&
		    ((r->leader != 0 &&
		      r->election_elapsed < r->cfg.election_ticks) ||
		     raft_vote_held(r))) {
			raft_trace(r, RAFT_EV_DROP, m->from, 0,
				   "vote request while a leader is live");
			return false;
		}
		if (m->type == RAFT_MSG_PREVOTE)
			return true;
		if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)
			return true;
		raft_id lead = (m->type == RAFT_MSG_APPEND ||
				m->type == RAFT_MSG_SNAPSHOT)
				       ? m->from
				       : 0;
		raft_become_follower(r, m->term, lead, "saw a higher term");
		return true;
	}
	if (m->term < r->term) {
		/* A granted pre-vote answer carries the term we asked for. */
		if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)
			return true;
		answer_stale(r, m);
		return false;
	}
	return true;
}

/* A message from a peer (see raft.h). Bad input returns RAFT_EINVAL after
 * a RAFT_EV_DROP trace; the core state is untouched. */
int raft_step(struct raft *r, const struct raft_msg *m)
{
	if (!r || !m)
		return RAFT_EINVAL;
	const char *bad = validate(r, m);
	if (bad) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0, bad);
		return RAFT_EINVAL;
	}
	if (!term_rules(r, m))
		return 0;
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER) {
			raft_trace(r, RAFT_EV_DROP, m->from, 0,
				   "another leader in our term");
			return 0;
		}
		/* §5.2: "If the leader's term is at least as large as the
		 * candidate's current term, then the candidate recognizes the
		 * leader as legitimate and returns to follower state." */
		if (r->role != RAFT_FOLLOWER)
			raft_become_follower(r, m->term, m->from,
					     "heard from the leader");
		if (m->type == RAFT_MSG_APPEND)
			raft_handle_append(r, m);
		else
			raft_handle_snapshot(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_append_resp(r, m);
		break;
	case RAFT_MSG_SNAPSHOT_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_snapshot_resp(r, m);
		break;
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PREVOTE:
		raft_handle_vote(r, m);
		break;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		raft_handle_vote_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		raft_handle_timeout_now(r, m);
		break;
	case RAFT_MSG_READ_INDEX:
		raft_handle_read_index(r, m);
		break;
	case RAFT_MSG_READ_INDEX_RESP:
		raft_handle_read_index_resp(r, m);
		break;
	default:
		break;
	}
	return 0;
}
