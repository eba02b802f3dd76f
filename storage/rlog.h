/*
 * rlog.h — the Raft log store: entries, hard state and snapshot metadata in
 * a LevelDB of their own (DIR/raft).
 *
 * Storage knows nothing of Raft beyond the bytes: an entry is (index, term,
 * type, data), the hard state is three numbers, the snapshot metadata is
 * (index, term, opaque configuration bytes). The caller (the replicator)
 * gives them meaning.
 *
 * Durability. Every mutating call is one synced LevelDB write (one fsync):
 * when it returns 0 its effect survives a crash, and a crash in the middle
 * leaves none of it. Group commit is the caller's job: gather the hard
 * state and all entries queued during a loop turn and hand them to ONE
 * rlog_append(), which costs one fsync whether it carries 1 entry or 256.
 *
 * Threads. A struct rlog is not locked: use it from one thread at a time
 * (the replicator thread). Different rlogs are independent.
 *
 * Key layout (fixed-width big-endian, so LevelDB's byte order is index
 * order); every value ends with a CRC-32C of everything before it and, for
 * entries, also covers the index:
 *   'e' u64 index  -> u8 version(1) u64 index u64 term u8 type u32 len
 *                     data[len] u32 crc
 *   'h'            -> u8 version(1) u64 term u64 vote u64 commit u32 crc
 *   's'            -> u8 version(1) u64 index u64 term u32 conf_len
 *                     conf[conf_len] u32 crc
 * The CRC is CRC-32C (Castagnoli), stored big-endian.
 *
 * Invariants on disk: entries with index > snap.index are consecutive,
 * start at snap.index + 1 and have non-decreasing terms. Entries at or below
 * snap.index may linger after a crash during compaction; they are ignored
 * and removed by the next rlog_load()/rlog_compact().
 */
#ifndef SANDFS_STORAGE_RLOG_H
#define SANDFS_STORAGE_RLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rlog_entry {
	uint64_t index, term;
	uint8_t type; /* opaque to storage */
	uint32_t len;
	uint8_t *data; /* len bytes; may be NULL when len == 0 */
};

struct rlog_hard_state {
	uint64_t term, vote, commit;
};

struct rlog_snap {
	uint64_t index, term; /* last entry the snapshot covers; 0,0 = none */
	uint32_t conf_len;
	uint8_t *conf; /* opaque configuration bytes; may be NULL if len 0 */
};

struct rlog;

/* Opens (creating if missing) the log store in directory path. Positions
 * the in-memory first/last index from the stored keys without reading the
 * whole log (it decodes the snapshot record and the last entry only: if
 * either is corrupt, open fails with -EUCLEAN). Errors: negative errno,
 * with a reason in err/errcap (may be NULL) and in the log; -EBUSY when
 * another process has the LevelDB open. *out is owned by the caller:
 * rlog_close(). */
int rlog_open(const char *path, struct rlog **out, char *err, size_t errcap);

/* Closes and frees rl (NULL is fine). */
void rlog_close(struct rlog *rl);

/* Reads everything a restarting node needs, verified:
 *   *hs      the hard state (all zero if never stored);
 *   *snap    the snapshot metadata (index 0 if none); snap->conf is
 *            malloc'ed, the caller frees it with rlog_snap_free(snap);
 *   *entries the entries after snap->index, in order, *n of them; the array
 *            and each entry's data are malloc'ed, the caller frees them with
 *            rlog_entries_free(*entries, *n). NULL when *n == 0.
 * Verification: each record's length, version and CRC; an entry's index
 * matches its key; indices consecutive from snap->index + 1; terms never
 * decrease (and start at >= snap->term). Any violation returns -EUCLEAN
 * with a message naming the directory and the index in err/errcap and the
 * log — nothing is truncated or repaired. Other errors: -EIO, -ENOMEM.
 * Outputs are untouched on error. Also deletes entries left at or below
 * snap->index by an interrupted compaction. */
int rlog_load(struct rlog *rl, struct rlog_hard_state *hs,
              struct rlog_snap *snap, struct rlog_entry **entries, size_t *n,
              char *err, size_t errcap);

/* Frees an entry array returned by rlog_load() (and each entry's data). */
void rlog_entries_free(struct rlog_entry *entries, size_t n);

/* Frees snap->conf and zeroes *snap (the struct itself is the caller's). */
void rlog_snap_free(struct rlog_snap *snap);

/* Stores hs (if not NULL) and the n entries e[0..n) in ONE synced batch.
 * The entries must have consecutive indices and non-decreasing terms, with
 * snap.index < e[0].index <= last_index + 1, and e[0].term at least the
 * term of the entry before it. Entries already stored at the same indices
 * are overwritten and any stored entry beyond e[n-1].index is deleted in
 * the same batch (the new entries replace a conflicting suffix, Raft §5.3:
 * "If an existing entry conflicts with a new one (same index but different
 * terms), delete the existing entry and all that follow it"). The caller
 * hands over only entries it wants to be the log's new end.
 * Returns 0, -EINVAL (bad arguments, nothing written), -ENOSPC, -EIO.
 * Borrows hs and e (nothing is kept). */
int rlog_append(struct rlog *rl, const struct rlog_hard_state *hs,
                const struct rlog_entry *e, size_t n);

/* Stores the hard state alone (synced). */
int rlog_set_hard_state(struct rlog *rl, const struct rlog_hard_state *hs);

/* Log compaction after a local snapshot (Raft §7): records snap as the
 * snapshot metadata and deletes entries <= snap->index. The metadata and the
 * first chunk of deletions go in one synced batch; the rest may follow in
 * further batches (harmless if interrupted, see above). snap->index must be
 * <= last index and >= the current snapshot index; returns -EINVAL
 * otherwise. snap->term must be the stored term of snap->index when that
 * entry is still in the log (-EINVAL otherwise). Borrows snap. */
int rlog_compact(struct rlog *rl, const struct rlog_snap *snap);

/* Records snap received from a leader (InstallSnapshot) as the snapshot
 * metadata and drops the log up to it.
 * keep_matching_suffix = false: delete every entry (Raft Figure 13, rule 7:
 *   "Discard the entire log").
 * keep_matching_suffix = true: if the stored entry at snap->index has term
 *   snap->term, keep the entries after it (Figure 13, rule 6: "If existing
 *   log entry has same index and term as snapshot's last included entry,
 *   retain log entries following it"); otherwise discard everything.
 * Entries above snap->index that are discarded go in the same synced batch
 * as the metadata. snap->index below the current snapshot index: -EINVAL.
 * Borrows snap. */
int rlog_install_snapshot(struct rlog *rl, const struct rlog_snap *snap,
                          bool keep_matching_suffix);

/* Reads one stored entry (index in [first, last]); out->data is malloc'ed,
 * the caller frees it with free(). -ENOENT when the index is not stored,
 * -EUCLEAN on a corrupt record. */
int rlog_get(struct rlog *rl, uint64_t index, struct rlog_entry *out);

/* In-memory positions: first index stored after the snapshot
 * (snap_index + 1, even when the log is empty), last index (snap_index when
 * the log is empty), and the snapshot index/term (0 when none). */
uint64_t rlog_first_index(const struct rlog *rl);
uint64_t rlog_last_index(const struct rlog *rl);
uint64_t rlog_last_term(const struct rlog *rl);
uint64_t rlog_snap_index(const struct rlog *rl);
uint64_t rlog_snap_term(const struct rlog *rl);

/* The directory this log lives in (borrowed from rl). */
const char *rlog_path(const struct rlog *rl);

#endif
