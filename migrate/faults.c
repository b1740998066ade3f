// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Postcopy fault statistics: which pages the destination asked for, and
 * how long each took to be placed.
 *
 * Ordering: the fault thread is the only one that sets bits in
 * @requested, so it can test a bit, write the page's timestamp and count
 * it, and only then set the bit with a read-modify-write (seq_cst, thus a
 * release). A placing thread clears the bit with a read-modify-write (an
 * acquire) before it reads the timestamp or decrements the count, so it
 * always sees both. The other way round, a receiver placing the page
 * between the bit and the timestamp read 0 (or an earlier request's
 * time) and counted "now - 0", and decremented the count before the
 * increment, wrapping it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "migrate/internal.h"

_Static_assert(MIG_HIST_BUCKETS == UT_HIST_BUCKETS,
	       "the wire carries the histogram as it is");

int mig_faults_init(struct mig_faults *f, uint64_t npages)
{
	int ret = ut_bitmap_init(&f->requested, npages);

	if (ret)
		return ret;
	f->req_ns = calloc(npages, sizeof(*f->req_ns));
	f->lat_ns = calloc(npages, sizeof(*f->lat_ns));
	f->cap = npages;
	atomic_init(&f->outstanding, 0);
	atomic_init(&f->nlat, 0);
	ut_hist_init(&f->hist);
	return f->req_ns && f->lat_ns ? 0 : -ENOMEM;
}

void mig_faults_fini(struct mig_faults *f)
{
	if (!f)
		return;
	free((void *)f->req_ns);
	free(f->lat_ns);
	f->req_ns = NULL;
	f->lat_ns = NULL;
	f->cap = 0;
	ut_bitmap_fini(&f->requested);
}

bool mig_faults_request(struct mig_faults *f, uint64_t g, uint64_t now_ns)
{
	/* Only this thread sets bits: a clear bit stays clear until we set
	 * it, so the timestamp can be written before the bit. */
	if (ut_bitmap_test(&f->requested, g))
		return false;
	atomic_store_explicit(&f->req_ns[g], now_ns, memory_order_relaxed);
	atomic_fetch_add(&f->outstanding, 1);
	ut_bitmap_set(&f->requested, g); /* publishes both */
	return true;
}

bool mig_faults_served(struct mig_faults *f, uint64_t g, uint64_t now_ns)
{
	uint64_t t, lat, i;

	if (!ut_bitmap_test_and_clear(&f->requested, g))
		return false;
	t = atomic_load_explicit(&f->req_ns[g], memory_order_relaxed);
	/* A request always has a timestamp; a zero one (or one from the
	 * future) would poison max and p99 with a single sample. */
	if (t && t <= now_ns) {
		lat = now_ns - t;
		ut_hist_record(&f->hist, lat);
		i = atomic_fetch_add(&f->nlat, 1);
		if (i < f->cap)
			f->lat_ns[i] = lat;
	}
	atomic_fetch_sub(&f->outstanding, 1);
	return true;
}

bool mig_faults_withdraw(struct mig_faults *f, uint64_t g)
{
	if (!ut_bitmap_test_and_clear(&f->requested, g))
		return false;
	atomic_fetch_sub(&f->outstanding, 1);
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void mig_faults_summary(struct mig_faults *f, struct mig_complete *c)
{
	uint64_t n = atomic_load(&f->nlat);

	if (n > f->cap)
		n = f->cap;
	qsort(f->lat_ns, n, sizeof(*f->lat_ns), cmp_u64);
	c->faults = n;
	c->blocked_ns = 0;
	for (uint64_t i = 0; i < n; i++)
		c->blocked_ns += f->lat_ns[i];
	c->p50_ns = c->p99_ns = c->max_ns = 0;
	if (n) {
		c->p50_ns = f->lat_ns[n / 2];
		c->p99_ns = f->lat_ns[n * 99 / 100];
		c->max_ns = f->lat_ns[n - 1];
	}
	for (unsigned int i = 0; i < MIG_HIST_BUCKETS; i++)
		c->hist[i] = atomic_load(&f->hist.bucket[i]);
}
