// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Tests for the VM link (migrate/vmlink), the guest workload and ferry-vm
 * without KVM: boot on each backing, pause/resume, snapshot and restore
 * across processes, page corruption caught by the guest, the payload under
 * QEMU TCG, and the error cases. KVM cases live in check-vm-kvm.c.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOG_PREFIX "check-vm"
#include "guestmem/guestmem.h"
#include "vmlink/vmlink.h"
#include "tests/check-vm-helpers.h"
#include "tests/testutil.h"
#include "tools/guest/workload.h"
#include "util/util.h"

static void quiet(enum ut_log_level lvl, const char *msg, void *arg)
{
}

/*
 * Unchecked fixtures run in the parent process around each forked case,
 * so the temporary directory and the 2 MiB hugepage pool are restored even
 * when a case fails half-way (its ferry-vm children die with it through
 * PR_SET_PDEATHSIG).
 */
#define NR_HUGE_2M "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
static char *tdir;
static long huge_old = -1;

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void fixture_setup(void)
{
	tdir = vmt_tmpdir();
}

static void fixture_teardown(void)
{
	vmt_rmdir(tdir);
	tdir = NULL;
}

/* For cases that change the pool: the pool is system-wide and other test
 * programs run in parallel, so hold the tests' pool lock (testutil.h)
 * from before reading the pool until after restoring it. */
static int huge_lock = -1;

static void huge_setup(void)
{
	huge_lock = ft_hugetlb_lock();
	huge_old = read_long(NR_HUGE_2M);
}

static void huge_teardown(void)
{
	FILE *f;

	if (huge_old >= 0 && read_long(NR_HUGE_2M) != huge_old) {
		f = fopen(NR_HUGE_2M, "w");
		if (f) {
			fprintf(f, "%ld\n", huge_old);
			fclose(f);
		}
	}
	if (huge_lock >= 0)
		close(huge_lock);
	huge_lock = -1;
}

/* ---- VM link encoding ---- */

START_TEST(vmlink_hdr_roundtrip)
{
	struct vml_hdr h = { .type = VML_MSG_SAVE_STATE | VML_MSG_REPLY,
			     .len = 1234, .status = -EBUSY }, d;
	uint8_t b[VML_HDR_SIZE];

	vml_hdr_encode(b, &h);
	ck_assert_int_eq(b[0], 'F');
	ck_assert_int_eq(vml_hdr_decode(&d, b, sizeof(b)), 0);
	ck_assert_int_eq(d.type, h.type);
	ck_assert_int_eq(d.len, 1234);
	ck_assert_int_eq(d.status, -EBUSY);
	ck_assert_int_eq(vml_hdr_decode(&d, b, 15), -EINVAL);
	b[0] ^= 1;
	ck_assert_int_eq(vml_hdr_decode(&d, b, sizeof(b)), -EPROTO);
	b[0] ^= 1;
	h.len = VML_MAX_PAYLOAD + 1;
	vml_hdr_encode(b, &h);
	ck_assert_int_eq(vml_hdr_decode(&d, b, sizeof(b)), -EMSGSIZE);
}
END_TEST

static void sample_hello(struct vml_hello *h, int uffd, int memfd)
{
	*h = (struct vml_hello){ .version = VML_VERSION, .pid = 42,
				 .flags = VML_F_INCOMING, .nr_vcpus = 2,
				 .nr_regions = 2, .uffd = uffd };
	h->regions[0] = (struct vml_region){ .gpa = 0, .size = 1 << 20,
		.host_addr = 0x7f0000000000, .page_size = 4096,
		.backing = GM_BACKING_SHMEM, .fd = memfd };
	h->regions[1] = (struct vml_region){ .gpa = 1 << 30, .size = 2 << 20,
		.host_addr = 0x7f0000200000, .page_size = 2 << 20,
		.backing = GM_BACKING_HUGETLB_2M, .fd = -1 };
}

START_TEST(vmlink_hello_roundtrip)
{
	uint8_t buf[VML_HELLO_FIXED + VML_MAX_REGIONS * VML_REGION_SIZE];
	int fds[VML_MAX_FDS], mine[VML_MAX_FDS];
	struct vml_hello h, d;
	unsigned int nfds;
	ssize_t n;

	sample_hello(&h, 100, 101);
	n = vml_hello_encode(&h, buf, sizeof(buf), fds, &nfds);
	ck_assert_int_eq(n, VML_HELLO_FIXED + 2 * VML_REGION_SIZE);
	ck_assert_uint_eq(nfds, 2);
	ck_assert_int_eq(fds[0], 100);
	ck_assert_int_eq(fds[1], 101);
	/* Decode with real fds so that release closes something real. */
	mine[0] = dup(0);
	mine[1] = dup(0);
	ck_assert_int_eq(vml_hello_decode(&d, buf, n, mine, 2), 0);
	ck_assert_int_eq(mine[0], -1);
	ck_assert_int_eq(d.pid, 42);
	ck_assert_int_eq(d.nr_regions, 2);
	ck_assert(d.uffd >= 0 && d.regions[0].fd >= 0);
	ck_assert_int_eq(d.regions[1].fd, -1);
	ck_assert_uint_eq(d.regions[1].gpa, 1 << 30);
	ck_assert_uint_eq(d.regions[1].page_size, 2 << 20);
	close(d.uffd);
	close(d.regions[0].fd);
	/* An fd more than the table refers to. */
	for (int i = 0; i < 3; i++)
		mine[i] = dup(0);
	ck_assert_int_eq(vml_hello_decode(&d, buf, n, mine, 3), -EPROTO);
	ck_assert_str_eq(vml_strerror(-EPROTO),
			 "3 fds passed, the table refers to 2");
	ck_assert_int_eq(d.uffd, -1);
	close(mine[2]);
	/* Every truncation and a bad fd index are rejected. */
	for (ssize_t len = 0; len < n; len++)
		ck_assert_int_ne(vml_hello_decode(&d, buf, len, mine, 0), 0);
	ck_assert_int_eq(vml_hello_decode(&d, buf, n, mine, 1), -EPROTO);
	buf[VML_HELLO_FIXED + 8] = 1;	/* region 0 size not page-aligned */
	ck_assert_int_ne(vml_hello_decode(&d, buf, n, mine, 0), 0);
}
END_TEST

