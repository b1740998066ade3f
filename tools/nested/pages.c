// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tools/nested/pages PID ADDR LEN [ADDR LEN ...]: where the 4 KiB pages
 * of process PID's ranges [ADDR, ADDR+LEN) are, asked of the kernel with
 * move_pages(PID, ..., nodes NULL), which moves nothing (gm_numa_where on
 * another process's region). Prints one line, "node0=N node1=N ...
 * absent=N", every node of this host named (absent: not in PID's page
 * tables: never touched, a zero page, or swapped out). ADDR and LEN take
 * 0x or decimal; for a ferry-vm, ADDR is the "RAM at 0x..." of its -v
 * start line. tests/migrate.sh's nested cases and tools/bench's placement
 * set run it inside the nested NUMA host (a C program: a Python one took
 * 10-15 s there under TCG beside a running guest). Exit status: 0, 1 the
 * kernel refused (no such process, no permission), 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "nested/pages"
#include "guestmem/guestmem.h"

#define PAGE 4096u
#define BATCH 65536u

static int parse(const char *s, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 0);
	return errno || end == s || *end ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	static int32_t node[BATCH];
	uint64_t count[GM_MAX_NODES] = { 0 }, absent = 0, pid;
	static struct gm_topo t;

	if (argc < 4 || argc % 2 || parse(argv[1], &pid) || !pid) {
		fprintf(stderr, "Usage: %s PID ADDR LEN [ADDR LEN ...]\n",
			argv[0]);
		return 2;
	}
	for (int a = 2; a < argc; a += 2) {
		uint64_t addr, len, first, n;
		struct gm_region r = { .page_size = PAGE, .fd = -1,
				       .pid = (pid_t)pid };

		if (parse(argv[a], &addr) || parse(argv[a + 1], &len)) {
			fprintf(stderr, "nested/pages: not an address and "
				"length: '%s %s'\n", argv[a], argv[a + 1]);
			return 2;
		}
		first = addr / PAGE * PAGE;
		n = (addr + len - first + PAGE - 1) / PAGE;
		r.remote_addr = first;
		r.size = n * PAGE;
		for (uint64_t i = 0; i < n; i += BATCH) {
			uint64_t c = n - i < BATCH ? n - i : BATCH;
			ssize_t ret = gm_numa_where(&r, i, c, node);

			if (ret < 0)
				return 1;	/* gm_numa_where said why */
			for (uint64_t k = 0; k < c; k++) {
				if (node[k] >= 0 && node[k] < GM_MAX_NODES)
					count[node[k]]++;
				else
					absent++;
			}
		}
	}
	if (!gm_topo_read(&t, NULL))
		for (uint32_t i = 0; i < t.nr_nodes; i++)
			printf("node%u=%" PRIu64 " ", t.node[i].id,
			       count[t.node[i].id % GM_MAX_NODES]);
	else
		for (uint32_t i = 0; i < GM_MAX_NODES; i++)
			if (count[i])
				printf("node%u=%" PRIu64 " ", i, count[i]);
	printf("absent=%" PRIu64 "\n", absent);
	return 0;
}
