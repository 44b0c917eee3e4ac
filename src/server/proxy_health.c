/*
 * The reverse proxy's active health checks (upstreams.NAME.health): every interval_s, each server of an
 * upstream with health.path is asked "GET PATH" on a connection of its own (Connection: close). A check
 * that is not answered with the expected status (any 2xx by default) within timeout_s marks the server
 * down: pick() in proxy.c leaves it out until a later check passes. With every server down, requests get
 * 503 no-healthy-server.
 *
 * Each worker checks for itself, on its own event loop (non-blocking connect, send and read; no thread,
 * nothing shared). The alternative, one worker checking and publishing the verdicts to the others, saves
 * the application (workers - 1) small requests per interval but needs state shared across threads that
 * outlives reloads, and leaves every worker blind when the checking one is busy or stopping. Per worker,
 * a verdict lives beside the pools and passive marks it qualifies, and a worker never routes on news
 * older than its own last check. The cost is one request per worker, server and interval.
 *
 * The checks follow the configuration the worker runs: a reload that adds, changes or removes health:
 * (or servers) applies at the worker's next tick; a server whose check settings changed is checked again
 * at once. A server is taken as up until its first check says otherwise.
 */
#include "server/proxy_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* One server of one upstream with health checks, and its check in flight. */
struct px_hc {
    moat_list_t node; /* in x->checks */
    moat__worker_t *w;
    char name[72];   /* the upstream's name */
    size_t up_index; /* its place in the configuration the worker runs (set at each sync) */
    moat_upstream_addr_t addr;
    char path[MOAT_UPSTREAM_HEALTH_PATH_MAX + 1];
    long interval_s, timeout_s, status;
    uint64_t next_ms;  /* the next check starts then */
    uint64_t until_ms; /* the check in flight fails then */
    px_upconn_t *uc;   /* the check in flight, or NULL */
    char *buf;         /* big pool while in flight: the request, then the answer */
    size_t len, sent;
    unsigned down : 1, seen : 1, connected : 1, answering : 1;
};

const px_hc_t *moat__proxy_health_of(const moat__pxw_t *x, const char *name, const char *addr)
{
    for (const moat_list_t *n = x->checks.next; n != &x->checks; n = n->next) {
        const px_hc_t *hc = moat_container_of(n, px_hc_t, node);
        if (strcmp(hc->addr.text, addr) == 0 && strcmp(hc->name, name) == 0)
            return hc;
    }
    return NULL;
}

int moat__proxy_health_down(const px_hc_t *hc)
{
    return hc->down;
}

/* Ends the check in flight (if any): its connection closed, its buffer given back. */
static void hc_stop(moat__worker_t *w, px_hc_t *hc)
{
    if (hc->uc != NULL) {
        moat__px_io_free(hc->uc);
        if (hc->uc->fd >= 0)
            close(hc->uc->fd);
        moat_free(&hc->uc);
    }
    moat_bufpool_put(&w->big, (void **)&hc->buf);
    hc->len = hc->sent = 0;
    hc->connected = hc->answering = 0;
}

static void hc_done(moat__worker_t *w, px_hc_t *hc, const char *why);

/* The client context of the check's upstream when it speaks HTTPS (the generation the worker runs), else
 * NULL: a check goes the way requests go, through the same verification. */
static SSL_CTX *hc_ctx(const moat__worker_t *w, const px_hc_t *hc)
{
    const moat__wgen_t *wg = w->cur;
    return wg != NULL && wg->up_ctx != NULL && hc->up_index < wg->gen->cfg->nupstreams
               ? wg->up_ctx[hc->up_index]
               : NULL;
}

