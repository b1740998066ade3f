// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer harness for the transport's session setup messages (configure
 * --enable-fuzz with CC=clang): HELLO, WELCOME and JOIN, the bytes any
 * stranger that reaches the listening port (and, for WELCOME, any server
 * the client dials) gets parsed before a token or proof is checked.
 *
 * Input: byte 0 picks the message (bits 0-1: HELLO, WELCOME, JOIN, or a
 * whole frame: a 16-byte frame header and its payload, dispatched on the
 * header's type and length as the session does) and the session's count
 * of bulk streams (bits 2-5, plus one); the rest is the payload.
 *
 * Beyond "no crash", each decode is checked: a refusal is -EPROTO (or, for
 * a JOIN that names no stream, -ERANGE) with a one-line reason; what is
 * accepted lies inside the limits and encodes back to the same bytes; a
 * JOIN of the wrong length leaves its output untouched.
 *
 * Built without libFuzzer, the same file is fuzz-join-seeds: it writes a
 * seed corpus (every message valid, at its limits, and just beyond) into
 * the directory given as its argument.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/internal.h"
#include "util/util.h"

enum { SEL_HELLO, SEL_WELCOME, SEL_JOIN, SEL_FRAME };

#ifdef FUZZING

/* A broken promise of a decoder: libFuzzer reports it as a crash. */
#define ensure(c)                                                        \
	do {                                                             \
		if (!(c)) {                                              \
			fprintf(stderr, "fuzz-join: %s:%d: %s\n",        \
				__FILE__, __LINE__, #c);                 \
			abort();                                         \
		}                                                        \
	} while (0)

static void refused(int ret, int want, const struct ut_err *why)
{
	ensure(ret == want);
	ensure(why->msg[0] && !strchr(why->msg, '\n'));
}

static void hello(const uint8_t *p, size_t n)
{
	uint8_t out[HELLO_LEN];
	struct ut_err why = { "" };
	uint32_t nbulk = UINT32_MAX;
	int ret = tp_hello_decode(p, n, &nbulk, &why);

	if (ret < 0) {
		refused(ret, -EPROTO, &why);
		ensure(nbulk == UINT32_MAX);
		return;
	}
	ensure(n == HELLO_LEN && nbulk >= 1 && nbulk <= TP_MAX_BULK);
	tp_hello_encode(out, nbulk);
	ensure(!memcmp(out, p, n));
}

static void welcome(const uint8_t *p, size_t n, uint32_t nbulk)
{
	uint8_t out[WELCOME_LEN], token[TP_TOKEN_LEN], none[TP_TOKEN_LEN];
	struct ut_err why = { "" };
	int ret;

	memset(token, 0xa5, sizeof(token));
	memcpy(none, token, sizeof(none));
	ret = tp_welcome_decode(p, n, nbulk, token, &why);
	if (ret < 0) {
		refused(ret, -EPROTO, &why);
		ensure(!memcmp(token, none, sizeof(none)));
		return;
	}
	ensure(n == WELCOME_LEN);
	tp_welcome_encode(out, nbulk, token);
	ensure(!memcmp(out, p, n));
}

static void join(const uint8_t *p, size_t n, uint32_t nbulk)
{
	struct tp_join_msg j, none;
	struct ut_err why = { "" };
	uint8_t out[JOIN_LEN];
	int ret;

	memset(&j, 0xa5, sizeof(j));
	memcpy(&none, &j, sizeof(none));
	ret = tp_join_decode(p, n, nbulk, &j, &why);
	if (ret == -EPROTO) {
		refused(ret, -EPROTO, &why);
		ensure(n != JOIN_LEN && !memcmp(&j, &none, sizeof(j)));
		return;
	}
	ensure(n == JOIN_LEN);
	if (ret < 0)
		refused(ret, -ERANGE, &why);
	else
		ensure((j.kind == TP_STREAM_BULK && j.index < nbulk) ||
		       (j.kind == TP_STREAM_URGENT && j.index == 0));
	tp_join_encode(out, &j);
	ensure(!memcmp(out, p, n));
}

/* A frame as a session's setup step reads it: the header, then a payload
 * of exactly the length that message has. */
static void frame(const uint8_t *p, size_t n, uint32_t nbulk)
{
	uint32_t type;
	uint64_t len;

	if (n < TP_FRAME_LEN || tp_frame_decode(p, &type, &len) < 0)
		return;
	if (len != n - TP_FRAME_LEN)
		return;
	p += TP_FRAME_LEN;
	if (type == TP_TYPE_HELLO && len == HELLO_LEN)
		hello(p, len);
	else if (type == TP_TYPE_WELCOME && len == WELCOME_LEN)
		welcome(p, len, nbulk);
	else if (type == TP_TYPE_JOIN && len == JOIN_LEN)
		join(p, len, nbulk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t nbulk;

	if (size < 1)
		return 0;
	nbulk = ((data[0] >> 2) & 0xf) + 1;
	switch (data[0] & 3) {
	case SEL_HELLO:
		hello(data + 1, size - 1);
		break;
	case SEL_WELCOME:
		welcome(data + 1, size - 1, nbulk);
		break;
	case SEL_JOIN:
		join(data + 1, size - 1, nbulk);
		break;
	default:
		frame(data + 1, size - 1, nbulk);
		break;
	}
	return 0;
}

#else

#include "tests/fuzz-seed.h"

/* One seed: the selector for @sel and @nbulk, then @len bytes of @p,
 * framed as @type when @sel is SEL_FRAME. */
static int seed(const char *dir, int *i, int sel, uint32_t nbulk,
		uint32_t type, const uint8_t *p, size_t len)
{
	uint8_t b[1 + TP_FRAME_LEN + JOIN_LEN];
	size_t n = 0;

	b[n++] = sel | (nbulk - 1) << 2;
	if (sel == SEL_FRAME) {
		tp_frame_encode(b + n, type, len);
		n += TP_FRAME_LEN;
	}
	memcpy(b + n, p, len);
	return fuzz_write_seed(dir, (*i)++, b, n + len);
}

int main(int argc, char **argv)
{
	uint8_t b[JOIN_LEN], token[TP_TOKEN_LEN];
	struct tp_join_msg j = { .kind = TP_STREAM_BULK };
	int i = 0, err = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-join-seeds DIR\n");
		return 2;
	}
	for (size_t k = 0; k < TP_TOKEN_LEN; k++)
		token[k] = 0x10 + k;
	memcpy(j.token, token, TP_TOKEN_LEN);
	for (size_t k = 0; k < TP_PROOF_LEN; k++)
		j.proof[k] = 0x80 + k;
	for (int sel = SEL_HELLO; sel <= SEL_FRAME; sel += SEL_FRAME) {
		/* HELLO: 1 and 16 bulk streams, 17, another version. */
		tp_hello_encode(b, 1);
		err |= seed(argv[1], &i, sel, 1, TP_TYPE_HELLO, b, HELLO_LEN);
		tp_hello_encode(b, TP_MAX_BULK);
		err |= seed(argv[1], &i, sel, 1, TP_TYPE_HELLO, b, HELLO_LEN);
		tp_hello_encode(b, TP_MAX_BULK + 1);
		err |= seed(argv[1], &i, sel, 1, TP_TYPE_HELLO, b, HELLO_LEN);
		ut_put_le32(b, 1);
		err |= seed(argv[1], &i, sel, 1, TP_TYPE_HELLO, b, HELLO_LEN);
	}
	for (int sel = SEL_WELCOME; sel <= SEL_FRAME; sel += 2) {
		tp_welcome_encode(b, 4, token);
		err |= seed(argv[1], &i, sel, 4, TP_TYPE_WELCOME, b,
			    WELCOME_LEN);
		err |= seed(argv[1], &i, sel, 3, TP_TYPE_WELCOME, b,
			    WELCOME_LEN);
	}
	for (int sel = SEL_JOIN; sel <= SEL_FRAME; sel++) {
		/* JOIN: the last bulk stream, the urgent one, one beyond. */
		j.kind = TP_STREAM_BULK;
		j.index = 15;
		tp_join_encode(b, &j);
		err |= seed(argv[1], &i, sel, 16, TP_TYPE_JOIN, b, JOIN_LEN);
		err |= seed(argv[1], &i, sel, 15, TP_TYPE_JOIN, b, JOIN_LEN);
		j.kind = TP_STREAM_URGENT;
		j.index = 0;
		tp_join_encode(b, &j);
		err |= seed(argv[1], &i, sel, 2, TP_TYPE_JOIN, b, JOIN_LEN);
		err |= seed(argv[1], &i, sel, 2, TP_TYPE_JOIN, b, JOIN_LEN - 1);
	}
	return err;
}

#endif
