/*
 * test_scrub.c — the background block scrub (fs/scrub.c): a pass finds
 * corrupt blocks, refetches the referenced ones from a peer, quarantines
 * the unreferenced ones, keeps to its rate and remembers its schedule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fs/scrub.h"
#include "tests/unit/fs/itab_test_util.h"

#include <time.h>

struct world {
	struct fx fx;
	struct blk_store *bs, *peer;
	uint8_t used[ITAB_HASH_LEN], spare[ITAB_HASH_LEN];
	uint64_t file;
	char state[160];
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_int_equal(fx_open(&w->fx), 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/blocks", w->fx.dir);
	assert_int_equal(blk_open(p, 0, &w->bs, NULL, 0), 0);
	snprintf(p, sizeof(p), "%s/peer", w->fx.dir);
	assert_int_equal(blk_open(p, 0, &w->peer, NULL, 0), 0);
	snprintf(w->state, sizeof(w->state), "%s/scrub.state", w->fx.dir);
	assert_int_equal(blk_put(w->bs, "used block", 10, w->used), 0);
	assert_int_equal(blk_put(w->peer, "used block", 10, w->used), 0);
	assert_int_equal(blk_put(w->bs, "spare block", 11, w->spare), 0);
	assert_int_equal(do_create(&w->fx, 1, "f", 0644), 0);
	w->file = w->fx.res.ino;
	struct itab_extent e = {.index = 0, .len = 10};
	memcpy(e.hash, w->used, ITAB_HASH_LEN);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = w->file, op.extents = &e, op.n_extents = 1, op.size = 10;
	assert_int_equal(fx_apply(&w->fx, &op), 0);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	blk_close(w->bs);
	blk_close(w->peer);
	fx_close(&w->fx);
	free(w);
	return 0;
}

static int fetch_peer(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                      uint64_t *from)
{
	struct world *w = ctx;
	uint8_t buf[64];
	size_t len;
	int rc = blk_get(w->peer, hash, buf, sizeof(buf), &len);
	*from = 7;
	return rc ? rc : blk_put_hashed(w->bs, hash, buf, len);
}

static void damage(struct world *w, const uint8_t *h)
{
	char hex[BLK_HEX_LEN + 1], path[256];
	blk_hex(h, hex);
	snprintf(path, sizeof(path), "%s/blocks/%.2s/%s", w->fx.dir, hex, hex);
	FILE *f = fopen(path, "r+");
	assert_non_null(f);
	fputc('X', f);
	fclose(f);
}

/* Wait (up to 20 s) until `passes` passes completed. */
static struct scrub_counters wait_passes(struct scrub *s, uint64_t passes)
{
	struct scrub_counters c;
	for (int i = 0; i < 2000; i++) {
		scrub_get(s, &c);
		if (c.passes >= passes)
			return c;
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	fail_msg("scrub did not complete %llu passes",
	         (unsigned long long)passes);
	return c;
}

static void a_pass_repairs_referenced_and_quarantines_unreferenced(void **state)
{
	struct world *w = *state;
	struct scrub_cfg cfg = {.bs = w->bs,
	                        .itab = w->fx.t,
	                        .fetch = fetch_peer,
	                        .ctx = w,
	                        .rate_mib_s = 1000,
	                        .interval_s = 3600,
	                        .state_path = w->state};
	struct scrub *s;
	assert_int_equal(scrub_start(&cfg, &s), 0);
	struct scrub_counters c;
	scrub_get(s, &c);
	assert_true(c.enabled);
	assert_int_equal(c.passes, 0);
	assert_true(c.next_pass > 0 ||
	            c.running); /* the first pass is scheduled */
	scrub_now(s);
	c = wait_passes(s, 1);
	assert_int_equal(c.corrupt, 0);
	assert_int_equal(c.pass_total, 2);
	assert_int_equal(c.blocks_checked, 2);
	damage(w, w->used);
	damage(w, w->spare);
	scrub_now(s);
	c = wait_passes(s, 2);
	assert_int_equal(c.corrupt, 2);
	assert_int_equal(c.repaired, 1);
	assert_int_equal(c.unreferenced, 1);
	assert_int_equal(c.unrepaired, 0);
	assert_true(c.last_finding[0] != 0);
	assert_int_equal(blk_check(w->bs, w->used), 0); /* a good copy again */
	assert_int_equal(blk_has(w->bs, w->spare), 0);  /* quarantined */
	assert_true(c.last_pass_end > 0);
	assert_true(c.next_pass >= c.last_pass_end + 3600 - 1);
	scrub_stop(s);
	/* the schedule survives a restart */
	assert_int_equal(scrub_start(&cfg, &s), 0);
	struct scrub_counters c2;
	scrub_get(s, &c2);
	assert_int_equal(c2.last_pass_end, c.last_pass_end);
	assert_int_equal(c2.passes, 0);
	scrub_stop(s);
}

/* Without a peer that has it, a corrupt referenced block is counted as
 * unrepaired (and stays in quarantine for a later fetch). */
static void no_good_copy_is_counted_unrepaired(void **state)
{
	struct world *w = *state;
	assert_int_equal(blk_delete(w->peer, w->used), 0);
	damage(w, w->used);
	struct scrub_cfg cfg = {.bs = w->bs,
	                        .itab = w->fx.t,
	                        .fetch = fetch_peer,
	                        .ctx = w,
	                        .rate_mib_s = 1000,
	                        .interval_s = 3600};
	struct scrub *s;
	assert_int_equal(scrub_start(&cfg, &s), 0);
	scrub_now(s);
	struct scrub_counters c = wait_passes(s, 1);
	assert_int_equal(c.corrupt, 1);
	assert_int_equal(c.unrepaired, 1);
	assert_int_equal(c.repaired, 0);
	scrub_stop(s);
}

/* At 1 MiB/s, 2 MiB of blocks take at least about 2 s: the pass sleeps
 * to keep its rate. (A lower bound: a slow machine only makes it longer.) */
static void a_pass_keeps_to_its_rate(void **state)
{
	struct world *w = *state;
	size_t n = 256 << 10;
	char *buf = malloc(n);
	for (int i = 0; i < 8; i++) {
		memset(buf, 'a' + i, n);
		uint8_t h[ITAB_HASH_LEN];
		assert_int_equal(blk_put(w->bs, buf, n, h), 0);
	}
	free(buf);
	struct scrub_cfg cfg = {
	    .bs = w->bs, .itab = w->fx.t, .rate_mib_s = 1, .interval_s = 1};
	struct scrub *s;
	assert_int_equal(scrub_start(&cfg, &s), 0);
	struct scrub_counters c = wait_passes(s, 1);
	assert_true(c.bytes_checked >= 2u << 20);
	assert_true(c.last_pass_secs >= 1.8);
	scrub_stop(s);
	/* off: no pass ever */
	cfg.rate_mib_s = 0;
	assert_int_equal(scrub_start(&cfg, &s), 0);
	scrub_now(s);
	struct timespec ts = {0, 200000000};
	nanosleep(&ts, NULL);
	scrub_get(s, &c);
	assert_false(c.enabled);
	assert_int_equal(c.passes, 0);
	scrub_stop(s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(a_pass_repairs_referenced_and_quarantines_unreferenced),
	    T(no_good_copy_is_counted_unrepaired),
	    T(a_pass_keeps_to_its_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
