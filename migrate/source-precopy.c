// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's precopy rounds: the main thread publishes each round to
 * the senders, watches the control stream and the cancel request while
 * they work, sums their counts, and asks the convergence policy
 * (policy.c) after every round whether to go on, switch over, switch to
 * postcopy or cancel.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <poll.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

static void report(struct mig_src *s, uint32_t round, uint64_t total_pages,
		   const struct mig_round_stats *last, bool final)
{
	struct mig_progress pr = { .round = round, .final = final };
	uint64_t avg_page = s->vm.ram_bytes / s->vm.total_pages;
	uint64_t now = ut_now_ns(), left;

	if (!s->p->progress)
		return;
	/* Senders clear a page's bit as they take it: what is set is what
	 * this round has still to send. */
	left = ut_bitmap_count(&s->todo);
	pr.phase = mig_phase_name(s->phase);
	pr.round_bytes_total = total_pages * avg_page;
	pr.round_bytes_done = (total_pages > left ? total_pages - left : 0) *
			      avg_page;
	pr.pages_left = left;
	pr.bytes_sent = atomic_load(&s->wire_bytes);
	pr.bytes_data = s->st->bytes_data;
	pr.bytes_zero = s->st->bytes_zero;
	pr.bytes_dup = s->st->bytes_dup;
	pr.throughput_mibs = pr.bytes_sent / (double)UT_MiB /
			     ((now - s->start_ns) / 1e9);
	if (now > s->steer.round_t0 + 1000000 && s->steer.round_t0)
		pr.round_rate_mibs = (pr.bytes_sent - s->steer.round_wire0) /
				     (double)UT_MiB /
				     ((now - s->steer.round_t0) / 1e9);
	if (last) {
		pr.dirty_rate_mibs = last->dirty_rate_mibs;
		pr.predicted_downtime_ms = last->predicted_downtime_ms;
	}
	pr.downtime_limit_ms = s->steer.downtime_ms;
	pr.bandwidth_limit = atomic_load(&s->steer.bandwidth);
	pr.pages_requested = atomic_load(&s->urg.requests) +
			     s->st->pages_requested;
	pr.recoveries = s->st->recoveries;
	pr.streams = s->nbulk;
	s->p->progress(&pr, s->p->progress_arg);
}

/* The control stream is quiet while the bulk streams work; a word every
 * second keeps the destination's control timeout from firing on a long
 * round. Only this (the main) thread uses the control stream. */
static void keepalive(struct mig_src *s)
{
	uint64_t now = ut_now_ns();

	if (now - s->last_keepalive < 1000000000ULL)
		return;
	s->last_keepalive = now;
	mig_send_msg(tp_session_control(s->sess), MIG_MSG_KEEPALIVE, NULL, 0);
}

/* How long senders get to stop at a message boundary once a round is
 * aborted, before their streams are cut under them. */
#define ABORT_GRACE_NS (2 * 1000000000ULL)

/* Stops the round: the senders stop at their next message, or, if one is
 * stuck on a peer that does not read, their streams are cut after a
 * grace period. The control stream stays up to tell the destination why. */
static void abort_round(struct mig_src *s, int code)
{
	pthread_mutex_lock(&s->rd.lock);
	if (!s->rd.error)
		s->rd.error = code;
	pthread_mutex_unlock(&s->rd.lock);
	if (!atomic_exchange(&s->rd.abort, true))
		s->abort_ns = ut_now_ns();
	if (!s->bulk_cut && ut_now_ns() - s->abort_ns > ABORT_GRACE_NS) {
		tp_session_shutdown(s->sess, TP_SHUT_BULK);
		s->bulk_cut = true;
	}
}

