/*
 * blk_test.c — content-addressed block store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/blk.h"
#include "tests/unit/storage/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

struct fx {
	char *tmp;
	char *path;
	struct blk_store *bs;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->tmp = tu_mkdtemp();
	f->path = tu_join(f->tmp, "blocks");
	if (blk_open(f->path, 0, &f->bs, NULL, 0) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	blk_close(f->bs);
	free(f->path);
	tu_rmtree(f->tmp);
	free(f);
	return 0;
}

/* Path of the block file for hash. */
static char *block_file(struct fx *f, const uint8_t h[BLK_HASH_LEN])
{
	char hex[BLK_HEX_LEN + 1], rel[80];
	blk_hex(h, hex);
	snprintf(rel, sizeof rel, "%.2s/%s", hex, hex);
	return tu_join(f->path, rel);
}

/* Number of names starting with ".tmp-" in all fan-out dirs. */
static int count_tmp(const char *path)
{
	int n = 0;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *sub = tu_join(path, de->d_name);
		DIR *s = opendir(sub);
		struct dirent *se;
		while (s && (se = readdir(s)) != NULL)
			n += strncmp(se->d_name, ".tmp-", 5) == 0;
		if (s)
			closedir(s);
		free(sub);
	}
	if (d)
		closedir(d);
	return n;
}

static void sha256_and_hex_match_known_vectors(void **state)
{
	(void)state;
	uint8_t h[BLK_HASH_LEN], back[BLK_HASH_LEN];
	char hex[BLK_HEX_LEN + 1];
	blk_sha256("abc", 3, h);
	blk_hex(h, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a3961"
	                         "77a9cb410ff61f20015ad");
	blk_sha256("", 0, h);
	blk_hex(h, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649"
	                         "b934ca495991b7852b855");
	assert_int_equal(blk_from_hex(hex, back), 0);
	assert_memory_equal(back, h, BLK_HASH_LEN);
	hex[5] = 'X';
	assert_int_equal(blk_from_hex(hex, back), -EINVAL);
	assert_int_equal(blk_from_hex("abcd", back), -EINVAL);
}

static void put_get_has_size_delete_round_trip(void **state)
{
	struct fx *f = *state;
	uint8_t data[5000], h[BLK_HASH_LEN], want[BLK_HASH_LEN];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)(i * 7);
	assert_int_equal(blk_put(f->bs, data, sizeof data, h), 0);
	blk_sha256(data, sizeof data, want);
	assert_memory_equal(h, want, BLK_HASH_LEN);
	char *file = block_file(f, h);
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, sizeof data);
	assert_int_equal(blk_has(f->bs, h), 1);
	uint64_t size;
	assert_int_equal(blk_size(f->bs, h, &size), 0);
	assert_int_equal(size, sizeof data);
	uint8_t buf[8192];
	size_t len = 0;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_int_equal(len, sizeof data);
	assert_memory_equal(buf, data, len);
	/* too small a buffer: -ERANGE and the size needed */
	len = 0;
	assert_int_equal(blk_get(f->bs, h, buf, 100, &len), -ERANGE);
	assert_int_equal(len, sizeof data);
	/* storing again is fine */
	assert_int_equal(blk_put(f->bs, data, sizeof data, h), 0);
	assert_int_equal(blk_delete(f->bs, h), 0);
	assert_int_equal(blk_has(f->bs, h), 0);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), -ENOENT);
	assert_int_equal(blk_delete(f->bs, h), -ENOENT);
	assert_int_equal(blk_size(f->bs, h, &size), -ENOENT);
	/* the empty block */
	assert_int_equal(blk_put(f->bs, "", 0, h), 0);
	assert_int_equal(blk_get(f->bs, h, buf, 0, &len), 0);
	assert_int_equal(len, 0);
	free(file);
	assert_string_equal(blk_path(f->bs), f->path);
}

static void put_hashed_refuses_content_that_does_not_match(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	blk_sha256("right", 5, h);
	assert_int_equal(blk_put_hashed(f->bs, h, "wrong", 5), -EBADMSG);
	assert_int_equal(blk_has(f->bs, h), 0);
	uint8_t wrong[BLK_HASH_LEN];
	blk_sha256("wrong", 5, wrong);
	assert_int_equal(blk_has(f->bs, wrong), 0);
	assert_int_equal(blk_put_hashed(f->bs, h, "right", 5), 0);
	char buf[16];
	size_t len;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "right", 5);
}

