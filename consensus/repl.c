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
#include "consensus/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/rlog.h"
#include "transport/link.h"
#include "transport/log.h"
#include "transport/wire.h"

#define ENV_HDR 24
#define RETRY_TICKS 50     /* resend an unapplied proposal after this */
#define FWD_TIMEOUT_MS 1000
#define RES_MAX 256
#define FWD_BATCH_BYTES (1u << 20)
#define REQ_WORKERS 4       /* threads serving block requests */
#define REQ_QUEUE_MAX 4096
#define REQ_QUEUE_BYTES (64u << 20)

enum item_kind {
	IT_RAFT,        /* raft message frame from a peer */
	IT_PROPOSE,     /* local proposal */
	IT_READ,        /* local read barrier */
	IT_FWD_PROPOSE, /* a follower forwarded a proposal to us */
	IT_FWD_REPLY,   /* the leader answered our forward */
	IT_REQUEST,     /* other request kinds, for the request workers */
	IT_CONF,        /* local membership change request */
	IT_FWD_CONF,    /* a follower forwarded a membership change to us */
	IT_CONF_REPLY,  /* the leader answered our forwarded change */
};

struct item {
	struct item *next;
	enum item_kind kind;
	uint64_t from;
	uint64_t req_id;
	struct fwd *fwd; /* IT_FWD_REPLY: which proposals (owned) */
	int status;      /* IT_FWD_REPLY */
	repl_done_fn done;
	void *ctx;
	uint32_t len;
	uint8_t data[];
};

struct pending {
	uint64_t seq;
	uint8_t *env; /* envelope + payload, owned */
	uint32_t envlen;
	repl_done_fn done;
	void *ctx;
	uint64_t deadline; /* tick */
	uint64_t resend;   /* tick at which to resend if still pending */
	raft_id sent_to;   /* leader we last handed it to, 0 = not sent */
};

/* A membership change asked for on this node (repl_change_conf). */
struct conf_req {
	uint64_t cid; /* ours, names it in replies */
	uint8_t op;   /* enum raft_conf_op */
	raft_id node;
	char addr[RAFT_ADDR_MAX];
	repl_done_fn done;
	void *ctx;
	uint64_t deadline; /* tick */
	uint64_t resend;   /* tick of the next attempt */
	raft_id sent_to;   /* leader of the last attempt, 0 = none yet */
	raft_id hint;      /* leader named by a refusing node, for one retry */
	bool maybe;        /* an attempt may have been (or was) proposed */
	int last_err;      /* last refusal (-EBUSY, -EAGAIN), 0 if none */
	uint64_t lag;      /* learner lag the leader reported with -EAGAIN */
	raft_index index;  /* where the leader put it, 0 if unknown */
};

struct read {
	uint64_t ctx_id;
	raft_index index; /* 0 until the leader answered */
	repl_done_fn done;
	void *ctx;
	uint64_t deadline;
	uint64_t resend;
};

struct repl {
	struct repl_cfg cfg;
	char *data_dir;
	struct raft *raft;
	struct rlog *log;
	struct link *link;
	pthread_t thread;

	pthread_mutex_t mu;  /* guards in, stop, status */
	pthread_rwlock_t req_lock; /* guards req_fn, req_ctx */
	pthread_mutex_t wmu;       /* guards wq, wq_tail, wq_len, wstop */
	pthread_cond_t wcv;
	struct item *wq, *wq_tail; /* requests for the workers */
	size_t wq_len, wq_bytes;
	int wstop;
	pthread_t workers[REQ_WORKERS];
	int n_workers;
	pthread_cond_t cv;
	struct item *in, *in_tail;
	int stop;
	struct repl_status status;
	char describe[256];
	repl_request_fn req_fn;
	void *req_ctx;

