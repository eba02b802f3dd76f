/*
 * rlog.c — Raft log store over LevelDB (see rlog.h for the contract and the
 * on-disk layout).
 *
 * The struct keeps first/last positions in memory so appends and suffix
 * truncation know which keys to write and delete without scanning:
 *   snap_index/snap_term  the snapshot metadata ('s'), 0/0 if none;
 *   last_index/last_term  the newest entry (== snap_* when the log is empty);
 *   stored_low            the lowest 'e' key that may exist (0: none) — it is
 *                         below snap_index + 1 only after an interrupted
 *                         compaction.
 */
#include "storage/rlog.h"

#include "storage/slowdisk.h"
#include "storage/util.h"

#include <errno.h>
#include <inttypes.h>
#include <leveldb/c.h>
#include <stdlib.h>
#include <string.h>

#define REC_VERSION   1
#define KEY_ENTRY     'e'
#define KEY_HARD      'h'
#define KEY_SNAP      's'
#define ENTRY_KEY_LEN 9
#define ENTRY_HDR     22 /* version, index, term, type, len */
#define HS_LEN        (1 + 8 + 8 + 8 + 4)
#define SNAP_HDR      (1 + 8 + 8 + 4)
/* Deletions beyond the first batch of a compaction go in chunks this big. */
#define DELETE_CHUNK 8192

struct rlog {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_readoptions_t *ro;  /* verify_checksums on */
	leveldb_writeoptions_t *wo; /* sync on */
	char *path;
	uint64_t snap_index, snap_term;
	uint64_t last_index, last_term;
	uint64_t stored_low;
};

static void entry_key(uint8_t key[ENTRY_KEY_LEN], uint64_t index)
{
	key[0] = KEY_ENTRY;
	stor_put_be64(key + 1, index);
}

/* Decodes and verifies an entry value stored under index. When out is not
 * NULL fills it (data malloc'ed when copy, else pointing into val).
 * Returns 0, -EUCLEAN (with why set to a static reason) or -ENOMEM. */
static int decode_entry(uint64_t index, const uint8_t *val, size_t vlen,
                        struct rlog_entry *out, bool copy, const char **why)
{
	if (vlen < ENTRY_HDR + 4) {
		*why = "record too short";
		return -EUCLEAN;
	}
	if (val[0] != REC_VERSION) {
		*why = "unknown record version";
		return -EUCLEAN;
	}
	uint32_t len = stor_get_be32(val + 18);
	if ((size_t)len != vlen - ENTRY_HDR - 4) {
		*why = "record length does not match its size";
		return -EUCLEAN;
	}
	if (stor_crc32c(0, val, vlen - 4) != stor_get_be32(val + vlen - 4)) {
		*why = "checksum mismatch";
		return -EUCLEAN;
	}
	if (stor_get_be64(val + 1) != index) {
		*why = "record is stored under another index than its own";
		return -EUCLEAN;
	}
	if (!out)
		return 0;
	out->index = index;
	out->term = stor_get_be64(val + 9);
	out->type = val[17];
	out->len = len;
	out->data = NULL;
	if (len == 0)
		return 0;
	if (!copy) {
		out->data = (uint8_t *)(val + ENTRY_HDR);
		return 0;
	}
	out->data = malloc(len);
	if (!out->data)
		return -ENOMEM;
	memcpy(out->data, val + ENTRY_HDR, len);
	return 0;
}

/* Encodes e into a malloc'ed value; *vlen receives its size. */
static uint8_t *encode_entry(const struct rlog_entry *e, size_t *vlen)
{
	size_t n = ENTRY_HDR + (size_t)e->len + 4;
	uint8_t *v = malloc(n);
	if (!v)
		return NULL;
	v[0] = REC_VERSION;
	stor_put_be64(v + 1, e->index);
	stor_put_be64(v + 9, e->term);
	v[17] = e->type;
	stor_put_be32(v + 18, e->len);
	if (e->len)
		memcpy(v + ENTRY_HDR, e->data, e->len);
	stor_put_be32(v + n - 4, stor_crc32c(0, v, n - 4));
	*vlen = n;
	return v;
}

