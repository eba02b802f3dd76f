/*
 * test_link.c — nng links on loopback: frames flow both ways with the
 * sender's id, requests get replies or fail in time, a dead peer neither
 * blocks the caller nor delays a live peer, queues stay bounded, and bad
 * frames are counted and dropped; Raft frames overtake block traffic on
 * their own lane and the bulk lane is bounded in bytes; TLS peers with
 * certificates from the cluster CA talk and others are refused (test
 * certificates are made with the openssl CLI in a temporary directory).
 * Ports are picked at run time (port 0).
 * Assertions are on counts and order, never on elapsed time; waits only
 * have generous upper bounds so a stuck link fails instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>

#include "transport/link.h"
#include "transport/log.h"

#define CLUSTER 0xc1c1c1c1ull
#define WAIT_MS 10000
#define MAXREC 4096

/* What one node received. */
struct rx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct link *self; /* set after link_start; used to answer */
	bool echo;         /* answer REQUESTs with their own body */
	int n;
	uint8_t type[MAXREC];
	uint64_t from[MAXREC];
	uint32_t seq[MAXREC];
};

static void rx_init(struct rx *r)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
}

static void rx_destroy(struct rx *r)
{
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void on_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	struct rx *r = ctx;
	assert_int_equal(from, f->from);
	pthread_mutex_lock(&r->mu);
	if (r->n < MAXREC) {
		r->type[r->n] = f->type;
		r->from[r->n] = from;
		r->seq[r->n] = f->body_len >= 4 ? get32(f->body) : 0xffffffffu;
		r->n++;
	}
	pthread_cond_broadcast(&r->cv);
	struct link *self = r->self;
	bool echo = r->echo;
	pthread_mutex_unlock(&r->mu);
	if (f->type == WIRE_REQUEST && echo)
		link_reply(self, from, f->req_id, f->kind, f->body,
			   f->body_len);
}

/* Wait until r has at least n frames (or WAIT_MS passed); returns count. */
static int rx_wait(struct rx *r, int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&r->mu);
	while (r->n < n) {
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT)
			break;
	}
	int got = r->n;
	pthread_mutex_unlock(&r->mu);
	return got;
}

static int rx_count(struct rx *r)
{
	pthread_mutex_lock(&r->mu);
	int n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

struct opts {
	const char *secret;
	size_t queue_max;
	uint32_t grace_ms;
	const char *addr;
	size_t bulk_bytes;
	const char *tls_cert, *tls_key, *tls_ca;
	link_frame_fn fn; /* with r == NULL: this handler and ctx */
	void *ctx;
};

/* Start node `id` listening on a free loopback port. */
static struct link *start(uint64_t id, struct rx *r, const struct opts *o,
			  char *addr, size_t cap)
{
	struct link_cfg cfg = {
		.self_id = id,
		.listen_addr = o && o->addr ? o->addr : "tcp://127.0.0.1:0",
		.cluster_id = CLUSTER,
		.queue_max = o ? o->queue_max : 0,
		.reconnect_min_ms = 20,
		.reconnect_max_ms = 200,
		.connect_grace_ms = o ? o->grace_ms : 0,
		.on_frame = r ? on_frame : o->fn,
		.ctx = r ? (void *)r : o->ctx,
		.bulk_queue_bytes = o ? o->bulk_bytes : 0,
		.tls_cert = o ? o->tls_cert : NULL,
		.tls_key = o ? o->tls_key : NULL,
		.tls_ca = o ? o->tls_ca : NULL,
	};
	if (o && o->secret) {
		cfg.secret = (const uint8_t *)o->secret;
		cfg.secret_len = strlen(o->secret);
	}
	struct link *l = NULL;
	char err[256];
	int rc = link_start(&cfg, &l, err, sizeof err);
	if (rc)
		fail_msg("link_start: %d %s", rc, err);
	if (r) {
		pthread_mutex_lock(&r->mu);
		r->self = l;
		pthread_mutex_unlock(&r->mu);
	}
	if (addr)
		assert_int_equal(link_listen_addr(l, addr, cap), 0);
	return l;
}

/* An address nobody listens on: bind port 0, note it, close. */
static void dead_addr(char *buf, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t sl = sizeof sa;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(buf, cap, "tcp://127.0.0.1:%u", ntohs(sa.sin_port));
}

static int send_seq(struct link *l, uint64_t to, uint32_t seq)
{
	uint8_t b[16] = { 0 };
	put32(b, seq);
	return link_send(l, to, WIRE_RAFT, 0, b, sizeof b);
}

static void two_links_exchange_frames_in_order_with_sender_id(void **state)
{
	(void)state;
	struct rx ra, rb;
	char aa[128], ab[128];
	rx_init(&ra);
	rx_init(&rb);
	struct link *a = start(1, &ra, NULL, aa, sizeof aa);
	struct link *b = start(2, &rb, NULL, ab, sizeof ab);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_int_equal(link_add_peer(b, 1, aa), 0);
	for (uint32_t i = 0; i < 100; i++) {
		assert_int_equal(send_seq(a, 2, i), 0);
		assert_int_equal(send_seq(b, 1, 1000 + i), 0);
	}
	assert_int_equal(rx_wait(&rb, 100), 100);
	assert_int_equal(rx_wait(&ra, 100), 100);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(rb.from[i], 1);
		assert_int_equal(rb.type[i], WIRE_RAFT);
		assert_int_equal(rb.seq[i], (uint32_t)i);
		assert_int_equal(ra.from[i], 2);
		assert_int_equal(ra.seq[i], 1000u + (uint32_t)i);
	}
	struct link_peer_stats st;
	assert_int_equal(link_stats(a, 2, &st), 0);
	assert_int_equal(st.sent, 100);
	assert_int_equal(st.dropped, 0);
	assert_true(st.connected);
	struct link_rx_stats rs;
	link_rx_stats(b, &rs);
	assert_int_equal(rs.received, 100);
	assert_int_equal(rs.rejected, 0);
	/* Bytes: what A handed to nng for 2 is what B received from 1 (the
	 * send completions may trail the deliveries a little). */
	struct wire_cfg wc = { .cluster_id = CLUSTER };
	uint64_t flen = wire_frame_len(&wc, WIRE_RAFT, 16);
	for (int i = 0; i < 200 && st.sent_bytes < 100 * flen; i++) {
		usleep(5000);
		assert_int_equal(link_stats(a, 2, &st), 0);
	}
	assert_int_equal(st.sent_bytes, 100 * flen);
	assert_true(st.connects >= 2); /* both lanes */
	struct link_peer_stats sb;
	assert_int_equal(link_stats(b, 1, &sb), 0);
	assert_int_equal(sb.recv_frames, 100);
	assert_int_equal(sb.recv_bytes, 100 * flen);
	assert_int_equal(rs.received_bytes, 100 * flen);
	/* kind-carrying types go through request/reply only */
	assert_int_equal(link_send(a, 2, WIRE_REQUEST, 1, "x", 1), -EINVAL);
	assert_int_equal(link_send(a, 77, WIRE_RAFT, 0, "x", 1), -ENOENT);
	link_stop(a);
	link_stop(b);
	rx_destroy(&ra);
	rx_destroy(&rb);
}

