/*
 * repl.c — the replicator (see repl.h for the contract).
 *
 * Threads: the replicator thread owns the Raft core, the log store and
 * the state machine. Link threads (nng callbacks) and FUSE workers never
 * touch them: they push items onto `in` (guarded by r->mu) and signal
 * r->cv. The replicator loop:
 *
 *   wait until an item arrives or the next tick is due
 *   drain every queued item (steps, proposals, reads, forwarded requests)
 *   fire the ticks that elapsed
 *   while the core has ready work:
 *     send msgs; install a received snapshot; persist hard state + entries
 *     in ONE synced batch (group commit); send msgs_after_persist; apply
 *     committed entries; answer reads; advance
 *   retry or fail overdue proposals and reads; compact when due
 *
 * Exactly-once proposals: an entry carries the envelope
 *   u64 origin | u64 seq | u64 low | payload
 * where low is the origin's oldest unfinished seq. The state machine keeps
 * the first result per (origin, seq); the origin resends a proposal (same
 * seq) to the current leader until its own node applies it or the
 * timeout passes.
 *
 * Membership changes (repl_change_conf) take the same road: the leader
 * proposes them (raft_propose_conf), a follower forwards them
 * (WIRE_KIND_CONF) and follows leader changes; refusals while another
 * change commits (EBUSY) or the learner lags (EAGAIN) are retried until
 * the timeout; the requester completes when the CONF entry applies on its
 * own node.
 */
#include "consensus/repl_internal.h"

/* ---- input queue ------------------------------------------------------- */

struct item *repl_item_new(enum item_kind kind, const void *data,
			     size_t len)
{
	struct item *it = calloc(1, sizeof(*it) + len);
	if (!it)
		return NULL;
	it->kind = kind;
	it->len = (uint32_t)len;
	if (len)
		memcpy(it->data, data, len);
	return it;
}

