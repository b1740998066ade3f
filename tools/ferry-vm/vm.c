// SPDX-License-Identifier: LGPL-2.1-or-later
/* Run control and the guest console, shared by both backends. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

/* ---- console ---- */

int vm_console_init(struct vm_console *c, const char *path)
{
	int ret;

	*c = (struct vm_console){ .fd = STDOUT_FILENO };
	c->last_hb_ns = ut_now_ns();
	pthread_mutex_init(&c->lock, NULL);
	if (!path)
		return 0;
	c->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (c->fd < 0) {
		ret = -errno;
		pr_err("cannot open console log %s: %s", path, strerror(-ret));
		c->fd = -1;
		return ret;
	}
	c->own_fd = true;
	return 0;
}

void vm_console_fini(struct vm_console *c)
{
	/* A line cut by the VM's end (say a quit while the guest prints a
	 * heartbeat) is not written as one: a parser would take it whole. */
	if (c->len) {
		c->line[c->len] = 0;
		pr_info("guest output cut at exit: %s", c->line);
		c->len = 0;
	}
	if (c->own_fd && c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	pthread_mutex_destroy(&c->lock);
}

static void flush_line(struct vm_console *c)
{
	if (c->len > 3 && !memcmp(c->line, "HB ", 3)) {
		c->hbs++;
		c->last_hb_ns = ut_now_ns();
	}
	if (write(c->fd, c->line, c->len) < 0 && !c->write_failed) {
		pr_warn("console write failed: %s (guest output lost from "
			"here on)", strerror(errno));
		c->write_failed = true;
	}
	c->len = 0;
}

void vm_console_write(struct vm_console *c, const char *s, size_t len)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r')
			continue;
		c->line[c->len++] = s[i];
		if (s[i] == '\n' || c->len == sizeof(c->line) - 1)
			flush_line(c);
	}
	pthread_mutex_unlock(&c->lock);
}

uint64_t vm_console_heartbeats(struct vm_console *c, uint64_t *last_ns)
{
	uint64_t n;

	pthread_mutex_lock(&c->lock);
	n = c->hbs;
	if (last_ns)
		*last_ns = c->last_hb_ns;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---- run control ---- */

static void wake_main(struct vm *vm)
{
	uint64_t one = 1;

	if (write(vm->event_fd, &one, sizeof(one)) < 0)
		pr_warn("eventfd write failed: %s", strerror(errno));
}

void vm_thread_name_vcpu(pthread_t t, unsigned int idx)
{
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", idx);
	pthread_setname_np(t, name);
}

void vm_guest_exited(struct vm *vm, int code)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->exit_code < 0) {
		vm->exit_code = code;
		vm->state = VML_STATE_STOPPED;
	}
	pthread_mutex_unlock(&vm->lock);
	wake_main(vm);
}

int vm_commit(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VML_STATE_PAUSED)
		vm->committed = true;
	else
		ret = -EBUSY;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vm_agent_gone(struct vm *vm)
{
	bool paused, committed, quit;

	pthread_mutex_lock(&vm->lock);
	paused = vm->state == VML_STATE_PAUSED;
	committed = vm->committed;
	quit = vm->quit;
	pthread_mutex_unlock(&vm->lock);
	if (!paused || quit)
		return;
	if (committed) {
		pr_warn("the agent left after committing the switchover: the "
			"VM stays paused here (its running copy may be at the "
			"destination; ferry-source --recover can finish it)");
		return;
	}
	if (vm_resume(vm))
		pr_err("the agent left with the VM paused; resuming it failed");
	else
		pr_warn("the agent left with the VM paused before the "
			"switchover was committed: the guest runs here again");
}

void vm_request_quit(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->quit = true;
	pthread_mutex_unlock(&vm->lock);
	wake_main(vm);
}

enum vml_run_state vm_run_state(struct vm *vm)
{
	enum vml_run_state s;

