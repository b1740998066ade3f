// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-vm on /dev/kvm: boot on each backing, several vCPUs, pause/resume,
 * snapshot and restore across processes (registers, XSAVE, MSRs with the
 * TSC, LAPIC, clock), and a corrupted page reported by the guest. Exits 77
 * where /dev/kvm is missing.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmlink/vmlink.h"
#include "tests/check-vm-helpers.h"
#include "util/util.h"

#define HB_MS "100"
/* Small enough to fill and verify in seconds on a KVM that emulates guest
 * code (about 250 pages/s on kvm_pvm): --accel kvm forces KVM there too,
 * so that the KVM backend is exercised wherever /dev/kvm opens. */
#define WS "1M"

/* In the parent around each forked case: removed even after a failure. */
static char *tdir;

static void fixture_setup(void)
{
	tdir = vmt_tmpdir();
}

static void fixture_teardown(void)
{
	vmt_rmdir(tdir);
	tdir = NULL;
}

static void boot(const char *backing, const char *cpus)
{
	const char *argv[] = { NULL, "--accel", "kvm",
			       "-k", vmt_payload(), "-b", backing,
			       "-c", cpus, "--ws", WS, "--rate", "32",
			       "--heartbeat-ms", HB_MS, "--heartbeats", "4",
			       NULL };
	char *dir = tdir, *out;
	struct vmp p;

	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert_int_eq(vmt_wait(&p, 60000), 0);
	out = vmt_slurp(p.out);
	/* DONE waits for a whole pass: 4 heartbeats or more. */
	ck_assert_uint_ge(vmt_count(out, "HB "), 4);
	ck_assert_uint_eq(vmt_count(out, "DONE"), 1);
	ck_assert_int_ge(vmt_last_value(out, "DONE", "rpasses"), 1);
	ck_assert_int_eq(vmt_last_value(out, "DONE", "pages"), 256);
	ck_assert(vmt_hb_clean(out));
	free(out);
}

START_TEST(kvm_boot_shmem)
{
	boot("shmem", "1");
}
END_TEST

START_TEST(kvm_boot_anon_2cpus)
{
	boot("anon", "2");
}
END_TEST

START_TEST(kvm_boot_4cpus)
{
	boot("shmem", "4");
}
END_TEST

static bool wait_socket(const char *path, int ms)
{
	struct stat st;

	for (int t = 0; t < ms; t += 20) {
		if (!stat(path, &st) && S_ISSOCK(st.st_mode))
			return true;
		usleep(20 * 1000);
	}
	return false;
}

START_TEST(kvm_pause_save_restore)
{
	char *dir = tdir, sa[256], sb[256], file[256], *out;
	const char *a_argv[] = { NULL, "--accel", "kvm",
				 "-k", vmt_payload(), "-s", sa, "-c", "2",
				 "--ws", WS, "--rate", "32", "--heartbeat-ms",
				 HB_MS, "--heartbeats", "30", NULL };
	const char *snap[] = { NULL, "snapshot", "-s", sa, file, NULL };
	const char *b_argv[] = { NULL, "--accel", "kvm",
				 "-k", vmt_payload(), "--incoming", "-s",
				 sb, "-c", "2", "--ws", WS, NULL };
	const char *rs[] = { NULL, "restore", "-s", sb, file, NULL };
	struct vml_client c;
	struct vmp a, s, b, r;
	uint32_t st;
	uint64_t hb1, hb2;
	long long a_ms, b_ms;

	snprintf(sa, sizeof(sa), "%s/a.sock", dir);
	snprintf(sb, sizeof(sb), "%s/b.sock", dir);
	snprintf(file, sizeof(file), "%s/snap", dir);
	ck_assert_int_eq(vmt_spawn(&a, dir, "a", a_argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&a, 2, 30000), 2);
	ck_assert_int_eq(vml_client_open(&c, sa), 0);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb1), 0);
	usleep(300 * 1000);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb2), 0);
	ck_assert_uint_eq(hb1, hb2);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	vml_client_close(&c);
	ck_assert_uint_ge(vmt_wait_hb(&a, hb1 + 1, 30000), hb1 + 1);
	ck_assert_int_eq(vmt_spawn(&s, dir, "snap", snap), 0);
	ck_assert_int_eq(vmt_wait(&s, 30000), 0);
	ck_assert_int_eq(vmt_wait(&a, 10000), 0);
	ck_assert_int_eq(vmt_spawn(&b, dir, "b", b_argv), 0);
	ck_assert(wait_socket(sb, 10000));
	ck_assert_int_eq(vmt_spawn(&r, dir, "r", rs), 0);
	ck_assert_int_eq(vmt_wait(&r, 30000), 0);
	ck_assert_int_eq(vmt_wait(&b, 60000), 0);
	out = vmt_slurp(a.out);
	a_ms = vmt_last_value(out, "HB ", "t_ms");
	free(out);
	out = vmt_slurp(b.out);
	ck_assert_uint_eq(vmt_count(out, "DONE"), 1);
	ck_assert(vmt_hb_clean(out));
	/* The TSC was restored: guest time goes on from where A left it
	 * (an unrestored TSC would restart near 0 and wrap). */
	b_ms = strtoll(strstr(out, "t_ms=") + 5, NULL, 10);
	ck_assert_int_gt(b_ms, a_ms);
	ck_assert_int_lt(b_ms, a_ms + 30000);
	free(out);
}
END_TEST

