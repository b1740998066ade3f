// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer harness for the wire decoders and the VM link's (configure
 * --enable-fuzz with CC=clang). The first input byte picks the decoder,
 * the rest is the message body (a TOPOLOGY seed fits in 4096 bytes). The layout the decoders check against is fixed: two
 * regions, 4K and 2M pages, as a destination would have after HELLO.
 *
 * Built without libFuzzer (the normal build), the same file is
 * fuzz-wire-seeds: it writes a seed corpus of valid messages, one file
 * each, into the directory given as its argument.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include "vmlink/vmlink.h"
#include "migrate/wire.h"
#include "util/util.h"

enum { D_HELLO, D_WELCOME, D_PAGES, D_ZERO, D_DUP, D_ROUND, D_RESUMED,
       D_ERROR, D_REQ, D_COMPLETE, D_VML_HDR, D_VML_HELLO, D_SUBPAGES,
       D_TOPOLOGY, D_HEAT, D_VML_ADVISE, D_KSM, D_COUNT };

#define LAYOUT { \
	.nr = 2, \
	.r = { { .gpa = 0, .size = 64 << 20, .page_size = 4096 }, \
	       { .gpa = 1ULL << 32, .size = 8 << 20, .page_size = 2 << 20 } }, \
}
static const struct mig_hello offer = {
	.ver_min = 1, .ver_max = 1,
	.features = MIG_FEATURES_V1 | MIG_FEAT_PAGESIZES, .nbulk = 2,
	.total_pages = (64 << 20) / 4096 + 4, .layout = LAYOUT,
};

#ifdef FUZZING
static const struct mig_layout layout = LAYOUT;

/* The VMM's own HELLO an ADVISE is checked against: the layout's two
 * regions. */
static const struct vml_hello advise_vmm = { .version = VML_VERSION,
	.nr_regions = 2, .uffd = -1, .regions = {
		{ .size = 64 << 20, .page_size = 4096, .fd = -1 },
		{ .gpa = 1ULL << 32, .size = 8 << 20, .page_size = 2 << 20,
		  .fd = -1 } } };

/* An accepted ADVISE names a region of the VMM and ranges inside it. */
static void fuzz_vml_advise(const uint8_t *data, size_t size)
{
	static struct vml_range ranges[VML_MAX_ADVISE];
	struct vml_advise a = { .ranges = ranges };

	if (vml_advise_decode(&a, data, size, &advise_vmm))
		return;
	for (uint32_t i = 0; i < a.nr; i++)
		if (a.region >= advise_vmm.nr_regions || !ranges[i].len ||
		    ranges[i].off + ranges[i].len >
		    advise_vmm.regions[a.region].size)
			__builtin_trap();
}

static void drop(enum ut_log_level l, const char *m, void *a)
{
}

/*
 * A VM link HELLO as the agent receives it: the payload with up to
 * VML_MAX_FDS real fds (the first payload byte says how many). Accepted
 * regions must be sane; every fd must end up either in @h or closed.
 */
