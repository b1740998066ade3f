/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The self-verifying guest workload, shared by the freestanding payload
 * (tools/guest/main.c, run by a vCPU under KVM or QEMU) and by ferry-vm's
 * no-KVM mode (tools/ferry-vm/nokvm.c, run by native threads over the same
 * guest RAM). It is compiled twice from one source, so it uses no libc and
 * includes only the compiler's freestanding headers.
 *
 * Guest RAM layout (guest physical addresses; a 4 KiB guest page):
 *
 *   WL_WS_GPA                struct wl_hdr (parameters, per-CPU state)
 *   hdr->gens_gpa            uint32_t gens[npages]: each page's generation
 *   hdr->pages_gpa           npages pages of the working set
 *
 * Everything the workload needs to continue lives in guest RAM (a vCPU's
 * registers aside), so a snapshot of RAM plus vCPU state resumes it
 * exactly, and in no-KVM mode RAM alone (plus the guest clock) does.
 *
 * Page content is a function of (seed, index, generation):
 *   zero      all zero bytes;
 *   duplicate a copy of one of WL_TEMPLATES template pages (seed, template);
 *   stamped   struct wl_stamp {magic, index, generation, checksum of the
 *             rest} followed by pseudo-random bytes.
 * The class of a page at a generation is drawn from the seed with the
 * configured zero / duplicate fractions. A writer verifies a page before
 * it rewrites it, so corruption is never silently overwritten.
 *
 * Console lines (machine-parseable, key=value):
 *   GUEST ws_gpa=0x... pages=N cpus=N seed=N ...   once at start
 *   HB n=.. iter=.. rpasses=.. verified=.. dirtied=.. errors=.. maxgap_us=..
 *        t_ms=..   (iter: full verification passes over the whole working
 *                  set since boot; rpasses: the same since the last resume)
 *   FILLED pages=N t_ms=..                          once every CPU filled
 *                                                   its part: dirtying starts
 *   ERR page=N gpa=0x.. kind=.. gen=.. found=..      on a mismatch
 *   DONE heartbeats=N rpasses=K pages=P errors=E     after hbs= heartbeats
 *        and at least one complete pass since the last resume (K >= 1):
 *        every one of the P pages was checked where the VM now runs
 *
 * Resumes: a VMM that can (ferry-vm) gives each resume of the VM a new
 * 32-bit token, read by the payload from port WL_PORT_RESUME and by the
 * no-KVM threads through wl_env.resume_token. Under QEMU (the port reads
 * as all ones) the payload takes a hash of the fw_cfg file
 * opt/ferry/resume instead, which each QEMU is given anew on its command
 * line (-fw_cfg name=opt/ferry/resume,string=RANDOM) and which migration
 * does not carry: a new QEMU is a resume. CPU 0 reads it at every
 * heartbeat; when it changed, every CPU restarts its verification pass, so
 * rpasses counts only passes made entirely after the resume (a pass cut by
 * a migration does not count). Where the token never changes (a QEMU
 * without that file, or no callback), rpasses counts since boot.
 */
#ifndef FERRY_GUEST_WORKLOAD_H
#define FERRY_GUEST_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WL_PAGE_SIZE 4096u
#define WL_WS_GPA 0x400000ull		/* working set starts at 4 MiB */
#define WL_MAX_CPUS 4
#define WL_TEMPLATES 8
#define WL_HDR_MAGIC 0x59524546574c4831ull /* "1HLWFERY" */
#define WL_STAMP_MAGIC 0x504d415453595246ull /* "FRYSTAMP" */

/* Exit codes the guest writes to the exit port (WL_PORT_EXIT). */
#define WL_EXIT_OK 0
#define WL_EXIT_VERIFY 1	/* a page failed verification */
#define WL_EXIT_CONFIG 2	/* bad command line or too little RAM */

#define WL_PORT_CONSOLE 0x3f8	/* COM1 data register */
#define WL_PORT_EXIT 0xf4	/* QEMU isa-debug-exit compatible */
#define WL_PORT_RESUME 0xff0	/* in, 32 bits: the VMM's resume token */

enum wl_pattern {
	WL_PATTERN_RANDOM = 0,
	WL_PATTERN_SEQUENTIAL = 1,
};

struct wl_params {
	uint64_t ws_bytes;	/* working-set size, bytes (multiple of 4K) */
	uint64_t rate_mibs;	/* dirty rate, MiB/s over all CPUs; 0: none */
	uint32_t zero_pct;	/* percent of pages that are zero pages */
	uint32_t dup_pct;	/* percent that are duplicates of templates */
	uint32_t pattern;	/* enum wl_pattern */
	uint32_t hb_ms;		/* heartbeat interval, ms */
	uint64_t seed;
	uint64_t hbs;		/* stop (exit 0) after this many; 0: never */
	uint64_t tsc_khz;	/* clock ticks per ms; 0: calibrate */
	uint32_t cpus;		/* CPUs that run the workload */
	uint32_t hot_pct;	/* writes go to the first hot_pct% of the
				 * working set (a known hot set); 0: all */
};

