/*
 * raft_impl.h — internals of the Raft core shared by its source files.
 *
 * Nothing here is part of the contract (that is raft.h). Every function
 * declared below is used by more than one file of the core; everything
 * else stays static in its file. See raft.c for how the files fit.
 */
#ifndef SANDFS_RAFT_IMPL_H
#define SANDFS_RAFT_IMPL_H

#include "consensus/raft.h"

/* ---- prng.c: seeded splitmix64 ------------------------------------------ */

struct raft_prng {
	uint64_t s;
};

void raft_prng_seed(struct raft_prng *p, uint64_t seed, raft_id id);
uint64_t raft_prng_next(struct raft_prng *p);
/* Uniform in [lo, hi); hi > lo. */
uint32_t raft_prng_range(struct raft_prng *p, uint32_t lo, uint32_t hi);

/* ---- log.c: the in-memory log (entries after the compacted prefix) ------ */

struct raft_log {
	struct raft_entry *e; /* e[i].index == off + 1 + i; data owned */
	size_t n;
	size_t cap;
	raft_index off;     /* last index dropped (compacted or snapshot) */
	raft_term off_term; /* its term */
};

static inline raft_index raft_log_last(const struct raft_log *l)
{
	return l->off + l->n;
}

/* Entry at index i, or NULL when not held (compacted or beyond last). */
static inline struct raft_entry *raft_log_get(const struct raft_log *l,
					      raft_index i)
{
	if (i <= l->off || i > l->off + l->n)
		return NULL;
	return &l->e[i - l->off - 1];
}

struct raft;
/* Term of entry i into *t; false when unknown (compacted or beyond). */
bool raft_log_term(const struct raft_log *l, raft_index i, raft_term *t);
raft_term raft_log_last_term(const struct raft_log *l);
/* Appends one entry at last + 1 (data copied). */
int raft_log_append(struct raft *r, raft_term term, uint8_t type,
		    const void *data, uint32_t len);
/* Drops entries with index >= from. */
void raft_log_truncate(struct raft *r, raft_index from);
/* Drops entries with index <= upto (upto <= last). */
void raft_log_compact(struct raft *r, raft_index upto);
/* Drops everything; the log restarts after (index, term). */
void raft_log_reset(struct raft *r, raft_index index, raft_term term);
void raft_log_free(struct raft_log *l);
/* Data bytes of entries [lo, hi]. */
uint64_t raft_log_bytes(const struct raft_log *l, raft_index lo,
			raft_index hi);

/* ---- progress.c: the leader's view of each follower --------------------- */

enum { RAFT_PR_PROBE = 0, RAFT_PR_REPLICATE = 1, RAFT_PR_SNAPSHOT = 2 };

struct raft_inflight {
	raft_index last;
	uint64_t bytes;
};

struct raft_progress {
	raft_id id;
	bool voter;
	uint8_t state;
	raft_index match;
	raft_index next;
	bool probe_sent;     /* PROBE: one APPEND out, wait for an answer */
	bool recent_active;  /* heard from since the last quorum check */
	uint64_t read_ack;   /* highest ReadIndex round acknowledged */
	uint64_t lease_tick; /* lower bound of the leader tick at which the
			      * latest acknowledged message was sent; 0:
			      * none in this leadership */
	uint32_t stall;      /* REPLICATE: ticks without an acknowledgement */
	/* SNAPSHOT state */
	raft_index pending_snap; /* index of the snapshot being sent, 0: none */
	uint64_t snap_off;       /* next chunk offset to send */
	bool snap_wait;          /* a chunk is out; wait for an answer */
	uint64_t snap_seq;       /* ctx of the chunk sent last */
	uint64_t epoch;          /* bumped on each fall back to probe */
	/* REPLICATE: ring of in-flight APPENDs */
	struct raft_inflight *infl;
	uint32_t infl_head;
	uint32_t infl_n;
	uint64_t infl_bytes;
};

struct raft_progress *raft_pr_find(struct raft *r, raft_id id);
void raft_pr_reset_all(struct raft *r);
void raft_pr_rebuild(struct raft *r);
void raft_pr_become_probe(struct raft *r, struct raft_progress *pr);
void raft_pr_become_replicate(struct raft *r, struct raft_progress *pr);
void raft_pr_become_snapshot(struct raft *r, struct raft_progress *pr);
/* Match advanced to m; returns true if it moved. */
bool raft_pr_update(struct raft *r, struct raft_progress *pr, raft_index m);
bool raft_pr_paused(const struct raft *r, const struct raft_progress *pr);
void raft_pr_infl_add(struct raft *r, struct raft_progress *pr,
		      raft_index last, uint64_t bytes);