/* Queue an item for the replicator thread; takes ownership. */
void repl_enqueue(struct repl *r, struct item *it)
{
	pthread_mutex_lock(&r->mu);
	if (r->in_tail)
		r->in_tail->next = it;
	else
		r->in = it;
	r->in_tail = it;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* ---- configuration encoding (for the log store's snapshot record) ------ */

size_t repl_conf_encode(const struct raft_conf *c, uint8_t *buf,
			  size_t cap)
{
	size_t need = 4;
	for (uint32_t i = 0; i < c->n; i++)
		need += 8 + 1 + 2 + strnlen(c->nodes[i].addr, RAFT_ADDR_MAX - 1);
	if (need > cap)
		return need;
	uint8_t *p = buf;
	p[0] = p[1] = p[2] = 0;
	p[3] = (uint8_t)c->n;
	p += 4;
	for (uint32_t i = 0; i < c->n; i++) {
		size_t al = strnlen(c->nodes[i].addr, RAFT_ADDR_MAX - 1);
		put64(p, c->nodes[i].id);
		p[8] = c->nodes[i].role;
		p[9] = (uint8_t)(al >> 8);
		p[10] = (uint8_t)al;
		memcpy(p + 11, c->nodes[i].addr, al);
		p += 11 + al;
	}
	return need;
}

int repl_conf_decode(const uint8_t *p, size_t len, struct raft_conf *c)
{
	memset(c, 0, sizeof(*c));
	if (len == 0)
		return 0;
	if (len < 4 || p[0] || p[1] || p[2] || p[3] > RAFT_MAX_NODES)
		return -EINVAL;
	c->n = p[3];
	const uint8_t *end = p + len;
	p += 4;
	for (uint32_t i = 0; i < c->n; i++) {
		if (end - p < 11)
			return -EINVAL;
		size_t al = (size_t)p[9] << 8 | p[10];
		if (al >= RAFT_ADDR_MAX || (size_t)(end - p) < 11 + al ||
		    (p[8] != RAFT_VOTER && p[8] != RAFT_LEARNER) ||
		    memchr(p + 11, 0, al))
			return -EINVAL;
		c->nodes[i].id = get64(p);
		c->nodes[i].role = p[8];
		memcpy(c->nodes[i].addr, p + 11, al);
		c->nodes[i].addr[al] = 0;
		p += 11 + al;
	}
	/* canonical: nothing may follow the last node (what encode writes) */
	return p == end ? 0 : -EINVAL;
}

/* ---- status --------------------------------------------------------------- */

/* Refresh the copy other threads read through repl_status(). */
void repl_publish_status(struct repl *r)
{
	struct repl_status st;
	memset(&st, 0, sizeof(st));
	raft_status(r->raft, &st.raft);
	st.durable_applied = r->durable_applied;
	st.proposals_pending = r->n_pend;
	char desc[256] = "";
	if (r->cfg.sm.describe)
		r->cfg.sm.describe(r->cfg.sm.ctx, desc, sizeof(desc));
	for (uint32_t i = 0; i < st.raft.conf.n; i++) {
		struct link_peer_stats ps;
		raft_id id = st.raft.conf.nodes[i].id;
		if (id != r->cfg.id && link_stats(r->link, id, &ps) == 0 &&
		    ps.connected)
			st.peers_connected++;
	}
	pthread_mutex_lock(&r->mu);
	r->status = st;
	memcpy(r->describe, desc, sizeof(desc));
	pthread_mutex_unlock(&r->mu);
}

void repl_status(struct repl *r, struct repl_status *st)
{
	pthread_mutex_lock(&r->mu);
	*st = r->status;
	pthread_mutex_unlock(&r->mu);
}

void repl_describe(struct repl *r, char *buf, size_t cap)
{
	pthread_mutex_lock(&r->mu);
	snprintf(buf, cap, "%s", r->describe);
	pthread_mutex_unlock(&r->mu);
}

size_t repl_status_encode(const struct repl_status *st, const char *desc,
			  uint8_t *buf, size_t cap)
{
	const struct raft_status *s = &st->raft;
	size_t dl = strnlen(desc, 255);
	size_t need = 8 * 10 + 1 + 1 + dl + 1 + (size_t)s->conf.n * 17;
	if (need > cap)
		return need;
	uint8_t *p = buf;
	put64(p, s->id);
	put64(p + 8, s->term);
	put64(p + 16, s->leader);
	put64(p + 24, s->commit);
	put64(p + 32, s->applied);
	put64(p + 40, s->last_index);
	put64(p + 48, s->first_index);
	put64(p + 56, st->durable_applied);
	put64(p + 64, st->proposals_pending);
	put64(p + 72, st->peers_connected);
	p += 80;
	*p++ = (uint8_t)s->role;
	*p++ = (uint8_t)dl;
	memcpy(p, desc, dl);
	p += dl;
	*p++ = (uint8_t)s->conf.n;
	for (uint32_t i = 0; i < s->conf.n; i++) {
		put64(p, s->conf.nodes[i].id);
		put64(p + 8, s->role == RAFT_LEADER ? s->match[i] : 0);
		p[16] = s->progress[i];
		p += 17;
	}
	return need;
}

int repl_status_decode(const uint8_t *p, size_t len, struct repl_status *st,
		       char *desc, size_t desccap)
{
	const uint8_t *end = p + len;
	memset(st, 0, sizeof(*st));
	if (len < 83)
		return -EINVAL;
	struct raft_status *s = &st->raft;
	s->id = get64(p);
	s->term = get64(p + 8);
	s->leader = get64(p + 16);
	s->commit = get64(p + 24);
	s->applied = get64(p + 32);
	s->last_index = get64(p + 40);
	s->first_index = get64(p + 48);
	st->durable_applied = get64(p + 56);
	st->proposals_pending = get64(p + 64);
	st->peers_connected = get64(p + 72);
	p += 80;
	if (*p > RAFT_LEADER)
		return -EINVAL;
	s->role = (enum raft_role) * p++;
	size_t dl = *p++;
	if ((size_t)(end - p) < dl + 1)
		return -EINVAL;
	snprintf(desc, desccap, "%.*s", (int)dl, (const char *)p);
	p += dl;
	s->conf.n = *p++;
	if (s->conf.n > RAFT_MAX_NODES || (size_t)(end - p) < s->conf.n * 17u)
		return -EINVAL;
	for (uint32_t i = 0; i < s->conf.n; i++) {
		s->conf.nodes[i].id = get64(p);
		s->match[i] = get64(p + 8);
		s->progress[i] = p[16];
		p += 17;
	}
	return 0;
}

/* ---- sending -------------------------------------------------------------- */

static void send_msgs(struct repl *r, const struct raft_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t need = raft_msg_encode(&m[i], NULL, 0);
		if (need > r->cap_enc) {
			uint8_t *e = realloc(r->enc, need);
			if (!e) {
				LOG(WARN, "out of memory encoding %s to %llu",
				    raft_msg_name(m[i].type),
				    (unsigned long long)m[i].to);
				continue;
			}
			r->enc = e;
			r->cap_enc = need;
		}
		size_t len = raft_msg_encode(&m[i], r->enc, r->cap_enc);
		link_send(r->link, m[i].to, WIRE_RAFT, 0, r->enc, len);
	}
}

/* ---- proposals ------------------------------------------------------------ */

static uint64_t low_water(const struct repl *r)
{
	uint64_t low = r->next_seq;
	for (size_t i = 0; i < r->n_pend; i++)
		if (r->pend[i].seq < low)
			low = r->pend[i].seq;
	return low;
}

/* A forwarded proposal awaiting the leader's answer. */
struct fwd {
	struct repl *r;
	size_t n;
	uint64_t seq[]; /* the proposals in this batch */
};

static void on_reply(void *ctx, int status, const uint8_t *reply, size_t len);
static void fwd_flush(struct repl *r);

/* Queue a proposal for forwarding; everything queued in one loop turn
 * goes to the leader in one request (u32 count, then u32 len + envelope
 * each), so a busy follower does not pay a round trip per proposal. */
static void fwd_add(struct repl *r, raft_id leader, const struct pending *p)
{
	if (r->fwd_to && r->fwd_to != leader)
		fwd_flush(r);
	size_t need = r->fwd_len + 4 + p->envlen;
	if (need > FWD_BATCH_BYTES && r->fwd_n)
		fwd_flush(r), need = 4 + 4 + p->envlen;
	if (!r->fwd_len)
		need += 4;
	if (need > r->fwd_cap) {
		size_t cap = need * 2;
		uint8_t *b = realloc(r->fwd_buf, cap);
		if (!b)
			return; /* resent on its retry tick */
		r->fwd_buf = b;
		r->fwd_cap = cap;
	}
	if (r->fwd_n == r->fwd_seq_cap) {
		size_t cap = r->fwd_seq_cap ? r->fwd_seq_cap * 2 : 64;
		uint64_t *sq = realloc(r->fwd_seq, cap * sizeof(*sq));
		if (!sq)
			return;
		r->fwd_seq = sq;
		r->fwd_seq_cap = cap;
	}
	if (!r->fwd_len)
		r->fwd_len = 4;
	uint8_t *q = r->fwd_buf + r->fwd_len;
	q[0] = (uint8_t)(p->envlen >> 24);
	q[1] = (uint8_t)(p->envlen >> 16);
	q[2] = (uint8_t)(p->envlen >> 8);
	q[3] = (uint8_t)p->envlen;
	memcpy(q + 4, p->env, p->envlen);
	r->fwd_len += 4 + p->envlen;
	r->fwd_seq[r->fwd_n++] = p->seq;
	r->fwd_to = leader;
}

/* Send the queued forward batch. */
static void fwd_flush(struct repl *r)
{
	if (!r->fwd_n)
		return;
	struct fwd *f = malloc(sizeof(*f) + r->fwd_n * sizeof(uint64_t));
	if (f) {
		f->r = r;
		f->n = r->fwd_n;
		memcpy(f->seq, r->fwd_seq, r->fwd_n * sizeof(uint64_t));
		uint32_t n = (uint32_t)r->fwd_n;
		r->fwd_buf[0] = (uint8_t)(n >> 24);
		r->fwd_buf[1] = (uint8_t)(n >> 16);
		r->fwd_buf[2] = (uint8_t)(n >> 8);
		r->fwd_buf[3] = (uint8_t)n;
		if (link_request(r->link, r->fwd_to, WIRE_KIND_PROPOSE,
				 r->fwd_buf, r->fwd_len, FWD_TIMEOUT_MS,
				 on_reply, f) != 0)
			free(f); /* each is resent on its retry tick */
	}
	r->fwd_n = 0;
	r->fwd_len = 0;
	r->fwd_to = 0;
}

/* Hand a pending proposal to the leader: propose it ourselves when we
 * lead, forward it otherwise. Refreshes its low-water mark. */
static void submit(struct repl *r, struct pending *p)
{
	raft_id leader = raft_leader(r->raft);
	put64(p->env + 16, low_water(r));
	p->resend = r->now_tick + RETRY_TICKS;
	if (leader == r->cfg.id) {
		int rc = raft_propose(r->raft, p->env, p->envlen, NULL, NULL);
		if (rc == 0) {
			p->sent_to = leader;
			return;
		}
		if (rc != RAFT_ENOTLEADER) { /* EBUSY: retry soon */
			p->resend = r->now_tick + 1;
			p->sent_to = 0;
			return;
		}
		leader = raft_leader(r->raft);
	}
	if (leader == 0 || leader == r->cfg.id) {
		p->sent_to = 0; /* no leader known: retried on the next tick */
		p->resend = r->now_tick + 1;
		return;
	}
	p->sent_to = leader;
	fwd_add(r, leader, p);
}

static struct pending *pend_find(struct repl *r, uint64_t seq)
{
	for (size_t i = 0; i < r->n_pend; i++)
		if (r->pend[i].seq == seq)
			return &r->pend[i];
	return NULL;
}

/* Complete and remove pending proposal p. */
static void pend_finish(struct repl *r, struct pending *p, int status,
			const uint8_t *res, size_t reslen)
{
	repl_done_fn done = p->done;
	void *ctx = p->ctx;
	free(p->env);
	*p = r->pend[--r->n_pend];
	done(ctx, status, res, reslen);
}

static void add_proposal(struct repl *r, struct item *it)
{
	if (r->n_pend == r->cap_pend) {
		size_t cap = r->cap_pend ? r->cap_pend * 2 : 64;
		struct pending *np = realloc(r->pend, cap * sizeof(*np));
		if (!np) {
			it->done(it->ctx, -ENOMEM, NULL, 0);
			return;
		}
		r->pend = np;
		r->cap_pend = cap;
	}
	uint8_t *env = malloc(ENV_HDR + (size_t)it->len);
	if (!env) {
		it->done(it->ctx, -ENOMEM, NULL, 0);
		return;
	}
	struct pending *p = &r->pend[r->n_pend++];
	memset(p, 0, sizeof(*p));
	p->seq = r->next_seq++;
	p->env = env;
	p->envlen = ENV_HDR + it->len;
	put64(env, r->cfg.id);
	put64(env + 8, p->seq);
	memcpy(env + ENV_HDR, it->data, it->len);
	p->done = it->done;
	p->ctx = it->ctx;
	p->deadline = r->now_tick + r->cfg.propose_timeout_ms / r->cfg.tick_ms;
	submit(r, p);
}

/* A follower forwarded a proposal: propose it and say how it went. */
static void fwd_propose(struct repl *r, struct item *it)
{
	int rc = 0;
	const uint8_t *p = it->data, *end = it->data + it->len;
	uint32_t n = it->len >= 4 ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
					    (uint32_t)p[2] << 8 | p[3]
				  : 0;
	p += 4;
	if (raft_role(r->raft) != RAFT_LEADER)
		rc = RAFT_ENOTLEADER;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		if (end - p < 4)
			break;
		uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			       (uint32_t)p[2] << 8 | p[3];
		if (len < ENV_HDR || (size_t)(end - p - 4) < len) {
			LOG(WARN, "malformed forwarded proposal from %llu",
			    (unsigned long long)it->from);
			break;
		}
		rc = raft_propose(r->raft, p + 4, len, NULL, NULL);
		p += 4 + len;
	}
	/* One status for the batch: the origin resends whatever it does not
	 * see applied; dedupe makes resending harmless. */
	uint8_t rep[12];
	rep[0] = rep[1] = rep[2] = 0;
	rep[3] = rc == 0 ? 0 : rc == RAFT_EBUSY ? 1 : 2;
	put64(rep + 4, raft_leader(r->raft));
	link_reply(r->link, it->from, it->req_id, WIRE_KIND_PROPOSE, rep,
		   sizeof(rep));
}

