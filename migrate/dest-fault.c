// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination's fault thread (postcopy only): it owns the incoming
 * VMM's userfaultfd and the urgent stream. A fault on a page that has not
 * arrived becomes a page request; the page the source answers on the
 * urgent stream is placed here, which wakes the vCPU.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

/* Finds the region and page of a fault at @addr in the VMM. */
static bool fault_page(const struct mig_dst *d, uint64_t addr, uint32_t *r,
		       uint64_t *idx)
{
	for (uint32_t i = 0; i < d->vm.nr; i++) {
		const struct vml_region *v = &d->vm.link.hello.regions[i];

		if (addr >= v->host_addr && addr - v->host_addr < v->size) {
			*r = i;
			*idx = (addr - v->host_addr) /
			       d->vm.layout.r[i].page_size;
			return *idx < region_pages(d, i);
		}
	}
	return false;
}

/* Minor mode: maps a page whose final content is in the page cache. */
static void map_final(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	int ret, tries = 0;

	do
		ret = gm_uffd_continue(&d->uffd, vmm_addr(d, r, idx), psz, 0);
	while (ret == -EAGAIN && ++tries < 100);
	if (!ret || ret == -EEXIST)
		return;
	if (!gm_uffd_race(ret))
		pr_warn("mapping page %llu of region %u: %s",
			(unsigned long long)idx, r, strerror(-ret));
	gm_uffd_wake(&d->uffd, vmm_addr(d, r, idx), psz); /* it faults again */
}

/* A fault on a page that holds its data. Minor mode: final in the page
 * cache, map it (a no-op when a placement did just now). Copy mode:
 * placed between the fault and our read, wake it. */
static void release_placed(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	if (d->minor)
		map_final(d, r, idx);
	else
		gm_uffd_wake(&d->uffd, vmm_addr(d, r, idx),
			     d->vm.layout.r[r].page_size);
}

/* A region fed units: maps each huge page that got data and is whole. */
static uint64_t map_received_units(struct mig_dst *d, uint32_t r)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), first = d->vm.first[r];
	uint64_t end = first + region_pages(d, r), n = 0;

	for (uint64_t g = ut_bitmap_find_next(&d->received, first); g < end;
	     g = ut_bitmap_find_next(&d->received, g)) {
		uint64_t u0 = (g - first) - (g - first) % per;

		if (dst_unit_complete(d, r, u0) && !dst_unit_map(d, r, u0))
			n++;
		g = first + u0 + per;
	}
	return n;
}

void dst_map_received(struct mig_dst *d)
{
	uint64_t t0 = ut_now_ns(), n = 0;

	if (!d->minor)
		return;
	for (uint32_t r = 0; r < d->vm.nr; r++) {
		uint64_t first = d->vm.first[r], end = first + region_pages(d, r);

		if (mig_vm_per_page(&d->vm, r) > 1) {
			n += map_received_units(d, r);
			continue;
		}
		for (uint64_t g = ut_bitmap_find_next(&d->received, first);
		     g < end; g = ut_bitmap_find_next(&d->received, g + 1)) {
			map_final(d, r, g - first);
			n++;
		}
	}
	pr_info("mapped %llu pages received before the switchover in %.1f ms",
		(unsigned long long)n, (ut_now_ns() - t0) / 1e6);
}

#define FAULT_EVENTS 16	/* uffd events read at once */

/* The page requests of one read of the uffd, sent as they fill up, and
 * the pages they asked for, for the placement plan once they are sent. */
struct req_batch {
	struct tp_stream *urg;
	struct mig_req q[MIG_MAX_REQS];
	uint32_t n;
	int ret;
	struct fault_at { uint32_t r; uint64_t idx; } up[FAULT_EVENTS];
	uint32_t nup;
};

static void req_flush(struct req_batch *b)
{
	uint8_t buf[MIG_REQ_FIXED + MIG_REQ_ENTRY * MIG_MAX_REQS];
	ssize_t n;

	if (!b->n || b->ret)
		return;
	n = mig_enc_req(buf, sizeof(buf), b->q, b->n);
	b->ret = n < 0 ? (int)n : mig_send_msg(b->urg, MIG_MSG_PAGE_REQ, buf, n);
	b->n = 0;
}

