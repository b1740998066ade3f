// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Placement in the engines: binding the destination's mapping to the plan
 * (placement.c makes it) before the first page lands, checking at
 * COMPLETE where the pages are, the source's HEAT samples, and the
 * handshake's placement part (TOPOLOGY one way, HEAT the other).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define LOG_PREFIX "placement"
#include "migrate/internal.h"

/* ---- applying and checking it ---- */

/* Chunk @c of region @r is to be bound: every chunk of a first plan
 * (@old NULL), those whose node changed in a revision. */
static bool to_bind(const struct mig_plan *pl, const struct mig_plan *old,
		    uint32_t r, uint32_t c)
{
	return !old || old->r[r].node[c] != pl->r[r].node[c];
}

/* The end of the run of chunks from @i on to bind to the same node. */
static uint32_t run_end(const struct mig_plan *pl, const struct mig_plan *old,
			uint32_t r, uint32_t i)
{
	const struct mig_plan_region *pr = &pl->r[r];
	uint32_t j = i + 1;

	while (j < pr->nchunks && pr->node[j] == pr->node[i] &&
	       to_bind(pl, old, r, j))
		j++;
	return j;
}

static int bind_map(const struct mig_plan *pl, const struct mig_plan *old,
		    struct gm_region *map, struct ut_err *err)
{
	for (uint32_t r = 0; r < pl->nr; r++) {
		const struct mig_plan_region *pr = &pl->r[r];

		/* Anonymous memory of the VMM: no mapping here to bind (the
		 * VMM binds it, advise_plan). */
		if (!map[r].host)
			continue;
		for (uint32_t i = 0, j; i < pr->nchunks; i = j) {
			uint64_t off = (uint64_t)i * pr->chunk, len;
			int ret;

			if (!to_bind(pl, old, r, i)) {
				j = i + 1;
				continue;
			}
			j = run_end(pl, old, r, i);
			len = (uint64_t)j * pr->chunk;
			if (len > map[r].size)
				len = map[r].size;
			len -= off;
			ret = gm_numa_bind((uint8_t *)map[r].host + off, len,
					   pr->node[i]);
			if (ret)
				return ut_err_first(err, ret, "placement: cannot "
						"bind RAM region %u to node "
						"%u: %s", r, pr->node[i],
						strerror(-ret));
		}
	}
	return 0;
}

int mig_plan_apply(const struct mig_plan *pl, struct gm_region *map,
		   struct ut_err *err)
{
	return bind_map(pl, NULL, map, err);
}

/* Guest RAM asked about at once: bounds the node array and mincore's
 * vector (one byte per 4 KiB) whatever the page size. */
#define CHECK_BYTES (256ULL << 20)
#define CHECK_SLICE (CHECK_BYTES / 4096)

int mig_plan_check(const struct mig_plan *pl, struct gm_region *map,
		   struct mig_place_report *rep, struct ut_err *err)
{
	int32_t *node = malloc(CHECK_SLICE * sizeof(*node));
	int ret = 0;

	memset(rep, 0, sizeof(*rep));
	if (!node)
		return ut_err_first(err, -ENOMEM, "placement: out of memory");
	for (uint32_t r = 0; r < pl->nr && !ret; r++) {
		uint64_t pages = map[r].size / map[r].page_size;
		uint64_t slice = CHECK_BYTES / map[r].page_size ?
				 CHECK_BYTES / map[r].page_size : 1;

		for (uint64_t p = 0; p < pages && !ret; p += slice) {
			uint64_t n = pages - p < slice ? pages - p : slice;
			ssize_t got = gm_numa_where(&map[r], p, n, node);

			if (got < 0) {
				ret = ut_err_first(err, (int)got, "placement: "
					       "cannot ask where region %u's "
					       "pages are: %s", r,
					       strerror((int)-got));
				break;
			}
			for (uint64_t i = 0; i < n; i++) {
				uint64_t off = (p + i) * map[r].page_size;

				if (node[i] < 0 || node[i] >= GM_MAX_NODES) {
					rep->pages_absent++;
					continue;
				}
				rep->pages_present++;
				rep->placed[node[i]] += map[r].page_size;
				rep->pages_as_planned +=
					mig_plan_node(pl, r, off) ==
					(unsigned int)node[i];
			}
		}
	}
	free(node);
	return ret;
}

/* ---- in the engines ---- */

/* What a 4 KiB plan leaves free on each node: the kernel, the agents
 * and the VMM need some too. */
#define PLACE_RESERVE (64ULL << 20)

