// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The destination engine's entry point: attach to the incoming VM,
 * register its userfaultfd, start the receivers (dest-receive.c), serve
 * the control stream to the state (dest-control.c), resume the guest,
 * and in postcopy run the fault thread (dest-fault.c) until every page
 * is here (dest-recover.c).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

/* Precopy resumes only a whole guest: every page arrived or was said to
 * be zero. A source whose final round ends short would otherwise run the
 * guest on pages that read as zero. */
static int check_complete(struct mig_dst *d, struct ut_err *err)
{
	uint64_t n = 0, first = 0;

	for (uint64_t g = ut_bitmap_find_next_zero(&d->received, 0);
	     g < d->vm.total_pages;
	     g = ut_bitmap_find_next_zero(&d->received, g + 1))
		if (!ut_bitmap_test(&d->zero, g) && !n++)
			first = g;
	if (n)
		return ut_err_first(err, -EPROTO, "the source ended precopy with "
				"%llu pages never sent (page %llu the first)",
				(unsigned long long)n,
				(unsigned long long)first);
	return 0;
}

/* The nodes a placement names itself (bind, interleave, cells), where
 * a short huge-page pool grows; 0 for the others, whose nodes the plan
 * finds (mig_place_begin grows theirs). */
static uint64_t placed_nodes(const struct mig_place_policy *pol)
{
	uint64_t m = 0;

	if (pol->kind == MIG_PLACE_BIND || pol->kind == MIG_PLACE_INTERLEAVE)
		return pol->nodes;
	for (uint32_t i = 0; pol->kind == MIG_PLACE_CELLS && i < pol->ncells;
	     i++)
		m |= 1ULL << pol->cell_node[i];
	return m;
}

static int alloc_tracking(struct mig_dst *d)
{
	uint64_t n = d->vm.total_pages;

	if (ut_bitmap_init(&d->received, n) || ut_bitmap_init(&d->zero, n) ||
	    ut_bitmap_init(&d->claimed, n) || ut_bitmap_init(&d->held, n) ||
	    dst_units_init(d))
		return -ENOMEM;
	return mig_faults_init(&d->faults, n);
}

/* Precopy's end: the receivers done with the final round and every page
 * here; postcopy's: the receivers let past the discards, the fault
 * thread started before the guest runs. */
static int before_resume(struct mig_dst *d, bool postcopy, struct ut_err *err)
{
	int ret;

	if (!postcopy) {
		ret = dst_receivers_join(d);
		if (ret)
			ret = ut_err_first(err, ret, "receiving guest pages failed");
		else
			ret = check_complete(d, err);
		/* Every page is here: nothing may block the VM on a fault. */
		dst_uffd_release(d);
		return ret;
	}
	/* Copy mode: a huge page fed units is placed whole, once whole. */
	ret = dst_units_stage_partial(d);
	if (ret)
		return ut_err_first(err, ret, "moving incomplete huge pages out "
				    "of the page cache failed");
	pthread_mutex_lock(&d->meet.lock);
	d->meet.discards_done = true;
	pthread_cond_broadcast(&d->meet.cond);
	pthread_mutex_unlock(&d->meet.lock);
	/* From the resume until COMPLETE only this agent brings the guest
	 * its missing pages: killing it would kill the guest. */
	ut_oom_protect(&d->oom, "the guest here depends on it (postcopy)");
	/* What the guest faults on from here is hot (tiered placement). */
	if (mig_place_postcopy(&d->place))
		return ut_err_first(err, -ENOMEM, "out of memory");
	ret = dst_faulter_start(d);
	return ret ? ut_err_first(err, ret, "cannot start the fault thread") : 0;
}

/* Precopy: a source that gives up waiting for RESUMED resumes its own VM.
 * If it has gone by the time the state is here (it closed the control
 * stream or sent an ERROR while this agent was held up: frozen, starved
 * of CPU), the guest must not start here as well. What it sent after
 * the state is read now: only a KEEPALIVE may be there. (A source giving
 * up from now on, before RESUMED reaches it, is the narrow window of
 * docs/recovery.md.) */
static int source_there(struct tp_stream *ctl, struct ut_err *err)
{
	struct pollfd pfd = { tp_stream_fd(ctl), POLLIN | POLLRDHUP, 0 };
	struct mig_error e;
	uint8_t buf[512];
	struct tp_msg m;
	int ret;

	while (tp_stream_pending(ctl) ||
	       (poll(&pfd, 1, 0) == 1 && pfd.revents)) {
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
		if (ret)
			return ut_err_first(err, -ECONNRESET, "the source went away "
					"before the resume (%s): the guest runs "
					"there", ret == -ESHUTDOWN ? "it closed "
					"the connection" : tp_stream_err(ctl)->msg);
		if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
			return ut_err_first(err, -e.code, "the source gave up "
					"before the resume: %s", e.msg);
		if (m.type != MIG_MSG_KEEPALIVE)
			return ut_err_first(err, -EPROTO, "unexpected control "
					"message 0x%x after the state", m.type);
	}
	return 0;
}

