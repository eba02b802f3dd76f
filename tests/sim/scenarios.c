/*
 * scenarios.c — deterministic, named simulator scenarios.
 *
 * Each scenario builds a calm cluster (no random faults), forces one
 * known-hard situation with partitions, crashes, message filters and
 * hooks, asserts the specific outcome Raft promises for it, and ends with
 * the general liveness check. The harness checks every safety invariant
 * all along (sim.c).
 */
#include "tests/sim/sim.h"

#include <stdio.h>
#include <string.h>

#define ET 15 /* election ticks used by the scenarios (the default) */

#define REQUIRE(cond, ...)                                             \
	do {                                                           \
		if (!(cond)) {                                         \
			snprintf(why, cap, __VA_ARGS__);               \
			return -1;                                     \
		}                                                      \
	} while (0)

static struct sim_opts calm(uint64_t seed, uint32_t nodes, bool verbose)
{
	struct sim_opts o = {0};
	o.seed = seed;
	o.nodes = nodes;
	o.verbose = verbose;
	o.election_ticks = ET;
	o.faults.delay_min = 1;
	o.faults.delay_max = 10;
	o.faults.disk_min = 1;
	o.faults.disk_max = 10;
	return o;
}

static bool has_leader(struct sim *s, void *arg)
{
	(void)arg;
	return sim_leader(s) != 0;
}

static raft_term term_of(struct sim *s, raft_id id)
{
	struct raft *r = sim_core(s, id);
	return r ? raft_current_term(r) : 0;
}

static void status_of(struct sim *s, raft_id id, struct raft_status *st)
{
	memset(st, 0, sizeof *st);
	struct raft *r = sim_core(s, id);
	if (r)
		raft_status(r, st);
}

struct applied_arg {
	raft_id ids[SIM_MAX_IDS];
	size_t n;
	raft_index index;
};

static bool all_applied(struct sim *s, void *arg)
{
	struct applied_arg *a = arg;
	for (size_t k = 0; k < a->n; k++)
		if (sim_applied(s, a->ids[k]) < a->index)
			return false;
	return true;
}

/* Propose one entry on the leader and wait until every running member of
 * its configuration applied it. Returns its index, 0 on failure. */
static raft_index commit_everywhere(struct sim *s, uint32_t max_ticks)
{
	if (sim_run_until(s, has_leader, NULL, max_ticks) != 0)
		return 0;
	raft_id L = sim_leader(s);
	raft_index idx;
	raft_term t;
	if (sim_propose(s, L, &idx, &t) != 0)
		return 0;
	struct applied_arg a = {.index = idx};
	struct raft_status st;
	raft_status(sim_core(s, L), &st);
	for (uint32_t k = 0; k < st.conf.n; k++)
		if (sim_state(s, st.conf.nodes[k].id) == SIM_RUNNING)
			a.ids[a.n++] = st.conf.nodes[k].id;
	if (sim_run_until(s, all_applied, &a, max_ticks) != 0)
		return 0;
	return sim_applied_term(s, L, idx) == t ? idx : 0;
}

/* A follower of L (the first running node that is not L). */
static raft_id follower_of(struct sim *s, raft_id L, raft_id not)
{
	for (raft_id id = 1; id <= SIM_MAX_IDS; id++)
		if (id != L && id != not && sim_state(s, id) == SIM_RUNNING)
			return id;
	return 0;
}

static int finish(struct sim *s, char *why, size_t cap)
{
	if (!sim_failure(s))
		sim_check_liveness(s, 20 * ET);
	REQUIRE(!sim_failure(s), "%s", sim_failure(s));
	return 0;
}

/* ---- 1 ------------------------------------------------------------------- */

/* A follower isolated for many election timeouts rejoins without forcing
 * an election: with pre-vote (thesis §9.6) its campaigns never raise its
 * term, so the leader's term is unchanged afterwards. */
