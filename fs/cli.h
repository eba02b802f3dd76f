/* cli.h — the command-line options shared by `sandfs serve` and `sandfs
 * mount` (fs/cli.c); main.c and mount.c both use it, neither uses the
 * other's internals. */
#ifndef SANDFS_CLI_H
#define SANDFS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* Parse the node options shared by serve and mount: 0, 1 when --help was
 * asked for (the usage text is printed; the caller exits 0), or -EINVAL
 * on a bad or missing flag (the reason is printed). */
int sfs_parse_node_opts(int argc, char **argv, struct node_opts *o,
			struct sfs_cli *cli);

/* The usage text of the sandfs command, to f. */
void sfs_usage(FILE *f);

#endif
