// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libferry-preload.so: LD_PRELOAD'ed into an unmodified QEMU, it hands out
 * userfaultfds created inside QEMU's process.
 *
 * A userfaultfd acts on the address space of the process that created it,
 * so an agent that wants to register QEMU's guest RAM needs one made by
 * QEMU. The constructor starts one listener thread on the Unix socket named
 * by $FERRY_UFFD_SOCKET; each connection (from a peer with our uid, or
 * root) receives one fresh uffd as SCM_RIGHTS, without the UFFDIO_API
 * handshake, and our copy is closed at once (the VM link's rule: the uffd
 * lives as long as the agent holding it).
 *
 * The thread blocks every signal, so QEMU's signal handling (SIGALRM, SIGIO,
 * SIGBUS for memory errors) never lands on it. It only calls socket, accept,
 * userfaultfd and sendmsg: created before QEMU installs a seccomp filter
 * (-sandbox), it keeps working under the filter, as probed with QEMU 7.2.
 * No libferry code is linked in: this file is the whole library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* The library's only state: one listener per process, set up once. */
static struct {
	int listen_fd;
	pthread_t thread;
} fp = { .listen_fd = -1 };

static void say(const char *fmt, const char *arg)
{
	fprintf(stderr, "ferry-preload: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
}

/*
 * The full uffd first (it also sees the kernel's own accesses to guest
 * RAM, as KVM makes); the user-mode-only one where an unprivileged user is
 * refused it (enough under TCG, whose accesses are all user mode); then
 * /dev/userfaultfd.
 */
static int make_uffd(void)
{
	int fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int dev;

	if (fd >= 0)
		return fd;
	fd = syscall(__NR_userfaultfd,
		     O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd >= 0)
		return fd;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -1;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd;
}

static void hand_out(int conn)
{
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	char byte = 'U', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	int uffd;

	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) ||
	    (cr.uid != 0 && cr.uid != getuid()))
		return;		/* someone else's: no uffd on our RAM */
	uffd = make_uffd();
	if (uffd < 0) {
		byte = 'E';	/* the peer reads a byte without an fd */
	} else {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	}
	while (sendmsg(conn, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
	if (uffd >= 0)
		close(uffd);
}

static void *listener(void *arg)
{
	(void)arg;
	for (;;) {
		int conn = accept4(fp.listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (conn < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;	/* the listener is gone: QEMU is exiting */
		}
		hand_out(conn);
		close(conn);
	}
	return NULL;
}

static int listen_on(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		say("socket path too long: %s", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);	/* ours by configuration: a stale one from a crash */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4)) {
		say("cannot listen on %s", path);
		close(fd);
		return -1;
	}
	chmod(path, 0600);
	return fd;
}

/*
 * The thread is a joinable one whose owner is the process: it ends when
 * QEMU exits (there is no library teardown in a process that exits).
 */
__attribute__((constructor)) static void ferry_preload_init(void)
{
	const char *path = getenv("FERRY_UFFD_SOCKET");
	sigset_t all, old;

	if (!path || !*path)
		return;
	/* Not for the children QEMU may spawn (helpers, exec: migration). */
	fp.listen_fd = listen_on(path);
	unsetenv("FERRY_UFFD_SOCKET");
	unsetenv("LD_PRELOAD");
	if (fp.listen_fd < 0)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&fp.thread, NULL, listener, NULL)) {
		say("cannot start the listener thread%s", "");
		close(fp.listen_fd);
		fp.listen_fd = -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}
