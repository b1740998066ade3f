// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination engine: one receiver thread per bulk stream writes pages
 * straight into the incoming VM's RAM (the payload is decrypted into guest
 * memory, no staging copy), applies zero bitmaps and duplicate references
 * in stream order, and meets the other receivers at each ROUND marker so
 * that round r + 1 of one stream can never land before round r of
 * another. The main thread serves the control stream: HELLO, then the
 * state blob, then load-state and resume once every receiver has finished
 * the final round.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/socket.h>
#include <time.h>

#define LOG_PREFIX "dest"
#include "migrate/internal.h"

#define RX_BUF (MIG_DUP_FIXED + MIG_DUP_ENTRY * MIG_MAX_DUPS)
#define STAGE_BYTES (4u << 20)	/* COPY mode: pages received at a time */

struct mig_dst;

struct receiver {
	struct mig_dst *d;
	struct tp_stream *st;
	pthread_t thread;
	bool started;
	int ret;
	uint64_t idx[MIG_MAX_BATCH];
	struct iovec iov[MIG_MAX_BATCH];
	struct mig_dup dups[MIG_MAX_DUPS];
	uint8_t buf[RX_BUF];
	uint8_t *stage;		/* STAGE_BYTES, reused (COPY mode, postcopy) */
	bool atomic;		/* past the POSTCOPY marker: UFFDIO_COPY only */
};

struct mig_dst {
	const struct mig_dest_params *p;
	struct ut_oom_guard oom;	/* postcopy: the guest depends on us */
	struct tp_session *sess;	/* current session */
	bool own_sess;			/* from a reconnect: ours to free */
	bool pushing;			/* receivers start in atomic mode */
	struct mig_resumed resumed;	/* as sent, for a reconnecting source */
	struct mig_vm vm;
	unsigned int nbulk;
	struct receiver *rx;
	struct ut_bitmap received;	/* pages that hold data from the wire */
	/* The round barrier, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int arrived;		/* receivers at the current barrier */
	uint64_t barrier_gen;
	unsigned int finished;		/* receivers past the final round */
	bool failed;
	char *err;
	/* Cancelled before the state arrived: by the operator here
	 * (cancelled, why: "SIGINT"), or by the source (peer_cancelled). */
	bool cancelled, peer_cancelled;
	char why[32];
	/* Postcopy. */
	struct gm_uffd uffd;		/* the incoming VMM's, MISSING mode */
	bool can_postcopy;		/* uffd registered on all of its RAM */
	unsigned int switched;		/* receivers at the POSTCOPY marker */
	bool discards_done;		/* under lock: receivers may go on */
	struct ut_bitmap zero;		/* known zero: placed locally on fault */
	struct mig_faults faults;	/* asked of the source, not placed */
	uint8_t *zero_page;		/* a zero huge page for hugetlb */
	struct faulter {
		pthread_t thread;
		bool started;
		int stop_fd;
		uint8_t *buf;		/* urgent pages land here first */
		bool resend;		/* ask again for outstanding pages */
	} ft;
};

static uint64_t region_pages(const struct mig_dst *d, uint32_t r)
{
	return mig_region_pages(&d->vm.layout, r);
}

/* The VMM's address of page @idx of region @r (what the uffd acts on). */
static uint64_t vmm_addr(const struct mig_dst *d, uint32_t r, uint64_t idx)
{
	return d->vm.link.hello.regions[r].host_addr +
	       idx * d->vm.layout.r[r].page_size;
}

/* finish_postcopy() waits, under lock, for the last request to be
 * placed: a request just taken off may have been it. */
