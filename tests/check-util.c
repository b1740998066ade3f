// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for util: logging, bitmaps, clock, histogram. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "check-util"
#include "util/err.h"
#include "util/util.h"

/* ---- logging ---- */

struct captured {
	char last[1024];
	int n;
};

static void capture(enum ut_log_level lvl, const char *msg, void *arg)
{
	struct captured *c = arg;

	snprintf(c->last, sizeof(c->last), "%s", msg);
	c->n++;
}

START_TEST(log_prefix_and_level)
{
	struct captured c = { 0 };

	ut_log_set_sink(capture, &c);
	ut_log_set_level(UT_LOG_WARN);
	pr_err("value %d", 42);
	ck_assert_str_eq(c.last, "check-util: value 42");
	pr_info("hidden");
	ck_assert_int_eq(c.n, 1);
	ut_log_set_level(UT_LOG_DEBUG);
	pr_debug("shown");
	ck_assert_int_eq(c.n, 2);
	ck_assert_str_eq(c.last, "check-util: shown");
	ut_log_set_sink(NULL, NULL);
	ut_log_set_level(UT_LOG_WARN);
}
END_TEST

START_TEST(log_level_parse)
{
	enum ut_log_level l;

	ck_assert_int_eq(ut_log_level_parse("debug", &l), 0);
	ck_assert_int_eq(l, UT_LOG_DEBUG);
	ck_assert_int_eq(ut_log_level_parse("err", &l), 0);
	ck_assert_int_eq(l, UT_LOG_ERR);
	ck_assert_int_eq(ut_log_level_parse("loud", &l), -EINVAL);
	ck_assert_int_eq(ut_log_level_parse(NULL, &l), -EINVAL);
}
END_TEST

/* ---- bitmaps ---- */


START_TEST(bitmap_set_test_clear)
{
	struct ut_bitmap b;

	ck_assert_int_eq(ut_bitmap_init(&b, 130), 0);
	ck_assert(!ut_bitmap_test(&b, 0));
	ck_assert_int_eq(ut_bitmap_set(&b, 0), 0);
	ck_assert_int_eq(ut_bitmap_set(&b, 63), 0);
	ck_assert_int_eq(ut_bitmap_set(&b, 64), 0);
	ck_assert_int_eq(ut_bitmap_set(&b, 129), 0);
	ck_assert(ut_bitmap_test(&b, 63) && ut_bitmap_test(&b, 64));
	ck_assert(!ut_bitmap_test(&b, 65));
	ck_assert_int_eq(ut_bitmap_count(&b), 4);
	ck_assert_int_eq(ut_bitmap_clear(&b, 63), 0);
	ck_assert(!ut_bitmap_test(&b, 63));
	ck_assert(ut_bitmap_test_and_set(&b, 0));
	ck_assert(!ut_bitmap_test_and_set(&b, 1));
	ck_assert(ut_bitmap_test_and_clear(&b, 1));
	ck_assert(!ut_bitmap_test_and_clear(&b, 1));
	ck_assert_int_eq(ut_bitmap_count(&b), 3);
	ut_bitmap_fini(&b);
	ut_bitmap_fini(&b); /* idempotent */
}
END_TEST

START_TEST(bitmap_bounds)
{
	struct ut_bitmap b;

	ut_log_set_sink(capture, &(struct captured){ 0 });
	ck_assert_int_eq(ut_bitmap_init(&b, 0), -EINVAL);
	ck_assert_int_eq(ut_bitmap_init(&b, 10), 0);
	ck_assert_int_eq(ut_bitmap_set(&b, 10), -EINVAL);
	ck_assert_int_eq(ut_bitmap_clear(&b, 1000), -EINVAL);
	ck_assert(!ut_bitmap_test(&b, 10));
	ck_assert(!ut_bitmap_test_and_set(&b, 11));
	ck_assert_int_eq(ut_bitmap_set_range(&b, 5, 6), -EINVAL);
	ck_assert_int_eq(ut_bitmap_set_range(&b, UINT64_MAX, 2), -EINVAL);
	ck_assert_int_eq(ut_bitmap_count(&b), 0);
	ut_bitmap_fini(&b);
	ut_log_set_sink(NULL, NULL);
}
END_TEST

