// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-dest: receives one live migration from a ferry-source into an
 * incoming VM (ferry-vm --incoming) and resumes it there.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

static const char usage[] =
"Usage: ferry-dest [OPTIONS] --vm SOCKET --listen [HOST:]PORT\n"
"       ferry-dest --show-topology\n"
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
"      --placement POLICY   where the guest's pages land (none: the\n"
"                           kernel's first touch, the default):\n"
"                           local (the nodes of the incoming VMM's CPUs),\n"
"                           bind:NODES, interleave:NODES (2 MiB chunks in\n"
"                           turn), tiered (hottest chunks on the top memory\n"
"                           tier, the rest below), cells:N,N (RAM region i\n"
"                           on node N_i); NODES as 0-1,3. A plan that does\n"
"                           not fit is refused before any page is sent\n"
"      --fast-share PCT     tiered: at most PCT%% of guest RAM on the top\n"
"                           tier (default: as much as its free memory)\n"
"      --show-topology      print this host's NUMA picture and exit\n"
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

enum {
	OPT_ACCEPT_TIMEOUT = CLI_OPT_END,
	OPT_UFFD_MODE,
	OPT_PLACEMENT,
	OPT_FAST_SHARE,
	OPT_SHOW_TOPOLOGY,
};

/* --show-topology: the host picture, as the plan will see it. */
static int show_topology(void)
{
	static struct gm_topo t;
	char host[256] = "";
	int ret = gm_topo_read(&t, NULL);

	if (ret) {
		fprintf(stderr, "ferry-dest: cannot read this host's NUMA "
			"picture: %s\n", strerror(-ret));
		return 1;
	}
	gethostname(host, sizeof(host) - 1);
	printf("%s: %u NUMA node%s\n", host, t.nr_nodes,
	       t.nr_nodes == 1 ? "" : "s");
	gm_topo_print(&t, stdout, "  ");
	return 0;
}

struct listen {
	struct tp_listener *l;
	int timeout_ms;		/* --accept-timeout */
};

/* Postcopy recovery: the next session from the returning source, for up
 * to --accept-timeout. A connection that fails its handshake (a source
 * that gave up on it while this agent was held up, a peer with the wrong
 * credentials) is not the end of the wait: the next one may be the
 * source (tests/faults.sh stop_dest_postcopy). */
static int reaccept(void *arg, struct tp_session **out, char *err)
{
	const struct listen *ls = arg;
	uint64_t end = ut_now_ns() + (uint64_t)ls->timeout_ms * 1000000ULL;
	struct tp_err terr;
	int ret;

	do {
		ret = tp_session_accept(ls->l, out, &terr);
	} while ((ret == -EPROTO || ret == -ECONNRESET || ret == -EACCES) &&
		 ut_now_ns() < end);
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
		{ "placement", required_argument, NULL, OPT_PLACEMENT },
		{ "fast-share", required_argument, NULL, OPT_FAST_SHARE },
		{ "show-topology", no_argument, NULL, OPT_SHOW_TOPOLOGY },
		CLI_SECURITY_OPTIONS,
		{ 0 },
	};
	struct cli c = { .prog = "ferry-dest", .usage = usage };
	struct cli_signals sig;
	struct mig_dest_params p = { 0 };
	const char *listen = NULL;
	char host[256], port[32], err[MIG_ERR_LEN] = "";
	struct tp_listener *l = NULL;
	struct listen ls;
	struct tp_session *sess = NULL;
	struct mig_stats st;
	struct tp_err terr;
	long v, fast_share = 0;
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
		case OPT_PLACEMENT:
			if (mig_place_parse(optarg, &p.placement, err)) {
				fprintf(stderr, "ferry-dest: %s\n", err);
				return 2;
			}
			break;
		case OPT_FAST_SHARE:
			if ((fast_share = cli_number(&c, "--fast-share", optarg,
						     1, 100)) < 0)
				return 2;
			break;
		case OPT_SHOW_TOPOLOGY:
			return show_topology();
		}
	}
	if (fast_share && p.placement.kind != MIG_PLACE_TIERED) {
		fprintf(stderr, "ferry-dest: --fast-share goes with "
			"--placement tiered\n");
		return 2;
	}
	p.placement.fast_share = fast_share;
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
	ls = (struct listen){ l, c.tp.accept_timeout_ms };
	p.reconnect = reaccept;
	p.reconnect_arg = &ls;
	p.cancel = &sig.cancel;
	cli_signals_arm(&sig);
	ret = mig_dest_run(&p, &st, err);
	tp_session_destroy(sess);
	tp_listener_destroy(l);
	cli_signals_stop(&sig);
	return cli_finish(&c, &st, ret, err, "dest");
}
