/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migrate private declarations: the attached VM, shared by both engines. */
#ifndef FERRY_MIGRATE_INTERNAL_H
#define FERRY_MIGRATE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "guestmem/guestmem.h"
#include "migrate/migrate.h"
#include "migrate/wire.h"

/* A VMM attached over the VM link, its RAM mapped here through its fds. */
struct mig_vm {
	struct vml_client link;
	unsigned int nr;			/* regions */
	struct gm_region map[VML_MAX_REGIONS];	/* our view of each */
	uint64_t first[VML_MAX_REGIONS];	/* global index of page 0 */
	uint64_t total_pages;
	uint64_t ram_bytes;
	/* As sent in HELLO, until the handshake: then the wire's layout
	 * (mig_layout_units()), whose page size is the unit every index
	 * counts. map[i].page_size stays the backing's. */
	struct mig_layout layout;
	bool copy;				/* MIG_MEM_COPY in effect */
	/* A region is anonymous memory: reached in the VMM's process
	 * (process_vm_readv / writev, UFFDIO_COPY), map[r].fd < 0 and
	 * map[r].host NULL for it; implies copy. */
	bool anon;
	bool units;				/* some region's unit is smaller
						 * than its backing's page */
};

/* The huge-page pools an agent grew for its VM's RAM (ferry dest
 * --reserve-hugepages), each given back by mig_hp_restore(). */
struct mig_hp_pools {
	bool reserve;			/* may grow a pool that is short */
	/* The nodes the placement names (bind, interleave, cells; 0: the
	 * kernel's choice): a short pool grows on them, split evenly. */
	uint64_t nodes;
	unsigned int n;
	struct {
		size_t page_size;
		int node;		/* -1: the system-wide pool */
		unsigned long old;	/* nr_hugepages before */
		unsigned long added;	/* pages this agent added */
	} pool[16];
};
/* Grows the pool of @psz on @node (-1: system-wide) by @lack pages,
 * recorded in @hp to be given back; one the kernel cannot fill (no
 * contiguous memory) is set back at once. 0 or -errno with @err. */
int mig_hp_grow(struct mig_hp_pools *hp, int node, size_t psz,
		unsigned long lack, struct ut_err *err);
/* How @need huge pages of @psz split over the nodes of @nodes: evenly,
 * each node's share less what it has free (@free_of[node], or read from
 * its pool when NULL) into @lack[node]. Returns the pages lacking. */
uint64_t mig_hp_split(uint64_t nodes, size_t psz, uint64_t need,
		      const uint64_t *free_of, uint64_t lack[GM_MAX_NODES]);
/* The command that grows each node of @lack by what it lacks of @psz
 * pages, from its pool's size (@pool_of[node], or read when NULL):
 * `echo N > /sys/devices/system/node/nodeK/...` for one node, a loop
 * over "node:pages" for several; into @buf. */
void mig_hp_commands(const uint64_t lack[GM_MAX_NODES],
		     const uint64_t *pool_of, size_t psz, char *buf,
		     size_t len);
/* Sets every pool grown back to its size before. The pages in use or
 * reserved stay (the kernel keeps them as surplus and frees them when
 * the VM does). Accepts one that grew nothing. */
void mig_hp_restore(struct mig_hp_pools *hp);

/* Connects to the VMM at @path and maps every region backed by a file.
 * Anonymous RAM has no fd to map: it is read and written in the VMM's
 * process (COPY access; MIG_MEM_MAP is refused with a line saying so).
 * Our mapping of a
 * hugetlb region reserves its huge pages (the kernel's own accounting, a
 * no-op where the VMM's mapping holds them): when the pool is short,
 * @hp (NULL: the source, whose VM holds its pages) says whether to grow
 * it (recorded in @hp) or to refuse with the numbers and the command. */
int mig_vm_attach(struct mig_vm *vm, const char *path,
		  enum mig_mem_access access, struct mig_hp_pools *hp,
		  struct ut_err *err);
