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
#include <stdlib.h>
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
	_Atomic uint32_t *cur = d->ucur[r] ? &d->ucur[r][u0 / per] : NULL;
	uint32_t from = cur ? atomic_load(cur) : 0, seen;
	uint64_t g;

	for (g = ut_bitmap_find_next_zero(&d->received, g0 + from);
	     g < g0 + per; g = ut_bitmap_find_next_zero(&d->received, g + 1))
		if (!ut_bitmap_test(&d->zero, g))
			break;
	/* Every unit before g is complete: move the mark up to it. */
	seen = (uint32_t)((g < g0 + per ? g : g0 + per) - g0);
	while (cur && from < seen &&
	       !atomic_compare_exchange_weak(cur, &from, seen))
		;
	return g >= g0 + per;
}

/* Unit @idx of region @r is no longer complete (discarded). */
static void unit_lost(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	uint64_t per = mig_vm_per_page(&d->vm, r);
	_Atomic uint32_t *cur = &d->ucur[r][idx / per];
	uint32_t at = (uint32_t)(idx % per), from = atomic_load(cur);

	while (from > at && !atomic_compare_exchange_weak(cur, &from, at))
		;
}

/* Copy mode: a huge page's stage slot once the page is placed. */
#define HP_PLACED ((uint8_t *)1)

/* Copy mode: the stage of huge page @hp of region @r, made (zeroed)
 * when @make and there is none yet; NULL without one or memory, and
 * HP_PLACED once the page is placed. */
static uint8_t *hp_stage(struct mig_dst *d, uint32_t r, uint64_t hp,
			 bool make)
{
	size_t psz = d->vm.map[r].page_size;
	uint8_t *cur = atomic_load(&d->hstage[r][hp]), *mine;

	if (cur || !make)
		return cur;
	mine = aligned_alloc(4096, psz);
	if (!mine)
		return NULL;
	memset(mine, 0, psz);
	if (atomic_compare_exchange_strong(&d->hstage[r][hp], &cur, mine))
		return mine;
	free(mine);	/* another thread's came first */
	return cur;
}

/* Copy mode: places the whole huge page at unit @u0 from its stage, by
 * the one thread that takes it (HP_PLACED for everyone after). A page
 * with no stage is all zero, or in the page cache already (EEXIST). */
static int unit_copy(struct mig_dst *d, uint32_t r, uint64_t u0)
{
	uint64_t hp = u0 / mig_vm_per_page(&d->vm, r);
	size_t psz = d->vm.map[r].page_size;
	uint8_t *st = atomic_exchange(&d->hstage[r][hp], HP_PLACED);
	int ret, tries = 0;

	if (st == HP_PLACED) {
		/* Placed, or being placed: that COPY wakes the fault. */
		gm_uffd_wake(&d->uffd, vmm_addr(d, r, u0), psz);
		return 1;
	}
	if (!st && (st = aligned_alloc(4096, psz)))
		memset(st, 0, psz);
	if (!st) {
		atomic_store(&d->hstage[r][hp], NULL);
		return -ENOMEM;
	}
	do
		ret = gm_uffd_copy(&d->uffd, vmm_addr(d, r, u0), st, psz, 0);
	while (ret == -EAGAIN && ++tries < 100);
	free(st);
	return ret == -EEXIST ? 0 : ret;
}

int dst_unit_map(struct mig_dst *d, uint32_t r, uint64_t u0)
{
	uint64_t g0 = d->vm.first[r] + u0;
	size_t psz = d->vm.map[r].page_size;
	int ret, tries = 0;

	if (!d->minor) {
		ret = unit_copy(d, r, u0);
	} else {
		/* A huge page all of whose units are zero may not be in the
		 * page cache yet: a read through our mapping allocates it,
		 * zeroed (and changes nothing of one that is there). */
		(void)*(volatile uint8_t *)mig_vm_page(&d->vm, r, u0);
		do
			ret = gm_uffd_continue(&d->uffd, vmm_addr(d, r, u0),
					       psz, 0);
		while (ret == -EAGAIN && ++tries < 100);
		if (ret == -EEXIST)
			ret = 0;
	}
	if (ret)
		return ret > 0 ? 0 : ret;
	/* The fault on the huge page is recorded on its first unit. */
	if (mig_faults_served(&d->faults, g0, ut_now_ns()))
		dst_wake_if_idle(d);
	return 0;
}

/* Copy mode: huge page @hp (first unit @u0) out of the page cache, what
 * it held of its units kept in its stage. */
