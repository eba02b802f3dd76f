/*
 * replication_test.c — log replication, the commit rule, fast back-off,
 * flow control and persistence gating.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static uint64_t seed;

static struct cluster *cluster(int n, const struct raft_config *cfg)
{
	struct cluster *c = cl_new(n, 0, cfg);
	c->seed = seed;
	return c;
}

static int count_q(const struct cluster *c, uint8_t type, raft_id to,
		   bool with_entries)
{
	int n = 0;
	for (size_t i = 0; i < c->nq; i++)
		if (c->q[i].type == type && c->q[i].to == to &&
		    (!with_entries || c->q[i].n_entries > 0))
			n++;
	return n;
}

/* Tick everyone until a leader other than `not` leads; returns it. */
static raft_id elect_other(struct cluster *c, raft_id not)
{
	for (int k = 0; k < 1000; k++) {
		raft_id l = cl_leader(c);
		if (l && l != not)
			return l;
		cl_tick(c, 0, 1);
	}
	return 0;
}

static void replication_commits_and_applies_everywhere(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	char buf[32];
	for (int i = 0; i < 20; i++) {
		snprintf(buf, sizeof(buf), "entry-%d", i);
		assert_int_equal(cl_propose(c, 1, buf), 0);
	}
	cl_settle(c);
	raft_index last = cl_status(c, 1).last_index;
	for (raft_id i = 1; i <= 3; i++) {
		assert_int_equal(cl_status(c, i).commit, last);
		assert_int_equal(c->n[i].applied, last);
		assert_int_equal(c->n[i].n_normal, 20);
	}
	assert_true(cl_consistent(c, last));
	/* Followers reject proposals. */
	assert_int_equal(cl_propose(c, 2, "x"), RAFT_ENOTLEADER);
	cl_free(c);
}

static void new_leader_appends_noop_in_its_term(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 2));
	struct raft_status st = cl_status(c, 2);
	assert_int_equal(st.last_term, st.term);
	assert_int_equal(st.commit, st.last_index);
	struct h_node *n = &c->n[2];
	assert_true(n->n_log > 0);
	assert_int_equal(n->log[n->n_log - 1].type, RAFT_ENTRY_NOOP);
	assert_int_equal(n->log[n->n_log - 1].term, st.term);
	cl_free(c);
}

static void conflicting_log_converges_with_few_rejections(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 3));
	cl_isolate(c, 3);
	char buf[32];
	for (int i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "lost-%d", i);
		assert_int_equal(cl_propose(c, 3, buf), 0);
	}
	cl_settle(c);
	raft_id l = elect_other(c, 3);
	assert_true(l == 1 || l == 2);
	for (int i = 0; i < 30; i++) {
		snprintf(buf, sizeof(buf), "kept-%d", i);
		assert_int_equal(cl_propose(c, l, buf), 0);
	}
	cl_settle(c);
	assert_true(cl_status(c, 3).last_index >
		    cl_status(c, l).last_index); /* longer, conflicting */
	c->append_rejects = 0;
	cl_heal(c);
	cl_tick(c, 0, 10);
	struct raft_status sl = cl_status(c, l), s3 = cl_status(c, 3);
	assert_int_equal(s3.last_index, sl.last_index);
	assert_int_equal(s3.last_term, sl.last_term);
	assert_int_equal(c->n[3].applied, sl.commit);
	assert_true(cl_consistent(c, sl.commit));
	/* One term of divergence costs about one round trip, not 50. */
	assert_true(c->append_rejects >= 1);
	assert_true(c->append_rejects <= 2);
	cl_free(c);
}

struct trim {
	raft_id from, to;
	raft_index max_index; /* drop entries above this */
};

/* Filter: strip entries above max_index from APPENDs from -> to. */
static bool trim_filter(void *arg, struct raft_msg *m)
{
	struct trim *t = arg;
	if (m->type != RAFT_MSG_APPEND || m->from != t->from ||
	    m->to != t->to)
		return false;
	uint32_t keep = 0;
	while (keep < m->n_entries &&
	       m->entries[keep].index <= t->max_index)
		keep++;
	for (uint32_t i = keep; i < m->n_entries; i++)
		free(m->entries[i].data);
	m->n_entries = keep;
	return false;
}

/* Figure 8 / §5.4.2: an entry of an older term that is on a majority is
 * not committed by counting; it commits with the first entry of the
 * leader's own term. */
