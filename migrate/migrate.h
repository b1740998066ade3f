/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * migrate: the migration engines. The source attaches to a running VMM over
 * the VM link and streams its memory to a destination over a transport
 * session; the destination attaches to an incoming VMM and fills its
 * memory. Precopy: rounds of dirty pages until the predicted downtime fits
 * the limit, then pause, last pages, state, resume at the destination.
 *
 * Both engines run in the calling thread (plus one thread per bulk
 * stream) and return 0 or -errno, with one line in @err saying why. The
 * source VM is resumed on every failure before switchover; it is released
 * (told to quit) only after the destination reports the guest running.
 */
#ifndef FERRY_MIGRATE_H
#define FERRY_MIGRATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guestmem/guestmem.h"
#include "migrate/wire.h"
#include "vmlink/vmlink.h"
#include "transport/transport.h"
#include "util/err.h"
#include "util/util.h"

#define MIG_MAX_ROUNDS 64


struct mig_round_stats {
	uint32_t round;
	uint64_t pages;		/* pages this round covered */
	uint64_t data_pages;	/* sent as data */
	uint64_t zero_pages;	/* sent as zero bits */
	uint64_t dup_pages;	/* sent as references */
	/* 2 MiB pages sent as their changed 4 KiB sub-pages (subpages of
	 * them as data), and dirty ones found unchanged (nothing sent). */
	uint64_t delta_pages, subpages, same_pages;
	uint64_t bytes;		/* on the wire, all kinds */
	double duration_s;
	double dirty_rate_mibs;	/* guest writes during the round */
	double bandwidth_mibs;	/* bytes / duration */
	double predicted_downtime_ms; /* at the end of the round */
	/* MIG_FEAT_ROUND_ACK: the destination placed the round before it
	 * ended; the longest a stream waited for that word after its last
	 * message of the round (ms). */
	bool acked;
	double ack_wait_ms;
};