static void stats_from_plan(struct mig_place_stats *st,
			    const struct mig_place *pc)
{
	memset(st, 0, sizeof(*st));
	mig_place_format(&pc->pol, st->policy, sizeof(st->policy));
	snprintf(st->note, sizeof(st->note), "%s", pc->plan.note);
	st->nr_nodes = pc->topo.nr_nodes;
	for (uint32_t i = 0; i < pc->topo.nr_nodes; i++) {
		uint32_t id = pc->topo.node[i].id;

		st->node_id[i] = id;
		st->planned[id] = pc->plan.planned[id];
	}
}

/* What @h says is hot, and how much of it the plan puts on top. */
static void hot_stats(struct mig_place *pc, const struct mig_heat *h)
{
	uint64_t top = mig_plan_top_tier(&pc->topo);
	struct mig_place_stats *st = &pc->st;

	st->heat_samples = h->samples;
	st->hot_chunks = st->hot_on_top = 0;
	for (uint32_t r = 0; r < h->nr; r++)
		for (uint32_t c = 0; c < h->nchunks[r]; c++) {
			if (!h->heat[r][c])
				continue;
			st->hot_chunks++;
			st->hot_on_top += top >> pc->plan.r[r].node[c] & 1;
		}
}

static int make(struct mig_place *pc, const struct mig_vm *vm,
		const struct mig_heat *h, struct ut_err *err)
{
	const uint8_t *heat[MIG_MAX_REGIONS] = { NULL };
	struct mig_plan_input in = { .topo = &pc->topo, .layout = &vm->layout,
		.local_nodes = pc->local, .reserve = pc->reserve,
		.heat = h && h->samples ? heat : NULL };

	int ret;

	for (uint32_t r = 0; h && r < h->nr; r++)
		heat[r] = h->heat[r];
	mig_plan_fini(&pc->plan);
	pc->planned = false;
	ret = mig_plan_make(&pc->plan, &in, &pc->pol, err);
	pc->planned = !ret;
	return ret;
}

/* The plan was refused for want of huge pages on the nodes it names:
 * their pools grown by what each lacks of an even share (@hp records
 * them, given back at the end), the host read again, the plan made
 * again. */
static int reserve_nodes(struct mig_place *pc, const struct mig_vm *vm,
			 struct mig_hp_pools *hp, struct ut_err *err)
{
	uint64_t lack[GM_MAX_NODES], free_of[GM_MAX_NODES] = { 0 };
	size_t psz = pc->plan.short_psz;
	int k = gm_topo_hpindex(&pc->topo, psz), ret = 0;

	if (k < 0)
		return -ENOSPC;
	for (uint32_t i = 0; i < pc->topo.nr_nodes; i++)
		free_of[pc->topo.node[i].id] = pc->topo.node[i].hp_free[k];
	mig_hp_split(pc->plan.short_nodes, psz, pc->plan.short_pages, free_of,
		     lack);
	ut_err_clear(err);
	for (int n = 0; n < GM_MAX_NODES && !ret; n++)
		if (lack[n])
			ret = mig_hp_grow(hp, n, psz, lack[n], err);
	if (!ret && (ret = gm_topo_read(&pc->topo, NULL)))
		ut_err_first(err, ret, "placement: cannot read this host's NUMA "
			     "picture again: %s", strerror(-ret));
	return ret ? ret : make(pc, vm, NULL, err);
}

int mig_place_begin(struct mig_place *pc, const struct mig_place_policy *pol,
		    const struct mig_vm *vm, struct mig_hp_pools *hp,
		    struct mig_topology *t, struct ut_err *err)
{
	int ret;

	memset(pc, 0, sizeof(*pc));
	pc->pol = *pol;
	pc->layout = vm->layout;
	pc->reserve = PLACE_RESERVE;
	memset(t, 0, sizeof(*t));
	ret = gm_topo_read(&pc->topo, NULL);
	if (ret && pol->kind == MIG_PLACE_NONE) {
		memset(&pc->topo, 0, sizeof(pc->topo)); /* described as none */
		ret = 0;
	}
	if (ret)
		return ut_err_first(err, ret, "placement: cannot read this host's "
				"NUMA picture: %s", strerror(-ret));
	if (gm_topo_local_nodes(&pc->topo, vm->link.hello.pid, &pc->local))
		pc->local = 0;
	t->host = pc->topo;
	mig_place_format(pol, t->policy, sizeof(t->policy));
	if (pol->kind == MIG_PLACE_NONE)
		return 0;
	/* Binding private memory is its owner's business: the VMM mbinds
	 * its own range (ADVISE BIND). */
	if (vm->anon && !(vm->link.hello.flags & VML_F_ADVISE))
		return ut_err_first(err, -EOPNOTSUPP, "placement %s: the "
				"incoming VM's RAM is anonymous memory and its "
				"VMM takes no advice (ADVISE) to bind it",
				t->policy);
	ret = make(pc, vm, NULL, err);
	if (ret == -ENOSPC && hp && hp->reserve && pc->plan.short_pages)
		ret = reserve_nodes(pc, vm, hp, err);
	if (ret)
		return ret;
	t->host = pc->topo;
	memcpy(t->planned, pc->plan.planned, sizeof(t->planned));
	snprintf(t->note, sizeof(t->note), "%s", pc->plan.note);
	stats_from_plan(&pc->st, pc);
	return 0;
}

