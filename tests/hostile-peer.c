// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * hostile-peer: a peer that authenticates properly (mutual TLS, the
 * project's own transport and wire encoders) and then sends what a broken
 * or malicious one would. With --connect it is a source, against a live
 * ferry-dest; with --listen a destination, against a live ferry-source.
 * One scenario per run, chosen by name; tests/hostile.sh runs them all and
 * checks what the agent does about each.
 *
 *   hostile-peer --connect HOST:PORT --ca F --cert F --key F
 *                --pages N [--timeout MS] [--flood-s S]
 *                [--snapshot FILE] SCENARIO
 *   hostile-peer --listen HOST:PORT --ca F --cert F --key F
 *                [--timeout MS] [--flood-s S] SCENARIO
 *   hostile-peer --list | --list-dest
 *
 * The destination VM's layout is given (--pages: one region of N 4 KiB
 * pages at GPA 0, what ferry-vm -m N*4K builds). Scenarios that need a
 * real guest (its state blob and RAM) take them from a ferry-vm snapshot
 * file of a VM with the same layout. After the scenario the peer reads
 * the control stream until ferry-dest ends the session, sending a
 * KEEPALIVE every 500 ms as a real source does (so that only the stream
 * the scenario stalls can time out), and prints the reason it was given
 * ("dest-error: ...") on stdout.
 *
 * As a destination it prints "listening on port N", accepts one source,
 * plays the scenario (the source's layout is the one its HELLO gives;
 * bulk streams are read and thrown away by one thread each where the
 * scenario lets the migration go on) and then reads the control stream
 * until ferry-source ends the session, printing its ERROR
 * ("source-error: ...").
 *
 * Exit status: 0 the scenario was delivered, 1 it could not be (setup
 * failed, or ferry-dest did not behave as the scenario needs), 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "migrate/wire.h"
#include "transport/internal.h"
#include "transport/transport.h"
#include "util/util.h"

#define PSZ 4096u

struct peer {
	struct tp_session *sess;
	struct tp_stream *ctl, *bulk;
	struct mig_hello hello;
	uint64_t pages;		/* of the one region */
	int flood_s;		/* the flood scenario's length */
	bool welcomed;		/* past HELLO: KEEPALIVEs are in order */
	bool hung_up;		/* the scenario ended the session itself */
	bool listening;		/* --listen: we are the destination */
	uint8_t *buf;		/* BUF_CAP bytes of scratch */
	/* --snapshot: a real guest of the same layout. */
	const char *snap_path;
	void *state;		/* its state blob, state_len bytes */
	size_t state_len;
	const uint8_t *ram;	/* its RAM, pages * PSZ bytes, mapped */
	/* --listen: one thread per bulk stream reading it to the end. */
	struct sink {
		pthread_t thread;
		struct tp_stream *st;
		atomic_bool started;
		atomic_uint_fast64_t msgs; /* messages read */
		uint8_t *buf;		/* BUF_CAP bytes */
		struct peer *p;
	} sinks[TP_MAX_BULK];
	unsigned int nsinks;
	/* What the sinks answer a plain round's end with, where WELCOME
	 * accepted MIG_FEAT_ROUND_ACK: nothing, or a bad answer. */
	enum { ACK_NONE, ACK_NEVER, ACK_WRONG, ACK_JUNK } ack;
};
#define BUF_CAP ((size_t)(MIG_MAX_BATCH + 2) * (PSZ + 8) + 64)

static int send_buf(struct tp_stream *st, uint32_t type, const void *buf,
		    size_t len)
{
	struct iovec iov = { (void *)buf, len };
	int ret = tp_send(st, type, &iov, len ? 1 : 0, 0);

	if (ret)
		fprintf(stderr, "hostile-peer: send 0x%x: %s\n", type,
			tp_stream_err(st)->msg);
	return ret;
}

static void default_hello(struct peer *p, struct mig_hello *h)
{
	*h = (struct mig_hello){
		.ver_min = MIG_WIRE_VERSION, .ver_max = MIG_WIRE_VERSION,
		.features = MIG_FEATURES_V1, .nbulk = 1,
		.total_pages = p->pages,
		.layout = { .nr = 1, .r = { { 0, p->pages * PSZ, PSZ, 0 } } },
	};
}

static int send_hello(struct peer *p, const struct mig_hello *h)
{
	ssize_t n = mig_enc_hello(p->buf, BUF_CAP, h);

	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_HELLO, p->buf, n);
}

/* A valid HELLO and the destination's WELCOME. */
static int handshake(struct peer *p)
{
	struct mig_welcome w;
	struct tp_msg m;
	int ret;

	default_hello(p, &p->hello);
	ret = send_hello(p, &p->hello);
	if (!ret)
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
	if (ret) {
		fprintf(stderr, "hostile-peer: no WELCOME: %s\n",
			tp_stream_err(p->ctl)->msg);
		return ret;
	}
	if (m.type != MIG_MSG_WELCOME ||
	    mig_dec_welcome(p->buf, m.len, &p->hello, &w)) {
		fprintf(stderr, "hostile-peer: the destination refused the "
			"valid HELLO (type 0x%x)\n", m.type);
		return -EPROTO;
	}
	p->welcomed = true;
	return 0;
}

/* PAGES of @count pages at @idx, each filled with its index. */
static int send_pages(struct peer *p, uint32_t region, const uint64_t *idx,
		      uint32_t count)
{
	ssize_t n = mig_enc_pages_hdr(p->buf, BUF_CAP, region, count, idx);

	if (n < 0)
		return n;
	for (uint32_t i = 0; i < count; i++)
		memset(p->buf + n + (size_t)i * PSZ, (int)(idx[i] | 1), PSZ);
	return send_buf(p->bulk, MIG_MSG_PAGES, p->buf,
			n + (size_t)count * PSZ);
}

static int send_round(struct peer *p, uint32_t round, uint32_t flags)
{
	ssize_t n = mig_enc_round(p->buf, BUF_CAP, &(struct mig_round){
		round, flags, 0 });

	return n < 0 ? (int)n : send_buf(p->bulk, MIG_MSG_ROUND, p->buf, n);
}

static int send_zero_bits(struct peer *p, uint64_t first, uint64_t npages)
{
	static uint8_t bits[MIG_MAX_BATCH];
	ssize_t n;

	memset(bits, 0xff, sizeof(bits));
	n = mig_enc_zero(p->buf, BUF_CAP, &(struct mig_zero){
		0, first, npages, bits });
	return n < 0 ? (int)n : send_buf(p->bulk, MIG_MSG_ZERO, p->buf, n);
}

