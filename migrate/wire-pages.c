// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Encoders and decoders of the page-carrying messages (see wire.h): PAGES,
 * SUBPAGES, ZERO, DUP and the postcopy page requests, each checked against
 * the region table.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "wire"
#include "migrate/wire-cursor.h"
#include "util/util.h"

/* ---- PAGES ---- */

ssize_t mig_enc_pages_hdr(uint8_t *buf, size_t cap, uint32_t region,
			  uint32_t count, const uint64_t *idx)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !idx || !count || count > MIG_MAX_BATCH)
		return -EINVAL;
	put32(&c, region);
	put32(&c, count);
	for (uint32_t i = 0; i < count; i++)
		put64(&c, idx[i]);
	return enc_done(&c);
}

int mig_dec_pages_hdr(const uint8_t *buf, size_t len, uint64_t msg_len,
		      const struct mig_layout *l, struct mig_pages_hdr *out)
{
	struct cur c = { .r = buf, .len = len };
	uint64_t want;
	int ret;

	if (!buf || !l || !out)
		return -EINVAL;
	out->region = get32(&c);
	out->count = get32(&c);
	ret = dec_done(&c, "pages");
	if (ret)
		return ret;
	if (out->region >= l->nr)
		return bad("pages", "no such region");
	if (out->count == 0 || out->count > MIG_MAX_BATCH)
		return bad("pages", "page count out of range");
	out->page_size = l->r[out->region].page_size;
	/* count <= 1024 and page_size <= 1G: no overflow in 64 bits. */
	want = MIG_PAGES_FIXED + 8ULL * out->count +
	       (uint64_t)out->count * out->page_size;
	if (msg_len != want)
		return bad("pages", "message length does not match the count");
	return 0;
}

int mig_dec_pages_idx(const uint8_t *buf, size_t len,
		      const struct mig_layout *l,
		      const struct mig_pages_hdr *h, uint64_t *idx)
{
	struct cur c = { .r = buf, .len = len };
	uint64_t pages;

	if (!buf || !l || !h || !idx || h->region >= l->nr ||
	    h->count > MIG_MAX_BATCH)
		return -EINVAL;
	pages = mig_region_pages(l, h->region);
	for (uint32_t i = 0; i < h->count; i++) {
		idx[i] = get64(&c);
		if (!c.short_ && idx[i] >= pages)
			return bad("pages", "page index outside the region");
	}
	return dec_done(&c, "pages");
}

/* ---- SUBPAGES ---- */

static void put_bytes(struct cur *c, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(c, p[i], 1);
}

static void get_bytes(struct cur *c, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)get(c, 1);
}

ssize_t mig_enc_subpages_hdr(uint8_t *buf, size_t cap,
			     const struct mig_subpages *s)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !s || s->count > MIG_SUB_PER_PAGE)
		return -EINVAL;
	put32(&c, s->region);
	put32(&c, s->count);
	put64(&c, s->page);
	put32(&c, s->first);
	put32(&c, 0);
	put_bytes(&c, s->data, MIG_SUB_BITMAP);
	put_bytes(&c, s->zero, MIG_SUB_BITMAP);
	return enc_done(&c);
}

int mig_dec_subpages_hdr(const uint8_t *buf, size_t len, uint64_t msg_len,
			 const struct mig_layout *l, struct mig_subpages *s)
{
	struct cur c = { .r = buf, .len = len };
	uint32_t bits = 0, psz;
	int ret;

	if (!buf || !l || !s)
		return -EINVAL;
	s->region = get32(&c);
	s->count = get32(&c);
	s->page = get64(&c);
	s->first = get32(&c);
	if (get32(&c) != 0)
		return bad("subpages", "reserved field not zero");
	get_bytes(&c, s->data, MIG_SUB_BITMAP);
	get_bytes(&c, s->zero, MIG_SUB_BITMAP);
	ret = dec_done(&c, "subpages");
	if (ret)
		return ret;
	if (s->region >= l->nr)
		return bad("subpages", "no such region");
	psz = l->r[s->region].page_size;
	if (psz < MIG_SUB_WINDOW || psz % MIG_SUB_WINDOW)
		return bad("subpages", "the region's pages are not huge pages");
	if (s->page >= mig_region_pages(l, s->region))
		return bad("subpages", "page index outside the region");
	if (s->first % MIG_SUB_PER_PAGE || s->first >= psz / MIG_SUB_SIZE)
		return bad("subpages", "window outside the page");
	for (unsigned int i = 0; i < MIG_SUB_BITMAP; i++) {
		if (s->data[i] & s->zero[i])
			return bad("subpages", "a sub-page both data and zero");
		bits += (uint32_t)__builtin_popcount(s->data[i]);
	}
	if (bits != s->count)
		return bad("subpages", "count does not match the data bitmap");
	if (msg_len != MIG_SUBPAGES_FIXED + (uint64_t)s->count * MIG_SUB_SIZE)
		return bad("subpages", "message length does not match the count");
	return 0;
}

/* ---- ZERO ---- */

ssize_t mig_enc_zero(uint8_t *buf, size_t cap, const struct mig_zero *z)
{
	struct cur c = { .w = buf, .len = cap };
	uint64_t nbytes;

	if (!buf || !z || !z->npages || !z->bits)
		return -EINVAL;
	nbytes = mig_zero_bytes(z->npages);
	put32(&c, z->region);
	put32(&c, 0);
	put64(&c, z->first);
	put64(&c, z->npages);
	if (c.short_ || nbytes > c.len - c.off)
		return -ENOSPC;
	memcpy(buf + c.off, z->bits, nbytes);
	/* Bits past npages are zero on the wire. */
	if (z->npages % 8)
		buf[c.off + nbytes - 1] &= (1u << (z->npages % 8)) - 1;
	c.off += nbytes;
	return enc_done(&c);
}

