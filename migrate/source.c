// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source engine's entry point: attach, arm dirty tracking,
 * negotiate, start the senders, run the phases (source-precopy.c,
 * source-switchover.c, source-postcopy.c, source-recover.c), and decide
 * on failure what becomes of the source VM.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

/* Write-protect tracking of the VMM's RAM through the uffd it handed us. */
static int start_tracking(struct mig_src *s, struct ut_err *err)
{
	struct gm_dirty_range ranges[VML_MAX_REGIONS];
	const struct vml_hello *h = &s->vm.link.hello;
	uint64_t have = 0;
	int fd, ret;

	fd = vml_client_take_uffd(&s->vm.link);
	if (fd < 0)
		return ut_err_first(err, -EOPNOTSUPP, "the VM did not hand over "
				"a userfaultfd: dirty tracking impossible");
	gm_uffd_probe(&have);
	ret = gm_uffd_init(&s->uffd, fd, GM_UFFD_FEATURE_WP_ASYNC |
			   (have & (GM_UFFD_FEATURE_WP_UNPOPULATED |
				    UFFD_FEATURE_WP_HUGETLBFS_SHMEM)),
			   true);
	if (ret) {
		close(fd);
		return ut_err_first(err, ret, "userfaultfd write-protect "
				"tracking is not available: %s",
				strerror(-ret));
	}
	for (unsigned int i = 0; i < s->vm.nr; i++)
		ranges[i] = (struct gm_dirty_range){
			h->regions[i].host_addr, h->regions[i].size,
			s->vm.layout.r[i].page_size };
	ret = gm_dirty_create(&s->dirty, &(struct gm_dirty_params){
		.pid = h->pid, .uffd = &s->uffd, .ranges = ranges,
		.nr_ranges = s->vm.nr });
	if (ret)
		return ut_err_first(err, ret, "cannot track the VM's writes: %s",
				strerror(-ret));
	return 0;
}

/* After telling the destination why we stop: wait (bounded) until it
 * has read it and discarded its VM, so that closing the bulk streams
 * cannot overtake the reason. Its answer is an ERROR or a close. */
static void linger(struct mig_src *s)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct tp_msg m;

	tp_stream_set_timeout(ctl, 3000);
	while (!tp_recv(ctl, &m, NULL, 0) && m.type == MIG_MSG_KEEPALIVE)
		;
}

/* Sub-page hashes, 16 bytes per 4 KiB: for the huge-page regions (@huge:
 * the destination takes SUBPAGES), and for the huge pages here sent in
 * 4 KiB units, staged (units_apply). */
static int sub_init(struct mig_src *s, bool huge, struct ut_err *err)
{
	uint64_t bytes = 0;

	for (uint32_t r = 0; r < s->vm.nr; r++) {
		uint64_t n = s->vm.layout.r[r].size / MIG_SUB_SIZE;
		uint32_t psz = s->vm.layout.r[r].page_size;
		bool unit = psz == MIG_SUB_SIZE && s->vm.copy &&
			    mig_vm_per_page(&s->vm, r) > 1;

		if (!unit && (!huge || psz < MIG_SUB_WINDOW ||
			      psz % MIG_SUB_WINDOW))
			continue;
		s->sub.hash[r] = calloc(n, sizeof(struct gm_hash));
		if (!s->sub.hash[r])
			return ut_err_first(err, -ENOMEM, "out of memory for the "
					"sub-page hashes");
		bytes += n * sizeof(struct gm_hash);
	}
	if (!bytes)
		return 0;
	if (ut_bitmap_init(&s->sub.valid, s->vm.total_pages))
		return ut_err_first(err, -ENOMEM, "out of memory");
	s->sub.on = true;
	pr_info("sub-page deltas for huge pages: %llu KiB of hashes",
		(unsigned long long)(bytes >> 10));
	return 0;
}

/* The page bitmaps and the chunks, for the layout in s->vm. */
static int layout_alloc(struct mig_src *s)
{
	int ret = src_chunks_build(s);

	if (!ret)
		ret = ut_bitmap_init(&s->todo, s->vm.total_pages);
	if (!ret)
		ret = ut_bitmap_init(&s->sent, s->vm.total_pages);
	if (!ret)
		ret = ut_bitmap_init(&s->spare, s->vm.total_pages);
	return ret;
}

/* Regions whose page sizes differ at the two ends go in 4 KiB units
 * (MIG_FEAT_PAGESIZES): every index from here on counts them. */
