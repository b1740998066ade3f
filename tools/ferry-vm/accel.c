// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Choosing the accelerator by measuring it. A /dev/kvm that opens and
 * creates VMs may still run a guest a thousand times slower than the host:
 * kvm_pvm, for one, emulates every instruction of a guest that is not
 * PVM-aware. So the probe runs the same two-instruction loop (dec ecx; jnz)
 * as a tiny real-mode KVM guest and natively on the host, each for a
 * bounded time, and compares the rates: a ratio, not a figure tuned to one
 * machine.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

/* KVM counts as native when it runs guest code at least this fraction of
 * the host's speed: native KVM measures about 1, nested KVM under a fast
 * host well above 0.1, emulation about 0.001. */
#define ACCEL_MIN_RATIO 0.1
#define PROBE_HOST_NS 20000000ull	/* host loop: about 20 ms */
#define PROBE_KVM_NS 200000000ull	/* KVM loop: at most 200 ms */
#define PROBE_KVM_ITERS 50000000u	/* about 20 ms on native KVM */
#define PROBE_CODE_GPA 0x1000u
#define PROBE_MEM 0x10000u
#define PROBE_TSS 0xfffbd000ull

/* 16-bit code at PROBE_CODE_GPA: 1: dec ecx; jnz 1b; hlt */
static const uint8_t probe_code[] = { 0x66, 0x49, 0x75, 0xfc, 0xf4 };

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Million instructions per second of the loop run natively. */
static double host_mips(void)
{
	uint64_t t0 = mono_ns(), t, iters = 0;

	do {
		unsigned int n = 1000000;

		__asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(n) : : "cc");
		iters += 1000000;
		t = mono_ns();
	} while (t - t0 < PROBE_HOST_NS);
	return 2.0 * (double)iters * 1e3 / (double)(t - t0);
}

struct kvm_probe {
	int sys_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	void *mem;
	/* the run thread's result */
	int run_err;			/* 0 or -errno of KVM_RUN */
	uint64_t run_ns;		/* time spent in KVM_RUN */
	_Atomic bool done;
};

static void probe_close(struct kvm_probe *p)
{
	if (p->run)
		munmap(p->run, p->run_size);
	if (p->mem)
		munmap(p->mem, PROBE_MEM);
	if (p->vcpu_fd >= 0)
		close(p->vcpu_fd);
	if (p->vm_fd >= 0)
		close(p->vm_fd);
	if (p->sys_fd >= 0)
		close(p->sys_fd);
}

/* Creates the VM, its memory with the loop, and one real-mode vCPU. */
static int probe_setup(struct kvm_probe *p, char *why, size_t len)
{
	struct kvm_userspace_memory_region mr = { .memory_size = PROBE_MEM };
	struct kvm_regs regs = { .rip = PROBE_CODE_GPA, .rflags = 2,
				 .rcx = PROBE_KVM_ITERS };
	struct kvm_sregs sregs;
	const char *what;
	int ret;

	what = "/dev/kvm";
	p->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (p->sys_fd < 0)
		goto fail;
	what = "/dev/kvm is not KVM (KVM_GET_API_VERSION)";
	if (ioctl(p->sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		errno = errno ? errno : EINVAL;
		goto fail;
	}
	what = "KVM_CREATE_VM";
	p->vm_fd = ioctl(p->sys_fd, KVM_CREATE_VM, 0);
	if (p->vm_fd < 0)
		goto fail;
	ioctl(p->vm_fd, KVM_SET_TSS_ADDR, PROBE_TSS); /* VMX real mode */
	what = "guest memory";
	p->mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		goto fail;
	}
	memcpy((uint8_t *)p->mem + PROBE_CODE_GPA, probe_code,
	       sizeof(probe_code));
	mr.userspace_addr = (uint64_t)(uintptr_t)p->mem;
	if (ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr))
		goto fail;
	what = "KVM_CREATE_VCPU";
	p->vcpu_fd = ioctl(p->vm_fd, KVM_CREATE_VCPU, 0);
	if (p->vcpu_fd < 0)
		goto fail;
	ret = ioctl(p->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret <= 0)
		goto fail;
	p->run_size = (size_t)ret;
	p->run = mmap(NULL, p->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      p->vcpu_fd, 0);
	if (p->run == MAP_FAILED) {
		p->run = NULL;
		goto fail;
	}
	what = "vCPU registers";
	if (ioctl(p->vcpu_fd, KVM_GET_SREGS, &sregs))
		goto fail;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(p->vcpu_fd, KVM_SET_SREGS, &sregs) ||
	    ioctl(p->vcpu_fd, KVM_SET_REGS, &regs))
		goto fail;
	return 0;
fail:
	ret = -errno;
	snprintf(why, len, "%s: %s", what, strerror(errno));
	return ret ? ret : -EIO;
}

static void *probe_run_thread(void *arg)
{
	struct kvm_probe *p = arg;
	uint64_t t0 = mono_ns();

	if (ioctl(p->vcpu_fd, KVM_RUN, 0))
		p->run_err = -errno;
	p->run_ns = mono_ns() - t0;
	atomic_store(&p->done, true);
	return NULL;
}

static void probe_kick(int sig)
{
	(void)sig;
}

/*
 * Runs the loop on the vCPU for up to PROBE_KVM_NS, then kicks it out with
 * SIGUSR1 (immediate_exit covers a kick that lands before KVM_RUN), and
 * counts the iterations done from what is left in ecx.
 */
