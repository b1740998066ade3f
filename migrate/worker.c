// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The one shape of every engine thread: started once, asked to stop
 * through its eventfd (which a thread that polls has in its poll set, and
 * which a thread waiting on a condition variable sees through
 * mig_worker_stopping()), joined by its owner.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_PREFIX "worker"
#include "migrate/internal.h"

void mig_worker_init(struct mig_worker *w)
{
	*w = (struct mig_worker){ .stop_fd = -1 };
}

int mig_worker_start(struct mig_worker *w, void *(*fn)(void *), void *arg)
{
	int ret;

	if (w->started)
		return -EBUSY;
	atomic_store(&w->stopping, false);
	if (w->stop_fd < 0) {
		w->stop_fd = eventfd(0, EFD_CLOEXEC);
		if (w->stop_fd < 0)
			return -errno;
	}
	ret = -pthread_create(&w->thread, NULL, fn, arg);
	if (!ret)
		w->started = true;
	return ret;
}

bool mig_worker_stopping(const struct mig_worker *w)
{
	return atomic_load(&w->stopping);
}

void mig_worker_kick(struct mig_worker *w)
{
	uint64_t one = 1;

	if (!w->started || atomic_exchange(&w->stopping, true))
		return;
	if (write(w->stop_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("cannot signal a thread to stop: %s",
			strerror(errno));
}

void mig_worker_join(struct mig_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	w->stop_fd = -1;
}

void mig_worker_stop(struct mig_worker *w)
{
	mig_worker_kick(w);
	mig_worker_join(w);
}

const char *mig_worker_urgent(bool rt)
{
	struct sched_param sp = { .sched_priority = 1 };
	int ret;

	if (!rt)
		return "normal";
	ret = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (!ret)
		return "SCHED_FIFO 1";
	return ret == EPERM ? "normal (SCHED_FIFO not permitted)" :
			      "normal (SCHED_FIFO refused)";
}
