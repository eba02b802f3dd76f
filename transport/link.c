/*
 * link.c — nng links between nodes (see link.h for the contract).
 *
 * Shape:
 *   - one PULL socket listening on our address; a receive thread loops on
 *     nng_recvmsg, verifies each frame with wire_decode and dispatches it:
 *     REPLY frames complete a pending request, everything else goes to
 *     on_frame;
 *   - per peer one PUSH socket dialing the peer; nng's own send buffer
 *     (NNG_OPT_SENDBUF = queue_max) is the bounded queue, and sends use
 *     NNG_FLAG_NONBLOCK so a full queue drops instead of waiting;
 *   - pending requests in a list; a timer thread fails those whose deadline
 *     passed (-ETIMEDOUT) or whose peer stayed unreachable (-ECONNREFUSED).
 *
 * Locks: `mu` guards the peer list; `req_mu` guards the pending list and
 * the stopping flag. Lock order: req_mu before mu. Callbacks are always
 * called with no lock held.
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

#include "transport/log.h"

#define DEFAULT_QUEUE 1024
#define MAX_QUEUE 8192 /* nng's limit for NNG_OPT_SENDBUF */
#define DEFAULT_TIMEOUT_MS 5000
#define TIMER_POLL_MS 20

struct peer {
	struct peer *next;
	uint64_t id;
	char *addr;
	nng_socket sock;
	atomic_uint_least32_t pipe; /* id of the connected pipe, 0 if none */
	atomic_bool closing;        /* we are closing it: not a "loss" */
	uint64_t sent;              /* guarded by link.mu */
	uint64_t dropped;           /* guarded by link.mu */
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
	link_frame_fn on_frame;
	void *ctx;
	char listen_addr[256];

	nng_socket pull;
	pthread_t rx_thread;
	pthread_t timer_thread;
	bool rx_started, timer_started;

	pthread_mutex_t mu;  /* guards peers, graveyard, peer counters */
	struct peer *peers;
	struct peer *graveyard; /* removed peers, freed by link_stop */

	pthread_mutex_t req_mu; /* guards pending, stopping */
	pthread_cond_t req_cv;  /* CLOCK_MONOTONIC; wakes the timer */
	struct pending *pending;
	bool stopping;

	atomic_uint_fast64_t next_req_id;
	atomic_uint_fast64_t rx_ok, rx_bad, rx_stray;
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

/* ---- peers ---------------------------------------------------------------- */

/* nng pipe events on a peer socket: remember the live pipe. Touches only
 * the peer's atomic, which lives until link_stop. */
static void peer_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct peer *pr = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);

	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_store(&pr->pipe, id);
		LOG(INFO, "link: connected to peer %llu at %s",
		    (unsigned long long)pr->id, pr->addr);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		uint_least32_t expect = id;
		if (atomic_compare_exchange_strong(&pr->pipe, &expect, 0) &&
		    !atomic_load(&pr->closing))
			LOG(INFO,
			    "link: lost connection to peer %llu at %s; "
			    "reconnecting",
			    (unsigned long long)pr->id, pr->addr);
	}
}

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

/* Open the PUSH socket for a peer and start dialing (non-blocking: a peer
 * that is down now is retried with back-off). */
static int peer_open(struct link *l, struct peer *p)
{
	int rv = nng_push0_open(&p->sock);
	if (rv)
		return nng_to_errno(rv);
	nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, (int)l->queue_max);
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMINT,
			  (nng_duration)l->reconnect_min_ms);
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMAXT,
			  (nng_duration)l->reconnect_max_ms);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_POST, peer_pipe_cb, p);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, peer_pipe_cb, p);
	rv = nng_dial(p->sock, p->addr, NULL, NNG_FLAG_NONBLOCK);
	if (rv) {
		nng_close(p->sock);
		return nng_to_errno(rv);
	}
	return 0;
}

