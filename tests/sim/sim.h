/*
 * sim.h — a deterministic cluster of Raft cores in one process.
 *
 * The simulator owns N cores (consensus/raft.h), each with an in-memory
 * "disk" (hard state, log, snapshot) written asynchronously with injectable
 * latency and failures, a toy state machine (the list of applied entries,
 * kept as a hash chain so that safety is cheap to check) and a fake network
 * that delays, drops, duplicates, reorders and partitions messages.
 *
 * Time is virtual: SIM_TICK time units make one raft_tick(). Nothing reads
 * the wall clock and every random choice comes from the seeded PRNG in
 * struct sim, so a seed replays exactly.
 *
 * After every event (a delivery, a persistence completion, a tick, a
 * driver call) the simulator checks the safety invariants listed in
 * sim.c; the first violation is recorded in sim->fail and the run stops.
 */
#ifndef SANDFS_SIM_H
#define SANDFS_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"

#define SIM_TICK 100      /* time units per raft_tick() */
#define SIM_MAX_IDS 12    /* node ids 1..SIM_MAX_IDS (<= RAFT_MAX_NODES) */
#define SIM_FAIL_MAX 4096 /* bytes kept of the failure text */
/* Bounds on traffic in flight; beyond them a run fails ("message storm")
 * instead of exhausting the machine's memory. */
#define SIM_STORM_MSGS 200000
#define SIM_STORM_BYTES (256ull << 20)

enum sim_node_state {
	SIM_ABSENT = 0,  /* never started */
	SIM_RUNNING = 1, /* core alive */
	SIM_CRASHED = 2, /* down, disk kept, will be restarted */
	SIM_STOPPED = 3, /* shut down on purpose (removed node), disk kept */
};

/* Fault profile; all probabilities in [0, 1]. Zero means "off". */
struct sim_faults {
	double drop;           /* per message */
	double dup;            /* per message: deliver twice */
	uint32_t delay_min;    /* message delay in time units */
	uint32_t delay_max;
	double slow_msg;       /* probability of a delay up to slow_max */
	uint32_t slow_max;
	uint32_t disk_min;     /* persistence latency in time units */
	uint32_t disk_max;
	double disk_fail;      /* per persistence job: fails = node crash */
};

/* A message filter for scenarios: return true to drop m. It may also
 * shorten m->n_entries (the message then reads as a smaller batch). */
typedef bool (*sim_filter_fn)(void *arg, struct raft_msg *m);

/* A hook run after a persistence job reached the disk and before its
 * after-persist messages go out; return true to crash the node there. */
typedef bool (*sim_persist_hook_fn)(void *arg, raft_id node,
				    const struct raft_hard_state *hs,
				    bool has_hs);

struct sim;

/* Options of a cluster. Cores get raft_config_default() with the
 * overrides below (0 = keep the default). */
struct sim_opts {
	uint64_t seed;
	uint32_t nodes; /* initial voters, ids 1..nodes */
	bool verbose;   /* print trace events on stdout */
	struct sim_faults faults;
	uint32_t election_ticks;
	uint32_t heartbeat_ticks;
	uint64_t snapshot_trailing;
	uint32_t snapshot_chunk_bytes;
	uint64_t max_msg_bytes;
	uint32_t max_inflight_msgs;
	/* Harness self-test: break the disk on purpose so that the checks
	 * must fire. 0 none; 1 forget the vote at restart; 2 lose the
	 * acknowledged (uncommitted) log tail at a crash. */
	int mutate;
};

/* Create a bootstrapped cluster. Returns NULL on allocation failure.
 * Caller frees with sim_free(). */
struct sim *sim_new(const struct sim_opts *o);
void sim_free(struct sim *s);

/* The failure text, or NULL while every invariant holds. Borrowed. */
const char *sim_failure(const struct sim *s);
/* Record a failure (printf-style); the first one wins. */
void sim_failf(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Advance virtual time by n ticks (all events in between run). Stops
 * early on a failure. Returns 0, or -1 on failure. */
int sim_run_ticks(struct sim *s, uint32_t n);
/* Advance until pred(s, arg) is true (checked after every event) or
 * max_ticks passed. Returns 0 when pred held, -1 on timeout/failure. */
int sim_run_until(struct sim *s, bool (*pred)(struct sim *, void *),
		  void *arg, uint32_t max_ticks);

/* ---- control (every call drives the affected core and checks) ----- */
void sim_crash(struct sim *s, raft_id id);
int sim_restart(struct sim *s, raft_id id);  /* from its disk */
void sim_stop(struct sim *s, raft_id id);    /* like crash, never restarted */
/* Start node id fresh (no bootstrap: it joins through the leader). */
int sim_start_new(struct sim *s, raft_id id);
void sim_block(struct sim *s, raft_id from, raft_id to, bool blocked);
void sim_isolate(struct sim *s, raft_id id); /* both directions, all peers */
void sim_heal(struct sim *s);                /* unblock everything */
void sim_set_faults(struct sim *s, const struct sim_faults *f);
void sim_set_filter(struct sim *s, sim_filter_fn fn, void *arg);
void sim_set_persist_hook(struct sim *s, sim_persist_hook_fn fn, void *arg);

/* Propose a fresh unique payload on node id; 0 or the core's error. */
int sim_propose(struct sim *s, raft_id id, raft_index *index,
		raft_term *term);
/* ReadIndex on node id; the answer is checked against the commit index
 * known cluster-wide now. 0 or the core's error. */
int sim_read(struct sim *s, raft_id id);
int sim_compact(struct sim *s, raft_id id);
int sim_conf(struct sim *s, raft_id leader, enum raft_conf_op op,
	     raft_id node);
int sim_transfer(struct sim *s, raft_id leader, raft_id target);
/* Hand a message to a core directly (as if received). */
int sim_deliver_raw(struct sim *s, const struct raft_msg *m);

/* ---- inspection ---------------------------------------------------- */
struct raft *sim_core(struct sim *s, raft_id id); /* NULL if not running */
enum sim_node_state sim_state(const struct sim *s, raft_id id);
/* The running leader with the highest term, 0 if none. */
raft_id sim_leader(struct sim *s);
raft_index sim_applied(const struct sim *s, raft_id id);
/* Term of the entry node id applied at index (0 if not applied). */
raft_term sim_applied_term(const struct sim *s, raft_id id, raft_index i);
/* Counters of messages delivered, by type (index = enum raft_msg_type). */
uint64_t sim_delivered(const struct sim *s, uint8_t type);
uint64_t sim_now_ticks(const struct sim *s);
uint64_t sim_rand(struct sim *s);
void sim_logf(struct sim *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Liveness: heal the network, switch faults off, restart every node that
 * is down, then require that within max_ticks a leader commits a fresh
 * proposal that every voter of its configuration applies. 0 or -1 (with a
 * failure recorded). */
int sim_check_liveness(struct sim *s, uint32_t max_ticks);

/* ---- the runners (main.c) ----------------------------------------- */
/* One randomized run; returns 0 on success, -1 with sim_failure(). */
int sim_random_run(const struct sim_opts *o, uint32_t steps, char *why,
		   size_t why_cap);
/* The named scenarios (those whose name contains `only`, all when NULL);
 * prints one line per scenario; returns the number of failures. */
int sim_scenarios(bool verbose, const char *only, int *passed, int *failed);

#endif
