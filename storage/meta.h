/*
 * meta.h — the metadata store: a thin wrapper over one LevelDB (DIR/meta)
 * that the filesystem state machine keeps its tables in.
 *
 * Storage gives no meaning to keys or values: they are byte strings,
 * ordered bytewise. Writes go through a batch (struct meta_batch) that is
 * committed atomically, so one Raft entry = one batch = all or nothing.
 *
 * Errors: functions return 0 or a negative errno. A LevelDB failure becomes
 * -EIO (-ENOSPC for a full disk, -EUCLEAN for detected corruption) and its
 * text is logged.
 *
 * Threads: LevelDB is thread-safe, and so are meta_get(), meta_commit(),
 * iterators and meta_dump() on one struct meta from several threads. A
 * meta_batch or meta_iter is used by one thread at a time. meta_restore()
 * must not run concurrently with anything else on the same store.
 *
 * Snapshot stream (meta_dump / meta_restore), all integers big-endian:
 *   "SFSMETA1"                              8-byte magic
 *   { 'R' u32 klen u32 vlen key value }*    every record, in key order
 *   'E' u64 record_count u32 crc            crc = CRC-32C of every byte
 *                                           before it
 * The same database contents always give the same bytes.
 */
#ifndef SANDFS_STORAGE_META_H
#define SANDFS_STORAGE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct meta;
struct meta_batch;
struct meta_iter;

/* Opens (creating if missing) the store in directory path. *out is owned by
 * the caller: meta_close(). On error a reason goes into err/errcap (may be
 * NULL). */
int meta_open(const char *path, struct meta **out, char *err, size_t errcap);

/* Closes and frees m (NULL is fine). All iterators must be freed first. */
void meta_close(struct meta *m);

/* Reads key. On success *val is a malloc'ed copy (the caller frees it with
 * free(); NULL when *vlen == 0 is possible) and *vlen its length.
 * -ENOENT when the key is absent. */
int meta_get(struct meta *m, const void *key, size_t klen, void **val,
             size_t *vlen);

/* A write batch; caller owns it: meta_batch_free(). NULL on ENOMEM. */
struct meta_batch *meta_batch_new(void);
void meta_batch_free(struct meta_batch *b);
/* Queues a put/delete (key and value are copied). Later operations on the
 * same key win. */
void meta_batch_put(struct meta_batch *b, const void *key, size_t klen,
                    const void *val, size_t vlen);
void meta_batch_delete(struct meta_batch *b, const void *key, size_t klen);
/* Empties the batch so it can be reused. */
void meta_batch_clear(struct meta_batch *b);
/* Number of queued operations. */
size_t meta_batch_count(const struct meta_batch *b);

/* Applies b atomically; with sync, returns only once it is on disk. The
 * batch keeps its contents (clear it to reuse). */
int meta_commit(struct meta *m, struct meta_batch *b, bool sync);

/* An iterator over the keys starting with prefix (plen may be 0: all keys),
 * in key order, over a consistent view of the store as of its creation.
 * Positioned at the first such key. *out is owned by the caller:
 * meta_iter_free() (NULL on error). The prefix is copied. */
int meta_iter_new(struct meta *m, const void *prefix, size_t plen,
                  struct meta_iter **out);
void meta_iter_free(struct meta_iter *it);
/* True while positioned on a key within the prefix. */
bool meta_iter_valid(const struct meta_iter *it);
/* Moves to the first key >= key (and within the prefix). */
void meta_iter_seek(struct meta_iter *it, const void *key, size_t klen);
void meta_iter_next(struct meta_iter *it);
/* Views of the current key/value: borrowed, valid until the next
 * seek/next/free. Only while meta_iter_valid(). */
const void *meta_iter_key(const struct meta_iter *it, size_t *klen);
const void *meta_iter_value(const struct meta_iter *it, size_t *vlen);
/* 0, or the negative errno of a read error that ended the iteration. */
int meta_iter_status(const struct meta_iter *it);

/* Output callback of meta_dump(): consumes len bytes (borrowed for the
 * call); returns 0 to continue or a negative errno to abort the dump. */
typedef int (*meta_write_fn)(void *ctx, const void *buf, size_t len);

/* Writes the whole store, as of one LevelDB snapshot, as the stream
 * described above, through write_cb (called many times, in order, with
 * pieces of the stream). Returns 0, a LevelDB error, or the first negative
 * value write_cb returned. */
int meta_dump(struct meta *m, meta_write_fn write_cb, void *ctx);

/* Replaces the whole contents of the store with the dump in data[0..len)
 * (borrowed). The stream is fully validated first (magic, lengths, record
 * count, CRC, keys strictly increasing): a malformed one returns -EBADMSG
 * and changes nothing. Then ONE synced LevelDB batch deletes every existing
 * key and writes every record, so a crash leaves either the old or the new
 * contents. The batch is held in memory (about the size of the old keys plus
 * the dump): fine for metadata, not meant for block data. */
int meta_restore(struct meta *m, const void *data, size_t len);

/* The directory of the store (borrowed from m). */
const char *meta_path(const struct meta *m);

#endif
