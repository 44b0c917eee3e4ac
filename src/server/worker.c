/*
 * Worker threads: one epoll loop each, its own SO_REUSEPORT listeners and OpenSSL library context.
 *
 * Connections are registered once, edge-triggered, for input (EPOLLIN|EPOLLET); output interest is
 * added once, the first time a send would block: no epoll_ctl per state change. A connection remembers
 * whether the socket may still be readable or writable and works until it would block; an edge then brings it
 * back. Listeners are level-triggered and accepted until EAGAIN.
 *
 * Bytes: one read() fills rbuf with ciphertext that our BIO feeds to OpenSSL; responses are staged in
 * obuf, encrypted by SSL_write into wbuf (many records per call) and sent with one send(). Buffers come
 * from per-worker pools and go back whenever a connection waits idle, so an idle keep-alive connection
 * holds only its SSL object (its record buffers freed too) and this struct.
 */
#include "server/server_int.h"

#include "acme/acme.h"

#include <errno.h>
#include <openssl/err.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCESS_BUF ACCESS_LOG_BUF
#define STOP_GRACE_MS 10000
#define CRL_RETRY_MS 100    /* requests waiting for a CRL look again this often */
#define ACCEPT_PAUSE_MS 500 /* out of descriptors: accepting rests this long (as nginx does) */

static int conn_ex_index = -1;

static void conn_run(moat__conn_t *c);
static void conn_close(moat__conn_t *c);
static void conns_release(moat__server_t *srv);

void moat__wgen_release(moat__wgen_t *wg)
{
    if (wg == NULL || --wg->refs > 0)
        return;
    for (size_t i = 0; i < wg->gen->cfg->nsites; i++)
        SSL_CTX_free(wg->ctx[i]);
    moat_free(&wg->ctx);
    for (size_t i = 0; i < wg->nmoat_ca; i++)
        X509_free(wg->moat_ca[i]);
    moat_free(&wg->moat_ca);
    moat__ocsp_wgen_free(wg->ocsp);
    moat__gen_unref(wg->gen);
    moat_free(&wg);
}

void moat__worker_post(moat__worker_t *w, moat__wgen_t *wg)
{
    moat__wgen_t *old = atomic_exchange(&w->mailbox, wg);
    /* The worker never saw <old>: nobody else holds it. */
    if (old != NULL)
        moat__wgen_release(old);
    moat_loop_wake(&w->loop);
}

/* ---- timeouts ----------------------------------------------------------------------------------- */

static void timer_set(moat__conn_t *c, moat_list_t *q, long seconds)
{
    c->deadline_ms = c->w->loop.now_ms + (uint64_t)seconds * 1000u;
    moat_list_push_tail(q, &c->tnode);
}

static const moat_limits_t *limits_of(const moat__worker_t *w)
{
    return &w->cur->gen->cfg->limits;
}

static void expire(moat__worker_t *w, moat_list_t *q)
{
    while (!moat_list_empty(q)) {
        moat__conn_t *c = moat_container_of(q->next, moat__conn_t, tnode);
        if (c->deadline_ms > w->loop.now_ms)
            break;
        moat_list_remove(&c->tnode);
        moat_log(MOAT_LOG_DEBUG, NULL, "conn=%llu timed out in state %d", c->id, (int)c->state);
        conn_close(c);
    }
}

static int next_timeout_ms(moat__worker_t *w)
{
    uint64_t next = w->loop.now_ms + 1000;
    moat_list_t *qs[2] = {&w->q_header, &w->q_idle};
    for (int i = 0; i < 2; i++) {
        if (!moat_list_empty(qs[i])) {
            moat__conn_t *c = moat_container_of(qs[i]->next, moat__conn_t, tnode);
            if (c->deadline_ms < next)
                next = c->deadline_ms;
        }
    }
    /* Waits on q_crl are retried every CRL_RETRY_MS (a note to the fetcher may have been dropped). */
    if (!moat_list_empty(&w->q_crl) && w->crl_checked_ms + CRL_RETRY_MS < next)
        next = w->crl_checked_ms + CRL_RETRY_MS;
    if (!w->accepting && w->accept_resume_ms > w->loop.now_ms && w->accept_resume_ms < next)
        next = w->accept_resume_ms;
    return next > w->loop.now_ms ? (int)(next - w->loop.now_ms) : 0;
}

/* ---- requests waiting for a CRL --------------------------------------------------------------------- */

int moat__conn_wait_crl(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    if (w->stop_deadline_ms != 0)
        return 0;
    if (!c->crl_waited) {
        c->crl_waited = 1;
        c->deadline_ms = w->loop.now_ms + MOAT__CRL_WAIT_MS;
    } else if (w->loop.now_ms >= c->deadline_ms) {
        return 0;
    }
    if (moat_list_empty(&w->q_crl)) {
        w->crl_checked_ms = w->loop.now_ms; /* the first retry is CRL_RETRY_MS from now */
        w->crl_fresh = 0;
    }
    moat_list_push_tail(&w->q_crl, &c->tnode);
    c->state = CONN_WAIT_CRL;
    c->resp_active = 0; /* nothing answered yet: the request is handled again from the start */
    return 1;
}

