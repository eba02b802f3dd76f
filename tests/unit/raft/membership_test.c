/*
 * membership_test.c — single-server configuration changes and leader
 * transfer.
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

static struct cluster *cluster(int voters, int extra)
{
	struct cluster *c = cl_new(voters, extra, NULL);
	c->seed = seed;
	return c;
}

static int role_of(const struct raft_conf *conf, raft_id id)
{
	for (uint32_t i = 0; i < conf->n; i++)
		if (conf->nodes[i].id == id)
			return conf->nodes[i].role;
	return -1;
}

static void learner_added_promoted_then_removed(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 1); /* node 4: never bootstrapped */
	assert_true(cl_elect(c, 1));
	raft_index idx;
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_ADD_LEARNER,
					   4, "node4", &idx),
			 0);
	/* One change at a time. */
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_REMOVE, 3,
					   NULL, NULL),
			 RAFT_EBUSY);
	cl_tick(c, 0, 20);
	/* 4 had no configuration: it was sent a snapshot, then entries. */
	assert_true(c->n[1].want_snapshot >= 1);
	assert_int_equal(c->n[4].snapshots_installed, 1);
	struct raft_status s4 = cl_status(c, 4);
	assert_int_equal(role_of(&s4.conf, 4), RAFT_LEARNER);
	assert_string_equal(s4.conf.nodes[3].addr, "node4");
	assert_int_equal(c->n[4].applied, cl_status(c, 1).commit);
	/* A learner never campaigns. */
	cl_isolate(c, 4);
	cl_tick(c, 4, 200);
	assert_int_equal(c->n[4].events[RAFT_EV_ELECTION], 0);
	assert_int_equal(raft_role(c->n[4].r), RAFT_FOLLOWER);
	/* Promotion waits until the learner is within promote_lag. */
	for (int i = 0; i < 80; i++)
		assert_int_equal(cl_propose(c, 1, "x"), 0);
	cl_settle(c);
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_PROMOTE, 4,
					   NULL, NULL),
			 RAFT_EAGAIN);
	cl_heal(c);
	cl_tick(c, 0, 30);
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_PROMOTE, 4,
					   NULL, NULL),
			 0);
	cl_settle(c);
	for (raft_id i = 1; i <= 4; i++) {
		struct raft_status st = cl_status(c, i);
		assert_int_equal(st.conf.n, 4);
		assert_int_equal(role_of(&st.conf, 4), RAFT_VOTER);
	}
	/* Now 4 votes: with 2 and 3 gone, 1 and 4 are not a majority of
	 * four voters... */
	cl_cut(c, 1, 2);
	cl_cut(c, 1, 3);
	raft_index before = cl_status(c, 1).commit;
	assert_int_equal(cl_propose(c, 1, "y"), 0);
	cl_tick(c, 1, 3);
	assert_int_equal(cl_status(c, 1).commit, before);
	/* ...with 2 back they are. */
	cl_heal(c);
	cl_tick(c, 0, 20);
	assert_true(cl_status(c, 1).commit > before);
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_REMOVE, 4,
					   NULL, NULL),
			 0);
	cl_tick(c, 0, 20);
	for (raft_id i = 1; i <= 3; i++) {
		struct raft_status st = cl_status(c, i);
		assert_int_equal(st.conf.n, 3);
		assert_int_equal(role_of(&st.conf, 4), -1);
	}
	assert_true(cl_consistent(c, 0));
	cl_free(c);
}

static void learner_does_not_count_in_quorum(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 1);
	assert_true(cl_elect(c, 1));
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_ADD_LEARNER,
					   4, NULL, NULL),
			 0);
	cl_tick(c, 0, 20);
	assert_int_equal(cl_status(c, 4).conf.n, 4);
	cl_cut(c, 1, 2);
	cl_cut(c, 1, 3);
	raft_index before = cl_status(c, 1).commit;
	assert_int_equal(cl_propose(c, 1, "z"), 0);
	cl_tick(c, 1, 5);
	assert_true(cl_status(c, 4).last_index > before); /* 4 has it */
	assert_int_equal(cl_status(c, 1).commit, before);
	cl_free(c);
}

static bool drop_resp_to_1(void *arg, struct raft_msg *m)
{
	(void)arg;
	return m->type == RAFT_MSG_APPEND_RESP && m->to == 1;
}

static void conf_change_needs_commit_in_leader_term(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 1);
	c->filter = drop_resp_to_1;
	assert_true(cl_elect(c, 1));
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_ADD_LEARNER,
					   4, NULL, NULL),
			 RAFT_EBUSY);
	c->filter = NULL;
	cl_tick(c, 0, 20);
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_ADD_LEARNER,
					   4, NULL, NULL),
			 0);
	assert_int_equal(raft_propose_conf(c->n[2].r, RAFT_CONF_ADD_LEARNER,
					   5, NULL, NULL),
			 RAFT_ENOTLEADER);
	cl_free(c);
}

