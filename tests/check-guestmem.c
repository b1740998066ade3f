// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * guestmem tests, in the shape of the kernel's uffd selftests: mechanisms
 * (MISSING+COPY, ZEROPAGE, MINOR+CONTINUE, sync WP, WP_ASYNC tracking, in
 * this process and across processes over SCM_RIGHTS) crossed with memory
 * backings. Built twice: as check-guestmem for shmem and anonymous memory,
 * and with GM_TEST_HUGETLB as check-guestmem-hugetlb, which reserves 2M
 * huge pages for its run and restores the pool afterwards.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define LOG_PREFIX "check-guestmem"
#include "guestmem/guestmem.h"
#include "guestmem/internal.h"
#include "tests/testutil.h"

#ifdef GM_TEST_HUGETLB
static const enum gm_backing backings[] = { GM_BACKING_HUGETLB_2M };
#define REGION_PAGES 8
#else
static const enum gm_backing backings[] = { GM_BACKING_SHMEM,
					    GM_BACKING_ANON };
#define REGION_PAGES 64
#endif
#define NB ((int)UT_ARRAY_SIZE(backings))

/* ---- helpers ---- */

static size_t region_size(enum gm_backing b)
{
	return REGION_PAGES * gm_backing_page_size(b);
}

/* A page's expected content: its index in the first word, then a byte
 * pattern derived from it, so that any misplaced page is caught. */
static void fill_page(void *p, size_t psz, uint64_t idx)
{
	memset(p, (int)(0xa5 ^ (idx * 13)), psz);
	memcpy(p, &idx, sizeof(idx));
}

static bool page_ok(const void *p, size_t psz, uint64_t idx)
{
	const uint8_t *b = p;
	uint64_t got;

	memcpy(&got, p, sizeof(got));
	if (got != idx)
		return false;
	for (size_t i = sizeof(idx); i < psz; i += 511)
		if (b[i] != (uint8_t)(0xa5 ^ (idx * 13)))
			return false;
	return b[psz - 1] == (uint8_t)(0xa5 ^ (idx * 13));
}

static int send_fds(int sock, const int *fds, int n, const void *data,
		    size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)] = { 0 };
	struct iovec iov = { (void *)data, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (n) {
		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	return sendmsg(sock, &msg, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fds(int sock, int *fds, int n, void *data, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { data, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != (ssize_t)len)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (n && (!c || c->cmsg_type != SCM_RIGHTS))
		return -1;
	if (n)
		memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
	return 0;
}

/* ---- the fault-handling thread ---- */

enum resolve { RESOLVE_COPY, RESOLVE_ZERO, RESOLVE_CONTINUE, RESOLVE_UNWP };

struct handler {
	struct gm_uffd *uffd;
	enum resolve how;
	uint64_t base;		/* faulting range start (owner's address) */
	size_t page_size;
	uint8_t *shadow;	/* CONTINUE: the agent's view of the file */
	int stop_fd;		/* eventfd: write 1 to stop */
	pthread_t thread;
	_Atomic uint64_t faults, races, errors, wp_faults;
	void *buf;		/* one page of source data */
};

static int resolve_one(struct handler *h, const struct gm_uffd_event *e)
{
	uint64_t page = e->addr & ~((uint64_t)h->page_size - 1);
	uint64_t idx = (page - h->base) / h->page_size;

	switch (h->how) {
	case RESOLVE_COPY:
		fill_page(h->buf, h->page_size, idx);
		return gm_uffd_copy(h->uffd, page, h->buf, h->page_size, 0);
	case RESOLVE_ZERO:
		return gm_uffd_zeropage(h->uffd, page, h->page_size, 0);
	case RESOLVE_CONTINUE:
		/* The page cache is filled through the other mapping first;
		 * CONTINUE only installs the page table entry. */
		fill_page(h->shadow + idx * h->page_size, h->page_size, idx);
		return gm_uffd_continue(h->uffd, page, h->page_size, 0);
	case RESOLVE_UNWP:
		if (e->flags & UFFD_PAGEFAULT_FLAG_WP)
			h->wp_faults++;
		return gm_uffd_writeprotect(h->uffd, page, h->page_size, false,
					    0);
	}
	return -EINVAL;
}

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	struct pollfd pfd[2] = { { h->uffd->fd, POLLIN, 0 },
				 { h->stop_fd, POLLIN, 0 } };
	struct gm_uffd_event ev[16];

	for (;;) {
		ssize_t n;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		n = gm_uffd_read_events(h->uffd, ev, UT_ARRAY_SIZE(ev));
		for (ssize_t i = 0; i < n; i++) {
			int ret;

			if (ev[i].kind != GM_UFFD_EV_FAULT)
				continue;
			h->faults++;
			ret = resolve_one(h, &ev[i]);
			if (gm_uffd_race(ret))
				h->races++;
			else if (ret)
				h->errors++;
		}
	}
	return NULL;
}

static void handler_start(struct handler *h, struct gm_uffd *u,
			  enum resolve how, uint64_t base, size_t psz)
{
	/* h->shadow, set by the caller, must be there before the thread. */
	*h = (struct handler){ .uffd = u, .how = how, .base = base,
			       .page_size = psz, .shadow = h->shadow };
	h->buf = aligned_alloc(4096, psz);
	ck_assert_ptr_nonnull(h->buf);
	h->stop_fd = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_ge(h->stop_fd, 0);
	ck_assert_int_eq(pthread_create(&h->thread, NULL, handler_main, h), 0);
}

static void handler_stop(struct handler *h)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(h->stop_fd, &one, sizeof(one)), sizeof(one));
	pthread_join(h->thread, NULL);
	close(h->stop_fd);
	free(h->buf);
}

static uint64_t need_features(enum gm_backing b, unsigned int modes)
{
	bool huge = b == GM_BACKING_HUGETLB_2M || b == GM_BACKING_HUGETLB_1G;
	bool file = b == GM_BACKING_SHMEM || huge;
	uint64_t f = 0;

	if ((modes & GM_UFFD_MISSING) && file)
		f |= huge ? UFFD_FEATURE_MISSING_HUGETLBFS :
			    UFFD_FEATURE_MISSING_SHMEM;
	if ((modes & GM_UFFD_MINOR))
		f |= huge ? UFFD_FEATURE_MINOR_HUGETLBFS :
			    UFFD_FEATURE_MINOR_SHMEM;
	if ((modes & GM_UFFD_WP) && file)
		f |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	return f;
}

