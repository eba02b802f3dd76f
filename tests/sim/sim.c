/*
 * sim.c — the simulated cluster: disks, network, state machines, checks.
 *
 * Each node keeps three views of its log:
 *   - the disk (struct disk): what was acknowledged as persisted; a crash
 *     keeps exactly this;
 *   - the shadow log (struct shadow): what the core asked to persist, in
 *     order, i.e. the core's own log; each entry carries a hash chain over
 *     the whole prefix, so "same chain at (index, term)" is log matching;
 *   - the state machine (struct sm): the entries handed out for apply.
 *
 * Invariants checked after every event (Raft paper, Figure 3):
 *   Election Safety: at most one leader can be elected in a given term.
 *   Leader Append-Only: a leader never overwrites or deletes entries in
 *     its log; it only appends new entries.
 *   Log Matching: if two logs contain an entry with the same index and
 *     term, then the logs are identical in all entries up through it.
 *   Leader Completeness: if a log entry is committed in a given term, then
 *     that entry will be present in the logs of the leaders for all
 *     higher-numbered terms.
 *   State Machine Safety: if a server has applied a log entry at a given
 *     index to its state machine, no other server will ever apply a
 *     different log entry for the same index.
 * and, from the core's contract (raft.h): a node's commit index never goes
 * back (after a restart: never below its persisted commit); only entries
 * durable locally are applied, in order; vote grants and append
 * acknowledgements leave only once what they promise is on disk; a voter
 * grants at most one candidate per term, across restarts; a ReadIndex
 * answer is at least the commit index known anywhere when the read began.
 */
#include "tests/sim/sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers -------------------------------------------------- */

/* Allocation failure in the harness is fatal: there is nothing to test. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		abort();
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

/* splitmix64 finalizer: a good 64-bit mixer. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t bytes_hash(const uint8_t *d, uint32_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ d[i]) * 0x100000001b3ULL;
	return mix(h ^ len);
}

static uint64_t entry_phash(uint8_t type, const uint8_t *data, uint32_t len)
{
	return mix(bytes_hash(data, len) ^ ((uint64_t)type << 56));
}

/* The chain value of entry (index, term, phash) after prefix chain prev. */
static uint64_t chain_next(uint64_t prev, raft_index i, raft_term t,
			   uint64_t phash)
{
	uint64_t h = mix(prev ^ 0x5157u);
	h = mix(h ^ i);
	h = mix(h ^ t);
	return mix(h ^ phash);
}

/* ---- a two-word-key hash map ----------------------------------------- */

struct map {
	uint64_t *k1, *k2, *v;
	uint8_t *used;
	size_t cap, n;
};

static size_t map_slot(const struct map *m, uint64_t a, uint64_t b)
{
	return (size_t)(mix(a * 0x9e3779b97f4a7c15ULL ^ b) & (m->cap - 1));
}

static void map_free(struct map *m)
{
	free(m->k1);
	free(m->k2);
	free(m->v);
	free(m->used);
	memset(m, 0, sizeof *m);
}

static uint64_t *map_get(struct map *m, uint64_t a, uint64_t b)
{
	if (!m->cap)
		return NULL;
	for (size_t i = map_slot(m, a, b);; i = (i + 1) & (m->cap - 1)) {
		if (!m->used[i])
			return NULL;
		if (m->k1[i] == a && m->k2[i] == b)
			return &m->v[i];
	}
}

static void map_put(struct map *m, uint64_t a, uint64_t b, uint64_t v);

static void map_grow(struct map *m)
{
	struct map old = *m;
	m->cap = old.cap ? old.cap * 2 : 256;
	m->n = 0;
	m->k1 = xcalloc(m->cap, sizeof(uint64_t));
	m->k2 = xcalloc(m->cap, sizeof(uint64_t));
	m->v = xcalloc(m->cap, sizeof(uint64_t));
	m->used = xcalloc(m->cap, 1);
	for (size_t i = 0; i < old.cap; i++)
		if (old.used[i])
			map_put(m, old.k1[i], old.k2[i], old.v[i]);
	map_free(&old);
}

static void map_put(struct map *m, uint64_t a, uint64_t b, uint64_t v)
{
	if ((m->n + 1) * 2 > m->cap)
		map_grow(m);
	size_t i = map_slot(m, a, b);
	while (m->used[i] && !(m->k1[i] == a && m->k2[i] == b))
		i = (i + 1) & (m->cap - 1);
	if (!m->used[i]) {
		m->used[i] = 1;
		m->k1[i] = a;
		m->k2[i] = b;
		m->n++;
	}
	m->v[i] = v;
}

/* ---- structures ------------------------------------------------------- */

struct sm_ent {
	raft_term term;
	uint64_t phash;
	uint64_t chain;
	uint8_t type;
};

struct conf_rec {
	raft_index index;
	struct raft_conf conf;
};

/* The state machine: every applied entry from index 1 (a snapshot carries
 * the whole list), plus the configuration history for snapshot meta. */
struct sm {
	struct sm_ent *e; /* e[i-1] is index i */
	size_t cap;
	raft_index applied;
	struct conf_rec *confs;
	size_t n_confs, cap_confs;
};

struct sh_ent {
	raft_term term;
	uint64_t chain;
};

/* The core's log as told by its readies. */
struct shadow {
	raft_index base; /* snapshot index; entries start at base + 1 */
	raft_term base_term;
	uint64_t base_chain;
	struct sh_ent *e;
	size_t n, cap;
};

struct dent {
	raft_term term;
	uint8_t type;
	uint32_t len;
	uint8_t *data;
};

struct disk {
	bool has_state; /* bootstrapped or persisted anything */
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	uint8_t *snap_data;
	size_t snap_len;
	struct dent *log; /* log[k] is index first + k */
	size_t n, cap;
	raft_index first;
};

struct job {
	struct job *next;
	uint64_t rd_id;
	bool has_hs;
	struct raft_hard_state hs;
	struct dent *ents;
	size_t n;
	raft_index first;
	bool has_snap;
	struct raft_snapshot_meta snap;
	uint8_t *snap_data;
	size_t snap_len;
	struct raft_msg **after;
	size_t n_after;
};

struct pread {
	uint64_t ctx;
	raft_index min;
};

struct node {
	struct sim *s;
	raft_id id;
	enum sim_node_state state;
	uint32_t inc;    /* incarnation: bumps on crash */
	uint32_t starts; /* how many cores were created */
	struct raft *r;
	struct disk d;
	struct sm sm;
	struct shadow sh;
	struct job *jh, *jt;
	uint64_t job_t; /* completion time of the last queued job */
	struct pread *reads;
	size_t n_reads, cap_reads;
	raft_index last_commit; /* highest commit seen (persisted after crash) */
	raft_index rec_commit;  /* committed entries recorded up to here */
	raft_term lead_term;    /* term it is leader in, 0 if not leader */
};

enum { EV_MSG = 1, EV_PERSIST = 2 };

struct ev {
	uint64_t t, seq;
	uint8_t kind;
	uint8_t node; /* index into nodes[] */
	uint32_t inc;
	struct raft_msg *msg;
};

struct gent {
	uint64_t chain;
	raft_term term;
	bool known;
};

struct sim {
	struct sim_opts o;
	struct sim_faults f;
	uint64_t rng;
	uint64_t now, ticks;
	struct node nodes[SIM_MAX_IDS];
	struct raft_conf conf0;
	bool blocked[SIM_MAX_IDS + 1][SIM_MAX_IDS + 1];
	struct ev *heap;
	size_t nh, caph;
	uint64_t msgs_inflight, bytes_inflight; /* on the fake wire */
	uint64_t evseq;
	struct map leaders; /* (term, 0) -> leader id */
	struct map votes;   /* (term, voter) -> candidate */
	struct map lm;      /* (index, term) -> chain, log matching */
	struct gent *g;     /* committed/applied entries by index */
	size_t gcap;
	raft_index *cmax; /* by term: highest commit observed at that term */
	size_t cmax_cap;
	raft_index max_commit;
	uint64_t next_ctx, next_payload;
	uint64_t delivered[RAFT_MSG_TYPE_MAX + 1];
	sim_filter_fn filter;
	void *filter_arg;
	sim_persist_hook_fn phook;
	void *phook_arg;
	bool failed;
	char fail[SIM_FAIL_MAX];
};

