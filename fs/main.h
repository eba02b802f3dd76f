/* main.h — subcommands implemented outside main.c, called by main(). */
#ifndef SANDFS_MAIN_H
#define SANDFS_MAIN_H

/* `sandfs mount ...` (fs/mount.c): the process exit status. */
int sfs_cmd_mount(int argc, char **argv);
/* `sandfs stats ...` (fs/cmd_stats.c) and `sandfs bench ...`
 * (fs/cmd_bench.c): the process exit status. */
int sfs_cmd_stats(int argc, char **argv);
int sfs_cmd_bench(int argc, char **argv);

#endif
