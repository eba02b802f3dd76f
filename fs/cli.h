/* cli.h — the command-line options every `sandfs` subcommand shares
 * (fs/cli.c): the node options of serve and mount, --data/--json of the
 * commands that talk to a running node, and the configuration file that
 * supplies what the flags leave out. */
#ifndef SANDFS_CLI_H
#define SANDFS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fs/config.h"
#include "fs/node.h"

/* Exit statuses of every sandfs command. */
#define SFS_EXIT_OK 0    /* done */
#define SFS_EXIT_FAIL 1  /* the operation failed (no node, refused, I/O) */
#define SFS_EXIT_USAGE 2 /* bad option, argument or configuration file */

struct sfs_cli {
	/* In: set by the caller before sfs_parse_node_opts. */
	int status_only;  /* only the data directory is needed */
	const char *help; /* printed for --help (NULL: the command list) */
	/* Out. */
	int foreground;
	int json;
	const char *mount_opts; /* -o, after the file's mount-options */
	const char *log_path;   /* --log / log =, NULL: stderr */
	const char *mountpoint; /* the file's mountpoint, NULL if none */
	const char *config_path; /* the file in use, NULL if none */
	char **rest; /* positional arguments */
	int n_rest;
	uint8_t secret[4096];
	size_t secret_len;
	/* Storage for the strings above and in node_opts. */
	struct config conf;
	char data_buf[CONFIG_PATH_MAX];
	char log_buf[CONFIG_PATH_MAX];
	char opts_buf[2 * CONFIG_OPTS_MAX];
};

/* Parse the options of a subcommand (argv[0] is its name) into o and cli,
 * filling what the flags leave out from the configuration file (--config
 * FILE, else $SANDFS_CONFIG when set — empty means none —, else
 * /etc/sandfs/sandfs.conf when it exists). Returns 0; 1 when --help was
 * asked for (cli->help is printed to stdout; the caller exits 0); or
 * -EINVAL on a bad or missing flag or a bad file (the reason is printed;
 * the caller exits SFS_EXIT_USAGE). */
int sfs_parse_node_opts(int argc, char **argv, struct node_opts *o,
			struct sfs_cli *cli);

/* The text of the node options (serve and mount), for help texts. */
#define SFS_NODE_OPTS_HELP \
	"Node options (each may instead come from the configuration file):\n" \
	"  --id N                this node's id among the members (default: the\n" \
	"                        member whose address is one of this machine's)\n" \
	"  --peers 1=HOST:PORT,...  every member, this node included; the node\n" \
	"                        listens on its own entry's address\n" \
	"  --data DIR            data directory: Raft log, inode table, blocks,\n" \
	"                        admin socket\n" \
	"  --cluster-id HEX      the cluster id (default: derived from --peers)\n" \
	"  --secret-file FILE    authenticate peers with this shared secret\n" \
	"  --tls-cert PEM --tls-key PEM --tls-ca PEM   links over TLS (all three)\n" \
	"  --timeout-ms MS       how long a change waits for a majority (default\n" \
	"                        10000)\n" \
	"  --join                start empty and wait to be added (`sandfs member\n" \
	"                        add`); needs --cluster-id\n" \
	"  --log FILE            log to FILE (appended; reopened on SIGHUP)\n" \
	"                        instead of stderr\n" \
	"  --log-level LEVEL     error, warn, info (default) or debug\n" \
	"  --config FILE         configuration file (default\n" \
	"                        " CONFIG_DEFAULT_PATH ")\n" \
	"  -h, --help            this text\n"

/* The options of the commands that talk to a running node. */
#define SFS_ADMIN_OPTS_HELP \
	"  --data DIR            data directory of a node running on this machine\n" \
	"                        (default: data = in the configuration file)\n" \
	"  --id N                the node id, when the file's data path holds %i\n" \
	"  --config FILE         configuration file (default\n" \
	"                        " CONFIG_DEFAULT_PATH ")\n" \
	"  -h, --help            this text\n"

/* The exit statuses, for help texts. */
#define SFS_EXIT_HELP \
	"\nExit status: 0 done, 1 the operation failed, 2 usage error.\n"

/* Send req to the admin socket of the node whose data directory is dir,
 * waiting up to timeout_ms. On success returns 0 and *reply (malloc()ed,
 * NUL-terminated, caller frees). When no node answers, prints "sandfs
 * CMD: no node answers on ...; is a node running with --data DIR?" and
 * returns the negative errno. */
int sfs_admin_call(const char *cmd, const char *dir, const char *req,
		   uint32_t timeout_ms, char **reply, size_t *rlen);

#endif
