// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The agents' control socket: one thread answering `ferry ctl` on a Unix
 * socket, one JSON object per line each way. The socket file is 0600 and
 * every peer's uid is checked (SO_PEERCRED) against ours, so that only
 * the agent's user (or root) steers a migration.
 *
 *   {"request": "status"}
 *   {"request": "cancel"}
 *   {"request": "postcopy"}
 *   {"request": "set", "downtime_ms": N}
 *   {"request": "set", "bandwidth_mibs": N}     (0: no cap)
 *   {"request": "set", "streams": N}
 *
 * Each reply has "ok" (true or false), "request", and "error" when not ok.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "tools/cli.h"

#define REQ_MAX 1024		/* a request line, at most */
#define REQ_WAIT_MS 5000	/* a client silent this long is dropped */

struct cli_control {
	const char *prog, *role;	/* for messages, static */
	struct sockaddr_un addr;
	ino_t ino;			/* the socket file we made */
	int lfd, stop_fd;		/* -1 when closed */
	pthread_t thread;
	bool started;
	struct mig_cancel *cancel;
	struct mig_tune *tune;		/* NULL: the destination */
	struct mig_events *events;
	uint32_t nbulk;
	bool armed;			/* under lock: the engine runs */
	bool exit_now;			/* the control thread's: a cancel came
					 * before it ran, the lock is held */
	uint64_t start_ns;
	pthread_mutex_t lock;
	struct mig_progress last;	/* under lock */
	bool have_last;			/* under lock */
};

void cli_control_update(struct cli_control *ctl, const struct mig_progress *p)
{
	if (!ctl)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->last = *p;
	ctl->have_last = true;
	pthread_mutex_unlock(&ctl->lock);
}

void cli_control_arm(struct cli_control *ctl)
{
	if (!ctl)
		return;
	/* Blocks while an early cancel ends the agent (end_unarmed). */
	pthread_mutex_lock(&ctl->lock);
	ctl->armed = true;
	pthread_mutex_unlock(&ctl->lock);
}

/* ---- requests ---- */

struct reply {
	struct ut_json j;
	char buf[2048];
};

static void reply_begin(struct reply *r, const char *req, bool ok)
{
	ut_json_begin(&r->j, r->buf, sizeof(r->buf));
	ut_json_bool(&r->j, "ok", ok);
	ut_json_str(&r->j, "request", req);
}