static void fwd_reply(struct repl *r, struct item *it)
{
	struct fwd *f = it->fwd;
	for (size_t i = 0; i < f->n; i++) {
		struct pending *p = pend_find(r, f->seq[i]);
		if (!p)
			continue;
		if (it->status != 0 || it->len < 12) {
			p->sent_to = 0; /* lost or timed out: resend soon */
			p->resend = r->now_tick + 2;
		} else if (it->data[3] != 0) {
			p->sent_to = 0;
			p->resend = r->now_tick + (it->data[3] == 1 ? 1 : 2);
		} /* else accepted: completes when applied here */
	}
	free(f);
}

/* ---- reads ----------------------------------------------------------------- */

static void add_read(struct repl *r, struct item *it)
{
	if (r->n_reads == r->cap_reads) {
		size_t cap = r->cap_reads ? r->cap_reads * 2 : 32;
		struct read *nr = realloc(r->reads, cap * sizeof(*nr));
		if (!nr) {
			it->done(it->ctx, -ENOMEM, NULL, 0);
			return;
		}
		r->reads = nr;
		r->cap_reads = cap;
	}
	struct read *rd = &r->reads[r->n_reads++];
	memset(rd, 0, sizeof(*rd));
	rd->ctx_id = ++r->next_read_ctx;
	rd->done = it->done;
	rd->ctx = it->ctx;
	rd->deadline = r->now_tick + r->cfg.propose_timeout_ms / r->cfg.tick_ms;
	rd->resend = r->now_tick + (raft_read_index(r->raft, rd->ctx_id) == 0
					    ? RETRY_TICKS
					    : 1);
}

