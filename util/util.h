/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util: the small leaf every Ferry module uses. Logging with a per-file
 * prefix, atomic page bitmaps, a monotonic clock and a log2 latency
 * histogram. Nothing here allocates behind the caller's back except
 * ut_bitmap_init(), and nothing exits or aborts.
 */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UT_DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define UT_IS_ALIGNED(x, a) ((((uint64_t)(x)) & ((uint64_t)(a) - 1)) == 0)
#define UT_ALIGN_UP(x, a) ((((uint64_t)(x)) + (a) - 1) & ~((uint64_t)(a) - 1))
#define UT_KiB (1024ULL)
#define UT_MiB (1024ULL * 1024)
#define UT_GiB (1024ULL * 1024 * 1024)

/* ---- logging ----------------------------------------------------------
 * Each .c file may #define LOG_PREFIX "name" before including this header;
 * messages then read "name: text". Messages go to stderr unless a sink is
 * set. The level and sink are the one process-wide setting of the
 * libraries (a logger has to be reachable from everywhere); set them from
 * main() before starting threads.
 */
enum ut_log_level {
	UT_LOG_ERR = 0,
	UT_LOG_WARN,
	UT_LOG_INFO,
	UT_LOG_DEBUG,
};

/* Receives every message at or below the current level, already formatted
 * without a trailing newline. Called from any thread. */
typedef void (*ut_log_sink_fn)(enum ut_log_level lvl, const char *msg,
			       void *arg);

/* Sets the maximum level printed (default UT_LOG_WARN). */
void ut_log_set_level(enum ut_log_level lvl);
enum ut_log_level ut_log_get_level(void);
/* Parses "err", "warn", "info" or "debug". Returns 0 or -EINVAL. */
int ut_log_level_parse(const char *s, enum ut_log_level *out);
/* Redirects messages to @fn (NULL restores stderr). */
void ut_log_set_sink(ut_log_sink_fn fn, void *arg);

