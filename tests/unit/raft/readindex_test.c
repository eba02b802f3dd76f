/*
 * readindex_test.c — linearizable reads (ReadIndex, thesis §6.4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* A cluster with leader leases on (the default is off). */
static struct cluster *lease_cluster(int n)
{
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.lease_reads = true;
	return cluster(n, &cfg);
}

static bool has_read(const struct h_node *n, uint64_t ctx, raft_index *idx)
{
	for (size_t i = 0; i < n->n_reads; i++)
		if (n->reads[i].ctx == ctx) {
			if (idx)
				*idx = n->reads[i].index;
			return true;
		}
	return false;
}

static void read_index_on_leader_after_heartbeat_quorum(void **state)
{
	(void)state;
	/* The default configuration: leases off, the heartbeat-round path. */
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	assert_int_equal(cl_propose(c, 1, "w"), 0);
	cl_settle(c);
	raft_index commit = cl_status(c, 1).commit;
	assert_int_equal(raft_read_index(c->n[1].r, 42), 0);
	/* Not before a majority confirmed the leader. */
	cl_ready(c, 1);
	assert_false(has_read(&c->n[1], 42, NULL));
	cl_settle(c);
	raft_index idx;
	assert_true(has_read(&c->n[1], 42, &idx));
	assert_int_equal(idx, commit);
	cl_free(c);
}

static bool drop_resp_to_1(void *arg, struct raft_msg *m)
{
	(void)arg;
	return m->type == RAFT_MSG_APPEND_RESP && m->to == 1;
}

static void read_waits_for_commit_in_leader_term(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	c->filter = drop_resp_to_1; /* the no-op cannot commit */
	assert_true(cl_elect(c, 1));
	struct raft_status st = cl_status(c, 1);
	assert_true(st.commit < st.last_index);
	assert_int_equal(raft_read_index(c->n[1].r, 7), 0);
	cl_tick(c, 0, 8); /* (less than the check-quorum timeout) */
	assert_false(has_read(&c->n[1], 7, NULL));
	c->filter = NULL;
	cl_tick(c, 0, 20);
	raft_index idx;
	assert_true(has_read(&c->n[1], 7, &idx));
	assert_true(idx >= st.last_index); /* at least the no-op */
	cl_free(c);
}

static void read_index_via_follower(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	assert_int_equal(cl_propose(c, 1, "w"), 0);
	cl_settle(c);
	assert_int_equal(raft_read_index(c->n[2].r, 9), 0);
	cl_settle(c);
	raft_index idx;
	assert_true(has_read(&c->n[2], 9, &idx));
	assert_int_equal(idx, cl_status(c, 1).commit);
	assert_false(has_read(&c->n[1], 9, NULL));
	cl_free(c);
}

static void stale_leader_never_answers_reads(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.check_quorum = false; /* the old leader does not step down */
	/* (leases need check-quorum, so this leader has none: with it on,
	 * see partitioned_lease_leader_never_answers_after_new_leader) */
	struct cluster *c = cluster(3, &cfg);
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 1);
	assert_true(cl_elect(c, 2));
	assert_int_equal(cl_propose(c, 2, "new"), 0);
	cl_settle(c);
	/* 1 still believes it leads, but cannot confirm it. */
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	assert_int_equal(raft_read_index(c->n[1].r, 5), 0);
	cl_tick(c, 1, 30);
	assert_false(has_read(&c->n[1], 5, NULL));
	/* Rejoining, it learns the new term; the read is dropped. */
	cl_heal(c);
	cl_tick(c, 0, 20);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_false(has_read(&c->n[1], 5, NULL));
	cl_free(c);
}

/* A fresh lease answers a read in the leader's next ready, with the
 * commit index and without a single new message. */
static void lease_read_answered_without_round_while_fresh(void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	assert_int_equal(cl_propose(c, 1, "w"), 0);
	cl_settle(c);
	raft_index commit = cl_status(c, 1).commit;
	int appends = c->sent[RAFT_MSG_APPEND];
	assert_int_equal(raft_read_index(c->n[1].r, 42), 0);
	cl_ready(c, 1);
	raft_index idx;
	assert_true(has_read(&c->n[1], 42, &idx));
	assert_int_equal(idx, commit);
	assert_int_equal(c->nq, 0); /* no heartbeat round went out */
	/* A follower's read costs one round trip to the leader, no round. */
	assert_int_equal(raft_read_index(c->n[2].r, 43), 0);
	cl_settle(c);
	assert_true(has_read(&c->n[2], 43, &idx));
	assert_int_equal(idx, commit);
	assert_int_equal(c->sent[RAFT_MSG_APPEND], appends);
	cl_free(c);
}

/* election_ticks 15 gives a margin of 3: a lease granted at tick s serves
 * reads up to tick s + 11. Cut off, the leader answers at once until
 * then; afterwards a read needs a heartbeat round again. */