/* SETUP to the resume: WELCOME, the rounds, the state, the guest loaded
 * and running. Leaves d->phase at COMPLETE (precopy) or POSTCOPY, or
 * where it failed. */
static int to_resume(struct mig_dst *d, struct mig_stats *st, double cpu0,
		     bool *postcopy, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(d->sess);
	void *blob = NULL;
	uint64_t t_state;
	size_t len = 0;
	int ret;

	ret = dst_welcome(d, ctl, err);
	/* Sized for the wire's units, which WELCOME settled. */
	if (!ret && ((ret = alloc_tracking(d)) || (ret = dst_ksm_init(d))))
		ut_err_first(err, ret, "out of memory");
	if (!ret) {
		mig_phase_enter(&d->phase, MIG_PHASE_PRECOPY);
		dst_event_started(d);
	}
	if (!ret && (ret = dst_receivers_start(d)))
		ut_err_first(err, ret, "cannot start the receiver threads");
	if (!ret)
		ret = dst_recv_state(d, ctl, &blob, &len, postcopy, err);
	t_state = ut_now_ns();
	if (!ret)
		mig_phase_enter(&d->phase, MIG_PHASE_SWITCHOVER);
	if (ret && d->cancelled) {
		char msg[64];

		snprintf(msg, sizeof(msg), "was cancelled by the operator "
			 "(%s)", d->why);
		mig_tell_peer(d->sess, ECANCELED, msg);
		dst_linger(ctl);
	}
	if (ret)
		dst_receivers_stop(d);
	else
		ret = before_resume(d, *postcopy, err);
	st->drain_ms = (ut_now_ns() - t_state) / 1e6;
	if (!ret && !*postcopy)
		ret = source_there(ctl, err);
	if (!ret)
		ret = dst_resume_guest(d, ctl, blob, len, cpu0, st, err);
	if (!ret) {
		mig_phase_enter(&d->phase, *postcopy ? MIG_PHASE_POSTCOPY :
						       MIG_PHASE_COMPLETE);
		dst_event_switchover(d, *postcopy, st->state_load_ms);
		dst_report(d);
	}
	free(blob);
	return ret;
}

/* Every page is here: where did they land? A check that cannot run is
 * said, not a failure of the migration, which has succeeded. */
static void check_placement(struct mig_dst *d)
{
	struct ut_err perr = { "" };
	const struct mig_place_stats *p = &d->place.st;

	if (!d->place.planned)
		return;
	if (mig_place_check(&d->place, &d->vm, &perr)) {
		pr_warn("%s", perr.msg);
		return;
	}
	pr_info("placement %s: %llu of %llu pages in memory on their planned "
		"node", p->policy, (unsigned long long)p->pages_as_planned,
		(unsigned long long)p->pages_present);
}

/* The last hand-off from d->phase, and what it leaves behind. */
static void conclude(struct mig_dst *d, int ret, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(d->sess);
	struct tp_msg m = { 0 };

	switch (d->phase) {
	case MIG_PHASE_COMPLETE:
		/* The source releases its VM now; DONE or a close ends it. */
		while (tp_recv(ctl, &m, NULL, 0) == 0 &&
		       m.type == MIG_MSG_KEEPALIVE)
			;
		if (m.type != MIG_MSG_DONE)
			pr_warn("no DONE from the source after resume");
		break;
	case MIG_PHASE_POSTCOPY:
	case MIG_PHASE_RECOVERING:
		/* Postcopy lost its source: the guest here lacks pages it
		 * may touch at any time. Stop it rather than let a page read
		 * as zero; the source VM holds all memory, paused. */
		mig_phase_enter(&d->phase, MIG_PHASE_INTERRUPTED);
		dst_receivers_stop(d);
		vml_client_pause(&d->vm.link);
		vml_client_quit(&d->vm.link);
		ut_err_first(err, ret, "postcopy interrupted");
		pr_err("postcopy interrupted: the guest here was stopped; the "
		       "source VM is paused with all of its memory");
		break;
	default:
		/* Nothing ran here: discard the incoming VM. */
		mig_phase_enter(&d->phase, d->cancelled || d->peer_cancelled ?
				MIG_PHASE_CANCELLED : MIG_PHASE_FAILED);
		/* A receiver's failure too: the control stream is still up
		 * (dst_meet.wake_fd) to tell the source why. */
		if (!d->cancelled && !d->peer_cancelled)
			mig_tell_peer(d->sess, ret < 0 ? -ret : EIO, err->msg);
		/* A VMM whose HELLO was refused left no link; a VM that is
		 * not incoming is a guest running here: it was never ours to
		 * discard. */
		if (d->vm.link.sock < 0 ||
		    !(d->vm.link.hello.flags & VML_F_INCOMING))
			break;
		/* Unregister while the VMM's memory still exists. */
		dst_uffd_release(d);
		vml_client_quit(&d->vm.link);
		break;
	}
}

