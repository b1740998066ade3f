/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination engine's private declarations, shared by its files:
 * dest.c (entry point), dest-receive.c (receiver threads), dest-fault.c
 * (the fault thread), dest-control.c (the control stream),
 * dest-recover.c (the end of postcopy, recovery). Functions run on the
 * main thread unless they say otherwise.
 */
#ifndef FERRY_MIGRATE_DEST_INTERNAL_H
#define FERRY_MIGRATE_DEST_INTERNAL_H

#include "migrate/internal.h"

#define RX_BUF (MIG_DUP_FIXED + MIG_DUP_ENTRY * MIG_MAX_DUPS)
#define STAGE_BYTES (4u << 20)	/* COPY mode: pages received at a time */

struct mig_dst;

struct receiver {
	struct mig_dst *d;
	struct tp_stream *st;
	struct mig_worker wk;
	int ret;
	uint64_t idx[MIG_MAX_BATCH];
	struct iovec iov[MIG_MAX_BATCH];
	struct mig_dup dups[MIG_MAX_DUPS];
	uint8_t buf[RX_BUF];
	uint8_t *stage;		/* STAGE_BYTES, reused (COPY mode, postcopy) */
	bool atomic;		/* past the POSTCOPY marker: UFFDIO_COPY only */
};

/* Where the destination's threads meet, under lock: the receivers at
 * each round's barrier and at the POSTCOPY marker, the main thread
 * waiting for them or for the last requested page, and the first
 * failure of any of them. */
struct dst_meet {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int arrived;		/* receivers at the current barrier */
	uint64_t barrier_gen;		/* bumped as each barrier opens */
	unsigned int finished;		/* receivers past the final round */
	unsigned int switched;		/* receivers at the POSTCOPY marker */
	bool discards_done;		/* receivers may go on past it */
	bool failed;			/* stop: the first failure is in err */
	int error;			/* ... and its -errno */
	struct ut_err *err;		/* the caller's reason */
	/* eventfd, readable once failed: wakes the main thread's wait for
	 * the control stream, which stays up to tell the source why. */
	int wake_fd;
};

/* The engine: the main thread's own state, the pages every thread
 * shares (received, zero, faults), and where the threads meet. */
struct mig_dst {
	const struct mig_dest_params *p;
	enum mig_phase phase;		/* main thread; see phase.c */
	struct ut_oom_guard oom;	/* postcopy: the guest depends on us */
	struct tp_session *sess;	/* current session */
	bool own_sess;			/* from a reconnect: ours to free */
	bool pushing;			/* receivers start in atomic mode */
	struct mig_resumed resumed;	/* as sent, for a reconnecting source */
	struct mig_vm vm;
	struct mig_place place;		/* the plan, from WELCOME on */
	uint64_t unit_bytes;		/* RAM fed 4 KiB units (stats) */
	bool huge_units;		/* MIG_FEAT_HUGE_UNITS accepted */
	struct mig_hp_pools hp;		/* pools grown for the VM's RAM */
	unsigned int nbulk;
	struct receiver *rx;
	struct ut_bitmap received;	/* pages that hold data from the wire */
	struct dst_meet meet;		/* main, receivers, fault thread */
	/* Cancelled before the state arrived: by the operator here
	 * (cancelled, why: "SIGINT"), or by the source (peer_cancelled). */
	bool cancelled, peer_cancelled;
	char why[32];
	/* Postcopy. */
	struct gm_uffd uffd;		/* the incoming VMM's */
	bool can_postcopy;		/* uffd registered on all of its RAM */
	/* MISSING and MINOR on a shared backing: a page is written into
	 * the page cache through our own mapping and mapped into the VMM
	 * with UFFDIO_CONTINUE once final; the VMM cannot see it before.
	 * False: MISSING only, pages placed by UFFDIO_COPY. */
	bool minor;
	struct ut_bitmap claimed;	/* minor: a thread is placing it */
	/* MIG_FEAT_SUBPAGES_KEEP accepted: a huge page the source discards
	 * stays in the page cache (held), unmapped, for its SUBPAGES. */
	bool keep;
	/* MIG_FEAT_DISCARD_EARLY accepted: DISCARD in a precopy round. */
	bool discard_early;
	/* MIG_FEAT_ROUND_ACK accepted: the end of a round the guest runs
	 * through is answered (mig_round_acked()). */
	bool round_ack;
	struct ut_bitmap held;
	struct ut_bitmap zero;		/* known zero: placed locally on fault */
	/* Copy mode, a region fed units smaller than its huge pages: the
	 * huge pages being assembled in postcopy, one 2 MiB stage each
	 * (NULL: none), placed whole with UFFDIO_COPY and freed once all
	 * of their units are in. */
	uint8_t *_Atomic *hstage[MIG_MAX_REGIONS];
	/* A region fed units: per huge page, how many of its first units
	 * are known complete (received or zero), so that the check after
	 * each unit does not scan a 1 GiB page's 262144 bits again.
	 * Completeness only grows in postcopy; a discard lowers it. */
	_Atomic uint32_t *ucur[MIG_MAX_REGIONS];
	struct mig_faults faults;	/* asked of the source, not placed */
	uint8_t *zero_page;		/* a zero huge page for hugetlb */
	/* KSM hints (dest-ksm.c): pages marked by any thread, handed to
	 * the VMM by the main thread. */
	struct dst_ksm {
		bool on;		/* anonymous RAM, hints wanted, ADVISE */
		struct ut_bitmap marked; /* landed as DUP or zero, not yet
					  * advised */
		uint64_t hinted;	/* pages marked and advised */
		uint64_t ranges;	/* ADVISE MERGEABLE ranges sent */
		uint64_t bytes;		/* ... their bytes (gaps included) */
		bool source;		/* MIG_FEAT_KSM_PAGES accepted */
		/* Pages the source's KSM had merged (KSM messages), not
		 * yet landed: marked once they have, since advice splits
		 * the VMM's mapping and a UFFDIO_COPY of a run must not
		 * cross a split (ENOENT). Main thread. */
		struct ut_bitmap pending;
		uint64_t from_source;	/* of those, landed and marked */
	} ksm;
	bool heat_revise;		/* MIG_FEAT_HEAT_REVISE accepted */
	struct faulter {
		struct mig_worker wk;
		uint8_t *buf;		/* urgent pages land here first */
		bool resend;		/* ask again for outstanding pages */
		const char *priority;	/* mig_worker_urgent()'s answer */
	} ft;
};

