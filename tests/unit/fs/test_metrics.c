/*
 * test_metrics.c — histograms, the Prometheus text writer and its strict
 * parser (fs/metrics.c), the FUSE request timing table and the timed ops
 * table (fs/sfs_metrics.c), and the --metrics HTTP endpoint
 * (fs/metrics_http.c).
 */
#define FUSE_USE_VERSION 35
#include <arpa/inet.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "consensus/repl.h"
#include "fs/metrics.h"
#include "fs/metrics_http.h"
#include "fs/sfs.h"
#include "fs/sfs_metrics.h"

/* The ops table handed to libfuse, known to sfs.c. */
const struct fuse_lowlevel_ops *sfs_ops_untimed(void);

/* ---- histograms -------------------------------------------------------- */

static void hist_puts_durations_in_the_bucket_of_their_upper_bound(void **s)
{
	(void)s;
	struct metrics_hist h = {0};
	metrics_hist_observe(&h, 0);          /* bucket 0: <= 1 us */
	metrics_hist_observe(&h, 1000);       /* bucket 0 (bound inclusive) */
	metrics_hist_observe(&h, 1001);       /* bucket 1: (1, 2] us */
	metrics_hist_observe(&h, 3000000);    /* (2, 5] ms: bucket 11 */
	metrics_hist_observe(&h, 10000000000ull); /* 10 s: last finite */
	metrics_hist_observe(&h, 10000000001ull); /* +Inf */
	struct metrics_hist_snap sn;
	metrics_hist_read(&h, &sn);
	assert_int_equal(sn.count, 6);
	assert_int_equal(sn.bucket[0], 2);
	assert_int_equal(sn.bucket[1], 1);
	assert_int_equal(metrics_bound_ns(11), 5000000);
	assert_int_equal(sn.bucket[11], 1);
	assert_int_equal(sn.bucket[METRICS_BUCKETS - 1], 1);
	assert_int_equal(sn.bucket[METRICS_BUCKETS], 1);
	double want = (0 + 1000 + 1001 + 3000000 + 10000000000.0 +
		       10000000001.0) / 1e9;
	assert_true(fabs(sn.sum_s - want) < 1e-9);
	assert_string_equal(metrics_bound_text(0), "0.000001");
	assert_string_equal(metrics_bound_text(METRICS_BUCKETS - 1), "10");
	assert_string_equal(metrics_bound_text(METRICS_BUCKETS), "+Inf");
	/* Every bound's text is its value in seconds, bounds increase. */
	for (int i = 0; i < METRICS_BUCKETS; i++) {
		double v = strtod(metrics_bound_text(i), NULL);
		assert_true(fabs(v * 1e9 - (double)metrics_bound_ns(i)) < 0.5);
		if (i)
			assert_true(metrics_bound_ns(i) > metrics_bound_ns(i - 1));
	}
}

static void replicator_latency_buckets_match_the_metrics_buckets(void **s)
{
	(void)s;
	assert_int_equal(REPL_LAT_BUCKETS, METRICS_BUCKETS);
	for (int i = 0; i <= METRICS_BUCKETS; i++)
		assert_int_equal(repl_lat_bound_ns(i), metrics_bound_ns(i));
}

static void quantiles_interpolate_within_the_bucket(void **s)
{
	(void)s;
	struct metrics_hist h = {0};
	struct metrics_hist_snap sn;
	metrics_hist_read(&h, &sn);
	assert_true(metrics_hist_quantile(&sn, 0.5) < 0); /* nothing */
	/* 100 durations in (10, 20] us: p50 halfway, p99 near the top. */
	for (int i = 0; i < 100; i++)
		metrics_hist_observe(&h, 15000);
	metrics_hist_read(&h, &sn);
	assert_true(fabs(metrics_hist_quantile(&sn, 0.5) - 15e-6) < 1e-9);
	assert_true(fabs(metrics_hist_quantile(&sn, 0.99) - 19.9e-6) < 1e-9);
	/* One slow outlier in (0.5, 1] s moves p99 only when it is the 1 %. */
	metrics_hist_observe(&h, 700000000);
	metrics_hist_read(&h, &sn);
	assert_true(metrics_hist_quantile(&sn, 0.99) < 20e-6);
	assert_true(metrics_hist_quantile(&sn, 1.0) > 0.5);
	/* Beyond the last bound: the last bound. */
	struct metrics_hist big = {0};
	metrics_hist_observe(&big, 60000000000ull);
	metrics_hist_read(&big, &sn);
	assert_true(fabs(metrics_hist_quantile(&sn, 0.5) - 10) < 1e-9);
}

