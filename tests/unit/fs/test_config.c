/*
 * test_config.c — the configuration file (fs/config.c) and how the
 * command line merges it (fs/cli.c): every key parses, every kind of
 * mistake is refused with FILE:LINE and what is wrong, %i expands, the
 * node finds its id by its own address, and flags win over the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/cli.h"
#include "fs/config.h"
#include "transport/log.h"

static struct config C; /* big: not on the stack */
static char err[8192];

static int parse(const char *text)
{
	err[0] = 0;
	return config_parse(text, strlen(text), "/etc/sandfs/t.conf", &C, err,
			    sizeof(err));
}

static void every_key_parses_with_comments_blanks_and_crlf(void **state)
{
	(void)state;
	const char *text =
		"# a comment\n"
		"\n"
		"   # an indented comment\n"
		"id = 2\n"
		"member = 1=10.0.0.1:7000\n"
		"member=2=10.0.0.2:7000   # trailing comment\n"
		"MEMBER = 3=[::1]:7003\r\n"
		"data = /var/lib/sandfs/%i\n"
		"cluster_id = 3f2a\n"
		"secret-file = secret\n"
		"tls-cert = /pki/node.pem\n"
		"tls-key = /pki/node.key\n"
		"tls-ca = /pki/ca.pem\n"
		"timeout-ms = 2500\n"
		"log = /var/log/sandfs-%i.log\n"
		"log-level = debug\n"
		"mount-options = allow_other,entry_timeout=1\n"
		"mountpoint = /mnt/sandfs\n"
		"\t\n";
	assert_int_equal(parse(text), 0);
	assert_int_equal(C.id, 2);
	assert_int_equal(C.n_peers, 3);
	assert_int_equal(C.peers[0].id, 1);
	assert_string_equal(C.peers[0].addr, "tcp://10.0.0.1:7000");
	assert_string_equal(C.peers[1].addr, "tcp://10.0.0.2:7000");
	assert_string_equal(C.peers[2].addr, "tcp://[::1]:7003");
	assert_string_equal(C.data, "/var/lib/sandfs/%i");
	assert_int_equal(C.cluster_id, 0x3f2a);
	/* relative to the file's directory */
	assert_string_equal(C.secret_file, "/etc/sandfs/secret");
	assert_string_equal(C.tls_cert, "/pki/node.pem");
	assert_string_equal(C.tls_ca, "/pki/ca.pem");
	assert_int_equal(C.timeout_ms, 2500);
	assert_string_equal(C.log, "/var/log/sandfs-%i.log");
	assert_int_equal(C.log_level, LOG_LVL_DEBUG);
	assert_string_equal(C.mount_options, "allow_other,entry_timeout=1");
	assert_string_equal(C.mountpoint, "/mnt/sandfs");
	assert_int_equal(C.line[CONFIG_ID], 4);
	assert_int_equal(C.line[CONFIG_MEMBER], 5);
	assert_int_equal(C.line[CONFIG_MOUNTPOINT], 18);
}

static void empty_file_and_comments_only_give_nothing(void **state)
{
	(void)state;
	assert_int_equal(parse(""), 0);
	assert_int_equal(C.n_peers, 0);
	assert_int_equal(C.id, 0);
	assert_int_equal(C.log_level, -1);
	assert_string_equal(C.data, "");
	assert_int_equal(parse("# nothing\n\n  \n"), 0);
	assert_int_equal(C.n_peers, 0);
	/* a '#' inside a value (no blank before it) is kept */
	assert_int_equal(parse("data = /srv/a#b\n"), 0);
	assert_string_equal(C.data, "/srv/a#b");
}

struct bad {
	const char *text;
	const char *where; /* "FILE:LINE:" prefix expected */
	const char *what;  /* a piece of the message */
};

