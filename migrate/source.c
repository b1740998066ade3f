// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source engine: precopy rounds over N bulk streams, convergence,
 * switchover.
 *
 * The main thread runs the rounds: it harvests the dirty set, publishes it
 * with a round number, and waits while one sender thread per bulk stream
 * takes chunks of it (1024 pages, never crossing a region) from a shared
 * cursor. A sender classifies each page of its chunk: zero pages become
 * bits of a ZERO message, pages whose XXH3-128 matches a page this sender
 * already sent in this round become DUP references, the rest go out as
 * PAGES, encrypted straight from the guest's memory. A chunk's PAGES are
 * sent before its DUPs on the same stream, so a reference always arrives
 * after the page it names; the destination applies each stream in order
 * and meets the other streams at the ROUND marker before the next round.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#define LOG_PREFIX "source"
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
	uint64_t pages, data, zero, dup;
	uint64_t bytes_data, bytes_zero, bytes_dup, bytes_proto;
};

struct mig_src;

struct sender {
	struct mig_src *src;
	struct tp_stream *st;
	pthread_t thread;
	bool started;
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
	struct iovec iov[1 + BATCH];
	uint8_t hdr[MIG_PAGES_FIXED + 8 * BATCH];
	uint8_t zbits[CHUNK / 8];
	struct mig_dup dups[CHUNK];
	uint32_t ndup;
	uint8_t msg[MIG_DUP_FIXED + MIG_DUP_ENTRY * CHUNK];
};

struct mig_src {
	struct ut_oom_guard oom;	/* postcopy: the only copy of pages */
	const struct mig_source_params *p;
	struct tp_session *sess;	/* current session */
	bool own_sess;			/* made by a reconnect: ours to free */
	uint64_t old_tx;		/* bytes sent on earlier sessions */
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
	bool paused;		/* we paused the VM */
	bool committed;		/* past the commitment point: no cancel */
	/* Cancelled before the commitment by the operator (with why,
	 * "SIGINT"). dest_discarded: the destination sent an ERROR (its
	 * cancel or failure) before RESUMED, so it never ran the guest and
	 * has discarded its VM: ours may resume even after a postcopy
	 * switchover. Main thread. */
	bool cancelled, dest_discarded;
	char why[32];
	/* Set with error when the round must stop: the senders stop at the
	 * next message; after ABORT_GRACE_NS the bulk streams are cut. */
	_Atomic bool abort;
	uint64_t abort_ns;
	bool bulk_cut;
	bool state_sent;	/* postcopy: the destination may run the guest */
	bool can_postcopy;	/* the destination accepted postcopy */
	/* Pushing after the switchover: the guest runs at the destination
	 * and may rewrite a page before a reference to it is applied, so
	 * duplicates go as data. */
	bool postcopy;
	/* Postcopy pre-paging: the page after the last fault, + 1 (0: none),
	 * and how many pages to push from there. */
	_Atomic uint64_t pivot;
	_Atomic uint32_t window;
	_Atomic uint64_t faults_since;	/* faults since a sender looked */
	struct urgent {
		pthread_t thread;
		bool started;
		int stop_fd;
		uint64_t requests, served;	/* pages asked for, sent */
		uint64_t bytes_data;		/* their payload bytes */
		uint8_t *buf;			/* COPY mode: one page */
	} urg;
	uint64_t start_ns;
	/* Round hand-off, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t gen;		/* bumped to start a round */
	uint32_t round, round_flags;
	unsigned int done;	/* senders finished with the round */
	bool stop;
	int error;		/* first sender error */
	char *err;		/* the caller's reason buffer, under lock */
	_Atomic uint64_t cursor;	/* next chunk */
	_Atomic uint64_t pages_done;	/* progress within the round */
	_Atomic uint64_t wire_bytes;	/* all bulk bytes, for the cap */
};

/* ---- the bandwidth cap ---- */

static void throttle(struct mig_src *s, size_t bytes)
{
	uint64_t sent = atomic_fetch_add(&s->wire_bytes, bytes) + bytes;
	uint64_t due, now;

	if (!s->p->bandwidth_limit)
		return;
	due = s->start_ns + sent * 1000000000.0 / s->p->bandwidth_limit;
	now = ut_now_ns();
	if (due > now) {
		struct timespec ts = { (due - now) / 1000000000ULL,
				       (due - now) % 1000000000ULL };

		nanosleep(&ts, NULL);
	}
}

/* ---- a sender ---- */

static void sender_fail(struct sender *w, int ret, const char *what)
{
	struct mig_src *s = w->src;

	pthread_mutex_lock(&s->lock);
	if (!s->error) {
		s->error = ret;
		mig_fail(s->err, ret, "sending %s: %s", what,
			 tp_stream_strerror(w->st)[0] ?
				 tp_stream_strerror(w->st) : strerror(-ret));
	}
	pthread_mutex_unlock(&s->lock);
}

static int flush_batch(struct sender *w)
{
	struct mig_src *s = w->src;
	uint32_t psz = s->vm.layout.r[w->batch_region].page_size;
	ssize_t n;
	int ret;

	if (!w->nbatch)
		return 0;
	if (atomic_load(&s->abort))
		return -ECANCELED;
	n = mig_enc_pages_hdr(w->hdr, sizeof(w->hdr), w->batch_region,
			      w->nbatch, w->batch_idx);
	if (n < 0)
		return n;
	w->iov[0] = (struct iovec){ w->hdr, n };
	for (uint32_t i = 0; i < w->nbatch; i++)
		w->iov[1 + i] = (struct iovec){ (void *)w->batch_ptr[i], psz };
	throttle(s, n + (size_t)w->nbatch * psz);
	ret = tp_send(w->st, MIG_MSG_PAGES, w->iov, 1 + w->nbatch, 0);
	if (ret)
		return ret;
	w->c.data += w->nbatch;
	w->c.bytes_data += (uint64_t)w->nbatch * psz;
	w->c.bytes_proto += n;
	w->nbatch = 0;
	return 0;
}

static int add_page(struct sender *w, uint32_t region, uint64_t idx,
		    const uint8_t *page)
{
	uint32_t psz = w->src->vm.layout.r[region].page_size;
	uint32_t max = BATCH_BYTES / psz ? BATCH_BYTES / psz : 1;
	int ret = 0;

	if (w->nbatch && (w->batch_region != region || w->nbatch >= max ||
			  w->nbatch >= BATCH))
		ret = flush_batch(w);
	if (ret)
		return ret;
	w->batch_region = region;
	w->batch_ptr[w->nbatch] = page;
	w->batch_idx[w->nbatch++] = idx;
	return ret;
}

/* Finds @h among the pages this sender sent this round, or records it. */
static bool seen_before(struct sender *w, const struct gm_hash *h,
			uint32_t region, uint64_t idx, struct dup_slot **out)
{
	uint64_t i = h->lo & w->mask;

	for (;; i = (i + 1) & w->mask) {
		struct dup_slot *e = &w->table[i];

		if (e->gen != w->gen) {
			/* Past half full, stop recording: probes stay short. */
			if (w->used * 2 < w->mask) {
				*e = (struct dup_slot){ *h, w->gen, region, idx };
				w->used++;
			}
			return false;
		}
		if (gm_hash_eq(&e->h, h)) {
			*out = e;
			return true;
		}
	}
}