/* ---- output (raft.c) ---------------------------------------------------- */

struct raft_outbox {
	struct raft_msg *m;
	size_t *eoff; /* offset of each message's entries in ents */
	size_t n, cap;
	struct raft_entry *ents;
	size_t n_ents, cap_ents;
};

/* A zeroed message to `to` with from/term/type set; NULL on ENOMEM. The
 * pointer is valid until the next raft_out_msg(). after_persist selects
 * msgs_after_persist. */
struct raft_msg *raft_out_msg(struct raft *r, bool after_persist,
			      uint8_t type, raft_id to);
/* Attaches entries [lo, lo+n) of the log to the last message of the box. */
int raft_out_entries(struct raft *r, bool after_persist, raft_index lo,
		     size_t n);
/* Frees p once no ready can reference it any more. */
void raft_defer_free(struct raft *r, void *p);
void raft_trace(struct raft *r, uint8_t type, raft_id peer, raft_index index,
		const char *detail);

/* ---- raft state --------------------------------------------------------- */

struct raft_conf_hist {
	raft_index index; /* conf in effect from this index */
	struct raft_conf conf;
};

struct raft_read_req {
	uint64_t ctx;
	raft_id from;     /* 0: local */
	raft_index index; /* commit index when the round started */
	uint64_t round;   /* 0: waiting for a committed entry of our term */
};

struct raft_persist_rec {
	uint64_t id;
	raft_index index;
	raft_term term;
};

struct raft_ptrvec {
	void **p;
	size_t n, cap;
};

struct raft {
	struct raft_config cfg;
	struct raft_prng prng;
	raft_id id;
	enum raft_role role;

	/* persistent state (Figure 2) */
	raft_term term;
	raft_id vote;
	struct raft_log log;

	raft_id leader;
	raft_index commit;
	raft_index applied;  /* handed out for apply */
	raft_index stable;   /* acknowledged by raft_persisted() */
	raft_index unstable; /* first index not yet handed out to persist */

	/* configuration in effect (committed) and its history */
	struct raft_conf conf;
	struct raft_conf_hist *hist;
	size_t n_hist, cap_hist;
	raft_index pending_conf; /* index of the last conf entry appended */
	bool removed_self;       /* leader: our own removal committed */
	struct raft_snapshot_meta snap_meta; /* last compaction/snapshot */
	struct raft_counters counters;       /* raft_status() reports them */

	/* timers */
	uint32_t election_elapsed;
	uint32_t heartbeat_elapsed;
	uint32_t rand_timeout;
	uint32_t transfer_elapsed;

	/* candidate: votes by conf slot: 0 none, 1 granted, 2 refused */
	uint8_t votes[RAFT_MAX_NODES];
	bool campaign_transfer;

	/* leader */
	struct raft_progress prs[RAFT_MAX_NODES];
	uint32_t n_prs;
	struct raft_inflight *infl_pool[RAFT_MAX_NODES];
	raft_id transferee;
	bool transfer_sent; /* TIMEOUT_NOW went out */
	uint64_t uncommitted_bytes;
	bool bcast_hb;     /* ready(): heartbeat everyone (a read round) */
	bool bcast_commit; /* ready(): tell followers the new commit index */

	/* ReadIndex */
	struct raft_read_req *reads;
	size_t n_reads, cap_reads;
	uint64_t read_round;
	/* Lease (readindex.c). `now` counts raft_tick() calls from 1. The
	 * ring maps ticks to rounds: lease_ring[t % n_lease_ring] holds the
	 * first round created at tick t, so a message carrying round k was
	 * sent at tick >= the last t whose first round is <= k. */
	uint64_t now;
	struct raft_lease_mark {
		uint64_t tick; /* 0: unused */
		uint64_t first_round;
	} *lease_ring;
	uint32_t n_lease_ring;
	raft_term lease_off_term; /* a transfer ran in this term: no lease */
	/* Lease reads: refuse (pre-)votes without the transfer flag while
	 * now < vote_hold_until, whatever the term: set by raft_load() (we
	 * may have acknowledged a leader just before a crash) and when we
	 * leave a leader we heard from less than election_ticks ago. */
	uint64_t vote_hold_until;
	struct raft_read_state *out_reads, *rd_reads;
	size_t n_out_reads, cap_out_reads, cap_rd_reads;

