/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * guestmem private declarations. Other modules include guestmem.h only.
 *
 * Debian 12 ships 6.1 kernel headers; the kernel that runs here is newer.
 * Everything userfaultfd and pagemap gained since 6.1 is defined below,
 * behind #ifndef, with the kernel's values, and probed at run time.
 */
#ifndef FERRY_GUESTMEM_INTERNAL_H
#define FERRY_GUESTMEM_INTERNAL_H

#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include "guestmem/guestmem.h"

/* ---- userfaultfd since 6.1 ---- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED GM_UFFD_FEATURE_WP_UNPOPULATED /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON GM_UFFD_FEATURE_POISON /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC GM_UFFD_FEATURE_WP_ASYNC /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE GM_UFFD_FEATURE_MOVE /* 6.8 */
#endif

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE			(0x05)
#define UFFDIO_MOVE_MODE_DONTWAKE		((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES	((__u64)1 << 1)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;	/* bytes moved, or -errno */
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON			(0x08)
#define UFFDIO_POISON_MODE_DONTWAKE	((__u64)1 << 0)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;	/* bytes poisoned, or -errno */
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

/* ---- PAGEMAP_SCAN (6.7), on /proc/PID/pagemap ---- */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED	(1 << 0)
#define PAGE_IS_WRITTEN		(1 << 1)
#define PAGE_IS_FILE		(1 << 2)
#define PAGE_IS_PRESENT		(1 << 3)
#define PAGE_IS_SWAPPED		(1 << 4)
#define PAGE_IS_PFNZERO		(1 << 5)
#define PAGE_IS_HUGE		(1 << 6)
#define PAGE_IS_SOFT_DIRTY	(1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING	(1 << 0)
#define PM_SCAN_CHECK_WPASYNC	(1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;		/* out: where the walk stopped */
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* ---- backings ---- */

/* One per kind of memory: how to create it and how to drop pages. */
struct gm_backing_ops {
	int (*create)(struct gm_region *r, const char *name);
	int (*discard)(struct gm_region *r, uint64_t off, size_t len);
};

extern const struct gm_backing_ops gm_backing_memfd_ops;
extern const struct gm_backing_ops gm_backing_anon_ops;

/* ---- dirty trackers ---- */

/* The common head of every tracker; the variant's state follows it. */
struct gm_dirty {
	const struct gm_dirty_ops *ops;
	uint64_t npages;	/* pages tracked across all ranges */
};

struct gm_dirty_ops {
	const char *name;
	int (*create)(struct gm_dirty **out, const struct gm_dirty_params *p);
	ssize_t (*harvest)(struct gm_dirty *d, struct ut_bitmap *bm);
	int64_t (*peek)(struct gm_dirty *d);
	void (*destroy)(struct gm_dirty *d);
};

extern const struct gm_dirty_ops gm_dirty_uffdwp_ops;

/* ---- page scanning variants (scan-*.c) ---- */
bool gm_is_zero_scalar(const void *p, size_t len);
bool gm_is_zero_avx2(const void *p, size_t len);
bool gm_is_zero_avx512(const void *p, size_t len);

#endif /* FERRY_GUESTMEM_INTERNAL_H */
