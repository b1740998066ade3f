/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tools/cert.h: making certificates for ferry-cert, the demo, the benchmark
 * and the tests: a CA, host certificates with subjectAltName and CRLs, EC
 * P-256, with OpenSSL's C API so that nothing needs an external tool. Not
 * part of the transport: the transport only checks certificates.
 */
#ifndef FERRY_TOOLS_CERT_H
#define FERRY_TOOLS_CERT_H

#include <stddef.h>

#include "transport/transport.h"	/* struct ut_err: the error reason */

struct cert_opts {
	const char *cn;		/* subject common name */
	const char *san;	/* "DNS:localhost,IP:127.0.0.1" or NULL */
	int days;		/* validity; < 0: already expired that long */
	/* > 0: the validity starts this many days from now (a certificate
	 * not yet valid), and lasts @days from then. Host certificates only. */
	int not_before_days;
	/* Host certificates: the keyUsage and extendedKeyUsage values in
	 * OpenSSL's config syntax. NULL: "critical,digitalSignature" and
	 * "serverAuth,clientAuth"; "" leaves the extension out. Tests use
	 * them to make certificates for the wrong purpose. */
	const char *key_usage;
	const char *ext_key_usage;
};

/* Writes a new self-signed CA (EC P-256) to @cert_path and its key
 * (mode 0600) to @key_path. Returns 0 or -errno with @err filled. */
int cert_make_ca(const char *cert_path, const char *key_path,
		    const struct cert_opts *o, struct ut_err *err);
/* Writes a host certificate (usable as TLS server and client) signed by
 * the CA at @ca_cert / @ca_key, and its key. Same returns. */
int cert_make_host(const char *ca_cert, const char *ca_key,
		      const char *cert_path, const char *key_path,
		      const struct cert_opts *o, struct ut_err *err);
/* Writes a CRL (PEM) to @crl_path, signed by the CA at @ca_cert / @ca_key,
 * valid from an hour ago for @days days, revoking the certificates in the
 * PEM files @revoked[0..@n) (by serial; @n may be 0 for an empty CRL).
 * Same returns. */
int cert_make_crl(const char *ca_cert, const char *ca_key,
		     const char *const *revoked, size_t n, const char *crl_path,
		     int days, struct ut_err *err);

#endif /* FERRY_TOOLS_CERT_H */
