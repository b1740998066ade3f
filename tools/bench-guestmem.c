// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bench-guestmem: the speed of guestmem's building blocks next to the
 * machine's memcpy bandwidth, measured in the same run.
 *
 *   zero scan GB/s (each variant), XXH3-128 hash GB/s, PAGEMAP_SCAN
 *   harvest time per GiB at 1% and 10% dirty, what a tracked write
 *   costs (the first write to a page after the harvest re-armed it,
 *   against the same write untracked), and the round trip of a
 *   MISSING fault served with UFFDIO_COPY (handler blocked in poll, and
 *   busy-polling).
 *
 * Usage: bench-guestmem [--size MiB] [--json FILE]
 *        bench-guestmem --huge-faults N [--json FILE]
 *
 * --huge-faults measures only the round trip of a MISSING fault on a 2 MiB
 * hugetlb page served with UFFDIO_COPY, N times (N free 2 MiB huge pages
 * needed), on the pages as the pool gives them and then warm: the local
 * part of a 2M postcopy fault.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_PREFIX "bench-guestmem"
#include "guestmem/guestmem.h"
#include "guestmem/internal.h"

#define REPS 5

struct results {
	double memcpy_gbs;
	double zero_gbs[3];	/* scalar, avx2, avx512 (0: unavailable) */
	double zero_dispatch_gbs;
	double hash_gbs;
	double harvest_ms_per_gib[3]; /* 0%, 1%, 10% dirty */
	/* ns per write of one word to each 4 KiB page in turn, untracked
	 * and tracked (each page write-protected: the first write after
	 * the arming faults, and WP_ASYNC lifts the protection in the
	 * kernel), and the harvest that re-arms them, per page */
	double write_ns_untracked, write_ns_tracked, rearm_ns;
	double fault_p50_us[3], fault_p99_us[3], fault_max_us[3];
	uint64_t faults;
};

static double best_gbs(size_t bytes, uint64_t best_ns)
{
	return best_ns ? bytes / (double)best_ns : 0;
}

static double bench_memcpy(uint8_t *dst, const uint8_t *src, size_t len)
{
	uint64_t best = UINT64_MAX;

	for (int r = 0; r < REPS; r++) {
		uint64_t t = ut_now_ns();

		memcpy(dst, src, len);
		t = ut_now_ns() - t;
		if (t < best)
			best = t;
	}
	return best_gbs(len, best);
}

static double bench_zero(bool (*fn)(const void *, size_t), const uint8_t *buf,
			 size_t len)
{
	uint64_t best = UINT64_MAX;
	volatile bool sink = false;

	for (int r = 0; r < REPS; r++) {
		uint64_t t = ut_now_ns();

		/* Page by page, as the migration scans. */
		for (size_t off = 0; off < len; off += 4096)
			sink |= fn(buf + off, 4096);
		t = ut_now_ns() - t;
		if (t < best)
			best = t;
	}
	(void)sink;
	return best_gbs(len, best);
}

static double bench_hash(const uint8_t *buf, size_t len)
{
	uint64_t best = UINT64_MAX, acc = 0;
	struct gm_hash h;

	for (int r = 0; r < REPS; r++) {
		uint64_t t = ut_now_ns();

		for (size_t off = 0; off < len; off += 4096) {
			gm_hash(buf + off, 4096, &h);
			acc ^= h.lo;
		}
		t = ut_now_ns() - t;
		if (t < best)
			best = t;
	}
	if (acc == 42)
		putchar(' ');
	return best_gbs(len, best);
}

/* Harvest time per GiB with @permille of the pages written since the last
 * harvest, on a populated shmem region of @len bytes. */
