/*
 * log.c — formatted, leveled, thread-safe log lines (see log.h).
 */
#include "transport/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The process-wide logging state (the one permitted global; see log.h). */
static struct {
	pthread_mutex_t mu; /* guards prefix, out, owned and path */
	char prefix[64];
	FILE *out;               /* NULL means stderr */
	atomic_int level;        /* enum log_level; -1 = not yet initialized */
	bool owned;              /* out was opened by log_open */
	char path[4096];         /* its path, for log_reopen */
} g_log = { PTHREAD_MUTEX_INITIALIZER, "", NULL, -1, false, "" };

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

/* Parse a level name. */
int log_parse_level(const char *s, enum log_level *lvl)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*lvl = (enum log_level)i;
			return 0;
		}
	}
	if (s && strcasecmp(s, "warning") == 0) {
		*lvl = LOG_LVL_WARN;
		return 0;
	}
	return -EINVAL;
}

/* Current threshold; the first call reads SANDFS_LOG from the environment. */
enum log_level log_get_level(void)
{
	int l = atomic_load(&g_log.level);
	if (l < 0) {
		enum log_level parsed = LOG_LVL_INFO;
		(void)log_parse_level(getenv("SANDFS_LOG"), &parsed);
		int expect = -1;
		atomic_compare_exchange_strong(&g_log.level, &expect,
					       (int)parsed);
		l = atomic_load(&g_log.level);
	}
	return (enum log_level)l;
}

/* Set the threshold. */
void log_set_level(enum log_level lvl)
{
	atomic_store(&g_log.level, (int)lvl);
}

/* True if lines at lvl are written. */
bool log_enabled(enum log_level lvl)
{
	return (int)lvl <= (int)log_get_level();
}

/* Set the per-line prefix (copied). */
void log_set_prefix(const char *prefix)
{
	pthread_mutex_lock(&g_log.mu);
	snprintf(g_log.prefix, sizeof g_log.prefix, "%s", prefix ? prefix : "");
	pthread_mutex_unlock(&g_log.mu);
}

/* Drop a stream log_open opened (under mu). */
static void drop_owned(void)
{
	if (g_log.owned && g_log.out)
		fclose(g_log.out);
	g_log.owned = false;
	g_log.path[0] = 0;
}

/* Set the output stream (borrowed); NULL means stderr. */
void log_set_file(FILE *f)
{
	pthread_mutex_lock(&g_log.mu);
	drop_owned();
	g_log.out = f;
	pthread_mutex_unlock(&g_log.mu);
}

/* Open path for appending (created 0644). */
static FILE *open_append(const char *path)
{
	FILE *f = fopen(path, "a");
	if (f)
		setvbuf(f, NULL, _IOLBF, 0);
	return f;
}

/* See log.h. */
int log_open(const char *path)
{
	/* Kept absolute: a daemon changes its directory to / later, and
	 * log_reopen() must find the same file. */
	char abs[sizeof g_log.path];
	int w;
	if (!path || !*path)
		return -EINVAL;
	if (path[0] == '/') {
		w = snprintf(abs, sizeof abs, "%s", path);
	} else {
		char cwd[sizeof g_log.path];
		if (!getcwd(cwd, sizeof cwd))
			return -errno;
		w = snprintf(abs, sizeof abs, "%s/%s", cwd, path);
	}
	if (w < 0 || (size_t)w >= sizeof abs)
		return -ENAMETOOLONG;
	FILE *f = open_append(abs);
	if (!f)
		return -errno;
	pthread_mutex_lock(&g_log.mu);
	drop_owned();
	g_log.out = f;
	g_log.owned = true;
	memcpy(g_log.path, abs, (size_t)w + 1);
	pthread_mutex_unlock(&g_log.mu);
	return 0;
}

/* See log.h. */
int log_reopen(void)
{
	pthread_mutex_lock(&g_log.mu);
	if (!g_log.owned) {
		pthread_mutex_unlock(&g_log.mu);
		return -ENOENT;
	}
	FILE *f = open_append(g_log.path);
	int rc = f ? 0 : -errno;
	if (f) {
		fclose(g_log.out);
		g_log.out = f;
	}
	pthread_mutex_unlock(&g_log.mu);
	return rc;
}

/* See log.h. */
bool log_to_file(void)
{
	pthread_mutex_lock(&g_log.mu);
	bool owned = g_log.owned;
	pthread_mutex_unlock(&g_log.mu);
	return owned;
}

/* See log.h. */
void log_close(void)
{
	pthread_mutex_lock(&g_log.mu);
	drop_owned();
	g_log.out = NULL;
	pthread_mutex_unlock(&g_log.mu);
}

/* Format one line into a local buffer, then write it in one call. */
void log_write(enum log_level lvl, const char *file, int line,
	       const char *fmt, ...)
{
	char buf[2048];
	size_t n = 0;
	struct timespec ts;
	struct tm tm;

	/* ISO 8601 local time with the UTC offset:
	 * 2024-05-01T12:00:00.123+02:00 */
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n += strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	long off = tm.tm_gmtoff / 60;
	char zone[8];
	snprintf(zone, sizeof zone, "%c%02ld:%02ld", off < 0 ? '-' : '+',
		 (off < 0 ? -off : off) / 60 % 100, (off < 0 ? -off : off) % 60);

	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if ((unsigned)lvl > LOG_LVL_DEBUG)
		lvl = LOG_LVL_DEBUG;

	pthread_mutex_lock(&g_log.mu);
	int k = snprintf(buf + n, sizeof buf - n, ".%03ld%s %s%s%s %s:%d: ",
			 ts.tv_nsec / 1000000, zone, g_log.prefix,
			 g_log.prefix[0] ? " " : "", level_names[lvl], base,
			 line);
	if (k > 0)
		n += (size_t)k < sizeof buf - n ? (size_t)k : sizeof buf - n - 1;

	va_list ap;
	va_start(ap, fmt);
	k = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
	va_end(ap);
	if (k > 0)
		n += (size_t)k < sizeof buf - n ? (size_t)k : sizeof buf - n - 1;
	if (n >= sizeof buf - 1)
		n = sizeof buf - 2; /* truncated: keep room for '\n' */
	buf[n++] = '\n';

	FILE *out = g_log.out ? g_log.out : stderr;
	fwrite(buf, 1, n, out);
	fflush(out);
	pthread_mutex_unlock(&g_log.mu);
}
