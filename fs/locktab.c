/*
 * locktab.c — split, merge and conflict rules of byte-range locks; see
 * locktab.h for the POSIX rules quoted.
 */
#include "fs/locktab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool locktab_same_owner(const struct itab_lock *a, const struct itab_lock *b)
{
	return a->node == b->node && a->owner == b->owner;
}

bool locktab_overlap(const struct itab_lock *a, const struct itab_lock *b)
{
	return a->start <= b->end && b->start <= a->end;
}

long locktab_conflict(const struct itab_lock *set, size_t n, const struct itab_lock *req)
{
	if (req->type == ITAB_LK_UNLOCK)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct itab_lock *l = &set[i];
		if (locktab_same_owner(l, req) || !locktab_overlap(l, req))
			continue;
		if (l->type == ITAB_LK_WRITE || req->type == ITAB_LK_WRITE)
			return (long)i;
	}
	return -1;
}

/* Order locks by start. */
static int by_start(const void *a, const void *b)
{
	const struct itab_lock *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* b starts right after a ends (a->end < ITAB_LK_EOF). */
static bool adjacent(const struct itab_lock *a, const struct itab_lock *b)
{
	return a->end != ITAB_LK_EOF && a->end + 1 == b->start;
}

long locktab_apply(const struct itab_lock *mine, size_t n, const struct itab_lock *req,
		   struct itab_lock *out)
{
	if (req->start > req->end ||
	    (req->type != ITAB_LK_UNLOCK && req->type != ITAB_LK_READ &&
	     req->type != ITAB_LK_WRITE))
		return -EINVAL;
	size_t k = 0;
	/* 1. Cut req's range out of the owner's locks. An owner's locks are
	 * disjoint, so at most one of them is split in two: n + 1 pieces.
	 * More means overlapping input (a broken table). */
#define PUT(l) do { if (k >= n + 1) return -EIO; out[k++] = (l); } while (0)
	for (size_t i = 0; i < n; i++) {
		struct itab_lock l = mine[i];
		l.kind = req->kind, l.node = req->node, l.owner = req->owner;
		if (!locktab_overlap(&l, req)) {
			PUT(l);
			continue;
		}
		if (l.start < req->start) { /* the piece before the range */
			struct itab_lock p = l;
			p.end = req->start - 1;
			PUT(p);
		}
		if (l.end > req->end) { /* the piece after it */
			struct itab_lock p = l;
			p.start = req->end + 1;
			PUT(p);
		}
	}
#undef PUT
	/* 2. Add the new range and merge it with same-type neighbours. */
	if (req->type != ITAB_LK_UNLOCK) {
		struct itab_lock nl = *req;
		size_t w = 0;
		for (size_t i = 0; i < k; i++) {
			struct itab_lock *l = &out[i];
			if (l->type == nl.type && (adjacent(l, &nl) || adjacent(&nl, l))) {
				if (l->start < nl.start)
					nl.start = l->start;
				if (l->end > nl.end)
					nl.end = l->end;
				continue; /* absorbed */
			}
			out[w++] = *l;
		}
		k = w;
		out[k++] = nl;
	}
	if (k > 1)
		qsort(out, k, sizeof(*out), by_start);
	return (long)k;
}
