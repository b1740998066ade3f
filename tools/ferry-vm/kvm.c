// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The KVM backend: /dev/kvm, the VM, its memory slot, the payload and the
 * boot structures (GDT, TSS, identity page tables, Multiboot info), in the
 * shape of kvmtool's kvm.c and the kernel's KVM selftests.
 *
 * The guest is entered in long mode at the payload's 64-bit entry on every
 * vCPU at once (no INIT/SIPI, no interrupts): nested PVM runs exactly this
 * kind of guest. An in-kernel irqchip is created when KVM offers one, so
 * that the LAPIC is part of the saved state; APs are made runnable by hand.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/kvm-internal.h"
#include "util/le.h"

#define MB_HDR_MAGIC 0x1BADB002u
#define MB_AOUT_KLUDGE (1u << 16)
#define PAYLOAD_BASE 0x100000ull

enum { SEC_KVM_CLOCK = 0x200, SEC_KVM_IRQCHIP = 0x201, SEC_KVM_TSC_KHZ = 0x202 };

static int kvm_open_sys(struct kvm_vm *k)
{
	int ret;

	k->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0) {
		ret = -errno;
		pr_err("/dev/kvm not available (%s); use --accel none (or "
		       "auto) to run the guest workload as native threads",
		       strerror(-ret));
		return ret;
	}
	if (ioctl(k->sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		pr_err("unsupported KVM API version");
		return -EINVAL;
	}
	ret = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret <= 0) {
		pr_err("KVM_GET_VCPU_MMAP_SIZE failed");
		return -EINVAL;
	}
	k->run_size = (size_t)ret;
	return 0;
}

static int kvm_get_cpuid(struct kvm_vm *k)
{
	for (unsigned int n = 64; n <= 1024; n *= 2) {
		k->cpuid = calloc(1, sizeof(*k->cpuid) +
				      n * sizeof(struct kvm_cpuid_entry2));
		if (!k->cpuid)
			return -ENOMEM;
		k->cpuid->nent = n;
		if (!ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, k->cpuid))
			return 0;
		free(k->cpuid);
		k->cpuid = NULL;
		if (errno != E2BIG)
			break;
	}
	pr_err("KVM_GET_SUPPORTED_CPUID failed: %s", strerror(errno));
	return -EINVAL;
}

static int kvm_create_vm(struct kvm_vm *k)
{
	struct gm_region *ram = &k->vm->ram;
	struct kvm_userspace_memory_region mr = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = ram->size,
		.userspace_addr = (uint64_t)(uintptr_t)ram->host,
	};
	int ret;

	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_VM failed: %s", strerror(-ret));
		return ret;
	}
	/* VMX needs it for real mode; other KVMs (SVM, PVM) may refuse it. */
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR))
		pr_info("KVM_SET_TSS_ADDR: %s (not needed here)",
			strerror(errno));
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr)) {
		ret = -errno;
		pr_err("KVM_SET_USER_MEMORY_REGION (%zu MiB): %s",
		       ram->size >> 20, strerror(-ret));
		return ret;
	}
	k->irqchip = !ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0);
	if (!k->irqchip)
		pr_info("no in-kernel irqchip (%s): LAPIC state not saved",
			strerror(errno));
	return 0;
}

/* ---- payload and boot structures ---- */

/* Finds the Multiboot a.out-kludge header in the first 8 KiB of @img. */
static int parse_payload(const uint8_t *img, size_t len, size_t *hdr_off)
{
	for (size_t o = 0; o + 48 <= len && o < 8192; o += 4) {
		const uint8_t *h = img + o;

		if (ut_get_le32(h) != MB_HDR_MAGIC ||
		    ut_get_le32(h) + ut_get_le32(h + 4) + ut_get_le32(h + 8) != 0)
			continue;
		if (!(ut_get_le32(h + 4) & MB_AOUT_KLUDGE) ||
		    ut_get_le32(h + 32) != UT_FERRY_MAGIC)
			return -ENOEXEC;
		*hdr_off = o;
		return 0;
	}
	return -ENOEXEC;
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		pr_err("guest payload %s: %s", path, strerror(-ret));
		goto close_fd;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		goto close_fd;
	}
	if (read(fd, *buf, *len) != (ssize_t)*len) {
		ret = -EIO;
		pr_err("guest payload %s: short read", path);
		free(*buf);
		*buf = NULL;
	}