static int send_zero_and_dups(struct sender *w, const struct chunk *c,
			      bool any_zero)
{
	ssize_t n;
	int ret;

	if (atomic_load(&w->src->abort))
		return -ECANCELED;
	if (any_zero) {
		struct mig_zero z = { c->region, c->start, c->n, w->zbits };

		n = mig_enc_zero(w->msg, sizeof(w->msg), &z);
		if (n < 0)
			return n;
		throttle(w->src, n);
		ret = mig_send_msg(w->st, MIG_MSG_ZERO, w->msg, n);
		if (ret)
			return ret;
		w->c.bytes_zero += n;
	}
	if (w->ndup) {
		n = mig_enc_dup(w->msg, sizeof(w->msg), w->dups, w->ndup);
		if (n < 0)
			return n;
		throttle(w->src, n);
		ret = mig_send_msg(w->st, MIG_MSG_DUP, w->msg, n);
		if (ret)
			return ret;
		w->c.bytes_dup += n;
		w->ndup = 0;
	}
	return 0;
}

/* COPY mode: reads the runs of pages to send in [i, i + n) of the chunk
 * into the stage, at their offset from @i. */
static int stage_window(struct sender *w, const struct chunk *c, uint32_t i,
			uint32_t n)
{
	struct mig_src *s = w->src;
	uint32_t psz = s->vm.layout.r[c->region].page_size;
	uint64_t base = s->vm.first[c->region] + c->start;

	for (uint32_t k = i; k < i + n;) {
		uint32_t run = 0;
		int ret;

		while (k + run < i + n && ut_bitmap_test(&s->todo, base + k + run))
			run++;
		if (run) {
			ret = mig_vm_read(&s->vm, c->region, c->start + k,
					  w->stage + (size_t)(k - i) * psz,
					  (size_t)run * psz);
			if (ret)
				return ret;
		}
		k += run + 1;
	}
	return 0;
}

/* Classifies and sends the pages to send in [i, i + n) of the chunk. */
static int send_window(struct sender *w, const struct chunk *c, uint32_t i,
		       uint32_t n, bool *any_zero)
{
	struct mig_src *s = w->src;
	uint32_t psz = s->vm.layout.r[c->region].page_size;
	uint64_t base = s->vm.first[c->region] + c->start;
	struct dup_slot *e;
	int ret = 0;

	if (s->vm.copy && (ret = stage_window(w, c, i, n)))
		return ret;
	for (uint32_t k = i; k < i + n && !ret; k++) {
		const uint8_t *page;
		struct gm_hash h;

		if (!ut_bitmap_test_and_clear(&s->todo, base + k))
			continue;
		ut_bitmap_set(&s->sent, base + k);
		w->c.pages++;
		page = s->vm.copy ? w->stage + (size_t)(k - i) * psz :
				    mig_vm_page(&s->vm, c->region, c->start + k);
		if (gm_is_zero(page, psz)) {
			w->zbits[k / 8] |= 1u << (k % 8);
			*any_zero = true;
			w->c.zero++;
			continue;
		}
		if (!s->postcopy) {
			gm_hash(page, psz, &h);
			if (seen_before(w, &h, c->region, c->start + k, &e)) {
				w->dups[w->ndup++] = (struct mig_dup){
					c->region, e->region, c->start + k,
					e->idx };
				w->c.dup++;
				continue;
			}
		}
		ret = add_page(w, c->region, c->start + k, page);
	}
	/* The stage is reused by the next window: send what points at it. */
	return ret ? ret : flush_batch(w);
}

static int send_chunk(struct sender *w, const struct chunk *c)
{
	struct mig_src *s = w->src;
	uint32_t psz = s->vm.layout.r[c->region].page_size;
	uint32_t win = s->vm.copy ? STAGE_BYTES / psz : c->n;
	bool any_zero = false;
	int ret = 0;

	memset(w->zbits, 0, sizeof(w->zbits));
	for (uint32_t i = 0; i < c->n && !ret; i += win)
		ret = send_window(w, c, i, c->n - i < win ? c->n - i : win,
				  &any_zero);
	if (!ret)
		ret = send_zero_and_dups(w, c, any_zero);
	atomic_fetch_add(&s->pages_done, c->n);
	return ret;
}

/* ---- postcopy pre-paging ---- */

#define WINDOW_MIN 16

/* The range after the last fault, if one is pending. */
static bool take_pivot(struct mig_src *s, struct chunk *c)
{
	uint64_t p = atomic_exchange(&s->pivot, 0), g, pages;
	uint32_t win = atomic_load(&s->window);
	unsigned int r;

	if (!p--)
		return false;
	for (r = 0; r + 1 < s->vm.nr && p >= s->vm.first[r + 1]; r++)
		;
	g = p - s->vm.first[r];
	pages = mig_region_pages(&s->vm.layout, r);
	if (g >= pages)
		return false;
	*c = (struct chunk){ r, g, pages - g < win ? pages - g : win };
	return true;
}

/* A chunk went by without a fault: look further ahead next time. */
static void grow_window(struct mig_src *s)
{
	uint32_t w = atomic_load(&s->window);

	if (atomic_exchange(&s->faults_since, 0) == 0 && w < CHUNK)
		atomic_store(&s->window, w * 2);
}

static int send_round(struct sender *w, uint32_t round, uint32_t flags)
{
	struct mig_src *s = w->src;
	uint8_t buf[32];
	uint64_t k;
	ssize_t n;
	int ret;

	memset(&w->c, 0, sizeof(w->c));
	w->gen++; /* empties the duplicate table */
	w->ndup = 0;
	for (;;) {
		struct chunk pc;

		if (take_pivot(s, &pc)) {
			ret = send_chunk(w, &pc);
		} else {
			k = atomic_fetch_add(&s->cursor, 1);
			if (k >= s->nchunks)
				break;
			ret = send_chunk(w, &s->chunks[k]);
			grow_window(s);
		}
		if (ret)
			return ret;
		pthread_mutex_lock(&s->lock);
		ret = s->error;
		pthread_mutex_unlock(&s->lock);
		if (ret)
			return 0; /* another sender failed: stop early */
	}
	n = mig_enc_round(buf, sizeof(buf), &(struct mig_round){
		round, flags, w->c.pages });
	ret = mig_send_msg(w->st, MIG_MSG_ROUND, buf, n);
	w->c.bytes_proto += n;
	return ret;
}