static void drive(struct sim *s, struct node *n);

/* ---- failures and logging --------------------------------------------- */

void sim_failf(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int k = snprintf(s->fail, sizeof s->fail, "t=%llu ",
			 (unsigned long long)s->ticks);
	if (k < 0)
		k = 0;
	vsnprintf(s->fail + k, sizeof s->fail - (size_t)k, fmt, ap);
	va_end(ap);
	if (s->o.verbose)
		printf("!! %s\n", s->fail);
}

const char *sim_failure(const struct sim *s)
{
	return s->failed ? s->fail : NULL;
}

void sim_logf(struct sim *s, const char *fmt, ...)
{
	if (!s->o.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	printf("t=%llu.%02llu ", (unsigned long long)(s->now / SIM_TICK),
	       (unsigned long long)(s->now % SIM_TICK));
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static const char *ev_name(uint8_t t)
{
	static const char *names[] = {"?",	  "ROLE",     "TERM",
				      "ELECTION", "VOTE",     "LEADER",
				      "COMMIT",	  "CONF",     "SNAPSHOT",
				      "TRANSFER", "STEPDOWN", "DROP"};
	return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* The core's trace sink: print when verbose. */
static void trace_cb(void *ctx, const struct raft_event *ev)
{
	struct node *n = ctx;
	struct sim *s = n->s;
	if (!s->o.verbose)
		return;
	sim_logf(s, "  n%llu term=%llu %s peer=%llu index=%llu %s",
		 (unsigned long long)ev->node, (unsigned long long)ev->term,
		 ev_name(ev->type), (unsigned long long)ev->peer,
		 (unsigned long long)ev->index, ev->detail ? ev->detail : "");
}

uint64_t sim_rand(struct sim *s)
{
	s->rng += 0x9e3779b97f4a7c15ULL;
	return mix(s->rng);
}

static uint64_t rand_range(struct sim *s, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + sim_rand(s) % (hi - lo + 1);
}

static bool chance(struct sim *s, double p)
{
	if (p <= 0)
		return false;
	return (double)(sim_rand(s) >> 11) * (1.0 / 9007199254740992.0) < p;
}

static struct node *node_of(struct sim *s, raft_id id)
{
	if (id < 1 || id > SIM_MAX_IDS)
		return NULL;
	return &s->nodes[id - 1];
}

/* ---- global records ---------------------------------------------------- */

/* Record that the entry at index with chain is committed (or applied);
 * a different chain at the same index breaks state-machine safety. */
static void global_check(struct sim *s, raft_index i, raft_term term,
			 uint64_t chain, raft_id who, const char *what)
{
	if (i >= s->gcap) {
		size_t nc = s->gcap ? s->gcap : 1024;
		while (nc <= i)
			nc *= 2;
		s->g = xrealloc(s->g, nc * sizeof *s->g);
		memset(s->g + s->gcap, 0, (nc - s->gcap) * sizeof *s->g);
		s->gcap = nc;
	}
	struct gent *g = &s->g[i];
	if (!g->known) {
		g->known = true;
		g->chain = chain;
		g->term = term;
		return;
	}
	if (g->chain != chain)
		sim_failf(s,
			  "state-machine safety (%s): n%llu has index %llu "
			  "term %llu but committed/applied elsewhere is term "
			  "%llu (different entry or prefix)",
			  what, (unsigned long long)who, (unsigned long long)i,
			  (unsigned long long)term, (unsigned long long)g->term);
}

/* Log Matching via the prefix chain at (index, term). */
static void lm_check(struct sim *s, raft_id who, raft_index i, raft_term t,
		     uint64_t chain)
{
	uint64_t *v = map_get(&s->lm, i, t);
	if (!v) {
		map_put(&s->lm, i, t, chain);
		return;
	}
	if (*v != chain)
		sim_failf(s,
			  "log matching: n%llu holds (index %llu, term %llu) "
			  "with a different entry or prefix than another node",
			  (unsigned long long)who, (unsigned long long)i,
			  (unsigned long long)t);
}

/* A voter granted (or durably recorded a vote for) cand in term. */
static void vote_check(struct sim *s, raft_id voter, raft_term term,
		       raft_id cand, const char *how)
{
	if (!cand || !term)
		return;
	uint64_t *v = map_get(&s->votes, term, voter);
	if (!v) {
		map_put(&s->votes, term, voter, cand);
		return;
	}
	if (*v != cand)
		sim_failf(s,
			  "double vote: n%llu voted for n%llu and n%llu in "
			  "term %llu (%s)",
			  (unsigned long long)voter, (unsigned long long)*v,
			  (unsigned long long)cand, (unsigned long long)term,
			  how);
}

/* ---- state machine ------------------------------------------------------ */

static uint64_t sm_chain(const struct sm *sm, raft_index i)
{
	return i == 0 ? 0 : sm->e[i - 1].chain;
}

static void sm_push(struct sm *sm, raft_term term, uint8_t type,
		    uint64_t phash, uint64_t chain)
{
	if (sm->applied == sm->cap) {
		sm->cap = sm->cap ? sm->cap * 2 : 256;
		sm->e = xrealloc(sm->e, sm->cap * sizeof *sm->e);
	}
	sm->e[sm->applied++] = (struct sm_ent){term, phash, chain, type};
}

static void sm_conf_push(struct sm *sm, raft_index i, const struct raft_conf *c)
{
	if (sm->n_confs == sm->cap_confs) {
		sm->cap_confs = sm->cap_confs ? sm->cap_confs * 2 : 8;
		sm->confs =
			xrealloc(sm->confs, sm->cap_confs * sizeof *sm->confs);
	}
	sm->confs[sm->n_confs].index = i;
	sm->confs[sm->n_confs].conf = *c;
	sm->n_confs++;
}

static void sm_reset(struct sm *sm, raft_index base,
		     const struct raft_conf *conf)
{
	sm->applied = 0;
	sm->n_confs = 0;
	sm_conf_push(sm, base, conf);
}

static void sm_free(struct sm *sm)
{
	free(sm->e);
	free(sm->confs);
	memset(sm, 0, sizeof *sm);
}

/* The configuration in force at index i (last change at or before i). */
static const struct raft_conf *sm_conf_at(const struct sm *sm, raft_index i)
{
	const struct raft_conf *c = &sm->confs[0].conf;
	for (size_t k = 0; k < sm->n_confs; k++)
		if (sm->confs[k].index <= i)
			c = &sm->confs[k].conf;
	return c;
}

/* Apply a decoded configuration change to conf. */
static void conf_apply(struct raft_conf *c, uint8_t op, raft_id id,
		       const char *addr)
{
	uint32_t k;
	for (k = 0; k < c->n; k++)
		if (c->nodes[k].id == id)
			break;
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (k == c->n && c->n < RAFT_MAX_NODES) {
			memset(&c->nodes[k], 0, sizeof c->nodes[k]);
			c->nodes[k].id = id;
			c->nodes[k].role = RAFT_LEARNER;
			snprintf(c->nodes[k].addr, RAFT_ADDR_MAX, "%s", addr);
			c->n++;
		}
		break;
	case RAFT_CONF_PROMOTE:
		if (k < c->n)
			c->nodes[k].role = RAFT_VOTER;
		break;
	case RAFT_CONF_REMOVE:
		if (k < c->n) {
			memmove(&c->nodes[k], &c->nodes[k + 1],
				(c->n - k - 1) * sizeof c->nodes[0]);
			c->n--;
		}
		break;
	default:
		break;
	}
}

/* Snapshot data: "SIMSNAP1", index, then per entry term, type, phash. */
#define SNAP_HDR 16

#define SNAP_ENT 17

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Serialize the state machine up to index upto. Caller frees *out. */
static void sm_serialize(const struct sm *sm, raft_index upto, uint8_t **out,
			 size_t *len)
{
	size_t n = SNAP_HDR + (size_t)upto * SNAP_ENT;
	uint8_t *p = xmalloc(n);
	memcpy(p, "SIMSNAP1", 8);
	put64(p + 8, upto);
	for (raft_index i = 1; i <= upto; i++) {
		uint8_t *q = p + SNAP_HDR + (i - 1) * SNAP_ENT;
		put64(q, sm->e[i - 1].term);
		q[8] = sm->e[i - 1].type;
		put64(q + 9, sm->e[i - 1].phash);
	}
	*out = p;
	*len = n;
}

/* Rebuild sm from snapshot data; every entry is checked against the
 * global committed record. Returns false (failure recorded) if the data
 * is malformed. */
static bool sm_restore(struct sim *s, struct node *n, const uint8_t *d,
		       size_t len, const struct raft_snapshot_meta *meta)
{
	if (len < SNAP_HDR || memcmp(d, "SIMSNAP1", 8) != 0) {
		sim_failf(s, "n%llu: snapshot data malformed (len %zu)",
			  (unsigned long long)n->id, len);
		return false;
	}
	raft_index idx = get64(d + 8);
	if (idx != meta->index || len != SNAP_HDR + idx * SNAP_ENT) {
		sim_failf(s,
			  "n%llu: snapshot data for index %llu installed as "
			  "index %llu (len %zu)",
			  (unsigned long long)n->id, (unsigned long long)idx,
			  (unsigned long long)meta->index, len);
		return false;
	}
	sm_reset(&n->sm, meta->index, &meta->conf);
	uint64_t chain = 0;
	for (raft_index i = 1; i <= idx; i++) {
		const uint8_t *q = d + SNAP_HDR + (i - 1) * SNAP_ENT;
		raft_term t = get64(q);
		uint64_t ph = get64(q + 9);
		chain = chain_next(chain, i, t, ph);
		sm_push(&n->sm, t, q[8], ph, chain);
		global_check(s, i, t, chain, n->id, "snapshot content");
	}
	if (idx && n->sm.e[idx - 1].term != meta->term)
		sim_failf(s,
			  "n%llu: snapshot meta term %llu but entry %llu has "
			  "term %llu",
			  (unsigned long long)n->id,
			  (unsigned long long)meta->term,
			  (unsigned long long)idx,
			  (unsigned long long)n->sm.e[idx - 1].term);
	return !s->failed;
}

/* ---- shadow log --------------------------------------------------------- */

static raft_index sh_last(const struct shadow *sh)
{
	return sh->base + sh->n;
}

static uint64_t sh_chain(const struct shadow *sh, raft_index i)
{
	return i == sh->base ? sh->base_chain : sh->e[i - sh->base - 1].chain;
}

static raft_term sh_term(const struct shadow *sh, raft_index i)
{
	return i == sh->base ? sh->base_term : sh->e[i - sh->base - 1].term;
}

static void sh_reset(struct shadow *sh, raft_index base, raft_term t,
		     uint64_t chain)
{
	sh->base = base;
	sh->base_term = t;
	sh->base_chain = chain;
	sh->n = 0;
}

/* Append (after truncating to i-1) one entry to the shadow log. */
static void sh_put(struct sim *s, struct node *n, raft_index i, raft_term t,
		   uint64_t phash)
{
	struct shadow *sh = &n->sh;
	if (i <= sh->base || i > sh_last(sh) + 1) {
		sim_failf(s,
			  "n%llu: ready entry at index %llu does not follow "
			  "its log (snapshot %llu, last %llu)",
			  (unsigned long long)n->id, (unsigned long long)i,
			  (unsigned long long)sh->base,
			  (unsigned long long)sh_last(sh));
		return;
	}
	if (t < sh_term(sh, i - 1)) {
		sim_failf(s,
			  "n%llu: log terms decrease at index %llu (%llu after "
			  "%llu)",
			  (unsigned long long)n->id, (unsigned long long)i,
			  (unsigned long long)t,
			  (unsigned long long)sh_term(sh, i - 1));
		return;
	}
	sh->n = i - sh->base - 1;
	if (sh->n == sh->cap) {
		sh->cap = sh->cap ? sh->cap * 2 : 256;
		sh->e = xrealloc(sh->e, sh->cap * sizeof *sh->e);
	}
	uint64_t c = chain_next(sh_chain(sh, i - 1), i, t, phash);
	sh->e[sh->n++] = (struct sh_ent){t, c};
	lm_check(s, n->id, i, t, c);
}

/* ---- disk --------------------------------------------------------------- */

static void dent_free(struct dent *e)
{
	free(e->data);
	e->data = NULL;
}

static void disk_truncate(struct disk *d, size_t keep)
{
	for (size_t k = keep; k < d->n; k++)
		dent_free(&d->log[k]);
	if (keep < d->n)
		d->n = keep;
}

static void disk_push(struct disk *d, struct dent e)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 256;
		d->log = xrealloc(d->log, d->cap * sizeof *d->log);
	}
	d->log[d->n++] = e;
}

