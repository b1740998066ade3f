// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry: one command, its subcommands dispatched from one table (as
 * wireguard-tools' wg does). Run by an old program name (ferry-source,
 * ferry-dest, ferry-vm, ferry-cert, ferry-ctl, ferry-qemu: links to this
 * binary) it is that subcommand.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tools/ferry.h"

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *what;
} subcommands[] = {
	{ "source", ferry_source_main, "migrate a running VM to a ferry dest" },
	{ "dest", ferry_dest_main, "receive a migration into an incoming VM" },
	{ "ctl", ferry_ctl_main, "steer and watch a running agent" },
	{ "vm", ferry_vm_main, "the reference micro-VMM and its guest" },
	{ "qemu", ferry_qemu_main, "the VM link for a stock QEMU" },
	{ "cert", ferry_cert_main, "certificates for tests and demos" },
};

static void show_usage(FILE *f)
{
	fprintf(f, "Usage: ferry SUBCOMMAND [ARGS...]\n"
		   "       ferry SUBCOMMAND --help\n\n");
	for (unsigned int i = 0; i < sizeof(subcommands) /
					  sizeof(subcommands[0]); i++)
		fprintf(f, "  %-8s %s\n", subcommands[i].name,
			subcommands[i].what);
	fprintf(f, "\n  -h, --help     this text\n"
		   "  -V, --version  the version\n"
		   "\nExit status: the subcommand's; 2 for an unknown one.\n");
}

static int run(const char *name, const char *prog, int argc, char **argv)
{
	for (unsigned int i = 0; i < sizeof(subcommands) /
					  sizeof(subcommands[0]); i++) {
		if (strcmp(name, subcommands[i].name))
			continue;
		argv[0] = (char *)prog;
		return subcommands[i].main(argc, argv);
	}
	fprintf(stderr, "ferry: '%s' is not a subcommand (see ferry --help)\n",
		name);
	return 2;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	static char prog[32];

	base = base ? base + 1 : argv[0];
	/* ferry-source and the other old names: that subcommand. */
	if (!strncmp(base, "ferry-", 6))
		return run(base + 6, base, argc, argv);
	if (argc < 2) {
		show_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char *help[] = { argv[2], "--help", NULL };

			snprintf(prog, sizeof(prog), "ferry %s", argv[2]);
			return run(argv[2], prog, 2, help);
		}
		show_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("ferry %s\n", PACKAGE_VERSION);
		return 0;
	}
	snprintf(prog, sizeof(prog), "ferry %s", argv[1]);
	return run(argv[1], prog, argc - 1, argv + 1);
}
