/*
 * raft_bench.c — throughput of the pure Raft core (consensus/raft.h).
 *
 * Three cores in one process, a perfect instant network (messages are
 * handed over in FIFO order within the same loop turn) and no I/O (every
 * ready is acknowledged as persisted at once). Each loop turn the leader
 * gets a batch of proposals; the cluster is then pumped until quiet. We
 * print committed entries per second (counted on the leader's apply) for
 * 64-byte and 4 KiB payloads, and heap allocations per committed entry
 * made inside core calls (malloc/calloc/realloc are wrapped at link time
 * with -Wl,--wrap; the harness' own allocations are not counted).
 *
 *   raft_bench [--seconds S] [--batch B]
 *
 * The target is 500,000 64-byte entries/s; a reference line (the same
 * payload bytes memcpy'd three times per entry) helps compare machines.
 */
#include "consensus/raft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODES 3
#define TARGET_64B 500000.0

/* ---- allocation counting (explicit test hook: link-time wrapping) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t sz);
void *__wrap_realloc(void *p, size_t n);

static int g_counting;         /* counting on while inside the core */
static unsigned long g_allocs; /* allocations counted */

void *__wrap_malloc(size_t n)
{
	g_allocs += (unsigned long)g_counting;
	return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t sz)
{
	g_allocs += (unsigned long)g_counting;
	return __real_calloc(n, sz);
}

void *__wrap_realloc(void *p, size_t n)
{
	g_allocs += (unsigned long)g_counting;
	return __real_realloc(p, n);
}

#define CORE(call)                     \
	do {                           \
		g_counting = 1;        \
		call;                  \
		g_counting = 0;        \
	} while (0)

/* ---- the harness ------------------------------------------------------ */

/* Messages in flight: raft_msg copies and their bytes in one arena that
 * is reused every turn (grown rarely, outside counting). */
struct queue {
	struct raft_msg *m;
	size_t n, cap, head;
	uint8_t *buf;
	size_t used, bcap;
};

struct bench {
	struct raft *r[NODES];
	struct queue q;
	uint64_t applied_leader;
	raft_index applied[NODES];
	raft_id leader;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p) {
		fprintf(stderr, "raft_bench: out of memory\n");
		exit(1);
	}
	return p;
}

/* Reserve n bytes in the arena; returns an offset. */
static size_t arena(struct queue *q, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (q->used + n > q->bcap) {
		size_t c = q->bcap ? q->bcap : 1 << 20;
		while (q->used + n > c)
			c *= 2;
		q->buf = xrealloc(q->buf, c);
		q->bcap = c;
	}
	size_t off = q->used;
	q->used += n;
	return off;
}

/* Queue a deep copy of m. Pointers are stored as arena offsets and fixed
 * up at delivery (the arena may move while it grows). */
static void enqueue(struct queue *q, const struct raft_msg *m)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 1024;
		q->m = xrealloc(q->m, q->cap * sizeof *q->m);
	}
	struct raft_msg c = *m;
	if (m->n_entries) {
		size_t eo = arena(q, m->n_entries * sizeof(struct raft_entry));
		for (uint32_t i = 0; i < m->n_entries; i++) {
			struct raft_entry e = m->entries[i];
			if (e.len) {
				size_t d = arena(q, e.len);
				memcpy(q->buf + d, m->entries[i].data, e.len);
				e.data = (uint8_t *)(uintptr_t)d;
			}
			memcpy(q->buf + eo + i * sizeof e, &e, sizeof e);
		}
		c.entries = (struct raft_entry *)(uintptr_t)eo;
	}
	if (m->len) {
		size_t d = arena(q, m->len);
		memcpy(q->buf + d, m->data, m->len);
		c.data = (uint8_t *)(uintptr_t)d;
	}
	q->m[q->n++] = c;
}