/* Drop entries with index <= upto from the disk log. */
static void disk_drop_prefix(struct disk *d, raft_index upto)
{
	if (upto < d->first)
		return;
	size_t k = (size_t)(upto - d->first + 1);
	if (k > d->n)
		k = d->n;
	for (size_t j = 0; j < k; j++)
		dent_free(&d->log[j]);
	memmove(d->log, d->log + k, (d->n - k) * sizeof *d->log);
	d->n -= k;
	d->first = upto + 1;
}

static raft_index disk_last(const struct disk *d)
{
	return d->n ? d->first + d->n - 1 : d->first - 1;
}

/* Is entry (i, t) durable on this disk (in its log or its snapshot)? */
static bool disk_has(const struct disk *d, raft_index i, raft_term t)
{
	if (i <= d->snap.index)
		return true;
	if (i < d->first || i > disk_last(d))
		return false;
	return d->log[i - d->first].term == t;
}

static void disk_free(struct disk *d)
{
	disk_truncate(d, 0);
	free(d->log);
	free(d->snap_data);
	memset(d, 0, sizeof *d);
}

/* ---- messages and the event heap ---------------------------------------- */

/* Bytes of a message and what it carries. */
static uint64_t msg_size(const struct raft_msg *m)
{
	uint64_t sz = sizeof *m + m->n_entries * sizeof(struct raft_entry) +
		      m->len;
	for (uint32_t i = 0; i < m->n_entries; i++)
		sz += m->entries[i].len;
	return sz;
}

/* Deep copy of m in one allocation (entries and data follow the struct). */
static struct raft_msg *msg_clone(struct sim *s, const struct raft_msg *m)
{
	s->msgs_inflight++;
	s->bytes_inflight += msg_size(m);
	size_t sz = sizeof *m + m->n_entries * sizeof(struct raft_entry) +
		    m->len;
	for (uint32_t i = 0; i < m->n_entries; i++)
		sz += m->entries[i].len;
	uint8_t *p = xmalloc(sz);
	struct raft_msg *c = (struct raft_msg *)p;
	*c = *m;
	p += sizeof *c;
	if (m->n_entries) {
		c->entries = (struct raft_entry *)p;
		p += m->n_entries * sizeof(struct raft_entry);
		for (uint32_t i = 0; i < m->n_entries; i++) {
			c->entries[i] = m->entries[i];
			if (m->entries[i].len) {
				memcpy(p, m->entries[i].data,
				       m->entries[i].len);
				c->entries[i].data = p;
				p += m->entries[i].len;
			} else {
				c->entries[i].data = NULL;
			}
		}
	} else {
		c->entries = NULL;
	}
	if (m->len) {
		memcpy(p, m->data, m->len);
		c->data = p;
	} else {
		c->data = NULL;
	}
	return c;
}

/* Free a message made by msg_clone(). */
static void msg_free(struct sim *s, struct raft_msg *m)
{
	s->msgs_inflight--;
	s->bytes_inflight -= msg_size(m);
	free(m);
}

static bool ev_less(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(struct sim *s, struct ev e)
{
	if (s->nh == s->caph) {
		s->caph = s->caph ? s->caph * 2 : 1024;
		s->heap = xrealloc(s->heap, s->caph * sizeof *s->heap);
	}
	e.seq = s->evseq++;
	size_t i = s->nh++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_less(&e, &s->heap[p]))
			break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = e;
}

