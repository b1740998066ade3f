// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Placement at the destination: the policy text, and the plan of which
 * node each chunk of guest RAM goes to (a pure function of the host
 * picture, the layout, the policy and the hotness). placement-apply.c
 * binds the agent's mapping to it and checks where the pages went.
 *
 * Every policy comes down to one node per 2 MiB chunk, bound with
 * MPOL_BIND. Interleaving too is done chunk by chunk rather than with
 * MPOL_INTERLEAVE: the kernel's interleave of a shared file starts at an
 * offset derived from the inode number, so only a chunk map says where
 * each page is to be, and only it can be checked page by page. A chunk is
 * also a whole 2 MiB huge page, which interleaves whole.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_PREFIX "placement"
#include "migrate/internal.h"

/* ---- the policy text ---- */

static int parse_nodes(const char *what, const char *s, uint64_t *mask,
		       struct ut_err *err)
{
	if (gm_nodes_parse(s, mask) <= 0)
		return ut_err_first(err, -EINVAL, "--placement %s: '%s' is not a "
				"node list (such as 0 or 0-1,3)", what, s);
	return 0;
}

static int parse_cells(const char *s, struct mig_place_policy *p, struct ut_err *err)
{
	char *end;

	p->ncells = 0;
	while (*s) {
		unsigned long n = strtoul(s, &end, 10);

		if (end == s || n >= GM_MAX_NODES || (*end && *end != ',') ||
		    p->ncells == MIG_MAX_REGIONS)
			return ut_err_first(err, -EINVAL, "--placement cells: wants "
					"one node per guest RAM region, such "
					"as cells:0,1");
		p->cell_node[p->ncells++] = n;
		s = *end ? end + 1 : end;
	}
	if (!p->ncells)
		return ut_err_first(err, -EINVAL,
				"--placement cells: names no node");
	return 0;
}

int mig_place_parse(const char *s, struct mig_place_policy *p,
		    struct ut_err *err)
{
	memset(p, 0, sizeof(*p));
	if (!strcmp(s, "none"))
		return 0;
	if (!strcmp(s, "local")) {
		p->kind = MIG_PLACE_LOCAL;
		return 0;
	}
	if (!strcmp(s, "tiered")) {
		p->kind = MIG_PLACE_TIERED;
		return 0;
	}
	if (!strncmp(s, "bind:", 5)) {
		p->kind = MIG_PLACE_BIND;
		return parse_nodes("bind", s + 5, &p->nodes, err);
	}
	if (!strncmp(s, "interleave:", 11)) {
		p->kind = MIG_PLACE_INTERLEAVE;
		return parse_nodes("interleave", s + 11, &p->nodes, err);
	}
	if (!strncmp(s, "cells:", 6)) {
		p->kind = MIG_PLACE_CELLS;
		return parse_cells(s + 6, p, err);
	}
	return ut_err_first(err, -EINVAL, "--placement: unknown policy '%s' (none, "
			"local, bind:NODES, interleave:NODES, tiered, "
			"cells:N,N...)", s);
}

void mig_place_format(const struct mig_place_policy *p, char *buf, size_t len)
{
	char nodes[96];
	size_t off;

	gm_nodes_format(p->nodes, nodes, sizeof(nodes));
	switch (p->kind) {
	case MIG_PLACE_NONE:
		snprintf(buf, len, "none");
		break;
	case MIG_PLACE_LOCAL:
		snprintf(buf, len, "local");
		break;
	case MIG_PLACE_BIND:
		snprintf(buf, len, "bind:%s", nodes);
		break;
	case MIG_PLACE_INTERLEAVE:
		snprintf(buf, len, "interleave:%s", nodes);
		break;
	case MIG_PLACE_TIERED:
		if (p->fast_share)
			snprintf(buf, len, "tiered, fast share %u%%",
				 p->fast_share);
		else
			snprintf(buf, len, "tiered");
		break;
	case MIG_PLACE_CELLS:
		off = snprintf(buf, len, "cells:");
		for (uint32_t i = 0; i < p->ncells && off < len; i++)
			off += snprintf(buf + off, len - off, "%s%u",
					i ? "," : "", p->cell_node[i]);
		break;
	}
}

/* ---- the plan ---- */

/* Page size classes: 0 for base pages, 1 + k for topo->hpsize[k]. */
#define NCLASS (1 + GM_MAX_HPSIZES)

