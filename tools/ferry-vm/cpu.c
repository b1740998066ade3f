// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * KVM vCPUs: creation, long-mode entry state (as the KVM selftests set it
 * up), the run loop with port I/O exits, pause/resume through signals and
 * immediate_exit (as kvmtool kicks its vCPUs), and the per-vCPU sections
 * of the state blob.
 *
 * Saved per vCPU: regs, sregs, XSAVE (which holds the FPU), XCRs, MSRs
 * (the TSC among them, so the guest clock continues where it was), LAPIC
 * (with an in-kernel irqchip), vCPU events, MP state and debug registers.
 * Restore order follows QEMU's kvm_arch_put_registers.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/kvm-internal.h"

enum {
	SEC_REGS = 0x300, SEC_SREGS, SEC_XSAVE, SEC_XCRS, SEC_MSRS,
	SEC_LAPIC, SEC_EVENTS, SEC_MP_STATE, SEC_DEBUGREGS, SEC_FPU,
};

/* MSRs saved and restored, where KVM lets us read them. */
static const uint32_t saved_msrs[] = {
	0x10,		/* IA32_TSC */
	0x3b,		/* IA32_TSC_ADJUST */
	0x174, 0x175, 0x176, /* SYSENTER_CS/ESP/EIP */
	0x1a0,		/* MISC_ENABLE */
	0x277,		/* PAT */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR..FMASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0xc0000103,	/* TSC_AUX */
	0x4b564d00, 0x4b564d01, /* kvmclock wall clock, system time */
};

/*
 * The host TSC rate, for when KVM cannot say: the guest paces itself by
 * its TSC and has no PIT to calibrate against here. Without TSC scaling
 * the guest's TSC runs at the host's rate.
 */
static uint64_t host_tsc_khz(void)
{
	uint64_t t0 = __builtin_ia32_rdtsc(), n0 = ut_now_ns(), n1;

	do
		n1 = ut_now_ns();
	while (n1 - n0 < 50000000);
	return (__builtin_ia32_rdtsc() - t0) * 1000000 / (n1 - n0);
}

int kvm_vcpu_create(struct kvm_vm *k, unsigned int idx)
{
	struct kvm_vcpu_ctx *c = &k->cpu[idx];
	int ret;

	c->k = k;
	c->idx = idx;
	c->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)idx);
	if (c->fd < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_VCPU %u: %s", idx, strerror(-ret));
		return ret;
	}
	c->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      c->fd, 0);
	if (c->run == MAP_FAILED) {
		ret = -errno;
		c->run = NULL;
		pr_err("mmap of kvm_run: %s", strerror(-ret));
		return ret;
	}
	if (ioctl(c->fd, KVM_SET_CPUID2, k->cpuid)) {
		ret = -errno;
		pr_err("KVM_SET_CPUID2: %s", strerror(-ret));
		return ret;
	}
	if (idx == 0) {
		ret = ioctl(c->fd, KVM_GET_TSC_KHZ, 0);
		k->tsc_khz = ret > 0 ? (uint64_t)ret : host_tsc_khz();
	}
	return 0;
}

void kvm_vcpu_destroy(struct kvm_vcpu_ctx *c)
{
	if (c->running) {
		/* stop is set: immediate_exit covers a kick that lands
		 * between the thread's stop check and KVM_RUN. */
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(c->thread, SIGUSR1);
		pthread_join(c->thread, NULL);
		c->running = false;
	}
	if (c->run)
		munmap(c->run, c->k->run_size);
	c->run = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void seg_code64(struct kvm_segment *s)
{
	*s = (struct kvm_segment){ .selector = 0x08, .limit = 0xffffffff,
				   .type = 0xb, .s = 1, .present = 1, .l = 1,
				   .g = 1 };
}

static void seg_data(struct kvm_segment *s)
{
	*s = (struct kvm_segment){ .selector = 0x10, .limit = 0xffffffff,
				   .type = 0x3, .s = 1, .present = 1, .db = 1,
				   .g = 1 };
}

int kvm_vcpu_boot_regs(struct kvm_vcpu_ctx *c)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = c->k->entry64,
		.rdi = BOOT_MBI,
		.rsi = c->idx,
		.rflags = 0x2,
	};
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	int ret = 0;

	if (ioctl(c->fd, KVM_GET_SREGS, &sregs))
		return -errno;
	seg_code64(&sregs.cs);
	seg_data(&sregs.ds);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .selector = 0x18, .base = BOOT_TSS,
					 .limit = 0x67, .type = 0xb,
					 .present = 1 };
	sregs.ldt = (struct kvm_segment){ .type = 0x2, .unusable = 1 };
	sregs.gdt.base = BOOT_GDT;
	sregs.gdt.limit = 39;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x80000023;		/* PG, NE, MP, PE */
	sregs.cr3 = BOOT_PML4;
	sregs.cr4 = (1 << 5) | (1 << 9) | (1 << 10); /* PAE, OSFXSR, OSXMMEXCPT */
	sregs.efer = (1 << 8) | (1 << 10); /* LME, LMA */
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) ||
	    ioctl(c->fd, KVM_SET_REGS, &regs))
		ret = -errno;
	/* With an in-kernel irqchip APs wait for a SIPI we never send. */
	if (!ret && c->k->irqchip && ioctl(c->fd, KVM_SET_MP_STATE, &mp))
		ret = -errno;
	if (ret)
		pr_err("setting up vCPU %u: %s", c->idx, strerror(-ret));
	return ret;
}