START_TEST(kvm_corrupt_page)
{
	char *dir = tdir, sock[256], want[64], *out;
	const char *argv[] = { NULL, "--accel", "kvm",
			       "-k", vmt_payload(), "-s", sock, "--ws",
			       WS, "--heartbeat-ms", HB_MS, NULL };
	long long ws_gpa, page = 200;
	struct vml_client c;
	char *err;
	int st;
	struct vmp p;
	uint8_t *ram;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	/* Filled: a corruption before the fill would just be overwritten. */
	ck_assert(vmt_wait_filled(&p, 30000));
	out = vmt_slurp(p.out);
	ws_gpa = vmt_last_value(out, "GUEST", "ws_gpa");
	free(out);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ram = mmap(NULL, c.hello.regions[0].size, PROT_READ | PROT_WRITE,
		   MAP_SHARED, c.hello.regions[0].fd, 0);
	ck_assert(ram != MAP_FAILED);
	ram[ws_gpa + page * 4096 + 64] ^= 0x81;
	munmap(ram, c.hello.regions[0].size);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	vml_client_close(&c);
	st = vmt_wait(&p, 30000);
	out = vmt_slurp(p.out);
	err = vmt_slurp(p.err);
	if (st != 3)
		fprintf(stderr, "status %d\nstdout tail:\n%s\nstderr:\n%s\n", st,
		       out + (strlen(out) > 600 ? strlen(out) - 600 : 0), err);
	ck_assert_int_eq(st, 3);
	free(err);
	snprintf(want, sizeof(want), "ERR page=%lld ", page);
	ck_assert_uint_eq(vmt_count(out, want), 1);
	free(out);
}
END_TEST

/* KVM's dirty log over the VM link: vCPU writes show up, in the working
 * set, and nothing is written while paused. */
static uint64_t count_bits(const uint64_t *bm, size_t words, uint64_t lo,
			   uint64_t hi)
{
	uint64_t n = 0;

	for (uint64_t i = lo; i < hi && i / 64 < words; i++)
		n += (bm[i / 64] >> (i % 64)) & 1;
	return n;
}

START_TEST(kvm_dirty_log)
{
	char *dir = tdir, sock[256], *out;
	const char *argv[] = { NULL, "--accel", "kvm",
			       "-k", vmt_payload(), "-s", sock, "--ws",
			       WS, "--rate", "32", "--heartbeat-ms", HB_MS,
			       NULL };
	long long ws_gpa, pages;
	struct vml_client c;
	uint64_t *bm;
	size_t words;
	struct vmp p;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert(vmt_wait_filled(&p, 30000));
	out = vmt_slurp(p.out);
	ws_gpa = vmt_last_value(out, "GUEST", "ws_gpa");
	pages = vmt_last_value(out, "GUEST", "pages");
	free(out);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert(c.hello.flags & VML_F_DIRTY_LOG);
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_START, NULL,
					      NULL), 0);
	usleep(300 * 1000);
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_FETCH, &bm,
					      &words), 0);
	ck_assert_uint_eq(words, UT_DIV_ROUND_UP(c.hello.regions[0].size /
						 4096, 64));
	ck_assert_uint_gt(count_bits(bm, words, ws_gpa / 4096,
				     ws_gpa / 4096 + pages), 0);
	free(bm);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_FETCH, &bm,
					      &words), 0);
	free(bm);
	usleep(200 * 1000);
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_FETCH, &bm,
					      &words), 0);
	ck_assert_uint_eq(count_bits(bm, words, 0, words * 64), 0);
	free(bm);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_STOP, NULL,
					      NULL), 0);
	ck_assert_int_eq(vml_client_quit(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 10000), 0);
	out = vmt_slurp(p.out);
	ck_assert(vmt_hb_clean(out));
	free(out);
}
END_TEST

int main(void)
{
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "kvm_boot_shmem", kvm_boot_shmem },
		{ "kvm_boot_anon_2cpus", kvm_boot_anon_2cpus },
		{ "kvm_boot_4cpus", kvm_boot_4cpus },
		{ "kvm_pause_save_restore", kvm_pause_save_restore },
		{ "kvm_corrupt_page", kvm_corrupt_page },
		{ "kvm_dirty_log", kvm_dirty_log },
	};
	Suite *s = suite_create("vm-kvm");
	SRunner *sr;
	int failed, fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	/* A hidden /dev/kvm (say /dev/null bound over it) opens too. */
	if (fd >= 0 && ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		printf("SKIP: %zu cases: /dev/kvm not available (or not KVM)\n",
		       UT_ARRAY_SIZE(cases));
		return 77;
	}
	close(fd);
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(cases); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_set_timeout(tc, 120);
		tcase_add_unchecked_fixture(tc, fixture_setup,
					    fixture_teardown);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
