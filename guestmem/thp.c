// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Transparent huge pages on shared memory: advising a mapping, collapsing
 * a range of another process's mapping (the VMM's) with process_madvise
 * MADV_COLLAPSE, and how much of a process's shared memory is mapped huge.
 * A range still registered with a userfaultfd in MINOR mode collapses
 * (probed on 6.18: 8 MiB of memfd, every 4 KiB placed by UFFDIO_CONTINUE,
 * then MADV_COLLAPSE: ShmemPmdMapped 8192 kB, contents intact).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOG_PREFIX "guestmem"
#include "guestmem/internal.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_process_madvise
#define __NR_process_madvise 440
#endif

int gm_region_advise_thp(struct gm_region *r, bool huge)
{
	if (!r->host)
		return -EINVAL;
	if (madvise(r->host, r->size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		return -errno;
	return 0;
}

int gm_collapse_open(uint32_t pid)
{
	long fd = syscall(__NR_pidfd_open, (pid_t)pid, 0);

	return fd < 0 ? -errno : (int)fd;
}

int gm_collapse(int pidfd, uint64_t addr, size_t len)
{
	struct iovec iov = { (void *)(uintptr_t)addr, len };
	long n = syscall(__NR_process_madvise, pidfd, &iov, 1UL, MADV_COLLAPSE,
			 0U);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EAGAIN;
}

int64_t gm_shmem_pmd_mapped_kb(uint32_t pid)
{
	char path[64], line[128];
	long long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/smaps_rollup", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "ShmemPmdMapped: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -ENOENT : kb;
}
