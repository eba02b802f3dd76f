/*
 * link.c — nng links between nodes (see link.h for the contract).
 *
 * Shape:
 *   - one PULL socket listening on our address with one receive aio: its
 *     callback (on an nng task thread) verifies the frame with wire_decode,
 *     dispatches it (REPLY frames complete a pending request, everything
 *     else goes to on_frame) and asks for the next one. Frames are thus
 *     handled one at a time, in arrival order, as by a receive thread, but
 *     without waking one more thread per frame (measured: a follower's
 *     create makes ~12 frames cross the cluster);
 *   - per peer two lanes (control, bulk; link_lane_for picks one), each a
 *     PUSH socket of its own dialing the peer, so each lane has its own TCP
 *     connection and the peer's PULL socket takes one frame from each
 *     connection in turn. nng's send buffer is 0: the lane keeps its own
 *     FIFO (a ring of nng_msg, bounded in frames and, for bulk, in bytes)
 *     and hands one frame at a time to nng with an aio; the aio callback
 *     hands over the next. A frame that does not fit is dropped at once,
 *     so nothing ever waits. Counting bytes ourselves is what nng's
 *     frame-counted buffer cannot do;
 *   - pending requests in a list; a timer thread fails those whose deadline
 *     passed (-ETIMEDOUT) or whose peer stayed unreachable (-ECONNREFUSED).
 *
 *   - optional TLS: one client and one server nng_tls_config, shared by
 *     every dialer and the listener.
 *
 * Locks: `mu` guards the peer list; each lane's `mu` guards its queue and
 * counters; `req_mu` guards the pending list and the stopping flag. Lock
 * order: req_mu before mu before lane.mu. The lane aio callback takes only
 * its lane.mu. A sender holds link.mu while it hands a frame to nng, so a
 * peer cannot be retired (which needs link.mu to unlink it) under it.
 * Callbacks are always called with no lock held.
 */
#include "transport/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "transport/log.h"

#define DEFAULT_QUEUE 1024
#define MAX_QUEUE 8192 /* the limit nng had for NNG_OPT_SENDBUF; kept */
#define TLS_FILE_MAX (1u << 20) /* a PEM file larger than this is refused */
#define DEFAULT_TIMEOUT_MS 5000
#define TIMER_POLL_MS 20

struct peer;

/* One lane to one peer: a PUSH socket and our own bounded FIFO. Frames in
 * the lane = the one handed to nng (busy) + the ring. */
struct lane {
	struct peer *peer; /* back pointer (for logs) */
	enum link_lane which;
	nng_socket sock;
	nng_aio *aio;                 /* hands one frame at a time to nng */
	atomic_uint_least32_t pipe;   /* id of the connected pipe, 0 if none */
	size_t max_frames, max_bytes; /* bounds, fixed at creation */

	pthread_mutex_t mu; /* guards everything below */
	nng_msg **ring;     /* max_frames slots; waiting frames, FIFO */
	size_t head, n;     /* ring[head] is the oldest of n */
	bool busy;          /* a frame is handed to nng (aio pending) */
	size_t busy_bytes;  /* its size */
	size_t bytes;       /* bytes of the ring + the busy frame */
	bool dead;          /* retired: the callback hands over nothing */
	uint64_t sent, dropped;
	uint64_t sent_bytes;  /* frames nng finished sending */
	atomic_uint_fast64_t connects; /* pipes added (lane_pipe_cb) */
};

struct peer {
	struct peer *next;
	uint64_t id;
	char *addr;           /* as given to link_add_peer */
	atomic_bool closing;  /* we are closing it: not a "loss" */
	bool opened;          /* lanes initialised (for cleanup) */
	atomic_uint_fast64_t rx_frames, rx_bytes; /* verified, from this peer */
	struct lane lane[LINK_LANES];
};

struct pending {
	struct pending *next;
	uint64_t req_id;
	uint64_t to;
	uint16_t kind;
	uint64_t issued_ms;
	uint64_t deadline_ms;
	int status; /* set by the timer when it fails the request */
	link_reply_fn cb;
	void *ctx;
};

struct link {
	uint64_t self_id;
	struct wire_cfg wcfg; /* wcfg.secret points at secret below */
	uint8_t *secret;
	size_t queue_max;
	uint32_t reconnect_min_ms, reconnect_max_ms, connect_grace_ms;
	size_t bulk_queue_bytes;
	link_frame_fn on_frame;
	void *ctx;
	char listen_addr[256];
	nng_tls_config *tls_client, *tls_server; /* NULL: plain tcp */

	nng_socket pull;
	nng_aio *rx_aio; /* the one receive in flight; its callback is rx_cb */
	pthread_t timer_thread;
	bool timer_started;

	pthread_mutex_t mu;  /* guards peers, graveyard, peer counters */
	struct peer *peers;
	struct peer *graveyard; /* removed peers, freed by link_stop */

	pthread_mutex_t req_mu; /* guards pending, stopping */
	pthread_cond_t req_cv;  /* CLOCK_MONOTONIC; wakes the timer */
	struct pending *pending;
	bool stopping;

	atomic_uint_fast64_t next_req_id;
	atomic_uint_fast64_t rx_ok, rx_bad, rx_stray, rx_fail;
	atomic_uint_fast64_t rx_ok_bytes, rx_bad_bytes;
	/* requests by kind: sent, failed, received (link_kind_stats) */
	atomic_uint_fast64_t req_sent[WIRE_KIND_MAX + 1];
	atomic_uint_fast64_t req_failed[WIRE_KIND_MAX + 1];
	atomic_uint_fast64_t req_recv[WIRE_KIND_MAX + 1];
};

