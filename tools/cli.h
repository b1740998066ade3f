/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What ferry source and ferry dest share: options, addresses, the
 * control socket, the summary. Only the agents' subcommands include this. */
#ifndef FERRY_TOOLS_CLI_H
#define FERRY_TOOLS_CLI_H

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "migrate/migrate.h"
#include "transport/transport.h"
#include "util/util.h"

/* Long options every agent takes; their values start at CLI_OPT_BASE. */
enum {
	CLI_OPT_BASE = 0x100,
	CLI_OPT_CA = CLI_OPT_BASE,
	CLI_OPT_CERT,
	CLI_OPT_KEY,
	CLI_OPT_PEER,
	CLI_OPT_PSK,
	CLI_OPT_INSECURE,
	CLI_OPT_IO_TIMEOUT,
	CLI_OPT_TIMEOUT,	/* deprecated spelling of --io-timeout */
	CLI_OPT_JSON,
	CLI_OPT_EVENTS,
	CLI_OPT_CONTROL,
	CLI_OPT_MEM,
	CLI_OPT_CRL,
	CLI_OPT_FAULT_PRIO,
	CLI_OPT_END,
};

#define CLI_AGENT_OPTIONS \
	{ "ca", required_argument, NULL, CLI_OPT_CA }, \
	{ "cert", required_argument, NULL, CLI_OPT_CERT }, \
	{ "key", required_argument, NULL, CLI_OPT_KEY }, \
	{ "crl", required_argument, NULL, CLI_OPT_CRL }, \
	{ "peer-name", required_argument, NULL, CLI_OPT_PEER }, \
	{ "psk-file", required_argument, NULL, CLI_OPT_PSK }, \
	{ "insecure", no_argument, NULL, CLI_OPT_INSECURE }, \
	{ "io-timeout", required_argument, NULL, CLI_OPT_IO_TIMEOUT }, \
	{ "timeout", required_argument, NULL, CLI_OPT_TIMEOUT }, \
	{ "json", required_argument, NULL, CLI_OPT_JSON }, \
	{ "events", required_argument, NULL, CLI_OPT_EVENTS }, \
	{ "control", required_argument, NULL, CLI_OPT_CONTROL }, \
	{ "mem-access", required_argument, NULL, CLI_OPT_MEM }, \
	{ "fault-priority", required_argument, NULL, CLI_OPT_FAULT_PRIO }, \
	{ "quiet", no_argument, NULL, 'q' }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "help", no_argument, NULL, 'h' }, \
	{ "version", no_argument, NULL, 'V' }

/* The groups of --help every agent shares, after its own. */
#define CLI_WATCH_HELP \
"Watching and steering:\n" \
"      --control PATH       answer `ferry ctl PATH ...` on this Unix socket\n" \
"                           (owner-only; removed at exit)\n" \
"      --events FILE        one JSON object per line per event (- for stdout)\n" \
"      --json FILE          the statistics at the end as JSON (- for stdout)\n" \
"  -q, --quiet              no progress line, no summary\n" \
"  -v, --verbose            log what happens\n"

#define CLI_SECURITY_HELP \
"Security (mutual TLS 1.3 by default):\n" \
"      --ca FILE            CA certificate the peer must chain to\n" \
"      --cert FILE          this host's certificate\n" \
"      --key FILE           its private key\n" \
"      --crl FILE           refuse peer certificates this CRL (PEM) revokes;\n" \
"                           it must hold a current CRL of the peer's CA\n" \
"      --peer-name NAME     expected name in the peer's certificate\n" \
"      --psk-file FILE      TLS 1.3 with a pre-shared key instead (hex,\n" \
"                           32 to 128 digits)\n" \
"      --insecure           plain TCP: NO encryption, NO authentication\n"

#define CLI_OTHER_HELP \
"Connection and memory:\n" \
"      --io-timeout TIME    a peer silent for TIME is an error (default 10s)\n" \
"      --timeout MS         deprecated spelling of --io-timeout\n" \
"      --mem-access MODE    how guest RAM is read/written: map (through a\n" \
"                           mapping, no copy), copy (pread/pwrite on its\n" \
"                           fd), auto (copy for 4K pages; the default)\n" \
"      --fault-priority P   postcopy's fault path (the page a vCPU waits\n" \
"                           for): rt (SCHED_FIFO 1 where permitted; the\n" \
"                           default) or normal\n" \
"\n" \
"  -h, --help               this text\n" \
"  -V, --version            the version\n" \
"\n" \
"TIME is a number with a unit: 500ms, 10s, 2m, 1h (a bare number: the\n" \
"unit its option names). SIZE takes K, M, G or T (powers of 1024).\n"

struct cli_control;

struct cli {
	const char *prog;	/* for messages: "ferry source", "ferry-source" */
	const char *usage;	/* --help text */
	bool quiet;		/* -q */
	bool tty;		/* the progress line goes to a terminal */
	struct tp_config tp;
	uint8_t psk[64];
	const char *json;
	const char *events_path;	/* --events */
	const char *control_path;	/* --control */
	struct mig_events *events;	/* open while the agent runs */
	struct cli_control *control;	/* serving while the agent runs */
	enum mig_mem_access mem;
	bool fault_normal;	/* --fault-priority normal */
	bool insecure_named;
};

