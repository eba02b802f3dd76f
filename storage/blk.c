/*
 * blk.c — content-addressed block store on plain files (see blk.h).
 */
#include "storage/blk.h"

#include "storage/slowdisk.h"
#include "storage/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#define TMP_PREFIX ".tmp-"
#define QUARANTINE "quarantine"
#define CRC_XATTR "user.sandfs.crc32c"

struct blk_store {
	char *dir;
	int dirfd;
	unsigned flags;
	/* Bytes of the file system kept free for the LevelDBs beside the
	 * store (blk_set_reserve); atomic so it may change while in use. */
	atomic_uint_fast64_t reserve;
	/* Set once the file system refused a user xattr: no CRCs are stored
	 * and every read is checked with SHA-256. */
	atomic_bool no_xattr;
	/* Verification counters (blk_counters); relaxed atomics. */
	atomic_uint_fast64_t crc_checks, sha_checks, crc_failures,
	    sha_failures, crc_added;
};

/* "HH/<64 hex>" relative to the store; fan-out dir "HH" in fan. */
struct blk_name {
	char fan[3];
	char rel[3 + BLK_HEX_LEN + 1];
	char hex[BLK_HEX_LEN + 1];
};

static void make_name(const uint8_t hash[BLK_HASH_LEN], struct blk_name *n)
{
	blk_hex(hash, n->hex);
	memcpy(n->fan, n->hex, 2);
	n->fan[2] = '\0';
	(void)snprintf(n->rel, sizeof n->rel, "%s/%s", n->fan, n->hex);
}

void blk_sha256(const void *data, size_t len, uint8_t out[BLK_HASH_LEN])
{
	unsigned olen = 0;
	/* EVP_Digest only fails on allocation failure inside OpenSSL; the
	 * zeroed hash then simply matches no block. */
	if (!EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL))
		memset(out, 0, BLK_HASH_LEN);
}

/* The CRC stored with a block: CRC-32C over its name and then its content,
 * so a block file swapped for another block's file (content and CRC) fails
 * too. */
static uint32_t block_crc(const uint8_t hash[BLK_HASH_LEN], const void *data,
			  size_t len)
{
	return stor_crc32c(stor_crc32c(0, hash, BLK_HASH_LEN), data, len);
}

/* True for the errors of a file system without user xattrs. */
static bool xattr_unsupported(int err)
{
	return err == ENOTSUP || err == EOPNOTSUPP;
}

/* Stores the block's CRC on fd: 0, or -errno (-ENOSPC...). A file system
 * without user xattrs is remembered and is not an error. */
static int store_crc(struct blk_store *bs, int fd,
		     const uint8_t hash[BLK_HASH_LEN], const void *data,
		     size_t len)
{
	if (atomic_load_explicit(&bs->no_xattr, memory_order_relaxed))
		return 0;
	uint8_t v[4];
	stor_put_be32(v, block_crc(hash, data, len));
	if (fsetxattr(fd, CRC_XATTR, v, sizeof v, 0) == 0)
		return 0;
	if (xattr_unsupported(errno)) {
		if (!atomic_exchange(&bs->no_xattr, true))
			STOR_WARN("block store %s: the file system keeps no "
				  "user xattrs; local reads are checked with "
				  "SHA-256 instead of a stored CRC32C",
				  bs->dir);
		return 0;
	}
	return -errno;
}

