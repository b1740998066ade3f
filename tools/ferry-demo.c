// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-demo: guestmem end to end, across two processes.
 *
 * A child process plays the VMM: it creates guest RAM (zero, duplicate and
 * random pages), creates a userfaultfd, hands both to this process over a
 * Unix socket with SCM_RIGHTS, and keeps writing pages at a steady rate.
 * This process plays the agent: it tracks the child's writes with uffd-wp
 * (WP_ASYNC + PAGEMAP_SCAN), classifies every page (zero, duplicate by
 * XXH3-128, data), runs dirty rounds until the dirty set is small, stops
 * the writer, and rebuilds the memory in a fresh region whose pages are
 * placed on demand by a fault thread (UFFDIO_COPY / UFFDIO_ZEROPAGE), then
 * checks every page against the source. Exit 0 only if all pages match.
 *
 * Usage: ferry-demo [--size MiB] [--rate MiB/s] [--json FILE]
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-demo"
#include "guestmem/guestmem.h"
#include "guestmem/internal.h"

#define PAGE 4096

struct opts {
	size_t size;		/* guest RAM, bytes */
	unsigned int rate;	/* writer's dirty rate, MiB/s */
	const char *json;
};

/* ---- the VMM child ---- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* 30% zero pages, 20% copies of eight templates, the rest random. */
static void fill_guest(uint8_t *mem, size_t size)
{
	for (uint64_t i = 0; i < size / PAGE; i++) {
		uint64_t *w = (uint64_t *)(mem + i * PAGE), kind = mix(i) % 10;

		if (kind < 3)
			continue;
		for (int k = 0; k < PAGE / 8; k++)
			w[k] = kind < 5 ? mix(kind * 8 + (i % 8) + k * 977) :
					  mix(i * 4096 + k);
	}
}

static void vmm_main(int sock, size_t size, unsigned int rate)
{
	struct gm_region r;
	uint64_t hdr[2], gen = 0;
	int fd;
	char c;

	if (gm_region_init(&r, GM_BACKING_SHMEM, size, "demo-guest"))
		_exit(2);
	fill_guest(r.host, size);
	fd = gm_uffd_create_raw();
	if (fd < 0)
		_exit(3);
	hdr[0] = (uintptr_t)r.host;
	hdr[1] = r.size;
	{
		int fds[2] = { fd, r.fd };
		char cbuf[CMSG_SPACE(sizeof(fds))] = { 0 };
		struct iovec iov = { hdr, sizeof(hdr) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(cm), fds, sizeof(fds));
		if (sendmsg(sock, &m, 0) != sizeof(hdr))
			_exit(4);
	}
	close(fd);
	/* Write @rate MiB/s in 1 ms steps until the agent says stop. */
	for (;;) {
		struct pollfd p = { sock, POLLIN, 0 };
		uint64_t pages = (uint64_t)rate * 256 / 1000 + 1;

		for (uint64_t k = 0; k < pages; k++) {
			uint64_t i = mix(gen++) % (size / PAGE);

			((uint64_t *)((uint8_t *)r.host + i * PAGE))[1] = gen;
		}
		if (poll(&p, 1, 1) > 0)
			break;
	}
	if (read(sock, &c, 1) != 1) /* the agent's stop, or its death */
		_exit(5);
	c = 1; /* quiesced: tell the agent */
	if (write(sock, &c, 1) != 1)
		_exit(5);
	if (read(sock, &c, 1) < 0)
		_exit(6);
	_exit(0);
}

/* ---- the agent ---- */

struct stats {
	uint64_t pages, zero, dup, data, rounds, final_dirty, faults,
		mismatches;
	double round0_s, rounds_s, place_s;
};

static int recv_vmm(int sock, uint64_t *hdr, int *fds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 2)];
	struct iovec iov = { hdr, 2 * sizeof(uint64_t) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 2 * sizeof(uint64_t))
		return -EPROTO;
	cm = CMSG_FIRSTHDR(&m);
	if (!cm || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int) * 2))
		return -EPROTO;
	memcpy(fds, CMSG_DATA(cm), sizeof(int) * 2);
	return 0;
}

