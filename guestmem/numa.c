// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * NUMA: the host's picture from sysfs, binding guest RAM to a node before
 * its pages are allocated, and asking where its pages ended up.
 *
 * Every sysfs file is optional except the node directories themselves: an
 * older kernel lacks memory_tiering, one without THP or KSM lacks those,
 * and the picture says "unknown" rather than failing.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define LOG_PREFIX "numa"
#include "guestmem/internal.h"

/* Reads @root/@path into @buf (NUL-terminated, trailing newline cut).
 * Returns the length or -errno. */
static ssize_t slurp(const char *root, const char *path, char *buf,
		     size_t cap)
{
	char full[512];
	ssize_t n, got = 0;
	int fd, ret;

	snprintf(full, sizeof(full), "%s%s", root, path);
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((size_t)got < cap - 1) {
		n = read(fd, buf + got, cap - 1 - got);
		if (n < 0) {
			ret = -errno;
			close(fd);
			return ret;
		}
		if (n == 0)
			break;
		got += n;
	}
	close(fd);
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		got--;
	buf[got] = 0;
	return got;
}

static int64_t read_num(const char *root, const char *path)
{
	char buf[64], *end;
	long long v;

	if (slurp(root, path, buf, sizeof(buf)) <= 0)
		return -1;
	v = strtoll(buf, &end, 10);
	return end == buf ? -1 : v;
}

/* "always [madvise] never" -> "madvise" */
static void read_choice(const char *root, const char *path, char *out,
			size_t len)
{
	char buf[256], *a, *b;

	out[0] = 0;
	if (slurp(root, path, buf, sizeof(buf)) <= 0)
		return;
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (!a || !b)
		return;
	*b = 0;
	snprintf(out, len, "%s", a + 1);
}

/* Calls @fn(i, arg) for each number of a kernel list ("0-3,8,10-11").
 * Returns how many, or -EINVAL. Numbers up to 1 << 20. */