static int send_dups(struct peer *p, const struct mig_dup *d, uint32_t count)
{
	ssize_t n = mig_enc_dup(p->buf, BUF_CAP, d, count);

	return n < 0 ? (int)n : send_buf(p->bulk, MIG_MSG_DUP, p->buf, n);
}

/* ---- the scenarios ---- */

/* A HELLO that asks for placement, WELCOME and the destination's
 * TOPOLOGY; then @heat_chunks chunks of HEAT (the right count is
 * mig_chunks() of the region). */
static int placement_heat(struct peer *p, uint32_t heat_chunks)
{
	static uint8_t heat[4096];
	struct mig_welcome w;
	struct tp_msg m;
	ssize_t n;
	int ret;

	default_hello(p, &p->hello);
	p->hello.features |= MIG_FEAT_PLACEMENT;
	ret = send_hello(p, &p->hello);
	if (!ret)
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
	if (!ret && (m.type != MIG_MSG_WELCOME ||
		     mig_dec_welcome(p->buf, m.len, &p->hello, &w) ||
		     !(w.features & MIG_FEAT_PLACEMENT)))
		ret = -EPROTO;
	if (!ret)
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
	if (ret || m.type != MIG_MSG_TOPOLOGY) {
		fprintf(stderr, "hostile-peer: no WELCOME with TOPOLOGY\n");
		return ret ? ret : -EPROTO;
	}
	p->welcomed = true;
	n = mig_enc_heat(p->buf, BUF_CAP, &(struct mig_heat){ .nr = 1,
		.samples = 1, .nchunks = { heat_chunks }, .heat = { heat } });
	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_HEAT, p->buf, n);
}

/* One chunk fewer than the region has (one more would not fit the
 * destination's buffer, refused as such). */
static int s_heat_chunks(struct peer *p)
{
	return placement_heat(p, (p->pages * PSZ + MIG_CHUNK - 1) / MIG_CHUNK - 1);
}


static int s_hello_truncated(struct peer *p)
{
	ssize_t n;

	default_hello(p, &p->hello);
	n = mig_enc_hello(p->buf, BUF_CAP, &p->hello);
	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_HELLO, p->buf, n - 9);
}

static int s_hello_bad_magic(struct peer *p)
{
	ssize_t n;

	default_hello(p, &p->hello);
	n = mig_enc_hello(p->buf, BUF_CAP, &p->hello);
	p->buf[0] ^= 0xff;
	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_HELLO, p->buf, n);
}

/* The region count past MIG_MAX_REGIONS (offset 20 of the body). */
static int s_hello_regions_over(struct peer *p)
{
	ssize_t n;

	default_hello(p, &p->hello);
	n = mig_enc_hello(p->buf, BUF_CAP, &p->hello);
	p->buf[20] = MIG_MAX_REGIONS + 1;
	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_HELLO, p->buf, n);
}

static int s_hello_total_mismatch(struct peer *p)
{
	default_hello(p, &p->hello);
	p->hello.total_pages++;
	return send_hello(p, &p->hello);
}

static int s_hello_layout_mismatch(struct peer *p)
{
	default_hello(p, &p->hello);
	p->hello.layout.r[0].size += PSZ;
	p->hello.total_pages++;
	return send_hello(p, &p->hello);
}

/* The HELLO promises more bulk streams than the session has. */
static int s_hello_nbulk_mismatch(struct peer *p)
{
	default_hello(p, &p->hello);
	p->hello.nbulk = 2;
	return send_hello(p, &p->hello);
}

static int s_hello_second(struct peer *p)
{
	return handshake(p) ?: send_hello(p, &p->hello);
}

/* KSM pages from a source that never offered MIG_FEAT_KSM_PAGES (and a
 * destination of shared memory, which would not take them). */
static int s_ksm_unagreed(struct peer *p)
{
	uint8_t bits[1] = { 0x0f };
	struct mig_zero z = { .region = 0, .first = 0, .npages = 8,
			      .bits = bits };
	ssize_t n;

	if (handshake(p))
		return -EPROTO;
	n = mig_enc_ksm(p->buf, BUF_CAP, &z);
	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_KSM, p->buf, n);
}

static int s_no_hello(struct peer *p)
{
	return send_round(p, 0, 0) ?:
	       send_buf(p->ctl, MIG_MSG_STATE, "x", 1);
}

static int s_pages_truncated(struct peer *p)
{
	uint64_t idx[2] = { 0, 1 };
	ssize_t n;

	if (handshake(p))
		return -EPROTO;
	n = mig_enc_pages_hdr(p->buf, BUF_CAP, 0, 2, idx);
	memset(p->buf + n, 1, PSZ);
	return send_buf(p->bulk, MIG_MSG_PAGES, p->buf, n + PSZ);
}

static int s_pages_short_header(struct peer *p)
{
	return handshake(p) ?: send_buf(p->bulk, MIG_MSG_PAGES, "\0\0\0\0", 4);
}

/* A PAGES header whose count field is @count, and a body that fits it. */
static int pages_count(struct peer *p, uint32_t count)
{
	uint64_t idx = 0;

	if (handshake(p) || mig_enc_pages_hdr(p->buf, BUF_CAP, 0, 1, &idx) < 0)
		return -EPROTO;
	p->buf[4] = count, p->buf[5] = count >> 8;
	p->buf[6] = count >> 16, p->buf[7] = count >> 24;
	memset(p->buf + 8, 0, (size_t)count * 8 + PSZ * (size_t)count);
	return send_buf(p->bulk, MIG_MSG_PAGES, p->buf,
			8 + (size_t)count * (8 + PSZ));
}

static int s_pages_count_zero(struct peer *p)
{
	return pages_count(p, 0);
}

static int s_pages_count_over(struct peer *p)
{
	return pages_count(p, MIG_MAX_BATCH + 1);
}

/* Index list of @count pages from 0, the last one replaced by @last. */
static int pages_with_last(struct peer *p, uint32_t region, uint32_t count,
			   uint64_t last)
{
	static uint64_t idx[MIG_MAX_BATCH];

	for (uint32_t i = 0; i < count; i++)
		idx[i] = i;
	idx[count - 1] = last;
	return send_pages(p, region, idx, count);
}

/* A full batch at the limit is accepted: the index error after it is the
 * one reported. */
static int s_pages_count_max(struct peer *p)
{
	return handshake(p) ?:
	       pages_with_last(p, 0, MIG_MAX_BATCH, MIG_MAX_BATCH - 1) ?:
	       pages_with_last(p, 0, 1, p->pages);
}

static int s_pages_index_out(struct peer *p)
{
	return handshake(p) ?: pages_with_last(p, 0, 4, p->pages);
}