/* ---- the run loop ---- */

static bool handle_io(struct kvm_vcpu_ctx *c, int *exit_code)
{
	struct kvm_run *r = c->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	size_t n = (size_t)r->io.size * r->io.count;
	uint32_t v = 0;

	if (r->io.direction == KVM_EXIT_IO_IN) {
		memset(data, 0, n);
		if (r->io.port == WL_PORT_CONSOLE + 5)	/* LSR: THR empty */
			memset(data, 0x60, n);
		if (r->io.port == WL_PORT_RESUME && n >= 4) {
			v = vm_resume_token(c->k->vm);
			memcpy(data, &v, 4);
		}
		return true;
	}
	if (r->io.port == WL_PORT_CONSOLE) {
		vm_console_write(&c->k->vm->con, (const char *)data, n);
		return true;
	}
	if (r->io.port == WL_PORT_EXIT) {
		memcpy(&v, data, r->io.size < 4 ? r->io.size : 4);
		*exit_code = v == WL_EXIT_OK ? VM_EXIT_OK :
			     v == WL_EXIT_VERIFY ? VM_EXIT_VERIFY :
						   VM_EXIT_GUEST;
		return false;
	}
	return true;	/* other ports: ignored, reads as 0 */
}

/* Handles one exit; false when the vCPU is done (*exit_code set). */
static bool handle_exit(struct kvm_vcpu_ctx *c, int *exit_code)
{
	struct kvm_run *r = c->run;

	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		return handle_io(c, exit_code);
	case KVM_EXIT_HLT:
		pr_err("vCPU %u halted without an exit code", c->idx);
		break;
	case KVM_EXIT_SHUTDOWN:
		pr_err("vCPU %u: triple fault (guest crashed)", c->idx);
		break;
	case KVM_EXIT_MMIO:
		pr_err("vCPU %u: access to unbacked guest address %#llx",
		       c->idx, (unsigned long long)r->mmio.phys_addr);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		pr_err("vCPU %u: entry failed, reason %#llx", c->idx,
		       (unsigned long long)
			       r->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		pr_err("vCPU %u: KVM internal error %u", c->idx,
		       r->internal.suberror);
		break;
	default:
		pr_err("vCPU %u: unexpected exit %u", c->idx, r->exit_reason);
		break;
	}
	*exit_code = VM_EXIT_GUEST;
	return false;
}

static void park(struct kvm_vm *k)
{
	pthread_mutex_lock(&k->lock);
	k->parked++;
	pthread_cond_broadcast(&k->cond);
	while (atomic_load(&k->pause_req) && !atomic_load(&k->stop))
		pthread_cond_wait(&k->cond, &k->lock);
	k->parked--;
	pthread_mutex_unlock(&k->lock);
}

static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu_ctx *c = arg;
	struct kvm_vm *k = c->k;
	int code = -1;

	while (!atomic_load(&k->stop)) {
		if (atomic_load(&k->pause_req)) {
			park(k);
			/* Cleared before pause_req is checked again, so a
			 * new pause's immediate_exit is never lost. */
			__atomic_store_n(&c->run->immediate_exit, 0,
					 __ATOMIC_SEQ_CST);
			continue;
		}
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			pr_err("vCPU %u: KVM_RUN: %s", c->idx, strerror(errno));
			code = VM_EXIT_ERROR;
			break;
		}
		if (!handle_exit(c, &code))
			break;
	}
	pthread_mutex_lock(&k->lock);
	k->alive--;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	if (code >= 0)
		vm_guest_exited(k->vm, code);
	return NULL;
}

int kvm_vcpu_start(struct kvm_vcpu_ctx *c)
{
	int ret;

	pthread_mutex_lock(&c->k->lock);
	c->k->alive++;
	pthread_mutex_unlock(&c->k->lock);
	ret = -pthread_create(&c->thread, NULL, vcpu_thread, c);
	if (ret) {
		pr_err("cannot start vCPU %u: %s", c->idx, strerror(-ret));
		pthread_mutex_lock(&c->k->lock);
		c->k->alive--;
		pthread_mutex_unlock(&c->k->lock);
		return ret;
	}
	c->running = true;
	vm_thread_name_vcpu(c->thread, c->idx);
	return 0;
}

