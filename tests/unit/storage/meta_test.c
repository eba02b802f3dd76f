/*
 * meta_test.c — metadata store: get/batch/commit, prefix iterators,
 * dump/restore.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/meta.h"
#include "storage/util.h"
#include "tests/unit/storage/testutil.h"

#include <errno.h>

struct fx {
	char *tmp;
	char *path;
	struct meta *m;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->tmp = tu_mkdtemp();
	f->path = tu_join(f->tmp, "meta");
	if (meta_open(f->path, &f->m, NULL, 0) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	meta_close(f->m);
	free(f->path);
	tu_rmtree(f->tmp);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	meta_close(f->m);
	f->m = NULL;
	assert_int_equal(meta_open(f->path, &f->m, NULL, 0), 0);
}

static void put1(struct meta *m, const char *k, const char *v)
{
	struct meta_batch *b = meta_batch_new();
	meta_batch_put(b, k, strlen(k), v, strlen(v));
	assert_int_equal(meta_commit(m, b, true), 0);
	meta_batch_free(b);
}

static void assert_value(struct meta *m, const char *k, const char *want)
{
	void *v = NULL;
	size_t vl = 0;
	if (!want) {
		assert_int_equal(meta_get(m, k, strlen(k), &v, &vl), -ENOENT);
		return;
	}
	assert_int_equal(meta_get(m, k, strlen(k), &v, &vl), 0);
	assert_int_equal(vl, strlen(want));
	assert_memory_equal(v, want, vl);
	free(v);
}

/* meta_dump() sink collecting into a growable buffer. */
struct sink {
	uint8_t *buf;
	size_t len, cap;
	int calls;
	int fail_at; /* return -EPIPE on this call (1-based), 0: never */
	struct meta *inject; /* write a key during the first call */
};

