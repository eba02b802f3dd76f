/*
 * metrics.c — histograms and the Prometheus text format (see metrics.h).
 */
#include "fs/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1-2-5 steps from 1 us to 10 s. */
static const uint64_t bounds_ns[METRICS_BUCKETS] = {
	1000ull,	2000ull,	5000ull,	10000ull,
	20000ull,	50000ull,	100000ull,	200000ull,
	500000ull,	1000000ull,	2000000ull,	5000000ull,
	10000000ull,	20000000ull,	50000000ull,	100000000ull,
	200000000ull,	500000000ull,	1000000000ull,	2000000000ull,
	5000000000ull,	10000000000ull,
};

static const char *const bounds_text[METRICS_BUCKETS] = {
	"0.000001", "0.000002", "0.000005", "0.00001", "0.00002", "0.00005",
	"0.0001",   "0.0002",   "0.0005",   "0.001",   "0.002",   "0.005",
	"0.01",	    "0.02",	"0.05",	    "0.1",     "0.2",	  "0.5",
	"1",	    "2",	"5",	    "10",
};

uint64_t metrics_bound_ns(int i)
{
	return i >= 0 && i < METRICS_BUCKETS ? bounds_ns[i] : UINT64_MAX;
}

const char *metrics_bound_text(int i)
{
	return i >= 0 && i < METRICS_BUCKETS ? bounds_text[i] : "+Inf";
}

/* See metrics.h. */
void metrics_hist_observe(struct metrics_hist *h, uint64_t ns)
{
	int i = 0;
	while (i < METRICS_BUCKETS && ns > bounds_ns[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* See metrics.h. */
void metrics_hist_read(const struct metrics_hist *h, struct metrics_hist_snap *s)
{
	s->count = 0;
	for (int i = 0; i <= METRICS_BUCKETS; i++) {
		s->bucket[i] = atomic_load_explicit(&h->bucket[i],
						    memory_order_relaxed);
		s->count += s->bucket[i];
	}
	s->sum_s = (double)atomic_load_explicit(&h->sum_ns,
						memory_order_relaxed) / 1e9;
}

/* See metrics.h. */
void metrics_hist_sub(const struct metrics_hist_snap *a,
		      const struct metrics_hist_snap *b,
		      struct metrics_hist_snap *s)
{
	s->count = 0;
	for (int i = 0; i <= METRICS_BUCKETS; i++) {
		s->bucket[i] = a->bucket[i] > b->bucket[i]
				       ? a->bucket[i] - b->bucket[i]
				       : 0;
		s->count += s->bucket[i];
	}
	s->sum_s = a->sum_s > b->sum_s ? a->sum_s - b->sum_s : 0;
}

/* See metrics.h. */
double metrics_hist_quantile(const struct metrics_hist_snap *s, double q)
{
	if (!s->count)
		return -1;
	if (q <= 0)
		q = 0;
	if (q > 1)
		q = 1;
	double rank = q * (double)s->count;
	uint64_t before = 0;
	for (int i = 0; i < METRICS_BUCKETS; i++) {
		uint64_t c = s->bucket[i];
		if (c && (double)(before + c) >= rank) {
			double lo = i ? (double)bounds_ns[i - 1] / 1e9 : 0;
			double hi = (double)bounds_ns[i] / 1e9;
			double f = (rank - (double)before) / (double)c;
			if (f < 0)
				f = 0;
			return lo + (hi - lo) * f;
		}
		before += c;
	}
	return (double)bounds_ns[METRICS_BUCKETS - 1] / 1e9;
}

/* ---- writing ------------------------------------------------------------------- */

/* See metrics.h. */
void metrics_printf(struct metrics_out *o, const char *fmt, ...)
{
	if (o->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = o->cap - o->len;
		int n = vsnprintf(o->s ? o->s + o->len : NULL, o->s ? room : 0,
				  fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = true;
			return;
		}
		if (o->s && (size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		size_t cap = o->cap ? o->cap : 4096;
		while (cap - o->len <= (size_t)n)
			cap *= 2;
		char *s = realloc(o->s, cap);
		if (!s) {
			o->failed = true;
			return;
		}
		o->s = s;
		o->cap = cap;
	}
}

/* See metrics.h. */
void metrics_family(struct metrics_out *o, const char *name, const char *type,
		    const char *help)
{
	metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
		       type);
}

static void sample_head(struct metrics_out *o, const char *name,
			const char *labels)
{
	if (labels && *labels)
		metrics_printf(o, "%s{%s} ", name, labels);
	else
		metrics_printf(o, "%s ", name);
}

/* See metrics.h. */
void metrics_u64(struct metrics_out *o, const char *name, const char *labels,
		 uint64_t v)
{
	sample_head(o, name, labels);
	metrics_printf(o, "%llu\n", (unsigned long long)v);
}

/* See metrics.h. */
void metrics_f64(struct metrics_out *o, const char *name, const char *labels,
		 double v)
{
	sample_head(o, name, labels);
	if (isnan(v))
		metrics_printf(o, "NaN\n");
	else if (isinf(v))
		metrics_printf(o, "%cInf\n", v > 0 ? '+' : '-');
	else
		metrics_printf(o, "%.15g\n", v);
}

/* See metrics.h. */
void metrics_hist_write(struct metrics_out *o, const char *name,
			const char *labels, const struct metrics_hist_snap *s)
{
	const char *sep = labels && *labels ? "," : "";
	const char *lb = labels ? labels : "";
	uint64_t cum = 0;
	for (int i = 0; i <= METRICS_BUCKETS; i++) {
		cum += s->bucket[i];
		metrics_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, lb,
			       sep, metrics_bound_text(i),
			       (unsigned long long)cum);
	}
	char n2[160];
	snprintf(n2, sizeof(n2), "%s_sum", name);
	metrics_f64(o, n2, labels, s->sum_s);
	snprintf(n2, sizeof(n2), "%s_count", name);
	metrics_u64(o, n2, labels, cum);
}

/* See metrics.h. */
int metrics_label(char *buf, size_t cap, const char *key, const char *value)
{
	size_t len = strnlen(buf, cap);
	size_t w = len;
	if (len == cap)
		return -ENOSPC;
	size_t need = (len ? 1 : 0) + strlen(key) + 3;
	for (const char *p = value; *p; p++)
		need += *p == '\\' || *p == '"' || *p == '\n' ? 2 : 1;
	if (len + need + 1 > cap)
		return -ENOSPC;
	if (len)
		buf[w++] = ',';
	for (const char *p = key; *p; p++)
		buf[w++] = *p;
	buf[w++] = '=';
	buf[w++] = '"';
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '"') {
			buf[w++] = '\\';
			buf[w++] = *p;
		} else if (*p == '\n') {
			buf[w++] = '\\';
			buf[w++] = 'n';
		} else {
			buf[w++] = *p;
		}
	}
	buf[w++] = '"';
	buf[w] = 0;
	return 0;
}

/* ---- parsing ------------------------------------------------------------------------ */

static bool name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       c == ':';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9');
}

