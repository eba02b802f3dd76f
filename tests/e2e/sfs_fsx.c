/*
 * sfs_fsx.c — randomized file operations checked against a model, in the
 * manner of fsx (the file system exerciser of BSD and xfstests).
 *
 * One file on one mount gets a random sequence of writes, truncates,
 * reads, fallocate calls (allocate, keep-size, punch hole, zero range),
 * shared mmap reads and writes (msync), copy_file_range and fsync. An
 * in-memory copy of what the file must hold follows every operation;
 * after each one the file's size and the bytes the operation touched are
 * read back and compared (and the whole file every 50 operations). Now
 * and then the file is closed: then the same file is opened on every
 * other mount given with --check (other nodes of the cluster) and must
 * read back exactly the model (close-to-open), before the primary opens
 * it again.
 *
 * The seed and the operation count are printed first; a failure prints
 * the last operations and the command line that replays the run.
 *
 *   sfs_fsx --file MNT1/f [--check MNT2/f]... [--seed N] [--ops N]
 *           [--maxlen BYTES] [--blocksize BYTES] [--allow-unsupported] [-v]
 *
 * --maxlen bounds the file (default 1 MiB); --blocksize (default 256 KiB,
 * sandfs's) is what some ranges are aligned to, so whole-block paths get
 * work too.
 *
 * By default every operation must be supported; --allow-unsupported
 * accepts EOPNOTSUPP from fallocate modes and copy_file_range (say so for
 * a file system that documents it), each reported once and then skipped.
 * Exit status: 0 all operations matched the model, 1 a mismatch or an
 * unexpected error, 2 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum op {
	OP_READ,
	OP_WRITE,
	OP_TRUNCATE,
	OP_FALLOC,       /* mode 0: may extend the size */
	OP_FALLOC_KEEP,  /* FALLOC_FL_KEEP_SIZE */
	OP_PUNCH,        /* FALLOC_FL_PUNCH_HOLE | KEEP_SIZE */
	OP_ZERO,         /* FALLOC_FL_ZERO_RANGE (maybe KEEP_SIZE) */
	OP_MAPREAD,
	OP_MAPWRITE,
	OP_COPY,         /* copy_file_range within the file */
	OP_FSYNC,
	OP_CLOSEOPEN,
	OP__COUNT
};

static const char *const op_names[OP__COUNT] = {
    "read", "write", "truncate", "fallocate", "fallocate-keep-size",
    "punch-hole", "zero-range", "mapread", "mapwrite", "copy_file_range",
    "fsync", "close+check+open"};

/* relative frequencies */
static const unsigned op_weight[OP__COUNT] = {15, 20, 6, 4, 3, 4, 3,
					      5, 5, 5, 2, 3};

/* What one operation did, for the history printed on failure. */
struct rec {
	unsigned long n;
	enum op op;
	uint64_t off, len, aux; /* aux: copy source, truncate size, zero flags */
	uint64_t size_after;
};

#define HIST 64

static struct {
	const char *file;
	const char *check[16];
	int n_check;
	uint64_t seed;
	unsigned long ops;
	uint64_t maxlen;
	uint64_t blocksize; /* ranges are sometimes aligned to it */
	bool allow_unsupported;
	bool verbose;
	char **argv;
	int argc;
} cfg = {.seed = 0, .ops = 2000, .maxlen = 1u << 20, .blocksize = 262144};

static uint8_t *model;     /* maxlen bytes; past size always zero */
static uint64_t msize;     /* the file's size per the model */
static uint8_t *scratch;   /* maxlen bytes */
static int fd = -1;
static unsigned long opno;
static struct rec hist[HIST];
static bool unsupported[OP__COUNT];
static unsigned long counts[OP__COUNT], closes, checks;
static uint64_t rng;
static long pagesz;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

