/*
 * main.c — the `sandfs` command.
 *
 *   sandfs serve  --id N --peers 1=ADDR,2=ADDR,... --data DIR [options]
 *   sandfs mount  --id N --peers ... --data DIR [-f] [-o opts] MOUNTPOINT
 *   sandfs status --data DIR [--json]
 *   sandfs member add|promote|remove --data DIR ID [HOST:PORT]
 *
 * Process-wide state (signal flag, log sink) lives here and in log.c only.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/cli.h"
#include "fs/main.h"
#include "fs/node.h"
#include "transport/admin.h"
#include "transport/log.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static int cmd_serve(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli = {0};
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? 0 : 2;
	if (cli.n_rest) {
		fprintf(stderr, "sandfs serve: unexpected argument '%s'\n",
			cli.rest[0]);
		return 2;
	}
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "node %llu", (unsigned long long)o.id);
	log_set_prefix(prefix);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Blocked until the wait below (and in every thread the node
	 * starts, which inherit the mask): a signal between the check of
	 * g_stop and the wait would otherwise be lost. */
	sigset_t stopsigs, waitmask;
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGINT);
	sigaddset(&stopsigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stopsigs, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	struct node *n;
	char err[512] = "";
	int rc = node_start(&o, &n, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sandfs serve: %s\n",
			err[0] ? err : strerror(-rc));
		return 1;
	}
	LOG(INFO, "serving; data in %s", o.data_dir);
	while (!g_stop)
		sigsuspend(&waitmask);
	LOG(INFO, "stopping");
	node_stop(n);
	return 0;
}

/* status, propose and bench talk to a running node's admin socket. */
static int cmd_admin(int argc, char **argv, const char *what)
{
	struct node_opts o;
	struct sfs_cli cli = {.status_only = 1};
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? 0 : 2;
	char path[4200], req[4200];
	uint32_t timeout = 3000;
	node_admin_path(o.data_dir, path, sizeof(path));
	if (!strcmp(what, "status")) {
		snprintf(req, sizeof(req), "%s",
			 cli.json ? "status-json" : "status");
	} else if (!strcmp(what, "propose") && cli.n_rest == 1) {
		snprintf(req, sizeof(req), "propose:%s", cli.rest[0]);
		timeout = 30000;
	} else if (!strcmp(what, "bench") && cli.n_rest == 3) {
		snprintf(req, sizeof(req), "bench %s %s %s", cli.rest[0],
			 cli.rest[1], cli.rest[2]);
		timeout = 600000;
	} else {
		sfs_usage(stderr);
		return 2;
	}
	uint8_t *reply = NULL;
	size_t rlen = 0;
	int rc = admin_call(path, req, strlen(req), &reply, &rlen, timeout);
	if (rc < 0) {
		fprintf(stderr,
			"sandfs %s: no node answers on %s (%s); is a node "
			"running with --data %s?\n",
			what, path, strerror(-rc), o.data_dir);
		return 1;
	}
	fwrite(reply, 1, rlen, stdout);
	int bad = rlen >= 4 && !memcmp(reply, "err ", 4);
	free(reply);
	return bad ? 1 : 0;
}

/* `sandfs member add|promote|remove --data DIR ID [HOST:PORT]`: one
 * membership change through the node's admin socket; prints one line. */
static int cmd_member(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli = {.status_only = 1};
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? 0 : 2;
	const char *verb = cli.n_rest ? cli.rest[0] : "";
	int want = !strcmp(verb, "add")					 ? 3
		   : !strcmp(verb, "promote") || !strcmp(verb, "remove") ? 2
									 : 0;
	if (!want || cli.n_rest != want) {
		fprintf(stderr, "usage: sandfs member add --data DIR ID "
				"HOST:PORT | promote --data DIR ID | remove "
				"--data DIR ID\n");
		return 2;
	}
	char req[600];
	int w = snprintf(req, sizeof(req), "member %s %s%s%s", verb,
			 cli.rest[1], want == 3 ? " " : "",
			 want == 3 ? cli.rest[2] : "");
	if (w < 0 || (size_t)w >= sizeof(req) || strpbrk(req + 7, "\n\t")) {
		fprintf(stderr, "sandfs member: argument too long or with "
				"control characters\n");
		return 2;
	}
	char path[4200];
	node_admin_path(o.data_dir, path, sizeof(path));
	uint8_t *reply = NULL;
	size_t rlen = 0;
	/* The node answers within its own timeout (--timeout-ms). */
	int rc = admin_call(path, req, strlen(req), &reply, &rlen, 120000);
	if (rc < 0) {
		fprintf(stderr,
			"sandfs member: no node answers on %s (%s); is a node "
			"running with --data %s?\n",
			path, strerror(-rc), o.data_dir);
		return 1;
	}
	int bad = !(rlen >= 3 && !memcmp(reply, "ok ", 3));
	const char *msg = (const char *)reply;
	size_t mlen = rlen;
	if (rlen >= 4 && !memcmp(reply, "err ", 4))
		msg += 4, mlen -= 4;
	else if (!bad)
		msg += 3, mlen -= 3;
	while (mlen && msg[mlen - 1] == '\n')
		mlen--;
	if (bad)
		fprintf(stderr, "sandfs member: %.*s\n", (int)mlen, msg);
	else
		printf("%.*s\n", (int)mlen, msg);
	free(reply);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		sfs_usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_admin(argc - 1, argv + 1, "status");
	if (!strcmp(cmd, "propose"))
		return cmd_admin(argc - 1, argv + 1, "propose");
	if (!strcmp(cmd, "member"))
		return cmd_member(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench-propose"))
		return cmd_admin(argc - 1, argv + 1, "bench");
	if (!strcmp(cmd, "mount"))
		return sfs_cmd_mount(argc - 1, argv + 1);
	if (!strcmp(cmd, "fsck"))
		return sfs_cmd_fsck(argc - 1, argv + 1);
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help")) {
		sfs_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("sandfs 0.1.0\n");
		return 0;
	}
	fprintf(stderr, "sandfs: unknown command '%s'\n", cmd);
	sfs_usage(stderr);
	return 2;
}
