/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The source engine's private declarations, shared by its files:
 * source.c (entry point), source-senders.c (sender threads),
 * source-precopy.c (rounds, the policy), source-switchover.c,
 * source-postcopy.c (push, urgent thread), source-recover.c.
 * All functions below run on the main thread unless they say otherwise.
 */
#ifndef FERRY_MIGRATE_SOURCE_INTERNAL_H
#define FERRY_MIGRATE_SOURCE_INTERNAL_H

#include "migrate/internal.h"

#define CHUNK 1024		/* pages a sender takes at a time */
#define BATCH 64		/* pages per PAGES message, at most */
#define BATCH_BYTES (1u << 20)	/* ... and at most this many bytes */
#define STAGE_BYTES (4u << 20)	/* COPY mode: pages read at a time */

struct chunk {
	uint32_t region;
	uint64_t start;		/* first page index in the region */
	uint32_t n;		/* pages */
};

struct dup_slot {
	struct gm_hash h;
	uint64_t gen;		/* valid when equal to the sender's gen */
	uint32_t region;
	uint64_t idx;
};

struct counts {
	uint64_t pages, data, zero, dup, delta, subpages, same;
	uint64_t bytes_data, bytes_zero, bytes_dup, bytes_proto;
	uint64_t discarded;	/* MIG_ROUND_DISCARD: pages dropped there */
	uint64_t ack_ns;	/* MIG_FEAT_ROUND_ACK: waiting for it */
};

struct mig_src;

struct sender {
	struct mig_src *src;
	struct tp_stream *st;
	struct mig_worker wk;
	uint64_t gen;		/* round generation the table belongs to */
	uint64_t seen;		/* s->gen when started: only later rounds
				 * are for this thread */
	struct dup_slot *table;
	uint64_t mask, used;
	struct counts c;	/* this round */
	uint32_t nbatch, batch_region;
	uint64_t batch_idx[BATCH];
	const uint8_t *batch_ptr[BATCH];
	uint8_t *stage;		/* COPY mode: STAGE_BYTES, reused */
	/* Sub-page deltas: a 2 MiB page copied before it is hashed, so that
	 * what is hashed is what is sent; its header and iovecs. */
	uint8_t *hstage;
	struct iovec subiov[1 + MIG_SUB_PER_PAGE];
	uint8_t subhdr[MIG_SUBPAGES_FIXED + 8];
	struct iovec iov[1 + BATCH];
	uint8_t hdr[MIG_PAGES_FIXED + 8 * BATCH];
	uint8_t zbits[CHUNK / 8];
	struct mig_dup dups[CHUNK];
	uint32_t ndup;
	uint8_t msg[MIG_DUP_FIXED + MIG_DUP_ENTRY * CHUNK];
};

/* The hand-off of a round from the main thread to the senders, and
 * their way back (done, the first error). Under lock unless atomic. */
struct src_rounds {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t gen;		/* bumped to start a round */
	uint32_t round, flags;	/* the round published, its MIG_ROUND_* */
	unsigned int done;	/* senders finished with the round */
	int error;		/* first error of the round */
	struct ut_err *err;	/* the caller's reason */
	/* Set with error when the round must stop: the senders stop at the
	 * next message; after ABORT_GRACE_NS the bulk streams are cut. */
	_Atomic bool abort;
	/* Set when the round must end early but well: the senders take no
	 * further chunk, end the round, and the pages left stay in todo
	 * (the operator asked for postcopy now). */
	_Atomic bool cut;
	_Atomic uint64_t cursor;	/* next chunk */
	_Atomic uint64_t pages_done;	/* progress within the round */
};

/* Postcopy pre-paging, from the urgent thread to the senders: the page
 * after the last fault, + 1 (0: none), and how many pages to push from
 * there. */
struct src_prepage {
	_Atomic uint64_t pivot;
	_Atomic uint32_t window;
	_Atomic uint64_t faults_since;	/* faults since a sender looked */
};

/* The engine: the main thread's own state, the pages every thread
 * shares (todo, sent), and the structs each hand-off goes through. */
