/*
 * The connection state machine: the TLS handshake, then HTTP/1.1 (here) or HTTP/2 (h2.c, chosen by
 * ALPN), then the closing handshake and a lingering close.
 *
 * Connections are registered once, edge-triggered, for input (EPOLLIN|EPOLLET); output interest is
 * added once, the first time a send would block: no epoll_ctl per state change. A connection remembers
 * whether the socket may still be readable or writable and works until it would block; an edge then brings it
 * back.
 *
 * HTTP/1.1 carries one request at a time in c->rs; its writer (h1_writer) stages the response head and
 * the start of its body in obuf, and streams the rest of a file from CONN_SEND.
 */
#include "server/request.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int conn_ex_index = -1;

void moat__conn_init(void)
{
    if (conn_ex_index < 0)
        conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

moat__conn_t *moat__conn_of(SSL *ssl)
{
    return SSL_get_ex_data(ssl, conn_ex_index);
}

/* ---- the log context ------------------------------------------------------------------------------ */

void moat__conn_peer_text(const moat__conn_t *c, char *buf, size_t bufsz)
{
    const char *ok = NULL;
    if (c->peer.family == AF_INET && bufsz >= INET_ADDRSTRLEN) {
        /* inet_ntop's dotted quad without its sprintf: once per request (access log, proxy fields) */
        const unsigned char *b = (const unsigned char *)&c->peer.v4.sin_addr.s_addr;
        moat_http_out_t w = {buf, 0, INET_ADDRSTRLEN - 1, 0};
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                moat_http_out_put(&w, ".", 1);
            moat_http_out_putu(&w, b[i]);
        }
        buf[w.n] = '\0';
        return;
    }
    if (c->peer.family == AF_INET)
        ok = inet_ntop(AF_INET, &c->peer.v4.sin_addr, buf, (socklen_t)bufsz);
    else if (c->peer.family == AF_INET6)
        ok = inet_ntop(AF_INET6, &c->peer.v6.sin6_addr, buf, (socklen_t)bufsz);
    if (ok == NULL)
        moat_strlcpy(buf, "-", bufsz);
}

const char *moat__conn_state_name(moat__conn_state_t s)
{
    static const char *const names[] = {"handshake", "head",   "body",     "send",
                                        "closing",   "linger", "wait-crl", "h2"};
    return (size_t)s < MOAT_ARRAY_LEN(names) ? names[s] : "?";
}