/* Handles again the requests parked on q_crl when a new CRL snapshot has come, every CRL_RETRY_MS (a
 * note the fetcher's busy queue dropped is left again; a wait past its deadline ends), and when the
 * server stops. A request whose verdict is still pending parks again (moat__conn_wait_crl). */
static void resume_crl_waits(moat__worker_t *w)
{
    moat_list_t batch;

    if (moat_list_empty(&w->q_crl))
        return;
    (void)moat__worker_crls(w); /* takes a posted snapshot: crl_fresh says whether one came */
    if (!w->crl_fresh && w->stop_deadline_ms == 0 && w->loop.now_ms < w->crl_checked_ms + CRL_RETRY_MS)
        return;
    w->crl_fresh = 0;
    w->crl_checked_ms = w->loop.now_ms;
    moat_list_move(&w->q_crl, &batch);
    while (!moat_list_empty(&batch)) {
        moat__conn_t *c = moat_container_of(batch.next, moat__conn_t, tnode);
        moat_list_remove(&c->tnode);
        c->state = CONN_HEAD;
        moat__request_handle(c, 0);
        if (c->state != CONN_WAIT_CRL)
            conn_run(c);
    }
}

/* ---- buffers ------------------------------------------------------------------------------------ */

/*
 * Two buffer sizes: small (a TLS record, or a request head) for handshakes, request heads and small
 * responses; big (128 KiB of plaintext, its records) only while a file streams. A connection that only
 * handshakes touches a few KiB, and idle connections hold none.
 */
static int ensure_bufs(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    if (c->io.wbuf == NULL) {
        if ((c->io.wbuf = moat_bufpool_get(&w->small)) == NULL)
            return -1;
        c->io.wcap = w->small.size;
        c->io.wlen = 0;
        c->wbig = 0;
    }
    if (c->secure && c->io.rbuf == NULL) {
        if ((c->io.rbuf = moat_bufpool_get(&w->small)) == NULL)
            return -1;
        c->io.rpos = c->io.rlen = 0;
    }
    return 0;
}

static int ensure_hbuf(moat__conn_t *c)
{
    if (c->hbuf == NULL && (c->hbuf = moat_bufpool_get(&c->w->small)) == NULL)
        return -1;
    return 0;
}

int moat__conn_out_bufs(moat__conn_t *c, int bulk)
{
    moat__worker_t *w = c->w;
    if (c->obuf != NULL && c->obig != bulk && c->opos >= c->olen)
        moat_bufpool_put(c->obig ? &w->big : &w->small, (void **)&c->obuf);
    if (c->obuf == NULL) {
        if ((c->obuf = moat_bufpool_get(bulk ? &w->big : &w->small)) == NULL)
            return -1;
        c->obig = (unsigned char)bulk;
        c->ocap = bulk ? w->big.size : w->small.size;
        c->opos = c->olen = 0;
    }
    if (bulk && !c->wbig) {
        /* Many records per send: move what is pending into a big buffer. */
        unsigned char *b = moat_bufpool_get(&w->big);
        if (b == NULL)
            return -1;
        if (c->io.wlen > 0)
            memcpy(b, c->io.wbuf, c->io.wlen);
        moat_bufpool_put(&w->small, (void **)&c->io.wbuf);
        c->io.wbuf = b;
        c->io.wcap = w->big.size;
        c->wbig = 1;
    }
    return 0;
}

/* Gives back every buffer that holds nothing: idle connections cost no buffer memory. OpenSSL's own
 * record buffers go too, here rather than after every record (SSL_MODE_RELEASE_BUFFERS freed and
 * allocated them two or three times per request); with a record partly read they stay until next time. */
static void release_idle_bufs(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    if (c->ssl != NULL)
        (void)SSL_free_buffers(c->ssl); /* 0: a record is partly read, its buffer is still needed */
    if (c->hlen == 0)
        moat_bufpool_put(&w->small, (void **)&c->hbuf);
    if (c->io.rbuf != NULL && c->io.rpos == c->io.rlen) {
        moat_bufpool_put(&w->small, (void **)&c->io.rbuf);
        c->io.rpos = c->io.rlen = 0;
    }
    if (c->io.wlen == 0) {
        moat_bufpool_put(c->wbig ? &w->big : &w->small, (void **)&c->io.wbuf);
        c->io.wcap = 0;
        c->wbig = 0;
    }
    if (c->opos >= c->olen) {
        moat_bufpool_put(c->obig ? &w->big : &w->small, (void **)&c->obuf);
        c->opos = c->olen = 0;
        c->obig = 0;
    }
    if (!c->req_started && !c->resp_active)
        moat_bufpool_put(&w->rstates, (void **)&c->rs);
}

/* ---- socket I/O --------------------------------------------------------------------------------- */