/* COPY mode: reads / writes @len bytes at page @idx of region @r (in the
 * VMM's process for anonymous memory, whose pages must be in memory for a
 * write). */
int mig_vm_read(const struct mig_vm *vm, uint32_t r, uint64_t idx, void *buf,
		size_t len);
int mig_vm_write(const struct mig_vm *vm, uint32_t r, uint64_t idx,
		 const void *buf, size_t len);
/* Page @idx of region @r reads as zero from now on: a hole punched in a
 * file backing, zeroes written into an anonymous page (which must be in
 * memory: one that was placed). */
int mig_vm_zero(const struct mig_vm *vm, uint32_t r, uint64_t idx);
void mig_vm_detach(struct mig_vm *vm);
/* After the handshake: from now on every index counts the units of
 * @wire (mig_layout_units() of vm->layout), first[] and total_pages
 * with them. Before any page bitmap is sized. */
void mig_vm_use_units(struct mig_vm *vm, const struct mig_layout *wire);
/* Units of region @r in one page of its backing: 1, or 512 (2 MiB
 * fed 4 KiB units), or 262144 (1 GiB). */
static inline uint64_t mig_vm_per_page(const struct mig_vm *vm, uint32_t r)
{
	return vm->map[r].page_size / vm->layout.r[r].page_size;
}

/* Host address (here) of page @idx (a unit) of region @r. */
static inline uint8_t *mig_vm_page(const struct mig_vm *vm, uint32_t r,
				   uint64_t idx)
{
	return (uint8_t *)vm->map[r].host + idx * vm->layout.r[r].page_size;
}

/* CLOCK_REALTIME in ns: comparable between the two hosts' agents. */
uint64_t mig_realtime_ns(void);

/* Initialises @c to time its waits on CLOCK_MONOTONIC (cond.c). Returns
 * 0 or -errno; pthread_cond_destroy() undoes it. */
int mig_cond_init(pthread_cond_t *c);
/* Waits on @c, made by mig_cond_init(), for at most @ms with @m held.
 * Returns 0 when woken (or spuriously), -ETIMEDOUT after @ms. */
int mig_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, unsigned int ms);

/* ---- the phases (phase.c) ----
 *
 * Both engines walk the same phases; every hand-off is one call of
 * mig_phase_enter(), allowed only along the table in phase.c. The last
 * four are the outcomes, named as the statistics print them.
 */
enum mig_phase {
	MIG_PHASE_SETUP,	/* attach, track, negotiate */
	MIG_PHASE_PRECOPY,	/* rounds while the guest runs at the source */
	MIG_PHASE_SWITCHOVER,	/* the source VM paused: last pages, state,
				 * the commitment; the guest has not run at
				 * the destination yet */
	MIG_PHASE_POSTCOPY,	/* the guest may run at the destination while
				 * pages follow */
	MIG_PHASE_RECOVERING,	/* postcopy, its connection lost */
	MIG_PHASE_COMPLETE,	/* the guest runs at the destination with all
				 * of its memory */
	MIG_PHASE_FAILED,	/* the guest runs on at the source */
	MIG_PHASE_CANCELLED,	/* by an operator, a peer or the policy: the
				 * guest runs on at the source */
	MIG_PHASE_INTERRUPTED,	/* postcopy lost for good: the source VM
				 * paused with all memory, the destination's
				 * guest stopped */
	MIG_PHASE_COUNT
};

/* "setup", ..., "completed", "failed", "cancelled", "interrupted". */
const char *mig_phase_name(enum mig_phase p);
/* Whether @from may hand off to @to. */
bool mig_phase_can(enum mig_phase from, enum mig_phase to);
/* COMPLETE, FAILED, CANCELLED, INTERRUPTED. */
bool mig_phase_terminal(enum mig_phase p);
/* Moves *@cur to @to: 0, or -EINVAL (logged, *@cur unchanged) when the
 * table has no such hand-off. The engine's main thread. */
