/*
 * blkfetch.h — fetch one block from the other nodes for offline fsck: a
 * BLOCK_GET request (the data path's protocol, see data.h) over a link,
 * the copy checked against its hash and stored in a block store. A
 * running node fetches through its data path (data_refetch); a stopped
 * node has none, so offline repair uses this.
 */
#ifndef SANDFS_FS_BLKFETCH_H
#define SANDFS_FS_BLKFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "storage/blk.h"

struct link;

/* Ask peers[0..n) in turn for block hash over link l (each within
 * timeout_ms; 0: 5000); the first copy whose SHA-256 matches is stored
 * in bs. Returns 0 and *from (the node that gave it), or:
 *   -ENOENT     every peer that answered lacks it
 *   -EBADMSG    a peer sent content that does not match (none better)
 *   -EHOSTUNREACH  no peer answered (not connected, timed out)
 *   other negative errno from the store (-ENOSPC...).
 * Blocks the caller; never call it from a link callback. */
int blkfetch(struct link *l, const uint64_t *peers, size_t n,
             struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
             uint32_t timeout_ms, uint64_t *from);

#endif