START_TEST(bitmap_find_next)
{
	struct ut_bitmap b;

	ck_assert_int_eq(ut_bitmap_init(&b, 200), 0);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 0), 200);
	ck_assert_int_eq(ut_bitmap_find_next_zero(&b, 0), 0);
	ut_bitmap_set(&b, 5);
	ut_bitmap_set(&b, 70);
	ut_bitmap_set(&b, 199);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 0), 5);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 5), 5);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 6), 70);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 71), 199);
	ck_assert_int_eq(ut_bitmap_find_next(&b, 200), 200);
	/* Bounded: the end, not a bit past it, when none is in range. */
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 0, 5), 5);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 0, 6), 5);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 6, 70), 70);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 6, 64), 64);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 6, 71), 70);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 71, 199), 199);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 71, 1000), 199);
	ck_assert_int_eq(ut_bitmap_find_next_below(&b, 80, 80), 80);
	ck_assert_int_eq(ut_bitmap_set_range(&b, 0, 200), 0);
	ck_assert_int_eq(ut_bitmap_find_next_zero(&b, 0), 200);
	ut_bitmap_clear(&b, 128);
	ck_assert_int_eq(ut_bitmap_find_next_zero(&b, 3), 128);
	ut_bitmap_fini(&b);
}
END_TEST

START_TEST(bitmap_ranges_against_reference)
{
	const uint64_t n = 1000;
	struct ut_bitmap b;
	char ref[1000];

	srand(7);
	memset(ref, 0, sizeof(ref));
	ck_assert_int_eq(ut_bitmap_init(&b, n), 0);
	for (int iter = 0; iter < 2000; iter++) {
		uint64_t s = rand() % n, len = rand() % (n - s + 1);
		bool set = rand() & 1;

		if (set)
			ck_assert_int_eq(ut_bitmap_set_range(&b, s, len), 0);
		else
			ck_assert_int_eq(ut_bitmap_clear_range(&b, s, len), 0);
		memset(ref + s, set, len);
	}
	uint64_t count = 0;
	for (uint64_t i = 0; i < n; i++) {
		ck_assert_int_eq(ut_bitmap_test(&b, i), ref[i]);
		count += ref[i];
	}
	ck_assert_uint_eq(ut_bitmap_count(&b), count);
	for (uint64_t i = 0, j = 0; i < n; i = j + 1) {
		j = ut_bitmap_find_next(&b, i);
		for (uint64_t k = i; k < j && k < n; k++)
			ck_assert(!ref[k]);
		if (j >= n)
			break;
		ck_assert(ref[j]);
	}
	ut_bitmap_clear_all(&b);
	ck_assert_uint_eq(ut_bitmap_count(&b), 0);
	ut_bitmap_fini(&b);
}
END_TEST

struct race {
	struct ut_bitmap *b;
	uint64_t won;
};

static void *racer(void *arg)
{
	struct race *r = arg;

	for (uint64_t i = 0; i < r->b->nbits; i++)
		if (!ut_bitmap_test_and_set(r->b, i))
			r->won++;
	return NULL;
}

START_TEST(bitmap_test_and_set_is_atomic)
{
	struct ut_bitmap b;
	struct race r[4];
	pthread_t t[4];
	uint64_t total = 0;

	ck_assert_int_eq(ut_bitmap_init(&b, 1 << 18), 0);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){ .b = &b };
		ck_assert_int_eq(pthread_create(&t[i], NULL, racer, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		total += r[i].won;
	}
	/* Every bit was won by exactly one thread. */
	ck_assert_uint_eq(total, 1 << 18);
	ck_assert_uint_eq(ut_bitmap_count(&b), 1 << 18);
	ut_bitmap_fini(&b);
}
END_TEST

/* ---- clock ---- */

START_TEST(clock_monotonic)
{
	uint64_t a = ut_now_ns(), b;

	usleep(2000);
	b = ut_now_ns();
	ck_assert_uint_ge(b - a, 2000000);
	ck_assert(ut_cpu_seconds() >= 0);
}
END_TEST

/* ---- histogram ---- */

START_TEST(hist_buckets)
{
	struct ut_hist h;

	ut_hist_init(&h);
	ck_assert(ut_hist_percentile_us(&h, 0.5) == 0);
	ut_hist_record(&h, 500);     /* 0.5 us -> bucket 0 */
	ut_hist_record(&h, 1000);    /* 1 us -> bucket 1 */
	ut_hist_record(&h, 3000);    /* 3 us -> bucket 2 */
	ut_hist_record(&h, 1000000); /* 1 ms -> bucket 10 */
	ck_assert_uint_eq(atomic_load(&h.bucket[0]), 1);
	ck_assert_uint_eq(atomic_load(&h.bucket[1]), 1);
	ck_assert_uint_eq(atomic_load(&h.bucket[2]), 1);
	ck_assert_uint_eq(atomic_load(&h.bucket[10]), 1);
	ck_assert_uint_eq(ut_hist_bucket_lo_us(10), 512);
	ck_assert(ut_hist_max_us(&h) == 1000.0);
}
END_TEST

