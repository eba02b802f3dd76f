/* Unit tests of locks and open records: the range rules of locktab.c
 * (split, merge, convert, conflicts; a randomized comparison with a
 * per-byte model) and the itab ops SETLK, LOCK_RENEW, RELEASE_NODE, OPEN
 * and CLOSE (owner and node release, leases, orphans held by the set of
 * nodes that have them open). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fs/locktab.h"
#include "itab_test_util.h"

#define EOFR ITAB_LK_EOF
#define RD ITAB_LK_READ
#define WR ITAB_LK_WRITE
#define UN ITAB_LK_UNLOCK

static struct itab_lock L(uint64_t node, uint64_t owner, uint8_t type, uint64_t start,
			  uint64_t end)
{
	struct itab_lock l = {.kind = ITAB_LK_POSIX, .type = type, .node = node,
			      .owner = owner, .start = start, .end = end};
	return l;
}

/* Apply req to mine and check the result is exactly want (type, start, end). */
static void check_apply(const struct itab_lock *mine, size_t n, struct itab_lock req,
			const struct itab_lock *want, size_t nwant)
{
	struct itab_lock out[16];
	assert_true(n + 2 <= 16);
	long k = locktab_apply(mine, n, &req, out);
	assert_int_equal(k, (long)nwant);
	for (size_t i = 0; i < nwant; i++) {
		assert_int_equal(out[i].type, want[i].type);
		assert_int_equal(out[i].start, want[i].start);
		assert_int_equal(out[i].end, want[i].end);
		assert_int_equal(out[i].node, req.node);
		assert_int_equal(out[i].owner, req.owner);
	}
}

/* ---- locktab: pure rules ------------------------------------------------ */

static void test_conflicts_follow_shared_and_exclusive_rules(void **state)
{
	(void)state;
	struct itab_lock set[] = {L(1, 7, RD, 0, 99), L(2, 7, WR, 200, 299)};
	struct itab_lock r;
	r = L(3, 1, RD, 50, 60); /* read beside a read: shared */
	assert_int_equal(locktab_conflict(set, 2, &r), -1);
	r = L(3, 1, WR, 99, 99); /* write over a read */
	assert_int_equal(locktab_conflict(set, 2, &r), 0);
	r = L(3, 1, RD, 100, 199); /* between both: no overlap */
	assert_int_equal(locktab_conflict(set, 2, &r), -1);
	r = L(3, 1, RD, 150, EOFR); /* read over a write */
	assert_int_equal(locktab_conflict(set, 2, &r), 1);
	r = L(1, 7, WR, 0, EOFR); /* the owner itself never conflicts ... */
	assert_int_equal(locktab_conflict(set, 1, &r), -1);
	r = L(2, 7, WR, 0, 10); /* ... but the same owner id on another node does */
	assert_int_equal(locktab_conflict(set, 1, &r), 0);
	r = L(1, 8, WR, 0, 10); /* as does another owner on the same node */
	assert_int_equal(locktab_conflict(set, 1, &r), 0);
	r = L(3, 1, UN, 0, EOFR); /* an unlock is never blocked */
	assert_int_equal(locktab_conflict(set, 2, &r), -1);
}

static void test_unlock_in_the_middle_splits_a_lock(void **state)
{
	(void)state;
	struct itab_lock mine[] = {L(1, 7, WR, 0, 99)};
	struct itab_lock want[] = {L(1, 7, WR, 0, 39), L(1, 7, WR, 60, 99)};
	check_apply(mine, 1, L(1, 7, UN, 40, 59), want, 2);
}

static void test_converting_the_middle_gives_three_pieces(void **state)
{
	(void)state;
	struct itab_lock mine[] = {L(1, 7, RD, 0, 99)};
	struct itab_lock want[] = {L(1, 7, RD, 0, 39), L(1, 7, WR, 40, 59),
				   L(1, 7, RD, 60, 99)};
	check_apply(mine, 1, L(1, 7, WR, 40, 59), want, 3);
}

static void test_adjacent_same_type_locks_merge_others_do_not(void **state)
{
	(void)state;
	struct itab_lock mine[] = {L(1, 7, RD, 0, 9), L(1, 7, RD, 20, 29)};
	struct itab_lock want[] = {L(1, 7, RD, 0, 29)};
	check_apply(mine, 2, L(1, 7, RD, 10, 19), want, 1);
	struct itab_lock mine2[] = {L(1, 7, RD, 0, 9)};
	struct itab_lock want2[] = {L(1, 7, RD, 0, 9), L(1, 7, WR, 10, 19)};
	check_apply(mine2, 1, L(1, 7, WR, 10, 19), want2, 2);
	/* an overlapping same-type request absorbs what it covers */
	struct itab_lock mine3[] = {L(1, 7, WR, 5, 15), L(1, 7, WR, 30, 40)};
	struct itab_lock want3[] = {L(1, 7, WR, 5, 40)};
	check_apply(mine3, 2, L(1, 7, WR, 10, 35), want3, 1);
}

