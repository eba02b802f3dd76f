/*
 * inval.c — queue + thread for kernel cache invalidations (see inval.h).
 */
#define FUSE_USE_VERSION 35
#include "fs/inval.h"
#include "fs/mono.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/itab.h"
#include "transport/log.h"

struct inval_item {
	struct inval_item *next;
	uint64_t ino;      /* parent for an entry item */
	int data;          /* inode item: drop pages too */
	size_t name_len;   /* > 0: an entry item */
	char name[];
};

struct inval {
	struct fuse_session *se;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;              /* new items or stop */
	pthread_cond_t drained;         /* done advanced, or the thread ended */
	struct inval_item *head, *tail; /* guarded by mu */
	uint64_t pushed, done;          /* guarded by mu: items queued / finished */
	size_t n;                       /* guarded by mu */
	bool stop;                      /* guarded by mu */
	bool exited;                    /* guarded by mu: the thread ended */
	uint64_t dropped, sent;         /* guarded by mu */
};

/* Send one invalidation; -ENOENT (not cached) is the normal case. */
static void send_one(struct inval *iv, const struct inval_item *it)
{
	int rc;
	if (it->name_len)
		rc = fuse_lowlevel_notify_inval_entry(iv->se, it->ino, it->name,
						      it->name_len);
	else
		rc = fuse_lowlevel_notify_inval_inode(iv->se, it->ino,
						      it->data ? 0 : -1, 0);
	if (rc && rc != -ENOENT)
		LOG(DEBUG, "invalidate %s %llu: %s", it->name_len ? "entry" : "inode",
		    (unsigned long long)it->ino, strerror(-rc));
}

/* The thread: pop and send until stopped. */
static void *inval_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-inval");
	struct inval *iv = arg;
	pthread_mutex_lock(&iv->mu);
	for (;;) {
		while (!iv->stop && !iv->head)
			pthread_cond_wait(&iv->cv, &iv->mu);
		if (iv->stop)
			break;
		struct inval_item *it = iv->head;
		iv->head = it->next;
		if (!iv->head)
			iv->tail = NULL;
		iv->n--;
		pthread_mutex_unlock(&iv->mu);
		send_one(iv, it);
		free(it);
		pthread_mutex_lock(&iv->mu);
		iv->sent++;
		iv->done++;
		pthread_cond_broadcast(&iv->drained);
	}
	iv->exited = true;
	pthread_cond_broadcast(&iv->drained);
	pthread_mutex_unlock(&iv->mu);
	return NULL;
}

int inval_start(struct fuse_session *se, struct inval **out)
{
	struct inval *iv = calloc(1, sizeof(*iv));
	if (!iv)
		return -ENOMEM;
	iv->se = se;
	pthread_mutex_init(&iv->mu, NULL);
	pthread_cond_init(&iv->cv, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&iv->drained, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&iv->thread, NULL, inval_main, iv);
	if (rc) {
		pthread_mutex_destroy(&iv->mu);
		pthread_cond_destroy(&iv->cv);
		pthread_cond_destroy(&iv->drained);
		free(iv);
		return -rc;
	}
	*out = iv;
	return 0;
}

int inval_quiesce(struct inval *iv, uint32_t timeout_ms)
{
	if (!iv)
		return 0;
	struct timespec dl = mono_deadline(timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&iv->mu);
	iv->stop = true;
	pthread_cond_signal(&iv->cv);
	while (!iv->exited && rc == 0)
		if (pthread_cond_timedwait(&iv->drained, &iv->mu, &dl) == ETIMEDOUT)
			rc = -ETIMEDOUT;
	if (iv->exited)
		rc = 0;
	pthread_mutex_unlock(&iv->mu);
	return rc;
}

void inval_stop(struct inval *iv)
{
	if (!iv)
		return;
	pthread_mutex_lock(&iv->mu);
	iv->stop = true;
	pthread_cond_signal(&iv->cv);
	pthread_mutex_unlock(&iv->mu);
	pthread_join(iv->thread, NULL);
	while (iv->head) {
		struct inval_item *it = iv->head;
		iv->head = it->next;
		free(it);
	}
	pthread_mutex_destroy(&iv->mu);
	pthread_cond_destroy(&iv->cv);
	pthread_cond_destroy(&iv->drained);
	free(iv);
}

/* Append it (owned) to the queue, or drop it when full. */
static int push(struct inval *iv, struct inval_item *it)
{
	pthread_mutex_lock(&iv->mu);
	if (iv->n >= INVAL_QUEUE_MAX || iv->stop) {
		if (iv->dropped++ % 10000 == 0)
			LOG(WARN, "kernel invalidation queue full; dropped %llu so "
				  "far (caches expire after their timeout)",
			    (unsigned long long)iv->dropped);
		pthread_mutex_unlock(&iv->mu);
		free(it);
		return -EAGAIN;
	}
	it->next = NULL;
	if (iv->tail)
		iv->tail->next = it;
	else
		iv->head = it;
	iv->tail = it;
	iv->n++;
	iv->pushed++;
	pthread_cond_signal(&iv->cv);
	pthread_mutex_unlock(&iv->mu);
	return 0;
}

void inval_entry(struct inval *iv, uint64_t parent, const char *name,
		 size_t name_len)
{
	if (!iv || !name_len || name_len > ITAB_NAME_MAX)
		return;
	struct inval_item *it = malloc(sizeof(*it) + name_len + 1);
	if (!it)
		return;
	it->ino = parent;
	it->data = 0;
	it->name_len = name_len;
	memcpy(it->name, name, name_len);
	it->name[name_len] = 0;
	(void)push(iv, it);
}

int inval_inode(struct inval *iv, uint64_t ino, int data)
{
	if (!iv || !ino)
		return 0;
	struct inval_item *it = malloc(sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->ino = ino;
	it->data = data;
	it->name_len = 0;
	return push(iv, it);
}

int inval_settle(struct inval *iv, uint32_t timeout_ms)
{
	if (!iv)
		return 0;
	struct timespec dl = mono_deadline(timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&iv->mu);
	uint64_t target = iv->pushed;
	while (iv->done < target && !iv->stop && rc == 0)
		if (pthread_cond_timedwait(&iv->drained, &iv->mu, &dl) == ETIMEDOUT)
			rc = -ETIMEDOUT;
	pthread_mutex_unlock(&iv->mu);
	return rc;
}

void inval_counters(struct inval *iv, uint64_t *dropped, uint64_t *sent)
{
	pthread_mutex_lock(&iv->mu);
	*dropped = iv->dropped;
	*sent = iv->sent;
	pthread_mutex_unlock(&iv->mu);
}
