/* tls: contexts built from DER, the connection BIO, and the shared ticket key ring (resumption across
 * library contexts, i.e. workers, and across a key rotation). Handshakes run in memory. */
#include "harness.h"
#include "tls/tls.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char *cert_der, *key_der, *other_key_der;
static int cert_len, key_len, other_key_len;

static EVP_PKEY *gen_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static void make_identity(void)
{
    EVP_PKEY *k = gen_key(), *k2 = gen_key();
    X509 *x = X509_new();
    X509_NAME *n;
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"unit.test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:unit.test");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, k, EVP_sha256());
    cert_len = i2d_X509(x, &cert_der);
    key_len = i2d_PrivateKey(k, &key_der);
    other_key_len = i2d_PrivateKey(k2, &other_key_der);
    X509_free(x);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

typedef struct pair {
    SSL *server, *client;
    moat_tls_io_t io;
    unsigned char rbuf[32768], wbuf[65536];
    BIO *c_in, *c_out; /* client side memory BIOs */
} pair_t;

static void pair_init(pair_t *p, SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess)
{
    memset(&p->io, 0, sizeof(p->io));
    p->io.fd = -1;
    p->io.rbuf = p->rbuf;
    p->io.wbuf = p->wbuf;
    p->io.wcap = sizeof(p->wbuf);
    p->server = SSL_new(sctx);
    BIO *b = moat_tls_bio_new(&p->io);
    SSL_set_bio(p->server, b, b);
    SSL_set_accept_state(p->server);
    p->client = SSL_new(cctx);
    p->c_in = BIO_new(BIO_s_mem());
    p->c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(p->client, p->c_in, p->c_out);
    SSL_set_tlsext_host_name(p->client, "unit.test");
    if (sess != NULL)
        SSL_set_session(p->client, sess);
    SSL_set_connect_state(p->client);
}

/* Moves bytes both ways until neither side makes progress. */
static void pump(pair_t *p)
{
    for (int i = 0; i < 50; i++) {
        char buf[65536];
        int n, moved = 0;
        (void)SSL_do_handshake(p->client);
        (void)SSL_do_handshake(p->server);
        while ((n = BIO_read(p->c_out, buf, sizeof(buf))) > 0) {
            memmove(p->io.rbuf, p->io.rbuf + p->io.rpos, p->io.rlen - p->io.rpos);
            p->io.rlen -= p->io.rpos;
            p->io.rpos = 0;
            memcpy(p->io.rbuf + p->io.rlen, buf, (size_t)n);
            p->io.rlen += (size_t)n;
            moved = 1;
        }
        if (p->io.wlen > 0) {
            BIO_write(p->c_in, p->io.wbuf, (int)p->io.wlen);
            p->io.wlen = 0;
            moved = 1;
        }
        if (!moved && SSL_is_init_finished(p->client) && SSL_is_init_finished(p->server))
            break;
    }
}

static void pair_free(pair_t *p)
{
    SSL_free(p->server);
    SSL_free(p->client);
}

/* Full handshake, one byte of application data each way (the client then holds its ticket). */
static int talk(pair_t *p)
{
    char c = 0;
    pump(p);
    if (!SSL_is_init_finished(p->server) || !SSL_is_init_finished(p->client))
        return 0;
    if (SSL_write(p->server, "x", 1) != 1)
        return 0;
    pump(p);
    return SSL_read(p->client, &c, 1) == 1 && c == 'x';
}

static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
    if (max_version) {
        SSL_CTX_set_min_proto_version(c, max_version);
        SSL_CTX_set_max_proto_version(c, max_version);
        SSL_CTX_set_security_level(c, 0);
        SSL_CTX_set_cipher_list(c, "DEFAULT@SECLEVEL=0");
    }
    return c;
}

static void test_handshakes_versions_and_tickets(void)
{
    moat_err_t err = {0};
    moat_tls_lib_t *lib1 = moat_tls_lib_new(&err), *lib2 = moat_tls_lib_new(&err);
    moat_tls_cert_src_t src = {cert_der, (size_t)cert_len, key_der, (size_t)key_len, NULL, NULL, 0};
    SSL_CTX *s1, *s2, *cc = client_ctx(0);
    SSL_SESSION *sess;
    pair_t p;

    CHECK(lib1 != NULL && lib2 != NULL);
    CHECK_EQ(moat_tls_tickets_init(&err), 0);
    s1 = moat_tls_ctx_new(lib1, &src, 1, "site a", &err);
    s2 = moat_tls_ctx_new(lib2, &src, 1, "site a", &err);
    CHECK(s1 != NULL && s2 != NULL);

    pair_init(&p, s1, cc, NULL);
    CHECK(talk(&p));
    CHECK_STR(SSL_get_version(p.server), "TLSv1.3");
    CHECK_EQ(SSL_session_reused(p.server), 0);
    /* One ticket per handshake, issued from the ring (resumption itself is tested end to end with
     * python clients against the server: tests/integration/test_serve.py). */
    sess = SSL_get1_session(p.client);
    CHECK(sess != NULL && SSL_SESSION_has_ticket(sess));
    SSL_SESSION_free(sess);
    pair_free(&p);

    /* A rotation keeps serving: another library context (worker) completes handshakes too. */
    CHECK_EQ(moat_tls_tickets_rotate(&err), 0);
    pair_init(&p, s2, cc, NULL);
    CHECK(talk(&p));
    pair_free(&p);

    /* TLS 1.2 works, TLS 1.1 does not. */
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION), *c11 = client_ctx(TLS1_1_VERSION);
    pair_init(&p, s1, c12, NULL);
    CHECK(talk(&p));
    CHECK_STR(SSL_get_version(p.server), "TLSv1.2");
    CHECK(strstr(SSL_get_cipher_name(p.server), "GCM") != NULL);
    pair_free(&p);
    pair_init(&p, s1, c11, NULL);
    CHECK(!talk(&p));
    pair_free(&p);
    ERR_clear_error();

    SSL_CTX_free(c12);
    SSL_CTX_free(c11);
    SSL_CTX_free(cc);
    SSL_CTX_free(s1);
    SSL_CTX_free(s2);
    moat_tls_lib_free(lib1);
    moat_tls_lib_free(lib2);
}

