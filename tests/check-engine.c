// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Both migration engines in one process: mig_source_run() and
 * mig_dest_run() over a real TLS session on loopback (mutual
 * certificates made at start), each attached to a VM stand-in that is
 * real memory: a memfd region and a userfaultfd made in this process, a
 * writer thread dirtying the source's RAM while it runs, a reader thread
 * touching the destination's RAM once it is resumed (postcopy faults),
 * and a verifier comparing the two regions byte for byte afterwards.
 *
 * No seam in the engines is needed for the VM: each stand-in listens on a
 * VM-link socket in a temporary directory and serves the real protocol
 * (vmlink/vmlink.h) from its own thread, so mig_vm_attach() and every
 * vml_client_*() call run exactly as against ferry-vm. (A socketpair
 * would have needed an attach-by-fd entry point; a struct of VM ops would
 * have left the VM-link client out of the test.) Failures at exact
 * messages come from struct mig_inject (migrate.h), the operator's cancel
 * from struct mig_cancel, the VM's misbehaviour from the stand-in.
 *
 * Every case asserts the phase each engine ended in, its one-line
 * reason, and what became of the source VM: running (resumed by the
 * agent or never paused) on a failure before the switchover, paused
 * with all of its memory once postcopy lost its destination.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_PREFIX "check-engine"
#include "migrate/internal.h"
#include "tests/testutil.h"
#include "tools/cert.h"
#include "transport/transport.h"
#include "util/util.h"

#define PAGE 4096u
#define NPAGES 2048u		/* 8 MiB of guest RAM */

static char tmpdir[64];

/* ---- the VM stand-in: a VMM serving the VM link from a thread ---- */

struct tvm;
typedef void (*tvm_hook)(struct tvm *vm, uint16_t type, void *arg);

struct tvm {
	char path[PATH_MAX];
	bool incoming;
	bool no_uffd;		/* hand over no userfaultfd */
	struct gm_region ram;	/* the VMM's RAM, mapped here */
	uint64_t npages;
	int listen_fd, conn_fd, stop_fd;
	pthread_t link_th, guest_th;
	bool link_started, guest_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock. */
	uint32_t state;		/* VML_STATE_* */
	bool committed;
	bool writer_idle;	/* the writer saw the pause */
	bool stop;		/* the guest thread ends */
	bool self_resumed;	/* the agent left it paused, uncommitted */
	bool left_paused;	/* the agent left it paused, committed */
	unsigned int gone;	/* agents that hung up */
	unsigned int nreq[16];	/* requests served, by type */
	/* Behaviour, set before the run. */
	uint16_t close_on;	/* close the link at this request, unanswered */
	uint16_t hold_on;	/* hold this request's reply until released */
	bool released;		/* under lock */
	tvm_hook hook;		/* before serving each request */
	void *hook_arg;
	/* The state blob: saved (source), loaded (destination). */
	uint8_t blob[64];
	size_t blob_len;
	/* The source's guest: writes a word per page over @hot pages from
	 * @hot_first, sleeping @write_us between writes. hot 0: none. */
	uint32_t hot, hot_first, write_us;
	bool toggle_dups;	/* instead: pages 5 and 13 (see writer_main) */
	_Atomic uint64_t writes;
	/* The destination's guest: once resumed, reads every page from the
	 * last down. */
	_Atomic uint64_t reads;
};

static void tvm_set_state(struct tvm *vm, uint32_t st)
{
	vm->state = st;
	pthread_cond_broadcast(&vm->cond);
}