static double bench_harvest(struct gm_region *r, int permille)
{
	struct gm_dirty_range range = { (uintptr_t)r->host, r->size, 4096 };
	uint64_t npages = r->size / 4096, best = UINT64_MAX, f = 0;
	struct ut_bitmap bm;
	struct gm_dirty *d;
	struct gm_uffd u;
	int ret;

	gm_uffd_probe(&f);
	ret = gm_uffd_open(&u, UFFD_FEATURE_WP_ASYNC |
				       UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
				       (f & UFFD_FEATURE_WP_UNPOPULATED));
	if (ret)
		return -1;
	ret = gm_dirty_create(&d, &(struct gm_dirty_params){
		.uffd = &u, .ranges = &range, .nr_ranges = 1 });
	if (ret || ut_bitmap_init(&bm, npages)) {
		gm_uffd_close(&u);
		return -1;
	}
	srand(permille + 1);
	for (int rep = 0; rep < REPS; rep++) {
		uint64_t t;

		for (uint64_t i = 0; i < npages * permille / 1000; i++)
			((volatile uint8_t *)r->host)[(rand() % npages) * 4096] = rep;
		ut_bitmap_clear_all(&bm);
		t = ut_now_ns();
		if (gm_dirty_harvest(d, &bm) < 0)
			break;
		t = ut_now_ns() - t;
		if (t < best)
			best = t;
	}
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	gm_uffd_close(&u);
	return best / 1e6 * ((double)UT_GiB / r->size);
}

/* What tracking adds to a guest write: one word into every page of @r,
 * in turn, untracked, then with every page armed (the first write to a
 * page after arming takes a write-protect fault, resolved by the kernel
 * in WP_ASYNC mode); best of REPS each, and the harvest that re-arms
 * them all, per page. */
static int bench_tracked_write(struct gm_region *r, struct results *res)
{
	struct gm_dirty_range range = { (uintptr_t)r->host, r->size, 4096 };
	uint64_t npages = r->size / 4096, f = 0;
	uint64_t best_plain = UINT64_MAX, best_wp = UINT64_MAX;
	uint64_t best_rearm = UINT64_MAX;
	volatile uint64_t *p = r->host;
	struct ut_bitmap bm;
	struct gm_dirty *d;
	struct gm_uffd u;
	int ret;

	for (int rep = 0; rep < REPS; rep++) {
		uint64_t t = ut_now_ns();

		for (uint64_t i = 0; i < npages; i++)
			p[i * 512] = rep;
		t = ut_now_ns() - t;
		if (t < best_plain)
			best_plain = t;
	}
	gm_uffd_probe(&f);
	ret = gm_uffd_open(&u, UFFD_FEATURE_WP_ASYNC |
				       UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
				       (f & UFFD_FEATURE_WP_UNPOPULATED));
	if (ret)
		return ret;
	ret = gm_dirty_create(&d, &(struct gm_dirty_params){
		.uffd = &u, .ranges = &range, .nr_ranges = 1 });
	if (!ret && ut_bitmap_init(&bm, npages))
		ret = -ENOMEM;
	if (ret) {
		gm_dirty_destroy(d);
		gm_uffd_close(&u);
		return ret;
	}
	for (int rep = 0; rep < REPS && !ret; rep++) {
		uint64_t t = ut_now_ns();

		for (uint64_t i = 0; i < npages; i++)
			p[i * 512] = rep;
		t = ut_now_ns() - t;
		if (t < best_wp)
			best_wp = t;
		t = ut_now_ns();
		if (gm_dirty_harvest(d, &bm) != (ssize_t)npages)
			ret = -EIO;
		t = ut_now_ns() - t;
		if (t < best_rearm)
			best_rearm = t;
	}
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	gm_uffd_close(&u);
	res->write_ns_untracked = (double)best_plain / npages;
	res->write_ns_tracked = (double)best_wp / npages;
	res->rearm_ns = (double)best_rearm / npages;
	return ret;
}

enum fault_setup {
	FAULT_BLOCKING,		/* handler sleeps in poll(), other CPU */
	FAULT_BUSY,		/* handler spins on read(), other CPU */
	FAULT_SAME_CPU,		/* handler sleeps in poll(), same CPU */
	FAULT_SETUPS,
};

static const char *const setup_name[FAULT_SETUPS] = {
	"handler in poll(), other CPU", "handler busy-polling, other CPU",
	"handler in poll(), same CPU",
};
static const char *const setup_key[FAULT_SETUPS] = {
	"blocking_cross_cpu", "busy_poll_cross_cpu", "blocking_same_cpu",
};

struct server {
	struct gm_uffd *u;
	int stop_fd;
	bool busy;		/* spin on read() instead of sleeping in poll() */
	void *page;
	size_t psz;		/* the page's size */
};