	/* Below: replicator thread only. */
	uint64_t now_tick;
	uint64_t next_seq;
	struct pending *pend;
	size_t n_pend, cap_pend;
	struct read *reads;
	size_t n_reads, cap_reads;
	uint64_t next_read_ctx;
	raft_id last_leader;
	uint64_t published_tick; /* now_tick of the last publish_status() */
	uint64_t next_tick;      /* loop clock (now_ms) of the next tick */
	/* Snapshot data serialized on snap_thread (sm.snapshot_finish):
	 * running from snapshot_begin until the loop collected the result;
	 * snap_ready and the result are guarded by mu. */
	pthread_t snap_thread;
	bool snap_running, snap_ready;
	void *snap_job;
	uint64_t snap_idx, snap_len;
	uint8_t *snap_data;
	int snap_rc;
	uint64_t snap_retry; /* now_tick to tell the core to ask again; 0 */
	raft_term trace_last_term; /* for quieting repeated elections */
	const char *trace_last_detail[2]; /* [0] election, [1] role */
	uint64_t durable_applied;
	raft_index last_compact;
	struct rlog_hard_state persisted_hs;
	struct rlog_entry *conv; /* scratch for persisting */
	size_t cap_conv;
	uint8_t *enc; /* scratch for encoding messages */
	size_t cap_enc;
	uint8_t *fwd_buf; /* proposals to forward this turn */
	size_t fwd_len, fwd_cap, fwd_n, fwd_seq_cap;
	uint64_t *fwd_seq;
	raft_id fwd_to;
	struct conf_req *confs; /* pending membership changes */
	size_t n_confs, cap_confs;
	uint64_t next_cid;
	int fatal;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The loop's clock. CLOCK_BOOTTIME also counts time spent suspended, so
 * a suspend shows up as a stall (and drops the leader lease). */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- input queue ------------------------------------------------------- */

static struct item *item_new(enum item_kind kind, const void *data,
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
static void enqueue(struct repl *r, struct item *it)
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

static size_t conf_encode(const struct raft_conf *c, uint8_t *buf,
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

static int conf_decode(const uint8_t *p, size_t len, struct raft_conf *c)
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
		if (al >= RAFT_ADDR_MAX || (size_t)(end - p) < 11 + al)
			return -EINVAL;
		c->nodes[i].id = get64(p);
		c->nodes[i].role = p[8];
		memcpy(c->nodes[i].addr, p + 11, al);
		c->nodes[i].addr[al] = 0;
		p += 11 + al;
	}
	return 0;
}

/* ---- status --------------------------------------------------------------- */

/* Refresh the copy other threads read through repl_status(). */
static void publish_status(struct repl *r)
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

/* ---- membership changes ------------------------------------------------------ */

/* Forwarded change (WIRE_KIND_CONF request body):
 *   u8 op | u64 node | u16 address length | address bytes
 * The leader's answer (reply body):
 *   i32 status (0 or a negative errno, see repl_change_conf; -ENOTCONN:
 *   "not the leader") | u64 leader it knows | u64 index of the entry
 *   (status 0) | u64 learner lag (status -EAGAIN) */
#define CONF_REQ_HDR 11
#define CONF_REP_LEN 28
#define CONF_RETRY_TICKS 10 /* after a refusal (busy, lagging, no leader) */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Does this node's configuration already show the outcome of the change? */
static bool conf_holds(const struct raft_conf *c, uint8_t op, raft_id node)
{
	int at = -1;
	for (uint32_t i = 0; i < c->n; i++)
		if (c->nodes[i].id == node)
			at = (int)i;
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		return at >= 0;
	case RAFT_CONF_PROMOTE:
		return at >= 0 && c->nodes[at].role == RAFT_VOTER;
	case RAFT_CONF_REMOVE:
		return at < 0;
	}
	return false;
}

/* "The change is already in effect" answer for op (see repl.h). */
static int conf_already_err(uint8_t op)
{
	return op == RAFT_CONF_ADD_LEARNER ? -EEXIST
	       : op == RAFT_CONF_PROMOTE   ? -EALREADY
					   : -ENOENT;
}

/* Leader: check a change against the configuration (for a precise
 * refusal, the core only says RAFT_EINVAL) and propose it. Returns 0 with
 * *index, or a negative errno as listed at repl_change_conf (-ENOTCONN
 * when we are not the leader); *lag is set with -EAGAIN. Single-server
 * changes only, one at a time (Raft thesis §4.1: a change may start only
 * once the previous one has committed); the core enforces that and
 * answers RAFT_EBUSY meanwhile, which the requester retries. */
static int conf_propose(struct repl *r, uint8_t op, raft_id node,
			const char *addr, raft_index *index, uint64_t *lag)
{
	struct raft_status st;
	raft_status(r->raft, &st);
	if (st.role != RAFT_LEADER)
		return -ENOTCONN;
	if (node == 0)
		return -EINVAL;
	int at = -1;
	uint32_t voters = 0;
	for (uint32_t i = 0; i < st.conf.n; i++) {
		if (st.conf.nodes[i].id == node)
			at = (int)i;
		voters += st.conf.nodes[i].role == RAFT_VOTER;
	}
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (at >= 0)
			return -EEXIST;
		if (st.conf.n >= RAFT_MAX_NODES)
			return -ENOSPC;
		if (!addr || !addr[0] ||
		    strnlen(addr, RAFT_ADDR_MAX) >= RAFT_ADDR_MAX)
			return -EINVAL;
		break;
	case RAFT_CONF_PROMOTE:
		if (at < 0)
			return -ENOENT;
		if (st.conf.nodes[at].role == RAFT_VOTER)
			return -EALREADY;
		break;
	case RAFT_CONF_REMOVE:
		if (at < 0)
			return -ENOENT;
		if (st.conf.nodes[at].role == RAFT_VOTER && voters == 1)
			return -EPERM;
		break;
	default:
		return -EINVAL;
	}
	int rc = raft_propose_conf(r->raft, (enum raft_conf_op)op, node,
				   op == RAFT_CONF_ADD_LEARNER ? addr : NULL,
				   index);
	switch (rc) {
	case 0:
		LOG(INFO, "proposed: %s node %llu at index %llu",
		    op == RAFT_CONF_ADD_LEARNER ? "add learner"
		    : op == RAFT_CONF_PROMOTE   ? "promote"
						: "remove",
		    (unsigned long long)node, (unsigned long long)*index);
		return 0;
	case RAFT_EBUSY:
		return -EBUSY;
	case RAFT_EAGAIN:
		*lag = at >= 0 && st.last_index > st.match[at]
			       ? st.last_index - st.match[at]
			       : 0;
		return -EAGAIN;
	case RAFT_ENOTLEADER:
		return -ENOTCONN;
	case RAFT_ENOMEM:
		return -ENOMEM;
	default:
		return -EINVAL;
	}
}

