// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * userfaultfd wrappers. The uffd may belong to another process (received
 * over SCM_RIGHTS): every range ioctl acts on the address space of the
 * process that created the fd, while COPY reads its source from ours.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LOG_PREFIX "uffd"
#include "guestmem/internal.h"

/* Names for the features we ask for by name in error messages. */
static const struct {
	uint64_t bit;
	const char *name;
} feature_names[] = {
	{ UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP" },
	{ UFFD_FEATURE_EVENT_FORK, "EVENT_FORK" },
	{ UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP" },
	{ UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE" },
	{ UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS" },
	{ UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM" },
	{ UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP" },
	{ UFFD_FEATURE_SIGBUS, "SIGBUS" },
	{ UFFD_FEATURE_THREAD_ID, "THREAD_ID" },
	{ UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS" },
	{ UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM" },
	{ UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS" },
	{ UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM" },
	{ UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED" },
	{ UFFD_FEATURE_POISON, "POISON" },
	{ UFFD_FEATURE_WP_ASYNC, "WP_ASYNC" },
	{ UFFD_FEATURE_MOVE, "MOVE" },
};

static void features_str(uint64_t f, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = 0;
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(feature_names); i++) {
		if (!(f & feature_names[i].bit))
			continue;
		n += snprintf(buf + n, n < len ? len - n : 0, "%s%s",
			      n ? " " : "", feature_names[i].name);
		f &= ~feature_names[i].bit;
	}
	if (f && n < len)
		snprintf(buf + n, len - n, "%s0x%llx", n ? " " : "",
			 (unsigned long long)f);
}

int gm_uffd_create_raw(void)
{
	int fd, dev, ret;

	fd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	ret = -errno;
	/* The syscall may be disabled (vm.unprivileged_userfaultfd, seccomp);
	 * /dev/userfaultfd (6.1+) is the other door. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			ret = -errno;
		close(dev);
		if (fd >= 0)
			return fd;
	}
	pr_err("cannot create a userfaultfd: %s", strerror(-ret));
	return ret;
}

int gm_uffd_init(struct gm_uffd *u, int fd, uint64_t features, bool own)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	char missing[256];
	uint64_t have;
	int ret;

	if (!u || fd < 0)
		return -EINVAL;
	*u = (struct gm_uffd){ .fd = -1 };
	if (ioctl(fd, UFFDIO_API, &api) == 0) {
		/* On return api.features lists everything the kernel could
		 * do; only what we asked for is enabled. */
		*u = (struct gm_uffd){ .fd = fd, .features = features,
				       .ioctls = api.ioctls, .owner = own };
		return 0;
	}
	ret = -errno;
	if (ret != -EINVAL) {
		pr_err("UFFDIO_API failed: %s", strerror(-ret));
		return ret;
	}
	/* EINVAL: a feature is unknown, or the fd had its handshake already.
	 * Name the missing features if we can tell. */
	if (gm_uffd_probe(&have) == 0 && (features & ~have)) {
		features_str(features & ~have, missing, sizeof(missing));
		pr_err("kernel lacks userfaultfd features: %s", missing);
		return -EOPNOTSUPP;
	}
	pr_err("UFFDIO_API refused (was the handshake already done?)");
	return ret;
}

int gm_uffd_probe(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd, ret = 0;

	if (!features)
		return -EINVAL;
	fd = gm_uffd_create_raw();
	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api))
		ret = -errno;
	else
		*features = api.features;
	close(fd);
	return ret;
}

int gm_uffd_open(struct gm_uffd *u, uint64_t features)
{
	int fd, ret;

	if (!u)
		return -EINVAL;
	fd = gm_uffd_create_raw();
	if (fd < 0)
		return fd;
	ret = gm_uffd_init(u, fd, features, true);
	if (ret)
		close(fd);
	return ret;
}

void gm_uffd_close(struct gm_uffd *u)
{
	if (!u)
		return;
	if (u->owner && u->fd >= 0)
		close(u->fd);
	*u = (struct gm_uffd){ .fd = -1 };
}

/* Every range argument: the uffd is open, non-empty, 4K-aligned, no wrap. */
static int check_range(const struct gm_uffd *u, uint64_t addr, uint64_t len,
		       const char *what)
{
	if (u && u->fd >= 0 && len && UT_IS_ALIGNED(addr, 4096) &&
	    UT_IS_ALIGNED(len, 4096) && addr + len > addr)
		return 0;
	pr_err("%s: invalid range 0x%llx+0x%llx%s", what,
	       (unsigned long long)addr, (unsigned long long)len,
	       u && u->fd >= 0 ? "" : " (uffd not open)");
	return -EINVAL;
}

int gm_uffd_register(struct gm_uffd *u, uint64_t addr, uint64_t len,
		     unsigned int modes, uint64_t *ioctls)
{
	struct uffdio_register reg = { .range = { addr, len } };
	int ret = check_range(u, addr, len, "register");

	if (ret)
		return ret;
	if (!modes || (modes & ~(GM_UFFD_MISSING | GM_UFFD_WP | GM_UFFD_MINOR))) {
		pr_err("register: invalid modes 0x%x", modes);
		return -EINVAL;
	}
	if (modes & GM_UFFD_MISSING)
		reg.mode |= UFFDIO_REGISTER_MODE_MISSING;
	if (modes & GM_UFFD_WP)
		reg.mode |= UFFDIO_REGISTER_MODE_WP;
	if (modes & GM_UFFD_MINOR)
		reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
	if (ioctl(u->fd, UFFDIO_REGISTER, &reg)) {
		ret = -errno;
		pr_err("UFFDIO_REGISTER 0x%llx+0x%llx modes 0x%x: %s",
		       (unsigned long long)addr, (unsigned long long)len, modes,
		       strerror(-ret));
		return ret;
	}
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

int gm_uffd_unregister(struct gm_uffd *u, uint64_t addr, uint64_t len)
{
	struct uffdio_range range = { addr, len };
	int ret = check_range(u, addr, len, "unregister");

	if (ret)
		return ret;
	if (ioctl(u->fd, UFFDIO_UNREGISTER, &range)) {
		ret = -errno;
		/* ENOMEM: the owner's mm is gone (the VMM exited), and its
		 * registrations with it; not worth a line after the error
		 * that made it exit. EINVAL usually means the same. */
		if (ret == -ENOMEM)
			pr_debug(
			   "UFFDIO_UNREGISTER 0x%llx+0x%llx: the owner exited",
			   (unsigned long long)addr, (unsigned long long)len);
		else
			pr_err("UFFDIO_UNREGISTER 0x%llx+0x%llx: %s",
			       (unsigned long long)addr,
			       (unsigned long long)len, strerror(-ret));
	}
	return ret;
}

/*
 * The kernel reports partial progress in a per-ioctl field and returns
 * -EAGAIN when the mapping changed; EEXIST when the page is there already.
 * Those are the races of concurrent placement and are returned quietly.
 */
static int resolve_err(const char *what, uint64_t dst, int ret)
{
	if (!gm_uffd_race(ret))
		pr_err("%s at 0x%llx: %s", what, (unsigned long long)dst,
		       strerror(-ret));
	return ret;
}

int gm_uffd_copy(struct gm_uffd *u, uint64_t dst, const void *src,
		 uint64_t len, unsigned int flags)
{
	struct uffdio_copy c = {
		.dst = dst, .src = (uintptr_t)src, .len = len,
		.mode = (flags & GM_UFFD_DONTWAKE) ? UFFDIO_COPY_MODE_DONTWAKE : 0,
	};
	int ret = check_range(u, dst, len, "copy");

	if (ret)
		return ret;
	if (!src) {
		pr_err("copy: NULL source");
		return -EINVAL;
	}
	if (ioctl(u->fd, UFFDIO_COPY, &c))
		return resolve_err("UFFDIO_COPY", dst, -errno);
	return 0;
}

int gm_uffd_zeropage(struct gm_uffd *u, uint64_t dst, uint64_t len,
		     unsigned int flags)
{
	struct uffdio_zeropage z = {
		.range = { dst, len },
		.mode = (flags & GM_UFFD_DONTWAKE) ?
				UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0,
	};
	int ret = check_range(u, dst, len, "zeropage");

	if (ret)
		return ret;
	if (ioctl(u->fd, UFFDIO_ZEROPAGE, &z))
		return resolve_err("UFFDIO_ZEROPAGE", dst, -errno);
	return 0;
}

int gm_uffd_continue(struct gm_uffd *u, uint64_t dst, uint64_t len,
		     unsigned int flags)
{
	struct uffdio_continue c = {
		.range = { dst, len },
		.mode = (flags & GM_UFFD_DONTWAKE) ?
				UFFDIO_CONTINUE_MODE_DONTWAKE : 0,
	};
	int ret = check_range(u, dst, len, "continue");

	if (ret)
		return ret;
	if (ioctl(u->fd, UFFDIO_CONTINUE, &c))
		return resolve_err("UFFDIO_CONTINUE", dst, -errno);
	return 0;
}

int gm_uffd_move(struct gm_uffd *u, uint64_t dst, uint64_t src, uint64_t len,
		 unsigned int flags)
{
	struct uffdio_move m = {
		.dst = dst, .src = src, .len = len,
		.mode = (flags & GM_UFFD_DONTWAKE) ? UFFDIO_MOVE_MODE_DONTWAKE : 0,
	};
	int ret = check_range(u, dst, len, "move");

	if (ret)
		return ret;
	if (!UT_IS_ALIGNED(src, 4096) || src + len < src) {
		pr_err("move: invalid source 0x%llx", (unsigned long long)src);
		return -EINVAL;
	}
	if (!(u->features & UFFD_FEATURE_MOVE)) {
		pr_err("move: the uffd was opened without MOVE");
		return -EOPNOTSUPP;
	}
	if (ioctl(u->fd, UFFDIO_MOVE, &m))
		return resolve_err("UFFDIO_MOVE", dst, -errno);
	return 0;
}

int gm_uffd_poison(struct gm_uffd *u, uint64_t dst, uint64_t len,
		   unsigned int flags)
{
	struct uffdio_poison p = {
		.range = { dst, len },
		.mode = (flags & GM_UFFD_DONTWAKE) ?
				UFFDIO_POISON_MODE_DONTWAKE : 0,
	};
	int ret = check_range(u, dst, len, "poison");

	if (ret)
		return ret;
	if (!(u->features & UFFD_FEATURE_POISON)) {
		pr_err("poison: the uffd was opened without POISON");
		return -EOPNOTSUPP;
	}
	if (ioctl(u->fd, UFFDIO_POISON, &p))
		return resolve_err("UFFDIO_POISON", dst, -errno);
	return 0;
}

int gm_uffd_wake(struct gm_uffd *u, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { addr, len };
	int ret = check_range(u, addr, len, "wake");

	if (ret)
		return ret;
	if (ioctl(u->fd, UFFDIO_WAKE, &r))
		return resolve_err("UFFDIO_WAKE", addr, -errno);
	return 0;
}

int gm_uffd_writeprotect(struct gm_uffd *u, uint64_t addr, uint64_t len,
			 bool wp, unsigned int flags)
{
	struct uffdio_writeprotect w = { .range = { addr, len } };
	int ret = check_range(u, addr, len, "writeprotect");

	if (ret)
		return ret;
	if (wp)
		w.mode |= UFFDIO_WRITEPROTECT_MODE_WP;
	if (flags & GM_UFFD_DONTWAKE)
		w.mode |= UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
	if (ioctl(u->fd, UFFDIO_WRITEPROTECT, &w))
		return resolve_err("UFFDIO_WRITEPROTECT", addr, -errno);
	return 0;
}

static void convert_event(const struct uffd_msg *m, struct gm_uffd_event *e)
{
	*e = (struct gm_uffd_event){ .kind = GM_UFFD_EV_OTHER, .fd = -1 };
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		e->kind = GM_UFFD_EV_FAULT;
		e->addr = m->arg.pagefault.address;
		e->flags = m->arg.pagefault.flags;
		e->tid = m->arg.pagefault.feat.ptid;
		break;
	case UFFD_EVENT_REMOVE:
		e->kind = GM_UFFD_EV_REMOVE;
		e->addr = m->arg.remove.start;
		e->end = m->arg.remove.end;
		break;
	case UFFD_EVENT_UNMAP:
		e->kind = GM_UFFD_EV_UNMAP;
		e->addr = m->arg.remove.start;
		e->end = m->arg.remove.end;
		break;
	case UFFD_EVENT_REMAP:
		e->kind = GM_UFFD_EV_REMAP;
		e->addr = m->arg.remap.from;
		e->end = m->arg.remap.to;
		break;
	case UFFD_EVENT_FORK:
		e->kind = GM_UFFD_EV_FORK;
		e->fd = m->arg.fork.ufd;
		break;
	}
}

ssize_t gm_uffd_read_events(struct gm_uffd *u, struct gm_uffd_event *ev,
			    size_t max)
{
	struct uffd_msg msg[16];
	ssize_t n;

	if (!u || u->fd < 0 || !ev || !max)
		return -EINVAL;
	if (max > UT_ARRAY_SIZE(msg))
		max = UT_ARRAY_SIZE(msg);
	n = read(u->fd, msg, max * sizeof(msg[0]));
	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		n = -errno;
		pr_err("reading uffd events: %s", strerror(-n));
		return n;
	}
	n /= sizeof(msg[0]);
	for (ssize_t i = 0; i < n; i++)
		convert_event(&msg[i], &ev[i]);
	return n;
}