static void pin(pthread_t t, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(t, sizeof(set), &set);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void *serve(void *arg)
{
	struct server *s = arg;
	struct pollfd pfd[2] = { { s->u->fd, POLLIN, 0 },
				 { s->stop_fd, POLLIN, 0 } };
	struct gm_uffd_event ev[16];

	for (;;) {
		ssize_t n;

		if (!s->busy && poll(pfd, 2, -1) < 0)
			break;
		if (s->busy) {
			pfd[1].revents = 0;
			poll(&pfd[1], 1, 0);
		}
		if (pfd[1].revents)
			break;
		n = gm_uffd_read_events(s->u, ev, 16);
		for (ssize_t i = 0; i < n; i++)
			if (ev[i].kind == GM_UFFD_EV_FAULT)
				gm_uffd_copy(s->u, ev[i].addr & ~(s->psz - 1),
					     s->page, s->psz, 0);
	}
	return NULL;
}

/* Round trip of one MISSING fault on shmem (or 2 MiB hugetlb): touch,
 * fault, COPY, wake. Exact percentiles from every sample, in
 * microseconds. */
static int bench_fault(size_t len, enum fault_setup setup,
		       enum gm_backing backing, double *p50, double *p99,
		       double *max)
{
	size_t psz = gm_backing_page_size(backing);
	struct gm_region r;
	struct gm_uffd u;
	struct server s = { .u = &u, .busy = setup == FAULT_BUSY,
			    .psz = psz };
	uint64_t one = 1, *ns = calloc(len / psz, sizeof(*ns));
	size_t n = 0;
	pthread_t t;
	int ret;

	if (!ns)
		return -ENOMEM;
	ret = gm_region_init(&r, backing, len, "bench-fault");
	if (ret) {
		free(ns);
		return ret;
	}
	ret = gm_uffd_open(&u, psz > 4096 ? UFFD_FEATURE_MISSING_HUGETLBFS :
					    UFFD_FEATURE_MISSING_SHMEM);
	if (!ret)
		ret = gm_uffd_register(&u, (uintptr_t)r.host, r.size,
				       GM_UFFD_MISSING, NULL);
	s.page = aligned_alloc(4096, psz);
	s.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ret || !s.page || s.stop_fd < 0) {
		ret = ret ? ret : -ENOMEM;
		goto out;
	}
	memset(s.page, 0x11, psz);
	pthread_create(&t, NULL, serve, &s);
	pin(pthread_self(), 0);
	pin(t, setup == FAULT_SAME_CPU ? 0 : 1);
	for (size_t off = 0; off < r.size; off += psz) {
		uint64_t t0 = ut_now_ns();

		(void)*(volatile uint8_t *)((uint8_t *)r.host + off);
		ns[n++] = ut_now_ns() - t0;
	}
	if (write(s.stop_fd, &one, sizeof(one)) != sizeof(one))
		ret = -EIO;
	pthread_join(t, NULL);
	qsort(ns, n, sizeof(*ns), cmp_u64);
	*p50 = ns[n / 2] / 1e3;
	*p99 = ns[n * 99 / 100] / 1e3;
	*max = ns[n - 1] / 1e3;
out:
	free(ns);
	if (s.stop_fd >= 0)
		close(s.stop_fd);
	free(s.page);
	gm_uffd_close(&u);
	gm_region_fini(&r);
	return ret;
}

static void print_json(FILE *f, const struct results *r, size_t size)
{
	fprintf(f, "{\n  \"buffer_mib\": %zu,\n", size >> 20);
	fprintf(f, "  \"memcpy_gbs\": %.2f,\n", r->memcpy_gbs);
	fprintf(f, "  \"zero_scan_gbs\": {\"scalar\": %.2f, \"avx2\": %.2f, "
		   "\"avx512\": %.2f, \"dispatched\": %.2f, \"impl\": \"%s\"},\n",
		r->zero_gbs[0], r->zero_gbs[1], r->zero_gbs[2],
		r->zero_dispatch_gbs, gm_is_zero_impl());
	fprintf(f, "  \"hash_xxh3_128_gbs\": %.2f,\n", r->hash_gbs);
	fprintf(f, "  \"harvest_ms_per_gib\": {\"dirty_0pct\": %.2f, "
		   "\"dirty_1pct\": %.2f, \"dirty_10pct\": %.2f},\n",
		r->harvest_ms_per_gib[0], r->harvest_ms_per_gib[1],
		r->harvest_ms_per_gib[2]);
	fprintf(f, "  \"write_ns_per_page\": {\"untracked\": %.1f, "
		   "\"tracked\": %.1f, \"rearm\": %.1f},\n",
		r->write_ns_untracked, r->write_ns_tracked, r->rearm_ns);
	fprintf(f, "  \"missing_fault_copy_us\": {\"faults_each\": %llu",
		(unsigned long long)r->faults);
	for (int i = 0; i < FAULT_SETUPS; i++)
		fprintf(f, ", \"%s\": {\"p50\": %.1f, \"p99\": %.1f, "
			   "\"max\": %.1f}", setup_key[i], r->fault_p50_us[i],
			r->fault_p99_us[i], r->fault_max_us[i]);
	fprintf(f, "}\n}\n");
}

