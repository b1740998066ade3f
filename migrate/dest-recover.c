// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The end of a destination's postcopy: waiting until every page is in
 * place (COMPLETE), and recovery from a lost source meanwhile.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

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

/* A source agent started anew (--recover) for a migration whose page
 * sizes differ offers its own layout: it is this migration's when its
 * units are ours, and it learns them from a WELCOME with our sizes. */
static int recover_units(struct mig_dst *d, struct tp_stream *ctl,
			 const struct mig_hello *h)
{
	struct mig_welcome w = { .version = MIG_WIRE_VERSION,
				 .features = MIG_FEAT_PAGESIZES |
					     (d->huge_units ?
					      MIG_FEAT_HUGE_UNITS : 0),
				 .nr = d->vm.nr };
	struct mig_layout wire;
	uint8_t buf[64 + 4 * MIG_MAX_REGIONS];
	ssize_t n;

	if (!(h->features & MIG_FEAT_PAGESIZES) ||
	    (d->huge_units && !(h->features & MIG_FEAT_HUGE_UNITS)) ||
	    !dst_same_regions(&h->layout, &d->vm.layout))
		return -EPROTO;
	for (uint32_t i = 0; i < w.nr; i++)
		w.page_size[i] = (uint32_t)d->vm.map[i].page_size;
	mig_layout_units(&h->layout, &w, &wire);
	if (!dst_same_layout(&wire, &d->vm.layout))
		return -EPROTO;
	n = mig_enc_welcome(buf, sizeof(buf), &w);
	return n < 0 ? (int)n : mig_send_msg(ctl, MIG_MSG_WELCOME, buf, n);
}

/* The reconnecting source's HELLO must be a recovery of this migration. */
static int recover_hello(struct mig_dst *d, struct tp_stream *ctl, struct ut_err *err)
{
	uint8_t buf[4096];
	struct mig_hello h;
	struct tp_msg m;
	int ret = tp_recv(ctl, &m, buf, sizeof(buf));

	if (ret)
		return ut_err_first(err, ret, "waiting for the reconnected source: %s",
				tp_stream_err(ctl)->msg);
	if (m.type != MIG_MSG_HELLO || mig_dec_hello(buf, m.len, &h) ||
	    !(h.features & MIG_FEAT_RECOVER) ||
	    h.nbulk != tp_session_nbulk(d->sess) ||
	    (!dst_same_layout(&h.layout, &d->vm.layout) &&
	     recover_units(d, ctl, &h))) {
		mig_tell_peer(d->sess, EINVAL, "not a recovery of this migration");
		return ut_err_first(err, -EPROTO, "a peer connected that does not "
				"recover this migration");
	}
	return 0;
}

/* The source is gone mid-postcopy. The guest keeps running here; a vCPU
 * that touches a missing page waits in the kernel (its fault stays
 * queued on the uffd) until a source reconnects and the page arrives. */
int dst_recover(struct mig_dst *d, struct mig_stats *st, struct ut_err *err)
{
	struct tp_session *ns = NULL;
	int ret;

	if (!d->p->reconnect)
		return -ECONNRESET;
	mig_phase_enter(&d->phase, MIG_PHASE_RECOVERING);
	pr_err("postcopy: lost the source (%s); faulting vCPUs wait for it "
	       "to reconnect", err->msg);
	dst_event_recovery(d, "lost", err->msg);
	dst_report(d);
	tp_session_shutdown(d->sess, TP_SHUT_ALL);
	dst_faulter_stop(d);
	dst_receivers_stop(d);
	pthread_mutex_lock(&d->meet.lock);
	d->meet.failed = false;
	d->meet.error = 0;
	d->meet.arrived = d->meet.finished = 0;
	pthread_mutex_unlock(&d->meet.lock);
	ut_err_clear(err);
	ret = d->p->reconnect(d->p->reconnect_arg, &ns, err);
	if (ret) {
		dst_event_recovery(d, "gave_up", err->msg);
		return ret;
	}
	if (d->own_sess)
		tp_session_destroy(d->sess);
	d->sess = ns;
	d->own_sess = true;
	d->nbulk = tp_session_nbulk(ns);
	ret = recover_hello(d, tp_session_control(ns), err);
	if (!ret && (ret = send_needs(d, tp_session_control(ns))))
		ut_err_first(err, ret, "telling the source what is missing: %s",
			 tp_stream_err(tp_session_control(ns))->msg);
	d->pushing = true;
	if (!ret && (ret = dst_receivers_start(d)))
		ut_err_first(err, ret, "cannot restart the receivers");
	d->ft.resend = true;
	if (!ret && (ret = dst_faulter_start(d)))
		ut_err_first(err, ret, "cannot restart the fault thread");
	if (!ret) {
		mig_phase_enter(&d->phase, MIG_PHASE_POSTCOPY);
		st->recoveries++;
		pr_warn("postcopy recovered: %llu pages outstanding",
			(unsigned long long)mig_faults_outstanding(&d->faults));
		dst_event_recovery(d, "reconnected", NULL);
	}
	return ret;
}

/* Every page pushed and every page asked for is in place: say so, with
 * the fault figures, and let the guest run on its own memory. */
int dst_finish_postcopy(struct mig_dst *d, struct mig_stats *st,
			   struct ut_err *err)
{
	struct mig_complete c = { 0 };
	struct tp_stream *ctl;
	uint8_t buf[1024];
	ssize_t len;
	int ret;

	dst_map_received(d);
	for (;;) {
		ret = dst_receivers_join(d);
		pthread_mutex_lock(&d->meet.lock);
		while (!ret && mig_faults_outstanding(&d->faults) &&
		       !d->meet.failed)
			if (mig_cond_wait_ms(&d->meet.cond, &d->meet.lock,
					     1000) == -ETIMEDOUT)
				dst_event_progress(d);
		if (!ret && d->meet.failed)
			ret = -ECONNRESET;
		pthread_mutex_unlock(&d->meet.lock);
		if (!ret)
			break;
		ut_err_first(err, ret, "receiving pushed pages failed");
		/* The VMM gone (a userfaultfd call on a dead mm): no source
		 * can bring pages to it, recovery would loop for ever. */
		if (ret == -ESRCH || d->meet.error == -ESRCH)
			return ut_err_set(err, -ESRCH, "the incoming VM's "
					  "process is gone (%s): nothing left "
					  "to migrate into", err->msg);
		ret = dst_recover(d, st, err);
		if (ret)
			return ret;
	}
	ctl = tp_session_control(d->sess);
	dst_faulter_stop(d);
	dst_uffd_release(d);
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
	return ret ? ut_err_first(err, ret, "telling the source we are complete: "
			      "%s", tp_stream_err(ctl)->msg) : 0;
}