/* Complete reads whose index is applied. */
static void finish_reads(struct repl *r)
{
	raft_index applied = r->cfg.sm.applied(r->cfg.sm.ctx);
	for (size_t i = 0; i < r->n_reads;) {
		struct read *rd = &r->reads[i];
		if (rd->index && rd->index <= applied) {
			repl_done_fn done = rd->done;
			void *ctx = rd->ctx;
			*rd = r->reads[--r->n_reads];
			done(ctx, 0, NULL, 0);
			continue;
		}
		i++;
	}
}

/* ---- applying -------------------------------------------------------------- */

static void apply_conf(struct repl *r, const struct raft_entry *e)
{
	uint8_t op;
	raft_id node;
	char addr[RAFT_ADDR_MAX];
	if (raft_conf_change_decode(e->data, e->len, &op, &node, addr,
				    sizeof(addr)) != 0)
		return;
	if (op == RAFT_CONF_ADD_LEARNER && node != r->cfg.id && addr[0])
		link_add_peer(r->link, node, addr);
	else if (op == RAFT_CONF_REMOVE && node != r->cfg.id)
		link_remove_peer(r->link, node);
	if (r->cfg.sm.conf_changed) {
		struct raft_status st;
		raft_status(r->raft, &st);
		r->cfg.sm.conf_changed(r->cfg.sm.ctx, &st.conf);
	}
	repl_conf_applied(r, op, node, e->index);
}

static int apply_entries(struct repl *r, const struct raft_entry *e, size_t n)
{
	uint8_t res[RES_MAX];
	for (size_t i = 0; i < n; i++) {
		size_t reslen = 0;
		uint64_t origin = 0, seq = 0, low = 0;
		const uint8_t *data = NULL;
		uint32_t len = 0;
		if (e[i].type == RAFT_ENTRY_CONF)
			apply_conf(r, &e[i]);
		if (e[i].type == RAFT_ENTRY_NORMAL && e[i].len >= ENV_HDR) {
			origin = get64(e[i].data);
			seq = get64(e[i].data + 8);
			low = get64(e[i].data + 16);
			data = e[i].data + ENV_HDR;
			len = e[i].len - ENV_HDR;
		} else if (e[i].type == RAFT_ENTRY_NORMAL) {
			LOG(WARN, "entry %llu has no envelope; applied as empty",
			    (unsigned long long)e[i].index);
		}
		/* Every entry reaches the state machine so its applied index
		 * follows the log; NOOP/CONF entries carry no payload. */
		int rc = r->cfg.sm.apply(r->cfg.sm.ctx, e[i].index, origin, seq,
					 low, data ? data : (const uint8_t *)"",
					 len, res, sizeof(res), &reslen);
		if (rc < 0) {
			LOG(ERROR,
			    "state machine failed at index %llu: %s; stopping "
			    "the node (the log is intact, restart resumes)",
			    (unsigned long long)e[i].index, strerror(-rc));
			return rc;
		}
		if (origin == r->cfg.id) {
			struct pending *p = pend_find(r, seq);
			if (p)
				pend_finish(r, p, 0, res, reslen);
		}
	}
	return 0;
}

/* ---- persistence ------------------------------------------------------------ */

