/*
 * testutil.h — helpers for the storage unit tests: temporary directories
 * (removed recursively afterwards) and a seeded PRNG.
 */
#ifndef SANDFS_TEST_STORAGE_UTIL_H
#define SANDFS_TEST_STORAGE_UTIL_H

#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Creates a fresh directory under $TMPDIR (or /tmp); returns a malloc'ed
 * path, freed by tu_rmtree(). */
static inline char *tu_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char buf[4096];
	snprintf(buf, sizeof buf, "%s/sandfs-storage-XXXXXX",
	         base && *base ? base : "/tmp");
	char *p = mkdtemp(buf);
	return p ? strdup(p) : NULL;
}

static inline int tu_rm_cb(const char *path, const struct stat *sb, int flag,
                           struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* rm -rf path, then free(path). */
static inline void tu_rmtree(char *path)
{
	if (!path)
		return;
	nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(path);
}

/* malloc'ed "a/b". */
static inline char *tu_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *s = malloc(n);
	snprintf(s, n, "%s/%s", a, b);
	return s;
}

/* The seed from SEED= or from the clock; printed so a failure replays. */
static inline uint64_t tu_seed(const char *test)
{
	const char *s = getenv("SEED");
	uint64_t seed = s && *s
	                    ? strtoull(s, NULL, 0)
	                    : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	printf("%s: SEED=%" PRIu64 "\n", test, seed);
	fflush(stdout);
	return seed;
}

/* splitmix64 */
static inline uint64_t tu_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline double tu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