close_fd:
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Copies the image to its load address and clears its bss. */
static int load_payload(struct kvm_vm *k, const char *path)
{
	uint8_t *img = NULL, *ram = k->vm->ram.host;
	uint32_t hdr_addr, load, load_end, bss_end;
	size_t len = 0, off = 0;
	int ret;

	ret = read_file(path, &img, &len);
	if (ret)
		return ret;
	ret = parse_payload(img, len, &off);
	if (ret) {
		pr_err("%s is not a Ferry guest payload (no Multiboot a.out "
		       "header with a Ferry 64-bit entry)", path);
		goto free_img;
	}
	hdr_addr = ut_get_le32(img + off + 12);
	load = ut_get_le32(img + off + 16);
	load_end = ut_get_le32(img + off + 20);
	bss_end = ut_get_le32(img + off + 24);
	k->entry64 = ut_get_le32(img + off + 36);
	ret = -ENOEXEC;
	if (load < PAYLOAD_BASE || load_end < load || bss_end < load_end ||
	    hdr_addr - load != off || load_end - load > len ||
	    bss_end >= WL_WS_GPA || bss_end > k->vm->ram.size) {
		pr_err("%s: payload layout out of range", path);
		goto free_img;
	}
	memcpy(ram + load, img, load_end - load);
	memset(ram + load_end, 0, bss_end - load_end);
	ret = 0;
free_img:
	free(img);
	return ret;
}

static void put64(uint8_t *ram, uint64_t gpa, uint64_t v)
{
	memcpy(ram + gpa, &v, 8);
}

/* GDT, TSS, identity-mapped page tables with 2 MiB pages. */
static int build_boot_tables(struct kvm_vm *k)
{
	uint8_t *ram = k->vm->ram.host;
	uint64_t gib = UT_DIV_ROUND_UP(k->vm->ram.size, UT_GiB);
	uint64_t tss_lo;

	if (gib > BOOT_MAX_GIB) {
		pr_err("KVM mode maps at most %u GiB of guest RAM",
		       BOOT_MAX_GIB);
		return -EINVAL;
	}
	put64(ram, BOOT_GDT, 0);
	put64(ram, BOOT_GDT + 8, 0x00af9a000000ffffull);  /* 0x08 code64 */
	put64(ram, BOOT_GDT + 16, 0x00cf92000000ffffull); /* 0x10 data */
	tss_lo = 0x67 | ((BOOT_TSS & 0xffffff) << 16) | (0x89ull << 40) |
		 ((BOOT_TSS >> 24) << 56);
	put64(ram, BOOT_GDT + 24, tss_lo);		   /* 0x18 TSS */
	put64(ram, BOOT_GDT + 32, BOOT_TSS >> 32);
	memset(ram + BOOT_TSS, 0, 0x68);
	memset(ram + BOOT_PML4, 0, 4096);
	memset(ram + BOOT_PDPT, 0, 4096);
	put64(ram, BOOT_PML4, BOOT_PDPT | 3);
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t pd = BOOT_PD + g * 4096;

		put64(ram, BOOT_PDPT + g * 8, pd | 3);
		for (uint64_t i = 0; i < 512; i++)
			put64(ram, pd + i * 8,
			      (g << 30) + (i << 21) + 0x83); /* P, RW, PS */
	}
	return 0;
}

/* Multiboot info (flags: mem, cmdline) and the command line. */
static int build_mbi(struct kvm_vm *k)
{
	struct vm *vm = k->vm;
	uint8_t *ram = vm->ram.host;
	uint32_t mbi[8] = { 0 };
	int n;

	n = snprintf((char *)ram + BOOT_CMDLINE, 4096, "%s cpus=%u tsc_khz=%llu",
		     vm->cfg.cmdline, vm->cfg.nr_cpus,
		     (unsigned long long)k->tsc_khz);
	if (n < 0 || n >= 4096)
		return -E2BIG;
	mbi[0] = (1u << 0) | (1u << 2);
	mbi[1] = 640;
	mbi[2] = (uint32_t)((vm->ram.size >> 10) - 1024);
	mbi[4] = (uint32_t)BOOT_CMDLINE;
	memcpy(ram + BOOT_MBI, mbi, sizeof(mbi));
	pr_info("guest command line: %s", (char *)ram + BOOT_CMDLINE);
	return 0;
}

/* ---- backend ops ---- */

