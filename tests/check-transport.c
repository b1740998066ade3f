// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Unit tests for transport, over real loopback sockets: the handshake
 * matrix (each failure with its reason), message integrity on every stream
 * kind and security mode, 1 GiB over four bulk streams, key updates, an
 * urgent message overtaking saturated bulk streams, and peers that vanish
 * or fall silent mid-frame. Certificates are generated at run time into a
 * temporary directory.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <xxhash.h>

#define LOG_PREFIX "check-transport"
#include "tools/cert.h"
#include "transport/internal.h"
#include "transport/transport.h"
#include "util/util.h"

static char certdir[64];

static const char *cpath(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s.pem", certdir, name);
	return buf;
}

static const char *kpath(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s-key.pem", certdir, name);
	return buf;
}

/* Credentials named after the files in certdir; cert NULL: none. */
struct creds {
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], crl[PATH_MAX];
};

static struct tp_config mtls_cfg(struct creds *c, const char *ca,
				 const char *cert)
{
	struct tp_config cfg = {
		.security = TP_SEC_MTLS,
		.ca_file = cpath(c->ca, ca),
		.timeout_ms = 5000,
		.accept_timeout_ms = 10000,
	};

	if (cert) {
		cfg.cert_file = cpath(c->cert, cert);
		cfg.key_file = kpath(c->key, cert);
	}
	return cfg;
}

static const uint8_t psk_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t psk_b[32] = "fedcba9876543210fedcba9876543210";

static struct tp_config mode_cfg(struct creds *c, int mode, bool server)
{
	struct tp_config cfg;

	if (mode == TP_SEC_MTLS)
		return mtls_cfg(c, "ca", server ? "server" : "client");
	cfg = (struct tp_config){ .security = mode, .timeout_ms = 5000,
				  .accept_timeout_ms = 10000 };
	if (mode == TP_SEC_PSK) {
		cfg.psk = psk_a;
		cfg.psk_len = sizeof(psk_a);
	}
	return cfg;
}

/* ---- a server accepting one session in a thread ---- */

struct server {
	struct tp_listener *l;
	struct tp_session *s;
	int ret;
	struct ut_err err;
	pthread_t th;
	char port[16];
};

static void *accept_fn(void *arg)
{
	struct server *sv = arg;

	sv->ret = tp_session_accept(sv->l, &sv->s, &sv->err);
	return NULL;
}

static void server_start(struct server *sv, const struct tp_config *cfg,
			 const char *host)
{
	memset(sv, 0, sizeof(*sv));
	ck_assert_msg(tp_listener_create(cfg, host, "0", &sv->l, &sv->err) == 0,
		      "listen: %s", sv->err.msg);
	snprintf(sv->port, sizeof(sv->port), "%d", tp_listener_port(sv->l));
	ck_assert_int_eq(pthread_create(&sv->th, NULL, accept_fn, sv), 0);
}

static int server_wait(struct server *sv)
{
	pthread_join(sv->th, NULL);
	return sv->ret;
}

static void server_fini(struct server *sv)
{
	tp_session_destroy(sv->s);
	tp_listener_destroy(sv->l);
}

/* Builds a session pair; asserts success. */
static void pair(const struct tp_config *scfg, const struct tp_config *ccfg,
		 struct server *sv, struct tp_session **cs)
{
	struct ut_err err;
	int ret;

	server_start(sv, scfg, "127.0.0.1");
	ret = tp_session_connect(ccfg, "127.0.0.1", sv->port, cs, &err);
	ck_assert_msg(ret == 0, "connect: %s", err.msg);
	ck_assert_msg(server_wait(sv) == 0, "accept: %s", sv->err.msg);
}

/* ---- handshake matrix ---- */

struct hs_case {
	const char *name;
	const char *srv_ca, *srv_cert;
	const char *cli_ca, *cli_cert;
	const char *peer_name;	/* client's pinned name */
	const char *host;
	int cli_ret, srv_ret;
	const char *cli_msg, *srv_msg; /* substrings of the reasons */
	const char *srv_peer_name; /* server's pinned name for the client */
	const char *srv_crl, *cli_crl; /* CRL files (certdir names) */
};

static const struct hs_case hs_cases[] = {
	{ "ok", "ca", "server", "ca", "client", NULL, "127.0.0.1", 0, 0,
	  NULL, NULL, NULL, NULL, NULL },
	{ "ok-ipv6", "ca", "server", "ca", "client", NULL, "::1", 0, 0,
	  NULL, NULL, NULL, NULL, NULL },
	{ "ok-pinned-dns", "ca", "server", "ca", "client", "localhost",
	  "127.0.0.1", 0, 0, NULL, NULL, NULL, NULL, NULL },
	{ "wrong-ca", "ca", "server", "rogue-ca", "client", NULL, "127.0.0.1",
	  -EACCES, -EACCES, "wrong CA", "unknown ca", NULL, NULL, NULL },
	{ "unknown-client-cert", "ca", "server", "ca", "rogue", NULL,
	  "127.0.0.1", -EACCES, -EACCES, "unknown ca", "wrong CA", NULL, NULL, NULL },
	{ "expired-server", "ca", "expired", "ca", "client", NULL, "127.0.0.1",
	  -EACCES, -EACCES, "certificate has expired", "certificate expired",
	  NULL, NULL, NULL },
	{ "expired-client", "ca", "server", "ca", "expired", NULL,
	  "127.0.0.1", -EACCES, -EACCES, "certificate expired",
	  "certificate has expired", NULL, NULL, NULL },
	{ "wrong-peer-name", "ca", "server", "ca", "client", "other.example",
	  "127.0.0.1", -EACCES, -EACCES, "wrong peer name: certificate does not name the expected "
	  "peer 'other.example'",
	  "refused our certificate (not yet valid, or not the name it expects)",
	  NULL, NULL, NULL },
	{ "no-client-cert", "ca", "server", "ca", NULL, NULL, "127.0.0.1",
	  -EACCES, -EACCES, "certificate required",
	  "did not return a certificate", NULL, NULL, NULL },
	{ "ok-pinned-ip", "ca", "server", "ca", "client", "127.0.0.1",
	  "127.0.0.1", 0, 0, NULL, NULL, NULL, NULL, NULL },
	{ "wrong-pinned-ip", "ca", "server", "ca", "client", "10.9.8.7",
	  "127.0.0.1", -EACCES, -EACCES,
	  "wrong peer name: certificate does not name the expected peer "
	  "'10.9.8.7'",
	  "refused our certificate (not yet valid, or not the name it expects)",
	  NULL, NULL, NULL },
	{ "server-pins-client-ok", "ca", "server", "ca", "client", NULL,
	  "127.0.0.1", 0, 0, NULL, NULL, "localhost", NULL, NULL },
	{ "server-pins-wrong-client", "ca", "server", "ca", "client", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "refused our certificate (not yet valid, or not the name it expects)",
	  "wrong peer name: certificate does not name the expected "
	  "peer 'migration-peer.example'",
	  "migration-peer.example", NULL, NULL },
	/* Security at the edges: validity, purpose, revocation. */
	{ "not-yet-valid-server", "ca", "not-yet", "ca", "client", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "peer certificate rejected: certificate is not yet valid",
	  "refused our certificate (not yet valid", NULL, NULL, NULL },
	{ "not-yet-valid-client", "ca", "server", "ca", "not-yet", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "refused our certificate (not yet valid",
	  "peer certificate rejected: certificate is not yet valid", NULL, NULL, NULL },
	{ "client-cert-as-server", "ca", "client-only", "ca", "client", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "unsuitable certificate purpose (its key usage or extended "
	  "key usage does not allow TLS server authentication",
	  "refused our certificate for its key usage or extended key usage",
	  NULL, NULL, NULL },
	{ "server-cert-as-client", "ca", "server", "ca", "server-only", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "refused our certificate for its key usage or extended key usage",
	  "unsuitable certificate purpose (its key usage or extended "
	  "key usage does not allow TLS client authentication",
	  NULL, NULL, NULL },
	{ "wrong-key-usage-server", "ca", "bad-ku", "ca", "client", NULL,
	  "127.0.0.1", -EACCES, -EACCES, "unsuitable certificate purpose",
	  "refused our certificate for its key usage", NULL, NULL, NULL },
	{ "wrong-key-usage-client", "ca", "server", "ca", "bad-ku", NULL,
	  "127.0.0.1", -EACCES, -EACCES,
	  "refused our certificate for its key usage",
	  "unsuitable certificate purpose", NULL, NULL, NULL },
	{ "crl-ok", "ca", "server", "ca", "client", NULL, "127.0.0.1", 0, 0,
	  NULL, NULL, NULL, "crl", "crl" },
	{ "revoked-client", "ca", "server", "ca", "revoked", NULL, "127.0.0.1",
	  -EACCES, -EACCES, "refused our certificate as revoked",
	  "peer certificate rejected: certificate revoked (listed in the CRL)",
	  NULL, "crl", NULL },
	{ "revoked-server", "ca", "revoked", "ca", "client", NULL, "127.0.0.1",
	  -EACCES, -EACCES,
	  "peer certificate rejected: certificate revoked (listed in the CRL)",
	  "refused our certificate as revoked", NULL, NULL, "crl" },
	{ "crl-of-another-ca", "ca", "server", "ca", "client", NULL,
	  "127.0.0.1", -EACCES, -EACCES, "or it has no CRL of our CA",
	  "unable to get certificate CRL (the CRL file has no CRL of "
	  "the peer's CA)",
	  NULL, "rogue-crl", NULL },
	{ "crl-stale", "ca", "server", "ca", "client", NULL, "127.0.0.1",
	  -EACCES, -EACCES, "or its CRL of our CA is stale",
	  "CRL has expired (the CRL file is stale", NULL, "stale-crl", NULL },
};

static void check_reason(int ret, int want, const char *msg,
			 const char *want_msg, const char *who)
{
	ck_assert_msg(ret == want, "%s: got %d (%s), want %d", who, ret, msg,
		      want);
	if (want_msg)
		ck_assert_msg(strstr(msg, want_msg), "%s: reason '%s' lacks '%s'",
			      who, msg, want_msg);
	ck_assert_msg(!strchr(msg, '\n'), "%s: reason not one line", who);
}

