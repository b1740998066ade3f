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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"

#define MAX_ARGS 32

static int add(char **v, int *n, const char *fmt, const char *a,
	       const char *b)
{
	char buf[4096];

	if (*n >= MAX_ARGS)
		return -E2BIG;
	snprintf(buf, sizeof(buf), fmt, a, b);
	v[*n] = strdup(buf);
	return v[(*n)++] ? 0 : -ENOMEM;
}

int fq_cmdline_build(const struct fq_cmdline *c, char ***argvp, char ***envp)
{
	char **v = calloc(MAX_ARGS + c->nextra + 1, sizeof(*v));
	char **e = calloc(3, sizeof(*e));
	char token[17];
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
	for (unsigned int i = 0; i < sizeof(rnd); i++)
		snprintf(token + 2 * i, 3, "%02x", rnd[i]);
	ret = ret ? ret : add(e, &ne, "LD_PRELOAD=%s%s", c->preload, "");
	ret = ret ? ret : add(e, &ne, "FERRY_UFFD_SOCKET=%s/uffd.sock%s",
			      c->dir, "");
	ret = ret ? ret : add(v, &n, "qemu-system-x86_64%s%s", "", "");
	ret = ret ? ret : add(v, &n, "-accel%s%s", "", "");
	ret = ret ? ret : add(v, &n, "%s%s", c->accel, "");
	ret = ret ? ret : add(v, &n, "-m%s%s", "", "");
	ret = ret ? ret : add(v, &n, "%s%s", c->mem, "");
	ret = ret ? ret : add(v, &n, "-object%s%s", "", "");
	ret = ret ? ret : add(v, &n, "memory-backend-memfd,id=ram0,size=%s,"
			      "share=on%s", c->mem, "");
	ret = ret ? ret : add(v, &n, "-machine%s%s", "", "");
	ret = ret ? ret : add(v, &n, "pc,memory-backend=ram0%s%s", "", "");
	ret = ret ? ret : add(v, &n, "-qmp%s%s", "", "");
	ret = ret ? ret : add(v, &n, "unix:%s/qmp.sock,server=on,wait=off%s",
			      c->dir, "");
	ret = ret ? ret : add(v, &n, "-fw_cfg%s%s", "", "");
	ret = ret ? ret : add(v, &n, "name=opt/ferry/resume,string=%s%s",
			      token, "");
	if (c->incoming) {
		ret = ret ? ret : add(v, &n, "-incoming%s%s", "", "");
		ret = ret ? ret : add(v, &n, "defer%s%s", "", "");
		ret = ret ? ret : add(v, &n, "-S%s%s", "", "");
	}
	for (int i = 0; !ret && i < c->nextra; i++) {
		v[n] = strdup(c->extra[i]);
		ret = v[n++] ? 0 : -ENOMEM;
	}
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
