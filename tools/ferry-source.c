// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-source: migrates a running VM (reached over its VM link socket) to
 * a ferry-dest, live, over TLS 1.3.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

static const char usage[] =
"Usage: ferry-source [OPTIONS] --vm SOCKET --dest HOST:PORT\n"
"Migrates the running VM whose VM link listens on SOCKET to the ferry-dest\n"
"at HOST:PORT (an IPv6 address in brackets: [::1]:7000). Guest memory is\n"
"copied while the guest runs (precopy); when the remaining dirty memory\n"
"fits the downtime limit the VM pauses, its last pages and its state move,\n"
"and it resumes at the destination. If anything fails before then, or the\n"
"guest dirties memory faster than it can be sent (in precopy mode), the\n"
"VM keeps running here and ferry-source exits non-zero. After a postcopy\n"
"switchover the guest runs at the destination and fetches the pages it\n"
"has not received on demand; if the connection is lost then, the VM stays\n"
"paused here with all of its memory.\n"
"\n"
"  -s, --vm SOCKET          the VM's link socket (ferry-vm --socket)\n"
"  -d, --dest HOST:PORT     where ferry-dest listens\n"
"  -m, --mode MODE          precopy: rounds until the downtime fits, else\n"
"                           cancel; postcopy: switch over at once and fetch\n"
"                           pages on demand; hybrid: one precopy round, then\n"
"                           postcopy; auto (default): precopy, and postcopy\n"
"                           when the rounds stop converging\n"
"  -n, --streams N          bulk streams, 1 to 16 (default 2)\n"
"  -D, --downtime MS        downtime limit in ms (default 300)\n"
"  -b, --bandwidth MIBS     cap on the bandwidth, MiB/s (default none)\n"
"      --no-subpages        resend a dirty 2 MiB page whole, not only its\n"
"                           changed 4 KiB sub-pages\n"
"      --deadline S         give up converging after S seconds (120)\n"
"      --max-rounds N       give up after N rounds (30)\n"
"      --recover-timeout S  after a postcopy connection loss, reconnect for\n"
"                           up to S seconds (60) while the VM waits here\n"
"      --recover            finish a postcopy that a previous ferry-source\n"
"                           left interrupted (the VM is paused here)\n"
"  -q, --quiet              no progress, no summary\n"
"  -v, --verbose            log what happens\n"
"  -h, --help               this text\n"
"  -V, --version\n"
"\n" CLI_SECURITY_HELP
"\nSIGINT or SIGTERM before the switchover is committed cancel the migration\n"
"(the VM runs here); after it they are refused and the migration goes on.\n"
"\nExit status: 0 migrated, 1 failed or cancelled (the VM runs here), 2 usage.\n";

enum { OPT_DEADLINE = CLI_OPT_END, OPT_MAX_ROUNDS, OPT_RECOVER,
       OPT_RECOVER_TIMEOUT, OPT_NO_SUBPAGES };

struct peer {
	const struct tp_config *cfg;
	const char *host, *port;
};