static void every_mistake_names_file_line_and_what(void **state)
{
	(void)state;
	static const struct bad cases[] = {
		{"data = /x\nsecret-flie = /y\n", ":2:", "unknown key 'secret-flie'"},
		{"# c\nmember 1 10.0.0.1:7000\n", ":2:", "want 'key = value'"},
		{"data =\n", ":1:", "data has no value"},
		{"= 5\n", ":1:", "no key before '='"},
		{"data = /a\n\ndata = /b\n", ":3:", "data given twice (first on line 1)"},
		{"member = 1=10.0.0.1:7000\nmember = 1=10.0.0.2:7000\n", ":2:",
		 "member 1 given twice (first on line 1)"},
		{"member = 1=10.0.0.1:7000\nmember = 2=10.0.0.1:7000\n", ":2:",
		 "already member 1's (line 1)"},
		{"member = 10.0.0.1:7000\n", ":1:", "want ID=HOST:PORT"},
		{"member = 0=10.0.0.1:7000\n", ":1:", "want ID=HOST:PORT"},
		{"member = 1=10.0.0.1\n", ":1:", "member 1: bad address"},
		{"member = 1=10.0.0.1:99999\n", ":1:", "bad address"},
		{"id = two\n", ":1:", "id wants a number >= 1, got 'two'"},
		{"id = 0\n", ":1:", "id wants a number"},
		{"cluster-id = xyz\n", ":1:", "cluster-id wants a nonzero hex"},
		{"timeout-ms = 50\n", ":1:", "timeout-ms wants milliseconds"},
		{"timeout-ms = 10s\n", ":1:", "timeout-ms wants milliseconds"},
		{"log-level = loud\n", ":1:", "log-level wants error, warn"},
		{"\n\ntls-key = /k\ntls-ca = /c\n", ":3:",
		 "TLS needs all of tls-cert, tls-key and tls-ca"},
		{"member = 1=h:1\nid = 4\n", ":2:", "id 4 is not one of the members"},
		{"data = /a\x01" "b\n", ":1:", "control character"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].text);
		char want[64];
		snprintf(want, sizeof(want), "/etc/sandfs/t.conf%s",
			 cases[i].where);
		if (rc != -EINVAL || strncmp(err, want, strlen(want)) ||
		    !strstr(err, cases[i].what))
			fail_msg("case %zu: rc %d, message '%s'; want prefix "
				 "'%s' and '%s'",
				 i, rc, err, want, cases[i].what);
	}
}

static void overlong_line_and_too_many_members_are_refused(void **state)
{
	(void)state;
	size_t n = CONFIG_PATH_MAX + 1000;
	char *t = malloc(n + 16);
	assert_non_null(t);
	memcpy(t, "data = /", 8);
	memset(t + 8, 'a', n - 8);
	strcpy(t + n, "\n");
	assert_int_equal(parse(t), -EINVAL);
	assert_non_null(strstr(err, ":1: line too long"));
	free(t);

	char many[4096] = "";
	for (int i = 1; i <= RAFT_MAX_NODES + 1; i++) {
		char line[64];
		snprintf(line, sizeof(line), "member = %d=10.0.0.%d:7000\n", i,
			 i);
		strcat(many, line);
	}
	assert_int_equal(parse(many), -EINVAL);
	assert_non_null(strstr(err, "too many members"));
}

static void expand_replaces_id_and_refuses_unknown_sequences(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(config_expand("/d/%i/x%%y", 12, out, sizeof(out), err,
				       sizeof(err)),
			 0);
	assert_string_equal(out, "/d/12/x%y");
	assert_int_equal(config_expand("/plain", 0, out, sizeof(out), err,
				       sizeof(err)),
			 0);
	assert_string_equal(out, "/plain");
	assert_int_equal(config_expand("/d/%i", 0, out, sizeof(out), err,
				       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "node id is not known"));
	assert_int_equal(config_expand("/d/%s", 1, out, sizeof(out), err,
				       sizeof(err)),
			 -EINVAL);
	assert_int_equal(config_expand("/a-long-path/%i", 123456, out, 10, err,
				       sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "too long"));
}

