/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * guestmem: guest RAM regions, userfaultfd, dirty tracking, page scanning.
 *
 * Every call returns 0 or -errno (counts: a non-negative ssize_t or -errno)
 * and logs once where an error happens. The caller owns every struct; the
 * library allocates only behind the pointers it documents. Nothing exits.
 *
 * Cross-process use is the normal case: a VMM creates guest RAM and a
 * userfaultfd in its own process and hands both to an agent over a Unix
 * socket (SCM_RIGHTS). The agent then calls the gm_uffd_* functions on that
 * fd with the VMM's addresses, and tracks the VMM's dirty pages through
 * /proc/PID/pagemap.
 */
#ifndef FERRY_GUESTMEM_H
#define FERRY_GUESTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "util/util.h"

/* ---- regions ---------------------------------------------------------- */

enum gm_backing {
	GM_BACKING_SHMEM = 0,	/* memfd, 4K pages, MAP_SHARED (the default) */
	GM_BACKING_HUGETLB_2M,	/* hugetlb memfd, 2M pages, MAP_SHARED */
	GM_BACKING_HUGETLB_1G,	/* hugetlb memfd, 1G pages, MAP_SHARED */
	GM_BACKING_ANON,	/* anonymous private, 4K, THP disabled */
	GM_BACKING_ANON_THP,	/* anonymous private, THP advised */
	GM_BACKING_COUNT,
};

struct gm_region {
	void *host;		/* mapping in this process, NULL if none */
	size_t size;		/* bytes, a multiple of page_size */
	size_t page_size;	/* bytes of the backing's page */
	int fd;			/* backing memfd, -1 for anonymous memory */
	uint64_t fd_offset;	/* offset of host[0] in fd, bytes */
	enum gm_backing backing;
	bool owner;		/* true: created here (fini unmaps, closes) */
	/* Anonymous memory of another process, not mapped here (host NULL,
	 * fd -1): that process's pid and the region's address there. Also
	 * set for a hugetlb file mapped here that the VMM maps too: where a
	 * page is absent from this mapping, gm_numa_where asks the VMM's. */
	pid_t pid;
	uint64_t remote_addr;
	unsigned int flags;	/* GM_REGION_* it was created with */
};

/* "shmem", "hugetlb-2M", "hugetlb-1G", "anon", "anon-thp". */
const char *gm_backing_name(enum gm_backing b);
/* Parses a backing name (also "hugetlb" for 2M, "thp" for anon-thp).
 * Returns 0 or -EINVAL. */
int gm_backing_parse(const char *name, enum gm_backing *out);
/* Page size of a backing in bytes. */
size_t gm_backing_page_size(enum gm_backing b);

/*
 * Creates guest RAM of @size bytes (a non-zero multiple of the backing's
 * page size) on @backing and maps it into this process. hugetlb backings
 * check the free pool first and fail with -ENOMEM and a message naming how
 * many pages are needed and how to reserve them. The memory is not
 * touched. On success the caller owns @r and releases it with
 * gm_region_fini(). @name labels the memfd in /proc/PID/maps.
 */
int gm_region_init(struct gm_region *r, enum gm_backing backing, size_t size,
		   const char *name);
/* hugetlb: no pool check and no reservation (MAP_NORESERVE, as QEMU's
 * memory-backend reserve=off): the pages are taken as they are written,
 * and whoever writes them first (an agent that maps the fd without the
 * flag, which reserves them) checks the pool. */
#define GM_REGION_NORESERVE 1u
/* gm_region_init() with GM_REGION_* @flags. */
int gm_region_init_flags(struct gm_region *r, enum gm_backing backing,
			 size_t size, const char *name, unsigned int flags);

