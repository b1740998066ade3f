// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The operator's side of the source engine: the limits in force (from
 * the parameters, then from a struct mig_tune that the control socket
 * changes), the bandwidth cap as a token bucket the senders share, the
 * early end of a round for a postcopy asked for now, and the events
 * stream. The main thread applies changes between the waits of a round
 * (every 250 ms at most), the senders only read the cap.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

/* The bucket holds a quarter of a second's worth: the cap holds over
 * any quarter second, and a sender never sleeps on a burst it could not
 * have avoided. The urgent thread's pages count against it (the senders
 * make up for them) but never wait: a faulting vCPU is never held back
 * by the cap. */
#define BUCKET_S 0.25
/* Sleeps in slices this long, so that an aborted round stops soon. */
#define SLICE_NS (100 * 1000000ULL)

void src_steer_init(struct mig_src *s)
{
	struct src_steer *st = &s->steer;
	struct mig_tune_now now = { 0 };

	pthread_mutex_init(&st->lock, NULL);
	atomic_store(&st->bandwidth, s->p->bandwidth_limit);
	st->downtime_ms = s->p->downtime_limit_ms;
	if (s->p->tune) {
		mig_tune_read(s->p->tune, &now);
		atomic_store(&st->bandwidth, now.bandwidth_limit);
		st->downtime_ms = now.downtime_limit_ms;
	}
	if (!st->downtime_ms)
		st->downtime_ms = 300;
	st->refill_ns = ut_now_ns();
}

void src_steer_fini(struct mig_src *s)
{
	pthread_mutex_destroy(&s->steer.lock);
}

/* Takes @bytes from the bucket; returns how long the taker owes, ns. */
static uint64_t take(struct mig_src *s, size_t bytes)
{
	struct src_steer *st = &s->steer;
	uint64_t rate, now, owed;

	atomic_fetch_add(&s->wire_bytes, bytes);
	rate = atomic_load(&st->bandwidth);
	if (!rate)
		return 0;
	pthread_mutex_lock(&st->lock);
	now = ut_now_ns();
	st->tokens += (now - st->refill_ns) / 1e9 * rate;
	if (st->tokens > rate * BUCKET_S)
		st->tokens = rate * BUCKET_S;
	st->refill_ns = now;
	st->tokens -= bytes;
	owed = st->tokens < 0 ? -st->tokens / rate * 1e9 : 0;
	pthread_mutex_unlock(&st->lock);
	return owed;
}

void src_charge(struct mig_src *s, size_t bytes)
{
	take(s, bytes);
}

void src_throttle(struct mig_src *s, size_t bytes)
{
	uint64_t rate = atomic_load(&s->steer.bandwidth);
	/* What this sender owes: until then the bytes are not its to send. */
	uint64_t wait_ns = take(s, bytes);

	/* A changed cap ends the wait: the next batch owes at the new rate. */
	while (wait_ns && !atomic_load(&s->rd.abort) &&
	       atomic_load(&s->steer.bandwidth) == rate) {
		uint64_t n = wait_ns < SLICE_NS ? wait_ns : SLICE_NS;
		struct timespec ts = { n / 1000000000ULL, n % 1000000000ULL };

		nanosleep(&ts, NULL);
		wait_ns -= n;
	}
}

/* Whether an operator's postcopy request can be taken now, and why not. */
static void tell_tune(struct mig_src *s)
{
	const char *why = NULL;
	bool ok = false;

	if (!s->p->tune)
		return;
	if (!s->can_postcopy)
		why = "the destination did not offer postcopy (its VM handed "
		      "over no userfaultfd)";
	else if (s->phase != MIG_PHASE_PRECOPY)
		why = "the migration is not in its precopy rounds";
	else
		ok = true;
	mig_tune_engine(s->p->tune, ok, why, false);
}

void src_steer(struct mig_src *s)
{
	struct src_steer *st = &s->steer;
	struct mig_tune_now now;

	if (s->p->tune && !st->settled) {
		tell_tune(s);
		mig_tune_read(s->p->tune, &now);
		atomic_store(&st->bandwidth, now.bandwidth_limit);
		if (now.downtime_limit_ms)
			st->downtime_ms = now.downtime_limit_ms;
		if (now.postcopy && !st->postcopy_asked &&
		    s->phase == MIG_PHASE_PRECOPY && s->can_postcopy) {
			st->postcopy_asked = true;
			atomic_store(&s->rd.cut, true);
			pr_info("postcopy asked for: the round ends at the next "
				"chunk");
		}
	} else if (s->p->tune) {
		/* The push after a postcopy switchover is still capped. */
		mig_tune_read(s->p->tune, &now);
		atomic_store(&st->bandwidth, now.bandwidth_limit);
	}
	if (s->postcopy && s->resumed_seen && !st->resumed_told) {
		st->resumed_told = true;
		src_event_switchover(s, "postcopy", s->resumed.realtime_ns >
				     st->pause_rt ? (s->resumed.realtime_ns -
						     st->pause_rt) / 1e6 : -1,
				     (st->state_t0 - st->pause_t) / 1e6,
				     (st->state_t1 - st->state_t0) / 1e6,
				     s->resumed.load_ns / 1e6);
	}
	if (s->postcopy && ut_now_ns() - st->last_progress_ns >= 1000000000ULL) {
		struct mig_event e;

		st->last_progress_ns = ut_now_ns();
		mig_event_begin(&e, s->p->events, "postcopy_progress");
		ut_json_u64(&e.j, "pages_left", ut_bitmap_count(&s->todo));
		ut_json_u64(&e.j, "pages_requested",
			    atomic_load(&s->urg.requests));
		mig_event_end(&e);
	}
}

