/*
 * cmd_bench.c — `sandfs bench DIR`: a quick performance check of any
 * directory (a sandfs mount, tmpfs, a local disk, to compare them), in
 * the spirit of `juicefs bench`:
 *
 *   write big file    THREADS files of --big-file-size, written
 *                     sequentially in --block-size writes, then closed
 *   read big file     the same files read back (page cache dropped first
 *                     with posix_fadvise), every byte checked
 *   write small file  --small-files files of --small-file-size, split
 *                     over the threads
 *   read small file   read back and checked
 *   stat file         stat() of every small file
 *   create file       --files empty files created (and closed)
 *   delete file       all of them unlinked again
 *
 * Everything happens in a fresh directory DIR/.sandfs-bench-PID-XXXXXX
 * that is removed at the end, also after an error or Ctrl-C. Contents
 * carry a per-run nonce and their offset in every 4 KiB, so no two blocks
 * are alike (sandfs stores blocks by content: repeated data would be
 * stored once and look faster than it is). Progress bars go to stderr on
 * a terminal; the summary table (or --json) to stdout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs/main.h"

#define PAGE 4096u
#define THREADS_MAX 64

static volatile sig_atomic_t g_bench_stop;

static void bench_on_signal(int sig)
{
	(void)sig;
	g_bench_stop = 1;
}

enum phase {
	PH_WRITE_BIG,
	PH_READ_BIG,
	PH_WRITE_SMALL,
	PH_READ_SMALL,
	PH_STAT,
	PH_CREATE,
	PH_DELETE,
	PH_COUNT
};

static const char *const phase_title[PH_COUNT] = {
	"write big file", "read big file", "write small file",
	"read small file", "stat file", "create file", "delete file",
};

static const char *const phase_key[PH_COUNT] = {
	"write_big", "read_big", "write_small", "read_small",
	"stat", "create", "delete",
};

struct bench {
	char dir[PATH_MAX];   /* the run's own directory */
	uint64_t big;         /* bytes per big file */
	uint32_t block;       /* bytes per write/read */
	uint32_t small;       /* bytes per small file */
	uint32_t n_small;     /* small files in all */
	uint32_t n_files;     /* empty files in all */
	unsigned threads;
	bool fsync_files;     /* fsync before close */
	uint64_t nonce;
	uint8_t *pattern;     /* PAGE bytes of noise */

	enum phase ph;
	atomic_uint_fast64_t done;  /* bytes or files done in this phase */
	uint64_t total;             /* ... of this many */
	atomic_int failed;          /* an error was reported */
	pthread_mutex_t err_mu;     /* guards err */
	char err[PATH_MAX + 256];   /* the first error */

	double secs[PH_COUNT];
	uint64_t amount[PH_COUNT]; /* bytes (big) or files */
};