/* Complete and remove pending change c. */
static void conf_finish(struct repl *r, struct conf_req *c, int status,
			raft_index index)
{
	repl_done_fn done = c->done;
	void *ctx = c->ctx;
	uint8_t res[8];
	size_t reslen = 0;
	if (status == 0 && index) {
		put64(res, index);
		reslen = 8;
	} else if (status == -EAGAIN) {
		put64(res, c->lag);
		reslen = 8;
	}
	*c = r->confs[--r->n_confs];
	done(ctx, status, reslen ? res : NULL, reslen);
}

static struct conf_req *conf_find(struct repl *r, uint64_t cid)
{
	for (size_t i = 0; i < r->n_confs; i++)
		if (r->confs[i].cid == cid)
			return &r->confs[i];
	return NULL;
}

/* What one attempt came back with (from our core or the leader). Returns
 * true when c was completed (and removed). */
static bool conf_result(struct repl *r, struct conf_req *c, int rc,
			raft_id leader, raft_index index, uint64_t lag)
{
	switch (rc) {
	case 0:
		c->maybe = true;
		c->last_err = 0;
		if (index)
			c->index = index;
		c->resend = r->now_tick + RETRY_TICKS; /* in case it is lost */
		return false;
	case -EBUSY:
	case -EAGAIN:
		c->last_err = rc;
		c->lag = lag;
		c->resend = r->now_tick + CONF_RETRY_TICKS;
		return false;
	case -ENOTCONN: /* not the leader (any more) */
	case -ETIMEDOUT:
	case -ECONNREFUSED:
	case -ECANCELED:
	case -ENOMEM:
		if (rc != -ENOTCONN)
			c->maybe = true; /* it may have arrived */
		c->resend = r->now_tick + 2;
		if (rc == -ENOTCONN && leader && leader != c->sent_to) {
			c->hint = leader;
			c->resend = r->now_tick + 1; /* redirect soon */
		}
		c->sent_to = 0;
		return false;
	default:
		break;
	}
	if (rc == conf_already_err(c->op) && c->maybe) {
		/* An earlier attempt of ours probably did it: done once this
		 * node's configuration shows it (checked every tick). */
		c->resend = c->deadline;
		return false;
	}
	conf_finish(r, c, rc, 0);
	return true;
}

/* A forwarded change awaiting the leader's answer. */
struct conf_rpc {
	struct repl *r;
	uint64_t cid;
};

static void on_conf_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len);

/* One attempt: propose when we lead, forward to the leader otherwise.
 * Returns true when c was completed (and removed). */
static bool conf_submit(struct repl *r, struct conf_req *c)
{
	raft_id leader = raft_leader(r->raft);
	if (c->hint && leader != r->cfg.id)
		leader = c->hint;
	c->hint = 0;
	c->resend = r->now_tick + RETRY_TICKS;
	if (leader == r->cfg.id) {
		raft_index index = 0;
		uint64_t lag = 0;
		c->sent_to = leader;
		int rc = conf_propose(r, c->op, c->node, c->addr, &index, &lag);
		return conf_result(r, c, rc, raft_leader(r->raft), index, lag);
	}
	if (leader == 0) {
		c->sent_to = 0;
		c->resend = r->now_tick + CONF_RETRY_TICKS;
		return false;
	}
	uint8_t body[CONF_REQ_HDR + RAFT_ADDR_MAX];
	size_t al = strnlen(c->addr, RAFT_ADDR_MAX - 1);
	body[0] = c->op;
	put64(body + 1, c->node);
	body[9] = (uint8_t)(al >> 8);
	body[10] = (uint8_t)al;
	memcpy(body + CONF_REQ_HDR, c->addr, al);
	struct conf_rpc *rpc = malloc(sizeof(*rpc));
	if (!rpc)
		return false; /* retried at c->resend */
	rpc->r = r;
	rpc->cid = c->cid;
	c->sent_to = leader;
	if (link_request(r->link, leader, WIRE_KIND_CONF, body,
			 CONF_REQ_HDR + al, FWD_TIMEOUT_MS, on_conf_reply,
			 rpc) != 0) {
		free(rpc);
		c->sent_to = 0;
		c->resend = r->now_tick + 2;
	}
	return false;
}

