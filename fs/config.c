/*
 * config.c — parse the configuration file (see config.h for the format).
 *
 * The parser works on one line at a time and stops at the first error,
 * which names the file, the line and what is wrong with it. Values are
 * checked as the matching command-line flags would be (node ids, member
 * addresses through node_parse_addr, log levels...), so a file that
 * parses never fails later for its syntax.
 */
#include "fs/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "fs/node.h"
#include "transport/log.h"

enum vtype { V_ID, V_MEMBER, V_PATH, V_HEX, V_MS, V_LEVEL, V_STR };

struct keydef {
	const char *name;
	enum config_key key;
	enum vtype type;
	size_t off; /* offset of the field in struct config */
	size_t cap; /* its size, for strings */
};

#define STRF(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
static const struct keydef keys[] = {
	{"id", CONFIG_ID, V_ID, offsetof(struct config, id), 0},
	{"member", CONFIG_MEMBER, V_MEMBER, 0, 0},
	{"data", CONFIG_DATA, V_PATH, STRF(data)},
	{"cluster-id", CONFIG_CLUSTER_ID, V_HEX,
	 offsetof(struct config, cluster_id), 0},
	{"secret-file", CONFIG_SECRET_FILE, V_PATH, STRF(secret_file)},
	{"tls-cert", CONFIG_TLS_CERT, V_PATH, STRF(tls_cert)},
	{"tls-key", CONFIG_TLS_KEY, V_PATH, STRF(tls_key)},
	{"tls-ca", CONFIG_TLS_CA, V_PATH, STRF(tls_ca)},
	{"timeout-ms", CONFIG_TIMEOUT_MS, V_MS,
	 offsetof(struct config, timeout_ms), 0},
	{"log", CONFIG_LOG, V_PATH, STRF(log)},
	{"log-level", CONFIG_LOG_LEVEL, V_LEVEL,
	 offsetof(struct config, log_level), 0},
	{"mount-options", CONFIG_MOUNT_OPTIONS, V_STR, STRF(mount_options)},
	{"mountpoint", CONFIG_MOUNTPOINT, V_PATH, STRF(mountpoint)},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* "FILE:LINE: " + message into err; returns -EINVAL. */
static int fail(char *err, size_t errcap, const char *file, int line,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errcap, const char *file, int line,
		const char *fmt, ...)
{
	int w = line ? snprintf(err, errcap, "%s:%d: ", file, line)
		     : snprintf(err, errcap, "%s: ", file);
	if (w >= 0 && (size_t)w < errcap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err + w, errcap - (size_t)w, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The key definition for name (already lower-cased, '_' mapped to '-'). */
static const struct keydef *find_key(const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

/* Store a path, relative ones made relative to the file's directory. */
static int put_path(char *dst, size_t cap, const char *file, const char *v)
{
	int w;
	const char *slash = strrchr(file, '/');
	if (v[0] == '/' || !slash)
		w = snprintf(dst, cap, "%s", v);
	else
		w = snprintf(dst, cap, "%.*s/%s", (int)(slash - file), file, v);
	return w < 0 || (size_t)w >= cap ? -ENAMETOOLONG : 0;
}

/* One "member = ID=HOST:PORT" line. */
static int put_member(struct config *c, const char *v, const char *file,
		      int line, int *member_line, char *err, size_t errcap)
{
	const char *eq = strchr(v, '=');
	char *end = NULL;
	unsigned long long id = eq ? strtoull(v, &end, 10) : 0;
	if (!eq || end != eq || v[0] < '0' || v[0] > '9' || id == 0)
		return fail(err, errcap, file, line,
			    "member '%s': want ID=HOST:PORT with ID a number "
			    ">= 1 (e.g. member = 1=10.0.0.1:7000)",
			    v);
	char addr[RAFT_ADDR_MAX], why[256];
	if (node_parse_addr(eq + 1, addr, sizeof(addr), why, sizeof(why)))
		return fail(err, errcap, file, line, "member %llu: %s", id,
			    why);
	for (size_t i = 0; i < c->n_peers; i++) {
		if (c->peers[i].id == id)
			return fail(err, errcap, file, line,
				    "member %llu given twice (first on line "
				    "%d)",
				    id, member_line[i]);
		if (!strcmp(c->peers[i].addr, addr))
			return fail(err, errcap, file, line,
				    "member %llu: address %s is already "
				    "member %llu's (line %d)",
				    id, eq + 1,
				    (unsigned long long)c->peers[i].id,
				    member_line[i]);
	}
	if (c->n_peers >= RAFT_MAX_NODES)
		return fail(err, errcap, file, line,
			    "too many members (at most %d)", RAFT_MAX_NODES);
	member_line[c->n_peers] = line;
	c->peers[c->n_peers].id = id;
	snprintf(c->peers[c->n_peers].addr, RAFT_ADDR_MAX, "%s", addr);
	c->n_peers++;
	return 0;
}

/* Parse value v of key k from line `line` into c. */
static int put_value(struct config *c, const struct keydef *k, const char *v,
		     const char *file, int line, int *member_line, char *err,
		     size_t errcap)
{
	char *end = NULL;
	char *base = (char *)c;
	switch (k->type) {
	case V_MEMBER:
		return put_member(c, v, file, line, member_line, err, errcap);
	case V_ID: {
		unsigned long long id = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end || id == 0)
			return fail(err, errcap, file, line,
				    "id wants a number >= 1, got '%s'", v);
		c->id = id;
		return 0;
	}
	case V_HEX: {
		unsigned long long x = strtoull(v, &end, 16);
		if (*end || !x || v[0] == '-' || v[0] == '+')
			return fail(err, errcap, file, line,
				    "%s wants a nonzero hex number (as `sandfs "
				    "status` prints it), got '%s'",
				    k->name, v);
		c->cluster_id = x;
		return 0;
	}
	case V_MS: {
		unsigned long long ms = strtoull(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end || ms < 100 ||
		    ms > 3600000)
			return fail(err, errcap, file, line,
				    "%s wants milliseconds, 100..3600000, got "
				    "'%s'",
				    k->name, v);
		c->timeout_ms = (uint32_t)ms;
		return 0;
	}
	case V_LEVEL: {
		enum log_level lvl;
		if (log_parse_level(v, &lvl) != 0)
			return fail(err, errcap, file, line,
				    "%s wants error, warn, info or debug, got "
				    "'%s'",
				    k->name, v);
		c->log_level = (int)lvl;
		return 0;
	}
	case V_PATH:
		if (put_path(base + k->off, k->cap, file, v) != 0)
			return fail(err, errcap, file, line,
				    "%s: path too long", k->name);
		return 0;
	case V_STR: {
		int w = snprintf(base + k->off, k->cap, "%s", v);
		if (w < 0 || (size_t)w >= k->cap)
			return fail(err, errcap, file, line,
				    "%s: value too long (at most %zu bytes)",
				    k->name, k->cap - 1);
		return 0;
	}
	}
	return -EINVAL;
}

/* See config.h. */
int config_parse(const char *text, size_t len, const char *file,
		 struct config *c, char *err, size_t errcap)
{
	memset(c, 0, sizeof(*c));
	c->log_level = -1;
	snprintf(c->file, sizeof(c->file), "%s", file);
	int member_line[RAFT_MAX_NODES] = {0};
	char buf[CONFIG_PATH_MAX + 256];
	size_t pos = 0;
	int line = 0;
	while (pos < len) {
		line++;
		size_t eol = pos;
		while (eol < len && text[eol] != '\n')
			eol++;
		size_t n = eol - pos;
		const char *p = text + pos;
		pos = eol + 1;
		if (n >= sizeof(buf))
			return fail(err, errcap, file, line,
				    "line too long (at most %zu bytes)",
				    sizeof(buf) - 1);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 && p[i] != '\t' &&
			    p[i] != '\r')
				return fail(err, errcap, file, line,
					    "control character (byte 0x%02x) "
					    "in the line",
					    (unsigned char)p[i]);
		memcpy(buf, p, n);
		buf[n] = 0;
		/* Comments: a '#' first on the line or after a blank. */
		for (char *h = buf; *h; h++)
			if (*h == '#' && (h == buf || is_blank(h[-1]))) {
				*h = 0;
				break;
			}
		char *s = buf;
		while (is_blank(*s))
			s++;
		char *e = s + strlen(s);
		while (e > s && is_blank(e[-1]))
			*--e = 0;
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq)
			return fail(err, errcap, file, line,
				    "want 'key = value', got '%s'", s);
		char *ke = eq;
		while (ke > s && is_blank(ke[-1]))
			ke--;
		*ke = 0;
		char *v = eq + 1;
		while (is_blank(*v))
			v++;
		if (!*s)
			return fail(err, errcap, file, line,
				    "no key before '='");
		for (char *q = s; *q; q++) {
			if (*q == '_')
				*q = '-';
			else if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		}
		const struct keydef *k = find_key(s);
		if (!k)
			return fail(err, errcap, file, line,
				    "unknown key '%s' (known: id, member, data, "
				    "cluster-id, secret-file, tls-cert, "
				    "tls-key, tls-ca, timeout-ms, log, "
				    "log-level, mount-options, mountpoint)",
				    s);
		if (!*v)
			return fail(err, errcap, file, line,
				    "%s has no value", k->name);
		if (k->type != V_MEMBER && c->line[k->key])
			return fail(err, errcap, file, line,
				    "%s given twice (first on line %d)",
				    k->name, c->line[k->key]);
		int rc = put_value(c, k, v, file, line, member_line, err,
				   errcap);
		if (rc)
			return rc;
		if (!c->line[k->key])
			c->line[k->key] = line;
	}
	/* Rules across lines. */
	int tls = !!c->line[CONFIG_TLS_CERT] + !!c->line[CONFIG_TLS_KEY] +
		  !!c->line[CONFIG_TLS_CA];
	if (tls && tls < 3) {
		int at = c->line[CONFIG_TLS_CERT]   ? c->line[CONFIG_TLS_CERT]
			 : c->line[CONFIG_TLS_KEY] ? c->line[CONFIG_TLS_KEY]
						   : c->line[CONFIG_TLS_CA];
		return fail(err, errcap, file, at,
			    "TLS needs all of tls-cert, tls-key and tls-ca");
	}
	if (c->id && c->n_peers) {
		int found = 0;
		for (size_t i = 0; i < c->n_peers; i++)
			found |= c->peers[i].id == c->id;
		if (!found)
			return fail(err, errcap, file, c->line[CONFIG_ID],
				    "id %llu is not one of the members",
				    (unsigned long long)c->id);
	}
	return 0;
}

/* See config.h. */
int config_load(const char *path, struct config *c, char *err, size_t errcap)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(err, errcap, "cannot read %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return fail(err, errcap, path, 0, "is a directory");
	}
	char *text = malloc(CONFIG_FILE_MAX + 1);
	if (!text) {
		fclose(f);
		snprintf(err, errcap, "%s: out of memory", path);
		return -ENOMEM;
	}
	size_t len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	int rerr = ferror(f);
	fclose(f);
	int rc;
	if (rerr) {
		snprintf(err, errcap, "cannot read %s: read error", path);
		rc = -EIO;
	} else if (len > CONFIG_FILE_MAX) {
		rc = fail(err, errcap, path, 0, "too big (more than %u bytes)",
			  CONFIG_FILE_MAX);
	} else {
		rc = config_parse(text, len, path, c, err, errcap);
	}
	free(text);
	return rc;
}