static int sc_disruptive_rejoin(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	raft_term T = term_of(s, L);
	raft_id F = follower_of(s, L, 0);
	sim_isolate(s, F);
	sim_run_ticks(s, 20 * ET);
	REQUIRE(term_of(s, F) <= T,
		"isolated follower n%llu raised its term to %llu (leader "
		"term %llu): pre-vote should prevent it",
		(unsigned long long)F, (unsigned long long)term_of(s, F),
		(unsigned long long)T);
	sim_heal(s);
	sim_run_ticks(s, 10 * ET);
	REQUIRE(sim_leader(s) == L && term_of(s, L) == T,
		"rejoin disrupted the leader: leader n%llu term %llu before, "
		"n%llu term %llu after",
		(unsigned long long)L, (unsigned long long)T,
		(unsigned long long)sim_leader(s),
		(unsigned long long)term_of(s, sim_leader(s)));
	REQUIRE(commit_everywhere(s, 40 * ET), "no commit after rejoin");
	return finish(s, why, cap);
}

/* ---- 2 ------------------------------------------------------------------- */

struct leader_not_arg {
	raft_id a, b;
};

static bool leader_not(struct sim *s, void *arg)
{
	struct leader_not_arg *x = arg;
	raft_id L = sim_leader(s);
	return L && L != x->a && L != x->b;
}

/* A node left behind at a lower term (and shorter log) comes back just as
 * the leader crashes; the quorum needs its vote. Pre-vote must still
 * elect a leader: the lower-term node grants pre-votes to an up-to-date
 * candidate and learns the term from the replies. */
static int sc_prevote_lower_term(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	raft_id E = follower_of(s, L, 0);
	sim_isolate(s, E);
	sim_crash(s, L);
	struct leader_not_arg na = {L, E};
	REQUIRE(sim_run_until(s, leader_not, &na, 40 * ET) == 0,
		"no new leader after crashing n%llu", (unsigned long long)L);
	raft_id L2 = sim_leader(s);
	for (int k = 0; k < 5; k++)
		sim_propose(s, L2, NULL, NULL);
	sim_run_ticks(s, 3 * ET);
	raft_term lowT = term_of(s, E);
	REQUIRE(lowT < term_of(s, L2), "isolated node not behind in term");
	/* heal E and crash the new leader at once: 3 of 5 remain */
	sim_heal(s);
	sim_crash(s, L2);
	struct leader_not_arg nb = {L, L2};
	REQUIRE(sim_run_until(s, leader_not, &nb, 20 * ET) == 0,
		"no leader elected with the lower-term node n%llu (term %llu) "
		"in the quorum",
		(unsigned long long)E, (unsigned long long)lowT);
	REQUIRE(sim_leader(s) != E,
		"n%llu with a stale log won the election",
		(unsigned long long)E);
	REQUIRE(commit_everywhere(s, 40 * ET), "no commit afterwards");
	sim_restart(s, L);
	sim_restart(s, L2);
	return finish(s, why, cap);
}

/* ---- 3 ------------------------------------------------------------------- */

struct f8 {
	int phase;
	raft_id A, C; /* old leader, the node that gets X */
	raft_index k; /* committed before; X is at k + 1 */
};

/* Phase 1: entries never leave the new leader (only heartbeats pass).
 * Phase 2: A's appends to C carry nothing past k + 1 (X only).
 * Phase 3: A crashed; what it had in flight is lost. */
static bool f8_filter(void *arg, struct raft_msg *m)
{
	struct f8 *f = arg;
	if (f->phase == 3)
		return m->from == f->A;
	if (m->type != RAFT_MSG_APPEND || !m->n_entries)
		return false;
	if (f->phase == 1)
		return m->from != f->A;
	if (f->phase == 2 && m->from == f->A && m->to == f->C) {
		uint32_t keep = 0;
		while (keep < m->n_entries &&
		       m->entries[keep].index <= f->k + 1)
			keep++;
		m->n_entries = keep;
		if (!keep)
			m->entries = NULL;
	}
	return false;
}

struct commit_watch {
	raft_id id;
	raft_index limit;
	bool broken;
};