START_TEST(hist_percentiles)
{
	struct ut_hist h, h2;

	ut_hist_init(&h);
	ut_hist_init(&h2);
	/* 98 samples at 10 us, 2 at 5 ms. */
	for (int i = 0; i < 98; i++)
		ut_hist_record(&h, 10000);
	ut_hist_record(&h, 5000000);
	ut_hist_record(&h2, 5000000);
	ut_hist_merge(&h, &h2);
	ck_assert_uint_eq(atomic_load(&h.count), 100);
	/* 10 us lies in [8, 16): p50 reports the bucket bound 16. */
	ck_assert(ut_hist_percentile_us(&h, 0.5) == 16.0);
	ck_assert(ut_hist_percentile_us(&h, 0.98) == 16.0);
	/* p99 falls among the 5 ms samples; clamped to the max. */
	ck_assert(ut_hist_percentile_us(&h, 0.99) == 5000.0);
	ck_assert(ut_hist_percentile_us(&h, 1.0) == 5000.0);
	ck_assert(ut_hist_mean_us(&h) > 100 && ut_hist_mean_us(&h) < 120);
}
END_TEST

static int read_adj(void)
{
	FILE *f = fopen("/proc/self/oom_score_adj", "re");
	int v = 12345;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &v), 1);
	fclose(f);
	return v;
}

/* CAP_SYS_RESOURCE (bit 24) in the effective set, from /proc. */
static bool have_sys_resource(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	unsigned long long cap = 0;
	char line[256];

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &cap) == 1)
			break;
	fclose(f);
	return cap & (1ull << 24);
}

/* With CAP_SYS_RESOURCE: exempt, then the old value back. Without it
 * (unprivileged, or a sandbox that drops it, like the development VM),
 * lowering is refused, the guard stays inactive and the value untouched. */
START_TEST(oom_protect_restore)
{
	struct ut_oom_guard g = { 0 };
	int before = read_adj(), ret;

	ret = ut_oom_protect(&g, "testing");
	if (!have_sys_resource()) {
		ck_assert(ret == -EACCES || ret == -EPERM);
		ck_assert(!g.active);
		ck_assert_int_eq(read_adj(), before);
		return;
	}
	ck_assert_int_eq(ret, 0);
	ck_assert(g.active);
	ck_assert_int_eq(read_adj(), UT_OOM_ADJ_MIN);
	ck_assert_int_eq(ut_oom_protect(&g, "testing"), 0); /* no-op */
	ut_oom_restore(&g);
	ck_assert(!g.active);
	ck_assert_int_eq(read_adj(), before);
	ut_oom_restore(&g);			/* inactive: nothing */
	ck_assert_int_eq(read_adj(), before);
}
END_TEST

START_TEST(hist_huge_sample)
{
	struct ut_hist h;

	ut_hist_init(&h);
	ut_hist_record(&h, UINT64_MAX / 2);
	ck_assert_uint_eq(atomic_load(&h.bucket[UT_HIST_BUCKETS - 1]), 1);
	ck_assert(ut_hist_percentile_us(&h, 0.5) > 0);
}
END_TEST

START_TEST(units_duration)
{
	static const struct { const char *s; uint64_t bare, ms; int ret; } t[] = {
		{ "500ms", 1, 500, 0 }, { "10s", 1, 10000, 0 },
		{ "2m", 1, 120000, 0 }, { "1h", 1, 3600000, 0 },
		{ "1.5s", 1, 1500, 0 }, { "300", 1, 300, 0 },
		{ "60", 1000, 60000, 0 }, { "0", 1, 0, 0 },
		{ "", 1, 0, -EINVAL }, { "s", 1, 0, -EINVAL },
		{ "10x", 1, 0, -EINVAL }, { "-1s", 1, 0, -EINVAL },
		{ "1e3", 1, 0, -EINVAL }, { "inf", 1, 0, -EINVAL },
		{ "10 s", 1, 0, -EINVAL }, { "1.2.3s", 1, 0, -EINVAL },
		{ "99999999999999h", 1, 0, -ERANGE },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(t); i++) {
		uint64_t v = 12345;
		int ret = ut_parse_duration_ms(t[i].s, t[i].bare, &v);

		ck_assert_msg(ret == t[i].ret, "'%s': %d", t[i].s, ret);
		if (!ret)
			ck_assert_msg(v == t[i].ms, "'%s': %llu", t[i].s,
				      (unsigned long long)v);
	}
}
END_TEST

