/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The migration wire protocol, in one place: message types, their bodies,
 * one encoder and one decoder each. Messages ride on transport streams,
 * which frame them as (type, length); this file defines what is inside.
 *
 * Every field is explicit-width little-endian. A decoder checks every
 * length, count, index and offset against the message length and against
 * the region table both sides agreed on in HELLO, and rejects anything
 * else with -EPROTO (or -EMSGSIZE / -ERANGE) and a log line saying why; a
 * decoded message can be acted on without further checks.
 *
 * Version 1. HELLO carries a version range and feature bits; WELCOME picks
 * the version and the features both sides have.
 */
#ifndef FERRY_MIGRATE_WIRE_H
#define FERRY_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guestmem/guestmem.h"
#include "util/le.h"

#define MIG_WIRE_MAGIC UT_FERRY_MAGIC /* "FRY1" as bytes on the wire */
#define MIG_WIRE_VERSION 1
#define MIG_MAX_REGIONS 64
#define MIG_MAX_BATCH 1024	/* pages in one PAGES message */
#define MIG_MAX_DUPS 1024	/* references in one DUP message */
#define MIG_MAX_STATE (64u << 20) /* bytes of vCPU/device state */
#define MIG_MAX_ERRMSG 255

enum mig_msg_type {
	MIG_MSG_HELLO = 0x4d01,	/* control, source -> destination */
	MIG_MSG_WELCOME,	/* control, destination -> source */
	MIG_MSG_TOPOLOGY,	/* control, destination -> source, after
				 * WELCOME with MIG_FEAT_PLACEMENT */
	MIG_MSG_HEAT,		/* control, source -> destination, after
				 * TOPOLOGY, before any page; again in
				 * precopy with MIG_FEAT_HEAT_REVISE */
	MIG_MSG_PAGES = 0x4d10,	/* page data, any stream */
	MIG_MSG_ZERO,		/* zero-page bitmap */
	MIG_MSG_DUP,		/* "page X equals page Y, already sent" */
	MIG_MSG_DISCARD,	/* drop these pages (a ZERO body): control, at
				 * the switch to postcopy; bulk, in a
				 * MIG_ROUND_DISCARD round */
	MIG_MSG_SUBPAGES,	/* precopy: the changed 4 KiB of a huge page */
	MIG_MSG_KSM,		/* control, precopy: pages KSM merged at the
				 * source (a ZERO body, MIG_FEAT_KSM_PAGES) */
	MIG_MSG_ROUND = 0x4d20,	/* end of a round's data on a stream */
	MIG_MSG_STATE = 0x4d30,	/* vCPU/device state blob, control */
	MIG_MSG_RESUMED,	/* destination: the guest runs */
	MIG_MSG_DONE,		/* source: nothing more will be sent */
	MIG_MSG_COMPLETE,	/* destination: every page is in place */
	MIG_MSG_POSTCOPY,	/* source: DISCARDs and STATE follow */
	MIG_MSG_NEED,		/* recovery: pages still missing (ZERO body) */
	MIG_MSG_RECOVERED,	/* recovery: the NEED list is complete */
	MIG_MSG_KEEPALIVE,	/* source, control: still working (no body) */
	MIG_MSG_ERROR = 0x4d3f,	/* either side: the reason it gives up */
	MIG_MSG_PAGE_REQ = 0x4d40, /* destination, urgent: fault on these */
};

/* Feature bits negotiated in HELLO / WELCOME. */
#define MIG_FEAT_ZERO_BITMAP	(1ULL << 0)
#define MIG_FEAT_DUP_REF	(1ULL << 1)
#define MIG_FEAT_POSTCOPY	(1ULL << 2)
/* In HELLO only: a source reconnecting to an interrupted postcopy. */
#define MIG_FEAT_RECOVER	(1ULL << 3)
/* SUBPAGES: a huge page the destination holds, updated in 4 KiB units. */
#define MIG_FEAT_SUBPAGES	(1ULL << 4)
/* The destination keeps a huge page the source discards (MINOR mode) and
 * takes SUBPAGES for it in postcopy too. */
