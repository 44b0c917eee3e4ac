/*
 * serve --check for the reverse proxy: every upstream server is connected to once (a warning, not a
 * failure, when it does not answer: the application may start after moat), and a server that is one of
 * moat's own listeners is named (its requests would come back to moat, again and again). A server of an
 * upstream with tls: has its handshake made as the proxy makes it (the same context, name and client
 * certificate), its certificate verified, and a moment given for a refusal of moat's (TLS 1.3 servers
 * check a client certificate after the handshake).
 */
#include "server/proxy_int.h"

#include <errno.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAX_MS 3000
#define REFUSAL_WAIT_MS 300 /* after a TLS handshake: how long a server's refusal is waited for */

static int poll_for(int fd, short ev, uint64_t end)
{
    uint64_t now = moat_clock_ms();
    struct pollfd p = {fd, ev, 0};
    int rc;
    if (now >= end)
        return 0;
    do
        rc = poll(&p, 1, (int)(end - now));
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* The TLS handshake on connected <fd> with server <a> of <up> within <end>: NULL when the server's
 * certificate verified and it did not refuse moat's side, else why not (into <why>). */
static const char *tls_probe(SSL_CTX *ctx, const moat_upstream_t *up, const moat_upstream_addr_t *a, int fd,
                             uint64_t end, char *why, size_t cap)
{
    const char *name = moat__uptls_name(up, a);
    SSL *ssl = SSL_new(ctx);
    sigset_t pipe, old;
    int rc, e = 0, done = 0;
    char b[512];

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || moat__px_tls_name(up, a, ssl) != 0) {
        SSL_free(ssl);
        ERR_clear_error();
        snprintf(why, cap, "TLS: cannot set up a connection (out of memory)");
        return why;
    }
    /* a write to a server that closed raises SIGPIPE: held back here, and taken below */
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    ERR_clear_error();
    while ((rc = SSL_connect(ssl)) != 1) {
        e = SSL_get_error(ssl, rc);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            poll_for(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, end) <= 0)
            break;
    }
    if (rc == 1) {
        /* accepted? a refusal comes as an alert; a ticket, or nothing in a moment, is an acceptance */
        uint64_t wait = moat_clock_ms() + REFUSAL_WAIT_MS;
        done = 1;
        while (poll_for(fd, POLLIN, wait < end ? wait : end) > 0) {
            size_t got = 0;
            rc = SSL_read_ex(ssl, b, sizeof(b), &got);
            e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, rc);
            if (e == SSL_ERROR_WANT_READ)
                break; /* a ticket: the server keeps the session */
            if (e != SSL_ERROR_NONE) {
                done = 0;
                break;
            }
        }
    }
    if (done) {
        why = NULL;
    } else if (rc != 1 && e == SSL_ERROR_SSL && SSL_get_verify_result(ssl) != X509_V_OK) {
        char text[512];
        moat__uptls_verify_text(up, name, SSL_get_verify_result(ssl), text, sizeof(text));
        snprintf(why, cap, "TLS: %s", text);
    } else if (e == SSL_ERROR_SSL) {
        char r[256];
        moat__uptls_reason(r, sizeof(r), "a TLS protocol error");
        snprintf(why, cap, "TLS: the handshake failed: %s (name %s)", r, name);
    } else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        snprintf(why, cap, "TLS: no handshake in time (name %s)", name);
    } else {
        snprintf(why, cap, "TLS: the server closed the connection during the handshake (name %s)", name);
    }
    ERR_clear_error();
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_free(ssl);
    {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) > 0) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return why;
}

/* Connects to <a> within <ms> (and with <ctx>, makes the TLS handshake): NULL when it answers, else why
 * not. */
static const char *probe(const moat_upstream_t *up, const moat_upstream_addr_t *a, SSL_CTX *ctx, int ms)
{
    static _Thread_local char why[640];
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0, rc;
    socklen_t len = sizeof(err);
    struct pollfd p;
    if (fd < 0) {
        snprintf(why, sizeof(why), "cannot make a socket: %s", strerror(errno));
        return why;
    }
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN)
        err = errno;
    if (rc < 0 && err == 0) {
        p = (struct pollfd){fd, POLLOUT, 0};
        rc = poll(&p, 1, ms);
        if (rc == 0)
            err = ETIMEDOUT;
        else if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
    }
    if (err == 0 && ctx != NULL) {
        const char *r = tls_probe(ctx, up, a, fd, moat_clock_ms() + (uint64_t)ms, why, sizeof(why));
        close(fd);
        return r;
    }
    close(fd);
    if (err == 0)
        return NULL;
    snprintf(why, sizeof(why), "%s", err == ETIMEDOUT ? "no answer to the connect in time" : strerror(err));
    return why;
}