/* ---- regions ---- */

START_TEST(backing_names)
{
	enum gm_backing b;

	for (int i = 0; i < GM_BACKING_COUNT; i++) {
		ck_assert_int_eq(gm_backing_parse(gm_backing_name(i), &b), 0);
		ck_assert_int_eq(b, i);
	}
	ck_assert_int_eq(gm_backing_parse("hugetlb", &b), 0);
	ck_assert_int_eq(b, GM_BACKING_HUGETLB_2M);
	ck_assert_int_eq(gm_backing_parse("tmpfs-ish", &b), -EINVAL);
	ck_assert_int_eq(gm_backing_page_size(GM_BACKING_HUGETLB_1G), UT_GiB);
}
END_TEST

START_TEST(region_invalid)
{
	struct gm_region r;
	enum gm_backing b = backings[_i];
	size_t psz = gm_backing_page_size(b);

	ck_assert_int_eq(gm_region_init(&r, b, 0, NULL), -EINVAL);
	ck_assert_int_eq(gm_region_init(&r, b, psz + 1, NULL), -EINVAL);
	ck_assert_int_eq(gm_region_init(&r, GM_BACKING_COUNT, psz, NULL),
			 -EINVAL);
	/* Far more than the host has. */
	ck_assert_int_eq(gm_region_init(&r, b, (size_t)1 << 50, NULL),
			 -ENOMEM);
	ck_assert_ptr_null(r.host);
	gm_region_fini(&r); /* a failed region is safe to finish */
	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_region_discard(&r, 1, psz), -EINVAL);
	ck_assert_int_eq(gm_region_discard(&r, 0, r.size + psz), -EINVAL);
	ck_assert_int_eq(gm_region_discard(&r, r.size, psz), -EINVAL);
	gm_region_fini(&r);
	gm_region_fini(&r);
}
END_TEST

START_TEST(region_attach_and_discard)
{
	enum gm_backing b = backings[_i];
	struct gm_region r, view;
	size_t psz = gm_backing_page_size(b);

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), "test"), 0);
	ck_assert_uint_eq(r.page_size, psz);
	for (uint64_t i = 0; i < REGION_PAGES; i++)
		fill_page((uint8_t *)r.host + i * psz, psz, i);
	if (r.fd < 0) {
		/* Anonymous memory has no fd to share. */
		ck_assert_int_eq(gm_region_attach(&view, b, r.fd, 0, r.size),
				 -EINVAL);
	} else {
		ck_assert_int_eq(gm_region_attach(&view, b, r.fd, psz,
						  r.size - psz), 0);
		ck_assert(page_ok(view.host, psz, 1));
		/* A write through the second mapping shows in the first. */
		fill_page(view.host, psz, 77);
		ck_assert(page_ok((uint8_t *)r.host + psz, psz, 77));
		gm_region_fini(&view);
	}
	ck_assert_int_eq(gm_region_discard(&r, 2 * psz, psz), 0);
	ck_assert(gm_is_zero((uint8_t *)r.host + 2 * psz, psz));
	ck_assert(page_ok((uint8_t *)r.host + 3 * psz, psz, 3));
	gm_region_fini(&r);
}
END_TEST

struct captured {
	char last[1024];
};

static void capture(enum ut_log_level lvl, const char *msg, void *arg)
{
	snprintf(((struct captured *)arg)->last, 1024, "%s", msg);
}

START_TEST(hugetlb_shortage_message)
{
	struct captured c = { "" };
	struct gm_region r;
	ssize_t avail = gm_hugetlb_free(2 * UT_MiB);
	int ret;

	ck_assert_int_ge(avail, 0);
	ut_log_set_sink(capture, &c);
	ret = gm_region_init(&r, GM_BACKING_HUGETLB_2M,
			     (avail + 1) * 2 * UT_MiB, NULL);
	ut_log_set_sink(NULL, NULL);
	ck_assert_int_eq(ret, -ENOMEM);
	/* It says how many pages are missing and how to reserve them. */
	ck_assert_msg(strstr(c.last, "huge pages needed") &&
			      strstr(c.last, "nr_hugepages"),
		      "message: %s", c.last);
}
END_TEST

/* ---- userfaultfd ---- */

START_TEST(uffd_probe_and_api)
{
	struct gm_uffd u;
	uint64_t f = 0;

	ck_assert_int_eq(gm_uffd_probe(&f), 0);
	ck_assert(f & UFFD_FEATURE_MISSING_SHMEM);
	ck_assert_int_eq(gm_uffd_open(&u, UFFD_FEATURE_EVENT_REMOVE), 0);
	ck_assert(u.features & UFFD_FEATURE_EVENT_REMOVE);
	ck_assert(u.ioctls & (1ULL << _UFFDIO_REGISTER));
	gm_uffd_close(&u);
	gm_uffd_close(&u);
	/* Asking for a feature no kernel has fails and names it. */
	ck_assert_int_eq(gm_uffd_open(&u, 1ULL << 62), -EOPNOTSUPP);
}
END_TEST

START_TEST(uffd_invalid_args)
{
	struct gm_uffd u, closed = { .fd = -1 };
	char page[4096];

	ck_assert_int_eq(gm_uffd_open(&u, 0), 0);
	ck_assert_int_eq(gm_uffd_register(&u, 4096, 0, GM_UFFD_MISSING, NULL),
			 -EINVAL);
	ck_assert_int_eq(gm_uffd_register(&u, 4097, 4096, GM_UFFD_MISSING,
					  NULL), -EINVAL);
	ck_assert_int_eq(gm_uffd_register(&u, 4096, 4096, 0, NULL), -EINVAL);
	ck_assert_int_eq(gm_uffd_register(&u, UINT64_MAX & ~4095ULL, 8192,
					  GM_UFFD_MISSING, NULL), -EINVAL);
	ck_assert_int_eq(gm_uffd_copy(&u, 4096, NULL, 4096, 0), -EINVAL);
	ck_assert_int_eq(gm_uffd_copy(&closed, 4096, page, 4096, 0), -EINVAL);
	ck_assert_int_eq(gm_uffd_zeropage(&u, 4096, 100, 0), -EINVAL);
	ck_assert_int_eq(gm_uffd_read_events(&u, NULL, 1), -EINVAL);
	gm_uffd_close(&u);
}
END_TEST

