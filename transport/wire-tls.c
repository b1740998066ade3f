// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * TLS 1.3: the handshake through OpenSSL 3 on a custom BIO, the records
 * after it through our own record layer (record.c).
 *
 * The BIO never returns "retry": a write that fills the staging buffer
 * sends it through the stream's io_uring and waits (bounded by the stream
 * timeout); a read on an empty buffer receives through the ring. OpenSSL
 * therefore sees a blocking transport and the handshake stays a straight
 * line, while no socket is ever read or written outside io_uring.
 *
 * The hand-over: the key log callback gives us both application traffic
 * secrets during the handshake; when SSL_connect / SSL_accept returns,
 * neither side has sent a record under them (no session tickets, no early
 * data) and OpenSSL holds no received byte beyond the handshake (no
 * read-ahead; what the BIO received past it waits in rxbuf), so both of
 * our directions start at sequence number 0, where OpenSSL's would.
 * Sending: records are sealed from the caller's pages straight into
 * txbuf, and a full txbuf is sent while the other one fills. Receiving:
 * whole records are gathered in rxbuf and opened straight into the
 * caller's pieces when the request covers them (the call returns only
 * after their tags are checked), through st->pt otherwise. Alerts,
 * KeyUpdate (both ways, answered when requested) and close_notify are
 * ours too; OpenSSL's reasons and alert texts are reused for errors.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* ---- the io_uring BIO ---- */

static int bio_write(BIO *b, const char *data, int len)
{
	struct tp_stream *st = BIO_get_data(b);
	int done = 0, ret;
	size_t n;

	BIO_clear_retry_flags(b);
	/* After the hand-over OpenSSL's records would reuse our nonces: none
	 * leaves (nothing calls into OpenSSL's record layer by then). */
	if (st->rec_on)
		return len;
	while (done < len) {
		if (st->tx_len == st->tx_cap) {
			ret = tp_raw_flush(st);
			if (ret < 0) {
				st->io_err = ret;
				return -1;
			}
		}
		n = st->tx_cap - st->tx_len;
		if (n > (size_t)(len - done))
			n = len - done;
		memcpy(st->txbuf + st->tx_len, data + done, n);
		st->tx_len += n;
		done += n;
	}
	return len;
}

static int copy_out(struct tp_stream *st, char *out, int len)
{
	size_t n = st->rx_len - st->rx_off;

	if (n > (size_t)len)
		n = len;
	memcpy(out, st->rxbuf + st->rx_off, n);
	st->rx_off += n;
	return n;
}

static int bio_read(BIO *b, char *out, int len)
{
	struct tp_stream *st = BIO_get_data(b);
	ssize_t ret;

	BIO_clear_retry_flags(b);
	if (st->rx_off < st->rx_len)
		return copy_out(st, out, len);
	/* Never wait for the peer while our own bytes sit staged. */
	ret = tp_raw_flush(st);
	if (ret == 0 && !st->rec_on)
		ret = tp_raw_fill(st);
	if (ret > 0)
		ret = copy_out(st, out, len);
	if (ret < 0) {
		st->io_err = ret;
		return -1;
	}
	return ret;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tp_stream *st = BIO_get_data(b);
	int ret;

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		ret = tp_raw_flush(st);
		if (ret < 0)
			st->io_err = ret;
		return ret == 0;
	case BIO_CTRL_PENDING:
		return st->rx_len - st->rx_off;
	case BIO_CTRL_WPENDING:
		return st->tx_len;
	case BIO_CTRL_EOF:
		return st->eof && st->rx_off == st->rx_len;
	default:
		return 0;
	}
}

/* ---- contexts ---- */

static void keylog_cb(const SSL *ssl, const char *line);

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity,
				  unsigned int max_id, unsigned char *psk,
				  unsigned int max_psk)
{
	struct tp_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	if (strlen(t->psk_identity) + 1 > max_id || t->psk_len > max_psk)
		return 0;
	strcpy(identity, t->psk_identity);
	memcpy(psk, t->psk, t->psk_len);
	return t->psk_len;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity,
				  unsigned char *psk, unsigned int max_psk)
{
	struct tp_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct tp_stream *st = SSL_get_app_data(ssl);

	if (identity && strcmp(identity, t->psk_identity) != 0 && st) {
		/* Kept for the error: OpenSSL only says the handshake found
		 * no way to authenticate. Printable characters only. */
		snprintf(st->psk_bad_identity, sizeof(st->psk_bad_identity),
			 "%s", identity);
		for (char *p = st->psk_bad_identity; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				*p = '?';
	}
	if (!identity || strcmp(identity, t->psk_identity) != 0 ||
	    t->psk_len > max_psk)
		return 0;
	memcpy(psk, t->psk, t->psk_len);
	return t->psk_len;
}

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown OpenSSL error";
}

/* Adds every CRL of @path to the context's store and turns the check on:
 * from then on a peer certificate without a CRL of its issuer fails too
 * ("unable to get certificate CRL"), so a stale file is not silently
 * ignored. */
