// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Streams: framing of messages over TLS or plain TCP.
 *
 * Wire format of one message (the only one of this module):
 *   le32 magic "FRY1" | le32 type | le64 payload length | payload
 * TLS seals the payload straight from the caller's iovec into the send
 * buffer and opens it from the receive buffer into the caller's pieces
 * (record.c, wire-tls.c); plain TCP hands the iovec to sendmsg and reads
 * large payloads straight into the destination. transport.h counts the
 * copies of each path.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"

/* Payload pieces handed to the wire at a time (a 256 KiB batch of 4 KiB
 * pages is 64). */
#define TP_RECV_BATCH 64

void tp_frame_encode(uint8_t out[TP_FRAME_LEN], uint32_t type, uint64_t len)
{
	ut_put_le32(out, TP_FRAME_MAGIC);
	ut_put_le32(out + 4, type);
	ut_put_le32(out + 8, (uint32_t)len);
	ut_put_le32(out + 12, (uint32_t)(len >> 32));
}

int tp_frame_decode(const uint8_t in[TP_FRAME_LEN], uint32_t *type,
		    uint64_t *len)
{
	if (ut_get_le32(in) != TP_FRAME_MAGIC)
		return -EPROTO;
	*type = ut_get_le32(in + 4);
	*len = ut_get_le32(in + 8) | (uint64_t)ut_get_le32(in + 12) << 32;
	return 0;
}

int tp_stream_seterr(struct tp_stream *st, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err.msg, sizeof(st->err.msg), fmt, ap);
	va_end(ap);
	return ret;
}

int tp_stream_create(int fd, enum tp_stream_kind kind, unsigned int index,
		     const struct tp_config *cfg, struct tp_stream **out)
{
	size_t buf = cfg->buf_size ? cfg->buf_size : TP_DEFAULT_BUF;
	struct tp_stream *st;
	int one = 1, ret;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->fd = fd;
	st->ops = &tp_wire_plain;
	st->kind = kind;
	st->index = index;
	st->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms
					 : TP_DEFAULT_TIMEOUT_MS;
	st->key_update_bytes = cfg->key_update_bytes ? cfg->key_update_bytes
						     : TP_DEFAULT_KEY_UPDATE;
	buf = UT_ALIGN_UP(buf < 32768 ? 32768 : buf, 4096);
	st->tx_cap = st->rx_cap = buf;
	st->txb[0] = aligned_alloc(4096, buf);
	st->txb[1] = aligned_alloc(4096, buf);
	st->txbuf = st->txb[0];
	st->rxbuf = aligned_alloc(4096, buf);
	if (!st->txb[0] || !st->txb[1] || !st->rxbuf) {
		ret = -ENOMEM;
		goto free_stream;
	}
	ret = tp_ring_setup(st);
	if (ret < 0)
		goto free_stream;
	/* We batch ourselves; never let Nagle hold a record back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*out = st;
	return 0;

free_stream:
	pr_err("stream setup: %s", st->err.msg[0] ? st->err.msg : strerror(-ret));
	st->fd = -1; /* the caller still owns fd on failure */
	tp_stream_destroy(st, false);
	return ret;
}

void tp_stream_destroy(struct tp_stream *st, bool graceful)
{
	if (!st)
		return;
	if (graceful && !st->broken && st->ring_ok && st->fd >= 0) {
		/* A peer that stopped reading must not hold us for long. */
		if (st->timeout_ms < 0 || st->timeout_ms > 500)
			st->timeout_ms = 500;
		st->ops->close(st);
	}
	SSL_free(st->ssl);
	tp_tls_put(st->tls);
	/* A send still in flight (a broken stream's) reads txb: done with it
	 * before the buffers go. */
	if (st->ring_ok) {
		tp_raw_tx_cancel(st);
		io_uring_queue_exit(&st->ring);
	}
	if (st->fd >= 0)
		close(st->fd);
	tp_rec_key_fini(&st->rec_tx);
	tp_rec_key_fini(&st->rec_rx);
	OPENSSL_cleanse(st->secret_tx, sizeof(st->secret_tx));
	OPENSSL_cleanse(st->secret_rx, sizeof(st->secret_rx));
	free(st->txb[0]);
	free(st->txb[1]);
	free(st->rxbuf);
	free(st->pt);
	free(st);
}