/* Starts TLS on the connected check (an HTTPS upstream): 0, or -1 with the verdict given. */
static int hc_tls_begin(moat__worker_t *w, px_hc_t *hc, SSL_CTX *ctx)
{
    px_upconn_t *uc = hc->uc;
    const moat_upstream_t *up = &w->cur->gen->cfg->upstreams[hc->up_index];
    if ((uc->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(uc->ssl, uc->fd) != 1 ||
        moat__px_tls_name(up, &hc->addr, uc->ssl) != 0) {
        ERR_clear_error();
        hc_done(w, hc, "tls-handshake");
        return -1;
    }
    uc->ctx = ctx;
    SSL_set_connect_state(uc->ssl);
    return 0;
}

/* Steps the check's handshake: 1 done, 0 waiting, -1 failed (verdict given: tls-verify, tls-handshake). */
static int hc_tls_handshake(moat__worker_t *w, px_hc_t *hc)
{
    px_upconn_t *uc = hc->uc;
    int rc, e;
    moat_tls_err_clear();
    if ((rc = SSL_do_handshake(uc->ssl)) == 1)
        return 1;
    e = SSL_get_error(uc->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (e == SSL_ERROR_WANT_READ)
            uc->readable = 0;
        else
            uc->writable = 0;
        return 0;
    }
    uc->tls_dead = 1;
    e = e == SSL_ERROR_SSL && SSL_get_verify_result(uc->ssl) != X509_V_OK;
    ERR_clear_error();
    hc_done(w, hc, e ? "tls-verify" : "tls-handshake");
    return -1;
}

/* The check's verdict: <why> NULL passed, else the reason it failed. Logged when the state changes. */
static void hc_done(moat__worker_t *w, px_hc_t *hc, const char *why)
{
    hc_stop(w, hc);
    if (why == NULL && hc->down)
        moat_log(MOAT_LOG_NOTICE, NULL,
                 "worker %u: upstream %s: server %s passes its health check (%s): back in "
                 "service",
                 w->id, hc->name, hc->addr.text, hc->path);
    else if (why != NULL && !hc->down)
        moat_log(MOAT_LOG_WARN, NULL,
                 "worker %u: upstream %s: server %s failed its health check (%s: %s): no requests go to it "
                 "until it passes one",
                 w->id, hc->name, hc->addr.text, hc->path, why);
    hc->down = why != NULL;
}

static void hc_start(moat__worker_t *w, px_hc_t *hc)
{
    const moat_upstream_addr_t *a = &hc->addr;
    int fd, rc, n;

    hc->next_ms = w->loop.now_ms + (uint64_t)hc->interval_s * 1000u;
    hc->until_ms = w->loop.now_ms + (uint64_t)hc->timeout_s * 1000u;
    if ((hc->buf = moat_bufpool_get(&w->big)) == NULL || (hc->uc = moat_calloc(1, sizeof(*hc->uc))) == NULL) {
        hc_stop(w, hc); /* out of memory: no verdict, the next interval tries again */
        return;
    }
    n = snprintf(hc->buf, w->big.size,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-health-check\r\n"
                 "Connection: close\r\n\r\n",
                 hc->path, a->text);
    hc->len = n > 0 && (size_t)n < w->big.size ? (size_t)n : 0;
    hc->uc->tag = TAG_UPSTREAM;
    hc->uc->hc = hc;
    hc->uc->fd = -1;
    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        hc_done(w, hc, strerror(errno));
        return;
    }
    hc->uc->fd = fd;
    do
        rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
        hc_done(w, hc, errno == ECONNREFUSED ? "connect-refused" : strerror(errno));
        return;
    }
    if (moat_loop_add(&w->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, hc->uc) != 0)
        hc_done(w, hc, "cannot watch the connection");
}

/* Moves the check on: connected, request sent, answer read. A verdict ends it. */
static void hc_step(moat__worker_t *w, px_hc_t *hc)
{
    px_upconn_t *uc = hc->uc;
    if (!hc->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (!uc->writable)
            return;
        if (getsockopt(uc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err != 0) {
            hc_done(w, hc, err == ECONNREFUSED ? "connect-refused" : strerror(err));
            return;
        }
        hc->connected = 1;
        SSL_CTX *ctx = hc_ctx(w, hc);
        if (ctx != NULL && hc_tls_begin(w, hc, ctx) != 0)
            return;
    }
    if (uc->ssl != NULL && !SSL_is_init_finished(uc->ssl)) {
        if (!uc->readable && !uc->writable)
            return;
        if (hc_tls_handshake(w, hc) != 1)
            return;
    }
    while (!hc->answering && uc->writable) {
        ssize_t n = moat__px_io_write(uc, hc->buf + hc->sent, hc->len - hc->sent);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            hc_done(w, hc, "reset");
            return;
        }
        if ((hc->sent += (size_t)n) == hc->len) {
            hc->answering = 1;
            hc->len = 0;
        }
    }
    while (hc->answering && uc->readable) {
        moat_http_uhead_t uh;
        ssize_t n = moat__px_io_read(uc, hc->buf + hc->len, w->big.size - hc->len);
        int rc;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            hc_done(w, hc, "reset");
            return;
        }
        hc->len += (size_t)n;
        rc = moat_http_uhead_parse(&uh, hc->buf, hc->len, w->big.size, 0);
        if (rc == MOAT_E_AGAIN)
            continue;
        if (rc != 0) {
            hc_done(w, hc, "bad-response");
            return;
        }
        if (hc->status == 0 ? uh.status / 100 == 2 : uh.status == hc->status) {
            hc_done(w, hc, NULL);
        } else {
            char why[48];
            snprintf(why, sizeof(why), "status %d", uh.status);
            hc_done(w, hc, why);
        }
        return;
    }
}

