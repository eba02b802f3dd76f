/*
 * rlog_test.c — Raft log store: append/load, suffix truncation, hard state,
 * compaction, snapshot install, corruption detection, latency figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/rlog.h"
#include "storage/util.h"
#include "tests/unit/storage/testutil.h"

#include <errno.h>
#include <leveldb/c.h>

struct fx {
	char *tmp;
	char *path;
	struct rlog *rl;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->tmp = tu_mkdtemp();
	f->path = tu_join(f->tmp, "raft");
	char err[256] = "";
	if (rlog_open(f->path, &f->rl, err, sizeof err) != 0) {
		fprintf(stderr, "rlog_open: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	rlog_close(f->rl);
	free(f->path);
	tu_rmtree(f->tmp);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	rlog_close(f->rl);
	f->rl = NULL;
	char err[256] = "";
	assert_int_equal(rlog_open(f->path, &f->rl, err, sizeof err), 0);
}

/* Fills e[0..n) with entries from index `from`, term `term`, and data
 * "i<index>t<term>" (malloc'ed; free with free_ents). */
static struct rlog_entry *make_ents(uint64_t from, size_t n, uint64_t term)
{
	struct rlog_entry *e = calloc(n, sizeof *e);
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		int len = snprintf(buf, sizeof buf, "i%" PRIu64 "t%" PRIu64,
		                   from + i, term);
		e[i].index = from + i;
		e[i].term = term;
		e[i].type = (uint8_t)(i % 3);
		e[i].len = (uint32_t)len;
		e[i].data = malloc((size_t)len);
		memcpy(e[i].data, buf, (size_t)len);
	}
	return e;
}

static void free_ents(struct rlog_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].data);
	free(e);
}

static void append(struct fx *f, uint64_t from, size_t n, uint64_t term)
{
	struct rlog_entry *e = make_ents(from, n, term);
	assert_int_equal(rlog_append(f->rl, NULL, e, n), 0);
	free_ents(e, n);
}

struct loaded {
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents;
	size_t n;
	char err[512];
	int rc;
};

static void load(struct fx *f, struct loaded *l)
{
	memset(l, 0, sizeof *l);
	l->rc = rlog_load(f->rl, &l->hs, &l->snap, &l->ents, &l->n, l->err,
	                  sizeof l->err);
}

static void unload(struct loaded *l)
{
	rlog_entries_free(l->ents, l->n);
	rlog_snap_free(&l->snap);
}

/* Asserts that entry e is exactly what make_ents(index, 1, term) made. */
static void assert_entry(const struct rlog_entry *e, uint64_t index,
                         uint64_t term)
{
	char buf[64];
	int len =
	    snprintf(buf, sizeof buf, "i%" PRIu64 "t%" PRIu64, index, term);
	assert_int_equal(e->index, index);
	assert_int_equal(e->term, term);
	assert_int_equal(e->len, len);
	assert_memory_equal(e->data, buf, (size_t)len);
}

/* ---- direct LevelDB access, bypassing rlog (rlog must be closed) ---- */

static leveldb_t *raw_open(const char *path, leveldb_options_t **o)
{
	*o = leveldb_options_create();
	char *lerr = NULL;
	leveldb_t *db = leveldb_open(*o, path, &lerr);
	assert_null(lerr);
	return db;
}

static void raw_close(leveldb_t *db, leveldb_options_t *o)
{
	leveldb_close(db);
	leveldb_options_destroy(o);
}

static void ekey(uint8_t k[9], uint64_t index)
{
	k[0] = 'e';
	stor_put_be64(k + 1, index);
}

static void raw_put(leveldb_t *db, const void *k, size_t kl, const void *v,
                    size_t vl)
{
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char *lerr = NULL;
	leveldb_put(db, wo, k, kl, v, vl, &lerr);
	assert_null(lerr);
	leveldb_writeoptions_destroy(wo);
}

static void raw_del(leveldb_t *db, const void *k, size_t kl)
{
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char *lerr = NULL;
	leveldb_delete(db, wo, k, kl, &lerr);
	assert_null(lerr);
	leveldb_writeoptions_destroy(wo);
}

static char *raw_get(leveldb_t *db, const void *k, size_t kl, size_t *vl)
{
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	char *lerr = NULL;
	char *v = leveldb_get(db, ro, k, kl, vl, &lerr);
	assert_null(lerr);
	leveldb_readoptions_destroy(ro);
	return v;
}