int src_units_apply(struct mig_src *s, const struct mig_layout *src,
		    const struct mig_welcome *w, struct ut_err *err)
{
	struct mig_layout wire;

	if (!mig_layout_units(src, w, &wire))
		return 0;
	for (uint32_t i = 0; i < wire.nr; i++) {
		if (wire.r[i].page_size == src->r[i].page_size &&
		    w->page_size[i] == src->r[i].page_size)
			continue;
		pr_info("region %u: %u KiB pages here, %u KiB at the "
			"destination: sent in 4 KiB units", i,
			src->r[i].page_size >> 10, w->page_size[i] >> 10);
		s->st->unit_bytes += src->r[i].size;
	}
	mig_vm_use_units(&s->vm, &wire);
	/* Huge pages here, sent in units: staged (pread works at any offset
	 * of a hugetlbfs file), so that the hash of a unit is of the bytes
	 * sent and an unchanged unit of a dirty huge page can stay behind
	 * (src_unit_same). */
	if (s->vm.units && s->p->mem_access == MIG_MEM_AUTO) {
		bool fits = true;

		for (uint32_t i = 0; i < wire.nr; i++)
			fits &= wire.r[i].page_size <= STAGE_BYTES;
		s->vm.copy = fits;
	}
	ut_bitmap_fini(&s->todo);
	ut_bitmap_fini(&s->sent);
	ut_bitmap_fini(&s->spare);
	free(s->chunks);
	s->chunks = NULL;
	s->nchunks = 0;
	return layout_alloc(s) ? ut_err_first(err, -ENOMEM, "out of memory") : 0;
}

/* HELLO with the region table; the destination answers WELCOME or ERROR. */
static int negotiate(struct mig_src *s, struct tp_stream *ctl, struct ut_err *err)
{
	struct mig_hello h = {
		.ver_min = MIG_WIRE_VERSION, .ver_max = MIG_WIRE_VERSION,
		.features = MIG_FEATURES_V1 | MIG_FEAT_PLACEMENT |
			    MIG_FEAT_DISCARD_EARLY | MIG_FEAT_PAGESIZES |
			    MIG_FEAT_HUGE_UNITS | MIG_FEAT_HEAT_REVISE |
			    MIG_FEAT_ROUND_ACK |
			    (s->vm.anon ? MIG_FEAT_KSM_PAGES : 0),
		.nbulk = s->nbulk,
		.total_pages = s->vm.total_pages, .layout = s->vm.layout,
	};
	uint8_t buf[4096];
	struct mig_welcome w;
	struct mig_error e;
	struct tp_msg m;
	ssize_t n;
	int ret;

	n = mig_enc_hello(buf, sizeof(buf), &h);
	if (n < 0)
		return ut_err_first(err, n, "encoding HELLO failed");
	ret = mig_send_msg(ctl, MIG_MSG_HELLO, buf, n);
	if (!ret)
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
	if (ret)
		return ut_err_first(err, ret, "handshake with the destination: %s",
				tp_stream_err(ctl)->msg);
	if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
		return ut_err_first(err, -e.code, "the destination refused: %s",
				e.msg);
	if (m.type == MIG_MSG_ERROR)
		return ut_err_first(err, -EPROTO, "the destination sent no valid "
				"WELCOME: a malformed ERROR (%s)",
				mig_wire_reason());
	if (m.type != MIG_MSG_WELCOME)
		return ut_err_first(err, -EPROTO, "the destination sent no valid "
				"WELCOME (message type 0x%x)", m.type);
	if (mig_dec_welcome(buf, m.len, &h, &w))
		return ut_err_first(err, -EPROTO, "the destination sent no valid "
				"WELCOME (%s)", mig_wire_reason());
	s->can_postcopy = w.features & MIG_FEAT_POSTCOPY;
	s->sub.keep = w.features & MIG_FEAT_SUBPAGES_KEEP;
	s->welcome_features = w.features;
	s->discard_early = w.features & MIG_FEAT_DISCARD_EARLY;
	s->round_ack = w.features & MIG_FEAT_ROUND_ACK;
	if (!s->can_postcopy && (s->p->mode == MIG_MODE_POSTCOPY ||
				 s->p->mode == MIG_MODE_HYBRID)) {
		ut_err_first(err, -EOPNOTSUPP, "the destination cannot do "
			     "postcopy (its VM handed over no userfaultfd, or "
			     "its kernel cannot place its pages so: its log "
			     "says which)");
		/* It waits for pages: tell it why none come. */
		mig_tell_peer(s->sess, EOPNOTSUPP, err->msg);
		linger(s);
		return -EOPNOTSUPP;
	}
	return src_units_apply(s, &h.layout, &w, err);
}

