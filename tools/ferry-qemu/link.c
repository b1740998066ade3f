// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The VM link served for a QEMU (protocol: vmlink/vmlink.h). One thread
 * polls QEMU's monitor (its hangup ends us), the listening socket and at
 * most one agent. Each request is carried out with QMP before the next is
 * read; the agent serves the uffd on threads of its own, so QEMU touching
 * guest RAM while loading device state does not wait for this loop.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

#define RUNSTATE_WAIT_MS 10000
#define ATTACH_WAIT_MS 10000

struct fq_daemon {
	const struct fq_link_params *p;
	struct fq_qmp qmp;
	struct fq_ram ram;
	int listen_fd;
	int conn_fd;		/* the agent, -1 if none */
	bool kvm;		/* QEMU runs its vCPUs on KVM */
	uint32_t nr_vcpus;
	bool done;		/* QUIT served or QEMU gone */
	bool agent_paused;	/* the agent's PAUSE stopped QEMU */
	bool committed;		/* the agent's COMMIT, until a RESUME */
	struct fq_stream stream;	/* libvirt's (source), docs/libvirt.md */
};

/* libvirt runs this QEMU's migration: the stream is carried as the blob */
static bool libvirt_source(const struct fq_daemon *d)
{
	return d->p->stream_listen >= 0;
}

static bool libvirt_mode(const struct fq_daemon *d)
{
	return libvirt_source(d) || d->p->libvirt_incoming;
}

static void msleep(unsigned int ms)
{
	nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L },
		  NULL);
}

/* A fresh userfaultfd made inside QEMU by the preload, or -errno. */
static int take_uffd(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	char byte, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int s, fd = -EPROTO;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&a, sizeof(a))) {
		fd = -errno;
		goto out;
	}
	if (recvmsg(s, &mh, MSG_CMSG_CLOEXEC) != 1) {
		fd = -EIO;
		goto out;
	}
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	else
		fd = -EPERM;	/* 'E': QEMU could not make one */
out:
	close(s);
	return fd;
}

static uint32_t run_state(const char *st)
{
	if (!strcmp(st, "running"))
		return VML_STATE_RUNNING;
	if (!strcmp(st, "inmigrate"))
		return VML_STATE_INCOMING;
	if (!strcmp(st, "shutdown") || !strcmp(st, "internal-error") ||
	    !strcmp(st, "guest-panicked") || !strcmp(st, "io-error"))
		return VML_STATE_STOPPED;
	return VML_STATE_PAUSED;	/* paused, postmigrate, prelaunch... */
}

static int state_now(struct fq_daemon *d, uint32_t *state)
{
	char st[32];
	int ret = fq_qmp_status(&d->qmp, st, sizeof(st));

	if (ret)
		pr_err("query-status: %s", d->qmp.err.msg);
	else
		*state = run_state(st);
	return ret;
}

/* Polls query-status until QEMU's vCPUs are (not) running; bounded. */
static int wait_running(struct fq_daemon *d, bool running)
{
	uint32_t st;
	int ret;

	for (unsigned int ms = 0; ms < RUNSTATE_WAIT_MS; ms++) {
		ret = state_now(d, &st);
		if (ret)
			return ret;
		if ((st == VML_STATE_RUNNING) == running)
			return 0;
		msleep(1);
	}
	pr_err("QEMU did not %s within %d s", running ? "run" : "stop",
	       RUNSTATE_WAIT_MS / 1000);
	return -ETIMEDOUT;
}

static int do_pause(struct fq_daemon *d)
{
	uint32_t st;
	int ret;

	if (libvirt_source(d)) {	/* libvirt's migration stops it */
		ret = fq_stream_wait_stop(&d->stream, &d->qmp);
		d->agent_paused = !ret;
		return ret;
	}
	ret = state_now(d, &st);

	if (ret || st == VML_STATE_PAUSED)
		return ret;
	if (st != VML_STATE_RUNNING)
		return -EBUSY;
	ret = fq_qmp_cmd(&d->qmp, "{\"execute\":\"stop\"}", -1, NULL);
	if (ret) {
		pr_err("stop: %s", d->qmp.err.msg);
		return ret;
	}
	ret = wait_running(d, false);
	d->agent_paused = !ret;
	return ret;
}