static bool commit_exceeds(struct sim *s, void *arg)
{
	struct commit_watch *w = arg;
	struct raft_status st;
	status_of(s, w->id, &st);
	if (st.role == RAFT_LEADER && st.commit > w->limit)
		w->broken = true;
	return w->broken;
}

struct is_leader_arg {
	raft_id id;
	raft_term above;
};

static bool is_leader(struct sim *s, void *arg)
{
	struct is_leader_arg *x = arg;
	struct raft *r = sim_core(s, x->id);
	return r && raft_role(r) == RAFT_LEADER &&
	       raft_current_term(r) > x->above;
}

/* Raft paper Figure 8 on three nodes: "a leader cannot determine
 * commitment using log entries from older terms" (§5.4.2). A leader of
 * term t3 that has its term-t1 entry X on a majority (itself and C) must
 * not mark X committed by counting replicas; when it crashes, B (holding a
 * term-t2 entry at the same index) is elected and overwrites X on C. */
static int sc_figure8(struct sim *s, char *why, size_t cap)
{
	struct f8 f = {0};
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	f.A = sim_leader(s);
	struct raft_status st;
	status_of(s, f.A, &st);
	f.k = st.commit;
	raft_term t1 = st.term;
	sim_set_filter(s, f8_filter, &f);
	sim_isolate(s, f.A);
	raft_index x;
	raft_term xt;
	REQUIRE(sim_propose(s, f.A, &x, &xt) == 0 && x == f.k + 1,
		"X not appended at k+1");
	f.phase = 1;
	struct leader_not_arg na = {f.A, 0};
	REQUIRE(sim_run_until(s, leader_not, &na, 40 * ET) == 0,
		"no leader among the majority");
	raft_id B = sim_leader(s);
	raft_term t2 = term_of(s, B);
	f.C = follower_of(s, f.A, B);
	sim_run_ticks(s, ET / 3);
	/* B keeps its t2 entry to itself: isolate it; A and C reconnect */
	sim_heal(s);
	sim_isolate(s, B);
	f.phase = 2;
	struct is_leader_arg ia = {f.A, t2};
	REQUIRE(sim_run_until(s, is_leader, &ia, 60 * ET) == 0,
		"old leader n%llu not re-elected with n%llu",
		(unsigned long long)f.A, (unsigned long long)f.C);
	struct commit_watch w = {f.A, f.k, false};
	sim_run_until(s, commit_exceeds, &w, 10 * ET);
	REQUIRE(!w.broken,
		"n%llu (term %llu) committed past %llu while only the "
		"term-%llu entry X was on a majority (Figure 8)",
		(unsigned long long)f.A, (unsigned long long)term_of(s, f.A),
		(unsigned long long)f.k, (unsigned long long)t1);
	status_of(s, f.A, &st);
	raft_index cmatch = 0;
	for (uint32_t k = 0; k < st.conf.n; k++)
		if (st.conf.nodes[k].id == f.C)
			cmatch = st.match[k];
	REQUIRE(st.role == RAFT_LEADER && cmatch >= f.k + 1,
		"setup: n%llu does not hold X (match %llu, want %llu)",
		(unsigned long long)f.C, (unsigned long long)cmatch,
		(unsigned long long)(f.k + 1));
	/* A crashes; B and C elect B, whose t2 entry replaces X */
	sim_crash(s, f.A);
	f.phase = 3;
	sim_heal(s);
	struct is_leader_arg ib = {B, term_of(s, f.C)};
	REQUIRE(sim_run_until(s, is_leader, &ib, 60 * ET) == 0,
		"n%llu (with the term-%llu entry) not elected",
		(unsigned long long)B, (unsigned long long)t2);
	struct applied_arg a = {.ids = {f.C}, .n = 1, .index = f.k + 1};
	REQUIRE(sim_run_until(s, all_applied, &a, 40 * ET) == 0,
		"n%llu never applied index %llu", (unsigned long long)f.C,
		(unsigned long long)(f.k + 1));
	REQUIRE(sim_applied_term(s, f.C, f.k + 1) == t2,
		"index %llu applied with term %llu, expected B's term %llu",
		(unsigned long long)(f.k + 1),
		(unsigned long long)sim_applied_term(s, f.C, f.k + 1),
		(unsigned long long)t2);
	(void)xt;
	sim_set_filter(s, NULL, NULL);
	sim_restart(s, f.A);
	return finish(s, why, cap);
}