int mig_dec_zero(const uint8_t *buf, size_t len, const struct mig_layout *l,
		 struct mig_zero *z)
{
	struct cur c = { .r = buf, .len = len };
	uint64_t pages;

	if (!buf || !l || !z)
		return -EINVAL;
	z->region = get32(&c);
	if (get32(&c))
		return bad("zero", "reserved field set");
	z->first = get64(&c);
	z->npages = get64(&c);
	if (c.short_)
		return dec_done(&c, "zero");
	if (z->region >= l->nr)
		return bad("zero", "no such region");
	pages = mig_region_pages(l, z->region);
	if (!z->npages || z->first >= pages || z->npages > pages - z->first)
		return bad("zero", "bitmap outside the region");
	if (len - c.off != mig_zero_bytes(z->npages))
		return bad("zero", "bitmap length does not match its bits");
	z->bits = buf + c.off;
	if ((z->npages % 8) && (z->bits[len - c.off - 1] >> (z->npages % 8)))
		return bad("zero", "bits set past the end of the bitmap");
	return 0;
}

/* ---- KSM: a ZERO body of at most MIG_KSM_MAX_PAGES bits ---- */

ssize_t mig_enc_ksm(uint8_t *buf, size_t cap, const struct mig_zero *z)
{
	if (z && z->npages > MIG_KSM_MAX_PAGES)
		return -EINVAL;
	return mig_enc_zero(buf, cap, z);
}

int mig_dec_ksm(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_zero *z)
{
	int ret = mig_dec_zero(buf, len, l, z);

	if (ret)
		return ret;
	if (z->npages > MIG_KSM_MAX_PAGES)
		return bad("ksm", "more than 32768 pages in one message");
	return 0;
}

/* ---- DUP ---- */

ssize_t mig_enc_dup(uint8_t *buf, size_t cap, const struct mig_dup *d,
		    uint32_t count)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !d || !count || count > MIG_MAX_DUPS)
		return -EINVAL;
	put32(&c, count);
	put32(&c, 0);
	for (uint32_t i = 0; i < count; i++) {
		put32(&c, d[i].region);
		put32(&c, d[i].src_region);
		put64(&c, d[i].page);
		put64(&c, d[i].src_page);
	}
	return enc_done(&c);
}

int mig_dec_dup(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_dup *d, uint32_t cap, uint32_t *count)
{
	struct cur c = { .r = buf, .len = len };
	uint32_t n;

	if (!buf || !l || !d || !count)
		return -EINVAL;
	n = get32(&c);
	if (get32(&c))
		return bad("dup", "reserved field set");
	if (c.short_)
		return dec_done(&c, "dup");
	if (n == 0 || n > MIG_MAX_DUPS || n > cap)
		return bad("dup", "reference count out of range");
	if (len != MIG_DUP_FIXED + (size_t)n * MIG_DUP_ENTRY)
		return bad("dup", "message length does not match the count");
	for (uint32_t i = 0; i < n; i++) {
		struct mig_dup *e = &d[i];

		e->region = get32(&c);
		e->src_region = get32(&c);
		e->page = get64(&c);
		e->src_page = get64(&c);
		if (e->region >= l->nr || e->src_region >= l->nr)
			return bad("dup", "no such region");
		if (e->page >= mig_region_pages(l, e->region) ||
		    e->src_page >= mig_region_pages(l, e->src_region))
			return bad("dup", "page index outside the region");
		if (l->r[e->region].page_size != l->r[e->src_region].page_size)
			return bad("dup", "pages of different sizes");
		if (e->region == e->src_region && e->page == e->src_page)
			return bad("dup", "a page refers to itself");
	}
	*count = n;
	return dec_done(&c, "dup");
}

ssize_t mig_enc_req(uint8_t *buf, size_t cap, const struct mig_req *r,
		    uint32_t count)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !r || !count || count > MIG_MAX_REQS)
		return -EINVAL;
	put32(&c, count);
	put32(&c, 0);
	for (uint32_t i = 0; i < count; i++) {
		put32(&c, r[i].region);
		put32(&c, r[i].npages);
		put64(&c, r[i].idx);
	}
	return enc_done(&c);
}

int mig_dec_req(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_req *r, uint32_t cap, uint32_t *count)
{
	struct cur c = { .r = buf, .len = len };
	uint32_t n;

	if (!buf || !l || !r || !count)
		return -EINVAL;
	n = get32(&c);
	if (get32(&c))
		return bad("page request", "reserved field set");
	if (c.short_)
		return dec_done(&c, "page request");
	if (n == 0 || n > MIG_MAX_REQS || n > cap)
		return bad("page request", "request count out of range");
	if (len != MIG_REQ_FIXED + (size_t)n * MIG_REQ_ENTRY)
		return bad("page request", "length does not match the count");
	for (uint32_t i = 0; i < n; i++) {
		uint64_t run;

		r[i].region = get32(&c);
		r[i].npages = get32(&c);
		r[i].idx = get64(&c);
		run = r[i].npages ? r[i].npages : 1;
		if (r[i].npages > MIG_MAX_REQ_RUN)
			return bad("page request", "run of pages too long");
		if (r[i].region >= l->nr ||
		    r[i].idx >= mig_region_pages(l, r[i].region) ||
		    run > mig_region_pages(l, r[i].region) - r[i].idx)
			return bad("page request", "no such page");
	}
	*count = n;
	return dec_done(&c, "page request");
}
