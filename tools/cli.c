// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>

#include "tools/cli.h"

static int read_psk(struct cli *c, const char *path)
{
	char hex[256];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "%s: --psk-file %s: %s\n", c->prog, path,
			strerror(errno));
		return -1;
	}
	if (!fgets(hex, sizeof(hex), f))
		hex[0] = 0;
	fclose(f);
	for (char *p = hex; *p && !isspace((unsigned char)*p); p += 2) {
		unsigned int b;

		if (!isxdigit((unsigned char)p[0]) ||
		    !isxdigit((unsigned char)p[1]) || n >= sizeof(c->psk) ||
		    sscanf(p, "%2x", &b) != 1) {
			n = 0;
			break;
		}
		c->psk[n++] = b;
	}
	if (n < 16) {
		fprintf(stderr, "%s: --psk-file %s: expected 32 to 128 hex "
				"digits\n", c->prog, path);
		return -1;
	}
	c->tp.security = TP_SEC_PSK;
	c->tp.psk = c->psk;
	c->tp.psk_len = n;
	return 0;
}

long cli_number(const struct cli *c, const char *opt, const char *arg,
		long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || end == arg || v < min || v > max) {
		fprintf(stderr, "%s: %s takes a number from %ld to %ld, not "
				"'%s'\n", c->prog, opt, min, max, arg);
		return -1;
	}
	return v;
}

int64_t cli_duration(const struct cli *c, const char *opt, const char *arg,
		     uint64_t bare_ms, uint64_t min_ms, uint64_t max_ms)
{
	uint64_t v;

	if (ut_parse_duration_ms(arg, bare_ms, &v) || v < min_ms ||
	    v > max_ms) {
		fprintf(stderr, "%s: %s takes a time from %llums to %llus "
				"(500ms, 10s, 2m; a bare number is %s), not "
				"'%s'\n", c->prog, opt,
			(unsigned long long)min_ms,
			(unsigned long long)max_ms / 1000,
			bare_ms == 1 ? "ms" : "s", arg);
		return -1;
	}
	return (int64_t)v;
}

int64_t cli_size(const struct cli *c, const char *opt, const char *arg,
		 uint64_t bare, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (ut_parse_size(arg, bare, &v) || v < min || v > max) {
		fprintf(stderr, "%s: %s takes a size from %lluK to %lluM "
				"(64M, 1G, 512K; a bare number is MiB), not "
				"'%s'\n", c->prog, opt,
			(unsigned long long)(min >> 10),
			(unsigned long long)(max >> 20), arg);
		return -1;
	}
	return (int64_t)v;
}

int cli_option(struct cli *c, int opt, const char *arg)
{
	int64_t v;

	switch (opt) {
	case CLI_OPT_CA:
		c->tp.ca_file = arg;
		return 1;
	case CLI_OPT_CERT:
		c->tp.cert_file = arg;
		return 1;
	case CLI_OPT_KEY:
		c->tp.key_file = arg;
		return 1;
	case CLI_OPT_CRL:
		c->tp.crl_file = arg;
		return 1;
	case CLI_OPT_PEER:
		c->tp.peer_name = arg;
		return 1;
	case CLI_OPT_PSK:
		return read_psk(c, arg) ? -1 : 1;
	case CLI_OPT_INSECURE:
		c->tp.security = TP_SEC_INSECURE;
		c->insecure_named = true;
		return 1;
	case CLI_OPT_IO_TIMEOUT:
	case CLI_OPT_TIMEOUT:
		v = cli_duration(c, opt == CLI_OPT_TIMEOUT ? "--timeout" :
				 "--io-timeout", arg, 1, 1, 3600000);
		if (v < 0)
			return -1;
		c->tp.timeout_ms = v;
		return 1;
	case CLI_OPT_JSON:
		c->json = arg;
		return 1;
	case CLI_OPT_EVENTS:
		c->events_path = arg;
		return 1;
	case CLI_OPT_CONTROL:
		c->control_path = arg;
		return 1;
	case 'q':
		c->quiet = true;
		return CLI_DONE;
	case 'v':
		ut_log_set_level(UT_LOG_INFO);
		return CLI_DONE;
	case 'h':
		fputs(c->usage, stdout);
		return CLI_EXIT_OK;
	case 'V':
		printf("%s %s\n", c->prog, PACKAGE_VERSION);
		return CLI_EXIT_OK;
	case '?':
		fprintf(stderr, "Try '%s --help'.\n", c->prog);
		return CLI_BAD;
	case CLI_OPT_FAULT_PRIO:
		if (strcmp(arg, "rt") && strcmp(arg, "normal")) {
			fprintf(stderr, "%s: --fault-priority takes rt or "
					"normal, not '%s'\n", c->prog, arg);
			return -1;
		}
		c->fault_normal = !strcmp(arg, "normal");
		return 1;
	case CLI_OPT_MEM:
		if (!strcmp(arg, "auto"))
			c->mem = MIG_MEM_AUTO;
		else if (!strcmp(arg, "map"))
			c->mem = MIG_MEM_MAP;
		else if (!strcmp(arg, "copy"))
			c->mem = MIG_MEM_COPY;
		else {
			fprintf(stderr, "%s: --mem-access takes auto, map or "
					"copy, not '%s'\n", c->prog, arg);
			return -1;
		}
		return 1;
	}
	return 0;
}