/* Sends wbuf. 1: all sent; 0: the socket is full (wait for EPOLLOUT); -1: the connection is dead. */
static int flush_out(moat__conn_t *c)
{
    while (c->io.wlen > 0) {
        ssize_t n = send(c->fd, c->io.wbuf, c->io.wlen, MSG_NOSIGNAL);
        if (n > 0) {
            if ((size_t)n < c->io.wlen)
                memmove(c->io.wbuf, c->io.wbuf + n, c->io.wlen - (size_t)n);
            c->io.wlen -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->writable = 0;
            /* Output interest only once a send blocked: registering it up front costs every
             * connection a wake-up for a writable socket it did not need. */
            if (!c->out_armed) {
                if (moat_loop_mod(&c->w->loop, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, c) != 0)
                    return -1;
                c->out_armed = 1;
            }
            return 0;
        }
        return -1;
    }
    return 1;
}

/* Reads from the socket: TLS into rbuf, plain HTTP straight into hbuf.
 * 1: got bytes; 0: nothing now; -1: end of stream or error. */
static int sock_read(moat__conn_t *c)
{
    char *buf;
    size_t space;
    ssize_t n;

    if (!c->readable)
        return 0;
    if (c->secure) {
        if (c->io.rpos > 0) {
            memmove(c->io.rbuf, c->io.rbuf + c->io.rpos, c->io.rlen - c->io.rpos);
            c->io.rlen -= c->io.rpos;
            c->io.rpos = 0;
        }
        buf = (char *)c->io.rbuf + c->io.rlen;
        space = c->w->small.size - c->io.rlen;
    } else {
        if (ensure_hbuf(c) != 0)
            return -1;
        buf = c->hbuf + c->hlen;
        space = c->w->small.size - c->hlen;
    }
    if (space == 0)
        return 0;
    do
        n = read(c->fd, buf, space);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (c->secure)
            c->io.rlen += (size_t)n;
        else
            c->hlen += (size_t)n;
        /* A short read drained the socket; the next arrival raises a new edge. */
        if ((size_t)n < space)
            c->readable = 0;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = 0;
        return 0;
    }
    return -1;
}

/* Decrypts into hbuf. 1: got bytes; 0: OpenSSL needs more ciphertext; 2: needs a flush; 3: the client sent
 * close_notify; -1: closed or failed. */
static int tls_pull(moat__conn_t *c)
{
    size_t got = 0, space;
    int r, e;

    if (ensure_hbuf(c) != 0)
        return -1;
    space = c->w->small.size - c->hlen;
    if (space == 0)
        return 0;
    moat_tls_err_clear();
    r = SSL_read_ex(c->ssl, c->hbuf + c->hlen, space, &got);
    if (r == 1) {
        c->hlen += got;
        return 1;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE)
        return 2;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 3;
    return -1;
}

