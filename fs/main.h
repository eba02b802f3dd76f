/* main.h — subcommands implemented outside main.c, called by main(). */
#ifndef SANDFS_MAIN_H
#define SANDFS_MAIN_H

/* `sandfs mount ...` (fs/mount.c): the process exit status. */
int sfs_cmd_mount(int argc, char **argv);

/* `sandfs fsck ...` (fs/cmd_fsck.c): the process exit status. */
int sfs_cmd_fsck(int argc, char **argv);

#endif
