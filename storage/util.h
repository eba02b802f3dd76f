/*
 * util.h — helpers shared by the storage modules (internal to
 * sandfs_storage; not a public contract for other modules).
 *
 * Holds: CRC-32C, big-endian encoding, turning LevelDB error strings into
 * negative errno values, directory fsync / mkdir -p, and the one logging
 * macro storage uses.
 */
#ifndef SANDFS_STORAGE_UTIL_H
#define SANDFS_STORAGE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Logging for storage: one line on stderr, prefixed with the level. Storage
 * has no node/term context of its own; the messages name the path/index. */
#define STOR_LOG(level, ...)                                                   \
	do {                                                                   \
		(void)fprintf(stderr,                                          \
		              "sandfs storage " level ": " __VA_ARGS__);       \
		(void)fputc('\n', stderr);                                     \
	} while (0)
#define STOR_ERR(...)  STOR_LOG("error", __VA_ARGS__)
#define STOR_WARN(...) STOR_LOG("warning", __VA_ARGS__)

/* CRC-32C (Castagnoli) of len bytes, continuing from crc (start with 0). */
uint32_t stor_crc32c(uint32_t crc, const void *data, size_t len);

static inline void stor_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t stor_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void stor_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t stor_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Maps a LevelDB error string to a negative errno: "No space left" ->
 * -ENOSPC, "Corruption" -> -EUCLEAN, a held LOCK -> -EBUSY, a missing
 * directory/file -> -ENOENT, anything else -> -EIO. Does not free lerr. */
int stor_leveldb_errno(const char *lerr);

/* Logs "what (path): lerr" at error level, writes the same text into
 * err/errcap when err is not NULL, frees lerr (LevelDB allocated it) and
 * returns stor_leveldb_errno(lerr). */
int stor_leveldb_fail(char *lerr, const char *what, const char *path, char *err,
                      size_t errcap);

/* fsync() of a directory, so that a rename/create inside it is durable.
 * Returns 0 or -errno. */
int stor_fsync_dir(const char *path);

/* mkdir -p: creates missing parents with 0755 and the last component with
 * mode. An existing directory is fine. Returns 0 or -errno. */
int stor_mkdir_p(const char *path, unsigned mode);

/* snprintf into err/errcap when err is not NULL (and errcap > 0). */
void stor_seterr(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
