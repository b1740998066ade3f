// SPDX-License-Identifier: LGPL-2.1-or-later
/* The wire protocol: every message round-trips, and every decoder rejects
 * truncation, trailing bytes and each out-of-range field it checks. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "check-wire"
#include "migrate/wire.h"
#include "tests/testutil.h"
#include "util/util.h"

static struct mig_hello hello(void)
{
	struct mig_hello h = {
		.ver_min = 1, .ver_max = 1, .features = MIG_FEATURES_V1,
		.nbulk = 4,
		.layout = { .nr = 2, .r = {
			{ .gpa = 0, .size = 64 << 20, .page_size = 4096 },
			{ .gpa = 1ULL << 32, .size = 8 << 20,
			  .page_size = 2 << 20 },
		} },
	};

	h.total_pages = (64 << 20) / 4096 + 4;
	return h;
}

static void quiet(void)
{
	ut_log_set_level(UT_LOG_ERR);
	ut_log_set_sink(NULL, NULL);
}

static void drop(enum ut_log_level l, const char *m, void *a)
{
}

static void silence(void)
{
	ut_log_set_sink(drop, NULL);
}

START_TEST(hello_roundtrip_and_truncation)
{
	struct mig_hello h = hello(), out;
	uint8_t buf[4096];
	ssize_t n = mig_enc_hello(buf, sizeof(buf), &h);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mig_dec_hello(buf, n, &out), 0);
	ck_assert_int_eq(out.layout.nr, 2);
	ck_assert_uint_eq(out.layout.r[1].gpa, 1ULL << 32);
	ck_assert_uint_eq(out.total_pages, h.total_pages);
	ck_assert_uint_eq(out.nbulk, 4);
	silence();
	for (ssize_t k = 0; k < n; k++)
		ck_assert_int_eq(mig_dec_hello(buf, k, &out), -EPROTO);
	ck_assert_int_eq(mig_dec_hello(buf, n + 1, &out), -EPROTO);
	ck_assert_int_eq(mig_enc_hello(buf, n - 1, &h), -ENOSPC);
	quiet();
}
END_TEST

/* Encodes @h and expects the decoder to refuse it. */
static void hello_rejected(struct mig_hello h)
{
	uint8_t buf[4096];
	struct mig_hello out;
	ssize_t n = mig_enc_hello(buf, sizeof(buf), &h);

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mig_dec_hello(buf, n, &out), -EPROTO);
}

START_TEST(hello_rejects_bad_layouts)
{
	struct mig_hello h;
	uint8_t buf[4096];

	silence();
	h = hello();
	h.layout.r[1].gpa = 32 << 20; /* overlaps region 0 */
	hello_rejected(h);
	h = hello();
	h.layout.r[0].page_size = 8192;
	hello_rejected(h);
	h = hello();
	h.layout.r[1].size = 3 << 20; /* not a multiple of 2M */
	hello_rejected(h);
	h = hello();
	h.layout.r[0].gpa = UINT64_MAX - 4095; /* wraps */
	hello_rejected(h);
	h = hello();
	h.total_pages++;
	hello_rejected(h);
	h = hello();
	h.ver_min = 2;
	hello_rejected(h);
	h = hello();
	h.nbulk = 0;
	hello_rejected(h);
	h = hello();
	h.layout.nr = 0;
	hello_rejected(h);
	h = hello();
	ck_assert_int_gt(mig_enc_hello(buf, sizeof(buf), &h), 0);
	buf[0] ^= 1; /* magic */
	ck_assert_int_eq(mig_dec_hello(buf, sizeof(buf), &h), -EPROTO);
	quiet();
}
END_TEST

START_TEST(welcome_checks_offer)
{
	struct mig_hello h = hello();
	struct mig_welcome w = { .version = 1, .features = MIG_FEAT_DUP_REF },
			   out;
	uint8_t buf[64];
	ssize_t n = mig_enc_welcome(buf, sizeof(buf), &w);

	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert_uint_eq(out.features, MIG_FEAT_DUP_REF);
	silence();
	w.features = 1ULL << 40; /* not offered */
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	w = (struct mig_welcome){ .version = 2 };
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	quiet();
}
END_TEST

/* MIG_FEAT_PAGESIZES: the destination's page sizes ride in WELCOME,
 * each checked against its region, and the wire's layout takes 4 KiB
 * units where the two ends differ. */
