/*
 * fsck_report.c — fsck's findings as text for people and as JSON for
 * scripts (see fsck.h). Names and paths are bytes; in JSON every valid
 * UTF-8 sequence passes through and every other byte becomes U+FFFD.
 */
#include "fs/fsck_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *ns = realloc(b->s, cap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = 0;
}

static void sb_printf(struct sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	sb_put(b, s, (size_t)n);
	free(s);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t l = s[0] < 0x80         ? 1
	           : (s[0] >> 5) == 6  ? 2
	           : (s[0] >> 4) == 14 ? 3
	           : (s[0] >> 3) == 30 ? 4
	                               : 0;
	if (l == 0 || l > n || (l == 2 && s[0] < 0xc2))
		return 0;
	for (size_t i = 1; i < l; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (l == 3 && s[0] == 0xe0 && s[1] < 0xa0)
		return 0; /* overlong */
	if (l == 3 && s[0] == 0xed && s[1] >= 0xa0)
		return 0; /* surrogate */
	if (l == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || s[0] > 0xf4 ||
	               (s[0] == 0xf4 && s[1] >= 0x90)))
		return 0;
	return l;
}

/* A JSON string (with quotes); NULL gives null. */
static void sb_json(struct sb *b, const char *s)
{
	if (!s) {
		sb_put(b, "null", 4);
		return;
	}
	sb_put(b, "\"", 1);
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		unsigned char ch = p[i];
		if (ch == '"' || ch == '\\') {
			char e[2] = {'\\', (char)ch};
			sb_put(b, e, 2);
			i++;
		} else if (ch < 0x20) {
			sb_printf(b, "\\u%04x", ch);
			i++;
		} else {
			size_t l = utf8_len(p + i, n - i);
			if (l) {
				sb_put(b, (const char *)p + i, l);
				i += l;
			} else {
				sb_put(b, "\\ufffd", 6);
				i++;
			}
		}
	}
	sb_put(b, "\"", 1);
}

static const char *fix_name(enum fsck_fix f)
{
	return f == FSCK_FIXED        ? "repaired"
	       : f == FSCK_FIX_FAILED ? "repair-failed"
	                              : "found";
}

static void human_bytes(uint64_t n, char *out, size_t cap)
{
	if (n >= (1ull << 30))
		snprintf(out, cap, "%.1f GiB",
		         (double)n / (double)(1ull << 30));
	else if (n >= (1ull << 20))
		snprintf(out, cap, "%.1f MiB",
		         (double)n / (double)(1ull << 20));
	else
		snprintf(out, cap, "%.1f KiB", (double)n / 1024.0);
}

/* "node N", or "the node" when fsck was not told which (offline). */
static void node_name(const struct fsck_report *r, char *out, size_t cap)
{
	if (r->node_id)
		snprintf(out, cap, "node %llu", (unsigned long long)r->node_id);
	else
		snprintf(out, cap, "the node");
}

/* See fsck.h. */
char *fsck_summary(const struct fsck_report *r)
{
	struct sb b = {0};
	char where[192], node[32];
	node_name(r, node, sizeof(node));
	snprintf(where, sizeof(where),
	         "%s (%s, log index %llu): %llu inodes, %llu blocks "
	         "verified in %.1f s",
	         node, r->online ? "online" : "offline",
	         (unsigned long long)r->applied,
	         (unsigned long long)r->st.inodes,
	         (unsigned long long)r->st.blocks_verified, r->secs);
	size_t found = r->n + r->n_more;
	if (r->error[0])
		sb_printf(&b,
		          "sandfs fsck: the check did not finish (%s); %zu "
		          "problem%s found so far",
		          r->error, found, found == 1 ? "" : "s");
	else if (found == 0)
		sb_printf(&b, "sandfs fsck: clean: %s", where);
	else if (r->repair)
		sb_printf(&b,
		          "sandfs fsck: %zu problem%s found, %zu repaired, %zu "
		          "left: %s",
		          found, found == 1 ? "" : "s", r->n_fixed, r->n_left,
		          where);
	else
		sb_printf(&b,
		          "sandfs fsck: %zu problem%s found (run with --repair "
		          "to fix what is "
		          "safe): %s",
		          found, found == 1 ? "" : "s", where);
	return b.oom ? (free(b.s), NULL) : b.s;
}