int cli_check_args(const struct cli *c, int optind, int argc, bool ok,
		   const char *missing)
{
	if (optind < argc || !ok) {
		fprintf(stderr, "%s: %s\nTry '%s --help'.\n", c->prog,
			optind < argc ? "unexpected argument" : missing,
			c->prog);
		return -1;
	}
	return 0;
}

int cli_check(struct cli *c)
{
	if (c->insecure_named && c->tp.psk) {
		fprintf(stderr, "%s: --insecure and --psk-file exclude each "
				"other\n", c->prog);
		return -1;
	}
	if (c->tp.security == TP_SEC_MTLS &&
	    (!c->tp.ca_file || !c->tp.cert_file || !c->tp.key_file)) {
		fprintf(stderr, "%s: mutual TLS needs --ca, --cert and --key "
				"(or --psk-file, or --insecure)\n", c->prog);
		return -1;
	}
	if (c->tp.crl_file && c->tp.security != TP_SEC_MTLS) {
		fprintf(stderr, "%s: --crl needs mutual TLS (--ca, --cert, "
				"--key)\n", c->prog);
		return -1;
	}
	if (c->json && c->events_path && !strcmp(c->json, "-") &&
	    !strcmp(c->events_path, "-")) {
		fprintf(stderr, "%s: --json - and --events - both want stdout: "
				"send one of them to a file\n", c->prog);
		return -1;
	}
	if (c->tp.security == TP_SEC_INSECURE)
		fprintf(stderr, "%s: WARNING: --insecure: guest memory crosses "
				"the network unencrypted and unauthenticated\n",
			c->prog);
	return 0;
}

int cli_split_addr(const char *s, char *host, size_t hlen, char *port,
		   size_t plen)
{
	const char *colon = strrchr(s, ':');
	size_t n;

	host[0] = 0;
	if (!colon) {
		snprintf(port, plen, "%s", s);
		return port[0] ? 0 : -1;
	}
	n = colon - s;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	} else if (memchr(s, ':', n)) {
		return -1; /* a bare IPv6 address needs brackets */
	}
	if (n >= hlen || !colon[1])
		return -1;
	memcpy(host, s, n);
	host[n] = 0;
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

static double mib(uint64_t b)
{
	return b / (double)(1 << 20);
}

/* "placement bind:1: planned node 1 256 MiB; placed node 1 250 MiB, ..." */
static void print_placement(FILE *f, const struct mig_place_stats *p)
{
	if (!p->policy[0])
		return;
	fprintf(f, "  placement %s: planned", p->policy);
	for (uint32_t i = 0; i < p->nr_nodes && i < GM_MAX_NODES; i++)
		fprintf(f, "%s node %u %.0f MiB", i ? "," : "", p->node_id[i],
		       mib(p->planned[p->node_id[i] % GM_MAX_NODES]));
	if (p->checked) {
		fprintf(f, "; placed");
		for (uint32_t i = 0; i < p->nr_nodes && i < GM_MAX_NODES; i++)
			fprintf(f, "%s node %u %.1f MiB", i ? "," : "",
			       p->node_id[i],
			       mib(p->placed[p->node_id[i] % GM_MAX_NODES]));
		fprintf(f, " (%.2f%% of %llu pages as planned, %llu never "
		       "allocated)", p->pages_present ?
		       100.0 * p->pages_as_planned / p->pages_present : 0.0,
		       (unsigned long long)p->pages_present,
		       (unsigned long long)p->pages_absent);
	}
	fprintf(f, "\n");
	if (p->hotness[0])
		fprintf(f, "  placement: hotness from %s; %llu times a chunk "
		       "was read and not written in a sample\n", p->hotness,
		       (unsigned long long)p->read_only_hot);
	if (p->heat_samples)
		fprintf(f, "  placement: %llu of %llu chunks hot (written or read) in %u samples "
		       "planned on the top tier\n",
		       (unsigned long long)p->hot_on_top,
		       (unsigned long long)p->hot_chunks, p->heat_samples);
	if (p->revisions)
		fprintf(f, "  placement: %u revisions of the plan as the heat "
		       "changed, %llu MiB moved between nodes in it\n",
		       p->revisions, (unsigned long long)(p->revised_bytes >> 20));
	if (p->promoted_chunks)
		fprintf(f, "  placement: %llu chunks the guest faulted on in "
		       "postcopy moved up to the top tier (each in place of "
		       "one it had not touched)\n",
		       (unsigned long long)p->promoted_chunks);
	if (p->note[0])
		fprintf(f, "  placement: %s\n", p->note);
}