/* Monotonic milliseconds. */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Map an nng error to a negative errno. */
static int nng_to_errno(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	case NNG_ETIMEDOUT:
		return -ETIMEDOUT;
	case NNG_EAGAIN:
		return -EAGAIN;
	case NNG_ECLOSED:
		return -ECANCELED;
	case NNG_ENOTSUP:
		return -ENOTSUP;
	case NNG_EPERM:
		return -EPERM;
	case NNG_EMSGSIZE:
		return -EMSGSIZE;
	default:
		return -EIO;
	}
}

/* Write "a.b.c.d:port" (or "?") for the remote end of the pipe that
 * delivered msg. */
static void remote_name(nng_msg *msg, char *buf, size_t cap)
{
	nng_sockaddr sa;
	char ip[INET6_ADDRSTRLEN] = "?";

	snprintf(buf, cap, "?");
	nng_pipe p = nng_msg_get_pipe(msg);
	if (nng_pipe_id(p) <= 0 ||
	    nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET) {
		inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof ip);
		snprintf(buf, cap, "%s:%u", ip, ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof ip);
		snprintf(buf, cap, "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
	}
}

/* The unverified sender id of a rejected frame, for the log (0 if the
 * frame is too short or not a sandfs frame at all). */
static uint64_t claimed_from(nng_msg *msg)
{
	const uint8_t *p = nng_msg_body(msg);
	uint64_t v = 0;
	if (nng_msg_len(msg) < 28 || memcmp(p, WIRE_MAGIC, 4) != 0)
		return 0;
	for (int i = 20; i < 28; i++)
		v = v << 8 | p[i];
	return v;
}

/* ---- lanes ------------------------------------------------------------------ */

/* Which lane a frame takes. Control gets Raft and the small, latency-bound
 * requests; everything else (block data, and kinds nobody assigned yet) is
 * bulk, so an unknown large kind can never hold up a heartbeat. */
enum link_lane link_lane_for(uint8_t type, uint16_t kind)
{
	if (type == WIRE_RAFT)
		return LINK_LANE_CONTROL;
	switch (kind) {
	case WIRE_KIND_PROPOSE:
	case WIRE_KIND_STATUS:
	case WIRE_KIND_READ_INDEX:
	case WIRE_KIND_CONF:
	case WIRE_KIND_TRANSFER:
		return LINK_LANE_CONTROL;
	default:
		return LINK_LANE_BULK;
	}
}

static const char *lane_name(enum link_lane w)
{
	return w == LINK_LANE_CONTROL ? "control" : "bulk";
}

/* nng finished with the frame handed over (or failed it): account for it
 * and hand over the next one. Runs on an nng thread; takes only ln->mu,
 * and calls nng_send_aio after releasing it. */
static void lane_sent_cb(void *arg)
{
	struct lane *ln = arg;
	int rv = nng_aio_result(ln->aio);
	nng_msg *m = nng_aio_get_msg(ln->aio); /* still ours on failure */
	nng_aio_set_msg(ln->aio, NULL);
	if (rv && m)
		nng_msg_free(m);

	pthread_mutex_lock(&ln->mu);
	if (!rv)
		ln->sent_bytes += ln->busy_bytes;
	ln->bytes -= ln->busy_bytes;
	ln->busy_bytes = 0;
	ln->busy = false;
	if (rv && rv != NNG_ECLOSED && rv != NNG_ECANCELED && !ln->dead)
		LOG(WARN, "link: peer %llu (%s lane): send failed: %s",
		    (unsigned long long)ln->peer->id, lane_name(ln->which),
		    nng_strerror(rv));
	nng_msg *next = NULL;
	if (!ln->dead && rv != NNG_ECLOSED && ln->n) {
		next = ln->ring[ln->head];
		ln->ring[ln->head] = NULL;
		ln->head = (ln->head + 1) % ln->max_frames;
		ln->n--;
		ln->busy = true;
		ln->busy_bytes = nng_msg_len(next);
	}
	pthread_mutex_unlock(&ln->mu);
	if (next) {
		nng_aio_set_msg(ln->aio, next);
		nng_send_aio(ln->sock, ln->aio);
	}
}

/* nng pipe events on a lane socket: remember the live pipe. Touches only
 * the lane's atomic, which lives until link_stop. */
static void lane_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct lane *ln = arg;
	struct peer *pr = ln->peer;
	uint32_t id = (uint32_t)nng_pipe_id(p);

	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_store(&ln->pipe, id);
		atomic_fetch_add(&ln->connects, 1);
		LOG(INFO, "link: connected to peer %llu at %s (%s lane)",
		    (unsigned long long)pr->id, pr->addr, lane_name(ln->which));
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		uint_least32_t expect = id;
		if (atomic_compare_exchange_strong(&ln->pipe, &expect, 0) &&
		    !atomic_load(&pr->closing))
			LOG(INFO,
			    "link: lost connection to peer %llu at %s (%s "
			    "lane); reconnecting",
			    (unsigned long long)pr->id, pr->addr,
			    lane_name(ln->which));
	}
}

/* The URL we dial or listen on for addr: with TLS on, tcp:// (tcp4, tcp6)
 * becomes tls+tcp://. Returns 0 or -ENAMETOOLONG. */