static void *writer_main(void *arg)
{
	struct tvm *vm = arg;
	uint8_t *ram = vm->ram.host;

	for (uint64_t i = 0;; i++) {
		uint64_t page = vm->hot_first + i % vm->hot;

		pthread_mutex_lock(&vm->lock);
		while (vm->state != VML_STATE_RUNNING && !vm->stop) {
			vm->writer_idle = true;
			pthread_cond_broadcast(&vm->cond);
			pthread_cond_wait(&vm->cond, &vm->lock);
		}
		vm->writer_idle = false;
		if (vm->stop) {
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		pthread_mutex_unlock(&vm->lock);
		if (vm->toggle_dups) {
			/* Pages 5 and 13, the first duplicates of chunk 0,
			 * between their initial bytes and one word off. */
			page = i % 2 ? 13 : 5;
			if (i / 2 % 2)
				memset(ram + page * PAGE, 0xab, PAGE);
			else
				memcpy(ram + page * PAGE + 256, &i, sizeof(i));
		} else {
			memcpy(ram + page * PAGE + (i * 64) % PAGE, &i,
			       sizeof(i));
		}
		atomic_fetch_add(&vm->writes, 1);
		if (vm->write_us)
			usleep(vm->write_us);
	}
	return NULL;
}

static void *reader_main(void *arg)
{
	struct tvm *vm = arg;
	volatile uint8_t *ram = vm->ram.host;
	uint64_t sum = 0;

	for (uint64_t i = vm->npages; i-- > 0;) {
		pthread_mutex_lock(&vm->lock);
		bool stop = vm->stop;
		pthread_mutex_unlock(&vm->lock);

		if (stop)
			break;
		sum += ram[i * PAGE + 100];
		atomic_fetch_add(&vm->reads, 1);
	}
	(void)sum;
	return NULL;
}

static int start_guest(struct tvm *vm, void *(*fn)(void *))
{
	if (vm->guest_started)
		return 0;
	if (pthread_create(&vm->guest_th, NULL, fn, vm))
		return -EAGAIN;
	vm->guest_started = true;
	return 0;
}

static void send_hello(struct tvm *vm)
{
	int uffd = vm->no_uffd ? -1 : gm_uffd_create_raw();
	struct vml_hello h = {
		.version = VML_VERSION, .pid = (uint32_t)getpid(),
		.flags = vm->incoming ? VML_F_INCOMING | VML_F_NOKVM
				      : VML_F_NOKVM,
		.nr_vcpus = 1, .nr_regions = 1, .uffd = uffd,
	};

	h.regions[0] = (struct vml_region){
		.size = vm->ram.size,
		.host_addr = (uint64_t)(uintptr_t)vm->ram.host,
		.fd_offset = vm->ram.fd_offset, .page_size = PAGE,
		.backing = GM_BACKING_SHMEM, .fd = vm->ram.fd,
	};
	if (vml_server_hello(vm->conn_fd, &h)) {
		close(vm->conn_fd);
		vm->conn_fd = -1;
	}
	/* Like ferry-vm: the uffd lives as long as the agent. */
	if (uffd >= 0)
		close(uffd);
}

static int32_t do_pause(struct tvm *vm)
{
	if (vm->state == VML_STATE_RUNNING)
		tvm_set_state(vm, VML_STATE_PAUSED);
	if (vm->state != VML_STATE_PAUSED)
		return -EBUSY;
	while (vm->hot && vm->guest_started && !vm->writer_idle)
		pthread_cond_wait(&vm->cond, &vm->lock);
	return 0;
}

static int32_t do_resume(struct tvm *vm)
{
	if (vm->state == VML_STATE_INCOMING && !vm->blob_len)
		return -EBUSY;
	tvm_set_state(vm, VML_STATE_RUNNING);
	vm->committed = false;
	if (vm->incoming)
		return start_guest(vm, reader_main);
	return vm->hot ? start_guest(vm, writer_main) : 0;
}

/* Serves one request (under lock); -errno ends the connection. */
static int serve(struct tvm *vm, const struct vml_msg *m)
{
	uint16_t type = m->hdr.type;
	const void *out = NULL;
	uint8_t st[16];
	size_t len = 0;
	int32_t status = 0;

	switch (type) {
	case VML_MSG_PAUSE:
		status = do_pause(vm);
		break;
	case VML_MSG_RESUME:
		status = do_resume(vm);
		break;
	case VML_MSG_SAVE_STATE:
		status = vm->state == VML_STATE_PAUSED ? 0 : -EBUSY;
		out = vm->blob;
		len = status ? 0 : vm->blob_len;
		break;
	case VML_MSG_LOAD_STATE:
		if (m->hdr.len > sizeof(vm->blob) || !m->hdr.len) {
			status = -EINVAL;
			break;
		}
		memcpy(vm->blob, m->payload, m->hdr.len);
		vm->blob_len = m->hdr.len;
		break;
	case VML_MSG_COMMIT:
		status = vm->state == VML_STATE_PAUSED ? 0 : -EBUSY;
		vm->committed = !status;
		break;
	case VML_MSG_STATUS:
		vml_status_encode(st, vm->state, 0);
		out = st;
		len = sizeof(st);
		break;
	case VML_MSG_QUIT:
		tvm_set_state(vm, VML_STATE_STOPPED);
		vm->stop = true;
		vml_server_reply(vm->conn_fd, type, 0, NULL, 0);
		return -ESHUTDOWN;
	default:
		status = -EOPNOTSUPP;
		break;
	}
	return vml_server_reply(vm->conn_fd, type, status, out, len);
}

/* The agent hung up: what ferry-vm does (vm_agent_gone), recorded. */
static void agent_gone(struct tvm *vm)
{
	close(vm->conn_fd);
	vm->conn_fd = -1;
	vm->gone++;
	pthread_cond_broadcast(&vm->cond);
	if (vm->state != VML_STATE_PAUSED || vm->incoming)
		return;
	if (vm->committed) {
		vm->left_paused = true;
	} else {
		vm->self_resumed = true;
		tvm_set_state(vm, VML_STATE_RUNNING);
	}
}

static void on_request(struct tvm *vm, struct vml_msg *m)
{
	uint16_t type = m->hdr.type;

	if (vm->hook)
		vm->hook(vm, type, vm->hook_arg);
	pthread_mutex_lock(&vm->lock);
	if (type == vm->close_on) {
		vm->close_on = 0;
		agent_gone(vm);
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	if (type < UT_ARRAY_SIZE(vm->nreq))
		vm->nreq[type]++;	/* served */
	while (type == vm->hold_on && !vm->released)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (serve(vm, m))
		agent_gone(vm);
	pthread_mutex_unlock(&vm->lock);
}

static void *link_main(void *arg)
{
	struct tvm *vm = arg;

	for (;;) {
		struct pollfd p[3] = { { vm->stop_fd, POLLIN, 0 },
				       { vm->listen_fd, POLLIN, 0 },
				       { vm->conn_fd, POLLIN, 0 } };
		struct vml_msg m;

		if (poll(p, vm->conn_fd >= 0 ? 3 : 2, -1) < 0)
			continue;
		if (p[0].revents)
			break;
		if (vm->conn_fd >= 0 && (p[2].revents & (POLLIN | POLLHUP))) {
			if (vml_recv(vm->conn_fd, &m)) {
				pthread_mutex_lock(&vm->lock);
				agent_gone(vm);
				pthread_mutex_unlock(&vm->lock);
			} else {
				on_request(vm, &m);
			}
			vml_msg_fini(&m);
		}
		if ((p[1].revents & POLLIN) && vm->conn_fd < 0) {
			vm->conn_fd = accept4(vm->listen_fd, NULL, NULL,
					      SOCK_CLOEXEC);
			if (vm->conn_fd >= 0)
				send_hello(vm);
			if (vm->hook)
				vm->hook(vm, VML_MSG_HELLO, vm->hook_arg);
		}
	}
	return NULL;
}

/* Page @i of the source's initial contents: every 8th page zero, every
 * 8th (from 5) the same duplicate, the rest distinct. */
static void fill_page(uint8_t *p, uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL + 1;

	if (i % 8 == 3) {
		memset(p, 0, PAGE);
		return;
	}
	if (i % 8 == 5) {
		memset(p, 0xab, PAGE);
		return;
	}
	for (size_t o = 0; o < PAGE; o += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + o, &x, 8);
	}
}

static void tvm_init(struct tvm *vm, const char *name, bool incoming,
		     uint64_t npages)
{
	memset(vm, 0, sizeof(*vm));
	vm->listen_fd = vm->conn_fd = vm->stop_fd = -1;
	vm->incoming = incoming;
	vm->npages = npages;
	vm->state = incoming ? VML_STATE_INCOMING : VML_STATE_RUNNING;
	snprintf(vm->path, sizeof(vm->path), "%s/%s.sock", tmpdir, name);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	ck_assert_int_eq(gm_region_init(&vm->ram, GM_BACKING_SHMEM,
					npages * PAGE, name), 0);
	if (!incoming) {
		for (uint64_t i = 0; i < npages; i++)
			fill_page((uint8_t *)vm->ram.host + i * PAGE, i);
		vm->blob_len = snprintf((char *)vm->blob, sizeof(vm->blob),
					"tvm state %s %llu", name,
					(unsigned long long)npages) + 1;
	}
	/* The writer, slow by default: precopy fits after round 0. */
	vm->hot = incoming ? 0 : 16;
	vm->hot_first = 1;
	vm->write_us = 1000;
}

static void tvm_start(struct tvm *vm)
{
	ck_assert_int_eq(vml_server_listen(vm->path, &vm->listen_fd), 0);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_ge(vm->stop_fd, 0);
	if (!vm->incoming && vm->hot)
		ck_assert_int_eq(start_guest(vm, writer_main), 0);
	ck_assert_int_eq(pthread_create(&vm->link_th, NULL, link_main, vm), 0);
	vm->link_started = true;
}

static void tvm_release(struct tvm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->released = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static void tvm_fini(struct tvm *vm)
{
	uint64_t one = 1;

	tvm_release(vm);
	if (vm->link_started) {
		ck_assert_int_eq(write(vm->stop_fd, &one, 8), 8);
		pthread_join(vm->link_th, NULL);
	}
	pthread_mutex_lock(&vm->lock);
	vm->stop = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (vm->guest_started)
		pthread_join(vm->guest_th, NULL);
	if (vm->conn_fd >= 0)
		close(vm->conn_fd);
	if (vm->listen_fd >= 0) {
		close(vm->listen_fd);
		unlink(vm->path);
	}
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	gm_region_fini(&vm->ram);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
}

/* Waits (at most 2 s) until the link thread has seen an agent hang up:
 * what the VMM does then is recorded by the time this returns. */
static void tvm_wait_gone(struct tvm *vm)
{
	pthread_mutex_lock(&vm->lock);
	for (int i = 0; !vm->gone && i < 200; i++) {
		pthread_mutex_unlock(&vm->lock);
		usleep(10000);
		pthread_mutex_lock(&vm->lock);
	}
	ck_assert_msg(vm->gone, "the agent never left the VM link");
	pthread_mutex_unlock(&vm->lock);
}

static unsigned int tvm_nreq(struct tvm *vm, uint16_t type)
{
	unsigned int n;

	pthread_mutex_lock(&vm->lock);
	n = vm->nreq[type];
	pthread_mutex_unlock(&vm->lock);
	return n;
}

/* ---- the network: one TLS session pair on loopback ---- */

struct net {
	char ca[PATH_MAX], scert[PATH_MAX], skey[PATH_MAX];
	char ccert[PATH_MAX], ckey[PATH_MAX];
	struct tp_config scfg, ccfg;
	struct tp_listener *l;
	char port[16];
	struct tp_session *src, *dst;
	pthread_t th;
	int aret;
	struct ut_err aerr;
};

static void *accept_main(void *arg)
{
	struct net *n = arg;

	n->aret = tp_session_accept(n->l, &n->dst, &n->aerr);
	return NULL;
}

static void net_open(struct net *n, unsigned int nbulk, int timeout_ms)
{
	struct ut_err err;

	memset(n, 0, sizeof(*n));
	snprintf(n->ca, PATH_MAX, "%s/ca.pem", tmpdir);
	snprintf(n->scert, PATH_MAX, "%s/server.pem", tmpdir);
	snprintf(n->skey, PATH_MAX, "%s/server-key.pem", tmpdir);
	snprintf(n->ccert, PATH_MAX, "%s/client.pem", tmpdir);
	snprintf(n->ckey, PATH_MAX, "%s/client-key.pem", tmpdir);
	n->scfg = (struct tp_config){ .security = TP_SEC_MTLS,
		.ca_file = n->ca, .cert_file = n->scert, .key_file = n->skey,
		.timeout_ms = timeout_ms, .accept_timeout_ms = 5000 };
	n->ccfg = n->scfg;
	n->ccfg.cert_file = n->ccert;
	n->ccfg.key_file = n->ckey;
	n->ccfg.nbulk = nbulk;
	ck_assert_msg(tp_listener_create(&n->scfg, "127.0.0.1", "0", &n->l,
					 &err) == 0, "listen: %s", err.msg);
	snprintf(n->port, sizeof(n->port), "%d", tp_listener_port(n->l));
	ck_assert_int_eq(pthread_create(&n->th, NULL, accept_main, n), 0);
	ck_assert_msg(tp_session_connect(&n->ccfg, "127.0.0.1", n->port,
					 &n->src, &err) == 0,
		      "connect: %s", err.msg);
	pthread_join(n->th, NULL);
	ck_assert_msg(n->aret == 0, "accept: %s", n->aerr.msg);
}

static void net_close(struct net *n)
{
	tp_session_destroy(n->src);
	tp_session_destroy(n->dst);
	tp_listener_destroy(n->l);
}

static int reconnect_src(void *arg, struct tp_session **out,
			 struct ut_err *err)
{
	struct net *n = arg;

	return tp_session_connect(&n->ccfg, "127.0.0.1", n->port, out, err);
}

static int reconnect_dst(void *arg, struct tp_session **out,
			 struct ut_err *err)
{
	struct net *n = arg;

	return tp_session_accept(n->l, out, err);
}

/* ---- one migration: both engines, the VMs, the network ---- */

struct mig {
	struct tvm svm, dvm;
	struct net net;
	struct mig_source_params sp;
	struct mig_dest_params dp;
	struct mig_stats ss, ds;
	struct ut_err serr, derr;
	int sret, dret;
	struct mig_cancel scancel, dcancel;
	struct mig_inject inj;
	pthread_t dth;
	/* The source's progress: at its first report of round @at_round
	 * (during the round), the source's cancel, or the destination's
	 * with @cancel_dst. -1: none. */
	int at_round;
	bool cancel_dst;
	uint16_t cancel_at;	/* the source's cancel at this VM request */
	int refused;		/* mig_cancel_request() of a late cancel */
	uint32_t touch;		/* pages dirty_now() writes at each report */
};

/* The guest writes @n pages at each of the source's reports while it
 * runs: during every precopy round and between rounds, for certain,
 * whatever the scheduler does with the writer thread. */
static void dirty_now(struct tvm *vm, uint32_t n)
{
	uint8_t *ram = vm->ram.host;

	pthread_mutex_lock(&vm->lock);
	for (uint64_t i = 0; vm->state == VML_STATE_RUNNING && i < n; i++)
		ram[(vm->hot_first + i) * PAGE + 8] ^= 1;
	pthread_mutex_unlock(&vm->lock);
}

static void progress(const struct mig_progress *p, void *arg)
{
	struct mig *m = arg;

	if (m->touch)
		dirty_now(&m->svm, m->touch);

	if (m->at_round < 0 || p->round != (uint32_t)m->at_round || p->final)
		return;
	m->at_round = -1;
	mig_cancel_request(m->cancel_dst ? &m->dcancel : &m->scancel, "test",
			   NULL);
}

static void *dest_main(void *arg)
{
	struct mig *m = arg;

	m->dret = mig_dest_run(&m->dp, &m->ds, &m->derr);
	/* What ferry-dest's exit does: its connection closes (a lingering
	 * source stops waiting), the session freed later by mig_fini(). */
	tp_session_shutdown(m->net.dst, TP_SHUT_ALL);
	/* A source held in its VM link may go on now. */
	tvm_release(&m->svm);
	return NULL;
}

/* The default migration: 2 bulk streams, precopy, the slow writer. */
static void mig_setup(struct mig *m, uint64_t dpages, int timeout_ms)
{
	memset(m, 0, sizeof(*m));
	m->at_round = -1;
	tvm_init(&m->svm, "src", false, NPAGES);
	tvm_init(&m->dvm, "dst", true, dpages);
	ck_assert_int_eq(mig_cancel_init(&m->scancel), 0);
	ck_assert_int_eq(mig_cancel_init(&m->dcancel), 0);
	net_open(&m->net, 2, timeout_ms);
	m->sp = (struct mig_source_params){
		.vm_socket = m->svm.path, .session = m->net.src,
		.mode = MIG_MODE_PRECOPY, .mem_access = MIG_MEM_AUTO,
		.deadline_s = 20, .progress = progress, .progress_arg = m,
		.cancel = &m->scancel, .inject = &m->inj,
	};
	m->dp = (struct mig_dest_params){
		.vm_socket = m->dvm.path, .session = m->net.dst,
		.cancel = &m->dcancel, .inject = &m->inj,
	};
}

static void mig_go(struct mig *m)
{
	tvm_start(&m->svm);
	tvm_start(&m->dvm);
	ck_assert_int_eq(pthread_create(&m->dth, NULL, dest_main, m), 0);
	m->sret = mig_source_run(&m->sp, &m->ss, &m->serr);
	tp_session_shutdown(m->net.src, TP_SHUT_ALL);	/* as above */
	pthread_join(m->dth, NULL);
	fprintf(stderr, "  source: %s (%d) \"%s\"; dest: %s (%d) \"%s\"\n",
		m->ss.outcome, m->sret, m->serr.msg, m->ds.outcome, m->dret,
		m->derr.msg);
	for (uint32_t i = 0; i < m->ss.nrounds; i++)
		fprintf(stderr, "  round %u: %llu pages, %.1f ms predicted, "
			"%.0f MiB/s\n", m->ss.rounds[i].round,
			(unsigned long long)m->ss.rounds[i].pages,
			m->ss.rounds[i].predicted_downtime_ms,
			m->ss.rounds[i].bandwidth_mibs);
}

static void mig_fini(struct mig *m)
{
	tvm_fini(&m->svm);
	tvm_fini(&m->dvm);
	net_close(&m->net);
	mig_cancel_fini(&m->scancel);
	mig_cancel_fini(&m->dcancel);
}

/* The verifier: names the pages that differ, if any. */
static void assert_same_ram(struct mig *m)
{
	const uint8_t *a = m->svm.ram.host, *b = m->dvm.ram.host;
	uint64_t n = 0, first = 0;
	size_t off = 0;

	for (uint64_t i = 0; i < m->svm.npages; i++)
		if (memcmp(a + i * PAGE, b + i * PAGE, PAGE) && !n++)
			first = i;
	if (n)
		while (a[first * PAGE + off] == b[first * PAGE + off])
			off++;
	ck_assert_msg(n == 0, "%llu pages differ, the first %llu at byte %zu "
		      "(0x%02x here, 0x%02x there; %llu writes)",
		      (unsigned long long)n, (unsigned long long)first, off,
		      n ? a[first * PAGE + off] : 0,
		      n ? b[first * PAGE + off] : 0,
		      (unsigned long long)atomic_load(&m->svm.writes));
}

/* The guest moved: the same bytes on both sides, the same state, the
 * incoming VM running, the source told to quit. */
static void assert_moved(struct mig *m, const char *mode)
{
	ck_assert_msg(m->sret == 0, "source: %s", m->serr.msg);
	ck_assert_msg(m->dret == 0, "dest: %s", m->derr.msg);
	ck_assert_str_eq(m->ss.outcome, "completed");
	ck_assert_str_eq(m->ds.outcome, "completed");
	ck_assert_str_eq(m->ss.mode, mode);
	assert_same_ram(m);
	ck_assert_uint_eq(m->dvm.blob_len, m->svm.blob_len);
	ck_assert_int_eq(memcmp(m->dvm.blob, m->svm.blob, m->svm.blob_len), 0);
	ck_assert_uint_eq(m->dvm.state, VML_STATE_RUNNING);
	ck_assert_uint_eq(m->svm.state, VML_STATE_STOPPED);
	ck_assert_uint_eq(tvm_nreq(&m->svm, VML_MSG_QUIT), 1);
	ck_assert_uint_eq(tvm_nreq(&m->svm, VML_MSG_COMMIT), 1);
}

/* A failure before the guest ran at the destination: the source VM runs
 * (resumed by the agent when it had paused it), the incoming VM was told
 * to quit, and each side ended in @sphase / @dphase with a reason
 * containing @swhy / @dwhy. */
static void assert_stayed(struct mig *m, const char *sphase, const char *swhy,
			  const char *dphase, const char *dwhy)
{
	ck_assert_int_ne(m->sret, 0);
	ck_assert_str_eq(m->ss.outcome, sphase);
	ck_assert_msg(strstr(m->serr.msg, swhy), "source reason \"%s\" lacks "
		      "\"%s\"", m->serr.msg, swhy);
	ck_assert_msg(!strchr(m->serr.msg, '\n'), "a reason of one line");
	if (dphase) {
		ck_assert_int_ne(m->dret, 0);
		ck_assert_str_eq(m->ds.outcome, dphase);
		ck_assert_msg(strstr(m->derr.msg, dwhy), "dest reason \"%s\" lacks "
			      "\"%s\"", m->derr.msg, dwhy);
		ck_assert_msg(!strchr(m->derr.msg, '\n'), "a reason of one line");
		ck_assert_uint_eq(tvm_nreq(&m->dvm, VML_MSG_RESUME), 0);
	}
	tvm_wait_gone(&m->svm);
	pthread_mutex_lock(&m->svm.lock);
	ck_assert_uint_eq(m->svm.state, VML_STATE_RUNNING);
	ck_assert_msg(!m->svm.self_resumed, "the agent left the VM paused "
		      "(its VMM resumed it)");
	ck_assert_uint_eq(m->svm.nreq[VML_MSG_PAUSE],
			  m->svm.nreq[VML_MSG_RESUME]);
	ck_assert_uint_eq(m->svm.nreq[VML_MSG_QUIT], 0);
	pthread_mutex_unlock(&m->svm.lock);
}

/* ---- migrations that complete ---- */

START_TEST(precopy_converges)
{
	static const enum mig_mem_access acc[] = { MIG_MEM_COPY, MIG_MEM_MAP };
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.mem_access = m.dp.mem_access = acc[_i];
	m.touch = 16;
	mig_go(&m);
	assert_moved(&m, "precopy");
	ck_assert_uint_ge(m.ss.nrounds, 2);	/* round 0 and the final */
	ck_assert_uint_eq(m.ss.rounds[0].pages, NPAGES);
	/* What the guest wrote after round 0 went in the final round. */
	ck_assert_uint_ge(m.ss.rounds[m.ss.nrounds - 1].pages, 16);
	ck_assert_uint_eq(tvm_nreq(&m.svm, VML_MSG_PAUSE), 1);
	ck_assert_uint_eq(tvm_nreq(&m.dvm, VML_MSG_LOAD_STATE), 1);
	mig_fini(&m);
}
END_TEST

START_TEST(precopy_zero_and_duplicate_pages)
{
	const struct mig_round_stats *r0;
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.svm.hot = 0;		/* round 0 sees the pages as filled */
	mig_go(&m);
	assert_moved(&m, "precopy");
	r0 = &m.ss.rounds[0];
	/* Every 8th page is zero; every 8th (from 5) the same page: each
	 * sender sends it once as data, then references. */
	ck_assert_uint_eq(r0->zero_pages, NPAGES / 8);
	ck_assert_uint_ge(r0->dup_pages, NPAGES / 8 - m.ss.nbulk * 2);
	ck_assert_uint_le(r0->dup_pages, NPAGES / 8 - 1);
	ck_assert_uint_eq(r0->data_pages + r0->zero_pages + r0->dup_pages,
			  NPAGES);
	ck_assert_uint_gt(m.ss.bytes_zero, 0);
	ck_assert_uint_gt(m.ss.bytes_dup, 0);
	ck_assert_uint_lt(m.ss.bytes_data, (uint64_t)NPAGES * PAGE);
	mig_fini(&m);
}
END_TEST

static void busy_writer(struct mig *m)
{
	/* Rounds that cannot fit 1 ms: a writer thread over 4 MiB, and
	 * 2 MiB written during each round for certain (dirty_now), sent at
	 * 32 MiB/s. */
	m->svm.hot = 1024;
	m->svm.write_us = 0;
	m->touch = 512;
	m->sp.downtime_limit_ms = 1;
	m->sp.bandwidth_limit = 32u << 20;
}

/* MAP mode reads pages in place while the guest runs: a duplicate's
 * reference to a page that changes between its hash and its send would
 * copy the new bytes into pages never written again (found by this
 * program: 126 pages wrong after a "completed" migration). The writer
 * keeps the first duplicates of chunk 0 changing; the others must still
 * arrive as they are. Each run has a fair chance to hit the window. */
START_TEST(precopy_map_duplicate_source_rewritten)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.mem_access = m.dp.mem_access = MIG_MEM_MAP;
	m.svm.toggle_dups = true;
	m.svm.hot = 2;
	m.svm.write_us = 0;
	mig_go(&m);
	assert_moved(&m, "precopy");
	mig_fini(&m);
}
END_TEST

/* Postcopy at once with a slow push: the guest there reads the last
 * pages first and faults on them. */
static void slow_postcopy(struct mig *m)
{
	m->sp.mode = MIG_MODE_POSTCOPY;
	m->sp.bandwidth_limit = 16u << 20;
}

START_TEST(postcopy_faults_served)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	slow_postcopy(&m);
	mig_go(&m);
	assert_moved(&m, "postcopy");
	ck_assert_uint_ge(m.ds.faults, 1);
	ck_assert_uint_ge(m.ss.pages_requested, 1);
	ck_assert_uint_eq(atomic_load(&m.dvm.reads), NPAGES);
	ck_assert_uint_ge(m.ss.pages_pushed, 1);
	mig_fini(&m);
}
END_TEST