static void self_is_the_member_with_a_local_address(void **state)
{
	(void)state;
	assert_int_equal(parse("member = 1=10.9.0.1:7000\n"
			       "member = 2=10.9.0.2:7000\n"
			       "member = 3=[fd00::3]:7000\n"),
			 0);
	raft_id id = 0;
	const char *one[] = {"127.0.0.1", "10.9.0.2"};
	assert_int_equal(config_match_self(C.peers, C.n_peers, one, 2, &id, err,
					   sizeof(err)),
			 0);
	assert_int_equal(id, 2);
	const char *v6[] = {"fd00::3"};
	assert_int_equal(config_match_self(C.peers, C.n_peers, v6, 1, &id, err,
					   sizeof(err)),
			 0);
	assert_int_equal(id, 3);
	const char *none[] = {"192.168.1.1"};
	assert_int_equal(config_match_self(C.peers, C.n_peers, none, 1, &id,
					   err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "give --id"));
	const char *two[] = {"10.9.0.1", "10.9.0.2"};
	assert_int_equal(config_match_self(C.peers, C.n_peers, two, 2, &id, err,
					   sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "members 1, 2"));
	/* and against this machine: 127.0.0.1 is on lo, 127.0.0.2 is not
	 * an interface address (lo has 127.0.0.1/8) */
	assert_int_equal(parse("member = 1=10.9.0.1:7000\n"
			       "member = 5=127.0.0.1:7000\n"),
			 0);
	assert_int_equal(config_find_self(C.peers, C.n_peers, &id, err,
					  sizeof(err)),
			 0);
	assert_int_equal(id, 5);
}

