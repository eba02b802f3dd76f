/*
 * Unit tests of fs/fsm.c, the itab -> replicator adapter, over a real
 * itab. The replicator, the data path and the invalidation queue are
 * replaced by stubs in this file: repl_propose() applies the entry at
 * once through the fsm's own repl_sm (as the replicator would after
 * commit, with origin = this node) and completes it with the result
 * bytes; inval_*() record what was queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "consensus/repl.h"
#include "fs/data.h"
#include "fs/fsm.h"
#include "fs/inval.h"
#include "itab_test_util.h"

#define SELF 1
#define OTHER 2

/* ---- stubs ------------------------------------------------------------------ */

struct repl {
	struct repl_sm sm;
	uint64_t index;
	uint64_t seq;
	int fail; /* complete proposals with this status instead */
};

int repl_propose(struct repl *r, const void *data, uint32_t len,
		 repl_done_fn done, void *ctx)
{
	uint8_t res[256];
	size_t reslen = 0;
	if (r->fail) {
		done(ctx, r->fail, NULL, 0);
		return 0;
	}
	int rc = r->sm.apply(r->sm.ctx, ++r->index, SELF, ++r->seq, 0, data, len,
			     res, sizeof(res), &reslen);
	if (rc)
		return rc;
	done(ctx, 0, res, reslen);
	return 0;
}

int repl_read_index(struct repl *r, repl_done_fn done, void *ctx)
{
	done(ctx, 0, NULL, 0);
	return 0;
}

static int n_data_applied;
void data_applied(struct data *d, const struct itab_op *op,
		  const struct itab_result *res)
{
	n_data_applied++;
}

static int n_catch_up; /* data_catch_up() calls with a data path */
void data_catch_up(struct data *d)
{
	if (d)
		n_catch_up++;
}

struct rec {
	int entries, inodes;
	uint64_t parent;
	char name[256];
	uint64_t ino;
	int data;
};
static struct rec rec;

void inval_entry(struct inval *iv, uint64_t parent, const char *name,
		 size_t name_len)
{
	rec.entries++;
	rec.parent = parent;
	memcpy(rec.name, name, name_len);
	rec.name[name_len] = 0;
}

int inval_inode(struct inval *iv, uint64_t ino, int data)
{
	rec.inodes++;
	rec.ino = ino;
	rec.data = data;
	return 0;
}

int inval_settle(struct inval *iv, uint32_t timeout_ms)
{
	return 0;
}

/* ---- fixture ------------------------------------------------------------------ */

struct tfx {
	struct fx fx;
	struct fsm *f;
	struct repl r;
};

static int setup(void **state)
{
	struct tfx *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	assert_int_equal(fx_open(&t->fx), 0);
	assert_int_equal(fsm_new(t->fx.t, SELF, &t->f), 0);
	t->r.sm = fsm_sm(t->f);
	fsm_set_repl(t->f, &t->r);
	fsm_set_data(t->f, (struct data *)&rec); /* any non-NULL */
	memset(&rec, 0, sizeof(rec));
	n_data_applied = 0;
	n_catch_up = 0;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tfx *t = *state;
	fsm_free(t->f);
	fx_close(&t->fx);
	free(t);
	return 0;
}

static struct itab_op op_create(uint64_t parent, const char *name)
{
	struct itab_op op = {.code = ITAB_OP_CREATE, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .mode = S_IFREG | 0644, .uid = 7, .gid = 8,
			     .now_ns = 1000};
	return op;
}

static struct itab_op op_mkdir(uint64_t parent, const char *name)
{
	struct itab_op op = {.code = ITAB_OP_MKDIR, .parent = parent,
			     .name = name, .name_len = strlen(name),
			     .mode = S_IFDIR | 0755, .now_ns = 1000};
	return op;
}