/* Queues <len> bytes of response. Returns bytes taken (0: wbuf full, flush first) or -1 on error. */
static long out_write(moat__conn_t *c, const char *p, size_t len)
{
    if (c->secure) {
        size_t written = 0;
        int r;
        moat_tls_err_clear();
        r = SSL_write_ex(c->ssl, p, len, &written);
        if (r == 1)
            return (long)written;
        r = SSL_get_error(c->ssl, r);
        return r == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
    size_t space = c->io.wcap - c->io.wlen;
    if (len > space)
        len = space;
    memcpy(c->io.wbuf + c->io.wlen, p, len);
    c->io.wlen += len;
    return (long)len;
}

/* ---- the server-wide connection count ------------------------------------------------------------ */

/*
 * One count for the whole server, not a share per worker: the kernel hashes new connections to the
 * workers' SO_REUSEPORT listeners without knowing how full each is, so a worker stopping at its share
 * left connections waiting in its queue while the server had room. A worker takes a slot before
 * accept() and gives it back on close; a worker that stopped because the server was full is woken
 * when the count drops below the limit again.
 */
static int conns_reserve(moat__server_t *srv)
{
    if (atomic_fetch_add(&srv->nconns, 1) < srv->max_conns)
        return 1;
    conns_release(srv);
    return 0;
}

static void conns_release(moat__server_t *srv)
{
    if (atomic_fetch_sub(&srv->nconns, 1) != srv->max_conns)
        return;
    for (unsigned i = 0; i < srv->nworkers; i++)
        moat_loop_wake(&srv->workers[i].loop);
}

/* ---- the connection state machine --------------------------------------------------------------- */

static void conn_free(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    moat_list_remove(&c->tnode);
    moat_list_remove(&c->rnode);
    moat_list_remove(&c->node);
    if (c->resp_active) {
        /* Cut off (the client went, a timeout, a stop): logged too, with the bytes that did leave. */
        if (c->head_ok)
            moat__access_log(c);
        moat_http_resp_dispose(&c->rs->resp);
    }
    if (c->rs != NULL)
        moat_bufpool_put(&w->small, (void **)&c->rs->post);
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
    conns_release(w->srv);
}

static void conn_close(moat__conn_t *c)
{
    conn_free(c);
}

/* After a response: the next request may already be in hbuf (pipelining). */
static void request_done(moat__conn_t *c)
{
    size_t used = c->rs->req.head_len;
    moat__access_log(c);
    moat_bufpool_put(&c->w->small, (void **)&c->rs->post);
    if (c->resp_active) {
        moat_http_resp_dispose(&c->rs->resp);
        c->resp_active = 0;
    }
    if (used > c->hlen)
        used = c->hlen;
    memmove(c->hbuf, c->hbuf + used, c->hlen - used);
    c->hlen -= used;
    c->req_started = 0;
    c->ccert = NULL;
    c->ccert_denied = 0;
    c->opos = c->olen = 0;
    if (!c->rs->resp.keep_alive || atomic_load(&c->w->srv->stopping)) {
        c->state = CONN_CLOSING;
        return;
    }
    c->state = CONN_HEAD;
    timer_set(c, &c->w->q_idle, limits_of(c->w)->idle_timeout_s);
}

/* Produces response bytes into wbuf. 1: progress; 0: wbuf full; -1: error. */
static int send_step(moat__conn_t *c)
{
    if (c->opos < c->olen) {
        long n = out_write(c, c->obuf + c->opos, c->olen - c->opos);
        if (n < 0)
            return -1;
        c->opos += (size_t)n;
        return n > 0;
    }
    if (c->file_left > 0) {
        size_t n;
        errno = 0;
        if ((n = moat__conn_body_read(c, c->obuf, c->ocap)) == 0) {
            moat_log(MOAT_LOG_ERR, NULL, "conn=%llu reading a file to send: %s", c->id,
                     errno == 0 ? "the file shrank while being sent" : strerror(errno));
            return -1;
        }
        c->opos = 0;
        c->olen = n;
        return 1;
    }
    request_done(c);
    return 1;
}

/* Sends the interim "100 Continue" (a request head was read, the state is idle): 0, or -1 to close. */
static int send_continue(moat__conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (ensure_bufs(c) != 0 || out_write(c, cont, sizeof(cont) - 1) != (long)(sizeof(cont) - 1))
        return -1;
    return flush_out(c) < 0 ? -1 : 0;
}

/* Parses what hbuf holds. 1: a response was started or the state moved; 0: need more bytes. */
static int try_request(moat__conn_t *c)
{
    const moat_limits_t *lim = &c->wg->gen->cfg->limits;
    moat_http_limits_t hl;
    int rc;

    if (c->state == CONN_HEAD) {
        if (c->hlen == 0)
            return 0;
        if (!c->req_started) {
            if (c->rs == NULL) {
                if ((c->rs = moat_bufpool_get(&c->w->rstates)) == NULL) {
                    c->state = CONN_CLOSING;
                    return 1;
                }
                c->rs->resp.fd = -1;
                c->rs->resp.owned_body_ = NULL;
                c->rs->post = NULL;
            }
            c->req_started = 1;
            c->head_ok = 0;
            c->crl_waited = 0;
            moat_http_req_reset(&c->rs->req);
            clock_gettime(CLOCK_MONOTONIC, &c->req_t0);
            c->body_sent = 0;
            timer_set(c, &c->w->q_header, lim->header_timeout_s);
        }
        hl.request_line_bytes = (size_t)lim->request_line_bytes;
        hl.header_bytes = (size_t)lim->header_bytes;
        if (hl.header_bytes > c->w->small.size - 1)
            hl.header_bytes = c->w->small.size - 1;
        hl.body_bytes = (uint64_t)lim->body_bytes;
        hl.header_fields = (size_t)lim->header_fields;
        rc = moat_http_req_parse(&c->rs->req, c->hbuf, c->hlen, &hl);
        if (rc == MOAT_E_AGAIN)
            return 0;
        if (rc < 0) {
            moat__request_handle(c, c->rs->req.status ? c->rs->req.status : 400);
            return 1;
        }
        c->head_ok = 1;
        moat_http_body_init(&c->rs->body, &c->rs->req, (uint64_t)lim->body_bytes);
        if (c->rs->req.body_kind == MOAT_HTTP_BODY_NONE) {
            moat__request_handle(c, 0);
            return 1;
        }
        int reads_body = moat__ocsp_wants_body(&c->rs->req);
        if (c->rs->req.expect_continue && c->rs->req.version_minor == 1) {
            /* RFC 9110 §10.1.1: never wait for the body before answering an expectation. A body only the
             * OCSP responder reads gets "100 Continue"; every other answer is known from the head, so it
             * goes out at once, and the connection closes after it: the client may send the body or not. */
            if (!reads_body) {
                c->rs->req.keep_alive = 0;
                moat__request_handle(c, 0);
                return 1;
            }
            if (send_continue(c) != 0) {
                c->state = CONN_CLOSING;
                return 1;
            }
        }
        if (reads_body) {
            /* The OCSP responder reads its request from the body; anything larger is no OCSP request. */
            moat_http_body_init(&c->rs->body, &c->rs->req, MOAT_PKI_OCSP_MAX_REQUEST);
            if ((c->rs->post = moat_bufpool_get(&c->w->small)) == NULL) {
                c->state = CONN_CLOSING;
                return 1;
            }
            c->rs->post_len = 0;
        }
        c->state = CONN_BODY;
    }
    if (c->state == CONN_BODY) {
        size_t used = 0, off = c->rs->req.head_len;
        if (c->rs->post != NULL) {
            moat_http_str_t data;
            rc = moat_http_body_decode(&c->rs->body, c->hbuf + off, c->hlen - off, &used, &data);
            /* The decoder's limit (MOAT_PKI_OCSP_MAX_REQUEST) is below the buffer's size. */
            if (data.len > 0 && c->rs->post_len + data.len <= c->w->small.size) {
                memcpy(c->rs->post + c->rs->post_len, data.p, data.len);
                c->rs->post_len += data.len;
            }
        } else {
            rc = moat_http_body_skip(&c->rs->body, c->hbuf + off, c->hlen - off, &used);
        }
        memmove(c->hbuf + off, c->hbuf + off + used, c->hlen - off - used);
        c->hlen -= used;
        if (rc == MOAT_E_AGAIN)
            return used > 0 && c->hlen > off ? 1 : 0;
        if (rc < 0) {
            moat__request_handle(c, c->rs->body.status ? c->rs->body.status : 400);
            return 1;
        }
        moat__request_handle(c, 0);
        return 1;
    }
    return 0;
}

/* Reads more request bytes. 1: got some; 0: wait for the socket; -1: close; -2: the client closed
 * cleanly (close_notify). */
static int pull_more(moat__conn_t *c)
{
    int r;
    if (!c->secure) {
        r = sock_read(c);
        return r;
    }
    for (;;) {
        r = tls_pull(c);
        if (r == 1)
            return 1;
        if (r < 0)
            return -1;
        if (r == 2) {
            c->hold_out = 0; /* OpenSSL needs wbuf drained */
            return c->io.wlen > 0 ? 1 : -1;
        }
        if (r == 3)
            return -2;
        /* OpenSSL wants ciphertext. */
        r = sock_read(c);
        if (r <= 0)
            return r;
    }
}

static void handshake_failed(moat__conn_t *c)
{
    unsigned long e = ERR_peek_last_error();
    /* Failed handshakes are the internet's noise (scanners, garbage): debug level only. */
    if (moat_log_level >= MOAT_LOG_DEBUG) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        moat_log(MOAT_LOG_DEBUG, NULL, "conn=%llu TLS handshake failed: %s", c->id, buf);
    }
    ERR_clear_error();
    /* Best effort: the alert OpenSSL queued goes out once, then the connection closes. */
    if (c->io.wlen > 0)
        (void)flush_out(c);
    conn_close(c);
}