static int probe_run(struct kvm_probe *p, double *mips, char *why, size_t len)
{
	struct sigaction sa = { .sa_handler = probe_kick }, old;
	uint64_t t0 = mono_ns(), iters;
	struct kvm_regs regs;
	pthread_t t;
	int ret;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, &old);
	ret = -pthread_create(&t, NULL, probe_run_thread, p);
	if (ret) {
		snprintf(why, len, "thread: %s", strerror(-ret));
		goto restore;
	}
	while (!atomic_load(&p->done) && mono_ns() - t0 < PROBE_KVM_NS)
		usleep(1000);
	while (!atomic_load(&p->done)) {
		p->run->immediate_exit = 1;
		pthread_kill(t, SIGUSR1);
		usleep(2000);
	}
	pthread_join(t, NULL);
	if (p->run_err && p->run_err != -EINTR) {
		ret = p->run_err;
		snprintf(why, len, "KVM_RUN: %s", strerror(-ret));
	} else if (!p->run_err && p->run->exit_reason != KVM_EXIT_HLT) {
		ret = -EIO;
		snprintf(why, len, "probe guest: unexpected exit %u",
			 p->run->exit_reason);
	} else if (ioctl(p->vcpu_fd, KVM_GET_REGS, &regs)) {
		ret = -errno;
		snprintf(why, len, "KVM_GET_REGS: %s", strerror(errno));
	} else {
		iters = PROBE_KVM_ITERS - (regs.rcx & 0xffffffffu);
		*mips = 2.0 * (double)iters * 1e3 /
			(double)(p->run_ns ? p->run_ns : 1);
	}
restore:
	sigaction(SIGUSR1, &old, NULL);
	return ret;
}

void vm_accel_probe(struct vm_accel_probe *out)
{
	struct kvm_probe p = { .sys_fd = -1, .vm_fd = -1, .vcpu_fd = -1 };
	int ret;

	*out = (struct vm_accel_probe){ .verdict = VM_PROBE_NONE };
	ret = probe_setup(&p, out->reason, sizeof(out->reason));
	if (!ret)
		ret = probe_run(&p, &out->kvm_mips, out->reason,
				sizeof(out->reason));
	probe_close(&p);
	if (ret)
		return;
	out->host_mips = host_mips();
	out->ratio = out->kvm_mips / out->host_mips;
	out->verdict = out->ratio >= ACCEL_MIN_RATIO ? VM_PROBE_KVM :
						       VM_PROBE_KVM_EMULATED;
}

const char *vm_probe_name(enum vm_probe_verdict v)
{
	return v == VM_PROBE_KVM ? "kvm" :
	       v == VM_PROBE_KVM_EMULATED ? "kvm-emulated" : "none";
}

int vm_accel_parse(const char *s, enum vm_accel *out)
{
	if (!strcmp(s, "auto"))
		*out = VM_ACCEL_AUTO;
	else if (!strcmp(s, "kvm"))
		*out = VM_ACCEL_KVM;
	else if (!strcmp(s, "none"))
		*out = VM_ACCEL_NONE;
	else
		return -EINVAL;
	return 0;
}

/* One line on what the probe found, for a user. */
static void probe_describe(const struct vm_accel_probe *p, char *buf,
			   size_t len)
{
	if (p->verdict == VM_PROBE_NONE)
		snprintf(buf, len, "no usable KVM (%s)", p->reason);
	else
		snprintf(buf, len, "KVM here %s guest code (%.1f M instr/s, "
			 "%.0f M instr/s natively on the host)",
			 p->verdict == VM_PROBE_KVM ? "runs" : "emulates",
			 p->kvm_mips, p->host_mips);
}

void vm_accel_resolve(enum vm_accel accel, bool *nokvm, char *note,
		       size_t len, bool *warn)
{
	struct vm_accel_probe p;
	char what[256];

	*note = 0;
	*warn = false;
	if (accel == VM_ACCEL_NONE) {
		*nokvm = true;
		return;
	}
	vm_accel_probe(&p);
	probe_describe(&p, what, sizeof(what));
	if (accel == VM_ACCEL_KVM) {
		*nokvm = false;
		*warn = p.verdict == VM_PROBE_KVM_EMULATED;
		if (*warn)
			snprintf(note, len, "%s; running on it as --accel kvm "
				 "asks", what);
		return;
	}
	*nokvm = p.verdict != VM_PROBE_KVM;
	*warn = *nokvm;
	snprintf(note, len, "%s; running the guest %s", what,
		 *nokvm ? "as native threads" : "on KVM");
}

int vm_cmd_probe_accel(enum vm_accel forced, bool is_forced)
{
	struct vm_accel_probe p;
	const char *use;

	vm_accel_probe(&p);
	use = p.verdict == VM_PROBE_KVM ? "kvm" : "none";
	if (is_forced && forced != VM_ACCEL_AUTO)
		use = forced == VM_ACCEL_KVM ? "kvm" : "none";
	printf("%s use=%s", vm_probe_name(p.verdict), use);
	if (p.verdict != VM_PROBE_NONE)
		printf(" kvm_mips=%.1f host_mips=%.1f ratio=%.4f", p.kvm_mips,
		       p.host_mips, p.ratio);
	if (is_forced && forced != VM_ACCEL_AUTO)
		printf(" forced=FERRY_ACCEL");
	if (p.verdict == VM_PROBE_NONE)
		printf(" reason=\"%s\"", p.reason);
	printf("\n");
	return fflush(stdout) ? VM_EXIT_ERROR : VM_EXIT_OK;
}