/* Number of 'e' keys stored, and the lowest one. */
static size_t raw_count_entries(const char *path, uint64_t *lowest)
{
	leveldb_options_t *o;
	leveldb_t *db = raw_open(path, &o);
	leveldb_readoptions_t *ro = leveldb_readoptions_create();
	leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
	size_t n = 0;
	*lowest = 0;
	for (leveldb_iter_seek(it, "e", 1); leveldb_iter_valid(it);
	     leveldb_iter_next(it)) {
		size_t kl;
		const char *k = leveldb_iter_key(it, &kl);
		if (k[0] != 'e')
			break;
		if (!n)
			*lowest = stor_get_be64((const uint8_t *)k + 1);
		n++;
	}
	leveldb_iter_destroy(it);
	leveldb_readoptions_destroy(ro);
	raw_close(db, o);
	return n;
}

/* Builds a well-formed entry record per the layout in rlog.h. */
static size_t craft_record(uint8_t *v, uint64_t index, uint64_t term,
                           const char *data)
{
	uint32_t len = (uint32_t)strlen(data);
	v[0] = 1;
	stor_put_be64(v + 1, index);
	stor_put_be64(v + 9, term);
	v[17] = 0;
	stor_put_be32(v + 18, len);
	memcpy(v + 22, data, len);
	stor_put_be32(v + 22 + len, stor_crc32c(0, v, 22 + len));
	return 26 + len;
}

/* ---- tests ---- */

static void crc32c_matches_the_standard_check_value(void **state)
{
	(void)state;
	assert_int_equal(stor_crc32c(0, "123456789", 9), 0xe3069283u);
	/* incremental == one shot */
	assert_int_equal(stor_crc32c(stor_crc32c(0, "1234", 4), "56789", 5),
	                 0xe3069283u);
}

static void fresh_log_loads_empty(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 0);
	assert_null(l.ents);
	assert_int_equal(l.hs.term, 0);
	assert_int_equal(l.snap.index, 0);
	assert_int_equal(rlog_first_index(f->rl), 1);
	assert_int_equal(rlog_last_index(f->rl), 0);
	unload(&l);
}

static void appended_entries_and_hard_state_survive_reopen(void **state)
{
	struct fx *f = *state;
	struct rlog_hard_state hs = {.term = 3, .vote = 2, .commit = 4};
	struct rlog_entry *e = make_ents(1, 5, 1);
	assert_int_equal(rlog_append(f->rl, &hs, e, 5), 0);
	free_ents(e, 5);
	append(f, 6, 5, 3);
	reopen(f);
	assert_int_equal(rlog_last_index(f->rl), 10);
	assert_int_equal(rlog_last_term(f->rl), 3);
	assert_int_equal(rlog_first_index(f->rl), 1);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.hs.term, 3);
	assert_int_equal(l.hs.vote, 2);
	assert_int_equal(l.hs.commit, 4);
	assert_int_equal(l.n, 10);
	for (size_t i = 0; i < 10; i++) {
		assert_entry(&l.ents[i], i + 1, i < 5 ? 1 : 3);
		assert_int_equal(l.ents[i].type, (i % 5) % 3);
	}
	unload(&l);
	struct rlog_entry one;
	assert_int_equal(rlog_get(f->rl, 7, &one), 0);
	assert_entry(&one, 7, 3);
	free(one.data);
	assert_int_equal(rlog_get(f->rl, 11, &one), -ENOENT);
	assert_int_equal(rlog_get(f->rl, 0, &one), -ENOENT);
}

static void empty_entry_data_round_trips(void **state)
{
	struct fx *f = *state;
	struct rlog_entry e = {.index = 1, .term = 1, .type = 9};
	assert_int_equal(rlog_append(f->rl, NULL, &e, 1), 0);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.ents[0].len, 0);
	assert_null(l.ents[0].data);
	assert_int_equal(l.ents[0].type, 9);
	unload(&l);
}

