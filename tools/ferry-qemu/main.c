// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-qemu: makes a stock QEMU a VM that ferry-source and ferry-dest
 * migrate. `serve` is the per-VM VM link daemon (link.c); `cmdline` prints
 * or execs the QEMU command line it needs (cmdline.c). The man page is
 * docs/man/ferry-qemu.1; the design argument docs/qemu.md.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-qemu"
#include "tools/ferry-qemu/fq.h"
#include "tools/ferry.h"
#include "util/util.h"

#ifndef FERRY_PRELOAD_DEFAULT
#define FERRY_PRELOAD_DEFAULT "/usr/local/lib/ferry/libferry-preload.so"
#endif

static const char usage[] =
	"Usage: ferry qemu serve --dir DIR [-s SOCKET] [--qmp PATH] [--uffd PATH]\n"
	"                  [--libvirt-incoming]\n"
	"       ferry qemu cmdline --dir DIR [--incoming] [-m SIZE] [--accel A]\n"
	"                  [--nodes N] [--hugetlb | --mem-path DIR]\n"
	"                  [--preload PATH] [--exec] [-- QEMU ARGS...]\n"
	"\n"
	"serve: the VM link for the QEMU started with `ferry qemu cmdline --dir\n"
	"DIR`, for ferry source, ferry dest and ferry vm snapshot|load. Exits\n"
	"when QEMU exits or quits.\n"
	"      --dir DIR       the VM's directory (both subcommands)\n"
	"  -s, --socket PATH   the VM link (default DIR/vm.sock)\n"
	"      --qmp PATH      QEMU's QMP socket (default DIR/qmp.sock)\n"
	"      --uffd PATH     the preload's uffd socket (default DIR/uffd.sock)\n"
	"      --libvirt-incoming  the destination of a libvirt migration (the\n"
	"                      ferry libvirt hook runs this): the state goes to\n"
	"                      the listener libvirt gave QEMU, libvirt resumes\n"
	"                      the guest; exits when the agent is done\n"
	"\n"
	"cmdline: prints that QEMU's command line, shell-quoted:\n"
	"  -m, --memory SIZE   guest RAM, QEMU syntax (default 64M)\n"
	"      --nodes N       N NUMA nodes (1 to 8), each on its own memfd\n"
	"      --hugetlb       2 MiB huge pages (hugetlb=on,hugetlbsize=2M)\n"
	"      --mem-path DIR  RAM in files QEMU makes in DIR, a tmpfs or a\n"
	"                      hugetlbfs of 2 MiB pages (memory-backend-file,\n"
	"                      align=2M: on a tmpfs, THP can map it huge)\n"
	"      --accel A       tcg (default) or kvm (only where KVM is native:\n"
	"                      ferry vm --probe-accel says use=kvm), QEMU's\n"
	"                      options after a comma: tcg,thread=single\n"
	"  -i, --incoming      the destination: -incoming defer -S\n"
	"      --preload PATH  libferry-preload.so (default $FERRY_PRELOAD, then\n"
	"                      " FERRY_PRELOAD_DEFAULT ")\n"
	"      --exec          run it in place of ferry qemu instead\n"
	"\n"
	"  -v, --verbose       log more (twice: debug)\n"
	"  -q, --quiet         errors only\n"
	"  -h, --help          this text\n"
	"  -V, --version       the version\n"
	"\n"
	"Exit status: 0 QEMU exited or quit (cmdline: printed), 1 error,\n"
	"2 usage.\n";

enum {
	OPT_QMP = 256, OPT_UFFD, OPT_DIR, OPT_ACCEL, OPT_PRELOAD, OPT_EXEC,
	OPT_NODES, OPT_HUGETLB, OPT_MEM_PATH, OPT_LIBVIRT_IN,
};

static const struct option long_opts[] = {
	{ "dir", required_argument, NULL, OPT_DIR },
	{ "socket", required_argument, NULL, 's' },
	{ "qmp", required_argument, NULL, OPT_QMP },
	{ "uffd", required_argument, NULL, OPT_UFFD },
	{ "memory", required_argument, NULL, 'm' },
	{ "accel", required_argument, NULL, OPT_ACCEL },
	{ "incoming", no_argument, NULL, 'i' },
	{ "preload", required_argument, NULL, OPT_PRELOAD },
	{ "exec", no_argument, NULL, OPT_EXEC },
	{ "nodes", required_argument, NULL, OPT_NODES },
	{ "hugetlb", no_argument, NULL, OPT_HUGETLB },
	{ "mem-path", required_argument, NULL, OPT_MEM_PATH },
	{ "libvirt-incoming", no_argument, NULL, OPT_LIBVIRT_IN },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ 0 },
};

struct args {
	const char *dir, *sock, *qmp, *uffd;
	struct fq_cmdline cl;
	bool exec;
	bool libvirt_incoming;
};

static char *in_dir(const char *dir, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s", dir, name) < 0)
		return NULL;
	return s;
}

/* Prints @s quoted for a POSIX shell where it needs it. */
static void put_quoted(const char *s)
{
	if (*s && !s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
			    "TUVWXYZ0123456789-_=+,./:@%")]) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (; *s; s++)
		if (*s == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*s);
	putchar('\'');
}

