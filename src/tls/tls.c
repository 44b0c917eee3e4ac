#include "tls/tls.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "core/loop.h"

/* TLS 1.2 suites: forward secret AEAD only; ECDSA before RSA, AES-128-GCM first (fastest with AES-NI),
 * ChaCha20 for clients that prefer it (SSL_OP_PRIORITIZE_CHACHA). */
static const char cipher_list[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char ciphersuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/* X25519 first: its peer-key check is cheap, unlike P-256's (OpenSSL 3.0 validates every peer key). */
static const char groups[] = "X25519:P-256:P-384";

static int lib_ex_index = -1;
static BIO_METHOD *bio_method;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written);
static int bio_read_ex(BIO *b, char *out, size_t len, size_t *readbytes);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);
static int bio_create(BIO *b);

static void init_once(void)
{
    lib_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "moat connection");
    if (bio_method != NULL) {
        BIO_meth_set_write_ex(bio_method, bio_write_ex);
        BIO_meth_set_read_ex(bio_method, bio_read_ex);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
}

moat_tls_lib_t *moat_tls_lib_new(moat_err_t *err)
{
    moat_tls_lib_t *lib;

    pthread_once(&once, init_once);
    if (lib_ex_index < 0 || bio_method == NULL) {
        moat_err_ossl(err, MOAT_E_NOMEM, "initialising OpenSSL");
        return NULL;
    }
    lib = moat_calloc(1, sizeof(*lib));
    if (lib == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating a TLS library context");
        return NULL;
    }
    /* A fresh context does not read openssl.cnf, so the system policy cannot alter what we set. */
    lib->libctx = OSSL_LIB_CTX_new();
    if (lib->libctx == NULL || (lib->provider = OSSL_PROVIDER_load(lib->libctx, "default")) == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "creating an OpenSSL library context with the default provider");
        moat_tls_lib_free(lib);
        return NULL;
    }
    lib->ticket_aes = EVP_CIPHER_fetch(lib->libctx, "AES-256-CBC", NULL);
    if (lib->ticket_aes == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "fetching AES-256-CBC for session tickets");
        moat_tls_lib_free(lib);
        return NULL;
    }
    return lib;
}

void moat_tls_lib_free(moat_tls_lib_t *lib)
{
    if (lib == NULL)
        return;
    EVP_CIPHER_free(lib->ticket_aes);
    if (lib->provider != NULL)
        OSSL_PROVIDER_unload(lib->provider);
    OSSL_LIB_CTX_free(lib->libctx);
    moat_free(&lib);
}

/* ---- ticket key ring ---------------------------------------------------------------------------- */

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} ticket_key_t;

typedef struct ticket_ring {
    ticket_key_t keys[MOAT_TLS_TICKET_KEYS]; /* keys[0] encrypts; all decrypt */
    size_t nkeys;
    uint64_t created_s;
} ticket_ring_t;

/*
 * Readers take the current snapshot without locks. A snapshot slot is reused only RING_SLOTS
 * rotations later (days), long after any handshake that read it has finished.
 */
#define RING_SLOTS 16
static ticket_ring_t rings[RING_SLOTS];
static unsigned ring_next;
static _Atomic(ticket_ring_t *) ring_current;

static int make_key(ticket_key_t *k, moat_err_t *err)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return moat_err_ossl(err, MOAT_E_PKI, "generating a session ticket key");
    return 0;
}

int moat_tls_tickets_rotate(moat_err_t *err)
{
    ticket_ring_t *old = atomic_load(&ring_current);
    ticket_ring_t *r = &rings[ring_next++ % RING_SLOTS];
    size_t keep = old != NULL ? old->nkeys : 0;
    int rc;

    if (keep > MOAT_TLS_TICKET_KEYS - 1)
        keep = MOAT_TLS_TICKET_KEYS - 1;
    OPENSSL_cleanse(r, sizeof(*r));
    if ((rc = make_key(&r->keys[0], err)) != 0)
        return rc;
    if (keep > 0)
        memcpy(&r->keys[1], &old->keys[0], keep * sizeof(ticket_key_t));
    r->nkeys = keep + 1;
    r->created_s = moat_clock_ms() / 1000;
    atomic_store(&ring_current, r);
    return 0;
}

int moat_tls_tickets_init(moat_err_t *err)
{
    if (atomic_load(&ring_current) != NULL)
        return 0;
    return moat_tls_tickets_rotate(err);
}

uint64_t moat_tls_tickets_created(void)
{
    ticket_ring_t *r = atomic_load(&ring_current);
    return r != NULL ? r->created_s : 0;
}

/* RFC 5077 layout handled by libssl; we supply the key name, IV, cipher and HMAC keys. Returns 1 to
 * use the ticket, 2 to use it and issue a fresh one (old key), 0 for an unknown key (full handshake). */
