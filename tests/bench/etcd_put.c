/*
 * etcd_put.c — closed-loop put load against etcd's JSON gateway, the
 * reference the proposal benchmark compares sandfs with.
 *
 *   etcd_put HOST PORT COUNT CONCURRENCY SIZE
 *
 * CONCURRENCY threads each keep one HTTP/1.1 keep-alive connection to
 * HOST:PORT and send `POST /v3/kv/put {"key":B64,"value":B64}` one after
 * the other until COUNT puts completed in total; a put's latency runs from
 * the first byte sent to the last byte of the reply. Prints one line in the
 * format of `sandfs bench-propose`:
 *   ok count=.. failed=.. concurrency=.. size=.. secs=.. ops_per_s=..
 *   p50_us=.. p99_us=..
 * Exit status 1 when a put failed (a non-200 reply or a broken connection).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct load {
	struct sockaddr_in addr;
	const char *host;
	int port;
	uint64_t count;
	size_t size;
	atomic_uint_fast64_t next;   /* next put number to issue */
	atomic_uint_fast64_t failed;
	uint64_t *lat_ns;            /* count entries, slot = put number */
};

struct worker {
	struct load *ld;
	pthread_t thread;
	int id;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Base64 of len bytes of in into out (room for 4*((len+2)/3)+1). */
static size_t b64(const uint8_t *in, size_t len, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	out[o] = 0;
	return o;
}

/* A connected TCP socket to the load's address, or -1. */
static int dial(const struct load *ld)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&ld->addr, sizeof(ld->addr))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one HTTP response into buf (cap bytes); leftover bytes of a next
 * response cannot exist (one request in flight per connection). Returns
 * the status code, or -1 on a broken connection or a reply we do not
 * understand. Handles Content-Length and chunked bodies. */
static int read_reply(int fd, char *buf, size_t cap)
{
	size_t have = 0;
	char *body = NULL;
	for (;;) {
		if (have + 1 >= cap)
			return -1;
		ssize_t n = recv(fd, buf + have, cap - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = 0;
		if (!body) {
			char *e = strstr(buf, "\r\n\r\n");
			if (!e)
				continue;
			body = e + 4;
		}
		int status = 0;
		if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
			return -1;
		size_t hdrlen = (size_t)(body - buf);
		size_t blen = have - hdrlen;
		/* Header lookup limited to the header block. */
		char saved = *body;
		*body = 0;
		char *cl = strcasestr(buf, "\r\ncontent-length:");
		int chunked = strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL;
		*body = saved;
		if (cl) {
			size_t want = strtoul(cl + 17, NULL, 10);
			if (blen >= want)
				return status;
		} else if (chunked) {
			/* Done when the terminating zero-size chunk arrived. */
			if (blen >= 5 && !memcmp(buf + have - 5, "0\r\n\r\n", 5))
				return status;
		} else {
			return -1; /* close-delimited bodies: not expected */
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct load *ld = w->ld;
	uint8_t *val = malloc(ld->size ? ld->size : 1);
	size_t vcap = 4 * ((ld->size + 2) / 3) + 1;
	char *v64 = malloc(vcap);
	size_t reqcap = vcap + 512;
	char *req = malloc(reqcap);
	char *body = malloc(vcap + 128);
	char reply[16384];
	if (!val || !v64 || !req || !body)
		goto out;
	memset(val, 'v', ld->size);
	b64(val, ld->size, v64);
	int fd = dial(ld);
	for (;;) {
		uint64_t i = atomic_fetch_add(&ld->next, 1);
		if (i >= ld->count)
			break;
		char key[64], k64[96];
		int kl = snprintf(key, sizeof(key), "bench/%d/%llu", w->id,
				  (unsigned long long)i);
		b64((const uint8_t *)key, (size_t)kl, k64);
		int bl = snprintf(body, vcap + 128,
				  "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
		int rl = snprintf(req, reqcap,
				  "POST /v3/kv/put HTTP/1.1\r\nHost: %s:%d\r\n"
				  "Content-Type: application/json\r\n"
				  "Content-Length: %d\r\n\r\n%s",
				  ld->host, ld->port, bl, body);
		uint64_t t0 = mono_ns();
		int status = -1;
		for (int attempt = 0; attempt < 2 && status < 0; attempt++) {
			if (fd < 0)
				fd = dial(ld);
			if (fd >= 0 && send_all(fd, req, (size_t)rl) == 0)
				status = read_reply(fd, reply, sizeof(reply));
			if (status < 0 && fd >= 0) {
				close(fd);
				fd = -1;
			}
		}
		ld->lat_ns[i] = mono_ns() - t0;
		if (status != 200)
			atomic_fetch_add(&ld->failed, 1);
	}
	if (fd >= 0)
		close(fd);
out:
	free(val);
	free(v64);
	free(req);
	free(body);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr,
			"usage: etcd_put HOST PORT COUNT CONCURRENCY SIZE\n");
		return 2;
	}
	struct load ld = {0};
	ld.host = argv[1];
	ld.port = atoi(argv[2]);
	ld.count = strtoull(argv[3], NULL, 10);
	unsigned long conc = strtoul(argv[4], NULL, 10);
	ld.size = strtoul(argv[5], NULL, 10);
	if (ld.port <= 0 || ld.port > 65535 || !ld.count || !conc ||
	    conc > 1024 || ld.size > (1u << 20) ||
	    inet_pton(AF_INET, ld.host, &ld.addr.sin_addr) != 1) {
		fprintf(stderr, "etcd_put: bad arguments (HOST must be an "
				"IPv4 address)\n");
		return 2;
	}
	if (conc > ld.count)
		conc = (unsigned long)ld.count;
	ld.addr.sin_family = AF_INET;
	ld.addr.sin_port = htons((uint16_t)ld.port);
	atomic_init(&ld.next, 0);
	atomic_init(&ld.failed, 0);
	ld.lat_ns = calloc(ld.count, sizeof(uint64_t));
	struct worker *ws = calloc(conc, sizeof(*ws));
	if (!ld.lat_ns || !ws) {
		fprintf(stderr, "etcd_put: out of memory\n");
		return 1;
	}
	uint64_t t0 = mono_ns();
	for (unsigned long i = 0; i < conc; i++) {
		ws[i].ld = &ld;
		ws[i].id = (int)i;
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i])) {
			fprintf(stderr, "etcd_put: cannot start a thread\n");
			return 1;
		}
	}
	for (unsigned long i = 0; i < conc; i++)
		pthread_join(ws[i].thread, NULL);
	double secs = (double)(mono_ns() - t0) / 1e9;
	qsort(ld.lat_ns, ld.count, sizeof(uint64_t), cmp_u64);
	uint64_t failed = atomic_load(&ld.failed);
	printf("ok count=%llu failed=%llu concurrency=%lu size=%zu secs=%.3f "
	       "ops_per_s=%.0f p50_us=%.1f p99_us=%.1f\n",
	       (unsigned long long)ld.count, (unsigned long long)failed, conc,
	       ld.size, secs, (double)ld.count / secs,
	       (double)ld.lat_ns[ld.count / 2] / 1e3,
	       (double)ld.lat_ns[ld.count * 99 / 100] / 1e3);
	free(ld.lat_ns);
	free(ws);
	return failed ? 1 : 0;
}
