/*
 * server/ through an in-memory connection: the real worker, generation, connection state machine and
 * request handling, fed over a socket pair instead of an accepted socket (bytes in, response bytes out;
 * no listener, no network). The worker turns on this thread (moat__worker_turn); a TLS client on the
 * other end of the pair runs between the turns.
 *
 * Covers routing (Host among a listener's sites, the https redirect, 421 for a name the certificate was
 * not chosen for), client-certificate verdicts and the 403 page, whoami, CA publication and OCSP routing
 * (moat's CA made with `moat ca init`; a site without ca_publish answers neither), the ACME server's
 * routing to its service and back (a full queue: 503 with a problem document), HTTP/2 and HTTP/1.1
 * through the same handling, and the ClientHello SNI reader.
 */
#include "acme/acme_server_int.h"
#include "cli/cli.h"
#include "cli/groups.h"
#include "config/config.h"
#include "keymgr/keymgr.h"
#include "server/request.h"
#include "store/store.h"
#include "tls/tls.h"

#include "../harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static moat_store_t *st;
static moat_config_t *cfg;
static moat__server_t srv;
static moat__gen_t *gen;
static moat__worker_t *w;
static EVP_PKEY *root_key, *client_key;
static X509 *root_cert, *client_cert, *stranger_cert;
static EVP_PKEY *stranger_key;
static size_t bind_tls, bind_plain;

/* ---- certificates made here -------------------------------------------------------------------- */

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, const char *ext_ku,
                       const char *san, int ca, long not_after_days)
{
    X509 *x = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *e;
    static long serial = 1000;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), not_after_days * 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                               -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
                            ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (ext_ku != NULL) {
        e = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, ext_ku);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (san != NULL) {
        e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256());
    return x;
}

static char *pem_of(X509 *x, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;
    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &p);
    out = malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