struct planner {
	const struct mig_plan_input *in;
	const struct mig_place_policy *pol;
	struct mig_plan *pl;
	uint64_t cap[GM_MAX_NODES][NCLASS];	/* bytes left, by node id */
	uint64_t cap0[GM_MAX_NODES][NCLASS];	/* before the plan */
	uint64_t need[NCLASS];			/* guest bytes per class */
	int cls[MIG_MAX_REGIONS];		/* class of each region */
	unsigned int cursor;			/* interleave position */
	struct ut_err *err;
};

struct chunk_ref {
	uint32_t region, idx;
	uint32_t heat;
	bool pinned;		/* keeps its node in in->prev */
};

static uint64_t chunk_bytes(const struct mig_plan *pl,
			    const struct mig_layout *l, uint32_t r,
			    uint32_t idx)
{
	uint64_t off = (uint64_t)idx * pl->r[r].chunk;

	return l->r[r].size - off < pl->r[r].chunk ? l->r[r].size - off :
						    pl->r[r].chunk;
}

static void size_text(uint64_t page_size, char *buf, size_t len)
{
	if (page_size == 4096)
		snprintf(buf, len, "4 KiB");
	else if (page_size >= UT_GiB)
		snprintf(buf, len, "%llu GiB",
			 (unsigned long long)(page_size / UT_GiB));
	else
		snprintf(buf, len, "%llu MiB",
			 (unsigned long long)(page_size / UT_MiB));
}

/* Capacities and each region's page size class. */
static int init_caps(struct planner *p)
{
	const struct gm_topo *t = p->in->topo;
	const struct mig_layout *l = p->in->layout;
	char sz[16];

	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		const struct gm_numa_node *n = &t->node[i];

		p->cap[n->id][0] = n->mem_free > p->in->reserve ?
				   n->mem_free - p->in->reserve : 0;
		for (uint32_t k = 0; k < t->nr_hpsizes; k++)
			p->cap[n->id][1 + k] = n->hp_free[k] * t->hpsize[k];
	}
	memcpy(p->cap0, p->cap, sizeof(p->cap));
	for (uint32_t r = 0; r < l->nr; r++) {
		int k = 0;

		if (l->r[r].page_size != 4096) {
			k = gm_topo_hpindex(t, l->r[r].page_size);
			if (k < 0) {
				size_text(l->r[r].page_size, sz, sizeof(sz));
				return ut_err_first(p->err, -ENOSPC, "placement: "
						"this host has no pool of %s "
						"huge pages for RAM region %u",
						sz, r);
			}
			k++;
		}
		p->cls[r] = k;
		p->need[k] += l->r[r].size;
	}
	return 0;
}

/* For a huge-page class short on @nodes: the command that grows each
 * node's pool by what it lacks of an even share (mig_hp_split()). */
static const char *reserve_hint(struct planner *p, uint32_t r, uint64_t nodes,
				char *hint, size_t cap)
{
	const struct gm_topo *t = p->in->topo;
	uint64_t psz = p->in->layout->r[r].page_size;
	uint64_t lack[GM_MAX_NODES], free_of[GM_MAX_NODES] = { 0 };
	uint64_t pool_of[GM_MAX_NODES] = { 0 };
	char cmd[320];
	int k = p->cls[r];

	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		free_of[t->node[i].id] = p->cap0[t->node[i].id][k] / psz;
		pool_of[t->node[i].id] = t->node[i].hp_total[k - 1];
	}
	mig_hp_split(nodes, psz, p->need[k] / psz, free_of, lack);
	mig_hp_commands(lack, pool_of, psz, cmd, sizeof(cmd));
	snprintf(hint, cap, ": reserve them with `%s`, or run ferry dest with "
		 "--reserve-hugepages", cmd);
	p->pl->short_nodes = nodes;
	p->pl->short_pages = p->need[k] / psz;
	p->pl->short_psz = psz;
	return hint;
}

/* The one line for a plan that does not fit: the need of the class that
 * failed against what @nodes had before the plan. */
static int refuse(struct planner *p, uint32_t r, uint64_t nodes)
{
	const struct mig_layout *l = p->in->layout;
	int k = p->cls[r];
	char pol[64], list[96], sz[16], hint[640];
	uint64_t have = 0;

	for (unsigned int n = 0; n < GM_MAX_NODES; n++)
		if (nodes >> n & 1)
			have += p->cap0[n][k];
	mig_place_format(p->pol, pol, sizeof(pol));
	gm_nodes_format(nodes, list, sizeof(list));
	size_text(l->r[r].page_size, sz, sizeof(sz));
	if (k == 0)
		return ut_err_first(p->err, -ENOSPC, "placement %s cannot fit: the "
				"guest's %llu MiB of %s pages need room on "
				"node %s, which has %llu MiB free (%llu MiB "
				"kept back per node)", pol,
				(unsigned long long)(p->need[k] >> 20), sz,
				list, (unsigned long long)(have >> 20),
				(unsigned long long)(p->in->reserve >> 20));
	return ut_err_first(p->err, -ENOSPC, "placement %s cannot fit: the guest "
			"needs %llu %s huge pages on node %s, whose pools have "
			"%llu free%s", pol,
			(unsigned long long)(p->need[k] / l->r[r].page_size),
			sz, list,
			(unsigned long long)(have / l->r[r].page_size),
			reserve_hint(p, r, nodes, hint, sizeof(hint)));
}