static inline uint64_t region_pages(const struct mig_dst *d, uint32_t r)
{
	return mig_region_pages(&d->vm.layout, r);
}

/* The VMM's address of page @idx of region @r (what the uffd acts on). */
static inline uint64_t vmm_addr(const struct mig_dst *d, uint32_t r,
				uint64_t idx)
{
	return d->vm.link.hello.regions[r].host_addr +
	       idx * d->vm.layout.r[r].page_size;
}

/* Asks the VMM to apply @advice (VML_ADVISE_*) to the pages set in @z
 * of an anonymous region, in runs; *@nr_ranges (if given) receives the
 * number of runs. Main thread (the VM link). Returns 0 or -errno. */
int dst_advise_bits(struct mig_dst *d, const struct mig_zero *z,
		    uint32_t advice, uint32_t *nr_ranges);

/* ---- KSM hints (dest-ksm.c) ---- */

/* Decides whether to give hints (anonymous RAM, a VMM that takes
 * ADVISE, not p->no_ksm_hints) and says once where KSM cannot help.
 * 0 or -ENOMEM. */
int dst_ksm_init(struct mig_dst *d);
void dst_ksm_fini(struct mig_dst *d);
/* Whether dst_ksm_init() will give hints: what WELCOME offers
 * MIG_FEAT_KSM_PAGES on. */
bool dst_ksm_wanted(const struct mig_dst *d);
/* A KSM message (MIG_FEAT_KSM_PAGES): the pages the source's KSM had
 * merged, marked like duplicates. Main thread; 0 or -EPROTO. */
int dst_ksm_source(struct mig_dst *d, const uint8_t *buf, size_t len,
		   struct ut_err *err);
/* Page @idx of region @r landed as a duplicate or zero. Any thread. */
void dst_ksm_mark(struct mig_dst *d, uint32_t r, uint64_t idx);
/* Hands the marked pages to the VMM (ADVISE MERGEABLE). Main thread. */
void dst_ksm_flush(struct mig_dst *d);
/* At completion: the last hints, then KSM's state and the VMM's
 * footprint into @st->ksm. Main thread. */
void dst_ksm_report(struct mig_dst *d, struct mig_stats *st);

/* ---- the operator's view (dest-steer.c) ---- */

/* The progress callback, if any, with where the engine is. */
void dst_report(struct mig_dst *d);
/* Events (nothing without p->events). */
void dst_event_started(struct mig_dst *d);
void dst_event_switchover(struct mig_dst *d, bool postcopy, double load_ms);
/* A postcopy_progress event, and a report. */
void dst_event_progress(struct mig_dst *d);
void dst_event_recovery(struct mig_dst *d, const char *state,
			const char *error);

/* ---- THP collapse (dest-collapse.c) ---- */

/* Every page in place: collapses the VMM's 4 KiB shmem RAM into huge
 * pages, 2 MiB range by range, within d->p->thp_collapse_ms, and fills
 * @t. Never fails the migration, which is done. */
void dst_collapse(struct mig_dst *d, struct mig_thp_stats *t);

/* ---- placement (dest-place.c) ---- */

