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
		r->bcast_hb = true;
		raft_reads_check(r);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Completes the reads whose round a majority of voters acknowledged. */
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
