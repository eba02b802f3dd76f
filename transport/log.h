/*
 * log.h — the one logging facility of sandfs.
 *
 *   LOG(WARN, "peer %llu: bad frame: %s", (unsigned long long)id, why);
 *
 * Levels: ERROR, WARN, INFO, DEBUG. A line looks like
 *
 *   2024-05-01T12:00:00.123+02:00 node 2 WARN link.c:210: peer 3: bad frame: ...
 *
 * (ISO 8601 local time with its UTC offset, the node, the level, the
 * source line, the message; Raft events add "term T" and "index I").
 *
 * The prefix ("node 2") and the threshold are process-wide and meant to be
 * set once in main() before threads start; writing a line is thread-safe
 * (each line is formatted into a local buffer and written with one call
 * under a lock, so lines from different threads never interleave).
 *
 * This file holds the process's only logging state (the sink, prefix and
 * level); it is the documented exception to "no global mutable state".
 */
#ifndef SANDFS_LOG_H
#define SANDFS_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN = 1,
	LOG_LVL_INFO = 2,
	LOG_LVL_DEBUG = 3,
};

/* Log at `lvl` (one of ERROR, WARN, INFO, DEBUG); printf-style. Arguments
 * are not evaluated when the level is filtered out. */
#define LOG(lvl, ...)                                                      \
	do {                                                               \
		if (log_enabled(LOG_LVL_##lvl))                            \
			log_write(LOG_LVL_##lvl, __FILE__, __LINE__,       \
				  __VA_ARGS__);                            \
	} while (0)

/* Set the prefix printed on every line (copied, truncated to 63 bytes);
 * NULL or "" for none. */
void log_set_prefix(const char *prefix);

/* Lines above `lvl` are dropped. Default: INFO, or the value of the
 * environment variable SANDFS_LOG (error|warn|info|debug) when set. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);

/* Parse "error", "warn", "info", "debug" (case-insensitive). Returns 0 and
 * sets *lvl, or -EINVAL. */
int log_parse_level(const char *s, enum log_level *lvl);

/* Where lines go: stderr by default (NULL restores stderr). The FILE is
 * borrowed; the caller keeps it open while logging may happen. */
void log_set_file(FILE *f);

/* Log to the file at path (appended, created if missing), owned by the
 * log module: log_reopen() opens the path again (after logrotate moved
 * the file; a relative path is kept relative to the directory of this
 * call), log_close() or log_set_file() closes it. Returns 0 or a negative
 * errno (lines keep going where they went). */
int log_open(const char *path);

/* Reopen the file of log_open() at its path: 0, -ENOENT when not logging
 * to a file of log_open(), or the open's negative errno (lines then keep
 * going to the old file). Thread-safe; not async-signal-safe. */
int log_reopen(void);

/* True while logging to a file of log_open(). */
bool log_to_file(void);

/* Close a file of log_open(); lines go to stderr again. */
void log_close(void);

/* True if a line at `lvl` would be written. */
bool log_enabled(enum log_level lvl);

/* Write one line (a trailing newline is added). Use LOG() instead. */
void log_write(enum log_level lvl, const char *file, int line,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