static void hist_sub_gives_the_interval(void **s)
{
	(void)s;
	struct metrics_hist h = {0};
	metrics_hist_observe(&h, 500);
	struct metrics_hist_snap a, b, d;
	metrics_hist_read(&h, &a);
	metrics_hist_observe(&h, 4000);
	metrics_hist_observe(&h, 4000);
	metrics_hist_read(&h, &b);
	metrics_hist_sub(&b, &a, &d);
	assert_int_equal(d.count, 2);
	assert_int_equal(d.bucket[0], 0);
	assert_int_equal(d.bucket[2], 2);
	assert_true(fabs(d.sum_s - 8e-6) < 1e-12);
	metrics_hist_sub(&a, &b, &d); /* went back (a restart): zeros */
	assert_int_equal(d.count, 0);
}

/* ---- writing ---------------------------------------------------------------- */

static void labels_are_escaped_and_bounded(void **s)
{
	(void)s;
	char lb[64] = "";
	assert_int_equal(metrics_label(lb, sizeof(lb), "op", "lookup"), 0);
	assert_int_equal(metrics_label(lb, sizeof(lb), "x", "a\"b\\c\nd"), 0);
	assert_string_equal(lb, "op=\"lookup\",x=\"a\\\"b\\\\c\\nd\"");
	char v[32];
	assert_int_equal(metrics_label_value(lb, "x", v, sizeof(v)), 0);
	assert_string_equal(v, "a\"b\\c\nd");
	assert_int_equal(metrics_label_value(lb, "op", v, sizeof(v)), 0);
	assert_string_equal(v, "lookup");
	assert_int_equal(metrics_label_value(lb, "nope", v, sizeof(v)), -ENOENT);
	assert_int_equal(metrics_label_value(lb, "op", v, 3), -ENOSPC);
	char small[12] = "";
	assert_int_equal(metrics_label(small, sizeof(small), "peer", "12345"),
			 -ENOSPC);
	assert_string_equal(small, "");
}

static void exposition_text_is_exactly_the_format(void **s)
{
	(void)s;
	struct metrics_out o = {0};
	metrics_family(&o, "sandfs_x_total", "counter", "Things");
	metrics_u64(&o, "sandfs_x_total", "peer=\"2\"", 42);
	metrics_u64(&o, "sandfs_x_total", NULL, 18446744073709551615ull);
	metrics_family(&o, "sandfs_g", "gauge", "A gauge");
	metrics_f64(&o, "sandfs_g", "", 0.25);
	metrics_f64(&o, "sandfs_g", "k=\"inf\"", INFINITY);
	metrics_f64(&o, "sandfs_g", "k=\"nan\"", NAN);
	assert_false(o.failed);
	assert_string_equal(o.s, "# HELP sandfs_x_total Things\n"
				 "# TYPE sandfs_x_total counter\n"
				 "sandfs_x_total{peer=\"2\"} 42\n"
				 "sandfs_x_total 18446744073709551615\n"
				 "# HELP sandfs_g A gauge\n"
				 "# TYPE sandfs_g gauge\n"
				 "sandfs_g 0.25\n"
				 "sandfs_g{k=\"inf\"} +Inf\n"
				 "sandfs_g{k=\"nan\"} NaN\n");
	free(o.s);
}

