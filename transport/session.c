// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Sessions: a control stream, N bulk streams and an urgent stream, each
 * its own TCP connection with its own TLS session.
 *
 * Setup on the control stream: the client sends HELLO (version, nbulk),
 * the server answers WELCOME (version, nbulk, a random 16-byte token).
 * The client then opens every other stream and sends JOIN (token, kind,
 * index, proof) on it; the server answers JOINED. Connections with another
 * token, or whose proof does not bind them to the control connection's
 * TLS session (internal.h), are dropped. Either side returns a session
 * only once every stream is up.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"


struct tp_listener {
	int fd;			/* listening socket */
	int port;
	struct tp_tls *tls;
	struct tp_config cfg;	/* numeric fields only; strings not kept */
	struct io_uring ring;	/* accepts */
	bool ring_ok;
};

struct tp_session {
	struct tp_tls *tls;
	struct tp_stream *ctl;
	struct tp_stream *urg;
	struct tp_stream *bulk[TP_MAX_BULK];
	unsigned int nbulk;
	uint8_t token[TP_TOKEN_LEN];
	uint8_t join_key[TP_PROOF_LEN]; /* from the control connection */
	unsigned int next_bulk;	/* round-robin start of tp_session_wait() */
	char ktls[64];
	char desc[384];
};

static const char *kind_name(enum tp_stream_kind k)
{
	return k == TP_STREAM_CONTROL ? "control" :
	       k == TP_STREAM_BULK    ? "bulk" : "urgent";
}

static int stream_err(struct ut_err *err, struct tp_stream *st, int ret)
{
	return ut_err_set(err, ret, "%s stream: %s", kind_name(st->kind),
			  st->err.msg);
}

static void copy_cfg(struct tp_config *dst, const struct tp_config *src)
{
	*dst = *src;
	dst->ca_file = dst->cert_file = dst->key_file = dst->crl_file = NULL;
	dst->peer_name = dst->psk_identity = NULL;
	dst->psk = NULL;
}

/* ---- listener ---- */

static int bind_listen(const char *host, const char *port, int *fdp,
		       struct ut_err *err)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	int fd = -1, one = 1, zero = 0, ret;

	hints.ai_family = host ? AF_UNSPEC : AF_INET6;
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret)
		return ut_err_set(err, -EINVAL, "cannot resolve %s:%s: %s",
				  host ? host : "*", port, gai_strerror(ret));
	ret = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && !host)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
				   sizeof(zero));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return ut_err_set(err, ret, "cannot listen on %s:%s: %s",
				  host ? host : "*", port, strerror(-ret));
	*fdp = fd;
	return 0;
}

int tp_listener_create(const struct tp_config *cfg, const char *host,
		       const char *port, struct tp_listener **out,
		       struct ut_err *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct tp_listener *l;
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l)
		return ut_err_set(err, -ENOMEM, "out of memory");
	l->fd = -1;
	copy_cfg(&l->cfg, cfg);
	ret = tp_tls_create(cfg, true, &l->tls, err);
	if (ret < 0)
		goto destroy_listener;
	ret = bind_listen(host, port, &l->fd, err);
	if (ret < 0 && !host) /* no IPv6 here: IPv4 only */
		ret = bind_listen("0.0.0.0", port, &l->fd, err);
	if (ret < 0)
		goto destroy_listener;
	getsockname(l->fd, (struct sockaddr *)&ss, &sl);
	l->port = ntohs(ss.ss_family == AF_INET6 ?
			((struct sockaddr_in6 *)&ss)->sin6_port :
			((struct sockaddr_in *)&ss)->sin_port);
	ret = io_uring_queue_init(4, &l->ring, 0);
	if (ret < 0) {
		ut_err_set(err, ret, "io_uring setup: %s", strerror(-ret));
		goto destroy_listener;
	}
	l->ring_ok = true;
	*out = l;
	return 0;

destroy_listener:
	tp_listener_destroy(l);
	return ret;
}

int tp_listener_port(const struct tp_listener *l)
{
	return l->port;
}

int tp_listener_fd(const struct tp_listener *l)
{
	return l->fd;
}

