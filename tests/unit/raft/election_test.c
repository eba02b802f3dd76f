/*
 * election_test.c — leader election, votes, pre-vote, check-quorum, the
 * leader lease on votes, and validation of peer input.
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

/* A lone core in a bootstrapped 3-node conf, driven by hand. */
static struct raft *lone(raft_id id, bool pre_vote, bool check_quorum)
{
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.id = id;
	cfg.seed = seed;
	cfg.pre_vote = pre_vote;
	cfg.check_quorum = check_quorum;
	struct raft *r = raft_new(&cfg);
	assert_non_null(r);
	struct raft_conf conf = {0};
	for (int i = 1; i <= 3; i++) {
		conf.nodes[i - 1].id = (raft_id)i;
		conf.nodes[i - 1].role = RAFT_VOTER;
	}
	conf.n = 3;
	assert_int_equal(raft_bootstrap(r, &conf), 0);
	return r;
}

/* Finds a message of type `type` to `to` in an array; NULL if none. */
static const struct raft_msg *find(const struct raft_msg *m, size_t n,
				   uint8_t type, raft_id to)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].type == type && (to == 0 || m[i].to == to))
			return &m[i];
	return NULL;
}

static struct raft_msg vote_req(raft_id from, raft_id to, raft_term term,
				raft_index li, raft_term lt)
{
	struct raft_msg m = {0};
	m.type = RAFT_MSG_VOTE;
	m.from = from;
	m.to = to;
	m.term = term;
	m.prev_index = li;
	m.prev_term = lt;
	return m;
}

static void election_elects_one_leader_all_agree(void **state)
{
	(void)state;
	struct cluster *c = cl_new(3, 0, NULL);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	cl_tick(c, 0, 3);
	assert_int_equal(cl_leader(c), 1);
	raft_term t = raft_current_term(c->n[1].r);
	for (raft_id i = 2; i <= 3; i++) {
		assert_int_equal(raft_role(c->n[i].r), RAFT_FOLLOWER);
		assert_int_equal(raft_leader(c->n[i].r), 1);
		assert_int_equal(raft_current_term(c->n[i].r), t);
	}
	/* Left alone, the cluster keeps its leader (heartbeats). */
	cl_tick(c, 0, 200);
	assert_int_equal(cl_leader(c), 1);
	assert_int_equal(raft_current_term(c->n[1].r), t);
	/* The counters metrics show: one won election, on node 1 only. */
	struct raft_counters k1 = cl_status(c, 1).counters;
	assert_int_equal(k1.elections_won, 1);
	assert_true(k1.elections >= 1);
	for (raft_id i = 2; i <= 3; i++)
		assert_int_equal(cl_status(c, i).counters.elections_won, 0);
	cl_free(c);
}

static void election_timeout_is_random_in_T_2T(void **state)
{
	(void)state;
	uint32_t T = 15, lo = 1000, hi = 0;
	for (uint64_t s = 0; s < 200; s++) {
		struct raft_config cfg;
		raft_config_default(&cfg);
		cfg.id = 1;
		cfg.seed = seed + s;
		struct raft *r = raft_new(&cfg);
		struct raft_conf conf = {.n = 2};
		conf.nodes[0].id = 1;
		conf.nodes[1].id = 2;
		assert_int_equal(raft_bootstrap(r, &conf), 0);
		uint32_t ticks = 0;
		while (raft_role(r) == RAFT_FOLLOWER && ticks < 100) {
			raft_tick(r);
			ticks++;
		}
		assert_int_equal(raft_role(r), RAFT_PRE_CANDIDATE);
		lo = ticks < lo ? ticks : lo;
		hi = ticks > hi ? ticks : hi;
		raft_free(r);
	}
	assert_true(lo >= T);
	assert_true(hi < 2 * T);
	assert_true(hi - lo >= T / 2); /* actually random */
}

