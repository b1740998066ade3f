// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's postcopy recovery: a lost session replaced by a new one,
 * and the destination's word on what it still lacks.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

uint64_t src_session_tx(struct tp_session *sess)
{
	struct tp_stream_stats ss;
	uint64_t total = 0;

	tp_stream_get_stats(tp_session_control(sess), &ss);
	total += ss.tx_bytes;
	tp_stream_get_stats(tp_session_urgent(sess), &ss);
	total += ss.tx_bytes;
	for (unsigned int i = 0; i < tp_session_nbulk(sess); i++) {
		tp_stream_get_stats(tp_session_bulk(sess, i), &ss);
		total += ss.tx_bytes;
	}
	return total;
}

/* After a reconnect: HELLO saying so; the destination answers with its
 * RESUMED, the pages it still needs, and RECOVERED. */
int src_recover_handshake(struct mig_src *s, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_hello h = {
		.ver_min = MIG_WIRE_VERSION, .ver_max = MIG_WIRE_VERSION,
		.features = MIG_FEATURES_V1 | MIG_FEAT_RECOVER |
			    MIG_FEAT_PAGESIZES | MIG_FEAT_HUGE_UNITS,
		.nbulk = s->nbulk, .total_pages = s->vm.total_pages,
		.layout = s->vm.layout,
	};
	uint8_t buf[MIG_ZERO_FIXED + 4096];
	struct mig_welcome w;
	struct mig_error e;
	struct mig_zero z;
	struct tp_msg m;
	ssize_t n = mig_enc_hello(buf, sizeof(buf), &h);
	int ret = n < 0 ? n : mig_send_msg(ctl, MIG_MSG_HELLO, buf, n);

	ut_bitmap_clear_all(&s->todo);
	while (!ret) {
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
		if (ret)
			break;
		if (m.type == MIG_MSG_RECOVERED)
			return 0;
		if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
			return ut_err_first(err, -e.code, "the destination refused "
					"to recover: %s", e.msg);
		if (m.type == MIG_MSG_RESUMED) {
			ret = mig_dec_resumed(buf, m.len, &s->resumed);
			s->resumed_seen = !ret;
		} else if (m.type == MIG_MSG_WELCOME) {
			/* A new agent: the units of the page sizes that differ,
			 * before any NEED counts them. */
			ret = mig_dec_welcome(buf, m.len, &h, &w);
			if (!ret && (ret = src_units_apply(s, &h.layout, &w,
							   err)))
				return ret;
		} else if (m.type == MIG_MSG_NEED &&
			   !(ret = mig_dec_zero(buf, m.len, &s->vm.layout, &z))) {
			for (uint64_t i = 0; i < z.npages; i++)
				if (z.bits[i / 8] & (1u << (i % 8)))
					ut_bitmap_set(&s->todo,
						      s->vm.first[z.region] +
						      z.first + i);
		} else if (!ret) {
			ret = -EPROTO;
		}
	}
	return ut_err_first(err, ret, "recovery handshake: %s",
			tp_stream_err(ctl)->msg[0] ? tp_stream_err(ctl)->msg :
						     strerror(-ret));
}

/* Replaces the session with a new one (reconnecting with backoff until the
 * recovery deadline), learns what the destination still needs, and
 * restarts the senders. The VM stays paused here meanwhile. */
int src_recover(struct mig_src *s, struct ut_err *err)
{
	uint32_t secs = s->p->recover_timeout_s ? s->p->recover_timeout_s : 60;
	uint64_t now = ut_now_ns(), left = ut_bitmap_count(&s->todo);
	uint64_t deadline, wait = 200;
	struct tp_session *ns = NULL;
	int ret;

	if (!s->p->reconnect)
		return -ECONNRESET;
	if (atomic_load(&s->peer_broken))
		return -EPROTO;
	if (!s->recover_by || left < s->recover_left)
		s->recover_by = now + secs * 1000000000ULL;
	s->recover_left = left;
	if (now >= s->recover_by) {
		ut_err_set(err, -ETIMEDOUT, "postcopy made no progress in %u s "
			   "of reconnections (%u recoveries, %llu pages still "
			   "to send; last: %s)", secs, s->st->recoveries,
			   (unsigned long long)left, err->msg);
		src_event_recovery(s, "gave_up", err->msg);
		return -ETIMEDOUT;
	}
	deadline = s->recover_by;
	mig_phase_enter(&s->phase, MIG_PHASE_RECOVERING);
	pr_err("postcopy connection lost (%s); the VM waits paused here, "
	       "reconnecting for up to %.0f s", err->msg,
	       (deadline - now) / 1e9);
	src_event_recovery(s, "lost", err->msg);
	tp_session_shutdown(s->sess, TP_SHUT_ALL);
	src_urgent_stop(s);
	src_senders_stop(s);
	pthread_mutex_lock(&s->rd.lock);
	s->rd.error = 0;
	pthread_mutex_unlock(&s->rd.lock);
	/* The lost session's abort is over: left set, every sender on the
	 * new one stops at its first message (-ECANCELED), and recovery
	 * repeats for ever, a page or two at a time. */
	atomic_store(&s->rd.abort, false);
	s->bulk_cut = false;
	do {
		ut_err_clear(err);
		ret = s->p->reconnect(s->p->reconnect_arg, &ns, err);
		if (!ret)
			break;
		usleep(wait * 1000);
		wait = wait < 2000 ? wait * 2 : 2000;
	} while (ut_now_ns() < deadline);
	if (ret) {
		ut_err_set(err, -ETIMEDOUT, "could not reconnect within %u s "
			   "(%s)", secs, err->msg);
		src_event_recovery(s, "gave_up", err->msg);
		return -ETIMEDOUT;
	}
	s->old_tx += src_session_tx(s->sess);
	if (s->own_sess)
		tp_session_destroy(s->sess);
	s->sess = ns;
	s->own_sess = true;
	ut_err_clear(err);
	ret = src_recover_handshake(s, err);
	if (!ret && (ret = src_senders_start(s)))
		ut_err_first(err, ret, "cannot restart the senders");
	if (!ret) {
		mig_phase_enter(&s->phase, MIG_PHASE_POSTCOPY);
		s->st->recoveries++;
		pr_warn("postcopy recovered: %llu pages still to send",
			(unsigned long long)ut_bitmap_count(&s->todo));
		src_event_recovery(s, "reconnected", NULL);
	}
	return ret;
}