static int on_ticket_key(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    moat_tls_lib_t *lib = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), lib_ex_index);
    ticket_ring_t *r = atomic_load(&ring_current);
    const ticket_key_t *k = NULL;
    int ret = 1;
    OSSL_PARAM params[3];

    if (lib == NULL || r == NULL || r->nkeys == 0)
        return enc ? -1 : 0;
    if (enc) {
        k = &r->keys[0];
        memcpy(key_name, k->name, 16);
        if (RAND_bytes_ex(lib->libctx, iv, 16, 0) != 1)
            return -1;
        if (EVP_EncryptInit_ex2(cctx, lib->ticket_aes, k->aes, iv, NULL) != 1)
            return -1;
    } else {
        for (size_t i = 0; i < r->nkeys; i++) {
            if (memcmp(key_name, r->keys[i].name, 16) == 0) {
                k = &r->keys[i];
                ret = i == 0 ? 1 : 2;
                break;
            }
        }
        if (k == NULL)
            return 0;
        if (EVP_DecryptInit_ex2(cctx, lib->ticket_aes, k->aes, iv, NULL) != 1)
            return -1;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return ret;
}

/* ---- SSL_CTX ------------------------------------------------------------------------------------ */

static int add_cert(SSL_CTX *ctx, OSSL_LIB_CTX *libctx, const moat_tls_cert_src_t *src, moat_err_t *err)
{
    X509 *x = X509_new_ex(libctx, NULL);
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = NULL;
    const unsigned char *p;
    int rc = MOAT_E_PKI;

    p = src->cert_der;
    if (x == NULL || d2i_X509(&x, &p, (long)src->cert_len) == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "decoding the certificate");
        goto out;
    }
    p = src->key_der;
    key = d2i_AutoPrivateKey_ex(NULL, &p, (long)src->key_len, libctx, NULL);
    if (key == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "decoding the private key");
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "using the certificate");
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "the private key does not match the certificate");
        goto out;
    }
    chain = sk_X509_new_null();
    if (chain == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating a certificate chain");
        goto out;
    }
    for (size_t i = 0; i < src->nchain; i++) {
        X509 *c = X509_new_ex(libctx, NULL);
        p = src->chain_der[i];
        if (c == NULL || d2i_X509(&c, &p, (long)src->chain_len[i]) == NULL) {
            X509_free(c);
            moat_err_ossl(err, MOAT_E_PKI, "decoding chain certificate %zu", i + 1);
            goto out;
        }
        if (!sk_X509_push(chain, c)) {
            X509_free(c);
            moat_err_set(err, MOAT_E_NOMEM, "allocating a certificate chain");
            goto out;
        }
    }
    /* The chain is built once here; with SSL_MODE_NO_AUTO_CHAIN no handshake verifies it again. */
    if (SSL_CTX_set1_chain(ctx, chain) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "setting the certificate chain");
        goto out;
    }
    rc = 0;
out:
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    X509_free(x);
    return rc;
}

SSL_CTX *moat_tls_ctx_new(moat_tls_lib_t *lib, const moat_tls_cert_src_t *certs, size_t ncerts,
                          const char *sid_ctx, moat_err_t *err)
{
    return moat_tls_ctx_new_ex(lib, certs, ncerts, sid_ctx, 0, err);
}