static int persist(struct repl *r, const struct raft_ready *rd)
{
	if (rd->has_snapshot) {
		int rc = r->cfg.sm.restore(r->cfg.sm.ctx, rd->snapshot.index,
					   rd->snapshot_data,
					   rd->snapshot_len);
		if (rc < 0) {
			LOG(ERROR, "installing snapshot at %llu failed: %s",
			    (unsigned long long)rd->snapshot.index,
			    strerror(-rc));
			return rc;
		}
		uint8_t conf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4];
		struct rlog_snap s = {
			.index = rd->snapshot.index,
			.term = rd->snapshot.term,
			.conf = conf,
		};
		s.conf_len = (uint32_t)repl_conf_encode(&rd->snapshot.conf, conf,
						   sizeof(conf));
		rc = rlog_install_snapshot(r->log, &s, true);
		if (rc < 0)
			return rc;
		r->durable_applied = rd->snapshot.index;
		r->last_compact = rd->snapshot.index;
		LOG(INFO, "installed snapshot at index %llu term %llu",
		    (unsigned long long)rd->snapshot.index,
		    (unsigned long long)rd->snapshot.term);
		/* The snapshot's configuration may name members we were not
		 * told about (a joining node knows only --peers). */
		const struct raft_conf *sc = &rd->snapshot.conf;
		for (uint32_t i = 0; i < sc->n; i++)
			if (sc->nodes[i].id != r->cfg.id && sc->nodes[i].addr[0])
				link_add_peer(r->link, sc->nodes[i].id,
					      sc->nodes[i].addr);
		if (r->cfg.sm.conf_changed)
			r->cfg.sm.conf_changed(r->cfg.sm.ctx, sc);
	}
	/* A hard state whose term and vote are unchanged only moved the commit
	 * index, which may be persisted lazily (it is recomputed after a
	 * restart): it rides along with the next entries. */
	bool hs_needed = rd->has_hs && (rd->hs.term != r->persisted_hs.term ||
					rd->hs.vote != r->persisted_hs.vote);
	if (!hs_needed && rd->n_entries == 0)
		return 0;
	if (rd->n_entries > r->cap_conv) {
		struct rlog_entry *c =
			realloc(r->conv, rd->n_entries * sizeof(*c));
		if (!c)
			return -ENOMEM;
		r->conv = c;
		r->cap_conv = rd->n_entries;
	}
	for (size_t i = 0; i < rd->n_entries; i++) {
		r->conv[i].index = rd->entries[i].index;
		r->conv[i].term = rd->entries[i].term;
		r->conv[i].type = rd->entries[i].type;
		r->conv[i].len = rd->entries[i].len;
		r->conv[i].data = rd->entries[i].data;
	}
	struct rlog_hard_state hs = r->persisted_hs;
	if (rd->has_hs) {
		hs.term = rd->hs.term;
		hs.vote = rd->hs.vote;
		hs.commit = rd->hs.commit;
	}
	int rc = rlog_append(r->log, &hs, r->conv, rd->n_entries);
	if (rc < 0) {
		LOG(ERROR, "writing the raft log failed: %s", strerror(-rc));
		return rc;
	}
	r->persisted_hs = hs;
	return 0;
}

/* Compact the log behind the durable state machine. */
static void maybe_compact(struct repl *r)
{
	/* Not while snapshot data is being made: compacting past its index
	 * would make it useless before it is done. */
	if (r->snap_running)
		return;
	raft_index applied = r->cfg.sm.applied(r->cfg.sm.ctx);
	if (applied < r->last_compact + r->cfg.compact_every)
		return;
	uint64_t durable = 0;
	if (r->cfg.sm.sync(r->cfg.sm.ctx, &durable) != 0 ||
	    raft_compact(r->raft, durable) != 0) {
		r->last_compact = applied; /* try again compact_every later */
		return;
	}
	r->durable_applied = durable;
	struct raft_snapshot_meta m;
	raft_snapshot_meta(r->raft, &m);
	uint8_t conf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4];
	struct rlog_snap s = {.index = m.index, .term = m.term, .conf = conf};
	s.conf_len = (uint32_t)repl_conf_encode(&m.conf, conf, sizeof(conf));
	if (m.index > 0 && rlog_compact(r->log, &s) == 0)
		LOG(DEBUG, "log compacted through %llu",
		    (unsigned long long)m.index);
	r->last_compact = durable;
}

static void fire_due_ticks(struct repl *r);

/* ---- snapshot data for lagging followers ------------------------------------ */

static void *snap_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-snap");
	struct repl *r = arg;
	uint8_t *data = NULL;
	uint64_t len = 0;
	int rc = r->cfg.sm.snapshot_finish(r->cfg.sm.ctx, r->snap_job, &data,
					   &len);
	pthread_mutex_lock(&r->mu);
	r->snap_rc = rc;
	r->snap_data = rc == 0 ? data : NULL;
	r->snap_len = rc == 0 ? len : 0;
	r->snap_ready = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (rc != 0)
		free(data);
	return NULL;
}

/* Offer data to the core, or, failing that, let it ask again after a
 * heartbeat interval (on_tick): asking at once would spin the ready loop
 * on a failure that repeats. */
static void snapshot_offer(struct repl *r, int rc, uint64_t idx,
			   const uint8_t *data, uint64_t len)
{
	const char *why = rc ? strerror(-rc) : NULL;
	if (rc == 0) {
		int crc = raft_set_snapshot(r->raft, idx, data, len);
		if (crc != 0)
			why = crc == RAFT_EINVAL ? "the log moved past it"
						 : "out of memory";
	}
	if (why) {
		LOG(WARN, "snapshot data for lagging followers (index %llu): "
			  "%s; trying again",
		    (unsigned long long)idx, why);
		r->snap_retry = r->now_tick + r->cfg.heartbeat_ticks;
	}
}

/* The core wants snapshot data: serialize on snap_thread when the state
 * machine can (the loop carries on; snapshot_collect hands the result
 * over), else here. One at a time: the core asks once until answered. */