static void vote_granted_once_per_term(void **state)
{
	(void)state;
	struct raft *r = lone(3, true, true);
	struct raft_ready rd;
	struct raft_msg m = vote_req(1, 3, 5, 0, 0);
	assert_int_equal(raft_step(r, &m), 0);
	assert_true(raft_ready(r, &rd));
	const struct raft_msg *o = find(rd.msgs_after_persist,
					rd.n_msgs_after_persist,
					RAFT_MSG_VOTE_RESP, 1);
	assert_non_null(o);
	assert_false(o->reject);
	assert_true(rd.has_hs);
	assert_int_equal(rd.hs.vote, 1);
	assert_int_equal(rd.hs.term, 5);
	raft_persisted(r, rd.id);
	raft_advance(r, &rd);
	/* Another candidate, same term: refused. */
	m = vote_req(2, 3, 5, 10, 4);
	raft_step(r, &m);
	assert_true(raft_ready(r, &rd));
	o = find(rd.msgs_after_persist, rd.n_msgs_after_persist,
		 RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(o);
	assert_true(o->reject);
	raft_advance(r, &rd);
	/* The same candidate again (a retry): granted again. */
	m = vote_req(1, 3, 5, 0, 0);
	raft_step(r, &m);
	assert_true(raft_ready(r, &rd));
	o = find(rd.msgs_after_persist, rd.n_msgs_after_persist,
		 RAFT_MSG_VOTE_RESP, 1);
	assert_non_null(o);
	assert_false(o->reject);
	raft_advance(r, &rd);
	raft_free(r);
}

static void vote_refused_to_candidate_with_older_log(void **state)
{
	(void)state;
	struct raft *r = lone(3, true, false); /* no lease: votes right after APPEND */
	/* Give r a log: entries 1..3 at term 2 from leader 1. */
	struct raft_entry e[3];
	for (int i = 0; i < 3; i++)
		e[i] = (struct raft_entry){.term = 2, .index = (raft_index)i + 1};
	struct raft_msg a = {.type = RAFT_MSG_APPEND, .from = 1, .to = 3,
			     .term = 2, .n_entries = 3, .entries = e};
	assert_int_equal(raft_step(r, &a), 0);
	struct raft_ready rd;
	raft_ready(r, &rd);
	raft_persisted(r, rd.id);
	raft_advance(r, &rd);
	struct {
		raft_index li;
		raft_term lt;
		bool grant;
	} cases[] = {
		{5, 1, false}, /* older last term, longer log */
		{2, 2, false}, /* same term, shorter */
		{3, 2, true},  /* same term, same length */
	};
	for (int k = 0; k < 3; k++) {
		/* Each at a fresh term so the vote is free. */
		struct raft_msg m =
			vote_req(2, 3, 10 + (raft_term)k, cases[k].li,
				 cases[k].lt);
		raft_step(r, &m);
		raft_ready(r, &rd);
		const struct raft_msg *o =
			find(rd.msgs_after_persist, rd.n_msgs_after_persist,
			     RAFT_MSG_VOTE_RESP, 2);
		assert_non_null(o);
		assert_int_equal(o->reject, !cases[k].grant);
		raft_persisted(r, rd.id);
		raft_advance(r, &rd);
	}
	/* A newer last term wins even with a shorter log. */
	struct raft_msg m = vote_req(1, 3, 20, 1, 3);
	raft_step(r, &m);
	raft_ready(r, &rd);
	const struct raft_msg *o = find(rd.msgs_after_persist,
					rd.n_msgs_after_persist,
					RAFT_MSG_VOTE_RESP, 1);
	assert_non_null(o);
	assert_false(o->reject);
	raft_advance(r, &rd);
	raft_free(r);
}

static void prevote_keeps_partitioned_node_term(void **state)
{
	(void)state;
	for (int pv = 1; pv >= 0; pv--) {
		struct raft_config cfg;
		raft_config_default(&cfg);
		cfg.pre_vote = pv;
		struct cluster *c = cl_new(3, 0, &cfg);
		c->seed = seed;
		assert_true(cl_elect(c, 1));
		raft_term t = raft_current_term(c->n[1].r);
		cl_isolate(c, 3);
		cl_tick(c, 0, 10 * 15);
		if (pv) {
			/* No term inflation while cut off... */
			assert_int_equal(raft_current_term(c->n[3].r), t);
			cl_heal(c);
			cl_tick(c, 0, 30);
			/* ...so the healthy leader is not disturbed. */
			assert_int_equal(cl_leader(c), 1);
			assert_int_equal(raft_current_term(c->n[1].r), t);
		} else {
			/* Without pre-vote the term does inflate (so the
			 * check above can fail). */
			assert_true(raft_current_term(c->n[3].r) > t + 2);
		}
		cl_free(c);
	}
}

static void check_quorum_leader_steps_down_when_cut_off(void **state)
{
	(void)state;
	struct cluster *c = cl_new(3, 0, NULL);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 1);
	cl_tick(c, 1, 14);
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	cl_tick(c, 1, 16);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_true(c->n[1].events[RAFT_EV_STEPDOWN] >= 1);
	assert_int_equal(raft_leader(c->n[1].r), 0);
	cl_free(c);
}

static void leader_with_majority_does_not_step_down(void **state)
{
	(void)state;
	struct cluster *c = cl_new(3, 0, NULL);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 3);
	cl_tick(c, 0, 100);
	assert_int_equal(cl_leader(c), 1);
	assert_int_equal(c->n[1].events[RAFT_EV_STEPDOWN], 0);
	cl_free(c);
}