void blk_hex(const uint8_t hash[BLK_HASH_LEN], char out[BLK_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < BLK_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[BLK_HEX_LEN] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int blk_from_hex(const char *hex, uint8_t hash[BLK_HASH_LEN])
{
	for (size_t i = 0; i < BLK_HASH_LEN; i++) {
		int hi = hexval(hex[2 * i]);
		int lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[BLK_HEX_LEN] == '\0' ? 0 : -EINVAL;
}

const char *blk_path(const struct blk_store *bs)
{
	return bs->dir;
}

/* Removes temp files a crash left in fan-out directory fan. */
static void clean_fan(struct blk_store *bs, const char *fan)
{
	int fd = openat(bs->dirfd, fan, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

static bool is_fan_name(const char *s)
{
	return hexval(s[0]) >= 0 && hexval(s[1]) >= 0 && s[2] == '\0' &&
	       !(s[0] >= 'A' && s[0] <= 'F') && !(s[1] >= 'A' && s[1] <= 'F');
}

/* See blk.h. */
int blk_open(const char *dir, unsigned flags, struct blk_store **out, char *err,
             size_t errcap)
{
	*out = NULL;
	int rc = stor_mkdir_p(dir, 0700);
	if (rc < 0) {
		stor_seterr(err, errcap, "cannot create block store %s: %s",
		            dir, strerror(-rc));
		return rc;
	}
	struct blk_store *bs = calloc(1, sizeof *bs);
	if (!bs || !(bs->dir = strdup(dir))) {
		free(bs);
		return -ENOMEM;
	}
	bs->flags = flags;
	bs->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bs->dirfd < 0) {
		rc = -errno;
		stor_seterr(err, errcap, "cannot open block store %s: %s", dir,
		            strerror(-rc));
		free(bs->dir);
		free(bs);
		return rc;
	}
	struct statvfs sv;
	uint64_t total = fstatvfs(bs->dirfd, &sv) == 0
	                     ? (uint64_t)sv.f_blocks * sv.f_frsize
	                     : 0;
	uint64_t r = total / 10;
	if (r < BLK_RESERVE_MIN)
		r = BLK_RESERVE_MIN;
	if (r > BLK_RESERVE_MAX)
		r = BLK_RESERVE_MAX;
	atomic_init(&bs->reserve, r);
	DIR *d = (flags & BLK_NO_CLEAN) ? NULL : opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL)
			if (is_fan_name(de->d_name))
				clean_fan(bs, de->d_name);
		closedir(d);
	}
	*out = bs;
	return 0;
}

void blk_close(struct blk_store *bs)
{
	if (!bs)
		return;
	close(bs->dirfd);
	free(bs->dir);
	free(bs);
}

/* Writes all of buf to fd; 0 or -errno. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Stores data under an already verified hash, atomically. */
static int put_verified(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
                        const void *data, size_t len)
{
	struct blk_name n;
	make_name(hash, &n);
	struct stat st;
	if (fstatat(bs->dirfd, n.rel, &st, 0) == 0 &&
	    (uint64_t)st.st_size == len)
		return 0; /* already stored (content checked on every read) */
	/* Blocks fill the disk, the LevelDBs beside them must not run out:
	 * a new block may not eat into the reserve. */
	uint64_t reserve = atomic_load_explicit(&bs->reserve, memory_order_relaxed);
	struct statvfs sv;
	if (reserve && fstatvfs(bs->dirfd, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < reserve + len)
		return -ENOSPC;
	bool new_fan = false;
	if (mkdirat(bs->dirfd, n.fan, 0700) == 0)
		new_fan = true;
	else if (errno != EEXIST)
		return -errno;

	size_t plen =
	    strlen(bs->dir) + 1 + sizeof n.rel + sizeof TMP_PREFIX + 8;
	char *tmp = malloc(plen);
	if (!tmp)
		return -ENOMEM;
	(void)snprintf(tmp, plen, "%s/%s/" TMP_PREFIX "XXXXXX", bs->dir, n.fan);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		free(tmp);
		return rc;
	}
	int rc = write_all(fd, data, len);
	if (rc == 0)
		rc = store_crc(bs, fd, hash, data, len);
	if (rc == 0 && (bs->flags & BLK_SYNC))
		stor_sync_delay(); /* test hook: a slow disk */
	if (rc == 0 && (bs->flags & BLK_SYNC) && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(AT_FDCWD, tmp, bs->dirfd, n.rel) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		free(tmp);
		if (rc != -ENOSPC)
			STOR_ERR("block store %s: cannot store block %s: %s",
			         bs->dir, n.hex, strerror(-rc));
		return rc;
	}
	free(tmp);
	if (bs->flags & BLK_SYNC) {
		int fan_fd = openat(bs->dirfd, n.fan,
		                    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fan_fd < 0)
			return -errno;
		rc = fsync(fan_fd) < 0 ? -errno : 0;
		close(fan_fd);
		if (rc == 0 && new_fan && fsync(bs->dirfd) < 0)
			rc = -errno;
	}
	return rc;
}

/* See blk.h. */
int blk_put(struct blk_store *bs, const void *data, size_t len,
            uint8_t hash_out[BLK_HASH_LEN])
{
	blk_sha256(data, len, hash_out);
	return put_verified(bs, hash_out, data, len);
}

/* See blk.h. */
int blk_put_hashed(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
                   const void *data, size_t len)
{
	uint8_t h[BLK_HASH_LEN];
	blk_sha256(data, len, h);
	if (memcmp(h, hash, BLK_HASH_LEN) != 0) {
		char want[BLK_HEX_LEN + 1], got[BLK_HEX_LEN + 1];
		blk_hex(hash, want);
		blk_hex(h, got);
		STOR_WARN(
		    "block store %s: refusing block %s: content hashes to "
		    "%s",
		    bs->dir, want, got);
		return -EBADMSG;
	}
	return put_verified(bs, hash, data, len);
}

/* Moves a block that failed verification out of the way. */
static void quarantine(struct blk_store *bs, const struct blk_name *n)
{
	char dst[sizeof QUARANTINE + 1 + BLK_HEX_LEN + 1];
	(void)snprintf(dst, sizeof dst, QUARANTINE "/%s", n->hex);
	if (mkdirat(bs->dirfd, QUARANTINE, 0700) < 0 && errno != EEXIST) {
		unlinkat(bs->dirfd, n->rel, 0);
		return;
	}
	if (renameat(bs->dirfd, n->rel, bs->dirfd, dst) < 0)
		unlinkat(bs->dirfd, n->rel, 0);
}

/* How get_block() checks what it read. */
enum check_mode {
	CHECK_READ,   /* the CRC (SHA-256 without one); act on a failure */
	CHECK_FULL,   /* CRC and SHA-256; act on a failure */
	CHECK_INSPECT /* CRC and SHA-256; no side effect (blk_verify) */
};

/* Checks buf[0..len), read from fd, against the block's name: against
 * the CRC stored with it, or (full, or no CRC stored) against its SHA-256.
 * A block stored before CRCs existed gets its CRC once it passed SHA-256.
 * A failure is logged and the file quarantined: -EBADMSG. CHECK_INSPECT
 * does neither (and stores no CRC); *what_out names the failed check. */
static int verify(struct blk_store *bs, int fd, const struct blk_name *n,
		  const uint8_t hash[BLK_HASH_LEN], const void *buf, size_t len,
		  enum check_mode mode, const char **what_out)
{
	bool full = mode != CHECK_READ;
	uint8_t v[4];
	ssize_t vl = fgetxattr(fd, CRC_XATTR, v, sizeof v);
	int xerr = vl < 0 ? errno : 0;
	bool has_crc = vl == (ssize_t)sizeof v;
	const char *what = NULL;
	bool crc_bad = false;
	if (has_crc) {
		atomic_fetch_add_explicit(&bs->crc_checks, 1,
					  memory_order_relaxed);
		if (block_crc(hash, buf, len) != stor_get_be32(v)) {
			atomic_fetch_add_explicit(&bs->crc_failures, 1,
						  memory_order_relaxed);
			what = "its stored CRC32C";
			crc_bad = true;
		}
	}
	/* Inspecting, a CRC mismatch is also hashed: it tells a damaged
	 * content from a damaged CRC. */
	if ((!what || mode == CHECK_INSPECT) && (full || !has_crc)) {
		atomic_fetch_add_explicit(&bs->sha_checks, 1,
					  memory_order_relaxed);
		uint8_t h[BLK_HASH_LEN];
		blk_sha256(buf, len, h);
		if (memcmp(h, hash, BLK_HASH_LEN) != 0) {
			atomic_fetch_add_explicit(&bs->sha_failures, 1,
						  memory_order_relaxed);
			what = "its hash";
			crc_bad = false;
		}
	}
	if (what && mode == CHECK_INSPECT) {
		if (what_out)
			*what_out = crc_bad ? "crc32c" : "sha256";
		return -EBADMSG;
	}
	if (mode == CHECK_INSPECT)
		return 0;
	if (what) {
		STOR_ERR("block store %s: block %s is corrupt (%zu bytes do "
			 "not match %s); moved to %s/, refetch it",
			 bs->dir, n->hex, len, what, QUARANTINE);
		quarantine(bs, n);
		return -EBADMSG;
	}
	/* No CRC yet (a block from before CRCs, or one whose xattr was
	 * lost): it just passed SHA-256, so store one now. */
	if (!has_crc && (xerr == ENODATA || vl >= 0) &&
	    store_crc(bs, fd, hash, buf, len) == 0 &&
	    !atomic_load_explicit(&bs->no_xattr, memory_order_relaxed))
		atomic_fetch_add_explicit(&bs->crc_added, 1,
					  memory_order_relaxed);
	return 0;
}

#define BLK_DIRECT_ALIGN 4096u
#define BLK_DIRECT_MIN (64u << 10)

/* Reads the block into buf[0..cap) and verifies it (full: SHA-256 as well
 * as the CRC); blk_get() and blk_check(). */
static int get_block(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
		     void *buf, size_t cap, size_t *len, enum check_mode mode,
		     const char **what)
{
	struct blk_name n;
	make_name(hash, &n);
	int fd = openat(bs->dirfd, n.rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	*len = (size_t)st.st_size;
	if ((uint64_t)st.st_size > cap) {
		rc = -ERANGE;
		goto out;
	}
	/* Large reads into a page-aligned buffer with room for whole pages
	 * bypass the page cache (O_DIRECT): one copy less, and the caller
	 * keeps its own cache of verified blocks. Anything else, or a file
	 * system that refuses O_DIRECT, reads through the page cache. */
	size_t want = (size_t)st.st_size;
	size_t pages = (want + BLK_DIRECT_ALIGN - 1) & ~(size_t)(BLK_DIRECT_ALIGN - 1);
	bool direct = want >= BLK_DIRECT_MIN &&
		      ((uintptr_t)buf & (BLK_DIRECT_ALIGN - 1)) == 0 &&
		      pages <= cap &&
		      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT) == 0;
	size_t got = 0;
	while (got < want) {
		ssize_t r = read(fd, (uint8_t *)buf + got,
				 direct ? pages - got : want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && direct && errno == EINVAL) {
			direct = false;
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
			continue;
		}
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got > want)
		got = want; /* the file grew meanwhile: only what fstat saw */
	*len = got;
	rc = verify(bs, fd, &n, hash, buf, got, mode, what);
out:
	close(fd);
	return rc;
}

/* See blk.h. */
int blk_get(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN], void *buf,
            size_t cap, size_t *len)
{
	return get_block(bs, hash, buf, cap, len, CHECK_READ, NULL);
}

/* blk_check() and blk_verify(): read the whole block and check it. */
static int check_block(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
		       enum check_mode mode, const char **what)
{
	uint64_t size;
	int rc = blk_size(bs, hash, &size);
	if (rc < 0)
		return rc;
	size_t cap = size ? (size_t)size : 1;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	size_t len;
	rc = get_block(bs, hash, buf, cap, &len, mode, what);
	free(buf);
	return rc;
}

/* See blk.h. */
int blk_check(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN])
{
	return check_block(bs, hash, CHECK_FULL, NULL);
}

