// SPDX-License-Identifier: LGPL-2.1-or-later
/* Attaching to a VMM: the VM link, then a mapping of each RAM region. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define LOG_PREFIX "migrate"
#include "migrate/internal.h"

uint64_t mig_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int mig_recv_expect(struct tp_stream *ctl, uint32_t type, uint8_t *buf,
		    size_t cap, struct tp_msg *m, const char *what, struct ut_err *err)
{
	struct mig_error e;
	int ret = tp_recv(ctl, m, buf, cap);

	if (ret)
		return ut_err_first(err, ret, "%s: %s", what,
				tp_stream_err(ctl)->msg);
	if (m->type == MIG_MSG_ERROR && !mig_dec_error(buf, m->len, &e))
		return ut_err_first(err, -e.code, "the peer failed: %s", e.msg);
	if (m->type != type)
		return ut_err_first(err, -EPROTO, "%s: message 0x%x instead of 0x%x",
				what, m->type, type);
	return 0;
}

int mig_send_msg(struct tp_stream *st, uint32_t type, const void *buf,
		 size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return tp_send(st, type, &iov, len ? 1 : 0, 0);
}

void mig_tell_peer(struct tp_session *sess, int code, const char *msg)
{
	uint8_t buf[512];
	ssize_t n = mig_enc_error(buf, sizeof(buf), code, msg);

	if (n > 0)
		mig_send_msg(tp_session_control(sess), MIG_MSG_ERROR, buf, n);
}

/* Anonymous RAM lives only in the VMM: process_vm_readv / writev at its
 * address there. A write reaches pages already in memory only: on an
 * absent page of a range registered MISSING it would fault into the uffd
 * we hold and wait for ourselves (the callers write only received
 * pages). */
