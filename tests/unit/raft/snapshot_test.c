/*
 * snapshot_test.c — compaction, chunked InstallSnapshot to a lagging
 * follower, loss of a chunk, and resuming replication afterwards.
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

static struct cluster *snap_cluster(void)
{
	struct raft_config cfg;
	raft_config_default(&cfg);
	cfg.snapshot_trailing = 5;
	cfg.snapshot_chunk_bytes = 100;
	struct cluster *c = cl_new(3, 0, &cfg);
	c->seed = seed;
	c->snap_pad = 1000; /* 10 chunks */
	return c;
}

/* Node 3 misses 40 entries that 1 and 2 then compact away. */
static void lag_and_compact(struct cluster *c)
{
	assert_true(cl_elect(c, 1));
	cl_isolate(c, 3);
	char buf[32];
	for (int i = 0; i < 40; i++) {
		snprintf(buf, sizeof(buf), "e%d", i);
		assert_int_equal(cl_propose(c, 1, buf), 0);
	}
	cl_settle(c);
	assert_int_equal(cl_compact(c, 1), 0);
	assert_int_equal(cl_compact(c, 2), 0);
	struct raft_status st = cl_status(c, 1);
	assert_int_equal(st.first_index, st.commit - 5 + 1);
}

static void compaction_keeps_trailing_entries_and_meta(void **state)
{
	(void)state;
	struct cluster *c = snap_cluster();
	lag_and_compact(c);
	struct raft_snapshot_meta m;
	raft_snapshot_meta(c->n[1].r, &m);
	struct raft_status st = cl_status(c, 1);
	assert_int_equal(m.index, st.commit);
	assert_int_equal(m.term, st.term);
	assert_int_equal(m.conf.n, 3);
	/* Not beyond what was applied. */
	assert_int_equal(raft_compact(c->n[1].r, st.applied + 1), RAFT_EINVAL);
	cl_free(c);
}

static void lagging_follower_gets_chunked_snapshot_then_replicates(
	void **state)
{
	(void)state;
	struct cluster *c = snap_cluster();
	lag_and_compact(c);
	memset(c->sent, 0, sizeof(c->sent));
	cl_heal(c);
	cl_tick(c, 0, 30);
	raft_index commit = cl_status(c, 1).commit;
	assert_true(c->n[1].want_snapshot >= 1);
	assert_int_equal(c->n[3].snapshots_installed, 1);
	assert_true(c->sent[RAFT_MSG_SNAPSHOT] >= 10);
	assert_int_equal(c->n[3].applied, commit);
	/* The cores' own counters (metrics) tell the same story. */
	struct raft_counters lc = cl_status(c, 1).counters;
	struct raft_counters fc = cl_status(c, 3).counters;
	assert_int_equal(lc.snapshots_sent, 1);
	assert_int_equal(lc.snapshot_chunks_sent, c->sent[RAFT_MSG_SNAPSHOT]);
	assert_int_equal(fc.snapshots_installed, 1);
	assert_int_equal(cl_status(c, 2).counters.snapshots_installed, 0);
	assert_int_equal(c->n[3].hash, c->n[1].hash);
	assert_int_equal(c->n[3].n_normal, 40);
	assert_int_equal(cl_status(c, 1).progress[2], 1); /* replicate */
	assert_int_equal(cl_status(c, 3).conf.n, 3);
	for (int i = 0; i < 5; i++)
		assert_int_equal(cl_propose(c, 1, "more"), 0);
	cl_settle(c);
	assert_int_equal(c->n[3].n_normal, 45);
	assert_true(cl_consistent(c, cl_status(c, 1).commit));
	cl_free(c);
}

/* The driver may answer want_snapshot later (serializing elsewhere):
 * the core asks once until answered, asks again after
 * raft_snapshot_unavailable(), takes data at an index older than its
 * applied one as long as the log still holds it, and refuses data the log
 * moved past. */
