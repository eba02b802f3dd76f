/*
 * raft.h — the sandfs Raft core: a value you drive.
 *
 * The core does no I/O, reads no clock, starts no thread and calls no
 * rand(). The driver (the replicator in a node, the simulator in tests)
 * feeds it:
 *
 *   raft_tick()       one unit of virtual time (a node uses 10 ms ticks)
 *   raft_step()       a message received from a peer
 *   raft_propose()    a new entry (leader only)
 *   raft_read_index() a linearizable read barrier
 *   raft_propose_conf(), raft_transfer_leader(), raft_compact(), ...
 *
 * and after any of these asks raft_ready() for the work that resulted:
 *
 *   1. send rd.msgs now (they never depend on unpersisted state: a leader's
 *      AppendEntries may go out before its own disk write, Raft thesis
 *      §10.2.1, which is what lets the leader's fsync run in parallel with
 *      replication);
 *   2. if rd.snapshot is set, install it (state machine restore + record
 *      its metadata in the log store, dropping the log);
 *   3. persist rd.hs (if has_hs) and rd.entries in one synced write; entries
 *      replace any stored entries at the same or higher index;
 *   4. once durable, send rd.msgs_after_persist (vote grants, votes for
 *      ourselves, AppendEntries acknowledgements: everything that promises
 *      a term/vote/entry is on disk) and call raft_persisted(rd.id);
 *   5. apply rd.committed in order (only entries that are durable locally
 *      are ever handed out for apply);
 *   6. deliver rd.reads (ReadIndex results) once applied >= read.index;
 *   7. raft_advance(rd) — everything rd pointed to may be freed after this.
 *
 * Steps 3-4 may run asynchronously (several readies in flight); the core
 * counts the leader itself towards a commit quorum only for entries
 * acknowledged through raft_persisted().
 *
 * Memory: everything inside a struct raft_ready is borrowed from the core
 * until raft_advance(). Data passed *into* the core (proposals, steps,
 * snapshots) is copied; the caller keeps ownership of its buffers.
 *
 * Return values: 0 or a negative errno-style code (RAFT_E*).
 */
#ifndef SANDFS_RAFT_H
#define SANDFS_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t raft_id;    /* node id; 0 means "none" */
typedef uint64_t raft_term;  /* logical clock */
typedef uint64_t raft_index; /* log position; first entry is 1 */

/* Errors (negative). Chosen to map onto errno where a driver needs it. */
#define RAFT_ENOTLEADER (-1001) /* not the leader; see raft_leader() */
#define RAFT_EBUSY (-1002)      /* conf change pending, transfer running, */
                                /* or the uncommitted-bytes cap is hit    */
#define RAFT_EINVAL (-1003)     /* bad argument                           */
#define RAFT_ENOMEM (-1004)     /* allocation failed                      */
#define RAFT_ECORRUPT (-1005)   /* inconsistent state handed to load()    */
#define RAFT_EAGAIN (-1006)     /* try later (e.g. learner not caught up) */

enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3,
};

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* application payload                   */
	RAFT_ENTRY_NOOP = 1,   /* appended by a new leader, empty         */
	RAFT_ENTRY_CONF = 2,   /* a configuration change (core-encoded)   */
};

struct raft_entry {
	raft_term term;
	raft_index index;
	uint8_t type; /* enum raft_entry_type */
	uint32_t len;
	uint8_t *data; /* len bytes; NULL when len == 0 */
};

/* ---- configuration ---------------------------------------------------- */

#define RAFT_MAX_NODES 16
#define RAFT_ADDR_MAX 128

enum raft_node_role { RAFT_VOTER = 0, RAFT_LEARNER = 1 };

struct raft_node {
	raft_id id;
	uint8_t role;              /* enum raft_node_role */
	char addr[RAFT_ADDR_MAX];  /* opaque to the core, NUL-terminated */
};

struct raft_conf {
	uint32_t n;
	struct raft_node nodes[RAFT_MAX_NODES];
};