START_TEST(welcome_page_sizes)
{
	struct mig_hello h = hello();
	struct mig_welcome w = { .version = 1, .features = MIG_FEAT_PAGESIZES,
				 .nr = 2, .page_size = { 2 << 20, 4096 } },
			   out;
	struct mig_layout wire;
	uint8_t buf[64 + 4 * MIG_MAX_REGIONS];
	ssize_t n;

	h.features |= MIG_FEAT_PAGESIZES;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(n, 16 + 8 + 2 * 4);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert_uint_eq(out.nr, 2);
	ck_assert_uint_eq(out.page_size[0], 2 << 20);
	ck_assert_uint_eq(out.page_size[1], 4096);
	/* 4K here, 2M there and 2M here, 4K there: both in 4 KiB units. */
	ck_assert(mig_layout_units(&h.layout, &out, &wire));
	ck_assert_uint_eq(wire.nr, 2);
	for (uint32_t i = 0; i < 2; i++) {
		ck_assert_uint_eq(wire.r[i].page_size, 4096);
		ck_assert_uint_eq(wire.r[i].gpa, h.layout.r[i].gpa);
		ck_assert_uint_eq(wire.r[i].size, h.layout.r[i].size);
	}
	ck_assert_uint_eq(mig_region_pages(&wire, 1), (8 << 20) / 4096);
	/* The same sizes: the layout as it is. */
	w.page_size[0] = 4096;
	w.page_size[1] = 2 << 20;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert(!mig_layout_units(&h.layout, &out, &wire));
	ck_assert_uint_eq(wire.r[1].page_size, 2 << 20);
	/* Not accepted: the source's own sizes, nothing in units. */
	w.features = MIG_FEAT_DUP_REF;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(n, 16);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert_uint_eq(out.page_size[1], 2 << 20);
	ck_assert(!mig_layout_units(&h.layout, &out, &wire));
	silence();
	w.features = MIG_FEAT_PAGESIZES;
	w.page_size[0] = 8192;			/* no such page size */
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	w.page_size[0] = 1u << 30;		/* 64 MiB is no 1 GiB multiple */
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	ck_assert(strstr(mig_wire_reason(), "not aligned"));
	w.page_size[0] = 2 << 20;
	w.nr = 1;				/* another region count */
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	w.nr = 2;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n - 1, &h, &out), -EPROTO);
	h.features &= ~MIG_FEAT_PAGESIZES;	/* not offered */
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	w.nr = 0;
	ck_assert_int_eq(mig_enc_welcome(buf, sizeof(buf), &w), -EINVAL);
	quiet();
}
END_TEST

/* MIG_FEAT_HUGE_UNITS: 1 GiB pages at both ends go in 4 KiB units too,
 * 2 MiB ones do not; without the feature neither does. */
START_TEST(welcome_huge_units)
{
	struct mig_hello h = hello();
	struct mig_welcome w = { .version = 1,
				 .features = MIG_FEAT_PAGESIZES |
					     MIG_FEAT_HUGE_UNITS,
				 .nr = 2, .page_size = { 1u << 30, 2 << 20 } },
			   out;
	struct mig_layout wire;
	uint8_t buf[64 + 4 * MIG_MAX_REGIONS];
	ssize_t n;

	h.layout.r[0].size = 1ULL << 30;
	h.layout.r[0].page_size = 1u << 30;
	h.total_pages = 1 + 4;
	h.features |= MIG_FEAT_PAGESIZES | MIG_FEAT_HUGE_UNITS;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert(mig_layout_units(&h.layout, &out, &wire));
	ck_assert_uint_eq(wire.r[0].page_size, 4096);
	ck_assert_uint_eq(wire.r[0].dst_page_size, 1u << 30);
	ck_assert_uint_eq(mig_region_pages(&wire, 0), (1u << 30) / 4096);
	ck_assert_uint_eq(wire.r[1].page_size, 2 << 20);
	/* Not accepted: a 1 GiB page stays whole. */
	w.features = MIG_FEAT_PAGESIZES;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), 0);
	ck_assert(!mig_layout_units(&h.layout, &out, &wire));
	ck_assert_uint_eq(wire.r[0].page_size, 1u << 30);
	/* Accepted though never offered: refused. */
	silence();
	w.features = MIG_FEAT_PAGESIZES | MIG_FEAT_HUGE_UNITS;
	h.features &= ~MIG_FEAT_HUGE_UNITS;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ck_assert_int_eq(mig_dec_welcome(buf, n, &h, &out), -EPROTO);
	quiet();
}
END_TEST

