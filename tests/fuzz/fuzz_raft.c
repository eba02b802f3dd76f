/*
 * fuzz_raft.c — fuzz the decoders of consensus/ that read a peer's or the
 * disk's bytes, without the frame around them (fuzz_wire reaches the
 * message codec only behind a valid frame checksum):
 *
 *   first byte % 4 picks the decoder, the rest is its input
 *   0  raft_msg_decode: what it accepts must re-encode to the same bytes
 *      (the codec is canonical), entries must lie inside the input
 *   1  raft_conf_change_decode (a configuration entry's payload): the
 *      address comes out NUL-terminated and within its buffer
 *   2  repl_conf_decode (the configuration stored beside the Raft log and
 *      in a snapshot's metadata): at most RAFT_MAX_NODES nodes, every
 *      address NUL-terminated, and it re-encodes to the same bytes
 *   3  repl_status_decode (a peer's WIRE_KIND_STATUS reply): a bounded,
 *      NUL-terminated description, at most RAFT_MAX_NODES nodes
 *
 * Anything else is a bug and aborts.
 */
#include "consensus/raft.h"
#include "consensus/repl_internal.h"
#include "tests/fuzz/fuzz_util.h"

static void check_msg(const uint8_t *p, size_t n)
{
	struct raft_msg m;
	struct raft_entry *ents = NULL;
	if (raft_msg_decode(p, n, &m, &ents) != 0) {
		if (ents)
			abort(); /* nothing to free on failure */
		return;
	}
	for (uint32_t i = 0; i < m.n_entries; i++) {
		const struct raft_entry *e = &m.entries[i];
		if (e->len && (e->data < p || e->data + e->len > p + n))
			abort();
	}
	if (m.len && (m.data < p || m.data + m.len > p + n))
		abort();
	size_t need = raft_msg_encode(&m, NULL, 0);
	if (need != n)
		abort();
	uint8_t *again = malloc(need ? need : 1);
	if (!again || raft_msg_encode(&m, again, need) != need ||
	    memcmp(again, p, need) != 0)
		abort();
	free(again);
	free(ents);
}

static void check_conf_change(const uint8_t *p, size_t n)
{
	uint8_t op = 0;
	raft_id node = 0;
	char addr[RAFT_ADDR_MAX + 8];
	memset(addr, 'x', sizeof addr);
	if (raft_conf_change_decode(p, (uint32_t)n, &op, &node, addr,
				    RAFT_ADDR_MAX) != 0)
		return;
	if (op < RAFT_CONF_ADD_LEARNER || op > RAFT_CONF_REMOVE || node == 0)
		abort();
	if (!memchr(addr, 0, RAFT_ADDR_MAX) || addr[RAFT_ADDR_MAX] != 'x')
		abort();
	/* a smaller buffer truncates, never overflows */
	char small[5];
	memset(small, 'x', sizeof small);
	if (raft_conf_change_decode(p, (uint32_t)n, NULL, NULL, small, 4) != 0 ||
	    !memchr(small, 0, 4) || small[4] != 'x')
		abort();
}

static void check_conf(const uint8_t *p, size_t n)
{
	struct raft_conf c;
	if (repl_conf_decode(p, n, &c) != 0)
		return;
	if (c.n > RAFT_MAX_NODES)
		abort();
	for (uint32_t i = 0; i < c.n; i++)
		if (!memchr(c.nodes[i].addr, 0, RAFT_ADDR_MAX))
			abort();
	size_t need = repl_conf_encode(&c, NULL, 0);
	uint8_t *again = malloc(need ? need : 1);
	if (!again)
		abort();
	/* an empty input is "no configuration" and encodes as the
	 * 4-byte empty list */
	if (n && (need != n || repl_conf_encode(&c, again, need) != need ||
		  memcmp(again, p, n) != 0))
		abort();
	free(again);
}

static void check_status(const uint8_t *p, size_t n)
{
	struct repl_status st;
	char desc[300];
	memset(desc, 'x', sizeof desc);
	if (repl_status_decode(p, n, &st, desc, 256) != 0)
		return;
	if (!memchr(desc, 0, 256) || desc[256] != 'x')
		abort();
	if (st.raft.conf.n > RAFT_MAX_NODES || st.raft.role > RAFT_LEADER)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t *buf = fz_copy(data + 1, size - 1);
	size_t n = size - 1;
	switch (data[0] % 4) {
	case 0:
		check_msg(buf, n);
		break;
	case 1:
		check_conf_change(buf, n);
		break;
	case 2:
		check_conf(buf, n);
		break;
	case 3:
		check_status(buf, n);
		break;
	}
	free(buf);
	return 0;
}