void tp_listener_destroy(struct tp_listener *l)
{
	if (!l)
		return;
	if (l->ring_ok)
		io_uring_queue_exit(&l->ring);
	if (l->fd >= 0)
		close(l->fd);
	tp_tls_put(l->tls);
	free(l);
}

/* ---- setup messages ---- */

#define JOIN_KEY_LABEL "EXPORTER-ferry-join key"
#define JOIN_STREAM_LABEL "EXPORTER-ferry-join stream"

int tp_join_key(SSL *ctl, const uint8_t token[TP_TOKEN_LEN],
		uint8_t key[TP_PROOF_LEN])
{
	memset(key, 0, TP_PROOF_LEN);
	if (!ctl)
		return 0;
	return SSL_export_keying_material(ctl, key, TP_PROOF_LEN,
					  JOIN_KEY_LABEL,
					  sizeof(JOIN_KEY_LABEL) - 1, token,
					  TP_TOKEN_LEN, 1) == 1 ? 0 : -EPROTO;
}

int tp_join_proof(const uint8_t key[TP_PROOF_LEN], SSL *ssl, uint32_t kind,
		  uint32_t idx, uint8_t proof[TP_PROOF_LEN])
{
	uint8_t msg[TP_PROOF_LEN + 8];
	unsigned int len = 0;
	int ret = 0;

	memset(proof, 0, TP_PROOF_LEN);
	if (!ssl)
		return 0;
	if (SSL_export_keying_material(ssl, msg, TP_PROOF_LEN,
				       JOIN_STREAM_LABEL,
				       sizeof(JOIN_STREAM_LABEL) - 1, NULL, 0,
				       0) != 1)
		ret = -EPROTO;
	ut_put_le32(msg + TP_PROOF_LEN, kind);
	ut_put_le32(msg + TP_PROOF_LEN + 4, idx);
	if (ret == 0 && (!HMAC(EVP_sha256(), key, TP_PROOF_LEN, msg,
			       sizeof(msg), proof, &len) ||
			 len != TP_PROOF_LEN))
		ret = -EPROTO;
	OPENSSL_cleanse(msg, sizeof(msg));
	return ret;
}

static int expect_msg(struct tp_stream *st, uint32_t type, void *buf,
		      size_t len)
{
	struct tp_msg m;
	struct iovec v = { buf, len };
	int ret;

	ret = tp_recv_hdr(st, &m);
	if (ret < 0)
		return ret;
	if (m.type != type || m.len != len)
		return tp_stream_seterr(st, -EPROTO,
					"unexpected message 0x%x (%llu bytes) during session setup",
					m.type, (unsigned long long)m.len);
	return tp_recv_payload(st, &v, 1);
}

static void describe(struct tp_session *s)
{
	SSL *ssl = s->ctl->ssl;
	char peer[128] = "?";
	X509 *pc;

	if (!ssl) {
		snprintf(s->desc, sizeof(s->desc),
			 "INSECURE plain TCP (no encryption, no authentication), 1 control + %u bulk + 1 urgent streams",
			 s->nbulk);
		return;
	}
	pc = SSL_get0_peer_certificate(ssl);
	if (pc)
		X509_NAME_get_text_by_NID(X509_get_subject_name(pc),
					  NID_commonName, peer, sizeof(peer));
	snprintf(s->desc, sizeof(s->desc),
		 "%s %s, %s, peer '%s', %s, 1 control + %u bulk + 1 urgent streams",
		 SSL_get_version(ssl), SSL_get_cipher_name(ssl),
		 s->tls->sec == TP_SEC_PSK ? "pre-shared key" :
					     "mutual certificates",
		 pc ? peer : "(psk)", s->ktls, s->nbulk);
}

/* ---- server side ---- */

static int accept_conn(struct tp_listener *l, uint64_t deadline,
		       int *fdp, struct ut_err *err)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
	int ms = -1, ret;

	if (!sqe)
		return ut_err_set(err, -EBUSY, "listener ring busy");
	if (deadline) {
		uint64_t now = ut_now_ns();

		ms = now >= deadline ? 0 : (deadline - now) / 1000000;
	}
	io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, 1);
	ret = tp_ring_wait_one(&l->ring, ms);
	if (ret == -ETIMEDOUT)
		return ut_err_set(err, ret, "no complete session within %d ms",
				  l->cfg.accept_timeout_ms);
	if (ret < 0)
		return ut_err_set(err, ret, "accept: %s", strerror(-ret));
	*fdp = ret;
	return 0;
}