static void encode_hs(uint8_t v[HS_LEN], const struct rlog_hard_state *hs)
{
	v[0] = REC_VERSION;
	stor_put_be64(v + 1, hs->term);
	stor_put_be64(v + 9, hs->vote);
	stor_put_be64(v + 17, hs->commit);
	stor_put_be32(v + 25, stor_crc32c(0, v, 25));
}

static int decode_hs(const uint8_t *v, size_t vlen, struct rlog_hard_state *hs,
                     const char **why)
{
	if (vlen != HS_LEN || v[0] != REC_VERSION) {
		*why = "hard state record has a wrong size or version";
		return -EUCLEAN;
	}
	if (stor_crc32c(0, v, 25) != stor_get_be32(v + 25)) {
		*why = "hard state checksum mismatch";
		return -EUCLEAN;
	}
	hs->term = stor_get_be64(v + 1);
	hs->vote = stor_get_be64(v + 9);
	hs->commit = stor_get_be64(v + 17);
	return 0;
}

static uint8_t *encode_snap(const struct rlog_snap *s, size_t *vlen)
{
	size_t n = SNAP_HDR + (size_t)s->conf_len + 4;
	uint8_t *v = malloc(n);
	if (!v)
		return NULL;
	v[0] = REC_VERSION;
	stor_put_be64(v + 1, s->index);
	stor_put_be64(v + 9, s->term);
	stor_put_be32(v + 17, s->conf_len);
	if (s->conf_len)
		memcpy(v + SNAP_HDR, s->conf, s->conf_len);
	stor_put_be32(v + n - 4, stor_crc32c(0, v, n - 4));
	*vlen = n;
	return v;
}

/* Decodes the snapshot record; conf copied (malloc'ed) when want_conf. */
static int decode_snap(const uint8_t *v, size_t vlen, struct rlog_snap *s,
                       bool want_conf, const char **why)
{
	if (vlen < SNAP_HDR + 4 || v[0] != REC_VERSION ||
	    stor_get_be32(v + 17) != vlen - SNAP_HDR - 4) {
		*why = "snapshot record has a wrong size or version";
		return -EUCLEAN;
	}
	if (stor_crc32c(0, v, vlen - 4) != stor_get_be32(v + vlen - 4)) {
		*why = "snapshot record checksum mismatch";
		return -EUCLEAN;
	}
	s->index = stor_get_be64(v + 1);
	s->term = stor_get_be64(v + 9);
	s->conf_len = stor_get_be32(v + 17);
	s->conf = NULL;
	if (want_conf && s->conf_len) {
		s->conf = malloc(s->conf_len);
		if (!s->conf)
			return -ENOMEM;
		memcpy(s->conf, v + SNAP_HDR, s->conf_len);
	}
	return 0;
}

/* Reads key into a malloc'ed value (*val NULL when absent). */
static int db_get(struct rlog *rl, const uint8_t *key, size_t klen,
                  uint8_t **val, size_t *vlen)
{
	char *lerr = NULL;
	*val = (uint8_t *)leveldb_get(rl->db, rl->ro, (const char *)key, klen,
	                              vlen, &lerr);
	if (lerr)
		return stor_leveldb_fail(lerr, "raft log read failed", rl->path,
		                         NULL, 0);
	return 0;
}

static int db_write(struct rlog *rl, leveldb_writebatch_t *b)
{
	char *lerr = NULL;
	stor_sync_delay(); /* test hook: a slow disk (off unless asked for) */
	leveldb_write(rl->db, rl->wo, b, &lerr);
	if (lerr)
		return stor_leveldb_fail(lerr, "raft log write failed",
		                         rl->path, NULL, 0);
	return 0;
}

/* Term of the stored entry at index (snap_term for snap_index). */
static int term_at(struct rlog *rl, uint64_t index, uint64_t *term)
{
	if (index == rl->snap_index) {
		*term = rl->snap_term;
		return 0;
	}
	if (index == rl->last_index) {
		*term = rl->last_term;
		return 0;
	}
	uint8_t key[ENTRY_KEY_LEN], *val;
	size_t vlen;
	entry_key(key, index);
	int rc = db_get(rl, key, sizeof key, &val, &vlen);
	if (rc < 0)
		return rc;
	if (!val)
		return -ENOENT;
	struct rlog_entry e;
	const char *why = "";
	rc = decode_entry(index, val, vlen, &e, false, &why);
	if (rc == 0)
		*term = e.term;
	else
		STOR_ERR("raft log in %s is corrupt at index %" PRIu64 ": %s",
		         rl->path, index, why);
	leveldb_free(val);
	return rc;
}