/* Region @r's pages may be allocated in the VMM's own mapping, whose
 * policy is the VMM's: anonymous memory (always), and a hugetlb file
 * (hugetlbfs keeps no shared policy, so binding our mapping binds only
 * our own faults, and UFFDIO_COPY in the VMM's allocates by its VMA's),
 * where the VMM takes advice. */
static bool vmm_binds(const struct mig_vm *vm, uint32_t r)
{
	return !vm->map[r].host ||
	       (vm->map[r].page_size > 4096 &&
		(vm->link.hello.flags & VML_F_ADVISE));
}

/* The plan for the regions the VMM binds itself (vmm_binds): it binds
 * its own ranges (ADVISE BIND), one request per region and node, before
 * any page is placed, so that UFFDIO_COPY allocates on the planned node. */
static int advise_plan(const struct mig_plan *pl, const struct mig_plan *old,
		       struct mig_vm *vm, struct ut_err *err)
{
	int ret = 0;

	for (uint32_t r = 0; !ret && r < pl->nr; r++) {
		const struct mig_plan_region *pr = &pl->r[r];
		struct vml_advise a = { .region = r, .advice = VML_ADVISE_BIND };
		uint64_t done = 0;	/* nodes advised, a bit each */

		if (!vmm_binds(vm, r) || !pr->nchunks)
			continue;
		a.ranges = malloc(pr->nchunks * sizeof(*a.ranges));
		if (!a.ranges)
			return ut_err_first(err, -ENOMEM, "placement: out of "
					"memory");
		for (uint32_t c = 0; !ret && c < pr->nchunks; c++) {
			if ((done >> pr->node[c] & 1) || !to_bind(pl, old, r, c))
				continue;
			a.node = pr->node[c];
			a.nr = 0;
			for (uint32_t i = c, j; i < pr->nchunks; i = j) {
				uint64_t off = (uint64_t)i * pr->chunk, end;

				if (!to_bind(pl, old, r, i)) {
					j = i + 1;
					continue;
				}
				j = run_end(pl, old, r, i);
				if (pr->node[i] != a.node)
					continue;
				end = (uint64_t)j * pr->chunk;
				if (end > vm->map[r].size)
					end = vm->map[r].size;
				a.ranges[a.nr++] = (struct vml_range){ off,
								       end - off };
			}
			done |= 1ULL << a.node;
			ret = vml_client_advise(&vm->link, &a);
			if (ret)
				ut_err_first(err, ret, "placement: the VMM did "
					 "not bind RAM region %u to node %u: "
					 "%s", r, a.node, vml_strerror(ret));
		}
		free(a.ranges);
	}
	return ret;
}

int mig_place_apply(struct mig_place *pc, const struct mig_heat *h,
		    struct mig_vm *vm, struct ut_err *err)
{
	struct mig_place_stats *st = &pc->st;
	int ret;

	if (!pc->planned)
		return 0;
	if (pc->pol.kind == MIG_PLACE_TIERED && h && h->samples) {
		ret = make(pc, vm, h, err);
		if (ret)
			return ret;
		stats_from_plan(st, pc);
		hot_stats(pc, h);
	}
	ret = mig_plan_apply(&pc->plan, vm->map, err);
	return ret ? ret : advise_plan(&pc->plan, NULL, vm, err);
}

/* The chunks of region @r with a page set in @bm (global indexes of
 * @vm's wire layout): out[c] set. */
static void mark_chunks(const struct mig_vm *vm, uint32_t r,
			const struct ut_bitmap *bm, uint8_t *out)
{
	uint64_t per = mig_chunk_bytes(&vm->layout, r) /
		       vm->layout.r[r].page_size;
	uint64_t first = vm->first[r], end = first +
			 mig_region_pages(&vm->layout, r);

	for (uint64_t g = ut_bitmap_find_next(bm, first); g < end;
	     g = ut_bitmap_find_next(bm, g + 1)) {
		uint64_t c = (g - first) / per;

		out[c] = 1;
		g = first + (c + 1) * per - 1;	/* on to the next chunk */
	}
}