static void votes_from_non_members_ignored(void **state)
{
	(void)state;
	struct raft *r = lone(1, true, true);
	/* Node 9 is not a voter here and its log is no further than ours. */
	struct raft_msg m = vote_req(9, 1, 5, 0, 0);
	assert_int_equal(raft_step(r, &m), 0);
	struct raft_ready rd;
	raft_ready(r, &rd);
	assert_int_equal(rd.n_msgs + rd.n_msgs_after_persist, 0);
	raft_advance(r, &rd);
	/* A pre-vote from outside the configuration: ignored too. */
	m.type = RAFT_MSG_PREVOTE;
	raft_step(r, &m);
	raft_ready(r, &rd);
	assert_int_equal(rd.n_msgs + rd.n_msgs_after_persist, 0);
	raft_advance(r, &rd);
	/* A (pre-)vote answer from a non-member does not count: a lone
	 * pre-candidate in a 3-node conf must not win with node 9's grant. */
	while (raft_role(r) == RAFT_FOLLOWER)
		raft_tick(r);
	assert_int_equal(raft_role(r), RAFT_PRE_CANDIDATE);
	struct raft_msg g = {.type = RAFT_MSG_PREVOTE_RESP, .from = 9,
			     .to = 1, .term = raft_current_term(r) + 1};
	raft_step(r, &g);
	assert_int_equal(raft_role(r), RAFT_PRE_CANDIDATE);
	g.from = 2;
	raft_step(r, &g);
	assert_int_equal(raft_role(r), RAFT_CANDIDATE);
	raft_free(r);
}

/* Thesis §4.1: a server votes without consulting its own configuration,
 * which may lag the log. A non-voter (here: a node whose configuration does
 * not list itself) still grants a vote to an up-to-date candidate, and a
 * candidate outside our voters whose log is strictly ahead of ours gets the
 * vote too (our configuration may be the stale one). */
static void stale_configuration_does_not_block_votes(void **state)
{
	(void)state;
	struct raft *r = lone(1, true, true);
	struct raft_msg m = vote_req(9, 1, 5, 100, 100);
	assert_int_equal(raft_step(r, &m), 0);
	struct raft_ready rd;
	raft_ready(r, &rd);
	const struct raft_msg *o =
		find(rd.msgs_after_persist, rd.n_msgs_after_persist,
		     RAFT_MSG_VOTE_RESP, 9);
	assert_non_null(o);
	assert_false(o->reject);
	raft_advance(r, &rd);
	raft_free(r);

	/* Node 4 believes it is a learner (bootstrap conf lists 1..3 as
	 * voters and 4 as learner); it still votes for voter 2. */
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.id = 4;
	cfg.seed = seed;
	r = raft_new(&cfg);
	struct raft_conf conf = {0};
	for (int i = 1; i <= 4; i++) {
		conf.nodes[i - 1].id = (raft_id)i;
		conf.nodes[i - 1].role = i == 4 ? RAFT_LEARNER : RAFT_VOTER;
	}
	conf.n = 4;
	assert_int_equal(raft_bootstrap(r, &conf), 0);
	m = vote_req(2, 4, 3, 0, 0);
	assert_int_equal(raft_step(r, &m), 0);
	raft_ready(r, &rd);
	o = find(rd.msgs_after_persist, rd.n_msgs_after_persist,
		 RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(o);
	assert_false(o->reject);
	raft_advance(r, &rd);
	raft_free(r);
}

static void vote_ignored_within_leader_lease(void **state)
{
	(void)state;
	struct cluster *c = cl_new(3, 0, NULL);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	raft_term t = raft_current_term(c->n[3].r);
	/* Node 3 just heard from leader 1: a vote request from 2 with a
	 * higher term is ignored, term untouched, no answer. */
	struct raft_msg m = vote_req(2, 3, t + 1, 1000, t);
	int drops = c->n[3].events[RAFT_EV_DROP];
	raft_step(c->n[3].r, &m);
	assert_int_equal(raft_current_term(c->n[3].r), t);
	assert_int_equal(c->n[3].events[RAFT_EV_DROP], drops + 1);
	m.type = RAFT_MSG_PREVOTE;
	raft_step(c->n[3].r, &m);
	assert_int_equal(c->n[3].events[RAFT_EV_DROP], drops + 2);
	struct raft_ready rd;
	raft_ready(c->n[3].r, &rd);
	assert_null(find(rd.msgs_after_persist, rd.n_msgs_after_persist,
			 RAFT_MSG_VOTE_RESP, 2));
	assert_null(find(rd.msgs, rd.n_msgs, RAFT_MSG_PREVOTE_RESP, 2));
	raft_advance(c->n[3].r, &rd);
	/* With the transfer flag (leader transfer), it is considered. */
	m.type = RAFT_MSG_VOTE;
	m.transfer = true;
	raft_step(c->n[3].r, &m);
	assert_int_equal(raft_current_term(c->n[3].r), t + 1);
	cl_free(c);
}

static void stale_leader_learns_new_term_and_steps_down(void **state)
{
	(void)state;
	/* Without check-quorum the cut-off leader keeps leading and the
	 * others do not honour its lease, so 2 can be elected meanwhile. */
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.check_quorum = false;
	struct cluster *c = cl_new(3, 0, &cfg);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 1);
	assert_true(cl_elect(c, 2));
	raft_term t2 = raft_current_term(c->n[2].r);
	/* Old leader 1 still thinks it leads (until check-quorum). */
	assert_int_equal(raft_role(c->n[1].r), RAFT_LEADER);
	cl_heal(c);
	/* Its next heartbeat is answered with the newer term. */
	cl_tick(c, 1, 5);
	assert_int_equal(raft_role(c->n[1].r), RAFT_FOLLOWER);
	assert_int_equal(raft_current_term(c->n[1].r), t2);
	cl_tick(c, 0, 20);
	assert_int_equal(cl_leader(c), 2);
	cl_free(c);
}