static void test_new_type_replaces_overlapped_parts(void **state)
{
	(void)state;
	struct itab_lock mine[] = {L(1, 7, WR, 10, 20), L(1, 7, WR, 30, 40)};
	struct itab_lock want[] = {L(1, 7, WR, 10, 14), L(1, 7, RD, 15, 35),
				   L(1, 7, WR, 36, 40)};
	check_apply(mine, 2, L(1, 7, RD, 15, 35), want, 3);
}

static void test_ranges_to_end_of_file(void **state)
{
	(void)state;
	struct itab_lock mine[] = {L(1, 7, WR, 100, EOFR)};
	struct itab_lock want[] = {L(1, 7, WR, 100, 199)};
	check_apply(mine, 1, L(1, 7, UN, 200, EOFR), want, 1);
	/* a lock ending at EOF has no right neighbour to merge with */
	struct itab_lock want2[] = {L(1, 7, WR, 0, EOFR)};
	check_apply(mine, 1, L(1, 7, WR, 0, 99), want2, 1);
	struct itab_lock want3[] = {L(1, 7, WR, 100, EOFR)};
	check_apply(mine, 1, L(1, 7, WR, EOFR, EOFR), want3, 1);
	/* unlock everything */
	check_apply(mine, 1, L(1, 7, UN, 0, EOFR), NULL, 0);
}

static void test_bad_requests_and_overlapping_input_are_refused(void **state)
{
	(void)state;
	struct itab_lock out[8], r = L(1, 7, WR, 10, 9);
	assert_int_equal(locktab_apply(NULL, 0, &r, out), -EINVAL);
	r = L(1, 7, 9, 0, 9);
	assert_int_equal(locktab_apply(NULL, 0, &r, out), -EINVAL);
	/* never written by apply: overlapping locks of one owner */
	struct itab_lock bad[] = {L(1, 7, WR, 0, 100), L(1, 7, RD, 0, 100),
				  L(1, 7, WR, 0, 100)};
	r = L(1, 7, UN, 50, 50);
	assert_int_equal(locktab_apply(bad, 3, &r, out), -EIO);
}

/* Randomized: three owners lock and unlock random ranges of a 64-byte
 * file; the owners' lock lists must equal a per-byte model (which owner
 * holds which type on each byte, conflicts refused), stay sorted,
 * disjoint, and merged (no two adjacent pieces of one type). */
#define NB 64
static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_random_ops_match_a_per_byte_model(void **state)
{
	(void)state;
	const char *env = getenv("SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed1234abcdull;
	printf("test_random_ops_match_a_per_byte_model: SEED=%llu\n",
	       (unsigned long long)seed);
	uint64_t s = seed ? seed : 1;
	uint8_t model[3][NB] = {{0}};
	struct itab_lock own[3][NB + 2];
	size_t n[3] = {0};
	for (int step = 0; step < 20000; step++) {
		int o = (int)(rnd_next(&s) % 3);
		uint64_t a = rnd_next(&s) % NB, b = rnd_next(&s) % NB;
		if (a > b) {
			uint64_t t = a;
			a = b, b = t;
		}
		uint8_t type = (uint8_t)(rnd_next(&s) % 3);
		struct itab_lock req = L(1, (uint64_t)o + 1, type, a, b);
		/* the model's verdict */
		bool blocked = false;
		for (int p = 0; p < 3 && type != UN; p++)
			for (uint64_t x = a; x <= b && p != o; x++)
				if (model[p][x] && (model[p][x] == WR || type == WR))
					blocked = true;
		struct itab_lock all[3 * (NB + 2)];
		size_t na = 0;
		for (int p = 0; p < 3; p++)
			for (size_t i = 0; i < n[p]; i++)
				all[na++] = own[p][i];
		assert_int_equal(locktab_conflict(all, na, &req) >= 0, blocked);
		if (blocked)
			continue;
		for (uint64_t x = a; x <= b; x++)
			model[o][x] = type;
		struct itab_lock out[NB + 2];
		long k = locktab_apply(own[o], n[o], &req, out);
		assert_true(k >= 0 && k <= NB);
		memcpy(own[o], out, (size_t)k * sizeof(out[0]));
		n[o] = (size_t)k;
		/* compare owner o's list with the model */
		uint8_t got[NB] = {0};
		for (size_t i = 0; i < n[o]; i++) {
			struct itab_lock *l = &own[o][i];
			assert_true(l->type == RD || l->type == WR);
			assert_true(l->start <= l->end && l->end < NB);
			if (i) {
				struct itab_lock *p = &own[o][i - 1];
				assert_true(p->end < l->start);
				assert_false(p->end + 1 == l->start && p->type == l->type);
			}
			for (uint64_t x = l->start; x <= l->end; x++)
				got[x] = l->type;
		}
		if (memcmp(got, model[o], NB) != 0)
			fail_msg("owner %d differs from the model at step %d (SEED=%llu)", o,
				 step, (unsigned long long)seed);
	}
}

/* ---- itab ops -------------------------------------------------------------- */

static uint64_t g_seq; /* request seqs for dedupe (unique per test run) */

/* A lock op from node origin. */
static int do_lock(struct fx *f, uint64_t origin, uint64_t ino, uint8_t kind, uint8_t type,
		   uint64_t owner, uint64_t start, uint64_t end, uint64_t gen,
		   uint64_t incarnation)
{
	struct itab_lock lk = {.kind = kind, .type = type, .owner = owner, .start = start,
			       .end = end, .gen = gen, .incarnation = incarnation,
			       .pid = 4242};
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&lk, pl);
	struct itab_op op = {.code = ITAB_OP_SETLK, .origin = origin, .seq = ++g_seq,
			     .ino = ino, .value = pl, .value_len = sizeof(pl)};
	return fx_apply(f, &op);
}

