// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The VM link server (protocol: vmlink/vmlink.h). One thread owns the
 * listening socket and at most one agent connection at a time (a second
 * agent is turned away); it is stopped through an eventfd.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

struct vm_link {
	struct vm *vm;
	char *path;		/* unlinked on stop */
	int listen_fd;
	int conn_fd;		/* the agent, -1 if none */
	int stop_fd;		/* eventfd: stop the thread */
	pthread_t thread;
	bool thread_started;
};

static void fill_hello(struct vm *vm, struct vml_hello *h, int uffd)
{
	struct vml_region *r = &h->regions[0];

	*h = (struct vml_hello){
		.version = VML_VERSION,
		.pid = (uint32_t)getpid(),
		.flags = (vm->cfg.nokvm ? VML_F_NOKVM : 0) |
			 (vm->ops->dirty_log ? VML_F_DIRTY_LOG : 0) |
			 VML_F_ADVISE |
			 (vm_run_state(vm) == VML_STATE_INCOMING ?
				  VML_F_INCOMING : 0),
		.nr_vcpus = vm->cfg.nr_cpus,
		.nr_regions = 1,
		.uffd = uffd,
	};
	*r = (struct vml_region){
		.gpa = 0,
		.size = vm->ram.size,
		.host_addr = (uint64_t)(uintptr_t)vm->ram.host,
		.fd_offset = vm->ram.fd_offset,
		.page_size = vm->ram.page_size,
		.backing = vm->ram.backing,
		.fd = vm->ram.fd,
	};
}

static int do_save(struct vm_link *l, uint16_t type)
{
	void *blob;
	size_t len;
	int ret = vm_save_state(l->vm, &blob, &len);

	ret = vml_server_reply(l->conn_fd, type, ret, blob, ret ? 0 : len);
	free(blob);
	return ret;
}

static int do_status(struct vm_link *l, uint16_t type)
{
	uint8_t st[16];

	vml_status_encode(st, vm_run_state(l->vm),
			  vm_console_heartbeats(&l->vm->con, NULL));
	return vml_server_reply(l->conn_fd, type, 0, st, sizeof(st));
}

static int do_dirty_log(struct vm_link *l, const struct vml_msg *m)
{
	uint64_t *bm = NULL;
	size_t words = 0;
	uint32_t region, op;
	int st = -EINVAL, ret;

	if (m->hdr.len == 8) {
		memcpy(&region, m->payload, 4);	/* LE: x86 only */
		memcpy(&op, m->payload + 4, 4);
		st = vm_dirty_log(l->vm, region, op, &bm, &words);
	}
	ret = vml_server_reply(l->conn_fd, m->hdr.type, st, bm,
			       st ? 0 : words * 8);
	free(bm);
	return ret;
}

static int do_advise(struct vm_link *l, const struct vml_msg *m)
{
	struct vml_range *ranges = malloc(VML_MAX_ADVISE * sizeof(*ranges));
	struct vml_advise a = { .ranges = ranges };
	struct vml_hello h;
	int st = -ENOMEM;

	fill_hello(l->vm, &h, -1);
	if (ranges) {
		st = vml_advise_decode(&a, m->payload, m->hdr.len, &h);
		if (st)
			pr_warn("link: refused an advise: %s",
				vml_strerror(st));
		else
			st = vm_advise(l->vm, &a);
	}
	free(ranges);
	return vml_server_reply(l->conn_fd, m->hdr.type, st, NULL, 0);
}

/* Serves one request; returns -errno when the connection should close. */
static int serve(struct vm_link *l, const struct vml_msg *m)
{
	uint16_t type = m->hdr.type;
	int st;

	pr_info("link: %s", vml_msg_name(type));
	switch (type) {
	case VML_MSG_PAUSE:
		st = vm_pause(l->vm);
		break;
	case VML_MSG_RESUME:
		st = vm_resume(l->vm);
		break;
	case VML_MSG_SAVE_STATE:
		return do_save(l, type);
	case VML_MSG_LOAD_STATE:
		st = vm_load_state(l->vm, m->payload, m->hdr.len);
		break;
	case VML_MSG_COMMIT:
		st = vm_commit(l->vm);
		break;
	case VML_MSG_STATUS:
		return do_status(l, type);
	case VML_MSG_DIRTY_LOG:
		return do_dirty_log(l, m);
	case VML_MSG_ADVISE:
		return do_advise(l, m);
	case VML_MSG_QUIT:
		vml_server_reply(l->conn_fd, type, 0, NULL, 0);
		vm_request_quit(l->vm);
		return -ESHUTDOWN;
	default:
		st = -EOPNOTSUPP;
		break;
	}
	return vml_server_reply(l->conn_fd, type, st, NULL, 0);
}

