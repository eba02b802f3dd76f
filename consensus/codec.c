/*
 * codec.c — the Raft message codec: struct raft_msg <-> bytes.
 *
 * The layout is the same for every message type: every field of struct
 * raft_msg, fixed-width and big-endian, in declaration order; fields a type
 * does not use travel as zeros. Variable parts carry their length first:
 *
 *   u8  type          u64 from, to, term, prev_index, prev_term, commit
 *   u8  reject        u64 index, hint_index, hint_term, ctx
 *   u8  transfer      u64 offset      u8 done
 *   u32 n_entries     then per entry: u64 term, u64 index, u8 type,
 *                                     u32 len, len bytes
 *   snapshot meta:    u64 index, u64 term, u32 conf.n,
 *                     then per node: u64 id, u8 role, u8 addr_len, addr
 *   u32 len           then len bytes of chunk data
 *
 * Nothing may follow. The decoder checks every length against the bytes
 * that remain before reading or allocating, so a hostile buffer can neither
 * read out of bounds nor make it allocate more than the buffer implies.
 */
#include "consensus/raft.h"

#include <stdlib.h>
#include <string.h>

#define ENTRY_HDR 21u /* term + index + type + len */

/* ---- writer ------------------------------------------------------------- */

/* A bounded writer: counts every byte, stores only those that fit. */
struct wbuf {
	uint8_t *p;
	size_t cap;
	size_t n;
};

static void put_bytes(struct wbuf *w, const void *src, size_t len)
{
	if (len && w->n <= w->cap && len <= w->cap - w->n)
		memcpy(w->p + w->n, src, len);
	w->n += len;
}

static void put_u8(struct wbuf *w, uint8_t v)
{
	put_bytes(w, &v, 1);
}

static void put_u32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 8), (uint8_t)v };
	put_bytes(w, b, sizeof b);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	put_bytes(w, b, sizeof b);
}

/* ---- reader ------------------------------------------------------------- */

/* A bounded reader: once a read would pass the end, `bad` sticks and every
 * later read yields zeros. */
struct rbuf {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool bad;
};

static size_t remaining(const struct rbuf *r)
{
	return r->bad ? 0 : r->len - r->off;
}

static const uint8_t *get_bytes(struct rbuf *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint8_t get_u8(struct rbuf *r)
{
	const uint8_t *p = get_bytes(r, 1);
	return p ? p[0] : 0;
}

static uint32_t get_u32(struct rbuf *r)
{
	const uint8_t *p = get_bytes(r, 4);
	if (!p)
		return 0;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get_u64(struct rbuf *r)
{
	const uint8_t *p = get_bytes(r, 8);
	uint64_t v = 0;
	if (!p)
		return 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* A bool must be 0 or 1 on the wire. */
static bool get_bool(struct rbuf *r)
{
	uint8_t v = get_u8(r);
	if (v > 1)
		r->bad = true;
	return v == 1;
}

/* ---- encode ------------------------------------------------------------- */

/* True if m can be encoded: known type, entries present when counted,
 * sane configuration (n <= RAFT_MAX_NODES, addresses NUL-terminated). */
static bool msg_valid(const struct raft_msg *m)
{
	if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX)
		return false;
	if (m->n_entries && !m->entries)
		return false;
	for (uint32_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].len && !m->entries[i].data)
			return false;
	if (m->snap.conf.n > RAFT_MAX_NODES)
		return false;
	for (uint32_t i = 0; i < m->snap.conf.n; i++)
		if (strnlen(m->snap.conf.nodes[i].addr, RAFT_ADDR_MAX) >=
		    RAFT_ADDR_MAX)
			return false;
	if (m->len && !m->data)
		return false;
	return true;
}

/* Encode m into buf (up to cap bytes). Returns the full encoded size, which
 * may exceed cap (then buf holds a truncated prefix and must not be sent);
 * call with cap 0 to size. Returns 0 if m cannot be encoded (see
 * msg_valid). */
size_t raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap)
{
	struct wbuf w = { buf, buf ? cap : 0, 0 };

	if (!m || !msg_valid(m))
		return 0;
	put_u8(&w, m->type);
	put_u64(&w, m->from);
	put_u64(&w, m->to);
	put_u64(&w, m->term);
	put_u64(&w, m->prev_index);
	put_u64(&w, m->prev_term);
	put_u64(&w, m->commit);
	put_u8(&w, m->reject ? 1 : 0);
	put_u64(&w, m->index);
	put_u64(&w, m->hint_index);
	put_u64(&w, m->hint_term);
	put_u64(&w, m->ctx);
	put_u8(&w, m->transfer ? 1 : 0);
	put_u64(&w, m->offset);
	put_u8(&w, m->done ? 1 : 0);

	put_u32(&w, m->n_entries);
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		put_u64(&w, e->term);
		put_u64(&w, e->index);
		put_u8(&w, e->type);
		put_u32(&w, e->len);
		put_bytes(&w, e->data, e->len);
	}

	put_u64(&w, m->snap.index);
	put_u64(&w, m->snap.term);
	put_u32(&w, m->snap.conf.n);
	for (uint32_t i = 0; i < m->snap.conf.n; i++) {
		const struct raft_node *nd = &m->snap.conf.nodes[i];
		size_t alen = strnlen(nd->addr, RAFT_ADDR_MAX);
		put_u64(&w, nd->id);
		put_u8(&w, nd->role);
		put_u8(&w, (uint8_t)alen);
		put_bytes(&w, nd->addr, alen);
	}

	put_u32(&w, m->len);
	put_bytes(&w, m->data, m->len);
	return w.n;
}