/*
 * Sets the pause request, then kicks each vCPU: immediate_exit makes a
 * KVM_RUN that has not entered yet return at once, and SIGUSR1 (installed
 * without SA_RESTART) interrupts one that has. Returning through KVM_RUN
 * also completes a pending port I/O, so the saved state is consistent.
 */
int kvm_vcpus_pause(struct kvm_vm *k)
{
	atomic_store(&k->pause_req, true);
	for (unsigned int i = 0; i < VM_MAX_CPUS; i++) {
		if (!k->cpu[i].running)
			continue;
		__atomic_store_n(&k->cpu[i].run->immediate_exit, 1,
				 __ATOMIC_SEQ_CST);
		pthread_kill(k->cpu[i].thread, SIGUSR1);
	}
	pthread_mutex_lock(&k->lock);
	while (k->parked < k->alive)
		pthread_cond_wait(&k->cond, &k->lock);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

void kvm_vcpus_resume(struct kvm_vm *k)
{
	pthread_mutex_lock(&k->lock);
	atomic_store(&k->pause_req, false);
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

/* ---- state ---- */

struct simple_sec {
	uint32_t type;
	unsigned long get, set;
	size_t size;
	bool optional;	/* skipped (with a warning) where KVM lacks it */
};

static const struct simple_sec simple_secs[] = {
	{ SEC_REGS, KVM_GET_REGS, KVM_SET_REGS, sizeof(struct kvm_regs),
	  false },
	{ SEC_SREGS, KVM_GET_SREGS, KVM_SET_SREGS, sizeof(struct kvm_sregs),
	  false },
	{ SEC_XCRS, KVM_GET_XCRS, KVM_SET_XCRS, sizeof(struct kvm_xcrs),
	  true },
	{ SEC_EVENTS, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
	  sizeof(struct kvm_vcpu_events), true },
	{ SEC_MP_STATE, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	  sizeof(struct kvm_mp_state), true },
	{ SEC_DEBUGREGS, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	  sizeof(struct kvm_debugregs), true },
	{ SEC_LAPIC, KVM_GET_LAPIC, KVM_SET_LAPIC,
	  sizeof(struct kvm_lapic_state), false },
};

static int save_xsave(struct kvm_vcpu_ctx *c, struct vm_blob *b)
{
	int size = ioctl(c->k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	unsigned long req = KVM_GET_XSAVE2;
	void *buf;
	int ret;

	if (size < (int)sizeof(struct kvm_xsave)) {
		size = sizeof(struct kvm_xsave);
		req = KVM_GET_XSAVE;
	}
	buf = calloc(1, (size_t)size);
	if (!buf)
		return -ENOMEM;
	ret = ioctl(c->fd, req, buf) ? -errno : 0;
	if (!ret) {
		ret = vm_blob_add(b, SEC_XSAVE, c->idx, buf, (size_t)size);
	} else if (ret == -EINVAL || ret == -ENOTTY) {
		/* No XSAVE in this KVM: the legacy FPU/SSE state then. */
		struct kvm_fpu fpu;

		ret = ioctl(c->fd, KVM_GET_FPU, &fpu) ? -errno : 0;
		if (!ret)
			ret = vm_blob_add(b, SEC_FPU, c->idx, &fpu, sizeof(fpu));
	}
	if (ret)
		pr_err("vCPU %u: saving FPU state: %s", c->idx, strerror(-ret));
	free(buf);
	return ret;
}

static int save_msrs(struct kvm_vcpu_ctx *c, struct vm_blob *b)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[UT_ARRAY_SIZE(saved_msrs)];
	} m = { 0 };
	unsigned int n = 0;

	/* One at a time: KVM_GET_MSRS stops at the first it cannot read. */
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(saved_msrs); i++) {
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} one = { .hdr.nmsrs = 1, .e.index = saved_msrs[i] };

		if (ioctl(c->fd, KVM_GET_MSRS, &one) == 1)
			m.e[n++] = one.e;
	}
	m.hdr.nmsrs = n;
	return vm_blob_add(b, SEC_MSRS, c->idx, &m,
			   sizeof(m.hdr) + n * sizeof(m.e[0]));
}