enum raft_conf_op {
	RAFT_CONF_ADD_LEARNER = 1, /* new node, non-voting, catches up */
	RAFT_CONF_PROMOTE = 2,     /* learner -> voter                  */
	RAFT_CONF_REMOVE = 3,      /* voter or learner leaves           */
};

/* ---- hard state and snapshots ----------------------------------------- */

struct raft_hard_state {
	raft_term term;
	raft_id vote;      /* 0: voted for nobody in term */
	raft_index commit; /* a lower bound, persisted lazily */
};

struct raft_snapshot_meta {
	raft_index index; /* last entry covered */
	raft_term term;   /* its term */
	struct raft_conf conf; /* configuration as of index */
};

/* ---- messages ----------------------------------------------------------- */

enum raft_msg_type {
	RAFT_MSG_APPEND = 1, /* AppendEntries; no entries = heartbeat */
	RAFT_MSG_APPEND_RESP = 2,
	RAFT_MSG_VOTE = 3,
	RAFT_MSG_VOTE_RESP = 4,
	RAFT_MSG_PREVOTE = 5,
	RAFT_MSG_PREVOTE_RESP = 6,
	RAFT_MSG_SNAPSHOT = 7, /* one InstallSnapshot chunk */
	RAFT_MSG_SNAPSHOT_RESP = 8,
	RAFT_MSG_TIMEOUT_NOW = 9, /* leader transfer: campaign now */
	RAFT_MSG_READ_INDEX = 10, /* follower asks leader for a read index */
	RAFT_MSG_READ_INDEX_RESP = 11,
};
#define RAFT_MSG_TYPE_MAX 11

/*
 * One struct for every message; fields not used by a type are zero.
 * Entries and data are borrowed (from the core in ready(), from the caller
 * in step()).
 */
struct raft_msg {
	uint8_t type; /* enum raft_msg_type */
	raft_id from;
	raft_id to;
	raft_term term; /* sender's term (for PREVOTE: the term it would use) */

	/* APPEND: prev_index/prev_term, entries, commit. */
	/* VOTE/PREVOTE: last_index/last_term in prev_index/prev_term. */
	raft_index prev_index;
	raft_term prev_term;
	raft_index commit;
	uint32_t n_entries;
	struct raft_entry *entries;

	/* *_RESP: reject=true means refused/denied; index = last matching
	 * index (APPEND_RESP) or next wanted offset (SNAPSHOT_RESP);
	 * hint_index/hint_term: fast back-off hint on an APPEND reject (the
	 * follower's conflicting term and the first index it holds of that
	 * term, or its last index + 1 with hint_term 0 if its log is short).
	 * On an APPEND reject, index is the rejected prev_index; hint_index 0
	 * with hint_term 0 means "I was never bootstrapped nor loaded: send
	 * me a snapshot" (a joining node lacks the configuration at index 0).
	 * SNAPSHOT_RESP carries the snapshot's index/term in hint_index/
	 * hint_term; a fully received snapshot is acknowledged, once
	 * installed and durable, by an APPEND_RESP at the snapshot index. */
	bool reject;
	raft_index index;
	raft_index hint_index;
	raft_term hint_term;

	/* ReadIndex context: APPEND carries the leader's latest read round;
	 * APPEND_RESP echoes it; READ_INDEX / _RESP carry the caller's ctx
	 * and (in the response) the read index in `index`. */
	uint64_t ctx;

	/* VOTE/PREVOTE: set when the campaign was triggered by TIMEOUT_NOW, so
	 * voters skip the "heard from a leader recently" check. */
	bool transfer;

	/* SNAPSHOT: meta of the snapshot, this chunk's offset, done flag.
	 * APPEND: done=true on an append without entries (a commit notice)
	 * means the leader wants no answer when it is accepted; a refusal
	 * is answered as always. */
	struct raft_snapshot_meta snap;
	uint64_t offset;
	bool done;
	uint32_t len;
	uint8_t *data;
};

