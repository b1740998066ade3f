// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry source: migrates a running VM (reached over its VM link socket)
 * to a ferry dest, live, over TLS 1.3.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"
#include "tools/ferry.h"

static const char usage[] =
"Usage: ferry source [OPTIONS] --vm SOCKET --dest HOST:PORT\n"
"Migrates the running VM whose VM link listens on SOCKET to the ferry dest\n"
"at HOST:PORT (an IPv6 address in brackets: [::1]:7000). Guest memory is\n"
"copied while the guest runs (precopy); when the remaining dirty memory\n"
"fits the downtime limit the VM pauses, its last pages and its state move,\n"
"and it resumes at the destination. If anything fails before then, or the\n"
"guest dirties memory faster than it can be sent (in precopy mode), the\n"
"VM keeps running here and ferry source exits non-zero. After a postcopy\n"
"switchover the guest runs at the destination and fetches the pages it\n"
"has not received on demand; if the connection is lost then, the VM stays\n"
"paused here with all of its memory while ferry source reconnects.\n"
"\n"
"Migration:\n"
"  -s, --vm SOCKET          the VM's link socket (ferry vm --socket)\n"
"  -d, --dest HOST:PORT     where ferry dest listens\n"
"  -m, --mode MODE          precopy: rounds until the downtime fits, else\n"
"                           cancel; postcopy: switch over at once and fetch\n"
"                           pages on demand; hybrid: one precopy round, then\n"
"                           postcopy; auto (default): the switchover of\n"
"                           least downtime: rounds while they converge, a\n"
"                           precopy switchover once it costs no more than a\n"
"                           postcopy one would, postcopy when they stop\n"
"                           converging\n""  -n, --streams N          bulk streams, 1 to 16 (default 2)\n"
"      --recover            finish a postcopy that a previous ferry source\n"
"                           left interrupted (the VM is paused here)\n"
"\n"
"Limits (downtime and bandwidth change while it runs: ferry ctl):\n"
"  -D, --downtime TIME      downtime limit (default 300ms; bare number: ms)\n"
"  -b, --bandwidth SIZE     cap on the bulk streams, per second (default\n"
"                           none; bare number: MiB/s)\n"
"      --deadline TIME      give up converging after TIME (default 2m; bare\n"
"                           number: s)\n"
"      --max-rounds N       give up after N precopy rounds (30)\n"
"      --no-subpages        resend a dirty 2 MiB page whole, not only its\n"
"                           changed 4 KiB sub-pages\n"
"      --push-before-resume  postcopy: push the remaining pages while the\n"
"                           destination still loads the state (default:\n"
"                           once its guest runs, which shortens downtime)\n"
"      --recover-timeout TIME  after a postcopy connection loss, reconnect\n"
"                           for up to TIME (default 60s; bare number: s)\n"
"\n" CLI_WATCH_HELP "\n" CLI_SECURITY_HELP "\n" CLI_OTHER_HELP
"\nSIGINT, SIGTERM or `ferry ctl SOCKET cancel` before the switchover is\n"
"committed cancel the migration (the VM runs here); after it they are\n"
"refused and the migration goes on.\n"
"\nExit status: 0 migrated, 1 failed or cancelled (the VM runs here, or,\n"
"after a postcopy switchover, stays paused here), 2 usage.\n";

enum { OPT_DEADLINE = CLI_OPT_END, OPT_MAX_ROUNDS, OPT_RECOVER,
       OPT_RECOVER_TIMEOUT, OPT_NO_SUBPAGES, OPT_PUSH_BEFORE_RESUME };

struct peer {
	const struct tp_config *cfg;
	const char *host, *port;
};

/* Postcopy recovery: a new session to the same destination. */
static int reconnect(void *arg, struct tp_session **out, struct ut_err *err)
{
	const struct peer *pe = arg;

	return tp_session_connect(pe->cfg, pe->host, pe->port, out, err);
}

static int parse_mode(const struct cli *c, const char *arg, enum mig_mode *m)
{
	static const struct { const char *name; enum mig_mode mode; } modes[] = {
		{ "auto", MIG_MODE_AUTO }, { "precopy", MIG_MODE_PRECOPY },
		{ "postcopy", MIG_MODE_POSTCOPY }, { "hybrid", MIG_MODE_HYBRID },
	};

	for (unsigned int i = 0; i < UT_ARRAY_SIZE(modes); i++)
		if (!strcmp(arg, modes[i].name)) {
			*m = modes[i].mode;
			return 0;
		}
	fprintf(stderr, "%s: --mode takes auto, precopy, postcopy or hybrid, "
		"not '%s'\n", c->prog, arg);
	return -1;
}

