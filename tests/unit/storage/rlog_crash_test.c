/*
 * rlog_crash_test.c — SIGKILL a process that is appending to the Raft log
 * store and check what survives.
 *
 * A forked child appends batches in a loop (sometimes overwriting a short
 * suffix with a higher term, sometimes compacting), and after each synced
 * rlog_append() returns it writes (batch id, last index) to a pipe: that
 * batch is acknowledged. The parent SIGKILLs it after a random delay, then
 * reopens the log and checks:
 *   - load succeeds (consecutive indices, records intact);
 *   - every acknowledged entry is there: the log ends either exactly at the
 *     last acknowledged batch, or at the one batch that was in flight;
 *   - no half-written batch: the newest batch is complete (all K entries),
 *     every batch's run of entries starts at its entry 0 (unless compacted),
 *     and the hard state written with a batch matches the log's last batch.
 * Entry data: u64 batch id, u32 k, u32 K (k-th of K entries), padding.
 * Seeded: prints SEED=, replays with SEED=.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/rlog.h"
#include "storage/util.h"
#include "tests/unit/storage/testutil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#define ROUNDS 20

struct ack {
	uint64_t batch;
	uint64_t last;
};

/* The child's loop; never returns. */
static void child_run(const char *path, uint64_t rng, uint64_t first_batch,
                      int wfd)
{
	struct rlog *rl;
	if (rlog_open(path, &rl, NULL, 0) < 0)
		_exit(2);
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents;
	size_t n;
	if (rlog_load(rl, &hs, &snap, &ents, &n, NULL, 0) < 0)
		_exit(3);
	uint64_t term = hs.term ? hs.term : 1;
	if (n && ents[n - 1].term > term)
		term = ents[n - 1].term;
	rlog_entries_free(ents, n);
	rlog_snap_free(&snap);
	uint8_t buf[32][128];
	struct rlog_entry e[32];
	for (uint64_t batch = first_batch;; batch++) {
		uint64_t last = rlog_last_index(rl);
		uint64_t start = last + 1;
		uint64_t r = tu_rand(&rng);
		if (r % 6 == 0 && last > rlog_snap_index(rl) + 3) {
			start = last - (r >> 8) % 3; /* overwrite 1..3 */
			term++;
		}
		uint32_t k_total = 1 + (uint32_t)((r >> 16) % 32);
		for (uint32_t k = 0; k < k_total; k++) {
			uint32_t len = 16 + (uint32_t)(tu_rand(&rng) % 100);
			stor_put_be64(buf[k], batch);
			stor_put_be32(buf[k] + 8, k);
			stor_put_be32(buf[k] + 12, k_total);
			memset(buf[k] + 16, (int)k, len - 16);
			e[k] = (struct rlog_entry){.index = start + k,
			                           .term = term,
			                           .type = 1,
			                           .len = len,
			                           .data = buf[k]};
		}
		hs = (struct rlog_hard_state){
		    .term = term, .vote = batch, .commit = start};
		if (rlog_append(rl, &hs, e, k_total) < 0)
			_exit(4);
		struct ack a = {batch, rlog_last_index(rl)};
		if (write(wfd, &a, sizeof a) != sizeof a)
			_exit(5);
		if (batch % 8 == 0 &&
		    rlog_last_index(rl) > rlog_snap_index(rl) + 6) {
			struct rlog_entry at;
			struct rlog_snap s = {.index = rlog_last_index(rl) - 5};
			if (rlog_get(rl, s.index, &at) < 0)
				_exit(6);
			s.term = at.term;
			free(at.data);
			if (rlog_compact(rl, &s) < 0)
				_exit(7);
		}
	}
}

/* Decodes an entry's batch id and position. */
static void batch_of(const struct rlog_entry *e, uint64_t *id, uint32_t *k,
                     uint32_t *k_total)
{
	assert_true(e->len >= 16);
	*id = stor_get_be64(e->data);
	*k = stor_get_be32(e->data + 8);
	*k_total = stor_get_be32(e->data + 12);
	assert_true(*k < *k_total);
}