static int remote_io(const struct mig_vm *vm, uint32_t r, uint64_t idx,
		     void *buf, size_t len, bool write)
{
	const struct vml_region *v = &vm->link.hello.regions[r];
	uint64_t addr = v->host_addr + idx * vm->layout.r[r].page_size;
	size_t done = 0;

	while (done < len) {
		struct iovec l = { (uint8_t *)buf + done, len - done };
		struct iovec rv = { (void *)(uintptr_t)(addr + done),
				    len - done };
		ssize_t n = write ?
			process_vm_writev(vm->link.hello.pid, &l, 1, &rv, 1, 0) :
			process_vm_readv(vm->link.hello.pid, &l, 1, &rv, 1, 0);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

int mig_vm_read(const struct mig_vm *vm, uint32_t r, uint64_t idx, void *buf,
		size_t len)
{
	const struct gm_region *g = &vm->map[r];
	uint64_t off = g->fd_offset + idx * vm->layout.r[r].page_size;
	size_t done = 0;

	if (g->fd < 0)
		return remote_io(vm, r, idx, buf, len, false);
	while (done < len) {
		ssize_t n = pread(g->fd, (uint8_t *)buf + done, len - done,
				  off + done);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

int mig_vm_write(const struct mig_vm *vm, uint32_t r, uint64_t idx,
		 const void *buf, size_t len)
{
	const struct gm_region *g = &vm->map[r];
	uint64_t off = g->fd_offset + idx * vm->layout.r[r].page_size;
	size_t done = 0;

	if (g->fd < 0)
		return remote_io(vm, r, idx, (void *)buf, len, true);
	while (done < len) {
		ssize_t n = pwrite(g->fd, (const uint8_t *)buf + done,
				   len - done, off + done);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

int mig_vm_zero(const struct mig_vm *vm, uint32_t r, uint64_t idx)
{
	static const uint8_t zero[4096];
	const struct gm_region *g = &vm->map[r];
	uint64_t unit = vm->layout.r[r].page_size;

	if (g->fd >= 0)
		return gm_region_discard((struct gm_region *)g, idx * unit,
					 unit);
	return remote_io(vm, r, idx, (void *)zero, sizeof(zero), true);
}

/* What @fd is, in a word, from its /proc link ("pipe", "socket",
 * "anon_inode:[userfaultfd]", "/memfd:ram (deleted)"). */
static const char *fd_kind(int fd, char *buf, size_t cap)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, cap - 1);
	if (n < 0)
		return "an fd of unknown kind";
	buf[n] = 0;
	if (!strncmp(buf, "pipe:", 5))
		return "a pipe";
	if (!strncmp(buf, "socket:", 7))
		return "a socket";
	return buf;
}

/* The fds a VMM passed are what its HELLO says: the userfaultfd one,
 * each region's a memory file that holds the region. Anything else would
 * fail later, further from its cause (an ioctl, a mapping, a SIGBUS on a
 * page past the end of the file). */
static int check_fds(const struct vml_hello *h, struct ut_err *err)
{
	char what[128];
	const char *kind;
	struct stat st;

	if (h->uffd >= 0) {
		kind = fd_kind(h->uffd, what, sizeof(what));
		if (strcmp(kind, "anon_inode:[userfaultfd]"))
			return ut_err_first(err, -EBADF, "the VM's userfaultfd is "
					"not one: it is %s", kind);
	}
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		const struct vml_region *r = &h->regions[i];

		if (r->fd < 0)
			continue;
		kind = fd_kind(r->fd, what, sizeof(what));
		if (fstat(r->fd, &st) || !S_ISREG(st.st_mode) ||
		    !strncmp(kind, "anon_inode:", 11))
			return ut_err_first(err, -EBADF, "RAM region %u: its fd is "
					"%s, not a memory file", i, kind);
		if ((uint64_t)st.st_size < r->fd_offset + r->size)
			return ut_err_first(err, -EINVAL, "RAM region %u: its file "
					"holds %llu bytes, the region needs %llu "
					"from offset %llu", i,
					(unsigned long long)st.st_size,
					(unsigned long long)r->size,
					(unsigned long long)r->fd_offset);
	}
	return 0;
}

void mig_hp_restore(struct mig_hp_pools *hp)
{
	for (unsigned int i = 0; hp && i < hp->n; i++) {
		ssize_t now = gm_hugetlb_node_set(hp->pool[i].node,
						  hp->pool[i].page_size,
						  hp->pool[i].old, NULL);
		char where[24] = "";

		if (hp->pool[i].node >= 0)
			snprintf(where, sizeof(where), " on node %d",
				 hp->pool[i].node);
		if (now >= 0)
			pr_info("huge-page pool of %zu kB%s back to %lu pages "
				"(%zd kept while in use)",
				hp->pool[i].page_size >> 10, where,
				hp->pool[i].old, now - (ssize_t)hp->pool[i].old);
	}
	if (hp)
		hp->n = 0;
}

int mig_hp_grow(struct mig_hp_pools *hp, int node, size_t psz,
		unsigned long lack, struct ut_err *err)
{
	ssize_t cur = gm_hugetlb_node_pool(node, psz), got;
	unsigned long want;
	char where[24] = "";
	unsigned int i;

	if (node >= 0)
		snprintf(where, sizeof(where), " of node %d", node);
	if (cur < 0)
		return ut_err_first(err, (int)cur, "cannot read the %zu kB huge-page "
				"pool%s: %s", psz >> 10, where,
				strerror((int)-cur));
	want = (unsigned long)cur + lack;
	for (i = 0; i < hp->n && (hp->pool[i].page_size != psz ||
				  hp->pool[i].node != node); i++)
		;
	if (i == hp->n) {
		if (hp->n == UT_ARRAY_SIZE(hp->pool))
			return ut_err_first(err, -EINVAL, "too many pools");
		hp->pool[hp->n++] = (typeof(hp->pool[0])){ psz, node,
							   (unsigned long)cur, 0 };
	}
	got = gm_hugetlb_node_set(node, psz, want, NULL);
	if (got >= 0 && (unsigned long)got >= want) {
		hp->pool[i].added += lack;
		pr_info("reserved %lu more %zu kB huge pages%s (pool %zd -> %lu)",
			lack, psz >> 10, where, cur, want);
		return 0;
	}
	gm_hugetlb_node_set(node, psz, (unsigned long)cur, NULL);
	return ut_err_first(err, -ENOMEM, "the %zu kB huge-page pool%s could not "
			"grow from %zd to %lu pages (%zd: no contiguous memory, "
			"or no permission)", psz >> 10, where, cur, want, got);
}

uint64_t mig_hp_split(uint64_t nodes, size_t psz, uint64_t need,
		      const uint64_t *free_of, uint64_t lack[GM_MAX_NODES])
{
	unsigned int k = (unsigned int)__builtin_popcountll(nodes);
	uint64_t share = k ? (need + k - 1) / k : 0, sum = 0;

	memset(lack, 0, GM_MAX_NODES * sizeof(*lack));
	for (int n = 0; n < GM_MAX_NODES; n++) {
		ssize_t f;

		if (!(nodes >> n & 1))
			continue;
		f = free_of ? (ssize_t)free_of[n] : gm_hugetlb_node_free(n, psz);
		if (f < 0)
			f = 0;
		lack[n] = share > (uint64_t)f ? share - (uint64_t)f : 0;
		sum += lack[n];
	}
	return sum;
}

void mig_hp_commands(const uint64_t lack[GM_MAX_NODES],
		     const uint64_t *pool_of, size_t psz, char *buf, size_t len)
{
	uint64_t want[GM_MAX_NODES];
	int nodes = 0, last = 0;
	size_t off;

	for (int n = 0; n < GM_MAX_NODES; n++) {
		ssize_t pool;

		if (!lack[n])
			continue;
		pool = pool_of ? (ssize_t)pool_of[n] :
		       gm_hugetlb_node_pool(n, psz);
		want[n] = (uint64_t)(pool > 0 ? pool : 0) + lack[n];
		nodes++;
		last = n;
	}
	buf[0] = 0;
	if (!nodes)
		return;
	if (nodes == 1) {
		char path[160];

		gm_hugetlb_node_path(path, sizeof(path), last, psz);
		snprintf(buf, len, "echo %llu > %s",
			 (unsigned long long)want[last], path);
		return;
	}
	/* Several nodes: one loop, not a path per node (one line). */
	off = snprintf(buf, len, "for n in");
	for (int n = 0; n < GM_MAX_NODES && off < len; n++)
		if (lack[n])
			off += snprintf(buf + off, len - off, " %d:%llu", n,
					(unsigned long long)want[n]);
	if (off < len)
		snprintf(buf + off, len - off, ";do echo ${n#*:}>/sys/devices/"
			 "system/node/node${n%%:*}/hugepages/hugepages-%zukB/"
			 "nr_hugepages;done", psz >> 10);
}

/* A pool short for @need pages of @psz (@free_pages free system-wide):
 * grown on the nodes the placement names, or system-wide. */
static int hp_grow(struct mig_hp_pools *hp, size_t psz, size_t need,
		   size_t free_pages, struct ut_err *err)
{
	uint64_t lack[GM_MAX_NODES], sum;
	int ret = 0;

	if (!hp->nodes)
		return mig_hp_grow(hp, -1, psz, need - free_pages, err);
	/* A node's free pages may be reserved by others: the system-wide
	 * shortfall comes first, on the first node named. */
	sum = mig_hp_split(hp->nodes, psz, need, NULL, lack);
	if (sum < need - free_pages)
		lack[__builtin_ctzll(hp->nodes)] += need - free_pages - sum;
	for (int n = 0; n < GM_MAX_NODES && !ret; n++)
		if (lack[n])
			ret = mig_hp_grow(hp, n, psz, lack[n], err);
	return ret;
}

/* Maps region @i, where our mapping cannot reserve its huge pages: grows
 * the pool when @hp allows (on the nodes the placement names, if any),
 * or says what is missing and how to add it. */
static int attach_huge(struct mig_vm *vm, unsigned int i,
		       const struct vml_region *r, struct mig_hp_pools *hp,
		       struct ut_err *err)
{
	size_t psz = r->page_size, need = r->size / psz;
	ssize_t free_pages = gm_hugetlb_free(psz), pool = gm_hugetlb_pool(psz);
	uint64_t lack[GM_MAX_NODES];
	char path[128], nodes[96], cmd[512];
	int ret;

	if (free_pages < 0 || pool < 0)
		return ut_err_first(err, -ENOMEM, "RAM region %u: cannot map its "
				"%zu kB huge pages, and this host has no such "
				"pool", i, psz >> 10);
	if (!hp->reserve && hp->nodes) {
		ssize_t nfree = 0, npool = 0;

		for (int n = 0; n < GM_MAX_NODES; n++) {
			if (!(hp->nodes >> n & 1))
				continue;
			nfree += gm_hugetlb_node_free(n, psz) > 0 ?
				 gm_hugetlb_node_free(n, psz) : 0;
			npool += gm_hugetlb_node_pool(n, psz) > 0 ?
				 gm_hugetlb_node_pool(n, psz) : 0;
		}
		mig_hp_split(hp->nodes, psz, need, NULL, lack);
		if (!lack[__builtin_ctzll(hp->nodes)])
			lack[__builtin_ctzll(hp->nodes)] = need - free_pages;
		mig_hp_commands(lack, NULL, psz, cmd, sizeof(cmd));
		gm_nodes_format(hp->nodes, nodes, sizeof(nodes));
		return ut_err_first(err, -ENOMEM, "RAM region %u needs %zu free "
				"%zu kB huge pages on node %s, whose pool has "
				"%zd free of %zd: reserve them with `%s`, or run "
				"ferry dest with --reserve-hugepages", i, need,
				psz >> 10, nodes, nfree, npool, cmd);
	}
	if (!hp->reserve) {
		gm_hugetlb_path(path, sizeof(path), psz);
		return ut_err_first(err, -ENOMEM, "RAM region %u needs %zu free "
				"%zu kB huge pages, the pool has %zd free of "
				"%zd: reserve them with `echo %zu > %s`, or "
				"run ferry dest with --reserve-hugepages", i,
				need, psz >> 10, free_pages, pool,
				(size_t)pool + need - (size_t)free_pages, path);
	}
	ret = hp_grow(hp, psz, need, (size_t)free_pages, err);
	if (!ret)
		ret = gm_region_attach(&vm->map[i], r->backing, r->fd,
				       r->fd_offset, r->size);
	return ret ? ut_err_first(err, ret, "RAM region %u: %zu huge pages of "
			      "%zu kB reserved, still cannot map it: %s", i,
			      need, psz >> 10, strerror(-ret)) : 0;
}

/* Region @i: a memory file mapped here, or anonymous memory, reached in
 * the VMM's process (COPY access, no mapping here). */
static int attach_region(struct mig_vm *vm, unsigned int i,
			 enum mig_mem_access access, struct mig_hp_pools *hp,
			 struct ut_err *err)
{
	const struct vml_region *r = &vm->link.hello.regions[i];
	bool anon = r->backing == GM_BACKING_ANON ||
		    r->backing == GM_BACKING_ANON_THP;
	int ret;

	if (anon && r->fd >= 0)
		return ut_err_first(err, -EINVAL, "RAM region %u is anonymous "
				"memory (%s) but came with an fd", i,
				gm_backing_name(r->backing));
	if (!anon && r->fd < 0)
		return ut_err_first(err, -EINVAL, "RAM region %u (%s) came "
				"without its fd", i, gm_backing_name(r->backing));
	if (anon && access == MIG_MEM_MAP)
		return ut_err_first(err, -EINVAL, "RAM region %u is anonymous "
				"memory, private to the VMM: it cannot be "
				"mapped here (use --mem-access copy or auto)",
				i);
	if (anon) {
		vm->map[i] = (struct gm_region){ .fd = -1, .size = r->size,
			.page_size = r->page_size, .backing = r->backing,
			.pid = (pid_t)vm->link.hello.pid,
			.remote_addr = r->host_addr };
		vm->copy = vm->anon = true;
		return 0;
	}
	ret = gm_region_attach(&vm->map[i], r->backing, r->fd, r->fd_offset,
			       r->size);
	if (ret == -ENOMEM && hp && r->page_size > 4096)
		ret = attach_huge(vm, i, r, hp, err);
	else if (ret)
		return ut_err_first(err, ret, "cannot map RAM region %u "
				"(%llu MiB): %s", i,
				(unsigned long long)(r->size >> 20),
				strerror(-ret));
	/* A hugetlb page the VMM's uffd places (UFFDIO_COPY) is mapped
	 * there, not here: the VMM's view, for asking where it is. */
	if (!ret && r->page_size > 4096) {
		vm->map[i].pid = (pid_t)vm->link.hello.pid;
		vm->map[i].remote_addr = r->host_addr;
	}
	return ret;
}

int mig_vm_attach(struct mig_vm *vm, const char *path,
		  enum mig_mem_access access, struct mig_hp_pools *hp,
		  struct ut_err *err)
{
	const struct vml_hello *h;
	uint64_t t;
	int ret;

	memset(vm, 0, sizeof(*vm));
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++)
		vm->map[i].fd = -1;
	ret = vml_client_open(&vm->link, path);
	if (ret)
		return ut_err_first(err, ret, "cannot attach to the VM at %s: %s",
				path, vml_strerror(ret));
	h = &vm->link.hello;
	if (h->nr_regions == 0 || h->nr_regions > MIG_MAX_REGIONS)
		return ut_err_first(err, -EPROTO, "the VM reports %u RAM regions",
				h->nr_regions);
	ret = check_fds(h, err);
	if (ret)
		return ret;
	vm->nr = h->nr_regions;
	vm->layout.nr = vm->nr;
	for (unsigned int i = 0; i < vm->nr; i++) {
		const struct vml_region *r = &h->regions[i];

		ret = attach_region(vm, i, access, hp, err);
		if (ret)
			return ret;
		/* Our own accesses stay at 4 KiB: a huge page is the VMM's
		 * to have (dest-collapse.c), never 2 MiB zero-filled by a
		 * placement or a read here. */
		if (r->backing == GM_BACKING_SHMEM)
			gm_region_advise_thp(&vm->map[i], false);
		vm->layout.r[i] = (struct mig_region){
			.gpa = r->gpa, .size = r->size,
			.page_size = (uint32_t)r->page_size,
		};
		if (r->page_size == 4096 && access == MIG_MEM_AUTO)
			vm->copy = true;
		vm->first[i] = vm->total_pages;
		vm->total_pages += r->size / r->page_size;
		vm->ram_bytes += r->size;
	}
	if (access == MIG_MEM_COPY)
		vm->copy = true;
	/* An incoming VM's RAM stays empty: a page allocated here would
	 * read as zero instead of faulting to us after a postcopy switch. */
	if (vm->copy || (h->flags & VML_F_INCOMING))
		return 0;
	for (unsigned int i = 0; i < vm->nr; i++) {
		/* Fault the whole mapping in now, in one call: page by page
		 * first touches cost far more, on the critical path. */
		t = ut_now_ns();
		if (madvise(vm->map[i].host, vm->map[i].size,
			    MADV_POPULATE_READ))
			pr_warn("populating region %u: %s", i, strerror(errno));
		pr_info("region %u: %zu MiB mapped and populated in %.1f ms", i,
			vm->map[i].size >> 20, (ut_now_ns() - t) / 1e6);
	}
	return 0;
}

void mig_vm_use_units(struct mig_vm *vm, const struct mig_layout *wire)
{
	vm->layout = *wire;
	vm->total_pages = 0;
	vm->units = false;
	for (unsigned int i = 0; i < vm->nr; i++) {
		vm->first[i] = vm->total_pages;
		vm->total_pages += mig_region_pages(wire, i);
		if (wire->r[i].page_size < vm->map[i].page_size)
			vm->units = true;
	}
}

void mig_vm_detach(struct mig_vm *vm)
{
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++)
		gm_region_fini(&vm->map[i]);
	vml_client_close(&vm->link);
}
