// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The self-verifying workload (see workload.h). Freestanding C: no libc,
 * no division by variables in hot loops, no floating point, so that it
 * builds with -mgeneral-regs-only for the payload and as ordinary code
 * for ferry-vm's no-KVM threads.
 */
#include "workload.h"

#define EINVAL_ 22

enum page_class { CLASS_ZERO, CLASS_DUP, CLASS_STAMP };

enum err_kind {
	ERR_NONE = 0,
	ERR_ZERO,	/* zero page is not zero */
	ERR_DUP,	/* duplicate page differs from its template */
	ERR_MAGIC,	/* stamped page lacks its stamp */
	ERR_INDEX,	/* stamp names another page */
	ERR_STALE,	/* older generation than the bookkeeping says */
	ERR_FUTURE,	/* newer generation than the bookkeeping says */
	ERR_CSUM,	/* body does not match the stamp's checksum */
};

static const char *const err_names[] = {
	"none", "zero", "dup", "magic", "index", "stale", "future", "checksum",
};

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* FNV-1a over 64-bit words. */
static uint64_t csum_words(const volatile uint64_t *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 0x100000001b3ull;
	return h;
}

/* A per-CPU counter: written only by its CPU, read by CPU 0's heartbeat.
 * A relaxed load and store, not a locked add: one writer needs no RMW. */
static inline void bump(uint64_t *p)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

/* ---- formatting and console ---- */

size_t wl_fmt_u64(char *buf, uint64_t v)
{
	char tmp[24];
	size_t n = 0, i;

	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

size_t wl_fmt_hex(char *buf, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = digits[v & 15];
		v >>= 4;
	} while (v);
	buf[0] = '0';
	buf[1] = 'x';
	for (i = 0; i < n; i++)
		buf[2 + i] = tmp[n - 1 - i];
	return n + 2;
}

struct line {
	char buf[256];
	size_t len;
};

static void put_str(struct line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf) - 1)
		l->buf[l->len++] = *s++;
}

static void put_kv(struct line *l, const char *key, uint64_t v, bool hex)
{
	char num[24];
	size_t n = hex ? wl_fmt_hex(num, v) : wl_fmt_u64(num, v);

	put_str(l, " ");
	put_str(l, key);
	put_str(l, "=");
	for (size_t i = 0; i < n && l->len < sizeof(l->buf) - 1; i++)
		l->buf[l->len++] = num[i];
}

static struct wl_hdr *hdr_of(const struct wl_env *env)
{
	return (struct wl_hdr *)(env->mem + WL_WS_GPA);
}

static void emit(const struct wl_env *env, struct line *l)
{
	struct wl_hdr *h = hdr_of(env);

	l->buf[l->len++] = '\n';
	while (__atomic_exchange_n(&h->lock, 1, __ATOMIC_ACQUIRE))
		;
	env->write(env->arg, l->buf, l->len);
	__atomic_store_n(&h->lock, 0, __ATOMIC_RELEASE);
}

/* ---- parameters ---- */

void wl_params_default(struct wl_params *p)
{
	*p = (struct wl_params){
		.ws_bytes = 16ull << 20,
		.rate_mibs = 8,
		.zero_pct = 10,
		.dup_pct = 10,
		.pattern = WL_PATTERN_RANDOM,
		.hb_ms = 1000,
		.seed = 1,
		.cpus = 1,
	};
}

static bool word_is(const char *w, const char *key, const char **val)
{
	while (*key && *w == *key) {
		w++;
		key++;
	}
	if (*key || *w != '=')
		return false;
	*val = w + 1;
	return true;
}