static void reply_error(struct reply *r, const char *req, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply_error(struct reply *r, const char *req, const char *fmt, ...)
{
	char msg[UT_JSON_STR];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_begin(r, req, false);
	ut_json_str(&r->j, "error", msg);
}

/* The control request as an event, with what came of it. */
static void control_event(struct cli_control *ctl, const char *req,
			  const char *what, double value, bool ok,
			  const char *error)
{
	struct mig_event e;

	mig_event_begin(&e, ctl->events, "control");
	ut_json_str(&e.j, "request", req);
	if (what)
		ut_json_dbl(&e.j, what, value, 0);
	ut_json_bool(&e.j, "ok", ok);
	if (error)
		ut_json_str(&e.j, "error", error);
	mig_event_end(&e);
}

static void do_status(struct cli_control *ctl, struct reply *r)
{
	struct mig_progress p = { 0 };
	struct mig_tune_now now = { 0 };
	double left = -1, rate;
	bool have, armed;

	pthread_mutex_lock(&ctl->lock);
	p = ctl->last;
	have = ctl->have_last;
	armed = ctl->armed;
	pthread_mutex_unlock(&ctl->lock);
	if (ctl->tune)
		mig_tune_read(ctl->tune, &now);
	reply_begin(r, "status", true);
	ut_json_str(&r->j, "role", ctl->role);
	ut_json_i64(&r->j, "pid", getpid());
	ut_json_str(&r->j, "phase", have && p.phase ? p.phase :
			   armed ? "setup" : "waiting");
	ut_json_u64(&r->j, "round", p.round);
	ut_json_bool(&r->j, "final", p.final);
	ut_json_dbl(&r->j, "elapsed_s", (ut_now_ns() - ctl->start_ns) / 1e9, 3);
	ut_json_u64(&r->j, "streams", p.streams ? p.streams : ctl->nbulk);
	ut_json_u64(&r->j, "round_bytes_done", p.round_bytes_done);
	ut_json_u64(&r->j, "round_bytes_total", p.round_bytes_total);
	ut_json_u64(&r->j, "pages_left", p.pages_left);
	ut_json_u64(&r->j, ctl->tune ? "bytes_sent" : "bytes_received",
		    p.bytes_sent);
	ut_json_u64(&r->j, "bytes_data", p.bytes_data);
	ut_json_u64(&r->j, "bytes_zero", p.bytes_zero);
	ut_json_u64(&r->j, "bytes_dup", p.bytes_dup);
	ut_json_dbl(&r->j, "throughput_mibs", p.throughput_mibs, 1);
	ut_json_dbl(&r->j, "round_rate_mibs", p.round_rate_mibs, 1);
	ut_json_dbl(&r->j, "dirty_rate_mibs", p.dirty_rate_mibs, 1);
	if (ctl->tune) {
		ut_json_dbl(&r->j, "predicted_downtime_ms",
			    p.predicted_downtime_ms, 1);
		ut_json_u64(&r->j, "downtime_limit_ms", now.downtime_limit_ms ?
			    now.downtime_limit_ms : 300);
		if (now.bandwidth_limit)
			ut_json_dbl(&r->j, "bandwidth_limit_mibs",
				    now.bandwidth_limit / (double)UT_MiB, 2);
		else
			ut_json_null(&r->j, "bandwidth_limit_mibs");
		ut_json_bool(&r->j, "postcopy_requested", now.postcopy);
	}
	/* This round's rest at this round's rate, plus the pause the
	 * prediction expects: an estimate, null before a rate is known. */
	rate = p.round_rate_mibs > 0 ? p.round_rate_mibs : p.throughput_mibs;
	if (have && p.phase && rate > 0 &&
	    p.round_bytes_total >= p.round_bytes_done &&
	    (!strcmp(p.phase, "precopy") || !strcmp(p.phase, "switchover") ||
	     !strcmp(p.phase, "postcopy")))
		left = (p.round_bytes_total - p.round_bytes_done) /
			       (rate * UT_MiB) +
		       (!strcmp(p.phase, "precopy") ?
				p.predicted_downtime_ms / 1000 : 0);
	if (left >= 0 && left < 1e7)
		ut_json_dbl(&r->j, "time_left_s", left, 1);
	else
		ut_json_null(&r->j, "time_left_s");
	ut_json_u64(&r->j, "faults", p.faults);
	ut_json_u64(&r->j, "pages_requested", p.pages_requested);
	ut_json_u64(&r->j, "recoveries", p.recoveries);
}

static void do_cancel(struct cli_control *ctl, struct reply *r)
{
	const char *why = NULL;
	int ret;

	pthread_mutex_lock(&ctl->lock);
	if (!ctl->armed) {
		/* The lock stays held: the engine cannot start now. */
		ctl->exit_now = true;
		reply_begin(r, "cancel", true);
		ut_json_str(&r->j, "result", "no migration had started: the "
			    "agent exits");
		return;
	}
	pthread_mutex_unlock(&ctl->lock);
	ret = mig_cancel_request(ctl->cancel, "ferry ctl cancel", &why);
	if (ret == -EBUSY)
		reply_error(r, "cancel", "the switchover is committed, %s; the "
			    "migration goes on",
			    why ? why : "the guest may run at the other end");
	else if (ret == -EALREADY)
		reply_error(r, "cancel", "a cancel is under way already");
	else if (ret)
		reply_error(r, "cancel", "%s", strerror(-ret));
	else {
		reply_begin(r, "cancel", true);
		ut_json_str(&r->j, "result", "cancelling: the VM stays at the "
			    "source");
	}
	control_event(ctl, "cancel", NULL, 0, !ret,
		      ret ? "refused" : NULL);
}

static void do_postcopy(struct cli_control *ctl, struct reply *r)
{
	const char *why = "";
	int ret;

	if (!ctl->tune) {
		reply_error(r, "postcopy", "the switch to postcopy is the "
			    "source's: send postcopy to its control socket");
		return;
	}
	ret = mig_tune_postcopy(ctl->tune, &why);
	if (ret == -EALREADY)
		reply_error(r, "postcopy", "postcopy was asked for already");
	else if (ret)
		reply_error(r, "postcopy", "%s", why);
	else {
		reply_begin(r, "postcopy", true);
		ut_json_str(&r->j, "result", "switching to postcopy at the "
			    "next chunk boundary");
	}
	control_event(ctl, "postcopy", NULL, 0, !ret, ret ? why : NULL);
}

static void do_set(struct cli_control *ctl, struct reply *r,
		   const struct ut_json_member *m, int n)
{
	const struct ut_json_member *dt = ut_json_get(m, n, "downtime_ms");
	const struct ut_json_member *bw = ut_json_get(m, n, "bandwidth_mibs");
	const struct ut_json_member *ns = ut_json_get(m, n, "streams");
	const struct ut_json_member *v = dt ? dt : bw ? bw : ns;
	const char *why = "", *what = dt ? "downtime_ms" : bw ?
				      "bandwidth_mibs" : "streams";
	int ret;

	if (!v || (!!dt + !!bw + !!ns) != 1) {
		reply_error(r, "set", "set takes one of downtime_ms, "
			    "bandwidth_mibs, streams");
		return;
	}
	if (v->type != UT_JSON_NUMBER || v->num < 0 || v->num > 1e12) {
		reply_error(r, "set", "%s wants a number", what);
		return;
	}
	if (!ctl->tune) {
		reply_error(r, "set", "the limits are the source's: send set "
			    "to its control socket");
		return;
	}
	if (ns) {
		reply_error(r, "set", "the session's %u bulk streams are fixed "
			    "when it connects: changing streams is not "
			    "supported while running", ctl->nbulk);
		control_event(ctl, "set", what, v->num, false, "not supported "
			      "while running");
		return;
	}
	if (dt)
		ret = mig_tune_set_downtime(ctl->tune, (uint64_t)v->num, &why);
	else
		ret = mig_tune_set_bandwidth(ctl->tune, (uint64_t)(v->num *
							  UT_MiB), &why);
	if (ret == -EINVAL)
		reply_error(r, "set", dt ? "downtime_ms goes from 1 to 600000" :
			    "bandwidth_mibs is 0 (no cap) or at least 0.0625");
	else if (ret)
		reply_error(r, "set", "%s", why);
	else {
		reply_begin(r, "set", true);
		ut_json_dbl(&r->j, what, v->num, dt ? 0 : 2);
	}
	control_event(ctl, "set", what, v->num, !ret, ret ? "refused" : NULL);
}

static void handle(struct cli_control *ctl, const char *line, size_t len,
		   struct reply *r)
{
	struct ut_json_member m[8];
	const struct ut_json_member *req;
	int n = ut_json_parse(line, len, m, UT_ARRAY_SIZE(m));

	req = n > 0 ? ut_json_get(m, n, "request") : NULL;
	if (!req || req->type != UT_JSON_STRING)
		reply_error(r, "?", "expected one JSON object per line with a "
			    "\"request\": status, cancel, postcopy or set");
	else if (!strcmp(req->str, "status"))
		do_status(ctl, r);
	else if (!strcmp(req->str, "cancel"))
		do_cancel(ctl, r);
	else if (!strcmp(req->str, "postcopy"))
		do_postcopy(ctl, r);
	else if (!strcmp(req->str, "set"))
		do_set(ctl, r, m, n);
	else
		reply_error(r, req->str, "unknown request '%.64s' (status, "
			    "cancel, postcopy, set)", req->str);
}

static bool send_reply(int fd, struct reply *r);

/* A cancel before the engine runs (connecting, waiting for a source):
 * nothing is touched yet, so the agent ends here, as a signal would end
 * it, but saying so, in its events, and with its socket removed. */
static void end_unarmed(struct cli_control *ctl, int fd, struct reply *r)
{
	struct mig_event e;

	send_reply(fd, r);
	control_event(ctl, "cancel", NULL, 0, true, NULL);
	mig_event_begin(&e, ctl->events, "failed");
	ut_json_str(&e.j, "outcome", "cancelled");
	ut_json_str(&e.j, "reason", "cancelled (ferry ctl cancel) before "
		    "the migration started");
	mig_event_end(&e);
	unlink(ctl->addr.sun_path);
	fprintf(stderr, "%s: cancelled (ferry ctl cancel) before the migration "
		"started\n", ctl->prog);
	_exit(1);
}

/* ---- the connection ---- */

static bool send_reply(int fd, struct reply *r)
{
	ssize_t len = ut_json_end(&r->j);

	if (len < 0)
		return false;
	return send(fd, r->buf, len, MSG_NOSIGNAL) == len;
}

/* Is the peer the agent's user or root? */
static bool peer_allowed(struct cli_control *ctl, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) ||
	    len != sizeof(cr))
		return false;
	if (cr.uid == geteuid() || cr.uid == 0)
		return true;
	fprintf(stderr, "%s: control: refused a request from uid %u (pid %d):"
			" not this agent's user\n", ctl->prog,
		(unsigned int)cr.uid, (int)cr.pid);
	return false;
}

