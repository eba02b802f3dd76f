/*
 * admin.h — the node's local admin socket.
 *
 * A running node serves requests from local tools (`sandfs status`, member
 * changes...) on ipc://DATADIR/admin.sock: an nng REP socket whose file is
 * created with mode 0600 (only its owner may talk to it). The bytes of a
 * request and of its reply are the caller's protocol; this module only
 * carries them.
 *
 * Requests are served one at a time on the admin thread. A socket file left
 * behind by a crashed process is detected (nobody accepts a connection on
 * it) and replaced; a live server on the same path makes admin_start fail
 * with -EADDRINUSE.
 *
 * Known weakness (nng 1.5.2, nng issue #1518): a client that connects to
 * the socket and closes before the nng handshake (a bare connect(), e.g.
 * `socat`) wedges the listener until the node restarts. admin_start() and
 * admin_call() never do that; other tools must speak nng REQ.
 */
#ifndef SANDFS_ADMIN_H
#define SANDFS_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct admin;

/* Serve one request: req/len is borrowed for the call. On success return 0
 * with *reply a malloc()ed buffer of *rlen bytes (the admin module frees
 * it; NULL with *rlen 0 for an empty reply). A negative return sends an
 * empty reply. Called on the admin thread. */
typedef int (*admin_handler_fn)(void *ctx, const uint8_t *req, size_t len,
				uint8_t **reply, size_t *rlen);

/* Listen on the socket file `path` (at most 100 bytes) and serve requests
 * with fn(ctx, ...). Returns 0 and *out, or a negative errno with a reason
 * in err: -EADDRINUSE (a live server owns path), -EEXIST (path exists and
 * is not a socket), -ENAMETOOLONG, -ENOMEM, ... */
int admin_start(const char *path, admin_handler_fn fn, void *ctx,
		struct admin **out, char *err, size_t errcap);

/* Stop serving (waits for a request in progress), remove the socket file,
 * free. */
void admin_stop(struct admin *a);

/* The longest reply admin_call accepts. */
#define ADMIN_REPLY_MAX ((size_t)64 << 20)

/* Send req to the admin socket at `path` and wait up to timeout_ms (0:
 * 5000) for the reply (at most ADMIN_REPLY_MAX bytes). On success returns 0 and *reply is a malloc()ed
 * copy of *rlen bytes (caller frees; NULL when empty). Errors:
 * -ECONNREFUSED / -ENOENT (no node serving that path), -ETIMEDOUT,
 * -ENAMETOOLONG, -ENOMEM, -EIO. */
int admin_call(const char *path, const void *req, size_t len,
	       uint8_t **reply, size_t *rlen, uint32_t timeout_ms);

#endif