/* MISSING faults from this thread, served with COPY by the handler. */
START_TEST(missing_copy)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct handler h = { 0 };
	size_t psz = gm_backing_page_size(b);
	uint64_t ioctls;

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_MISSING)),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, &ioctls), 0);
	ck_assert(ioctls & (1ULL << _UFFDIO_COPY));
	handler_start(&h, &u, RESOLVE_COPY, (uintptr_t)r.host, psz);
	for (uint64_t i = 0; i < REGION_PAGES; i++)
		ck_assert_msg(page_ok((uint8_t *)r.host + i * psz, psz, i),
			      "page %llu", (unsigned long long)i);
	handler_stop(&h);
	ck_assert_uint_eq(h.faults, REGION_PAGES);
	ck_assert_uint_eq(h.errors, 0);
	/* A second placement of a present page is a recoverable race. */
	ck_assert_int_eq(gm_uffd_copy(&u, (uintptr_t)r.host,
				      (uint8_t *)r.host + psz, psz, 0), -EEXIST);
	ck_assert(gm_uffd_race(-EEXIST) && !gm_uffd_race(-EFAULT));
	ck_assert_int_eq(gm_uffd_unregister(&u, (uintptr_t)r.host, r.size), 0);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

struct reader {
	const uint8_t *page;
	size_t psz;
	uint64_t idx;
	bool ok;
};

static void *read_page(void *arg)
{
	struct reader *rd = arg;

	rd->ok = page_ok(rd->page, rd->psz, rd->idx);
	return NULL;
}

/* Several threads fault on the same page: one placement, all see it. */
START_TEST(missing_concurrent_same_page)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct handler h = { 0 };
	size_t psz = gm_backing_page_size(b);
	struct reader rd[4];
	pthread_t t[4];

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_MISSING)),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, NULL), 0);
	handler_start(&h, &u, RESOLVE_COPY, (uintptr_t)r.host, psz);
	for (uint64_t pg = 0; pg < REGION_PAGES; pg++) {
		for (int i = 0; i < 4; i++) {
			rd[i] = (struct reader){ (uint8_t *)r.host + pg * psz,
						 psz, pg, false };
			pthread_create(&t[i], NULL, read_page, &rd[i]);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			ck_assert_msg(rd[i].ok, "page %llu thread %d",
				      (unsigned long long)pg, i);
		}
	}
	handler_stop(&h);
	/* Every fault beyond the first on a page ended as EEXIST. */
	ck_assert_uint_eq(h.errors, 0);
	ck_assert_uint_eq(h.faults - h.races, REGION_PAGES);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

#ifndef GM_TEST_HUGETLB
/* ZEROPAGE (hugetlb has no zero page to map, so shmem and anon only). */
START_TEST(missing_zeropage)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct handler h = { 0 };
	size_t psz = gm_backing_page_size(b);

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_MISSING)),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, NULL), 0);
	handler_start(&h, &u, RESOLVE_ZERO, (uintptr_t)r.host, psz);
	ck_assert(gm_is_zero(r.host, r.size));
	handler_stop(&h);
	ck_assert_uint_eq(h.faults, REGION_PAGES);
	ck_assert_uint_eq(h.errors, 0);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST
#endif

/* MINOR + CONTINUE: the page cache is filled through a second mapping of
 * the same file (the agent's), the guest mapping faults only on the PTE. */
START_TEST(minor_continue)
{
	enum gm_backing b = backings[_i];
	struct gm_region r, agent;
	struct gm_uffd u;
	struct handler h = { 0 };
	size_t psz = gm_backing_page_size(b);

	if (b == GM_BACKING_ANON)
		return; /* MINOR mode needs a shared file: not applicable */
	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_region_attach(&agent, b, r.fd, 0, r.size), 0);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_MINOR)),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MINOR, NULL), 0);
	/* MINOR faults need the page in the page cache: populate it. */
	memset(agent.host, 0, agent.size);
	h.shadow = agent.host;
	handler_start(&h, &u, RESOLVE_CONTINUE, (uintptr_t)r.host, psz);
	for (uint64_t i = 0; i < REGION_PAGES; i++)
		ck_assert(page_ok((uint8_t *)r.host + i * psz, psz, i));
	handler_stop(&h);
	ck_assert_uint_eq(h.faults, REGION_PAGES);
	ck_assert_uint_eq(h.errors, 0);
	gm_uffd_close(&u);
	gm_region_fini(&agent);
	gm_region_fini(&r);
}
END_TEST

/* Synchronous write-protect: a write blocks until the handler lifts WP. */
START_TEST(wp_sync_writeprotect)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct handler h = { 0 };
	size_t psz = gm_backing_page_size(b);

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	memset(r.host, 1, r.size);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_WP) |
					      UFFD_FEATURE_PAGEFAULT_FLAG_WP),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_WP, NULL), 0);
	ck_assert_int_eq(gm_uffd_writeprotect(&u, (uintptr_t)r.host, r.size,
					      true, 0), 0);
	handler_start(&h, &u, RESOLVE_UNWP, (uintptr_t)r.host, psz);
	for (uint64_t i = 0; i < REGION_PAGES; i += 2)
		((uint8_t *)r.host)[i * psz] = 2;
	handler_stop(&h);
	ck_assert_uint_eq(h.wp_faults, REGION_PAGES / 2);
	ck_assert_uint_eq(h.errors, 0);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

#ifndef GM_TEST_HUGETLB
struct dropper {
	void *addr;
	size_t len;
	int advice;
	int ret;
};

static void *drop_page(void *arg)
{
	struct dropper *d = arg;

	d->ret = madvise(d->addr, d->len, d->advice);
	return NULL;
}