static void conn_run(moat__conn_t *c)
{
    int r, rounds = 0;

    if (ensure_bufs(c) != 0) {
        moat_log(MOAT_LOG_ERR, NULL, "conn=%llu out of memory for buffers: closing", c->id);
        conn_close(c);
        return;
    }
    for (;;) {
        if (c->io.wlen > 0 && !c->hold_out) {
            r = flush_out(c);
            if (r < 0) {
                conn_close(c);
                return;
            }
            if (r == 0) {
                /* Stalled on a full socket: the idle timeout bounds how long. */
                if (c->tnode.next == NULL || c->state == CONN_SEND)
                    timer_set(c, &c->w->q_idle, limits_of(c->w)->idle_timeout_s);
                return;
            }
        }
        switch (c->state) {
        case CONN_HANDSHAKE:
            moat_tls_err_clear();
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                c->state = CONN_HEAD;
                timer_set(c, &c->w->q_idle, limits_of(c->w)->idle_timeout_s);
                /* The client's next records (its request, or its close_notify) often come with its
                 * Finished: answer them first, so that the tickets leave with the answer in one send. */
                c->hold_out = c->io.rpos < c->io.rlen;
                continue;
            }
            r = SSL_get_error(c->ssl, r);
            if (r == SSL_ERROR_WANT_READ) {
                if (c->io.wlen > 0)
                    continue;
                r = sock_read(c);
                if (r > 0)
                    continue;
                if (r < 0) {
                    conn_close(c);
                    return;
                }
                /* Waiting for the client's next flight (a round trip): the buffers serve the
                 * handshakes that have work now, so a burst touches only a few of them. */
                release_idle_bufs(c);
                return;
            }
            if (r == SSL_ERROR_WANT_WRITE && c->io.wlen > 0)
                continue;
            handshake_failed(c);
            return;
        case CONN_WAIT_CRL:
            /* Bytes that arrive meanwhile (a pipelined request) wait in the socket; readable stays set.
             * What was held for the answer (the tickets) leaves now. */
            if (c->hold_out) {
                c->hold_out = 0;
                continue;
            }
            return;
        case CONN_HEAD:
        case CONN_BODY:
            if (try_request(c))
                continue;
            r = pull_more(c);
            if (r > 0)
                continue;
            if (r == -2) {
                /* Answer the client's close_notify with ours (RFC 8446 6.1), then close: it sends
                 * nothing more, so there is nothing to linger for. */
                c->peer_closed = 1;
                c->state = CONN_CLOSING;
                continue;
            }
            if (r < 0) {
                conn_close(c);
                return;
            }
            if (c->hold_out) {
                /* Nothing more to answer now: what was held back leaves. */
                c->hold_out = 0;
                continue;
            }
            if (c->state == CONN_HEAD && c->hlen == 0 && !c->req_started)
                release_idle_bufs(c);
            return;
        case CONN_SEND:
            r = send_step(c);
            if (r < 0) {
                conn_close(c);
                return;
            }
            if (r == 0 && c->io.wlen == 0) {
                /* wbuf is empty yet nothing was taken: cannot happen with a live buffer. */
                conn_close(c);
                return;
            }
            if (r == 0) {
                c->hold_out = 0; /* wbuf is full */
                continue;
            }
            /* Counted per step (about a record), not per flush: full records may have left straight from
             * the TLS layer without one. A long download is not cut by the idle timeout, and yields to the
             * others after about 2 MiB. */
            if (++rounds % 16 == 0)
                timer_set(c, &c->w->q_idle, limits_of(c->w)->idle_timeout_s);
            if (rounds > 128) {
                moat_list_push_tail(&c->w->ready, &c->rnode);
                return;
            }
            continue;
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
                timer_set(c, &c->w->q_header, limits_of(c->w)->header_timeout_s);
                continue;
            }
            if (c->peer_closed) {
                conn_close(c);
                return;
            }
            /* Lingering close: shut our side, then drain what the client still sends, so that the
             * kernel does not answer its unread bytes with a reset that destroys our response. */
            shutdown(c->fd, SHUT_WR);
            c->state = CONN_LINGER;
            timer_set(c, &c->w->q_header,
                      limits_of(c->w)->header_timeout_s < 2 ? limits_of(c->w)->header_timeout_s : 2);
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
                    release_idle_bufs(c);
                    return;
                }
                conn_close(c);
                return;
            }
        }
        }
    }
}

