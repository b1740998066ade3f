// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's switchover: pause the VM, send the last dirty pages,
 * save the state, commit (the point after which no cancel is taken),
 * send the state, wait for RESUMED, release the source VM.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

int src_save_state(struct mig_src *s, void **blob, size_t *len, struct ut_err *err)
{
	uint64_t t0 = ut_now_ns();
	int ret = vml_client_save_state(&s->vm.link, blob, len);

	if (ret)
		return ut_err_first(err, ret, "the VM could not save its state: %s",
				vml_strerror(ret));
	s->st->state_save_ms = (ut_now_ns() - t0) / 1e6;
	s->st->state_bytes = *len;
	if (*len > MIG_MAX_STATE) {
		free(*blob);
		*blob = NULL;
		return ut_err_first(err, -EMSGSIZE, "the VM's state blob is %zu "
				"bytes, more than the protocol carries", *len);
	}
	return 0;
}

int src_send_state(struct tp_stream *ctl, void *blob, size_t len, struct ut_err *err)
{
	int ret = mig_send_msg(ctl, MIG_MSG_STATE, blob, len);

	free(blob);
	if (ret)
		return ut_err_first(err, ret, "sending the VM state: %s",
				tp_stream_err(ctl)->msg);
	return 0;
}

/* Tells the VMM the switchover is committed, before the state leaves: an
 * agent that dies after this must not have the VMM resume a guest that
 * may run at the destination; one that dies before it has it resumed.
 * A VMM that predates COMMIT (-EOPNOTSUPP) keeps its old behaviour. */
int src_commit(struct mig_src *s, struct ut_err *err)
{
	int ret = s->dest_discarded ? s->dest_ret : src_poll_dest(s);

	if (ret)
		return ret;
	if (mig_cancel_commit(s->p->cancel, strcmp(s->st->mode, "postcopy") ?
			      "the guest's state has left, it resumes at the "
			      "destination (precopy)" :
			      "the guest runs at the destination (postcopy in "
			      "progress)")) {
		mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why));
		return src_cancelled(s, err);
	}
	s->committed = true;
	ret = vml_client_commit(&s->vm.link);

	if (ret == -EOPNOTSUPP) {
		pr_info("the VMM does not take COMMIT: it will not resume the "
			"VM by itself if this agent dies");
		return 0;
	}
	return ret ? ut_err_first(err, ret, "the VM refused to commit the "
			      "switchover: %s", vml_strerror(ret)) : 0;
}

/* Waits for the destination's word that the guest runs there. */
int src_wait_resumed(struct tp_stream *ctl, struct mig_resumed *r,
			struct ut_err *err)
{
	uint8_t buf[512];
	struct tp_msg m;
	int ret = mig_recv_expect(ctl, MIG_MSG_RESUMED, buf, sizeof(buf), &m,
				  "waiting for the guest to resume there", err);

	if (!ret && mig_dec_resumed(buf, m.len, r))
		ret = ut_err_first(err, -EPROTO, "the destination sent a malformed "
			       "RESUMED (%s)", mig_wire_reason());
	return ret;
}

/* The guest runs at the destination with all its memory: say DONE, stop
 * tracking (while the source VM still exists to unregister from) and
 * let the source VM go. */
int src_release(struct mig_src *s, struct tp_stream *ctl)
{
	int ret = mig_send_msg(ctl, MIG_MSG_DONE, NULL, 0);

	if (ret)
		pr_warn("telling the destination we are done: %s",
			tp_stream_err(ctl)->msg);
	mig_phase_enter(&s->phase, MIG_PHASE_COMPLETE);
	gm_dirty_destroy(s->dirty);
	s->dirty = NULL;
	ret = vml_client_quit(&s->vm.link);
	if (ret)
		pr_warn("the source VM did not quit: %s", vml_strerror(ret));
	return 0;
}

/* Stops the vCPUs (the downtime starts as PAUSE is sent, since the VMM
 * may stop them any time before it replies: @t monotonic, @rt realtime)
 * and adds what they wrote since the last harvest to todo. */
int src_pause_vm(struct mig_src *s, uint64_t *t, uint64_t *rt, struct ut_err *err)
{
	uint64_t t1;
	ssize_t n;
	int ret;

	*t = ut_now_ns();
	*rt = mig_realtime_ns();
	ret = vml_client_pause(&s->vm.link);
	if (ret)
		return ut_err_first(err, ret, "the VM did not pause: %s",
				vml_strerror(ret));
	mig_phase_enter(&s->phase, MIG_PHASE_SWITCHOVER);
	src_steer_settle(s);
	t1 = ut_now_ns();
	s->st->pause_ms = (t1 - *t) / 1e6;
	s->steer.pause_t = *t;
	s->steer.pause_rt = *rt;
	n = gm_dirty_harvest(s->dirty, &s->todo);
	s->st->harvest_ms = (ut_now_ns() - t1) / 1e6;
	return n < 0 ? ut_err_first(err, n, "reading the last dirty pages failed")
		     : 0;
}

int src_switchover(struct mig_src *s, uint32_t round,
		      const struct mig_round_stats *prev, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs;
	struct mig_resumed r;
	uint64_t t_pause, rt_pause, t_final, t_back;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	ret = src_pause_vm(s, &t_pause, &rt_pause, err);
	if (ret)
		return ret;
	pr_info("round %u (final): the VM is paused, %llu pages to send",
		round, (unsigned long long)ut_bitmap_count(&s->todo));
	src_event_paused(s, "precopy", round, s->steer.why ? s->steer.why :
			 "fits");
	ret = src_run_round(s, round, MIG_ROUND_FINAL, &rs, prev);
	if (ret)
		return ut_err_first(err, ret, "final round failed");
	t_final = ut_now_ns();
	ret = src_save_state(s, &blob, &len, err);
	if (!ret && (ret = src_commit(s, err)))
		free(blob);
	s->steer.state_t0 = ut_now_ns();
	if (!ret)
		ret = src_send_state(ctl, blob, len, err);
	s->steer.state_t1 = ut_now_ns();
	if (!ret)
		ret = src_wait_resumed(ctl, &r, err);
	if (ret)
		return ret;
	t_back = ut_now_ns();
	/* Same clock on loopback; across hosts, fall back to the source's
	 * own bound when the clocks disagree. */
	if (r.realtime_ns > rt_pause && r.realtime_ns - rt_pause <= t_back - t_pause)
		s->st->downtime_ms = (r.realtime_ns - rt_pause) / 1e6;
	else
		s->st->downtime_ms = (t_back - t_pause) / 1e6;
	s->st->state_load_ms = r.load_ns / 1e6;
	s->st->cpu_s_dest = r.cpu_ns / 1e9;
	src_event_switchover(s, "precopy", s->st->downtime_ms,
			     (t_final - t_pause) / 1e6,
			     (s->steer.state_t1 - s->steer.state_t0) / 1e6,
			     r.load_ns / 1e6);
	return src_release(s, ctl);
}
