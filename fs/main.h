/* main.h — command-line pieces shared by the sandfs subcommands. */
#ifndef SANDFS_MAIN_H
#define SANDFS_MAIN_H

#include <stddef.h>
#include <stdint.h>

#include "fs/node.h"

struct sfs_cli {
	int status_only; /* only --data/--json are needed */
	int foreground;
	int json;
	const char *mount_opts;
	char **rest; /* positional arguments */
	int n_rest;
	uint8_t secret[4096];
	size_t secret_len;
};

/* Parse the node options shared by serve and mount; prints the reason
 * and returns -EINVAL on a bad or missing flag. */
int sfs_parse_node_opts(int argc, char **argv, struct node_opts *o,
			struct sfs_cli *cli);

/* `sandfs mount ...` (fs/mount.c). */
int sfs_cmd_mount(int argc, char **argv);

#endif