static void *sender_main(void *arg)
{
	struct sender *w = arg;
	struct mig_src *s = w->src;
	uint64_t seen = w->seen;

	for (;;) {
		uint32_t round, flags;
		int ret;

		pthread_mutex_lock(&s->lock);
		while (!s->stop && s->gen == seen)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stop) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		seen = s->gen;
		round = s->round;
		flags = s->round_flags;
		pthread_mutex_unlock(&s->lock);

		ret = send_round(w, round, flags);
		if (ret)
			sender_fail(w, ret, "guest pages");
		pthread_mutex_lock(&s->lock);
		s->done++;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

/* ---- setup ---- */

static int build_chunks(struct mig_src *s)
{
	uint64_t n = 0;

	for (unsigned int r = 0; r < s->vm.nr; r++)
		n += UT_DIV_ROUND_UP(mig_region_pages(&s->vm.layout, r), CHUNK);
	s->chunks = calloc(n, sizeof(*s->chunks));
	if (!s->chunks)
		return -ENOMEM;
	for (unsigned int r = 0; r < s->vm.nr; r++) {
		uint64_t pages = mig_region_pages(&s->vm.layout, r);

		for (uint64_t st = 0; st < pages; st += CHUNK)
			s->chunks[s->nchunks++] = (struct chunk){
				r, st, pages - st < CHUNK ? pages - st : CHUNK };
	}
	return 0;
}

/* Write-protect tracking of the VMM's RAM through the uffd it handed us. */
static int start_tracking(struct mig_src *s, char *err)
{
	struct gm_dirty_range ranges[VML_MAX_REGIONS];
	const struct vml_hello *h = &s->vm.link.hello;
	uint64_t have = 0;
	int fd, ret;

	fd = vml_client_take_uffd(&s->vm.link);
	if (fd < 0)
		return mig_fail(err, -EOPNOTSUPP, "the VM did not hand over "
				"a userfaultfd: dirty tracking impossible");
	gm_uffd_probe(&have);
	ret = gm_uffd_init(&s->uffd, fd, GM_UFFD_FEATURE_WP_ASYNC |
			   (have & (GM_UFFD_FEATURE_WP_UNPOPULATED |
				    UFFD_FEATURE_WP_HUGETLBFS_SHMEM)),
			   true);
	if (ret) {
		close(fd);
		return mig_fail(err, ret, "userfaultfd write-protect "
				"tracking is not available: %s",
				strerror(-ret));
	}
	for (unsigned int i = 0; i < s->vm.nr; i++)
		ranges[i] = (struct gm_dirty_range){
			h->regions[i].host_addr, h->regions[i].size,
			h->regions[i].page_size };
	ret = gm_dirty_create(&s->dirty, &(struct gm_dirty_params){
		.pid = h->pid, .uffd = &s->uffd, .ranges = ranges,
		.nr_ranges = s->vm.nr });
	if (ret)
		return mig_fail(err, ret, "cannot track the VM's writes: %s",
				strerror(-ret));
	return 0;
}

/* HELLO with the region table; the destination answers WELCOME or ERROR. */
static int negotiate(struct mig_src *s, struct tp_stream *ctl, char *err)
{
	struct mig_hello h = {
		.ver_min = MIG_WIRE_VERSION, .ver_max = MIG_WIRE_VERSION,
		.features = MIG_FEATURES_V1, .nbulk = s->nbulk,
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
		return mig_fail(err, n, "encoding HELLO failed");
	ret = mig_send_msg(ctl, MIG_MSG_HELLO, buf, n);
	if (!ret)
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
	if (ret)
		return mig_fail(err, ret, "handshake with the destination: %s",
				tp_stream_strerror(ctl));
	if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
		return mig_fail(err, -e.code, "the destination refused: %s",
				e.msg);
	if (m.type != MIG_MSG_WELCOME ||
	    mig_dec_welcome(buf, m.len, &h, &w))
		return mig_fail(err, -EPROTO, "the destination sent no valid "
				"WELCOME (message type 0x%x)", m.type);
	s->can_postcopy = w.features & MIG_FEAT_POSTCOPY;
	if (!s->can_postcopy && (s->p->mode == MIG_MODE_POSTCOPY ||
				 s->p->mode == MIG_MODE_HYBRID))
		return mig_fail(err, -EOPNOTSUPP, "the destination cannot do "
				"postcopy (its VM handed over no userfaultfd)");
	return 0;
}

static int start_senders(struct mig_src *s)
{
	uint64_t cap = 1;

	/* A table for twice the pages one sender would see of the guest. */
	while (cap < 2 * s->vm.total_pages / s->nbulk + 2 * CHUNK)
		cap <<= 1;
	s->senders = calloc(s->nbulk, sizeof(*s->senders));
	if (!s->senders)
		return -ENOMEM;
	for (unsigned int i = 0; i < s->nbulk; i++) {
		struct sender *w = &s->senders[i];

		w->src = s;
		/* Senders restarted after a recovery must not take the last
		 * round for a new one: it was run, and its done++ would end
		 * the next round early (found by TSan). */
		w->seen = s->gen;
		w->st = tp_session_bulk(s->sess, i);
		w->table = calloc(cap, sizeof(*w->table));
		w->mask = cap - 1;
		if (!w->table)
			return -ENOMEM;
		if (s->vm.copy) {
			w->stage = aligned_alloc(4096, STAGE_BYTES);
			if (!w->stage)
				return -ENOMEM;
			/* Touch it once here, not on the first round. */
			memset(w->stage, 0, STAGE_BYTES);
		}
		if (pthread_create(&w->thread, NULL, sender_main, w))
			return -EAGAIN;
		w->started = true;
	}
	return 0;
}

static void stop_senders(struct mig_src *s)
{
	if (!s->senders)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (unsigned int i = 0; i < s->nbulk; i++) {
		if (s->senders[i].started)
			pthread_join(s->senders[i].thread, NULL);
		free(s->senders[i].table);
		free(s->senders[i].stage);
	}
	free(s->senders);
	s->senders = NULL;
}

/* ---- rounds ---- */

static void report(struct mig_src *s, uint32_t round, uint64_t total_pages,
		   const struct mig_round_stats *last, bool final)
{
	struct mig_progress pr = { .round = round, .final = final };
	uint64_t avg_page = s->vm.ram_bytes / s->vm.total_pages;

	if (!s->p->progress)
		return;
	pr.round_bytes_total = total_pages * avg_page;
	pr.round_bytes_done = atomic_load(&s->pages_done) * avg_page;
	if (pr.round_bytes_done > pr.round_bytes_total)
		pr.round_bytes_done = pr.round_bytes_total;
	pr.bytes_sent = atomic_load(&s->wire_bytes);
	pr.throughput_mibs = pr.bytes_sent / (double)UT_MiB /
			     ((ut_now_ns() - s->start_ns) / 1e9);
	if (last) {
		pr.dirty_rate_mibs = last->dirty_rate_mibs;
		pr.predicted_downtime_ms = last->predicted_downtime_ms;
	}
	s->p->progress(&pr, s->p->progress_arg);
}

/* The control stream is quiet while the bulk streams work; a word every
 * second keeps the destination's control timeout from firing on a long
 * round. Only this (the main) thread uses the control stream. */
static void keepalive(struct mig_src *s)
{
	uint64_t now = ut_now_ns();

	if (now - s->last_keepalive < 1000000000ULL)
		return;
	s->last_keepalive = now;
	mig_send_msg(tp_session_control(s->sess), MIG_MSG_KEEPALIVE, NULL, 0);
}

/* How long senders get to stop at a message boundary once a round is
 * aborted, before their streams are cut under them. */
#define ABORT_GRACE_NS (2 * 1000000000ULL)

/* Stops the round: the senders stop at their next message, or, if one is
 * stuck on a peer that does not read, their streams are cut after a
 * grace period. The control stream stays up to tell the destination why. */
static void abort_round(struct mig_src *s, int code)
{
	pthread_mutex_lock(&s->lock);
	if (!s->error)
		s->error = code;
	pthread_mutex_unlock(&s->lock);
	if (!atomic_exchange(&s->abort, true))
		s->abort_ns = ut_now_ns();
	if (!s->bulk_cut && ut_now_ns() - s->abort_ns > ABORT_GRACE_NS) {
		for (unsigned int i = 0; i < tp_session_nbulk(s->sess); i++)
			shutdown(tp_stream_fd(tp_session_bulk(s->sess, i)),
				 SHUT_RDWR);
		s->bulk_cut = true;
	}
}

/* Under s->lock: the operator's reason, once, as the engine's reason. */
static int cancelled(struct mig_src *s, char *err)
{
	s->cancelled = true;
	return mig_fail(err, -ECANCELED, "cancelled (%s) before the "
			"switchover: the VM runs here", s->why);
}

/* Reads what the destination sent on the control stream while the main
 * thread was busy elsewhere: RESUMED (postcopy), KEEPALIVE, or ERROR,
 * which stops the migration. Returns 0 or -errno, with @err filled under
 * s->lock (senders write it too). */
static int poll_dest(struct mig_src *s)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct pollfd pfd = { tp_stream_fd(ctl), POLLIN, 0 };
	uint8_t buf[512];
	struct mig_error e;
	struct tp_msg m;
	int ret = 0;

	while (!ret && (tp_stream_pending(ctl) ||
			(poll(&pfd, 1, 0) == 1 && pfd.revents))) {
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
		pthread_mutex_lock(&s->lock);
		if (ret) {
			mig_fail(s->err, ret, "the destination went away: %s",
				 tp_stream_strerror(ctl));
		} else if (m.type == MIG_MSG_ERROR &&
			   !mig_dec_error(buf, m.len, &e)) {
			/* Before RESUMED: the guest never ran there. */
			s->dest_discarded = !s->resumed_seen;
			ret = e.code == ECANCELED ? -ECANCELED : -e.code;
			if (e.code == ECANCELED)
				mig_fail(s->err, ret, "the destination %s "
					 "before the switchover: the VM runs "
					 "here", e.msg);
			else
				mig_fail(s->err, ret, "the destination failed: "
					 "%s", e.msg);
		} else if (m.type == MIG_MSG_RESUMED && s->committed) {
			/* What follows (COMPLETE) is push()'s to read. */
			ret = mig_dec_resumed(buf, m.len, &s->resumed);
			s->resumed_seen = !ret;
			pthread_mutex_unlock(&s->lock);
			break;
		} else if (m.type != MIG_MSG_KEEPALIVE) {
			ret = mig_fail(s->err, -EPROTO, "the destination sent "
				       "control message 0x%x mid-round",
				       m.type);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return ret;
}

/* Between the waits of a round: a cancel before the commitment, or a
 * word from the destination, stops it. */
static void watch_round(struct mig_src *s)
{
	int ret = 0;

	if (s->cancelled || s->dest_discarded) {
		abort_round(s, -ECANCELED);
		return;
	}
	if (!s->committed &&
	    mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why))) {
		pthread_mutex_lock(&s->lock);
		ret = cancelled(s, s->err);
		pthread_mutex_unlock(&s->lock);
	} else if (!s->resumed_seen) {
		ret = poll_dest(s);
	}
	if (ret)
		abort_round(s, ret);
}

/* Sends the pages in s->todo as round @round; fills @rs. */
static int run_round(struct mig_src *s, uint32_t round, uint32_t flags,
		     struct mig_round_stats *rs, const struct mig_round_stats *prev)
{
	uint64_t t0 = ut_now_ns(), total = ut_bitmap_count(&s->todo);
	int ret;

	pthread_mutex_lock(&s->lock);
	atomic_store(&s->cursor, 0);
	atomic_store(&s->pages_done, 0);
	s->round = round;
	s->round_flags = flags;
	s->done = 0;
	s->gen++;
	pthread_cond_broadcast(&s->cond);
	while (s->done < s->nbulk) {
		mig_cond_wait_ms(&s->cond, &s->lock, 250);
		pthread_mutex_unlock(&s->lock);
		report(s, round, s->vm.total_pages, prev,
		       flags & MIG_ROUND_FINAL);
		keepalive(s);
		watch_round(s);
		pthread_mutex_lock(&s->lock);
	}
	ret = s->error;
	pthread_mutex_unlock(&s->lock);

	*rs = (struct mig_round_stats){ .round = round };
	for (unsigned int i = 0; i < s->nbulk; i++) {
		const struct counts *c = &s->senders[i].c;

		rs->pages += c->pages;
		rs->data_pages += c->data;
		rs->zero_pages += c->zero;
		rs->dup_pages += c->dup;
		rs->bytes += c->bytes_data + c->bytes_zero + c->bytes_dup +
			     c->bytes_proto;
		s->st->bytes_data += c->bytes_data;
		s->st->bytes_zero += c->bytes_zero;
		s->st->bytes_dup += c->bytes_dup;
	}
	(void)total;
	rs->duration_s = (ut_now_ns() - t0) / 1e9;
	rs->bandwidth_mibs = rs->bytes / (double)UT_MiB /
			     (rs->duration_s > 1e-6 ? rs->duration_s : 1e-6);
	if (s->st->nrounds < MIG_MAX_ROUNDS)
		s->st->rounds[s->st->nrounds++] = *rs;
	return ret;
}

/* ---- switchover ---- */


static int send_state(struct mig_src *s, struct tp_stream *ctl, char *err)
{
	void *blob = NULL;
	size_t len = 0;
	uint64_t t0 = ut_now_ns();
	int ret;

	ret = vml_client_save_state(&s->vm.link, &blob, &len);
	if (ret)
		return mig_fail(err, ret, "the VM could not save its state: %s",
				strerror(-ret));
	s->st->state_save_ms = (ut_now_ns() - t0) / 1e6;
	s->st->state_bytes = len;
	if (len > MIG_MAX_STATE) {
		free(blob);
		return mig_fail(err, -EMSGSIZE, "the VM's state blob is %zu "
				"bytes, more than the protocol carries", len);
	}
	ret = mig_send_msg(ctl, MIG_MSG_STATE, blob, len);
	free(blob);
	if (ret)
		return mig_fail(err, ret, "sending the VM state: %s",
				tp_stream_strerror(ctl));
	return 0;
}

/* Tells the VMM the switchover is committed, before the state leaves: an
 * agent that dies after this must not have the VMM resume a guest that
 * may run at the destination; one that dies before it has it resumed.
 * A VMM that predates COMMIT (-EOPNOTSUPP) keeps its old behaviour. */
static int commit_switchover(struct mig_src *s, char *err)
{
	int ret = s->dest_discarded ? -ECANCELED : poll_dest(s);

	if (ret)
		return ret;
	if (mig_cancel_commit(s->p->cancel, strcmp(s->st->mode, "postcopy") ?
			      "the guest's state has left, it resumes at the "
			      "destination (precopy)" :
			      "the guest runs at the destination (postcopy in "
			      "progress)")) {
		mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why));
		return cancelled(s, err);
	}
	s->committed = true;
	ret = vml_client_commit(&s->vm.link);

	if (ret == -EOPNOTSUPP) {
		pr_info("the VMM does not take COMMIT: it will not resume the "
			"VM by itself if this agent dies");
		return 0;
	}
	return ret ? mig_fail(err, ret, "the VM refused to commit the "
			      "switchover: %s", strerror(-ret)) : 0;
}