/* Finds the lowest and highest stored entry keys (0, 0 when none) and the
 * term of the highest. */
static int scan_bounds(struct rlog *rl, uint64_t *lo, uint64_t *hi,
                       uint64_t *hi_term, char *err, size_t errcap)
{
	*lo = *hi = *hi_term = 0;
	leveldb_iterator_t *it = leveldb_create_iterator(rl->db, rl->ro);
	uint8_t key[ENTRY_KEY_LEN];
	int rc = 0;
	entry_key(key, 0);
	leveldb_iter_seek(it, (const char *)key, sizeof key);
	size_t klen;
	const char *k;
	if (leveldb_iter_valid(it) && (k = leveldb_iter_key(it, &klen)) &&
	    klen == ENTRY_KEY_LEN && k[0] == KEY_ENTRY) {
		*lo = stor_get_be64((const uint8_t *)k + 1);
		const uint8_t next = KEY_ENTRY + 1;
		leveldb_iter_seek(it, (const char *)&next, 1);
		if (leveldb_iter_valid(it))
			leveldb_iter_prev(it);
		else
			leveldb_iter_seek_to_last(it);
		k = leveldb_iter_key(it, &klen);
		if (klen != ENTRY_KEY_LEN || k[0] != KEY_ENTRY) {
			stor_seterr(err, errcap,
			            "raft log in %s has a malformed entry key",
			            rl->path);
			leveldb_iter_destroy(it);
			return -EUCLEAN;
		}
		*hi = stor_get_be64((const uint8_t *)k + 1);
		size_t vlen;
		const uint8_t *v =
		    (const uint8_t *)leveldb_iter_value(it, &vlen);
		struct rlog_entry e;
		const char *why = "";
		rc = decode_entry(*hi, v, vlen, &e, false, &why);
		if (rc < 0)
			stor_seterr(
			    err, errcap,
			    "raft log in %s is corrupt at index %" PRIu64
			    ": %s",
			    rl->path, *hi, why);
		else
			*hi_term = e.term;
	}
	char *lerr = NULL;
	leveldb_iter_get_error(it, &lerr);
	leveldb_iter_destroy(it);
	if (lerr)
		return stor_leveldb_fail(lerr, "raft log scan failed", rl->path,
		                         err, errcap);
	return rc;
}

/* See rlog.h. */
int rlog_open(const char *path, struct rlog **out, char *err, size_t errcap)
{
	*out = NULL;
	stor_seterr(err, errcap, "%s", "");
	struct rlog *rl = calloc(1, sizeof *rl);
	if (!rl)
		return -ENOMEM;
	rl->path = strdup(path);
	rl->opts = leveldb_options_create();
	rl->ro = leveldb_readoptions_create();
	rl->wo = leveldb_writeoptions_create();
	int rc = -ENOMEM;
	if (!rl->path || !rl->opts || !rl->ro || !rl->wo)
		goto fail;
	leveldb_options_set_create_if_missing(rl->opts, 1);
	leveldb_options_set_paranoid_checks(rl->opts, 1);
	leveldb_readoptions_set_verify_checksums(rl->ro, 1);
	leveldb_writeoptions_set_sync(rl->wo, 1);
	char *lerr = NULL;
	rl->db = leveldb_open(rl->opts, path, &lerr);
	if (lerr) {
		rc = stor_leveldb_fail(lerr, "cannot open raft log", path, err,
		                       errcap);
		goto fail;
	}
	const uint8_t sk = KEY_SNAP;
	uint8_t *val;
	size_t vlen;
	if ((rc = db_get(rl, &sk, 1, &val, &vlen)) < 0) {
		stor_seterr(err, errcap, "cannot read raft log in %s", path);
		goto fail;
	}
	if (val) {
		struct rlog_snap s;
		const char *why = "";
		rc = decode_snap(val, vlen, &s, false, &why);
		leveldb_free(val);
		if (rc < 0) {
			stor_seterr(err, errcap,
			            "raft log in %s is corrupt: %s", path, why);
			goto fail;
		}
		rl->snap_index = s.index;
		rl->snap_term = s.term;
	}
	uint64_t lo, hi, hi_term;
	if ((rc = scan_bounds(rl, &lo, &hi, &hi_term, err, errcap)) < 0)
		goto fail;
	rl->stored_low = lo;
	if (hi > rl->snap_index) {
		rl->last_index = hi;
		rl->last_term = hi_term;
	} else {
		rl->last_index = rl->snap_index;
		rl->last_term = rl->snap_term;
	}
	*out = rl;
	return 0;
fail:
	if (err && errcap && !err[0])
		stor_seterr(err, errcap, "cannot open raft log in %s: %s", path,
		            strerror(-rc));
	rlog_close(rl);
	return rc;
}