void moat__proxy_health_event(px_upconn_t *uc, uint32_t events)
{
    moat__px_io_event(uc, events);
    hc_step(uc->hc->w, uc->hc);
}

static void hc_free(moat__worker_t *w, px_hc_t *hc)
{
    hc_stop(w, hc);
    moat_list_remove(&hc->node);
    moat_free(&hc);
}

/* The checks of the configuration the worker runs: new servers get one, changed settings are checked
 * again at once, servers (or upstreams) no longer checked lose theirs. */
static void hc_sync(moat__worker_t *w, moat__pxw_t *x, const moat_config_t *cfg)
{
    moat_list_t *n, *next;
    x->checks_gen++; /* checks come and go: the request path looks them up again */
    for (n = x->checks.next; n != &x->checks; n = n->next)
        moat_container_of(n, px_hc_t, node)->seen = 0;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const moat_upstream_t *up = &cfg->upstreams[i];
        if (up->health.path == NULL)
            continue;
        for (size_t k = 0; k < up->naddrs; k++) {
            px_hc_t *hc = NULL;
            for (n = x->checks.next; n != &x->checks && hc == NULL; n = n->next) {
                px_hc_t *c = moat_container_of(n, px_hc_t, node);
                if (strcmp(c->name, up->name) == 0 && strcmp(c->addr.text, up->addrs[k].text) == 0)
                    hc = c;
            }
            if (hc == NULL) {
                if ((hc = moat_calloc(1, sizeof(*hc))) == NULL)
                    continue;
                hc->w = w;
                moat_strlcpy(hc->name, up->name, sizeof(hc->name));
                moat_list_push_tail(&x->checks, &hc->node);
            }
            if (strcmp(hc->path, up->health.path) != 0 || hc->interval_s != up->health.interval_s ||
                hc->timeout_s != up->health.timeout_s || hc->status != up->health.status ||
                memcmp(&hc->addr, &up->addrs[k], sizeof(hc->addr)) != 0) {
                hc_stop(w, hc);
                hc->addr = up->addrs[k];
                moat_strlcpy(hc->path, up->health.path, sizeof(hc->path));
                hc->interval_s = up->health.interval_s;
                hc->timeout_s = up->health.timeout_s;
                hc->status = up->health.status;
                hc->next_ms = 0; /* now */
            }
            hc->up_index = i;
            hc->seen = 1;
        }
    }
    for (n = x->checks.next; n != &x->checks; n = next) {
        px_hc_t *hc = moat_container_of(n, px_hc_t, node);
        next = n->next;
        if (!hc->seen)
            hc_free(w, hc);
    }
}

int moat__proxy_health_wanted(const moat__worker_t *w)
{
    const moat_config_t *cfg = w->cur != NULL ? w->cur->gen->cfg : NULL;
    for (size_t i = 0; cfg != NULL && i < cfg->nupstreams; i++)
        if (cfg->upstreams[i].health.path != NULL)
            return 1;
    return 0;
}

void moat__proxy_health_tick(moat__worker_t *w, moat__pxw_t *x)
{
    uint64_t now = w->loop.now_ms;
    if (w->cur != NULL && (!x->checks_synced || w->cur->gen->seq != x->checks_seq)) {
        hc_sync(w, x, w->cur->gen->cfg);
        x->checks_seq = w->cur->gen->seq;
        x->checks_synced = 1;
    }
    for (moat_list_t *n = x->checks.next; n != &x->checks; n = n->next) {
        px_hc_t *hc = moat_container_of(n, px_hc_t, node);
        if (hc->uc != NULL && hc->until_ms <= now)
            hc_done(w, hc, hc->connected ? "response-timeout" : "connect-timeout");
        else if (hc->uc == NULL && hc->next_ms <= now && !atomic_load(&w->srv->stopping))
            hc_start(w, hc);
    }
}

void moat__proxy_health_free(moat__worker_t *w, moat__pxw_t *x)
{
    while (!moat_list_empty(&x->checks))
        hc_free(w, moat_container_of(x->checks.next, px_hc_t, node));
}