/* ---- the server, in this thread ---------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static int setup(void)
{
    char db[128], mk[140], path[160], yaml[2048];
    moat_err_t err = {0};
    EVP_PKEY *server_key = EVP_EC_gen("P-256");
    X509 *server_cert;
    char *server_pem, *root_pem;
    size_t server_len, root_len;
    unsigned char *der = NULL;
    int der_len;
    int64_t key_id = 0;
    char *errors = NULL;
    moat_keymgr_install_req_t req = {0};
    moat_keymgr_install_res_t res = {0};

    snprintf(dir, sizeof(dir), "/tmp/moat-server-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(db, sizeof(db), "%s/moat.db", dir);
    snprintf(mk, sizeof(mk), "%s/moat.db.key", dir);
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err), 0);
    if (st == NULL)
        return -1;

    root_key = EVP_EC_gen("P-256");
    root_cert = make_cert(root_key, "Unit Root", NULL, NULL, NULL, NULL, 1, 30);
    server_cert = make_cert(server_key, "localhost", root_cert, root_key, "serverAuth",
                            "DNS:localhost,DNS:other.test,DNS:plain.test", 0, 30);
    client_key = EVP_EC_gen("P-256");
    client_cert = make_cert(client_key, "Alice", root_cert, root_key, "clientAuth", NULL, 0, 30);
    stranger_key = EVP_EC_gen("P-256");
    stranger_cert = make_cert(stranger_key, "Mallory", NULL, NULL, "clientAuth", NULL, 0, 30);

    CHECK_EQ(moat_store_begin(st, &err), 0);
    CHECK_EQ(moat_keymgr_key_add(st, "www", server_key, NULL, false, NULL, &key_id, &err), 0);
    der_len = i2d_X509(root_cert, &der);
    CHECK_EQ(moat_store_anchor_add(st, "unit", der, (size_t)der_len, &err), 0);
    OPENSSL_free(der);
    CHECK_EQ(moat_store_commit(st, &err), 0);
    {
        /* moat's own CA, made by the command people run (moat ca init), for CA publication and OCSP */
        char a0[] = "moat", a1[] = "--store", a3[] = "-q", a4[] = "ca", a5[] = "init";
        char *argv[] = {a0, a1, db, a3, a4, a5, NULL};
        int argc = 6;
        moat_cli_t cli = {0};
        CHECK_EQ(moat_cli_parse_globals(&cli, &argc, argv, &err), 0);
        CHECK_EQ(moat_cli_ca(&cli, argc - 1, argv + 1), 0);
    }
    server_pem = pem_of(server_cert, &server_len);
    root_pem = pem_of(root_cert, &root_len);
    req.name = "www";
    req.source = "www.pem";
    req.cert_data = (const unsigned char *)server_pem;
    req.cert_len = server_len;
    req.chain_source = "root.pem";
    req.chain_data = (const unsigned char *)root_pem;
    req.chain_len = root_len;
    CHECK_EQ(moat_keymgr_install(st, &req, &res, &err), 0);
    if (err.code != 0)
        fprintf(stderr, "install: %s\n", err.msg);
    moat_keymgr_install_res_dispose(&res);
    free(server_pem);
    free(root_pem);
    X509_free(server_cert);
    EVP_PKEY_free(server_key);

    snprintf(path, sizeof(path), "%s/www", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/www/index.html", dir);
    write_file(path, "hello from www\n");
    snprintf(path, sizeof(path), "%s/www/private", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/www/private/index.html", dir);
    write_file(path, "for alice\n");
    snprintf(path, sizeof(path), "%s/plain", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/plain/index.html", dir);
    write_file(path, "plain site\n");

    /* Port numbers only name the binds: no socket is opened. */
    snprintf(yaml, sizeof(yaml),
             "store: %s\n"
             "workers: 1\n"
             "sites:\n"
             "  - hosts: [localhost]\n"
             "    default: true\n"
             "    listen: [\"127.0.0.1:1\"]\n"
             "    http_listen: [\"127.0.0.1:2\"]\n"
             "    certificate: www\n"
             "    root: %s/www\n"
             "    require_secure_channel: true\n"
             "    client_trust: [unit]\n"
             "    client_revocation_unknown: allow\n"
             "    locations:\n"
             "      - path: /private\n"
             "        client_certificate: required\n"
             "  - hosts: [other.test]\n"
             "    listen: [\"127.0.0.1:1\"]\n"
             "    require_secure_channel: true\n"
             "    certificate: www\n"
             "    root: %s/www\n"
             "    acme_server:\n"
             "      allow: [other.test]\n"
             "  - hosts: [plain.test]\n"
             "    listen: [\"127.0.0.1:1\"]\n"
             "    http_listen: [\"127.0.0.1:2\"]\n"
             "    require_secure_channel: false\n"
             "    ca_publish: true\n"
             "    certificate: www\n"
             "    root: %s/plain\n",
             db, dir, dir, dir);
    snprintf(path, sizeof(path), "%s/moat.yaml", dir);
    if (moat_config_parse(path, yaml, strlen(yaml), &cfg, &errors, &err) != 0) {
        fprintf(stderr, "config: %s\n%s\n", err.msg, errors != NULL ? errors : "");
        moat_free(&errors);
        return -1;
    }
    moat_free(&errors);

    atomic_init(&srv.access_fd, -1);
    CHECK_EQ(moat__server_setup(&srv, cfg, 0, &err), 0);
    srv.max_conns = 64;
    CHECK_EQ(moat_tls_tickets_init(&err), 0);
    CHECK_EQ(moat__server_init_workers(&srv, cfg, &err), 0);
    if (moat__gen_build(&srv, cfg, st, NULL, &gen, &err) != 0) {
        fprintf(stderr, "generation: %s\n", err.msg);
        return -1;
    }
    CHECK_EQ(moat__gen_hand_over(&srv, gen, &err), 0);
    w = &srv.workers[0];
    srv.acme_svc = moat_acme_service_new(db, mk, 1, &err); /* what moat serve starts for acme_server */
    CHECK(srv.acme_svc != NULL);
    CHECK_EQ(moat__worker_prepare(w, &err), 0);
    if (err.code != 0) {
        fprintf(stderr, "worker: %s\n", err.msg);
        return -1;
    }
    for (size_t b = 0; b < srv.nbinds; b++) {
        if (srv.binds[b].secure)
            bind_tls = b;
        else
            bind_plain = b;
    }
    return 0;
}

static void teardown(void)
{
    char cmd[128];
    if (w != NULL) {
        atomic_store(&srv.stopping, 1);
        while (moat__worker_turn(w, 10))
            ;
        moat__worker_finish(w);
    }
    moat_acme_service_free(srv.acme_svc);
    if (w != NULL)
        moat__acme_answers(w);
    moat__server_cleanup(&srv);
    moat__gen_unref(gen);
    moat_config_unref(cfg);
    moat_store_close(st);
    X509_free(root_cert);
    X509_free(client_cert);
    X509_free(stranger_cert);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(client_key);
    EVP_PKEY_free(stranger_key);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* A connection on bind <b>: the server's end of a socket pair is handed to it as if accepted; the
 * other end is returned (non-blocking). */
static int connect_pair(size_t b)
{
    int sv[2];
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0x7f000001);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    atomic_fetch_add(&srv.nconns, 1); /* the slot accept would have taken */
    moat__conn_start(w, b, sv[0], (const struct sockaddr_storage *)&peer, sizeof(peer));
    return sv[1];
}

/* Response bytes from <fd> until the connection closes or <deadline_turns> worker turns pass with
 * nothing new; the worker turns in between. */
static size_t exchange(int fd, const char *in, size_t inlen, char *out, size_t outsz, SSL *ssl)
{
    size_t got = 0, sent = 0;
    int idle = 0;
    while (idle < 40 && got < outsz - 1) {
        ssize_t n;
        int progress = 0;
        if (sent < inlen) {
            n = ssl != NULL ? SSL_write(ssl, in + sent, (int)(inlen - sent))
                            : send(fd, in + sent, inlen - sent, 0);
            if (n > 0) {
                sent += (size_t)n;
                progress = 1;
            }
        }
        (void)moat__worker_turn(w, 5);
        n = ssl != NULL ? SSL_read(ssl, out + got, (int)(outsz - 1 - got))
                        : recv(fd, out + got, outsz - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            progress = 1;
        } else if (n == 0 || (ssl != NULL && SSL_get_error(ssl, (int)n) == SSL_ERROR_ZERO_RETURN)) {
            break;
        }
        ERR_clear_error();
        idle = progress ? 0 : idle + 1;
    }
    out[got] = '\0';
    return got;
}

/* A TLS client on <fd> for <sni> (NULL: none) with an optional client certificate; handshakes with the
 * worker turning in between. NULL when the handshake fails. */
static SSL *tls_client(int fd, const char *sni, X509 *cert, EVP_PKEY *key, const char *alpn)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    SSL *ssl;
    X509_STORE_add_cert(store, root_cert);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert != NULL) {
        SSL_CTX_use_certificate(ctx, cert);
        SSL_CTX_use_PrivateKey(ctx, key);
    }
    if (alpn != NULL) {
        unsigned char wire[32];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n + 1);
    }
    ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    SSL_set_fd(ssl, fd);
    if (sni != NULL) {
        SSL_set_tlsext_host_name(ssl, sni);
        SSL_set1_host(ssl, sni);
    }
    for (int i = 0; i < 200; i++) {
        int r = SSL_connect(ssl);
        if (r == 1)
            return ssl;
        r = SSL_get_error(ssl, r);
        if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE)
            break;
        (void)moat__worker_turn(w, 5);
    }
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

