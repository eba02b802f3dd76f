/*
 * link.h — frames between nodes over nng, never blocking the caller.
 *
 * Each node listens on ONE address (tcp://HOST:PORT) with an nng PULL
 * socket that receives frames from every peer. For each peer the link
 * keeps two LANES, each a PUSH socket dialing that peer's address (so two
 * connections per peer; the peer's PULL socket takes one frame from each
 * connection in turn), and nng reconnects each with exponential back-off
 * (reconnect_min_ms .. reconnect_max_ms) on its own:
 *   - the control lane carries Raft frames and the small requests/replies
 *     (PROPOSE, STATUS, READ_INDEX, CONF, TRANSFER);
 *   - the bulk lane carries block traffic (BLOCK_PUT/GET/HAS requests and
 *     replies, up to 256 KiB each) and any other kind (see link_lane_for).
 * So a heartbeat never waits behind block data, neither in our queue nor
 * in a TCP stream, and a full bulk lane never drops a Raft frame.
 * Each lane has its own bounded send queue: queue_max frames, and the bulk
 * lane also bulk_queue_bytes bytes. A send to a full lane is dropped and
 * counted (the newest frame is the one dropped), so a slow or dead peer
 * never blocks the caller nor delays other peers. Raft tolerates the loss.
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
 * TLS (optional): with tls_cert, tls_key and tls_ca set, the link listens
 * and dials with tls+tcp:// (addresses given as tcp:// are converted),
 * both ends present a certificate and both require the other's to be
 * signed by tls_ca (mutual TLS; host names are not checked: any holder of
 * a certificate from the cluster CA is a member). Traffic is then
 * encrypted; the cluster secret's HMAC may be used on top. Without TLS
 * peers are authenticated only by the HMAC and traffic is not encrypted.
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

/* The two lanes to every peer. */
enum link_lane {
	LINK_LANE_CONTROL = 0, /* Raft, PROPOSE, STATUS, READ_INDEX, CONF,
				  TRANSFER */
	LINK_LANE_BULK = 1,    /* BLOCK_PUT/GET/HAS and unassigned kinds */
};
#define LINK_LANES 2
#define LINK_BULK_QUEUE_BYTES_DEFAULT ((size_t)64 << 20) /* 64 MiB */

struct link_cfg {
	uint64_t self_id;        /* written into every frame we send */
	const char *listen_addr; /* "tcp://127.0.0.1:7000"; port 0 picks a
				    free port (see link_listen_addr) */
	uint64_t cluster_id;
	const uint8_t *secret; /* cluster secret, copied; NULL: CRC only */
	size_t secret_len;
	size_t queue_max;          /* frames per peer and lane; default 1024,
				      <= 8192 */
	uint32_t max_payload;      /* 0: WIRE_MAX_PAYLOAD_DEFAULT */
	uint32_t reconnect_min_ms; /* default 100 */
	uint32_t reconnect_max_ms; /* default 2000 */
	uint32_t connect_grace_ms; /* default 1000, see link_reply_fn */
	link_frame_fn on_frame;    /* RAFT and REQUEST frames (required) */
	void *ctx;
	size_t bulk_queue_bytes;   /* bytes per peer in the bulk lane (frames
				      queued or being handed to nng); 0:
				      LINK_BULK_QUEUE_BYTES_DEFAULT. A single
				      frame is accepted into an empty lane
				      whatever its size. */
	/* TLS: PEM file paths (read at link_start; borrowed for the call).
	 * All three or none: tls_cert our certificate (may be followed by
	 * intermediates), tls_key its unencrypted private key, tls_ca the CA
	 * certificate(s) that must have signed every peer's certificate. */
	const char *tls_cert;
	const char *tls_key;
	const char *tls_ca;
};

struct link_lane_stats {
	uint64_t sent;         /* frames accepted into the lane's queue */
	uint64_t dropped;      /* frames refused because the lane was full */
	uint64_t queued;       /* frames in the lane right now */
	uint64_t queued_bytes; /* their bytes on the wire */
	uint64_t sent_bytes;   /* bytes of frames nng finished sending */
	uint64_t connects;     /* connections established (the first one and
				  every reconnection) */
	bool connected;        /* the lane's connection is up right now */
};

struct link_peer_stats {
	uint64_t sent;    /* frames accepted, both lanes */
	uint64_t dropped; /* frames refused because a lane was full */
	uint64_t sent_bytes; /* both lanes, see link_lane_stats */
	uint64_t recv_frames; /* verified frames received from this peer */
	uint64_t recv_bytes;  /* their bytes on the wire */
	uint64_t connects;    /* both lanes, see link_lane_stats */
	bool connected;   /* the control lane's connection is up right now */
	struct link_lane_stats lane[LINK_LANES]; /* by enum link_lane */
};

struct link_rx_stats {
	uint64_t received; /* frames that passed wire_decode */
	uint64_t rejected; /* frames dropped by wire_decode */
	uint64_t stray_replies; /* replies to no pending request (late) */
	uint64_t received_bytes; /* bytes of the frames that passed */
	uint64_t rejected_bytes; /* bytes of the frames dropped */
};

/* Requests of one kind, all peers together. */
struct link_kind_stats {
	uint64_t sent;     /* requests sent (link_request returned 0) */
	uint64_t failed;   /* of them, completed with an error (timeout,
			      peer not connected, link stopped) */
	uint64_t received; /* requests of this kind received from peers */
};

/* Start listening and the link's threads. On failure (address in use, bad
 * address, no memory, unreadable or invalid TLS files, nng without TLS) returns a negative errno and writes a reason into err
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

/* Start dialing peer `id` at addr (copied; with TLS on, tcp:// is dialed
 * as tls+tcp://). Adding a known id with the same address is a no-op; with
 * another address it replaces the peer (its queues are discarded). Returns 0, -EINVAL (id 0 or bad address) or -ENOMEM. */
int link_add_peer(struct link *l, uint64_t id, const char *addr);

/* Forget peer `id`: its queues are discarded; pending requests to it fail
 * with -ECONNREFUSED. Returns 0 or -ENOENT. */
int link_remove_peer(struct link *l, uint64_t id);

/* The lane a frame of `type` (and `kind`, for REQUEST/REPLY) travels on:
 * RAFT and the control kinds on LINK_LANE_CONTROL, BLOCK_* and every kind
 * not assigned to control on LINK_LANE_BULK. */
enum link_lane link_lane_for(uint8_t type, uint16_t kind);

/* Queue one frame of `type` (WIRE_RAFT; REQUEST/REPLY go through
 * link_request/link_reply) to peer `to`. payload is copied. Never blocks.
 * Returns 0 when queued, -EAGAIN when the lane is full (frame
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

/* Request counters of kind (1..WIRE_KIND_MAX): 0 or -EINVAL. */
int link_kind_stats(struct link *l, uint16_t kind, struct link_kind_stats *st);

#endif
