/*
 * node.c — wires a node together: the data directory (lock, format,
 * cluster id), the state machines (the digest, plus the inode table when
 * mounted), the replicator, and the admin socket that `sandfs status`
 * talks to.
 *
 * The node's state machine is a pair applied in order for every entry:
 * the digest (count + running hash, a cross-node consistency check that
 * status shows) and, when given, the filesystem's. Both skip entries at
 * or below their own applied index, so after a crash the replicator
 * replays from the lower of the two.
 */
#include "fs/node.h"

#include "fs/be.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/digest.h"
#include "storage/datadir.h"
#include "transport/admin.h"
#include "transport/link.h"
#include "transport/log.h"
#include "transport/wire.h"

struct node {
	struct node_opts o;
	struct ddir *dir;
	struct dsm *dsm;
	struct repl_sm dsm_vt;
	struct repl_sm fs_vt; /* .apply NULL when none */
	struct repl *repl;
	struct admin *admin;
	char *addrs[RAFT_MAX_NODES]; /* peer addresses for status */
	pthread_mutex_t ext_mu;      /* held while ext is called or changed */
	struct node_ext ext;         /* guarded by ext_mu */
};

void node_set_ext(struct node *n, const struct node_ext *ext)
{
	pthread_mutex_lock(&n->ext_mu);
	if (ext)
		n->ext = *ext;
	else
		memset(&n->ext, 0, sizeof(n->ext));
	pthread_mutex_unlock(&n->ext_mu);
}

/* ---- the combined state machine ------------------------------------------ */

static int pair_apply(void *ctx, uint64_t index, uint64_t origin, uint64_t seq,
		      uint64_t low, const uint8_t *data, uint32_t len,
		      uint8_t *res, size_t rescap, size_t *reslen)
{
	struct node *n = ctx;
	int rc = n->dsm_vt.apply(n->dsm_vt.ctx, index, origin, seq, low, data,
				 len, res, rescap, reslen);
	if (rc < 0 || !n->fs_vt.apply)
		return rc;
	return n->fs_vt.apply(n->fs_vt.ctx, index, origin, seq, low, data, len,
			      res, rescap, reslen);
}

static uint64_t pair_applied(void *ctx)
{
	struct node *n = ctx;
	uint64_t a = n->dsm_vt.applied(n->dsm_vt.ctx);
	if (n->fs_vt.apply) {
		uint64_t b = n->fs_vt.applied(n->fs_vt.ctx);
		if (b < a)
			a = b;
	}
	return a;
}

static int pair_sync(void *ctx, uint64_t *index)
{
	struct node *n = ctx;
	uint64_t a, b;
	int rc = n->dsm_vt.sync(n->dsm_vt.ctx, &a);
	if (rc == 0 && n->fs_vt.apply) {
		rc = n->fs_vt.sync(n->fs_vt.ctx, &b);
		if (b < a)
			a = b;
	}
	if (rc == 0)
		*index = a;
	return rc;
}

/* Snapshot of the pair: u64 digest length | digest | fs state, both at
 * one applied index. In two steps: the digest (small) is serialized at
 * once; the file system's state is fixed now and serialized later, on the
 * replicator's snapshot thread. */
struct pair_job {
	uint8_t *d;
	uint64_t dl;
	void *fjob; /* NULL without a file system */
	uint8_t *f; /* a file system without snapshot_begin: its data */
	uint64_t fl;
};

static int pair_snapshot_begin(void *ctx, uint64_t *index, void **job)
{
	struct node *n = ctx;
	struct pair_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	uint64_t di, fi;
	int rc = n->dsm_vt.snapshot(n->dsm_vt.ctx, &di, &j->d, &j->dl);
	/* Both halves must be of one index (they differ after a crash until
	 * the log is re-applied past both): checked before any work. */
	if (rc == 0 && n->fs_vt.apply &&
	    n->fs_vt.applied(n->fs_vt.ctx) != di)
		rc = -EAGAIN;
	if (rc == 0 && n->fs_vt.apply) {
		if (n->fs_vt.snapshot_begin)
			rc = n->fs_vt.snapshot_begin(n->fs_vt.ctx, &fi,
						     &j->fjob);
		else
			rc = n->fs_vt.snapshot(n->fs_vt.ctx, &fi, &j->f,
					       &j->fl);
		/* (nothing applies on this thread meanwhile: fi == di) */
	}
	if (rc) {
		free(j->d);
		free(j->f);
		free(j);
		return rc;
	}
	*index = di;
	*job = j;
	return 0;
}