/* Under s->rd.lock: the operator's reason, once, as the engine's reason. */
int src_cancelled(struct mig_src *s, struct ut_err *err)
{
	s->cancelled = true;
	return ut_err_first(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the VM runs here", s->why);
}

/* Under s->rd.lock (or with the senders done): the destination's ERROR
 * @e becomes the engine's reason, in place of a broken stream's, which
 * is what its failure left us. Returns its -errno. */
static int take_peer_error(struct mig_src *s, const struct mig_error *e)
{
	int ret = -e->code;

	/* Before RESUMED: the guest never ran there. */
	s->dest_discarded = !s->resumed_seen;
	s->dest_cancelled = e->code == ECANCELED;
	s->dest_ret = ret ? ret : -ECANCELED;
	if (s->rd.error == -EPIPE || s->rd.error == -ECONNRESET ||
	    s->rd.error == -ESHUTDOWN) {
		ut_err_clear(s->rd.err);
		s->rd.error = ret;
	}
	if (s->dest_cancelled)
		return ut_err_first(s->rd.err, ret, "the destination %.150s before "
				"the switchover: the VM runs here", e->msg);
	return ut_err_first(s->rd.err, ret, "the destination failed: %.200s",
			e->msg);
}

/* Reads what the destination sent on the control stream while the main
 * thread was busy elsewhere: RESUMED (postcopy), KEEPALIVE, or ERROR,
 * which stops the migration. Returns 0 or -errno, with @err filled under
 * s->rd.lock (senders write it too). */
int src_poll_dest(struct mig_src *s)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct pollfd pfd = { tp_stream_fd(ctl), POLLIN, 0 };
	uint8_t buf[512];
	struct mig_error e;
	struct tp_msg m;
	unsigned int nmsg = 0;
	int ret = 0;

	/* Bounded, so that a destination flooding the control stream with
	 * KEEPALIVEs cannot hold the rounds (and their deadline) still. */
	while (!ret && nmsg++ < 64 && (tp_stream_pending(ctl) ||
			(poll(&pfd, 1, 0) == 1 && pfd.revents))) {
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
		pthread_mutex_lock(&s->rd.lock);
		if (ret) {
			ut_err_first(s->rd.err, ret, "the destination went away: %s",
				 tp_stream_err(ctl)->msg);
		} else if (m.type == MIG_MSG_ERROR &&
			   !mig_dec_error(buf, m.len, &e)) {
			ret = take_peer_error(s, &e);
		} else if (m.type == MIG_MSG_RESUMED && s->committed) {
			/* What follows (COMPLETE) is src_push()'s to read. */
			ret = mig_dec_resumed(buf, m.len, &s->resumed);
			s->resumed_seen = !ret;
			pthread_mutex_unlock(&s->rd.lock);
			break;
		} else if (m.type != MIG_MSG_KEEPALIVE) {
			ret = ut_err_first(s->rd.err, -EPROTO, "the destination sent "
				       "control message 0x%x mid-round",
				       m.type);
		}
		pthread_mutex_unlock(&s->rd.lock);
	}
	return ret;
}

/* A sender whose stream broke usually lost it because the destination
 * failed and closed it: the reason it sent on the control stream, if one
 * comes within a second, is the one worth giving, with its code. */
static int prefer_peer_reason(struct mig_src *s, int ret)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct pollfd pfd = { tp_stream_fd(ctl), POLLIN, 0 };
	uint8_t buf[512];
	struct mig_error e;
	struct tp_msg m;

	if (ret != -EPIPE && ret != -ECONNRESET && ret != -ESHUTDOWN)
		return ret;
	if (s->dest_discarded || s->cancelled || s->committed)
		return ret;
	while ((tp_stream_pending(ctl) || poll(&pfd, 1, 1000) == 1) &&
	       !tp_recv(ctl, &m, buf, sizeof(buf))) {
		if (m.type == MIG_MSG_KEEPALIVE)
			continue;
		if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
			ret = take_peer_error(s, &e);
		break;
	}
	return ret;
}

/* Between the waits of a round: a cancel before the commitment, or a
 * word from the destination, stops it. */
static void watch_round(struct mig_src *s)
{
	int ret = 0;

	if (s->cancelled || s->dest_discarded) {
		/* the destination's own code, which its reason goes with */
		abort_round(s, s->cancelled ? -ECANCELED : s->dest_ret);
		return;
	}
	src_steer(s);
	if (!s->committed &&
	    mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why))) {
		pthread_mutex_lock(&s->rd.lock);
		ret = src_cancelled(s, s->rd.err);
		pthread_mutex_unlock(&s->rd.lock);
	} else if (!s->resumed_seen) {
		ret = src_poll_dest(s);
	}
	if (ret)
		abort_round(s, ret);
}