static void fuzz_vml_hello(const uint8_t *data, size_t size)
{
	static int devnull = -1;
	int fds[VML_MAX_FDS];
	unsigned int nfds;
	struct vml_hello h;

	if (size < 1)
		return;
	if (devnull < 0)
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	nfds = data[0] % (VML_MAX_FDS + 1);
	for (unsigned int i = 0; i < nfds; i++)
		fds[i] = dup(devnull);
	if (!vml_hello_decode(&h, data + 1, size - 1, fds, nfds)) {
		for (uint32_t i = 0; i < h.nr_regions; i++) {
			const struct vml_region *r = &h.regions[i];

			if (!r->size || r->size % r->page_size ||
			    r->gpa + r->size < r->gpa)
				__builtin_trap();
			for (uint32_t j = 0; j < i; j++)
				if (r->gpa < h.regions[j].gpa + h.regions[j].size &&
				    h.regions[j].gpa < r->gpa + r->size)
					__builtin_trap();
			if (r->fd >= 0)
				close(r->fd);
		}
		if (h.uffd >= 0)
			close(h.uffd);
	}
	for (unsigned int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* An accepted host picture is one the source can print and index. */
static void fuzz_topology(const uint8_t *data, size_t size)
{
	static struct mig_topology t;

	if (mig_dec_topology(data, size, &t))
		return;
	if (t.host.nr_nodes > GM_MAX_NODES ||
	    t.host.nr_hpsizes > GM_MAX_HPSIZES ||
	    strnlen(t.policy, sizeof(t.policy)) == sizeof(t.policy))
		__builtin_trap();
	for (uint32_t i = 0; i < t.host.nr_nodes; i++)
		if (t.host.node[i].id >= GM_MAX_NODES ||
		    t.host.node[i].mem_free > t.host.node[i].mem_total)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint64_t idx[MIG_MAX_BATCH];
	static struct mig_dup dup[MIG_MAX_DUPS];
	static struct mig_req req[MIG_MAX_REQS];
	union {
		struct mig_hello h;
		struct mig_welcome w;
		struct mig_zero z;
		struct mig_round r;
		struct mig_resumed rs;
		struct mig_error e;
		struct mig_pages_hdr p;
		struct mig_complete c;
		struct vml_hdr vh;
		struct mig_subpages sp;
		struct mig_heat ht;
	} u;
	uint32_t count;

	ut_log_set_sink(drop, NULL);
	if (size < 1)
		return 0;
	switch (data[0] % D_COUNT) {
	case D_HELLO:
		mig_dec_hello(data + 1, size - 1, &u.h);
		break;
	case D_WELCOME:
		mig_dec_welcome(data + 1, size - 1, &offer, &u.w);
		break;
	case D_PAGES:
		/* As a receiver reads it: the fixed part, then the indexes,
		 * with the message length taken from the input size. */
		if (size < 1 + MIG_PAGES_FIXED)
			break;
		if (mig_dec_pages_hdr(data + 1, MIG_PAGES_FIXED,
				      size - 1 + (uint64_t)0, &layout, &u.p))
			break;
		mig_dec_pages_idx(data + 1 + MIG_PAGES_FIXED,
				  size - 1 - MIG_PAGES_FIXED, &layout, &u.p,
				  idx);
		break;
	case D_ZERO:
		if (!mig_dec_zero(data + 1, size - 1, &layout, &u.z) &&
		    u.z.first + u.z.npages > mig_region_pages(&layout,
							      u.z.region))
			__builtin_trap();
		break;
	case D_KSM:
		if (!mig_dec_ksm(data + 1, size - 1, &layout, &u.z) &&
		    (u.z.npages > MIG_KSM_MAX_PAGES ||
		     u.z.first + u.z.npages > mig_region_pages(&layout,
							       u.z.region)))
			__builtin_trap();
		break;
	case D_DUP:
		mig_dec_dup(data + 1, size - 1, &layout, dup, MIG_MAX_DUPS,
			    &count);
		break;
	case D_ROUND:
		mig_dec_round(data + 1, size - 1, &u.r);
		break;
	case D_RESUMED:
		mig_dec_resumed(data + 1, size - 1, &u.rs);
		break;
	case D_ERROR:
		mig_dec_error(data + 1, size - 1, &u.e);
		break;
	case D_REQ:
		if (!mig_dec_req(data + 1, size - 1, &layout, req, MIG_MAX_REQS,
				 &count) &&
		    req[0].idx >= mig_region_pages(&layout, req[0].region))
			__builtin_trap();
		break;
	case D_COMPLETE:
		mig_dec_complete(data + 1, size - 1, &u.c);
		break;
	case D_VML_HDR:
		if (!vml_hdr_decode(&u.vh, data + 1, size - 1) &&
		    u.vh.len > VML_MAX_PAYLOAD)
			__builtin_trap();
		break;
	case D_VML_HELLO:
		fuzz_vml_hello(data + 1, size - 1);
		break;
	case D_SUBPAGES:
		/* The message length as the input's: header + data exactly. */
		if (!mig_dec_subpages_hdr(data + 1, size - 1, size - 1,
					  &layout, &u.sp) &&
		    (u.sp.page >= mig_region_pages(&layout, u.sp.region) ||
		     u.sp.count > MIG_SUB_PER_PAGE))
			__builtin_trap();
		break;
	case D_TOPOLOGY:
		fuzz_topology(data + 1, size - 1);
		break;
	case D_VML_ADVISE:
		fuzz_vml_advise(data + 1, size - 1);
		break;
	case D_HEAT:
		if (!mig_dec_heat(data + 1, size - 1, &layout, &u.ht))
			for (uint32_t i = 0; i < layout.nr; i++)
				if (u.ht.nchunks[i] != mig_chunks(&layout, i) ||
				    (u.ht.nchunks[i] &&
				     u.ht.heat[i][u.ht.nchunks[i] - 1] >
				     u.ht.samples))
					__builtin_trap();
		break;
	}
	return 0;
}
#else
static int write_seed(const char *dir, int kind, const uint8_t *b, ssize_t n)
{
	char path[4096];
	uint8_t k = kind;
	FILE *f;

	if (n < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/seed-%d", dir, kind);
	f = fopen(path, "w");
	if (!f || fwrite(&k, 1, 1, f) != 1 ||
	    fwrite(b, 1, n, f) != (size_t)n) {
		perror(path);
		return 1;
	}
	return fclose(f) != 0;
}

/* A HELLO of two regions, one with an fd: the byte before it says 2 fds. */
static ssize_t vml_seed_hello(uint8_t *buf, size_t cap, uint8_t *nfds_byte)
{
	struct vml_hello h = { .version = VML_VERSION, .pid = 7, .nr_vcpus = 1,
			       .nr_regions = 2, .uffd = 3 };
	int fds[VML_MAX_FDS];
	unsigned int nfds;
	ssize_t n;

	h.regions[0] = (struct vml_region){ .gpa = 0, .size = 64 << 20,
		.host_addr = 0x7f0000000000, .page_size = 4096, .fd = 4 };
	h.regions[1] = (struct vml_region){ .gpa = 1ull << 32, .size = 8 << 20,
		.host_addr = 0x7f1000000000, .page_size = 2 << 20, .fd = -1 };
	n = vml_hello_encode(&h, buf, cap, fds, &nfds);
	*nfds_byte = (uint8_t)nfds;
	return n < 0 ? n : n + 1;
}

/* The nested host's picture: two nodes, a 2M pool on the second. */
static ssize_t topology_seed(uint8_t *buf, size_t cap)
{
	static struct mig_topology t = { .policy = "tiered", .host = {
		.nr_nodes = 2, .nr_hpsizes = 1, .hpsize = { 2 << 20 },
		.thp_enabled = "madvise", .ksm_run = 0, .numa_balancing = 2,
		.node = { { .id = 0, .tier = 4, .ncpus = 2, .cpulist = "0-1",
			    .mem_total = 1 << 30, .mem_free = 1 << 29,
			    .distance = { 10, 20 } },
			  { .id = 1, .tier = 54, .mem_total = 1 << 29,
			    .mem_free = 1 << 28, .hp_total = { 8 },
			    .hp_free = { 8 }, .distance = { 20, 10 } } } } };

	return mig_enc_topology(buf, cap, &t);
}

/* The fixed layout's 32 + 4 chunks, a few of them hot. */
static ssize_t heat_seed(uint8_t *buf, size_t cap)
{
	static uint8_t h0[32] = { 4, 4, 0, 1 }, h1[4] = { 0, 0, 2, 4 };
	struct mig_heat h = { .nr = 2, .samples = 4, .nchunks = { 32, 4 },
			      .heat = { h0, h1 } };

	return mig_enc_heat(buf, cap, &h);
}

int main(int argc, char **argv)
{
	uint8_t b[4096], bits[2] = { 0x0f, 0x3 };
	uint64_t idx[2] = { 3, 4 };
	struct mig_welcome w = { .version = 1, .features = MIG_FEAT_ZERO_BITMAP |
				 MIG_FEAT_PAGESIZES, .nr = 2,
				 .page_size = { 2 << 20, 4096 } };
	struct mig_zero z = { 0, 8, 10, bits };
	struct mig_dup d = { 0, 0, 7, 3 };
	struct mig_round r = { 2, MIG_ROUND_FINAL, 12 };
	struct mig_resumed rs = { 5, 6, 7 };
	int err = 0;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-wire-seeds DIR\n");
		return 2;
	}
	err |= write_seed(argv[1], D_HELLO, b, mig_enc_hello(b, 4096, &offer));
	err |= write_seed(argv[1], D_WELCOME, b, mig_enc_welcome(b, 4096, &w));
	n = mig_enc_pages_hdr(b, 4096, 0, 2, idx);
	memset(b + n, 0xab, 2 * 4096 > 4096 - n ? 4096 - n : 8192);
	/* A PAGES seed is only the header: the fuzzer mutates the lengths. */
	err |= write_seed(argv[1], D_PAGES, b, n);
	err |= write_seed(argv[1], D_ZERO, b, mig_enc_zero(b, 4096, &z));
	err |= write_seed(argv[1], D_KSM, b, mig_enc_ksm(b, 4096, &z));
	err |= write_seed(argv[1], D_DUP, b, mig_enc_dup(b, 4096, &d, 1));
	err |= write_seed(argv[1], D_ROUND, b, mig_enc_round(b, 4096, &r));
	err |= write_seed(argv[1], D_RESUMED, b, mig_enc_resumed(b, 4096, &rs));
	err |= write_seed(argv[1], D_ERROR, b,
			  mig_enc_error(b, 4096, EIO, "dest disk failed"));
	err |= write_seed(argv[1], D_REQ, b, mig_enc_req(b, 4096,
			  &(struct mig_req){ .region = 0, .idx = 77 }, 1));
	err |= write_seed(argv[1], D_COMPLETE, b, mig_enc_complete(b, 4096,
			  &(struct mig_complete){ 10, 5, 9, 11, 50, { 1, 2 } }));
	vml_hdr_encode(b, &(struct vml_hdr){ VML_MSG_HELLO, 0,
					     VML_HELLO_FIXED, 0 });
	err |= write_seed(argv[1], D_VML_HDR, b, VML_HDR_SIZE);
	err |= write_seed(argv[1], D_VML_HELLO, b, vml_seed_hello(b + 1,
			  sizeof(b) - 1, b));
	err |= write_seed(argv[1], D_SUBPAGES, b, mig_enc_subpages_hdr(b, 4096,
			  &(struct mig_subpages){ .region = 1, .page = 3,
						  .zero = { 0x0f } }));
	err |= write_seed(argv[1], D_TOPOLOGY, b, topology_seed(b, sizeof(b)));
	err |= write_seed(argv[1], D_HEAT, b, heat_seed(b, sizeof(b)));
	err |= write_seed(argv[1], D_VML_ADVISE, b, vml_advise_encode(
			  &(struct vml_advise){ .region = 1,
				.advice = VML_ADVISE_BIND, .node = 1, .nr = 2,
				.ranges = (struct vml_range[]){
					{ 0, 2 << 20 }, { 4 << 20, 4096 } } },
			  b, sizeof(b)));
	return err ? 1 : 0;
}
#endif
