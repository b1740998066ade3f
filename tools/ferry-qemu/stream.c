// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libvirt's migration stream as the state blob (docs/libvirt.md). Under
 * libvirt the QEMU migration is libvirt's own: on the source QEMU sends
 * its stream (x-ignore-shared: device state and the small non-shared
 * blocks) to the address libvirt was given, which is a listener of ours;
 * on the destination QEMU listens where libvirt told it to. Between the
 * two the stream travels inside Ferry's session, as STATE, so that the
 * destination QEMU reads no byte of it, and cannot run, before ferry-dest
 * holds the source's last pages: whoever sends `cont`, the guest never
 * sees a page older than the source's last write.
 *
 * On the source nothing is read until the agent's PAUSE: QEMU's migration
 * thread blocks on the full socket and the guest runs on while Ferry
 * copies RAM. The listener advertises a small receive window and MSS, so
 * that what QEMU can push before blocking is far below the non-shared
 * blocks it must send before it stops the vCPUs.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

#define STREAM_MAX (64u << 20)	/* VML_MAX_PAYLOAD */
#define STREAM_WAIT_MS 60000

int fq_stream_listen(const char *host, const char *port, int *fd)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	int one = 1, small = 4096, mss = 536, s, ret;

	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret)
		return -EINVAL;
	s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		ret = -errno;
		goto out;
	}
	/* Inherited by the accepted socket: QEMU's sender sizes its buffer
	 * from our MSS and sends no more than our window. */
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	setsockopt(s, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
	if (bind(s, ai->ai_addr, ai->ai_addrlen) || listen(s, 1)) {
		ret = -errno;
		close(s);
		goto out;
	}
	*fd = s;
out:
	freeaddrinfo(ai);
	return ret;
}

void fq_stream_init(struct fq_stream *s, int listen_fd)
{
	*s = (struct fq_stream){ .listen_fd = listen_fd, .fd = -1 };
}

void fq_stream_fini(struct fq_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
}