/*
 * auto's early look into round 0 (policy.c mig_policy_early): once, as
 * soon as the round has run MIG_POLICY_EARLY_S, the bytes the guest has
 * written so far against those sent; where the guest writes too fast
 * for precopy to pay, the round is cut and postcopy follows. A huge page
 * tracked whole counts whole however little of it was written: its
 * sub-page deltas are cheap on the wire, but the paused final round
 * copies and hashes every dirty one (about 0.25 ms a 2 MiB page here),
 * so a guest that dirties that many huge pages that fast cannot
 * converge to a short pause (bench hugetlb-2m: precopy 48-60 ms of
 * downtime and 0.87-1.03 s, postcopy 5.5-8.6 ms and 0.38-0.55 s).
 */
static void early_look(struct mig_src *s, uint64_t t0)
{
	struct mig_early_stats *e = &s->st->early;
	struct mig_early_input in;
	struct mig_verdict v;
	int64_t dirty;

	if (e->looked || !s->pol || s->pol->mode != MIG_MODE_AUTO ||
	    !s->can_postcopy || atomic_load(&s->rd.cut))
		return;
	in.elapsed_s = (ut_now_ns() - t0) / 1e9;
	if (in.elapsed_s < MIG_POLICY_EARLY_S)
		return;
	dirty = gm_dirty_peek(s->dirty);
	e->looked = true;
	if (dirty < 0) {
		/* the round's harvest will say what went wrong */
		e->at_s = in.elapsed_s;
		e->error = (int)dirty;
		return;
	}
	in.dirty_bytes = (double)dirty;
	in.sent_bytes = (double)(atomic_load(&s->wire_bytes) -
				 s->steer.round_wire0);
	v = mig_policy_early(s->pol, &in);
	*e = (struct mig_early_stats){
		.looked = true, .at_s = in.elapsed_s,
		.dirty_bytes = (uint64_t)dirty,
		.sent_bytes = (uint64_t)in.sent_bytes,
		.cut = v.decision == MIG_DECIDE_POSTCOPY,
	};
	if (!e->cut)
		return;
	pr_info("round 0: the guest dirtied %.1f MiB%s while %.1f MiB were "
		"sent (%.0f MiB/s): switching to postcopy",
		in.dirty_bytes / UT_MiB,
		gm_dirty_pages(s->dirty) * 4096 != s->vm.ram_bytes ?
		" (huge pages counted whole)" : "",
		in.sent_bytes / UT_MiB, v.dirty_rate_mibs);
	atomic_store(&s->rd.cut, true);
}

/* Sends the pages in s->todo as round @round; fills @rs. */
int src_run_round(struct mig_src *s, uint32_t round, uint32_t flags,
		     struct mig_round_stats *rs, const struct mig_round_stats *prev)
{
	uint64_t t0 = ut_now_ns(), total = ut_bitmap_count(&s->todo);
	struct mig_inject *in = s->p->inject;
	int ret;

	if (in && mig_inject_hit(in, &in->rounds, in->src_cut_round))
		tp_session_shutdown(s->sess, TP_SHUT_ALL);

	/* A plain precopy round after postcopy was asked for sends
	 * nothing: the switch follows. */
	atomic_store(&s->rd.cut, !flags && s->steer.postcopy_asked);
	if (!flags)
		src_event_round_begin(s, round, total);
	else
		s->steer.round_t0 = 0;
	/* What `ferry ctl status` says agrees with the round_begin event
	 * from here on, not only after the first 250 ms tick. */
	report(s, round, total, prev, flags & MIG_ROUND_FINAL);
	pthread_mutex_lock(&s->rd.lock);
	atomic_store(&s->rd.cursor, 0);
	atomic_store(&s->rd.pages_done, 0);
	s->rd.round = round;
	s->rd.flags = flags;
	s->rd.done = 0;
	s->rd.gen++;
	pthread_cond_broadcast(&s->rd.cond);
	while (s->rd.done < s->nbulk) {
		mig_cond_wait_ms(&s->rd.cond, &s->rd.lock, 250);
		pthread_mutex_unlock(&s->rd.lock);
		report(s, round, total, prev, flags & MIG_ROUND_FINAL);
		keepalive(s);
		watch_round(s);
		if (round == 0 && !flags)
			early_look(s, t0);
		pthread_mutex_lock(&s->rd.lock);
	}
	ret = s->rd.error;
	pthread_mutex_unlock(&s->rd.lock);
	if (ret)
		ret = prefer_peer_reason(s, ret);

