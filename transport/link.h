/*
 * link.h — frames between nodes over nng, never blocking the caller.
 *
 * Each node listens on ONE address (tcp://HOST:PORT) with an nng PULL
 * socket that receives frames from every peer. For each peer the link
 * keeps a PUSH socket dialing that peer's address; nng reconnects with
 * exponential back-off (reconnect_min_ms .. reconnect_max_ms) on its own.
 * Each peer socket has its own bounded send queue (queue_max frames): a
 * send to a peer whose queue is full is dropped and counted (the newest
 * frame is the one dropped), so a slow or dead peer never blocks the caller
 * nor delays other peers. Raft tolerates the loss.
 *
 * Every frame is a wire frame (wire.h) carrying our node id, the cluster id
 * and a CRC32C or, with a cluster secret, an HMAC that authenticates it.
 * Received frames that fail wire_decode() are logged with the reason and
 * the remote address, counted (link_rx_stats) and dropped.
 *
 * Requests: link_request() sends a REQUEST frame with a fresh request id
 * and calls back exactly once with the REPLY, or with an error when no
 * reply comes in time. The receiving node sees the REQUEST in on_frame()
 * and answers with link_reply() (from any thread, at any later time).
 *
 * Threads: the link runs one receive thread (calls on_frame and reply
 * callbacks, in arrival order) and one timer thread (calls timed-out
 * request callbacks). Callbacks may call any link function except
 * link_stop(); they should return quickly, as they hold up later frames.
 * All other functions are thread-safe and return without waiting on the
 * network.
 *
 * Not implemented: TLS (tls+tcp://) — peers are authenticated with the
 * cluster secret's HMAC instead, and traffic is not encrypted.
 */
#ifndef SANDFS_LINK_H
#define SANDFS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/wire.h"

struct link;

/* A verified frame arrived. f (and f->body) are valid only during the
 * call; copy what you keep. from == f->from. */
typedef void (*link_frame_fn)(void *ctx, uint64_t from,
			      const struct wire_frame *f);

/* A request finished. status 0: reply/len is the reply body (borrowed
 * for the call). Otherwise reply is NULL and status is -ETIMEDOUT (no
 * reply within the timeout), -ECONNREFUSED (peer not connected for
 * connect_grace_ms, or removed) or -ECANCELED (link stopped). */
typedef void (*link_reply_fn)(void *ctx, int status, const uint8_t *reply,
			      size_t len);

struct link_cfg {
	uint64_t self_id;        /* written into every frame we send */
	const char *listen_addr; /* "tcp://127.0.0.1:7000"; port 0 picks a
				    free port (see link_listen_addr) */
	uint64_t cluster_id;
	const uint8_t *secret; /* cluster secret, copied; NULL: CRC only */
	size_t secret_len;
	size_t queue_max;          /* frames per peer; default 1024, <= 8192 */
	uint32_t max_payload;      /* 0: WIRE_MAX_PAYLOAD_DEFAULT */
	uint32_t reconnect_min_ms; /* default 100 */
	uint32_t reconnect_max_ms; /* default 2000 */
	uint32_t connect_grace_ms; /* default 1000, see link_reply_fn */
	link_frame_fn on_frame;    /* RAFT and REQUEST frames (required) */
	void *ctx;
};

struct link_peer_stats {
	uint64_t sent;    /* frames accepted into the peer's queue */
	uint64_t dropped; /* frames refused because the queue was full */
	bool connected;   /* a connection to the peer is up right now */
};

struct link_rx_stats {
	uint64_t received; /* frames that passed wire_decode */
	uint64_t rejected; /* frames dropped by wire_decode */
	uint64_t stray_replies; /* replies to no pending request (late) */
};

/* Start listening and the link's threads. On failure (address in use, bad
 * address, no memory) returns a negative errno and writes a reason into err
 * (errcap bytes). On success *out is the link; free it with link_stop(). */
int link_start(const struct link_cfg *cfg, struct link **out, char *err,
	       size_t errcap);

/* Stop: close every socket, join the threads, call every pending request's
 * callback with -ECANCELED (from this thread), free the link. Queued
 * frames are discarded. Never call from a link callback. */
void link_stop(struct link *l);

/* The address we listen on with the real port (e.g. after port 0), written
 * NUL-terminated into buf. Returns 0 or -ENOSPC. */
int link_listen_addr(struct link *l, char *buf, size_t cap);

/* Start dialing peer `id` at addr (copied). Adding a known id with the same
 * address is a no-op; with another address it replaces the peer (its queue
 * is discarded). Returns 0, -EINVAL (id 0 or bad address) or -ENOMEM. */
int link_add_peer(struct link *l, uint64_t id, const char *addr);

/* Forget peer `id`: its queue is discarded; pending requests to it fail
 * with -ECONNREFUSED. Returns 0 or -ENOENT. */
int link_remove_peer(struct link *l, uint64_t id);

/* Queue one frame of `type` (WIRE_RAFT; REQUEST/REPLY go through
 * link_request/link_reply) to peer `to`. payload is copied. Never blocks.
 * Returns 0 when queued, -EAGAIN when the peer's queue is full (frame
 * dropped and counted), -ENOENT for an unknown peer, -EINVAL, -EMSGSIZE. */
int link_send(struct link *l, uint64_t to, uint8_t type, uint64_t req_id,
	      const void *payload, size_t len);

/* Send a REQUEST of `kind` to peer `to` (payload copied). Returns 0 and
 * then cb(ctx, ...) is called exactly once, later, from a link thread; or
 * returns a negative errno (-ENOENT unknown peer, -EAGAIN queue full,
 * -EINVAL, -EMSGSIZE, -ENOMEM, -ECANCELED while stopping) and cb is never
 * called. timeout_ms 0 means 5000. */
int link_request(struct link *l, uint64_t to, uint16_t kind,
		 const void *payload, size_t len, uint32_t timeout_ms,
		 link_reply_fn cb, void *ctx);

/* Answer request `req_id` of `kind` received from `to` (use the frame's
 * from, req_id and kind). payload copied. Same returns as link_send. */
int link_reply(struct link *l, uint64_t to, uint64_t req_id, uint16_t kind,
	       const void *payload, size_t len);

/* Counters for one peer. Returns 0 or -ENOENT. */
int link_stats(struct link *l, uint64_t peer, struct link_peer_stats *st);

/* Receive-side counters. */
void link_rx_stats(struct link *l, struct link_rx_stats *st);

#endif
