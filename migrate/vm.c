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

int mig_vm_read(const struct mig_vm *vm, uint32_t r, uint64_t idx, void *buf,
		size_t len)
{
	const struct gm_region *g = &vm->map[r];
	uint64_t off = g->fd_offset + idx * vm->layout.r[r].page_size;
	size_t done = 0;

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

	while (done < len) {
		ssize_t n = pwrite(g->fd, (const uint8_t *)buf + done,
				   len - done, off + done);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
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
		ssize_t now = gm_hugetlb_set(hp->pool[i].page_size,
					     hp->pool[i].old, NULL);

		if (now >= 0)
			pr_info("huge-page pool of %zu kB back to %lu pages "
				"(%zd kept while in use)",
				hp->pool[i].page_size >> 10, hp->pool[i].old,
				now - (ssize_t)hp->pool[i].old);
	}
	if (hp)
		hp->n = 0;
}

/* Grows the pool of @psz by the @need huge pages it lacks beyond @free;
 * one that the kernel cannot fill (no contiguous memory) is set back. */
static int hp_grow(struct mig_hp_pools *hp, size_t psz, size_t need,
		   size_t free_pages, struct ut_err *err)
{
	ssize_t cur = gm_hugetlb_pool(psz), got;
	unsigned long want;
	unsigned int i;

	if (cur < 0)
		return ut_err_first(err, (int)cur, "cannot read the %zu kB huge-page "
				"pool: %s", psz >> 10, strerror((int)-cur));
	want = (unsigned long)cur + need - free_pages;
	for (i = 0; i < hp->n && hp->pool[i].page_size != psz; i++)
		;
	if (i == hp->n) {
		if (hp->n == UT_ARRAY_SIZE(hp->pool))
			return ut_err_first(err, -EINVAL, "too many pools");
		hp->pool[hp->n++] = (typeof(hp->pool[0])){ psz,
							   (unsigned long)cur, 0 };
	}
	got = gm_hugetlb_set(psz, want, NULL);
	if (got >= 0 && (unsigned long)got >= want) {
		hp->pool[i].added += want - (unsigned long)cur;
		pr_info("reserved %lu more %zu kB huge pages (pool %zd -> %lu)",
			want - (unsigned long)cur, psz >> 10, cur, want);
		return 0;
	}
	gm_hugetlb_set(psz, (unsigned long)cur, NULL);
	return ut_err_first(err, -ENOMEM, "the %zu kB huge-page pool could not "
			"grow from %zd to %lu pages (%zd: no contiguous memory, "
			"or no permission): the incoming VM needs %zu", psz >> 10,
			cur, want, got, need);
}

/* Maps region @i, where our mapping cannot reserve its huge pages: grows
 * the pool when @hp allows, or says what is missing and how to add it. */
static int attach_huge(struct mig_vm *vm, unsigned int i,
		       const struct vml_region *r, struct mig_hp_pools *hp,
		       struct ut_err *err)
{
	size_t psz = r->page_size, need = r->size / psz;
	ssize_t free_pages = gm_hugetlb_free(psz), pool = gm_hugetlb_pool(psz);
	char path[128];
	int ret;

	if (free_pages < 0 || pool < 0)
		return ut_err_first(err, -ENOMEM, "RAM region %u: cannot map its "
				"%zu kB huge pages, and this host has no such "
				"pool", i, psz >> 10);
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

		if (r->fd < 0)
			return ut_err_first(err, -EOPNOTSUPP,
					"RAM region %u is anonymous memory, "
					"which Ferry cannot map yet: start the "
					"VM with shmem or hugetlb backing", i);
		ret = gm_region_attach(&vm->map[i], r->backing, r->fd,
				       r->fd_offset, r->size);
		if (ret == -ENOMEM && hp && r->page_size > 4096 &&
		    (ret = attach_huge(vm, i, r, hp, err)))
			return ret;
		if (ret)
			return ut_err_first(err, ret, "cannot map RAM region %u "
					"(%llu MiB): %s", i,
					(unsigned long long)(r->size >> 20),
					strerror(-ret));
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
