// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Encoders and decoders of the wire protocol's control messages (see
 * wire.h): HELLO, WELCOME, ROUND, RESUMED, ERROR and COMPLETE, and the
 * reason of the last refusal. The page-carrying messages are in
 * wire-pages.c, the placement ones in wire-placement.c; all of them read
 * and write through the cursor of wire-cursor.h.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_PREFIX "wire"
#include "migrate/wire-cursor.h"
#include "util/util.h"

/* The calling thread's last refusal, for mig_wire_reason(): thread-local
 * so that each receiver thread of an engine reports its own, and so that
 * every decoder keeps its signature. */
static _Thread_local char reason[128];

int mig_wire_reject(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	pr_err("%s", reason);
	return -EPROTO;
}

const char *mig_wire_reason(void)
{
	return reason;
}


/* ---- HELLO / WELCOME ---- */

static bool page_size_ok(uint32_t ps)
{
	return ps == 4096 || ps == (2u << 20) || ps == (1u << 30);
}

static int check_layout(const struct mig_layout *l, uint64_t *total)
{
	*total = 0;
	if (l->nr == 0 || l->nr > MIG_MAX_REGIONS)
		return bad("hello", "region count out of range");
	for (uint32_t i = 0; i < l->nr; i++) {
		const struct mig_region *r = &l->r[i];

		if (!page_size_ok(r->page_size) || r->flags)
			return bad("hello", "bad region page size or flags");
		if (!r->size || r->size % r->page_size ||
		    r->gpa % r->page_size || r->gpa + r->size < r->gpa)
			return bad("hello", "region not page-aligned or wraps");
		for (uint32_t k = 0; k < i; k++)
			if (r->gpa < l->r[k].gpa + l->r[k].size &&
			    l->r[k].gpa < r->gpa + r->size)
				return bad("hello", "regions overlap");
		*total += r->size / r->page_size;
	}
	return 0;
}

ssize_t mig_enc_hello(uint8_t *buf, size_t cap, const struct mig_hello *h)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !h || h->layout.nr > MIG_MAX_REGIONS)
		return -EINVAL;
	put32(&c, MIG_WIRE_MAGIC);
	put16(&c, h->ver_min);
	put16(&c, h->ver_max);
	put64(&c, h->features);
	put32(&c, h->nbulk);
	put32(&c, h->layout.nr);
	put64(&c, h->total_pages);
	for (uint32_t i = 0; i < h->layout.nr; i++) {
		put64(&c, h->layout.r[i].gpa);
		put64(&c, h->layout.r[i].size);
		put32(&c, h->layout.r[i].page_size);
		put32(&c, h->layout.r[i].flags);
	}
	return enc_done(&c);
}

int mig_dec_hello(const uint8_t *buf, size_t len, struct mig_hello *h)
{
	struct cur c = { .r = buf, .len = len };
	uint64_t total;
	int ret;

	if (!buf || !h)
		return -EINVAL;
	memset(h, 0, sizeof(*h));
	if (get32(&c) != MIG_WIRE_MAGIC)
		return bad("hello", "not a Ferry peer (bad magic)");
	h->ver_min = get16(&c);
	h->ver_max = get16(&c);
	h->features = get64(&c);
	h->nbulk = get32(&c);
	h->layout.nr = get32(&c);
	h->total_pages = get64(&c);
	if (c.short_)
		return dec_done(&c, "hello");
	if (h->layout.nr == 0 || h->layout.nr > MIG_MAX_REGIONS)
		return bad("hello", "region count out of range");
	for (uint32_t i = 0; i < h->layout.nr; i++) {
		h->layout.r[i].gpa = get64(&c);
		h->layout.r[i].size = get64(&c);
		h->layout.r[i].page_size = get32(&c);
		h->layout.r[i].flags = get32(&c);
	}
	ret = dec_done(&c, "hello");
	if (ret)
		return ret;
	if (h->ver_min > h->ver_max || h->ver_min == 0)
		return bad("hello", "empty version range");
	if (h->nbulk == 0 || h->nbulk > 64)
		return bad("hello", "bulk stream count out of range");
	ret = check_layout(&h->layout, &total);
	if (ret)
		return ret;
	if (total != h->total_pages)
		return bad("hello", "page total does not match the regions");
	return 0;
}

