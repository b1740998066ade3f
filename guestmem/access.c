// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Access hotness from DAMON (Documentation/admin-guide/mm/damon/usage.rst):
 * which chunks of another process's address ranges it reads or writes,
 * where dirty tracking sees only the writes.
 *
 * One kdamond of our own through the sysfs interface: fvaddr (the fixed
 * ranges given, nothing else of the process) where the kernel has it,
 * else vaddr (the whole process; only the given ranges are looked at);
 * an initial monitoring region per chunk and a minimum region count of
 * one per chunk, so that DAMON never merges two chunks into one region;
 * one "stat" scheme that matches every region, whose tried regions
 * (update_schemes_tried_regions) say each region's accesses in the last
 * aggregation interval. Only when no kdamond exists: writing
 * nr_kdamonds replaces every kdamond directory, so a DAMON that someone
 * else runs is refused, never taken over. Everything is undone at close.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "guestmem"
#include "guestmem/guestmem.h"
#include "util/util.h"

#define DAMON_ROOT "/sys/kernel/mm/damon/admin/kdamonds"
#define CTX DAMON_ROOT "/0/contexts/0"
#define SCHEME CTX "/schemes/0"
/* One region per chunk up to this many; beyond, one per range (DAMON
 * then splits them itself, up to twice the chunk count). */
#define MAX_INIT_REGIONS 16384

struct gm_access {
	unsigned int n;
	struct gm_access_range r[GM_ACCESS_MAX_RANGES];
	uint64_t first[GM_ACCESS_MAX_RANGES];	/* chunk index of range 0 */
	uint64_t chunk, nchunks;
	char ops[8];
	bool started;
};

static int put(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;
	size_t len = strlen(val);

	if (fd < 0)
		return -errno;
	if (write(fd, val, len) != (ssize_t)len)
		ret = -errno;
	close(fd);
	return ret;
}

static int putu(const char *path, uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	return put(path, b);
}