static void snapshot_start(struct repl *r)
{
	if (r->snap_running)
		return;
	uint64_t idx = 0;
	if (!r->cfg.sm.snapshot_begin) {
		uint8_t *data = NULL;
		uint64_t len = 0;
		int rc = r->cfg.sm.snapshot(r->cfg.sm.ctx, &idx, &data, &len);
		snapshot_offer(r, rc, idx, data, len);
		free(data);
		return;
	}
	void *job = NULL;
	int rc = r->cfg.sm.snapshot_begin(r->cfg.sm.ctx, &idx, &job);
	if (rc != 0) {
		snapshot_offer(r, rc, 0, NULL, 0);
		return;
	}
	r->snap_job = job;
	r->snap_idx = idx;
	r->snap_running = true;
	if (pthread_create(&r->snap_thread, NULL, snap_main, r) != 0) {
		LOG(WARN, "no thread for the snapshot: serializing it on the "
			  "replicator thread");
		r->snap_running = false;
		uint8_t *data = NULL;
		uint64_t len = 0;
		rc = r->cfg.sm.snapshot_finish(r->cfg.sm.ctx, job, &data, &len);
		snapshot_offer(r, rc, idx, data, len);
		free(data);
	}
}

/* Hand a finished background snapshot to the core (loop thread). */
static void snapshot_collect(struct repl *r)
{
	pthread_mutex_lock(&r->mu);
	bool ready = r->snap_ready;
	pthread_mutex_unlock(&r->mu);
	if (!ready)
		return;
	pthread_join(r->snap_thread, NULL);
	r->snap_running = r->snap_ready = false;
	snapshot_offer(r, r->snap_rc, r->snap_idx, r->snap_data, r->snap_len);
	free(r->snap_data);
	r->snap_data = NULL;
}

/* Drain the core's ready batches until it has nothing more. */
static int process_ready(struct repl *r)
{
	struct raft_ready rd;
	while (raft_ready(r->raft, &rd)) {
		send_msgs(r, rd.msgs, rd.n_msgs);
		int rc = persist(r, &rd);
		if (rc < 0) {
			raft_advance(r->raft, &rd);
			return rc;
		}
		send_msgs(r, rd.msgs_after_persist, rd.n_msgs_after_persist);
		/* The write may have taken a while; raft_persisted() can
		 * commit the leader's first entry of its term and start the
		 * reads waiting for it, judged by the lease: catch up on
		 * ticks first (the core takes inputs while a ready is in
		 * flight). */
		fire_due_ticks(r);
		raft_persisted(r->raft, rd.id);
		rc = apply_entries(r, rd.committed, rd.n_committed);
		for (size_t i = 0; i < rd.n_reads; i++)
			for (size_t j = 0; j < r->n_reads; j++)
				if (r->reads[j].ctx_id == rd.reads[i].ctx)
					r->reads[j].index = rd.reads[i].index;
		if (rd.want_snapshot)
			snapshot_start(r);
		raft_advance(r->raft, &rd);
		if (rc < 0)
			return rc;
		finish_reads(r);
	}
	return 0;
}

/* ---- timers ---------------------------------------------------------------- */

static void on_tick(struct repl *r)
{
	if (r->snap_retry && r->now_tick >= r->snap_retry) {
		r->snap_retry = 0;
		raft_snapshot_unavailable(r->raft);
	}
	raft_id leader = raft_leader(r->raft);
	bool leader_changed = leader != r->last_leader;
	if (leader_changed) {
		LOG(INFO, "leader is now %llu (term %llu)",
		    (unsigned long long)leader,
		    (unsigned long long)raft_current_term(r->raft));
		r->last_leader = leader;
	}
	for (size_t i = 0; i < r->n_pend;) {
		struct pending *p = &r->pend[i];
		if (r->now_tick >= p->deadline) {
			pend_finish(r, p, -EIO, NULL, 0);
			continue;
		}
		if (r->now_tick >= p->resend ||
		    (leader_changed && leader && p->sent_to != leader))
			submit(r, p);
		i++;
	}
	for (size_t i = 0; i < r->n_reads;) {
		struct read *rd = &r->reads[i];
		if (r->now_tick >= rd->deadline) {
			repl_done_fn done = rd->done;
			void *ctx = rd->ctx;
			*rd = r->reads[--r->n_reads];
			done(ctx, -EIO, NULL, 0);
			continue;
		}
		if (!rd->index && (r->now_tick >= rd->resend || leader_changed)) {
			rd->resend = r->now_tick + RETRY_TICKS;
			if (raft_read_index(r->raft, rd->ctx_id) != 0)
				rd->resend = r->now_tick + 1;
		}
		i++;
	}
	repl_conf_tick(r, leader, leader_changed);
	repl_transfer_tick(r, leader);
}

/* ---- the loop ---------------------------------------------------------------- */

