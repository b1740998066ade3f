// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination's control stream, on the main thread: HELLO/WELCOME,
 * the rounds' control messages (POSTCOPY, DISCARD, ERROR, KEEPALIVE) up
 * to the state blob, the commitment point, and the resume.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

bool dst_same_layout(const struct mig_layout *a, const struct mig_layout *b)
{
	if (!dst_same_regions(a, b))
		return false;
	for (uint32_t i = 0; i < a->nr; i++)
		if (a->r[i].page_size != b->r[i].page_size)
			return false;
	return true;
}

bool dst_same_regions(const struct mig_layout *a, const struct mig_layout *b)
{
	if (a->nr != b->nr)
		return false;
	for (uint32_t i = 0; i < a->nr; i++)
		if (a->r[i].gpa != b->r[i].gpa || a->r[i].size != b->r[i].size)
			return false;
	return true;
}

/* Pages no wire page holds (1 GiB): in postcopy they are assembled from
 * units (MIG_FEAT_HUGE_UNITS, minor mode), which only a region whose
 * page sizes differ or a source offering HUGE_UNITS sends. Whether
 * every such region here gets them (*@ask: some region wants the
 * feature). */
static bool giant_units(const struct mig_dst *d, const struct mig_hello *h,
			bool *ask)
{
	bool ok = true;

	*ask = false;
	for (uint32_t i = 0; i < d->vm.layout.nr; i++) {
		uint32_t psz = d->vm.layout.r[i].page_size;

		if (psz <= MIG_WIRE_PAGE_MAX || psz != h->layout.r[i].page_size)
			continue;
		*ask = true;
		ok &= (h->features & MIG_FEAT_HUGE_UNITS) != 0;
	}
	return ok;
}

/* What this destination accepts of @h's offer. */
static uint64_t accepted(const struct mig_dst *d, const struct mig_hello *h,
			 bool sizes_differ)
{
	uint64_t f = h->features & (MIG_FEATURES_V1 | MIG_FEAT_PLACEMENT |
				    MIG_FEAT_DISCARD_EARLY |
				    MIG_FEAT_KSM_PAGES |
				    MIG_FEAT_HEAT_REVISE |
				    MIG_FEAT_ROUND_ACK);
	bool ask, units = giant_units(d, h, &ask);

	if (ask && units && d->minor && d->can_postcopy)
		f |= MIG_FEAT_HUGE_UNITS | MIG_FEAT_PAGESIZES;
	else if (ask && d->can_postcopy)
		pr_info("no postcopy: 1 GiB pages at both ends, and the source "
			"cannot send them in 4 KiB units (an older Ferry)");
	if (!d->can_postcopy || (ask && !(f & MIG_FEAT_HUGE_UNITS)))
		f &= ~MIG_FEAT_POSTCOPY;
	if (d->vm.copy)
		f &= ~MIG_FEAT_SUBPAGES;
	if (!d->keep)
		f &= ~MIG_FEAT_SUBPAGES_KEEP;
	if (!d->discard_early)
		f &= ~MIG_FEAT_DISCARD_EARLY;
	if (!dst_ksm_wanted(d))
		f &= ~MIG_FEAT_KSM_PAGES;
	/* Only a tiered plan follows the heat. */
	if (d->p->placement.kind != MIG_PLACE_TIERED)
		f &= ~MIG_FEAT_HEAT_REVISE;
	if (sizes_differ)
		f |= MIG_FEAT_PAGESIZES;
	return f;
}

/* The plan is made before WELCOME, so that one that cannot fit is the
 * answer to HELLO; the pages are bound before any receiver runs. The
 * plan and the host picture count the backing's pages; the units of the
 * wire apply from the first page on. */
