// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's postcopy: the switch (an empty round that turns the
 * destination's receivers to atomic placement, DISCARD of the pages it
 * holds that changed), the background push, and the urgent thread that
 * answers the destination's page requests ahead of the push.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

/* The @len bytes from page @idx of region @r: read into the urgent
 * buffer (COPY mode) or in place. */
static int urgent_read(struct mig_src *s, uint32_t r, uint64_t idx,
		       size_t len, const uint8_t **page)
{
	*page = s->vm.copy ? s->urg.buf : mig_vm_page(&s->vm, r, idx);
	return s->vm.copy ? mig_vm_read(&s->vm, r, idx, s->urg.buf, len) : 0;
}

/* Sends page @idx of region @r on the urgent stream. */
static int send_urgent(struct mig_src *s, struct tp_stream *st, uint32_t r,
		       uint64_t idx)
{
	uint64_t g = s->vm.first[r] + idx;
	uint32_t psz = s->vm.layout.r[r].page_size;
	uint8_t hdr[MIG_PAGES_FIXED + 8];
	struct iovec iov[2];
	const uint8_t *page;
	ssize_t n;
	int ret;

	/* Send it even when a sender claimed it: that copy may sit behind
	 * megabytes of bulk data, and the guest is waiting. The source VM
	 * is paused, so both copies are the same; the second placement is
	 * an EEXIST at the destination. */
	ut_bitmap_test_and_clear(&s->todo, g);
	ret = urgent_read(s, r, idx, psz, &page);
	if (ret)
		return ret;
	/* A kept huge page: only what changed in it. */
	n = src_send_kept(s, st, r, idx, page, s->urg.subiov, s->urg.subhdr);
	if (n) {
		if (n > 0) {
			ut_bitmap_set(&s->sent, g);
			s->urg.served++;
			s->urg.bytes_data += n;
		}
		return n < 0 ? (int)n : 0;
	}
	n = mig_enc_pages_hdr(hdr, sizeof(hdr), r, 1, &idx);
	iov[0] = (struct iovec){ hdr, n };
	iov[1] = (struct iovec){ (void *)page, psz };
	ret = tp_send(st, MIG_MSG_PAGES, iov, 2, 0);
	if (!ret) {
		ut_bitmap_set(&s->sent, g);
		s->urg.served++;
		s->urg.bytes_data += psz;
		src_charge(s, n + psz);
	}
	return ret;
}

/* Pages of a run sent in one PAGES message (4 KiB ones: 256 KiB). */
#define URG_RUN 64u

/* Sends @n (at most URG_RUN) consecutive 4 KiB pages from @idx of region
 * @r in one PAGES message: a run a huge page at the destination lacks. */
static int send_urgent_run(struct mig_src *s, struct tp_stream *st,
			   uint32_t r, uint64_t idx, uint32_t n)
{
	uint64_t g = s->vm.first[r] + idx, ids[URG_RUN];
	uint8_t hdr[MIG_PAGES_FIXED + 8 * URG_RUN];
	size_t len = (size_t)n * MIG_SUB_SIZE;
	struct iovec iov[2];
	const uint8_t *page;
	ssize_t hn;
	int ret;

	for (uint32_t i = 0; i < n; i++) {
		ids[i] = idx + i;
		ut_bitmap_test_and_clear(&s->todo, g + i);
	}
	ret = urgent_read(s, r, idx, len, &page);
	if (ret)
		return ret;
	hn = mig_enc_pages_hdr(hdr, sizeof(hdr), r, n, ids);
	if (hn < 0)
		return (int)hn;
	iov[0] = (struct iovec){ hdr, hn };
	iov[1] = (struct iovec){ (void *)page, len };
	ret = tp_send(st, MIG_MSG_PAGES, iov, 2, 0);
	if (ret)
		return ret;
	ut_bitmap_set_range(&s->sent, g, n);
	s->urg.served += n;
	s->urg.bytes_data += len;
	src_charge(s, hn + len);
	return 0;
}

/* Whether unit @g went out on a bulk stream already (sent, and no longer
 * to send): a long run leaves it to that copy. */
static bool pushed(struct mig_src *s, uint64_t g)
{
	return ut_bitmap_test(&s->sent, g) && !ut_bitmap_test(&s->todo, g);
}