START_TEST(hybrid_round0_then_postcopy)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.mode = MIG_MODE_HYBRID;
	busy_writer(&m);
	mig_go(&m);
	assert_moved(&m, "postcopy");
	ck_assert_uint_eq(m.ss.rounds[0].pages, NPAGES);
	ck_assert_uint_eq(m.ss.rounds[0].round, 0);
	mig_fini(&m);
}
END_TEST

START_TEST(auto_fits_stays_precopy)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.mode = MIG_MODE_AUTO;
	mig_go(&m);
	assert_moved(&m, "precopy");
	mig_fini(&m);
}
END_TEST

START_TEST(auto_not_converging_goes_postcopy)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.mode = MIG_MODE_AUTO;
	m.sp.max_rounds = 4;
	busy_writer(&m);
	mig_go(&m);
	assert_moved(&m, "postcopy");
	/* At most 4 precopy rounds, the empty switch, the push. */
	ck_assert_uint_le(m.ss.nrounds, 4 + 2);
	mig_fini(&m);
}
END_TEST

/* ---- postcopy's connection lost ---- */

START_TEST(postcopy_recovers_after_cut)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	slow_postcopy(&m);
	m.sp.reconnect = reconnect_src;
	m.sp.reconnect_arg = &m.net;
	m.sp.recover_timeout_s = 10;
	m.dp.reconnect = reconnect_dst;
	m.dp.reconnect_arg = &m.net;
	/* The session cut as the push starts (the 2nd round: the first
	 * is the empty switch), the guest running there. */
	m.inj.src_cut_round = 2;
	mig_go(&m);
	assert_moved(&m, "postcopy");
	ck_assert_uint_ge(m.ss.recoveries, 1);
	ck_assert_uint_ge(m.ds.recoveries, 1);
	mig_fini(&m);
}
END_TEST