struct mig_stats {
	char outcome[32];	/* "completed", "cancelled", "failed" */
	double total_s;		/* start to release of the source VM */
	double setup_s;		/* start to the first page sent */
	double downtime_ms;	/* vCPU pause (source) to resume (dest) */
	double state_load_ms;	/* destination load-state + resume */
	/* The switchover piece by piece, each side its own (ms): */
	double pause_ms;	/* source: PAUSE sent to the VMM's reply */
	double harvest_ms;	/* source: the last dirty-log read, paused */
	double state_save_ms;	/* source: SAVE_STATE sent to the blob in hand */
	/* source, postcopy: the rest of the stop, paused: the empty round
	 * whose markers switch the receivers, the DISCARD messages, and the
	 * state blob onto the control stream. */
	double markers_ms, discard_ms, state_send_ms;
	uint64_t state_bytes;	/* the VM's state blob (both sides) */
	double drain_ms;	/* destination: state in to LOAD_STATE (precopy:
				 * the last pages placed, the uffd released) */
	double load_ms;		/* destination: LOAD_STATE alone */
	double resume_ms;	/* destination: RESUME alone */
	uint64_t guest_bytes;	/* guest RAM */
	uint64_t bytes_data;	/* page payload */
	uint64_t bytes_zero;	/* zero bitmaps */
	uint64_t bytes_dup;	/* duplicate references */
	uint64_t bytes_proto;	/* headers, control, state, framing */
	uint64_t bytes_total;	/* everything the source sent */
	double throughput_mibs;	/* bytes_total / total_s */
	double cpu_s_source, cpu_s_dest;
	uint32_t nbulk;
	char mode[16];		/* "precopy" or "postcopy": how it ended */
	/* Destination: how its userfaultfd places pages, "minor" (written
	 * into the page cache, then UFFDIO_CONTINUE), "copy" (UFFDIO_COPY)
	 * or "none" (no userfaultfd: no postcopy). */
	char placement[8];
	/* Postcopy: the scheduling the fault path's thread got (the
	 * destination's fault thread, the source's urgent thread), as
	 * "SCHED_FIFO 1" or "normal (...)"; "" without postcopy. */
	char fault_priority[40];
	/* Guest RAM in regions whose page sizes differ at the two ends,
	 * which travelled in 4 KiB units (MIG_FEAT_PAGESIZES); 0: none. */
	uint64_t unit_bytes;
	/* Destination: huge pages it added to the pools for the VM's RAM
	 * (--reserve-hugepages), given back when it ended. */
	uint64_t hugepages_added;
	/* Source, anonymous RAM whose destination takes KSM hints
	 * (MIG_FEAT_KSM_PAGES): the pages KSM had merged here, told it
	 * (ksm_told false: not agreed, or kpageflags unreadable). */
	bool ksm_told;
	uint64_t ksm_source_pages;
	/* Postcopy (zero when the migration ended in precopy). */
	double postcopy_s;	/* resume at the destination to completion */
	uint64_t pages_pushed;	/* sent in the background after switchover */
	/* Source: the push waited this long for RESUMED after the state
	 * went (-1: it did not wait, --push-before-resume; 0 under
	 * --recover, whose guest already runs there). */
	double push_wait_ms;
	uint64_t pages_requested; /* sent because the destination faulted */
	uint64_t faults;	/* guest faults the destination served */
	uint64_t faults_before_resume; /* destination only: of those, served
					* before the resume, i.e. the VMM's
					* own while it loaded its state */
	double fault_p50_us, fault_p99_us, fault_max_us;
	double vcpu_blocked_ms;	/* sum of fault service times */
	uint32_t recoveries;	/* connections re-established in postcopy */
	uint64_t fault_hist[UT_HIST_BUCKETS]; /* log2 us, like QEMU's */
	uint32_t nrounds;
	struct mig_round_stats rounds[MIG_MAX_ROUNDS];
	/* Source, auto: the look at the guest's dirty rate early in round 0
	 * (policy.c mig_policy_early), where one was taken. */
	struct mig_early_stats {
		bool looked;
		bool cut;		/* round 0 cut short for postcopy */
		int error;		/* -errno: the peek failed, no figures */
		double at_s;		/* into the round */
		uint64_t dirty_bytes;	/* written by then */
		uint64_t sent_bytes;	/* sent by then */
	} early;
	/* Placement: the destination's plan (both sides report it) and, at
	 * the destination after completion, where the pages are. */
	struct mig_place_stats {
		char policy[64];	/* "" when no plan was made */
		char note[160];		/* the plan's remark, or "" */
		uint32_t nr_nodes;	/* the destination's */
		uint32_t node_id[GM_MAX_NODES];
		uint64_t planned[GM_MAX_NODES];	/* bytes, by node id */
		bool checked;		/* the figures below are measured */
		uint64_t placed[GM_MAX_NODES];	/* bytes in memory, by id */
		uint64_t pages_present;	/* pages in memory */
		uint64_t pages_as_planned; /* of those, on the planned node */
		uint64_t pages_absent;	/* never allocated (zero pages) */
		/* tiered: what the source's HEAT said and where it went */
		uint32_t heat_samples;	/* 0: no hotness known */
		/* tiered, MIG_FEAT_HEAT_REVISE: the heat map sent again in
		 * precopy (source: HEATs sent after the first; destination:
		 * plans revised with them) and what the revisions moved
		 * between nodes in the plan (chunks, bytes) */
		uint32_t revisions;
		uint64_t revised_chunks, revised_bytes;
		/* tiered, postcopy: chunks the guest faulted on moved up to
		 * the top tier in the plan, each trading places with one it
		 * had not touched (mig_place_fault) */
		uint64_t promoted_chunks;
		uint64_t hot_chunks;	/* chunks hot (written or read) in samples */
		uint64_t hot_on_top;	/* of those, planned on the top tier */
		/* source, tiered: where the hotness came from ("writes and
		 * reads (DAMON ...)" or "writes only (why)"), and the
		 * samples in which a chunk was read but not written */
		char hotness[200];
		uint64_t read_only_hot;
	} place;
	/* Destination at completion: KSM's state, the hints given for
	 * anonymous RAM (MADV_MERGEABLE through the VMM) and the footprint
	 * then (pages_sharing is the host's, Pss the VMM's). */
	struct mig_ksm_stats {
		bool reported;		/* filled in (a completed dest) */
		bool anon;		/* the guest's RAM is anonymous */
		bool hints;		/* some MERGEABLE advice was given */
		int32_t run;		/* /sys/kernel/mm/ksm/run, -1 unknown */
		int32_t merge_across_nodes;	/* -1 unknown */
		uint64_t hinted_pages;	/* duplicate and zero pages advised */
		uint64_t advised_ranges; /* ranges the VMM advised */
		uint64_t advised_bytes;	/* their bytes */
		uint64_t source_pages;	/* of the hinted pages: merged by
					 * KSM at the source, as it said */
		int64_t pages_sharing;	/* -1 unknown */
		int64_t vmm_pss_kib;	/* -1 unknown */
	} ksm;
	/* Destination, 4 KiB shmem RAM: the collapse into transparent huge
	 * pages once every page is in place (dest-collapse.c). */
	struct mig_thp_stats {
		bool tried;		/* false: nothing to say (no such RAM) */
		char shmem_enabled[16];	/* this host's word */
		char why[128];		/* why no range was collapsed, or "" */
		uint32_t ranges;	/* 2 MiB ranges asked to collapse */
		uint32_t collapsed;	/* of those, done */
		uint32_t failed;	/* refused by the kernel */
		uint32_t sparse;	/* skipped: pages never populated */
		uint32_t misaligned;	/* regions the VMM cannot map huge */
		int first_error;	/* -errno of the first refusal */
		bool cut;		/* the budget ran out first */
		double ms;		/* the time it took */
		uint64_t shmem_bytes;	/* 4 KiB shmem guest RAM */
		int64_t huge_bytes;	/* of the VMM's shmem, mapped huge; -1 */
	} thp;
};