/* A run of units (a huge page at the destination lacks them), URG_RUN
 * at a time. A run longer than a 2 MiB page (the units of a 1 GiB page)
 * skips the units the push sent meanwhile, so that the two streams
 * share the page's wire time instead of both carrying it; the thread
 * stops between messages when asked to (a 1 GiB answer is 4096 of
 * them). */
static int serve_run(struct mig_src *s, struct tp_stream *st,
		     const struct mig_req *q, uint64_t g)
{
	bool skip = q->npages > MIG_SUB_PER_PAGE;
	int ret = 0;

	for (uint32_t i = 0, n; i < q->npages && !ret; i += n) {
		if (mig_worker_stopping(&s->urg.wk))
			return -ESHUTDOWN;
		if (skip && pushed(s, g + i)) {
			n = 1;
			continue;
		}
		for (n = 1; n < URG_RUN && i + n < q->npages &&
		     !(skip && pushed(s, g + i + n)); n++)
			;
		ret = send_urgent_run(s, st, q->region, q->idx + i, n);
	}
	return ret;
}

/* Answers one request: its page, or its run of pages (the 4 KiB units a
 * huge page at the destination lacks, MIG_FEAT_PAGESIZES). */
static int serve_request(struct mig_src *s, struct tp_stream *st,
			 const struct mig_req *q)
{
	uint64_t g = s->vm.first[q->region] + q->idx;
	uint32_t w = atomic_load(&s->pp.window);
	uint32_t run = q->npages ? q->npages : 1;
	int ret = 0;

	/* Pre-page after the fault, with a smaller window while faulting. */
	atomic_store(&s->pp.window, w / 2 > WINDOW_MIN ? w / 2 : WINDOW_MIN);
	atomic_fetch_add(&s->pp.faults_since, 1);
	atomic_store(&s->pp.pivot, g + run + 1);
	s->urg.requests++;
	if (run > 1 && s->vm.layout.r[q->region].page_size == MIG_SUB_SIZE)
		return serve_run(s, st, q, g);
	for (uint32_t i = 0; i < run && !ret; i++)
		ret = send_urgent(s, st, q->region, q->idx + i);
	return ret;
}

/* The destination broke the protocol on the urgent stream. The reason
 * (s->urg.why, read by the main thread once it joined this one) becomes
 * the migration's; the push stops at the senders' next message and the
 * control stream is cut, so that the main thread, wherever it waits,
 * stops at once. */
static int __attribute__((format(printf, 3, 4)))
urgent_broken(struct mig_src *s, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->urg.why, sizeof(s->urg.why), fmt, ap);
	va_end(ap);
	s->urg.error = ret;
	pthread_mutex_lock(&s->rd.lock);
	if (!s->rd.error)
		s->rd.error = ret;
	pthread_mutex_unlock(&s->rd.lock);
	atomic_store(&s->peer_broken, true);
	atomic_store(&s->rd.abort, true);
	tp_session_shutdown(s->sess, TP_SHUT_CONTROL);
	return ret;
}

static int urgent_one(struct mig_src *s, struct tp_stream *st)
{
	uint8_t buf[MIG_REQ_FIXED + MIG_REQ_ENTRY * MIG_MAX_REQS];
	struct mig_req req[MIG_MAX_REQS];
	struct tp_msg m;
	uint32_t n;
	int ret;

	ret = tp_recv(st, &m, buf, sizeof(buf));
	if (ret == -EMSGSIZE)
		return urgent_broken(s, ret, "a page request of %llu bytes, "
				     "longer than any valid one",
				     (unsigned long long)m.len);
	if (ret)
		return ret;
	if (m.type != MIG_MSG_PAGE_REQ)
		return urgent_broken(s, -EPROTO, "message 0x%x on the urgent "
				     "stream", m.type);
	if (mig_dec_req(buf, m.len, &s->vm.layout, req, MIG_MAX_REQS, &n))
		return urgent_broken(s, -EPROTO, "a malformed page request "
				     "(%s)", mig_wire_reason());
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = serve_request(s, st, &req[i]);
	return ret;
}

/* Answers page requests first, from its own thread and stream. */
static void *urgent_main(void *arg)
{
	struct mig_src *s = arg;
	struct tp_stream *st = tp_session_urgent(s->sess);
	struct pollfd pfd[2] = { { tp_stream_fd(st), POLLIN, 0 },
				 { s->urg.wk.stop_fd, POLLIN, 0 } };
	int ret = 0;

	s->urg.priority = mig_worker_urgent(!s->p->fault_normal_priority);
	while (!ret) {
		if (!tp_stream_pending(st)) {
			if (poll(pfd, 2, -1) < 0 && errno != EINTR)
				break;
			if (pfd[1].revents)
				break;
			if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
		}
		ret = urgent_one(s, st);
	}
	if (ret && ret != -ESHUTDOWN && !atomic_load(&s->peer_broken))
		pr_warn("urgent stream: %s", tp_stream_err(st)->msg[0] ?
			tp_stream_err(st)->msg : strerror(-ret));
	return NULL;
}

