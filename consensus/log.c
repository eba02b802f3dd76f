/*
 * log.c — the in-memory log: the entries after the compacted prefix.
 *
 * Entries live in one array that grows geometrically; e[i] has index
 * off + 1 + i. (off, off_term) is the entry just before the first one held,
 * which the consistency check of AppendEntries needs (Figure 2: "Reply
 * false if log doesn't contain an entry at prevLogIndex whose term matches
 * prevLogTerm"). Entry data is one allocation per entry; when an entry
 * leaves the log its data is handed to raft_defer_free(), because a ready
 * batch or a queued message may still point at it.
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft_impl.h"

/* Term of entry i; false when i is compacted away or beyond the end. */
bool raft_log_term(const struct raft_log *l, raft_index i, raft_term *t)
{
	if (i == l->off) {
		*t = l->off_term;
		return true;
	}
	const struct raft_entry *e = raft_log_get(l, i);
	if (!e)
		return false;
	*t = e->term;
	return true;
}

/* Term of the last entry (or of the compacted prefix when empty). */
raft_term raft_log_last_term(const struct raft_log *l)
{
	return l->n ? l->e[l->n - 1].term : l->off_term;
}

/* Appends (term, type, data) at last + 1; data is copied. */
int raft_log_append(struct raft *r, raft_term term, uint8_t type,
		    const void *data, uint32_t len)
{
	struct raft_log *l = &r->log;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct raft_entry *e = realloc(l->e, cap * sizeof(*e));
		if (!e)
			return RAFT_ENOMEM;
		l->e = e;
		l->cap = cap;
	}
	uint8_t *copy = NULL;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return RAFT_ENOMEM;
		memcpy(copy, data, len);
	}
	struct raft_entry *e = &l->e[l->n++];
	e->term = term;
	e->index = l->off + l->n;
	e->type = type;
	e->len = len;
	e->data = copy;
	return 0;
}

/* Drops entries with index >= from. */
void raft_log_truncate(struct raft *r, raft_index from)
{
	struct raft_log *l = &r->log;
	if (from <= l->off)
		from = l->off + 1;
	while (raft_log_last(l) >= from) {
		struct raft_entry *e = &l->e[--l->n];
		raft_defer_free(r, e->data);
		e->data = NULL;
	}
}

/* Drops entries with index <= upto; off/off_term move to upto. */
void raft_log_compact(struct raft *r, raft_index upto)
{
	struct raft_log *l = &r->log;
	if (upto <= l->off)
		return;
	if (upto > raft_log_last(l))
		upto = raft_log_last(l);
	size_t k = (size_t)(upto - l->off);
	raft_term t = l->e[k - 1].term;
	for (size_t i = 0; i < k; i++)
		raft_defer_free(r, l->e[i].data);
	memmove(l->e, l->e + k, (l->n - k) * sizeof(*l->e));
	l->n -= k;
	l->off = upto;
	l->off_term = t;
}

/* Drops everything; the log continues after (index, term). */
void raft_log_reset(struct raft *r, raft_index index, raft_term term)
{
	struct raft_log *l = &r->log;
	for (size_t i = 0; i < l->n; i++)
		raft_defer_free(r, l->e[i].data);
	l->n = 0;
	l->off = index;
	l->off_term = term;
}

/* Frees all entries (raft_free only: nothing borrows them any more). */
void raft_log_free(struct raft_log *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].data);
	free(l->e);
	memset(l, 0, sizeof(*l));
}

/* Data bytes of the entries held in [lo, hi]. */
uint64_t raft_log_bytes(const struct raft_log *l, raft_index lo,
			raft_index hi)
{
	uint64_t b = 0;
	for (raft_index i = lo; i <= hi; i++) {
		const struct raft_entry *e = raft_log_get(l, i);
		if (e)
			b += e->len;
	}
	return b;
}