/* Parses an unsigned number with an optional K/M/G suffix up to a space. */
static int parse_num(const char *s, uint64_t *out, bool suffix)
{
	uint64_t v = 0;
	const char *start = s;

	while (*s >= '0' && *s <= '9') {
		if (v > (~0ull - 9) / 10)
			return -EINVAL_;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (s == start)
		return -EINVAL_;
	if (suffix && (*s == 'K' || *s == 'k'))
		v <<= 10, s++;
	else if (suffix && (*s == 'M' || *s == 'm'))
		v <<= 20, s++;
	else if (suffix && (*s == 'G' || *s == 'g'))
		v <<= 30, s++;
	if (*s && *s != ' ')
		return -EINVAL_;
	*out = v;
	return 0;
}

static int parse_word(struct wl_params *p, const char *w)
{
	const char *v;
	uint64_t n;
	int ret = 0;

	if (word_is(w, "ws", &v))
		ret = parse_num(v, &p->ws_bytes, true);
	else if (word_is(w, "rate", &v))
		ret = parse_num(v, &p->rate_mibs, false);
	else if (word_is(w, "seed", &v))
		ret = parse_num(v, &p->seed, false);
	else if (word_is(w, "hbs", &v))
		ret = parse_num(v, &p->hbs, false);
	else if (word_is(w, "tsc_khz", &v))
		ret = parse_num(v, &p->tsc_khz, false);
	else if (word_is(w, "zero", &v) && !(ret = parse_num(v, &n, false)))
		p->zero_pct = n > 100 ? 101 : (uint32_t)n;
	else if (word_is(w, "dup", &v) && !(ret = parse_num(v, &n, false)))
		p->dup_pct = n > 100 ? 101 : (uint32_t)n;
	else if (word_is(w, "hb_ms", &v) && !(ret = parse_num(v, &n, false)))
		p->hb_ms = n > 3600000 ? 0 : (uint32_t)n;
	else if (word_is(w, "cpus", &v) && !(ret = parse_num(v, &n, false)))
		p->cpus = n > WL_MAX_CPUS ? 0 : (uint32_t)n;
	else if (word_is(w, "hot", &v) && !(ret = parse_num(v, &n, false)))
		p->hot_pct = n > 100 ? 101 : (uint32_t)n;
	else if (word_is(w, "pattern", &v)) {
		if (v[0] == 'r')
			p->pattern = WL_PATTERN_RANDOM;
		else if (v[0] == 's')
			p->pattern = WL_PATTERN_SEQUENTIAL;
		else
			ret = -EINVAL_;
	}
	return ret;
}

static int params_check(const struct wl_params *p)
{
	if (p->ws_bytes < WL_PAGE_SIZE * WL_MAX_CPUS ||
	    p->ws_bytes % WL_PAGE_SIZE || p->ws_bytes > (1ull << 40))
		return -EINVAL_;
	if (p->zero_pct + p->dup_pct > 100 || !p->hb_ms || !p->cpus ||
	    p->cpus > WL_MAX_CPUS || p->rate_mibs > 1000000 ||
	    p->hot_pct > 100)
		return -EINVAL_;
	return 0;
}

int wl_params_parse(struct wl_params *p, const char *cmdline,
		    const char **bad)
{
	const char *w = cmdline;
	int ret;

	while (w && *w) {
		while (*w == ' ')
			w++;
		if (!*w)
			break;
		ret = parse_word(p, w);
		if (ret) {
			if (bad)
				*bad = w;
			return ret;
		}
		while (*w && *w != ' ')
			w++;
	}
	ret = params_check(p);
	if (ret && bad)
		*bad = "(combination)";
	return ret;
}

static uint64_t hdr_bytes(uint64_t npages)
{
	uint64_t b = sizeof(struct wl_hdr) + npages * sizeof(uint32_t);

	return (b + WL_PAGE_SIZE - 1) & ~(uint64_t)(WL_PAGE_SIZE - 1);
}

uint64_t wl_ram_needed(const struct wl_params *p)
{
	uint64_t npages = p->ws_bytes / WL_PAGE_SIZE;

	return WL_WS_GPA + hdr_bytes(npages) + npages * WL_PAGE_SIZE;
}

/* ---- page content ---- */

static uint64_t page_key(const struct wl_hdr *h, uint64_t index, uint64_t gen)
{
	return mix64(h->p.seed ^ mix64(index * 0x100000001ull + gen));
}

static enum page_class page_class(const struct wl_hdr *h, uint64_t index,
				  uint64_t gen, unsigned int *tmpl)
{
	uint64_t k = page_key(h, index, gen);
	uint32_t pct = (uint32_t)((k >> 32) % 100);

	*tmpl = (unsigned int)(k & (WL_TEMPLATES - 1));
	if (pct < h->p.zero_pct)
		return CLASS_ZERO;
	if (pct < h->p.zero_pct + h->p.dup_pct)
		return CLASS_DUP;
	return CLASS_STAMP;
}

static volatile uint64_t *page_ptr(const struct wl_env *env,
				   const struct wl_hdr *h, uint64_t index)
{
	return (volatile uint64_t *)(env->mem + h->pages_gpa +
				     index * WL_PAGE_SIZE);
}

static uint32_t *gens_of(const struct wl_env *env, const struct wl_hdr *h)
{
	return (uint32_t *)(env->mem + h->gens_gpa);
}

static uint64_t tmpl_seed(const struct wl_hdr *h, unsigned int t)
{
	return mix64(h->p.seed * 31 + t + 1) | 1;
}

static void fill_random(volatile uint64_t *w, size_t n, uint64_t s)
{
	for (size_t i = 0; i < n; i++)
		w[i] = xorshift(&s);
}

#define PAGE_WORDS (WL_PAGE_SIZE / 8)
#define STAMP_WORDS (sizeof(struct wl_stamp) / 8)

static void write_page(const struct wl_env *env, struct wl_hdr *h,
		       uint64_t index, uint32_t gen)
{
	volatile uint64_t *w = page_ptr(env, h, index);
	unsigned int t;

	switch (page_class(h, index, gen, &t)) {
	case CLASS_ZERO:
		for (size_t i = 0; i < PAGE_WORDS; i++)
			w[i] = 0;
		break;
	case CLASS_DUP:
		fill_random(w, PAGE_WORDS, tmpl_seed(h, t));
		break;
	case CLASS_STAMP:
		fill_random(w + STAMP_WORDS, PAGE_WORDS - STAMP_WORDS,
			    page_key(h, index, gen) | 1);
		w[0] = WL_STAMP_MAGIC;
		w[1] = index;
		w[2] = gen;
		w[3] = csum_words(w + STAMP_WORDS, PAGE_WORDS - STAMP_WORDS);
		break;
	}
	gens_of(env, h)[index] = gen;
}

static int check_page(const struct wl_env *env, const struct wl_hdr *h,
		      uint64_t index, uint64_t *found)
{
	volatile uint64_t *w = page_ptr(env, h, index);
	uint32_t gen = gens_of(env, h)[index];
	unsigned int t;

	*found = 0;
	switch (page_class(h, index, gen, &t)) {
	case CLASS_ZERO:
		for (size_t i = 0; i < PAGE_WORDS; i++)
			if (w[i])
				return (*found = i * 8), ERR_ZERO;
		return 0;
	case CLASS_DUP:
		*found = csum_words(w, PAGE_WORDS);
		return *found == h->tmpl_csum[t] ? 0 : ERR_DUP;
	case CLASS_STAMP:
		break;
	}
	*found = w[2];
	if (w[0] != WL_STAMP_MAGIC)
		return ERR_MAGIC;
	if (w[1] != index)
		return (*found = w[1]), ERR_INDEX;
	if (w[2] != gen)
		return w[2] < gen ? ERR_STALE : ERR_FUTURE;
	if (csum_words(w + STAMP_WORDS, PAGE_WORDS - STAMP_WORDS) != w[3])
		return ERR_CSUM;
	return 0;
}

/* ---- init ---- */

struct wl_hdr *wl_hdr_get(const struct wl_env *env)
{
	struct wl_hdr *h = hdr_of(env);

	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != WL_HDR_MAGIC)
		return 0;
	return h;
}

