/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* transport: private declarations shared by the files of this folder. */
#ifndef FERRY_TRANSPORT_INTERNAL_H
#define FERRY_TRANSPORT_INTERNAL_H

#include <liburing.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "transport/transport.h"
#include "util/le.h"

#define TP_DEFAULT_TIMEOUT_MS 10000
#define TP_DEFAULT_BUF (256 * 1024)
#define TP_DEFAULT_KEY_UPDATE (16ULL << 30)

/* Wire: every message starts with this frame header, little-endian. */
#define TP_FRAME_MAGIC UT_FERRY_MAGIC
#define TP_FRAME_LEN 16
/* Transport-internal message types (session setup). */
#define TP_TYPE_HELLO (TP_TYPE_RESERVED + 1)
#define TP_TYPE_WELCOME (TP_TYPE_RESERVED + 2)
#define TP_TYPE_JOIN (TP_TYPE_RESERVED + 3)
#define TP_TYPE_JOINED (TP_TYPE_RESERVED + 4)
/* 2: JOIN carries a proof bound to the control connection's TLS session. */
#define TP_PROTO_VERSION 2
#define TP_TOKEN_LEN 16
#define TP_PROOF_LEN 32
/* Payloads: HELLO le32 version, le32 nbulk; WELCOME the same and the
 * token; JOIN the token, le32 kind, le32 index, the proof; JOINED empty. */
#define HELLO_LEN 8
#define WELCOME_LEN (8 + TP_TOKEN_LEN)
#define JOIN_LEN (TP_TOKEN_LEN + 8 + TP_PROOF_LEN)

/* setup.c: the setup messages' one encoder and one decoder each (pure,
 * fuzzed by tests/fuzz-join.c). A decoder returns 0, or -errno with the
 * reason in @why (NULL: dropped); it reads exactly @len bytes of @buf. */
/* HELLO: @nbulk the bulk streams the client asks for. */
void tp_hello_encode(uint8_t out[HELLO_LEN], uint32_t nbulk);
/* -EPROTO: not HELLO_LEN bytes, another protocol version or a count of
 * bulk streams outside 1..TP_MAX_BULK. */
int tp_hello_decode(const uint8_t *buf, size_t len, uint32_t *nbulk,
		    struct ut_err *why);
void tp_welcome_encode(uint8_t out[WELCOME_LEN], uint32_t nbulk,
		       const uint8_t token[TP_TOKEN_LEN]);
/* -EPROTO: not WELCOME_LEN bytes, or not our version and the @nbulk we
 * asked for. */
int tp_welcome_decode(const uint8_t *buf, size_t len, uint32_t nbulk,
		      uint8_t token[TP_TOKEN_LEN], struct ut_err *why);
struct tp_join_msg {
	uint8_t token[TP_TOKEN_LEN];	/* the session's, from WELCOME */
	uint32_t kind;			/* enum tp_stream_kind */
	uint32_t index;			/* bulk stream number; urgent: 0 */
	uint8_t proof[TP_PROOF_LEN];	/* tp_join_proof() of the stream */
};
void tp_join_encode(uint8_t out[JOIN_LEN], const struct tp_join_msg *j);
/* -EPROTO: not JOIN_LEN bytes (@j untouched). -ERANGE: @j is filled but
 * names no stream of a session with @nbulk bulk streams (a kind other
 * than bulk or urgent, a bulk index >= @nbulk, an urgent index not 0);
 * the caller authenticates @j (token, proof) before trusting either
 * result. */
int tp_join_decode(const uint8_t *buf, size_t len, uint32_t nbulk,
		   struct tp_join_msg *j, struct ut_err *why);

/*
 * Join proofs. The token names the session; the proof shows that the
 * joining connection was opened by the peer of the control connection:
 *   key   = TLS exporter of the control connection ("EXPORTER-ferry-join
 *           key", context: the token), 32 bytes, known to its two ends only
 *   proof = HMAC-SHA256(key, exporter of the joining connection
 *           ("EXPORTER-ferry-join stream", no context) | le32 kind |
 *           le32 index)
 * so a token or a proof seen (or guessed) is useless on any other TLS
 * connection. Plain TCP has nothing to bind to: its proof is zeros and
 * unchecked (no authentication there anyway).
 */
/* Fills @key from the control connection @ctl (NULL: plain TCP, zeros).
 * Returns 0 or -EPROTO. */