void cli_print_summary(FILE *f, const struct mig_stats *st, const char *role)
{
	fprintf(f, "%s: %s migration %s in %.2f s", role, st->mode, st->outcome,
		st->total_s);
	if (st->downtime_ms > 0)
		fprintf(f, ", downtime %.1f ms", st->downtime_ms);
	fprintf(f, "\n");
	print_placement(f, &st->place);
	if (!st->bytes_total)
		return;
	fprintf(f, "  guest RAM %.0f MiB over %u bulk streams, %u rounds\n",
	       mib(st->guest_bytes), st->nbulk, st->nrounds);
	fprintf(f, "  sent %.1f MiB: page data %.1f, zero bitmaps %.3f, duplicate "
	       "refs %.3f, protocol %.3f\n", mib(st->bytes_total),
	       mib(st->bytes_data), mib(st->bytes_zero), mib(st->bytes_dup),
	       mib(st->bytes_proto));
	fprintf(f, "  throughput %.0f MiB/s, setup %.3f s, CPU %.2f s source / "
	       "%.2f s destination\n", st->throughput_mibs, st->setup_s,
	       st->cpu_s_source, st->cpu_s_dest);
	if (!strcmp(st->mode, "postcopy"))
		fprintf(f, "  postcopy %.2f s: %llu pages pushed, %llu requested; "
		       "%llu faults, p50 %.0f us, p99 %.0f us, max %.0f us, "
		       "vCPU blocked %.1f ms\n", st->postcopy_s,
		       (unsigned long long)st->pages_pushed,
		       (unsigned long long)st->pages_requested,
		       (unsigned long long)st->faults, st->fault_p50_us,
		       st->fault_p99_us, st->fault_max_us, st->vcpu_blocked_ms);
}

void cli_progress(const struct mig_progress *p, void *arg)
{
	struct cli *c = arg;

	cli_control_update(c->control, p);
	if (!c->tty || !p->phase || !strcmp(p->phase, "setup"))
		return;
	fprintf(stderr, "\r\033[Kround %u%s | %.0f/%.0f MiB | dirty %.1f MiB/s "
		"| %.0f MiB/s | predicted downtime %.1f ms",
		p->round, p->final ? " (final)" : "",
		mib(p->round_bytes_done), mib(p->round_bytes_total),
		p->dirty_rate_mibs, p->throughput_mibs,
		p->predicted_downtime_ms);
	fflush(stderr);
}

/* ---- signals ---- */

static void on_signal(struct cli_signals *s, int signo)
{
	const char *name = signo == SIGINT ? "SIGINT" : "SIGTERM";
	const char *why = NULL;
	sigset_t one;
	int ret;

	if (!atomic_load(&s->armed)) {
		/* Nothing started: die of the signal, as without us. */
		signal(signo, SIG_DFL);
		sigemptyset(&one);
		sigaddset(&one, signo);
		pthread_sigmask(SIG_UNBLOCK, &one, NULL);
		raise(signo);
		return;
	}
	ret = mig_cancel_request(&s->cancel, name, &why);
	if (ret == -EBUSY)
		fprintf(stderr, "%s: not cancelling (%s): the switchover is "
			"committed, %s; the migration goes on\n", s->prog,
			name, why ? why : "the guest may run at the other end");
}

static void *signals_main(void *arg)
{
	struct cli_signals *s = arg;
	struct pollfd pfd[2] = { { s->sig_fd, POLLIN, 0 },
				 { s->stop_fd, POLLIN, 0 } };
	struct signalfd_siginfo si;

	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if ((pfd[0].revents & POLLIN) &&
		    read(s->sig_fd, &si, sizeof(si)) == sizeof(si))
			on_signal(s, si.ssi_signo);
	}
	return NULL;
}

