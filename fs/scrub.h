/*
 * scrub.h — the background scrub of a node's block store: a pass over
 * every stored block that re-reads it and checks it against its SHA-256
 * (and its CRC), at a limited rate, every so often. A block that fails is
 * moved to quarantine; if the inode table still references it, a good
 * copy is fetched from a peer at once (otherwise nothing needs it).
 *
 * Schedule: a pass starts `interval_s` after the previous one started
 * (the end of the last completed pass is kept in a small state file, so
 * the schedule survives restarts); a node that never completed a pass
 * starts its first one a little after it started (min(interval, 300 s)).
 * A pass reads at most rate_mib_s MiB/s, so a scrub at the default 4
 * MiB/s costs a few percent of a disk's bandwidth. It takes no lock
 * that the file system's requests wait for.
 *
 * Counters (struct scrub_counters) are what `sandfs status` shows and what
 * a metrics exporter can publish; they count since the process started,
 * except last_pass_end (persisted).
 *
 * Threads: one thread of its own; scrub_get / scrub_now from any thread.
 */
#ifndef SANDFS_FS_SCRUB_H
#define SANDFS_FS_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "fs/itab.h"
#include "storage/blk.h"

#define SCRUB_DEFAULT_MIB_S      4
#define SCRUB_DEFAULT_INTERVAL_S 86400
#define SCRUB_FIRST_DELAY_S      300

struct scrub_counters {
	bool enabled; /* rate_mib_s > 0 */
	uint32_t rate_mib_s;
	uint32_t interval_s;
	bool running;        /* a pass is under way */
	uint64_t passes;     /* passes completed */
	uint64_t pass_done;  /* blocks checked in the current (or last) pass */
	uint64_t pass_total; /* blocks that pass set out to check */
	uint64_t blocks_checked; /* every pass */
	uint64_t bytes_checked;
	uint64_t corrupt;    /* blocks that failed their check */
	uint64_t repaired;   /* of those, a good copy fetched from a peer */
	uint64_t unrepaired; /* referenced, but no peer had a good copy (yet) */
	uint64_t unreferenced; /* corrupt and referenced by nothing: quarantined
	                          only */
	int64_t
	    last_pass_end; /* unix time of the last completed pass, 0 none */
	double last_pass_secs; /* how long it took */
	int64_t
	    next_pass; /* unix time the next pass starts (0: running or off) */
	char last_finding[160]; /* the last corrupt block and what was done, ""
	                           none */
};

struct scrub_cfg {
	struct blk_store *bs; /* borrowed */
	struct itab *itab;    /* borrowed: is a block referenced? */
	/* Fetch a good copy into bs: 0 and *from, or -errno. NULL: no repair.
	 */
	int (*fetch)(void *ctx, const uint8_t hash[BLK_HASH_LEN],
	             uint64_t *from);
	void *ctx;
	uint32_t rate_mib_s;    /* 0: off */
	uint32_t interval_s;    /* 0: SCRUB_DEFAULT_INTERVAL_S */
	const char *state_path; /* file keeping last_pass_end; NULL: none */
};

struct scrub;

/* Start the scrub thread (also when off: its counters say so). 0 or
 * -ENOMEM / -errno of pthread_create. */
int scrub_start(const struct scrub_cfg *cfg, struct scrub **out);
/* Stop (a block check in progress finishes first) and free. NULL ok. */
void scrub_stop(struct scrub *s);
void scrub_get(struct scrub *s, struct scrub_counters *out);
/* Start a pass now (when on and none is running). */
void scrub_now(struct scrub *s);

#endif