/* What a broken or hostile VMM might say: regions that share guest
 * addresses, a page size that is none, sizes that wrap. All refused, and
 * every fd it passed is closed, none handed on. */
START_TEST(vmlink_hello_hostile)
{
	uint8_t buf[VML_HELLO_FIXED + VML_MAX_REGIONS * VML_REGION_SIZE];
	struct {
		const char *what;
		struct vml_region r1;
	} bad[] = {
		{ "overlap", { .gpa = 1 << 19, .size = 1 << 20,
			       .page_size = 4096, .fd = -1 } },
		{ "same start", { .gpa = 0, .size = 4096, .page_size = 4096,
				  .fd = -1 } },
		{ "page size 8K", { .gpa = 1 << 30, .size = 1 << 20,
				    .page_size = 8192, .fd = -1 } },
		{ "page size 0", { .gpa = 1 << 30, .size = 1 << 20,
				   .fd = -1 } },
		{ "gpa wraps", { .gpa = UINT64_MAX - 4095, .size = 8192,
				 .page_size = 4096, .fd = -1 } },
		{ "unaligned gpa", { .gpa = (1 << 30) + 2048, .size = 4096,
				     .page_size = 4096, .fd = -1 } },
		{ "2M pages on shmem", { .gpa = 1 << 30, .size = 2 << 20,
					 .page_size = 2 << 20, .fd = -1 } },
		{ "unknown backing", { .gpa = 1 << 30, .size = 4096,
				       .page_size = 4096, .backing = 77,
				       .fd = -1 } },
		{ "unaligned host address", { .gpa = 1 << 30, .size = 4096,
					      .host_addr = 0x7f0000000800,
					      .page_size = 4096, .fd = -1 } },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(bad); i++) {
		int fds[VML_MAX_FDS], mine[VML_MAX_FDS];
		struct vml_hello h, d;
		unsigned int nfds;
		ssize_t n;

		sample_hello(&h, 100, 101);
		h.regions[1] = bad[i].r1;
		n = vml_hello_encode(&h, buf, sizeof(buf), fds, &nfds);
		ck_assert_int_gt(n, 0);
		mine[0] = dup(0);
		mine[1] = dup(0);
		ck_assert_msg(vml_hello_decode(&d, buf, n, mine, 2) == -EINVAL,
			      "%s accepted", bad[i].what);
		/* The taken fds were closed by the decoder. */
		ck_assert_int_eq(d.uffd, -1);
		ck_assert_int_eq(d.regions[0].fd, -1);
		ck_assert_ptr_nonnull(strstr(vml_strerror(-EINVAL), "region"));
	}
}
END_TEST

START_TEST(vmlink_fds_over_socket)
{
	struct vml_hello h, d;
	struct vml_msg m;
	int sv[2], memfd;
	char c = 0;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memfd = memfd_create("t", 0);
	ck_assert_int_ge(memfd, 0);
	ck_assert_int_eq(pwrite(memfd, "x", 1, 0), 1);
	sample_hello(&h, memfd, memfd);
	ck_assert_int_eq(vml_server_hello(sv[0], &h), 0);
	ck_assert_int_eq(vml_recv(sv[1], &m), 0);
	ck_assert_int_eq(m.hdr.type, VML_MSG_HELLO);
	ck_assert_uint_eq(m.nfds, 2);
	ck_assert_int_eq(vml_hello_decode(&d, m.payload, m.hdr.len, m.fds,
					  m.nfds), 0);
	ck_assert_int_eq(pread(d.regions[0].fd, &c, 1, 0), 1);
	ck_assert_int_eq(c, 'x');
	close(d.uffd);
	close(d.regions[0].fd);
	vml_msg_fini(&m);
	/* A reply with a payload. */
	ck_assert_int_eq(vml_server_reply(sv[0], VML_MSG_SAVE_STATE, 0, "abc",
					  3), 0);
	ck_assert_int_eq(vml_recv(sv[1], &m), 0);
	ck_assert_int_eq(m.hdr.type, VML_MSG_SAVE_STATE | VML_MSG_REPLY);
	ck_assert_int_eq(m.hdr.len, 3);
	ck_assert_int_eq(memcmp(m.payload, "abc", 3), 0);
	vml_msg_fini(&m);
	close(sv[0]);
	ck_assert_int_eq(vml_recv(sv[1], &m), -ECONNRESET);
	vml_msg_fini(&m);
	close(sv[1]);
	close(memfd);
}
END_TEST

