// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Page scanning: zero-page detection and content hashing.
 *
 * gm_is_zero() is an ifunc: the dynamic loader (or, statically, the first
 * call through the PLT) asks the resolver once which variant the CPU can
 * run, so there is no mutable dispatch state and no per-call check.
 */
#include "config.h"

#include <immintrin.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guestmem/internal.h"

bool gm_is_zero_scalar(const void *p, size_t len)
{
	const uint64_t *w = p;
	uint64_t acc = 0;

	/* OR eight words per step, checking only once per 64 bytes, so that
	 * a non-zero page is usually rejected within its first cache line. */
	for (size_t i = 0; i < len / 8; i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] |
		       w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

__attribute__((target("avx2"))) bool gm_is_zero_avx2(const void *p,
						      size_t len)
{
	const __m256i *v = p;

	for (size_t i = 0; i < len / 32; i += 2) {
		__m256i acc = _mm256_or_si256(_mm256_loadu_si256(v + i),
					      _mm256_loadu_si256(v + i + 1));

		if (!_mm256_testz_si256(acc, acc))
			return false;
	}
	return true;
}

__attribute__((target("avx512f"))) bool gm_is_zero_avx512(const void *p,
							   size_t len)
{
	const __m512i *v = p;

	for (size_t i = 0; i < len / 64; i += 4) {
		size_t left = len / 64 - i;
		__m512i acc = _mm512_loadu_si512(v + i);

		/* len is a multiple of 64, not of 256: mind the tail. */
		if (left >= 4)
			acc = _mm512_or_si512(
				_mm512_or_si512(acc, _mm512_loadu_si512(v + i + 1)),
				_mm512_or_si512(_mm512_loadu_si512(v + i + 2),
						_mm512_loadu_si512(v + i + 3)));
		else
			for (size_t k = 1; k < left; k++)
				acc = _mm512_or_si512(
					acc, _mm512_loadu_si512(v + i + k));
		if (_mm512_test_epi64_mask(acc, acc))
			return false;
	}
	return true;
}

typedef bool (*is_zero_fn)(const void *, size_t);

/* An ifunc resolver runs during relocation, before a sanitizer's runtime
 * is up: it must not be instrumented (UBSan's check of the cpu-model load
 * crashed every sanitized program at start). */
__attribute__((no_sanitize("address", "undefined", "thread")))
static is_zero_fn resolve_is_zero(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return gm_is_zero_avx512;
	if (__builtin_cpu_supports("avx2"))
		return gm_is_zero_avx2;
	return gm_is_zero_scalar;
}

static bool is_zero_vec(const void *p, size_t len)
	__attribute__((ifunc("resolve_is_zero")));

bool gm_is_zero(const void *p, size_t len)
{
	const uint8_t *tail = (const uint8_t *)p + (len & ~(size_t)63);

	if (!p)
		return true;
	/* The variants take whole 64-byte blocks (pages always are); a short
	 * tail is checked bytewise, first, since it is the cheapest. */
	for (size_t i = 0; i < (len & 63); i++)
		if (tail[i])
			return false;
	return is_zero_vec(p, len & ~(size_t)63);
}

const char *gm_is_zero_impl(void)
{
	is_zero_fn f = resolve_is_zero();

	return f == gm_is_zero_avx512 ? "avx512" :
	       f == gm_is_zero_avx2   ? "avx2" :
					"scalar";
}

void gm_hash(const void *p, size_t len, struct gm_hash *out)
{
	XXH128_hash_t h;

	if (!out)
		return;
	h = XXH3_128bits(p, p ? len : 0);
	out->lo = h.low64;
	out->hi = h.high64;
}
