/*
 * main.c — the `sandfs` command: finds the subcommand in the table and
 * runs it. `sandfs help [CMD]`, `sandfs version` live here; everything
 * else in its own file (see main.h).
 *
 * Exit status of every command: 0 done, 1 the operation failed, 2 usage
 * error (bad option, argument or configuration file).
 */
#include <stdio.h>
#include <string.h>

#include "fs/cli.h"
#include "fs/main.h"

#ifndef SANDFS_VERSION
#define SANDFS_VERSION "unknown"
#endif

/* Every subcommand, in the order `sandfs --help` lists them. */
static const struct sfs_cmd *const cmds[] = {
	&sfs_cmd_mount,
	&sfs_cmd_serve,
	&sfs_cmd_status,
	&sfs_cmd_member,
	&sfs_cmd_leader,
	&sfs_cmd_fsck,
	&sfs_cmd_propose,
	&sfs_cmd_bench_propose,
};
#define N_CMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct sfs_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < N_CMDS; i++)
		if (!strcmp(cmds[i]->name, name))
			return cmds[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sandfs COMMAND [OPTIONS] [ARGUMENTS]\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < N_CMDS; i++)
		fprintf(f, "  %-14s %s\n", cmds[i]->name, cmds[i]->summary);
	fprintf(f,
		"  %-14s %s\n  %-14s %s\n\n"
		"`sandfs COMMAND --help` (or `sandfs help COMMAND`) describes "
		"one command.\n"
		"Options left out come from the configuration file: --config "
		"FILE, else\n"
		"$SANDFS_CONFIG, else %s if it exists.\n\n"
		"Exit status: 0 done, 1 the operation failed, 2 usage error "
		"(bad option,\nargument or configuration file). See "
		"sandfs(1).\n",
		"version", "print the version", "help",
		"print this text, or one command's", CONFIG_DEFAULT_PATH);
}

static int cmd_version(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--help") &&
			 strcmp(argv[1], "-h"))) {
		fprintf(stderr, "usage: sandfs version\n");
		return SFS_EXIT_USAGE;
	}
	if (argc == 2)
		printf("usage: sandfs version\n\nPrint the version of sandfs "
		       "(also: sandfs --version).\n");
	else
		printf("sandfs %s\n", SANDFS_VERSION);
	return SFS_EXIT_OK;
}

static int cmd_help(int argc, char **argv)
{
	if (argc == 1 || (argc == 2 && (!strcmp(argv[1], "--help") ||
					!strcmp(argv[1], "-h")))) {
		usage(stdout);
		return SFS_EXIT_OK;
	}
	const struct sfs_cmd *c = argc == 2 ? find_cmd(argv[1]) : NULL;
	if (argc == 2 && !strcmp(argv[1], "version"))
		return cmd_version(2, (char *[]){"version", "--help", NULL});
	if (!c) {
		fprintf(stderr, "sandfs help: %s\n",
			argc == 2 ? "no such command (see sandfs --help)"
				  : "usage: sandfs help [COMMAND]");
		return SFS_EXIT_USAGE;
	}
	fputs(c->help, stdout);
	return SFS_EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return SFS_EXIT_USAGE;
	}
	const char *name = argv[1];
	const struct sfs_cmd *c = find_cmd(name);
	if (c)
		return c->run(argc - 1, argv + 1);
	if (!strcmp(name, "help") || !strcmp(name, "--help") ||
	    !strcmp(name, "-h"))
		return cmd_help(argc - 1, argv + 1);
	if (!strcmp(name, "version") || !strcmp(name, "--version"))
		return cmd_version(argc - 1, argv + 1);
	fprintf(stderr, "sandfs: unknown command '%s' (see sandfs --help)\n",
		name);
	return SFS_EXIT_USAGE;
}
