// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Finding QEMU's guest RAM from outside: the backends (query-memdev), their
 * RAM blocks (`info ramblock`: name, page size, length), where the guest
 * sees them (`info mtree -f`, the "memory" address space), and where QEMU
 * maps them (/proc/PID/maps) with which file (QEMU's fd table).
 *
 * Every memfd backend is called "memory-backend-memfd" in /proc/PID/maps,
 * and QEMU 7.2's `info ramblock` has no host address, so a block and a
 * mapping are paired by length. Blocks of equal length are paired in
 * order: QEMU keeps its block list sorted by length, equal lengths in the
 * order they were created (qemu_ram_block_add), which is also the order of
 * their fds in QEMU's table.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "guestmem/guestmem.h"
#include "tools/ferry-qemu/fq.h"

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#define TMPFS_MAGIC_ 0x01021994
#define HUGETLBFS_MAGIC_ 0x958458f6

#define MAX_MAPS 32
#define SHARE_HINT "start QEMU with -object memory-backend-memfd,id=ram0," \
	"size=SIZE,share=on -machine memory-backend=ram0 (ferry-qemu cmdline " \
	"prints the whole line)"

struct mapping {		/* one shared file mapping in QEMU */
	uint64_t base, end;	/* host addresses of its offset 0 and end */
	uint64_t dev, ino;
	int fdnum;		/* its fd in QEMU's table, -1 if none */
	bool used;
};

struct block {			/* one RAM block behind a backend */
	char name[64];
	uint64_t page_size, len;
};

/* Every backend must be share=on; the first that is not is named. */
static int check_shared(struct fq_qmp *q)
{
	char *reply = NULL, *p, id[64];
	bool share, any = false;
	int ret = fq_qmp_cmd(q, "{\"execute\":\"query-memdev\"}", -1, &reply);

	if (ret) {
		pr_err("query-memdev: %s", q->err.msg);
		return ret;
	}
	for (p = strchr(reply, '['); p && (p = strchr(p, '{')); p++) {
		char *end = strchr(p, '}');

		if (!end)
			break;
		*end = 0;
		if (fq_json_str(p, "id", id, sizeof(id)))
			snprintf(id, sizeof(id), "?");
		if (fq_json_bool(p, "share", &share) || !share) {
			pr_err("QEMU's RAM backend \"%s\" is not shared: "
			       "give it share=on, or " SHARE_HINT, id);
			ret = -EINVAL;
			break;
		}
		any = true;
		p = end;
	}
	if (!ret && !any) {
		pr_err("QEMU has no RAM backend: " SHARE_HINT);
		ret = -EINVAL;
	}
	free(reply);
	return ret;
}

static uint64_t parse_psize(const char *num, const char *unit)
{
	uint64_t n = strtoull(num, NULL, 10);

	if (!strcmp(unit, "KiB"))
		return n << 10;
	if (!strcmp(unit, "MiB"))
		return n << 20;
	if (!strcmp(unit, "GiB"))
		return n << 30;
	return n;
}

/* The blocks of `info ramblock`, in QEMU's order. */
static int read_blocks(struct fq_qmp *q, struct block *b, unsigned int *nb)
{
	char *out, *line, *save = NULL;
	int ret = fq_qmp_hmp(q, "info ramblock", &out);

	*nb = 0;
	if (ret) {
		pr_err("info ramblock: %s", q->err.msg);
		return ret;
	}
	for (line = strtok_r(out, "\n", &save); line && *nb < MAX_MAPS;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[64], num[16], unit[8];
		uint64_t off, used;

		if (sscanf(line, " %63s %15s %7s 0x%" SCNx64 " 0x%" SCNx64,
			   name, num, unit, &off, &used) != 5)
			continue;	/* the header */
		snprintf(b[*nb].name, sizeof(b[*nb].name), "%s", name);
		b[*nb].page_size = parse_psize(num, unit);
		b[*nb].len = used;
		(*nb)++;
	}
	free(out);
	return 0;
}

/* Is @name one of the backends (the RAM blocks named after their ids)? */
static bool is_backend(const char *memdevs, const char *name)
{
	char pat[80];

	snprintf(pat, sizeof(pat), "\"id\": \"%.63s\"", name);
	return strstr(memdevs, pat) != NULL;
}

/* QEMU's shared file mappings, each with its fd number. */
static int read_maps(pid_t pid, struct mapping *m, unsigned int *nm)
{
	char path[64], line[512];
	FILE *f;
	DIR *d;
	struct dirent *de;

	*nm = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		pr_err("cannot read %s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		uint64_t s, e, off, ino;
		unsigned int maj, min;
		char perms[8];
		unsigned int i;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64
			   " %x:%x %" SCNu64, &s, &e, perms, &off, &maj, &min,
			   &ino) != 7 || perms[3] != 's' || !ino)
			continue;
		for (i = 0; i < *nm; i++)
			if (m[i].ino == ino && m[i].dev == makedev(maj, min) &&
			    m[i].base == s - off)
				break;
		if (i == *nm) {
			if (*nm == MAX_MAPS)
				continue;
			m[(*nm)++] = (struct mapping){ .base = s - off,
				.dev = makedev(maj, min), .ino = ino,
				.fdnum = -1 };
		}
		if (e > m[i].end)
			m[i].end = e;
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(d), de->d_name, &st, 0))
			continue;
		for (unsigned int i = 0; i < *nm; i++)
			if (m[i].ino == st.st_ino && m[i].dev == st.st_dev &&
			    (m[i].fdnum < 0 || atoi(de->d_name) < m[i].fdnum))
				m[i].fdnum = atoi(de->d_name);
	}
	closedir(d);
	return 0;
}