struct worker {
	struct bench *b;
	unsigned t;
	pthread_t th;
	double end; /* mono_s() when its share was done */
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(struct bench *b, const char *what, const char *path, int err)
{
	pthread_mutex_lock(&b->err_mu);
	if (!atomic_load(&b->failed)) {
		if (err)
			snprintf(b->err, sizeof(b->err), "%s %s: %s", what, path,
				 strerror(err));
		else
			snprintf(b->err, sizeof(b->err), "%s%s%s", what,
				 *path ? " " : "", path);
		atomic_store(&b->failed, 1);
	}
	pthread_mutex_unlock(&b->err_mu);
}

static bool stopping(struct bench *b)
{
	return g_bench_stop || atomic_load(&b->failed);
}

/* Contents of file `id` at byte offset off (a multiple of PAGE) for len
 * bytes: every page starts with the run's nonce, the file id and the
 * offset, the rest is noise. */
static void fill(const struct bench *b, uint8_t *buf, uint64_t id,
		 uint64_t off, size_t len)
{
	for (size_t p = 0; p < len; p += PAGE) {
		size_t n = len - p < PAGE ? len - p : PAGE;
		memcpy(buf + p, b->pattern, n);
		uint64_t stamp[3] = {b->nonce, id, off + p};
		memcpy(buf + p, stamp, n < sizeof(stamp) ? n : sizeof(stamp));
	}
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		if (w == 0)
			return EIO;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Read len bytes (short only at end of file): bytes read or -errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Write file path (id) of size bytes in block writes; progress in bytes
 * (count_bytes) or not. */
static void write_file(struct bench *b, const char *path, uint64_t id,
		       uint64_t size, uint8_t *buf, bool count_bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fail(b, "cannot create", path, errno);
		return;
	}
	for (uint64_t off = 0; off < size && !stopping(b); off += b->block) {
		size_t n = size - off < b->block ? (size_t)(size - off) : b->block;
		fill(b, buf, id, off, n);
		int e = write_all(fd, buf, n);
		if (e) {
			fail(b, "write", path, e);
			break;
		}
		if (count_bytes)
			atomic_fetch_add(&b->done, n);
	}
	if (!stopping(b) && b->fsync_files && fsync(fd) != 0)
		fail(b, "fsync", path, errno);
	if (close(fd) != 0 && !stopping(b))
		fail(b, "close", path, errno);
}

/* Read file path (id) back and check it is exactly what write_file put. */
static void read_file(struct bench *b, const char *path, uint64_t id,
		      uint64_t size, uint8_t *buf, uint8_t *want,
		      bool count_bytes)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(b, "cannot open", path, errno);
		return;
	}
	/* Read from the file system, not from the page cache the writes
	 * left (best effort; on FUSE the kernel drops its own copy). */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	uint64_t off = 0;
	while (off < size && !stopping(b)) {
		size_t n = size - off < b->block ? (size_t)(size - off) : b->block;
		ssize_t r = read_full(fd, buf, n);
		if (r < 0) {
			fail(b, "read", path, (int)-r);
			break;
		}
		if ((size_t)r != n) {
			fail(b, "short read (the file is shorter than written):",
			     path, 0);
			break;
		}
		fill(b, want, id, off, n);
		if (memcmp(buf, want, n) != 0) {
			fail(b, "content differs from what was written:", path,
			     0);
			break;
		}
		off += n;
		if (count_bytes)
			atomic_fetch_add(&b->done, n);
	}
	uint8_t extra;
	if (!stopping(b) && read(fd, &extra, 1) != 0)
		fail(b, "the file is longer than written:", path, 0);
	close(fd);
}

/* This thread's share [lo, hi) of n items. */
static void share(const struct worker *w, uint32_t n, uint32_t *lo,
		  uint32_t *hi)
{
	unsigned k = w->b->threads;
	*lo = (uint32_t)((uint64_t)n * w->t / k);
	*hi = (uint32_t)((uint64_t)n * (w->t + 1) / k);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	char path[PATH_MAX + 64];
	uint8_t *buf = NULL, *want = NULL;
	if (posix_memalign((void **)&buf, PAGE, b->block) ||
	    posix_memalign((void **)&want, PAGE, b->block)) {
		fail(b, "out of memory for", "the buffers", ENOMEM);
		free(buf);
		return NULL;
	}
	uint32_t lo, hi;
	switch (b->ph) {
	case PH_WRITE_BIG:
	case PH_READ_BIG:
		snprintf(path, sizeof(path), "%s/big.%u", b->dir, w->t);
		if (b->ph == PH_WRITE_BIG)
			write_file(b, path, w->t, b->big, buf, true);
		else
			read_file(b, path, w->t, b->big, buf, want, true);
		break;
	case PH_WRITE_SMALL:
	case PH_READ_SMALL:
	case PH_STAT:
		share(w, b->n_small, &lo, &hi);
		for (uint32_t i = lo; i < hi && !stopping(b); i++) {
			snprintf(path, sizeof(path), "%s/small.%u", b->dir, i);
			uint64_t id = (1ull << 32) | i;
			if (b->ph == PH_WRITE_SMALL) {
				write_file(b, path, id, b->small, buf, false);
			} else if (b->ph == PH_READ_SMALL) {
				read_file(b, path, id, b->small, buf, want,
					  false);
			} else {
				struct stat st;
				if (lstat(path, &st) != 0)
					fail(b, "stat", path, errno);
				else if ((uint64_t)st.st_size != b->small)
					fail(b, "stat shows the wrong size:",
					     path, 0);
			}
			atomic_fetch_add(&b->done, 1);
		}
		break;
	case PH_CREATE:
	case PH_DELETE:
		share(w, b->n_files, &lo, &hi);
		for (uint32_t i = lo; i < hi && !stopping(b); i++) {
			snprintf(path, sizeof(path), "%s/empty.%u", b->dir, i);
			if (b->ph == PH_CREATE) {
				int fd = open(path,
					      O_WRONLY | O_CREAT | O_EXCL |
						      O_CLOEXEC,
					      0644);
				if (fd < 0) {
					fail(b, "cannot create", path, errno);
					break;
				}
				close(fd);
			} else if (unlink(path) != 0) {
				fail(b, "unlink", path, errno);
				break;
			}
			atomic_fetch_add(&b->done, 1);
		}
		break;
	case PH_COUNT:
		break;
	}
	free(buf);
	free(want);
	w->end = mono_s();
	return NULL;
}