/*
 * How an agent reaches guest RAM. MAP reads and writes through its own
 * mapping of the VMM's memory (no copy). COPY uses pread/pwrite on the
 * backing fd into a buffer the agent keeps warm: one kernel copy, but no
 * first touch of every page in a second address space, which costs more
 * than the copy under nested (shadow-paged) virtualisation. AUTO picks
 * COPY for 4K backings and MAP for huge pages.
 */
enum mig_mem_access {
	MIG_MEM_AUTO = 0,
	MIG_MEM_MAP,
	MIG_MEM_COPY,
};

/* When the source switches over (see ferry-source --mode). */
enum mig_mode {
	MIG_MODE_AUTO = 0,	/* the switchover of least downtime (policy.c) */
	MIG_MODE_PRECOPY,	/* precopy; cancel when it does not converge */
	MIG_MODE_POSTCOPY,	/* switch over at once, pages follow */
	MIG_MODE_HYBRID,	/* one full precopy round, then postcopy */
};

/* Progress, called by the engine's main thread while it works (at least
 * every 250 ms in a round) and at each change of phase. The destination
 * fills what it knows (phase, bytes received as bytes_sent, faults). */
struct mig_progress {
	const char *phase;	/* static: "setup", "precopy", "switchover",
				 * "postcopy", "recovering", or how it ended */
	uint32_t round;
	uint64_t round_bytes_done, round_bytes_total; /* guest bytes */
	uint64_t bytes_sent;	/* wire, whole migration (dest: received) */
	/* Page payload, zero bitmaps, duplicate references: as of the last
	 * round that ended. */
	uint64_t bytes_data, bytes_zero, bytes_dup;
	uint64_t pages_left;	/* to send in this round (postcopy: push) */
	double dirty_rate_mibs, throughput_mibs, predicted_downtime_ms;
	double round_rate_mibs;	/* this round's wire bytes / its time */
	uint64_t downtime_limit_ms; /* in force now */
	uint64_t bandwidth_limit; /* bytes/s in force now; 0: none */
	uint64_t faults;	/* postcopy faults served (dest) */
	uint64_t pages_requested; /* pages asked for by the destination */
	uint32_t recoveries;	/* postcopy reconnections */
	uint32_t streams;	/* bulk streams of the session */
	bool final;
};
typedef void (*mig_progress_fn)(const struct mig_progress *p, void *arg);