START_TEST(pages_header_and_indexes)
{
	struct mig_hello h = hello();
	const struct mig_layout *l = &h.layout;
	uint64_t idx[3] = { 0, 7, 16383 }, got[3];
	struct mig_pages_hdr ph;
	uint8_t buf[64];
	ssize_t n = mig_enc_pages_hdr(buf, sizeof(buf), 0, 3, idx);
	uint64_t msg_len = n + 3 * 4096;

	ck_assert_int_eq(n, MIG_PAGES_FIXED + 24);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED, msg_len, l,
					   &ph), 0);
	ck_assert_int_eq(ph.count, 3);
	ck_assert_int_eq(ph.page_size, 4096);
	ck_assert_int_eq(mig_dec_pages_idx(buf + MIG_PAGES_FIXED, 24, l, &ph,
					   got), 0);
	ck_assert_uint_eq(got[2], 16383);
	silence();
	/* The message length must be exactly header + indexes + pages. */
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED, msg_len - 1,
					   l, &ph), -EPROTO);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED, msg_len + 4096,
					   l, &ph), -EPROTO);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED - 1, msg_len,
					   l, &ph), -EPROTO);
	/* An index one past the region. */
	idx[1] = 16384;
	n = mig_enc_pages_hdr(buf, sizeof(buf), 0, 3, idx);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED, msg_len, l,
					   &ph), 0);
	ck_assert_int_eq(mig_dec_pages_idx(buf + MIG_PAGES_FIXED, 24, l, &ph,
					   got), -EPROTO);
	ck_assert_int_eq(mig_dec_pages_idx(buf + MIG_PAGES_FIXED, 23, l, &ph,
					   got), -EPROTO);
	/* No region 2; region 1 has 4 pages of 2M. */
	n = mig_enc_pages_hdr(buf, sizeof(buf), 2, 1, idx);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED, 16 + 4096, l,
					   &ph), -EPROTO);
	idx[0] = 4;
	n = mig_enc_pages_hdr(buf, sizeof(buf), 1, 1, idx);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, MIG_PAGES_FIXED,
					   16 + (2 << 20), l, &ph), 0);
	ck_assert_int_eq(mig_dec_pages_idx(buf + MIG_PAGES_FIXED, 8, l, &ph,
					   got), -EPROTO);
	/* Zero and too many pages. */
	memset(buf, 0, 8);
	ck_assert_int_eq(mig_dec_pages_hdr(buf, 8, 8, l, &ph), -EPROTO);
	ck_assert_int_eq(mig_enc_pages_hdr(buf, sizeof(buf), 0,
					   MIG_MAX_BATCH + 1, idx), -EINVAL);
	quiet();
}
END_TEST

START_TEST(zero_bitmap)
{
	struct mig_hello h = hello();
	uint8_t bits[3] = { 0xff, 0x01, 0xff }, buf[64];
	struct mig_zero z = { .region = 0, .first = 100, .npages = 17,
			      .bits = bits }, out;
	ssize_t n = mig_enc_zero(buf, sizeof(buf), &z);

	ck_assert_int_eq(n, MIG_ZERO_FIXED + 3);
	ck_assert_int_eq(mig_dec_zero(buf, n, &h.layout, &out), 0);
	ck_assert_uint_eq(out.npages, 17);
	ck_assert_uint_eq(out.bits[2], 0x01); /* bits past 17 cleared */
	silence();
	buf[n - 1] |= 0x80; /* a bit past npages */
	ck_assert_int_eq(mig_dec_zero(buf, n, &h.layout, &out), -EPROTO);
	ck_assert_int_eq(mig_dec_zero(buf, n - 1, &h.layout, &out), -EPROTO);
	z.first = 16384 - 16; /* runs one page past the region */
	n = mig_enc_zero(buf, sizeof(buf), &z);
	ck_assert_int_eq(mig_dec_zero(buf, n, &h.layout, &out), -EPROTO);
	z.first = UINT64_MAX - 3; /* wraps */
	n = mig_enc_zero(buf, sizeof(buf), &z);
	ck_assert_int_eq(mig_dec_zero(buf, n, &h.layout, &out), -EPROTO);
	quiet();
}
END_TEST

