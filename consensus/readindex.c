/*
 * readindex.c — linearizable reads without log writes (thesis §6.4).
 *
 * "1. If the leader has not yet marked an entry from its current term
 *     committed, it waits until it has done so.
 *  2. The leader saves its current commit index in a local variable
 *     readIndex.
 *  3. The leader needs to make sure it hasn't been superseded by a newer
 *     leader of which it is unaware. It issues a new round of heartbeats
 *     and waits for their acknowledgments from a majority of the cluster.
 *  4. The leader waits for its state machine to advance at least as far as
 *     the readIndex" (step 4 is the driver's: it waits for applied >=
 *     index before answering).
 *
 * Each read gets a new round number; APPENDs carry the latest round and
 * answers echo it, so an answer to any APPEND sent after the read started
 * confirms the leader to that follower. A read completes when a majority of
 * the voters (the leader counts itself) acknowledged its round. Reads
 * complete in order. A leader that steps down drops them: a deposed or
 * partitioned leader never answers. Followers forward a read to the leader
 * (READ_INDEX) and output the index it answers (READ_INDEX_RESP).
 *
 * Leader lease (cfg.lease_reads; thesis §6.4.1 "the leader would use the
 * normal heartbeat mechanism to maintain a lease ... once the leader's
 * heartbeats were acknowledged by a majority of the cluster, it would
 * extend its lease to start + election timeout, since the followers
 * shouldn't time out before then"). Step 3 is skipped while the lease
 * holds; steps 1 and 2 (and the driver's 4) stay.
 *
 * Why it is safe here. The lease rule of step.c: a node that received an
 * APPEND from a live leader "does not update its term or grant its vote"
 * (§4.2.3) to a vote request without the transfer flag until it has
 * ticked election_ticks times since; with lease_reads it keeps refusing
 * (any term, raft_vote_held()) for the rest of that window if another
 * message moves it to a higher term first, and for its first
 * election_ticks ticks after a restart, as it may have answered a leader
 * just before crashing. Each leader tick starts a new round and
 * the ring records the first round of each tick, so an APPEND_RESP that
 * echoes round k proves its sender processed an APPEND the leader sent at
 * tick >= t(k), the tick at which round k was created. If a majority of
 * voters (the leader counting itself at `now`) did so at ticks >= s, each
 * of them refuses (pre-)votes until election_ticks of its own ticks after
 * receipt, hence after send: no candidate can collect a majority, and no
 * other leader can be elected, before tick s + election_ticks. A read at
 * tick `now` may use the commit index at once when
 *     now < s + election_ticks - margin,   margin = max(2, election_ticks/4)
 * Assumptions: (a) every node runs with the same election_ticks and with
 * check_quorum (the lease rule is off without it; this node refuses
 * leases without it too); (b) clocks drift little: in real time,
 * election_ticks - margin leader ticks never outlast election_ticks - 1
 * follower ticks (with the defaults 15 and 3: a follower clock may run
 * up to ~16% faster than the leader's), and a leader's tick count never
 * falls behind real time by more than the margin when it serves a read: the
 * driver fires due ticks before it steps queued messages and reads, and
 * calls raft_lease_drop() when it skips ticks after a stall (lease_reads
 * is off by default for drivers that do neither); (c) the configuration changes one
 * voter at a time, so the majority that acknowledged and the majority a
 * rival needs overlap (as for the heartbeat round). Leadership transfer
 * breaks the lease rule on purpose (the target's vote requests carry
 * `transfer`), so a leader that started a transfer uses no lease for the
 * rest of its term; a transfer campaign runs only in the term after the
 * transferring leader's, where one leader at most is elected.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

/* Queues a result for the next ready. */
int raft_out_read(struct raft *r, uint64_t ctx, raft_index index)
{
	if (r->n_out_reads == r->cap_out_reads) {
		size_t cap = r->cap_out_reads ? r->cap_out_reads * 2 : 16;
		struct raft_read_state *p =
			realloc(r->out_reads, cap * sizeof(*p));
		if (!p)
			return RAFT_ENOMEM;
		r->out_reads = p;
		r->cap_out_reads = cap;
	}
	r->out_reads[r->n_out_reads].ctx = ctx;
	r->out_reads[r->n_out_reads].index = index;
	r->n_out_reads++;
	return 0;
}