void ut_log(enum ut_log_level lvl, const char *prefix, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#ifndef LOG_PREFIX
#define LOG_PREFIX "ferry"
#endif
#define pr_err(fmt, ...) ut_log(UT_LOG_ERR, LOG_PREFIX, fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) ut_log(UT_LOG_WARN, LOG_PREFIX, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) ut_log(UT_LOG_INFO, LOG_PREFIX, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) ut_log(UT_LOG_DEBUG, LOG_PREFIX, fmt, ##__VA_ARGS__)

/* ---- page bitmaps -----------------------------------------------------
 * One bit per page. Single-bit operations are atomic, so a fault thread and
 * a push thread may set and test the same bitmap concurrently. Scans
 * (find_next, count) see a consistent value per 64-bit word.
 */
struct ut_bitmap {
	uint64_t nbits;		/* number of valid bits */
	_Atomic uint64_t *words; /* UT_DIV_ROUND_UP(nbits, 64) words */
};

/* Allocates a cleared bitmap of @nbits (> 0). Returns 0, -EINVAL, -ENOMEM. */
int ut_bitmap_init(struct ut_bitmap *b, uint64_t nbits);
/* Frees the words; accepts a zeroed or already finished bitmap. */
void ut_bitmap_fini(struct ut_bitmap *b);
/* Bit operations return -EINVAL (and log) for @i >= nbits, else 0. */
int ut_bitmap_set(struct ut_bitmap *b, uint64_t i);
int ut_bitmap_clear(struct ut_bitmap *b, uint64_t i);
/* False for an out-of-range @i. */
bool ut_bitmap_test(const struct ut_bitmap *b, uint64_t i);
/* Atomically sets bit @i; returns its previous value (false if out of
 * range). Exactly one of several racing callers sees false. */
bool ut_bitmap_test_and_set(struct ut_bitmap *b, uint64_t i);
bool ut_bitmap_test_and_clear(struct ut_bitmap *b, uint64_t i);
/* Sets/clears [start, start + n). Returns 0 or -EINVAL if out of range. */
int ut_bitmap_set_range(struct ut_bitmap *b, uint64_t start, uint64_t n);
int ut_bitmap_clear_range(struct ut_bitmap *b, uint64_t start, uint64_t n);
void ut_bitmap_clear_all(struct ut_bitmap *b);
/* Index of the first set (or clear) bit >= @from, or nbits if none. */
uint64_t ut_bitmap_find_next(const struct ut_bitmap *b, uint64_t from);
uint64_t ut_bitmap_find_next_zero(const struct ut_bitmap *b, uint64_t from);
/* Index of the first set bit in [@from, @end), or @end if none (@end
 * clamped to nbits): a scan that stops where the caller's range does. */
uint64_t ut_bitmap_find_next_below(const struct ut_bitmap *b, uint64_t from,
				   uint64_t end);
/* Number of set bits. */
uint64_t ut_bitmap_count(const struct ut_bitmap *b);

/* ---- clock ------------------------------------------------------------ */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t ut_now_ns(void);
/* CPU time (user + system) of the whole process, in seconds. */
double ut_cpu_seconds(void);

/* ---- latency histogram ------------------------------------------------
 * Log2 buckets in microseconds, the shape of QEMU's postcopy-latency-dist:
 * bucket 0 holds samples below 1 us, bucket i (i >= 1) holds
 * [2^(i-1), 2^i) us. Recording is lock-free and may be done from any
 * thread; percentiles are the upper bound of the bucket that holds the
 * quantile, clamped to the exact maximum, so they are within 2x.
 */
#define UT_HIST_BUCKETS 40

struct ut_hist {
	_Atomic uint64_t bucket[UT_HIST_BUCKETS]; /* sample counts */
	_Atomic uint64_t count;			  /* samples */
	_Atomic uint64_t sum_ns;		  /* sum of samples, ns */
	_Atomic uint64_t max_ns;		  /* largest sample, ns */
};

void ut_hist_init(struct ut_hist *h);
void ut_hist_record(struct ut_hist *h, uint64_t ns);
/* Adds every sample of @src to @dst. */
void ut_hist_merge(struct ut_hist *dst, const struct ut_hist *src);
/* @q in [0, 1]; returns microseconds, 0 for an empty histogram. */
double ut_hist_percentile_us(const struct ut_hist *h, double q);
double ut_hist_max_us(const struct ut_hist *h);
double ut_hist_mean_us(const struct ut_hist *h);
/* Lower bound, in microseconds, of bucket @i (0 for bucket 0). */
uint64_t ut_hist_bucket_lo_us(unsigned int i);

/* ---- OOM protection (oom.c) -------------------------------------------
 * For the window in which an agent is the only way a running guest gets
 * its memory (postcopy): oom_score_adj -1000, the old value restored
 * after. Caller's storage, zero-initialised; main thread. */
#define UT_OOM_ADJ_MIN (-1000)
struct ut_oom_guard {
	int saved;	/* oom_score_adj before protect */
	bool active;	/* protect succeeded, restore pending */
};
/* Exempts the process (a no-op when already active); @why completes the
 * log lines ("serving postcopy faults"). 0, or -errno (the
 * agent goes on unprotected, e.g. without CAP_SYS_RESOURCE; said at info
 * level). */
int ut_oom_protect(struct ut_oom_guard *g, const char *why);
/* Restores the saved value; accepts an inactive guard. */
void ut_oom_restore(struct ut_oom_guard *g);

/* ---- units (units.c) ---------------------------------------------------
 * What a person types for a duration or a size. A duration is a decimal
 * number with a unit: ms, s, m (minutes) or h ("500ms", "10s", "1.5m");
 * a bare number is in @bare_ms milliseconds per unit (1 or 1000: the unit
 * an option always had). A size is a decimal number with an optional K,
 * M, G or T (powers of 1024; "KiB", "k" and "K" alike); a bare number is
 * @bare_unit bytes each. Both return 0 and the value, or -EINVAL (not a
 * number, an unknown unit) or -ERANGE (does not fit). */
int ut_parse_duration_ms(const char *s, uint64_t bare_ms, uint64_t *out);
int ut_parse_size(const char *s, uint64_t bare_unit, uint64_t *out);

/* ---- flat JSON (json.c) ------------------------------------------------
 * One JSON object on one line, no nesting: what the control socket and
 * the events stream speak. A builder writes into the caller's buffer and
 * escapes every string; a parser reads an object of string, number,
 * true/false/null members into a table. Neither allocates.
 */
struct ut_json {
	char *buf;	/* the caller's */
	size_t cap, len;
	bool first;	/* no member written yet */
	bool overflow;	/* something did not fit: the object is cut */
};
/* Starts "{" in @buf of @cap bytes. */
void ut_json_begin(struct ut_json *j, char *buf, size_t cap);
void ut_json_str(struct ut_json *j, const char *key, const char *v);
void ut_json_u64(struct ut_json *j, const char *key, uint64_t v);
void ut_json_i64(struct ut_json *j, const char *key, int64_t v);
/* Non-finite values are written as null. @prec digits after the point. */
void ut_json_dbl(struct ut_json *j, const char *key, double v, int prec);
void ut_json_bool(struct ut_json *j, const char *key, bool v);
void ut_json_null(struct ut_json *j, const char *key);
/* Closes the object with "}\n". Returns its length, or -ENOSPC when it
 * did not fit in the buffer (nothing usable then). */
ssize_t ut_json_end(struct ut_json *j);

#define UT_JSON_KEY 48		/* longest key, NUL included */
#define UT_JSON_STR 256		/* longest string value, NUL included */
enum ut_json_type { UT_JSON_STRING, UT_JSON_NUMBER, UT_JSON_BOOL,
		    UT_JSON_NULL };
struct ut_json_member {
	char key[UT_JSON_KEY];
	enum ut_json_type type;
	char str[UT_JSON_STR];	/* STRING, unescaped; NUMBER as written */
	double num;		/* NUMBER */
	bool b;			/* BOOL */
};
/* Parses one flat object from @s (@len bytes; a trailing newline and
 * blanks are fine) into at most @max members. Returns how many, or
 * -EINVAL (not such an object: nesting, bad syntax, a key or string too
 * long, \u escapes beyond Latin-1 and NUL are refused) or -E2BIG (more
 * than @max members). */
int ut_json_parse(const char *s, size_t len, struct ut_json_member *m,
		  int max);
/* The member named @key, or NULL. */
const struct ut_json_member *ut_json_get(const struct ut_json_member *m,
					 int n, const char *key);

#endif /* FERRY_UTIL_H */
