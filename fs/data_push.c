/*
 * data_push.c — a flush's blocks to a majority of the voters (the push) and
 * to this node's store (the store threads); the write path is described
 * in data.c.
 */
#include "fs/data_internal.h"

/* ---- the majority push ------------------------------------------------------ */


struct push_req {
	struct push *p;
	uint32_t block;
	uint32_t peer;
};

static void push_unref_locked(struct push *p, bool *freed)
{
	*freed = --p->refs == 0;
}

static void push_free(struct push *p)
{
	for (size_t i = 0; i < p->npeers; i++)
		free(p->peer[i].again);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->acks);
	free(p->fails);
	free(p->stored);
	free(p);
}

void data_push_unref(struct push *p)
{
	bool freed;
	pthread_mutex_lock(&p->mu);
	push_unref_locked(p, &freed);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
}

/* Fail every block not yet sent to peer i (under p->mu). */
static void push_kill_peer(struct push *p, size_t i)
{
	struct push_peer *pp = &p->peer[i];
	pp->dead = true;
	for (size_t b = pp->next; b < p->nblocks; b++)
		p->fails[b]++;
	pp->next = p->nblocks;
	for (size_t k = 0; k < pp->n_again; k++)
		p->fails[pp->again[k]]++;
	pp->n_again = 0;
}

/* link_reply_fn for one BLOCK_PUT. */
static void push_cb(void *ctx, int status, const uint8_t *reply, size_t len)
{
	struct push_req *r = ctx;
	struct push *p = r->p;
	pthread_mutex_lock(&p->mu);
	struct push_peer *pp = &p->peer[r->peer];
	pp->inflight--;
	int st = status;
	if (st == 0)
		st = len >= 4 ? (int32_t)be_get32(reply) : -EPROTO;
	if (st == 0) {
		p->acks[r->block]++;
	} else if (status == 0 && st == -EAGAIN && !pp->dead) {
		/* The peer's request queue is full: not a failure, send this
		 * block to it again a little later (each block is at most once
		 * in flight or in `again` per peer, so it fits). */
		pp->again[pp->n_again++] = r->block;
		pp->again_at = mono_ms() + PUSH_AGAIN_MS;
	} else {
		p->fails[r->block]++;
		if (status == 0 && st == -ENOSPC)
			p->peer_err = -ENOSPC;
		if (status != 0 && !pp->dead) {
			/* No answer at all: do not queue more behind it. */
			LOG(WARN, "block push to node %llu failed: %s",
			    (unsigned long long)pp->id, strerror(-status));
			push_kill_peer(p, r->peer);
		}
	}
	bool freed;
	push_unref_locked(p, &freed);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
	free(r);
}

