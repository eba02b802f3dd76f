/*
 * locktab — the lock rules of itab, as pure functions over arrays of
 * struct itab_lock (no storage, no threads), so apply and its tests share
 * one implementation.
 *
 * POSIX (fcntl, XSH 2.9.5 / "fcntl" F_SETLK): "a shared lock ... prevents
 * any other process from setting an exclusive lock on any portion of the
 * protected area"; "an exclusive lock ... prevents any other process from
 * setting a shared lock or an exclusive lock on any portion"; "If a lock
 * is set on a range already locked by the same process, the new type
 * replaces the existing type for the overlapping part" — the old locks
 * are split at the ends of the new range, and (as Linux does) the owner's
 * adjacent or overlapping locks of the same type are merged into one.
 * flock locks use the same functions with the range [0, ITAB_LK_EOF].
 *
 * An owner is (node, owner). A range is [start, end], end inclusive.
 */
#ifndef SANDFS_FS_LOCKTAB_H
#define SANDFS_FS_LOCKTAB_H

#include <stdbool.h>
#include <stddef.h>

#include "fs/itab.h"

/* Same owner: equal node and owner. */
bool locktab_same_owner(const struct itab_lock *a, const struct itab_lock *b);

/* The ranges of a and b share a byte. */
bool locktab_overlap(const struct itab_lock *a, const struct itab_lock *b);

/* Index of the first lock in set[0..n) that blocks req (another owner,
 * overlapping, and a write lock on either side), or -1. An UNLOCK request
 * is never blocked. */
long locktab_conflict(const struct itab_lock *set, size_t n, const struct itab_lock *req);

/* The owner's locks after req: mine[0..n) are the locks of req's owner
 * (any order, kind and owner as req), out receives the new list sorted by
 * start (room for n + 2: a split adds one piece, req one more). Each out
 * entry copies req's kind, node and owner; kept pieces keep their type,
 * pid and incarnation. Returns the number written, or -EINVAL when req's
 * range is empty (start > end) or its type unknown, -EIO when mine holds
 * overlapping locks (apply never writes such). */
long locktab_apply(const struct itab_lock *mine, size_t n, const struct itab_lock *req,
		   struct itab_lock *out);

#endif