/*
 * Cancelling a running migration from another thread (a signal thread, a
 * control socket). The caller owns the struct: init before the engine
 * runs, fini after it returned. A request before the switchover is
 * committed makes the engine stop, leave the guest where it ran before
 * (the source VM resumed, the incoming one discarded), tell the peer why
 * and return -ECANCELED; once the switchover is committed (the state has
 * left the source; the guest runs at the destination) it is refused.
 */
struct mig_cancel {
	pthread_mutex_t lock;
	bool requested;		/* under lock */
	bool committed;		/* under lock: the engine passed the point */
	const char *committed_to; /* under lock: what (a static string) */
	char reason[32];	/* under lock: "SIGINT", ... */
	int fd;			/* eventfd, readable once requested */
};

/* Returns 0 or -errno (no eventfd). */
int mig_cancel_init(struct mig_cancel *c);
/* Accepts NULL and a struct whose init failed. */
void mig_cancel_fini(struct mig_cancel *c);
/* Any thread, any number of times. Returns 0 when the engine will stop
 * (@reason, copied, names what asked: "SIGINT"), -EALREADY when it was
 * asked already, -EBUSY when the switchover is committed: nothing
 * changes, the migration goes on, and *@refused (unless @refused is NULL)
 * says why in a static string ("the guest runs at the destination
 * (postcopy in progress)"). */
int mig_cancel_request(struct mig_cancel *c, const char *reason,
		       const char **refused);

/* ---- placement at the destination (placement.c) ---- */

/* What --placement asks for. */
enum mig_place_kind {
	MIG_PLACE_NONE = 0,	/* the kernel's default: first touch */
	MIG_PLACE_LOCAL,	/* the nodes of the incoming VMM's CPUs */
	MIG_PLACE_BIND,		/* @nodes, filled in ascending order */
	MIG_PLACE_INTERLEAVE,	/* @nodes, chunk by chunk in turn */
	MIG_PLACE_TIERED,	/* hottest chunks on the top tier, rest below */
	MIG_PLACE_CELLS,	/* RAM region (guest cell) i on cell_node[i] */
};

struct mig_place_policy {
	enum mig_place_kind kind;
	uint64_t nodes;		/* BIND, INTERLEAVE: mask of node ids */
	uint32_t fast_share;	/* TIERED: percent of guest RAM on the top
				 * tier; 0: as much as its free memory holds */
	uint32_t ncells;	/* CELLS */
	uint8_t cell_node[MIG_MAX_REGIONS];
};

/* Parses "local", "bind:NODES", "interleave:NODES", "tiered", "cells:N,N"
 * (NODES as "0-1,3"). Returns 0, or -EINVAL with @err saying why. */
int mig_place_parse(const char *s, struct mig_place_policy *p,
		    struct ut_err *err);
/* The canonical text of @p ("bind:1", "tiered fast-share 10%"). */
void mig_place_format(const struct mig_place_policy *p, char *buf,
		      size_t len);

/* Placement works on chunks (MIG_CHUNK, wire.h): 2 MiB, or the page
 * size when larger, the last chunk of a region possibly shorter. */

struct mig_plan_region {
	uint64_t chunk;		/* bytes per chunk */
	uint32_t nchunks;
	uint8_t *node;		/* node id of each chunk (owned) */
};

struct mig_plan {
	struct mig_place_policy pol;
	uint32_t nr;			/* regions */
	struct mig_plan_region r[MIG_MAX_REGIONS];
	uint64_t planned[GM_MAX_NODES];	/* bytes by node id */
	char note[160];			/* a remark for the user, or "" */
	/* A plan refused for want of huge pages: the nodes it looked at,
	 * the pages of short_psz it needed there (0: not refused so). */
	uint64_t short_nodes, short_pages, short_psz;
};

/* What a plan is made from. */
struct mig_plan_input {
	const struct gm_topo *topo;	/* the destination host */
	const struct mig_layout *layout; /* the guest's RAM regions */
	uint64_t local_nodes;	/* nodes of the incoming VMM's CPUs */
	uint64_t reserve;	/* bytes of 4 KiB memory left free per node */
	/* TIERED: per region, a heat per chunk (more is hotter), or NULL
	 * (no hotness known: the first chunks count as the hottest). */
	const uint8_t *const *heat;
	/* A revision (the heat changed in precopy): per region, non-zero
	 * for each chunk that keeps its node in @prev (some of its pages
	 * are allocated there already, and pages are never moved); NULL:
	 * a first plan. Pinned chunks count against their node's room and,
	 * on the top tier, against the fast share, before the others are
	 * handed out by heat. */
	const uint8_t *const *pinned;
	const struct mig_plan *prev;
};