/* Containers often run without IPv6 on loopback. */
static bool have_ipv6_loopback(void)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6,
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

START_TEST(handshake_matrix)
{
	const struct hs_case *c = &hs_cases[_i];
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, c->srv_ca, c->srv_cert);
	struct tp_config ccfg = mtls_cfg(&cc, c->cli_ca, c->cli_cert);
	struct tp_session *cs = NULL;
	struct server sv;
	struct ut_err err = { "" };
	int ret;

	if (strchr(c->host, ':') && !have_ipv6_loopback()) {
		fprintf(stderr, "%s: no IPv6 loopback here, case not run\n",
			c->name);
		return;
	}
	ccfg.peer_name = c->peer_name;
	scfg.peer_name = c->srv_peer_name;
	if (c->srv_crl)
		scfg.crl_file = cpath(sc.crl, c->srv_crl);
	if (c->cli_crl)
		ccfg.crl_file = cpath(cc.crl, c->cli_crl);
	ccfg.nbulk = 2;
	server_start(&sv, &scfg, c->host);
	ret = tp_session_connect(&ccfg, c->host, sv.port, &cs, &err);
	server_wait(&sv);
	fprintf(stderr, "%s: client: %s | server: %s\n", c->name, err.msg,
		sv.err.msg);
	check_reason(ret, c->cli_ret, err.msg, c->cli_msg, "client");
	check_reason(sv.ret, c->srv_ret, sv.err.msg, c->srv_msg, "server");
	if (ret == 0) {
		ck_assert(strstr(tp_session_describe(cs), "TLSv1.3"));
		ck_assert_int_eq(tp_session_nbulk(sv.s), 2);
	} else {
		ck_assert_ptr_null(cs);
		ck_assert_ptr_null(sv.s);
	}
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

static int pair_result(const struct tp_config *scfg,
		       const struct tp_config *ccfg, struct ut_err *cerr,
		       struct server *sv, struct tp_session **cs)
{
	int ret;

	server_start(sv, scfg, "127.0.0.1");
	ret = tp_session_connect(ccfg, "127.0.0.1", sv->port, cs, cerr);
	server_wait(sv);
	fprintf(stderr, "client: %s | server: %s\n", cerr->msg, sv->err.msg);
	return ret;
}

START_TEST(psk_ok)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_PSK, true);
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct server sv;

	ck_assert_int_eq(pair_result(&cfg, &cfg, &err, &sv, &cs), 0);
	ck_assert_int_eq(sv.ret, 0);
	ck_assert(strstr(tp_session_describe(cs), "pre-shared key"));
	/* kTLS is probed and named either way ("no kTLS" on this kernel). */
	ck_assert(strstr(tp_session_describe(cs), "kTLS"));
	fprintf(stderr, "%s\n", tp_session_describe(cs));
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* _i: 0 another key, 1 another identity. */
START_TEST(psk_mismatch)
{
	struct tp_config scfg = mode_cfg(NULL, TP_SEC_PSK, true);
	struct tp_config ccfg = scfg;
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct server sv;
	int ret;

	if (_i)
		ccfg.psk_identity = "mallory";
	else
		ccfg.psk = psk_b;
	ret = pair_result(&scfg, &ccfg, &err, &sv, &cs);
	check_reason(sv.ret, -EACCES, sv.err.msg,
		     _i ? "unknown pre-shared key identity 'mallory' (we expect 'ferry')" :
			  "the peer's pre-shared key is not ours",
		     "server");
	check_reason(ret, -EACCES, err.msg,
		     _i ? "the peer refused our pre-shared key or its identity 'mallory'" :
			  "the peer refused our pre-shared key or its identity 'ferry'",
		     "client");
	ck_assert_ptr_null(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(insecure_ok)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_INSECURE, true);
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct server sv;

	ck_assert_int_eq(pair_result(&cfg, &cfg, &err, &sv, &cs), 0);
	ck_assert(strstr(tp_session_describe(cs), "INSECURE"));
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(plaintext_peer_on_tls_port)
{
	struct creds c;
	struct tp_config scfg = mtls_cfg(&c, "ca", "server");
	struct tp_config ccfg = mode_cfg(NULL, TP_SEC_INSECURE, false);
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct server sv;

	ck_assert_int_lt(pair_result(&scfg, &ccfg, &err, &sv, &cs), 0);
	check_reason(sv.ret, -EPROTO, sv.err.msg, "not speaking TLS", "server");
	ck_assert(strstr(err.msg, "require TLS") || strstr(err.msg, "speaks TLS"));
	ck_assert_ptr_null(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(tls_client_on_plain_port)
{
	struct creds c;
	struct tp_config scfg = mode_cfg(NULL, TP_SEC_INSECURE, true);
	struct tp_config ccfg = mtls_cfg(&c, "ca", "client");
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct server sv;

	ck_assert_int_lt(pair_result(&scfg, &ccfg, &err, &sv, &cs), 0);
	check_reason(sv.ret, -EPROTO, sv.err.msg, "speaks TLS", "server");
	check_reason(-ECONNRESET, -ECONNRESET, err.msg, "closed the connection",
		     "client");
	server_fini(&sv);
}
END_TEST

static int raw_connect(const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int fd;

	ck_assert_int_eq(getaddrinfo("127.0.0.1", port, &hints, &ai), 0);
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, ai->ai_addr, ai->ai_addrlen), 0);
	freeaddrinfo(ai);
	return fd;
}

static void garbage(uint8_t *p, size_t n, uint8_t rec_type)
{
	for (size_t i = 0; i < n; i++)
		p[i] = rand();
	p[0] = rec_type;
	p[1] = 3;
	p[2] = 3;
	p[3] = (n - 5) >> 8;
	p[4] = (n - 5) & 0xff;
}

/* ---- a TLS 1.2 peer is refused ---- */

struct raw_tls {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	int ok;			/* SSL_connect / SSL_accept result */
	char reason[256];
};

static void raw_tls_init(struct raw_tls *r, bool server, struct creds *c)
{
	memset(r, 0, sizeof(*r));
	r->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	ck_assert_ptr_nonnull(r->ctx);
	ck_assert(SSL_CTX_set_max_proto_version(r->ctx, TLS1_2_VERSION));
	if (server) {
		ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(r->ctx,
				 cpath(c->cert, "server")), 1);
		ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(r->ctx,
				 kpath(c->key, "server"), SSL_FILETYPE_PEM), 1);
	}
	r->ssl = SSL_new(r->ctx);
	ck_assert_ptr_nonnull(r->ssl);
}

static void raw_tls_run(struct raw_tls *r, bool server)
{
	unsigned long e;

	SSL_set_fd(r->ssl, r->fd);
	r->ok = server ? SSL_accept(r->ssl) : SSL_connect(r->ssl);
	e = ERR_peek_last_error();
	snprintf(r->reason, sizeof(r->reason), "%s",
		 e ? ERR_reason_error_string(e) : "");
	ERR_clear_error();
}

static void raw_tls_fini(struct raw_tls *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	if (r->fd >= 0)
		close(r->fd);
}

static void *raw_server_fn(void *arg)
{
	struct raw_tls *r = arg;
	int lfd = r->fd;

	r->fd = accept(lfd, NULL, NULL);
	close(lfd);
	if (r->fd >= 0)
		raw_tls_run(r, true);
	return NULL;
}

/* A raw OpenSSL peer capped at TLS 1.2. _i: 0 it is the client (our
 * listener refuses it), 1 it is the server (our client refuses it). */
START_TEST(tls12_peer_refused)
{
	struct creds c;
	struct tp_config cfg = mtls_cfg(&c, "ca", _i ? "client" : "server");
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct tp_session *cs = NULL;
	struct ut_err err = { "" };
	struct raw_tls r;
	struct server sv;
	pthread_t th;
	char port[16];
	int ret;

	raw_tls_init(&r, _i, &c);
	if (!_i) {
		server_start(&sv, &cfg, "127.0.0.1");
		r.fd = raw_connect(sv.port);
		raw_tls_run(&r, false);
		ret = server_wait(&sv);
		snprintf(err.msg, sizeof(err.msg), "%s", sv.err.msg);
	} else {
		r.fd = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_eq(bind(r.fd, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(listen(r.fd, 1), 0);
		getsockname(r.fd, (struct sockaddr *)&a, &al);
		snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
		ck_assert_int_eq(pthread_create(&th, NULL, raw_server_fn, &r), 0);
		ret = tp_session_connect(&cfg, "127.0.0.1", port, &cs, &err);
		pthread_join(th, NULL);
	}
	fprintf(stderr, "ferry %s: %s | TLS 1.2 peer: %s\n",
		_i ? "client" : "server", err.msg, r.reason);
	check_reason(ret, -EPROTO, err.msg,
		     _i ? "the peer refused our TLS version: Ferry speaks TLS 1.3 only" :
			  "the peer offers only TLS versions below 1.3, which Ferry refuses",
		     _i ? "client" : "server");
	ck_assert_int_ne(r.ok, 1);
	ck_assert_msg(strstr(r.reason, "protocol version") ||
		      strstr(r.reason, "unsupported protocol"),
		      "TLS 1.2 peer: '%s'", r.reason);
	ck_assert_ptr_null(cs);
	raw_tls_fini(&r);
	if (!_i)
		server_fini(&sv);
}
END_TEST

START_TEST(garbage_handshake_gets_alert)
{
	struct creds c;
	struct tp_config scfg = mtls_cfg(&c, "ca", "server");
	struct server sv;
	uint8_t buf[205], reply[64];
	ssize_t n;
	int fd;

	srand(11);
	garbage(buf, sizeof(buf), 0x16);
	server_start(&sv, &scfg, "127.0.0.1");
	fd = raw_connect(sv.port);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), sizeof(buf));
	server_wait(&sv);
	fprintf(stderr, "server: %s\n", sv.err.msg);
	ck_assert_int_lt(sv.ret, 0);
	ck_assert(sv.err.msg[0]);
	n = read(fd, reply, sizeof(reply));
	ck_assert_int_ge(n, 1);
	ck_assert_int_eq(reply[0], 0x15); /* a TLS alert record */
	close(fd);
	server_fini(&sv);
}
END_TEST

