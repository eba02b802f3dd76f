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
		cmocka_unit_test(single_node_answers_read_at_once),
		cmocka_unit_test(read_without_known_leader_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