/* Apply op as an entry proposed by `origin` with `seq`, directly. */
static void apply_as(struct tfx *t, const struct itab_op *op, uint64_t origin,
		     uint64_t seq, uint8_t *res, size_t *reslen)
{
	uint8_t buf[4096];
	long n = itab_op_encode(op, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(t->r.sm.apply(t->r.sm.ctx, ++t->r.index, origin, seq, 0,
				       buf, (uint32_t)n, res, 256, reslen),
			 0);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_propose_sync_returns_new_inode_and_attrs(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_create(ITAB_ROOT_INO, "a");
	struct fsm_result r;
	assert_int_equal(fsm_propose_sync(t->f, &op, &r), 0);
	assert_int_equal(r.err, 0);
	assert_true(r.ino > ITAB_ROOT_INO);
	assert_int_equal(r.attr.ino, r.ino);
	assert_int_equal(r.attr.mode, S_IFREG | 0644);
	assert_int_equal(r.attr.uid, 7);
	assert_int_equal(r.attr.gid, 8);
	assert_int_equal(r.attr.nlink, 1);
	uint64_t ino;
	assert_int_equal(itab_lookup(t->fx.t, ITAB_ROOT_INO, "a", 1, &ino, NULL), 0);
	assert_int_equal(ino, r.ino);
	assert_int_equal(n_data_applied, 1);
}

static void test_op_errno_reaches_the_proposer(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_mkdir(ITAB_ROOT_INO, "d");
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), 0);
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), -EEXIST);
	struct itab_op rm = {.code = ITAB_OP_UNLINK, .parent = ITAB_ROOT_INO,
			     .name = "nope", .name_len = 4};
	assert_int_equal(fsm_propose_sync(t->f, &rm, NULL), -ENOENT);
}

static void test_replicator_failure_becomes_eio(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_create(ITAB_ROOT_INO, "x");
	t->r.fail = -ESHUTDOWN;
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), -EIO);
	t->r.fail = -ETIMEDOUT;
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), -EIO);
}

static void test_envelope_origin_seq_dedupes_a_retry(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_create(ITAB_ROOT_INO, "dup");
	uint8_t res1[256], res2[256];
	size_t l1, l2;
	/* The op itself carries no origin: the envelope's must be used. */
	apply_as(t, &op, OTHER, 5, res1, &l1);
	apply_as(t, &op, OTHER, 5, res2, &l2);
	assert_int_equal(l1, l2);
	assert_memory_equal(res1, res2, l1); /* first result, not -EEXIST */
	struct itab_statfs st;
	assert_int_equal(itab_statfs(t->fx.t, &st), 0);
	assert_int_equal(st.inodes, 2); /* root + one file */
	/* A different seq is a new request: now the name exists. */
	op.name = "dup";
	uint8_t res3[256];
	size_t l3;
	apply_as(t, &op, OTHER, 6, res3, &l3);
	assert_memory_not_equal(res1, res3, l1);
}

static void test_empty_entry_advances_applied_index(void **state)
{
	struct tfx *t = *state;
	uint8_t res[256];
	size_t reslen;
	assert_int_equal(t->r.sm.apply(t->r.sm.ctx, 3, 0, 0, 0, (const uint8_t *)"",
				       0, res, sizeof(res), &reslen),
			 0);
	assert_int_equal(t->r.sm.applied(t->r.sm.ctx), 3);
	uint64_t idx;
	assert_int_equal(t->r.sm.sync(t->r.sm.ctx, &idx), 0);
	assert_int_equal(idx, 3);
}

static void test_malformed_entry_is_a_noop_that_advances(void **state)
{
	struct tfx *t = *state;
	uint8_t junk[5] = {0xff, 1, 2, 3, 4}, res[256];
	size_t reslen;
	assert_int_equal(t->r.sm.apply(t->r.sm.ctx, 9, OTHER, 1, 0, junk,
				       sizeof(junk), res, sizeof(res), &reslen),
			 0);
	assert_int_equal(t->r.sm.applied(t->r.sm.ctx), 9);
	struct itab_statfs st;
	assert_int_equal(itab_statfs(t->fx.t, &st), 0);
	assert_int_equal(st.inodes, 1);
}

static void test_remote_ops_queue_invalidations_local_ops_do_not(void **state)
{
	struct tfx *t = *state;
	uint8_t res[256];
	size_t reslen;
	fsm_set_inval(t->f, (struct inval *)&rec); /* any non-NULL */
	struct itab_op op = op_create(ITAB_ROOT_INO, "mine");
	apply_as(t, &op, SELF, 1, res, &reslen);
	assert_int_equal(rec.entries + rec.inodes, 0);

	op = op_create(ITAB_ROOT_INO, "theirs");
	apply_as(t, &op, OTHER, 1, res, &reslen);
	assert_int_equal(rec.entries, 1);
	assert_int_equal(rec.parent, ITAB_ROOT_INO);
	assert_string_equal(rec.name, "theirs");
	assert_int_equal(rec.inodes, 1); /* the parent's attributes */
	assert_int_equal(rec.ino, ITAB_ROOT_INO);

	uint64_t ino;
	assert_int_equal(itab_lookup(t->fx.t, ITAB_ROOT_INO, "theirs", 6, &ino, NULL), 0);
	memset(&rec, 0, sizeof(rec));
	struct itab_op sa = {.code = ITAB_OP_SETATTR, .ino = ino,
			     .valid = ITAB_SET_SIZE, .size = 0, .now_ns = 5};
	apply_as(t, &sa, OTHER, 2, res, &reslen);
	assert_int_equal(rec.inodes, 1);
	assert_int_equal(rec.ino, ino);
	assert_int_equal(rec.data, 1); /* size change: pages too */

	/* A failed remote op changed nothing: nothing to invalidate. */
	memset(&rec, 0, sizeof(rec));
	op = op_create(ITAB_ROOT_INO, "theirs");
	apply_as(t, &op, OTHER, 3, res, &reslen);
	assert_int_equal(rec.entries + rec.inodes, 0);

	/* Detached: nothing is queued any more. */
	fsm_set_inval(t->f, NULL);
	op = op_create(ITAB_ROOT_INO, "later");
	apply_as(t, &op, OTHER, 4, res, &reslen);
	assert_int_equal(rec.entries + rec.inodes, 0);
}

