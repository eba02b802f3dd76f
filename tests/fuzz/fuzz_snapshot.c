/*
 * fuzz_snapshot.c — fuzz what a node does with a snapshot a leader sent
 * (InstallSnapshot data: u64 digest-part length, the digest state, the
 * inode table dump): the digest's restore (fs/digest.c) and the inode
 * table's restore (fs/itab.c), and then every read and some applies on
 * the table that restore accepted. Since a dump is the table's records
 * byte for byte, this also fuzzes what the table does with any inode,
 * dentry, xattr, extent, lock and counter record that LevelDB may hand
 * back.
 *
 *   first byte & 1: fix the dump's FNV-1a checksum (its last 8 bytes)
 *   so the fuzzer gets past it into the records
 *   the rest: u16 length of the snapshot; the snapshot; then entries
 *   (fuzz_ops.h) applied after a successful restore
 *
 * Checks: restore either refuses (-EINVAL, table untouched: it dumps as
 * before) or succeeds, and then the table dumps to exactly the bytes it
 * was given (restore is canonical), reads never fail on it, applies
 * never fail (only a disk error may stop a node).
 */
#include "fs/be.h"
#include "fs/digest.h"
#include "fs/fsm.h"
#include "tests/fuzz/fuzz_ops.h"

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fo_quiet();
	if (size < 3)
		return 0;
	struct fz z = {.p = data + 1, .n = size - 1};
	size_t slen;
	const uint8_t *sp = fz_bytes(&z, fz_u16(&z), &slen);
	uint8_t *snap = fz_copy(sp, slen);
	/* the node splits the snapshot as fs/node.c does */
	uint64_t dl = slen >= 8 ? be_get64(snap) : UINT64_MAX;
	if (dl > slen - 8 && slen >= 8)
		dl = slen - 8; /* a bad split is refused before either part; look at both */
	const uint8_t *dpart = slen >= 8 ? snap + 8 : snap;
	size_t dlen = slen >= 8 ? (size_t)dl : 0;
	uint8_t *ipart = fz_copy(dpart + dlen, slen >= 8 ? slen - 8 - dlen : slen);
	size_t ilen = slen >= 8 ? slen - 8 - dlen : slen;
	if ((data[0] & 1) && ilen >= 8) {
		uint64_t h = fnv1a(ipart, ilen - 8);
		be_put64(ipart + ilen - 8, h);
	}

	char path[128];
	fz_fresh("dsm", path, sizeof path);
	struct dsm *d;
	if (dsm_open(path, &d) != 0)
		abort();
	struct repl_sm dsm = dsm_sm(d);
	uint8_t res[256];
	size_t rl;
	/* some state first: a refused restore must leave it as it was */
	if (dsm.apply(dsm.ctx, 1, 3, 1, 0, (const uint8_t *)"y", 1, res, sizeof res, &rl) != 0)
		abort();
	uint8_t *s0, *s1;
	uint64_t i0, i1, l0, l1;
	if (dsm.snapshot(dsm.ctx, &i0, &s0, &l0) != 0)
		abort();
	uint8_t *dcopy = fz_copy(dpart, dlen);
	int drc = dsm.restore(dsm.ctx, 5, dcopy, dlen);
	if (dsm.snapshot(dsm.ctx, &i1, &s1, &l1) != 0)
		abort();
	if (drc != 0 && (i0 != i1 || l0 != l1 || memcmp(s0, s1, l0) != 0))
		abort();
	if (drc == 0 && i1 != 5)
		abort();
	free(s0);
	free(s1);
	free(dcopy);
	if (dsm.apply(dsm.ctx, 6, 1, 1, 0, (const uint8_t *)"x", 1, res, sizeof res, &rl) != 0)
		abort();
	dsm_close(d);

	fz_fresh("itab", path, sizeof path);
	struct itab *t;
	struct fsm *f;
	if (itab_open(path, NULL, &t) != 0 || fsm_new(t, 1, &f) != 0)
		abort();
	struct repl_sm sm = fsm_sm(f);
	struct fo_dump before, after;
	fo_dump(t, &before);
	int rc = sm.restore(sm.ctx, 5, ipart, ilen);
	fo_dump(t, &after);
	if (rc != 0) {
		if (rc != -EINVAL || after.len != before.len ||
		    memcmp(after.b, before.b, before.len) != 0)
			abort();
	} else {
		if (after.len != ilen || memcmp(after.b, ipart, ilen) != 0)
			abort();
		fo_walk(t);
		uint64_t index = itab_applied_index(t);
		for (int i = 0; i < 16 && index < UINT64_MAX - 1; i++) {
			uint8_t *e = NULL;
			long n = fo_next_entry(&z, &e);
			if (n < 0)
				break;
			if (sm.apply(sm.ctx, ++index, 2, (uint64_t)i + 1, 0, e, (uint32_t)n,
				     res, sizeof res, &rl) != 0)
				abort();
			free(e);
		}
		fo_walk(t);
	}
	free(before.b);
	free(after.b);
	fsm_free(f);
	itab_close(t);
	free(ipart);
	free(snap);
	return 0;
}
