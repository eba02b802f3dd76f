/*
 * raft.c — the Raft core: creation, restart, the ready/advance cycle and
 * inspection.
 *
 * How the core is put together
 * ----------------------------
 * The core is a plain value (struct raft, in raft_impl.h) that the driver
 * feeds with ticks, messages and proposals and then drains with
 * raft_ready()/raft_advance() (contract: raft.h). It never blocks, never
 * does I/O and never reads a clock; its only randomness is a seeded PRNG.
 * One concept per file:
 *
 *   raft.c         this file: new/free/bootstrap/load, tick dispatch, the
 *                  ready batch (what to persist, send, apply), deferred
 *                  frees, persistence acknowledgements, status
 *   step.c         raft_step(): validation of peer input, the term rules
 *                  of Figure 2 ("If RPC request or response contains term
 *                  T > currentTerm: set currentTerm = T, convert to
 *                  follower"), dispatch by message type
 *   election.c     roles, election timer, pre-vote, votes, check-quorum
 *   replication.c  AppendEntries on both sides, commit rule, proposals
 *   progress.c     the leader's per-follower state (probe / replicate /
 *                  snapshot) and the in-flight window
 *   log.c          the in-memory log (entries after the compacted prefix)
 *   conf.c         membership: single-server changes, conf entry encoding,
 *                  the configuration as of any index
 *   snapshot.c     compaction, snapshot data, chunked InstallSnapshot
 *   readindex.c    linearizable reads (ReadIndex, thesis §6.4)
 *   transfer.c     leadership transfer (thesis §3.10)
 *   prng.c         splitmix64 for election timeouts
 *   codec.c        wire encoding of messages (written separately)
 *
 * Output
 * ------
 * Messages are queued in two outboxes while the core runs: `msgs` (safe to
 * send before the local disk write: a leader's AppendEntries, heartbeats,
 * pre-votes, snapshot chunks, read requests) and `msgs_after_persist`
 * (everything that promises durable state: vote grants and our own vote
 * requests after a term bump, AppendEntries acknowledgements). ready()
 * hands both out with the unpersisted entries, the hard state if it moved,
 * and the committed entries that are also durable locally (apply never
 * runs ahead of the local disk). The leader's own match index is its
 * stable index (raft_persisted()), so it counts itself in a commit quorum
 * only for entries on its disk (thesis §10.2.1).
 *
 * Memory
 * ------
 * Entry data is one allocation per entry, owned by the log. Messages and
 * ready batches point into it. When an entry leaves the log (truncation,
 * compaction, snapshot) its data goes to a "garbage" list that is sealed
 * by the next ready() and freed by the following raft_advance(), so
 * nothing a ready or a queued message refers to is ever freed early.
 * Arrays grow geometrically and are reused between readies, so the steady
 * state allocates only the entry data itself.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

/* Fill cfg with the documented defaults (id and seed left 0). */
void raft_config_default(struct raft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->election_ticks = 15;
	cfg->heartbeat_ticks = 5;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
	cfg->lease_reads = false;
	cfg->max_inflight_msgs = 256;
	cfg->max_inflight_bytes = 8u << 20;
	cfg->max_msg_bytes = 1u << 20;
	cfg->max_uncommitted_bytes = 64u << 20;
	cfg->snapshot_chunk_bytes = 256u << 10;
	cfg->snapshot_trailing = 1024;
	cfg->promote_lag = 64;
}

/* Replace zero (unset) numeric fields by their defaults. */
static void config_fill(struct raft_config *c)
{
	struct raft_config d;
	raft_config_default(&d);
	if (!c->election_ticks)
		c->election_ticks = d.election_ticks;
	if (!c->heartbeat_ticks)
		c->heartbeat_ticks = d.heartbeat_ticks;
	if (!c->max_inflight_msgs)
		c->max_inflight_msgs = d.max_inflight_msgs;
	if (!c->max_inflight_bytes)
		c->max_inflight_bytes = d.max_inflight_bytes;
	if (!c->max_msg_bytes)
		c->max_msg_bytes = d.max_msg_bytes;
	if (!c->max_uncommitted_bytes)
		c->max_uncommitted_bytes = d.max_uncommitted_bytes;
	if (!c->snapshot_chunk_bytes)
		c->snapshot_chunk_bytes = d.snapshot_chunk_bytes;
}