int mig_dest_run(const struct mig_dest_params *p, struct mig_stats *st,
		 struct ut_err *err)
{
	struct mig_dst d = { .p = p, .meet = { .err = err, .wake_fd = -1 },
			     .uffd = { .fd = -1 },
			     .ft = { .wk = { .stop_fd = -1 } },
			     .sess = p->session, .phase = MIG_PHASE_SETUP };
	uint64_t t0 = ut_now_ns(), t_resume;
	double cpu0 = ut_cpu_seconds();
	bool postcopy = false;
	int ret;

	ut_err_clear(err);
	memset(st, 0, sizeof(*st));
	snprintf(st->outcome, sizeof(st->outcome), "failed");
	ret = mig_cond_init(&d.meet.cond);
	if (ret)
		return ut_err_first(err, ret, "cannot make a condition variable");
	pthread_mutex_init(&d.meet.lock, NULL);
	d.meet.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.meet.wake_fd < 0) {
		ret = ut_err_first(err, -errno, "cannot make an eventfd");
		pthread_cond_destroy(&d.meet.cond);
		pthread_mutex_destroy(&d.meet.lock);
		return ret;
	}
	d.nbulk = tp_session_nbulk(p->session);
	d.hp.reserve = p->reserve_hugepages;
	d.hp.nodes = placed_nodes(&p->placement);
	ret = mig_vm_attach(&d.vm, p->vm_socket, p->mem_access, &d.hp, err);
	if (!ret && !(d.vm.link.hello.flags & VML_F_INCOMING))
		ret = ut_err_first(err, -EBUSY, "the VM at %s is already running; "
			       "start it with --incoming", p->vm_socket);
	if (!ret) {
		dst_uffd_setup(&d);
		if (d.vm.anon && !d.can_postcopy)
			ret = ut_err_first(err, -EOPNOTSUPP, "the incoming VM's "
				       "RAM is anonymous memory, which only its "
				       "userfaultfd can fill, and it handed "
				       "over none that works");
		snprintf(st->placement, sizeof(st->placement), "%s",
			 d.minor ? "minor" : d.can_postcopy ? "copy" : "none");
		pr_info("postcopy placement: %s", st->placement);
	}
	if (!ret)
		ret = to_resume(&d, st, cpu0, &postcopy, err);
	t_resume = ut_now_ns();
	snprintf(st->mode, sizeof(st->mode), postcopy ? "postcopy" : "precopy");
	if (d.phase == MIG_PHASE_POSTCOPY) {
		ret = dst_finish_postcopy(&d, st, err);
		if (!ret)
			mig_phase_enter(&d.phase, MIG_PHASE_COMPLETE);
		st->postcopy_s = (ut_now_ns() - t_resume) / 1e9;
	}
	if (d.phase == MIG_PHASE_SETUP || d.phase == MIG_PHASE_PRECOPY ||
	    d.phase == MIG_PHASE_SWITCHOVER)
		st->cpu_s_dest = ut_cpu_seconds() - cpu0;
	if (d.phase == MIG_PHASE_COMPLETE) {
		check_placement(&d);
		dst_ksm_report(&d, st);
		dst_collapse(&d, &st->thp);
	}
	st->place = d.place.st;
	conclude(&d, ret, err);
	snprintf(st->outcome, sizeof(st->outcome), "%s",
		 mig_phase_name(d.phase));
	dst_faulter_stop(&d);
	if (d.ft.priority)
		snprintf(st->fault_priority, sizeof(st->fault_priority), "%s",
			 d.ft.priority);
	dst_uffd_release(&d);
	ut_oom_restore(&d.oom);
	dst_receivers_join(&d);
	st->guest_bytes = d.vm.ram_bytes;
	st->unit_bytes = d.unit_bytes;
	st->nbulk = d.nbulk;
	st->total_s = (ut_now_ns() - t0) / 1e9;
	free(d.zero_page);
	ut_bitmap_fini(&d.received);
	ut_bitmap_fini(&d.zero);
	ut_bitmap_fini(&d.claimed);
	ut_bitmap_fini(&d.held);
	dst_units_fini(&d);
	mig_faults_fini(&d.faults);
	dst_ksm_fini(&d);
	mig_place_fini(&d.place);
	mig_vm_detach(&d.vm);
	for (unsigned int i = 0; i < d.hp.n; i++)
		st->hugepages_added += d.hp.pool[i].added;
	mig_hp_restore(&d.hp);
	if (d.own_sess)
		tp_session_destroy(d.sess);
	if (d.meet.wake_fd >= 0)
		close(d.meet.wake_fd);
	pthread_cond_destroy(&d.meet.cond);
	pthread_mutex_destroy(&d.meet.lock);
	return ret;
}
