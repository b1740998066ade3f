// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's sender threads, one per bulk stream. The main thread
 * publishes a round (src_run_round); each sender takes chunks of 1024
 * pages (never crossing a region) from a shared cursor, classifies each
 * page: zero pages become bits of a ZERO message, pages whose XXH3-128
 * matches a page this sender already sent in this round become DUP
 * references, the rest go out as PAGES. The copies of a data page: with
 * --mem-access map the transport seals it straight from the guest's
 * memory (the cipher's pass, into the send buffer: 1); with copy (what
 * auto picks for 4 KiB pages) pread puts it in the sender's stage first
 * (2); then the kernel's copy into the socket (transport/transport.h
 * counts the transport's). A chunk's PAGES are sent before its DUPs on
 * the same stream, so a reference always arrives after the page it names.
 * A dirty huge page with sub-page deltas on goes through
 * source-subpages.c instead. In postcopy a sender first pushes the window
 * after the last fault.
 * The bandwidth cap is source-steer.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

static void sender_fail(struct sender *w, int ret, const char *what)
{
	struct mig_src *s = w->src;

	pthread_mutex_lock(&s->rd.lock);
	if (!s->rd.error) {
		s->rd.error = ret;
		ut_err_first(s->rd.err, ret, "sending %s: %s", what,
			 tp_stream_err(w->st)->msg[0] ?
				 tp_stream_err(w->st)->msg : strerror(-ret));
	}
	pthread_mutex_unlock(&s->rd.lock);
}

/* PAGES: @count pages of @region (@idx, at @ptr) in one message, its
 * header in @hdr (@hcap), its vector in @iov (1 + @count); @inject says
 * whether the test's bad-PAGES injection may hit it. */
static int send_pages(struct sender *w, uint8_t *hdr, size_t hcap,
		      struct iovec *iov, uint32_t region, uint32_t count,
		      const uint64_t *idx, const uint8_t *const *ptr,
		      bool inject)
{
	struct mig_src *s = w->src;
	uint32_t psz = s->vm.layout.r[region].page_size;
	ssize_t n = mig_enc_pages_hdr(hdr, hcap, region, count, idx);
	int ret;

	if (n < 0)
		return n;
	if (inject && s->p->inject &&
	    mig_inject_hit(s->p->inject, &s->p->inject->pages_msgs,
			   s->p->inject->src_bad_pages))
		memset(hdr + n - 8, 0xff, 8);	/* the last index */
	iov[0] = (struct iovec){ hdr, n };
	for (uint32_t i = 0; i < count; i++)
		iov[1 + i] = (struct iovec){ (void *)ptr[i], psz };
	src_throttle(s, n + (size_t)count * psz);
	ret = tp_send(w->st, MIG_MSG_PAGES, iov, 1 + count, 0);
	if (ret)
		return ret;
	w->c.data += count;
	w->c.bytes_data += (uint64_t)count * psz;
	w->c.bytes_proto += n;
	return 0;
}

