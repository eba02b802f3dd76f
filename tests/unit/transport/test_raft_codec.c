/*
 * test_raft_codec.c — the Raft message codec round-trips every message type
 * exactly and rejects every malformed input without crashing.
 * Randomized tests print their seed; SEED=n replays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"

/* xorshift64*: a local PRNG so the test replays from its seed. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static uint64_t test_seed(void)
{
	const char *e = getenv("SEED");
	uint64_t seed = e ? strtoull(e, NULL, 0) : 0x5eedc0dec0ffeeull;
	if (!seed)
		seed = 1;
	printf("seed=%llu (replay with SEED=%llu)\n", (unsigned long long)seed,
	       (unsigned long long)seed);
	return seed;
}

/* A message of `type` with every field set and, where given, entries,
 * a configuration and chunk data (storage in *store). */
struct msg_store {
	struct raft_entry ents[5];
	uint8_t data[5][40];
	uint8_t chunk[300];
};

static void fill_msg(struct raft_msg *m, uint8_t type, struct msg_store *s,
		     uint64_t *rng)
{
	memset(m, 0, sizeof *m);
	m->type = type;
	m->from = rng_next(rng);
	m->to = rng_next(rng);
	m->term = rng_next(rng);
	m->prev_index = rng_next(rng);
	m->prev_term = rng_next(rng);
	m->commit = rng_next(rng);
	m->reject = rng_next(rng) & 1;
	m->index = rng_next(rng);
	m->hint_index = rng_next(rng);
	m->hint_term = rng_next(rng);
	m->ctx = rng_next(rng);
	m->transfer = rng_next(rng) & 1;
	m->offset = rng_next(rng);
	m->done = rng_next(rng) & 1;

	m->n_entries = (uint32_t)(rng_next(rng) % 6);
	m->entries = m->n_entries ? s->ents : NULL;
	for (uint32_t i = 0; i < m->n_entries; i++) {
		struct raft_entry *e = &s->ents[i];
		e->term = rng_next(rng);
		e->index = rng_next(rng);
		e->type = (uint8_t)(rng_next(rng) % 3);
		e->len = (uint32_t)(rng_next(rng) % sizeof s->data[i]);
		for (uint32_t k = 0; k < e->len; k++)
			s->data[i][k] = (uint8_t)rng_next(rng);
		e->data = e->len ? s->data[i] : NULL;
	}

	m->snap.index = rng_next(rng);
	m->snap.term = rng_next(rng);
	m->snap.conf.n = (uint32_t)(rng_next(rng) % (RAFT_MAX_NODES + 1));
	for (uint32_t i = 0; i < m->snap.conf.n; i++) {
		struct raft_node *nd = &m->snap.conf.nodes[i];
		nd->id = rng_next(rng);
		nd->role = (uint8_t)(rng_next(rng) & 1);
		size_t alen = rng_next(rng) % RAFT_ADDR_MAX; /* 0..127 */
		for (size_t k = 0; k < alen; k++)
			nd->addr[k] = (char)('a' + rng_next(rng) % 26);
		nd->addr[alen] = '\0';
	}

	m->len = (uint32_t)(rng_next(rng) % sizeof s->chunk);
	for (uint32_t k = 0; k < m->len; k++)
		s->chunk[k] = (uint8_t)rng_next(rng);
	m->data = m->len ? s->chunk : NULL;
}

/* Field-by-field equality (data compared by content). */
static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->from, b->from);
	assert_int_equal(a->to, b->to);
	assert_int_equal(a->term, b->term);
	assert_int_equal(a->prev_index, b->prev_index);
	assert_int_equal(a->prev_term, b->prev_term);
	assert_int_equal(a->commit, b->commit);
	assert_int_equal(a->reject, b->reject);
	assert_int_equal(a->index, b->index);
	assert_int_equal(a->hint_index, b->hint_index);
	assert_int_equal(a->hint_term, b->hint_term);
	assert_int_equal(a->ctx, b->ctx);
	assert_int_equal(a->transfer, b->transfer);
	assert_int_equal(a->offset, b->offset);
	assert_int_equal(a->done, b->done);
	assert_int_equal(a->n_entries, b->n_entries);
	for (uint32_t i = 0; i < a->n_entries; i++) {
		const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
		assert_int_equal(x->term, y->term);
		assert_int_equal(x->index, y->index);
		assert_int_equal(x->type, y->type);
		assert_int_equal(x->len, y->len);
		if (x->len)
			assert_memory_equal(x->data, y->data, x->len);
		else
			assert_null(y->data);
	}
	assert_int_equal(a->snap.index, b->snap.index);
	assert_int_equal(a->snap.term, b->snap.term);
	assert_int_equal(a->snap.conf.n, b->snap.conf.n);
	for (uint32_t i = 0; i < a->snap.conf.n; i++) {
		const struct raft_node *x = &a->snap.conf.nodes[i];
		const struct raft_node *y = &b->snap.conf.nodes[i];
		assert_int_equal(x->id, y->id);
		assert_int_equal(x->role, y->role);
		assert_string_equal(x->addr, y->addr);
	}
	assert_int_equal(a->len, b->len);
	if (a->len)
		assert_memory_equal(a->data, b->data, a->len);
	else
		assert_null(b->data);
}