/* After WELCOME, the tracking armed: sub-pages and placement. */
static int handshake_rest(struct mig_src *s, struct tp_stream *ctl,
			  struct ut_err *err)
{
	int ret;

	/* After the postcopy check, which sub-pages must not skip, and
	 * before the placement exchange, which they must not skip either. */
	if (!s->p->no_subpages &&
	    ((s->welcome_features & MIG_FEAT_SUBPAGES) || s->vm.units) &&
	    (ret = sub_init(s, s->welcome_features & MIG_FEAT_SUBPAGES,
			    err)))
		return ret;
	s->heat.on = s->welcome_features & MIG_FEAT_HEAT_REVISE;
	if ((s->welcome_features & MIG_FEAT_PLACEMENT) &&
	    (ret = mig_place_src_handshake(ctl, &s->vm, s->dirty, s->st,
					   &s->heat, err)))
		return ret;
	if (s->welcome_features & MIG_FEAT_KSM_PAGES)
		return src_ksm_tell(s, ctl, err);
	return 0;
}

static void final_stats(struct mig_src *s, double cpu0)
{
	struct mig_stats *st = s->st;
	uint64_t total = s->old_tx + src_session_tx(s->sess);

	st->bytes_total = total;
	st->bytes_proto = total - (st->bytes_data + st->bytes_zero +
				   st->bytes_dup);
	st->total_s = (ut_now_ns() - s->start_ns) / 1e9;
	st->throughput_mibs = total / (double)UT_MiB /
			      (st->total_s > 0 ? st->total_s : 1);
	st->cpu_s_source = ut_cpu_seconds() - cpu0;
	st->guest_bytes = s->vm.ram_bytes;
	st->nbulk = s->nbulk;
}

/* The outcome of a run that ended with @ret in phase s->phase. */
static enum mig_phase outcome(const struct mig_src *s, int ret)
{
	bool there = s->phase == MIG_PHASE_POSTCOPY ||
		     s->phase == MIG_PHASE_RECOVERING;

	if (mig_phase_terminal(s->phase))
		return s->phase;
	if (!ret)
		return MIG_PHASE_COMPLETE;
	/* The destination may be running the guest, unless it said it
	 * discarded its VM before RESUMED. */
	if (there && !s->dest_discarded)
		return MIG_PHASE_INTERRUPTED;
	/* Our senders stop with -ECANCELED after any peer ERROR: only a
	 * cancel, here or there, is one. */
	if (ret == -ECANCELED && (s->cancelled || s->dest_cancelled))
		return MIG_PHASE_CANCELLED;
	return MIG_PHASE_FAILED;
}

/* A postcopy that cannot go on: the reason, and what it leaves, in the
 * one line. */
static void interrupted(struct ut_err *err)
{
	static const char tail[] = ": the VM stays paused here with all of "
		"its memory (the destination holds the running copy)";
	size_t n = strlen(err->msg);

	if (!n)
		return;
	if (n + sizeof(tail) > sizeof(err->msg))
		n = sizeof(err->msg) - sizeof(tail);
	memcpy(err->msg + n, tail, sizeof(tail));
}

/* The last hand-off, and what it leaves: the source VM resumed when it
 * is still the only running copy, the destination told why. */
static void conclude(struct mig_src *s, int ret, struct ut_err *err)
{
	enum mig_phase last = s->phase, end = outcome(s, ret);
	bool paused = last == MIG_PHASE_SWITCHOVER ||
		      last == MIG_PHASE_POSTCOPY ||
		      last == MIG_PHASE_RECOVERING;

	if (end != last)
		mig_phase_enter(&s->phase, end);
	if (end == MIG_PHASE_INTERRUPTED) {
		/* Resuming here would fork the guest. Keep it paused, with
		 * all its memory, and say so in the one line. */
		interrupted(err);
	} else if (ret && paused) {
		/* Before the destination runs the guest, it is still ours. */
		int r2 = vml_client_resume(&s->vm.link);

		if (r2)
			pr_err("resuming the source VM failed: %s",
			       strerror(-r2));
	}
	if (s->cancelled && s->senders) {
		char msg[64];

		snprintf(msg, sizeof(msg), "was cancelled by the operator "
			 "(%s)", s->why);
		mig_tell_peer(s->sess, ECANCELED, msg);
		linger(s);
	} else if (ret && ret != -ETIMEDOUT && s->senders &&
		   last != MIG_PHASE_POSTCOPY && last != MIG_PHASE_RECOVERING &&
		   !s->dest_discarded) {
		mig_tell_peer(s->sess, -ret, ut_err_isset(err) ? err->msg :
						     "source failed");
		linger(s);
	} else if (ret == -ETIMEDOUT && last == MIG_PHASE_CANCELLED &&
		   s->senders) {
		linger(s);	/* the policy's cancel told it why already */
	}
}