/*
 * Maps guest RAM that another process created and passed as @fd (a memfd
 * or a tmpfs/hugetlbfs file): @size bytes at @fd_offset, MAP_SHARED. @fd is
 * duplicated; the caller keeps its own. Anonymous backings cannot be
 * attached (-EINVAL): reach them with process_vm_readv or UFFDIO_COPY.
 * On hugetlb the mapping reserves the file's huge pages that nobody has
 * reserved yet: -ENOMEM, not logged, when the pool cannot hold them.
 */
int gm_region_attach(struct gm_region *r, enum gm_backing backing, int fd,
		     uint64_t fd_offset, size_t size);

/* Unmaps and closes. Accepts a zeroed, failed or finished region. */
void gm_region_fini(struct gm_region *r);

/*
 * Drops the pages of [off, off + len) so that the next access faults
 * (through userfaultfd where one is registered): fallocate(PUNCH_HOLE) on
 * file backings, MADV_DONTNEED on anonymous ones. Page-aligned only.
 */
int gm_region_discard(struct gm_region *r, uint64_t off, size_t len);

/* Free huge pages of @page_size in the pool (free minus reserved). */
ssize_t gm_hugetlb_free(size_t page_size);
/* The pool's size (nr_hugepages) for @page_size, or -errno. */
ssize_t gm_hugetlb_pool(size_t page_size);
/* The pool's control file for @page_size, into @buf. */
void gm_hugetlb_path(char *buf, size_t len, size_t page_size);
/* Reads (@old, may be NULL) and sets nr_hugepages for @page_size; returns
 * the number actually reserved afterwards, or -errno. Needs root. */
ssize_t gm_hugetlb_set(size_t page_size, unsigned long nr,
		       unsigned long *old);
/* The same for NUMA node @node's pool of @page_size
 * (/sys/devices/system/node/nodeN/hugepages/), @node -1 being the
 * system-wide one: a node's free pages are its free_hugepages (the
 * kernel keeps reservations system-wide only). Any thread. */
ssize_t gm_hugetlb_node_free(int node, size_t page_size);
ssize_t gm_hugetlb_node_pool(int node, size_t page_size);
void gm_hugetlb_node_path(char *buf, size_t len, int node, size_t page_size);
ssize_t gm_hugetlb_node_set(int node, size_t page_size, unsigned long nr,
			    unsigned long *old);

/* ---- userfaultfd ------------------------------------------------------ */

/* Feature bits beyond Debian 12's 6.1 headers (the kernel here is newer). */
#define GM_UFFD_FEATURE_POISON		(1ULL << 14)
#define GM_UFFD_FEATURE_WP_ASYNC	(1ULL << 15)
#define GM_UFFD_FEATURE_WP_UNPOPULATED	(1ULL << 13)
#define GM_UFFD_FEATURE_MOVE		(1ULL << 16)

enum gm_uffd_mode {
	GM_UFFD_MISSING = 1 << 0,
	GM_UFFD_WP = 1 << 1,
	GM_UFFD_MINOR = 1 << 2,
};

struct gm_uffd {
	int fd;			/* the userfaultfd, -1 when closed */
	uint64_t features;	/* features requested and enabled */
	uint64_t ioctls;	/* ioctls UFFDIO_API reported */
	bool owner;		/* true: gm_uffd_close() closes fd */
};

/* Features this kernel offers (from a throwaway uffd); 0 or -errno. */
int gm_uffd_probe(uint64_t *features);

/*
 * Creates a userfaultfd in this process (the userfaultfd syscall, falling
 * back to /dev/userfaultfd), O_CLOEXEC | O_NONBLOCK, without the API
 * handshake: this is what a VMM does before passing the fd to an agent.
 * Returns the fd or -errno.
 */
int gm_uffd_create_raw(void);

/*
 * Performs the UFFDIO_API handshake on @fd requesting @features; fails
 * with -EOPNOTSUPP (naming the missing bits) if the kernel lacks one.
 * @fd may come from another process. @own: close it in gm_uffd_close().
 */