static int pair_snapshot_finish(void *ctx, void *job, uint8_t **data,
				uint64_t *len)
{
	struct node *n = ctx;
	struct pair_job *j = job;
	uint8_t *f = j->f;
	uint64_t fl = j->fl;
	int rc = 0;
	if (j->fjob)
		rc = n->fs_vt.snapshot_finish(n->fs_vt.ctx, j->fjob, &f, &fl);
	uint8_t *b = rc == 0 ? malloc(8 + j->dl + fl) : NULL;
	if (rc == 0 && !b)
		rc = -ENOMEM;
	if (rc == 0) {
		be_put64(b, j->dl);
		memcpy(b + 8, j->d, j->dl);
		if (fl)
			memcpy(b + 8 + j->dl, f, fl);
		*data = b;
		*len = 8 + j->dl + fl;
	}
	free(f);
	free(j->d);
	free(j);
	return rc;
}

/* The same in one go. */
static int pair_snapshot(void *ctx, uint64_t *index, uint8_t **data,
			 uint64_t *len)
{
	void *job;
	int rc = pair_snapshot_begin(ctx, index, &job);
	return rc ? rc : pair_snapshot_finish(ctx, job, data, len);
}

static int pair_restore(void *ctx, uint64_t index, const uint8_t *data,
			uint64_t len)
{
	struct node *n = ctx;
	if (len < 8 || be_get64(data) > len - 8)
		return -EINVAL;
	uint64_t dl = be_get64(data);
	int rc = n->dsm_vt.restore(n->dsm_vt.ctx, index, data + 8, dl);
	if (rc == 0 && n->fs_vt.apply)
		rc = n->fs_vt.restore(n->fs_vt.ctx, index, data + 8 + dl,
				      len - 8 - dl);
	return rc;
}

static void pair_conf_changed(void *ctx, const struct raft_conf *conf)
{
	struct node *n = ctx;
	if (n->fs_vt.apply && n->fs_vt.conf_changed)
		n->fs_vt.conf_changed(n->fs_vt.ctx, conf);
}

static void pair_describe(void *ctx, char *buf, size_t cap)
{
	struct node *n = ctx;
	uint64_t count, applied;
	uint8_t h[32];
	dsm_figures(n->dsm, &count, &applied, h);
	snprintf(buf, cap, "entries=%llu digest=%02x%02x%02x%02x%02x%02x%02x%02x",
		 (unsigned long long)count, h[0], h[1], h[2], h[3], h[4], h[5],
		 h[6], h[7]);
}

/* ---- peers and cluster id --------------------------------------------------- */

int node_parse_peers(const char *s, struct repl_peer *out, size_t cap,
		     size_t *n, char *err, size_t errcap)
{
	*n = 0;
	if (!s || !*s) {
		snprintf(err, errcap, "--peers is empty (want 1=HOST:PORT,...)");
		return -EINVAL;
	}
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		return -ENOMEM;
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		char *end = NULL;
		unsigned long long id = eq ? strtoull(tok, &end, 10) : 0;
		if (!eq || end != eq || id == 0 || !eq[1]) {
			snprintf(err, errcap,
				 "bad peer '%s' (want ID=HOST:PORT, ID >= 1)",
				 tok);
			rc = -EINVAL;
			break;
		}
		if (*n == cap || *n >= RAFT_MAX_NODES) {
			snprintf(err, errcap, "too many peers (at most %d)",
				 RAFT_MAX_NODES);
			rc = -EINVAL;
			break;
		}
		for (size_t i = 0; i < *n; i++)
			if (out[i].id == id) {
				snprintf(err, errcap, "peer id %llu given twice",
					 id);
				rc = -EINVAL;
			}
		if (rc)
			break;
		out[*n].id = id;
		/* the same check as `member add`: a node must never start
		 * with an address it cannot listen on or dial */
		char why[256];
		if (node_parse_addr(eq + 1, out[*n].addr, RAFT_ADDR_MAX, why,
				    sizeof(why))) {
			snprintf(err, errcap, "peer %llu: %s", id, why);
			rc = -EINVAL;
			break;
		}
		(*n)++;
	}
	free(copy);
	if (rc == 0 && *n == 0) {
		snprintf(err, errcap, "--peers lists no node");
		rc = -EINVAL;
	}
	return rc;
}

