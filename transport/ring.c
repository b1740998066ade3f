// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The raw byte layer of a stream: every send and receive of the socket is
 * an io_uring operation, waited for with the stream's timeout.
 *
 * At most one operation is in flight per stream, and at most one send:
 * two sends in flight on one TCP socket may complete out of order (the
 * second issued inline while the first waits for room). What overlaps is
 * the thread's own work: tp_raw_tx_kick() submits the send of one buffer
 * of sealed records and returns, the thread seals the next buffer while
 * that send waits for room in the socket (or for the receiver to drain
 * it, on loopback), and waits for it only when it needs that buffer back
 * or before it receives. A stream is driven by one thread, and the copy
 * into or out of the socket runs in its context anyway (inline at submit
 * or as task work), so a deeper queue would not add more.
 *
 * Receives into the staging buffer use it as a registered buffer
 * (READ_FIXED); large plain-TCP receives go straight to the caller's
 * pages with READV. Sends use SEND/SENDMSG with MSG_NOSIGNAL (and
 * MSG_WAITALL, which io_uring retries until all is sent): WRITE_FIXED on
 * a socket would raise SIGPIPE on a closed peer, which a library must not
 * do to its process, and a registered buffer buys nothing for a send that
 * copies. Multishot receive with provided buffers is not used: with one
 * reader per stream that always knows where the next bytes should go, it
 * would only add a copy out of the provided buffer.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"

#define OP_ID 1
#define CANCEL_ID 2
#define RING_DEPTH 8

/* IORING_SETUP_COOP_TASKRUN: the task work that finishes a send which
 * waited for room (or posts a completion) runs when the thread next
 * enters the kernel, instead of interrupting it (an IPI, a VM exit here)
 * while it seals the next buffer; a sleeping waiter is woken either way.
 * TASKRUN_FLAG lets a thread busy-polling the completion queue
 * (tp_stream_set_busy_poll()) see that work is pending: liburing's peek
 * enters the kernel to run it. Older kernels: neither. */
int tp_ring_setup(struct tp_stream *st)
{
	struct iovec iov = { .iov_base = st->rxbuf, .iov_len = st->rx_cap };
	int ret;

	ret = io_uring_queue_init(RING_DEPTH, &st->ring,
				  IORING_SETUP_COOP_TASKRUN |
				  IORING_SETUP_TASKRUN_FLAG);
	if (ret == -EINVAL)
		ret = io_uring_queue_init(RING_DEPTH, &st->ring, 0);
	if (ret < 0)
		return tp_stream_seterr(st, ret, "io_uring setup failed: %s",
					strerror(-ret));
	st->ring_ok = true;
	ret = io_uring_register_buffers(&st->ring, &iov, 1);
	if (ret < 0)
		pr_debug("registering the receive buffer failed (%s): plain recv",
			 strerror(-ret));
	else
		st->buf_registered = true;
	return 0;
}

/* The operation outlived the timeout: cancel it and reap both completions.
 * If it completed meanwhile, its result wins. */
static int cancel_one(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	int res = -ETIMEDOUT, left = 2, ret;

	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, OP_ID, 0);
	io_uring_sqe_set_data64(sqe, CANCEL_ID);
	ret = io_uring_submit(ring);
	if (ret < 0)
		return ret;
	while (left > 0) {
		ret = io_uring_wait_cqe(ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			return ret;
		if (cqe->user_data == OP_ID && cqe->res >= 0)
			res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		left--;
	}
	return res;
}

/* Polls the completion queue for up to @spin_ns before sleeping: waking a
 * sleeping thread costs tens of microseconds on a busy (or nested) host,
 * more than a short urgent round trip. The completion's task work reaches
 * a spinning thread through the TWA_SIGNAL kick (no COOP_TASKRUN). */
static int spin_one(struct io_uring *ring, uint64_t spin_ns)
{
	struct io_uring_cqe *cqe;
	uint64_t t0 = ut_now_ns();
	int ret;

	ret = io_uring_submit(ring);
	if (ret < 0)
		return ret;
	do {
		if (io_uring_peek_cqe(ring, &cqe) == 0) {
			ret = cqe->res;
			io_uring_cqe_seen(ring, cqe);
			return ret;
		}
	} while (ut_now_ns() - t0 < spin_ns);
	return -EAGAIN;
}