int mig_phase_enter(enum mig_phase *cur, enum mig_phase to);

/* ---- threads (worker.c) ----
 *
 * Every engine thread is one of these, owned by the struct of its kind
 * (a sender, the urgent thread, a receiver, the fault thread). Its owner
 * starts it, asks it to stop (kick: the eventfd becomes readable and
 * mig_worker_stopping() true), wakes it if it sleeps elsewhere (a
 * condition variable: broadcast after the kick, under its mutex; a
 * stream: tp_session_shutdown()), and joins it.
 */
struct mig_worker {
	pthread_t thread;
	bool started;
	int stop_fd;		/* eventfd, readable once kicked; -1 */
	_Atomic bool stopping;	/* kicked */
};

/* Before anything else: not started, no fd. */
void mig_worker_init(struct mig_worker *w);
/* Runs @fn(@arg) on a new thread. Returns 0, -EBUSY when started
 * already, or -errno (pthread_create's own, eventfd's). */
int mig_worker_start(struct mig_worker *w, void *(*fn)(void *), void *arg);
/* The thread itself: true once its owner kicked it. */
bool mig_worker_stopping(const struct mig_worker *w);
/* The owner: asks the thread to stop; once is enough, more are no-ops. */
void mig_worker_kick(struct mig_worker *w);
/* The owner: waits for the thread and closes the eventfd; accepts a
 * worker never started. mig_worker_start() may be called again after. */
void mig_worker_join(struct mig_worker *w);
/* Kick and join. */
void mig_worker_stop(struct mig_worker *w);
/* The thread itself, on the fault path (the destination's fault thread,
 * the source's urgent thread): with @rt, takes SCHED_FIFO priority 1
 * where allowed, so that a page a vCPU waits for is not queued behind the
 * bulk threads' time slices (on 2 CPUs with both streams busy, 4 KiB
 * fault p99 about 200 us against 0.7-4 ms). The thread blocks in poll()
 * or on its stream between pages, and the kernel's real-time throttling
 * bounds it in any case. Returns what it got, for the log and the JSON. */
const char *mig_worker_urgent(bool rt);

/* Receives one control message into @buf: 0 when it is of @type, the
 * peer's reason when it is an ERROR, -EPROTO otherwise; @what names the
 * wait in the message. */
int mig_recv_expect(struct tp_stream *ctl, uint32_t type, uint8_t *buf,
		    size_t cap, struct tp_msg *m, const char *what, struct ut_err *err);

/* An ERROR with @code (positive errno) and @msg to the peer on the
 * control stream of @sess, best effort. */
void mig_tell_peer(struct tp_session *sess, int code, const char *msg);

/* Sends an encoded control message; returns 0 or -errno. */
int mig_send_msg(struct tp_stream *st, uint32_t type, const void *buf,
		 size_t len);

/* Fault injection (struct mig_inject): counts one more message at a
 * point; true exactly when it is the @at-th. @count belongs to @in. */
static inline bool mig_inject_hit(struct mig_inject *in,
				  _Atomic uint32_t *count, uint32_t at)
{
	return in && at && atomic_fetch_add(count, 1) + 1 == at;
}

/* ---- cancellation (cancel.c) ---- */

/* True (and the reason into @reason, @len bytes, unless NULL) once a
 * cancel was requested. @c may be NULL. Any thread. */
bool mig_cancel_requested(struct mig_cancel *c, char *reason, size_t len);
/* The engine's commitment point: -ECANCELED when a cancel came first,
 * else 0 and every later request is refused with @what (a static
 * string: where the guest runs now). @c may be NULL. */
int mig_cancel_commit(struct mig_cancel *c, const char *what);

/* ---- postcopy fault statistics (faults.c) ----
 *
 * The destination's pages asked of the source and not placed yet, since
 * when, and how long each took to arrive. One thread asks (the fault
 * thread); any thread may place. The asker publishes the timestamp and
 * the count before the page's bit, so whoever clears the bit sees both.
 */
