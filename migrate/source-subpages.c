// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's sub-page deltas on huge pages (MIG_FEAT_SUBPAGES): the
 * source keeps an XXH3-128 per 4 KiB sub-page of every huge page it sent
 * (s->sub.hash), and a dirty huge page goes as SUBPAGES messages, one per
 * 2 MiB window, carrying only the sub-pages whose hash changed (zero ones
 * as bits). In precopy the senders hash a staged copy, so that what is
 * hashed is what is sent; in postcopy (MIG_FEAT_SUBPAGES_KEEP) the source
 * VM is paused, the hashes are frozen, and the push and the urgent thread
 * send deltas against the copy the destination kept. A huge page sent in
 * 4 KiB units (MIG_FEAT_PAGESIZES: the destination's pages are smaller or
 * larger) keeps the same hash per unit, so that a unit of a dirty huge
 * page whose bytes did not change is not sent again.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

/*
 * Compares the 2 MiB window at @win per 4 KiB with @hs (what the
 * destination holds; nothing unless @have) and fills @sp's bitmaps and
 * @iov[1 ..] with what changed; with @record the new hashes go into @hs.
 * Returns the number of sub-pages that changed, or -1 as soon as more
 * than @max_data of them carry data.
 */
static int diff_subpages(const uint8_t *win, struct gm_hash *hs, bool have,
			 bool record, uint32_t max_data,
			 struct mig_subpages *sp, struct iovec *iov)
{
	int changed = 0;

	for (uint32_t i = 0; i < MIG_SUB_PER_PAGE; i++) {
		const uint8_t *sub = win + (size_t)i * MIG_SUB_SIZE;
		struct gm_hash h;

		gm_hash(sub, MIG_SUB_SIZE, &h);
		if (have && gm_hash_eq(&h, &hs[i]))
			continue;
		if (record)
			hs[i] = h;
		changed++;
		if (gm_is_zero(sub, MIG_SUB_SIZE)) {
			sp->zero[i / 8] |= 1u << (i % 8);
			continue;
		}
		if (sp->count >= max_data)
			return -1;
		sp->data[i / 8] |= 1u << (i % 8);
		iov[1 + sp->count++] = (struct iovec){ (void *)sub, MIG_SUB_SIZE };
	}
	return changed;
}

static int send_subpages(struct sender *w, const struct mig_subpages *sp)
{
	ssize_t n = mig_enc_subpages_hdr(w->subhdr, sizeof(w->subhdr), sp);
	int ret;

	if (n < 0)
		return n;
	w->subiov[0] = (struct iovec){ w->subhdr, n };
	src_throttle(w->src, n + (size_t)sp->count * MIG_SUB_SIZE);
	ret = tp_send(w->st, MIG_MSG_SUBPAGES, w->subiov, 1 + sp->count, 0);
	if (ret)
		return ret;
	w->c.subpages += sp->count;
	w->c.bytes_data += (uint64_t)sp->count * MIG_SUB_SIZE;
	w->c.bytes_proto += n;
	return 0;
}

int src_send_huge(struct sender *w, uint32_t region, uint64_t idx,
		  const uint8_t *page)
{
	struct mig_src *s = w->src;
	uint32_t nwin = s->vm.layout.r[region].page_size / MIG_SUB_WINDOW;
	uint64_t g = s->vm.first[region] + idx;
	struct gm_hash *hs = s->sub.hash[region] +
			     idx * nwin * MIG_SUB_PER_PAGE;
	bool have = ut_bitmap_test(&s->sub.valid, g), any = false;
	int ret = 0;

	ut_bitmap_set(&s->sub.valid, g);
	for (uint32_t win = 0; win < nwin && !ret; win++) {
		struct mig_subpages sp = { .region = region, .page = idx,
					   .first = win * MIG_SUB_PER_PAGE };

		memcpy(w->hstage, page + (size_t)win * MIG_SUB_WINDOW,
		       MIG_SUB_WINDOW);
		if (!diff_subpages(w->hstage, hs + sp.first, have, true,
				   MIG_SUB_PER_PAGE, &sp, w->subiov))
			continue;
		if (nwin == 1 && (!have || sp.count * 2 > MIG_SUB_PER_PAGE))
			return src_send_one(w, region, idx, w->hstage);
		any = true;
		ret = send_subpages(w, &sp);
	}
	if (!ret && any)
		w->c.delta++;
	else if (!ret)
		w->c.same++;
	return ret;
}

bool src_unit_same(struct mig_src *s, uint32_t r, uint64_t idx,
		   const uint8_t *page, struct gm_hash *h)
{
	uint64_t g = s->vm.first[r] + idx;
	struct gm_hash *hs = &s->sub.hash[r][idx];

	gm_hash(page, MIG_SUB_SIZE, h);
	if (ut_bitmap_test(&s->sub.valid, g) && gm_hash_eq(h, hs))
		return true;
	*hs = *h;
	ut_bitmap_set(&s->sub.valid, g);
	return false;
}

bool src_unit_held(struct mig_src *s, uint32_t r, uint64_t idx)
{
	uint64_t g = s->vm.first[r] + idx;
	struct gm_hash h;

	if (!s->sub.on || !s->sub.hash[r] || !s->vm.map[r].host ||
	    mig_vm_per_page(&s->vm, r) == 1 ||
	    !ut_bitmap_test(&s->sub.valid, g))
		return false;
	gm_hash(mig_vm_page(&s->vm, r, idx), MIG_SUB_SIZE, &h);
	return gm_hash_eq(&h, &s->sub.hash[r][idx]);
}

ssize_t src_send_kept(struct mig_src *s, struct tp_stream *st, uint32_t r,
		      uint64_t idx, const uint8_t *page, struct iovec *iov,
		      uint8_t *hdr)
{
	uint64_t g = s->vm.first[r] + idx;
	struct mig_subpages sp = { .region = r, .page = idx };
	ssize_t n;
	int ret;

	if (!s->sub.on || !s->sub.keep || !s->sub.hash[r] ||
	    s->vm.layout.r[r].page_size != MIG_SUB_WINDOW ||
	    !ut_bitmap_test(&s->sub.valid, g))
		return 0;
	/* The hashes are frozen (@record false): no round follows. */
	if (diff_subpages(page, s->sub.hash[r] + idx * MIG_SUB_PER_PAGE, true,
			  false, MIG_SUB_PER_PAGE / 2, &sp, iov) < 0)
		return 0;
	n = mig_enc_subpages_hdr(hdr, MIG_SUBPAGES_FIXED, &sp);
	if (n < 0)
		return n;
	iov[0] = (struct iovec){ hdr, n };
	ret = tp_send(st, MIG_MSG_SUBPAGES, iov, 1 + sp.count, 0);
	if (ret)
		return ret;
	n += (ssize_t)sp.count * MIG_SUB_SIZE;
	atomic_fetch_add(&s->wire_bytes, n);
	return n;
}