static int lane_url(const struct link *l, const char *addr, char *buf,
		    size_t cap)
{
	int n;
	if (l->tls_client && strncmp(addr, "tcp", 3) == 0)
		n = snprintf(buf, cap, "tls+%s", addr);
	else
		n = snprintf(buf, cap, "%s", addr);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Create lane w of peer p: socket (unbuffered: our ring is the queue),
 * aio, ring, and a non-blocking dial (a peer that is down now is retried
 * with back-off). On failure everything of the lane is released. */
static int lane_open(struct link *l, struct peer *p, enum link_lane w,
		     const char *url)
{
	struct lane *ln = &p->lane[w];
	ln->peer = p;
	ln->which = w;
	ln->max_frames = l->queue_max;
	ln->max_bytes = w == LINK_LANE_BULK ? l->bulk_queue_bytes : SIZE_MAX;
	atomic_init(&ln->pipe, 0);
	ln->ring = calloc(ln->max_frames, sizeof(nng_msg *));
	if (!ln->ring)
		return -ENOMEM;
	int rv = nng_aio_alloc(&ln->aio, lane_sent_cb, ln);
	if (rv) {
		free(ln->ring);
		return nng_to_errno(rv);
	}
	rv = nng_push0_open(&ln->sock);
	if (rv) {
		nng_aio_free(ln->aio);
		free(ln->ring);
		return nng_to_errno(rv);
	}
	pthread_mutex_init(&ln->mu, NULL);
	nng_socket_set_int(ln->sock, NNG_OPT_SENDBUF, 0);
	nng_socket_set_ms(ln->sock, NNG_OPT_RECONNMINT,
			  (nng_duration)l->reconnect_min_ms);
	nng_socket_set_ms(ln->sock, NNG_OPT_RECONNMAXT,
			  (nng_duration)l->reconnect_max_ms);
	nng_pipe_notify(ln->sock, NNG_PIPE_EV_ADD_POST, lane_pipe_cb, ln);
	nng_pipe_notify(ln->sock, NNG_PIPE_EV_REM_POST, lane_pipe_cb, ln);
	nng_dialer d;
	rv = nng_dialer_create(&d, ln->sock, url);
	if (!rv && l->tls_client)
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, l->tls_client);
	if (!rv)
		rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
	if (rv) {
		nng_close(ln->sock);
		nng_aio_free(ln->aio);
		pthread_mutex_destroy(&ln->mu);
		free(ln->ring);
		return nng_to_errno(rv);
	}
	return 0;
}

/* Close a lane (no lock held): no more hand-overs, close the socket, wait
 * for the aio callback, free every frame still queued. */
static void lane_close(struct lane *ln)
{
	pthread_mutex_lock(&ln->mu);
	ln->dead = true;
	pthread_mutex_unlock(&ln->mu);
	nng_close(ln->sock);
	nng_aio_stop(ln->aio);
	/* A hand-over racing with the stop may have left its frame on the
	 * aio without a callback: it is ours. */
	nng_msg *m = nng_aio_get_msg(ln->aio);
	if (m)
		nng_msg_free(m);
	nng_aio_free(ln->aio);
	ln->aio = NULL;
	pthread_mutex_lock(&ln->mu);
	for (; ln->n; ln->n--) {
		nng_msg_free(ln->ring[ln->head]);
		ln->head = (ln->head + 1) % ln->max_frames;
	}
	free(ln->ring);
	ln->ring = NULL;
	ln->bytes = 0;
	pthread_mutex_unlock(&ln->mu);
	atomic_store(&ln->pipe, 0);
}

/* Put m (owned; freed on refusal) into lane ln. Caller holds link.mu,
 * which keeps the lane alive. Returns 0 or -EAGAIN (lane full). */
static int lane_push(struct lane *ln, nng_msg *m)
{
	size_t len = nng_msg_len(m);
	bool handover = false;

	pthread_mutex_lock(&ln->mu);
	size_t frames = ln->n + (ln->busy ? 1 : 0);
	bool fits = frames < ln->max_frames &&
		    (frames == 0 || ln->bytes + len <= ln->max_bytes);
	if (!fits || ln->dead) {
		uint64_t d = ++ln->dropped;
		size_t bytes = ln->bytes;
		pthread_mutex_unlock(&ln->mu);
		/* Log the first drop and then every 1024th. */
		if ((d & 1023) == 1)
			LOG(WARN,
			    "link: peer %llu (%s, %s lane): send queue full "
			    "(%zu frames, %zu bytes), dropping (%llu dropped "
			    "so far)",
			    (unsigned long long)ln->peer->id, ln->peer->addr,
			    lane_name(ln->which), frames, bytes,
			    (unsigned long long)d);
		nng_msg_free(m);
		return -EAGAIN;
	}
	ln->sent++;
	ln->bytes += len;
	if (!ln->busy) {
		ln->busy = true;
		ln->busy_bytes = len;
		handover = true;
	} else {
		ln->ring[(ln->head + ln->n) % ln->max_frames] = m;
		ln->n++;
	}
	pthread_mutex_unlock(&ln->mu);
	if (handover) {
		/* Outside ln->mu: the callback takes it. No callback can run
		 * for this aio until the send is started here. */
		nng_aio_set_msg(ln->aio, m);
		nng_send_aio(ln->sock, ln->aio);
	}
	return 0;
}

/* ---- peers ---------------------------------------------------------------- */