int cli_signals_start(struct cli_signals *s, const char *prog)
{
	sigset_t set;
	int ret;

	s->prog = prog;
	s->started = false;
	s->sig_fd = s->stop_fd = -1;
	atomic_store(&s->armed, false);
	ret = mig_cancel_init(&s->cancel);
	if (ret)
		return ret;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	ret = -pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (ret)
		return ret;
	s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (s->sig_fd < 0)
		return -errno;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_fd < 0)
		return -errno;
	ret = -pthread_create(&s->thread, NULL, signals_main, s);
	s->started = !ret;
	return ret;
}

void cli_signals_stop(struct cli_signals *s)
{
	uint64_t one = 1;

	if (s->started) {
		if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
			fprintf(stderr, "%s: stopping the signal thread "
				"failed\n", s->prog);
		pthread_join(s->thread, NULL);
		s->started = false;
	}
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->sig_fd >= 0)
		close(s->sig_fd);
	s->stop_fd = s->sig_fd = -1;
	mig_cancel_fini(&s->cancel);
}

/* ---- an agent's run ---- */

int cli_start(struct cli *c, struct cli_signals *sig, struct mig_tune *tune,
	      const char *role)
{
	struct ut_err err = { "" };
	int ret;

	signal(SIGPIPE, SIG_IGN);
	ret = cli_signals_start(sig, c->prog);
	if (ret) {
		fprintf(stderr, "%s: cannot handle signals: %s\n", c->prog,
			strerror(-ret));
		goto stop_signals;
	}
	if (c->events_path &&
	    mig_events_open(&c->events, c->events_path, role, &err)) {
		fprintf(stderr, "%s: %s\n", c->prog, err.msg);
		goto stop_signals;
	}
	if (c->control_path &&
	    cli_control_start(&c->control, c->prog, c->control_path, role,
			      &sig->cancel, tune, c->events, c->tp.nbulk))
		goto close_events;
	c->tty = !c->quiet && isatty(STDERR_FILENO);
	return 0;

close_events:
	mig_events_close(c->events, NULL);
	c->events = NULL;
stop_signals:
	cli_signals_stop(sig);
	return 1;
}

void cli_arm(struct cli *c, struct cli_signals *sig)
{
	cli_signals_arm(sig);
	cli_control_arm(c->control);
}

/* The last event: completed, or failed with the outcome and the reason. */
static void finish_event(struct mig_events *ev, const struct mig_stats *st,
			 int ret, const char *err)
{
	struct mig_event e;

	mig_event_begin(&e, ev, ret ? "failed" : "completed");
	ut_json_str(&e.j, "outcome", st->outcome);
	if (ret)
		ut_json_str(&e.j, "reason", err);
	ut_json_str(&e.j, "mode", st->mode);
	ut_json_dbl(&e.j, "total_s", st->total_s, 3);
	ut_json_dbl(&e.j, "downtime_ms", st->downtime_ms, 2);
	ut_json_u64(&e.j, "rounds", st->nrounds);
	ut_json_u64(&e.j, "bytes_total", st->bytes_total);
	ut_json_u64(&e.j, "bytes_data", st->bytes_data);
	ut_json_u64(&e.j, "bytes_zero", st->bytes_zero);
	ut_json_u64(&e.j, "bytes_dup", st->bytes_dup);
	ut_json_u64(&e.j, "bytes_proto", st->bytes_proto);
	ut_json_u64(&e.j, "faults", st->faults);
	ut_json_u64(&e.j, "recoveries", st->recoveries);
	mig_event_end(&e);
}

int cli_finish(struct cli *c, struct cli_signals *sig,
	       const struct mig_stats *st, int ret, const char *err,
	       const char *role)
{
	/* The summary must not land in an events stream on stdout. */
	FILE *out = c->events_path && !strcmp(c->events_path, "-") ? stderr :
								      stdout;
	uint64_t written = 0;
	int ev;

	if (c->tty)
		fprintf(stderr, "\n");
	cli_control_stop(c->control);
	c->control = NULL;
	cli_signals_stop(sig);
	finish_event(c->events, st, ret, err);
	ev = mig_events_close(c->events, &written);
	c->events = NULL;
	if (c->json)
		mig_stats_write_json(st, role, c->json);
	if (ev)
		fprintf(stderr, "%s: --events %s: %s: the stream stops after "
				"%llu events\n", c->prog, c->events_path,
			strerror(-ev), (unsigned long long)written);
	if (ret) {
		fprintf(stderr, "%s: %s\n", c->prog, err);
		return 1;
	}
	if (!c->quiet)
		cli_print_summary(out, st, c->prog);
	return 0;
}