/* Round 0: classify every page as a migration would send it: zero pages
 * as a bitmap, pages identical to one already sent as a reference. */
static int classify(const uint8_t *mem, uint64_t npages, struct stats *st)
{
	uint64_t cap = 1, mask;
	struct gm_hash *set;

	while (cap < 2 * npages)
		cap <<= 1;
	mask = cap - 1;
	set = calloc(cap, sizeof(*set)); /* open addressing; {0,0} is empty */
	if (!set)
		return -ENOMEM;
	for (uint64_t i = 0; i < npages; i++) {
		const uint8_t *p = mem + i * PAGE;
		struct gm_hash h;
		uint64_t slot;

		if (gm_is_zero(p, PAGE)) {
			st->zero++;
			continue;
		}
		gm_hash(p, PAGE, &h);
		for (slot = h.lo & mask; set[slot].lo || set[slot].hi;
		     slot = (slot + 1) & mask)
			if (gm_hash_eq(&set[slot], &h))
				break;
		if (set[slot].lo || set[slot].hi) {
			st->dup++;
		} else {
			set[slot] = h;
			st->data++;
		}
	}
	free(set);
	return 0;
}

/* Dirty rounds until the dirty set is below 1% of RAM, stops shrinking
 * for two rounds, or ten rounds have passed. */
static int dirty_rounds(struct gm_dirty *d, struct stats *st, bool tty)
{
	struct ut_bitmap bm;
	uint64_t t0 = ut_now_ns(), prev = UINT64_MAX;
	int ret = ut_bitmap_init(&bm, gm_dirty_pages(d)), flat = 0;
	const char *why = "10 rounds";

	while (!ret && st->rounds < 10) {
		uint64_t t = ut_now_ns();
		ssize_t n;

		usleep(100000);
		ut_bitmap_clear_all(&bm);
		n = gm_dirty_harvest(d, &bm);
		if (n < 0) {
			ret = n;
			break;
		}
		st->rounds++;
		printf("%sround %llu: %zd pages dirty (%.1f MiB/s)%s",
		       tty ? "\r" : "", (unsigned long long)st->rounds, n,
		       n * (double)PAGE / UT_MiB / ((ut_now_ns() - t) / 1e9),
		       tty ? "   " : "\n");
		fflush(stdout);
		if ((uint64_t)n * 100 < st->pages) {
			why = "dirty set below 1% of RAM";
			break;
		}
		flat = (uint64_t)n * 10 >= prev * 9 ? flat + 1 : 0;
		prev = n;
		if (flat == 2) {
			why = "dirty set no longer shrinking";
			break;
		}
	}
	printf("%sconverged after %llu rounds: %s\n", tty ? "\n" : "",
	       (unsigned long long)st->rounds, why);
	fflush(stdout);
	st->rounds_s = (ut_now_ns() - t0) / 1e9;
	ut_bitmap_fini(&bm);
	return ret;
}

struct placer {
	struct gm_uffd *uffd;
	const uint8_t *src;	/* the VMM's RAM, through its memfd */
	uint64_t dst;		/* destination region base */
	int stop_fd;
	_Atomic uint64_t faults, errors;
};

static void *placer_main(void *arg)
{
	struct placer *pl = arg;
	struct pollfd p[2] = { { pl->uffd->fd, POLLIN, 0 },
			       { pl->stop_fd, POLLIN, 0 } };
	struct gm_uffd_event ev[16];

	while (poll(p, 2, -1) >= 0 && !p[1].revents) {
		ssize_t n = gm_uffd_read_events(pl->uffd, ev, 16);

		for (ssize_t i = 0; i < n; i++) {
			uint64_t page = ev[i].addr & ~(uint64_t)(PAGE - 1);
			const uint8_t *src = pl->src + (page - pl->dst);
			int ret;

			if (ev[i].kind != GM_UFFD_EV_FAULT)
				continue;
			pl->faults++;
			ret = gm_is_zero(src, PAGE) ?
				      gm_uffd_zeropage(pl->uffd, page, PAGE, 0) :
				      gm_uffd_copy(pl->uffd, page, src, PAGE, 0);
			if (ret && !gm_uffd_race(ret))
				pl->errors++;
		}
	}
	return NULL;
}