static bool own_term_committed(const struct raft *r)
{
	raft_term t;
	return raft_log_term(&r->log, r->commit, &t) && t == r->term;
}

/* Ticks a lease granted at tick s reaches before the election timeout
 * the followers honour from s (see the top of the file). */
static uint64_t lease_span(const struct raft *r)
{
	uint64_t t = r->cfg.election_ticks;
	uint64_t margin = t / 4 > 2 ? t / 4 : 2;
	return t > margin ? t - margin : 0;
}

static bool lease_on(const struct raft *r)
{
	return r->cfg.lease_reads && r->cfg.check_quorum &&
	       r->role == RAFT_LEADER && r->lease_off_term != r->term &&
	       r->transferee == 0;
}

/* Records that round `first` is the first one created at tick `now`. */
static void lease_mark(struct raft *r)
{
	struct raft_lease_mark *mk = &r->lease_ring[r->now % r->n_lease_ring];
	mk->tick = r->now;
	mk->first_round = ++r->read_round;
}

/* A new leadership: forget the marks of the previous one and open a
 * round, so every message of this leadership has a known send tick. */
void raft_lease_reset(struct raft *r)
{
	memset(r->lease_ring, 0, r->n_lease_ring * sizeof(*r->lease_ring));
	if (r->cfg.lease_reads)
		lease_mark(r);
}

/* The driver skipped ticks: our tick count lags real time, so no mark
 * or acknowledgement recorded so far may back a lease any more. */
int raft_lease_drop(struct raft *r)
{
	if (!r)
		return RAFT_EINVAL;
	for (uint32_t i = 0; i < r->n_prs; i++)
		r->prs[i].lease_tick = 0;
	raft_lease_reset(r);
	return 0;
}

/* Leader tick: open this tick's round (messages sent from now on carry a
 * round whose send tick is at least now). */
void raft_lease_tick(struct raft *r)
{
	if (r->cfg.lease_reads)
		lease_mark(r);
}

/* pr echoed round `round`: it heard from us at a tick >= the last tick
 * whose first round is <= round. Rounds older than the ring prove
 * nothing that is still useful and are ignored. */
void raft_lease_ack(struct raft *r, struct raft_progress *pr, uint64_t round)
{
	uint64_t best = 0;
	for (uint32_t i = 0; i < r->n_lease_ring; i++) {
		const struct raft_lease_mark *mk = &r->lease_ring[i];
		if (mk->tick && mk->first_round <= round && mk->tick > best)
			best = mk->tick;
	}
	if (best > pr->lease_tick)
		pr->lease_tick = best;
}

static int cmp_desc(const void *a, const void *b);

/* True while a majority of voters acknowledged messages recent enough
 * that no other leader can exist yet (see the top of the file). */
bool raft_lease_valid(const struct raft *r)
{
	if (!lease_on(r))
		return false;
	uint64_t ticks[RAFT_MAX_NODES];
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		const struct raft_progress *pr = &r->prs[i];
		if (pr->voter)
			ticks[k++] = pr->id == r->id ? r->now : pr->lease_tick;
	}
	uint32_t q = raft_quorum(r);
	if (k < q)
		return false;
	qsort(ticks, k, sizeof(ticks[0]), cmp_desc);
	uint64_t s = ticks[q - 1];
	return s != 0 && r->now < s + lease_span(r);
}

/* Leader stepped down: pending reads can no longer be proven. */
void raft_reads_drop(struct raft *r)
{
	if (r->n_reads)
		raft_trace(r, RAFT_EV_DROP, 0, 0,
			   "pending reads dropped: no longer leader");
	r->n_reads = 0;
}

