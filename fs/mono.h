/* mono.h — deadlines on CLOCK_MONOTONIC for timed condvar waits (every
 * condvar in fs/ that is waited on with a timeout is created with
 * pthread_condattr_setclock(CLOCK_MONOTONIC)). */
#ifndef SANDFS_MONO_H
#define SANDFS_MONO_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* The monotonic time ms milliseconds from now. */
static inline struct timespec mono_deadline(uint32_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

#endif