static void old_term_entry_not_committed_by_counting(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	raft_term t1 = raft_current_term(c->n[1].r);
	cl_isolate(c, 1);
	raft_index e_idx;
	assert_int_equal(raft_propose(c->n[1].r, "E", 1, &e_idx, NULL), 0);
	cl_settle(c);
	/* 1 loses leadership (check-quorum) with E only in its log... */
	cl_tick(c, 1, 40);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	/* ...and wins again with 2's vote, 3 still away. 2 will receive
	 * E but never the new leader's no-op while the filter is on. */
	struct trim tr = {1, 2, e_idx};
	c->filter = trim_filter;
	c->farg = &tr;
	cl_heal(c);
	cl_isolate(c, 3);
	for (int k = 0; k < 1000 && cl_leader(c) != 1; k++)
		cl_tick(c, 0, 1);
	assert_int_equal(cl_leader(c), 1);
	assert_true(raft_current_term(c->n[1].r) > t1);
	cl_tick(c, 0, 5);
	/* E (term t1) is on 1 and 2, a majority, yet not committed. */
	assert_int_equal(cl_status(c, 2).last_index, e_idx);
	assert_true(cl_status(c, 1).commit < e_idx);
	/* Once the no-op of the current term replicates, both commit. */
	c->filter = NULL;
	cl_tick(c, 0, 40);
	assert_true(cl_status(c, 1).commit >= e_idx + 1);
	assert_true(c->n[2].applied >= e_idx + 1);
	assert_true(cl_consistent(c, 0));
	cl_free(c);
}

static void uncommitted_cap_returns_busy(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.max_uncommitted_bytes = 1000;
	struct cluster *c = cluster(3, &cfg);
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 1);
	char buf[101];
	memset(buf, 'a', 100);
	buf[100] = '\0';
	int ok = 0, rc;
	while ((rc = cl_propose(c, 1, buf)) == 0 && ok < 100)
		ok++;
	assert_int_equal(rc, RAFT_EBUSY);
	assert_int_equal(ok, 10);
	cl_heal(c);
	cl_tick(c, 0, 20);
	assert_int_equal(cl_leader(c), 1);
	assert_int_equal(cl_propose(c, 1, buf), 0);
	cl_free(c);
}

static bool drop_resp_from_2(void *arg, struct raft_msg *m)
{
	(void)arg;
	return m->type == RAFT_MSG_APPEND_RESP && m->from == 2;
}

static void progress_probe_then_replicate_with_inflight_limit(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.max_inflight_msgs = 4;
	cfg.max_msg_bytes = 1; /* one entry per APPEND */
	struct cluster *c = cluster(3, &cfg);
	assert_true(cl_elect(c, 1));
	struct raft_status st = cl_status(c, 1);
	assert_int_equal(st.progress[1], 1); /* replicate */
	assert_int_equal(st.progress[2], 1);
	/* Pipelining stops at max_inflight_msgs unacknowledged APPENDs. */
	c->filter = drop_resp_from_2;
	for (int i = 0; i < 20; i++)
		assert_int_equal(cl_propose(c, 1, "0123456789"), 0);
	cl_ready(c, 1);
	assert_int_equal(count_q(c, RAFT_MSG_APPEND, 2, true), 4);
	assert_int_equal(count_q(c, RAFT_MSG_APPEND, 3, true), 4);
	cl_settle(c);
	/* 3 acknowledges and gets all 20; 2 stays at 4 in flight. */
	assert_int_equal(c->n[3].n_normal, 20);
	assert_true(cl_status(c, 2).last_index <
		    cl_status(c, 1).last_index);
	/* Stalled without acknowledgements, 2 falls back to probing; a
	 * probe is one APPEND at a time. */
	cl_isolate(c, 2);
	cl_tick(c, 1, 16);
	assert_int_equal(cl_status(c, 1).progress[1], 0); /* probe */
	while (c->nq)
		cl_deliver(c);
	for (int i = 0; i < 10; i++)
		assert_int_equal(cl_propose(c, 1, "x"), 0);
	cl_ready(c, 1);
	assert_true(count_q(c, RAFT_MSG_APPEND, 2, false) <= 1);
	c->filter = NULL;
	cl_heal(c);
	cl_tick(c, 0, 20);
	st = cl_status(c, 1);
	assert_int_equal(st.progress[1], 1);
	assert_int_equal(c->n[2].n_normal, 30);
	assert_true(cl_consistent(c, st.commit));
	cl_free(c);
}

static const struct raft_msg *find(const struct raft_msg *m, size_t n,
				   uint8_t type)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].type == type)
			return &m[i];
	return NULL;
}

static struct raft *lone(raft_id id, bool pre_vote)
{
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.id = id;
	cfg.seed = seed;
	cfg.pre_vote = pre_vote;
	struct raft *r = raft_new(&cfg);
	struct raft_conf conf = {.n = 3};
	for (int i = 0; i < 3; i++)
		conf.nodes[i].id = (raft_id)i + 1;
	assert_int_equal(raft_bootstrap(r, &conf), 0);
	return r;
}