ssize_t mig_enc_welcome(uint8_t *buf, size_t cap, const struct mig_welcome *w)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !w)
		return -EINVAL;
	put32(&c, MIG_WIRE_MAGIC);
	put16(&c, w->version);
	put16(&c, 0);
	put64(&c, w->features);
	if (w->features & MIG_FEAT_PAGESIZES) {
		if (!w->nr || w->nr > MIG_MAX_REGIONS)
			return -EINVAL;
		put32(&c, w->nr);
		put32(&c, 0);
		for (uint32_t i = 0; i < w->nr; i++)
			put32(&c, w->page_size[i]);
	}
	return enc_done(&c);
}

/* The destination's page sizes after the fixed part of WELCOME. */
static int dec_pagesizes(struct cur *c, const struct mig_hello *h,
			 struct mig_welcome *w)
{
	w->nr = get32(c);
	if (get32(c))
		return bad("welcome", "reserved field set");
	if (c->short_)
		return 0;	/* dec_done() says so */
	if (w->nr != h->layout.nr)
		return bad("welcome", "page sizes for another region count");
	for (uint32_t i = 0; i < w->nr; i++) {
		const struct mig_region *r = &h->layout.r[i];

		w->page_size[i] = get32(c);
		if (c->short_)
			return 0;
		if (!page_size_ok(w->page_size[i]))
			return bad("welcome", "bad destination page size");
		if (r->gpa % w->page_size[i] || r->size % w->page_size[i])
			return bad("welcome", "a region not aligned to the "
				   "destination's page size");
	}
	return 0;
}

bool mig_layout_units(const struct mig_layout *src,
		      const struct mig_welcome *w, struct mig_layout *out)
{
	bool differ = false;

	*out = *src;
	for (uint32_t i = 0; i < src->nr && i < w->nr; i++) {
		if (w->page_size[i] == src->r[i].page_size &&
		    (!(w->features & MIG_FEAT_HUGE_UNITS) ||
		     w->page_size[i] <= MIG_WIRE_PAGE_MAX))
			continue;
		out->r[i].page_size = MIG_SUB_SIZE;
		out->r[i].dst_page_size = w->page_size[i];
		differ = true;
	}
	return differ;
}

int mig_dec_welcome(const uint8_t *buf, size_t len,
		    const struct mig_hello *h, struct mig_welcome *w)
{
	struct cur c = { .r = buf, .len = len };
	int ret;

	if (!buf || !h || !w)
		return -EINVAL;
	if (get32(&c) != MIG_WIRE_MAGIC)
		return bad("welcome", "not a Ferry peer (bad magic)");
	w->version = get16(&c);
	if (get16(&c))
		return bad("welcome", "reserved field set");
	w->features = get64(&c);
	w->nr = h->layout.nr;
	for (uint32_t i = 0; i < h->layout.nr; i++)
		w->page_size[i] = h->layout.r[i].page_size;
	if (!c.short_ && (w->features & MIG_FEAT_PAGESIZES) &&
	    (ret = dec_pagesizes(&c, h, w)))
		return ret;
	ret = dec_done(&c, "welcome");
	if (ret)
		return ret;
	if (w->version < h->ver_min || w->version > h->ver_max)
		return bad("welcome", "version outside the offered range");
	if (w->features & ~h->features)
		return bad("welcome", "features that were not offered");
	return 0;
}

/* ---- small control messages ---- */

ssize_t mig_enc_round(uint8_t *buf, size_t cap, const struct mig_round *r)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !r)
		return -EINVAL;
	put32(&c, r->round);
	put32(&c, r->flags);
	put64(&c, r->pages);
	return enc_done(&c);
}