/* Length of the metric name at s (0 if none). */
static size_t name_len(const char *s)
{
	if (!name_start(*s))
		return 0;
	size_t n = 1;
	while (name_char(s[n]))
		n++;
	return n;
}

struct family {
	const char *name;
	enum metrics_type type;
	bool help;
};

struct parser {
	struct family *fam;
	size_t nfam, capfam;
	char *err;
	size_t errcap;
	size_t line;
};

static int fail(struct parser *ps, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(struct parser *ps, const char *fmt, ...)
{
	if (ps->err && ps->errcap) {
		int n = snprintf(ps->err, ps->errcap, "line %zu: ", ps->line);
		if (n >= 0 && (size_t)n < ps->errcap) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(ps->err + n, ps->errcap - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static struct family *fam_find(struct parser *ps, const char *name, size_t len)
{
	for (size_t i = 0; i < ps->nfam; i++)
		if (strlen(ps->fam[i].name) == len &&
		    !memcmp(ps->fam[i].name, name, len))
			return &ps->fam[i];
	return NULL;
}

static int fam_add(struct parser *ps, const char *name, struct family **out)
{
	if (ps->nfam == ps->capfam) {
		size_t cap = ps->capfam ? ps->capfam * 2 : 32;
		struct family *f = realloc(ps->fam, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		ps->fam = f;
		ps->capfam = cap;
	}
	*out = &ps->fam[ps->nfam++];
	memset(*out, 0, sizeof(**out));
	(*out)->name = name;
	return 0;
}

/* "# HELP name text" / "# TYPE name type" (line is NUL-terminated). */
static int parse_comment(struct parser *ps, char *line)
{
	char *p = line + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	bool help = !strncmp(p, "HELP", 4) && (p[4] == ' ' || p[4] == '\t');
	bool type = !strncmp(p, "TYPE", 4) && (p[4] == ' ' || p[4] == '\t');
	if (!help && !type)
		return 0; /* another comment */
	p += 4;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t nl = name_len(p);
	if (!nl)
		return fail(ps, "%s without a valid metric name",
			    help ? "HELP" : "TYPE");
	char *name = p;
	char *rest = p + nl;
	if (*rest && *rest != ' ' && *rest != '\t')
		return fail(ps, "bad metric name in %s", help ? "HELP" : "TYPE");
	if (*rest)
		*rest++ = 0;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	struct family *f = fam_find(ps, name, nl);
	if (type) {
		enum metrics_type t;
		if (!strcmp(rest, "counter"))
			t = METRICS_COUNTER;
		else if (!strcmp(rest, "gauge"))
			t = METRICS_GAUGE;
		else if (!strcmp(rest, "histogram"))
			t = METRICS_HISTOGRAM;
		else if (!strcmp(rest, "untyped"))
			t = METRICS_UNTYPED;
		else
			return fail(ps, "TYPE %s: unknown type '%s'", name, rest);
		if (f && f->type != (enum metrics_type)-1)
			return fail(ps, "TYPE %s given twice", name);
		if (!f) {
			int rc = fam_add(ps, name, &f);
			if (rc)
				return rc;
		}
		f->type = t;
	} else {
		if (f && f->help)
			return fail(ps, "HELP %s given twice", name);
		if (!f) {
			int rc = fam_add(ps, name, &f);
			if (rc)
				return rc;
			f->type = (enum metrics_type)-1; /* no TYPE yet */
		}
		f->help = true;
	}
	return 0;
}

/* The family a sample called name belongs to, or NULL. */
static struct family *sample_family(struct parser *ps, const char *name,
				    size_t len)
{
	struct family *f = fam_find(ps, name, len);
	if (f && f->type != (enum metrics_type)-1 && f->type != METRICS_HISTOGRAM)
		return f;
	static const char *const sfx[] = {"_bucket", "_sum", "_count"};
	for (size_t i = 0; i < 3; i++) {
		size_t sl = strlen(sfx[i]);
		if (len > sl && !memcmp(name + len - sl, sfx[i], sl)) {
			struct family *h = fam_find(ps, name, len - sl);
			if (h && h->type == METRICS_HISTOGRAM)
				return h;
		}
	}
	return NULL;
}

/* Check the label text at *pp up to its closing brace; *pp then points
 * past the brace, which is replaced by NUL. */
static int parse_labels(struct parser *ps, char **pp)
{
	char *p = *pp;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '}')
			break;
		size_t nl = name_len(p);
		if (!nl)
			return fail(ps, "bad label name");
		p += nl;
		while (*p == ' ')
			p++;
		if (*p != '=')
			return fail(ps, "label without '='");
		p++;
		while (*p == ' ')
			p++;
		if (*p != '"')
			return fail(ps, "label value not quoted");
		p++;
		while (*p && *p != '"') {
			if (*p == '\\') {
				if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
					return fail(ps, "bad escape in a label "
							"value");
				p++;
			}
			p++;
		}
		if (*p != '"')
			return fail(ps, "unterminated label value");
		p++;
		while (*p == ' ')
			p++;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p != '}')
			return fail(ps, "expected ',' or '}' after a label");
	}
	*p = 0;
	*pp = p + 1;
	return 0;
}

static int parse_value(const char *tok, double *v)
{
	if (!strcmp(tok, "+Inf") || !strcmp(tok, "Inf")) {
		*v = INFINITY;
		return 0;
	}
	if (!strcmp(tok, "-Inf")) {
		*v = -INFINITY;
		return 0;
	}
	if (!strcmp(tok, "NaN")) {
		*v = NAN;
		return 0;
	}
	/* strtod also takes "inf", "nan", hex floats: not the format's. */
	for (const char *c = tok; *c; c++)
		if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == 'e' ||
		      *c == 'E' || *c == '+' || *c == '-'))
			return -EINVAL;
	char *end = NULL;
	errno = 0;
	*v = strtod(tok, &end);
	return *tok && end && !*end && errno != ERANGE ? 0 : -EINVAL;
}