/*
 * SIGINT and SIGTERM: blocked in every thread and taken by one signal
 * thread (a signalfd, and an eventfd to stop it). Before the engine runs
 * (connecting, waiting for a source) nothing is touched yet, and a signal
 * ends the program as it would without this. While it runs, a signal is
 * a cancel request: the engine stops and says so, or, once the switchover
 * is committed, the request is refused with one line saying why.
 */
struct cli_signals {
	const char *prog;	/* for messages */
	struct mig_cancel cancel; /* what the engine watches */
	_Atomic bool armed;	/* the engine runs: signals cancel */
	pthread_t thread;
	bool started;
	int sig_fd, stop_fd;	/* -1 when closed */
};

/* Blocks SIGINT and SIGTERM in the calling thread, which must be the
 * only one (threads made later inherit the mask), and starts the signal
 * thread. Returns 0 or -errno; cli_signals_stop() undoes a half start. */
int cli_signals_start(struct cli_signals *s, const char *prog);
/* From here on a signal is a cancel request (main thread). */
static inline void cli_signals_arm(struct cli_signals *s)
{
	atomic_store(&s->armed, true);
}
/* Stops and joins the signal thread; signals stay blocked. */
void cli_signals_stop(struct cli_signals *s);

/* What cli_option() says of an option. */
enum { CLI_NOT_MINE = 0, CLI_DONE = 1, CLI_BAD = -1, CLI_EXIT_OK = 2 };
/* Handles one of the shared options (security, output, --io-timeout,
 * --mem-access, -q, -v, -h, -V and getopt's '?'): CLI_DONE, CLI_NOT_MINE,
 * CLI_BAD (after printing why: exit 2) or CLI_EXIT_OK (help or version
 * printed: exit 0). */
int cli_option(struct cli *c, int opt, const char *arg);
/* Checks that no operand is left and the required options are there
 * (@missing names them when @ok is false); prints why not. */
int cli_check_args(const struct cli *c, int optind, int argc, bool ok,
		   const char *missing);
/* Checks the security choice is complete and the outputs do not collide;
 * prints why not. */
int cli_check(struct cli *c);

/*
 * An agent's run, around the engine: cli_start() ignores SIGPIPE, starts
 * the signal thread, opens --events and serves --control (with @tune on
 * the source, NULL on the destination); on failure it prints one line and
 * returns the exit status (1), having undone what it did. cli_finish()
 * undoes it all, writes JSON if asked, the one-line reason or the
 * summary, and returns the exit status (0 or 1).
 */
int cli_start(struct cli *c, struct cli_signals *sig, struct mig_tune *tune,
	      const char *role);
int cli_finish(struct cli *c, struct cli_signals *sig,
	       const struct mig_stats *st, int ret, const char *err,
	       const char *role);
/* The engine is about to run: signals and control requests now cancel. */
void cli_arm(struct cli *c, struct cli_signals *sig);

/* Splits "HOST:PORT", "[V6]:PORT" or "PORT" (host NULL). */
int cli_split_addr(const char *s, char *host, size_t hlen, char *port,
		   size_t plen);
/* Parses a decimal; -1 (after a message) if it is not in range. */
long cli_number(const struct cli *c, const char *opt, const char *arg,
		long min, long max);
/* Parses a TIME (see CLI_OTHER_HELP) into ms; a bare number is @bare_ms
 * ms each. -1 (after a message) if it is not one, or not in range. */
int64_t cli_duration(const struct cli *c, const char *opt, const char *arg,
		     uint64_t bare_ms, uint64_t min_ms, uint64_t max_ms);
/* Parses a SIZE; a bare number is @bare bytes each. -1 as above. */
int64_t cli_size(const struct cli *c, const char *opt, const char *arg,
		 uint64_t bare, uint64_t min, uint64_t max);
/* The summary a person reads after a migration, on @f. */
void cli_print_summary(FILE *f, const struct mig_stats *st, const char *role);
/* The engines' progress callback, @arg the struct cli: the terminal line
 * (stderr, when c->tty) and the status the control socket answers. */
void cli_progress(const struct mig_progress *p, void *arg);

/* ---- the control socket (control.c) ---- */

/* Serves requests on a Unix socket at @path from one thread: the
 * socket is made owner-only (0600) and each peer's uid checked with
 * SO_PEERCRED (the same user, or root). @tune is NULL on the
 * destination. Returns 0 and *@out, or -errno after one line on stderr. */
int cli_control_start(struct cli_control **out, const char *prog,
		      const char *path, const char *role,
		      struct mig_cancel *cancel, struct mig_tune *tune,
		      struct mig_events *events, uint32_t nbulk);
/* The engine's latest progress, for status (the engine's thread). */
void cli_control_update(struct cli_control *ctl, const struct mig_progress *p);
/* The engine is running: cancel requests are taken from here on. */
void cli_control_arm(struct cli_control *ctl);
/* Stops the thread, removes the socket; accepts NULL. */
void cli_control_stop(struct cli_control *ctl);

#endif
