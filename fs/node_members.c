/*
 * node_members.c — the member list a node serves on its admin socket
 * ("member list", "member list-json"; see node.h): the configuration as
 * this node knows it, with each member's match index and lag as the
 * leader knows them (asked over the link when the leader is another
 * node).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/node.h"
#include "transport/link.h"
#include "transport/wire.h"

#define LEADER_ASK_MS 700

struct leader_answer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	int ok;
	struct repl_status st;
};

static void leader_reply(void *ctx, int status, const uint8_t *reply,
			 size_t len)
{
	struct leader_answer *a = ctx;
	char desc[256];
	int ok = status == 0 &&
		 repl_status_decode(reply, len, &a->st, desc, sizeof(desc)) ==
			 0;
	pthread_mutex_lock(&a->mu);
	a->ok = ok;
	a->done = 1;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* The leader's status: ours when we lead, else asked over the link.
 * Returns 1 when *out holds it. */
static int leader_status(struct repl *r, const struct repl_status *self,
			 struct repl_status *out)
{
	raft_id leader = self->raft.leader;
	if (leader == self->raft.id && self->raft.role == RAFT_LEADER) {
		*out = *self;
		return 1;
	}
	if (!leader)
		return 0;
	struct leader_answer a = {.mu = PTHREAD_MUTEX_INITIALIZER,
				  .cv = PTHREAD_COND_INITIALIZER};
	if (link_request(repl_link(r), leader, WIRE_KIND_STATUS, NULL, 0,
			 LEADER_ASK_MS, leader_reply, &a) != 0)
		return 0;
	pthread_mutex_lock(&a.mu);
	while (!a.done)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	if (!a.ok || a.st.raft.role != RAFT_LEADER)
		return 0;
	*out = a.st;
	return 1;
}

struct sbuf {
	char *s;
	size_t len, cap;
	int oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || b->oom)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = (b->len + (size_t)n + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->oom = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* "tcp://HOST:PORT" -> "HOST:PORT". */
static const char *bare_addr(const char *a)
{
	return strncmp(a, "tcp://", 6) == 0 ? a + 6 : a;
}

/* See node.h. */
char *node_member_list(struct node *n, int json)
{
	struct repl *r = node_repl(n);
	struct repl_status self, lead;
	memset(&lead, 0, sizeof(lead));
	repl_status(r, &self);
	int have_lead = leader_status(r, &self, &lead);
	const struct raft_conf *conf = &self.raft.conf;
	raft_id leader = have_lead ? lead.raft.id : self.raft.leader;
	raft_index last = have_lead ? lead.raft.last_index : 0;
	struct sbuf b = {0};
	if (json)
		sb_printf(&b,
			  "{\"node\":%llu,\"leader\":%llu,\"term\":%llu,"
			  "\"leader_last_index\":",
			  (unsigned long long)self.raft.id,
			  (unsigned long long)leader,
			  (unsigned long long)(have_lead ? lead.raft.term
							 : self.raft.term));
	if (json && have_lead)
		sb_printf(&b, "%llu,\"members\":[", (unsigned long long)last);
	else if (json)
		sb_printf(&b, "null,\"members\":[");
	else if (have_lead)
		sb_printf(&b, "leader %llu  term %llu  last index %llu\n",
			  (unsigned long long)leader,
			  (unsigned long long)lead.raft.term,
			  (unsigned long long)last);
	else
		sb_printf(&b,
			  "no leader known to node %llu (or it does not "
			  "answer): match and lag unknown\n",
			  (unsigned long long)self.raft.id);
	if (!json)
		sb_printf(&b, "%-4s %-28s %-8s %10s %8s\n", "id", "address",
			  "role", "match", "lag");
	for (uint32_t i = 0; i < conf->n; i++) {
		const struct raft_node *nd = &conf->nodes[i];
		long long match = -1;
		if (have_lead)
			for (uint32_t j = 0; j < lead.raft.conf.n; j++)
				if (lead.raft.conf.nodes[j].id == nd->id)
					match = (long long)lead.raft.match[j];
		long long lag = match < 0 ? -1
			      : (raft_index)match >= last
				      ? 0
				      : (long long)(last - (raft_index)match);
		const char *role = nd->role == RAFT_LEARNER ? "learner"
							    : "voter";
		int is_leader = nd->id == leader && leader;
		if (json) {
			sb_printf(&b,
				  "%s{\"id\":%llu,\"address\":\"%s\","
				  "\"role\":\"%s\",\"leader\":%s,\"self\":%s,",
				  i ? "," : "", (unsigned long long)nd->id,
				  bare_addr(nd->addr), role,
				  is_leader ? "true" : "false",
				  nd->id == self.raft.id ? "true" : "false");
			if (match < 0)
				sb_printf(&b, "\"match\":null,\"lag\":null}");
			else
				sb_printf(&b, "\"match\":%lld,\"lag\":%lld}",
					  match, lag);
		} else {
			char mt[24] = "?", lg[24] = "?";
			if (match >= 0) {
				snprintf(mt, sizeof(mt), "%lld", match);
				snprintf(lg, sizeof(lg), "%lld", lag);
			}
			sb_printf(&b, "%-4llu %-28s %-8s %10s %8s%s%s\n",
				  (unsigned long long)nd->id,
				  bare_addr(nd->addr), role, mt, lg,
				  is_leader ? "  leader" : "",
				  nd->id == self.raft.id ? "  (this node)" : "");
		}
	}
	if (json)
		sb_printf(&b, "]}\n");
	else if (conf->n == 0)
		sb_printf(&b,
			  "(node %llu has no configuration yet: it waits to "
			  "be added with `sandfs member add`)\n",
			  (unsigned long long)self.raft.id);
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}