/* KSM (MIG_FEAT_KSM_PAGES): a ZERO body of at most 32768 pages, both
 * ways; inside it every check of ZERO holds. */
START_TEST(ksm_pages)
{
	static uint8_t bits[MIG_KSM_MAX_PAGES / 8 + 1], buf[MIG_ZERO_FIXED +
							   sizeof(bits)];
	struct mig_layout l = { .nr = 1, .r = { { .gpa = 0, .size = 1ULL << 30,
						  .page_size = 4096 } } };
	struct mig_zero z = { .region = 0, .first = 5, .npages = MIG_KSM_MAX_PAGES,
			      .bits = bits }, out;
	ssize_t n;

	memset(bits, 0, sizeof(bits));
	bits[0] = 0x81;
	bits[MIG_KSM_MAX_PAGES / 8 - 1] = 0x80;
	n = mig_enc_ksm(buf, sizeof(buf), &z);
	ck_assert_int_eq(n, MIG_ZERO_FIXED + MIG_KSM_MAX_PAGES / 8);
	ck_assert_int_eq(mig_dec_ksm(buf, n, &l, &out), 0);
	ck_assert_uint_eq(out.first, 5);
	ck_assert_uint_eq(out.npages, MIG_KSM_MAX_PAGES);
	ck_assert_uint_eq(out.bits[0], 0x81);
	ck_assert_uint_eq(out.bits[MIG_KSM_MAX_PAGES / 8 - 1], 0x80);
	z.npages = MIG_KSM_MAX_PAGES + 1;
	ck_assert_int_eq(mig_enc_ksm(buf, sizeof(buf), &z), -EINVAL);
	silence();
	/* One page too many, built as ZERO, which allows it. */
	n = mig_enc_zero(buf, sizeof(buf), &z);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mig_dec_zero(buf, n, &l, &out), 0);
	ck_assert_int_eq(mig_dec_ksm(buf, n, &l, &out), -EPROTO);
	ck_assert_str_eq(mig_wire_reason(),
			 "ksm: more than 32768 pages in one message");
	z.npages = 8;
	z.first = (1ULL << 30) / 4096 - 4; /* past the region's end */
	n = mig_enc_ksm(buf, sizeof(buf), &z);
	ck_assert_int_eq(mig_dec_ksm(buf, n, &l, &out), -EPROTO);
	z.first = 0;
	z.region = 1;
	n = mig_enc_ksm(buf, sizeof(buf), &z);
	ck_assert_int_eq(mig_dec_ksm(buf, n, &l, &out), -EPROTO);
	ck_assert_int_eq(mig_dec_ksm(buf, MIG_ZERO_FIXED - 1, &l, &out),
			 -EPROTO);
	quiet();
}
END_TEST

START_TEST(dup_references)
{
	struct mig_hello h = hello();
	struct mig_dup d[2] = { { 0, 0, 5, 1 }, { 1, 1, 3, 0 } }, out[2];
	uint8_t buf[128];
	uint32_t count;
	ssize_t n = mig_enc_dup(buf, sizeof(buf), d, 2);

	ck_assert_int_eq(mig_dec_dup(buf, n, &h.layout, out, 2, &count), 0);
	ck_assert_int_eq(count, 2);
	ck_assert_uint_eq(out[1].page, 3);
	silence();
	ck_assert_int_eq(mig_dec_dup(buf, n, &h.layout, out, 1, &count),
			 -EPROTO);
	ck_assert_int_eq(mig_dec_dup(buf, n - 1, &h.layout, out, 2, &count),
			 -EPROTO);
	d[1] = (struct mig_dup){ 1, 0, 0, 0 }; /* 2M page = 4K page? */
	n = mig_enc_dup(buf, sizeof(buf), d, 2);
	ck_assert_int_eq(mig_dec_dup(buf, n, &h.layout, out, 2, &count),
			 -EPROTO);
	d[1] = (struct mig_dup){ 0, 0, 9, 9 }; /* itself */
	n = mig_enc_dup(buf, sizeof(buf), d, 2);
	ck_assert_int_eq(mig_dec_dup(buf, n, &h.layout, out, 2, &count),
			 -EPROTO);
	d[1] = (struct mig_dup){ 0, 0, 1, 16384 };
	n = mig_enc_dup(buf, sizeof(buf), d, 2);
	ck_assert_int_eq(mig_dec_dup(buf, n, &h.layout, out, 2, &count),
			 -EPROTO);
	quiet();
}
END_TEST

