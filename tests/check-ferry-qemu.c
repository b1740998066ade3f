// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unit tests for ferry-qemu: reading QEMU's QMP replies, the command line. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

START_TEST(json_values)
{
	const char *js = "{\"return\": {\"status\": \"running\", \"singlestep\""
			 ": false, \"running\": true, \"size\": 67108864}}";
	char s[32];
	uint64_t n;
	bool b;

	ck_assert_int_eq(fq_json_str(js, "status", s, sizeof(s)), 0);
	ck_assert_str_eq(s, "running");
	ck_assert_int_eq(fq_json_bool(js, "running", &b), 0);
	ck_assert(b);
	ck_assert_int_eq(fq_json_bool(js, "singlestep", &b), 0);
	ck_assert(!b);
	ck_assert_int_eq(fq_json_u64(js, "size", &n), 0);
	ck_assert_uint_eq(n, 67108864);
	/* a key is a whole key, and a value of the wrong kind is no value */
	ck_assert_int_eq(fq_json_str(js, "stat", s, sizeof(s)), -ENOENT);
	ck_assert_int_eq(fq_json_str(js, "running", s, sizeof(s)), -ENOENT);
	ck_assert_int_eq(fq_json_bool(js, "status", &b), -EPROTO);
}
END_TEST

START_TEST(json_escapes_and_bounds)
{
	const char *js = "{\"return\": \"a\\r\\nb\\\"c\\\\d\\u0041\"}";
	char s[16], tiny[4];

	ck_assert_int_eq(fq_json_str(js, "return", s, sizeof(s)), 0);
	ck_assert_str_eq(s, "a\r\nb\"c\\dA");
	ck_assert_int_eq(fq_json_str(js, "return", tiny, sizeof(tiny)),
			 -ENOSPC);
	ck_assert_int_eq(fq_json_str("{\"x\": \"open", "x", s, sizeof(s)),
			 -EPROTO);
	ck_assert_int_eq(fq_json_str("{\"x\": \"bad\\", "x", s, sizeof(s)),
			 -EPROTO);
}
END_TEST

static bool has(char **v, const char *s)
{
	for (; *v; v++)
		if (!strcmp(*v, s))
			return true;
	return false;
}

static const char *after(char **v, const char *s)
{
	for (; *v && v[1]; v++)
		if (!strcmp(*v, s))
			return v[1];
	return NULL;
}

START_TEST(cmdline_per_side)
{
	char *extra[] = { "-kernel", "g" };
	struct fq_cmdline c = { .dir = "/run/v", .mem = "32M", .accel = "tcg",
				.preload = "/p.so", .nextra = 2, .extra = extra };
	char **a1, **e1, **a2, **e2;
	const char *t1, *t2;

	ck_assert_int_eq(fq_cmdline_build(&c, &a1, &e1), 0);
	c.incoming = true;
	ck_assert_int_eq(fq_cmdline_build(&c, &a2, &e2), 0);
	ck_assert_str_eq(e1[0], "LD_PRELOAD=/p.so");
	ck_assert_str_eq(e1[1], "FERRY_UFFD_SOCKET=/run/v/uffd.sock");
	ck_assert_str_eq(after(a1, "-object"),
			 "memory-backend-memfd,id=ram0,size=32M,share=on");
	ck_assert_str_eq(after(a1, "-qmp"),
			 "unix:/run/v/qmp.sock,server=on,wait=off");
	ck_assert_str_eq(after(a1, "-accel"), "tcg");
	ck_assert(!has(a1, "-incoming") && !has(a1, "-S"));
	ck_assert_str_eq(after(a2, "-incoming"), "defer");
	ck_assert(has(a2, "-S"));
	ck_assert_str_eq(after(a2, "-kernel"), "g");
	/* each QEMU process its own 16-hex-digit resume token */
	t1 = after(a1, "-fw_cfg");
	t2 = after(a2, "-fw_cfg");
	ck_assert_int_eq(strncmp(t1, "name=opt/ferry/resume,string=", 29), 0);
	ck_assert_uint_eq(strlen(t1 + 29), 16);
	ck_assert_uint_eq(strspn(t1 + 29, "0123456789abcdef"), 16);
	ck_assert_str_ne(t1, t2);
	fq_cmdline_free(a1);
	fq_cmdline_free(e1);
	fq_cmdline_free(a2);
	fq_cmdline_free(e2);
}
END_TEST

START_TEST(cmdline_numa_nodes)
{
	struct fq_cmdline c = { .dir = "/d", .mem = "64M", .accel = "tcg",
				.preload = "/p.so", .nodes = 2 };
	char **a, **e;
	int objs = 0;

	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), 0);
	for (char **p = a; *p; p++) {
		if (!strcmp(*p, "-object")) {
			ck_assert_str_eq(p[1], objs ?
				"memory-backend-memfd,id=ram1,size=32M,share=on" :
				"memory-backend-memfd,id=ram0,size=32M,share=on");
			objs++;
		}
	}
	ck_assert_int_eq(objs, 2);
	ck_assert_str_eq(after(a, "-numa"), "node,memdev=ram0");
	ck_assert_str_eq(after(a, "-machine"), "pc");
	ck_assert_str_eq(after(a, "-m"), "64M");
	fq_cmdline_free(a);
	fq_cmdline_free(e);
	c.hugetlb = true;
	c.nodes = 1;
	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), 0);
	ck_assert_str_eq(after(a, "-object"), "memory-backend-memfd,id=ram0,"
			 "size=64M,share=on,hugetlb=on,hugetlbsize=2M");
	fq_cmdline_free(a);
	fq_cmdline_free(e);
	c.nodes = 2;
	c.mem = "3M";	/* not whole 2 MiB per node */
	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), -EINVAL);
	c.mem = "1G";
	c.nodes = 9;
	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), -EINVAL);
	c.nodes = 1;
	c.mem = "64X";
	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), -EINVAL);
}
END_TEST

START_TEST(cmdline_file_backend)
{
	struct fq_cmdline c = { .dir = "/d", .mem = "32M",
				.accel = "tcg,thread=single",
				.preload = "/p.so", .mem_path = "/mnt/huge" };
	char **a, **e;

	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), 0);
	ck_assert_str_eq(after(a, "-object"), "memory-backend-file,id=ram0,"
			 "size=32M,share=on,align=2M,mem-path=/mnt/huge");
	ck_assert_str_eq(after(a, "-machine"), "pc,memory-backend=ram0");
	ck_assert_str_eq(after(a, "-accel"), "tcg,thread=single");
	fq_cmdline_free(a);
	fq_cmdline_free(e);
	c.hugetlb = true;	/* a hugetlbfs mount says the page size */
	ck_assert_int_eq(fq_cmdline_build(&c, &a, &e), -EINVAL);
}
END_TEST

int main(void)
{
	const struct ft_case cases[] = {
		{ "json_values", json_values, 0, 10 },
		{ "json_escapes_and_bounds", json_escapes_and_bounds, 0, 10 },
		{ "cmdline_per_side", cmdline_per_side, 0, 10 },
		{ "cmdline_numa_nodes", cmdline_numa_nodes, 0, 10 },
		{ "cmdline_file_backend", cmdline_file_backend, 0, 10 },
	};

	return ft_run(ft_suite("ferry-qemu", cases, UT_ARRAY_SIZE(cases)));
}