static struct ev heap_pop(struct sim *s)
{
	struct ev top = s->heap[0];
	struct ev last = s->heap[--s->nh];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->nh)
			break;
		if (c + 1 < s->nh && ev_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->nh)
		s->heap[i] = last;
	return top;
}

/* Check that what message m promises is durable on n's disk. */
static void promise_check(struct sim *s, struct node *n,
			  const struct raft_msg *m)
{
	if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
		if (n->d.hs.term != m->term || n->d.hs.vote != m->to)
			sim_failf(s,
				  "n%llu sends a vote grant to n%llu for term "
				  "%llu before persisting it (disk: term %llu "
				  "vote %llu)",
				  (unsigned long long)n->id,
				  (unsigned long long)m->to,
				  (unsigned long long)m->term,
				  (unsigned long long)n->d.hs.term,
				  (unsigned long long)n->d.hs.vote);
		vote_check(s, n->id, m->term, m->to, "grant sent");
	}
	if (m->type == RAFT_MSG_APPEND_RESP && !m->reject &&
	    m->index > n->d.snap.index && m->index > disk_last(&n->d))
		sim_failf(s,
			  "n%llu acknowledges index %llu to n%llu before "
			  "persisting it (disk last %llu)",
			  (unsigned long long)n->id,
			  (unsigned long long)m->index,
			  (unsigned long long)m->to,
			  (unsigned long long)disk_last(&n->d));
}

/* Put a message (owned clone) on the wire from node n. */
static void send_owned(struct sim *s, struct node *n, struct raft_msg *c)
{
	if (c->from != n->id) {
		sim_failf(s, "n%llu emits a %s with from=%llu",
			  (unsigned long long)n->id, raft_msg_name(c->type),
			  (unsigned long long)c->from);
		msg_free(s, c);
		return;
	}
	promise_check(s, n, c);
	if (chance(s, s->f.drop)) {
		msg_free(s, c);
		return;
	}
	int copies = chance(s, s->f.dup) ? 2 : 1;
	for (int k = 0; k < copies; k++) {
		struct raft_msg *m = k ? msg_clone(s, c) : c;
		uint64_t d = rand_range(s, s->f.delay_min, s->f.delay_max);
		if (chance(s, s->f.slow_msg))
			d = rand_range(s, s->f.delay_min, s->f.slow_max);
		heap_push(s, (struct ev){.t = s->now + d,
					 .kind = EV_MSG,
					 .msg = m});
	}
	/* A core must not flood a network: in-flight traffic is bounded by
	 * its flow control (max_inflight_msgs/bytes per follower). */
	if (s->msgs_inflight > SIM_STORM_MSGS ||
	    s->bytes_inflight > SIM_STORM_BYTES)
		sim_failf(s,
			  "message storm: %llu messages / %llu bytes in "
			  "flight (last: n%llu %s to n%llu)",
			  (unsigned long long)s->msgs_inflight,
			  (unsigned long long)s->bytes_inflight,
			  (unsigned long long)c->from,
			  raft_msg_name(c->type), (unsigned long long)c->to);
}

/* ---- node lifecycle -------------------------------------------------- */

static void job_free(struct sim *s, struct job *j)
{
	for (size_t k = 0; k < j->n; k++)
		dent_free(&j->ents[k]);
	free(j->ents);
	free(j->snap_data);
	for (size_t k = 0; k < j->n_after; k++)
		if (j->after[k])
			msg_free(s, j->after[k]);
	free(j->after);
	free(j);
}

static void node_config(struct sim *s, struct node *n, struct raft_config *c)
{
	raft_config_default(c);
	c->lease_reads = true; /* the simulator's ticks are exact: check leases */
	c->id = n->id;
	c->seed = mix(s->o.seed * 1000003ULL ^ (n->id << 20) ^ n->starts);
	if (s->o.election_ticks)
		c->election_ticks = s->o.election_ticks;
	if (s->o.heartbeat_ticks)
		c->heartbeat_ticks = s->o.heartbeat_ticks;
	if (s->o.snapshot_trailing)
		c->snapshot_trailing = s->o.snapshot_trailing;
	if (s->o.snapshot_chunk_bytes)
		c->snapshot_chunk_bytes = s->o.snapshot_chunk_bytes;
	if (s->o.max_msg_bytes)
		c->max_msg_bytes = s->o.max_msg_bytes;
	if (s->o.max_inflight_msgs)
		c->max_inflight_msgs = s->o.max_inflight_msgs;
	c->trace = trace_cb;
	c->trace_ctx = n;
}

/* Drop everything volatile of n: the core, queued writes, the state
 * machine, pending reads. The disk stays. */
static void node_down(struct sim *s, struct node *n, enum sim_node_state st)
{
	if (n->state != SIM_RUNNING)
		return;
	raft_free(n->r);
	n->r = NULL;
	while (n->jh) {
		struct job *j = n->jh;
		n->jh = j->next;
		job_free(s, j);
	}
	n->jt = NULL;
	n->n_reads = 0;
	n->inc++;
	n->state = st;
	if (s->o.mutate == 2) { /* self-test: lose acknowledged entries */
		raft_index keep = n->d.hs.commit > n->d.snap.index
					  ? n->d.hs.commit
					  : n->d.snap.index;
		if (disk_last(&n->d) > keep && keep + 1 >= n->d.first) {
			disk_truncate(&n->d, (size_t)(keep + 1 - n->d.first));
			sh_reset(&n->sh, n->sh.base, n->sh.base_term,
				 n->sh.base_chain);
		}
	}
	n->lead_term = 0;
	n->last_commit = n->d.hs.commit;
	sim_logf(s, "n%llu %s", (unsigned long long)n->id,
		 st == SIM_CRASHED ? "CRASH" : "STOP");
}

void sim_crash(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (n)
		node_down(s, n, SIM_CRASHED);
}

void sim_stop(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (n)
		node_down(s, n, SIM_STOPPED);
}

static struct raft *core_new(struct sim *s, struct node *n)
{
	struct raft_config c;
	node_config(s, n, &c);
	n->starts++;
	struct raft *r = raft_new(&c);
	if (!r)
		sim_failf(s, "n%llu: raft_new failed",
			  (unsigned long long)n->id);
	return r;
}

static void node_up(struct sim *s, struct node *n, struct raft *r)
{
	n->r = r;
	n->state = SIM_RUNNING;
	n->job_t = s->now;
	n->rec_commit = n->sh.base;
	n->lead_term = 0;
}

/* Restart node id from its disk (Raft: volatile state is rebuilt; the
 * state machine restarts from the snapshot and re-applies the log). */
int sim_restart(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (!n || n->state == SIM_RUNNING)
		return 0;
	if (n->state == SIM_ABSENT || !n->d.has_state)
		return sim_start_new(s, id);
	struct disk *d = &n->d;
	if (d->snap.index) {
		if (!sm_restore(s, n, d->snap_data, d->snap_len, &d->snap))
			return -1;
	} else {
		sm_reset(&n->sm, 0, &d->snap.conf);
	}
	sh_reset(&n->sh, d->snap.index, d->snap.term,
		 sm_chain(&n->sm, d->snap.index));
	size_t cnt = 0;
	struct raft_entry *ents = xcalloc(d->n, sizeof *ents);
	for (raft_index i = d->snap.index + 1; i <= disk_last(d); i++) {
		if (i < d->first) {
			sim_failf(s, "n%llu: disk log gap after snapshot",
				  (unsigned long long)id);
			free(ents);
			return -1;
		}
		const struct dent *e = &d->log[i - d->first];
		ents[cnt++] = (struct raft_entry){e->term, i, e->type, e->len,
						  e->data};
		sh_put(s, n, i, e->term,
		       entry_phash(e->type, e->data, e->len));
	}
	struct raft *r = core_new(s, n);
	if (!r) {
		free(ents);
		return -1;
	}
	struct raft_hard_state hs = d->hs;
	if (s->o.mutate == 1) /* self-test: a disk that forgets the vote */
		hs.vote = 0;
	int rc = raft_load(r, &hs, &d->snap, ents, cnt, d->snap.index);
	free(ents);
	if (rc != 0) {
		sim_failf(s,
			  "n%llu: raft_load rejected its own disk (%d): hs "
			  "term %llu vote %llu commit %llu, snapshot %llu, %zu "
			  "entries",
			  (unsigned long long)id, rc,
			  (unsigned long long)d->hs.term,
			  (unsigned long long)d->hs.vote,
			  (unsigned long long)d->hs.commit,
			  (unsigned long long)d->snap.index, cnt);
		raft_free(r);
		return -1;
	}
	node_up(s, n, r);
	n->last_commit = d->hs.commit;
	sim_logf(s, "n%llu RESTART term=%llu commit=%llu snap=%llu last=%llu",
		 (unsigned long long)id, (unsigned long long)d->hs.term,
		 (unsigned long long)d->hs.commit,
		 (unsigned long long)d->snap.index,
		 (unsigned long long)sh_last(&n->sh));
	drive(s, n);
	return s->failed ? -1 : 0;
}