static void three_links_all_to_all_deliver_every_frame(void **state)
{
	(void)state;
	struct rx r[3];
	struct link *l[3];
	char addr[3][128];
	for (int i = 0; i < 3; i++) {
		rx_init(&r[i]);
		l[i] = start((uint64_t)i + 1, &r[i], NULL, addr[i], 128);
	}
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				assert_int_equal(
					link_add_peer(l[i], (uint64_t)j + 1,
						      addr[j]),
					0);
	for (uint32_t k = 0; k < 20; k++)
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++)
				if (i != j)
					assert_int_equal(
						send_seq(l[i], (uint64_t)j + 1,
							 k),
						0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rx_wait(&r[i], 40), 40);
		int per[4] = { 0 };
		uint32_t last[4] = { 0 };
		for (int k = 0; k < 40; k++) {
			uint64_t f = r[i].from[k];
			assert_true(f >= 1 && f <= 3 && f != (uint64_t)i + 1);
			/* per-sender order is kept */
			if (per[f])
				assert_true(r[i].seq[k] == last[f] + 1);
			last[f] = r[i].seq[k];
			per[f]++;
		}
		for (uint64_t f = 1; f <= 3; f++)
			assert_int_equal(per[f], f == (uint64_t)i + 1 ? 0 : 20);
	}
	for (int i = 0; i < 3; i++) {
		link_stop(l[i]);
		rx_destroy(&r[i]);
	}
}

/* Request callbacks record here. */
struct calls {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	int status[256];
	char body[256][32];
};

static void calls_init(struct calls *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
}