/* One HTTP/1.1 request over TLS; the response into <out>. */
static size_t https_get(const char *sni, const char *host, const char *path, X509 *cert, EVP_PKEY *key,
                        const char *extra, char *out, size_t outsz)
{
    char req[512];
    int fd = connect_pair(bind_tls);
    SSL *ssl = fd >= 0 ? tls_client(fd, sni, cert, key, "http/1.1") : NULL;
    size_t n = 0;
    CHECK(ssl != NULL);
    if (ssl == NULL) {
        out[0] = '\0';
        if (fd >= 0)
            close(fd);
        return 0;
    }
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", path, host,
             extra != NULL ? extra : "");
    n = exchange(fd, req, strlen(req), out, outsz, ssl);
    SSL_free(ssl);
    close(fd);
    return n;
}

static size_t http_get(const char *host, const char *path, char *out, size_t outsz)
{
    char req[512];
    int fd = connect_pair(bind_plain);
    size_t n;
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
    n = exchange(fd, req, strlen(req), out, outsz, NULL);
    close(fd);
    return n;
}

static int status_of(const char *resp)
{
    int code = 0;
    return sscanf(resp, "HTTP/1.1 %d", &code) == 1 ? code : 0;
}

/* ---- the tests --------------------------------------------------------------------------------- */