static int kvm_init_vm(struct vm *vm, bool fresh)
{
	struct kvm_vm *k = calloc(1, sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	k->vm = vm;
	k->sys_fd = k->vm_fd = -1;
	for (unsigned int i = 0; i < VM_MAX_CPUS; i++)
		k->cpu[i].fd = -1;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	vm->backend = k;
	/* The payload first: that error is the same with or without KVM. */
	if (fresh && access(vm->cfg.payload, R_OK)) {
		pr_err("guest payload %s not found (build it, or pass "
		       "--kernel)", vm->cfg.payload);
		return -ENOENT;
	}
	ret = kvm_open_sys(k);
	if (!ret)
		ret = kvm_get_cpuid(k);
	if (!ret)
		ret = kvm_create_vm(k);
	for (unsigned int i = 0; !ret && i < vm->cfg.nr_cpus; i++)
		ret = kvm_vcpu_create(k, i);
	if (ret || !fresh)
		return ret;
	ret = load_payload(k, vm->cfg.payload);
	if (!ret)
		ret = build_boot_tables(k);
	if (!ret)
		ret = build_mbi(k);
	for (unsigned int i = 0; !ret && i < vm->cfg.nr_cpus; i++)
		ret = kvm_vcpu_boot_regs(&k->cpu[i]);
	return ret;
}

static int kvm_start(struct vm *vm)
{
	struct kvm_vm *k = vm->backend;
	int ret = 0;

	for (unsigned int i = 0; !ret && i < vm->cfg.nr_cpus; i++)
		ret = kvm_vcpu_start(&k->cpu[i]);
	return ret;
}

static int kvm_pause(struct vm *vm)
{
	return kvm_vcpus_pause(vm->backend);
}

static int kvm_resume(struct vm *vm)
{
	kvm_vcpus_resume(vm->backend);
	return 0;
}

static int kvm_save(struct vm *vm, struct vm_blob *b)
{
	struct kvm_vm *k = vm->backend;
	struct kvm_clock_data clock = { 0 };
	int ret;

	if (ioctl(k->vm_fd, KVM_GET_CLOCK, &clock)) {
		ret = -errno;
		pr_err("KVM_GET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	ret = vm_blob_add(b, SEC_KVM_CLOCK, VM_BLOB_VM, &clock, sizeof(clock));
	if (!ret)
		ret = vm_blob_add(b, SEC_KVM_TSC_KHZ, VM_BLOB_VM, &k->tsc_khz,
				  sizeof(k->tsc_khz));
	for (uint32_t chip = 0; !ret && k->irqchip && chip < 3; chip++) {
		struct kvm_irqchip ic = { .chip_id = chip };

		if (ioctl(k->vm_fd, KVM_GET_IRQCHIP, &ic)) {
			ret = -errno;
			pr_err("KVM_GET_IRQCHIP %u: %s", chip, strerror(-ret));
			break;
		}
		ret = vm_blob_add(b, SEC_KVM_IRQCHIP + 0x10 * chip, VM_BLOB_VM,
				  &ic, sizeof(ic));
	}
	for (unsigned int i = 0; !ret && i < vm->cfg.nr_cpus; i++)
		ret = kvm_vcpu_save(&k->cpu[i], b);
	return ret;
}

/*
 * The guest paces itself by its TSC rate, fixed at boot: on a host whose
 * TSC runs at another rate, ask KVM to scale (before the TSC MSR is set).
 * Without scaling support the guest's pacing drifts; it still verifies.
 */
static void set_tsc_khz(struct kvm_vm *k, const uint8_t *blob, size_t len)
{
	const void *p;
	uint64_t khz;
	size_t n;

	p = vm_blob_find(blob, len, SEC_KVM_TSC_KHZ, VM_BLOB_VM, &n);
	if (!p || n != sizeof(khz))
		return;
	memcpy(&khz, p, sizeof(khz));
	/* Within 0.1%: the same rate, measured twice. */
	if (!khz || (khz > k->tsc_khz ? khz - k->tsc_khz : k->tsc_khz - khz) <=
			    khz / 1000)
		return;
	for (unsigned int i = 0; i < k->vm->cfg.nr_cpus; i++) {
		if (ioctl(k->cpu[i].fd, KVM_SET_TSC_KHZ, (unsigned long)khz)) {
			pr_warn("TSC runs at %llu kHz here, %llu kHz at the "
				"source, and KVM cannot scale it (%s): guest "
				"pacing will drift",
				(unsigned long long)k->tsc_khz,
				(unsigned long long)khz, strerror(errno));
			return;
		}
	}
	k->tsc_khz = khz;
}

static int kvm_load(struct vm *vm, const uint8_t *blob, size_t len)
{
	struct kvm_vm *k = vm->backend;
	const void *p;
	size_t n;
	int ret = 0;

	for (uint32_t chip = 0; k->irqchip && chip < 3; chip++) {
		p = vm_blob_find(blob, len, SEC_KVM_IRQCHIP + 0x10 * chip,
				 VM_BLOB_VM, &n);
		if (p && n == sizeof(struct kvm_irqchip) &&
		    ioctl(k->vm_fd, KVM_SET_IRQCHIP, p)) {
			ret = -errno;
			pr_err("KVM_SET_IRQCHIP %u: %s", chip, strerror(-ret));
			return ret;
		}
	}
	set_tsc_khz(k, blob, len);
	for (unsigned int i = 0; !ret && i < vm->cfg.nr_cpus; i++)
		ret = kvm_vcpu_load(&k->cpu[i], blob, len);
	p = vm_blob_find(blob, len, SEC_KVM_CLOCK, VM_BLOB_VM, &n);
	if (!ret && p && n == sizeof(struct kvm_clock_data)) {
		struct kvm_clock_data clock;

		memcpy(&clock, p, sizeof(clock));
		clock.flags = 0;	/* set the value, not a realtime pair */
		if (ioctl(k->vm_fd, KVM_SET_CLOCK, &clock)) {
			ret = -errno;
			pr_err("KVM_SET_CLOCK: %s", strerror(-ret));
		}
	}
	return ret;
}

static int set_slot_flags(struct kvm_vm *k, uint32_t flags)
{
	struct gm_region *ram = &k->vm->ram;
	struct kvm_userspace_memory_region mr = {
		.slot = 0,
		.flags = flags,
		.memory_size = ram->size,
		.userspace_addr = (uint64_t)(uintptr_t)ram->host,
	};
	int ret = 0;

	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr)) {
		ret = -errno;
		pr_err("changing the memory slot's flags: %s", strerror(-ret));
	}
	return ret;
}

/* KVM_GET_DIRTY_LOG returns the bitmap and re-arms it in one call (no
 * manual-protect capability enabled). */
static int kvm_dirty_log(struct vm *vm, uint32_t op, uint64_t **bm,
			 size_t *words)
{
	struct kvm_vm *k = vm->backend;
	struct kvm_dirty_log dl = { .slot = 0 };
	size_t n = UT_DIV_ROUND_UP(vm->ram.size / 4096, 64);
	int ret;

	if (op == VML_DIRTY_START || op == VML_DIRTY_STOP) {
		ret = set_slot_flags(k, op == VML_DIRTY_START ?
					       KVM_MEM_LOG_DIRTY_PAGES : 0);
		if (!ret)
			k->dirty_logging = op == VML_DIRTY_START;
		return ret;
	}
	if (!k->dirty_logging)
		return -EBUSY;
	*bm = calloc(n, sizeof(uint64_t));
	if (!*bm)
		return -ENOMEM;
	dl.dirty_bitmap = *bm;
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &dl)) {
		ret = -errno;
		pr_err("KVM_GET_DIRTY_LOG: %s", strerror(-ret));
		free(*bm);
		*bm = NULL;
		return ret;
	}
	*words = n;
	return 0;
}

static void kvm_fini_vm(struct vm *vm)
{
	struct kvm_vm *k = vm->backend;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	atomic_store(&k->stop, true);
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	for (unsigned int i = 0; i < VM_MAX_CPUS; i++)
		kvm_vcpu_destroy(&k->cpu[i]);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	free(k->cpuid);
	pthread_cond_destroy(&k->cond);
	pthread_mutex_destroy(&k->lock);
	free(k);
	vm->backend = NULL;
}

const struct vm_backend_ops vm_kvm_ops = {
	.name = "KVM",
	.init = kvm_init_vm,
	.start = kvm_start,
	.pause = kvm_pause,
	.resume = kvm_resume,
	.save = kvm_save,
	.load = kvm_load,
	.fini = kvm_fini_vm,
	.dirty_log = kvm_dirty_log,
};