/* SUBPAGES: 2 MiB pages only, count equal to the data bits, no bit both
 * data and zero, the length exactly header + data. */
START_TEST(subpages)
{
	struct mig_hello h = hello();
	struct mig_subpages s = { .region = 1, .count = 3, .page = 2,
				  .data = { 0x07 }, .zero = { 0x10 } }, out;
	uint8_t buf[MIG_SUBPAGES_FIXED];
	uint64_t len = MIG_SUBPAGES_FIXED + 3 * 4096;
	struct mig_layout gig = { .nr = 1, .r = {
		{ .gpa = 0, .size = 2ULL << 30, .page_size = 1U << 30 } } };
	ssize_t n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);

	ck_assert_int_eq(n, MIG_SUBPAGES_FIXED);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &h.layout, &out), 0);
	ck_assert(out.region == 1 && out.page == 2 && out.count == 3 &&
		  out.data[0] == 0x07 && out.zero[0] == 0x10);
	silence();
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len - 1, &h.layout,
					      &out), -EPROTO);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n - 1, len, &h.layout,
					      &out), -EPROTO);
	s.region = 0; /* 4 KiB pages have no sub-pages */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &h.layout, &out),
			 -EPROTO);
	s.region = 1;
	s.page = 4; /* the region has pages 0..3 */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &h.layout, &out),
			 -EPROTO);
	s.page = 0;
	s.count = 2; /* three data bits */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len - 4096, &h.layout,
					      &out), -EPROTO);
	s.count = 3;
	s.zero[0] = 0x01; /* sub-page 0 both data and zero */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &h.layout, &out),
			 -EPROTO);
	s.zero[0] = 0x10;
	s.first = 512; /* a 2 MiB page has one window */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &h.layout, &out),
			 -EPROTO);
	/* 1 GiB pages: 512 windows of 512 sub-pages each. */
	s.region = 0;
	s.page = 1;
	s.first = 511 * 512;
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &gig, &out), 0);
	ck_assert_uint_eq(out.first, 511 * 512);
	s.first = 100; /* not at a window */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &gig, &out),
			 -EPROTO);
	s.first = 512 * 512; /* past the page */
	n = mig_enc_subpages_hdr(buf, sizeof(buf), &s);
	ck_assert_int_eq(mig_dec_subpages_hdr(buf, n, len, &gig, &out),
			 -EPROTO);
	quiet();
}
END_TEST

START_TEST(small_messages)
{
	struct mig_round r = { 3, MIG_ROUND_FINAL, 99 }, ro;
	struct mig_resumed rs = { 1234, 5678, 9 }, rso;
	struct mig_error e;
	uint8_t buf[512];
	ssize_t n;

	n = mig_enc_round(buf, sizeof(buf), &r);
	ck_assert_int_eq(mig_dec_round(buf, n, &ro), 0);
	ck_assert(ro.round == 3 && ro.flags == MIG_ROUND_FINAL &&
		  ro.pages == 99);
	n = mig_enc_resumed(buf, sizeof(buf), &rs);
	ck_assert_int_eq(mig_dec_resumed(buf, n, &rso), 0);
	ck_assert_uint_eq(rso.realtime_ns, 5678);
	ck_assert_uint_eq(rso.cpu_ns, 9);
	n = mig_enc_error(buf, sizeof(buf), ENOSPC, "disk\nfull");
	ck_assert_int_eq(mig_dec_error(buf, n, &e), 0);
	ck_assert_int_eq(e.code, ENOSPC);
	ck_assert_str_eq(e.msg, "disk?full");
	silence();
	ck_assert_int_eq(mig_dec_error(buf, n - 1, &e), -EPROTO);
	buf[6] = 1; /* unprintable */
	ck_assert_int_eq(mig_dec_error(buf, n, &e), -EPROTO);
	n = mig_enc_round(buf, sizeof(buf), &r);
	buf[4] = 0x80; /* unknown round flag */
	ck_assert_int_eq(mig_dec_round(buf, n, &ro), -EPROTO);
	ck_assert_int_eq(mig_dec_resumed(buf, 23, &rso), -EPROTO);
	quiet();
}
END_TEST