/* IT_CONF: a new local request (op, node, address in the item). */
static void add_conf(struct repl *r, struct item *it)
{
	if (r->n_confs == r->cap_confs) {
		size_t cap = r->cap_confs ? r->cap_confs * 2 : 4;
		struct conf_req *nc = realloc(r->confs, cap * sizeof(*nc));
		if (!nc) {
			it->done(it->ctx, -ENOMEM, NULL, 0);
			return;
		}
		r->confs = nc;
		r->cap_confs = cap;
	}
	struct conf_req *c = &r->confs[r->n_confs++];
	memset(c, 0, sizeof(*c));
	c->cid = ++r->next_cid;
	c->op = it->data[0];
	c->node = get64(it->data + 1);
	memcpy(c->addr, it->data + 9, it->len - 9);
	c->addr[it->len - 9] = 0;
	c->done = it->done;
	c->ctx = it->ctx;
	c->deadline = r->now_tick + r->cfg.propose_timeout_ms / r->cfg.tick_ms;
	conf_submit(r, c);
}

/* IT_FWD_CONF (leader side): propose a forwarded change, answer at once.
 * The follower waits for the entry to apply on its own node. */
static void fwd_conf(struct repl *r, struct item *it)
{
	raft_index index = 0;
	uint64_t lag = 0;
	int rc = -EINVAL;
	char addr[RAFT_ADDR_MAX] = "";
	if (it->len >= CONF_REQ_HDR) {
		size_t al = (size_t)it->data[9] << 8 | it->data[10];
		if (al < RAFT_ADDR_MAX && CONF_REQ_HDR + al == it->len &&
		    !memchr(it->data + CONF_REQ_HDR, 0, al)) {
			memcpy(addr, it->data + CONF_REQ_HDR, al);
			addr[al] = 0;
			rc = conf_propose(r, it->data[0], get64(it->data + 1),
					  addr, &index, &lag);
		}
	}
	if (rc == -EINVAL && it->len < CONF_REQ_HDR)
		LOG(WARN, "malformed membership request from %llu",
		    (unsigned long long)it->from);
	uint8_t rep[CONF_REP_LEN];
	put32(rep, (uint32_t)(int32_t)rc);
	put64(rep + 4, raft_leader(r->raft));
	put64(rep + 12, index);
	put64(rep + 20, lag);
	link_reply(r->link, it->from, it->req_id, WIRE_KIND_CONF, rep,
		   sizeof(rep));
}

/* IT_CONF_REPLY: the leader's answer (or the link's error) for change
 * it->req_id. */
static void conf_reply(struct repl *r, struct item *it)
{
	struct conf_req *c = conf_find(r, it->req_id);
	if (!c)
		return; /* finished meanwhile */
	if (it->status != 0) {
		conf_result(r, c, it->status, 0, 0, 0);
		return;
	}
	if (it->len < CONF_REP_LEN) {
		conf_result(r, c, -ETIMEDOUT, 0, 0, 0);
		return;
	}
	int rc = (int)(int32_t)get32(it->data);
	conf_result(r, c, rc, get64(it->data + 4), get64(it->data + 12),
		    get64(it->data + 20));
}

/* A CONF entry was applied here: complete the requests it fulfils. */
static void conf_applied(struct repl *r, uint8_t op, raft_id node,
			 raft_index index)
{
	for (size_t i = 0; i < r->n_confs;) {
		struct conf_req *c = &r->confs[i];
		if (c->maybe && c->op == op && c->node == node &&
		    index >= c->index) {
			conf_finish(r, c, 0, index);
			continue;
		}
		i++;
	}
}

/* Every tick: deadlines, retries, redirects after a leader change, and
 * changes found in effect (an earlier attempt did it). */
