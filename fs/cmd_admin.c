/*
 * cmd_admin.c — the commands that ask a running node one question through
 * its admin socket and print the answer: `sandfs status`, and the test
 * aids `sandfs propose` and `sandfs bench-propose`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "fs/main.h"

static const char status_help[] =
	"usage: sandfs status [--data DIR] [--json]\n\n"
	"Show the cluster as the node whose data directory is DIR sees it: "
	"for\nevery member its address, role, term, the leader it follows, "
	"commit and\napplied index, last log index, how far it lags the "
	"leader, and a digest of\neverything it applied (equal digests at "
	"equal applied indexes mean equal\nstates). Unreachable members are "
	"shown as such.\n\n"
	"Options:\n"
	"  --json                print JSON instead (the leader as integer "
	"\"leader\")\n" SFS_ADMIN_OPTS_HELP SFS_EXIT_HELP;

static const char propose_help[] =
	"usage: sandfs propose [--data DIR] TEXT\n\n"
	"Test aid: commit one entry holding TEXT through the node and wait "
	"until it\napplied it; prints \"ok ORDINAL\".\n\n"
	"Options:\n" SFS_ADMIN_OPTS_HELP SFS_EXIT_HELP;

static const char bench_help[] =
	"usage: sandfs bench-propose [--data DIR] COUNT CONCURRENCY SIZE\n\n"
	"Test aid: inside the node, commit COUNT entries of SIZE bytes with "
	"CONCURRENCY\nof them in flight, and print throughput and latency "
	"(p50, p99).\n\n"
	"Options:\n" SFS_ADMIN_OPTS_HELP SFS_EXIT_HELP;

/* Parse, send one request, print the reply (an "err ..." reply is an
 * operational failure, exit 1). want: positional arguments needed. */
static int admin_cmd(int argc, char **argv, const char *help, int want)
{
	struct node_opts o;
	struct sfs_cli cli;
	memset(&cli, 0, sizeof(cli));
	cli.status_only = 1;
	cli.help = help;
	const char *cmd = argv[0];
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	if (cli.n_rest != want) {
		fprintf(stderr, "sandfs %s: want %d argument%s (see sandfs %s "
				"--help)\n",
			cmd, want, want == 1 ? "" : "s", cmd);
		return SFS_EXIT_USAGE;
	}
	char req[4200];
	uint32_t timeout = 3000;
	int w;
	if (!strcmp(cmd, "status")) {
		w = snprintf(req, sizeof(req), "%s",
			     cli.json ? "status-json" : "status");
	} else if (!strcmp(cmd, "propose")) {
		w = snprintf(req, sizeof(req), "propose:%s", cli.rest[0]);
		timeout = 30000;
	} else {
		for (int i = 0; i < 3; i++)
			if (strspn(cli.rest[i], "0123456789") !=
				    strlen(cli.rest[i]) ||
			    !cli.rest[i][0]) {
				fprintf(stderr,
					"sandfs %s: '%s' is not a number\n",
					cmd, cli.rest[i]);
				return SFS_EXIT_USAGE;
			}
		w = snprintf(req, sizeof(req), "bench %s %s %s", cli.rest[0],
			     cli.rest[1], cli.rest[2]);
		timeout = 600000;
	}
	if (w < 0 || (size_t)w >= sizeof(req)) {
		fprintf(stderr, "sandfs %s: argument too long\n", cmd);
		return SFS_EXIT_USAGE;
	}
	char *reply = NULL;
	size_t rlen = 0;
	if (sfs_admin_call(cmd, o.data_dir, req, timeout, &reply, &rlen) < 0)
		return SFS_EXIT_FAIL;
	/* The reply as it is ("ok ..." / "err ..." for the test aids, which
	 * scripts read on stdout). */
	int bad = rlen >= 4 && !memcmp(reply, "err ", 4);
	fwrite(reply, 1, rlen, stdout);
	free(reply);
	return bad ? SFS_EXIT_FAIL : SFS_EXIT_OK;
}

static int cmd_status(int argc, char **argv)
{
	return admin_cmd(argc, argv, status_help, 0);
}

static int cmd_propose(int argc, char **argv)
{
	return admin_cmd(argc, argv, propose_help, 1);
}

static int cmd_bench(int argc, char **argv)
{
	return admin_cmd(argc, argv, bench_help, 3);
}

const struct sfs_cmd sfs_cmd_status = {
	.name = "status",
	.summary = "show the cluster as one node sees it",
	.help = status_help,
	.run = cmd_status,
};

const struct sfs_cmd sfs_cmd_propose = {
	.name = "propose",
	.summary = "(test aid) commit one entry",
	.help = propose_help,
	.run = cmd_propose,
};

const struct sfs_cmd sfs_cmd_bench_propose = {
	.name = "bench-propose",
	.summary = "(test aid) measure proposal rate and latency in a node",
	.help = bench_help,
	.run = cmd_bench,
};