static void append_overwrites_and_deletes_conflicting_suffix(void **state)
{
	struct fx *f = *state;
	append(f, 1, 10, 1);
	append(f, 6, 2, 2); /* replaces 6..10 by 6..7 */
	assert_int_equal(rlog_last_index(f->rl), 7);
	assert_int_equal(rlog_last_term(f->rl), 2);
	struct rlog_entry one;
	assert_int_equal(rlog_get(f->rl, 8, &one), -ENOENT);
	uint64_t low;
	rlog_close(f->rl);
	f->rl = NULL;
	assert_int_equal(raw_count_entries(f->path, &low), 7);
	reopen(f);
	assert_int_equal(rlog_last_index(f->rl), 7);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 7);
	for (size_t i = 0; i < 5; i++)
		assert_entry(&l.ents[i], i + 1, 1);
	assert_entry(&l.ents[5], 6, 2);
	assert_entry(&l.ents[6], 7, 2);
	unload(&l);
	/* overwriting with a longer suffix extends the log */
	append(f, 7, 4, 3);
	assert_int_equal(rlog_last_index(f->rl), 10);
	load(f, &l);
	assert_int_equal(l.n, 10);
	assert_entry(&l.ents[5], 6, 2);
	assert_entry(&l.ents[9], 10, 3);
	unload(&l);
}

static void append_rejects_gaps_and_malformed_batches(void **state)
{
	struct fx *f = *state;
	append(f, 1, 3, 2);
	struct rlog_entry *e = make_ents(5, 1, 2); /* gap: last is 3 */
	assert_int_equal(rlog_append(f->rl, NULL, e, 1), -EINVAL);
	free_ents(e, 1);
	e = make_ents(4, 2, 2);
	e[1].index = 6; /* not consecutive */
	assert_int_equal(rlog_append(f->rl, NULL, e, 2), -EINVAL);
	e[1].index = 5;
	e[1].term = 1; /* term decreasing inside the batch */
	assert_int_equal(rlog_append(f->rl, NULL, e, 2), -EINVAL);
	free_ents(e, 2);
	e = make_ents(4, 1, 1); /* below the previous entry's term */
	assert_int_equal(rlog_append(f->rl, NULL, e, 1), -EINVAL);
	free_ents(e, 1);
	e = make_ents(2, 1, 1); /* overwrite at 2: term 1 < term(1) = 2 */
	assert_int_equal(rlog_append(f->rl, NULL, e, 1), -EINVAL);
	free_ents(e, 1);
	e = make_ents(0, 1, 2); /* index 0 is never valid */
	assert_int_equal(rlog_append(f->rl, NULL, e, 1), -EINVAL);
	free_ents(e, 1);
	struct rlog_entry nodata = {.index = 4, .term = 2, .len = 3};
	assert_int_equal(rlog_append(f->rl, NULL, &nodata, 1), -EINVAL);
	/* nothing of the rejected calls was written */
	assert_int_equal(rlog_last_index(f->rl), 3);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 3);
	unload(&l);
	/* n == 0 without hard state is a no-op */
	assert_int_equal(rlog_append(f->rl, NULL, NULL, 0), 0);
}

static void hard_state_alone_is_stored_and_replaced(void **state)
{
	struct fx *f = *state;
	struct rlog_hard_state hs = {.term = 7, .vote = 3, .commit = 0};
	assert_int_equal(rlog_set_hard_state(f->rl, &hs), 0);
	hs.term = 8;
	hs.vote = 0;
	assert_int_equal(rlog_append(f->rl, &hs, NULL, 0), 0);
	reopen(f);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.hs.term, 8);
	assert_int_equal(l.hs.vote, 0);
	assert_int_equal(l.n, 0);
	unload(&l);
}

static void compact_records_snapshot_and_deletes_prefix(void **state)
{
	struct fx *f = *state;
	append(f, 1, 10, 1);
	append(f, 11, 10, 2);
	uint8_t conf[] = {1, 2, 3, 4, 5};
	struct rlog_snap s = {
	    .index = 12, .term = 2, .conf_len = 5, .conf = conf};
	struct rlog_snap bad = s;
	bad.term = 1; /* entry 12 has term 2 */
	assert_int_equal(rlog_compact(f->rl, &bad), -EINVAL);
	bad = s;
	bad.index = 21; /* beyond the last index */
	assert_int_equal(rlog_compact(f->rl, &bad), -EINVAL);
	assert_int_equal(rlog_compact(f->rl, &s), 0);
	assert_int_equal(rlog_first_index(f->rl), 13);
	assert_int_equal(rlog_snap_index(f->rl), 12);
	assert_int_equal(rlog_snap_term(f->rl), 2);
	bad = s;
	bad.index = 5; /* backwards */
	bad.term = 1;
	assert_int_equal(rlog_compact(f->rl, &bad), -EINVAL);
	uint64_t low;
	rlog_close(f->rl);
	f->rl = NULL;
	assert_int_equal(raw_count_entries(f->path, &low), 8);
	assert_int_equal(low, 13);
	reopen(f);
	assert_int_equal(rlog_first_index(f->rl), 13);
	assert_int_equal(rlog_last_index(f->rl), 20);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.snap.index, 12);
	assert_int_equal(l.snap.term, 2);
	assert_int_equal(l.snap.conf_len, 5);
	assert_memory_equal(l.snap.conf, conf, 5);
	assert_int_equal(l.n, 8);
	assert_entry(&l.ents[0], 13, 2);
	unload(&l);
	struct rlog_entry one;
	assert_int_equal(rlog_get(f->rl, 12, &one), -ENOENT);
	/* overwriting a compacted index is refused */
	struct rlog_entry *e = make_ents(12, 1, 2);
	assert_int_equal(rlog_append(f->rl, NULL, e, 1), -EINVAL);
	free_ents(e, 1);
	/* compacting the whole log leaves it empty; appends continue */
	s.index = 20;
	assert_int_equal(rlog_compact(f->rl, &s), 0);
	assert_int_equal(rlog_last_index(f->rl), 20);
	append(f, 21, 2, 3);
	reopen(f);
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.snap.index, 20);
	assert_int_equal(l.n, 2);
	assert_entry(&l.ents[0], 21, 3);
	unload(&l);
}