/*
 * Computes where each chunk of guest RAM goes under @pol: a pure
 * function of its inputs. Refuses (-ENOSPC, @err one line naming the
 * policy, the page size, the need and what the nodes have) a plan whose
 * pages do not fit the named nodes' free memory or huge page pools, and
 * (-EINVAL) one naming a node the host lacks. On success the caller owns
 * @pl (mig_plan_fini). Any thread.
 */
int mig_plan_make(struct mig_plan *pl, const struct mig_plan_input *in,
		  const struct mig_place_policy *pol, struct ut_err *err);
/* Accepts a zeroed or failed plan. */
void mig_plan_fini(struct mig_plan *pl);
/* What a revision changed: chunks whose node differs between @a and @b
 * (plans of the same layout @l) and their bytes. */
struct mig_plan_delta {
	uint32_t chunks;
	uint64_t bytes;
};
void mig_plan_diff(const struct mig_plan *a, const struct mig_plan *b,
		   const struct mig_layout *l, struct mig_plan_delta *out);
/*
 * Whether the heat map @b (@sb samples) differs materially from @a (@sa
 * samples), @n chunks each: at least 1% of the chunks (and one) whose
 * write frequency (heat / samples) moved by a quarter or more. A map of
 * no samples differs from one with some. Pure.
 */
bool mig_heat_material(const uint8_t *a, uint32_t sa, const uint8_t *b,
		       uint32_t sb, uint32_t n);
/*
 * One precopy round folded into the heat map @heat (@n chunks, *@samples
 * samples): what is there fades by a quarter and the round counts as
 * MIG_HEAT_ROUND samples, so that a chunk written in every round stays
 * at heat = samples, one no longer written cools to 0, and the samples
 * settle at 13 (the map stays within HEAT's bounds: heat <= samples).
 * @written[c] non-zero: chunk c had a written page in the round. Pure.
 */
#define MIG_HEAT_ROUND 4
void mig_heat_fold(uint8_t *heat, const uint8_t *written, uint32_t n,
		   uint32_t *samples);
/* The nodes of @t's top memory tier (the lowest tier id among nodes with
 * memory); without tiers, the nodes with CPUs. A mask of node ids. */
uint64_t mig_plan_top_tier(const struct gm_topo *t);
/* The node of the byte at offset @off of region @r under @pl. */
static inline unsigned int mig_plan_node(const struct mig_plan *pl,
					 uint32_t r, uint64_t off)
{
	return pl->r[r].node[off / pl->r[r].chunk];
}

/* The outcome after completion: what landed where. */
struct mig_place_report {
	uint64_t placed[GM_MAX_NODES];	/* bytes in memory, by node id */
	uint64_t pages_present;		/* pages in memory */
	uint64_t pages_as_planned;	/* of those, on their planned node */
	uint64_t pages_absent;		/* holes: zero pages never allocated */
};

/*
 * Applies @pl to guest RAM as this agent maps it (@map[i] for region i):
 * one mbind per run of chunks bound to the same node, before any page is
 * written, so that pages land there when first allocated. Returns 0 or
 * -errno with @err filled.
 */
int mig_plan_apply(const struct mig_plan *pl, struct gm_region *map,
		   struct ut_err *err);
/* Asks where the pages of every region are and compares with @pl. */
int mig_plan_check(const struct mig_plan *pl, struct gm_region *map,
		   struct mig_place_report *rep, struct ut_err *err);
/*
 * Limits an operator changes while the source runs (the control socket).
 * The caller owns it: init before mig_source_run(), fini after; any
 * thread may call the setters, the engine reads at least every 250 ms.
 */