/* Requests, one per line, until the peer closes, goes quiet or errs. */
static void serve(struct cli_control *ctl, int fd)
{
	char buf[REQ_MAX + 1];
	size_t have = 0;
	struct reply r;

	if (!peer_allowed(ctl, fd)) {
		reply_error(&r, "?", "permission denied: only the agent's "
			    "user or root may steer it");
		send_reply(fd, &r);
		return;
	}
	for (;;) {
		struct pollfd p[2] = { { fd, POLLIN, 0 },
				       { ctl->stop_fd, POLLIN, 0 } };
		char *nl = memchr(buf, '\n', have);
		ssize_t n;

		if (nl) {
			handle(ctl, buf, nl - buf, &r);
			if (ctl->exit_now)
				end_unarmed(ctl, fd, &r);
			if (!send_reply(fd, &r))
				return;
			have -= nl + 1 - buf;
			memmove(buf, nl + 1, have);
			continue;
		}
		if (have == REQ_MAX) {
			reply_error(&r, "?", "a request is one line of at most "
				    "%d bytes", REQ_MAX);
			send_reply(fd, &r);
			return;
		}
		if (poll(p, 2, REQ_WAIT_MS) <= 0 || p[1].revents)
			return;
		n = recv(fd, buf + have, REQ_MAX - have, 0);
		if (n <= 0)
			return;
		have += n;
	}
}