/* ---- trace events ------------------------------------------------------- */

enum raft_event_type {
	RAFT_EV_ROLE = 1,       /* role changed (detail says to what and why) */
	RAFT_EV_TERM = 2,       /* term changed */
	RAFT_EV_ELECTION = 3,   /* election/pre-vote started (detail: why) */
	RAFT_EV_VOTE = 4,       /* vote granted or refused (peer, detail) */
	RAFT_EV_LEADER = 5,     /* learned who the leader is */
	RAFT_EV_COMMIT = 6,     /* commit index advanced (index) */
	RAFT_EV_CONF = 7,       /* configuration change applied */
	RAFT_EV_SNAPSHOT = 8,   /* snapshot sent/installed/compacted */
	RAFT_EV_TRANSFER = 9,   /* leader transfer started/finished/aborted */
	RAFT_EV_STEPDOWN = 10,  /* leader stepped down (check-quorum, removal) */
	RAFT_EV_DROP = 11,      /* message ignored (detail: why) */
};

struct raft_event {
	uint8_t type; /* enum raft_event_type */
	raft_id node; /* who reports */
	raft_term term;
	raft_id peer; /* other party, 0 if none */
	raft_index index;
	const char *detail; /* static string: what and why */
};

/* ---- configuration of the core ------------------------------------------ */

struct raft_config {
	raft_id id;
	uint32_t election_ticks;  /* T: timeout is random in [T, 2T); default 15 */
	uint32_t heartbeat_ticks; /* default 5 */
	bool pre_vote;            /* default true */
	bool check_quorum;        /* default true */
	/* Leader lease for ReadIndex (readindex.c): answer a read at once
	 * while a majority acknowledged a message sent less than
	 * election_ticks - margin ticks ago. Needs check_quorum, the same
	 * election_ticks and check_quorum on every node, and tick rates
	 * that agree within the margin (see readindex.c): the driver must
	 * not let this node's tick count fall behind real time: fire the
	 * ticks that came due before stepping messages or reads, and call
	 * raft_lease_drop() when skipping ticks after a stall. Default
	 * false. */
	bool lease_reads;
	uint32_t max_inflight_msgs;     /* per follower, default 256 */
	uint64_t max_inflight_bytes;    /* per follower, default 8 MiB */
	uint64_t max_msg_bytes;         /* per AppendEntries, default 1 MiB */
	uint64_t max_uncommitted_bytes; /* leader cap, default 64 MiB */
	uint32_t snapshot_chunk_bytes;  /* default 256 KiB */
	uint64_t snapshot_trailing;     /* entries kept after compaction, 1024 */
	uint64_t promote_lag;           /* learner promotable within, 64 */
	uint64_t seed;                  /* PRNG seed for election timeouts */
	/* Optional trace sink; called synchronously, must not re-enter. */
	void (*trace)(void *ctx, const struct raft_event *ev);
	void *trace_ctx;
};

/* Fill cfg with the defaults above (id and seed left 0). */
void raft_config_default(struct raft_config *cfg);

/* ---- the ready batch ---------------------------------------------------- */

struct raft_read_state {
	uint64_t ctx;     /* as given to raft_read_index() */
	raft_index index; /* reply once applied >= index */
};

struct raft_ready {
	uint64_t id; /* pass to raft_persisted() */

	bool has_hs;
	struct raft_hard_state hs;

	struct raft_entry *entries; /* to persist (replace from entries[0].index) */
	size_t n_entries;

	/* A snapshot received from the leader, to install before persisting
	 * entries (NULL data with has_snapshot=false when none). */
	bool has_snapshot;
	struct raft_snapshot_meta snapshot;
	const uint8_t *snapshot_data;
	uint64_t snapshot_len;

	struct raft_msg *msgs; /* send now */
	size_t n_msgs;
	struct raft_msg *msgs_after_persist; /* send after persistence */
	size_t n_msgs_after_persist;