static void on_reply(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct calls *c = ctx;
	pthread_mutex_lock(&c->mu);
	if (c->n < 256) {
		c->status[c->n] = status;
		if (status == 0) {
			assert_true(len < 32);
			memcpy(c->body[c->n], reply, len);
			c->body[c->n][len] = '\0';
		} else {
			assert_null(reply);
			assert_int_equal(len, 0);
		}
	}
	c->n++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int calls_wait(struct calls *c, int n, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (c->n < n)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
			break;
	int got = c->n;
	pthread_mutex_unlock(&c->mu);
	return got;
}

static void requests_get_their_own_replies(void **state)
{
	(void)state;
	struct rx ra, rb;
	char aa[128], ab[128];
	rx_init(&ra);
	rx_init(&rb);
	rb.echo = true;
	struct link *a = start(1, &ra, NULL, aa, sizeof aa);
	struct link *b = start(2, &rb, NULL, ab, sizeof ab);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_int_equal(link_add_peer(b, 1, aa), 0);

	struct calls c[50];
	for (int i = 0; i < 50; i++) {
		char msg[32];
		calls_init(&c[i]);
		int n = snprintf(msg, sizeof msg, "ping %d", i);
		assert_int_equal(link_request(a, 2, WIRE_KIND_STATUS, msg,
					      (size_t)n, WAIT_MS, on_reply,
					      &c[i]),
				 0);
	}
	for (int i = 0; i < 50; i++) {
		char want[32];
		snprintf(want, sizeof want, "ping %d", i);
		assert_int_equal(calls_wait(&c[i], 1, WAIT_MS), 1);
		assert_int_equal(c[i].status[0], 0);
		assert_string_equal(c[i].body[0], want);
	}
	/* B saw 50 REQUESTs from 1; A got no REPLY in on_frame */
	assert_int_equal(rx_count(&rb), 50);
	assert_int_equal(rb.type[0], WIRE_REQUEST);
	assert_int_equal(rx_count(&ra), 0);
	/* exactly once: nothing more arrives for any request */
	usleep(100 * 1000);
	for (int i = 0; i < 50; i++)
		assert_int_equal(c[i].n, 1);
	struct link_kind_stats ks;
	assert_int_equal(link_kind_stats(a, WIRE_KIND_STATUS, &ks), 0);
	assert_int_equal(ks.sent, 50);
	assert_int_equal(ks.failed, 0);
	assert_int_equal(ks.received, 0);
	assert_int_equal(link_kind_stats(b, WIRE_KIND_STATUS, &ks), 0);
	assert_int_equal(ks.received, 50);
	assert_int_equal(ks.sent, 0);
	assert_int_equal(link_kind_stats(a, 0, &ks), -EINVAL);
	assert_int_equal(link_kind_stats(a, WIRE_KIND_MAX + 1, &ks), -EINVAL);

	/* an unknown peer fails at once and the callback never runs */
	struct calls u;
	calls_init(&u);
	assert_int_equal(link_request(a, 99, WIRE_KIND_STATUS, "x", 1, 100,
				      on_reply, &u),
			 -ENOENT);
	assert_int_equal(link_request(a, 2, 0, "x", 1, 100, on_reply, &u),
			 -EINVAL);
	link_stop(a);
	link_stop(b);
	assert_int_equal(u.n, 0);
	rx_destroy(&ra);
	rx_destroy(&rb);
}

static void request_to_dead_peer_times_out_exactly_once(void **state)
{
	(void)state;
	struct rx ra;
	char dead[128];
	rx_init(&ra);
	struct opts o = { .grace_ms = 60000 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct calls c;
	calls_init(&c);
	assert_int_equal(link_request(a, 9, WIRE_KIND_BLOCK_GET, "h", 1, 200,
				      on_reply, &c),
			 0);
	assert_int_equal(calls_wait(&c, 1, WAIT_MS), 1);
	assert_int_equal(c.status[0], -ETIMEDOUT);
	usleep(100 * 1000);
	assert_int_equal(c.n, 1);
	struct link_kind_stats ks;
	assert_int_equal(link_kind_stats(a, WIRE_KIND_BLOCK_GET, &ks), 0);
	assert_int_equal(ks.sent, 1);
	assert_int_equal(ks.failed, 1);
	link_stop(a);
	assert_int_equal(c.n, 1);
	rx_destroy(&ra);
}

static void request_to_unreachable_peer_is_refused_after_grace(void **state)
{
	(void)state;
	struct rx ra;
	char dead[128];
	rx_init(&ra);
	struct opts o = { .grace_ms = 100 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct calls c;
	calls_init(&c);
	assert_int_equal(link_request(a, 9, WIRE_KIND_BLOCK_PUT, "h", 1, 60000,
				      on_reply, &c),
			 0);
	assert_int_equal(calls_wait(&c, 1, WAIT_MS), 1);
	assert_int_equal(c.status[0], -ECONNREFUSED);
	link_stop(a);
	assert_int_equal(c.n, 1);
	rx_destroy(&ra);
}

static void removing_a_peer_fails_its_pending_requests(void **state)
{
	(void)state;
	struct rx ra;
	char dead[128];
	rx_init(&ra);
	struct opts o = { .grace_ms = 60000 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct calls c;
	calls_init(&c);
	assert_int_equal(link_request(a, 9, WIRE_KIND_PROPOSE, "p", 1, 60000,
				      on_reply, &c),
			 0);
	assert_int_equal(link_remove_peer(a, 9), 0);
	assert_int_equal(link_remove_peer(a, 9), -ENOENT);
	assert_int_equal(calls_wait(&c, 1, WAIT_MS), 1);
	assert_int_equal(c.status[0], -ECONNREFUSED);
	link_stop(a);
	rx_destroy(&ra);
}

static void stop_cancels_pending_requests_exactly_once(void **state)
{
	(void)state;
	struct rx ra;
	char dead[128];
	rx_init(&ra);
	struct opts o = { .grace_ms = 60000 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct calls c;
	calls_init(&c);
	for (int i = 0; i < 3; i++)
		assert_int_equal(link_request(a, 9, WIRE_KIND_STATUS, NULL, 0,
					      60000, on_reply, &c),
				 0);
	link_stop(a);
	assert_int_equal(c.n, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(c.status[i], -ECANCELED);
	rx_destroy(&ra);
}

/* 1000 frames to a dead peer, then 10 to a live one: every live frame
 * arrives, in order, while the dead peer's frames are still undelivered
 * (queued or dropped) — the dead peer held up nobody. */
static void dead_peer_does_not_delay_a_live_peer(void **state)
{
	(void)state;
	struct rx ra, rb;
	char ab[128], dead[128];
	rx_init(&ra);
	rx_init(&rb);
	struct link *a = start(1, &ra, NULL, NULL, 0);
	struct link *b = start(2, &rb, NULL, ab, sizeof ab);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	int queued = 0, dropped = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		int rc = send_seq(a, 9, i);
		assert_true(rc == 0 || rc == -EAGAIN);
		rc == 0 ? queued++ : dropped++;
	}
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(send_seq(a, 2, i), 0);
	assert_int_equal(rx_wait(&rb, 10), 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(rb.seq[i], (uint32_t)i);

	struct link_peer_stats sd, sb;
	assert_int_equal(link_stats(a, 9, &sd), 0);
	assert_int_equal(link_stats(a, 2, &sb), 0);
	assert_false(sd.connected);
	assert_int_equal(sd.sent, (uint64_t)queued);
	assert_int_equal(sd.dropped, (uint64_t)dropped);
	assert_int_equal(sd.sent + sd.dropped, 1000);
	assert_true(sb.connected);
	assert_int_equal(sb.sent, 10);
	assert_int_equal(sb.dropped, 0);
	link_stop(a);
	link_stop(b);
	rx_destroy(&ra);
	rx_destroy(&rb);
}

/* queue_max 16 and a peer that is down: 16 frames queue, the rest are
 * dropped; when the peer comes up it gets exactly the queued 16. */
static void queue_bound_is_respected_and_queue_drains_on_connect(void **state)
{
	(void)state;
	struct rx ra, rc_;
	char dead[128];
	rx_init(&ra);
	rx_init(&rc_);
	struct opts o = { .queue_max = 16 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	for (uint32_t i = 0; i < 100; i++) {
		int rc = send_seq(a, 9, i);
		assert_int_equal(rc, i < 16 ? 0 : -EAGAIN);
	}
	struct link_peer_stats st;
	assert_int_equal(link_stats(a, 9, &st), 0);
	assert_int_equal(st.sent, 16);
	assert_int_equal(st.dropped, 84);

	struct opts oc = { .addr = dead };
	struct link *c = start(9, &rc_, &oc, NULL, 0);
	assert_int_equal(rx_wait(&rc_, 16), 16);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(rc_.from[i], 1);
		assert_int_equal(rc_.seq[i], (uint32_t)i);
	}
	/* a frame sent now follows the drained queue */
	assert_int_equal(send_seq(a, 9, 500), 0);
	assert_int_equal(rx_wait(&rc_, 17), 17);
	assert_int_equal(rc_.seq[16], 500);
	link_stop(a);
	link_stop(c);
	rx_destroy(&ra);
	rx_destroy(&rc_);
}

/* Send raw bytes to a link's listener through a plain nng PUSH socket. */
static void raw_send(nng_socket s, const void *buf, size_t len)
{
	assert_int_equal(nng_send(s, (void *)buf, len, 0), 0);
}

static void malformed_frames_are_counted_and_dropped(void **state)
{
	(void)state;
	struct rx ra;
	char aa[128];
	rx_init(&ra);
	struct link *a = start(1, &ra, NULL, aa, sizeof aa);
	nng_socket s;
	assert_int_equal(nng_push0_open(&s), 0);
	assert_int_equal(nng_dial(s, aa, NULL, 0), 0);

	uint8_t junk[100];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 7);
	raw_send(s, junk, 1);
	raw_send(s, junk, sizeof junk);

	struct wire_cfg other = { .cluster_id = CLUSTER + 1 };
	struct wire_cfg ours = { .cluster_id = CLUSTER };
	struct wire_frame f = { .type = WIRE_RAFT, .from = 5,
				.body = (const uint8_t *)"\0\0\0\7abcd",
				.body_len = 8 };
	uint8_t *buf;
	size_t len;
	assert_int_equal(wire_encode_alloc(&other, &f, &buf, &len), 0);
	raw_send(s, buf, len); /* wrong cluster */
	free(buf);
	size_t bad_bytes = 1 + sizeof junk + len;
	assert_int_equal(wire_encode_alloc(&ours, &f, &buf, &len), 0);
	buf[len - 1] ^= 1;
	raw_send(s, buf, len); /* bad checksum */
	buf[len - 1] ^= 1;
	raw_send(s, buf, len); /* good: arrives after all the bad ones */
	free(buf);

	assert_int_equal(rx_wait(&ra, 1), 1);
	assert_int_equal(ra.from[0], 5);
	assert_int_equal(ra.seq[0], 7);
	struct link_rx_stats rs;
	link_rx_stats(a, &rs);
	assert_int_equal(rs.rejected, 4);
	assert_int_equal(rs.received, 1);
	assert_int_equal(rs.rejected_bytes, bad_bytes + len);
	assert_int_equal(rs.received_bytes, len);
	nng_close(s);
	link_stop(a);
	rx_destroy(&ra);
}

static void peers_with_different_secrets_cannot_talk(void **state)
{
	(void)state;
	struct rx ra, rb, rc_;
	char ab[128];
	rx_init(&ra);
	rx_init(&rb);
	rx_init(&rc_);
	struct opts oa = { .secret = "alpha" }, ob = { .secret = "bravo" };
	struct link *a = start(1, &ra, &oa, NULL, 0);
	struct link *b = start(2, &rb, &ob, ab, sizeof ab);
	struct link *c = start(3, &rc_, &ob, NULL, 0); /* right secret */
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_int_equal(link_add_peer(c, 2, ab), 0);
	assert_int_equal(send_seq(a, 2, 1), 0); /* forged: wrong secret */
	/* wait for the forged frame to be seen and refused */
	struct link_rx_stats rs;
	for (int i = 0; i < WAIT_MS / 10; i++) {
		link_rx_stats(b, &rs);
		if (rs.rejected)
			break;
		usleep(10 * 1000);
	}
	assert_int_equal(rs.rejected, 1);
	assert_int_equal(send_seq(c, 2, 2), 0);
	assert_int_equal(rx_wait(&rb, 1), 1);
	assert_int_equal(rb.from[0], 3);
	assert_int_equal(rb.seq[0], 2);
	link_rx_stats(b, &rs);
	assert_int_equal(rs.received, 1);
	link_stop(a);
	link_stop(b);
	link_stop(c);
	rx_destroy(&ra);
	rx_destroy(&rb);
	rx_destroy(&rc_);
}

static void listening_on_a_used_port_fails_with_a_reason(void **state)
{
	(void)state;
	struct rx ra, rb;
	char aa[128], err[256];
	rx_init(&ra);
	rx_init(&rb);
	struct link *a = start(1, &ra, NULL, aa, sizeof aa);
	struct link_cfg cfg = { .self_id = 2, .listen_addr = aa,
				.cluster_id = CLUSTER, .on_frame = on_frame,
				.ctx = &rb };
	struct link *b = NULL;
	assert_int_equal(link_start(&cfg, &b, err, sizeof err), -EADDRINUSE);
	assert_null(b);
	assert_non_null(strstr(err, "cannot listen on"));
	assert_non_null(strstr(err, aa));
	cfg.self_id = 0;
	assert_int_equal(link_start(&cfg, &b, err, sizeof err), -EINVAL);
	link_stop(a);
	rx_destroy(&ra);
	rx_destroy(&rb);
}

static void adding_a_peer_twice_is_a_noop_and_a_new_address_replaces(
	void **state)
{
	(void)state;
	struct rx ra, rb, rc_;
	char ab[128], ac[128];
	rx_init(&ra);
	rx_init(&rb);
	rx_init(&rc_);
	struct link *a = start(1, &ra, NULL, NULL, 0);
	struct link *b = start(2, &rb, NULL, ab, sizeof ab);
	struct link *c = start(3, &rc_, NULL, ac, sizeof ac);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_int_equal(send_seq(a, 2, 1), 0);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	struct link_peer_stats st;
	assert_int_equal(link_stats(a, 2, &st), 0);
	assert_int_equal(st.sent, 1); /* same peer, same counters */
	assert_int_equal(rx_wait(&rb, 1), 1);
	/* node 2 "moves" to c's address */
	assert_int_equal(link_add_peer(a, 2, ac), 0);
	assert_int_equal(send_seq(a, 2, 2), 0);
	assert_int_equal(rx_wait(&rc_, 1), 1);
	assert_int_equal(rc_.seq[0], 2);
	assert_int_equal(rx_count(&rb), 1);
	assert_int_equal(link_add_peer(a, 0, ab), -EINVAL);
	assert_int_equal(link_add_peer(a, 4, "nonsense://"), -EINVAL);
	link_stop(a);
	link_stop(b);
	link_stop(c);
	rx_destroy(&ra);
	rx_destroy(&rb);
	rx_destroy(&rc_);
}

/* ---- lanes ------------------------------------------------------------------ */

/* Poll until peer `id`'s control and bulk lanes on l are both connected
 * (or WAIT_MS passed); returns whether they are. */
static bool wait_connected(struct link *l, uint64_t id)
{
	struct link_peer_stats st;
	for (int i = 0; i < WAIT_MS / 5; i++) {
		if (link_stats(l, id, &st) == 0 &&
		    st.lane[LINK_LANE_CONTROL].connected &&
		    st.lane[LINK_LANE_BULK].connected)
			return true;
		usleep(5 * 1000);
	}
	return false;
}

/* Request callbacks that only count (bulk requests nobody answers). */
struct counter {
	pthread_mutex_t mu;
	int n, canceled;
};

static void on_count(void *ctx, int status, const uint8_t *reply, size_t len)
{
	(void)reply;
	(void)len;
	struct counter *c = ctx;
	pthread_mutex_lock(&c->mu);
	c->n++;
	if (status == -ECANCELED)
		c->canceled++;
	pthread_mutex_unlock(&c->mu);
}

static void lane_for_puts_raft_and_small_kinds_on_control_and_blocks_on_bulk(
	void **state)
{
	(void)state;
	assert_int_equal(link_lane_for(WIRE_RAFT, 0), LINK_LANE_CONTROL);
	const uint16_t control[] = { WIRE_KIND_PROPOSE, WIRE_KIND_STATUS,
				     WIRE_KIND_READ_INDEX, WIRE_KIND_CONF,
				     WIRE_KIND_TRANSFER };
	const uint16_t bulk[] = { WIRE_KIND_BLOCK_PUT, WIRE_KIND_BLOCK_GET,
				  WIRE_KIND_BLOCK_HAS, WIRE_KIND_SPARE_9,
				  WIRE_KIND_SPARE_12 };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(link_lane_for(WIRE_REQUEST, control[i]),
				 LINK_LANE_CONTROL);
		assert_int_equal(link_lane_for(WIRE_REPLY, control[i]),
				 LINK_LANE_CONTROL);
		assert_int_equal(link_lane_for(WIRE_REQUEST, bulk[i]),
				 LINK_LANE_BULK);
		assert_int_equal(link_lane_for(WIRE_REPLY, bulk[i]),
				 LINK_LANE_BULK);
	}

	/* and frames really take those lanes, requests and replies alike */
	struct rx ra, rb;
	char aa[128], ab[128];
	rx_init(&ra);
	rx_init(&rb);
	rb.echo = true;
	struct link *a = start(1, &ra, NULL, aa, sizeof aa);
	struct link *b = start(2, &rb, NULL, ab, sizeof ab);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_int_equal(link_add_peer(b, 1, aa), 0);
	struct calls c[2];
	calls_init(&c[0]);
	calls_init(&c[1]);
	assert_int_equal(link_request(a, 2, WIRE_KIND_BLOCK_GET, "get", 3,
				      WAIT_MS, on_reply, &c[0]),
			 0);
	assert_int_equal(link_request(a, 2, WIRE_KIND_STATUS, "st", 2,
				      WAIT_MS, on_reply, &c[1]),
			 0);
	assert_int_equal(send_seq(a, 2, 7), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(calls_wait(&c[i], 1, WAIT_MS), 1);
		assert_int_equal(c[i].status[0], 0);
	}
	assert_string_equal(c[0].body[0], "get");
	struct link_peer_stats sa, sb;
	assert_int_equal(link_stats(a, 2, &sa), 0);
	assert_int_equal(link_stats(b, 1, &sb), 0);
	assert_int_equal(sa.lane[LINK_LANE_CONTROL].sent, 2); /* STATUS, RAFT */
	assert_int_equal(sa.lane[LINK_LANE_BULK].sent, 1);    /* BLOCK_GET */
	assert_int_equal(sa.sent, 3);
	assert_int_equal(sb.lane[LINK_LANE_CONTROL].sent, 1); /* STATUS reply */
	assert_int_equal(sb.lane[LINK_LANE_BULK].sent, 1); /* BLOCK_GET reply */
	link_stop(a);
	link_stop(b);
	rx_destroy(&ra);
	rx_destroy(&rb);
}

#define SAT_BULK 200            /* 256 KiB requests: 50 MiB */
#define SAT_RAFT 20
#define BLOCK (256u << 10)

/* The receiving side of the saturation test. The first bulk frame holds
 * the receive thread at a gate until the test opens it, so everything
 * else queues up behind it: in the sender's lanes, TCP and nng. */
struct sat {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool gate_open;
	int bulk, raft;
	int bulk_at_last_raft; /* bulk frames seen when raft #SAT_RAFT came */
	uint32_t raft_seq[SAT_RAFT];
};

static void sat_on_frame(void *ctx, uint64_t from, const struct wire_frame *f)
{
	(void)from;
	struct sat *s = ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	if (f->type == WIRE_REQUEST) {
		s->bulk++;
		pthread_cond_broadcast(&s->cv);
		while (!s->gate_open)
			if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) ==
			    ETIMEDOUT)
				break;
		/* a slow reader: each block takes a while to store */
		pthread_mutex_unlock(&s->mu);
		usleep(1000);
		return;
	} else if (f->type == WIRE_RAFT && s->raft < SAT_RAFT) {
		s->raft_seq[s->raft++] = get32(f->body);
		if (s->raft == SAT_RAFT)
			s->bulk_at_last_raft = s->bulk;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

/* Wait until *field >= n under s->mu (or WAIT_MS); returns *field. */
static int sat_wait(struct sat *s, const int *field, int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&s->mu);
	while (*field < n)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
			break;
	int v = *field;
	pthread_mutex_unlock(&s->mu);
	return v;
}

/* 200 BLOCK_PUTs of 256 KiB are queued to a slow peer whose receive thread
 * is stuck on the first one; then 20 Raft frames. When the peer resumes,
 * all 20 Raft frames arrive, in order, after about one bulk frame each —
 * while most of the block data is still on its way. With one shared
 * queue the Raft frames would arrive after all 200. */
static void raft_frames_overtake_a_saturated_bulk_lane(void **state)
{
	(void)state;
	struct rx ra;
	struct sat s;
	memset(&s, 0, sizeof s);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	rx_init(&ra);
	char ab[128];
	struct opts ob = { .fn = sat_on_frame, .ctx = &s };
	struct link *b = start(2, NULL, &ob, ab, sizeof ab);
	struct opts oa = { .grace_ms = 60000 };
	struct link *a = start(1, &ra, &oa, NULL, 0);
	assert_int_equal(link_add_peer(a, 2, ab), 0);
	assert_true(wait_connected(a, 2));

	struct counter cnt = { .n = 0 };
	pthread_mutex_init(&cnt.mu, NULL);
	uint8_t *blk = calloc(1, BLOCK);
	assert_non_null(blk);
	for (uint32_t i = 0; i < SAT_BULK; i++) {
		put32(blk, i);
		assert_int_equal(link_request(a, 2, WIRE_KIND_BLOCK_PUT, blk,
					      BLOCK, 60000, on_count, &cnt),
				 0);
	}
	free(blk);
	assert_int_equal(sat_wait(&s, &s.bulk, 1), 1); /* b is stuck */
	for (uint32_t i = 0; i < SAT_RAFT; i++)
		assert_int_equal(send_seq(a, 2, i), 0);
	/* all Raft frames handed to nng (written to the control connection)
	 * while the bulk lane is still full of block data */
	struct link_peer_stats st;
	for (int i = 0; i < WAIT_MS / 5; i++) {
		assert_int_equal(link_stats(a, 2, &st), 0);
		if (st.lane[LINK_LANE_CONTROL].queued == 0)
			break;
		usleep(5 * 1000);
	}
	assert_int_equal(st.lane[LINK_LANE_CONTROL].queued, 0);
	assert_true(st.lane[LINK_LANE_BULK].queued > SAT_BULK / 2);
	assert_true(st.lane[LINK_LANE_BULK].queued_bytes >
		    (uint64_t)(SAT_BULK / 2) * BLOCK);
	assert_int_equal(st.dropped, 0);

	pthread_mutex_lock(&s.mu);
	s.gate_open = true;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	assert_int_equal(sat_wait(&s, &s.raft, SAT_RAFT), SAT_RAFT);
	for (uint32_t i = 0; i < SAT_RAFT; i++)
		assert_int_equal(s.raft_seq[i], i);
	print_message("bulk frames delivered before the last raft frame: "
		      "%d of %d\n",
		      s.bulk_at_last_raft, SAT_BULK);
	/* The peer takes one frame from each connection in turn, so about
	 * one bulk frame per Raft frame gets in first (a Raft frame still
	 * being read when its turn comes loses a round); with one shared
	 * queue all SAT_BULK would. */
	assert_true(s.bulk_at_last_raft <= SAT_BULK / 4);
	/* and the block data still flows: all of it arrives */
	assert_int_equal(sat_wait(&s, &s.bulk, SAT_BULK), SAT_BULK);
	assert_int_equal(link_stats(a, 2, &st), 0);
	assert_int_equal(st.lane[LINK_LANE_CONTROL].sent, SAT_RAFT);
	assert_int_equal(st.lane[LINK_LANE_BULK].sent, SAT_BULK);
	assert_int_equal(st.dropped, 0);
	link_stop(a);
	assert_int_equal(cnt.n, SAT_BULK);
	assert_int_equal(cnt.canceled, SAT_BULK); /* nobody answered */
	link_stop(b);
	rx_destroy(&ra);
	pthread_mutex_destroy(&cnt.mu);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
}

/* A peer that is down, bulk lane bounded at 1 MiB: three 256 KiB frames
 * fit, the fourth is dropped (a small one still fits the rest); the
 * control lane is untouched and takes its own queue_max frames. */
static void bulk_lane_is_bounded_in_bytes_and_drops_no_raft_frame(
	void **state)
{
	(void)state;
	struct rx ra;
	char dead[128], dead2[128];
	rx_init(&ra);
	struct opts o = { .queue_max = 16, .bulk_bytes = 1u << 20,
			  .grace_ms = 60000 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct counter cnt = { .n = 0 };
	pthread_mutex_init(&cnt.mu, NULL);
	uint8_t *blk = calloc(1, (1u << 20) + BLOCK);
	assert_non_null(blk);

	for (int i = 0; i < 5; i++)
		assert_int_equal(link_request(a, 9, WIRE_KIND_BLOCK_PUT, blk,
					      BLOCK, 60000, on_count, &cnt),
				 i < 3 ? 0 : -EAGAIN);
	/* a small frame still fits the remaining bytes, a block does not */
	assert_int_equal(link_request(a, 9, WIRE_KIND_BLOCK_HAS, blk, 8,
				      60000, on_count, &cnt),
			 0);
	assert_int_equal(link_reply(a, 9, 5, WIRE_KIND_BLOCK_GET, blk, BLOCK),
			 -EAGAIN);
	for (uint32_t i = 0; i < 20; i++)
		assert_int_equal(send_seq(a, 9, i), i < 16 ? 0 : -EAGAIN);

	struct link_peer_stats st;
	assert_int_equal(link_stats(a, 9, &st), 0);
	const struct link_lane_stats *bl = &st.lane[LINK_LANE_BULK];
	const struct link_lane_stats *cl = &st.lane[LINK_LANE_CONTROL];
	size_t flen = WIRE_HDR_LEN + WIRE_KIND_LEN + BLOCK + WIRE_CRC_LEN;
	size_t hlen = WIRE_HDR_LEN + WIRE_KIND_LEN + 8 + WIRE_CRC_LEN;
	assert_int_equal(bl->sent, 4);
	assert_int_equal(bl->dropped, 3);
	assert_int_equal(bl->queued, 4);
	assert_int_equal(bl->queued_bytes, 3 * flen + hlen);
	assert_int_equal(cl->sent, 16);
	assert_int_equal(cl->dropped, 4);
	assert_int_equal(cl->queued, 16);
	assert_int_equal(st.sent, 20);
	assert_int_equal(st.dropped, 7);
	assert_false(st.connected);

	/* one frame larger than the byte bound still fits an empty lane */
	dead_addr(dead2, sizeof dead2);
	assert_int_equal(link_add_peer(a, 8, dead2), 0);
	assert_int_equal(link_request(a, 8, WIRE_KIND_BLOCK_PUT, blk,
				      (1u << 20) + BLOCK, 60000, on_count,
				      &cnt),
			 0);
	assert_int_equal(link_request(a, 8, WIRE_KIND_BLOCK_HAS, blk, 1,
				      60000, on_count, &cnt),
			 -EAGAIN);
	free(blk);
	link_stop(a);
	assert_int_equal(cnt.n, 5); /* the accepted ones, canceled */
	assert_int_equal(cnt.canceled, 5);
	pthread_mutex_destroy(&cnt.mu);
	rx_destroy(&ra);
}

/* A bounded bulk lane drains when the peer comes up, in order. */
static void full_bulk_lane_drains_in_order_on_connect(void **state)
{
	(void)state;
	struct rx ra, rc_;
	char dead[128];
	rx_init(&ra);
	rx_init(&rc_);
	struct opts o = { .bulk_bytes = 1u << 20, .grace_ms = 60000 };
	struct link *a = start(1, &ra, &o, NULL, 0);
	dead_addr(dead, sizeof dead);
	assert_int_equal(link_add_peer(a, 9, dead), 0);
	struct counter cnt = { .n = 0 };
	pthread_mutex_init(&cnt.mu, NULL);
	uint8_t *blk = calloc(1, BLOCK);
	assert_non_null(blk);
	int queued = 0;
	for (uint32_t i = 0; i < 6; i++) {
		put32(blk, i);
		if (link_request(a, 9, WIRE_KIND_BLOCK_PUT, blk, BLOCK, 60000,
				 on_count, &cnt) == 0)
			queued++;
	}
	assert_int_equal(queued, 3);
	assert_int_equal(send_seq(a, 9, 100), 0);
	struct opts oc = { .addr = dead };
	struct link *c = start(9, &rc_, &oc, NULL, 0);
	assert_int_equal(rx_wait(&rc_, 4), 4);
	int bulk_seen = 0;
	for (int i = 0; i < 4; i++) {
		if (rc_.type[i] == WIRE_REQUEST)
			assert_int_equal(rc_.seq[i], (uint32_t)bulk_seen++);
		else
			assert_int_equal(rc_.seq[i], 100);
	}
	assert_int_equal(bulk_seen, 3);
	/* room again */
	struct link_peer_stats st;
	for (int i = 0; i < WAIT_MS / 5; i++) {
		assert_int_equal(link_stats(a, 9, &st), 0);
		if (st.lane[LINK_LANE_BULK].queued == 0)
			break;
		usleep(5 * 1000);
	}
	assert_int_equal(st.lane[LINK_LANE_BULK].queued_bytes, 0);
	assert_int_equal(link_request(a, 9, WIRE_KIND_BLOCK_PUT, blk, BLOCK,
				      60000, on_count, &cnt),
			 0);
	free(blk);
	assert_int_equal(rx_wait(&rc_, 5), 5);
	link_stop(a);
	link_stop(c);
	pthread_mutex_destroy(&cnt.mu);
	rx_destroy(&ra);
	rx_destroy(&rc_);
}

/* ---- TLS -------------------------------------------------------------------- */

/* A throwaway PKI in a temporary directory, made with the openssl CLI:
 * ca1 signs n1, n2; ca2 signs n3 (a stranger). */
struct pki {
	char dir[64];
};

static bool pki_make(struct pki *p)
{
	snprintf(p->dir, sizeof p->dir, "/tmp/sandfs-tls-XXXXXX");
	if (!mkdtemp(p->dir))
		return false;
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "set -e; cd %s; exec >log 2>&1\n"
		 "ca() { openssl req -x509 -newkey ec -pkeyopt "
		 "ec_paramgen_curve:prime256v1 -nodes -keyout $1.key -out "
		 "$1.pem -days 2 -subj /CN=sandfs-test-$1; }\n"
		 "node() { openssl req -newkey ec -pkeyopt "
		 "ec_paramgen_curve:prime256v1 -nodes -keyout $1.key -out "
		 "$1.csr -subj /CN=$1; openssl x509 -req -in $1.csr -CA "
		 "$2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2; }\n"
		 "ca ca1; ca ca2; node n1 ca1; node n2 ca1; node n3 ca2\n",
		 p->dir);
	return system(cmd) == 0;
}

static void pki_rm(struct pki *p)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", p->dir);
	assert_int_equal(system(cmd), 0);
}

/* Options for node `n` (n1..n3) trusting CA `ca`; strings in buf. */
static struct opts tls_opts(const struct pki *p, const char *n,
			    const char *ca, char buf[3][128])
{
	snprintf(buf[0], 128, "%s/%s.pem", p->dir, n);
	snprintf(buf[1], 128, "%s/%s.key", p->dir, n);
	snprintf(buf[2], 128, "%s/%s.pem", p->dir, ca);
	struct opts o = { .tls_cert = buf[0], .tls_key = buf[1],
			  .tls_ca = buf[2] };
	return o;
}

/* Two nodes with certificates from the cluster CA exchange frames and a
 * request over tls+tcp (one dialed with a tcp:// address, converted); a
 * node whose certificate comes from another CA, and a node without TLS,
 * get nothing through in either direction. */
static void tls_peers_talk_and_strangers_are_refused(void **state)
{
	(void)state;
	struct pki pki;
	if (!pki_make(&pki)) {
		print_message("openssl could not make test certificates\n");
		fail();
	}
	char b1[3][128], b2[3][128], b3[3][128];
	struct opts o1 = tls_opts(&pki, "n1", "ca1", b1);
	struct opts o2 = tls_opts(&pki, "n2", "ca1", b2);
	struct opts o3 = tls_opts(&pki, "n3", "ca1", b3); /* trusts ca1 */
	struct rx ra, rb, rc_, rd;
	char aa[128], ab[128], ac[128], plain_b[128];
	rx_init(&ra);
	rx_init(&rb);
	rx_init(&rc_);
	rx_init(&rd);
	rb.echo = true;
	struct link *a = start(1, &ra, &o1, aa, sizeof aa);
	struct link *b = start(2, &rb, &o2, ab, sizeof ab);
	struct link *c = start(3, &rc_, &o3, ac, sizeof ac);
	struct link *d = start(4, &rd, NULL, NULL, 0);
	assert_int_equal(strncmp(aa, "tls+tcp://127.0.0.1:", 20), 0);
	assert_int_equal(strncmp(ab, "tls+tcp://", 10), 0);
	assert_true(strcmp(ab + 20, "0") != 0); /* the real port */
	snprintf(plain_b, sizeof plain_b, "%s", ab + 4); /* tcp://... */

	/* members: a dials b by its tcp:// address */
	assert_int_equal(link_add_peer(a, 2, plain_b), 0);
	assert_int_equal(link_add_peer(b, 1, aa), 0);
	assert_true(wait_connected(a, 2));
	for (uint32_t i = 0; i < 10; i++) {
		assert_int_equal(send_seq(a, 2, i), 0);
		assert_int_equal(send_seq(b, 1, 100 + i), 0);
	}
	assert_int_equal(rx_wait(&rb, 10), 10);
	assert_int_equal(rx_wait(&ra, 10), 10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(rb.from[i], 1);
		assert_int_equal(rb.seq[i], (uint32_t)i);
		assert_int_equal(ra.seq[i], 100u + (uint32_t)i);
	}
	struct calls cl;
	calls_init(&cl);
	assert_int_equal(link_request(a, 2, WIRE_KIND_BLOCK_GET, "blk", 3,
				      WAIT_MS, on_reply, &cl),
			 0);
	assert_int_equal(calls_wait(&cl, 1, WAIT_MS), 1);
	assert_int_equal(cl.status[0], 0);
	assert_string_equal(cl.body[0], "blk");

	/* strangers: c (cert from ca2) and d (no TLS) dial b; b dials c */
	assert_int_equal(link_add_peer(c, 2, ab), 0);
	assert_int_equal(link_add_peer(d, 2, plain_b), 0);
	assert_int_equal(link_add_peer(b, 3, ac), 0);
	assert_int_equal(send_seq(c, 2, 900), 0);
	assert_int_equal(send_seq(d, 2, 901), 0);
	assert_int_equal(send_seq(b, 3, 902), 0);
	/* Give them many reconnect rounds (20..200 ms back-off), then a
	 * member's frame; a refusal cannot be observed directly, so this
	 * bounded wait is what makes "nothing got through" meaningful. */
	usleep(1000 * 1000);
	assert_int_equal(send_seq(a, 2, 10), 0);
	/* 10 frames, 1 request, this frame: nothing from c or d */
	assert_int_equal(rx_wait(&rb, 12), 12);
	assert_int_equal(rb.seq[11], 10);
	assert_int_equal(rb.from[11], 1);
	usleep(100 * 1000);
	assert_int_equal(rx_count(&rb), 12);
	assert_int_equal(rx_count(&rc_), 0);
	struct link_peer_stats st;
	assert_int_equal(link_stats(c, 2, &st), 0);
	assert_false(st.connected);
	assert_int_equal(st.lane[LINK_LANE_CONTROL].queued, 1);
	assert_int_equal(link_stats(d, 2, &st), 0);
	assert_false(st.connected);
	assert_int_equal(link_stats(b, 3, &st), 0);
	assert_false(st.connected);
	struct link_rx_stats rs;
	link_rx_stats(b, &rs);
	assert_int_equal(rs.rejected, 0); /* refused before any frame */
	link_stop(a);
	link_stop(b);
	link_stop(c);
	link_stop(d);
	rx_destroy(&ra);
	rx_destroy(&rb);
	rx_destroy(&rc_);
	rx_destroy(&rd);
	pki_rm(&pki);
}

/* Bad TLS settings fail link_start with -EINVAL/-ENOENT and a reason that
 * names the problem. */
static void tls_misconfiguration_fails_start_with_a_reason(void **state)
{
	(void)state;
	struct pki pki;
	if (!pki_make(&pki))
		fail_msg("openssl could not make test certificates");
	char b1[3][128], junk[128], err[512];
	struct opts o = tls_opts(&pki, "n1", "ca1", b1);
	struct rx r;
	rx_init(&r);
	struct link_cfg cfg = { .self_id = 1,
				.listen_addr = "tcp://127.0.0.1:0",
				.cluster_id = CLUSTER, .on_frame = on_frame,
				.ctx = &r, .tls_cert = o.tls_cert };
	struct link *l = NULL;
	/* only one of the three */
	assert_int_equal(link_start(&cfg, &l, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "together"));
	/* a missing file */
	cfg.tls_key = "/nonexistent/n1.key";
	cfg.tls_ca = o.tls_ca;
	assert_int_equal(link_start(&cfg, &l, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/n1.key"));
	/* a key that is not a key */
	snprintf(junk, sizeof junk, "%s/log", pki.dir);
	cfg.tls_key = junk;
	assert_int_equal(link_start(&cfg, &l, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "certificate/key"));
	/* a CA file that is not a certificate */
	cfg.tls_key = o.tls_key;
	cfg.tls_ca = junk;
	assert_int_equal(link_start(&cfg, &l, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "CA file"));
	assert_null(l);
	/* and the right three work */
	cfg.tls_ca = o.tls_ca;
	assert_int_equal(link_start(&cfg, &l, err, sizeof err), 0);
	link_stop(l);
	rx_destroy(&r);
	pki_rm(&pki);
}

int main(void)
{
	if (!getenv("SANDFS_LOG")) /* expected warnings are noise here */
		log_set_level(LOG_LVL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(two_links_exchange_frames_in_order_with_sender_id),
		cmocka_unit_test(three_links_all_to_all_deliver_every_frame),
		cmocka_unit_test(requests_get_their_own_replies),
		cmocka_unit_test(request_to_dead_peer_times_out_exactly_once),
		cmocka_unit_test(request_to_unreachable_peer_is_refused_after_grace),
		cmocka_unit_test(removing_a_peer_fails_its_pending_requests),
		cmocka_unit_test(stop_cancels_pending_requests_exactly_once),
		cmocka_unit_test(dead_peer_does_not_delay_a_live_peer),
		cmocka_unit_test(queue_bound_is_respected_and_queue_drains_on_connect),
		cmocka_unit_test(malformed_frames_are_counted_and_dropped),
		cmocka_unit_test(peers_with_different_secrets_cannot_talk),
		cmocka_unit_test(listening_on_a_used_port_fails_with_a_reason),
		cmocka_unit_test(adding_a_peer_twice_is_a_noop_and_a_new_address_replaces),
		cmocka_unit_test(lane_for_puts_raft_and_small_kinds_on_control_and_blocks_on_bulk),
		cmocka_unit_test(raft_frames_overtake_a_saturated_bulk_lane),
		cmocka_unit_test(bulk_lane_is_bounded_in_bytes_and_drops_no_raft_frame),
		cmocka_unit_test(full_bulk_lane_drains_in_order_on_connect),
		cmocka_unit_test(tls_peers_talk_and_strangers_are_refused),
		cmocka_unit_test(tls_misconfiguration_fails_start_with_a_reason),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	/* nng reaps closed sockets and pipes on a thread of its own: let it
	 * finish before exit, or LeakSanitizer may catch objects still on
	 * its list (seen once in an ASan run). */
	nng_fini();
	return failed;
}