struct mig_faults {
	struct ut_bitmap requested;	/* asked of the source, not placed */
	_Atomic uint64_t *req_ns;	/* ut_now_ns() when each was asked;
					 * 0: never */
	_Atomic uint64_t outstanding;	/* bits set in requested */
	uint64_t *lat_ns;		/* service times, ns, as served */
	uint64_t cap;			/* entries of lat_ns */
	_Atomic uint64_t nlat;		/* served (may pass cap) */
	struct ut_hist hist;		/* every service time */
};

/* Allocates for @npages pages. Returns 0 or -ENOMEM; fini frees. */
int mig_faults_init(struct mig_faults *f, uint64_t npages);
/* Accepts a zeroed or half-initialised @f. */
void mig_faults_fini(struct mig_faults *f);
/* The asking thread only: page @g is asked for at @now_ns. Returns false
 * when it is asked for already. */
bool mig_faults_request(struct mig_faults *f, uint64_t g, uint64_t now_ns);
/* Any thread: page @g is in place at @now_ns. Returns true when it was
 * asked for; its service time is counted unless it has no timestamp. */
bool mig_faults_served(struct mig_faults *f, uint64_t g, uint64_t now_ns);
/* The asking thread: takes back a request of @g that a placement beat.
 * Returns true when it was still outstanding; no time is counted. */
bool mig_faults_withdraw(struct mig_faults *f, uint64_t g);
static inline uint64_t mig_faults_outstanding(struct mig_faults *f)
{
	return atomic_load(&f->outstanding);
}
/* Once nothing is placed any more: the count, p50/p99/max, the sum and
 * the histogram into @c. Sorts the samples. */
void mig_faults_summary(struct mig_faults *f, struct mig_complete *c);

/* ---- the convergence policy (policy.c) ----
 *
 * When precopy stops, as a pure function of the round statistics: no
 * clock, no I/O, no hidden state. The source engine asks it once before
 * round 0 and once after every round, and does what it says.
 */

/* What the source does next. */
enum mig_decision {
	MIG_DECIDE_ROUND,	/* send another precopy round */
	MIG_DECIDE_SWITCHOVER,	/* pause, send the rest and the state */
	MIG_DECIDE_POSTCOPY,	/* pause, send the state; pages follow */
	MIG_DECIDE_CANCEL,	/* did not converge: the VM stays here */
};

/* Why it decided so. */
enum mig_reason {
	MIG_WHY_CONVERGING,	/* ROUND: neither fits nor out of time */
	MIG_WHY_MODE,		/* postcopy at once, hybrid after round 0 */
	MIG_WHY_FITS,		/* predicted downtime <= the limit */
	MIG_WHY_MAX_ROUNDS,	/* the round just sent was the last allowed */
	MIG_WHY_DEADLINE,	/* elapsed >= the deadline */
	MIG_WHY_REQUESTED,	/* POSTCOPY: the operator asked for it */
	MIG_WHY_CHEAPER,	/* auto: rounds stopped converging, and
				 * postcopy's switchover costs less
				 * downtime than precopy's */
	MIG_WHY_DIRTY,		/* auto: round 0 was cut short, the guest
				 * writing too fast for precopy to pay */
};

/* The limits (defaults applied). The engine may change
 * downtime_limit_ms between rounds (an operator's request). */
struct mig_policy {
	enum mig_mode mode;
	bool can_postcopy;		/* the destination accepted postcopy */
	uint64_t downtime_limit_ms;	/* switch over at or below this */
	uint32_t max_rounds;		/* precopy rounds, round 0 included */
	uint64_t deadline_ns;		/* since the migration started */
	/* auto: the fixed part of a postcopy switchover's downtime (pause,
	 * the last dirty bitmap, the markers, the state, RESUMED); the
	 * DISCARD of the pages dirtied since they were sent comes on top
	 * (MIG_POLICY_DISCARD_US each). A precopy switchover predicted above
	 * the sum waits for more rounds, or gives way to postcopy. */
	double postcopy_downtime_ms;
	/* The destination drops most dirty pages in a round of DISCARDs
	 * before the pause (MIG_FEAT_DISCARD_EARLY): the paused DISCARD
	 * is only what the guest wrote during that round. */
	bool discard_early;
};