struct mig_src {
	struct ut_oom_guard oom;	/* postcopy: the only copy of pages */
	const struct mig_source_params *p;
	struct tp_session *sess;	/* current session */
	bool own_sess;			/* made by a reconnect: ours to free */
	uint64_t old_tx;		/* bytes sent on earlier sessions */
	/* Postcopy recovery: the window runs from the first loss after the
	 * last progress (pages left to send fell), so that a destination
	 * that takes every reconnection and drops it again cannot keep the
	 * VM paused here for ever. */
	uint64_t recover_by;		/* ns; 0: no loss yet */
	uint64_t recover_left;		/* pages left at the last loss */
	struct mig_resumed resumed;	/* the destination's RESUMED */
	bool resumed_seen;
	uint64_t last_keepalive;	/* ns, last KEEPALIVE sent */
	struct mig_stats *st;
	struct mig_vm vm;
	struct gm_uffd uffd;
	struct gm_dirty *dirty;
	unsigned int nbulk;
	struct sender *senders;
	struct chunk *chunks;
	uint64_t nchunks;
	struct ut_bitmap todo;	/* pages to send; a sender claims a page by
				 * clearing its bit, so that the urgent thread
				 * and the senders never send one twice */
	struct ut_bitmap sent;	/* pages the destination holds (or held) */
	struct ut_bitmap spare;	/* an empty bitmap to swap with todo */
	enum mig_phase phase;	/* main thread; see phase.c */
	bool committed;		/* past the commitment point: no cancel */
	/* Cancelled before the commitment by the operator (with why,
	 * "SIGINT"). dest_discarded: the destination sent an ERROR (its
	 * cancel or failure) before RESUMED, so it never ran the guest and
	 * has discarded its VM: ours may resume even after a postcopy
	 * switchover. Main thread. */
	bool cancelled, dest_discarded;
	bool dest_cancelled;	/* that ERROR was the destination's cancel */
	int dest_ret;		/* that ERROR's -errno (never 0) */
	char why[32];
	uint64_t abort_ns;	/* when rd.abort was set */
	bool bulk_cut;
	bool can_postcopy;	/* the destination accepted postcopy */
	uint64_t welcome_features;	/* what the destination accepted */
	struct mig_heat_track heat;	/* the heat map through precopy */
	bool discard_early;	/* ... and MIG_FEAT_DISCARD_EARLY */
	bool round_ack;		/* ... and MIG_FEAT_ROUND_ACK */
	const struct mig_policy *pol;	/* src_precopy's, while it runs */
	/* Sub-page deltas for 2 MiB pages (precopy): hash[r] holds the
	 * XXH3-128 of every 4 KiB the destination holds of region r (NULL
	 * for other page sizes), valid the pages whose hashes are known. */
	struct src_sub {
		bool on;
		bool keep;	/* MIG_FEAT_SUBPAGES_KEEP: postcopy too */
		struct gm_hash *hash[MIG_MAX_REGIONS];
		struct ut_bitmap valid;
	} sub;
	/* Pushing after the switchover: the guest runs at the destination
	 * and may rewrite a page before a reference to it is applied, so
	 * duplicates go as data. */
	bool postcopy;
	struct urgent {
		struct mig_worker wk;
		/* pages asked for, sent; read by the main thread's reports */
		_Atomic uint64_t requests, served;
		uint64_t bytes_data;		/* their payload bytes */
		uint8_t *buf;			/* COPY mode: a page or a run */
		struct iovec subiov[1 + MIG_SUB_PER_PAGE];
		uint8_t subhdr[MIG_SUBPAGES_FIXED];
		/* What the destination broke on the urgent stream ("" if
		 * nothing) and the error; written by the urgent thread, read
		 * after it was joined. */
		char why[160];
		const char *priority;	/* mig_worker_urgent()'s answer */
		int error;
	} urg;
	/* The destination broke the protocol (a malformed or out-of-phase
	 * message): a broken peer, not a lost connection, so no reconnecting
	 * to it. Set by the urgent thread too. */
	_Atomic bool peer_broken;
	uint64_t start_ns;
	struct src_rounds rd;		/* main thread <-> senders */
	struct src_prepage pp;		/* urgent thread -> senders */
	_Atomic uint64_t wire_bytes;	/* all bulk bytes, for the cap */
	struct src_steer {
		/* In force: from p, then from p->tune (main thread writes,
		 * senders read bandwidth). */
		_Atomic uint64_t bandwidth;	/* bytes/s, 0: none */
		uint64_t downtime_ms;
		bool postcopy_asked;	/* the operator asked, the round cut */
		bool settled;		/* told the tune: past the switchover */
		bool resumed_told;	/* the switchover event is out */
		uint64_t last_progress_ns;	/* postcopy progress events */
		uint64_t round_t0, round_wire0;	/* this round's start */
		const char *why;	/* why the VM pauses (policy reason) */
		/* The switchover's clock: the pause (monotonic, realtime),
		 * the state's sending (monotonic). */
		uint64_t pause_t, pause_rt, state_t0, state_t1;
		/* The token bucket of the cap, shared by the senders. */
		pthread_mutex_t lock;
		double tokens;		/* bytes; negative: owed */
		uint64_t refill_ns;	/* when tokens were last added */
	} steer;
};

