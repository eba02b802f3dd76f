/*
 * fuzz_peers.c — fuzz the parsers of what a user types: the --peers list
 * (node_parse_peers) and one peer address (node_parse_addr, also used by
 * `sandfs member add`).
 *
 * Input: a string (NUL-terminated copy). Checks:
 *   - a refusal says why (err non-empty, NUL-terminated);
 *   - node_parse_addr gives "tcp://HOST:PORT" within RAFT_ADDR_MAX, and
 *     its output parses again to itself;
 *   - node_parse_peers gives 1..RAFT_MAX_NODES peers with distinct ids
 *     >= 1, each address one that node_parse_addr accepts unchanged
 *     (so a node never starts with an address it cannot dial).
 */
#include "fs/node.h"
#include "tests/fuzz/fuzz_util.h"

static void check_addr(const char *s)
{
	char out[RAFT_ADDR_MAX + 8], err[256], again[RAFT_ADDR_MAX + 8];
	err[0] = '\0';
	memset(out, 'x', sizeof out);
	if (node_parse_addr(s, out, RAFT_ADDR_MAX, err, sizeof err) != 0) {
		if (!err[0] || !memchr(err, 0, sizeof err))
			abort();
		return;
	}
	if (!memchr(out, 0, RAFT_ADDR_MAX) || strncmp(out, "tcp://", 6) != 0)
		abort();
	if (node_parse_addr(out, again, RAFT_ADDR_MAX, err, sizeof err) != 0 ||
	    strcmp(again, out) != 0)
		abort();
}

static void check_peers(const char *s)
{
	struct repl_peer p[RAFT_MAX_NODES + 1];
	size_t n = 99;
	char err[256];
	err[0] = '\0';
	if (node_parse_peers(s, p, RAFT_MAX_NODES, &n, err, sizeof err) != 0) {
		if (!err[0] || !memchr(err, 0, sizeof err))
			abort();
		return;
	}
	if (n < 1 || n > RAFT_MAX_NODES)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (p[i].id == 0 || !memchr(p[i].addr, 0, RAFT_ADDR_MAX))
			abort();
		for (size_t j = 0; j < i; j++)
			if (p[j].id == p[i].id)
				abort();
		char norm[RAFT_ADDR_MAX];
		if (node_parse_addr(p[i].addr, norm, sizeof norm, err, sizeof err) != 0 ||
		    strcmp(norm, p[i].addr) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	check_addr(s);
	check_peers(s);
	free(s);
	return 0;
}