static int add_sample(struct metrics_parsed *p, size_t *cap,
		      const struct metrics_sample *s)
{
	if (p->n == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		struct metrics_sample *v = realloc(p->v, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->v = v;
		*cap = c;
	}
	p->v[p->n++] = *s;
	return 0;
}

static int parse_sample(struct parser *ps, struct metrics_parsed *p,
			size_t *cap, char *line)
{
	struct metrics_sample s = {0};
	size_t nl = name_len(line);
	if (!nl)
		return fail(ps, "bad metric name");
	s.name = line;
	char *q = line + nl;
	static char empty[1];
	s.labels = empty;
	if (*q == '{') {
		*q++ = 0;
		s.labels = q;
		int rc = parse_labels(ps, &q);
		if (rc)
			return rc;
		if (*q != ' ' && *q != '\t')
			return fail(ps, "no blank between the labels and the "
					"value");
	} else if (*q == ' ' || *q == '\t') {
		*q++ = 0;
	} else {
		return fail(ps, "bad character after the metric name");
	}
	struct family *f = sample_family(ps, s.name, strlen(s.name));
	if (!f)
		return fail(ps, "sample %s has no TYPE line before it", s.name);
	s.type = f->type;
	while (*q == ' ' || *q == '\t')
		q++;
	char *val = q;
	while (*q && *q != ' ' && *q != '\t')
		q++;
	char *ts = NULL;
	if (*q) {
		*q++ = 0;
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q)
			ts = q;
	}
	if (!*val || parse_value(val, &s.value) != 0)
		return fail(ps, "sample %s: bad value '%s'", s.name, val);
	if (ts) {
		char *end = NULL;
		(void)strtoll(ts, &end, 10);
		if (end == ts || *end)
			return fail(ps, "sample %s: bad timestamp '%s'", s.name,
				    ts);
	}
	return add_sample(p, cap, &s);
}

