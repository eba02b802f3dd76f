/*
 * random.c — one randomized simulator run for a seed.
 *
 * The seed picks a fault profile (drop/duplicate rates, delays, disk
 * latency and failures, batching limits) and drives a random mix of
 * proposals, ReadIndex requests, compactions, membership changes, leader
 * transfers, crashes/restarts and partitions/heals for `steps` ticks.
 * Safety is checked by the harness after every event; at the end the
 * faults stop and liveness is required (sim_check_liveness).
 */
#include "tests/sim/sim.h"

#include <stdio.h>
#include <string.h>

/* A tiny local PRNG for the profile (the sim has its own stream). */
static uint64_t prof_next(uint64_t *st)
{
	uint64_t x = (*st += 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#define PICK(st, arr) ((arr)[prof_next(st) % (sizeof(arr) / sizeof((arr)[0]))])

static bool chance(struct sim *s, double p)
{
	return (double)(sim_rand(s) >> 11) * (1.0 / 9007199254740992.0) < p;
}

/* A random running node, 0 if none. */
static raft_id pick_running(struct sim *s)
{
	raft_id ids[SIM_MAX_IDS];
	size_t n = 0;
	for (raft_id id = 1; id <= SIM_MAX_IDS; id++)
		if (sim_state(s, id) == SIM_RUNNING)
			ids[n++] = id;
	return n ? ids[sim_rand(s) % n] : 0;
}

static bool in_conf(const struct raft_conf *c, raft_id id, uint8_t *role)
{
	for (uint32_t k = 0; k < c->n; k++)
		if (c->nodes[k].id == id) {
			if (role)
				*role = c->nodes[k].role;
			return true;
		}
	return false;
}

/* One membership step on leader L: promote a learner, add a learner from
 * the spare ids, or remove a member, keeping voters within
 * [max(2, nodes-1), nodes+1] and ids within max_id. */
static void conf_event(struct sim *s, raft_id L, uint32_t nodes,
		       raft_id max_id)
{
	struct raft_status st;
	raft_status(sim_core(s, L), &st);
	raft_id voters[RAFT_MAX_NODES], learners[RAFT_MAX_NODES],
		spare[SIM_MAX_IDS];
	size_t nv = 0, nl = 0, ns = 0;
	for (uint32_t k = 0; k < st.conf.n; k++) {
		if (st.conf.nodes[k].role == RAFT_VOTER)
			voters[nv++] = st.conf.nodes[k].id;
		else
			learners[nl++] = st.conf.nodes[k].id;
	}
	for (raft_id id = 1; id <= max_id; id++)
		if (!in_conf(&st.conf, id, NULL))
			spare[ns++] = id;
	size_t minv = nodes > 3 ? nodes - 1 : 2;
	if (nl && chance(s, 0.6)) {
		sim_conf(s, L, RAFT_CONF_PROMOTE, learners[sim_rand(s) % nl]);
	} else if (ns && nv + nl < nodes + 2 && chance(s, 0.6)) {
		sim_conf(s, L, RAFT_CONF_ADD_LEARNER, spare[sim_rand(s) % ns]);
	} else if (nl && chance(s, 0.5)) {
		sim_conf(s, L, RAFT_CONF_REMOVE, learners[sim_rand(s) % nl]);
	} else if (nv > minv) {
		sim_conf(s, L, RAFT_CONF_REMOVE, voters[sim_rand(s) % nv]);
	}
}

/* Cut the network: isolate a node, split in two groups, or block a few
 * links one way. */
static void partition(struct sim *s, raft_id max_id)
{
	uint64_t kind = sim_rand(s) % 3;
	if (kind == 0) {
		sim_isolate(s, 1 + sim_rand(s) % max_id);
	} else if (kind == 1) {
		bool side[SIM_MAX_IDS + 1];
		for (raft_id id = 1; id <= max_id; id++)
			side[id] = sim_rand(s) & 1;
		sim_logf(s, "PARTITION split");
		for (raft_id a = 1; a <= max_id; a++)
			for (raft_id b = 1; b <= max_id; b++)
				if (side[a] != side[b])
					sim_block(s, a, b, true);
	} else {
		int links = 1 + (int)(sim_rand(s) % 3);
		for (int k = 0; k < links; k++) {
			raft_id a = 1 + sim_rand(s) % max_id;
			raft_id b = 1 + sim_rand(s) % max_id;
			sim_logf(s, "BLOCK n%llu -> n%llu",
				 (unsigned long long)a, (unsigned long long)b);
			sim_block(s, a, b, true);
		}
	}
}

int sim_random_run(const struct sim_opts *o0, uint32_t steps, char *why,
		   size_t why_cap)
{
	struct sim_opts o = *o0;
	uint64_t ps = o.seed * 0x2545f4914f6cdd1dULL + 17;
	static const uint64_t trailing[] = {4, 16, 64};
	static const uint32_t chunk[] = {256, 1024, 8192};
	static const uint64_t msgb[] = {256, 4096, 0};
	static const uint32_t inflight[] = {2, 8, 0};
	static const double drop[] = {0, 0.01, 0.03, 0.1, 0.25};
	static const double dup[] = {0, 0.01, 0.05, 0.2};
	static const uint32_t dmax[] = {5, 30, 90};
	static const uint32_t diskmax[] = {5, 50, 200};
	static const double diskfail[] = {0, 0, 0.0005, 0.003};
	static const double pcrash[] = {0.001, 0.003, 0.01};
	static const double ppart[] = {0.002, 0.005, 0.02};
	o.snapshot_trailing = PICK(&ps, trailing);
	o.snapshot_chunk_bytes = PICK(&ps, chunk);
	o.max_msg_bytes = PICK(&ps, msgb);
	o.max_inflight_msgs = PICK(&ps, inflight);
	o.faults.drop = PICK(&ps, drop);
	o.faults.dup = PICK(&ps, dup);
	o.faults.delay_min = 1;
	o.faults.delay_max = PICK(&ps, dmax);
	o.faults.slow_msg = 0.01;
	o.faults.slow_max = 400;
	o.faults.disk_min = 0;
	o.faults.disk_max = PICK(&ps, diskmax);
	o.faults.disk_fail = PICK(&ps, diskfail);
	double p_crash = PICK(&ps, pcrash);
	double p_part = PICK(&ps, ppart);
	raft_id max_id = o.nodes + 3;
	if (max_id > SIM_MAX_IDS)
		max_id = SIM_MAX_IDS;

	struct sim *s = sim_new(&o);
	uint64_t restart_at[SIM_MAX_IDS + 1] = {0};
	uint64_t heal_at = 0;
	for (uint32_t step = 0; step < steps && !sim_failure(s); step++) {
		uint64_t now = sim_now_ticks(s);
		for (raft_id id = 1; id <= max_id; id++) {
			/* a persist failure crashed it: schedule a restart */
			if (!restart_at[id] && sim_state(s, id) == SIM_CRASHED)
				restart_at[id] = now + 5 + sim_rand(s) % 300;
			if (restart_at[id] && now >= restart_at[id]) {
				restart_at[id] = 0;
				if (sim_state(s, id) == SIM_CRASHED)
					sim_restart(s, id);
			}
		}
		if (heal_at && now >= heal_at) {
			sim_heal(s);
			heal_at = 0;
		}
		raft_id L = sim_leader(s);
		if (L && chance(s, 0.3)) {
			int k = 1 + (int)(sim_rand(s) % 4);
			while (k-- > 0 && sim_core(s, L))
				sim_propose(s, L, NULL, NULL);
		}
		if (chance(s, 0.05))
			sim_read(s, pick_running(s));
		if (chance(s, 0.02))
			sim_compact(s, pick_running(s));
		L = sim_leader(s);
		if (L && chance(s, 0.004))
			conf_event(s, L, o.nodes, max_id);
		L = sim_leader(s);
		if (L && chance(s, 0.003)) {
			struct raft_status st;
			raft_status(sim_core(s, L), &st);
			raft_id t = st.conf.nodes[sim_rand(s) % st.conf.n].id;
			if (t != L)
				sim_transfer(s, L, t);
		}
		if (chance(s, p_crash)) {
			raft_id id = pick_running(s);
			if (id) {
				sim_crash(s, id);
				restart_at[id] = now + 5 + sim_rand(s) % 300;
			}
		}
		L = sim_leader(s);
		if (L && chance(s, 0.003)) {
			/* shut down a node that the leader no longer lists */
			struct raft_status st;
			raft_status(sim_core(s, L), &st);
			raft_id id = pick_running(s);
			if (id && !in_conf(&st.conf, id, NULL))
				sim_stop(s, id);
		}
		if (!heal_at && chance(s, p_part)) {
			partition(s, max_id);
			heal_at = now + 10 + sim_rand(s) % 400;
		}
		sim_run_ticks(s, 1);
	}
	if (!sim_failure(s)) {
		struct raft_config c;
		raft_config_default(&c);
		sim_check_liveness(s, 20 * c.election_ticks);
	}
	int rc = 0;
	if (sim_failure(s)) {
		snprintf(why, why_cap, "%s", sim_failure(s));
		rc = -1;
	}
	sim_free(s);
	return rc;
}