moat__conn_t *moat__conn_of(SSL *ssl)
{
    return SSL_get_ex_data(ssl, conn_ex_index);
}

/* ---- SNI ---------------------------------------------------------------------------------------- */

/* Chooses the site of <c> for <sni> (NULL: none) and applies its SSL_CTX and verify settings. */
static int use_site(moat__conn_t *c, SSL *ssl, const char *sni, int *al)
{
    const moat_listener_t *l;
    const moat_site_t *site;
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);

    l = c->wg->gen->bind_listener[c->bind];
    if (l == NULL) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    site = sni != NULL ? moat_listener_find_site(l, sni) : NULL;
    c->sni_matched = site != NULL;
    if (site == NULL) {
        /* No SNI (or an IP literal client) or an unknown name: the site listing the local IP, else the
         * default site, else refuse. Only this path pays for getsockname(). */
        if (getsockname(c->fd, (struct sockaddr *)&local, &llen) != 0)
            memset(&local, 0, sizeof(local));
        site = moat_listener_select(l, sni, (struct sockaddr *)&local);
    }
    if (site == NULL) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    c->site = site;
    if (c->wg->ctx[site->index] != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, c->wg->ctx[site->index]);
    /* Switching SSL_CTX does not carry the verify settings: apply the site's here. */
    if (c->wg->gen->sites[site->index].wants_ccert) {
        SSL_CTX *ctx = c->wg->ctx[site->index];
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), moat__ccert_on_verify);
        SSL_set_client_CA_list(ssl, SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx)));
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    return SSL_TLSEXT_ERR_OK;
}

static int on_servername(SSL *ssl, int *al, void *arg)
{
    moat__conn_t *c = SSL_get_ex_data(ssl, conn_ex_index);
    (void)arg;
    if (c == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (c->site_from_hello)
        return SSL_TLSEXT_ERR_OK;
    return use_site(c, ssl, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), al);
}

/* The host_name of the ClientHello's server_name extension, copied to <out>: 1 when there is one, 0 when
 * the extension is absent, -1 when it is not one this parser reads (the servername callback then decides
 * with what OpenSSL parsed). */
static int hello_sni(SSL *ssl, char *out, size_t outsz)
{
    const unsigned char *p;
    size_t len, list, n;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1)
        return 0;
    if (len < 5)
        return -1;
    list = ((size_t)p[0] << 8) | p[1];
    if (list != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name)
        return -1;
    n = ((size_t)p[3] << 8) | p[4];
    if (n == 0 || n + 3 > list || n >= outsz || memchr(p + 5, '\0', n) != NULL)
        return -1;
    memcpy(out, p + 5, n);
    out[n] = '\0';
    return 1;
}

/* 1 when the ClientHello's ALPN list offers exactly acme-tls/1 (RFC 8737 §3: a validation offers nothing
 * else). */
static int hello_wants_acme(SSL *ssl)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len) != 1)
        return 0;
    return len == 2 + sizeof(MOAT_ACME_TLS_ALPN) - 1 && ((size_t)p[0] << 8 | p[1]) == len - 2 &&
           memcmp(p + 2, MOAT_ACME_TLS_ALPN, sizeof(MOAT_ACME_TLS_ALPN) - 1) == 0;
}

