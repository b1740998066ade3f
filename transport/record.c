// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * TLS 1.3 record protection (RFC 8446 section 5) for the records that
 * follow the handshake: OpenSSL runs the handshake, this file seals and
 * opens the application traffic, as kernel TLS would in the kernel.
 *
 * Why not OpenSSL's record layer: OpenSSL 3.0 copies each record's
 * plaintext into its one write buffer, seals it there and hands it to the
 * BIO, which must copy it again to keep it while the next record is sealed
 * (one buffer, no pipelining for AEAD suites); on the way in it decrypts
 * in its read buffer and copies out. Here the AEAD reads the caller's
 * pages and writes the ciphertext straight into the buffer io_uring sends,
 * and opens records straight from the buffer io_uring received into the
 * caller's destination: the cipher's own pass is the only user-space pass
 * over a byte in each direction.
 *
 * Keys: the application traffic secrets come from OpenSSL's key log
 * callback at the end of the handshake (the same secrets it would give the
 * kernel for kTLS); key and IV are HKDF-Expand-Label(secret, "key" / "iv"),
 * KeyUpdate moves to HKDF-Expand-Label(secret, "traffic upd"). Nonces are
 * the IV XOR the record's sequence number, which restarts at 0 with each
 * key. OpenSSL never writes a record after the hand-over (wire-tls.c drops
 * anything it would): its sequence numbers would repeat ours.
 */
#include "config.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <string.h>

#define LOG_PREFIX "transport"
#include "transport/internal.h"
#include "util/util.h"

static const struct {
	uint16_t id;		/* TLS cipher suite number */
	const char *cipher;	/* EVP name */
	const char *md;		/* HKDF hash */
	size_t key_len;
} suites[] = {
	{ 0x1301, "AES-128-GCM", "SHA256", 16 },
	{ 0x1302, "AES-256-GCM", "SHA384", 32 },
	{ 0x1303, "ChaCha20-Poly1305", "SHA256", 32 },
};

/* HKDF-Expand-Label(secret, label, "", out_len) of RFC 8446 7.1. */
static int expand_label(const char *md, const uint8_t *secret, size_t slen,
			const char *label, uint8_t *out, size_t out_len)
{
	size_t ll = strlen(label), n = 0;
	uint8_t info[4 + 6 + 32];
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ret = -EPROTO;
	EVP_KDF *kdf;
	EVP_KDF_CTX *kc = NULL;
	OSSL_PARAM p[5];

	if (ll > 32)
		return -EINVAL;
	info[n++] = out_len >> 8;
	info[n++] = out_len;
	info[n++] = 6 + ll;
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0; /* empty context */
	p[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	p[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						(char *)md, 0);
	p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						 (void *)secret, slen);
	p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n);
	p[4] = OSSL_PARAM_construct_end();
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf)
		kc = EVP_KDF_CTX_new(kdf);
	if (kc && EVP_KDF_derive(kc, out, out_len, p) == 1)
		ret = 0;
	EVP_KDF_CTX_free(kc);
	EVP_KDF_free(kdf);
	return ret;
}

/* Derives key and IV of the current secret and keys the cipher context. */
static int rec_key_load(struct tp_rec_key *k)
{
	uint8_t key[32];
	int ret;

	ret = expand_label(k->md, k->secret, k->secret_len, "key", key,
			   k->key_len);
	if (ret == 0)
		ret = expand_label(k->md, k->secret, k->secret_len, "iv",
				   k->iv, TP_REC_IV_LEN);
	if (ret == 0 && EVP_CipherInit_ex(k->ctx, k->cipher, NULL, key, NULL,
					  k->enc) != 1)
		ret = -EPROTO;
	OPENSSL_cleanse(key, sizeof(key));
	k->seq = 0;
	return ret;
}

int tp_rec_key_init(struct tp_rec_key *k, uint16_t suite,
		    const uint8_t *secret, size_t secret_len, bool enc)
{
	size_t i;

	memset(k, 0, sizeof(*k));
	for (i = 0; i < UT_ARRAY_SIZE(suites) && suites[i].id != suite; i++)
		;
	if (i == UT_ARRAY_SIZE(suites) || secret_len > sizeof(k->secret))
		return -EPROTO;
	k->md = suites[i].md;
	k->key_len = suites[i].key_len;
	k->enc = enc;
	memcpy(k->secret, secret, secret_len);
	k->secret_len = secret_len;
	k->cipher = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
	k->ctx = EVP_CIPHER_CTX_new();
	if (!k->cipher || !k->ctx)
		return -ENOMEM;
	return rec_key_load(k);
}

