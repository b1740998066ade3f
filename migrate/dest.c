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
#include <sys/mman.h>
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
	uint8_t *stage;		/* COPY mode: STAGE_BYTES, reused */
};

struct mig_dst {
	const struct mig_dest_params *p;
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
};

static void rx_fail(struct receiver *r, int ret, const char *fmt, const char *a)
{
	struct mig_dst *d = r->d;

	pthread_mutex_lock(&d->lock);
	if (!d->failed) {
		char what[160];

		snprintf(what, sizeof(what), fmt, a);
		mig_fail(d->err, ret, "%s", what);
		d->failed = true;
		/* Wake the control thread out of its read. */
		shutdown(tp_stream_fd(tp_session_control(d->p->session)),
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
	if (ret && ret != -ECONNRESET && ret != -ETIMEDOUT)
		pr_err("writing guest RAM: %s", strerror(-ret));
	return ret;
}

static int rx_pages(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_pages_hdr h;
	struct iovec iov = { r->buf, MIG_PAGES_FIXED };
	int ret;

	if (m->len < MIG_PAGES_FIXED)
		return -EPROTO;
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
	if (d->vm.copy && (uint64_t)h.count * h.page_size <= STAGE_BYTES) {
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
	for (uint32_t i = 0; i < h.count; i++)
		ut_bitmap_set(&d->received, d->vm.first[h.region] + r->idx[i]);
	return 0;
}

static int rx_small(struct receiver *r, const struct tp_msg *m)
{
	struct iovec iov = { r->buf, m->len };

	if (m->len > sizeof(r->buf))
		return -EPROTO;
	return m->len ? tp_recv_payload(r->st, &iov, 1) : 0;
}

static int rx_zero(struct receiver *r, const struct tp_msg *m)
{
	struct mig_dst *d = r->d;
	struct mig_zero z;
	int ret = rx_small(r, m);

	if (!ret)
		ret = mig_dec_zero(r->buf, m->len, &d->vm.layout, &z);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < z.npages; i++) {
		uint64_t g = d->vm.first[z.region] + z.first + i;

		if (!(z.bits[i / 8] & (1u << (i % 8))))
			continue;
		/* Fresh incoming RAM reads as zero; only pages that got
		 * data in an earlier round need clearing. */
		if (!ut_bitmap_test_and_clear(&d->received, g))
			continue;
		if (d->vm.copy)
			ret = gm_region_discard(&d->vm.map[z.region],
				(z.first + i) * d->vm.layout.r[z.region].page_size,
				d->vm.layout.r[z.region].page_size);
		else
			memset(mig_vm_page(&d->vm, z.region, z.first + i), 0,
			       d->vm.layout.r[z.region].page_size);
		if (ret)
			return ret;
	}
	return 0;
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
	for (uint32_t i = 0; i < n; i++) {
		const struct mig_dup *e = &r->dups[i];

		uint32_t psz = d->vm.layout.r[e->region].page_size;

		if (d->vm.copy && psz <= STAGE_BYTES) {
			ret = mig_vm_read(&d->vm, e->src_region, e->src_page,
					  r->stage, psz);
			if (!ret)
				ret = mig_vm_write(&d->vm, e->region, e->page,
						   r->stage, psz);
			if (ret)
				return ret;
		} else {
			memcpy(mig_vm_page(&d->vm, e->region, e->page),
			       mig_vm_page(&d->vm, e->src_region, e->src_page),
			       psz);
		}
		ut_bitmap_set(&d->received, d->vm.first[e->region] + e->page);
	}
	return 0;
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
		return (rd.flags & MIG_ROUND_FINAL) ? 1 : 0;
	case MIG_MSG_ERROR:
		ret = rx_small(r, m);
		if (!ret && !mig_dec_error(r->buf, m->len, &e))
			rx_fail(r, -e.code, "the source gave up: %s", e.msg);
		return -ECANCELED;
	default:
		pr_err("unexpected message 0x%x on a bulk stream", m->type);
		return -EPROTO;
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
		rx_fail(r, ret, "%s", "the source sent a malformed message");
	else if (ret != -ECANCELED)
		rx_fail(r, ret, "receiving guest pages: %s",
			tp_stream_strerror(r->st)[0] ? tp_stream_strerror(r->st)
						      : strerror(-ret));
	else
		rx_fail(r, ret, "%s", "cancelled");
	return NULL;
}

/* ---- the control stream ---- */

static void tell_source(struct mig_dst *d, int code, const char *msg)
{
	uint8_t buf[512];
	ssize_t n = mig_enc_error(buf, sizeof(buf), code, msg);

	if (n > 0)
		mig_send_msg(tp_session_control(d->p->session), MIG_MSG_ERROR,
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
	if (m.type != MIG_MSG_HELLO || mig_dec_hello(buf, m.len, &h))
		return mig_fail(err, -EPROTO, "the source sent no valid HELLO");
	if (h.ver_min > MIG_WIRE_VERSION || h.ver_max < MIG_WIRE_VERSION) {
		mig_fail(err, -EPROTONOSUPPORT, "the source speaks protocol "
			 "versions %u-%u, this destination %u", h.ver_min,
			 h.ver_max, MIG_WIRE_VERSION);
		tell_source(d, EPROTONOSUPPORT, err);
		return -EPROTONOSUPPORT;
	}
	if (!same_layout(&h.layout, &d->vm.layout) || h.nbulk != d->nbulk) {
		mig_fail(err, -EINVAL, "the source VM's RAM layout (%u regions, "
			 "%llu pages) does not match the incoming VM's (%u "
			 "regions, %llu pages)", h.layout.nr,
			 (unsigned long long)h.total_pages, d->vm.layout.nr,
			 (unsigned long long)d->vm.total_pages);
		tell_source(d, EINVAL, err);
		return -EINVAL;
	}
	n = mig_enc_welcome(buf, sizeof(buf), &(struct mig_welcome){
		MIG_WIRE_VERSION, h.features & MIG_FEATURES_V1 });
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
		d->rx[i].st = tp_session_bulk(d->p->session, i);
		if (d->vm.copy) {
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

/* Receives the state blob; *@blob is malloc'ed. */
static int recv_state(struct mig_dst *d, struct tp_stream *ctl, void **blob,
		      size_t *len, char *err)
{
	struct mig_error e;
	struct tp_msg m;
	struct iovec iov;
	int ret;

	ret = tp_recv_hdr(ctl, &m);
	if (ret)
		return mig_fail(err, ret, "the source went away before "
				"switchover: %s", tp_stream_strerror(ctl));
	if (m.type == MIG_MSG_ERROR) {
		uint8_t buf[512];

		iov = (struct iovec){ buf, m.len };
		if (m.len <= sizeof(buf) && !tp_recv_payload(ctl, &iov, 1) &&
		    !mig_dec_error(buf, m.len, &e))
			return mig_fail(err, -e.code, "the source gave up: %s",
					e.msg);
		return mig_fail(err, -EPROTO, "the source gave up");
	}
	if (m.type != MIG_MSG_STATE || !m.len || m.len > MIG_MAX_STATE)
		return mig_fail(err, -EPROTO, "expected the VM state, got "
				"message 0x%x of %llu bytes", m.type,
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

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
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
	ret = vml_client_resume(&d->vm.link);
	if (ret)
		return mig_fail(err, ret, "the incoming VM did not resume: %s",
				strerror(-ret));
	r.realtime_ns = realtime_ns();
	r.load_ns = ut_now_ns() - t0;
	r.cpu_ns = (ut_cpu_seconds() - cpu0) * 1e9;
	st->state_load_ms = r.load_ns / 1e6;
	st->cpu_s_dest = r.cpu_ns / 1e9;
	n = mig_enc_resumed(buf, sizeof(buf), &r);
	ret = mig_send_msg(ctl, MIG_MSG_RESUMED, buf, n);
	if (ret)
		pr_warn("could not tell the source the guest runs: %s",
			tp_stream_strerror(ctl));
	return 0;
}

int mig_dest_run(const struct mig_dest_params *p, struct mig_stats *st,
		 char err[MIG_ERR_LEN])
{
	struct mig_dst d = { .p = p, .err = err };
	struct tp_stream *ctl = tp_session_control(p->session);
	uint64_t t0 = ut_now_ns();
	double cpu0 = ut_cpu_seconds();
	bool resumed = false;
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
	if (!ret && (ret = ut_bitmap_init(&d.received, d.vm.total_pages)))
		mig_fail(err, ret, "out of memory");
	if (!ret)
		ret = welcome(&d, ctl, err);
	if (!ret && (ret = start_receivers(&d)))
		mig_fail(err, ret, "cannot start the receiver threads");
	if (!ret)
		ret = recv_state(&d, ctl, &blob, &len, err);
	if (ret) /* wake the receivers: the source is gone or gave up */
		for (unsigned int i = 0; i < d.nbulk && d.rx; i++)
			shutdown(tp_stream_fd(d.rx[i].st), SHUT_RDWR);
	rret = join_receivers(&d);
	if (!ret && rret)
		ret = mig_fail(err, rret, "receiving guest pages failed");
	if (!ret)
		ret = resume_guest(&d, ctl, blob, len, cpu0, st, err);
	resumed = !ret;
	if (resumed) {
		/* The source releases its VM now; DONE or a close ends it. */
		if (tp_recv(ctl, &m, NULL, 0) == 0 && m.type != MIG_MSG_DONE)
			pr_warn("unexpected message 0x%x after resume", m.type);
		snprintf(st->outcome, sizeof(st->outcome), "completed");
	} else if (d.vm.link.sock >= 0) {
		/* Nothing ran here: discard the incoming VM. */
		if (!d.failed || ret != -ECANCELED)
			tell_source(&d, ret < 0 ? -ret : EIO, err);
		vml_client_quit(&d.vm.link);
	}
	st->guest_bytes = d.vm.ram_bytes;
	st->nbulk = d.nbulk;
	st->total_s = (ut_now_ns() - t0) / 1e9;
	if (!resumed)
		st->cpu_s_dest = ut_cpu_seconds() - cpu0;
	free(blob);
	ut_bitmap_fini(&d.received);
	mig_vm_detach(&d.vm);
	pthread_cond_destroy(&d.cond);
	pthread_mutex_destroy(&d.lock);
	return ret;
}