START_TEST(page_requests)
{
	struct mig_hello h = hello();
	struct mig_req r[2] = { { 0, 16383, 0 }, { 1, 3, 0 } }, out[2];
	uint8_t buf[128];
	uint32_t n;
	ssize_t len = mig_enc_req(buf, sizeof(buf), r, 2);

	ck_assert_int_eq(len, MIG_REQ_FIXED + 2 * MIG_REQ_ENTRY);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(out[0].idx, 16383);
	silence();
	ck_assert_int_eq(mig_dec_req(buf, len - 1, &h.layout, out, 2, &n),
			 -EPROTO);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 1, &n),
			 -EPROTO);
	r[1].idx = 4; /* region 1 has 4 pages */
	len = mig_enc_req(buf, sizeof(buf), r, 2);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n),
			 -EPROTO);
	r[1] = (struct mig_req){ 2, 0, 0 };
	len = mig_enc_req(buf, sizeof(buf), r, 2);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n),
			 -EPROTO);
	ck_assert_int_eq(mig_enc_req(buf, sizeof(buf), r, 0), -EINVAL);
	/* Runs: the last 384 pages of region 0, one past its end, and a
	 * run longer than any. */
	r[0] = (struct mig_req){ 0, 16000, 384 };
	r[1] = (struct mig_req){ 1, 3, 1 };
	len = mig_enc_req(buf, sizeof(buf), r, 2);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n), 0);
	ck_assert_uint_eq(out[0].npages, 384);
	ck_assert_uint_eq(out[1].npages, 1);
	r[0].npages = 385;
	len = mig_enc_req(buf, sizeof(buf), r, 2);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n),
			 -EPROTO);
	r[0] = (struct mig_req){ 0, 0, MIG_MAX_REQ_RUN + 1 };
	len = mig_enc_req(buf, sizeof(buf), r, 2);
	ck_assert_int_eq(mig_dec_req(buf, len, &h.layout, out, 2, &n),
			 -EPROTO);
	ck_assert(strstr(mig_wire_reason(), "too long"));
	quiet();
}
END_TEST

/* Random corruption of valid messages never crashes a decoder, and what a
 * decoder accepts is within the layout. (The libFuzzer harness in
 * tests/fuzz-wire.c goes further under --enable-fuzz.) */
START_TEST(mutations_are_caught_or_valid)
{
	struct mig_hello h = hello(), ho;
	uint64_t idx[4] = { 1, 2, 3, 4 }, got[MIG_MAX_BATCH];
	struct mig_dup d[1] = { { 0, 0, 5, 1 } }, dout[4];
	uint8_t msgs[3][512], m[512], bits[2] = { 0x55, 0x55 };
	struct mig_zero z = { 0, 10, 16, bits }, zo;
	struct mig_pages_hdr ph;
	ssize_t len[3];
	uint32_t count;

	len[0] = mig_enc_hello(msgs[0], 512, &h);
	len[1] = mig_enc_zero(msgs[1], 512, &z);
	len[2] = mig_enc_dup(msgs[2], 512, d, 1);
	silence();
	srand(3);
	for (int iter = 0; iter < 20000; iter++) {
		int k = iter % 3, flips = 1 + rand() % 4;

		memcpy(m, msgs[k], len[k]);
		for (int f = 0; f < flips; f++)
			m[rand() % len[k]] ^= 1 << (rand() % 8);
		if (k == 0 && mig_dec_hello(m, len[k], &ho) == 0)
			ck_assert(ho.layout.nr >= 1 &&
				  ho.layout.nr <= MIG_MAX_REGIONS);
		if (k == 1 && mig_dec_zero(m, len[k], &h.layout, &zo) == 0)
			ck_assert(zo.first + zo.npages <= 16384);
		if (k == 2 &&
		    mig_dec_dup(m, len[k], &h.layout, dout, 4, &count) == 0)
			ck_assert(dout[0].page < 16384 &&
				  dout[0].src_page < 16384);
		/* Any 8 bytes as a PAGES header, and what follows as indexes. */
		if (mig_dec_pages_hdr(m, 8, 8 + 8 * 4 + 4 * 4096, &h.layout,
				      &ph) == 0 &&
		    mig_dec_pages_idx(m + 8, 32, &h.layout, &ph, got) == 0)
			for (int i = 0; i < 4; i++)
				ck_assert(got[i] < 16384);
	}
	quiet();
	(void)idx;
}
END_TEST

