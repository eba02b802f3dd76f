/*
 * repl_start.c — the replicator's life cycle: restoring the core from the
 * log store (or bootstrapping / joining a cluster), starting the threads,
 * and stopping them.
 */
#include "consensus/repl_internal.h"

static void trace(void *ctx, const struct raft_event *ev)
{
	static const char *names[] = {
		"?",	     "role",	 "term",   "election", "vote",	 "leader",
		"commit",    "conf",	 "snapshot", "transfer", "stepdown",
		"drop"};
	struct repl *r = ctx;
	/* A node that cannot reach a majority retries its (pre-)election
	 * every timeout: say so once, then only at DEBUG until something
	 * else happens. */
	bool repeat = (ev->type == RAFT_EV_ELECTION ||
		       ev->type == RAFT_EV_ROLE) &&
		      ev->term == r->trace_last_term &&
		      ev->detail == r->trace_last_detail[ev->type ==
							 RAFT_EV_ROLE];
	if (ev->type == RAFT_EV_ELECTION || ev->type == RAFT_EV_ROLE) {
		r->trace_last_term = ev->term;
		r->trace_last_detail[ev->type == RAFT_EV_ROLE] = ev->detail;
	} else if (ev->type != RAFT_EV_COMMIT && ev->type != RAFT_EV_DROP &&
		   ev->type != RAFT_EV_VOTE) {
		r->trace_last_detail[0] = r->trace_last_detail[1] = NULL;
	}
	enum log_level lvl = (ev->type == RAFT_EV_COMMIT ||
			      ev->type == RAFT_EV_DROP ||
			      ev->type == RAFT_EV_VOTE || repeat)
				     ? LOG_LVL_DEBUG
				     : LOG_LVL_INFO;
	if (!log_enabled(lvl))
		return;
	char peer[32] = "", idx[32] = "";
	if (ev->peer)
		snprintf(peer, sizeof(peer), " peer %llu",
			 (unsigned long long)ev->peer);
	if (ev->index)
		snprintf(idx, sizeof(idx), " index %llu",
			 (unsigned long long)ev->index);
	log_write(lvl, __FILE__, __LINE__, "raft %s: term %llu%s%s: %s",
		  ev->type < sizeof(names) / sizeof(names[0]) ? names[ev->type]
							      : "?",
		  (unsigned long long)ev->term, peer, idx,
		  ev->detail ? ev->detail : "");
}

/* Stop the request workers (after the links: nothing is queued any
 * more) and drop what they did not serve; the peers time out. */
static void stop_workers(struct repl *r)
{
	pthread_mutex_lock(&r->wmu);
	r->wstop = 1;
	pthread_cond_broadcast(&r->wcv);
	pthread_mutex_unlock(&r->wmu);
	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i], NULL);
	r->n_workers = 0;
	while (r->wq) {
		struct item *n = r->wq->next;
		free(r->wq);
		r->wq = n;
	}
	r->wq_tail = NULL;
	r->wq_len = r->wq_bytes = 0;
}

/* Write data_dir/name atomically and durably (temp file, fsync, rename,
 * fsync of the directory). Returns 0 or a negative errno. */
static int write_small_file(const char *dir, const char *name,
			    const void *data, size_t len)
{
	char path[4200], tmp[4210];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0
			 ? 0
			 : -(errno ? errno : EIO);
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	} else {
		unlink(tmp);
	}
	return rc;
}

#define JOINED_FILE "raft.joined"
#define BOOTSTRAP_FILE "raft.bootstrap"

int repl_joined(const char *data_dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/" JOINED_FILE, data_dir);
	return access(path, F_OK) == 0;
}

/* The configuration this node bootstrapped with (the one at index 0), as
 * recorded when it bootstrapped: 1 found, 0 no record (a data directory
 * from before the record existed: --peers tells it), -EUCLEAN corrupt. */
static int bootstrap_conf_load(const struct repl *r, struct raft_conf *conf)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/" BOOTSTRAP_FILE, r->data_dir);
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	uint8_t buf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4 + 1];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (len == sizeof(buf) || repl_conf_decode(buf, len, conf) != 0 ||
	    conf->n == 0)
		return -EUCLEAN;
	return 1;
}

