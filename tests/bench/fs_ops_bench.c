/*
 * fs_ops_bench.c — small-operation rates of a mounted filesystem.
 *
 *   fs_ops_bench [-d] [-o PHASE,...] DIR PROCS FILES
 *
 * Forks PROCS worker processes; worker k works in DIR/w<k>/ on FILES files
 * of its own (DIR is made when missing). The phases run one after the other, all workers at once, and
 * the parent times each phase from "go" until every worker reported done:
 *
 *   create      open(O_CREAT|O_EXCL|O_WRONLY) + close of an empty file
 *   stat_first  stat() of each file, right after the creates
 *   stat        stat() again at once: the kernel's attribute cache is warm
 *   stat_cold   stat() after a pause of COLD_PAUSE_MS: the cache expired,
 *               every stat reaches the filesystem (a lookup)
 *   readdir  list the worker's directory (FILES entries) from opendir to
 *            the end; FILES/20 listings (5..100), one listing is one op
 *   rename   rename() of each file to a new name in the same directory
 *   unlink   unlink() of each file
 *   mkdir    mkdir() of FILES directories
 *   rmdir    rmdir() of each of them
 *   small4k_fsync  create a file, write 4 KiB, fsync, close (FILES/4 files)
 *   small4k_read   open, read the 4 KiB back and check them, close
 *
 * -d drops the kernel's caches (sync, then 3 into /proc/sys/vm/drop_caches,
 * which needs root) before stat_cold and before small4k_read, so that those
 * reach the filesystem and its disk. -o runs only the phases named (the
 * others are skipped; a phase that needs files an earlier phase makes needs
 * that phase listed too, e.g. -o create,stat).
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
#include <dirent.h>
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
	PH_READDIR,
	PH_RENAME,
	PH_UNLINK,
	PH_MKDIR,
	PH_RMDIR,
	PH_SMALL,
	PH_SMALL_READ,
	PH_N
};
static const char *const phase_name[PH_N] = {
	"create", "stat_first", "stat",  "stat_cold",	  "readdir",
	"rename", "unlink",	"mkdir", "rmdir",	  "small4k_fsync",
	"small4k_read"};

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
	if (ph == PH_SMALL || ph == PH_SMALL_READ)
		return files / 4 > 0 ? files / 4 : 1;
	if (ph == PH_READDIR) {
		int n = files / 20;
		return n < 5 ? (files < 5 ? files : 5) : n > 100 ? 100 : n;
	}
	return files;
}

/* One full listing of dir: opendir, readdir to the end, closedir. 0 or
 * -errno. Every entry is counted, so a listing that stops early fails. */
static int list_dir(const char *dir, int want)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	int n = 0;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	int rc = errno ? -errno : 0;
	closedir(d);
	if (!rc && n < want)
		rc = -ENOENT;
	return rc;
}

/* One operation of phase ph on file i in dir (files: the worker's file
 * count). 0 or -errno (printed). */
static int do_op(int ph, const char *dir, int i, int files, const char *buf)
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
	case PH_READDIR:
		rc = list_dir(dir, files);
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
	case PH_MKDIR:
		snprintf(a, sizeof(a), "%s/d%d", dir, i);
		if (mkdir(a, 0755) != 0)
			rc = -errno;
		break;
	case PH_RMDIR:
		snprintf(a, sizeof(a), "%s/d%d", dir, i);
		if (rmdir(a) != 0)
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
	case PH_SMALL_READ:
		snprintf(a, sizeof(a), "%s/small%d", dir, i);
		fd = open(a, O_RDONLY);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		errno = 0;
		if (read(fd, b, 4096) != 4096)
			rc = errno ? -errno : -EIO;
		else if (memcmp(b, buf, 4096) != 0)
			rc = -EILSEQ; /* wrong content */
		if (close(fd) != 0 && !rc)
			rc = -errno;
		break;
	}
	if (rc)
		fprintf(stderr, "fs_ops_bench: %s of %s/%d: %s\n",
			phase_name[ph], dir, i,
			rc == -EILSEQ ? "content differs from what was written"
				      : strerror(-rc));
	return rc;
}

/* A worker: wait for go, run the phase, report, for every phase. Worker 0
 * writes its latencies (ns, one long long per op) to lat_fd. */
static int worker(int k, const char *top, int files, unsigned run,
		  int go_fd, int done_fd, int lat_fd)
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
		if (!(run & (1u << ph)))
			continue;
		if (read(go_fd, &c, 1) != 1)
			break;
		int n = phase_ops(ph, files);
		for (int i = 0; i < n && !failed; i++) {
			long long t0 = now_ns();
			if (do_op(ph, dir, i, files, buf) != 0)
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

/* The phase mask for a comma-separated list of phase names, or 0 when a
 * name is unknown (printed). */
static unsigned parse_phases(const char *list)
{
	unsigned mask = 0;
	char buf[512];
	if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf))
		return 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		int ph = 0;
		while (ph < PH_N && strcmp(t, phase_name[ph]))
			ph++;
		if (ph == PH_N) {
			fprintf(stderr, "fs_ops_bench: unknown phase '%s'\n", t);
			return 0;
		}
		mask |= 1u << ph;
	}
	return mask;
}

/* sync, then drop the page cache, dentries and inodes (root only; a note
 * on stderr otherwise: the phase then runs with warm caches). */
static void drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2)
		fprintf(stderr, "fs_ops_bench: cannot drop caches: %s\n",
			strerror(errno));
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	const char *usage =
		"usage: fs_ops_bench [-d] [-o PHASE,...] DIR PROCS FILES\n";
	unsigned run = (1u << PH_N) - 1;
	int drop = 0, opt;
	while ((opt = getopt(argc, argv, "do:")) != -1) {
		if (opt == 'd') {
			drop = 1;
		} else if (opt == 'o') {
			if (!(run = parse_phases(optarg)))
				return 2;
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (argc - optind != 3) {
		fputs(usage, stderr);
		return 2;
	}
	const char *top = argv[optind];
	int procs = atoi(argv[optind + 1]), files = atoi(argv[optind + 2]);
	if (procs < 1 || procs > 256 || files < 1 || files > 10000000) {
		fprintf(stderr, "fs_ops_bench: PROCS 1..256, FILES >= 1\n");
		return 2;
	}
	if (mkdir(top, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "fs_ops_bench: mkdir %s: %s\n", top, strerror(errno));
		return 1;
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
			_exit(worker(k, top, files, run, go[k][0], done[1],
				     latp[1]));
		}
	}
	for (int k = 0; k < procs; k++)
		close(go[k][0]);
	close(done[1]);
	close(latp[1]);
	int failed = 0;
	for (int ph = 0; ph < PH_N && !failed; ph++) {
		int n = phase_ops(ph, files);
		if (!(run & (1u << ph)))
			continue;
		if (ph == PH_STAT_COLD) {
			struct timespec ts = {COLD_PAUSE_MS / 1000,
					      (COLD_PAUSE_MS % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		if (drop && (ph == PH_STAT_COLD || ph == PH_SMALL_READ))
			drop_caches();
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