/* The first node of @nodes (ascending) with room for @c; -1 if none. */
static int fill(struct planner *p, const struct chunk_ref *c, uint64_t nodes)
{
	uint64_t b = chunk_bytes(p->pl, p->in->layout, c->region, c->idx);
	int k = p->cls[c->region];

	for (unsigned int n = 0; n < GM_MAX_NODES; n++) {
		if ((nodes >> n & 1) && p->cap[n][k] >= b) {
			p->cap[n][k] -= b;
			return n;
		}
	}
	return -1;
}

/* The next node of @nodes after the previous chunk's with room for @c. */
static int interleave(struct planner *p, const struct chunk_ref *c,
		      uint64_t nodes)
{
	uint64_t b = chunk_bytes(p->pl, p->in->layout, c->region, c->idx);
	int k = p->cls[c->region];

	for (unsigned int i = 0; i < GM_MAX_NODES; i++) {
		unsigned int n = (p->cursor + i) % GM_MAX_NODES;

		if ((nodes >> n & 1) && p->cap[n][k] >= b) {
			p->cap[n][k] -= b;
			p->cursor = n + 1;
			return n;
		}
	}
	return -1;
}

static uint64_t host_nodes(const struct gm_topo *t)
{
	uint64_t m = 0;

	for (uint32_t i = 0; i < t->nr_nodes; i++)
		m |= 1ULL << t->node[i].id;
	return m;
}

uint64_t mig_plan_top_tier(const struct gm_topo *t)
{
	uint32_t best = GM_TIER_NONE;
	uint64_t m = 0;

	for (uint32_t i = 0; i < t->nr_nodes; i++)
		if (t->node[i].mem_total && t->node[i].tier < best)
			best = t->node[i].tier;
	for (uint32_t i = 0; i < t->nr_nodes; i++) {
		const struct gm_numa_node *n = &t->node[i];

		if (best == GM_TIER_NONE ? n->ncpus > 0 : n->tier == best)
			m |= 1ULL << n->id;
	}
	return m ? m : host_nodes(t);
}

