/*
 * slowdisk.h — a test hook that makes this node's disk look slow.
 *
 * When the environment variable SANDFS_TEST_SYNC_DELAY_FILE names a file,
 * every synced write of the storage modules (the Raft log batch, a synced
 * metadata commit, a block fsync) first sleeps for the number of
 * milliseconds that file holds (0, or no file, means no delay; at most
 * 10,000). The file is re-read at most every 100 ms, so a test changes
 * the delay of a running node by rewriting it. Without the variable the
 * hook costs one load and a branch. It exists for the fault tests
 * (tests/e2e/fault_history.sh) and is not a user option.
 */
#ifndef SANDFS_STORAGE_SLOWDISK_H
#define SANDFS_STORAGE_SLOWDISK_H

/* The delay in ms that the hook applies now (0 when it is off). */
int stor_sync_delay_ms(void);

/* Sleep for stor_sync_delay_ms() before a synced write. */
void stor_sync_delay(void);

#endif
