/*
 * test_fsck.c — the check engine (fs/fsck*.c) over a real inode table and
 * block store: a healthy table checks clean, each planted problem is
 * found with its kind, inode and path, and the repairs (a block fetched
 * from a "peer" store, metadata fixed by repair ops applied like log
 * entries, unreferenced blocks dropped) leave a table that checks clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fs/fsck.h"
#include "fs/itab_check.h"
#include "tests/unit/fs/itab_plant.h"
#include "tests/unit/fs/itab_test_util.h"

struct world {
	struct fx fx;
	struct blk_store *bs;   /* this node's store */
	struct blk_store *peer; /* a peer's, with good copies of every block */
	uint64_t d, f, g, ln, big, orphan;
	uint8_t hf[ITAB_HASH_LEN], hbig[2][ITAB_HASH_LEN];
	int fetches, proposals;
};

/* Store content in both stores and commit it as extent `index` of ino. */
static void write_block(struct world *w, uint64_t ino, uint64_t index,
                        const char *content, uint64_t size,
                        uint8_t hash[ITAB_HASH_LEN])
{
	size_t len = strlen(content);
	assert_int_equal(blk_put(w->bs, content, len, hash), 0);
	uint8_t h2[ITAB_HASH_LEN];
	assert_int_equal(blk_put(w->peer, content, len, h2), 0);
	struct itab_extent e = {.index = index, .len = (uint32_t)len};
	memcpy(e.hash, hash, ITAB_HASH_LEN);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino, op.extents = &e, op.n_extents = 1, op.size = size;
	assert_int_equal(fx_apply(&w->fx, &op), 0);
}

/* /d, /d/f (two links: /d/f and /g), /ln -> d/f, /big (two blocks), an
 * orphan open on node 3. */
static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	assert_int_equal(fx_open(&w->fx), 0);
	char p[128];
	snprintf(p, sizeof(p), "%s/blocks", w->fx.dir);
	assert_int_equal(blk_open(p, 0, &w->bs, NULL, 0), 0);
	snprintf(p, sizeof(p), "%s/peer", w->fx.dir);
	assert_int_equal(blk_open(p, 0, &w->peer, NULL, 0), 0);
	struct fx *f = &w->fx;
	assert_int_equal(do_mkdir(f, 1, "d"), 0);
	w->d = f->res.ino;
	assert_int_equal(do_create(f, w->d, "f", 0644), 0);
	w->f = f->res.ino;
	write_block(w, w->f, 0, "the content of f", 16, w->hf);
	assert_int_equal(do_link(f, w->f, 1, "g"), 0);
	assert_int_equal(do_symlink(f, 1, "ln", "d/f"), 0);
	w->ln = f->res.ino;
	assert_int_equal(do_create(f, 1, "big", 0644), 0);
	w->big = f->res.ino;
	uint64_t bs = itab_block_size(f->t);
	write_block(w, w->big, 0, "first block", bs + 5, w->hbig[0]);
	write_block(w, w->big, 1, "5more", bs + 5, w->hbig[1]);
	/* open on node 3, then unlinked: a legitimate orphan */
	assert_int_equal(do_create(f, 1, "tmp", 0644), 0);
	w->orphan = f->res.ino;
	struct itab_lock lk = {.incarnation = 1, .seq = 1};
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&lk, pl);
	struct itab_op op = op_mk(ITAB_OP_OPEN, 0, NULL);
	op.ino = w->orphan, op.origin = 3, op.seq = 1, op.value = pl,
	op.value_len = sizeof(pl);
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(do_unlink(f, 1, "tmp", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.orphaned, w->orphan);
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

/* Hooks: fetch from the peer store, propose = apply at the next index. */
static int fetch_peer(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                      uint64_t *from)
{
	struct world *w = ctx;
	w->fetches++;
	uint8_t buf[128];
	size_t len;
	int rc = blk_get(w->peer, hash, buf, sizeof(buf), &len);
	if (rc == 0)
		rc = blk_put_hashed(w->bs, hash, buf, len);
	*from = 2;
	return rc;
}

static int propose_apply(void *ctx, const struct itab_op *op)
{
	struct world *w = ctx;
	w->proposals++;
	return fx_apply(&w->fx, op);
}

static struct fsck_env env_of(struct world *w, bool repair)
{
	return (struct fsck_env){.itab = w->fx.t,
	                         .bs = w->bs,
	                         .self_id = 1,
	                         .repair = repair,
	                         .grace_ms = 600000,
	                         .ctx = w};
}

/* The first problem of `kind`, or NULL. */
static const struct fsck_problem *find(const struct fsck_report *r,
                                       enum fsck_kind kind)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->p[i].kind == kind)
			return &r->p[i];
	return NULL;
}

