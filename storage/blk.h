/*
 * blk.h — the content-addressed block store (DIR/blocks).
 *
 * A block is named by the SHA-256 of its content and stored as one file
 * blocks/HH/HHHH...(64 hex digits), HH being the first byte of the hash.
 * Writes are atomic: a temp file in the same fan-out directory, optionally
 * fsync'ed, then renamed into place (and the directory fsync'ed). A crash
 * never leaves a block file with partial content; stale temp files are
 * removed by blk_open().
 *
 * Verification. A block's SHA-256 is checked when it enters the store
 * from elsewhere (blk_put_hashed: a peer's copy) and by blk_check() (fsck,
 * scrub). blk_put() computes the name itself. With every block the store
 * keeps a CRC-32C of (name, content) in the user xattr
 * "user.sandfs.crc32c", written before the file is renamed into place;
 * blk_get() checks a read from disk against that CRC (hardware CRC32C,
 * a few percent of SHA-256's cost). That catches what the disk and file
 * system do to a block: bit rot, torn or truncated files, a block file
 * swapped for another block's. It does not catch a deliberate edit that
 * also rewrites the CRC: blk_check() does. A block without a CRC (stored
 * before this scheme, or on a file system without user xattrs) is checked
 * with SHA-256 on read, and gets its CRC once it passed. A block that
 * fails any check is moved to blocks/quarantine/ so that a fresh copy
 * (refetched by the caller) can be stored.
 *
 * Threads: every function may be called from several threads at once on
 * one struct blk_store (no shared mutable state beyond the file system).
 *
 * Errors: 0 or a negative errno; -ENOSPC for a full disk or one whose free
 * space is down to the reserve (blk_set_reserve; no partial file is left),
 * -EBADMSG for content that does not match its hash.
 */
#ifndef SANDFS_STORAGE_BLK_H
#define SANDFS_STORAGE_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLK_HASH_LEN 32
#define BLK_HEX_LEN  64 /* without the NUL */

/* blk_open() flags */
#define BLK_SYNC                                                               \
	0x1u /* fsync every block and its directory before put returns */
#define BLK_NO_CLEAN                                                           \
	0x2u /* leave temp files alone: a second handle on a store that a    \
		running process writes (fsck, scrub beside the data path) */

struct blk_store;

/* Opens (creating if missing, mode 0700) the store in directory dir and
 * removes temp files a crash left behind (unless BLK_NO_CLEAN). *out is owned by the caller:
 * blk_close(). A reason goes into err/errcap (may be NULL) on error. */
int blk_open(const char *dir, unsigned flags, struct blk_store **out, char *err,
             size_t errcap);

/* Frees bs (NULL is fine). */
void blk_close(struct blk_store *bs);

/* Stores data[0..len) (borrowed), writing its SHA-256 into hash_out.
 * Storing a block that is already present is a cheap no-op. */
int blk_put(struct blk_store *bs, const void *data, size_t len,
            uint8_t hash_out[BLK_HASH_LEN]);

/* Stores data[0..len) under hash after checking that hash is its SHA-256:
 * -EBADMSG (nothing stored) when it is not. For blocks received from a
 * peer. */
int blk_put_hashed(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
                   const void *data, size_t len);

/* Reads the block into buf[0..cap) and verifies it (its CRC, or SHA-256
 * when it has none); *len gets its size.
 *   -ENOENT   not stored
 *   -ERANGE   cap too small (*len is set to the size needed)
 *   -EBADMSG  content does not match: logged, the file moved to
 *             quarantine; the caller refetches it from a peer. */
int blk_get(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN], void *buf,
            size_t cap, size_t *len);

/* Reads the block and checks it against its SHA-256 and its CRC (fsck,
 * scrub): 0, -ENOENT, or -EBADMSG (logged and quarantined, as blk_get). */
int blk_check(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN]);

/* The same check without side effects (a read-only fsck): 0, -ENOENT,
 * or -EBADMSG with *what naming what failed: "sha256" (the content does
 * not match its name) or "crc32c" (the content does, its stored CRC does
 * not); what may be NULL. The file is neither moved nor given a CRC,
 * nothing is logged; the counters count it. */
int blk_verify(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
               const char **what);

/* What the store verified since blk_open(). */
struct blk_counters {
	uint64_t crc_checks;   /* reads checked against a stored CRC */
	uint64_t sha_checks;   /* reads or checks hashed with SHA-256 */
	uint64_t crc_failures; /* CRC mismatches */
	uint64_t sha_failures; /* SHA-256 mismatches */
	uint64_t crc_added;    /* CRCs stored on read for blocks without one */
};
void blk_counters(struct blk_store *bs, struct blk_counters *out);

/* Size of a stored block, without reading it: 0 or -ENOENT. */
int blk_size(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
             uint64_t *size);

/* 1 when the block is stored, 0 when not, negative errno on error. Does not
 * verify the content. */
int blk_has(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN]);

/* Removes the block: 0, or -ENOENT when it was not stored. */
int blk_delete(struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN]);

/* Calls cb for every stored block, in no particular order (for garbage
 * collection). The hash is borrowed for the call; size is the file size.
 * A nonzero return from cb stops the walk and is returned. Blocks added or
 * removed during the walk may or may not be seen. */
typedef int (*blk_list_fn)(void *ctx, const uint8_t hash[BLK_HASH_LEN],
                           uint64_t size);
int blk_list(struct blk_store *bs, blk_list_fn cb, void *ctx);

/* Capacity and free space (for unprivileged users, less the reserve
 * below) of the file system holding the store, in bytes (statvfs). */
int blk_stats(struct blk_store *bs, uint64_t *bytes_total,
              uint64_t *bytes_free);

/* Free-space reserve. A put of a new block fails with -ENOSPC (nothing
 * written) when it would leave less than the reserve free on the file
 * system, so that when blocks fill the disk the Raft log and the inode
 * table, which share it, can still take metadata changes and deletions
 * (which free blocks again). blk_open() sets 10% of the file system's
 * size, at least BLK_RESERVE_MIN and at most BLK_RESERVE_MAX; 0 turns it
 * off. */
#define BLK_RESERVE_MIN (8ull << 20)
#define BLK_RESERVE_MAX (1ull << 30)
void blk_set_reserve(struct blk_store *bs, uint64_t bytes);
uint64_t blk_reserve(struct blk_store *bs);

/* SHA-256 of data[0..len) into out. */
void blk_sha256(const void *data, size_t len, uint8_t out[BLK_HASH_LEN]);

/* Lower-case hex of hash into out (64 digits + NUL). */
void blk_hex(const uint8_t hash[BLK_HASH_LEN], char out[BLK_HEX_LEN + 1]);

/* Parses 64 hex digits (either case) into hash: 0 or -EINVAL. */
int blk_from_hex(const char *hex, uint8_t hash[BLK_HASH_LEN]);

/* The store's directory (borrowed from bs). */
const char *blk_path(const struct blk_store *bs);

#endif