static void conf_tick(struct repl *r, raft_id leader, bool leader_changed)
{
	if (!r->n_confs)
		return;
	struct raft_status st;
	raft_status(r->raft, &st);
	for (size_t i = 0; i < r->n_confs;) {
		struct conf_req *c = &r->confs[i];
		if (c->maybe && conf_holds(&st.conf, c->op, c->node)) {
			conf_finish(r, c, 0,
				    c->index && c->index <= st.applied ? c->index
								       : 0);
			continue;
		}
		if (r->now_tick >= c->deadline) {
			conf_finish(r, c,
				    c->maybe || !c->last_err ? -EIO
							     : c->last_err,
				    0);
			continue;
		}
		if ((r->now_tick >= c->resend ||
		     (leader_changed && leader && c->sent_to != leader)) &&
		    conf_submit(r, c))
			continue;
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
	conf_applied(r, op, node, e->index);
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
		s.conf_len = (uint32_t)conf_encode(&rd->snapshot.conf, conf,
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
	s.conf_len = (uint32_t)conf_encode(&m.conf, conf, sizeof(conf));
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
	conf_tick(r, leader, leader_changed);
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
		add_conf(r, it);
		break;
	case IT_FWD_CONF:
		fwd_conf(r, it);
		break;
	case IT_CONF_REPLY:
		conf_reply(r, it);
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

static void *loop(void *arg)
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
			publish_status(r);
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
	return NULL;
}

/* ---- link callbacks (link threads) ---------------------------------------- */

static void on_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	struct repl *r = ctx;
	struct item *it;
	if (f->type == WIRE_RAFT) {
		it = item_new(IT_RAFT, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		enqueue(r, it);
		return;
	}
	if (f->type != WIRE_REQUEST)
		return;
	if (f->kind == WIRE_KIND_PROPOSE) {
		it = item_new(IT_FWD_PROPOSE, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		it->req_id = f->req_id;
		enqueue(r, it);
	} else if (f->kind == WIRE_KIND_CONF) {
		it = item_new(IT_FWD_CONF, f->body, f->body_len);
		if (!it)
			return;
		it->from = from;
		it->req_id = f->req_id;
		enqueue(r, it);
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
		it = item_new(IT_REQUEST, f->body, f->body_len);
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
	struct item *it = item_new(IT_FWD_REPLY, reply, status ? 0 : len);
	if (!it) {
		free(f); /* the proposals are resent on their retry ticks */
		return;
	}
	it->fwd = f;
	it->status = status;
	enqueue(r, it);
}

/* The leader's answer to a forwarded membership change (or the link's
 * error): called exactly once per link_request, on a link thread. ctx is
 * a struct conf_rpc, freed here. */
static void on_conf_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len)
{
	struct conf_rpc *rpc = ctx;
	struct repl *r = rpc->r;
	struct item *it = item_new(IT_CONF_REPLY, reply, status ? 0 : len);
	if (it) { /* else: retried at the change's resend tick */
		it->req_id = rpc->cid;
		it->status = status;
		enqueue(r, it);
	}
	free(rpc);
}

/* A request worker: runs the installed request handler for queued
 * requests. The handler lock is held across the call, so that once
 * repl_set_request_handler() returns, the old handler is not running and
 * never will be. */
static void *req_worker(void *arg)
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
	struct item *it = item_new(IT_PROPOSE, data, len);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	enqueue(r, it);
	return 0;
}

int repl_read_index(struct repl *r, repl_done_fn done, void *ctx)
{
	struct item *it = item_new(IT_READ, NULL, 0);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	enqueue(r, it);
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
	struct item *it = item_new(IT_CONF, buf, 9 + al);
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	enqueue(r, it);
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

static void trace(void *ctx, const struct raft_event *ev)
{
	static const char *names[] = {
		"?",	     "role",	 "term",   "election", "vote",	 "leader",
		"commit",    "conf",	 "snapshot", "transfer", "stepdown",
		"drop"};
	struct repl *r = ctx;
	/* A node that cannot reach a majority retries its (pre-)election
	 * every timeout: say so once, then only at DEBUG until something
	 * else happens. */
	bool repeat = (ev->type == RAFT_EV_ELECTION ||
		       ev->type == RAFT_EV_ROLE) &&
		      ev->term == r->trace_last_term &&
		      ev->detail == r->trace_last_detail[ev->type ==
							 RAFT_EV_ROLE];
	if (ev->type == RAFT_EV_ELECTION || ev->type == RAFT_EV_ROLE) {
		r->trace_last_term = ev->term;
		r->trace_last_detail[ev->type == RAFT_EV_ROLE] = ev->detail;
	} else if (ev->type != RAFT_EV_COMMIT && ev->type != RAFT_EV_DROP &&
		   ev->type != RAFT_EV_VOTE) {
		r->trace_last_detail[0] = r->trace_last_detail[1] = NULL;
	}
	enum log_level lvl = (ev->type == RAFT_EV_COMMIT ||
			      ev->type == RAFT_EV_DROP ||
			      ev->type == RAFT_EV_VOTE || repeat)
				     ? LOG_LVL_DEBUG
				     : LOG_LVL_INFO;
	if (!log_enabled(lvl))
		return;
	char peer[32] = "", idx[32] = "";
	if (ev->peer)
		snprintf(peer, sizeof(peer), " peer %llu",
			 (unsigned long long)ev->peer);
	if (ev->index)
		snprintf(idx, sizeof(idx), " index %llu",
			 (unsigned long long)ev->index);
	log_write(lvl, __FILE__, __LINE__, "raft %s: term %llu%s%s: %s",
		  ev->type < sizeof(names) / sizeof(names[0]) ? names[ev->type]
							      : "?",
		  (unsigned long long)ev->term, peer, idx,
		  ev->detail ? ev->detail : "");
}

/* Stop the request workers (after the links: nothing is queued any
 * more) and drop what they did not serve; the peers time out. */
static void stop_workers(struct repl *r)
{
	pthread_mutex_lock(&r->wmu);
	r->wstop = 1;
	pthread_cond_broadcast(&r->wcv);
	pthread_mutex_unlock(&r->wmu);
	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i], NULL);
	r->n_workers = 0;
	while (r->wq) {
		struct item *n = r->wq->next;
		free(r->wq);
		r->wq = n;
	}
	r->wq_tail = NULL;
	r->wq_len = r->wq_bytes = 0;
}

/* Write data_dir/name atomically and durably (temp file, fsync, rename,
 * fsync of the directory). Returns 0 or a negative errno. */
static int write_small_file(const char *dir, const char *name,
			    const void *data, size_t len)
{
	char path[4200], tmp[4210];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0
			 ? 0
			 : -(errno ? errno : EIO);
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	} else {
		unlink(tmp);
	}
	return rc;
}