/* Random bytes into the decoders: no crash, no fd leaked or double-taken. */
START_TEST(vmlink_decode_fuzz)
{
	uint8_t buf[VML_HELLO_FIXED + VML_MAX_REGIONS * VML_REGION_SIZE];
	struct vml_hello h;
	struct vml_hdr hd;
	int fds[VML_MAX_FDS];
	uint64_t x = 88172645463325252ull;

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(x % sizeof(buf));
		unsigned int nfds = (unsigned int)(x >> 40) % (VML_MAX_FDS + 1);

		for (size_t i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		/* Plausible prefixes now and then, so decoding goes deep. */
		if (iter & 1) {
			buf[0] = VML_VERSION;
			buf[1] = buf[2] = buf[3] = 0;
			buf[16] = (uint8_t)(x % 3);
			buf[17] = buf[18] = buf[19] = 0;
			len = VML_HELLO_FIXED + buf[16] * VML_REGION_SIZE;
		}
		for (unsigned int i = 0; i < VML_MAX_FDS; i++)
			fds[i] = i < nfds ? 1000 + (int)i : -1;
		if (!vml_hello_decode(&h, buf, len, fds, nfds)) {
			/* Every fd handed out came from the list once. */
			ck_assert(h.uffd == -1 || (h.uffd >= 1000 &&
						   h.uffd < 1000 + (int)nfds));
			for (unsigned int r = 0; r < h.nr_regions; r++)
				ck_assert(h.regions[r].size > 0);
		}
		vml_hdr_decode(&hd, buf, len);
	}
}
END_TEST

/* ADVISE as encoded is decoded back; every truncation, unknown advice,
 * misplaced node, reserved word and range outside the region is refused. */
START_TEST(vmlink_advise_roundtrip)
{
	static struct vml_range got[VML_MAX_ADVISE];
	struct vml_range rg[2] = { { 0, 2 << 20 }, { 1 << 20, 4096 } };
	struct vml_advise a = { .region = 1, .advice = VML_ADVISE_BIND,
				.node = 3, .nr = 2, .ranges = rg };
	struct vml_advise d = { .ranges = got };
	uint8_t buf[VML_ADVISE_FIXED + 2 * VML_ADVISE_ENTRY];
	struct vml_hello h;
	ssize_t n;

	sample_hello(&h, -1, -1);
	n = vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(n, sizeof(buf));
	ck_assert_int_eq(vml_advise_encode(&a, buf, sizeof(buf) - 1), -EINVAL);
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), 0);
	ck_assert_uint_eq(d.region, 1);
	ck_assert_uint_eq(d.advice, VML_ADVISE_BIND);
	ck_assert_uint_eq(d.node, 3);
	ck_assert_uint_eq(d.nr, 2);
	ck_assert_uint_eq(got[1].off, 1 << 20);
	ck_assert_uint_eq(got[1].len, 4096);
	for (ssize_t len = 0; len < n; len++)
		if ((len - VML_ADVISE_FIXED) % VML_ADVISE_ENTRY)
			ck_assert_int_ne(vml_advise_decode(&d, buf, len, &h), 0);
	/* A node for advice that takes none. */
	a.advice = VML_ADVISE_MERGEABLE;
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	a.node = 0;
	a.advice = 9;
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	ck_assert_str_eq(vml_strerror(-EINVAL), "unknown advice 9");
	a.advice = VML_ADVISE_DONTNEED;
	a.region = 2;		/* the VMM has two */
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	a.region = 0;		/* 1 MiB: the first range is 2 MiB */
	rg[1] = (struct vml_range){ 8192, 4096 };
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	rg[0] = (struct vml_range){ 2048, 4096 };	/* unaligned */
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	rg[0] = (struct vml_range){ 4096, 0 };		/* empty */
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	rg[0] = (struct vml_range){ 4096, UINT64_MAX - 4095 }; /* wraps */
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
	rg[0] = (struct vml_range){ 4096, 4096 };
	vml_advise_encode(&a, buf, sizeof(buf));
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), 0);
	buf[12] = 1;					/* reserved */
	ck_assert_int_eq(vml_advise_decode(&d, buf, n, &h), -EINVAL);
}
END_TEST

START_TEST(vmlink_listen_in_use)
{
	char *dir = tdir, path[256];
	int a, b;

	ut_log_set_sink(quiet, NULL);
	snprintf(path, sizeof(path), "%s/s", dir);
	ck_assert_int_eq(vml_server_listen(path, &a), 0);
	ck_assert_int_eq(vml_server_listen(path, &b), -EADDRINUSE);
	close(a);	/* stale now: replaced */
	ck_assert_int_eq(vml_server_listen(path, &b), 0);
	close(b);
	unlink(path);
	close(open(path, O_CREAT | O_WRONLY, 0644));
	ck_assert_int_eq(vml_server_listen(path, &b), -EEXIST);
	ut_log_set_sink(NULL, NULL);
}
END_TEST

/* ---- the workload, hosted ---- */

static uint64_t fake_clock;

static uint64_t fake_now(void *arg)
{
	return fake_clock += 50000;	/* 50 us per call at 1 GHz */
}

static void no_write(void *arg, const char *s, size_t len)
{
}

START_TEST(workload_params)
{
	struct wl_params p;
	const char *bad = NULL;

	wl_params_default(&p);
	ck_assert_int_eq(wl_params_parse(&p, "/boot/x ws=8M rate=3 zero=5 "
					 "dup=7 pattern=sequential seed=9 "
					 "hb_ms=50 hbs=4 cpus=2", &bad), 0);
	ck_assert_uint_eq(p.ws_bytes, 8 << 20);
	ck_assert_uint_eq(p.rate_mibs, 3);
	ck_assert_uint_eq(p.pattern, WL_PATTERN_SEQUENTIAL);
	ck_assert_uint_eq(p.cpus, 2);
	ck_assert_int_ne(wl_params_parse(&p, "ws=8X", &bad), 0);
	ck_assert_str_eq(bad, "ws=8X");
	wl_params_default(&p);
	ck_assert_int_ne(wl_params_parse(&p, "zero=60 dup=50", &bad), 0);
	wl_params_default(&p);
	ck_assert_int_ne(wl_params_parse(&p, "cpus=5", &bad), 0);
	wl_params_default(&p);
	ck_assert_int_ne(wl_params_parse(&p, "ws=4097", &bad), 0);
}
END_TEST

