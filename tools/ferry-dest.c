// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry dest: receives one live migration from a ferry source into an
 * incoming VM (ferry vm --incoming) and resumes it there.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/ferry.h"

static const char usage[] =
"Usage: ferry dest [OPTIONS] --vm SOCKET --listen [HOST:]PORT\n"
"       ferry dest --show-topology\n"
"Waits for one ferry source on PORT, receives the VM into the incoming VM\n"
"whose VM link listens on SOCKET (ferry vm --incoming --socket SOCKET),\n"
"and resumes it there. If the source fails or gives up before the\n"
"switchover, the incoming VM is discarded and ferry dest exits non-zero.\n"
"\n"
"Migration:\n"
"  -s, --vm SOCKET          the incoming VM's link socket\n"
"  -l, --listen [HOST:]PORT address to listen on (default: all; port 0\n"
"                           picks a free one, printed on stderr)\n"
"      --accept-timeout TIME  give up if no source connects within TIME\n"
"                           (default 10m; bare number: s)\n"
"      --recover-timeout TIME  after a postcopy connection loss, wait this\n"
"                           long for the source to return (default: the\n"
"                           --accept-timeout; bare number: s)\n"
"      --uffd-mode MODE     how postcopy places pages: auto (MINOR mode\n"
"                           where the kernel has it for the backing: the\n"
"                           page written into the page cache, then mapped)\n"
"                           or missing (UFFDIO_COPY only)\n"
"      --reserve-hugepages  grow a hugetlb pool that cannot hold the\n"
"                           incoming VM's huge pages by what it lacks (set\n"
"                           back when ferry dest ends; pages in use stay\n"
"                           until the VM frees them); on the nodes a\n"
"                           --placement names, in their own pools.\n"
"                           Without it such a migration is refused with\n"
"                           the numbers\n"
"\nPlacement:\n"
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
"\nKSM (anonymous guest RAM only; KSM cannot merge shared memory):\n"
"      --no-ksm-hints       do not mark the pages the source sent as\n"
"                           duplicates or zero, or that KSM merged there,\n"
"                           MADV_MERGEABLE (the default marks them, through\n"
"                           the incoming VMM)\n"
"      --ksm                start KSM (/sys/kernel/mm/ksm/run 1) for the\n"
"                           migration and restore its setting at the end;\n"
"                           without it Ferry never changes KSM's settings\n"
"\nHuge pages:\n"
"      --thp-collapse TIME  once every page is in place, spend at most TIME\n"
"                           collapsing the VM's 4 KiB shmem RAM into\n"
"                           transparent huge pages where the host allows\n"
"                           them (default 10s; bare number: s; off: never)\n"
"\n" CLI_WATCH_HELP "\n" CLI_SECURITY_HELP "\n" CLI_OTHER_HELP
"\nSIGINT, SIGTERM or `ferry ctl SOCKET cancel` before the state has arrived\n"
"cancel the migration (the source VM runs on there); after it they are\n"
"refused.\n"
"\nExit status: 0 the VM runs here, 1 failed or cancelled, 2 usage.\n";

enum {
	OPT_ACCEPT_TIMEOUT = CLI_OPT_END,
	OPT_RECOVER_TIMEOUT,
	OPT_UFFD_MODE,
	OPT_PLACEMENT,
	OPT_FAST_SHARE,
	OPT_SHOW_TOPOLOGY,
	OPT_KSM,
	OPT_NO_KSM_HINTS,
	OPT_RESERVE_HUGEPAGES,
	OPT_THP_COLLAPSE,
};

/* --show-topology: the host picture, as the plan will see it. */
static int show_topology(const char *prog)
{
	static struct gm_topo t;
	char host[256] = "";
	int ret = gm_topo_read(&t, NULL);

	if (ret) {
		fprintf(stderr, "%s: cannot read this host's NUMA picture: %s\n",
			prog, strerror(-ret));
		return 1;
	}
	gethostname(host, sizeof(host) - 1);
	printf("%s: %u NUMA node%s\n", host, t.nr_nodes,
	       t.nr_nodes == 1 ? "" : "s");
	gm_topo_print(&t, stdout, "  ");
	return 0;
}