static void req_add(struct req_batch *b, uint32_t r, uint64_t idx,
		    uint32_t npages)
{
	b->q[b->n++] = (struct mig_req){ r, idx, npages };
	if (b->n == MIG_MAX_REQS)
		req_flush(b);
}

/* The units the huge page at unit @u0 lacks, asked for as runs. */
static void ask_lacking(struct mig_dst *d, uint32_t r, uint64_t u0,
			struct req_batch *b)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), g0 = d->vm.first[r] + u0;
	uint64_t run = 0;

	for (uint64_t i = 0; i <= per; i++) {
		bool lacks = i < per &&
			     !ut_bitmap_test(&d->received, g0 + i) &&
			     !ut_bitmap_test(&d->zero, g0 + i);

		if (lacks) {
			run++;
		} else if (run) {
			req_add(b, r, u0 + i - run, (uint32_t)run);
			run = 0;
		}
	}
}

/* A whole huge page fed units, for a fault on it: mapped, or the vCPU
 * woken to fault again where that lost a race. */
static void map_units(struct mig_dst *d, uint32_t r, uint64_t u0)
{
	int ret = dst_unit_map(d, r, u0);

	if (!ret)
		return;
	if (!gm_uffd_race(ret))
		pr_warn("mapping the huge page at unit %llu of region %u: %s",
			(unsigned long long)u0, r, strerror(-ret));
	gm_uffd_wake(&d->uffd, vmm_addr(d, r, u0), d->vm.map[r].page_size);
}

/* A fault on a huge page fed units: mapped here if it is whole, else the
 * units it lacks asked for, as runs; the request is counted as one
 * fault, on its first unit, served when the page is mapped. */
static void on_fault_units(struct mig_dst *d, uint32_t r, uint64_t idx,
			   struct req_batch *b)
{
	uint64_t per = mig_vm_per_page(&d->vm, r), u0 = idx - idx % per;
	uint64_t g0 = d->vm.first[r] + u0;

	if (dst_unit_complete(d, r, u0)) {
		map_units(d, r, u0);
		return;
	}
	if (!mig_faults_request(&d->faults, g0, ut_now_ns()))
		return; /* asked already; its mapping wakes everyone */
	if (dst_unit_complete(d, r, u0)) {
		/* The last unit came just now, before seeing our bit. */
		mig_faults_withdraw(&d->faults, g0);
		dst_wake_if_idle(d);
		map_units(d, r, u0);
		return;
	}
	ask_lacking(d, r, u0, b);
}

/* One fault: served here if the page is known, else asked for. */
static void on_fault(struct mig_dst *d, uint64_t addr, struct req_batch *b)
{
	uint64_t idx, g;
	uint32_t r;

	if (!fault_page(d, addr, &r, &idx)) {
		pr_warn("fault at 0x%llx outside guest RAM",
			(unsigned long long)addr);
		return;
	}
	if (mig_vm_per_page(&d->vm, r) > 1) {
		on_fault_units(d, r, idx, b);
		return;
	}
	g = d->vm.first[r] + idx;
	if (ut_bitmap_test(&d->received, g)) {
		release_placed(d, r, idx);
		return;
	}
	if (ut_bitmap_test(&d->zero, g)) {
		dst_place_zero(d, r, idx);
		return;
	}
	if (!mig_faults_request(&d->faults, g, ut_now_ns()))
		return; /* asked already; its placement wakes everyone */
	/* A receiver may have placed it just now, before seeing our bit. */
	if (ut_bitmap_test(&d->received, g) &&
	    mig_faults_withdraw(&d->faults, g)) {
		dst_wake_if_idle(d);
		release_placed(d, r, idx);
		return;
	}
	req_add(b, r, idx, 0);
	/* Once asked for (handle_faults): a tiered plan may move its chunk
	 * up before the page lands (this thread places it). */
	if (b->nup < UT_ARRAY_SIZE(b->up))
		b->up[b->nup++] = (struct fault_at){ r, idx };
}