/* See metrics.h. */
int metrics_parse(const char *text, size_t len, struct metrics_parsed *p,
		  char *err, size_t errcap)
{
	memset(p, 0, sizeof(*p));
	if (err && errcap)
		err[0] = 0;
	p->text = malloc(len + 1);
	if (!p->text)
		return -ENOMEM;
	memcpy(p->text, text, len);
	p->text[len] = 0;
	struct parser ps = {.err = err, .errcap = errcap};
	size_t cap = 0;
	int rc = 0;
	char *line = p->text;
	while (rc == 0 && line && *line) {
		ps.line++;
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		else if (line + strlen(line) != p->text + len)
			rc = fail(&ps, "NUL byte in the text");
		if (rc == 0 && memchr(line, '\r', strlen(line)))
			rc = fail(&ps, "carriage return in the text");
		if (rc == 0 && line[0] == '#')
			rc = parse_comment(&ps, line);
		else if (rc == 0 && line[0])
			rc = parse_sample(&ps, p, &cap, line);
		line = nl ? nl + 1 : NULL;
	}
	if (rc == 0 && len && text[len - 1] != '\n') {
		ps.line++;
		rc = fail(&ps, "the text does not end with a newline");
	}
	for (size_t i = 0; rc == 0 && i < ps.nfam; i++)
		if (ps.fam[i].type == (enum metrics_type)-1)
			rc = fail(&ps, "HELP %s without a TYPE line",
				  ps.fam[i].name);
	free(ps.fam);
	return rc;
}

void metrics_parsed_free(struct metrics_parsed *p)
{
	free(p->text);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

/* See metrics.h. */
const struct metrics_sample *metrics_find(const struct metrics_parsed *p,
					  const char *name, const char *labels)
{
	const char *lb = labels ? labels : "";
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->v[i].name, name) && !strcmp(p->v[i].labels, lb))
			return &p->v[i];
	return NULL;
}

/* See metrics.h. */
int metrics_label_value(const char *labels, const char *key, char *buf,
			size_t cap)
{
	const char *p = labels;
	size_t kl = strlen(key);
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t nl = name_len(p);
		if (!nl)
			return -ENOENT;
		bool match = nl == kl && !memcmp(p, key, kl);
		p += nl;
		while (*p == ' ' || *p == '=')
			p++;
		if (*p != '"')
			return -ENOENT;
		p++;
		size_t w = 0;
		while (*p && *p != '"') {
			char c = *p;
			if (c == '\\' && p[1]) {
				p++;
				c = *p == 'n' ? '\n' : *p;
			}
			if (match) {
				if (w + 1 >= cap)
					return -ENOSPC;
				buf[w++] = c;
			}
			p++;
		}
		if (*p == '"')
			p++;
		if (match) {
			buf[w] = 0;
			return 0;
		}
	}
	return -ENOENT;
}

/* See metrics.h. */
int metrics_hist_from(const struct metrics_parsed *p, const char *name,
		      const char *base, struct metrics_hist_snap *s)
{
	char n[200], lb[512];
	const char *b = base ? base : "";
	memset(s, 0, sizeof(*s));
	snprintf(n, sizeof(n), "%s_bucket", name);
	uint64_t prev = 0;
	for (int i = 0; i <= METRICS_BUCKETS; i++) {
		snprintf(lb, sizeof(lb), "%s%sle=\"%s\"", b, *b ? "," : "",
			 metrics_bound_text(i));
		const struct metrics_sample *x = metrics_find(p, n, lb);
		if (!x || !(x->value >= 0))
			return -ENOENT;
		uint64_t cum = (uint64_t)x->value;
		s->bucket[i] = cum > prev ? cum - prev : 0;
		if (cum > prev)
			prev = cum;
	}
	s->count = prev;
	snprintf(n, sizeof(n), "%s_sum", name);
	const struct metrics_sample *x = metrics_find(p, n, b);
	if (!x)
		return -ENOENT;
	s->sum_s = x->value;
	return 0;
}