/* See config.h. */
int config_expand(const char *tmpl, raft_id id, char *out, size_t cap,
		  char *err, size_t errcap)
{
	size_t o = 0;
	for (const char *p = tmpl; *p; p++) {
		char num[24];
		const char *put = NULL;
		size_t n = 1;
		if (*p != '%') {
			put = p;
		} else if (p[1] == '%') {
			put = p++;
		} else if (p[1] == 'i') {
			if (!id) {
				snprintf(err, errcap,
					 "'%s' holds %%i but the node id is "
					 "not known (give --id)",
					 tmpl);
				return -EINVAL;
			}
			n = (size_t)snprintf(num, sizeof(num), "%llu",
					     (unsigned long long)id);
			put = num;
			p++;
		} else {
			snprintf(err, errcap,
				 "'%s': '%%' must be followed by i (the node "
				 "id) or %% (a '%%')",
				 tmpl);
			return -EINVAL;
		}
		if (o + n >= cap) {
			snprintf(err, errcap, "'%s': expanded path too long",
				 tmpl);
			return -EINVAL;
		}
		memcpy(out + o, put, n);
		o += n;
	}
	if (cap)
		out[o] = 0;
	return 0;
}

/* The host part of "tcp://HOST:PORT" (brackets of IPv6 removed). */
static int addr_host(const char *addr, char *host, size_t cap)
{
	const char *a = strstr(addr, "://");
	a = a ? a + 3 : addr;
	const char *colon = strrchr(a, ':');
	if (!colon)
		return -EINVAL;
	if (a[0] == '[' && colon > a + 1 && colon[-1] == ']') {
		a++;
		colon--;
	}
	size_t n = (size_t)(colon - a);
	if (n == 0 || n >= cap)
		return -EINVAL;
	memcpy(host, a, n);
	host[n] = 0;
	return 0;
}