/* The VMM dropped memory (balloon, MADV_DONTNEED): it reads as zero now. */
static void on_remove(struct mig_dst *d, uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a < end; a += 4096) {
		uint64_t idx;
		uint32_t r;

		if (!fault_page(d, a, &r, &idx))
			continue;
		ut_bitmap_clear(&d->received, d->vm.first[r] + idx);
		ut_bitmap_set(&d->zero, d->vm.first[r] + idx);
	}
}

static int handle_faults(struct mig_dst *d, struct tp_stream *urg)
{
	struct req_batch b = { .urg = urg };
	struct gm_uffd_event ev[FAULT_EVENTS];
	ssize_t n;

	n = gm_uffd_read_events(&d->uffd, ev, UT_ARRAY_SIZE(ev));
	if (n < 0)
		return n;
	for (ssize_t i = 0; i < n; i++) {
		if (ev[i].kind == GM_UFFD_EV_FAULT)
			on_fault(d, ev[i].addr, &b);
		else if (ev[i].kind == GM_UFFD_EV_REMOVE)
			on_remove(d, ev[i].addr, ev[i].end);
	}
	req_flush(&b);
	for (uint32_t i = 0; i < b.nup; i++)
		mig_place_fault(&d->place, &d->vm, b.up[i].r,
				b.up[i].idx * d->vm.layout.r[b.up[i].r].page_size,
				&d->received);
	return b.ret;
}

/* The changed sub-pages of a kept huge page we asked for. */
static int urgent_sub(struct mig_dst *d, struct tp_stream *urg,
		      const struct tp_msg *m)
{
	uint8_t hdr[MIG_SUBPAGES_FIXED];
	struct iovec iov = { hdr, sizeof(hdr) };
	struct mig_subpages s;
	uint64_t g;
	int ret;

	if (m->len < MIG_SUBPAGES_FIXED)
		return -EPROTO;
	ret = tp_recv_payload(urg, &iov, 1);
	if (!ret)
		ret = mig_dec_subpages_hdr(hdr, sizeof(hdr), m->len,
					   &d->vm.layout, &s);
	if (ret)
		return ret;
	g = d->vm.first[s.region] + s.page;
	if (!d->keep || d->vm.layout.r[s.region].page_size != MIG_SUB_WINDOW ||
	    (!ut_bitmap_test(&d->held, g) && !ut_bitmap_test(&d->claimed, g)))
		return mig_wire_reject("subpages: page %llu of region %u is "
				       "not one this destination keeps",
				       (unsigned long long)s.page, s.region);
	iov = (struct iovec){ d->ft.buf, (size_t)s.count * MIG_SUB_SIZE };
	ret = s.count ? tp_recv_payload(urg, &iov, 1) : 0;
	return ret ? ret : dst_place_sub(d, &s, d->ft.buf);
}

/* A page the source sent on the urgent stream because we asked. */
static int handle_urgent(struct mig_dst *d, struct tp_stream *urg)
{
	uint8_t hdr[MIG_PAGES_FIXED + 8 * MIG_MAX_BATCH];
	uint64_t idx[MIG_MAX_BATCH];
	struct mig_pages_hdr h;
	struct iovec iov = { hdr, MIG_PAGES_FIXED };
	struct tp_msg m;
	int ret;

	ret = tp_recv_hdr(urg, &m);
	if (ret)
		return ret;
	if (m.type == MIG_MSG_SUBPAGES)
		return urgent_sub(d, urg, &m);
	if (m.type != MIG_MSG_PAGES || m.len < MIG_PAGES_FIXED)
		return -EPROTO;
	ret = tp_recv_payload(urg, &iov, 1);
	if (!ret)
		ret = mig_dec_pages_hdr(hdr, MIG_PAGES_FIXED, m.len,
					&d->vm.layout, &h);
	if (!ret && (uint64_t)h.count * h.page_size > STAGE_BYTES)
		ret = -EPROTO;
	if (ret)
		return ret;
	iov = (struct iovec){ hdr, 8 * h.count };
	ret = tp_recv_payload(urg, &iov, 1);
	if (!ret)
		ret = mig_dec_pages_idx(hdr, 8 * h.count, &d->vm.layout, &h, idx);
	iov = (struct iovec){ d->ft.buf, (size_t)h.count * h.page_size };
	if (!ret)
		ret = tp_recv_payload(urg, &iov, 1);
	for (uint32_t i = 0; !ret && i < h.count; i++)
		ret = dst_place(d, h.region, idx[i],
			    d->ft.buf + (size_t)i * h.page_size);
	return ret;
}