static void render_text(struct sb *b, const struct fsck_report *r)
{
	char node[32];
	node_name(r, node, sizeof(node));
	sb_printf(b, "sandfs fsck: %s, %s%s, the table at log index %llu\n",
	          node, r->online ? "online" : "offline",
	          r->repair ? ", repairing" : "",
	          (unsigned long long)r->applied);
	for (size_t i = 0; i < r->n; i++) {
		const struct fsck_problem *p = &r->p[i];
		sb_printf(b, "%s", fsck_kind_name(p->kind));
		if (p->ino)
			sb_printf(b, "  inode %llu",
			          (unsigned long long)p->ino);
		if (p->path)
			sb_printf(b, "  %s", p->path);
		if (p->has_hash) {
			char hex[BLK_HEX_LEN + 1];
			blk_hex(p->hash, hex);
			sb_printf(b, "  block %s", hex);
		}
		sb_printf(b, "\n    %s\n", p->detail ? p->detail : "?");
		if (p->action)
			sb_printf(b, "    -> %s\n", p->action);
	}
	if (r->n_more)
		sb_printf(b,
		          "... and %zu more problems (only the first %d are "
		          "listed)\n",
		          r->n_more, FSCK_MAX_PROBLEMS);
	const struct fsck_stats *s = &r->st;
	char bytes[32];
	human_bytes(s->bytes_verified, bytes, sizeof(bytes));
	sb_printf(b,
	          "checked: inodes %llu (directories %llu, files %llu, "
	          "symlinks %llu, other %llu), "
	          "entries %llu, extents %llu, xattrs %llu; blocks referenced "
	          "%llu, stored %llu, "
	          "verified %llu (%s)\n",
	          (unsigned long long)s->inodes, (unsigned long long)s->dirs,
	          (unsigned long long)s->files, (unsigned long long)s->symlinks,
	          (unsigned long long)s->specials,
	          (unsigned long long)s->entries,
	          (unsigned long long)s->extents, (unsigned long long)s->xattrs,
	          (unsigned long long)s->blocks_referenced,
	          (unsigned long long)s->blocks_stored,
	          (unsigned long long)s->blocks_verified, bytes);
	if (s->orphans || s->unreferenced_recent)
		sb_printf(b,
		          "also: orphans kept for files still open %llu; "
		          "unreferenced blocks "
		          "in flight %llu (younger than the grace period, or "
		          "named by a log "
		          "entry not yet applied)\n",
		          (unsigned long long)s->orphans,
		          (unsigned long long)s->unreferenced_recent);
	if (r->log.known) {
		sb_printf(b, "log: compacted up to %llu, last entry %llu",
		          (unsigned long long)r->log.snap_index,
		          (unsigned long long)r->log.last);
		if (r->log.commit) /* offline: as last persisted, often not at
		                      all */
			sb_printf(b, ", commit %llu",
			          (unsigned long long)r->log.commit);
		if (!r->online && r->log.last > r->applied)
			sb_printf(
			    b, "; %llu entries to apply at the next start",
			    (unsigned long long)(r->log.last - r->applied));
		sb_put(b, "\n", 1);
	}
	char *sum = fsck_summary(r);
	if (sum)
		sb_printf(b, "%s\n", sum);
	free(sum);
}

static void render_json(struct sb *b, const struct fsck_report *r)
{
	const struct fsck_stats *s = &r->st;
	if (r->node_id)
		sb_printf(b, "{\"node\":%llu,", (unsigned long long)r->node_id);
	else
		sb_put(b, "{\"node\":null,", 13); /* offline without --id */
	sb_printf(b, "\"mode\":\"%s\",\"repair\":%s,\"applied\":%llu,",
	          r->online ? "online" : "offline",
	          r->repair ? "true" : "false", (unsigned long long)r->applied);
	sb_printf(
	    b,
	    "\"checked\":{\"inodes\":%llu,\"directories\":%llu,\"files\":%llu,"
	    "\"symlinks\":%llu,\"other\":%llu,\"entries\":%llu,\"extents\":%"
	    "llu,"
	    "\"xattrs\":%llu,\"orphans\":%llu,\"blocks_referenced\":%llu,"
	    "\"blocks_stored\":%llu,\"blocks_verified\":%llu,\"bytes_"
	    "verified\":%llu,"
	    "\"unreferenced_in_flight\":%llu},",
	    (unsigned long long)s->inodes, (unsigned long long)s->dirs,
	    (unsigned long long)s->files, (unsigned long long)s->symlinks,
	    (unsigned long long)s->specials, (unsigned long long)s->entries,
	    (unsigned long long)s->extents, (unsigned long long)s->xattrs,
	    (unsigned long long)s->orphans,
	    (unsigned long long)s->blocks_referenced,
	    (unsigned long long)s->blocks_stored,
	    (unsigned long long)s->blocks_verified,
	    (unsigned long long)s->bytes_verified,
	    (unsigned long long)s->unreferenced_recent);
	if (r->log.known)
		sb_printf(b,
		          "\"log\":{\"compacted\":%llu,\"last\":%llu,"
		          "\"commit\":%llu},",
		          (unsigned long long)r->log.snap_index,
		          (unsigned long long)r->log.last,
		          (unsigned long long)r->log.commit);
	sb_put(b, "\"problems\":[", 12);
	for (size_t i = 0; i < r->n; i++) {
		const struct fsck_problem *p = &r->p[i];
		sb_printf(b, "%s{\"kind\":\"%s\",\"ino\":%llu,\"path\":",
		          i ? "," : "", fsck_kind_name(p->kind),
		          (unsigned long long)p->ino);
		sb_json(b, p->path);
		sb_put(b, ",\"block\":", 9);
		if (p->has_hash) {
			char hex[BLK_HEX_LEN + 1];
			blk_hex(p->hash, hex);
			sb_json(b, hex);
		} else {
			sb_put(b, "null", 4);
		}
		sb_put(b, ",\"detail\":", 10);
		sb_json(b, p->detail);
		sb_printf(b, ",\"state\":\"%s\",\"action\":", fix_name(p->fix));
		sb_json(b, p->action);
		sb_put(b, "}", 1);
	}
	size_t found = r->n + r->n_more;
	sb_printf(
	    b,
	    "],\"found\":%zu,\"listed\":%zu,\"repaired\":%zu,\"left\":%zu,"
	    "\"seconds\":%.3f,\"error\":",
	    found, r->n, r->n_fixed, r->n_left, r->secs);
	sb_json(b, r->error[0] ? r->error : NULL);
	char *sum = fsck_summary(r);
	sb_put(b, ",\"summary\":", 11);
	sb_json(b, sum);
	free(sum);
	sb_put(b, "}\n", 2);
}

/* See fsck.h. */
char *fsck_render(const struct fsck_report *r, bool json)
{
	struct sb b = {0};
	if (json)
		render_json(&b, r);
	else
		render_text(&b, r);
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}