int sim_start_new(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (!n || n->state == SIM_RUNNING)
		return 0;
	disk_free(&n->d);
	n->d.first = 1;
	n->d.snap.conf = s->conf0;
	sm_reset(&n->sm, 0, &s->conf0);
	sh_reset(&n->sh, 0, 0, 0);
	struct raft *r = core_new(s, n);
	if (!r)
		return -1;
	node_up(s, n, r);
	n->last_commit = 0;
	sim_logf(s, "n%llu START (joining)", (unsigned long long)id);
	drive(s, n);
	return s->failed ? -1 : 0;
}

/* ---- the ready loop ----------------------------------------------------- */

/* Install a snapshot received from the leader (ready step 2). */
static void ready_snapshot(struct sim *s, struct node *n,
			   const struct raft_ready *rd, struct job *j)
{
	if (rd->snapshot.index <= n->sm.applied) {
		sim_failf(s,
			  "n%llu: asked to install snapshot %llu but it has "
			  "applied %llu already",
			  (unsigned long long)n->id,
			  (unsigned long long)rd->snapshot.index,
			  (unsigned long long)n->sm.applied);
		return;
	}
	if (!sm_restore(s, n, rd->snapshot_data, rd->snapshot_len,
			&rd->snapshot))
		return;
	sh_reset(&n->sh, rd->snapshot.index, rd->snapshot.term,
		 sm_chain(&n->sm, rd->snapshot.index));
	j->has_snap = true;
	j->snap = rd->snapshot;
	j->snap_len = rd->snapshot_len;
	j->snap_data = xmalloc(rd->snapshot_len);
	memcpy(j->snap_data, rd->snapshot_data, rd->snapshot_len);
	sim_logf(s, "n%llu INSTALL snapshot index=%llu term=%llu",
		 (unsigned long long)n->id,
		 (unsigned long long)rd->snapshot.index,
		 (unsigned long long)rd->snapshot.term);
}

/* Apply one committed entry (ready step 5). */
static void apply_one(struct sim *s, struct node *n, const struct raft_entry *e)
{
	struct sm *sm = &n->sm;
	if (e->index != sm->applied + 1) {
		sim_failf(s, "n%llu: applies index %llu after %llu",
			  (unsigned long long)n->id,
			  (unsigned long long)e->index,
			  (unsigned long long)sm->applied);
		return;
	}
	if (!disk_has(&n->d, e->index, e->term)) {
		sim_failf(s,
			  "n%llu: applies index %llu term %llu which is not "
			  "durable locally (disk last %llu)",
			  (unsigned long long)n->id,
			  (unsigned long long)e->index,
			  (unsigned long long)e->term,
			  (unsigned long long)disk_last(&n->d));
		return;
	}
	uint64_t ph = entry_phash(e->type, e->data, e->len);
	uint64_t c = chain_next(sm_chain(sm, sm->applied), e->index, e->term,
				ph);
	global_check(s, e->index, e->term, c, n->id, "apply");
	if (e->type == RAFT_ENTRY_CONF) {
		uint8_t op;
		raft_id id;
		char addr[RAFT_ADDR_MAX];
		if (raft_conf_change_decode(e->data, e->len, &op, &id, addr,
					    sizeof addr) != 0) {
			sim_failf(s, "n%llu: conf entry %llu does not decode",
				  (unsigned long long)n->id,
				  (unsigned long long)e->index);
			return;
		}
		struct raft_conf nc = sm->confs[sm->n_confs - 1].conf;
		conf_apply(&nc, op, id, addr);
		sm_conf_push(sm, e->index, &nc);
	}
	sm_push(sm, e->term, e->type, ph, c);
}

/* Process one ready batch of node n (steps 1-6 of raft.h). */
static void handle_ready(struct sim *s, struct node *n, struct raft_ready *rd)
{
	for (size_t k = 0; k < rd->n_msgs; k++)
		send_owned(s, n, msg_clone(s, &rd->msgs[k]));

	struct job *j = NULL;
	if (rd->has_snapshot || rd->has_hs || rd->n_entries ||
	    rd->n_msgs_after_persist) {
		j = xcalloc(1, sizeof *j);
		j->rd_id = rd->id;
	}
	if (rd->has_snapshot)
		ready_snapshot(s, n, rd, j);

	if (rd->n_entries) {
		/* Leader Append-Only (Figure 3): a leader that was leader of
		 * this term before this input only appends. */
		raft_index first = rd->entries[0].index;
		if (n->lead_term && raft_role(n->r) == RAFT_LEADER &&
		    raft_current_term(n->r) == n->lead_term &&
		    first <= sh_last(&n->sh))
			sim_failf(s,
				  "leader append-only: leader n%llu (term "
				  "%llu) rewrites its log from index %llu "
				  "(last %llu)",
				  (unsigned long long)n->id,
				  (unsigned long long)n->lead_term,
				  (unsigned long long)first,
				  (unsigned long long)sh_last(&n->sh));
		j->first = first;
		j->n = rd->n_entries;
		j->ents = xcalloc(rd->n_entries, sizeof *j->ents);
		for (size_t k = 0; k < rd->n_entries; k++) {
			const struct raft_entry *e = &rd->entries[k];
			if (e->index != first + k) {
				sim_failf(s,
					  "n%llu: ready entries not "
					  "consecutive",
					  (unsigned long long)n->id);
				break;
			}
			sh_put(s, n, e->index, e->term,
			       entry_phash(e->type, e->data, e->len));
			struct dent *de = &j->ents[k];
			de->term = e->term;
			de->type = e->type;
			de->len = e->len;
			if (e->len) {
				de->data = xmalloc(e->len);
				memcpy(de->data, e->data, e->len);
			}
		}
	}
	if (j) {
		j->has_hs = rd->has_hs;
		j->hs = rd->hs;
		if (rd->n_msgs_after_persist) {
			j->n_after = rd->n_msgs_after_persist;
			j->after = xcalloc(j->n_after, sizeof *j->after);
			for (size_t k = 0; k < j->n_after; k++)
				j->after[k] =
					msg_clone(s, &rd->msgs_after_persist[k]);
		}
		uint64_t t = s->now +
			     rand_range(s, s->f.disk_min, s->f.disk_max);
		if (t < n->job_t)
			t = n->job_t;
		n->job_t = t;
		if (n->jt)
			n->jt->next = j;
		else
			n->jh = j;
		n->jt = j;
		heap_push(s, (struct ev){.t = t,
					 .kind = EV_PERSIST,
					 .node = (uint8_t)(n->id - 1),
					 .inc = n->inc});
	}

	for (size_t k = 0; k < rd->n_committed && !s->failed; k++)
		apply_one(s, n, &rd->committed[k]);

	for (size_t k = 0; k < rd->n_reads; k++) {
		const struct raft_read_state *rs = &rd->reads[k];
		for (size_t q = 0; q < n->n_reads; q++) {
			if (n->reads[q].ctx != rs->ctx)
				continue;
			if (rs->index < n->reads[q].min)
				sim_failf(s,
					  "linearizable read: n%llu read ctx "
					  "%llu answered with index %llu but "
					  "index %llu was committed before "
					  "the read began",
					  (unsigned long long)n->id,
					  (unsigned long long)rs->ctx,
					  (unsigned long long)rs->index,
					  (unsigned long long)n->reads[q].min);
			sim_logf(s, "n%llu READ ctx=%llu index=%llu (min %llu)",
				 (unsigned long long)n->id,
				 (unsigned long long)rs->ctx,
				 (unsigned long long)rs->index,
				 (unsigned long long)n->reads[q].min);
			n->reads[q] = n->reads[--n->n_reads];
			break;
		}
	}
}