START_TEST(units_size)
{
	static const struct { const char *s; uint64_t bare, v; int ret; } t[] = {
		{ "64M", 1, 64 << 20, 0 }, { "1G", 1, 1ULL << 30, 0 },
		{ "4k", 1, 4096, 0 }, { "2MiB", 1, 2 << 20, 0 },
		{ "1T", 1, 1ULL << 40, 0 }, { "10", 1 << 20, 10 << 20, 0 },
		{ "0.5G", 1, 512 << 20, 0 }, { "3MB", 1, 3 << 20, 0 },
		{ "12", 1, 12, 0 }, { "1X", 1, 0, -EINVAL },
		{ "M", 1, 0, -EINVAL }, { "1Mx", 1, 0, -EINVAL },
		{ "-4K", 1, 0, -EINVAL }, { "99999999T", 1, 0, -ERANGE },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(t); i++) {
		uint64_t v = 1;
		int ret = ut_parse_size(t[i].s, t[i].bare, &v);

		ck_assert_msg(ret == t[i].ret, "'%s': %d", t[i].s, ret);
		if (!ret)
			ck_assert_msg(v == t[i].v, "'%s': %llu", t[i].s,
				      (unsigned long long)v);
	}
}
END_TEST

START_TEST(json_build_and_parse)
{
	struct ut_json_member m[8];
	const struct ut_json_member *x;
	struct ut_json j;
	char buf[256];
	ssize_t n;
	int k;

	ut_json_begin(&j, buf, sizeof(buf));
	ut_json_str(&j, "event", "round \"end\"\n\x01");
	ut_json_u64(&j, "round", 3);
	ut_json_dbl(&j, "ms", 12.25, 2);
	ut_json_dbl(&j, "nan", 0.0 / 0.0, 1);
	ut_json_bool(&j, "ok", true);
	ut_json_i64(&j, "neg", -5);
	n = ut_json_end(&j);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(buf[n - 1], '\n');
	k = ut_json_parse(buf, n, m, 8);
	ck_assert_int_eq(k, 6);
	x = ut_json_get(m, k, "event");
	ck_assert_ptr_nonnull(x);
	ck_assert_int_eq(x->type, UT_JSON_STRING);
	ck_assert_str_eq(x->str, "round \"end\"\n\x01");
	ck_assert_double_eq(ut_json_get(m, k, "round")->num, 3);
	ck_assert_double_eq(ut_json_get(m, k, "ms")->num, 12.25);
	ck_assert_int_eq(ut_json_get(m, k, "nan")->type, UT_JSON_NULL);
	ck_assert(ut_json_get(m, k, "ok")->b);
	ck_assert_double_eq(ut_json_get(m, k, "neg")->num, -5);
	ck_assert_ptr_null(ut_json_get(m, k, "missing"));
	/* Too small a buffer: refused, never overrun. */
	ut_json_begin(&j, buf, 16);
	ut_json_str(&j, "key", "a value longer than the buffer");
	ck_assert_int_eq(ut_json_end(&j), -ENOSPC);
	ck_assert_int_lt(strlen(buf), 16);
}
END_TEST

START_TEST(json_parse_refuses)
{
	static const char *const bad[] = {
		"", "{", "}", "[1]", "{\"a\": {\"b\": 1}}", "{\"a\": [1]}",
		"{\"a\" 1}", "{\"a\": 1,}", "{a: 1}", "{\"a\": 1} x",
		"{\"a\": \"\\u0000\"}", "{\"a\": \"\\q\"}", "{\"a\": nul}",
		"{\"a\": 1e999}", "{\"a\": \"unterminated}",
	};
	struct ut_json_member m[2];

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(bad); i++)
		ck_assert_msg(ut_json_parse(bad[i], strlen(bad[i]), m, 2) < 0,
			      "accepted '%s'", bad[i]);
	ck_assert_int_eq(ut_json_parse("{}", 2, m, 2), 0);
	ck_assert_int_eq(ut_json_parse("{\"a\":1,\"b\":2,\"c\":3}", 19, m, 2),
			 -E2BIG);
	ck_assert_int_eq(ut_json_parse(" {\"a\" : true } \n", 16, m, 2), 1);
}
END_TEST

/* The one reason type: set replaces, first keeps, a reason may quote the
 * one it replaces, NULL drops it, and a long one is cut, not overrun. */
