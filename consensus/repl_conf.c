/*
 * repl_conf.c — membership changes asked for on this node
 * (repl_change_conf): the leader proposes them, a follower forwards them
 * to the leader and follows leader changes; refusals while another change
 * commits (EBUSY) or while the learner lags (EAGAIN) are retried until the
 * deadline; the requester completes when the CONF entry applies here.
 */
#include "consensus/repl_internal.h"

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
static void on_conf_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len);

struct conf_rpc {
	struct repl *r;
	uint64_t cid;
};


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
void repl_conf_add(struct repl *r, struct item *it)
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
void repl_conf_fwd(struct repl *r, struct item *it)
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
void repl_conf_reply(struct repl *r, struct item *it)
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
void repl_conf_applied(struct repl *r, uint8_t op, raft_id node,
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
void repl_conf_tick(struct repl *r, raft_id leader, bool leader_changed)
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

static void on_conf_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len)
{
	struct conf_rpc *rpc = ctx;
	struct repl *r = rpc->r;
	struct item *it = repl_item_new(IT_CONF_REPLY, reply, status ? 0 : len);
	if (it) { /* else: retried at the change's resend tick */
		it->req_id = rpc->cid;
		it->status = status;
		repl_enqueue(r, it);
	}
	free(rpc);
}