static int load_crl(struct tp_tls *t, const char *path, struct ut_err *err)
{
	X509_STORE *store = SSL_CTX_get_cert_store(t->ctx);
	X509_CRL *crl;
	int n = 0, ret = 0;
	FILE *f;

	f = fopen(path, "r");
	if (!f)
		return ut_err_set(err, -ENOENT, "cannot load CRL file %s: %s",
				  path, strerror(errno));
	while (ret == 0 && (crl = PEM_read_X509_CRL(f, NULL, NULL, NULL))) {
		if (X509_STORE_add_crl(store, crl) != 1)
			ret = ut_err_set(err, -EINVAL,
					 "cannot load CRL file %s: %s", path,
					 ssl_reason());
		X509_CRL_free(crl);
		n++;
	}
	fclose(f);
	if (ret == 0 && n == 0)
		ret = ut_err_set(err, -EINVAL,
				 "cannot load CRL file %s: no PEM CRL in it",
				 path);
	if (ret == 0)
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	ERR_clear_error();
	return ret;
}

static int load_mtls(struct tp_tls *t, const struct tp_config *cfg,
		     struct ut_err *err)
{
	int ret;

	bool no_cert = !t->server && !cfg->cert_file && !cfg->key_file;

	/* A client may go without a certificate (the server will refuse it
	 * by default); everything else needs all three files. */
	if (!cfg->ca_file || (!no_cert && (!cfg->cert_file || !cfg->key_file)))
		return ut_err_set(err, -EINVAL,
				  "mutual TLS needs a CA file, a certificate and a key");
	if (SSL_CTX_load_verify_locations(t->ctx, cfg->ca_file, NULL) != 1)
		return ut_err_set(err, -ENOENT, "cannot load CA file %s: %s",
				  cfg->ca_file, ssl_reason());
	if (cfg->crl_file) {
		ret = load_crl(t, cfg->crl_file, err);
		if (ret < 0)
			return ret;
	}
	SSL_CTX_set_verify(t->ctx,
			   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	/* OpenSSL picks these by role already; said here so the check does
	 * not hinge on a default: a server's certificate must allow
	 * serverAuth, a client's clientAuth (when it has an EKU at all), with
	 * a key usage that fits. */
	if (SSL_CTX_set_purpose(t->ctx, t->server ? X509_PURPOSE_SSL_CLIENT :
						    X509_PURPOSE_SSL_SERVER) != 1)
		return ut_err_set(err, -EINVAL, "cannot set the certificate purpose: %s",
				  ssl_reason());
	if (no_cert) {
		pr_debug("client without a certificate");
		return 0;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cfg->cert_file) != 1)
		return ut_err_set(err, -ENOENT, "cannot load certificate %s: %s",
				  cfg->cert_file, ssl_reason());
	if (SSL_CTX_use_PrivateKey_file(t->ctx, cfg->key_file,
					SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH)
			return ut_err_set(err, -EINVAL,
					  "key %s does not match %s",
					  cfg->key_file, cfg->cert_file);
		return ut_err_set(err, -ENOENT, "cannot load key %s: %s",
				  cfg->key_file, ssl_reason());
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return ut_err_set(err, -EINVAL, "key %s does not match %s",
				  cfg->key_file, cfg->cert_file);
	return 0;
}

static int load_psk(struct tp_tls *t, const struct tp_config *cfg,
		    struct ut_err *err)
{
	const char *id = cfg->psk_identity ? cfg->psk_identity : "ferry";

	if (cfg->crl_file)
		return ut_err_set(err, -EINVAL,
				  "a CRL needs mutual TLS, not a pre-shared key");

	if (!cfg->psk || cfg->psk_len < 16 || cfg->psk_len > sizeof(t->psk))
		return ut_err_set(err, -EINVAL,
				  "a pre-shared key must be 16 to 64 bytes");
	if (strlen(id) >= sizeof(t->psk_identity))
		return ut_err_set(err, -EINVAL, "PSK identity too long");
	memcpy(t->psk, cfg->psk, cfg->psk_len);
	t->psk_len = cfg->psk_len;
	strcpy(t->psk_identity, id);
	SSL_CTX_set_app_data(t->ctx, t);
	/* The legacy callbacks work in TLS 1.3 with a SHA-256 suite, which
	 * TLS_AES_128_GCM_SHA256 is. */
	if (t->server)
		SSL_CTX_set_psk_server_callback(t->ctx, psk_server_cb);
	else
		SSL_CTX_set_psk_client_callback(t->ctx, psk_client_cb);
	return 0;
}

static int make_ctx(struct tp_tls *t, const struct tp_config *cfg,
		    struct ut_err *err)
{
	t->ctx = SSL_CTX_new(t->server ? TLS_server_method()
				       : TLS_client_method());
	if (!t->ctx)
		return ut_err_set(err, -ENOMEM, "SSL_CTX_new: %s", ssl_reason());
	if (!SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(t->ctx, CIPHERSUITES))
		return ut_err_set(err, -EINVAL, "TLS 1.3 setup: %s",
				  ssl_reason());
	SSL_CTX_set_num_tickets(t->ctx, 0);
	/* No read-ahead: at the end of the handshake OpenSSL must hold no
	 * byte of the records our own layer opens (the BIO buffers them). */
	SSL_CTX_set_read_ahead(t->ctx, 0);
	SSL_CTX_set_keylog_callback(t->ctx, keylog_cb);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
	t->bio_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				   "ferry-io_uring");
	if (!t->bio_meth)
		return ut_err_set(err, -ENOMEM, "BIO_meth_new failed");
	BIO_meth_set_write(t->bio_meth, bio_write);
	BIO_meth_set_read(t->bio_meth, bio_read);
	BIO_meth_set_ctrl(t->bio_meth, bio_ctrl);
	if (cfg->security == TP_SEC_PSK)
		return load_psk(t, cfg, err);
	return load_mtls(t, cfg, err);
}