/* The VMM dropping memory shows as a REMOVE event. */
START_TEST(event_remove)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct gm_uffd_event ev[4];
	size_t psz = gm_backing_page_size(b);

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_uffd_open(&u, need_features(b, GM_UFFD_MISSING) |
					      UFFD_FEATURE_EVENT_REMOVE),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, NULL), 0);
	ck_assert_int_eq(gm_uffd_read_events(&u, ev, 4), 0);
	/* madvise waits until the monitor has read the event: it runs on
	 * another thread while this one reads. */
	struct dropper d = { (uint8_t *)r.host + psz, psz,
			     b == GM_BACKING_ANON ? MADV_DONTNEED : MADV_REMOVE,
			     -1 };
	pthread_t t;
	struct pollfd pfd = { u.fd, POLLIN, 0 };

	ck_assert_int_eq(pthread_create(&t, NULL, drop_page, &d), 0);
	ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
	ck_assert_int_eq(gm_uffd_read_events(&u, ev, 4), 1);
	pthread_join(t, NULL);
	ck_assert_int_eq(d.ret, 0);
	ck_assert_int_eq(ev[0].kind, GM_UFFD_EV_REMOVE);
	ck_assert_uint_eq(ev[0].addr, (uintptr_t)r.host + psz);
	ck_assert_uint_eq(ev[0].end, (uintptr_t)r.host + 2 * psz);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST
#endif

#ifndef GM_TEST_HUGETLB
/* UFFDIO_MOVE: pages change places without a copy (anonymous only). */
START_TEST(move_anon)
{
	struct gm_region r;
	struct gm_uffd u;
	uint8_t *src;
	uint64_t f = 0;

	gm_uffd_probe(&f);
	ck_assert_msg(f & UFFD_FEATURE_MOVE, "kernel lacks UFFDIO_MOVE");
	ck_assert_int_eq(gm_region_init(&r, GM_BACKING_ANON, 4 * 4096, NULL),
			 0);
	src = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(src, MAP_FAILED);
	fill_page(src, 4096, 1);
	fill_page(src + 4096, 4096, 2);
	ck_assert_int_eq(gm_uffd_open(&u, UFFD_FEATURE_MOVE), 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, NULL), 0);
	ck_assert_int_eq(gm_uffd_move(&u, (uintptr_t)r.host + 4096,
				      (uintptr_t)src, 2 * 4096, 0), 0);
	ck_assert(page_ok((uint8_t *)r.host + 4096, 4096, 1));
	ck_assert(page_ok((uint8_t *)r.host + 2 * 4096, 4096, 2));
	/* The source is empty now, and a present destination is a race. */
	ck_assert(gm_is_zero(src, 2 * 4096));
	fill_page(src, 4096, 3);
	ck_assert_int_eq(gm_uffd_move(&u, (uintptr_t)r.host + 4096,
				      (uintptr_t)src, 4096, 0), -EEXIST);
	munmap(src, 2 * 4096);
	gm_uffd_close(&u);
	/* Without the feature the call is refused up front. */
	ck_assert_int_eq(gm_uffd_open(&u, 0), 0);
	ck_assert_int_eq(gm_uffd_move(&u, (uintptr_t)r.host, 4096 * 16, 4096,
				      0), -EOPNOTSUPP);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, 1);
}

/* UFFDIO_POISON: the page raises SIGBUS instead of faulting to us. */
START_TEST(poison_page)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	volatile int bus = 0;
	uint64_t f = 0;

	gm_uffd_probe(&f);
	ck_assert_msg(f & UFFD_FEATURE_POISON, "kernel lacks UFFDIO_POISON");
	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	ck_assert_int_eq(gm_uffd_open(&u, UFFD_FEATURE_POISON |
					      need_features(b, GM_UFFD_MISSING)),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, (uintptr_t)r.host, r.size,
					  GM_UFFD_MISSING, NULL), 0);
	ck_assert_int_eq(gm_uffd_poison(&u, (uintptr_t)r.host, 4096, 0), 0);
	signal(SIGBUS, on_sigbus);
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*(volatile uint8_t *)r.host;
	else
		bus = 1;
	signal(SIGBUS, SIG_DFL);
	ck_assert_msg(bus, "reading a poisoned page did not raise SIGBUS");
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST
#endif

/* ---- a second process that owns guest RAM and a uffd (the VMM) ---- */

enum { CMD_WRITE = 1, CMD_VERIFY, CMD_EXIT };

struct cmd {
	int op;
	uint64_t page;
};

struct vmm {
	pid_t pid;
	int sock;
	uint64_t addr;		/* the child's guest RAM address */
	size_t size;
	int uffd_fd;		/* received over SCM_RIGHTS */
};

static void child_loop(int sock, struct gm_region *r)
{
	struct cmd c;
	int reply;

	while (read(sock, &c, sizeof(c)) == sizeof(c)) {
		reply = 1;
		if (c.op == CMD_EXIT)
			break;
		if (c.op == CMD_WRITE)
			fill_page((uint8_t *)r->host + c.page * r->page_size,
				  r->page_size, c.page);
		if (c.op == CMD_VERIFY)
			for (uint64_t i = 0; i < REGION_PAGES; i++)
				if (!page_ok((uint8_t *)r->host +
						     i * r->page_size,
					     r->page_size, i))
					reply = 0;
		if (write(sock, &reply, sizeof(reply)) != sizeof(reply))
			break;
	}
}

/* Forks a child that creates guest RAM and a raw uffd and sends both;
 * @populate: the child writes every page first. */