/* Waits for the destination's word that the guest runs there. */
static int wait_resumed(struct tp_stream *ctl, struct mig_resumed *r,
			char *err)
{
	uint8_t buf[512];
	struct tp_msg m;
	int ret = mig_recv_expect(ctl, MIG_MSG_RESUMED, buf, sizeof(buf), &m,
				  "waiting for the guest to resume there", err);

	if (!ret && mig_dec_resumed(buf, m.len, r))
		ret = mig_fail(err, -EPROTO, "a malformed RESUMED");
	return ret;
}

/* The guest runs at the destination with all its memory: say DONE, stop
 * tracking (while the source VM still exists to unregister from) and
 * let the source VM go. */
static int release(struct mig_src *s, struct tp_stream *ctl)
{
	int ret = mig_send_msg(ctl, MIG_MSG_DONE, NULL, 0);

	if (ret)
		pr_warn("telling the destination we are done: %s",
			tp_stream_strerror(ctl));
	s->paused = false;
	gm_dirty_destroy(s->dirty);
	s->dirty = NULL;
	ret = vml_client_quit(&s->vm.link);
	if (ret)
		pr_warn("the source VM did not quit: %s", strerror(-ret));
	return 0;
}

/* Stops the vCPUs (the downtime starts as PAUSE is sent, since the VMM
 * may stop them any time before it replies: @t monotonic, @rt realtime)
 * and adds what they wrote since the last harvest to todo. */