static int posix(struct fx *f, uint64_t node, uint64_t ino, uint8_t type, uint64_t owner,
		 uint64_t start, uint64_t end)
{
	return do_lock(f, node, ino, ITAB_LK_POSIX, type, owner, start, end, 0, 1);
}

/* An op with a lock payload (RENEW, RELEASE_NODE, OPEN, CLOSE). */
static int do_pl(struct fx *f, uint8_t code, uint64_t origin, uint64_t ino,
		 const struct itab_lock *lk)
{
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(lk, pl);
	struct itab_op op = {.code = code, .origin = origin, .seq = ++g_seq, .ino = ino,
			     .value = pl, .value_len = sizeof(pl)};
	return fx_apply(f, &op);
}

static int do_open(struct fx *f, uint64_t node, uint64_t ino, uint64_t inc, uint64_t seq)
{
	struct itab_lock lk = {.incarnation = inc, .seq = seq};
	return do_pl(f, ITAB_OP_OPEN, node, ino, &lk);
}

static int do_close(struct fx *f, uint64_t node, uint64_t ino, uint64_t inc, uint64_t seq)
{
	struct itab_lock lk = {.incarnation = inc, .seq = seq};
	return do_pl(f, ITAB_OP_CLOSE, node, ino, &lk);
}

static int do_release_node(struct fx *f, uint64_t origin, uint64_t node, uint64_t keep,
			   uint64_t since, uint32_t what)
{
	struct itab_lock lk = {.node = node, .incarnation = keep, .since = since, .what = what};
	return do_pl(f, ITAB_OP_RELEASE_NODE, origin, 0, &lk);
}

static uint64_t mkfile(struct fx *f, const char *name)
{
	assert_int_equal(do_create(f, 1, name, S_IFREG | 0644), 0);
	return f->res.ino;
}

struct lcount {
	size_t n;
	struct itab_lock l[16];
};

static int lcount_cb(void *ctx, const struct itab_lock *l)
{
	struct lcount *c = ctx;
	if (c->n < 16)
		c->l[c->n] = *l;
	c->n++;
	return 0;
}

static struct lcount locks_of(struct fx *f, uint64_t ino, uint8_t kind, uint64_t node)
{
	struct lcount c = {0};
	assert_int_equal(itab_locks(f->t, ino, kind, node, lcount_cb, &c), 0);
	return c;
}

static struct itab_node_rec nrec(struct fx *f, uint64_t node)
{
	struct itab_node_rec r;
	assert_int_equal(itab_node_get(f->t, node, &r), 0);
	return r;
}