static void *control_main(void *arg)
{
	struct cli_control *ctl = arg;

	for (;;) {
		struct pollfd p[2] = { { ctl->lfd, POLLIN, 0 },
				       { ctl->stop_fd, POLLIN, 0 } };
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(ctl, fd);
		close(fd);
	}
	return NULL;
}

/* ---- the socket ---- */

/* A stale socket (nobody answers) is removed; a live one or any other
 * file is an error. Returns 0 or -errno after a message. */
static int clear_path(struct cli_control *ctl)
{
	const char *path = ctl->addr.sun_path;
	struct stat st;
	int fd, ret;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "%s: --control %s: exists and is not a socket\n",
			ctl->prog, path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (struct sockaddr *)&ctl->addr, sizeof(ctl->addr));
	close(fd);
	if (!ret) {
		fprintf(stderr, "%s: --control %s: another agent answers there\n",
			ctl->prog, path);
		return -EADDRINUSE;
	}
	return unlink(path) ? -errno : 0;
}

/* A directory others may write to, without the sticky bit, would let
 * them replace our socket with theirs. */
static int check_dir(struct cli_control *ctl)
{
	char dir[sizeof(ctl->addr.sun_path)];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", ctl->addr.sun_path);
	if (stat(dirname(dir), &st))
		return -errno;
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
		fprintf(stderr, "%s: --control %s: its directory is writable by "
				"others without the sticky bit; use a directory "
				"only you can write to\n", ctl->prog,
			ctl->addr.sun_path);
		return -EPERM;
	}
	return 0;
}