static void test_routing_by_host_on_plain_http(void)
{
    char out[8192];
    http_get("plain.test", "/", out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "\r\n\r\nplain site\n") != NULL);
    /* localhost requires a secure channel: its plain listener redirects to https */
    http_get("localhost", "/index.html", out, sizeof(out));
    CHECK_EQ(status_of(out), 301);
    CHECK(strstr(out, "Location: https://localhost:1/index.html\r\n") != NULL);
    /* an unknown name gets the listener's default site */
    http_get("nobody.test", "/", out, sizeof(out));
    CHECK_EQ(status_of(out), 301);
}

static void test_routing_over_tls(void)
{
    char out[8192];
    https_get("localhost", "localhost", "/index.html", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "\r\n\r\nhello from www\n") != NULL);
    CHECK(strstr(out, "Strict-Transport-Security: ") == NULL); /* never for localhost */
    /* RFC 9110 15.5.20: the certificate was chosen for localhost, the request names another site */
    https_get("localhost", "other.test", "/index.html", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 421);
    https_get("other.test", "other.test", "/index.html", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "Strict-Transport-Security: max-age=") != NULL);
}

static void test_client_certificate_verdicts(void)
{
    char out[8192];
    https_get("localhost", "localhost", "/private/", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 403);
    CHECK(strstr(out, "X-Moat-Client-Cert: none\r\n") != NULL);
    https_get("localhost", "localhost", "/private/", stranger_cert, stranger_key, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 403);
    CHECK(strstr(out, "X-Moat-Client-Cert: untrusted\r\n") != NULL);
    https_get("localhost", "localhost", "/private/", client_cert, client_key, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "\r\n\r\nfor alice\n") != NULL);
    /* the rest of the site asks for none */
    https_get("localhost", "localhost", "/index.html", stranger_cert, stranger_key, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
}

static void test_whoami(void)
{
    char out[8192];
    https_get("localhost", "localhost", MOAT_WHOAMI_PATH "?format=json", client_cert, client_key, NULL, out,
              sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "\"verdict\":\"valid\"") != NULL);
    CHECK(strstr(out, "CN=Alice") != NULL);
    CHECK(strstr(out, "http/1.1") != NULL);
    https_get("localhost", "localhost", MOAT_WHOAMI_PATH, stranger_cert, stranger_key, NULL, out,
              sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "untrusted") != NULL);
}

/* The body of a response (after the blank line), or "". */
static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b != NULL ? b + 4 : "";
}