static int sink_write(void *ctx, const void *p, size_t n)
{
	struct sink *s = ctx;
	s->calls++;
	if (s->fail_at && s->calls == s->fail_at)
		return -EPIPE;
	if (s->inject && s->calls == 1)
		put1(s->inject, "zzz-late", "written during the dump");
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

static void dump(struct meta *m, struct sink *s)
{
	memset(s, 0, sizeof *s);
	assert_int_equal(meta_dump(m, sink_write, s), 0);
}

static void get_put_delete_through_batches(void **state)
{
	struct fx *f = *state;
	assert_value(f->m, "k1", NULL);
	struct meta_batch *b = meta_batch_new();
	meta_batch_put(b, "k1", 2, "v1", 2);
	meta_batch_put(b, "k2", 2, "v2", 2);
	meta_batch_put(b, "k1", 2, "v1b", 3); /* later op wins */
	meta_batch_put(b, "empty", 5, "", 0);
	assert_int_equal(meta_batch_count(b), 4);
	/* nothing visible before commit */
	assert_value(f->m, "k1", NULL);
	assert_int_equal(meta_commit(f->m, b, true), 0);
	assert_value(f->m, "k1", "v1b");
	assert_value(f->m, "k2", "v2");
	assert_value(f->m, "empty", "");
	meta_batch_clear(b);
	assert_int_equal(meta_batch_count(b), 0);
	meta_batch_delete(b, "k2", 2);
	meta_batch_put(b, "k3", 2, "v3", 2);
	assert_int_equal(meta_commit(f->m, b, false), 0);
	meta_batch_free(b);
	reopen(f);
	assert_value(f->m, "k1", "v1b");
	assert_value(f->m, "k2", NULL);
	assert_value(f->m, "k3", "v3");
	/* binary keys with NUL bytes */
	struct meta_batch *b2 = meta_batch_new();
	const uint8_t bk[] = {'I', 0, 0, 0, 0, 0, 0, 0, 1};
	meta_batch_put(b2, bk, sizeof bk, "\0\1", 2);
	assert_int_equal(meta_commit(f->m, b2, true), 0);
	meta_batch_free(b2);
	void *v;
	size_t vl;
	assert_int_equal(meta_get(f->m, bk, sizeof bk, &v, &vl), 0);
	assert_int_equal(vl, 2);
	assert_memory_equal(v, "\0\1", 2);
	free(v);
	assert_int_equal(meta_get(f->m, bk, sizeof bk - 1, &v, &vl), -ENOENT);
}

/* Collects the keys an iterator yields, joined by ','. */
static void collect(struct meta_iter *it, char *out, size_t cap)
{
	out[0] = '\0';
	for (; meta_iter_valid(it); meta_iter_next(it)) {
		size_t kl, vl;
		const char *k = meta_iter_key(it, &kl);
		meta_iter_value(it, &vl);
		size_t used = strlen(out);
		snprintf(out + used, cap - used, "%s%.*s", used ? "," : "",
		         (int)kl, k);
	}
	assert_int_equal(meta_iter_status(it), 0);
}

static void prefix_iterator_yields_only_its_keys_in_order(void **state)
{
	struct fx *f = *state;
	const char *keys[] = {"c1", "b3", "a1", "b1", "b2", "ba", "b"};
	for (size_t i = 0; i < 7; i++)
		put1(f->m, keys[i], keys[i]);
	struct meta_iter *it;
	char got[256];
	assert_int_equal(meta_iter_new(f->m, "b", 1, &it), 0);
	collect(it, got, sizeof got);
	assert_string_equal(got, "b,b1,b2,b3,ba");
	meta_iter_seek(it, "b2", 2);
	assert_true(meta_iter_valid(it));
	size_t kl, vl;
	const char *k = meta_iter_key(it, &kl);
	assert_int_equal(kl, 2);
	assert_memory_equal(k, "b2", 2);
	const char *v = meta_iter_value(it, &vl);
	assert_memory_equal(v, "b2", 2);
	meta_iter_seek(it, "a", 1); /* before the prefix: clamps to it */
	collect(it, got, sizeof got);
	assert_string_equal(got, "b,b1,b2,b3,ba");
	meta_iter_seek(it, "bz", 2); /* past the last key of the prefix */
	assert_false(meta_iter_valid(it));
	meta_iter_seek(it, "d", 1); /* past every key */
	assert_false(meta_iter_valid(it));
	meta_iter_free(it);
	assert_int_equal(meta_iter_new(f->m, NULL, 0, &it), 0);
	collect(it, got, sizeof got);
	assert_string_equal(got, "a1,b,b1,b2,b3,ba,c1");
	meta_iter_free(it);
	assert_int_equal(meta_iter_new(f->m, "x", 1, &it), 0);
	assert_false(meta_iter_valid(it));
	meta_iter_free(it);
}

static void iterator_sees_a_consistent_view(void **state)
{
	struct fx *f = *state;
	put1(f->m, "p1", "old");
	put1(f->m, "p3", "old");
	struct meta_iter *it;
	assert_int_equal(meta_iter_new(f->m, "p", 1, &it), 0);
	put1(f->m, "p2", "new");
	put1(f->m, "p3", "new");
	char got[64];
	meta_iter_seek(it, "p", 1);
	size_t vl;
	meta_iter_next(it);
	assert_true(meta_iter_valid(it));
	const char *v = meta_iter_value(it, &vl);
	assert_memory_equal(v, "old", 3); /* p3 as of creation */
	meta_iter_seek(it, "p", 1);
	collect(it, got, sizeof got);
	assert_string_equal(got, "p1,p3");
	meta_iter_free(it);
}

/* Fills m with n keys "key%06u" → a value of vlen bytes, in an order
 * chosen by rng, plus a few keys that are then deleted. */
static void fill(struct meta *m, unsigned n, size_t vlen, uint64_t rng)
{
	uint8_t *val = malloc(vlen ? vlen : 1);
	unsigned *order = malloc(n * sizeof *order);
	for (unsigned i = 0; i < n; i++)
		order[i] = i;
	for (unsigned i = n; i > 1; i--) {
		unsigned j = (unsigned)(tu_rand(&rng) % i), t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	struct meta_batch *b = meta_batch_new();
	for (unsigned i = 0; i < n; i++) {
		char k[32];
		int kl = snprintf(k, sizeof k, "key%06u", order[i]);
		memset(val, (int)(order[i] & 0xff), vlen);
		meta_batch_put(b, k, (size_t)kl, val, vlen);
		meta_batch_put(b, "tmp", 3, "x", 1);
		meta_batch_delete(b, "tmp", 3);
		if (meta_batch_count(b) > 300) {
			assert_int_equal(meta_commit(m, b, false), 0);
			meta_batch_clear(b);
		}
	}
	assert_int_equal(meta_commit(m, b, true), 0);
	meta_batch_free(b);
	free(order);
	free(val);
}

static void dump_is_deterministic_and_restore_round_trips(void **state)
{
	struct fx *f = *state;
	uint64_t seed = tu_seed("meta_dump");
	fill(f->m, 2000, 100, seed);
	char *p2 = tu_join(f->tmp, "meta2");
	struct meta *m2;
	assert_int_equal(meta_open(p2, &m2, NULL, 0), 0);
	fill(m2, 2000, 100, seed + 1); /* same contents, other order */
	struct sink a, b;
	dump(f->m, &a);
	dump(m2, &b);
	assert_true(a.calls > 1); /* > 64 KiB: streamed in pieces */
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	assert_memory_equal(a.buf, "SFSMETA1", 8);
	free(b.buf);

	/* restore into a store with other contents: exactly A afterwards */
	char *p3 = tu_join(f->tmp, "meta3");
	struct meta *m3;
	assert_int_equal(meta_open(p3, &m3, NULL, 0), 0);
	put1(m3, "aaa-other", "gone after restore");
	put1(m3, "key000005", "overwritten");
	put1(m3, "zzz-other", "gone after restore");
	assert_int_equal(meta_restore(m3, a.buf, a.len), 0);
	assert_value(m3, "aaa-other", NULL);
	assert_value(m3, "zzz-other", NULL);
	meta_close(m3);
	assert_int_equal(meta_open(p3, &m3, NULL, 0), 0);
	dump(m3, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	free(b.buf);
	meta_close(m3);
	meta_close(m2);
	free(a.buf);
	free(p2);
	free(p3);
}

static void empty_store_dump_restores_to_empty(void **state)
{
	struct fx *f = *state;
	struct sink a;
	dump(f->m, &a);
	assert_int_equal(a.len, 8 + 13);
	put1(f->m, "k", "v");
	assert_int_equal(meta_restore(f->m, a.buf, a.len), 0);
	assert_value(f->m, "k", NULL);
	struct meta_iter *it;
	assert_int_equal(meta_iter_new(f->m, NULL, 0, &it), 0);
	assert_false(meta_iter_valid(it));
	meta_iter_free(it);
	free(a.buf);
}

static void malformed_dump_is_refused_and_changes_nothing(void **state)
{
	struct fx *f = *state;
	put1(f->m, "a", "1");
	put1(f->m, "b", "2");
	struct sink a;
	dump(f->m, &a);
	put1(f->m, "c", "3"); /* the store now differs from the dump */
	uint8_t *bad = malloc(a.len);
	/* truncated */
	assert_int_equal(meta_restore(f->m, a.buf, a.len - 1), -EBADMSG);
	assert_int_equal(meta_restore(f->m, a.buf, 5), -EBADMSG);
	assert_int_equal(meta_restore(f->m, NULL, 0), -EBADMSG);
	/* any flipped byte */
	for (size_t i = 0; i < a.len; i++) {
		memcpy(bad, a.buf, a.len);
		bad[i] ^= 0x01;
		assert_int_equal(meta_restore(f->m, bad, a.len), -EBADMSG);
	}
	/* records out of order, with a valid checksum: swap keys "a" and "b"
	 * (magic, then 'R' klen vlen "a" "1", then 'R' klen vlen "b" "2") */
	memcpy(bad, a.buf, a.len);
	assert_int_equal(bad[8 + 9], 'a');
	bad[8 + 9] = 'b';
	assert_int_equal(bad[8 + 9 + 1 + 1 + 9], 'b');
	bad[8 + 9 + 1 + 1 + 9] = 'a';
	stor_put_be32(bad + a.len - 4, stor_crc32c(0, bad, a.len - 4));
	assert_int_equal(meta_restore(f->m, bad, a.len), -EBADMSG);
	assert_value(f->m, "c", "3");
	assert_value(f->m, "a", "1");
	free(bad);
	free(a.buf);
}

static void dump_stops_on_callback_error_and_ignores_later_writes(void **state)
{
	struct fx *f = *state;
	fill(f->m, 2000, 100, 7);
	struct sink s = {.fail_at = 2};
	assert_int_equal(meta_dump(f->m, sink_write, &s), -EPIPE);
	assert_int_equal(s.calls, 2);
	free(s.buf);
	/* a write during the dump is not in it: it reads one snapshot */
	memset(&s, 0, sizeof s);
	s.inject = f->m;
	assert_int_equal(meta_dump(f->m, sink_write, &s), 0);
	assert_value(f->m, "zzz-late", "written during the dump");
	char *p2 = tu_join(f->tmp, "meta2");
	struct meta *m2;
	assert_int_equal(meta_open(p2, &m2, NULL, 0), 0);
	assert_int_equal(meta_restore(m2, s.buf, s.len), 0);
	assert_value(m2, "zzz-late", NULL);
	void *v;
	size_t vl;
	assert_int_equal(meta_get(m2, "key001999", 9, &v, &vl), 0);
	assert_int_equal(vl, 100);
	assert_int_equal(((uint8_t *)v)[99], 1999 & 0xff);
	free(v);
	meta_close(m2);
	free(p2);
	free(s.buf);
}

static void open_on_unusable_path_fails_with_message(void **state)
{
	(void)state;
	struct meta *m = (struct meta *)1;
	char err[512] = "";
	assert_true(meta_open("/proc/version/meta", &m, err, sizeof err) < 0);
	assert_null(m);
	assert_non_null(strstr(err, "/proc/version/meta"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(get_put_delete_through_batches),
	    T(prefix_iterator_yields_only_its_keys_in_order),
	    T(iterator_sees_a_consistent_view),
	    T(dump_is_deterministic_and_restore_round_trips),
	    T(empty_store_dump_restores_to_empty),
	    T(malformed_dump_is_refused_and_changes_nothing),
	    T(dump_stops_on_callback_error_and_ignores_later_writes),
	    cmocka_unit_test(open_on_unusable_path_fails_with_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