static int s_pages_index_huge(struct peer *p)
{
	return handshake(p) ?: pages_with_last(p, 0, 1, UINT64_MAX);
}

static int s_pages_region_out(struct peer *p)
{
	return handshake(p) ?: pages_with_last(p, 1, 1, 0);
}

static int s_zero_truncated(struct peer *p)
{
	return handshake(p) ?:
	       send_buf(p->bulk, MIG_MSG_ZERO, "\0\0\0\0\0\0\0\0\0\0", 10);
}

static int s_zero_range_out(struct peer *p)
{
	return handshake(p) ?: send_zero_bits(p, p->pages - 4, 8);
}

/* first + npages wraps around 2^64. */
static int s_zero_wrap(struct peer *p)
{
	uint8_t *b = p->buf;

	if (handshake(p))
		return -EPROTO;
	memset(b, 0, 24 + 8);
	b[8] = 8;				/* first = 8 */
	memset(b + 16, 0xff, 8);		/* npages = 2^64 - 1 */
	b[15] = 0;
	b[16] = 0xf8;				/* first + npages = 2^64 */
	return send_buf(p->bulk, MIG_MSG_ZERO, b, 24 + 8);
}

/* A ZERO longer than any valid one (ferry-dest reads them whole). */
static int s_zero_oversized(struct peer *p)
{
	memset(p->buf, 0, 1 << 20);
	return handshake(p) ?: send_buf(p->bulk, MIG_MSG_ZERO, p->buf, 1 << 20);
}

static int s_dup_truncated(struct peer *p)
{
	struct mig_dup d = { 0, 0, 1, 0 };
	ssize_t n;

	if (handshake(p) || pages_with_last(p, 0, 1, 0))
		return -EPROTO;
	n = mig_enc_dup(p->buf, BUF_CAP, &d, 1);
	return n < 0 ? (int)n : send_buf(p->bulk, MIG_MSG_DUP, p->buf, n - 1);
}

static int s_dup_count_over(struct peer *p)
{
	uint8_t *b = p->buf;
	size_t n = MIG_DUP_FIXED + (size_t)MIG_DUP_ENTRY * (MIG_MAX_DUPS + 1);

	if (handshake(p))
		return -EPROTO;
	memset(b, 0, n);
	b[0] = (MIG_MAX_DUPS + 1) & 0xff, b[1] = (MIG_MAX_DUPS + 1) >> 8;
	return send_buf(p->bulk, MIG_MSG_DUP, b, n);
}

static int s_dup_index_out(struct peer *p)
{
	struct mig_dup d = { 0, 0, p->pages, 0 };

	return handshake(p) ?: pages_with_last(p, 0, 1, 0) ?: send_dups(p, &d, 1);
}

/* Page 1 is a copy of page 2, which was never sent. */
static int s_dup_never_sent(struct peer *p)
{
	struct mig_dup d = { 0, 0, 1, 2 };

	return handshake(p) ?: pages_with_last(p, 0, 1, 0) ?: send_dups(p, &d, 1);
}

/* MIG_MAX_DUPS references of a sent page are accepted; then a bad one. */
static int s_dup_count_max(struct peer *p)
{
	static struct mig_dup d[MIG_MAX_DUPS];
	struct mig_dup bad = { 0, 0, p->pages, 0 };

	for (uint32_t i = 0; i < MIG_MAX_DUPS; i++)
		d[i] = (struct mig_dup){ 0, 0, 1 + i % (p->pages - 1), 0 };
	return handshake(p) ?: pages_with_last(p, 0, 1, 0) ?:
	       send_dups(p, d, MIG_MAX_DUPS) ?: send_dups(p, &bad, 1);
}

static int s_round_truncated(struct peer *p)
{
	return handshake(p) ?: send_buf(p->bulk, MIG_MSG_ROUND, "\0\0\0", 3);
}

static int s_round_bad_flags(struct peer *p)
{
	return handshake(p) ?: send_round(p, 0, 0x80);
}

static int s_req_on_bulk(struct peer *p)
{
	struct mig_req q = { 0, 0, 0 };
	ssize_t n;

	if (handshake(p))
		return -EPROTO;
	n = mig_enc_req(p->buf, BUF_CAP, &q, 1);
	return send_buf(p->bulk, MIG_MSG_PAGE_REQ, p->buf, n);
}

static int s_state_empty(struct peer *p)
{
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_STATE, NULL, 0);
}

/* A STATE frame past MIG_MAX_STATE: only its header is ever read. */
static int s_state_over_max(struct peer *p)
{
	uint8_t hdr[TP_FRAME_LEN];

	if (handshake(p))
		return -EPROTO;
	tp_frame_encode(hdr, MIG_MSG_STATE, (uint64_t)MIG_MAX_STATE + 1);
	return tp_stream_write_raw(p->ctl, hdr, sizeof(hdr), true);
}

/* The state before any page or round; then the bulk stream ends the
 * final round at once, as if the guest's RAM were all sent. */
static int s_state_before_round(struct peer *p)
{
	memset(p->buf, 0x5a, 4096);
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_STATE, p->buf, 4096) ?:
	       send_round(p, 0, MIG_ROUND_FINAL);
}

static int s_postcopy_in_precopy(struct peer *p)
{
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_POSTCOPY, NULL, 0);
}

static int s_discard_in_precopy(struct peer *p)
{
	static uint8_t bits[1] = { 1 };
	ssize_t n;

	if (handshake(p))
		return -EPROTO;
	n = mig_enc_zero(p->buf, BUF_CAP, &(struct mig_zero){ 0, 0, 1, bits });
	return send_buf(p->ctl, MIG_MSG_DISCARD, p->buf, n);
}

static int s_done_in_precopy(struct peer *p)
{
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_DONE, NULL, 0);
}

static int s_keepalive_body(struct peer *p)
{
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_KEEPALIVE, "x", 1);
}

static int s_error_malformed(struct peer *p)
{
	memset(p->buf, 'A', 600);
	return handshake(p) ?: send_buf(p->ctl, MIG_MSG_ERROR, p->buf, 600);
}

static int s_unknown_type(struct peer *p)
{
	return handshake(p) ?: send_buf(p->bulk, 0x1234, "x", 1);
}

/* Valid-looking rounds for flood_s seconds, never final, then the peer
 * goes away: ferry-dest must neither grow nor resume anything. */