/* Wraps an accepted connection in a stream and runs the TLS handshake. */
static int server_handshake(struct tp_listener *l, int fd,
			    enum tp_stream_kind kind, struct tp_stream **out,
			    struct ut_err *err)
{
	struct tp_stream *st;
	int ret;

	ret = tp_stream_create(fd, kind, 0, &l->cfg, &st);
	if (ret < 0) {
		close(fd);
		return ut_err_set(err, ret, "stream setup failed");
	}
	if (l->tls->sec != TP_SEC_INSECURE) {
		ret = tp_tls_handshake(st, l->tls, NULL);
		if (ret < 0) {
			stream_err(err, st, ret);
			tp_stream_destroy(st, false);
			return ret;
		}
	}
	*out = st;
	return 0;
}

static int server_hello(struct tp_session *s, struct ut_err *err)
{
	uint8_t hello[HELLO_LEN], welcome[WELCOME_LEN];
	struct ut_err why;
	uint32_t nbulk;
	int ret;

	ret = expect_msg(s->ctl, TP_TYPE_HELLO, hello, sizeof(hello));
	if (ret < 0)
		return stream_err(err, s->ctl, ret);
	ret = tp_hello_decode(hello, sizeof(hello), &nbulk, &why);
	if (ret < 0)
		return ut_err_set(err, ret, "control stream: %s", why.msg);
	s->nbulk = nbulk;
	if (RAND_bytes(s->token, sizeof(s->token)) != 1)
		return ut_err_set(err, -EIO, "no randomness for the token");
	tp_welcome_encode(welcome, s->nbulk, s->token);
	if (tp_join_key(s->ctl->ssl, s->token, s->join_key) < 0)
		return ut_err_set(err, -EPROTO,
				  "control stream: TLS exporter failed");
	ret = tp_send_internal(s->ctl, TP_TYPE_WELCOME, welcome,
			       sizeof(welcome));
	return ret < 0 ? stream_err(err, s->ctl, ret) : 0;
}

/* Reads a JOIN. Returns 1 with it in @j, 0 for a stranger (not a JOIN,
 * another token, a proof for another connection; reason in @why). A JOIN
 * that passes both checks but names no stream of the session comes from
 * our peer: -EPROTO with the reason in @err. */
static int read_join(struct tp_session *s, struct tp_stream *st,
		     struct tp_join_msg *j, struct ut_err *why,
		     struct ut_err *err)
{
	uint8_t join[JOIN_LEN], proof[TP_PROOF_LEN];
	struct ut_err bad;
	int ret, dec;

	ret = expect_msg(st, TP_TYPE_JOIN, join, sizeof(join));
	if (ret < 0) {
		stream_err(why, st, ret);
		return 0;
	}
	dec = tp_join_decode(join, sizeof(join), s->nbulk, j, &bad);
	if (dec == -EPROTO) {
		ut_err_set(why, dec, "%s", bad.msg);
		return 0;
	}
	if (CRYPTO_memcmp(j->token, s->token, TP_TOKEN_LEN) != 0) {
		ut_err_set(why, -EACCES, "a foreign session token");
		return 0;
	}
	if (tp_join_proof(s->join_key, st->ssl, j->kind, j->index,
			  proof) < 0) {
		ut_err_set(why, -EPROTO, "TLS exporter failed");
		return 0;
	}
	if (st->ssl && CRYPTO_memcmp(j->proof, proof, TP_PROOF_LEN) != 0) {
		ut_err_set(why, -EACCES,
			   "a join proof not bound to this session's control connection (replayed or forged)");
		return 0;
	}
	if (dec < 0)
		return ut_err_set(err, -EPROTO, "bad stream join: %s", bad.msg);
	return 1;
}

/* One connection of the join phase. Returns 1 when its stream joined the
 * session, 0 when it was refused (a stranger: failed handshake, not a
 * JOIN, another token; logged, reason in @why), -errno when the session
 * cannot complete. Strangers do not abort the setup, so that a port scan
 * cannot break a migration. */