START_TEST(postcopy_cut_for_good_interrupts)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	slow_postcopy(&m);
	/* The session cut as the push starts (the 2nd round: the first
	 * is the empty switch), the guest running there. */
	m.inj.src_cut_round = 2;
	mig_go(&m);
	ck_assert_int_ne(m.sret, 0);
	ck_assert_int_ne(m.dret, 0);
	ck_assert_str_eq(m.ss.outcome, "interrupted");
	ck_assert_str_eq(m.ds.outcome, "interrupted");
	ck_assert_msg(strstr(m.derr.msg, "peer closed"), "dest: %s", m.derr.msg);
	/* The cut is the source's own shutdown of its streams: it reads
	 * that, or the peer's close if that came first. */
	ck_assert_msg(strstr(m.serr.msg, "peer closed") ||
		      strstr(m.serr.msg, "shut down by its owner"),
		      "source: %s", m.serr.msg);
	/* The running copy was there: the source VM stays paused, with all
	 * of its memory, and the guest there was stopped. */
	tvm_wait_gone(&m.svm);
	ck_assert_uint_eq(m.svm.state, VML_STATE_PAUSED);
	ck_assert_uint_eq(tvm_nreq(&m.svm, VML_MSG_RESUME), 0);
	ck_assert(m.svm.left_paused);
	ck_assert_uint_eq(m.dvm.state, VML_STATE_STOPPED);
	mig_fini(&m);
}
END_TEST