/* auto's estimate of a postcopy switchover's fixed downtime: measured
 * 5-18 ms here (Ferry postcopy in tools/bench and migrate.sh). */
#define MIG_POLICY_POSTCOPY_MS 10.0
/* ... and of the destination dropping one dirty 4 KiB page it held:
 * 2.96 us a page, measured here punching runs of 70% of 512 MiB. */
#define MIG_POLICY_DISCARD_US 3.0
/* auto: rounds converge while each sends less than this fraction of the
 * one before (dirty rate / bandwidth). */
#define MIG_POLICY_SHRINK 0.5
/* auto's early look, MIG_POLICY_EARLY_S into round 0: when the guest
 * has written at least MIG_POLICY_EARLY_RATIO of what the round sent
 * meanwhile, precopy's rounds would add that fraction again and again
 * (a total 1/(1 - ratio) of one full copy, before the switchover)
 * where postcopy sends each page about once: the round is cut, and
 * postcopy pushes the rest. */
#define MIG_POLICY_EARLY_S 0.25
#define MIG_POLICY_EARLY_RATIO 0.15

/* Carried from one round to the next; zero before round 0. */
struct mig_policy_state {
	uint32_t rounds;	/* rounds so far that did not fit */
	double best_ms;		/* lowest predicted downtime (rounds > 0) */
};

/* What one precopy round measured. */
struct mig_round_input {
	uint32_t round;		/* the round just sent, from 0 */
	double dirty_bytes;	/* dirtied during it: the next round's size */
	double bandwidth_mibs;	/* wire bytes / duration */
	double duration_s;	/* of the round */
	uint64_t elapsed_ns;	/* migration start to the round's end */
	bool postcopy_requested; /* the operator asked for postcopy now */
	bool cut_early;		/* round 0 cut short by mig_policy_early */
};

/* What round 0 measured so far, for auto's early look. */
struct mig_early_input {
	double dirty_bytes;	/* written since the tracking began */
	double sent_bytes;	/* on the wire in the round so far */
	double elapsed_s;	/* since the round began */
};

struct mig_verdict {
	enum mig_decision decision;
	enum mig_reason reason;
	double predicted_downtime_ms;	/* sending dirty_bytes at bandwidth;
					 * 1e9 when nothing was measured */
	double dirty_rate_mibs;		/* dirty_bytes / duration */
};

/* Fills @pol from the caller's parameters, with the defaults for zeros
 * (300 ms, 30 rounds, 120 s). @can_postcopy: what the destination said. */
void mig_policy_init(struct mig_policy *pol,
		     const struct mig_source_params *p, bool can_postcopy);
/* Before round 0: POSTCOPY in postcopy mode, else ROUND. */
struct mig_verdict mig_policy_begin(const struct mig_policy *pol);
/* After round @in->round: the decision, and @ps updated for the next
 * call. Any thread; touches only its arguments. */
struct mig_verdict mig_policy_next(const struct mig_policy *pol,
				   struct mig_policy_state *ps,
				   const struct mig_round_input *in);
/* In round 0, once MIG_POLICY_EARLY_S in: POSTCOPY (MIG_WHY_DIRTY) in
 * auto with postcopy at hand when the guest writes too fast for precopy
 * to pay, else ROUND. dirty_rate_mibs is filled. */
struct mig_verdict mig_policy_early(const struct mig_policy *pol,
				    const struct mig_early_input *in);
/* Names for logs and tests: "round", "switchover", ... / "fits", ... */
const char *mig_decision_name(enum mig_decision d);
const char *mig_reason_name(enum mig_reason r);