int fq_stream_accept(struct fq_stream *s, int wait_ms)
{
	struct pollfd p = { s->listen_fd, POLLIN, 0 };
	int r;

	if (s->fd >= 0)
		return 0;
	do
		r = poll(&p, 1, wait_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r ? -errno : -ETIMEDOUT;
	s->fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	return s->fd < 0 ? -errno : 0;
}

/* Reads what QEMU has sent, waiting at most @wait_ms for the first byte;
 * -ECONNRESET at its end. */
static int pull(struct fq_stream *s, int wait_ms)
{
	struct pollfd p = { s->fd, POLLIN, 0 };
	ssize_t n;
	int r;

	if (s->cap - s->len < 65536) {
		size_t cap = s->cap ? s->cap * 2 : 1u << 20;
		uint8_t *b = cap <= STREAM_MAX ? realloc(s->buf, cap) : NULL;

		if (!b)
			return -EMSGSIZE;
		s->buf = b;
		s->cap = cap;
	}
	do
		r = poll(&p, 1, wait_ms);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r ? -errno : -ETIMEDOUT;
	n = read(s->fd, s->buf + s->len, s->cap - s->len);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	s->len += n;
	return 0;
}

int fq_stream_wait_stop(struct fq_stream *s, struct fq_qmp *q)
{
	uint64_t t0 = ut_now_ns();
	unsigned int stops;
	bool ran = false;
	char st[32];
	int ret = fq_stream_accept(s, STREAM_WAIT_MS);

	if (ret) {
		pr_err("libvirt's migration stream never connected: %s",
		       strerror(-ret));
		return ret;
	}
	/*
	 * Read first, then ask: a byte read while QEMU still said "running"
	 * was written before it stopped the vCPUs, so the order is sound
	 * whatever the size of a read. The run state changes before the
	 * vCPUs have stopped (do_vm_stop sets it, then pauses them with the
	 * big lock dropped), so the harvest waits for the STOP event, which
	 * comes after; a guest that was not running when we began sends none.
	 */
	stops = q->stops;
	for (;;) {
		ret = pull(s, 2);
		if (ret == -ETIMEDOUT)
			ret = 0;
		if (ret) {
			pr_err("libvirt's migration stream ended before QEMU "
			       "stopped the guest (%s): its migration failed",
			       strerror(-ret));
			return ret;
		}
		ret = fq_qmp_status(q, st, sizeof(st));
		if (ret) {
			pr_err("query-status: %s", q->err.msg);
			return ret;
		}
		if (strcmp(st, "running") && (!ran || q->stops != stops))
			break;
		ran = true;
		if (ut_now_ns() - t0 > STREAM_WAIT_MS * 1000000ull) {
			pr_err("QEMU's migration did not stop the guest in %d s",
			       STREAM_WAIT_MS / 1000);
			return -ETIMEDOUT;
		}
	}
	pr_info("libvirt's migration stopped the guest (%s) after %zu bytes",
		st, s->len);
	return 0;
}

/*
 * Whether the stream is whole: QEMU 7.2 ends it with QEMU_VM_EOF (0),
 * QEMU_VM_VMDESCRIPTION (6), a be32 length and that many bytes of JSON
 * (savevm.c, qemu_savevm_state_complete_precopy_non_iterable).
 */
static bool stream_whole(const struct fq_stream *s)
{
	const uint8_t *b = s->buf;
	size_t n = s->len;

	if (n < 8 || b[n - 1] != '}')
		return false;
	for (size_t i = n - 1; i >= 6; i--) {
		uint32_t l = (uint32_t)b[i - 4] << 24 | b[i - 3] << 16 |
			     b[i - 2] << 8 | b[i - 1];

		if (b[i] == '{' && b[i - 5] == 6 && !b[i - 6] && l == n - i)
			return true;
	}
	return false;
}

/*
 * libvirt turns on QEMU's return path: the source completes only once
 * the destination says SHUT on it. That word cannot come back through
 * Ferry's one-way STATE, so the link says it for the destination once
 * the stream is whole (MIG_RP_MSG_SHUT, be16 type 1, be16 length 4, be32
 * 0: no error). The destination's real verdict reaches libvirt as its
 * own incoming migration's outcome at Finish, which resumes the source
 * if the load failed.
 */
static void say_shut(struct fq_stream *s)
{
	static const uint8_t shut[8] = { 0, 1, 0, 4, 0, 0, 0, 0 };

	if (fq_write_all(s->fd, shut, sizeof(shut)))
		pr_debug("QEMU took no return-path SHUT (no return path)");
}

int fq_stream_finish(struct fq_stream *s, struct fq_qmp *q, void **blob,
		     size_t *len)
{
	bool shut = false;
	int ret;

	do {
		ret = pull(s, shut ? STREAM_WAIT_MS : 100);
		if (ret == -ETIMEDOUT && !shut)
			ret = 0;
		if (!ret && !shut && stream_whole(s)) {
			say_shut(s);
			shut = true;
		}
	} while (!ret);
	if (ret != -ECONNRESET) {
		pr_err("reading libvirt's migration stream: %s", strerror(-ret));
		return ret;
	}
	ret = fq_state_wait(q, "libvirt's migration");
	if (ret)
		return ret;
	*blob = s->buf;
	*len = s->len;
	s->buf = NULL;
	s->len = s->cap = 0;
	pr_info("libvirt's migration stream: %zu bytes", *len);
	return 0;
}

/* Connects to where the incoming QEMU listens (its query-migrate). */
static int connect_incoming(struct fq_qmp *q, int *fd)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	char type[16], host[128], port[16], *reply = NULL;
	struct addrinfo *ai = NULL;
	int s = -1, ret;

	ret = fq_qmp_cmd(q, "{\"execute\":\"query-migrate\"}", -1, &reply);
	if (!ret && (fq_json_str(reply, "type", type, sizeof(type)) ||
		     (!strcmp(type, "unix") ?
		      fq_json_str(reply, "path", un.sun_path,
				  sizeof(un.sun_path)) :
		      fq_json_str(reply, "host", host, sizeof(host)) ||
		      fq_json_str(reply, "port", port, sizeof(port)))))
		ret = -ENOENT;
	free(reply);
	if (ret) {
		pr_err("the incoming QEMU listens nowhere (query-migrate "
		       "gives no socket-address): was it started by libvirt?");
		return ret;
	}
	if (strcmp(type, "unix") && getaddrinfo(host, port, &hints, &ai))
		return -EINVAL;
	s = socket(ai ? ai->ai_family : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		ret = -errno;
	else if (ai ? connect(s, ai->ai_addr, ai->ai_addrlen)
		    : connect(s, (struct sockaddr *)&un, sizeof(un)))
		ret = -errno;
	if (ret)
		pr_err("connecting to the incoming QEMU at %s:%s: %s",
		       ai ? host : un.sun_path, ai ? port : "", strerror(-ret));
	if (ai)
		freeaddrinfo(ai);
	if (ret && s >= 0)
		close(s);
	if (!ret)
		*fd = s;
	return ret;
}

int fq_stream_load(struct fq_qmp *q, const void *blob, size_t len)
{
	int fd = -1, wret, ret = fq_state_prepare(q, true);

	ret = ret ?: connect_incoming(q, &fd);
	if (ret)
		return ret;
	/* A QEMU that refuses the stream closes early: its reason comes
	 * from query-migrate. */
	wret = fq_write_all(fd, blob, len);
	/* Half-close, and close only after the load: QEMU's return path
	 * writes to this socket, and a close with its bytes unread would
	 * reset the connection under data QEMU has not read yet. */
	shutdown(fd, SHUT_WR);
	ret = fq_state_wait(q, "state load");
	close(fd);
	if (!ret)
		fq_state_prepare(q, false);
	return ret ? -EINVAL : wret;
}