/* A snapshot of the table installed again over itself (what a follower
 * does with the leader's): a restore. */
static void reinstall(struct tfx *t)
{
	uint64_t idx, len;
	uint8_t *data;
	assert_int_equal(t->r.sm.snapshot(t->r.sm.ctx, &idx, &data, &len), 0);
	assert_int_equal(t->r.sm.restore(t->r.sm.ctx, idx, data, len), 0);
	free(data);
}

/* An open as sfs_open does it: valid? else drop (here: nothing to drop)
 * and vouch. Returns whether the pages were kept. */
static bool open_pages(struct fsm *f, uint64_t ino)
{
	uint64_t ticket;
	if (fsm_pages_valid(f, ino, &ticket))
		return true;
	fsm_pages_dropped(f, ino, ticket);
	return false;
}

/* Kernel pages survive an open only while no content change (WRITE, size
 * change; from any node) was applied since they were last dropped, and a
 * snapshot install forgets everything. */
static void test_pages_kept_until_content_changes(void **state)
{
	struct tfx *t = *state;
	uint8_t res[256];
	size_t reslen;
	struct itab_op op = op_create(ITAB_ROOT_INO, "p");
	struct fsm_result r;
	assert_int_equal(fsm_propose_sync(t->f, &op, &r), 0);
	uint64_t ino = r.ino;
	assert_false(open_pages(t->f, ino)); /* first open: drop */
	assert_true(open_pages(t->f, ino));  /* nothing changed */
	uint64_t ticket;
	assert_false(fsm_pages_valid(t->f, 0, &ticket));

	/* Attributes only (chmod, times): the pages stay. */
	struct itab_op sa = {.code = ITAB_OP_SETATTR, .ino = ino,
			     .valid = ITAB_SET_MODE, .mode = 0600, .now_ns = 5};
	apply_as(t, &sa, OTHER, 1, res, &reslen);
	assert_true(open_pages(t->f, ino));

	/* Another node's WRITE: drop once, then keep again. */
	struct itab_op w = {.code = ITAB_OP_WRITE, .ino = ino, .size = 10,
			    .now_ns = 6};
	apply_as(t, &w, OTHER, 2, res, &reslen);
	assert_false(open_pages(t->f, ino));
	assert_true(open_pages(t->f, ino));

	/* A size change, from this node too. */
	sa.valid = ITAB_SET_SIZE;
	sa.size = 3;
	apply_as(t, &sa, SELF, 3, res, &reslen);
	assert_false(open_pages(t->f, ino));
	assert_true(open_pages(t->f, ino));

	/* A failed change changed nothing. */
	struct itab_op bad = {.code = ITAB_OP_WRITE, .ino = ino + 1000,
			      .size = 1, .now_ns = 7};
	apply_as(t, &bad, OTHER, 4, res, &reslen);
	assert_true(open_pages(t->f, ino));

	/* Two opens at once: neither keeps pages until one has dropped
	 * them, and a change applied while one drops voids its vouching. */
	apply_as(t, &w, OTHER, 5, res, &reslen);
	uint64_t t1, t2;
	assert_false(fsm_pages_valid(t->f, ino, &t1));
	assert_false(fsm_pages_valid(t->f, ino, &t2));
	apply_as(t, &w, OTHER, 6, res, &reslen); /* while they drop */
	fsm_pages_dropped(t->f, ino, t1);
	fsm_pages_dropped(t->f, ino, t2);
	assert_false(open_pages(t->f, ino));
	assert_true(open_pages(t->f, ino));
	fsm_pages_stale(t->f, ino); /* e.g. a failed open */
	assert_false(open_pages(t->f, ino));

	/* Many inodes: the set grows, and past its bound it forgets (every
	 * inode then drops its pages once), never keeping wrongly. */
	for (uint64_t i = 1; i <= FSM_PAGES_MAX + 10; i++)
		(void)open_pages(t->f, 1000000 + i);
	assert_false(open_pages(t->f, ino));
	assert_false(open_pages(t->f, 1000000 + 1));
	assert_true(open_pages(t->f, 1000000 + FSM_PAGES_MAX + 10));
	assert_true(open_pages(t->f, ino));

	/* A snapshot install: nothing is known valid any more. */
	assert_true(fsm_pages_valid(t->f, ino, &t1));
	reinstall(t);
	fsm_pages_dropped(t->f, ino, t1); /* a ticket from before: void */
	assert_false(open_pages(t->f, ino));
	assert_true(open_pages(t->f, ino));

	/* A ticket from before a forgetting vouches for nothing, even for a
	 * slot created anew with the same change count. */
	uint64_t fresh = 5000000;
	assert_false(fsm_pages_valid(t->f, fresh, &t1));
	reinstall(t);
	assert_false(fsm_pages_valid(t->f, fresh, &t2));
	fsm_pages_dropped(t->f, fresh, t1);
	assert_false(fsm_pages_valid(t->f, fresh, &t2));
}