static void handle(struct repl *r, struct item *it)
{
	switch (it->kind) {
	case IT_RAFT: {
		struct raft_msg m;
		struct raft_entry *ents = NULL;
		if (raft_msg_decode(it->data, it->len, &m, &ents) != 0) {
			LOG(WARN, "undecodable raft message from %llu dropped",
			    (unsigned long long)it->from);
		} else if (m.from != it->from || m.to != r->cfg.id) {
			LOG(WARN, "raft message claims %llu->%llu but came "
				  "from %llu: dropped",
			    (unsigned long long)m.from,
			    (unsigned long long)m.to,
			    (unsigned long long)it->from);
		} else {
			raft_step(r->raft, &m);
		}
		free(ents);
		break;
	}
	case IT_PROPOSE:
		add_proposal(r, it);
		break;
	case IT_READ:
		add_read(r, it);
		break;
	case IT_FWD_PROPOSE:
		fwd_propose(r, it);
		break;
	case IT_FWD_REPLY:
		fwd_reply(r, it);
		break;
	case IT_CONF:
		repl_conf_add(r, it);
		break;
	case IT_FWD_CONF:
		repl_conf_fwd(r, it);
		break;
	case IT_CONF_REPLY:
		repl_conf_reply(r, it);
		break;
	case IT_TRANSFER:
		repl_transfer_add(r, it);
		break;
	case IT_FWD_TRANSFER:
		repl_transfer_fwd(r, it);
		break;
	case IT_TRANSFER_REPLY:
		repl_transfer_reply(r, it);
		break;
	case IT_REQUEST: /* never queued here */
		break;
	}
	free(it);
}

/* Fire the ticks due by now (the core's clock), then the driver's timers
 * once. After a stall of a heartbeat interval or more the backlog is
 * skipped: firing it at once, with no peer message in between, would fail
 * check-quorum and start elections; one tick is fired, the lease that
 * counted on the skipped ticks is dropped, and proposal deadlines keep
 * real time. */
static void fire_due_ticks(struct repl *r)
{
	uint64_t *next = &r->next_tick;
	uint64_t now = now_ms();
	if (now < *next)
		return;
	uint64_t lag = now - *next;
	if (lag >= (uint64_t)r->cfg.tick_ms * r->cfg.heartbeat_ticks) {
		uint64_t missed = lag / r->cfg.tick_ms;
		LOG(WARN, "replicator loop stalled for %llu ms",
		    (unsigned long long)lag);
		raft_lease_drop(r->raft);
		r->now_tick += missed;
		*next += missed * r->cfg.tick_ms;
	}
	/* Every due tick before on_tick(): it may re-send reads, which a
	 * leader answers from its lease at once. */
	while (now >= *next) {
		raft_tick(r->raft);
		r->now_tick++;
		*next += r->cfg.tick_ms;
	}
	on_tick(r);
}

void *repl_loop(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-repl");
	struct repl *r = arg;
	r->next_tick = now_ms() + r->cfg.tick_ms;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		while (!r->in && !r->stop && !r->snap_ready &&
		       now_ms() < r->next_tick) {
			struct timespec ts; /* cv runs on CLOCK_MONOTONIC */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t wait = r->next_tick - now_ms();
			if (wait > r->cfg.tick_ms)
				wait = r->cfg.tick_ms;
			ts.tv_nsec += (long)(wait * 1000000);
			ts.tv_sec += ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		}
		struct item *batch = r->in;
		r->in = r->in_tail = NULL;
		int stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop) {
			while (batch) {
				struct item *n = batch->next;
				if (batch->kind == IT_FWD_REPLY)
					free(batch->fwd);
				if (batch->done)
					batch->done(batch->ctx, -ESHUTDOWN,
						    NULL, 0);
				free(batch);
				batch = n;
			}
			break;
		}
		/* Ticks are the core's clock and its leader lease counts
		 * them: the ticks that came due are fired before each queued
		 * message or read is stepped, so that no read is judged by a
		 * clock that lags (a long batch included). */
		fire_due_ticks(r);
		while (batch) {
			struct item *n = batch->next;
			handle(r, batch);
			batch = n;
			if (batch)
				fire_due_ticks(r);
		}
		fwd_flush(r);
		snapshot_collect(r);
		if (!r->fatal && process_ready(r) < 0) {
			r->fatal = 1;
			LOG(ERROR, "replicator stopped after a storage failure; "
				   "fix the disk and restart the node");
		}
		if (!r->fatal)
			maybe_compact(r);
		/* Status (state-machine figures, link stats) is refreshed once
		 * per tick, not on every turn of a busy loop. */
		if (r->now_tick != r->published_tick) {
			r->published_tick = r->now_tick;
			repl_publish_status(r);
		}
	}
	if (r->snap_running) {
		/* The state machine must outlive the serialization. */
		pthread_join(r->snap_thread, NULL);
		r->snap_running = r->snap_ready = false;
		free(r->snap_data);
		r->snap_data = NULL;
	}
	for (size_t i = 0; i < r->n_pend; i++) {
		r->pend[i].done(r->pend[i].ctx, -ESHUTDOWN, NULL, 0);
		free(r->pend[i].env);
	}
	r->n_pend = 0;
	for (size_t i = 0; i < r->n_reads; i++)
		r->reads[i].done(r->reads[i].ctx, -ESHUTDOWN, NULL, 0);
	r->n_reads = 0;
	for (size_t i = 0; i < r->n_confs; i++)
		r->confs[i].done(r->confs[i].ctx, -ESHUTDOWN, NULL, 0);
	r->n_confs = 0;
	repl_transfer_shutdown(r);
	return NULL;
}

/* ---- link callbacks (link threads) ---------------------------------------- */