int gm_uffd_init(struct gm_uffd *u, int fd, uint64_t features, bool own);
/* gm_uffd_create_raw() + gm_uffd_init() in one, owning the fd. */
int gm_uffd_open(struct gm_uffd *u, uint64_t features);
void gm_uffd_close(struct gm_uffd *u);

/* Registers [addr, addr + len) in the uffd owner's address space for the
 * OR of @modes (enum gm_uffd_mode). *@ioctls (may be NULL) receives what
 * the range supports. */
int gm_uffd_register(struct gm_uffd *u, uint64_t addr, uint64_t len,
		     unsigned int modes, uint64_t *ioctls);
int gm_uffd_unregister(struct gm_uffd *u, uint64_t addr, uint64_t len);

/*
 * Resolution ioctls. They return 0 when the range was filled, and a
 * recoverable race as:
 *   -EEXIST  a page is already there (another placement won): done;
 *   -EAGAIN  the mapping changed under us (retry, or treat as done);
 *   -ENOENT  the range vanished (the VMM unmapped it).
 * Anything else is a real error and is logged. @flags: GM_UFFD_DONTWAKE
 * leaves faulting threads asleep (wake them with gm_uffd_wake()).
 */
#define GM_UFFD_DONTWAKE 1u
int gm_uffd_copy(struct gm_uffd *u, uint64_t dst, const void *src,
		 uint64_t len, unsigned int flags);
int gm_uffd_zeropage(struct gm_uffd *u, uint64_t dst, uint64_t len,
		     unsigned int flags);
int gm_uffd_continue(struct gm_uffd *u, uint64_t dst, uint64_t len,
		     unsigned int flags);
/* Moves the anonymous pages at @src (ours and the uffd owner's: MOVE
 * works within one address space) to @dst without copying (needs
 * GM_UFFD_FEATURE_MOVE, kernel 6.8+). */
int gm_uffd_move(struct gm_uffd *u, uint64_t dst, uint64_t src, uint64_t len,
		 unsigned int flags);
/* Marks [dst, dst + len) poisoned: an access raises SIGBUS, as for a
 * memory error (needs GM_UFFD_FEATURE_POISON, kernel 6.6+). */
int gm_uffd_poison(struct gm_uffd *u, uint64_t dst, uint64_t len,
		   unsigned int flags);
int gm_uffd_wake(struct gm_uffd *u, uint64_t addr, uint64_t len);
/* Write-protects (@wp true) or un-protects [addr, addr + len). */
int gm_uffd_writeprotect(struct gm_uffd *u, uint64_t addr, uint64_t len,
			 bool wp, unsigned int flags);
/* True for the recoverable races above. */
static inline bool gm_uffd_race(int err)
{
	return err == -17 /* EEXIST */ || err == -11 /* EAGAIN */ ||
	       err == -2 /* ENOENT */;
}

enum gm_uffd_event_kind {
	GM_UFFD_EV_FAULT = 1,	/* a page fault: addr, flags */
	GM_UFFD_EV_REMOVE,	/* MADV_DONTNEED/REMOVE: addr..end */
	GM_UFFD_EV_UNMAP,	/* munmap: addr..end */
	GM_UFFD_EV_REMAP,	/* mremap: addr -> end (new address) */
	GM_UFFD_EV_FORK,	/* fork: fd is the child's uffd */
	GM_UFFD_EV_OTHER,
};

struct gm_uffd_event {
	enum gm_uffd_event_kind kind;
	uint64_t addr;		/* fault address or range start */
	uint64_t end;		/* range end (REMOVE/UNMAP), new addr (REMAP) */
	uint32_t flags;		/* fault: UFFD_PAGEFAULT_FLAG_* bits */
	uint32_t tid;		/* faulting thread if THREAD_ID enabled */
	int fd;			/* FORK: new uffd */
};

/* Reads up to @max events without blocking. Returns how many (0 when none
 * are pending) or -errno. */
ssize_t gm_uffd_read_events(struct gm_uffd *u, struct gm_uffd_event *ev,
			    size_t max);

/* ---- dirty tracking -------------------------------------------------- */