int tp_join_key(SSL *ctl, const uint8_t token[TP_TOKEN_LEN],
		uint8_t key[TP_PROOF_LEN]);
/* Fills @proof for joining connection @ssl (NULL: plain TCP, zeros).
 * Returns 0 or -EPROTO. */
int tp_join_proof(const uint8_t key[TP_PROOF_LEN], SSL *ssl, uint32_t kind,
		  uint32_t idx, uint8_t proof[TP_PROOF_LEN]);

void tp_frame_encode(uint8_t out[TP_FRAME_LEN], uint32_t type, uint64_t len);
/* Returns 0, or -EPROTO if @in is not a frame header. */
int tp_frame_decode(const uint8_t in[TP_FRAME_LEN], uint32_t *type,
		    uint64_t *len);

/* Shared TLS state of a listener or of a connecting session, refcounted:
 * the SSL objects of every stream point into it (BIO method, PSK). */
struct tp_tls {
	atomic_int refs;
	enum tp_security sec;
	SSL_CTX *ctx;		/* NULL when insecure */
	BIO_METHOD *bio_meth;	/* our io_uring BIO */
	char peer_name[256];	/* expected peer name, "" for any */
	uint8_t psk[64];
	size_t psk_len;
	char psk_identity[128];
	bool server;
};

int tp_tls_create(const struct tp_config *cfg, bool server,
		  struct tp_tls **out, struct ut_err *err);
struct tp_tls *tp_tls_get(struct tp_tls *t);
/* Drops a reference; frees at zero; accepts NULL. */
void tp_tls_put(struct tp_tls *t);

/* ---- record.c: TLS 1.3 record protection after the handshake ---- */

#define TP_REC_HDR 5		/* type, legacy version 3.3, be16 length */
#define TP_REC_TAG 16		/* AEAD tag of every TLS 1.3 suite */
#define TP_REC_IV_LEN 12
#define TP_REC_MAX_PLAIN 16384	/* content bytes per record (2^14) */
/* A record's body on the wire: content, inner type, padding, tag; the
 * inner plaintext (all but the tag) is at most 2^14 + 1 bytes. */
#define TP_REC_MAX_BODY (TP_REC_MAX_PLAIN + 1 + TP_REC_TAG)
/* The largest record this side seals, header included. */
#define TP_REC_MAX_SEALED (TP_REC_HDR + TP_REC_MAX_PLAIN + 1 + TP_REC_TAG)
/* Record (outer) and inner content types. */
#define TP_REC_ALERT 21
#define TP_REC_HANDSHAKE 22
#define TP_REC_APPDATA 23

/* One direction's traffic key: the current secret, the derived IV, the
 * keyed AEAD context and the next record's sequence number. */
struct tp_rec_key {
	EVP_CIPHER_CTX *ctx;
	EVP_CIPHER *cipher;
	const char *md;		/* HKDF hash name */
	size_t key_len;
	uint8_t secret[48];	/* current traffic secret */
	size_t secret_len;
	uint8_t iv[TP_REC_IV_LEN];
	uint64_t seq;		/* of the next record sealed or opened */
	bool enc;		/* sealing (true) or opening */
};

/* Keys @k from a traffic secret of cipher suite @suite (0x1301..0x1303).
 * Returns 0, -EPROTO (unknown suite, OpenSSL failure) or -ENOMEM; call
 * tp_rec_key_fini() either way. */
int tp_rec_key_init(struct tp_rec_key *k, uint16_t suite,
		    const uint8_t *secret, size_t secret_len, bool enc);
/* Frees and wipes @k (zeroed or initialised). */
void tp_rec_key_fini(struct tp_rec_key *k);
/* Moves @k to the next traffic secret (KeyUpdate). 0 or -EPROTO. */
int tp_rec_key_update(struct tp_rec_key *k);
/* Seals one record of inner type @type whose content is the concatenation
 * of @iov (at most TP_REC_MAX_PLAIN bytes) into @out, which has room for
 * TP_REC_MAX_SEALED bytes: the AEAD reads @iov and writes @out, nothing
 * else touches the bytes. Returns the record's length or -errno. */
ssize_t tp_rec_seal(struct tp_rec_key *k, uint8_t type,
		    const struct iovec *iov, int iovcnt, uint8_t *out);