static int s_flood(struct peer *p)
{
	static uint64_t idx[MIG_MAX_BATCH];
	time_t end = time(NULL) + p->flood_s;
	uint32_t round = 0, batch = p->pages < 256 ? p->pages : 256;
	int ret = handshake(p);

	while (!ret && time(NULL) < end) {
		for (uint64_t at = 0; !ret && at + batch <= p->pages;
		     at += batch) {
			for (uint32_t i = 0; i < batch; i++)
				idx[i] = at + i;
			ret = send_pages(p, 0, idx, batch);
		}
		if (!ret)
			ret = send_zero_bits(p, 0, 8) ?: send_round(p, round++, 0);
		if (!ret)
			ret = send_buf(p->ctl, MIG_MSG_KEEPALIVE, NULL, 0);
	}
	printf("flood: %u rounds sent\n", round);
	/* Then the source is gone, mid-precopy. */
	tp_session_destroy(p->sess);
	p->sess = NULL;
	p->hung_up = true;
	return ret;
}

/* Half a PAGES frame, then silence. */
static int s_stall_bulk(struct peer *p)
{
	uint64_t idx = 0;
	ssize_t n;

	if (handshake(p))
		return -EPROTO;
	n = mig_enc_pages_hdr(p->buf + TP_FRAME_LEN, BUF_CAP, 0, 1, &idx);
	tp_frame_encode(p->buf, MIG_MSG_PAGES, n + PSZ);
	return tp_stream_write_raw(p->bulk, p->buf, TP_FRAME_LEN + n + PSZ / 2,
				   true);
}

/* Half a frame header on the control stream, then silence. */
static int s_stall_control(struct peer *p)
{
	if (handshake(p))
		return -EPROTO;
	tp_frame_encode(p->buf, MIG_MSG_STATE, 4096);
	p->welcomed = false; /* a KEEPALIVE now would complete the frame */
	return tp_stream_write_raw(p->ctl, p->buf, TP_FRAME_LEN / 2, true);
}

/* A valid HELLO, then only KEEPALIVEs on the control stream. */
static int s_silent_after_welcome(struct peer *p)
{
	return handshake(p);
}

/* Authenticated, then nothing at all. */
static int s_silent(struct peer *p)
{
	(void)p;
	return 0;
}

/* Reads the state blob and maps the RAM of the --snapshot file (the
 * layout of tools/ferry-vm/snapshot.c). */
static int load_snapshot(struct peer *p)
{
	uint64_t h[8];
	int fd, ret = -EINVAL;

	if (!p->snap_path) {
		fprintf(stderr, "hostile-peer: this scenario needs --snapshot\n");
		return -EINVAL;
	}
	fd = open(p->snap_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, h, sizeof(h), 0) != sizeof(h) ||
	    h[0] != 0x504e535952524546ull || h[2] != p->pages * PSZ ||
	    h[3] != PSZ || !h[5] || h[5] > MIG_MAX_STATE)
		goto close_fd;
	p->state_len = h[5];
	p->state = malloc(p->state_len);
	if (!p->state ||
	    pread(fd, p->state, p->state_len, h[4]) != (ssize_t)p->state_len)
		goto close_fd;
	p->ram = mmap(NULL, h[2], PROT_READ, MAP_PRIVATE, fd, h[6]);
	ret = p->ram == MAP_FAILED ? -errno : 0;
	if (ret)
		p->ram = NULL;
close_fd:
	close(fd);
	if (ret)
		fprintf(stderr, "hostile-peer: %s is not a snapshot of this "
			"layout\n", p->snap_path);
	return ret;
}

static bool page_is_zero(const uint8_t *pg)
{
	for (size_t i = 0; i < PSZ; i++)
		if (pg[i])
			return false;
	return true;
}

/* Round 0 of the snapshot's RAM: PAGES for data, one ZERO bitmap per
 * batch for the rest, then the final ROUND. @skip: one page not sent. */
static int send_ram(struct peer *p, uint64_t skip)
{
	static uint64_t idx[MIG_MAX_BATCH];
	static uint8_t zbits[MIG_MAX_BATCH / 8];
	int ret = 0;

	for (uint64_t at = 0; !ret && at < p->pages; at += MIG_MAX_BATCH) {
		uint32_t n = 0, nz = 0, count = p->pages - at < MIG_MAX_BATCH ?
					p->pages - at : MIG_MAX_BATCH;
		struct iovec iov[1 + MIG_MAX_BATCH];
		ssize_t len;

		memset(zbits, 0, sizeof(zbits));
		for (uint32_t i = 0; i < count; i++) {
			const uint8_t *pg = p->ram + (at + i) * PSZ;

			if (at + i == skip)
				continue;
			if (page_is_zero(pg)) {
				zbits[i / 8] |= 1u << (i % 8);
				nz++;
				continue;
			}
			idx[n] = at + i;
			iov[1 + n++] = (struct iovec){ (void *)pg, PSZ };
		}
		if (n) {
			len = mig_enc_pages_hdr(p->buf, BUF_CAP, 0, n, idx);
			iov[0] = (struct iovec){ p->buf, len };
			ret = tp_send(p->bulk, MIG_MSG_PAGES, iov, 1 + n, 0);
		}
		if (!ret && nz) {
			len = mig_enc_zero(p->buf, BUF_CAP, &(struct mig_zero){
				0, at, count, zbits });
			ret = send_buf(p->bulk, MIG_MSG_ZERO, p->buf, len);
		}
	}
	return ret ?: send_round(p, 0, MIG_ROUND_FINAL);
}

/* A correct precopy of the snapshot: proves the peer itself (ferry-dest
 * must succeed and the guest verify its memory). */
static int s_valid(struct peer *p)
{
	struct tp_msg m;
	int ret = load_snapshot(p) ?: handshake(p) ?: send_ram(p, UINT64_MAX) ?:
		  send_buf(p->ctl, MIG_MSG_STATE, p->state, p->state_len);

	if (!ret)
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
	if (!ret && m.type != MIG_MSG_RESUMED)
		ret = -EPROTO;
	return ret ?: send_buf(p->ctl, MIG_MSG_DONE, NULL, 0);
}

/* A correct precopy, then junk pages on the bulk stream after its final
 * round, after RESUMED and after DONE: none may land in the guest. */
static int s_pages_after_final(struct peer *p)
{
	struct tp_msg m;
	int ret = load_snapshot(p) ?: handshake(p) ?: send_ram(p, UINT64_MAX) ?:
		  pages_with_last(p, 0, 4, 3) ?:
		  send_buf(p->ctl, MIG_MSG_STATE, p->state, p->state_len);

	if (!ret)
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
	if (!ret && m.type != MIG_MSG_RESUMED)
		ret = -EPROTO;
	return ret ?: pages_with_last(p, 0, 4, 3) ?:
	       send_buf(p->ctl, MIG_MSG_DONE, NULL, 0) ?:
	       pages_with_last(p, 0, 4, 3);
}

