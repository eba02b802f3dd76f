/*
 * main.h — the subcommands of `sandfs`, each defined in a file of its own
 * (fs/cmd_*.c, fs/mount.c) and listed in the table in main.c.
 *
 * To add a command: define `const struct sfs_cmd sfs_cmd_NAME` in a new
 * file, declare it below and add `&sfs_cmd_NAME,` to the table in main.c.
 * run() returns the exit status (SFS_EXIT_OK, SFS_EXIT_FAIL,
 * SFS_EXIT_USAGE from cli.h) and prints `help` for --help (sfs_cli.help
 * does that for commands that parse with sfs_parse_node_opts).
 */
#ifndef SANDFS_MAIN_H
#define SANDFS_MAIN_H

struct sfs_cmd {
	const char *name;    /* as typed: "leader" */
	const char *summary; /* one line for `sandfs --help` */
	const char *help;    /* the full text for `sandfs NAME --help` */
	int (*run)(int argc, char **argv); /* argv[0] is the name */
};

extern const struct sfs_cmd sfs_cmd_serve;   /* fs/cmd_serve.c */
extern const struct sfs_cmd sfs_cmd_mount;   /* fs/mount.c */
extern const struct sfs_cmd sfs_cmd_status;  /* fs/cmd_admin.c */
extern const struct sfs_cmd sfs_cmd_member;  /* fs/cmd_member.c */
extern const struct sfs_cmd sfs_cmd_leader;  /* fs/cmd_leader.c */
extern const struct sfs_cmd sfs_cmd_propose; /* fs/cmd_admin.c */
extern const struct sfs_cmd sfs_cmd_bench_propose; /* fs/cmd_admin.c */
extern const struct sfs_cmd sfs_cmd_fsck;    /* fs/cmd_fsck.c */

#endif