static int do_resume(struct fq_daemon *d)
{
	int ret = 0;

	/* On the source, ending libvirt's stream fails its migration: QEMU
	 * runs the guest again itself. On the destination libvirt resumes
	 * it once its own migration has finished: the agent learns when. */
	if (libvirt_source(d))
		fq_stream_fini(&d->stream);
	if (!libvirt_mode(d))
		ret = fq_qmp_cmd(&d->qmp, "{\"execute\":\"cont\"}", -1, NULL);
	if (ret) {
		pr_err("cont: %s", d->qmp.err.msg);
		return ret == -EREMOTEIO ? -EBUSY : ret;
	}
	ret = wait_running(d, true);
	if (!ret)
		d->agent_paused = d->committed = false;
	return ret;
}

/* COMMIT (docs/vmlink.md): from now on the destination may run the guest. */
static int do_commit(struct fq_daemon *d)
{
	uint32_t st;
	int ret = state_now(d, &st);

	if (!ret && st != VML_STATE_PAUSED)
		ret = -EBUSY;
	if (!ret)
		d->committed = true;
	return ret;
}

/*
 * The agent hung up or broke the protocol. If its PAUSE stopped QEMU and
 * it never committed the switchover, the guest is only here: cont. A
 * committed VM stays paused (its running copy may be at the destination),
 * and so does one the user had paused before.
 */
static void agent_gone(struct fq_daemon *d)
{
	uint32_t st;

	close(d->conn_fd);
	d->conn_fd = -1;
	if (libvirt_mode(d)) {
		/* One migration per link. Before the commitment, closing the
		 * stream fails QEMU's migration: QEMU runs the guest again,
		 * and libvirt keeps it here. */
		if (!d->committed && d->stream.fd >= 0)
			pr_warn("the agent left before the switchover was "
				"committed: libvirt's migration is failed, the "
				"guest stays here");
		fq_stream_fini(&d->stream);
		d->done = true;
		return;
	}
	if (d->done || !d->agent_paused || state_now(d, &st) ||
	    st != VML_STATE_PAUSED)
		return;
	if (d->committed) {
		pr_warn("the agent left after committing the switchover: QEMU "
			"stays paused here (its running copy may be at the "
			"destination; ferry-source --recover can finish it)");
		return;
	}
	if (do_resume(d))
		pr_err("the agent left with QEMU paused; cont failed");
	else
		pr_warn("the agent left with QEMU paused before the switchover "
			"was committed: the guest runs here again");
}

static int do_save(struct fq_daemon *d, uint16_t type)
{
	bool own = !libvirt_source(d);
	void *blob = NULL;
	size_t len = 0;
	uint32_t st;
	int sent, ret = state_now(d, &st);

	if (!ret && st != VML_STATE_PAUSED)
		ret = -EBUSY;

	if (!ret && !own)
		ret = fq_stream_finish(&d->stream, &d->qmp, &blob, &len);
	else if (!ret)
		ret = fq_state_save(&d->qmp, &blob, &len);
	if (!ret && d->p->stream_bytes)
		*d->p->stream_bytes = len;
	sent = vml_server_reply(d->conn_fd, type, ret, blob, ret ? 0 : len);
	if (!ret && own)
		fq_state_done(&d->qmp);
	free(blob);
	return sent;
}

static int do_load(struct fq_daemon *d, const struct vml_msg *m)
{
	uint32_t st;
	int ret = state_now(d, &st);

	if (!ret && st != VML_STATE_INCOMING)
		return -EBUSY;
	if (!ret && !m->hdr.len)
		return -EINVAL;
	if (!ret && d->p->libvirt_incoming)
		return fq_stream_load(&d->qmp, m->payload, m->hdr.len);
	return ret ? ret : fq_state_load(&d->qmp, m->payload, m->hdr.len);
}

static int do_status(struct fq_daemon *d, uint16_t type)
{
	uint8_t out[16];
	uint32_t st = VML_STATE_STOPPED;
	int ret = state_now(d, &st);

	/* Heartbeats: the guest's console is the user's, not ours. */
	vml_status_encode(out, st, 0);
	return vml_server_reply(d->conn_fd, type, ret, ret ? NULL : out,
				ret ? 0 : sizeof(out));
}

