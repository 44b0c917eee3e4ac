/*
 * The reverse proxy: a request whose location has proxy: NAME goes to a server of that upstream over
 * HTTP/1.1, on the worker's own event loop.
 *
 * - Servers: round_robin or least_conn among those not marked down; a server whose connect fails is
 *   marked down for PX_DOWN_MS and tried again after, one failing its health check (proxy_health.c)
 *   until it passes one. Only an idempotent request that sent nothing (a
 *   connect that failed, or a kept connection that turned out closed before any answer) goes to another
 *   server or a new connection.
 * - Connections: non-blocking connects; a finished exchange whose server keeps the connection goes back to
 *   the worker's pool for that server (keepalive idle ones at most, idle_s each).
 * - The request head is rebuilt (proxy_head.c): hop-by-hop fields dropped, Forwarded and X-Forwarded-*
 *   set, Client-Cert and X-Moat-* never handed on from the client, the body framed by moat.
 * - Bodies stream both ways through one buffer each: moat reads from one side only when the other took
 *   what came before (back-pressure; nothing is held whole). The protocol's writer frames the response for
 *   its client (Content-Length, chunked, DATA frames).
 * - Failures before the response head answer 502/503/504 with X-Moat-Upstream: REASON and a page saying
 *   what happened; after it, the client's connection (or stream) is cut, as the upstream's was.
 * - A 101 to an Upgrade: websocket request turns the exchange into a tunnel until either side closes.
 */
#include "server/proxy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PX_DOWN_MS 5000   /* a server whose connect failed is skipped this long */
#define PX_TICK_MS 200    /* timers are looked at this often */
#define PX_HEAD_MAX 32768 /* largest upstream response head */
#define PX_ROUNDS 64      /* steps per run before yielding to the other connections */
#define PX_SPARE 64       /* finished requests' states kept per worker for the next ones */
#define PX_HEAD_KEEP 8192 /* a spare state keeps a request head buffer this large at most */

/* ---- the worker's pools ------------------------------------------------------------------------- */

static moat__pxw_t *pxw_get(moat__worker_t *w)
{
    if (w->pxw == NULL && (w->pxw = moat_calloc(1, sizeof(*w->pxw))) != NULL) {
        moat_list_init(&w->pxw->pools);
        moat_list_init(&w->pxw->rrs);
        moat_list_init(&w->pxw->active);
        moat_list_init(&w->pxw->spare);
        moat_list_init(&w->pxw->checks);
    }
    return w->pxw;
}

/* The pool of server <key> for the HTTPS upstream <tls_up> ("" for plain HTTP), made on first use. */
static px_pool_t *pool_find(moat__pxw_t *x, const char *key, const char *tls_up)
{
    px_pool_t *p;
    for (moat_list_t *n = x->pools.next; n != &x->pools; n = n->next) {
        p = moat_container_of(n, px_pool_t, node);
        if (strcmp(p->key, key) == 0 && strcmp(p->tls_up, tls_up) == 0)
            return p;
    }
    if ((p = moat_calloc(1, sizeof(*p))) == NULL)
        return NULL;
    moat_strlcpy(p->key, key, sizeof(p->key));
    moat_strlcpy(p->tls_up, tls_up, sizeof(p->tls_up));
    moat_list_init(&p->idle);
    moat_list_push_tail(&x->pools, &p->node);
    return p;
}

/* The round-robin position of the upstream <name> (kept across reloads). */
static unsigned *rr_of(moat__pxw_t *x, const char *name)
{
    px_rr_t *rr;
    for (moat_list_t *n = x->rrs.next; n != &x->rrs; n = n->next) {
        rr = moat_container_of(n, px_rr_t, node);
        if (strcmp(rr->name, name) == 0)
            return &rr->next;
    }
    if ((rr = moat_calloc(1, sizeof(*rr))) == NULL)
        return NULL;
    moat_strlcpy(rr->name, name, sizeof(rr->name));
    moat_list_push_tail(&x->rrs, &rr->node);
    return &rr->next;
}

/* Makes the table follow generation <wg>: each server of each upstream gets its slot (pool, health check)
 * and each upstream its round-robin position, so a request finds its servers in one lookup. 0, or -1 (out
 * of memory; the table is left empty). */
static int tab_build(moat__pxw_t *x, const moat__wgen_t *wg)
{
    const moat_config_t *cfg = wg->gen->cfg;
    size_t n = 0, k = 0;
    x->tab_wg = NULL;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        n += cfg->upstreams[i].naddrs;
    if (n > x->slots_cap) {
        px_slot_t *s = moat_realloc(x->slots, n * sizeof(*s));
        if (s == NULL)
            return -1;
        x->slots = s;
        x->slots_cap = n;
    }
    if (cfg->nupstreams > x->tab_ups_cap) {
        px_tab_up_t *u = moat_realloc(x->tab_ups, cfg->nupstreams * sizeof(*u));
        if (u == NULL)
            return -1;
        x->tab_ups = u;
        x->tab_ups_cap = cfg->nupstreams;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const moat_upstream_t *up = &cfg->upstreams[i];
        const char *tls_up = wg->up_ctx != NULL && wg->up_ctx[i] != NULL ? up->name : "";
        x->tab_ups[i].first = k;
        if ((x->tab_ups[i].rr = rr_of(x, up->name)) == NULL)
            return -1;
        for (size_t a = 0; a < up->naddrs; a++, k++) {
            if ((x->slots[k].pool = pool_find(x, up->addrs[a].text, tls_up)) == NULL)
                return -1;
            x->slots[k].hc =
                up->health.path != NULL ? moat__proxy_health_of(x, up->name, up->addrs[a].text) : NULL;
        }
    }
    x->nslots = n;
    x->tab_wg = wg;
    x->tab_seq = wg->gen->seq;
    x->tab_checks = x->checks_gen;
    return 0;
}