static void corrupt_block_fails_verification_and_can_be_refetched(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	const char *content = "hello block store";
	assert_int_equal(blk_put(f->bs, content, strlen(content), h), 0);
	char *file = block_file(f, h);
	FILE *fp = fopen(file, "r+");
	assert_non_null(fp);
	fputc('J', fp); /* same size, other content */
	fclose(fp);
	char buf[64];
	size_t len;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), -EBADMSG);
	/* moved out of the way into quarantine */
	assert_int_equal(blk_has(f->bs, h), 0);
	char hex[BLK_HEX_LEN + 1], rel[90];
	blk_hex(h, hex);
	snprintf(rel, sizeof rel, "quarantine/%s", hex);
	char *q = tu_join(f->path, rel);
	struct stat st;
	assert_int_equal(stat(q, &st), 0);
	/* the refetched copy is stored and reads back verified */
	assert_int_equal(blk_put_hashed(f->bs, h, content, strlen(content)), 0);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_memory_equal(buf, content, len);
	/* a truncated file is caught too */
	assert_int_equal(truncate(file, 3), 0);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), -EBADMSG);
	free(q);
	free(file);
}

/* Reads from the store are checked against the stored CRC32C, not
 * SHA-256; the counters say which check ran. */
static void reads_check_the_stored_crc_not_sha256(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "crc me", 6, h), 0);
	char *file = block_file(f, h);
	uint8_t v[4];
	assert_int_equal(getxattr(file, "user.sandfs.crc32c", v, sizeof v), 4);
	char buf[16];
	size_t len;
	struct blk_counters c;
	for (int i = 0; i < 3; i++)
		assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	blk_counters(f->bs, &c);
	assert_int_equal(c.crc_checks, 3);
	assert_int_equal(c.sha_checks, 0);
	/* A damaged CRC is a damaged block: quarantined, refetchable. */
	v[0] ^= 1;
	assert_int_equal(setxattr(file, "user.sandfs.crc32c", v, 4, 0), 0);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), -EBADMSG);
	assert_int_equal(blk_has(f->bs, h), 0);
	blk_counters(f->bs, &c);
	assert_int_equal(c.crc_failures, 1);
	free(file);
}

/* A block stored before CRCs existed (no xattr) is read with SHA-256 once,
 * gets its CRC, and is CRC-checked from then on; a damaged one is caught
 * by SHA-256. */
static void blocks_without_a_crc_are_hashed_once_then_get_one(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "old block", 9, h), 0);
	char *file = block_file(f, h);
	assert_int_equal(removexattr(file, "user.sandfs.crc32c"), 0);
	char buf[16];
	size_t len;
	struct blk_counters c;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_memory_equal(buf, "old block", 9);
	blk_counters(f->bs, &c);
	assert_int_equal(c.sha_checks, 1);
	assert_int_equal(c.crc_added, 1);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	blk_counters(f->bs, &c);
	assert_int_equal(c.sha_checks, 1);
	assert_int_equal(c.crc_checks, 1);
	/* damaged and without a CRC: SHA-256 still catches it */
	assert_int_equal(removexattr(file, "user.sandfs.crc32c"), 0);
	FILE *fp = fopen(file, "r+");
	assert_non_null(fp);
	fputc('X', fp);
	fclose(fp);
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), -EBADMSG);
	blk_counters(f->bs, &c);
	assert_int_equal(c.sha_failures, 1);
	free(file);
}

/* The CRC covers the block's name: another block's file (content and CRC)
 * renamed over this one fails the check. */
static void a_block_file_swapped_for_another_fails(void **state)
{
	struct fx *f = *state;
	uint8_t a[BLK_HASH_LEN], b[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "block a", 7, a), 0);
	assert_int_equal(blk_put(f->bs, "block b", 7, b), 0);
	char *fa = block_file(f, a), *fb = block_file(f, b);
	assert_int_equal(rename(fb, fa), 0);
	char buf[16];
	size_t len;
	assert_int_equal(blk_get(f->bs, a, buf, sizeof buf, &len), -EBADMSG);
	free(fa);
	free(fb);
}