static void snapshot_answered_late_or_not_at_all(void **state)
{
	(void)state;
	struct cluster *c = snap_cluster();
	c->n[1].defer_snapshot = true;
	lag_and_compact(c);
	raft_index at = c->n[1].applied; /* "begin": the state fixed here */
	uint64_t len;
	uint8_t *d = sm_save(c, &c->n[1], &len);
	cl_heal(c);
	cl_tick(c, 0, 30);
	/* Asked, but not at every heartbeat (6 in 30 ticks): once, and again
	 * only when check-quorum starts a new round (every 15 ticks). */
	int w = c->n[1].want_snapshot;
	assert_true(w >= 1 && w <= 3);
	assert_int_equal(c->n[3].snapshots_installed, 0);
	assert_int_equal(raft_snapshot_unavailable(c->n[1].r), 0);
	cl_tick(c, 0, 6); /* the next heartbeat asks again */
	assert_true(c->n[1].want_snapshot > w);
	/* Meanwhile entries were applied: the data is older, still fine. */
	assert_int_equal(cl_propose(c, 1, "later"), 0);
	cl_settle(c);
	assert_true(c->n[1].applied > at);
	assert_int_equal(raft_set_snapshot(c->n[1].r, at, d, len), 0);
	cl_tick(c, 0, 30);
	assert_int_equal(c->n[3].snapshots_installed, 1);
	assert_int_equal(c->n[3].applied, c->n[1].applied);
	assert_int_equal(c->n[3].hash, c->n[1].hash);
	/* Data the log has moved past is refused. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(cl_propose(c, 1, "x"), 0);
	cl_settle(c);
	assert_int_equal(cl_compact(c, 1), 0);
	assert_int_equal(raft_set_snapshot(c->n[1].r, at, d, len), RAFT_EINVAL);
	assert_int_equal(raft_snapshot_unavailable(NULL), RAFT_EINVAL);
	free(d);
	cl_free(c);
}

struct lose {
	uint64_t offset;
	int seen;
};

/* Drops the first chunk at a given offset. */
static bool lose_chunk(void *arg, struct raft_msg *m)
{
	struct lose *l = arg;
	if (m->type != RAFT_MSG_SNAPSHOT || m->offset != l->offset)
		return false;
	return l->seen++ == 0;
}

static void lost_chunk_is_resent_from_its_offset(void **state)
{
	(void)state;
	struct cluster *c = snap_cluster();
	lag_and_compact(c);
	struct lose l = {300, 0};
	c->filter = lose_chunk;
	c->farg = &l;
	cl_heal(c);
	for (int k = 0; k < 30 && l.seen == 0; k++)
		cl_tick(c, 0, 1);
	/* Stuck: the leader waits for an answer that never comes, and
	 * sends no further chunk on its own. */
	assert_int_equal(l.seen, 1);
	assert_int_equal(c->n[3].snapshots_installed, 0);
	/* A heartbeat answer shows 3 is alive: the chunk is resent. */
	cl_tick(c, 0, 30);
	assert_int_equal(l.seen, 2);
	assert_int_equal(c->n[3].snapshots_installed, 1);
	assert_int_equal(c->n[3].applied, cl_status(c, 1).commit);
	assert_true(cl_consistent(c, 0));
	cl_free(c);
}

/* Drops everything to 3, counting snapshot chunks. */
static bool drop_to_3(void *arg, struct raft_msg *m)
{
	int *chunks = arg;
	if (m->to == 3 && m->type == RAFT_MSG_SNAPSHOT)
		(*chunks)++;
	return m->to == 3;
}

static void silent_follower_gets_no_more_chunks(void **state)
{
	(void)state;
	struct cluster *c = snap_cluster();
	lag_and_compact(c);
	cl_heal(c);
	int chunks = 0;
	c->filter = drop_to_3;
	c->farg = &chunks;
	cl_tick(c, 0, 50);
	/* One chunk went out, then the leader waited for an answer. */
	assert_int_equal(chunks, 1);
	assert_int_equal(c->n[3].snapshots_installed, 0);
	c->filter = NULL;
	cl_tick(c, 0, 30);
	assert_int_equal(c->n[3].snapshots_installed, 1);
	cl_free(c);
}

int main(void)
{
	seed = cl_seed();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(compaction_keeps_trailing_entries_and_meta),
		cmocka_unit_test(
			lagging_follower_gets_chunked_snapshot_then_replicates),
		cmocka_unit_test(lost_chunk_is_resent_from_its_offset),
		cmocka_unit_test(snapshot_answered_late_or_not_at_all),
		cmocka_unit_test(silent_follower_gets_no_more_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