int src_urgent_start(struct mig_src *s)
{
	uint32_t maxpsz = 0;

	for (unsigned int i = 0; i < s->vm.nr; i++)
		if (s->vm.layout.r[i].page_size > maxpsz)
			maxpsz = s->vm.layout.r[i].page_size;
	/* Copy mode: one page, or a run of 4 KiB ones. */
	if (maxpsz < URG_RUN * MIG_SUB_SIZE)
		maxpsz = URG_RUN * MIG_SUB_SIZE;
	if (s->vm.copy && !(s->urg.buf = aligned_alloc(4096, maxpsz)))
		return -ENOMEM;
	atomic_store(&s->pp.window, WINDOW_MIN);
	return mig_worker_start(&s->urg.wk, urgent_main, s);
}

void src_urgent_stop(struct mig_src *s)
{
	mig_worker_stop(&s->urg.wk);
	if (s->urg.priority)
		snprintf(s->st->fault_priority, sizeof(s->st->fault_priority),
			 "%s", s->urg.priority);
	s->st->pages_requested += s->urg.served;
	s->st->bytes_data += s->urg.bytes_data;
	s->urg.served = s->urg.bytes_data = 0;
	free(s->urg.buf);
	s->urg.buf = NULL;
}

uint32_t src_discard_bits(struct mig_src *s, const struct chunk *c,
			  uint8_t *bits)
{
	uint64_t base = s->vm.first[c->region] + c->start;
	uint32_t n = 0;

	memset(bits, 0, CHUNK / 8);
	for (uint32_t i = 0; i < c->n; i++) {
		if (!ut_bitmap_test(&s->todo, base + i) ||
		    !ut_bitmap_test(&s->sent, base + i))
			continue;
		if (src_unit_held(s, c->region, c->start + i)) {
			ut_bitmap_clear(&s->todo, base + i);
			continue;
		}
		ut_bitmap_clear(&s->sent, base + i);
		bits[i / 8] |= 1u << (i % 8);
		n++;
	}
	return n;
}

int src_send_discard(struct sender *w, const struct chunk *c)
{
	uint8_t bits[CHUNK / 8], buf[MIG_ZERO_FIXED + CHUNK / 8];
	uint32_t k = src_discard_bits(w->src, c, bits);
	ssize_t n;

	if (!k)
		return 0;
	n = mig_enc_zero(buf, sizeof(buf), &(struct mig_zero){
		c->region, c->start, c->n, bits });
	if (n < 0)
		return n;
	w->c.bytes_proto += n;
	w->c.discarded += k;
	return mig_send_msg(w->st, MIG_MSG_DISCARD, buf, n);
}

/* Tells the destination to drop the pages it holds that are dirty now:
 * todo & sent, sent per chunk as DISCARD bitmaps on the control stream. */
static int send_discards(struct mig_src *s, struct tp_stream *ctl,
			 uint64_t *ndiscard)
{
	uint8_t bits[CHUNK / 8], buf[MIG_ZERO_FIXED + CHUNK / 8];
	int ret = 0;

	for (uint64_t k = 0; k < s->nchunks && !ret; k++) {
		const struct chunk *c = &s->chunks[k];
		uint32_t nb = src_discard_bits(s, c, bits);
		ssize_t n;

		if (!nb)
			continue;
		*ndiscard += nb;
		n = mig_enc_zero(buf, sizeof(buf), &(struct mig_zero){
			c->region, c->start, c->n, bits });
		ret = n < 0 ? n : mig_send_msg(ctl, MIG_MSG_DISCARD, buf, n);
	}
	return ret;
}

/* Everything the destination does not hold goes into todo. */
static void add_unsent(struct mig_src *s)
{
	for (uint64_t g = ut_bitmap_find_next_zero(&s->sent, 0);
	     g < s->vm.total_pages;
	     g = ut_bitmap_find_next_zero(&s->sent, g + 1))
		ut_bitmap_set(&s->todo, g);
}

