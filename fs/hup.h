/*
 * hup.h — SIGHUP for a running node (`sandfs serve`, `sandfs mount`).
 *
 * When the node logs to a file (--log FILE, or a daemonized mount), SIGHUP
 * reopens that file at its path, so logrotate can move it away and signal
 * the process; the first line in the new file says so. When it logs to
 * stderr, SIGHUP stops the node as SIGTERM does (a hangup of the terminal
 * it runs in) — unless SIGHUP was ignored when the node started (nohup).
 *
 * SIGHUP must be blocked in every thread of the process (block it with
 * sfs_hup_block() before any thread starts); a thread of this module
 * waits for it with sigwait().
 */
#ifndef SANDFS_HUP_H
#define SANDFS_HUP_H

struct sfs_hup;

/* Block SIGHUP in the calling thread (threads it starts inherit that). */
void sfs_hup_block(void);

/* Start the thread that handles SIGHUP (and install a handler that never
 * runs, so that the signal is not discarded as ignored; FUSE then leaves
 * SIGHUP alone). Returns 0 and *out, or a negative errno. */
int sfs_hup_start(struct sfs_hup **out);

/* Stop and join that thread; NULL is fine. */
void sfs_hup_stop(struct sfs_hup *h);

#endif
