/*
 * node_leader.c — "leader transfer [ID]" on a node's admin socket (see
 * node.h): hands leadership over through the replicator and answers one
 * line once this node sees the new leader.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/be.h"
#include "fs/node.h"

struct xfer_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status;
	uint64_t leader, term;
};

static void xfer_done(void *ctx, int status, const uint8_t *res,
		      size_t reslen)
{
	struct xfer_wait *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	if (reslen >= 16) {
		w->leader = be_get64(res);
		w->term = be_get64(res + 8);
	}
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* See node.h. */
char *node_leader_transfer(struct node *n, const char *args)
{
	char buf[512], idtxt[32] = "", extra[2] = "";
	int k = sscanf(args, "%31s %1s", idtxt, extra);
	unsigned long long target = 0;
	if (k == 2)
		return strdup("err usage: leader transfer [ID]\n");
	if (k == 1) {
		char *end = NULL;
		target = strtoull(idtxt, &end, 10);
		if (idtxt[0] < '0' || idtxt[0] > '9' || *end || !target) {
			snprintf(buf, sizeof(buf),
				 "err bad node id '%s' (want a number >= 1)\n",
				 idtxt);
			return strdup(buf);
		}
	}
	struct xfer_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			      .cv = PTHREAD_COND_INITIALIZER};
	int rc = repl_transfer_leader(node_repl(n), target, xfer_done, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.status;
	}
	switch (rc) {
	case 0:
		snprintf(buf, sizeof(buf), "ok node %llu is the leader (term "
					   "%llu)\n",
			 (unsigned long long)w.leader,
			 (unsigned long long)w.term);
		break;
	case -EALREADY:
		snprintf(buf, sizeof(buf),
			 "ok node %llu is the leader already (term %llu)\n",
			 (unsigned long long)w.leader,
			 (unsigned long long)w.term);
		break;
	case -EINVAL:
		snprintf(buf, sizeof(buf),
			 "err node %llu is not a voter of the cluster (see "
			 "`sandfs member list`)\n",
			 target);
		break;
	case -EHOSTUNREACH:
		snprintf(buf, sizeof(buf),
			 "err the leader (node %llu) is connected to no other "
			 "voter; nobody to hand over to\n",
			 (unsigned long long)w.leader);
		break;
	case -EXDEV:
		snprintf(buf, sizeof(buf),
			 "err node %llu took over instead of node %llu (term "
			 "%llu)\n",
			 (unsigned long long)w.leader, target,
			 (unsigned long long)w.term);
		break;
	case -EBUSY:
		snprintf(buf, sizeof(buf),
			 "err another leader transfer asked for through this "
			 "node is still running\n");
		break;
	case -EIO:
		snprintf(buf, sizeof(buf),
			 "err no new leader within the node's timeout "
			 "(--timeout-ms); is the target up and caught up, and "
			 "is there a quorum? check `sandfs status`\n");
		break;
	case -ESHUTDOWN:
		snprintf(buf, sizeof(buf), "err the node is stopping\n");
		break;
	default:
		snprintf(buf, sizeof(buf), "err %s\n", strerror(-rc));
		break;
	}
	return strdup(buf);
}