void tp_rec_key_fini(struct tp_rec_key *k)
{
	EVP_CIPHER_CTX_free(k->ctx);
	EVP_CIPHER_free(k->cipher);
	OPENSSL_cleanse(k, sizeof(*k));
}

int tp_rec_key_update(struct tp_rec_key *k)
{
	uint8_t next[sizeof(k->secret)];
	int ret;

	ret = expand_label(k->md, k->secret, k->secret_len, "traffic upd",
			   next, k->secret_len);
	if (ret == 0) {
		memcpy(k->secret, next, k->secret_len);
		ret = rec_key_load(k);
	}
	OPENSSL_cleanse(next, sizeof(next));
	return ret;
}

/* Starts one record: nonce = IV ^ seq, the header as additional data. */
static int rec_start(struct tp_rec_key *k, const uint8_t hdr[TP_REC_HDR])
{
	uint8_t nonce[TP_REC_IV_LEN];
	int n;

	if (k->seq == UINT64_MAX)
		return -EPROTO; /* never reached: KeyUpdate comes far earlier */
	memcpy(nonce, k->iv, sizeof(nonce));
	for (int i = 0; i < 8; i++)
		nonce[TP_REC_IV_LEN - 1 - i] ^= (uint8_t)(k->seq >> (8 * i));
	if (EVP_CipherInit_ex(k->ctx, NULL, NULL, NULL, nonce, k->enc) != 1 ||
	    EVP_CipherUpdate(k->ctx, NULL, &n, hdr, TP_REC_HDR) != 1)
		return -EPROTO;
	return 0;
}

/* One AEAD pass from @in to @out (may be equal); the stream ciphers of
 * TLS 1.3 give back every byte at once. */
static int rec_pass(struct tp_rec_key *k, uint8_t *out, const uint8_t *in,
		    size_t len)
{
	int n;

	if (len == 0)
		return 0;
	if (len > INT32_MAX || EVP_CipherUpdate(k->ctx, out, &n, in, len) != 1 ||
	    (size_t)n != len)
		return -EPROTO;
	return 0;
}

static void rec_header(uint8_t *hdr, size_t body)
{
	hdr[0] = TP_REC_APPDATA;
	hdr[1] = 3;
	hdr[2] = 3;
	hdr[3] = body >> 8;
	hdr[4] = body & 0xff;
}

ssize_t tp_rec_seal(struct tp_rec_key *k, uint8_t type,
		    const struct iovec *iov, int iovcnt, uint8_t *out)
{
	size_t len = 0, body;
	uint8_t *p = out + TP_REC_HDR;
	int n, ret;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > TP_REC_MAX_PLAIN)
		return -EINVAL;
	body = len + 1 + TP_REC_TAG;
	rec_header(out, body);
	ret = rec_start(k, out);
	k->seq++; /* even on failure: a nonce is never sealed under twice */
	for (int i = 0; i < iovcnt && ret == 0; i++) {
		ret = rec_pass(k, p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	if (ret == 0)
		ret = rec_pass(k, p++, &type, 1);
	if (ret < 0 || EVP_CipherFinal_ex(k->ctx, p, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_AEAD_GET_TAG, TP_REC_TAG,
				p) != 1)
		return -EPROTO;
	return TP_REC_HDR + body;
}

int tp_rec_open_start(struct tp_rec_key *k, const uint8_t hdr[TP_REC_HDR])
{
	return rec_start(k, hdr);
}

int tp_rec_open_part(struct tp_rec_key *k, uint8_t *out, const uint8_t *in,
		     size_t len)
{
	return rec_pass(k, out, in, len);
}

int tp_rec_open_end(struct tp_rec_key *k, const uint8_t tag[TP_REC_TAG])
{
	uint8_t t[TP_REC_TAG];
	int n;

	memcpy(t, tag, sizeof(t));
	if (EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_AEAD_SET_TAG, TP_REC_TAG,
				t) != 1 ||
	    EVP_CipherFinal_ex(k->ctx, t, &n) != 1)
		return -EBADMSG;
	return 0;
}
