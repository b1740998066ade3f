// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * What the destination tells an operator: its progress (for the control
 * socket's status) and its events. The main thread reports between its
 * waits: on each control message before the state, and about every
 * second while the postcopy pages come in.
 */
#include "config.h"

#define LOG_PREFIX "dest"
#include "migrate/dest-internal.h"

/* Pages here: with data from the wire, or known to be zero. */
static uint64_t pages_held(struct mig_dst *d)
{
	uint64_t n = ut_bitmap_count(&d->received) + ut_bitmap_count(&d->zero);

	return n < d->vm.total_pages ? n : d->vm.total_pages;
}

void dst_report(struct mig_dst *d)
{
	struct mig_progress pr = { .phase = mig_phase_name(d->phase) };
	uint64_t got;

	if (!d->p->progress || !d->vm.total_pages)
		return;
	got = pages_held(d);
	pr.round_bytes_total = d->vm.ram_bytes;
	pr.round_bytes_done = got * (d->vm.ram_bytes / d->vm.total_pages);
	pr.bytes_sent = pr.round_bytes_done;
	pr.pages_left = d->vm.total_pages > got ? d->vm.total_pages - got : 0;
	pr.faults = atomic_load(&d->faults.nlat);
	pr.pages_requested = pr.faults + mig_faults_outstanding(&d->faults);
	pr.streams = d->nbulk;
	d->p->progress(&pr, d->p->progress_arg);
}

void dst_event_started(struct mig_dst *d)
{
	struct mig_event e;

	mig_event_begin(&e, d->p->events, "started");
	ut_json_u64(&e.j, "streams", d->nbulk);
	ut_json_u64(&e.j, "guest_bytes", d->vm.ram_bytes);
	ut_json_u64(&e.j, "pages", d->vm.total_pages);
	ut_json_bool(&e.j, "postcopy_offered", d->can_postcopy);
	mig_event_end(&e);
}

void dst_event_switchover(struct mig_dst *d, bool postcopy, double load_ms)
{
	struct mig_event e;

	mig_event_begin(&e, d->p->events, "switchover");
	ut_json_str(&e.j, "mode", postcopy ? "postcopy" : "precopy");
	ut_json_dbl(&e.j, "load_ms", load_ms, 2);
	ut_json_u64(&e.j, "pages_left", d->vm.total_pages - pages_held(d));
	mig_event_end(&e);
}

void dst_event_progress(struct mig_dst *d)
{
	struct mig_event e;
	uint64_t got = pages_held(d);

	dst_report(d);
	mig_event_begin(&e, d->p->events, "postcopy_progress");
	ut_json_u64(&e.j, "faults", atomic_load(&d->faults.nlat));
	ut_json_u64(&e.j, "pages_requested", atomic_load(&d->faults.nlat) +
		    mig_faults_outstanding(&d->faults));
	ut_json_u64(&e.j, "pages_left", d->vm.total_pages > got ?
		    d->vm.total_pages - got : 0);
	mig_event_end(&e);
}

void dst_event_recovery(struct mig_dst *d, const char *state,
			const char *error)
{
	mig_event_recovery(d->p->events, state, error,
			   mig_faults_outstanding(&d->faults));
}