	/* snapshot data held for lagging followers */
	uint8_t *snap_data;
	uint64_t snap_len;
	struct raft_snapshot_meta snap_data_meta;
	bool has_snap_data;
	bool want_snapshot;  /* report in the next ready */
	bool want_reported;  /* reported, waiting for raft_set_snapshot() */

	/* snapshot being received */
	raft_id rx_from;
	raft_index rx_index;
	raft_term rx_term;
	uint8_t *rx_buf;
	uint64_t rx_len, rx_cap;
	/* received snapshot to hand out in the next ready */
	bool install_pending;

	/* output */
	struct raft_outbox out[2];    /* [0] msgs, [1] msgs_after_persist */
	struct raft_outbox rd_out[2]; /* swapped out by ready() */
	struct raft_entry *rd_ents, *rd_comm;
	size_t cap_rd_ents, cap_rd_comm;
	struct raft_hard_state prev_hs;
	uint64_t ready_seq;
	bool ready_out;
	struct raft_persist_rec *prec;
	size_t n_prec, cap_prec;
	struct raft_ptrvec garbage, garbage_sealed;
	struct raft_msg scratch; /* target of messages dropped on ENOMEM */
};

/* ---- election.c --------------------------------------------------------- */

void raft_become_follower(struct raft *r, raft_term term, raft_id leader,
			  const char *why);
void raft_become_leader(struct raft *r);
void raft_campaign(struct raft *r, bool pre_vote, bool transfer,
		   const char *why);
void raft_tick_election(struct raft *r);
void raft_reset_timeout(struct raft *r);
void raft_handle_vote(struct raft *r, const struct raft_msg *m);
void raft_handle_vote_resp(struct raft *r, const struct raft_msg *m);
void raft_tick_leader(struct raft *r);

/* ---- replication.c ------------------------------------------------------ */

void raft_send_append(struct raft *r, struct raft_progress *pr,
		      bool allow_empty);
void raft_send_heartbeat(struct raft *r, struct raft_progress *pr);
void raft_bcast_heartbeat(struct raft *r);
void raft_flush_appends(struct raft *r);
void raft_handle_append(struct raft *r, const struct raft_msg *m);
void raft_handle_append_resp(struct raft *r, const struct raft_msg *m);
bool raft_maybe_commit(struct raft *r);
void raft_commit_to(struct raft *r, raft_index c);
raft_index raft_self_match(const struct raft *r);
/* Number of votes needed among the voters of the configuration. */
uint32_t raft_quorum(const struct raft *r);

/* ---- conf.c ------------------------------------------------------------- */

int raft_conf_find(const struct raft_conf *c, raft_id id);
bool raft_conf_is_voter(const struct raft_conf *c, raft_id id);
uint32_t raft_conf_voters(const struct raft_conf *c);
void raft_conf_apply_entry(struct raft *r, const struct raft_entry *e);
const struct raft_conf *raft_conf_at(const struct raft *r, raft_index i);
int raft_conf_hist_reset(struct raft *r, raft_index index,
			 const struct raft_conf *c);
void raft_conf_hist_prune(struct raft *r, raft_index upto);

/* ---- readindex.c -------------------------------------------------------- */

void raft_reads_drop(struct raft *r);
void raft_reads_start(struct raft *r);
void raft_reads_check(struct raft *r);
void raft_handle_read_index(struct raft *r, const struct raft_msg *m);
void raft_handle_read_index_resp(struct raft *r, const struct raft_msg *m);
int raft_out_read(struct raft *r, uint64_t ctx, raft_index index);
void raft_lease_tick(struct raft *r);
bool raft_vote_held(const struct raft *r);
void raft_lease_reset(struct raft *r);
void raft_lease_ack(struct raft *r, struct raft_progress *pr, uint64_t round);
bool raft_lease_valid(const struct raft *r);

/* ---- snapshot.c --------------------------------------------------------- */

void raft_send_snapshot(struct raft *r, struct raft_progress *pr);
void raft_handle_snapshot(struct raft *r, const struct raft_msg *m);
void raft_handle_snapshot_resp(struct raft *r, const struct raft_msg *m);
void raft_rx_reset(struct raft *r);

/* ---- transfer.c --------------------------------------------------------- */

void raft_transfer_abort(struct raft *r, const char *why);
void raft_transfer_check(struct raft *r, struct raft_progress *pr);
void raft_handle_timeout_now(struct raft *r, const struct raft_msg *m);

#endif