static void print_table(const struct results *r, size_t size)
{
	static const char *const zname[] = { "scalar", "avx2", "avx512" };

	printf("guestmem benchmark, %zu MiB buffers, best of %d\n", size >> 20,
	       REPS);
	printf("  %-34s %8.2f GB/s\n", "memcpy (reference)", r->memcpy_gbs);
	for (int i = 0; i < 3; i++)
		if (r->zero_gbs[i] > 0)
			printf("  %-34s %8.2f GB/s  %5.2fx memcpy\n",
			       zname[i], r->zero_gbs[i],
			       r->zero_gbs[i] / r->memcpy_gbs);
	printf("  %-34s %8.2f GB/s  %5.2fx memcpy  (%s)\n",
	       "zero scan, dispatched", r->zero_dispatch_gbs,
	       r->zero_dispatch_gbs / r->memcpy_gbs, gm_is_zero_impl());
	printf("  %-34s %8.2f GB/s  %5.2fx memcpy\n", "hash XXH3-128",
	       r->hash_gbs, r->hash_gbs / r->memcpy_gbs);
	printf("  %-34s %8.2f ms/GiB\n", "PAGEMAP_SCAN harvest, 0% dirty",
	       r->harvest_ms_per_gib[0]);
	printf("  %-34s %8.2f ms/GiB\n", "PAGEMAP_SCAN harvest, 1% dirty",
	       r->harvest_ms_per_gib[1]);
	printf("  %-34s %8.2f ms/GiB\n", "PAGEMAP_SCAN harvest, 10% dirty",
	       r->harvest_ms_per_gib[2]);
	printf("  %-34s %8.1f ns/page\n", "write, untracked",
	       r->write_ns_untracked);
	printf("  %-34s %8.1f ns/page  %5.0fx untracked\n",
	       "write, tracked (first after arming)", r->write_ns_tracked,
	       r->write_ns_tracked / (r->write_ns_untracked > 0 ?
				      r->write_ns_untracked : 1));
	printf("  %-34s %8.1f ns/page\n", "harvest + re-arm, all written",
	       r->rearm_ns);
	printf("  MISSING fault + UFFDIO_COPY 4K round trip (%llu faults):\n",
	       (unsigned long long)r->faults);
	for (int i = 0; i < FAULT_SETUPS; i++)
		printf("    %-32s p50 %6.1f us  p99 %6.1f us  max %7.1f us\n",
		       setup_name[i], r->fault_p50_us[i], r->fault_p99_us[i],
		       r->fault_max_us[i]);
}

/* --huge-faults N: the 2 MiB round trip alone, twice: on pages as the
 * pool has them (the first touch of fresh memory is slow here: the
 * host's own faults), then on the same pages again, warm. */