/* Find peer id in the list (mu held). */
static struct peer *peer_find(struct link *l, uint64_t id)
{
	for (struct peer *p = l->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* Unlink peer id from the list (mu held); returns it or NULL. */
static struct peer *peer_unlink(struct link *l, uint64_t id)
{
	for (struct peer **pp = &l->peers; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct peer *p = *pp;
			*pp = p->next;
			p->next = NULL;
			return p;
		}
	}
	return NULL;
}

/* Open both lanes of a peer. */
static int peer_open(struct link *l, struct peer *p)
{
	char url[300];
	int rc = lane_url(l, p->addr, url, sizeof url);
	if (rc)
		return rc;
	rc = lane_open(l, p, LINK_LANE_CONTROL, url);
	if (rc)
		return rc;
	rc = lane_open(l, p, LINK_LANE_BULK, url);
	if (rc) {
		atomic_store(&p->closing, true);
		lane_close(&p->lane[LINK_LANE_CONTROL]);
		pthread_mutex_destroy(&p->lane[LINK_LANE_CONTROL].mu);
		return rc;
	}
	p->opened = true;
	return 0;
}

/* Close a peer's lanes (no lock held; the peer is unlinked). */
static void peer_close(struct peer *p)
{
	atomic_store(&p->closing, true);
	if (p->opened)
		for (int w = 0; w < LINK_LANES; w++)
			lane_close(&p->lane[w]);
}

/* Free a closed peer. */
static void peer_free(struct peer *p)
{
	if (p->opened)
		for (int w = 0; w < LINK_LANES; w++)
			pthread_mutex_destroy(&p->lane[w].mu);
	free(p->addr);
	free(p);
}

/* Close a removed peer (no lock held) and park it for link_stop: nng may
 * still report pipe events for it. */
static void peer_retire(struct link *l, struct peer *p)
{
	peer_close(p);
	pthread_mutex_lock(&l->mu);
	p->next = l->graveyard;
	l->graveyard = p;
	pthread_mutex_unlock(&l->mu);
}

/* Add or replace a peer. */
int link_add_peer(struct link *l, uint64_t id, const char *addr)
{
	if (!l || id == 0 || !addr || !*addr)
		return -EINVAL;

	pthread_mutex_lock(&l->mu);
	struct peer *old = peer_find(l, id);
	if (old && strcmp(old->addr, addr) == 0) {
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	pthread_mutex_unlock(&l->mu);

	struct peer *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->id = id;
	p->addr = strdup(addr);
	if (!p->addr) {
		free(p);
		return -ENOMEM;
	}
	atomic_init(&p->closing, false);
	int rc = peer_open(l, p);
	if (rc) {
		LOG(WARN, "link: cannot dial peer %llu at %s: %s",
		    (unsigned long long)id, addr, strerror(-rc));
		peer_free(p);
		return rc == -ENOMEM ? rc : -EINVAL;
	}

	pthread_mutex_lock(&l->mu);
	old = peer_unlink(l, id);
	p->next = l->peers;
	l->peers = p;
	pthread_mutex_unlock(&l->mu);
	if (old) {
		LOG(INFO, "link: peer %llu moves from %s to %s",
		    (unsigned long long)id, old->addr, addr);
		peer_retire(l, old);
	} else {
		LOG(DEBUG, "link: peer %llu at %s", (unsigned long long)id,
		    addr);
	}
	return 0;
}

/* Remove a peer; pending requests to it fail on the timer thread. */
int link_remove_peer(struct link *l, uint64_t id)
{
	if (!l)
		return -EINVAL;
	pthread_mutex_lock(&l->mu);
	struct peer *p = peer_unlink(l, id);
	pthread_mutex_unlock(&l->mu);
	if (!p)
		return -ENOENT;
	peer_retire(l, p);
	pthread_mutex_lock(&l->req_mu);
	pthread_cond_signal(&l->req_cv);
	pthread_mutex_unlock(&l->req_mu);
	return 0;
}

/* Peer state for the timer: 0 unknown, 1 known but the lane `kind`
 * travels on is not connected, 2 connected. */
static int peer_state(struct link *l, uint64_t id, uint16_t kind)
{
	int st = 0;
	pthread_mutex_lock(&l->mu);
	struct peer *p = peer_find(l, id);
	if (p) {
		enum link_lane w = link_lane_for(WIRE_REQUEST, kind);
		st = atomic_load(&p->lane[w].pipe) ? 2 : 1;
	}
	pthread_mutex_unlock(&l->mu);
	return st;
}

/* ---- sending ---------------------------------------------------------------- */

/* Encode f (outside any lock) and put it in its lane to the peer without
 * waiting. */
static int send_frame(struct link *l, uint64_t to, struct wire_frame *f)
{
	nng_msg *m;
	size_t n = 0;

	f->from = l->self_id;
	if (f->body_len > (size_t)l->wcfg.max_payload)
		return -EMSGSIZE;
	size_t total = wire_frame_len(&l->wcfg, f->type, f->body_len);
	if (nng_msg_alloc(&m, total) != 0)
		return -ENOMEM;
	int rc = wire_encode(&l->wcfg, f, nng_msg_body(m), total, &n);
	if (rc) {
		nng_msg_free(m);
		return rc;
	}

	pthread_mutex_lock(&l->mu);
	struct peer *p = peer_find(l, to);
	if (!p) {
		pthread_mutex_unlock(&l->mu);
		nng_msg_free(m);
		return -ENOENT;
	}
	rc = lane_push(&p->lane[link_lane_for(f->type, f->kind)], m);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* Queue a kind-less frame to a peer. */
int link_send(struct link *l, uint64_t to, uint8_t type, uint64_t req_id,
	      const void *payload, size_t len)
{
	if (!l || (len && !payload) || type == WIRE_REQUEST ||
	    type == WIRE_REPLY || type < 1 || type > WIRE_TYPE_MAX)
		return -EINVAL;
	struct wire_frame f = { .type = type, .req_id = req_id,
				.body = payload, .body_len = len };
	return send_frame(l, to, &f);
}

/* Answer a request. */
int link_reply(struct link *l, uint64_t to, uint64_t req_id, uint16_t kind,
	       const void *payload, size_t len)
{
	if (!l || (len && !payload) || req_id == 0 || kind < 1 ||
	    kind > WIRE_KIND_MAX)
		return -EINVAL;
	struct wire_frame f = { .type = WIRE_REPLY, .req_id = req_id,
				.kind = kind, .body = payload,
				.body_len = len };
	return send_frame(l, to, &f);
}

/* Remove the pending request req_id (req_mu held); NULL if gone. */
static struct pending *pending_take(struct link *l, uint64_t req_id)
{
	for (struct pending **pp = &l->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->req_id == req_id) {
			struct pending *r = *pp;
			*pp = r->next;
			return r;
		}
	}
	return NULL;
}

/* Register the request, then send it: the reply can never arrive before
 * the request is pending. */
int link_request(struct link *l, uint64_t to, uint16_t kind,
		 const void *payload, size_t len, uint32_t timeout_ms,
		 link_reply_fn cb, void *ctx)
{
	if (!l || !cb || (len && !payload) || kind < 1 ||
	    kind > WIRE_KIND_MAX)
		return -EINVAL;
	struct pending *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->req_id = atomic_fetch_add(&l->next_req_id, 1);
	r->to = to;
	r->kind = kind;
	r->cb = cb;
	r->ctx = ctx;
	r->issued_ms = now_ms();
	r->deadline_ms = r->issued_ms + (timeout_ms ? timeout_ms
						    : DEFAULT_TIMEOUT_MS);

	pthread_mutex_lock(&l->req_mu);
	if (l->stopping) {
		pthread_mutex_unlock(&l->req_mu);
		free(r);
		return -ECANCELED;
	}
	/* The timer sleeps untimed only while nothing is pending; otherwise
	 * it polls every TIMER_POLL_MS and needs no wake-up. */
	if (!l->pending)
		pthread_cond_signal(&l->req_cv);
	r->next = l->pending;
	l->pending = r;
	uint64_t req_id = r->req_id; /* r may be completed and freed as soon
					as the lock is released */
	pthread_mutex_unlock(&l->req_mu);

	struct wire_frame f = { .type = WIRE_REQUEST, .req_id = req_id,
				.kind = kind, .body = payload,
				.body_len = len };
	int rc = send_frame(l, to, &f);
	if (rc == 0) {
		atomic_fetch_add(&l->req_sent[kind], 1);
		return 0;
	}

	/* Not sent: withdraw it, unless a link thread already completed it
	 * (then its callback ran or runs, and we must report success). */
	pthread_mutex_lock(&l->req_mu);
	struct pending *mine = pending_take(l, req_id);
	pthread_mutex_unlock(&l->req_mu);
	if (!mine) {
		atomic_fetch_add(&l->req_sent[kind], 1);
		return 0;
	}
	free(mine);
	return rc;
}

/* ---- receiving -------------------------------------------------------------- */

/* A REPLY arrived: complete its request. */
static void handle_reply(struct link *l, const struct wire_frame *f)
{
	pthread_mutex_lock(&l->req_mu);
	struct pending *r = pending_take(l, f->req_id);
	if (r && r->to != f->from) {
		/* Not from the peer we asked: leave the request alone. */
		r->next = l->pending;
		l->pending = r;
		r = NULL;
	}
	pthread_mutex_unlock(&l->req_mu);
	if (!r) {
		atomic_fetch_add(&l->rx_stray, 1);
		LOG(DEBUG,
		    "link: stray reply %llu from %llu (late or unknown)",
		    (unsigned long long)f->req_id,
		    (unsigned long long)f->from);
		return;
	}
	if (r->kind != f->kind)
		LOG(WARN, "link: reply %llu from %llu is %s, request was %s",
		    (unsigned long long)f->req_id,
		    (unsigned long long)f->from, wire_kind_name(f->kind),
		    wire_kind_name(r->kind));
	r->cb(r->ctx, 0, f->body, f->body_len);
	free(r);
}

/* Verify and dispatch one received frame (then free it). */
static void rx_frame(struct link *l, nng_msg *msg)
{
	char why[160], who[80];
	struct wire_frame f;
	int rc = wire_decode(nng_msg_body(msg), nng_msg_len(msg), &l->wcfg, &f,
			     why, sizeof why);
	if (rc) {
		uint64_t bad = atomic_fetch_add(&l->rx_bad, 1) + 1;
		atomic_fetch_add(&l->rx_bad_bytes, nng_msg_len(msg));
		/* First ten, then every power of two: a flood of garbage must
		 * not flood the log. */
		if (bad <= 10 || (bad & (bad - 1)) == 0) {
			remote_name(msg, who, sizeof who);
			LOG(WARN,
			    "link: dropped frame from %s (claims node %llu, "
			    "%zu bytes): %s [%llu dropped so far]",
			    who, (unsigned long long)claimed_from(msg),
			    nng_msg_len(msg), why, (unsigned long long)bad);
		}
		nng_msg_free(msg);
		return;
	}
	atomic_fetch_add(&l->rx_ok, 1);
	atomic_fetch_add(&l->rx_ok_bytes, nng_msg_len(msg));
	pthread_mutex_lock(&l->mu);
	struct peer *src = peer_find(l, f.from);
	if (src) {
		atomic_fetch_add(&src->rx_frames, 1);
		atomic_fetch_add(&src->rx_bytes, nng_msg_len(msg));
	}
	pthread_mutex_unlock(&l->mu);
	if (f.type == WIRE_REQUEST && f.kind <= WIRE_KIND_MAX)
		atomic_fetch_add(&l->req_recv[f.kind], 1);
	if (f.type == WIRE_REPLY)
		handle_reply(l, &f);
	else
		l->on_frame(l->ctx, f.from, &f);
	nng_msg_free(msg);
}

/* The receive aio completed: handle the frame and receive the next, until
 * the PULL socket closes (link_stop). */
static void rx_cb(void *arg)
{
	struct link *l = arg;
	int rv = nng_aio_result(l->rx_aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (rv == 0) {
		rx_frame(l, nng_aio_get_msg(l->rx_aio));
	} else {
		/* Should not happen (out of memory...): do not spin a task
		 * thread or flood the log while it lasts. */
		uint64_t n = atomic_fetch_add(&l->rx_fail, 1) + 1;
		if (n <= 10 || (n & (n - 1)) == 0)
			LOG(WARN, "link: receive failed: %s [%llu so far]",
			    nng_strerror(rv), (unsigned long long)n);
		nng_msleep(10);
	}
	nng_recv_aio(l->pull, l->rx_aio);
}

/* ---- timer ------------------------------------------------------------------ */

/* Fail requests whose deadline passed or whose peer is unreachable. Runs
 * until stopping. Callbacks are called with no lock held. */
static void *timer_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-linktimer");
	struct link *l = arg;

	pthread_mutex_lock(&l->req_mu);
	while (!l->stopping) {
		if (!l->pending) {
			pthread_cond_wait(&l->req_cv, &l->req_mu);
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += TIMER_POLL_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->req_cv, &l->req_mu, &ts);
		if (l->stopping)
			break;

		/* Collect the expired ones (peer_state takes mu: order
		 * req_mu -> mu). */
		struct pending *done = NULL;
		uint64_t now = now_ms();
		for (struct pending **pp = &l->pending; *pp;) {
			struct pending *r = *pp;
			int status = 0;
			if (now >= r->deadline_ms) {
				status = -ETIMEDOUT;
			} else {
				int st = peer_state(l, r->to, r->kind);
				if (st == 0 ||
				    (st == 1 && now - r->issued_ms >=
							l->connect_grace_ms))
					status = -ECONNREFUSED;
			}
			if (!status) {
				pp = &r->next;
				continue;
			}
			*pp = r->next;
			r->next = done;
			r->status = status;
			done = r;
		}
		if (!done)
			continue;
		pthread_mutex_unlock(&l->req_mu);
		while (done) {
			struct pending *r = done;
			done = r->next;
			int status = r->status;
			LOG(DEBUG, "link: request %llu (%s) to %llu: %s",
			    (unsigned long long)r->req_id,
			    wire_kind_name(r->kind),
			    (unsigned long long)r->to, strerror(-status));
			atomic_fetch_add(&l->req_failed[r->kind], 1);
			r->cb(r->ctx, status, NULL, 0);
			free(r);
		}
		pthread_mutex_lock(&l->req_mu);
	}
	pthread_mutex_unlock(&l->req_mu);
	return NULL;
}

/* ---- life cycle ------------------------------------------------------------- */

/* Replace the port of "scheme://host:port" by `port`. */
static void set_port(char *url, size_t cap, int port)
{
	char *colon = strrchr(url, ':');
	char *slash = strstr(url, "//");
	if (!colon || (slash && colon < slash + 2))
		return;
	size_t pre = (size_t)(colon - url);
	snprintf(url + pre, cap - pre, ":%d", port);
}

/* Free everything link_start may have created (threads already joined). */
static void link_free(struct link *l)
{
	while (l->peers) {
		struct peer *p = l->peers;
		l->peers = p->next;
		peer_close(p);
		peer_free(p);
	}
	while (l->graveyard) {
		struct peer *p = l->graveyard;
		l->graveyard = p->next;
		peer_free(p);
	}
	if (l->tls_client)
		nng_tls_config_free(l->tls_client);
	if (l->tls_server)
		nng_tls_config_free(l->tls_server);
	pthread_cond_destroy(&l->req_cv);
	pthread_mutex_destroy(&l->req_mu);
	pthread_mutex_destroy(&l->mu);
	free(l->secret);
	free(l);
}

/* Read a whole (PEM) file into a new NUL-terminated buffer (*out; caller
 * frees). Returns 0 or a negative errno. */
static int read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *buf = malloc(TLS_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, TLS_FILE_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > TLS_FILE_MAX) {
		free(buf);
		return bad ? -EIO : -EFBIG;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* One TLS configuration (client or server side): our certificate and key,
 * the cluster CA, and the peer's certificate required. Writes a reason into
 * err on failure. */
static int tls_config_make(const struct link_cfg *cfg, nng_tls_mode mode,
			   const char *cert, const char *key,
			   nng_tls_config **out, char *err, size_t errcap)
{
	nng_tls_config *tc;
	int rv = nng_tls_config_alloc(&tc, mode);
	if (rv) {
		if (err)
			snprintf(err, errcap,
				 "link: TLS is not available in this nng "
				 "library (%s); install an nng built with TLS "
				 "(Debian's libnng1 uses mbedtls) or start "
				 "without --tls-*",
				 nng_strerror(rv));
		return rv == NNG_ENOTSUP ? -ENOTSUP : nng_to_errno(rv);
	}
	const char *what = "certificate/key";
	rv = nng_tls_config_own_cert(tc, cert, key, NULL);
	if (!rv) {
		what = "CA file";
		rv = nng_tls_config_ca_file(tc, cfg->tls_ca);
	}
	if (!rv) {
		what = "auth mode";
		rv = nng_tls_config_auth_mode(tc, NNG_TLS_AUTH_MODE_REQUIRED);
	}
	if (rv) {
		if (err)
			snprintf(err, errcap,
				 "link: TLS %s rejected (cert %s, key %s, CA "
				 "%s): %s",
				 what, cfg->tls_cert, cfg->tls_key, cfg->tls_ca,
				 nng_strerror(rv));
		nng_tls_config_free(tc);
		return -EINVAL;
	}
	*out = tc;
	return 0;
}

/* Set up TLS from cfg's three files, or nothing when none is given. */
static int tls_setup(struct link *l, const struct link_cfg *cfg, char *err,
		     size_t errcap)
{
	int given = !!cfg->tls_cert + !!cfg->tls_key + !!cfg->tls_ca;
	if (given == 0)
		return 0;
	if (given != 3) {
		if (err)
			snprintf(err, errcap,
				 "link: TLS needs a certificate, a key and a CA "
				 "file together (--tls-cert, --tls-key, "
				 "--tls-ca)");
		return -EINVAL;
	}
	char *cert = NULL, *key = NULL;
	int rc = read_file(cfg->tls_cert, &cert);
	if (rc) {
		if (err)
			snprintf(err, errcap,
				 "link: cannot read TLS certificate %s: %s",
				 cfg->tls_cert, strerror(-rc));
		return rc;
	}
	rc = read_file(cfg->tls_key, &key);
	if (rc) {
		if (err)
			snprintf(err, errcap, "link: cannot read TLS key %s: %s",
				 cfg->tls_key, strerror(-rc));
		free(cert);
		return rc;
	}
	rc = tls_config_make(cfg, NNG_TLS_MODE_CLIENT, cert, key,
			     &l->tls_client, err, errcap);
	if (!rc)
		rc = tls_config_make(cfg, NNG_TLS_MODE_SERVER, cert, key,
				     &l->tls_server, err, errcap);
	/* the key is a secret: do not leave it in freed memory */
	memset(key, 0, strlen(key));
	free(key);
	free(cert);
	return rc;
}

/* Listen, start the threads. */
int link_start(const struct link_cfg *cfg, struct link **out, char *err,
	       size_t errcap)
{
	if (err && errcap)
		err[0] = '\0';
	if (!cfg || !out || !cfg->listen_addr || !cfg->on_frame ||
	    cfg->self_id == 0) {
		if (err)
			snprintf(err, errcap, "link: bad configuration");
		return -EINVAL;
	}
	struct link *l = calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	l->self_id = cfg->self_id;
	l->queue_max = cfg->queue_max ? cfg->queue_max : DEFAULT_QUEUE;
	if (l->queue_max > MAX_QUEUE)
		l->queue_max = MAX_QUEUE;
	l->reconnect_min_ms = cfg->reconnect_min_ms ? cfg->reconnect_min_ms
						    : 100;
	l->reconnect_max_ms = cfg->reconnect_max_ms ? cfg->reconnect_max_ms
						    : 2000;
	if (l->reconnect_max_ms < l->reconnect_min_ms)
		l->reconnect_max_ms = l->reconnect_min_ms;
	l->connect_grace_ms = cfg->connect_grace_ms ? cfg->connect_grace_ms
						    : 1000;
	l->bulk_queue_bytes = cfg->bulk_queue_bytes
				      ? cfg->bulk_queue_bytes
				      : LINK_BULK_QUEUE_BYTES_DEFAULT;
	l->on_frame = cfg->on_frame;
	l->ctx = cfg->ctx;
	l->wcfg.cluster_id = cfg->cluster_id;
	l->wcfg.max_payload = cfg->max_payload ? cfg->max_payload
					       : WIRE_MAX_PAYLOAD_DEFAULT;
	if (cfg->secret && cfg->secret_len) {
		l->secret = malloc(cfg->secret_len);
		if (!l->secret) {
			free(l);
			return -ENOMEM;
		}
		memcpy(l->secret, cfg->secret, cfg->secret_len);
		l->wcfg.secret = l->secret;
		l->wcfg.secret_len = cfg->secret_len;
	}
	atomic_init(&l->next_req_id, 1);
	atomic_init(&l->rx_ok, 0);
	atomic_init(&l->rx_bad, 0);
	atomic_init(&l->rx_stray, 0);
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->req_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->req_cv, &ca);
	pthread_condattr_destroy(&ca);

	int rc = tls_setup(l, cfg, err, errcap);
	if (rc) {
		link_free(l);
		return rc;
	}

	int rv = nng_pull0_open(&l->pull);
	if (rv) {
		if (err)
			snprintf(err, errcap, "link: cannot open socket: %s",
				 nng_strerror(rv));
		link_free(l);
		return nng_to_errno(rv);
	}
	/* Accept the largest frame we accept from wire_decode. */
	size_t maxframe = WIRE_HDR_LEN + WIRE_KIND_LEN +
			  (size_t)l->wcfg.max_payload + WIRE_MAC_LEN;
	nng_socket_set_size(l->pull, NNG_OPT_RECVMAXSZ, maxframe);

	char url[sizeof l->listen_addr];
	if (lane_url(l, cfg->listen_addr, url, sizeof url)) {
		if (err)
			snprintf(err, errcap, "link: address too long: %s",
				 cfg->listen_addr);
		nng_close(l->pull);
		link_free(l);
		return -EINVAL;
	}
	nng_listener lst;
	rv = nng_listener_create(&lst, l->pull, url);
	if (!rv && l->tls_server)
		rv = nng_listener_set_ptr(lst, NNG_OPT_TLS_CONFIG,
					  l->tls_server);
	if (!rv)
		rv = nng_listener_start(lst, 0);
	if (rv) {
		if (err)
			snprintf(err, errcap, "cannot listen on %s: %s%s",
				 url, nng_strerror(rv),
				 rv == NNG_EADDRINUSE
					 ? " (is another node running on "
					   "this port?)"
					 : "");
		nng_close(l->pull);
		link_free(l);
		return nng_to_errno(rv);
	}
	memcpy(l->listen_addr, url, sizeof url);
	int port = 0;
	if ((strncmp(url, "tcp", 3) == 0 || strncmp(url, "tls+tcp", 7) == 0) &&
	    nng_listener_get_int(lst, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		set_port(l->listen_addr, sizeof l->listen_addr, port);

	if ((rv = nng_aio_alloc(&l->rx_aio, rx_cb, l)) != 0) {
		if (err)
			snprintf(err, errcap, "link: %s", nng_strerror(rv));
		nng_close(l->pull);
		link_free(l);
		return nng_to_errno(rv);
	}
	nng_recv_aio(l->pull, l->rx_aio);
	if (pthread_create(&l->timer_thread, NULL, timer_main, l) != 0) {
		if (err)
			snprintf(err, errcap, "link: cannot start thread");
		nng_close(l->pull);
		nng_aio_free(l->rx_aio); /* waits for a running callback */
		l->rx_aio = NULL;
		link_free(l);
		return -EAGAIN;
	}
	l->timer_started = true;
	LOG(INFO, "link: node %llu listening on %s%s%s",
	    (unsigned long long)l->self_id, l->listen_addr,
	    l->secret ? " (cluster secret set)" : "",
	    l->tls_server ? " (TLS, peer certificates required)" : "");
	*out = l;
	return 0;
}

/* Stop threads, fail pending requests, free. */
void link_stop(struct link *l)
{
	if (!l)
		return;
	nng_close(l->pull); /* the receive aio ends with NNG_ECLOSED */
	nng_aio_free(l->rx_aio); /* after its callback returned */
	l->rx_aio = NULL;

	pthread_mutex_lock(&l->req_mu);
	l->stopping = true;
	pthread_cond_broadcast(&l->req_cv);
	pthread_mutex_unlock(&l->req_mu);
	pthread_join(l->timer_thread, NULL);

	struct pending *r = l->pending;
	l->pending = NULL;
	while (r) {
		struct pending *next = r->next;
		r->cb(r->ctx, -ECANCELED, NULL, 0);
		free(r);
		r = next;
	}
	link_free(l);
}

/* The bound address. */
int link_listen_addr(struct link *l, char *buf, size_t cap)
{
	size_t n = strlen(l->listen_addr);
	if (!buf || cap <= n)
		return -ENOSPC;
	memcpy(buf, l->listen_addr, n + 1);
	return 0;
}

/* Per-peer counters. */
int link_stats(struct link *l, uint64_t peer, struct link_peer_stats *st)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&l->mu);
	struct peer *p = peer_find(l, peer);
	if (p) {
		memset(st, 0, sizeof *st);
		for (int w = 0; w < LINK_LANES; w++) {
			struct lane *ln = &p->lane[w];
			struct link_lane_stats *ls = &st->lane[w];
			pthread_mutex_lock(&ln->mu);
			ls->sent = ln->sent;
			ls->dropped = ln->dropped;
			ls->queued = ln->n + (ln->busy ? 1 : 0);
			ls->queued_bytes = ln->bytes;
			ls->sent_bytes = ln->sent_bytes;
			pthread_mutex_unlock(&ln->mu);
			ls->connected = atomic_load(&ln->pipe) != 0;
			ls->connects = atomic_load(&ln->connects);
			st->sent += ls->sent;
			st->dropped += ls->dropped;
			st->sent_bytes += ls->sent_bytes;
			st->connects += ls->connects;
		}
		st->recv_frames = atomic_load(&p->rx_frames);
		st->recv_bytes = atomic_load(&p->rx_bytes);
		st->connected = st->lane[LINK_LANE_CONTROL].connected;
		rc = 0;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* Receive counters. */
void link_rx_stats(struct link *l, struct link_rx_stats *st)
{
	st->received = atomic_load(&l->rx_ok);
	st->rejected = atomic_load(&l->rx_bad);
	st->stray_replies = atomic_load(&l->rx_stray);
	st->received_bytes = atomic_load(&l->rx_ok_bytes);
	st->rejected_bytes = atomic_load(&l->rx_bad_bytes);
}

/* Request counters of one kind. */
int link_kind_stats(struct link *l, uint16_t kind, struct link_kind_stats *st)
{
	if (kind < 1 || kind > WIRE_KIND_MAX)
		return -EINVAL;
	st->sent = atomic_load(&l->req_sent[kind]);
	st->failed = atomic_load(&l->req_failed[kind]);
	st->received = atomic_load(&l->req_recv[kind]);
	return 0;
}