static int walk_list(const char *s, void (*fn)(unsigned int, void *),
		     void *arg)
{
	unsigned long a, b;
	char *end;
	int n = 0;

	while (*s == ' ')
		s++;
	while (*s) {
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		a = strtoul(s, &end, 10);
		b = a;
		if (*end == '-') {
			if (!isdigit((unsigned char)end[1]))
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		if (b < a || b > (1u << 20))
			return -EINVAL;
		for (unsigned long i = a; i <= b; i++, n++)
			if (fn)
				fn(i, arg);
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return n;
}

struct mask_acc {
	uint64_t *mask;
	unsigned int limit;	/* bits in mask */
	bool over;
};

static void set_bit(unsigned int i, void *arg)
{
	struct mask_acc *m = arg;

	if (i >= m->limit)
		m->over = true;
	else
		m->mask[i / 64] |= 1ULL << (i % 64);
}

int gm_nodes_parse(const char *s, uint64_t *mask)
{
	struct mask_acc m = { mask, GM_MAX_NODES, false };
	int n;

	*mask = 0;
	if (!s || !*s)
		return -EINVAL;
	n = walk_list(s, set_bit, &m);
	if (n < 0 || m.over)
		return -EINVAL;
	return __builtin_popcountll(*mask);
}

void gm_nodes_format(uint64_t mask, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = 0;
	for (unsigned int i = 0; i < GM_MAX_NODES && off < len; i++) {
		unsigned int j = i;

		if (!(mask >> i & 1))
			continue;
		while (j + 1 < GM_MAX_NODES && (mask >> (j + 1) & 1))
			j++;
		off += snprintf(buf + off, len - off, "%s%u", off ? "," : "",
				i);
		if (j > i && off < len)
			off += snprintf(buf + off, len - off, "-%u", j);
		i = j;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Huge page sizes: /sys/kernel/mm/hugepages/hugepages-<kB>kB. */
static void read_hpsizes(struct gm_topo *t, const char *root)
{
	char path[512];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sys/kernel/mm/hugepages", root);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)) && t->nr_hpsizes < GM_MAX_HPSIZES) {
		unsigned long kb;

		if (sscanf(e->d_name, "hugepages-%lukB", &kb) == 1)
			t->hpsize[t->nr_hpsizes++] = (uint64_t)kb << 10;
	}
	closedir(d);
	qsort(t->hpsize, t->nr_hpsizes, sizeof(t->hpsize[0]), cmp_u64);
}

static void read_meminfo(struct gm_numa_node *n, const char *root)
{
	char path[128], buf[4096], *p;
	unsigned long long kb;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%u/meminfo",
		 n->id);
	if (slurp(root, path, buf, sizeof(buf)) <= 0)
		return;
	p = strstr(buf, "MemTotal:");
	if (p && sscanf(p, "MemTotal: %llu kB", &kb) == 1)
		n->mem_total = kb << 10;
	p = strstr(buf, "MemFree:");
	if (p && sscanf(p, "MemFree: %llu kB", &kb) == 1)
		n->mem_free = kb << 10;
}

static int read_node(struct gm_topo *t, struct gm_numa_node *n,
		     const char *root)
{
	char path[192], buf[1024];
	int64_t v;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%u/cpulist",
		 n->id);
	if (slurp(root, path, buf, sizeof(buf)) >= 0) {
		int c = walk_list(buf, NULL, NULL);

		if (c < 0) {
			pr_err("node %u: cannot parse its CPU list '%s'", n->id,
			       buf);
			return -EINVAL;
		}
		n->ncpus = c;
		/* A list too long to keep is cut after a whole range: a
		 * prefix still names CPUs of the node. */
		if (strlen(buf) >= sizeof(n->cpulist)) {
			buf[sizeof(n->cpulist) - 1] = 0;
			*(strrchr(buf, ',') ? strrchr(buf, ',') : buf) = 0;
		}
		memcpy(n->cpulist, buf, strlen(buf) + 1);
	}
	read_meminfo(n, root);
	for (uint32_t k = 0; k < t->nr_hpsizes; k++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%u/"
			 "hugepages/hugepages-%llukB/nr_hugepages", n->id,
			 (unsigned long long)(t->hpsize[k] >> 10));
		v = read_num(root, path);
		n->hp_total[k] = v > 0 ? v : 0;
		memcpy(path + strlen(path) - strlen("nr_hugepages"),
		       "free_hugepages", sizeof("free_hugepages"));
		v = read_num(root, path);
		n->hp_free[k] = v > 0 ? v : 0;
	}
	n->tier = GM_TIER_NONE;
	return 0;
}

/* node<i>/distance: one number per online node, in node order. */
static int read_distances(struct gm_topo *t, const char *root)
{
	char path[128], buf[1024], *p, *end;

	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		snprintf(path, sizeof(path),
			 "/sys/devices/system/node/node%u/distance",
			 t->node[i].id);
		if (slurp(root, path, buf, sizeof(buf)) <= 0)
			continue;
		p = buf;
		for (uint32_t k = 0; k < t->nr_nodes; k++) {
			unsigned long d = strtoul(p, &end, 10);

			if (end == p || d > 255) {
				pr_err("node %u: bad distance list '%s'",
				       t->node[i].id, buf);
				return -EINVAL;
			}
			t->node[i].distance[k] = d;
			p = end;
		}
	}
	return 0;
}

/* memory_tiering/memory_tier<N>/nodelist. */
static void read_tiers(struct gm_topo *t, const char *root)
{
	char path[512], buf[256];
	struct dirent *e;
	unsigned int tier;
	uint64_t mask;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sys/devices/virtual/memory_tiering",
		 root);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (sscanf(e->d_name, "memory_tier%u", &tier) != 1)
			continue;
		snprintf(path, sizeof(path),
			 "/sys/devices/virtual/memory_tiering/%s/nodelist",
			 e->d_name);
		if (slurp(root, path, buf, sizeof(buf)) <= 0 ||
		    gm_nodes_parse(buf, &mask) < 0)
			continue;
		for (uint32_t i = 0; i < t->nr_nodes; i++)
			if (mask >> t->node[i].id & 1)
				t->node[i].tier = tier;
	}
	closedir(d);
}