/* A bad record mid-session: the receiver fails with the reason and tells
 * the sender with an alert. _i: 0 forged body (bad MAC), 1 too long,
 * 2 too short, 3 not an application-data record. */
static const char *const bad_record_reasons[] = {
	"bad record mac", "encrypted length too long", "bad length",
	"unexpected record",
};

START_TEST(garbage_mid_session)
{
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, "ca", "server");
	struct tp_config ccfg = mtls_cfg(&cc, "ca", "client");
	struct tp_session *cs;
	struct server sv;
	struct tp_msg m;
	uint8_t buf[69];
	int ret;

	pair(&scfg, &ccfg, &sv, &cs);
	srand(12);
	garbage(buf, sizeof(buf), _i == 3 ? 0x16 : 0x17);
	if (_i == 1)
		buf[3] = 0x41; /* 16640 + body bytes: beyond 2^14 + 1 + tag */
	if (_i == 2)
		buf[3] = 0, buf[4] = 16;
	ck_assert_int_eq(write(tp_stream_fd(tp_session_control(cs)), buf,
			       sizeof(buf)), sizeof(buf));
	ret = tp_recv_hdr(tp_session_control(sv.s), &m);
	fprintf(stderr, "server: %s\n",
		tp_stream_err(tp_session_control(sv.s))->msg);
	check_reason(ret, -EPROTO, tp_stream_err(tp_session_control(sv.s))->msg,
		     bad_record_reasons[_i], "server");
	ret = tp_recv_hdr(tp_session_control(cs), &m);
	fprintf(stderr, "client: %s\n",
		tp_stream_err(tp_session_control(cs))->msg);
	ck_assert_int_lt(ret, 0);
	ck_assert(strstr(tp_stream_err(tp_session_control(cs))->msg, "alert"));
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* Authentic records with hostile insides: an authenticated peer seals
 * them with its real key (tp_rec_seal) and sends them raw, after one good
 * message. Either the receiver then reads the message "hi" of type 2 that
 * follows (reason NULL), or it fails with the reason given. */
struct inner_rec {
	uint8_t type;		/* inner content type (0: padding follows) */
	uint8_t data[24];	/* content, zero-filled */
	size_t len;
};

/* A frame of type 2 with payload "hi". */
#define HI_FRAME 'F', 'R', 'Y', '1', 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, \
		 'h', 'i'

static const struct {
	const char *name;
	struct inner_rec rec[2];
	int nrec, want;
	const char *reason;
} inner_cases[] = {
	{ "empty application data", { { 23, { 0 }, 0 }, { 23, { 0 }, 0 } },
	  2, 0, NULL },
	/* The frame, its type 23, then zeros: a padded record. */
	{ "padded application data", { { 0, { HI_FRAME, 23 }, 24 } }, 1, 0,
	  NULL },
	{ "user_canceled warning", { { 21, { 1, 90 }, 2 } }, 1, 0, NULL },
	{ "peer's fatal alert", { { 21, { 2, 40 }, 2 } }, 1, -EPROTO,
	  "alert handshake failure" },
	{ "alert of three bytes", { { 21, { 2, 40, 0 }, 3 } }, 1, -EPROTO,
	  "unexpected message" },
	{ "KeyUpdate asking for 2", { { 22, { 24, 0, 0, 1, 2 }, 5 } }, 1,
	  -EPROTO, "bad key update" },
	{ "KeyUpdate not ending its record",
	  { { 22, { 24, 0, 0, 1, 0, 24, 0, 0, 1, 0 }, 10 } }, 1, -EPROTO,
	  "bad key update" },
	{ "session ticket sent to a server",
	  { { 22, { 4, 0, 0, 4, 0, 0, 0, 0 }, 8 } }, 1, -EPROTO,
	  "unexpected message" },
	{ "fragment of a handshake message",
	  { { 22, { 24, 0, 0, 9, 0 }, 5 } }, 1, -EPROTO, "unexpected message" },
	{ "heartbeat", { { 24, { 1, 0, 0 }, 3 } }, 1, -EPROTO,
	  "unexpected message" },
	{ "only padding", { { 0, { 0 }, 20 } }, 1, -EPROTO,
	  "unexpected record" },
	{ "close_notify", { { 21, { 1, 0 }, 2 } }, 1, -ESHUTDOWN,
	  "closed the stream" },
};

START_TEST(hostile_inner_records)
{
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, "ca", "server");
	struct tp_config ccfg = mtls_cfg(&cc, "ca", "client");
	static uint8_t rec[TP_REC_MAX_SEALED];
	struct tp_stream *tx, *rx;
	struct tp_session *cs;
	struct server sv;
	struct iovec v = { "hi", 2 };
	uint8_t buf[16];
	struct tp_msg m;
	ssize_t n;
	int ret;

	pair(&scfg, &ccfg, &sv, &cs);
	tx = tp_session_control(cs);
	rx = tp_session_control(sv.s);
	ck_assert_int_eq(tp_send(tx, 1, NULL, 0, 0), 0);
	for (int k = 0; k < inner_cases[_i].nrec; k++) {
		const struct inner_rec *r = &inner_cases[_i].rec[k];
		struct iovec c = { (void *)r->data, r->len };

		n = tp_rec_seal(&tx->rec_tx, r->type, &c, 1, rec);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(tp_raw_send(tx, rec, n), 0);
	}
	if (!inner_cases[_i].reason)
		ck_assert_int_eq(tp_send(tx, 2, &v, 1, 0), 0);
	ck_assert_int_eq(tp_recv(rx, &m, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(m.type, 1);
	ret = tp_recv(rx, &m, buf, sizeof(buf));
	fprintf(stderr, "%s: %s\n", inner_cases[_i].name,
		tp_stream_err(rx)->msg);
	if (inner_cases[_i].reason) {
		check_reason(ret, inner_cases[_i].want, tp_stream_err(rx)->msg,
			     inner_cases[_i].reason, "receiver");
	} else {
		ck_assert_msg(ret == 0, "%s", tp_stream_err(rx)->msg);
		ck_assert_uint_eq(m.type, 2);
		ck_assert_uint_eq(m.len, 2);
		ck_assert(!memcmp(buf, "hi", 2));
	}
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(bad_credentials)
{
	struct creds c;
	struct tp_config cfg = mtls_cfg(&c, "nonexistent", "server");
	struct tp_listener *l = NULL;
	struct ut_err err;

	ck_assert_int_eq(tp_listener_create(&cfg, "127.0.0.1", "0", &l, &err),
			 -ENOENT);
	ck_assert(strstr(err.msg, "cannot load CA file"));
	cfg = mtls_cfg(&c, "ca", "server");
	cfg.key_file = kpath(c.key, "client");
	ck_assert_int_eq(tp_listener_create(&cfg, "127.0.0.1", "0", &l, &err),
			 -EINVAL);
	ck_assert(strstr(err.msg, "does not match"));
	ck_assert_ptr_null(l);
}
END_TEST

START_TEST(accept_timeout)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_INSECURE, true);
	struct tp_session *s = NULL;
	struct tp_listener *l;
	struct ut_err err;

	cfg.accept_timeout_ms = 200;
	/* Any address: dual-stack where IPv6 exists, IPv4 otherwise. */
	ck_assert_int_eq(tp_listener_create(&cfg, NULL, "0", &l, &err), 0);
	ck_assert_int_eq(tp_session_accept(l, &s, &err), -ETIMEDOUT);
	ck_assert_ptr_null(s);
	tp_listener_destroy(l);
}
END_TEST

START_TEST(silent_client_handshake_timeout)
{
	struct creds c;
	struct tp_config scfg = mtls_cfg(&c, "ca", "server");
	struct server sv;
	int fd;

	scfg.timeout_ms = 300;
	server_start(&sv, &scfg, "127.0.0.1");
	fd = raw_connect(sv.port);
	check_reason(server_wait(&sv), -ETIMEDOUT, sv.err.msg, "silent",
		     "server");
	close(fd);
	server_fini(&sv);
}
END_TEST

START_TEST(garbage_mid_session_plain)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_INSECURE, true);
	struct tp_session *cs;
	struct server sv;
	struct tp_msg m;
	uint8_t buf[64];

	pair(&cfg, &cfg, &sv, &cs);
	srand(13);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = rand();
	ck_assert_int_eq(write(tp_stream_fd(tp_session_bulk(cs, 0)), buf,
			       sizeof(buf)), sizeof(buf));
	check_reason(tp_recv_hdr(tp_session_bulk(sv.s, 0), &m), -EPROTO,
		     tp_stream_err(tp_session_bulk(sv.s, 0))->msg,
		     "bad frame magic", "receiver");
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* ---- messages ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed + i);

		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

#define MAX_MSG (300 * 1024)

static size_t msg_size(uint64_t seed, int i)
{
	uint64_t r = mix(seed * 7919 + i);

	switch (r % 6) {
	case 0: return 0;
	case 1: return (r >> 8) % 64;
	case 2: return 4096;
	case 3: return 65536 * 3 + 5;
	default: return (r >> 8) % MAX_MSG;
	}
}

struct sender {
	struct tp_stream *st;
	uint64_t seed;
	int n;
	int ret;
	pthread_t th;
};

static void *send_fn(void *arg)
{
	struct sender *sd = arg;
	uint8_t *buf = malloc(MAX_MSG);
	struct iovec iov[8];
	int ret = 0;

	for (int i = 0; i < sd->n && ret == 0; i++) {
		size_t len = msg_size(sd->seed, i), off = 0;
		uint64_t r = mix(sd->seed ^ (i * 31ULL));
		int k = 0;

		fill(buf, len, sd->seed * 1000003 + i);
		for (; k < 7 && off < len; k++, r = mix(r)) {
			size_t piece = r % (len - off + 1);

			iov[k] = (struct iovec){ buf + off, piece };
			off += piece;
		}
		iov[k++] = (struct iovec){ buf + off, len - off };
		ret = tp_send(sd->st, i, iov, k, (i % 3 == 0) ? TP_MORE : 0);
	}
	if (ret == 0)
		ret = tp_stream_flush(sd->st);
	if (ret < 0)
		fprintf(stderr, "sender: %s\n", tp_stream_err(sd->st)->msg);
	sd->ret = ret;
	free(buf);
	return NULL;
}

