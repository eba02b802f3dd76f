/*
 * hup.c — the SIGHUP thread (see hup.h).
 */
#include "fs/hup.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/log.h"

struct sfs_hup {
	pthread_t thread;
	atomic_bool stop;
	bool ignored; /* SIGHUP was ignored at start (nohup): never stop */
};

/* Installed so that SIGHUP is never discarded as ignored (sigwait then
 * would not see it); it never runs, the signal stays blocked. */
static void hup_noop(int sig)
{
	(void)sig;
}

/* See hup.h. */
void sfs_hup_block(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void *hup_main(void *arg)
{
	struct sfs_hup *h = arg;
	pthread_setname_np(pthread_self(), "sfs-hup");
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGHUP);
	for (;;) {
		int sig = 0;
		if (sigwait(&s, &sig) != 0)
			continue;
		if (atomic_load(&h->stop))
			break;
		if (!log_to_file()) {
			if (h->ignored)
				continue; /* started under nohup */
			LOG(INFO, "SIGHUP: stopping (no log file to reopen)");
			kill(getpid(), SIGTERM);
			continue;
		}
		int rc = log_reopen();
		if (rc == 0)
			LOG(INFO, "SIGHUP: log file reopened");
		else
			LOG(WARN,
			    "SIGHUP: cannot reopen the log file (%s); still "
			    "writing to the old one",
			    strerror(-rc));
	}
	return NULL;
}

/* See hup.h. */
int sfs_hup_start(struct sfs_hup **out)
{
	struct sfs_hup *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	atomic_init(&h->stop, false);
	struct sigaction sa = {.sa_handler = hup_noop}, old;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGHUP, &sa, &old) == 0)
		h->ignored = old.sa_handler == SIG_IGN;
	int rc = pthread_create(&h->thread, NULL, hup_main, h);
	if (rc) {
		free(h);
		return -rc;
	}
	*out = h;
	return 0;
}

/* See hup.h. */
void sfs_hup_stop(struct sfs_hup *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, true);
	pthread_kill(h->thread, SIGHUP);
	pthread_join(h->thread, NULL);
	free(h);
}
