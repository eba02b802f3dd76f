/*
 * cli.c — the options the sandfs subcommands share (see cli.h): flags
 * first, then the configuration file for whatever the flags left out.
 *
 * Order of precedence, highest first: a command-line flag, the
 * configuration file, the built-in default. The node id, when neither
 * gives it, is the member whose address belongs to this machine.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/cli.h"
#include "transport/admin.h"
#include "transport/log.h"

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

/* Flag values as given (NULL: not given). */
struct flags {
	const char *id, *peers, *data, *cluster_id, *secret, *timeout, *level;
	const char *cert, *key, *ca, *log, *config;
	int join;
};

/* "(FILE:LINE)" for messages about a value from the file. */
static const char *from_file(const struct config *c, enum config_key k,
			     char *buf, size_t cap)
{
	snprintf(buf, cap, " (%s:%d)", c->file, c->line[k]);
	return buf;
}

/* Load the configuration file, if any: 0 (cli->config_path says whether
 * one was read) or -EINVAL (printed). */
static int load_config(const char *cmd, const char *flag_path,
		       struct sfs_cli *cli)
{
	const char *path = flag_path;
	int explicit = path != NULL;
	if (!path) {
		const char *env = getenv("SANDFS_CONFIG");
		if (env) {
			if (!*env)
				return 0;
			path = env;
			explicit = 1;
		} else {
			path = CONFIG_DEFAULT_PATH;
		}
	}
	char err[CONFIG_PATH_MAX + 512];
	int rc = config_load(path, &cli->conf, err, sizeof(err));
	if (rc == -ENOENT && !explicit)
		return 0; /* no default file: fine */
	if (rc == -EACCES && !explicit) {
		fprintf(stderr,
			"sandfs %s: note: %s is not readable by this user; "
			"going on without it\n",
			cmd, path);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "sandfs %s: %s%s\n", cmd, err,
			explicit && flag_path	? ""
			: explicit		? " (named by SANDFS_CONFIG)"
						: "");
		return -EINVAL;
	}
	cli->config_path = cli->conf.file;
	return 0;
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
		{"log", required_argument, NULL, 'L'},
		{"config", required_argument, NULL, 'F'},
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
	const char *cmd = argv[0];
	char err[CONFIG_PATH_MAX + 512], where[CONFIG_PATH_MAX + 32];
	struct flags fl = {0};
	const char *fuse_opts = NULL;
	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0; /* we print one line of our own */
	int c;
	while ((c = getopt_long(argc, argv, ":fo:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': fl.id = optarg; break;
		case 'p': fl.peers = optarg; break;
		case 'd': fl.data = optarg; break;
		case 'c': fl.cluster_id = optarg; break;
		case 's': fl.secret = optarg; break;
		case 't': fl.timeout = optarg; break;
		case 'l': fl.level = optarg; break;
		case 'L': fl.log = optarg; break;
		case 'F': fl.config = optarg; break;
		case 'C': fl.cert = optarg; break;
		case 'K': fl.key = optarg; break;
		case 'A': fl.ca = optarg; break;
		case 'J': fl.join = 1; break;
		case 'f': cli->foreground = 1; break;
		case 'o': fuse_opts = optarg; break;
		case 'j': cli->json = 1; break;
		case 'h':
			if (cli->help)
				fputs(cli->help, stdout);
			else
				printf("see sandfs --help\n");
			return 1;
		case ':':
			fprintf(stderr,
				"sandfs %s: option '%s' needs a value (see "
				"sandfs %s --help)\n",
				cmd, argv[optind - 1], cmd);
			return -EINVAL;
		default:
			fprintf(stderr,
				"sandfs %s: unknown option '%s' (see sandfs %s "
				"--help)\n",
				cmd, argv[optind - 1], cmd);
			return -EINVAL;
		}
	}
	cli->rest = argv + optind;
	cli->n_rest = argc - optind;

	/* Flag values on their own. */
	char *end = NULL;
	if (fl.id) {
		o->id = strtoull(fl.id, &end, 10);
		if (fl.id[0] < '0' || fl.id[0] > '9' || *end || o->id == 0) {
			fprintf(stderr,
				"sandfs %s: --id wants a number >= 1, got "
				"'%s'\n",
				cmd, fl.id);
			return -EINVAL;
		}
	}
	if (fl.cluster_id) {
		o->cluster_id = strtoull(fl.cluster_id, &end, 16);
		if (!*fl.cluster_id || *end || !o->cluster_id ||
		    fl.cluster_id[0] == '-') {
			fprintf(stderr,
				"sandfs %s: --cluster-id wants a nonzero hex "
				"number\n",
				cmd);
			return -EINVAL;
		}
	}
	if (fl.timeout) {
		unsigned long v = strtoul(fl.timeout, &end, 10);
		if (fl.timeout[0] < '0' || fl.timeout[0] > '9' || *end ||
		    v < 100 || v > 3600000) {
			fprintf(stderr,
				"sandfs %s: --timeout-ms wants a number, "
				"100..3600000\n",
				cmd);
			return -EINVAL;
		}
		o->propose_timeout_ms = (uint32_t)v;
	}
	enum log_level lvl = LOG_LVL_INFO;
	if (fl.level && log_parse_level(fl.level, &lvl) != 0) {
		fprintf(stderr,
			"sandfs %s: --log-level wants error|warn|info|debug\n",
			cmd);
		return -EINVAL;
	}
	if (fl.peers && node_parse_peers(fl.peers, o->peers, RAFT_MAX_NODES,
					 &o->n_peers, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandfs %s: %s\n", cmd, err);
		return -EINVAL;
	}
	o->join = fl.join;

	/* The file fills in the rest. */
	if (load_config(cmd, fl.config, cli) != 0)
		return -EINVAL;
	const struct config *cf = &cli->conf;
	int have_cf = cli->config_path != NULL;
	if (have_cf) {
		if (!fl.id && cf->id)
			o->id = cf->id;
		if (!fl.peers && cf->n_peers) {
			memcpy(o->peers, cf->peers, sizeof(cf->peers));
			o->n_peers = cf->n_peers;
		}
		if (!fl.cluster_id && cf->cluster_id)
			o->cluster_id = cf->cluster_id;
		if (!fl.timeout && cf->timeout_ms)
			o->propose_timeout_ms = cf->timeout_ms;
		if (!fl.level && cf->log_level >= 0) {
			lvl = (enum log_level)cf->log_level;
			fl.level = "";
		}
		if (!fl.secret && cf->secret_file[0])
			fl.secret = cf->secret_file;
		if (!fl.cert && !fl.key && !fl.ca && cf->tls_cert[0]) {
			fl.cert = cf->tls_cert;
			fl.key = cf->tls_key;
			fl.ca = cf->tls_ca;
		}
		if (cf->mountpoint[0])
			cli->mountpoint = cf->mountpoint;
	}
	if (fl.level)
		log_set_level(lvl);

	/* The id, when a command needs it and nobody gave it: the member
	 * with an address of this machine. */
	int need_id = !cli->status_only ||
		      (!fl.data && have_cf && strstr(cf->data, "%i"));
	if (need_id && !o->id && o->n_peers) {
		raft_id self = 0;
		if (config_find_self(o->peers, o->n_peers, &self, err,
				     sizeof(err)) != 0) {
			fprintf(stderr, "sandfs %s: which node is this? %s\n",
				cmd, err);
			return -EINVAL;
		}
		o->id = self;
	}

	/* The data directory (and the log) may be templates (%i). */
	if (fl.data) {
		o->data_dir = fl.data;
	} else if (have_cf && cf->data[0]) {
		if (config_expand(cf->data, o->id, cli->data_buf,
				  sizeof(cli->data_buf), err,
				  sizeof(err)) != 0) {
			fprintf(stderr, "sandfs %s: data%s: %s\n", cmd,
				from_file(cf, CONFIG_DATA, where,
					  sizeof(where)),
				err);
			return -EINVAL;
		}
		o->data_dir = cli->data_buf;
	}
	if (fl.log) {
		cli->log_path = fl.log;
	} else if (have_cf && cf->log[0]) {
		if (config_expand(cf->log, o->id, cli->log_buf,
				  sizeof(cli->log_buf), err,
				  sizeof(err)) != 0) {
			fprintf(stderr, "sandfs %s: log%s: %s\n", cmd,
				from_file(cf, CONFIG_LOG, where, sizeof(where)),
				err);
			return -EINVAL;
		}
		cli->log_path = cli->log_buf;
	}
	/* Mount options: the file's first, so that -o wins where both set
	 * the same option (mount.c takes the last). */
	if (have_cf && cf->mount_options[0] && fuse_opts) {
		int w = snprintf(cli->opts_buf, sizeof(cli->opts_buf), "%s,%s",
				 cf->mount_options, fuse_opts);
		if (w < 0 || (size_t)w >= sizeof(cli->opts_buf)) {
			fprintf(stderr, "sandfs %s: -o is too long\n", cmd);
			return -EINVAL;
		}
		cli->mount_opts = cli->opts_buf;
	} else {
		cli->mount_opts = fuse_opts ? fuse_opts
			: have_cf && cf->mount_options[0] ? cf->mount_options
							  : NULL;
	}

	if (cli->status_only) {
		if (o->data_dir)
			return 0;
		fprintf(stderr,
			"sandfs %s: --data is required (or data = in %s)\n",
			cmd, have_cf ? cf->file : CONFIG_DEFAULT_PATH);
		return -EINVAL;
	}

	if (fl.secret) {
		int rc = read_secret(fl.secret, cli->secret,
				     sizeof(cli->secret), &cli->secret_len);
		if (rc) {
			fprintf(stderr,
				"sandfs %s: cannot read secret file %s%s: %s\n",
				cmd, fl.secret,
				fl.secret == cf->secret_file
					? from_file(cf, CONFIG_SECRET_FILE,
						    where, sizeof(where))
					: "",
				rc == -EINVAL ? "empty" : strerror(-rc));
			return -EINVAL;
		}
		o->secret = cli->secret;
		o->secret_len = cli->secret_len;
	}
	o->tls_cert = fl.cert;
	o->tls_key = fl.key;
	o->tls_ca = fl.ca;
	if ((o->tls_cert || o->tls_key || o->tls_ca) &&
	    !(o->tls_cert && o->tls_key && o->tls_ca)) {
		fprintf(stderr,
			"sandfs %s: TLS needs all of --tls-cert, --tls-key "
			"and --tls-ca\n",
			cmd);
		return -EINVAL;
	}
	if (o->join && !o->cluster_id) {
		fprintf(stderr,
			"sandfs %s: --join needs --cluster-id HEX (the id "
			"`sandfs status` shows on a member)\n",
			cmd);
		return -EINVAL;
	}
	if (!o->n_peers || !o->data_dir || !o->id) {
		char miss[64] = "";
		if (!o->id)
			strcat(miss, " --id");
		if (!o->n_peers)
			strcat(miss, " --peers");
		if (!o->data_dir)
			strcat(miss, " --data");
		fprintf(stderr,
			"sandfs %s: missing%s (give the flag%s, see sandfs %s "
			"--help)\n",
			cmd, miss,
			have_cf ? ", or set it in the configuration file"
				: " or write a configuration file",
			cmd);
		return -EINVAL;
	}
	int self = 0;
	for (size_t i = 0; i < o->n_peers; i++)
		self |= o->peers[i].id == o->id;
	if (!self) {
		fprintf(stderr, "sandfs %s: %s %llu is not in %s\n", cmd,
			fl.id ? "--id" : "id", (unsigned long long)o->id,
			fl.peers ? "--peers" : "the members of the file");
		return -EINVAL;
	}
	return 0;
}

/* See cli.h. */
int sfs_admin_call(const char *cmd, const char *dir, const char *req,
		   uint32_t timeout_ms, char **reply, size_t *rlen)
{
	char path[CONFIG_PATH_MAX + 32];
	node_admin_path(dir, path, sizeof(path));
	uint8_t *r = NULL;
	size_t n = 0;
	int rc = admin_call(path, req, strlen(req), &r, &n, timeout_ms);
	if (rc < 0) {
		fprintf(stderr,
			"sandfs %s: no node answers on %s (%s); is a node "
			"running with --data %s?\n",
			cmd, path, strerror(-rc), dir);
		return rc;
	}
	char *s = malloc(n + 1);
	if (!s) {
		free(r);
		fprintf(stderr, "sandfs %s: out of memory\n", cmd);
		return -ENOMEM;
	}
	if (n)
		memcpy(s, r, n);
	s[n] = 0;
	free(r);
	*reply = s;
	*rlen = n;
	return 0;
}