void moat__conn_logf(const moat__conn_t *c, moat_log_level_t level, const char *fmt, ...)
{
    char peer[INET6_ADDRSTRLEN], extra[400], msg[MOAT_ERR_MSG_MAX + MOAT_ERR_HINT_MAX + 256];
    const char *sni = c->ssl != NULL ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    const char *proto = c->h2 != NULL ? "h2" : c->state != CONN_HANDSHAKE ? "http/1.1" : NULL;
    unsigned port = c->peer.family == AF_INET    ? ntohs(c->peer.v4.sin_port)
                    : c->peer.family == AF_INET6 ? ntohs(c->peer.v6.sin6_port)
                                                 : 0;
    moat_log_ctx_t ctx = {"conn", extra};
    va_list ap;

    moat__conn_peer_text(c, peer, sizeof(peer));
    snprintf(extra, sizeof(extra),
             c->peer.family == AF_INET6 ? "conn=%llu peer=[%s]:%u" : "conn=%llu peer=%s:%u", c->id, peer,
             port);
    if (sni != NULL) {
        size_t n = strlen(extra);
        snprintf(extra + n, sizeof(extra) - n, " sni=%s", sni);
    }
    {
        size_t n = strlen(extra);
        snprintf(extra + n, sizeof(extra) - n, "%s%s state=%s", proto != NULL ? " proto=" : "",
                 proto != NULL ? proto : "", moat__conn_state_name(c->state));
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    moat__log(level, &ctx, "%s", msg);
}

/* ---- closing -------------------------------------------------------------------------------------- */

void moat__conn_close(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    moat_list_remove(&c->tnode);
    moat_list_remove(&c->rnode);
    moat_list_remove(&c->node);
    moat__h2_free(c);
    if (c->rs != NULL) {
        /* Cut off (the client went, a timeout, a stop): logged too, with the bytes that did leave. */
        if (c->rs->resp_active && c->rs->head_ok)
            moat__access_log(c->rs);
        moat__request_end(c->rs);
    }
    moat_bufpool_put(&w->rstates, (void **)&c->rs);
    SSL_free(c->ssl);
    moat_bufpool_put(&w->small, (void **)&c->hbuf);
    moat_bufpool_put(&w->small, (void **)&c->io.rbuf);
    moat_bufpool_put(c->wbig ? &w->big : &w->small, (void **)&c->io.wbuf);
    moat_bufpool_put(c->obig ? &w->big : &w->small, (void **)&c->obuf);
    if (c->fd >= 0)
        close(c->fd);
    moat__wgen_release(c->wg);
    moat_free(&c);
    w->nconns--;
    moat__conns_release(w->srv);
}

/* ---- HTTP/1.1: the response writer --------------------------------------------------------------- */

static void h1_start_send(moat__conn_t *c, size_t len)
{
    c->opos = 0;
    c->olen = len;
    c->state = CONN_SEND;
    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
}

static void h1_send(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    moat_http_resp_t *resp = &r->resp;
    size_t cap, len = 0;
    int has_body = !resp->head_only && resp->content_length > 0 && (resp->fd >= 0 || resp->body != NULL);
    int bulk = has_body && resp->content_length > c->w->small.size / 2;

    if (r->body_unread)
        resp->keep_alive = 0; /* answered before its body: what follows on the stream is not a request */
    if (moat__conn_out_bufs(c, bulk) != 0) {
        c->state = CONN_CLOSING;
        return;
    }
    cap = c->ocap;
    r->file_left = 0;

    if (resp->body != NULL && moat_http_resp_write(resp, c->obuf, cap, &len) == 0) {
        if (!resp->head_only)
            r->body_sent += resp->content_length;
        h1_start_send(c, len);
        return;
    }
    if (moat_http_resp_write_head(resp, c->obuf, cap, &len) != 0) {
        moat_http_resp_error(resp, 500);
        resp->keep_alive = 0;
        r->status = 500;
        if (moat_http_resp_write(resp, c->obuf, cap, &len) != 0)
            len = 0;
        h1_start_send(c, len);
        return;
    }
    if (has_body) {
        /* The head and the first part of the body leave in one TLS record and one send; an in-memory
         * body larger than the buffer (a long CRL) streams on like a file. */
        r->file_left = resp->content_length;
        r->file_off = resp->fd >= 0 ? resp->file_offset : 0;
        len += moat__request_body_read(r, c->obuf + len, cap - len);
    }
    h1_start_send(c, len);
}

static void h1_park(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    c->state = CONN_PARKED;
    moat_list_remove(&c->tnode); /* the wait has its own deadline (a CRL's; the ACME service's answers) */
}

static void h1_resume(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    c->state = CONN_HEAD;
    moat__request_handle(r, 0);
    if (c->state != CONN_PARKED)
        moat__conn_run(c);
}

/* ---- HTTP/1.1: proxied responses ------------------------------------------------------------------ */

/* Staged in obuf as they come (a big one for a long or streamed answer, as h1_send chooses for files);
 * CONN_PROXY drains it, and asks the proxy for more once it left. */
static int h1_px_head(moat__request_t *r, int status, const moat__px_field_t *f, size_t n, int64_t length)
{
    moat__conn_t *c = r->conn;
    size_t need = 256;
    moat_http_out_t w;
    for (size_t i = 0; i < n; i++)
        need += f[i].name.len + f[i].value.len + 4;
    if (moat__conn_out_bufs(c, status == 100 || status == 101 || length == -1 ||
                                   need + (length > 0 ? (uint64_t)length : 0) > c->w->small.size / 2) != 0)
        return -1;
    if (status == 100) { /* the interim answer to Expect: 100-continue, once the upstream is reached */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (c->opos == c->olen)
            c->opos = c->olen = 0;
        memcpy(c->obuf + c->olen, cont, sizeof(cont) - 1);
        c->olen += sizeof(cont) - 1;
        return 0;
    }
    r->status = status;
    /* HTTP/1.0 clients get a body of unknown length delimited by the close, 1.1 ones chunked. */
    r->resp.keep_alive =
        r->req.keep_alive && !r->body_unread &&
        (length >= 0 || r->req.version_minor == 1 || status < 200 || status == 204 || status == 304);
    if (c->opos == c->olen)
        c->opos = c->olen = 0;
    if (c->ocap - c->olen < 256)
        return -1;
    /* after a 100 Continue not sent yet; 128 bytes stay free for the framing fields */
    w = (moat_http_out_t){c->obuf + c->olen, 0, c->ocap - c->olen - 128, 0};
    moat_http_out_puts(&w, "HTTP/1.1 ");
    moat_http_out_putu(&w, (uint64_t)status);
    moat_http_out_put(&w, " ", 1);
    moat_http_out_puts(&w, moat_http_status_reason(status));
    moat_http_out_put(&w, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        moat_http_out_put(&w, f[i].name.p, f[i].name.len);
        moat_http_out_put(&w, ": ", 2);
        moat_http_out_put(&w, f[i].value.p, f[i].value.len);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (w.full)
        return -1;
    w.cap += 128;
    r->resp.http10_keep_alive = 0; /* chunked: 1.1 only; 0 when no body follows */
    if (length >= 0) {
        moat_http_out_puts(&w, "Content-Length: ");
        moat_http_out_putu(&w, (uint64_t)length);
        moat_http_out_put(&w, "\r\n", 2);
    } else if (length == -1 && r->req.version_minor == 1) {
        moat_http_out_puts(&w, "Transfer-Encoding: chunked\r\n");
    }
    if (status == 101)
        r->resp.keep_alive = 0; /* the upstream's Connection: upgrade was handed on; the connection ends
                                   with the tunnel */
    else if (!r->resp.keep_alive)
        moat_http_out_puts(&w, "Connection: close\r\n");
    else if (r->req.version_minor == 0)
        moat_http_out_puts(&w, "Connection: keep-alive\r\n");
    moat_http_out_put(&w, "\r\n", 2);
    c->olen += w.n;
    /* chunked framing of what follows: length -1 on HTTP/1.1 */
    r->resp.no_content_length = length == -1 && r->req.version_minor == 1;
    return 0;
}

static long h1_px_data(moat__request_t *r, const char *p, size_t len)
{
    moat__conn_t *c = r->conn;
    size_t room, o = c->olen;
    if (c->opos == c->olen)
        c->opos = c->olen = o = 0;
    room = c->ocap - o;
    if (r->resp.no_content_length) {
        int k;
        if (room < 64)
            return 0;
        if (len > room - 32)
            len = room - 32;
        k = snprintf(c->obuf + o, room, "%zx\r\n", len);
        memcpy(c->obuf + o + (size_t)k, p, len);
        memcpy(c->obuf + o + (size_t)k + len, "\r\n", 2);
        c->olen = o + (size_t)k + len + 2;
    } else {
        if (room == 0)
            return 0;
        if (len > room)
            len = room;
        memcpy(c->obuf + o, p, len);
        c->olen = o + len;
    }
    r->body_sent += len;
    return (long)len;
}

static int h1_px_end(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    if (!r->resp.no_content_length)
        return 0;
    if (c->opos == c->olen)
        c->opos = c->olen = 0;
    if (c->ocap - c->olen < 5)
        return -1; /* px_data leaves room for it */
    memcpy(c->obuf + c->olen, "0\r\n\r\n", 5);
    c->olen += 5;
    r->resp.no_content_length = 0;
    return 0;
}

static long h1_px_body_in(moat__request_t *r, char *buf, size_t cap, int raw, int *end)
{
    moat__conn_t *c = r->conn;
    size_t off = r->req.head_len;
    *end = 0;
    if (!raw && r->req.body_kind == MOAT_HTTP_BODY_NONE) {
        *end = 1;
        return 0;
    }
    for (;;) {
        if (c->hbuf != NULL && c->hlen > off) {
            size_t avail = c->hlen - off < cap ? c->hlen - off : cap, used = avail;
            moat_http_str_t data = {c->hbuf + off, avail};
            int rc = raw ? MOAT_E_AGAIN : moat_http_body_decode(&r->body, c->hbuf + off, avail, &used, &data);
            if (rc < 0 && rc != MOAT_E_AGAIN)
                return -1;
            if (data.len > 0)
                memmove(buf, data.p, data.len); /* data lies in hbuf: copied before hbuf moves */
            memmove(c->hbuf + off, c->hbuf + off + used, c->hlen - off - used);
            c->hlen -= used;
            if (rc == 0) {
                *end = 1;
                return (long)data.len;
            }
            if (data.len > 0)
                return (long)data.len;
            if (used > 0)
                continue;
        }
        switch (moat__conn_pull(c)) {
        case MORE_GOT:
            continue;
        case MORE_WAIT:
            return 0;
        case MORE_PEER_CLOSED:
        case MORE_FAILED:
            if (raw)
                *end = 1;
            return raw ? 0 : -1;
        }
    }
}

static void h1_px_wake(moat__request_t *r)
{
    moat__conn_run(r->conn);
}

static void h1_px_begin(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    c->state = CONN_PROXY;
    c->opos = c->olen = 0;
    c->hold_out = 0; /* what the upstream sends leaves as it comes */
    moat_list_remove(&c->tnode);
}

static const moat__writer_t h1_writer = {"http/1.1", h1_send,   h1_park,       h1_resume,  h1_px_head,
                                         h1_px_data, h1_px_end, h1_px_body_in, h1_px_wake, h1_px_begin};

/* ---- HTTP/1.1: reading requests ----------------------------------------------------------------- */

/* After a response: the next request may already be in hbuf (pipelining). */
static void request_done(moat__conn_t *c)
{
    moat__request_t *r = c->rs;
    size_t used = r->req.head_len;
    int keep = r->resp.keep_alive;

    moat__access_log(r);
    moat__request_end(r);
    if (used > c->hlen)
        used = c->hlen;
    memmove(c->hbuf, c->hbuf + used, c->hlen - used);
    c->hlen -= used;
    c->req_started = 0;
    c->opos = c->olen = 0;
    if (!keep || atomic_load(&c->w->srv->stopping)) {
        c->state = CONN_CLOSING;
        return;
    }
    c->state = CONN_HEAD;
    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
}

/* Outcome of one step of sending. */
typedef enum { STEP_PROGRESS, STEP_FULL, STEP_FAILED } step_t;

/* Produces response bytes into wbuf. */
static step_t send_step(moat__conn_t *c)
{
    moat__request_t *r = c->rs;
    if (c->opos < c->olen) {
        long n = moat__conn_write(c, c->obuf + c->opos, c->olen - c->opos);
        if (n < 0)
            return STEP_FAILED;
        c->opos += (size_t)n;
        return n > 0 ? STEP_PROGRESS : STEP_FULL;
    }
    if (r->file_left > 0) {
        size_t n;
        errno = 0;
        if ((n = moat__request_body_read(r, c->obuf, c->ocap)) == 0) {
            moat__conn_log(c, MOAT_LOG_ERR, "reading a file to send: %s",
                           errno == 0 ? "the file shrank while being sent" : strerror(errno));
            return STEP_FAILED;
        }
        c->opos = 0;
        c->olen = n;
        return STEP_PROGRESS;
    }
    request_done(c);
    return STEP_PROGRESS;
}

/* Sends the interim "100 Continue" (a request head was read, the state is idle): 0, or -1 to close. */
static int send_continue(moat__conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (moat__conn_ensure_bufs(c) != 0 ||
        moat__conn_write(c, cont, sizeof(cont) - 1) != (long)(sizeof(cont) - 1))
        return -1;
    return moat__conn_flush(c) == FLUSH_FAILED ? -1 : 0;
}

/* Outcome of looking at what hbuf holds. */
typedef enum { PARSE_MOVED, PARSE_NEED_MORE } parse_t;

/* Parses what hbuf holds: PARSE_MOVED when a response was started or the state moved. */
static parse_t try_request(moat__conn_t *c)
{
    const moat_limits_t *lim = moat__conn_limits(c);
    moat_http_limits_t hl;
    moat__request_t *r;
    int rc;

    if (c->state == CONN_HEAD) {
        if (c->hlen == 0)
            return PARSE_NEED_MORE;
        if (!c->req_started) {
            if (c->rs == NULL) {
                if ((c->rs = moat_bufpool_get(&c->w->rstates)) == NULL) {
                    c->state = CONN_CLOSING;
                    return PARSE_MOVED;
                }
                c->rs->post = NULL;
                c->rs->resp_active = 0;
            }
            c->req_started = 1;
            moat__request_begin(c->rs, c, &h1_writer);
            moat__conn_timer(c, &c->w->q_header, lim->header_timeout_s);
        }
        r = c->rs;
        hl.request_line_bytes = (size_t)lim->request_line_bytes;
        hl.header_bytes = (size_t)lim->header_bytes;
        /* The small pool was sized for the largest header_bytes this process accepts (reload refuses
         * a larger one), so this bound never cuts a configured limit. */
        if (hl.header_bytes > c->w->small.size - 1)
            hl.header_bytes = c->w->small.size - 1;
        hl.body_bytes = (uint64_t)lim->body_bytes;
        hl.header_fields = (size_t)lim->header_fields;
        rc = moat_http_req_parse(&r->req, c->hbuf, c->hlen, &hl);
        if (rc == MOAT_E_AGAIN)
            return PARSE_NEED_MORE;
        if (rc < 0) {
            moat__request_handle(r, r->req.status ? r->req.status : 400);
            return PARSE_MOVED;
        }
        r->head_ok = 1;
        moat_http_body_init(&r->body, &r->req, (uint64_t)lim->body_bytes);
        if (r->req.body_kind == MOAT_HTTP_BODY_NONE) {
            moat__request_handle(r, 0);
            return PARSE_MOVED;
        }
        if (moat__request_proxied(r)) {
            /* The body streams to the upstream as it comes (proxy.c reads it through px_body_in); an
             * answer given here instead (a redirect, a 403) leaves it unread, and the connection closes. */
            r->body_unread = 1;
            moat__request_handle(r, 0);
            return PARSE_MOVED;
        }
        size_t keep = moat__request_body_keep(r->req.method_id == MOAT_HTTP_POST, r->req.path);
        int reads_body = keep > 0;
        if (r->req.expect_continue && r->req.version_minor == 1) {
            /* RFC 9110 §10.1.1: never wait for the body before answering an expectation. A body a handler
             * reads (OCSP, ACME) gets "100 Continue"; every other answer is known from the head, so it
             * goes out at once, and the connection closes after it: the client may send the body or not. */
            if (!reads_body) {
                r->req.keep_alive = 0;
                moat__request_handle(r, 0);
                return PARSE_MOVED;
            }
            if (send_continue(c) != 0) {
                c->state = CONN_CLOSING;
                return PARSE_MOVED;
            }
        }
        if (reads_body) {
            /* The handler reads its request from the body; a larger one is refused (413). */
            moat_http_body_init(&r->body, &r->req, keep);
            if (moat__request_post_buf(r, keep) != 0) {
                c->state = CONN_CLOSING;
                return PARSE_MOVED;
            }
        }
        c->state = CONN_BODY;
    }
    if (c->state == CONN_BODY) {
        size_t used = 0, off;
        r = c->rs;
        off = r->req.head_len;
        if (r->post != NULL) {
            moat_http_str_t data;
            rc = moat_http_body_decode(&r->body, c->hbuf + off, c->hlen - off, &used, &data);
            /* The decoder's limit (post_cap) is within the buffer's size. */
            if (data.len > 0 && r->post_len + data.len <= r->post_cap) {
                memcpy(r->post + r->post_len, data.p, data.len);
                r->post_len += data.len;
            }
        } else {
            rc = moat_http_body_skip(&r->body, c->hbuf + off, c->hlen - off, &used);
        }
        memmove(c->hbuf + off, c->hbuf + off + used, c->hlen - off - used);
        c->hlen -= used;
        if (rc == MOAT_E_AGAIN)
            return used > 0 && c->hlen > off ? PARSE_MOVED : PARSE_NEED_MORE;
        if (rc < 0) {
            moat__request_handle(r, r->body.status ? r->body.status : 400);
            return PARSE_MOVED;
        }
        moat__request_handle(r, 0);
        return PARSE_MOVED;
    }
    return PARSE_NEED_MORE;
}

moat__more_t moat__conn_pull(moat__conn_t *c)
{
    if (!c->secure) {
        moat__read_t r = moat__conn_sock_read(c);
        return r == READ_GOT ? MORE_GOT : r == READ_NONE ? MORE_WAIT : MORE_FAILED;
    }
    /* Nothing came since OpenSSL last ran dry: no record to decrypt, and no call to learn it. */
    if (!c->readable && c->io.rpos == c->io.rlen && !SSL_has_pending(c->ssl))
        return MORE_WAIT;
    for (;;) {
        switch (moat__conn_tls_pull(c)) {
        case PULL_GOT:
            return MORE_GOT;
        case PULL_FAILED:
            return MORE_FAILED;
        case PULL_WANT_FLUSH:
            c->hold_out = 0; /* OpenSSL needs wbuf drained */
            return c->io.wlen > 0 ? MORE_GOT : MORE_FAILED;
        case PULL_PEER_CLOSED:
            return MORE_PEER_CLOSED;
        case PULL_WANT_READ:
            break;
        }
        switch (moat__conn_sock_read(c)) {
        case READ_GOT:
            continue;
        case READ_NONE:
            return MORE_WAIT;
        case READ_EOF:
            return MORE_FAILED;
        }
    }
}

/* ---- the handshake ---------------------------------------------------------------------------------- */

/* A failed handshake that is the client's doing (scanners, old or broken clients, an unknown CA): info.
 * Everything else is a problem of ours (a key that fails, an internal error): error. */
static int client_noise(unsigned long e)
{
    if (e == 0)
        return 1; /* the client went away */
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return 0; /* a provider, a key or a certificate failed at handshake time */
    switch (ERR_GET_REASON(e)) {
    case ERR_R_INTERNAL_ERROR:
    case ERR_R_MALLOC_FAILURE:
    case SSL_R_NO_CERTIFICATE_ASSIGNED:
    case SSL_R_NO_PRIVATE_KEY_ASSIGNED:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_SIGNATURE_ALGORITHMS_ERROR:
        return 0;
    default:
        return 1;
    }
}

void moat__conn_handshake_failed(moat__conn_t *c)
{
    unsigned long e = ERR_peek_last_error();
    int noise = client_noise(e);
    moat_log_level_t level = noise ? MOAT_LOG_INFO : MOAT_LOG_ERR;

    if (moat_log_level >= level) {
        char buf[256];
        if (e != 0)
            ERR_error_string_n(e, buf, sizeof(buf));
        else
            moat_strlcpy(buf, "the client closed the connection", sizeof(buf));
        moat__conn_logf(c, level, "TLS handshake failed%s: %s", noise ? "" : " (a problem on this server)",
                        buf);
    }
    ERR_clear_error();
    moat__metrics_handshake(c, 0);
    /* Best effort: the alert OpenSSL queued goes out once, then the connection closes. */
    if (c->io.wlen > 0)
        (void)moat__conn_flush(c);
    moat__conn_close(c);
}

/* The handshake is done: ALPN may have chosen HTTP/2. 0, or -1 (close). */
static int handshake_done(moat__conn_t *c)
{
    const unsigned char *alpn = NULL;
    unsigned alen = 0;

    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
    moat__metrics_handshake(c, 1);
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    if (alen == 2 && memcmp(alpn, "h2", 2) == 0) {
        c->state = CONN_H2;
        return moat__h2_start(c);
    }
    c->state = CONN_HEAD;
    return 0;
}

/* ---- the state machine ------------------------------------------------------------------------------ */

void moat__conn_run(moat__conn_t *c)
{
    int r, rounds = 0;

    if (moat__conn_ensure_bufs(c) != 0) {
        moat__conn_log(c, MOAT_LOG_ERR, "out of memory for buffers: closing");
        moat__conn_close(c);
        return;
    }
    for (;;) {
        if (c->io.wlen > 0 && !c->hold_out) {
            moat__flush_t f = moat__conn_flush(c);
            if (f == FLUSH_FAILED) {
                moat__conn_close(c);
                return;
            }
            if (f == FLUSH_BLOCKED) {
                /* Stalled on a full socket: the idle timeout bounds how long. */
                if (c->state != CONN_PROXY && (c->tnode.next == NULL || c->state == CONN_SEND))
                    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
                return;
            }
        }
        switch (c->state) {
        case CONN_HANDSHAKE:
            moat_tls_err_clear();
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                if (handshake_done(c) != 0) {
                    moat__conn_close(c);
                    return;
                }
                /* The client's next records (its request, or its close_notify) often come with its
                 * Finished: answer them first, so that the tickets leave with the answer in one send. */
                c->hold_out = c->io.rpos < c->io.rlen;
                continue;
            }
            r = SSL_get_error(c->ssl, r);
            if (r == SSL_ERROR_WANT_READ) {
                moat__read_t rd;
                if (c->io.wlen > 0)
                    continue;
                rd = moat__conn_sock_read(c);
                if (rd == READ_GOT)
                    continue;
                if (rd == READ_EOF) {
                    moat__conn_close(c);
                    return;
                }
                /* Waiting for the client's next flight (a round trip): the buffers serve the
                 * handshakes that have work now, so a burst touches only a few of them. */
                moat__conn_release_idle_bufs(c);
                return;
            }
            if (r == SSL_ERROR_WANT_WRITE && c->io.wlen > 0)
                continue;
            moat__conn_handshake_failed(c);
            return;
        case CONN_H2:
            c->hold_out = 0;
            if (moat__h2_run(c) != 0) {
                moat__conn_close(c);
                return;
            }
            if (c->state == CONN_H2)
                return;
            continue; /* the session is over: close */
        case CONN_PROXY: {
            moat__px_run_t px;
            if (c->opos < c->olen) {
                long n = moat__conn_write(c, c->obuf + c->opos, c->olen - c->opos);
                if (n < 0) {
                    moat__conn_close(c);
                    return;
                }
                c->opos += (size_t)n;
                if (c->opos < c->olen) {
                    if (n == 0 && c->io.wlen == 0) { /* nothing taken into an empty buffer: cannot go on */
                        moat__conn_close(c);
                        return;
                    }
                    if (n == 0)
                        c->hold_out = 0; /* wbuf is full: flush, then the rest */
                    continue;
                }
                c->opos = c->olen = 0;
            }
            px = moat__proxy_run(c->rs);
            if (px == MOAT__PX_FAIL) {
                moat__conn_close(c);
                return;
            }
            if (c->state != CONN_PROXY || px == MOAT__PX_MORE || c->opos < c->olen)
                continue;
            if (px == MOAT__PX_DONE) {
                request_done(c); /* a WebSocket tunnel has keep_alive 0: the connection closes */
                continue;
            }
            if (c->io.wlen > 0 && !c->hold_out)
                continue;
            moat_list_remove(&c->tnode); /* the proxy's deadline covers both sides */
            return;
        }
        case CONN_PARKED:
            /* Bytes that arrive meanwhile (a pipelined request) wait in the socket; readable stays set.
             * What was held for the answer (the tickets) leaves now. */
            if (c->hold_out) {
                c->hold_out = 0;
                continue;
            }
            return;
        case CONN_HEAD:
        case CONN_BODY:
            if (try_request(c) == PARSE_MOVED)
                continue;
            switch (moat__conn_pull(c)) {
            case MORE_GOT:
                continue;
            case MORE_PEER_CLOSED:
                /* Answer the client's close_notify with ours (RFC 8446 6.1), then close: it sends
                 * nothing more, so there is nothing to linger for. */
                c->peer_closed = 1;
                c->state = CONN_CLOSING;
                continue;
            case MORE_FAILED:
                moat__conn_close(c);
                return;
            case MORE_WAIT:
                break;
            }
            if (c->hold_out) {
                /* Nothing more to answer now: what was held back leaves. */
                c->hold_out = 0;
                continue;
            }
            if (c->state == CONN_HEAD && c->hlen == 0 && !c->req_started)
                moat__conn_release_idle_bufs(c);
            return;
        case CONN_SEND: {
            step_t s = send_step(c);
            if (s == STEP_FAILED) {
                moat__conn_close(c);
                return;
            }
            if (s == STEP_FULL && c->io.wlen == 0) {
                /* wbuf is empty yet nothing was taken: cannot happen with a live buffer. */
                moat__conn_close(c);
                return;
            }
            if (s == STEP_FULL) {
                c->hold_out = 0; /* wbuf is full */
                continue;
            }
            /* Counted per step (about a record), not per flush: full records may have left straight from
             * the TLS layer without one. A long download is not cut by the idle timeout, and yields to the
             * others after about 2 MiB. */
            if (++rounds % 16 == 0)
                moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
            if (rounds > 128) {
                moat_list_push_tail(&c->w->ready, &c->rnode);
                return;
            }
            continue;
        }
        case CONN_CLOSING:
            if (!c->shut_sent) {
                if (c->secure && c->ssl != NULL) {
                    moat_tls_err_clear();
                    (void)SSL_shutdown(c->ssl); /* queues close_notify; the peer's reply is not awaited */
                    moat_tls_err_clear();
                }
                c->shut_sent = 1;
                c->hold_out = 0;
                /* The last bytes get the header timeout to leave (the flush above waits for the socket). */
                moat__conn_timer(c, &c->w->q_header, moat__conn_limits(c)->header_timeout_s);
                continue;
            }
            if (c->peer_closed) {
                moat__conn_close(c);
                return;
            }
            /* Lingering close: shut our side, then drain what the client still sends, so that the
             * kernel does not answer its unread bytes with a reset that destroys our response. */
            shutdown(c->fd, SHUT_WR);
            c->state = CONN_LINGER;
            moat__conn_timer(
                c, &c->w->q_header,
                moat__conn_limits(c)->header_timeout_s < 2 ? moat__conn_limits(c)->header_timeout_s : 2);
            continue;
        case CONN_LINGER: {
            char sink[4096];
            for (;;) {
                ssize_t n = read(c->fd, sink, sizeof(sink));
                if (n > 0)
                    continue;
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    moat__conn_release_idle_bufs(c);
                    return;
                }
                moat__conn_close(c);
                return;
            }
        }
        }
    }
}