/* Rebuilds the source in a fresh region, page by page on demand. */
static int place_and_verify(const uint8_t *src, size_t size, struct stats *st)
{
	struct gm_region dst;
	struct gm_uffd u;
	struct placer pl = { .src = src, .uffd = &u };
	uint64_t t0 = ut_now_ns(), one = 1;
	pthread_t t;
	int ret;

	ret = gm_region_init(&dst, GM_BACKING_SHMEM, size, "demo-dest");
	if (ret)
		return ret;
	ret = gm_uffd_open(&u, UFFD_FEATURE_MISSING_SHMEM);
	if (!ret)
		ret = gm_uffd_register(&u, (uintptr_t)dst.host, size,
				       GM_UFFD_MISSING, NULL);
	pl.dst = (uintptr_t)dst.host;
	pl.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ret || pl.stop_fd < 0 ||
	    pthread_create(&t, NULL, placer_main, &pl)) {
		ret = ret ? ret : -EIO;
		goto out;
	}
	for (uint64_t i = 0; i < size / PAGE; i++)
		if (memcmp((uint8_t *)dst.host + i * PAGE, src + i * PAGE, PAGE))
			st->mismatches++;
	if (write(pl.stop_fd, &one, sizeof(one)) != sizeof(one))
		ret = -EIO;
	pthread_join(t, NULL);
	st->faults = pl.faults;
	if (pl.errors)
		ret = -EIO;
	st->place_s = (ut_now_ns() - t0) / 1e9;
out:
	if (pl.stop_fd >= 0)
		close(pl.stop_fd);
	gm_uffd_close(&u);
	gm_region_fini(&dst);
	return ret;
}