/* The stand-ins' hook: the operator's cancel at a VM-link request; one
 * at the destination's LOAD_STATE comes after the commitment. */
static void cancel_on(struct tvm *vm, uint16_t type, void *arg)
{
	struct mig *m = arg;

	if (vm == &m->svm && type == m->cancel_at)
		mig_cancel_request(&m->scancel, "test", NULL);
	if (vm == &m->dvm && type == VML_MSG_LOAD_STATE)
		m->refused = mig_cancel_request(&m->scancel, "test", NULL);
}

/* ---- failures before the switchover, at exact points: a table ----
 *
 * Each row sets up what goes wrong and says what must come of it: the
 * phase each engine ends in, a piece of its one-line reason, and how far
 * the source got (rounds recorded, PAUSE and COMMIT requests its VM
 * served). assert_stayed() adds that the source VM runs (resumed if it
 * was paused) and that the incoming VM never ran.
 */
#define ANY -1

struct fail_row {
	const char *name;
	/* What goes wrong. */
	bool busy;			/* rounds that never fit (busy_writer) */
	uint32_t max_rounds;
	uint32_t cut_round, fail_rx, bad_pages;	/* struct mig_inject */
	uint32_t cancel_round;		/* during the K-th round: a cancel */
	bool cancel_dest;		/* ... the destination's */
	uint16_t cancel_at;		/* the source's cancel at this request */
	uint16_t close_at, dclose_at;	/* a VM link closed at this request */
	uint16_t hold_at;		/* the source VM holds this reply */
	int timeout_ms;			/* 0: 5000 */
	bool big_dest, postcopy, no_dest_uffd;
	bool map;			/* MIG_MEM_MAP both sides (sub-pages) */
	/* What must come of it. */
	const char *sphase, *swhy, *dphase, *dwhy;
	int sret;			/* 0: any failure */
	int rounds, pauses, commits;	/* or ANY */
};