static void receive_msgs(struct tp_stream *st, uint64_t seed, int n)
{
	uint8_t *got = malloc(MAX_MSG), *want = malloc(MAX_MSG);
	struct tp_msg m;

	for (int i = 0; i < n; i++) {
		size_t len = msg_size(seed, i), off = 0;
		uint64_t r = mix(seed + i);

		ck_assert_msg(tp_recv_hdr(st, &m) == 0, "recv: %s",
			      tp_stream_err(st)->msg);
		ck_assert_uint_eq(m.type, i);
		ck_assert_uint_eq(m.len, len);
		while (off < len) {
			size_t chunk = 1 + (r = mix(r)) % (len - off);
			struct iovec v = { got + off, chunk };

			ck_assert_msg(tp_recv_payload(st, &v, 1) == 0, "%s",
				      tp_stream_err(st)->msg);
			off += chunk;
		}
		ck_assert_uint_eq(tp_recv_left(st), 0);
		fill(want, len, seed * 1000003 + i);
		ck_assert(memcmp(got, want, len) == 0);
	}
	free(got);
	free(want);
}

static void exchange(struct tp_stream *from, struct tp_stream *to,
		     uint64_t seed, int n)
{
	struct sender sd = { .st = from, .seed = seed, .n = n };

	ck_assert_int_eq(pthread_create(&sd.th, NULL, send_fn, &sd), 0);
	receive_msgs(to, seed, n);
	pthread_join(sd.th, NULL);
	ck_assert_int_eq(sd.ret, 0);
}

START_TEST(messages_random)
{
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, _i, true);
	struct tp_config ccfg = mode_cfg(&cc, _i, false);
	struct tp_session *cs;
	struct server sv;

	ccfg.nbulk = 2;
	pair(&scfg, &ccfg, &sv, &cs);
	exchange(tp_session_control(cs), tp_session_control(sv.s), 1, 60);
	exchange(tp_session_control(sv.s), tp_session_control(cs), 2, 60);
	exchange(tp_session_bulk(cs, 1), tp_session_bulk(sv.s, 1), 3, 60);
	exchange(tp_session_urgent(cs), tp_session_urgent(sv.s), 4, 60);
	exchange(tp_session_urgent(sv.s), tp_session_urgent(cs), 5, 60);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* tp_session_shutdown(): a thread blocked reading a named stream
 * returns with an error, later calls on those streams fail, and the
 * streams it did not name carry on. */
struct blocked_reader {
	struct tp_stream *st;
	int ret;
};

static void *blocked_read_fn(void *arg)
{
	struct blocked_reader *r = arg;
	struct tp_msg m;
	uint8_t buf[16];

	r->ret = tp_recv(r->st, &m, buf, sizeof(buf));
	return NULL;
}

START_TEST(session_shutdown_wakes_reader)
{
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, _i, true);
	struct tp_config ccfg = mode_cfg(&cc, _i, false);
	struct blocked_reader r = { .ret = 1 };
	char buf[8] = "abcdefg";
	struct iovec v = { buf, 8 };
	struct tp_session *cs;
	struct server sv;
	struct tp_msg m;
	pthread_t th;

	ccfg.nbulk = 2;
	pair(&scfg, &ccfg, &sv, &cs);
	r.st = tp_session_bulk(cs, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, blocked_read_fn, &r), 0);
	usleep(100 * 1000); /* most likely in its read by now; either way */
	tp_session_shutdown(cs, TP_SHUT_BULK);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_lt(r.ret, 0);
	ck_assert_int_lt(tp_send(tp_session_bulk(cs, 1), 7, &v, 1, 0), 0);
	/* The control and urgent streams were not named. */
	ck_assert_int_eq(tp_send(tp_session_control(cs), 7, &v, 1, 0), 0);
	ck_assert_int_eq(tp_recv(tp_session_control(sv.s), &m, buf, 8), 0);
	ck_assert_uint_eq(m.type, 7);
	ck_assert_int_eq(tp_send(tp_session_urgent(sv.s), 9, &v, 1, 0), 0);
	ck_assert_int_eq(tp_recv(tp_session_urgent(cs), &m, buf, 8), 0);
	ck_assert_uint_eq(m.type, 9);
	tp_session_shutdown(cs, TP_SHUT_ALL);
	ck_assert_int_lt(tp_send(tp_session_control(cs), 7, &v, 1, 0), 0);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(api_misuse)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_INSECURE, true);
	struct tp_session *cs;
	struct server sv;
	struct tp_stream *a, *b;
	struct tp_msg m;
	char buf[8] = "abcdefg";
	struct iovec v = { buf, 8 };

	pair(&cfg, &cfg, &sv, &cs);
	a = tp_session_control(cs);
	b = tp_session_control(sv.s);
	ck_assert_int_eq(tp_send(a, TP_TYPE_RESERVED, &v, 1, 0), -EINVAL);
	ck_assert_ptr_null(tp_session_bulk(cs, 1));
	ck_assert_int_eq(tp_send(a, 7, &v, 1, 0), 0);
	ck_assert_int_eq(tp_send(a, 8, &v, 1, 0), 0);
	ck_assert_int_eq(tp_recv(b, &m, buf, 4), -EMSGSIZE);
	ck_assert_int_eq(tp_recv_hdr(b, &m), -EBUSY);
	ck_assert_int_eq(tp_recv_skip(b, 8), 0);
	ck_assert_int_eq(tp_recv(b, &m, buf, 8), 0);
	ck_assert_uint_eq(m.type, 8);
	v.iov_len = 1;
	ck_assert_int_eq(tp_recv_payload(b, &v, 1), -EMSGSIZE);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

START_TEST(key_update)
{
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, TP_SEC_MTLS, true);
	struct tp_config ccfg = mode_cfg(&cc, TP_SEC_MTLS, false);
	struct tp_stream_stats st;
	struct tp_session *cs;
	struct server sv;

	ccfg.key_update_bytes = scfg.key_update_bytes = 64 * 1024;
	pair(&scfg, &ccfg, &sv, &cs);
	exchange(tp_session_bulk(cs, 0), tp_session_bulk(sv.s, 0), 6, 200);
	exchange(tp_session_control(sv.s), tp_session_control(cs), 7, 100);
	tp_stream_get_stats(tp_session_bulk(cs, 0), &st);
	fprintf(stderr, "key updates: %llu over %llu bytes\n",
		(unsigned long long)st.key_updates,
		(unsigned long long)st.tx_bytes);
	ck_assert_uint_ge(st.key_updates, 20);
	tp_stream_get_stats(tp_session_control(sv.s), &st);
	ck_assert_uint_ge(st.key_updates, 10);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* ---- our record layer against OpenSSL's ---- */

/* A plain OpenSSL client (block padding on, asking for KeyUpdates) talks
 * to one of our TLS streams, which echoes every message back and updates
 * its own keys every 64 KiB: both record layers must read each other,
 * for each cipher suite (_i). */
static const char *const interop_suites[] = {
	"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
	"TLS_CHACHA20_POLY1305_SHA256",
};

struct echo_end {
	struct tp_config cfg;
	int fd;
	struct tp_stream_stats stats;
	char err[UT_ERR_LEN];
	int ret;
	pthread_t th;
};

static void *echo_fn(void *arg)
{
	struct echo_end *e = arg;
	static uint8_t buf[300 * 1024];
	struct tp_stream *st = NULL;
	struct tp_tls *t = NULL;
	struct ut_err err = { "" };
	struct tp_msg m;
	struct iovec v[3];
	int ret;

	ret = tp_tls_create(&e->cfg, true, &t, &err);
	if (ret == 0)
		ret = tp_stream_create(e->fd, TP_STREAM_CONTROL, 0, &e->cfg, &st);
	if (ret == 0)
		ret = tp_tls_handshake(st, t, NULL);
	while (ret == 0 && (ret = tp_recv(st, &m, buf, sizeof(buf))) == 0 &&
	       m.type != 9) {
		/* Echoed in three pieces, the first small: the header's
		 * record, then records that gather across pieces. */
		size_t a = m.len < 100 ? m.len : 100, b = (m.len - a) / 2;

		v[0] = (struct iovec){ buf, a };
		v[1] = (struct iovec){ buf + a, b };
		v[2] = (struct iovec){ buf + a + b, m.len - a - b };
		ret = tp_send(st, m.type, v, 3, 0);
	}
	snprintf(e->err, sizeof(e->err), "%s", st ? tp_stream_err(st)->msg :
						    err.msg);
	if (st)
		tp_stream_get_stats(st, &e->stats);
	tp_stream_destroy(st, true);
	tp_tls_put(t);
	e->ret = ret;
	return NULL;
}

static void ssl_write_all(SSL *ssl, const void *p, size_t len)
{
	size_t w;

	ck_assert_msg(SSL_write_ex(ssl, p, len, &w) == 1 && w == len,
		      "SSL_write: %s", ERR_reason_error_string(ERR_get_error()));
}

static void ssl_read_all(SSL *ssl, void *p, size_t len)
{
	size_t got;

	for (uint8_t *q = p; len > 0; q += got, len -= got)
		ck_assert_msg(SSL_read_ex(ssl, q, len, &got) == 1,
			      "SSL_read: %s",
			      ERR_reason_error_string(ERR_get_error()));
}