/* Any thread: wakes dst_finish_postcopy() once nothing is outstanding. */
void dst_wake_if_idle(struct mig_dst *d);
/* Any thread: places page @idx of region @r atomically (@buf, or zeros
 * when NULL): written through our mapping then UFFDIO_CONTINUE in minor
 * mode, else UFFDIO_COPY or UFFDIO_ZEROPAGE; another placement winning
 * is 0. */
int dst_place(struct mig_dst *d, uint32_t r, uint64_t idx, const void *buf);
/* Any thread, minor mode, a region fed units smaller than its pages
 * (MIG_FEAT_PAGESIZES): whether every unit of the huge page whose first
 * unit is @u0 holds data or is zero; and mapping that page into the VMM
 * (UFFDIO_CONTINUE of the whole of it), which serves its fault. */
bool dst_unit_complete(struct mig_dst *d, uint32_t r, uint64_t u0);
int dst_unit_map(struct mig_dst *d, uint32_t r, uint64_t u0);
/* Main thread, copy mode, at the postcopy switch after the discards
 * (receivers at their marker, no fault thread yet): every huge page fed
 * units that is not whole leaves the page cache, so that the guest
 * faults on it, what it held of its units kept in its stage. */
int dst_units_stage_partial(struct mig_dst *d);
/* The stages: made for the regions fed units (copy mode) and freed. */
int dst_units_init(struct mig_dst *d);
void dst_units_fini(struct mig_dst *d);
/* Any thread: a zero page, the way the backing's page size allows. */
int dst_place_zero(struct mig_dst *d, uint32_t r, uint64_t idx);
/* Any thread, postcopy, minor mode: applies SUBPAGES @sp (its data
 * sub-pages at @data, in order) to the held page and maps it; another
 * placement winning is 0. */
int dst_place_sub(struct mig_dst *d, const struct mig_subpages *sp,
		  const uint8_t *data);

/* Any thread (anonymous RAM: the main thread, which asks its VMM over
 * the VM link): drops the pages of @z the destination holds (they
 * changed at the source since it sent them): no longer received, each
 * run of them one hole (or one DONTNEED range); a kept huge page stays,
 * held for its SUBPAGES. Returns 0 or -errno. */
int dst_discard(struct mig_dst *d, const struct mig_zero *z);

/* ---- receivers (dest-receive.c) ---- */

/* Starts one receiver per bulk stream (atomic from the start when
 * d->pushing). Returns 0 or -errno; dst_receivers_join() undoes it. */
int dst_receivers_start(struct mig_dst *d);
/* Joins every receiver; 0 when all finished the final round. */
int dst_receivers_join(struct mig_dst *d);
/* Wakes every receiver out of its stream and joins it. */
int dst_receivers_stop(struct mig_dst *d);

/* ---- the fault thread (dest-fault.c) ---- */

int dst_faulter_start(struct mig_dst *d);
/* Minor mode, after the resume: maps every page received before the
 * switchover, so that the guest's first touch of it is no fault. Runs
 * beside the fault thread (a page it maps first is EEXIST here). */
void dst_map_received(struct mig_dst *d);
/* Accepts none started. */
void dst_faulter_stop(struct mig_dst *d);
/* MISSING (and MINOR where the kernel has it for every backing) on all
 * of the incoming RAM; d->can_postcopy and d->minor say what. */
void dst_uffd_setup(struct mig_dst *d);
void dst_uffd_release(struct mig_dst *d);

/* ---- the control stream (dest-control.c) ---- */

/* Same regions (gpa and size) and page sizes; same regions only. */
bool dst_same_layout(const struct mig_layout *a, const struct mig_layout *b);
bool dst_same_regions(const struct mig_layout *a, const struct mig_layout *b);
/* HELLO checked, WELCOME sent. */
int dst_welcome(struct mig_dst *d, struct tp_stream *ctl, struct ut_err *err);
/* After our cancel: waits (bounded) for the source's answer or close. */
void dst_linger(struct tp_stream *ctl);
/* Serves the control stream until the state (*@blob, malloc'ed) is
 * here; *@postcopy: the source switched to postcopy. */
int dst_recv_state(struct mig_dst *d, struct tp_stream *ctl, void **blob,
		   size_t *len, bool *postcopy, struct ut_err *err);
/* Loads the state, resumes the guest, sends RESUMED. */
int dst_resume_guest(struct mig_dst *d, struct tp_stream *ctl,
		     const void *blob, size_t len, double cpu0,
		     struct mig_stats *st, struct ut_err *err);

/* ---- the end of postcopy (dest-recover.c) ---- */

/* A new session from d->p->reconnect, threads restarted on it. */
int dst_recover(struct mig_dst *d, struct mig_stats *st, struct ut_err *err);
/* Waits until every page is here (recovering meanwhile), sends
 * COMPLETE with the fault figures. */
int dst_finish_postcopy(struct mig_dst *d, struct mig_stats *st, struct ut_err *err);

#endif /* FERRY_MIGRATE_DEST_INTERNAL_H */