static int join_one(struct tp_listener *l, struct tp_session *s,
		    uint64_t deadline, struct ut_err *why, struct ut_err *err)
{
	struct tp_stream *st = NULL, **slot;
	struct tp_join_msg j;
	int fd = -1, ret;

	ret = accept_conn(l, deadline, &fd, err);
	if (ret < 0)
		return ret;
	ret = server_handshake(l, fd, TP_STREAM_BULK, &st, why);
	ret = ret < 0 ? 0 : read_join(s, st, &j, why, err);
	if (ret == 0) {
		pr_warn("refused a connection while joining streams: %s",
			why->msg);
		tp_stream_destroy(st, false);
		return 0;
	}
	if (ret < 0) {
		tp_stream_destroy(st, false);
		return ret;
	}
	slot = j.kind == TP_STREAM_URGENT ? &s->urg : &s->bulk[j.index];
	st->kind = j.kind;
	st->index = j.index;
	ret = !*slot ? tp_send_internal(st, TP_TYPE_JOINED, NULL, 0) :
		       ut_err_set(err, -EPROTO,
				  "a second join of %s stream %u",
				  kind_name(j.kind), j.index);
	if (!*slot && ret < 0)
		stream_err(err, st, ret);
	if (ret < 0) {
		tp_stream_destroy(st, false);
		return ret;
	}
	*slot = st;
	return 1;
}

static int join_all(struct tp_listener *l, struct tp_session *s,
		    uint64_t deadline, struct ut_err *err)
{
	struct ut_err why = { "" };
	unsigned int joined = 0;
	int ret = 0;

	while (ret >= 0 && joined < s->nbulk + 1) {
		ret = join_one(l, s, deadline, &why, err);
		if (ret > 0)
			joined++;
	}
	if (ret == -ETIMEDOUT && why.msg[0] && err) {
		size_t n = strlen(err->msg);

		snprintf(err->msg + n, sizeof(err->msg) - n,
			 "; refused a connection: %s", why.msg);
	}
	return ret < 0 ? ret : 0;
}

void tp_listener_set_accept_timeout(struct tp_listener *l, int timeout_ms)
{
	l->cfg.accept_timeout_ms = timeout_ms;
}

int tp_session_accept(struct tp_listener *l, struct tp_session **out,
		      struct ut_err *err)
{
	uint64_t deadline = 0;
	struct tp_session *s;
	int fd = -1, ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ut_err_set(err, -ENOMEM, "out of memory");
	s->tls = tp_tls_get(l->tls);
	if (l->cfg.accept_timeout_ms > 0)
		deadline = ut_now_ns() +
			   (uint64_t)l->cfg.accept_timeout_ms * 1000000;
	/* The first connection must be our client: its failure is the
	 * error this call reports. */
	ret = accept_conn(l, deadline, &fd, err);
	if (ret == 0)
		ret = server_handshake(l, fd, TP_STREAM_CONTROL, &s->ctl, err);
	if (ret == 0)
		ret = server_hello(s, err);
	if (ret == 0)
		ret = join_all(l, s, deadline, err);
	if (ret < 0)
		goto destroy_session;
	if (s->ctl->ssl)
		tp_ktls_probe(s->ktls, sizeof(s->ktls));
	describe(s);
	pr_info("accepted session: %s", s->desc);
	*out = s;
	return 0;

destroy_session:
	tp_session_destroy(s);
	return ret;
}

/* ---- client side ---- */

static int client_stream(struct tp_session *s, const struct tp_config *cfg,
			 const struct addrinfo *ai, const char *host,
			 enum tp_stream_kind kind, unsigned int idx,
			 struct tp_stream **out, struct ut_err *err)
{
	struct io_uring_sqe *sqe;
	struct tp_stream *st;
	int fd, ret;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ut_err_set(err, -errno, "socket: %s", strerror(errno));
	ret = tp_stream_create(fd, kind, idx, cfg, &st);
	if (ret < 0) {
		close(fd);
		return ut_err_set(err, ret, "stream setup failed");
	}
	sqe = io_uring_get_sqe(&st->ring);
	ret = -EBUSY;
	if (sqe) {
		io_uring_prep_connect(sqe, fd, ai->ai_addr, ai->ai_addrlen);
		io_uring_sqe_set_data64(sqe, 1);
		ret = tp_ring_wait_one(&st->ring, st->timeout_ms);
	}
	if (ret < 0) {
		ut_err_set(err, ret, "%s stream: cannot connect to %s: %s",
			   kind_name(kind), host,
			   ret == -ETIMEDOUT ? "timeout" : strerror(-ret));
		goto destroy_stream;
	}
	if (s->tls->sec != TP_SEC_INSECURE) {
		ret = tp_tls_handshake(st, s->tls, host);
		if (ret < 0) {
			stream_err(err, st, ret);
			goto destroy_stream;
		}
	}
	*out = st;
	return 0;

destroy_stream:
	tp_stream_destroy(st, false);
	return ret;
}