int node_parse_addr(const char *s, char *out, size_t cap, char *err,
		    size_t errcap)
{
	const char *a = s ? s : "";
	if (strncmp(a, "tcp://", 6) == 0)
		a += 6;
	const char *colon = strrchr(a, ':');
	const char *host_end = colon;
	int ok = colon && colon > a;
	if (ok && a[0] == '[') { /* [IPv6]:PORT */
		ok = colon[-1] == ']' && colon - a > 2;
		for (const char *p = a + 1; ok && p < colon - 1; p++)
			ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
			     (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.';
	} else {
		for (const char *p = a; ok && p < host_end; p++)
			ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-' ||
			     *p == '_';
	}
	char *end = NULL;
	unsigned long port = 0;
	if (ok) {
		ok = colon[1] >= '0' && colon[1] <= '9';
		port = strtoul(colon + 1, &end, 10);
		ok = ok && !*end && port >= 1 && port <= 65535;
	}
	if (!ok) {
		snprintf(err, errcap,
			 "bad address '%s' (want HOST:PORT, e.g. "
			 "10.0.0.4:7000)",
			 s ? s : "");
		return -EINVAL;
	}
	int w = snprintf(out, cap, "tcp://%s", a);
	if (w < 0 || (size_t)w >= cap || (size_t)w >= RAFT_ADDR_MAX) {
		snprintf(err, errcap, "address too long: %s", s);
		return -EINVAL;
	}
	return 0;
}

uint64_t node_cluster_id(const struct repl_peer *peers, size_t n)
{
	/* FNV-1a over "id=addr," in id order. */
	uint64_t h = 0xcbf29ce484222325ull;
	raft_id prev = 0;
	for (size_t k = 0; k < n; k++) {
		const struct repl_peer *best = NULL;
		for (size_t i = 0; i < n; i++)
			if (peers[i].id > prev && (!best || peers[i].id < best->id))
				best = &peers[i];
		if (!best)
			break;
		prev = best->id;
		char buf[RAFT_ADDR_MAX + 32];
		int len = snprintf(buf, sizeof(buf), "%llu=%s,",
				   (unsigned long long)best->id, best->addr);
		for (int i = 0; i < len; i++) {
			h ^= (uint8_t)buf[i];
			h *= 0x100000001b3ull;
		}
	}
	return h ? h : 1;
}

void node_admin_path(const char *dir, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/admin.sock", dir);
}

/* ---- status ------------------------------------------------------------------ */

struct peer_answer {
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
	int *outstanding;
	int ok;
	struct repl_status st;
	char desc[256];
};

static void status_reply(void *ctx, int status, const uint8_t *reply,
			 size_t len)
{
	struct peer_answer *a = ctx;
	int ok = status == 0 &&
		 repl_status_decode(reply, len, &a->st, a->desc,
				    sizeof(a->desc)) == 0;
	pthread_mutex_lock(a->mu);
	a->ok = ok;
	(*a->outstanding)--;
	pthread_cond_broadcast(a->cv);
	pthread_mutex_unlock(a->mu);
}

struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(b->s ? b->s + b->len : NULL,
				  b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->s && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s)
			return;
		b->s = s;
		b->cap = cap;
	}
}

static const char *role_name(int reachable, enum raft_role role)
{
	return reachable ? raft_role_name(role) : "unreachable";
}

