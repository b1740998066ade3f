// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * memfd backings: shmem (4K) and hugetlb (2M, 1G), mapped MAP_SHARED so that
 * an agent can map the same pages through the fd.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "guestmem"
#include "guestmem/internal.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

/* A pool's file: the system-wide pool's (@node -1) or node @node's. */
static void hugetlb_path(char *buf, size_t len, int node, size_t page_size,
			 const char *file)
{
	if (node < 0)
		snprintf(buf, len, "/sys/kernel/mm/hugepages/hugepages-%zukB/%s",
			 page_size >> 10, file);
	else
		snprintf(buf, len, "/sys/devices/system/node/node%d/hugepages/"
			 "hugepages-%zukB/%s", node, page_size >> 10, file);
}

static ssize_t read_ulong(const char *path)
{
	unsigned long v;
	ssize_t ret;
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	ret = fscanf(f, "%lu", &v) == 1 ? (ssize_t)v : -EIO;
	fclose(f);
	return ret;
}

static ssize_t hugetlb_read(int node, size_t page_size, const char *file)
{
	char path[160];

	hugetlb_path(path, sizeof(path), node, page_size, file);
	return read_ulong(path);
}

ssize_t gm_hugetlb_node_free(int node, size_t page_size)
{
	ssize_t free_pages = hugetlb_read(node, page_size, "free_hugepages");
	ssize_t resv = node < 0 ?
		       hugetlb_read(node, page_size, "resv_hugepages") : 0;

	if (free_pages < 0)
		return free_pages;
	if (resv < 0)
		return resv;
	return free_pages > resv ? free_pages - resv : 0;
}

ssize_t gm_hugetlb_node_pool(int node, size_t page_size)
{
	return hugetlb_read(node, page_size, "nr_hugepages");
}

void gm_hugetlb_node_path(char *buf, size_t len, int node, size_t page_size)
{
	hugetlb_path(buf, len, node, page_size, "nr_hugepages");
}

ssize_t gm_hugetlb_node_set(int node, size_t page_size, unsigned long nr,
			    unsigned long *old)
{
	char path[160];
	ssize_t cur = hugetlb_read(node, page_size, "nr_hugepages");
	FILE *f;
	int ret = 0;

	if (cur < 0) {
		pr_err("no %zu kB huge page pool%s: %s", page_size >> 10,
		       node < 0 ? "" : " on that node", strerror(-cur));
		return cur;
	}
	if (old)
		*old = cur;
	hugetlb_path(path, sizeof(path), node, page_size, "nr_hugepages");
	f = fopen(path, "we");
	if (!f)
		return -errno;
	if (fprintf(f, "%lu\n", nr) < 0)
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (ret) {
		pr_err("setting %s to %lu failed: %s", path, nr, strerror(-ret));
		return ret;
	}
	return hugetlb_read(node, page_size, "nr_hugepages");
}

ssize_t gm_hugetlb_free(size_t page_size)
{
	return gm_hugetlb_node_free(-1, page_size);
}

ssize_t gm_hugetlb_pool(size_t page_size)
{
	return gm_hugetlb_node_pool(-1, page_size);
}

void gm_hugetlb_path(char *buf, size_t len, size_t page_size)
{
	gm_hugetlb_node_path(buf, len, -1, page_size);
}

ssize_t gm_hugetlb_set(size_t page_size, unsigned long nr,
		       unsigned long *old)
{
	return gm_hugetlb_node_set(-1, page_size, nr, old);
}

/* Fails early, with the fix in the message, when the pool is too small. */
static int hugetlb_check(const struct gm_region *r)
{
	size_t need = r->size / r->page_size;
	ssize_t avail = gm_hugetlb_free(r->page_size);
	ssize_t total = hugetlb_read(-1, r->page_size, "nr_hugepages");
	char path[128];

	if (avail < 0 || total < 0) {
		pr_err("%s: this kernel has no %zu kB huge page pool",
		       gm_backing_name(r->backing), r->page_size >> 10);
		return -EOPNOTSUPP;
	}
	if ((size_t)avail >= need)
		return 0;
	hugetlb_path(path, sizeof(path), -1, r->page_size, "nr_hugepages");
	pr_err("%s: %zu huge pages needed, %zd free; reserve them with: "
	       "echo %zu > %s", gm_backing_name(r->backing), need, avail,
	       (size_t)total + need - avail, path);
	return -ENOMEM;
}

static int memfd_create_region(struct gm_region *r, const char *name)
{
	unsigned int flags = MFD_CLOEXEC;
	bool noreserve = r->flags & GM_REGION_NORESERVE;
	int ret;

	if (r->backing != GM_BACKING_SHMEM) {
		ret = noreserve ? 0 : hugetlb_check(r);
		if (ret)
			return ret;
		flags |= MFD_HUGETLB |
			 (__builtin_ctzll(r->page_size) << MFD_HUGE_SHIFT);
	}
	r->fd = memfd_create(name, flags);
	if (r->fd < 0) {
		ret = -errno;
		pr_err("memfd_create(%s) failed: %s",
		       gm_backing_name(r->backing), strerror(-ret));
		return ret;
	}
	if (ftruncate(r->fd, r->size)) {
		ret = -errno;
		pr_err("sizing guest RAM to %zu MiB failed: %s", r->size >> 20,
		       strerror(-ret));
		return ret;
	}
	r->host = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (noreserve ? MAP_NORESERVE : 0), r->fd, 0);
	if (r->host == MAP_FAILED) {
		ret = -errno;
		r->host = NULL;
		pr_err("mapping %zu MiB of %s guest RAM failed: %s",
		       r->size >> 20, gm_backing_name(r->backing),
		       strerror(-ret));
		return ret;
	}
	return 0;
}

static int memfd_discard(struct gm_region *r, uint64_t off, size_t len)
{
	/* Punching the hole also zaps the page tables of every process that
	 * maps the file, so the VMM's next access faults as well. */
	if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      r->fd_offset + off, len)) {
		int ret = -errno;

		pr_err("punching %zu bytes at %llu failed: %s", len,
		       (unsigned long long)off, strerror(-ret));
		return ret;
	}
	return 0;
}

const struct gm_backing_ops gm_backing_memfd_ops = {
	.create = memfd_create_region,
	.discard = memfd_discard,
};