/* The real state and a final round, but no page at all: resuming would
 * run the guest on all-zero RAM. */
static int s_state_no_pages(struct peer *p)
{
	return load_snapshot(p) ?: handshake(p) ?:
	       send_round(p, 0, MIG_ROUND_FINAL) ?:
	       send_buf(p->ctl, MIG_MSG_STATE, p->state, p->state_len);
}

/* All of RAM but one page that holds data. */
static int s_state_page_missing(struct peer *p)
{
	uint64_t g = p->pages / 2;

	if (load_snapshot(p))
		return -EINVAL;
	while (g < p->pages && page_is_zero(p->ram + g * PSZ))
		g++;
	return handshake(p) ?: send_ram(p, g) ?:
	       send_buf(p->ctl, MIG_MSG_STATE, p->state, p->state_len);
}

/* After the final round of pages, one page in the final round is a DUP
 * of a page that was never sent. */
static int s_dup_never_sent_state(struct peer *p)
{
	struct mig_dup d = { 0, 0, 0, 0 };
	uint64_t g = p->pages / 2;

	if (load_snapshot(p))
		return -EINVAL;
	while (g < p->pages && page_is_zero(p->ram + g * PSZ))
		g++;
	d.page = g, d.src_page = g + 1;
	return handshake(p) ?: send_dups(p, &d, 1) ?: send_ram(p, g) ?:
	       send_buf(p->ctl, MIG_MSG_STATE, p->state, p->state_len);
}

static const struct scenario {
	const char *name;
	int (*run)(struct peer *p);
} scenarios[] = {
	{ "no_hello", s_no_hello },
	{ "hello_truncated", s_hello_truncated },
	{ "hello_bad_magic", s_hello_bad_magic },
	{ "hello_regions_over", s_hello_regions_over },
	{ "hello_total_mismatch", s_hello_total_mismatch },
	{ "hello_layout_mismatch", s_hello_layout_mismatch },
	{ "hello_nbulk_mismatch", s_hello_nbulk_mismatch },
	{ "hello_second", s_hello_second },
	{ "heat_chunks", s_heat_chunks },
	{ "ksm_unagreed", s_ksm_unagreed },
	{ "pages_truncated", s_pages_truncated },
	{ "pages_short_header", s_pages_short_header },
	{ "pages_count_zero", s_pages_count_zero },
	{ "pages_count_over", s_pages_count_over },
	{ "pages_count_max", s_pages_count_max },
	{ "pages_index_out", s_pages_index_out },
	{ "pages_index_huge", s_pages_index_huge },
	{ "pages_region_out", s_pages_region_out },
	{ "zero_truncated", s_zero_truncated },
	{ "zero_range_out", s_zero_range_out },
	{ "zero_wrap", s_zero_wrap },
	{ "zero_oversized", s_zero_oversized },
	{ "dup_truncated", s_dup_truncated },
	{ "dup_count_over", s_dup_count_over },
	{ "dup_count_max", s_dup_count_max },
	{ "dup_index_out", s_dup_index_out },
	{ "dup_never_sent", s_dup_never_sent },
	{ "round_truncated", s_round_truncated },
	{ "round_bad_flags", s_round_bad_flags },
	{ "req_on_bulk", s_req_on_bulk },
	{ "unknown_type", s_unknown_type },
	{ "state_empty", s_state_empty },
	{ "state_over_max", s_state_over_max },
	{ "state_before_round", s_state_before_round },
	{ "postcopy_in_precopy", s_postcopy_in_precopy },
	{ "discard_in_precopy", s_discard_in_precopy },
	{ "done_in_precopy", s_done_in_precopy },
	{ "pages_after_final", s_pages_after_final },
	{ "keepalive_body", s_keepalive_body },
	{ "error_malformed", s_error_malformed },
	{ "flood", s_flood },
	{ "stall_bulk", s_stall_bulk },
	{ "stall_control", s_stall_control },
	{ "silent", s_silent },
	{ "silent_after_welcome", s_silent_after_welcome },
	{ "valid", s_valid },
	{ "state_no_pages", s_state_no_pages },
	{ "state_page_missing", s_state_page_missing },
	{ "dup_never_sent_state", s_dup_never_sent_state },
};


/* ---- a hostile destination (--listen) ---- */

/* Reads every message of a bulk stream and throws it away, until the
 * stream ends. */
/* A plain round's end, answered as the scenario says: the round seven
 * on, or a PAGES header where a ROUND is due. */
static int sink_ack(struct sink *k, const struct tp_msg *m)
{
	struct mig_round rd;
	uint8_t buf[64];
	ssize_t n;

	if (m->len > sizeof(buf) || tp_recv_payload(k->st, &(struct iovec){
			buf, m->len }, 1) || mig_dec_round(buf, m->len, &rd))
		return -EPROTO;
	if (!mig_round_acked(rd.flags) || k->p->ack == ACK_NEVER)
		return 0;
	if (k->p->ack == ACK_JUNK)
		return tp_send(k->st, MIG_MSG_PAGES, &(struct iovec){ buf, 8 },
			       1, 0);
	rd.round += 7;
	n = mig_enc_round(buf, sizeof(buf), &rd);
	return n < 0 ? (int)n : tp_send(k->st, MIG_MSG_ROUND,
					&(struct iovec){ buf, n }, 1, 0);
}

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	struct tp_msg m;

	while (!tp_recv_hdr(k->st, &m)) {
		if (k->p->ack != ACK_NONE && m.type == MIG_MSG_ROUND) {
			if (sink_ack(k, &m))
				break;
		} else if (tp_recv_skip(k->st, m.len)) {
			break;
		}
		atomic_fetch_add(&k->msgs, 1);
	}
	return NULL;
}

static int start_sinks(struct peer *p)
{
	p->nsinks = tp_session_nbulk(p->sess);
	for (unsigned int i = 0; i < p->nsinks; i++) {
		struct sink *k = &p->sinks[i];

		k->st = tp_session_bulk(p->sess, i);
		k->p = p;
		if (pthread_create(&k->thread, NULL, sink_main, k))
			return -EAGAIN;
		atomic_store(&k->started, true);
	}
	return 0;
}

/* The source's HELLO: its layout becomes the peer's. */
static int d_read_hello(struct peer *p)
{
	struct tp_msg m;
	int ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);

	if (ret || m.type != MIG_MSG_HELLO ||
	    mig_dec_hello(p->buf, m.len, &p->hello)) {
		fprintf(stderr, "hostile-peer: no valid HELLO from the source "
			"(%s)\n", ret ? tp_stream_err(p->ctl)->msg :
			mig_wire_reason());
		return -EINVAL;
	}
	p->pages = p->hello.total_pages;
	return 0;
}

