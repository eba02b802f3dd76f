/*
 * conf.c — membership: single-server changes, their entry encoding, and
 * the configuration as of any index.
 *
 * A change is one entry (RAFT_ENTRY_CONF) that takes effect on each node
 * when that node learns it is COMMITTED (the etcd style), not when it is
 * appended. Changes are: add a learner (non-voting, catches up), promote a
 * learner, remove a node. Why this is safe:
 *
 *  - Consecutive configurations differ by one server, so any majority of
 *    the old voters and any majority of the new voters intersect
 *    (thesis §4.1). A change is proposed only when the previous one is
 *    committed, so at any time the nodes use one of two consecutive
 *    configurations, never two that differ by more than one server.
 *  - A node still on the old configuration after a change committed lacks
 *    that committed entry, and the majority (of the old configuration) that
 *    stored it will not vote for it (§5.4.1), so a stale configuration can
 *    elect no one.
 *  - The leader must have committed an entry of its own term before it
 *    proposes a change. This is the fix for the known single-server change
 *    bug (Ongaro, raft-dev, 2015): a new leader may hold an uncommitted
 *    change from an earlier term that it does not yet know is committed (or
 *    that will be overwritten); proposing another change on top of it could
 *    let two leaders use configurations two servers apart. Once an entry of
 *    its own term is committed, every earlier entry in its log is
 *    committed too, so any earlier change is in effect everywhere that
 *    matters before the next one starts.
 *  - A leader that removes itself keeps leading (and counting itself) under
 *    the old configuration until the removal commits, then steps down; from
 *    that point it is in no quorum.
 *
 * Learners receive entries and never campaign, and their votes are never
 * counted (a learner that missed its own promotion may still answer a vote
 * request: see raft_handle_vote); quorums are always majorities of the
 * configuration's voters, never of live nodes.
 *
 * Entry payload: op (u8), node id (u64 BE), address length (u16 BE),
 * address bytes (no NUL).
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

#define CONF_HDR 11

/* Slot of node id in c, or -1. */
int raft_conf_find(const struct raft_conf *c, raft_id id)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->nodes[i].id == id)
			return (int)i;
	return -1;
}

bool raft_conf_is_voter(const struct raft_conf *c, raft_id id)
{
	int i = raft_conf_find(c, id);
	return i >= 0 && c->nodes[i].role == RAFT_VOTER;
}

uint32_t raft_conf_voters(const struct raft_conf *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n; i++)
		if (c->nodes[i].role == RAFT_VOTER)
			n++;
	return n;
}

/* Encodes a change into buf (cap >= CONF_HDR + RAFT_ADDR_MAX). */
static uint32_t encode(uint8_t *buf, uint8_t op, raft_id node,
		       const char *addr)
{
	size_t alen = addr ? strnlen(addr, RAFT_ADDR_MAX - 1) : 0;
	buf[0] = op;
	for (int i = 0; i < 8; i++)
		buf[1 + i] = (uint8_t)(node >> (56 - 8 * i));
	buf[9] = (uint8_t)(alen >> 8);
	buf[10] = (uint8_t)alen;
	if (alen)
		memcpy(buf + CONF_HDR, addr, alen);
	return (uint32_t)(CONF_HDR + alen);
}

/* Decodes a RAFT_ENTRY_CONF payload; addr (may be NULL) receives the
 * NUL-terminated address, truncated to addr_cap. */
int raft_conf_change_decode(const uint8_t *data, uint32_t len, uint8_t *op,
			    raft_id *node, char *addr, size_t addr_cap)
{
	if (!data || len < CONF_HDR)
		return RAFT_EINVAL;
	uint8_t o = data[0];
	if (o < RAFT_CONF_ADD_LEARNER || o > RAFT_CONF_REMOVE)
		return RAFT_EINVAL;
	raft_id id = 0;
	for (int i = 0; i < 8; i++)
		id = (id << 8) | data[1 + i];
	size_t alen = ((size_t)data[9] << 8) | data[10];
	if (id == 0 || alen >= RAFT_ADDR_MAX || CONF_HDR + alen != len)
		return RAFT_EINVAL;
	if (memchr(data + CONF_HDR, 0, alen))
		return RAFT_EINVAL;
	if (op)
		*op = o;
	if (node)
		*node = id;
	if (addr && addr_cap) {
		size_t k = alen < addr_cap - 1 ? alen : addr_cap - 1;
		memcpy(addr, data + CONF_HDR, k);
		addr[k] = '\0';
	}
	return 0;
}

static int hist_push(struct raft *r, raft_index index,
		     const struct raft_conf *c)
{
	if (r->n_hist == r->cap_hist) {
		size_t cap = r->cap_hist ? r->cap_hist * 2 : 4;
		struct raft_conf_hist *h = realloc(r->hist, cap * sizeof(*h));
		if (!h)
			return RAFT_ENOMEM;
		r->hist = h;
		r->cap_hist = cap;
	}
	r->hist[r->n_hist].index = index;
	r->hist[r->n_hist].conf = *c;
	r->n_hist++;
	return 0;
}

