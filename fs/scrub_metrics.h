/*
 * scrub_metrics.h — the background block scrub's figures (struct
 * scrub_counters, fs/scrub.h) as sandfs_scrub_* metric families.
 */
#ifndef SANDFS_SCRUB_METRICS_H
#define SANDFS_SCRUB_METRICS_H

struct scrub_counters;
struct metrics_out;

void scrub_metrics_write(const struct scrub_counters *c, struct metrics_out *o);

#endif
