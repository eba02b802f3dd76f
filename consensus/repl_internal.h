/*
 * repl_internal.h — what the replicator's files share (repl.c: the loop,
 * proposals, reads, persistence, snapshots; repl_conf.c: membership
 * changes; repl_transfer.c: leader transfer; repl_start.c: restoring state
 * at start, starting and stopping).
 * Not a public header: nothing outside consensus/repl*.c includes it.
 */
#ifndef SANDFS_REPL_INTERNAL_H
#define SANDFS_REPL_INTERNAL_H

#include "consensus/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/rlog.h"
#include "transport/link.h"
#include "transport/log.h"
#include "transport/wire.h"

#define ENV_HDR 24
#define RETRY_TICKS 50     /* resend an unapplied proposal after this */
#define FWD_TIMEOUT_MS 1000
#define RES_MAX 256
#define FWD_BATCH_BYTES (1u << 20)
#define REQ_WORKERS 4       /* threads serving block requests */
#define REQ_QUEUE_MAX 4096
#define REQ_QUEUE_BYTES (64u << 20)

enum item_kind {
	IT_RAFT,        /* raft message frame from a peer */
	IT_PROPOSE,     /* local proposal */
	IT_READ,        /* local read barrier */
	IT_FWD_PROPOSE, /* a follower forwarded a proposal to us */
	IT_FWD_REPLY,   /* the leader answered our forward */
	IT_REQUEST,     /* other request kinds, for the request workers */
	IT_CONF,        /* local membership change request */
	IT_FWD_CONF,    /* a follower forwarded a membership change to us */
	IT_CONF_REPLY,  /* the leader answered our forwarded change */
	IT_TRANSFER,    /* local leader transfer request */
	IT_FWD_TRANSFER, /* a follower forwarded a transfer to us */
	IT_TRANSFER_REPLY, /* the leader answered our forwarded transfer */
};

struct item {
	struct item *next;
	enum item_kind kind;
	uint64_t from;
	uint64_t req_id;
	struct fwd *fwd; /* IT_FWD_REPLY: which proposals (owned) */
	int status;      /* IT_FWD_REPLY */
	repl_done_fn done;
	void *ctx;
	uint32_t len;
	uint8_t data[];
};

struct pending {
	uint64_t seq;
	uint8_t *env; /* envelope + payload, owned */
	uint32_t envlen;
	repl_done_fn done;
	void *ctx;
	uint64_t deadline; /* tick */
	uint64_t resend;   /* tick at which to resend if still pending */
	raft_id sent_to;   /* leader we last handed it to, 0 = not sent */
};

/* A membership change asked for on this node (repl_change_conf). */
struct conf_req {
	uint64_t cid; /* ours, names it in replies */
	uint8_t op;   /* enum raft_conf_op */
	raft_id node;
	char addr[RAFT_ADDR_MAX];
	repl_done_fn done;
	void *ctx;
	uint64_t deadline; /* tick */
	uint64_t resend;   /* tick of the next attempt */
	raft_id sent_to;   /* leader of the last attempt, 0 = none yet */
	raft_id hint;      /* leader named by a refusing node, for one retry */
	bool maybe;        /* an attempt may have been (or was) proposed */
	int last_err;      /* last refusal (-EBUSY, -EAGAIN), 0 if none */
	uint64_t lag;      /* learner lag the leader reported with -EAGAIN */
	raft_index index;  /* where the leader put it, 0 if unknown */
};

/* The leader transfer asked for on this node (repl_transfer_leader); one
 * at a time. */
struct repl_xfer {
	bool active;
	uint64_t rid;      /* names the attempt in replies */
	raft_id target;    /* asked for, 0: any */
	raft_id chosen;    /* what the leader picked (target 0) */
	raft_id from;      /* the leader when it was first submitted */
	repl_done_fn done;
	void *ctx;
	uint64_t deadline; /* tick */
	uint64_t resend;   /* tick of the next attempt */
};

struct read {
	uint64_t ctx_id;
	raft_index index; /* 0 until the leader answered */
	repl_done_fn done;
	void *ctx;
	uint64_t deadline;
	uint64_t resend;
};