static void test_setlk_grants_refuses_and_getlk_reports_the_holder(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(posix(f, 1, ino, WR, 7, 100, 199), 0);
	/* the same owner id on node 2 is another owner */
	assert_int_equal(posix(f, 2, ino, RD, 7, 150, 160), -EAGAIN);
	assert_int_equal(posix(f, 1, ino, RD, 8, 199, 300), -EAGAIN);
	assert_int_equal(posix(f, 2, ino, WR, 7, 200, 299), 0);
	struct itab_lock q = L(0, 7, RD, 150, 150), c;
	assert_int_equal(itab_getlk(f->t, ino, 2, &q, &c), 1);
	assert_int_equal(c.node, 1);
	assert_int_equal(c.owner, 7);
	assert_int_equal(c.type, WR);
	assert_int_equal(c.start, 100);
	assert_int_equal(c.end, 199);
	assert_int_equal(c.pid, 4242);
	/* the owner's own lock is not reported to it */
	q = L(0, 7, WR, 100, 199);
	assert_int_equal(itab_getlk(f->t, ino, 1, &q, &c), 0);
	assert_int_equal(nrec(f, 1).nlocks, 1);
	assert_int_equal(nrec(f, 2).nlocks, 1);
	/* a refused request changed nothing, then the unlock frees the range */
	assert_int_equal(posix(f, 1, ino, UN, 7, 0, EOFR), 0);
	assert_int_equal(nrec(f, 1).nlocks, 0);
	assert_int_equal(posix(f, 2, ino, RD, 7, 150, 160), 0);
	assert_int_equal(locks_of(f, ino, ITAB_LK_POSIX, 2).n, 2);
	/* a lock on a missing inode */
	assert_int_equal(posix(f, 1, 999, WR, 7, 0, 1), -ENOENT);
}

static void test_setlk_split_and_merge_are_stored(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(posix(f, 1, ino, WR, 7, 100, 199), 0);
	assert_int_equal(posix(f, 1, ino, UN, 7, 140, 159), 0);
	struct lcount c = locks_of(f, ino, ITAB_LK_POSIX, 1);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.l[0].start, 100);
	assert_int_equal(c.l[0].end, 139);
	assert_int_equal(c.l[1].start, 160);
	assert_int_equal(c.l[1].end, 199);
	assert_int_equal(nrec(f, 1).nlocks, 2);
	/* node 2 gets exactly the hole */
	assert_int_equal(posix(f, 2, ino, WR, 1, 140, 159), 0);
	assert_int_equal(posix(f, 2, ino, WR, 1, 139, 139), -EAGAIN);
	assert_int_equal(posix(f, 2, ino, UN, 1, 0, EOFR), 0);
	/* filling it merges the pieces back into one */
	assert_int_equal(posix(f, 1, ino, WR, 7, 140, 159), 0);
	c = locks_of(f, ino, ITAB_LK_POSIX, 1);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.l[0].start, 100);
	assert_int_equal(c.l[0].end, 199);
	assert_int_equal(nrec(f, 1).nlocks, 1);
}

static void test_flock_is_whole_file_and_apart_from_posix(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_FLOCK, WR, 5, 10, 20, 0, 1), 0);
	struct lcount c = locks_of(f, ino, ITAB_LK_FLOCK, 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.l[0].start, 0); /* the range is ignored */
	assert_int_equal(c.l[0].end, EOFR);
	/* POSIX locks do not see flock locks, and the other way round */
	assert_int_equal(posix(f, 2, ino, WR, 5, 0, EOFR), 0);
	assert_int_equal(do_lock(f, 2, ino, ITAB_LK_FLOCK, RD, 5, 0, 0, 0, 1), -EAGAIN);
	/* a downgrade to shared lets node 2 share it */
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_FLOCK, RD, 5, 0, 0, 0, 1), 0);
	assert_int_equal(do_lock(f, 2, ino, ITAB_LK_FLOCK, RD, 5, 0, 0, 0, 1), 0);
	assert_int_equal(locks_of(f, ino, ITAB_LK_FLOCK, 0).n, 2);
}

/* Linux drops the old flock before a conversion waits; a refused POSIX
 * upgrade keeps the old lock. */
static void test_refused_flock_conversion_drops_the_old_lock(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_FLOCK, RD, 5, 0, 0, 0, 1), 0);
	assert_int_equal(do_lock(f, 2, ino, ITAB_LK_FLOCK, RD, 6, 0, 0, 0, 1), 0);
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_FLOCK, WR, 5, 0, 0, 0, 1), -EAGAIN);
	assert_int_equal(f->res.ino, ino); /* refused, but it changed the table */
	assert_int_equal(locks_of(f, ino, ITAB_LK_FLOCK, 1).n, 0);
	assert_int_equal(nrec(f, 1).nlocks, 0);
	/* now node 2 can upgrade */
	assert_int_equal(do_lock(f, 2, ino, ITAB_LK_FLOCK, WR, 6, 0, 0, 0, 1), 0);
	/* POSIX: the refused upgrade leaves the read lock */
	assert_int_equal(posix(f, 1, ino, RD, 5, 0, 99), 0);
	assert_int_equal(posix(f, 2, ino, RD, 6, 0, 99), 0);
	assert_int_equal(posix(f, 1, ino, WR, 5, 0, 99), -EAGAIN);
	assert_int_equal(f->res.ino, 0); /* a plain refusal changed nothing */
	struct lcount c = locks_of(f, ino, ITAB_LK_POSIX, 1);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.l[0].type, RD);
}