static void vmm_start(struct vmm *v, enum gm_backing b, bool populate)
{
	int sv[2];
	uint64_t hdr[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	v->pid = fork();
	ck_assert_int_ge(v->pid, 0);
	if (v->pid == 0) {
		struct gm_region r;
		int fd;

		close(sv[0]);
		if (gm_region_init(&r, b, region_size(b), "child") ||
		    (fd = gm_uffd_create_raw()) < 0)
			_exit(2);
		if (populate)
			for (uint64_t i = 0; i < REGION_PAGES; i++)
				fill_page((uint8_t *)r.host + i * r.page_size,
					  r.page_size, i);
		hdr[0] = (uintptr_t)r.host;
		hdr[1] = r.size;
		if (send_fds(sv[1], &fd, 1, hdr, sizeof(hdr)))
			_exit(3);
		close(fd);
		child_loop(sv[1], &r);
		_exit(0);
	}
	close(sv[1]);
	v->sock = sv[0];
	ck_assert_int_eq(recv_fds(v->sock, &v->uffd_fd, 1, hdr, sizeof(hdr)),
			 0);
	v->addr = hdr[0];
	v->size = hdr[1];
}

static int vmm_cmd(struct vmm *v, int op, uint64_t page)
{
	struct cmd c = { op, page };
	int reply = -1;

	ck_assert_int_eq(write(v->sock, &c, sizeof(c)), sizeof(c));
	if (op != CMD_EXIT)
		ck_assert_int_eq(read(v->sock, &reply, sizeof(reply)),
				 sizeof(reply));
	return reply;
}

static void vmm_stop(struct vmm *v)
{
	int status;

	vmm_cmd(v, CMD_EXIT, 0);
	ck_assert_int_eq(waitpid(v->pid, &status, 0), v->pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(v->sock);
}

/* The agent serves the child's MISSING faults through the child's uffd. */
START_TEST(cross_process_missing_copy)
{
	enum gm_backing b = backings[_i];
	size_t psz = gm_backing_page_size(b);
	struct vmm v;
	struct gm_uffd u;
	struct handler h = { 0 };

	vmm_start(&v, b, false);
	ck_assert_int_eq(gm_uffd_init(&u, v.uffd_fd,
				      need_features(b, GM_UFFD_MISSING), true),
			 0);
	ck_assert_int_eq(gm_uffd_register(&u, v.addr, v.size, GM_UFFD_MISSING,
					  NULL), 0);
	handler_start(&h, &u, RESOLVE_COPY, v.addr, psz);
	ck_assert_int_eq(vmm_cmd(&v, CMD_VERIFY, 0), 1);
	handler_stop(&h);
	ck_assert_uint_eq(h.faults, REGION_PAGES);
	ck_assert_uint_eq(h.errors, 0);
	vmm_stop(&v);
	gm_uffd_close(&u);
}
END_TEST

static uint64_t wp_async_features(enum gm_backing b)
{
	uint64_t have = 0, f = UFFD_FEATURE_WP_ASYNC | need_features(b, GM_UFFD_WP);

	gm_uffd_probe(&have);
	return f | (have & UFFD_FEATURE_WP_UNPOPULATED);
}

/* Writes @pages in the tracked process, harvests, and expects exactly them. */
static void expect_dirty(struct gm_dirty *d, struct vmm *v, struct gm_region *r,
			 const uint64_t *pages, int n)
{
	struct ut_bitmap bm;
	int64_t peek;

	ck_assert_int_eq(ut_bitmap_init(&bm, gm_dirty_pages(d)), 0);
	for (int i = 0; i < n; i++) {
		if (v)
			ck_assert_int_eq(vmm_cmd(v, CMD_WRITE, pages[i]), 1);
		else
			fill_page((uint8_t *)r->host + pages[i] * r->page_size,
				  r->page_size, pages[i]);
	}
	/* A peek counts them and changes nothing: twice the same, and the
	 * harvest after it still finds them all. */
	peek = gm_dirty_peek(d);
	ck_assert_int_ge(peek, 0);
	ck_assert_int_eq(gm_dirty_peek(d), peek);
	ck_assert_int_eq(peek == 0, n == 0);
	ck_assert_int_eq(gm_dirty_harvest(d, &bm), n);
	ck_assert_uint_eq(ut_bitmap_count(&bm), n);
	if (n)
		ck_assert_msg(peek % n == 0 && (peek / n == 4096 ||
						peek / n == 2 * 1024 * 1024),
			      "peek %lld bytes for %d pages", (long long)peek,
			      n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(ut_bitmap_test(&bm, pages[i]), "page %llu",
			      (unsigned long long)pages[i]);
	ut_bitmap_fini(&bm);
}

static void dirty_rounds(struct gm_dirty *d, struct vmm *v, struct gm_region *r)
{
	const uint64_t a[] = { 0, 1, 5, REGION_PAGES - 1 };
	const uint64_t bb[] = { 2, 3 };

	/* Everything was written before tracking started: nothing shows. */
	expect_dirty(d, v, r, NULL, 0);
	expect_dirty(d, v, r, a, UT_ARRAY_SIZE(a));
	/* The harvest re-armed: only the new writes show. */
	expect_dirty(d, v, r, bb, UT_ARRAY_SIZE(bb));
	expect_dirty(d, v, r, NULL, 0);
	expect_dirty(d, v, r, a, 1);
}

/* WP_ASYNC tracking of another process that created the uffd. */
START_TEST(wp_async_cross_process)
{
	enum gm_backing b = backings[_i];
	struct vmm v;
	struct gm_uffd u;
	struct gm_dirty *d;
	struct gm_dirty_range range;

	vmm_start(&v, b, true);
	range = (struct gm_dirty_range){ v.addr, v.size,
					 gm_backing_page_size(b) };
	ck_assert_int_eq(gm_uffd_init(&u, v.uffd_fd, wp_async_features(b),
				      true), 0);
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .pid = v.pid, .uffd = &u, .ranges = &range,
			 .nr_ranges = 1 }), 0);
	ck_assert_uint_eq(gm_dirty_pages(d), REGION_PAGES);
	dirty_rounds(d, &v, NULL);
	gm_dirty_destroy(d);
	/* After tracking stops, the guest's memory is intact. */
	ck_assert_int_eq(vmm_cmd(&v, CMD_VERIFY, 0), 1);
	vmm_stop(&v);
	gm_uffd_close(&u);
}
END_TEST