int tp_ring_wait_one(struct io_uring *ring, int timeout_ms)
{
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	int ret;

	ret = io_uring_submit(ring);
	if (ret < 0)
		return ret;
	do {
		if (timeout_ms < 0)
			ret = io_uring_wait_cqe(ring, &cqe);
		else
			ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	} while (ret == -EINTR);
	if (ret == -ETIME)
		return cancel_one(ring);
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

/* Waits for the stream's one operation, spinning first if asked to. */
static int wait_op(struct tp_stream *st)
{
	int ret;

	if (st->spin_ns) {
		ret = spin_one(&st->ring, st->spin_ns);
		if (ret != -EAGAIN)
			return ret;
	}
	return tp_ring_wait_one(&st->ring, st->timeout_ms);
}

static struct io_uring_sqe *get_sqe(struct tp_stream *st)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

	if (sqe)
		io_uring_sqe_set_data64(sqe, OP_ID);
	return sqe;
}

static int send_error(struct tp_stream *st, int ret)
{
	st->broken = true;
	if (ret == -ETIMEDOUT)
		return tp_stream_seterr(st, ret,
					"peer not reading for %d ms (timeout)",
					st->timeout_ms);
	if (ret == -EPIPE || ret == -ECONNRESET)
		return tp_stream_seterr(st, ret,
					"peer closed the connection while we sent");
	return tp_stream_seterr(st, ret, "send failed: %s", strerror(-ret));
}

static int recv_error(struct tp_stream *st, int ret)
{
	st->broken = true;
	if (ret == -ETIMEDOUT)
		return tp_stream_seterr(st, ret,
					"peer silent for %d ms (timeout)",
					st->timeout_ms);
	if (ret == -ECONNRESET)
		return tp_stream_seterr(st, ret, "connection reset by peer");
	return tp_stream_seterr(st, ret, "receive failed: %s", strerror(-ret));
}