/* After each input: invariants that look at the node's status. */
static void check_node(struct sim *s, struct node *n)
{
	struct raft_status st;
	raft_status(n->r, &st);
	if (st.commit < n->last_commit) {
		sim_failf(s, "n%llu: commit index went back from %llu to %llu",
			  (unsigned long long)n->id,
			  (unsigned long long)n->last_commit,
			  (unsigned long long)st.commit);
		return;
	}
	n->last_commit = st.commit;
	if (st.commit > s->max_commit)
		s->max_commit = st.commit;
	if (st.term < (1u << 22)) {
		if (st.term >= s->cmax_cap) {
			size_t nc = s->cmax_cap ? s->cmax_cap : 64;
			while (nc <= st.term)
				nc *= 2;
			s->cmax = xrealloc(s->cmax, nc * sizeof *s->cmax);
			memset(s->cmax + s->cmax_cap, 0,
			       (nc - s->cmax_cap) * sizeof *s->cmax);
			s->cmax_cap = nc;
		}
		if (st.commit > s->cmax[st.term])
			s->cmax[st.term] = st.commit;
	}
	/* Committed entries of this node's log are fixed forever. */
	raft_index hi = st.commit < sh_last(&n->sh) ? st.commit
						     : sh_last(&n->sh);
	raft_index lo = n->rec_commit > n->sh.base ? n->rec_commit
						   : n->sh.base;
	for (raft_index i = lo + 1; i <= hi && !s->failed; i++)
		global_check(s, i, sh_term(&n->sh, i), sh_chain(&n->sh, i),
			     n->id, "committed");
	if (hi > n->rec_commit)
		n->rec_commit = hi;

	if (st.role != RAFT_LEADER) {
		n->lead_term = 0;
		return;
	}
	/* Election Safety (Figure 3). */
	uint64_t *v = map_get(&s->leaders, st.term, 0);
	if (v && *v != n->id) {
		sim_failf(s, "election safety: n%llu and n%llu both leader "
			     "in term %llu",
			  (unsigned long long)*v, (unsigned long long)n->id,
			  (unsigned long long)st.term);
		return;
	}
	if (!v)
		map_put(&s->leaders, st.term, 0, n->id);
	if (n->lead_term == st.term)
		return;
	n->lead_term = st.term;
	sim_logf(s, "n%llu LEADER term=%llu last=%llu commit=%llu",
		 (unsigned long long)n->id, (unsigned long long)st.term,
		 (unsigned long long)sh_last(&n->sh),
		 (unsigned long long)st.commit);
	/* Leader Completeness (Figure 3): everything committed in an earlier
	 * term is in the new leader's log. */
	raft_index k = 0;
	for (raft_term t = 0; t < st.term && t < s->cmax_cap; t++)
		if (s->cmax[t] > k)
			k = s->cmax[t];
	while (k > 0 && (k >= s->gcap || !s->g[k].known))
		k--;
	if (k == 0)
		return;
	if (k > sh_last(&n->sh)) {
		sim_failf(s,
			  "leader completeness: n%llu leads term %llu with "
			  "last index %llu but %llu was committed earlier",
			  (unsigned long long)n->id,
			  (unsigned long long)st.term,
			  (unsigned long long)sh_last(&n->sh),
			  (unsigned long long)k);
		return;
	}
	if (k < n->sh.base)
		k = n->sh.base;
	if (k < s->gcap && s->g[k].known && sh_chain(&n->sh, k) != s->g[k].chain)
		sim_failf(s,
			  "leader completeness: n%llu leads term %llu but "
			  "its entry %llu (term %llu) differs from the "
			  "committed one (term %llu)",
			  (unsigned long long)n->id,
			  (unsigned long long)st.term, (unsigned long long)k,
			  (unsigned long long)sh_term(&n->sh, k),
			  (unsigned long long)s->g[k].term);
}

/* Drain every ready of n, then check. */
static void drive(struct sim *s, struct node *n)
{
	struct raft_ready rd;
	while (!s->failed && n->state == SIM_RUNNING && raft_ready(n->r, &rd)) {
		handle_ready(s, n, &rd);
		bool want = rd.want_snapshot;
		raft_advance(n->r, &rd);
		if (want && !s->failed) {
			uint8_t *data;
			size_t len;
			sm_serialize(&n->sm, n->sm.applied, &data, &len);
			int rc = raft_set_snapshot(n->r, n->sm.applied, data,
						   len);
			free(data);
			if (rc != 0)
				sim_failf(s,
					  "n%llu: raft_set_snapshot(%llu) "
					  "refused: %d",
					  (unsigned long long)n->id,
					  (unsigned long long)n->sm.applied,
					  rc);
		}
	}
	if (!s->failed && n->state == SIM_RUNNING)
		check_node(s, n);
}

/* A persistence job reached the disk (ready steps 3-4). */
static void persist_done(struct sim *s, struct node *n)
{
	struct job *j = n->jh;
	n->jh = j->next;
	if (!n->jh)
		n->jt = NULL;
	if (chance(s, s->f.disk_fail)) {
		sim_logf(s, "n%llu persist failure", (unsigned long long)n->id);
		job_free(s, j);
		node_down(s, n, SIM_CRASHED);
		return;
	}
	struct disk *d = &n->d;
	d->has_state = true;
	if (j->has_snap) {
		d->snap = j->snap;
		free(d->snap_data);
		d->snap_data = j->snap_data;
		d->snap_len = j->snap_len;
		j->snap_data = NULL;
		disk_truncate(d, 0);
		d->first = j->snap.index + 1;
	}
	if (j->n) {
		if (j->first <= d->snap.index ||
		    j->first > disk_last(d) + 1) {
			sim_failf(s,
				  "n%llu: persists entries from %llu but its "
				  "disk has snapshot %llu and last %llu",
				  (unsigned long long)n->id,
				  (unsigned long long)j->first,
				  (unsigned long long)d->snap.index,
				  (unsigned long long)disk_last(d));
			job_free(s, j);
			return;
		}
		if (j->first < d->first) { /* below a trailing prefix */
			disk_truncate(d, 0);
			d->first = j->first;
		}
		disk_truncate(d, (size_t)(j->first - d->first));
		for (size_t k = 0; k < j->n; k++) {
			disk_push(d, j->ents[k]);
			j->ents[k].data = NULL;
		}
	}
	if (j->has_hs) {
		if (j->hs.term < d->hs.term ||
		    (j->hs.term == d->hs.term && d->hs.vote &&
		     j->hs.vote != d->hs.vote))
			sim_failf(s,
				  "n%llu: hard state goes from term %llu vote "
				  "%llu to term %llu vote %llu",
				  (unsigned long long)n->id,
				  (unsigned long long)d->hs.term,
				  (unsigned long long)d->hs.vote,
				  (unsigned long long)j->hs.term,
				  (unsigned long long)j->hs.vote);
		d->hs = j->hs;
		vote_check(s, n->id, d->hs.term, d->hs.vote, "persisted vote");
	}
	if (s->phook &&
	    s->phook(s->phook_arg, n->id, &j->hs, j->has_hs)) {
		sim_logf(s, "n%llu crash after persisting ready %llu",
			 (unsigned long long)n->id,
			 (unsigned long long)j->rd_id);
		job_free(s, j);
		node_down(s, n, SIM_CRASHED);
		return;
	}
	for (size_t k = 0; k < j->n_after && !s->failed; k++) {
		struct raft_msg *m = j->after[k];
		j->after[k] = NULL;
		send_owned(s, n, m);
	}
	raft_persisted(n->r, j->rd_id);
	job_free(s, j);
	drive(s, n);
}

