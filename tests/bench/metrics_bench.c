/*
 * metrics_bench.c — what counting and timing every FUSE request costs
 * (fs/sfs_metrics.c), next to what one request costs.
 *
 *   metrics_bench [-n N] [-t THREADS] [DIR]
 *
 * Prints, in nanoseconds per request:
 *   - clock pair: two clock_gettime(CLOCK_MONOTONIC) calls (the floor);
 *   - start+stop: sfs_mx_start and sfs_mx_stop of one request, as every
 *     request pays it, on 1 thread and on THREADS threads at once (the
 *     same kind, so the counters' cache lines are shared);
 *   - observe: one metrics_hist_observe;
 * and with DIR (a mount) the round trip of one FUSE request there: a
 * getxattr of a missing attribute on a file (the kernel forwards every
 * one), so the overhead can be read as a fraction of a request.
 * Figures only; nothing is asserted.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fs/metrics.h"
#include "fs/sfs_metrics.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct job {
	struct sfs_mx *mx;
	long n;
	int t;
	double ns;
};

static void *pairs(void *arg)
{
	struct job *j = arg;
	char keys[64][64]; /* distinct "requests", as in-flight ones are */
	uint64_t t0 = now_ns();
	for (long i = 0; i < j->n; i++) {
		void *k = keys[i & 63];
		sfs_mx_start(j->mx, k, SFS_OP_GETATTR);
		sfs_mx_stop(j->mx, k, 0);
	}
	j->ns = (double)(now_ns() - t0) / (double)j->n;
	return NULL;
}

int main(int argc, char **argv)
{
	long n = 2000000;
	int threads = 2, c;
	while ((c = getopt(argc, argv, "n:t:")) != -1) {
		if (c == 'n')
			n = atol(optarg);
		else if (c == 't')
			threads = atoi(optarg);
		else {
			fprintf(stderr, "usage: metrics_bench [-n N] [-t THREADS] "
					"[DIR]\n");
			return 2;
		}
	}
	if (n < 1000 || threads < 1 || threads > 64) {
		fprintf(stderr, "metrics_bench: -n >= 1000, 1 <= -t <= 64\n");
		return 2;
	}
	const char *dir = optind < argc ? argv[optind] : NULL;

	volatile uint64_t sink = 0;
	uint64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		sink += now_ns() - now_ns();
	double clock_pair = (double)(now_ns() - t0) / (double)n;

	struct metrics_hist h;
	memset(&h, 0, sizeof(h));
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		metrics_hist_observe(&h, (uint64_t)(i & 0xffff) * 100);
	double observe = (double)(now_ns() - t0) / (double)n;

	struct sfs_mx *mx = sfs_mx_new();
	if (!mx)
		return 1;
	struct job one = {.mx = mx, .n = n};
	pairs(&one);
	struct job jobs[64];
	pthread_t th[64];
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct job){.mx = mx, .n = n, .t = i};
		pthread_create(&th[i], NULL, pairs, &jobs[i]);
	}
	double worst = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].ns > worst)
			worst = jobs[i].ns;
	}
	struct sfs_op_stats st;
	sfs_mx_read(mx, SFS_OP_GETATTR, &st);
	if (st.lat.count != (uint64_t)n * (uint64_t)(threads + 1) ||
	    sfs_mx_untimed(mx)) {
		fprintf(stderr, "metrics_bench: counted %llu of %llu (%llu "
				"untimed)\n",
			(unsigned long long)st.lat.count,
			(unsigned long long)n * (uint64_t)(threads + 1),
			(unsigned long long)sfs_mx_untimed(mx));
		return 1;
	}
	sfs_mx_free(mx);

	printf("clock pair             %8.1f ns\n", clock_pair);
	printf("observe                %8.1f ns\n", observe);
	printf("start+stop, 1 thread   %8.1f ns\n", one.ns);
	printf("start+stop, %d threads  %8.1f ns (slowest thread)\n", threads,
	       worst);
	if (!dir)
		return (int)(sink & 0);

	char path[4096];
	snprintf(path, sizeof(path), "%s/.metrics_bench.%d", dir, (int)getpid());
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "metrics_bench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	long m = 20000;
	char v[16];
	t0 = now_ns();
	for (long i = 0; i < m; i++)
		if (getxattr(path, "user.metrics_bench_none", v, sizeof(v)) >= 0 ||
		    (errno != ENODATA && errno != ENOTSUP)) {
			fprintf(stderr, "metrics_bench: getxattr: %s\n",
				strerror(errno));
			break;
		}
	double rt = (double)(now_ns() - t0) / (double)m;
	unlink(path);
	printf("FUSE getxattr in %s  %8.1f ns (start+stop is %.2f %% of it)\n",
	       dir, rt, 100 * one.ns / rt);
	return 0;
}