static int welcome_placed(struct mig_dst *d, struct tp_stream *ctl,
			  const struct mig_hello *h, struct ut_err *err)
{
	struct mig_topology *t = malloc(sizeof(*t));
	bool differ = !dst_same_layout(&h->layout, &d->vm.layout);
	struct mig_welcome w = { .version = MIG_WIRE_VERSION };
	struct mig_layout wire;
	uint8_t buf[64 + 4 * MIG_MAX_REGIONS];
	ssize_t n;
	int ret;

	if (!t)
		return ut_err_first(err, -ENOMEM, "out of memory");
	ret = mig_place_begin(&d->place, &d->p->placement, &d->vm, &d->hp, t,
			      err);
	if (ret) {
		mig_tell_peer(d->sess, -ret, err->msg);
		goto out;
	}
	/* Sub-pages are written in place, not through write(2); kept
	 * huge pages need a page cache the guest cannot see (MINOR). */
	d->keep = d->minor && !d->vm.copy &&
		  (h->features & MIG_FEAT_SUBPAGES_KEEP);
	/* Anonymous RAM is dropped by its VMM, over the VM link, which is
	 * the main thread's: not by the receivers in a precopy round. */
	d->discard_early = (h->features & MIG_FEAT_DISCARD_EARLY) &&
			   !d->vm.anon;
	w.features = accepted(d, h, differ);
	d->ksm.source = w.features & MIG_FEAT_KSM_PAGES;
	d->heat_revise = w.features & MIG_FEAT_HEAT_REVISE;
	d->round_ack = w.features & MIG_FEAT_ROUND_ACK;
	w.nr = d->vm.layout.nr;
	for (uint32_t i = 0; i < w.nr; i++)
		w.page_size[i] = d->vm.layout.r[i].page_size;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	ret = n < 0 ? (int)n : mig_send_msg(ctl, MIG_MSG_WELCOME, buf, n);
	if (ret) {
		ut_err_first(err, ret, "answering HELLO: %s",
			 tp_stream_err(ctl)->msg);
		goto out;
	}
	ret = mig_place_dst_handshake(&d->place, ctl,
				      h->features & MIG_FEAT_PLACEMENT, t,
				      &d->vm, err);
	if (!ret && mig_layout_units(&h->layout, &w, &wire)) {
		d->huge_units = w.features & MIG_FEAT_HUGE_UNITS;
		for (uint32_t i = 0; i < wire.nr; i++) {
			if (wire.r[i].page_size == h->layout.r[i].page_size &&
			    w.page_size[i] == h->layout.r[i].page_size)
				continue;
			pr_info("region %u: %u KiB pages at the source, %u KiB "
				"here: received in 4 KiB units", i,
				h->layout.r[i].page_size >> 10,
				w.page_size[i] >> 10);
			d->unit_bytes += h->layout.r[i].size;
		}
		mig_vm_use_units(&d->vm, &wire);
	}
out:
	free(t);
	return ret;
}

int dst_welcome(struct mig_dst *d, struct tp_stream *ctl, struct ut_err *err)
{
	uint8_t buf[4096];
	struct mig_hello h;
	struct tp_msg m;
	int ret;

	ret = tp_recv(ctl, &m, buf, sizeof(buf));
	if (ret)
		return ut_err_first(err, ret, "waiting for the source's HELLO: %s",
				tp_stream_err(ctl)->msg);
	if (m.type != MIG_MSG_HELLO)
		return ut_err_first(err, -EPROTO, "the source sent no valid HELLO "
				"(message 0x%x)", m.type);
	if (mig_dec_hello(buf, m.len, &h))
		return ut_err_first(err, -EPROTO, "the source sent no valid HELLO "
				"(%s)", mig_wire_reason());
	if (h.ver_min > MIG_WIRE_VERSION || h.ver_max < MIG_WIRE_VERSION) {
		ut_err_first(err, -EPROTONOSUPPORT, "the source speaks protocol "
			 "versions %u-%u, this destination %u", h.ver_min,
			 h.ver_max, MIG_WIRE_VERSION);
		mig_tell_peer(d->sess, EPROTONOSUPPORT, err->msg);
		return -EPROTONOSUPPORT;
	}
	if (h.nbulk != d->nbulk) {
		ut_err_first(err, -EPROTO, "the source's HELLO announces %u bulk "
			 "streams, its session has %u", h.nbulk, d->nbulk);
		mig_tell_peer(d->sess, EPROTO, err->msg);
		return -EPROTO;
	}
	if (!dst_same_regions(&h.layout, &d->vm.layout)) {
		ut_err_first(err, -EINVAL, "the source VM's RAM layout (%u regions, "
			 "%llu pages) does not match the incoming VM's (%u "
			 "regions, %llu pages)", h.layout.nr,
			 (unsigned long long)h.total_pages, d->vm.layout.nr,
			 (unsigned long long)d->vm.total_pages);
		mig_tell_peer(d->sess, EINVAL, err->msg);
		return -EINVAL;
	}
	if (!dst_same_layout(&h.layout, &d->vm.layout) &&
	    !(h.features & MIG_FEAT_PAGESIZES)) {
		ut_err_first(err, -EINVAL, "the source VM's RAM has other page "
			 "sizes than the incoming VM's, and the source cannot "
			 "send them in 4 KiB units (an older Ferry)");
		mig_tell_peer(d->sess, EINVAL, err->msg);
		return -EINVAL;
	}
	return welcome_placed(d, ctl, &h, err);
}