/* quit, then the reply once QEMU is gone (its monitor hangs up). */
static int do_quit(struct fq_daemon *d, uint16_t type)
{
	int ret;

	if (libvirt_source(d)) {	/* libvirt ends this QEMU */
		vml_server_reply(d->conn_fd, type, 0, NULL, 0);
		d->done = true;
		return -ESHUTDOWN;
	}
	ret = fq_qmp_cmd(&d->qmp, "{\"execute\":\"quit\"}", -1, NULL);

	d->qmp.timeout_ms = 10;	/* each drain: RUNSTATE_WAIT_MS in all */
	for (unsigned int i = 0; !ret && i < RUNSTATE_WAIT_MS / 10; i++) {
		ret = fq_qmp_drain(&d->qmp);
		if (ret == -ETIMEDOUT)
			ret = 0;
	}
	vml_server_reply(d->conn_fd, type,
			 ret == -ECONNRESET ? 0 : ret ? ret : -ETIMEDOUT,
			 NULL, 0);
	d->done = true;
	return -ESHUTDOWN;
}

/* Serves one request; -errno when the connection should close. */
static int serve(struct fq_daemon *d, const struct vml_msg *m)
{
	uint16_t type = m->hdr.type;
	int st;

	pr_info("link: %s", vml_msg_name(type));
	switch (type) {
	case VML_MSG_PAUSE:
		st = do_pause(d);
		break;
	case VML_MSG_RESUME:
		st = do_resume(d);
		break;
	case VML_MSG_SAVE_STATE:
		return do_save(d, type);
	case VML_MSG_LOAD_STATE:
		st = do_load(d, m);
		if (st || d->p->libvirt_incoming)
			break;
		st = vml_server_reply(d->conn_fd, type, 0, NULL, 0);
		fq_state_done(&d->qmp);	/* after the answer */
		return st;
	case VML_MSG_STATUS:
		return do_status(d, type);
	case VML_MSG_QUIT:
		return do_quit(d, type);
	case VML_MSG_COMMIT:
		st = do_commit(d);
		break;
	case VML_MSG_DIRTY_LOG:	/* KVM's log is QEMU's: use uffd-wp */
	default:
		st = -EOPNOTSUPP;
		break;
	}
	return vml_server_reply(d->conn_fd, type, st, NULL, 0);
}

static void fill_hello(struct fq_daemon *d, struct vml_hello *h, int uffd,
		       uint32_t state)
{
	*h = (struct vml_hello){
		.version = VML_VERSION,
		.pid = (uint32_t)d->qmp.peer,
		.flags = (d->kvm ? 0 : VML_F_NOKVM) |
			 (state == VML_STATE_INCOMING ? VML_F_INCOMING : 0),
		.nr_vcpus = d->nr_vcpus,
		.nr_regions = d->ram.nr,
		.uffd = uffd,
	};
	memcpy(h->regions, d->ram.r, sizeof(d->ram.r[0]) * d->ram.nr);
}

static void accept_conn(struct fq_daemon *d)
{
	struct vml_hello h;
	uint32_t state;
	int uffd, fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (d->conn_fd >= 0) {
		pr_warn("link: an agent is already connected; refusing another");
		close(fd);
		return;
	}
	if (state_now(d, &state) ||
	    (state == VML_STATE_INCOMING && fq_ram_make_fresh(&d->ram))) {
		close(fd);
		return;
	}
	/* A fresh uffd per agent, none kept: see docs/vmlink.md. */
	uffd = take_uffd(d->p->uffd_path);
	if (uffd < 0)
		pr_warn("no userfaultfd from QEMU's preload at %s: %s",
			d->p->uffd_path, strerror(-uffd));
	fill_hello(d, &h, uffd, state);
	d->conn_fd = fd;
	if (vml_server_hello(fd, &h)) {
		close(fd);
		d->conn_fd = -1;
	}
	if (uffd >= 0)
		close(uffd);
}

/* vCPU count and accelerator, from QMP. */
static int probe_vm(struct fq_daemon *d)
{
	char *reply = NULL;
	int ret = fq_qmp_cmd(&d->qmp, "{\"execute\":\"query-kvm\"}", -1, &reply);

	if (!ret)
		ret = fq_json_bool(reply, "enabled", &d->kvm);
	free(reply);
	if (!ret)
		ret = fq_qmp_cmd(&d->qmp, "{\"execute\":\"query-cpus-fast\"}",
				 -1, &reply);
	for (const char *p = reply; !ret && (p = strstr(p, "\"cpu-index\"")); p++)
		d->nr_vcpus++;
	free(reply);
	if (ret)
		pr_err("cannot query QEMU: %s", d->qmp.err.msg);
	return ret;
}

