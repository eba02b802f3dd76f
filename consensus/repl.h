/*
 * repl.h — the replicator: one thread that owns a Raft core and drives it
 * with the log store (storage/rlog) and the links (transport/link).
 *
 * Each loop turn drains every queued input (ticks, peer frames, proposals,
 * reads, admin requests), asks the core for ready, writes hard state and
 * entries in one synced batch (group commit: everything queued while the
 * previous sync ran shares the next one), sends messages, applies
 * committed entries to the state machine and completes waiters.
 *
 * Proposals are exactly-once: each carries (origin node, sequence). A
 * follower forwards its proposal to the leader and re-sends it (same
 * origin/seq) after a leader change; the state machine keeps the first
 * result per (origin, seq) and answers retries with it. The origin
 * completes a proposal when its OWN node applies it, so a read that
 * follows on that node sees the change.
 */
#ifndef SANDFS_REPL_H
#define SANDFS_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"

/* The state machine plugged into the replicator. Every callback runs on
 * the replicator thread. */
struct repl_sm {
	void *ctx;
	/* Apply one committed entry. origin/seq identify the proposal (the
	 * state machine deduplicates on them); every seq of that origin below
	 * `low` has completed at the origin, so results kept for them may be
	 * dropped and such a seq is a stale duplicate. Writes up to rescap result
	 * bytes to res and sets *reslen. Returns 0, or a negative errno only
	 * for a fatal local failure (disk), which stops the node. The
	 * operation's own outcome (e.g. -EEXIST) belongs in res. */
	int (*apply)(void *ctx, uint64_t index, uint64_t origin, uint64_t seq,
		     uint64_t low, const uint8_t *data, uint32_t len, uint8_t *res,
		     size_t rescap, size_t *reslen);
	/* Index of the last applied entry (durable or not). */
	uint64_t (*applied)(void *ctx);
	/* Make the state at the current applied index durable; returns the
	 * durable applied index in *index. */
	int (*sync)(void *ctx, uint64_t *index);
	/* Serialize the state at the applied index (deterministic bytes).
	 * *data is malloc'ed; the replicator frees it. */
	int (*snapshot)(void *ctx, uint64_t *index, uint8_t **data,
			uint64_t *len);
	/* Optional, to serialize away from the replicator thread (a big
	 * state would otherwise stall it, and a stalled leader loses its
	 * followers): snapshot_begin fixes the state at the applied index
	 * (*index) and hands out a job, on the replicator thread and
	 * cheaply; snapshot_finish serializes that state on another thread,
	 * beside apply and restore, then frees the job (also on failure).
	 * Data as for snapshot. Without them, snapshot is used. */
	int (*snapshot_begin)(void *ctx, uint64_t *index, void **job);
	int (*snapshot_finish)(void *ctx, void *job, uint8_t **data,
			       uint64_t *len);
	/* Replace the state with a snapshot taken at index; durable on
	 * return. */
	int (*restore)(void *ctx, uint64_t index, const uint8_t *data,
		       uint64_t len);
	/* Optional: a configuration change was applied (peers changed). */
	void (*conf_changed)(void *ctx, const struct raft_conf *conf);
	/* Optional: one line of state-machine figures for status (e.g. the
	 * digest); NUL-terminated within cap. */
	void (*describe)(void *ctx, char *buf, size_t cap);
};

struct repl_peer {
	raft_id id;
	char addr[RAFT_ADDR_MAX];
};

struct repl_cfg {
	raft_id id;
	const char *data_dir; /* holds raft/ (log) and admin.sock */
	uint64_t cluster_id;
	const struct repl_peer *peers; /* the initial configuration */
	size_t n_peers;
	/* Join an existing cluster instead of bootstrapping one: the node
	 * starts with no configuration and waits for the leader's snapshot
	 * (it must have been added with repl_change_conf). peers then only
	 * tell the link where the members are (and where we listen). Refused
	 * (-EEXIST) when the data directory already holds a log. A node that
	 * once started with join never bootstraps, even if restarted without
	 * it (a marker file raft.joined in data_dir says so). */
	int join;
	const uint8_t *secret; /* optional cluster secret (peer auth) */
	size_t secret_len;
	/* Optional TLS (all three or none): PEM files; peers must present a
	 * certificate signed by tls_ca. */
	const char *tls_cert, *tls_key, *tls_ca;
	uint32_t tick_ms;            /* default 10 */
	uint32_t election_ticks;     /* default 15 (150-300 ms) */
	uint32_t heartbeat_ticks;    /* default 5 */
	uint32_t propose_timeout_ms; /* default 10000: then -EIO */
	uint64_t compact_every;      /* entries between compactions, 10000 */
	/* Leader lease for ReadIndex (see consensus/readindex.c): the leader
	 * answers a read without a heartbeat round while a majority
	 * acknowledged it recently. On unless no_lease_reads; every node of
	 * a cluster must use the same setting and election_ticks. */
	int no_lease_reads;
	struct repl_sm sm;
};

struct repl;

/* Completion of a proposal or read. status is 0 or a negative errno
 * (-EIO after the timeout, -ESHUTDOWN when the node stops). res is valid
 * only during the call. Called on the replicator thread: do not block. */
typedef void (*repl_done_fn)(void *ctx, int status, const uint8_t *res,
			     size_t reslen);

/* Open the log, restart the core from it, start the links and the thread.
 * On failure returns a negative errno and a one-line reason in err. */