int tp_tls_create(const struct tp_config *cfg, bool server,
		  struct tp_tls **out, struct ut_err *err)
{
	struct tp_tls *t;
	int ret;

	t = calloc(1, sizeof(*t));
	if (!t)
		return ut_err_set(err, -ENOMEM, "out of memory");
	atomic_init(&t->refs, 1);
	t->sec = cfg->security;
	t->server = server;
	if (cfg->peer_name) {
		if (strlen(cfg->peer_name) >= sizeof(t->peer_name)) {
			ret = ut_err_set(err, -EINVAL, "peer name too long");
			goto free_tls;
		}
		strcpy(t->peer_name, cfg->peer_name);
	}
	if (t->sec == TP_SEC_INSECURE) {
		pr_warn("insecure transport: plain TCP, no encryption, no authentication");
	} else if (t->sec == TP_SEC_MTLS || t->sec == TP_SEC_PSK) {
		ret = make_ctx(t, cfg, err);
		if (ret < 0)
			goto free_tls;
	} else {
		ret = ut_err_set(err, -EINVAL, "unknown security mode %d",
				 t->sec);
		goto free_tls;
	}
	*out = t;
	return 0;

free_tls:
	tp_tls_put(t);
	ERR_clear_error();
	return ret;
}

struct tp_tls *tp_tls_get(struct tp_tls *t)
{
	atomic_fetch_add(&t->refs, 1);
	return t;
}