struct gm_dirty;

/* One contiguous range of the tracked process to track. */
struct gm_dirty_range {
	uint64_t addr;		/* start in the tracked process, page-aligned */
	uint64_t len;		/* bytes, page-aligned */
	size_t page_size;	/* tracking granule (the backing's page) */
};

enum gm_dirty_kind {
	GM_DIRTY_UFFD_WP = 0,	/* uffd-wp async + PAGEMAP_SCAN (any process) */
};

struct gm_dirty_params {
	enum gm_dirty_kind kind;
	pid_t pid;		/* process whose memory is tracked; 0: self */
	struct gm_uffd *uffd;	/* that process's uffd, WP_ASYNC enabled */
	const struct gm_dirty_range *ranges;
	unsigned int nr_ranges;
};

/*
 * Starts tracking: registers the ranges for write-protect and arms them,
 * so that from now on a write by any thread (a KVM vCPU included) marks the
 * page. Page index i of the bitmaps below counts pages across the ranges
 * in order. Returns 0 or -errno; on success the caller destroys @*out.
 */
int gm_dirty_create(struct gm_dirty **out, const struct gm_dirty_params *p);
/* Total pages tracked (the bitmap size harvest expects). */
uint64_t gm_dirty_pages(const struct gm_dirty *d);
/*
 * Harvests the pages written since the last harvest (or since create) into
 * @bm (OR-ed in; @bm has gm_dirty_pages() bits) and re-arms them in the
 * same walk. Returns the number of dirty pages found, or -errno.
 */
ssize_t gm_dirty_harvest(struct gm_dirty *d, struct ut_bitmap *bm);
/*
 * Counts the bytes written since the last harvest (whole tracking
 * granules) without re-arming anything: a look at the dirty rate in the
 * middle of a round, which the next harvest still sees in full. Returns
 * the bytes, or -errno.
 */
int64_t gm_dirty_peek(struct gm_dirty *d);
/* Stops tracking (un-protects, unregisters). Accepts NULL. */
void gm_dirty_destroy(struct gm_dirty *d);

/* ---- page scanning --------------------------------------------------- */

/* True if @len bytes at @p are all zero. Uses the widest vector unit the
 * CPU has (AVX-512, AVX2, or scalar), chosen at load time; any @len works,
 * multiples of 64 (every page size) fastest. */
bool gm_is_zero(const void *p, size_t len);
/* Name of the implementation gm_is_zero() uses: "avx512", "avx2", "scalar". */
const char *gm_is_zero_impl(void);

/* 128-bit content hash (XXH3-128) for duplicate detection. */
struct gm_hash {
	uint64_t lo, hi;
};
void gm_hash(const void *p, size_t len, struct gm_hash *out);
static inline bool gm_hash_eq(const struct gm_hash *a, const struct gm_hash *b)
{
	return a->lo == b->lo && a->hi == b->hi;
}

/* ---- NUMA: the host's picture, placing pages, checking them ----------- */

#define GM_MAX_NODES 64		/* node ids 0..63 */
#define GM_MAX_HPSIZES 4	/* huge page sizes tracked */
#define GM_CPULIST_LEN 64
#define GM_TIER_NONE 0xffffffffu

/* One NUMA node as /sys/devices/system/node says. */
struct gm_numa_node {
	uint32_t id;		/* the kernel's node id */
	uint32_t tier;		/* memory tier id (memory_tierN: lower is
				 * faster), GM_TIER_NONE if the kernel has no
				 * memory tiering */
	uint32_t ncpus;		/* 0: a memory-only (CXL-like) node */
	char cpulist[GM_CPULIST_LEN]; /* as the kernel writes it, "" if none */
	uint64_t mem_total, mem_free;	/* bytes */
	uint64_t hp_total[GM_MAX_HPSIZES]; /* huge pages of gm_topo.hpsize[k] */
	uint64_t hp_free[GM_MAX_HPSIZES];
	uint8_t distance[GM_MAX_NODES];	/* to gm_topo.node[k] (by index) */
};

