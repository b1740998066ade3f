/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What ferry-source and ferry-dest share: security options, addresses,
 * the summary. Only the two CLIs include this. */
#ifndef FERRY_TOOLS_CLI_H
#define FERRY_TOOLS_CLI_H

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

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
	CLI_OPT_TIMEOUT,
	CLI_OPT_JSON,
	CLI_OPT_MEM,
	CLI_OPT_CRL,
	CLI_OPT_END,
};

#define CLI_SECURITY_OPTIONS \
	{ "ca", required_argument, NULL, CLI_OPT_CA }, \
	{ "cert", required_argument, NULL, CLI_OPT_CERT }, \
	{ "key", required_argument, NULL, CLI_OPT_KEY }, \
	{ "crl", required_argument, NULL, CLI_OPT_CRL }, \
	{ "peer-name", required_argument, NULL, CLI_OPT_PEER }, \
	{ "psk-file", required_argument, NULL, CLI_OPT_PSK }, \
	{ "insecure", no_argument, NULL, CLI_OPT_INSECURE }, \
	{ "timeout", required_argument, NULL, CLI_OPT_TIMEOUT }, \
	{ "json", required_argument, NULL, CLI_OPT_JSON }, \
	{ "mem-access", required_argument, NULL, CLI_OPT_MEM }, \
	{ "quiet", no_argument, NULL, 'q' }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "help", no_argument, NULL, 'h' }, \
	{ "version", no_argument, NULL, 'V' }

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
"      --insecure           plain TCP: NO encryption, NO authentication\n" \
"      --timeout MS         a silent peer is an error after MS ms (10000)\n" \
"      --json FILE          write the statistics as JSON (- for stdout)\n" \
"      --mem-access MODE    how guest RAM is read/written: map (through a\n" \
"                           mapping, no copy), copy (pread/pwrite on its\n" \
"                           fd), auto (copy for 4K pages; the default)\n"

struct cli {
	const char *prog;	/* for messages */
	const char *usage;	/* --help text */
	bool quiet;		/* -q */
	struct tp_config tp;
	uint8_t psk[64];
	const char *json;
	enum mig_mem_access mem;
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
/* Handles one of the shared options (security, --json, --mem-access, -q,
 * -v, -h, -V and getopt's '?'): CLI_DONE, CLI_NOT_MINE, CLI_BAD (after
 * printing why: exit 2) or CLI_EXIT_OK (help or version printed: exit 0). */
int cli_option(struct cli *c, int opt, const char *arg);
/* Checks that no operand is left and the required options are there
 * (@missing names them when @ok is false); prints why not. */
int cli_check_args(const struct cli *c, int optind, int argc, bool ok,
		   const char *missing);
/* The end of a run: JSON if asked, the one-line reason or the summary.
 * Returns the exit status (0 or 1). */
int cli_finish(const struct cli *c, const struct mig_stats *st, int ret,
	       const char *err, const char *role);
/* Checks the security choice is complete; prints why not. */
int cli_check(struct cli *c);
/* Splits "HOST:PORT", "[V6]:PORT" or "PORT" (host NULL). */
int cli_split_addr(const char *s, char *host, size_t hlen, char *port,
		   size_t plen);
/* Parses a positive decimal; -1 (after a message) if it is not in range. */
long cli_number(const struct cli *c, const char *opt, const char *arg,
		long min, long max);
/* The summary a person reads after a migration. */
void cli_print_summary(const struct mig_stats *st, const char *role);
/* The progress line on a terminal (stderr), nothing otherwise. */
void cli_progress(const struct mig_progress *p, void *arg);

#endif