/* A temporary directory for files. */
static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sfs-config-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void load_reports_missing_file_directory_and_bad_line(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
	assert_int_equal(config_load(path, &C, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));
	assert_true(config_load(tmpdir, &C, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "directory"));
	write_file("ok.conf", "data = d%i\nmember = 1=127.0.0.1:7000\n");
	snprintf(path, sizeof(path), "%s/ok.conf", tmpdir);
	assert_int_equal(config_load(path, &C, err, sizeof(err)), 0);
	char want[512];
	snprintf(want, sizeof(want), "%s/d%%i", tmpdir);
	assert_string_equal(C.data, want);
	write_file("bad.conf", "data = d\nwhat\n");
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	assert_int_equal(config_load(path, &C, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: want 'key = value'", path);
	assert_non_null(strstr(err, want));
}

/* sfs_parse_node_opts over a file: argv built from a string. */
static struct sfs_cli CLI;
static struct node_opts O;

static int run_cli(int status_only, const char *args)
{
	static char buf[1024];
	static char *argv[32];
	snprintf(buf, sizeof(buf), "%s", args);
	int argc = 0;
	for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc] = NULL;
	memset(&CLI, 0, sizeof(CLI));
	CLI.status_only = status_only;
	return sfs_parse_node_opts(argc, argv, &O, &CLI);
}

static void flags_override_the_file_and_id_comes_from_address(void **state)
{
	(void)state;
	unsetenv("SANDFS_CONFIG");
	write_file("c.conf", "member = 1=127.0.0.1:7001\n"
			     "member = 2=10.77.0.2:7002\n"
			     "data = n%i\n"
			     "timeout-ms = 2000\n"
			     "log = n%i.log\n"
			     "mount-options = allow_other,timeout_ms=3000\n"
			     "mountpoint = /mnt/x\n");
	char a[512], want[256];
	/* no --id: member 1 has this machine's address */
	snprintf(a, sizeof(a), "serve --config %s/c.conf", tmpdir);
	assert_int_equal(run_cli(0, a), 0);
	assert_int_equal(O.id, 1);
	assert_int_equal(O.n_peers, 2);
	snprintf(want, sizeof(want), "%s/n1", tmpdir);
	assert_string_equal(O.data_dir, want);
	snprintf(want, sizeof(want), "%s/n1.log", tmpdir);
	assert_string_equal(CLI.log_path, want);
	assert_int_equal(O.propose_timeout_ms, 2000);
	assert_string_equal(CLI.mountpoint, "/mnt/x");
	assert_string_equal(CLI.mount_opts, "allow_other,timeout_ms=3000");
	/* flags win: id, data, timeout, log; -o goes after the file's */
	snprintf(a, sizeof(a),
		 "mount --config %s/c.conf --id 2 --data /d2 --timeout-ms 500 "
		 "--log /l2 -o ro,timeout_ms=900",
		 tmpdir);
	assert_int_equal(run_cli(0, a), 0);
	assert_int_equal(O.id, 2);
	assert_string_equal(O.data_dir, "/d2");
	assert_int_equal(O.propose_timeout_ms, 500);
	assert_string_equal(CLI.log_path, "/l2");
	assert_string_equal(CLI.mount_opts,
			    "allow_other,timeout_ms=3000,ro,timeout_ms=900");
	/* --peers replaces the members */
	snprintf(a, sizeof(a),
		 "serve --config %s/c.conf --id 3 --peers 3=127.0.0.3:9",
		 tmpdir);
	assert_int_equal(run_cli(0, a), 0);
	assert_int_equal(O.n_peers, 1);
	snprintf(want, sizeof(want), "%s/n3", tmpdir);
	assert_string_equal(O.data_dir, want);
	/* an id that is not a member of the file */
	snprintf(a, sizeof(a), "serve --config %s/c.conf --id 7", tmpdir);
	assert_int_equal(run_cli(0, a), -EINVAL);
	/* status: the data directory of the node found by address */
	snprintf(a, sizeof(a), "status --config %s/c.conf", tmpdir);
	assert_int_equal(run_cli(1, a), 0);
	snprintf(want, sizeof(want), "%s/n1", tmpdir);
	assert_string_equal(O.data_dir, want);
}

static void named_file_must_exist_and_empty_env_means_none(void **state)
{
	(void)state;
	char a[512];
	snprintf(a, sizeof(a), "status --config %s/absent.conf", tmpdir);
	assert_int_equal(run_cli(1, a), -EINVAL);
	snprintf(a, sizeof(a), "%s/absent.conf", tmpdir);
	setenv("SANDFS_CONFIG", a, 1);
	assert_int_equal(run_cli(1, "status"), -EINVAL);
	setenv("SANDFS_CONFIG", "", 1);
	assert_int_equal(run_cli(1, "status --data /x"), 0);
	assert_null(CLI.config_path);
	snprintf(a, sizeof(a), "%s/c.conf", tmpdir);
	setenv("SANDFS_CONFIG", a, 1);
	assert_int_equal(run_cli(1, "status"), 0);
	assert_non_null(CLI.config_path);
	/* --config wins over the environment */
	snprintf(a, sizeof(a), "status --config %s/bad.conf", tmpdir);
	assert_int_equal(run_cli(1, a), -EINVAL);
	unsetenv("SANDFS_CONFIG");
	/* --help works whatever the file says */
	snprintf(a, sizeof(a), "status --config %s/bad.conf --help", tmpdir);
	CLI.help = NULL;
	assert_int_equal(run_cli(1, a), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_key_parses_with_comments_blanks_and_crlf),
		cmocka_unit_test(empty_file_and_comments_only_give_nothing),
		cmocka_unit_test(every_mistake_names_file_line_and_what),
		cmocka_unit_test(overlong_line_and_too_many_members_are_refused),
		cmocka_unit_test(expand_replaces_id_and_refuses_unknown_sequences),
		cmocka_unit_test(self_is_the_member_with_a_local_address),
		cmocka_unit_test(load_reports_missing_file_directory_and_bad_line),
		cmocka_unit_test(flags_override_the_file_and_id_comes_from_address),
		cmocka_unit_test(named_file_must_exist_and_empty_env_means_none),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