/* ---- 4 ------------------------------------------------------------------- */

struct vote_crash {
	bool fired;
	raft_id voter, cand;
	raft_term term;
	raft_id probe; /* records the voter's answer to probe */
	bool answered, rejected;
};

static bool vote_hook(void *arg, raft_id node, const struct raft_hard_state *hs,
		      bool has_hs)
{
	struct vote_crash *v = arg;
	if (v->fired || !has_hs || !hs->vote || hs->vote == node)
		return false;
	v->fired = true;
	v->voter = node;
	v->cand = hs->vote;
	v->term = hs->term;
	return true;
}

static bool vote_filter(void *arg, struct raft_msg *m)
{
	struct vote_crash *v = arg;
	if (m->type == RAFT_MSG_VOTE_RESP && m->from == v->voter &&
	    m->to == v->probe) {
		v->answered = true;
		v->rejected = m->reject;
		return true;
	}
	return false;
}

static bool vote_fired(struct sim *s, void *arg)
{
	(void)s;
	return ((struct vote_crash *)arg)->fired;
}

/* "Each server will vote for at most one candidate in a given term"
 * (§5.2) also across a crash: a voter that persisted its vote and crashed
 * before sending the grant still refuses another candidate in that term
 * after restarting. */
static int sc_vote_persist_crash(struct sim *s, char *why, size_t cap)
{
	struct vote_crash v = {0};
	sim_isolate(s, 3); /* only n1 <-> n2 can talk */
	sim_set_persist_hook(s, vote_hook, &v);
	REQUIRE(sim_run_until(s, vote_fired, &v, 60 * ET) == 0,
		"no vote was ever granted between n1 and n2");
	sim_set_persist_hook(s, NULL, NULL);
	REQUIRE(sim_restart(s, v.voter) == 0, "restart failed");
	struct raft_status st;
	status_of(s, v.voter, &st);
	REQUIRE(st.term == v.term && st.vote == v.cand,
		"after restart n%llu has term %llu vote %llu; persisted term "
		"%llu vote %llu",
		(unsigned long long)v.voter, (unsigned long long)st.term,
		(unsigned long long)st.vote, (unsigned long long)v.term,
		(unsigned long long)v.cand);
	/* n3 asks for the same term with an up-to-date log */
	v.probe = 3;
	sim_set_filter(s, vote_filter, &v);
	sim_block(s, v.voter, 3, false);
	struct raft_msg m = {0};
	m.type = RAFT_MSG_VOTE;
	m.from = 3;
	m.to = v.voter;
	m.term = v.term;
	m.prev_index = st.last_index;
	m.prev_term = st.last_term;
	m.transfer = true;
	sim_deliver_raw(s, &m);
	sim_run_ticks(s, 2);
	REQUIRE(v.answered && v.rejected,
		"n%llu granted n3 in term %llu after voting n%llu",
		(unsigned long long)v.voter, (unsigned long long)v.term,
		(unsigned long long)v.cand);
	status_of(s, v.voter, &st);
	REQUIRE(st.term != v.term || st.vote == v.cand,
		"n%llu changed its vote in term %llu to n%llu",
		(unsigned long long)v.voter, (unsigned long long)v.term,
		(unsigned long long)st.vote);
	sim_set_filter(s, NULL, NULL);
	return finish(s, why, cap);
}

/* ---- 5 and 6 -------------------------------------------------------------- */

/* Build a follower that is behind the leader's compacted prefix: isolate
 * it, commit `n` entries, compact every other node. Returns F or 0. */