/* Postcopy pre-paging: the smallest window pushed after a fault. */
#define WINDOW_MIN 16

/* ---- the operator's controls and the events (source-steer.c) ---- */

/* The limits of p (and p->tune) in force, the bucket ready. */
/* MIG_FEAT_KSM_PAGES: the pages of the VM's anonymous RAM KSM merged
 * here, as KSM messages on @ctl. Without kpageflags (not root) it says
 * so and sends none. Main thread, before round 0; 0 or -errno (the
 * control stream failed). */
int src_ksm_tell(struct mig_src *s, struct tp_stream *ctl, struct ut_err *err);

void src_steer_init(struct mig_src *s);
void src_steer_fini(struct mig_src *s);
/* A sender, before sending @bytes: waits until the cap allows them (a
 * token bucket of a quarter second's worth; returns early once the
 * round is aborted). Any sender thread. */
void src_throttle(struct mig_src *s, size_t bytes);
/* The urgent thread, after sending @bytes: they count against the cap
 * (the senders wait for them) but never wait themselves. */
void src_charge(struct mig_src *s, size_t bytes);
/* Between the waits of a round: takes the operator's changes (the
 * limits, a postcopy request, which cuts a precopy round short), and
 * in postcopy writes the switchover and progress events. */
void src_steer(struct mig_src *s);
/* The engine moved past the switchover: the limits stop mattering. */
void src_steer_settle(struct mig_src *s);
/* Events (nothing without p->events). */
void src_event_started(struct mig_src *s);
void src_event_round_begin(struct mig_src *s, uint32_t round, uint64_t pages);
void src_event_round_end(struct mig_src *s, const struct mig_round_stats *rs,
			 const struct mig_verdict *v, bool cut);
void src_event_paused(struct mig_src *s, const char *mode, uint32_t round,
		      const char *why);
/* The guest resumed at the destination: the downtime and its parts, ms
 * (negative: unknown). */
void src_event_switchover(struct mig_src *s, const char *mode, double total,
			  double final_round, double state, double load);
void src_event_recovery(struct mig_src *s, const char *state,
			const char *error);

/* ---- senders (source-senders.c) ---- */

/* Cuts the guest's pages into chunks. Returns 0 or -ENOMEM. */
int src_chunks_build(struct mig_src *s);
/* Starts one sender per bulk stream of s->sess. Returns 0 or -errno;
 * src_senders_stop() undoes a partial start. */
int src_senders_start(struct mig_src *s);
/* Fills @bits (CHUNK / 8) with the pages of @c the destination holds
 * that are dirty now (todo & sent), clearing them from sent: it drops
 * them. A unit of a huge page here whose bytes did not change
 * (src_unit_held) leaves todo instead: the destination keeps it.
 * Returns how many. Any thread; a chunk is one thread's. */
uint32_t src_discard_bits(struct mig_src *s, const struct chunk *c,
			  uint8_t *bits);
/* A sender, in a MIG_ROUND_DISCARD round: @c's DISCARD on its stream. */
int src_send_discard(struct sender *w, const struct chunk *c);
/* A sender: one page now, from @buf, in a PAGES message of its own. */
int src_send_one(struct sender *w, uint32_t region, uint64_t idx,
		 const uint8_t *buf);
/* Stops and joins the senders, frees them; accepts none started. */
void src_senders_stop(struct mig_src *s);

/* ---- sub-page deltas (source-subpages.c) ---- */

/* A sender, sub-page deltas on: huge page @idx of @region (at @page),
 * 2 MiB window by window, each copied into the stage, hashed per 4 KiB
 * and sent as SUBPAGES with what changed. A 2 MiB page the destination
 * holds no hashes of, or of which more than half changed, goes whole as
 * PAGES instead; a larger page never does (its first windows carry every
 * sub-page). Returns 0 or -errno. */
int src_send_huge(struct sender *w, uint32_t region, uint64_t idx,
		  const uint8_t *page);
/* Postcopy, any thread: sends 2 MiB page @idx of region @r (at @page) on
 * @st as SUBPAGES against the copy the destination keeps (the source VM
 * is paused and the hashes frozen: no round follows), built in @iov
 * (1 + MIG_SUB_PER_PAGE) and @hdr (MIG_SUBPAGES_FIXED). Returns the
 * payload bytes sent, 0 when the page must go whole instead (not kept,
 * or more than half of it changed), or -errno. */