static int client_hello(struct tp_session *s, struct ut_err *err)
{
	uint8_t hello[HELLO_LEN], welcome[WELCOME_LEN];
	struct ut_err why;
	int ret;

	tp_hello_encode(hello, s->nbulk);
	ret = tp_send_internal(s->ctl, TP_TYPE_HELLO, hello, sizeof(hello));
	if (ret == 0)
		ret = expect_msg(s->ctl, TP_TYPE_WELCOME, welcome,
				 sizeof(welcome));
	if (ret == -ESHUTDOWN || (ret == -ECONNRESET && !s->ctl->ssl))
		return ut_err_set(err, -ECONNRESET,
				  "control stream: peer closed the connection during session setup (does it require TLS?)");
	if (ret < 0)
		return stream_err(err, s->ctl, ret);
	ret = tp_welcome_decode(welcome, sizeof(welcome), s->nbulk, s->token,
				&why);
	if (ret < 0)
		return ut_err_set(err, ret, "control stream: %s", why.msg);
	if (tp_join_key(s->ctl->ssl, s->token, s->join_key) < 0)
		return ut_err_set(err, -EPROTO,
				  "control stream: TLS exporter failed");
	return 0;
}

static int client_join(struct tp_session *s, const struct tp_config *cfg,
		       const struct addrinfo *ai, const char *host,
		       enum tp_stream_kind kind, unsigned int idx,
		       struct tp_stream **out, struct ut_err *err)
{
	struct tp_join_msg j = { .kind = kind, .index = idx };
	uint8_t join[JOIN_LEN];
	int ret;

	ret = client_stream(s, cfg, ai, host, kind, idx, out, err);
	if (ret < 0)
		return ret;
	memcpy(j.token, s->token, TP_TOKEN_LEN);
	if (tp_join_proof(s->join_key, (*out)->ssl, kind, idx, j.proof) < 0)
		return ut_err_set(err, -EPROTO, "%s stream: TLS exporter failed",
				  kind_name(kind));
	tp_join_encode(join, &j);
	ret = tp_send_internal(*out, TP_TYPE_JOIN, join, sizeof(join));
	if (ret == 0)
		ret = expect_msg(*out, TP_TYPE_JOINED, NULL, 0);
	return ret < 0 ? stream_err(err, *out, ret) : 0;
}

static int client_streams(struct tp_session *s, const struct tp_config *cfg,
			  const struct addrinfo *ai, const char *host,
			  struct ut_err *err)
{
	int ret = client_hello(s, err);

	for (unsigned int i = 0; ret == 0 && i < s->nbulk; i++)
		ret = client_join(s, cfg, ai, host, TP_STREAM_BULK, i,
				  &s->bulk[i], err);
	if (ret == 0)
		ret = client_join(s, cfg, ai, host, TP_STREAM_URGENT, 0,
				  &s->urg, err);
	return ret;
}

int tp_session_connect(const struct tp_config *cfg, const char *host,
		       const char *port, struct tp_session **out,
		       struct ut_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	struct tp_session *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ut_err_set(err, -ENOMEM, "out of memory");
	s->nbulk = cfg->nbulk ? cfg->nbulk : 1;
	if (s->nbulk > TP_MAX_BULK) {
		ret = ut_err_set(err, -EINVAL, "at most %d bulk streams",
				 TP_MAX_BULK);
		goto destroy_session;
	}
	ret = tp_tls_create(cfg, false, &s->tls, err);
	if (ret < 0)
		goto destroy_session;
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret) {
		ret = ut_err_set(err, -EHOSTUNREACH, "cannot resolve %s:%s: %s",
				 host, port, gai_strerror(ret));
		res = NULL;
		goto destroy_session;
	}
	ret = -EHOSTUNREACH;
	for (ai = res; ai && ret < 0; ai = ret < 0 ? ai->ai_next : ai)
		ret = client_stream(s, cfg, ai, host, TP_STREAM_CONTROL, 0,
				    &s->ctl, err);
	if (ret == 0)
		ret = client_streams(s, cfg, ai, host, err);
	if (ret < 0)
		goto destroy_session;
	freeaddrinfo(res);
	if (s->ctl->ssl)
		tp_ktls_probe(s->ktls, sizeof(s->ktls));
	describe(s);
	pr_info("connected session: %s", s->desc);
	*out = s;
	return 0;