START_TEST(workload_detects_corruption)
{
	struct wl_params p;
	struct wl_env env = { .now = fake_now, .write = no_write };
	struct wl_hdr *h;
	uint8_t *saved;
	uint64_t stamped = UINT64_MAX;

	wl_params_default(&p);
	wl_params_parse(&p, "ws=1M rate=1000 hb_ms=1", NULL);
	p.tsc_khz = 1000000;
	env.mem = calloc(1, wl_ram_needed(&p));
	ck_assert_ptr_nonnull(env.mem);
	ck_assert_int_eq(wl_init(&env, &p), 0);
	h = wl_hdr_get(&env);
	ck_assert_ptr_nonnull(h);
	for (int i = 0; i < 2000; i++)
		ck_assert_int_eq(wl_step(&env, 0), WL_RUNNING);
	for (uint64_t i = 0; i < h->npages; i++)
		ck_assert_int_eq(wl_verify_page(&env, i), 0);
	/* A stamped page with a generation > 0, saved, then rewritten. */
	for (uint64_t i = 0; i < h->npages && stamped == UINT64_MAX; i++) {
		uint64_t *w = (uint64_t *)(env.mem + h->pages_gpa + i * 4096);

		if (w[0] == WL_STAMP_MAGIC)
			stamped = i;
	}
	ck_assert(stamped != UINT64_MAX);
	saved = malloc(4096);
	memcpy(saved, env.mem + h->pages_gpa + stamped * 4096, 4096);
	env.mem[h->pages_gpa + stamped * 4096 + 100] ^= 0xff;
	ck_assert_int_ne(wl_verify_page(&env, stamped), 0);
	memcpy(env.mem + h->pages_gpa + stamped * 4096, saved, 4096);
	ck_assert_int_eq(wl_verify_page(&env, stamped), 0);
	/* A lost write: the page keeps an older generation. */
	((uint32_t *)(env.mem + h->gens_gpa))[stamped]++;
	ck_assert_int_ne(wl_verify_page(&env, stamped), 0);
	free(saved);
	free(env.mem);
}
END_TEST

static uint32_t fake_token;

static uint32_t fake_resume_token(void *arg)
{
	return fake_token;
}

static char done_line[256];

static void keep_done(void *arg, const char *s, size_t len)
{
	if (len > 5 && !strncmp(s, "DONE ", 5) && len < sizeof(done_line)) {
		memcpy(done_line, s, len);
		done_line[len] = 0;
	}
}

/* Steps CPU 0 until the workload stops, at most @max steps. */
static enum wl_status step_until_stop(struct wl_env *env, int max)
{
	enum wl_status st = WL_RUNNING;

	for (int i = 0; i < max && st == WL_RUNNING; i++)
		st = wl_step(env, 0);
	return st;
}

/* A resume (a new token) restarts the count of whole passes: the guest is
 * not DONE until it has checked every page again since the resume, however
 * many heartbeats it printed before. */
START_TEST(workload_passes_since_resume)
{
	struct wl_params p;
	struct wl_env env = { .now = fake_now, .write = keep_done,
			      .resume_token = fake_resume_token };
	struct wl_hdr *h;

	wl_params_default(&p);
	/* 256 pages; 16 verified per step, 50 us per step, a heartbeat
	 * every 2 ms: a whole pass takes 16 steps, a heartbeat 40. */
	wl_params_parse(&p, "ws=1M rate=0 hb_ms=2 hbs=3", NULL);
	p.tsc_khz = 1000000;
	env.mem = calloc(1, wl_ram_needed(&p));
	ck_assert_ptr_nonnull(env.mem);
	fake_token = 1;
	ck_assert_int_eq(wl_init(&env, &p), 0);
	h = wl_hdr_get(&env);
	/* Fill, then two heartbeats: passes done, not yet DONE (hbs=3). */
	while (h->hb_count < 2)
		ck_assert_int_eq(wl_step(&env, 0), WL_RUNNING);
	ck_assert_uint_gt(h->cpu[0].rpasses, 0);
	/* Resumed elsewhere: the pass in flight and all before are void. */
	fake_token = 2;
	while (h->hb_count < 3)
		ck_assert_int_eq(wl_step(&env, 0), WL_RUNNING);
	/* The third heartbeat saw the token: no pass since, so no DONE. */
	ck_assert_uint_eq(h->epoch, 2);
	ck_assert_uint_eq(h->done, 0);
	ck_assert_int_eq(step_until_stop(&env, 1000), WL_DONE);
	ck_assert_uint_eq(h->hb_count, 4);
	ck_assert_ptr_nonnull(strstr(done_line, " pages=256 errors=0"));
	ck_assert_int_ge(strtol(strstr(done_line, "rpasses=") + 8, NULL, 10),
			 1);
	free(env.mem);
}
END_TEST

/* ---- ferry-vm without KVM ---- */

#define HB_MS "100"

static void boot_backing(const char *backing)
{
	const char *argv[] = { NULL, "--no-kvm", "-b", backing, "--ws", "8M",
			       "--rate", "32", "--heartbeat-ms", HB_MS,
			       "--heartbeats", "4", "-c", "2", NULL };
	char *dir = tdir, *out;
	struct vmp p;

	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert_int_eq(vmt_wait(&p, 30000), 0);
	out = vmt_slurp(p.out);
	ck_assert_uint_eq(vmt_count(out, "HB "), 4);
	ck_assert_uint_eq(vmt_count(out, "FILLED pages=2048 "), 1);
	ck_assert_uint_eq(vmt_count(out, "DONE"), 1);
	ck_assert(vmt_hb_clean(out));
	ck_assert_int_gt(vmt_last_value(out, "HB ", "verified"), 2048);
	ck_assert_int_gt(vmt_last_value(out, "HB ", "dirtied"), 0);
	free(out);
}