static int pause_vm(struct mig_src *s, uint64_t *t, uint64_t *rt, char *err)
{
	uint64_t t1;
	ssize_t n;
	int ret;

	*t = ut_now_ns();
	*rt = mig_realtime_ns();
	ret = vml_client_pause(&s->vm.link);
	if (ret)
		return mig_fail(err, ret, "the VM did not pause: %s",
				strerror(-ret));
	s->paused = true;
	t1 = ut_now_ns();
	s->st->pause_ms = (t1 - *t) / 1e6;
	n = gm_dirty_harvest(s->dirty, &s->todo);
	s->st->harvest_ms = (ut_now_ns() - t1) / 1e6;
	return n < 0 ? mig_fail(err, n, "reading the last dirty pages failed")
		     : 0;
}

static int switchover(struct mig_src *s, uint32_t round,
		      const struct mig_round_stats *prev, char *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs;
	struct mig_resumed r;
	uint64_t t_pause, rt_pause, t_back;
	int ret;

	ret = pause_vm(s, &t_pause, &rt_pause, err);
	if (ret)
		return ret;
	pr_info("round %u (final): the VM is paused, %llu pages to send",
		round, (unsigned long long)ut_bitmap_count(&s->todo));
	ret = run_round(s, round, MIG_ROUND_FINAL, &rs, prev);
	if (ret)
		return mig_fail(err, ret, "final round failed");
	ret = commit_switchover(s, err);
	if (!ret)
		ret = send_state(s, ctl, err);
	if (!ret)
		ret = wait_resumed(ctl, &r, err);
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
	return release(s, ctl);
}

/* ---- postcopy: the urgent stream ---- */

/* Sends page @idx of region @r on the urgent stream. */
static int serve_request(struct mig_src *s, struct tp_stream *st,
			 const struct mig_req *q)
{
	uint64_t g = s->vm.first[q->region] + q->idx;
	uint32_t psz = s->vm.layout.r[q->region].page_size;
	uint32_t w = atomic_load(&s->window);
	uint8_t hdr[MIG_PAGES_FIXED + 8];
	struct iovec iov[2];
	const uint8_t *page;
	ssize_t n;
	int ret;

	/* Pre-page after the fault, with a smaller window while faulting. */
	atomic_store(&s->window, w / 2 > WINDOW_MIN ? w / 2 : WINDOW_MIN);
	atomic_fetch_add(&s->faults_since, 1);
	atomic_store(&s->pivot, g + 2);
	s->urg.requests++;
	/* Send it even when a sender claimed it: that copy may sit behind
	 * megabytes of bulk data, and the guest is waiting. The source VM
	 * is paused, so both copies are the same; the second placement is
	 * an EEXIST at the destination. */
	ut_bitmap_test_and_clear(&s->todo, g);
	if (s->vm.copy) {
		ret = mig_vm_read(&s->vm, q->region, q->idx, s->urg.buf, psz);
		if (ret)
			return ret;
		page = s->urg.buf;
	} else {
		page = mig_vm_page(&s->vm, q->region, q->idx);
	}
	n = mig_enc_pages_hdr(hdr, sizeof(hdr), q->region, 1, &q->idx);
	iov[0] = (struct iovec){ hdr, n };
	iov[1] = (struct iovec){ (void *)page, psz };
	ret = tp_send(st, MIG_MSG_PAGES, iov, 2, 0);
	if (!ret) {
		ut_bitmap_set(&s->sent, g);
		s->urg.served++;
		s->urg.bytes_data += psz;
		atomic_fetch_add(&s->wire_bytes, n + psz);
	}
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
	if (ret)
		return ret;
	if (m.type != MIG_MSG_PAGE_REQ ||
	    mig_dec_req(buf, m.len, &s->vm.layout, req, MIG_MAX_REQS, &n))
		return -EPROTO;
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
				 { s->urg.stop_fd, POLLIN, 0 } };
	int ret = 0;

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
	if (ret && ret != -ESHUTDOWN)
		pr_warn("urgent stream: %s", tp_stream_strerror(st)[0] ?
			tp_stream_strerror(st) : strerror(-ret));
	return NULL;
}