/* See rlog.h. */
void rlog_close(struct rlog *rl)
{
	if (!rl)
		return;
	if (rl->db)
		leveldb_close(rl->db);
	if (rl->opts)
		leveldb_options_destroy(rl->opts);
	if (rl->ro)
		leveldb_readoptions_destroy(rl->ro);
	if (rl->wo)
		leveldb_writeoptions_destroy(rl->wo);
	free(rl->path);
	free(rl);
}

void rlog_entries_free(struct rlog_entry *entries, size_t n)
{
	if (!entries)
		return;
	for (size_t i = 0; i < n; i++)
		free(entries[i].data);
	free(entries);
}

void rlog_snap_free(struct rlog_snap *snap)
{
	if (!snap)
		return;
	free(snap->conf);
	memset(snap, 0, sizeof *snap);
}

/* Deletes entry keys in [from, to] in synced chunks of DELETE_CHUNK; the
 * first chunk goes into b (which the caller writes), the rest are written
 * here after b. Returns 0 or -errno. */
static int delete_range_chunked(struct rlog *rl, leveldb_writebatch_t *b,
                                uint64_t from, uint64_t to)
{
	uint8_t key[ENTRY_KEY_LEN];
	uint64_t i = from;
	size_t in_b = 0;
	for (; i <= to && in_b < DELETE_CHUNK; i++, in_b++) {
		entry_key(key, i);
		leveldb_writebatch_delete(b, (const char *)key, sizeof key);
	}
	int rc = db_write(rl, b);
	while (rc == 0 && i <= to) {
		leveldb_writebatch_t *c = leveldb_writebatch_create();
		for (size_t k = 0; i <= to && k < DELETE_CHUNK; i++, k++) {
			entry_key(key, i);
			leveldb_writebatch_delete(c, (const char *)key,
			                          sizeof key);
		}
		rc = db_write(rl, c);
		leveldb_writebatch_destroy(c);
	}
	return rc;
}

/* See rlog.h. Loads and verifies; never repairs (except removing entries
 * that an interrupted compaction left below the snapshot). */