START_TEST(boot_nokvm_shmem)
{
	boot_backing("shmem");
}
END_TEST

START_TEST(boot_nokvm_anon)
{
	boot_backing("anon");
}
END_TEST

START_TEST(boot_nokvm_hugetlb_2m)
{
	unsigned long want = (unsigned long)(huge_old > 0 ? huge_old : 0) + 16;
	ssize_t got = gm_hugetlb_set(2 << 20, want, NULL);

	/* The fixture gives the pages back. */
	/* Root reserves them on any machine the project runs on: a case
	 * that cannot run fails rather than passes unrun. */
	ck_assert_msg(got >= (ssize_t)want - 6,
		      "hugetlb-2M: cannot reserve %lu huge pages (got %zd)",
		      want, got);
	boot_backing("hugetlb-2M");
}
END_TEST

/* The VMM's VmFlags for the mapping holding @addr (from smaps), "" if
 * none. */
static void vm_flags_at(pid_t pid, uint64_t addr, char *out, size_t cap)
{
	char path[64], line[512];
	bool in = false;
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;

		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2)
			in = addr >= lo && addr < hi;
		else if (in && !strncmp(line, "VmFlags:", 8))
			snprintf(out, cap, "%s", line);
	}
	fclose(f);
}

/* ferry-vm on anonymous RAM: a region without an fd, and ADVISE applied
 * to its own memory (DONTNEED drops a page, MERGEABLE marks the range,
 * BIND to a node it has works and to one it lacks fails), refused
 * outside its RAM. */
START_TEST(advise_anon)
{
	char *dir = tdir, sock[256], flags[512];
	const char *argv[] = { NULL, "--no-kvm", "-b", "anon", "-s", sock,
			       "--ws", "4M", "--heartbeat-ms", HB_MS, NULL };
	struct vml_range rg = { 1 << 20, 4096 };
	struct vml_advise a = { .advice = VML_ADVISE_DONTNEED, .nr = 1,
				.ranges = &rg };
	uint8_t page[4096], zero[4096] = { 0 };
	struct vml_client c;
	uint64_t base;
	struct vmp p;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, 1, 20000), 1);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert(c.hello.flags & VML_F_ADVISE);
	ck_assert_int_eq(c.hello.regions[0].fd, -1);
	ck_assert_uint_eq(c.hello.regions[0].backing, GM_BACKING_ANON);
	base = c.hello.regions[0].host_addr;
	ck_assert_int_eq(vml_client_pause(&c), 0);
	/* A page that holds data; dropped, it reads zero. */
	rg.off = c.hello.regions[0].size;
	do {
		ck_assert_uint_gt(rg.off, 0);
		rg.off -= 4096;
		ck_assert_int_eq(process_vm_readv(p.pid, &(struct iovec){
			page, 4096 }, 1, &(struct iovec){
			(void *)(base + rg.off), 4096 }, 1, 0), 4096);
	} while (!memcmp(page, zero, 4096));
	ck_assert_int_eq(vml_client_advise(&c, &a), 0);
	ck_assert_int_eq(process_vm_readv(p.pid, &(struct iovec){ page, 4096 },
			 1, &(struct iovec){ (void *)(base + rg.off), 4096 }, 1,
			 0), 4096);
	ck_assert(!memcmp(page, zero, 4096));
	a.advice = VML_ADVISE_MERGEABLE;
	rg = (struct vml_range){ 1 << 20, 1 << 20 };
	ck_assert_int_eq(vml_client_advise(&c, &a), 0);
	vm_flags_at(p.pid, base + rg.off, flags, sizeof(flags));
	ck_assert_msg(strstr(flags, " mg"), "not mergeable: %s", flags);
	a.advice = VML_ADVISE_BIND;
	ck_assert_int_eq(vml_client_advise(&c, &a), 0);
	a.node = VML_MAX_NODE;	/* no host here has 64 nodes */
	ck_assert_int_lt(vml_client_advise(&c, &a), 0);
	a.node = 0;
	rg = (struct vml_range){ c.hello.regions[0].size, 4096 };
	ck_assert_int_eq(vml_client_advise(&c, &a), -EINVAL);
	ck_assert_int_eq(vml_client_quit(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 10000), 0);
}
END_TEST

START_TEST(pause_resume)
{
	char *dir = tdir, sock[256];
	const char *argv[] = { NULL, "--no-kvm", "-s", sock, "--ws", "4M",
			       "--heartbeat-ms", HB_MS, NULL };
	struct vml_client c;
	uint32_t st;
	uint64_t hb1, hb2;
	struct vmp p;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, 2, 20000), 2);
	/* Each agent gets its own uffd, ready for its own UFFDIO_API. */
	for (int i = 0; i < 2; i++) {
		struct gm_uffd u;

		ck_assert_int_eq(vml_client_open(&c, sock), 0);
		ck_assert_int_eq(gm_uffd_init(&u, vml_client_take_uffd(&c), 0,
					      true), 0);
		gm_uffd_close(&u);
		vml_client_close(&c);
	}
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_uint_eq(c.hello.pid, (uint32_t)p.pid);
	ck_assert_uint_eq(c.hello.nr_regions, 1);
	ck_assert(c.hello.regions[0].fd >= 0);
	ck_assert(c.hello.flags & VML_F_NOKVM);
	/* No KVM, no dirty log: agents track with uffd-wp instead. */
	ck_assert(!(c.hello.flags & VML_F_DIRTY_LOG));
	ck_assert_int_eq(vml_client_dirty_log(&c, 0, VML_DIRTY_START, NULL,
					      NULL), -EOPNOTSUPP);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb1), 0);
	ck_assert_uint_eq(st, VML_STATE_PAUSED);
	usleep(350 * 1000);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb2), 0);
	ck_assert_uint_eq(hb1, hb2);	/* no progress while paused */
	ck_assert_int_eq(vml_client_resume(&c), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, hb1 + 2, 20000), hb1 + 2);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb2), 0);
	ck_assert_uint_eq(st, VML_STATE_RUNNING);
	ck_assert_int_eq(vml_client_quit(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 10000), 0);
	{
		char *out = vmt_slurp(p.out);

		ck_assert(vmt_hb_clean(out));
		free(out);
	}
}
END_TEST

