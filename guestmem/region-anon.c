// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Anonymous private backings: the only memory KSM merges. Other processes
 * reach it with process_vm_readv or UFFDIO_COPY, not through an fd.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define LOG_PREFIX "guestmem"
#include "guestmem/internal.h"

#define THP_SIZE (2 * UT_MiB)

static int anon_create(struct gm_region *r, const char *name)
{
	bool thp = r->backing == GM_BACKING_ANON_THP;
	/* THP needs 2M-aligned addresses: map a little more and trim. */
	size_t len = thp ? r->size + THP_SIZE : r->size;
	uint8_t *p, *start;
	int ret;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		pr_err("mapping %zu MiB of anonymous guest RAM failed: %s",
		       r->size >> 20, strerror(-ret));
		return ret;
	}
	start = p;
	if (thp) {
		start = (uint8_t *)UT_ALIGN_UP((uintptr_t)p, THP_SIZE);
		if (start > p)
			munmap(p, start - p);
		munmap(start + r->size, p + len - (start + r->size));
	}
	r->host = start;
	if (madvise(start, r->size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		pr_warn("madvise(%s) failed: %s", thp ? "HUGEPAGE" : "NOHUGEPAGE",
			strerror(errno));
	return 0;
}

static int anon_discard(struct gm_region *r, uint64_t off, size_t len)
{
	if (madvise((uint8_t *)r->host + off, len, MADV_DONTNEED)) {
		int ret = -errno;

		pr_err("MADV_DONTNEED of %zu bytes failed: %s", len,
		       strerror(-ret));
		return ret;
	}
	return 0;
}

const struct gm_backing_ops gm_backing_anon_ops = {
	.create = anon_create,
	.discard = anon_discard,
};