/* The reason a data directory with a log cannot --join. */
static void join_refusal(const struct repl *r, uint64_t term, uint64_t last,
			 char *err, size_t errcap)
{
	char t[40] = "";
	if (term)
		snprintf(t, sizeof(t), "term %llu, ", (unsigned long long)term);
	snprintf(err, errcap,
		 "%s already holds a raft log (%slast index %llu): this node "
		 "is a member already; start it without --join, or give "
		 "--join an empty data directory",
		 r->data_dir, t, (unsigned long long)last);
}

/* Restart the core from the log store, or bootstrap a new cluster, or
 * (join) start with no configuration: the core then answers the leader's
 * first append with "never bootstrapped" and gets a snapshot, whose
 * configuration it adopts. Raft thesis §4.2.1: "a new server joins the
 * cluster as a non-voting member. The leader replicates log entries to
 * it, but it is not yet counted towards majorities." */
static int restore_core(struct repl *r, char *err, size_t errcap)
{
	struct rlog_hard_state hs;
	struct rlog_snap snap;
	struct rlog_entry *ents = NULL;
	size_t n = 0;
	int rc = rlog_load(r->log, &hs, &snap, &ents, &n, err, errcap);
	if (rc < 0)
		return rc;
	r->persisted_hs = hs;
	uint64_t applied = r->cfg.sm.applied(r->cfg.sm.ctx);
	r->durable_applied = applied;
	r->last_compact = snap.index;
	int joined = repl_joined(r->data_dir);
	bool has_log = n > 0 || snap.index > 0;
	if (r->cfg.join && (has_log || (hs.term > 0 && !joined))) {
		join_refusal(r, hs.term, n ? ents[n - 1].index : snap.index,
			     err, errcap);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EEXIST;
	}
	if (r->cfg.join && !joined) {
		static const char text[] =
			"this node joined an existing cluster: it never "
			"bootstraps a configuration of its own\n";
		rc = write_small_file(r->data_dir, JOINED_FILE, text,
				      sizeof(text) - 1);
		if (rc < 0) {
			snprintf(err, errcap, "%s: cannot write %s (%s)",
				 r->data_dir, JOINED_FILE, strerror(-rc));
			rlog_snap_free(&snap);
			rlog_entries_free(ents, n);
			return rc;
		}
		joined = 1;
	}
	if (joined && !has_log) {
		/* Not yet given a snapshot: stay without a configuration,
		 * keeping any term and vote already promised. */
		struct raft_snapshot_meta none;
		memset(&none, 0, sizeof(none));
		struct raft_hard_state rhs = {hs.term, hs.vote, 0};
		rc = hs.term ? raft_load(r->raft, &rhs, &none, NULL, 0, 0) : 0;
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		if (rc != 0) {
			snprintf(err, errcap, "%s: cannot load the hard state "
					      "(%d)",
				 r->data_dir, rc);
			return -EUCLEAN;
		}
		LOG(INFO, "joining: no configuration yet; waiting for the "
			  "leader (add this node with `sandfs member add`)");
		return 0;
	}
	if (hs.term == 0 && n == 0 && snap.index == 0) {
		struct raft_conf conf;
		memset(&conf, 0, sizeof(conf));
		for (size_t i = 0; i < r->cfg.n_peers && i < RAFT_MAX_NODES;
		     i++) {
			conf.nodes[i].id = r->cfg.peers[i].id;
			conf.nodes[i].role = RAFT_VOTER;
			snprintf(conf.nodes[i].addr, RAFT_ADDR_MAX, "%s",
				 r->cfg.peers[i].addr);
			conf.n++;
		}
		rc = raft_bootstrap(r->raft, &conf);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		if (rc != 0) {
			snprintf(err, errcap, "bootstrapping the cluster "
					      "configuration failed (%d)",
				 rc);
			return -EINVAL;
		}
		/* Record it: after membership changes the --peers a node is
		 * restarted with need not be the list it bootstrapped with,
		 * and the configuration at index 0 must not change. */
		uint8_t buf[RAFT_MAX_NODES * (11 + RAFT_ADDR_MAX) + 4];
		size_t len = repl_conf_encode(&conf, buf, sizeof(buf));
		rc = write_small_file(r->data_dir, BOOTSTRAP_FILE, buf, len);
		if (rc < 0) {
			snprintf(err, errcap, "%s: cannot write %s (%s)",
				 r->data_dir, BOOTSTRAP_FILE, strerror(-rc));
			return rc;
		}
		return 0;
	}
	struct raft_snapshot_meta meta;
	memset(&meta, 0, sizeof(meta));
	meta.index = snap.index;
	meta.term = snap.term;
	if (repl_conf_decode(snap.conf, snap.conf_len, &meta.conf) != 0) {
		snprintf(err, errcap, "%s: stored configuration is corrupt",
			 r->data_dir);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0 && joined) {
		snprintf(err, errcap,
			 "%s: this node joined a cluster but its log has no "
			 "snapshot to take the configuration from; remove the "
			 "data directory and join again",
			 r->data_dir);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0)
		rc = bootstrap_conf_load(r, &meta.conf);
	if (rc < 0) {
		snprintf(err, errcap, "%s/%s is corrupt", r->data_dir,
			 BOOTSTRAP_FILE);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	if (meta.index == 0 && meta.conf.n == 0) {
		/* Bootstrapped before the configuration was recorded: it is
		 * the --peers list (which the cluster id check ties to the
		 * list the node bootstrapped with, unless --cluster-id). */
		for (size_t i = 0; i < r->cfg.n_peers && i < RAFT_MAX_NODES;
		     i++) {
			meta.conf.nodes[i].id = r->cfg.peers[i].id;
			snprintf(meta.conf.nodes[i].addr, RAFT_ADDR_MAX, "%s",
				 r->cfg.peers[i].addr);
			meta.conf.n++;
		}
	}
	if (applied < snap.index) {
		snprintf(err, errcap,
			 "%s: state machine is at index %llu but the log "
			 "starts after %llu; the state was lost — remove the "
			 "data directory and let the node rejoin",
			 r->data_dir, (unsigned long long)applied,
			 (unsigned long long)snap.index);
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -EUCLEAN;
	}
	struct raft_entry *re = calloc(n ? n : 1, sizeof(*re));
	if (!re) {
		rlog_snap_free(&snap);
		rlog_entries_free(ents, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		re[i].index = ents[i].index;
		re[i].term = ents[i].term;
		re[i].type = ents[i].type;
		re[i].len = ents[i].len;
		re[i].data = ents[i].data;
	}
	struct raft_hard_state rhs = {hs.term, hs.vote, hs.commit};
	/* Whatever the state machine applied was committed. */
	if (rhs.commit < applied)
		rhs.commit = applied;
	raft_index last = n ? ents[n - 1].index : snap.index;
	if (rhs.commit > last)
		rhs.commit = last;
	rc = raft_load(r->raft, &rhs, &meta, re, n, applied);
	free(re);
	rlog_snap_free(&snap);
	rlog_entries_free(ents, n);
	if (rc != 0) {
		snprintf(err, errcap, "%s: the raft log is inconsistent (%d)",
			 r->data_dir, rc);
		return -EUCLEAN;
	}
	LOG(INFO, "restarted at term %llu, log (%llu, %llu], applied %llu",
	    (unsigned long long)hs.term, (unsigned long long)snap.index,
	    (unsigned long long)last, (unsigned long long)applied);
	return 0;
}

int repl_start(const struct repl_cfg *cfg, struct repl **out, char *err,
	       size_t errcap)
{
	struct repl *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	if (!r->cfg.tick_ms)
		r->cfg.tick_ms = 10;
	if (!r->cfg.election_ticks)
		r->cfg.election_ticks = 15;
	if (!r->cfg.heartbeat_ticks)
		r->cfg.heartbeat_ticks = 5;
	if (!r->cfg.propose_timeout_ms)
		r->cfg.propose_timeout_ms = 10000;
	if (!r->cfg.compact_every)
		r->cfg.compact_every = 10000;
	r->data_dir = strdup(cfg->data_dir);
	pthread_mutex_init(&r->mu, NULL);
	/* A wall-clock step must not stretch the loop's timed wait. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* Writer-preferring, so that removing the handler at unmount does
	 * not wait behind a steady stream of block requests. */
	pthread_rwlockattr_t la;
	pthread_rwlockattr_init(&la);
	pthread_rwlockattr_setkind_np(&la,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->req_lock, &la);
	pthread_rwlockattr_destroy(&la);
	pthread_mutex_init(&r->wmu, NULL);
	pthread_cond_init(&r->wcv, NULL);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Sequence numbers only grow, also across restarts of this node. */
	r->next_seq = (uint64_t)ts.tv_sec * 1000000000ull +
		      (uint64_t)ts.tv_nsec;

	struct raft_config rc;
	raft_config_default(&rc);
	rc.id = cfg->id;
	rc.election_ticks = r->cfg.election_ticks;
	rc.heartbeat_ticks = r->cfg.heartbeat_ticks;
	rc.lease_reads = !r->cfg.no_lease_reads;
	rc.seed = r->next_seq ^ (cfg->id * 0x9e3779b97f4a7c15ull);
	rc.trace = trace;
	rc.trace_ctx = r;
	r->raft = raft_new(&rc);
	int ret = -ENOMEM;
	if (!r->raft)
		goto fail;

	char path[4200];
	snprintf(path, sizeof(path), "%s/raft", cfg->data_dir);
	ret = rlog_open(path, &r->log, err, errcap);
	if (ret < 0)
		goto fail;
	if (cfg->join && rlog_last_index(r->log) > 0) {
		/* Say so before listening (restore_core checks the rest). */
		join_refusal(r, 0, rlog_last_index(r->log), err, errcap);
		ret = -EEXIST;
		goto fail;
	}
	/* Listen first: a port in use is the likeliest start-up failure, and
	 * nothing is logged or bootstrapped before it is known. */

	const char *listen = NULL;
	for (size_t i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].id == cfg->id)
			listen = cfg->peers[i].addr;
	if (!listen) {
		snprintf(err, errcap, "node %llu is not in --peers",
			 (unsigned long long)cfg->id);
		ret = -EINVAL;
		goto fail;
	}
	struct link_cfg lc = {
		.self_id = cfg->id,
		.listen_addr = listen,
		.cluster_id = cfg->cluster_id,
		.secret = cfg->secret,
		.secret_len = cfg->secret_len,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.tls_ca = cfg->tls_ca,
		.on_frame = repl_on_frame,
		.ctx = r,
	};
	ret = link_start(&lc, &r->link, err, errcap);
	if (ret < 0)
		goto fail;
	ret = restore_core(r, err, errcap);
	if (ret < 0)
		goto fail;
	struct raft_status st;
	raft_status(r->raft, &st);
	for (uint32_t i = 0; i < st.conf.n; i++)
		if (st.conf.nodes[i].id != cfg->id)
			link_add_peer(r->link, st.conf.nodes[i].id,
				      st.conf.nodes[i].addr);
	for (size_t i = 0; i < cfg->n_peers; i++) /* peers not yet in conf */
		if (cfg->peers[i].id != cfg->id)
			link_add_peer(r->link, cfg->peers[i].id,
				      cfg->peers[i].addr);
	repl_publish_status(r);
	for (; r->n_workers < REQ_WORKERS; r->n_workers++)
		if (pthread_create(&r->workers[r->n_workers], NULL, repl_req_worker,
				   r) != 0)
			break;
	if (pthread_create(&r->thread, NULL, repl_loop, r) != 0) {
		snprintf(err, errcap, "cannot start the replicator thread");
		ret = -EAGAIN;
		goto fail;
	}
	*out = r;
	return 0;
fail:
	if (r->link)
		link_stop(r->link);
	stop_workers(r);
	if (r->log)
		rlog_close(r->log);
	raft_free(r->raft);
	free(r->data_dir);
	free(r);
	return ret;
}

void repl_stop(struct repl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	link_stop(r->link); /* no more callbacks after this */
	stop_workers(r);
	struct item *it = r->in;
	while (it) {
		struct item *n = it->next;
		if (it->kind == IT_FWD_REPLY)
			free(it->fwd);
		if (it->done)
			it->done(it->ctx, -ESHUTDOWN, NULL, 0);
		free(it);
		it = n;
	}
	uint64_t durable;
	if (!r->fatal)
		r->cfg.sm.sync(r->cfg.sm.ctx, &durable);
	rlog_close(r->log);
	raft_free(r->raft);
	free(r->pend);
	free(r->reads);
	free(r->confs);
	free(r->conv);
	free(r->enc);
	free(r->fwd_buf);
	free(r->fwd_seq);
	free(r->data_dir);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	pthread_rwlock_destroy(&r->req_lock);
	pthread_cond_destroy(&r->wcv);
	pthread_mutex_destroy(&r->wmu);
	free(r);
}