/* The nested host's picture with a plan, as a destination sends it. */
static struct mig_topology topology(void)
{
	struct mig_topology t = { .policy = "interleave:0-1" };
	struct gm_topo *h = &t.host;

	h->nr_nodes = 2;
	h->nr_hpsizes = 2;
	h->hpsize[0] = 2 << 20;
	h->hpsize[1] = 1 << 30;
	h->node[0] = (struct gm_numa_node){ .id = 0, .tier = 4, .ncpus = 2,
		.cpulist = "0-1", .mem_total = 1280 << 20,
		.mem_free = 1200 << 20, .hp_total = { 4, 0 },
		.hp_free = { 3, 0 }, .distance = { 10, 20 } };
	h->node[1] = (struct gm_numa_node){ .id = 1, .tier = 54,
		.mem_total = 768 << 20, .mem_free = 700 << 20,
		.hp_total = { 8, 1 }, .hp_free = { 8, 1 },
		.distance = { 20, 10 } };
	strcpy(h->thp_enabled, "madvise");
	strcpy(h->thp_defrag, "madvise");
	strcpy(h->thp_shmem, "never");
	h->ksm_run = 0;
	h->ksm_merge_across_nodes = 1;
	h->ksm_pages_sharing = 12;
	h->numa_balancing = -1;
	t.planned[0] = 128 << 20;
	t.planned[1] = 128 << 20;
	return t;
}

static void topology_rejected(const struct mig_topology *t, const char *why)
{
	static uint8_t buf[MIG_TOPO_MAX];
	static struct mig_topology out;
	ssize_t n = mig_enc_topology(buf, sizeof(buf), t);

	ck_assert_int_gt(n, 0);
	silence();
	ck_assert_int_eq(mig_dec_topology(buf, n, &out), -EPROTO);
	quiet();
	ck_assert_msg(strstr(mig_wire_reason(), why), "'%s' lacks '%s'",
		      mig_wire_reason(), why);
}

START_TEST(topology_roundtrip_and_checks)
{
	static uint8_t buf[MIG_TOPO_MAX];
	static struct mig_topology t, out;
	ssize_t n;

	t = topology();
	n = mig_enc_topology(buf, sizeof(buf), &t);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(mig_dec_topology(buf, n, &out), 0);
	ck_assert(!memcmp(&t, &out, sizeof(t)));
	silence();
	for (ssize_t k = 0; k < n; k++)
		ck_assert_int_eq(mig_dec_topology(buf, k, &out), -EPROTO);
	ck_assert_int_eq(mig_dec_topology(buf, n + 1, &out), -EPROTO);
	quiet();
	ck_assert_int_eq(mig_enc_topology(buf, n - 1, &t), -ENOSPC);
	/* A full 64-node picture fits the bound. */
	t.host.nr_nodes = GM_MAX_NODES;
	t.host.nr_hpsizes = GM_MAX_HPSIZES;
	for (uint32_t i = 0; i < GM_MAX_NODES; i++) {
		t.host.node[i] = t.host.node[i % 2];
		t.host.node[i].id = i;
		strcpy(t.host.node[i].cpulist, "0-1023,2048-3071,4096-5119,"
		       "6144-7167,8192-9215,10240-112");
	}
	for (uint32_t k = 0; k < GM_MAX_HPSIZES; k++)
		t.host.hpsize[k] = (2ULL << 20) << (9 * k);
	memset(t.note, 'n', sizeof(t.note) - 1);
	ck_assert_int_gt(mig_enc_topology(buf, sizeof(buf), &t), 0);

	t = topology();
	t.host.node[1].id = 0;
	topology_rejected(&t, "node ids out of range or order");
	t = topology();
	t.host.node[0].mem_free = t.host.node[0].mem_total + 1;
	topology_rejected(&t, "more memory free");
	t = topology();
	t.host.node[1].hp_free[1] = 2;
	topology_rejected(&t, "more huge pages free");
	t = topology();
	t.host.hpsize[1] = 3 << 20;
	topology_rejected(&t, "bad huge page sizes");
}
END_TEST