static void dump(const struct fsck_report *r)
{
	char *t = fsck_render(r, false);
	print_message("%s", t ? t : "(no memory)\n");
	free(t);
}

static void a_healthy_table_checks_clean(void **state)
{
	struct world *w = *state;
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	if (r.n)
		dump(&r);
	assert_int_equal(r.n, 0);
	assert_int_equal(fsck_exit_status(&r), 0);
	assert_int_equal(r.st.inodes, 6); /* root, d, f, ln, big, the orphan */
	assert_int_equal(r.st.dirs, 2);
	assert_int_equal(r.st.entries, 5);
	assert_int_equal(r.st.orphans, 1);
	assert_int_equal(r.st.blocks_referenced, 3);
	assert_int_equal(r.st.blocks_verified, 3);
	assert_int_equal(r.st.blocks_stored, 3);
	assert_int_equal(r.applied, w->fx.index);
	char *s = fsck_summary(&r);
	assert_non_null(strstr(s, "clean"));
	free(s);
	fsck_report_free(&r);
}

/* The three problems of the e2e test, each precisely: a corrupt block of
 * /d/f, a broken nlink on /big, a dangling entry /d/ghost. */
static void planted_problems_are_found_precisely(void **state)
{
	struct world *w = *state;
	char hex[BLK_HEX_LEN + 1], path[256];
	blk_hex(w->hf, hex);
	snprintf(path, sizeof(path), "%s/blocks/%.2s/%s", w->fx.dir, hex, hex);
	FILE *fp = fopen(path, "r+");
	assert_non_null(fp);
	fputs("THE", fp); /* same size, other bytes */
	fclose(fp);
	assert_int_equal(plant_nlink(w->fx.t, w->big, 3), 0);
	assert_int_equal(plant_dangling(w->fx.t, w->d, "ghost", 9999), 0);
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	if (r.n != 3 || getenv("FSCK_SHOW"))
		dump(&r);
	assert_int_equal(r.n, 3);
	assert_int_equal(fsck_exit_status(&r), 1);
	const struct fsck_problem *p = find(&r, FSCK_BLOCK_CORRUPT);
	assert_non_null(p);
	assert_int_equal(p->ino, w->f);
	/* f has two names; the path is the one of its first entry */
	assert_true(!strcmp(p->path, "/g") || !strcmp(p->path, "/d/f"));
	assert_true(p->has_hash);
	assert_memory_equal(p->hash, w->hf, ITAB_HASH_LEN);
	p = find(&r, FSCK_NLINK);
	assert_non_null(p);
	assert_int_equal(p->ino, w->big);
	assert_string_equal(p->path, "/big");
	assert_non_null(strstr(p->detail, "nlink is 3, but 1 entry names it"));
	p = find(&r, FSCK_DANGLING);
	assert_non_null(p);
	assert_int_equal(p->ino, 9999);
	assert_string_equal(p->path, "/d/ghost");
	/* read-only: the corrupt block is still where it was */
	assert_int_equal(blk_has(w->bs, w->hf), 1);
	/* JSON names the three kinds */
	char *j = fsck_render(&r, true);
	assert_non_null(strstr(j, "\"kind\":\"block-corrupt\""));
	assert_non_null(strstr(j, "\"kind\":\"nlink\""));
	assert_non_null(strstr(j, "\"kind\":\"dangling-entry\""));
	assert_non_null(strstr(j, "\"path\":\"/d/ghost\""));
	assert_non_null(strstr(j, "\"found\":3"));
	free(j);
	fsck_report_free(&r);

	/* Offline repair: the block is fetched; metadata is not changed
	 * outside the log, only reported with what to do. */
	env = env_of(w, true);
	env.fetch = fetch_peer;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.n_fixed, 1);
	p = find(&r, FSCK_BLOCK_CORRUPT);
	assert_int_equal(p->fix, FSCK_FIXED);
	assert_non_null(strstr(p->action, "node 2"));
	p = find(&r, FSCK_NLINK);
	assert_int_equal(p->fix, FSCK_UNFIXED);
	assert_non_null(strstr(p->action, "through it"));
	assert_int_equal(fsck_exit_status(&r), 1);
	fsck_report_free(&r);
	assert_int_equal(blk_verify(w->bs, w->hf, NULL), 0);
	assert_int_equal(ga(&w->fx, w->big).nlink, 3);

	/* Online repair: the metadata fixes go "through the log". */
	env.propose = propose_apply;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.n_fixed, 2);
	assert_int_equal(fsck_exit_status(&r), 0);
	fsck_report_free(&r);
	assert_int_equal(ga(&w->fx, w->big).nlink, 1);
	env = env_of(w, false);
	assert_int_equal(fsck_run(&env, &r), 0);
	if (r.n)
		dump(&r);
	assert_int_equal(r.n, 0);
	fsck_report_free(&r);
}

