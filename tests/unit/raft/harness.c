/*
 * harness.c — see harness.h.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "harness: out of memory\n");
		abort();
	}
	return q;
}

static void *xdup(const void *p, size_t n)
{
	if (!n)
		return NULL;
	void *q = xrealloc(NULL, n);
	memcpy(q, p, n);
	return q;
}

uint64_t cl_seed(void)
{
	const char *s = getenv("SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : 12345;
	printf("# raft unit tests: SEED=%llu\n", (unsigned long long)seed);
	return seed;
}

static void trace_cb(void *ctx, const struct raft_event *ev)
{
	struct h_node *n = ctx;
	if (ev->type < 16)
		n->events[ev->type]++;
	if (ev->type == RAFT_EV_DROP)
		n->last_drop = ev->detail;
	if (getenv("RAFT_TRACE"))
		printf("  [%llu t%llu] ev%d peer=%llu idx=%llu %s\n",
		       (unsigned long long)ev->node,
		       (unsigned long long)ev->term, ev->type,
		       (unsigned long long)ev->peer,
		       (unsigned long long)ev->index, ev->detail);
}

static struct raft *make_core(struct cluster *c, raft_id id)
{
	struct raft_config cfg = c->cfg;
	cfg.id = id;
	cfg.seed = c->seed;
	cfg.trace = trace_cb;
	cfg.trace_ctx = &c->n[id];
	return raft_new(&cfg);
}

struct cluster *cl_new(int voters, int extra, const struct raft_config *cfg)
{
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	if (cfg)
		c->cfg = *cfg;
	else
		raft_config_default(&c->cfg);
	c->seed = 12345;
	c->nn = voters + extra;
	c->snap_pad = 64;
	struct raft_conf conf = {0};
	for (int i = 1; i <= voters; i++) {
		conf.nodes[conf.n].id = (raft_id)i;
		conf.nodes[conf.n].role = RAFT_VOTER;
		snprintf(conf.nodes[conf.n].addr, RAFT_ADDR_MAX, "node%d", i);
		conf.n++;
	}
	for (int i = 1; i <= c->nn; i++) {
		struct h_node *n = &c->n[i];
		n->id = (raft_id)i;
		n->up = true;
		n->r = make_core(c, n->id);
		if (!n->r)
			abort();
		if (i <= voters) {
			if (raft_bootstrap(n->r, &conf) != 0)
				abort();
			n->snap.conf = conf;
		}
	}
	return c;
}

static void free_msg(struct raft_msg *m)
{
	for (uint32_t i = 0; i < m->n_entries; i++)
		free(m->entries[i].data);
	free(m->entries);
	free(m->data);
}

static void node_free(struct h_node *n)
{
	raft_free(n->r);
	n->r = NULL;
	for (size_t i = 0; i < n->n_log; i++)
		free(n->log[i].data);
	free(n->log);
	free(n->snap_data);
	free(n->hashes);
	for (size_t i = 0; i < n->n_held; i++)
		free_msg(&n->held[i]);
	free(n->held);
}

void cl_free(struct cluster *c)
{
	for (int i = 1; i <= c->nn; i++)
		node_free(&c->n[i]);
	for (size_t i = 0; i < c->nq; i++)
		free_msg(&c->q[i]);
	free(c->q);
	free(c);
}

static void copy_msg(struct raft_msg *dst, const struct raft_msg *src)
{
	*dst = *src;
	dst->entries = NULL;
	dst->data = xdup(src->data, src->len);
	if (src->n_entries) {
		dst->entries =
			xrealloc(NULL, src->n_entries * sizeof(*dst->entries));
		for (uint32_t i = 0; i < src->n_entries; i++) {
			dst->entries[i] = src->entries[i];
			dst->entries[i].data =
				xdup(src->entries[i].data, src->entries[i].len);
		}
	}
}

static void enqueue(struct cluster *c, const struct raft_msg *m)
{
	if (c->nq == c->capq) {
		c->capq = c->capq ? c->capq * 2 : 64;
		c->q = xrealloc(c->q, c->capq * sizeof(*c->q));
	}
	copy_msg(&c->q[c->nq++], m);
}

static void hold(struct h_node *n, const struct raft_msg *m)
{
	if (n->n_held == n->cap_held) {
		n->cap_held = n->cap_held ? n->cap_held * 2 : 16;
		n->held = xrealloc(n->held, n->cap_held * sizeof(*n->held));
	}
	copy_msg(&n->held[n->n_held++], m);
}

/* ---- state machine ------------------------------------------------------- */