START_TEST(err_set_first_and_quote)
{
	struct ut_err e = { "" };
	char big[2 * UT_ERR_LEN];

	ck_assert(!ut_err_isset(&e));
	ck_assert_int_eq(ut_err_set(&e, -EPIPE, "peer gone (%d)", 32), -EPIPE);
	ck_assert_str_eq(e.msg, "peer gone (32)");
	ck_assert_int_eq(ut_err_first(&e, -EIO, "later"), -EIO);
	ck_assert_str_eq(e.msg, "peer gone (32)");
	ut_err_set(&e, -EIO, "bulk stream: %s", e.msg);
	ck_assert_str_eq(e.msg, "bulk stream: peer gone (32)");
	ut_err_clear(&e);
	ck_assert(!ut_err_isset(&e));
	ck_assert_int_eq(ut_err_first(&e, -EIO, "now %s", "this"), -EIO);
	ck_assert_str_eq(e.msg, "now this");
	ck_assert_int_eq(ut_err_set(NULL, -EINVAL, "dropped"), -EINVAL);
	ck_assert(!ut_err_isset(NULL));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	ut_err_set(&e, -E2BIG, "%s", big);
	ck_assert_uint_eq(strlen(e.msg), UT_ERR_LEN - 1);
}
END_TEST

/* Threads that fail at once into one reason: a start line lets them go
 * together; in every round exactly one reason stays whole, never a mix
 * (the old unclaimed write: two threads formatting over each other; a
 * TSan build reports that race). */
struct err_racer {
	struct ut_err *e;
	atomic_int *go;
	int id, rounds;
};

/* Thread @id's reason: its number, then its letter 40 + 60 * @id times,
 * so that any mix of two is told from either. */
static void err_racer_reason(char *buf, size_t len, int id)
{
	int n = snprintf(buf, len, "%d:", id);

	for (int k = 0; k < 40 + 60 * id && n + 1 < (int)len; k++)
		buf[n++] = 'a' + id;
	buf[n] = 0;
}

static void *err_racer_fn(void *arg)
{
	struct err_racer *r = arg;
	char why[UT_ERR_LEN];

	err_racer_reason(why, sizeof(why), r->id);
	for (int i = 0; i < r->rounds; i++) {
		while (atomic_load(r->go) <= i)
			;
		ut_err_first(&r->e[i], -EIO, "%s", why);
	}
	return NULL;
}

START_TEST(err_first_threads_race)
{
	enum { THREADS = 4, ROUNDS = 2000 };
	static struct ut_err e[ROUNDS];
	struct err_racer r[THREADS];
	pthread_t t[THREADS];
	atomic_int go = 0;
	char want[UT_ERR_LEN];
	int id;

	memset(e, 0, sizeof(e));
	for (int i = 0; i < THREADS; i++) {
		r[i] = (struct err_racer){ e, &go, i, ROUNDS };
		ck_assert_int_eq(pthread_create(&t[i], NULL, err_racer_fn,
						&r[i]), 0);
	}
	for (int i = 1; i <= ROUNDS; i++)
		atomic_store(&go, i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < ROUNDS; i++) {
		ck_assert_int_eq(sscanf(e[i].msg, "%d:", &id), 1);
		ck_assert(id >= 0 && id < THREADS);
		err_racer_reason(want, sizeof(want), id);
		ck_assert_str_eq(e[i].msg, want);
	}
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "log_prefix_and_level", log_prefix_and_level },
		{ "log_level_parse", log_level_parse },
		{ "bitmap_set_test_clear", bitmap_set_test_clear },
		{ "bitmap_bounds", bitmap_bounds },
		{ "bitmap_find_next", bitmap_find_next },
		{ "bitmap_ranges_against_reference",
		  bitmap_ranges_against_reference },
		{ "bitmap_test_and_set_is_atomic",
		  bitmap_test_and_set_is_atomic },
		{ "clock_monotonic", clock_monotonic },
		{ "hist_buckets", hist_buckets },
		{ "hist_percentiles", hist_percentiles },
		{ "hist_huge_sample", hist_huge_sample },
		{ "oom_protect_restore", oom_protect_restore },
		{ "units_duration", units_duration },
		{ "units_size", units_size },
		{ "json_build_and_parse", json_build_and_parse },
		{ "json_parse_refuses", json_parse_refuses },
		{ "err_set_first_and_quote", err_set_first_and_quote },
		{ "err_first_threads_race", err_first_threads_race },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(cases); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_set_timeout(tc, 30);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