	*rs = (struct mig_round_stats){
		.round = round,
		.acked = !ret && s->round_ack && mig_round_acked(flags),
	};
	for (unsigned int i = 0; i < s->nbulk; i++) {
		const struct counts *c = &s->senders[i].c;

		rs->pages += c->pages;
		rs->data_pages += c->data;
		rs->zero_pages += c->zero;
		rs->dup_pages += c->dup;
		rs->delta_pages += c->delta;
		rs->subpages += c->subpages;
		rs->same_pages += c->same;
		rs->bytes += c->bytes_data + c->bytes_zero + c->bytes_dup +
			     c->bytes_proto;
		if (c->ack_ns / 1e6 > rs->ack_wait_ms)
			rs->ack_wait_ms = c->ack_ns / 1e6;
		s->st->bytes_data += c->bytes_data;
		s->st->bytes_zero += c->bytes_zero;
		s->st->bytes_dup += c->bytes_dup;
	}
	rs->duration_s = (ut_now_ns() - t0) / 1e9;
	rs->bandwidth_mibs = rs->bytes / (double)UT_MiB /
			     (rs->duration_s > 1e-6 ? rs->duration_s : 1e-6);
	if (s->st->nrounds < MIG_MAX_ROUNDS)
		s->st->rounds[s->st->nrounds++] = *rs;
	return ret;
}

/* Asks the policy about round @rs->round, which left @dirty pages dirty,
 * and completes the round's figures with its prediction. */
static struct mig_verdict decide(struct mig_src *s,
				 struct mig_policy *pol,
				 struct mig_policy_state *ps,
				 struct mig_round_stats *rs, uint64_t dirty)
{
	double avg_page = (double)s->vm.ram_bytes / s->vm.total_pages;
	double bw = rs->bandwidth_mibs;
	struct mig_round_input in;

	/* A round of sub-page deltas: what a dirty page costs is what the
	 * round spent on one (copying, hashing, sending what changed), not
	 * its size at the wire's rate: the guest bytes it got through per
	 * second stand for the bandwidth. */
	if (rs->delta_pages + rs->same_pages && rs->pages &&
	    rs->duration_s > 0)
		bw = rs->pages * avg_page / rs->duration_s / UT_MiB;
	in = (struct mig_round_input){
		.round = rs->round,
		.dirty_bytes = dirty * avg_page,
		.bandwidth_mibs = bw,
		.duration_s = rs->duration_s,
		.elapsed_ns = ut_now_ns() - s->start_ns,
		.postcopy_requested = s->steer.postcopy_asked,
		.cut_early = s->st->early.cut,
	};
	struct mig_verdict v;

	pol->downtime_limit_ms = s->steer.downtime_ms;	/* as in force now */
	v = mig_policy_next(pol, ps, &in);

	rs->dirty_rate_mibs = v.dirty_rate_mibs;
	rs->predicted_downtime_ms = v.predicted_downtime_ms;
	if (s->st->nrounds)
		s->st->rounds[s->st->nrounds - 1] = *rs;
	return v;
}

static int cancel(struct mig_src *s, uint32_t rounds,
		  const struct mig_policy *pol, const struct mig_verdict *v,
		  struct ut_err *err)
{
	mig_phase_enter(&s->phase, MIG_PHASE_CANCELLED);
	ut_err_first(err, -ETIMEDOUT, "the guest did not converge after %u rounds "
		 "(%.1f s): predicted downtime %.0f ms > limit %llu ms at "
		 "%.0f MiB/s dirty; the VM keeps running here", rounds,
		 (ut_now_ns() - s->start_ns) / 1e9, v->predicted_downtime_ms,
		 (unsigned long long)pol->downtime_limit_ms,
		 v->dirty_rate_mibs);
	mig_tell_peer(s->sess, ETIMEDOUT, err->msg);
	return -ETIMEDOUT;
}