static raft_id behind_compaction(struct sim *s, int n, raft_id *leader)
{
	if (!commit_everywhere(s, 40 * ET))
		return 0;
	raft_id L = sim_leader(s);
	raft_id F = follower_of(s, L, 0);
	sim_isolate(s, F);
	for (int k = 0; k < n; k++) {
		if (sim_propose(s, L, NULL, NULL) != 0)
			return 0;
		if (k % 16 == 15)
			sim_run_ticks(s, 1);
	}
	struct applied_arg a = {0};
	raft_index idx = 0;
	struct raft_status st;
	sim_run_ticks(s, 5);
	status_of(s, L, &st);
	idx = st.last_index;
	for (raft_id id = 1; id <= SIM_MAX_IDS; id++)
		if (id != F && sim_state(s, id) == SIM_RUNNING)
			a.ids[a.n++] = id;
	a.index = idx;
	if (sim_run_until(s, all_applied, &a, 40 * ET) != 0)
		return 0;
	for (size_t k = 0; k < a.n; k++)
		sim_compact(s, a.ids[k]);
	*leader = L;
	return F;
}

struct caught_up {
	raft_id f;
};

static bool f_caught_up(struct sim *s, void *arg)
{
	struct caught_up *c = arg;
	raft_id L = sim_leader(s);
	if (!L || L == c->f)
		return false;
	struct raft_status st;
	status_of(s, L, &st);
	return sim_applied(s, c->f) >= st.commit;
}

struct prog_arg {
	raft_id leader, f;
	int prog;
};

/* The leader's progress state for f is "replicate" (1). */
static bool replicating(struct sim *s, void *arg)
{
	struct prog_arg *p = arg;
	struct raft_status st;
	status_of(s, p->leader, &st);
	for (uint32_t k = 0; k < st.conf.n; k++)
		if (st.conf.nodes[k].id == p->f)
			p->prog = st.progress[k];
	return p->prog == 1;
}

/* A follower that fell behind the leader's compacted prefix is brought
 * back with InstallSnapshot (§7) and then continues with ordinary
 * pipelined AppendEntries (its progress returns to "replicate"). */
static int sc_slow_follower_snapshot(struct sim *s, char *why, size_t cap)
{
	raft_id L = 0;
	raft_id F = behind_compaction(s, 300, &L);
	REQUIRE(F, "setup: could not build a follower behind compaction");
	uint64_t snaps0 = sim_delivered(s, RAFT_MSG_SNAPSHOT);
	sim_heal(s);
	struct caught_up c = {F};
	REQUIRE(sim_run_until(s, f_caught_up, &c, 100 * ET) == 0,
		"n%llu never caught up", (unsigned long long)F);
	uint64_t snaps1 = sim_delivered(s, RAFT_MSG_SNAPSHOT);
	REQUIRE(snaps1 > snaps0,
		"n%llu caught up without a snapshot although the leader "
		"compacted its log", (unsigned long long)F);
	L = sim_leader(s);
	for (int k = 0; k < 50; k++) {
		REQUIRE(sim_propose(s, L, NULL, NULL) == 0, "propose failed");
		if (k % 8 == 7)
			sim_run_ticks(s, 1);
	}
	REQUIRE(sim_run_until(s, f_caught_up, &c, 40 * ET) == 0,
		"n%llu stopped following after the snapshot",
		(unsigned long long)F);
	REQUIRE(sim_delivered(s, RAFT_MSG_SNAPSHOT) == snaps1,
		"more snapshot chunks after n%llu caught up",
		(unsigned long long)F);
	struct prog_arg p = {L, F, -1};
	sim_run_until(s, replicating, &p, 5 * ET);
	REQUIRE(p.prog == 1,
		"leader's progress for n%llu is %d, not replicate (1)",
		(unsigned long long)F, p.prog);
	return finish(s, why, cap);
}

struct snap_seen {
	uint64_t before;
};

static bool first_chunk(struct sim *s, void *arg)
{
	struct snap_seen *x = arg;
	return sim_delivered(s, RAFT_MSG_SNAPSHOT) > x->before;
}

