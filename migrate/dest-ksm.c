// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * KSM hints at the destination: anonymous guest pages the source sent as
 * duplicates (DUP, and the pages they copy) or as zero are marked
 * MADV_MERGEABLE as they land, so that ksmd looks at them first instead
 * of at nothing (an anonymous VMM that never asked for KSM) or at the
 * whole guest (one that set PR_SET_MEMORY_MERGE). madvise has to run in
 * the VMM, whose private memory it is: the VM link's ADVISE, which only
 * the main thread speaks. So the receivers mark pages in a bitmap and the
 * main thread hands the marks over at each control message (at least
 * once a second, the source's keepalive), before the resume and at the
 * end of postcopy.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

/* Ranges one flush gives the VMM at most, per region: each is a VMA
 * split there (vm.max_map_count, 65530 by default, bounds them all). */
#define MAX_RANGES 1024

bool dst_ksm_wanted(const struct mig_dst *d)
{
	return d->vm.anon && !d->p->no_ksm_hints &&
	       (d->vm.link.hello.flags & VML_F_ADVISE);
}

int dst_ksm_init(struct mig_dst *d)
{
	if (!d->vm.anon) {
		pr_info("KSM merges only anonymous memory: this guest's RAM "
			"is shared (Ferry's own duplicate detection is all "
			"there is), no KSM hints");
		return 0;
	}
	if (d->p->no_ksm_hints)
		return 0;
	if (!(d->vm.link.hello.flags & VML_F_ADVISE)) {
		pr_warn("the incoming VMM does not take advice (ADVISE): no KSM "
			"hints");
		return 0;
	}
	d->ksm.on = true;
	return ut_bitmap_init(&d->ksm.marked, d->vm.total_pages) ?:
	       (d->ksm.source ? ut_bitmap_init(&d->ksm.pending,
					       d->vm.total_pages) : 0);
}

void dst_ksm_fini(struct mig_dst *d)
{
	ut_bitmap_fini(&d->ksm.pending);
	ut_bitmap_fini(&d->ksm.marked);
	d->ksm.on = false;
}

/* The source's own KSM: what it had merged is as much a duplicate here,
 * and it may be a page the source sent in full (its copies differ in
 * what the source's hash table saw first, or were sent in other rounds). */
int dst_ksm_source(struct mig_dst *d, const uint8_t *buf, size_t len,
		   struct ut_err *err)
{
	struct mig_zero z;

	if (!d->ksm.source)
		return ut_err_first(err, -EPROTO, "the source sent KSM pages "
				"that were not agreed");
	if (mig_dec_ksm(buf, len, &d->vm.layout, &z))
		return ut_err_first(err, -EPROTO, "the source sent a malformed "
				"KSM message (%s)", mig_wire_reason());
	if (!d->ksm.on || d->vm.map[z.region].fd >= 0)
		return 0;
	for (uint64_t i = 0; i < z.npages; i++)
		if (z.bits[i / 8] >> (i % 8) & 1)
			ut_bitmap_set(&d->ksm.pending,
				      d->vm.first[z.region] + z.first + i);
	return 0;
}

/* The source's KSM pages that landed since, marked. */
static void take_landed(struct mig_dst *d)
{
	for (uint64_t g = ut_bitmap_find_next(&d->ksm.pending, 0);
	     g < d->vm.total_pages;
	     g = ut_bitmap_find_next(&d->ksm.pending, g + 1)) {
		if (!ut_bitmap_test(&d->received, g))
			continue;
		ut_bitmap_clear(&d->ksm.pending, g);
		ut_bitmap_set(&d->ksm.marked, g);
		d->ksm.from_source++;
	}
}

void dst_ksm_mark(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	if (d->ksm.on && d->vm.map[r].fd < 0)
		ut_bitmap_set(&d->ksm.marked, d->vm.first[r] + idx);
}

/* The marked pages of region @r, taken off the bitmap, as runs into @rg
 * (room for one per two pages, and one); returns their number. */
static uint32_t take_runs(struct mig_dst *d, uint32_t r, struct vml_range *rg)
{
	uint64_t first = d->vm.first[r], end = first + region_pages(d, r);
	uint32_t psz = d->vm.layout.r[r].page_size, n = 0;

	for (uint64_t g = ut_bitmap_find_next(&d->ksm.marked, first);
	     g < end; g = ut_bitmap_find_next(&d->ksm.marked, g + 1)) {
		uint64_t off = (g - first) * psz;

		if (!ut_bitmap_test_and_clear(&d->ksm.marked, g))
			continue;
		d->ksm.hinted++;
		if (n && rg[n - 1].off + rg[n - 1].len == off)
			rg[n - 1].len += psz;
		else
			rg[n++] = (struct vml_range){ off, psz };
	}
	return n;
}

/* Runs closer than @gap bytes become one range (the pages between are
 * advised too: a page more for ksmd to look at costs less than a VMA). */
static uint32_t coalesce(struct vml_range *rg, uint32_t n, uint64_t gap)
{
	uint32_t k = 0;

	for (uint32_t i = 1; i < n; i++) {
		if (rg[i].off - (rg[k].off + rg[k].len) <= gap)
			rg[k].len = rg[i].off + rg[i].len - rg[k].off;
		else
			rg[++k] = rg[i];
	}
	return n ? k + 1 : 0;
}

/* The marked pages of region @r as at most MAX_RANGES ranges: exact
 * where that fits, else with the smallest gap (doubling) that does. */
static uint32_t take_ranges(struct mig_dst *d, uint32_t r,
			    struct vml_range *rg)
{
	uint64_t gap = d->vm.layout.r[r].page_size;
	uint32_t n = take_runs(d, r, rg);

	while (n > MAX_RANGES) {
		n = coalesce(rg, n, gap);
		gap *= 2;
	}
	return n;
}

void dst_ksm_flush(struct mig_dst *d)
{
	if (d->ksm.on && d->ksm.source)
		take_landed(d);
	for (uint32_t r = 0; d->ksm.on && r < d->vm.nr; r++) {
		struct vml_advise a = { .region = r,
					.advice = VML_ADVISE_MERGEABLE };
		int ret;

		if (d->vm.map[r].fd >= 0)
			continue;
		a.ranges = malloc((region_pages(d, r) / 2 + 1) *
				  sizeof(*a.ranges));
		if (!a.ranges)
			return;
		a.nr = take_ranges(d, r, a.ranges);
		ret = a.nr ? vml_client_advise(&d->vm.link, &a) : 0;
		if (ret) {
			pr_warn("KSM hints stop here: the VMM refused them: %s",
				vml_strerror(ret));
			d->ksm.on = false;
		} else {
			d->ksm.ranges += a.nr;
			for (uint32_t i = 0; i < a.nr; i++)
				d->ksm.bytes += a.ranges[i].len;
		}
		free(a.ranges);
	}
}

void dst_ksm_report(struct mig_dst *d, struct mig_stats *st)
{
	struct gm_ksm_footprint f;

	dst_ksm_flush(d);
	gm_ksm_footprint((pid_t)d->vm.link.hello.pid, &f);
	st->ksm = (struct mig_ksm_stats){
		.reported = true, .anon = d->vm.anon,
		.hints = d->ksm.ranges > 0, .run = f.run,
		.merge_across_nodes = f.merge_across_nodes,
		.hinted_pages = d->ksm.hinted, .advised_ranges = d->ksm.ranges,
		.advised_bytes = d->ksm.bytes, .pages_sharing = f.pages_sharing,
		.source_pages = d->ksm.from_source,
		.vmm_pss_kib = f.pss_kib,
	};
	if (d->vm.anon && f.run == 0 && d->ksm.ranges)
		pr_info("KSM is not running here (/sys/kernel/mm/ksm/run 0): "
			"the hints wait for it (ferry dest --ksm starts it)");
}