static void bad_messages_dropped_with_trace(void **state)
{
	(void)state;
	struct cluster *c = cl_new(3, 0, NULL);
	c->seed = seed;
	assert_true(cl_elect(c, 1));
	struct raft *r = c->n[2].r;
	raft_term t = raft_current_term(r);
	struct raft_status before = cl_status(c, 2);
	struct raft_entry e[2] = {{.term = t, .index = 5},
				  {.term = t, .index = 7}};
	struct raft_entry big[2] = {{.term = t, .index = UINT64_MAX},
				    {.term = t, .index = 0}};
	struct raft_entry nodata = {.term = t, .index = 2, .len = 5};
	struct raft_msg bad[] = {
		{.type = 0, .from = 1, .to = 2, .term = t},
		{.type = 99, .from = 1, .to = 2, .term = t},
		{.type = RAFT_MSG_APPEND, .from = 0, .to = 2, .term = t},
		{.type = RAFT_MSG_APPEND, .from = 2, .to = 2, .term = t},
		{.type = RAFT_MSG_APPEND, .from = 1, .to = 3, .term = t},
		{.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = t,
		 .prev_index = 4, .n_entries = 2, .entries = e},
		{.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = t,
		 .prev_index = UINT64_MAX - 1, .n_entries = 2,
		 .entries = big},
		{.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = t,
		 .prev_index = 1, .n_entries = 1, .entries = &nodata},
		{.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = t,
		 .n_entries = 3, .entries = NULL},
		{.type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = t + 1,
		 .n_entries = 2, .entries = e},
		{.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = t,
		 .snap = {.index = 0}},
		{.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = t,
		 .snap = {.index = 5, .conf = {.n = 99}}},
		{.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = t,
		 .snap = {.index = 5, .conf = {.n = 1}}, .offset = UINT64_MAX,
		 .len = 10, .data = (uint8_t *)"0123456789"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int drops = c->n[2].events[RAFT_EV_DROP];
		assert_int_equal(raft_step(r, &bad[i]), RAFT_EINVAL);
		assert_int_equal(c->n[2].events[RAFT_EV_DROP], drops + 1);
	}
	assert_int_equal(raft_step(r, NULL), RAFT_EINVAL);
	struct raft_status after = cl_status(c, 2);
	assert_int_equal(after.term, before.term);
	assert_int_equal(after.last_index, before.last_index);
	assert_int_equal(after.commit, before.commit);
	cl_settle(c);
	assert_int_equal(cl_leader(c), 1);
	cl_free(c);
}

static void new_rejects_bad_config(void **state)
{
	(void)state;
	struct raft_config cfg;
	raft_config_default(&cfg);
	assert_null(raft_new(&cfg)); /* id 0 */
	cfg.id = 1;
	cfg.heartbeat_ticks = cfg.election_ticks;
	assert_null(raft_new(&cfg));
	assert_null(raft_new(NULL));
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(election_elects_one_leader_all_agree),
		cmocka_unit_test(election_timeout_is_random_in_T_2T),
		cmocka_unit_test(vote_granted_once_per_term),
		cmocka_unit_test(vote_refused_to_candidate_with_older_log),
		cmocka_unit_test(prevote_keeps_partitioned_node_term),
		cmocka_unit_test(check_quorum_leader_steps_down_when_cut_off),
		cmocka_unit_test(leader_with_majority_does_not_step_down),
		cmocka_unit_test(votes_from_non_members_ignored),
		cmocka_unit_test(stale_configuration_does_not_block_votes),
		cmocka_unit_test(vote_ignored_within_leader_lease),
		cmocka_unit_test(stale_leader_learns_new_term_and_steps_down),
		cmocka_unit_test(bad_messages_dropped_with_trace),
		cmocka_unit_test(new_rejects_bad_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