static void deliver(struct sim *s, struct raft_msg *m)
{
	struct node *n = node_of(s, m->to);
	if (!n || n->state != SIM_RUNNING || m->from < 1 ||
	    m->from > SIM_MAX_IDS || s->blocked[m->from][m->to] ||
	    (s->filter && s->filter(s->filter_arg, m))) {
		msg_free(s, m);
		return;
	}
	if (m->type <= RAFT_MSG_TYPE_MAX)
		s->delivered[m->type]++;
	if (s->o.verbose && m->type == RAFT_MSG_SNAPSHOT)
		sim_logf(s,
			 "n%llu <- n%llu SNAPSHOT term=%llu snap=%llu/%llu "
			 "off=%llu len=%u done=%d",
			 (unsigned long long)m->to,
			 (unsigned long long)m->from,
			 (unsigned long long)m->term,
			 (unsigned long long)m->snap.index,
			 (unsigned long long)m->snap.term,
			 (unsigned long long)m->offset, m->len, m->done);
	else if (s->o.verbose)
		sim_logf(s,
			 "n%llu <- n%llu %s term=%llu prev=%llu/%llu n=%u "
			 "commit=%llu idx=%llu rej=%d",
			 (unsigned long long)m->to,
			 (unsigned long long)m->from, raft_msg_name(m->type),
			 (unsigned long long)m->term,
			 (unsigned long long)m->prev_index,
			 (unsigned long long)m->prev_term, m->n_entries,
			 (unsigned long long)m->commit,
			 (unsigned long long)m->index, m->reject);
	int rc = raft_step(n->r, m);
	if (rc != 0)
		sim_logf(s, "n%llu step(%s) -> %d", (unsigned long long)n->id,
			 raft_msg_name(m->type), rc);
	msg_free(s, m);
	drive(s, n);
}

static void handle_ev(struct sim *s, struct ev *e)
{
	s->now = e->t;
	if (e->kind == EV_MSG) {
		deliver(s, e->msg);
		return;
	}
	struct node *n = &s->nodes[e->node];
	if (n->state == SIM_RUNNING && n->inc == e->inc && n->jh)
		persist_done(s, n);
}

/* Run all events before the next tick, then tick every running node.
 * Returns 1 as soon as pred holds, -1 on failure, else 0. */
static int run_one_tick(struct sim *s, bool (*pred)(struct sim *, void *),
			void *arg)
{
	uint64_t end = (s->ticks + 1) * SIM_TICK;
	while (s->nh && s->heap[0].t < end) {
		struct ev e = heap_pop(s);
		handle_ev(s, &e);
		if (s->failed)
			return -1;
		if (pred && pred(s, arg))
			return 1;
	}
	s->now = end;
	s->ticks++;
	size_t off = (size_t)(sim_rand(s) % SIM_MAX_IDS);
	for (size_t k = 0; k < SIM_MAX_IDS; k++) {
		struct node *n = &s->nodes[(k + off) % SIM_MAX_IDS];
		if (n->state != SIM_RUNNING)
			continue;
		raft_tick(n->r);
		drive(s, n);
		if (s->failed)
			return -1;
		if (pred && pred(s, arg))
			return 1;
	}
	return 0;
}

int sim_run_ticks(struct sim *s, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		if (run_one_tick(s, NULL, NULL) < 0)
			return -1;
	return s->failed ? -1 : 0;
}

int sim_run_until(struct sim *s, bool (*pred)(struct sim *, void *),
		  void *arg, uint32_t max_ticks)
{
	if (pred(s, arg))
		return 0;
	for (uint32_t k = 0; k < max_ticks; k++) {
		int rc = run_one_tick(s, pred, arg);
		if (rc != 0)
			return rc > 0 ? 0 : -1;
	}
	return -1;
}

/* ---- creation ----------------------------------------------------------- */

struct sim *sim_new(const struct sim_opts *o)
{
	struct sim *s = xcalloc(1, sizeof *s);
	s->o = *o;
	s->f = o->faults;
	s->rng = mix(o->seed ^ 0xabcdef12345ULL);
	if (s->o.nodes < 1)
		s->o.nodes = 1;
	if (s->o.nodes > SIM_MAX_IDS)
		s->o.nodes = SIM_MAX_IDS;
	s->conf0.n = s->o.nodes;
	for (uint32_t k = 0; k < s->o.nodes; k++) {
		s->conf0.nodes[k].id = k + 1;
		s->conf0.nodes[k].role = RAFT_VOTER;
		snprintf(s->conf0.nodes[k].addr, RAFT_ADDR_MAX, "sim://%u",
			 k + 1);
	}
	for (size_t k = 0; k < SIM_MAX_IDS; k++) {
		s->nodes[k].s = s;
		s->nodes[k].id = k + 1;
		s->nodes[k].d.first = 1;
	}
	for (uint32_t k = 0; k < s->o.nodes; k++) {
		struct node *n = &s->nodes[k];
		n->d.has_state = true;
		n->d.snap.conf = s->conf0;
		sm_reset(&n->sm, 0, &s->conf0);
		sh_reset(&n->sh, 0, 0, 0);
		struct raft *r = core_new(s, n);
		if (!r)
			break;
		int rc = raft_bootstrap(r, &s->conf0);
		if (rc != 0) {
			sim_failf(s, "n%u: raft_bootstrap: %d", k + 1, rc);
			raft_free(r);
			break;
		}
		node_up(s, n, r);
	}
	for (uint32_t k = 0; k < s->o.nodes && !s->failed; k++)
		drive(s, &s->nodes[k]);
	return s;
}

void sim_free(struct sim *s)
{
	if (!s)
		return;
	for (size_t k = 0; k < SIM_MAX_IDS; k++) {
		struct node *n = &s->nodes[k];
		node_down(s, n, SIM_STOPPED);
		disk_free(&n->d);
		sm_free(&n->sm);
		free(n->sh.e);
		free(n->reads);
	}
	for (size_t k = 0; k < s->nh; k++)
		if (s->heap[k].kind == EV_MSG)
			msg_free(s, s->heap[k].msg);
	free(s->heap);
	map_free(&s->leaders);
	map_free(&s->votes);
	map_free(&s->lm);
	free(s->g);
	free(s->cmax);
	free(s);
}

/* ---- control ------------------------------------------------------------- */

void sim_block(struct sim *s, raft_id from, raft_id to, bool blocked)
{
	if (from >= 1 && from <= SIM_MAX_IDS && to >= 1 && to <= SIM_MAX_IDS)
		s->blocked[from][to] = blocked;
}

void sim_isolate(struct sim *s, raft_id id)
{
	sim_logf(s, "ISOLATE n%llu", (unsigned long long)id);
	for (raft_id k = 1; k <= SIM_MAX_IDS; k++) {
		if (k == id)
			continue;
		sim_block(s, id, k, true);
		sim_block(s, k, id, true);
	}
}

void sim_heal(struct sim *s)
{
	sim_logf(s, "HEAL");
	memset(s->blocked, 0, sizeof s->blocked);
}

void sim_set_faults(struct sim *s, const struct sim_faults *f)
{
	s->f = *f;
}

void sim_set_filter(struct sim *s, sim_filter_fn fn, void *arg)
{
	s->filter = fn;
	s->filter_arg = arg;
}

void sim_set_persist_hook(struct sim *s, sim_persist_hook_fn fn, void *arg)
{
	s->phook = fn;
	s->phook_arg = arg;
}

struct raft *sim_core(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	return n && n->state == SIM_RUNNING ? n->r : NULL;
}

enum sim_node_state sim_state(const struct sim *s, raft_id id)
{
	if (id < 1 || id > SIM_MAX_IDS)
		return SIM_ABSENT;
	return s->nodes[id - 1].state;
}

raft_id sim_leader(struct sim *s)
{
	raft_id best = 0;
	raft_term bt = 0;
	for (size_t k = 0; k < SIM_MAX_IDS; k++) {
		struct node *n = &s->nodes[k];
		if (n->state != SIM_RUNNING || raft_role(n->r) != RAFT_LEADER)
			continue;
		if (raft_current_term(n->r) >= bt) {
			bt = raft_current_term(n->r);
			best = n->id;
		}
	}
	return best;
}

raft_index sim_applied(const struct sim *s, raft_id id)
{
	if (id < 1 || id > SIM_MAX_IDS ||
	    s->nodes[id - 1].state != SIM_RUNNING)
		return 0;
	return s->nodes[id - 1].sm.applied;
}