/* A destination without placement: MIG_FEAT_PLACEMENT accepted would
 * owe the source a TOPOLOGY before anything the scenarios test; round
 * acknowledgments only where a scenario answers them (p->ack). */
static int d_send_welcome(struct peer *p)
{
	ssize_t n = mig_enc_welcome(p->buf, BUF_CAP, &(struct mig_welcome){
		.version = MIG_WIRE_VERSION,
		.features = p->hello.features &
			    ~(MIG_FEAT_PLACEMENT | MIG_FEAT_PAGESIZES |
			      (p->ack == ACK_NONE ? MIG_FEAT_ROUND_ACK : 0)) });

	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_WELCOME, p->buf, n);
}

/* HELLO, a valid WELCOME, and the bulk streams drained from then on. */
static int d_welcome(struct peer *p)
{
	return d_read_hello(p) ?: d_send_welcome(p) ?: start_sinks(p);
}

/* Reads the control stream until a message of @type (KEEPALIVE, POSTCOPY
 * and DISCARD are what a source sends in between). */
static int d_wait(struct peer *p, uint32_t type)
{
	struct tp_msg m;
	int ret;

	for (;;) {
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
		if (ret == -EMSGSIZE)
			ret = tp_recv_skip(p->ctl, tp_recv_left(p->ctl));
		if (ret) {
			fprintf(stderr, "hostile-peer: waiting for 0x%x: %s\n",
				type, tp_stream_err(p->ctl)->msg);
			return -EINVAL;
		}
		if (m.type == type)
			return 0;
		if (m.type != MIG_MSG_KEEPALIVE && m.type != MIG_MSG_POSTCOPY &&
		    m.type != MIG_MSG_DISCARD) {
			fprintf(stderr, "hostile-peer: the source sent 0x%x "
				"while we waited for 0x%x\n", m.type, type);
			return -EINVAL;
		}
	}
}

static int d_send_resumed(struct peer *p)
{
	ssize_t n = mig_enc_resumed(p->buf, BUF_CAP, &(struct mig_resumed){
		1000000, (uint64_t)time(NULL) * 1000000000ull, 1000000 });

	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_RESUMED, p->buf, n);
}

static int d_send_complete(struct peer *p)
{
	ssize_t n = mig_enc_complete(p->buf, BUF_CAP,
				     &(struct mig_complete){ 0 });

	return n < 0 ? (int)n : send_buf(p->ctl, MIG_MSG_COMPLETE, p->buf, n);
}

/* Through the switchover to the guest's state, and RESUMED: from here
 * on, in postcopy, the source serves page requests. */
static int d_resumed(struct peer *p)
{
	return d_welcome(p) ?: d_wait(p, MIG_MSG_STATE) ?: d_send_resumed(p);
}

/* A PAGE_REQ body of one request, as the encoder would write it for a
 * valid one, then @region and @idx put in raw. */
static size_t d_req(struct peer *p, uint32_t region, uint64_t idx)
{
	struct mig_req q = { 0, 0, 0 };
	ssize_t n = mig_enc_req(p->buf, BUF_CAP, &q, 1);

	for (int i = 0; i < 4; i++)
		p->buf[MIG_REQ_FIXED + i] = region >> (8 * i);
	for (int i = 0; i < 8; i++)
		p->buf[MIG_REQ_FIXED + 8 + i] = idx >> (8 * i);
	return n;
}

static int d_send_req(struct peer *p, uint32_t region, uint64_t idx)
{
	size_t n = d_req(p, region, idx);

	return send_buf(tp_session_urgent(p->sess), MIG_MSG_PAGE_REQ, p->buf,
			n);
}

/* The reply to a valid page request: the page on the urgent stream. */
static int d_read_page(struct peer *p)
{
	struct tp_stream *urg = tp_session_urgent(p->sess);
	struct tp_msg m;
	int ret = tp_recv(urg, &m, p->buf, BUF_CAP);

	if (ret || m.type != MIG_MSG_PAGES) {
		fprintf(stderr, "hostile-peer: no page for our request (%s)\n",
			ret ? tp_stream_err(urg)->msg : "another message");
		return -EINVAL;
	}
	return 0;
}

static int ds_welcome_junk(struct peer *p)
{
	return d_read_hello(p) ?: send_buf(p->ctl, 0x1234, "junk", 4);
}

static int ds_welcome_truncated(struct peer *p)
{
	ssize_t n;

	if (d_read_hello(p))
		return -EINVAL;
	n = mig_enc_welcome(p->buf, BUF_CAP, &(struct mig_welcome){
		.version = MIG_WIRE_VERSION,
		.features = p->hello.features & ~MIG_FEAT_PAGESIZES });
	return send_buf(p->ctl, MIG_MSG_WELCOME, p->buf, n - 3);
}

/* A WELCOME that accepts a feature the source never offered. */
static int ds_welcome_features(struct peer *p)
{
	ssize_t n;

	if (d_read_hello(p))
		return -EINVAL;
	n = mig_enc_welcome(p->buf, BUF_CAP, &(struct mig_welcome){
		.version = MIG_WIRE_VERSION,
		.features = (p->hello.features & ~MIG_FEAT_PAGESIZES) |
			    (1ull << 40) });
	return send_buf(p->ctl, MIG_MSG_WELCOME, p->buf, n);
}

/* A WELCOME frame longer than any valid one. */
static int ds_welcome_oversized(struct peer *p)
{
	memset(p->buf, 0, 1 << 20);
	return d_read_hello(p) ?:
	       send_buf(p->ctl, MIG_MSG_WELCOME, p->buf, 1 << 20);
}

static int ds_error_malformed(struct peer *p)
{
	memset(p->buf, 'A', 600);
	return d_read_hello(p) ?: send_buf(p->ctl, MIG_MSG_ERROR, p->buf, 600);
}

/* The HELLO read, then nothing: no WELCOME. */
static int ds_stall_hello(struct peer *p)
{
	return d_read_hello(p);
}

/* Half a WELCOME frame header, then silence. */
static int ds_stall_welcome_frame(struct peer *p)
{
	if (d_read_hello(p))
		return -EINVAL;
	tp_frame_encode(p->buf, MIG_MSG_WELCOME, 10);
	return tp_stream_write_raw(p->ctl, p->buf, TP_FRAME_LEN / 2, true);
}

