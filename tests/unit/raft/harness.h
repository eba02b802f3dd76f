/*
 * harness.h — a tiny synchronous cluster for the Raft core unit tests.
 *
 * Up to H_MAX cores in one process. Each node has an in-memory "disk"
 * (hard state, log, snapshot) written instantly when its ready is
 * processed, a toy state machine (a hash chain over applied entries) and a
 * FIFO network queue. cl_settle() runs readies and deliveries until
 * nothing moves. Tests cut links, install filters, crash and restart
 * nodes, and may take over persistence of a node (manual_persist) to
 * observe persistence gating.
 */
#ifndef SANDFS_RAFT_HARNESS_H
#define SANDFS_RAFT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"

#define H_MAX 6

struct h_node {
	struct raft *r;
	raft_id id;
	bool up;
	/* disk */
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	uint8_t *snap_data;
	uint64_t snap_len;
	struct raft_entry *log; /* deep copies, consecutive after snap.index */
	size_t n_log, cap_log;
	/* state machine */
	raft_index applied;
	uint64_t hash;
	uint64_t *hashes; /* hash after applying index i (0: unknown) */
	size_t cap_hashes;
	uint64_t n_normal; /* NORMAL entries applied */
	/* outputs seen */
	struct raft_read_state reads[64];
	size_t n_reads;
	int events[16]; /* by enum raft_event_type */
	const char *last_drop;
	int want_snapshot;
	bool defer_snapshot; /* count want_snapshot, do not answer it */
	int snapshots_installed;
	/* manual persistence: after-persist messages held until cl_persist */
	bool manual_persist;
	uint64_t last_ready;
	struct raft_msg *held;
	size_t n_held, cap_held;
};

/* Drop (return true) or modify a message in flight. */
typedef bool (*h_filter)(void *arg, struct raft_msg *m);

struct cluster {
	struct h_node n[H_MAX + 1]; /* by id, 1..nn */
	int nn;
	struct raft_config cfg; /* template: id and seed filled per node */
	uint64_t seed;
	struct raft_msg *q; /* network FIFO (deep copies) */
	size_t nq, capq;
	bool cut[H_MAX + 1][H_MAX + 1]; /* cut[from][to] drops */
	h_filter filter;
	void *farg;
	uint64_t snap_pad; /* snapshot data length (>= 24) */
	/* delivered message counts by type, and rejected APPEND_RESPs */
	int sent[RAFT_MSG_TYPE_MAX + 1];
	int append_rejects;
	bool verbose;
};

/* A cluster of `voters` bootstrapped voters plus `extra` empty nodes (ids
 * voters+1..voters+extra, never bootstrapped). cfg may be NULL. */
struct cluster *cl_new(int voters, int extra, const struct raft_config *cfg);
void cl_free(struct cluster *c);

/* Process one ready of node id; true if it held anything. */
bool cl_ready(struct cluster *c, raft_id id);
/* Readies and deliveries until quiet. */
void cl_settle(struct cluster *c);
/* Deliver the queued messages once (no readies). */
void cl_deliver(struct cluster *c);
/* Tick node id (or all up nodes when id == 0) n times, settling after
 * each tick. */
void cl_tick(struct cluster *c, raft_id id, int n);
/* Tick node id alone until it leads (true) or max ticks pass. */
bool cl_elect(struct cluster *c, raft_id id);
/* The up node that leads in the highest term, or 0. */
raft_id cl_leader(struct cluster *c);

void cl_cut(struct cluster *c, raft_id a, raft_id b);      /* both ways */
void cl_isolate(struct cluster *c, raft_id a);             /* from all */
void cl_heal(struct cluster *c);                           /* all links */

int cl_propose(struct cluster *c, raft_id id, const char *s);
/* manual_persist: release held messages, acknowledge the last ready. */
void cl_persist(struct cluster *c, raft_id id);
/* Compact node id at its applied index and store a snapshot on disk. */
int cl_compact(struct cluster *c, raft_id id);
void cl_crash(struct cluster *c, raft_id id);
/* Restart from the node's disk via raft_load(). Returns its rc. */
int cl_restart(struct cluster *c, raft_id id);

/* true if every pair of up nodes agrees on the hash at each index both
 * applied (and all applied up to `upto` at least when upto > 0). */
bool cl_consistent(struct cluster *c, raft_index upto);

struct raft_status cl_status(struct cluster *c, raft_id id);
uint64_t cl_seed(void); /* from SEED= or fixed, printed */

/* The harness state machine's snapshot bytes for n (malloc'ed). */
uint8_t *sm_save(struct cluster *c, struct h_node *n, uint64_t *len);

#endif
