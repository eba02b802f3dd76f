/* Unit tests of the configuration encoding the replicator stores beside
 * the Raft log and in snapshot metadata (repl_conf_encode/_decode). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "consensus/repl_internal.h"

static const struct raft_conf three = {
    .n = 3,
    .nodes = {{.id = 1, .role = RAFT_VOTER, .addr = "tcp://127.0.0.1:7001"},
	      {.id = 2, .role = RAFT_VOTER, .addr = "tcp://127.0.0.2:7002"},
	      {.id = 9, .role = RAFT_LEARNER, .addr = "tcp://[::1]:7009"}}};

static void test_conf_round_trips(void **st)
{
	(void)st;
	uint8_t buf[512];
	size_t n = repl_conf_encode(&three, buf, sizeof buf);
	assert_true(n <= sizeof buf);
	struct raft_conf c;
	assert_int_equal(repl_conf_decode(buf, n, &c), 0);
	assert_int_equal(c.n, 3);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(c.nodes[i].id, three.nodes[i].id);
		assert_int_equal(c.nodes[i].role, three.nodes[i].role);
		assert_string_equal(c.nodes[i].addr, three.nodes[i].addr);
	}
	assert_int_equal(repl_conf_decode(buf, 0, &c), 0); /* none stored */
	assert_int_equal(c.n, 0);
}

/* Regression (found by fuzz_raft): the decoder took bytes the encoder
 * never writes — trailing bytes after the last node, an address with a
 * NUL inside (cut short in memory), a role other than voter/learner —
 * so a damaged record decoded into a configuration other than the one
 * stored. Each is refused now, as is every truncation. */
static void test_conf_decode_refuses_what_encode_never_writes(void **st)
{
	(void)st;
	uint8_t buf[512];
	size_t n = repl_conf_encode(&three, buf, sizeof buf);
	struct raft_conf c;
	for (size_t k = 1; k < n; k++)
		assert_int_equal(repl_conf_decode(buf, k, &c), -EINVAL);
	buf[n] = 0;
	assert_int_equal(repl_conf_decode(buf, n + 1, &c), -EINVAL);
	uint8_t bad[512];
	memcpy(bad, buf, n);
	bad[4 + 11 + 3] = 0; /* inside node 1's address */
	assert_int_equal(repl_conf_decode(bad, n, &c), -EINVAL);
	memcpy(bad, buf, n);
	bad[4 + 8] = 7; /* node 1's role */
	assert_int_equal(repl_conf_decode(bad, n, &c), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conf_round_trips),
	    cmocka_unit_test(test_conf_decode_refuses_what_encode_never_writes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