static void print_history(void)
{
	unsigned long first = opno >= HIST ? opno - HIST + 1 : 1;
	fprintf(stderr, "last operations (number op offset length aux -> size):\n");
	for (unsigned long i = first; i <= opno; i++) {
		const struct rec *r = &hist[i % HIST];
		if (r->n != i)
			continue;
		fprintf(stderr, "  %6lu %-20s 0x%-8" PRIx64 " 0x%-8" PRIx64
				" 0x%-8" PRIx64 " -> 0x%" PRIx64 "\n",
			r->n, op_names[r->op], r->off, r->len, r->aux, r->size_after);
	}
}

static void replay_line(void)
{
	fprintf(stderr, "replay:");
	for (int i = 0; i < cfg.argc; i++) {
		if (!strcmp(cfg.argv[i], "--seed") || !strcmp(cfg.argv[i], "--ops")) {
			i++;
			continue;
		}
		fprintf(stderr, " %s", cfg.argv[i]);
	}
	fprintf(stderr, " --seed %" PRIu64 " --ops %lu\n", cfg.seed, opno);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sfs_fsx: FAIL at operation %lu (seed %" PRIu64 "): ", opno,
		cfg.seed);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_history();
	replay_line();
	exit(1);
}

/* Compare got (n bytes read at off from `what`) with the model. */
static void compare(const char *what, const uint8_t *got, uint64_t off, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		if (got[i] == model[off + i])
			continue;
		uint64_t j = i;
		while (j < n && got[j] != model[off + j] && j - i < 1 << 20)
			j++;
		fprintf(stderr, "  %s: bytes 0x%" PRIx64 "..0x%" PRIx64
				" differ; first: got 0x%02x want 0x%02x\n",
			what, off + i, off + j, got[i], model[off + i]);
		fail("%s: content differs from the model at offset 0x%" PRIx64
		     " (file size 0x%" PRIx64 ")",
		     what, off + i, msize);
	}
}

static void read_exact(int f, const char *what, uint8_t *buf, uint64_t off, uint64_t n)
{
	uint64_t done = 0;
	while (done < n) {
		ssize_t r = pread(f, buf + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail("%s: pread(0x%" PRIx64 ", 0x%" PRIx64 "): %s", what,
			     off + done, n - done, strerror(errno));
		}
		if (r == 0)
			fail("%s: pread at 0x%" PRIx64 ": end of file, model size 0x%" PRIx64,
			     what, off + done, msize);
		done += (uint64_t)r;
	}
}

static void check_size(int f, const char *what)
{
	struct stat st;
	if (fstat(f, &st) != 0)
		fail("%s: fstat: %s", what, strerror(errno));
	if ((uint64_t)st.st_size != msize)
		fail("%s: size is 0x%" PRIx64 ", model says 0x%" PRIx64, what,
		     (uint64_t)st.st_size, msize);
}

/* Size, the range [off, off+n) clipped to the file, and EOF behaviour. */
static void check_range(int f, const char *what, uint64_t off, uint64_t n)
{
	check_size(f, what);
	if (off >= msize)
		n = 0;
	else if (off + n > msize)
		n = msize - off;
	if (n) {
		read_exact(f, what, scratch, off, n);
		compare(what, scratch, off, n);
	}
	uint8_t b;
	ssize_t r = pread(f, &b, 1, (off_t)msize);
	if (r != 0)
		fail("%s: a read at the end of file (0x%" PRIx64 ") returned %zd (%s)",
		     what, msize, r, r < 0 ? strerror(errno) : "data past the end");
}

static void check_all(int f, const char *what)
{
	check_range(f, what, 0, msize);
}

static int open_primary(void)
{
	int f = open(cfg.file, O_RDWR | O_CREAT, 0644);
	if (f < 0)
		fail("open %s: %s", cfg.file, strerror(errno));
	return f;
}

/* Close the primary; every other mount must read the model; reopen. */
static void close_check_open(void)
{
	if (close(fd) != 0)
		fail("close %s: %s", cfg.file, strerror(errno));
	fd = -1;
	closes++;
	for (int i = 0; i < cfg.n_check; i++) {
		char what[300];
		snprintf(what, sizeof what, "after close, on %s", cfg.check[i]);
		int f = open(cfg.check[i], O_RDONLY);
		if (f < 0)
			fail("%s: open: %s", what, strerror(errno));
		check_all(f, what);
		close(f);
		checks++;
	}
	fd = open_primary();
	check_all(fd, "after reopen");
}