static void leader_removes_itself_and_steps_down(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 0);
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 1);
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_REMOVE, 1,
					   NULL, NULL),
			 0);
	cl_tick(c, 1, 3);
	/* Not committed yet: still leading. */
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	cl_heal(c);
	for (int k = 0; k < 40 && raft_role(c->n[1].r) == RAFT_LEADER; k++)
		cl_tick(c, 0, 1);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_true(c->n[1].events[RAFT_EV_STEPDOWN] >= 1);
	int elections = c->n[1].events[RAFT_EV_ELECTION];
	cl_tick(c, 0, 100);
	raft_id l = cl_leader(c);
	assert_true(l == 2 || l == 3);
	assert_int_equal(c->n[1].events[RAFT_EV_ELECTION], elections);
	struct raft_status st = cl_status(c, l);
	assert_int_equal(st.conf.n, 2);
	assert_int_equal(role_of(&st.conf, 1), -1);
	/* The two left commit on their own. */
	assert_int_equal(cl_propose(c, l, "after"), 0);
	cl_settle(c);
	assert_int_equal(cl_status(c, l).commit, cl_status(c, l).last_index);
	cl_free(c);
}

static void leader_transfer_to_follower(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 0);
	assert_true(cl_elect(c, 1));
	raft_term t = raft_current_term(c->n[1].r);
	/* Target lags: it is brought up to date first. */
	cl_isolate(c, 3);
	for (int i = 0; i < 10; i++)
		assert_int_equal(cl_propose(c, 1, "t"), 0);
	cl_settle(c);
	cl_heal(c);
	assert_int_equal(raft_transfer_leader(c->n[1].r, 3), 0);
	assert_int_equal(cl_status(c, 1).transferee, 3);
	assert_int_equal(cl_propose(c, 1, "no"), RAFT_EBUSY);
	cl_tick(c, 0, 14);
	assert_int_equal(cl_leader(c), 3);
	assert_int_equal(raft_current_term(c->n[3].r), t + 1);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_int_equal(c->n[3].n_normal, 10);
	assert_true(cl_consistent(c, 0));
	assert_int_equal(raft_transfer_leader(c->n[1].r, 2), RAFT_ENOTLEADER);
	assert_int_equal(raft_transfer_leader(c->n[3].r, 9), RAFT_EINVAL);
	cl_free(c);
}

static void leader_transfer_aborts_after_election_timeout(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, 0);
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 3);
	assert_int_equal(cl_propose(c, 1, "t"), 0);
	cl_settle(c);
	assert_int_equal(raft_transfer_leader(c->n[1].r, 3), 0);
	cl_tick(c, 1, 14);
	assert_int_equal(cl_propose(c, 1, "no"), RAFT_EBUSY);
	cl_tick(c, 1, 2);
	assert_int_equal(cl_status(c, 1).transferee, 0);
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	assert_int_equal(cl_propose(c, 1, "yes"), 0);
	assert_true(c->n[1].events[RAFT_EV_TRANSFER] >= 2);
	cl_free(c);
}

static void conf_change_entry_round_trip(void **state)
{
	(void)state;
	struct cluster *c = cluster(1, 0);
	assert_true(cl_elect(c, 1));
	raft_index idx;
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_ADD_LEARNER,
					   77, "10.0.0.7:7000", &idx),
			 0);
	cl_settle(c);
	struct h_node *n = &c->n[1];
	const struct raft_entry *e = &n->log[n->n_log - 1];
	assert_int_equal(e->type, RAFT_ENTRY_CONF);
	uint8_t op;
	raft_id id;
	char addr[RAFT_ADDR_MAX];
	assert_int_equal(raft_conf_change_decode(e->data, e->len, &op, &id,
						 addr, sizeof(addr)),
			 0);
	assert_int_equal(op, RAFT_CONF_ADD_LEARNER);
	assert_int_equal(id, 77);
	assert_string_equal(addr, "10.0.0.7:7000");
	assert_int_equal(raft_conf_change_decode(e->data, e->len - 1, &op,
						 &id, addr, sizeof(addr)),
			 RAFT_EINVAL);
	/* The last voter cannot be removed. */
	assert_int_equal(raft_propose_conf(c->n[1].r, RAFT_CONF_REMOVE, 1,
					   NULL, NULL),
			 RAFT_EINVAL);
	cl_free(c);
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(learner_added_promoted_then_removed),
		cmocka_unit_test(learner_does_not_count_in_quorum),
		cmocka_unit_test(conf_change_needs_commit_in_leader_term),
		cmocka_unit_test(leader_removes_itself_and_steps_down),
		cmocka_unit_test(leader_transfer_to_follower),
		cmocka_unit_test(leader_transfer_aborts_after_election_timeout),
		cmocka_unit_test(conf_change_entry_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