static void lease_expired_read_needs_heartbeat_round(void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	cl_settle(c); /* acks of the no-op: lease from the election tick */
	cl_isolate(c, 1);
	cl_tick(c, 1, 11);
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	assert_int_equal(raft_read_index(c->n[1].r, 1), 0);
	cl_ready(c, 1);
	assert_true(has_read(&c->n[1], 1, NULL));
	cl_tick(c, 1, 1);
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	assert_int_equal(raft_read_index(c->n[1].r, 2), 0);
	cl_ready(c, 1);
	assert_false(has_read(&c->n[1], 2, NULL));
	/* Reconnected, a heartbeat round proves the leader again. */
	cl_heal(c);
	raft_index commit = cl_status(c, 1).commit;
	assert_int_equal(raft_read_index(c->n[1].r, 3), 0);
	cl_settle(c);
	raft_index idx;
	assert_true(has_read(&c->n[1], 2, &idx));
	assert_int_equal(idx, commit);
	assert_true(has_read(&c->n[1], 3, &idx));
	assert_int_equal(idx, commit);
	cl_free(c);
}

/* A driver that skipped ticks drops the lease: the next read needs a
 * heartbeat round, and acknowledgements of that round renew the lease. */
static void lease_drop_forces_round_until_renewed(void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	cl_settle(c);
	assert_int_equal(raft_read_index(c->n[1].r, 1), 0);
	cl_ready(c, 1);
	assert_true(has_read(&c->n[1], 1, NULL)); /* fresh lease */
	assert_int_equal(raft_lease_drop(c->n[1].r), 0);
	assert_int_equal(raft_read_index(c->n[1].r, 2), 0);
	cl_ready(c, 1);
	assert_false(has_read(&c->n[1], 2, NULL)); /* no lease: a round */
	assert_true(c->nq > 0);
	cl_settle(c);
	assert_true(has_read(&c->n[1], 2, NULL));
	int appends = c->sent[RAFT_MSG_APPEND];
	assert_int_equal(raft_read_index(c->n[1].r, 3), 0);
	cl_ready(c, 1);
	assert_true(has_read(&c->n[1], 3, NULL)); /* renewed by that round */
	assert_int_equal(c->sent[RAFT_MSG_APPEND], appends);
	assert_int_equal(raft_lease_drop(NULL), RAFT_EINVAL);
	cl_free(c);
}

/* The stale-leader pattern with check-quorum and leases on: every node's
 * clock runs; the cut-off leader reads at every tick. Whatever it answers
 * from its lease, it answers before another leader exists, and it never
 * answers once one does. */
static void partitioned_lease_leader_never_answers_after_new_leader(
	void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	assert_int_equal(cl_propose(c, 1, "old"), 0);
	cl_settle(c);
	cl_isolate(c, 1);
	raft_id other = 0;
	int elected_at = -1, answered = 0;
	for (int t = 0; t < 200 && !other; t++) {
		if (raft_role(c->n[1].r) == RAFT_LEADER) {
			assert_int_equal(raft_read_index(c->n[1].r, 100 + t),
					 0);
			cl_ready(c, 1);
			if (has_read(&c->n[1], 100 + t, NULL))
				answered++;
		}
		cl_tick(c, 0, 1);
		for (raft_id id = 2; id <= 3; id++)
			if (raft_role(c->n[id].r) == RAFT_LEADER) {
				other = id;
				elected_at = t;
			}
	}
	assert_true(other != 0);
	assert_true(answered > 0); /* the lease did serve reads */
	for (size_t i = 0; i < c->n[1].n_reads; i++)
		assert_true((int)c->n[1].reads[i].ctx - 100 <= elected_at);
	assert_int_equal(cl_propose(c, other, "new"), 0);
	cl_settle(c);
	size_t before = c->n[1].n_reads;
	if (raft_role(c->n[1].r) == RAFT_LEADER) {
		assert_int_equal(raft_read_index(c->n[1].r, 5), 0);
		cl_tick(c, 1, 30);
	}
	assert_int_equal(c->n[1].n_reads, before);
	cl_heal(c);
	cl_tick(c, 0, 20);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_int_equal(c->n[1].n_reads, before);
	cl_free(c);
}

static bool drop_timeout_now(void *arg, struct raft_msg *m)
{
	(void)arg;
	return m->type == RAFT_MSG_TIMEOUT_NOW;
}

/* The transfer target's vote requests bypass the lease rule, so from the
 * start of a transfer to the end of the term reads take a round again. */