/* Half a WELCOME frame, then the connection closes. */
static int ds_welcome_cut(struct peer *p)
{
	int ret;

	if (d_read_hello(p))
		return -EINVAL;
	tp_frame_encode(p->buf, MIG_MSG_WELCOME, 10);
	ret = tp_stream_write_raw(p->ctl, p->buf, TP_FRAME_LEN + 3, true);
	tp_session_destroy(p->sess);
	p->sess = NULL;
	p->hung_up = true;
	return ret;
}

/* A valid WELCOME, then the bulk streams are never read. */
static int ds_stall_bulk(struct peer *p)
{
	return d_read_hello(p) ?: d_send_welcome(p);
}

/* Control messages the destination never sends mid-round. */
static int ds_resumed_in_precopy(struct peer *p)
{
	return d_welcome(p) ?: d_send_resumed(p);
}

static int ds_complete_in_precopy(struct peer *p)
{
	return d_welcome(p) ?: d_send_complete(p);
}

static int ds_welcome_second(struct peer *p)
{
	return d_welcome(p) ?: d_send_welcome(p);
}

static int ds_req_on_control(struct peer *p)
{
	size_t n;

	if (d_welcome(p))
		return -EINVAL;
	n = d_req(p, 0, 0);
	return send_buf(p->ctl, MIG_MSG_PAGE_REQ, p->buf, n);
}

/* KEEPALIVEs on the control stream as fast as they go, for flood_s
 * seconds, while the bulk streams are drained: the source must neither
 * grow nor take them for an answer. */
static int ds_flood(struct peer *p)
{
	time_t end = time(NULL) + p->flood_s;
	uint64_t sent = 0;
	int ret = d_welcome(p);

	while (!ret && time(NULL) < end && ++sent)
		ret = send_buf(p->ctl, MIG_MSG_KEEPALIVE, NULL, 0);
	printf("flood: %llu keepalives sent\n", (unsigned long long)sent);
	return ret;
}

/* The state arrives; no RESUMED ever follows. */
static int ds_stall_switchover(struct peer *p)
{
	return d_welcome(p) ?: d_wait(p, MIG_MSG_STATE);
}

static int ds_resumed_malformed(struct peer *p)
{
	return d_welcome(p) ?: d_wait(p, MIG_MSG_STATE) ?:
	       send_buf(p->ctl, MIG_MSG_RESUMED, "\1\2\3", 3);
}

/* Postcopy: requests the source must refuse, after RESUMED. */
static int ds_pc_req_index_out(struct peer *p)
{
	return d_resumed(p) ?: d_send_req(p, 0, p->pages);
}

static int ds_pc_req_index_huge(struct peer *p)
{
	return d_resumed(p) ?: d_send_req(p, 0, UINT64_MAX);
}

static int ds_pc_req_region_out(struct peer *p)
{
	return d_resumed(p) ?: d_send_req(p, p->hello.layout.nr, 0);
}

static int ds_pc_req_truncated(struct peer *p)
{
	size_t n;

	if (d_resumed(p))
		return -EINVAL;
	n = d_req(p, 0, 1);
	return send_buf(tp_session_urgent(p->sess), MIG_MSG_PAGE_REQ, p->buf,
			n - 5);
}

/* A valid request answered, then one with a count past MIG_MAX_REQS. */
static int ds_pc_req_count_over(struct peer *p)
{
	size_t n = MIG_REQ_FIXED + (size_t)MIG_REQ_ENTRY * (MIG_MAX_REQS + 1);

	if (d_resumed(p) || d_send_req(p, 0, 1) || d_read_page(p))
		return -EINVAL;
	memset(p->buf, 0, n);
	p->buf[0] = MIG_MAX_REQS + 1;
	return send_buf(tp_session_urgent(p->sess), MIG_MSG_PAGE_REQ, p->buf,
			n);
}

static int ds_pc_junk_urgent(struct peer *p)
{
	return d_resumed(p) ?:
	       send_buf(tp_session_urgent(p->sess), 0x1234, "junk", 4);
}

static int ds_pc_complete_malformed(struct peer *p)
{
	return d_resumed(p) ?: send_buf(p->ctl, MIG_MSG_COMPLETE, "\1", 1);
}

/* RESUMED, then silence on the control stream: no COMPLETE. */
static int ds_pc_stall(struct peer *p)
{
	return d_resumed(p);
}

/* A correct postcopy end (COMPLETE after the source's last round), then
 * page requests after it: the source has released its VM and must not
 * care. */
static int ds_pc_req_after_complete(struct peer *p)
{
	return d_resumed(p) ?: d_send_req(p, 0, 1) ?: d_read_page(p) ?:
	       d_send_complete(p) ?: d_wait(p, MIG_MSG_DONE) ?:
	       d_send_req(p, 0, 2) ?: d_send_req(p, 0, p->pages);
}

/* A destination that plays along: it takes the pages, says RESUMED when
 * the state arrives and waits for DONE (a precopy that ends well): the
 * peer of tests that break something else, such as the source's VMM. */
static int ds_accept(struct peer *p)
{
	return d_resumed(p) ?: d_wait(p, MIG_MSG_DONE);
}

/* MIG_FEAT_ROUND_ACK accepted, then a round's end answered wrongly, or
 * not at all: the source must fail before its switchover, its VM
 * running. */
static int ds_ack_never(struct peer *p)
{
	p->ack = ACK_NEVER;
	return d_welcome(p);
}

static int ds_ack_wrong(struct peer *p)
{
	p->ack = ACK_WRONG;
	return d_welcome(p);
}

static int ds_ack_junk(struct peer *p)
{
	p->ack = ACK_JUNK;
	return d_welcome(p);
}

static const struct scenario dest_scenarios[] = {
	{ "accept", ds_accept },
	{ "welcome_junk", ds_welcome_junk },
	{ "welcome_truncated", ds_welcome_truncated },
	{ "welcome_features", ds_welcome_features },
	{ "welcome_oversized", ds_welcome_oversized },
	{ "welcome_cut", ds_welcome_cut },
	{ "error_malformed", ds_error_malformed },
	{ "stall_hello", ds_stall_hello },
	{ "stall_welcome_frame", ds_stall_welcome_frame },
	{ "stall_bulk", ds_stall_bulk },
	{ "resumed_in_precopy", ds_resumed_in_precopy },
	{ "complete_in_precopy", ds_complete_in_precopy },
	{ "welcome_second", ds_welcome_second },
	{ "req_on_control", ds_req_on_control },
	{ "flood", ds_flood },
	{ "stall_switchover", ds_stall_switchover },
	{ "resumed_malformed", ds_resumed_malformed },
	{ "pc_req_index_out", ds_pc_req_index_out },
	{ "pc_req_index_huge", ds_pc_req_index_huge },
	{ "pc_req_region_out", ds_pc_req_region_out },
	{ "pc_req_truncated", ds_pc_req_truncated },
	{ "pc_req_count_over", ds_pc_req_count_over },
	{ "pc_junk_urgent", ds_pc_junk_urgent },
	{ "pc_complete_malformed", ds_pc_complete_malformed },
	{ "pc_stall", ds_pc_stall },
	{ "pc_req_after_complete", ds_pc_req_after_complete },
	{ "ack_never", ds_ack_never },
	{ "ack_wrong", ds_ack_wrong },
	{ "ack_junk", ds_ack_junk },
};