static int wait_complete(struct mig_src *s, struct tp_stream *ctl, struct ut_err *err)
{
	uint8_t buf[1024];
	struct mig_complete c;
	struct tp_msg m;
	int ret = mig_recv_expect(ctl, MIG_MSG_COMPLETE, buf, sizeof(buf), &m,
				  "waiting for the destination to complete",
				  err);

	if (!ret && mig_dec_complete(buf, m.len, &c))
		ret = ut_err_first(err, -EPROTO, "the destination sent a malformed "
			       "COMPLETE (%s)", mig_wire_reason());
	if (ret)
		return ret;
	s->st->faults = c.faults;
	s->st->fault_p50_us = c.p50_ns / 1e3;
	s->st->fault_p99_us = c.p99_ns / 1e3;
	s->st->fault_max_us = c.max_ns / 1e3;
	s->st->vcpu_blocked_ms = c.blocked_ns / 1e6;
	memcpy(s->st->fault_hist, c.hist, sizeof(c.hist));
	return 0;
}

/* The background push after the switchover on the current session, with
 * requests served first: after RESUMED (once; --push-before-resume: before
 * it), then COMPLETE. */
int src_push(struct mig_src *s, uint32_t round,
		const struct mig_round_stats *prev, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs = { 0 };
	int ret = src_urgent_start(s);

	if (ret)
		return ut_err_first(err, ret, "cannot start the urgent thread");
	/* Right after the switchover, the push waits for the guest to run
	 * there: on 2 CPUs it would take them from the destination's state
	 * load and resume, which are the downtime. Requests are served
	 * meanwhile (a VMM's load may read guest RAM). */
	if (!s->resumed_seen && !s->p->push_before_resume) {
		uint64_t t0 = ut_now_ns();

		ret = src_wait_resumed(ctl, &s->resumed, err);
		s->resumed_seen = !ret;
		s->st->push_wait_ms = (ut_now_ns() - t0) / 1e6;
	} else if (!s->resumed_seen) {
		s->st->push_wait_ms = -1;
	}
	if (!ret)
		ret = src_run_round(s, round, MIG_ROUND_FINAL, &rs, prev);
	s->st->pages_pushed += rs.pages;
	if (ret)
		ut_err_first(err, ret, "pushing the remaining pages failed");
	if (!ret && !s->resumed_seen) {
		ret = src_wait_resumed(ctl, &s->resumed, err);
		s->resumed_seen = !ret;
	}
	if (!ret)
		ret = wait_complete(s, ctl, err);
	if (ret == -EPROTO || ret == -EMSGSIZE)
		atomic_store(&s->peer_broken, true);
	src_urgent_stop(s);
	if (s->urg.why[0]) {
		/* The cause; what the main thread saw is its consequence. */
		ut_err_clear(err);
		ret = ut_err_first(err, s->urg.error, "the destination sent %s",
			       s->urg.why);
		s->urg.why[0] = 0;
	}
	return ret;
}