/* Polls STATUS on a fresh connection until the run state is @want. */
static bool wait_state(const char *sock, uint32_t want, int ms)
{
	for (int t = 0; t < ms; t += 50) {
		struct vml_client c;
		uint32_t st = 0;
		uint64_t hb;

		if (!vml_client_open(&c, sock)) {
			int ret = vml_client_status(&c, &st, &hb);

			vml_client_close(&c);
			if (!ret && st == want)
				return true;
		}
		usleep(50 * 1000);
	}
	return false;
}

/* An agent that disappears while the VM is paused: before a COMMIT the
 * VMM resumes the guest by itself (the migration failed before the
 * switchover); after one it keeps the VM paused (the guest may run at the
 * destination) until an agent resumes it. */
START_TEST(agent_gone_commit)
{
	char *dir = tdir, sock[256], *err;
	const char *argv[] = { NULL, "--no-kvm", "-s", sock, "--ws", "4M",
			       "--heartbeat-ms", HB_MS, NULL };
	struct vml_client c;
	uint32_t st;
	uint64_t hb1, hb2;
	struct vmp p;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, 1, 20000), 1);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_commit(&c), -EBUSY);	/* running */
	ck_assert_int_eq(vml_client_pause(&c), 0);
	vml_client_close(&c);			/* gone, uncommitted */
	ck_assert(wait_state(sock, VML_STATE_RUNNING, 10000));
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb1), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, hb1 + 1, 20000), hb1 + 1);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ck_assert_int_eq(vml_client_commit(&c), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb1), 0);
	vml_client_close(&c);			/* gone, committed */
	usleep(500 * 1000);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb2), 0);
	ck_assert_uint_eq(st, VML_STATE_PAUSED);
	ck_assert_uint_eq(hb1, hb2);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, hb1 + 1, 20000), hb1 + 1);
	ck_assert_int_eq(vml_client_quit(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 10000), 0);
	err = vmt_slurp(p.err);
	ck_assert_ptr_nonnull(strstr(err, "the guest runs here again"));
	ck_assert_ptr_nonnull(strstr(err, "the VM stays paused here"));
	free(err);
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

/* Snapshots a running no-KVM guest, restores it in a fresh process
 * (through --incoming + `ferry-vm restore`, or --restore), and checks
 * that it continues and finishes its heartbeats with no error. The
 * source must not finish before the snapshot: 30 heartbeats leave a
 * loaded machine seconds of margin. */
static void save_restore(const char *backing, bool in_process)
{
	char *dir = tdir, sa[256], sb[256], file[256];
	const char *a_argv[] = { NULL, "--no-kvm", "-b", backing, "-s", sa,
				 "--ws", "8M", "--rate", "32", "-c", "2",
				 "--heartbeat-ms", HB_MS, "--heartbeats", "30",
				 NULL };
	const char *snap_argv[] = { NULL, "snapshot", "-s", sa, file, NULL };
	const char *b_argv[] = { NULL, "--no-kvm", "-b", backing, "--ws", "8M",
				 "-c", "2", "--incoming", "-s", sb, NULL };
	const char *r_argv[] = { NULL, "--no-kvm", "-b", backing, "-c", "2",
				 "--restore", file, NULL };
	const char *rs_argv[] = { NULL, "restore", "-s", sb, file, NULL };
	struct vmp a, s, b, r;
	long long first_n, a_ms;
	char *out;

	snprintf(sa, sizeof(sa), "%s/a.sock", dir);
	snprintf(sb, sizeof(sb), "%s/b.sock", dir);
	snprintf(file, sizeof(file), "%s/snap", dir);
	ck_assert_int_eq(vmt_spawn(&a, dir, "a", a_argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&a, 3, 20000), 3);
	ck_assert_int_eq(vmt_spawn(&s, dir, "snap", snap_argv), 0);
	ck_assert_int_eq(vmt_wait(&s, 30000), 0);
	ck_assert_int_eq(vmt_wait(&a, 10000), 0);	/* quit by snapshot */
	if (in_process) {
		ck_assert_int_eq(vmt_spawn(&b, dir, "b", r_argv), 0);
	} else {
		ck_assert_int_eq(vmt_spawn(&b, dir, "b", b_argv), 0);
		ck_assert(wait_socket(sb, 10000));
		ck_assert_int_eq(vmt_spawn(&r, dir, "restore", rs_argv), 0);
		ck_assert_int_eq(vmt_wait(&r, 30000), 0);
	}
	ck_assert_int_eq(vmt_wait(&b, 30000), 0);
	out = vmt_slurp(a.out);
	a_ms = vmt_last_value(out, "HB ", "t_ms");
	free(out);
	out = vmt_slurp(b.out);
	ck_assert_uint_eq(vmt_count(out, "GUEST"), 0);	/* not rebooted */
	/* The guest clock went on from where A left it. */
	ck_assert_int_gt(strtoll(strstr(out, "t_ms=") + 5, NULL, 10), a_ms);
	ck_assert_int_lt(strtoll(strstr(out, "t_ms=") + 5, NULL, 10),
			 a_ms + 30000);
	ck_assert_uint_eq(vmt_count(out, "DONE"), 1);
	ck_assert(vmt_hb_clean(out));
	first_n = strtoll(strstr(out, "HB n=") + 5, NULL, 10);
	ck_assert_int_gt(first_n, 3);	/* continued where A stopped */
	ck_assert_int_eq(vmt_last_value(out, "HB ", "n"), 30);
	free(out);
}

