// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination's receiver threads, one per bulk stream: each puts the
 * pages of a PAGES batch into the incoming VM's RAM, applies zero bitmaps
 * and duplicate references in stream order, and meets the other receivers
 * at each ROUND marker so that round r + 1 of one stream can never land
 * before round r of another. Past the POSTCOPY marker every page is
 * placed atomically through the userfaultfd (dst_place, dest-place.c).
 *
 * The copies of a data page after the kernel's out of the socket: in map
 * mode (precopy) the transport opens its records straight into guest RAM
 * (the cipher's pass: 1); in copy mode (what auto picks for 4 KiB pages)
 * into the receiver's stage, then pwrite into the backing (2); in
 * postcopy into the stage, then UFFDIO_COPY, or on a shared backing
 * (minor mode) pwrite or memcpy into the page cache and UFFDIO_CONTINUE
 * (2). transport/transport.h counts the transport's part.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

static void rx_fail(struct receiver *r, int ret, const char *fmt, const char *a)
{
	struct mig_dst *d = r->d;

	pthread_mutex_lock(&d->meet.lock);
	if (!d->meet.failed) {
		char what[256];

		snprintf(what, sizeof(what), fmt, a);
		ut_err_first(d->meet.err, ret, "%s", what);
		d->meet.failed = true;
		d->meet.error = ret;
		/* Wake the control thread out of its wait; the control
		 * stream stays up to tell the source why. */
		if (eventfd_write(d->meet.wake_fd, 1))
			tp_session_shutdown(d->sess, TP_SHUT_CONTROL);
	}
	r->ret = ret;
	pthread_cond_broadcast(&d->meet.cond);
	pthread_mutex_unlock(&d->meet.lock);
}

/* All receivers meet here at the end of each round. False if aborted. */
static bool round_barrier(struct mig_dst *d, bool final)
{
	bool ok;

	pthread_mutex_lock(&d->meet.lock);
	if (final)
		d->meet.finished++;
	if (++d->meet.arrived == d->nbulk) {
		d->meet.arrived = 0;
		d->meet.barrier_gen++;
		pthread_cond_broadcast(&d->meet.cond);
	} else {
		uint64_t gen = d->meet.barrier_gen;

		while (!d->meet.failed && gen == d->meet.barrier_gen)
			pthread_cond_wait(&d->meet.cond, &d->meet.lock);
	}
	ok = !d->meet.failed;
	pthread_mutex_unlock(&d->meet.lock);
	return ok;
}

/* UFFDIO_COPY of @n pages from @idx of region @r. The kernel refuses a
 * range that spans two VMAs with ENOENT, copying nothing; the VMM's
 * range is split where a placement plan binds neighbouring chunks to
 * different nodes (ADVISE BIND) and where KSM hints land (ADVISE
 * MERGEABLE, while pages still arrive): such a run is copied in halves
 * until each lies in one VMA. A single page still refused is a real
 * ENOENT (the range is gone). */
static int copy_run(struct mig_dst *d, uint32_t r, uint64_t idx,
		    const uint8_t *buf, uint32_t n)
{
	uint32_t psz = d->vm.layout.r[r].page_size, h = n / 2;
	int ret = gm_uffd_copy(&d->uffd, vmm_addr(d, r, idx), buf,
			       (uint64_t)n * psz, GM_UFFD_DONTWAKE);

	if (ret != -ENOENT || n == 1)
		return ret;
	ret = copy_run(d, r, idx, buf, h);
	return ret ? ret : copy_run(d, r, idx + h, buf + (size_t)h * psz,
				    n - h);
}

/* Precopy, COPY mode: @n consecutive pages from @idx of region @r into
 * the VMM's RAM. A page placed for the first time goes in with
 * UFFDIO_COPY where the RAM is registered: the kernel allocates it in the
 * VMM's address space, charged to the VMM's memory cgroup as if the VMM
 * had written it, where a pwrite would charge this agent's cgroup with
 * the guest's memory (tests/faults.sh memcg_charge). A page already there
 * (sent again in a later round) is rewritten in place, which allocates
 * nothing. */
static int write_pages(struct mig_dst *d, uint32_t r, uint64_t idx,
		       const uint8_t *buf, uint32_t n)
{
	uint32_t psz = d->vm.layout.r[r].page_size;
	uint64_t g = d->vm.first[r] + idx;
	int ret = 0;

	for (uint32_t i = 0, k; !ret && i < n; i += k) {
		bool fresh = d->can_postcopy &&
			     !ut_bitmap_test(&d->received, g + i);

		for (k = 1; i + k < n && fresh == (d->can_postcopy &&
			    !ut_bitmap_test(&d->received, g + i + k)); k++)
			;
		ret = fresh ? copy_run(d, r, idx + i, buf + (size_t)i * psz,
				       k) : -EEXIST;
		/* Some of them are there after all: rewrite the run. */
		if (ret == -EEXIST || ret == -EAGAIN)
			ret = mig_vm_write(&d->vm, r, idx + i,
					   buf + (size_t)i * psz,
					   (size_t)k * psz);
	}
	return ret;
}

/* COPY mode: the pages into the warm stage, then runs of consecutive
 * pages into the guest's RAM (write_pages). */
static int rx_pages_copy(struct receiver *r, const struct mig_pages_hdr *h)
{
	struct mig_dst *d = r->d;
	struct iovec iov = { r->stage, (size_t)h->count * h->page_size };
	int ret = tp_recv_payload(r->st, &iov, 1);

	for (uint32_t i = 0; !ret && i < h->count;) {
		uint32_t run = 1;

		while (i + run < h->count && r->idx[i + run] == r->idx[i] + run)
			run++;
		ret = write_pages(d, h->region, r->idx[i],
				  r->stage + (size_t)i * h->page_size, run);
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
		ret = dst_place(r->d, h->region, r->idx[i],
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

/* SUBPAGES in postcopy: only for a page we keep (MINOR mode), of one
 * window; the data into the stage, then applied and mapped at once. */
static int rx_subpages_atomic(struct receiver *r, const struct mig_subpages *s,
			      uint64_t g)
{
	struct mig_dst *d = r->d;
	struct iovec iov = { r->stage, (size_t)s->count * MIG_SUB_SIZE };
	int ret;

	if (!d->keep || d->vm.layout.r[s->region].page_size != MIG_SUB_WINDOW)
		return mig_wire_reject("subpages: in postcopy, where this "
				       "destination places pages whole");
	if (!ut_bitmap_test(&d->held, g) && !ut_bitmap_test(&d->claimed, g))
		return mig_wire_reject("subpages: page %llu of region %u is "
				       "not one this destination keeps",
				       (unsigned long long)s->page, s->region);
	ret = s->count ? tp_recv_payload(r->st, &iov, 1) : 0;
	return ret ? ret : dst_place_sub(d, s, r->stage);
}

/* SUBPAGES (precopy): the changed 4 KiB of a 2 MiB window of a huge page
 * we hold (or every 4 KiB of it), written into it in place. */
static int rx_subpages(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_subpages s;
	struct iovec iov = { r->buf, MIG_SUBPAGES_FIXED };
	uint32_t n = 0;
	bool whole = true;
	uint8_t *page;
	uint64_t g;
	int ret;

	if (m->len < MIG_SUBPAGES_FIXED)
		return mig_wire_reject("subpages: shorter than its header");
	ret = tp_recv_payload(r->st, &iov, 1);
	if (!ret)
		ret = mig_dec_subpages_hdr(r->buf, MIG_SUBPAGES_FIXED, m->len,
					   &d->vm.layout, &s);
	if (ret)
		return ret;
	g = d->vm.first[s.region] + s.page;
	if (r->atomic)
		return rx_subpages_atomic(r, &s, g);
	for (uint32_t i = 0; i < MIG_SUB_BITMAP; i++)
		whole &= (s.data[i] | s.zero[i]) == 0xff;
	if (!whole && !ut_bitmap_test(&d->received, g))
		return mig_wire_reject("subpages: page %llu of region %u was "
				       "never sent",
				       (unsigned long long)s.page, s.region);
	/* Only offered without COPY access (dst_welcome): hugetlbfs has no
	 * write(2). */
	page = mig_vm_page(&d->vm, s.region, s.page) +
	       (size_t)s.first * MIG_SUB_SIZE;
	for (uint32_t i = 0; i < MIG_SUB_PER_PAGE; i++) {
		uint8_t *sub = page + (size_t)i * MIG_SUB_SIZE;

		if (s.data[i / 8] & (1u << (i % 8)))
			r->iov[n++] = (struct iovec){ sub, MIG_SUB_SIZE };
		else if (s.zero[i / 8] & (1u << (i % 8)))
			memset(sub, 0, MIG_SUB_SIZE);
	}
	ret = n ? tp_recv_payload(r->st, r->iov, n) : 0;
	if (!ret) {
		ut_bitmap_set(&d->received, g);
		ut_bitmap_clear(&d->zero, g);
	}
	return ret;
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
		return mig_vm_zero(&d->vm, r, idx);
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
		ret = r->atomic ? dst_place_zero(d, z.region, z.first + i) :
				  zero_precopy(d, z.region, z.first + i);
		if (!ret)
			dst_ksm_mark(d, z.region, z.first + i);
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
				ret = dst_place(d, e->region, e->page, r->stage);
			else if (!ret)
				ret = write_pages(d, e->region, e->page,
						  r->stage, 1);
		} else {
			memcpy(mig_vm_page(&d->vm, e->region, e->page),
			       mig_vm_page(&d->vm, e->src_region, e->src_page),
			       psz);
		}
		if (!ret) {	/* the copy and its original: KSM's pair */
			dst_ksm_mark(d, e->region, e->page);
			dst_ksm_mark(d, e->src_region, e->src_page);
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
	pthread_mutex_lock(&d->meet.lock);
	d->meet.switched++;
	pthread_cond_broadcast(&d->meet.cond);
	while (!d->meet.discards_done && !d->meet.failed)
		pthread_cond_wait(&d->meet.cond, &d->meet.lock);
	ok = !d->meet.failed;
	pthread_mutex_unlock(&d->meet.lock);
	r->atomic = true;
	return ok;
}

/* Handles one message; 1 when the final round is over, 0, or -errno. */
/* A MIG_ROUND_DISCARD round's (MIG_FEAT_DISCARD_EARLY): in precopy only,
 * after the rounds whose pages it drops (the round barrier orders it). */
static int rx_discard(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_zero z;
	int ret;

	if (!d->discard_early || r->atomic)
		return mig_wire_reject("DISCARD on a bulk stream %s",
				       r->atomic ? "in postcopy" :
				       "without MIG_FEAT_DISCARD_EARLY");
	ret = rx_small(r, m);
	if (!ret)
		ret = mig_dec_zero(r->buf, m->len, &d->vm.layout, &z);
	return ret ? ret : dst_discard(d, &z);
}

/* MIG_FEAT_ROUND_ACK: the end of round @rd on this stream, where the
 * guest runs on at the source, answered on it once the receiver is past
 * it (every page and DISCARD before the marker is applied: both are
 * synchronous), before the barrier. */
static int rx_round_ack(struct receiver *r, const struct mig_round *rd)
{
	uint8_t buf[32];
	ssize_t n;

	if (!r->d->round_ack || !mig_round_acked(rd->flags))
		return 0;
	n = mig_enc_round(buf, sizeof(buf), rd);
	return n < 0 ? (int)n : mig_send_msg(r->st, MIG_MSG_ROUND, buf, n);
}

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
	case MIG_MSG_SUBPAGES:
		return rx_subpages(r, m);
	case MIG_MSG_DISCARD:
		return rx_discard(r, m);
	case MIG_MSG_ROUND:
		ret = rx_small(r, m);
		if (!ret)
			ret = mig_dec_round(r->buf, m->len, &rd);
		if (!ret)
			ret = rx_round_ack(r, &rd);
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

/* Test-only (struct mig_inject): fails this receiver at the K-th bulk
 * message of the destination. */
static bool injected(struct receiver *r)
{
	struct mig_inject *in = r->d->p->inject;
	char k[16];

	if (!mig_inject_hit(in, in ? &in->rx_msgs : NULL,
			    in ? in->dest_fail_rx : 0))
		return false;
	snprintf(k, sizeof(k), "%u", in->dest_fail_rx);
	rx_fail(r, -EIO, "injected failure at bulk message %s", k);
	return true;
}

static void *receiver_main(void *arg)
{
	struct receiver *r = arg;
	struct tp_msg m;
	int ret;

	for (;;) {
		ret = tp_recv_hdr(r->st, &m);
		if (!ret && r->d->p->inject && injected(r))
			return NULL;
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
					       tp_stream_err(r->st)->msg);
	else if (ret != -ECANCELED)
		rx_fail(r, ret, "receiving guest pages: %s",
			tp_stream_err(r->st)->msg[0] ? tp_stream_err(r->st)->msg
						      : strerror(-ret));
	else
		rx_fail(r, ret, "%s", "cancelled");
	return NULL;
}

int dst_receivers_start(struct mig_dst *d)
{
	d->rx = calloc(d->nbulk, sizeof(*d->rx));
	if (!d->rx)
		return -ENOMEM;
	for (unsigned int i = 0; i < d->nbulk; i++)
		mig_worker_init(&d->rx[i].wk);
	for (unsigned int i = 0; i < d->nbulk; i++) {
		int ret;

		d->rx[i].d = d;
		d->rx[i].st = tp_session_bulk(d->sess, i);
		d->rx[i].atomic = d->pushing;
		if (d->vm.copy || d->can_postcopy) {
			d->rx[i].stage = aligned_alloc(4096, STAGE_BYTES);
			if (!d->rx[i].stage)
				return -ENOMEM;
			memset(d->rx[i].stage, 0, STAGE_BYTES);
		}
		ret = mig_worker_start(&d->rx[i].wk, receiver_main, &d->rx[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* Joins every receiver; 0 when all finished the final round. */
int dst_receivers_join(struct mig_dst *d)
{
	int ret = 0;

	if (!d->rx)
		return 0;
	for (unsigned int i = 0; i < d->nbulk; i++) {
		mig_worker_join(&d->rx[i].wk);
		if (d->rx[i].ret && !ret)
			ret = d->rx[i].ret;
		free(d->rx[i].stage);
	}
	free(d->rx);
	d->rx = NULL;
	/* The first failure's code, whose reason d->meet.err holds: the
	 * others were stopped by it (-ECANCELED), whichever joined first. */
	pthread_mutex_lock(&d->meet.lock);
	if (ret && d->meet.failed && d->meet.error)
		ret = d->meet.error;
	pthread_mutex_unlock(&d->meet.lock);
	return ret;
}

/* Wakes every receiver out of its stream and joins it. */
int dst_receivers_stop(struct mig_dst *d)
{
	/* A receiver sleeps at a barrier (woken by failed and the
	 * broadcast) or in a read of its stream (woken by the shutdown). */
	pthread_mutex_lock(&d->meet.lock);
	d->meet.failed = true;
	for (unsigned int i = 0; i < d->nbulk && d->rx; i++)
		mig_worker_kick(&d->rx[i].wk);
	pthread_cond_broadcast(&d->meet.cond);
	pthread_mutex_unlock(&d->meet.lock);
	if (d->rx)
		tp_session_shutdown(d->sess, TP_SHUT_BULK);
	return dst_receivers_join(d);
}