/* History restarts with c in effect from index. */
int raft_conf_hist_reset(struct raft *r, raft_index index,
			 const struct raft_conf *c)
{
	r->n_hist = 0;
	return hist_push(r, index, c);
}

/* Forget history no longer needed for indexes >= upto. */
void raft_conf_hist_prune(struct raft *r, raft_index upto)
{
	size_t k = 0;
	while (k + 1 < r->n_hist && r->hist[k + 1].index <= upto)
		k++;
	if (k) {
		memmove(r->hist, r->hist + k, (r->n_hist - k) * sizeof(*r->hist));
		r->n_hist -= k;
	}
}

/* The configuration in effect at index i (i >= the compacted prefix). */
const struct raft_conf *raft_conf_at(const struct raft *r, raft_index i)
{
	for (size_t k = r->n_hist; k > 0; k--)
		if (r->hist[k - 1].index <= i)
			return &r->hist[k - 1].conf;
	return r->n_hist ? &r->hist[0].conf : &r->conf;
}

/* A committed conf entry takes effect. */
void raft_conf_apply_entry(struct raft *r, const struct raft_entry *e)
{
	uint8_t op;
	raft_id node;
	char addr[RAFT_ADDR_MAX];
	if (raft_conf_change_decode(e->data, e->len, &op, &node, addr,
				    sizeof(addr)) != 0) {
		raft_trace(r, RAFT_EV_DROP, 0, e->index,
			   "undecodable configuration entry ignored");
		return;
	}
	struct raft_conf *c = &r->conf;
	int i = raft_conf_find(c, node);
	const char *what = "no-op configuration change";
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (i < 0 && c->n < RAFT_MAX_NODES) {
			struct raft_node *nd = &c->nodes[c->n++];
			memset(nd, 0, sizeof(*nd));
			nd->id = node;
			nd->role = RAFT_LEARNER;
			memcpy(nd->addr, addr, strlen(addr) + 1);
			what = "learner added";
		}
		break;
	case RAFT_CONF_PROMOTE:
		if (i >= 0 && c->nodes[i].role == RAFT_LEARNER) {
			c->nodes[i].role = RAFT_VOTER;
			what = "learner promoted to voter";
		}
		break;
	case RAFT_CONF_REMOVE:
		if (i >= 0) {
			memmove(&c->nodes[i], &c->nodes[i + 1],
				(c->n - (uint32_t)i - 1) * sizeof(c->nodes[0]));
			c->n--;
			what = "node removed";
			if (node == r->id && r->role == RAFT_LEADER)
				r->removed_self = true;
			if (node == r->transferee)
				raft_transfer_abort(r, "target removed");
		}
		break;
	}
	if (hist_push(r, e->index, c) != 0)
		raft_trace(r, RAFT_EV_DROP, 0, e->index,
			   "no memory for configuration history");
	raft_pr_rebuild(r);
	raft_trace(r, RAFT_EV_CONF, node, e->index, what);
	if (r->role == RAFT_LEADER)
		raft_maybe_commit(r); /* fewer voters may commit more */
}

/* Leader: propose one single-server change (see raft.h and the comment at
 * the top of this file for the rules). */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, raft_id node,
		      const char *addr, raft_index *index)
{
	if (!r || node == 0)
		return RAFT_EINVAL;
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (r->transferee || r->pending_conf > r->commit)
		return RAFT_EBUSY;
	raft_term t = 0;
	if (!raft_log_term(&r->log, r->commit, &t) || t != r->term)
		return RAFT_EBUSY; /* no entry of our term committed yet */
	int i = raft_conf_find(&r->conf, node);
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (i >= 0 || r->conf.n >= RAFT_MAX_NODES)
			return RAFT_EINVAL;
		if (addr && strnlen(addr, RAFT_ADDR_MAX) >= RAFT_ADDR_MAX)
			return RAFT_EINVAL;
		break;
	case RAFT_CONF_PROMOTE: {
		if (i < 0 || r->conf.nodes[i].role != RAFT_LEARNER)
			return RAFT_EINVAL;
		struct raft_progress *pr = raft_pr_find(r, node);
		if (!pr || raft_log_last(&r->log) - pr->match >
				   r->cfg.promote_lag)
			return RAFT_EAGAIN;
		addr = NULL;
		break;
	}
	case RAFT_CONF_REMOVE:
		if (i < 0)
			return RAFT_EINVAL;
		if (r->conf.nodes[i].role == RAFT_VOTER &&
		    raft_conf_voters(&r->conf) == 1)
			return RAFT_EINVAL; /* the last voter stays */
		addr = NULL;
		break;
	default:
		return RAFT_EINVAL;
	}
	uint8_t buf[CONF_HDR + RAFT_ADDR_MAX];
	uint32_t len = encode(buf, (uint8_t)op, node, addr);
	int rc = raft_log_append(r, r->term, RAFT_ENTRY_CONF, buf, len);
	if (rc)
		return rc;
	r->pending_conf = raft_log_last(&r->log);
	if (index)
		*index = r->pending_conf;
	raft_trace(r, RAFT_EV_CONF, node, r->pending_conf,
		   "configuration change proposed");
	raft_maybe_commit(r);
	return 0;
}