int mig_dec_round(const uint8_t *buf, size_t len, struct mig_round *r)
{
	struct cur c = { .r = buf, .len = len };

	if (!buf || !r)
		return -EINVAL;
	r->round = get32(&c);
	r->flags = get32(&c);
	r->pages = get64(&c);
	if (!c.short_ && (r->flags & ~(MIG_ROUND_FINAL | MIG_ROUND_POSTCOPY |
				   MIG_ROUND_DISCARD)))
		return bad("round", "unknown flags");
	return dec_done(&c, "round");
}

ssize_t mig_enc_resumed(uint8_t *buf, size_t cap, const struct mig_resumed *r)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !r)
		return -EINVAL;
	put64(&c, r->load_ns);
	put64(&c, r->realtime_ns);
	put64(&c, r->cpu_ns);
	return enc_done(&c);
}

int mig_dec_resumed(const uint8_t *buf, size_t len, struct mig_resumed *r)
{
	struct cur c = { .r = buf, .len = len };

	if (!buf || !r)
		return -EINVAL;
	r->load_ns = get64(&c);
	r->realtime_ns = get64(&c);
	r->cpu_ns = get64(&c);
	return dec_done(&c, "resumed");
}

ssize_t mig_enc_error(uint8_t *buf, size_t cap, int code, const char *msg)
{
	struct cur c = { .w = buf, .len = cap };
	size_t n = msg ? strnlen(msg, MIG_MAX_ERRMSG) : 0;

	if (!buf || code <= 0)
		return -EINVAL;
	put32(&c, code);
	put16(&c, n);
	if (c.short_ || n > c.len - c.off)
		return -ENOSPC;
	for (size_t i = 0; i < n; i++)
		buf[c.off + i] = (msg[i] >= 0x20 && msg[i] < 0x7f) ? msg[i] : '?';
	c.off += n;
	return enc_done(&c);
}

int mig_dec_error(const uint8_t *buf, size_t len, struct mig_error *e)
{
	struct cur c = { .r = buf, .len = len };
	uint16_t n;

	if (!buf || !e)
		return -EINVAL;
	e->code = get32(&c);
	n = get16(&c);
	if (c.short_)
		return dec_done(&c, "error");
	if (e->code <= 0 || n > MIG_MAX_ERRMSG || len - c.off != n)
		return bad("error", "malformed error message");
	for (uint16_t i = 0; i < n; i++) {
		uint8_t ch = buf[c.off + i];

		if (ch < 0x20 || ch >= 0x7f)
			return bad("error", "unprintable error text");
		e->msg[i] = ch;
	}
	e->msg[n] = 0;
	return 0;
}

ssize_t mig_enc_complete(uint8_t *buf, size_t cap,
			 const struct mig_complete *m)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !m)
		return -EINVAL;
	put64(&c, m->faults);
	put64(&c, m->p50_ns);
	put64(&c, m->p99_ns);
	put64(&c, m->max_ns);
	put64(&c, m->blocked_ns);
	for (unsigned int i = 0; i < MIG_HIST_BUCKETS; i++)
		put64(&c, m->hist[i]);
	return enc_done(&c);
}

int mig_dec_complete(const uint8_t *buf, size_t len, struct mig_complete *m)
{
	struct cur c = { .r = buf, .len = len };
	uint64_t sum = 0;

	if (!buf || !m)
		return -EINVAL;
	m->faults = get64(&c);
	m->p50_ns = get64(&c);
	m->p99_ns = get64(&c);
	m->max_ns = get64(&c);
	m->blocked_ns = get64(&c);
	for (unsigned int i = 0; i < MIG_HIST_BUCKETS; i++) {
		m->hist[i] = get64(&c);
		sum += m->hist[i];
	}
	if (!c.short_ && (sum != m->faults || m->p50_ns > m->p99_ns ||
			  m->p99_ns > m->max_ns))
		return bad("complete", "inconsistent fault figures");
	return dec_done(&c, "complete");
}