START_TEST(interop_openssl_records)
{
	static uint8_t out[256 * 1024], in[256 * 1024];
	struct creds sc;
	struct echo_end e = { .cfg = mtls_cfg(&sc, "ca", "server") };
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	uint8_t hdr[TP_FRAME_LEN];
	uint32_t type;
	uint64_t len;
	SSL_CTX *ctx;
	SSL *ssl;
	int sv[2];

	e.cfg.key_update_bytes = 64 * 1024;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	e.fd = sv[0];
	ck_assert_int_eq(pthread_create(&e.th, NULL, echo_fn, &e), 0);
	ctx = SSL_CTX_new(TLS_client_method());
	ck_assert(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
	ck_assert(SSL_CTX_set_ciphersuites(ctx, interop_suites[_i]));
	ck_assert(SSL_CTX_set_block_padding(ctx, 256));
	ck_assert_int_eq(SSL_CTX_load_verify_locations(ctx, cpath(ca, "ca"),
						       NULL), 1);
	ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(ctx,
			 cpath(cert, "client")), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(ctx, kpath(key, "client"),
						     SSL_FILETYPE_PEM), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, sv[1]);
	ck_assert_int_eq(SSL_connect(ssl), 1);
	srand(40 + _i);
	for (int i = 0; i < 40; i++) {
		size_t n = i % 8 == 0 ? 0 : (size_t)rand() % sizeof(out);

		for (size_t k = 0; k < n; k++)
			out[k] = rand();
		tp_frame_encode(hdr, 100 + i, n);
		ssl_write_all(ssl, hdr, sizeof(hdr));
		if (n)
			ssl_write_all(ssl, out, n);
		if (i % 5 == 4)
			ck_assert(SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED));
		ssl_read_all(ssl, hdr, sizeof(hdr));
		ck_assert_int_eq(tp_frame_decode(hdr, &type, &len), 0);
		ck_assert_uint_eq(type, 100 + i);
		ck_assert_uint_eq(len, n);
		ssl_read_all(ssl, in, n);
		ck_assert_msg(!memcmp(in, out, n), "message %d differs", i);
	}
	tp_frame_encode(hdr, 9, 0);
	ssl_write_all(ssl, hdr, sizeof(hdr));
	/* Our side's close_notify ends the stream for OpenSSL cleanly. */
	ck_assert_int_eq(SSL_read_ex(ssl, in, 1, &len), 0);
	ck_assert_int_eq(SSL_get_error(ssl, 0), SSL_ERROR_ZERO_RETURN);
	pthread_join(e.th, NULL);
	ck_assert_msg(e.ret == 0, "our end: %s", e.err);
	fprintf(stderr, "%s: %llu key updates sent\n", interop_suites[_i],
		(unsigned long long)e.stats.key_updates);
	ck_assert_uint_ge(e.stats.key_updates, 10);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(sv[1]);
}
END_TEST

/* ---- strangers ---- */

struct connector {
	struct tp_config cfg;
	const char *port;
	struct tp_session *s;
	struct ut_err err;
	int ret;
};

static void *connect_fn(void *arg)
{
	struct connector *c = arg;

	c->ret = tp_session_connect(&c->cfg, "127.0.0.1", c->port, &c->s,
				    &c->err);
	return NULL;
}

/* A stranger connects between the client's control stream and its other
 * streams: it is refused and the session still comes up. _i: 0 TLS with
 * garbage, 1 plain TCP with a JOIN carrying another token. */
START_TEST(stranger_during_join)
{
	struct creds sc, cc;
	int mode = _i ? TP_SEC_INSECURE : TP_SEC_MTLS;
	struct tp_config scfg = mode_cfg(&sc, mode, true);
	struct connector c = { .cfg = mode_cfg(&cc, mode, false) };
	struct pollfd p = { .events = POLLIN };
	uint8_t junk[TP_FRAME_LEN + JOIN_LEN] = { 0 };
	struct server sv;
	pthread_t th;
	int fd;

	memset(&sv, 0, sizeof(sv));
	ck_assert_int_eq(tp_listener_create(&scfg, "127.0.0.1", "0", &sv.l,
					    &sv.err), 0);
	snprintf(sv.port, sizeof(sv.port), "%d", tp_listener_port(sv.l));
	c.port = sv.port;
	pthread_create(&th, NULL, connect_fn, &c);
	/* The client's control connection waits in the accept queue... */
	p.fd = tp_listener_fd(sv.l);
	ck_assert_int_eq(poll(&p, 1, 10000), 1);
	/* ...and the stranger queues up behind it. */
	fd = raw_connect(sv.port);
	if (_i)
		tp_frame_encode(junk, TP_TYPE_JOIN, JOIN_LEN);
	else
		garbage(junk, sizeof(junk), 0x16);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), sizeof(junk));
	ck_assert_int_eq(pthread_create(&sv.th, NULL, accept_fn, &sv), 0);
	pthread_join(th, NULL);
	ck_assert_msg(server_wait(&sv) == 0, "accept: %s", sv.err.msg);
	ck_assert_msg(c.ret == 0, "connect: %s", c.err.msg);
	exchange(tp_session_urgent(c.s), tp_session_urgent(sv.s), 8, 5);
	close(fd);
	tp_session_destroy(c.s);
	server_fini(&sv);
}
END_TEST

/* ---- joins bound to the control connection ---- */

/* One stream of a hand-made client: TCP, TLS with valid credentials. */
static struct tp_stream *hand_stream(struct tp_tls *t,
				     const struct tp_config *cfg,
				     const char *port, enum tp_stream_kind k)
{
	struct tp_stream *st;

	ck_assert_int_eq(tp_stream_create(raw_connect(port), k, 0, cfg, &st), 0);
	ck_assert_msg(tp_tls_handshake(st, t, "127.0.0.1") == 0, "%s", st->err.msg);
	return st;
}

static int hand_join_at(struct tp_stream *st, const uint8_t *token,
			uint32_t kind, uint32_t idx, const uint8_t *proof)
{
	struct tp_join_msg j = { .kind = kind, .index = idx };
	uint8_t join[JOIN_LEN];
	struct tp_msg m;
	int ret;

	memcpy(j.token, token, TP_TOKEN_LEN);
	memcpy(j.proof, proof, TP_PROOF_LEN);
	tp_join_encode(join, &j);
	ck_assert_int_eq(tp_send_internal(st, TP_TYPE_JOIN, join, JOIN_LEN), 0);
	ret = tp_recv(st, &m, NULL, 0);
	return ret == 0 && m.type == TP_TYPE_JOINED ? 0 : ret < 0 ? ret : -EPROTO;
}

static int hand_join(struct tp_stream *st, const uint8_t *token,
		     uint32_t kind, const uint8_t *proof)
{
	return hand_join_at(st, token, kind, 0, proof);
}

/* HELLO on a hand-made control stream; the WELCOME's token into @token. */
static void hand_hello(struct tp_stream *ctl, uint32_t nbulk, uint8_t *token)
{
	uint8_t hello[HELLO_LEN], welcome[WELCOME_LEN];
	struct tp_msg m;

	tp_hello_encode(hello, nbulk);
	ck_assert_int_eq(tp_send_internal(ctl, TP_TYPE_HELLO, hello,
					  HELLO_LEN), 0);
	ck_assert_int_eq(tp_recv(ctl, &m, welcome, sizeof(welcome)), 0);
	ck_assert_uint_eq(m.type, TP_TYPE_WELCOME);
	ck_assert_int_eq(tp_welcome_decode(welcome, m.len, nbulk, token,
					   NULL), 0);
}

/* A client by hand that learnt the session token (as a peer on the wire
 * of an insecure session, or a leak, would) joins its bulk stream rightly,
 * then tries the urgent stream on a fresh TLS connection with valid
 * certificates: _i 0 replays the bulk stream's proof, 1 forges a proof
 * from a guessed key, 2 guesses the token. Refused every time: the server
 * gives up the session naming the refusal. */
START_TEST(join_replay_refused)
{
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, "ca", "server");
	struct tp_config ccfg = mtls_cfg(&cc, "ca", "client");
	uint8_t key[TP_PROOF_LEN], proof[TP_PROOF_LEN], token[TP_TOKEN_LEN];
	struct tp_stream *ctl, *bulk, *urg;
	struct ut_err err;
	struct tp_tls *t;
	struct server sv;
	int ret;

	scfg.accept_timeout_ms = 2000;
	server_start(&sv, &scfg, "127.0.0.1");
	ck_assert_int_eq(tp_tls_create(&ccfg, false, &t, &err), 0);
	ctl = hand_stream(t, &ccfg, sv.port, TP_STREAM_CONTROL);
	hand_hello(ctl, 1, token);
	ck_assert_int_eq(tp_join_key(ctl->ssl, token, key), 0);

	bulk = hand_stream(t, &ccfg, sv.port, TP_STREAM_BULK);
	ck_assert_int_eq(tp_join_proof(key, bulk->ssl, TP_STREAM_BULK, 0,
				       proof), 0);
	ck_assert_int_eq(hand_join(bulk, token, TP_STREAM_BULK, proof), 0);

	urg = hand_stream(t, &ccfg, sv.port, TP_STREAM_URGENT);
	if (_i == 0) {
		ck_assert_int_eq(tp_join_proof(key, bulk->ssl, TP_STREAM_URGENT,
					       0, proof), 0);
	} else {
		RAND_bytes(key, sizeof(key));
		ck_assert_int_eq(tp_join_proof(key, urg->ssl, TP_STREAM_URGENT,
					       0, proof), 0);
	}
	if (_i == 2)
		RAND_bytes(token, sizeof(token));
	ret = hand_join(urg, token, TP_STREAM_URGENT, proof);
	fprintf(stderr, "join %d: %d %s | server: %s\n", _i, ret, urg->err.msg,
		server_wait(&sv) ? sv.err.msg : "accepted");
	ck_assert_int_lt(ret, 0); /* closed without JOINED */
	check_reason(sv.ret, -ETIMEDOUT, sv.err.msg,
		     _i == 2 ? "refused a connection: a foreign session token" :
			       "refused a connection: a join proof not bound to this session's control connection (replayed or forged)",
		     "server");
	ck_assert_ptr_null(sv.s);
	tp_stream_destroy(urg, false);
	tp_stream_destroy(bulk, false);
	tp_stream_destroy(ctl, false);
	tp_tls_put(t);
	server_fini(&sv);
}
END_TEST

/* A peer of protocol 1 (joins with the token alone) is told the version
 * it speaks and the one we need. */
