// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry ctl: one request to a running agent's control socket (see
 * tools/control.c for the protocol), its reply printed for a person, or
 * as it came with --json.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tools/ferry.h"
#include "util/util.h"

static const char usage[] =
"Usage: ferry ctl [OPTIONS] SOCKET REQUEST\n"
"Sends one request to the ferry source or ferry dest whose --control\n"
"socket is SOCKET, and prints the reply.\n"
"\n"
"Requests:\n"
"  status                   phase, round, bytes by kind, rates, predicted\n"
"                           downtime, time left, faults so far\n"
"  cancel                   cancel before the switchover is committed (the\n"
"                           VM keeps running at the source)\n"
"  postcopy                 switch to postcopy now (source)\n"
"  set downtime TIME        the downtime limit (source; bare number: ms)\n"
"  set bandwidth SIZE       the cap on the bulk streams per second (source;\n"
"                           bare number: MiB/s; 0 or none: no cap)\n"
"  set streams N            refused while a migration runs: the streams\n"
"                           are fixed when the session connects\n"
"\n"
"Options:\n"
"      --json               print the reply as it came (one JSON object)\n"
"      --wait TIME          how long to wait for the agent (default 10s)\n"
"  -h, --help               this text\n"
"  -V, --version            the version\n"
"\n"
"Exit status: 0 done, 1 refused or the agent could not be reached,\n"
"2 usage.\n";

enum { OPT_JSON = 0x100, OPT_WAIT };

struct ctl_args {
	const char *prog;
	const char *path;
	bool json;
	uint64_t wait_ms;
};

/* The request line for the operands; 0, or 2 after a message. */
static int build_request(const struct ctl_args *a, int argc, char **argv,
			 char *buf, size_t cap)
{
	struct ut_json j;
	uint64_t v;

	ut_json_begin(&j, buf, cap);
	if (argc == 1 && (!strcmp(argv[0], "status") ||
			  !strcmp(argv[0], "cancel") ||
			  !strcmp(argv[0], "postcopy"))) {
		ut_json_str(&j, "request", argv[0]);
	} else if (argc == 3 && !strcmp(argv[0], "set")) {
		ut_json_str(&j, "request", "set");
		if (!strcmp(argv[1], "downtime") &&
		    !ut_parse_duration_ms(argv[2], 1, &v) && v) {
			ut_json_u64(&j, "downtime_ms", v);
		} else if (!strcmp(argv[1], "bandwidth") &&
			   (!strcmp(argv[2], "none") ||
			    !ut_parse_size(argv[2], UT_MiB, &v))) {
			if (!strcmp(argv[2], "none"))
				v = 0;
			ut_json_dbl(&j, "bandwidth_mibs", v / (double)UT_MiB, 4);
		} else if (!strcmp(argv[1], "streams") &&
			   !ut_parse_size(argv[2], 1, &v) && v) {
			ut_json_u64(&j, "streams", v);
		} else {
			fprintf(stderr, "%s: set downtime TIME, set bandwidth "
				"SIZE or set streams N, not 'set %s %s'\n",
				a->prog, argv[1], argv[2]);
			return 2;
		}
	} else {
		fprintf(stderr, "%s: %s: not a request (see %s --help)\n",
			a->prog, argc ? argv[0] : "nothing", a->prog);
		return 2;
	}
	return ut_json_end(&j) < 0 ? 2 : 0;
}

