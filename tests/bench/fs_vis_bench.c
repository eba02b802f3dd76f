/*
 * fs_vis_bench.c — cross-node visibility lag of a replicated filesystem.
 *
 *   fs_vis_bench DIR1 DIR2 COUNT [POLL_US]
 *
 * DIR1 and DIR2 are the same directory seen through two mounts (two nodes,
 * two clients). For each of COUNT files, one after the other: create
 * DIR1/v<i> (open O_CREAT|O_EXCL, close), then poll stat(DIR2/v<i>) every
 * POLL_US microseconds (default 50; 0 spins) until it succeeds. The lag of
 * a file runs from the return of its create on DIR1 to the first stat on
 * DIR2 that finds it, so it is what a program on the other node waiting for
 * the file would see (a negative entry the kernel caches on DIR2 counts
 * too). Given the same directory twice it measures one stat.
 *
 * Prints one line
 *   visibility n=<count> p50_us=<median> p99_us=<p99> max_us=<max>
 * and removes the files. Exit status 0, or 1 when a create or stat fails
 * (other than ENOENT) or a file stays invisible for TIMEOUT_S seconds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A file not seen on DIR2 after this long is a failure, not a figure. */
#define TIMEOUT_S 10

/* Monotonic time in nanoseconds. */
static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

/* Create DIR1/v<i> and wait until DIR2/v<i> is there; the lag in ns goes
 * to *lag. 0 or -errno (printed; -ETIMEDOUT when never seen). */
static int one_file(const char *d1, const char *d2, int i, long poll_us,
		    long long *lag)
{
	char a[4096], b[4096];
	struct stat st;
	snprintf(a, sizeof(a), "%s/v%d", d1, i);
	snprintf(b, sizeof(b), "%s/v%d", d2, i);
	int fd = open(a, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0 || close(fd) != 0) {
		int e = errno;
		fprintf(stderr, "fs_vis_bench: create %s: %s\n", a, strerror(e));
		return -e;
	}
	long long t0 = now_ns();
	struct timespec pause = {0, poll_us * 1000L};
	for (;;) {
		if (stat(b, &st) == 0)
			break;
		if (errno != ENOENT) {
			int e = errno;
			fprintf(stderr, "fs_vis_bench: stat %s: %s\n", b,
				strerror(e));
			return -e;
		}
		if (now_ns() - t0 > TIMEOUT_S * 1000000000LL) {
			fprintf(stderr, "fs_vis_bench: %s not visible after %d s\n",
				b, TIMEOUT_S);
			return -ETIMEDOUT;
		}
		if (poll_us > 0)
			nanosleep(&pause, NULL);
	}
	*lag = now_ns() - t0;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: fs_vis_bench DIR1 DIR2 COUNT [POLL_US]\n");
		return 2;
	}
	const char *d1 = argv[1], *d2 = argv[2];
	int count = atoi(argv[3]);
	long poll_us = argc == 5 ? atol(argv[4]) : 50;
	if (count < 1 || count > 1000000 || poll_us < 0 || poll_us > 999999) {
		fprintf(stderr, "fs_vis_bench: COUNT 1..1000000, POLL_US 0..999999\n");
		return 2;
	}
	long long *lag = calloc((size_t)count, sizeof(*lag));
	if (!lag)
		return 1;
	int failed = 0, made = 0;
	for (int i = 0; i < count && !failed; i++, made++)
		if (one_file(d1, d2, i, poll_us, &lag[i]) != 0)
			failed = 1;
	for (int i = 0; i < made; i++) {
		char a[4096];
		snprintf(a, sizeof(a), "%s/v%d", d1, i);
		if (unlink(a) != 0 && errno != ENOENT) {
			fprintf(stderr, "fs_vis_bench: unlink %s: %s\n", a,
				strerror(errno));
			failed = 1;
		}
	}
	if (!failed) {
		qsort(lag, (size_t)count, sizeof(*lag), cmp_ll);
		printf("visibility n=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
		       count, (double)lag[count / 2] / 1e3,
		       (double)lag[(count * 99) / 100] / 1e3,
		       (double)lag[count - 1] / 1e3);
	}
	free(lag);
	return failed;
}
