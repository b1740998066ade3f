// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Cancellation: a request from any thread (a signal thread, a control
 * socket) against the engine's commitment point. Both take the lock, so a
 * request either lands before the commitment (the engine stops, the VM
 * stays where it was) or is refused after it, never in between.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "migrate/internal.h"

int mig_cancel_init(struct mig_cancel *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->fd < 0)
		return -errno;
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

void mig_cancel_fini(struct mig_cancel *c)
{
	if (!c || c->fd < 0)
		return;
	close(c->fd);
	c->fd = -1;
	pthread_mutex_destroy(&c->lock);
}

int mig_cancel_request(struct mig_cancel *c, const char *reason,
		       const char **refused)
{
	uint64_t one = 1;
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	if (c->committed) {
		ret = -EBUSY;
		if (refused)
			*refused = c->committed_to;
	} else if (c->requested) {
		ret = -EALREADY;
	} else {
		c->requested = true;
		snprintf(c->reason, sizeof(c->reason), "%s",
			 reason ? reason : "requested");
		/* The flag is what counts; the fd only wakes a waiter, and
		 * a fresh eventfd's counter cannot overflow. */
		ssize_t n = write(c->fd, &one, sizeof(one));

		(void)n;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

bool mig_cancel_requested(struct mig_cancel *c, char *reason, size_t len)
{
	bool req;

	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	req = c->requested;
	if (req && reason)
		snprintf(reason, len, "%s", c->reason);
	pthread_mutex_unlock(&c->lock);
	return req;
}

int mig_cancel_commit(struct mig_cancel *c, const char *what)
{
	int ret = 0;

	if (!c)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (c->requested) {
		ret = -ECANCELED;
	} else {
		c->committed = true;
		c->committed_to = what;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}