/* The host picture: nodes, huge page pools, THP, KSM, NUMA balancing. */
struct gm_topo {
	uint32_t nr_nodes;
	struct gm_numa_node node[GM_MAX_NODES];	/* ascending ids */
	uint32_t nr_hpsizes;
	uint64_t hpsize[GM_MAX_HPSIZES];	/* bytes, ascending */
	char thp_enabled[16];	/* the selected word: "always", "madvise", */
	char thp_defrag[16];	/* "never", ...; "" if unknown */
	char thp_shmem[16];	/* shmem_enabled */
	int32_t ksm_run;	/* /sys/kernel/mm/ksm/run; -1 unknown */
	int32_t ksm_merge_across_nodes;	/* -1 unknown */
	uint64_t ksm_pages_sharing;
	int32_t numa_balancing;	/* /proc/sys/kernel/numa_balancing; -1 */
};

/*
 * Reads the host picture from sysfs and procfs under @root ("" or NULL:
 * this host; a directory: a copy of those trees, for tests). Returns 0, or
 * -ENOENT (no /sys/devices/system/node: a kernel without NUMA) or another
 * -errno. Any thread; @t is the caller's.
 */
int gm_topo_read(struct gm_topo *t, const char *root);
/* The index of node @id in @t, or -ENOENT. */
int gm_topo_index(const struct gm_topo *t, uint32_t id);
/* Index of huge page size @size in t->hpsize, or -ENOENT. */
int gm_topo_hpindex(const struct gm_topo *t, uint64_t size);
/* Prints @t for a person, several lines, each starting with @indent. */
void gm_topo_print(const struct gm_topo *t, FILE *f, const char *indent);
/* Parses a node list ("0-2,5") into *@mask. Returns the number of nodes,
 * -EINVAL for a bad list or a node past GM_MAX_NODES - 1. */
int gm_nodes_parse(const char *s, uint64_t *mask);
/* Formats @mask as a node list ("0-2,5") into @buf. */
void gm_nodes_format(uint64_t mask, char *buf, size_t len);
/* The nodes whose CPUs process @pid may run on (its Cpus_allowed_list;
 * 0: this process), in *@mask. Returns 0 or -errno. */
int gm_topo_local_nodes(const struct gm_topo *t, pid_t pid, uint64_t *mask);

/* KSM's state and a process's footprint, read together. */
struct gm_ksm_footprint {
	int32_t run;			/* /sys/kernel/mm/ksm/run, -1 unknown */
	int32_t merge_across_nodes;	/* -1 unknown */
	int64_t pages_shared;		/* KSM pages in use, -1 unknown */
	int64_t pages_sharing;		/* pages mapping them (the saving) */
	int64_t pss_kib;		/* Pss of the process, -1 unknown */
};

/* Fills @f: KSM from /sys/kernel/mm/ksm, Pss of @pid from
 * /proc/PID/smaps_rollup. What cannot be read is -1. */
void gm_ksm_footprint(pid_t pid, struct gm_ksm_footprint *f);
/* Writes @run to /sys/kernel/mm/ksm/run (root only); *@old, if given,
 * receives the value before. Returns 0 or -errno. */
int gm_ksm_set_run(int run, int *old);
/*
 * Which of the @npages 4 KiB pages at @addr in process @pid KSM has
 * merged: bit i of @bits (LSB first, (npages + 7) / 8 bytes, cleared
 * here) set for page i. The frame of each present page comes from
 * /proc/PID/pagemap (bits 0-54; the kernel shows frames to
 * CAP_SYS_ADMIN only, 0 to others), its KPF_KSM (bit 21) from
 * /proc/kpageflags. Returns the number of merged pages, -EACCES or
 * -EPERM where kpageflags or the frames cannot be read (not root), or
 * another -errno. Any thread.
 */