/* One progress line on stderr: title, bar, percentage, amount. */
static void progress(const struct bench *b, uint64_t done, double secs,
		     bool final)
{
	const int width = 30;
	double f = b->total ? (double)done / (double)b->total : 1;
	if (f > 1)
		f = 1;
	int fill_n = (int)(f * width);
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill_n ? '=' : i == fill_n ? '>' : ' ';
	bar[width] = 0;
	bool bytes = b->ph == PH_WRITE_BIG || b->ph == PH_READ_BIG;
	if (bytes)
		fprintf(stderr, "\r%-17s [%s] %3.0f%%  %llu/%llu MiB  %.1f s",
			phase_title[b->ph], bar, f * 100,
			(unsigned long long)(done >> 20),
			(unsigned long long)(b->total >> 20), secs);
	else
		fprintf(stderr, "\r%-17s [%s] %3.0f%%  %llu/%llu files  %.1f s",
			phase_title[b->ph], bar, f * 100,
			(unsigned long long)done, (unsigned long long)b->total,
			secs);
	fputs(final ? "\n" : "\033[K", stderr);
	fflush(stderr);
}

/* Run one phase on every thread; 0, or 1 after an error or interrupt. */
static int run_phase(struct bench *b, enum phase ph, bool bars)
{
	b->ph = ph;
	atomic_store(&b->done, 0);
	switch (ph) {
	case PH_WRITE_BIG:
	case PH_READ_BIG:
		b->total = b->big * b->threads;
		break;
	case PH_WRITE_SMALL:
	case PH_READ_SMALL:
	case PH_STAT:
		b->total = b->n_small;
		break;
	default:
		b->total = b->n_files;
		break;
	}
	struct worker w[THREADS_MAX];
	unsigned started = 0;
	double t0 = mono_s();
	for (unsigned t = 0; t < b->threads; t++) {
		w[t] = (struct worker){.b = b, .t = t};
		int e = pthread_create(&w[t].th, NULL, work, &w[t]);
		if (e) {
			fail(b, "cannot start", "a thread", e);
			break;
		}
		started++;
	}
	if (bars) {
		/* Draw until every thread has finished its share. */
		while (atomic_load(&b->done) < b->total && !stopping(b)) {
			progress(b, atomic_load(&b->done), mono_s() - t0, false);
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	/* The phase ends when its last thread finished (not when this
	 * thread noticed: the bars are drawn every 100 ms). */
	double last = t0;
	for (unsigned t = 0; t < started; t++) {
		pthread_join(w[t].th, NULL);
		if (w[t].end > last)
			last = w[t].end;
	}
	double secs = last - t0;
	b->secs[ph] = secs;
	b->amount[ph] = b->total;
	if (bars)
		progress(b, atomic_load(&b->done), secs, true);
	if (g_bench_stop && !atomic_load(&b->failed))
		fail(b, "interrupted", "", 0);
	return atomic_load(&b->failed) ? 1 : 0;
}

/* Remove everything the run made (best effort; says what is left). */
static void cleanup(struct bench *b)
{
	char path[PATH_MAX + 64];
	for (unsigned t = 0; t < b->threads; t++) {
		snprintf(path, sizeof(path), "%s/big.%u", b->dir, t);
		unlink(path);
	}
	for (uint32_t i = 0; i < b->n_small; i++) {
		snprintf(path, sizeof(path), "%s/small.%u", b->dir, i);
		unlink(path);
	}
	for (uint32_t i = 0; i < b->n_files; i++) {
		snprintf(path, sizeof(path), "%s/empty.%u", b->dir, i);
		unlink(path);
	}
	if (rmdir(b->dir) != 0 && errno != ENOENT)
		fprintf(stderr, "sandfs bench: could not remove %s: %s\n",
			b->dir, strerror(errno));
}

static bool bytes_phase(enum phase ph)
{
	return ph == PH_WRITE_BIG || ph == PH_READ_BIG;
}

static double per_s(const struct bench *b, enum phase ph)
{
	double a = (double)b->amount[ph];
	if (bytes_phase(ph))
		a /= 1048576.0;
	return b->secs[ph] > 0 ? a / b->secs[ph] : 0;
}

static void print_table(const struct bench *b, const char *dir)
{
	printf("sandfs bench %s: %u thread%s, big file %llu MiB (%u KiB "
	       "blocks), %u small files of %u KiB, %u empty files\n",
	       dir, b->threads, b->threads == 1 ? "" : "s",
	       (unsigned long long)(b->big >> 20), b->block >> 10, b->n_small,
	       b->small >> 10, b->n_files);
	const char *rule =
		"+------------------+--------------------+------------+\n";
	printf("%s| %-16s | %18s | %10s |\n%s", rule, "item", "value", "time",
	       rule);
	for (int ph = 0; ph < PH_COUNT; ph++) {
		char v[32];
		snprintf(v, sizeof(v), "%.2f %s", per_s(b, ph),
			 bytes_phase(ph) ? "MiB/s" : "files/s");
		printf("| %-16s | %18s | %8.2f s |\n", phase_title[ph], v,
		       b->secs[ph]);
	}
	printf("%s", rule);
}

static void print_json(const struct bench *b, const char *dir)
{
	printf("{\"dir\":\"");
	for (const char *p = dir; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if ((unsigned char)*p < 0x20)
			printf("\\u%04x", (unsigned char)*p);
		else
			putchar(*p);
	}
	printf("\",\"threads\":%u,\"big_file_bytes\":%llu,\"block_bytes\":%u,"
	       "\"small_file_bytes\":%u,\"small_files\":%u,\"files\":%u,"
	       "\"results\":{",
	       b->threads, (unsigned long long)b->big, b->block, b->small,
	       b->n_small, b->n_files);
	for (int ph = 0; ph < PH_COUNT; ph++)
		printf("%s\"%s\":{\"%s\":%.3f,\"seconds\":%.6f,\"%s\":%llu}",
		       ph ? "," : "", phase_key[ph],
		       bytes_phase(ph) ? "mib_per_s" : "files_per_s",
		       per_s(b, ph), b->secs[ph],
		       bytes_phase(ph) ? "bytes" : "count",
		       (unsigned long long)b->amount[ph]);
	printf("}}\n");
}

#define BENCH_STR2(x) #x
#define BENCH_STR(x) BENCH_STR2(x)
static const char bench_help[] =
	"usage: sandfs bench DIR [--big-file-size MiB] [--block-size KiB]\n"
	"                        [--small-file-size KiB] [--small-files N]\n"
	"                        [--files N] [--threads N] [--fsync]\n"
	"                        [--json] [--no-progress]\n"
	"\n"
	"Measures DIR (any directory: a sandfs mount, tmpfs, a disk):\n"
	"big-file write and read (MiB/s), small-file write and read,\n"
	"stat, create and delete (files/s). Works in a new directory\n"
	"under DIR and removes it afterwards.\n"
	"  --big-file-size  MiB per thread's big file (default 256)\n"
	"  --block-size     KiB per write/read call (default 1024)\n"
	"  --small-file-size KiB per small file (default 128)\n"
	"  --small-files    small files in all (default 100)\n"
	"  --files          empty files to create and delete (default 1000)\n"
	"  --threads        parallel workers (default 1, at most " BENCH_STR(THREADS_MAX) ")\n"
	"  --fsync          fsync every file before closing it\n"
	"  --json           print the results as JSON\n"
	"  --no-progress    no progress bars (they go to a terminal only)\n"
	"Exit status: 0 ok, 1 an I/O error or wrong data read back, 2 usage error.\n";

/* A whole number option within [lo, hi]. */
static int num_opt(const char *name, const char *s, unsigned long lo,
		   unsigned long hi, unsigned long *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi || s[0] == '-') {
		fprintf(stderr, "sandfs bench: --%s wants a number %lu .. %lu\n",
			name, lo, hi);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* The command, its state in b (zeroed). */
static int bench_main(struct bench *b, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"big-file-size", required_argument, NULL, 'B'},
		{"block-size", required_argument, NULL, 'b'},
		{"small-file-size", required_argument, NULL, 's'},
		{"small-files", required_argument, NULL, 'n'},
		{"files", required_argument, NULL, 'f'},
		{"threads", required_argument, NULL, 'p'},
		{"fsync", no_argument, NULL, 'S'},
		{"json", no_argument, NULL, 'j'},
		{"no-progress", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	unsigned long big = 256, block = 1024, small = 128, n_small = 100,
		      n_files = 1000, threads = 1;
	bool json = false, quiet = false;
	optind = 1;
	opterr = 0;
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'B':
			bad |= num_opt("big-file-size", optarg, 0, 1u << 20, &big);
			break;
		case 'b':
			bad |= num_opt("block-size", optarg, 4, 64 * 1024, &block);
			break;
		case 's':
			bad |= num_opt("small-file-size", optarg, 0, 1u << 20,
				       &small);
			break;
		case 'n':
			bad |= num_opt("small-files", optarg, 0, 10000000,
				       &n_small);
			break;
		case 'f':
			bad |= num_opt("files", optarg, 0, 10000000, &n_files);
			break;
		case 'p':
			bad |= num_opt("threads", optarg, 1, THREADS_MAX,
				       &threads);
			break;
		case 'S':
			b->fsync_files = true;
			break;
		case 'j':
			json = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			fputs(bench_help, stdout);
			return 0;
		case ':':
			fprintf(stderr, "sandfs bench: option '%s' needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr,
				"sandfs bench: unknown option '%s' (see sandfs "
				"bench --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (bad)
		return 2;
	if (argc - optind != 1) {
		fprintf(stderr, "sandfs bench: want exactly one DIR\n");
		fputs(bench_help, stderr);
		return 2;
	}
	const char *dir = argv[optind];
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "sandfs bench: %s: %s\n", dir,
			stat(dir, &st) != 0 ? strerror(errno)
					    : "not a directory");
		return 1;
	}
	b->big = (uint64_t)big << 20;
	b->block = (uint32_t)block << 10;
	b->small = (uint32_t)small << 10;
	b->n_small = (uint32_t)n_small;
	b->n_files = (uint32_t)n_files;
	b->threads = (unsigned)threads;
	pthread_mutex_init(&b->err_mu, NULL);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	b->nonce = ((uint64_t)now.tv_sec << 30) ^ (uint64_t)now.tv_nsec ^
		  ((uint64_t)getpid() << 48);
	b->pattern = malloc(PAGE);
	if (!b->pattern)
		return 1;
	uint64_t x = b->nonce | 1;
	for (unsigned i = 0; i < PAGE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b->pattern[i] = (uint8_t)x;
	}
	snprintf(b->dir, sizeof(b->dir), "%s/.sandfs-bench-%d-XXXXXX", dir,
		 (int)getpid());
	if (!mkdtemp(b->dir)) {
		fprintf(stderr, "sandfs bench: cannot create a directory in "
				"%s: %s\n",
			dir, strerror(errno));
		free(b->pattern);
		return 1;
	}
	struct sigaction sa = {.sa_handler = bench_on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	bool bars = !quiet && isatty(STDERR_FILENO);
	int rc = 0;
	for (int ph = 0; ph < PH_COUNT && rc == 0; ph++)
		rc = run_phase(b, (enum phase)ph, bars);
	cleanup(b);
	if (rc) {
		fprintf(stderr, "sandfs bench: %s\n", b->err);
	} else if (json) {
		print_json(b, dir);
	} else {
		print_table(b, dir);
	}
	free(b->pattern);
	pthread_mutex_destroy(&b->err_mu);
	return rc ? 1 : 0;
}

static int cmd_bench(int argc, char **argv)
{
	struct bench *b = calloc(1, sizeof(*b));
	if (!b) {
		fprintf(stderr, "sandfs bench: out of memory\n");
		return 1;
	}
	int rc = bench_main(b, argc, argv);
	free(b);
	return rc;
}

const struct sfs_cmd sfs_cmd_bench = {
	.name = "bench",
	.summary = "measure a directory: big and small files, stat, create",
	.help = bench_help,
	.run = cmd_bench,
};
