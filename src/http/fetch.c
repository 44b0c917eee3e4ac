/*
 * The client transport over the response parser of client.c: one request on one connection
 * ("Connection: close"), plain http or https, every step bounded by a deadline and a stop flag, so the
 * thread that fetches (the CRL fetcher, the ACME client) never waits past either. Redirects are the
 * caller's business.
 */
#include "http/http_int.h"

#include "core/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long long remaining_ms(uint64_t deadline)
{
    uint64_t now = moat_clock_ms();
    return now >= deadline ? 0 : (long long)(deadline - now);
}

/* Waits for <events> until <deadline>, in slices, so that a stopping thread does not wait for a slow
 * peer: MOAT_E_AGAIN at the deadline or once <stop> is set. */
static int wait_fd(int fd, short events, uint64_t deadline, const atomic_int *stop)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        long long ms = remaining_ms(deadline);
        int n;
        if (ms <= 0 || (stop != NULL && atomic_load(stop)))
            return MOAT_E_AGAIN;
        n = poll(&p, 1, (int)(ms < 200 ? ms : 200));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return MOAT_E_IO;
    }
}

static int dial(const moat_http_url_t *u, uint64_t deadline, const atomic_int *stop, moat_err_t *err)
{
    struct addrinfo *res = NULL;
    int fd = -1, last = 0;
    char port[8];

    snprintf(port, sizeof(port), "%u", u->port);
    if (moat_resolve(u->host, port, 0, deadline, stop, &res, err) != 0)
        return -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        int soerr = 0;
        socklen_t slen = sizeof(soerr);
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline, stop) != 0 ||
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
                last = soerr != 0 ? soerr : (errno != EINPROGRESS ? errno : ETIMEDOUT);
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        moat_err_set(err, MOAT_E_IO, "cannot connect to %s: %s", u->hostport,
                     strerror(last ? last : ETIMEDOUT));
    return fd;
}

typedef struct conn {
    int fd;
    SSL *ssl; /* NULL for plain http */
    const moat_http_url_t *u;
    uint64_t deadline;
    const atomic_int *stop;
} conn_t;

/* Waits for what OpenSSL asked for after <r> (SSL_ERROR_WANT_*); 0 to retry, else an error. */
static int tls_wait(conn_t *c, int r, const char *doing, moat_err_t *err)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, c->deadline, c->stop) != 0)
            return moat_err_set(err, MOAT_E_IO, "%s %s: no answer in time", doing, c->u->hostport);
        return 0;
    }
    if (e == SSL_ERROR_SSL) {
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            ERR_clear_error();
            moat_err_set(err, MOAT_E_PKI, "%s %s: its certificate does not verify: %s", doing, c->u->hostport,
                         X509_verify_cert_error_string(vr));
            return moat_err_hint(err, "name the anchor of that server with trust: (moat trust add FILE)");
        }
        return moat_err_ossl(err, MOAT_E_PKI, "%s %s", doing, c->u->hostport);
    }
    ERR_clear_error();
    return moat_err_set(err, MOAT_E_IO, "%s %s: %s", doing, c->u->hostport,
                        e == SSL_ERROR_ZERO_RETURN ? "the connection closed"
                                                   : (errno ? strerror(errno) : "the connection failed"));
}