/* A stream its owner shut down fails every call from then on. */
static int check_shut(struct tp_stream *st)
{
	if (!atomic_load(&st->shut))
		return 0;
	st->broken = true;
	return tp_stream_seterr(st, -EPIPE, "stream shut down by its owner");
}

/* ---- sending ---- */

static int send_frame(struct tp_stream *st, uint32_t type,
		      const struct iovec *iov, int iovcnt, unsigned int flags)
{
	uint8_t hdr[TP_FRAME_LEN];
	uint64_t len = 0;
	int ret;

	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return tp_stream_seterr(st, -EINVAL, "bad iovec");
	ret = check_shut(st);
	if (ret < 0)
		return ret;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	tp_frame_encode(hdr, type, len);
	ret = st->ops->send_frame(st, hdr, iov, iovcnt, len, flags);
	if (ret < 0)
		return ret;
	st->stats.tx_bytes += len + TP_FRAME_LEN;
	st->stats.tx_msgs++;
	return 0;
}

int tp_send(struct tp_stream *st, uint32_t type, const struct iovec *iov,
	    int iovcnt, unsigned int flags)
{
	if (type >= TP_TYPE_RESERVED)
		return tp_stream_seterr(st, -EINVAL,
					"message type 0x%x is reserved", type);
	return send_frame(st, type, iov, iovcnt, flags);
}

/* Transport-internal messages (session setup) bypass the type check. */
int tp_send_internal(struct tp_stream *st, uint32_t type, const void *buf,
		     size_t len)
{
	struct iovec v = { (void *)buf, len };

	return send_frame(st, type, &v, len ? 1 : 0, 0);
}

int tp_stream_flush(struct tp_stream *st)
{
	int ret = check_shut(st);

	return ret < 0 ? ret : tp_raw_flush(st);
}

int tp_stream_write_raw(struct tp_stream *st, const void *buf, size_t len,
			bool flush)
{
	int ret = st->ops->write_raw(st, buf, len);

	if (ret == 0 && flush)
		ret = tp_raw_flush(st);
	return ret;
}

/* ---- receiving ---- */

/* Reads exactly all of @iov (modified); @mid: inside a message, so that
 * any end of the stream is an error about a truncated message. */
static int read_exactv(struct tp_stream *st, struct iovec *iov, int iovcnt,
		       bool mid)
{
	int ret;

	ret = check_shut(st);
	if (ret == 0)
		ret = st->ops->readv(st, iov, iovcnt);
	if (ret == -ESHUTDOWN && mid)
		ret = tp_stream_seterr(st, -ECONNRESET,
				       "peer closed the stream mid-message");
	else if (ret == -ECONNRESET && mid && st->eof)
		ret = tp_stream_seterr(st, -ECONNRESET,
				       "peer closed the connection mid-message");
	return ret;
}

static int read_exact(struct tp_stream *st, void *p, size_t len, bool mid)
{
	struct iovec v = { p, len };

	return read_exactv(st, &v, 1, mid);
}

