// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-cert: certificates for the demo and the tests.
 *
 *   ferry-cert ca DIR [CN]                 DIR/ca.pem, DIR/ca-key.pem
 *   ferry-cert host DIR NAME [options]     DIR/NAME.pem, DIR/NAME-key.pem
 *        --san LIST     subjectAltName (default DNS:localhost,IP:127.0.0.1,IP:::1)
 *        --days N       validity (default 365); --expired: expired yesterday
 *        --ca PREFIX    sign with PREFIX.pem / PREFIX-key.pem (default DIR/ca)
 *   ferry-cert crl DIR [CERT...] [options] DIR/crl.pem revoking each CERT
 *        --days N       until the next update (default 30)
 *        --ca PREFIX    as above
 *   ferry-cert demo DIR                    ca, server, client, plus an
 *                                          expired host and a rogue CA's host
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/cert.h"
#include "transport/transport.h"

#define DEFAULT_SAN "DNS:localhost,IP:127.0.0.1,IP:::1"

static int usage(void)
{
	fprintf(stderr,
		"usage: ferry-cert ca DIR [CN]\n"
		"       ferry-cert host DIR NAME [--san LIST] [--days N] [--expired] [--ca PREFIX]\n"
		"       ferry-cert crl DIR [CERT...] [--days N] [--ca PREFIX]\n"
		"       ferry-cert demo DIR\n");
	return 2;
}

static int make_ca(const char *dir, const char *base, const char *cn)
{
	char c[PATH_MAX], k[PATH_MAX];
	struct cert_opts o = { .cn = cn, .days = 3650 };
	struct tp_err err;
	int ret;

	snprintf(c, sizeof(c), "%s/%s.pem", dir, base);
	snprintf(k, sizeof(k), "%s/%s-key.pem", dir, base);
	ret = cert_make_ca(c, k, &o, &err);
	if (ret < 0)
		fprintf(stderr, "ferry-cert: %s\n", err.msg);
	return ret;
}

static int make_host(const char *dir, const char *name, const char *ca,
		     const char *san, int days)
{
	char c[PATH_MAX], k[PATH_MAX], cc[PATH_MAX], ck[PATH_MAX];
	struct cert_opts o = { .cn = name, .san = san, .days = days };
	struct tp_err err;
	int ret;

	snprintf(c, sizeof(c), "%s/%s.pem", dir, name);
	snprintf(k, sizeof(k), "%s/%s-key.pem", dir, name);
	snprintf(cc, sizeof(cc), "%s.pem", ca);
	snprintf(ck, sizeof(ck), "%s-key.pem", ca);
	ret = cert_make_host(cc, ck, c, k, &o, &err);
	if (ret < 0)
		fprintf(stderr, "ferry-cert: %s\n", err.msg);
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
		else if (!strcmp(argv[i], "--days") && i + 1 < argc)
			days = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
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
	struct tp_err err;
	int days = 30, ret = 2;
	size_t n = 0;

	if (!revoked)
		return 1;
	snprintf(ca, sizeof(ca), "%s/ca", argv[0]);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--days") && i + 1 < argc)
			days = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
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
		fprintf(stderr, "ferry-cert: %s\n", err.msg);

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
	printf("ferry-cert: wrote ca, server, client, expired, rogue-ca, rogue in %s\n",
	       dir);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	if (mkdir(argv[2], 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "ferry-cert: cannot create %s: %s\n", argv[2],
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
