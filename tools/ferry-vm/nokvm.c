// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The no-KVM backend: the guest workload (tools/guest/workload.c, the same
 * source the payload runs) executes as one native thread per vCPU over
 * guest RAM, for hosts without /dev/kvm. Guest RAM, the VM link and the
 * verification are the same as with KVM; the "vCPU state" is only the
 * guest clock, since the workload keeps all its state in guest RAM.
 *
 * The guest clock is CLOCK_MONOTONIC in ns plus an offset. It keeps
 * running while paused (as a KVM guest's TSC does), and a load-state sets
 * it to the saved value (as restoring MSR_IA32_TSC does).
 *
 * The threads spin on wl_step() and check an atomic pause/stop word
 * between steps (a step is well under a millisecond); they block only on
 * the backend's condition variable while paused.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

enum { SEC_NOKVM_CLOCK = 0x100 };

struct nokvm_cpu {
	struct nokvm *nk;
	unsigned int idx;
	pthread_t thread;
	bool running;		/* thread was created */
};

struct nokvm {
	struct vm *vm;
	struct wl_env env;
	_Atomic int64_t clock_off;	/* guest ns = monotonic + clock_off */
	_Atomic bool pause_req;
	_Atomic bool stop;
	pthread_mutex_t lock;		/* guards parked, with cond */
	pthread_cond_t cond;
	unsigned int parked;		/* threads waiting in park() */
	unsigned int alive;		/* threads still in their loop */
	struct nokvm_cpu cpu[VM_MAX_CPUS];
};

static uint64_t env_now(void *arg)
{
	struct nokvm *nk = arg;

	return ut_now_ns() + atomic_load(&nk->clock_off);
}

static void env_write(void *arg, const char *s, size_t len)
{
	struct nokvm *nk = arg;

	vm_console_write(&nk->vm->con, s, len);
}

static uint32_t env_resume_token(void *arg)
{
	struct nokvm *nk = arg;

	return vm_resume_token(nk->vm);
}

static void park(struct nokvm *nk)
{
	pthread_mutex_lock(&nk->lock);
	nk->parked++;
	pthread_cond_broadcast(&nk->cond);
	while (atomic_load(&nk->pause_req) && !atomic_load(&nk->stop))
		pthread_cond_wait(&nk->cond, &nk->lock);
	nk->parked--;
	pthread_mutex_unlock(&nk->lock);
}

static void *cpu_thread(void *arg)
{
	struct nokvm_cpu *c = arg;
	struct nokvm *nk = c->nk;
	enum wl_status st = WL_RUNNING;

	while (!atomic_load(&nk->stop)) {
		if (atomic_load(&nk->pause_req)) {
			park(nk);
			continue;
		}
		st = wl_step(&nk->env, c->idx);
		if (st != WL_RUNNING)
			break;
	}
	pthread_mutex_lock(&nk->lock);
	nk->alive--;
	pthread_cond_broadcast(&nk->cond);
	pthread_mutex_unlock(&nk->lock);
	if (st == WL_FAILED)
		vm_guest_exited(nk->vm, VM_EXIT_VERIFY);
	else if (st == WL_DONE)
		vm_guest_exited(nk->vm, VM_EXIT_OK);
	return NULL;
}

static int nokvm_init(struct vm *vm, bool fresh)
{
	struct nokvm *nk = calloc(1, sizeof(*nk));
	int ret;

	if (!nk)
		return -ENOMEM;
	nk->vm = vm;
	nk->env = (struct wl_env){ .now = env_now, .write = env_write,
				   .resume_token = env_resume_token,
				   .arg = nk, .mem = vm->ram.host };
	pthread_mutex_init(&nk->lock, NULL);
	pthread_cond_init(&nk->cond, NULL);
	vm->backend = nk;
	if (!fresh)
		return 0;
	/* The guest clock counts ns: 1e6 ticks per ms. */
	vm->params.tsc_khz = 1000000;
	ret = wl_init(&nk->env, &vm->params);
	if (ret) {
		pr_err("invalid workload parameters");
		return -EINVAL;
	}
	return 0;
}

static int nokvm_start(struct vm *vm)
{
	struct nokvm *nk = vm->backend;
	struct wl_hdr *h = wl_hdr_get(&nk->env);
	int ret;

	if (!h || h->p.cpus != vm->cfg.nr_cpus) {
		pr_err("guest RAM holds no workload for %u CPUs to resume",
		       vm->cfg.nr_cpus);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < vm->cfg.nr_cpus; i++) {
		struct nokvm_cpu *c = &nk->cpu[i];

		c->nk = nk;
		c->idx = i;
		pthread_mutex_lock(&nk->lock);
		nk->alive++;
		pthread_mutex_unlock(&nk->lock);
		ret = -pthread_create(&c->thread, NULL, cpu_thread, c);
		if (ret) {
			pr_err("cannot start vCPU thread %u: %s", i,
			       strerror(-ret));
			nk->alive--;
			return ret;
		}
		c->running = true;
		vm_thread_name_vcpu(c->thread, i);
	}
	return 0;
}

static int nokvm_pause(struct vm *vm)
{
	struct nokvm *nk = vm->backend;

	atomic_store(&nk->pause_req, true);
	pthread_mutex_lock(&nk->lock);
	while (nk->parked < nk->alive)
		pthread_cond_wait(&nk->cond, &nk->lock);
	pthread_mutex_unlock(&nk->lock);
	return 0;
}

static int nokvm_resume(struct vm *vm)
{
	struct nokvm *nk = vm->backend;

	pthread_mutex_lock(&nk->lock);
	atomic_store(&nk->pause_req, false);
	pthread_cond_broadcast(&nk->cond);
	pthread_mutex_unlock(&nk->lock);
	return 0;
}

static int nokvm_save(struct vm *vm, struct vm_blob *b)
{
	struct nokvm *nk = vm->backend;
	uint64_t now = env_now(nk);

	return vm_blob_add(b, SEC_NOKVM_CLOCK, VM_BLOB_VM, &now, sizeof(now));
}

static int nokvm_load(struct vm *vm, const uint8_t *blob, size_t len)
{
	struct nokvm *nk = vm->backend;
	const void *p;
	uint64_t clock;
	size_t n;

	p = vm_blob_find(blob, len, SEC_NOKVM_CLOCK, VM_BLOB_VM, &n);
	if (!p || n != sizeof(clock)) {
		pr_err("state blob lacks the guest clock");
		return -EINVAL;
	}
	memcpy(&clock, p, sizeof(clock));
	atomic_store(&nk->clock_off, (int64_t)(clock - ut_now_ns()));
	return 0;
}

static void nokvm_fini(struct vm *vm)
{
	struct nokvm *nk = vm->backend;

	if (!nk)
		return;
	pthread_mutex_lock(&nk->lock);
	atomic_store(&nk->stop, true);
	pthread_cond_broadcast(&nk->cond);
	pthread_mutex_unlock(&nk->lock);
	for (unsigned int i = 0; i < VM_MAX_CPUS; i++)
		if (nk->cpu[i].running)
			pthread_join(nk->cpu[i].thread, NULL);
	pthread_cond_destroy(&nk->cond);
	pthread_mutex_destroy(&nk->lock);
	free(nk);
	vm->backend = NULL;
}

const struct vm_backend_ops vm_nokvm_ops = {
	.name = "no-KVM",
	.init = nokvm_init,
	.start = nokvm_start,
	.pause = nokvm_pause,
	.resume = nokvm_resume,
	.save = nokvm_save,
	.load = nokvm_load,
	.fini = nokvm_fini,
};