int tp_recv_hdr(struct tp_stream *st, struct tp_msg *msg)
{
	uint8_t hdr[TP_FRAME_LEN];
	int ret;

	if (st->in_msg && st->rx_left)
		return tp_stream_seterr(st, -EBUSY,
					"%llu payload bytes of the previous message unread",
					(unsigned long long)st->rx_left);
	st->in_msg = false;
	ret = read_exact(st, hdr, 1, false);
	if (ret == 0)
		ret = read_exact(st, hdr + 1, TP_FRAME_LEN - 1, true);
	if (ret < 0)
		return ret;
	if (tp_frame_decode(hdr, &msg->type, &msg->len) < 0 &&
	    (hdr[0] == 0x15 || hdr[0] == 0x16) && hdr[1] == 3)
		return tp_stream_seterr(st, -EPROTO,
					"peer speaks TLS, this side plain TCP (insecure on one side only?)");
	if (tp_frame_decode(hdr, &msg->type, &msg->len) < 0)
		return tp_stream_seterr(st, -EPROTO,
					"garbage on the stream: bad frame magic 0x%08x (not a Ferry peer?)",
					ut_get_le32(hdr));
	st->in_msg = true;
	st->rx_left = msg->len;
	st->stats.rx_msgs++;
	st->stats.rx_bytes += TP_FRAME_LEN;
	return 0;
}

int tp_recv_payload(struct tp_stream *st, const struct iovec *iov,
		    int iovcnt)
{
	struct iovec v[TP_RECV_BATCH];
	uint64_t want = 0;
	int ret = 0, n;

	if (iovcnt < 0 || (iovcnt > 0 && !iov))
		return tp_stream_seterr(st, -EINVAL, "bad iovec");
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	if (!st->in_msg || want > st->rx_left)
		return tp_stream_seterr(st, -EMSGSIZE,
					"asked for %llu payload bytes, %llu left",
					(unsigned long long)want,
					(unsigned long long)st->rx_left);
	/* The wire gets the pieces together: TLS opens a record straight
	 * into every piece it covers. */
	for (int i = 0; i < iovcnt && ret == 0; i += n) {
		n = iovcnt - i < TP_RECV_BATCH ? iovcnt - i : TP_RECV_BATCH;
		memcpy(v, iov + i, n * sizeof(*v));
		ret = read_exactv(st, v, n, true);
	}
	if (ret < 0)
		return ret;
	st->rx_left -= want;
	st->stats.rx_bytes += want;
	return 0;
}

int tp_recv_skip(struct tp_stream *st, uint64_t n)
{
	uint8_t scratch[4096];
	struct iovec v;
	int ret = 0;

	while (n > 0 && ret == 0) {
		v.iov_base = scratch;
		v.iov_len = n < sizeof(scratch) ? n : sizeof(scratch);
		ret = tp_recv_payload(st, &v, 1);
		n -= v.iov_len;
	}
	return ret;
}

uint64_t tp_recv_left(const struct tp_stream *st)
{
	return st->in_msg ? st->rx_left : 0;
}

int tp_recv(struct tp_stream *st, struct tp_msg *msg, void *buf, size_t cap)
{
	struct iovec v;
	int ret;

	ret = tp_recv_hdr(st, msg);
	if (ret < 0)
		return ret;
	if (msg->len > cap)
		return tp_stream_seterr(st, -EMSGSIZE,
					"message of %llu bytes exceeds the %zu-byte buffer",
					(unsigned long long)msg->len, cap);
	v = (struct iovec){ buf, msg->len };
	return tp_recv_payload(st, &v, 1);
}

/* ---- accessors ---- */

const struct ut_err *tp_stream_err(const struct tp_stream *st)
{
	return &st->err;
}

enum tp_stream_kind tp_stream_kind(const struct tp_stream *st)
{
	return st->kind;
}

void tp_stream_get_stats(const struct tp_stream *st,
			 struct tp_stream_stats *out)
{
	*out = st->stats;
}

int tp_stream_fd(const struct tp_stream *st)
{
	return st->fd;
}

bool tp_stream_pending(const struct tp_stream *st)
{
	return st->ops->pending(st);
}

void tp_stream_set_timeout(struct tp_stream *st, int timeout_ms)
{
	st->timeout_ms = timeout_ms;
}

void tp_stream_set_busy_poll(struct tp_stream *st, unsigned int usec)
{
	st->spin_ns = (uint64_t)usec * 1000;
}