/* The slots of the request's upstream (the table made to follow its generation first), or NULL. */
static const px_slot_t *slots_of(moat__proxy_t *px, unsigned **rr)
{
    moat__pxw_t *x = px->x;
    const moat__wgen_t *wg = px->r->conn->wg;
    if ((x->tab_wg != wg || x->tab_seq != wg->gen->seq || x->tab_checks != x->checks_gen) &&
        tab_build(x, wg) != 0)
        return NULL;
    if (px->up->index >= wg->gen->cfg->nupstreams)
        return NULL;
    *rr = x->tab_ups[px->up->index].rr;
    return &x->slots[x->tab_ups[px->up->index].first];
}

static void upconn_close(px_upconn_t *uc)
{
    moat_list_remove(&uc->node);
    if (uc->pool != NULL && uc->px == NULL && uc->pool->nidle > 0 && uc->idle)
        uc->pool->nidle--;
    moat__px_io_free(uc);
    if (uc->fd >= 0)
        close(uc->fd);
    moat_free(&uc);
}

void moat__proxy_worker_free(moat__worker_t *w)
{
    moat__pxw_t *x = w->pxw;
    if (x == NULL)
        return;
    moat__proxy_health_free(w, x);
    while (!moat_list_empty(&x->spare)) {
        moat__proxy_t *px = moat_container_of(x->spare.next, moat__proxy_t, node);
        moat_list_remove(&px->node);
        moat_free(&px->uh);
        moat_free(&px->head);
        moat_free(&px);
    }
    while (!moat_list_empty(&x->pools)) {
        px_pool_t *p = moat_container_of(x->pools.next, px_pool_t, node);
        while (!moat_list_empty(&p->idle))
            upconn_close(moat_container_of(p->idle.next, px_upconn_t, node));
        moat__px_pool_forget(p);
        moat_list_remove(&p->node);
        moat_free(&p);
    }
    while (!moat_list_empty(&x->rrs)) {
        px_rr_t *rr = moat_container_of(x->rrs.next, px_rr_t, node);
        moat_list_remove(&rr->node);
        moat_free(&rr);
    }
    moat_free(&x->slots);
    moat_free(&x->tab_ups);
    moat_free(&w->pxw);
}

/* ---- answers ------------------------------------------------------------------------------------ */

/* What the page says of each reason token (the X-Moat-Upstream value). */
static const char *reason_text(const char *reason)
{
    static const moat__reason_text_t texts[] = {
        {"connect-refused", "refused the connection (is the application running?)"},
        {"connect-timeout", "did not accept the connection in time"},
        {"response-timeout", "did not answer in time"},
        {"reset", "closed the connection before its answer was complete"},
        {"bad-response", "sent an answer that is not valid HTTP/1.1"},
        {"body-too-large", "was not sent the request: its body is above the location's limits.body_bytes"},
        {"no-healthy-server",
         "has no server available (each failed its health check, or a connect in the last seconds)"},
        {"tls-verify", "sent a TLS certificate moat does not accept (not issued by a CA of tls.trust, or not "
                       "for the name checked; the error log says which)"},
        {"tls-handshake", "did not complete a TLS handshake with moat (it may want a client certificate, "
                          "tls.client_key, or not speak TLS; the error log says why)"},
    };
    return moat__reason_words(texts, MOAT_ARRAY_LEN(texts), reason, "failed");
}

/* Answers <status> with X-Moat-Upstream: <reason> and a page saying what happened (before any response
 * head went out). */
static void answer_error(moat__proxy_t *px, int status, const char *reason)
{
    static _Thread_local char page[2048];
    moat__request_t *r = px->r;
    moat_http_resp_t *resp = &r->resp;
    char detail[512];
    size_t n;

    px->error = reason;
    px->state = PX_ANSWERED;
    snprintf(detail, sizeof(detail), "The application server%s%s of upstream \"%s\" %s (%s).",
             px->addr != NULL ? " " : "", px->addr != NULL ? px->addr : "", px->up->name, reason_text(reason),
             reason);
    moat__conn_log(r->conn, MOAT_LOG_INFO, "upstream %s%s%s: %s", px->up->name, px->addr != NULL ? " " : "",
                   px->addr != NULL ? px->addr : "", reason);
    r->resp_active = 1;
    r->body_unread = !px->client_end;
    moat_http_resp_init(resp, &r->req, status);
    moat_http_resp_error(resp, status);
    n = moat_http_error_page_format(page, sizeof(page), status, detail);
    if (n > 0) {
        resp->body = page;
        resp->content_length = n;
    }
    (void)moat_http_resp_add_header(resp, "X-Moat-Upstream", reason); /* a fixed token */
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store");
    r->status = status;
    r->out->send(r);
}

/* The upstream failed with <reason>: before the head, an error page (502, or 504 for the timeouts);
 * after it, the client's side is cut. */