static void test_snapshot_restores_into_another_table(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_mkdir(ITAB_ROOT_INO, "snapdir");
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), 0);
	uint64_t idx, len;
	uint8_t *data;
	assert_int_equal(t->r.sm.snapshot(t->r.sm.ctx, &idx, &data, &len), 0);
	assert_int_equal(idx, t->r.index);

	struct itab *other;
	assert_int_equal(fx_open_other(&t->fx, "other", &other), 0);
	struct fsm *f2;
	assert_int_equal(fsm_new(other, SELF, &f2), 0);
	struct repl_sm sm2 = fsm_sm(f2);
	assert_int_equal(sm2.restore(sm2.ctx, idx, data, len), 0);
	free(data);
	assert_int_equal(sm2.applied(sm2.ctx), idx);
	uint64_t ino;
	struct itab_attr a;
	assert_int_equal(itab_lookup(other, ITAB_ROOT_INO, "snapdir", 7, &ino, &a), 0);
	assert_true(S_ISDIR(a.mode));
	fsm_free(f2);
	itab_close(other);
}

static void test_restore_asks_the_data_path_for_missing_blocks(void **state)
{
	struct tfx *t = *state;
	struct itab_op op = op_create(ITAB_ROOT_INO, "snapfile");
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), 0);
	uint64_t idx, len;
	uint8_t *data;
	assert_int_equal(t->r.sm.snapshot(t->r.sm.ctx, &idx, &data, &len), 0);
	assert_int_equal(n_catch_up, 0); /* applying entries does not walk */

	struct itab *other;
	assert_int_equal(fx_open_other(&t->fx, "other", &other), 0);
	struct fsm *f2;
	assert_int_equal(fsm_new(other, SELF, &f2), 0);
	fsm_set_data(f2, (struct data *)&rec); /* any non-NULL */
	struct repl_sm sm2 = fsm_sm(f2);
	/* A malformed snapshot changes nothing and asks for nothing. */
	uint8_t junk[16] = {0};
	assert_true(sm2.restore(sm2.ctx, idx, junk, sizeof(junk)) < 0);
	assert_int_equal(n_catch_up, 0);
	assert_int_equal(sm2.restore(sm2.ctx, idx, data, len), 0);
	assert_int_equal(n_catch_up, 1);
	free(data);
	fsm_free(f2);
	itab_close(other);
}

struct sweep_ctx {
	uint64_t open_ino; /* "open here" */
	int asked;
};

static bool sweep_in_use(void *ctx, uint64_t ino)
{
	struct sweep_ctx *c = ctx;
	c->asked++;
	return ino == c->open_ino;
}

/* Create `name` and remove it as `origin` would while holding it open
 * (no ITAB_F_FREE_NOW): an orphan held by origin. Returns its inode. */
static uint64_t make_orphan(struct tfx *t, const char *name, uint64_t origin,
			    uint64_t seq)
{
	uint8_t res[256];
	size_t reslen;
	struct itab_op op = op_create(ITAB_ROOT_INO, name);
	apply_as(t, &op, origin, seq, res, &reslen);
	uint64_t ino;
	assert_int_equal(itab_lookup(t->fx.t, ITAB_ROOT_INO, name, strlen(name),
				     &ino, NULL), 0);
	struct itab_op rm = {.code = ITAB_OP_UNLINK, .parent = ITAB_ROOT_INO,
			     .name = name, .name_len = strlen(name), .now_ns = 2};
	apply_as(t, &rm, origin, seq + 1, res, &reslen);
	struct itab_attr a;
	assert_int_equal(itab_getattr(t->fx.t, ino, &a), 0);
	assert_int_equal(a.nlink, 0);
	return ino;
}

