/*
 * slowdisk.c — the injected sync delay for fault tests (see slowdisk.h).
 *
 * The file name is read from the environment once; the delay it holds is
 * cached with the time it was read, both in atomics, so any thread may
 * call in without a lock (two threads re-reading the file at once is
 * harmless).
 */
#include "storage/slowdisk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define REREAD_NS (100 * 1000000ll)
#define DELAY_MAX_MS 10000

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const char *g_path;               /* set once by load_env */
static _Atomic int g_delay_ms;           /* last value read */
static _Atomic int64_t g_read_at = -1;   /* monotonic ns of that read */

static void load_env(void)
{
	const char *p = getenv("SANDFS_TEST_SYNC_DELAY_FILE");
	g_path = p && *p ? p : NULL;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Parses the file's leading decimal number; 0 when absent or unreadable. */
static int read_delay(void)
{
	char buf[16];
	int fd = open(g_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	long v = strtol(buf, NULL, 10);
	if (v < 0)
		return 0;
	return v > DELAY_MAX_MS ? DELAY_MAX_MS : (int)v;
}

int stor_sync_delay_ms(void)
{
	pthread_once(&g_once, load_env);
	if (!g_path)
		return 0;
	int64_t now = now_ns(), at = atomic_load(&g_read_at);
	if (at < 0 || now - at >= REREAD_NS) {
		atomic_store(&g_delay_ms, read_delay());
		atomic_store(&g_read_at, now);
	}
	return atomic_load(&g_delay_ms);
}

void stor_sync_delay(void)
{
	int ms = stor_sync_delay_ms();
	if (ms <= 0)
		return;
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