/* ---- decode ------------------------------------------------------------- */

/* Decode the snapshot metadata (index, term, configuration). */
static void get_snap(struct rbuf *r, struct raft_snapshot_meta *s)
{
	s->index = get_u64(r);
	s->term = get_u64(r);
	s->conf.n = get_u32(r);
	if (s->conf.n > RAFT_MAX_NODES) {
		r->bad = true;
		return;
	}
	for (uint32_t i = 0; i < s->conf.n && !r->bad; i++) {
		struct raft_node *nd = &s->conf.nodes[i];
		nd->id = get_u64(r);
		nd->role = get_u8(r);
		if (nd->role != RAFT_VOTER && nd->role != RAFT_LEARNER)
			r->bad = true;
		uint8_t alen = get_u8(r);
		if (alen >= RAFT_ADDR_MAX) {
			r->bad = true;
			return;
		}
		const uint8_t *a = get_bytes(r, alen);
		if (!a)
			return;
		if (memchr(a, '\0', alen)) { /* must be one C string */
			r->bad = true;
			return;
		}
		memcpy(nd->addr, a, alen);
		nd->addr[alen] = '\0';
	}
}

/* Decode buf into m. Entry and chunk data point into buf (borrowed for as
 * long as buf lives); the entries array is allocated into *entries_out
 * (NULL when there are none; the caller frees it with free()). Returns 0,
 * RAFT_EINVAL on any malformed input (then *entries_out is NULL and m is
 * zeroed), or RAFT_ENOMEM. */
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m,
		    struct raft_entry **entries_out)
{
	struct rbuf r = { buf, buf ? len : 0, 0, false };
	struct raft_entry *ents = NULL;

	if (!m || !entries_out)
		return RAFT_EINVAL;
	memset(m, 0, sizeof *m);
	*entries_out = NULL;

	m->type = get_u8(&r);
	if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX)
		goto bad;
	m->from = get_u64(&r);
	m->to = get_u64(&r);
	m->term = get_u64(&r);
	m->prev_index = get_u64(&r);
	m->prev_term = get_u64(&r);
	m->commit = get_u64(&r);
	m->reject = get_bool(&r);
	m->index = get_u64(&r);
	m->hint_index = get_u64(&r);
	m->hint_term = get_u64(&r);
	m->ctx = get_u64(&r);
	m->transfer = get_bool(&r);
	m->offset = get_u64(&r);
	m->done = get_bool(&r);

	uint32_t n = get_u32(&r);
	if (r.bad || n > remaining(&r) / ENTRY_HDR)
		goto bad;
	if (n) {
		ents = calloc(n, sizeof *ents);
		if (!ents) {
			memset(m, 0, sizeof *m);
			return RAFT_ENOMEM;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct raft_entry *e = &ents[i];
		e->term = get_u64(&r);
		e->index = get_u64(&r);
		e->type = get_u8(&r);
		if (e->type > RAFT_ENTRY_CONF)
			goto bad;
		e->len = get_u32(&r);
		const uint8_t *d = get_bytes(&r, e->len);
		if (r.bad)
			goto bad;
		e->data = e->len ? (uint8_t *)d : NULL;
	}
	m->n_entries = n;
	m->entries = ents;

	get_snap(&r, &m->snap);

	m->len = get_u32(&r);
	const uint8_t *d = get_bytes(&r, m->len);
	if (r.bad || r.off != r.len)
		goto bad;
	m->data = m->len ? (uint8_t *)d : NULL;

	*entries_out = ents;
	return 0;
bad:
	free(ents);
	memset(m, 0, sizeof *m);
	return RAFT_EINVAL;
}