/* An InstallSnapshot transfer cut by a leader change: the new leader (also
 * compacted) sends its own snapshot and the follower completes. */
static int sc_snapshot_leader_change(struct sim *s, char *why, size_t cap)
{
	raft_id L = 0;
	raft_id F = behind_compaction(s, 300, &L);
	REQUIRE(F, "setup: could not build a follower behind compaction");
	struct snap_seen x = {sim_delivered(s, RAFT_MSG_SNAPSHOT)};
	sim_heal(s);
	REQUIRE(sim_run_until(s, first_chunk, &x, 40 * ET) == 0,
		"no snapshot chunk reached n%llu", (unsigned long long)F);
	sim_crash(s, L);
	struct leader_not_arg na = {L, 0};
	REQUIRE(sim_run_until(s, leader_not, &na, 40 * ET) == 0,
		"no new leader");
	struct caught_up c = {F};
	REQUIRE(sim_run_until(s, f_caught_up, &c, 100 * ET) == 0,
		"n%llu never completed its snapshot under the new leader",
		(unsigned long long)F);
	REQUIRE(commit_everywhere(s, 40 * ET), "no commit afterwards");
	sim_restart(s, L);
	return finish(s, why, cap);
}

/* ---- 7 ------------------------------------------------------------------- */

struct conf_arg {
	raft_id node;
	int want; /* -1 absent, RAFT_VOTER, RAFT_LEARNER */
};

/* Every running node in the leader's configuration has applied a
 * configuration with the wanted membership of node. */
static bool conf_applied(struct sim *s, void *arg)
{
	struct conf_arg *c = arg;
	raft_id L = sim_leader(s);
	if (!L)
		return false;
	struct raft_status st;
	status_of(s, L, &st);
	int role = -1;
	for (uint32_t k = 0; k < st.conf.n; k++)
		if (st.conf.nodes[k].id == c->node)
			role = st.conf.nodes[k].role;
	if (role != c->want)
		return false;
	struct applied_arg a = {.index = st.commit};
	for (uint32_t k = 0; k < st.conf.n; k++)
		if (sim_state(s, st.conf.nodes[k].id) == SIM_RUNNING)
			a.ids[a.n++] = st.conf.nodes[k].id;
	return st.commit >= st.last_index && all_applied(s, &a);
}

/* A removed server that never learns of its removal keeps timing out;
 * it "can disrupt the cluster" (§4.2.3) unless votes are ignored while a
 * leader is known (and pre-vote keeps its term low): the leader and its
 * term must not change. */
static int sc_removed_node_no_disrupt(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	raft_id R = follower_of(s, L, 0);
	sim_block(s, L, R, true); /* R never hears of its removal */
	REQUIRE(sim_conf(s, L, RAFT_CONF_REMOVE, R) == 0,
		"leader refused to remove n%llu", (unsigned long long)R);
	struct conf_arg c = {R, -1};
	REQUIRE(sim_run_until(s, conf_applied, &c, 40 * ET) == 0,
		"removal of n%llu never committed", (unsigned long long)R);
	raft_term T = term_of(s, L);
	sim_block(s, L, R, false);
	sim_run_ticks(s, 20 * ET);
	REQUIRE(sim_state(s, R) == SIM_RUNNING, "removed node not running");
	REQUIRE(sim_leader(s) == L && term_of(s, L) == T,
		"removed n%llu disrupted the cluster: leader n%llu term %llu "
		"became n%llu term %llu",
		(unsigned long long)R, (unsigned long long)L,
		(unsigned long long)T, (unsigned long long)sim_leader(s),
		(unsigned long long)term_of(s, sim_leader(s)));
	REQUIRE(commit_everywhere(s, 40 * ET), "no commit afterwards");
	return finish(s, why, cap);
}

/* ---- 8 ------------------------------------------------------------------- */

/* A membership change proposed just before its leader crashes either
 * survives or is lost as a whole; the next leader can then complete a
 * change (add learner 4, promote it) and every node converges. */