/* POSTCOPY: every receiver must stop at its marker before the discards
 * are applied, or a pushed page could be dropped after it landed. */
static int enter_postcopy(struct mig_dst *d, struct ut_err *err)
{
	if (!d->can_postcopy)
		return ut_err_first(err, -EPROTO, "the source switched to postcopy "
				"that was not agreed");
	pthread_mutex_lock(&d->meet.lock);
	while (d->meet.switched < d->nbulk && !d->meet.failed)
		pthread_cond_wait(&d->meet.cond, &d->meet.lock);
	pthread_mutex_unlock(&d->meet.lock);
	return d->meet.failed ? -ECANCELED : 0;
}

/* Advice @advice for the pages of @z (a ZERO-shaped bitmap) of an
 * anonymous region: the VMM applies it to its own memory (ADVISE), in
 * runs of consecutive pages. */
int dst_advise_bits(struct mig_dst *d, const struct mig_zero *z,
		    uint32_t advice, uint32_t *nr_ranges)
{
	struct vml_range *rg = malloc((z->npages / 2 + 1) * sizeof(*rg));
	struct vml_advise a = { .region = z->region, .advice = advice,
				.ranges = rg };
	uint32_t psz = d->vm.layout.r[z->region].page_size;
	int ret;

	if (!rg)
		return -ENOMEM;
	for (uint64_t i = 0, j; i < z->npages; i = j) {
		if (!(z->bits[i / 8] & (1u << (i % 8)))) {
			j = i + 1;
			continue;
		}
		for (j = i + 1; j < z->npages &&
		     (z->bits[j / 8] & (1u << (j % 8))); j++)
			;
		rg[a.nr++] = (struct vml_range){ (z->first + i) * psz,
						 (j - i) * psz };
	}
	ret = a.nr ? vml_client_advise(&d->vm.link, &a) : 0;
	if (nr_ranges)
		*nr_ranges = a.nr;
	free(rg);
	return ret;
}

/* DISCARD: pages the source resends; drop ours so that a touch faults. */
static int apply_discard(struct mig_dst *d, const uint8_t *buf, size_t len,
			 struct ut_err *err)
{
	struct mig_zero z;
	int ret = mig_dec_zero(buf, len, &d->vm.layout, &z);
	bool anon;

	if (ret)
		return ut_err_first(err, ret, "the source sent a malformed DISCARD");
	anon = d->vm.map[z.region].fd < 0;
	ret = dst_discard(d, &z);
	return ret ? ut_err_first(err, ret, "dropping a page failed%s%s",
				  anon ? ": " : "",
				  anon ? vml_strerror(ret) : "") : 0;
}

static int recv_small(struct tp_stream *ctl, const struct tp_msg *m,
		      uint8_t *buf, size_t cap)
{
	struct iovec iov = { buf, m->len };

	if (m->len > cap)
		return -EPROTO;
	return m->len ? tp_recv_payload(ctl, &iov, 1) : 0;
}

/* Waits until the control stream has something to read, the operator
 * cancels (-ECANCELED), or a receiver failed (its -errno, its reason
 * in @err). Waits at most a silence the source's keepalives never leave;
 * tp_recv_hdr() then applies the stream's own timeout. */