/* A new core: follower, term 0, empty log and configuration. */
struct raft *raft_new(const struct raft_config *cfg)
{
	if (!cfg || cfg->id == 0)
		return NULL;
	struct raft_config c = *cfg;
	config_fill(&c);
	if (c.heartbeat_ticks >= c.election_ticks)
		return NULL;
	struct raft *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cfg = c;
	r->id = c.id;
	for (int i = 0; i < RAFT_MAX_NODES; i++) {
		r->infl_pool[i] = calloc(c.max_inflight_msgs,
					 sizeof(struct raft_inflight));
		if (!r->infl_pool[i]) {
			raft_free(r);
			return NULL;
		}
	}
	if (raft_conf_hist_reset(r, 0, &r->conf) != 0) {
		raft_free(r);
		return NULL;
	}
	r->n_lease_ring = c.election_ticks + 1;
	r->lease_ring = calloc(r->n_lease_ring, sizeof(*r->lease_ring));
	if (!r->lease_ring) {
		raft_free(r);
		return NULL;
	}
	raft_prng_seed(&r->prng, c.seed, c.id);
	r->role = RAFT_FOLLOWER;
	r->unstable = 1;
	r->now = 1;
	raft_reset_timeout(r);
	return r;
}

static void ptrvec_free_all(struct raft_ptrvec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->p[i]);
	v->n = 0;
}

static void outbox_free(struct raft_outbox *b)
{
	free(b->m);
	free(b->eoff);
	free(b->ents);
	memset(b, 0, sizeof(*b));
}

/* Frees the core and everything it owns. */
void raft_free(struct raft *r)
{
	if (!r)
		return;
	raft_log_free(&r->log);
	for (int i = 0; i < RAFT_MAX_NODES; i++)
		free(r->infl_pool[i]);
	free(r->hist);
	free(r->reads);
	free(r->lease_ring);
	free(r->out_reads);
	free(r->rd_reads);
	free(r->snap_data);
	free(r->rx_buf);
	for (int i = 0; i < 2; i++) {
		outbox_free(&r->out[i]);
		outbox_free(&r->rd_out[i]);
	}
	free(r->rd_ents);
	free(r->rd_comm);
	free(r->prec);
	ptrvec_free_all(&r->garbage);
	ptrvec_free_all(&r->garbage_sealed);
	free(r->garbage.p);
	free(r->garbage_sealed.p);
	free(r);
}

/* Checks ids (non-zero, unique) and addresses (NUL-terminated). */
static int conf_valid(const struct raft_conf *c)
{
	if (c->n > RAFT_MAX_NODES)
		return RAFT_EINVAL;
	for (uint32_t i = 0; i < c->n; i++) {
		if (c->nodes[i].id == 0 || c->nodes[i].role > RAFT_LEARNER)
			return RAFT_EINVAL;
		if (strnlen(c->nodes[i].addr, RAFT_ADDR_MAX) >= RAFT_ADDR_MAX)
			return RAFT_EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (c->nodes[j].id == c->nodes[i].id)
				return RAFT_EINVAL;
	}
	return 0;
}

static bool core_empty(const struct raft *r)
{
	return r->term == 0 && r->log.n == 0 && r->log.off == 0 &&
	       r->conf.n == 0;
}