/* Main thread, after a WELCOME for the HELLO of layout @src: regions
 * whose page sizes differ go in 4 KiB units from now on (every bitmap
 * and the chunks made anew, empty). 0 or -ENOMEM with @err. */
int src_units_apply(struct mig_src *s, const struct mig_layout *src,
		    const struct mig_welcome *w, struct ut_err *err);
/* Sender, precopy: whether unit @idx of region @r (a huge page here, sent
 * in 4 KiB units), staged at @page, is what the destination holds; its
 * hash in @h, recorded as what it will hold when it is not. */
bool src_unit_same(struct mig_src *s, uint32_t r, uint64_t idx,
		   const uint8_t *page, struct gm_hash *h);
/* Any thread, a discard: whether unit @idx of region @r (a huge page
 * here, sent in 4 KiB units) holds what the destination holds, dirty
 * only because write-protect marks its whole huge page; hashed through
 * our mapping. */
bool src_unit_held(struct mig_src *s, uint32_t r, uint64_t idx);
ssize_t src_send_kept(struct mig_src *s, struct tp_stream *st, uint32_t r,
		      uint64_t idx, const uint8_t *page, struct iovec *iov,
		      uint8_t *hdr);
/* ---- precopy (source-precopy.c) ---- */

/* Sends the pages in s->todo as round @round with @flags; fills @rs.
 * @prev: the last round's figures, for progress reports. */
int src_run_round(struct mig_src *s, uint32_t round, uint32_t flags,
		  struct mig_round_stats *rs,
		  const struct mig_round_stats *prev);
/* Reads what the destination sent on the control stream meanwhile:
 * RESUMED, KEEPALIVE, or an ERROR that stops the migration. Returns 0
 * or -errno with s->err filled under s->lock. */
int src_poll_dest(struct mig_src *s);
/* The operator's cancel as the engine's reason into @err: -ECANCELED. */
int src_cancelled(struct mig_src *s, struct ut_err *err);
/* Precopy rounds until the policy ends them, then the phase it picks. */
int src_precopy(struct mig_src *s, struct ut_err *err);

/* ---- switchover (source-switchover.c) ---- */

/* The paused VM's state blob (*@blob, malloc'ed, *@len bytes), saved
 * before the commitment point: a VMM that cannot give it leaves the
 * guest here. */
int src_save_state(struct mig_src *s, void **blob, size_t *len, struct ut_err *err);
/* Sends @blob (freed here) as STATE. */
int src_send_state(struct tp_stream *ctl, void *blob, size_t len, struct ut_err *err);
/* The commitment point: tells the VMM, refuses any later cancel. */
int src_commit(struct mig_src *s, struct ut_err *err);
int src_wait_resumed(struct tp_stream *ctl, struct mig_resumed *r,
		     struct ut_err *err);
/* DONE to the destination, tracking stopped, the source VM quits. */
int src_release(struct mig_src *s, struct tp_stream *ctl);
/* Pauses the vCPUs (@t monotonic, @rt realtime) and harvests. */
int src_pause_vm(struct mig_src *s, uint64_t *t, uint64_t *rt, struct ut_err *err);
/* Pause, final round @round, commit, state, RESUMED, release. */
int src_switchover(struct mig_src *s, uint32_t round,
		   const struct mig_round_stats *prev, struct ut_err *err);

/* ---- postcopy (source-postcopy.c) ---- */

int src_urgent_start(struct mig_src *s);
/* Stops the urgent thread and adds its counts; accepts none started. */
void src_urgent_stop(struct mig_src *s);
/* Push after the switchover on the current session, until COMPLETE. */
int src_push(struct mig_src *s, uint32_t round,
	     const struct mig_round_stats *prev, struct ut_err *err);
/* Pause, switch the destination to postcopy, commit, state, push. */
int src_postcopy(struct mig_src *s, uint32_t round,
		 const struct mig_round_stats *prev, struct ut_err *err);
/* ferry-source --recover: finishes an interrupted postcopy. */
int src_resume_postcopy(struct mig_src *s, struct ut_err *err);

/* ---- recovery (source-recover.c) ---- */

/* Bytes sent on every stream of @sess. */
uint64_t src_session_tx(struct tp_session *sess);
/* HELLO(RECOVER); the destination's RESUMED and NEEDs into s->todo. */
int src_recover_handshake(struct mig_src *s, struct ut_err *err);
/* A new session, the handshake, the senders restarted. */
int src_recover(struct mig_src *s, struct ut_err *err);

#endif /* FERRY_MIGRATE_SOURCE_INTERNAL_H */