ssize_t gm_ksm_merged(pid_t pid, uint64_t addr, uint64_t npages,
		      uint8_t *bits);

/*
 * Access hotness from DAMON (guestmem/access.c): which @chunk-byte chunks
 * of process @pid's address ranges @r are read or written, where dirty
 * tracking sees only the writes. One kdamond of its own, fvaddr (else
 * vaddr) monitoring, only where no kdamond exists (a DAMON in use is
 * never taken over). Returns 0, or -ENOTSUP (no DAMON sysfs, or no
 * process monitoring in it), -EBUSY (DAMON in use), another -errno, each
 * with the reason in @why. Root.
 */
#define GM_ACCESS_MAX_RANGES 16
struct gm_access;
struct gm_access_range {
	uint64_t addr, len;
};
int gm_access_open(struct gm_access **out, pid_t pid,
		   const struct gm_access_range *r, unsigned int n,
		   uint64_t chunk, char *why, size_t len);
/* "fvaddr" or "vaddr"; the chunks of every range, ranges in order. */
const char *gm_access_ops(const struct gm_access *a);
uint64_t gm_access_chunks(const struct gm_access *a);
/* @acc[c] (gm_access_chunks() bytes) = 1 for each chunk accessed in the
 * last aggregation interval (100 ms), else 0. Returns how many, or
 * -errno. */
ssize_t gm_access_sample(struct gm_access *a, uint8_t *acc);
/* Stops and removes the kdamond. */
void gm_access_close(struct gm_access *a);

/*
 * Sets the memory policy of [addr, addr + len) of this process to node
 * @node only (MPOL_BIND). On a shared mapping of a memfd or tmpfs file
 * this is the file's shared policy: every later allocation of those pages
 * (write(2), a fault in any process, UFFDIO_COPY) lands on @node. On a
 * hugetlb mapping it binds this mapping's faults. Pages already there are
 * not moved. Page-aligned @addr; returns 0 or -errno.
 */
int gm_numa_bind(void *addr, size_t len, uint32_t node);
/*
 * Where the pages of @r from page @first on are: node[i] is the node of
 * page first + i, or -1 when it is not in memory (a hole: never written,
 * or a zero page left unallocated). Maps the resident pages of @r into
 * this process (no allocation) to ask move_pages(); a region of another
 * process (pid set) is asked about there, by move_pages(pid), and so are
 * the pages absent here of a mapped region with pid set. Returns the
 * count of pages in memory, or -errno.
 */
ssize_t gm_numa_where(struct gm_region *r, uint64_t first, uint64_t n,
		      int32_t *node);

/* ---- THP on shared memory (thp.c) ---- */

/* This host's shmem_enabled word ("never", "advise", "within_size",
 * "always", "deny", "force"; "" if unknown). */
void gm_thp_shmem_mode(char *out, size_t len);
/* Advises @r's mapping here for huge pages (MADV_HUGEPAGE) or against
 * them (MADV_NOHUGEPAGE). Returns 0 or -errno. */
int gm_region_advise_thp(struct gm_region *r, bool huge);
/* A handle on process @pid for gm_collapse() (a pidfd). Returns it, or
 * -errno (-ESRCH gone, -ENOSYS no pidfd_open). */
int gm_collapse_open(uint32_t pid);
/* Asks the kernel to collapse @len bytes at @addr in the process behind
 * @pidfd into huge pages now (process_madvise MADV_COLLAPSE: synchronous,
 * in the caller's thread). Returns 0 or -errno (-EINVAL not allowed
 * there, -EAGAIN or -ENOMEM no huge page to be had). */
int gm_collapse(int pidfd, uint64_t addr, size_t len);
/* KiB of shared memory process @pid maps with PMDs (ShmemPmdMapped of
 * /proc/PID/smaps_rollup). Returns it, or -errno. */
int64_t gm_shmem_pmd_mapped_kb(uint32_t pid);

#endif /* FERRY_GUESTMEM_H */