int mig_place_revise(struct mig_place *pc, const struct mig_heat *h,
		     struct mig_vm *vm, const struct ut_bitmap *received,
		     struct ut_err *err)
{
	const uint8_t *heat[MIG_MAX_REGIONS] = { NULL };
	uint8_t *pinned[MIG_MAX_REGIONS] = { NULL };
	struct mig_plan_input in = { .topo = &pc->topo, .layout = &pc->layout,
		.local_nodes = pc->local, .reserve = pc->reserve, .heat = heat,
		.pinned = (const uint8_t *const *)pinned, .prev = &pc->plan };
	struct mig_place_stats keep = pc->st;
	struct mig_plan_delta dl;
	struct mig_plan next;
	int ret = 0;

	if (!pc->planned || pc->pol.kind != MIG_PLACE_TIERED || !h->samples)
		return 0;
	for (uint32_t r = 0; r < h->nr && !ret; r++) {
		heat[r] = h->heat[r];
		pinned[r] = calloc(h->nchunks[r] ? h->nchunks[r] : 1, 1);
		if (!pinned[r])
			ret = ut_err_first(err, -ENOMEM, "out of memory");
		else
			mark_chunks(vm, r, received, pinned[r]);
	}
	if (!ret)
		ret = mig_plan_make(&next, &in, &pc->pol, err);
	for (uint32_t r = 0; r < h->nr; r++)
		free(pinned[r]);
	if (ret)
		return ret;
	mig_plan_diff(&pc->plan, &next, &pc->layout, &dl);
	/* Bound before the old plan goes: a page allocated from here on
	 * lands where the new one says. */
	ret = bind_map(&next, &pc->plan, vm->map, err);
	if (!ret)
		ret = advise_plan(&next, &pc->plan, vm, err);
	mig_plan_fini(&pc->plan);
	pc->plan = next;
	stats_from_plan(&pc->st, pc);
	hot_stats(pc, h);
	pc->st.revisions = keep.revisions + 1;
	pc->st.revised_chunks = keep.revised_chunks + dl.chunks;
	pc->st.revised_bytes = keep.revised_bytes + dl.bytes;
	pr_info("the plan revised with the source's heat (%u samples): %u "
		"chunks, %llu MiB, moved between nodes", h->samples, dl.chunks,
		(unsigned long long)(dl.bytes >> 20));
	return ret;
}

int mig_place_postcopy(struct mig_place *pc)
{
	if (!pc->planned || pc->pol.kind != MIG_PLACE_TIERED)
		return 0;
	pc->top = mig_plan_top_tier(&pc->topo);
	if (!pc->top)
		return 0;
	for (uint32_t r = 0; r < pc->plan.nr; r++) {
		pc->touched[r] = calloc(pc->plan.r[r].nchunks ?
					pc->plan.r[r].nchunks : 1, 1);
		if (!pc->touched[r])
			return -ENOMEM;
		pc->down_from[r] = 0;
	}
	pc->post = true;
	return 0;
}

/* Whether a page of chunk @c of region @r is in @received. */
static bool chunk_holds(const struct mig_place *pc, const struct mig_vm *vm,
			uint32_t r, uint32_t c, const struct ut_bitmap *received)
{
	uint64_t per = pc->plan.r[r].chunk / vm->layout.r[r].page_size;
	uint64_t g = vm->first[r] + (uint64_t)c * per;
	uint64_t end = vm->first[r] + mig_region_pages(&vm->layout, r);

	if (g + per < end)
		end = g + per;
	return ut_bitmap_find_next(received, g) < end;
}

static int bind_chunk(const struct mig_place *pc, struct mig_vm *vm,
		      uint32_t r, uint32_t c, unsigned int node)
{
	uint64_t off = (uint64_t)c * pc->plan.r[r].chunk;
	uint64_t len = pc->plan.r[r].chunk;

	if (off + len > vm->map[r].size)
		len = vm->map[r].size - off;
	return gm_numa_bind((uint8_t *)vm->map[r].host + off, len, node);
}