void src_steer_settle(struct mig_src *s)
{
	if (s->steer.settled)
		return;
	s->steer.settled = true;
	if (s->p->tune)
		mig_tune_engine(s->p->tune, false, "the switchover has begun",
				true);
}

/* ---- events ---- */

static void limits(struct mig_event *e, struct mig_src *s)
{
	uint64_t bw = atomic_load(&s->steer.bandwidth);

	ut_json_u64(&e->j, "downtime_limit_ms", s->steer.downtime_ms);
	if (bw)
		ut_json_dbl(&e->j, "bandwidth_limit_mibs", bw / (double)UT_MiB,
			    4);
	else
		ut_json_null(&e->j, "bandwidth_limit_mibs");
}

static const char *const mode_names[] = {
	[MIG_MODE_AUTO] = "auto", [MIG_MODE_PRECOPY] = "precopy",
	[MIG_MODE_POSTCOPY] = "postcopy", [MIG_MODE_HYBRID] = "hybrid",
};

void src_event_started(struct mig_src *s)
{
	struct mig_event e;

	tell_tune(s);
	mig_event_begin(&e, s->p->events, "started");
	ut_json_str(&e.j, "mode", (unsigned int)s->p->mode <
		    UT_ARRAY_SIZE(mode_names) ? mode_names[s->p->mode] : "?");
	ut_json_u64(&e.j, "streams", s->nbulk);
	ut_json_u64(&e.j, "guest_bytes", s->vm.ram_bytes);
	ut_json_u64(&e.j, "pages", s->vm.total_pages);
	ut_json_bool(&e.j, "postcopy_offered", s->can_postcopy);
	limits(&e, s);
	mig_event_end(&e);
}

void src_event_round_begin(struct mig_src *s, uint32_t round, uint64_t pages)
{
	struct mig_event e;

	s->steer.round_t0 = ut_now_ns();
	s->steer.round_wire0 = atomic_load(&s->wire_bytes);
	mig_event_begin(&e, s->p->events, "round_begin");
	ut_json_u64(&e.j, "round", round);
	ut_json_u64(&e.j, "pages", pages);
	mig_event_end(&e);
}

void src_event_round_end(struct mig_src *s, const struct mig_round_stats *rs,
			 const struct mig_verdict *v, bool cut)
{
	struct mig_event e;

	mig_event_begin(&e, s->p->events, "round_end");
	ut_json_u64(&e.j, "round", rs->round);
	ut_json_u64(&e.j, "pages", rs->pages);
	ut_json_u64(&e.j, "data_pages", rs->data_pages);
	ut_json_u64(&e.j, "zero_pages", rs->zero_pages);
	ut_json_u64(&e.j, "dup_pages", rs->dup_pages);
	ut_json_u64(&e.j, "bytes", rs->bytes);
	ut_json_dbl(&e.j, "duration_s", rs->duration_s, 3);
	ut_json_dbl(&e.j, "bandwidth_mibs", rs->bandwidth_mibs, 2);
	ut_json_dbl(&e.j, "dirty_rate_mibs", rs->dirty_rate_mibs, 2);
	ut_json_dbl(&e.j, "predicted_downtime_ms", rs->predicted_downtime_ms,
		    2);
	limits(&e, s);
	ut_json_bool(&e.j, "cut_short", cut);
	ut_json_str(&e.j, "decision", mig_decision_name(v->decision));
	ut_json_str(&e.j, "why", mig_reason_name(v->reason));
	mig_event_end(&e);
}

void src_event_paused(struct mig_src *s, const char *mode, uint32_t round,
		      const char *why)
{
	struct mig_event e;

	mig_event_begin(&e, s->p->events, "paused");
	ut_json_str(&e.j, "mode", mode);
	ut_json_u64(&e.j, "round", round);
	ut_json_u64(&e.j, "pages", ut_bitmap_count(&s->todo));
	ut_json_str(&e.j, "why", why);
	mig_event_end(&e);
}

static void part(struct mig_event *e, const char *key, double ms)
{
	if (ms >= 0)
		ut_json_dbl(&e->j, key, ms, 2);
	else
		ut_json_null(&e->j, key);
}

void src_event_switchover(struct mig_src *s, const char *mode, double total,
			  double final_round, double state, double load)
{
	struct mig_event e;

	mig_event_begin(&e, s->p->events, "switchover");
	ut_json_str(&e.j, "mode", mode);
	part(&e, "downtime_ms", total);
	part(&e, "final_round_ms", final_round);
	part(&e, "state_ms", state);
	part(&e, "dest_load_ms", load);
	mig_event_end(&e);
}

void src_event_recovery(struct mig_src *s, const char *state,
			const char *error)
{
	mig_event_recovery(s->p->events, state, error,
			   ut_bitmap_count(&s->todo));
}
