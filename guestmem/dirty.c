// SPDX-License-Identifier: LGPL-2.1-or-later
/* Dirty tracking: checks the request, then hands it to a tracker variant. */
#include "config.h"

#include <errno.h>

#define LOG_PREFIX "dirty"
#include "guestmem/internal.h"

static const struct gm_dirty_ops *const trackers[] = {
	[GM_DIRTY_UFFD_WP] = &gm_dirty_uffdwp_ops,
};

static int check_ranges(const struct gm_dirty_params *p)
{
	for (unsigned int i = 0; i < p->nr_ranges; i++) {
		const struct gm_dirty_range *r = &p->ranges[i];

		if (r->page_size < 4096 ||
		    (r->page_size & (r->page_size - 1)) || !r->len ||
		    !UT_IS_ALIGNED(r->addr, r->page_size) ||
		    !UT_IS_ALIGNED(r->len, r->page_size) ||
		    r->addr + r->len < r->addr) {
			pr_err("range %u (0x%llx+0x%llx, page %zu) is not "
			       "page-aligned", i, (unsigned long long)r->addr,
			       (unsigned long long)r->len, r->page_size);
			return -EINVAL;
		}
	}
	return 0;
}

int gm_dirty_create(struct gm_dirty **out, const struct gm_dirty_params *p)
{
	int ret;

	if (!out || !p || !p->ranges || !p->nr_ranges ||
	    (unsigned int)p->kind >= UT_ARRAY_SIZE(trackers)) {
		pr_err("invalid dirty tracking request");
		return -EINVAL;
	}
	ret = check_ranges(p);
	if (ret)
		return ret;
	return trackers[p->kind]->create(out, p);
}

uint64_t gm_dirty_pages(const struct gm_dirty *d)
{
	return d ? d->npages : 0;
}

ssize_t gm_dirty_harvest(struct gm_dirty *d, struct ut_bitmap *bm)
{
	if (!d || !bm || bm->nbits != d->npages) {
		pr_err("harvest needs a bitmap of %llu pages",
		       (unsigned long long)(d ? d->npages : 0));
		return -EINVAL;
	}
	return d->ops->harvest(d, bm);
}

int64_t gm_dirty_peek(struct gm_dirty *d)
{
	return d ? d->ops->peek(d) : -EINVAL;
}

void gm_dirty_destroy(struct gm_dirty *d)
{
	if (d)
		d->ops->destroy(d);
}