#define MIG_FEAT_SUBPAGES_KEEP	(1ULL << 5)
#define MIG_FEATURES_V1		(MIG_FEAT_ZERO_BITMAP | MIG_FEAT_DUP_REF | \
				 MIG_FEAT_POSTCOPY | MIG_FEAT_SUBPAGES | \
				 MIG_FEAT_SUBPAGES_KEEP)
/* The destination sends its host picture and placement plan (TOPOLOGY)
 * right after WELCOME. Offered and accepted on top of V1, so that a peer
 * that does not know it never sees the message; a bit apart from the
 * ones V1 grows by. */
#define MIG_FEAT_PLACEMENT	(1ULL << 16)
/* The destination takes DISCARD on the bulk streams, in a round flagged
 * MIG_ROUND_DISCARD that the source runs while the guest still runs
 * there, before a switch to postcopy: the switch (the guest paused) then
 * drops only what was dirtied since. On top of V1, like PLACEMENT. */
#define MIG_FEAT_DISCARD_EARLY	(1ULL << 17)
/*
 * Either page size at either end. The source offers it in HELLO; a
 * destination whose regions match the source's in gpa and size but not
 * in page size accepts it, and its WELCOME then carries its own page size
 * for each region. A region whose two page sizes differ travels in 4 KiB
 * units (mig_layout_units()): every page index of PAGES, ZERO, DUP,
 * DISCARD, NEED and PAGE_REQ for it counts 4 KiB, the source reads its
 * huge pages 4 KiB at a time and the destination assembles its huge
 * pages from them (and maps one only once all of its units are there).
 * Regions of equal page sizes are untouched (SUBPAGES included). With it
 * a PAGE_REQ entry may ask for a run of pages (mig_req.npages). Beside V1
 * like PLACEMENT, since it changes WELCOME's body.
 */
#define MIG_FEAT_PAGESIZES	(1ULL << 18)
/*
 * Pages larger than MIG_WIRE_PAGE_MAX (1 GiB) at both ends travel in
 * 4 KiB units too, as if the two page sizes differed: a 1 GiB page is
 * no page of the wire, and postcopy onto one assembles it from units
 * (mapped with one UFFDIO_CONTINUE once whole). The source offers it; a
 * destination that can place such pages in postcopy (minor mode)
 * accepts it, with MIG_FEAT_PAGESIZES. Beside V1 like PLACEMENT.
 */
#define MIG_FEAT_HUGE_UNITS	(1ULL << 20)
#define MIG_WIRE_PAGE_MAX (4u << 20)	/* the largest page sent whole */
/*
 * The source tells which pages of its anonymous RAM KSM had merged there
 * (/proc/PID/pagemap and /proc/kpageflags), as KSM messages on the
 * control stream in precopy, each a ZERO body (at most 32768 pages); the
 * destination marks them MADV_MERGEABLE with its other KSM hints. A
 * destination accepts it where it gives KSM hints (anonymous RAM, a VMM
 * that takes ADVISE); beside V1 like PLACEMENT.
 */
#define MIG_FEAT_KSM_PAGES	(1ULL << 19)
#define MIG_KSM_MAX_PAGES 32768	/* pages of one KSM message's bitmap */
/*
 * HEAT again in precopy, on the control stream, whenever the source's
 * heat map (its samples before round 0 with each round's dirty pages
 * folded in, mig_heat_fold()) changed materially (mig_heat_material()); a
 * destination with a tiered plan accepts it and revises the plan for
 * the chunks none of whose pages it has allocated. Beside V1 like
 * PLACEMENT.
 */