int rlog_load(struct rlog *rl, struct rlog_hard_state *hs_out,
              struct rlog_snap *snap_out, struct rlog_entry **entries_out,
              size_t *n_out, char *err, size_t errcap)
{
	struct rlog_hard_state hs = {0};
	struct rlog_snap snap = {0};
	struct rlog_entry *ents = NULL;
	size_t n = 0, cap = 0;
	uint64_t stale_lo = 0, stale_hi = 0, at = 0;
	const char *why = NULL;
	int rc;
	char msg[512];

	stor_seterr(err, errcap, "%s", "");
	uint8_t *val;
	size_t vlen;
	const uint8_t hk = KEY_HARD, sk = KEY_SNAP;
	if ((rc = db_get(rl, &hk, 1, &val, &vlen)) < 0)
		goto fail;
	if (val) {
		rc = decode_hs(val, vlen, &hs, &why);
		leveldb_free(val);
		if (rc < 0)
			goto fail;
	}
	if ((rc = db_get(rl, &sk, 1, &val, &vlen)) < 0)
		goto fail;
	if (val) {
		rc = decode_snap(val, vlen, &snap, true, &why);
		leveldb_free(val);
		if (rc < 0)
			goto fail;
	}

	leveldb_iterator_t *it = leveldb_create_iterator(rl->db, rl->ro);
	uint8_t key[ENTRY_KEY_LEN];
	entry_key(key, 0);
	uint64_t expect = snap.index + 1, prev_term = snap.term;
	for (leveldb_iter_seek(it, (const char *)key, sizeof key);
	     leveldb_iter_valid(it); leveldb_iter_next(it)) {
		size_t klen;
		const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
		if (klen < 1 || k[0] != KEY_ENTRY)
			break;
		if (klen != ENTRY_KEY_LEN) {
			why = "malformed entry key";
			rc = -EUCLEAN;
			break;
		}
		at = stor_get_be64(k + 1);
		const uint8_t *v =
		    (const uint8_t *)leveldb_iter_value(it, &vlen);
		struct rlog_entry e;
		if (at <= snap.index) { /* left by an interrupted compaction */
			if (!stale_lo)
				stale_lo = at;
			stale_hi = at;
			continue;
		}
		if (at != expect) {
			why = at > expect ? "entries missing before this index"
			                  : "unexpected entry";
			at = expect;
			rc = -EUCLEAN;
			break;
		}
		if ((rc = decode_entry(at, v, vlen, &e, true, &why)) < 0)
			break;
		if (e.term < prev_term) {
			free(e.data);
			why = "term lower than the term of the entry before it";
			rc = -EUCLEAN;
			break;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct rlog_entry *ne =
			    realloc(ents, ncap * sizeof *ents);
			if (!ne) {
				free(e.data);
				rc = -ENOMEM;
				break;
			}
			ents = ne;
			cap = ncap;
		}
		ents[n++] = e;
		prev_term = e.term;
		expect++;
	}
	char *lerr = NULL;
	leveldb_iter_get_error(it, &lerr);
	leveldb_iter_destroy(it);
	if (lerr && rc == 0) {
		rc = stor_leveldb_fail(lerr, "raft log read failed", rl->path,
		                       err, errcap);
		goto fail;
	}
	free(lerr);
	if (rc < 0)
		goto fail;

	if (stale_lo) {
		leveldb_writebatch_t *b = leveldb_writebatch_create();
		rc = delete_range_chunked(rl, b, stale_lo, stale_hi);
		leveldb_writebatch_destroy(b);
		if (rc < 0) {
			stor_seterr(
			    err, errcap,
			    "cannot clean compacted raft log entries in "
			    "%s: %s",
			    rl->path, strerror(-rc));
			goto fail_silent;
		}
	}
	rl->snap_index = snap.index;
	rl->snap_term = snap.term;
	rl->last_index = n ? ents[n - 1].index : snap.index;
	rl->last_term = n ? ents[n - 1].term : snap.term;
	rl->stored_low = n ? ents[0].index : 0;
	*hs_out = hs;
	*snap_out = snap;
	*entries_out = ents;
	*n_out = n;
	return 0;
fail:
	if (rc == -EUCLEAN) {
		if (at)
			(void)snprintf(
			    msg, sizeof msg,
			    "raft log in %s is corrupt at index %" PRIu64
			    ": %s; refusing to start from it (restore "
			    "the data directory or remove it and re-add "
			    "the node)",
			    rl->path, at, why);
		else
			(void)snprintf(
			    msg, sizeof msg,
			    "raft log in %s is corrupt: %s; refusing to "
			    "start from it",
			    rl->path, why);
		STOR_ERR("%s", msg);
		stor_seterr(err, errcap, "%s", msg);
	} else if (err && errcap && !err[0]) {
		stor_seterr(err, errcap, "cannot load raft log in %s: %s",
		            rl->path, strerror(-rc));
	}
fail_silent:
	rlog_entries_free(ents, n);
	rlog_snap_free(&snap);
	return rc;
}