static void transfer_disables_lease_reads_for_the_term(void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	cl_settle(c);
	assert_int_equal(raft_read_index(c->n[1].r, 1), 0);
	cl_ready(c, 1);
	assert_true(has_read(&c->n[1], 1, NULL)); /* lease is fresh */
	c->filter = drop_timeout_now; /* the transfer cannot finish */
	assert_int_equal(raft_transfer_leader(c->n[1].r, 2), 0);
	cl_settle(c);
	assert_int_equal(raft_read_index(c->n[1].r, 2), 0);
	cl_ready(c, 1);
	assert_false(has_read(&c->n[1], 2, NULL));
	cl_settle(c);
	assert_true(has_read(&c->n[1], 2, NULL)); /* by a heartbeat round */
	/* Aborted after an election timeout: still no lease in this term. */
	cl_tick(c, 0, (int)c->cfg.election_ticks + 1);
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	assert_int_equal(raft_read_index(c->n[1].r, 3), 0);
	cl_ready(c, 1);
	assert_false(has_read(&c->n[1], 3, NULL));
	cl_settle(c);
	assert_true(has_read(&c->n[1], 3, NULL));
	cl_free(c);
}

/* A node restarted with leases on may have acknowledged a leader just
 * before crashing: it ignores vote requests for election_ticks ticks. */
static void restarted_node_ignores_votes_for_an_election_timeout(
	void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	cl_settle(c);
	cl_crash(c, 3);
	assert_int_equal(cl_restart(c, 3), 0);
	cl_isolate(c, 1);
	/* 2 campaigns; 3 (freshly restarted, never ticked) must refuse to
	 * listen, so 2 cannot win while 1's lease may hold. */
	for (int k = 0; k < 3 * (int)c->cfg.election_ticks; k++)
		cl_tick(c, 2, 1);
	assert_int_not_equal(raft_role(c->n[2].r), RAFT_LEADER);
	/* Once 3's clock ran an election timeout, 2 and 3 elect a leader. */
	raft_id lead = 0;
	for (int k = 0; k < 20 * (int)c->cfg.election_ticks && !lead; k++) {
		cl_tick(c, 2, 1);
		cl_tick(c, 3, 1);
		for (raft_id id = 2; id <= 3; id++)
			if (raft_role(c->n[id].r) == RAFT_LEADER)
				lead = id;
	}
	assert_true(lead != 0);
	cl_free(c);
}

/* A follower of a leasing leader that learns a higher term from a
 * message other than a vote request (here a late pre-vote refusal) must
 * still refuse votes in that term until its window ends, or a rival could
 * be elected while the old leader answers from its lease. */
static void higher_term_news_do_not_end_the_vote_hold(void **state)
{
	(void)state;
	struct cluster *c = lease_cluster(3);
	assert_true(cl_elect(c, 1));
	cl_settle(c);
	raft_term t = raft_current_term(c->n[3].r) + 5;
	struct raft_msg m = {.type = RAFT_MSG_PREVOTE_RESP, .from = 2,
			     .to = 3, .term = t, .reject = true};
	assert_int_equal(raft_step(c->n[3].r, &m), 0);
	assert_int_equal(raft_current_term(c->n[3].r), t);
	struct raft_status st = cl_status(c, 3);
	struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 3,
			     .term = t, .prev_index = st.last_index + 10,
			     .prev_term = t};
	assert_int_equal(raft_step(c->n[3].r, &v), 0);
	cl_ready(c, 3);
	bool refused = false, granted = false;
	for (size_t i = 0; i < c->nq; i++)
		if (c->q[i].type == RAFT_MSG_VOTE_RESP && c->q[i].from == 3) {
			refused |= c->q[i].reject;
			granted |= !c->q[i].reject;
		}
	assert_true(refused);
	assert_false(granted);
	cl_free(c);
}

static void single_node_answers_read_at_once(void **state)
{
	(void)state;
	struct cluster *c = cluster(1, NULL);
	assert_true(cl_elect(c, 1));
	assert_int_equal(cl_propose(c, 1, "solo"), 0);
	cl_settle(c);
	assert_int_equal(raft_read_index(c->n[1].r, 3), 0);
	cl_ready(c, 1);
	raft_index idx;
	assert_true(has_read(&c->n[1], 3, &idx));
	assert_int_equal(idx, cl_status(c, 1).commit);
	cl_free(c);
}

static void read_without_known_leader_fails(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_int_equal(raft_read_index(c->n[2].r, 1), RAFT_ENOTLEADER);
	cl_free(c);
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(read_index_on_leader_after_heartbeat_quorum),
		cmocka_unit_test(read_waits_for_commit_in_leader_term),
		cmocka_unit_test(read_index_via_follower),
		cmocka_unit_test(stale_leader_never_answers_reads),
		cmocka_unit_test(lease_read_answered_without_round_while_fresh),
		cmocka_unit_test(lease_expired_read_needs_heartbeat_round),
		cmocka_unit_test(lease_drop_forces_round_until_renewed),
		cmocka_unit_test(
			partitioned_lease_leader_never_answers_after_new_leader),
		cmocka_unit_test(transfer_disables_lease_reads_for_the_term),
		cmocka_unit_test(
			restarted_node_ignores_votes_for_an_election_timeout),
		cmocka_unit_test(higher_term_news_do_not_end_the_vote_hold),
		cmocka_unit_test(single_node_answers_read_at_once),
		cmocka_unit_test(read_without_known_leader_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
