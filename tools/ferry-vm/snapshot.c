// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Snapshot to a file and restore from it: a local migration with no
 * network. `ferry-vm snapshot` and `ferry-vm restore` are VM link clients,
 * doing what an agent does (pause, save-state, read guest RAM through the
 * handed fds or process_vm_readv; on the other side fill RAM through the
 * fd or the handed userfaultfd, load-state, resume). `--restore FILE`
 * does the same inside one ferry-vm process.
 *
 * File layout (little-endian):
 *   0 u64 magic "FERRYSNP"  8 u32 version (1)  12 u32 backing
 *  16 u64 ram_size  24 u64 page_size  32 u64 state_off  40 u64 state_len
 *  48 u64 ram_off (page-aligned)  56 u64 0
 *  then the state blob at state_off and guest RAM at ram_off.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

#define SNAP_MAGIC 0x504e535952524546ull /* "FERRYSNP" */
#define SNAP_VERSION 1u
#define SNAP_HDR 64u
#define CHUNK (1u << 20)

struct snap_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t backing;
	uint64_t ram_size;
	uint64_t page_size;
	uint64_t state_off;
	uint64_t state_len;
	uint64_t ram_off;
	uint64_t zero;
};
_Static_assert(sizeof(struct snap_hdr) == SNAP_HDR, "snapshot header");

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

/* Opens @path and reads its header; returns the fd or -errno. */
static int snap_open(const char *path, struct snap_hdr *h)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0) {
		ret = -errno;
		pr_err("cannot open snapshot %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = read_full(fd, h, sizeof(*h), 0);
	if (!ret && (h->magic != SNAP_MAGIC || h->version != SNAP_VERSION ||
		     !h->ram_size || h->state_len > VML_MAX_PAYLOAD))
		ret = -EINVAL;
	if (ret) {
		pr_err("%s is not a ferry-vm snapshot", path);
		close(fd);
		return ret;
	}
	return fd;
}

int vm_snapshot_peek(const char *path, uint64_t *ram_size)
{
	struct snap_hdr h;
	int fd = snap_open(path, &h);

	if (fd < 0)
		return fd;
	*ram_size = h.ram_size;
	close(fd);
	return 0;
}

static int read_state(int fd, const struct snap_hdr *h, void **blob)
{
	int ret;

	*blob = malloc(h->state_len ? h->state_len : 1);
	if (!*blob)
		return -ENOMEM;
	ret = read_full(fd, *blob, h->state_len, h->state_off);
	if (ret) {
		pr_err("snapshot state unreadable: %s", strerror(-ret));
		free(*blob);
		*blob = NULL;
	}
	return ret;
}

static int copy_nonzero(uint8_t *map, size_t size, size_t psz, int in,
			uint64_t off);

int vm_restore_file(struct vm *vm, const char *path)
{
	struct snap_hdr h;
	void *blob = NULL;
	int fd, ret;

	fd = snap_open(path, &h);
	if (fd < 0)
		return fd;
	ret = -EINVAL;
	if (h.ram_size != vm->ram.size) {
		pr_err("snapshot has %llu MiB of RAM, this VM %zu MiB",
		       (unsigned long long)(h.ram_size >> 20),
		       vm->ram.size >> 20);
		goto close_file;
	}
	ret = copy_nonzero(vm->ram.host, h.ram_size, vm->ram.page_size, fd,
			   h.ram_off);
	if (ret) {
		pr_err("snapshot RAM unreadable: %s", strerror(-ret));
		goto close_file;
	}
	ret = read_state(fd, &h, &blob);
	if (!ret)
		ret = vm_load_state(vm, blob, h.state_len);
	free(blob);
close_file:
	close(fd);
	return ret;
}

/* ---- the client subcommands ---- */

struct client_args {
	const char *socket;
	const char *file;
	bool keep_running;
};

static int parse_client(int argc, char **argv, struct client_args *a,
			const char *what)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "keep-running", no_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*a = (struct client_args){ 0 };
	while ((c = getopt_long(argc, argv, "s:v", opts, NULL)) != -1) {
		if (c == 's')
			a->socket = optarg;
		else if (c == 'K')
			a->keep_running = true;
		else if (c == 'v')
			ut_log_set_level(UT_LOG_INFO);
		else
			goto usage;
	}
	if (!a->socket || optind != argc - 1)
		goto usage;
	a->file = argv[optind];
	return 0;
usage:
	fprintf(stderr, "Usage: ferry-vm %s -s SOCKET FILE%s\n", what,
		!strcmp(what, "snapshot") ? " [--keep-running]" : "");
	return -EINVAL;
}