char *node_status_report(struct node *n, int json)
{
	struct repl_status self;
	char selfdesc[256];
	repl_status(n->repl, &self);
	repl_describe(n->repl, selfdesc, sizeof(selfdesc));
	const struct raft_conf *conf = &self.raft.conf;

	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	int outstanding = 0;
	struct peer_answer ans[RAFT_MAX_NODES];
	memset(ans, 0, sizeof(ans));
	for (uint32_t i = 0; i < conf->n; i++) {
		ans[i].mu = &mu;
		ans[i].cv = &cv;
		ans[i].outstanding = &outstanding;
		if (conf->nodes[i].id == n->o.id) {
			ans[i].ok = 1;
			ans[i].st = self;
			snprintf(ans[i].desc, sizeof(ans[i].desc), "%s",
				 selfdesc);
			continue;
		}
		pthread_mutex_lock(&mu);
		outstanding++;
		pthread_mutex_unlock(&mu);
		if (link_request(repl_link(n->repl), conf->nodes[i].id,
				 WIRE_KIND_STATUS, NULL, 0, 700, status_reply,
				 &ans[i]) != 0) {
			pthread_mutex_lock(&mu);
			outstanding--;
			pthread_mutex_unlock(&mu);
		}
	}
	pthread_mutex_lock(&mu);
	while (outstanding > 0)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);

	/* The leader's view gives each follower's lag. */
	const struct repl_status *lead = NULL;
	for (uint32_t i = 0; i < conf->n; i++)
		if (ans[i].ok && ans[i].st.raft.role == RAFT_LEADER &&
		    (!lead || ans[i].st.raft.term > lead->raft.term))
			lead = &ans[i].st;
	raft_id leader = lead ? lead->raft.id : self.raft.leader;
	struct sbuf b = {0};
	if (json)
		sb_printf(&b, "{\"cluster_id\":\"%016llx\",\"leader\":%llu,"
			      "\"term\":%llu,\"nodes\":[",
			  (unsigned long long)n->o.cluster_id,
			  (unsigned long long)leader,
			  (unsigned long long)(lead ? lead->raft.term
						    : self.raft.term));
	else
		sb_printf(&b,
			  "cluster %016llx  leader %llu  term %llu\n"
			  "%-4s %-24s %-11s %6s %6s %9s %9s %9s %6s  %s\n",
			  (unsigned long long)n->o.cluster_id,
			  (unsigned long long)leader,
			  (unsigned long long)(lead ? lead->raft.term
						    : self.raft.term),
			  "id", "address", "role", "term", "leader", "commit",
			  "applied", "last", "lag", "state");
	for (uint32_t i = 0; i < conf->n; i++) {
		const struct raft_node *nd = &conf->nodes[i];
		const struct peer_answer *a = &ans[i];
		long long lag = -1;
		if (a->ok && lead) {
			for (uint32_t j = 0; j < lead->raft.conf.n; j++)
				if (lead->raft.conf.nodes[j].id == nd->id)
					lag = nd->id == lead->raft.id
						      ? 0
						      : (long long)(lead->raft.last_index -
								    lead->raft.match[j]);
		}
		const char *role = nd->role == RAFT_LEARNER && a->ok
					   ? "learner"
					   : role_name(a->ok, a->st.raft.role);
		if (json) {
			sb_printf(&b,
				  "%s{\"id\":%llu,\"address\":\"%s\","
				  "\"reachable\":%s,\"role\":\"%s\"",
				  i ? "," : "", (unsigned long long)nd->id,
				  nd->addr, a->ok ? "true" : "false", role);
			if (a->ok)
				sb_printf(&b,
					  ",\"term\":%llu,\"leader\":%llu,"
					  "\"commit\":%llu,\"applied\":%llu,"
					  "\"last_index\":%llu,\"lag\":%lld,"
					  "\"state\":\"%s\"",
					  (unsigned long long)a->st.raft.term,
					  (unsigned long long)a->st.raft.leader,
					  (unsigned long long)a->st.raft.commit,
					  (unsigned long long)a->st.raft.applied,
					  (unsigned long long)a->st.raft.last_index,
					  lag, a->desc);
			sb_printf(&b, "}");
		} else if (a->ok) {
			char lagbuf[24] = "?";
			if (lag >= 0)
				snprintf(lagbuf, sizeof(lagbuf), "%lld", lag);
			sb_printf(&b,
				  "%-4llu %-24s %-11s %6llu %6llu %9llu %9llu "
				  "%9llu %6s  %s\n",
				  (unsigned long long)nd->id, nd->addr, role,
				  (unsigned long long)a->st.raft.term,
				  (unsigned long long)a->st.raft.leader,
				  (unsigned long long)a->st.raft.commit,
				  (unsigned long long)a->st.raft.applied,
				  (unsigned long long)a->st.raft.last_index,
				  lagbuf, a->desc);
		} else {
			sb_printf(&b, "%-4llu %-24s %-11s\n",
				  (unsigned long long)nd->id, nd->addr, role);
		}
	}
	if (!json && conf->n == 0)
		sb_printf(&b, "(node %llu has no configuration yet: it waits "
			      "to be added with `sandfs member add`)\n",
			  (unsigned long long)n->o.id);
	/* What the file system on top adds (the scrub) */
	pthread_mutex_lock(&n->ext_mu);
	char *extra = n->ext.status ? n->ext.status(n->ext.ctx, json) : NULL;
	pthread_mutex_unlock(&n->ext_mu);
	if (json)
		sb_printf(&b, "]%s%s}\n", extra ? "," : "", extra ? extra : "");
	else if (extra)
		sb_printf(&b, "%s", extra);
	free(extra);
	return b.s;
}