static void upstream_failed(moat__proxy_t *px, const char *reason)
{
    if (px->uc != NULL) {
        upconn_close(px->uc);
        px->uc = NULL;
    }
    if (px->head_sent) {
        px->error = reason;
        px->state = PX_BROKEN;
        moat__conn_log(px->r->conn, MOAT_LOG_INFO, "upstream %s %s: %s after the response began",
                       px->up->name, px->addr != NULL ? px->addr : "", reason);
        return;
    }
    answer_error(px, strstr(reason, "timeout") != NULL ? 504 : 502, reason);
}

/* ---- connecting --------------------------------------------------------------------------------- */

static int idempotent(const moat_http_req_t *req)
{
    switch (req->method_id) {
    case MOAT_HTTP_GET:
    case MOAT_HTTP_HEAD:
    case MOAT_HTTP_OPTIONS:
    case MOAT_HTTP_TRACE:
    case MOAT_HTTP_PUT:
    case MOAT_HTTP_DELETE:
        return 1;
    default:
        return 0;
    }
}

/* The next server to try among the upstream's <slots>: not tried by this request, not marked down (a
 * failed connect, or its health check); -1 when none is left. */
static long pick(moat__proxy_t *px, const px_slot_t *slots, unsigned *rr)
{
    const moat_upstream_t *up = px->up;
    unsigned start = (*rr)++, best_active = ~0u;
    uint64_t now = px->r->conn->w->loop.now_ms;
    long best = -1;
    for (size_t i = 0; i < up->naddrs; i++) {
        size_t k = (start + i) % up->naddrs;
        const px_slot_t *s = &slots[k];
        if (k < 64 && (px->tried & (1ull << k)))
            continue;
        if (s->pool->down_until > now || (s->hc != NULL && moat__proxy_health_down(s->hc)))
            continue;
        if (up->balance == MOAT_BALANCE_ROUND_ROBIN)
            return (long)k;
        if (s->pool->active < best_active) {
            best_active = s->pool->active;
            best = (long)k;
        }
    }
    return best;
}

static void take_server(moat__proxy_t *px, const px_slot_t *slots, size_t k)
{
    const moat_upstream_t *up = px->up;
    if (k < 64)
        px->tried |= 1ull << k;
    px->server = k;
    px->addr = up->addrs[k].text;
    px->pool = slots[k].pool;
}

/* The client context of the request's upstream (its generation's), or NULL for plain HTTP. */
static SSL_CTX *up_ctx(const moat__proxy_t *px)
{
    const moat__wgen_t *wg = px->r->conn->wg;
    return wg->up_ctx != NULL && px->up->index < wg->gen->cfg->nupstreams ? wg->up_ctx[px->up->index] : NULL;
}

static void mark_down(moat__proxy_t *px)
{
    if (px->pool != NULL)
        px->pool->down_until = px->r->conn->w->loop.now_ms + PX_DOWN_MS;
}

/* Starts an exchange on a kept or a new connection to a server: 0, or -1 when the request was answered
 * (no server left). */
static int connect_next(moat__proxy_t *px)
{
    moat__worker_t *w = px->r->conn->w;
    const moat_upstream_t *up = px->up;
    const char *last = px->last_fail;
    SSL_CTX *ctx = up_ctx(px);
    for (;;) {
        unsigned *rr = NULL;
        const px_slot_t *slots = slots_of(px, &rr);
        long k = slots != NULL ? pick(px, slots, rr) : -1;
        const moat_upstream_addr_t *a;
        px_upconn_t *uc;
        int fd, rc, one = 1;

        if (slots == NULL) {
            answer_error(px, 502, "connect-refused"); /* out of memory */
            return -1;
        }
        if (k < 0) {
            if (last == NULL)
                answer_error(px, 503, "no-healthy-server");
            else
                upstream_failed(px, last);
            return -1;
        }
        take_server(px, slots, (size_t)k);
        while (!moat_list_empty(&px->pool->idle)) {
            uc = moat_container_of(px->pool->idle.next, px_upconn_t, node);
            moat_list_remove(&uc->node);
            px->pool->nidle--;
            uc->idle = 0;
            if (uc->ctx != ctx) {
                /* made for another generation's context (a reload): it cannot carry this request */
                upconn_close(uc);
                continue;
            }
            /* One the server closed meanwhile raised an event and is gone (moat__proxy_event); one it closes
             * as the request leaves fails before any answer and is retried afresh (idempotent requests). */
            uc->px = px;
            moat__px_io_reuse(uc);
            px->uc = uc;
            px->reused = 1;
            px->pool->active++;
            px->state = PX_EXCHANGE;
            px->deadline = w->loop.now_ms + (uint64_t)up->response_s * 1000u;
            return 0;
        }
        a = &up->addrs[k];
        fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            moat__conn_log(px->r->conn, MOAT_LOG_ERR, "upstream %s %s: socket: %s", up->name, a->text,
                           strerror(errno));
            upstream_failed(px, "connect-refused");
            return -1;
        }
        if (a->ss.ss_family != AF_UNIX)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        do
            rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
        while (rc < 0 && errno == EINTR);
        if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
            moat__conn_log(px->r->conn, MOAT_LOG_INFO, "upstream %s %s: connect: %s", up->name, a->text,
                           strerror(errno));
            close(fd);
            mark_down(px);
            last = "connect-refused";
            if (!idempotent(&px->r->req))
                break;
            continue;
        }
        if ((uc = moat_calloc(1, sizeof(*uc))) == NULL) {
            close(fd);
            upstream_failed(px, "connect-refused");
            return -1;
        }
        uc->tag = TAG_UPSTREAM;
        uc->fd = fd;
        uc->pool = px->pool;
        uc->px = px;
        uc->writable = rc == 0;
        px->uc = uc;
        px->reused = 0;
        px->pool->active++;
        if (moat_loop_add(&w->loop, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, uc) != 0) {
            upstream_failed(px, "connect-refused");
            return -1;
        }
        if (ctx != NULL && moat__px_tls_begin(px, ctx) != 0) {
            moat__conn_log(px->r->conn, MOAT_LOG_ERR, "upstream %s %s: cannot start TLS (out of memory)",
                           up->name, a->text);
            upstream_failed(px, "tls-handshake");
            return -1;
        }
        px->state = PX_CONNECT;
        px->deadline = w->loop.now_ms + (uint64_t)up->connect_s * 1000u;
        return 0;
    }
    upstream_failed(px, last);
    return -1;
}