/* Brand-new cluster: conf becomes the configuration at index 0. */
int raft_bootstrap(struct raft *r, const struct raft_conf *conf)
{
	if (!r || !conf || !core_empty(r) || conf->n == 0 ||
	    conf_valid(conf) != 0)
		return RAFT_EINVAL;
	int rc = raft_conf_hist_reset(r, 0, conf);
	if (rc)
		return rc;
	r->conf = *conf;
	r->snap_meta.conf = *conf;
	raft_pr_rebuild(r);
	raft_trace(r, RAFT_EV_CONF, 0, 0, "bootstrap configuration");
	return 0;
}

/* Restart from storage (see raft.h). Entries at or below snap->index are
 * accepted (and skipped) so a store that kept a trailing prefix loads. */
int raft_load(struct raft *r, const struct raft_hard_state *hs,
	      const struct raft_snapshot_meta *snap,
	      const struct raft_entry *entries, size_t n, raft_index applied)
{
	if (!r || !hs || !snap || (n && !entries) || !core_empty(r))
		return RAFT_EINVAL;
	if (conf_valid(&snap->conf) != 0)
		return RAFT_ECORRUPT;
	raft_term prev_term = snap->term;
	size_t first = 0;
	for (size_t i = 0; i < n; i++) {
		const struct raft_entry *e = &entries[i];
		if (i > 0 && e->index != entries[i - 1].index + 1)
			return RAFT_ECORRUPT;
		if (e->type > RAFT_ENTRY_CONF || (e->len && !e->data))
			return RAFT_ECORRUPT;
		if (e->index < snap->index) {
			first = i + 1;
			continue;
		}
		if (e->index == snap->index) {
			if (e->term != snap->term)
				return RAFT_ECORRUPT;
			first = i + 1;
			continue;
		}
		if (i == first && e->index != snap->index + 1)
			return RAFT_ECORRUPT; /* gap after the snapshot */
		if (e->term < prev_term)
			return RAFT_ECORRUPT;
		prev_term = e->term;
	}
	if (hs->term < prev_term)
		return RAFT_ECORRUPT;
	int rc = raft_conf_hist_reset(r, snap->index, &snap->conf);
	if (rc)
		return rc;
	r->conf = snap->conf;
	r->snap_meta = *snap;
	raft_log_reset(r, snap->index, snap->term);
	for (size_t i = first; i < n; i++) {
		rc = raft_log_append(r, entries[i].term, entries[i].type,
				     entries[i].data, entries[i].len);
		if (rc)
			return rc;
	}
	raft_index last = raft_log_last(&r->log);
	r->term = hs->term;
	r->vote = hs->vote;
	raft_index c = hs->commit;
	if (c < applied)
		c = applied; /* whatever was applied was committed */
	if (c < snap->index)
		c = snap->index;
	if (c > last)
		c = last;
	if (applied < snap->index)
		applied = snap->index;
	if (applied > c)
		applied = c;
	r->commit = snap->index;
	r->applied = applied;
	r->stable = last;
	r->unstable = last + 1;
	raft_pr_rebuild(r);
	/* The configuration is the snapshot's plus every committed change
	 * after it (changes take effect when committed). */
	for (raft_index i = snap->index + 1; i <= c; i++) {
		const struct raft_entry *e = raft_log_get(&r->log, i);
		if (e->type == RAFT_ENTRY_CONF)
			raft_conf_apply_entry(r, e);
	}
	r->commit = c;
	r->prev_hs.term = r->term;
	r->prev_hs.vote = r->vote;
	r->prev_hs.commit = r->commit;
	/* Before the crash we may have acknowledged a leader whose lease
	 * counts on us refusing votes for election_ticks (readindex.c). */
	if (r->cfg.lease_reads && r->cfg.check_quorum)
		r->vote_hold_until = r->now + r->cfg.election_ticks;
	raft_trace(r, RAFT_EV_TERM, 0, last, "restarted from storage");
	return 0;
}