/* Rule 1 is met: give every waiting read the commit index and a round. */
void raft_reads_start(struct raft *r)
{
	bool any = false;
	for (size_t i = 0; i < r->n_reads; i++) {
		if (r->reads[i].round)
			continue;
		r->reads[i].index = r->commit;
		r->reads[i].round = ++r->read_round;
		any = true;
	}
	if (any) {
		if (!raft_lease_valid(r))
			r->bcast_hb = true; /* step 3: a heartbeat round */
		raft_reads_check(r);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Completes the reads whose round a majority of voters acknowledged, or
 * every started read while the lease holds. */
void raft_reads_check(struct raft *r)
{
	if (r->n_reads == 0 || r->role != RAFT_LEADER)
		return;
	uint64_t acks[RAFT_MAX_NODES];
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n_prs; i++) {
		const struct raft_progress *pr = &r->prs[i];
		if (pr->voter)
			acks[k++] = pr->id == r->id ? UINT64_MAX : pr->read_ack;
	}
	if (k == 0)
		return;
	qsort(acks, k, sizeof(acks[0]), cmp_desc);
	uint64_t q = acks[raft_quorum(r) - 1];
	if (raft_lease_valid(r))
		q = UINT64_MAX; /* step 3 holds for every started read */
	size_t done = 0;
	while (done < r->n_reads && r->reads[done].round &&
	       r->reads[done].round <= q) {
		struct raft_read_req *rq = &r->reads[done];
		if (rq->from == 0) {
			(void)raft_out_read(r, rq->ctx, rq->index);
		} else {
			struct raft_msg *m = raft_out_msg(
				r, false, RAFT_MSG_READ_INDEX_RESP, rq->from);
			m->ctx = rq->ctx;
			m->index = rq->index;
		}
		done++;
	}
	memmove(r->reads, r->reads + done,
		(r->n_reads - done) * sizeof(*r->reads));
	r->n_reads -= done;
}

/* Leader: queue a read from `from` (0: local). */
static int leader_read(struct raft *r, uint64_t ctx, raft_id from)
{
	if (r->n_reads == r->cap_reads) {
		size_t cap = r->cap_reads ? r->cap_reads * 2 : 16;
		struct raft_read_req *p = realloc(r->reads, cap * sizeof(*p));
		if (!p)
			return RAFT_ENOMEM;
		r->reads = p;
		r->cap_reads = cap;
	}
	r->reads[r->n_reads++] = (struct raft_read_req){ctx, from, 0, 0};
	if (own_term_committed(r))
		raft_reads_start(r);
	return 0;
}

/* A linearizable read barrier (see raft.h). */
int raft_read_index(struct raft *r, uint64_t ctx)
{
	if (!r)
		return RAFT_EINVAL;
	if (r->role == RAFT_LEADER)
		return leader_read(r, ctx, 0);
	if (r->leader == 0)
		return RAFT_ENOTLEADER;
	struct raft_msg *m = raft_out_msg(r, false, RAFT_MSG_READ_INDEX,
					  r->leader);
	m->ctx = ctx;
	return 0;
}

/* Leader: a follower forwards a read. */
void raft_handle_read_index(struct raft *r, const struct raft_msg *m)
{
	if (r->role != RAFT_LEADER) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "read request but we are not the leader");
		return;
	}
	if (raft_conf_find(&r->conf, m->from) < 0) {
		raft_trace(r, RAFT_EV_DROP, m->from, 0,
			   "read request from a node outside the configuration");
		return;
	}
	(void)leader_read(r, m->ctx, m->from);
}

/* Follower: the leader answered a forwarded read. */
void raft_handle_read_index_resp(struct raft *r, const struct raft_msg *m)
{
	if (r->role == RAFT_LEADER)
		return;
	(void)raft_out_read(r, m->ctx, m->index);
}