/* The lease: a release with `since` applies only while the node has not
 * renewed; a release bumps the generation, and ops carrying the old one
 * are refused with -ESTALE. */
static void test_lease_release_needs_silence_and_bumps_the_generation(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(posix(f, 1, ino, WR, 7, 0, 9), 0);
	uint64_t idx = nrec(f, 1).lease_idx;
	assert_int_equal(idx, f->index);
	/* the node renews: a release decided on the older index is refused */
	struct itab_lock renew = {.gen = 0};
	assert_int_equal(do_pl(f, ITAB_OP_LOCK_RENEW, 1, 0, &renew), 0);
	assert_int_equal(nrec(f, 1).lease_idx, f->index);
	assert_int_equal(do_release_node(f, 2, 1, 0, idx, ITAB_REL_LOCKS), -EAGAIN);
	assert_int_equal(nrec(f, 1).nlocks, 1);
	assert_int_equal(nrec(f, 1).gen, 0);
	/* silent since its renewal: released, generation 1 */
	idx = nrec(f, 1).lease_idx;
	assert_int_equal(do_release_node(f, 2, 1, 0, idx, ITAB_REL_LOCKS), 0);
	assert_int_equal(f->res.ino, 1);
	assert_int_equal(nrec(f, 1).nlocks, 0);
	assert_int_equal(nrec(f, 1).gen, 1);
	assert_int_equal(locks_of(f, ino, 0, 1).n, 0);
	/* a renewal or lock still carrying generation 0 is refused */
	assert_int_equal(do_pl(f, ITAB_OP_LOCK_RENEW, 1, 0, &renew), -ESTALE);
	assert_int_equal(posix(f, 1, ino, WR, 7, 0, 9), -ESTALE);
	assert_int_equal(locks_of(f, ino, 0, 1).n, 0);
	renew.gen = 1;
	assert_int_equal(do_pl(f, ITAB_OP_LOCK_RENEW, 1, 0, &renew), 0);
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_POSIX, WR, 7, 0, 9, 1, 1), 0);
	/* other nodes' locks are untouched by a node's release */
	assert_int_equal(posix(f, 2, ino, RD, 3, 20, 29), 0);
	assert_int_equal(do_release_node(f, 3, 1, 0, 0, ITAB_REL_LOCKS), 0);
	assert_int_equal(locks_of(f, ino, 0, 2).n, 1);
	assert_int_equal(locks_of(f, ino, 0, 1).n, 0);
}

/* A restart releases what earlier incarnations held, not its own. */
static void test_release_node_keeps_the_current_incarnation(void **state)
{
	struct fx *f = *state;
	uint64_t a = mkfile(f, "a"), b = mkfile(f, "b");
	assert_int_equal(do_lock(f, 1, a, ITAB_LK_POSIX, WR, 7, 0, 9, 0, 5), 0);
	assert_int_equal(do_lock(f, 1, b, ITAB_LK_FLOCK, WR, 7, 0, 0, 0, 6), 0);
	assert_int_equal(do_open(f, 1, a, 5, 1), 0);
	assert_int_equal(do_open(f, 1, b, 6, 1), 0);
	assert_int_equal(nrec(f, 1).nopen, 2);
	assert_int_equal(do_release_node(f, 1, 1, 6, 0, ITAB_REL_LOCKS | ITAB_REL_OPENS), 0);
	assert_int_equal(locks_of(f, a, 0, 1).n, 0);
	assert_int_equal(locks_of(f, b, 0, 1).n, 1);
	struct itab_node_rec r = nrec(f, 1);
	assert_int_equal(r.nlocks, 1);
	assert_int_equal(r.nopen, 1);
	assert_int_equal(r.gen, 1);
	/* the kept open record is still this incarnation's */
	assert_int_equal(do_close(f, 1, b, 6, 1), 0);
	assert_int_equal(do_close(f, 1, a, 5, 1), -ENOENT);
}

struct holders {
	size_t n;
	uint64_t node[8];
};

static int holders_cb(void *ctx, uint64_t node, uint64_t inc, uint64_t seq)
{
	struct holders *h = ctx;
	if (h->n < 8)
		h->node[h->n] = node;
	h->n++;
	return 0;
}

static struct holders holders_of(struct fx *f, uint64_t ino)
{
	struct holders h = {0};
	assert_int_equal(itab_open_holders(f->t, ino, holders_cb, &h), 0);
	return h;
}

