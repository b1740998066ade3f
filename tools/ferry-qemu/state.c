// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state blob is QEMU's own migration stream with x-ignore-shared: QEMU
 * skips RAM blocks on shared backends (migration/ram.c ramblock_is_ignored)
 * and sends device state, the small non-shared blocks and the block list
 * (with each block's address, which the destination checks). It travels
 * over an `fd:` URI (a pipe end given with getfd): `exec:` would fork a
 * shell, which libvirt's seccomp sandbox (spawn=deny) kills QEMU for.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

#define FDNAME "ferry-state"
#define STATE_MAX (64u << 20)	/* VML_MAX_PAYLOAD */
#define MIGRATE_WAIT_MS 60000

int fq_state_prepare(struct fq_qmp *q, bool on)
{
	char js[256];
	int ret;

	snprintf(js, sizeof(js), "{\"execute\":\"migrate-set-capabilities\","
		 "\"arguments\":{\"capabilities\":[{\"capability\":"
		 "\"x-ignore-shared\",\"state\":%s}]}}", on ? "true" : "false");
	ret = fq_qmp_cmd(q, js, -1, NULL);
	if (ret)
		pr_err("cannot set x-ignore-shared %s: %s", on ? "on" : "off",
		       q->err.msg);
	return ret;
}

/*
 * The capability is left off between streams: a later migration of this
 * QEMU by QEMU itself (the user's own, or libvirt's) must carry the RAM.
 */
static void restore_capability(struct fq_qmp *q)
{
	if (q->fd >= 0)
		fq_state_prepare(q, false);
}

void fq_state_done(struct fq_qmp *q)
{
	restore_capability(q);
}

/* Hands @fd to QEMU under FDNAME (closing a stale one of that name). */
static int give_fd(struct fq_qmp *q, int fd)
{
	int ret;

	fq_qmp_cmd(q, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\""
		   FDNAME "\"}}", -1, NULL);
	ret = fq_qmp_cmd(q, "{\"execute\":\"getfd\",\"arguments\":"
			 "{\"fdname\":\"" FDNAME "\"}}", fd, NULL);
	if (ret)
		pr_err("getfd: %s", q->err.msg);
	return ret;
}

int fq_state_wait(struct fq_qmp *q, const char *what)
{
	uint64_t t0 = ut_now_ns();
	char st[32], desc[256];
	char *reply;
	int ret;

	for (;;) {
		ret = fq_qmp_cmd(q, "{\"execute\":\"query-migrate\"}", -1,
				 &reply);
		if (ret == -ECONNRESET)
			pr_err("QEMU exited during the %s (its log says why)",
			       what);
		else if (ret)
			pr_err("query-migrate: %s", q->err.msg);
		if (ret)
			return ret;
		if (fq_json_str(reply, "status", st, sizeof(st)))
			snprintf(st, sizeof(st), "none");
		if (!strcmp(st, "completed")) {
			free(reply);
			return 0;
		}
		if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
			if (fq_json_str(reply, "error-desc", desc, sizeof(desc)))
				snprintf(desc, sizeof(desc), "see QEMU's log");
			pr_err("QEMU's %s %s: %s", what, st, desc);
			free(reply);
			return -EIO;
		}
		free(reply);
		if (ut_now_ns() - t0 > MIGRATE_WAIT_MS * 1000000ull) {
			pr_err("QEMU's %s did not finish in %d s (status %s)",
			       what, MIGRATE_WAIT_MS / 1000, st);
			return -ETIMEDOUT;
		}
		/* Not shorter: every query-migrate takes QEMU's main loop,
		 * where an incoming stream is loaded; 0.25 ms measured no
		 * better here (state load 12-18 ms either way, under load). */
		nanosleep(&(struct timespec){ 0, 2000000 }, NULL);
	}
}

/* Reads @fd to its end into a growing buffer, each wait bounded. */
static int slurp(int fd, void **blob, size_t *len)
{
	size_t cap = 1u << 20;
	uint8_t *b = malloc(cap);
	int ret = 0;

	*len = 0;
	while (b) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, MIGRATE_WAIT_MS) == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		n = read(fd, b + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		*len += n;
		if (*len == cap) {
			uint8_t *nb = cap < STATE_MAX ? realloc(b, cap * 2) : NULL;

			if (!nb) {
				ret = -EMSGSIZE;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	if (!b)
		return -ENOMEM;
	if (ret)
		free(b);
	else
		*blob = b;
	return ret;
}

int fq_state_save(struct fq_qmp *q, void **blob, size_t *len)
{
	int p[2], ret;

	*blob = NULL;
	*len = 0;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	ret = fq_state_prepare(q, true);
	if (!ret)
		ret = give_fd(q, p[1]);
	close(p[1]);
	if (!ret && (ret = fq_qmp_cmd(q, "{\"execute\":\"migrate\",\"arguments\":"
				      "{\"uri\":\"fd:" FDNAME "\"}}", -1, NULL)))
		pr_err("migrate: %s", q->err.msg);
	/* QEMU closes its end when the stream is complete (or failed). */
	if (!ret && (ret = slurp(p[0], blob, len)))
		pr_err("reading QEMU's state stream: %s", strerror(-ret));
	close(p[0]);
	if (!ret)
		ret = fq_state_wait(q, "state save");
	if (ret) {
		restore_capability(q);
		free(*blob);
		*blob = NULL;
		*len = 0;
	} else {
		pr_info("device state: %zu bytes", *len);
	}
	return ret;
}

int fq_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len) {
		ssize_t n = write(fd, b, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= n;
	}
	return 0;
}

int fq_state_load(struct fq_qmp *q, const void *blob, size_t len)
{
	int p[2], ret, wret;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	ret = fq_state_prepare(q, true);
	if (!ret)
		ret = give_fd(q, p[0]);
	close(p[0]);
	if (!ret && (ret = fq_qmp_cmd(q, "{\"execute\":\"migrate-incoming\","
				      "\"arguments\":{\"uri\":\"fd:" FDNAME
				      "\"}}", -1, NULL)))
		pr_err("migrate-incoming: %s", q->err.msg);
	if (ret) {
		close(p[1]);
		restore_capability(q);
		return ret == -EREMOTEIO ? -EBUSY : ret;
	}
	/* A QEMU that refuses the stream closes the pipe early (EPIPE):
	 * its reason comes from query-migrate below. */
	wret = fq_write_all(p[1], blob, len);
	close(p[1]);
	/* A failed load ends QEMU: nothing to restore; after a good one
	 * the caller restores (fq_state_done), once it has answered. */
	ret = fq_state_wait(q, "state load");
	if (!ret && wret)
		ret = wret;
	return ret ? -EINVAL : 0;
}
