/*
 * data_metrics.c — the data path's counters for metrics (data_counters(),
 * see data.h): fetch counts kept by data_block.c, the block store's
 * verification counts, and its size from a walk made at most every
 * DATA_USAGE_MS (a scrape must not list a big store every time).
 */
#include "fs/data_internal.h"
#include "fs/metrics.h"

struct usage {
	uint64_t blocks, bytes;
};

static int usage_add(void *ctx, const uint8_t hash[BLK_HASH_LEN],
		     uint64_t size)
{
	(void)hash;
	struct usage *u = ctx;
	u->blocks++;
	u->bytes += size;
	return 0;
}

/* Walk the store when the last walk is older than DATA_USAGE_MS (one
 * caller walks, the others take the previous figures). */
static void usage_refresh(struct data *d)
{
	int64_t now = mono_ms();
	int64_t last = atomic_load(&d->usage_ms);
	if (last && now - last < DATA_USAGE_MS)
		return;
	if (atomic_exchange(&d->usage_walking, true))
		return;
	struct usage u = {0};
	if (blk_list(d->bs, usage_add, &u) == 0) {
		atomic_store(&d->usage_blocks, u.blocks);
		atomic_store(&d->usage_bytes, u.bytes);
	}
	atomic_store(&d->usage_ms, now ? now : 1);
	atomic_store(&d->usage_walking, false);
}

/* See data.h. */
void data_counters(struct data *d, struct data_counters *c)
{
	memset(c, 0, sizeof(*c));
	c->fetched = atomic_load_explicit(&d->n_fetched, memory_order_relaxed);
	c->fetched_bytes =
		atomic_load_explicit(&d->n_fetched_bytes, memory_order_relaxed);
	c->fetch_failures =
		atomic_load_explicit(&d->n_fetch_failed, memory_order_relaxed);
	c->fetch_bad = atomic_load_explicit(&d->n_fetch_bad, memory_order_relaxed);
	usage_refresh(d);
	c->blocks = atomic_load(&d->usage_blocks);
	c->block_bytes = atomic_load(&d->usage_bytes);
	if (blk_stats(d->bs, &c->fs_bytes_total, &c->fs_bytes_free) != 0)
		c->fs_bytes_total = c->fs_bytes_free = 0;
	struct blk_counters bc;
	blk_counters(d->bs, &bc);
	c->crc_checks = bc.crc_checks;
	c->sha_checks = bc.sha_checks;
	c->crc_failures = bc.crc_failures;
	c->sha_failures = bc.sha_failures;
}

/* See data.h. */
void data_metrics(struct data *d, struct metrics_out *o)
{
	struct data_counters c;
	data_counters(d, &c);
#define ONE(name, type, help, v)                                               \
	do {                                                                   \
		metrics_family(o, name, type, help);                           \
		metrics_u64(o, name, NULL, v);                                 \
	} while (0)
	ONE("sandfs_blocks_stored", "gauge",
	    "Blocks in this node's block store (counted at most every 10 s)",
	    c.blocks);
	ONE("sandfs_blocks_stored_bytes", "gauge",
	    "Bytes of those blocks (counted at most every 10 s)", c.block_bytes);
	ONE("sandfs_block_fetches_total", "counter",
	    "Blocks this node lacked and fetched from a peer (verified)",
	    c.fetched);
	ONE("sandfs_block_fetched_bytes_total", "counter",
	    "Bytes of those blocks", c.fetched_bytes);
	ONE("sandfs_block_fetch_failures_total", "counter",
	    "Fetches from one peer that failed (no answer, an error, or a "
	    "copy not matching its hash)",
	    c.fetch_failures);
	ONE("sandfs_block_fetch_bad_copies_total", "counter",
	    "Copies from peers that did not match their SHA-256", c.fetch_bad);
	ONE("sandfs_block_fs_size_bytes", "gauge",
	    "Size of the file system holding the block store", c.fs_bytes_total);
	ONE("sandfs_block_fs_free_bytes", "gauge",
	    "Free space (for unprivileged users) on that file system",
	    c.fs_bytes_free);
#undef ONE
	metrics_family(o, "sandfs_block_verifications_total", "counter",
		       "Block reads checked, by check (crc32c: the stored "
		       "CRC, sha256: the full hash)");
	metrics_u64(o, "sandfs_block_verifications_total", "check=\"crc32c\"",
		    c.crc_checks);
	metrics_u64(o, "sandfs_block_verifications_total", "check=\"sha256\"",
		    c.sha_checks);
	metrics_family(o, "sandfs_block_verification_failures_total", "counter",
		       "Block reads that failed their check (the block is "
		       "quarantined and refetched), by check");
	metrics_u64(o, "sandfs_block_verification_failures_total",
		    "check=\"crc32c\"", c.crc_failures);
	metrics_u64(o, "sandfs_block_verification_failures_total",
		    "check=\"sha256\"", c.sha_failures);
}
