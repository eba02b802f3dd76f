/*
 * fuzz_fsm.c — fuzz the state machine's apply path: the entries the Raft
 * log hands every node, decoded by fs/fsm.c (itab_op_decode, the envelope
 * stamp, re-encode) and applied by the inode table (fs/itab_ops.c).
 *
 * Input: a sequence of entries (fuzz_ops.h: raw bytes, or an op built
 * from the bytes), each with an origin and a seq. They are applied in
 * order to two fresh tables. Checks:
 *   - apply never fails (a failure stops the node: only a disk error may);
 *   - apply is deterministic: both tables dump to the same bytes;
 *   - the dump restores into a table (fsm restore) that dumps the same;
 *   - every read of the final table works on what apply left (fo_walk).
 * Anything else is a bug and aborts.
 */
#include "fs/fsm.h"
#include "tests/fuzz/fuzz_ops.h"

#define MAX_ENTRIES 64

struct table {
	struct itab *t;
	struct fsm *f;
	struct repl_sm sm;
};

static void table_open(struct table *tb, const char *name)
{
	char path[128];
	fz_fresh(name, path, sizeof path);
	if (itab_open(path, NULL, &tb->t) != 0 || fsm_new(tb->t, 1, &tb->f) != 0)
		abort();
	tb->sm = fsm_sm(tb->f);
}

static void table_close(struct table *tb)
{
	fsm_free(tb->f);
	itab_close(tb->t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fo_quiet();
	struct table a, b;
	table_open(&a, "a");
	table_open(&b, "b");
	struct fz z = {.p = data, .n = size};
	uint64_t seq[4] = {0};
	for (uint64_t index = 1; index <= MAX_ENTRIES; index++) {
		uint8_t env = fz_u8(&z);
		uint8_t *e = NULL;
		long n = fo_next_entry(&z, &e);
		if (n < 0)
			break;
		uint64_t origin = env % 4; /* 0: no dedupe */
		uint64_t s = env & 0x40 ? seq[origin] : ++seq[origin];
		uint64_t low = env & 0x80 ? s : 0;
		uint8_t res[256];
		size_t rl = 0, rl2 = 0;
		uint8_t res2[256];
		if (a.sm.apply(a.sm.ctx, index, origin, s, low, e, (uint32_t)n, res,
			       sizeof res, &rl) != 0 ||
		    b.sm.apply(b.sm.ctx, index, origin, s, low, e, (uint32_t)n, res2,
			       sizeof res2, &rl2) != 0)
			abort();
		if (rl != rl2 || memcmp(res, res2, rl) != 0)
			abort(); /* same entry, same state: same result */
		free(e);
	}
	struct fo_dump da, db, dc;
	fo_dump(a.t, &da);
	fo_dump(b.t, &db);
	if (da.len != db.len || memcmp(da.b, db.b, da.len) != 0)
		abort();
	fo_walk(a.t);
	/* restore A's state into B; B must then dump A's bytes */
	if (b.sm.restore(b.sm.ctx, itab_applied_index(a.t), da.b, da.len) != 0)
		abort();
	fo_dump(b.t, &dc);
	if (dc.len != da.len || memcmp(dc.b, da.b, da.len) != 0)
		abort();
	free(da.b);
	free(db.b);
	free(dc.b);
	table_close(&a);
	table_close(&b);
	return 0;
}
