// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * WP_ASYNC dirty tracking of writes made by a KVM vCPU: a few bytes of
 * real-mode code write one byte into chosen pages and halt; the harvest
 * must report exactly those pages. Skips (77) where /dev/kvm is missing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "check-guestmem-kvm"
#include "guestmem/guestmem.h"
#include "guestmem/internal.h"
#include "tests/testutil.h"

#define GUEST_SIZE (1 * UT_MiB) /* real mode reaches the first MiB */

static const enum gm_backing backings[] = { GM_BACKING_SHMEM,
					    GM_BACKING_ANON };
static const uint16_t targets[] = { 3, 17, 200, 255 };

/* mov ax, seg; mov ds, ax; mov byte [0], 0x5a -- per page, then hlt. */
static size_t emit_code(uint8_t *code)
{
	size_t n = 0;

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(targets); i++) {
		uint16_t seg = targets[i] * (4096 / 16);

		code[n++] = 0xb8;
		code[n++] = seg & 0xff;
		code[n++] = seg >> 8;
		code[n++] = 0x8e; /* mov ds, ax */
		code[n++] = 0xd8;
		code[n++] = 0xc6; /* mov byte [disp16], imm8 */
		code[n++] = 0x06;
		code[n++] = 0x00;
		code[n++] = 0x00;
		code[n++] = 0x5a;
	}
	code[n++] = 0xf4; /* hlt */
	return n;
}

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
};

static void vm_setup(struct vm *v, struct gm_region *r)
{
	struct kvm_userspace_memory_region mem = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = r->size,
		.userspace_addr = (uintptr_t)r->host,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };
	int sz;

	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(v->kvm, 0);
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	ck_assert_int_ge(v->vm, 0);
	ck_assert_int_eq(ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &mem), 0);
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	ck_assert_int_ge(v->vcpu, 0);
	sz = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	ck_assert_int_gt(sz, 0);
	v->run_size = sz;
	v->run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	ck_assert_ptr_ne(v->run, MAP_FAILED);
	ck_assert_int_eq(ioctl(v->vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	ck_assert_int_eq(ioctl(v->vcpu, KVM_SET_SREGS, &sregs), 0);
	ck_assert_int_eq(ioctl(v->vcpu, KVM_SET_REGS, &regs), 0);
}

static void vm_run_to_hlt(struct vm *v)
{
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(ioctl(v->vcpu, KVM_RUN, 0), 0);
		if (v->run->exit_reason == KVM_EXIT_HLT)
			return;
		ck_assert_msg(v->run->exit_reason == KVM_EXIT_INTR,
			      "unexpected exit %u", v->run->exit_reason);
	}
	ck_abort_msg("the vCPU never halted");
}

static void vm_teardown(struct vm *v)
{
	munmap(v->run, v->run_size);
	close(v->vcpu);
	close(v->vm);
	close(v->kvm);
}

START_TEST(wp_async_kvm_vcpu_writes)
{
	enum gm_backing b = backings[_i];
	struct gm_region r;
	struct gm_uffd u;
	struct gm_dirty *d;
	struct gm_dirty_range range;
	struct ut_bitmap bm;
	struct vm v;
	uint64_t f = 0;

	ck_assert_int_eq(gm_region_init(&r, b, GUEST_SIZE, "kvm-guest"), 0);
	memset(r.host, 0, r.size); /* populate: untouched pages stay clean */
	emit_code(r.host);
	vm_setup(&v, &r);
	gm_uffd_probe(&f);
	ck_assert_int_eq(gm_uffd_open(&u, UFFD_FEATURE_WP_ASYNC |
					      (b == GM_BACKING_SHMEM ?
						       UFFD_FEATURE_WP_HUGETLBFS_SHMEM :
						       0) |
					      (f & UFFD_FEATURE_WP_UNPOPULATED)),
			 0);
	range = (struct gm_dirty_range){ (uintptr_t)r.host, r.size, 4096 };
	ck_assert_int_eq(gm_dirty_create(&d, &(struct gm_dirty_params){
			 .uffd = &u, .ranges = &range, .nr_ranges = 1 }), 0);
	vm_run_to_hlt(&v);
	ck_assert_int_eq(ut_bitmap_init(&bm, gm_dirty_pages(d)), 0);
	ck_assert_int_eq(gm_dirty_harvest(d, &bm), UT_ARRAY_SIZE(targets));
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(targets); i++) {
		ck_assert(ut_bitmap_test(&bm, targets[i]));
		ck_assert_int_eq(((uint8_t *)r.host)[targets[i] * 4096], 0x5a);
	}
	ut_bitmap_fini(&bm);
	gm_dirty_destroy(d);
	vm_teardown(&v);
	gm_uffd_close(&u);
	gm_region_fini(&r);
}
END_TEST

int main(void)
{
	const struct ft_case cases[] = {
		{ "wp_async_kvm_vcpu_writes", wp_async_kvm_vcpu_writes,
		  UT_ARRAY_SIZE(backings), 0 },
	};
	int ncases = ft_count(cases, UT_ARRAY_SIZE(cases));
	uint64_t f = 0;
	int fd;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return ft_skip(ncases, "/dev/kvm not available");
	/* A hidden /dev/kvm (say /dev/null bound over it) opens too. */
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close(fd);
		return ft_skip(ncases, "/dev/kvm is not KVM");
	}
	close(fd);
	if (gm_uffd_probe(&f) || !(f & UFFD_FEATURE_WP_ASYNC))
		return ft_skip(ncases, "userfaultfd WP_ASYNC not available");
	return ft_run(ft_suite("guestmem-kvm", cases, UT_ARRAY_SIZE(cases)));
}