static void wake_if_idle(struct mig_dst *d)
{
	if (mig_faults_outstanding(&d->faults))
		return;
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Bookkeeping once page @g holds its data: a fault waiting on it is
 * served, and its service time counted. */
static void placed(struct mig_dst *d, uint64_t g)
{
	ut_bitmap_set(&d->received, g);
	ut_bitmap_clear(&d->zero, g);
	if (mig_faults_served(&d->faults, g, ut_now_ns()))
		wake_if_idle(d);
}

/* Places one page atomically; another placement winning is fine. */
static int place(struct mig_dst *d, uint32_t r, uint64_t idx, const void *buf)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	int ret, tries = 0;

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
static int place_zero(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	return place(d, r, idx,
		     d->vm.layout.r[r].page_size > 4096 ? d->zero_page : NULL);
}

static void rx_fail(struct receiver *r, int ret, const char *fmt, const char *a)
{
	struct mig_dst *d = r->d;

	pthread_mutex_lock(&d->lock);
	if (!d->failed) {
		char what[256];

		snprintf(what, sizeof(what), fmt, a);
		mig_fail(d->err, ret, "%s", what);
		d->failed = true;
		/* Wake the control thread out of its read. */
		shutdown(tp_stream_fd(tp_session_control(d->sess)),
			 SHUT_RDWR);
	}
	r->ret = ret;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* All receivers meet here at the end of each round. False if aborted. */
static bool round_barrier(struct mig_dst *d, bool final)
{
	bool ok;

	pthread_mutex_lock(&d->lock);
	if (final)
		d->finished++;
	if (++d->arrived == d->nbulk) {
		d->arrived = 0;
		d->barrier_gen++;
		pthread_cond_broadcast(&d->cond);
	} else {
		uint64_t gen = d->barrier_gen;

		while (!d->failed && gen == d->barrier_gen)
			pthread_cond_wait(&d->cond, &d->lock);
	}
	ok = !d->failed;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* COPY mode: the pages into the warm stage, then runs of consecutive
 * pages into the backing file with one pwrite each. */
static int rx_pages_copy(struct receiver *r, const struct mig_pages_hdr *h)
{
	struct mig_dst *d = r->d;
	struct iovec iov = { r->stage, (size_t)h->count * h->page_size };
	int ret = tp_recv_payload(r->st, &iov, 1);

	for (uint32_t i = 0; !ret && i < h->count;) {
		uint32_t run = 1;

		while (i + run < h->count && r->idx[i + run] == r->idx[i] + run)
			run++;
		ret = mig_vm_write(&d->vm, h->region, r->idx[i],
				   r->stage + (size_t)i * h->page_size,
				   (size_t)run * h->page_size);
		i += run;
	}
	return ret;
}

/* Postcopy: the pages into the stage, then each placed atomically. */
static int rx_pages_atomic(struct receiver *r, const struct mig_pages_hdr *h)
{
	struct iovec iov = { r->stage, (size_t)h->count * h->page_size };
	int ret;

	if (iov.iov_len > STAGE_BYTES)
		return mig_wire_reject("pages: a postcopy batch over %u bytes",
				       STAGE_BYTES);
	ret = tp_recv_payload(r->st, &iov, 1);
	for (uint32_t i = 0; !ret && i < h->count; i++)
		ret = place(r->d, h->region, r->idx[i],
			    r->stage + (size_t)i * h->page_size);
	return ret;
}

static int rx_pages(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_pages_hdr h;
	struct iovec iov = { r->buf, MIG_PAGES_FIXED };
	int ret;

	if (m->len < MIG_PAGES_FIXED)
		return mig_wire_reject("pages: shorter than its header");
	ret = tp_recv_payload(r->st, &iov, 1);
	if (ret)
		return ret;
	ret = mig_dec_pages_hdr(r->buf, MIG_PAGES_FIXED, m->len,
				&d->vm.layout, &h);
	if (ret)
		return ret;
	iov = (struct iovec){ r->buf, 8 * h.count };
	ret = tp_recv_payload(r->st, &iov, 1);
	if (!ret)
		ret = mig_dec_pages_idx(r->buf, 8 * h.count, &d->vm.layout, &h,
					r->idx);
	if (ret)
		return ret;
	if (r->atomic) {
		ret = rx_pages_atomic(r, &h);
	} else if (d->vm.copy &&
		   (uint64_t)h.count * h.page_size <= STAGE_BYTES) {
		ret = rx_pages_copy(r, &h);
	} else {
		/* Decrypt straight into guest RAM. */
		for (uint32_t i = 0; i < h.count; i++)
			r->iov[i] = (struct iovec){
				mig_vm_page(&d->vm, h.region, r->idx[i]),
				h.page_size };
		ret = tp_recv_payload(r->st, r->iov, h.count);
	}
	if (ret)
		return ret;
	for (uint32_t i = 0; i < h.count && !r->atomic; i++) {
		ut_bitmap_set(&d->received, d->vm.first[h.region] + r->idx[i]);
		ut_bitmap_clear(&d->zero, d->vm.first[h.region] + r->idx[i]);
	}
	return 0;
}

static int rx_small(struct receiver *r, const struct tp_msg *m)
{
	struct iovec iov = { r->buf, m->len };

	if (m->len > sizeof(r->buf))
		return mig_wire_reject("message 0x%x: %llu bytes, longer than "
				       "any valid one", m->type,
				       (unsigned long long)m->len);
	return m->len ? tp_recv_payload(r->st, &iov, 1) : 0;
}

/* Precopy: page @g is zero now. Fresh incoming RAM reads as zero; only a
 * page that got data in an earlier round needs clearing. */
static int zero_precopy(struct mig_dst *d, uint32_t r, uint64_t idx)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	uint64_t g = d->vm.first[r] + idx;

	ut_bitmap_set(&d->zero, g);
	if (!ut_bitmap_test_and_clear(&d->received, g))
		return 0;
	if (d->vm.copy)
		return gm_region_discard(&d->vm.map[r], idx * psz, psz);
	memset(mig_vm_page(&d->vm, r, idx), 0, psz);
	return 0;
}

static int rx_zero(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_zero z;
	int ret = rx_small(r, m);

	if (!ret)
		ret = mig_dec_zero(r->buf, m->len, &d->vm.layout, &z);
	for (uint64_t i = 0; !ret && i < z.npages; i++) {
		if (!(z.bits[i / 8] & (1u << (i % 8))))
			continue;
		ret = r->atomic ? place_zero(d, z.region, z.first + i) :
				  zero_precopy(d, z.region, z.first + i);
	}
	return ret;
}

static int rx_dup(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	uint32_t n;
	int ret = rx_small(r, m);

	if (!ret)
		ret = mig_dec_dup(r->buf, m->len, &d->vm.layout, r->dups,
				  MIG_MAX_DUPS, &n);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < n && !ret; i++) {
		const struct mig_dup *e = &r->dups[i];
		uint32_t psz = d->vm.layout.r[e->region].page_size;

		/* The decoder checked the pages exist; only we know what
		 * arrived. A copy of a page never sent would read zero here
		 * and, in postcopy, populate it before its data comes. */
		if (!ut_bitmap_test(&d->received,
				    d->vm.first[e->src_region] + e->src_page))
			return mig_wire_reject("dup: page %llu of region %u "
					       "refers to page %llu, never sent",
					       (unsigned long long)e->page,
					       e->region,
					       (unsigned long long)e->src_page);
		if (r->atomic || (d->vm.copy && psz <= STAGE_BYTES)) {
			/* The original arrived earlier on this stream. */
			if (d->vm.copy)
				ret = mig_vm_read(&d->vm, e->src_region,
						  e->src_page, r->stage, psz);
			else
				memcpy(r->stage, mig_vm_page(&d->vm, e->src_region,
							     e->src_page), psz);
			if (!ret && r->atomic)
				ret = place(d, e->region, e->page, r->stage);
			else if (!ret)
				ret = mig_vm_write(&d->vm, e->region, e->page,
						   r->stage, psz);
		} else {
			memcpy(mig_vm_page(&d->vm, e->region, e->page),
			       mig_vm_page(&d->vm, e->src_region, e->src_page),
			       psz);
		}
		if (!ret && !r->atomic) {
			ut_bitmap_set(&d->received,
				      d->vm.first[e->region] + e->page);
			ut_bitmap_clear(&d->zero,
					d->vm.first[e->region] + e->page);
		}
	}
	return ret;
}

/* At the POSTCOPY marker: wait until the control thread has dropped the
 * pages the source discards, then place atomically from here on. */
static bool postcopy_barrier(struct receiver *r)
{
	struct mig_dst *d = r->d;
	bool ok;

	if (!d->can_postcopy)
		return false;
	pthread_mutex_lock(&d->lock);
	d->switched++;
	pthread_cond_broadcast(&d->cond);
	while (!d->discards_done && !d->failed)
		pthread_cond_wait(&d->cond, &d->lock);
	ok = !d->failed;
	pthread_mutex_unlock(&d->lock);
	r->atomic = true;
	return ok;
}

/* Handles one message; 1 when the final round is over, 0, or -errno. */
static int rx_one(struct receiver *r, const struct tp_msg *m)
{
	struct mig_round rd;
	struct mig_error e;
	int ret;

	switch (m->type) {
	case MIG_MSG_PAGES:
		return rx_pages(r, m);
	case MIG_MSG_ZERO:
		return rx_zero(r, m);
	case MIG_MSG_DUP:
		return rx_dup(r, m);
	case MIG_MSG_ROUND:
		ret = rx_small(r, m);
		if (!ret)
			ret = mig_dec_round(r->buf, m->len, &rd);
		if (ret)
			return ret;
		if (!round_barrier(r->d, rd.flags & MIG_ROUND_FINAL))
			return -ECANCELED;
		if ((rd.flags & MIG_ROUND_POSTCOPY) && !postcopy_barrier(r))
			return -ECANCELED;
		return (rd.flags & MIG_ROUND_FINAL) ? 1 : 0;
	case MIG_MSG_ERROR:
		ret = rx_small(r, m);
		if (!ret && !mig_dec_error(r->buf, m->len, &e))
			rx_fail(r, -e.code, "the source gave up: %s", e.msg);
		return -ECANCELED;
	default:
		return mig_wire_reject("unexpected message 0x%x on a bulk "
				       "stream", m->type);
	}
}

static void *receiver_main(void *arg)
{
	struct receiver *r = arg;
	struct tp_msg m;
	int ret;

	for (;;) {
		ret = tp_recv_hdr(r->st, &m);
		if (!ret)
			ret = rx_one(r, &m);
		if (ret == 1)
			return NULL;
		if (ret < 0)
			break;
	}
	if (ret == -EPROTO)
		rx_fail(r, ret, "the source sent a malformed message: %s",
			mig_wire_reason()[0] ? mig_wire_reason() :
					       tp_stream_strerror(r->st));
	else if (ret != -ECANCELED)
		rx_fail(r, ret, "receiving guest pages: %s",
			tp_stream_strerror(r->st)[0] ? tp_stream_strerror(r->st)
						      : strerror(-ret));
	else
		rx_fail(r, ret, "%s", "cancelled");
	return NULL;
}

/* ---- postcopy: the fault thread ---- */

/* Finds the region and page of a fault at @addr in the VMM. */
static bool fault_page(const struct mig_dst *d, uint64_t addr, uint32_t *r,
		       uint64_t *idx)
{
	for (uint32_t i = 0; i < d->vm.nr; i++) {
		const struct vml_region *v = &d->vm.link.hello.regions[i];

		if (addr >= v->host_addr && addr - v->host_addr < v->size) {
			*r = i;
			*idx = (addr - v->host_addr) / v->page_size;
			return *idx < region_pages(d, i);
		}
	}
	return false;
}

/* One fault: served here if the page is known, else asked for. Returns 1
 * when a request was added to @q. */
static int on_fault(struct mig_dst *d, uint64_t addr, struct mig_req *q)
{
	uint64_t idx, g;
	uint32_t r;

	if (!fault_page(d, addr, &r, &idx)) {
		pr_warn("fault at 0x%llx outside guest RAM",
			(unsigned long long)addr);
		return 0;
	}
	g = d->vm.first[r] + idx;
	if (ut_bitmap_test(&d->received, g)) {
		/* Placed between the fault and our read: wake it. */
		gm_uffd_wake(&d->uffd, vmm_addr(d, r, idx),
			     d->vm.layout.r[r].page_size);
		return 0;
	}
	if (ut_bitmap_test(&d->zero, g)) {
		place_zero(d, r, idx);
		return 0;
	}
	if (!mig_faults_request(&d->faults, g, ut_now_ns()))
		return 0; /* asked already; its placement wakes everyone */
	/* A receiver may have placed it just now, before seeing our bit. */
	if (ut_bitmap_test(&d->received, g) &&
	    mig_faults_withdraw(&d->faults, g)) {
		wake_if_idle(d);
		gm_uffd_wake(&d->uffd, vmm_addr(d, r, idx),
			     d->vm.layout.r[r].page_size);
		return 0;
	}
	*q = (struct mig_req){ r, idx };
	return 1;
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
	uint8_t buf[MIG_REQ_FIXED + MIG_REQ_ENTRY * MIG_MAX_REQS];
	struct mig_req q[MIG_MAX_REQS];
	struct gm_uffd_event ev[16];
	uint32_t nq = 0;
	ssize_t n;

	n = gm_uffd_read_events(&d->uffd, ev, UT_ARRAY_SIZE(ev));
	if (n < 0)
		return n;
	for (ssize_t i = 0; i < n; i++) {
		if (ev[i].kind == GM_UFFD_EV_FAULT)
			nq += on_fault(d, ev[i].addr, &q[nq]);
		else if (ev[i].kind == GM_UFFD_EV_REMOVE)
			on_remove(d, ev[i].addr, ev[i].end);
	}
	if (!nq)
		return 0;
	n = mig_enc_req(buf, sizeof(buf), q, nq);
	return n < 0 ? n : mig_send_msg(urg, MIG_MSG_PAGE_REQ, buf, n);
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
		ret = place(d, h.region, idx[i],
			    d->ft.buf + (size_t)i * h.page_size);
	return ret;
}

/* After a reconnect: the requests in flight died with the old stream. */
static int resend_requests(struct mig_dst *d, struct tp_stream *urg)
{
	uint8_t buf[MIG_REQ_FIXED + MIG_REQ_ENTRY * MIG_MAX_REQS];
	struct mig_req q[MIG_MAX_REQS];
	uint32_t nq = 0;
	int ret = 0;

	for (uint64_t g = ut_bitmap_find_next(&d->faults.requested, 0);
	     g < d->vm.total_pages && !ret;
	     g = ut_bitmap_find_next(&d->faults.requested, g + 1)) {
		uint32_t r = 0;
		ssize_t n;

		while (r + 1 < d->vm.nr && g >= d->vm.first[r + 1])
			r++;
		q[nq++] = (struct mig_req){ r, g - d->vm.first[r] };
		if (nq < MIG_MAX_REQS &&
		    ut_bitmap_find_next(&d->faults.requested, g + 1) <
		    d->vm.total_pages)
			continue;
		n = mig_enc_req(buf, sizeof(buf), q, nq);
		ret = n < 0 ? n : mig_send_msg(urg, MIG_MSG_PAGE_REQ, buf, n);
		nq = 0;
	}
	d->ft.resend = false;
	return ret;
}

/* One thread owns the uffd and the urgent stream (both directions). */
static void *fault_main(void *arg)
{
	struct mig_dst *d = arg;
	struct tp_stream *urg = tp_session_urgent(d->sess);
	struct pollfd pfd[3] = { { d->uffd.fd, POLLIN, 0 },
				 { tp_stream_fd(urg), POLLIN, 0 },
				 { d->ft.stop_fd, POLLIN, 0 } };
	int ret = d->ft.resend ? resend_requests(d, urg) : 0;

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
		pthread_mutex_lock(&d->lock);
		if (!d->failed) {
			mig_fail(d->err, ret, "postcopy page requests: %s",
				 tp_stream_strerror(urg)[0] ?
					 tp_stream_strerror(urg) :
					 strerror(-ret));
			d->failed = true;
		}
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
	return NULL;
}

static int start_faulter(struct mig_dst *d)
{
	d->ft.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (d->ft.stop_fd < 0)
		return -errno;
	d->ft.buf = aligned_alloc(4096, STAGE_BYTES);
	if (!d->ft.buf)
		return -ENOMEM;
	if (pthread_create(&d->ft.thread, NULL, fault_main, d))
		return -EAGAIN;
	d->ft.started = true;
	return 0;
}

static void stop_faulter(struct mig_dst *d)
{
	uint64_t one = 1;

	if (d->ft.started) {
		if (write(d->ft.stop_fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("stopping the fault thread failed");
		pthread_join(d->ft.thread, NULL);
		d->ft.started = false;
	}
	if (d->ft.stop_fd >= 0)
		close(d->ft.stop_fd);
	d->ft.stop_fd = -1;
	free(d->ft.buf);
	d->ft.buf = NULL;
}

/* Registers MISSING mode on all of the incoming VM's RAM, before anything
 * can touch it. Without a uffd, or where that fails, no postcopy. */
static void setup_uffd(struct mig_dst *d)
{
	const struct vml_hello *h = &d->vm.link.hello;
	uint64_t want = 0;
	int fd = vml_client_take_uffd(&d->vm.link);
	uint32_t maxpsz = 0;

	if (fd < 0)
		return;
	for (uint32_t i = 0; i < d->vm.nr; i++) {
		if (h->regions[i].page_size == 4096)
			want |= UFFD_FEATURE_MISSING_SHMEM;
		else
			want |= UFFD_FEATURE_MISSING_HUGETLBFS;
		if (h->regions[i].page_size > maxpsz)
			maxpsz = h->regions[i].page_size;
	}
	if (maxpsz > STAGE_BYTES ||
	    gm_uffd_init(&d->uffd, fd, want | UFFD_FEATURE_EVENT_REMOVE, true)) {
		close(fd);
		return;
	}
	for (uint32_t i = 0; i < d->vm.nr; i++)
		if (gm_uffd_register(&d->uffd, h->regions[i].host_addr,
				     h->regions[i].size, GM_UFFD_MISSING, NULL))
			return;
	if (maxpsz > 4096) {
		d->zero_page = aligned_alloc(4096, maxpsz);
		if (!d->zero_page)
			return;
		memset(d->zero_page, 0, maxpsz);
	}
	d->can_postcopy = true;
}

/* Drops the registrations: every page is in place, or known to be zero
 * (which a hole in the backing reads as). */
static void release_uffd(struct mig_dst *d)
{
	const struct vml_hello *h = &d->vm.link.hello;

	if (d->can_postcopy)
		for (uint32_t i = 0; i < d->vm.nr; i++)
			gm_uffd_unregister(&d->uffd, h->regions[i].host_addr,
					   h->regions[i].size);
	gm_uffd_close(&d->uffd);
	d->can_postcopy = false;
}

/* ---- the control stream ---- */

static void tell_source(struct mig_dst *d, int code, const char *msg)
{
	uint8_t buf[512];
	ssize_t n = mig_enc_error(buf, sizeof(buf), code, msg);

	if (n > 0)
		mig_send_msg(tp_session_control(d->sess), MIG_MSG_ERROR,
			     buf, n);
}

static bool same_layout(const struct mig_layout *a, const struct mig_layout *b)
{
	if (a->nr != b->nr)
		return false;
	for (uint32_t i = 0; i < a->nr; i++)
		if (a->r[i].gpa != b->r[i].gpa || a->r[i].size != b->r[i].size ||
		    a->r[i].page_size != b->r[i].page_size)
			return false;
	return true;
}

static int welcome(struct mig_dst *d, struct tp_stream *ctl, char *err)
{
	uint8_t buf[4096];
	struct mig_hello h;
	struct tp_msg m;
	ssize_t n;
	int ret;

	ret = tp_recv(ctl, &m, buf, sizeof(buf));
	if (ret)
		return mig_fail(err, ret, "waiting for the source's HELLO: %s",
				tp_stream_strerror(ctl));
	if (m.type != MIG_MSG_HELLO)
		return mig_fail(err, -EPROTO, "the source sent no valid HELLO "
				"(message 0x%x)", m.type);
	if (mig_dec_hello(buf, m.len, &h))
		return mig_fail(err, -EPROTO, "the source sent no valid HELLO "
				"(%s)", mig_wire_reason());
	if (h.ver_min > MIG_WIRE_VERSION || h.ver_max < MIG_WIRE_VERSION) {
		mig_fail(err, -EPROTONOSUPPORT, "the source speaks protocol "
			 "versions %u-%u, this destination %u", h.ver_min,
			 h.ver_max, MIG_WIRE_VERSION);
		tell_source(d, EPROTONOSUPPORT, err);
		return -EPROTONOSUPPORT;
	}
	if (h.nbulk != d->nbulk) {
		mig_fail(err, -EPROTO, "the source's HELLO announces %u bulk "
			 "streams, its session has %u", h.nbulk, d->nbulk);
		tell_source(d, EPROTO, err);
		return -EPROTO;
	}
	if (!same_layout(&h.layout, &d->vm.layout)) {
		mig_fail(err, -EINVAL, "the source VM's RAM layout (%u regions, "
			 "%llu pages) does not match the incoming VM's (%u "
			 "regions, %llu pages)", h.layout.nr,
			 (unsigned long long)h.total_pages, d->vm.layout.nr,
			 (unsigned long long)d->vm.total_pages);
		tell_source(d, EINVAL, err);
		return -EINVAL;
	}
	n = mig_enc_welcome(buf, sizeof(buf), &(struct mig_welcome){
		MIG_WIRE_VERSION, h.features & MIG_FEATURES_V1 &
		(d->can_postcopy ? ~0ULL : ~MIG_FEAT_POSTCOPY) });
	ret = mig_send_msg(ctl, MIG_MSG_WELCOME, buf, n);
	if (ret)
		return mig_fail(err, ret, "answering HELLO: %s",
				tp_stream_strerror(ctl));
	return 0;
}

static int start_receivers(struct mig_dst *d)
{
	d->rx = calloc(d->nbulk, sizeof(*d->rx));
	if (!d->rx)
		return -ENOMEM;
	for (unsigned int i = 0; i < d->nbulk; i++) {
		d->rx[i].d = d;
		d->rx[i].st = tp_session_bulk(d->sess, i);
		d->rx[i].atomic = d->pushing;
		if (d->vm.copy || d->can_postcopy) {
			d->rx[i].stage = aligned_alloc(4096, STAGE_BYTES);
			if (!d->rx[i].stage)
				return -ENOMEM;
			memset(d->rx[i].stage, 0, STAGE_BYTES);
		}
		if (pthread_create(&d->rx[i].thread, NULL, receiver_main,
				   &d->rx[i]))
			return -EAGAIN;
		d->rx[i].started = true;
	}
	return 0;
}

/* Joins every receiver; 0 when all finished the final round. */
static int join_receivers(struct mig_dst *d)
{
	int ret = 0;

	if (!d->rx)
		return 0;
	for (unsigned int i = 0; i < d->nbulk; i++) {
		if (d->rx[i].started)
			pthread_join(d->rx[i].thread, NULL);
		if (d->rx[i].ret && !ret)
			ret = d->rx[i].ret;
		free(d->rx[i].stage);
	}
	free(d->rx);
	d->rx = NULL;
	return ret;
}

/* POSTCOPY: every receiver must stop at its marker before the discards
 * are applied, or a pushed page could be dropped after it landed. */
static int enter_postcopy(struct mig_dst *d, char *err)
{
	if (!d->can_postcopy)
		return mig_fail(err, -EPROTO, "the source switched to postcopy "
				"that was not agreed");
	pthread_mutex_lock(&d->lock);
	while (d->switched < d->nbulk && !d->failed)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
	return d->failed ? -ECANCELED : 0;
}

/* DISCARD: pages the source resends; drop ours so that a touch faults. */
static int apply_discard(struct mig_dst *d, const uint8_t *buf, size_t len,
			 char *err)
{
	struct mig_zero z;
	int ret = mig_dec_zero(buf, len, &d->vm.layout, &z);

	if (ret)
		return mig_fail(err, ret, "the source sent a malformed DISCARD");
	for (uint64_t i = 0; i < z.npages && !ret; i++) {
		uint32_t psz = d->vm.layout.r[z.region].page_size;
		uint64_t g = d->vm.first[z.region] + z.first + i;

		if (!(z.bits[i / 8] & (1u << (i % 8))))
			continue;
		ut_bitmap_clear(&d->received, g);
		ut_bitmap_clear(&d->zero, g);
		ret = gm_region_discard(&d->vm.map[z.region],
					(z.first + i) * psz, psz);
	}
	return ret ? mig_fail(err, ret, "dropping a page failed") : 0;
}

static int recv_small(struct tp_stream *ctl, const struct tp_msg *m,
		      uint8_t *buf, size_t cap)
{
	struct iovec iov = { buf, m->len };

	if (m->len > cap)
		return -EPROTO;
	return m->len ? tp_recv_payload(ctl, &iov, 1) : 0;
}

/* Waits until the control stream has something to read, or the operator
 * cancels (-ECANCELED). Waits at most a silence the source's keepalives
 * never leave; tp_recv_hdr() then applies the stream's own timeout. */
static int wait_ctl(struct mig_dst *d, struct tp_stream *ctl, char *err)
{
	struct pollfd pfd[2] = { { tp_stream_fd(ctl), POLLIN, 0 },
				 { d->p->cancel ? d->p->cancel->fd : -1,
				   POLLIN, 0 } };

	if (!d->p->cancel || tp_stream_pending(ctl))
		return 0;
	while (poll(pfd, 2, 10000) < 0 && errno == EINTR)
		;
	if (!mig_cancel_requested(d->p->cancel, d->why, sizeof(d->why)))
		return 0;
	d->cancelled = true;
	return mig_fail(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the incoming VM was discarded", d->why);
}

/* The state is here: from now on the guest runs here, no cancel. */
static int commit_state(struct mig_dst *d, bool postcopy, char *err)
{
	if (!mig_cancel_commit(d->p->cancel, postcopy ?
			       "the guest runs here (postcopy in progress)" :
			       "the guest resumes here (precopy)"))
		return 0;
	mig_cancel_requested(d->p->cancel, d->why, sizeof(d->why));
	d->cancelled = true;
	return mig_fail(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the incoming VM was discarded", d->why);
}

/* After telling the source we cancelled: wait (bounded) for its answer
 * or its close, skipping whatever it sent meanwhile, so that the
 * receivers' streams closing cannot overtake the reason. */
static void linger(struct tp_stream *ctl)
{
	struct tp_msg m;

	tp_stream_set_timeout(ctl, 3000);
	while (!tp_recv_hdr(ctl, &m) && m.type != MIG_MSG_ERROR &&
	       !tp_recv_skip(ctl, m.len))
		;
}

/* Serves the control stream until the state blob (*@blob, malloc'ed)
 * arrives; *@postcopy tells whether the source switched to postcopy. */
static int recv_state(struct mig_dst *d, struct tp_stream *ctl, void **blob,
		      size_t *len, bool *postcopy, char *err)
{
	uint8_t buf[MIG_ZERO_FIXED + 4096];
	struct mig_error e;
	struct tp_msg m;
	struct iovec iov;
	int ret;

	for (;;) {
		ret = wait_ctl(d, ctl, err);
		if (ret)
			return ret;
		ret = tp_recv_hdr(ctl, &m);
		if (ret)
			return mig_fail(err, ret, "the source went away before "
					"switchover: %s", tp_stream_strerror(ctl));
		if (m.type == MIG_MSG_STATE && (ret = commit_state(d, *postcopy, err)))
			return ret;
		if (m.type == MIG_MSG_STATE)
			break;
		if (m.type == MIG_MSG_KEEPALIVE && !m.len)
			continue;
		ret = recv_small(ctl, &m, buf, sizeof(buf));
		if (ret)
			return mig_fail(err, ret, "control message 0x%x: %s",
					m.type, tp_stream_strerror(ctl));
		if (m.type == MIG_MSG_ERROR) {
			d->peer_cancelled = !mig_dec_error(buf, m.len, &e) &&
					    e.code == ECANCELED;
			if (d->peer_cancelled)
				return mig_fail(err, -ECANCELED, "the source %s "
						"before the switchover: the "
						"incoming VM was discarded",
						e.msg);
			if (!mig_dec_error(buf, m.len, &e))
				return mig_fail(err, -e.code, "the source gave "
						"up: %s", e.msg);
			return mig_fail(err, -EPROTO, "the source gave up with "
					"a malformed ERROR (%s)",
					mig_wire_reason());
		} else if (m.type == MIG_MSG_POSTCOPY) {
			*postcopy = true;
			ret = enter_postcopy(d, err);
		} else if (m.type == MIG_MSG_DISCARD && *postcopy) {
			ret = apply_discard(d, buf, m.len, err);
		} else {
			ret = mig_fail(err, -EPROTO, "unexpected control message "
				       "0x%x before the state", m.type);
		}
		if (ret)
			return ret;
	}
	if (!m.len || m.len > MIG_MAX_STATE)
		return mig_fail(err, -EPROTO, "a VM state of %llu bytes",
				(unsigned long long)m.len);
	*blob = malloc(m.len);
	if (!*blob)
		return mig_fail(err, -ENOMEM, "out of memory for the state");
	*len = m.len;
	iov = (struct iovec){ *blob, m.len };
	ret = tp_recv_payload(ctl, &iov, 1);
	if (ret)
		return mig_fail(err, ret, "receiving the VM state: %s",
				tp_stream_strerror(ctl));
	return 0;
}


/* Load the state, run the guest, say so. */
static int resume_guest(struct mig_dst *d, struct tp_stream *ctl,
			const void *blob, size_t len, double cpu0,
			struct mig_stats *st, char *err)
{
	struct mig_resumed r;
	uint8_t buf[64];
	uint64_t t0 = ut_now_ns();
	ssize_t n;
	int ret;

	ret = vml_client_load_state(&d->vm.link, blob, len);
	if (ret)
		return mig_fail(err, ret, "the incoming VM refused the state: "
				"%s", strerror(-ret));
	/* Nothing but the VMM touched guest RAM yet: QEMU's load reads it
	 * (post-load hooks), and in postcopy those faults are served. */
	st->faults_before_resume = atomic_load(&d->faults.nlat);
	ret = vml_client_resume(&d->vm.link);
	if (ret)
		return mig_fail(err, ret, "the incoming VM did not resume: %s",
				strerror(-ret));
	r.realtime_ns = mig_realtime_ns();
	r.load_ns = ut_now_ns() - t0;
	r.cpu_ns = (ut_cpu_seconds() - cpu0) * 1e9;
	st->state_load_ms = r.load_ns / 1e6;
	st->cpu_s_dest = r.cpu_ns / 1e9;
	d->resumed = r;
	n = mig_enc_resumed(buf, sizeof(buf), &r);
	ret = mig_send_msg(ctl, MIG_MSG_RESUMED, buf, n);
	if (ret)
		pr_warn("could not tell the source the guest runs: %s",
			tp_stream_strerror(ctl));
	return 0;
}

/* Wakes every receiver out of its stream and joins it. */
static int stop_receivers(struct mig_dst *d)
{
	pthread_mutex_lock(&d->lock);
	d->failed = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	for (unsigned int i = 0; i < d->nbulk && d->rx; i++)
		shutdown(tp_stream_fd(d->rx[i].st), SHUT_RDWR);
	return join_receivers(d);
}


/* Tells a reconnected source what is still missing: RESUMED as sent
 * before, NEED bitmaps (neither received nor known zero), RECOVERED. */
static int send_needs(struct mig_dst *d, struct tp_stream *ctl)
{
	uint8_t bits[4096], buf[MIG_ZERO_FIXED + 4096];
	ssize_t n = mig_enc_resumed(buf, sizeof(buf), &d->resumed);
	int ret = n < 0 ? n : mig_send_msg(ctl, MIG_MSG_RESUMED, buf, n);

	for (uint32_t r = 0; !ret && r < d->vm.nr; r++) {
		uint64_t pages = region_pages(d, r);

		for (uint64_t st = 0; !ret && st < pages; st += 8 * sizeof(bits)) {
			uint64_t cnt = pages - st < 8 * sizeof(bits) ?
					       pages - st : 8 * sizeof(bits);
			bool any = false;

			memset(bits, 0, sizeof(bits));
			for (uint64_t i = 0; i < cnt; i++) {
				uint64_t g = d->vm.first[r] + st + i;

				if (ut_bitmap_test(&d->received, g) ||
				    ut_bitmap_test(&d->zero, g))
					continue;
				bits[i / 8] |= 1u << (i % 8);
				any = true;
			}
			if (!any)
				continue;
			n = mig_enc_zero(buf, sizeof(buf), &(struct mig_zero){
				r, st, cnt, bits });
			ret = n < 0 ? n : mig_send_msg(ctl, MIG_MSG_NEED, buf, n);
		}
	}
	return ret ? ret : mig_send_msg(ctl, MIG_MSG_RECOVERED, NULL, 0);
}

/* The reconnecting source's HELLO must be a recovery of this migration. */
static int recover_hello(struct mig_dst *d, struct tp_stream *ctl, char *err)
{
	uint8_t buf[4096];
	struct mig_hello h;
	struct tp_msg m;
	int ret = tp_recv(ctl, &m, buf, sizeof(buf));

	if (ret)
		return mig_fail(err, ret, "waiting for the reconnected source: %s",
				tp_stream_strerror(ctl));
	if (m.type != MIG_MSG_HELLO || mig_dec_hello(buf, m.len, &h) ||
	    !(h.features & MIG_FEAT_RECOVER) ||
	    !same_layout(&h.layout, &d->vm.layout) ||
	    h.nbulk != tp_session_nbulk(d->sess)) {
		tell_source(d, EINVAL, "not a recovery of this migration");
		return mig_fail(err, -EPROTO, "a peer connected that does not "
				"recover this migration");
	}
	return 0;
}

/* The source is gone mid-postcopy. The guest keeps running here; a vCPU
 * that touches a missing page waits in the kernel (its fault stays
 * queued on the uffd) until a source reconnects and the page arrives. */
static int dest_recover(struct mig_dst *d, struct mig_stats *st, char *err)
{
	struct tp_session *ns = NULL;
	int ret;

	if (!d->p->reconnect)
		return -ECONNRESET;
	pr_err("postcopy: lost the source (%s); faulting vCPUs wait for it "
	       "to reconnect", err);
	mig_session_cut(d->sess);
	stop_faulter(d);
	stop_receivers(d);
	pthread_mutex_lock(&d->lock);
	d->failed = false;
	d->arrived = d->finished = 0;
	pthread_mutex_unlock(&d->lock);
	err[0] = 0;
	ret = d->p->reconnect(d->p->reconnect_arg, &ns, err);
	if (ret)
		return ret;
	if (d->own_sess)
		tp_session_destroy(d->sess);
	d->sess = ns;
	d->own_sess = true;
	d->nbulk = tp_session_nbulk(ns);
	ret = recover_hello(d, tp_session_control(ns), err);
	if (!ret && (ret = send_needs(d, tp_session_control(ns))))
		mig_fail(err, ret, "telling the source what is missing: %s",
			 tp_stream_strerror(tp_session_control(ns)));
	d->pushing = true;
	if (!ret && (ret = start_receivers(d)))
		mig_fail(err, ret, "cannot restart the receivers");
	d->ft.resend = true;
	if (!ret && (ret = start_faulter(d)))
		mig_fail(err, ret, "cannot restart the fault thread");
	if (!ret) {
		st->recoveries++;
		pr_warn("postcopy recovered: %llu pages outstanding",
			(unsigned long long)mig_faults_outstanding(&d->faults));
	}
	return ret;
}

/* Every page pushed and every page asked for is in place: say so, with
 * the fault figures, and let the guest run on its own memory. */
static int finish_postcopy(struct mig_dst *d, struct mig_stats *st,
			   char *err)
{
	struct mig_complete c = { 0 };
	struct tp_stream *ctl;
	uint8_t buf[1024];
	ssize_t len;
	int ret;

	for (;;) {
		ret = join_receivers(d);
		pthread_mutex_lock(&d->lock);
		while (!ret && mig_faults_outstanding(&d->faults) && !d->failed)
			pthread_cond_wait(&d->cond, &d->lock);
		if (!ret && d->failed)
			ret = -ECONNRESET;
		pthread_mutex_unlock(&d->lock);
		if (!ret)
			break;
		mig_fail(err, ret, "receiving pushed pages failed");
		ret = dest_recover(d, st, err);
		if (ret)
			return ret;
	}
	ctl = tp_session_control(d->sess);
	stop_faulter(d);
	release_uffd(d);
	mig_faults_summary(&d->faults, &c);
	for (unsigned int i = 0; i < MIG_HIST_BUCKETS; i++)
		st->fault_hist[i] = c.hist[i];
	st->faults = c.faults;
	st->fault_p50_us = c.p50_ns / 1e3;
	st->fault_p99_us = c.p99_ns / 1e3;
	st->fault_max_us = c.max_ns / 1e3;
	st->vcpu_blocked_ms = c.blocked_ns / 1e6;
	len = mig_enc_complete(buf, sizeof(buf), &c);
	ret = len < 0 ? len : mig_send_msg(ctl, MIG_MSG_COMPLETE, buf, len);
	return ret ? mig_fail(err, ret, "telling the source we are complete: "
			      "%s", tp_stream_strerror(ctl)) : 0;
}


/* Precopy resumes only a whole guest: every page arrived or was said to
 * be zero. A source whose final round ends short would otherwise run the
 * guest on pages that read as zero. */
static int check_complete(struct mig_dst *d, char *err)
{
	uint64_t n = 0, first = 0;

	for (uint64_t g = ut_bitmap_find_next_zero(&d->received, 0);
	     g < d->vm.total_pages;
	     g = ut_bitmap_find_next_zero(&d->received, g + 1))
		if (!ut_bitmap_test(&d->zero, g) && !n++)
			first = g;
	if (n)
		return mig_fail(err, -EPROTO, "the source ended precopy with "
				"%llu pages never sent (page %llu the first)",
				(unsigned long long)n,
				(unsigned long long)first);
	return 0;
}

static int alloc_tracking(struct mig_dst *d)
{
	uint64_t n = d->vm.total_pages;

	if (ut_bitmap_init(&d->received, n) || ut_bitmap_init(&d->zero, n))
		return -ENOMEM;
	return mig_faults_init(&d->faults, n);
}

int mig_dest_run(const struct mig_dest_params *p, struct mig_stats *st,
		 char err[MIG_ERR_LEN])
{
	struct mig_dst d = { .p = p, .err = err, .uffd = { .fd = -1 },
			     .ft = { .stop_fd = -1 }, .sess = p->session };
	struct tp_stream *ctl = tp_session_control(p->session);
	uint64_t t0 = ut_now_ns(), t_resume = 0;
	double cpu0 = ut_cpu_seconds();
	bool resumed = false, postcopy = false;
	void *blob = NULL;
	struct tp_msg m;
	size_t len = 0;
	int ret, rret;

	err[0] = 0;
	memset(st, 0, sizeof(*st));
	snprintf(st->outcome, sizeof(st->outcome), "failed");
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.cond, NULL);
	d.nbulk = tp_session_nbulk(p->session);
	ret = mig_vm_attach(&d.vm, p->vm_socket, p->mem_access, err);
	if (!ret && !(d.vm.link.hello.flags & VML_F_INCOMING))
		ret = mig_fail(err, -EBUSY, "the VM at %s is already running; "
			       "start it with --incoming", p->vm_socket);
	if (!ret && (ret = alloc_tracking(&d)))
		mig_fail(err, ret, "out of memory");
	if (!ret)
		setup_uffd(&d);
	if (!ret)
		ret = welcome(&d, ctl, err);
	if (!ret && (ret = start_receivers(&d)))
		mig_fail(err, ret, "cannot start the receiver threads");
	if (!ret)
		ret = recv_state(&d, ctl, &blob, &len, &postcopy, err);
	if (ret && d.cancelled) {
		char msg[64];

		snprintf(msg, sizeof(msg), "was cancelled by the operator "
			 "(%s)", d.why);
		tell_source(&d, ECANCELED, msg);
		linger(ctl);
	}
	if (ret) {
		stop_receivers(&d);
	} else if (!postcopy) {
		rret = join_receivers(&d);
		if (rret)
			ret = mig_fail(err, rret, "receiving guest pages failed");
		else
			ret = check_complete(&d, err);
		/* Every page is here: nothing may block the VM on a fault. */
		release_uffd(&d);
	} else {
		pthread_mutex_lock(&d.lock);
		d.discards_done = true;
		pthread_cond_broadcast(&d.cond);
		pthread_mutex_unlock(&d.lock);
		/* From the resume until COMPLETE only this agent brings the
		 * guest its missing pages: killing it would kill the guest. */
		ut_oom_protect(&d.oom, "the guest here depends on it "
			       "(postcopy)");
		if ((ret = start_faulter(&d)))
			mig_fail(err, ret, "cannot start the fault thread");
	}
	if (!ret)
		ret = resume_guest(&d, ctl, blob, len, cpu0, st, err);
	resumed = !ret;
	t_resume = ut_now_ns();
	snprintf(st->mode, sizeof(st->mode), postcopy ? "postcopy" : "precopy");
	if (resumed && postcopy) {
		ret = finish_postcopy(&d, st, err);
		ctl = tp_session_control(d.sess);
		st->postcopy_s = (ut_now_ns() - t_resume) / 1e9;
	}
	if (resumed && !ret) {
		/* The source releases its VM now; DONE or a close ends it. */
		m.type = 0;
		while (tp_recv(ctl, &m, NULL, 0) == 0 &&
		       m.type == MIG_MSG_KEEPALIVE)
			;
		if (m.type != MIG_MSG_DONE)
			pr_warn("no DONE from the source after resume");
		snprintf(st->outcome, sizeof(st->outcome), "completed");
	} else if (!resumed && d.vm.link.sock >= 0) {
		/* Nothing ran here: discard the incoming VM. */
		if (d.cancelled || d.peer_cancelled)
			snprintf(st->outcome, sizeof(st->outcome),
				 "cancelled");
		if (!d.cancelled && (!d.failed || ret != -ECANCELED))
			tell_source(&d, ret < 0 ? -ret : EIO, err);
		/* Unregister while the VMM's memory still exists. */
		release_uffd(&d);
		vml_client_quit(&d.vm.link);
	} else if (ret) {
		/* Postcopy lost its source: the guest here lacks pages it
		 * may touch at any time. Stop it rather than let a page read
		 * as zero; the source VM holds all memory, paused. */
		snprintf(st->outcome, sizeof(st->outcome), "interrupted");
		stop_receivers(&d);
		vml_client_pause(&d.vm.link);
		vml_client_quit(&d.vm.link);
		mig_fail(err, ret, "postcopy interrupted");
		pr_err("postcopy interrupted: the guest here was stopped; the "
		       "source VM is paused with all of its memory");
	}
	stop_faulter(&d);
	release_uffd(&d);
	ut_oom_restore(&d.oom);
	join_receivers(&d);
	st->guest_bytes = d.vm.ram_bytes;
	st->nbulk = d.nbulk;
	st->total_s = (ut_now_ns() - t0) / 1e9;
	if (!resumed)
		st->cpu_s_dest = ut_cpu_seconds() - cpu0;
	free(blob);
	free(d.zero_page);
	ut_bitmap_fini(&d.received);
	ut_bitmap_fini(&d.zero);
	mig_faults_fini(&d.faults);
	mig_vm_detach(&d.vm);
	if (d.own_sess)
		tp_session_destroy(d.sess);
	pthread_cond_destroy(&d.cond);
	pthread_mutex_destroy(&d.lock);
	return ret;
}
