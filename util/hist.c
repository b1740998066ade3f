// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <string.h>

#include "util/util.h"

void ut_hist_init(struct ut_hist *h)
{
	if (!h)
		return;
	for (unsigned int i = 0; i < UT_HIST_BUCKETS; i++)
		atomic_init(&h->bucket[i], 0);
	atomic_init(&h->count, 0);
	atomic_init(&h->sum_ns, 0);
	atomic_init(&h->max_ns, 0);
}

static unsigned int bucket_of(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned int i;

	if (us == 0)
		return 0;
	i = 64 - __builtin_clzll(us); /* us in [2^(i-1), 2^i) */
	return i < UT_HIST_BUCKETS ? i : UT_HIST_BUCKETS - 1;
}

void ut_hist_record(struct ut_hist *h, uint64_t ns)
{
	uint64_t max;

	if (!h)
		return;
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
	max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
	while (ns > max &&
	       !atomic_compare_exchange_weak(&h->max_ns, &max, ns))
		;
}

void ut_hist_merge(struct ut_hist *dst, const struct ut_hist *src)
{
	uint64_t max;

	if (!dst || !src)
		return;
	for (unsigned int i = 0; i < UT_HIST_BUCKETS; i++)
		atomic_fetch_add(&dst->bucket[i], atomic_load(&src->bucket[i]));
	atomic_fetch_add(&dst->count, atomic_load(&src->count));
	atomic_fetch_add(&dst->sum_ns, atomic_load(&src->sum_ns));
	max = atomic_load(&src->max_ns);
	if (max > atomic_load(&dst->max_ns))
		atomic_store(&dst->max_ns, max);
}

uint64_t ut_hist_bucket_lo_us(unsigned int i)
{
	if (i == 0 || i >= UT_HIST_BUCKETS)
		return 0;
	return 1ULL << (i - 1);
}

double ut_hist_max_us(const struct ut_hist *h)
{
	return h ? atomic_load(&h->max_ns) / 1000.0 : 0;
}

double ut_hist_mean_us(const struct ut_hist *h)
{
	uint64_t n = h ? atomic_load(&h->count) : 0;

	return n ? atomic_load(&h->sum_ns) / 1000.0 / n : 0;
}

double ut_hist_percentile_us(const struct ut_hist *h, double q)
{
	uint64_t n, rank, seen = 0;
	double max;

	if (!h || !(n = atomic_load(&h->count)))
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	/* The smallest rank r with r >= q * n, at least 1. */
	rank = (uint64_t)(q * n);
	if (rank < q * n || rank == 0)
		rank++;
	max = ut_hist_max_us(h);
	for (unsigned int i = 0; i < UT_HIST_BUCKETS; i++) {
		seen += atomic_load(&h->bucket[i]);
		if (seen >= rank) {
			double hi = (double)(1ULL << i);

			return hi < max ? hi : max;
		}
	}
	return max;
}