static int sc_conf_during_leader_change(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	REQUIRE(sim_conf(s, L, RAFT_CONF_ADD_LEARNER, 4) == 0,
		"leader refused add-learner");
	sim_crash(s, L);
	struct leader_not_arg na = {L, 0};
	REQUIRE(sim_run_until(s, leader_not, &na, 40 * ET) == 0,
		"no new leader");
	sim_restart(s, L);
	int rc = -1;
	for (int tries = 0; tries < 40 * ET && rc != 0; tries++) {
		raft_id L2 = sim_leader(s);
		struct raft_status st;
		status_of(s, L2, &st);
		int role = -1;
		for (uint32_t k = 0; k < st.conf.n; k++)
			if (st.conf.nodes[k].id == 4)
				role = st.conf.nodes[k].role;
		if (L2 && role == RAFT_VOTER)
			rc = 0;
		else if (L2 && role == RAFT_LEARNER)
			sim_conf(s, L2, RAFT_CONF_PROMOTE, 4);
		else if (L2)
			sim_conf(s, L2, RAFT_CONF_ADD_LEARNER, 4);
		sim_run_ticks(s, 1);
	}
	REQUIRE(rc == 0, "n4 never became a voter after the leader change");
	struct conf_arg c = {4, RAFT_VOTER};
	REQUIRE(sim_run_until(s, conf_applied, &c, 40 * ET) == 0,
		"promotion of n4 never applied everywhere");
	for (raft_id id = 1; id <= 4; id++) {
		struct raft_status st;
		status_of(s, id, &st);
		bool voter = false;
		for (uint32_t k = 0; k < st.conf.n; k++)
			if (st.conf.nodes[k].id == 4 &&
			    st.conf.nodes[k].role == RAFT_VOTER)
				voter = true;
		REQUIRE(voter, "n%llu's configuration lacks voter n4",
			(unsigned long long)id);
	}
	return finish(s, why, cap);
}

/* ---- 9 ------------------------------------------------------------------- */

/* A leader cut off with a minority keeps proposing but commits nothing
 * (a majority is of the configuration); the majority elects a new leader
 * and commits; after healing the old leader's entry is discarded. */
static int sc_minority_leader(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	raft_id F = follower_of(s, L, 0);
	struct raft_status st;
	status_of(s, L, &st);
	raft_term T = st.term;
	for (raft_id a = 1; a <= 5; a++)
		for (raft_id b = 1; b <= 5; b++)
			if ((a == L || a == F) != (b == L || b == F))
				sim_block(s, a, b, true);
	raft_index x;
	raft_term xt;
	REQUIRE(sim_propose(s, L, &x, &xt) == 0, "minority leader refused");
	struct commit_watch w = {L, st.commit, false};
	struct leader_not_arg na = {L, F};
	struct raft_status st2;
	for (uint32_t k = 0; k < 40 * ET && !w.broken; k++) {
		commit_exceeds(s, &w);
		if (leader_not(s, &na))
			break;
		sim_run_ticks(s, 1);
	}
	REQUIRE(!w.broken, "minority leader n%llu committed index %llu",
		(unsigned long long)L, (unsigned long long)x);
	REQUIRE(leader_not(s, &na), "majority elected no leader");
	raft_id L2 = sim_leader(s);
	status_of(s, L2, &st2);
	REQUIRE(st2.term > T, "new leader's term not higher");
	raft_index y;
	REQUIRE(sim_propose(s, L2, &y, NULL) == 0, "majority leader refused");
	struct applied_arg a = {.index = y};
	for (raft_id id = 1; id <= 5; id++)
		if (id != L && id != F)
			a.ids[a.n++] = id;
	REQUIRE(sim_run_until(s, all_applied, &a, 40 * ET) == 0,
		"majority did not commit");
	sim_heal(s);
	struct applied_arg b = {.ids = {L, F}, .n = 2, .index = y};
	REQUIRE(sim_run_until(s, all_applied, &b, 40 * ET) == 0,
		"old minority did not catch up");
	REQUIRE(sim_applied_term(s, L, x) != xt,
		"the minority's entry %llu (term %llu) survived",
		(unsigned long long)x, (unsigned long long)xt);
	return finish(s, why, cap);
}