/* One of ferry source's own options; 0 or -1 (after a message). */
static int source_option(struct cli *c, struct mig_source_params *p,
			 const char **dest, int o, const char *arg)
{
	int64_t v = 0;

	switch (o) {
	case 's':
		p->vm_socket = arg;
		break;
	case 'd':
		*dest = arg;
		break;
	case 'm':
		return parse_mode(c, arg, &p->mode);
	case 'n':
		v = cli_number(c, "--streams", arg, 1, TP_MAX_BULK);
		c->tp.nbulk = v;
		break;
	case 'D':
		v = cli_duration(c, "--downtime", arg, 1, 1, 600000);
		p->downtime_limit_ms = v;
		break;
	case 'b':
		v = cli_size(c, "--bandwidth", arg, UT_MiB, 64 * UT_KiB,
			     1ULL << 40);
		p->bandwidth_limit = v;
		break;
	case OPT_DEADLINE:
		v = cli_duration(c, "--deadline", arg, 1000, 1000, 86400000);
		p->deadline_s = (v + 999) / 1000;
		break;
	case OPT_MAX_ROUNDS:
		v = cli_number(c, "--max-rounds", arg, 1, MIG_MAX_ROUNDS);
		p->max_rounds = v;
		break;
	case OPT_RECOVER:
		p->recover = true;
		break;
	case OPT_NO_SUBPAGES:
		p->no_subpages = true;
		break;
	case OPT_PUSH_BEFORE_RESUME:
		p->push_before_resume = true;
		break;
	case OPT_RECOVER_TIMEOUT:
		v = cli_duration(c, "--recover-timeout", arg, 1000, 1000,
				 86400000);
		p->recover_timeout_s = (v + 999) / 1000;
		break;
	default:
		return -1;
	}
	return v < 0 ? -1 : 0;
}

int ferry_source_main(int argc, char **argv)
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
		{ "push-before-resume", no_argument, NULL, OPT_PUSH_BEFORE_RESUME },
		{ "recover-timeout", required_argument, NULL,
		  OPT_RECOVER_TIMEOUT },
		CLI_AGENT_OPTIONS,
		{ 0 },
	};
	struct cli c = { .prog = argv[0], .usage = usage };
	struct cli_signals sig;
	struct mig_source_params p = { 0 };
	struct mig_tune tune;
	const char *dest = NULL;
	char host[256], port[32];
	struct tp_session *sess = NULL;
	struct mig_stats st;
	struct ut_err err = { "" };
	struct peer pe;
	int o, ret;

	c.tp.nbulk = 2;
	while ((o = getopt_long(argc, argv, "s:d:m:n:D:b:qvhV", opts, NULL)) != -1) {
		ret = cli_option(&c, o, optarg);
		if (ret == CLI_BAD || ret == CLI_EXIT_OK)
			return ret == CLI_BAD ? 2 : 0;
		if (ret == CLI_NOT_MINE &&
		    source_option(&c, &p, &dest, o, optarg))
			return 2;
	}
	if (cli_check_args(&c, optind, argc, p.vm_socket && dest,
			   "--vm and --dest are required"))
		return 2;
	if (cli_split_addr(dest, host, sizeof(host), port, sizeof(port)) ||
	    !host[0]) {
		fprintf(stderr, "%s: --dest wants HOST:PORT, not '%s'\n",
			c.prog, dest);
		return 2;
	}
	if (cli_check(&c))
		return 2;
	if (mig_tune_init(&tune, p.downtime_limit_ms, p.bandwidth_limit)) {
		fprintf(stderr, "%s: out of resources\n", c.prog);
		return 1;
	}
	if (cli_start(&c, &sig, &tune, "source")) {
		mig_tune_fini(&tune);
		return 1;
	}
	ret = tp_session_connect(&c.tp, host, port, &sess, &err);
	if (ret) {
		memset(&st, 0, sizeof(st));
		snprintf(st.outcome, sizeof(st.outcome), "failed");
		goto finish;
	}
	if (!c.quiet)
		fprintf(stderr, "%s: %s\n", c.prog, tp_session_describe(sess));
	p.session = sess;
	p.mem_access = c.mem;
	p.fault_normal_priority = c.fault_normal;
	pe = (struct peer){ &c.tp, host, port };
	p.reconnect = reconnect;
	p.reconnect_arg = &pe;
	p.progress = cli_progress;
	p.progress_arg = &c;
	p.cancel = &sig.cancel;
	p.tune = &tune;
	p.events = c.events;
	cli_arm(&c, &sig);
	ret = mig_source_run(&p, &st, &err);
	tp_session_destroy(sess);
finish:
	ret = cli_finish(&c, &sig, &st, ret, err.msg, "source");
	mig_tune_fini(&tune);
	return ret;
}