/* Precopy rounds until the policy @pol says how they end (policy.c). */
static int precopy(struct mig_src *s, struct mig_policy *pol,
		   struct ut_err *err)
{
	struct mig_round_stats rs = { 0 };
	struct mig_policy_state ps = { 0 };
	struct mig_verdict v;
	uint32_t round;
	ssize_t n;
	bool cut;
	int ret;

	mig_phase_enter(&s->phase, MIG_PHASE_PRECOPY);
	snprintf(s->st->mode, sizeof(s->st->mode), "precopy");
	s->st->setup_s = (ut_now_ns() - s->start_ns) / 1e9;
	src_event_started(s);
	if (mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why)))
		return src_cancelled(s, err);
	if (mig_policy_begin(pol).decision == MIG_DECIDE_POSTCOPY) {
		s->steer.why = mig_reason_name(MIG_WHY_MODE);
		return src_postcopy(s, 0, &rs, err);
	}
	ut_bitmap_set_range(&s->todo, 0, s->vm.total_pages);
	for (round = 0;; round++) {
		pr_info("round %u: %llu pages to send", round,
			(unsigned long long)ut_bitmap_count(&s->todo));
		ret = src_run_round(s, round, 0, &rs, &rs);
		if (ret)
			return ut_err_first(err, ret, "round %u failed", round);
		/* A round cut short leaves its unsent pages in todo: the
		 * dirty ones join them. */
		cut = atomic_load(&s->rd.cut);
		if (!cut)
			ut_bitmap_clear_all(&s->todo);
		n = gm_dirty_harvest(s->dirty, &s->todo);
		if (n < 0)
			return ut_err_first(err, n, "reading dirty pages failed");
		/* The round's writes, one more sample of the heat map (not
		 * those of a round cut short: todo holds its unsent pages). */
		if (!cut && (ret = mig_heat_track_round(&s->heat, &s->vm,
				&s->todo, tp_session_control(s->sess),
				&s->st->place, err)))
			return ret;
		src_steer(s);	/* a change that came at the round's end */
		v = decide(s, pol, &ps, &rs, cut ? ut_bitmap_count(&s->todo)
						  : (uint64_t)n);
		src_event_round_end(s, &rs, &v, cut);
		/* The figures of this round, the size of the next. */
		report(s, round + 1, ut_bitmap_count(&s->todo), &rs, false);
		s->steer.why = mig_reason_name(v.reason);
		switch (v.decision) {
		case MIG_DECIDE_ROUND:
			break;
		case MIG_DECIDE_SWITCHOVER:
			return src_switchover(s, round + 1, &rs, err);
		case MIG_DECIDE_POSTCOPY:
			if (v.reason == MIG_WHY_REQUESTED)
				pr_info("round %u: switching to postcopy, as "
					"asked", round);
			else if (v.reason == MIG_WHY_CHEAPER)
				pr_info("round %u: a precopy switchover would "
					"cost %.0f ms, postcopy's about %.0f: "
					"switching to postcopy", round,
					v.predicted_downtime_ms,
					pol->postcopy_downtime_ms);
			else if (v.reason != MIG_WHY_MODE &&
				 v.reason != MIG_WHY_DIRTY) /* said already */
				pr_info("round %u: precopy is out of time (%s): "
					"switching to postcopy", round,
					mig_reason_name(v.reason));
			return src_postcopy(s, round + 1, &rs, err);
		case MIG_DECIDE_CANCEL:
			return cancel(s, round + 1, pol, &v, err);
		}
	}
}

int src_precopy(struct mig_src *s, struct ut_err *err)
{
	struct mig_policy pol;
	int ret;

	mig_policy_init(&pol, s->p, s->can_postcopy);
	pol.discard_early = s->discard_early;
	s->pol = &pol;	/* for the early look in round 0 */
	ret = precopy(s, &pol, err);
	s->pol = NULL;
	return ret;
}