/* One unit of virtual time. */
int raft_tick(struct raft *r)
{
	if (!r)
		return RAFT_EINVAL;
	r->now++;
	if (r->role == RAFT_LEADER) {
		raft_lease_tick(r);
		raft_tick_leader(r);
	} else {
		raft_tick_election(r);
	}
	return 0;
}

/* ---- trace and deferred frees ------------------------------------------- */

/* Reports an event to cfg.trace, if set. */
void raft_trace(struct raft *r, uint8_t type, raft_id peer, raft_index index,
		const char *detail)
{
	if (!r->cfg.trace)
		return;
	struct raft_event ev = {
		.type = type,
		.node = r->id,
		.term = r->term,
		.peer = peer,
		.index = index,
		.detail = detail,
	};
	r->cfg.trace(r->cfg.trace_ctx, &ev);
}

static int ptrvec_push(struct raft_ptrvec *v, void *p)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void **np = realloc(v->p, cap * sizeof(*np));
		if (!np)
			return RAFT_ENOMEM;
		v->p = np;
		v->cap = cap;
	}
	v->p[v->n++] = p;
	return 0;
}

/* Frees p after the ready that may reference it has been advanced. On
 * allocation failure p is leaked rather than freed early. */
void raft_defer_free(struct raft *r, void *p)
{
	if (p)
		(void)ptrvec_push(&r->garbage, p);
}

/* ---- outboxes ------------------------------------------------------------ */

/* A zeroed message in outbox after_persist (0: msgs, 1: after persist).
 * On allocation failure the message goes to a scratch slot and is lost,
 * which Raft tolerates like any lost message. */
struct raft_msg *raft_out_msg(struct raft *r, bool after_persist,
			      uint8_t type, raft_id to)
{
	struct raft_outbox *b = &r->out[after_persist ? 1 : 0];
	struct raft_msg *m = &r->scratch;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct raft_msg *nm = realloc(b->m, cap * sizeof(*nm));
		if (nm)
			b->m = nm;
		size_t *ne = nm ? realloc(b->eoff, cap * sizeof(*ne)) : NULL;
		if (ne)
			b->eoff = ne;
		if (nm && ne)
			b->cap = cap;
	}
	if (b->n < b->cap) {
		m = &b->m[b->n];
		b->eoff[b->n] = SIZE_MAX;
		b->n++;
	}
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->id;
	m->to = to;
	m->term = r->term;
	return m;
}

/* Attaches log entries [lo, lo + n) to the last message of the outbox. On
 * allocation failure the message is dropped. */
int raft_out_entries(struct raft *r, bool after_persist, raft_index lo,
		     size_t n)
{
	struct raft_outbox *b = &r->out[after_persist ? 1 : 0];
	if (b->n == 0 || n == 0)
		return 0;
	if (b->n_ents + n > b->cap_ents) {
		size_t cap = b->cap_ents ? b->cap_ents : 256;
		while (cap < b->n_ents + n)
			cap *= 2;
		struct raft_entry *e = realloc(b->ents, cap * sizeof(*e));
		if (!e) {
			b->n--;
			return RAFT_ENOMEM;
		}
		b->ents = e;
		b->cap_ents = cap;
	}
	const struct raft_entry *src = raft_log_get(&r->log, lo);
	memcpy(b->ents + b->n_ents, src, n * sizeof(*src));
	b->eoff[b->n - 1] = b->n_ents;
	b->m[b->n - 1].n_entries = (uint32_t)n;
	b->n_ents += n;
	return 0;
}

/* Moves the outbox into the ready slot and points entries at their copies. */
static void outbox_swap(struct raft_outbox *out, struct raft_outbox *rd)
{
	struct raft_outbox t = *rd;
	*rd = *out;
	*out = t;
	out->n = 0;
	out->n_ents = 0;
	for (size_t i = 0; i < rd->n; i++)
		if (rd->eoff[i] != SIZE_MAX)
			rd->m[i].entries = rd->ents + rd->eoff[i];
}

/* ---- ready / advance ----------------------------------------------------- */