/* ---- placement in the engines (placement-apply.c) ----
 *
 * The destination, in its main thread: plan before WELCOME (a plan that
 * cannot fit is the refusal), send the host picture and the plan in
 * TOPOLOGY, take the source's HEAT (tiered: plan again with it), bind
 * the agent's mapping of guest RAM before any receiver writes a page,
 * and after completion check where the pages are. The source samples its
 * dirty log before round 0 when the destination's policy is tiered.
 */
struct mig_place {
	struct mig_place_policy pol;
	struct gm_topo topo;		/* the destination host */
	struct mig_layout layout;	/* the backing's, which plans count */
	struct mig_plan plan;		/* valid when planned */
	uint64_t local;			/* nodes of the VMM's CPUs */
	uint64_t reserve;		/* bytes kept free per node */
	bool planned;
	struct mig_place_stats st;	/* for the statistics */
	/* Tiered, after the switch to postcopy (mig_place_postcopy): the
	 * fault thread's own. Per region, the chunks the guest faulted on
	 * (or found holding pages), never moved down, and where the search
	 * for a chunk to move down goes on from. */
	bool post;
	uint64_t top;			/* the top tier's nodes */
	uint8_t *touched[MIG_MAX_REGIONS];
	uint32_t down_from[MIG_MAX_REGIONS];
};

/* Reads the host, makes the plan from @vm's layout (without hotness) and
 * fills @t for TOPOLOGY and pc->st. MIG_PLACE_NONE plans nothing but
 * still describes the host. A plan short of huge pages on its nodes
 * grows their pools first where @hp allows (--reserve-hugepages; NULL:
 * never), recorded in @hp. -ENOSPC/-EINVAL with @err: the plan is
 * refused; another -errno: the host could not be read. */
int mig_place_begin(struct mig_place *pc, const struct mig_place_policy *pol,
		    const struct mig_vm *vm, struct mig_hp_pools *hp,
		    struct mig_topology *t, struct ut_err *err);
/* HEAT arrived (@h; NULL from a source without it): a tiered plan is
 * made again with it. Then binds every region of @vm as the plan says.
 * Before any page is written. */
int mig_place_apply(struct mig_place *pc, const struct mig_heat *h,
		    struct mig_vm *vm, struct ut_err *err);
/* Main thread, at the switch to postcopy, before the fault thread runs:
 * arms mig_place_fault() for a tiered plan with a lower tier. */
int mig_place_postcopy(struct mig_place *pc);
/*
 * The fault thread, postcopy: the guest faulted on the page at byte @off
 * of region @r, not here yet. What the guest touches after the switch is
 * hot: when the plan has that page's chunk on a lower tier and none of
 * its pages is in @received (pages are never moved), the chunk trades
 * nodes with a top-tier chunk of the region that the guest has not
 * touched and that holds no page yet (the plan's bytes per node stay as
 * they were: the fast share holds), both bound again at once. Only for
 * the regions bound here (4 KiB shmem: the agent's mbind is the file's
 * shared policy); the others keep their plan.
 */
void mig_place_fault(struct mig_place *pc, struct mig_vm *vm, uint32_t r,
		     uint64_t off, const struct ut_bitmap *received);
/* After completion: where the pages are, into pc->st. */
int mig_place_check(struct mig_place *pc, struct mig_vm *vm, struct ut_err *err);
void mig_place_fini(struct mig_place *pc);
/* The source's copy of the destination's plan, for its statistics. */
void mig_place_stats_from(struct mig_place_stats *st,
			  const struct mig_topology *t);

/* Destination, after WELCOME: TOPOLOGY (@t, from mig_place_begin) and
 * the source's HEAT when @negotiated (MIG_FEAT_PLACEMENT), then
 * mig_place_apply(). Returns 0 or -errno with @err. */
int mig_place_dst_handshake(struct mig_place *pc, struct tp_stream *ctl,
			    bool negotiated, const struct mig_topology *t,
			    struct mig_vm *vm, struct ut_err *err);