/* Copies the VMM's region @r into @out at @off. */
static int dump_ram(const struct vml_hello *hello, const struct vml_region *r,
		    int out, uint64_t off)
{
	uint8_t *buf = NULL, *map;
	int ret = 0;

	if (r->fd >= 0) {
		map = mmap(NULL, r->size, PROT_READ, MAP_SHARED, r->fd,
			   (off_t)r->fd_offset);
		if (map == MAP_FAILED)
			return -errno;
		ret = write_full(out, map, r->size, off);
		munmap(map, r->size);
		return ret;
	}
	buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	for (uint64_t o = 0; !ret && o < r->size; o += CHUNK) {
		size_t n = r->size - o < CHUNK ? r->size - o : CHUNK;
		struct iovec l = { buf, n };
		struct iovec rv = { (void *)(uintptr_t)(r->host_addr + o), n };

		if (process_vm_readv(hello->pid, &l, 1, &rv, 1, 0) != (ssize_t)n)
			ret = errno ? -errno : -EIO;
		else
			ret = write_full(out, buf, n, off + o);
	}
	free(buf);
	return ret;
}

static int write_snapshot(struct vml_client *c, const char *path)
{
	const struct vml_region *r = &c->hello.regions[0];
	struct snap_hdr h = { .magic = SNAP_MAGIC, .version = SNAP_VERSION };
	void *blob = NULL;
	size_t len;
	int fd, ret;

	ret = vml_client_save_state(c, &blob, &len);
	if (ret) {
		pr_err("save-state failed: %s", strerror(-ret));
		return ret;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		pr_err("cannot create %s: %s", path, strerror(-ret));
		goto free_blob;
	}
	h.backing = r->backing;
	h.ram_size = r->size;
	h.page_size = r->page_size;
	h.state_off = SNAP_HDR;
	h.state_len = len;
	h.ram_off = UT_ALIGN_UP(SNAP_HDR + len, 4096);
	ret = write_full(fd, &h, sizeof(h), 0);
	if (!ret)
		ret = write_full(fd, blob, len, h.state_off);
	if (!ret)
		ret = dump_ram(&c->hello, r, fd, h.ram_off);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret)
		pr_err("writing snapshot %s failed: %s", path, strerror(-ret));
	close(fd);
free_blob:
	free(blob);
	return ret;
}

int vm_cmd_snapshot(int argc, char **argv)
{
	struct client_args a;
	struct vml_client c;
	int ret;

	if (parse_client(argc, argv, &a, "snapshot"))
		return VM_EXIT_USAGE;
	if (vml_client_open(&c, a.socket))
		return VM_EXIT_ERROR;
	if (c.hello.nr_regions != 1) {
		pr_err("snapshot supports one RAM region, the VMM has %u",
		       c.hello.nr_regions);
		ret = -EOPNOTSUPP;
		goto close_client;
	}
	ret = vml_client_pause(&c);
	if (ret) {
		pr_err("pause failed: %s", strerror(-ret));
		goto close_client;
	}
	ret = write_snapshot(&c, a.file);
	if (a.keep_running || ret)
		vml_client_resume(&c);
	else
		vml_client_quit(&c);
close_client:
	vml_client_close(&c);
	return ret ? VM_EXIT_ERROR : VM_EXIT_OK;
}

/* Fills anonymous guest RAM through the VMM's uffd: UFFDIO_COPY of every
 * non-zero page; zero pages fault in normally after unregistering. */