/*
 * OpenSSL looks for a session to resume (TLS 1.2 session id or ticket, TLS 1.3 PSK) before it calls the
 * servername callback, and compares its session id context with the connection's at that moment: the
 * first site of the listener. Choosing the site here, before that lookup, puts each site's own context
 * in force, so a session verified for one site never resumes on another whose anchors may not accept
 * its certificate. The servername callback only chooses when the name could not be read here.
 */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    moat__conn_t *c = SSL_get_ex_data(ssl, conn_ex_index);
    char sni[256];
    int alert = 0, found;
    (void)arg;
    if (c == NULL)
        return SSL_CLIENT_HELLO_SUCCESS;
    found = hello_sni(ssl, sni, sizeof(sni));
    if (use_site(c, ssl, found == 1 ? sni : NULL, &alert) != SSL_TLSEXT_ERR_OK) {
        if (found < 0) /* a name this parser could not read: OpenSSL's parse decides in on_servername */
            return SSL_CLIENT_HELLO_SUCCESS;
        *al = alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /* The choice is final when the name was read here: choosing again per handshake would redo the
     * verify settings, the CA list copy and, without SNI, getsockname(). */
    c->site_from_hello = found >= 0;
    if (found == 1 && hello_wants_acme(ssl)) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        /* RFC 8737 §3: a validation presents the challenge certificate and negotiates acme-tls/1; with no
         * validation running for the name the handshake is refused (no_application_protocol). */
        if (!moat_acme_tlsalpn_lookup(sni, &cert, &key)) {
            *al = SSL_AD_NO_APPLICATION_PROTOCOL;
            return SSL_CLIENT_HELLO_ERROR;
        }
        if (SSL_use_certificate(ssl, cert) != 1 || SSL_use_PrivateKey(ssl, key) != 1) {
            X509_free(cert);
            EVP_PKEY_free(key);
            ERR_clear_error();
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        X509_free(cert);
        EVP_PKEY_free(key);
        c->acme_tls = 1;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ALPN: acme-tls/1 for a tls-alpn-01 validation; other connections negotiate no protocol here. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    moat__conn_t *c = SSL_get_ex_data(ssl, conn_ex_index);
    unsigned char *sel = NULL;
    (void)arg;
    if (c == NULL || !c->acme_tls)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, outlen, (const unsigned char *)MOAT_ACME_TLS_ALPN,
                              sizeof(MOAT_ACME_TLS_ALPN) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

void moat__wgen_prepare(moat__wgen_t *wg)
{
    for (size_t i = 0; i < wg->gen->cfg->nsites; i++) {
        SSL_CTX_set_tlsext_servername_callback(wg->ctx[i], on_servername);
        SSL_CTX_set_client_hello_cb(wg->ctx[i], on_client_hello, NULL);
        SSL_CTX_set_alpn_select_cb(wg->ctx[i], on_alpn, NULL);
    }
}

/* ---- accepting ---------------------------------------------------------------------------------- */

static void listeners_enable(moat__worker_t *w, int on)
{
    if (w->accepting == on)
        return;
    for (size_t i = 0; i < w->nlistens; i++) {
        if (w->listens[i].fd < 0)
            continue;
        if (on)
            (void)moat_loop_add(&w->loop, w->listens[i].fd, EPOLLIN, &w->listens[i]);
        else
            moat_loop_del(&w->loop, w->listens[i].fd);
    }
    w->accepting = on;
}

static void conn_start(moat__worker_t *w, moat__wlisten_t *l, int fd, const struct sockaddr_storage *peer,
                       socklen_t plen)
{
    moat__wgen_t *wg = w->cur;
    const moat_listener_t *cl = wg->gen->bind_listener[l->bind];
    moat__conn_t *c;

    if (cl == NULL || cl->nsites == 0) {
        close(fd);
        conns_release(w->srv);
        return;
    }
    c = moat_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        conns_release(w->srv);
        return;
    }
    c->tag = TAG_CONN;
    c->fd = fd;
    c->io.fd = -1;
    c->w = w;
    c->wg = wg;
    wg->refs++;
    c->bind = l->bind;
    c->secure = w->srv->binds[l->bind].secure;
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
            conn_close(c);
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
    timer_set(c, &w->q_header, limits_of(w)->header_timeout_s);
    if (moat_loop_add(&w->loop, fd, EPOLLIN | EPOLLRDHUP | EPOLLET, c) != 0) {
        conn_close(c);
        return;
    }
    conn_run(c);
}

static void adopt_generation(moat__worker_t *w);

static void on_accept(moat__worker_t *w, moat__wlisten_t *l)
{
    /* A generation posted before this connection arrived serves it, even when the wake-up event is
     * later in the same batch: once `moat reload` returns, new connections see the new config. */
    if (atomic_load_explicit(&w->mailbox, memory_order_acquire) != NULL)
        adopt_generation(w);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd;
        if (!conns_reserve(w->srv)) {
            listeners_enable(w, 0); /* until a connection closes (conns_release wakes us) */
            return;
        }
        fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            conns_release(w->srv);
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* The connection stays in the kernel's queue, so the listener stays readable: without
                 * a pause, every loop turn would fail the same way (and log it) at full speed. */
                moat_log(MOAT_LOG_WARN, NULL,
                         "worker %u: cannot accept a connection (%s) with %zu open: not accepting for "
                         "%d ms",
                         w->id, strerror(e), w->nconns, ACCEPT_PAUSE_MS);
                w->accept_resume_ms = w->loop.now_ms + ACCEPT_PAUSE_MS;
                listeners_enable(w, 0);
            }
            return;
        }
        conn_start(w, l, fd, &peer, plen);
    }
}

