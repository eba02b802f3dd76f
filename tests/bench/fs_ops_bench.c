/*
 * fs_ops_bench.c — small-operation rates of a mounted filesystem.
 *
 *   fs_ops_bench DIR PROCS FILES
 *
 * Forks PROCS worker processes; worker k works in DIR/w<k>/ on FILES files
 * of its own. The phases run one after the other, all workers at once, and
 * the parent times each phase from "go" until every worker reported done:
 *
 *   create      open(O_CREAT|O_EXCL|O_WRONLY) + close of an empty file
 *   stat_first  stat() of each file, right after the creates
 *   stat        stat() again at once: the kernel's attribute cache is warm
 *   stat_cold   stat() after a pause of COLD_PAUSE_MS: the cache expired,
 *               every stat reaches the filesystem
 *   rename   rename() of each file to a new name in the same directory
 *   unlink   unlink() of each file
 *   small    create a file, write 4 KiB, fsync, close (FILES/4 files)
 *
 * For every phase it prints one line
 *   <phase> ops=<n> secs=<s> ops_per_s=<r> p50_us=<median> p99_us=<p99>
 * where the latencies are those of worker 0 (one process: the latency of a
 * single caller). Exit status 0, or 1 when any operation failed (the
 * failing call is printed).
 *
 * Workers and parent talk over pipes: the parent writes one byte into each
 * worker's own go pipe to start a phase, each worker writes one byte into
 * the shared done pipe when finished (or 'E' on error), and worker 0 sends
 * its latencies over a third pipe. Nothing else is shared.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	PH_CREATE,
	PH_STAT_FIRST,
	PH_STAT,
	PH_STAT_COLD,
	PH_RENAME,
	PH_UNLINK,
	PH_SMALL,
	PH_N
};
static const char *const phase_name[PH_N] = {
	"create", "stat_first", "stat", "stat_cold", "rename", "unlink",
	"small4k_fsync"};

/* The parent waits this long before stat_cold, so that the kernel's
 * attribute cache (1 s by default, for sandfs and bindfs alike) expired. */
#define COLD_PAUSE_MS 1500

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

/* Number of operations a worker does in phase ph. */
static int phase_ops(int ph, int files)
{
	return ph == PH_SMALL ? (files / 4 > 0 ? files / 4 : 1) : files;
}