/* Encode m into a fresh buffer; the size call and the real call agree. */
static uint8_t *encode(const struct raft_msg *m, size_t *len)
{
	size_t need = raft_msg_encode(m, NULL, 0);
	assert_true(need > 0);
	uint8_t *buf = malloc(need);
	assert_non_null(buf);
	assert_int_equal(raft_msg_encode(m, buf, need), need);
	*len = need;
	return buf;
}

static void every_message_type_round_trips_with_all_fields(void **state)
{
	(void)state;
	uint64_t rng = test_seed();
	for (int rep = 0; rep < 50; rep++) {
		for (uint8_t t = 1; t <= RAFT_MSG_TYPE_MAX; t++) {
			struct msg_store s;
			struct raft_msg m, out;
			struct raft_entry *ents;
			size_t len;
			fill_msg(&m, t, &s, &rng);
			uint8_t *buf = encode(&m, &len);
			assert_int_equal(raft_msg_decode(buf, len, &out, &ents),
					 0);
			assert_msg_equal(&m, &out);
			assert_ptr_equal(out.entries, ents);
			free(ents);
			free(buf);
		}
	}
}

static void full_snapshot_chunk_and_max_conf_round_trip(void **state)
{
	(void)state;
	static struct msg_store s;
	static uint8_t big[1 << 20];
	struct raft_msg m, out;
	struct raft_entry *ents;
	uint64_t rng = 7;
	size_t len;

	fill_msg(&m, RAFT_MSG_SNAPSHOT, &s, &rng);
	m.n_entries = 0;
	m.entries = NULL;
	m.snap.conf.n = RAFT_MAX_NODES;
	for (int i = 0; i < RAFT_MAX_NODES; i++) {
		memset(m.snap.conf.nodes[i].addr, 'x', RAFT_ADDR_MAX - 1);
		m.snap.conf.nodes[i].addr[RAFT_ADDR_MAX - 1] = '\0';
		m.snap.conf.nodes[i].id = (uint64_t)i + 1;
	}
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 31);
	m.len = sizeof big;
	m.data = big;
	uint8_t *buf = encode(&m, &len);
	assert_int_equal(raft_msg_decode(buf, len, &out, &ents), 0);
	assert_null(ents);
	assert_msg_equal(&m, &out);
	/* Chunk data is borrowed from the buffer, not copied. */
	assert_true(out.data >= buf && out.data + out.len <= buf + len);
	free(buf);
}

static void heartbeat_without_entries_decodes_null_entries(void **state)
{
	(void)state;
	struct raft_msg m = { .type = RAFT_MSG_APPEND, .from = 1, .to = 2,
			      .term = 3, .commit = 4 };
	struct raft_msg out;
	struct raft_entry *ents = (struct raft_entry *)&out; /* poison */
	size_t len;
	uint8_t *buf = encode(&m, &len);
	assert_int_equal(raft_msg_decode(buf, len, &out, &ents), 0);
	assert_null(ents);
	assert_null(out.entries);
	assert_int_equal(out.n_entries, 0);
	assert_null(out.data);
	assert_msg_equal(&m, &out);
	free(buf);
}

static void encode_into_short_buffer_writes_nothing_past_cap(void **state)
{
	(void)state;
	struct msg_store s;
	struct raft_msg m;
	uint64_t rng = 99;
	fill_msg(&m, RAFT_MSG_APPEND, &s, &rng);
	size_t need = raft_msg_encode(&m, NULL, 0);
	uint8_t *buf = malloc(need + 16);
	assert_non_null(buf);
	for (size_t cap = 0; cap < need; cap += 7) {
		memset(buf, 0xAB, need + 16);
		assert_int_equal(raft_msg_encode(&m, buf, cap), need);
		for (size_t i = cap; i < need + 16; i++)
			assert_int_equal(buf[i], 0xAB);
	}
	free(buf);
}