#define CANCELLED_HERE "cancelled (test) before the switchover: the VM runs here"
#define CANCELLED_THERE "the source was cancelled by the operator (test) " \
	"before the switchover: the incoming VM was discarded"

static const struct fail_row fails[] = {
	{ "precopy_not_converging_cancels", .busy = true, .max_rounds = 3,
	  .sphase = "cancelled", .swhy = "did not converge after 3 rounds",
	  .dphase = "failed", .dwhy = "the source gave up: the guest did not "
	  "converge", .sret = -ETIMEDOUT, .rounds = 3, .pauses = 0,
	  .commits = 0 },
	{ "cut_at_round_0", .busy = true, .cut_round = 1,
	  .sphase = "failed", .swhy = "sending guest pages: ",
	  .dphase = "failed", .dwhy = "peer closed the connection",
	  .rounds = 1, .pauses = 0, .commits = 0 },
	{ "cut_at_round_2", .busy = true, .cut_round = 3,
	  .sphase = "failed", .swhy = "sending guest pages: ",
	  .dphase = "failed", .dwhy = "peer closed the connection",
	  .rounds = 3, .pauses = 0, .commits = 0 },
	/* The source gives the destination's reason, not the bulk stream
	 * the destination closed after failing. Its ERROR may reach the
	 * source after later rounds, the pause, even the commitment (it
	 * still precedes RESUMED): how far the source got is not fixed. */
	{ "peer_error_at_message_1", .fail_rx = 1,
	  .sphase = "failed", .swhy = "injected failure at bulk message 1",
	  .dphase = "failed", .dwhy = "injected failure at bulk message 1",
	  .rounds = ANY, .pauses = ANY, .commits = ANY },
	{ "peer_error_at_message_7", .fail_rx = 7,
	  .sphase = "failed", .swhy = "injected failure at bulk message 7",
	  .dphase = "failed", .dwhy = "injected failure at bulk message 7",
	  .rounds = ANY, .pauses = ANY, .commits = ANY },
	{ "peer_error_at_message_20", .fail_rx = 20,
	  .sphase = "failed", .swhy = "injected failure at bulk message 20",
	  .dphase = "failed", .dwhy = "injected failure at bulk message 20",
	  .rounds = ANY, .pauses = ANY, .commits = ANY },
	{ "bad_frame", .bad_pages = 3,
	  .sphase = "failed", .swhy = "the source sent a malformed message: "
	  "pages: page index outside the region",
	  .dphase = "failed", .dwhy = "the source sent a malformed message",
	  .sret = -EPROTO, .rounds = ANY, .pauses = ANY, .commits = ANY },
	{ "vmlink_closes_at_pause", .close_at = VML_MSG_PAUSE,
	  .sphase = "failed", .swhy = "the VM did not pause",
	  .dphase = "failed", .dwhy = "the source gave up: the VM did not "
	  "pause", .rounds = ANY, .pauses = 0, .commits = 0 },
	/* Past the commitment, but the destination said it failed before
	 * it ran the guest: the source VM runs on. */
	{ "dest_vmlink_closes_at_load_state", .dclose_at = VML_MSG_LOAD_STATE,
	  .sphase = "failed", .swhy = "the peer failed: the incoming VM "
	  "refused the state", .dphase = "failed", .dwhy = "the incoming VM "
	  "refused the state", .rounds = ANY, .pauses = 1, .commits = 1 },
	{ "cancel_in_setup", .cancel_at = VML_MSG_HELLO,
	  .sphase = "cancelled", .swhy = CANCELLED_HERE,
	  .dphase = "cancelled", .dwhy = CANCELLED_THERE,
	  .sret = -ECANCELED, .rounds = 0, .pauses = 0, .commits = 0 },
	{ "cancel_at_round_0", .busy = true, .cancel_round = 1,
	  .sphase = "cancelled", .swhy = CANCELLED_HERE,
	  .dphase = "cancelled", .dwhy = CANCELLED_THERE,
	  .sret = -ECANCELED, .rounds = 1, .pauses = 0, .commits = 0 },
	{ "cancel_at_round_2", .busy = true, .cancel_round = 3,
	  .sphase = "cancelled", .swhy = CANCELLED_HERE,
	  .dphase = "cancelled", .dwhy = CANCELLED_THERE,
	  .sret = -ECANCELED, .rounds = 3, .pauses = 0, .commits = 0 },
	/* The cancel lands while the VM pauses for the final round: the
	 * commitment refuses to pass it, the VM is resumed. */
	{ "cancel_at_switchover", .cancel_at = VML_MSG_PAUSE,
	  .sphase = "cancelled", .swhy = CANCELLED_HERE,
	  .dphase = "cancelled", .dwhy = CANCELLED_THERE,
	  .sret = -ECANCELED, .rounds = ANY, .pauses = 1, .commits = 0 },
	{ "dest_cancel_in_precopy", .busy = true, .cancel_round = 2,
	  .cancel_dest = true,
	  .sphase = "cancelled", .swhy = "the destination was cancelled by "
	  "the operator (test) before the switchover: the VM runs here",
	  .dphase = "cancelled", .dwhy = "cancelled (test) before the "
	  "switchover: the incoming VM was discarded",
	  .sret = -ECANCELED, .rounds = ANY, .pauses = 0, .commits = 0 },
	/* The source falls silent in its VM link (PAUSE held until the
	 * destination gave up); the destination hears nothing for longer
	 * than its I/O timeout (on a loaded machine a quiet bulk stream
	 * may time out first, before the PAUSE). */
	{ "io_timeout", .hold_at = VML_MSG_PAUSE, .timeout_ms = 300,
	  .sphase = "failed", .swhy = "peer silent for 300 ms (timeout)",
	  .dphase = "failed", .dwhy = "peer silent for 300 ms (timeout)",
	  .rounds = ANY, .pauses = ANY, .commits = 0 },
	{ "layout_mismatch", .big_dest = true,
	  .sphase = "failed", .swhy = "the destination refused: the source "
	  "VM's RAM layout (1 regions, 2048 pages) does not match the "
	  "incoming VM's (1 regions, 4096 pages)",
	  .dphase = "failed", .dwhy = "does not match",
	  .sret = -EINVAL, .rounds = 0, .pauses = 0, .commits = 0 },
	{ "postcopy_without_dest_uffd", .postcopy = true, .no_dest_uffd = true,
	  .sphase = "failed", .swhy = "the destination cannot do postcopy",
	  .dphase = "failed", .dwhy = "the source gave up: the destination "
	  "cannot do postcopy", .sret = -EOPNOTSUPP, .rounds = 0,
	  .pauses = 0, .commits = 0 },
	/* Mapped access agrees sub-pages, whose set-up once skipped the
	 * postcopy check. */
	{ "postcopy_without_dest_uffd_map", .postcopy = true,
	  .no_dest_uffd = true, .map = true,
	  .sphase = "failed", .swhy = "the destination cannot do postcopy",
	  .dphase = "failed", .dwhy = "the source gave up: the destination "
	  "cannot do postcopy", .sret = -EOPNOTSUPP, .rounds = 0,
	  .pauses = 0, .commits = 0 },
};