/* After a reconnect: the requests in flight died with the old stream. */
static int resend_requests(struct mig_dst *d, struct tp_stream *urg)
{
	struct req_batch b = { .urg = urg };

	for (uint64_t g = ut_bitmap_find_next(&d->faults.requested, 0);
	     g < d->vm.total_pages && !b.ret;
	     g = ut_bitmap_find_next(&d->faults.requested, g + 1)) {
		uint32_t r = 0;

		while (r + 1 < d->vm.nr && g >= d->vm.first[r + 1])
			r++;
		if (mig_vm_per_page(&d->vm, r) > 1)
			ask_lacking(d, r, g - d->vm.first[r], &b);
		else
			req_add(&b, r, g - d->vm.first[r], 0);
	}
	req_flush(&b);
	d->ft.resend = false;
	return b.ret;
}

/* One thread owns the uffd and the urgent stream (both directions). */
static void *fault_main(void *arg)
{
	struct mig_dst *d = arg;
	struct tp_stream *urg = tp_session_urgent(d->sess);
	struct pollfd pfd[3] = { { d->uffd.fd, POLLIN, 0 },
				 { tp_stream_fd(urg), POLLIN, 0 },
				 { d->ft.wk.stop_fd, POLLIN, 0 } };
	int ret;

	d->ft.priority = mig_worker_urgent(!d->p->fault_normal_priority);
	ret = d->ft.resend ? resend_requests(d, urg) : 0;
	while (!ret) {
		bool pending = tp_stream_pending(urg);

		if (poll(pfd, 3, pending ? 0 : -1) < 0 && errno != EINTR)
			break;
		if (pfd[2].revents)
			break;
		if (pfd[0].revents & POLLIN)
			ret = handle_faults(d, urg);
		if (!ret && (pending || (pfd[1].revents & (POLLIN | POLLHUP))))
			ret = handle_urgent(d, urg);
	}
	if (ret) {
		pthread_mutex_lock(&d->meet.lock);
		if (!d->meet.failed) {
			ut_err_first(d->meet.err, ret, "postcopy page requests: %s",
				 tp_stream_err(urg)->msg[0] ?
					 tp_stream_err(urg)->msg :
					 strerror(-ret));
			d->meet.failed = true;
		}
		pthread_cond_broadcast(&d->meet.cond);
		pthread_mutex_unlock(&d->meet.lock);
	}
	return NULL;
}

int dst_faulter_start(struct mig_dst *d)
{
	d->ft.buf = aligned_alloc(4096, STAGE_BYTES);
	if (!d->ft.buf)
		return -ENOMEM;
	return mig_worker_start(&d->ft.wk, fault_main, d);
}

void dst_faulter_stop(struct mig_dst *d)
{
	mig_worker_stop(&d->ft.wk);
	free(d->ft.buf);
	d->ft.buf = NULL;
}

/* Minor mode needs MINOR for every backing (anonymous memory has none:
 * its pages go in by UFFDIO_COPY) and, without our own mapping of
 * a hugetlb backing (no write(2) there), nothing. The kernel's features
 * come from a uffd of our own: UFFDIO_API can be tried once per fd. */