static int bench_huge(unsigned long n, const char *json)
{
	static const char *const pass[2] = { "first use", "warm" };
	double p50[2], p99[2], max[2];
	FILE *f;

	for (int i = 0; i < 2; i++) {
		int ret = bench_fault(n * (2 * UT_MiB), FAULT_BLOCKING,
				      GM_BACKING_HUGETLB_2M, &p50[i], &p99[i],
				      &max[i]);

		if (ret) {
			fprintf(stderr, "bench-guestmem: the 2 MiB fault round "
					"trip: %s (are %lu huge pages of 2 MiB "
					"free?)\n", strerror(-ret), n);
			return 1;
		}
		printf("  MISSING fault + UFFDIO_COPY 2M round trip (%lu faults, "
		       "%s, pages %s): p50 %.1f us  p99 %.1f us  max %.1f us\n",
		       n, setup_name[FAULT_BLOCKING], pass[i], p50[i], p99[i],
		       max[i]);
	}
	if (!json)
		return 0;
	f = fopen(json, "w");
	if (!f) {
		fprintf(stderr, "bench-guestmem: %s: %s\n", json,
			strerror(errno));
		return 1;
	}
	fprintf(f, "{\n  \"missing_fault_copy_2m_us\": {\"faults\": %lu, "
		   "\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f, "
		   "\"first_use\": {\"p50\": %.1f, \"p99\": %.1f, "
		   "\"max\": %.1f}}\n}\n", n, p50[1], p99[1], max[1], p50[0],
		p99[0], max[0]);
	return fclose(f) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "json", required_argument, NULL, 'j' },
		{ "huge-faults", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool (*const zfn[3])(const void *, size_t) = {
		gm_is_zero_scalar, gm_is_zero_avx2, gm_is_zero_avx512 };
	bool zhave[3];
	struct results res = { 0 };
	size_t size = 256 * UT_MiB;
	const char *json = NULL;
	struct gm_region a, b;
	unsigned long huge = 0;
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, "s:j:H:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': {
			char *end;
			unsigned long mib = strtoul(optarg, &end, 10);

			if (*end || mib < 16 || mib > 16384) {
				fprintf(stderr, "bench-guestmem: --size takes "
						"16..16384 (MiB)\n");
				return 2;
			}
			size = mib * UT_MiB;
			break;
		}
		case 'j':
			json = optarg;
			break;
		case 'H': {
			char *end;

			huge = strtoul(optarg, &end, 10);
			if (*end || !huge || huge > 4096) {
				fprintf(stderr, "bench-guestmem: --huge-faults "
						"takes 1..4096\n");
				return 2;
			}
			break;
		}
		case 'h':
			printf("usage: bench-guestmem [--size MiB] [--json FILE]\n"
			       "       bench-guestmem --huge-faults N [--json FILE]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (huge)
		return bench_huge(huge, json);
	if (gm_region_init(&a, GM_BACKING_SHMEM, size, "bench-a") ||
	    gm_region_init(&b, GM_BACKING_SHMEM, size, "bench-b"))
		return 1;
	/* Populate both so that no first-touch cost lands in a figure. */
	memset(a.host, 0, size);
	for (size_t i = 0; i < size; i += 8)
		*(uint64_t *)((uint8_t *)b.host + i) = i * 0x9e3779b97f4a7c15ULL;
	res.memcpy_gbs = bench_memcpy(a.host, b.host, size);
	memset(a.host, 0, size);
	__builtin_cpu_init();
	zhave[0] = true;
	zhave[1] = __builtin_cpu_supports("avx2");
	zhave[2] = __builtin_cpu_supports("avx512f");
	for (int i = 0; i < 3; i++)
		if (zhave[i])
			res.zero_gbs[i] = bench_zero(zfn[i], a.host, size);
	res.zero_dispatch_gbs = bench_zero(gm_is_zero, a.host, size);
	res.hash_gbs = bench_hash(b.host, size);
	res.harvest_ms_per_gib[0] = bench_harvest(&b, 0);
	res.harvest_ms_per_gib[1] = bench_harvest(&b, 10);
	res.harvest_ms_per_gib[2] = bench_harvest(&b, 100);
	if (bench_tracked_write(&b, &res))
		fprintf(stderr, "bench-guestmem: the tracked write was not "
				"measured\n");
	gm_region_fini(&a);
	gm_region_fini(&b);
	res.faults = 64 * UT_MiB / 4096;
	for (int i = 0; i < FAULT_SETUPS; i++)
		if (bench_fault(64 * UT_MiB, i, GM_BACKING_SHMEM, &res.fault_p50_us[i],
				&res.fault_p99_us[i], &res.fault_max_us[i]))
			return 1;
	print_table(&res, size);
	if (json) {
		FILE *f = fopen(json, "w");

		if (!f) {
			fprintf(stderr, "bench-guestmem: %s: %s\n", json,
				strerror(errno));
			return 1;
		}
		print_json(f, &res, size);
		fclose(f);
	}
	ret = 0;
	return ret;
}