/* Source, after WELCOME with MIG_FEAT_PLACEMENT: takes TOPOLOGY into
 * @st->place, samples @d when the policy is tiered, sends HEAT. With
 * @track->on (MIG_FEAT_HEAT_REVISE agreed) and a tiered plan it keeps
 * the heat in @track for the rounds (else turns @track->on off). */
struct mig_heat_track;
int mig_place_src_handshake(struct tp_stream *ctl, const struct mig_vm *vm,
			    struct gm_dirty *d, struct mig_stats *st,
			    struct mig_heat_track *track, struct ut_err *err);

/*
 * Destination, a HEAT in precopy (MIG_FEAT_HEAT_REVISE): the tiered plan
 * made again with @h for the chunks none of whose pages is in
 * @received (global page indexes of @vm's wire layout); the others keep
 * their node. The chunks that change node are bound again (mbind on the
 * agent's mapping, ADVISE BIND for anonymous RAM), and pc->st counts the
 * revision. Main thread. 0 or -errno with @err.
 */
int mig_place_revise(struct mig_place *pc, const struct mig_heat *h,
		     struct mig_vm *vm, const struct ut_bitmap *received,
		     struct ut_err *err);

/* The source's heat map through precopy (MIG_FEAT_HEAT_REVISE with a
 * tiered plan): each round's dirty pages folded in (mig_heat_fold()),
 * sent again when it changed materially since it was last sent. */
struct mig_heat_track {
	bool on;
	uint32_t samples;		/* in cur (HEAT's samples) */
	uint32_t sent_samples;		/* in sent */
	uint32_t total;			/* chunks of every region */
	uint8_t *cur, *sent;		/* total heats each, regions in order */
	uint8_t *written;		/* the round's chunks written (scratch) */
};
/* After a round's harvest: @dirty's pages (global indexes of @vm) as one
 * more sample; HEAT on @ctl when the map changed materially, counted in
 * @st->revisions. Main thread. 0 or -errno with @err (the stream). */
int mig_heat_track_round(struct mig_heat_track *t, const struct mig_vm *vm,
			 const struct ut_bitmap *dirty, struct tp_stream *ctl,
			 struct mig_place_stats *st, struct ut_err *err);
void mig_heat_track_fini(struct mig_heat_track *t);

/* Source: heat per chunk of every region of @vm from @samples harvests of
 * @d, @interval_ms apart, into @heat[r] (mig_chunks() bytes each, the
 * caller's). The harvested pages are all sent in round 0 anyway. Returns
 * 0 or -errno. With @acc, DAMON's reads count too. */
int mig_heat_sample(struct gm_dirty *d, const struct mig_vm *vm,
		    unsigned int samples, unsigned int interval_ms,
		    uint8_t **heat, struct gm_access *acc, uint64_t *read_only);
/* DAMON on the VMM's mappings of @vm's RAM (the VM link's peer, or the
 * anonymous RAM's process), for mig_heat_sample()'s @acc: a chunk counts
 * hot in a sample it was written or read in (@read_only: how many times
 * one was read and not written). NULL with the reason in @why where
 * DAMON cannot say (else @why names what monitors). */
struct gm_access *mig_heat_access_open(const struct mig_vm *vm, char *why,
				       size_t len);
/* ---- events (events.c) ---- */

/* A recovery event of either engine: @state "lost", "reconnected" or
 * "gave_up", with @error (NULL when reconnected) or @pages_left. */
void mig_event_recovery(struct mig_events *ev, const char *state,
			const char *error, uint64_t pages_left);

/* ---- runtime limits (tune.c) ---- */

/* The engine says whether a postcopy request can be taken now (and why
 * not: a static string), and, once, that the switchover has begun. */
void mig_tune_engine(struct mig_tune *t, bool postcopy_ok, const char *why,
		     bool settled);

#endif /* FERRY_MIGRATE_INTERNAL_H */