static bool want_minor(const struct mig_dst *d, uint64_t *want)
{
	const struct vml_hello *h = &d->vm.link.hello;
	uint64_t have = 0, need = 0;

	if (d->p->no_minor || d->vm.anon || gm_uffd_probe(&have))
		return false;
	for (uint32_t i = 0; i < d->vm.nr; i++) {
		if (h->regions[i].page_size == 4096)
			need |= UFFD_FEATURE_MINOR_SHMEM;
		else if (d->vm.copy)
			return false;
		else
			need |= UFFD_FEATURE_MINOR_HUGETLBFS;
	}
	if ((have & need) != need)
		return false;
	*want |= need;
	return true;
}

/* Registers MISSING mode (and MINOR, see dest-internal.h) on all of the
 * incoming VM's RAM, before anything can touch it. Without a uffd, or
 * where that fails, no postcopy. */
void dst_uffd_setup(struct mig_dst *d)
{
	const struct vml_hello *h = &d->vm.link.hello;
	uint64_t want = 0;
	int fd = vml_client_take_uffd(&d->vm.link);
	uint32_t maxpsz = 0;
	bool minor, giant = false;

	if (fd < 0)
		return;
	for (uint32_t i = 0; i < d->vm.nr; i++) {
		if (d->vm.map[i].fd < 0)
			;	/* anonymous: MISSING is the base feature */
		else if (h->regions[i].page_size == 4096)
			want |= UFFD_FEATURE_MISSING_SHMEM;
		else
			want |= UFFD_FEATURE_MISSING_HUGETLBFS;
		/* A 1 GiB page goes in units (the zero page is of a wire
		 * page, at most MIG_WIRE_PAGE_MAX). */
		if (h->regions[i].page_size > maxpsz &&
		    h->regions[i].page_size <= MIG_WIRE_PAGE_MAX)
			maxpsz = h->regions[i].page_size;
		giant |= h->regions[i].page_size > MIG_WIRE_PAGE_MAX;
	}
	minor = want_minor(d, &want);
	/* A 1 GiB page is assembled from its 4 KiB units in the page cache
	 * and mapped whole (minor mode); a stage of its size to place it
	 * with UFFDIO_COPY is not made. */
	if (giant && !minor) {
		pr_info("no postcopy: 1 GiB pages are placed in postcopy in "
			"minor mode only (MINOR_HUGETLBFS%s)",
			d->p->no_minor ? ", refused by --uffd-mode missing" : "");
		close(fd);
		return;
	}
	/* Not on anonymous memory: the pages the source discards are
	 * dropped by the VMM's own madvise (ADVISE), which with REMOVE
	 * events would wait for this agent to read one while the agent
	 * waits for the VMM's reply. */
	if (!d->vm.anon)
		want |= UFFD_FEATURE_EVENT_REMOVE;
	if (gm_uffd_init(&d->uffd, fd, want, true)) {
		close(fd);
		return;
	}
	for (uint32_t i = 0; i < d->vm.nr; i++)
		if (gm_uffd_register(&d->uffd, h->regions[i].host_addr,
				     h->regions[i].size,
				     GM_UFFD_MISSING |
					     (minor ? GM_UFFD_MINOR : 0),
				     NULL))
			return;
	if (maxpsz < 4096)
		maxpsz = 4096;
	if (maxpsz > 4096 || minor || giant) {
		d->zero_page = aligned_alloc(4096, maxpsz);
		if (!d->zero_page)
			return;
		memset(d->zero_page, 0, maxpsz);
	}
	d->minor = minor;
	d->can_postcopy = true;
}

/* Drops the registrations: every page is in place, or known to be zero
 * (which a hole in the backing reads as). */
void dst_uffd_release(struct mig_dst *d)
{
	const struct vml_hello *h = &d->vm.link.hello;

	if (d->can_postcopy)
		for (uint32_t i = 0; i < d->vm.nr; i++)
			gm_uffd_unregister(&d->uffd, h->regions[i].host_addr,
					   h->regions[i].size);
	gm_uffd_close(&d->uffd);
	d->can_postcopy = false;
	d->minor = false;
}