void gm_thp_shmem_mode(char *out, size_t len)
{
	read_choice("", "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
		    out, len);
}

static void read_knobs(struct gm_topo *t, const char *root)
{
	int64_t v;

	read_choice(root, "/sys/kernel/mm/transparent_hugepage/enabled",
		    t->thp_enabled, sizeof(t->thp_enabled));
	read_choice(root, "/sys/kernel/mm/transparent_hugepage/defrag",
		    t->thp_defrag, sizeof(t->thp_defrag));
	read_choice(root, "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
		    t->thp_shmem, sizeof(t->thp_shmem));
	t->ksm_run = read_num(root, "/sys/kernel/mm/ksm/run");
	t->ksm_merge_across_nodes =
		read_num(root, "/sys/kernel/mm/ksm/merge_across_nodes");
	v = read_num(root, "/sys/kernel/mm/ksm/pages_sharing");
	t->ksm_pages_sharing = v > 0 ? v : 0;
	t->numa_balancing = read_num(root, "/proc/sys/kernel/numa_balancing");
}

int gm_topo_read(struct gm_topo *t, const char *root)
{
	char path[512];
	uint64_t ids = 0;
	struct dirent *e;
	unsigned int id;
	int ret = 0;
	DIR *d;

	if (!t)
		return -EINVAL;
	root = root ? root : "";
	memset(t, 0, sizeof(*t));
	snprintf(path, sizeof(path), "%s/sys/devices/system/node", root);
	d = opendir(path);
	if (!d) {
		ret = -errno;
		pr_err("no NUMA information in %s: %s", path, strerror(-ret));
		return ret;
	}
	while ((e = readdir(d)))
		if (sscanf(e->d_name, "node%u", &id) == 1 && id < GM_MAX_NODES)
			ids |= 1ULL << id;
	closedir(d);
	if (!ids) {
		pr_err("%s lists no node", path);
		return -ENOENT;
	}
	read_hpsizes(t, root);
	for (id = 0; id < GM_MAX_NODES; id++) {
		if (!(ids >> id & 1))
			continue;
		t->node[t->nr_nodes].id = id;
		ret = read_node(t, &t->node[t->nr_nodes++], root);
		if (ret)
			return ret;
	}
	ret = read_distances(t, root);
	if (ret)
		return ret;
	read_tiers(t, root);
	read_knobs(t, root);
	return 0;
}

int gm_topo_index(const struct gm_topo *t, uint32_t id)
{
	for (uint32_t i = 0; i < t->nr_nodes; i++)
		if (t->node[i].id == id)
			return i;
	return -ENOENT;
}

int gm_topo_hpindex(const struct gm_topo *t, uint64_t size)
{
	for (uint32_t k = 0; k < t->nr_hpsizes; k++)
		if (t->hpsize[k] == size)
			return k;
	return -ENOENT;
}

static const char *size_name(uint64_t b, char *buf, size_t len)
{
	if (b >= UT_GiB && b % UT_GiB == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(b / UT_GiB));
	else if (b >= UT_MiB)
		snprintf(buf, len, "%lluM", (unsigned long long)(b / UT_MiB));
	else
		snprintf(buf, len, "%lluK", (unsigned long long)(b >> 10));
	return buf;
}

static void print_node(const struct gm_topo *t, const struct gm_numa_node *n,
		       FILE *f, const char *indent)
{
	char tier[24], sz[16];

	if (n->tier == GM_TIER_NONE)
		snprintf(tier, sizeof(tier), "tier ?");
	else
		snprintf(tier, sizeof(tier), "tier %u", n->tier);
	fprintf(f, "%snode %u: %s, cpus %s, %llu MiB free of %llu MiB,",
		indent, n->id, tier, n->ncpus ? n->cpulist : "none (memory only)",
		(unsigned long long)(n->mem_free >> 20),
		(unsigned long long)(n->mem_total >> 20));
	for (uint32_t k = 0; k < t->nr_hpsizes; k++)
		fprintf(f, " %s pages %llu/%llu free,",
			size_name(t->hpsize[k], sz, sizeof(sz)),
			(unsigned long long)n->hp_free[k],
			(unsigned long long)n->hp_total[k]);
	fprintf(f, " distances");
	for (uint32_t k = 0; k < t->nr_nodes; k++)
		fprintf(f, " %u", n->distance[k]);
	fprintf(f, "\n");
}