/* --ksm: KSM runs for the migration; *@old is what to restore (-1:
 * nothing, it ran already). */
static int start_ksm(const struct cli *c, int *old)
{
	struct gm_ksm_footprint f;

	*old = -1;
	gm_ksm_footprint(0, &f);
	if (f.run == 1)
		return 0;
	if (f.run < 0 || gm_ksm_set_run(1, NULL)) {
		fprintf(stderr, "%s: --ksm: cannot start KSM (%s)\n", c->prog,
			f.run < 0 ? "this kernel has none" :
			"/sys/kernel/mm/ksm/run is not writable here");
		return -1;
	}
	*old = f.run;
	if (!c->quiet)
		fprintf(stderr, "%s: KSM started (run 1, was %d; restored at "
			"the end)\n", c->prog, f.run);
	return 0;
}

static void stop_ksm(const struct cli *c, int old)
{
	if (old >= 0 && gm_ksm_set_run(old, NULL))
		fprintf(stderr, "%s: KSM's run could not be set back to %d\n",
			c->prog, old);
}

struct back {
	struct tp_listener *l;
	int64_t timeout_ms;	/* for a returning source */
};

/* Postcopy recovery: the next session from the returning source, for up
 * to the recovery timeout. A connection that fails its handshake (a
 * source that gave up on it while this agent was held up, a peer with the
 * wrong credentials) is not the end of the wait: the next one may be the
 * source (tests/faults.sh stop_dest_postcopy). */
static int reaccept(void *arg, struct tp_session **out, struct ut_err *err)
{
	struct back *b = arg;
	uint64_t end = ut_now_ns() + (uint64_t)b->timeout_ms * 1000000ULL;
	int ret;

	do {
		uint64_t now = ut_now_ns();

		tp_listener_set_accept_timeout(b->l, now < end ?
					       (int64_t)((end - now) / 1000000) :
					       1);
		ret = tp_session_accept(b->l, out, err);
	} while ((ret == -EPROTO || ret == -ECONNRESET || ret == -EACCES) &&
		 ut_now_ns() < end);
	if (ret)
		ut_err_set(err, ret, "no source came back: %.200s", err->msg);
	return ret;
}

/* Listens, waits for the source and runs the engine. */
static int receive(struct cli *c, struct mig_dest_params *p,
		   const char *host, const char *port, int64_t recover_ms,
		   struct cli_signals *sig, struct mig_stats *st,
		   struct ut_err *err)
{
	struct tp_listener *l = NULL;
	struct tp_session *sess = NULL;
	struct back b;
	int ret;

	memset(st, 0, sizeof(*st));
	snprintf(st->outcome, sizeof(st->outcome), "failed");
	ret = tp_listener_create(&c->tp, host[0] ? host : NULL, port, &l, err);
	if (!ret) {
		if (!c->quiet)
			fprintf(stderr, "%s: listening on port %d\n", c->prog,
				tp_listener_port(l));
		ret = tp_session_accept(l, &sess, err);
	}
	if (ret) {
		tp_listener_destroy(l);
		return ret;
	}
	if (!c->quiet)
		fprintf(stderr, "%s: %s\n", c->prog, tp_session_describe(sess));
	b = (struct back){ l, recover_ms >= 0 ? recover_ms :
			   c->tp.accept_timeout_ms };
	p->session = sess;
	p->mem_access = c->mem;
	p->fault_normal_priority = c->fault_normal;
	p->reconnect = reaccept;
	p->reconnect_arg = &b;
	p->cancel = &sig->cancel;
	p->progress = cli_progress;
	p->progress_arg = c;
	p->events = c->events;
	cli_arm(c, sig);
	ret = mig_dest_run(p, st, err);
	tp_session_destroy(sess);
	tp_listener_destroy(l);
	return ret;
}