/* Full-size records go straight to the socket when nothing is queued before them; everything else (and
 * records the socket refuses) is queued in wbuf, in order. */
static void test_bulk_records_written_through(void)
{
    moat_err_t err = {0};
    moat_tls_lib_t *lib = moat_tls_lib_new(&err);
    moat_tls_cert_src_t src = {cert_der, (size_t)cert_len, key_der, (size_t)key_len, NULL, NULL, 0};
    SSL_CTX *sc, *cc = client_ctx(0);
    static unsigned char data[65536 + 100], got[sizeof(data)], wire[1 << 18];
    size_t written = 0, have = 0, nwire = 0;
    int sv[2];
    ssize_t n;
    pair_t p;

    CHECK(lib != NULL);
    sc = moat_tls_ctx_new(lib, &src, 1, "site a", &err);
    CHECK(sc != NULL);
    pair_init(&p, sc, cc, NULL);
    CHECK(talk(&p));
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p.io.fd = sv[0];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7);
    for (size_t off = 0; off < sizeof(data); off += written) /* partial writes: a record per call */
        if (SSL_write_ex(p.server, data + off, sizeof(data) - off, &written) != 1)
            break;
    CHECK_EQ(written, 100);
    /* Four full records were sent; the last 100 bytes wait in wbuf. */
    CHECK(p.io.wlen > 100 && p.io.wlen < 200);
    while ((n = recv(sv[1], wire + nwire, sizeof(wire) - nwire, MSG_DONTWAIT)) > 0)
        nwire += (size_t)n;
    CHECK(nwire > 4 * 16384);
    BIO_write(p.c_in, wire, (int)nwire);
    BIO_write(p.c_in, p.io.wbuf, (int)p.io.wlen);
    p.io.wlen = 0;
    while (have < sizeof(got)) {
        size_t k = 0;
        if (SSL_read_ex(p.client, got + have, sizeof(got) - have, &k) != 1)
            break;
        have += k;
    }
    CHECK_EQ(have, sizeof(data));
    CHECK(memcmp(got, data, sizeof(data)) == 0);

    /* A socket that refuses (here: closed by the peer) leaves the record queued, not lost. */
    close(sv[1]);
    CHECK_EQ(SSL_write_ex(p.server, data, 20000, &written), 1);
    CHECK(written == 16384 && p.io.wlen > 16384);
    close(sv[0]);
    pair_free(&p);
    ERR_clear_error();
    SSL_CTX_free(cc);
    SSL_CTX_free(sc);
    moat_tls_lib_free(lib);
}

static void test_key_must_match_certificate(void)
{
    moat_err_t err = {0};
    moat_tls_lib_t *lib = moat_tls_lib_new(&err);
    moat_tls_cert_src_t src = {cert_der, (size_t)cert_len, other_key_der, (size_t)other_key_len, NULL, NULL,
                               0};
    SSL_CTX *s = moat_tls_ctx_new(lib, &src, 1, "site", &err);
    CHECK(s == NULL);
    CHECK_CONTAINS(err.msg, "does not match");
    src.key_der = (const unsigned char *)"garbage";
    src.key_len = 7;
    moat_err_clear(&err);
    s = moat_tls_ctx_new(lib, &src, 1, "site", &err);
    CHECK(s == NULL);
    CHECK_CONTAINS(err.msg, "private key");
    moat_tls_lib_free(lib);
}

int main(void)
{
    make_identity();
    RUN(test_handshakes_versions_and_tickets);
    RUN(test_bulk_records_written_through);
    RUN(test_key_must_match_certificate);
    OPENSSL_free(cert_der);
    OPENSSL_clear_free(key_der, (size_t)key_len);
    OPENSSL_clear_free(other_key_der, (size_t)other_key_len);
    return harness_done();
}