#define JOINED_FILE "raft.joined"
#define BOOTSTRAP_FILE "raft.bootstrap"

int repl_joined(const char *data_dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/" JOINED_FILE, data_dir);
	return access(path, F_OK) == 0;
}

/* The configuration this node bootstrapped with (the one at index 0), as
 * recorded when it bootstrapped: 1 found, 0 no record (a data directory
 * from before the record existed: --peers tells it), -EUCLEAN corrupt. */
static int bootstrap_conf_load(const struct repl *r, struct raft_conf *conf)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/" BOOTSTRAP_FILE, r->data_dir);
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	uint8_t buf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4 + 1];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (len == sizeof(buf) || conf_decode(buf, len, conf) != 0 ||
	    conf->n == 0)
		return -EUCLEAN;
	return 1;
}

/* The reason a data directory with a log cannot --join. */
static void join_refusal(const struct repl *r, uint64_t term, uint64_t last,
			 char *err, size_t errcap)
{
	char t[40] = "";
	if (term)
		snprintf(t, sizeof(t), "term %llu, ", (unsigned long long)term);
	snprintf(err, errcap,
		 "%s already holds a raft log (%slast index %llu): this node "
		 "is a member already; start it without --join, or give "
		 "--join an empty data directory",
		 r->data_dir, t, (unsigned long long)last);
}

/* Restart the core from the log store, or bootstrap a new cluster, or
 * (join) start with no configuration: the core then answers the leader's
 * first append with "never bootstrapped" and gets a snapshot, whose
 * configuration it adopts. Raft thesis §4.2.1: "a new server joins the
 * cluster as a non-voting member. The leader replicates log entries to
 * it, but it is not yet counted towards majorities." */