/* ---- a new connection ---------------------------------------------------------------------------- */

void moat__conn_start(moat__worker_t *w, size_t bind, int fd, const struct sockaddr_storage *peer,
                      socklen_t plen)
{
    moat__wgen_t *wg = w->cur;
    const moat_listener_t *cl = wg->gen->bind_listener[bind];
    moat__conn_t *c;

    if (cl == NULL || cl->nsites == 0) {
        close(fd);
        moat__conns_release(w->srv);
        return;
    }
    c = moat_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        moat__conns_release(w->srv);
        return;
    }
    c->tag = TAG_CONN;
    c->fd = fd;
    c->io.fd = -1;
    c->w = w;
    c->wg = wg;
    wg->refs++;
    c->bind = bind;
    c->secure = w->srv->binds[bind].secure;
    c->id = ++w->next_conn_id;
    if (peer->ss_family == AF_INET6 && plen >= sizeof(c->peer.v6))
        c->peer.v6 = *(const struct sockaddr_in6 *)peer;
    else if (peer->ss_family == AF_INET && plen >= sizeof(c->peer.v4))
        c->peer.v4 = *(const struct sockaddr_in *)peer;
    c->ccert_err = -1;
    c->readable = 1; /* TCP_DEFER_ACCEPT: the first bytes are usually there already */
    c->writable = 1;
    moat_list_push_tail(&w->conns, &c->node);
    w->nconns++;
    if (c->secure) {
        BIO *bio;
        c->ssl = SSL_new(wg->ctx[cl->sites[0]->index]);
        c->io.fd = fd;
        bio = moat_tls_bio_new(&c->io);
        if (c->ssl == NULL || bio == NULL) {
            BIO_free(bio);
            ERR_clear_error();
            moat__conn_close(c);
            return;
        }
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_ex_data(c->ssl, conn_ex_index, c);
        SSL_set_accept_state(c->ssl);
        c->state = CONN_HANDSHAKE;
    } else {
        c->state = CONN_HEAD;
        c->site = cl->default_site != NULL ? cl->default_site : cl->sites[0];
    }
    moat__conn_timer(c, &w->q_header, moat__conn_limits(c)->header_timeout_s);
    if (moat_loop_add(&w->loop, fd, EPOLLIN | EPOLLRDHUP | EPOLLET, c) != 0) {
        moat__conn_close(c);
        return;
    }
    moat__conn_run(c);
}