static int by_heat(const void *a, const void *b)
{
	const struct chunk_ref *x = a, *y = b;

	if (x->pinned != y->pinned)
		return x->pinned ? -1 : 1;
	if (x->heat != y->heat)
		return x->heat > y->heat ? -1 : 1;
	if (x->region != y->region)
		return x->region < y->region ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A revision of an untiered plan: the pinned chunks first, then the
 * others in their order. */
static int by_pin(const void *a, const void *b)
{
	const struct chunk_ref *x = a, *y = b;

	if (x->pinned != y->pinned)
		return x->pinned ? -1 : 1;
	if (x->region != y->region)
		return x->region < y->region ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The nodes a policy may use; -EINVAL for a node the host lacks. */
static int policy_nodes(struct planner *p, uint64_t *nodes)
{
	const struct gm_topo *t = p->in->topo;
	uint64_t have = host_nodes(t), want = 0;
	char pol[64], list[96];

	switch (p->pol->kind) {
	case MIG_PLACE_LOCAL:
		want = p->in->local_nodes & have;
		if (!want)
			return ut_err_first(p->err, -EINVAL, "placement local: the "
					"incoming VMM may run on no CPU of "
					"this host's nodes");
		break;
	case MIG_PLACE_BIND:
	case MIG_PLACE_INTERLEAVE:
		want = p->pol->nodes;
		break;
	case MIG_PLACE_CELLS:
		for (uint32_t i = 0; i < p->pol->ncells; i++)
			want |= 1ULL << p->pol->cell_node[i];
		break;
	default:
		want = have;
	}
	if (want & ~have) {
		mig_place_format(p->pol, pol, sizeof(pol));
		gm_nodes_format(want & ~have, list, sizeof(list));
		return ut_err_first(p->err, -EINVAL, "placement %s: this host has "
				"no node %s", pol, list);
	}
	*nodes = want;
	return 0;
}

/* TIERED: the chunk goes to the top tier while its share lasts, else
 * below; a lower tier that is full spills onto the top one. */
static int tiered(struct planner *p, const struct chunk_ref *c, uint64_t top,
		  uint64_t *fast_left, uint64_t *spilled)
{
	uint64_t b = chunk_bytes(p->pl, p->in->layout, c->region, c->idx);
	uint64_t low = host_nodes(p->in->topo) & ~top;
	int n = -1;

	if (*fast_left >= b && (n = fill(p, c, top)) >= 0) {
		*fast_left -= b;
		return n;
	}
	if (low && (n = fill(p, c, low)) >= 0)
		return n;
	n = fill(p, c, top);
	if (n >= 0)
		*spilled += b;
	return n;
}

/* A pinned chunk: its node in the previous plan, whose room (and the
 * fast share, on the top tier) it takes first; it fitted there before,
 * so it is never refused, and what it takes is at most all there is. */
static int pin(struct planner *p, const struct chunk_ref *c, uint64_t top,
	       uint64_t *fast_left)
{
	uint64_t b = chunk_bytes(p->pl, p->in->layout, c->region, c->idx);
	unsigned int n = p->in->prev->r[c->region].node[c->idx];
	uint64_t *cap = &p->cap[n][p->cls[c->region]];

	*cap = *cap > b ? *cap - b : 0;
	if (top >> n & 1)
		*fast_left = *fast_left > b ? *fast_left - b : 0;
	return (int)n;
}

static int assign(struct planner *p, struct chunk_ref *c, uint32_t nc,
		  uint64_t nodes)
{
	const struct mig_layout *l = p->in->layout;
	uint64_t fast_left = UINT64_MAX, spilled = 0, total = 0;
	uint64_t top = mig_plan_top_tier(p->in->topo);
	char list[96];
	int n;

	for (uint32_t r = 0; r < l->nr; r++)
		total += l->r[r].size;
	if (p->pol->kind == MIG_PLACE_TIERED && p->pol->fast_share)
		fast_left = total / 100 * p->pol->fast_share;
	for (uint32_t i = 0; i < nc; i++) {
		if (c[i].pinned) {
			n = pin(p, &c[i], top, &fast_left);
			goto planned;
		}
		switch (p->pol->kind) {
		case MIG_PLACE_INTERLEAVE:
			n = interleave(p, &c[i], nodes);
			break;
		case MIG_PLACE_TIERED:
			n = tiered(p, &c[i], top, &fast_left, &spilled);
			break;
		case MIG_PLACE_CELLS:
			n = fill(p, &c[i], 1ULL << p->pol->cell_node[c[i].region]);
			if (n < 0)
				nodes = 1ULL << p->pol->cell_node[c[i].region];
			break;
		default:
			n = fill(p, &c[i], nodes);
		}
		if (n < 0)
			return refuse(p, c[i].region, nodes);
planned:
		p->pl->r[c[i].region].node[c[i].idx] = n;
		p->pl->planned[n] += chunk_bytes(p->pl, l, c[i].region, c[i].idx);
	}
	gm_nodes_format(top, list, sizeof(list));
	if (p->pol->kind == MIG_PLACE_TIERED && top == host_nodes(p->in->topo))
		snprintf(p->pl->note, sizeof(p->pl->note), "one memory tier "
			 "here: tiered keeps everything on node %s", list);
	else if (spilled)
		snprintf(p->pl->note, sizeof(p->pl->note), "the lower tier is "
			 "full: %llu MiB more on node %s",
			 (unsigned long long)(spilled >> 20), list);
	return 0;
}

/* Every chunk of every region, in the order they are handed out. */
static int chunk_list(struct planner *p, struct chunk_ref **out, uint32_t *nc)
{
	const struct mig_layout *l = p->in->layout;
	struct chunk_ref *c;
	uint32_t n = 0;

	for (uint32_t r = 0; r < l->nr; r++)
		n += p->pl->r[r].nchunks;
	c = calloc(n ? n : 1, sizeof(*c));
	if (!c)
		return ut_err_first(p->err, -ENOMEM, "placement: out of memory");
	n = 0;
	for (uint32_t r = 0; r < l->nr; r++)
		for (uint32_t i = 0; i < p->pl->r[r].nchunks; i++)
			c[n++] = (struct chunk_ref){
				r, i, p->in->heat && p->in->heat[r] ?
				p->in->heat[r][i] : 0,
				p->in->pinned && p->in->pinned[r] &&
				p->in->pinned[r][i] };
	if (p->pol->kind == MIG_PLACE_TIERED || p->in->pinned)
		qsort(c, n, sizeof(*c), p->pol->kind == MIG_PLACE_TIERED ?
		      by_heat : by_pin);
	*out = c;
	*nc = n;
	return 0;
}

static int alloc_regions(struct mig_plan *pl, const struct mig_layout *l,
			 struct ut_err *err)
{
	pl->nr = l->nr;
	for (uint32_t r = 0; r < l->nr; r++) {
		pl->r[r].chunk = mig_chunk_bytes(l, r);
		pl->r[r].nchunks = mig_chunks(l, r);
		pl->r[r].node = calloc(pl->r[r].nchunks, 1);
		if (!pl->r[r].node)
			return ut_err_first(err, -ENOMEM, "placement: out of memory");
	}
	return 0;
}

int mig_plan_make(struct mig_plan *pl, const struct mig_plan_input *in,
		  const struct mig_place_policy *pol, struct ut_err *err)
{
	struct planner p = { .in = in, .pol = pol, .pl = pl, .err = err };
	struct chunk_ref *c = NULL;
	uint64_t nodes = 0;
	uint32_t nc = 0;
	int ret;

	memset(pl, 0, sizeof(*pl));
	pl->pol = *pol;
	if (!in->topo || !in->layout || pol->kind == MIG_PLACE_NONE)
		return ut_err_first(err, -EINVAL, "placement: nothing to plan");
	if (pol->kind == MIG_PLACE_CELLS && pol->ncells != in->layout->nr)
		return ut_err_first(err, -EINVAL, "placement cells: names %u "
				"nodes, the guest has %u RAM regions",
				pol->ncells, in->layout->nr);
	if (in->pinned && (!in->prev || in->prev->nr != in->layout->nr))
		return ut_err_first(err, -EINVAL, "placement: a revision needs "
				"the plan it revises");
	for (uint32_t r = 0; in->pinned && r < in->layout->nr; r++)
		if (in->prev->r[r].nchunks != mig_chunks(in->layout, r))
			return ut_err_first(err, -EINVAL, "placement: the plan "
					"revised is of another layout");
	ret = alloc_regions(pl, in->layout, err);
	if (!ret)
		ret = init_caps(&p);
	if (!ret)
		ret = policy_nodes(&p, &nodes);
	if (!ret)
		ret = chunk_list(&p, &c, &nc);
	if (!ret)
		ret = assign(&p, c, nc, nodes);
	free(c);
	if (ret)
		mig_plan_fini(pl);
	return ret;
}

void mig_plan_fini(struct mig_plan *pl)
{
	if (!pl)
		return;
	for (uint32_t r = 0; r < MIG_MAX_REGIONS; r++) {
		free(pl->r[r].node);
		pl->r[r].node = NULL;
	}
	pl->nr = 0;
}

void mig_plan_diff(const struct mig_plan *a, const struct mig_plan *b,
		   const struct mig_layout *l, struct mig_plan_delta *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t r = 0; r < a->nr && r < b->nr; r++)
		for (uint32_t i = 0; i < a->r[r].nchunks &&
		     i < b->r[r].nchunks; i++) {
			if (a->r[r].node[i] == b->r[r].node[i])
				continue;
			out->chunks++;
			out->bytes += chunk_bytes(a, l, r, i);
		}
}

void mig_heat_fold(uint8_t *heat, const uint8_t *written, uint32_t n,
		   uint32_t *samples)
{
	/* x - ceil(x / 4) is monotonic, so heat <= samples before holds
	 * after, and it reaches 0: a chunk no longer written cools off. */
	for (uint32_t i = 0; i < n; i++)
		heat[i] = heat[i] - (heat[i] + 3) / 4 +
			  (written[i] ? MIG_HEAT_ROUND : 0);
	*samples = *samples - (*samples + 3) / 4 + MIG_HEAT_ROUND;
}

bool mig_heat_material(const uint8_t *a, uint32_t sa, const uint8_t *b,
		       uint32_t sb, uint32_t n)
{
	uint32_t need = n / 100 ? n / 100 : 1, moved = 0;

	if (!sa || !sb)
		return (sa != 0) != (sb != 0);
	/* |a/sa - b/sb| >= 1/4, in integers: 4 |a sb - b sa| >= sa sb */
	for (uint32_t i = 0; i < n && moved < need; i++) {
		int64_t d = (int64_t)a[i] * sb - (int64_t)b[i] * sa;

		moved += 4 * (d < 0 ? -d : d) >= (int64_t)sa * sb;
	}
	return moved >= need;
}