START_TEST(old_protocol_refused)
{
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, "ca", "server");
	struct tp_config ccfg = mtls_cfg(&cc, "ca", "client");
	uint8_t hello[HELLO_LEN];
	struct tp_stream *ctl;
	struct ut_err err;
	struct tp_tls *t;
	struct server sv;

	server_start(&sv, &scfg, "127.0.0.1");
	ck_assert_int_eq(tp_tls_create(&ccfg, false, &t, &err), 0);
	ctl = hand_stream(t, &ccfg, sv.port, TP_STREAM_CONTROL);
	ut_put_le32(hello, 1);
	ut_put_le32(hello + 4, 1);
	ck_assert_int_eq(tp_send_internal(ctl, TP_TYPE_HELLO, hello,
					  HELLO_LEN), 0);
	check_reason(server_wait(&sv), -EPROTO, sv.err.msg,
		     "peer speaks version 1 with 1 bulk streams; we need version 2",
		     "server");
	tp_stream_destroy(ctl, false);
	tp_tls_put(t);
	server_fini(&sv);
}
END_TEST

/* Our authenticated peer (token and proof right) joins a stream the
 * session does not have: the server gives up the session at once, naming
 * it. _i: 0 bulk index 1 of a session with 1, 1 urgent index 3, 2 a
 * control stream, 3 bulk stream 0 a second time. */
START_TEST(join_bad_stream_refused)
{
	static const struct {
		uint32_t kind, idx;
		const char *reason;
	} c[] = {
		{ TP_STREAM_BULK, 1,
		  "bad stream join: a join of bulk stream 1 of a session with 1" },
		{ TP_STREAM_URGENT, 3,
		  "bad stream join: a join of stream kind 2 (urgent), index 3" },
		{ TP_STREAM_CONTROL, 0,
		  "bad stream join: a join of stream kind 0 (control), index 0" },
		{ TP_STREAM_BULK, 0, "a second join of bulk stream 0" },
	};
	struct creds sc, cc;
	struct tp_config scfg = mtls_cfg(&sc, "ca", "server");
	struct tp_config ccfg = mtls_cfg(&cc, "ca", "client");
	uint8_t key[TP_PROOF_LEN], proof[TP_PROOF_LEN], token[TP_TOKEN_LEN];
	struct tp_stream *ctl, *first = NULL, *st;
	struct ut_err err;
	struct tp_tls *t;
	struct server sv;

	scfg.accept_timeout_ms = 5000;
	server_start(&sv, &scfg, "127.0.0.1");
	ck_assert_int_eq(tp_tls_create(&ccfg, false, &t, &err), 0);
	ctl = hand_stream(t, &ccfg, sv.port, TP_STREAM_CONTROL);
	hand_hello(ctl, 1, token);
	ck_assert_int_eq(tp_join_key(ctl->ssl, token, key), 0);
	if (c[_i].idx == 0 && c[_i].kind == TP_STREAM_BULK) {
		first = hand_stream(t, &ccfg, sv.port, TP_STREAM_BULK);
		ck_assert_int_eq(tp_join_proof(key, first->ssl, TP_STREAM_BULK,
					       0, proof), 0);
		ck_assert_int_eq(hand_join(first, token, TP_STREAM_BULK,
					   proof), 0);
	}
	st = hand_stream(t, &ccfg, sv.port, TP_STREAM_BULK);
	ck_assert_int_eq(tp_join_proof(key, st->ssl, c[_i].kind, c[_i].idx,
				       proof), 0);
	ck_assert_int_lt(hand_join_at(st, token, c[_i].kind, c[_i].idx,
				      proof), 0);
	check_reason(server_wait(&sv), -EPROTO, sv.err.msg, c[_i].reason,
		     "server");
	ck_assert_ptr_null(sv.s);
	tp_stream_destroy(st, false);
	tp_stream_destroy(first, false);
	tp_stream_destroy(ctl, false);
	tp_tls_put(t);
	server_fini(&sv);
}
END_TEST

/* The setup messages' decoders (setup.c) on their own: every field at and
 * beyond its limits, each refusal with its reason; what decodes encodes
 * back to the same bytes. */
START_TEST(setup_messages_decode)
{
	uint8_t b[JOIN_LEN + 1], tok[TP_TOKEN_LEN], got[TP_TOKEN_LEN];
	struct tp_join_msg j, k;
	struct ut_err why;
	uint32_t n;

	for (uint32_t nb = 1; nb <= TP_MAX_BULK; nb += TP_MAX_BULK - 1) {
		tp_hello_encode(b, nb);
		ck_assert_int_eq(tp_hello_decode(b, HELLO_LEN, &n, &why), 0);
		ck_assert_uint_eq(n, nb);
	}
	for (uint32_t nb = 0; nb <= TP_MAX_BULK + 1; nb += TP_MAX_BULK + 1) {
		tp_hello_encode(b, nb);
		check_reason(tp_hello_decode(b, HELLO_LEN, &n, &why), -EPROTO,
			     why.msg, nb ? "with 17 bulk streams" :
				     "with 0 bulk streams",
			     "hello");
	}
	tp_hello_encode(b, 1);
	ut_put_le32(b, 1);
	check_reason(tp_hello_decode(b, HELLO_LEN, &n, &why), -EPROTO, why.msg,
		     "peer speaks version 1 with 1 bulk streams; we need version 2, 1..16",
		     "hello");
	check_reason(tp_hello_decode(b, HELLO_LEN - 1, &n, &why), -EPROTO,
		     why.msg, "a HELLO of 7 bytes, not 8", "hello");

	RAND_bytes(tok, sizeof(tok));
	tp_welcome_encode(b, 3, tok);
	ck_assert_int_eq(tp_welcome_decode(b, WELCOME_LEN, 3, got, &why), 0);
	ck_assert_mem_eq(got, tok, TP_TOKEN_LEN);
	memset(got, 0, sizeof(got));
	check_reason(tp_welcome_decode(b, WELCOME_LEN, 4, got, &why), -EPROTO,
		     why.msg,
		     "server refused version 2 with 4 bulk streams (it answered version 2 with 3)",
		     "welcome");
	ut_put_le32(b, 3);
	check_reason(tp_welcome_decode(b, WELCOME_LEN, 3, got, &why), -EPROTO,
		     why.msg, "(it answered version 3 with 3)", "welcome");
	check_reason(tp_welcome_decode(b, WELCOME_LEN + 1, 3, got, &why),
		     -EPROTO, why.msg, "a WELCOME of 25 bytes, not 24",
		     "welcome");
	ck_assert_uint_eq(got[0] | got[TP_TOKEN_LEN - 1], 0);

	memcpy(j.token, tok, TP_TOKEN_LEN);
	RAND_bytes(j.proof, sizeof(j.proof));
	{
		static const struct {
			uint32_t kind, idx, nbulk;
			int ret;
			const char *why;
		} c[] = {
			{ TP_STREAM_BULK, 0, 1, 0, NULL },
			{ TP_STREAM_BULK, 15, 16, 0, NULL },
			{ TP_STREAM_URGENT, 0, 1, 0, NULL },
			{ TP_STREAM_BULK, 1, 1, -ERANGE,
			  "a join of bulk stream 1 of a session with 1" },
			{ TP_STREAM_BULK, UINT32_MAX, 16, -ERANGE,
			  "a join of bulk stream 4294967295 of a session with 16" },
			{ TP_STREAM_URGENT, 1, 1, -ERANGE,
			  "a join of stream kind 2 (urgent), index 1" },
			{ TP_STREAM_CONTROL, 0, 1, -ERANGE,
			  "a join of stream kind 0 (control), index 0" },
			{ 7, 0, 1, -ERANGE,
			  "a join of stream kind 7 (unknown), index 0" },
		};

		for (size_t i = 0; i < UT_ARRAY_SIZE(c); i++) {
			j.kind = c[i].kind;
			j.index = c[i].idx;
			tp_join_encode(b, &j);
			memset(&k, 0, sizeof(k));
			why.msg[0] = 0;
			ck_assert_int_eq(tp_join_decode(b, JOIN_LEN, c[i].nbulk,
							&k, &why), c[i].ret);
			/* Filled either way: the caller authenticates first. */
			ck_assert_mem_eq(&k, &j, sizeof(j));
			if (c[i].why)
				check_reason(c[i].ret, c[i].ret, why.msg,
					     c[i].why, "join");
		}
	}
	memset(&k, 0xa5, sizeof(k));
	memcpy(&j, &k, sizeof(j));
	for (size_t len = JOIN_LEN - 1; len <= JOIN_LEN + 1; len += 2) {
		check_reason(tp_join_decode(b, len, 1, &k, &why), -EPROTO,
			     why.msg, len < JOIN_LEN ?
			     "a JOIN of 55 bytes, not 56" :
			     "a JOIN of 57 bytes, not 56", "join");
		ck_assert_mem_eq(&k, &j, sizeof(j)); /* untouched */
	}
}
END_TEST

/* ---- 1 GiB over four bulk streams ---- */

#define GIB_STREAMS 4
#define GIB_MSG (256 * 1024)
#define GIB_POOL (8 << 20)
#define PAGE 4096

struct bulk_end {
	struct tp_stream *st;
	const uint8_t *pool;
	uint64_t bytes;
	uint64_t hash;
	int ret;
	pthread_t th;
};

/* Sends 256 MiB as messages of 64 separate page pointers. */
static void *gib_send_fn(void *arg)
{
	struct bulk_end *e = arg;
	XXH3_state_t *h = XXH3_createState();
	struct iovec iov[GIB_MSG / PAGE];
	uint64_t seed = (uintptr_t)e->st;
	int ret = 0;

	XXH3_64bits_reset(h);
	for (uint64_t sent = 0; sent < (UT_GiB / GIB_STREAMS) && !ret;
	     sent += GIB_MSG) {
		for (int p = 0; p < GIB_MSG / PAGE; p++) {
			uint64_t pg = mix(seed++) % (GIB_POOL / PAGE);

			iov[p] = (struct iovec){ (void *)(e->pool + pg * PAGE),
						 PAGE };
			XXH3_64bits_update(h, iov[p].iov_base, PAGE);
		}
		ret = tp_send(e->st, 1, iov, GIB_MSG / PAGE, TP_MORE);
		e->bytes += GIB_MSG;
	}
	if (!ret)
		ret = tp_send(e->st, 2, NULL, 0, 0);
	if (!ret)
		ret = tp_stream_flush(e->st);
	e->hash = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	e->ret = ret;
	return NULL;
}