static void arrange(struct mig *m, const struct fail_row *t)
{
	if (t->busy)
		busy_writer(m);
	m->sp.max_rounds = t->max_rounds;
	m->inj.src_cut_round = t->cut_round;
	m->inj.dest_fail_rx = t->fail_rx;
	m->inj.src_bad_pages = t->bad_pages;
	m->at_round = (int)t->cancel_round - 1;
	m->cancel_dst = t->cancel_dest;
	m->cancel_at = t->cancel_at;
	m->svm.hook = cancel_on;
	m->svm.hook_arg = m;
	m->svm.close_on = t->close_at;
	m->dvm.close_on = t->dclose_at;
	m->svm.hold_on = t->hold_at;
	if (t->postcopy)
		m->sp.mode = MIG_MODE_POSTCOPY;
	m->dvm.no_uffd = t->no_dest_uffd;
	if (t->map)
		m->sp.mem_access = m->dp.mem_access = MIG_MEM_MAP;
}

static void assert_count(const char *what, int want, unsigned int got)
{
	if (want != ANY)
		ck_assert_msg(got == (unsigned int)want, "%s: %u, not %d", what,
			      got, want);
}

START_TEST(fails_before_switchover)
{
	const struct fail_row *t = &fails[_i];
	struct mig m;

	fprintf(stderr, "%s\n", t->name);
	mig_setup(&m, t->big_dest ? NPAGES * 2 : NPAGES,
		  t->timeout_ms ? t->timeout_ms : 5000);
	arrange(&m, t);
	mig_go(&m);
	assert_stayed(&m, t->sphase, t->swhy, t->dphase, t->dwhy);
	if (t->sret)
		ck_assert_int_eq(m.sret, t->sret);
	assert_count("rounds", t->rounds, m.ss.nrounds);
	assert_count("PAUSE", t->pauses, tvm_nreq(&m.svm, VML_MSG_PAUSE));
	assert_count("COMMIT", t->commits, tvm_nreq(&m.svm, VML_MSG_COMMIT));
	mig_fini(&m);
}
END_TEST

START_TEST(fail_rows_are_named_once)
{
	for (size_t i = 0; i < UT_ARRAY_SIZE(fails); i++)
		for (size_t j = i + 1; j < UT_ARRAY_SIZE(fails); j++)
			ck_assert_str_ne(fails[i].name, fails[j].name);
}
END_TEST

/* ---- the rest: each with its own outcome ---- */

START_TEST(vmlink_closes_at_commit)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.svm.close_on = VML_MSG_COMMIT;
	mig_go(&m);
	ck_assert_int_ne(m.sret, 0);
	ck_assert_str_eq(m.ss.outcome, "failed");
	ck_assert_msg(strstr(m.serr.msg, "the VM refused to commit"), "%s",
		      m.serr.msg);
	ck_assert_str_eq(m.ds.outcome, "failed");
	ck_assert_uint_eq(tvm_nreq(&m.dvm, VML_MSG_RESUME), 0);
	/* The link is gone, so the agent could not resume the VM: its VMM
	 * did, as the protocol says for an uncommitted pause. */
	ck_assert(m.svm.self_resumed);
	ck_assert_uint_eq(m.svm.state, VML_STATE_RUNNING);
	mig_fini(&m);
}
END_TEST

