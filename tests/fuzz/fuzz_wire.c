/*
 * fuzz_wire.c — fuzz the frame decoder and the Raft message codec.
 *
 * Each input is tried three ways:
 *   1. as a frame of a cluster without secret (CRC32C trailer);
 *   2. as a frame of a cluster with a secret (HMAC trailer);
 *   3. with its last 4 bytes replaced by the right CRC32C, so the fuzzer
 *      gets past the checksum and explores the header checks, the request
 *      kinds and, for RAFT frames, raft_msg_decode on the payload.
 * Whatever raft_msg_decode accepts must re-encode to the same bytes (the
 * codec is canonical); anything else is a bug and aborts.
 *
 * With SANDFS_FUZZ=ON this links with libFuzzer; otherwise replay_main.c
 * runs the files named on the command line through the same function.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"
#include "tests/fuzz/fuzz_wire_cfg.h"
#include "transport/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode a RAFT payload; check the canonical re-encoding. */
static void check_raft(const uint8_t *p, size_t n)
{
	struct raft_msg m;
	struct raft_entry *ents = NULL;
	if (raft_msg_decode(p, n, &m, &ents) != 0) {
		if (ents)
			abort(); /* must be NULL on failure */
		return;
	}
	size_t need = raft_msg_encode(&m, NULL, 0);
	if (need != n)
		abort();
	uint8_t *again = malloc(need ? need : 1);
	if (!again)
		abort();
	if (raft_msg_encode(&m, again, need) != need ||
	    memcmp(again, p, need) != 0)
		abort();
	free(again);
	free(ents);
}

/* One wire_decode; on success, check the view stays inside buf. */
static void try_frame(const uint8_t *buf, size_t len, const struct wire_cfg *c)
{
	struct wire_frame f;
	char why[160];
	if (wire_decode(buf, len, c, &f, why, sizeof why) != 0) {
		if (why[0] == '\0')
			abort(); /* every rejection says why */
		return;
	}
	if (f.body_len && (f.body < buf || f.body + f.body_len > buf + len))
		abort();
	if (f.type == WIRE_RAFT)
		check_raft(f.body, f.body_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct wire_cfg crc = { .cluster_id = FUZZ_CLUSTER_ID };
	static const struct wire_cfg mac = {
		.cluster_id = FUZZ_CLUSTER_ID,
		.secret = (const uint8_t *)FUZZ_SECRET,
		.secret_len = sizeof FUZZ_SECRET - 1,
	};

	/* An exact-size copy so ASan catches any read past the input. */
	uint8_t *buf = calloc(1, size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	try_frame(buf, size, &crc);
	try_frame(buf, size, &mac);

	if (size >= WIRE_HDR_LEN + WIRE_CRC_LEN) {
		uint32_t c = wire_crc32c(0, buf, size - 4);
		buf[size - 4] = (uint8_t)(c >> 24);
		buf[size - 3] = (uint8_t)(c >> 16);
		buf[size - 2] = (uint8_t)(c >> 8);
		buf[size - 1] = (uint8_t)c;
		try_frame(buf, size, &crc);
	}
	free(buf);
	return 0;
}
