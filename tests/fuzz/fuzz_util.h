/*
 * fuzz_util.h — what the fuzz targets share: a bounds-checked reader over
 * the input (every read past the end yields zeros and sets `end`), a
 * scratch directory for the targets that need a LevelDB (created once per
 * process, under /dev/shm when it exists, removed at exit) and an exact-size
 * copy of the input so AddressSanitizer catches any read past it.
 */
#ifndef SANDFS_FUZZ_UTIL_H
#define SANDFS_FUZZ_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	const uint8_t *p;
	size_t n;
	bool end;
};

static inline uint8_t fz_u8(struct fz *z)
{
	if (!z->n) {
		z->end = true;
		return 0;
	}
	z->n--;
	return *z->p++;
}

static inline uint16_t fz_u16(struct fz *z)
{
	uint16_t hi = fz_u8(z);
	return (uint16_t)(hi << 8 | fz_u8(z));
}

static inline uint32_t fz_u32(struct fz *z)
{
	uint32_t hi = fz_u16(z);
	return hi << 16 | fz_u16(z);
}

static inline uint64_t fz_u64(struct fz *z)
{
	uint64_t hi = fz_u32(z);
	return hi << 32 | fz_u32(z);
}

/* The next min(n, left) bytes; *got says how many. */
static inline const uint8_t *fz_bytes(struct fz *z, size_t n, size_t *got)
{
	if (n > z->n) {
		n = z->n;
		z->end = true;
	}
	const uint8_t *p = z->p;
	z->p += n;
	z->n -= n;
	*got = n;
	return p;
}

/* A malloc()ed exact-size copy of data (caller frees); aborts on ENOMEM. */
static inline uint8_t *fz_copy(const uint8_t *data, size_t size)
{
	uint8_t *b = calloc(1, size ? size : 1);
	if (!b)
		abort();
	if (size)
		memcpy(b, data, size);
	return b;
}

static char fz_dir_path[64];

static int fz_rm_one(const char *p, const struct stat *sb, int flag,
		     struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

/* Remove a tree below the scratch directory. */
static inline void fz_rm_tree(const char *path)
{
	nftw(path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void fz_dir_cleanup(void)
{
	if (fz_dir_path[0])
		fz_rm_tree(fz_dir_path);
}

/* The process's scratch directory (created on first use). */
static inline const char *fz_dir(void)
{
	if (!fz_dir_path[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fz_dir_path, sizeof fz_dir_path, "%s/sfs-fuzz-XXXXXX", base);
		if (!mkdtemp(fz_dir_path)) {
			perror("mkdtemp");
			abort();
		}
		atexit(fz_dir_cleanup);
	}
	return fz_dir_path;
}

/* A fresh, empty path NAME inside the scratch directory, in out. */
static inline void fz_fresh(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", fz_dir(), name);
	fz_rm_tree(out);
}

#endif
