/*
 * HTTPS upstreams: what an upstream with tls: verifies and presents, loaded from the store with each
 * generation (its anchors by name, tls.client_key's certificate), one client SSL_CTX per worker and
 * generation, and the TLS side of the proxy's connections on the worker's event loop.
 *
 * - Handshake, reads and writes are non-blocking: WANT_READ / WANT_WRITE clear the connection's readable /
 *   writable flag, and the epoll event that sets it again (EPOLLIN for a write that wants to read, EPOLLOUT
 *   for a read that wants to write) runs the request again.
 * - Verification: the server's chain against exactly the upstream's anchors, and the name: tls.server_name,
 *   or the host the server was written with (a DNS name, sent as SNI too, or an IP address, checked against
 *   the certificate's IP SANs). A refused certificate is X-Moat-Upstream: tls-verify; any other failure of
 *   the handshake (the server wants a client certificate, speaks no TLS) is tls-handshake.
 * - Sessions: each server's pool keeps the last session its server gave (TLS 1.3 tickets too) with the
 *   context it belongs to (referenced, so a new generation's context never takes an old one's session),
 *   and the next new connection resumes it.
 */
#include "server/proxy_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- loading (control thread) -------------------------------------------------------------------- */

static void trust_text(const moat_upstream_t *u, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    if (u->tls.trust.n == 0) {
        moat_strlcpy(out, "moat-ca + trust store", cap);
        return;
    }
    for (size_t i = 0; i < u->tls.trust.n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", u->tls.trust.v[i]);
}

void moat__uptls_verify_text(const moat_upstream_t *up, const char *name, long verify, char *out, size_t cap)
{
    char trust[256];
    trust_text(up, trust, sizeof(trust));
    snprintf(out, cap, "its certificate is refused: %s (the name checked: %s; tls.trust: %s)",
             X509_verify_cert_error_string(verify), name, trust);
}

const char *moat__uptls_name(const moat_upstream_t *up, const moat_upstream_addr_t *a)
{
    return up->tls.server_name != NULL ? up->tls.server_name : a->host;
}

int moat__uptls_load(moat_store_t *st, const moat_config_t *cfg, const moat_upstream_t *u,
                     const moat__der_list_t *moat_ca, moat__gen_upstream_t *out, moat_err_t *err)
{
    char key[128];
    size_t bad = 0;
    int rc;

    snprintf(key, sizeof(key), "upstreams.%s.tls.trust", u->name);
    for (size_t i = 0; i < u->tls.trust.n; i++) {
        if (strcmp(u->tls.trust.v[i], "moat-ca") == 0 && moat_ca->n == 0) {
            moat_err_set(err, MOAT_E_CONFIG, "\"moat-ca\": this store has no CA");
            moat_err_hint(err, "create it (moat ca init), or name other anchors");
            return moat_config_err_at(err, cfg, u->tls.trust_at[i], key);
        }
    }
    rc = moat_plan_anchors_named(st, &u->tls.trust, &out->anchors, &bad, err);
    if (rc == MOAT_E_NOTFOUND && u->tls.trust.n > 0) {
        const char *name = u->tls.trust.v[bad];
        moat_err_set(err, MOAT_E_CONFIG, "\"%s\": no such trust anchor in the store", name);
        moat_err_hint(err,
                      "add the CA that issued the servers' certificates: moat trust add FILE --name %s "
                      "(moat-ca names moat's own CA)",
                      name);
        return moat_config_err_at(err, cfg, u->tls.trust_at[bad], key);
    }
    if (rc != 0)
        return moat_err_prefix(err, "%s", key);
    if (out->anchors.n == 0) {
        moat_err_set(err, MOAT_E_CONFIG, "no trust anchor: the store has no CA and no anchor");
        moat_err_hint(err, "create moat's CA (moat ca init) or add the servers' CA: moat trust add FILE "
                           "--name NAME, then name it in tls.trust");
        return moat_config_err_at(err, cfg, u->tls.at, key);
    }
    if (u->tls.client_key != NULL) {
        moat_store_cert_t c;
        memset(&c, 0, sizeof(c));
        snprintf(key, sizeof(key), "upstreams.%s.tls.client_key", u->name);
        rc = moat_store_cert_current(st, u->tls.client_key, &c, err);
        if (rc == MOAT_E_NOTFOUND) {
            moat_store_cert_dispose(&c);
            moat_err_set(err, MOAT_E_CONFIG, "\"%s\": no key of that name with a certificate in the store",
                         u->tls.client_key);
            moat_err_hint(err,
                          "issue one: moat ca issue %s --cn NAME --profile client (or install the "
                          "certificate the servers' CA issued: moat cert install)",
                          u->tls.client_key);
            return moat_config_err_at(err, cfg, u->tls.client_key_at, key);
        }
        if (rc == 0)
            rc = moat__site_cert_load(st, &c, &out->client, err);
        moat_store_cert_dispose(&c);
        if (rc != 0)
            return moat_config_err_at(err, cfg, u->tls.client_key_at, key);
    }
    return 0;
}

/* A new session from a server (after a handshake, or a TLS 1.3 ticket later): its pool keeps it for the
 * next connection. 1: taken. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    px_upconn_t *uc = SSL_get_app_data(ssl);
    px_pool_t *p = uc != NULL ? uc->pool : NULL;
    if (p == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    if (p->sess_ctx != uc->ctx) {
        if (SSL_CTX_up_ref(uc->ctx) != 1)
            return 0;
        SSL_CTX_free(p->sess_ctx);
        p->sess_ctx = uc->ctx;
    }
    SSL_SESSION_free(p->sess);
    p->sess = sess;
    return 1;
}

SSL_CTX *moat__uptls_ctx_new(OSSL_LIB_CTX *libctx, const moat__gen_upstream_t *g, int sessions,
                             moat_err_t *err)
{
    moat_tls_cert_src_t client = {0};
    const unsigned char **der = moat_calloc(g->anchors.n ? g->anchors.n : 1, sizeof(*der));
    size_t *len = moat_calloc(g->anchors.n ? g->anchors.n : 1, sizeof(*len));
    SSL_CTX *ctx = NULL;
    if (der == NULL || len == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory making the upstream's TLS context");
        goto out;
    }
    for (size_t i = 0; i < g->anchors.n; i++) {
        der[i] = g->anchors.der[i].data;
        len[i] = g->anchors.der[i].len;
    }
    if (g->client.cert_der != NULL) {
        client.cert_der = g->client.cert_der;
        client.cert_len = g->client.cert_len;
        client.key_der = g->client.key_der;
        client.key_len = g->client.key_len;
        client.chain_der = (const unsigned char *const *)g->client.chain_der;
        client.chain_len = g->client.chain_len;
        client.nchain = g->client.nchain;
    }
    ctx = moat_tls_client_ctx_new(libctx, der, len, g->anchors.n, g->client.cert_der != NULL ? &client : NULL,
                                  err);
    if (ctx != NULL && sessions)
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    else if (ctx != NULL)
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
out:
    moat_free(&der);
    moat_free(&len);
    return ctx;
}

/* ---- connections (worker) ------------------------------------------------------------------------- */

/* The OpenSSL reason of the last failure, for the log (this thread's). */
static _Thread_local char tls_why[256];

void moat__uptls_reason(char *out, size_t cap, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL, *a;
    if (r == NULL)
        moat_strlcpy(out, fallback, cap);
    else if ((a = strstr(r, " alert ")) != NULL)
        snprintf(out, cap, "the server said: %s", a + 7); /* its TLS alert, by name */
    else
        moat_strlcpy(out, r, cap);
}

static void note_ossl(const char *fallback)
{
    moat__uptls_reason(tls_why, sizeof(tls_why), fallback);
    ERR_clear_error();
}

const char *moat__px_tls_why(void)
{
    return tls_why;
}

int moat__px_tls_name(const moat_upstream_t *up, const moat_upstream_addr_t *a, SSL *ssl)
{
    const char *name = moat__uptls_name(up, a);
    unsigned char ip[16];
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

int moat__px_tls_begin(moat__proxy_t *px, SSL_CTX *ctx)
{
    px_upconn_t *uc = px->uc;
    px_pool_t *p = px->pool;
    if ((uc->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(uc->ssl, uc->fd) != 1 ||
        moat__px_tls_name(px->up, &px->up->addrs[px->server], uc->ssl) != 0) {
        ERR_clear_error();
        return -1;
    }
    uc->ctx = ctx;
    SSL_set_app_data(uc->ssl, uc);
    if (p->sess != NULL && p->sess_ctx == ctx)
        (void)SSL_set_session(uc->ssl, p->sess);
    SSL_set_connect_state(uc->ssl);
    return 0;
}

/* Why the handshake with <px>'s server failed: the reason token, with the error log line. */
static const char *handshake_failed(moat__proxy_t *px, int sslerr)
{
    px_upconn_t *uc = px->uc;
    const moat_upstream_t *up = px->up;
    const char *name = moat__uptls_name(up, &up->addrs[px->server]);
    long v = SSL_get_verify_result(uc->ssl);
    char what[512];
    if (sslerr == SSL_ERROR_SSL && v != X509_V_OK) {
        ERR_clear_error();
        moat__uptls_verify_text(up, name, v, what, sizeof(what));
        moat__conn_log(px->r->conn, MOAT_LOG_ERR, "upstream %s %s: TLS: %s", up->name, px->addr, what);
        return "tls-verify";
    }
    if (sslerr == SSL_ERROR_SSL)
        note_ossl("a TLS protocol error");
    else if (sslerr == SSL_ERROR_SYSCALL)
        moat_strlcpy(tls_why, errno != 0 ? strerror(errno) : "the server closed the connection",
                     sizeof(tls_why));
    else
        moat_strlcpy(tls_why, "the handshake failed", sizeof(tls_why));
    ERR_clear_error();
    moat__conn_log(px->r->conn, MOAT_LOG_ERR, "upstream %s %s: TLS: the handshake failed: %s (name %s)",
                   up->name, px->addr, tls_why, name);
    return "tls-handshake";
}

int moat__px_tls_handshake(moat__proxy_t *px, const char **reason)
{
    px_upconn_t *uc = px->uc;
    int rc, e;
    moat_tls_err_clear();
    errno = 0;
    rc = SSL_do_handshake(uc->ssl);
    if (rc == 1)
        return 1;
    e = SSL_get_error(uc->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        uc->readable = 0;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        uc->writable = 0;
        return 0;
    }
    uc->tls_dead = 1;
    *reason = handshake_failed(px, e);
    return -1;
}

/* The result of a failed SSL_read/SSL_write as read()/send() give it: -1 with errno (EAGAIN: wait for the
 * flag the operation needs), or 0 for the server's close_notify. */
static ssize_t io_failed(px_upconn_t *uc, int rc, int writing)
{
    int e = SSL_get_error(uc->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (writing) {
            uc->writable = 0;
            uc->wr_wants_r = 1;
        } else {
            uc->readable = 0;
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (writing) {
            uc->writable = 0;
        } else {
            uc->readable = 0;
            uc->rd_wants_w = 1;
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        uc->tls_dead = 1;
        if (errno == 0 || errno == EAGAIN)
            errno = ECONNRESET; /* the server closed without close_notify */
        return -1;
    default:
        note_ossl("a TLS protocol error");
        uc->tls_dead = 1;
        errno = EPROTO;
        return -1;
    }
}

/* One read (into <rbuf>) or send (of <wbuf>) of <n> bytes, plain or TLS, as moat__px_io_read/_write say. */
static ssize_t io(px_upconn_t *uc, char *rbuf, const char *wbuf, size_t n)
{
    int writing = rbuf == NULL, rc;
    ssize_t got;
    size_t done = 0;
    if (uc->ssl == NULL) {
        do
            got = writing ? send(uc->fd, wbuf, n, MSG_NOSIGNAL) : read(uc->fd, rbuf, n);
        while (got < 0 && errno == EINTR);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (writing)
                uc->writable = 0;
            else
                uc->readable = 0;
        } else if (!writing && got > 0 && (size_t)got < n && !uc->peer_hup) {
            uc->readable = 0; /* a short read drained the socket: the next arrival raises a new edge */
        }
        return got;
    }
    if (writing)
        uc->wr_wants_r = 0;
    else
        uc->rd_wants_w = 0;
    moat_tls_err_clear();
    errno = 0;
    rc = writing ? SSL_write_ex(uc->ssl, wbuf, n, &done) : SSL_read_ex(uc->ssl, rbuf, n, &done);
    if (rc == 1)
        return (ssize_t)done;
    return io_failed(uc, rc, writing);
}

void moat__px_io_event(px_upconn_t *uc, uint32_t events)
{
    int in = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    int out = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
    if (in)
        uc->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        uc->peer_hup = 1; /* the end of the stream is read, not waited for */
    if (out)
        uc->writable = 1;
    if (out && uc->rd_wants_w)
        uc->readable = 1;
    if (in && uc->wr_wants_r)
        uc->writable = 1;
}

ssize_t moat__px_io_read(px_upconn_t *uc, char *buf, size_t n)
{
    return io(uc, buf, NULL, n);
}

ssize_t moat__px_io_write(px_upconn_t *uc, const char *buf, size_t n)
{
    return io(uc, NULL, buf, n);
}

void moat__px_io_shutdown_wr(px_upconn_t *uc)
{
    if (uc->ssl == NULL) {
        (void)shutdown(uc->fd, SHUT_WR);
        return;
    }
    /* close_notify: the server reads the end of the stream; what it still sends is read on */
    moat_tls_err_clear();
    (void)SSL_shutdown(uc->ssl);
    ERR_clear_error();
}

int moat__px_io_idle_ok(px_upconn_t *uc)
{
    char b;
    ssize_t n;
    if (uc->ssl == NULL) {
        n = recv(uc->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    /* A TLS 1.3 ticket after the answer is taken here (and its session kept); anything else is the server
     * closing, or bytes nobody asked for. */
    n = moat__px_io_read(uc, &b, 1);
    return n < 0 && errno == EAGAIN && !uc->rd_wants_w;
}

void moat__px_io_reuse(px_upconn_t *uc)
{
    /* Whatever the server sent or closed while the connection was idle raised an event that closed it
     * (moat__proxy_event); a TLS record OpenSSL holds already is read at once. */
    if (uc->ssl == NULL || !SSL_has_pending(uc->ssl))
        uc->readable = 0;
}

void moat__px_io_free(px_upconn_t *uc)
{
    if (uc->ssl == NULL)
        return;
    SSL_set_app_data(uc->ssl, NULL);
    if (!uc->tls_dead && SSL_is_init_finished(uc->ssl)) {
        /* close_notify, when the socket takes it now: the server sees an orderly end */
        moat_tls_err_clear();
        (void)SSL_shutdown(uc->ssl);
        ERR_clear_error();
    }
    SSL_free(uc->ssl);
    uc->ssl = NULL;
}

void moat__px_pool_forget(px_pool_t *p)
{
    SSL_SESSION_free(p->sess);
    p->sess = NULL;
    SSL_CTX_free(p->sess_ctx);
    p->sess_ctx = NULL;
}