static int fill_uffd(struct vml_client *c, const struct vml_region *r,
		     int in, uint64_t off)
{
	struct gm_uffd u = { .fd = -1 };
	uint8_t *buf;
	int ret;

	ret = gm_uffd_init(&u, c->hello.uffd, 0, false);
	if (!ret)
		ret = gm_uffd_register(&u, r->host_addr, r->size,
				       GM_UFFD_MISSING, NULL);
	if (ret)
		return ret;
	buf = malloc(CHUNK);
	if (!buf)
		ret = -ENOMEM;
	for (uint64_t o = 0; !ret && o < r->size; o += CHUNK) {
		size_t n = r->size - o < CHUNK ? r->size - o : CHUNK;

		ret = read_full(in, buf, n, off + o);
		for (size_t p = 0; !ret && p < n; p += r->page_size) {
			if (gm_is_zero(buf + p, r->page_size))
				continue;
			ret = gm_uffd_copy(&u, r->host_addr + o + p, buf + p,
					   r->page_size, 0);
			if (gm_uffd_race(ret))
				ret = 0;
		}
	}
	free(buf);
	gm_uffd_unregister(&u, r->host_addr, r->size);
	return ret;
}

/* Copies the file's RAM image into fresh (zero) RAM at @map, skipping
 * zero pages: they need no first touch, and stay unallocated. Huge pages
 * are checked in CHUNK pieces (fresh memory reads as zero either way), so
 * the buffer stays small. */
static int copy_nonzero(uint8_t *map, size_t size, size_t psz, int in,
			uint64_t off)
{
	size_t gran = psz < CHUNK ? psz : CHUNK;
	uint8_t *buf = malloc(CHUNK);
	int ret = buf ? 0 : -ENOMEM;

	for (uint64_t o = 0; !ret && o < size; o += CHUNK) {
		size_t n = size - o < CHUNK ? size - o : CHUNK;

		ret = read_full(in, buf, n, off + o);
		for (size_t p = 0; !ret && p < n; p += gran)
			if (!gm_is_zero(buf + p, gran))
				memcpy(map + o + p, buf + p, gran);
	}
	free(buf);
	return ret;
}

static int fill_ram(struct vml_client *c, int in, const struct snap_hdr *h)
{
	const struct vml_region *r = &c->hello.regions[0];
	uint8_t *map;
	int ret;

	if (r->size != h->ram_size) {
		pr_err("snapshot has %llu MiB of RAM, the VM %llu MiB",
		       (unsigned long long)(h->ram_size >> 20),
		       (unsigned long long)(r->size >> 20));
		return -EINVAL;
	}
	if (r->fd < 0)
		return fill_uffd(c, r, in, h->ram_off);
	map = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
		   (off_t)r->fd_offset);
	if (map == MAP_FAILED)
		return -errno;
	ret = copy_nonzero(map, r->size, r->page_size, in, h->ram_off);
	munmap(map, r->size);
	return ret;
}

int vm_cmd_restore(int argc, char **argv)
{
	struct client_args a;
	struct vml_client c;
	struct snap_hdr h;
	void *blob = NULL;
	int fd, ret;

	if (parse_client(argc, argv, &a, "restore"))
		return VM_EXIT_USAGE;
	fd = snap_open(a.file, &h);
	if (fd < 0)
		return VM_EXIT_ERROR;
	ret = vml_client_open(&c, a.socket);
	if (ret)
		goto close_file;
	ret = -EBUSY;
	if (!(c.hello.flags & VML_F_INCOMING) || c.hello.nr_regions != 1) {
		pr_err("the VM at %s is not an incoming ferry-vm", a.socket);
		goto close_client;
	}
	ret = fill_ram(&c, fd, &h);
	if (ret) {
		pr_err("filling guest RAM failed: %s", strerror(-ret));
		goto close_client;
	}
	ret = read_state(fd, &h, &blob);
	if (!ret)
		ret = vml_client_load_state(&c, blob, h.state_len);
	if (!ret)
		ret = vml_client_resume(&c);
	if (ret)
		pr_err("load-state/resume failed: %s", strerror(-ret));
	free(blob);
close_client:
	vml_client_close(&c);
close_file:
	close(fd);
	return ret ? VM_EXIT_ERROR : VM_EXIT_OK;
}