/* Per-CPU state, in guest RAM. Counters are totals since boot. */
struct wl_cpu {
	uint64_t rng;		/* xorshift state for random access */
	uint64_t phase;		/* 0 filling, 1 running */
	uint64_t fill_next;	/* next partition slot to fill */
	uint64_t wcursor;	/* sequential write cursor (slot) */
	uint64_t vcursor;	/* verify cursor (slot) */
	uint64_t last_tick;	/* clock at the start of the last step */
	uint64_t maxgap;	/* longest gap between steps since last HB, ticks */
	uint64_t credit_tick;	/* clock up to which dirty credit was granted */
	uint64_t credit;	/* bytes that may be dirtied now */
	uint64_t dirtied;	/* pages written after the fill */
	uint64_t verified;	/* pages verified */
	uint64_t passes;	/* full verification passes over the partition */
	uint64_t errors;	/* verification failures */
	uint64_t rpasses;	/* passes made entirely since resume epoch */
	uint64_t epoch;		/* the hdr->epoch those passes belong to */
	uint64_t pad[1];
};

struct wl_hdr {
	uint64_t magic;		/* WL_HDR_MAGIC once initialised */
	struct wl_params p;
	uint64_t npages;	/* pages in the working set */
	uint64_t gens_gpa;	/* gpa of uint32_t gens[npages] */
	uint64_t pages_gpa;	/* gpa of page 0 */
	uint64_t tmpl_csum[WL_TEMPLATES]; /* checksum of each template page */
	uint64_t next_hb;	/* clock of the next heartbeat (CPU 0) */
	uint64_t hb_count;	/* heartbeats printed */
	uint64_t start_tick;	/* clock at init */
	uint32_t lock;		/* console spinlock */
	uint32_t failed;	/* set once a CPU found an error */
	uint32_t ready;		/* set by CPU 0 when the header is valid */
	uint32_t done;		/* set once hbs heartbeats were printed */
	uint32_t filled;	/* set once FILLED was printed (CPU 0) */
	uint32_t epoch;		/* the last resume token CPU 0 read */
	struct wl_cpu cpu[WL_MAX_CPUS];
};

struct wl_stamp {
	uint64_t magic;		/* WL_STAMP_MAGIC */
	uint64_t index;		/* page index in the working set */
	uint64_t gen;		/* generation */
	uint64_t csum;		/* checksum of the bytes after this struct */
};

/* What the workload needs from where it runs. */
struct wl_env {
	uint64_t (*now)(void *arg);	/* clock, p.tsc_khz ticks per ms */
	void (*write)(void *arg, const char *s, size_t len); /* console */
	/* The VMM's resume token (see above); NULL: resumes are not seen. */
	uint32_t (*resume_token)(void *arg);
	void *arg;
	uint8_t *mem;			/* host pointer of guest physical 0 */
};

/* Result of one wl_step(). */
enum wl_status {
	WL_RUNNING = 0,
	WL_FAILED,		/* a page failed verification (reported) */
	WL_DONE,		/* p.hbs heartbeats and a pass since resume */
};

/* Fills @p with defaults (16 MiB, 8 MiB/s, 10% zero, 10% dup, random,
 * seed 1, heartbeat 1000 ms, 1 CPU). */
void wl_params_default(struct wl_params *p);
/*
 * Parses a command line of space-separated key=value words into @p (which
 * holds defaults): ws=SIZE[K|M|G] rate=MIBS zero=PCT dup=PCT
 * pattern=random|sequential seed=N hb_ms=N hbs=N tsc_khz=N cpus=N
 * hot=PCT.
 * Unknown words are ignored (so a boot loader's own words do no harm).
 * Returns 0, or -22 (-EINVAL) with @bad pointing at the offending word.
 */
int wl_params_parse(struct wl_params *p, const char *cmdline,
		    const char **bad);
/* Bytes of guest RAM the workload needs, counted from guest physical 0. */
uint64_t wl_ram_needed(const struct wl_params *p);

/* Initialises the header at WL_WS_GPA (one CPU, before the others run).
 * Returns 0 or -22 for bad parameters. */
int wl_init(const struct wl_env *env, const struct wl_params *p);
/* The header if guest RAM holds an initialised one, else NULL. */
struct wl_hdr *wl_hdr_get(const struct wl_env *env);

/*
 * One short step of CPU @cpu's work: fill, dirty at the rate, verify, and
 * (CPU 0) print a heartbeat when due. State lives in guest RAM; call it in
 * a loop. A step takes well under a millisecond.
 */
enum wl_status wl_step(const struct wl_env *env, unsigned int cpu);

/* Verifies page @index now. Returns 0 or a positive error kind. Used by
 * tests to check a whole working set from outside. */
int wl_verify_page(const struct wl_env *env, uint64_t index);

/* Small helpers the payload shares. */
size_t wl_fmt_u64(char *buf, uint64_t v);
size_t wl_fmt_hex(char *buf, uint64_t v);

#endif /* FERRY_GUEST_WORKLOAD_H */