static void killed_appender_never_loses_acked_or_tears_a_batch(void **state)
{
	(void)state;
	uint64_t seed = tu_seed("rlog_crash_test");
	uint64_t rng = seed;
	char *tmp = tu_mkdtemp();
	char *path = tu_join(tmp, "raft");
	struct ack acked = {0, 0};
	int with_acks = 0;
	double t0 = tu_now();
	for (int round = 0; round < ROUNDS; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		uint64_t child_rng = tu_rand(&rng);
		uint64_t first_batch = (uint64_t)(round + 1) * 1000000;
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			child_run(path, child_rng, first_batch, p[1]);
		}
		close(p[1]);
		/* Odd rounds wait for a first acknowledgement (so a slow
		 * machine still tests acked batches); all kill at random. */
		if (round % 2) {
			struct pollfd pfd = {.fd = p[0], .events = POLLIN};
			assert_int_equal(poll(&pfd, 1, 10000), 1);
		}
		usleep((useconds_t)(2000 + tu_rand(&rng) % 60000));
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSIGNALED(status))
			fail_msg("round %d: child exited with %d before the "
			         "kill (SEED=%" PRIu64 ")",
			         round, WEXITSTATUS(status), seed);
		struct ack a;
		int acks = 0;
		while (read(p[0], &a, sizeof a) == sizeof a) {
			acked = a;
			acks++;
		}
		close(p[0]);
		with_acks += acks > 0;

		struct rlog *rl;
		char err[512] = "";
		assert_int_equal(rlog_open(path, &rl, err, sizeof err), 0);
		struct rlog_hard_state hs;
		struct rlog_snap snap;
		struct rlog_entry *ents;
		size_t n;
		int rc = rlog_load(rl, &hs, &snap, &ents, &n, err, sizeof err);
		if (rc != 0)
			fail_msg("round %d: load failed: %s (SEED=%" PRIu64 ")",
			         round, err, seed);
		uint64_t last = n ? ents[n - 1].index : snap.index;
		if (n == 0) {
			/* only before anything was ever acknowledged
			 * (compaction always keeps the last entries) */
			assert_int_equal(acked.batch, 0);
		} else {
			uint64_t id;
			uint32_t k, kt;
			batch_of(&ents[n - 1], &id, &k, &kt);
			/* the newest batch is whole */
			assert_int_equal(k, kt - 1);
			/* acked, or the one in flight when killed */
			if (id == acked.batch)
				assert_int_equal(last, acked.last);
			else if (id != acked.batch + 1 &&
			         !(acks == 0 && id > acked.batch))
				fail_msg("round %d: last batch %" PRIu64
				         " but acked %" PRIu64 " (SEED=%" PRIu64
				         ")",
				         round, id, acked.batch, seed);
			/* hard state came with that batch */
			assert_int_equal(hs.vote, id);
			/* every run starts at its entry 0, ids increase */
			uint64_t prev_id = 0;
			uint32_t prev_k = 0;
			for (size_t i = 0; i < n; i++) {
				batch_of(&ents[i], &id, &k, &kt);
				if (i > 0 && id == prev_id) {
					assert_int_equal(k, prev_k + 1);
				} else {
					assert_true(id > prev_id);
					if (i > 0 || snap.index == 0)
						assert_int_equal(k, 0);
				}
				prev_id = id;
				prev_k = k;
			}
			/* next round continues after what is there */
			batch_of(&ents[n - 1], &id, &k, &kt);
			acked.batch = id;
			acked.last = last;
		}
		rlog_entries_free(ents, n);
		rlog_snap_free(&snap);
		rlog_close(rl);
	}
	printf("rlog_crash_test: %d rounds (%d with acknowledged batches, "
	       "last index %" PRIu64 ") in %.2f s\n",
	       ROUNDS, with_acks, acked.last, tu_now() - t0);
	assert_true(with_acks > 0);
	free(path);
	tu_rmtree(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
	        killed_appender_never_loses_acked_or_tears_a_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
