/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by the Check programs. */
#ifndef FERRY_TESTUTIL_H
#define FERRY_TESTUTIL_H

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

/* A Check program's case table: one TCase per entry. */
struct ft_case {
	const char *name;
	const TTest *fn;
	int loop_end;		/* > 0: a loop test over [0, loop_end) */
	int timeout;		/* seconds; 0 means 30 */
};

static inline Suite *ft_suite(const char *name, const struct ft_case *c,
			      size_t n)
{
	Suite *s = suite_create(name);

	for (size_t i = 0; i < n; i++) {
		TCase *tc = tcase_create(c[i].name);

		tcase_set_timeout(tc, c[i].timeout ? c[i].timeout : 30);
		if (c[i].loop_end > 0)
			tcase_add_loop_test(tc, c[i].fn, 0, c[i].loop_end);
		else
			tcase_add_test(tc, c[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

/* Number of test runs a case table makes (loop tests count each run). */
static inline int ft_count(const struct ft_case *c, size_t n)
{
	int total = 0;

	for (size_t i = 0; i < n; i++)
		total += c[i].loop_end > 0 ? c[i].loop_end : 1;
	return total;
}

/* Skips the whole program: prints the line tools/test-summary counts and
 * returns automake's skip status. */
static inline int ft_skip(int ncases, const char *why)
{
	printf("SKIP: %d cases: %s\n", ncases, why);
	return 77;
}

/*
 * The huge page pool is one system-wide setting and make check runs test
 * programs in parallel: a program that changes the pool holds this lock
 * from before it reads the pool until after it has restored it. Returns
 * the fd that holds the lock (closed at exit), or -1.
 */
static inline int ft_hugetlb_lock(void)
{
	int fd = open("/tmp/ferry-tests-hugetlb.lock", O_RDWR | O_CREAT | O_CLOEXEC,
		      0600);

	if (fd >= 0 && flock(fd, LOCK_EX)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Runs @s; returns 0 when every case passed, 1 otherwise. */
static inline int ft_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