/* blk_check hashes: an edit that also rewrote a valid CRC passes a read
 * (the documented limit of the CRC) but not blk_check. */
static void check_hashes_and_catches_what_the_crc_cannot(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "genuine", 7, h), 0);
	assert_int_equal(blk_check(f->bs, h), 0);
	char *file = block_file(f, h);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fputs("forged!", fp);
	fclose(fp);
	/* CRC-32C(name, "forged!") as the store computes it */
	uint32_t crc = ~0u;
	const uint8_t *parts[2] = {h, (const uint8_t *)"forged!"};
	size_t lens[2] = {BLK_HASH_LEN, 7};
	for (int p = 0; p < 2; p++)
		for (size_t i = 0; i < lens[p]; i++) {
			crc ^= parts[p][i];
			for (int k = 0; k < 8; k++)
				crc = (crc >> 1) ^ (0x82F63B78u & -(crc & 1u));
		}
	crc = ~crc;
	uint8_t v[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16),
			(uint8_t)(crc >> 8), (uint8_t)crc};
	assert_int_equal(setxattr(file, "user.sandfs.crc32c", v, 4, 0), 0);
	char buf[16];
	size_t len;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_int_equal(blk_check(f->bs, h), -EBADMSG);
	assert_int_equal(blk_has(f->bs, h), 0);
	assert_int_equal(blk_check(f->bs, h), -ENOENT);
	free(file);
}

/* Large blocks read into a page-aligned buffer take the O_DIRECT path
 * (when the file system allows it): sizes that are not whole pages read
 * back exactly, and a damaged copy is still caught. */
static void aligned_large_reads_are_exact_and_verified(void **state)
{
	struct fx *f = *state;
	size_t sizes[] = {256u << 10, (200u << 10) + 123, 65536 + 1};
	size_t cap = 256u << 10;
	uint8_t *src = malloc(cap);
	uint8_t *buf = aligned_alloc(4096, cap);
	assert_non_null(src);
	assert_non_null(buf);
	for (size_t i = 0; i < cap; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		uint8_t h[BLK_HASH_LEN];
		src[0] = (uint8_t)k; /* a different block each time */
		assert_int_equal(blk_put(f->bs, src, sizes[k], h), 0);
		size_t len = 0;
		memset(buf, 0xee, cap);
		assert_int_equal(blk_get(f->bs, h, buf, cap, &len), 0);
		assert_int_equal(len, sizes[k]);
		assert_memory_equal(buf, src, sizes[k]);
		/* an unaligned buffer reads the same bytes (page cache path) */
		uint8_t *odd = malloc(cap + 1);
		assert_int_equal(blk_get(f->bs, h, odd + 1, cap, &len), 0);
		assert_memory_equal(odd + 1, src, sizes[k]);
		free(odd);
		if (k == 0) {
			char *file = block_file(f, h);
			FILE *fp = fopen(file, "r+");
			assert_non_null(fp);
			fseek(fp, 100000, SEEK_SET);
			fputc(src[100000] ^ 1, fp);
			fclose(fp);
			assert_int_equal(blk_get(f->bs, h, buf, cap, &len),
					 -EBADMSG);
			free(file);
		}
	}
	free(src);
	free(buf);
}

struct listed {
	uint8_t hashes[64][BLK_HASH_LEN];
	uint64_t sizes[64];
	int n;
	int stop_after;
};

static int list_cb(void *ctx, const uint8_t hash[BLK_HASH_LEN], uint64_t size)
{
	struct listed *l = ctx;
	assert_true(l->n < 64);
	memcpy(l->hashes[l->n], hash, BLK_HASH_LEN);
	l->sizes[l->n++] = size;
	return l->stop_after && l->n == l->stop_after ? 42 : 0;
}