/* QEMU's fd @fdnum, duplicated into this process. */
static int grab_fd(pid_t pid, int fdnum)
{
	char path[64];
	int pfd = syscall(__NR_pidfd_open, pid, 0), fd = -1;

	if (pfd >= 0) {
		fd = syscall(__NR_pidfd_getfd, pfd, fdnum, 0);
		close(pfd);
	}
	if (fd < 0) {	/* older kernels: reopen the same file */
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fdnum);
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		pr_err("cannot take QEMU's RAM fd %d: %s", fdnum,
		       strerror(errno));
	return fd < 0 ? -errno : fd;
}

/*
 * What the agents can map and register: shmem (memfd, tmpfs files) with
 * 4 KiB pages, hugetlb (memfd hugetlb=on, hugetlbfs files) with 2 MiB
 * pages. 1 GiB pages are not done yet (issue 11).
 */
static int backing_of(int fd, const struct block *b, uint32_t *backing)
{
	struct statfs sf;

	if (fstatfs(fd, &sf))
		return -errno;
	if ((uint64_t)sf.f_type == HUGETLBFS_MAGIC_ && b->page_size == 2u << 20) {
		*backing = GM_BACKING_HUGETLB_2M;
		return 0;
	}
	if ((uint64_t)sf.f_type == HUGETLBFS_MAGIC_) {
		pr_err("RAM backend \"%s\" is on %" PRIu64 " KiB huge pages: "
		       "not supported by ferry-qemu yet (issue 11); use "
		       "hugetlbsize=2M", b->name, b->page_size >> 10);
		return -EOPNOTSUPP;
	}
	if (sf.f_type != TMPFS_MAGIC_ || b->page_size != 4096) {
		pr_err("RAM backend \"%s\" is a file outside tmpfs and "
		       "hugetlbfs: not supported; use "
		       "memory-backend-memfd,share=on", b->name);
		return -EOPNOTSUPP;
	}
	*backing = GM_BACKING_SHMEM;
	return 0;
}

/* The lowest guest address at which the guest sees offset 0 of block
 * @name (the "memory" address space of `info mtree -f`). */
static int find_gpa(const char *mtree, const char *name, uint64_t *gpa)
{
	const char *as = strstr(mtree, "AS \"memory\"");
	bool found = false;

	if (!as)
		return -EPROTO;
	/* Its lines end at the blank line closing the FlatView. */
	for (const char *l = strchr(as, '\n'); l && l[1] && l[1] != '\n';
	     l = strchr(l + 1, '\n')) {
		uint64_t s, e, off = 0;
		char n[64];
		int k;

		k = sscanf(l + 1, " %" SCNx64 "-%" SCNx64 " (prio %*d, ram): %63s "
			   "@%" SCNx64, &s, &e, n, &off);
		if (k < 3 || strcmp(n, name))
			continue;
		if (!found || s - off < *gpa)
			*gpa = s - off;
		found = true;
	}
	return found ? 0 : -ENOENT;
}