static void *gib_recv_fn(void *arg)
{
	struct bulk_end *e = arg;
	XXH3_state_t *h = XXH3_createState();
	uint8_t *dst = malloc(GIB_MSG);
	struct iovec iov[GIB_MSG / PAGE];
	struct tp_msg m;
	int ret;

	XXH3_64bits_reset(h);
	for (int p = 0; p < GIB_MSG / PAGE; p++)
		iov[p] = (struct iovec){ dst + p * PAGE, PAGE };
	while ((ret = tp_recv_hdr(e->st, &m)) == 0 && m.type == 1) {
		if (m.len != GIB_MSG) {
			ret = -EPROTO;
			break;
		}
		ret = tp_recv_payload(e->st, iov, GIB_MSG / PAGE);
		if (ret)
			break;
		XXH3_64bits_update(h, dst, GIB_MSG);
		e->bytes += GIB_MSG;
	}
	e->hash = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	free(dst);
	e->ret = ret;
	return NULL;
}

/* _i: 0 TLS, 1 plain TCP. */
START_TEST(gib_over_bulk_streams)
{
	int mode = _i ? TP_SEC_INSECURE : TP_SEC_MTLS;
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, mode, true);
	struct tp_config ccfg = mode_cfg(&cc, mode, false);
	struct bulk_end tx[GIB_STREAMS] = { 0 }, rx[GIB_STREAMS] = { 0 };
	uint8_t *pool = malloc(GIB_POOL);
	struct tp_session *cs;
	struct server sv;
	uint64_t total = 0;

	fill(pool, GIB_POOL, 99);
	ccfg.nbulk = GIB_STREAMS;
	pair(&scfg, &ccfg, &sv, &cs);
	for (int i = 0; i < GIB_STREAMS; i++) {
		tx[i] = (struct bulk_end){ .st = tp_session_bulk(cs, i),
					   .pool = pool };
		rx[i] = (struct bulk_end){ .st = tp_session_bulk(sv.s, i) };
		pthread_create(&rx[i].th, NULL, gib_recv_fn, &rx[i]);
		pthread_create(&tx[i].th, NULL, gib_send_fn, &tx[i]);
	}
	for (int i = 0; i < GIB_STREAMS; i++) {
		pthread_join(tx[i].th, NULL);
		pthread_join(rx[i].th, NULL);
		ck_assert_msg(tx[i].ret == 0, "send %d: %s", i,
			      tp_stream_err(tx[i].st)->msg);
		ck_assert_msg(rx[i].ret == 0, "recv %d: %s", i,
			      tp_stream_err(rx[i].st)->msg);
		ck_assert_uint_eq(tx[i].bytes, rx[i].bytes);
		ck_assert_uint_eq(tx[i].hash, rx[i].hash);
		total += rx[i].bytes;
	}
	ck_assert_uint_eq(total, UT_GiB);
	free(pool);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* ---- the urgent stream overtakes saturated bulk streams ---- */

struct flood {
	struct tp_stream *st;
	_Atomic uint64_t sent;	/* messages handed to the transport */
	atomic_bool stop;
	int ret;
	pthread_t th;
};

static void *flood_fn(void *arg)
{
	struct flood *f = arg;
	static uint8_t buf[1 << 20];
	struct iovec v = { buf, sizeof(buf) };
	int ret = 0;

	while (!atomic_load(&f->stop) && ret == 0) {
		ret = tp_send(f->st, 1, &v, 1, 0);
		if (ret == 0)
			atomic_fetch_add(&f->sent, 1);
	}
	if (ret == 0)
		ret = tp_send(f->st, 2, NULL, 0, 0);
	if (ret == 0)
		ret = tp_stream_flush(f->st);
	f->ret = ret;
	return NULL;
}

static uint64_t drain(struct tp_stream *st)
{
	struct tp_msg m;
	uint64_t n = 0;

	for (;;) {
		ck_assert_msg(tp_recv_hdr(st, &m) == 0, "%s",
			      tp_stream_err(st)->msg);
		if (m.type == 2)
			return n;
		ck_assert_int_eq(tp_recv_skip(st, m.len), 0);
		n++;
	}
}

START_TEST(urgent_overtakes_bulk)
{
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, _i, true);
	struct tp_config ccfg = mode_cfg(&cc, _i, false);
	struct flood f[2] = { 0 };
	struct tp_session *cs;
	struct server sv;
	uint64_t queued = 0, last = UINT64_MAX, got[2];
	uint8_t note[8];
	struct iovec v = { note, sizeof(note) };
	struct tp_msg m;

	ccfg.nbulk = 2;
	ccfg.timeout_ms = scfg.timeout_ms = 30000;
	pair(&scfg, &ccfg, &sv, &cs);
	for (int i = 0; i < 2; i++) {
		f[i].st = tp_session_bulk(cs, i);
		pthread_create(&f[i].th, NULL, flood_fn, &f[i]);
	}
	/* Saturated: nobody reads the bulk streams, so once every buffer on
	 * the way is full the senders stop making progress. */
	while (queued != last || queued < 2) {
		last = queued;
		usleep(300 * 1000);
		queued = atomic_load(&f[0].sent) + atomic_load(&f[1].sent);
	}
	memcpy(note, &queued, sizeof(queued));
	ck_assert_int_eq(tp_send(tp_session_urgent(cs), 42, &v, 1, 0), 0);
	ck_assert_int_eq(tp_recv(tp_session_urgent(sv.s), &m, note,
				 sizeof(note)), 0);
	ck_assert_uint_eq(m.type, 42);
	/* Delivered while every one of the @queued bulk messages handed to
	 * the transport before it is still unread. */
	for (int i = 0; i < 2; i++)
		atomic_store(&f[i].stop, true);
	for (int i = 0; i < 2; i++)
		got[i] = drain(tp_session_bulk(sv.s, i));
	for (int i = 0; i < 2; i++) {
		pthread_join(f[i].th, NULL);
		ck_assert_int_eq(f[i].ret, 0);
	}
	ck_assert_uint_ge(got[0] + got[1], queued);
	fprintf(stderr, "urgent delivered ahead of %llu queued bulk MiB\n",
		(unsigned long long)queued);
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* ---- peers that vanish or fall silent ---- */

enum cut {
	CUT_PAYLOAD_CLOSE,	/* half a payload, then close_notify */
	CUT_PAYLOAD_SILENT,	/* half a payload, then nothing */
	CUT_HEADER_CLOSE,	/* half a frame header, then close */
	CUT_BOUNDARY_CLOSE,	/* clean close between messages */
	CUT_TCP_RESET,		/* TCP gone without close_notify */
	CUT_NR,
};

static struct tp_stream *by_kind(struct tp_session *s, int kind)
{
	return kind == 0 ? tp_session_control(s) :
	       kind == 1 ? tp_session_bulk(s, 0) : tp_session_urgent(s);
}