void mig_place_fault(struct mig_place *pc, struct mig_vm *vm, uint32_t r,
		     uint64_t off, const struct ut_bitmap *received)
{
	struct mig_plan_region *pr;
	uint32_t c, v;
	unsigned int low, high;

	if (!pc->post || r >= pc->plan.nr || !vm->map[r].host ||
	    vmm_binds(vm, r) || vm->map[r].page_size != 4096)
		return;
	pr = &pc->plan.r[r];
	c = (uint32_t)(off / pr->chunk);
	if (c >= pr->nchunks || pc->touched[r][c])
		return;
	pc->touched[r][c] = 1;
	low = pr->node[c];
	if ((pc->top >> low & 1) || chunk_holds(pc, vm, r, c, received))
		return;
	/* The next top-tier chunk untouched and empty: once touched or
	 * holding a page a chunk stays so, so the search never goes back. */
	for (v = pc->down_from[r]; v < pr->nchunks; v++) {
		if (pc->touched[r][v] || !(pc->top >> pr->node[v] & 1) ||
		    pr->chunk * (v + 1ULL) > vm->map[r].size)
			continue;	/* (a short last chunk would not trade even) */
		if (!chunk_holds(pc, vm, r, v, received))
			break;
		pc->touched[r][v] = 1;
	}
	pc->down_from[r] = v;
	if (v >= pr->nchunks || pr->chunk * (c + 1ULL) > vm->map[r].size)
		return;	/* the top tier holds what the guest touched */
	high = pr->node[v];
	pc->touched[r][v] = 1;	/* moved down: not a candidate again */
	if (bind_chunk(pc, vm, r, v, low))
		return;	/* the plan unchanged; the check will say */
	if (bind_chunk(pc, vm, r, c, high)) {
		bind_chunk(pc, vm, r, v, high);
		return;
	}
	pr->node[v] = low;
	pr->node[c] = high;
	pc->st.promoted_chunks++;
}

int mig_place_check(struct mig_place *pc, struct mig_vm *vm, struct ut_err *err)
{
	struct mig_place_stats *st = &pc->st;
	struct mig_place_report rep;
	int ret;

	if (!pc->planned)
		return 0;
	ret = mig_plan_check(&pc->plan, vm->map, &rep, err);
	if (ret)
		return ret;
	memcpy(st->placed, rep.placed, sizeof(st->placed));
	st->pages_present = rep.pages_present;
	st->pages_as_planned = rep.pages_as_planned;
	st->pages_absent = rep.pages_absent;
	st->checked = true;
	return 0;
}

void mig_place_fini(struct mig_place *pc)
{
	if (!pc)
		return;
	for (uint32_t r = 0; r < MIG_MAX_REGIONS; r++) {
		free(pc->touched[r]);
		pc->touched[r] = NULL;
	}
	pc->post = false;
	mig_plan_fini(&pc->plan);
	pc->planned = false;
}

void mig_place_stats_from(struct mig_place_stats *st,
			  const struct mig_topology *t)
{
	memset(st, 0, sizeof(*st));
	if (!strcmp(t->policy, "none"))
		return;
	snprintf(st->policy, sizeof(st->policy), "%s", t->policy);
	snprintf(st->note, sizeof(st->note), "%s", t->note);
	st->nr_nodes = t->host.nr_nodes;
	for (uint32_t i = 0; i < t->host.nr_nodes; i++) {
		uint32_t id = t->host.node[i].id;

		st->node_id[i] = id;
		st->planned[id] = t->planned[id];
	}
}

/* Where process @pid maps @size bytes of @fd from @off: its address, or
 * 0 (not one mapping of it). */
static uint64_t mapped_at(pid_t pid, int fd, uint64_t off, uint64_t size)
{
	unsigned long long lo, hi, foff, ino;
	char path[64], line[512];
	uint64_t at = 0;
	struct stat sb;
	FILE *f;

	if (fstat(fd, &sb))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (!at && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx %*s %llx %*s %llu", &lo, &hi, &foff,
			   &ino) == 4 && ino == (unsigned long long)sb.st_ino &&
		    foff <= off && off + size <= foff + (hi - lo))
			at = lo + (off - foff);
	fclose(f);
	return at;
}