START_TEST(save_restore_shmem)
{
	save_restore("shmem", false);
}
END_TEST

START_TEST(save_restore_anon_uffd)
{
	save_restore("anon", false);
}
END_TEST

START_TEST(save_restore_in_process)
{
	save_restore("shmem", true);
}
END_TEST

START_TEST(corrupt_page_is_reported)
{
	char *dir = tdir, sock[256], want[64], *out;
	const char *argv[] = { NULL, "--no-kvm", "-s", sock, "--ws", "4M",
			       "--rate", "8", "--heartbeat-ms", HB_MS, NULL };
	long long ws_gpa, pages, page;
	struct vml_client c;
	struct vmp p;
	uint8_t *ram;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	/* Filled: a corruption before the fill would just be overwritten. */
	ck_assert(vmt_wait_filled(&p, 20000));
	out = vmt_slurp(p.out);
	ws_gpa = vmt_last_value(out, "GUEST", "ws_gpa");
	pages = vmt_last_value(out, "GUEST", "pages");
	free(out);
	ck_assert_int_gt(ws_gpa, 0);
	ck_assert_int_eq(pages, 1024);
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ram = mmap(NULL, c.hello.regions[0].size, PROT_READ | PROT_WRITE,
		   MAP_SHARED, c.hello.regions[0].fd, 0);
	ck_assert(ram != MAP_FAILED);
	page = pages / 2 + 3;
	ram[ws_gpa + page * 4096 + 100] ^= 0x5a;
	munmap(ram, c.hello.regions[0].size);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 20000), 3);
	out = vmt_slurp(p.out);
	snprintf(want, sizeof(want), "ERR page=%lld ", page);
	ck_assert_uint_eq(vmt_count(out, "ERR "), 1);
	ck_assert_uint_eq(vmt_count(out, want), 1);
	free(out);
}
END_TEST

/* A stall (here a pause) shows in the next heartbeat's maxgap_us, since
 * the guest clock runs on; and --watchdog turns a missing heartbeat into
 * exit status 5. */
START_TEST(stall_is_visible)
{
	char *dir = tdir, sock[256], con[256], *out;
	const char *argv[] = { NULL, "--no-kvm", "-s", sock, "--ws", "4M",
			       "--heartbeat-ms", HB_MS, "--console", con,
			       NULL };
	const char *wd[] = { NULL, "--no-kvm", "--ws", "4M", "--heartbeat-ms",
			     "5000", "--watchdog", "300", NULL };
	struct vml_client c;
	uint32_t st;
	uint64_t hb;
	struct vmp p;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	snprintf(con, sizeof(con), "%s/console.log", dir);
	ck_assert_int_eq(vmt_spawn(&p, dir, "vm", argv), 0);
	strcpy(p.out, con);	/* heartbeats go to the console file */
	ck_assert(vmt_wait_filled(&p, 20000));
	ck_assert_int_eq(vml_client_open(&c, sock), 0);
	ck_assert_int_eq(vml_client_pause(&c), 0);
	ck_assert_int_eq(vml_client_status(&c, &st, &hb), 0);
	usleep(600 * 1000);
	ck_assert_int_eq(vml_client_resume(&c), 0);
	ck_assert_uint_ge(vmt_wait_hb(&p, hb + 1, 20000), hb + 1);
	out = vmt_slurp(con);
	ck_assert_int_ge(vmt_last_value(out, "HB ", "maxgap_us"), 500000);
	free(out);
	ck_assert_int_eq(vml_client_quit(&c), 0);
	vml_client_close(&c);
	ck_assert_int_eq(vmt_wait(&p, 10000), 0);
	snprintf(con, sizeof(con), "%s/vm.out", dir);
	out = vmt_slurp(con);	/* --console took the guest's lines */
	ck_assert_uint_eq(vmt_count(out, "HB "), 0);
	free(out);

	ck_assert_int_eq(vmt_spawn(&p, dir, "wd", wd), 0);
	ck_assert_int_eq(vmt_wait(&p, 20000), 5);
	out = vmt_slurp(p.err);
	ck_assert_ptr_nonnull(strstr(out, "no guest heartbeat"));
	free(out);
}
END_TEST

START_TEST(qemu_tcg_boots_payload)
{
	const char *argv[] = { "/usr/bin/qemu-system-x86_64", "-kernel",
			       vmt_payload(), "-append",
			       "ws=8M rate=16 hb_ms=" HB_MS " hbs=3",
			       "-nographic", "-no-reboot", "-m", "64",
			       "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
			       "-accel", "tcg", NULL };
	char *dir, *out;
	struct vmp p;

	ck_assert_msg(!access(argv[0], X_OK), "qemu-system-x86_64 not "
		      "installed (tools/bootstrap installs it)");
	dir = tdir;
	ck_assert_int_eq(vmt_spawn(&p, dir, "qemu", argv), 0);
	/* isa-debug-exit: status (0 << 1) | 1 for the guest's exit 0. */
	ck_assert_int_eq(vmt_wait(&p, 90000), 1);
	out = vmt_slurp(p.out);
	ck_assert_ptr_nonnull(strstr(out, "GUEST ws_gpa="));
	/* DONE also waits for a whole pass (QEMU shows no resumes: rpasses
	 * counts since boot there). */
	ck_assert_uint_ge(vmt_count(out, "HB "), 3);
	ck_assert_uint_eq(vmt_count(out, "DONE"), 1);
	ck_assert_int_ge(vmt_last_value(out, "DONE", "rpasses"), 1);
	ck_assert_int_eq(vmt_last_value(out, "DONE", "pages"), 2048);
	ck_assert(vmt_hb_clean(out));
	free(out);
}
END_TEST

