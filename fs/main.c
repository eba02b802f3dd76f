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

static void usage(FILE *f)
{
	fprintf(f,
		"usage:\n"
		"  sandfs serve  --id N --peers 1=HOST:PORT,2=...  --data DIR\n"
		"                [--cluster-id HEX] [--secret-file F]\n"
		"                [--tls-cert PEM --tls-key PEM --tls-ca PEM]\n"
		"                [--timeout-ms MS] [--log-level L]\n"
		"                [--join --cluster-id HEX]\n"
		"  sandfs mount  --id N --peers ... --data DIR [-f] [-o OPTS] "
		"MOUNTPOINT\n"
		"  sandfs status --data DIR [--json]\n"
		"  sandfs member add     --data DIR ID HOST:PORT\n"
		"  sandfs member promote --data DIR ID\n"
		"  sandfs member remove  --data DIR ID\n"
		"  sandfs propose --data DIR TEXT      (test aid: one entry)\n"
		"  sandfs bench-propose --data DIR COUNT CONCURRENCY SIZE\n"
		"\n"
		"serve runs a node in the foreground (metadata replication "
		"only);\nmount runs a node and mounts the filesystem; status "
		"asks the node\nwhose data directory is DIR about the whole "
		"cluster.\n"
		"member changes the membership through the node whose data "
		"directory is\nDIR: add a new node as a learner (start it "
		"first with --join), promote it\nto voter once it caught up, "
		"or remove a node. --join starts a node with no\nconfiguration "
		"of its own; --peers then lists the members and itself.\n");
}

/* Read a secret file (at most 4 KiB). */
static int read_secret(const char *path, uint8_t *buf, size_t cap,
		       size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	*len = fread(buf, 1, cap, f);
	fclose(f);
	while (*len && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r'))
		(*len)--;
	return *len ? 0 : -EINVAL;
}

int sfs_parse_node_opts(int argc, char **argv, struct node_opts *o,
			struct sfs_cli *cli)
{
	static const struct option longopts[] = {
		{"id", required_argument, NULL, 'i'},
		{"peers", required_argument, NULL, 'p'},
		{"data", required_argument, NULL, 'd'},
		{"cluster-id", required_argument, NULL, 'c'},
		{"secret-file", required_argument, NULL, 's'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"log-level", required_argument, NULL, 'l'},
		{"foreground", no_argument, NULL, 'f'},
		{"options", required_argument, NULL, 'o'},
		{"json", no_argument, NULL, 'j'},
		{"tls-cert", required_argument, NULL, 'C'},
		{"tls-key", required_argument, NULL, 'K'},
		{"tls-ca", required_argument, NULL, 'A'},
		{"join", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char err[256];
	const char *peers = NULL;
	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* we print one line of our own */
	int c;
	while ((c = getopt_long(argc, argv, ":fo:h", longopts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'i':
			o->id = strtoull(optarg, &end, 10);
			if (!*optarg || *end || o->id == 0) {
				fprintf(stderr,
					"sandfs: --id wants a number >= 1, "
					"got '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'p':
			peers = optarg;
			break;
		case 'd':
			o->data_dir = optarg;
			break;
		case 'c':
			o->cluster_id = strtoull(optarg, &end, 16);
			if (!*optarg || *end || !o->cluster_id) {
				fprintf(stderr,
					"sandfs: --cluster-id wants a nonzero "
					"hex number\n");
				return -EINVAL;
			}
			break;
		case 's': {
			int rc = read_secret(optarg, cli->secret,
					     sizeof(cli->secret),
					     &cli->secret_len);
			if (rc) {
				fprintf(stderr,
					"sandfs: cannot read secret file %s: "
					"%s\n",
					optarg,
					rc == -EINVAL ? "empty" : strerror(-rc));
				return -EINVAL;
			}
			o->secret = cli->secret;
			o->secret_len = cli->secret_len;
			break;
		}
		case 't':
			o->propose_timeout_ms = (uint32_t)strtoul(optarg, &end, 10);
			if (!*optarg || *end || o->propose_timeout_ms < 100) {
				fprintf(stderr, "sandfs: --timeout-ms wants a "
						"number >= 100\n");
				return -EINVAL;
			}
			break;
		case 'l': {
			enum log_level lvl;
			if (log_parse_level(optarg, &lvl) != 0) {
				fprintf(stderr,
					"sandfs: --log-level wants "
					"error|warn|info|debug\n");
				return -EINVAL;
			}
			log_set_level(lvl);
			break;
		}
		case 'C':
			o->tls_cert = optarg;
			break;
		case 'K':
			o->tls_key = optarg;
			break;
		case 'A':
			o->tls_ca = optarg;
			break;
		case 'J':
			o->join = 1;
			break;
		case 'f':
			cli->foreground = 1;
			break;
		case 'o':
			cli->mount_opts = optarg;
			break;
		case 'j':
			cli->json = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr,
				"sandfs %s: option '%s' needs a value (see "
				"sandfs --help)\n",
				argv[0], argv[optind - 1]);
			return -EINVAL;
		default:
			fprintf(stderr,
				"sandfs %s: unknown option '%s' (see sandfs "
				"--help)\n",
				argv[0], argv[optind - 1]);
			return -EINVAL;
		}
	}
	cli->rest = argv + optind;
	cli->n_rest = argc - optind;
	if (cli->status_only)
		return o->data_dir ? 0 : (fprintf(stderr, "sandfs: --data is "
							  "required\n"),
					  -EINVAL);
	if ((o->tls_cert || o->tls_key || o->tls_ca) &&
	    !(o->tls_cert && o->tls_key && o->tls_ca)) {
		fprintf(stderr, "sandfs: TLS needs all of --tls-cert, --tls-key "
				"and --tls-ca\n");
		return -EINVAL;
	}
	if (o->join && !o->cluster_id) {
		fprintf(stderr, "sandfs: --join needs --cluster-id HEX (the id "
				"`sandfs status` shows on a member)\n");
		return -EINVAL;
	}
	if (!o->id || !peers || !o->data_dir) {
		fprintf(stderr, "sandfs: --id, --peers and --data are "
				"required (see sandfs --help)\n");
		return -EINVAL;
	}
	if (node_parse_peers(peers, o->peers, RAFT_MAX_NODES, &o->n_peers, err,
			     sizeof(err)) != 0) {
		fprintf(stderr, "sandfs: %s\n", err);
		return -EINVAL;
	}
	int self = 0;
	for (size_t i = 0; i < o->n_peers; i++)
		self |= o->peers[i].id == o->id;
	if (!self) {
		fprintf(stderr, "sandfs: --id %llu is not in --peers\n",
			(unsigned long long)o->id);
		return -EINVAL;
	}
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli = {0};
	if (sfs_parse_node_opts(argc, argv, &o, &cli) != 0)
		return 2;
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
	if (sfs_parse_node_opts(argc, argv, &o, &cli) != 0)
		return 2;
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
		usage(stderr);
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
	if (sfs_parse_node_opts(argc, argv, &o, &cli) != 0)
		return 2;
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
		usage(stderr);
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
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("sandfs 0.1.0\n");
		return 0;
	}
	fprintf(stderr, "sandfs: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