static void missing_blocks_refcounts_and_directories(void **state)
{
	struct world *w = *state;
	assert_int_equal(blk_delete(w->bs, w->hbig[1]), 0);
	assert_int_equal(plant_refcount(w->fx.t, w->hbig[0], 4), 0);
	assert_int_equal(plant_nlink(w->fx.t, w->d, 9), 0);
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	const struct fsck_problem *p = find(&r, FSCK_BLOCK_MISSING);
	assert_non_null(p);
	assert_int_equal(p->ino, w->big);
	assert_memory_equal(p->hash, w->hbig[1], ITAB_HASH_LEN);
	p = find(&r, FSCK_REFCOUNT);
	assert_non_null(p);
	assert_int_equal(p->seen, 4);
	assert_int_equal(p->want, 1);
	p = find(&r, FSCK_NLINK);
	assert_non_null(p);
	assert_int_equal(p->ino, w->d);
	assert_string_equal(p->path, "/d");
	assert_int_equal(r.n, 3);
	fsck_report_free(&r);
	env = env_of(w, true);
	env.fetch = fetch_peer;
	env.propose = propose_apply;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n_fixed, 3);
	fsck_report_free(&r);
	env = env_of(w, false);
	assert_int_equal(fsck_run(&env, &r), 0);
	if (r.n)
		dump(&r);
	assert_int_equal(r.n, 0);
	assert_int_equal(itab_block_refs(w->fx.t, w->hbig[0]), 1);
	assert_int_equal(ga(&w->fx, w->d).nlink, 2);
	fsck_report_free(&r);
}

static uint8_t settle_hash[ITAB_HASH_LEN];
static void settle_fetch(void *ctx)
{
	uint64_t from;
	fetch_peer(ctx, settle_hash, &from);
}

/* Online, a block missing at first but fetched by the node meanwhile (the
 * settle hook: the data path's background fetches) is no finding. */
static void a_block_fetched_meanwhile_is_not_reported(void **state)
{
	struct world *w = *state;
	assert_int_equal(blk_delete(w->bs, w->hbig[1]), 0);
	memcpy(settle_hash, w->hbig[1], ITAB_HASH_LEN);
	struct fsck_env env = env_of(w, false);
	env.online = true;
	env.settle = settle_fetch;
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.st.blocks_verified, 3);
	fsck_report_free(&r);
	assert_int_equal(blk_delete(w->bs, w->hbig[1]), 0);
	env.settle = NULL;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 1);
	assert_non_null(find(&r, FSCK_BLOCK_MISSING));
	fsck_report_free(&r);
}