/* Pairs block @b with the first unused mapping of its length. */
static int add_region(struct fq_ram *ram, pid_t pid, const struct block *b,
		      struct mapping *m, unsigned int nm, const char *mtree)
{
	struct mapping *best = NULL;
	struct vml_region *r;
	int fd, ret;

	for (unsigned int i = 0; i < nm; i++)
		if (!m[i].used && m[i].end - m[i].base == b->len &&
		    m[i].fdnum >= 0 && (!best || m[i].fdnum < best->fdnum))
			best = &m[i];
	if (!best) {
		pr_err("RAM backend \"%s\" (%" PRIu64 " MiB) is not a shared "
		       "file mapping in QEMU: " SHARE_HINT, b->name,
		       b->len >> 20);
		return -EINVAL;
	}
	if (ram->nr == VML_MAX_REGIONS) {
		pr_err("more than %u RAM backends", VML_MAX_REGIONS);
		return -E2BIG;
	}
	best->used = true;
	fd = grab_fd(pid, best->fdnum);
	if (fd < 0)
		return fd;
	r = &ram->r[ram->nr];
	*r = (struct vml_region){ .size = b->len, .host_addr = best->base,
		.page_size = b->page_size, .backing = GM_BACKING_SHMEM,
		.fd = fd };
	snprintf(ram->name[ram->nr], sizeof(ram->name[0]), "%.63s", b->name);
	ram->nr++;
	ret = backing_of(fd, b, &r->backing);
	if (!ret && find_gpa(mtree, b->name, &r->gpa)) {
		pr_err("RAM backend \"%s\" is not mapped into the guest: not "
		       "supported", b->name);
		ret = -EOPNOTSUPP;
	}
	if (!ret)
		pr_info("region %u: \"%s\" gpa 0x%" PRIx64 ", %" PRIu64
			" MiB of %s at 0x%" PRIx64 " in QEMU, its fd %d",
			ram->nr - 1, b->name, r->gpa, r->size >> 20,
			gm_backing_name(r->backing), r->host_addr, best->fdnum);
	return ret;
}

int fq_ram_init(struct fq_ram *ram, struct fq_qmp *q)
{
	struct block b[MAX_MAPS];
	struct mapping m[MAX_MAPS];
	unsigned int nb, nm;
	char *memdevs = NULL, *mtree = NULL;
	int ret;

	memset(ram, 0, sizeof(*ram));
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++)
		ram->r[i].fd = -1;
	ret = check_shared(q);
	if (!ret)
		ret = fq_qmp_cmd(q, "{\"execute\":\"query-memdev\"}", -1,
				 &memdevs);
	if (!ret)
		ret = read_blocks(q, b, &nb);
	if (!ret && (ret = fq_qmp_hmp(q, "info mtree -f", &mtree)))
		pr_err("info mtree: %s", q->err.msg);
	if (!ret)
		ret = read_maps(q->peer, m, &nm);
	for (unsigned int i = 0; !ret && i < nb; i++)
		if (is_backend(memdevs, b[i].name))
			ret = add_region(ram, q->peer, &b[i], m, nm, mtree);
	free(memdevs);
	free(mtree);
	if (ret)
		fq_ram_fini(ram);
	return ret;
}

int fq_ram_make_fresh(struct fq_ram *ram)
{
	for (unsigned int i = 0; i < ram->nr; i++) {
		const struct vml_region *r = &ram->r[i];
		struct stat st;
		int ret;

		/* shmem and hugetlbfs both count a file's pages in st_blocks */
		if (fstat(r->fd, &st)) {
			ret = -errno;
			pr_err("region %u: cannot stat QEMU's RAM fd: %s", i,
			       strerror(-ret));
			return ret;
		}
		if (!st.st_blocks)
			continue;
		if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)r->fd_offset, (off_t)r->size)) {
			ret = -errno;
			pr_err("region %u: cannot drop the %llu KiB the incoming "
			       "QEMU had populated: %s", i,
			       (unsigned long long)st.st_blocks / 2,
			       strerror(-ret));
			return ret;
		}
		pr_info("region %u: the incoming QEMU had populated %llu KiB of "
			"its RAM (prealloc=on?): dropped, so that each page "
			"comes from the source", i,
			(unsigned long long)st.st_blocks / 2);
	}
	return 0;
}

void fq_ram_fini(struct fq_ram *ram)
{
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++) {
		if (ram->r[i].fd >= 0)
			close(ram->r[i].fd);
		ram->r[i].fd = -1;
	}
	ram->nr = 0;
}