static int tls_start(conn_t *c, X509_STORE *trust, moat_err_t *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    unsigned char ip[16];
    int r;

    if (ctx == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "creating a TLS client context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (trust != NULL)
        SSL_CTX_set1_cert_store(ctx, trust);
    else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return moat_err_ossl(err, MOAT_E_PKI, "loading the system trust store");
    }
    c->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return moat_err_ossl(err, MOAT_E_PKI, "creating a TLS connection");
    if (inet_pton(AF_INET, c->u->host, ip) == 1 || inet_pton(AF_INET6, c->u->host, ip) == 1) {
        /* IP literals carry no SNI (RFC 6066 §3); the certificate must name the address. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->u->host) != 1)
            return moat_err_ossl(err, MOAT_E_PKI, "setting the expected address");
    } else if (SSL_set_tlsext_host_name(c->ssl, c->u->host) != 1 || SSL_set1_host(c->ssl, c->u->host) != 1) {
        return moat_err_ossl(err, MOAT_E_PKI, "setting the expected name");
    }
    while ((r = SSL_connect(c->ssl)) != 1)
        if (tls_wait(c, r, "TLS handshake with", err) != 0)
            return err->code;
    return 0;
}

static int conn_send(conn_t *c, const void *data, size_t len, moat_err_t *err)
{
    size_t off = 0;
    while (off < len) {
        if (c->ssl != NULL) {
            size_t n = 0;
            int r = SSL_write_ex(c->ssl, (const char *)data + off, len - off, &n);
            if (r == 1)
                off += n;
            else if (tls_wait(c, r, "sending to", err) != 0)
                return err->code;
            continue;
        }
        ssize_t k = send(c->fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
        if (k > 0) {
            off += (size_t)k;
        } else if (k < 0 && errno == EAGAIN) {
            if (wait_fd(c->fd, POLLOUT, c->deadline, c->stop) != 0)
                return moat_err_set(err, MOAT_E_IO, "timed out sending the request to %s", c->u->hostport);
        } else if (k < 0 && errno != EINTR) {
            return moat_err_set(err, MOAT_E_IO, "sending the request to %s: %s", c->u->hostport,
                                strerror(errno));
        }
    }
    return 0;
}

/* Reads what is there into buf: >0 bytes, 0 at the end of the stream, or an error. */
static long conn_recv(conn_t *c, uint8_t *buf, size_t cap, int timeout_s, moat_err_t *err)
{
    for (;;) {
        if (c->ssl != NULL) {
            size_t n = 0;
            int r = SSL_read_ex(c->ssl, buf, cap, &n);
            if (r == 1)
                return (long)n;
            int e = SSL_get_error(c->ssl, r);
            /* A peer that closes without close_notify ends the stream too: the framing of the
             * response (Content-Length, chunked) says whether it was cut short. */
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                ERR_clear_error();
                return 0;
            }
            if (e == SSL_ERROR_SSL &&
                ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                ERR_clear_error();
                return 0;
            }
            if (tls_wait(c, r, "reading from", err) != 0)
                return err->code;
            continue;
        }
        ssize_t k = recv(c->fd, buf, cap, 0);
        if (k >= 0)
            return (long)k;
        if (errno == EAGAIN) {
            if (wait_fd(c->fd, POLLIN, c->deadline, c->stop) != 0)
                return moat_err_set(err, MOAT_E_IO, "%s did not answer within %d s", c->u->hostport,
                                    timeout_s);
        } else if (errno != EINTR) {
            return moat_err_set(err, MOAT_E_IO, "reading from %s: %s", c->u->hostport, strerror(errno));
        }
    }
}

int moat_http_fetch(const moat_http_fetch_t *f, moat_http_client_resp_t *r, uint8_t **body, size_t *body_len,
                    moat_err_t *err)
{
    moat_http_url_t u;
    conn_t c = {-1, NULL, &u, 0, f->stop};
    size_t cap = f->max_body + 16384 + 1, bufcap = 0, len = 0;
    char head[MOAT_HTTP_URL_MAX + 1024];
    uint8_t *buf = NULL;
    int n, rc, eof = 0;

    *body = NULL;
    *body_len = 0;
    c.deadline = moat_clock_ms() + (uint64_t)f->timeout_ms;
    if ((rc = moat_http_url_parse_ex(f->url, f->https ? MOAT_HTTP_URL_HTTPS : 0, &u, err)) != 0)
        return rc;
    n = snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat/%s\r\nAccept: %s\r\n%s%s%s"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 f->method ? f->method : "GET", u.path, u.hostport, MOAT_VERSION,
                 f->accept ? f->accept : "*/*", f->content_type ? "Content-Type: " : "",
                 f->content_type ? f->content_type : "", f->content_type ? "\r\n" : "", f->body_len);
    if (n < 0 || (size_t)n >= sizeof(head))
        return moat_err_set(err, MOAT_E_LIMIT, "the request head for %s is too long", u.hostport);
    /* A GET carries no body: leave Content-Length out (some servers refuse it there). */
    if (f->body == NULL || f->method == NULL || strcmp(f->method, "GET") == 0) {
        char *cl = strstr(head, "Content-Length: ");
        char *eol = cl != NULL ? strstr(cl, "\r\n") : NULL;
        if (eol != NULL) {
            memmove(cl, eol + 2, strlen(eol + 2) + 1);
            n = (int)strlen(head);
        }
    }
    if ((c.fd = dial(&u, c.deadline, f->stop, err)) < 0)
        return err->code;
    if (u.tls && (rc = tls_start(&c, f->trust, err)) != 0)
        goto out;
    if ((rc = conn_send(&c, head, (size_t)n, err)) != 0)
        goto out;
    if (f->body != NULL && f->body_len > 0 && (rc = conn_send(&c, f->body, f->body_len, err)) != 0)
        goto out;
    for (;;) {
        long k;
        if (len == bufcap) {
            size_t ncap = bufcap == 0 ? 65536 : (bufcap > cap / 2 ? cap : bufcap * 2);
            uint8_t *nb;
            if (bufcap == cap) {
                rc = moat_err_set(err, MOAT_E_LIMIT, "%s sent more than %zu bytes", u.hostport, f->max_body);
                goto out;
            }
            if ((nb = moat_realloc(buf, ncap)) == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading from %s", u.hostport);
                goto out;
            }
            buf = nb;
            bufcap = ncap;
        }
        k = conn_recv(&c, buf + len, bufcap - len, f->timeout_ms / 1000, err);
        if (k < 0) {
            rc = (int)k;
            goto out;
        }
        if (k == 0)
            eof = 1;
        len += (size_t)k;
        rc = moat_http_client_parse(buf, len, eof, f->max_body, r, err);
        if (rc == MOAT_E_AGAIN && !eof)
            continue;
        if (rc == MOAT_E_AGAIN)
            rc = moat_err_set(err, MOAT_E_INVAL, "the connection closed before the response ended");
        if (rc != 0) {
            moat_err_prefix(err, "%s answered badly", u.hostport);
            goto out;
        }
        break;
    }
    memmove(buf, buf + r->body_off, r->body_len);
    buf[r->body_len] = '\0'; /* room: the buffer held the head too */
    *body = buf;
    *body_len = r->body_len;
    buf = NULL;
    rc = 0;
out:
    SSL_free(c.ssl);
    close(c.fd);
    moat_free(&buf);
    return rc;
}