static int open_socket(struct cli_control *ctl)
{
	struct stat st;
	mode_t old;
	int ret;

	ret = check_dir(ctl);
	if (!ret)
		ret = clear_path(ctl);
	if (ret)
		return ret;
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0)
		return -errno;
	/* Owner-only from the moment it exists: no window at 0777. */
	old = umask(0177);
	ret = bind(ctl->lfd, (struct sockaddr *)&ctl->addr, sizeof(ctl->addr));
	umask(old);
	if (ret)
		return -errno;
	if (chmod(ctl->addr.sun_path, 0600) || lstat(ctl->addr.sun_path, &st))
		return -errno;
	ctl->ino = st.st_ino;
	return listen(ctl->lfd, 8) ? -errno : 0;
}

int cli_control_start(struct cli_control **out, const char *prog,
		      const char *path, const char *role,
		      struct mig_cancel *cancel, struct mig_tune *tune,
		      struct mig_events *events, uint32_t nbulk)
{
	struct cli_control *ctl = calloc(1, sizeof(*ctl));
	int ret;

	*out = NULL;
	if (!ctl)
		return -ENOMEM;
	*ctl = (struct cli_control){ .prog = prog, .role = role, .lfd = -1,
				     .stop_fd = -1, .cancel = cancel,
				     .tune = tune, .events = events,
				     .nbulk = nbulk, .start_ns = ut_now_ns() };
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->addr.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(ctl->addr.sun_path)) {
		fprintf(stderr, "%s: --control %s: longer than a Unix socket "
				"path may be (%zu)\n", prog, path,
			sizeof(ctl->addr.sun_path) - 1);
		ret = -ENAMETOOLONG;
		goto fail;
	}
	strcpy(ctl->addr.sun_path, path);
	ret = open_socket(ctl);
	if (!ret && (ctl->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0)
		ret = -errno;
	if (!ret)
		ret = -pthread_create(&ctl->thread, NULL, control_main, ctl);
	if (ret) {
		if (ret != -EEXIST && ret != -EADDRINUSE && ret != -EPERM)
			fprintf(stderr, "%s: --control %s: %s\n", prog, path,
				strerror(-ret));
		goto fail;
	}
	ctl->started = true;
	*out = ctl;
	return 0;

fail:
	cli_control_stop(ctl);
	return ret;
}

void cli_control_stop(struct cli_control *ctl)
{
	uint64_t one = 1;
	struct stat st;

	if (!ctl)
		return;
	if (ctl->started) {
		if (write(ctl->stop_fd, &one, sizeof(one)) != sizeof(one)) {
			/* It may still run: leave it its memory. */
			fprintf(stderr, "%s: stopping the control thread "
				"failed\n", ctl->prog);
			return;
		}
		pthread_join(ctl->thread, NULL);
	}
	if (ctl->lfd >= 0) {
		/* Only the file we made: a later agent may own the path. */
		if (ctl->ino && !lstat(ctl->addr.sun_path, &st) &&
		    st.st_ino == ctl->ino)
			unlink(ctl->addr.sun_path);
		close(ctl->lfd);
	}
	if (ctl->stop_fd >= 0)
		close(ctl->stop_fd);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl);
}