static int flush_batch(struct sender *w)
{
	int ret;

	if (!w->nbatch)
		return 0;
	if (atomic_load(&w->src->rd.abort))
		return -ECANCELED;
	ret = send_pages(w, w->hdr, sizeof(w->hdr), w->iov, w->batch_region,
			 w->nbatch, w->batch_idx, w->batch_ptr, true);
	if (!ret)
		w->nbatch = 0;
	return ret;
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

int src_send_one(struct sender *w, uint32_t region, uint64_t idx,
		 const uint8_t *buf)
{
	return send_pages(w, w->subhdr, sizeof(w->subhdr), w->subiov, region,
			  1, &idx, &buf, false);
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

	if (atomic_load(&w->src->rd.abort))
		return -ECANCELED;
	if (any_zero) {
		struct mig_zero z = { c->region, c->start, c->n, w->zbits };

		n = mig_enc_zero(w->msg, sizeof(w->msg), &z);
		if (n < 0)
			return n;
		src_throttle(w->src, n);
		ret = mig_send_msg(w->st, MIG_MSG_ZERO, w->msg, n);
		if (ret)
			return ret;
		w->c.bytes_zero += n;
	}
	if (w->ndup) {
		n = mig_enc_dup(w->msg, sizeof(w->msg), w->dups, w->ndup);
		if (n < 0)
			return n;
		src_throttle(w->src, n);
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
		uint64_t nx = ut_bitmap_find_next_below(&s->todo, base + k,
							base + i + n);
		uint32_t run = 0;
		int ret;

		if (nx >= base + i + n)
			break;
		k = (uint32_t)(nx - base);
		while (k + run < i + n && ut_bitmap_test(&s->todo, base + k + run))
			run++;
		if (run) {	/* none: the urgent thread took it meanwhile */
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
	/*
	 * A duplicate is sent as a reference to a page this sender sent,
	 * which the destination copies from what it received. The hash must
	 * be of those bytes: true of a staged copy (COPY mode) and of a
	 * paused guest (the final round), not of pages read in place while
	 * the guest runs, which can change between the hash and the send
	 * (the reference would then copy the new bytes into a page that was
	 * never written, and nothing would resend it). After the switchover
	 * the guest runs there: duplicates go as data.
	 */
	bool dedup = !s->postcopy &&
		     (s->vm.copy || (s->rd.flags & MIG_ROUND_FINAL));

	if (s->vm.copy && (ret = stage_window(w, c, i, n)))
		return ret;
	for (uint32_t k = i; k < i + n && !ret; k++) {
		const uint8_t *page;
		struct gm_hash h;
		uint64_t nx;
		bool hashed;

		/* Cut short (only a round the guest runs through): the
		 * pages not reached keep their todo bits. */
		if (atomic_load_explicit(&s->rd.cut, memory_order_relaxed))
			break;
		/* Over the pages not to send a word at a time: a round only
		 * clears todo bits (the harvest sets them between rounds),
		 * so none is missed. Testing each page (an atomic exchange)
		 * cost an idle 2 GiB guest's final round 2.7 ms. */
		nx = ut_bitmap_find_next_below(&s->todo, base + k, base + i + n);
		if (nx >= base + i + n)
			break;
		k = (uint32_t)(nx - base);
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
			/* A unit: the destination holds zeros, which a
			 * discard can tell are unchanged (src_unit_held). */
			if (s->sub.on && s->sub.hash[c->region] &&
			    psz == MIG_SUB_SIZE && !s->postcopy)
				(void)src_unit_same(s, c->region, c->start + k,
						    page, &h);
			else if (s->sub.on)
				ut_bitmap_clear(&s->sub.valid, base + k);
			continue;
		}
		hashed = false;
		if (s->sub.on && s->sub.hash[c->region] && psz == MIG_SUB_SIZE) {
			/* A unit of a huge page: staged (units_apply). */
			if (!s->postcopy &&
			    src_unit_same(s, c->region, c->start + k, page, &h)) {
				w->c.same++;
				continue;
			}
			hashed = !s->postcopy;
		} else if (s->sub.on && !s->postcopy && s->sub.hash[c->region]) {
			ret = src_send_huge(w, c->region, c->start + k, page);
			continue;
		}
		if (s->postcopy && s->sub.keep) {
			ssize_t sent = src_send_kept(s, w->st, c->region,
						     c->start + k, page,
						     w->subiov, w->subhdr);

			if (sent > 0) {
				w->c.delta++;
				w->c.bytes_data += sent;
			}
			ret = sent < 0 ? (int)sent : 0;
			if (sent)
				continue;
		}
		if (dedup) {
			if (!hashed)
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
	atomic_fetch_add(&s->rd.pages_done, c->n);
	return ret;
}

/* The range after the last fault, if one is pending. */
static bool take_pivot(struct mig_src *s, struct chunk *c)
{
	uint64_t p = atomic_exchange(&s->pp.pivot, 0), g, pages;
	uint32_t win = atomic_load(&s->pp.window);
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
	uint32_t w = atomic_load(&s->pp.window);

	if (atomic_exchange(&s->pp.faults_since, 0) == 0 && w < CHUNK)
		atomic_store(&s->pp.window, w * 2);
}

/* MIG_FEAT_ROUND_ACK: waits (within the stream's I/O timeout) for the
 * destination's answer to the ROUND @sent just ended this stream's part
 * of a round with (mig_round_acked()). Anything else is the destination
 * breaking the protocol, said here (before sender_fail's generic line). */
static int await_ack(struct sender *w, const struct mig_round *sent)
{
	struct mig_src *s = w->src;
	struct mig_round rd;
	uint8_t buf[64];
	struct tp_msg m;
	char why[160] = "";
	int ret = tp_recv(w->st, &m, buf, sizeof(buf));

	if (ret && ret != -EMSGSIZE) {
		pthread_mutex_lock(&s->rd.lock);
		if (!s->rd.error) {
			s->rd.error = ret;
			ut_err_first(s->rd.err, ret, "waiting for the destination "
				     "to place round %u of a bulk stream: %s",
				     sent->round, tp_stream_err(w->st)->msg[0] ?
				     tp_stream_err(w->st)->msg : strerror(-ret));
		}
		pthread_mutex_unlock(&s->rd.lock);
		return ret;
	}
	if (ret)
		snprintf(why, sizeof(why), "a message of %llu bytes",
			 (unsigned long long)m.len);
	else if (m.type != MIG_MSG_ROUND)
		snprintf(why, sizeof(why), "message 0x%x", m.type);
	else if (mig_dec_round(buf, m.len, &rd))
		snprintf(why, sizeof(why), "a malformed ROUND (%s)",
			 mig_wire_reason());
	else if (rd.round != sent->round || rd.flags != sent->flags ||
		 rd.pages != sent->pages)
		snprintf(why, sizeof(why), "round %u (flags %u, %llu pages)",
			 rd.round, rd.flags, (unsigned long long)rd.pages);
	if (!why[0])
		return 0;
	ret = -EPROTO;
	pthread_mutex_lock(&s->rd.lock);
	if (!s->rd.error) {
		s->rd.error = ret;
		ut_err_first(s->rd.err, ret, "the destination answered the "
			     "end of round %u (%llu pages) on a bulk stream "
			     "with %s", sent->round,
			     (unsigned long long)sent->pages, why);
	}
	pthread_mutex_unlock(&s->rd.lock);
	return ret;
}

static int send_round(struct sender *w, uint32_t round, uint32_t flags)
{
	struct mig_src *s = w->src;
	struct mig_round end;
	uint8_t buf[32];
	uint64_t k;
	ssize_t n;
	int ret;

	memset(&w->c, 0, sizeof(w->c));
	w->gen++; /* empties the duplicate table */
	w->ndup = 0;
	for (;;) {
		struct chunk pc;

		/* Cut short: what is left stays in todo for what follows. */
		if (atomic_load(&s->rd.cut))
			break;
		if (flags & MIG_ROUND_DISCARD) {
			k = atomic_fetch_add(&s->rd.cursor, 1);
			if (k >= s->nchunks)
				break;
			ret = src_send_discard(w, &s->chunks[k]);
		} else if (take_pivot(s, &pc)) {
			ret = send_chunk(w, &pc);
		} else {
			k = atomic_fetch_add(&s->rd.cursor, 1);
			if (k >= s->nchunks)
				break;
			ret = send_chunk(w, &s->chunks[k]);
			grow_window(s);
		}
		if (ret)
			return ret;
		pthread_mutex_lock(&s->rd.lock);
		ret = s->rd.error;
		pthread_mutex_unlock(&s->rd.lock);
		if (ret)
			return 0; /* another sender failed: stop early */
	}
	end = (struct mig_round){ round, flags, w->c.pages };
	n = mig_enc_round(buf, sizeof(buf), &end);
	ret = mig_send_msg(w->st, MIG_MSG_ROUND, buf, n);
	w->c.bytes_proto += n;
	if (!ret && s->round_ack && mig_round_acked(flags)) {
		uint64_t t0 = ut_now_ns();

		ret = await_ack(w, &end);
		w->c.ack_ns = ut_now_ns() - t0;
	}
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

		pthread_mutex_lock(&s->rd.lock);
		while (!mig_worker_stopping(&w->wk) && s->rd.gen == seen)
			pthread_cond_wait(&s->rd.cond, &s->rd.lock);
		if (mig_worker_stopping(&w->wk)) {
			pthread_mutex_unlock(&s->rd.lock);
			break;
		}
		seen = s->rd.gen;
		round = s->rd.round;
		flags = s->rd.flags;
		pthread_mutex_unlock(&s->rd.lock);

		ret = send_round(w, round, flags);
		if (ret)
			sender_fail(w, ret, "guest pages");
		pthread_mutex_lock(&s->rd.lock);
		s->rd.done++;
		pthread_cond_broadcast(&s->rd.cond);
		pthread_mutex_unlock(&s->rd.lock);
	}
	return NULL;
}

/* Pages of region @r a chunk takes: CHUNK of 4 KiB, as many bytes (4
 * MiB) of larger pages. CHUNK huge pages would make one chunk of a
 * region of a few GiB, which one sender alone would carry. */
static uint32_t chunk_pages(const struct mig_src *s, unsigned int r)
{
	uint32_t n = CHUNK * MIG_SUB_SIZE / s->vm.layout.r[r].page_size;

	return n ? n : 1;
}

int src_chunks_build(struct mig_src *s)
{
	uint64_t n = 0;

	for (unsigned int r = 0; r < s->vm.nr; r++)
		n += UT_DIV_ROUND_UP(mig_region_pages(&s->vm.layout, r),
				     chunk_pages(s, r));
	s->chunks = calloc(n, sizeof(*s->chunks));
	if (!s->chunks)
		return -ENOMEM;
	for (unsigned int r = 0; r < s->vm.nr; r++) {
		uint64_t pages = mig_region_pages(&s->vm.layout, r);
		uint32_t per = chunk_pages(s, r);

		for (uint64_t st = 0; st < pages; st += per)
			s->chunks[s->nchunks++] = (struct chunk){
				r, st, pages - st < per ? pages - st : per };
	}
	return 0;
}

/* The most slots of a sender's duplicate table (a power of two). */
#define DUP_TABLE_MAX (1u << 18)

int src_senders_start(struct mig_src *s)
{
	uint64_t cap = 1;

	/* A table for twice the pages one sender would see of the guest, up
	 * to DUP_TABLE_MAX slots: it records pages only until half full, so
	 * a bigger guest just finds fewer duplicates per round, and the
	 * agent's memory stays bounded whatever the guest's size (at 40
	 * bytes a slot, 10 MiB a sender; 512 MiB of guest fill it). */
	while (cap < 2 * s->vm.total_pages / s->nbulk + 2 * CHUNK &&
	       cap < DUP_TABLE_MAX)
		cap <<= 1;
	s->senders = calloc(s->nbulk, sizeof(*s->senders));
	if (!s->senders)
		return -ENOMEM;
	for (unsigned int i = 0; i < s->nbulk; i++)
		mig_worker_init(&s->senders[i].wk);
	for (unsigned int i = 0; i < s->nbulk; i++) {
		struct sender *w = &s->senders[i];
		int ret;

		w->src = s;
		/* Senders restarted after a recovery must not take the last
		 * round for a new one: it was run, and its done++ would end
		 * the next round early (found by TSan). */
		w->seen = s->rd.gen;
		w->st = tp_session_bulk(s->sess, i);
		w->table = calloc(cap, sizeof(*w->table));
		w->mask = cap - 1;
		if (!w->table)
			return -ENOMEM;
		if (s->sub.on) {
			w->hstage = aligned_alloc(4096, MIG_SUB_WINDOW);
			if (!w->hstage)
				return -ENOMEM;
			memset(w->hstage, 0, MIG_SUB_WINDOW);
		}
		if (s->vm.copy) {
			w->stage = aligned_alloc(4096, STAGE_BYTES);
			if (!w->stage)
				return -ENOMEM;
			/* Touch it once here, not on the first round. */
			memset(w->stage, 0, STAGE_BYTES);
		}
		ret = mig_worker_start(&w->wk, sender_main, w);
		if (ret)
			return ret;
	}
	return 0;
}

void src_senders_stop(struct mig_src *s)
{
	if (!s->senders)
		return;
	/* Kicked under the lock, so that no sender checks between its
	 * test and its wait and sleeps through the broadcast. */
	pthread_mutex_lock(&s->rd.lock);
	for (unsigned int i = 0; i < s->nbulk; i++)
		mig_worker_kick(&s->senders[i].wk);
	pthread_cond_broadcast(&s->rd.cond);
	pthread_mutex_unlock(&s->rd.lock);
	for (unsigned int i = 0; i < s->nbulk; i++) {
		mig_worker_join(&s->senders[i].wk);
		free(s->senders[i].table);
		free(s->senders[i].stage);
		free(s->senders[i].hstage);
	}
	free(s->senders);
	s->senders = NULL;
}
