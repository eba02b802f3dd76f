/*
 * metrics.h — lock-free latency histograms, the Prometheus text exposition
 * format (writer and a strict parser), for `--metrics`, the admin socket's
 * "metrics" request and `sandfs stats`.
 *
 * Histograms count durations (nanoseconds) in METRICS_BUCKETS fixed
 * buckets, 1-2-5 steps from 1 us to 10 s plus +Inf. Observing is three
 * relaxed atomic adds and a short search: any thread, no lock. A reader
 * copies the counters (metrics_hist_read); the copy is not one atomic
 * snapshot (an observation may show in its bucket and not yet in the
 * sum), which is what Prometheus client libraries do as well.
 *
 * Exposition (text format 0.0.4): a family is one "# HELP" and one
 * "# TYPE" line followed by its samples, "name{labels} value". Names are
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label values are escaped (\\, \", \n).
 * Histograms write NAME_bucket{...,le="..."} (cumulative, ending with
 * le="+Inf"), NAME_sum (seconds) and NAME_count.
 */
#ifndef SANDFS_METRICS_H
#define SANDFS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Finite bucket bounds; one more bucket (+Inf) follows them. */
#define METRICS_BUCKETS 22

struct metrics_hist {
	/* Non-cumulative counts: bucket[i] holds durations in
	 * (bound[i-1], bound[i]]; bucket[METRICS_BUCKETS] the rest. */
	atomic_uint_fast64_t bucket[METRICS_BUCKETS + 1];
	atomic_uint_fast64_t sum_ns;
};

/* A plain copy of a histogram (also rebuilt from a parsed scrape). */
struct metrics_hist_snap {
	uint64_t bucket[METRICS_BUCKETS + 1]; /* non-cumulative */
	uint64_t count;
	double sum_s;
};

/* Upper bound of finite bucket i in nanoseconds, and as the le="" text. */
uint64_t metrics_bound_ns(int i);
const char *metrics_bound_text(int i);

/* Count one duration. Thread-safe, lock-free. */
void metrics_hist_observe(struct metrics_hist *h, uint64_t ns);

/* Copy h into s. */
void metrics_hist_read(const struct metrics_hist *h, struct metrics_hist_snap *s);

/* s = a - b, bucket by bucket (counts that went back read as 0). */
void metrics_hist_sub(const struct metrics_hist_snap *a,
		      const struct metrics_hist_snap *b,
		      struct metrics_hist_snap *s);

/* The q-quantile (0 < q <= 1) in seconds, interpolated linearly within
 * the bucket it falls in (as Prometheus' histogram_quantile does); in the
 * +Inf bucket the last finite bound. -1 when s counts nothing. */
double metrics_hist_quantile(const struct metrics_hist_snap *s, double q);

/* ---- writing the exposition text ------------------------------------------ */

/* A growing text buffer. On allocation failure `failed` is set and later
 * writes are ignored; check it before using s. */
struct metrics_out {
	char *s; /* NUL-terminated; malloc'ed, the owner frees it */
	size_t len, cap;
	bool failed;
};

/* Start a family: its HELP and TYPE lines. type is "counter", "gauge" or
 * "histogram". name and help are ours (constants): not checked. */
void metrics_family(struct metrics_out *o, const char *name, const char *type,
		    const char *help);

/* One sample. labels is the text between the braces ('peer="2"'), or
 * NULL / "" for none; build it with metrics_label(). */
void metrics_u64(struct metrics_out *o, const char *name, const char *labels,
		 uint64_t v);
void metrics_f64(struct metrics_out *o, const char *name, const char *labels,
		 double v);

/* The samples of a histogram family NAME with labels (may be NULL):
 * NAME_bucket for every bound and +Inf, NAME_sum, NAME_count. */
void metrics_hist_write(struct metrics_out *o, const char *name,
			const char *labels, const struct metrics_hist_snap *s);

/* Append key="value" (value escaped) to the label text in buf, with a
 * comma when buf is not empty. Returns 0 or -ENOSPC (buf unchanged). */
int metrics_label(char *buf, size_t cap, const char *key, const char *value);

/* printf into o (for the odd line of another shape). */
void metrics_printf(struct metrics_out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- parsing ---------------------------------------------------------------- */

enum metrics_type {
	METRICS_UNTYPED = 0,
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
};

struct metrics_sample {
	char *name;   /* into the parsed copy of the text */
	char *labels; /* the text between the braces, as sent ("" for none) */
	double value;
	enum metrics_type type; /* of its family */
};

struct metrics_parsed {
	char *text; /* private copy the strings point into */
	struct metrics_sample *v;
	size_t n;
};

/* Parse exposition text strictly: every line a comment ("# HELP name
 * text", "# TYPE name type", other "# ..." ignored) or a sample "name
 * [{labels}] value [timestamp]" whose value is a number (or +Inf, -Inf,
 * NaN); every sample belongs to a family announced by a TYPE line before
 * it (a histogram's _bucket, _sum and _count to the family without the
 * suffix); labels are well formed and escaped; no family announced twice.
 * 0, -EINVAL with the line number and reason in err, or -ENOMEM. Free
 * with metrics_parsed_free() (also after a failure). */
int metrics_parse(const char *text, size_t len, struct metrics_parsed *p,
		  char *err, size_t errcap);
void metrics_parsed_free(struct metrics_parsed *p);

/* The sample called name whose label text equals labels exactly (NULL
 * or "" for none): its value, or NULL. */
const struct metrics_sample *metrics_find(const struct metrics_parsed *p,
					  const char *name, const char *labels);

/* Value of label key in a label text (unescaped into buf): 0, -ENOENT or
 * -ENOSPC. */
int metrics_label_value(const char *labels, const char *key, char *buf,
			size_t cap);

/* Rebuild histogram family name with label text base (the labels before
 * le, "" for none) from parsed samples: 0, or -ENOENT when a bucket or the
 * sum is missing. */
int metrics_hist_from(const struct metrics_parsed *p, const char *name,
		      const char *base, struct metrics_hist_snap *s);

#endif