	struct raft_entry *committed; /* apply in order */
	size_t n_committed;

	struct raft_read_state *reads;
	size_t n_reads;

	/* The core wants fresh snapshot data (a follower needs one and the
	 * core holds none covering its compacted prefix): call
	 * raft_set_snapshot() with the state at the applied index. */
	bool want_snapshot;
};

/* ---- the API ------------------------------------------------------------ */

struct raft;

/* Create a core. Returns NULL on allocation failure or a bad config
 * (id 0, heartbeat_ticks >= election_ticks). Caller frees with
 * raft_free(). The core starts as a follower with an empty log and an
 * empty configuration; call raft_bootstrap() or raft_load() next. */
struct raft *raft_new(const struct raft_config *cfg);
void raft_free(struct raft *r);

/* A brand-new cluster: every initial node calls this with the same conf;
 * it becomes the configuration at index 0. Only on an empty core. */
int raft_bootstrap(struct raft *r, const struct raft_conf *conf);

/* Restart from storage: hard state, snapshot metadata (index 0 if none,
 * in which case conf is the bootstrap configuration), and the entries
 * after the snapshot (consecutive, starting at snap->index + 1). Entries
 * are copied. Returns RAFT_ECORRUPT on a gap or decreasing terms. The
 * caller's state machine must already reflect the snapshot; applied is
 * the state machine's applied index (>= snap->index). */
int raft_load(struct raft *r, const struct raft_hard_state *hs,
	      const struct raft_snapshot_meta *snap,
	      const struct raft_entry *entries, size_t n,
	      raft_index applied);

int raft_tick(struct raft *r);
/* The driver could not fire ticks for a while and skips them (its loop
 * stalled): with lease_reads, forget what the lease was built on, since
 * this node's tick count fell behind real time. Reads use heartbeat
 * rounds until a majority acknowledges messages sent after this call. */
int raft_lease_drop(struct raft *r);
int raft_step(struct raft *r, const struct raft_msg *m);

/* Leader only. Appends a NORMAL entry; *index and *term (may be NULL)
 * say where. The entry is committed when an applied entry at *index has
 * *term; if that index is applied with another term, it was lost. */
int raft_propose(struct raft *r, const void *data, uint32_t len,
		 raft_index *index, raft_term *term);

/* Leader only. One change at a time: RAFT_EBUSY while a previous change
 * is uncommitted or the leader has not yet committed an entry in its own
 * term. PROMOTE returns RAFT_EAGAIN while the learner lags by more than
 * promote_lag. addr is stored in the configuration (ADD_LEARNER only,
 * may be NULL). */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, raft_id node,
		      const char *addr, raft_index *index);

/* Linearizable read barrier (Raft thesis §6.4). On the leader: once it has
 * committed an entry of its term and a majority acknowledged a heartbeat
 * round started after this call, ready.reads gets {ctx, commit index}.
 * With cfg.lease_reads, a leader whose lease is fresh answers at once,
 * without a round (see readindex.c for the rule and its assumptions). On
 * a follower: asks the leader. RAFT_ENOTLEADER when no leader is known.
 * A read that cannot complete (leadership lost) is dropped silently; the
 * driver times it out. */
int raft_read_index(struct raft *r, uint64_t ctx);

/* Leader only: hand leadership to `target` (§3.10): stop accepting
 * proposals, bring target up to date, send TIMEOUT_NOW. Aborts after an
 * election timeout. */
int raft_transfer_leader(struct raft *r, raft_id target);

/* Discard log entries up to index - snapshot_trailing (index <= applied).
 * The snapshot metadata becomes (index, term at index, conf at index).
 * The driver drops the same prefix from its log store. */
int raft_compact(struct raft *r, raft_index index);

/* The latest snapshot metadata: set by raft_compact() (index, term at
 * index, conf at index), by an installed snapshot, or by raft_load(). The
 * driver records it in its log store when it drops the prefix. */