static int count_orphan(void *ctx, uint64_t ino)
{
	(void)ino;
	(*(int *)ctx)++;
	return 0;
}

static void test_release_frees_own_closed_orphans_only(void **state)
{
	struct tfx *t = *state;
	uint64_t mine1 = make_orphan(t, "m1", SELF, 100);
	uint64_t mine2 = make_orphan(t, "m2", SELF, 102);
	uint64_t open_here = make_orphan(t, "m3", SELF, 104);
	uint64_t theirs = make_orphan(t, "o1", OTHER, 100);
	struct itab_statfs st0;
	assert_int_equal(itab_statfs(t->fx.t, &st0), 0);
	assert_int_equal(st0.inodes, 5); /* root + 4 orphans */

	struct sweep_ctx c = {.open_ino = open_here};
	struct fsm_orphan_stats st;
	assert_int_equal(fsm_release_orphans_held_by(t->f, SELF, sweep_in_use,
						     NULL, &c, &st), 0);
	assert_int_equal(st.found, 3);
	assert_int_equal(st.released, 2);
	assert_int_equal(st.skipped, 1);
	assert_int_equal(st.refused + st.failed, 0);
	assert_int_equal(c.asked, 3);
	struct itab_attr a;
	assert_int_equal(itab_getattr(t->fx.t, mine1, &a), -ENOENT);
	assert_int_equal(itab_getattr(t->fx.t, mine2, &a), -ENOENT);
	assert_int_equal(itab_getattr(t->fx.t, open_here, &a), 0);
	assert_int_equal(itab_getattr(t->fx.t, theirs, &a), 0);
	int n = 0;
	assert_int_equal(itab_orphans_held_by(t->fx.t, SELF, count_orphan, &n), 0);
	assert_int_equal(n, 1); /* the open one */
	n = 0;
	assert_int_equal(itab_orphans_held_by(t->fx.t, OTHER, count_orphan, &n), 0);
	assert_int_equal(n, 1); /* another node's orphan is not ours to free */

	/* A replicator that fails proposals: counted, the orphan stays. */
	t->r.fail = -ETIMEDOUT;
	assert_int_equal(fsm_release_orphans_held_by(t->f, SELF, NULL, NULL,
						     NULL, &st), 0);
	assert_int_equal(st.found, 1);
	assert_int_equal(st.failed, 1);
	assert_int_equal(itab_getattr(t->fx.t, open_here, &a), 0);
	t->r.fail = 0;
	/* Without a replicator: -ENOTCONN. */
	fsm_set_repl(t->f, NULL);
	assert_int_equal(fsm_release_orphans_held_by(t->f, SELF, NULL, NULL,
						     NULL, &st), -ENOTCONN);
}

static bool always_stop(void *ctx)
{
	(void)ctx;
	return true;
}

static void test_release_stops_when_asked(void **state)
{
	struct tfx *t = *state;
	uint64_t ino = make_orphan(t, "s1", SELF, 200);
	struct fsm_orphan_stats st;
	assert_int_equal(fsm_release_orphans_held_by(t->f, SELF, NULL,
						     always_stop, NULL, &st), 0);
	assert_int_equal(st.found, 1);
	assert_int_equal(st.released, 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(t->fx.t, ino, &a), 0);
}

static void test_propose_before_repl_is_enotconn(void **state)
{
	struct tfx *t = *state;
	fsm_set_repl(t->f, NULL);
	struct itab_op op = op_create(ITAB_ROOT_INO, "z");
	assert_int_equal(fsm_propose_sync(t->f, &op, NULL), -ENOTCONN);
	assert_int_equal(fsm_read_index_sync(t->f, 100), -ENOTCONN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_propose_sync_returns_new_inode_and_attrs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_op_errno_reaches_the_proposer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replicator_failure_becomes_eio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envelope_origin_seq_dedupes_a_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_entry_advances_applied_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_entry_is_a_noop_that_advances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remote_ops_queue_invalidations_local_ops_do_not, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pages_kept_until_content_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_restores_into_another_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_propose_before_repl_is_enotconn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_asks_the_data_path_for_missing_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_frees_own_closed_orphans_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_stops_when_asked, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