void tp_tls_put(struct tp_tls *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	SSL_CTX_free(t->ctx);
	BIO_meth_free(t->bio_meth);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

/* ---- the TLS wire: our record layer (record.c) ---- */

/* Leading payload pieces up to this size share the frame header's record;
 * the rest of a message goes in full records that never span messages. */
#define SMALL_PIECE 2048
#define SEAL_PIECES 64

static int ssl_error(struct tp_stream *st, int e, const char *what);

/* Fails the stream with the OpenSSL reason @reason (its text and the
 * alert mapping of ssl_error()), sending alert @alert first (-1: none). */
static int rec_fail(struct tp_stream *st, int reason, int alert,
		    const char *what);

/* Fails the stream after the raw layer failed: its reason, prefixed. */
static int rec_io_fail(struct tp_stream *st, int ret, const char *what)
{
	char saved[UT_ERR_LEN];

	st->broken = true;
	snprintf(saved, sizeof(saved), "%s", st->err.msg);
	return tp_stream_seterr(st, ret, "%s: %s", what, saved);
}

/* Seals one record into the send buffer, starting the send of a full one
 * first. */
static int seal_one(struct tp_stream *st, uint8_t type,
		    const struct iovec *iov, int iovcnt)
{
	ssize_t n;
	int ret;

	if (st->tx_cap - st->tx_len < TP_REC_MAX_SEALED) {
		ret = tp_raw_tx_kick(st);
		if (ret < 0)
			return rec_io_fail(st, ret, "TLS write");
	}
	n = tp_rec_seal(&st->rec_tx, type, iov, iovcnt,
			st->txbuf + st->tx_len);
	if (n < 0)
		return rec_fail(st, SSL_R_BAD_LENGTH, -1, "TLS write");
	st->tx_len += n;
	return 0;
}

/* Seals the concatenation of @iov as records of up to 16 KiB, each
 * gathering the pieces (or parts of them) it covers. */
static int seal_all(struct tp_stream *st, uint8_t type,
		    const struct iovec *iov, int iovcnt)
{
	struct iovec v[SEAL_PIECES];
	size_t off = 0, room, n;
	int i = 0, k, ret = 0;

	while (ret == 0 && i < iovcnt) {
		for (k = 0, room = TP_REC_MAX_PLAIN;
		     i < iovcnt && k < SEAL_PIECES && room > 0; k++) {
			n = iov[i].iov_len - off;
			n = n < room ? n : room;
			v[k] = (struct iovec){ (uint8_t *)iov[i].iov_base + off,
					       n };
			room -= n;
			off += n;
			if (off == iov[i].iov_len)
				i++, off = 0;
		}
		ret = seal_one(st, type, v, k);
	}
	return ret;
}

static int send_key_update(struct tp_stream *st)
{
	/* KeyUpdate(update_not_requested): the peer's read side follows
	 * without answering, so a one-way bulk stream never needs a write
	 * from its receiver. */
	static const uint8_t ku[] = { 24, 0, 0, 1, 0 };
	struct iovec v = { (void *)ku, sizeof(ku) };
	int ret = seal_one(st, TP_REC_HANDSHAKE, &v, 1);

	if (ret == 0 && tp_rec_key_update(&st->rec_tx) < 0)
		ret = rec_fail(st, SSL_R_BAD_KEY_UPDATE, -1, "TLS key update");
	if (ret == 0) {
		st->since_update = 0;
		st->ku_due = false;
		st->stats.key_updates++;
	}
	return ret;
}

static void send_alert(struct tp_stream *st, int level, int desc)
{
	uint8_t a[2] = { level, desc };
	struct iovec v = { a, sizeof(a) };

	if (seal_one(st, TP_REC_ALERT, &v, 1) == 0)
		tp_raw_flush(st);
}

static int rec_fail(struct tp_stream *st, int reason, int alert,
		    const char *what)
{
	char saved[UT_ERR_LEN];
	int ret;

	st->broken = true;
	ERR_clear_error();
	ERR_raise(ERR_LIB_SSL, reason);
	ret = ssl_error(st, SSL_ERROR_SSL, what);
	ERR_clear_error();
	if (alert >= 0 && ret != -ETIMEDOUT) {
		snprintf(saved, sizeof(saved), "%s", st->err.msg);
		send_alert(st, SSL3_AL_FATAL, alert);
		snprintf(st->err.msg, sizeof(st->err.msg), "%s", saved);
	}
	return ret;
}

static int tls_send_frame(struct tp_stream *st, const uint8_t *hdr,
			  const struct iovec *iov, int iovcnt, uint64_t len,
			  unsigned int flags)
{
	struct iovec v[SEAL_PIECES];
	size_t plen = TP_FRAME_LEN;
	int i = 0, n = 1, ret = 0;

	if (st->since_update >= st->key_update_bytes || st->ku_due)
		ret = send_key_update(st);
	/* The header and small leading pieces in one record. */
	v[0] = (struct iovec){ (void *)hdr, TP_FRAME_LEN };
	for (; i < iovcnt && n < SEAL_PIECES && iov[i].iov_len <= SMALL_PIECE &&
	       plen + iov[i].iov_len <= TP_REC_MAX_PLAIN; i++) {
		v[n++] = iov[i];
		plen += iov[i].iov_len;
	}
	if (ret == 0)
		ret = seal_one(st, TP_REC_APPDATA, v, n);
	if (ret == 0)
		ret = seal_all(st, TP_REC_APPDATA, iov + i, iovcnt - i);
	/* Without TP_MORE the records go to io_uring now, and the call
	 * returns without waiting: the next one seals meanwhile, and any
	 * operation of the stream waits for this send first. */
	if (ret == 0 && !(flags & TP_MORE)) {
		ret = tp_raw_tx_kick(st);
		if (ret < 0)
			ret = rec_io_fail(st, ret, "TLS write");
	}
	if (ret == 0)
		st->since_update += len + TP_FRAME_LEN;
	return ret;
}

static int tls_write_raw(struct tp_stream *st, const void *p, size_t len)
{
	struct iovec v = { (void *)p, len };

	return seal_all(st, TP_REC_APPDATA, &v, 1);
}

/* Makes the next whole record available at st->rxbuf + st->rx_off;
 * *@body: its length after the header. */
static int rec_fetch(struct tp_stream *st, size_t *body)
{
	const uint8_t *h;
	size_t avail, need = TP_REC_HDR + TP_REC_MAX_BODY;
	ssize_t ret;

	/* The legacy version is not checked (RFC 8446 5.1: ignored); the
	 * header is the AEAD's additional data, so it is authentic anyway. */
	for (;;) {
		avail = st->rx_len - st->rx_off;
		h = st->rxbuf + st->rx_off;
		if (avail >= TP_REC_HDR) {
			if (h[0] != TP_REC_APPDATA)
				return rec_fail(st, SSL_R_UNEXPECTED_RECORD,
						SSL3_AD_UNEXPECTED_MESSAGE,
						"TLS read");
			*body = (size_t)h[3] << 8 | h[4];
			if (*body > TP_REC_MAX_BODY)
				return rec_fail(st,
						SSL_R_ENCRYPTED_LENGTH_TOO_LONG,
						TLS1_AD_RECORD_OVERFLOW,
						"TLS read");
			if (*body < 1 + TP_REC_TAG)
				return rec_fail(st, SSL_R_BAD_LENGTH,
						TLS1_AD_DECODE_ERROR,
						"TLS read");
			need = TP_REC_HDR + *body;
			if (avail >= need)
				return 0;
		}
		/* Never wait for the peer while our own bytes sit staged. */
		ret = tp_raw_flush(st);
		if (ret == 0)
			ret = tp_raw_append(st, need);
		if (ret < 0)
			return rec_io_fail(st, ret, "TLS read");
		if (ret == 0) {
			st->broken = true;
			ERR_clear_error();
			if (avail)
				ERR_raise(ERR_LIB_SSL,
					  SSL_R_UNEXPECTED_EOF_WHILE_READING);
			ret = ssl_error(st, SSL_ERROR_SYSCALL, "TLS read");
			ERR_clear_error();
			return ret;
		}
	}
}

/* The fast path: a record of application data whose content @iov covers
 * entirely is opened straight into it. Returns the inner type (anything
 * but TP_REC_APPDATA means: open it again the slow way) or -errno. */
static int open_into(struct tp_stream *st, size_t clen, struct iovec *iov,
		     int iovcnt)
{
	const uint8_t *rec = st->rxbuf + st->rx_off, *in = rec + TP_REC_HDR;
	size_t n;
	uint8_t type;
	int ret;

	ret = tp_rec_open_start(&st->rec_rx, rec);
	for (int i = 0; ret == 0 && clen > 0 && i < iovcnt; i++) {
		n = iov[i].iov_len < clen ? iov[i].iov_len : clen;
		ret = tp_rec_open_part(&st->rec_rx, iov[i].iov_base, in, n);
		in += n;
		clen -= n;
	}
	if (ret == 0)
		ret = tp_rec_open_part(&st->rec_rx, &type, in++, 1);
	if (ret == 0)
		ret = tp_rec_open_end(&st->rec_rx, in);
	if (ret < 0)
		return rec_fail(st, SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC,
				SSL_AD_BAD_RECORD_MAC, "TLS read");
	return type;
}

/* The slow path: the record opened into st->pt. Returns its inner type and
 * *@clen its content length, or -errno. */
static int open_scratch(struct tp_stream *st, size_t body, size_t *clen)
{
	const uint8_t *rec = st->rxbuf + st->rx_off;
	size_t n = body - TP_REC_TAG;
	int ret;

	ret = tp_rec_open_start(&st->rec_rx, rec);
	if (ret == 0)
		ret = tp_rec_open_part(&st->rec_rx, st->pt, rec + TP_REC_HDR, n);
	if (ret == 0)
		ret = tp_rec_open_end(&st->rec_rx, rec + TP_REC_HDR + n);
	if (ret < 0)
		return rec_fail(st, SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC,
				SSL_AD_BAD_RECORD_MAC, "TLS read");
	while (n > 0 && st->pt[n - 1] == 0) /* padding */
		n--;
	if (n == 0)
		return rec_fail(st, SSL_R_UNEXPECTED_RECORD,
				SSL3_AD_UNEXPECTED_MESSAGE, "TLS read");
	*clen = n - 1;
	return st->pt[n - 1];
}

/* Post-handshake messages, each whole in this record: KeyUpdate (which
 * must end it: the next record has the new key) and, for a client, session
 * tickets, which are ignored. */
static int rec_handshake(struct tp_stream *st, size_t clen, bool *rekey)
{
	const uint8_t *m = st->pt;
	size_t len;

	while (clen > 0) {
		len = clen < 4 ? SIZE_MAX : (size_t)m[1] << 16 | m[2] << 8 | m[3];
		if (clen < 4 || clen - 4 < len)
			return rec_fail(st, SSL_R_UNEXPECTED_MESSAGE,
					SSL3_AD_UNEXPECTED_MESSAGE, "TLS read");
		if (m[0] == SSL3_MT_KEY_UPDATE) {
			if (len != 1 || m[4] > 1 || clen != 5)
				return rec_fail(st, SSL_R_BAD_KEY_UPDATE,
						TLS1_AD_DECODE_ERROR, "TLS read");
			*rekey = true;
			st->ku_due |= m[4] == SSL_KEY_UPDATE_REQUESTED;
		} else if (m[0] != SSL3_MT_NEWSESSION_TICKET ||
			   st->tls->server) {
			return rec_fail(st, SSL_R_UNEXPECTED_MESSAGE,
					SSL3_AD_UNEXPECTED_MESSAGE, "TLS read");
		}
		m += 4 + len;
		clen -= 4 + len;
	}
	return 0;
}

/* A record the fast path did not take: its content goes to st->pt (data),
 * or it is acted on (alert, KeyUpdate). Consumes it. */
static int rec_slow(struct tp_stream *st, size_t body)
{
	bool rekey = false;
	size_t clen = 0;
	int type, ret = 0;

	type = open_scratch(st, body, &clen);
	if (type < 0)
		return type;
	if (type == TP_REC_APPDATA) {
		st->pt_off = 0;
		st->pt_len = clen;
	} else if (type == TP_REC_ALERT && clen == 2 &&
		   st->pt[1] == SSL_AD_CLOSE_NOTIFY) {
		st->broken = true;
		return tp_stream_seterr(st, -ESHUTDOWN, "peer closed the stream");
	} else if (type == TP_REC_ALERT && clen == 2 &&
		   st->pt[1] == SSL_AD_USER_CANCELLED) {
		/* a warning; close_notify follows */
	} else if (type == TP_REC_ALERT && clen == 2) {
		return rec_fail(st, SSL_AD_REASON_OFFSET + st->pt[1], -1,
				"TLS read");
	} else if (type == TP_REC_HANDSHAKE) {
		ret = rec_handshake(st, clen, &rekey);
	} else {
		return rec_fail(st, SSL_R_UNEXPECTED_MESSAGE,
				SSL3_AD_UNEXPECTED_MESSAGE, "TLS read");
	}
	st->rx_off += TP_REC_HDR + body;
	st->rec_rx.seq++;
	if (ret == 0 && rekey && tp_rec_key_update(&st->rec_rx) < 0)
		ret = rec_fail(st, SSL_R_BAD_KEY_UPDATE, -1, "TLS read");
	return ret;
}

/* Fills @iov from opened records: a record whose content the request
 * covers is opened straight into the request (no copy; the call returns
 * only after its tag is checked), the others through st->pt. */
static int tls_readv(struct tp_stream *st, struct iovec *iov, int iovcnt)
{
	size_t left = 0, body, n;
	int type;

	for (int i = 0; i < iovcnt; i++)
		left += iov[i].iov_len;
	while (left > 0) {
		if (st->pt_off < st->pt_len) {
			n = tp_iov_copy_in(&iov, &iovcnt, st->pt + st->pt_off,
					   st->pt_len - st->pt_off);
			st->pt_off += n;
			left -= n;
			continue;
		}
		type = rec_fetch(st, &body);
		if (type < 0)
			return type;
		n = body - 1 - TP_REC_TAG;
		type = n > 0 && n <= left ? open_into(st, n, iov, iovcnt) : 0;
		if (type < 0)
			return type;
		if (type != TP_REC_APPDATA) {
			type = rec_slow(st, body);
			if (type < 0)
				return type;
			continue;
		}
		st->rx_off += TP_REC_HDR + body;
		st->rec_rx.seq++;
		tp_iov_advance(&iov, &iovcnt, n);
		left -= n;
	}
	return 0;
}

static bool tls_pending(const struct tp_stream *st)
{
	return st->rx_off < st->rx_len || st->pt_off < st->pt_len;
}

static void tls_close(struct tp_stream *st)
{
	send_alert(st, SSL3_AL_WARNING, SSL_AD_CLOSE_NOTIFY);
}

static const struct tp_wire_ops tls_ops = {
	.send_frame = tls_send_frame,
	.readv = tls_readv,
	.write_raw = tls_write_raw,
	.pending = tls_pending,
	.close = tls_close,
};

/* Key log lines of the handshake carry the application traffic secrets:
 * "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>", hex. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	struct tp_stream *st = SSL_get_app_data(ssl);
	const char *sp;
	bool client;
	uint8_t *dst;
	size_t n = 0;

	if (!st)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		client = true;
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		client = false;
	else
		return;
	sp = strchr(line + 24, ' ');
	if (!sp)
		return;
	dst = client == st->tls->server ? st->secret_rx : st->secret_tx;
	for (sp++; n < sizeof(st->secret_tx) && isxdigit((unsigned char)sp[0]) &&
		   isxdigit((unsigned char)sp[1]); sp += 2)
		dst[n++] = OPENSSL_hexchar2int(sp[0]) << 4 |
			   OPENSSL_hexchar2int(sp[1]);
	st->secret_len = n;
}

/* Keys both directions from st->secret_* and switches to our wire. */
static int rec_start_layer(struct tp_stream *st)
{
	int ret;

	st->pt = malloc(TP_REC_MAX_BODY);
	if (!st->pt)
		return tp_stream_seterr(st, -ENOMEM, "out of memory");
	ret = tp_rec_key_init(&st->rec_tx, st->suite, st->secret_tx,
			      st->secret_len, true);
	if (ret == 0)
		ret = tp_rec_key_init(&st->rec_rx, st->suite, st->secret_rx,
				      st->secret_len, false);
	OPENSSL_cleanse(st->secret_tx, sizeof(st->secret_tx));
	OPENSSL_cleanse(st->secret_rx, sizeof(st->secret_rx));
	if (ret < 0)
		return tp_stream_seterr(st, ret,
					"TLS hand-over failed: cannot key suite 0x%04x",
					st->suite);
	st->rec_on = true;
	st->ops = &tls_ops;
	return 0;
}

/* From the end of the handshake our record layer carries the stream. */
static int rec_takeover(struct tp_stream *st)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(st->ssl);
	int ret;

	st->suite = c ? SSL_CIPHER_get_protocol_id(c) : 0;
	/* Read-ahead is off: nothing past the handshake sits in OpenSSL;
	 * what the BIO received beyond it is in rxbuf, where we go on. */
	if (!st->secret_len || SSL_has_pending(st->ssl))
		return tp_stream_seterr(st, -EPROTO,
					"TLS hand-over failed: %s",
					st->secret_len ? "bytes left in OpenSSL" :
							 "no traffic secrets");
	ret = tp_raw_flush(st);
	return ret < 0 ? ret : rec_start_layer(st);
}