static void test_publication(void)
{
    char out[16384], want[8192];
    moat_store_ca_t ca = {0};
    moat_err_t err = {0};

    /* plain.test publishes moat's CA, over plain http and https alike */
    http_get("plain.test", "/.well-known/moat/root.pem", out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "Content-Type: application/x-x509-ca-cert\r\n") != NULL);
    CHECK_EQ(moat_store_ca_get(st, MOAT_CA_ROOT, &ca, &err), 0);
    if (ca.der.len > 0) {
        X509 *x = NULL;
        const unsigned char *p = ca.der.data;
        BIO *b = BIO_new(BIO_s_mem());
        char *pem = NULL;
        long n;
        x = d2i_X509(NULL, &p, (long)ca.der.len);
        CHECK(x != NULL);
        PEM_write_bio_X509(b, x);
        n = BIO_get_mem_data(b, &pem);
        snprintf(want, sizeof(want), "%.*s", (int)n, pem);
        CHECK_STR(body_of(out), want); /* the store's root, byte for byte */
        BIO_free(b);
        X509_free(x);
    }
    moat_store_ca_dispose(&ca);
    https_get("plain.test", "plain.test", "/.well-known/moat/root.der", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    https_get("plain.test", "plain.test", "/.well-known/moat/", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "text/html") != NULL);
    /* a site without ca_publish answers 404 for the same paths (its root is not consulted), and its
     * plain listener does not redirect them */
    http_get("localhost", "/.well-known/moat/root.pem", out, sizeof(out));
    CHECK_EQ(status_of(out), 404);
    https_get("localhost", "localhost", "/.well-known/moat/ca.crl", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 404);
}

static void test_ocsp_routing(void)
{
    char out[8192];
#define OCSP_POST(host)                                                                                      \
    "POST /.well-known/moat/ocsp HTTP/1.1\r\nHost: " host "\r\nContent-Type: application/ocsp-request\r\n"   \
    "Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    char req[512];
    int fd;
    /* the responder of a publishing site answers (a request that does not parse: malformedRequest, in
     * an OCSP response with HTTP 200, as RFC 6960 wants) */
    snprintf(req, sizeof(req), "%s", OCSP_POST("plain.test"));
    fd = connect_pair(bind_plain);
    exchange(fd, req, strlen(req), out, sizeof(out), NULL);
    close(fd);
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "Content-Type: application/ocsp-response\r\n") != NULL);
    /* GET with the request in the path (base64 with '/' and '+': routed before the path is normalised) */
    http_get("plain.test", "/.well-known/moat/ocsp/MEMwQTA/+x", out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "Content-Type: application/ocsp-response\r\n") != NULL);
    /* on a site without ca_publish the path is an ordinary (missing) file */
    http_get("localhost", "/.well-known/moat/ocsp/MEMwQTA", out, sizeof(out));
    CHECK_EQ(status_of(out), 404);
    CHECK(strstr(out, "application/ocsp-response") == NULL);
    snprintf(req, sizeof(req), "%s", OCSP_POST("other.test"));
    fd = connect_pair(bind_tls);
    {
        SSL *ssl = tls_client(fd, "other.test", NULL, NULL, "http/1.1");
        CHECK(ssl != NULL);
        if (ssl != NULL) {
            exchange(fd, req, strlen(req), out, sizeof(out), ssl);
            CHECK(strstr(out, "application/ocsp-response") == NULL);
            CHECK(status_of(out) != 200);
            SSL_free(ssl);
        }
    }
    close(fd);
}

/* /acme/ on a site with acme_server goes to the ACME service and back; a full service queue is a 503
 * problem document with Retry-After, never a dropped request; a site without acme_server has no /acme/. */
