/*
 * blkfetch.c — one block from the peers (see blkfetch.h).
 *
 * The request waits for its reply on a condition variable. The link
 * always calls back exactly once (with the reply, a timeout or a
 * cancellation), so the waiter and the callback share the request by a
 * reference count and whichever is last frees it.
 */
#include "fs/blkfetch.h"

#include "fs/be.h"
#include "transport/link.h"
#include "transport/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct req {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	bool done;
	int status;
	uint8_t *reply;
	size_t len;
};

static void req_unref(struct req *r)
{
	pthread_mutex_lock(&r->mu);
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (last) {
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cv);
		free(r->reply);
		free(r);
	}
}

static void req_cb(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct req *r = ctx;
	pthread_mutex_lock(&r->mu);
	if (status == 0) {
		r->reply = malloc(len ? len : 1);
		if (r->reply) {
			memcpy(r->reply, reply, len);
			r->len = len;
		} else {
			status = -ENOMEM;
		}
	}
	r->status = status;
	r->done = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	req_unref(r);
}

/* One BLOCK_GET to node `to`: 0 and the reply (caller frees), or -errno. */
static int get_from(struct link *l, uint64_t to, const uint8_t *hash,
                    uint32_t timeout_ms, uint8_t **reply, size_t *len)
{
	struct req *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	r->refs = 2;
	int rc = link_request(l, to, WIRE_KIND_BLOCK_GET, hash, BLK_HASH_LEN,
	                      timeout_ms, req_cb, r);
	if (rc < 0) {
		r->refs = 1;
		req_unref(r);
		return rc;
	}
	/* The link calls back by its own timeout; the extra seconds guard
	 * against waiting forever. */
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000 + 3;
	pthread_mutex_lock(&r->mu);
	while (!r->done)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
			break;
	rc = r->done ? r->status : -ETIMEDOUT;
	if (rc == 0) {
		*reply = r->reply;
		*len = r->len;
		r->reply = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	req_unref(r);
	return rc;
}

/* See blkfetch.h. */
int blkfetch(struct link *l, const uint64_t *peers, size_t n,
             struct blk_store *bs, const uint8_t hash[BLK_HASH_LEN],
             uint32_t timeout_ms, uint64_t *from)
{
	if (!timeout_ms)
		timeout_ms = 5000;
	bool lacks = false, wrong = false;
	char hex[BLK_HEX_LEN + 1];
	blk_hex(hash, hex);
	for (size_t i = 0; i < n; i++) {
		uint8_t *rep = NULL;
		size_t len = 0;
		int rc = get_from(l, peers[i], hash, timeout_ms, &rep, &len);
		if (rc < 0) {
			LOG(DEBUG, "block %.16s: node %llu: %s", hex,
			    (unsigned long long)peers[i], strerror(-rc));
			continue;
		}
		int st = len >= 4 ? (int32_t)be_get32(rep) : -EPROTO;
		if (st != 0) {
			lacks = true;
			free(rep);
			continue;
		}
		rc = blk_put_hashed(bs, hash, rep + 4, len - 4);
		free(rep);
		if (rc == -EBADMSG) {
			LOG(WARN,
			    "block %.16s: node %llu sent content that does not "
			    "match its hash",
			    hex, (unsigned long long)peers[i]);
			wrong = true;
			continue;
		}
		if (rc < 0)
			return rc;
		*from = peers[i];
		return 0;
	}
	return wrong ? -EBADMSG : lacks ? -ENOENT : -EHOSTUNREACH;
}