	pthread_mutex_lock(&vm->lock);
	s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

int vm_pause(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VML_STATE_RUNNING) {
		ret = vm->ops->pause(vm);
		if (!ret)
			vm->state = VML_STATE_PAUSED;
	} else if (vm->state == VML_STATE_STOPPED) {
		ret = -EBUSY;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

uint32_t vm_resume_token(struct vm *vm)
{
	return __atomic_load_n(&vm->resume_token, __ATOMIC_ACQUIRE);
}

/* A token no earlier resume of this VM, nor (but by a 2^-32 chance) another
 * VMM, gave: the clock and the pid, never 0 (a fresh guest's epoch) nor all
 * ones (what an unassigned port reads, which the guest takes for "not
 * ferry-vm"). Set
 * before the vCPUs run again, with vm->lock held. */
static void new_resume_token(struct vm *vm)
{
	uint64_t x = ut_now_ns() ^ ((uint64_t)getpid() << 32);
	uint32_t t;

	x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull;
	t = (uint32_t)(x ^ (x >> 32));
	if (!t || t == 0xffffffffu || t == vm->resume_token)
		t = vm->resume_token == 1 ? 2 : 1;	/* valid, and new */
	__atomic_store_n(&vm->resume_token, t, __ATOMIC_RELEASE);
}

int vm_resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	switch (vm->state) {
	case VML_STATE_INCOMING:
		if (!vm->loaded) {
			pr_err("resume before load-state in incoming mode");
			ret = -EBUSY;
			break;
		}
		new_resume_token(vm);
		ret = vm->ops->start(vm);
		if (!ret) {
			vm->started = true;
			vm->state = VML_STATE_RUNNING;
			vm->run_since_ns = ut_now_ns();
		}
		break;
	case VML_STATE_PAUSED:
		new_resume_token(vm);
		ret = vm->ops->resume(vm);
		if (!ret) {
			vm->state = VML_STATE_RUNNING;
			vm->run_since_ns = ut_now_ns();
			vm->committed = false;
		}
		break;
	case VML_STATE_RUNNING:
		break;
	case VML_STATE_STOPPED:
		ret = -EBUSY;
		break;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_save_state(struct vm *vm, void **blob, size_t *len)
{
	struct vm_blob b = { 0 };
	int ret = -EBUSY;

	*blob = NULL;
	*len = 0;
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VML_STATE_PAUSED &&
	    !(vm->state == VML_STATE_STOPPED && vm->started)) {
		pr_err("save-state needs a paused VM");
		goto unlock;
	}
	ret = vm_blob_init(&b, vm->cfg.nokvm ? VM_BLOB_NOKVM : VM_BLOB_KVM,
			   vm->cfg.nr_cpus, vm->ram.size);
	if (!ret)
		ret = vm->ops->save(vm, &b);
	if (ret) {
		vm_blob_fini(&b);
		goto unlock;
	}
	*blob = b.buf;
	*len = b.len;
unlock:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_load_state(struct vm *vm, const void *blob, size_t len)
{
	int ret;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VML_STATE_INCOMING && vm->state != VML_STATE_PAUSED) {
		pr_err("load-state needs a paused or incoming VM");
		ret = -EBUSY;
		goto unlock;
	}
	ret = vm_blob_check(blob, len,
			    vm->cfg.nokvm ? VM_BLOB_NOKVM : VM_BLOB_KVM,
			    vm->cfg.nr_cpus, vm->ram.size);
	if (!ret)
		ret = vm->ops->load(vm, blob, len);
	if (!ret)
		vm->loaded = true;
unlock:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_dirty_log(struct vm *vm, uint32_t region, uint32_t op, uint64_t **bm,
		 size_t *words)
{
	int ret;

	*bm = NULL;
	*words = 0;
	if (!vm->ops->dirty_log)
		return -EOPNOTSUPP;
	if (region != 0 || op < VML_DIRTY_START || op > VML_DIRTY_STOP)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	ret = vm->ops->dirty_log(vm, op, bm, words);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static const char *advice_name(uint32_t advice)
{
	return advice == VML_ADVISE_DONTNEED ? "dontneed" :
	       advice == VML_ADVISE_MERGEABLE ? "mergeable" : "bind";
}

int vm_advise(struct vm *vm, const struct vml_advise *a)
{
	uint64_t bytes = 0;
	int ret = 0;

	/* Our own mappings: the agent cannot madvise or mbind this
	 * process's private memory (process_madvise has neither advice). */
	for (uint32_t i = 0; !ret && i < a->nr; i++) {
		uint8_t *p = (uint8_t *)vm->ram.host + a->ranges[i].off;
		size_t len = a->ranges[i].len;

		if (a->advice == VML_ADVISE_BIND)
			ret = gm_numa_bind(p, len, a->node);
		else if (madvise(p, len, a->advice == VML_ADVISE_DONTNEED ?
				 MADV_DONTNEED : MADV_MERGEABLE))
			ret = -errno;
		if (ret)
			pr_err("link: advise %s of %zu bytes at %llu: %s",
			       advice_name(a->advice), len,
			       (unsigned long long)a->ranges[i].off,
			       strerror(-ret));
		bytes += len;
	}
	if (!ret)
		pr_info("link: advised %s for %u ranges, %llu KiB",
			advice_name(a->advice), a->nr,
			(unsigned long long)(bytes >> 10));
	return ret;
}

int vm_init(struct vm *vm, const struct vm_config *cfg)
{
	*vm = (struct vm){ .cfg = *cfg, .exit_code = -1 };
	vm->ram.fd = -1;
	vm->con.fd = -1;
	vm->ops = cfg->nokvm ? &vm_nokvm_ops : &vm_kvm_ops;
	vm->state = VML_STATE_INCOMING;
	pthread_mutex_init(&vm->lock, NULL);
	vm->event_fd = eventfd(0, EFD_CLOEXEC);
	if (vm->event_fd < 0) {
		int ret = -errno;

		pr_err("eventfd: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

void vm_fini(struct vm *vm)
{
	if (vm->ops)
		vm->ops->fini(vm);
	gm_region_fini(&vm->ram);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	pthread_mutex_destroy(&vm->lock);
}