/* Write one block into ino (hash byte b, len bytes). */
static void write_block(struct fx *f, uint64_t ino, uint8_t b, uint32_t len)
{
	struct itab_extent e = {.index = 0, .len = len};
	mkhash(e.hash, b);
	struct itab_op op = op_mk(ITAB_OP_WRITE, 0, NULL);
	op.ino = ino;
	op.extents = &e;
	op.n_extents = 1;
	op.size = len;
	assert_int_equal(fx_apply(f, &op), 0);
}

/* A file unlinked while open on two nodes stays until the last of them
 * closes it; then it and its blocks are freed. */
static void test_orphan_lives_until_the_last_node_closes(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	write_block(f, ino, 0xab, 1000);
	uint8_t h[ITAB_HASH_LEN];
	mkhash(h, 0xab);
	assert_int_equal(do_open(f, 2, ino, 1, 10), 0);
	assert_int_equal(do_open(f, 3, ino, 1, 20), 0);
	assert_int_equal(holders_of(f, ino).n, 2);
	/* node 1 (which does not have it open) unlinks it: an orphan */
	assert_int_equal(do_unlink(f, 1, "f", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.orphaned, ino);
	assert_int_equal(ga(f, ino).nlink, 0);
	/* a stale CLOSE (overtaken by a later OPEN) leaves the record */
	assert_int_equal(do_close(f, 2, ino, 1, 9), -ESTALE);
	assert_int_equal(do_close(f, 2, ino, 2, 10), -ESTALE);
	assert_int_equal(do_close(f, 2, ino, 1, 10), 0);
	assert_int_equal(ga(f, ino).ino, ino); /* node 3 still holds it */
	assert_int_equal(itab_block_refs(f->t, h), 1);
	/* the legacy release may not free it under node 3 */
	assert_int_equal(do_release(f, ino), -EBUSY);
	assert_int_equal(do_close(f, 3, ino, 1, 20), 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(f->t, ino, &a), -ENOENT);
	assert_int_equal(itab_block_refs(f->t, h), 0);
	assert_int_equal(f->res.n_freed, 1);
	assert_int_equal(nrec(f, 2).nopen, 0);
	assert_int_equal(nrec(f, 3).nopen, 0);
	assert_int_equal(holders_of(f, ino).n, 0);
}

/* OPEN of an orphan's holder again replaces its record; OPEN counts a
 * node once per inode. */
static void test_open_again_replaces_the_record(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(do_open(f, 2, ino, 1, 1), 0);
	assert_int_equal(do_open(f, 2, ino, 1, 2), 0); /* applied before CLOSE 1 */
	assert_int_equal(nrec(f, 2).nopen, 1);
	assert_int_equal(do_close(f, 2, ino, 1, 1), -ESTALE);
	assert_int_equal(holders_of(f, ino).n, 1);
	assert_int_equal(do_close(f, 2, ino, 1, 2), 0);
	assert_int_equal(holders_of(f, ino).n, 0);
	assert_int_equal(do_open(f, 2, 999, 1, 3), -ENOENT);
	/* without an open record, UNLINK with FREE_NOW frees at once */
	assert_int_equal(do_unlink(f, 1, "f", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.orphaned, 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(f->t, ino, &a), -ENOENT);
}

/* CREATE with ITAB_F_OPEN records its creator as a holder; rename over
 * an open file keeps the victim as an orphan too. */
static void test_create_open_and_rename_victims(void **state)
{
	struct fx *f = *state;
	struct itab_lock rec = {.incarnation = 9, .seq = 1};
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&rec, pl);
	struct itab_op op = op_mk(ITAB_OP_CREATE, 1, "v");
	op.mode = S_IFREG | 0644;
	op.flags = ITAB_F_OPEN;
	op.origin = 4;
	op.seq = ++g_seq;
	op.value = pl;
	op.value_len = sizeof(pl);
	assert_int_equal(fx_apply(f, &op), 0);
	uint64_t v = f->res.ino;
	struct holders h = holders_of(f, v);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.node[0], 4);
	/* a directory cannot be created "open" */
	op = op_mk(ITAB_OP_MKDIR, 1, "d");
	op.mode = 0755;
	op.flags = ITAB_F_OPEN;
	op.origin = 4;
	op.seq = ++g_seq;
	op.value = pl;
	op.value_len = sizeof(pl);
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	assert_int_equal(lk(f, 1, "d"), 0);
	mkfile(f, "w");
	assert_int_equal(do_rename(f, 1, "w", 1, "v", ITAB_F_FREE_NOW), 0);
	assert_int_equal(f->res.orphaned, v);
	assert_int_equal(ga(f, v).nlink, 0);
	assert_int_equal(do_close(f, 4, v, 9, 1), 0);
	struct itab_attr a;
	assert_int_equal(itab_getattr(f->t, v, &a), -ENOENT);
}

/* A node's open records go with a RELEASE_NODE (restart, removal): the
 * orphans they kept are freed unless another node holds them. */