void raft_snapshot_meta(const struct raft *r, struct raft_snapshot_meta *meta);

/* The metadata of the compacted prefix (index/term of the entry just
 * before the first one kept, and the configuration as of it). The driver
 * records it in its log store after raft_compact(). */
void raft_snapshot_meta(const struct raft *r, struct raft_snapshot_meta *m);

/* Offer snapshot data for state at `index` (the driver's applied index
 * or an earlier one still in the log, index >= the compacted prefix).
 * Copied. Used to feed followers that are behind the compacted prefix.
 * The answer to rd.want_snapshot; it may come several readies later (the
 * driver serializing elsewhere). */
int raft_set_snapshot(struct raft *r, raft_index index, const void *data,
		      uint64_t len);

/* The driver cannot answer rd.want_snapshot (serializing failed, or the
 * data it made is older than the log now holds): the core asks again the
 * next time a follower needs a snapshot. Call it after a pause, not from
 * the ready loop: a follower that needs a snapshot asks at every ready. */
int raft_snapshot_unavailable(struct raft *r);

/* Get the pending work. Returns true if rd holds anything. rd is borrowed
 * until raft_advance(). At most one ready may be outstanding at a time
 * (ready -> advance -> ready), but persistence acknowledgements via
 * raft_persisted() may arrive later. */
bool raft_ready(struct raft *r, struct raft_ready *rd);

/* The hard state and entries of ready `id` (and all earlier) are durable. */
void raft_persisted(struct raft *r, uint64_t id);

/* Done with rd. */
void raft_advance(struct raft *r, struct raft_ready *rd);

/* ---- inspection ---------------------------------------------------------- */

/* Event counts of one core since it was created (for metrics; they start
 * from 0 with the process). */
struct raft_counters {
	uint64_t elections;           /* real campaigns started (term raised) */
	uint64_t pre_votes;           /* pre-vote rounds started */
	uint64_t elections_won;       /* times this node became leader */
	uint64_t snapshots_sent;      /* snapshot transfers begun to a follower */
	uint64_t snapshot_chunks_sent; /* InstallSnapshot chunks sent */
	uint64_t snapshots_installed; /* snapshots received whole and installed */
};

struct raft_status {
	raft_id id;
	enum raft_role role;
	raft_term term;
	raft_id vote;
	raft_id leader; /* 0 if unknown */
	raft_index commit;
	raft_index applied;    /* handed out for apply */
	raft_index last_index;
	raft_term last_term;
	raft_index first_index; /* first entry still in the log */
	raft_index stable_index; /* persisted locally */
	raft_id transferee;      /* leader transfer target, 0 if none */
	struct raft_conf conf;
	/* Leader only: per node in conf, its match index and progress state
	 * (0 probe, 1 replicate, 2 snapshot). */
	raft_index match[RAFT_MAX_NODES];
	uint8_t progress[RAFT_MAX_NODES];
	struct raft_counters counters;
};

void raft_status(const struct raft *r, struct raft_status *st);
raft_id raft_leader(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
raft_term raft_current_term(const struct raft *r);

/* Configuration entry payload (RAFT_ENTRY_CONF). Encoded by the core; the
 * driver may decode it to learn peer addresses. */
int raft_conf_change_decode(const uint8_t *data, uint32_t len,
			    uint8_t *op, raft_id *node, char *addr,
			    size_t addr_cap);

/* Role / message names for logs. */
const char *raft_role_name(enum raft_role role);
const char *raft_msg_name(uint8_t type);

/* ---- message codec (wire payload for transport/) -------------------------
 * Encodes a message as fixed-width big-endian fields. raft_msg_encode
 * returns the number of bytes needed; call with cap 0 to size. Decode
 * validates every length, returns 0 or RAFT_EINVAL; decoded entries and
 * data point into `buf` (borrowed), entries array is allocated into
 * *entries_out (caller frees with free()). */
size_t raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap);
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m,
		    struct raft_entry **entries_out);

#endif