SSL_CTX *moat_tls_ctx_new_ex(moat_tls_lib_t *lib, const moat_tls_cert_src_t *certs, size_t ncerts,
                             const char *sid_ctx, unsigned flags, moat_err_t *err)
{
    SSL_CTX *ctx;
    unsigned char sid[32];
    unsigned int sidlen = 0;

    ctx = SSL_CTX_new_ex(lib->libctx, NULL, TLS_server_method());
    if (ctx == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "creating a TLS context");
        return NULL;
    }
    /* Everything explicit: whatever SSL_CTX_new took from a system policy is overwritten here. */
    SSL_CTX_clear_options(ctx, SSL_CTX_get_options(ctx));
    SSL_CTX_set_options(ctx, SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_ENABLE_MIDDLEBOX_COMPAT |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_security_level(ctx, 2);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, cipher_list) != 1 || SSL_CTX_set_ciphersuites(ctx, ciphersuites) != 1 ||
        SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "setting TLS protocols, ciphers and groups");
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Stateless tickets only: no server-side cache, one ticket per handshake, keys from our ring. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_set_num_tickets(ctx, (flags & MOAT_TLS_NO_TICKETS) ? 0 : 1);
    if (flags & MOAT_TLS_NO_TICKETS) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_timeout(ctx, 7200); /* well inside the ring's lifetime (keys x rotation) */
    SSL_CTX_set_ex_data(ctx, lib_ex_index, lib);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "installing the session ticket callback");
        goto fail;
    }
    if (EVP_Q_digest(lib->libctx, "SHA256", NULL, sid_ctx, strlen(sid_ctx), sid, NULL) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "hashing the session id context");
        goto fail;
    }
    sidlen = SSL_MAX_SID_CTX_LENGTH < sizeof(sid) ? SSL_MAX_SID_CTX_LENGTH : sizeof(sid);
    if (SSL_CTX_set_session_id_context(ctx, sid, sidlen) != 1) {
        moat_err_ossl(err, MOAT_E_PKI, "setting the session id context");
        goto fail;
    }
    for (size_t i = 0; i < ncerts; i++) {
        if (add_cert(ctx, lib->libctx, &certs[i], err) != 0) {
            moat_err_prefix(err, "certificate %zu of %zu", i + 1, ncerts);
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *moat_tls_client_ctx_new(OSSL_LIB_CTX *libctx, const unsigned char *const *anchor_der,
                                 const size_t *anchor_len, size_t nanchors, const moat_tls_cert_src_t *client,
                                 moat_err_t *err)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());
    X509_STORE *store;

    if (ctx == NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "creating a TLS client context");
        return NULL;
    }
    SSL_CTX_clear_options(ctx, SSL_CTX_get_options(ctx));
    SSL_CTX_set_options(ctx, SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_ENABLE_MIDDLEBOX_COMPAT);
    SSL_CTX_set_security_level(ctx, 2);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, cipher_list) != 1 || SSL_CTX_set_ciphersuites(ctx, ciphersuites) != 1 ||
        SSL_CTX_set1_groups_list(ctx, groups) != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
        moat_err_ossl(err, MOAT_E_PKI, "setting TLS protocols, ciphers and groups");
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Sessions are kept by the caller (SSL_CTX_sess_set_new_cb), not in the context. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((store = X509_STORE_new()) == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating a certificate store");
        goto fail;
    }
    SSL_CTX_set_cert_store(ctx, store); /* the context owns it */
    for (size_t i = 0; i < nanchors; i++) {
        const unsigned char *p = anchor_der[i];
        X509 *x = X509_new_ex(libctx, NULL);
        if (x == NULL || d2i_X509(&x, &p, (long)anchor_len[i]) == NULL) {
            X509_free(x);
            moat_err_ossl(err, MOAT_E_PKI, "decoding trust anchor %zu", i + 1);
            goto fail;
        }
        if (X509_STORE_add_cert(store, x) != 1) {
            X509_free(x);
            moat_err_ossl(err, MOAT_E_PKI, "adding trust anchor %zu", i + 1);
            goto fail;
        }
        X509_free(x);
    }
    if (client != NULL && add_cert(ctx, libctx, client, err) != 0) {
        moat_err_prefix(err, "the client certificate");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the connection BIO ------------------------------------------------------------------------- */

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_read_ex(BIO *b, char *out, size_t len, size_t *readbytes)
{
    moat_tls_io_t *io = BIO_get_data(b);
    size_t avail = io->rlen - io->rpos;

    BIO_clear_retry_flags(b);
    if (avail == 0) {
        BIO_set_retry_read(b);
        *readbytes = 0;
        return 0;
    }
    if (len > avail)
        len = avail;
    memcpy(out, io->rbuf + io->rpos, len);
    io->rpos += len;
    *readbytes = len;
    return 1;
}

/* Sends a full-size record straight from OpenSSL's buffer when nothing is queued before it: a bulk
 * transfer then skips one copy per record, as a socket BIO would. Smaller writes (handshake messages, short
 * responses) are gathered so that a flight leaves in one send. */
static size_t write_through(moat_tls_io_t *io, const char *data, size_t len)
{
    ssize_t n;
    if (io->fd < 0 || io->wlen != 0 || len <= MOAT_TLS_RECORD_PLAIN)
        return 0;
    do
        n = send(io->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    /* Would block or failed: the bytes are queued and the connection's own send meets the same state. */
    return n > 0 ? (size_t)n : 0;
}

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    moat_tls_io_t *io = BIO_get_data(b);
    size_t sent = write_through(io, data, len), space;

    BIO_clear_retry_flags(b);
    data += sent;
    len -= sent;
    space = io->wbuf != NULL ? io->wcap - io->wlen : 0;
    if (len > space)
        len = space;
    if (sent == 0 && len == 0) {
        BIO_set_retry_write(b);
        *written = 0;
        return 0;
    }
    if (len > 0)
        memcpy(io->wbuf + io->wlen, data, len);
    io->wlen += len;
    *written = sent + len;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    moat_tls_io_t *io = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)(io->rlen - io->rpos);
    case BIO_CTRL_WPENDING:
        return (long)io->wlen;
    default:
        return 0;
    }
}

BIO *moat_tls_bio_new(moat_tls_io_t *io)
{
    BIO *b;
    pthread_once(&once, init_once);
    if (bio_method == NULL)
        return NULL;
    b = BIO_new(bio_method);
    if (b != NULL)
        BIO_set_data(b, io);
    return b;
}