/* See blk.h. */
int blk_verify(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
	       const char **what)
{
	return check_block(bs, hash, CHECK_INSPECT, what);
}

/* See blk.h. */
void blk_counters(struct blk_store *bs, struct blk_counters *out)
{
	out->crc_checks = atomic_load_explicit(&bs->crc_checks,
					       memory_order_relaxed);
	out->sha_checks = atomic_load_explicit(&bs->sha_checks,
					       memory_order_relaxed);
	out->crc_failures = atomic_load_explicit(&bs->crc_failures,
						 memory_order_relaxed);
	out->sha_failures = atomic_load_explicit(&bs->sha_failures,
						 memory_order_relaxed);
	out->crc_added = atomic_load_explicit(&bs->crc_added,
					      memory_order_relaxed);
}

/* See blk.h. */
int blk_size(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
             uint64_t *size)
{
	struct blk_name n;
	make_name(hash, &n);
	struct stat st;
	if (fstatat(bs->dirfd, n.rel, &st, 0) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* See blk.h. */
int blk_has(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN])
{
	uint64_t size;
	int rc = blk_size(bs, hash, &size);
	return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

/* See blk.h. */
int blk_delete(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN])
{
	struct blk_name n;
	make_name(hash, &n);
	if (unlinkat(bs->dirfd, n.rel, 0) < 0)
		return -errno;
	return 0;
}

/* Walks one fan-out directory for blk_list(). */
static int list_fan(struct blk_store *bs, const char *fan, blk_list_fn cb,
                    void *ctx)
{
	int fd = openat(bs->dirfd, fan, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		uint8_t h[BLK_HASH_LEN];
		if (strlen(de->d_name) != BLK_HEX_LEN ||
		    strncmp(de->d_name, fan, 2) != 0 ||
		    blk_from_hex(de->d_name, h) < 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
		    !S_ISREG(st.st_mode))
			continue; /* deleted meanwhile, or not ours */
		rc = cb(ctx, h, (uint64_t)st.st_size);
	}
	closedir(d);
	return rc;
}

/* See blk.h. */
int blk_list(struct blk_store *bs, blk_list_fn cb, void *ctx)
{
	DIR *d = opendir(bs->dir);
	if (!d)
		return -errno;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL)
		if (is_fan_name(de->d_name))
			rc = list_fan(bs, de->d_name, cb, ctx);
	closedir(d);
	return rc;
}

/* See blk.h. */
int blk_stats(struct blk_store *bs, uint64_t *bytes_total, uint64_t *bytes_free)
{
	struct statvfs sv;
	if (fstatvfs(bs->dirfd, &sv) < 0)
		return -errno;
	uint64_t reserve = atomic_load_explicit(&bs->reserve, memory_order_relaxed);
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	*bytes_total = (uint64_t)sv.f_blocks * sv.f_frsize;
	*bytes_free = avail > reserve ? avail - reserve : 0;
	return 0;
}

/* See blk.h. */
void blk_set_reserve(struct blk_store *bs, uint64_t bytes)
{
	atomic_store(&bs->reserve, bytes);
}

/* See blk.h. */
uint64_t blk_reserve(struct blk_store *bs)
{
	return atomic_load(&bs->reserve);
}