/* Opening one record with sequence number k->seq: start with its header,
 * decrypt its body in parts (into any memory, @out may equal @in), end
 * with its tag: 0, or -EBADMSG when the record is not authentic (what the
 * parts produced must then be forgotten). The caller advances k->seq once
 * it is done with the record; a record may be opened again meanwhile. */
int tp_rec_open_start(struct tp_rec_key *k, const uint8_t hdr[TP_REC_HDR]);
int tp_rec_open_part(struct tp_rec_key *k, uint8_t *out, const uint8_t *in,
		     size_t len);
int tp_rec_open_end(struct tp_rec_key *k, const uint8_t tag[TP_REC_TAG]);

struct tp_stream;

/* How a stream's bytes meet the wire: TLS in user space (wire-tls.c) or
 * plain TCP (wire-plain.c). */
struct tp_wire_ops {
	/* Sends one frame (header + payload iovec of @len bytes); with
	 * TP_MORE it may stay staged. 0 or -errno with st->err set. */
	int (*send_frame)(struct tp_stream *st, const uint8_t *hdr,
			  const struct iovec *iov, int iovcnt, uint64_t len,
			  unsigned int flags);
	/* Reads exactly all bytes of @iov (@iov is modified): 0, -ESHUTDOWN
	 * on a clean end before the first byte, -errno. */
	int (*readv)(struct tp_stream *st, struct iovec *iov, int iovcnt);
	/* Writes bytes as they are, no frame (tests forge frames). */
	int (*write_raw)(struct tp_stream *st, const void *p, size_t len);
	/* True when received bytes wait in user space. */
	bool (*pending)(const struct tp_stream *st);
	/* Says goodbye (close_notify) and flushes, best effort. */
	void (*close)(struct tp_stream *st);
};

extern const struct tp_wire_ops tp_wire_plain;

struct tp_stream {
	const struct tp_wire_ops *ops;
	int fd;			/* connected TCP socket, -1 when none */
	enum tp_stream_kind kind;
	unsigned int index;	/* bulk stream number */
	struct io_uring ring;	/* drives every socket I/O of this stream */
	bool ring_ok;
	bool buf_registered;	/* rxbuf is registered buffer 0 */
	int timeout_ms;		/* < 0: wait forever */
	uint64_t spin_ns;	/* busy-poll receives this long first */
	SSL *ssl;		/* NULL for plain TCP */
	bool hs_done;		/* TLS handshake completed */
	struct tp_tls *tls;	/* reference held while ssl lives */
	/* Outgoing bytes (plain: staged frames; TLS: sealed records) go to
	 * txbuf, which is txb[tx_cur]; while io_uring sends one buffer
	 * (tx_busy), the other fills: sealing overlaps sending. */
	uint8_t *txbuf;
	size_t tx_len, tx_cap;
	uint8_t *txb[2];
	unsigned int tx_cur;
	bool tx_busy;		/* txb[!tx_cur] is being sent */
	size_t tx_busy_len;	/* its length */
	uint8_t *rxbuf;		/* received, not yet consumed bytes */
	size_t rx_off, rx_len, rx_cap;
	/* TLS after the handshake (record.c): our own record layer. */
	bool rec_on;
	struct tp_rec_key rec_tx, rec_rx;
	uint16_t suite;		/* negotiated cipher suite */
	uint8_t secret_tx[48], secret_rx[48]; /* from the key log, until used */
	size_t secret_len;
	bool ku_due;		/* peer asked for a KeyUpdate of our keys */
	uint8_t *pt;		/* a record's plaintext opened here (small reads) */
	size_t pt_off, pt_len;
	atomic_bool shut;	/* tp_session_shutdown() named it */
	bool eof;		/* TCP FIN seen */
	bool broken;		/* an I/O or TLS error: no graceful close */
	bool got_bytes;		/* any byte ever received */
	uint8_t first_byte;	/* first byte received (TLS sniffing) */
	int io_err;		/* -errno of the raw layer for the BIO */
	char psk_bad_identity[64]; /* server: a PSK identity we do not know */
	bool in_msg;		/* a message header was read */
	uint64_t rx_left;	/* payload bytes of it still unread */
	uint64_t key_update_bytes; /* threshold */
	uint64_t since_update;	/* bytes sent with the current key */
	struct tp_stream_stats stats;
	struct ut_err err;	/* the last error's reason */
};