static void histogram_text_is_cumulative_and_ends_with_inf(void **s)
{
	(void)s;
	struct metrics_hist h = {0};
	metrics_hist_observe(&h, 1500);      /* bucket 1 */
	metrics_hist_observe(&h, 1500);
	metrics_hist_observe(&h, 20000000000ull); /* +Inf */
	struct metrics_hist_snap sn;
	metrics_hist_read(&h, &sn);
	struct metrics_out o = {0};
	metrics_family(&o, "sandfs_d_seconds", "histogram", "D");
	metrics_hist_write(&o, "sandfs_d_seconds", "op=\"read\"", &sn);
	assert_false(o.failed);
	assert_non_null(strstr(o.s, "sandfs_d_seconds_bucket{op=\"read\",le="
				    "\"0.000001\"} 0\n"
				    "sandfs_d_seconds_bucket{op=\"read\",le="
				    "\"0.000002\"} 2\n"));
	assert_non_null(strstr(o.s, "sandfs_d_seconds_bucket{op=\"read\",le="
				    "\"10\"} 2\n"
				    "sandfs_d_seconds_bucket{op=\"read\",le="
				    "\"+Inf\"} 3\n"
				    "sandfs_d_seconds_sum{op=\"read\"} 20.000003\n"
				    "sandfs_d_seconds_count{op=\"read\"} 3\n"));
	/* Round trip through the parser. */
	struct metrics_parsed p;
	char err[128];
	assert_int_equal(metrics_parse(o.s, o.len, &p, err, sizeof(err)), 0);
	assert_int_equal(p.n, METRICS_BUCKETS + 1 + 2);
	assert_int_equal(p.v[0].type, METRICS_HISTOGRAM);
	struct metrics_hist_snap back;
	assert_int_equal(metrics_hist_from(&p, "sandfs_d_seconds", "op=\"read\"",
					   &back),
			 0);
	assert_int_equal(back.count, 3);
	assert_memory_equal(back.bucket, sn.bucket, sizeof(sn.bucket));
	assert_true(fabs(back.sum_s - sn.sum_s) < 1e-9);
	assert_int_equal(metrics_hist_from(&p, "sandfs_d_seconds", "op=\"x\"",
					   &back),
			 -ENOENT);
	metrics_parsed_free(&p);
	free(o.s);
}

/* ---- parsing ------------------------------------------------------------------ */

static int parse(const char *text, char *err, size_t cap)
{
	struct metrics_parsed p;
	int rc = metrics_parse(text, strlen(text), &p, err, cap);
	metrics_parsed_free(&p);
	return rc;
}

static void parser_accepts_the_format(void **s)
{
	(void)s;
	const char *t = "# a comment\n"
			"# HELP a_total Help with \\\\ and \\n escapes\n"
			"# TYPE a_total counter\n"
			"a_total 1\n"
			"a_total{x=\"1\",y=\"q\\\"\"} 2e3 1700000000000\n"
			"\n"
			"# TYPE b gauge\n"
			"b -Inf\n"
			"b{z=\"\"} NaN\n"
			"b{t=\"1\",} 0.5\n";
	struct metrics_parsed p;
	char err[128] = "";
	assert_int_equal(metrics_parse(t, strlen(t), &p, err, sizeof(err)), 0);
	assert_int_equal(p.n, 5);
	const struct metrics_sample *x = metrics_find(&p, "a_total",
						      "x=\"1\",y=\"q\\\"\"");
	assert_non_null(x);
	assert_true(x->value == 2000);
	assert_int_equal(x->type, METRICS_COUNTER);
	x = metrics_find(&p, "b", NULL);
	assert_non_null(x);
	assert_true(isinf(x->value) && x->value < 0);
	assert_true(isnan(metrics_find(&p, "b", "z=\"\"")->value));
	assert_null(metrics_find(&p, "a_total", "x=\"2\""));
	metrics_parsed_free(&p);
}

