// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination's atomic placement of a page, from any thread (the
 * receivers past the POSTCOPY marker, the urgent thread, the fault
 * thread): in minor mode written into the page cache through the agent's
 * own mapping, then mapped into the VMM with UFFDIO_CONTINUE by the one
 * thread that claimed it; otherwise UFFDIO_COPY or UFFDIO_ZEROPAGE. Each
 * placement serves the fault waiting on the page and counts its time.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

/* dst_finish_postcopy() waits, under lock, for the last request to be
 * placed: a request just taken off may have been it. */
void dst_wake_if_idle(struct mig_dst *d)
{
	if (mig_faults_outstanding(&d->faults))
		return;
	pthread_mutex_lock(&d->meet.lock);
	pthread_cond_broadcast(&d->meet.cond);
	pthread_mutex_unlock(&d->meet.lock);
}

/* Bookkeeping once page @g holds its data: a fault waiting on it is
 * served, and its service time counted. */
static void placed(struct mig_dst *d, uint64_t g)
{
	ut_bitmap_set(&d->received, g);
	ut_bitmap_clear(&d->zero, g);
	if (mig_faults_served(&d->faults, g, ut_now_ns()))
		dst_wake_if_idle(d);
}

/* Minor mode: the page into the page cache through our own mapping (or
 * the backing file), then mapped into the VMM. Only the thread that
 * claims the page writes it: a second writer could overwrite what the
 * guest wrote after the first one's CONTINUE. */
static int place_minor(struct mig_dst *d, uint32_t r, uint64_t idx,
		       const void *buf)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	uint64_t g = d->vm.first[r] + idx;
	int ret = 0, tries = 0;

	if (ut_bitmap_test_and_set(&d->claimed, g))
		return 0; /* being placed; its CONTINUE wakes the fault */
	if (!buf)
		buf = d->zero_page;
	/* A page never placed is not in the page cache: UFFDIO_COPY puts it
	 * there and maps it at once, allocated in the VMM's address space
	 * and memory cgroup (a write from here would charge this agent's
	 * cgroup with the guest's memory). -EEXIST: it is there after all,
	 * written and mapped below. */
	if (d->vm.copy && !ut_bitmap_test(&d->received, g)) {
		ret = gm_uffd_copy(&d->uffd, vmm_addr(d, r, idx), buf, psz, 0);
		if (!ret) {
			placed(d, g);
			return 0;
		}
		if (ret != -EEXIST && ret != -EAGAIN) {
			ut_bitmap_clear(&d->claimed, g);
			return ret;
		}
		ret = 0;
	}
	if (d->vm.copy)
		ret = mig_vm_write(&d->vm, r, idx, buf, psz);
	else
		memcpy(mig_vm_page(&d->vm, r, idx), buf, psz);
	while (!ret) {
		ret = gm_uffd_continue(&d->uffd, vmm_addr(d, r, idx), psz, 0);
		if (ret != -EAGAIN || ++tries >= 100)
			break;
	}
	if (ret == -EEXIST)
		ret = 0;
	if (ret) {
		ut_bitmap_clear(&d->claimed, g);
		return ret;
	}
	placed(d, g);
	return 0;
}

int dst_place_sub(struct mig_dst *d, const struct mig_subpages *sp,
		  const uint8_t *data)
{
	uint32_t psz = d->vm.layout.r[sp->region].page_size;
	uint64_t g = d->vm.first[sp->region] + sp->page;
	uint8_t *page = mig_vm_page(&d->vm, sp->region, sp->page) +
			(size_t)sp->first * MIG_SUB_SIZE;
	int ret, tries = 0;

	if (ut_bitmap_test_and_set(&d->claimed, g))
		return 0; /* being placed; its CONTINUE wakes the fault */
	for (uint32_t i = 0; i < MIG_SUB_PER_PAGE; i++) {
		uint8_t *sub = page + (size_t)i * MIG_SUB_SIZE;

		if (sp->data[i / 8] & (1u << (i % 8))) {
			memcpy(sub, data, MIG_SUB_SIZE);
			data += MIG_SUB_SIZE;
		} else if (sp->zero[i / 8] & (1u << (i % 8))) {
			memset(sub, 0, MIG_SUB_SIZE);
		}
	}
	do
		ret = gm_uffd_continue(&d->uffd, vmm_addr(d, sp->region,
							  sp->page), psz, 0);
	while (ret == -EAGAIN && ++tries < 100);
	if (ret == -EEXIST)
		ret = 0;
	if (ret) {
		ut_bitmap_clear(&d->claimed, g);
		return ret;
	}
	ut_bitmap_clear(&d->held, g);
	placed(d, g);
	return 0;
}

/* Places one page atomically; another placement winning is fine. */
int dst_place(struct mig_dst *d, uint32_t r, uint64_t idx, const void *buf)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	int ret, tries = 0;

	if (d->minor)
		return place_minor(d, r, idx, buf);
	do {
		ret = buf ? gm_uffd_copy(&d->uffd, vmm_addr(d, r, idx), buf,
					 psz, 0) :
			    gm_uffd_zeropage(&d->uffd, vmm_addr(d, r, idx), psz,
					     0);
	} while (ret == -EAGAIN && ++tries < 100);
	if (ret == -EEXIST)
		ret = 0;
	if (!ret)
		placed(d, d->vm.first[r] + idx);
	return ret;
}

/* A zero page: the zero page where the backing has one, else a copy. */
int dst_place_zero(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	return dst_place(d, r, idx,
		     d->vm.layout.r[r].page_size > 4096 || d->minor ?
			     d->zero_page : NULL);
}

int dst_discard(struct mig_dst *d, const struct mig_zero *zp)
{
	const struct mig_zero z = *zp;
	uint64_t run = 0, run_len = 0;	/* pages to drop, contiguous */
	uint32_t psz = d->vm.layout.r[z.region].page_size;
	int ret = 0;

	for (uint64_t i = 0; i <= z.npages && !ret; i++) {
		uint64_t g = d->vm.first[z.region] + z.first + i;

		if (i < z.npages && (z.bits[i / 8] & (1u << (i % 8)))) {
			ut_bitmap_clear(&d->zero, g);
			ut_bitmap_clear(&d->claimed, g);
			/* Kept: its SUBPAGES update it before it is mapped. */
			if (d->keep && psz >= MIG_SUB_WINDOW &&
			    ut_bitmap_test_and_clear(&d->received, g)) {
				ut_bitmap_set(&d->held, g);
			} else {
				ut_bitmap_clear(&d->received, g);
				if (!run_len)
					run = z.first + i;
				run_len++;
				continue;
			}
		}
		/* A run of dropped pages ends: one hole for all of it (a
		 * call per page costs about twice as much per page). */
		if (run_len)
			ret = gm_region_discard(&d->vm.map[z.region], run * psz,
						run_len * psz);
		run_len = 0;
	}
	return ret;
}