static void list_reports_every_block_once_and_can_stop(void **state)
{
	struct fx *f = *state;
	uint64_t rng = tu_seed("blk_list");
	uint8_t hs[40][BLK_HASH_LEN];
	for (int i = 0; i < 40; i++) {
		uint8_t data[300];
		size_t len = 1 + tu_rand(&rng) % sizeof data;
		for (size_t j = 0; j < len; j++)
			data[j] = (uint8_t)tu_rand(&rng);
		assert_int_equal(blk_put(f->bs, data, len, hs[i]), 0);
	}
	/* junk that is not a block is ignored */
	char *junk = tu_join(f->path, "README");
	FILE *fp = fopen(junk, "w");
	fputs("x", fp);
	fclose(fp);
	struct listed l = {0};
	assert_int_equal(blk_list(f->bs, list_cb, &l), 0);
	assert_int_equal(l.n, 40);
	for (int i = 0; i < 40; i++) {
		int found = 0;
		for (int j = 0; j < l.n; j++)
			if (!memcmp(l.hashes[j], hs[i], BLK_HASH_LEN)) {
				found++;
				uint64_t size;
				assert_int_equal(blk_size(f->bs, hs[i], &size),
				                 0);
				assert_int_equal(l.sizes[j], size);
			}
		assert_int_equal(found, 1);
	}
	struct listed stop = {.stop_after = 3};
	assert_int_equal(blk_list(f->bs, list_cb, &stop), 42);
	assert_int_equal(stop.n, 3);
	free(junk);
}

static void stale_temp_files_are_removed_on_open(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "x", 1, h), 0);
	char hex[BLK_HEX_LEN + 1], rel[80];
	blk_hex(h, hex);
	snprintf(rel, sizeof rel, "%.2s/.tmp-abcdef", hex);
	char *tmpf = tu_join(f->path, rel);
	FILE *fp = fopen(tmpf, "w");
	fputs("half a bl", fp);
	fclose(fp);
	assert_int_equal(count_tmp(f->path), 1);
	blk_close(f->bs);
	assert_int_equal(blk_open(f->path, BLK_SYNC, &f->bs, NULL, 0), 0);
	assert_int_equal(count_tmp(f->path), 0);
	assert_int_equal(blk_has(f->bs, h), 1);
	/* synced puts work the same */
	assert_int_equal(blk_put(f->bs, "synced", 6, h), 0);
	char buf[8];
	size_t len;
	assert_int_equal(blk_get(f->bs, h, buf, sizeof buf, &len), 0);
	assert_int_equal(len, 6);
	free(tmpf);
}

/* A second handle opened with BLK_NO_CLEAN (fsck or scrub beside a
 * running node) leaves another writer's temp files alone. */
static void no_clean_open_leaves_temp_files(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	assert_int_equal(blk_put(f->bs, "x", 1, h), 0);
	char hex[BLK_HEX_LEN + 1], rel[80];
	blk_hex(h, hex);
	snprintf(rel, sizeof rel, "%.2s/.tmp-inflight", hex);
	char *tmpf = tu_join(f->path, rel);
	FILE *fp = fopen(tmpf, "w");
	fputs("being writ", fp);
	fclose(fp);
	struct blk_store *second;
	assert_int_equal(blk_open(f->path, BLK_NO_CLEAN, &second, NULL, 0), 0);
	assert_int_equal(count_tmp(f->path), 1);
	assert_int_equal(blk_check(second, h), 0);
	blk_close(second);
	free(tmpf);
}

/* blk_verify reports what blk_check would, without moving the file or
 * storing a CRC, and tells a damaged CRC from damaged content. */
static void verify_inspects_without_side_effects(void **state)
{
	struct fx *f = *state;
	uint8_t h[BLK_HASH_LEN];
	const char *what = NULL;
	assert_int_equal(blk_put(f->bs, "content", 7, h), 0);
	assert_int_equal(blk_verify(f->bs, h, &what), 0);
	char *file = block_file(f, h);
	/* a damaged CRC, content intact */
	uint8_t bad[4] = {1, 2, 3, 4};
	assert_int_equal(setxattr(file, "user.sandfs.crc32c", bad, 4, 0), 0);
	assert_int_equal(blk_verify(f->bs, h, &what), -EBADMSG);
	assert_string_equal(what, "crc32c");
	assert_int_equal(blk_has(f->bs, h), 1);
	/* damaged content (same size) */
	FILE *fp = fopen(file, "r+");
	assert_non_null(fp);
	fputs("CONTENT", fp);
	fclose(fp);
	assert_int_equal(blk_verify(f->bs, h, &what), -EBADMSG);
	assert_string_equal(what, "sha256");
	assert_int_equal(blk_has(f->bs, h), 1);
	/* no CRC at all: still hashed, none stored */
	assert_int_equal(removexattr(file, "user.sandfs.crc32c"), 0);
	assert_int_equal(blk_verify(f->bs, h, &what), -EBADMSG);
	assert_int_equal(getxattr(file, "user.sandfs.crc32c", bad, 4), -1);
	/* blk_check acts on the same finding: quarantined, gone */
	assert_int_equal(blk_check(f->bs, h), -EBADMSG);
	assert_int_equal(blk_has(f->bs, h), 0);
	assert_int_equal(blk_verify(f->bs, h, &what), -ENOENT);
	free(file);
}