/* A connect that failed (<reason>): the server is marked down (<down>); an idempotent request tries the
 * next. A TLS handshake that failed does not mark it down: each request then says why. */
static void connect_failed(moat__proxy_t *px, const char *reason, int down)
{
    upconn_close(px->uc);
    px->uc = NULL;
    if (px->pool->active > 0)
        px->pool->active--;
    if (down)
        mark_down(px);
    px->last_fail = reason;
    if (!idempotent(&px->r->req))
        upstream_failed(px, reason);
    else
        (void)connect_next(px);
}

/* Gives the connection back (or closes it) and tries again: only for an idempotent request without a
 * body that sent nothing the server answered. 0 when a new attempt started. */
static int retry(moat__proxy_t *px, int server_failed)
{
    if (!idempotent(&px->r->req) || px->r->req.body_kind != MOAT_HTTP_BODY_NONE || px->ilen > 0 ||
        px->head_sent)
        return -1;
    if (px->uc != NULL) {
        upconn_close(px->uc);
        px->uc = NULL;
    }
    if (px->pool != NULL && px->pool->active > 0)
        px->pool->active--;
    if (server_failed)
        mark_down(px);
    else if (px->server < 64)
        px->tried &= ~(1ull << px->server); /* a stale kept connection: the same server again, afresh */
    if (px->out_big)
        moat_bufpool_put(&px->r->conn->w->big, (void **)&px->out);
    px->out_big = 0;
    px->out = px->head; /* a request without a body: nothing but the head went */
    px->olen = px->head_len;
    px->opos = 0;
    return connect_next(px);
}

/* ---- starting ----------------------------------------------------------------------------------- */

/* A request state: a spare one (its head buffers kept, the rest cleared), or a new one. */
static moat__proxy_t *px_take(moat__pxw_t *x)
{
    moat__proxy_t *px;
    moat_http_uhead_t *uh;
    char *head;
    size_t cap;
    if (moat_list_empty(&x->spare))
        return moat_calloc(1, sizeof(moat__proxy_t));
    px = moat_container_of(x->spare.next, moat__proxy_t, node);
    moat_list_remove(&px->node);
    x->nspare--;
    uh = px->uh;
    head = px->head;
    cap = px->head_cap;
    memset(px, 0, sizeof(*px));
    px->uh = uh;
    px->head = head;
    px->head_cap = cap;
    return px;
}

/* The request head, built in the state's own buffer (a small one kept with the state, grown to the big
 * buffers' size for a long head) and sent from there: a request without a body takes no pool buffer for
 * the server's side. 0; -1 when it does not fit, -2 out of memory. */
static int build_head(moat__proxy_t *px, moat__worker_t *w)
{
    size_t want = PX_HEAD_KEEP;
    for (;;) {
        if (px->head_cap < want) {
            char *h = moat_realloc(px->head, want);
            if (h == NULL)
                return -2;
            px->head = h;
            px->head_cap = want;
        }
        if (moat__proxy_head(px, px->head, px->head_cap, &px->head_len) == 0)
            break;
        if (px->head_cap >= w->big.size - 64)
            return -1;
        want = w->big.size - 64;
    }
    px->out = px->head;
    px->olen = px->head_len;
    px->opos = 0;
    return 0;
}

void moat__proxy_start(moat__request_t *r, const moat_site_t *site, const moat_location_t *loc)
{
    moat__worker_t *w = r->conn->w;
    moat__pxw_t *x = pxw_get(w);
    moat__proxy_t *px = NULL;
    int rc;

    r->body_unread = 0;
    if (x == NULL || (px = px_take(x)) == NULL) {
        moat_http_resp_init(&r->resp, &r->req, 500);
        moat_http_resp_error(&r->resp, 500);
        r->body_unread = 1;
        r->status = 500;
        r->out->send(r);
        return;
    }
    r->px = px;
    px->r = r;
    px->x = x;
    px->up = loc->upstream;
    px->loc = loc;
    px->site = site;
    px->head_request = r->req.method_id == MOAT_HTTP_HEAD;
    px->head_cl = -1;
    clock_gettime(CLOCK_MONOTONIC, &px->t0);
    moat_list_push_tail(&x->active, &px->node);
    r->out->px_begin(r);
    if (loc->body_bytes > 0 && r->req.body_kind == MOAT_HTTP_BODY_LENGTH &&
        r->req.content_length > (uint64_t)loc->body_bytes) {
        /* the location's limit: refused before anything goes upstream, the body left unread */
        answer_error(px, 413, "body-too-large");
        return;
    }
    if ((rc = build_head(px, w)) != 0) {
        /* the client's fields and certificate do not fit the buffer (or no memory for them) */
        px->client_end = 1;
        answer_error(px, rc == -1 ? 431 : 500, rc == -1 ? "request-too-large" : "out-of-memory");
        return;
    }
    px->client_end = r->req.body_kind == MOAT_HTTP_BODY_NONE && !px->upgrade;
    (void)connect_next(px);
}

