/*
 * node_metrics.h — one node's metrics: the Raft and transport figures of
 * its replicator, any number of extra sources (a mount adds the FUSE
 * frontend and the block store), the `--metrics ADDR` HTTP endpoint, and
 * the admin socket's "metrics" request that `sandfs stats` uses. Both
 * answer with the same Prometheus text (metric names: README, "Metrics").
 */
#ifndef SANDFS_NODE_METRICS_H
#define SANDFS_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/repl.h"
#include "fs/metrics.h"

struct node_metrics;

/* An extra source: appends its families to o. Called on the HTTP or the
 * admin thread, never twice at once. */
typedef void (*node_metrics_fn)(void *ctx, struct metrics_out *o);

/* Metrics of the node with replicator repl (borrowed; stop the metrics
 * before it), id and cluster id. With addr (see metrics_http_parse_addr)
 * the HTTP endpoint listens there. 0, or a negative errno with a reason
 * in err. */
int node_metrics_start(struct repl *repl, raft_id id, uint64_t cluster_id,
		       const char *addr, struct node_metrics **out, char *err,
		       size_t errcap);
/* Stop the endpoint and free (NULL is fine). */
void node_metrics_stop(struct node_metrics *m);

/* Add a source (at most 8); 0 or -ENOSPC. Remove it again before what
 * ctx points at goes away: remove waits for a collection in progress. */
int node_metrics_add(struct node_metrics *m, node_metrics_fn fn, void *ctx);
void node_metrics_remove(struct node_metrics *m, node_metrics_fn fn, void *ctx);

/* The whole exposition text (malloc'ed, NUL-terminated; *len its length)
 * or NULL without memory. */
char *node_metrics_text(struct node_metrics *m, size_t *len);

/* The port of the HTTP endpoint, 0 without one. */
unsigned node_metrics_port(const struct node_metrics *m);

#endif