static void set_hash(struct h_node *n, raft_index i, uint64_t h)
{
	if (i >= n->cap_hashes) {
		size_t cap = n->cap_hashes ? n->cap_hashes : 64;
		while (cap <= i)
			cap *= 2;
		n->hashes = xrealloc(n->hashes, cap * sizeof(uint64_t));
		memset(n->hashes + n->cap_hashes, 0,
		       (cap - n->cap_hashes) * sizeof(uint64_t));
		n->cap_hashes = cap;
	}
	n->hashes[i] = h;
}

static void apply(struct h_node *n, const struct raft_entry *e)
{
	if (e->index != n->applied + 1) {
		fprintf(stderr, "node %llu applies %llu after %llu\n",
			(unsigned long long)n->id,
			(unsigned long long)e->index,
			(unsigned long long)n->applied);
		abort();
	}
	uint64_t h = n->hash ^ (e->index * 0x9E3779B97F4A7C15ULL);
	h = (h ^ e->term) * 1099511628211ULL;
	h = (h ^ e->type) * 1099511628211ULL;
	for (uint32_t i = 0; i < e->len; i++)
		h = (h ^ e->data[i]) * 1099511628211ULL;
	n->hash = h;
	n->applied = e->index;
	if (e->type == RAFT_ENTRY_NORMAL)
		n->n_normal++;
	set_hash(n, e->index, h);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Snapshot of the state machine: applied, hash, n_normal, padding. */
uint8_t *sm_save(struct cluster *c, struct h_node *n, uint64_t *len)
{
	uint64_t l = c->snap_pad < 24 ? 24 : c->snap_pad;
	uint8_t *d = xrealloc(NULL, l);
	put64(d, n->applied);
	put64(d + 8, n->hash);
	put64(d + 16, n->n_normal);
	for (uint64_t i = 24; i < l; i++)
		d[i] = (uint8_t)(i * 7 + n->hash);
	*len = l;
	return d;
}

static void sm_restore(struct h_node *n, const uint8_t *d, uint64_t len)
{
	if (len < 24) {
		n->applied = 0;
		n->hash = 0;
		n->n_normal = 0;
		return;
	}
	n->applied = get64(d);
	n->hash = get64(d + 8);
	n->n_normal = get64(d + 16);
	set_hash(n, n->applied, n->hash);
}

/* ---- disk ------------------------------------------------------------------ */

static void disk_append(struct h_node *n, const struct raft_entry *e,
			size_t k)
{
	if (!k)
		return;
	raft_index first = e[0].index;
	/* Entries replace any at the same or higher index. */
	while (n->n_log && n->log[n->n_log - 1].index >= first) {
		free(n->log[n->n_log - 1].data);
		n->n_log--;
	}
	if (n->n_log && n->log[n->n_log - 1].index + 1 != first) {
		fprintf(stderr, "node %llu: log gap at %llu\n",
			(unsigned long long)n->id, (unsigned long long)first);
		abort();
	}
	for (size_t i = 0; i < k; i++) {
		if (n->n_log == n->cap_log) {
			n->cap_log = n->cap_log ? n->cap_log * 2 : 64;
			n->log = xrealloc(n->log, n->cap_log * sizeof(*n->log));
		}
		n->log[n->n_log] = e[i];
		n->log[n->n_log].data = xdup(e[i].data, e[i].len);
		n->n_log++;
	}
}

static void disk_drop_upto(struct h_node *n, raft_index upto)
{
	size_t k = 0;
	while (k < n->n_log && n->log[k].index <= upto) {
		free(n->log[k].data);
		k++;
	}
	if (k) {
		memmove(n->log, n->log + k, (n->n_log - k) * sizeof(*n->log));
		n->n_log -= k;
	}
}

/* ---- driving ----------------------------------------------------------- */

bool cl_ready(struct cluster *c, raft_id id)
{
	struct h_node *n = &c->n[id];
	if (!n->up)
		return false;
	struct raft_ready rd;
	if (!raft_ready(n->r, &rd)) {
		raft_advance(n->r, &rd);
		return false;
	}
	for (size_t i = 0; i < rd.n_msgs; i++)
		enqueue(c, &rd.msgs[i]);
	if (rd.has_snapshot) {
		sm_restore(n, rd.snapshot_data, rd.snapshot_len);
		if (n->applied != rd.snapshot.index) {
			fprintf(stderr, "snapshot data/meta mismatch\n");
			abort();
		}
		n->snap = rd.snapshot;
		free(n->snap_data);
		n->snap_data = xdup(rd.snapshot_data, rd.snapshot_len);
		n->snap_len = rd.snapshot_len;
		disk_drop_upto(n, UINT64_MAX);
		n->snapshots_installed++;
	}
	if (rd.has_hs)
		n->hs = rd.hs;
	disk_append(n, rd.entries, rd.n_entries);
	if (n->manual_persist) {
		for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
			hold(n, &rd.msgs_after_persist[i]);
		n->last_ready = rd.id;
	} else {
		for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
			enqueue(c, &rd.msgs_after_persist[i]);
		raft_persisted(n->r, rd.id);
	}
	for (size_t i = 0; i < rd.n_committed; i++)
		apply(n, &rd.committed[i]);
	for (size_t i = 0; i < rd.n_reads && n->n_reads < 64; i++)
		n->reads[n->n_reads++] = rd.reads[i];
	if (rd.want_snapshot)
		n->want_snapshot++;
	if (rd.want_snapshot && !n->defer_snapshot) {
		uint64_t len;
		uint8_t *d = sm_save(c, n, &len);
		raft_set_snapshot(n->r, n->applied, d, len);
		free(d);
	}
	raft_advance(n->r, &rd);
	return true;
}

void cl_persist(struct cluster *c, raft_id id)
{
	struct h_node *n = &c->n[id];
	for (size_t i = 0; i < n->n_held; i++) {
		enqueue(c, &n->held[i]);
		free_msg(&n->held[i]);
	}
	n->n_held = 0;
	if (n->last_ready)
		raft_persisted(n->r, n->last_ready);
}

void cl_deliver(struct cluster *c)
{
	size_t nq = c->nq;
	struct raft_msg *q = c->q;
	c->q = NULL;
	c->nq = c->capq = 0;
	for (size_t i = 0; i < nq; i++) {
		struct raft_msg *m = &q[i];
		bool drop = m->to < 1 || m->to > (raft_id)c->nn ||
			    m->from < 1 || m->from > (raft_id)c->nn ||
			    !c->n[m->to].up || c->cut[m->from][m->to];
		if (!drop && c->filter && c->filter(c->farg, m))
			drop = true;
		if (!drop) {
			if (m->type <= RAFT_MSG_TYPE_MAX)
				c->sent[m->type]++;
			if (m->type == RAFT_MSG_APPEND_RESP && m->reject)
				c->append_rejects++;
			if (c->verbose)
				printf("  %llu -> %llu %s t%llu idx=%llu "
				       "n=%u rej=%d\n",
				       (unsigned long long)m->from,
				       (unsigned long long)m->to,
				       raft_msg_name(m->type),
				       (unsigned long long)m->term,
				       (unsigned long long)(m->prev_index +
							    m->index),
				       m->n_entries, m->reject);
			raft_step(c->n[m->to].r, m);
		}
		free_msg(m);
	}
	free(q);
}

void cl_settle(struct cluster *c)
{
	for (int round = 0; round < 100000; round++) {
		bool any = false;
		for (int i = 1; i <= c->nn; i++)
			while (cl_ready(c, (raft_id)i))
				any = true;
		if (c->nq) {
			any = true;
			cl_deliver(c);
		}
		if (!any)
			return;
	}
	fprintf(stderr, "harness: cluster does not settle\n");
	abort();
}

void cl_tick(struct cluster *c, raft_id id, int n)
{
	for (int k = 0; k < n; k++) {
		for (int i = 1; i <= c->nn; i++)
			if (c->n[i].up && (id == 0 || id == (raft_id)i))
				raft_tick(c->n[i].r);
		cl_settle(c);
	}
}

bool cl_elect(struct cluster *c, raft_id id)
{
	cl_settle(c);
	for (int k = 0; k < 20 * (int)c->cfg.election_ticks + 100; k++) {
		if (raft_role(c->n[id].r) == RAFT_LEADER)
			return true;
		cl_tick(c, id, 1);
	}
	return raft_role(c->n[id].r) == RAFT_LEADER;
}

raft_id cl_leader(struct cluster *c)
{
	raft_id best = 0;
	raft_term bt = 0;
	for (int i = 1; i <= c->nn; i++) {
		struct h_node *n = &c->n[i];
		if (n->up && raft_role(n->r) == RAFT_LEADER &&
		    raft_current_term(n->r) >= bt) {
			best = n->id;
			bt = raft_current_term(n->r);
		}
	}
	return best;
}

void cl_cut(struct cluster *c, raft_id a, raft_id b)
{
	c->cut[a][b] = c->cut[b][a] = true;
}

void cl_isolate(struct cluster *c, raft_id a)
{
	for (int i = 1; i <= H_MAX; i++)
		if ((raft_id)i != a)
			cl_cut(c, a, (raft_id)i);
}

void cl_heal(struct cluster *c)
{
	memset(c->cut, 0, sizeof(c->cut));
}

int cl_propose(struct cluster *c, raft_id id, const char *s)
{
	return raft_propose(c->n[id].r, s, (uint32_t)strlen(s), NULL, NULL);
}

int cl_compact(struct cluster *c, raft_id id)
{
	struct h_node *n = &c->n[id];
	int rc = raft_compact(n->r, n->applied);
	if (rc)
		return rc;
	struct raft_snapshot_meta m;
	raft_snapshot_meta(n->r, &m);
	if (m.index != n->applied)
		return -1;
	n->snap = m;
	free(n->snap_data);
	n->snap_data = sm_save(c, n, &n->snap_len);
	disk_drop_upto(n, m.index);
	return 0;
}

void cl_crash(struct cluster *c, raft_id id)
{
	struct h_node *n = &c->n[id];
	raft_free(n->r);
	n->r = NULL;
	n->up = false;
	for (size_t i = 0; i < n->n_held; i++)
		free_msg(&n->held[i]);
	n->n_held = 0;
	n->last_ready = 0;
}

int cl_restart(struct cluster *c, raft_id id)
{
	struct h_node *n = &c->n[id];
	n->r = make_core(c, id);
	if (!n->r)
		abort();
	/* The state machine restarts from the snapshot on disk. */
	memset(n->hashes, 0, n->cap_hashes * sizeof(uint64_t));
	if (n->snap_data)
		sm_restore(n, n->snap_data, n->snap_len);
	else
		sm_restore(n, NULL, 0);
	int rc = raft_load(n->r, &n->hs, &n->snap, n->log, n->n_log,
			   n->applied);
	n->up = rc == 0;
	return rc;
}

bool cl_consistent(struct cluster *c, raft_index upto)
{
	for (int i = 1; i <= c->nn; i++) {
		struct h_node *a = &c->n[i];
		if (!a->up)
			continue;
		if (upto && a->applied < upto)
			return false;
		for (int j = i + 1; j <= c->nn; j++) {
			struct h_node *b = &c->n[j];
			if (!b->up)
				continue;
			raft_index m = a->applied < b->applied ? a->applied
							       : b->applied;
			for (raft_index k = 1; k <= m; k++) {
				uint64_t ha = k < a->cap_hashes ? a->hashes[k]
								: 0;
				uint64_t hb = k < b->cap_hashes ? b->hashes[k]
								: 0;
				if (ha && hb && ha != hb)
					return false;
			}
		}
	}
	return true;
}

struct raft_status cl_status(struct cluster *c, raft_id id)
{
	struct raft_status st;
	raft_status(c->n[id].r, &st);
	return st;
}
