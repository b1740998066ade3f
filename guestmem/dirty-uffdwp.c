// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Dirty tracking with userfaultfd write-protect in WP_ASYNC mode, harvested
 * with PAGEMAP_SCAN on /proc/PID/pagemap.
 *
 * In async mode a write to a protected page does not raise a uffd event:
 * the kernel lifts the protection itself and the page reads as WRITTEN in
 * the pagemap. One PAGEMAP_SCAN with PM_SCAN_WP_MATCHING both reports the
 * written pages and protects them again, so harvest and re-arm are a
 * single walk with no window in which a write could be lost. This works on
 * another process (the VMM) and catches KVM vCPU writes, which go through
 * the same page tables.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "dirty-uffdwp"
#include "guestmem/internal.h"

#define SCAN_VEC 512	/* page_region entries per PAGEMAP_SCAN call */

struct uffdwp {
	struct gm_dirty head;
	struct gm_uffd *uffd;	/* the tracked process's uffd, not owned */
	pid_t pid;		/* tracked process, 0 for this one */
	int pagemap_fd;		/* /proc/PID/pagemap */
	unsigned int nr_ranges;
	unsigned int nr_registered; /* ranges registered so far */
	struct gm_dirty_range *ranges;
	uint64_t *first_page;	/* bitmap index of each range's page 0 */
	struct page_region vec[SCAN_VEC];
};

static int open_pagemap(pid_t pid)
{
	char path[64];
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		pr_err("open %s: %s", path, strerror(-fd));
	}
	return fd;
}

static void uffdwp_destroy(struct gm_dirty *d)
{
	struct uffdwp *w = (struct uffdwp *)d;

	/* A tracked process that is gone (a VMM released after migration)
	 * took its registrations with it: nothing to undo. */
	if (w->pid && kill(w->pid, 0) && errno == ESRCH)
		w->nr_registered = 0;
	for (unsigned int i = 0; i < w->nr_registered; i++) {
		gm_uffd_writeprotect(w->uffd, w->ranges[i].addr,
				     w->ranges[i].len, false, 0);
		gm_uffd_unregister(w->uffd, w->ranges[i].addr,
				   w->ranges[i].len);
	}
	if (w->pagemap_fd >= 0)
		close(w->pagemap_fd);
	free(w->first_page);
	free(w->ranges);
	free(w);
}

/* Registers every range for WP and protects it: from here on, writes show. */
static int arm(struct uffdwp *w)
{
	int ret;

	for (unsigned int i = 0; i < w->nr_ranges; i++) {
		const struct gm_dirty_range *r = &w->ranges[i];

		ret = gm_uffd_register(w->uffd, r->addr, r->len, GM_UFFD_WP,
				       NULL);
		if (ret)
			return ret;
		w->nr_registered++;
		ret = gm_uffd_writeprotect(w->uffd, r->addr, r->len, true, 0);
		if (ret)
			return ret;
	}
	return 0;
}

static int uffdwp_create(struct gm_dirty **out, const struct gm_dirty_params *p)
{
	struct uffdwp *w;
	uint64_t pages = 0;
	int ret;

	if (!p->uffd || p->uffd->fd < 0 ||
	    !(p->uffd->features & UFFD_FEATURE_WP_ASYNC)) {
		pr_err("uffd-wp tracking needs a uffd with WP_ASYNC "
		       "(kernel 6.7 or later)");
		return -EOPNOTSUPP;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->head.ops = &gm_dirty_uffdwp_ops;
	w->uffd = p->uffd;
	w->pid = p->pid;
	w->nr_ranges = p->nr_ranges;
	w->pagemap_fd = -1;
	w->ranges = calloc(p->nr_ranges, sizeof(*w->ranges));
	w->first_page = calloc(p->nr_ranges, sizeof(*w->first_page));
	if (!w->ranges || !w->first_page) {
		ret = -ENOMEM;
		goto err_destroy;
	}
	for (unsigned int i = 0; i < p->nr_ranges; i++) {
		w->ranges[i] = p->ranges[i];
		w->first_page[i] = pages;
		pages += p->ranges[i].len / p->ranges[i].page_size;
	}
	w->head.npages = pages;
	ret = open_pagemap(p->pid);
	if (ret < 0)
		goto err_destroy;
	w->pagemap_fd = ret;
	ret = arm(w);
	if (ret)
		goto err_destroy;
	*out = &w->head;
	return 0;

err_destroy:
	uffdwp_destroy(&w->head);
	return ret;
}

/* Marks the pages of one reported region (byte range) in the bitmap. */
static uint64_t mark(struct uffdwp *w, unsigned int ri,
		     const struct page_region *pr, struct ut_bitmap *bm)
{
	const struct gm_dirty_range *r = &w->ranges[ri];
	uint64_t first = (pr->start - r->addr) / r->page_size;
	uint64_t last = UT_DIV_ROUND_UP(pr->end - r->addr, r->page_size);

	if (last > r->len / r->page_size)
		last = r->len / r->page_size;
	if (first >= last)
		return 0;
	ut_bitmap_set_range(bm, w->first_page[ri] + first, last - first);
	return last - first;
}

/* One walk over range @ri: with @bm, marks the written pages there and
 * protects them again (a harvest); without, only counts them (a peek).
 * Returns the pages found, or -errno. */
static ssize_t scan_range(struct uffdwp *w, unsigned int ri,
			  struct ut_bitmap *bm)
{
	const struct gm_dirty_range *r = &w->ranges[ri];
	uint64_t start = r->addr, end = r->addr + r->len;
	ssize_t found = 0;

	while (start < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = bm ? PM_SCAN_WP_MATCHING |
				      PM_SCAN_CHECK_WPASYNC : 0,
			.start = start,
			.end = end,
			.vec = (uintptr_t)w->vec,
			.vec_len = SCAN_VEC,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(w->pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0) {
			n = -errno;
			pr_err("PAGEMAP_SCAN 0x%llx-0x%llx: %s",
			       (unsigned long long)start,
			       (unsigned long long)end, strerror(-n));
			return n;
		}
		for (long i = 0; i < n; i++)
			found += (ssize_t)(bm ? mark(w, ri, &w->vec[i], bm) :
					   (w->vec[i].end - w->vec[i].start) /
					   r->page_size);
		/* A full vector stops the walk early: go on from walk_end. */
		if (arg.walk_end <= start) {
			pr_err("PAGEMAP_SCAN made no progress at 0x%llx",
			       (unsigned long long)start);
			return -EIO;
		}
		start = arg.walk_end;
	}
	return found;
}

static ssize_t uffdwp_harvest(struct gm_dirty *d, struct ut_bitmap *bm)
{
	struct uffdwp *w = (struct uffdwp *)d;
	ssize_t total = 0;

	for (unsigned int i = 0; i < w->nr_ranges; i++) {
		ssize_t n = scan_range(w, i, bm);

		if (n < 0)
			return n;
		total += n;
	}
	return total;
}

static int64_t uffdwp_peek(struct gm_dirty *d)
{
	struct uffdwp *w = (struct uffdwp *)d;
	int64_t bytes = 0;

	for (unsigned int i = 0; i < w->nr_ranges; i++) {
		ssize_t n = scan_range(w, i, NULL);

		if (n < 0)
			return n;
		bytes += (int64_t)n * (int64_t)w->ranges[i].page_size;
	}
	return bytes;
}

const struct gm_dirty_ops gm_dirty_uffdwp_ops = {
	.name = "uffd-wp",
	.create = uffdwp_create,
	.harvest = uffdwp_harvest,
	.peek = uffdwp_peek,
	.destroy = uffdwp_destroy,
};