/* Sends @req, reads one line into @buf. 0 or -errno. */
static int exchange(const struct ctl_args *a, const char *req, char *buf,
		    size_t cap, size_t *len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	uint64_t deadline = ut_now_ns() + a->wait_ms * 1000000;
	size_t have = 0, n = strlen(req);
	int fd, ret = 0, sent_err = 0;

	if (strlen(a->path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, a->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
		ret = -errno;
	/* An agent that refuses us replies and closes at once: a failed
	 * send still leaves its reply to read. */
	else if (send(fd, req, n, MSG_NOSIGNAL) != (ssize_t)n)
		sent_err = -errno;
	while (!ret && !memchr(buf, '\n', have)) {
		struct pollfd p = { fd, POLLIN, 0 };
		uint64_t now = ut_now_ns();
		ssize_t r;

		if (have + 1 >= cap)
			ret = -EMSGSIZE;
		else if (now >= deadline ||
			 poll(&p, 1, (deadline - now) / 1000000 + 1) == 0)
			ret = -ETIMEDOUT;
		else if ((r = recv(fd, buf + have, cap - 1 - have, 0)) < 0)
			ret = -errno;
		else if (r == 0)
			ret = sent_err ? sent_err : -ECONNRESET;
		else
			have += r;
	}
	close(fd);
	buf[have] = 0;
	*len = have;
	return ret;
}

static double num(const struct ut_json_member *m, int n, const char *k)
{
	const struct ut_json_member *x = ut_json_get(m, n, k);

	return x && x->type == UT_JSON_NUMBER ? x->num : 0;
}

static const char *str(const struct ut_json_member *m, int n, const char *k)
{
	const struct ut_json_member *x = ut_json_get(m, n, k);

	return x && x->type == UT_JSON_STRING ? x->str : "?";
}

static bool is_null(const struct ut_json_member *m, int n, const char *k)
{
	const struct ut_json_member *x = ut_json_get(m, n, k);

	return !x || x->type == UT_JSON_NULL;
}

static void print_status(const struct ut_json_member *m, int n)
{
	bool source = !strcmp(str(m, n, "role"), "source");
	double done = num(m, n, "round_bytes_done") / UT_MiB;
	double total = num(m, n, "round_bytes_total") / UT_MiB;
	double mib = UT_MiB;

	if (!strcmp(str(m, n, "phase"), "waiting")) {
		printf("%s (pid %.0f): waiting for %s, %.1f s in\n",
		       str(m, n, "role"), num(m, n, "pid"),
		       source ? "the destination" : "a source",
		       num(m, n, "elapsed_s"));
		return;
	}
	if (!source) {
		printf("dest (pid %.0f): %s, %.1f of %.1f MiB of guest RAM here, "
		       "%.1f s in, %.0f streams\n", num(m, n, "pid"),
		       str(m, n, "phase"), done, total, num(m, n, "elapsed_s"),
		       num(m, n, "streams"));
		printf("  faults    %.0f served, %.0f pages requested, %.0f "
		       "recoveries\n", num(m, n, "faults"),
		       num(m, n, "pages_requested"), num(m, n, "recoveries"));
		return;
	}
	printf("source (pid %.0f): %s, round %.0f%s, %.1f of %.1f MiB of it "
	       "(%.0f%%), %.1f s in\n", num(m, n, "pid"),
	       str(m, n, "phase"), num(m, n, "round"),
	       ut_json_get(m, n, "final") && ut_json_get(m, n, "final")->b ?
		       " (final)" : "",
	       done, total, total > 0 ? 100 * done / total : 0,
	       num(m, n, "elapsed_s"));
	printf("  bytes     sent %.1f MiB on the wire; page data %.1f, zero "
	       "bitmaps %.3f, duplicate refs %.3f MiB (as of the last round)\n",
	       num(m, n, "bytes_sent") / mib, num(m, n, "bytes_data") / mib,
	       num(m, n, "bytes_zero") / mib, num(m, n, "bytes_dup") / mib);
	printf("  rates     %.1f MiB/s overall, %.1f MiB/s this round, guest "
	       "dirtying %.1f MiB/s, %.0f streams\n",
	       num(m, n, "throughput_mibs"), num(m, n, "round_rate_mibs"),
	       num(m, n, "dirty_rate_mibs"), num(m, n, "streams"));
	printf("  downtime  predicted %.1f ms, limit %.0f ms\n",
	       num(m, n, "predicted_downtime_ms"),
	       num(m, n, "downtime_limit_ms"));
	if (is_null(m, n, "bandwidth_limit_mibs"))
		printf("  bandwidth no cap\n");
	else
		printf("  bandwidth cap %.2f MiB/s\n",
		       num(m, n, "bandwidth_limit_mibs"));
	if (is_null(m, n, "time_left_s"))
		printf("  time left unknown yet\n");
	else
		printf("  time left about %.1f s (this round and the "
		       "switchover)\n", num(m, n, "time_left_s"));
	printf("  faults    %.0f served, %.0f pages requested, %.0f "
	       "recoveries\n", num(m, n, "faults"),
	       num(m, n, "pages_requested"), num(m, n, "recoveries"));
}

/* The reply for a person; returns the exit status. */
static int print_reply(const struct ctl_args *a, const char *line,
		       size_t len)
{
	struct ut_json_member m[40];
	const struct ut_json_member *ok, *x;
	int n = ut_json_parse(line, len, m, UT_ARRAY_SIZE(m));

	ok = n > 0 ? ut_json_get(m, n, "ok") : NULL;
	if (!ok || ok->type != UT_JSON_BOOL) {
		fprintf(stderr, "%s: the agent's reply is not one: %.200s\n",
			a->prog, line);
		return 1;
	}
	if (!ok->b) {
		fprintf(stderr, "%s: %s refused: %s\n", a->prog,
			str(m, n, "request"), str(m, n, "error"));
		return 1;
	}
	if (!strcmp(str(m, n, "request"), "status")) {
		print_status(m, n);
	} else if ((x = ut_json_get(m, n, "downtime_ms"))) {
		printf("downtime limit now %.0f ms\n", x->num);
	} else if ((x = ut_json_get(m, n, "bandwidth_mibs"))) {
		if (x->num > 0)
			printf("bandwidth cap now %.2f MiB/s\n", x->num);
		else
			printf("bandwidth cap removed\n");
	} else {
		printf("%s\n", str(m, n, "result"));
	}
	return 0;
}

int ferry_ctl_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "wait", required_argument, NULL, OPT_WAIT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ctl_args a = { .prog = argv[0], .wait_ms = 10000 };
	char req[512], reply[8192];
	size_t len = 0;
	int o, ret;

	/* "+": options only before SOCKET, so that a request's words are
	 * never taken for options. */
	while ((o = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (o) {
		case OPT_JSON:
			a.json = true;
			break;
		case OPT_WAIT:
			if (ut_parse_duration_ms(optarg, 1, &a.wait_ms) ||
			    !a.wait_ms) {
				fprintf(stderr, "%s: --wait takes a time (500ms, "
					"10s), not '%s'\n", a.prog, optarg);
				return 2;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("ferry ctl %s\n", PACKAGE_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", a.prog);
			return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "%s: SOCKET and REQUEST are needed (see %s "
			"--help)\n", a.prog, a.prog);
		return 2;
	}
	a.path = argv[optind];
	ret = build_request(&a, argc - optind - 1, argv + optind + 1, req,
			    sizeof(req));
	if (ret)
		return ret;
	ret = exchange(&a, req, reply, sizeof(reply), &len);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", a.prog, a.path,
			ret == -ETIMEDOUT ? "no reply in time" :
			ret == -ECONNRESET ? "the agent closed without a reply" :
			strerror(-ret));
		return 1;
	}
	if (a.json) {
		fwrite(reply, 1, len, stdout);
		return strstr(reply, "\"ok\": true") ? 0 : 1;
	}
	return print_reply(&a, reply, len);
}
