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

/* A huge page fed 4 KiB units (MIG_FEAT_PAGESIZES): complete once each
 * of its units holds data or is known to be zero. */
bool dst_unit_complete(struct mig_dst *d, uint32_t r, uint64_t u0)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), g0 = d->vm.first[r] + u0;

	for (uint64_t g = ut_bitmap_find_next_zero(&d->received, g0);
	     g < g0 + per; g = ut_bitmap_find_next_zero(&d->received, g + 1))
		if (!ut_bitmap_test(&d->zero, g))
			return false;
	return true;
}

int dst_unit_map(struct mig_dst *d, uint32_t r, uint64_t u0)
{
	uint64_t g0 = d->vm.first[r] + u0;
	size_t psz = d->vm.map[r].page_size;
	int ret, tries = 0;

	/* A huge page all of whose units are zero may not be in the page
	 * cache yet: a read through our mapping allocates it, zeroed (and
	 * changes nothing of one that is there). */
	(void)*(volatile uint8_t *)mig_vm_page(&d->vm, r, u0);
	do
		ret = gm_uffd_continue(&d->uffd, vmm_addr(d, r, u0), psz, 0);
	while (ret == -EAGAIN && ++tries < 100);
	if (ret && ret != -EEXIST)
		return ret;
	/* The fault on the huge page is recorded on its first unit. */
	if (mig_faults_served(&d->faults, g0, ut_now_ns()))
		dst_wake_if_idle(d);
	return 0;
}

/* Minor mode, a unit of a huge page: written into the page cache through
 * our mapping (the VMM cannot see it: the huge page is not mapped there
 * before all of its units are in), and the huge page mapped by the
 * thread that completes it. A unit that holds its data already is
 * final: a second copy (pushed and asked for) is dropped. */
static int place_unit(struct mig_dst *d, uint32_t r, uint64_t idx,
		      const void *buf)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), g = d->vm.first[r] + idx;
	uint64_t u0 = idx - idx % per;

	if (ut_bitmap_test(&d->received, g) ||
	    ut_bitmap_test_and_set(&d->claimed, g))
		return 0;
	if (buf)
		memcpy(mig_vm_page(&d->vm, r, idx), buf, MIG_SUB_SIZE);
	else
		memset(mig_vm_page(&d->vm, r, idx), 0, MIG_SUB_SIZE);
	ut_bitmap_set(&d->received, g);
	ut_bitmap_clear(&d->zero, g);
	return dst_unit_complete(d, r, u0) ? dst_unit_map(d, r, u0) : 0;
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

	if (mig_vm_per_page(&d->vm, r) > 1)
		return place_unit(d, r, idx, buf);
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
