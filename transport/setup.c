// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The session setup messages (HELLO, WELCOME, JOIN): one encoder and one
 * decoder each, pure functions over bytes, so that the parse a stranger
 * reaches before any check of the token or proof is fuzzed on its own
 * (tests/fuzz-join.c). Authentication (the token, the proof) stays in
 * session.c, which owns the TLS objects.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "transport/internal.h"

static const char *kind_word(uint32_t kind)
{
	return kind == TP_STREAM_CONTROL ? "control" :
	       kind == TP_STREAM_BULK ? "bulk" :
	       kind == TP_STREAM_URGENT ? "urgent" : "unknown";
}

void tp_hello_encode(uint8_t out[HELLO_LEN], uint32_t nbulk)
{
	ut_put_le32(out, TP_PROTO_VERSION);
	ut_put_le32(out + 4, nbulk);
}

int tp_hello_decode(const uint8_t *buf, size_t len, uint32_t *nbulk,
		    struct ut_err *why)
{
	uint32_t ver, n;

	if (len != HELLO_LEN)
		return ut_err_set(why, -EPROTO,
				  "a HELLO of %zu bytes, not %d", len,
				  HELLO_LEN);
	ver = ut_get_le32(buf);
	n = ut_get_le32(buf + 4);
	if (ver != TP_PROTO_VERSION || n < 1 || n > TP_MAX_BULK)
		return ut_err_set(why, -EPROTO,
				  "peer speaks version %u with %u bulk streams; we need version %u, 1..%u",
				  ver, n, TP_PROTO_VERSION, TP_MAX_BULK);
	*nbulk = n;
	return 0;
}

void tp_welcome_encode(uint8_t out[WELCOME_LEN], uint32_t nbulk,
		       const uint8_t token[TP_TOKEN_LEN])
{
	ut_put_le32(out, TP_PROTO_VERSION);
	ut_put_le32(out + 4, nbulk);
	memcpy(out + 8, token, TP_TOKEN_LEN);
}

int tp_welcome_decode(const uint8_t *buf, size_t len, uint32_t nbulk,
		      uint8_t token[TP_TOKEN_LEN], struct ut_err *why)
{
	uint32_t ver, n;

	if (len != WELCOME_LEN)
		return ut_err_set(why, -EPROTO,
				  "a WELCOME of %zu bytes, not %d", len,
				  WELCOME_LEN);
	ver = ut_get_le32(buf);
	n = ut_get_le32(buf + 4);
	if (ver != TP_PROTO_VERSION || n != nbulk)
		return ut_err_set(why, -EPROTO,
				  "server refused version %u with %u bulk streams (it answered version %u with %u)",
				  TP_PROTO_VERSION, nbulk, ver, n);
	memcpy(token, buf + 8, TP_TOKEN_LEN);
	return 0;
}

void tp_join_encode(uint8_t out[JOIN_LEN], const struct tp_join_msg *j)
{
	memcpy(out, j->token, TP_TOKEN_LEN);
	ut_put_le32(out + TP_TOKEN_LEN, j->kind);
	ut_put_le32(out + TP_TOKEN_LEN + 4, j->index);
	memcpy(out + TP_TOKEN_LEN + 8, j->proof, TP_PROOF_LEN);
}

int tp_join_decode(const uint8_t *buf, size_t len, uint32_t nbulk,
		   struct tp_join_msg *j, struct ut_err *why)
{
	if (len != JOIN_LEN)
		return ut_err_set(why, -EPROTO, "a JOIN of %zu bytes, not %d",
				  len, JOIN_LEN);
	memcpy(j->token, buf, TP_TOKEN_LEN);
	j->kind = ut_get_le32(buf + TP_TOKEN_LEN);
	j->index = ut_get_le32(buf + TP_TOKEN_LEN + 4);
	memcpy(j->proof, buf + TP_TOKEN_LEN + 8, TP_PROOF_LEN);
	if (j->kind == TP_STREAM_BULK && j->index < nbulk)
		return 0;
	if (j->kind == TP_STREAM_URGENT && j->index == 0)
		return 0;
	if (j->kind == TP_STREAM_BULK)
		return ut_err_set(why, -ERANGE,
				  "a join of bulk stream %u of a session with %u",
				  j->index, nbulk);
	return ut_err_set(why, -ERANGE,
			  "a join of stream kind %u (%s), index %u", j->kind,
			  kind_word(j->kind), j->index);
}