static int stage_out(struct mig_dst *d, uint32_t r, uint64_t u0,
		     uint64_t hp)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), g0 = d->vm.first[r] + u0;
	size_t psz = d->vm.map[r].page_size;
	uint8_t *st;

	if (ut_bitmap_find_next(&d->received, g0) < g0 + per) {
		st = hp_stage(d, r, hp, true);
		if (!st)
			return -ENOMEM;
		memcpy(st, mig_vm_page(&d->vm, r, u0), psz);
	}
	return gm_region_discard(&d->vm.map[r], u0 * MIG_SUB_SIZE, psz);
}

int dst_units_stage_partial(struct mig_dst *d)
{
	int ret = 0;

	for (uint32_t r = 0; r < d->vm.nr && !ret; r++) {
		uint64_t per = mig_vm_per_page(&d->vm, r);

		for (uint64_t hp = 0; d->hstage[r] && !ret &&
		     hp < region_pages(d, r) / per; hp++)
			if (!dst_unit_complete(d, r, hp * per))
				ret = stage_out(d, r, hp * per, hp);
	}
	return ret;
}

int dst_units_init(struct mig_dst *d)
{
	for (uint32_t r = 0; r < d->vm.nr; r++) {
		uint64_t per = mig_vm_per_page(&d->vm, r);

		if (per == 1)
			continue;
		d->ucur[r] = calloc(region_pages(d, r) / per,
				    sizeof(*d->ucur[r]));
		if (!d->ucur[r])
			return -ENOMEM;
		if (d->minor || !d->can_postcopy)
			continue;
		d->hstage[r] = calloc(region_pages(d, r) / per,
				      sizeof(*d->hstage[r]));
		if (!d->hstage[r])
			return -ENOMEM;
	}
	return 0;
}

void dst_units_fini(struct mig_dst *d)
{
	for (uint32_t r = 0; r < MIG_MAX_REGIONS; r++) {
		uint64_t n = d->hstage[r] ?
			     region_pages(d, r) / mig_vm_per_page(&d->vm, r) : 0;

		for (uint64_t i = 0; i < n; i++)
			if (atomic_load(&d->hstage[r][i]) != HP_PLACED)
				free(atomic_load(&d->hstage[r][i]));
		free(d->hstage[r]);
		d->hstage[r] = NULL;
		free(d->ucur[r]);
		d->ucur[r] = NULL;
	}
}

/* A unit of a huge page, in postcopy: in minor mode written into the
 * page cache through our mapping (the VMM cannot see it: the huge page is
 * not mapped there before all of its units are in), in copy mode into the
 * huge page's stage; the huge page is mapped (CONTINUE) or placed (COPY)
 * by the thread that completes it. A unit that holds its data already is
 * final: a second copy (pushed and asked for) is dropped. */
static int place_unit(struct mig_dst *d, uint32_t r, uint64_t idx,
		      const void *buf)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), g = d->vm.first[r] + idx;
	uint64_t u0 = idx - idx % per;
	uint8_t *to;

	if (ut_bitmap_test(&d->received, g) ||
	    ut_bitmap_test_and_set(&d->claimed, g))
		return 0;
	to = d->minor ? mig_vm_page(&d->vm, r, idx) :
			hp_stage(d, r, u0 / per, true);
	if (!to) {
		ut_bitmap_clear(&d->claimed, g);
		return -ENOMEM;
	}
	if (to == HP_PLACED) {	/* placed whole already */
		ut_bitmap_set(&d->received, g);
		return 0;
	}
	if (!d->minor)
		to += (idx - u0) * MIG_SUB_SIZE;
	if (buf)
		memcpy(to, buf, MIG_SUB_SIZE);
	else
		memset(to, 0, MIG_SUB_SIZE);
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

	if (mig_vm_per_page(&d->vm, r) > 1)
		return place_unit(d, r, idx, buf);
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
				/* A unit of a huge page: the page is not mapped
				 * in the VMM before all of its units are final
				 * (minor mode), or leaves the page cache for a
				 * stage at the switch (copy mode,
				 * dst_units_stage_partial()), so the unit's stale
				 * bytes stay until its new copy overwrites them. */
				if (mig_vm_per_page(&d->vm, z.region) > 1) {
					unit_lost(d, z.region, z.first + i);
					continue;
				}
				if (!run_len)
					run = z.first + i;
				run_len++;
				continue;
			}
		}
		/* A run of dropped pages ends: one hole for all of it (a
		 * call per page costs about twice as much per page). */
		if (run_len && d->vm.map[z.region].fd >= 0)
			ret = gm_region_discard(&d->vm.map[z.region], run * psz,
						run_len * psz);
		run_len = 0;
	}
	/* Anonymous: private to the VMM, only it can drop them (main
	 * thread: the VM link). */
	if (!ret && d->vm.map[z.region].fd < 0)
		ret = dst_advise_bits(d, &z, VML_ADVISE_DONTNEED, NULL);
	return ret;
}
