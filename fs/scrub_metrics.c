/*
 * scrub_metrics.c — the scrub's progress and findings for --metrics and
 * `sandfs stats` (see scrub_metrics.h).
 */
#include "fs/scrub_metrics.h"

#include "fs/metrics.h"
#include "fs/scrub.h"

static void one(struct metrics_out *o, const char *name, const char *type,
		const char *help, double v)
{
	metrics_family(o, name, type, help);
	metrics_f64(o, name, NULL, v);
}

/* See scrub_metrics.h. */
void scrub_metrics_write(const struct scrub_counters *c, struct metrics_out *o)
{
	one(o, "sandfs_scrub_enabled", "gauge",
	    "1 when the background block scrub is on (-o scrub_mib_s > 0)",
	    c->enabled);
	one(o, "sandfs_scrub_rate_limit_bytes_per_second", "gauge",
	    "The scrub's read rate limit", (double)c->rate_mib_s * 1048576.0);
	one(o, "sandfs_scrub_running", "gauge", "1 while a scrub pass runs",
	    c->running);
	one(o, "sandfs_scrub_pass_checked_blocks", "gauge",
	    "Blocks checked so far by the current (or last) pass",
	    (double)c->pass_done);
	one(o, "sandfs_scrub_pass_blocks", "gauge",
	    "Blocks the current (or last) pass set out to check",
	    (double)c->pass_total);
	one(o, "sandfs_scrub_passes_total", "counter", "Scrub passes completed",
	    (double)c->passes);
	one(o, "sandfs_scrub_checked_blocks_total", "counter",
	    "Blocks the scrub re-verified (SHA-256 and CRC)",
	    (double)c->blocks_checked);
	one(o, "sandfs_scrub_checked_bytes_total", "counter",
	    "Bytes of those blocks", (double)c->bytes_checked);
	one(o, "sandfs_scrub_corrupt_blocks_total", "counter",
	    "Blocks the scrub found corrupt", (double)c->corrupt);
	one(o, "sandfs_scrub_repaired_blocks_total", "counter",
	    "Corrupt blocks replaced by a good copy from a peer",
	    (double)c->repaired);
	one(o, "sandfs_scrub_unrepaired_blocks_total", "counter",
	    "Corrupt referenced blocks no peer could provide (yet)",
	    (double)c->unrepaired);
	one(o, "sandfs_scrub_unreferenced_blocks_total", "counter",
	    "Corrupt blocks nothing references (quarantined only)",
	    (double)c->unreferenced);
	one(o, "sandfs_scrub_last_pass_end_timestamp_seconds", "gauge",
	    "Unix time the last pass completed (0: none yet)",
	    (double)c->last_pass_end);
	one(o, "sandfs_scrub_last_pass_duration_seconds", "gauge",
	    "How long the last completed pass took", c->last_pass_secs);
	one(o, "sandfs_scrub_next_pass_timestamp_seconds", "gauge",
	    "Unix time the next pass starts (0: one runs, or the scrub is off)",
	    (double)c->next_pass);
}