static void encode_refuses_invalid_messages(void **state)
{
	(void)state;
	uint8_t buf[4096];
	struct raft_msg m = { .type = RAFT_MSG_VOTE };
	assert_true(raft_msg_encode(&m, buf, sizeof buf) > 0);

	m.type = 0;
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
	m.type = RAFT_MSG_TYPE_MAX + 1;
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
	m.type = RAFT_MSG_APPEND;
	m.n_entries = 2; /* no array */
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
	m.n_entries = 0;
	m.snap.conf.n = RAFT_MAX_NODES + 1;
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
	m.snap.conf.n = 1;
	memset(m.snap.conf.nodes[0].addr, 'a', RAFT_ADDR_MAX); /* no NUL */
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
	m.snap.conf.n = 0;
	m.len = 5; /* no data */
	assert_int_equal(raft_msg_encode(&m, buf, sizeof buf), 0);
}

/* Every strict prefix of a valid encoding is rejected, and so is any
 * extra trailing byte. */
static void decoder_rejects_every_truncation_and_trailing_bytes(void **state)
{
	(void)state;
	uint64_t rng = test_seed();
	for (uint8_t t = 1; t <= RAFT_MSG_TYPE_MAX; t++) {
		struct msg_store s;
		struct raft_msg m, out;
		struct raft_entry *ents;
		size_t len;
		fill_msg(&m, t, &s, &rng);
		uint8_t *buf = encode(&m, &len);
		for (size_t cut = 0; cut < len; cut++) {
			/* A copy of exactly `cut` bytes: ASan sees any
			 * read past it. */
			uint8_t *p = malloc(cut ? cut : 1);
			assert_non_null(p);
			memcpy(p, buf, cut);
			ents = (struct raft_entry *)p; /* poison */
			assert_int_equal(raft_msg_decode(p, cut, &out, &ents),
					 RAFT_EINVAL);
			assert_null(ents);
			free(p);
		}
		uint8_t *longer = malloc(len + 1);
		assert_non_null(longer);
		memcpy(longer, buf, len);
		longer[len] = 0;
		assert_int_equal(raft_msg_decode(longer, len + 1, &out, &ents),
				 RAFT_EINVAL);
		assert_null(ents);
		free(longer);
		free(buf);
	}
	struct raft_msg out;
	struct raft_entry *ents;
	assert_int_equal(raft_msg_decode(NULL, 0, &out, &ents), RAFT_EINVAL);
}