/* ---- the exchange ------------------------------------------------------------------------------- */

/* The buffer for the server's answer: a small one first (most answers fit). 0, or -1. */
static int in_buf(moat__proxy_t *px)
{
    moat__worker_t *w = px->r->conn->w;
    if (px->in != NULL)
        return 0;
    if ((px->in = moat_bufpool_get(&w->small)) == NULL)
        return -1;
    px->icap = w->small.size;
    return 0;
}

/* An answer filled the small buffer: what it holds moves to a big one, which reads on in large pieces. */
static void in_grow(moat__proxy_t *px)
{
    moat__worker_t *w = px->r->conn->w;
    char *b = moat_bufpool_get(&w->big);
    if (b == NULL)
        return; /* reads go on in the small one */
    memcpy(b, px->in, px->ilen);
    moat_bufpool_put(&w->small, (void **)&px->in);
    px->in = b;
    px->icap = w->big.size;
    px->in_big = 1;
}

/* Sends what px->out holds to the server: 1 progress, 0 blocked or nothing, -1 failed. */
static int up_send(moat__proxy_t *px)
{
    px_upconn_t *uc = px->uc;
    int progress = 0;
    while (px->opos < px->olen && uc->writable) {
        ssize_t n = moat__px_io_write(uc, px->out + px->opos, px->olen - px->opos);
        if (n > 0) {
            px->opos += (size_t)n;
            progress = 1;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (px->opos == px->olen)
        px->opos = px->olen = 0;
    return progress;
}

/* Takes more of the client's body into px->out (chunked when the request is): 1 progress, 0 none, -1 the
 * client's body failed (answered or cut). */
static int body_refill(moat__proxy_t *px)
{
    moat__request_t *r = px->r;
    size_t cap = px->r->conn->w->big.size, hdr = px->chunked_out ? 10 : 0;
    long n;
    int end = 0;
    if (px->client_end || px->olen != 0 || px->up_stop || (px->upgrade && px->state != PX_TUNNEL))
        return 0;
    if (!px->out_big) {
        /* the head went: body pieces go through a big buffer */
        if ((px->out = moat_bufpool_get(&r->conn->w->big)) == NULL) {
            upstream_failed(px, "reset");
            return -1;
        }
        px->out_big = 1;
    }
    n = r->out->px_body_in(r, px->out + hdr, cap - hdr - 7, px->state == PX_TUNNEL, &end);
    if (n < 0) {
        px->client_end = 1;
        if (px->head_sent || px->state == PX_TUNNEL) {
            px->state = px->state == PX_TUNNEL ? PX_DONE : PX_BROKEN;
            return -1;
        }
        px->error = "client-body";
        if (px->uc != NULL) {
            upconn_close(px->uc);
            px->uc = NULL;
        }
        /* the client's body is malformed or too large: its status, before anything came back */
        answer_error(px, r->body.status ? r->body.status : 400, "client-body");
        px->error = r->body.error != NULL ? r->body.error : "client-body";
        return -1;
    }
    if (n > 0 && px->loc->body_bytes > 0 && (px->body_fwd += (uint64_t)n) > (uint64_t)px->loc->body_bytes) {
        /* a chunked body past the location's limit: the upstream connection is dropped before the
         * body's end was sent, so the application never sees a complete request */
        px->client_end = 0;
        if (px->uc != NULL) {
            upconn_close(px->uc);
            px->uc = NULL;
        }
        if (px->head_sent) {
            px->state = PX_BROKEN;
            px->error = "body-too-large";
            return -1;
        }
        answer_error(px, 413, "body-too-large");
        return -1;
    }
    if (n > 0 && hdr > 0) {
        char h[24];
        snprintf(h, sizeof(h), "%08lx\r\n", (unsigned long)n & 0xffffffffu); /* n < the buffer's size */
        memcpy(px->out, h, 10);
        memcpy(px->out + 10 + n, "\r\n", 2);
        px->olen = (size_t)n + 12;
    } else if (n > 0) {
        px->olen = (size_t)n;
    }
    if (end) {
        px->client_end = 1;
        if (px->chunked_out) {
            memcpy(px->out + px->olen, "0\r\n\r\n", 5);
            px->olen += 5;
        }
        if (px->state == PX_TUNNEL)
            moat__px_io_shutdown_wr(px->uc);
    }
    return n > 0 || end;
}

/* The response head was parsed: hand it to the client (or skip an interim 1xx). 1 progress, -1 failed. */
static int on_head(moat__proxy_t *px)
{
    moat__request_t *r = px->r;
    moat_http_uhead_t *h = px->uh;
    moat__px_field_t f[MOAT_HTTP_MAX_HEADERS + 4];
    size_t n;
    int64_t length;

    if (h->status < 200 && !(h->status == 101 && h->upgrade && px->upgrade)) {
        /* 100 Continue and other interim answers: moat answered the client's expectation itself */
        memmove(px->in, px->in + h->head_len, px->ilen - h->head_len);
        px->ilen -= h->head_len;
        return 1;
    }
    n = moat__proxy_resp_fields(px, f, MOAT_ARRAY_LEN(f));
    px->ustatus = h->status;
    px->ukeep = h->keep_alive;
    if (h->status == 101)
        length = -2;
    else if (h->frame == MOAT_HTTP_UFRAME_LENGTH)
        length = (int64_t)h->content_length;
    else if (h->frame == MOAT_HTTP_UFRAME_CHUNKED || h->frame == MOAT_HTTP_UFRAME_CLOSE)
        length = -1;
    else if (px->head_request && px->head_cl >= 0)
        length = px->head_cl; /* HEAD: the length a GET would have */
    else if (h->status == 204 || h->status == 304 || px->head_request)
        length = -2;
    else
        length = 0;
    r->body_unread = !px->client_end;
    if (r->out->px_head(r, h->status, f, n, length) != 0)
        return -1;
    px->head_sent = 1;
    px->ipos = h->head_len;
    if (h->status == 101) {
        px->state = PX_TUNNEL;
        px->tunnel_out = 1;
    } else if (h->frame == MOAT_HTTP_UFRAME_LENGTH || h->frame == MOAT_HTTP_UFRAME_CHUNKED) {
        moat_http_body_init_uhead(&px->ubody, h);
    } else if (h->frame == MOAT_HTTP_UFRAME_NONE) {
        px->resp_body_done = 1;
    }
    /* The server answered before the whole request body went: it reads no more of it. */
    if (!px->client_end && h->status >= 200)
        px->ukeep = 0;
    return 1;
}

/* A small answer's head waits for the rest of its body when the server wrote them apart (a head, then a
 * file): both then leave in one record and one send instead of two. Only a final answer of a known length
 * whose whole body fits in the buffer waits, and no longer than its bytes take to come (under the response
 * timeout); a longer or streamed one is handed on as it comes. */
static int head_waits_for_body(const moat__proxy_t *px)
{
    const moat_http_uhead_t *h = px->uh;
    return h->status >= 200 && h->frame == MOAT_HTTP_UFRAME_LENGTH && !px->head_request &&
           h->content_length <= px->icap - h->head_len && px->ilen - h->head_len < h->content_length;
}

/* Moves response bytes to the client: 1 progress, 0 blocked (on either side), -1 failed (state set). */
static int down_step(moat__proxy_t *px)
{
    moat__request_t *r = px->r;
    px_upconn_t *uc = px->uc;
    int progress = 0;

    for (int rounds = 0; rounds < PX_ROUNDS; rounds++) {
        if (px->pend_len > 0) {
            long n = r->out->px_data(r, px->pend, px->pend_len);
            if (n < 0) {
                px->state = PX_BROKEN;
                return -1;
            }
            px->pend += n;
            px->pend_len -= (size_t)n;
            if (n == 0)
                return progress;
            progress = 1;
            continue;
        }
        if (px->head_sent && !px->resp_body_done && px->ipos < px->ilen) {
            size_t used = px->ilen - px->ipos;
            moat_http_str_t d = {px->in + px->ipos, used};
            int rc = 0;
            if (px->state == PX_TUNNEL || px->uh->frame == MOAT_HTTP_UFRAME_CLOSE)
                rc = MOAT_E_AGAIN;
            else
                rc = moat_http_body_decode(&px->ubody, px->in + px->ipos, used, &used, &d);
            if (rc < 0 && rc != MOAT_E_AGAIN) {
                px->error = "bad-response";
                px->state = PX_BROKEN;
                return -1;
            }
            px->ipos += used;
            px->pend = d.p;
            px->pend_len = d.len;
            if (rc == 0)
                px->resp_body_done = 1;
            progress = 1;
            continue;
        }
        if (px->resp_body_done) {
            if (!px->end_sent) {
                if (r->out->px_end(r) != 0) {
                    px->state = PX_BROKEN;
                    return -1;
                }
                px->end_sent = 1;
                progress = 1;
            }
            return progress;
        }
        if (px->head_sent && px->ipos == px->ilen)
            px->ipos = px->ilen = 0;
        if (!uc->readable)
            return progress;
        if (!px->in_big && (px->in_grow || px->ilen == px->icap))
            in_grow(px);
        if (px->ilen == px->icap)
            return progress;
        size_t want = px->icap - px->ilen;
        ssize_t n = moat__px_io_read(uc, px->in + px->ilen, want);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return progress;
        if (n < 0 && errno == EPROTO) {
            /* a TLS error: before any answer, the server refused the session (TLS 1.3 servers check a
             * client certificate after the handshake moat saw complete) */
            int before = !px->head_sent && px->ilen == 0;
            moat__conn_log(r->conn, MOAT_LOG_ERR, "upstream %s %s: TLS: %s%s", px->up->name, px->addr,
                           moat__px_tls_why(),
                           before ? " (before any answer: the server refused moat's side)" : "");
            upstream_failed(px, before ? "tls-handshake" : "reset");
            return -1;
        }
        if (n <= 0) {
            /* the server closed (or reset) its side */
            if (px->head_sent && (px->state == PX_TUNNEL || px->uh->frame == MOAT_HTTP_UFRAME_CLOSE) &&
                n == 0) {
                px->resp_body_done = 1;
                px->ukeep = 0;
                continue;
            }
            if (!px->head_sent && px->reused && px->ilen == 0 && retry(px, 0) == 0)
                return 1;
            upstream_failed(px, "reset");
            return -1;
        }
        px->ilen += (size_t)n;
        px->in_grow = (size_t)n == want; /* a long answer: the next read takes a big buffer */
        px->deadline = r->conn->w->loop.now_ms + (uint64_t)px->up->response_s * 1000u;
        progress = 1;
        while (!px->head_sent && px->ilen > 0) {
            /* a head waiting for its body was parsed already: its fields are offsets, valid as it grows */
            int rc = px->head_held
                         ? 0
                         : moat_http_uhead_parse(px->uh, px->in, px->ilen, PX_HEAD_MAX, px->head_request);
            if (rc == MOAT_E_AGAIN)
                break;
            if (rc != 0) {
                moat__conn_log(r->conn, MOAT_LOG_INFO, "upstream %s %s: %s", px->up->name, px->addr,
                               px->uh->error != NULL ? px->uh->error : "a response head too large");
                upstream_failed(px, "bad-response");
                return -1;
            }
            if ((px->head_held = head_waits_for_body(px)))
                break;
            if (on_head(px) < 0) {
                px->state = PX_BROKEN;
                return -1;
            }
        }
    }
    return progress;
}

moat__px_run_t moat__proxy_run(moat__request_t *r)
{
    moat__proxy_t *px = r->px;
    moat__worker_t *w = r->conn->w;
    int rounds = 0;

    if (px == NULL)
        return MOAT__PX_DONE;
    for (;;) {
        int up, down, body;
        switch (px->state) {
        case PX_ANSWERED:
            return MOAT__PX_WAIT; /* the writer's send took the request over */
        case PX_BROKEN:
            return MOAT__PX_FAIL;
        case PX_DONE:
            return MOAT__PX_DONE;
        case PX_CONNECT: {
            int err = 0;
            socklen_t len = sizeof(err);
            if (!px->uc->writable)
                return MOAT__PX_WAIT;
            if (getsockopt(px->uc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            if (err != 0) {
                moat__conn_log(r->conn, MOAT_LOG_INFO, "upstream %s %s: connect: %s", px->up->name, px->addr,
                               strerror(err));
                connect_failed(px, "connect-refused", 1);
                continue;
            }
            if (px->uc->ssl != NULL) {
                px->state = PX_HANDSHAKE; /* under connect_s too */
                px->deadline = w->loop.now_ms + (uint64_t)px->up->connect_s * 1000u;
                continue;
            }
            px->state = PX_EXCHANGE;
            px->deadline = w->loop.now_ms + (uint64_t)px->up->response_s * 1000u;
            continue;
        }
        case PX_HANDSHAKE: {
            const char *why = NULL;
            int rc = moat__px_tls_handshake(px, &why);
            if (rc == 0)
                return MOAT__PX_WAIT;
            if (rc < 0) {
                connect_failed(px, why, 0);
                continue;
            }
            px->state = PX_EXCHANGE;
            px->deadline = w->loop.now_ms + (uint64_t)px->up->response_s * 1000u;
            continue;
        }
        case PX_EXCHANGE:
        case PX_TUNNEL:
            break;
        }
        if (px->uh == NULL && (px->uh = moat_malloc(sizeof(*px->uh))) == NULL) {
            upstream_failed(px, "reset");
            continue;
        }
        if (in_buf(px) != 0) {
            upstream_failed(px, "reset");
            continue;
        }
        if (!px->continue_sent && r->req.expect_continue && !px->client_end) {
            px->continue_sent = 1; /* the server is reached: the client may send its body */
            if (r->out->px_head(r, 100, NULL, 0, -2) != 0)
                return MOAT__PX_FAIL;
        }
        if ((up = up_send(px)) < 0) {
            if (px->state == PX_TUNNEL) {
                px->state = PX_DONE;
                continue;
            }
            if (px->reused && !px->head_sent && retry(px, 0) == 0)
                continue;
            /* the server stopped reading: its answer (a 413, say) may be waiting */
            px->up_stop = 1;
            px->ukeep = 0;
            px->opos = px->olen = 0;
            up = 1;
        }
        body = body_refill(px);
        if (body < 0)
            continue;
        down = down_step(px);
        if (down < 0)
            continue;
        if (px->resp_body_done && px->end_sent && (px->client_end || px->head_sent)) {
            if (px->state == PX_TUNNEL && !px->client_end && px->tunnel_out) {
                /* the server closed its side of the tunnel: so does the client's */
                px->ukeep = 0;
            }
            if (px->state != PX_TUNNEL || px->resp_body_done) {
                px->req_done = px->client_end && px->olen == 0;
                px->state = PX_DONE;
                clock_gettime(CLOCK_MONOTONIC, &px->t1);
                continue;
            }
        }
        if (up > 0 || body > 0 || down > 0) {
            uint64_t t =
                (uint64_t)(px->head_sent ? moat__conn_limits(r->conn)->idle_timeout_s : px->up->response_s);
            if (px->state == PX_TUNNEL)
                t = (uint64_t)moat__conn_limits(r->conn)->idle_timeout_s;
            px->deadline = w->loop.now_ms + t * 1000u;
            if (++rounds < PX_ROUNDS)
                continue;
            return MOAT__PX_MORE;
        }
        return MOAT__PX_WAIT;
    }
}

/* ---- the end ------------------------------------------------------------------------------------- */

void moat__proxy_end(moat__request_t *r)
{
    moat__proxy_t *px = r->px;
    moat__worker_t *w;
    if (px == NULL)
        return;
    w = r->conn->w;
    if (px->uc != NULL) {
        px_upconn_t *uc = px->uc;
        if (px->pool != NULL && px->pool->active > 0)
            px->pool->active--;
        if (px->state == PX_DONE && px->ukeep && px->req_done && !px->tunnel_out && px->pool != NULL &&
            px->pool->nidle < (size_t)px->up->keepalive && !atomic_load(&w->srv->stopping)) {
            uc->px = NULL;
            uc->idle = 1;
            uc->idle_until = w->loop.now_ms + (uint64_t)px->up->idle_s * 1000u;
            moat_list_push_tail(&px->pool->idle, &uc->node);
            px->pool->nidle++;
        } else {
            uc->px = NULL;
            upconn_close(uc);
        }
    }
    moat_list_remove(&px->node);
    if (px->out_big)
        moat_bufpool_put(&w->big, (void **)&px->out);
    px->out = NULL;
    moat_bufpool_put(px->in_big ? &w->big : &w->small, (void **)&px->in);
    r->px = NULL;
    if (px->head_cap > PX_HEAD_KEEP) {
        moat_free(&px->head); /* a long head's buffer is not kept */
        px->head_cap = 0;
    }
    if (px->x->nspare < PX_SPARE) {
        moat_list_push_tail(&px->x->spare, &px->node);
        px->x->nspare++;
        return;
    }
    moat_free(&px->uh);
    moat_free(&px->head);
    moat_free(&px);
}

size_t moat__proxy_log(const moat__request_t *r, char *out, size_t cap)
{
    const moat__proxy_t *px = r->px;
    struct timespec t1 = px->t1;
    long long us;
    int n;
    if (t1.tv_sec == 0)
        clock_gettime(CLOCK_MONOTONIC, &t1);
    us = (long long)(t1.tv_sec - px->t0.tv_sec) * 1000000 + (t1.tv_nsec - px->t0.tv_nsec) / 1000;
    n = snprintf(out, cap, " upstream=%s ustatus=%d utime=%lld.%03lldms%s%s",
                 px->addr != NULL ? px->addr : "-", px->ustatus, us / 1000, us % 1000,
                 px->error != NULL ? " upstream_error=" : "", px->error != NULL ? px->error : "");
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- events and timers --------------------------------------------------------------------------- */

void moat__proxy_event(void *tag, uint32_t events)
{
    px_upconn_t *uc = tag;
    if (uc->hc != NULL) {
        moat__proxy_health_event(uc, events);
        return;
    }
    moat__px_io_event(uc, events);
    if (uc->px == NULL) {
        /* a kept connection the server closed (or wrote to unasked): it cannot carry a request. Only a
         * read event says so: the room an acknowledgement frees (EPOLLOUT) costs no peek. */
        if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !moat__px_io_idle_ok(uc))
            upconn_close(uc);
        return;
    }
    uc->px->r->out->px_wake(uc->px->r);
}

void moat__proxy_tick(moat__worker_t *w)
{
    moat__pxw_t *x = w->pxw;
    moat_list_t batch;
    uint64_t now = w->loop.now_ms;

    if (x == NULL && moat__proxy_health_wanted(w))
        x = pxw_get(w); /* checks run before the first request */
    if (x == NULL || now < x->next_tick)
        return;
    x->next_tick = now + PX_TICK_MS;
    moat__proxy_health_tick(w, x);
    for (moat_list_t *n = x->pools.next; n != &x->pools; n = n->next) {
        px_pool_t *p = moat_container_of(n, px_pool_t, node);
        while (!moat_list_empty(&p->idle)) {
            px_upconn_t *uc = moat_container_of(p->idle.next, px_upconn_t, node);
            if (uc->idle_until > now)
                break;
            upconn_close(uc);
        }
    }
    moat_list_init(&batch);
    for (moat_list_t *n = x->active.next, *next; n != &x->active; n = next) {
        moat__proxy_t *px = moat_container_of(n, moat__proxy_t, node);
        next = n->next;
        /* An HTTP/2 connection waiting on its upstream streams is not idle: the proxy's own deadlines
         * bound the wait (response_s may be longer than limits.idle_timeout_s). */
        if (px->r->stream != NULL)
            moat__conn_timer(px->r->conn, &w->q_idle, moat__conn_limits(px->r->conn)->idle_timeout_s);
        if (px->deadline != 0 && px->deadline <= now && px->state != PX_ANSWERED && px->state != PX_DONE)
            moat_list_push_tail(&batch, &px->node);
    }
    while (!moat_list_empty(&batch)) {
        moat__proxy_t *px = moat_container_of(batch.next, moat__proxy_t, node);
        moat__request_t *r = px->r;
        moat_list_push_tail(&x->active, &px->node);
        px->deadline = 0;
        if (px->state == PX_CONNECT || px->state == PX_HANDSHAKE) {
            connect_failed(px, "connect-timeout", 1);
        } else if (!px->head_sent) {
            upstream_failed(px, "response-timeout");
        } else {
            px->error = px->state == PX_TUNNEL ? "idle-timeout" : "response-timeout";
            px->state = PX_BROKEN;
        }
        r->out->px_wake(r);
    }
}