static void print_banner(const struct wl_env *env, const struct wl_hdr *h)
{
	struct line l = { .len = 0 };

	put_str(&l, "GUEST");
	put_kv(&l, "ws_gpa", h->pages_gpa, true);
	put_kv(&l, "gens_gpa", h->gens_gpa, true);
	put_kv(&l, "pages", h->npages, false);
	put_kv(&l, "cpus", h->p.cpus, false);
	put_kv(&l, "seed", h->p.seed, false);
	put_kv(&l, "rate", h->p.rate_mibs, false);
	put_kv(&l, "zero", h->p.zero_pct, false);
	put_kv(&l, "dup", h->p.dup_pct, false);
	put_kv(&l, "hot", h->p.hot_pct, false);
	put_kv(&l, "tsc_khz", h->p.tsc_khz, false);
	put_str(&l, h->p.pattern ? " pattern=sequential" : " pattern=random");
	emit(env, &l);
}

int wl_init(const struct wl_env *env, const struct wl_params *p)
{
	struct wl_hdr *h = hdr_of(env);
	uint64_t now;

	if (params_check(p) || !p->tsc_khz)
		return -EINVAL_;
	for (size_t i = 0; i < sizeof(*h) / 8; i++)
		((volatile uint64_t *)h)[i] = 0;
	h->p = *p;
	h->npages = p->ws_bytes / WL_PAGE_SIZE;
	h->gens_gpa = WL_WS_GPA + sizeof(*h);
	h->pages_gpa = WL_WS_GPA + hdr_bytes(h->npages);
	for (unsigned int t = 0; t < WL_TEMPLATES; t++) {
		uint64_t s = tmpl_seed(h, t), hs = 0xcbf29ce484222325ull;

		for (size_t i = 0; i < PAGE_WORDS; i++)
			hs = (hs ^ xorshift(&s)) * 0x100000001b3ull;
		h->tmpl_csum[t] = hs;
	}
	now = env->now(env->arg);
	h->start_tick = now;
	h->next_hb = now + (uint64_t)p->hb_ms * p->tsc_khz;
	for (unsigned int c = 0; c < p->cpus; c++) {
		h->cpu[c].rng = mix64(p->seed + c) | 1;
		h->cpu[c].last_tick = now;
	}
	print_banner(env, h);
	__atomic_store_n(&h->magic, WL_HDR_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

/* ---- the step ---- */

static uint64_t slots(const struct wl_hdr *h, unsigned int cpu)
{
	return (h->npages - cpu + h->p.cpus - 1) / h->p.cpus;
}

static void report(const struct wl_env *env, struct wl_hdr *h,
		   uint64_t index, int kind, uint64_t found)
{
	struct line l = { .len = 0 };

	put_str(&l, "ERR");
	put_kv(&l, "page", index, false);
	put_kv(&l, "gpa", h->pages_gpa + index * WL_PAGE_SIZE, true);
	put_str(&l, " kind=");
	put_str(&l, err_names[kind]);
	put_kv(&l, "gen", gens_of(env, h)[index], false);
	put_kv(&l, "found", found, true);
	emit(env, &l);
	__atomic_store_n(&h->failed, 1, __ATOMIC_RELEASE);
}

static bool verify_one(const struct wl_env *env, struct wl_hdr *h,
		       struct wl_cpu *c, uint64_t index)
{
	uint64_t found;
	int kind = check_page(env, h, index, &found);

	bump(&c->verified);
	if (!kind)
		return true;
	bump(&c->errors);
	report(env, h, index, kind, found);
	return false;
}

static bool fill_some(const struct wl_env *env, struct wl_hdr *h,
		      struct wl_cpu *c, unsigned int cpu)
{
	uint64_t n = slots(h, cpu);

	for (int i = 0; i < 64 && c->fill_next < n; i++, c->fill_next++)
		write_page(env, h, c->fill_next * h->p.cpus + cpu, 0);
	return c->fill_next >= n;
}

static bool dirty_some(const struct wl_env *env, struct wl_hdr *h,
		       struct wl_cpu *c, unsigned int cpu, uint64_t now)
{
	uint64_t n = slots(h, cpu), el = now - c->credit_tick;
	uint64_t cap = h->p.tsc_khz * 100;	/* at most 100 ms of credit */
	/* bytes per ms for this CPU; rate <= 1e6 MiB/s keeps this in range */
	uint64_t bpms = (h->p.rate_mibs << 20) / 1000 / h->p.cpus;

	/* A hot set: the first hot_pct% of this CPU's slots, which are the
	 * first hot_pct% of the working set (slots interleave the CPUs). */
	if (h->p.hot_pct && h->p.hot_pct < 100)
		n = n * h->p.hot_pct / 100 ? n * h->p.hot_pct / 100 : 1;

	if (el > cap)
		el = cap;
	c->credit += el * bpms / h->p.tsc_khz;
	c->credit_tick = now;
	for (int i = 0; i < 64 && c->credit >= WL_PAGE_SIZE; i++) {
		uint64_t slot, index;

		if (h->p.pattern == WL_PATTERN_SEQUENTIAL)
			slot = c->wcursor++ % n;
		else
			slot = xorshift(&c->rng) % n;
		index = slot * h->p.cpus + cpu;
		if (!verify_one(env, h, c, index))
			return false;
		write_page(env, h, index, gens_of(env, h)[index] + 1);
		bump(&c->dirtied);
		c->credit -= WL_PAGE_SIZE;
	}
	return true;
}

static bool verify_some(const struct wl_env *env, struct wl_hdr *h,
			struct wl_cpu *c, unsigned int cpu)
{
	uint64_t n = slots(h, cpu);

	for (int i = 0; i < 16; i++) {
		if (!verify_one(env, h, c, c->vcursor * h->p.cpus + cpu))
			return false;
		if (++c->vcursor >= n) {
			c->vcursor = 0;
			bump(&c->passes);
			__atomic_store_n(&c->rpasses, c->rpasses + 1,
					 __ATOMIC_RELEASE);
		}
	}
	return true;
}

/* Passes CPU @c made entirely within the current resume epoch: none while
 * it has not yet seen the epoch CPU 0 published. */
static uint64_t cpu_rpasses(const struct wl_hdr *h, const struct wl_cpu *c)
{
	uint64_t rp = __atomic_load_n(&c->rpasses, __ATOMIC_ACQUIRE);

	return __atomic_load_n(&c->epoch, __ATOMIC_ACQUIRE) == h->epoch ? rp : 0;
}

/* Prints a heartbeat; returns the whole working set's passes since resume
 * and its error count in *@errors. */
static uint64_t heartbeat(const struct wl_env *env, struct wl_hdr *h,
			  uint64_t now, uint64_t *errors)
{
	struct line l = { .len = 0 };
	uint64_t iter = ~0ull, rpass = ~0ull, ver = 0, dirt = 0, err = 0;
	uint64_t gap = 0;

	for (unsigned int i = 0; i < h->p.cpus; i++) {
		struct wl_cpu *c = &h->cpu[i];
		uint64_t g = __atomic_exchange_n(&c->maxgap, 0,
						 __ATOMIC_RELAXED);
		uint64_t passes = __atomic_load_n(&c->passes,
						  __ATOMIC_RELAXED);
		uint64_t rp = cpu_rpasses(h, c);

		/* Whole working set: the slowest CPU's partition. */
		iter = passes < iter ? passes : iter;
		rpass = rp < rpass ? rp : rpass;
		ver += __atomic_load_n(&c->verified, __ATOMIC_RELAXED);
		dirt += __atomic_load_n(&c->dirtied, __ATOMIC_RELAXED);
		err += __atomic_load_n(&c->errors, __ATOMIC_RELAXED);
		gap = g > gap ? g : gap;
	}
	h->hb_count++;
	put_str(&l, "HB");
	put_kv(&l, "n", h->hb_count, false);
	put_kv(&l, "iter", iter, false);
	put_kv(&l, "rpasses", rpass, false);
	put_kv(&l, "verified", ver, false);
	put_kv(&l, "dirtied", dirt, false);
	put_kv(&l, "errors", err, false);
	put_kv(&l, "maxgap_us", gap * 1000 / h->p.tsc_khz, false);
	put_kv(&l, "t_ms", (now - h->start_tick) / h->p.tsc_khz, false);
	emit(env, &l);
	*errors = err;
	return rpass;
}

/* CPU 0, at a heartbeat: publishes a new resume epoch when the VMM's token
 * changed, so that every CPU restarts its pass (see workload.h). */
static void check_resume(const struct wl_env *env, struct wl_hdr *h)
{
	uint32_t t;

	if (!env->resume_token)
		return;
	t = env->resume_token(env->arg);
	if (t != h->epoch)
		__atomic_store_n(&h->epoch, t, __ATOMIC_RELEASE);
}

/* Any CPU, each step: enters a newly published epoch with a fresh pass. */
static void follow_epoch(struct wl_hdr *h, struct wl_cpu *c)
{
	uint32_t e = __atomic_load_n(&h->epoch, __ATOMIC_ACQUIRE);

	if (c->epoch == e)
		return;
	__atomic_store_n(&c->rpasses, 0, __ATOMIC_RELAXED);
	c->vcursor = 0;
	__atomic_store_n(&c->epoch, e, __ATOMIC_RELEASE);
}

static void print_done(const struct wl_env *env, struct wl_hdr *h,
		       uint64_t rpass, uint64_t errors)
{
	struct line l = { .len = 0 };

	put_str(&l, "DONE");
	put_kv(&l, "heartbeats", h->hb_count, false);
	put_kv(&l, "rpasses", rpass, false);
	put_kv(&l, "pages", h->npages, false);
	put_kv(&l, "errors", errors, false);
	emit(env, &l);
}

static enum wl_status heartbeat_due(const struct wl_env *env,
				    struct wl_hdr *h, struct wl_cpu *c,
				    uint64_t now)
{
	uint64_t period = (uint64_t)h->p.hb_ms * h->p.tsc_khz;
	uint64_t rpass, errors;

	if ((int64_t)(now - h->next_hb) < 0)
		return WL_RUNNING;
	check_resume(env, h);
	rpass = heartbeat(env, h, now, &errors);
	h->next_hb += period;
	if ((int64_t)(now - h->next_hb) >= 0) /* fell behind: no burst */
		h->next_hb = now + period;
	/* Printing is not a stall of the workload. */
	c->last_tick = env->now(env->arg);
	/* Done only once every page was checked since the last resume. */
	if (h->p.hbs && h->hb_count >= h->p.hbs && rpass >= 1 && !errors) {
		print_done(env, h, rpass, errors);
		__atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
		return WL_DONE;
	}
	return WL_RUNNING;
}

/* CPU 0: announces once that every CPU has filled its part. */
static void check_filled(const struct wl_env *env, struct wl_hdr *h,
			 uint64_t now)
{
	struct line l = { .len = 0 };

	for (unsigned int i = 0; i < h->p.cpus; i++)
		if (!__atomic_load_n(&h->cpu[i].phase, __ATOMIC_ACQUIRE))
			return;
	h->filled = 1;
	put_str(&l, "FILLED");
	put_kv(&l, "pages", h->npages, false);
	put_kv(&l, "t_ms", (now - h->start_tick) / h->p.tsc_khz, false);
	emit(env, &l);
}

enum wl_status wl_step(const struct wl_env *env, unsigned int cpu)
{
	struct wl_hdr *h = hdr_of(env);
	struct wl_cpu *c = &h->cpu[cpu];
	uint64_t now = env->now(env->arg);

	if (__atomic_load_n(&h->failed, __ATOMIC_ACQUIRE))
		return WL_FAILED;
	if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE))
		return WL_DONE;
	if (now - c->last_tick > __atomic_load_n(&c->maxgap, __ATOMIC_RELAXED) &&
	    (int64_t)(now - c->last_tick) > 0)
		__atomic_store_n(&c->maxgap, now - c->last_tick,
				 __ATOMIC_RELAXED);
	c->last_tick = now;
	follow_epoch(h, c);
	if (c->phase == 0) {
		if (fill_some(env, h, c, cpu)) {
			__atomic_store_n(&c->phase, 1, __ATOMIC_RELEASE);
			c->credit_tick = now;
		}
	} else {
		if (h->p.rate_mibs && !dirty_some(env, h, c, cpu, now))
			return WL_FAILED;
		if (!verify_some(env, h, c, cpu))
			return WL_FAILED;
	}
	if (cpu != 0)
		return WL_RUNNING;
	if (!h->filled)
		check_filled(env, h, now);
	return heartbeat_due(env, h, c, now);
}

int wl_verify_page(const struct wl_env *env, uint64_t index)
{
	const struct wl_hdr *h = wl_hdr_get(env);
	uint64_t found;

	if (!h || index >= h->npages)
		return -EINVAL_;
	return check_page(env, h, index, &found);
}