static void compact_of_a_long_log_deletes_in_chunks(void **state)
{
	struct fx *f = *state;
	for (uint64_t i = 0; i < 20; i++)
		append(f, 1 + i * 1000, 1000, 1);
	struct rlog_snap s = {.index = 19500, .term = 1};
	assert_int_equal(rlog_compact(f->rl, &s), 0);
	rlog_close(f->rl);
	f->rl = NULL;
	uint64_t low;
	assert_int_equal(raw_count_entries(f->path, &low), 500);
	assert_int_equal(low, 19501);
	reopen(f);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 500);
	unload(&l);
}

static void
leftovers_of_interrupted_compaction_are_ignored_and_removed(void **state)
{
	struct fx *f = *state;
	append(f, 1, 10, 1);
	rlog_close(f->rl);
	f->rl = NULL;
	/* keep copies of entries 1..3 as a crash mid-compaction would */
	leveldb_options_t *o;
	leveldb_t *db = raw_open(f->path, &o);
	char *vals[3];
	size_t lens[3];
	uint8_t k[9];
	for (int i = 0; i < 3; i++) {
		ekey(k, (uint64_t)i + 1);
		vals[i] = raw_get(db, k, 9, &lens[i]);
		assert_non_null(vals[i]);
	}
	raw_close(db, o);
	reopen(f);
	struct rlog_snap s = {.index = 5, .term = 1};
	assert_int_equal(rlog_compact(f->rl, &s), 0);
	rlog_close(f->rl);
	f->rl = NULL;
	db = raw_open(f->path, &o);
	for (int i = 0; i < 3; i++) {
		ekey(k, (uint64_t)i + 1);
		raw_put(db, k, 9, vals[i], lens[i]);
		leveldb_free(vals[i]);
	}
	raw_close(db, o);
	reopen(f);
	assert_int_equal(rlog_first_index(f->rl), 6);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.n, 5);
	assert_entry(&l.ents[0], 6, 1);
	unload(&l);
	rlog_close(f->rl);
	f->rl = NULL;
	uint64_t low;
	assert_int_equal(raw_count_entries(f->path, &low), 5);
	assert_int_equal(low, 6);
	reopen(f);
}

static void install_snapshot_drops_whole_log_unless_told_to_keep(void **state)
{
	struct fx *f = *state;
	append(f, 1, 10, 1);
	struct rlog_snap s = {.index = 5, .term = 1};
	/* rule 7: discard the entire log */
	assert_int_equal(rlog_install_snapshot(f->rl, &s, false), 0);
	assert_int_equal(rlog_last_index(f->rl), 5);
	assert_int_equal(rlog_last_term(f->rl), 1);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.snap.index, 5);
	assert_int_equal(l.n, 0);
	unload(&l);
	append(f, 6, 3, 2);
	/* rule 6: same index and term -> keep what follows */
	s.index = 7;
	s.term = 2;
	assert_int_equal(rlog_install_snapshot(f->rl, &s, true), 0);
	assert_int_equal(rlog_last_index(f->rl), 8);
	reopen(f);
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.snap.index, 7);
	assert_int_equal(l.n, 1);
	assert_entry(&l.ents[0], 8, 2);
	unload(&l);
	/* keep requested, but the term differs: everything goes */
	append(f, 9, 3, 2);
	s.index = 10;
	s.term = 3;
	assert_int_equal(rlog_install_snapshot(f->rl, &s, true), 0);
	assert_int_equal(rlog_last_index(f->rl), 10);
	assert_int_equal(rlog_last_term(f->rl), 3);
	load(f, &l);
	assert_int_equal(l.n, 0);
	unload(&l);
	uint64_t low;
	rlog_close(f->rl);
	f->rl = NULL;
	assert_int_equal(raw_count_entries(f->path, &low), 0);
	reopen(f);
	/* a snapshot far beyond the log */
	s.index = 100;
	s.term = 4;
	assert_int_equal(rlog_install_snapshot(f->rl, &s, true), 0);
	assert_int_equal(rlog_first_index(f->rl), 101);
	append(f, 101, 1, 4);
	/* older than the current snapshot: refused */
	s.index = 50;
	assert_int_equal(rlog_install_snapshot(f->rl, &s, false), -EINVAL);
	reopen(f);
	load(f, &l);
	assert_int_equal(l.rc, 0);
	assert_int_equal(l.snap.index, 100);
	assert_int_equal(l.snap.term, 4);
	assert_int_equal(l.n, 1);
	unload(&l);
}

