// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The events stream (NDJSON). A sink is shared by the engine's main
 * thread and the control thread; each line goes out with one write()
 * under the lock so that lines never interleave, and seq numbers the
 * lines in the order they were written. It needs nothing of the rest of
 * migrate/ (the unit tests link it alone).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "events"
#include "migrate/internal.h"

struct mig_events {
	pthread_mutex_t lock;
	int fd;			/* ours unless stdout */
	bool own_fd;
	char path[256];		/* for messages */
	const char *role;	/* static */
	uint64_t seq;		/* under lock: lines written */
	int error;		/* under lock: the first write error */
};

int mig_events_open(struct mig_events **out, const char *path,
		    const char *role, struct ut_err *err)
{
	struct mig_events *ev = calloc(1, sizeof(*ev));
	int ret;

	*out = NULL;
	if (!ev) {
		return ut_err_set(err, -ENOMEM, "--events: out of memory");
	}
	if (!strcmp(path, "-")) {
		ev->fd = STDOUT_FILENO;
	} else {
		ev->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
			      O_APPEND, 0644);
		ev->own_fd = true;
		if (ev->fd < 0) {
			ret = -errno;
			free(ev);
			return ut_err_set(err, ret, "--events %s: %s", path,
					  strerror(-ret));
		}
	}
	snprintf(ev->path, sizeof(ev->path), "%s", path);
	ev->role = role;
	pthread_mutex_init(&ev->lock, NULL);
	*out = ev;
	return 0;
}

int mig_events_close(struct mig_events *ev, uint64_t *written)
{
	int ret;

	if (!ev)
		return 0;
	ret = ev->error;
	if (written)
		*written = ev->seq;
	if (ev->own_fd && close(ev->fd) && !ret)
		ret = -errno;
	pthread_mutex_destroy(&ev->lock);
	free(ev);
	return ret;
}

/* The lock is held from begin to end: seq is taken and the line written
 * in one critical section, so that seq order is file order. Between the
 * two the caller only formats. */
void mig_event_begin(struct mig_event *e, struct mig_events *ev,
		     const char *type)
{
	struct timespec now;

	e->ev = ev;
	ut_json_begin(&e->j, e->buf, ev ? sizeof(e->buf) : 0);
	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	ut_json_str(&e->j, "event", type);
	ut_json_u64(&e->j, "seq", ev->seq);
	clock_gettime(CLOCK_REALTIME, &now);
	ut_json_dbl(&e->j, "time", now.tv_sec + now.tv_nsec / 1e9, 3);
	ut_json_str(&e->j, "role", ev->role);
}

/* Writes all of @len bytes or fails with -errno. */
static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= n;
	}
	return 0;
}

void mig_event_end(struct mig_event *e)
{
	struct mig_events *ev = e->ev;
	ssize_t len;

	if (!ev)
		return;
	len = ut_json_end(&e->j);
	if (ev->error) {
		/* said once already */
	} else if (len < 0) {
		pr_warn("an event did not fit in %zu bytes: not written",
			sizeof(e->buf));
	} else if ((ev->error = write_all(ev->fd, e->buf, len))) {
		pr_err("--events %s: %s after %llu events; no more events are "
		       "written, the migration goes on", ev->path,
		       strerror(-ev->error), (unsigned long long)ev->seq);
	} else {
		ev->seq++;
	}
	pthread_mutex_unlock(&ev->lock);
}

void mig_event_recovery(struct mig_events *ev, const char *state,
			const char *error, uint64_t pages_left)
{
	struct mig_event e;

	mig_event_begin(&e, ev, "recovery");
	ut_json_str(&e.j, "state", state);
	if (error)
		ut_json_str(&e.j, "error", error);
	else
		ut_json_u64(&e.j, "pages_left", pages_left);
	mig_event_end(&e);
}