void gm_topo_print(const struct gm_topo *t, FILE *f, const char *indent)
{
	bool tiers = false;

	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		print_node(t, &t->node[i], f, indent);
		tiers |= t->node[i].tier != GM_TIER_NONE;
	}
	if (!tiers)
		fprintf(f, "%smemory tiers: not reported by this kernel\n",
			indent);
	fprintf(f, "%sTHP: enabled %s, defrag %s, shmem %s\n", indent,
		t->thp_enabled[0] ? t->thp_enabled : "?",
		t->thp_defrag[0] ? t->thp_defrag : "?",
		t->thp_shmem[0] ? t->thp_shmem : "?");
	if (t->ksm_run < 0)
		fprintf(f, "%sKSM: not in this kernel\n", indent);
	else
		fprintf(f, "%sKSM: run %d, merge_across_nodes %d%s, "
			"pages_sharing %llu\n", indent, t->ksm_run,
			t->ksm_merge_across_nodes,
			t->ksm_merge_across_nodes == 1 && t->nr_nodes > 1 ?
			" (merging can move a page off its node)" : "",
			(unsigned long long)t->ksm_pages_sharing);
	if (t->numa_balancing < 0)
		fprintf(f, "%sNUMA balancing: not in this kernel\n", indent);
	else
		fprintf(f, "%sNUMA balancing: %d%s\n", indent,
			t->numa_balancing,
			t->numa_balancing & 2 ? " (memory tiering)" : "");
}

int gm_topo_local_nodes(const struct gm_topo *t, pid_t pid, uint64_t *mask)
{
	uint64_t cpus[16] = { 0 }, node[16];
	struct mask_acc acc = { cpus, 1024, false };
	char path[64], buf[8192], *p, *nl;
	struct mask_acc nacc = { node, 1024, false };

	*mask = 0;
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	if (slurp("", path, buf, sizeof(buf)) <= 0)
		return -ESRCH;
	p = strstr(buf, "Cpus_allowed_list:");
	if (!p)
		return -ENOENT;
	p += strlen("Cpus_allowed_list:");
	while (*p == ' ' || *p == '\t')
		p++;
	nl = strchr(p, '\n');
	if (nl)
		*nl = 0;
	if (walk_list(p, set_bit, &acc) < 0)
		return -EINVAL;
	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		memset(node, 0, sizeof(node));
		if (walk_list(t->node[i].cpulist, set_bit, &nacc) < 0)
			continue;
		for (unsigned int w = 0; w < 16; w++)
			if (node[w] & cpus[w])
				*mask |= 1ULL << t->node[i].id;
	}
	return 0;
}

int gm_numa_bind(void *addr, size_t len, uint32_t node)
{
	unsigned long mask[GM_MAX_NODES / (8 * sizeof(long))] = { 0 };
	int ret;

	if (node >= GM_MAX_NODES || !len)
		return -EINVAL;
	mask[node / (8 * sizeof(long))] = 1UL << (node % (8 * sizeof(long)));
	if (mbind(addr, len, MPOL_BIND, mask, GM_MAX_NODES + 1, 0)) {
		ret = -errno;
		pr_err("mbind of %zu MiB at %p to node %u: %s", len >> 20, addr,
		       node, strerror(-ret));
		return ret;
	}
	return 0;
}

/* A run of pages that are in memory: mapped into this process (without
 * allocating anything, since they are there) and asked where. */