static int get(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static int getu(const char *path, uint64_t *v)
{
	char b[32], *end;
	int ret = get(path, b, sizeof(b));

	if (ret)
		return ret;
	*v = strtoull(b, &end, 0);
	return end == b ? -EINVAL : 0;
}

/* puts each "file value" pair under @dir; the first failure */
static int put_all(const char *dir, const char *const *kv)
{
	char p[512];
	int ret;

	for (; kv[0]; kv += 2) {
		snprintf(p, sizeof(p), "%s/%s", dir, kv[0]);
		ret = put(p, kv[1]);
		if (ret)
			return ret;
	}
	return 0;
}

static int set_regions(struct gm_access *a)
{
	char p[256];
	uint64_t nr = a->nchunks <= MAX_INIT_REGIONS ? a->nchunks : a->n, k = 0;
	int ret;

	ret = putu(CTX "/targets/0/regions/nr_regions", nr);
	for (unsigned int i = 0; i < a->n && !ret; i++) {
		uint64_t step = nr == a->n ? a->r[i].len : a->chunk;

		for (uint64_t off = 0; off < a->r[i].len && !ret; off += step, k++) {
			uint64_t len = a->r[i].len - off < step ?
				       a->r[i].len - off : step;

			snprintf(p, sizeof(p), CTX "/targets/0/regions/%llu/start",
				 (unsigned long long)k);
			ret = putu(p, a->r[i].addr + off);
			snprintf(p, sizeof(p), CTX "/targets/0/regions/%llu/end",
				 (unsigned long long)k);
			if (!ret)
				ret = putu(p, a->r[i].addr + off + len);
		}
	}
	return ret;
}

static int setup(struct gm_access *a, pid_t pid, char *why, size_t len)
{
	static const char *const attrs[] = {
		"intervals/sample_us", "5000", "intervals/aggr_us", "100000",
		"intervals/update_us", "1000000", NULL
	};
	static const char *const pattern[] = {
		"sz/min", "0", "sz/max", "18446744073709551615",
		"nr_accesses/min", "0", "nr_accesses/max", "4294967295",
		"age/min", "0", "age/max", "4294967295", NULL
	};
	char avail[128], b[24];
	uint64_t min = a->nchunks < 3 ? 3 : a->nchunks;
	int ret;

	ret = get(CTX "/avail_operations", avail, sizeof(avail));
	if (ret) {
		snprintf(why, len, "DAMON has no avail_operations here (%s)",
			 strerror(-ret));
		return ret;
	}
	if (strstr(avail, "fvaddr"))
		snprintf(a->ops, sizeof(a->ops), "fvaddr");
	else if (strstr(avail, "vaddr"))
		snprintf(a->ops, sizeof(a->ops), "vaddr");
	else {
		snprintf(why, len, "this kernel's DAMON monitors only '%s', not "
			 "a process's addresses (CONFIG_DAMON_VADDR)", avail);
		return -ENOTSUP;
	}
	snprintf(b, sizeof(b), "%d", (int)pid);
	ret = put(CTX "/operations", a->ops);
	if (!ret)
		ret = put_all(CTX "/monitoring_attrs", attrs);
	if (!ret)
		ret = putu(CTX "/monitoring_attrs/nr_regions/min", min);
	if (!ret)
		ret = putu(CTX "/monitoring_attrs/nr_regions/max", 2 * min);
	if (!ret)
		ret = putu(CTX "/targets/nr_targets", 1);
	if (!ret)
		ret = put(CTX "/targets/0/pid_target", b);
	if (!ret)
		ret = set_regions(a);
	if (!ret)
		ret = putu(CTX "/schemes/nr_schemes", 1);
	if (!ret)
		ret = put(SCHEME "/action", "stat");
	if (!ret)
		ret = put_all(SCHEME "/access_pattern", pattern);
	if (ret) {
		snprintf(why, len, "setting DAMON up failed: %s", strerror(-ret));
		return ret;
	}
	ret = put(DAMON_ROOT "/0/state", "on");
	if (ret) {
		snprintf(why, len, "DAMON refused to start monitoring pid %d: %s",
			 (int)pid, strerror(-ret));
		return ret;
	}
	a->started = true;
	return 0;
}

int gm_access_open(struct gm_access **out, pid_t pid,
		   const struct gm_access_range *r, unsigned int n,
		   uint64_t chunk, char *why, size_t len)
{
	struct gm_access *a;
	uint64_t nr;
	int ret;

	*out = NULL;
	if (!n || n > GM_ACCESS_MAX_RANGES || !chunk) {
		snprintf(why, len, "no ranges to monitor");
		return -EINVAL;
	}
	ret = getu(DAMON_ROOT "/nr_kdamonds", &nr);
	if (ret) {
		snprintf(why, len, "this kernel has no DAMON sysfs interface "
			 "(%s: %s)", DAMON_ROOT, strerror(-ret));
		return -ENOTSUP;
	}
	if (nr) {
		snprintf(why, len, "DAMON is in use here (%llu kdamond%s, not "
			 "Ferry's: it is not taken over)",
			 (unsigned long long)nr, nr == 1 ? "" : "s");
		return -EBUSY;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->n = n;
	a->chunk = chunk;
	for (unsigned int i = 0; i < n; i++) {
		a->r[i] = r[i];
		a->first[i] = a->nchunks;
		a->nchunks += (r[i].len + chunk - 1) / chunk;
	}
	ret = putu(DAMON_ROOT "/nr_kdamonds", 1);
	if (ret) {
		snprintf(why, len, "cannot create a kdamond: %s", strerror(-ret));
		free(a);
		return ret;
	}
	ret = putu(DAMON_ROOT "/0/contexts/nr_contexts", 1);
	if (ret)
		snprintf(why, len, "cannot create a DAMON context: %s",
			 strerror(-ret));
	else
		ret = setup(a, pid, why, len);
	if (ret) {
		gm_access_close(a);
		return ret;
	}
	*out = a;
	return 0;
}

const char *gm_access_ops(const struct gm_access *a)
{
	return a->ops;
}

uint64_t gm_access_chunks(const struct gm_access *a)
{
	return a->nchunks;
}

/* Marks in @acc every chunk of the ranges that [start, end) overlaps. */
static void mark(const struct gm_access *a, uint64_t start, uint64_t end,
		 uint8_t *acc)
{
	for (unsigned int i = 0; i < a->n; i++) {
		uint64_t lo = a->r[i].addr, hi = lo + a->r[i].len;

		if (end <= lo || start >= hi)
			continue;
		lo = start > lo ? start : lo;
		hi = end < hi ? end : hi;
		for (uint64_t c = (lo - a->r[i].addr) / a->chunk;
		     c <= (hi - 1 - a->r[i].addr) / a->chunk; c++)
			acc[a->first[i] + c] = 1;
	}
}

ssize_t gm_access_sample(struct gm_access *a, uint8_t *acc)
{
	char p[400];
	struct dirent *e;
	ssize_t seen = 0;
	DIR *dir;
	int ret;

	memset(acc, 0, a->nchunks);
	ret = put(DAMON_ROOT "/0/state", "update_schemes_tried_regions");
	if (ret)
		return ret;
	dir = opendir(SCHEME "/tried_regions");
	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		uint64_t start, end, nr;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(p, sizeof(p), SCHEME "/tried_regions/%s/nr_accesses",
			 e->d_name);
		if (getu(p, &nr) || !nr)
			continue;
		snprintf(p, sizeof(p), SCHEME "/tried_regions/%s/start", e->d_name);
		if (getu(p, &start))
			continue;
		snprintf(p, sizeof(p), SCHEME "/tried_regions/%s/end", e->d_name);
		if (getu(p, &end) || end <= start)
			continue;
		mark(a, start, end, acc);
	}
	closedir(dir);
	for (uint64_t c = 0; c < a->nchunks; c++)
		seen += acc[c];
	return seen;
}

void gm_access_close(struct gm_access *a)
{
	int ret;

	if (!a)
		return;
	ret = a->started ? put(DAMON_ROOT "/0/state", "off") : 0;
	if (ret)
		pr_warn("DAMON: cannot stop our kdamond: %s", strerror(-ret));
	/* The kdamond ends asynchronously: wait for it before removing
	 * its directory. */
	for (int i = 0; i < 100; i++) {
		char st[16] = "";

		if (get(DAMON_ROOT "/0/state", st, sizeof(st)) || strcmp(st, "on"))
			break;
		usleep(10000);
	}
	ret = putu(DAMON_ROOT "/nr_kdamonds", 0);
	if (ret)
		pr_warn("DAMON: cannot remove our kdamond: %s", strerror(-ret));
	free(a);
}