/* Writes v under entry key index directly, then reopens and loads. */
static void corrupt_and_load(struct fx *f, uint64_t index, const void *v,
                             size_t vl, struct loaded *l)
{
	rlog_close(f->rl);
	f->rl = NULL;
	leveldb_options_t *o;
	leveldb_t *db = raw_open(f->path, &o);
	uint8_t k[9];
	ekey(k, index);
	if (v)
		raw_put(db, k, 9, v, vl);
	else
		raw_del(db, k, 9);
	raw_close(db, o);
	reopen(f);
	load(f, l);
}

static void assert_corrupt_at(struct fx *f, struct loaded *l, uint64_t index)
{
	assert_int_equal(l->rc, -EUCLEAN);
	char want[64];
	snprintf(want, sizeof want, "at index %" PRIu64, index);
	assert_non_null(strstr(l->err, want));
	assert_non_null(strstr(l->err, f->path));
	assert_int_equal(l->n, 0);
	assert_null(l->ents);
}

static void corrupt_record_is_reported_with_index_never_truncated(void **state)
{
	struct fx *f = *state;
	append(f, 1, 5, 1);
	struct loaded l;
	corrupt_and_load(f, 3, "garbage-value-xxxxxxxxxxxxxxxxxxxxx", 30, &l);
	assert_corrupt_at(f, &l, 3);
	/* nothing was repaired: entries 4..5 are still there, load fails again
	 */
	uint64_t low;
	rlog_close(f->rl);
	f->rl = NULL;
	assert_int_equal(raw_count_entries(f->path, &low), 5);
	reopen(f);
	load(f, &l);
	assert_corrupt_at(f, &l, 3);
	/* a flipped bit in the data is caught by the checksum */
	uint8_t v[64];
	size_t vl = craft_record(v, 3, 1, "i3t1");
	v[23] ^= 0x10;
	corrupt_and_load(f, 3, v, vl, &l);
	assert_corrupt_at(f, &l, 3);
	assert_non_null(strstr(l.err, "checksum"));
}

static void gap_in_the_log_is_reported(void **state)
{
	struct fx *f = *state;
	append(f, 1, 5, 1);
	struct loaded l;
	corrupt_and_load(f, 3, NULL, 0, &l);
	assert_corrupt_at(f, &l, 3);
	assert_non_null(strstr(l.err, "missing"));
}

static void decreasing_term_is_reported(void **state)
{
	struct fx *f = *state;
	append(f, 1, 2, 1);
	append(f, 3, 3, 4);
	uint8_t v[64];
	size_t vl = craft_record(v, 4, 2, "i4t2"); /* valid CRC, term 2 < 4 */
	struct loaded l;
	corrupt_and_load(f, 4, v, vl, &l);
	assert_corrupt_at(f, &l, 4);
	assert_non_null(strstr(l.err, "term"));
}

static void record_under_the_wrong_index_is_reported(void **state)
{
	struct fx *f = *state;
	append(f, 1, 5, 1);
	uint8_t v[64];
	size_t vl = craft_record(v, 2, 1, "i2t1"); /* record of 2 under key 4 */
	struct loaded l;
	corrupt_and_load(f, 4, v, vl, &l);
	assert_corrupt_at(f, &l, 4);
}

