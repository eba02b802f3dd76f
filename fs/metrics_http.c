/*
 * metrics_http.c — GET /metrics on a socket thread of its own (see
 * metrics_http.h).
 */
#include "fs/metrics_http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "transport/log.h"

#define REQ_MAX 8192
#define RECV_TIMEOUT_MS 2000
#define SEND_TIMEOUT_MS 5000

struct metrics_http {
	int fd;		/* listening socket */
	int wake[2];	/* a byte on wake[1] stops the thread */
	unsigned port;
	metrics_http_fn fn;
	void *ctx;
	pthread_t thread;
};

/* See metrics_http.h. */
int metrics_http_parse_addr(const char *addr, char *host, size_t hostcap,
			    unsigned *port, char *err, size_t errcap)
{
	const char *a = addr ? addr : "";
	const char *colon = strrchr(a, ':');
	const char *h = a, *he = colon;
	bool ok = colon != NULL;
	if (ok && a[0] == '[') {
		ok = colon > a + 1 && colon[-1] == ']';
		h = a + 1;
		he = colon - 1;
		for (const char *p = h; ok && p < he; p++)
			ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
			     (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.';
		ok = ok && he > h;
	} else {
		for (const char *p = h; ok && p < he; p++)
			ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-' ||
			     *p == '_';
	}
	unsigned long v = 0;
	if (ok) {
		char *end = NULL;
		ok = colon[1] >= '0' && colon[1] <= '9';
		v = strtoul(colon + 1, &end, 10);
		ok = ok && !*end && v <= 65535;
	}
	if (ok && (size_t)(he - h) >= hostcap)
		ok = false;
	if (!ok) {
		snprintf(err, errcap,
			 "bad --metrics address '%s' (want HOST:PORT, "
			 "[IPv6]:PORT or :PORT, e.g. 127.0.0.1:9567)",
			 a);
		return -EINVAL;
	}
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = 0;
	*port = (unsigned)v;
	return 0;
}

/* Send all of buf (the socket has a send timeout). */
static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

static void answer(int fd, int code, const char *reason, const char *extra,
		   const char *body, size_t blen, bool head)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\n"
			 "Content-Type: %s\r\n"
			 "Content-Length: %zu\r\n"
			 "%s"
			 "Connection: close\r\n\r\n",
			 code, reason,
			 code == 200 && extra == NULL
				 ? "text/plain; version=0.0.4; charset=utf-8"
				 : "text/plain; charset=utf-8",
			 blen, extra ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return;
	if (send_all(fd, hdr, (size_t)n) == 0 && !head && blen)
		send_all(fd, body, blen);
}

/* Read the request head (up to the blank line) within the receive timeout
 * and answer it. */
static void serve_conn(struct metrics_http *h, int fd)
{
	struct timeval rt = {.tv_sec = RECV_TIMEOUT_MS / 1000,
			     .tv_usec = (RECV_TIMEOUT_MS % 1000) * 1000};
	struct timeval st = {.tv_sec = SEND_TIMEOUT_MS / 1000,
			     .tv_usec = (SEND_TIMEOUT_MS % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st));
	char req[REQ_MAX + 1];
	size_t len = 0;
	while (len < REQ_MAX) {
		ssize_t r = recv(fd, req + len, REQ_MAX - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		req[len] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[len] = 0;
	char *eol = strpbrk(req, "\r\n");
	if (!len || !eol) {
		if (len)
			answer(fd, 400, "Bad Request", NULL,
			       "bad request\n", 12, false);
		return;
	}
	*eol = 0;
	char method[16], target[1024], version[16];
	if (sscanf(req, "%15s %1023s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		answer(fd, 400, "Bad Request", NULL, "bad request\n", 12, false);
		return;
	}
	bool head = !strcmp(method, "HEAD");
	if (!head && strcmp(method, "GET")) {
		answer(fd, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		       "only GET and HEAD\n", 18, false);
		return;
	}
	char *q = strchr(target, '?');
	if (q)
		*q = 0;
	if (!strcmp(target, "/")) {
		static const char hint[] = "sandfs: the metrics are at /metrics\n";
		answer(fd, 200, "OK", "", hint, sizeof(hint) - 1, head);
		return;
	}
	if (strcmp(target, "/metrics")) {
		answer(fd, 404, "Not Found", NULL, "not found; try /metrics\n",
		       24, head);
		return;
	}
	size_t blen = 0;
	char *body = h->fn(h->ctx, &blen);
	if (!body) {
		answer(fd, 500, "Internal Server Error", NULL,
		       "cannot collect the metrics\n", 27, head);
		return;
	}
	answer(fd, 200, "OK", NULL, body, blen, head);
	free(body);
}

static void *http_main(void *arg)
{
	struct metrics_http *h = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = h->fd, .events = POLLIN},
				      {.fd = h->wake[0], .events = POLLIN}};
		int n = poll(p, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
				usleep(100000); /* do not spin while it lasts */
			continue;
		}
		serve_conn(h, c);
		shutdown(c, SHUT_WR);
		close(c);
	}
	return NULL;
}

/* See metrics_http.h. */
int metrics_http_start(const char *addr, metrics_http_fn fn, void *ctx,
		       struct metrics_http **out, char *err, size_t errcap)
{
	char host[256];
	unsigned port;
	int rc = metrics_http_parse_addr(addr, host, sizeof(host), &port, err,
					 errcap);
	if (rc)
		return rc;
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
	if (g != 0) {
		snprintf(err, errcap, "--metrics %s: cannot resolve '%s': %s",
			 addr, host, gai_strerror(g));
		return -EINVAL;
	}
	int fd = -1;
	rc = -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
			    a->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
		    listen(fd, 16) == 0) {
			rc = 0;
			break;
		}
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errcap, "--metrics %s: cannot listen: %s%s", addr,
			 strerror(-rc),
			 rc == -EADDRINUSE ? " (another process has that port; "
					     "pick another)"
					   : "");
		return rc;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	unsigned bound = port;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	struct metrics_http *h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->port = bound;
	h->fn = fn;
	h->ctx = ctx;
	if (pipe2(h->wake, O_CLOEXEC) != 0) {
		rc = -errno;
		close(fd);
		free(h);
		snprintf(err, errcap, "--metrics: pipe: %s", strerror(-rc));
		return rc;
	}
	rc = -pthread_create(&h->thread, NULL, http_main, h);
	if (rc) {
		close(h->wake[0]);
		close(h->wake[1]);
		close(fd);
		free(h);
		snprintf(err, errcap, "--metrics: cannot start a thread: %s",
			 strerror(-rc));
		return rc;
	}
	LOG(INFO, "metrics on http://%s%s%s:%u/metrics",
	    strchr(host, ':') ? "[" : "", host[0] ? host : "0.0.0.0",
	    strchr(host, ':') ? "]" : "", bound);
	*out = h;
	return 0;
}

unsigned metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

/* See metrics_http.h. */
void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	ssize_t w;
	do
		w = write(h->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(h->thread, NULL);
	close(h->wake[0]);
	close(h->wake[1]);
	close(h->fd);
	free(h);
}