struct mig_tune {
	pthread_mutex_t lock;
	uint64_t downtime_limit_ms;	/* under lock; 0: the default */
	uint64_t bandwidth_limit;	/* under lock; bytes/s, 0: none */
	bool postcopy_requested;	/* under lock */
	/* under lock, the engine's: whether postcopy can start now, and
	 * why not (a static string) when it cannot */
	bool postcopy_ok;
	const char *postcopy_why;
	bool settled;		/* under lock: past the switchover: limits
				 * no longer matter */
};

/* @downtime_ms, @bandwidth: the starting values (0: default, none). */
int mig_tune_init(struct mig_tune *t, uint64_t downtime_ms,
		  uint64_t bandwidth);
void mig_tune_fini(struct mig_tune *t);
/* Any thread. 0, -EINVAL (out of range: 1 ms to 10 min, 0 or at least
 * 64 KiB/s), or -EBUSY past the switchover (*@why says so). */
int mig_tune_set_downtime(struct mig_tune *t, uint64_t ms, const char **why);
int mig_tune_set_bandwidth(struct mig_tune *t, uint64_t bytes_per_s,
			   const char **why);
/* Asks for the switch to postcopy now (at the next chunk boundary).
 * 0, -EALREADY, or -EBUSY / -ENOTSUP with *@why saying why not (past
 * the switchover; the destination did not offer postcopy). */
int mig_tune_postcopy(struct mig_tune *t, const char **why);
/* What is in force now. */
struct mig_tune_now {
	uint64_t downtime_limit_ms;	/* 0: the default */
	uint64_t bandwidth_limit;	/* bytes/s; 0: none */
	bool postcopy;			/* the operator asked for it */
};
/* Any thread. */
void mig_tune_read(struct mig_tune *t, struct mig_tune_now *now);

/*
 * Machine-readable progress: one JSON object per line (NDJSON) per
 * event, each with "event", "seq" (from 0, no gaps), "time" (Unix
 * seconds) and "role". Any thread may emit; a line is written with one
 * write() under a lock, so lines never interleave. When a write fails (a
 * full file system) the sink says so once with pr_err, writes nothing
 * more, and the migration goes on; mig_events_close() returns the error.
 */
struct mig_events;

/* Opens @path for writing (truncated; "-": stdout). Returns 0 or -errno
 * (with @err filled). */
int mig_events_open(struct mig_events **out, const char *path,
		    const char *role, struct ut_err *err);
/* Closes; returns 0, or the first write error (-errno) and *@written
 * (unless NULL) the events written before it. Accepts NULL. */
int mig_events_close(struct mig_events *ev, uint64_t *written);

/* One event being built: begin, members with ut_json_*(&e.j, ...), end.
 * With a NULL sink every call does nothing. */
struct mig_event {
	struct mig_events *ev;
	struct ut_json j;
	char buf[1536];
};
void mig_event_begin(struct mig_event *e, struct mig_events *ev,
		     const char *type);
void mig_event_end(struct mig_event *e);

/* Makes a new session to the same peer after a postcopy connection was
 * lost (the source connects, the destination accepts). Returns 0 and
 * *@out, which the engine then owns, or -errno with @err filled. */
typedef int (*mig_reconnect_fn)(void *arg, struct tp_session **out,
				struct ut_err *err);

/*
 * Test-only fault injection: a failure at an exact message of a running
 * engine, for tests/check-engine.c. Production code leaves the params'
 * pointer NULL, and each point then costs one pointer test. Counts number
 * messages from 1 across all threads of the engine; 0 leaves a point off;
 * each point fires once. The caller owns the struct for the run.
 */
struct mig_inject {
	/* Destination: its receivers fail on the K-th message they read
	 * from the bulk streams, with the reason "injected failure at bulk
	 * message K", as if it could not be placed. */
	uint32_t dest_fail_rx;
	/* Source: its senders send the K-th PAGES message with a page index
	 * past the end of its region (a bad frame). */
	uint32_t src_bad_pages;
	/* Source: its session is cut (every stream, both ways, as a
	 * network failure would) as its K-th round starts (round K-1). */
	uint32_t src_cut_round;
	_Atomic uint32_t rx_msgs, pages_msgs, rounds;	/* counted so far */
};

