// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Encoders and decoders of the wire protocol (see wire.h). Each body is
 * written and read through a cursor that refuses to step past its end, so
 * a short or truncated buffer can only produce an error.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_PREFIX "wire"
#include "migrate/wire.h"
#include "util/le.h"
#include "util/util.h"

struct cur {
	uint8_t *w;		/* encoder: output, NULL when decoding */
	const uint8_t *r;	/* decoder: input */
	size_t len, off;
	bool short_;		/* a read or write went past len */
};

static void put(struct cur *c, uint64_t v, unsigned int n)
{
	if (c->off + n > c->len) {
		c->short_ = true;
		return;
	}
	ut_put_le(c->w + c->off, v, n);
	c->off += n;
}

static uint64_t get(struct cur *c, unsigned int n)
{
	uint64_t v;

	if (c->off + n > c->len) {
		c->short_ = true;
		return 0;
	}
	v = ut_get_le(c->r + c->off, n);
	c->off += n;
	return v;
}

#define put16(c, v) put(c, v, 2)
#define put32(c, v) put(c, v, 4)
#define put64(c, v) put(c, v, 8)
#define get16(c) ((uint16_t)get(c, 2))
#define get32(c) ((uint32_t)get(c, 4))
#define get64(c) get(c, 8)

static ssize_t enc_done(const struct cur *c)
{
	return c->short_ ? -ENOSPC : (ssize_t)c->off;
}

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

/* A decoder's last word: the body was neither short nor too long. */
static int dec_done(const struct cur *c, const char *what)
{
	if (c->short_)
		return mig_wire_reject("%s: message truncated at %zu bytes",
				       what, c->len);
	if (c->off != c->len)
		return mig_wire_reject("%s: %zu trailing bytes", what,
				       c->len - c->off);
	return 0;
}

static int bad(const char *what, const char *why)
{
	return mig_wire_reject("%s: %s", what, why);
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
	return enc_done(&c);
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
	ret = dec_done(&c, "welcome");
	if (ret)
		return ret;
	if (w->version < h->ver_min || w->version > h->ver_max)
		return bad("welcome", "version outside the offered range");
	if (w->features & ~h->features)
		return bad("welcome", "features that were not offered");
	return 0;
}

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
	if (!c.short_ && (r->flags & ~(MIG_ROUND_FINAL | MIG_ROUND_POSTCOPY)))
		return bad("round", "unknown flags");
	return dec_done(&c, "round");
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
		put32(&c, 0);
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
		r[i].region = get32(&c);
		if (get32(&c))
			return bad("page request", "reserved field set");
		r[i].idx = get64(&c);
		if (r[i].region >= l->nr ||
		    r[i].idx >= mig_region_pages(l, r[i].region))
			return bad("page request", "no such page");
	}
	*count = n;
	return dec_done(&c, "page request");
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

/* ---- TOPOLOGY ---- */