struct gm_access *mig_heat_access_open(const struct mig_vm *vm, char *why,
				       size_t len)
{
	struct gm_access_range r[GM_ACCESS_MAX_RANGES];
	uint64_t chunk = mig_chunk_bytes(&vm->layout, 0);
	struct gm_access *a;
	pid_t pid;

	if (vm->nr > GM_ACCESS_MAX_RANGES) {
		snprintf(why, len, "%u RAM regions, more than %d", vm->nr,
			 GM_ACCESS_MAX_RANGES);
		return NULL;
	}
	/* The process that runs the guest: the link's HELLO says (ferry-vm
	 * itself; for QEMU guests, QEMU, which ferry-qemu serves), and its
	 * maps must show the region's file at that offset. */
	pid = vm->anon ? vm->map[0].pid : (pid_t)vm->link.hello.pid;
	if (pid <= 0) {
		snprintf(why, len, "the VM link does not say the VMM's pid");
		return NULL;
	}
	for (uint32_t i = 0; i < vm->nr; i++) {
		const struct gm_region *g = &vm->map[i];

		if (mig_chunk_bytes(&vm->layout, i) != chunk) {
			snprintf(why, len, "the regions' chunks differ in size");
			return NULL;
		}
		r[i].len = g->size;
		r[i].addr = vm->anon ? g->remote_addr :
			    mapped_at(pid, g->fd, g->fd_offset, g->size);
		if (!r[i].addr) {
			snprintf(why, len, "the VMM (pid %d, by the VM link) "
				 "does not map RAM region %u", (int)pid, i);
			return NULL;
		}
	}
	if (gm_access_open(&a, pid, r, vm->nr, chunk, why, len))
		return NULL;
	snprintf(why, len, "DAMON %s on the VMM, pid %d", gm_access_ops(a),
		 (int)pid);
	return a;
}

int mig_heat_sample(struct gm_dirty *d, const struct mig_vm *vm,
		    unsigned int samples, unsigned int interval_ms,
		    uint8_t **heat, struct gm_access *acc, uint64_t *read_only)
{
	uint64_t total = 0;
	uint8_t *written, *seen = NULL;
	struct ut_bitmap bm;
	int ret;

	*read_only = 0;
	for (uint32_t r = 0; r < vm->nr; r++)
		total += mig_chunks(&vm->layout, r);
	/* DAMON's chunks are the same, regions in order */
	if (acc && gm_access_chunks(acc) == total)
		seen = malloc(total);
	written = malloc(total ? total : 1);
	ret = written ? ut_bitmap_init(&bm, gm_dirty_pages(d)) : -ENOMEM;
	if (ret) {
		free(written);
		free(seen);
		return ret;
	}
	for (uint32_t r = 0; r < vm->nr; r++)
		memset(heat[r], 0, mig_chunks(&vm->layout, r));
	for (unsigned int s = 0; s < samples; s++) {
		struct timespec ts = { interval_ms / 1000,
				       (interval_ms % 1000) * 1000000L };
		uint64_t base = 0;
		ssize_t n;

		nanosleep(&ts, NULL);
		n = gm_dirty_harvest(d, &bm);
		if (n < 0) {
			ret = (int)n;
			break;
		}
		if (seen && (n = gm_access_sample(acc, seen)) < 0) {
			pr_warn("DAMON's sample failed (%s): hotness from the "
				"writes alone from here on", strerror((int)-n));
			free(seen);
			seen = NULL;
		}
		memset(written, 0, total);
		for (uint32_t r = 0; r < vm->nr; r++) {
			uint64_t nc = mig_chunks(&vm->layout, r);
			uint8_t *w = written + base;

			mark_chunks(vm, r, &bm, w);
			/* hot in a sample it was written or read in */
			for (uint64_t c = 0; c < nc; c++) {
				bool rd = seen && seen[base + c];

				*read_only += rd && !w[c];
				if ((w[c] || rd) && heat[r][c] < 255)
					heat[r][c]++;
			}
			base += nc;
		}
		ut_bitmap_clear_all(&bm);
	}
	free(written);
	free(seen);
	ut_bitmap_fini(&bm);
	return ret;
}

/* ---- the handshake's placement part ---- */

/* The source's dirty-log samples before round 0 (tiered only): long
 * enough to see a working set's writes, short beside a migration. */
#define HEAT_SAMPLES 5
#define HEAT_INTERVAL_MS 200

static size_t heat_cap(const struct mig_layout *l)
{
	size_t n = MIG_HEAT_FIXED + 4 * l->nr;

	for (uint32_t r = 0; r < l->nr; r++)
		n += mig_chunks(l, r);
	return n;
}

/* HEAT, or the source's reason for sending none. */
static int recv_heat(struct tp_stream *ctl, uint8_t *buf, size_t cap,
		     struct tp_msg *m, struct ut_err *err)
{
	struct mig_error e;
	int ret = tp_recv(ctl, m, buf, cap);