static void write_json(const char *path, const struct opts *o,
		       const struct stats *st)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		pr_err("%s: %s", path, strerror(errno));
		return;
	}
	fprintf(f, "{\"guest_mib\": %zu, \"dirty_rate_mibs\": %u, "
		   "\"pages\": %llu, \"zero\": %llu, \"duplicate\": %llu, "
		   "\"data\": %llu, \"rounds\": %llu, \"final_dirty\": %llu, "
		   "\"faults\": %llu, \"mismatches\": %llu, "
		   "\"round0_s\": %.3f, \"rounds_s\": %.3f, \"place_s\": %.3f}\n",
		o->size >> 20, o->rate, (unsigned long long)st->pages,
		(unsigned long long)st->zero, (unsigned long long)st->dup,
		(unsigned long long)st->data, (unsigned long long)st->rounds,
		(unsigned long long)st->final_dirty,
		(unsigned long long)st->faults,
		(unsigned long long)st->mismatches, st->round0_s, st->rounds_s,
		st->place_s);
	fclose(f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },
		{ "rate", required_argument, NULL, 'r' },
		{ "json", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long v;
	char *end;
	int c;

	*o = (struct opts){ .size = 256 * UT_MiB, .rate = 64 };
	while ((c = getopt_long(argc, argv, "s:r:j:h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			v = strtoul(optarg, &end, 10);
			if (*end || v < 4 || v > 8192) {
				pr_err("--size takes 4..8192 (MiB), not '%s'",
				       optarg);
				return -EINVAL;
			}
			o->size = v * UT_MiB;
			break;
		case 'r':
			v = strtoul(optarg, &end, 10);
			if (*end || v > 4096) {
				pr_err("--rate takes 0..4096 (MiB/s), not '%s'",
				       optarg);
				return -EINVAL;
			}
			o->rate = v;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'h':
			printf("usage: ferry-demo [--size MiB] [--rate MiB/s] "
			       "[--json FILE]\n");
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* Tracks the VMM, runs the rounds, quiesces it and rebuilds its memory. */
static int run_agent(int sock, pid_t vmm, const struct opts *o,
		     struct stats *st)
{
	struct gm_dirty_range range;
	struct gm_region src = { .fd = -1 };
	struct gm_dirty *d = NULL;
	struct gm_uffd u = { .fd = -1 };
	struct ut_bitmap bm = { 0 };
	uint64_t hdr[2], t0, have = 0;
	int fds[2] = { -1, -1 }, ret;
	char c = 0;

	ret = recv_vmm(sock, hdr, fds);
	if (ret)
		goto out;
	ret = gm_region_attach(&src, GM_BACKING_SHMEM, fds[1], 0, hdr[1]);
	if (ret)
		goto out;
	gm_uffd_probe(&have);
	ret = gm_uffd_init(&u, fds[0], UFFD_FEATURE_WP_ASYNC |
				       UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
				       (have & UFFD_FEATURE_WP_UNPOPULATED), true);
	if (ret)
		goto out;
	fds[0] = -1;
	range = (struct gm_dirty_range){ hdr[0], hdr[1], PAGE };
	ret = gm_dirty_create(&d, &(struct gm_dirty_params){
		.pid = vmm, .uffd = &u, .ranges = &range, .nr_ranges = 1 });
	if (ret)
		goto out;
	st->pages = hdr[1] / PAGE;
	printf("agent: tracking %zu MiB of guest RAM in pid %d (uffd-wp async)\n",
	       (size_t)(hdr[1] >> 20), (int)vmm);
	t0 = ut_now_ns();
	ret = classify(src.host, st->pages, st);
	st->round0_s = (ut_now_ns() - t0) / 1e9;
	if (ret)
		goto out;
	printf("round 0: %llu pages: %llu zero, %llu duplicate, %llu data "
	       "(%.2f s)\n", (unsigned long long)st->pages,
	       (unsigned long long)st->zero, (unsigned long long)st->dup,
	       (unsigned long long)st->data, st->round0_s);
	ret = dirty_rounds(d, st, isatty(STDOUT_FILENO));
	if (ret)
		goto out;
	/* Quiesce the writer (the "pause"), then take the last dirty set. */
	if (write(sock, &c, 1) != 1 || read(sock, &c, 1) != 1) {
		ret = -EPIPE;
		goto out;
	}
	ret = ut_bitmap_init(&bm, gm_dirty_pages(d));
	if (!ret) {
		ssize_t n = gm_dirty_harvest(d, &bm);

		ret = n < 0 ? n : 0;
		st->final_dirty = n < 0 ? 0 : n;
	}
	if (ret)
		goto out;
	printf("paused: %llu pages dirty since the last round\n",
	       (unsigned long long)st->final_dirty);
	ret = place_and_verify(src.host, hdr[1], st);
out:
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	gm_uffd_close(&u);
	gm_region_fini(&src);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return ret;
}

int main(int argc, char **argv)
{
	struct stats st = { 0 };
	struct opts o;
	int sv[2], status, ret;
	pid_t vmm;

	if (parse_opts(argc, argv, &o))
		return 2;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		pr_err("socketpair: %s", strerror(errno));
		return 1;
	}
	printf("ferry-demo: %zu MiB guest on shmem, writer at %u MiB/s; "
	       "zero scan: %s\n", o.size >> 20, o.rate, gm_is_zero_impl());
	fflush(stdout);
	vmm = fork();
	if (vmm < 0) {
		pr_err("fork: %s", strerror(errno));
		return 1;
	}
	if (vmm == 0) {
		close(sv[0]);
		vmm_main(sv[1], o.size, o.rate);
	}
	close(sv[1]);
	ret = run_agent(sv[0], vmm, &o, &st);
	if (ret)
		kill(vmm, SIGKILL);
	close(sv[0]); /* releases a waiting child */
	waitpid(vmm, &status, 0);
	if (ret) {
		pr_err("failed: %s", strerror(-ret));
		return 1;
	}
	printf("rebuilt %llu pages on demand (%llu faults) in %.2f s: "
	       "%llu mismatches\n", (unsigned long long)st.pages,
	       (unsigned long long)st.faults, st.place_s,
	       (unsigned long long)st.mismatches);
	if (o.json)
		write_json(o.json, &o, &st);
	if (st.mismatches || !WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("FAILED: %llu pages differ, VMM status %d",
		       (unsigned long long)st.mismatches, status);
		return 1;
	}
	printf("OK: every page arrived intact\n");
	return 0;
}
