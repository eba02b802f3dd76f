/*
 * cmd_serve.c — `sandfs serve`: one node in the foreground, Raft
 * replication only (no inode table, no mount). Stops on SIGINT/SIGTERM;
 * SIGHUP reopens the log file (fs/hup.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "fs/hup.h"
#include "fs/main.h"
#include "fs/node.h"
#include "storage/datadir.h"
#include "transport/log.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static const char serve_help[] =
	"usage: sandfs serve [--id N] [--peers 1=HOST:PORT,...] [--data DIR]\n"
	"                    [OPTIONS]\n\n"
	"Run one node in the foreground: Raft replication of the metadata log\n"
	"only, without an inode table or a mount (tests and benchmarks use it;\n"
	"a cluster that serves files runs `sandfs mount` on every node).\n"
	"SIGINT and SIGTERM stop it cleanly; SIGHUP reopens the --log file\n"
	"(without one, SIGHUP stops it too).\n\n" SFS_NODE_OPTS_HELP
	SFS_EXIT_HELP;

static int cmd_serve(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli;
	memset(&cli, 0, sizeof(cli));
	cli.help = serve_help;
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	if (cli.n_rest) {
		fprintf(stderr, "sandfs serve: unexpected argument '%s'\n",
			cli.rest[0]);
		return SFS_EXIT_USAGE;
	}
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "node %llu", (unsigned long long)o.id);
	log_set_prefix(prefix);
	if (cli.log_path) {
		/* The log may live in the data directory: make that a sandfs
		 * directory first (a file in a new one would make it "not
		 * empty and not sandfs's"). node_start() checks the rest. */
		struct ddir *dd;
		char derr[512] = "";
		int rc = ddir_open(o.data_dir, 0, &dd, derr, sizeof(derr));
		if (rc < 0) {
			fprintf(stderr, "sandfs serve: %s\n",
				derr[0] ? derr : strerror(-rc));
			return SFS_EXIT_FAIL;
		}
		ddir_close(dd);
		rc = log_open(cli.log_path);
		if (rc) {
			fprintf(stderr, "sandfs serve: cannot open log %s: %s\n",
				cli.log_path, strerror(-rc));
			return SFS_EXIT_FAIL;
		}
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Blocked until the wait below (and in every thread the node
	 * starts, which inherit the mask): a signal between the check of
	 * g_stop and the wait would otherwise be lost. SIGHUP stays blocked
	 * everywhere: the hup thread waits for it. */
	sigset_t stopsigs, waitmask;
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGINT);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stopsigs, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigaddset(&waitmask, SIGHUP);
	struct sfs_hup *hup = NULL;
	int rc = sfs_hup_start(&hup);
	if (rc < 0) {
		fprintf(stderr, "sandfs serve: cannot start a thread: %s\n",
			strerror(-rc));
		log_close();
		return SFS_EXIT_FAIL;
	}
	struct node *n;
	char err[512] = "";
	rc = node_start(&o, &n, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sandfs serve: %s\n",
			err[0] ? err : strerror(-rc));
		if (log_to_file())
			LOG(ERROR, "cannot start: %s",
			    err[0] ? err : strerror(-rc));
		sfs_hup_stop(hup);
		log_close();
		return SFS_EXIT_FAIL;
	}
	LOG(INFO, "serving; data in %s%s%s", o.data_dir,
	    cli.config_path ? ", configuration from " : "",
	    cli.config_path ? cli.config_path : "");
	while (!g_stop)
		sigsuspend(&waitmask);
	LOG(INFO, "stopping");
	node_stop(n);
	sfs_hup_stop(hup);
	log_close();
	return SFS_EXIT_OK;
}

const struct sfs_cmd sfs_cmd_serve = {
	.name = "serve",
	.summary = "run a node in the foreground (Raft only, no mount)",
	.help = serve_help,
	.run = cmd_serve,
};