/* The same in this process (pid 0), over two ranges. */
START_TEST(wp_async_self_two_ranges)
{
	enum gm_backing b = backings[_i];
	size_t psz = gm_backing_page_size(b);
	struct gm_region r;
	struct gm_uffd u;
	struct gm_dirty *d;
	struct gm_dirty_range ranges[2];
	struct ut_bitmap bm;

	ck_assert_int_eq(gm_region_init(&r, b, region_size(b), NULL), 0);
	for (uint64_t i = 0; i < REGION_PAGES; i++)
		fill_page((uint8_t *)r.host + i * psz, psz, i);
	ranges[0] = (struct gm_dirty_range){ (uintptr_t)r.host, r.size / 2,
					     psz };
	ranges[1] = (struct gm_dirty_range){ (uintptr_t)r.host + r.size / 2,
					     r.size / 2, psz };
	ck_assert_int_eq(gm_uffd_open(&u, wp_async_features(b)), 0);
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = ranges, .nr_ranges = 2 }), 0);
	dirty_rounds(d, NULL, &r);
	/* A bitmap of the wrong size is refused. */
	ck_assert_int_eq(ut_bitmap_init(&bm, REGION_PAGES + 1), 0);
	ck_assert_int_eq(gm_dirty_harvest(d, &bm), -EINVAL);
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

START_TEST(dirty_invalid)
{
	struct gm_uffd u;
	struct gm_dirty *d;
	struct gm_dirty_range bad = { 4097, 4096, 4096 };
	struct gm_dirty_range ok = { 4096, 4096, 4096 };

	ck_assert_int_eq(gm_uffd_open(&u, 0), 0);
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = &bad, .nr_ranges = 1 }),
			 -EINVAL);
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = &ok, .nr_ranges = 0 }),
			 -EINVAL);
	/* A uffd without WP_ASYNC cannot track. */
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = &ok, .nr_ranges = 1 }),
			 -EOPNOTSUPP);
	gm_dirty_destroy(NULL);
	gm_uffd_close(&u);
}
END_TEST

#ifndef GM_TEST_HUGETLB
/* More dirty runs than one PAGEMAP_SCAN vector holds: the walk resumes at
 * walk_end until the range is done. */
START_TEST(wp_async_many_runs)
{
	enum gm_backing b = backings[_i];
	const uint64_t pages = 4096;
	struct gm_region r;
	struct gm_uffd u;
	struct gm_dirty *d;
	struct gm_dirty_range range;
	struct ut_bitmap bm;

	ck_assert_int_eq(gm_region_init(&r, b, pages * 4096, NULL), 0);
	memset(r.host, 1, r.size);
	range = (struct gm_dirty_range){ (uintptr_t)r.host, r.size, 4096 };
	ck_assert_int_eq(gm_uffd_open(&u, wp_async_features(b)), 0);
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = &range, .nr_ranges = 1 }), 0);
	for (uint64_t i = 0; i < pages; i += 2)
		((uint8_t *)r.host)[i * 4096 + 100] = 2;
	ck_assert_int_eq(ut_bitmap_init(&bm, pages), 0);
	ck_assert_int_eq(gm_dirty_harvest(d, &bm), pages / 2);
	for (uint64_t i = 0; i < pages; i++)
		ck_assert_int_eq(ut_bitmap_test(&bm, i), !(i & 1));
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST
#endif

/* ---- page scanning ---- */

static bool ref_is_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

typedef bool (*zero_fn)(const void *, size_t);

static int zero_impls(zero_fn *fns)
{
	int n = 0;

	fns[n++] = gm_is_zero_scalar;
	if (__builtin_cpu_supports("avx2"))
		fns[n++] = gm_is_zero_avx2;
	if (__builtin_cpu_supports("avx512f"))
		fns[n++] = gm_is_zero_avx512;
	fns[n++] = gm_is_zero; /* the dispatched one */
	return n;
}

START_TEST(zero_scan_random)
{
	zero_fn fns[4];
	int n = zero_impls(fns);
	uint8_t *buf = aligned_alloc(64, 16384);

	srand(1);
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = 64 * (1 + rand() % 256);
		int kind = rand() % 3;

		memset(buf, 0, len);
		if (kind == 1)
			buf[rand() % len] = 1 + rand() % 255;
		else if (kind == 2)
			for (size_t i = 0; i < len; i++)
				buf[i] = rand();
		for (int f = 0; f < n; f++)
			ck_assert_int_eq(fns[f](buf, len), ref_is_zero(buf, len));
	}
	free(buf);
	ck_assert_str_ne(gm_is_zero_impl(), "");
}
END_TEST

START_TEST(zero_scan_adversarial)
{
	zero_fn fns[4];
	int n = zero_impls(fns);
	uint8_t *page = aligned_alloc(4096, 8192);

	memset(page, 0, 8192);
	for (int f = 0; f < n; f++) {
		ck_assert(fns[f](page, 4096));
		/* A single set bit anywhere, in every byte position. */
		for (size_t i = 0; i < 4096; i++) {
			for (int bit = 0; bit < 8; bit += 7) {
				page[i] = 1 << bit;
				ck_assert_msg(!fns[f](page, 4096),
					      "impl %d byte %zu", f, i);
				page[i] = 0;
			}
		}
		/* Garbage right after the buffer must not be read. */
		page[4096] = 0xff;
		ck_assert(fns[f](page, 4096));
		ck_assert(fns[f](page, 64));
		page[4096] = 0;
	}
	/* Unaligned lengths and addresses through the public entry. */
	page[4096 + 2] = 9;
	ck_assert(gm_is_zero(page + 1, 4096 + 1));
	ck_assert(!gm_is_zero(page + 1, 4096 + 2));
	ck_assert(gm_is_zero(page, 0));
	free(page);
}
END_TEST

START_TEST(hash_reference)
{
	uint8_t *a = malloc(4096), *b = malloc(4096);
	struct gm_hash ha, hb;
	XXH128_hash_t ref;

	for (int i = 0; i < 4096; i++)
		a[i] = i * 31 + 7;
	memcpy(b, a, 4096);
	gm_hash(a, 4096, &ha);
	gm_hash(b, 4096, &hb);
	ck_assert(gm_hash_eq(&ha, &hb));
	ref = XXH3_128bits(a, 4096);
	ck_assert_uint_eq(ha.lo, ref.low64);
	ck_assert_uint_eq(ha.hi, ref.high64);
	/* One flipped bit anywhere changes the hash. */
	for (int i = 0; i < 4096; i += 97) {
		b[i] ^= 0x10;
		gm_hash(b, 4096, &hb);
		ck_assert(!gm_hash_eq(&ha, &hb));
		b[i] ^= 0x10;
	}
	/* Zero pages of different sizes differ too. */
	memset(a, 0, 4096);
	gm_hash(a, 4096, &ha);
	gm_hash(a, 2048, &hb);
	ck_assert(!gm_hash_eq(&ha, &hb));
	free(a);
	free(b);
}
END_TEST