static int grow_entries(struct raft_entry **a, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	struct raft_entry *n = realloc(*a, c * sizeof(*n));
	if (!n)
		return RAFT_ENOMEM;
	*a = n;
	*cap = c;
	return 0;
}

static void prec_push(struct raft *r, uint64_t id, raft_index index)
{
	if (r->n_prec == r->cap_prec) {
		size_t cap = r->cap_prec ? r->cap_prec * 2 : 16;
		struct raft_persist_rec *p = realloc(r->prec, cap * sizeof(*p));
		if (!p)
			return; /* stable lags; a later ready catches up */
		r->prec = p;
		r->cap_prec = cap;
	}
	raft_term t = 0;
	(void)raft_log_term(&r->log, index, &t);
	r->prec[r->n_prec++] = (struct raft_persist_rec){id, index, t};
}

/* Collects the pending work (see raft.h for the order of operations). */
bool raft_ready(struct raft *r, struct raft_ready *rd)
{
	memset(rd, 0, sizeof(*rd));
	if (r->role == RAFT_LEADER) {
		if (r->bcast_hb) {
			r->bcast_hb = false;
			raft_bcast_heartbeat(r);
		}
		raft_flush_appends(r);
	}
	/* Garbage so far may be referenced by this ready: free it at the
	 * matching advance. */
	for (size_t i = 0; i < r->garbage.n; i++)
		if (ptrvec_push(&r->garbage_sealed, r->garbage.p[i]) != 0)
			break; /* leak rather than free early */
	r->garbage.n = 0;

	rd->id = ++r->ready_seq;
	if (r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
	    r->commit != r->prev_hs.commit) {
		rd->has_hs = true;
		rd->hs.term = r->term;
		rd->hs.vote = r->vote;
		rd->hs.commit = r->commit;
		r->prev_hs = rd->hs;
	}
	bool persist = false;
	if (r->install_pending) {
		r->install_pending = false;
		rd->has_snapshot = true;
		rd->snapshot = r->snap_data_meta;
		rd->snapshot_data = r->snap_data;
		rd->snapshot_len = r->snap_len;
		persist = true;
	}
	raft_index last = raft_log_last(&r->log);
	if (r->unstable <= r->log.off)
		r->unstable = r->log.off + 1;
	if (r->unstable <= last) {
		size_t n = (size_t)(last - r->unstable + 1);
		if (grow_entries(&r->rd_ents, &r->cap_rd_ents, n) == 0) {
			memcpy(r->rd_ents, raft_log_get(&r->log, r->unstable),
			       n * sizeof(struct raft_entry));
			rd->entries = r->rd_ents;
			rd->n_entries = n;
			r->unstable = last + 1;
			persist = true;
		}
	}
	if (persist)
		prec_push(r, rd->id, rd->n_entries ? last : r->log.off);

	outbox_swap(&r->out[0], &r->rd_out[0]);
	outbox_swap(&r->out[1], &r->rd_out[1]);
	rd->msgs = r->rd_out[0].m;
	rd->n_msgs = r->rd_out[0].n;
	rd->msgs_after_persist = r->rd_out[1].m;
	rd->n_msgs_after_persist = r->rd_out[1].n;

	/* Apply only what is committed and durable here. */
	raft_index hi = r->commit < r->stable ? r->commit : r->stable;
	if (r->applied < r->log.off)
		r->applied = r->log.off;
	if (hi > r->applied) {
		size_t n = (size_t)(hi - r->applied);
		if (grow_entries(&r->rd_comm, &r->cap_rd_comm, n) == 0) {
			memcpy(r->rd_comm, raft_log_get(&r->log, r->applied + 1),
			       n * sizeof(struct raft_entry));
			rd->committed = r->rd_comm;
			rd->n_committed = n;
			r->applied = hi;
		}
	}

	struct raft_read_state *t = r->rd_reads;
	size_t tc = r->cap_rd_reads;
	r->rd_reads = r->out_reads;
	r->cap_rd_reads = r->cap_out_reads;
	rd->reads = r->rd_reads;
	rd->n_reads = r->n_out_reads;
	r->out_reads = t;
	r->cap_out_reads = tc;
	r->n_out_reads = 0;

	if (r->want_snapshot) {
		r->want_snapshot = false;
		r->want_reported = true;
		rd->want_snapshot = true;
	}
	r->ready_out = true;
	return rd->has_hs || rd->has_snapshot || rd->n_entries ||
	       rd->n_msgs || rd->n_msgs_after_persist || rd->n_committed ||
	       rd->n_reads || rd->want_snapshot;
}