int tp_tls_attach_keys(struct tp_stream *st, struct tp_tls *t,
		       uint16_t suite, const uint8_t *secret_tx,
		       const uint8_t *secret_rx, size_t len)
{
	if (len > sizeof(st->secret_tx) || st->tls)
		return -EINVAL;
	st->tls = tp_tls_get(t);
	st->hs_done = true;
	st->suite = suite;
	memcpy(st->secret_tx, secret_tx, len);
	memcpy(st->secret_rx, secret_rx, len);
	st->secret_len = len;
	return rec_start_layer(st);
}

/* ---- handshake and errors ---- */

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1;
}

static int pin_peer_name(SSL *ssl, const char *name, bool client)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);

	if (is_ip_literal(name))
		return X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1 ? 0 : -EINVAL;
	X509_VERIFY_PARAM_set_hostflags(vp,
					X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1)
		return -EINVAL;
	if (client)
		SSL_set_tlsext_host_name(ssl, name);
	return 0;
}

int tp_tls_handshake(struct tp_stream *st, struct tp_tls *t,
		     const char *connect_host)
{
	const char *name = t->peer_name[0] ? t->peer_name : NULL;
	BIO *bio;
	int ret;

	st->ssl = SSL_new(t->ctx);
	bio = BIO_new(t->bio_meth);
	if (!st->ssl || !bio) {
		BIO_free(bio);
		return tp_stream_seterr(st, -ENOMEM, "SSL_new failed");
	}
	st->tls = tp_tls_get(t);
	SSL_set_app_data(st->ssl, st);
	BIO_set_data(bio, st);
	BIO_set_init(bio, 1);
	SSL_set_bio(st->ssl, bio, bio);
	if (!name && !t->server)
		name = connect_host;
	if (t->sec == TP_SEC_MTLS && name &&
	    pin_peer_name(st->ssl, name, !t->server) < 0)
		return tp_stream_seterr(st, -EINVAL, "bad peer name '%s'",
					name);
	ERR_clear_error();
	ret = t->server ? SSL_accept(st->ssl) : SSL_connect(st->ssl);
	if (ret != 1)
		return tp_tls_error(st, ret, "TLS handshake");
	st->hs_done = true;
	return rec_takeover(st);
}

