// SPDX-License-Identifier: LGPL-2.1-or-later
/* Guest RAM regions: the common part; backings live in region-*.c. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "guestmem"
#include "guestmem/internal.h"

static const struct {
	const char *name;
	size_t page_size;
	const struct gm_backing_ops *ops;
} backings[GM_BACKING_COUNT] = {
	[GM_BACKING_SHMEM] = { "shmem", 4096, &gm_backing_memfd_ops },
	[GM_BACKING_HUGETLB_2M] = { "hugetlb-2M", 2 * UT_MiB,
				    &gm_backing_memfd_ops },
	[GM_BACKING_HUGETLB_1G] = { "hugetlb-1G", UT_GiB,
				    &gm_backing_memfd_ops },
	[GM_BACKING_ANON] = { "anon", 4096, &gm_backing_anon_ops },
	[GM_BACKING_ANON_THP] = { "anon-thp", 4096, &gm_backing_anon_ops },
};

const char *gm_backing_name(enum gm_backing b)
{
	return (unsigned int)b < GM_BACKING_COUNT ? backings[b].name : "?";
}

size_t gm_backing_page_size(enum gm_backing b)
{
	return (unsigned int)b < GM_BACKING_COUNT ? backings[b].page_size : 0;
}

int gm_backing_parse(const char *name, enum gm_backing *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned int i = 0; i < GM_BACKING_COUNT; i++) {
		if (!strcasecmp(name, backings[i].name)) {
			*out = i;
			return 0;
		}
	}
	if (!strcmp(name, "hugetlb")) {
		*out = GM_BACKING_HUGETLB_2M;
		return 0;
	}
	if (!strcmp(name, "thp")) {
		*out = GM_BACKING_ANON_THP;
		return 0;
	}
	pr_err("unknown memory backing '%s' (shmem, hugetlb-2M, hugetlb-1G, "
	       "anon, anon-thp)", name);
	return -EINVAL;
}

/* Total host memory in bytes, 0 if unknown. */
static uint64_t host_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	return pages > 0 && psz > 0 ? (uint64_t)pages * psz : 0;
}

static int check_size(enum gm_backing backing, size_t size)
{
	size_t psz = gm_backing_page_size(backing);
	uint64_t host = host_memory();

	if ((unsigned int)backing >= GM_BACKING_COUNT) {
		pr_err("invalid memory backing %d", backing);
		return -EINVAL;
	}
	if (size == 0 || !UT_IS_ALIGNED(size, psz)) {
		pr_err("guest RAM size %zu is not a non-zero multiple of the "
		       "%s page size (%zu)", size, backings[backing].name, psz);
		return -EINVAL;
	}
	if (host && size > host) {
		pr_err("guest RAM of %zu MiB exceeds host memory (%llu MiB)",
		       size >> 20, (unsigned long long)(host >> 20));
		return -ENOMEM;
	}
	return 0;
}

int gm_region_init(struct gm_region *r, enum gm_backing backing, size_t size,
		   const char *name)
{
	return gm_region_init_flags(r, backing, size, name, 0);
}

int gm_region_init_flags(struct gm_region *r, enum gm_backing backing,
			 size_t size, const char *name, unsigned int flags)
{
	int ret;

	if (!r)
		return -EINVAL;
	*r = (struct gm_region){ .fd = -1, .flags = flags };
	ret = check_size(backing, size);
	if (ret)
		return ret;
	r->size = size;
	r->page_size = gm_backing_page_size(backing);
	r->backing = backing;
	r->owner = true;
	ret = backings[backing].ops->create(r, name ? name : "ferry-guest-ram");
	if (ret) {
		r->owner = false;
		gm_region_fini(r);
	}
	return ret;
}

int gm_region_attach(struct gm_region *r, enum gm_backing backing, int fd,
		     uint64_t fd_offset, size_t size)
{
	int ret;

	if (!r)
		return -EINVAL;
	*r = (struct gm_region){ .fd = -1 };
	ret = check_size(backing, size);
	if (ret)
		return ret;
	if (backings[backing].ops != &gm_backing_memfd_ops || fd < 0 ||
	    !UT_IS_ALIGNED(fd_offset, gm_backing_page_size(backing))) {
		pr_err("cannot attach %s memory (fd %d, offset %llu)",
		       backings[backing].name, fd,
		       (unsigned long long)fd_offset);
		return -EINVAL;
	}
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		ret = -errno;
		pr_err("dup of guest RAM fd failed: %s", strerror(-ret));
		return ret;
	}
	r->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
		       fd_offset);
	if (r->host == MAP_FAILED) {
		ret = -errno;
		r->host = NULL;
		/* The pool is short: the caller says so, with the numbers. */
		if (ret != -ENOMEM || gm_backing_page_size(backing) == 4096)
			pr_err("mapping %zu MiB of guest RAM failed: %s",
			       size >> 20, strerror(-ret));
		gm_region_fini(r);
		return ret;
	}
	r->size = size;
	r->page_size = gm_backing_page_size(backing);
	r->fd_offset = fd_offset;
	r->backing = backing;
	return 0;
}

void gm_region_fini(struct gm_region *r)
{
	if (!r)
		return;
	if (r->host)
		munmap(r->host, r->size);
	if (r->fd >= 0)
		close(r->fd);
	*r = (struct gm_region){ .fd = -1 };
}

int gm_region_discard(struct gm_region *r, uint64_t off, size_t len)
{
	if (!r || !r->host || len == 0 || !UT_IS_ALIGNED(off, r->page_size) ||
	    !UT_IS_ALIGNED(len, r->page_size) || off > r->size ||
	    len > r->size - off) {
		pr_err("invalid discard range %llu+%zu",
		       (unsigned long long)off, len);
		return -EINVAL;
	}
	return backings[r->backing].ops->discard(r, off, len);
}