/* The TLS client context of <u> as the server builds it, from the store; NULL with <why> set. */
static SSL_CTX *check_ctx(moat_store_t *st, const moat_config_t *cfg, const moat_upstream_t *u,
                          const moat__der_list_t *moat_ca, char *why, size_t cap)
{
    moat__gen_upstream_t g;
    moat_err_t e = {0};
    SSL_CTX *ctx = NULL;
    memset(&g, 0, sizeof(g));
    if (st == NULL)
        moat_err_set(&e, MOAT_E_STATE, "no store to take its trust anchors from");
    else if (moat__uptls_load(st, cfg, u, moat_ca, &g, &e) == 0)
        ctx = moat__uptls_ctx_new(NULL, &g, 0, &e);
    moat_plan_anchors_dispose(&g.anchors);
    moat__site_cert_dispose(&g.client);
    if (ctx == NULL &&
        snprintf(why, cap, "TLS: not checked: %s%s%s", e.msg, e.hint[0] ? "; " : "", e.hint) < 0)
        moat_strlcpy(why, "TLS: not checked", cap);
    return ctx;
}

void moat_server_check_upstreams(const moat_config_t *cfg, moat_store_t *st, moat_upstream_report_fn report,
                                 void *arg)
{
    moat__der_list_t moat_ca;
    moat_err_t e = {0};
    memset(&moat_ca, 0, sizeof(moat_ca));
    if (st != NULL && moat__moat_ca_certs(st, &moat_ca, &e) != 0)
        moat_err_clear(&e); /* then moat-ca names nothing: the upstream's check says so */
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const moat_upstream_t *u = &cfg->upstreams[i];
        char cwhy[1024];
        SSL_CTX *ctx = u->tls.on ? check_ctx(st, cfg, u, &moat_ca, cwhy, sizeof(cwhy)) : NULL;
        for (size_t k = 0; k < u->naddrs; k++) {
            const moat_upstream_addr_t *a = &u->addrs[k];
            int ms = u->connect_s * 1000 < PROBE_MAX_MS ? (int)u->connect_s * 1000 : PROBE_MAX_MS;
            const char *why;
            for (size_t s = 0; s < cfg->nsites && a->ss.ss_family != AF_UNIX; s++) {
                const moat_site_t *site = &cfg->sites[s];
                for (size_t l = 0; l < site->nlisten + site->nhttp_listen; l++) {
                    const moat_listen_t *ls =
                        l < site->nlisten ? &site->listen[l] : &site->http_listen[l - site->nlisten];
                    char what[256];
                    if (!moat_listen_matches(ls, (const struct sockaddr *)&a->ss))
                        continue;
                    snprintf(what, sizeof(what),
                             "is moat's own listener %s (site %s): its requests would come back to moat",
                             ls->text, site->name);
                    report(arg, 0, u->name, a->text, what);
                }
            }
            if (u->tls.on && ctx == NULL) {
                report(arg, 0, u->name, a->text, cwhy);
                continue;
            }
            why = probe(u, a, ctx, ms);
            if (why == NULL && ctx != NULL) {
                snprintf(cwhy, sizeof(cwhy), "over TLS, its certificate verified for %s",
                         moat__uptls_name(u, a));
                why = cwhy;
                report(arg, 1, u->name, a->text, why);
                continue;
            }
            report(arg, why == NULL, u->name, a->text, why);
        }
        SSL_CTX_free(ctx);
    }
    moat__der_list_dispose(&moat_ca);
}

static void print_result(void *arg, int ok, const char *upstream, const char *server, const char *what)
{
    (void)arg;
    if (ok)
        printf("upstream %s: server %s answers%s%s%s\n", upstream, server, what != NULL ? " (" : "",
               what != NULL ? what : "", what != NULL ? ")" : "");
    else if (strncmp(what, "is moat's own", 13) == 0)
        printf("warning: upstream %s: server %s %s\n", upstream, server, what);
    else
        printf("warning: upstream %s: server %s: %s (requests get 502/503 until it answers)\n", upstream,
               server, what);
}

void moat__proxy_check(const moat_config_t *cfg, moat_store_t *st)
{
    moat_server_check_upstreams(cfg, st, print_result, NULL);
}