/* Reads the control stream until the agent ends the session; prints the
 * ERROR it sent, if any. */
static void drain(struct peer *p)
{
	struct pollfd pfd = { -1, POLLIN, 0 };
	struct mig_error e;
	struct tp_msg m;
	int ret;

	if (p->hung_up)
		return;
	pfd.fd = tp_stream_fd(p->ctl);
	for (;;) {
		if (p->welcomed && !tp_stream_pending(p->ctl) &&
		    poll(&pfd, 1, 500) == 0) {
			if (tp_send(p->ctl, MIG_MSG_KEEPALIVE, NULL, 0, 0) == 0)
				continue;
		}
		ret = tp_recv(p->ctl, &m, p->buf, BUF_CAP);
		if (ret == -EMSGSIZE)
			ret = tp_recv_skip(p->ctl, tp_recv_left(p->ctl));
		if (ret) {
			printf("%s-closed: %s\n", p->listening ? "source" :
			       "dest", ret == -ESHUTDOWN ? "cleanly" :
			       tp_stream_err(p->ctl)->msg);
			return;
		}
		if (m.type == MIG_MSG_ERROR && !mig_dec_error(p->buf, m.len, &e))
			printf("%s-error: %s\n", p->listening ? "source" :
			       "dest", e.msg);
		else if (m.type == MIG_MSG_KEEPALIVE && p->listening)
			continue;
		else
			printf("dest-sent: 0x%x (%llu bytes)\n", m.type,
			       (unsigned long long)m.len);
		fflush(stdout);
	}
}

/* Ends the sinks (their streams cut under them) and the session. */
static void end_session(struct peer *p)
{
	for (unsigned int i = 0; i < p->nsinks; i++) {
		if (!atomic_load(&p->sinks[i].started))
			continue;
		shutdown(tp_stream_fd(p->sinks[i].st), SHUT_RDWR);
		pthread_join(p->sinks[i].thread, NULL);
	}
	p->nsinks = 0;
	tp_session_destroy(p->sess);
	p->sess = NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: hostile-peer --connect|--listen HOST:PORT "
		"--ca F --cert F --key F [--pages N] [--timeout MS] "
		"[--flood-s S] SCENARIO | --list | --list-dest\n");
	return 2;
}

static const struct scenario *find(const struct scenario *t, size_t n,
				   const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(t[i].name, name))
			return &t[i];
	return NULL;
}

/* --listen: one source, accepted. */
static int accept_source(struct tp_config *cfg, const char *host,
			 const char *port, struct peer *p)
{
	struct tp_listener *l;
	struct ut_err terr;
	int ret;

	cfg->accept_timeout_ms = 30000;
	ret = tp_listener_create(cfg, host, port, &l, &terr);
	if (ret) {
		fprintf(stderr, "hostile-peer: listen: %s\n", terr.msg);
		return ret;
	}
	printf("listening on port %d\n", tp_listener_port(l));
	fflush(stdout);
	ret = tp_session_accept(l, &p->sess, &terr);
	tp_listener_destroy(l);
	if (ret)
		fprintf(stderr, "hostile-peer: accept: %s\n", terr.msg);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "ca", required_argument, NULL, 'A' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "pages", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 't' },
		{ "flood-s", required_argument, NULL, 'f' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'L' },
		{ "list", no_argument, NULL, 'l' },
		{ "list-dest", no_argument, NULL, 'D' },
		{ 0 },
	};
	struct tp_config cfg = { .nbulk = 1, .timeout_ms = 60000 };
	struct peer p = { .flood_s = 5 };
	const struct scenario *sc = NULL;
	char *connect = NULL, *colon;
	struct ut_err terr;
	int o, ret;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'c': connect = optarg; break;
		case 'A': cfg.ca_file = optarg; break;
		case 'C': cfg.cert_file = optarg; break;
		case 'K': cfg.key_file = optarg; break;
		case 'p': p.pages = strtoull(optarg, NULL, 0); break;
		case 't': cfg.timeout_ms = atoi(optarg); break;
		case 'f': p.flood_s = atoi(optarg); break;
		case 's': p.snap_path = optarg; break;
		case 'L': connect = optarg; p.listening = true; break;
		case 'l':
			for (size_t i = 0; i < UT_ARRAY_SIZE(scenarios); i++)
				printf("%s\n", scenarios[i].name);
			return 0;
		case 'D':
			for (size_t i = 0; i < UT_ARRAY_SIZE(dest_scenarios); i++)
				printf("%s\n", dest_scenarios[i].name);
			return 0;
		default: return usage();
		}
	}
	if (optind + 1 != argc || !connect || (!p.listening && p.pages < 16))
		return usage();
	sc = p.listening ?
		find(dest_scenarios, UT_ARRAY_SIZE(dest_scenarios), argv[optind]) :
		find(scenarios, UT_ARRAY_SIZE(scenarios), argv[optind]);
	colon = strrchr(connect, ':');
	if (!sc || !colon)
		return usage();
	*colon = 0;
	p.buf = malloc(BUF_CAP);
	if (!p.buf)
		return 1;
	if (p.listening) {
		ret = accept_source(&cfg, connect, colon + 1, &p);
	} else {
		ret = tp_session_connect(&cfg, connect, colon + 1, &p.sess,
					 &terr);
		if (ret)
			fprintf(stderr, "hostile-peer: connect: %s\n", terr.msg);
	}
	if (ret) {
		free(p.buf);
		return 1;
	}
	p.ctl = tp_session_control(p.sess);
	p.bulk = tp_session_bulk(p.sess, 0);
	ret = sc->run(&p);
	printf("sent: %s%s\n", sc->name, ret ? " (cut short)" : "");
	if (ret == -EINVAL) {
		end_session(&p);
		free(p.state);
		free(p.buf);
		return 1; /* the scenario could not be built */
	}
	fflush(stdout);
	drain(&p);
	end_session(&p);
	if (p.ram)
		munmap((void *)p.ram, p.pages * PSZ);
	free(p.state);
	free(p.buf);
	return 0;
}