/* Runs ferry-vm with @args; expects @status and exactly one stderr line
 * containing @needle. */
static void expect_error(const char *const *argv, int status,
			 const char *needle)
{
	char *dir = tdir, *err;
	struct vmp p;

	ck_assert_int_eq(vmt_spawn(&p, dir, "e", argv), 0);
	ck_assert_int_eq(vmt_wait(&p, 20000), status);
	err = vmt_slurp(p.err);
	ck_assert_msg(strstr(err, needle), "stderr lacks '%s': %s", needle,
		      err);
	ck_assert_msg(vmt_lines(err) == 1, "not one line: %s", err);
	free(err);
}

START_TEST(errors_one_line_each)
{
	/* --accel kvm: auto would fall back to native threads and run. */
	const char *kvm[] = { NULL, "--accel", "kvm", "--ws", "4M", NULL };
	const char *payload[] = { NULL, "--accel", "kvm", "--kernel",
				  "/nonexistent/guest", NULL };
	const char *big[] = { NULL, "--no-kvm", "-m", "64T", NULL };
	const char *huge1g[] = { NULL, "--no-kvm", "-b", "hugetlb-1G", NULL };
	const char *huge2m[] = { NULL, "--no-kvm", "-b", "hugetlb-2M", NULL };
	const char *cpus[] = { NULL, "--no-kvm", "-c", "9", NULL };
	if (access("/dev/kvm", R_OK | W_OK))
		expect_error(kvm, 1, "/dev/kvm not available");
	expect_error(payload, 1, "guest payload /nonexistent/guest not found");
	expect_error(big, 1, "exceeds");
	expect_error(huge1g, 1, "huge page");
	if (gm_hugetlb_set(2 << 20, 0, NULL) == 0)	/* fixture restores */
		expect_error(huge2m, 1, "huge pages needed");
	expect_error(cpus, 2, "invalid option value");
}
END_TEST

START_TEST(error_socket_in_use)
{
	char *dir = tdir, sock[256];
	const char *argv[] = { NULL, "--no-kvm", "-s", sock, "--ws", "4M",
			       "--heartbeat-ms", HB_MS, NULL };
	struct vmp a;

	snprintf(sock, sizeof(sock), "%s/vm.sock", dir);
	ck_assert_int_eq(vmt_spawn(&a, dir, "a", argv), 0);
	ck_assert_uint_ge(vmt_wait_hb(&a, 1, 20000), 1);
	expect_error(argv, 1, "in use");
	ck_assert_int_eq(vmt_wait(&a, 0), -ETIMEDOUT);	/* still running */
	vmt_kill(&a);
}
END_TEST

static Suite *vm_suite(void)
{
	Suite *s = suite_create("vm");
	struct {
		const char *name;
		const TTest *fn;
		int timeout;
		bool huge;	/* changes the huge page pool */
	} cases[] = {
		{ "vmlink_hdr_roundtrip", vmlink_hdr_roundtrip, 10, false },
		{ "vmlink_hello_roundtrip", vmlink_hello_roundtrip, 10, false },
		{ "vmlink_hello_hostile", vmlink_hello_hostile, 10, false },
		{ "vmlink_fds_over_socket", vmlink_fds_over_socket, 10, false },
		{ "vmlink_decode_fuzz", vmlink_decode_fuzz, 30, false },
		{ "vmlink_listen_in_use", vmlink_listen_in_use, 10, false },
		{ "vmlink_advise_roundtrip", vmlink_advise_roundtrip, 10, false },
		{ "advise_anon", advise_anon, 60, false },
		{ "workload_params", workload_params, 10, false },
		{ "workload_detects_corruption", workload_detects_corruption,
		  30, false },
		{ "workload_passes_since_resume", workload_passes_since_resume,
		  30, false },
		{ "boot_nokvm_shmem", boot_nokvm_shmem, 60, false },
		{ "boot_nokvm_anon", boot_nokvm_anon, 60, false },
		{ "boot_nokvm_hugetlb_2m", boot_nokvm_hugetlb_2m, 60, true },
		{ "pause_resume", pause_resume, 60, false },
		{ "agent_gone_commit", agent_gone_commit, 60, false },
		{ "save_restore_shmem", save_restore_shmem, 90, false },
		{ "save_restore_anon_uffd", save_restore_anon_uffd, 90, false },
		{ "save_restore_in_process", save_restore_in_process, 90, false },
		{ "corrupt_page_is_reported", corrupt_page_is_reported, 60, false },
		{ "stall_is_visible", stall_is_visible, 60, false },
		{ "qemu_tcg_boots_payload", qemu_tcg_boots_payload, 120, false },
		{ "errors_one_line_each", errors_one_line_each, 120, true },
		{ "error_socket_in_use", error_socket_in_use, 60, false },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(cases); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_set_timeout(tc, cases[i].timeout);
		tcase_add_unchecked_fixture(tc, fixture_setup,
					    fixture_teardown);
		if (cases[i].huge)
			tcase_add_unchecked_fixture(tc, huge_setup,
						    huge_teardown);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(vm_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