static int where_run(struct gm_region *r, uint64_t p, uint64_t n,
		     int32_t *node)
{
	enum { BATCH = 512 };
	void *pages[BATCH];
	int status[BATCH];
	uint8_t *base = (uint8_t *)r->host + p * r->page_size;
	int ret;

	if (madvise(base, n * r->page_size, MADV_POPULATE_READ)) {
		ret = -errno;
		pr_err("mapping %llu resident pages: %s",
		       (unsigned long long)n, strerror(-ret));
		return ret;
	}
	for (uint64_t i = 0; i < n; i += BATCH) {
		unsigned long c = n - i < BATCH ? n - i : BATCH;

		for (unsigned long k = 0; k < c; k++)
			pages[k] = base + (i + k) * r->page_size;
		if (move_pages(0, c, pages, NULL, status, 0)) {
			ret = -errno;
			pr_err("move_pages (query): %s", strerror(-ret));
			return ret;
		}
		for (unsigned long k = 0; k < c; k++)
			node[i + k] = status[k] >= 0 ? status[k] : -1;
	}
	return 0;
}

/* Pages of another process's anonymous region: move_pages(pid) says
 * -ENOENT (or -EFAULT) for those not in memory. */
static ssize_t where_remote(struct gm_region *r, uint64_t first, uint64_t n,
			    int32_t *node)
{
	enum { BATCH = 512 };
	void *pages[BATCH];
	int status[BATCH];
	ssize_t present = 0;

	for (uint64_t i = 0; i < n; i += BATCH) {
		unsigned long c = n - i < BATCH ? n - i : BATCH;

		for (unsigned long k = 0; k < c; k++)
			pages[k] = (void *)(uintptr_t)(r->remote_addr +
				   (first + i + k) * r->page_size);
		if (move_pages(r->pid, c, pages, NULL, status, 0)) {
			int ret = -errno;

			pr_err("move_pages (query) of pid %d: %s", (int)r->pid,
			       strerror(-ret));
			return ret;
		}
		for (unsigned long k = 0; k < c; k++) {
			node[i + k] = status[k] >= 0 ? status[k] : -1;
			present += status[k] >= 0;
		}
	}
	return present;
}

ssize_t gm_numa_where(struct gm_region *r, uint64_t first, uint64_t n,
		      int32_t *node)
{
	uint64_t pages = r->page_size ? r->size / r->page_size : 0;
	size_t gran = sysconf(_SC_PAGESIZE), per;
	unsigned char *vec = NULL;
	ssize_t present = 0;
	uint64_t i = 0, run;
	int ret;

	if ((!r->host && !r->pid) || first > pages || n > pages - first)
		return -EINVAL;
	if (!r->host)
		return where_remote(r, first, n, node);
	/* mincore: page-cache residency for a shared file mapping (whether
	 * or not this process ever touched it), this mapping's own pages
	 * for hugetlb. Its granule is the base page. */
	per = r->page_size / gran;
	vec = malloc(n * per);
	if (!vec)
		return -ENOMEM;
	if (mincore((uint8_t *)r->host + first * r->page_size,
		    n * r->page_size, vec)) {
		ret = -errno;
		pr_err("mincore: %s", strerror(-ret));
		goto out;
	}
	while (i < n) {
		for (run = 0; i + run < n && (vec[(i + run) * per] & 1); run++)
			;
		if (run) {
			ret = where_run(r, first + i, run, node + i);
			if (ret)
				goto out;
			i += run;
			continue;
		}
		node[i++] = -1;
	}
	/* A hugetlb page another process mapped (the VMM's uffd placed it,
	 * UFFDIO_COPY) is not in this mapping: asked of that process, where
	 * its view is known (pid set). Where it cannot be asked (its pid
	 * gone, or not ours to look at), those pages stay absent. */
	for (i = 0; r->pid && i < n;) {
		for (run = 0; i + run < n && node[i + run] < 0; run++)
			;
		if (run) {
			if (where_remote(r, first + i, run, node + i) < 0) {
				for (uint64_t k = i; k < i + run; k++)
					node[k] = -1;
				break;
			}
			i += run;
		}
		while (i < n && node[i] >= 0)
			i++;
	}
	for (i = 0; i < n; i++)
		present += node[i] >= 0;
	ret = 0;
out:
	free(vec);
	return ret ? ret : present;
}