int ferry_dest_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "accept-timeout", required_argument, NULL, OPT_ACCEPT_TIMEOUT },
		{ "recover-timeout", required_argument, NULL,
		  OPT_RECOVER_TIMEOUT },
		{ "uffd-mode", required_argument, NULL, OPT_UFFD_MODE },
		{ "placement", required_argument, NULL, OPT_PLACEMENT },
		{ "fast-share", required_argument, NULL, OPT_FAST_SHARE },
		{ "show-topology", no_argument, NULL, OPT_SHOW_TOPOLOGY },
		{ "ksm", no_argument, NULL, OPT_KSM },
		{ "no-ksm-hints", no_argument, NULL, OPT_NO_KSM_HINTS },
		{ "reserve-hugepages", no_argument, NULL,
		  OPT_RESERVE_HUGEPAGES },
		{ "thp-collapse", required_argument, NULL, OPT_THP_COLLAPSE },
		CLI_AGENT_OPTIONS,
		{ 0 },
	};
	struct cli c = { .prog = argv[0], .usage = usage };
	struct cli_signals sig;
	struct mig_dest_params p = { 0 };
	const char *listen = NULL;
	char host[256], port[32];
	struct ut_err err = { "" };
	struct mig_stats st;
	int64_t v, recover_ms = -1, fast_share = 0;
	bool ksm = false;
	int o, ret, ksm_old = -1;

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
		case OPT_RECOVER_TIMEOUT:
			v = cli_duration(&c, o == OPT_ACCEPT_TIMEOUT ?
					 "--accept-timeout" : "--recover-timeout",
					 optarg, 1000, 1000, 86400000);
			if (v < 0)
				return 2;
			if (o == OPT_ACCEPT_TIMEOUT)
				c.tp.accept_timeout_ms = v;
			else
				recover_ms = v;
			break;
		case OPT_UFFD_MODE:
			if (strcmp(optarg, "auto") && strcmp(optarg, "missing")) {
				fprintf(stderr, "%s: --uffd-mode takes auto or "
					"missing, not '%s'\n", c.prog, optarg);
				return 2;
			}
			p.no_minor = !strcmp(optarg, "missing");
			break;
		case OPT_PLACEMENT:
			if (mig_place_parse(optarg, &p.placement, &err)) {
				fprintf(stderr, "%s: %s\n", c.prog, err.msg);
				return 2;
			}
			break;
		case OPT_FAST_SHARE:
			if ((fast_share = cli_number(&c, "--fast-share", optarg,
						     1, 100)) < 0)
				return 2;
			break;
		case OPT_SHOW_TOPOLOGY:
			return show_topology(c.prog);
		case OPT_KSM:
			ksm = true;
			break;
		case OPT_NO_KSM_HINTS:
			p.no_ksm_hints = true;
			break;
		case OPT_RESERVE_HUGEPAGES:
			p.reserve_hugepages = true;
			break;
		case OPT_THP_COLLAPSE:
			v = strcmp(optarg, "off") ?
				    cli_duration(&c, "--thp-collapse", optarg,
						 1000, 0, 3600000) : 0;
			if (v < 0)
				return 2;
			p.thp_collapse_ms = v ? v : -1;
			break;
		default:
			return 2;
		}
	}
	if (fast_share && p.placement.kind != MIG_PLACE_TIERED) {
		fprintf(stderr, "%s: --fast-share goes with --placement "
			"tiered\n", c.prog);
		return 2;
	}
	p.placement.fast_share = (uint32_t)fast_share;
	if (cli_check_args(&c, optind, argc, p.vm_socket && listen,
			   "--vm and --listen are required"))
		return 2;
	if (cli_split_addr(listen, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, "%s: --listen wants [HOST:]PORT, not '%s'\n",
			c.prog, listen);
		return 2;
	}
	if (cli_check(&c))
		return 2;
	if (ksm && start_ksm(&c, &ksm_old))
		return 1;
	if (cli_start(&c, &sig, NULL, "dest")) {
		stop_ksm(&c, ksm_old);
		return 1;
	}
	ret = receive(&c, &p, host, port, recover_ms, &sig, &st, &err);
	stop_ksm(&c, ksm_old);
	return cli_finish(&c, &sig, &st, ret, err.msg, "dest");
}