static int wait_ctl(struct mig_dst *d, struct tp_stream *ctl, struct ut_err *err)
{
	struct pollfd pfd[3] = { { tp_stream_fd(ctl), POLLIN, 0 },
				 { d->meet.wake_fd, POLLIN, 0 },
				 { d->p->cancel ? d->p->cancel->fd : -1,
				   POLLIN, 0 } };
	int failed = 0;

	if (!tp_stream_pending(ctl))
		while (poll(pfd, 3, 10000) < 0 && errno == EINTR)
			;
	pthread_mutex_lock(&d->meet.lock);
	if (d->meet.failed)
		failed = d->meet.error ? d->meet.error : -ECANCELED;
	pthread_mutex_unlock(&d->meet.lock);
	if (failed)	/* the receiver's code: the source is told it */
		return failed;
	if (!mig_cancel_requested(d->p->cancel, d->why, sizeof(d->why)))
		return 0;
	d->cancelled = true;
	return ut_err_first(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the incoming VM was discarded", d->why);
}

/* The state is here: from now on the guest runs here, no cancel. */
static int commit_state(struct mig_dst *d, bool postcopy, struct ut_err *err)
{
	if (!mig_cancel_commit(d->p->cancel, postcopy ?
			       "the guest runs here (postcopy in progress)" :
			       "the guest resumes here (precopy)"))
		return 0;
	mig_cancel_requested(d->p->cancel, d->why, sizeof(d->why));
	d->cancelled = true;
	return ut_err_first(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the incoming VM was discarded", d->why);
}

/* HEAT in precopy (MIG_FEAT_HEAT_REVISE): the plan revised with it. */
static int revise(struct mig_dst *d, struct tp_stream *ctl,
		  const struct tp_msg *m, struct ut_err *err)
{
	size_t cap = MIG_HEAT_FIXED + 4 * d->vm.layout.nr;
	struct mig_heat h;
	struct iovec iov;
	uint8_t *buf;
	int ret;

	for (uint32_t r = 0; r < d->vm.layout.nr; r++)
		cap += mig_chunks(&d->vm.layout, r);
	if (m->len > cap)
		return ut_err_first(err, -EPROTO, "a HEAT of %llu bytes, more "
				"than the guest's chunks take",
				(unsigned long long)m->len);
	buf = malloc(m->len ? m->len : 1);
	if (!buf)
		return ut_err_first(err, -ENOMEM, "out of memory");
	iov = (struct iovec){ buf, m->len };
	ret = m->len ? tp_recv_payload(ctl, &iov, 1) : 0;
	if (ret)
		ut_err_first(err, ret, "receiving HEAT: %s",
			     tp_stream_err(ctl)->msg);
	else if (mig_dec_heat(buf, m->len, &d->vm.layout, &h))
		ret = ut_err_first(err, -EPROTO, "the source sent a malformed "
				   "HEAT (%s)", mig_wire_reason());
	else
		ret = mig_place_revise(&d->place, &h, &d->vm, &d->received,
				       err);
	free(buf);
	return ret;
}

/* After telling the source we cancelled: wait (bounded) for its answer
 * or its close, skipping whatever it sent meanwhile, so that the
 * receivers' streams closing cannot overtake the reason. */
void dst_linger(struct tp_stream *ctl)
{
	struct tp_msg m;

	tp_stream_set_timeout(ctl, 3000);
	while (!tp_recv_hdr(ctl, &m) && m.type != MIG_MSG_ERROR &&
	       !tp_recv_skip(ctl, m.len))
		;
}

/* Serves the control stream until the state blob (*@blob, malloc'ed)
 * arrives; *@postcopy tells whether the source switched to postcopy. */
int dst_recv_state(struct mig_dst *d, struct tp_stream *ctl, void **blob,
		      size_t *len, bool *postcopy, struct ut_err *err)
{
	uint8_t buf[MIG_ZERO_FIXED + 4096];
	struct mig_error e;
	struct tp_msg m;
	struct iovec iov;
	int ret;

	for (;;) {
		dst_report(d);
		dst_ksm_flush(d);
		ret = wait_ctl(d, ctl, err);
		if (ret)
			return ret;
		ret = tp_recv_hdr(ctl, &m);
		if (ret)
			return ut_err_first(err, ret, "the source went away before "
					"switchover: %s", tp_stream_err(ctl)->msg);
		if (m.type == MIG_MSG_STATE && (ret = commit_state(d, *postcopy, err)))
			return ret;
		if (m.type == MIG_MSG_STATE)
			break;
		if (m.type == MIG_MSG_KEEPALIVE && !m.len)
			continue;
		if (m.type == MIG_MSG_HEAT && d->heat_revise && !*postcopy) {
			if ((ret = revise(d, ctl, &m, err)))
				return ret;
			continue;
		}
		ret = recv_small(ctl, &m, buf, sizeof(buf));
		if (ret)
			return ut_err_first(err, ret, "control message 0x%x: %s",
					m.type, tp_stream_err(ctl)->msg);
		if (m.type == MIG_MSG_ERROR) {
			d->peer_cancelled = !mig_dec_error(buf, m.len, &e) &&
					    e.code == ECANCELED;
			if (d->peer_cancelled)
				return ut_err_first(err, -ECANCELED, "the source %s "
						"before the switchover: the "
						"incoming VM was discarded",
						e.msg);
			if (!mig_dec_error(buf, m.len, &e))
				return ut_err_first(err, -e.code, "the source gave "
						"up: %s", e.msg);
			return ut_err_first(err, -EPROTO, "the source gave up with "
					"a malformed ERROR (%s)",
					mig_wire_reason());
		} else if (m.type == MIG_MSG_POSTCOPY) {
			*postcopy = true;
			ret = enter_postcopy(d, err);
		} else if (m.type == MIG_MSG_KSM && !*postcopy) {
			ret = dst_ksm_source(d, buf, m.len, err);
		} else if (m.type == MIG_MSG_DISCARD && *postcopy) {
			ret = apply_discard(d, buf, m.len, err);
		} else {
			ret = ut_err_first(err, -EPROTO, "unexpected control message "
				       "0x%x before the state", m.type);
		}
		if (ret)
			return ret;
	}
	if (!m.len || m.len > MIG_MAX_STATE)
		return ut_err_first(err, -EPROTO, "a VM state of %llu bytes",
				(unsigned long long)m.len);
	*blob = malloc(m.len);
	if (!*blob)
		return ut_err_first(err, -ENOMEM, "out of memory for the state");
	*len = m.len;
	iov = (struct iovec){ *blob, m.len };
	ret = tp_recv_payload(ctl, &iov, 1);
	if (ret)
		return ut_err_first(err, ret, "receiving the VM state: %s",
				tp_stream_err(ctl)->msg);
	return 0;
}

/* Load the state, run the guest, say so. */
int dst_resume_guest(struct mig_dst *d, struct tp_stream *ctl,
			const void *blob, size_t len, double cpu0,
			struct mig_stats *st, struct ut_err *err)
{
	struct mig_resumed r;
	uint8_t buf[64];
	uint64_t t0 = ut_now_ns(), t1, t2;
	ssize_t n;
	int ret;

	ret = vml_client_load_state(&d->vm.link, blob, len);
	if (ret)
		return ut_err_first(err, ret, "the incoming VM refused the state: "
				"%s", vml_strerror(ret));
	t1 = ut_now_ns();
	/* Nothing but the VMM touched guest RAM yet: QEMU's load reads it
	 * (post-load hooks), and in postcopy those faults are served. */
	st->faults_before_resume = atomic_load(&d->faults.nlat);
	ret = vml_client_resume(&d->vm.link);
	if (ret)
		return ut_err_first(err, ret, "the incoming VM did not resume: %s",
				vml_strerror(ret));
	r.realtime_ns = mig_realtime_ns();
	t2 = ut_now_ns();
	r.load_ns = t2 - t0;
	st->state_bytes = len;
	st->load_ms = (t1 - t0) / 1e6;
	st->resume_ms = (t2 - t1) / 1e6;
	r.cpu_ns = (ut_cpu_seconds() - cpu0) * 1e9;
	st->state_load_ms = r.load_ns / 1e6;
	st->cpu_s_dest = r.cpu_ns / 1e9;
	d->resumed = r;
	n = mig_enc_resumed(buf, sizeof(buf), &r);
	ret = mig_send_msg(ctl, MIG_MSG_RESUMED, buf, n);
	if (ret)
		pr_warn("could not tell the source the guest runs: %s",
			tp_stream_err(ctl)->msg);
	return 0;
}
