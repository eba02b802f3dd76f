/*
 * restart_test.c — raft_load(): restarting from persisted state.
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

static void propose_n(struct cluster *c, raft_id l, int n, const char *tag)
{
	char buf[32];
	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s-%d", tag, i);
		assert_int_equal(cl_propose(c, l, buf), 0);
	}
	cl_settle(c);
}

static void follower_restart_keeps_term_vote_and_catches_up(void **state)
{
	(void)state;
	struct cluster *c = cluster(3, NULL);
	assert_true(cl_elect(c, 1));
	propose_n(c, 1, 10, "a");
	struct raft_status before = cl_status(c, 2);
	cl_crash(c, 2);
	propose_n(c, 1, 10, "b");
	assert_int_equal(cl_restart(c, 2), 0);
	struct raft_status after = cl_status(c, 2);
	assert_int_equal(after.term, before.term);
	assert_int_equal(after.vote, before.vote);
	assert_int_equal(after.last_index, before.last_index);
	assert_int_equal(after.conf.n, 3);
	cl_tick(c, 0, 20);
	assert_int_equal(cl_leader(c), 1);
	assert_int_equal(c->n[2].n_normal, 20);
	assert_true(cl_consistent(c, cl_status(c, 1).commit));
	cl_free(c);
}

static void whole_cluster_restart_with_snapshot_continues(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.snapshot_trailing = 3;
	struct cluster *c = cluster(3, &cfg);
	assert_true(cl_elect(c, 1));
	propose_n(c, 1, 15, "a");
	for (raft_id i = 1; i <= 3; i++)
		assert_int_equal(cl_compact(c, i), 0);
	propose_n(c, 1, 5, "b");
	raft_index commit = cl_status(c, 1).commit;
	uint64_t hash = c->n[1].hash;
	for (raft_id i = 1; i <= 3; i++)
		cl_crash(c, i);
	for (raft_id i = 1; i <= 3; i++) {
		assert_int_equal(cl_restart(c, i), 0);
		struct raft_status st = cl_status(c, i);
		assert_true(st.first_index > 1);
		assert_int_equal(st.last_index, commit);
	}
	cl_tick(c, 0, 60);
	raft_id l = cl_leader(c);
	assert_true(l != 0);
	/* Everything committed before is still there, applied again from
	 * the snapshot onwards with the same result. */
	for (raft_id i = 1; i <= 3; i++) {
		assert_true(c->n[i].applied > commit); /* + new no-op */
		assert_int_equal(c->n[i].n_normal, 20);
	}
	assert_int_equal(c->n[1].hashes[commit], hash);
	propose_n(c, l, 3, "c");
	for (raft_id i = 1; i <= 3; i++)
		assert_int_equal(c->n[i].n_normal, 23);
	assert_true(cl_consistent(c, 0));
	cl_free(c);
}

static void load_rejects_inconsistent_storage(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.id = 1;
	struct raft_hard_state hs = {.term = 3, .vote = 1, .commit = 0};
	struct raft_snapshot_meta snap = {.index = 0, .term = 0};
	snap.conf.n = 1;
	snap.conf.nodes[0].id = 1;
	struct raft_entry gap[2] = {{.term = 1, .index = 1},
				    {.term = 1, .index = 3}};
	struct raft_entry down[2] = {{.term = 2, .index = 1},
				     {.term = 1, .index = 2}};
	struct raft_entry late[1] = {{.term = 1, .index = 2}};
	struct raft_entry ok[2] = {{.term = 1, .index = 1},
				   {.term = 2, .index = 2}};
	struct {
		struct raft_entry *e;
		size_t n;
		int rc;
	} cases[] = {
		{gap, 2, RAFT_ECORRUPT},
		{down, 2, RAFT_ECORRUPT},
		{late, 1, RAFT_ECORRUPT},
		{ok, 2, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct raft *r = raft_new(&cfg);
		assert_int_equal(raft_load(r, &hs, &snap, cases[i].e,
					   cases[i].n, 0),
				 cases[i].rc);
		raft_free(r);
	}
	/* A single-node cluster restarted from that log elects itself and
	 * commits its whole log. */
	struct raft *r = raft_new(&cfg);
	assert_int_equal(raft_load(r, &hs, &snap, ok, 2, 0), 0);
	while (raft_role(r) != RAFT_LEADER)
		raft_tick(r);
	assert_int_equal(raft_current_term(r), 4);
	struct raft_ready rd;
	raft_ready(r, &rd);
	raft_persisted(r, rd.id);
	raft_advance(r, &rd);
	raft_ready(r, &rd);
	assert_int_equal(rd.n_committed, 3);
	raft_advance(r, &rd);
	raft_free(r);
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			follower_restart_keeps_term_vote_and_catches_up),
		cmocka_unit_test(
			whole_cluster_restart_with_snapshot_continues),
		cmocka_unit_test(load_rejects_inconsistent_storage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
