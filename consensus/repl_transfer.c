/*
 * repl_transfer.c — leadership transfer asked for on this node
 * (repl_transfer_leader). The leader starts it in its core
 * (raft_transfer_leader, thesis §3.10: stop taking proposals, bring the
 * target up to date, send it TIMEOUT_NOW); a follower forwards the request
 * to the leader (WIRE_KIND_TRANSFER). The requester completes when its
 * own node sees a new leader, so `sandfs status` through it shows that
 * leader at once. The core gives a transfer one election timeout; the
 * requester asks again after two while the old leader still leads, until
 * the deadline (the proposal timeout).
 */
#include "consensus/repl_internal.h"

/* Forwarded request (WIRE_KIND_TRANSFER body): u64 target (0: any).
 * The leader's answer: i32 status (0 started, -EALREADY the target leads,
 * -EINVAL not a voter, -EHOSTUNREACH no voter to pick, -ENOTCONN not the
 * leader) | u64 leader it knows | u64 the target it picked. */
#define XFER_REQ_LEN 8
#define XFER_REP_LEN 20
#define XFER_RETRY_TICKS 10 /* no leader known, or a link error */

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

/* Leader: the voter to hand over to when none was named: among the other
 * voters we are connected to, the one whose log matches ours furthest
 * (lowest id on a tie), so that TIMEOUT_NOW goes out soonest. 0 if none. */
static raft_id pick_target(struct repl *r, const struct raft_status *st)
{
	raft_id best = 0;
	raft_index best_match = 0;
	for (uint32_t i = 0; i < st->conf.n; i++) {
		const struct raft_node *nd = &st->conf.nodes[i];
		struct link_peer_stats ls;
		if (nd->id == st->id || nd->role != RAFT_VOTER ||
		    link_stats(r->link, nd->id, &ls) != 0 || !ls.connected)
			continue;
		if (!best || st->match[i] > best_match ||
		    (st->match[i] == best_match && nd->id < best)) {
			best = nd->id;
			best_match = st->match[i];
		}
	}
	return best;
}

/* Leader: start a transfer to target (0: pick one). Returns 0 with
 * *chosen, or a negative errno as in the reply above. */
static int xfer_start(struct repl *r, raft_id target, raft_id *chosen)
{
	struct raft_status st;
	raft_status(r->raft, &st);
	if (st.role != RAFT_LEADER)
		return -ENOTCONN;
	if (target == st.id)
		return -EALREADY;
	if (!target) {
		target = pick_target(r, &st);
		if (!target)
			return -EHOSTUNREACH;
	}
	*chosen = target;
	int rc = raft_transfer_leader(r->raft, target);
	if (rc == RAFT_ENOTLEADER)
		return -ENOTCONN;
	if (rc != 0)
		return -EINVAL; /* not a voter of the configuration */
	LOG(INFO, "leader transfer to node %llu (term %llu, last index %llu)",
	    (unsigned long long)target, (unsigned long long)st.term,
	    (unsigned long long)st.last_index);
	return 0;
}

/* Complete the pending request: res is u64 leader | u64 term. */
static void xfer_finish(struct repl *r, int status, raft_id leader)
{
	struct repl_xfer *x = &r->xfer;
	if (!x->active)
		return;
	uint8_t res[16];
	put64(res, leader);
	put64(res + 8, raft_current_term(r->raft));
	repl_done_fn done = x->done;
	void *ctx = x->ctx;
	memset(x, 0, sizeof(*x));
	done(ctx, status, res, leader ? sizeof(res) : 0);
}

/* What one attempt came back with. */
static void xfer_result(struct repl *r, int rc, raft_id leader,
			raft_id chosen)
{
	struct repl_xfer *x = &r->xfer;
	switch (rc) {
	case 0:
		x->chosen = chosen;
		x->resend = r->now_tick + 2 * r->cfg.election_ticks;
		return;
	case -EALREADY:
	case -EINVAL:
	case -EHOSTUNREACH:
		xfer_finish(r, rc, leader);
		return;
	default: /* not the leader, link errors: ask again soon */
		x->resend = r->now_tick + XFER_RETRY_TICKS;
		return;
	}
}

static void on_xfer_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len);

struct xfer_rpc {
	struct repl *r;
	uint64_t rid;
};