	if (ret)
		return ut_err_first(err, ret, "waiting for the source's HEAT: %s",
				tp_stream_err(ctl)->msg);
	if (m->type == MIG_MSG_ERROR)
		return mig_dec_error(buf, m->len, &e) ?
		       ut_err_first(err, -EPROTO, "the source gave up with a "
				"malformed ERROR (%s)", mig_wire_reason()) :
		       ut_err_first(err, -e.code, "the source gave up: %s", e.msg);
	if (m->type != MIG_MSG_HEAT)
		return ut_err_first(err, -EPROTO, "waiting for the source's HEAT: "
				"message 0x%x", m->type);
	return 0;
}

int mig_place_dst_handshake(struct mig_place *pc, struct tp_stream *ctl,
			    bool negotiated, const struct mig_topology *t,
			    struct mig_vm *vm, struct ut_err *err)
{
	/* room for HEAT, TOPOLOGY, or an ERROR instead of HEAT */
	size_t cap = heat_cap(&vm->layout) + MIG_MAX_ERRMSG + 16;
	uint8_t *buf = malloc(cap > MIG_TOPO_MAX ? cap : MIG_TOPO_MAX);
	struct mig_heat h;
	struct tp_msg m;
	ssize_t n;
	int ret = 0;

	if (!buf)
		return ut_err_first(err, -ENOMEM, "out of memory");
	if (negotiated) {
		n = mig_enc_topology(buf, MIG_TOPO_MAX, t);
		ret = n < 0 ? ut_err_first(err, (int)n, "encoding TOPOLOGY failed") :
			      mig_send_msg(ctl, MIG_MSG_TOPOLOGY, buf, n);
		if (ret && !ut_err_isset(err))
			ut_err_first(err, ret, "sending TOPOLOGY: %s",
				 tp_stream_err(ctl)->msg);
	}
	if (negotiated && !ret)
		ret = recv_heat(ctl, buf, cap, &m, err);
	if (negotiated && !ret && mig_dec_heat(buf, m.len, &vm->layout, &h))
		ret = ut_err_first(err, -EPROTO, "the source sent a malformed "
			       "HEAT (%s)", mig_wire_reason());
	if (!ret)
		ret = mig_place_apply(pc, negotiated ? &h : NULL, vm, err);
	free(buf);
	return ret;
}

/* The first HEAT's heats kept for the rounds (@track->on). */
static int track_begin(struct mig_heat_track *t, const struct mig_heat *h)
{
	uint32_t off = 0;

	t->total = 0;
	for (uint32_t r = 0; r < h->nr; r++)
		t->total += h->nchunks[r];
	t->cur = malloc(t->total ? t->total : 1);
	t->sent = malloc(t->total ? t->total : 1);
	t->written = malloc(t->total ? t->total : 1);
	if (!t->cur || !t->sent || !t->written)
		return -ENOMEM;
	for (uint32_t r = 0; r < h->nr; r++) {
		memcpy(t->cur + off, h->heat[r], h->nchunks[r]);
		off += h->nchunks[r];
	}
	memcpy(t->sent, t->cur, t->total);
	t->samples = t->sent_samples = h->samples;
	return 0;
}

static int send_heat(struct tp_stream *ctl, const struct mig_vm *vm,
		     struct gm_dirty *d, bool sample,
		     struct mig_heat_track *track, struct mig_place_stats *st,
		     struct ut_err *err)
{
	struct mig_heat h = { .nr = vm->nr, .samples = sample ? HEAT_SAMPLES : 0 };
	size_t cap = heat_cap(&vm->layout), off = 0;
	/* the heats, then the message that carries them */
	uint8_t *heat = calloc(2, cap), *bufs[MIG_MAX_REGIONS], *buf;
	ssize_t n;
	int ret = 0;

	if (!heat)
		return ut_err_first(err, -ENOMEM, "out of memory");
	for (uint32_t r = 0; r < vm->nr; r++) {
		h.nchunks[r] = mig_chunks(&vm->layout, r);
		bufs[r] = heat + off;
		h.heat[r] = bufs[r];
		off += h.nchunks[r];
	}
	buf = heat + off;
	if (sample) {
		char why[sizeof(st->hotness) - 32] = "";
		struct gm_access *acc = mig_heat_access_open(vm, why, sizeof(why));
		uint64_t rd = 0;

		ret = mig_heat_sample(d, vm, HEAT_SAMPLES, HEAT_INTERVAL_MS,
				      bufs, acc, &rd);
		gm_access_close(acc);
		if (acc)
			snprintf(st->hotness, sizeof(st->hotness),
				 "writes and reads (%s)", why);
		else
			snprintf(st->hotness, sizeof(st->hotness),
				 "writes only (%s)", why);
		st->read_only_hot = rd;
		pr_info("hotness: %s", st->hotness);
	}
	if (ret) {
		free(heat);
		return ut_err_first(err, ret, "sampling the VM's writes: %s",
				strerror(-ret));
	}
	n = mig_enc_heat(buf, 2 * cap - off, &h);
	ret = n < 0 ? ut_err_first(err, (int)n, "encoding HEAT failed") :
		      mig_send_msg(ctl, MIG_MSG_HEAT, buf, n);
	if (ret && !ut_err_isset(err))
		ut_err_first(err, ret, "sending HEAT: %s", tp_stream_err(ctl)->msg);
	if (!ret && track->on && sample && track_begin(track, &h))
		ret = ut_err_first(err, -ENOMEM, "out of memory");
	if (!sample)
		track->on = false;
	free(heat);
	return ret;
}