int kvm_vcpu_save(struct kvm_vcpu_ctx *c, struct vm_blob *b)
{
	uint8_t buf[sizeof(struct kvm_lapic_state) + sizeof(struct kvm_sregs)];
	int ret = 0;

	for (unsigned int i = 0; !ret && i < UT_ARRAY_SIZE(simple_secs); i++) {
		const struct simple_sec *s = &simple_secs[i];

		if (s->type == SEC_LAPIC && !c->k->irqchip)
			continue;
		if (ioctl(c->fd, s->get, buf)) {
			ret = -errno;
			if (s->optional && (ret == -EINVAL || ret == -ENOTTY ||
					    ret == -ENXIO)) {
				pr_warn("vCPU %u: KVM cannot save section %#x "
					"(%s); left out", c->idx, s->type,
					strerror(-ret));
				ret = 0;
				continue;
			}
			pr_err("vCPU %u: saving section %#x: %s", c->idx,
			       s->type, strerror(-ret));
			break;
		}
		ret = vm_blob_add(b, s->type, c->idx, buf, s->size);
	}
	if (!ret)
		ret = save_xsave(c, b);
	if (!ret)
		ret = save_msrs(c, b);
	return ret;
}

static int load_one(struct kvm_vcpu_ctx *c, const uint8_t *blob, size_t len,
		    uint32_t type, unsigned long req, size_t size, bool exact)
{
	const void *p;
	size_t n;

	p = vm_blob_find(blob, len, type, c->idx, &n);
	if (!p)
		return 0;	/* not saved (e.g. no irqchip): keep as is */
	if ((exact && n != size) || n < size) {
		pr_err("vCPU %u: state section %#x has %zu bytes", c->idx,
		       type, n);
		return -EINVAL;
	}
	if (ioctl(c->fd, req, p) < 0) {
		int ret = -errno;

		pr_err("vCPU %u: restoring section %#x: %s", c->idx, type,
		       strerror(-ret));
		return ret;
	}
	return 0;
}

static int load_msrs(struct kvm_vcpu_ctx *c, const uint8_t *blob, size_t len)
{
	const struct kvm_msrs *m;
	size_t n;
	int ret;

	m = vm_blob_find(blob, len, SEC_MSRS, c->idx, &n);
	if (!m)
		return 0;
	if (n < sizeof(*m) ||
	    n != sizeof(*m) + m->nmsrs * sizeof(struct kvm_msr_entry)) {
		pr_err("vCPU %u: bad MSR section", c->idx);
		return -EINVAL;
	}
	ret = ioctl(c->fd, KVM_SET_MSRS, m);
	if (ret != (int)m->nmsrs) {
		pr_err("vCPU %u: KVM_SET_MSRS set %d of %u", c->idx, ret,
		       m->nmsrs);
		return -EINVAL;
	}
	return 0;
}

int kvm_vcpu_load(struct kvm_vcpu_ctx *c, const uint8_t *blob, size_t len)
{
	size_t xs = sizeof(struct kvm_xsave);
	int ret;

	if (!vm_blob_find(blob, len, SEC_REGS, c->idx, &xs) ||
	    !vm_blob_find(blob, len, SEC_SREGS, c->idx, &xs)) {
		pr_err("state blob lacks vCPU %u's registers", c->idx);
		return -EINVAL;
	}
	ret = load_one(c, blob, len, SEC_SREGS, KVM_SET_SREGS,
		       sizeof(struct kvm_sregs), true);
	if (!ret)
		ret = load_one(c, blob, len, SEC_REGS, KVM_SET_REGS,
			       sizeof(struct kvm_regs), true);
	if (!ret)
		ret = load_one(c, blob, len, SEC_XSAVE, KVM_SET_XSAVE,
			       sizeof(struct kvm_xsave), false);
	if (!ret)
		ret = load_one(c, blob, len, SEC_FPU, KVM_SET_FPU,
			       sizeof(struct kvm_fpu), true);
	if (!ret)
		ret = load_one(c, blob, len, SEC_XCRS, KVM_SET_XCRS,
			       sizeof(struct kvm_xcrs), true);
	if (!ret)
		ret = load_msrs(c, blob, len);
	if (!ret)
		ret = load_one(c, blob, len, SEC_EVENTS, KVM_SET_VCPU_EVENTS,
			       sizeof(struct kvm_vcpu_events), true);
	if (!ret)
		ret = load_one(c, blob, len, SEC_MP_STATE, KVM_SET_MP_STATE,
			       sizeof(struct kvm_mp_state), true);
	if (!ret && c->k->irqchip)
		ret = load_one(c, blob, len, SEC_LAPIC, KVM_SET_LAPIC,
			       sizeof(struct kvm_lapic_state), true);
	if (!ret)
		ret = load_one(c, blob, len, SEC_DEBUGREGS, KVM_SET_DEBUGREGS,
			       sizeof(struct kvm_debugregs), true);
	return ret;
}