static void fill_random(uint8_t *p, uint64_t n)
{
	/* a recognizable pattern: op number in the high byte, position low */
	uint64_t x = rnd();
	for (uint64_t i = 0; i < n; i++) {
		if ((i & 7) == 0)
			x = rnd();
		p[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
}

/* An offset and length: mostly small, sometimes block-sized or large,
 * sometimes on 64 KiB boundaries (the block size sandfs uses). */
static void pick_range(uint64_t limit, uint64_t *off, uint64_t *len)
{
	uint64_t o, l;
	switch (rnd_below(4)) {
	case 0:
		o = rnd_below(limit);
		l = 1 + rnd_below(4096);
		break;
	case 1:
		o = rnd_below(limit);
		l = 1 + rnd_below(limit / 4 + 1);
		break;
	case 2: /* aligned to the file system's block size (or 64 KiB) */
	{
		uint64_t bs = rnd_below(2) ? cfg.blocksize : 65536;
		o = rnd_below(limit / bs + 1) * bs;
		l = (1 + rnd_below(3)) * bs;
		break;
	}
	default: /* around the current end */
		o = msize ? msize - rnd_below(msize < 8192 ? msize : 8192) : 0;
		l = 1 + rnd_below(16384);
		break;
	}
	if (o >= limit)
		o = limit - 1;
	if (o + l > limit)
		l = limit - o;
	*off = o;
	*len = l;
}

static void set_size(uint64_t n)
{
	if (n < msize)
		memset(model + n, 0, msize - n);
	msize = n;
}

static bool is_unsupported(enum op op, int err)
{
	if ((err != EOPNOTSUPP && err != ENOTSUP) || !cfg.allow_unsupported)
		return false;
	if (!unsupported[op])
		printf("sfs_fsx: note: %s is not supported here (%s); skipped from "
		       "now on\n",
		       op_names[op], strerror(err));
	unsupported[op] = true;
	return true;
}

static void do_fallocate(enum op op, uint64_t off, uint64_t len, uint64_t *aux)
{
	int mode = 0;
	bool keep = false;
	switch (op) {
	case OP_FALLOC_KEEP:
		mode = FALLOC_FL_KEEP_SIZE;
		keep = true;
		break;
	case OP_PUNCH:
		mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		keep = true;
		break;
	case OP_ZERO:
		keep = rnd_below(2);
		mode = FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0);
		break;
	default:
		break;
	}
	*aux = (uint64_t)mode;
	if (fallocate(fd, mode, (off_t)off, (off_t)len) != 0) {
		if (is_unsupported(op, errno))
			return;
		fail("%s(0x%" PRIx64 ", 0x%" PRIx64 "): %s", op_names[op], off, len,
		     strerror(errno));
	}
	uint64_t end = off + len;
	if (op == OP_PUNCH || op == OP_ZERO) {
		uint64_t zend = keep && end > msize ? msize : end;
		if (zend > off)
			memset(model + off, 0, zend - off);
	}
	if (!keep && end > msize)
		msize = end;
}

static void do_map(enum op op, uint64_t off, uint64_t len)
{
	uint64_t pg = off & ~(uint64_t)(pagesz - 1);
	uint64_t maplen = off + len - pg;
	int prot = PROT_READ | (op == OP_MAPWRITE ? PROT_WRITE : 0);
	uint8_t *p = mmap(NULL, maplen, prot, MAP_SHARED, fd, (off_t)pg);
	if (p == MAP_FAILED)
		fail("%s: mmap(0x%" PRIx64 ", 0x%" PRIx64 "): %s", op_names[op], pg,
		     maplen, strerror(errno));
	if (op == OP_MAPREAD) {
		compare("mapread", p + (off - pg), off, len);
	} else {
		fill_random(scratch, len);
		memcpy(p + (off - pg), scratch, len);
		memcpy(model + off, scratch, len);
		if (msync(p, maplen, MS_SYNC) != 0)
			fail("mapwrite: msync: %s", strerror(errno));
	}
	if (munmap(p, maplen) != 0)
		fail("%s: munmap: %s", op_names[op], strerror(errno));
}

static void do_copy(uint64_t *src, uint64_t *dst, uint64_t *len)
{
	/* source inside the file, destination anywhere below maxlen, not
	 * overlapping (copy_file_range refuses overlapping ranges) */
	uint64_t s = rnd_below(msize), l = 1 + rnd_below(msize - s < 262144 ? msize - s : 262144);
	uint64_t d = rnd_below(cfg.maxlen - l + 1);
	if (d < s + l && s < d + l) {
		d = s + l; /* just after the source */
		if (d + l > cfg.maxlen) {
			*len = 0;
			return;
		}
	}
	*src = s, *dst = d;
	loff_t so = (loff_t)s, dof = (loff_t)d;
	uint64_t done = 0;
	while (done < l) {
		ssize_t r = copy_file_range(fd, &so, fd, &dof, l - done, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (is_unsupported(OP_COPY, errno))
				return;
			fail("copy_file_range(0x%" PRIx64 " -> 0x%" PRIx64 ", 0x%" PRIx64
			     "): %s",
			     s + done, d + done, l - done, strerror(errno));
		}
		if (r == 0)
			fail("copy_file_range copied nothing at source 0x%" PRIx64
			     " (size 0x%" PRIx64 ")",
			     s + done, msize);
		done += (uint64_t)r;
	}
	memmove(model + d, model + s, l);
	if (d + l > msize)
		msize = d + l;
	*len = l;
}

static enum op pick_op(void)
{
	unsigned total = 0;
	for (int i = 0; i < OP__COUNT; i++)
		total += unsupported[i] ? 0 : op_weight[i];
	unsigned r = (unsigned)rnd_below(total);
	for (int i = 0; i < OP__COUNT; i++) {
		if (unsupported[i])
			continue;
		if (r < op_weight[i])
			return (enum op)i;
		r -= op_weight[i];
	}
	return OP_READ;
}

static void one_op(void)
{
	enum op op = pick_op();
	/* operations that need data fall back to a write on an empty file */
	if (msize == 0 && (op == OP_READ || op == OP_MAPREAD || op == OP_MAPWRITE ||
			   op == OP_COPY))
		op = OP_WRITE;
	uint64_t off = 0, len = 0, aux = 0;
	struct rec *r = &hist[opno % HIST];
	switch (op) {
	case OP_READ:
		pick_range(msize, &off, &len);
		read_exact(fd, "read", scratch, off, len);
		compare("read", scratch, off, len);
		break;
	case OP_WRITE: {
		pick_range(cfg.maxlen, &off, &len);
		fill_random(scratch, len);
		uint64_t done = 0;
		while (done < len) {
			ssize_t w = pwrite(fd, scratch + done, len - done, (off_t)(off + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				fail("pwrite(0x%" PRIx64 ", 0x%" PRIx64 "): %s", off + done,
				     len - done, w < 0 ? strerror(errno) : "wrote nothing");
			done += (uint64_t)w;
		}
		memcpy(model + off, scratch, len);
		if (off + len > msize)
			msize = off + len;
		break;
	}
	case OP_TRUNCATE:
		aux = rnd_below(4) == 0 ? 0 : rnd_below(cfg.maxlen + 1);
		if (ftruncate(fd, (off_t)aux) != 0)
			fail("ftruncate(0x%" PRIx64 "): %s", aux, strerror(errno));
		set_size(aux);
		off = aux < msize ? aux : 0;
		break;
	case OP_FALLOC:
	case OP_FALLOC_KEEP:
	case OP_PUNCH:
	case OP_ZERO:
		pick_range(cfg.maxlen, &off, &len);
		do_fallocate(op, off, len, &aux);
		break;
	case OP_MAPREAD:
	case OP_MAPWRITE:
		pick_range(msize, &off, &len);
		do_map(op, off, len);
		break;
	case OP_COPY:
		do_copy(&aux, &off, &len);
		break;
	case OP_FSYNC:
		if (fsync(fd) != 0)
			fail("fsync: %s", strerror(errno));
		break;
	case OP_CLOSEOPEN:
		break; /* below, after the record */
	case OP__COUNT:
		break;
	}
	*r = (struct rec){.n = opno, .op = op, .off = off, .len = len, .aux = aux,
			  .size_after = msize};
	counts[op]++;
	if (cfg.verbose)
		printf("%6lu %-20s 0x%" PRIx64 " 0x%" PRIx64 " 0x%" PRIx64 " -> 0x%" PRIx64
		       "\n",
		       opno, op_names[op], off, len, aux, msize);
	if (op == OP_CLOSEOPEN) {
		close_check_open();
		return;
	}
	check_range(fd, op_names[op], off, len);
	if (opno % 50 == 0)
		check_all(fd, "whole-file check");
}

static void usage(void)
{
	fprintf(stderr,
		"usage: sfs_fsx --file PATH [--check PATH]... [--seed N] [--ops N]\n"
		"               [--maxlen BYTES] [--blocksize BYTES] [--allow-unsupported]"
		" [-v]\n");
	exit(2);
}

static uint64_t num(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || end == s)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	cfg.argc = argc;
	cfg.argv = argv;
	bool seeded = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--file") && v)
			cfg.file = v, i++;
		else if (!strcmp(a, "--check") && v && cfg.n_check < 16)
			cfg.check[cfg.n_check++] = v, i++;
		else if (!strcmp(a, "--seed") && v)
			cfg.seed = num(v), seeded = true, i++;
		else if (!strcmp(a, "--ops") && v)
			cfg.ops = num(v), i++;
		else if (!strcmp(a, "--maxlen") && v)
			cfg.maxlen = num(v), i++;
		else if (!strcmp(a, "--blocksize") && v)
			cfg.blocksize = num(v), i++;
		else if (!strcmp(a, "--allow-unsupported"))
			cfg.allow_unsupported = true;
		else if (!strcmp(a, "-v"))
			cfg.verbose = true;
		else
			usage();
	}
	if (!cfg.file || cfg.maxlen < 4096 || cfg.maxlen > (1ull << 30) ||
	    cfg.blocksize < 512 || cfg.blocksize > cfg.maxlen)
		usage();
	if (!seeded) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		cfg.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	}
	rng = cfg.seed * 0x9E3779B97F4A7C15ULL + 1;
	pagesz = sysconf(_SC_PAGESIZE);
	model = calloc(1, cfg.maxlen);
	scratch = malloc(cfg.maxlen);
	if (!model || !scratch) {
		fprintf(stderr, "sfs_fsx: out of memory\n");
		return 1;
	}
	printf("sfs_fsx: seed %" PRIu64 ", %lu operations on %s (max length %" PRIu64
	       ", %d other mount(s))\n",
	       cfg.seed, cfg.ops, cfg.file, cfg.maxlen, cfg.n_check);
	fflush(stdout);
	fd = open(cfg.file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("open %s: %s", cfg.file, strerror(errno));
	for (opno = 1; opno <= cfg.ops; opno++)
		one_op();
	opno = cfg.ops;
	close_check_open();
	close(fd);
	printf("sfs_fsx: seed %" PRIu64 ": %lu operations matched the model; final size "
	       "%" PRIu64 ", %lu closes, %lu reads on other mounts\n  ",
	       cfg.seed, cfg.ops, msize, closes, checks);
	for (int i = 0; i < OP__COUNT; i++)
		printf("%s %lu%s", op_names[i], counts[i], i + 1 < OP__COUNT ? ", " : "\n");
	return 0;
}
