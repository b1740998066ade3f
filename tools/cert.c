// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Certificates for ferry-cert, the demo and the tests (see tools/cert.h).
 * An expired certificate is one whose validity window lies entirely in the
 * past.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "cert"
#include "tools/cert.h"
#include "util/util.h"

static int write_key(const char *path, EVP_PKEY *key, struct ut_err *err)
{
	FILE *f;
	int fd, ok;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ut_err_set(err, -errno, "cannot create %s: %s", path,
				  strerror(errno));
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return ut_err_set(err, -ENOMEM, "fdopen %s failed", path);
	}
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	ok = (fclose(f) == 0) && ok;
	return ok ? 0 : ut_err_set(err, -EIO, "cannot write %s", path);
}

static int write_cert(const char *path, X509 *x, struct ut_err *err)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return ut_err_set(err, -errno, "cannot create %s: %s", path,
				  strerror(errno));
	ok = PEM_write_X509(f, x);
	ok = (fclose(f) == 0) && ok;
	return ok ? 0 : ut_err_set(err, -EIO, "cannot write %s", path);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EINVAL;
}

/* @value NULL: @dflt; "": no such extension. */
static int opt_ext(X509 *x, X509 *issuer, int nid, const char *value,
		   const char *dflt)
{
	if (!value)
		value = dflt;
	return value[0] ? add_ext(x, issuer, nid, value) : 0;
}

/* Fills the fields every certificate has. */
static int cert_base(X509 *x, EVP_PKEY *key, const struct cert_opts *o)
{
	long day = 24L * 3600, days = o->days ? o->days : 365;
	unsigned char serial[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(serial, sizeof(serial)) != 1)
		return -EIO;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	if (!ok || !X509_set_version(x, 2) || !X509_set_pubkey(x, key))
		return -EINVAL;
	if (days < 0) {
		/* Valid for one hour, ending -days days ago. */
		X509_gmtime_adj(X509_getm_notBefore(x), days * day - 3600);
		X509_gmtime_adj(X509_getm_notAfter(x), days * day);
	} else if (o->not_before_days > 0) {
		X509_gmtime_adj(X509_getm_notBefore(x), o->not_before_days * day);
		X509_gmtime_adj(X509_getm_notAfter(x),
				(o->not_before_days + days) * day);
	} else {
		X509_gmtime_adj(X509_getm_notBefore(x), -3600);
		X509_gmtime_adj(X509_getm_notAfter(x), days * day);
	}
	if (!X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
					MBSTRING_UTF8,
					(const unsigned char *)o->cn, -1, -1, 0))
		return -EINVAL;
	return 0;
}

int cert_make_ca(const char *cert_path, const char *key_path,
		    const struct cert_opts *o, struct ut_err *err)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	int ret = -EINVAL;

	if (!key || !x) {
		ret = ut_err_set(err, -ENOMEM, "key generation failed");
		goto free_all;
	}
	if (cert_base(x, key, o) < 0 ||
	    !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
	    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
	    !X509_sign(x, key, EVP_sha256())) {
		ret = ut_err_set(err, -EINVAL, "cannot build the CA certificate");
		goto free_all;
	}
	ret = write_key(key_path, key, err);
	if (ret == 0)
		ret = write_cert(cert_path, x, err);

free_all:
	X509_free(x);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return ret;
}

static int load_ca(const char *ca_cert, const char *ca_key, X509 **x,
		   EVP_PKEY **k, struct ut_err *err)
{
	FILE *f = fopen(ca_cert, "r");

	if (!f)
		return ut_err_set(err, -errno, "cannot open %s: %s", ca_cert,
				  strerror(errno));
	*x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	f = fopen(ca_key, "r");
	if (!f)
		return ut_err_set(err, -errno, "cannot open %s: %s", ca_key,
				  strerror(errno));
	*k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!*x || !*k)
		return ut_err_set(err, -EINVAL, "cannot parse CA %s / %s",
				  ca_cert, ca_key);
	return 0;
}

