// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry cert: certificates for the demo and the tests (see the usage
 * text below and docs/man/ferry-cert.1).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/cert.h"
#include "tools/ferry.h"
#include "transport/transport.h"

#define DEFAULT_SAN "DNS:localhost,IP:127.0.0.1,IP:::1"

static const char usage_text[] =
"Usage: ferry cert ca DIR [CN]\n"
"       ferry cert host DIR NAME [--san LIST] [--days N] [--expired]\n"
"                                [--ca PREFIX]\n"
"       ferry cert crl DIR [CERT...] [--days N] [--ca PREFIX]\n"
"       ferry cert demo DIR\n"
"Makes the certificates the agents' mutual TLS needs, for tests and demos\n"
"(a real deployment uses its own CA). DIR is created (0700) if missing.\n"
"\n"
"  ca DIR [CN]          a CA: DIR/ca.pem and DIR/ca-key.pem (10 years)\n"
"  host DIR NAME        a host certificate signed by the CA: DIR/NAME.pem,\n"
"                       DIR/NAME-key.pem\n"
"  crl DIR [CERT...]    DIR/crl.pem revoking each CERT (PEM files)\n"
"  demo DIR             ca, server, client, an expired host and a host of\n"
"                       another CA (rogue-ca, rogue), for the tests\n"
"\n"
"      --san LIST       host: subjectAltName (default\n"
"                       DNS:localhost,IP:127.0.0.1,IP:::1)\n"
"      --days N         host: validity in days (default 365); crl: days to\n"
"                       the next update (default 30)\n"
"      --expired        host: a certificate that expired yesterday\n"
"      --ca PREFIX      sign with PREFIX.pem and PREFIX-key.pem (default\n"
"                       DIR/ca)\n"
"  -h, --help           this text\n"
"\n"
"Exit status: 0 written, 1 failed, 2 usage.\n";

static const char *prog = "ferry cert";

static int usage(void)
{
	fprintf(stderr, "%s: bad arguments (see %s --help)\n", prog, prog);
	return 2;
}

/* --days N: 1 to 36500; -1 (after a message) otherwise. */
static int days_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || end == s || v < 1 || v > 36500) {
		fprintf(stderr, "%s: --days takes 1 to 36500, not '%s'\n", prog,
			s);
		return -1;
	}
	return (int)v;
}

static int make_ca(const char *dir, const char *base, const char *cn)
{
	char c[PATH_MAX], k[PATH_MAX];
	struct cert_opts o = { .cn = cn, .days = 3650 };
	struct ut_err err;
	int ret;

	snprintf(c, sizeof(c), "%s/%s.pem", dir, base);
	snprintf(k, sizeof(k), "%s/%s-key.pem", dir, base);
	ret = cert_make_ca(c, k, &o, &err);
	if (ret < 0)
		fprintf(stderr, "%s: %s\n", prog, err.msg);
	return ret;
}

static int make_host(const char *dir, const char *name, const char *ca,
		     const char *san, int days)
{
	char c[PATH_MAX], k[PATH_MAX], cc[PATH_MAX], ck[PATH_MAX];
	struct cert_opts o = { .cn = name, .san = san, .days = days };
	struct ut_err err;
	int ret;

	snprintf(c, sizeof(c), "%s/%s.pem", dir, name);
	snprintf(k, sizeof(k), "%s/%s-key.pem", dir, name);
	snprintf(cc, sizeof(cc), "%s.pem", ca);
	snprintf(ck, sizeof(ck), "%s-key.pem", ca);
	ret = cert_make_host(cc, ck, c, k, &o, &err);
	if (ret < 0)
		fprintf(stderr, "%s: %s\n", prog, err.msg);
	return ret;
}

static int cmd_host(int argc, char **argv)
{
	const char *dir = argv[0], *name = argv[1], *san = DEFAULT_SAN;
	char ca[PATH_MAX];
	int days = 365;

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--expired"))
			days = -1;
		else if (!strcmp(argv[i], "--san") && i + 1 < argc)
			san = argv[++i];
		else if (!strcmp(argv[i], "--days") && i + 1 < argc) {
			if ((days = days_arg(argv[++i])) < 0)
				return 2;
		} else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
			snprintf(ca, sizeof(ca), "%s", argv[++i]);
		else
			return usage();
	}
	return make_host(dir, name, ca, san, days) < 0 ? 1 : 0;
}

static int cmd_crl(int argc, char **argv)
{
	char ca[PATH_MAX - 16], cc[PATH_MAX], ck[PATH_MAX], out[PATH_MAX];
	const char **revoked = calloc(argc, sizeof(*revoked));
	struct ut_err err;
	int days = 30, ret = 2;
	size_t n = 0;

	if (!revoked)
		return 1;
	snprintf(ca, sizeof(ca), "%s/ca", argv[0]);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--days") && i + 1 < argc) {
			if ((days = days_arg(argv[++i])) < 0)
				goto free_revoked;
		} else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
			snprintf(ca, sizeof(ca), "%s", argv[++i]);
		else if (argv[i][0] == '-')
			goto free_revoked;
		else
			revoked[n++] = argv[i];
	}
	snprintf(cc, sizeof(cc), "%s.pem", ca);
	snprintf(ck, sizeof(ck), "%s-key.pem", ca);
	snprintf(out, sizeof(out), "%s/crl.pem", argv[0]);
	ret = cert_make_crl(cc, ck, revoked, n, out, days, &err) < 0;
	if (ret)
		fprintf(stderr, "%s: %s\n", prog, err.msg);

free_revoked:
	free(revoked);
	return ret == 2 ? usage() : ret;
}

static int cmd_demo(const char *dir)
{
	char ca[PATH_MAX], rogue[PATH_MAX];

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	snprintf(rogue, sizeof(rogue), "%s/rogue-ca", dir);
	if (make_ca(dir, "ca", "Ferry demo CA") < 0 ||
	    make_ca(dir, "rogue-ca", "Some other CA") < 0 ||
	    make_host(dir, "server", ca, DEFAULT_SAN, 365) < 0 ||
	    make_host(dir, "client", ca, DEFAULT_SAN, 365) < 0 ||
	    make_host(dir, "expired", ca, DEFAULT_SAN, -1) < 0 ||
	    make_host(dir, "rogue", rogue, DEFAULT_SAN, 365) < 0)
		return 1;
	printf("%s: wrote ca, server, client, expired, rogue-ca, rogue in %s\n",
	       prog, dir);
	return 0;
}

int ferry_cert_main(int argc, char **argv)
{
	prog = argv[0];
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
	if (argc < 3)
		return usage();
	if (mkdir(argv[2], 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", prog, argv[2],
			strerror(errno));
		return 1;
	}
	if (!strcmp(argv[1], "ca"))
		return make_ca(argv[2], "ca", argc > 3 ? argv[3] : "Ferry CA") < 0;
	if (!strcmp(argv[1], "host") && argc >= 4)
		return cmd_host(argc - 2, argv + 2);
	if (!strcmp(argv[1], "crl"))
		return cmd_crl(argc - 2, argv + 2);
	if (!strcmp(argv[1], "demo"))
		return cmd_demo(argv[2]);
	return usage();
}
