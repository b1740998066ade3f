// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tests/access-probe [SAMPLES]: DAMON's access hotness (gm_access_*) on
 * this process's own memory. 64 MiB of anonymous memory is written once;
 * then a thread only reads chunks 8-11 (8 MiB) over and over, which dirty
 * tracking cannot see. SAMPLES (5) samples 200 ms apart; each chunk's
 * count of samples it was seen accessed in is printed. Exit 0 when every
 * read chunk was seen in at least 3 of 5 (scaled) and no other chunk in
 * more than 1; 1 otherwise; 77 with the reason where DAMON cannot
 * monitor a process here.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "guestmem/guestmem.h"

#define CHUNK (2u << 20)
#define NCHUNKS 32
#define HOT0 8
#define HOT1 12

static uint8_t *mem;
static atomic_bool stop;

static void *reader(void *arg)
{
	volatile uint64_t sum = 0;

	(void)arg;
	while (!atomic_load(&stop))
		for (size_t o = HOT0 * (size_t)CHUNK; o < HOT1 * (size_t)CHUNK;
		     o += 4096)
			sum += mem[o];
	return NULL;
}

int main(int argc, char **argv)
{
	int samples = argc > 1 ? atoi(argv[1]) : 5, bad = 0, ret;
	struct timespec gap = { 0, 200 * 1000000L };
	struct gm_access_range r;
	uint8_t acc[NCHUNKS], seen[NCHUNKS] = { 0 };
	struct gm_access *a;
	char why[256] = "";
	pthread_t th;
	ssize_t n;

	if (samples < 1 || samples > 100) {
		fprintf(stderr, "access-probe: SAMPLES is 1..100\n");
		return 2;
	}
	mem = mmap(NULL, (size_t)NCHUNKS * CHUNK, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("access-probe: mmap");
		return 1;
	}
	madvise(mem, (size_t)NCHUNKS * CHUNK, MADV_NOHUGEPAGE);
	memset(mem, 1, (size_t)NCHUNKS * CHUNK);
	r = (struct gm_access_range){ (uintptr_t)mem, (uint64_t)NCHUNKS * CHUNK };
	ret = gm_access_open(&a, getpid(), &r, 1, CHUNK, why, sizeof(why));
	if (ret == -ENOTSUP || ret == -EBUSY) {
		printf("SKIP %s\n", why);
		return 77;
	}
	if (ret) {
		printf("FAIL gm_access_open: %s\n", why);
		return 1;
	}
	pthread_create(&th, NULL, reader, NULL);
	for (int s = 0; s < samples; s++) {
		nanosleep(&gap, NULL);
		n = gm_access_sample(a, acc);
		if (n < 0) {
			printf("FAIL sample %d: %s\n", s, strerror((int)-n));
			bad = 1;
			break;
		}
		for (int c = 0; c < NCHUNKS; c++)
			seen[c] += acc[c];
	}
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	printf("ACCESS ops=%s samples=%d read=%d-%d seen=", gm_access_ops(a),
	       samples, HOT0, HOT1 - 1);
	for (int c = 0; c < NCHUNKS; c++)
		printf("%s%u", c ? "," : "", seen[c]);
	printf("\n");
	gm_access_close(a);
	for (int c = 0; c < NCHUNKS; c++) {
		bool hot = c >= HOT0 && c < HOT1;

		if (hot && seen[c] * 5 < 3u * samples) {
			printf("FAIL chunk %d was read all along but seen in %u "
			       "of %d samples\n", c, seen[c], samples);
			bad = 1;
		} else if (!hot && seen[c] > 1) {
			printf("FAIL chunk %d was not touched but seen in %u of "
			       "%d samples\n", c, seen[c], samples);
			bad = 1;
		}
	}
	return bad;
}
