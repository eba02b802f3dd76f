/*
 * gen_wire_corpus.c — write the seed corpus for fuzz_wire: small valid
 * frames of every kind and a few invalid ones, one file each.
 *
 *   gen_wire_corpus tests/fuzz/corpus/wire
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"
#include "tests/fuzz/fuzz_wire_cfg.h"
#include "transport/wire.h"

static const char *dir;

static void put(const char *name, const uint8_t *buf, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* Encode a frame of `type` around body; abort on failure. */
static uint8_t *frame(const struct wire_cfg *c, uint8_t type, uint16_t kind,
		      const uint8_t *body, size_t blen, size_t *len)
{
	struct wire_frame f = { .type = type, .from = 2, .req_id = type == WIRE_RAFT ? 0 : 17,
				.kind = kind, .body = body, .body_len = blen };
	uint8_t *out;
	if (wire_encode_alloc(c, &f, &out, len) != 0)
		abort();
	return out;
}

static uint8_t *raft(const struct raft_msg *m, size_t *len)
{
	*len = raft_msg_encode(m, NULL, 0);
	uint8_t *b = malloc(*len);
	if (!b || raft_msg_encode(m, b, *len) != *len)
		abort();
	return b;
}

static void reseal(uint8_t *b, size_t len)
{
	uint32_t c = wire_crc32c(0, b, len - 4);
	b[len - 4] = (uint8_t)(c >> 24);
	b[len - 3] = (uint8_t)(c >> 16);
	b[len - 2] = (uint8_t)(c >> 8);
	b[len - 1] = (uint8_t)c;
}

static void raft_frame(const char *name, const struct wire_cfg *c,
		       const struct raft_msg *m)
{
	size_t rl, fl;
	uint8_t *r = raft(m, &rl);
	uint8_t *f = frame(c, WIRE_RAFT, 0, r, rl, &fl);
	put(name, f, fl);
	free(f);
	free(r);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	const struct wire_cfg crc = { .cluster_id = FUZZ_CLUSTER_ID };
	const struct wire_cfg mac = { .cluster_id = FUZZ_CLUSTER_ID,
				      .secret = (const uint8_t *)FUZZ_SECRET,
				      .secret_len = sizeof FUZZ_SECRET - 1 };
	const struct wire_cfg other = { .cluster_id = 1 };

	/* valid frames */
	struct raft_entry ents[2] = {
		{ .term = 3, .index = 10, .type = RAFT_ENTRY_NORMAL, .len = 5,
		  .data = (uint8_t *)"hello" },
		{ .term = 3, .index = 11, .type = RAFT_ENTRY_NOOP },
	};
	struct raft_msg app = { .type = RAFT_MSG_APPEND, .from = 1, .to = 2,
				.term = 3, .prev_index = 9, .prev_term = 2,
				.commit = 8, .n_entries = 2, .entries = ents,
				.ctx = 4 };
	raft_frame("raft_append", &crc, &app);
	struct raft_msg hb = { .type = RAFT_MSG_APPEND, .from = 1, .to = 3,
			       .term = 3, .commit = 11 };
	raft_frame("raft_heartbeat", &crc, &hb);
	struct raft_msg vote = { .type = RAFT_MSG_PREVOTE, .from = 2, .to = 1,
				 .term = 4, .prev_index = 11, .prev_term = 3,
				 .transfer = true };
	raft_frame("raft_prevote", &crc, &vote);
	struct raft_msg resp = { .type = RAFT_MSG_APPEND_RESP, .from = 2,
				 .to = 1, .term = 3, .reject = true,
				 .index = 5, .hint_index = 4, .hint_term = 2 };
	raft_frame("raft_append_resp", &crc, &resp);
	struct raft_msg snap = { .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 4,
				 .term = 5, .offset = 0, .done = true,
				 .len = 6, .data = (uint8_t *)"SNAPDT" };
	snap.snap.index = 100;
	snap.snap.term = 5;
	snap.snap.conf.n = 2;
	snap.snap.conf.nodes[0].id = 1;
	strcpy(snap.snap.conf.nodes[0].addr, "tcp://127.0.0.1:7001");
	snap.snap.conf.nodes[1].id = 4;
	snap.snap.conf.nodes[1].role = RAFT_LEARNER;
	strcpy(snap.snap.conf.nodes[1].addr, "tcp://127.0.0.1:7004");
	raft_frame("raft_snapshot", &crc, &snap);
	raft_frame("raft_append_mac", &mac, &app);

	size_t fl;
	uint8_t *f = frame(&crc, WIRE_REQUEST, WIRE_KIND_STATUS, NULL, 0, &fl);
	put("request_status", f, fl);
	free(f);
	f = frame(&crc, WIRE_REPLY, WIRE_KIND_BLOCK_GET,
		  (const uint8_t *)"blockdata", 9, &fl);
	put("reply_block_get", f, fl);
	free(f);

	/* invalid frames */
	size_t rl;
	uint8_t *r = raft(&hb, &rl);
	f = frame(&crc, WIRE_RAFT, 0, r, rl, &fl);
	put("bad_truncated", f, fl - 7);
	f[0] = 'X';
	put("bad_magic", f, fl);
	f[0] = 'S';
	f[4] = 9;
	reseal(f, fl);
	put("bad_version", f, fl);
	f[4] = WIRE_VERSION;
	f[5] = 77;
	reseal(f, fl);
	put("bad_type", f, fl);
	f[5] = WIRE_RAFT;
	f[WIRE_HDR_LEN] = 0; /* raft type 0, CRC fixed: reaches the codec */
	reseal(f, fl);
	put("bad_raft_type", f, fl);
	f[8] = 0x7f;
	put("bad_oversize", f, fl);
	free(f);
	f = frame(&other, WIRE_RAFT, 0, r, rl, &fl);
	put("bad_cluster", f, fl);
	free(f);
	free(r);
	return 0;
}