/* Offsets of fields in the fixed layout (see codec.c). */
#define OFF_REJECT (1 + 6 * 8)
#define OFF_TRANSFER (OFF_REJECT + 1 + 4 * 8)
#define OFF_DONE (OFF_TRANSFER + 1 + 8)
#define OFF_NENTRIES (OFF_DONE + 1)

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void decoder_rejects_out_of_range_fields(void **state)
{
	(void)state;
	struct raft_entry e = { .term = 1, .index = 2, .type = 0, .len = 3,
				.data = (uint8_t *)"abc" };
	struct raft_msg m = { .type = RAFT_MSG_APPEND, .n_entries = 1,
			      .entries = &e };
	m.snap.conf.n = 1;
	strcpy(m.snap.conf.nodes[0].addr, "tcp://x:1");
	struct raft_msg out;
	struct raft_entry *ents;
	size_t len;
	uint8_t *good = encode(&m, &len);
	uint8_t *b = malloc(len);
	assert_non_null(b);
	assert_int_equal(raft_msg_decode(good, len, &out, &ents), 0);
	free(ents);

	/* message type 0 and RAFT_MSG_TYPE_MAX + 1 */
	uint8_t bad_types[] = { 0, RAFT_MSG_TYPE_MAX + 1, 0xff };
	for (size_t i = 0; i < sizeof bad_types; i++) {
		memcpy(b, good, len);
		b[0] = bad_types[i];
		assert_int_equal(raft_msg_decode(b, len, &out, &ents),
				 RAFT_EINVAL);
	}
	/* bools must be 0 or 1 */
	size_t bools[] = { OFF_REJECT, OFF_TRANSFER, OFF_DONE };
	for (size_t i = 0; i < 3; i++) {
		memcpy(b, good, len);
		b[bools[i]] = 2;
		assert_int_equal(raft_msg_decode(b, len, &out, &ents),
				 RAFT_EINVAL);
	}
	/* n_entries larger than the bytes can hold (no huge allocation) */
	uint32_t counts[] = { 2, 1000, 0xffffffffu };
	for (size_t i = 0; i < 3; i++) {
		memcpy(b, good, len);
		put32(b + OFF_NENTRIES, counts[i]);
		assert_int_equal(raft_msg_decode(b, len, &out, &ents),
				 RAFT_EINVAL);
		assert_null(ents);
	}
	/* entry type out of range */
	size_t off_etype = OFF_NENTRIES + 4 + 16;
	memcpy(b, good, len);
	b[off_etype] = RAFT_ENTRY_CONF + 1;
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	/* entry length past the end */
	memcpy(b, good, len);
	put32(b + off_etype + 1, 0xfffffff0u);
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);

	size_t off_confn = off_etype + 1 + 4 + 3 + 16;
	/* conf.n above RAFT_MAX_NODES */
	memcpy(b, good, len);
	put32(b + off_confn, RAFT_MAX_NODES + 1);
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	/* node role not voter/learner */
	size_t off_role = off_confn + 4 + 8;
	memcpy(b, good, len);
	b[off_role] = 2;
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	/* address length >= RAFT_ADDR_MAX */
	memcpy(b, good, len);
	b[off_role + 1] = RAFT_ADDR_MAX;
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	/* NUL inside the address */
	memcpy(b, good, len);
	b[off_role + 2 + 3] = '\0';
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	/* chunk length past the end */
	memcpy(b, good, len);
	put32(b + len - 4, 1);
	assert_int_equal(raft_msg_decode(b, len, &out, &ents), RAFT_EINVAL);
	assert_null(ents);

	free(b);
	free(good);
}

/* Random corruption: decode never crashes (ASan), and whatever it accepts
 * re-encodes to exactly the same bytes (the format is canonical, so the
 * decoder accepted nothing it would not produce itself). */
static void random_corruption_is_rejected_or_reencodes_identically(void **state)
{
	(void)state;
	uint64_t rng = test_seed();
	int accepted = 0, rejected = 0;
	for (int iter = 0; iter < 20000; iter++) {
		struct msg_store s;
		struct raft_msg m, out;
		struct raft_entry *ents;
		size_t len;
		fill_msg(&m, (uint8_t)(1 + rng_next(&rng) % RAFT_MSG_TYPE_MAX),
			 &s, &rng);
		uint8_t *buf = encode(&m, &len);
		int flips = 1 + (int)(rng_next(&rng) % 4);
		for (int f = 0; f < flips; f++)
			buf[rng_next(&rng) % len] ^=
				(uint8_t)(1 + rng_next(&rng) % 255);
		size_t cut = len;
		if (rng_next(&rng) % 4 == 0)
			cut = rng_next(&rng) % (len + 1);
		int rc = raft_msg_decode(buf, cut, &out, &ents);
		if (rc == 0) {
			accepted++;
			size_t n2 = raft_msg_encode(&out, NULL, 0);
			assert_int_equal(n2, cut);
			uint8_t *again = malloc(n2);
			assert_non_null(again);
			raft_msg_encode(&out, again, n2);
			assert_memory_equal(again, buf, n2);
			free(again);
			free(ents);
		} else {
			rejected++;
			assert_int_equal(rc, RAFT_EINVAL);
			assert_null(ents);
		}
		free(buf);
	}
	printf("corruption: %d accepted (valid re-encodings), %d rejected\n",
	       accepted, rejected);
	assert_true(rejected > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_message_type_round_trips_with_all_fields),
		cmocka_unit_test(full_snapshot_chunk_and_max_conf_round_trip),
		cmocka_unit_test(heartbeat_without_entries_decodes_null_entries),
		cmocka_unit_test(encode_into_short_buffer_writes_nothing_past_cap),
		cmocka_unit_test(encode_refuses_invalid_messages),
		cmocka_unit_test(decoder_rejects_every_truncation_and_trailing_bytes),
		cmocka_unit_test(decoder_rejects_out_of_range_fields),
		cmocka_unit_test(random_corruption_is_rejected_or_reencodes_identically),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