/* What went wrong with a certificate we checked, in words. */
static const char *verify_hint(struct tp_stream *st, long v)
{
	switch (v) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return " (unknown certificate or wrong CA)";
	case X509_V_ERR_INVALID_PURPOSE:
		return st->tls->server ?
		       " (its key usage or extended key usage does not allow TLS client authentication: not a client certificate)" :
		       " (its key usage or extended key usage does not allow TLS server authentication: not a server certificate)";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return " (its validity starts in the future: check both clocks)";
	case X509_V_ERR_CERT_REVOKED:
		return " (listed in the CRL)";
	case X509_V_ERR_UNABLE_TO_GET_CRL:
		return " (the CRL file has no CRL of the peer's CA)";
	case X509_V_ERR_CRL_HAS_EXPIRED:
		return " (the CRL file is stale: fetch a new one)";
	default:
		return "";
	}
}

static int verify_error(struct tp_stream *st, long v, const char *what)
{
	const char *name = st->tls->peer_name;

	if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
	    v == X509_V_ERR_IP_ADDRESS_MISMATCH)
		return tp_stream_seterr(st, -EACCES,
					"%s failed: wrong peer name: certificate does not name the expected peer%s%s%s",
					what, name[0] ? " '" : "", name,
					name[0] ? "'" : "");
	return tp_stream_seterr(st, -EACCES,
				"%s failed: peer certificate rejected: %s%s",
				what, X509_verify_cert_error_string(v),
				verify_hint(st, v));
}

