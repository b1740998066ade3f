/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM backend's private structs, shared by kvm.c and cpu.c. */
#ifndef FERRY_VM_KVM_INTERNAL_H
#define FERRY_VM_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <stdatomic.h>

#include "tools/ferry-vm/vm.h"

/* Guest physical layout below the payload (which sits at 1 MiB). */
#define BOOT_GDT 0x1000ull	/* GDT: null, code64, data, TSS (16 B) */
#define BOOT_TSS 0x1800ull	/* 104-byte TSS (never used, must exist) */
#define BOOT_PML4 0x2000ull
#define BOOT_PDPT 0x3000ull
#define BOOT_MBI 0x8000ull	/* Multiboot info the guest reads */
#define BOOT_CMDLINE 0x9000ull	/* its command line, up to 4 KiB */
#define BOOT_PD 0x10000ull	/* page directories, one per GiB */
#define BOOT_MAX_GIB 64u	/* 2 MiB pages up to 64 GiB */
#define KVM_TSS_ADDR 0xfffbd000ull

struct kvm_vm;

struct kvm_vcpu_ctx {
	struct kvm_vm *k;
	unsigned int idx;
	int fd;			/* vCPU fd, -1 */
	struct kvm_run *run;	/* mmap'ed, NULL */
	pthread_t thread;
	bool running;		/* thread created */
};

struct kvm_vm {
	struct vm *vm;
	int sys_fd;		/* /dev/kvm */
	int vm_fd;
	size_t run_size;	/* KVM_GET_VCPU_MMAP_SIZE */
	bool irqchip;		/* in-kernel irqchip created */
	bool dirty_logging;	/* slot 0 has KVM_MEM_LOG_DIRTY_PAGES */
	uint64_t entry64;	/* payload's 64-bit entry */
	uint64_t tsc_khz;
	struct kvm_cpuid2 *cpuid;
	/* run control: vCPU threads park here while paused */
	_Atomic bool pause_req;
	_Atomic bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int parked, alive;
	struct kvm_vcpu_ctx cpu[VM_MAX_CPUS];
};

/* cpu.c. All return 0 or -errno and log once. */
/* Creates vCPU @idx: fd, kvm_run mapping, CPUID; vCPU 0 reads the TSC rate. */
int kvm_vcpu_create(struct kvm_vm *k, unsigned int idx);
/* Kicks and joins the vCPU's thread (k->stop must be set), unmaps, closes. */
void kvm_vcpu_destroy(struct kvm_vcpu_ctx *c);
/* Long-mode entry state at the payload's 64-bit entry (fresh boots). */
int kvm_vcpu_boot_regs(struct kvm_vcpu_ctx *c);
/* Starts the vCPU's thread (KVM_RUN loop). */
int kvm_vcpu_start(struct kvm_vcpu_ctx *c);
/* Stops every running vCPU out of KVM_RUN; returns once all are parked. */
int kvm_vcpus_pause(struct kvm_vm *k);
void kvm_vcpus_resume(struct kvm_vm *k);
/* Appends / applies this vCPU's sections of the state blob (paused). */
int kvm_vcpu_save(struct kvm_vcpu_ctx *c, struct vm_blob *b);
int kvm_vcpu_load(struct kvm_vcpu_ctx *c, const uint8_t *blob, size_t len);

#endif /* FERRY_VM_KVM_INTERNAL_H */