int mig_source_run(const struct mig_source_params *p, struct mig_stats *st,
		   struct ut_err *err)
{
	struct mig_src s = { .p = p, .st = st, .rd = { .err = err },
			     .uffd = { .fd = -1 },
			     .urg = { .wk = { .stop_fd = -1 } },
			     .phase = MIG_PHASE_SETUP };
	double cpu0 = ut_cpu_seconds();
	int ret;

	ut_err_clear(err);
	memset(st, 0, sizeof(*st));
	snprintf(st->outcome, sizeof(st->outcome), "failed");
	s.start_ns = ut_now_ns();
	pthread_mutex_init(&s.rd.lock, NULL);
	src_steer_init(&s);
	s.sess = p->session;
	s.nbulk = tp_session_nbulk(p->session);
	ret = mig_cond_init(&s.rd.cond);
	if (ret) {
		ut_err_first(err, ret, "cannot make a condition variable");
		goto out_lock;
	}
	ret = mig_vm_attach(&s.vm, p->vm_socket, p->mem_access, NULL, err);
	if (ret)
		goto out;
	if (s.vm.link.hello.flags & VML_F_INCOMING) {
		ret = ut_err_first(err, -EINVAL, "the VM at %s is waiting for an "
			       "incoming migration, not running", p->vm_socket);
		goto out;
	}
	for (unsigned int i = 0; !ret && s.vm.copy && i < s.vm.nr; i++)
		if (s.vm.layout.r[i].page_size > STAGE_BYTES)
			ret = ut_err_first(err, -EINVAL, "1G pages cannot be copied "
				       "through a buffer: use the mapped access");
	if (!ret)
		ret = layout_alloc(&s);
	if (ret) {
		ut_err_first(err, ret, "out of memory");
		goto out;
	}
	if (p->recover) {
		ret = src_resume_postcopy(&s, err);
		goto out;
	}
	pr_info("attached in %.1f ms", (ut_now_ns() - s.start_ns) / 1e6);
	/* HELLO first: the tracker counts the units the wire uses. Nothing
	 * is read before it is armed. */
	ret = negotiate(&s, tp_session_control(p->session), err);
	if (!ret)
		ret = start_tracking(&s, err);
	pr_info("tracking armed at %.1f ms", (ut_now_ns() - s.start_ns) / 1e6);
	if (!ret)
		ret = handshake_rest(&s, tp_session_control(p->session), err);
	if (!ret && (ret = src_senders_start(&s)))
		ut_err_first(err, ret, "cannot start the sender threads");
	if (!ret)
		ret = src_precopy(&s, err);
out:
	conclude(&s, ret, err);
	snprintf(st->outcome, sizeof(st->outcome), "%s",
		 mig_phase_name(s.phase));
	src_senders_stop(&s);
	ut_oom_restore(&s.oom);
	if (s.senders == NULL && s.vm.nr)
		final_stats(&s, cpu0);
	gm_dirty_destroy(s.dirty);
	gm_uffd_close(&s.uffd);
	src_urgent_stop(&s);
	mig_heat_track_fini(&s.heat);
	ut_bitmap_fini(&s.todo);
	ut_bitmap_fini(&s.sent);
	ut_bitmap_fini(&s.spare);
	ut_bitmap_fini(&s.sub.valid);
	for (uint32_t r = 0; r < MIG_MAX_REGIONS; r++)
		free(s.sub.hash[r]);
	free(s.chunks);
	mig_vm_detach(&s.vm);
	if (s.own_sess)
		tp_session_destroy(s.sess);
	pthread_cond_destroy(&s.rd.cond);
out_lock:
	src_steer_fini(&s);
	pthread_mutex_destroy(&s.rd.lock);
	return ret;
}