static void test_release_node_frees_the_orphans_it_held(void **state)
{
	struct fx *f = *state;
	uint64_t a = mkfile(f, "a"), b = mkfile(f, "b");
	assert_int_equal(do_open(f, 2, a, 1, 1), 0);
	assert_int_equal(do_open(f, 2, b, 1, 2), 0);
	assert_int_equal(do_open(f, 3, b, 1, 1), 0);
	assert_int_equal(do_unlink(f, 1, "a", ITAB_F_FREE_NOW), 0);
	assert_int_equal(do_unlink(f, 1, "b", ITAB_F_FREE_NOW), 0);
	struct itab_statfs st;
	itab_statfs(f->t, &st);
	assert_int_equal(st.inodes, 3);
	assert_int_equal(do_release_node(f, 1, 2, 0, 0, ITAB_REL_OPENS), 0);
	assert_int_equal(f->res.ino, 0); /* no lock part: generation unchanged */
	struct itab_attr at;
	assert_int_equal(itab_getattr(f->t, a, &at), -ENOENT);
	assert_int_equal(itab_getattr(f->t, b, &at), 0); /* node 3 holds it */
	itab_statfs(f->t, &st);
	assert_int_equal(st.inodes, 2);
	assert_int_equal(nrec(f, 2).nopen, 0);
	assert_int_equal(do_release_node(f, 1, 3, 0, 0, ITAB_REL_OPENS), 0);
	assert_int_equal(itab_getattr(f->t, b, &at), -ENOENT);
	itab_statfs(f->t, &st);
	assert_int_equal(st.inodes, 1);
}

/* A file unlinked by an entry of the old format (no FREE_NOW, no open
 * records) stays an orphan held by its origin, as before. */
static void test_legacy_unlink_keeps_an_orphan_for_its_origin(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	struct itab_op op = op_mk(ITAB_OP_UNLINK, 1, "f");
	op.origin = 7;
	op.seq = ++g_seq;
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(f->res.orphaned, ino);
	assert_int_equal(do_release(f, ino), 0);
}

static void test_retried_lock_op_applies_once(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	struct itab_lock lk = {.kind = ITAB_LK_POSIX, .type = WR, .owner = 7, .end = 9};
	uint8_t pl[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&lk, pl);
	struct itab_op op = {.code = ITAB_OP_SETLK, .origin = 1, .seq = ++g_seq,
			     .ino = ino, .value = pl, .value_len = sizeof(pl)};
	assert_int_equal(fx_apply(f, &op), 0);
	assert_int_equal(posix(f, 1, ino, UN, 7, 0, EOFR), 0);
	assert_int_equal(posix(f, 2, ino, WR, 1, 0, 9), 0);
	/* the retry answers with the first result and takes nothing */
	assert_int_equal(fx_apply(f, &op), 0);
	assert_true(f->res.duplicate);
	assert_int_equal(locks_of(f, ino, 0, 1).n, 0);
}

static void test_bad_lock_ops_are_einval_and_change_nothing(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	/* no origin */
	assert_int_equal(do_lock(f, 0, ino, ITAB_LK_POSIX, WR, 7, 0, 9, 0, 1), -EINVAL);
	/* unknown kind, type; empty range */
	assert_int_equal(do_lock(f, 1, ino, 9, WR, 7, 0, 9, 0, 1), -EINVAL);
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_POSIX, 7, 7, 0, 9, 0, 1), -EINVAL);
	assert_int_equal(do_lock(f, 1, ino, ITAB_LK_POSIX, WR, 7, 10, 9, 0, 1), -EINVAL);
	/* payload of the wrong length or version */
	uint8_t pl[ITAB_LOCK_ENC_LEN + 1] = {0};
	struct itab_op op = {.code = ITAB_OP_SETLK, .origin = 1, .seq = ++g_seq,
			     .ino = ino, .value = pl, .value_len = ITAB_LOCK_ENC_LEN};
	assert_int_equal(fx_apply(f, &op), -EINVAL); /* version 0 */
	struct itab_lock good = {.kind = ITAB_LK_POSIX, .type = WR, .end = 1};
	itab_lock_encode(&good, pl);
	op.value_len = ITAB_LOCK_ENC_LEN - 1;
	op.seq = ++g_seq;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	op.value_len = 0;
	op.value = NULL;
	op.seq = ++g_seq;
	assert_int_equal(fx_apply(f, &op), -EINVAL);
	/* RELEASE_NODE of node 0, of nothing, of unknown parts */
	assert_int_equal(do_release_node(f, 1, 0, 0, 0, ITAB_REL_LOCKS), -EINVAL);
	assert_int_equal(do_release_node(f, 1, 2, 0, 0, 0), -EINVAL);
	assert_int_equal(do_release_node(f, 1, 2, 0, 0, 0x10), -EINVAL);
	/* CLOSE without a record, OPEN without origin */
	assert_int_equal(do_close(f, 1, ino, 1, 1), -ENOENT);
	assert_int_equal(do_open(f, 0, ino, 1, 1), -EINVAL);
	assert_int_equal(locks_of(f, ino, 0, 0).n, 0);
	assert_int_equal(holders_of(f, ino).n, 0);
	struct itab_lock q = {.kind = ITAB_LK_POSIX, .type = UN}, c;
	assert_int_equal(itab_getlk(f->t, ino, 1, &q, &c), -EINVAL);
}

