/*
 * node.h — one sandfs node: data directory, state machines, replicator
 * and the local admin socket. Used by `sandfs serve` and `sandfs mount`.
 */
#ifndef SANDFS_NODE_H
#define SANDFS_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/repl.h"

struct node_opts {
	raft_id id;
	struct repl_peer peers[RAFT_MAX_NODES];
	size_t n_peers;
	const char *data_dir;
	uint64_t cluster_id; /* 0: derived from the peer list */
	const uint8_t *secret;
	size_t secret_len;
	const char *tls_cert, *tls_key, *tls_ca; /* optional, all or none */
	uint32_t propose_timeout_ms; /* 0: 10 s; also bounds member changes */
	/* Join an existing cluster (needs cluster_id): start with no
	 * configuration and wait to be added (`sandfs member add`); peers
	 * must list this node and the members to answer. See repl_cfg.join. */
	int join;
	/* Optional extra state machine (the inode table), applied after the
	 * digest for every entry. */
	const struct repl_sm *fs_sm;
};

struct node;

/* Parse "1=tcp://127.0.0.1:7001,2=..." (a bare host:port gets tcp://).
 * Returns 0 or -EINVAL with a reason in err. */
int node_parse_peers(const char *s, struct repl_peer *out, size_t cap,
		     size_t *n, char *err, size_t errcap);

/* Check and normalize one peer address: "HOST:PORT" or "tcp://HOST:PORT"
 * (HOST a name, an IPv4 address or a bracketed IPv6 address, PORT
 * 1..65535) becomes "tcp://HOST:PORT" in out. Returns 0 or -EINVAL with a
 * reason in err. */
int node_parse_addr(const char *s, char *out, size_t cap, char *err,
		    size_t errcap);

/* The cluster id implied by a peer list (stable hash of the sorted list). */
uint64_t node_cluster_id(const struct repl_peer *peers, size_t n);

/* Start everything; on failure a one-line reason is in err. */
int node_start(const struct node_opts *o, struct node **out, char *err,
	       size_t errcap);
void node_stop(struct node *n);
struct repl *node_repl(struct node *n);

/* Path of the admin socket of the node whose data directory is dir. */
void node_admin_path(const char *dir, char *buf, size_t cap);

/* Admin requests served by the node (see admin_handler in node.c):
 *   "member add ID ADDR" | "member promote ID" | "member remove ID"
 *   "leader transfer [ID]"
 * each answered with one line, "ok ..." or "err ..."; "member list" and
 * "member list-json" answered with node_member_list(). */

/* The members as this node knows them (id, address, voter or learner,
 * this node, the leader) with each one's match index and lag as the
 * leader reports them: a table (json=0) or JSON (json=1), malloc'ed and
 * NUL-terminated; NULL when out of memory. Asks the leader over the link
 * when it is another node (a short timeout; match and lag are then
 * unknown). Blocks the calling thread meanwhile (fs/node_members.c). */
char *node_member_list(struct node *n, int json);

/* "leader transfer [ID]" (args: what follows "leader transfer"): hand
 * leadership to ID, or to the most caught-up voter, and wait until this
 * node sees the new leader; one line "ok ..." or "err ...", malloc'ed
 * (fs/node_leader.c). */
char *node_leader_transfer(struct node *n, const char *args);

/* Admin requests and status figures of the file system on top of the
 * node (fsck, scrub: fs/fsadm.c), which starts after the node. admin
 * serves a request the node does not know itself: 1 with *reply a
 * malloc'ed text, or 0 (not its request). status adds to the status
 * report: text lines (json 0) or JSON members `"key":value,...` (json 1),
 * malloc'ed, or NULL. Both run on the admin thread and must not block
 * for long. */
struct node_ext {
	int (*admin)(void *ctx, const uint8_t *req, size_t len, char **reply);
	char *(*status)(void *ctx, int json);
	void *ctx;
};

/* Install ext (copied), or with NULL remove it; once this returns, the
 * previous one is not running and will not be called again. */
void node_set_ext(struct node *n, const struct node_ext *ext);

/* Build the cluster status text (json=0) or JSON (json=1), asking every
 * peer with a short timeout; unreachable peers are listed as such.
 * Returns a malloc'ed NUL-terminated string. */
char *node_status_report(struct node *n, int json);

#endif