/* _i: (plain TCP?, stream kind, cut) */
START_TEST(peer_cut)
{
	int plain = _i / (3 * CUT_NR), kind = _i / CUT_NR % 3;
	int cut = _i % CUT_NR, mode = plain ? TP_SEC_INSECURE : TP_SEC_MTLS;
	struct creds sc, cc;
	struct tp_config scfg = mode_cfg(&sc, mode, true);
	struct tp_config ccfg = mode_cfg(&cc, mode, false);
	uint8_t frame[TP_FRAME_LEN + 100] = { 0 };
	struct tp_stream *tx, *rx;
	struct tp_session *cs;
	struct server sv;
	struct tp_msg m;
	uint8_t buf[1000];
	struct iovec v = { buf, sizeof(buf) };
	int ret, want;

	pair(&scfg, &ccfg, &sv, &cs);
	tx = by_kind(cs, kind);
	rx = by_kind(sv.s, kind);
	tp_stream_set_timeout(rx, 300);
	tp_frame_encode(frame, 5, 1000);
	if (cut == CUT_PAYLOAD_CLOSE || cut == CUT_PAYLOAD_SILENT)
		ck_assert_int_eq(tp_stream_write_raw(tx, frame, sizeof(frame),
						     true), 0);
	else if (cut == CUT_HEADER_CLOSE)
		ck_assert_int_eq(tp_stream_write_raw(tx, frame, 7, true), 0);
	if (cut == CUT_TCP_RESET)
		shutdown(tp_stream_fd(tx), SHUT_RDWR);
	else if (cut != CUT_PAYLOAD_SILENT)
		tp_session_destroy(cs), cs = NULL;
	ret = tp_recv_hdr(rx, &m);
	if (cut == CUT_PAYLOAD_CLOSE || cut == CUT_PAYLOAD_SILENT) {
		ck_assert_int_eq(ret, 0);
		ck_assert_uint_eq(m.len, 1000);
		ret = tp_recv_payload(rx, &v, 1);
	}
	/* Plain TCP cannot tell a clean close from a lost connection. */
	if (plain && cut == CUT_TCP_RESET)
		cut = CUT_BOUNDARY_CLOSE;
	want = cut == CUT_PAYLOAD_SILENT ? -ETIMEDOUT :
	       cut == CUT_BOUNDARY_CLOSE ? -ESHUTDOWN : -ECONNRESET;
	fprintf(stderr, "%s kind %d cut %d: %s\n", plain ? "plain" : "tls",
		kind, cut, tp_stream_err(rx)->msg);
	check_reason(ret, want, tp_stream_err(rx)->msg,
		     cut == CUT_PAYLOAD_SILENT ? "silent" :
		     cut == CUT_BOUNDARY_CLOSE ? "closed the stream" :
		     cut == CUT_TCP_RESET ? "without TLS close_notify" :
		     "mid-message", "receiver");
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* A receiver that stops reading: the sender times out, it does not hang. */
START_TEST(stalled_receiver_send_timeout)
{
	struct tp_config cfg = mode_cfg(NULL, _i ? TP_SEC_INSECURE : TP_SEC_PSK,
					true);
	static uint8_t buf[1 << 20];
	struct iovec v = { buf, sizeof(buf) };
	struct tp_stream *tx;
	struct tp_session *cs;
	struct server sv;
	int ret = 0, n;

	pair(&cfg, &cfg, &sv, &cs);
	tx = tp_session_bulk(cs, 0);
	tp_stream_set_timeout(tx, 300);
	for (n = 0; n < 1024 && ret == 0; n++)
		ret = tp_send(tx, 1, &v, 1, 0);
	fprintf(stderr, "after %d MiB: %s\n", n, tp_stream_err(tx)->msg);
	check_reason(ret, -ETIMEDOUT, tp_stream_err(tx)->msg, "not reading",
		     "sender");
	tp_session_destroy(cs);
	server_fini(&sv);
}
END_TEST

/* ---- one thread serving every stream: urgent first ---- */

static void wait_readable(struct tp_stream *st)
{
	struct pollfd p = { .fd = tp_stream_fd(st), .events = POLLIN };

	ck_assert_int_eq(poll(&p, 1, 10000), 1);
}

START_TEST(session_wait_urgent_first)
{
	struct tp_config cfg = mode_cfg(NULL, TP_SEC_PSK, true);
	struct tp_stream *order[5], *st;
	struct tp_session *cs;
	struct server sv;
	struct tp_msg m;
	char buf[8] = "payload";
	struct iovec v = { buf, sizeof(buf) };

	cfg.nbulk = 2;
	pair(&cfg, &cfg, &sv, &cs);
	ck_assert_int_eq(tp_session_wait(sv.s, 0, &st), -ETIMEDOUT);
	order[0] = tp_session_bulk(cs, 1);
	order[1] = tp_session_bulk(cs, 0);
	order[2] = tp_session_control(cs);
	order[3] = tp_session_urgent(cs);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(tp_send(order[i], i, &v, 1, 0), 0);
	wait_readable(tp_session_bulk(sv.s, 0));
	wait_readable(tp_session_bulk(sv.s, 1));
	wait_readable(tp_session_control(sv.s));
	wait_readable(tp_session_urgent(sv.s));
	/* Sent last, served first; then control; then bulk in turn. */
	for (int want = 3; want >= 0; want--) {
		ck_assert_int_eq(tp_session_wait(sv.s, 1000, &st), 0);
		ck_assert_int_eq(tp_recv(st, &m, buf, sizeof(buf)), 0);
		ck_assert_uint_eq(m.type, want);
	}
	ck_assert_int_eq(tp_session_wait(sv.s, 50, &st), -ETIMEDOUT);
	/* Three messages in one TCP segment: after the first is read, the
	 * others sit in user space, and the stream must still be ready. */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(tp_send(tp_session_control(cs), i, &v, 1,
					 TP_MORE), 0);
	ck_assert_int_eq(tp_stream_flush(tp_session_control(cs)), 0);
	wait_readable(tp_session_control(sv.s));
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(tp_session_wait(sv.s, 0, &st), 0);
		ck_assert_ptr_eq(st, tp_session_control(sv.s));
		ck_assert_int_eq(tp_recv(st, &m, buf, sizeof(buf)), 0);
		ck_assert_uint_eq(m.type, i);
	}
	tp_session_destroy(cs);
	ck_assert_int_eq(tp_session_wait(sv.s, 1000, &st), 0);
	ck_assert_int_eq(tp_recv_hdr(st, &m), -ESHUTDOWN);
	server_fini(&sv);
}
END_TEST

/* ---- the suite ---- */

static Suite *transport_suite(void)
{
	const struct {
		const char *name;
		const TTest *fn;
		int loops;	/* 0: a plain test; else _i in [0, loops) */
		int timeout;
	} cases[] = {
		{ "handshake_matrix", handshake_matrix,
		  UT_ARRAY_SIZE(hs_cases), 60 },
		{ "psk_ok", psk_ok, 0, 30 },
		{ "psk_mismatch", psk_mismatch, 2, 30 },
		{ "tls12_peer_refused", tls12_peer_refused, 2, 30 },
		{ "insecure_ok", insecure_ok, 0, 30 },
		{ "plaintext_peer_on_tls_port", plaintext_peer_on_tls_port, 0,
		  30 },
		{ "tls_client_on_plain_port", tls_client_on_plain_port, 0, 30 },
		{ "garbage_handshake_gets_alert", garbage_handshake_gets_alert,
		  0, 30 },
		{ "garbage_mid_session", garbage_mid_session,
		  UT_ARRAY_SIZE(bad_record_reasons), 30 },
		{ "garbage_mid_session_plain", garbage_mid_session_plain, 0, 30 },
		{ "hostile_inner_records", hostile_inner_records,
		  UT_ARRAY_SIZE(inner_cases), 30 },
		{ "bad_credentials", bad_credentials, 0, 30 },
		{ "accept_timeout", accept_timeout, 0, 30 },
		{ "silent_client_handshake_timeout",
		  silent_client_handshake_timeout, 0, 30 },
		{ "messages_random", messages_random, 3, 60 },
		{ "api_misuse", api_misuse, 0, 30 },
		{ "session_shutdown_wakes_reader",
		  session_shutdown_wakes_reader, 3, 30 },
		{ "key_update", key_update, 0, 60 },
		{ "interop_openssl_records", interop_openssl_records,
		  UT_ARRAY_SIZE(interop_suites), 60 },
		{ "gib_over_bulk_streams", gib_over_bulk_streams, 2, 120 },
		{ "urgent_overtakes_bulk", urgent_overtakes_bulk, 3, 60 },
		{ "peer_cut", peer_cut, 2 * 3 * CUT_NR, 60 },
		{ "session_wait_urgent_first", session_wait_urgent_first, 0,
		  30 },
		{ "stranger_during_join", stranger_during_join, 2, 30 },
		{ "join_replay_refused", join_replay_refused, 3, 30 },
		{ "old_protocol_refused", old_protocol_refused, 0, 30 },
		{ "join_bad_stream_refused", join_bad_stream_refused, 4, 30 },
		{ "setup_messages_decode", setup_messages_decode, 0, 30 },
		{ "stalled_receiver_send_timeout",
		  stalled_receiver_send_timeout, 2, 30 },
	};
	Suite *s = suite_create("transport");

	for (size_t i = 0; i < UT_ARRAY_SIZE(cases); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_set_timeout(tc, cases[i].timeout);
		if (cases[i].loops)
			tcase_add_loop_test(tc, cases[i].fn, 0, cases[i].loops);
		else
			tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

/* crl: the CA revokes "revoked"; rogue-crl: the rogue CA's, empty;
 * stale-crl: the CA's, past its nextUpdate. */
static int make_crls(struct ut_err *err)
{
	char c[PATH_MAX], k[PATH_MAX], r[PATH_MAX], o[PATH_MAX];
	const char *revoked[] = { cpath(r, "revoked") };

	cpath(c, "ca");
	kpath(k, "ca");
	if (cert_make_crl(c, k, revoked, 1, cpath(o, "crl"), 30, err) ||
	    cert_make_crl(c, k, revoked, 1, cpath(o, "stale-crl"), -1, err))
		return -1;
	cpath(c, "rogue-ca");
	kpath(k, "rogue-ca");
	return cert_make_crl(c, k, NULL, 0, cpath(o, "rogue-crl"), 30, err);
}

static int make_certs(void)
{
	static const struct {
		const char *name, *ca;
		int days, not_before_days;
		const char *ku, *eku;
	} hosts[] = {
		{ "server", "ca", 365, 0, NULL, NULL },
		{ "client", "ca", 365, 0, NULL, NULL },
		{ "expired", "ca", -1, 0, NULL, NULL },
		{ "rogue", "rogue-ca", 365, 0, NULL, NULL },
		{ "not-yet", "ca", 365, 1, NULL, NULL },
		{ "client-only", "ca", 365, 0, NULL, "clientAuth" },
		{ "server-only", "ca", 365, 0, NULL, "serverAuth" },
		{ "bad-ku", "ca", 365, 0, "critical,nonRepudiation", "" },
		{ "revoked", "ca", 365, 0, NULL, NULL },
	};
	char c[PATH_MAX], k[PATH_MAX], cc[PATH_MAX], ck[PATH_MAX];
	struct cert_opts o = { .cn = "test CA", .days = 30 };
	struct ut_err err;

	struct cert_opts rogue = { .cn = "rogue CA", .days = 30 };

	if (cert_make_ca(cpath(c, "ca"), kpath(k, "ca"), &o, &err) ||
	    cert_make_ca(cpath(c, "rogue-ca"), kpath(k, "rogue-ca"),
			    &rogue, &err))
		goto fail;
	for (size_t i = 0; i < UT_ARRAY_SIZE(hosts); i++) {
		o = (struct cert_opts){
			.cn = hosts[i].name, .days = hosts[i].days,
			.not_before_days = hosts[i].not_before_days,
			.key_usage = hosts[i].ku,
			.ext_key_usage = hosts[i].eku,
			.san = "DNS:localhost,IP:127.0.0.1,IP:::1" };
		if (cert_make_host(cpath(cc, hosts[i].ca),
				      kpath(ck, hosts[i].ca),
				      cpath(c, hosts[i].name),
				      kpath(k, hosts[i].name), &o, &err))
			goto fail;
	}
	if (make_crls(&err) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "certificates: %s\n", err.msg);
	return -1;
}

static void remove_certs(void)
{
	static const char *const names[] = {
		"ca", "rogue-ca", "server", "client", "expired", "rogue",
		"not-yet", "client-only", "server-only", "bad-ku", "revoked",
		"crl", "rogue-crl", "stale-crl",
	};
	char p[PATH_MAX];

	for (size_t i = 0; i < UT_ARRAY_SIZE(names); i++) {
		unlink(cpath(p, names[i]));
		unlink(kpath(p, names[i]));
	}
	rmdir(certdir);
}

int main(void)
{
	SRunner *sr;
	int failed;

	snprintf(certdir, sizeof(certdir), "/tmp/ferry-check-transport-XXXXXX");
	if (!mkdtemp(certdir) || make_certs() < 0)
		return 1;
	sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	remove_certs();
	return failed ? 1 : 0;
}