static void parser_rejects_malformed_text_with_the_line(void **s)
{
	(void)s;
	char err[160];
	assert_int_equal(parse("x 1\n", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 1"));
	assert_non_null(strstr(err, "no TYPE"));
	assert_int_equal(parse("# TYPE x gauge\nx one\n", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "line 2"));
	assert_int_equal(parse("# TYPE x gauge\nx inf\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx 0x10\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\n# TYPE x gauge\n", err,
			       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "twice"));
	assert_int_equal(parse("# TYPE x summary\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx{a=\"b} 1\n", err,
			       sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx{a=\"\\q\"} 1\n", err,
			       sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx{a=b} 1\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx{1a=\"b\"} 1\n", err,
			       sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx 1", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "newline"));
	assert_int_equal(parse("# HELP x only help\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx 1 later\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx{a=\"b\"}1\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x gauge\nx 1\r\n", err, sizeof(err)),
			 -EINVAL);
	/* _bucket/_sum/_count belong to a histogram family only. */
	assert_int_equal(parse("# TYPE x gauge\nx_sum 1\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("# TYPE x histogram\nx_sum 1\nx_count 1\n"
			       "x_bucket{le=\"+Inf\"} 1\n",
			       err, sizeof(err)),
			 0);
	assert_int_equal(parse("# TYPE x histogram\nx 1\n", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(parse("", err, sizeof(err)), 0);
}

/* ---- FUSE request timing ----------------------------------------------------------- */

static void requests_are_counted_timed_and_errors_noted(void **s)
{
	(void)s;
	struct sfs_mx *mx = sfs_mx_new();
	assert_non_null(mx);
	int keys[13];
	for (int i = 0; i < 10; i++)
		sfs_mx_start(mx, &keys[i], SFS_OP_LOOKUP);
	sfs_mx_start(mx, &keys[11], SFS_OP_MKDIR);
	for (int i = 0; i < 10; i++)
		sfs_mx_stop(mx, &keys[i], i < 3 ? ENOENT : 0);
	sfs_mx_stop(mx, &keys[11], 0);
	sfs_mx_stop(mx, &keys[12], 0); /* never started: ignored */
	sfs_mx_stop(mx, &keys[0], 0);        /* answered twice: ignored */
	struct sfs_op_stats st;
	sfs_mx_read(mx, SFS_OP_LOOKUP, &st);
	assert_int_equal(st.started, 10);
	assert_int_equal(st.errors, 3);
	assert_int_equal(st.lat.count, 10);
	sfs_mx_read(mx, SFS_OP_MKDIR, &st);
	assert_int_equal(st.started, 1);
	assert_int_equal(st.lat.count, 1);
	sfs_mx_read(mx, SFS_OP_GETATTR, &st);
	assert_int_equal(st.started, 0);
	assert_int_equal(sfs_mx_untimed(mx), 0);

	struct metrics_out o = {0};
	sfs_mx_write(mx, &o);
	assert_false(o.failed);
	struct metrics_parsed p;
	char err[128];
	assert_int_equal(metrics_parse(o.s, o.len, &p, err, sizeof(err)), 0);
	assert_true(metrics_find(&p, "sandfs_fuse_ops_total",
				 "op=\"lookup\"")->value == 10);
	assert_true(metrics_find(&p, "sandfs_fuse_op_errors_total",
				 "op=\"lookup\"")->value == 3);
	assert_true(metrics_find(&p, "sandfs_fuse_op_duration_seconds_count",
				 "op=\"mkdir\"")->value == 1);
	/* Kinds never seen are left out. */
	assert_null(metrics_find(&p, "sandfs_fuse_ops_total",
				 "op=\"getattr\""));
	metrics_parsed_free(&p);
	free(o.s);
	sfs_mx_free(mx);
}

static void a_reused_request_address_takes_its_old_slot(void **s)
{
	(void)s;
	struct sfs_mx *mx = sfs_mx_new();
	int key;
	/* libfuse frees a request and may hand the same memory to the next:
	 * a start without a stop for it must not leak a slot. */
	for (int i = 0; i < 2 * SFS_MX_SLOTS; i++)
		sfs_mx_start(mx, &key, SFS_OP_GETATTR);
	assert_int_equal(sfs_mx_untimed(mx), 0);
	sfs_mx_stop(mx, &key, 0);
	struct sfs_op_stats st;
	sfs_mx_read(mx, SFS_OP_GETATTR, &st);
	assert_int_equal(st.started, 2 * SFS_MX_SLOTS);
	assert_int_equal(st.lat.count, 1);
	sfs_mx_free(mx);
}

static void a_full_table_counts_but_does_not_time(void **s)
{
	(void)s;
	struct sfs_mx *mx = sfs_mx_new();
	char *keys = malloc(4 * SFS_MX_SLOTS * 16);
	assert_non_null(keys);
	for (int i = 0; i < 4 * SFS_MX_SLOTS; i++)
		sfs_mx_start(mx, keys + 16 * i, SFS_OP_READ);
	uint64_t untimed = sfs_mx_untimed(mx);
	assert_true(untimed >= 3 * SFS_MX_SLOTS);
	for (int i = 0; i < 4 * SFS_MX_SLOTS; i++)
		sfs_mx_stop(mx, keys + 16 * i, 0);
	struct sfs_op_stats st;
	sfs_mx_read(mx, SFS_OP_READ, &st);
	assert_int_equal(st.started, 4 * SFS_MX_SLOTS);
	assert_int_equal(st.lat.count, 4 * SFS_MX_SLOTS - untimed);
	/* Freed again: new requests are timed. */
	sfs_mx_start(mx, keys, SFS_OP_READ);
	assert_int_equal(sfs_mx_untimed(mx), untimed);
	free(keys);
	sfs_mx_free(mx);
}

static void op_names_are_unique_label_values(void **s)
{
	(void)s;
	for (int i = 0; i < SFS_OP_COUNT; i++) {
		const char *n = sfs_op_name((enum sfs_op)i);
		assert_string_not_equal(n, "unknown");
		for (const char *c = n; *c; c++)
			assert_true((*c >= 'a' && *c <= 'z') || *c == '_');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(n, sfs_op_name((enum sfs_op)j));
	}
	assert_string_equal(sfs_op_name(SFS_OP_COUNT), "unknown");
}

/* The timed table must offer libfuse exactly the operations of the
 * handlers' table: a missing one would be answered ENOSYS, an extra one
 * would call NULL. */
static void timed_ops_table_has_the_same_operations(void **s)
{
	(void)s;
	const struct fuse_lowlevel_ops *t = sfs_ops(), *u = sfs_ops_untimed();
	assert_ptr_not_equal(t, u);
	enum { N = sizeof(struct fuse_lowlevel_ops) / sizeof(void (*)(void)) };
	_Static_assert(sizeof(struct fuse_lowlevel_ops) % sizeof(void (*)(void)) == 0,
		       "fuse_lowlevel_ops holds function pointers only");
	uintptr_t a[N], b[N];
	memcpy(a, t, sizeof(a));
	memcpy(b, u, sizeof(b));
	int n = 0;
	for (int i = 0; i < N; i++) {
		if ((a[i] != 0) != (b[i] != 0))
			fail_msg("operation %d: timed %s, untimed %s", i,
				 a[i] ? "set" : "NULL", b[i] ? "set" : "NULL");
		n += b[i] != 0;
	}
	assert_true(n >= SFS_OP_COUNT);
}

/* ---- the HTTP endpoint ------------------------------------------------------------- */

static void addresses_are_checked(void **s)
{
	(void)s;
	char host[64], err[200];
	unsigned port;
	assert_int_equal(metrics_http_parse_addr("127.0.0.1:9567", host,
						 sizeof(host), &port, err,
						 sizeof(err)),
			 0);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 9567);
	assert_int_equal(metrics_http_parse_addr(":0", host, sizeof(host), &port,
						 err, sizeof(err)),
			 0);
	assert_string_equal(host, "");
	assert_int_equal(port, 0);
	assert_int_equal(metrics_http_parse_addr("[::1]:80", host, sizeof(host),
						 &port, err, sizeof(err)),
			 0);
	assert_string_equal(host, "::1");
	assert_int_equal(metrics_http_parse_addr("localhost:1", host,
						 sizeof(host), &port, err,
						 sizeof(err)),
			 0);
	static const char *const bad[] = {
		"", "9567", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
		"127.0.0.1:-1", "127.0.0.1:9x", "::1:80", "[::1]80", "[]:80",
		"a b:1", "http://x:1", "[::g]:1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(metrics_http_parse_addr(bad[i], host,
							 sizeof(host), &port,
							 err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "HOST:PORT"));
	}
}

static char *body_fn(void *ctx, size_t *len)
{
	int *calls = ctx;
	(*calls)++;
	char *b = strdup("# TYPE t gauge\nt 1\n");
	*len = strlen(b);
	return b;
}

/* Send req to 127.0.0.1:port, return the whole answer (malloc'ed). */
static char *http(unsigned port, const char *req)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	shutdown(fd, SHUT_WR);
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);
	ssize_t r;
	while ((r = recv(fd, out + len, cap - len - 1, 0)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fd);
	return out;
}

static void endpoint_answers_get_metrics_and_refuses_the_rest(void **s)
{
	(void)s;
	int calls = 0;
	struct metrics_http *h;
	char err[200];
	assert_int_equal(metrics_http_start("127.0.0.1:0", body_fn, &calls, &h,
					    err, sizeof(err)),
			 0);
	unsigned port = metrics_http_port(h);
	assert_true(port > 0);
	char *r = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(r, "Content-Length: 19\r\n"));
	assert_non_null(strstr(r, "\r\n\r\n# TYPE t gauge\nt 1\n"));
	free(r);
	r = http(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
	assert_non_null(strstr(r, " 200 "));
	free(r);
	r = http(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, " 200 "));
	assert_null(strstr(r, "t 1"));
	free(r);
	assert_int_equal(calls, 3);
	r = http(port, "GET /other HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 404 "));
	free(r);
	r = http(port, "POST /metrics HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 405 "));
	free(r);
	r = http(port, "garbage\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 400 "));
	free(r);
	assert_int_equal(calls, 3);

	/* The port is taken now: a second server says so. */
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	struct metrics_http *h2;
	err[0] = 0;
	assert_int_equal(metrics_http_start(addr, body_fn, &calls, &h2, err,
					    sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "cannot listen"));
	metrics_http_stop(h);
	assert_int_equal(metrics_http_start("nonsense", body_fn, &calls, &h2,
					    err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(metrics_http_start("no-such-host.invalid:1", body_fn,
					    &calls, &h2, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "cannot resolve"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hist_puts_durations_in_the_bucket_of_their_upper_bound),
		cmocka_unit_test(replicator_latency_buckets_match_the_metrics_buckets),
		cmocka_unit_test(quantiles_interpolate_within_the_bucket),
		cmocka_unit_test(hist_sub_gives_the_interval),
		cmocka_unit_test(labels_are_escaped_and_bounded),
		cmocka_unit_test(exposition_text_is_exactly_the_format),
		cmocka_unit_test(histogram_text_is_cumulative_and_ends_with_inf),
		cmocka_unit_test(parser_accepts_the_format),
		cmocka_unit_test(parser_rejects_malformed_text_with_the_line),
		cmocka_unit_test(requests_are_counted_timed_and_errors_noted),
		cmocka_unit_test(a_reused_request_address_takes_its_old_slot),
		cmocka_unit_test(a_full_table_counts_but_does_not_time),
		cmocka_unit_test(op_names_are_unique_label_values),
		cmocka_unit_test(timed_ops_table_has_the_same_operations),
		cmocka_unit_test(addresses_are_checked),
		cmocka_unit_test(endpoint_answers_get_metrics_and_refuses_the_rest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
