// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A QMP client of just what ferry-qemu needs: QEMU answers each command
 * with one JSON object on one line, and may put events (one line each)
 * before it. Values are picked out of a reply by key; the replies we read
 * are QEMU's own, of a known shape, so no general JSON parser is needed.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

#define QMP_TIMEOUT_MS 30000

/* Reads more bytes into q->buf, waiting at most q->timeout_ms. */
static int fill(struct fq_qmp *q)
{
	struct pollfd p = { q->fd, POLLIN, 0 };
	ssize_t n;
	int r;

	if (q->cap - q->len < 4096) {
		size_t cap = q->cap ? q->cap * 2 : 65536;
		char *b = realloc(q->buf, cap);

		if (!b)
			return -ENOMEM;
		q->buf = b;
		q->cap = cap;
	}
	do
		r = poll(&p, 1, q->timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return -ETIMEDOUT;
	n = recv(q->fd, q->buf + q->len, q->cap - q->len - 1, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	q->len += n;
	q->buf[q->len] = 0;
	return 0;
}

/* Takes the next whole line out of the buffer, reading as needed. */
static int next_line(struct fq_qmp *q, char **line)
{
	char *nl;
	int ret;

	while (!q->buf || !(nl = memchr(q->buf, '\n', q->len))) {
		ret = fill(q);
		if (ret)
			return ret;
	}
	*line = strndup(q->buf, nl - q->buf);
	if (!*line)
		return -ENOMEM;
	q->len -= nl + 1 - q->buf;
	memmove(q->buf, nl + 1, q->len);
	q->buf[q->len] = 0;
	return 0;
}

/* A reply, an error or the greeting; anything else is an event. */
static bool is_reply(const char *l)
{
	return !strncmp(l, "{\"return\"", 9) || !strncmp(l, "{\"error\"", 8) ||
	       !strncmp(l, "{\"QMP\"", 6);
}

/* Events are dropped; a STOP is remembered (q->stops): QEMU emits it
 * once every vCPU has stopped, after its run state already says so. */
static void event(struct fq_qmp *q, char *l)
{
	char ev[32];

	pr_debug("qmp event: %s", l);
	if (!fq_json_str(l, "event", ev, sizeof(ev)) && !strcmp(ev, "STOP"))
		q->stops++;
	free(l);
}

/* The next reply (not an event); error replies give -EREMOTEIO. */
static int recv_reply(struct fq_qmp *q, char **reply)
{
	char *l = NULL;
	int ret;

	for (;;) {
		ret = next_line(q, &l);
		if (ret)
			return ret;
		if (is_reply(l))
			break;
		event(q, l);
	}
	ret = 0;
	if (strncmp(l, "{\"error\"", 8) == 0) {
		if (fq_json_str(l, "desc", q->err.msg, sizeof(q->err.msg)))
			snprintf(q->err.msg, sizeof(q->err.msg), "%s", l);
		ret = -EREMOTEIO;
	}
	if (reply)
		*reply = l;
	else
		free(l);
	return ret;
}

static int send_cmd(struct fq_qmp *q, const char *json, int fd)
{
	size_t len = strlen(json), done = 0;
	char cbuf[CMSG_SPACE(sizeof(int))];

	while (done < len) {
		struct iovec iov = { (char *)json + done, len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (fd >= 0 && done == 0) {
			struct cmsghdr *c;

			memset(cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf;
			mh.msg_controllen = sizeof(cbuf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		done += n;
	}
	return 0;
}

int fq_qmp_cmd(struct fq_qmp *q, const char *json, int fd, char **reply)
{
	int ret;

	if (reply)
		*reply = NULL;
	ut_err_clear(&q->err);
	ret = send_cmd(q, json, fd);
	if (!ret)
		ret = send_cmd(q, "\n", -1);
	if (!ret)
		ret = recv_reply(q, reply);
	if (ret && ret != -EREMOTEIO)
		ut_err_set(&q->err, ret, "QMP: %s", strerror(-ret));
	pr_debug("qmp %s: %d %s", json, ret, q->err.msg);
	return ret;
}

/*
 * QEMU binds its monitor socket before it listens on it, and the daemon
 * may start with QEMU: a missing socket or a refused connection is tried
 * again until @wait_ms have passed.
 */
static int connect_wait(int fd, const struct sockaddr_un *a, int wait_ms)
{
	for (int ms = 0;; ms += 20) {
		if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0)
			return 0;
		if ((errno != ENOENT && errno != ECONNREFUSED) || ms >= wait_ms)
			return -errno;
		nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	}
}

int fq_qmp_open(struct fq_qmp *q, const char *path, int wait_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	int ret;

	*q = (struct fq_qmp){ .fd = -1, .timeout_ms = QMP_TIMEOUT_MS };
	if (strlen(path) >= sizeof(a.sun_path)) {
		pr_err("QMP socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(a.sun_path, path);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		return -errno;
	ret = connect_wait(q->fd, &a, wait_ms);
	if (ret) {
		pr_err("cannot reach QEMU's monitor at %s: %s (is QEMU running "
		       "with -qmp unix:%s,server=on,wait=off?)", path,
		       strerror(-ret), path);
		return ret;
	}
	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0)
		q->peer = cr.pid;
	ret = recv_reply(q, NULL);	/* the greeting */
	if (!ret)
		ret = fq_qmp_cmd(q, "{\"execute\":\"qmp_capabilities\"}", -1,
				 NULL);
	if (ret)
		pr_err("QMP handshake with %s failed: %s", path, q->err.msg[0] ?
		       q->err.msg : strerror(-ret));
	return ret;
}

void fq_qmp_close(struct fq_qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	free(q->buf);
	q->buf = NULL;
	q->len = q->cap = 0;
}

int fq_qmp_drain(struct fq_qmp *q)
{
	char *l, *nl;
	int ret = fill(q);

	while (!ret && (nl = memchr(q->buf, '\n', q->len))) {
		ret = next_line(q, &l);
		if (!ret)
			event(q, l);
	}
	return ret;
}

/* Escapes @s as the inside of a JSON string. */
static int json_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s; s++) {
		if (o + 7 >= cap)
			return -ENAMETOOLONG;
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		if ((unsigned char)*s < 0x20)
			o += snprintf(out + o, cap - o, "\\u%04x", *s);
		else
			out[o++] = *s;
	}
	out[o] = 0;
	return 0;
}

int fq_qmp_hmp(struct fq_qmp *q, const char *cmd, char **out)
{
	char esc[512], js[640], *reply = NULL, *p;
	size_t cap;
	int ret = json_escape(cmd, esc, sizeof(esc));

	*out = NULL;
	if (ret)
		return ret;
	snprintf(js, sizeof(js), "{\"execute\":\"human-monitor-command\","
		 "\"arguments\":{\"command-line\":\"%s\"}}", esc);
	ret = fq_qmp_cmd(q, js, -1, &reply);
	if (ret)
		goto out;
	p = strstr(reply, "\"return\"");
	cap = strlen(reply) + 1;
	*out = malloc(cap);
	if (!*out) {
		ret = -ENOMEM;
		goto out;
	}
	ret = fq_json_str(p, "return", *out, cap);
out:
	free(reply);
	return ret;
}

int fq_qmp_status(struct fq_qmp *q, char *st, size_t cap)
{
	char *reply;
	int ret = fq_qmp_cmd(q, "{\"execute\":\"query-status\"}", -1, &reply);

	if (!ret)
		ret = fq_json_str(reply, "status", st, cap);
	free(reply);
	return ret;
}

/* ---- picking values out of QEMU's JSON ---- */

/* Points after `"key":` and any blanks, or NULL. */
static const char *value_of(const char *js, const char *key)
{
	size_t kl = strlen(key);
	const char *p = js;

	while ((p = strchr(p, '"'))) {
		if (!strncmp(p + 1, key, kl) && p[kl + 1] == '"') {
			p += kl + 2;
			while (*p == ' ')
				p++;
			if (*p != ':')
				continue;
			p++;
			while (*p == ' ')
				p++;
			return p;
		}
		p++;
	}
	return NULL;
}

static int unescape(const char *p, char *out, size_t cap)
{
	size_t o = 0;

	for (; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\') {
			switch (*++p) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned int u = 0;

				if (sscanf(p + 1, "%4x", &u) != 1)
					return -EPROTO;
				p += 4;
				c = u < 0x80 ? (char)u : '?';
				break;
			}
			case 0: return -EPROTO;
			default: c = *p; break;
			}
		}
		if (o + 1 >= cap)
			return -ENOSPC;
		out[o++] = c;
	}
	out[o] = 0;
	return *p == '"' ? 0 : -EPROTO;
}

int fq_json_str(const char *js, const char *key, char *out, size_t cap)
{
	const char *p = value_of(js, key);

	if (!p || *p != '"')
		return -ENOENT;
	return unescape(p + 1, out, cap);
}

int fq_json_u64(const char *js, const char *key, uint64_t *out)
{
	const char *p = value_of(js, key);
	char *end;

	if (!p)
		return -ENOENT;
	*out = strtoull(p, &end, 10);
	return end == p ? -EPROTO : 0;
}

int fq_json_bool(const char *js, const char *key, bool *out)
{
	const char *p = value_of(js, key);

	if (!p)
		return -ENOENT;
	if (!strncmp(p, "true", 4))
		*out = true;
	else if (!strncmp(p, "false", 5))
		*out = false;
	else
		return -EPROTO;
	return 0;
}