/* A refusal (mostly an alert the peer sent about us) in words; NULL for
 * other reasons. */
static const char *alert_meaning(int r)
{
	switch (r) {
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
		return "the peer refused our certificate as expired (or its CRL of our CA is stale)";
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
		return "the peer refused our certificate as revoked";
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
		return "the peer refused our certificate for its key usage or extended key usage (a client certificate on a server or the reverse?)";
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
		return "the peer refused our certificate (not yet valid, or not the name it expects)";
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
		return "the peer refused our certificate: signed by a CA it does not trust, or it has no CRL of our CA";
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
		return "the peer refused our certificate";
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return "the peer requires a certificate and we sent none";
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return "the peer refused our TLS version: Ferry speaks TLS 1.3 only";
	case SSL_R_BINDER_DOES_NOT_VERIFY:
		return "the peer's pre-shared key is not ours";
	case SSL_R_UNSUPPORTED_PROTOCOL:
		return "the peer offers only TLS versions below 1.3, which Ferry refuses";
	default:
		return NULL;
	}
}

static bool auth_reason(int r)
{
	switch (r) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
	case SSL_R_BINDER_DOES_NOT_VERIFY:
		return true;
	default:
		return false;
	}
}

static int ssl_error(struct tp_stream *st, int e, const char *what)
{
	unsigned long ec = ERR_peek_last_error();
	int r = ERR_GET_REASON(ec);
	bool hs = !st->hs_done;
	const char *hint = "", *reason, *meaning = NULL;

	if (hs && st->got_bytes && st->first_byte != 0x16 &&
	    st->first_byte != 0x15)
		return tp_stream_seterr(st, -EPROTO,
					"%s failed: peer is not speaking TLS (plaintext peer on a TLS port?)",
					what);
	if (e == SSL_ERROR_ZERO_RETURN)
		return tp_stream_seterr(st, -ESHUTDOWN, "peer closed the stream");
	if (r == SSL_R_UNEXPECTED_EOF_WHILE_READING || (!ec && st->eof))
		return tp_stream_seterr(st, -ECONNRESET,
					"%s failed: peer closed the connection %s",
					what, hs ? "during the handshake" :
						   "without TLS close_notify");
	if (hs && st->psk_bad_identity[0])
		return tp_stream_seterr(st, -EACCES,
					"%s failed: unknown pre-shared key identity '%s' (we expect '%s')",
					what, st->psk_bad_identity,
					st->tls->psk_identity);
	reason = ec ? ERR_reason_error_string(ec) : NULL;
	if (hs && st->tls->sec == TP_SEC_PSK && !st->tls->server &&
	    (r == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE ||
	     r == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER ||
	     r == SSL_R_TLSV1_ALERT_DECRYPT_ERROR))
		return tp_stream_seterr(st, -EACCES,
					"%s failed: the peer refused our pre-shared key or its identity '%s' (%s)",
					what, st->tls->psk_identity, reason);
	if (hs && st->tls->sec == TP_SEC_PSK)
		hint = " (pre-shared key or identity mismatch?)";
	/* Not only during the handshake: a TLS 1.3 client has finished its
	 * part when the server checks the client's certificate, so that
	 * alert arrives on the client's first read. */
	if (ERR_GET_LIB(ec) == ERR_LIB_SSL)
		meaning = alert_meaning(r);
	if (meaning && !hs && st->stats.rx_bytes == 0)
		what = "TLS handshake (the peer's check of our certificate)";
	if (meaning)
		return tp_stream_seterr(st, auth_reason(r) ? -EACCES : -EPROTO,
					"%s failed: %s (%s)", what, meaning,
					reason ? reason : "TLS error");
	return tp_stream_seterr(st, auth_reason(r) ? -EACCES : -EPROTO,
				"%s failed: %s%s", what,
				reason ? reason : "TLS error", hint);
}

