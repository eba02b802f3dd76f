/*
 * transfer.c — leadership transfer (thesis §3.10).
 *
 * "1. The prior leader stops accepting new client requests.
 *  2. The prior leader fully updates the target server's log to match its
 *     own, using the normal log replication mechanism.
 *  3. The prior leader sends a TimeoutNow request to the target server.
 *     This request has the same effect as the target server's election
 *     timer firing: the target server starts a new election (incrementing
 *     its term and becoming a candidate)."
 * "If the transfer does not complete within an election timeout, the prior
 * leader aborts the transfer and resumes accepting client requests."
 * The target skips pre-vote and marks its vote requests `transfer`, so
 * voters that still hear from the old leader do not ignore them.
 */
#include "consensus/raft_impl.h"

/* Stop a running transfer (trace says why). */
void raft_transfer_abort(struct raft *r, const char *why)
{
	if (!r->transferee)
		return;
	raft_trace(r, RAFT_EV_TRANSFER, r->transferee, 0, why);
	r->transferee = 0;
	r->transfer_sent = false;
	r->transfer_elapsed = 0;
}

/* Send TIMEOUT_NOW once the target's log matches ours. */
void raft_transfer_check(struct raft *r, struct raft_progress *pr)
{
	if (r->transferee != pr->id || r->transfer_sent ||
	    pr->match != raft_log_last(&r->log))
		return;
	raft_out_msg(r, false, RAFT_MSG_TIMEOUT_NOW, pr->id);
	r->transfer_sent = true;
	raft_trace(r, RAFT_EV_TRANSFER, pr->id, pr->match,
		   "target up to date: TIMEOUT_NOW sent");
}

/* Leader: hand leadership to target (see raft.h). */
int raft_transfer_leader(struct raft *r, raft_id target)
{
	if (!r)
		return RAFT_EINVAL;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (target == r->id || !raft_conf_is_voter(&r->conf, target))
		return RAFT_EINVAL;
	if (r->transferee == target)
		return 0;
	raft_transfer_abort(r, "superseded by another transfer");
	r->transferee = target;
	r->transfer_elapsed = 0;
	/* The target's vote requests bypass the lease rule (step.c): no
	 * lease read for the rest of this term (readindex.c). */
	r->lease_off_term = r->term;
	r->transfer_sent = false;
	raft_trace(r, RAFT_EV_TRANSFER, target, 0, "transfer started");
	raft_transfer_check(r, raft_pr_find(r, target));
	return 0;
}

/* The leader asks us to campaign now, skipping pre-vote. */
void raft_handle_timeout_now(struct raft *r, const struct raft_msg *m)
{
	if (r->role == RAFT_LEADER || !raft_conf_is_voter(&r->conf, r->id)) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "TIMEOUT_NOW but we cannot campaign");
		return;
	}
	raft_trace(r, RAFT_EV_TRANSFER, m->from, 0,
		   "TIMEOUT_NOW received: campaigning");
	raft_campaign(r, false, true, "leader transfer");
}
