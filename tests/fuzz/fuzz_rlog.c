/*
 * fuzz_rlog.c — fuzz what the Raft log store reads back from its LevelDB
 * (storage/rlog.c): entry, hard-state and snapshot records as a damaged
 * or foreign disk may hold them.
 *
 * Input: records, each `u8 kind` then its fields:
 *   kind % 4 == 0  an entry: u8 key index, u8 term, u8 type, u16 data
 *                  length + data (value built as rlog.c stores it)
 *            1     the hard state: u8 term, u8 vote, u8 commit
 *            2     the snapshot record: u8 index, u8 term, u16 conf length
 *                  + conf bytes
 *            3     a raw key and value: u8 key length + key, u16 value
 *                  length + value
 *   kind & 0x80: damage the built value (one byte flipped at a position
 *   from the next byte) so the CRC, length and version checks get work;
 *   kind & 0x40: store the entry under another index than its own.
 * The records go into a fresh LevelDB; then rlog_open, rlog_load,
 * rlog_get over the loaded range, and an append, must either refuse
 * (-EUCLEAN with a reason naming the directory) or give a log that keeps
 * the invariants of rlog.h (consecutive indices after the snapshot,
 * non-decreasing terms) and that opens and loads again after the append.
 */
#include <errno.h>
#include <leveldb/c.h>

#include "storage/rlog.h"
#include "storage/util.h"
#include "tests/fuzz/fuzz_util.h"

static void put(leveldb_t *db, leveldb_writeoptions_t *wo, const uint8_t *k,
		size_t kl, const uint8_t *v, size_t vl)
{
	char *err = NULL;
	leveldb_put(db, wo, (const char *)k, kl, (const char *)v, vl, &err);
	if (err)
		abort();
}

static void seal(uint8_t *v, size_t n)
{
	stor_put_be32(v + n - 4, stor_crc32c(0, v, n - 4));
}

static void damage(struct fz *z, uint8_t kind, uint8_t *v, size_t n)
{
	uint8_t at = fz_u8(z);
	if ((kind & 0x80) && n)
		v[at % n] ^= (uint8_t)(1u << (at % 8));
}

static void write_records(struct fz *z, leveldb_t *db, leveldb_writeoptions_t *wo)
{
	for (int r = 0; r < 64 && z->n; r++) {
		uint8_t kind = fz_u8(z);
		uint8_t key[256], v[4096 + 64];
		size_t got;
		switch (kind % 4) {
		case 0: {
			uint64_t idx = fz_u8(z);
			uint64_t term = fz_u8(z);
			uint8_t type = fz_u8(z);
			const uint8_t *d = fz_bytes(z, fz_u16(z) % 4096, &got);
			v[0] = 1;
			stor_put_be64(v + 1, kind & 0x40 ? idx + 1 : idx);
			stor_put_be64(v + 9, term);
			v[17] = type;
			stor_put_be32(v + 18, (uint32_t)got);
			memcpy(v + 22, d, got);
			seal(v, 22 + got + 4);
			damage(z, kind, v, 26 + got);
			key[0] = 'e';
			stor_put_be64(key + 1, idx);
			put(db, wo, key, 9, v, 26 + got);
			break;
		}
		case 1:
			v[0] = 1;
			stor_put_be64(v + 1, fz_u8(z));
			stor_put_be64(v + 9, fz_u8(z));
			stor_put_be64(v + 17, fz_u8(z));
			seal(v, 29);
			damage(z, kind, v, 29);
			put(db, wo, (const uint8_t *)"h", 1, v, 29);
			break;
		case 2: {
			v[0] = 1;
			stor_put_be64(v + 1, fz_u8(z));
			stor_put_be64(v + 9, fz_u8(z));
			const uint8_t *c = fz_bytes(z, fz_u16(z) % 1024, &got);
			stor_put_be32(v + 17, (uint32_t)got);
			memcpy(v + 21, c, got);
			seal(v, 21 + got + 4);
			damage(z, kind, v, 25 + got);
			put(db, wo, (const uint8_t *)"s", 1, v, 25 + got);
			break;
		}
		case 3: {
			size_t kl;
			const uint8_t *k = fz_bytes(z, fz_u8(z), &kl);
			memcpy(key, k, kl);
			const uint8_t *val = fz_bytes(z, fz_u16(z) % 4096, &got);
			if (kl)
				put(db, wo, key, kl, val, got);
			break;
		}
		}
	}
}

/* rlog_load must give what rlog.h promises, or refuse. */
static int load_check(struct rlog *rl, bool must_succeed)
{
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents = NULL;
	size_t n = 0;
	char err[256] = "";
	int rc = rlog_load(rl, &hs, &snap, &ents, &n, err, sizeof err);
	if (rc != 0) {
		if (must_succeed || (rc != -EUCLEAN && rc != -ENOMEM) || !err[0] ||
		    !strstr(err, rlog_path(rl)))
			abort();
		return rc;
	}
	uint64_t term = snap.term;
	for (size_t i = 0; i < n; i++) {
		if (ents[i].index != snap.index + 1 + i || ents[i].term < term)
			abort();
		term = ents[i].term;
	}
	if (rlog_snap_index(rl) != snap.index || rlog_first_index(rl) != snap.index + 1 ||
	    rlog_last_index(rl) != snap.index + n)
		abort();
	if (n && rlog_last_term(rl) != ents[n - 1].term)
		abort();
	for (uint64_t i = rlog_first_index(rl); i <= rlog_last_index(rl); i++) {
		struct rlog_entry e;
		if (rlog_get(rl, i, &e) != 0 || e.len != ents[i - snap.index - 1].len ||
		    (e.len && memcmp(e.data, ents[i - snap.index - 1].data, e.len)))
			abort();
		free(e.data);
	}
	rlog_entries_free(ents, n);
	rlog_snap_free(&snap);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128];
	fz_fresh("raft", path, sizeof path);
	leveldb_options_t *o = leveldb_options_create();
	leveldb_options_set_create_if_missing(o, 1);
	leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
	char *err = NULL;
	leveldb_t *db = leveldb_open(o, path, &err);
	if (err)
		abort();
	struct fz z = {.p = data, .n = size};
	write_records(&z, db, wo);
	leveldb_close(db);
	leveldb_writeoptions_destroy(wo);
	leveldb_options_destroy(o);

	struct rlog *rl;
	char why[256] = "";
	int rc = rlog_open(path, &rl, why, sizeof why);
	if (rc != 0) {
		if (rc != -EUCLEAN || !strstr(why, path))
			abort();
		return 0;
	}
	if (load_check(rl, false) == 0) {
		uint64_t last = rlog_last_index(rl);
		struct rlog_entry e = {.index = last + 1, .term = rlog_last_term(rl),
				       .type = 1, .len = 3, .data = (uint8_t *)"new"};
		if (rlog_append(rl, NULL, &e, 1) != 0)
			abort();
		rlog_close(rl);
		if (rlog_open(path, &rl, why, sizeof why) != 0)
			abort();
		load_check(rl, true);
		if (rlog_last_index(rl) != last + 1)
			abort();
	}
	rlog_close(rl);
	return 0;
}