struct racer {
	struct blk_store *bs;
	uint64_t rng;
	int failures;
};

/* Puts 32 fixed blocks in a random order, then reads each back. */
static void *race_puts(void *arg)
{
	struct racer *r = arg;
	uint8_t data[4096], h[BLK_HASH_LEN], buf[4096];
	for (int i = 0; i < 200; i++) {
		int which = (int)(tu_rand(&r->rng) % 32);
		memset(data, which, sizeof data);
		if (blk_put(r->bs, data, sizeof data, h) != 0)
			r->failures++;
		size_t len;
		if (blk_get(r->bs, h, buf, sizeof buf, &len) != 0 ||
		    len != sizeof data || buf[0] != which)
			r->failures++;
	}
	return NULL;
}

static void concurrent_puts_of_the_same_blocks_all_succeed(void **state)
{
	struct fx *f = *state;
	uint64_t seed = tu_seed("blk_race");
	struct racer r[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){.bs = f->bs, .rng = seed + (uint64_t)i};
		assert_int_equal(pthread_create(&t[i], NULL, race_puts, &r[i]),
		                 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(r[i].failures, 0);
	}
	assert_int_equal(count_tmp(f->path), 0);
}

static void stats_report_capacity_and_free_space(void **state)
{
	struct fx *f = *state;
	uint64_t total = 0, avail = 0;
	assert_int_equal(blk_stats(f->bs, &total, &avail), 0);
	assert_true(total > 0);
	assert_true(avail <= total);
}

static void open_on_unusable_path_fails_with_message(void **state)
{
	(void)state;
	struct blk_store *bs = (struct blk_store *)1;
	char err[512] = "";
	assert_true(blk_open("/proc/version/blocks", 0, &bs, err, sizeof err) <
	            0);
	assert_null(bs);
	assert_non_null(strstr(err, "/proc/version/blocks"));
}

/* Runs in a child with its own mount namespace and a 256 KiB tmpfs. Exit:
 * 0 pass, 77 cannot set up (skip), other: failure. */
static int enospc_child(const char *mnt)
{
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=256k") < 0)
		return 77;
	char *path = tu_join(mnt, "blocks");
	struct blk_store *bs;
	if (blk_open(path, BLK_SYNC, &bs, NULL, 0) < 0)
		return 10;
	blk_set_reserve(bs, 0); /* the file system's own ENOSPC */
	static uint8_t data[40000];
	uint8_t hs[64][BLK_HASH_LEN];
	int stored = 0, rc = 0;
	for (int i = 0; i < 64; i++) {
		memset(data, i + 1, sizeof data);
		rc = blk_put(bs, data, sizeof data, hs[stored]);
		if (rc < 0)
			break;
		stored++;
	}
	if (rc != -ENOSPC)
		return 11; /* the disk never filled, or another error */
	if (count_tmp(path) != 0)
		return 12; /* a partial temp file was left behind */
	uint8_t h[BLK_HASH_LEN];
	memset(data, 0, sizeof data);
	blk_sha256(data, sizeof data, h);
	if (blk_has(bs, h) != 0)
		return 13; /* the failed block must not exist */
	for (int i = 0; i < stored; i++) {
		size_t len;
		if (blk_get(bs, hs[i], data, sizeof data, &len) != 0 ||
		    len != sizeof data || data[0] != i + 1)
			return 14;
	}
	/* freeing space lets puts succeed again */
	if (blk_delete(bs, hs[0]) != 0 || blk_delete(bs, hs[1]) != 0)
		return 15;
	memset(data, 0xee, sizeof data);
	if (blk_put(bs, data, sizeof data, h) != 0)
		return 16;
	blk_close(bs);
	free(path);
	umount(mnt);
	return 0;
}