int src_postcopy(struct mig_src *s, uint32_t round,
		    const struct mig_round_stats *prev, struct ut_err *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs;
	struct ut_bitmap swap;
	uint64_t t_pause, rt_pause, ndiscard = 0, t0;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	/* The guest still running here, the destination drops what it
	 * holds that is dirty now, off the switchover's critical path; the
	 * switch then drops only what is dirtied meanwhile. */
	if (s->discard_early && round > 0) {
		uint64_t early = 0;

		t0 = ut_now_ns();
		ret = src_run_round(s, round++, MIG_ROUND_DISCARD, &rs, prev);
		if (ret)
			return ut_err_first(err, ret, "dropping dirty pages at the "
					    "destination failed");
		for (unsigned int i = 0; i < s->nbulk; i++)
			early += s->senders[i].c.discarded;
		pr_info("postcopy: %llu dirty pages dropped at the destination "
			"in %.1f ms before the pause", (unsigned long long)early,
			(ut_now_ns() - t0) / 1e6);
	}
	ret = src_pause_vm(s, &t_pause, &rt_pause, err);
	if (ret)
		return ret;
	snprintf(s->st->mode, sizeof(s->st->mode), "postcopy");
	src_event_paused(s, "postcopy", round, s->steer.why ? s->steer.why :
			 "mode");
	/* An empty round whose markers switch the receivers to atomic
	 * placement, then the pages they hold that changed since. */
	swap = s->todo;
	s->todo = s->spare;
	t0 = ut_now_ns();
	ret = src_run_round(s, round, MIG_ROUND_POSTCOPY, &rs, prev);
	s->spare = s->todo;
	s->todo = swap;
	if (!ret)
		ret = mig_send_msg(ctl, MIG_MSG_POSTCOPY, NULL, 0);
	s->st->markers_ms = (ut_now_ns() - t0) / 1e6;
	t0 = ut_now_ns();
	if (!ret)
		ret = send_discards(s, ctl, &ndiscard);
	s->st->discard_ms = (ut_now_ns() - t0) / 1e6;
	if (ret)
		return ut_err_first(err, ret, "switching to postcopy failed");
	add_unsent(s);
	pr_info("postcopy: %llu pages discarded, %llu to push",
		(unsigned long long)ndiscard,
		(unsigned long long)ut_bitmap_count(&s->todo));
	/* The state before the commit: a VMM that cannot give it leaves
	 * the guest here, where it is resumed. */
	ret = src_save_state(s, &blob, &len, err);
	if (!ret && (ret = src_commit(s, err)))
		free(blob);
	if (ret)
		return ret;
	/* From here on the guest may run there. */
	mig_phase_enter(&s->phase, MIG_PHASE_POSTCOPY);
	/* Until COMPLETE, pages the running guest lacks exist only here. */
	ut_oom_protect(&s->oom, "it holds pages the destination's guest "
		       "still needs (postcopy)");
	s->steer.state_t0 = ut_now_ns();
	ret = src_send_state(ctl, blob, len, err);
	s->steer.state_t1 = ut_now_ns();
	s->st->state_send_ms = (s->steer.state_t1 - s->steer.state_t0) / 1e6;
	if (ret)
		return ret;
	s->postcopy = true;
	for (;;) {
		ret = src_push(s, round + 1, prev, err);
		if (!ret || s->dest_discarded || (ret = src_recover(s, err)))
			break;
	}
	if (ret)
		return ret;
	src_steer(s);	/* the switchover event, if the push beat it */
	(void)t_pause;
	s->st->downtime_ms = s->resumed.realtime_ns > rt_pause ?
		(s->resumed.realtime_ns - rt_pause) / 1e6 :
		s->resumed.load_ns / 1e6;
	s->st->state_load_ms = s->resumed.load_ns / 1e6;
	s->st->cpu_s_dest = s->resumed.cpu_ns / 1e9;
	s->st->postcopy_s = (mig_realtime_ns() - s->resumed.realtime_ns) / 1e9;
	return src_release(s, tp_session_control(s->sess));
}

/* ferry-source --recover: a new agent finishing an interrupted postcopy.
 * The VM is paused here with all of its memory and nothing is tracked:
 * the destination says what it lacks, and that is pushed. */
int src_resume_postcopy(struct mig_src *s, struct ut_err *err)
{
	struct mig_round_stats rs = { 0 };
	uint32_t state = 0;
	uint64_t hbs;
	int ret = vml_client_status(&s->vm.link, &state, &hbs);

	if (ret || state != VML_STATE_PAUSED)
		return ut_err_first(err, ret ? ret : -EINVAL, "the VM at %s is not "
				"paused: there is no interrupted postcopy to "
				"recover", s->p->vm_socket);
	/* The switchover was committed by the agent before us. */
	mig_cancel_commit(s->p->cancel, "the guest runs at the destination "
			  "(postcopy in progress)");
	mig_phase_enter(&s->phase, MIG_PHASE_POSTCOPY);
	src_steer_settle(s);
	/* The switchover was an earlier agent's: no event for it here. */
	s->steer.resumed_told = true;
	src_event_started(s);
	s->postcopy = s->committed = true;
	ut_oom_protect(&s->oom, "it holds pages the destination's guest "
		       "still needs (postcopy recovery)");
	snprintf(s->st->mode, sizeof(s->st->mode), "postcopy");
	ret = src_recover_handshake(s, err);
	if (!ret && (ret = src_senders_start(s)))
		ut_err_first(err, ret, "cannot start the sender threads");
	for (uint32_t round = 0; !ret; round++) {
		ret = src_push(s, round, &rs, err);
		if (!ret) {
			s->st->postcopy_s = (mig_realtime_ns() -
					     s->resumed.realtime_ns) / 1e9;
			return src_release(s, tp_session_control(s->sess));
		}
		ret = src_recover(s, err);
	}
	return ret;
}