struct repl {
	struct repl_cfg cfg;
	char *data_dir;
	struct raft *raft;
	struct rlog *log;
	struct link *link;
	pthread_t thread;

	pthread_mutex_t mu;  /* guards in, stop, status */
	pthread_rwlock_t req_lock; /* guards req_fn, req_ctx */
	pthread_mutex_t wmu;       /* guards wq, wq_tail, wq_len, wstop */
	pthread_cond_t wcv;
	struct item *wq, *wq_tail; /* requests for the workers */
	size_t wq_len, wq_bytes;
	int wstop;
	pthread_t workers[REQ_WORKERS];
	int n_workers;
	pthread_cond_t cv;
	struct item *in, *in_tail;
	int stop;
	struct repl_status status;
	char describe[256];
	repl_request_fn req_fn;
	void *req_ctx;

	/* Below: replicator thread only. */
	uint64_t now_tick;
	uint64_t next_seq;
	struct pending *pend;
	size_t n_pend, cap_pend;
	struct read *reads;
	size_t n_reads, cap_reads;
	uint64_t next_read_ctx;
	raft_id last_leader;
	uint64_t published_tick; /* now_tick of the last publish_status() */
	uint64_t next_tick;      /* loop clock (now_ms) of the next tick */
	/* Snapshot data serialized on snap_thread (sm.snapshot_finish):
	 * running from snapshot_begin until the loop collected the result;
	 * snap_ready and the result are guarded by mu. */
	pthread_t snap_thread;
	bool snap_running, snap_ready;
	void *snap_job;
	uint64_t snap_idx, snap_len;
	uint8_t *snap_data;
	int snap_rc;
	uint64_t snap_retry; /* now_tick to tell the core to ask again; 0 */
	raft_term trace_last_term; /* for quieting repeated elections */
	const char *trace_last_detail[2]; /* [0] election, [1] role */
	uint64_t durable_applied;
	raft_index last_compact;
	struct rlog_hard_state persisted_hs;
	struct rlog_entry *conv; /* scratch for persisting */
	size_t cap_conv;
	uint8_t *enc; /* scratch for encoding messages */
	size_t cap_enc;
	uint8_t *fwd_buf; /* proposals to forward this turn */
	size_t fwd_len, fwd_cap, fwd_n, fwd_seq_cap;
	uint64_t *fwd_seq;
	raft_id fwd_to;
	struct conf_req *confs; /* pending membership changes */
	size_t n_confs, cap_confs;
	uint64_t next_cid;
	struct repl_xfer xfer; /* pending leader transfer */
	int fatal;
};

static inline void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The loop's clock. CLOCK_BOOTTIME also counts time spent suspended, so
 * a suspend shows up as a stall (and drops the leader lease). */
static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* repl.c */
struct item *repl_item_new(enum item_kind kind, const void *data, size_t len);
/* Queue an item for the replicator thread; takes ownership. */
void repl_enqueue(struct repl *r, struct item *it);
size_t repl_conf_encode(const struct raft_conf *c, uint8_t *buf, size_t cap);
int repl_conf_decode(const uint8_t *p, size_t len, struct raft_conf *c);
/* Copy the core's state into r->status (under r->mu). */
void repl_publish_status(struct repl *r);
/* Thread bodies and the link's frame callback (started in repl_start.c). */
void *repl_loop(void *arg);
void *repl_req_worker(void *arg);
void repl_on_frame(void *ctx, uint64_t from, const struct wire_frame *f);

/* repl_conf.c (replicator thread unless said otherwise) */
void repl_conf_add(struct repl *r, struct item *it);
void repl_conf_fwd(struct repl *r, struct item *it);
void repl_conf_reply(struct repl *r, struct item *it);
void repl_conf_applied(struct repl *r, uint8_t op, raft_id node,
		       raft_index index);
void repl_conf_tick(struct repl *r, raft_id leader, bool leader_changed);

/* repl_transfer.c (replicator thread) */
void repl_transfer_add(struct repl *r, struct item *it);
void repl_transfer_fwd(struct repl *r, struct item *it);
void repl_transfer_reply(struct repl *r, struct item *it);
void repl_transfer_tick(struct repl *r, raft_id leader);
void repl_transfer_shutdown(struct repl *r);

#endif