static void full_disk_returns_enospc_and_leaves_no_partial_file(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(enospc_child(tmp));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	int code = WEXITSTATUS(status);
	tu_rmtree(tmp);
	if (code == 77) {
		printf("skipped: cannot mount a tmpfs in a private mount "
		       "namespace (needs root)\n");
		skip();
	}
	assert_int_equal(code, 0);
}

/* Child for the reserve test: a 4 MiB tmpfs, 1 MiB reserve. */
static int reserve_child(const char *mnt)
{
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=4m") < 0)
		return 77;
	char *path = tu_join(mnt, "blocks");
	struct blk_store *bs;
	if (blk_open(path, 0, &bs, NULL, 0) < 0)
		return 10;
	if (blk_reserve(bs) != BLK_RESERVE_MIN) /* 10% of 4 MiB is less */
		return 11;
	blk_set_reserve(bs, 1u << 20);
	static uint8_t data[100000];
	uint8_t hs[64][BLK_HASH_LEN];
	int stored = 0, rc = 0;
	for (int i = 0; i < 64; i++) {
		memset(data, i + 1, sizeof data);
		rc = blk_put(bs, data, sizeof data, hs[stored]);
		if (rc < 0)
			break;
		stored++;
	}
	if (rc != -ENOSPC || stored < 20)
		return 12; /* stopped at the reserve, not before */
	uint64_t total, avail;
	if (blk_stats(bs, &total, &avail) != 0 || avail >= sizeof data)
		return 13; /* the reserve is not reported as free */
	/* the reserve is really there for others (the LevelDBs) */
	char *other = tu_join(mnt, "leveldb-log");
	FILE *f = fopen(other, "wb");
	static uint8_t half[512 << 10];
	if (!f || fwrite(half, 1, sizeof half, f) != sizeof half || fclose(f) != 0)
		return 14;
	unlink(other);
	/* deleting blocks makes room again */
	if (blk_delete(bs, hs[0]) != 0 || blk_delete(bs, hs[1]) != 0)
		return 15;
	memset(data, 0xee, sizeof data);
	uint8_t h[BLK_HASH_LEN];
	if (blk_put(bs, data, sizeof data, h) != 0)
		return 16;
	blk_close(bs);
	free(path);
	free(other);
	umount(mnt);
	return 0;
}

static void put_stops_at_the_reserve_and_resumes_after_deletes(void **state)
{
	(void)state;
	char *tmp = tu_mkdtemp();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(reserve_child(tmp));
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	int code = WEXITSTATUS(status);
	tu_rmtree(tmp);
	if (code == 77) {
		printf("skipped: cannot mount a tmpfs in a private mount "
		       "namespace (needs root)\n");
		skip();
	}
	assert_int_equal(code, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sha256_and_hex_match_known_vectors),
	    T(put_get_has_size_delete_round_trip),
	    T(put_hashed_refuses_content_that_does_not_match),
	    T(corrupt_block_fails_verification_and_can_be_refetched),
	    T(aligned_large_reads_are_exact_and_verified),
	    T(reads_check_the_stored_crc_not_sha256),
	    T(blocks_without_a_crc_are_hashed_once_then_get_one),
	    T(a_block_file_swapped_for_another_fails),
	    T(check_hashes_and_catches_what_the_crc_cannot),
	    T(list_reports_every_block_once_and_can_stop),
	    T(stale_temp_files_are_removed_on_open),
	    T(no_clean_open_leaves_temp_files),
	    T(verify_inspects_without_side_effects),
	    T(concurrent_puts_of_the_same_blocks_all_succeed),
	    T(stats_report_capacity_and_free_space),
	    cmocka_unit_test(open_on_unusable_path_fails_with_message),
	    cmocka_unit_test(
	        full_disk_returns_enospc_and_leaves_no_partial_file),
	    cmocka_unit_test(
	        put_stops_at_the_reserve_and_resumes_after_deletes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