/* ---- the table ---- */


/* Features every case here relies on; a kernel without them skips. */
static const char *missing_feature(void)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} need[] = {
		{ UFFD_FEATURE_MISSING_SHMEM, "userfaultfd MISSING_SHMEM" },
		{ UFFD_FEATURE_MINOR_SHMEM, "userfaultfd MINOR_SHMEM" },
		{ UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "userfaultfd WP on shmem" },
		{ UFFD_FEATURE_WP_ASYNC, "userfaultfd WP_ASYNC (6.7+)" },
		{ UFFD_FEATURE_EVENT_REMOVE, "userfaultfd EVENT_REMOVE" },
	};
	uint64_t f = 0;

	if (gm_uffd_probe(&f))
		return "userfaultfd not available";
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(need); i++)
		if (!(f & need[i].bit))
			return need[i].name;
	return NULL;
}

#ifndef GM_TEST_HUGETLB
/* ---- NUMA ---- */

/* Writes @text to @root/@path, making the directories on the way. */
static void put_file(const char *root, const char *path, const char *text)
{
	char full[512], *s;
	FILE *f;

	snprintf(full, sizeof(full), "%s%s", root, path);
	for (s = full + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(full, 0755);
		*s = '/';
	}
	f = fopen(full, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* A copy of the nested host's sysfs, as its 6.12 kernel writes it. */
START_TEST(topo_from_tree)
{
	char root[] = "/tmp/check-guestmem-topo.XXXXXX", cmd[64];
	const char *n0 = "/sys/devices/system/node/node0/";
	const char *n1 = "/sys/devices/system/node/node1/";
	char p[256];
	struct gm_topo t;
	uint64_t m;

	ck_assert_ptr_nonnull(mkdtemp(root));
#define PUT(dir, file, text) \
	(snprintf(p, sizeof(p), "%s%s", dir, file), put_file(root, p, text))
	PUT(n0, "cpulist", "0-1\n");
	PUT(n0, "distance", "10 20\n");
	PUT(n0, "meminfo", "Node 0 MemTotal:        1290000 kB\n"
	    "Node 0 MemFree:         1256848 kB\nNode 0 MemUsed: 1 kB\n");
	PUT(n0, "hugepages/hugepages-2048kB/nr_hugepages", "0\n");
	PUT(n0, "hugepages/hugepages-2048kB/free_hugepages", "0\n");
	PUT(n1, "cpulist", "\n");
	PUT(n1, "distance", "20 10\n");
	PUT(n1, "meminfo", "Node 1 MemTotal:         786432 kB\n"
	    "Node 1 MemFree:          713372 kB\n");
	PUT(n1, "hugepages/hugepages-2048kB/nr_hugepages", "8\n");
	PUT(n1, "hugepages/hugepages-2048kB/free_hugepages", "6\n");
	PUT("/sys/kernel/mm/hugepages/hugepages-2048kB/", "nr_hugepages",
	    "8\n");
	PUT("/sys/devices/virtual/memory_tiering/memory_tier4/", "nodelist",
	    "0\n");
	PUT("/sys/devices/virtual/memory_tiering/memory_tier54/", "nodelist",
	    "1\n");
	PUT("/sys/kernel/mm/transparent_hugepage/", "enabled",
	    "always [madvise] never\n");
	PUT("/sys/kernel/mm/transparent_hugepage/", "defrag",
	    "always defer defer+madvise [madvise] never\n");
	PUT("/sys/kernel/mm/ksm/", "run", "0\n");
	PUT("/sys/kernel/mm/ksm/", "merge_across_nodes", "1\n");
	PUT("/proc/sys/kernel/", "numa_balancing", "2\n");
#undef PUT
	ck_assert_int_eq(gm_topo_read(&t, root), 0);
	ck_assert_uint_eq(t.nr_nodes, 2);
	ck_assert_uint_eq(t.nr_hpsizes, 1);
	ck_assert_uint_eq(t.hpsize[0], 2 << 20);
	ck_assert_uint_eq(t.node[0].ncpus, 2);
	ck_assert_str_eq(t.node[0].cpulist, "0-1");
	ck_assert_uint_eq(t.node[1].ncpus, 0);
	ck_assert_uint_eq(t.node[0].tier, 4);
	ck_assert_uint_eq(t.node[1].tier, 54);
	ck_assert_uint_eq(t.node[0].mem_free, 1256848ULL << 10);
	ck_assert_uint_eq(t.node[1].mem_total, 786432ULL << 10);
	ck_assert_uint_eq(t.node[1].hp_total[0], 8);
	ck_assert_uint_eq(t.node[1].hp_free[0], 6);
	ck_assert_uint_eq(t.node[0].distance[1], 20);
	ck_assert_uint_eq(t.node[1].distance[1], 10);
	ck_assert_str_eq(t.thp_enabled, "madvise");
	ck_assert_str_eq(t.thp_defrag, "madvise");
	ck_assert_str_eq(t.thp_shmem, "");
	ck_assert_int_eq(t.ksm_run, 0);
	ck_assert_int_eq(t.ksm_merge_across_nodes, 1);
	ck_assert_int_eq(t.numa_balancing, 2);
	ck_assert_int_eq(gm_topo_index(&t, 1), 1);
	ck_assert_int_eq(gm_topo_index(&t, 7), -ENOENT);
	/* A broken list is an error, not a guess. */
	snprintf(p, sizeof(p), "%scpulist", n1);
	put_file(root, p, "3-x\n");
	ck_assert_int_eq(gm_topo_read(&t, root), -EINVAL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(gm_topo_read(&t, root), -ENOENT);
	ck_assert_int_eq(gm_nodes_parse("0-2,5", &m), 4);
	ck_assert_uint_eq(m, 0x27);
}
END_TEST

/* This host's own picture: whatever its shape, a node with CPUs and
 * memory, and this process may run on one of them. */
START_TEST(topo_this_host)
{
	struct gm_topo t;
	uint64_t local = 0;
	bool cpus = false;
	char buf[4096];
	FILE *f;

	ck_assert_int_eq(gm_topo_read(&t, NULL), 0);
	ck_assert_uint_ge(t.nr_nodes, 1);
	for (uint32_t i = 0; i < t.nr_nodes; i++) {
		cpus |= t.node[i].ncpus > 0;
		ck_assert_uint_le(t.node[i].mem_free, t.node[i].mem_total);
		ck_assert_uint_eq(t.node[i].distance[i], 10);
	}
	ck_assert(cpus);
	ck_assert_int_eq(gm_topo_local_nodes(&t, 0, &local), 0);
	ck_assert_uint_ne(local, 0);
	f = fmemopen(buf, sizeof(buf), "w");
	gm_topo_print(&t, f, "  ");
	fclose(f);
	ck_assert_msg(strstr(buf, "  node ") && strstr(buf, "THP: "), "%s",
		      buf);
}
END_TEST

/* A memfd bound to a node before its pages are written gets them there,
 * through write(2) as the destination writes them; pages never written
 * are holes, reported as not in memory. */
START_TEST(numa_bind_then_write)
{
	struct gm_region r;
	struct gm_topo t;
	int32_t node[1024];
	uint8_t page[4096];
	uint32_t target;
	ssize_t n;

	ck_assert_int_eq(gm_topo_read(&t, NULL), 0);
	target = t.node[t.nr_nodes - 1].id;
	ck_assert_int_eq(gm_region_init(&r, GM_BACKING_SHMEM, 4 << 20, "numa"),
			 0);
	ck_assert_int_eq(gm_numa_bind(r.host, r.size, target), 0);
	memset(page, 0x5a, sizeof(page));
	for (int i = 0; i < 1024; i += 2)
		ck_assert_int_eq(pwrite(r.fd, page, sizeof(page),
					(off_t)i * 4096), 4096);
	n = gm_numa_where(&r, 0, 1024, node);
	ck_assert_int_eq(n, 512);
	for (int i = 0; i < 1024; i++)
		ck_assert_int_eq(node[i], i % 2 ? -1 : (int32_t)target);
	ck_assert_int_eq(gm_numa_where(&r, 1000, 100, node), -EINVAL);
	ck_assert_int_eq(gm_numa_bind(r.host, r.size, GM_MAX_NODES), -EINVAL);
	gm_region_fini(&r);
}
END_TEST
#endif

int main(void)
{
	/* Check's test handles are variables, so the table lives here. */
	const struct ft_case cases[] = {
#ifndef GM_TEST_HUGETLB
		{ "backing_names", backing_names, 0, 0 },
		{ "topo_from_tree", topo_from_tree, 0, 0 },
		{ "topo_this_host", topo_this_host, 0, 0 },
		{ "numa_bind_then_write", numa_bind_then_write, 0, 0 },
		{ "hugetlb_shortage_message", hugetlb_shortage_message, 0, 0 },
		{ "uffd_probe_and_api", uffd_probe_and_api, 0, 0 },
		{ "uffd_invalid_args", uffd_invalid_args, 0, 0 },
		{ "dirty_invalid", dirty_invalid, 0, 0 },
		{ "missing_zeropage", missing_zeropage, NB, 0 },
		{ "event_remove", event_remove, NB, 0 },
		{ "wp_async_many_runs", wp_async_many_runs, NB, 0 },
		{ "zero_scan_random", zero_scan_random, 0, 0 },
		{ "zero_scan_adversarial", zero_scan_adversarial, 0, 0 },
		{ "hash_reference", hash_reference, 0, 0 },
		{ "move_anon", move_anon, 0, 0 },
		{ "poison_page", poison_page, NB, 0 },
#endif
		{ "region_invalid", region_invalid, NB, 0 },
		{ "region_attach_and_discard", region_attach_and_discard, NB, 0 },
		{ "missing_copy", missing_copy, NB, 0 },
		{ "missing_concurrent_same_page", missing_concurrent_same_page, NB,
		  60 },
		{ "minor_continue", minor_continue, NB, 0 },
		{ "wp_sync_writeprotect", wp_sync_writeprotect, NB, 0 },
		{ "cross_process_missing_copy", cross_process_missing_copy, NB, 0 },
		{ "wp_async_cross_process", wp_async_cross_process, NB, 0 },
		{ "wp_async_self_two_ranges", wp_async_self_two_ranges, NB, 0 },
	};
	const char *why = missing_feature();
	int ncases = ft_count(cases, UT_ARRAY_SIZE(cases));
	int ret;
#ifdef GM_TEST_HUGETLB
	const unsigned long want = REGION_PAGES * 2 + 4;
	unsigned long old = 0;
	ssize_t got;

	if (why)
		return ft_skip(ncases, why);
	ft_hugetlb_lock();
	/* Reserve what the cases need on top of what is free, and give it
	 * back afterwards whatever happened. */
	got = gm_hugetlb_set(2 * UT_MiB, 0, &old);
	if (got < 0)
		return ft_skip(ncases, "no 2M huge page pool");
	got = gm_hugetlb_set(2 * UT_MiB, old + want, NULL);
	if (got < 0 || (unsigned long)got < old + want) {
		gm_hugetlb_set(2 * UT_MiB, old, NULL);
		return ft_skip(ncases, "cannot reserve 2M huge pages");
	}
	ret = ft_run(ft_suite("guestmem-hugetlb", cases, UT_ARRAY_SIZE(cases)));
	gm_hugetlb_set(2 * UT_MiB, old, NULL);
	return ret;
#else
	if (why)
		return ft_skip(ncases, why);
	ret = ft_run(ft_suite("guestmem", cases, UT_ARRAY_SIZE(cases)));
	return ret;
#endif
}