struct push *data_push_new(const struct peerset *ps, size_t nblocks)
{
	struct push *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->acks = calloc(nblocks, sizeof *p->acks);
	p->fails = calloc(nblocks, sizeof *p->fails);
	p->stored = calloc(nblocks, 1);
	if (!p->acks || !p->fails || !p->stored) {
		free(p->acks);
		free(p->fails);
		free(p->stored);
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	cond_init_mono(&p->cv);
	p->refs = 1;
	p->nblocks = nblocks;
	p->need = ps->need;
	p->npeers = ps->n_voters;
	for (size_t i = 0; i < ps->n_voters; i++) {
		p->peer[i].id = ps->voters[i];
		p->peer[i].again = calloc(nblocks, sizeof(uint32_t));
		if (!p->peer[i].again) {
			push_free(p);
			return NULL;
		}
	}
	return p;
}

/* Send what the window allows (caller holds p->mu; drops it around
 * link_request so that replies are not held up). blocks[b].buf is the
 * body: hash then data; lens[b] the data length. */
void data_push_pump(struct data *d, struct push *p,
		      const struct dblock *blocks, const uint32_t *lens)
{
	for (size_t i = 0; i < p->npeers; i++) {
		struct push_peer *pp = &p->peer[i];
		while (!pp->dead && pp->inflight < PUSH_WINDOW) {
			/* Blocks the peer was too busy for come first, once
			 * their delay passed; then the next new one. */
			size_t b;
			if (pp->n_again && mono_ms() >= pp->again_at)
				b = pp->again[--pp->n_again];
			else if (pp->next < p->ready)
				b = pp->next++;
			else
				break;
			/* Enough copies of this block already? Skip it. */
			if (p->acks[b] >= p->need)
				continue;
			struct push_req *r = malloc(sizeof *r);
			if (!r) {
				pp->again[pp->n_again++] = (uint32_t)b;
				return;
			}
			r->p = p;
			r->block = (uint32_t)b;
			r->peer = (uint32_t)i;
			pp->inflight++;
			p->refs++;
			pthread_mutex_unlock(&p->mu);
			int rc = link_request(d->link, pp->id,
					      WIRE_KIND_BLOCK_PUT, blocks[b].buf,
					      ITAB_HASH_LEN + lens[b],
					      d->cfg.push_timeout_ms, push_cb, r);
			pthread_mutex_lock(&p->mu);
			if (rc < 0) {
				free(r);
				pp->inflight--;
				p->refs--;
				if (rc == -EAGAIN) { /* queue full: later */
					pp->again[pp->n_again++] = (uint32_t)b;
					break;
				}
				p->fails[b]++;
				LOG(WARN, "block push to node %llu: %s",
				    (unsigned long long)pp->id, strerror(-rc));
				push_kill_peer(p, i);
			}
		}
	}
}

/* 1: every block has enough copies; -EIO (or the peers' error): some
 * block can no longer get them; 0: keep waiting. Under p->mu. */
static int push_state(const struct push *p)
{
	if (p->store_err)
		return p->store_err;
	bool all = true;
	for (size_t b = 0; b < p->nblocks; b++) {
		if (p->acks[b] >= p->need)
			continue;
		all = false;
		if (p->npeers - p->fails[b] < p->need)
			return p->peer_err ? p->peer_err : -EIO;
	}
	return all && p->n_stored == p->nblocks ? 1 : 0;
}

/* Wait until every block reached a majority (0), or fail. */
int data_push_wait(struct data *d, struct push *p,
		     const struct dblock *blocks, const uint32_t *lens,
		     const struct timespec *dl)
{
	pthread_mutex_lock(&p->mu);
	int st;
	for (;;) {
		data_push_pump(d, p, blocks, lens);
		st = push_state(p);
		if (st != 0)
			break;
		if (ts_passed(dl)) {
			st = -EIO;
			LOG(WARN, "blocks did not reach a majority of the "
				  "voters in time; is a majority of the nodes "
				  "up and reachable?");
			break;
		}
		/* Wake up at least every 50 ms to retry a full queue. */
		struct timespec w = mono_deadline(50);
		if (w.tv_sec > dl->tv_sec ||
		    (w.tv_sec == dl->tv_sec && w.tv_nsec > dl->tv_nsec))
			w = *dl;
		pthread_cond_timedwait(&p->cv, &p->mu, &w);
	}
	pthread_mutex_unlock(&p->mu);
	return st == 1 ? 0 : st;
}

/* ---- local stores ------------------------------------------------------------- */

/* One block of a flush to store locally (blk_put hashes it and writes the
 * hash into the room in front of the data, which makes the buffer the
 * BLOCK_PUT body). */
struct store_job {
	struct store_job *next;
	struct push *p;    /* one reference held by the job */
	uint8_t *buf;      /* hash room + data; owned by the flushing handle */
	uint32_t len;
	size_t block;
	uint64_t ino;
	bool hashed; /* the hash is in buf already (and it may be in flight) */
};

/* Run one job, then mark its block stored (or the flush failed) and
 * extend the prefix of blocks that may be pushed. */
static void store_run(struct data *d, struct store_job *j)
{
	int rc = j->hashed ? blk_put_hashed(d->bs, j->buf,
					    j->buf + ITAB_HASH_LEN, j->len)
			   : blk_put(d->bs, j->buf + ITAB_HASH_LEN, j->len,
				     j->buf);
	if (rc == 0)
		data_recent_add(d, j->buf);
	else if (rc != -ENOSPC)
		LOG(ERROR, "ino %llu: cannot store a block: %s",
		    (unsigned long long)j->ino, strerror(-rc));
	struct push *p = j->p;
	pthread_mutex_lock(&p->mu);
	if (rc < 0 && !p->store_err)
		p->store_err = rc;
	if (rc == 0) {
		p->stored[j->block] = 2;
		p->n_stored++;
	}
	while (p->ready < p->nblocks && p->stored[p->ready])
		p->ready++;
	p->stores_pending--;
	bool freed;
	push_unref_locked(p, &freed);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (freed)
		push_free(p);
	free(j);
}

void *data_store_main(void *arg)
{
	pthread_setname_np(pthread_self(), "sfs-store");
	struct data *d = arg;
	pthread_mutex_lock(&d->store_mu);
	for (;;) {
		struct store_job *j = d->store_q;
		if (!j) {
			if (d->store_stop)
				break;
			pthread_cond_wait(&d->store_cv, &d->store_mu);
			continue;
		}
		d->store_q = j->next;
		if (!d->store_q)
			d->store_tail = NULL;
		pthread_mutex_unlock(&d->store_mu);
		store_run(d, j);
		pthread_mutex_lock(&d->store_mu);
	}
	pthread_mutex_unlock(&d->store_mu);
	return NULL;
}

/* Queue the local store of block i of push p (done on this thread when
 * no store thread runs or memory is short). */
void data_store_submit(struct data *d, struct push *p, uint8_t *buf,
			 uint32_t len, size_t i, uint64_t ino)
{
	/* A small block (the usual single-block flush of a small file) is
	 * hashed here so that its push to the peers and its local store
	 * (each waiting for a disk sync) run at the same time; big blocks
	 * are hashed once, by blk_put, and pushed once stored (a flush of
	 * many of them overlaps the two across blocks anyway). */
	bool hashed = len <= PREHASH_MAX;
	if (hashed)
		blk_sha256(buf + ITAB_HASH_LEN, len, buf);
	struct store_job *j = malloc(sizeof *j);
	pthread_mutex_lock(&p->mu);
	p->refs++;
	p->stores_pending++;
	if (hashed) {
		p->stored[i] = 1;
		while (p->ready < p->nblocks && p->stored[p->ready])
			p->ready++;
	}
	pthread_mutex_unlock(&p->mu);
	struct store_job tmp;
	struct store_job *jj = j ? j : &tmp;
	*jj = (struct store_job){.p = p, .buf = buf, .len = len, .block = i,
				 .ino = ino, .hashed = hashed};
	if (j && d->n_store_threads) {
		pthread_mutex_lock(&d->store_mu);
		if (d->store_tail)
			d->store_tail->next = j;
		else
			d->store_q = j;
		d->store_tail = j;
		pthread_cond_signal(&d->store_cv);
		pthread_mutex_unlock(&d->store_mu);
		return;
	}
	if (!j) {
		j = malloc(sizeof *j); /* store_run frees it: retry once */
		if (!j) {
			pthread_mutex_lock(&p->mu);
			if (!p->store_err)
				p->store_err = -ENOMEM;
			p->stores_pending--;
			p->refs--;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
			return;
		}
		*j = tmp;
	}
	store_run(d, j);
}

/* Wait until no store job of p is queued or running (their buffers belong
 * to the flushing handle). */
void data_store_wait(struct push *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->stores_pending)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