static void test_acme_routing(void)
{
    char out[8192];
    moat__acme_service_queue_max(srv.acme_svc, 0);
    https_get("other.test", "other.test", "/acme/directory", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 503);
    CHECK(strstr(out, "Content-Type: application/problem+json\r\n") != NULL);
    CHECK(strstr(out, "Retry-After: 2\r\n") != NULL);
    CHECK(strstr(out, "urn:ietf:params:acme:error:serverInternal") != NULL);
    moat__acme_service_queue_max(srv.acme_svc, 256);
    https_get("other.test", "other.test", "/acme/directory", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    CHECK(strstr(out, "\"newOrder\":\"https://other.test/acme/new-order\"") != NULL);
    CHECK(strstr(out, "Cache-Control: no-store\r\n") != NULL);
    https_get("localhost", "localhost", "/acme/directory", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 404);
}

/* The value of field <name> in the first HEADERS frame of stream 1 among the frames <p, len> ("" when
 * absent), decoded with nghttp2's HPACK inflater. */
static const char *h2_field(const char *p, size_t len, const char *name)
{
    static char value[256];
    const unsigned char *b = (const unsigned char *)p;
    nghttp2_hd_inflater *inf = NULL;
    size_t off = 0;
    value[0] = '\0';
    if (nghttp2_hd_inflate_new(&inf) != 0)
        return value;
    while (off + 9 <= len) {
        size_t flen = (size_t)b[off] << 16 | (size_t)b[off + 1] << 8 | b[off + 2];
        unsigned type = b[off + 3], sid = (unsigned)(b[off + 5] & 0x7f) << 24 | (unsigned)b[off + 6] << 16 |
                                          (unsigned)b[off + 7] << 8 | b[off + 8];
        const unsigned char *in = b + off + 9;
        size_t left = flen;
        if (off + 9 + flen > len)
            break;
        while (type == 1 && left > 0) { /* HEADERS: every block goes through the inflater */
            nghttp2_nv nv;
            int flags = 0;
            ssize_t used = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, 1);
            if (used < 0)
                break;
            in += used;
            left -= (size_t)used;
            if ((flags & NGHTTP2_HD_INFLATE_EMIT) && sid == 1 && nv.namelen == strlen(name) &&
                memcmp(nv.name, name, nv.namelen) == 0 && nv.valuelen < sizeof(value)) {
                memcpy(value, nv.value, nv.valuelen);
                value[nv.valuelen] = '\0';
            }
            if (flags & NGHTTP2_HD_INFLATE_FINAL) {
                nghttp2_hd_inflate_end_headers(inf);
                break;
            }
            if (used == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT))
                break;
        }
        off += 9 + flen;
    }
    nghttp2_hd_inflate_del(inf);
    return value;
}

static void test_h2_goes_through_the_same_handling(void)
{
    static const unsigned char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /* SETTINGS (empty), then HEADERS stream 1 END_STREAM|END_HEADERS, fields in HPACK without indexing
     * or Huffman: :method GET (static 2), :scheme https (7), :path /private/ (literal, name index 4),
     * :authority localhost (literal, name index 1). */
    unsigned char frames[128];
    size_t n = 0, blk;
    char out[16384];
    const char *path = "/private/", *auth = "localhost";
    int fd = connect_pair(bind_tls);
    SSL *ssl = tls_client(fd, "localhost", NULL, NULL, "h2");
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    size_t got;

    CHECK(ssl != NULL);
    if (ssl == NULL)
        return;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    CHECK(alen == 2 && memcmp(alpn, "h2", 2) == 0);
    memcpy(frames, preface, sizeof(preface) - 1);
    n = sizeof(preface) - 1;
    memcpy(frames + n, "\0\0\0\x04\0\0\0\0\0", 9);
    n += 9;
    blk = n + 9;
    frames[blk++] = 0x82;
    frames[blk++] = 0x87;
    frames[blk++] = 0x04;
    frames[blk++] = (unsigned char)strlen(path);
    memcpy(frames + blk, path, strlen(path));
    blk += strlen(path);
    frames[blk++] = 0x01;
    frames[blk++] = (unsigned char)strlen(auth);
    memcpy(frames + blk, auth, strlen(auth));
    blk += strlen(auth);
    frames[n] = 0;
    frames[n + 1] = 0;
    frames[n + 2] = (unsigned char)(blk - n - 9);
    frames[n + 3] = 0x01; /* HEADERS */
    frames[n + 4] = 0x05; /* END_STREAM | END_HEADERS */
    memcpy(frames + n + 5, "\0\0\0\x01", 4);
    n = blk;
    got = exchange(fd, (const char *)frames, n, out, sizeof(out), ssl);
    /* The answer: the same 403 page with the same header as over HTTP/1.1. */
    CHECK_STR(h2_field(out, got, ":status"), "403");
    CHECK_STR(h2_field(out, got, "x-moat-client-cert"), "none");
    SSL_free(ssl);
    close(fd);
}