int cert_make_host(const char *ca_cert, const char *ca_key,
		      const char *cert_path, const char *key_path,
		      const struct cert_opts *o, struct ut_err *err)
{
	EVP_PKEY *key = NULL, *cakey = NULL;
	X509 *x = NULL, *ca = NULL;
	int ret;

	ret = load_ca(ca_cert, ca_key, &ca, &cakey, err);
	if (ret < 0)
		goto free_all;
	key = EVP_EC_gen("P-256");
	x = X509_new();
	if (!key || !x || cert_base(x, key, o) < 0 ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
	    add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    opt_ext(x, ca, NID_key_usage, o->key_usage,
		    "critical,digitalSignature") < 0 ||
	    opt_ext(x, ca, NID_ext_key_usage, o->ext_key_usage,
		    "serverAuth,clientAuth") < 0 ||
	    add_ext(x, ca, NID_authority_key_identifier, "keyid:always") < 0 ||
	    (o->san && add_ext(x, ca, NID_subject_alt_name, o->san) < 0) ||
	    !X509_sign(x, cakey, EVP_sha256())) {
		ret = ut_err_set(err, -EINVAL,
				 "cannot build the host certificate (bad SAN '%s'?)",
				 o->san ? o->san : "");
		goto free_all;
	}
	ret = write_key(key_path, key, err);
	if (ret == 0)
		ret = write_cert(cert_path, x, err);

free_all:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey);
	ERR_clear_error();
	return ret;
}

static int read_cert(const char *path, X509 **x, struct ut_err *err)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return ut_err_set(err, -errno, "cannot open %s: %s", path,
				  strerror(errno));
	*x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return *x ? 0 : ut_err_set(err, -EINVAL, "cannot parse %s", path);
}

static int revoke_cert(X509_CRL *crl, const char *path, struct ut_err *err)
{
	X509_REVOKED *r = X509_REVOKED_new();
	ASN1_TIME *now = ASN1_TIME_new();
	X509 *x = NULL;
	int ret;

	ret = read_cert(path, &x, err);
	if (ret == 0 && (!r || !now || !X509_gmtime_adj(now, 0) ||
			 !X509_REVOKED_set_serialNumber(r,
					X509_get_serialNumber(x)) ||
			 !X509_REVOKED_set_revocationDate(r, now)))
		ret = ut_err_set(err, -ENOMEM, "cannot revoke %s", path);
	if (ret == 0 && X509_CRL_add0_revoked(crl, r))
		r = NULL;
	else if (ret == 0)
		ret = ut_err_set(err, -ENOMEM, "cannot revoke %s", path);
	X509_REVOKED_free(r);
	ASN1_TIME_free(now);
	X509_free(x);
	return ret;
}

static int write_crl(const char *path, X509_CRL *crl, struct ut_err *err)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return ut_err_set(err, -errno, "cannot create %s: %s", path,
				  strerror(errno));
	ok = PEM_write_X509_CRL(f, crl);
	ok = (fclose(f) == 0) && ok;
	return ok ? 0 : ut_err_set(err, -EIO, "cannot write %s", path);
}

int cert_make_crl(const char *ca_cert, const char *ca_key,
		     const char *const *revoked, size_t n, const char *crl_path,
		     int days, struct ut_err *err)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	EVP_PKEY *cakey = NULL;
	X509 *ca = NULL;
	int ret;

	ret = load_ca(ca_cert, ca_key, &ca, &cakey, err);
	if (ret == 0 && (!crl || !t || !X509_CRL_set_version(crl, 1) ||
			 !X509_CRL_set_issuer_name(crl,
					X509_get_subject_name(ca)) ||
			 !X509_gmtime_adj(t, -3600) ||
			 !X509_CRL_set1_lastUpdate(crl, t) ||
			 !X509_gmtime_adj(t, (long)(days ? days : 30) * 86400) ||
			 !X509_CRL_set1_nextUpdate(crl, t)))
		ret = ut_err_set(err, -ENOMEM, "cannot build the CRL");
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = revoke_cert(crl, revoked[i], err);
	if (ret == 0 && (!X509_CRL_sort(crl) ||
			 !X509_CRL_sign(crl, cakey, EVP_sha256())))
		ret = ut_err_set(err, -EINVAL, "cannot sign the CRL");
	if (ret == 0)
		ret = write_crl(crl_path, crl, err);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	ERR_clear_error();
	return ret;
}