/* Process every pending ready of node k: send, persist at once, apply. */
static int pump_node(struct bench *b, int k)
{
	int work = 0;
	struct raft_ready rd;
	for (;;) {
		bool has;
		CORE(has = raft_ready(b->r[k], &rd));
		if (!has)
			break;
		work = 1;
		for (size_t i = 0; i < rd.n_msgs; i++)
			enqueue(&b->q, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
			enqueue(&b->q, &rd.msgs_after_persist[i]);
		CORE(raft_persisted(b->r[k], rd.id));
		if (rd.n_committed) {
			b->applied[k] = rd.committed[rd.n_committed - 1].index;
			if ((raft_id)(k + 1) == b->leader)
				for (size_t i = 0; i < rd.n_committed; i++)
					b->applied_leader +=
						rd.committed[i].type ==
						RAFT_ENTRY_NORMAL;
		}
		CORE(raft_advance(b->r[k], &rd));
	}
	return work;
}

/* Deliver queued messages and pump readies until nothing moves. */
static void pump(struct bench *b)
{
	for (;;) {
		int work = 0;
		for (int k = 0; k < NODES; k++)
			work |= pump_node(b, k);
		if (b->q.head == b->q.n) {
			b->q.n = b->q.head = 0;
			b->q.used = 0;
			if (!work)
				return;
			continue;
		}
		while (b->q.head < b->q.n) {
			struct raft_msg m = b->q.m[b->q.head++];
			if (m.to < 1 || m.to > NODES)
				continue;
			if (m.n_entries) {
				m.entries = (struct raft_entry *)(b->q.buf +
					    (uintptr_t)m.entries);
				for (uint32_t i = 0; i < m.n_entries; i++)
					if (m.entries[i].len)
						m.entries[i].data =
							b->q.buf +
							(uintptr_t)m.entries[i]
								.data;
			}
			if (m.len)
				m.data = b->q.buf + (uintptr_t)m.data;
			CORE(raft_step(b->r[m.to - 1], &m));
		}
	}
}

static int setup(struct bench *b)
{
	memset(b, 0, sizeof *b);
	struct raft_conf conf = {.n = NODES};
	for (int k = 0; k < NODES; k++) {
		conf.nodes[k].id = (raft_id)(k + 1);
		conf.nodes[k].role = RAFT_VOTER;
		snprintf(conf.nodes[k].addr, RAFT_ADDR_MAX, "bench://%d", k + 1);
	}
	for (int k = 0; k < NODES; k++) {
		struct raft_config c;
		raft_config_default(&c);
		c.id = (raft_id)(k + 1);
		c.seed = 42 + (uint64_t)k;
		c.max_uncommitted_bytes = 1ULL << 30;
		b->r[k] = raft_new(&c);
		if (!b->r[k] || raft_bootstrap(b->r[k], &conf) != 0)
			return -1;
	}
	/* only node 1 ticks until it leads: a deterministic election */
	for (int t = 0; t < 1000 && raft_role(b->r[0]) != RAFT_LEADER; t++) {
		raft_tick(b->r[0]);
		pump(b);
	}
	if (raft_role(b->r[0]) != RAFT_LEADER)
		return -1;
	b->leader = 1;
	return 0;
}

static void teardown(struct bench *b)
{
	for (int k = 0; k < NODES; k++)
		raft_free(b->r[k]);
	free(b->q.m);
	free(b->q.buf);
}

struct result {
	double rate;
	double allocs_per_entry;
	uint64_t entries;
	double secs;
};

/* Push payload-byte entries through the leader for about `secs`. */
static int run(uint32_t payload, int batch, double secs, struct result *res)
{
	struct bench b;
	if (setup(&b) != 0) {
		fprintf(stderr, "raft_bench: no leader elected\n");
		return -1;
	}
	uint8_t *data = malloc(payload);
	if (!data)
		return -1;
	memset(data, 0xab, payload);
	/* warm up, then measure */
	uint64_t a0 = 0, e0 = 0;
	double t0 = 0;
	int warm = 1;
	unsigned long turns = 0;
	raft_index compacted = 0;
	for (;;) {
		for (int i = 0; i < batch; i++) {
			int rc;
			CORE(rc = raft_propose(b.r[0], data, payload, NULL,
					       NULL));
			if (rc != 0) {
				fprintf(stderr,
					"raft_bench: propose failed: %d\n",
					rc);
				free(data);
				teardown(&b);
				return -1;
			}
		}
		pump(&b);
		if (++turns % 16 == 0)
			for (int k = 0; k < NODES; k++) {
				CORE(raft_tick(b.r[k]));
				pump_node(&b, k);
			}
		pump(&b);
		/* keep memory bounded: compact every node now and then */
		if (b.applied[0] > compacted + 16384) {
			for (int k = 0; k < NODES; k++)
				CORE(raft_compact(b.r[k], b.applied[k]));
			compacted = b.applied[0];
		}
		double t = now_s();
		if (warm && b.applied_leader >= 20000) {
			warm = 0;
			t0 = t;
			a0 = g_allocs;
			e0 = b.applied_leader;
		} else if (!warm && t - t0 >= secs) {
			res->entries = b.applied_leader - e0;
			res->secs = t - t0;
			res->rate = (double)res->entries / res->secs;
			res->allocs_per_entry =
				res->entries ? (double)(g_allocs - a0) /
						       (double)res->entries
					     : 0;
			/* sanity: the followers apply too (they learn the
			 * commit index one round later) */
			pump(&b);
			for (int k = 1; k < NODES; k++)
				if (b.applied[k] + (raft_index)batch * 4 <
				    b.applied[0])
					printf("  WARNING: follower %d applied "
					       "%llu, leader %llu\n",
					       k + 1,
					       (unsigned long long)b.applied[k],
					       (unsigned long long)
						       b.applied[0]);
			break;
		}
		if (raft_role(b.r[0]) != RAFT_LEADER) {
			fprintf(stderr, "raft_bench: leader lost\n");
			free(data);
			teardown(&b);
			return -1;
		}
	}
	free(data);
	teardown(&b);
	return 0;
}

/* Reference: memcpy each payload three times, as the minimum any
 * replicated log must do; entries/s of that loop. */
static double reference(uint32_t payload, double secs)
{
	uint8_t *src = malloc(payload), *dst = malloc((size_t)payload * 3);
	if (!src || !dst) {
		free(src);
		free(dst);
		return 0;
	}
	memset(src, 1, payload);
	uint64_t n = 0;
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < 1024; i++, n++)
			for (int k = 0; k < 3; k++) {
				memcpy(dst + (size_t)k * payload, src, payload);
				src[0] ^= dst[(size_t)k * payload + 1];
			}
		t = now_s();
	} while (t - t0 < secs);
	free(src);
	free(dst);
	return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
	double secs = 2.0;
	int batch = 128;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			batch = atoi(argv[i + 1]);
	}
	if (secs <= 0 || batch <= 0) {
		fprintf(stderr, "usage: raft_bench [--seconds S] [--batch B]\n");
		return 2;
	}
	printf("raft_bench: %d in-process cores, instant network, no I/O, "
	       "batch %d\n",
	       NODES, batch);
	static const uint32_t sizes[] = {64, 4096};
	double rate64 = 0;
	for (size_t k = 0; k < 2; k++) {
		struct result res;
		if (run(sizes[k], batch, secs, &res) != 0)
			return 1;
		printf("payload %4u B: %10.0f entries/s committed "
		       "(%8.1f MiB/s), %.2f allocs/entry [%llu entries in "
		       "%.2f s]\n",
		       sizes[k], res.rate,
		       res.rate * sizes[k] / (1024.0 * 1024.0),
		       res.allocs_per_entry, (unsigned long long)res.entries,
		       res.secs);
		printf("  reference (3x memcpy per entry): %.0f entries/s\n",
		       reference(sizes[k], secs / 4));
		if (sizes[k] == 64)
			rate64 = res.rate;
	}
	printf("target: %.0f 64-byte entries/s; measured %.0f (%.2fx): %s\n",
	       TARGET_64B, rate64, rate64 / TARGET_64B,
	       rate64 >= TARGET_64B ? "MEETS TARGET" : "BELOW TARGET");
	return 0;
}
