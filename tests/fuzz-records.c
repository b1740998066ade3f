// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer harness for the TLS record layer's receive side (configure
 * --enable-fuzz with CC=clang): what an authenticated but hostile peer
 * can send after the handshake. A stream keyed with fixed traffic secrets
 * (tp_tls_attach_keys) reads messages from a socket into which the input
 * was written as records sealed with the peer's key (so that they pass
 * the AEAD and reach the parsers behind it) mixed with raw bytes.
 *
 * Input: byte 0 picks the cipher suite, the side (client or server) and
 * how payloads are read (one piece, 4 KiB pieces, skipped); then items
 * [ctl, le16 length, bytes]: ctl bit 7 set: the bytes go raw; clear: they
 * are sealed as one record of inner type ctl & 0x7f (a KeyUpdate sealed
 * this way moves the sealer to its next key, as a real peer does).
 *
 * Built without libFuzzer, the same file is fuzz-records-seeds: it writes
 * a seed corpus (messages, a KeyUpdate, alerts, padding) into the
 * directory given as its argument.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/internal.h"
#include "util/util.h"

#ifdef FUZZING

static const uint16_t suites[] = { 0x1301, 0x1302, 0x1303 };
static const uint8_t secret_a[48] = "the peer's traffic secret (fuzzing only)";
static const uint8_t secret_b[48] = "our own traffic secret (fuzzing only)";
#define MAX_WIRE (128 * 1024)

static size_t secret_len(uint16_t suite)
{
	return suite == 0x1302 ? 48 : 32;
}

static void drop(enum ut_log_level l, const char *m, void *a)
{
}

/* Turns the items of @in into wire bytes in @out; returns their count. */
static size_t build_wire(struct tp_rec_key *peer, const uint8_t *in,
			 size_t len, uint8_t *out)
{
	static const uint8_t ku[4] = { 24, 0, 0, 1 };
	size_t n = 0, k;
	ssize_t r;

	while (len >= 3) {
		uint8_t ctl = in[0];
		struct iovec v;

		k = in[1] | in[2] << 8;
		in += 3, len -= 3;
		k = k < len ? k : len;
		if (k > TP_REC_MAX_PLAIN)
			k = TP_REC_MAX_PLAIN;
		if (n + TP_REC_MAX_SEALED > MAX_WIRE)
			break;
		if (ctl & 0x80) {
			memcpy(out + n, in, k);
			n += k;
		} else {
			v = (struct iovec){ (void *)in, k };
			r = tp_rec_seal(peer, ctl & 0x7f, &v, 1, out + n);
			if (r < 0)
				break;
			n += r;
			if ((ctl & 0x7f) == TP_REC_HANDSHAKE && k == 5 &&
			    !memcmp(in, ku, 4) && tp_rec_key_update(peer) < 0)
				break;
		}
		in += k, len -= k;
	}
	return n;
}

/* Reads messages until the stream ends or fails, the way @shape says. */
static void read_all(struct tp_stream *st, unsigned int shape)
{
	static uint8_t buf[256 * 1024];
	struct iovec iov[64];
	struct tp_msg m;
	int n;

	while (tp_recv_hdr(st, &m) == 0) {
		if (m.len > sizeof(buf) || shape == 2) {
			if (tp_recv_skip(st, m.len) < 0)
				return;
			continue;
		}
		n = 0;
		if (shape == 0 || m.len == 0) {
			iov[n++] = (struct iovec){ buf, m.len };
		} else {
			for (size_t off = 0; off < m.len; off += 4096)
				iov[n++] = (struct iovec){ buf + off,
					m.len - off < 4096 ? m.len - off : 4096 };
		}
		if (tp_recv_payload(st, iov, n) < 0)
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tp_tls *tls[2];
	static uint8_t wire[MAX_WIRE];
	static const uint8_t psk[32] = "0123456789abcdef0123456789abcdef";
	struct tp_config cfg = { .security = TP_SEC_PSK, .psk = psk,
				 .psk_len = sizeof(psk), .timeout_ms = 1000 };
	struct tp_rec_key peer;
	struct tp_stream *st = NULL;
	uint16_t suite;
	bool server;
	int sv[2], big = 1 << 20;
	size_t n;

	ut_log_set_sink(drop, NULL);
	if (size < 1)
		return 0;
	suite = suites[data[0] % 3];
	server = data[0] & 0x4;
	if (!tls[server] && tp_tls_create(&cfg, server, &tls[server], NULL))
		return 0;
	if (tp_rec_key_init(&peer, suite, secret_a, secret_len(suite), true)) {
		tp_rec_key_fini(&peer);
		return 0;
	}
	n = build_wire(&peer, data + 1, size - 1, wire);
	tp_rec_key_fini(&peer);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (write(sv[1], wire, n) != (ssize_t)n ||
	    shutdown(sv[1], SHUT_WR) ||
	    tp_stream_create(sv[0], TP_STREAM_BULK, 0, &cfg, &st)) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	if (tp_tls_attach_keys(st, tls[server], suite, secret_b, secret_a,
			       secret_len(suite)) == 0)
		read_all(st, (data[0] >> 3) % 3);
	tp_stream_destroy(st, true);
	close(sv[1]);
	return 0;
}

#else

#include "tests/fuzz-seed.h"

/* Appends an item to @b at *@n. */
static void item(uint8_t *b, size_t *n, uint8_t ctl, const void *p,
		 size_t len)
{
	b[(*n)++] = ctl;
	b[(*n)++] = len & 0xff;
	b[(*n)++] = len >> 8;
	memcpy(b + *n, p, len);
	*n += len;
}

int main(int argc, char **argv)
{
	static uint8_t b[65536], frame[TP_FRAME_LEN + 5000];
	static const uint8_t ku[] = { 24, 0, 0, 1, 1 }, nst[] = { 4, 0, 0, 0 };
	static const uint8_t warn[] = { 1, 90 }, fatal[] = { 2, 42 };
	static const uint8_t bye[] = { 1, 0 };
	size_t n;
	int err = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-records-seeds DIR\n");
		return 2;
	}
	memset(frame, 0x5a, sizeof(frame));
	tp_frame_encode(frame, 7, 5000);
	for (int s = 0; s < 6; s++) {
		/* A message in two records, a KeyUpdate, the message again. */
		n = 0;
		b[n++] = s | (s & 1) << 3;
		item(b, &n, TP_REC_APPDATA, frame, 100);
		item(b, &n, TP_REC_APPDATA, frame + 100, sizeof(frame) - 100);
		item(b, &n, TP_REC_HANDSHAKE, ku, sizeof(ku));
		item(b, &n, TP_REC_APPDATA, frame, sizeof(frame));
		err |= fuzz_write_seed(argv[1], s, b, n);
	}
	n = 0;
	b[n++] = 0;
	item(b, &n, TP_REC_HANDSHAKE, nst, sizeof(nst));
	item(b, &n, TP_REC_ALERT, warn, sizeof(warn));
	item(b, &n, TP_REC_APPDATA, frame, sizeof(frame));
	item(b, &n, TP_REC_ALERT, bye, sizeof(bye));
	err |= fuzz_write_seed(argv[1], 6, b, n);
	n = 0;
	b[n++] = 4;
	item(b, &n, TP_REC_APPDATA, frame, 20);
	item(b, &n, 0x80, "\x17\x03\x03\x00\x20", 5);
	item(b, &n, TP_REC_ALERT, fatal, sizeof(fatal));
	err |= fuzz_write_seed(argv[1], 7, b, n);
	return err;
}

#endif
