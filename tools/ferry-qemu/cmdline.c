// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The QEMU command line Ferry needs, per side: guest RAM on a shared memfd
 * backend (QEMU skips it under x-ignore-shared; Ferry maps it), the preload
 * and its socket, a private QMP socket, a fw_cfg token unique to this QEMU
 * process (the ferry-guest payload sees a resume by its change), and on
 * the destination -incoming defer with -S (so that the loaded guest waits
 * for Ferry's RESUME instead of starting by itself).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"

#define MAX_ARGS (24 + 4 * FQ_MAX_NODES)

/* Appends one printf-formatted argument to @v (which has room). */
__attribute__((format(printf, 3, 4)))
static int add(char **v, int *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&v[*n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		v[*n] = NULL;
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

/* "64M" -> bytes; QEMU's suffixes K, M, G (binary). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t n = strtoull(s, &end, 10);
	unsigned int sh = 0;

	switch (*end) {
	case 'G': case 'g': sh = 30; end++; break;
	case 'M': case 'm': sh = 20; end++; break;
	case 'K': case 'k': sh = 10; end++; break;
	case 0: break;
	default: return -EINVAL;
	}
	if (*end || end == s || !n)
		return -EINVAL;
	*out = n << sh;
	return 0;
}

/* One shared memfd backend for the machine, or one per NUMA node. */
static int add_ram(const struct fq_cmdline *c, char **v, int *n)
{
	unsigned int nodes = c->nodes ? c->nodes : 1;
	uint64_t size, each;
	int ret = parse_size(c->mem, &size);

	if (ret || nodes > FQ_MAX_NODES || size % nodes ||
	    (each = size / nodes) % (2u << 20) || (c->hugetlb && c->mem_path))
		return -EINVAL;	/* nodes of whole 2 MiB, as QEMU wants */
	ret = add(v, n, "-m") ?: add(v, n, "%lluM",
				      (unsigned long long)(size >> 20));
	for (unsigned int i = 0; !ret && i < nodes; i++) {
		ret = add(v, n, "-object");
		/* A directory as mem-path: QEMU creates an unlinked file in
		 * it per backend, which it keeps open (ram.c finds it).
		 * align=2M: QEMU maps it 2 MiB-aligned, so that the kernel
		 * can map a tmpfs file's pages huge (THP; QEMU 7.2 maps a
		 * memory-backend-memfd only 4 KiB-aligned, which rules THP
		 * out), and a 2 MiB hugetlbfs needs that alignment anyway. */
		if (!ret && c->mem_path)
			ret = add(v, n, "memory-backend-file,id=ram%u,size=%lluM,"
				  "share=on,align=2M,mem-path=%s", i,
				  (unsigned long long)(each >> 20), c->mem_path);
		else if (!ret)
			ret = add(v, n, "memory-backend-memfd,id=ram%u,size=%lluM,"
				  "share=on%s", i, (unsigned long long)(each >> 20),
				  c->hugetlb ? ",hugetlb=on,hugetlbsize=2M" : "");
		if (!ret && nodes > 1)
			ret = add(v, n, "-numa") ?:
			      add(v, n, "node,memdev=ram%u", i);
	}
	if (!ret)
		ret = add(v, n, "-machine") ?:
		      add(v, n, nodes > 1 ? "pc" : "pc,memory-backend=ram0");
	return ret;
}

int fq_cmdline_build(const struct fq_cmdline *c, char ***argvp, char ***envp)
{
	char **v = calloc(MAX_ARGS + c->nextra + 1, sizeof(*v));
	char **e = calloc(3, sizeof(*e));
	uint8_t rnd[8];
	int n = 0, ne = 0, ret = 0;

	*argvp = *envp = NULL;
	if (!v || !e) {
		free(v);
		free(e);
		return -ENOMEM;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		ret = -EIO;
	ret = ret ?: add(e, &ne, "LD_PRELOAD=%s", c->preload);
	ret = ret ?: add(e, &ne, "FERRY_UFFD_SOCKET=%s/uffd.sock", c->dir);
	ret = ret ?: add(v, &n, "qemu-system-x86_64");
	ret = ret ?: add(v, &n, "-accel") ?: add(v, &n, "%s", c->accel);
	ret = ret ?: add_ram(c, v, &n);
	ret = ret ?: add(v, &n, "-qmp") ?:
		     add(v, &n, "unix:%s/qmp.sock,server=on,wait=off", c->dir);
	ret = ret ?: add(v, &n, "-fw_cfg") ?:
		     add(v, &n, "name=opt/ferry/resume,string=%02x%02x%02x%02x"
			 "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
			 rnd[4], rnd[5], rnd[6], rnd[7]);
	if (c->incoming)
		ret = ret ?: add(v, &n, "-incoming") ?: add(v, &n, "defer") ?:
			     add(v, &n, "-S");
	for (int i = 0; !ret && i < c->nextra; i++)
		ret = add(v, &n, "%s", c->extra[i]);
	if (ret) {
		fq_cmdline_free(v);
		fq_cmdline_free(e);
		return ret;
	}
	*argvp = v;
	*envp = e;
	return 0;
}

void fq_cmdline_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}