/* Close a removed peer's socket (no lock held) and park it for link_stop. */
static void peer_retire(struct link *l, struct peer *p)
{
	atomic_store(&p->closing, true);
	nng_close(p->sock);
	atomic_store(&p->pipe, 0);
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
	atomic_init(&p->pipe, 0);
	atomic_init(&p->closing, false);
	int rc = peer_open(l, p);
	if (rc) {
		LOG(WARN, "link: cannot dial peer %llu at %s: %s",
		    (unsigned long long)id, addr, strerror(-rc));
		free(p->addr);
		free(p);
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

/* Peer state for the timer: 0 unknown, 1 known but not connected,
 * 2 connected. */
static int peer_state(struct link *l, uint64_t id)
{
	int st = 0;
	pthread_mutex_lock(&l->mu);
	struct peer *p = peer_find(l, id);
	if (p)
		st = atomic_load(&p->pipe) ? 2 : 1;
	pthread_mutex_unlock(&l->mu);
	return st;
}

/* ---- sending ---------------------------------------------------------------- */

/* Encode f (outside any lock) and hand it to the peer's queue without
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
	int rv = nng_sendmsg(p->sock, m, NNG_FLAG_NONBLOCK);
	if (rv == 0) {
		p->sent++;
	} else {
		p->dropped++;
		/* Log the first drop and then every 1024th. */
		if ((p->dropped & 1023) == 1)
			LOG(WARN,
			    "link: peer %llu (%s): send queue full, dropping "
			    "(%llu dropped so far): %s",
			    (unsigned long long)to, p->addr,
			    (unsigned long long)p->dropped, nng_strerror(rv));
	}
	pthread_mutex_unlock(&l->mu);
	if (rv) {
		nng_msg_free(m);
		return rv == NNG_EAGAIN ? -EAGAIN : nng_to_errno(rv);
	}
	return 0;
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
	r->next = l->pending;
	l->pending = r;
	uint64_t req_id = r->req_id; /* r may be completed and freed as soon
					as the lock is released */
	pthread_cond_signal(&l->req_cv);
	pthread_mutex_unlock(&l->req_mu);

	struct wire_frame f = { .type = WIRE_REQUEST, .req_id = req_id,
				.kind = kind, .body = payload,
				.body_len = len };
	int rc = send_frame(l, to, &f);
	if (rc == 0)
		return 0;

	/* Not sent: withdraw it, unless a link thread already completed it
	 * (then its callback ran or runs, and we must report success). */
	pthread_mutex_lock(&l->req_mu);
	struct pending *mine = pending_take(l, req_id);
	pthread_mutex_unlock(&l->req_mu);
	if (!mine)
		return 0;
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

/* The receive thread: verify and dispatch every frame until the PULL
 * socket closes. */
static void *rx_main(void *arg)
{
	struct link *l = arg;
	char why[160], who[80];

	for (;;) {
		nng_msg *msg;
		int rv = nng_recvmsg(l->pull, &msg, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv) {
			LOG(WARN, "link: receive failed: %s", nng_strerror(rv));
			continue;
		}
		struct wire_frame f;
		int rc = wire_decode(nng_msg_body(msg), nng_msg_len(msg),
				     &l->wcfg, &f, why, sizeof why);
		if (rc) {
			uint64_t bad = atomic_fetch_add(&l->rx_bad, 1) + 1;
			/* First ten, then every power of two: a flood of
			 * garbage must not flood the log. */
			if (bad <= 10 || (bad & (bad - 1)) == 0) {
				remote_name(msg, who, sizeof who);
				LOG(WARN,
				    "link: dropped frame from %s (claims node "
				    "%llu, %zu bytes): %s [%llu dropped so far]",
				    who,
				    (unsigned long long)claimed_from(msg),
				    nng_msg_len(msg), why,
				    (unsigned long long)bad);
			}
			nng_msg_free(msg);
			continue;
		}
		atomic_fetch_add(&l->rx_ok, 1);
		if (f.type == WIRE_REPLY)
			handle_reply(l, &f);
		else
			l->on_frame(l->ctx, f.from, &f);
		nng_msg_free(msg);
	}
	return NULL;
}

/* ---- timer ------------------------------------------------------------------ */

/* Fail requests whose deadline passed or whose peer is unreachable. Runs
 * until stopping. Callbacks are called with no lock held. */
static void *timer_main(void *arg)
{
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
				int st = peer_state(l, r->to);
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
		atomic_store(&p->closing, true);
		nng_close(p->sock);
		free(p->addr);
		free(p);
	}
	while (l->graveyard) {
		struct peer *p = l->graveyard;
		l->graveyard = p->next;
		free(p->addr);
		free(p);
	}
	pthread_cond_destroy(&l->req_cv);
	pthread_mutex_destroy(&l->req_mu);
	pthread_mutex_destroy(&l->mu);
	free(l->secret);
	free(l);
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

	nng_listener lst;
	rv = nng_listen(l->pull, cfg->listen_addr, &lst, 0);
	if (rv) {
		if (err)
			snprintf(err, errcap, "cannot listen on %s: %s%s",
				 cfg->listen_addr, nng_strerror(rv),
				 rv == NNG_EADDRINUSE
					 ? " (is another node running on "
					   "this port?)"
					 : "");
		nng_close(l->pull);
		link_free(l);
		return nng_to_errno(rv);
	}
	snprintf(l->listen_addr, sizeof l->listen_addr, "%s",
		 cfg->listen_addr);
	int port = 0;
	if (strncmp(cfg->listen_addr, "tcp", 3) == 0 &&
	    nng_listener_get_int(lst, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		set_port(l->listen_addr, sizeof l->listen_addr, port);

	if (pthread_create(&l->rx_thread, NULL, rx_main, l) != 0) {
		if (err)
			snprintf(err, errcap, "link: cannot start thread");
		nng_close(l->pull);
		link_free(l);
		return -EAGAIN;
	}
	l->rx_started = true;
	if (pthread_create(&l->timer_thread, NULL, timer_main, l) != 0) {
		if (err)
			snprintf(err, errcap, "link: cannot start thread");
		nng_close(l->pull);
		pthread_join(l->rx_thread, NULL);
		link_free(l);
		return -EAGAIN;
	}
	l->timer_started = true;
	LOG(INFO, "link: node %llu listening on %s%s",
	    (unsigned long long)l->self_id, l->listen_addr,
	    l->secret ? " (cluster secret set)" : "");
	*out = l;
	return 0;
}

/* Stop threads, fail pending requests, free. */
void link_stop(struct link *l)
{
	if (!l)
		return;
	nng_close(l->pull); /* the receive thread sees NNG_ECLOSED */
	pthread_join(l->rx_thread, NULL);

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
		st->sent = p->sent;
		st->dropped = p->dropped;
		st->connected = atomic_load(&p->pipe) != 0;
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
}