int repl_start(const struct repl_cfg *cfg, struct repl **out, char *err,
	       size_t errcap);
/* Stop the thread, fail pending waiters with -ESHUTDOWN, free all. */
void repl_stop(struct repl *r);

/* Thread-safe. Propose data (copied); done is called exactly once. */
int repl_propose(struct repl *r, const void *data, uint32_t len,
		 repl_done_fn done, void *ctx);
/* Thread-safe. Linearizable read barrier: done(0) once this node has
 * applied everything committed before the call. */
int repl_read_index(struct repl *r, repl_done_fn done, void *ctx);

/* Thread-safe. Ask the cluster for one single-server membership change
 * (raft.h: RAFT_CONF_ADD_LEARNER with addr "tcp://HOST:PORT", PROMOTE or
 * REMOVE; addr is copied, ignored but for ADD_LEARNER). The leader
 * proposes it; a follower forwards it to the leader (WIRE_KIND_CONF) and
 * follows leader changes. done is called exactly once, on the replicator
 * thread, when the change is in effect on THIS node (its CONF entry was
 * applied here), or with an error:
 *   -EEXIST     ADD: id is already a member
 *   -ENOENT     PROMOTE/REMOVE: id is not a member
 *   -EALREADY   PROMOTE: id is already a voter
 *   -EPERM      REMOVE: id is the last voter
 *   -ENOSPC     ADD: the configuration is full (RAFT_MAX_NODES)
 *   -EINVAL     the leader found the request malformed
 *   -EBUSY      the leader kept refusing until the timeout: another change
 *               is not yet committed, a leader transfer runs, or the new
 *               leader has not yet committed an entry of its term
 *   -EAGAIN     PROMOTE: the learner still lagged at the timeout
 *   -EIO        no answer / not applied here within propose_timeout_ms
 *   -ESHUTDOWN  the node stopped
 * EBUSY and EAGAIN refusals are retried until the timeout. On success res
 * is the u64 (big-endian) index of the applied CONF entry, or empty when
 * the change was found in effect without this node knowing the index. A
 * node that removes itself through its own replicator may never learn
 * that the removal committed (the leader stops talking to it): ask another
 * member. Returns 0, or without calling done -EINVAL (op out of range,
 * id 0, ADD without an address, address too long) or -ENOMEM. */
int repl_change_conf(struct repl *r, enum raft_conf_op op, raft_id id,
		     const char *addr, repl_done_fn done, void *ctx);

/* Thread-safe. Hand leadership to the voter `target`, or with target 0
 * to the voter the leader finds most caught up among those it is
 * connected to (Raft thesis §3.10, raft_transfer_leader on the leader; a
 * follower forwards the request, WIRE_KIND_TRANSFER). done is called
 * exactly once, on the replicator thread: with 0 once THIS node sees a
 * new leader (the target, when one was named), or with
 *   -EALREADY     target already leads
 *   -EINVAL       target is not a voter of the configuration
 *   -EHOSTUNREACH target 0 and the leader is connected to no other voter
 *   -EXDEV        another node than target took over
 *   -EBUSY        another transfer asked for on this node is pending
 *   -EIO          no new leader within propose_timeout_ms (the leader
 *                 retries after each election timeout meanwhile)
 *   -ESHUTDOWN    the node stopped.
 * res (16 bytes, when a leader is known): u64 leader | u64 term, big-
 * endian, as this node sees them. While a transfer runs the leader
 * takes no proposals (they are retried). Returns 0, or -ENOMEM without
 * calling done. */
int repl_transfer_leader(struct repl *r, raft_id target, repl_done_fn done,
			 void *ctx);

/* 1 if the node whose data directory is data_dir joined an existing
 * cluster (it was once started with repl_cfg.join), else 0. */
int repl_joined(const char *data_dir);

/* Thread-safe. Status of this node (cheap snapshot). */
struct repl_status {
	struct raft_status raft;
	uint64_t durable_applied;
	uint64_t proposals_pending;
	uint64_t peers_connected;
};
void repl_status(struct repl *r, struct repl_status *st);
/* Thread-safe. The state machine's describe() line as of the last turn. */
void repl_describe(struct repl *r, char *buf, size_t cap);

/* Status as exchanged between nodes (WIRE_REQ_STATUS replies): encode
 * returns the bytes needed (nothing written if > cap); decode returns 0 or
 * -EINVAL. Only id, role, term, leader, commit, applied, first/last index,
 * conf ids and (leader) match indexes travel. */
size_t repl_status_encode(const struct repl_status *st, const char *desc,
			  uint8_t *buf, size_t cap);
int repl_status_decode(const uint8_t *buf, size_t len, struct repl_status *st,
		       char *desc, size_t desccap);

/* The node's link layer, for other users of the transport (block
 * transfer): borrowed for the replicator's lifetime. */
struct link *repl_link(struct repl *r);

/* Hook for request kinds the replicator does not handle itself (block
 * transfer): called on a link thread. */
typedef void (*repl_request_fn)(void *ctx, uint64_t from, uint64_t req_id,
				uint16_t kind, const uint8_t *payload,
				size_t len);
/* Install (or, with fn NULL, remove) the handler. Once it returns, the
 * previous handler is not running and will not be called again. */
void repl_set_request_handler(struct repl *r, repl_request_fn fn, void *ctx);

#endif
