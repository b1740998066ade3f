// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Condition variables on CLOCK_MONOTONIC. A timed wait on the default
 * clock (CLOCK_REALTIME) sleeps until the wall clock reaches the
 * deadline: when NTP or an operator steps the clock back by a minute, the
 * source's 250 ms progress wait lasts a minute, and with it the
 * keepalives, until the destination's control timeout gives up.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "migrate/internal.h"

int mig_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int ret = pthread_condattr_init(&a);

	if (ret)
		return -ret;
	ret = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (!ret)
		ret = pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
	return -ret;
}

int mig_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, unsigned int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return -pthread_cond_timedwait(c, m, &ts);
}
