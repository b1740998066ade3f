// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Transparent huge pages at the destination, off the critical path. The
 * agent places 4 KiB shmem pages at 4 KiB (its own mapping is advised
 * MADV_NOHUGEPAGE at attach, so a placement never zero-fills 2 MiB and
 * a fault costs a 4 KiB transfer); once every page is in place (after
 * the resume in precopy, after COMPLETE in postcopy), the guest running,
 * each 2 MiB-aligned range of the VMM's mapping is collapsed into a huge
 * page with process_madvise(MADV_COLLAPSE) on the VMM's pid, range by
 * range within a time budget. Collapsing fills the range's holes (zero
 * pages the destination never allocated) with zeros, so a range is left
 * alone when more than half of it would be filled (HOLES_MAX), or more
 * than khugepaged's max_ptes_none allows: a huge page never costs more
 * than twice the memory the guest was sent.
 * The kernel does the copy; the VMM's userfaultfd may stay registered
 * (guestmem/thp.c says where that was probed). A file page can be mapped
 * huge only where the VMM's address and the file offset agree modulo
 * 2 MiB: a region mapped otherwise (QEMU 7.2 maps memory-backend-memfd
 * 4 KiB-aligned; memory-backend-file with align=2M is 2 MiB-aligned) is
 * left alone, and the reason says so, instead of asking the kernel for
 * each of its ranges in vain (EINVAL).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

#define RANGE (2u << 20)
#define RANGE_PAGES (RANGE / 4096)
#define DEFAULT_BUDGET_MS 10000
#define HOLES_MAX (RANGE_PAGES / 2)
#define MAX_PTES_NONE "/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none"

/* The most holes a collapsed range may have. */
static uint64_t holes_max(void)
{
	unsigned long v = HOLES_MAX;
	FILE *f = fopen(MAX_PTES_NONE, "re");

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = HOLES_MAX;
		fclose(f);
	}
	return v < HOLES_MAX ? v : HOLES_MAX;
}

/* True when THP may back shared memory that a VMM advised for it. */
static bool thp_allowed(const char *mode)
{
	return mode[0] && strcmp(mode, "never") && strcmp(mode, "deny");
}

/* The pages of the range at page @idx of region @r that hold no data
 * here (zero, never allocated). */
static uint64_t holes(const struct mig_dst *d, uint32_t r, uint64_t idx)
{
	uint64_t g = d->vm.first[r] + idx, n = 0;

	for (uint64_t i = 0; i < RANGE_PAGES; i++)
		n += !ut_bitmap_test(&d->received, g + i) ||
		     ut_bitmap_test(&d->zero, g + i);
	return n;
}

/* The 2 MiB ranges of region @r; false once the budget is spent. */
static bool collapse_region(struct mig_dst *d, uint32_t r, int pidfd,
			    uint64_t end_ns, uint64_t max_holes,
			    struct mig_thp_stats *t)
{
	const struct vml_region *vr = &d->vm.link.hello.regions[r];
	uint64_t first = UT_ALIGN_UP(vr->host_addr, RANGE) - vr->host_addr;

	for (uint64_t off = first; off + RANGE <= vr->size; off += RANGE) {
		int ret;

		if (ut_now_ns() >= end_ns) {
			t->cut = true;
			return false;
		}
		if (holes(d, r, off / 4096) > max_holes) {
			t->sparse++;
			continue;
		}
		t->ranges++;
		ret = gm_collapse(pidfd, vr->host_addr + off, RANGE);
		if (!ret) {
			t->collapsed++;
		} else {
			t->failed++;
			if (!t->first_error)
				t->first_error = ret;
		}
	}
	return true;
}

void dst_collapse(struct mig_dst *d, struct mig_thp_stats *t)
{
	int64_t budget = d->p->thp_collapse_ms ? d->p->thp_collapse_ms :
						 DEFAULT_BUDGET_MS;
	uint32_t pid = d->vm.link.hello.pid;
	uint64_t t0 = ut_now_ns();
	int64_t kb;
	int pidfd;

	memset(t, 0, sizeof(*t));
	t->huge_bytes = -1;
	for (uint32_t r = 0; r < d->vm.nr; r++)
		if (d->vm.map[r].backing == GM_BACKING_SHMEM)
			t->shmem_bytes += d->vm.map[r].size;
	if (!t->shmem_bytes)
		return;
	t->tried = true;
	gm_thp_shmem_mode(t->shmem_enabled, sizeof(t->shmem_enabled));
	if (budget < 0) {
		snprintf(t->why, sizeof(t->why), "--thp-collapse off");
		return;
	}
	if (!thp_allowed(t->shmem_enabled)) {
		snprintf(t->why, sizeof(t->why), "shmem_enabled is %s",
			 t->shmem_enabled[0] ? t->shmem_enabled : "unknown");
		return;
	}
	pidfd = gm_collapse_open(pid);
	if (pidfd < 0) {
		snprintf(t->why, sizeof(t->why), "no handle on the VMM (pid %u): "
			 "%s", pid, strerror(-pidfd));
		return;
	}
	for (uint32_t r = 0; r < d->vm.nr; r++) {
		const struct vml_region *vr = &d->vm.link.hello.regions[r];

		if (d->vm.map[r].backing != GM_BACKING_SHMEM)
			continue;
		if ((vr->host_addr - vr->fd_offset) % RANGE) {
			t->misaligned++;
			if (!t->why[0])
				snprintf(t->why, sizeof(t->why),
					 "the VMM maps region %u at %#llx, not "
					 "2 MiB-aligned to its file offset",
					 r, (unsigned long long)vr->host_addr);
			continue;
		}
		if (!collapse_region(d, r, pidfd, t0 + budget * 1000000ULL,
				     holes_max(), t))
			break;
	}
	close(pidfd);
	t->ms = (ut_now_ns() - t0) / 1e6;
	kb = gm_shmem_pmd_mapped_kb(pid);
	t->huge_bytes = kb < 0 ? -1 : kb * 1024;
	if (!t->collapsed && !t->why[0])
		snprintf(t->why, sizeof(t->why), "%s",
			 t->first_error ? strerror(-t->first_error) :
					  "every range was mostly holes");
	pr_info("THP: %u of %u 2 MiB ranges collapsed in %.1f ms (%u mostly "
		"holes left alone%s); the VMM maps %lld KiB of shmem huge%s%s",
		t->collapsed, t->ranges, t->ms, t->sparse,
		t->cut ? ", budget spent" : "", (long long)kb,
		t->misaligned ? "; " : "", t->misaligned ? t->why : "");
}
