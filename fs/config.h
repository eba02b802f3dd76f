/*
 * config.h — the sandfs configuration file (default
 * /etc/sandfs/sandfs.conf), read by every `sandfs` command.
 *
 *   # the cluster: one line per member, ID=HOST:PORT
 *   member = 1=10.0.0.1:7000
 *   member = 2=10.0.0.2:7000
 *   member = 3=10.0.0.3:7000
 *   data = /var/lib/sandfs
 *   secret-file = /etc/sandfs/secret
 *   mount-options = allow_other
 *
 * One `key = value` a line. Blank lines and lines whose first non-blank
 * character is '#' are ignored, and so is everything from a '#' that
 * follows a blank. The value is the rest of the line with surrounding
 * blanks removed. Keys are the long option names of `sandfs serve` and
 * `sandfs mount` ('_' may stand for '-'):
 *
 *   id             this node's id (else the member whose address is one of
 *                  this machine's, see config_find_self)
 *   member         ID=HOST:PORT, once per member (the --peers list)
 *   data           data directory; %i stands for the node id
 *   cluster-id     HEX
 *   secret-file, tls-cert, tls-key, tls-ca   files (TLS: all three)
 *   timeout-ms     MS (>= 100)
 *   log            log file (%i: node id); log-level error|warn|info|debug
 *   mount-options  default -o options of `sandfs mount`
 *   mountpoint     default mount point of `sandfs mount`
 *
 * Relative paths are taken relative to the directory of the file. Every
 * key but member may be given once. Errors name FILE:LINE and what is
 * wrong. Command-line flags override the file (config.c has no notion of
 * flags; fs/cli.c merges).
 */
#ifndef SANDFS_CONFIG_H
#define SANDFS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/repl.h"

#define CONFIG_DEFAULT_PATH "/etc/sandfs/sandfs.conf"
#define CONFIG_PATH_MAX 4096
#define CONFIG_OPTS_MAX 2048
#define CONFIG_FILE_MAX (1u << 20) /* a bigger file is refused */

/* Which key a line number in config.line[] belongs to. */
enum config_key {
	CONFIG_ID,
	CONFIG_MEMBER, /* line of the first member */
	CONFIG_DATA,
	CONFIG_CLUSTER_ID,
	CONFIG_SECRET_FILE,
	CONFIG_TLS_CERT,
	CONFIG_TLS_KEY,
	CONFIG_TLS_CA,
	CONFIG_TIMEOUT_MS,
	CONFIG_LOG,
	CONFIG_LOG_LEVEL,
	CONFIG_MOUNT_OPTIONS,
	CONFIG_MOUNTPOINT,
	CONFIG_N_KEYS,
};

/* A parsed file. A string is "" and a number 0 when the key is absent
 * (log_level: -1). */
struct config {
	char file[CONFIG_PATH_MAX]; /* where it came from, for messages */
	raft_id id;
	struct repl_peer peers[RAFT_MAX_NODES]; /* addresses as tcp://H:P */
	size_t n_peers;
	char data[CONFIG_PATH_MAX]; /* may hold %i */
	uint64_t cluster_id;
	char secret_file[CONFIG_PATH_MAX];
	char tls_cert[CONFIG_PATH_MAX];
	char tls_key[CONFIG_PATH_MAX];
	char tls_ca[CONFIG_PATH_MAX];
	uint32_t timeout_ms;
	char log[CONFIG_PATH_MAX]; /* may hold %i */
	int log_level;             /* enum log_level, -1 absent */
	char mount_options[CONFIG_OPTS_MAX];
	char mountpoint[CONFIG_PATH_MAX];
	int line[CONFIG_N_KEYS]; /* line of each key, 0 absent */
};

/* Parse text (len bytes, need not be NUL-terminated) as the contents of
 * the file named `file` (used in messages and as the base of relative
 * paths). Returns 0, or -EINVAL with "FILE:LINE: what is wrong" in err
 * (errcap bytes); *c is then unspecified. */
int config_parse(const char *text, size_t len, const char *file,
		 struct config *c, char *err, size_t errcap);

/* Read and parse the file at path. Returns 0; -ENOENT when it does not
 * exist, another negative errno when it cannot be read, -EINVAL when it
 * is malformed (too big included); err always says why. */
int config_load(const char *path, struct config *c, char *err, size_t errcap);

/* Expand a path template: %i becomes id, %% a '%'. Returns 0, or -EINVAL
 * with a reason in err (%i with id 0, another % sequence, too long). */
int config_expand(const char *tmpl, raft_id id, char *out, size_t cap,
		  char *err, size_t errcap);

/* Which of peers is this machine: the one whose host resolves to one of
 * the addresses in local (numeric, as inet_ntop writes them). Returns 0
 * and *id; -ENOENT when none matches, -EEXIST when several do; err says
 * which. Host names are resolved (getaddrinfo). */
int config_match_self(const struct repl_peer *peers, size_t n,
		      const char *const *local, size_t n_local, raft_id *id,
		      char *err, size_t errcap);

/* The same against this machine's interface addresses (getifaddrs). */
int config_find_self(const struct repl_peer *peers, size_t n, raft_id *id,
		     char *err, size_t errcap);

#endif