destroy_session:
	if (res)
		freeaddrinfo(res);
	tp_session_destroy(s);
	return ret;
}

void tp_session_destroy(struct tp_session *s)
{
	if (!s)
		return;
	tp_stream_destroy(s->urg, true);
	for (unsigned int i = 0; i < TP_MAX_BULK; i++)
		tp_stream_destroy(s->bulk[i], true);
	tp_stream_destroy(s->ctl, true);
	tp_tls_put(s->tls);
	OPENSSL_cleanse(s->join_key, sizeof(s->join_key));
	free(s);
}

unsigned int tp_session_nbulk(const struct tp_session *s)
{
	return s->nbulk;
}

struct tp_stream *tp_session_control(struct tp_session *s)
{
	return s->ctl;
}

struct tp_stream *tp_session_bulk(struct tp_session *s, unsigned int i)
{
	return i < s->nbulk ? s->bulk[i] : NULL;
}

struct tp_stream *tp_session_urgent(struct tp_session *s)
{
	return s->urg;
}

/* Marked first, so that a call after this one fails at once even where
 * the kernel would not say so yet (a TLS send is only submitted). */
static void shut_stream(struct tp_stream *st)
{
	atomic_store(&st->shut, true);
	shutdown(tp_stream_fd(st), SHUT_RDWR);
}

void tp_session_shutdown(struct tp_session *s, unsigned int which)
{
	/* shutdown(2), not close: the fd stays the stream's, and a read
	 * or write blocked on it (poll or io_uring) completes at once. */
	if ((which & TP_SHUT_CONTROL) && s->ctl)
		shut_stream(s->ctl);
	if ((which & TP_SHUT_URGENT) && s->urg)
		shut_stream(s->urg);
	for (unsigned int i = 0; (which & TP_SHUT_BULK) && i < s->nbulk; i++)
		shut_stream(s->bulk[i]);
}

const char *tp_session_describe(const struct tp_session *s)
{
	return s->desc;
}

/* Streams in service order: urgent, control, then bulk from next_bulk. */
static unsigned int service_order(struct tp_session *s,
				  struct tp_stream **order)
{
	unsigned int n = 0;

	order[n++] = s->urg;
	order[n++] = s->ctl;
	for (unsigned int i = 0; i < s->nbulk; i++)
		order[n++] = s->bulk[(s->next_bulk + i) % s->nbulk];
	return n;
}

static void picked(struct tp_session *s, struct tp_stream *st,
		   struct tp_stream **ready)
{
	if (st->kind == TP_STREAM_BULK)
		s->next_bulk = (st->index + 1) % s->nbulk;
	*ready = st;
}

int tp_session_wait(struct tp_session *s, int timeout_ms,
		    struct tp_stream **ready)
{
	struct tp_stream *order[TP_MAX_BULK + 2];
	struct pollfd pfd[TP_MAX_BULK + 2];
	unsigned int n = service_order(s, order);
	int ret;

	for (unsigned int i = 0; i < n; i++) {
		if (tp_stream_pending(order[i])) {
			picked(s, order[i], ready);
			return 0;
		}
		pfd[i] = (struct pollfd){ .fd = order[i]->fd, .events = POLLIN };
	}
	do {
		ret = poll(pfd, n, timeout_ms < 0 ? -1 : timeout_ms);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIMEDOUT;
	for (unsigned int i = 0; i < n; i++) {
		if (pfd[i].revents) {
			picked(s, order[i], ready);
			return 0;
		}
	}
	return -EAGAIN;
}