static int restore_core(struct repl *r, char *err, size_t errcap)
{
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents = NULL;
	size_t n = 0;
	int rc = rlog_load(r->log, &hs, &snap, &ents, &n, err, errcap);
	if (rc < 0)
		return rc;
	r->persisted_hs = hs;
	uint64_t applied = r->cfg.sm.applied(r->cfg.sm.ctx);
	r->durable_applied = applied;
	r->last_compact = snap.index;
	int joined = repl_joined(r->data_dir);
	bool has_log = n > 0 || snap.index > 0;
	if (r->cfg.join && (has_log || (hs.term > 0 && !joined))) {
		join_refusal(r, hs.term, n ? ents[n - 1].index : snap.index,
			     err, errcap);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EEXIST;
	}
	if (r->cfg.join && !joined) {
		static const char text[] =
			"this node joined an existing cluster: it never "
			"bootstraps a configuration of its own\n";
		rc = write_small_file(r->data_dir, JOINED_FILE, text,
				      sizeof(text) - 1);
		if (rc < 0) {
			snprintf(err, errcap, "%s: cannot write %s (%s)",
				 r->data_dir, JOINED_FILE, strerror(-rc));
			rlog_snap_free(&snap);
			rlog_entries_free(ents, n);
			return rc;
		}
		joined = 1;
	}
	if (joined && !has_log) {
		/* Not yet given a snapshot: stay without a configuration,
		 * keeping any term and vote already promised. */
		struct raft_snapshot_meta none;
		memset(&none, 0, sizeof(none));
		struct raft_hard_state rhs = {hs.term, hs.vote, 0};
		rc = hs.term ? raft_load(r->raft, &rhs, &none, NULL, 0, 0) : 0;
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		if (rc != 0) {
			snprintf(err, errcap, "%s: cannot load the hard state "
					      "(%d)",
				 r->data_dir, rc);
			return -EUCLEAN;
		}
		LOG(INFO, "joining: no configuration yet; waiting for the "
			  "leader (add this node with `sandfs member add`)");
		return 0;
	}
	if (hs.term == 0 && n == 0 && snap.index == 0) {
		struct raft_conf conf;
		memset(&conf, 0, sizeof(conf));
		for (size_t i = 0; i < r->cfg.n_peers && i < RAFT_MAX_NODES;
		     i++) {
			conf.nodes[i].id = r->cfg.peers[i].id;
			conf.nodes[i].role = RAFT_VOTER;
			snprintf(conf.nodes[i].addr, RAFT_ADDR_MAX, "%s",
				 r->cfg.peers[i].addr);
			conf.n++;
		}
		rc = raft_bootstrap(r->raft, &conf);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		if (rc != 0) {
			snprintf(err, errcap, "bootstrapping the cluster "
					      "configuration failed (%d)",
				 rc);
			return -EINVAL;
		}
		/* Record it: after membership changes the --peers a node is
		 * restarted with need not be the list it bootstrapped with,
		 * and the configuration at index 0 must not change. */
		uint8_t buf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4];
		size_t len = conf_encode(&conf, buf, sizeof(buf));
		rc = write_small_file(r->data_dir, BOOTSTRAP_FILE, buf, len);
		if (rc < 0) {
			snprintf(err, errcap, "%s: cannot write %s (%s)",
				 r->data_dir, BOOTSTRAP_FILE, strerror(-rc));
			return rc;
		}
		return 0;
	}
	struct raft_snapshot_meta meta;
	memset(&meta, 0, sizeof(meta));
	meta.index = snap.index;
	meta.term = snap.term;
	if (conf_decode(snap.conf, snap.conf_len, &meta.conf) != 0) {
		snprintf(err, errcap, "%s: stored configuration is corrupt",
			 r->data_dir);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0 && joined) {
		snprintf(err, errcap,
			 "%s: this node joined a cluster but its log has no "
			 "snapshot to take the configuration from; remove the "
			 "data directory and join again",
			 r->data_dir);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0)
		rc = bootstrap_conf_load(r, &meta.conf);
	if (rc < 0) {
		snprintf(err, errcap, "%s/%s is corrupt", r->data_dir,
			 BOOTSTRAP_FILE);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0) {
		/* Bootstrapped before the configuration was recorded: it is
		 * the --peers list (which the cluster id check ties to the
		 * list the node bootstrapped with, unless --cluster-id). */
		for (size_t i = 0; i < r->cfg.n_peers && i < RAFT_MAX_NODES;
		     i++) {
			meta.conf.nodes[i].id = r->cfg.peers[i].id;
			snprintf(meta.conf.nodes[i].addr, RAFT_ADDR_MAX, "%s",
				 r->cfg.peers[i].addr);
			meta.conf.n++;
		}
	}
	if (applied < snap.index) {
		snprintf(err, errcap,
			 "%s: state machine is at index %llu but the log "
			 "starts after %llu; the state was lost — remove the "
			 "data directory and let the node rejoin",
			 r->data_dir, (unsigned long long)applied,
			 (unsigned long long)snap.index);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	struct raft_entry *re = calloc(n ? n : 1, sizeof(*re));
	if (!re) {
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		re[i].index = ents[i].index;
		re[i].term = ents[i].term;
		re[i].type = ents[i].type;
		re[i].len = ents[i].len;
		re[i].data = ents[i].data;
	}
	struct raft_hard_state rhs = {hs.term, hs.vote, hs.commit};
	/* Whatever the state machine applied was committed. */
	if (rhs.commit < applied)
		rhs.commit = applied;
	raft_index last = n ? ents[n - 1].index : snap.index;
	if (rhs.commit > last)
		rhs.commit = last;
	rc = raft_load(r->raft, &rhs, &meta, re, n, applied);
	free(re);
	rlog_snap_free(&snap);
	rlog_entries_free(ents, n);
	if (rc != 0) {
		snprintf(err, errcap, "%s: the raft log is inconsistent (%d)",
			 r->data_dir, rc);
		return -EUCLEAN;
	}
	LOG(INFO, "restarted at term %llu, log (%llu, %llu], applied %llu",
	    (unsigned long long)hs.term, (unsigned long long)snap.index,
	    (unsigned long long)last, (unsigned long long)applied);
	return 0;
}

