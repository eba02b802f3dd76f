/*
 * cmd_leader.c — `sandfs leader transfer [ID]`: hand Raft leadership to
 * another voter through the node whose data directory is given (node.c
 * serves "leader transfer" with node_leader_transfer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "fs/main.h"

static const char leader_help[] =
	"usage: sandfs leader transfer [--data DIR] [ID]\n\n"
	"Hand leadership to voter ID, or without ID to the voter the leader "
	"finds most\ncaught up among those it is connected to (before "
	"maintenance of the leader's\nmachine, say). Works through any "
	"member: the request goes to the leader,\nwhich brings the target's "
	"log up to date and tells it to start an election\nat once. Prints "
	"the new leader once the node behind DIR sees it; while the\n"
	"transfer runs (about an election timeout) the cluster takes no "
	"changes, which\nwait. Fails (exit 1) when no new leader is seen "
	"within the node's\n--timeout-ms.\n\n"
	"Options:\n" SFS_ADMIN_OPTS_HELP SFS_EXIT_HELP;

static int cmd_leader(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli;
	memset(&cli, 0, sizeof(cli));
	cli.status_only = 1;
	cli.help = leader_help;
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	if (cli.n_rest < 1 || strcmp(cli.rest[0], "transfer") ||
	    cli.n_rest > 2) {
		fprintf(stderr, "sandfs leader: %s\nusage: sandfs leader "
				"transfer [--data DIR] [ID]\n",
			cli.n_rest < 1 ? "what to do?"
			: strcmp(cli.rest[0], "transfer")
				? "unknown verb"
				: "too many arguments");
		return SFS_EXIT_USAGE;
	}
	const char *id = cli.n_rest == 2 ? cli.rest[1] : NULL;
	if (id && (strspn(id, "0123456789") != strlen(id) || !id[0] ||
		   strlen(id) > 20 || strspn(id, "0") == strlen(id))) {
		fprintf(stderr,
			"sandfs leader: bad node id '%s' (want a number >= "
			"1)\n",
			id);
		return SFS_EXIT_USAGE;
	}
	char req[64];
	snprintf(req, sizeof(req), "leader transfer%s%s", id ? " " : "",
		 id ? id : "");
	char *reply = NULL;
	size_t rlen = 0;
	/* The node answers within its own timeout (--timeout-ms). */
	if (sfs_admin_call("leader", o.data_dir, req, 120000, &reply, &rlen) <
	    0)
		return SFS_EXIT_FAIL;
	int ok = rlen >= 3 && !memcmp(reply, "ok ", 3);
	const char *msg = reply + (ok ? 3 : rlen >= 4 ? 4 : 0);
	size_t mlen = strlen(msg);
	while (mlen && msg[mlen - 1] == '\n')
		mlen--;
	if (ok)
		printf("%.*s\n", (int)mlen, msg);
	else
		fprintf(stderr, "sandfs leader: %.*s\n", (int)mlen, msg);
	free(reply);
	return ok ? SFS_EXIT_OK : SFS_EXIT_FAIL;
}

const struct sfs_cmd sfs_cmd_leader = {
	.name = "leader",
	.summary = "hand leadership to another voter (leader transfer)",
	.help = leader_help,
	.run = cmd_leader,
};