static int run_cmdline(struct args *a)
{
	char **argv, **env;
	int ret;

	a->cl.dir = a->dir;
	ret = fq_cmdline_build(&a->cl, &argv, &env);
	if (ret == -EINVAL) {
		fprintf(stderr, "ferry-qemu: -m %s does not split into %u NUMA "
			"node(s) of whole 2 MiB (--nodes is 1 to %u)\n",
			a->cl.mem, a->cl.nodes ? a->cl.nodes : 1, FQ_MAX_NODES);
		return 2;
	}
	if (ret) {
		fprintf(stderr, "ferry-qemu: %s\n", strerror(-ret));
		return 1;
	}
	if (a->exec) {
		for (char **e = env; *e; e++)
			putenv(*e);	/* env's strings now belong to environ */
		execvp(argv[0], argv);
		fprintf(stderr, "ferry-qemu: cannot run %s: %s\n", argv[0],
			strerror(errno));
		return 1;
	}
	for (char **e = env; *e; e++) {
		put_quoted(*e);
		putchar(' ');
	}
	for (char **v = argv; *v; v++) {
		put_quoted(*v);
		putchar(v[1] ? ' ' : '\n');
	}
	fq_cmdline_free(argv);
	fq_cmdline_free(env);
	return 0;
}

static int run_serve(struct args *a)
{
	struct fq_link_params p = { .stream_listen = -1, .notify_fd = -1,
				    .stop_fd = -1,
				    .libvirt_incoming = a->libvirt_incoming };
	char *qmp = NULL, *uffd = NULL, *sock = NULL;
	int ret;

	p.qmp_path = a->qmp ? a->qmp : (qmp = in_dir(a->dir, "qmp.sock"));
	p.uffd_path = a->uffd ? a->uffd : (uffd = in_dir(a->dir, "uffd.sock"));
	p.link_path = a->sock ? a->sock : (sock = in_dir(a->dir, "vm.sock"));
	signal(SIGPIPE, SIG_IGN);	/* a peer's close is an -EPIPE */
	ret = p.qmp_path && p.uffd_path && p.link_path ? fq_link_serve(&p)
						       : -ENOMEM;
	free(qmp);
	free(uffd);
	free(sock);
	return ret ? 1 : 0;
}

int ferry_qemu_main(int argc, char **argv)
{
	struct args a = { .cl = { .mem = "64M", .accel = "tcg" } };
	const char *cmd = argc > 1 ? argv[1] : "";
	int c;

	a.cl.preload = getenv("FERRY_PRELOAD") ? getenv("FERRY_PRELOAD")
					      : FERRY_PRELOAD_DEFAULT;
	ut_log_set_level(UT_LOG_WARN);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
		puts("ferry-qemu " PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") && strcmp(cmd, "cmdline")) {
		fprintf(stderr, "ferry-qemu: say serve or cmdline (see --help)\n");
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "s:m:ivqhV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_DIR: a.dir = optarg; break;
		case 's': a.sock = optarg; break;
		case OPT_QMP: a.qmp = optarg; break;
		case OPT_UFFD: a.uffd = optarg; break;
		case 'm': a.cl.mem = optarg; break;
		case OPT_ACCEL: a.cl.accel = optarg; break;
		case 'i': a.cl.incoming = true; break;
		case OPT_PRELOAD: a.cl.preload = optarg; break;
		case OPT_EXEC: a.exec = true; break;
		case OPT_NODES: a.cl.nodes = (unsigned int)atoi(optarg); break;
		case OPT_HUGETLB: a.cl.hugetlb = true; break;
		case OPT_MEM_PATH: a.cl.mem_path = optarg; break;
		case OPT_LIBVIRT_IN: a.libvirt_incoming = true; break;
		case 'v': ut_log_set_level(ut_log_get_level() + 1); break;
		case 'q': ut_log_set_level(UT_LOG_ERR); break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': puts("ferry-qemu " PACKAGE_VERSION); return 0;
		default: return 2;
		}
	}
	if ((strncmp(a.cl.accel, "tcg", 3) && strncmp(a.cl.accel, "kvm", 3)) ||
	    (a.cl.accel[3] && a.cl.accel[3] != ',')) {
		fprintf(stderr, "ferry-qemu: --accel is tcg or kvm (options "
			"after a comma)\n");
		return 2;
	}
	if (a.cl.hugetlb && a.cl.mem_path) {
		fprintf(stderr, "ferry-qemu: --hugetlb or --mem-path, not both "
			"(a hugetlbfs mount gives files huge pages)\n");
		return 2;
	}
	if (!a.dir && !(cmd[0] == 's' && a.qmp && a.uffd && a.sock)) {
		fprintf(stderr, "ferry-qemu: %s needs --dir DIR\n", cmd);
		return 2;
	}
	if (cmd[0] == 's') {
		if (optind != argc) {
			fprintf(stderr, "ferry-qemu: serve takes no operands\n");
			return 2;
		}
		return run_serve(&a);
	}
	a.cl.nextra = argc - optind;
	a.cl.extra = argv + optind;
	return run_cmdline(&a);
}