int repl_start(const struct repl_cfg *cfg, struct repl **out, char *err,
	       size_t errcap)
{
	struct repl *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	if (!r->cfg.tick_ms)
		r->cfg.tick_ms = 10;
	if (!r->cfg.election_ticks)
		r->cfg.election_ticks = 15;
	if (!r->cfg.heartbeat_ticks)
		r->cfg.heartbeat_ticks = 5;
	if (!r->cfg.propose_timeout_ms)
		r->cfg.propose_timeout_ms = 10000;
	if (!r->cfg.compact_every)
		r->cfg.compact_every = 10000;
	r->data_dir = strdup(cfg->data_dir);
	pthread_mutex_init(&r->mu, NULL);
	/* A wall-clock step must not stretch the loop's timed wait. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* Writer-preferring, so that removing the handler at unmount does
	 * not wait behind a steady stream of block requests. */
	pthread_rwlockattr_t la;
	pthread_rwlockattr_init(&la);
	pthread_rwlockattr_setkind_np(&la,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->req_lock, &la);
	pthread_rwlockattr_destroy(&la);
	pthread_mutex_init(&r->wmu, NULL);
	pthread_cond_init(&r->wcv, NULL);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Sequence numbers only grow, also across restarts of this node. */
	r->next_seq = (uint64_t)ts.tv_sec * 1000000000ull +
		      (uint64_t)ts.tv_nsec;

	struct raft_config rc;
	raft_config_default(&rc);
	rc.id = cfg->id;
	rc.election_ticks = r->cfg.election_ticks;
	rc.heartbeat_ticks = r->cfg.heartbeat_ticks;
	rc.lease_reads = !r->cfg.no_lease_reads;
	rc.seed = r->next_seq ^ (cfg->id * 0x9e3779b97f4a7c15ull);
	rc.trace = trace;
	rc.trace_ctx = r;
	r->raft = raft_new(&rc);
	int ret = -ENOMEM;
	if (!r->raft)
		goto fail;

	char path[4200];
	snprintf(path, sizeof(path), "%s/raft", cfg->data_dir);
	ret = rlog_open(path, &r->log, err, errcap);
	if (ret < 0)
		goto fail;
	if (cfg->join && rlog_last_index(r->log) > 0) {
		/* Say so before listening (restore_core checks the rest). */
		join_refusal(r, 0, rlog_last_index(r->log), err, errcap);
		ret = -EEXIST;
		goto fail;
	}
	/* Listen first: a port in use is the likeliest start-up failure, and
	 * nothing is logged or bootstrapped before it is known. */

	const char *listen = NULL;
	for (size_t i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].id == cfg->id)
			listen = cfg->peers[i].addr;
	if (!listen) {
		snprintf(err, errcap, "node %llu is not in --peers",
			 (unsigned long long)cfg->id);
		ret = -EINVAL;
		goto fail;
	}
	struct link_cfg lc = {
		.self_id = cfg->id,
		.listen_addr = listen,
		.cluster_id = cfg->cluster_id,
		.secret = cfg->secret,
		.secret_len = cfg->secret_len,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.tls_ca = cfg->tls_ca,
		.on_frame = on_frame,
		.ctx = r,
	};
	ret = link_start(&lc, &r->link, err, errcap);
	if (ret < 0)
		goto fail;
	ret = restore_core(r, err, errcap);
	if (ret < 0)
		goto fail;
	struct raft_status st;
	raft_status(r->raft, &st);
	for (uint32_t i = 0; i < st.conf.n; i++)
		if (st.conf.nodes[i].id != cfg->id)
			link_add_peer(r->link, st.conf.nodes[i].id,
				      st.conf.nodes[i].addr);
	for (size_t i = 0; i < cfg->n_peers; i++) /* peers not yet in conf */
		if (cfg->peers[i].id != cfg->id)
			link_add_peer(r->link, cfg->peers[i].id,
				      cfg->peers[i].addr);
	publish_status(r);
	for (; r->n_workers < REQ_WORKERS; r->n_workers++)
		if (pthread_create(&r->workers[r->n_workers], NULL, req_worker,
				   r) != 0)
			break;
	if (pthread_create(&r->thread, NULL, loop, r) != 0) {
		snprintf(err, errcap, "cannot start the replicator thread");
		ret = -EAGAIN;
		goto fail;
	}
	*out = r;
	return 0;
fail:
	if (r->link)
		link_stop(r->link);
	stop_workers(r);
	if (r->log)
		rlog_close(r->log);
	raft_free(r->raft);
	free(r->data_dir);
	free(r);
	return ret;
}

void repl_stop(struct repl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	link_stop(r->link); /* no more callbacks after this */
	stop_workers(r);
	struct item *it = r->in;
	while (it) {
		struct item *n = it->next;
		if (it->kind == IT_FWD_REPLY)
			free(it->fwd);
		if (it->done)
			it->done(it->ctx, -ESHUTDOWN, NULL, 0);
		free(it);
		it = n;
	}
	uint64_t durable;
	if (!r->fatal)
		r->cfg.sm.sync(r->cfg.sm.ctx, &durable);
	rlog_close(r->log);
	raft_free(r->raft);
	free(r->pend);
	free(r->reads);
	free(r->confs);
	free(r->conv);
	free(r->enc);
	free(r->fwd_buf);
	free(r->fwd_seq);
	free(r->data_dir);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	pthread_rwlock_destroy(&r->req_lock);
	pthread_cond_destroy(&r->wcv);
	pthread_mutex_destroy(&r->wmu);
	free(r);
}