#define MIG_FEAT_HEAT_REVISE	(1ULL << 21)
/*
 * The destination answers the ROUND that ends a round the guest runs
 * through (neither MIG_ROUND_FINAL nor MIG_ROUND_POSTCOPY: a plain
 * precopy round or a MIG_ROUND_DISCARD one, mig_round_acked()) on a bulk
 * stream with the same ROUND on that stream, once every page and DISCARD
 * the stream carried in the round is applied. The source waits for it
 * before the round counts as sent: the round's time is then end to end,
 * and a switchover pauses the guest on an empty pipeline instead of
 * waiting, paused, for the megabytes still in the sockets and the
 * receivers.
 * Beside V1 like PLACEMENT.
 */
#define MIG_FEAT_ROUND_ACK	(1ULL << 22)

/* One guest RAM region as both sides see it. */
struct mig_region {
	uint64_t gpa;		/* guest physical address */
	uint64_t size;		/* bytes, multiple of page_size */
	uint32_t page_size;	/* 4K, 2M or 1G */
	uint32_t flags;		/* reserved, 0 */
	/* Not on the wire: in a layout of mig_layout_units(), the
	 * destination's page size where it is not page_size (0: it is),
	 * which the placement chunks follow. */
	uint32_t dst_page_size;
};

/* The region table agreed in HELLO; every later message is checked
 * against it. */
struct mig_layout {
	uint32_t nr;
	struct mig_region r[MIG_MAX_REGIONS];
};

struct mig_hello {
	uint16_t ver_min, ver_max;	/* versions the source speaks */
	uint64_t features;		/* MIG_FEAT_* the source offers */
	uint32_t nbulk;			/* bulk streams in the session */
	uint64_t total_pages;		/* sum over the layout */
	struct mig_layout layout;
};

/* WELCOME: [magic u32][version u16][0 u16][features u64], and with
 * MIG_FEAT_PAGESIZES [nr u32][0 u32] nr x [page_size u32]: the
 * destination's page size of each region of HELLO's layout. */
struct mig_welcome {
	uint16_t version;		/* chosen */
	uint64_t features;		/* accepted subset */
	/* MIG_FEAT_PAGESIZES: the destination's page size per region (nr
	 * of them, nr being HELLO's region count). The decoder fills the
	 * source's own sizes when the feature is not accepted. */
	uint32_t nr;
	uint32_t page_size[MIG_MAX_REGIONS];
};

/* PAGES: [region u32][count u32][count x index u64], then count pages. */
struct mig_pages_hdr {
	uint32_t region;
	uint32_t count;
	uint32_t page_size;	/* of the region, filled by the decoder */
};
#define MIG_PAGES_FIXED 8

/* SUBPAGES (huge pages of 2 MiB or a multiple, e.g. 1 GiB): one 2 MiB
 * window of a page, [region u32][count u32][page u64][first u32][0 u32]
 * [data bitmap, 64 bytes][zero bitmap, 64 bytes], then count x 4 KiB:
 * the sub-pages first + i whose data bit i is set, in order. A zero bit:
 * that 4 KiB is zero now; neither bit: unchanged, which needs a page the
 * destination already holds. */
#define MIG_SUB_SIZE 4096u
#define MIG_SUB_PER_PAGE 512u	/* sub-pages of a 2 MiB window */
#define MIG_SUB_BITMAP (MIG_SUB_PER_PAGE / 8)
#define MIG_SUB_WINDOW (MIG_SUB_SIZE * MIG_SUB_PER_PAGE)
struct mig_subpages {
	uint32_t region;
	uint32_t count;		/* data sub-pages that follow */
	uint64_t page;
	uint32_t first;		/* sub-page of bit 0: a multiple of 512 */
	uint8_t data[MIG_SUB_BITMAP], zero[MIG_SUB_BITMAP];
};
#define MIG_SUBPAGES_FIXED (24 + 2 * MIG_SUB_BITMAP)

/* ZERO: [region u32][0 u32][first u64][npages u64][bitmap, LSB first]. */
struct mig_zero {
	uint32_t region;
	uint64_t first;		/* page index of bit 0 */
	uint64_t npages;	/* bits */
	const uint8_t *bits;	/* points into the decoded buffer */
};
#define MIG_ZERO_FIXED 24