int tp_tls_error(struct tp_stream *st, int sslret, const char *what)
{
	int e = SSL_get_error(st->ssl, sslret);
	long v = SSL_get_verify_result(st->ssl);
	char saved[UT_ERR_LEN];
	int ret;

	st->broken = true;
	if (st->io_err) {
		ret = st->io_err;
		st->io_err = 0;
		snprintf(saved, sizeof(saved), "%s", st->err.msg);
		tp_stream_seterr(st, ret, "%s: %s", what, saved);
	} else if (v != X509_V_OK && st->tls->sec == TP_SEC_MTLS) {
		ret = verify_error(st, v, what);
	} else {
		ret = ssl_error(st, e, what);
	}
	ERR_clear_error();
	/* Push out the alert OpenSSL may have queued, best effort. */
	if (st->tx_len && ret != -ETIMEDOUT) {
		snprintf(saved, sizeof(saved), "%s", st->err.msg);
		tp_raw_flush(st);
		snprintf(st->err.msg, sizeof(st->err.msg), "%s", saved);
	}
	return ret;
}

void tp_ktls_probe(char *desc, size_t desclen)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err;

	/* On an unconnected socket the TLS ULP refuses with ENOTCONN when
	 * the kernel has it and ENOENT when it does not: a probe that leaves
	 * no trace on the session's sockets. */
	err = fd < 0 ? errno :
	      setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) ? errno : 0;
	if (fd >= 0)
		close(fd);
	if (err == ENOTCONN || err == 0) {
		pr_info("kernel TLS is available, but this build keeps TLS in user space");
		snprintf(desc, desclen, "kTLS available, unused");
	} else {
		pr_debug("no kernel TLS (TCP_ULP tls: %s): TLS runs in user space over io_uring",
			 strerror(err));
		snprintf(desc, desclen, "user-space TLS, no kTLS");
	}
}
