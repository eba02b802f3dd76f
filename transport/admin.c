/*
 * admin.c — local admin socket: nng REP server and REQ client over ipc://.
 */
#include "transport/admin.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "transport/log.h"

#define ADMIN_PATH_MAX 100 /* sun_path is 108 bytes; keep a margin */

struct admin {
	char *path;
	nng_socket sock;
	pthread_t thread;
	admin_handler_fn fn;
	void *ctx;
};

/* nng error -> negative errno. */
static int admin_errno(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_ETIMEDOUT:
		return -ETIMEDOUT;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	case NNG_ENOENT:
		return -ENOENT;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_EADDRINVAL:
	case NNG_EINVAL:
		return -EINVAL;
	case NNG_EPERM:
		return -EPERM;
	case NNG_ECLOSED:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

/* "ipc://" + path into url; -ENAMETOOLONG if the path cannot be a socket
 * address. */
static int make_url(const char *path, char *url, size_t cap)
{
	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) > ADMIN_PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(url, cap, "ipc://%s", path);
	return 0;
}

/* If path holds a socket nobody listens on (left by a crashed process),
 * remove it. Returns 0 (path free now), -EADDRINUSE (live server),
 * -EEXIST (not a socket: we do not delete other files) or -errno.
 *
 * The probe is a full nng dial, not a bare connect(): with nng 1.5.2 a
 * connection that closes before the SP handshake wedges the ipc listener
 * of the live process for good (nng issue #1518), and nng_listen()'s own
 * liveness check is such a bare connect — so we never let nng_listen()
 * near a live socket. */
static int clear_stale(const char *path, const char *url)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;

	nng_socket probe;
	int rv = nng_req0_open(&probe);
	if (rv)
		return admin_errno(rv);
	rv = nng_dial(probe, url, NULL, 0);
	nng_close(probe);
	if (rv == 0)
		return -EADDRINUSE;
	if (rv != NNG_ECONNREFUSED)
		return admin_errno(rv);
	if (unlink(path) != 0 && errno != ENOENT)
		return -errno;
	LOG(INFO, "admin: removed stale socket %s (its process is gone)",
	    path);
	return 0;
}

/* Serve requests until the socket closes. */
static void *admin_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-admin");
	struct admin *a = arg;
	for (;;) {
		nng_msg *msg;
		int rv = nng_recvmsg(a->sock, &msg, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv) {
			LOG(WARN, "admin: receive failed: %s", nng_strerror(rv));
			continue;
		}
		uint8_t *reply = NULL;
		size_t rlen = 0;
		int rc = a->fn(a->ctx, nng_msg_body(msg), nng_msg_len(msg),
			       &reply, &rlen);
		if (rc < 0) {
			LOG(DEBUG, "admin: handler failed: %s", strerror(-rc));
			free(reply);
			reply = NULL;
			rlen = 0;
		}
		/* Reuse the request message: it keeps the REP routing
		 * header. */
		nng_msg_clear(msg);
		if (rlen && nng_msg_append(msg, reply, rlen) != 0) {
			LOG(WARN, "admin: out of memory for a %zu-byte reply",
			    rlen);
			nng_msg_clear(msg);
		}
		free(reply);
		rv = nng_sendmsg(a->sock, msg, 0);
		if (rv) {
			nng_msg_free(msg);
			if (rv == NNG_ECLOSED)
				break;
			LOG(DEBUG, "admin: reply not sent: %s",
			    nng_strerror(rv));
		}
	}
	return NULL;
}

/* Start the admin server. */
int admin_start(const char *path, admin_handler_fn fn, void *ctx,
		struct admin **out, char *err, size_t errcap)
{
	char url[ADMIN_PATH_MAX + 16];
	int rc;

	if (err && errcap)
		err[0] = '\0';
	if (!fn || !out)
		return -EINVAL;
	rc = make_url(path, url, sizeof url);
	if (rc) {
		if (err)
			snprintf(err, errcap,
				 "admin socket path %s: %s (at most %d bytes)",
				 path ? path : "(null)", strerror(-rc),
				 ADMIN_PATH_MAX);
		return rc;
	}
	rc = clear_stale(path, url);
	if (rc) {
		if (err)
			snprintf(err, errcap, "admin socket %s: %s", path,
				 rc == -EADDRINUSE
					 ? "another process is serving it (is "
					   "this node already running?)"
				 : rc == -EEXIST
					 ? "exists and is not a socket; "
					   "remove it"
					 : strerror(-rc));
		return rc;
	}

	struct admin *a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	a->fn = fn;
	a->ctx = ctx;
	a->path = strdup(path);
	if (!a->path) {
		free(a);
		return -ENOMEM;
	}
	int rv = nng_rep0_open(&a->sock);
	nng_listener lst;
	if (rv == 0)
		rv = nng_listener_create(&lst, a->sock, url);
	if (rv == 0)
		rv = nng_listener_set_int(lst, NNG_OPT_IPC_PERMISSIONS, 0600);
	if (rv == 0)
		rv = nng_listener_start(lst, 0);
	if (rv) {
		if (err)
			snprintf(err, errcap, "cannot listen on %s: %s", url,
				 nng_strerror(rv));
		nng_close(a->sock);
		free(a->path);
		free(a);
		return admin_errno(rv);
	}
	if (pthread_create(&a->thread, NULL, admin_main, a) != 0) {
		if (err)
			snprintf(err, errcap, "admin: cannot start thread");
		nng_close(a->sock);
		unlink(path);
		free(a->path);
		free(a);
		return -EAGAIN;
	}
	*out = a;
	return 0;
}

/* Stop the server and remove its socket file. */
void admin_stop(struct admin *a)
{
	if (!a)
		return;
	nng_close(a->sock);
	pthread_join(a->thread, NULL);
	struct stat st;
	if (lstat(a->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(a->path);
	free(a->path);
	free(a);
}

/* One request/reply round trip on a fresh REQ socket. */
int admin_call(const char *path, const void *req, size_t len,
	       uint8_t **reply, size_t *rlen, uint32_t timeout_ms)
{
	char url[ADMIN_PATH_MAX + 16];
	nng_socket s;
	nng_msg *msg = NULL;

	if (!reply || !rlen || (len && !req))
		return -EINVAL;
	*reply = NULL;
	*rlen = 0;
	int rc = make_url(path, url, sizeof url);
	if (rc)
		return rc;
	if (!timeout_ms)
		timeout_ms = 5000;

	int rv = nng_req0_open(&s);
	if (rv)
		return admin_errno(rv);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
	/* Replies can be long (an fsck report). */
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, ADMIN_REPLY_MAX);
	/* Never resend: an admin request may not be idempotent. */
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME,
			  (nng_duration)timeout_ms + 1000);
	rv = nng_dial(s, url, NULL, 0); /* synchronous: fails if nobody serves */
	if (rv == 0)
		rv = nng_msg_alloc(&msg, len);
	if (rv == 0) {
		if (len)
			memcpy(nng_msg_body(msg), req, len);
		rv = nng_sendmsg(s, msg, 0);
		if (rv)
			nng_msg_free(msg);
		msg = NULL;
	}
	if (rv == 0)
		rv = nng_recvmsg(s, &msg, 0);
	if (rv == 0) {
		size_t n = nng_msg_len(msg);
		if (n) {
			*reply = malloc(n);
			if (!*reply) {
				rv = NNG_ENOMEM;
			} else {
				memcpy(*reply, nng_msg_body(msg), n);
				*rlen = n;
			}
		}
		nng_msg_free(msg);
	}
	nng_close(s);
	return admin_errno(rv);
}
