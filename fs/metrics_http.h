/*
 * metrics_http.h — the `--metrics ADDR` endpoint: a tiny HTTP/1.x server
 * on one thread of its own that answers GET (and HEAD) /metrics with the
 * text a callback builds, for Prometheus to scrape.
 *
 * One connection at a time, each closed after its answer (Connection:
 * close); a client gets 2 s to send its request and 5 s to take the
 * answer, so a stuck client delays the next scrape by at most that. Other
 * paths get 404, other methods 405, garbage 400. Nothing but the request
 * line is interpreted (headers are read and ignored).
 */
#ifndef SANDFS_METRICS_HTTP_H
#define SANDFS_METRICS_HTTP_H

#include <stddef.h>

struct metrics_http;

/* Builds the body of one answer: a malloc'ed text (the server frees it)
 * with its length in *len, or NULL (the client gets 500). Called on the
 * server's thread. */
typedef char *(*metrics_http_fn)(void *ctx, size_t *len);

/* Check an address: "HOST:PORT" (HOST a name or IPv4 address), "[IPv6]:PORT"
 * or ":PORT" (every interface); PORT 0..65535 (0: any free port). Writes
 * the host ("" for every interface) and port. 0, or -EINVAL with a reason
 * in err. */
int metrics_http_parse_addr(const char *addr, char *host, size_t hostcap,
			    unsigned *port, char *err, size_t errcap);

/* Listen on addr and start the thread. 0, or a negative errno with a
 * reason in err (bad address, address in use, no permission...). */
int metrics_http_start(const char *addr, metrics_http_fn fn, void *ctx,
		       struct metrics_http **out, char *err, size_t errcap);

/* The port listened on (after port 0: the one the kernel chose). */
unsigned metrics_http_port(const struct metrics_http *h);

/* Stop the thread (an answer in progress is finished or cut off first),
 * close the socket, free h. NULL is fine. fn is not called after this
 * returns. */
void metrics_http_stop(struct metrics_http *h);

#endif