/* Another version of the picture is refused by name, not misread. */
START_TEST(topology_version)
{
	static uint8_t buf[MIG_TOPO_MAX];
	static struct mig_topology t, out;
	ssize_t n;

	t = topology();
	n = mig_enc_topology(buf, sizeof(buf), &t);
	buf[0] = MIG_TOPO_VERSION + 1;
	silence();
	ck_assert_int_eq(mig_dec_topology(buf, n, &out), -EPROTO);
	quiet();
	ck_assert(strstr(mig_wire_reason(), "unknown version"));
	/* An unprintable policy text. */
	buf[0] = MIG_TOPO_VERSION;
	t.policy[0] = 0x7f;
	n = mig_enc_topology(buf, sizeof(buf), &t);
	ck_assert_int_eq(mig_dec_topology(buf, n, &out), 0);
	ck_assert_int_eq(out.policy[0], '?');
}
END_TEST

START_TEST(heat_map)
{
	struct mig_hello h = hello();
	uint8_t hot0[32] = { 0 }, hot1[4] = { 3, 0, 1, 3 }, buf[256];
	struct mig_heat m = { .nr = 2, .samples = 3, .nchunks = { 32, 4 },
			      .heat = { hot0, hot1 } }, out;
	ssize_t n;

	/* 64 MiB of 4K pages: 32 chunks; 8 MiB of 2M pages: 4. */
	ck_assert_uint_eq(mig_chunks(&h.layout, 0), 32);
	ck_assert_uint_eq(mig_chunks(&h.layout, 1), 4);
	hot0[5] = 2;
	n = mig_enc_heat(buf, sizeof(buf), &m);
	ck_assert_int_eq(n, MIG_HEAT_FIXED + 8 + 36);
	ck_assert_int_eq(mig_dec_heat(buf, n, &h.layout, &out), 0);
	ck_assert_uint_eq(out.samples, 3);
	ck_assert_uint_eq(out.heat[0][5], 2);
	ck_assert_uint_eq(out.heat[1][3], 3);
	silence();
	for (ssize_t k = 0; k < n; k++)
		ck_assert_int_eq(mig_dec_heat(buf, k, &h.layout, &out), -EPROTO);
	ck_assert_int_eq(mig_dec_heat(buf, n + 1, &h.layout, &out), -EPROTO);
	hot1[0] = 4; /* hotter than 3 samples */
	n = mig_enc_heat(buf, sizeof(buf), &m);
	ck_assert_int_eq(mig_dec_heat(buf, n, &h.layout, &out), -EPROTO);
	hot1[0] = 0;
	m.nchunks[1] = 3;
	n = mig_enc_heat(buf, sizeof(buf), &m);
	ck_assert_int_eq(mig_dec_heat(buf, n, &h.layout, &out), -EPROTO);
	ck_assert(strstr(mig_wire_reason(), "chunk count"));
	m.nr = 1;
	n = mig_enc_heat(buf, sizeof(buf), &m);
	ck_assert_int_eq(mig_dec_heat(buf, n, &h.layout, &out), -EPROTO);
	quiet();
	m.samples = 256;
	ck_assert_int_eq(mig_enc_heat(buf, sizeof(buf), &m), -EINVAL);
}
END_TEST

int main(void)
{
	const struct ft_case cases[] = {
		{ "hello_roundtrip_and_truncation",
		  hello_roundtrip_and_truncation, 0, 0 },
		{ "hello_rejects_bad_layouts", hello_rejects_bad_layouts, 0, 0 },
		{ "welcome_checks_offer", welcome_checks_offer, 0, 0 },
		{ "welcome_page_sizes", welcome_page_sizes, 0, 0 },
		{ "welcome_huge_units", welcome_huge_units, 0, 0 },
		{ "pages_header_and_indexes", pages_header_and_indexes, 0, 0 },
		{ "zero_bitmap", zero_bitmap, 0, 0 },
		{ "ksm_pages", ksm_pages, 0, 0 },
		{ "dup_references", dup_references, 0, 0 },
		{ "subpages", subpages, 0, 0 },
		{ "small_messages", small_messages, 0, 0 },
		{ "page_requests", page_requests, 0, 0 },
		{ "mutations_are_caught_or_valid",
		  mutations_are_caught_or_valid, 0, 0 },
		{ "topology_roundtrip_and_checks",
		  topology_roundtrip_and_checks, 0, 0 },
		{ "topology_version", topology_version, 0, 0 },
		{ "heat_map", heat_map, 0, 0 },
	};

	return ft_run(ft_suite("wire", cases, UT_ARRAY_SIZE(cases)));
}