/* Ready `id` and all before it are durable: raise the stable index. An
 * acknowledgement for entries that were since overwritten (their term at
 * that index changed) says nothing about the new ones and is skipped. */
void raft_persisted(struct raft *r, uint64_t id)
{
	size_t k = 0;
	raft_index last = raft_log_last(&r->log);
	for (; k < r->n_prec && r->prec[k].id <= id; k++) {
		struct raft_persist_rec *p = &r->prec[k];
		raft_term t;
		bool ok = p->index <= r->log.off ||
			  (raft_log_term(&r->log, p->index, &t) &&
			   t == p->term);
		if (ok && p->index > r->stable)
			r->stable = p->index > last ? last : p->index;
	}
	if (k) {
		memmove(r->prec, r->prec + k,
			(r->n_prec - k) * sizeof(*r->prec));
		r->n_prec -= k;
	}
	if (r->role == RAFT_LEADER)
		raft_maybe_commit(r);
}

/* Done with rd: free what it may have referenced. */
void raft_advance(struct raft *r, struct raft_ready *rd)
{
	(void)rd;
	ptrvec_free_all(&r->garbage_sealed);
	for (int i = 0; i < 2; i++) {
		r->rd_out[i].n = 0;
		r->rd_out[i].n_ents = 0;
	}
	r->ready_out = false;
}

/* ---- inspection ---------------------------------------------------------- */

void raft_status(const struct raft *r, struct raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->leader = r->leader;
	st->commit = r->commit;
	st->applied = r->applied;
	st->last_index = raft_log_last(&r->log);
	st->last_term = raft_log_last_term(&r->log);
	st->first_index = r->log.off + 1;
	st->stable_index = r->stable;
	st->transferee = r->transferee;
	st->conf = r->conf;
	st->counters = r->counters;
	if (r->role != RAFT_LEADER)
		return;
	for (uint32_t i = 0; i < r->conf.n && i < r->n_prs; i++) {
		const struct raft_progress *pr = &r->prs[i];
		st->match[i] = pr->id == r->id ? raft_self_match(r) : pr->match;
		st->progress[i] = pr->id == r->id ? RAFT_PR_REPLICATE
						  : pr->state;
	}
}

/* The latest snapshot metadata (compaction, install or load). */
void raft_snapshot_meta(const struct raft *r, struct raft_snapshot_meta *m)
{
	*m = r->snap_meta;
}

raft_id raft_leader(const struct raft *r)
{
	return r->leader;
}

enum raft_role raft_role(const struct raft *r)
{
	return r->role;
}

raft_term raft_current_term(const struct raft *r)
{
	return r->term;
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRE_CANDIDATE:
		return "pre-candidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "unknown";
}

const char *raft_msg_name(uint8_t type)
{
	static const char *const names[] = {
		"?",	       "APPEND",	"APPEND_RESP",
		"VOTE",	       "VOTE_RESP",	"PREVOTE",
		"PREVOTE_RESP", "SNAPSHOT",	"SNAPSHOT_RESP",
		"TIMEOUT_NOW", "READ_INDEX",	"READ_INDEX_RESP",
	};
	return type <= RAFT_MSG_TYPE_MAX ? names[type] : "?";
}