/* One operation of phase ph on file i in dir. 0 or -errno (printed). */
static int do_op(int ph, const char *dir, int i, const char *buf)
{
	char a[4096], b[4096];
	struct stat st;
	int fd, rc = 0;
	switch (ph) {
	case PH_CREATE:
		snprintf(a, sizeof(a), "%s/f%d", dir, i);
		fd = open(a, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || close(fd) != 0)
			rc = -errno;
		break;
	case PH_STAT_FIRST:
	case PH_STAT:
	case PH_STAT_COLD:
		snprintf(a, sizeof(a), "%s/f%d", dir, i);
		if (stat(a, &st) != 0)
			rc = -errno;
		break;
	case PH_RENAME:
		snprintf(a, sizeof(a), "%s/f%d", dir, i);
		snprintf(b, sizeof(b), "%s/renamed%d", dir, i);
		if (rename(a, b) != 0)
			rc = -errno;
		break;
	case PH_UNLINK:
		snprintf(a, sizeof(a), "%s/renamed%d", dir, i);
		if (unlink(a) != 0)
			rc = -errno;
		break;
	case PH_SMALL:
		snprintf(a, sizeof(a), "%s/small%d", dir, i);
		fd = open(a, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		if (write(fd, buf, 4096) != 4096 || fsync(fd) != 0)
			rc = errno ? -errno : -EIO;
		if (close(fd) != 0 && !rc)
			rc = -errno;
		break;
	}
	if (rc)
		fprintf(stderr, "fs_ops_bench: %s of %s/%d: %s\n",
			phase_name[ph], dir, i, strerror(-rc));
	return rc;
}

/* A worker: wait for go, run the phase, report, for every phase. Worker 0
 * writes its latencies (ns, one long long per op) to lat_fd. */
static int worker(int k, const char *top, int files, int go_fd, int done_fd,
		  int lat_fd)
{
	char dir[2048], buf[4096];
	if (snprintf(dir, sizeof(dir), "%s/w%d", top, k) >= (int)sizeof(dir)) {
		fprintf(stderr, "fs_ops_bench: DIR is too long\n");
		return 1;
	}
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "fs_ops_bench: mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	memset(buf, 'a' + k % 26, sizeof(buf));
	long long *lat = calloc((size_t)files, sizeof(*lat));
	if (!lat)
		return 1;
	int failed = 0;
	for (int ph = 0; ph < PH_N; ph++) {
		char c;
		if (read(go_fd, &c, 1) != 1)
			break;
		int n = phase_ops(ph, files);
		for (int i = 0; i < n && !failed; i++) {
			long long t0 = now_ns();
			if (do_op(ph, dir, i, buf) != 0)
				failed = 1;
			lat[i] = now_ns() - t0;
		}
		if (k == 0 && !failed) {
			size_t len = (size_t)n * sizeof(*lat);
			if (write(lat_fd, lat, len) != (ssize_t)len)
				failed = 1;
		}
		c = failed ? 'E' : '.';
		if (write(done_fd, &c, 1) != 1)
			break;
		if (failed)
			break;
	}
	free(lat);
	return failed;
}

/* Read exactly len bytes. */
static int read_full(int fd, void *p, size_t len)
{
	char *c = p;
	while (len) {
		ssize_t r = read(fd, c, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		len -= (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: fs_ops_bench DIR PROCS FILES\n");
		return 2;
	}
	const char *top = argv[1];
	int procs = atoi(argv[2]), files = atoi(argv[3]);
	if (procs < 1 || procs > 256 || files < 1 || files > 10000000) {
		fprintf(stderr, "fs_ops_bench: PROCS 1..256, FILES >= 1\n");
		return 2;
	}
	int done[2], latp[2];
	int(*go)[2] = calloc((size_t)procs, sizeof(*go));
	if (!go || pipe(done) || pipe(latp)) {
		perror("pipe");
		return 1;
	}
	for (int k = 0; k < procs; k++)
		if (pipe(go[k])) {
			perror("pipe");
			return 1;
		}
	/* the latency pipe carries up to files*8 bytes per phase */
	fcntl(latp[1], F_SETPIPE_SZ, 1 << 20);
	pid_t *pids = calloc((size_t)procs, sizeof(*pids));
	long long *lat = calloc((size_t)files, sizeof(*lat));
	if (!pids || !lat)
		return 1;
	for (int k = 0; k < procs; k++) {
		pids[k] = fork();
		if (pids[k] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[k] == 0) {
			for (int j = 0; j < procs; j++) {
				close(go[j][1]);
				if (j != k)
					close(go[j][0]);
			}
			close(done[0]);
			close(latp[0]);
			_exit(worker(k, top, files, go[k][0], done[1], latp[1]));
		}
	}
	for (int k = 0; k < procs; k++)
		close(go[k][0]);
	close(done[1]);
	close(latp[1]);
	int failed = 0;
	for (int ph = 0; ph < PH_N && !failed; ph++) {
		int n = phase_ops(ph, files);
		if (ph == PH_STAT_COLD) {
			struct timespec ts = {COLD_PAUSE_MS / 1000,
					      (COLD_PAUSE_MS % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		long long t0 = now_ns();
		for (int k = 0; k < procs; k++)
			if (write(go[k][1], ".", 1) != 1)
				failed = 1;
		/* worker 0's latencies arrive while the others still run */
		int got_lat = read_full(latp[0], lat, (size_t)n * sizeof(*lat)) == 0;
		for (int k = 0; k < procs; k++) {
			char c;
			if (read(done[0], &c, 1) != 1 || c != '.')
				failed = 1;
		}
		double secs = (double)(now_ns() - t0) / 1e9;
		if (failed || !got_lat) {
			failed = 1;
			break;
		}
		qsort(lat, (size_t)n, sizeof(*lat), cmp_ll);
		printf("%s ops=%d secs=%.3f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f\n",
		       phase_name[ph], n * procs, secs, n * procs / secs,
		       (double)lat[n / 2] / 1e3, (double)lat[(n * 99) / 100] / 1e3);
		fflush(stdout);
	}
	for (int k = 0; k < procs; k++)
		close(go[k][1]);
	for (int k = 0; k < procs; k++) {
		int st;
		waitpid(pids[k], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	free(pids);
	free(go);
	free(lat);
	return failed;
}