/* Postcopy recovery: a new session to the same destination. */
static int reconnect(void *arg, struct tp_session **out, char *err)
{
	const struct peer *pe = arg;
	struct tp_err terr;
	int ret = tp_session_connect(pe->cfg, pe->host, pe->port, out, &terr);

	if (ret)
		snprintf(err, MIG_ERR_LEN, "%s", terr.msg);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 's' },
		{ "dest", required_argument, NULL, 'd' },
		{ "streams", required_argument, NULL, 'n' },
		{ "mode", required_argument, NULL, 'm' },
		{ "downtime", required_argument, NULL, 'D' },
		{ "bandwidth", required_argument, NULL, 'b' },
		{ "deadline", required_argument, NULL, OPT_DEADLINE },
		{ "max-rounds", required_argument, NULL, OPT_MAX_ROUNDS },
		{ "recover", no_argument, NULL, OPT_RECOVER },
		{ "no-subpages", no_argument, NULL, OPT_NO_SUBPAGES },
		{ "recover-timeout", required_argument, NULL,
		  OPT_RECOVER_TIMEOUT },
		CLI_SECURITY_OPTIONS,
		{ 0 },
	};
	struct cli c = { .prog = "ferry-source", .usage = usage };
	struct cli_signals sig;
	struct mig_source_params p = { 0 };
	const char *dest = NULL;
	char host[256], port[32], err[MIG_ERR_LEN];
	struct tp_session *sess = NULL;
	struct mig_stats st;
	struct tp_err terr;
	struct peer pe;
	bool tty;
	long v;
	int o, ret;

	c.tp.nbulk = 2;
	while ((o = getopt_long(argc, argv, "s:d:m:n:D:b:qvhV", opts, NULL)) != -1) {
		ret = cli_option(&c, o, optarg);
		if (ret == CLI_BAD || ret == CLI_EXIT_OK)
			return ret == CLI_BAD ? 2 : 0;
		if (ret == CLI_DONE)
			continue;
		switch (o) {
		case 's':
			p.vm_socket = optarg;
			break;
		case 'd':
			dest = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "auto")) {
				p.mode = MIG_MODE_AUTO;
			} else if (!strcmp(optarg, "precopy")) {
				p.mode = MIG_MODE_PRECOPY;
			} else if (!strcmp(optarg, "postcopy")) {
				p.mode = MIG_MODE_POSTCOPY;
			} else if (!strcmp(optarg, "hybrid")) {
				p.mode = MIG_MODE_HYBRID;
			} else {
				fprintf(stderr, "ferry-source: --mode takes auto, "
					"precopy, postcopy or hybrid, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			if ((v = cli_number(&c, "--streams", optarg, 1, TP_MAX_BULK)) < 0)
				return 2;
			c.tp.nbulk = v;
			break;
		case 'D':
			if ((v = cli_number(&c, "--downtime", optarg, 1, 600000)) < 0)
				return 2;
			p.downtime_limit_ms = v;
			break;
		case 'b':
			if ((v = cli_number(&c, "--bandwidth", optarg, 1, 1 << 20)) < 0)
				return 2;
			p.bandwidth_limit = (uint64_t)v << 20;
			break;
		case OPT_DEADLINE:
			if ((v = cli_number(&c, "--deadline", optarg, 1, 86400)) < 0)
				return 2;
			p.deadline_s = v;
			break;
		case OPT_MAX_ROUNDS:
			if ((v = cli_number(&c, "--max-rounds", optarg, 1, MIG_MAX_ROUNDS)) < 0)
				return 2;
			p.max_rounds = v;
			break;
		case OPT_NO_SUBPAGES:
			p.no_subpages = true;
			break;
		case OPT_RECOVER:
			p.recover = true;
			break;
		case OPT_RECOVER_TIMEOUT:
			if ((v = cli_number(&c, "--recover-timeout", optarg, 1,
					    86400)) < 0)
				return 2;
			p.recover_timeout_s = v;
			break;
		}
	}
	if (cli_check_args(&c, optind, argc, p.vm_socket && dest,
			   "--vm and --dest are required"))
		return 2;
	if (cli_split_addr(dest, host, sizeof(host), port, sizeof(port)) ||
	    !host[0]) {
		fprintf(stderr, "ferry-source: --dest wants HOST:PORT, not '%s'\n",
			dest);
		return 2;
	}
	if (cli_check(&c))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	ret = cli_signals_start(&sig, c.prog);
	if (ret) {
		fprintf(stderr, "ferry-source: cannot handle signals: %s\n",
			strerror(-ret));
		cli_signals_stop(&sig);
		return 1;
	}
	tty = !c.quiet && isatty(STDERR_FILENO);
	ret = tp_session_connect(&c.tp, host, port, &sess, &terr);
	if (ret) {
		cli_signals_stop(&sig);
		fprintf(stderr, "ferry-source: %s\n", terr.msg);
		return 1;
	}
	if (!c.quiet)
		fprintf(stderr, "ferry-source: %s\n", tp_session_describe(sess));
	p.session = sess;
	p.mem_access = c.mem;
	pe = (struct peer){ &c.tp, host, port };
	p.reconnect = reconnect;
	p.reconnect_arg = &pe;
	p.progress = cli_progress;
	p.progress_arg = &tty;
	p.cancel = &sig.cancel;
	cli_signals_arm(&sig);
	ret = mig_source_run(&p, &st, err);
	if (tty)
		fprintf(stderr, "\n");
	tp_session_destroy(sess);
	cli_signals_stop(&sig);
	return cli_finish(&c, &st, ret, err, "source");
}