/* DUP: [count u32][0 u32], count x [region u32][src_region u32]
 * [page u64][src_page u64]. */
struct mig_dup {
	uint32_t region, src_region;
	uint64_t page, src_page;
};
#define MIG_DUP_FIXED 8
#define MIG_DUP_ENTRY 24

#define MIG_ROUND_FINAL 1u	/* nothing follows on this stream */
#define MIG_ROUND_POSTCOPY 2u	/* from here on, place pages atomically */
#define MIG_ROUND_DISCARD 4u	/* DISCARDs, no pages (MIG_FEAT_DISCARD_EARLY) */
struct mig_round {
	uint32_t round;
	uint32_t flags;
	uint64_t pages;		/* pages this stream carried in the round */
};
/* Whether a round of @flags is answered under MIG_FEAT_ROUND_ACK. */
static inline bool mig_round_acked(uint32_t flags)
{
	return !(flags & (MIG_ROUND_FINAL | MIG_ROUND_POSTCOPY));
}

/* PAGE_REQ: [count u32][0 u32], count x [region u32][npages u32]
 * [idx u64]: npages from idx; 0 (what V1 sends) is one page, more than
 * one needs MIG_FEAT_PAGESIZES (a huge page fed 4 KiB units asks for the
 * units it lacks as runs). */
struct mig_req {
	uint32_t region;
	uint64_t idx;
	uint32_t npages;	/* 0 or 1: one page */
};
#define MIG_REQ_FIXED 8
#define MIG_REQ_ENTRY 16
#define MIG_MAX_REQS 64
#define MIG_MAX_REQ_RUN (1u << 18)	/* 1 GiB of 4 KiB units */

/* COMPLETE: the destination's fault figures, all u64. */
#define MIG_HIST_BUCKETS 40
struct mig_complete {
	uint64_t faults;	/* faults served */
	uint64_t p50_ns, p99_ns, max_ns; /* fault service time */
	uint64_t blocked_ns;	/* sum of service times */
	uint64_t hist[MIG_HIST_BUCKETS]; /* log2 microsecond buckets */
};

struct mig_resumed {
	uint64_t load_ns;	/* destination: state load + resume, ns */
	uint64_t realtime_ns;	/* destination CLOCK_REALTIME at resume */
	uint64_t cpu_ns;	/* destination agent's CPU time so far */
};

struct mig_error {
	int32_t code;		/* errno value, positive */
	char msg[MIG_MAX_ERRMSG + 1]; /* printable, NUL-terminated */
};

/*
 * TOPOLOGY: the destination's host picture and the plan it made, for the
 * source to report. Versioned on its own (MIG_TOPO_VERSION, the first
 * field), so that the picture can grow without a new protocol version:
 * [version u16][nodes u16][hpsizes u16][0 u16], hpsizes x [size u64],
 * [ksm_run i32][ksm_merge_across_nodes i32][numa_balancing i32][0 u32]
 * [ksm_pages_sharing u64], the strings thp_enabled, thp_defrag,
 * thp_shmem, policy, note ([len u8][printable bytes]), then per node
 * [id u32][tier u32][ncpus u32][0 u32][mem_total u64][mem_free u64]
 * hpsizes x [hp_total u64] hpsizes x [hp_free u64] [planned u64]
 * nodes x [distance u8], the string cpulist. No node at all: the
 * destination could not read its NUMA picture (a kernel without NUMA).
 */
#define MIG_TOPO_VERSION 1
#define MIG_TOPO_MAX 32768	/* bytes of a TOPOLOGY body, at most */
struct mig_topology {
	struct gm_topo host;
	char policy[64];		/* the plan's policy; "none" */
	char note[160];			/* the plan's remark, or "" */
	uint64_t planned[GM_MAX_NODES];	/* bytes, by node id */
};

