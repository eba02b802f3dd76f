/*
 * cmd_member.c — `sandfs member list|add|promote|remove`: the membership,
 * shown or changed through the node whose data directory is given (its
 * admin socket; node.c serves the requests).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "fs/main.h"

static const char member_help[] =
	"usage: sandfs member list    [--data DIR] [--json]\n"
	"       sandfs member add     [--data DIR] ID HOST:PORT\n"
	"       sandfs member promote [--data DIR] ID\n"
	"       sandfs member remove  [--data DIR] ID\n\n"
	"Show or change the membership through the node whose data "
	"directory is DIR.\n\n"
	"  list     every member: id, address, role (voter or learner), its "
	"match\n"
	"           index and lag behind the leader's log (as the leader "
	"reports\n"
	"           them), and which one leads. --json for scripts.\n"
	"  add      add a node as a learner (start it first with --join): it "
	"receives\n"
	"           the log but does not vote\n"
	"  promote  make a learner a voter once it has caught up (retried up "
	"to the\n"
	"           node's --timeout-ms while it lags)\n"
	"  remove   remove a node (run it through a node that stays)\n\n"
	"A change waits until it is in effect on that node and prints one "
	"line; a\nrefusal says why (exit status 1). One change at a time.\n\n"
	"Options:\n"
	"  --json                list: print JSON\n" SFS_ADMIN_OPTS_HELP
		SFS_EXIT_HELP;

/* Print an "ok ..."/"err ..." reply as one line: ok to stdout, err to
 * stderr. Returns the exit status. */
static int print_line_reply(const char *cmd, const char *reply, size_t rlen)
{
	int ok = rlen >= 3 && !memcmp(reply, "ok ", 3);
	const char *msg = reply;
	size_t mlen = rlen;
	if (rlen >= 4 && !memcmp(reply, "err ", 4))
		msg += 4, mlen -= 4;
	else if (ok)
		msg += 3, mlen -= 3;
	while (mlen && msg[mlen - 1] == '\n')
		mlen--;
	if (ok)
		printf("%.*s\n", (int)mlen, msg);
	else
		fprintf(stderr, "sandfs %s: %.*s\n", cmd, (int)mlen, msg);
	return ok ? SFS_EXIT_OK : SFS_EXIT_FAIL;
}

static int cmd_member(int argc, char **argv)
{
	struct node_opts o;
	struct sfs_cli cli;
	memset(&cli, 0, sizeof(cli));
	cli.status_only = 1;
	cli.help = member_help;
	int prc = sfs_parse_node_opts(argc, argv, &o, &cli);
	if (prc != 0)
		return prc > 0 ? SFS_EXIT_OK : SFS_EXIT_USAGE;
	const char *verb = cli.n_rest ? cli.rest[0] : "";
	int want = !strcmp(verb, "list")				 ? 1
		   : !strcmp(verb, "add")				 ? 3
		   : !strcmp(verb, "promote") || !strcmp(verb, "remove") ? 2
									 : 0;
	if (!want || cli.n_rest != want || (cli.json && want != 1)) {
		fprintf(stderr,
			"sandfs member: %s\n"
			"usage: sandfs member list [--json] | add ID HOST:PORT "
			"| promote ID | remove ID   [--data DIR]\n",
			!want && cli.n_rest ? "unknown verb"
			: !want		    ? "what to do?"
			: cli.json && want != 1
				? "--json goes with list only"
				: "wrong number of arguments");
		return SFS_EXIT_USAGE;
	}
	char req[600];
	if (want == 1) {
		snprintf(req, sizeof(req), "member %s",
			 cli.json ? "list-json" : "list");
	} else {
		int w = snprintf(req, sizeof(req), "member %s %s%s%s", verb,
				 cli.rest[1], want == 3 ? " " : "",
				 want == 3 ? cli.rest[2] : "");
		if (w < 0 || (size_t)w >= sizeof(req) ||
		    strpbrk(req + 7, "\n\t")) {
			fprintf(stderr,
				"sandfs member: argument too long or with "
				"control characters\n");
			return SFS_EXIT_USAGE;
		}
	}
	char *reply = NULL;
	size_t rlen = 0;
	/* The node answers a change within its own timeout (--timeout-ms). */
	if (sfs_admin_call("member", o.data_dir, req, 120000, &reply, &rlen) <
	    0)
		return SFS_EXIT_FAIL;
	int rc;
	if (want == 1 && !(rlen >= 4 && !memcmp(reply, "err ", 4))) {
		fwrite(reply, 1, rlen, stdout);
		rc = SFS_EXIT_OK;
	} else {
		rc = print_line_reply("member", reply, rlen);
	}
	free(reply);
	return rc;
}

const struct sfs_cmd sfs_cmd_member = {
	.name = "member",
	.summary = "list, add, promote or remove members",
	.help = member_help,
	.run = cmd_member,
};