/* See rlog.h. */
int rlog_append(struct rlog *rl, const struct rlog_hard_state *hs,
                const struct rlog_entry *e, size_t n)
{
	if (n == 0)
		return hs ? rlog_set_hard_state(rl, hs) : 0;
	if (e[0].index <= rl->snap_index || e[0].index > rl->last_index + 1) {
		STOR_ERR("raft log %s: append at index %" PRIu64
		         " outside (%" PRIu64 ", %" PRIu64 "]",
		         rl->path, e[0].index, rl->snap_index,
		         rl->last_index + 1);
		return -EINVAL;
	}
	for (size_t i = 1; i < n; i++) {
		if (e[i].index != e[i - 1].index + 1 ||
		    e[i].term < e[i - 1].term) {
			STOR_ERR("raft log %s: append batch not consecutive or "
			         "term decreasing at index %" PRIu64,
			         rl->path, e[i].index);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (e[i].len && !e[i].data)
			return -EINVAL;
	}
	uint64_t prev_term;
	int rc = term_at(rl, e[0].index - 1, &prev_term);
	if (rc < 0)
		return rc == -ENOENT ? -EIO : rc;
	if (e[0].term < prev_term) {
		STOR_ERR("raft log %s: entry %" PRIu64 " has term %" PRIu64
		         " below the previous entry's term %" PRIu64,
		         rl->path, e[0].index, e[0].term, prev_term);
		return -EINVAL;
	}

	leveldb_writebatch_t *b = leveldb_writebatch_create();
	if (hs) {
		uint8_t v[HS_LEN];
		const uint8_t hk = KEY_HARD;
		encode_hs(v, hs);
		leveldb_writebatch_put(b, (const char *)&hk, 1, (const char *)v,
		                       sizeof v);
	}
	uint8_t key[ENTRY_KEY_LEN];
	for (size_t i = 0; i < n; i++) {
		size_t vlen;
		uint8_t *v = encode_entry(&e[i], &vlen);
		if (!v) {
			leveldb_writebatch_destroy(b);
			return -ENOMEM;
		}
		entry_key(key, e[i].index);
		leveldb_writebatch_put(b, (const char *)key, sizeof key,
		                       (const char *)v, vlen);
		free(v);
	}
	uint64_t new_last = e[n - 1].index;
	for (uint64_t i = new_last + 1; i <= rl->last_index; i++) {
		entry_key(key, i);
		leveldb_writebatch_delete(b, (const char *)key, sizeof key);
	}
	rc = db_write(rl, b);
	leveldb_writebatch_destroy(b);
	if (rc < 0)
		return rc;
	rl->last_index = new_last;
	rl->last_term = e[n - 1].term;
	if (!rl->stored_low)
		rl->stored_low = e[0].index;
	return 0;
}

/* See rlog.h. */
int rlog_set_hard_state(struct rlog *rl, const struct rlog_hard_state *hs)
{
	uint8_t v[HS_LEN];
	const uint8_t hk = KEY_HARD;
	encode_hs(v, hs);
	char *lerr = NULL;
	leveldb_put(rl->db, rl->wo, (const char *)&hk, 1, (const char *)v,
	            sizeof v, &lerr);
	if (lerr)
		return stor_leveldb_fail(lerr, "raft log write failed",
		                         rl->path, NULL, 0);
	return 0;
}

/* Writes snap's record plus deletions of [del_lo, del_hi] (chunked) and of
 * the suffix (snap->index, suffix_hi] (in the first batch, so that no entry
 * that does not follow the new snapshot can survive a crash). */
static int write_snap(struct rlog *rl, const struct rlog_snap *snap,
                      uint64_t del_lo, uint64_t del_hi, uint64_t suffix_hi)
{
	if (snap->conf_len && !snap->conf)
		return -EINVAL;
	size_t vlen;
	uint8_t *v = encode_snap(snap, &vlen);
	if (!v)
		return -ENOMEM;
	leveldb_writebatch_t *b = leveldb_writebatch_create();
	const uint8_t sk = KEY_SNAP;
	leveldb_writebatch_put(b, (const char *)&sk, 1, (const char *)v, vlen);
	free(v);
	uint8_t key[ENTRY_KEY_LEN];
	for (uint64_t i = snap->index + 1; i <= suffix_hi; i++) {
		entry_key(key, i);
		leveldb_writebatch_delete(b, (const char *)key, sizeof key);
	}
	int rc;
	if (del_lo && del_lo <= del_hi)
		rc = delete_range_chunked(rl, b, del_lo, del_hi);
	else
		rc = db_write(rl, b);
	leveldb_writebatch_destroy(b);
	return rc;
}

/* See rlog.h. Raft §7: "a server ... writes the snapshot ... then the log
 * up through the last included index is discarded". */
int rlog_compact(struct rlog *rl, const struct rlog_snap *snap)
{
	if (snap->index < rl->snap_index || snap->index > rl->last_index) {
		STOR_ERR("raft log %s: compaction to %" PRIu64
		         " outside [%" PRIu64 ", %" PRIu64 "]",
		         rl->path, snap->index, rl->snap_index, rl->last_index);
		return -EINVAL;
	}
	uint64_t t;
	int rc = term_at(rl, snap->index, &t);
	if (rc < 0)
		return rc == -ENOENT ? -EIO : rc;
	if (t != snap->term) {
		STOR_ERR("raft log %s: compaction to %" PRIu64 " term %" PRIu64
		         " but the entry has term %" PRIu64,
		         rl->path, snap->index, snap->term, t);
		return -EINVAL;
	}
	uint64_t lo = rl->stored_low ? rl->stored_low : 1;
	rc = write_snap(rl, snap, rl->stored_low ? lo : 0, snap->index, 0);
	if (rc < 0)
		return rc;
	rl->snap_index = snap->index;
	rl->snap_term = snap->term;
	rl->stored_low = rl->last_index > snap->index ? snap->index + 1 : 0;
	return 0;
}

/* See rlog.h (Raft Figure 13, InstallSnapshot receiver rules 6 and 7). */
int rlog_install_snapshot(struct rlog *rl, const struct rlog_snap *snap,
                          bool keep_matching_suffix)
{
	if (snap->index < rl->snap_index) {
		STOR_ERR("raft log %s: snapshot at %" PRIu64
		         " is older than the stored one at %" PRIu64,
		         rl->path, snap->index, rl->snap_index);
		return -EINVAL;
	}
	bool keep = false;
	if (keep_matching_suffix && snap->index <= rl->last_index) {
		uint64_t t;
		int rc = term_at(rl, snap->index, &t);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		keep = rc == 0 && t == snap->term;
	}
	uint64_t lo = rl->stored_low;
	uint64_t suffix_hi = keep ? 0 : rl->last_index;
	uint64_t del_hi =
	    snap->index < rl->last_index ? snap->index : rl->last_index;
	int rc = write_snap(rl, snap, lo, del_hi, suffix_hi);
	if (rc < 0)
		return rc;
	rl->snap_index = snap->index;
	rl->snap_term = snap->term;
	if (!keep || rl->last_index <= snap->index) {
		rl->last_index = snap->index;
		rl->last_term = snap->term;
		rl->stored_low = 0;
	} else {
		rl->stored_low = snap->index + 1;
	}
	return 0;
}

/* See rlog.h. */
int rlog_get(struct rlog *rl, uint64_t index, struct rlog_entry *out)
{
	if (index <= rl->snap_index || index > rl->last_index)
		return -ENOENT;
	uint8_t key[ENTRY_KEY_LEN], *val;
	size_t vlen;
	entry_key(key, index);
	int rc = db_get(rl, key, sizeof key, &val, &vlen);
	if (rc < 0)
		return rc;
	if (!val)
		return -ENOENT;
	const char *why = "";
	rc = decode_entry(index, val, vlen, out, true, &why);
	if (rc == -EUCLEAN)
		STOR_ERR("raft log in %s is corrupt at index %" PRIu64 ": %s",
		         rl->path, index, why);
	leveldb_free(val);
	return rc;
}

uint64_t rlog_first_index(const struct rlog *rl)
{
	return rl->snap_index + 1;
}
uint64_t rlog_last_index(const struct rlog *rl)
{
	return rl->last_index;
}
uint64_t rlog_last_term(const struct rlog *rl)
{
	return rl->last_term;
}
uint64_t rlog_snap_index(const struct rlog *rl)
{
	return rl->snap_index;
}
uint64_t rlog_snap_term(const struct rlog *rl)
{
	return rl->snap_term;
}
const char *rlog_path(const struct rlog *rl)
{
	return rl->path;
}