/* ---- the loop ----------------------------------------------------------------------------------- */

static void adopt_generation(moat__worker_t *w)
{
    moat__wgen_t *wg = atomic_exchange(&w->mailbox, NULL);
    if (wg == NULL)
        return;
    moat__wgen_release(w->cur);
    w->cur = wg;
}

static void begin_stop(moat__worker_t *w)
{
    moat_list_t *n, *next;
    listeners_enable(w, 0);
    for (size_t i = 0; i < w->nlistens; i++) {
        if (w->listens[i].fd >= 0)
            close(w->listens[i].fd);
        w->listens[i].fd = -1;
    }
    w->stop_deadline_ms = w->loop.now_ms + STOP_GRACE_MS;
    /* Idle keep-alive connections have nothing in flight: close them now. */
    for (n = w->conns.next; n != &w->conns; n = next) {
        moat__conn_t *c = moat_container_of(n, moat__conn_t, node);
        next = n->next;
        if ((c->state == CONN_HEAD && !c->req_started && c->hlen == 0) || c->state == CONN_HANDSHAKE)
            conn_close(c);
    }
}

static void *worker_main(void *arg)
{
    moat__worker_t *w = arg;
    struct epoll_event evs[256];

    listeners_enable(w, 1);
    for (;;) {
        int n, timeout;
        adopt_generation(w);
        if (atomic_load(&w->srv->stopping) && w->stop_deadline_ms == 0)
            begin_stop(w);
        if (w->stop_deadline_ms != 0 && (w->nconns == 0 || w->loop.now_ms >= w->stop_deadline_ms))
            break;
        if (!w->accepting && w->stop_deadline_ms == 0 && w->loop.now_ms >= w->accept_resume_ms &&
            atomic_load(&w->srv->nconns) < w->srv->max_conns)
            listeners_enable(w, 1);
        timeout = moat_list_empty(&w->ready) ? next_timeout_ms(w) : 0;
        n = epoll_wait(w->loop.epfd, evs, (int)MOAT_ARRAY_LEN(evs), timeout);
        w->loop.now_ms = moat_clock_ms();
        for (int i = 0; i < n; i++) {
            int *tag = evs[i].data.ptr;
            if (*tag == TAG_CONN) {
                moat__conn_t *c = (moat__conn_t *)tag;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->readable = 1;
                if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                    c->writable = 1;
                conn_run(c);
            } else if (*tag == TAG_LISTEN) {
                if (w->stop_deadline_ms == 0)
                    on_accept(w, (moat__wlisten_t *)tag);
            } else {
                moat_loop_wake_ack(&w->loop);
            }
        }
        /* Connections that yielded: one more turn each (they may yield again). */
        if (!moat_list_empty(&w->ready)) {
            moat_list_t batch;
            moat_list_move(&w->ready, &batch);
            while (!moat_list_empty(&batch)) {
                moat__conn_t *c = moat_container_of(batch.next, moat__conn_t, rnode);
                moat_list_remove(&c->rnode);
                conn_run(c);
            }
        }
        expire(w, &w->q_header);
        expire(w, &w->q_idle);
        resume_crl_waits(w);
        if (w->alog_len > 0 && (w->alog_len > ACCESS_BUF / 2 || w->loop.now_ms - w->alog_flushed_ms >= 1000))
            moat__access_flush(w);
    }
    while (!moat_list_empty(&w->conns))
        conn_close(moat_container_of(w->conns.next, moat__conn_t, node));
    moat__access_flush(w);
    adopt_generation(w);
    moat__wgen_release(w->cur);
    w->cur = NULL;
    return NULL;
}

int moat__worker_start(moat__worker_t *w, moat_err_t *err)
{
    int rc;
    if (conn_ex_index < 0)
        conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    moat_list_init(&w->conns);
    moat_list_init(&w->q_header);
    moat_list_init(&w->q_idle);
    moat_list_init(&w->q_crl);
    moat_list_init(&w->ready);
    w->alog = moat_malloc(ACCESS_BUF);
    if (w->alog == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "allocating the access log buffer");
    w->alog_flushed_ms = w->loop.now_ms;
    adopt_generation(w);
    if (w->cur == NULL)
        return moat_err_set(err, MOAT_E_STATE, "worker %u has no configuration", w->id);
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return moat_err_set(err, MOAT_E_IO, "starting worker thread %u: %s", w->id, strerror(rc));
    w->started = 1;
    return 0;
}