/* One round: the chunks with a page in @dirty, folded into the map. */
static void track_sample(struct mig_heat_track *t, const struct mig_vm *vm,
			 const struct ut_bitmap *dirty)
{
	uint32_t base = 0;

	memset(t->written, 0, t->total);
	for (uint32_t r = 0; r < vm->nr; r++) {
		mark_chunks(vm, r, dirty, t->written + base);
		base += mig_chunks(&vm->layout, r);
	}
	mig_heat_fold(t->cur, t->written, t->total, &t->samples);
}

int mig_heat_track_round(struct mig_heat_track *t, const struct mig_vm *vm,
			 const struct ut_bitmap *dirty, struct tp_stream *ctl,
			 struct mig_place_stats *st, struct ut_err *err)
{
	struct mig_heat h = { .nr = vm->nr };
	size_t cap = heat_cap(&vm->layout);
	uint8_t *buf;
	uint32_t off = 0;
	ssize_t n;
	int ret;

	if (!t->on || !t->cur)
		return 0;
	track_sample(t, vm, dirty);
	if (!mig_heat_material(t->sent, t->sent_samples, t->cur, t->samples,
			       t->total))
		return 0;
	for (uint32_t r = 0; r < vm->nr; r++) {
		h.nchunks[r] = mig_chunks(&vm->layout, r);
		h.heat[r] = t->cur + off;
		off += h.nchunks[r];
	}
	h.samples = t->samples;
	buf = malloc(cap);
	if (!buf)
		return ut_err_first(err, -ENOMEM, "out of memory");
	n = mig_enc_heat(buf, cap, &h);
	ret = n < 0 ? ut_err_first(err, (int)n, "encoding HEAT failed") :
		      mig_send_msg(ctl, MIG_MSG_HEAT, buf, n);
	if (ret && !ut_err_isset(err))
		ut_err_first(err, ret, "sending HEAT: %s", tp_stream_err(ctl)->msg);
	free(buf);
	if (ret)
		return ret;
	memcpy(t->sent, t->cur, t->total);
	t->sent_samples = t->samples;
	st->revisions++;
	pr_info("the heat map changed (%u samples): sent again", t->samples);
	return 0;
}

void mig_heat_track_fini(struct mig_heat_track *t)
{
	if (!t)
		return;
	free(t->cur);
	free(t->sent);
	free(t->written);
	t->cur = t->sent = t->written = NULL;
	t->on = false;
}

int mig_place_src_handshake(struct tp_stream *ctl, const struct mig_vm *vm,
			    struct gm_dirty *d, struct mig_stats *st,
			    struct mig_heat_track *track, struct ut_err *err)
{
	uint8_t *buf = malloc(MIG_TOPO_MAX);
	struct mig_topology *t = malloc(sizeof(*t));
	struct tp_msg m;
	int ret;

	if (!buf || !t) {
		ret = ut_err_first(err, -ENOMEM, "out of memory");
		goto out;
	}
	ret = mig_recv_expect(ctl, MIG_MSG_TOPOLOGY, buf, MIG_TOPO_MAX, &m,
			      "waiting for the destination's TOPOLOGY", err);
	if (!ret && mig_dec_topology(buf, m.len, t))
		ret = ut_err_first(err, -EPROTO, "the destination sent a malformed "
			       "TOPOLOGY (%s)", mig_wire_reason());
	if (ret)
		goto out;
	mig_place_stats_from(&st->place, t);
	pr_debug("the destination has %u NUMA nodes; its placement: %s",
		t->host.nr_nodes, t->policy);
	ret = send_heat(ctl, vm, d, !strncmp(t->policy, "tiered", 6), track,
			&st->place, err);
out:
	free(buf);
	free(t);
	return ret;
}