/* Does host resolve to one of local? */
static int host_is_local(const char *host, const char *const *local,
			 size_t n_local)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	int hit = 0;
	for (struct addrinfo *ai = res; ai && !hit; ai = ai->ai_next) {
		char txt[INET6_ADDRSTRLEN];
		const void *src =
			ai->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)ai->ai_addr)
					  ->sin_addr
			: ai->ai_family == AF_INET6
				? (const void *)&((struct sockaddr_in6 *)
							  ai->ai_addr)
					  ->sin6_addr
				: NULL;
		if (!src || !inet_ntop(ai->ai_family, src, txt, sizeof(txt)))
			continue;
		for (size_t i = 0; i < n_local && !hit; i++)
			hit = !strcmp(txt, local[i]);
	}
	freeaddrinfo(res);
	return hit;
}

/* See config.h. */
int config_match_self(const struct repl_peer *peers, size_t n,
		      const char *const *local, size_t n_local, raft_id *id,
		      char *err, size_t errcap)
{
	raft_id found = 0;
	char list[256] = "";
	size_t ll = 0;
	int hits = 0;
	for (size_t i = 0; i < n; i++) {
		char host[RAFT_ADDR_MAX];
		if (addr_host(peers[i].addr, host, sizeof(host)) != 0 ||
		    !host_is_local(host, local, n_local))
			continue;
		hits++;
		found = peers[i].id;
		int w = snprintf(list + ll, sizeof(list) - ll, "%s%llu",
				 ll ? ", " : "", (unsigned long long)found);
		if (w > 0 && ll + (size_t)w < sizeof(list))
			ll += (size_t)w;
	}
	if (hits == 1) {
		*id = found;
		return 0;
	}
	if (hits == 0) {
		snprintf(err, errcap,
			 "no member's address is one of this machine's; give "
			 "--id (or id = N in the configuration file)");
		return -ENOENT;
	}
	snprintf(err, errcap,
		 "members %s all have addresses of this machine; give --id "
		 "(or id = N in the configuration file)",
		 list);
	return -EEXIST;
}

/* See config.h. */
int config_find_self(const struct repl_peer *peers, size_t n, raft_id *id,
		     char *err, size_t errcap)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) != 0) {
		int e = errno;
		snprintf(err, errcap,
			 "cannot list this machine's addresses (%s); give "
			 "--id",
			 strerror(e));
		return -e;
	}
	char txt[64][INET6_ADDRSTRLEN];
	const char *local[64];
	size_t nl = 0;
	for (struct ifaddrs *p = ifa; p && nl < 64; p = p->ifa_next) {
		if (!p->ifa_addr)
			continue;
		int fam = p->ifa_addr->sa_family;
		const void *src =
			fam == AF_INET
				? (const void *)&((struct sockaddr_in *)p->ifa_addr)
					  ->sin_addr
			: fam == AF_INET6
				? (const void *)&((struct sockaddr_in6 *)
							  p->ifa_addr)
					  ->sin6_addr
				: NULL;
		if (src && inet_ntop(fam, src, txt[nl], sizeof(txt[nl]))) {
			local[nl] = txt[nl];
			nl++;
		}
	}
	freeifaddrs(ifa);
	return config_match_self(peers, n, local, nl, id, err, errcap);
}