static void corrupt_last_record_fails_open(void **state)
{
	struct fx *f = *state;
	append(f, 1, 5, 1);
	rlog_close(f->rl);
	f->rl = NULL;
	leveldb_options_t *o;
	leveldb_t *db = raw_open(f->path, &o);
	uint8_t k[9];
	ekey(k, 5);
	raw_put(db, k, 9, "bad", 3);
	raw_close(db, o);
	char err[512] = "";
	assert_int_equal(rlog_open(f->path, &f->rl, err, sizeof err), -EUCLEAN);
	assert_null(f->rl);
	assert_non_null(strstr(err, "index 5"));
	/* a corrupt hard state is caught by load */
	db = raw_open(f->path, &o);
	uint8_t v[64];
	size_t vl = craft_record(v, 5, 1, "i5t1");
	raw_put(db, k, 9, v, vl);
	raw_put(db, "h", 1, "not-a-hard-state", 16);
	raw_close(db, o);
	reopen(f);
	struct loaded l;
	load(f, &l);
	assert_int_equal(l.rc, -EUCLEAN);
	assert_non_null(strstr(l.err, "hard state"));
}

static void open_on_unusable_path_fails_with_message(void **state)
{
	(void)state;
	struct rlog *rl = (struct rlog *)1;
	char err[512] = "";
	int rc = rlog_open("/proc/version/raft", &rl, err, sizeof err);
	assert_true(rc < 0);
	assert_null(rl);
	assert_non_null(strstr(err, "/proc/version/raft"));
}

static void second_open_of_the_same_log_is_busy(void **state)
{
	struct fx *f = *state;
	struct rlog *rl2 = (struct rlog *)1;
	char err[512] = "";
	assert_int_equal(rlog_open(f->path, &rl2, err, sizeof err), -EBUSY);
	assert_null(rl2);
	assert_non_null(strstr(err, f->path));
}

/* Not a timed assert: prints the cost of one synced batch so the
 * replicator's group-commit sizing has a reference figure. */
static void append_latency_is_printed_for_1_and_256_entry_batches(void **state)
{
	struct fx *f = *state;
	uint8_t payload[512];
	memset(payload, 0xab, sizeof payload);
	struct rlog_entry e[256];
	struct rlog_hard_state hs = {.term = 1, .vote = 1, .commit = 0};
	uint64_t next = 1;
	const int rounds = 50;
	double t0 = tu_now();
	for (int r = 0; r < rounds; r++) {
		e[0] = (struct rlog_entry){
		    .index = next++, .term = 1, .len = 512, .data = payload};
		hs.commit = next - 1;
		assert_int_equal(rlog_append(f->rl, &hs, e, 1), 0);
	}
	double one = (tu_now() - t0) / rounds;
	const int brounds = 20;
	t0 = tu_now();
	for (int r = 0; r < brounds; r++) {
		for (int i = 0; i < 256; i++)
			e[i] = (struct rlog_entry){.index = next++,
			                           .term = 1,
			                           .len = 512,
			                           .data = payload};
		assert_int_equal(rlog_append(f->rl, &hs, e, 256), 0);
	}
	double many = (tu_now() - t0) / brounds;
	printf("rlog_append synced batch latency: 1 entry %.3f ms, "
	       "256 entries %.3f ms (%.1f us/entry), 512-byte entries\n",
	       one * 1e3, many * 1e3, many * 1e6 / 256);
	assert_int_equal(rlog_last_index(f->rl), next - 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(crc32c_matches_the_standard_check_value),
	    T(fresh_log_loads_empty),
	    T(appended_entries_and_hard_state_survive_reopen),
	    T(empty_entry_data_round_trips),
	    T(append_overwrites_and_deletes_conflicting_suffix),
	    T(append_rejects_gaps_and_malformed_batches),
	    T(hard_state_alone_is_stored_and_replaced),
	    T(compact_records_snapshot_and_deletes_prefix),
	    T(compact_of_a_long_log_deletes_in_chunks),
	    T(leftovers_of_interrupted_compaction_are_ignored_and_removed),
	    T(install_snapshot_drops_whole_log_unless_told_to_keep),
	    T(corrupt_record_is_reported_with_index_never_truncated),
	    T(gap_in_the_log_is_reported),
	    T(decreasing_term_is_reported),
	    T(record_under_the_wrong_index_is_reported),
	    T(corrupt_last_record_fails_open),
	    cmocka_unit_test(open_on_unusable_path_fails_with_message),
	    T(second_open_of_the_same_log_is_busy),
	    T(append_latency_is_printed_for_1_and_256_entry_batches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