static void test_lock_payload_roundtrips(void **state)
{
	(void)state;
	struct itab_lock a = {.kind = 2, .type = 1, .owner = 0x1122334455667788ull,
			      .start = 5, .end = EOFR, .pid = 77, .node = 3,
			      .incarnation = 99, .gen = 4, .since = 1234,
			      .what = 3, .seq = 42}, b;
	uint8_t buf[ITAB_LOCK_ENC_LEN];
	itab_lock_encode(&a, buf);
	assert_int_equal(itab_lock_decode(buf, sizeof(buf), &b), 0);
	assert_true(a.kind == b.kind && a.type == b.type && a.owner == b.owner &&
		    a.start == b.start && a.end == b.end && a.pid == b.pid &&
		    a.node == b.node && a.incarnation == b.incarnation &&
		    a.gen == b.gen && a.since == b.since && a.what == b.what &&
		    a.seq == b.seq);
	assert_int_equal(itab_lock_decode(buf, sizeof(buf) - 1, &b), -EINVAL);
	assert_int_equal(itab_lock_decode(NULL, 0, &b), -EINVAL);
	assert_string_equal(itab_op_name(ITAB_OP_SETLK), "SETLK");
	assert_string_equal(itab_op_name(ITAB_OP_CLOSE), "CLOSE");
}

/* Locks, open records and lease records travel in a snapshot. */
static void test_snapshot_carries_locks_and_open_records(void **state)
{
	struct fx *f = *state;
	uint64_t ino = mkfile(f, "f");
	assert_int_equal(posix(f, 1, ino, WR, 7, 100, 199), 0);
	assert_int_equal(do_open(f, 1, ino, 1, 1), 0);
	struct snapbuf sb = {0};
	assert_int_equal(itab_snapshot(f->t, snap_cb, &sb), 0);
	struct itab *t2;
	assert_int_equal(fx_open_other(f, "copy", &t2), 0);
	assert_int_equal(itab_restore(t2, sb.p, sb.len), 0);
	struct itab_lock q = L(0, 1, RD, 150, 150), c;
	assert_int_equal(itab_getlk(t2, ino, 2, &q, &c), 1);
	assert_int_equal(c.node, 1);
	struct itab_node_rec r;
	assert_int_equal(itab_node_get(t2, 1, &r), 0);
	assert_int_equal(r.nlocks, 1);
	assert_int_equal(r.nopen, 1);
	itab_close(t2);
	free(sb.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
		cmocka_unit_test(test_conflicts_follow_shared_and_exclusive_rules),
		cmocka_unit_test(test_unlock_in_the_middle_splits_a_lock),
		cmocka_unit_test(test_converting_the_middle_gives_three_pieces),
		cmocka_unit_test(test_adjacent_same_type_locks_merge_others_do_not),
		cmocka_unit_test(test_new_type_replaces_overlapped_parts),
		cmocka_unit_test(test_ranges_to_end_of_file),
		cmocka_unit_test(test_bad_requests_and_overlapping_input_are_refused),
		cmocka_unit_test(test_random_ops_match_a_per_byte_model),
		cmocka_unit_test(test_lock_payload_roundtrips),
		T(test_setlk_grants_refuses_and_getlk_reports_the_holder),
		T(test_setlk_split_and_merge_are_stored),
		T(test_flock_is_whole_file_and_apart_from_posix),
		T(test_refused_flock_conversion_drops_the_old_lock),
		T(test_lease_release_needs_silence_and_bumps_the_generation),
		T(test_release_node_keeps_the_current_incarnation),
		T(test_orphan_lives_until_the_last_node_closes),
		T(test_open_again_replaces_the_record),
		T(test_create_open_and_rename_victims),
		T(test_release_node_frees_the_orphans_it_held),
		T(test_legacy_unlink_keeps_an_orphan_for_its_origin),
		T(test_retried_lock_op_applies_once),
		T(test_bad_lock_ops_are_einval_and_change_nothing),
		T(test_snapshot_carries_locks_and_open_records),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