void gm_ksm_footprint(pid_t pid, struct gm_ksm_footprint *f)
{
	char path[64], line[128];
	long long kib;
	FILE *in;

	f->run = (int32_t)read_num("", "/sys/kernel/mm/ksm/run");
	f->merge_across_nodes =
		(int32_t)read_num("", "/sys/kernel/mm/ksm/merge_across_nodes");
	f->pages_shared = read_num("", "/sys/kernel/mm/ksm/pages_shared");
	f->pages_sharing = read_num("", "/sys/kernel/mm/ksm/pages_sharing");
	f->pss_kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	in = fopen(path, "re");
	if (!in)
		return;
	while (fgets(line, sizeof(line), in))
		if (sscanf(line, "Pss: %lld kB", &kib) == 1) {
			f->pss_kib = kib;
			break;
		}
	fclose(in);
}

int gm_ksm_set_run(int run, int *old)
{
	static const char path[] = "/sys/kernel/mm/ksm/run";
	char buf[16];
	int fd, n, ret = 0;

	if (old)
		*old = (int)read_num("", path);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_err("cannot open %s: %s", path, strerror(-ret));
		return ret;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", run);
	if (write(fd, buf, n) != n) {
		ret = -errno;
		pr_err("cannot set %s to %d: %s", path, run, strerror(-ret));
	}
	close(fd);
	return ret;
}

#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define KPF_KSM_BIT 21
#define PM_BATCH 512	/* pagemap entries read at once */

/* The flags of frame @pfn from kpageflags @fd into *@flags. */
static int kpage_flags(int fd, uint64_t pfn, uint64_t *flags)
{
	ssize_t n = pread(fd, flags, sizeof(*flags), (off_t)(pfn * 8));

	if (n == (ssize_t)sizeof(*flags))
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* Merged pages of @n pagemap entries @pm (page @base onwards) into
 * @bits; *@frames counts present pages with a frame shown. */
static ssize_t mark_merged(int kfd, const uint64_t *pm, size_t n,
			   uint64_t base, uint8_t *bits, uint64_t *frames)
{
	ssize_t merged = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t pfn = pm[i] & PM_PFN_MASK, fl;
		int ret;

		if (!(pm[i] & PM_PRESENT) || !pfn)
			continue;
		(*frames)++;
		ret = kpage_flags(kfd, pfn, &fl);
		if (ret)
			return ret;
		if (fl >> KPF_KSM_BIT & 1) {
			bits[(base + i) / 8] |= 1u << ((base + i) % 8);
			merged++;
		}
	}
	return merged;
}

ssize_t gm_ksm_merged(pid_t pid, uint64_t addr, uint64_t npages,
		      uint8_t *bits)
{
	uint64_t pm[PM_BATCH], present = 0, frames = 0;
	char path[64];
	ssize_t merged = 0;
	int pfd, kfd;

	if (!bits || addr % 4096)
		return -EINVAL;
	memset(bits, 0, (npages + 7) / 8);
	kfd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (kfd < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pfd = open(path, O_RDONLY | O_CLOEXEC);
	if (pfd < 0) {
		merged = -errno;
		goto out_kfd;
	}
	for (uint64_t p = 0; p < npages && merged >= 0; p += PM_BATCH) {
		size_t want = npages - p < PM_BATCH ? npages - p : PM_BATCH;
		ssize_t n = pread(pfd, pm, want * 8,
				  (off_t)((addr / 4096 + p) * 8)), got;

		if (n < (ssize_t)(want * 8)) {
			merged = n < 0 ? -errno : -EIO;
			break;
		}
		for (size_t i = 0; i < want; i++)
			present += !!(pm[i] & PM_PRESENT);
		got = mark_merged(kfd, pm, want, p, bits, &frames);
		merged = got < 0 ? got : merged + got;
	}
	/* Present pages with no frame at all: frames hidden from us. */
	if (merged >= 0 && present && !frames)
		merged = -EPERM;
	close(pfd);
out_kfd:
	close(kfd);
	return merged;
}