static void persistence_gates_acks_votes_and_leader_self_count(void **state)
{
	(void)state;
	struct raft_ready rd;
	/* A follower's APPEND_RESP waits for its disk write. */
	struct raft *r = lone(2, true);
	struct raft_entry e = {.term = 1, .index = 1, .len = 1,
			       .data = (uint8_t *)"a"};
	struct raft_msg a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2,
			     .term = 1, .n_entries = 1, .entries = &e};
	raft_step(r, &a);
	assert_true(raft_ready(r, &rd));
	assert_int_equal(rd.n_entries, 1);
	assert_null(find(rd.msgs, rd.n_msgs, RAFT_MSG_APPEND_RESP));
	assert_non_null(find(rd.msgs_after_persist, rd.n_msgs_after_persist,
			     RAFT_MSG_APPEND_RESP));
	raft_advance(r, &rd);
	raft_free(r);
	/* A candidate's vote requests wait for term+vote on disk; pre-vote
	 * requests promise nothing and go at once. */
	for (int pv = 0; pv <= 1; pv++) {
		r = lone(1, pv);
		while (raft_role(r) == RAFT_FOLLOWER)
			raft_tick(r);
		assert_true(raft_ready(r, &rd));
		uint8_t t = pv ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE;
		if (pv) {
			assert_non_null(find(rd.msgs, rd.n_msgs, t));
			assert_int_equal(rd.n_msgs_after_persist, 0);
		} else {
			assert_null(find(rd.msgs, rd.n_msgs, t));
			assert_int_equal(rd.n_msgs_after_persist, 2);
			assert_true(rd.has_hs);
			assert_int_equal(rd.hs.vote, 1);
		}
		raft_advance(r, &rd);
		raft_free(r);
	}
	/* The leader counts itself only for entries on its disk. */
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	c->n[1].manual_persist = true;
	cl_isolate(c, 3);
	raft_index idx;
	assert_int_equal(raft_propose(c->n[1].r, "x", 1, &idx, NULL), 0);
	cl_settle(c);
	assert_int_equal(cl_status(c, 2).last_index, idx); /* 2 has it */
	assert_true(cl_status(c, 1).commit < idx);
	assert_true(cl_status(c, 1).stable_index < idx);
	cl_persist(c, 1);
	assert_int_equal(cl_status(c, 1).commit, idx);
	c->n[1].manual_persist = false;
	cl_settle(c);
	assert_int_equal(c->n[1].applied, idx);
	cl_free(c);
}

static void committed_entries_handed_out_only_when_durable(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	c->n[2].manual_persist = true;
	raft_index idx;
	assert_int_equal(raft_propose(c->n[1].r, "y", 1, &idx, NULL), 0);
	cl_settle(c); /* committed by 1 + 3 */
	cl_tick(c, 0, 6); /* heartbeat tells 2 the commit index */
	assert_true(cl_status(c, 2).commit >= idx);
	assert_true(c->n[2].applied < idx); /* not on 2's disk yet */
	cl_persist(c, 2);
	c->n[2].manual_persist = false;
	cl_settle(c);
	assert_int_equal(c->n[2].applied, cl_status(c, 1).commit);
	cl_free(c);
}

/* Drops the first APPEND carrying entries to node 3 (*arg counts). */
static bool drop_entries_to_3(void *arg, struct raft_msg *m)
{
	int *dropped = arg;
	if (m->type != RAFT_MSG_APPEND || m->to != 3 || m->n_entries == 0 ||
	    *dropped)
		return false;
	*dropped = 1;
	return true;
}

/* A commit notice (an append without entries to a follower in step) is
 * not answered when accepted: a proposal costs one append and one answer
 * per follower, plus the notice that lets them apply. A notice the
 * follower cannot accept (it missed the entries) is answered with a
 * refusal, and the leader repairs it without waiting for a heartbeat. */
static void commit_notices_are_not_answered_unless_refused(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	cl_settle(c);
	memset(c->sent, 0, sizeof c->sent);
	assert_int_equal(cl_propose(c, 1, "one"), 0);
	cl_settle(c);
	raft_index last = cl_status(c, 1).last_index;
	for (raft_id i = 1; i <= 3; i++)
		assert_int_equal(c->n[i].applied, last);
	assert_int_equal(c->sent[RAFT_MSG_APPEND], 4); /* entries + notice */
	assert_int_equal(c->sent[RAFT_MSG_APPEND_RESP], 2);

	int dropped = 0;
	c->filter = drop_entries_to_3;
	c->farg = &dropped;
	assert_int_equal(cl_propose(c, 1, "two"), 0);
	cl_settle(c); /* no tick: no heartbeat helps */
	c->filter = NULL;
	assert_int_equal(dropped, 1);
	assert_int_equal(c->n[2].applied, last + 1);
	assert_true(c->append_rejects > 0); /* 3 refused the notice */
	assert_int_equal(cl_status(c, 3).commit, last + 1);
	assert_int_equal(c->n[3].applied, last + 1);
	assert_true(cl_consistent(c, last + 1));
	cl_free(c);
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replication_commits_and_applies_everywhere),
		cmocka_unit_test(new_leader_appends_noop_in_its_term),
		cmocka_unit_test(conflicting_log_converges_with_few_rejections),
		cmocka_unit_test(old_term_entry_not_committed_by_counting),
		cmocka_unit_test(uncommitted_cap_returns_busy),
		cmocka_unit_test(
			progress_probe_then_replicate_with_inflight_limit),
		cmocka_unit_test(
			persistence_gates_acks_votes_and_leader_self_count),
		cmocka_unit_test(
			committed_entries_handed_out_only_when_durable),
		cmocka_unit_test(
			commit_notices_are_not_answered_unless_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