/* The server_name extension's bytes (RFC 6066 3) for <name> of <type>, into <out>; returns the length. */
static size_t sni_ext(unsigned char *out, unsigned type, const char *name, size_t nlen)
{
    out[0] = (unsigned char)((nlen + 3) >> 8);
    out[1] = (unsigned char)(nlen + 3);
    out[2] = (unsigned char)type;
    out[3] = (unsigned char)(nlen >> 8);
    out[4] = (unsigned char)nlen;
    memcpy(out + 5, name, nlen);
    return nlen + 5;
}

static void test_sni_reader(void)
{
    unsigned char ext[600];
    char name[256], longname[300];
    size_t n;

    n = sni_ext(ext, 0, "unit.test", 9);
    CHECK_EQ(moat_tls_hello_sni(ext, n, name, sizeof(name)), 1);
    CHECK_STR(name, "unit.test");
    CHECK_EQ(moat_tls_hello_sni(ext, n - 1, name, sizeof(name)), -1); /* cut short */
    CHECK_EQ(moat_tls_hello_sni(ext, 3, name, sizeof(name)), -1);
    n = sni_ext(ext, 1, "unit.test", 9); /* another name type first */
    CHECK_EQ(moat_tls_hello_sni(ext, n, name, sizeof(name)), -1);
    n = sni_ext(ext, 0, "un\0it", 5); /* a NUL inside */
    CHECK_EQ(moat_tls_hello_sni(ext, n, name, sizeof(name)), -1);
    memset(longname, 'a', sizeof(longname));
    n = sni_ext(ext, 0, longname, sizeof(longname)); /* longer than the output */
    CHECK_EQ(moat_tls_hello_sni(ext, n, name, sizeof(name)), -1);
    n = sni_ext(ext, 0, "", 0);
    CHECK_EQ(moat_tls_hello_sni(ext, n, name, sizeof(name)), -1);
}

static void test_sni_chooses_the_site(void)
{
    /* The ClientHello callback reads the name with the reader above: other.test gets its own site (200
     * for other.test); without SNI the Host field picks among the listener's sites. */
    char out[8192];
    https_get(NULL, "other.test", "/index.html", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 200);
    https_get("other.test", "localhost", "/index.html", NULL, NULL, NULL, out, sizeof(out));
    CHECK_EQ(status_of(out), 421);
}

static void test_peer_text(void)
{
    /* The client's address as the access log and the proxy's fields write it: inet_ntop's text. */
    static const uint32_t v4[] = {0x7f000001, 0x00000000, 0xffffffff, 0x0a000a64, 0xc0a80001};
    moat__conn_t c;
    char buf[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN];

    memset(&c, 0, sizeof(c));
    c.peer.v4.sin_family = AF_INET;
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        c.peer.v4.sin_addr.s_addr = htonl(v4[i]);
        moat__conn_peer_text(&c, buf, sizeof(buf));
        inet_ntop(AF_INET, &c.peer.v4.sin_addr, want, sizeof(want));
        CHECK_STR(buf, want);
    }
    moat__conn_peer_text(&c, buf, 8); /* too small for any address: inet_ntop refuses, "-" */
    CHECK_STR(buf, "-");
    memset(&c, 0, sizeof(c));
    c.peer.v6.sin6_family = AF_INET6;
    c.peer.v6.sin6_addr = in6addr_loopback;
    moat__conn_peer_text(&c, buf, sizeof(buf));
    CHECK_STR(buf, "::1");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (setup() != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    RUN(test_routing_by_host_on_plain_http);
    RUN(test_routing_over_tls);
    RUN(test_client_certificate_verdicts);
    RUN(test_whoami);
    RUN(test_publication);
    RUN(test_ocsp_routing);
    RUN(test_acme_routing);
    RUN(test_h2_goes_through_the_same_handling);
    RUN(test_sni_reader);
    RUN(test_sni_chooses_the_site);
    RUN(test_peer_text);
    teardown();
    return harness_done();
}
