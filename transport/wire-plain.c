// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The plain TCP wire (TP_SEC_INSECURE): no user-space copy on the data
 * path. A frame goes to sendmsg as [staged bytes, header, caller's iovec];
 * a large payload is read straight into its destination. A kernel-TLS
 * variant would use these same operations once keys are installed.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"

#define IOV_BATCH 64

static int plain_send_frame(struct tp_stream *st, const uint8_t *hdr,
			    const struct iovec *iov, int iovcnt,
			    uint64_t len, unsigned int flags)
{
	struct iovec v[IOV_BATCH + 2];
	int n = 0, i = 0, ret;

	if ((flags & TP_MORE) && st->tx_len + TP_FRAME_LEN + len <= st->tx_cap) {
		memcpy(st->txbuf + st->tx_len, hdr, TP_FRAME_LEN);
		st->tx_len += TP_FRAME_LEN;
		for (i = 0; i < iovcnt; i++) {
			memcpy(st->txbuf + st->tx_len, iov[i].iov_base,
			       iov[i].iov_len);
			st->tx_len += iov[i].iov_len;
		}
		return 0;
	}
	if (st->tx_len)
		v[n++] = (struct iovec){ st->txbuf, st->tx_len };
	v[n++] = (struct iovec){ (void *)hdr, TP_FRAME_LEN };
	st->tx_len = 0;
	do {
		while (i < iovcnt && n < IOV_BATCH + 2)
			v[n++] = iov[i++];
		ret = tp_raw_sendv(st, v, n);
		n = 0;
	} while (ret == 0 && i < iovcnt);
	return ret;
}

/* Buffered bytes first; a large rest goes straight from the socket into
 * the pieces (READV), a small one through the staging buffer. */
static int plain_readv(struct tp_stream *st, struct iovec *iov, int iovcnt)
{
	size_t left = 0, n;
	ssize_t ret;

	for (int i = 0; i < iovcnt; i++)
		left += iov[i].iov_len;
	while (left > 0) {
		if (st->rx_off < st->rx_len) {
			n = tp_iov_copy_in(&iov, &iovcnt, st->rxbuf + st->rx_off,
					   st->rx_len - st->rx_off);
			st->rx_off += n;
			left -= n;
			continue;
		}
		if (left >= st->rx_cap / 2)
			return tp_raw_recvv(st, iov, iovcnt);
		ret = tp_raw_fill(st);
		if (ret < 0)
			return ret;
		if (ret == 0)
			return tp_stream_seterr(st, -ESHUTDOWN,
						"peer closed the stream");
	}
	return 0;
}

static int plain_write_raw(struct tp_stream *st, const void *p, size_t len)
{
	return tp_raw_send(st, p, len);
}

static bool plain_pending(const struct tp_stream *st)
{
	return st->rx_off < st->rx_len;
}

static void plain_close(struct tp_stream *st)
{
	tp_raw_flush(st);
}

const struct tp_wire_ops tp_wire_plain = {
	.send_frame = plain_send_frame,
	.readv = plain_readv,
	.write_raw = plain_write_raw,
	.pending = plain_pending,
	.close = plain_close,
};