START_TEST(cancel_after_commit_refused)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.dvm.hook = cancel_on;
	m.dvm.hook_arg = &m;
	mig_go(&m);
	ck_assert_int_eq(m.refused, -EBUSY);
	assert_moved(&m, "precopy");
	mig_fini(&m);
}
END_TEST

START_TEST(wrong_vm_kinds_refused)
{
	struct mig m;

	/* Each agent pointed at the other's VM. */
	mig_setup(&m, NPAGES, 5000);
	m.sp.vm_socket = m.dvm.path;
	m.dp.vm_socket = m.svm.path;
	mig_go(&m);
	ck_assert_int_eq(m.sret, -EINVAL);
	ck_assert_msg(strstr(m.serr.msg, "is waiting for an incoming migration"),
		      "%s", m.serr.msg);
	ck_assert_int_eq(m.dret, -EBUSY);
	ck_assert_msg(strstr(m.derr.msg, "is already running"), "%s", m.derr.msg);
	ck_assert_str_eq(m.ss.outcome, "failed");
	ck_assert_str_eq(m.ds.outcome, "failed");
	ck_assert_uint_eq(m.svm.state, VML_STATE_RUNNING);
	ck_assert_uint_eq(tvm_nreq(&m.svm, VML_MSG_QUIT), 0);
	mig_fini(&m);
}
END_TEST

START_TEST(no_vm_at_path)
{
	struct mig m;

	mig_setup(&m, NPAGES, 5000);
	m.sp.vm_socket = "/nonexistent/ferry.sock";
	m.dp.vm_socket = "/nonexistent/ferry.sock";
	mig_go(&m);
	ck_assert_int_eq(m.sret, -ENOENT);
	ck_assert_msg(strstr(m.serr.msg, "cannot attach to the VM at "
			     "/nonexistent/ferry.sock"), "%s", m.serr.msg);
	ck_assert_int_eq(m.dret, -ENOENT);
	ck_assert_str_eq(m.ss.outcome, "failed");
	mig_fini(&m);
}
END_TEST

/* ---- certificates and main ---- */

static int make_certs(void)
{
	char c[PATH_MAX], k[PATH_MAX], hc[PATH_MAX], hk[PATH_MAX];
	struct cert_opts o = { .cn = "engine test CA", .days = 2 };
	static const char *const hosts[] = { "server", "client" };
	struct ut_err err;

	snprintf(c, PATH_MAX, "%s/ca.pem", tmpdir);
	snprintf(k, PATH_MAX, "%s/ca-key.pem", tmpdir);
	if (cert_make_ca(c, k, &o, &err))
		goto fail;
	for (size_t i = 0; i < UT_ARRAY_SIZE(hosts); i++) {
		o = (struct cert_opts){ .cn = hosts[i], .days = 2,
			.san = "DNS:localhost,IP:127.0.0.1" };
		snprintf(hc, PATH_MAX, "%s/%s.pem", tmpdir, hosts[i]);
		snprintf(hk, PATH_MAX, "%s/%s-key.pem", tmpdir, hosts[i]);
		if (cert_make_host(c, k, hc, hk, &o, &err))
			goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "certificates: %s\n", err.msg);
	return -1;
}

static void remove_tmpdir(void)
{
	static const char *const names[] = {
		"ca.pem", "ca-key.pem", "server.pem", "server-key.pem",
		"client.pem", "client-key.pem", "src.sock", "dst.sock",
	};
	char p[PATH_MAX];

	for (size_t i = 0; i < UT_ARRAY_SIZE(names); i++) {
		snprintf(p, PATH_MAX, "%s/%s", tmpdir, names[i]);
		unlink(p);
	}
	rmdir(tmpdir);
}

/* What the engines need of this kernel: a userfaultfd with async
 * write-protect on shmem (the source's tracking). */
static const char *missing_feature(void)
{
	uint64_t have = 0;

	if (gm_uffd_probe(&have))
		return "no userfaultfd here (vm.unprivileged_userfaultfd=0?)";
	if (!(have & GM_UFFD_FEATURE_WP_ASYNC))
		return "userfaultfd without WP_ASYNC (kernel < 6.7)";
	return NULL;
}

int main(void)
{
	const struct ft_case cases[] = {
		{ "precopy_converges", precopy_converges, 2, 0 },
		{ "precopy_zero_and_duplicate_pages",
		  precopy_zero_and_duplicate_pages, 0, 0 },
		{ "precopy_map_duplicate_source_rewritten",
		  precopy_map_duplicate_source_rewritten, 16, 0 },
		{ "postcopy_faults_served", postcopy_faults_served, 0, 0 },
		{ "hybrid_round0_then_postcopy", hybrid_round0_then_postcopy,
		  0, 0 },
		{ "auto_fits_stays_precopy", auto_fits_stays_precopy, 0, 0 },
		{ "auto_not_converging_goes_postcopy",
		  auto_not_converging_goes_postcopy, 0, 0 },
		{ "postcopy_recovers_after_cut", postcopy_recovers_after_cut,
		  0, 0 },
		{ "postcopy_cut_for_good_interrupts",
		  postcopy_cut_for_good_interrupts, 0, 0 },
		{ "vmlink_closes_at_commit", vmlink_closes_at_commit, 0, 0 },
		{ "cancel_after_commit_refused", cancel_after_commit_refused,
		  0, 0 },
		{ "wrong_vm_kinds_refused", wrong_vm_kinds_refused, 0, 0 },
		{ "no_vm_at_path", no_vm_at_path, 0, 0 },
		{ "fails_before_switchover", fails_before_switchover,
		  UT_ARRAY_SIZE(fails), 0 },
		{ "fail_rows_are_named_once", fail_rows_are_named_once, 0, 0 },
	};
	const char *why = missing_feature();
	int ret;

	if (why)
		return ft_skip(ft_count(cases, UT_ARRAY_SIZE(cases)), why);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-check-engine-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	if (make_certs()) {
		remove_tmpdir();
		return 1;
	}
	ret = ft_run(ft_suite("engine", cases, UT_ARRAY_SIZE(cases)));
	remove_tmpdir();
	return ret;
}
