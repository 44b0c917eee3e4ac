/*
 * tls: OpenSSL server contexts for moat serve.
 *
 * - moat_tls_lib_t: one OSSL_LIB_CTX per worker thread with its pre-fetched primitives (OpenSSL 3.0
 *   serialises threads that share a library context, so workers share nothing writable).
 * - moat_tls_ctx_new(): a complete SSL_CTX for one site in one library context, built off the hot
 *   path from DER (keys come out of the store as DER): TLS 1.2-1.3, AEAD suites, X25519 then P-256,
 *   server preference, chain set once with SSL_MODE_NO_AUTO_CHAIN, stateless tickets from the shared
 *   key ring, one ticket per handshake, no session cache. Nothing comes from openssl.cnf.
 * - The ticket key ring: process-wide, shared by every worker and every SSL_CTX, so tickets survive
 *   reloads and work across workers; rotated by the control thread.
 * - A BIO that reads ciphertext from, and writes it to, buffers owned by the connection, so that one
 *   read() feeds many records and one send() carries a whole flight or many records.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include "core/core.h"

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

/* Per-worker library context and the primitives fetched once from it. */
typedef struct moat_tls_lib {
    OSSL_LIB_CTX *libctx;    /* owned */
    OSSL_PROVIDER *provider; /* owned: the default provider loaded into libctx */
    EVP_CIPHER *ticket_aes;  /* owned: AES-256-CBC for ticket encryption, fetched once */
} moat_tls_lib_t;

/* Creates a library context with the default provider and pre-fetches the ticket primitives. */
moat_tls_lib_t *moat_tls_lib_new(moat_err_t *err);
void moat_tls_lib_free(moat_tls_lib_t *lib);

/* One certificate of a site: leaf, private key and the chain to send (leaf first not included). */
typedef struct moat_tls_cert_src {
    const unsigned char *cert_der; /* borrowed */
    size_t cert_len;
    const unsigned char *key_der; /* borrowed: secret; PKCS#8 or traditional DER */
    size_t key_len;
    const unsigned char *const *chain_der; /* borrowed: intermediates in order, may be NULL */
    const size_t *chain_len;
    size_t nchain;
} moat_tls_cert_src_t;

/*
 * Builds the SSL_CTX of one site in <lib>'s library context with <ncerts> certificates (one ECDSA and
 * one RSA may coexist; OpenSSL then picks per client). <sid_ctx> names the site for session resumption
 * (at most SSL_MAX_SID_CTX_LENGTH bytes are used). Each key must match its certificate.
 * Returns a new SSL_CTX (caller owns) or NULL with <err> set.
 */
SSL_CTX *moat_tls_ctx_new(moat_tls_lib_t *lib, const moat_tls_cert_src_t *certs, size_t ncerts,
                          const char *sid_ctx, moat_err_t *err);
/* The same with <flags>: MOAT_TLS_NO_TICKETS (tls.tickets: false) turns resumption off. */
#define MOAT_TLS_NO_TICKETS 1u
SSL_CTX *moat_tls_ctx_new_ex(moat_tls_lib_t *lib, const moat_tls_cert_src_t *certs, size_t ncerts,
                             const char *sid_ctx, unsigned flags, moat_err_t *err);

/*
 * A client context for moat's connections to HTTPS servers (upstreams) in <libctx> (NULL: the default
 * one): TLS 1.2-1.3 with the same suites and groups as the server side, ALPN http/1.1, the peer's
 * certificate verified against exactly the <nanchors> DER anchors (never the system store; the caller sets
 * the name to check per connection), and <client> (may be NULL) presented when the server asks.
 * Sessions are not cached in the context (SSL_SESS_CACHE_NO_INTERNAL_STORE): the caller keeps them.
 * Returns a new SSL_CTX (caller owns) or NULL with <err> set.
 */
SSL_CTX *moat_tls_client_ctx_new(OSSL_LIB_CTX *libctx, const unsigned char *const *anchor_der,
                                 const size_t *anchor_len, size_t nanchors, const moat_tls_cert_src_t *client,
                                 moat_err_t *err);

/* The ticket key ring. init makes the first key; rotate adds a new encryption key (keeping the last
 * MOAT_TLS_TICKET_KEYS for decryption; the server rotates every tls.ticket_rotate_s). Both are called from
 * one thread (the control thread). */
#define MOAT_TLS_TICKET_KEYS 4
int moat_tls_tickets_init(moat_err_t *err) MOAT_MUST_CHECK;
int moat_tls_tickets_rotate(moat_err_t *err) MOAT_MUST_CHECK;
/* Monotonic seconds at which the current key was made (for rotation scheduling). */
uint64_t moat_tls_tickets_created(void);

/*
 * Connection-owned ciphertext buffers the moat BIO reads and writes. The connection fills rbuf from
 * the socket and drains wbuf to it; OpenSSL sees a retry when rbuf is empty or wbuf is full.
 */
/* Largest plaintext of one TLS record (RFC 8446 5.1). */
#define MOAT_TLS_RECORD_PLAIN 16384

typedef struct moat_tls_io {
    unsigned char *rbuf; /* borrowed from the connection (may be NULL when idle) */
    size_t rpos, rlen;   /* unread bytes are rbuf[rpos..rlen) */
    unsigned char *wbuf; /* borrowed from the connection (may be NULL: writes then retry) */
    size_t wlen, wcap;   /* pending bytes are wbuf[0..wlen) */
    int fd; /* socket that full-size records are sent to directly when nothing is pending; -1: none */
} moat_tls_io_t;

/* A BIO over <io> (not owned by the BIO); NULL on OOM. */
BIO *moat_tls_bio_new(moat_tls_io_t *io);

/*
 * ClientHello server_name (RFC 6066 3): the host_name of the extension's bytes <p, len> (as
 * SSL_client_hello_get0_ext() gives them), copied NUL-terminated to <out>. 1 when read; -1 when the
 * extension is not one this reader takes (malformed, another name type first, a name with a NUL or too
 * long for <outsz>): the caller then leaves the choice to OpenSSL's own parse.
 */
int moat_tls_hello_sni(const unsigned char *p, size_t len, char *out, size_t outsz);

/* ALPN (RFC 7301): the protocols moat speaks (alpn.c keeps their names and preference order). */
typedef enum {
    MOAT_TLS_ALPN_NONE = -1,
    MOAT_TLS_ALPN_H2 = 0,
    MOAT_TLS_ALPN_HTTP11,
    MOAT_TLS_ALPN_ACME, /* acme-tls/1 (RFC 8737): tls-alpn-01 validations only */
} moat_tls_alpn_t;
#define MOAT_TLS_ALPN_BIT(id) (1u << (unsigned)(id))
/* Chooses, in moat's order of preference, the first protocol in <allowed> (MOAT_TLS_ALPN_BIT()s) that
 * the client's list <in, inlen> (wire format) offers; points <out, outlen> into <in> at it (as the ALPN
 * select callback returns it). MOAT_TLS_ALPN_NONE when they share none. */
moat_tls_alpn_t moat_tls_alpn_choose(const unsigned char *in, size_t inlen, unsigned allowed,
                                     const unsigned char **out, unsigned char *outlen);
/* The wire name of <id> ("h2"), or NULL. */
const char *moat_tls_alpn_name(moat_tls_alpn_t id);

/* Empties this thread's OpenSSL error queue before a TLS call, as SSL_get_error() requires. Looking
 * first is much cheaper than ERR_clear_error(), which resets every slot of the queue, and the queue is
 * almost always empty. */
static inline void moat_tls_err_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#endif