/*
 * HEAT: how often each chunk of guest RAM was written while the source
 * sampled its dirty log before round 0:
 * [nr u32][samples u32], nr x [nchunks u32], then each region's heats,
 * one u8 per chunk: in how many of @samples harvests the chunk had a
 * written page (so at most samples, and samples at most 255). nr is the
 * layout's region count and nchunks each region's mig_chunks(). A HEAT
 * sent again in precopy (MIG_FEAT_HEAT_REVISE) has the rounds since
 * folded in (mig_heat_fold(): older samples fade, a round counts 4), so
 * heat / samples is a recent write frequency.
 */
#define MIG_CHUNK (2u << 20)	/* 2 MiB, or the destination's page size
				 * when larger */
#define MIG_HEAT_FIXED 8
struct mig_heat {
	uint32_t nr;
	uint32_t samples;		/* 0: the source could not sample */
	uint32_t nchunks[MIG_MAX_REGIONS];
	const uint8_t *heat[MIG_MAX_REGIONS]; /* decoded: into the buffer */
};

/* Pages in region @i of @l. */
static inline uint64_t mig_region_pages(const struct mig_layout *l,
					uint32_t i)
{
	return l->r[i].size / l->r[i].page_size;
}

/*
 * The layout the wire uses for a source layout @src and the WELCOME @w
 * that answered it: each region as in @src, its page size kept where
 * both ends have the same and MIG_SUB_SIZE (4 KiB units) where they
 * differ, or where @w accepted MIG_FEAT_HUGE_UNITS and both have pages
 * larger than MIG_WIRE_PAGE_MAX. @w comes from mig_dec_welcome() for @src (or has nr and the
 * page sizes filled alike). Returns true when some region differs.
 */
bool mig_layout_units(const struct mig_layout *src,
		      const struct mig_welcome *w, struct mig_layout *out);

/* Bytes of a placement chunk of region @i, and their number: 2 MiB, or
 * the destination's page size when larger (HEAT counts its chunks). */
static inline uint64_t mig_chunk_bytes(const struct mig_layout *l, uint32_t i)
{
	uint32_t ps = l->r[i].dst_page_size ? l->r[i].dst_page_size :
					      l->r[i].page_size;

	return ps > MIG_CHUNK ? ps : MIG_CHUNK;
}
static inline uint32_t mig_chunks(const struct mig_layout *l, uint32_t i)
{
	uint64_t c = mig_chunk_bytes(l, i);

	return (uint32_t)((l->r[i].size + c - 1) / c);
}

/* ---- encoders: return the bytes written to @buf, or -ENOSPC / -EINVAL */
ssize_t mig_enc_hello(uint8_t *buf, size_t cap, const struct mig_hello *h);
ssize_t mig_enc_welcome(uint8_t *buf, size_t cap, const struct mig_welcome *w);
/* The PAGES header; the @count pages follow it in the same message. */
ssize_t mig_enc_pages_hdr(uint8_t *buf, size_t cap, uint32_t region,
			  uint32_t count, const uint64_t *idx);
/* The SUBPAGES header; the @s->count sub-pages follow it. */
ssize_t mig_enc_subpages_hdr(uint8_t *buf, size_t cap,
			     const struct mig_subpages *s);
ssize_t mig_enc_zero(uint8_t *buf, size_t cap, const struct mig_zero *z);
/* KSM: a ZERO body, refused above MIG_KSM_MAX_PAGES bits. */
ssize_t mig_enc_ksm(uint8_t *buf, size_t cap, const struct mig_zero *z);
ssize_t mig_enc_dup(uint8_t *buf, size_t cap, const struct mig_dup *d,
		    uint32_t count);
ssize_t mig_enc_round(uint8_t *buf, size_t cap, const struct mig_round *r);
ssize_t mig_enc_req(uint8_t *buf, size_t cap, const struct mig_req *r,
		    uint32_t count);
ssize_t mig_enc_resumed(uint8_t *buf, size_t cap, const struct mig_resumed *r);
ssize_t mig_enc_error(uint8_t *buf, size_t cap, int code, const char *msg);
ssize_t mig_enc_complete(uint8_t *buf, size_t cap,
			 const struct mig_complete *c);