static void put_str(struct cur *c, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	put(c, n, 1);
	for (size_t i = 0; i < n; i++)
		put(c, (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?', 1);
}

/* Into @out of @cap bytes (NUL included); false if too long or
 * unprintable. */
static bool get_str(struct cur *c, char *out, size_t cap)
{
	size_t n = get(c, 1);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = get(c, 1);

		if (ch < 0x20 || ch >= 0x7f)
			return false;
		out[i] = ch;
	}
	out[n] = 0;
	return true;
}

static void put_node(struct cur *c, const struct mig_topology *t, uint32_t i)
{
	const struct gm_numa_node *n = &t->host.node[i];

	put32(c, n->id);
	put32(c, n->tier);
	put32(c, n->ncpus);
	put32(c, 0);
	put64(c, n->mem_total);
	put64(c, n->mem_free);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		put64(c, n->hp_total[k]);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		put64(c, n->hp_free[k]);
	put64(c, n->id < GM_MAX_NODES ? t->planned[n->id] : 0);
	for (uint32_t k = 0; k < t->host.nr_nodes; k++)
		put(c, n->distance[k], 1);
	put_str(c, n->cpulist, GM_CPULIST_LEN - 1);
}

ssize_t mig_enc_topology(uint8_t *buf, size_t cap,
			 const struct mig_topology *t)
{
	struct cur c = { .w = buf, .len = cap };
	const struct gm_topo *h = t ? &t->host : NULL;

	if (!buf || !t || h->nr_nodes > GM_MAX_NODES ||
	    h->nr_hpsizes > GM_MAX_HPSIZES)
		return -EINVAL;
	put16(&c, MIG_TOPO_VERSION);
	put16(&c, h->nr_nodes);
	put16(&c, h->nr_hpsizes);
	put16(&c, 0);
	for (uint32_t k = 0; k < h->nr_hpsizes; k++)
		put64(&c, h->hpsize[k]);
	put32(&c, (uint32_t)h->ksm_run);
	put32(&c, (uint32_t)h->ksm_merge_across_nodes);
	put32(&c, (uint32_t)h->numa_balancing);
	put32(&c, 0);
	put64(&c, h->ksm_pages_sharing);
	put_str(&c, h->thp_enabled, sizeof(h->thp_enabled) - 1);
	put_str(&c, h->thp_defrag, sizeof(h->thp_defrag) - 1);
	put_str(&c, h->thp_shmem, sizeof(h->thp_shmem) - 1);
	put_str(&c, t->policy, sizeof(t->policy) - 1);
	put_str(&c, t->note, sizeof(t->note) - 1);
	for (uint32_t i = 0; i < h->nr_nodes; i++)
		put_node(&c, t, i);
	return enc_done(&c);
}

static int get_node(struct cur *c, struct mig_topology *t, uint32_t i)
{
	struct gm_numa_node *n = &t->host.node[i];
	uint64_t planned;

	n->id = get32(c);
	n->tier = get32(c);
	n->ncpus = get32(c);
	if (get32(c))
		return bad("topology", "reserved field set");
	n->mem_total = get64(c);
	n->mem_free = get64(c);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		n->hp_total[k] = get64(c);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		n->hp_free[k] = get64(c);
	planned = get64(c);
	for (uint32_t k = 0; k < t->host.nr_nodes; k++)
		n->distance[k] = get(c, 1);
	if (!get_str(c, n->cpulist, sizeof(n->cpulist)))
		return c->short_ ? 0 : bad("topology", "bad CPU list text");
	if (c->short_)
		return 0;
	if (n->id >= GM_MAX_NODES || (i && n->id <= t->host.node[i - 1].id))
		return bad("topology", "node ids out of range or order");
	if (n->mem_free > n->mem_total)
		return bad("topology", "more memory free than there is");
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		if (n->hp_free[k] > n->hp_total[k])
			return bad("topology", "more huge pages free than "
				   "there are");
	t->planned[n->id] = planned;
	return 0;
}

static int get_knobs(struct cur *c, struct mig_topology *t)
{
	struct gm_topo *h = &t->host;

	h->ksm_run = (int32_t)get32(c);
	h->ksm_merge_across_nodes = (int32_t)get32(c);
	h->numa_balancing = (int32_t)get32(c);
	if (get32(c))
		return bad("topology", "reserved field set");
	h->ksm_pages_sharing = get64(c);
	if (!get_str(c, h->thp_enabled, sizeof(h->thp_enabled)) ||
	    !get_str(c, h->thp_defrag, sizeof(h->thp_defrag)) ||
	    !get_str(c, h->thp_shmem, sizeof(h->thp_shmem)) ||
	    !get_str(c, t->policy, sizeof(t->policy)) ||
	    !get_str(c, t->note, sizeof(t->note)))
		return c->short_ ? 0 : bad("topology", "bad text field");
	return 0;
}

int mig_dec_topology(const uint8_t *buf, size_t len, struct mig_topology *t)
{
	struct cur c = { .r = buf, .len = len };
	struct gm_topo *h = t ? &t->host : NULL;
	int ret;

	if (!buf || !t)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	if (get16(&c) != MIG_TOPO_VERSION && !c.short_)
		return bad("topology", "unknown version of the host picture");
	h->nr_nodes = get16(&c);
	h->nr_hpsizes = get16(&c);
	if (get16(&c))
		return bad("topology", "reserved field set");
	if (c.short_)
		return dec_done(&c, "topology");
	if (h->nr_nodes > GM_MAX_NODES || h->nr_hpsizes > GM_MAX_HPSIZES)
		return bad("topology", "node or page size count out of range");
	for (uint32_t k = 0; k < h->nr_hpsizes; k++) {
		h->hpsize[k] = get64(&c);
		if (!c.short_ && (h->hpsize[k] < 8192 ||
				  (h->hpsize[k] & (h->hpsize[k] - 1)) ||
				  (k && h->hpsize[k] <= h->hpsize[k - 1])))
			return bad("topology", "bad huge page sizes");
	}
	ret = get_knobs(&c, t);
	for (uint32_t i = 0; !ret && i < h->nr_nodes && !c.short_; i++)
		ret = get_node(&c, t, i);
	return ret ? ret : dec_done(&c, "topology");
}

/* ---- HEAT ---- */

ssize_t mig_enc_heat(uint8_t *buf, size_t cap, const struct mig_heat *h)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !h || !h->nr || h->nr > MIG_MAX_REGIONS || h->samples > 255)
		return -EINVAL;
	put32(&c, h->nr);
	put32(&c, h->samples);
	for (uint32_t i = 0; i < h->nr; i++)
		put32(&c, h->nchunks[i]);
	for (uint32_t i = 0; i < h->nr; i++) {
		if (c.short_ || h->nchunks[i] > c.len - c.off)
			return -ENOSPC;
		memcpy(buf + c.off, h->heat[i], h->nchunks[i]);
		c.off += h->nchunks[i];
	}
	return enc_done(&c);
}

int mig_dec_heat(const uint8_t *buf, size_t len, const struct mig_layout *l,
		 struct mig_heat *h)
{
	struct cur c = { .r = buf, .len = len };

	if (!buf || !l || !h)
		return -EINVAL;
	memset(h, 0, sizeof(*h));
	h->nr = get32(&c);
	h->samples = get32(&c);
	if (c.short_)
		return dec_done(&c, "heat");
	if (h->nr != l->nr)
		return bad("heat", "region count differs from the layout");
	if (h->samples > 255)
		return bad("heat", "more than 255 samples");
	for (uint32_t i = 0; i < h->nr; i++) {
		h->nchunks[i] = get32(&c);
		if (!c.short_ && h->nchunks[i] != mig_chunks(l, i))
			return bad("heat", "chunk count differs from the region");
	}
	for (uint32_t i = 0; i < h->nr && !c.short_; i++) {
		if (h->nchunks[i] > c.len - c.off) {
			c.short_ = true;
			break;
		}
		h->heat[i] = buf + c.off;
		for (uint32_t k = 0; k < h->nchunks[i]; k++)
			if (h->heat[i][k] > h->samples)
				return bad("heat", "a chunk hotter than the "
					   "samples taken");
		c.off += h->nchunks[i];
	}
	return dec_done(&c, "heat");
}