/* A loop of directories that the root does not reach is a cycle. */
static void a_directory_cycle_is_found(void **state)
{
	struct world *w = *state;
	struct fx *f = &w->fx;
	assert_int_equal(do_mkdir(f, 1, "a"), 0);
	uint64_t a = f->res.ino;
	assert_int_equal(do_mkdir(f, a, "b"), 0);
	uint64_t b = f->res.ino;
	assert_int_equal(plant_remove_entry(f->t, 1, "a"), 0);
	assert_int_equal(plant_entry(f->t, b, "loop", a, 0040000), 0);
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	const struct fsck_problem *p = find(&r, FSCK_CYCLE);
	if (!p || getenv("FSCK_SHOW"))
		dump(&r);
	assert_non_null(p);
	assert_true(p->ino == a || p->ino == b);
	assert_non_null(strstr(p->detail, "loops"));
	assert_non_null(
	    find(&r, FSCK_PARENT)); /* a's parent field says the root */
	fsck_report_free(&r);
}

/* Unreferenced blocks: reported once past the grace period, dropped by
 * --repair; the applied index is checked against the log. */
static void unreferenced_blocks_and_the_log(void **state)
{
	struct world *w = *state;
	uint8_t h[ITAB_HASH_LEN];
	assert_int_equal(blk_put(w->bs, "nobody's", 8, h), 0);
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.st.unreferenced_recent, 1);
	fsck_report_free(&r);
	env.grace_ms = 0;
	env.log = (struct fsck_log){.known = true,
	                            .snap_index = w->fx.index + 5,
	                            .last = w->fx.index + 9,
	                            .commit = w->fx.index + 9};
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n, 2);
	const struct fsck_problem *p = find(&r, FSCK_BLOCK_UNREF);
	assert_non_null(p);
	assert_memory_equal(p->hash, h, ITAB_HASH_LEN);
	assert_non_null(find(&r, FSCK_APPLIED));
	fsck_report_free(&r);
	env.log.known = false;
	env.repair = true;
	assert_int_equal(fsck_run(&env, &r), 0);
	assert_int_equal(r.n_fixed, 1);
	assert_int_equal(blk_has(w->bs, h), 0);
	fsck_report_free(&r);
}

/* Leaked and unreachable inodes, entries with the wrong type. */
static void nameless_inodes_and_entry_types(void **state)
{
	struct world *w = *state;
	struct fx *f = &w->fx;
	assert_int_equal(do_create(f, 1, "x", 0644), 0);
	uint64_t x = f->res.ino;
	assert_int_equal(plant_remove_entry(f->t, 1, "x"),
	                 0); /* nlink 1, no name */
	assert_int_equal(plant_entry(f->t, w->d, "fake-dir", w->ln, 0040000),
	                 0);
	struct fsck_env env = env_of(w, false);
	struct fsck_report r;
	assert_int_equal(fsck_run(&env, &r), 0);
	const struct fsck_problem *p = find(&r, FSCK_UNLINKED);
	assert_non_null(p);
	assert_int_equal(p->ino, x);
	p = find(&r, FSCK_ENTRY_TYPE);
	assert_non_null(p);
	assert_int_equal(p->ino, w->ln);
	assert_string_equal(p->path, "/d/fake-dir");
	fsck_report_free(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(a_healthy_table_checks_clean),
	    T(planted_problems_are_found_precisely),
	    T(missing_blocks_refcounts_and_directories),
	    T(a_block_fetched_meanwhile_is_not_reported),
	    T(a_directory_cycle_is_found),
	    T(unreferenced_blocks_and_the_log),
	    T(nameless_inodes_and_entry_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