void repl_on_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	struct repl *r = ctx;
	struct item *it;
	if (f->type == WIRE_RAFT) {
		it = repl_item_new(IT_RAFT, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		repl_enqueue(r, it);
		return;
	}
	if (f->type != WIRE_REQUEST)
		return;
	if (f->kind == WIRE_KIND_PROPOSE) {
		it = repl_item_new(IT_FWD_PROPOSE, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		it->req_id = f->req_id;
		repl_enqueue(r, it);
	} else if (f->kind == WIRE_KIND_CONF ||
		   f->kind == WIRE_KIND_TRANSFER) {
		it = repl_item_new(f->kind == WIRE_KIND_CONF ? IT_FWD_CONF
							     : IT_FWD_TRANSFER,
				   f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		it->req_id = f->req_id;
		repl_enqueue(r, it);
	} else if (f->kind == WIRE_KIND_STATUS) {
		struct repl_status st;
		char desc[256];
		repl_status(r, &st);
		repl_describe(r, desc, sizeof(desc));
		uint8_t buf[1024];
		size_t n = repl_status_encode(&st, desc, buf, sizeof(buf));
		if (n <= sizeof(buf))
			link_reply(r->link, from, f->req_id, WIRE_KIND_STATUS,
				   buf, n);
	} else {
		/* Block transfer and the like do disk I/O: hand them to the
		 * request workers so this (the only receive) thread keeps
		 * delivering Raft traffic. */
		it = repl_item_new(IT_REQUEST, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		it->req_id = f->req_id;
		it->status = f->kind; /* the request kind */
		pthread_mutex_lock(&r->wmu);
		if (r->wq_len >= REQ_QUEUE_MAX ||
		    r->wq_bytes + f->body_len > REQ_QUEUE_BYTES) {
			pthread_mutex_unlock(&r->wmu);
			free(it);
			/* Busy: say so at once (i32 -EAGAIN) rather than let
			 * the peer time out. */
			uint8_t b[4];
			uint32_t e = (uint32_t)(int32_t)-EAGAIN;
			b[0] = (uint8_t)(e >> 24);
			b[1] = (uint8_t)(e >> 16);
			b[2] = (uint8_t)(e >> 8);
			b[3] = (uint8_t)e;
			link_reply(r->link, from, f->req_id, f->kind, b, 4);
			return;
		}
		if (r->wq_tail)
			r->wq_tail->next = it;
		else
			r->wq = it;
		r->wq_tail = it;
		r->wq_len++;
		r->wq_bytes += it->len;
		pthread_cond_signal(&r->wcv);
		pthread_mutex_unlock(&r->wmu);
	}
}

/* The leader's answer to a forwarded proposal (or its timeout): called
 * exactly once per link_request, on a link thread. */
static void on_reply(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct fwd *f = ctx;
	struct repl *r = f->r;
	struct item *it = repl_item_new(IT_FWD_REPLY, reply, status ? 0 : len);
	if (!it) {
		free(f); /* the proposals are resent on their retry ticks */
		return;
	}
	it->fwd = f;
	it->status = status;
	repl_enqueue(r, it);
}

/* The leader's answer to a forwarded membership change (or the link's
 * error): called exactly once per link_request, on a link thread. ctx is
 * a struct conf_rpc, freed here. */

/* A request worker: runs the installed request handler for queued
 * requests. The handler lock is held across the call, so that once
 * repl_set_request_handler() returns, the old handler is not running and
 * never will be. */
void *repl_req_worker(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-req");
	struct repl *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->wmu);
		while (!r->wq && !r->wstop)
			pthread_cond_wait(&r->wcv, &r->wmu);
		struct item *it = r->wq;
		if (!it) {
			pthread_mutex_unlock(&r->wmu);
			return NULL;
		}
		r->wq = it->next;
		if (!r->wq)
			r->wq_tail = NULL;
		r->wq_len--;
		r->wq_bytes -= it->len;
		pthread_mutex_unlock(&r->wmu);
		pthread_rwlock_rdlock(&r->req_lock);
		if (r->req_fn)
			r->req_fn(r->req_ctx, it->from, it->req_id,
				  (uint16_t)it->status, it->data, it->len);
		pthread_rwlock_unlock(&r->req_lock);
		free(it);
	}
}

/* ---- public API ---------------------------------------------------------------- */

int repl_propose(struct repl *r, const void *data, uint32_t len,
		 repl_done_fn done, void *ctx)
{
	struct item *it = repl_item_new(IT_PROPOSE, data, len);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	repl_enqueue(r, it);
	return 0;
}

int repl_read_index(struct repl *r, repl_done_fn done, void *ctx)
{
	struct item *it = repl_item_new(IT_READ, NULL, 0);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	repl_enqueue(r, it);
	return 0;
}

int repl_change_conf(struct repl *r, enum raft_conf_op op, raft_id id,
		     const char *addr, repl_done_fn done, void *ctx)
{
	uint8_t buf[9 + RAFT_ADDR_MAX];
	size_t al = addr ? strnlen(addr, RAFT_ADDR_MAX) : 0;
	if (al >= RAFT_ADDR_MAX || id == 0 || op < RAFT_CONF_ADD_LEARNER ||
	    op > RAFT_CONF_REMOVE || (op == RAFT_CONF_ADD_LEARNER && !al))
		return -EINVAL;
	if (op != RAFT_CONF_ADD_LEARNER)
		al = 0;
	buf[0] = (uint8_t)op;
	put64(buf + 1, id);
	if (al)
		memcpy(buf + 9, addr, al);
	struct item *it = repl_item_new(IT_CONF, buf, 9 + al);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	repl_enqueue(r, it);
	return 0;
}

struct link *repl_link(struct repl *r)
{
	return r->link;
}

void repl_set_request_handler(struct repl *r, repl_request_fn fn, void *ctx)
{
	pthread_rwlock_wrlock(&r->req_lock);
	r->req_fn = fn;
	r->req_ctx = ctx;
	pthread_rwlock_unlock(&r->req_lock);
}

