// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-dest: receives one live migration from a ferry-source into an
 * incoming VM (ferry-vm --incoming) and resumes it there.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

static const char usage[] =
"Usage: ferry-dest [OPTIONS] --vm SOCKET --listen [HOST:]PORT\n"
"Waits for one ferry-source on PORT, receives the VM into the incoming VM\n"
"whose VM link listens on SOCKET (ferry-vm --incoming --socket SOCKET),\n"
"and resumes it there. If the source fails or gives up before the\n"
"switchover, the incoming VM is discarded and ferry-dest exits non-zero.\n"
"\n"
"  -s, --vm SOCKET          the incoming VM's link socket\n"
"  -l, --listen [HOST:]PORT address to listen on (default: all)\n"
"      --accept-timeout S   give up if no source connects in S s (600);\n"
"                           also how long a postcopy interrupted by a lost\n"
"                           connection waits for the source to return\n"
"      --uffd-mode MODE     how postcopy places pages: auto (MINOR mode\n"
"                           where the kernel has it for the backing: the\n"
"                           page written into the page cache, then mapped)\n"
"                           or missing (UFFDIO_COPY only)\n"
"  -q, --quiet              no summary\n"
"  -v, --verbose            log what happens\n"
"  -h, --help               this text\n"
"  -V, --version\n"
"\n" CLI_SECURITY_HELP
"\nSIGINT or SIGTERM before the state has arrived cancel the migration (the\n"
"source VM runs on there); after it they are refused.\n"
"\nExit status: 0 the VM runs here, 1 failed or cancelled, 2 usage.\n";

enum { OPT_ACCEPT_TIMEOUT = CLI_OPT_END, OPT_UFFD_MODE };

/* Postcopy recovery: the next session from the returning source. */
static int reaccept(void *arg, struct tp_session **out, char *err)
{
	struct tp_err terr;
	int ret = tp_session_accept(arg, out, &terr);

	if (ret)
		snprintf(err, MIG_ERR_LEN, "no source came back: %.200s",
			 terr.msg);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "accept-timeout", required_argument, NULL, OPT_ACCEPT_TIMEOUT },
		{ "uffd-mode", required_argument, NULL, OPT_UFFD_MODE },
		CLI_SECURITY_OPTIONS,
		{ 0 },
	};
	struct cli c = { .prog = "ferry-dest", .usage = usage };
	struct cli_signals sig;
	struct mig_dest_params p = { 0 };
	const char *listen = NULL;
	char host[256], port[32], err[MIG_ERR_LEN];
	struct tp_listener *l = NULL;
	struct tp_session *sess = NULL;
	struct mig_stats st;
	struct tp_err terr;
	long v;
	int o, ret;

	c.tp.accept_timeout_ms = 600000;
	while ((o = getopt_long(argc, argv, "s:l:qvhV", opts, NULL)) != -1) {
		ret = cli_option(&c, o, optarg);
		if (ret == CLI_BAD || ret == CLI_EXIT_OK)
			return ret == CLI_BAD ? 2 : 0;
		if (ret == CLI_DONE)
			continue;
		switch (o) {
		case 's':
			p.vm_socket = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case OPT_ACCEPT_TIMEOUT:
			if ((v = cli_number(&c, "--accept-timeout", optarg, 1,
					    86400)) < 0)
				return 2;
			c.tp.accept_timeout_ms = v * 1000;
			break;
		case OPT_UFFD_MODE:
			if (strcmp(optarg, "auto") && strcmp(optarg, "missing")) {
				fprintf(stderr, "ferry-dest: --uffd-mode takes "
					"auto or missing, not '%s'\n", optarg);
				return 2;
			}
			p.no_minor = !strcmp(optarg, "missing");
			break;
		}
	}
	if (cli_check_args(&c, optind, argc, p.vm_socket && listen,
			   "--vm and --listen are required"))
		return 2;
	if (cli_split_addr(listen, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, "ferry-dest: --listen wants [HOST:]PORT, not '%s'\n",
			listen);
		return 2;
	}
	if (cli_check(&c))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	ret = cli_signals_start(&sig, c.prog);
	if (ret) {
		fprintf(stderr, "ferry-dest: cannot handle signals: %s\n",
			strerror(-ret));
		cli_signals_stop(&sig);
		return 1;
	}
	ret = tp_listener_create(&c.tp, host[0] ? host : NULL, port, &l, &terr);
	if (ret) {
		cli_signals_stop(&sig);
		fprintf(stderr, "ferry-dest: %s\n", terr.msg);
		return 1;
	}
	if (!c.quiet)
		fprintf(stderr, "ferry-dest: listening on port %d\n",
			tp_listener_port(l));
	ret = tp_session_accept(l, &sess, &terr);
	if (ret) {
		tp_listener_destroy(l);
		cli_signals_stop(&sig);
		fprintf(stderr, "ferry-dest: %s\n", terr.msg);
		return 1;
	}
	if (!c.quiet)
		fprintf(stderr, "ferry-dest: %s\n", tp_session_describe(sess));
	p.session = sess;
	p.mem_access = c.mem;
	p.reconnect = reaccept;
	p.reconnect_arg = l;
	p.cancel = &sig.cancel;
	cli_signals_arm(&sig);
	ret = mig_dest_run(&p, &st, err);
	tp_session_destroy(sess);
	tp_listener_destroy(l);
	cli_signals_stop(&sig);
	return cli_finish(&c, &st, ret, err, "dest");
}
