/*
 * cli.c — the node options that `sandfs serve` and `sandfs mount` share,
 * and the usage text (see cli.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "transport/log.h"

/* See cli.h. */
void sfs_usage(FILE *f)
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
		"  sandfs fsck   --data DIR [--repair] [--json] [--online|--offline]\n"
		"                [--id N --peers ...]   (see sandfs fsck --help)\n"
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

/* See cli.h. */
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
			sfs_usage(stdout);
			return 1;
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