/* ---- proposals through the admin socket (tests and benchmarks) ---------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status;
	uint64_t ordinal; /* the digest's result: the entry's ordinal */
};

static void waiter_done(void *ctx, int status, const uint8_t *res,
			size_t reslen)
{
	struct waiter *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	if (status == 0 && reslen >= 8)
		w->ordinal = be_get64(res);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* "propose:" PAYLOAD -> "ok ORDINAL" or "err ERRNO-TEXT". Blocks the admin
 * thread until this node applied the entry. */
static char *admin_propose(struct node *n, const uint8_t *p, size_t len)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER,
			   .cv = PTHREAD_COND_INITIALIZER};
	int rc = repl_propose(n->repl, p, (uint32_t)len, waiter_done, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.status;
	}
	char buf[96];
	if (rc == 0)
		snprintf(buf, sizeof(buf), "ok %llu\n",
			 (unsigned long long)w.ordinal);
	else
		snprintf(buf, sizeof(buf), "err %s\n", strerror(-rc));
	return strdup(buf);
}

/* ---- membership changes through the admin socket --------------------------- */

struct member_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int status;
	uint64_t figure; /* entry index (ok) or learner lag (-EAGAIN), 0 if none */
};

static void member_done(void *ctx, int status, const uint8_t *res,
			size_t reslen)
{
	struct member_wait *w = ctx;
	pthread_mutex_lock(&w->mu);
	w->status = status;
	w->figure = reslen >= 8 ? be_get64(res) : 0;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* "member add ID ADDR" | "member promote ID" | "member remove ID" -> one
 * line "ok ..." or "err ...". Blocks the admin thread until the change is
 * in effect on this node or failed (at most the proposal timeout). */
static char *admin_member(struct node *n, const char *args)
{
	char verb[16] = "", idtxt[32] = "", addrtxt[RAFT_ADDR_MAX + 1] = "";
	char extra[2] = "", addr[RAFT_ADDR_MAX] = "", why[256], buf[512];
	int k = sscanf(args, "%15s %31s %128s %1s", verb, idtxt, addrtxt, extra);
	enum raft_conf_op op = !strcmp(verb, "add")	? RAFT_CONF_ADD_LEARNER
			       : !strcmp(verb, "promote") ? RAFT_CONF_PROMOTE
			       : !strcmp(verb, "remove")  ? RAFT_CONF_REMOVE
							  : 0;
	int want = op == RAFT_CONF_ADD_LEARNER ? 3 : 2;
	if (!op || k != want)
		return strdup("err usage: member add ID HOST:PORT | member "
			      "promote ID | member remove ID\n");
	char *end = NULL;
	unsigned long long id = strtoull(idtxt, &end, 10);
	if (idtxt[0] < '0' || idtxt[0] > '9' || *end || id == 0) {
		snprintf(buf, sizeof(buf),
			 "err bad node id '%s' (want a number >= 1)\n", idtxt);
		return strdup(buf);
	}
	if (op == RAFT_CONF_ADD_LEARNER &&
	    node_parse_addr(addrtxt, addr, sizeof(addr), why, sizeof(why))) {
		snprintf(buf, sizeof(buf), "err %s\n", why);
		return strdup(buf);
	}
	struct member_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER,
				.cv = PTHREAD_COND_INITIALIZER};
	int rc = repl_change_conf(n->repl, op, id, addr, member_done, &w);
	if (rc == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		rc = w.status;
	}
	unsigned tmo = n->o.propose_timeout_ms ? n->o.propose_timeout_ms
					       : 10000;
	char at[48] = "";
	if (rc == 0 && w.figure)
		snprintf(at, sizeof(at), " (configuration entry %llu)",
			 (unsigned long long)w.figure);
	switch (rc) {
	case 0:
		if (op == RAFT_CONF_ADD_LEARNER)
			snprintf(buf, sizeof(buf),
				 "ok node %llu added as a learner at %s%s; "
				 "promote it once it has caught up\n",
				 id, addr, at);
		else if (op == RAFT_CONF_PROMOTE)
			snprintf(buf, sizeof(buf),
				 "ok node %llu promoted to voter%s\n", id, at);
		else
			snprintf(buf, sizeof(buf), "ok node %llu removed%s\n",
				 id, at);
		break;
	case -EEXIST:
		snprintf(buf, sizeof(buf),
			 "err node %llu is already a member of the cluster\n",
			 id);
		break;
	case -ENOENT:
		snprintf(buf, sizeof(buf),
			 "err node %llu is not a member of the cluster\n", id);
		break;
	case -EALREADY:
		snprintf(buf, sizeof(buf), "err node %llu is already a voter\n",
			 id);
		break;
	case -EPERM:
		snprintf(buf, sizeof(buf),
			 "err node %llu is the last voter; it cannot be "
			 "removed\n",
			 id);
		break;
	case -ENOSPC:
		snprintf(buf, sizeof(buf),
			 "err the cluster already has %d members, the most "
			 "it can have\n",
			 RAFT_MAX_NODES);
		break;
	case -EBUSY:
		snprintf(buf, sizeof(buf),
			 "err the leader refused for %u ms: another "
			 "membership change (or a leader transfer) is still "
			 "in progress; try again\n",
			 tmo);
		break;
	case -EAGAIN:
		if (w.figure)
			snprintf(buf, sizeof(buf),
				 "err node %llu is still catching up (%llu "
				 "entries behind the leader after %u ms); "
				 "wait and try again\n",
				 id, (unsigned long long)w.figure, tmo);
		else
			snprintf(buf, sizeof(buf),
				 "err node %llu is still catching up with the "
				 "leader after %u ms; wait and try again\n",
				 id, tmo);
		break;
	case -EIO:
		if (op == RAFT_CONF_REMOVE && id == n->o.id)
			snprintf(buf, sizeof(buf),
				 "err the removal of node %llu was not "
				 "confirmed here within %u ms (a node being "
				 "removed may never hear that it was); run the "
				 "command through another member, or check "
				 "`sandfs status` there\n",
				 id, tmo);
		else
			snprintf(buf, sizeof(buf),
				 "err the change was not confirmed within %u "
				 "ms (no leader, or no quorum?); check `sandfs "
				 "status`\n",
				 tmo);
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

/* Closed-loop load generator run inside the node: `conc` proposals of
 * `size` bytes are kept in flight until `count` completed; latency is
 * measured from repl_propose() to the local apply. */
struct bench {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct repl *repl;
	uint64_t issued, completed, failed, count;
	uint32_t size;
	uint8_t *payload;
	uint64_t *lat_ns; /* count entries */
	uint64_t *start_ns; /* per slot */
};

struct bench_slot {
	struct bench *b;
	size_t slot;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bench_issue(struct bench *b, struct bench_slot *s);

static void bench_done(void *ctx, int status, const uint8_t *res,
		       size_t reslen)
{
	struct bench_slot *s = ctx;
	struct bench *b = s->b;
	uint64_t now = mono_ns();
	pthread_mutex_lock(&b->mu);
	if (status)
		b->failed++;
	b->lat_ns[b->completed++] = now - b->start_ns[s->slot];
	int more = b->issued < b->count;
	if (more)
		b->issued++;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	if (more)
		bench_issue(b, s);
}

static void bench_issue(struct bench *b, struct bench_slot *s)
{
	b->start_ns[s->slot] = mono_ns();
	if (repl_propose(b->repl, b->payload, b->size, bench_done, s) != 0)
		bench_done(s, -ENOMEM, NULL, 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* "bench COUNT CONC SIZE" -> one line of figures. */
static char *admin_bench(struct node *n, const char *args)
{
	unsigned long long count = 0, conc = 0, size = 0;
	if (sscanf(args, "%llu %llu %llu", &count, &conc, &size) != 3 ||
	    !count || !conc || conc > 4096 || size > (1u << 20) ||
	    count > 10000000)
		return strdup("err usage: bench COUNT CONCURRENCY SIZE\n");
	if (conc > count)
		conc = count;
	struct bench b = {.mu = PTHREAD_MUTEX_INITIALIZER,
			  .cv = PTHREAD_COND_INITIALIZER,
			  .repl = n->repl,
			  .count = count,
			  .size = (uint32_t)size};
	b.payload = calloc(1, size ? size : 1);
	b.lat_ns = calloc(count, sizeof(uint64_t));
	b.start_ns = calloc(conc, sizeof(uint64_t));
	struct bench_slot *slots = calloc(conc, sizeof(*slots));
	char *out = NULL;
	if (!b.payload || !b.lat_ns || !b.start_ns || !slots)
		goto done;
	memset(b.payload, 'x', size);
	uint64_t t0 = mono_ns();
	pthread_mutex_lock(&b.mu);
	b.issued = conc;
	pthread_mutex_unlock(&b.mu);
	for (size_t i = 0; i < conc; i++) {
		slots[i].b = &b;
		slots[i].slot = i;
		bench_issue(&b, &slots[i]);
	}
	pthread_mutex_lock(&b.mu);
	while (b.completed < count)
		pthread_cond_wait(&b.cv, &b.mu);
	pthread_mutex_unlock(&b.mu);
	double secs = (double)(mono_ns() - t0) / 1e9;
	qsort(b.lat_ns, count, sizeof(uint64_t), cmp_u64);
	char buf[256];
	snprintf(buf, sizeof(buf),
		 "ok count=%llu failed=%llu concurrency=%llu size=%llu "
		 "secs=%.3f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f\n",
		 count, (unsigned long long)b.failed, conc, size, secs,
		 (double)count / secs, (double)b.lat_ns[count / 2] / 1e3,
		 (double)b.lat_ns[count * 99 / 100] / 1e3);
	out = strdup(buf);
done:
	free(b.payload);
	free(b.lat_ns);
	free(b.start_ns);
	free(slots);
	return out ? out : strdup("err out of memory\n");
}

/* Admin requests, answered on the admin thread:
 *   "status" | "status-json"      cluster status report
 *   "propose:" PAYLOAD            one proposal, waits for the local apply
 *   "bench COUNT CONC SIZE"       closed-loop proposal benchmark
 *   "member VERB ARGS"            membership change (admin_member)
 *   "member list" | "member list-json"   members (node_member_list)
 *   "leader transfer [ID]"        leader transfer (node_leader_transfer) */
static int admin_handler(void *ctx, const uint8_t *req, size_t len,
			 uint8_t **reply, size_t *rlen)
{
	struct node *n = ctx;
	int json = len == 11 && memcmp(req, "status-json", 11) == 0;
	char *s;
	if (json || (len == 6 && memcmp(req, "status", 6) == 0)) {
		s = node_status_report(n, json);
	} else if (len >= 8 && memcmp(req, "propose:", 8) == 0) {
		s = admin_propose(n, req + 8, len - 8);
	} else if (len > 6 && len < 100 && memcmp(req, "bench ", 6) == 0) {
		char args[100];
		memcpy(args, req + 6, len - 6);
		args[len - 6] = 0;
		s = admin_bench(n, args);
	} else if ((len == 11 && memcmp(req, "member list", 11) == 0) ||
		   (len == 16 && memcmp(req, "member list-json", 16) == 0)) {
		s = node_member_list(n, len == 16);
	} else if (len >= 15 && len < 100 &&
		   memcmp(req, "leader transfer", 15) == 0 &&
		   (len == 15 || req[15] == ' ')) {
		char args[100];
		memcpy(args, req + 15, len - 15);
		args[len - 15] = 0;
		s = node_leader_transfer(n, args);
	} else if (len > 7 && len < 300 && memcmp(req, "member ", 7) == 0) {
		char args[300];
		memcpy(args, req + 7, len - 7);
		args[len - 7] = 0;
		s = admin_member(n, args);
	} else {
		s = NULL;
		pthread_mutex_lock(&n->ext_mu);
		int mine = n->ext.admin && n->ext.admin(n->ext.ctx, req, len, &s) == 1;
		pthread_mutex_unlock(&n->ext_mu);
		if (!mine)
			s = strdup("err unknown admin request\n");
	}
	if (!s)
		return -ENOMEM;
	*reply = (uint8_t *)s;
	*rlen = strlen(s);
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int node_start(const struct node_opts *o, struct node **out, char *err,
	       size_t errcap)
{
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->o = *o;
	pthread_mutex_init(&n->ext_mu, NULL);
	if (o->join && !o->cluster_id) {
		snprintf(err, errcap, "--join needs --cluster-id (the id "
				      "`sandfs status` shows on a member)");
		free(n);
		return -EINVAL;
	}
	/* A node that joined never had a cluster id derived from its
	 * --peers: it keeps the one its data directory stores. */
	int adopt = !n->o.cluster_id && repl_joined(o->data_dir);
	if (!n->o.cluster_id && !adopt)
		n->o.cluster_id = node_cluster_id(o->peers, o->n_peers);
	int rc = ddir_open(o->data_dir, n->o.cluster_id, &n->dir, err, errcap);
	if (rc < 0)
		goto fail;
	if (adopt)
		n->o.cluster_id = ddir_cluster_id(n->dir);
	if (!n->o.cluster_id) {
		snprintf(err, errcap, "%s stores no cluster id; give --cluster-id",
			 o->data_dir);
		rc = -EINVAL;
		goto fail;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/digest.state", o->data_dir);
	rc = dsm_open(path, &n->dsm);
	if (rc < 0) {
		snprintf(err, errcap, "%s: cannot load the digest state (%s)",
			 path, strerror(-rc));
		goto fail;
	}
	n->dsm_vt = dsm_sm(n->dsm);
	if (o->fs_sm)
		n->fs_vt = *o->fs_sm;

	struct repl_cfg rc_cfg = {
		.id = o->id,
		.data_dir = o->data_dir,
		.cluster_id = n->o.cluster_id,
		.peers = o->peers,
		.n_peers = o->n_peers,
		.join = o->join,
		.secret = o->secret,
		.secret_len = o->secret_len,
		.tls_cert = o->tls_cert,
		.tls_key = o->tls_key,
		.tls_ca = o->tls_ca,
		.propose_timeout_ms = o->propose_timeout_ms,
		.sm =
			{
				.ctx = n,
				.apply = pair_apply,
				.applied = pair_applied,
				.sync = pair_sync,
				.snapshot = pair_snapshot,
				.snapshot_begin = pair_snapshot_begin,
				.snapshot_finish = pair_snapshot_finish,
				.restore = pair_restore,
				.conf_changed = pair_conf_changed,
				.describe = pair_describe,
			},
	};
	rc = repl_start(&rc_cfg, &n->repl, err, errcap);
	if (rc < 0)
		goto fail;
	node_admin_path(o->data_dir, path, sizeof(path));
	rc = admin_start(path, admin_handler, n, &n->admin, err, errcap);
	if (rc < 0)
		goto fail;
	*out = n;
	return 0;
fail:
	node_stop(n);
	return rc;
}

void node_stop(struct node *n)
{
	if (!n)
		return;
	if (n->admin)
		admin_stop(n->admin);
	if (n->repl)
		repl_stop(n->repl);
	dsm_close(n->dsm);
	ddir_close(n->dir);
	pthread_mutex_destroy(&n->ext_mu);
	free(n);
}

struct repl *node_repl(struct node *n)
{
	return n->repl;
}