void tp_iov_advance(struct iovec **iov, int *cnt, size_t n)
{
	while (*cnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*cnt)--;
	}
	if (*cnt > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

size_t tp_iov_copy_in(struct iovec **iov, int *cnt, const uint8_t *src,
		      size_t n)
{
	size_t done = 0, k;

	while (*cnt > 0 && done < n) {
		k = (*iov)->iov_len < n - done ? (*iov)->iov_len : n - done;
		memcpy((*iov)->iov_base, src + done, k);
		done += k;
		tp_iov_advance(iov, cnt, k);
	}
	return done;
}

int tp_raw_sendv(struct tp_stream *st, struct iovec *iov, int iovcnt)
{
	struct io_uring_sqe *sqe;
	struct msghdr mh;
	int ret;

	ret = tp_raw_tx_wait(st);
	if (ret < 0)
		return ret;
	while (iovcnt > 0 && iov->iov_len == 0)
		iov++, iovcnt--;
	while (iovcnt > 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = iovcnt;
		sqe = get_sqe(st);
		if (!sqe)
			return tp_stream_seterr(st, -EBUSY, "io_uring full");
		io_uring_prep_sendmsg(sqe, st->fd, &mh,
				      MSG_NOSIGNAL | MSG_WAITALL);
		ret = tp_ring_wait_one(&st->ring, st->timeout_ms);
		if (ret <= 0)
			return send_error(st, ret ? ret : -EPIPE);
		tp_iov_advance(&iov, &iovcnt, ret);
		while (iovcnt > 0 && iov->iov_len == 0)
			iov++, iovcnt--;
	}
	return 0;
}

/* Sends @len bytes of @buf, the only operation in flight. */
static int send_all(struct tp_stream *st, const uint8_t *p, size_t len)
{
	struct io_uring_sqe *sqe;
	int ret;

	while (len > 0) {
		sqe = get_sqe(st);
		if (!sqe)
			return tp_stream_seterr(st, -EBUSY, "io_uring full");
		io_uring_prep_send(sqe, st->fd, p, len,
				   MSG_NOSIGNAL | MSG_WAITALL);
		ret = tp_ring_wait_one(&st->ring, st->timeout_ms);
		if (ret <= 0)
			return send_error(st, ret ? ret : -EPIPE);
		p += ret;
		len -= ret;
	}
	return 0;
}

int tp_raw_send(struct tp_stream *st, const void *buf, size_t len)
{
	int ret = tp_raw_tx_wait(st);

	return ret < 0 ? ret : send_all(st, buf, len);
}

int tp_raw_tx_wait(struct tp_stream *st)
{
	uint8_t *buf = st->txb[!st->tx_cur];
	size_t len = st->tx_busy_len;
	int ret;

	if (!st->tx_busy)
		return 0;
	st->tx_busy = false;
	ret = tp_ring_wait_one(&st->ring, st->timeout_ms);
	if (ret <= 0)
		return send_error(st, ret ? ret : -EPIPE);
	/* MSG_WAITALL leaves a short count only with an error pending;
	 * nothing else was submitted meanwhile, so the rest still goes in
	 * order. */
	return (size_t)ret < len ? send_all(st, buf + ret, len - ret) : 0;
}

void tp_raw_tx_cancel(struct tp_stream *st)
{
	if (st->tx_busy)
		cancel_one(&st->ring);
	st->tx_busy = false;
}

int tp_raw_tx_kick(struct tp_stream *st)
{
	struct io_uring_sqe *sqe;
	int ret;

	ret = tp_raw_tx_wait(st);
	if (ret < 0 || st->tx_len == 0)
		return ret;
	sqe = get_sqe(st);
	if (!sqe)
		return tp_stream_seterr(st, -EBUSY, "io_uring full");
	io_uring_prep_send(sqe, st->fd, st->txbuf, st->tx_len,
			   MSG_NOSIGNAL | MSG_WAITALL);
	ret = io_uring_submit(&st->ring);
	if (ret < 0)
		return send_error(st, ret);
	st->tx_busy = true;
	st->tx_busy_len = st->tx_len;
	st->tx_cur = !st->tx_cur;
	st->txbuf = st->txb[st->tx_cur];
	st->tx_len = 0;
	return 0;
}

int tp_raw_flush(struct tp_stream *st)
{
	int ret = tp_raw_tx_kick(st);

	return ret < 0 ? ret : tp_raw_tx_wait(st);
}

/* One receive into @buf: registered when it is the staging buffer. */
static ssize_t recv_once(struct tp_stream *st, uint8_t *buf, size_t len)
{
	struct io_uring_sqe *sqe;
	int ret;

	ret = tp_raw_tx_wait(st);
	if (ret < 0)
		return ret;
	sqe = get_sqe(st);
	if (!sqe)
		return tp_stream_seterr(st, -EBUSY, "io_uring full");
	if (st->buf_registered && buf >= st->rxbuf &&
	    buf + len <= st->rxbuf + st->rx_cap)
		io_uring_prep_read_fixed(sqe, st->fd, buf, len, 0, 0);
	else
		io_uring_prep_recv(sqe, st->fd, buf, len, 0);
	ret = wait_op(st);
	if (ret < 0)
		return recv_error(st, ret);
	if (ret == 0) {
		st->eof = true;
	} else if (!st->got_bytes) {
		st->got_bytes = true;
		st->first_byte = buf[0];
	}
	return ret;
}

ssize_t tp_raw_fill(struct tp_stream *st)
{
	ssize_t ret = recv_once(st, st->rxbuf, st->rx_cap);

	st->rx_off = 0;
	st->rx_len = ret > 0 ? ret : 0;
	return ret;
}

ssize_t tp_raw_append(struct tp_stream *st, size_t room)
{
	size_t left = st->rx_len - st->rx_off;
	ssize_t ret;

	/* Moving less than a record is cheaper than receiving in small
	 * pieces: keep at least half the buffer free for the receive. */
	if (room < st->rx_cap / 2)
		room = st->rx_cap / 2;
	if (st->rx_cap - st->rx_len < room && st->rx_off > 0) {
		memmove(st->rxbuf, st->rxbuf + st->rx_off, left);
		st->rx_off = 0;
		st->rx_len = left;
	}
	ret = recv_once(st, st->rxbuf + st->rx_len, st->rx_cap - st->rx_len);
	if (ret > 0)
		st->rx_len += ret;
	return ret;
}

int tp_raw_recvv(struct tp_stream *st, struct iovec *iov, int iovcnt)
{
	struct io_uring_sqe *sqe;
	int ret;

	ret = tp_raw_tx_wait(st);
	if (ret < 0)
		return ret;
	while (iovcnt > 0 && iov->iov_len == 0)
		iov++, iovcnt--;
	while (iovcnt > 0) {
		sqe = get_sqe(st);
		if (!sqe)
			return tp_stream_seterr(st, -EBUSY, "io_uring full");
		io_uring_prep_readv(sqe, st->fd, iov, iovcnt, 0);
		ret = wait_op(st);
		if (ret < 0)
			return recv_error(st, ret);
		if (ret == 0) {
			st->eof = true;
			return tp_stream_seterr(st, -ECONNRESET,
						"peer closed the connection mid-message");
		}
		tp_iov_advance(&iov, &iovcnt, ret);
		while (iovcnt > 0 && iov->iov_len == 0)
			iov++, iovcnt--;
	}
	return 0;
}