/* One attempt: start it when we lead, forward it otherwise. */
static void xfer_submit(struct repl *r)
{
	struct repl_xfer *x = &r->xfer;
	raft_id leader = raft_leader(r->raft);
	x->resend = r->now_tick + XFER_RETRY_TICKS;
	if (!leader)
		return;
	if (!x->from)
		x->from = leader;
	if (leader != x->from)
		return; /* leadership moved: repl_transfer_tick decides */
	if (x->target && leader == x->target) {
		xfer_finish(r, -EALREADY, leader);
		return;
	}
	if (leader == r->cfg.id) {
		raft_id chosen = 0;
		int rc = xfer_start(r, x->target, &chosen);
		xfer_result(r, rc, raft_leader(r->raft), chosen);
		return;
	}
	struct xfer_rpc *rpc = malloc(sizeof(*rpc));
	if (!rpc)
		return;
	rpc->r = r;
	rpc->rid = x->rid;
	uint8_t body[XFER_REQ_LEN];
	put64(body, x->target);
	if (link_request(r->link, leader, WIRE_KIND_TRANSFER, body,
			 sizeof(body), FWD_TIMEOUT_MS, on_xfer_reply,
			 rpc) != 0)
		free(rpc);
}

/* IT_TRANSFER: a new local request (u64 target in the item). */
void repl_transfer_add(struct repl *r, struct item *it)
{
	struct repl_xfer *x = &r->xfer;
	if (x->active) {
		it->done(it->ctx, -EBUSY, NULL, 0);
		return;
	}
	memset(x, 0, sizeof(*x));
	x->active = true;
	x->rid = ++r->next_cid;
	x->target = get64(it->data);
	x->done = it->done;
	x->ctx = it->ctx;
	x->deadline =
		r->now_tick + r->cfg.propose_timeout_ms / r->cfg.tick_ms;
	xfer_submit(r);
}

/* IT_FWD_TRANSFER (leader side): start a forwarded transfer, answer at
 * once; the follower watches for the new leader itself. */
void repl_transfer_fwd(struct repl *r, struct item *it)
{
	raft_id chosen = 0;
	int rc = -EINVAL;
	if (it->len == XFER_REQ_LEN)
		rc = xfer_start(r, get64(it->data), &chosen);
	else
		LOG(WARN, "malformed leader transfer request from %llu",
		    (unsigned long long)it->from);
	uint8_t rep[XFER_REP_LEN];
	put32(rep, (uint32_t)(int32_t)rc);
	put64(rep + 4, raft_leader(r->raft));
	put64(rep + 12, chosen);
	link_reply(r->link, it->from, it->req_id, WIRE_KIND_TRANSFER, rep,
		   sizeof(rep));
}

/* IT_TRANSFER_REPLY: the leader's answer (or the link's error). */
void repl_transfer_reply(struct repl *r, struct item *it)
{
	struct repl_xfer *x = &r->xfer;
	if (!x->active || x->rid != it->req_id)
		return; /* finished meanwhile */
	if (it->status != 0 || it->len < XFER_REP_LEN) {
		xfer_result(r, -ETIMEDOUT, 0, 0);
		return;
	}
	xfer_result(r, (int)(int32_t)get32(it->data), get64(it->data + 4),
		    get64(it->data + 12));
}

/* Every tick: a new leader completes the request; retries; deadline. */
void repl_transfer_tick(struct repl *r, raft_id leader)
{
	struct repl_xfer *x = &r->xfer;
	if (!x->active)
		return;
	if (leader && x->from && leader != x->from) {
		raft_id want = x->target ? x->target : x->chosen;
		xfer_finish(r, !want || leader == want ? 0 : -EXDEV, leader);
		return;
	}
	if (r->now_tick >= x->deadline) {
		xfer_finish(r, -EIO, leader);
		return;
	}
	if (r->now_tick >= x->resend)
		xfer_submit(r);
}

/* The node stops: fail a pending request. */
void repl_transfer_shutdown(struct repl *r)
{
	if (r->xfer.active) {
		repl_done_fn done = r->xfer.done;
		void *ctx = r->xfer.ctx;
		memset(&r->xfer, 0, sizeof(r->xfer));
		done(ctx, -ESHUTDOWN, NULL, 0);
	}
}

static void on_xfer_reply(void *ctx, int status, const uint8_t *reply,
			  size_t len)
{
	struct xfer_rpc *rpc = ctx;
	struct item *it =
		repl_item_new(IT_TRANSFER_REPLY, reply, status ? 0 : len);
	if (it) { /* else: asked again at the resend tick */
		it->req_id = rpc->rid;
		it->status = status;
		repl_enqueue(rpc->r, it);
	}
	free(rpc);
}

/* See repl.h. */
int repl_transfer_leader(struct repl *r, raft_id target, repl_done_fn done,
			 void *ctx)
{
	uint8_t buf[8];
	put64(buf, target);
	struct item *it = repl_item_new(IT_TRANSFER, buf, sizeof(buf));
	if (!it)
		return -ENOMEM;
	it->done = done;
	it->ctx = ctx;
	repl_enqueue(r, it);
	return 0;
}
