/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * transport: Ferry's wire. A session is one control stream, N bulk streams
 * and one urgent stream between two agents, each its own TCP connection and
 * its own TLS 1.3 session (mutual certificate authentication by default,
 * TLS-PSK as an option, plain TCP only when asked for by name), joined by a
 * random token agreed on the control stream and a proof bound, through the
 * TLS exporter, to the control connection and to the joining one. All
 * socket I/O goes through an io_uring owned by each stream. OpenSSL runs
 * the handshake (on a custom BIO whose bytes that ring carries); the
 * records after it are sealed and opened by the transport's own TLS 1.3
 * record layer with the traffic secrets OpenSSL negotiated, as kernel TLS
 * would do in the kernel (transport/record.c).
 *
 * Copies of a payload byte in user space (the kernel's one copy into or
 * out of the socket comes on top, as for any socket):
 *   TLS send     0: the AEAD reads the caller's iovec and writes the
 *                ciphertext into the buffer io_uring sends (its one pass
 *                is the encryption). Two such buffers per stream: one is
 *                sent while the next is sealed.
 *   TLS receive  0 for the records a tp_recv_payload() call covers whole:
 *                opened from the buffer io_uring received into, straight
 *                into the caller's pieces. 1 for the rest (the frame
 *                header's record, records split across calls, payloads
 *                smaller than a record): opened into a 16 KiB scratch
 *                buffer and copied out. A record split across the end of
 *                the receive buffer moves its received part to its start
 *                first (at most 16 KiB per buffer fill).
 *   plain send   0: sendmsg of [header, iovec]; with TP_MORE a frame that
 *                fits the staging buffer is copied there (1).
 *   plain recv   1 for bytes the staging buffer holds already (received
 *                with an earlier header); of the rest, 0 when a payload
 *                read needs at least half the staging buffer (READV into
 *                the pieces), 1 below that (through the buffer).
 * (Before the own record layer, TLS cost 2 more copies sending: OpenSSL's
 * plaintext copy into its record buffer and ours of the sealed record into
 * the send buffer; and 1 more receiving: out of OpenSSL's read buffer.)
 *
 * End to end, a 4 KiB page of a migration (PAGES batches of 64 pages, the
 * engines' stage copies of migrate/ included; "user" is a pass of ours
 * over the bytes, "kernel" a copy the kernel makes for us):
 *   TLS source        --mem-access copy (auto's pick for 4 KiB backings):
 *                     pread into the stage (kernel), sealed into the send
 *                     buffer (user: the encryption), into the socket
 *                     (kernel): 3 copies, 1 in user space. map: 2 (no
 *                     pread: sealed from the agent's mapping).
 *   TLS destination   copy: out of the socket into the receive buffer
 *                     (kernel), opened into the stage (user: the
 *                     decryption), UFFDIO_COPY or pwrite into the VMM's
 *                     RAM (kernel): 3, 1 in user space. map (precopy):
 *                     2, opened straight into the page. Postcopy places
 *                     from the stage (UFFDIO_COPY, or a write into the
 *                     page cache and UFFDIO_CONTINUE): 3.
 *   plain source      copy: pread (kernel), sendmsg from the stage
 *                     (kernel): 2, none in user space. map: 1.
 *   plain destination copy: out of the socket (kernel), then for the
 *                     payload bytes that arrived with an earlier read
 *                     (in a busy bulk stream, most: a fill of the staging
 *                     buffer takes what is there) a copy out of it
 *                     (user), the rest straight into the stage (READV);
 *                     then UFFDIO_COPY or pwrite (kernel): 2 or 3.
 *                     map: 1 or 2.
 * The cipher's passes are the TLS paths' floor: tools/bench-transport's
 * TLS over 2 bulk streams (loopback, both ends in one process) costs
 * about 0.9 ns/byte of CPU (0.65-1.2 as the host's load varied), of which
 * the two AES-GCM passes take about 0.55 (OpenSSL 3.0's, 0.26-0.34 each
 * on one core here) and the kernel's TCP loopback with its two copies
 * nearly all of the rest (perf: libcrypto 55%, the kernel 40%, libc 2%,
 * this module under 1%). OpenSSL's calls per record (nonce, tag) add
 * about a tenth to the cipher's instructions (callgrind).
 *
 * On a stream travel messages: a 32-bit type (below TP_TYPE_RESERVED) and a
 * payload of any length given as an iovec, so a sender can pass a header
 * followed by guest page pointers without gathering them first. A receiver
 * reads the message header, then reads the payload in as many pieces as it
 * likes, straight into their destinations.
 *
 * Threads: a stream is used by one thread at a time (sending and receiving
 * on the same stream from two threads at once is not supported); different
 * streams of one session may be used from different threads concurrently.
 * Errors are 0 / -errno; the human-readable reason of the last error of a
 * stream or of a failed constructor is one line without a newline. After
 * an error other than -EINVAL, -EMSGSIZE or -EBUSY (misuse, nothing sent
 * or consumed) a stream is unusable: its bytes may stop mid-record.
 * Destroy the session.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/err.h"

#define TP_MAX_BULK 16
/* Message types at or above this value belong to the transport itself. */
#define TP_TYPE_RESERVED 0xffff0000u

enum tp_security {
	TP_SEC_MTLS = 0, /* TLS 1.3, both sides present certificates (default) */
	TP_SEC_PSK,	 /* TLS 1.3 with a pre-shared key, no certificates */
	TP_SEC_INSECURE, /* plain TCP: no encryption, no authentication */
};

struct tp_config {
	enum tp_security security;
	/* TP_SEC_MTLS: PEM files. The peer's chain must lead to ca_file. A
	 * client may leave cert_file and key_file both NULL to present no
	 * certificate; servers always require one. A peer certificate must be
	 * within its validity and, when it has an extendedKeyUsage, allow
	 * serverAuth for a server and clientAuth for a client. */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	/* TP_SEC_MTLS, optional: PEM file of the CA's certificate revocation
	 * lists. When given, every peer certificate must be covered by a
	 * valid CRL of its issuer and not be listed in it (OpenSSL's
	 * X509_V_FLAG_CRL_CHECK: the leaf certificate). */
	const char *crl_file;
	/* Expected peer name (DNS name or IP literal, matched against the
	 * peer certificate's SAN). Client default: the host it connects to.
	 * Server default: any name signed by the CA. */
	const char *peer_name;
	/* TP_SEC_PSK: the key (16..64 bytes) and an identity (default
	 * "ferry"). */
	const uint8_t *psk;
	size_t psk_len;
	const char *psk_identity;
	/* Client: number of bulk streams to open, 1..TP_MAX_BULK (default 1).
	 * The server takes the number the client asks for. */
	unsigned int nbulk;
	/* A peer silent for this long while a send, a receive or a handshake
	 * waits on it is an -ETIMEDOUT error. 0: 10000 ms; < 0: never. */
	int timeout_ms;
	/* Server: how long tp_session_accept() waits for a client, and for
	 * all of its streams. 0: forever. */
	int accept_timeout_ms;
	/* Each side updates its sending keys (TLS KeyUpdate) after this many
	 * payload bytes, to stay far below AES-GCM's record limit. 0: 16 GiB. */
	uint64_t key_update_bytes;
	/* Staging buffer per direction per stream (sending: two of them, one
	 * in flight while the other fills). 0: 256 KiB. */
	size_t buf_size;
};

enum tp_stream_kind {
	TP_STREAM_CONTROL = 0,
	TP_STREAM_BULK,
	TP_STREAM_URGENT,
};

struct tp_stream_stats {
	uint64_t tx_bytes;	/* payload + frame header bytes sent */
	uint64_t rx_bytes;	/* payload + frame header bytes received */
	uint64_t tx_msgs;
	uint64_t rx_msgs;
	uint64_t key_updates;	/* KeyUpdates this side sent */
};

struct tp_listener;
struct tp_session;
struct tp_stream;

/* ---- sessions ---------------------------------------------------------- */

/* Binds and listens on @host (NULL: all IPv6 and IPv4 addresses) and @port
 * ("0" picks a free port, see tp_listener_port()). Loads the credentials of
 * @cfg now, so a bad file is reported here. @cfg and the strings it points
 * to need only live during the call. Returns 0 and *@out, or -errno with
 * @err (may be NULL) filled. The caller owns *@out. */
int tp_listener_create(const struct tp_config *cfg, const char *host,
		       const char *port, struct tp_listener **out,
		       struct ut_err *err);
/* The bound TCP port. Any thread. */
int tp_listener_port(const struct tp_listener *l);
/* Changes how long the next tp_session_accept() waits (ms, 0: forever):
 * a postcopy recovery waits for a returning peer longer or shorter than
 * for the first one. The thread that accepts. */
void tp_listener_set_accept_timeout(struct tp_listener *l, int timeout_ms);
/* Closes the socket and frees @l; accepts NULL. Sessions already accepted
 * stay valid. */
void tp_listener_destroy(struct tp_listener *l);

/* Waits for one client session: its control stream, then all its bulk
 * streams and its urgent stream (connections that do not present the
 * session token with a valid join proof are closed and ignored). Either every stream is up and
 * authenticated, or nothing is returned. Returns 0 and *@out (the caller
 * owns it), or -errno with @err filled: -EACCES authentication failed,
 * -EPROTO not a Ferry peer or TLS failure, -ETIMEDOUT, -ECONNRESET.
 * One thread at a time per listener. */
int tp_session_accept(struct tp_listener *l, struct tp_session **out,
		      struct ut_err *err);

/* Connects to @host:@port (IPv4 or IPv6) and builds a whole session with
 * cfg->nbulk bulk streams. Same result contract as tp_session_accept(). */
int tp_session_connect(const struct tp_config *cfg, const char *host,
		       const char *port, struct tp_session **out,
		       struct ut_err *err);

/* Sends TLS close_notify on every stream (bounded by a short timeout),
 * closes them and frees @s; accepts NULL. No stream may be in use. */
void tp_session_destroy(struct tp_session *s);

/* The number of bulk streams agreed at setup. Any thread. */
unsigned int tp_session_nbulk(const struct tp_session *s);
/* The streams belong to the session; valid until tp_session_destroy().
 * tp_session_bulk() returns NULL for @i >= tp_session_nbulk(). */
struct tp_stream *tp_session_control(struct tp_session *s);
struct tp_stream *tp_session_bulk(struct tp_session *s, unsigned int i);
struct tp_stream *tp_session_urgent(struct tp_session *s);
/* For a caller that serves every stream of @s from one thread: waits until
 * a stream has bytes to read (or an error or end to report) and returns it
 * in *@ready, the urgent stream before the control stream before the bulk
 * streams (taken round-robin), so that urgent messages are serviced first.
 * Returns 0, -ETIMEDOUT after @timeout_ms (< 0: no limit), or -errno.
 * Waits for readiness with poll(2); the reads themselves stay on io_uring.
 * One thread at a time, and no stream of @s in use by another thread. */
int tp_session_wait(struct tp_session *s, int timeout_ms,
		    struct tp_stream **ready);
/* Which streams tp_session_shutdown() breaks. */
#define TP_SHUT_CONTROL	(1u << 0)
#define TP_SHUT_BULK	(1u << 1)
#define TP_SHUT_URGENT	(1u << 2)
#define TP_SHUT_ALL	(TP_SHUT_CONTROL | TP_SHUT_BULK | TP_SHUT_URGENT)
/* Breaks the streams of @s that @which names (TP_SHUT_*), both
 * directions: a thread blocked reading or writing one returns an error,
 * and every later call on it fails. The streams stay valid until
 * tp_session_destroy(). Any thread, while other threads use the streams:
 * this is how an owner stops threads blocked in them. */
void tp_session_shutdown(struct tp_session *s, unsigned int which);
/* One line describing the session: protocol, cipher, authentication, peer,
 * kernel TLS use. Valid until tp_session_destroy(). */
const char *tp_session_describe(const struct tp_session *s);

/* ---- messages ---------------------------------------------------------- */

struct tp_msg {
	uint32_t type;	/* application type, < TP_TYPE_RESERVED */
	uint64_t len;	/* payload bytes */
};

/* tp_send() flag: more messages follow soon, keep the bytes in the
 * stream's staging buffer until it fills or a send without the flag. */
#define TP_MORE 0x1u

/* Sends one message whose payload is the concatenation of @iov (@iovcnt may
 * be 0). Nothing is gathered first: TLS seals the header and the leading
 * pieces of up to 2 KiB into one record and the rest into records of
 * 16 KiB that gather the pieces they cover, straight into the send buffer
 * (no record spans two messages); plain TCP gives the iovec to sendmsg.
 * Returns once the bytes are handed to the kernel (plain TCP), or sealed
 * and their send submitted to io_uring (TLS: the call does not wait for
 * it, the stream's next operation does, so the caller seals its next
 * message while this one is sent), or with TP_MORE sealed or staged: the
 * caller may then reuse its buffers. A TLS send that fails in the kernel
 * is reported by the stream's next call; tp_stream_flush() waits for it.
 * That send belongs to the calling thread (io_uring runs the rest of it
 * as the thread's task work): a thread must not end with one pending, or
 * its last bytes may never leave; it calls tp_stream_flush() first.
 * Returns 0 or -errno
 * (-ETIMEDOUT peer not reading, -EPIPE / -ECONNRESET peer gone, -EINVAL bad
 * type), with the reason in tp_stream_err(). */
int tp_send(struct tp_stream *st, uint32_t type, const struct iovec *iov,
	    int iovcnt, unsigned int flags);
/* Sends what TP_MORE left staged and waits until every byte of the stream
 * is with the kernel. Returns 0 or -errno as tp_send(). */
int tp_stream_flush(struct tp_stream *st);

/* Waits for the next message and fills @msg. The previous message's payload
 * must have been read or skipped entirely (-EBUSY otherwise). Returns 0,
 * -ESHUTDOWN when the peer closed the stream cleanly between messages, or
 * another -errno (-ETIMEDOUT, -ECONNRESET, -EPROTO for garbage, which also
 * sends a TLS alert). */
int tp_recv_hdr(struct tp_stream *st, struct tp_msg *msg);
/* Reads exactly the sum of @iov bytes of the current message's payload into
 * @iov, in order; may be called several times per message. Returns 0,
 * -EMSGSIZE if more than the payload left was asked for, or -errno as for
 * tp_recv_hdr() (a peer closing mid-message is -ECONNRESET). TLS opens the
 * records it can straight into @iov and returns 0 only once every record
 * that wrote there was authenticated: after an error the content of @iov
 * is unspecified (it may hold plaintext of a forged record). Ask for a
 * message's pages in one call: a record the call covers whole is not
 * copied (see the top of this file). */
int tp_recv_payload(struct tp_stream *st, const struct iovec *iov,
		    int iovcnt);
/* Discards @n bytes of the current payload. Same returns. */
int tp_recv_skip(struct tp_stream *st, uint64_t n);
/* Payload bytes of the current message not read yet. */
uint64_t tp_recv_left(const struct tp_stream *st);
/* Convenience for small messages: header and whole payload into @buf of
 * @cap bytes. -EMSGSIZE (payload left unread) if it does not fit. */
int tp_recv(struct tp_stream *st, struct tp_msg *msg, void *buf, size_t cap);

/* ---- streams ----------------------------------------------------------- */

/* The reason of the stream's last error (msg "" if none), one line, owned
 * by the stream and overwritten by its next error. The stream's thread. */
const struct ut_err *tp_stream_err(const struct tp_stream *st);
/* Control, bulk or urgent. Any thread. */
enum tp_stream_kind tp_stream_kind(const struct tp_stream *st);
/* Copies the stream's counters into @out. The stream's thread (counters
 * are not atomic; another thread may read a torn value). */
void tp_stream_get_stats(const struct tp_stream *st,
			 struct tp_stream_stats *out);
/* The socket, for poll()-driven callers (readability only; bytes already
 * buffered in the stream are reported by tp_stream_pending()). Owned by
 * the stream. */
int tp_stream_fd(const struct tp_stream *st);
/* True when bytes are buffered in user space (decrypted or not). */
bool tp_stream_pending(const struct tp_stream *st);
/* Changes the stream's I/O timeout (ms, < 0 never). */
void tp_stream_set_timeout(struct tp_stream *st, int timeout_ms);
/* Receives on @st poll for up to @usec before sleeping (0, the default:
 * sleep at once). For a thread that waits on a short round trip, such as a
 * page request on the urgent stream: it trades CPU for wake-up latency.
 * Call from the thread that uses the stream. */
void tp_stream_set_busy_poll(struct tp_stream *st, unsigned int usec);

#endif /* FERRY_TRANSPORT_H */
