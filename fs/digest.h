/*
 * digest.h — the digest state machine: a count and a running SHA-256 of
 * every entry applied, plus the per-origin dedupe table that makes
 * proposals exactly-once. Two nodes that applied the same log show the
 * same count and hash, so `sandfs status` doubles as a cross-node
 * consistency check. Runs beside the inode table in every node.
 */
#ifndef SANDFS_DIGEST_H
#define SANDFS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/repl.h"

#define DSM_ORIGINS 64   /* origins tracked; the oldest is evicted */
#define DSM_RECENT 128   /* results kept per origin */
#define DSM_RESULT_MAX 64

struct dsm;
struct dsm_dedupe;

/* Open (or create) the state kept in `path` (a file). Caller frees with
 * dsm_close(). */
int dsm_open(const char *path, struct dsm **out);
void dsm_close(struct dsm *d);

/* The repl_sm vtable for this state machine (ctx = d). */
struct repl_sm dsm_sm(struct dsm *d);

/* Figures for status. hash is 32 bytes. */
void dsm_figures(struct dsm *d, uint64_t *count, uint64_t *applied,
		 uint8_t hash[32]);

/* Dedupe table, reusable by any state machine that keeps it in memory.
 * lookup returns 1 and copies the first result if (origin, seq) was
 * applied before, 2 if seq is below the origin's low-water mark (a stale
 * retry nobody waits for: skip it), 0 if it is new. record stores the
 * result and forgets results below `low`. Deterministic: every node
 * holds the same table after the same entries. */
int dsm_dedupe_encode(const struct dsm_dedupe *t, uint8_t **buf, size_t *len);
int dsm_dedupe_decode(struct dsm_dedupe *t, const uint8_t *buf, size_t len,
		      size_t *used);
struct dsm_dedupe *dsm_dedupe_new(void);
void dsm_dedupe_free(struct dsm_dedupe *t);
int dsm_dedupe_lookup(struct dsm_dedupe *t, uint64_t origin, uint64_t seq,
		      uint64_t low,
		      uint8_t *res, size_t rescap, size_t *reslen);
void dsm_dedupe_record(struct dsm_dedupe *t, uint64_t origin, uint64_t seq,
		       uint64_t low,
		       const uint8_t *res, size_t reslen);

#endif