static void drop_conn(struct vm_link *l)
{
	if (l->conn_fd >= 0)
		close(l->conn_fd);
	l->conn_fd = -1;
}

/* The agent hung up or broke the protocol: what it leaves is decided by
 * whether it committed the switchover (vm_agent_gone()). */
static void agent_gone(struct vm_link *l)
{
	drop_conn(l);
	vm_agent_gone(l->vm);
}

static bool conn_closed(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void accept_conn(struct vm_link *l)
{
	struct vml_hello h;
	int uffd, fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (l->conn_fd >= 0 && conn_closed(l->conn_fd))
		agent_gone(l);	/* the previous agent left; its close raced */
	if (l->conn_fd >= 0) {
		pr_warn("link: an agent is already connected; refusing another");
		close(fd);
		return;
	}
	l->conn_fd = fd;
	/*
	 * A fresh userfaultfd per agent, and none kept here: its lifetime is
	 * the agent's, so when an agent dies the kernel drops its
	 * registrations and wakes any faulting vCPU instead of leaving guest
	 * RAM registered to a reader that is gone. A new agent can attach
	 * (and do its own UFFDIO_API, which works once per uffd).
	 */
	uffd = gm_uffd_create_raw();
	fill_hello(l->vm, &h, uffd);
	if (vml_server_hello(fd, &h))
		drop_conn(l);
	if (uffd >= 0)
		close(uffd);
}

static void *link_thread(void *arg)
{
	struct vm_link *l = arg;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = l->stop_fd, .events = POLLIN },
			{ .fd = l->listen_fd, .events = POLLIN },
			{ .fd = l->conn_fd, .events = POLLIN },
		};
		struct vml_msg m;

		if (poll(p, l->conn_fd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_err("link: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		/* The agent's messages (or its hangup) before a new agent. */
		if (l->conn_fd >= 0 && (p[2].revents & (POLLIN | POLLHUP))) {
			if (vml_recv(l->conn_fd, &m) || serve(l, &m))
				agent_gone(l);
			vml_msg_fini(&m);
		}
		if (p[1].revents & POLLIN)
			accept_conn(l);
	}
	return NULL;
}

int vm_link_open(struct vm_link **out, const char *path)
{
	struct vm_link *l = calloc(1, sizeof(*l));
	int ret;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	*l = (struct vm_link){ .listen_fd = -1, .conn_fd = -1, .stop_fd = -1 };
	ret = vml_server_listen(path, &l->listen_fd);
	if (ret)
		goto free_link;
	l->path = strdup(path);
	l->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (!l->path || l->stop_fd < 0) {
		ret = -ENOMEM;
		goto stop_link;
	}
	*out = l;
	return 0;

stop_link:
	vm_link_stop(l);
	return ret;
free_link:
	free(l);
	return ret;
}

int vm_link_start(struct vm_link *l, struct vm *vm)
{
	int ret;

	l->vm = vm;
	ret = -pthread_create(&l->thread, NULL, link_thread, l);
	if (ret) {
		pr_err("cannot start the link thread: %s", strerror(-ret));
		return ret;
	}
	l->thread_started = true;
	return 0;
}

void vm_link_stop(struct vm_link *l)
{
	uint64_t one = 1;

	if (!l)
		return;
	if (l->thread_started) {
		if (write(l->stop_fd, &one, sizeof(one)) < 0)
			pr_warn("link: eventfd write: %s", strerror(errno));
		pthread_join(l->thread, NULL);
	}
	drop_conn(l);
	if (l->listen_fd >= 0) {
		close(l->listen_fd);
		if (l->path)
			unlink(l->path);
	}
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	free(l->path);
	free(l);
}
