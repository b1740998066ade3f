// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Encoders and decoders of the placement messages (see wire.h): the
 * destination's TOPOLOGY and the source's HEAT map.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#define LOG_PREFIX "wire"
#include "migrate/wire-cursor.h"
#include "util/util.h"

/* ---- TOPOLOGY ---- */

static void put_str(struct cur *c, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	put(c, n, 1);
	for (size_t i = 0; i < n; i++)
		put(c, (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?', 1);
}

/* Into @out of @cap bytes (NUL included); false if too long or
 * unprintable. */
static bool get_str(struct cur *c, char *out, size_t cap)
{
	size_t n = get(c, 1);

	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = get(c, 1);

		if (ch < 0x20 || ch >= 0x7f)
			return false;
		out[i] = ch;
	}
	out[n] = 0;
	return true;
}

static void put_node(struct cur *c, const struct mig_topology *t, uint32_t i)
{
	const struct gm_numa_node *n = &t->host.node[i];

	put32(c, n->id);
	put32(c, n->tier);
	put32(c, n->ncpus);
	put32(c, 0);
	put64(c, n->mem_total);
	put64(c, n->mem_free);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		put64(c, n->hp_total[k]);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		put64(c, n->hp_free[k]);
	put64(c, n->id < GM_MAX_NODES ? t->planned[n->id] : 0);
	for (uint32_t k = 0; k < t->host.nr_nodes; k++)
		put(c, n->distance[k], 1);
	put_str(c, n->cpulist, GM_CPULIST_LEN - 1);
}

ssize_t mig_enc_topology(uint8_t *buf, size_t cap,
			 const struct mig_topology *t)
{
	struct cur c = { .w = buf, .len = cap };
	const struct gm_topo *h = t ? &t->host : NULL;

	if (!buf || !t || h->nr_nodes > GM_MAX_NODES ||
	    h->nr_hpsizes > GM_MAX_HPSIZES)
		return -EINVAL;
	put16(&c, MIG_TOPO_VERSION);
	put16(&c, h->nr_nodes);
	put16(&c, h->nr_hpsizes);
	put16(&c, 0);
	for (uint32_t k = 0; k < h->nr_hpsizes; k++)
		put64(&c, h->hpsize[k]);
	put32(&c, (uint32_t)h->ksm_run);
	put32(&c, (uint32_t)h->ksm_merge_across_nodes);
	put32(&c, (uint32_t)h->numa_balancing);
	put32(&c, 0);
	put64(&c, h->ksm_pages_sharing);
	put_str(&c, h->thp_enabled, sizeof(h->thp_enabled) - 1);
	put_str(&c, h->thp_defrag, sizeof(h->thp_defrag) - 1);
	put_str(&c, h->thp_shmem, sizeof(h->thp_shmem) - 1);
	put_str(&c, t->policy, sizeof(t->policy) - 1);
	put_str(&c, t->note, sizeof(t->note) - 1);
	for (uint32_t i = 0; i < h->nr_nodes; i++)
		put_node(&c, t, i);
	return enc_done(&c);
}

static int get_node(struct cur *c, struct mig_topology *t, uint32_t i)
{
	struct gm_numa_node *n = &t->host.node[i];
	uint64_t planned;

	n->id = get32(c);
	n->tier = get32(c);
	n->ncpus = get32(c);
	if (get32(c))
		return bad("topology", "reserved field set");
	n->mem_total = get64(c);
	n->mem_free = get64(c);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		n->hp_total[k] = get64(c);
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		n->hp_free[k] = get64(c);
	planned = get64(c);
	for (uint32_t k = 0; k < t->host.nr_nodes; k++)
		n->distance[k] = get(c, 1);
	if (!get_str(c, n->cpulist, sizeof(n->cpulist)))
		return c->short_ ? 0 : bad("topology", "bad CPU list text");
	if (c->short_)
		return 0;
	if (n->id >= GM_MAX_NODES || (i && n->id <= t->host.node[i - 1].id))
		return bad("topology", "node ids out of range or order");
	if (n->mem_free > n->mem_total)
		return bad("topology", "more memory free than there is");
	for (uint32_t k = 0; k < t->host.nr_hpsizes; k++)
		if (n->hp_free[k] > n->hp_total[k])
			return bad("topology", "more huge pages free than "
				   "there are");
	t->planned[n->id] = planned;
	return 0;
}

static int get_knobs(struct cur *c, struct mig_topology *t)
{
	struct gm_topo *h = &t->host;

	h->ksm_run = (int32_t)get32(c);
	h->ksm_merge_across_nodes = (int32_t)get32(c);
	h->numa_balancing = (int32_t)get32(c);
	if (get32(c))
		return bad("topology", "reserved field set");
	h->ksm_pages_sharing = get64(c);
	if (!get_str(c, h->thp_enabled, sizeof(h->thp_enabled)) ||
	    !get_str(c, h->thp_defrag, sizeof(h->thp_defrag)) ||
	    !get_str(c, h->thp_shmem, sizeof(h->thp_shmem)) ||
	    !get_str(c, t->policy, sizeof(t->policy)) ||
	    !get_str(c, t->note, sizeof(t->note)))
		return c->short_ ? 0 : bad("topology", "bad text field");
	return 0;
}

int mig_dec_topology(const uint8_t *buf, size_t len, struct mig_topology *t)
{
	struct cur c = { .r = buf, .len = len };
	struct gm_topo *h = t ? &t->host : NULL;
	int ret;

	if (!buf || !t)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	if (get16(&c) != MIG_TOPO_VERSION && !c.short_)
		return bad("topology", "unknown version of the host picture");
	h->nr_nodes = get16(&c);
	h->nr_hpsizes = get16(&c);
	if (get16(&c))
		return bad("topology", "reserved field set");
	if (c.short_)
		return dec_done(&c, "topology");
	if (h->nr_nodes > GM_MAX_NODES || h->nr_hpsizes > GM_MAX_HPSIZES)
		return bad("topology", "node or page size count out of range");
	for (uint32_t k = 0; k < h->nr_hpsizes; k++) {
		h->hpsize[k] = get64(&c);
		if (!c.short_ && (h->hpsize[k] < 8192 ||
				  (h->hpsize[k] & (h->hpsize[k] - 1)) ||
				  (k && h->hpsize[k] <= h->hpsize[k - 1])))
			return bad("topology", "bad huge page sizes");
	}
	ret = get_knobs(&c, t);
	for (uint32_t i = 0; !ret && i < h->nr_nodes && !c.short_; i++)
		ret = get_node(&c, t, i);
	return ret ? ret : dec_done(&c, "topology");
}

/* ---- HEAT ---- */

ssize_t mig_enc_heat(uint8_t *buf, size_t cap, const struct mig_heat *h)
{
	struct cur c = { .w = buf, .len = cap };

	if (!buf || !h || !h->nr || h->nr > MIG_MAX_REGIONS || h->samples > 255)
		return -EINVAL;
	put32(&c, h->nr);
	put32(&c, h->samples);
	for (uint32_t i = 0; i < h->nr; i++)
		put32(&c, h->nchunks[i]);
	for (uint32_t i = 0; i < h->nr; i++) {
		if (c.short_ || h->nchunks[i] > c.len - c.off)
			return -ENOSPC;
		memcpy(buf + c.off, h->heat[i], h->nchunks[i]);
		c.off += h->nchunks[i];
	}
	return enc_done(&c);
}

int mig_dec_heat(const uint8_t *buf, size_t len, const struct mig_layout *l,
		 struct mig_heat *h)
{
	struct cur c = { .r = buf, .len = len };

	if (!buf || !l || !h)
		return -EINVAL;
	memset(h, 0, sizeof(*h));
	h->nr = get32(&c);
	h->samples = get32(&c);
	if (c.short_)
		return dec_done(&c, "heat");
	if (h->nr != l->nr)
		return bad("heat", "region count differs from the layout");
	if (h->samples > 255)
		return bad("heat", "more than 255 samples");
	for (uint32_t i = 0; i < h->nr; i++) {
		h->nchunks[i] = get32(&c);
		if (!c.short_ && h->nchunks[i] != mig_chunks(l, i))
			return bad("heat", "chunk count differs from the region");
	}
	for (uint32_t i = 0; i < h->nr && !c.short_; i++) {
		if (h->nchunks[i] > c.len - c.off) {
			c.short_ = true;
			break;
		}
		h->heat[i] = buf + c.off;
		for (uint32_t k = 0; k < h->nchunks[i]; k++)
			if (h->heat[i][k] > h->samples)
				return bad("heat", "a chunk hotter than the "
					   "samples taken");
		c.off += h->nchunks[i];
	}
	return dec_done(&c, "heat");
}