static int start_urgent(struct mig_src *s)
{
	uint32_t maxpsz = 0;

	for (unsigned int i = 0; i < s->vm.nr; i++)
		if (s->vm.layout.r[i].page_size > maxpsz)
			maxpsz = s->vm.layout.r[i].page_size;
	s->urg.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->urg.stop_fd < 0)
		return -errno;
	if (s->vm.copy && !(s->urg.buf = aligned_alloc(4096, maxpsz)))
		return -ENOMEM;
	atomic_store(&s->window, WINDOW_MIN);
	if (pthread_create(&s->urg.thread, NULL, urgent_main, s))
		return -EAGAIN;
	s->urg.started = true;
	return 0;
}

static void stop_urgent(struct mig_src *s)
{
	uint64_t one = 1;

	if (s->urg.started) {
		if (write(s->urg.stop_fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("stopping the urgent thread failed");
		pthread_join(s->urg.thread, NULL);
		s->urg.started = false;
	}
	s->st->pages_requested += s->urg.served;
	s->st->bytes_data += s->urg.bytes_data;
	s->urg.served = s->urg.bytes_data = 0;
	if (s->urg.stop_fd > 0)
		close(s->urg.stop_fd);
	s->urg.stop_fd = -1;
	free(s->urg.buf);
	s->urg.buf = NULL;
}

/* ---- postcopy: the switchover ---- */

/* Tells the destination to drop the pages it holds that are dirty now:
 * todo & sent, sent per chunk as DISCARD bitmaps on the control stream. */
static int send_discards(struct mig_src *s, struct tp_stream *ctl,
			 uint64_t *ndiscard)
{
	uint8_t bits[CHUNK / 8], buf[MIG_ZERO_FIXED + CHUNK / 8];
	int ret = 0;

	for (uint64_t k = 0; k < s->nchunks && !ret; k++) {
		const struct chunk *c = &s->chunks[k];
		uint64_t base = s->vm.first[c->region] + c->start;
		bool any = false;
		ssize_t n;

		memset(bits, 0, sizeof(bits));
		for (uint32_t i = 0; i < c->n; i++) {
			if (!ut_bitmap_test(&s->todo, base + i) ||
			    !ut_bitmap_test_and_clear(&s->sent, base + i))
				continue;
			bits[i / 8] |= 1u << (i % 8);
			any = true;
			(*ndiscard)++;
		}
		if (!any)
			continue;
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

static int wait_complete(struct mig_src *s, struct tp_stream *ctl, char *err)
{
	uint8_t buf[1024];
	struct mig_complete c;
	struct tp_msg m;
	int ret = mig_recv_expect(ctl, MIG_MSG_COMPLETE, buf, sizeof(buf), &m,
				  "waiting for the destination to complete",
				  err);

	if (!ret && mig_dec_complete(buf, m.len, &c))
		ret = mig_fail(err, -EPROTO, "a malformed COMPLETE");
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
 * requests served first; then RESUMED (once) and COMPLETE. */
static int push(struct mig_src *s, uint32_t round,
		const struct mig_round_stats *prev, char *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs;
	int ret = start_urgent(s);

	if (ret)
		return mig_fail(err, ret, "cannot start the urgent thread");
	ret = run_round(s, round, MIG_ROUND_FINAL, &rs, prev);
	s->st->pages_pushed += rs.pages;
	if (ret)
		mig_fail(err, ret, "pushing the remaining pages failed");
	if (!ret && !s->resumed_seen) {
		ret = wait_resumed(ctl, &s->resumed, err);
		s->resumed_seen = !ret;
	}
	if (!ret)
		ret = wait_complete(s, ctl, err);
	stop_urgent(s);
	return ret;
}


static uint64_t session_tx(struct tp_session *sess)
{
	struct tp_stream_stats ss;
	uint64_t total = 0;

	tp_stream_get_stats(tp_session_control(sess), &ss);
	total += ss.tx_bytes;
	tp_stream_get_stats(tp_session_urgent(sess), &ss);
	total += ss.tx_bytes;
	for (unsigned int i = 0; i < tp_session_nbulk(sess); i++) {
		tp_stream_get_stats(tp_session_bulk(sess, i), &ss);
		total += ss.tx_bytes;
	}
	return total;
}

/* After a reconnect: HELLO saying so; the destination answers with its
 * RESUMED, the pages it still needs, and RECOVERED. */
static int recover_handshake(struct mig_src *s, char *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_hello h = {
		.ver_min = MIG_WIRE_VERSION, .ver_max = MIG_WIRE_VERSION,
		.features = MIG_FEATURES_V1 | MIG_FEAT_RECOVER,
		.nbulk = s->nbulk, .total_pages = s->vm.total_pages,
		.layout = s->vm.layout,
	};
	uint8_t buf[MIG_ZERO_FIXED + 4096];
	struct mig_error e;
	struct mig_zero z;
	struct tp_msg m;
	ssize_t n = mig_enc_hello(buf, sizeof(buf), &h);
	int ret = n < 0 ? n : mig_send_msg(ctl, MIG_MSG_HELLO, buf, n);

	ut_bitmap_clear_all(&s->todo);
	while (!ret) {
		ret = tp_recv(ctl, &m, buf, sizeof(buf));
		if (ret)
			break;
		if (m.type == MIG_MSG_RECOVERED)
			return 0;
		if (m.type == MIG_MSG_ERROR && !mig_dec_error(buf, m.len, &e))
			return mig_fail(err, -e.code, "the destination refused "
					"to recover: %s", e.msg);
		if (m.type == MIG_MSG_RESUMED) {
			ret = mig_dec_resumed(buf, m.len, &s->resumed);
			s->resumed_seen = !ret;
		} else if (m.type == MIG_MSG_NEED &&
			   !(ret = mig_dec_zero(buf, m.len, &s->vm.layout, &z))) {
			for (uint64_t i = 0; i < z.npages; i++)
				if (z.bits[i / 8] & (1u << (i % 8)))
					ut_bitmap_set(&s->todo,
						      s->vm.first[z.region] +
						      z.first + i);
		} else if (!ret) {
			ret = -EPROTO;
		}
	}
	return mig_fail(err, ret, "recovery handshake: %s",
			tp_stream_strerror(ctl)[0] ? tp_stream_strerror(ctl) :
						     strerror(-ret));
}

/* Replaces the session with a new one (reconnecting with backoff until the
 * recovery deadline), learns what the destination still needs, and
 * restarts the senders. The VM stays paused here meanwhile. */
static int recover(struct mig_src *s, char *err)
{
	uint32_t secs = s->p->recover_timeout_s ? s->p->recover_timeout_s : 60;
	uint64_t deadline = ut_now_ns() + secs * 1000000000ULL, wait = 200;
	struct tp_session *ns = NULL;
	int ret;

	if (!s->p->reconnect)
		return -ECONNRESET;
	pr_err("postcopy connection lost (%s); the VM waits paused here, "
	       "reconnecting for up to %u s", err, secs);
	mig_session_cut(s->sess);
	stop_urgent(s);
	stop_senders(s);
	pthread_mutex_lock(&s->lock);
	s->error = 0;
	s->stop = false;
	pthread_mutex_unlock(&s->lock);
	do {
		err[0] = 0;
		ret = s->p->reconnect(s->p->reconnect_arg, &ns, err);
		if (!ret)
			break;
		usleep(wait * 1000);
		wait = wait < 2000 ? wait * 2 : 2000;
	} while (ut_now_ns() < deadline);
	if (ret)
		return mig_fail(err, -ETIMEDOUT, "could not reconnect within "
				"%u s", secs);
	s->old_tx += session_tx(s->sess);
	if (s->own_sess)
		tp_session_destroy(s->sess);
	s->sess = ns;
	s->own_sess = true;
	err[0] = 0;
	ret = recover_handshake(s, err);
	if (!ret && (ret = start_senders(s)))
		mig_fail(err, ret, "cannot restart the senders");
	if (!ret) {
		s->st->recoveries++;
		pr_warn("postcopy recovered: %llu pages still to send",
			(unsigned long long)ut_bitmap_count(&s->todo));
	}
	return ret;
}

static int postcopy(struct mig_src *s, uint32_t round,
		    const struct mig_round_stats *prev, char *err)
{
	struct tp_stream *ctl = tp_session_control(s->sess);
	struct mig_round_stats rs;
	struct ut_bitmap swap;
	uint64_t t_pause, rt_pause, ndiscard = 0;
	int ret;

	ret = pause_vm(s, &t_pause, &rt_pause, err);
	if (ret)
		return ret;
	snprintf(s->st->mode, sizeof(s->st->mode), "postcopy");
	/* An empty round whose markers switch the receivers to atomic
	 * placement, then the pages they hold that changed since. */
	swap = s->todo;
	s->todo = s->spare;
	ret = run_round(s, round, MIG_ROUND_POSTCOPY, &rs, prev);
	s->spare = s->todo;
	s->todo = swap;
	if (!ret)
		ret = mig_send_msg(ctl, MIG_MSG_POSTCOPY, NULL, 0);
	if (!ret)
		ret = send_discards(s, ctl, &ndiscard);
	if (ret)
		return mig_fail(err, ret, "switching to postcopy failed");
	add_unsent(s);
	pr_info("postcopy: %llu pages discarded, %llu to push",
		(unsigned long long)ndiscard,
		(unsigned long long)ut_bitmap_count(&s->todo));
	ret = commit_switchover(s, err);
	if (ret)
		return ret;
	s->state_sent = true; /* from here on the guest may run there */
	/* Until COMPLETE, pages the running guest lacks exist only here. */
	ut_oom_protect(&s->oom, "it holds pages the destination's guest "
		       "still needs (postcopy)");
	ret = send_state(s, ctl, err);
	if (ret)
		return ret;
	s->postcopy = true;
	for (;;) {
		ret = push(s, round + 1, prev, err);
		if (!ret || s->dest_discarded || (ret = recover(s, err)))
			break;
	}
	if (ret)
		return ret;
	(void)t_pause;
	s->st->downtime_ms = s->resumed.realtime_ns > rt_pause ?
		(s->resumed.realtime_ns - rt_pause) / 1e6 :
		s->resumed.load_ns / 1e6;
	s->st->state_load_ms = s->resumed.load_ns / 1e6;
	s->st->cpu_s_dest = s->resumed.cpu_ns / 1e9;
	s->st->postcopy_s = (mig_realtime_ns() - s->resumed.realtime_ns) / 1e9;
	return release(s, tp_session_control(s->sess));
}

/* ferry-source --recover: a new agent finishing an interrupted postcopy.
 * The VM is paused here with all of its memory and nothing is tracked:
 * the destination says what it lacks, and that is pushed. */
static int resume_postcopy(struct mig_src *s, char *err)
{
	struct mig_round_stats rs = { 0 };
	uint32_t state = 0;
	uint64_t hbs;
	int ret = vml_client_status(&s->vm.link, &state, &hbs);

	if (ret || state != VML_STATE_PAUSED)
		return mig_fail(err, ret ? ret : -EINVAL, "the VM at %s is not "
				"paused: there is no interrupted postcopy to "
				"recover", s->p->vm_socket);
	/* The switchover was committed by the agent before us. */
	mig_cancel_commit(s->p->cancel, "the guest runs at the destination "
			  "(postcopy in progress)");
	s->paused = s->state_sent = s->postcopy = s->committed = true;
	ut_oom_protect(&s->oom, "it holds pages the destination's guest "
		       "still needs (postcopy recovery)");
	snprintf(s->st->mode, sizeof(s->st->mode), "postcopy");
	ret = recover_handshake(s, err);
	if (!ret && (ret = start_senders(s)))
		mig_fail(err, ret, "cannot start the sender threads");
	for (uint32_t round = 0; !ret; round++) {
		ret = push(s, round, &rs, err);
		if (!ret) {
			s->st->postcopy_s = (mig_realtime_ns() -
					     s->resumed.realtime_ns) / 1e9;
			return release(s, tp_session_control(s->sess));
		}
		ret = recover(s, err);
	}
	return ret;
}

/* ---- the engine ---- */

static void tell_dest(struct mig_src *s, int code, const char *msg)
{
	uint8_t buf[512];
	ssize_t n = mig_enc_error(buf, sizeof(buf), code, msg);

	if (n > 0)
		mig_send_msg(tp_session_control(s->sess), MIG_MSG_ERROR,
			     buf, n);
}

/* Asks the policy about round @rs->round, which left @dirty pages dirty,
 * and completes the round's figures with its prediction. */
static struct mig_verdict decide(struct mig_src *s,
				 const struct mig_policy *pol,
				 struct mig_policy_state *ps,
				 struct mig_round_stats *rs, uint64_t dirty)
{
	double avg_page = (double)s->vm.ram_bytes / s->vm.total_pages;
	struct mig_round_input in = {
		.round = rs->round,
		.dirty_bytes = dirty * avg_page,
		.bandwidth_mibs = rs->bandwidth_mibs,
		.duration_s = rs->duration_s,
		.elapsed_ns = ut_now_ns() - s->start_ns,
	};
	struct mig_verdict v = mig_policy_next(pol, ps, &in);

	rs->dirty_rate_mibs = v.dirty_rate_mibs;
	rs->predicted_downtime_ms = v.predicted_downtime_ms;
	if (s->st->nrounds)
		s->st->rounds[s->st->nrounds - 1] = *rs;
	return v;
}

static int cancel(struct mig_src *s, uint32_t rounds,
		  const struct mig_policy *pol, const struct mig_verdict *v,
		  char *err)
{
	snprintf(s->st->outcome, sizeof(s->st->outcome), "cancelled");
	mig_fail(err, -ETIMEDOUT, "the guest did not converge after %u rounds "
		 "(%.1f s): predicted downtime %.0f ms > limit %llu ms at "
		 "%.0f MiB/s dirty; the VM keeps running here", rounds,
		 (ut_now_ns() - s->start_ns) / 1e9, v->predicted_downtime_ms,
		 (unsigned long long)pol->downtime_limit_ms,
		 v->dirty_rate_mibs);
	tell_dest(s, ETIMEDOUT, err);
	return -ETIMEDOUT;
}

/* After telling the destination we cancelled: wait (bounded) until it
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

/* Precopy rounds until the policy says how they end (policy.c). */
static int migrate(struct mig_src *s, char *err)
{
	struct mig_round_stats rs = { 0 };
	struct mig_policy_state ps = { 0 };
	struct mig_policy pol;
	struct mig_verdict v;
	uint32_t round;
	ssize_t n;
	int ret;

	mig_policy_init(&pol, s->p, s->can_postcopy);
	snprintf(s->st->mode, sizeof(s->st->mode), "precopy");
	s->st->setup_s = (ut_now_ns() - s->start_ns) / 1e9;
	if (mig_cancel_requested(s->p->cancel, s->why, sizeof(s->why)))
		return cancelled(s, err);
	if (mig_policy_begin(&pol).decision == MIG_DECIDE_POSTCOPY)
		return postcopy(s, 0, &rs, err);
	ut_bitmap_set_range(&s->todo, 0, s->vm.total_pages);
	for (round = 0;; round++) {
		pr_info("round %u: %llu pages to send", round,
			(unsigned long long)ut_bitmap_count(&s->todo));
		ret = run_round(s, round, 0, &rs, &rs);
		if (ret)
			return mig_fail(err, ret, "round %u failed", round);
		ut_bitmap_clear_all(&s->todo);
		n = gm_dirty_harvest(s->dirty, &s->todo);
		if (n < 0)
			return mig_fail(err, n, "reading dirty pages failed");
		v = decide(s, &pol, &ps, &rs, n);
		report(s, round, s->vm.total_pages, &rs, false);
		switch (v.decision) {
		case MIG_DECIDE_ROUND:
			break;
		case MIG_DECIDE_SWITCHOVER:
			return switchover(s, round + 1, &rs, err);
		case MIG_DECIDE_POSTCOPY:
			if (v.reason != MIG_WHY_MODE)
				pr_info("round %u: predicted downtime %.0f ms "
					"has not fallen for %u rounds: "
					"switching to postcopy", round,
					v.predicted_downtime_ms, ps.stalled);
			return postcopy(s, round + 1, &rs, err);
		case MIG_DECIDE_CANCEL:
			return cancel(s, round + 1, &pol, &v, err);
		}
	}
}

static void final_stats(struct mig_src *s, double cpu0)
{
	struct mig_stats *st = s->st;
	uint64_t total = s->old_tx + session_tx(s->sess);

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

int mig_source_run(const struct mig_source_params *p, struct mig_stats *st,
		   char err[MIG_ERR_LEN])
{
	struct mig_src s = { .p = p, .st = st, .err = err,
			     .uffd = { .fd = -1 }, .urg = { .stop_fd = -1 } };
	double cpu0 = ut_cpu_seconds();
	int ret;

	err[0] = 0;
	memset(st, 0, sizeof(*st));
	snprintf(st->outcome, sizeof(st->outcome), "failed");
	s.start_ns = ut_now_ns();
	pthread_mutex_init(&s.lock, NULL);
	s.sess = p->session;
	s.nbulk = tp_session_nbulk(p->session);
	ret = mig_cond_init(&s.cond);
	if (ret) {
		mig_fail(err, ret, "cannot make a condition variable");
		goto out_lock;
	}
	ret = mig_vm_attach(&s.vm, p->vm_socket, p->mem_access, err);
	if (ret)
		goto out;
	if (s.vm.link.hello.flags & VML_F_INCOMING) {
		ret = mig_fail(err, -EINVAL, "the VM at %s is waiting for an "
			       "incoming migration, not running", p->vm_socket);
		goto out;
	}
	for (unsigned int i = 0; !ret && s.vm.copy && i < s.vm.nr; i++)
		if (s.vm.layout.r[i].page_size > STAGE_BYTES)
			ret = mig_fail(err, -EINVAL, "1G pages cannot be copied "
				       "through a buffer: use the mapped access");
	if (!ret)
		ret = build_chunks(&s);
	if (!ret)
		ret = ut_bitmap_init(&s.todo, s.vm.total_pages);
	if (!ret)
		ret = ut_bitmap_init(&s.sent, s.vm.total_pages);
	if (!ret)
		ret = ut_bitmap_init(&s.spare, s.vm.total_pages);
	if (ret) {
		mig_fail(err, ret, "out of memory");
		goto out;
	}
	if (p->recover) {
		ret = resume_postcopy(&s, err);
		goto done;
	}
	pr_info("attached in %.1f ms", (ut_now_ns() - s.start_ns) / 1e6);
	ret = start_tracking(&s, err);
	pr_info("tracking armed at %.1f ms", (ut_now_ns() - s.start_ns) / 1e6);
	if (!ret)
		ret = negotiate(&s, tp_session_control(p->session), err);
	if (!ret && (ret = start_senders(&s)))
		mig_fail(err, ret, "cannot start the sender threads");
	if (!ret)
		ret = migrate(&s, err);
done:
	if (!ret)
		snprintf(st->outcome, sizeof(st->outcome), "completed");
out:
	if (ret == -ECANCELED && (s.cancelled || s.dest_discarded))
		snprintf(st->outcome, sizeof(st->outcome), "cancelled");
	if (ret && s.state_sent && !s.dest_discarded) {
		/* The destination may be running the guest: resuming here
		 * would fork it. Keep it paused, with all its memory. */
		snprintf(st->outcome, sizeof(st->outcome), "interrupted");
		pr_err("postcopy interrupted: the VM stays paused here with all "
		       "of its memory; the destination holds the running copy");
	} else if (ret && s.paused) {
		/* Before the destination runs the guest, it is still ours. */
		int r2 = vml_client_resume(&s.vm.link);

		if (r2)
			pr_err("resuming the source VM failed: %s",
			       strerror(-r2));
	}
	if (s.cancelled && s.senders) {
		char msg[64];

		snprintf(msg, sizeof(msg), "was cancelled by the operator "
			 "(%s)", s.why);
		tell_dest(&s, ECANCELED, msg);
		linger(&s);
	} else if (ret && ret != -ETIMEDOUT && s.senders && !s.state_sent &&
		   !s.dest_discarded) {
		tell_dest(&s, -ret, err[0] ? err : "source failed");
	}
	stop_senders(&s);
	ut_oom_restore(&s.oom);
	if (s.senders == NULL && s.vm.nr)
		final_stats(&s, cpu0);
	gm_dirty_destroy(s.dirty);
	gm_uffd_close(&s.uffd);
	stop_urgent(&s);
	ut_bitmap_fini(&s.todo);
	ut_bitmap_fini(&s.sent);
	ut_bitmap_fini(&s.spare);
	free(s.chunks);
	mig_vm_detach(&s.vm);
	if (s.own_sess)
		tp_session_destroy(s.sess);
	pthread_cond_destroy(&s.cond);
out_lock:
	pthread_mutex_destroy(&s.lock);
	return ret;
}