raft_term sim_applied_term(const struct sim *s, raft_id id, raft_index i)
{
	if (id < 1 || id > SIM_MAX_IDS)
		return 0;
	const struct node *n = &s->nodes[id - 1];
	if (n->state != SIM_RUNNING || i == 0 || i > n->sm.applied)
		return 0;
	return n->sm.e[i - 1].term;
}

uint64_t sim_delivered(const struct sim *s, uint8_t type)
{
	return type <= RAFT_MSG_TYPE_MAX ? s->delivered[type] : 0;
}

uint64_t sim_now_ticks(const struct sim *s)
{
	return s->ticks;
}

int sim_propose(struct sim *s, raft_id id, raft_index *index,
		raft_term *term)
{
	struct node *n = node_of(s, id);
	if (!n || n->state != SIM_RUNNING)
		return RAFT_ENOTLEADER;
	uint8_t buf[80];
	uint64_t seq = ++s->next_payload;
	size_t len = 16 + (size_t)(sim_rand(s) % 48);
	put64(buf, s->o.seed);
	put64(buf + 8, seq);
	for (size_t k = 16; k < len; k++)
		buf[k] = (uint8_t)sim_rand(s);
	raft_index i = 0;
	raft_term t = 0;
	int rc = raft_propose(n->r, buf, (uint32_t)len, &i, &t);
	if (rc == 0)
		sim_logf(s, "n%llu PROPOSE #%llu -> index %llu term %llu",
			 (unsigned long long)id, (unsigned long long)seq,
			 (unsigned long long)i, (unsigned long long)t);
	if (index)
		*index = i;
	if (term)
		*term = t;
	drive(s, n);
	return rc;
}

int sim_read(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (!n || n->state != SIM_RUNNING)
		return RAFT_ENOTLEADER;
	uint64_t ctx = ++s->next_ctx;
	int rc = raft_read_index(n->r, ctx);
	if (rc == 0) {
		if (n->n_reads == n->cap_reads) {
			n->cap_reads = n->cap_reads ? n->cap_reads * 2 : 16;
			n->reads = xrealloc(n->reads,
					    n->cap_reads * sizeof *n->reads);
		}
		n->reads[n->n_reads++] = (struct pread){ctx, s->max_commit};
		sim_logf(s, "n%llu READ_INDEX ctx=%llu min=%llu",
			 (unsigned long long)id, (unsigned long long)ctx,
			 (unsigned long long)s->max_commit);
	}
	drive(s, n);
	return rc;
}

int sim_compact(struct sim *s, raft_id id)
{
	struct node *n = node_of(s, id);
	if (!n || n->state != SIM_RUNNING)
		return RAFT_EINVAL;
	for (struct job *j = n->jh; j; j = j->next)
		if (j->has_snap)
			return RAFT_EBUSY; /* keep the disk order simple */
	raft_index i = n->sm.applied;
	if (i <= n->d.snap.index)
		return 0;
	int rc = raft_compact(n->r, i);
	if (rc == 0) {
		struct disk *d = &n->d;
		uint64_t trailing = s->o.snapshot_trailing;
		if (!trailing) {
			struct raft_config c;
			raft_config_default(&c);
			trailing = c.snapshot_trailing;
		}
		free(d->snap_data);
		sm_serialize(&n->sm, i, &d->snap_data, &d->snap_len);
		d->snap.index = i;
		d->snap.term = n->sm.e[i - 1].term;
		d->snap.conf = *sm_conf_at(&n->sm, i);
		if (i > trailing)
			disk_drop_prefix(d, i - trailing);
		sim_logf(s, "n%llu COMPACT at %llu",
			 (unsigned long long)id, (unsigned long long)i);
	}
	drive(s, n);
	return rc;
}

int sim_conf(struct sim *s, raft_id leader, enum raft_conf_op op,
	     raft_id node)
{
	struct node *n = node_of(s, leader);
	if (!n || n->state != SIM_RUNNING || !node_of(s, node))
		return RAFT_EINVAL;
	char addr[32];
	snprintf(addr, sizeof addr, "sim://%llu", (unsigned long long)node);
	raft_index idx = 0;
	int rc = raft_propose_conf(n->r, op, node, addr, &idx);
	sim_logf(s, "n%llu CONF %s n%llu -> %d (index %llu)",
		 (unsigned long long)leader,
		 op == RAFT_CONF_ADD_LEARNER ? "add-learner"
		 : op == RAFT_CONF_PROMOTE   ? "promote"
					     : "remove",
		 (unsigned long long)node, rc, (unsigned long long)idx);
	drive(s, n);
	if (rc == 0 && op == RAFT_CONF_ADD_LEARNER &&
	    sim_state(s, node) != SIM_RUNNING)
		sim_restart(s, node);
	return rc;
}

int sim_transfer(struct sim *s, raft_id leader, raft_id target)
{
	struct node *n = node_of(s, leader);
	if (!n || n->state != SIM_RUNNING)
		return RAFT_ENOTLEADER;
	int rc = raft_transfer_leader(n->r, target);
	sim_logf(s, "n%llu TRANSFER to n%llu -> %d",
		 (unsigned long long)leader, (unsigned long long)target, rc);
	drive(s, n);
	return rc;
}

int sim_deliver_raw(struct sim *s, const struct raft_msg *m)
{
	struct node *n = node_of(s, m->to);
	if (!n || n->state != SIM_RUNNING)
		return RAFT_EINVAL;
	int rc = raft_step(n->r, m);
	drive(s, n);
	return rc;
}

/* ---- liveness ------------------------------------------------------------ */

int sim_check_liveness(struct sim *s, uint32_t max_ticks)
{
	if (s->failed)
		return -1;
	sim_logf(s, "LIVENESS: heal, restart all, faults off");
	sim_heal(s);
	s->filter = NULL;
	s->phook = NULL;
	struct sim_faults calm = {.delay_min = 1,
				  .delay_max = 20,
				  .disk_min = 1,
				  .disk_max = 20};
	s->f = calm;
	for (raft_id id = 1; id <= SIM_MAX_IDS; id++) {
		enum sim_node_state st = sim_state(s, id);
		if (st == SIM_CRASHED || st == SIM_STOPPED)
			if (sim_restart(s, id) != 0)
				return -1;
	}
	uint64_t deadline = s->ticks + max_ticks;
	raft_index idx = 0;
	raft_term term = 0;
	raft_id lead = 0, plead = 0;
	raft_term pterm = 0;
	char why[256] = "no leader elected";
	while (s->ticks < deadline) {
		lead = sim_leader(s);
		if (lead) {
			/* not yet proposed, or proposed under another
			 * leadership (the entry may be lost): propose */
			struct node *ln = node_of(s, lead);
			raft_term lt = raft_current_term(ln->r);
			if (!idx || lead != plead || lt != pterm) {
				raft_index i2;
				raft_term t2;
				if (sim_propose(s, lead, &i2, &t2) == 0) {
					idx = i2;
					term = t2;
					plead = lead;
					pterm = lt;
				}
			}
			if (idx) {
				struct raft_status st;
				raft_status(ln->r, &st);
				bool all = true;
				for (uint32_t k = 0; k < st.conf.n; k++) {
					if (st.conf.nodes[k].role != RAFT_VOTER)
						continue;
					raft_id v = st.conf.nodes[k].id;
					if (sim_applied_term(s, v, idx) !=
					    term) {
						all = false;
						snprintf(why, sizeof why,
							 "leader n%llu term "
							 "%llu: entry %llu not "
							 "applied on voter "
							 "n%llu (applied %llu)",
							 (unsigned long long)
								 lead,
							 (unsigned long long)
								 st.term,
							 (unsigned long long)idx,
							 (unsigned long long)v,
							 (unsigned long long)
								 sim_applied(
									 s,
									 v));
						break;
					}
				}
				if (all) {
					sim_logf(s, "LIVENESS ok at tick %llu",
						 (unsigned long long)s->ticks);
					return 0;
				}
			}
		}
		if (sim_run_ticks(s, 1) != 0)
			return -1;
	}
	sim_failf(s, "liveness: no fresh proposal committed on all voters "
		     "within %u ticks after faults stopped: %s",
		  max_ticks, why);
	return -1;
}
