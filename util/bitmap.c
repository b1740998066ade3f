// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#define LOG_PREFIX "bitmap"
#include "util/util.h"

static inline uint64_t nwords(uint64_t nbits)
{
	return UT_DIV_ROUND_UP(nbits, 64);
}

/* Valid bits of the last word (all ones when nbits is a multiple of 64). */
static inline uint64_t tail_mask(uint64_t nbits)
{
	return (nbits % 64) ? (1ULL << (nbits % 64)) - 1 : ~0ULL;
}

int ut_bitmap_init(struct ut_bitmap *b, uint64_t nbits)
{
	if (!b || nbits == 0 || nbits > (1ULL << 48)) {
		pr_err("invalid bitmap size %llu", (unsigned long long)nbits);
		return -EINVAL;
	}
	b->words = calloc(nwords(nbits), sizeof(*b->words));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	return 0;
}

void ut_bitmap_fini(struct ut_bitmap *b)
{
	if (!b)
		return;
	free((void *)b->words);
	b->words = NULL;
	b->nbits = 0;
}

static inline bool in_range(const struct ut_bitmap *b, uint64_t i)
{
	return b && b->words && i < b->nbits;
}

static int out_of_range(const struct ut_bitmap *b, uint64_t i)
{
	pr_err("bit %llu out of range (%llu bits)", (unsigned long long)i,
	       (unsigned long long)(b ? b->nbits : 0));
	return -EINVAL;
}

int ut_bitmap_set(struct ut_bitmap *b, uint64_t i)
{
	if (!in_range(b, i))
		return out_of_range(b, i);
	atomic_fetch_or(&b->words[i / 64], 1ULL << (i % 64));
	return 0;
}

int ut_bitmap_clear(struct ut_bitmap *b, uint64_t i)
{
	if (!in_range(b, i))
		return out_of_range(b, i);
	atomic_fetch_and(&b->words[i / 64], ~(1ULL << (i % 64)));
	return 0;
}

bool ut_bitmap_test(const struct ut_bitmap *b, uint64_t i)
{
	if (!in_range(b, i))
		return false;
	return atomic_load(&b->words[i / 64]) & (1ULL << (i % 64));
}

bool ut_bitmap_test_and_set(struct ut_bitmap *b, uint64_t i)
{
	uint64_t bit = 1ULL << (i % 64);

	if (!in_range(b, i))
		return false;
	return atomic_fetch_or(&b->words[i / 64], bit) & bit;
}

bool ut_bitmap_test_and_clear(struct ut_bitmap *b, uint64_t i)
{
	uint64_t bit = 1ULL << (i % 64);

	if (!in_range(b, i))
		return false;
	return atomic_fetch_and(&b->words[i / 64], ~bit) & bit;
}

/* Applies set (or clear) to [start, start + n) a word at a time. */
static int update_range(struct ut_bitmap *b, uint64_t start, uint64_t n,
			bool set)
{
	uint64_t end = start + n;

	if (!b || !b->words || n > b->nbits || start > b->nbits - n) {
		pr_err("range %llu+%llu out of range", (unsigned long long)start,
		       (unsigned long long)n);
		return -EINVAL;
	}
	while (start < end) {
		uint64_t w = start / 64, lo = start % 64;
		uint64_t hi = (end - w * 64 >= 64) ? 64 : end - w * 64;
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) &
				~((1ULL << lo) - 1);

		if (set)
			atomic_fetch_or(&b->words[w], mask);
		else
			atomic_fetch_and(&b->words[w], ~mask);
		start = (w + 1) * 64;
	}
	return 0;
}

int ut_bitmap_set_range(struct ut_bitmap *b, uint64_t start, uint64_t n)
{
	return update_range(b, start, n, true);
}

int ut_bitmap_clear_range(struct ut_bitmap *b, uint64_t start, uint64_t n)
{
	return update_range(b, start, n, false);
}

void ut_bitmap_clear_all(struct ut_bitmap *b)
{
	if (!b || !b->words)
		return;
	for (uint64_t w = 0; w < nwords(b->nbits); w++)
		atomic_store(&b->words[w], 0);
}

/* Shared scan of [@from, @end): @invert finds zero bits by looking at
 * the complement. @end is at most nbits; nbits when nothing is found
 * there. */
static uint64_t find_next_in(const struct ut_bitmap *b, uint64_t from,
			     uint64_t end, bool invert)
{
	uint64_t n, w, word;

	if (!b || !b->words || from >= end)
		return b ? b->nbits : 0;
	n = nwords(end);
	w = from / 64;
	word = atomic_load(&b->words[w]);
	if (invert)
		word = ~word;
	word &= ~0ULL << (from % 64);
	for (;;) {
		if (w == n - 1)
			word &= tail_mask(end);
		if (word)
			return w * 64 + __builtin_ctzll(word);
		if (++w >= n)
			return b->nbits;
		word = atomic_load(&b->words[w]);
		if (invert)
			word = ~word;
	}
}

static uint64_t find_next(const struct ut_bitmap *b, uint64_t from,
			  bool invert)
{
	return find_next_in(b, from, b ? b->nbits : 0, invert);
}

uint64_t ut_bitmap_find_next_below(const struct ut_bitmap *b, uint64_t from,
				   uint64_t end)
{
	uint64_t i;

	if (b && end > b->nbits)
		end = b->nbits;
	i = find_next_in(b, from, end, false);
	return i < end ? i : end;
}

uint64_t ut_bitmap_find_next(const struct ut_bitmap *b, uint64_t from)
{
	return find_next(b, from, false);
}

uint64_t ut_bitmap_find_next_zero(const struct ut_bitmap *b, uint64_t from)
{
	return find_next(b, from, true);
}

uint64_t ut_bitmap_count(const struct ut_bitmap *b)
{
	uint64_t n, total = 0;

	if (!b || !b->words)
		return 0;
	n = nwords(b->nbits);
	for (uint64_t w = 0; w < n; w++) {
		uint64_t word = atomic_load(&b->words[w]);

		if (w == n - 1)
			word &= tail_mask(b->nbits);
		total += __builtin_popcountll(word);
	}
	return total;
}