ssize_t mig_enc_topology(uint8_t *buf, size_t cap,
			 const struct mig_topology *t);
ssize_t mig_enc_heat(uint8_t *buf, size_t cap, const struct mig_heat *h);

/* ---- decoders: 0, or -EPROTO with a log line naming the defect ---- */
int mig_dec_hello(const uint8_t *buf, size_t len, struct mig_hello *h);
/* Also checks that the choice fits what the source offered in @h, and
 * with MIG_FEAT_PAGESIZES one valid page size per region of @h, to which
 * the region's gpa and size are aligned. */
int mig_dec_welcome(const uint8_t *buf, size_t len,
		    const struct mig_hello *h, struct mig_welcome *w);
/* The fixed part (MIG_PAGES_FIXED bytes) of a PAGES message whose whole
 * payload is @msg_len bytes: checks region, count and that @msg_len is
 * exactly header + indexes + pages. */
int mig_dec_pages_hdr(const uint8_t *buf, size_t len, uint64_t msg_len,
		      const struct mig_layout *l, struct mig_pages_hdr *out);
/* The count indexes that follow; each must lie inside the region. */
int mig_dec_pages_idx(const uint8_t *buf, size_t len,
		      const struct mig_layout *l,
		      const struct mig_pages_hdr *h, uint64_t *idx);
/* The fixed part of a SUBPAGES message of @msg_len bytes: a page of 2 MiB
 * or a multiple inside its region, a window inside the page, count equal
 * to the data bits, no bit both data and zero, @msg_len exactly header +
 * count sub-pages. */
int mig_dec_subpages_hdr(const uint8_t *buf, size_t len, uint64_t msg_len,
			 const struct mig_layout *l, struct mig_subpages *s);
int mig_dec_zero(const uint8_t *buf, size_t len, const struct mig_layout *l,
		 struct mig_zero *z);
/* As mig_dec_zero(), and at most MIG_KSM_MAX_PAGES bits. */
int mig_dec_ksm(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_zero *z);
/* Decodes up to @cap entries into @d; *@count receives how many. Both
 * pages of an entry must exist and have the same page size. */
int mig_dec_dup(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_dup *d, uint32_t cap, uint32_t *count);
int mig_dec_round(const uint8_t *buf, size_t len, struct mig_round *r);
/* Up to @cap requests into @r; each page of each run must exist. */
int mig_dec_req(const uint8_t *buf, size_t len, const struct mig_layout *l,
		struct mig_req *r, uint32_t cap, uint32_t *count);
int mig_dec_resumed(const uint8_t *buf, size_t len, struct mig_resumed *r);
int mig_dec_error(const uint8_t *buf, size_t len, struct mig_error *e);
int mig_dec_complete(const uint8_t *buf, size_t len, struct mig_complete *c);
/* Node ids ascending and below GM_MAX_NODES, free within total, huge
 * page sizes ascending powers of two, a distance per node, strings
 * printable and within their fields. */
int mig_dec_topology(const uint8_t *buf, size_t len, struct mig_topology *t);
/* One heat per chunk of every region of @l, none above samples. */
int mig_dec_heat(const uint8_t *buf, size_t len, const struct mig_layout *l,
		 struct mig_heat *h);

/* The reason the calling thread's last decoder call (or mig_wire_reject())
 * refused a message, one line such as "pages: page index outside the
 * region"; "" if it never did. Valid until that thread's next refusal. */
const char *mig_wire_reason(void);
/* For the checks only an engine can make (they need its state): logs the
 * formatted reason, records it for mig_wire_reason(), returns -EPROTO. */
int mig_wire_reject(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes a zero bitmap of @npages bits takes on the wire. */
static inline uint64_t mig_zero_bytes(uint64_t npages)
{
	return (npages + 7) / 8;
}

#endif /* FERRY_MIGRATE_WIRE_H */