struct mig_source_params {
	const char *vm_socket;	/* the VMM's VM link */
	struct tp_session *session; /* connected; the engine does not own it */
	uint64_t downtime_limit_ms;	/* default 300 */
	uint64_t bandwidth_limit;	/* bytes/s, 0: none */
	/* Resend a dirty 2 MiB page whole even when the destination could
	 * take only its changed 4 KiB sub-pages (MIG_FEAT_SUBPAGES). */
	bool no_subpages;
	/* Postcopy: start the background push as soon as the state is
	 * sent, not once the destination says its guest runs (RESUMED). */
	bool push_before_resume;
	uint32_t deadline_s;	/* give up converging after this; 0: 120 */
	uint32_t max_rounds;	/* 0: 30 */
	enum mig_mem_access mem_access;
	enum mig_mode mode;
	mig_progress_fn progress;
	void *progress_arg;
	/* Postcopy recovery: reconnect with backoff for up to
	 * recover_timeout_s (0: 60) when the connection is lost. */
	mig_reconnect_fn reconnect;
	void *reconnect_arg;
	uint32_t recover_timeout_s;
	/* Finish an interrupted postcopy: the VM is paused here with all of
	 * its memory and the destination waits for a reconnect. */
	bool recover;
	/* Postcopy: the thread on the fault path (here: the urgent thread) keeps
	 * normal scheduling instead of SCHED_FIFO 1 (--fault-priority). */
	bool fault_normal_priority;
	struct mig_cancel *cancel;	/* NULL: cannot be cancelled */
	/* Limits changed while it runs; NULL: downtime_limit_ms and
	 * bandwidth_limit hold. When set, its values replace those two. */
	struct mig_tune *tune;
	struct mig_events *events;	/* NULL: none */
	struct mig_inject *inject;	/* tests only; NULL */
};

/* Migrates the VM; fills @st (also on failure, as far as it got). */
int mig_source_run(const struct mig_source_params *p, struct mig_stats *st,
		   struct ut_err *err);

struct mig_dest_params {
	const char *vm_socket;	/* the incoming VMM's VM link */
	struct tp_session *session; /* accepted; not owned */
	enum mig_mem_access mem_access;
	/* Postcopy: the thread on the fault path (here: the fault thread) keeps
	 * normal scheduling instead of SCHED_FIFO 1 (--fault-priority). */
	bool fault_normal_priority;
	/* Postcopy placement by UFFDIO_COPY (MISSING mode only) even where
	 * the kernel offers MINOR mode for every backing. */
	bool no_minor;
	/* No KSM hints for anonymous RAM (they are given by default). */
	bool no_ksm_hints;
	/* A hugetlb pool too small for the incoming VM's RAM is grown by
	 * what it lacks (and set back when the agent ends) instead of the
	 * migration being refused with the numbers: the pools of the nodes
	 * the placement names, or the plan finds short. */
	bool reserve_hugepages;
	/* Postcopy recovery: wait for the source to come back (accept). */
	mig_reconnect_fn reconnect;
	void *reconnect_arg;
	struct mig_cancel *cancel;	/* NULL: cannot be cancelled */
	struct mig_place_policy placement; /* MIG_PLACE_NONE: the kernel's */
	/* Once every page is in place, at most this long collapsing the
	 * VMM's 4 KiB shmem RAM into huge pages (where THP allows it):
	 * 0 the default (10 s), < 0 never. */
	int64_t thp_collapse_ms;
	mig_progress_fn progress;	/* NULL: none */
	void *progress_arg;
	struct mig_events *events;	/* NULL: none */
	struct mig_inject *inject;	/* tests only; NULL */
};

/* Receives the VM into the incoming VMM and resumes it there. On failure
 * before resume the incoming VMM is told to quit. */
int mig_dest_run(const struct mig_dest_params *p, struct mig_stats *st,
		 struct ut_err *err);

/* Writes @st as one JSON object to @path ("-": stdout), whole or not at
 * all: on a full or failing filesystem no file (and no partial one) is
 * left, and one line says why. Returns 0 or -errno. */
int mig_stats_write_json(const struct mig_stats *st, const char *role,
			 const char *path);

#endif /* FERRY_MIGRATE_H */