/*
 * Attaches to QEMU (waiting a bounded time for its monitor to accept, so
 * that the daemon can be started along with QEMU), finds its RAM and
 * checks its preload. Fails before anything is paused.
 */
static int attach(struct fq_daemon *d)
{
	int ret, uffd;

	ret = fq_qmp_open(&d->qmp, d->p->qmp_path, ATTACH_WAIT_MS);
	if (ret)
		return ret;
	ret = probe_vm(d);
	if (!ret)
		ret = fq_ram_init(&d->ram, &d->qmp);
	if (ret)
		return ret;
	uffd = take_uffd(d->p->uffd_path);
	if (uffd < 0) {
		pr_err("QEMU was not started with libferry-preload.so "
		       "(LD_PRELOAD and FERRY_UFFD_SOCKET=%s): %s",
		       d->p->uffd_path, strerror(-uffd));
		return uffd;
	}
	close(uffd);	/* unused: never through UFFDIO_API */
	return 0;
}

/* libvirt's source QEMU connected its stream: nothing is read until the
 * agent's PAUSE; the caller learns that the migration has begun. */
static void stream_came(struct fq_daemon *d)
{
	uint64_t one = 1;

	if (fq_stream_accept(&d->stream, 0))
		return;
	pr_info("libvirt's migration stream connected");
	if (d->p->notify_fd >= 0 &&
	    write(d->p->notify_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("cannot notify the migration's driver");
}

static int serve_loop(struct fq_daemon *d)
{
	while (!d->done) {
		struct pollfd p[5] = {
			{ .fd = d->qmp.fd, .events = POLLIN },
			{ .fd = d->listen_fd, .events = POLLIN },
			{ .fd = d->stream.fd < 0 ? d->p->stream_listen : -1,
			  .events = POLLIN },
			{ .fd = d->p->stop_fd, .events = POLLIN },
			{ .fd = d->conn_fd, .events = POLLIN },
		};
		struct vml_msg m;

		if (poll(p, 5, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[3].revents)
			break;
		if (p[2].revents)
			stream_came(d);
		if (p[0].revents && fq_qmp_drain(&d->qmp) == -ECONNRESET) {
			pr_info("QEMU has exited");
			/* libvirt ended it after the switchover: the agent may
			 * still push pages from its own copy of the memfd. */
			if (!libvirt_source(d) || d->conn_fd < 0)
				break;
			fq_qmp_close(&d->qmp);
		}
		if (d->conn_fd >= 0 && (p[4].revents & (POLLIN | POLLHUP))) {
			if (vml_recv(d->conn_fd, &m) || serve(d, &m))
				agent_gone(d);
			vml_msg_fini(&m);
		}
		if (p[1].revents & POLLIN)
			accept_conn(d);
	}
	return 0;
}

int fq_link_serve(const struct fq_link_params *p)
{
	struct fq_daemon d = { .p = p, .listen_fd = -1, .conn_fd = -1,
			       .qmp = { .fd = -1 } };
	int ret;

	fq_stream_init(&d.stream, p->stream_listen);
	ret = attach(&d);

	if (!ret)
		ret = vml_server_listen(p->link_path, &d.listen_fd);
	if (!ret) {
		pr_info("serving QEMU pid %d (%u RAM region%s, %u vCPU%s, %s) "
			"on %s", (int)d.qmp.peer, d.ram.nr,
			d.ram.nr == 1 ? "" : "s", d.nr_vcpus,
			d.nr_vcpus == 1 ? "" : "s", d.kvm ? "KVM" : "TCG",
			p->link_path);
		ret = serve_loop(&d);
	}
	if (d.conn_fd >= 0)
		close(d.conn_fd);
	if (d.listen_fd >= 0) {
		close(d.listen_fd);
		unlink(p->link_path);
	}
	fq_stream_fini(&d.stream);
	fq_ram_fini(&d.ram);
	fq_qmp_close(&d.qmp);
	return ret;
}