/* stream.c */
int tp_stream_create(int fd, enum tp_stream_kind kind, unsigned int index,
		     const struct tp_config *cfg, struct tp_stream **out);
void tp_stream_destroy(struct tp_stream *st, bool graceful);
int tp_stream_seterr(struct tp_stream *st, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Writes raw bytes into the stream (through TLS when on): tests use it to
 * forge partial frames. */
int tp_stream_write_raw(struct tp_stream *st, const void *buf, size_t len,
			bool flush);

/* The listening socket (tests poll it to order connections). */
int tp_listener_fd(const struct tp_listener *l);
/* Sends a transport-internal message (type >= TP_TYPE_RESERVED). */
int tp_send_internal(struct tp_stream *st, uint32_t type, const void *buf,
		     size_t len);

/* ring.c: the raw byte layer, one operation in flight at a time (a send
 * started by tp_raw_tx_kick() is waited for before any other). */
int tp_ring_setup(struct tp_stream *st);
/* Starts sending st->txbuf (waiting for the send in flight first) and
 * switches st->txbuf to the other buffer, empty. Same returns. */
int tp_raw_tx_kick(struct tp_stream *st);
/* Waits for the send tp_raw_tx_kick() started, if any. Same returns. */
int tp_raw_tx_wait(struct tp_stream *st);
/* Cancels that send, if any, and returns once the kernel is done with its
 * buffer (stream teardown). */
void tp_raw_tx_cancel(struct tp_stream *st);
/* Sends all @len bytes of @buf. Returns 0 or -errno with st->err set. */
int tp_raw_send(struct tp_stream *st, const void *buf, size_t len);
/* Sends all bytes of @iov (modified). Same returns. */
int tp_raw_sendv(struct tp_stream *st, struct iovec *iov, int iovcnt);
/* Sends st->txbuf and waits until every byte is with the kernel. Same
 * returns. */
int tp_raw_flush(struct tp_stream *st);
/* Reads at least one byte into st->rxbuf (which must be empty). Returns the
 * count, 0 at EOF, or -errno with st->err set. */
ssize_t tp_raw_fill(struct tp_stream *st);
/* Reads at least one byte, appended to st->rxbuf after rx_len (moving the
 * unconsumed bytes to its start first when fewer than @room bytes, or
 * than half the buffer, are free behind them). Returns the count, 0 at
 * EOF, -errno with st->err. */
ssize_t tp_raw_append(struct tp_stream *st, size_t room);
/* Reads exactly all bytes of @iov (modified) straight from the socket.
 * Returns 0, -ECONNRESET at EOF, or -errno, with st->err set. */
int tp_raw_recvv(struct tp_stream *st, struct iovec *iov, int iovcnt);
/* Consumes @n bytes from the front of an iovec array (entries emptied
 * are skipped). */
void tp_iov_advance(struct iovec **iov, int *cnt, size_t n);
/* Copies up to @n bytes of @src into the front of the iovec array and
 * consumes them; returns the count (less when the array ends). */
size_t tp_iov_copy_in(struct iovec **iov, int *cnt, const uint8_t *src,
		      size_t n);
/* Waits for one operation with the stream's timeout; see ring.c. */
int tp_ring_wait_one(struct io_uring *ring, int timeout_ms);

/* wire-tls.c */
/* Creates st->ssl on st->fd and runs the handshake; on success the stream
 * switches to the TLS wire. Returns 0 or -errno with st->err set. */
int tp_tls_handshake(struct tp_stream *st, struct tp_tls *t,
		     const char *connect_host);
/* The fuzzer: keys @st's record layer directly, as the end of a
 * handshake on @t with cipher suite @suite and these traffic secrets of
 * @len bytes would (no OpenSSL object). Returns 0 or -errno. */
int tp_tls_attach_keys(struct tp_stream *st, struct tp_tls *t,
		       uint16_t suite, const uint8_t *secret_tx,
		       const uint8_t *secret_rx, size_t len);
/* Turns a failed SSL call into -errno and a reason in st->err. */
int tp_tls_error(struct tp_stream *st, int sslret, const char *what);
/* Probes kernel TLS (on a throwaway socket), logs the result (debug level
 * when absent) and describes it in @desc. */
void tp_ktls_probe(char *desc, size_t desclen);

#endif /* FERRY_TRANSPORT_INTERNAL_H */