/* ---- 10 ------------------------------------------------------------------ */

struct not_leader_arg {
	raft_id id;
};

static bool not_leader(struct sim *s, void *arg)
{
	struct not_leader_arg *x = arg;
	struct raft *r = sim_core(s, x->id);
	return r && raft_role(r) != RAFT_LEADER;
}

/* Check-quorum (thesis §6.2): "a leader steps down if an election timeout
 * elapses without a successful round of heartbeats to a majority". An
 * isolated leader hears no higher term, yet steps down by itself. */
static int sc_check_quorum(struct sim *s, char *why, size_t cap)
{
	REQUIRE(commit_everywhere(s, 40 * ET), "no stable leader");
	raft_id L = sim_leader(s);
	raft_term T = term_of(s, L);
	sim_isolate(s, L);
	struct not_leader_arg x = {L};
	REQUIRE(sim_run_until(s, not_leader, &x, 4 * ET) == 0,
		"isolated leader n%llu still leader after %d ticks",
		(unsigned long long)L, 4 * ET);
	REQUIRE(term_of(s, L) == T,
		"isolated leader's term changed (%llu -> %llu)",
		(unsigned long long)T, (unsigned long long)term_of(s, L));
	sim_heal(s);
	return finish(s, why, cap);
}

/* ---- table --------------------------------------------------------------- */

struct scenario {
	const char *name;
	uint32_t nodes;
	int (*fn)(struct sim *s, char *why, size_t cap);
};

static const struct scenario scenarios[] = {
	{"disruptive_rejoin_after_isolation_keeps_leader_term", 3,
	 sc_disruptive_rejoin},
	{"prevote_with_lower_term_node_elects_after_leader_crash", 5,
	 sc_prevote_lower_term},
	{"figure8_old_term_entry_not_committed_by_counting", 3, sc_figure8},
	{"crash_between_vote_persist_and_send_no_double_vote", 3,
	 sc_vote_persist_crash},
	{"slow_follower_gets_snapshot_then_pipelines", 3,
	 sc_slow_follower_snapshot},
	{"snapshot_interrupted_by_leader_change_completes", 3,
	 sc_snapshot_leader_change},
	{"removed_node_that_keeps_running_cannot_disrupt", 3,
	 sc_removed_node_no_disrupt},
	{"config_change_during_leader_change_converges", 3,
	 sc_conf_during_leader_change},
	{"minority_leader_cannot_commit_majority_elects_and_commits", 5,
	 sc_minority_leader},
	{"check_quorum_isolated_leader_steps_down", 3, sc_check_quorum},
};

int sim_scenarios(bool verbose, const char *only, int *passed, int *failed)
{
	*passed = *failed = 0;
	for (size_t k = 0; k < sizeof scenarios / sizeof scenarios[0]; k++) {
		const struct scenario *sc = &scenarios[k];
		if (only && !strstr(sc->name, only))
			continue;
		struct sim_opts o = calm(1000 + k, sc->nodes, verbose);
		o.snapshot_trailing = 8;
		o.snapshot_chunk_bytes = 512;
		struct sim *s = sim_new(&o);
		char why[SIM_FAIL_MAX] = "";
		int rc = sim_failure(s) ? -1 : sc->fn(s, why, sizeof why);
		if (sim_failure(s)) { /* an invariant broke: that is the news */
			snprintf(why, sizeof why, "%s", sim_failure(s));
			rc = -1;
		}
		if (rc == 0) {
			printf("ok   %s\n", sc->name);
			(*passed)++;
		} else {
			if (!why[0] && sim_failure(s))
				snprintf(why, sizeof why, "%s", sim_failure(s));
			printf("FAIL scenario %s: %s\n  replay: raft_sim "
			       "--scenarios --only %s -v\n",
			       sc->name, why, sc->name);
			(*failed)++;
		}
		fflush(stdout);
		sim_free(s);
	}
	return *failed;
}
