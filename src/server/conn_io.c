/*
 * Connection buffers and socket/TLS I/O.
 *
 * Bytes: one read() fills rbuf with ciphertext that our BIO feeds to OpenSSL; responses are staged in
 * obuf, encrypted by SSL_write into wbuf (many records per call) and sent with one send(). Buffers come
 * from per-worker pools and go back whenever a connection waits idle, so an idle keep-alive connection
 * holds only its SSL object (its record buffers freed too) and its struct.
 */
#include "server/request.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- buffers ------------------------------------------------------------------------------------ */

/*
 * Two buffer sizes: small (a TLS record, or a request head) for handshakes, request heads and small
 * responses; big (128 KiB of plaintext, its records) only while a file streams. A connection that only
 * handshakes touches a few KiB, and idle connections hold none.
 */
int moat__conn_ensure_bufs(moat__conn_t *c)
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

int moat__conn_ensure_hbuf(moat__conn_t *c)
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
void moat__conn_release_idle_bufs(moat__conn_t *c)
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
    if (!c->req_started && (c->rs == NULL || !c->rs->resp_active))
        moat_bufpool_put(&w->rstates, (void **)&c->rs);
}

/* ---- socket I/O --------------------------------------------------------------------------------- */

moat__flush_t moat__conn_flush(moat__conn_t *c)
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
                    return FLUSH_FAILED;
                c->out_armed = 1;
            }
            return FLUSH_BLOCKED;
        }
        return FLUSH_FAILED;
    }
    return FLUSH_DONE;
}

moat__read_t moat__conn_sock_read(moat__conn_t *c)
{
    char *buf;
    size_t space;
    ssize_t n;

    if (!c->readable)
        return READ_NONE;
    if (c->secure) {
        if (c->io.rpos > 0) {
            memmove(c->io.rbuf, c->io.rbuf + c->io.rpos, c->io.rlen - c->io.rpos);
            c->io.rlen -= c->io.rpos;
            c->io.rpos = 0;
        }
        buf = (char *)c->io.rbuf + c->io.rlen;
        space = c->w->small.size - c->io.rlen;
    } else {
        if (moat__conn_ensure_hbuf(c) != 0)
            return READ_EOF;
        buf = c->hbuf + c->hlen;
        space = c->w->small.size - c->hlen;
    }
    if (space == 0)
        return READ_NONE;
    do
        n = read(c->fd, buf, space);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (c->secure)
            c->io.rlen += (size_t)n;
        else
            c->hlen += (size_t)n;
        /* A short read drained the socket; the next arrival raises a new edge. Not so the end of the
         * stream when it came with the last bytes: it is read next, or it would be missed. */
        if ((size_t)n < space && !c->peer_hup)
            c->readable = 0;
        return READ_GOT;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->readable = 0;
        return READ_NONE;
    }
    return READ_EOF;
}

moat__pull_t moat__conn_tls_pull(moat__conn_t *c)
{
    size_t got = 0, space;
    int r, e;

    if (moat__conn_ensure_hbuf(c) != 0)
        return PULL_FAILED;
    space = c->w->small.size - c->hlen;
    if (space == 0)
        return PULL_WANT_READ;
    moat_tls_err_clear();
    r = SSL_read_ex(c->ssl, c->hbuf + c->hlen, space, &got);
    if (r == 1) {
        c->hlen += got;
        return PULL_GOT;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return PULL_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return PULL_WANT_FLUSH;
    if (e == SSL_ERROR_ZERO_RETURN)
        return PULL_PEER_CLOSED;
    return PULL_FAILED;
}

long moat__conn_write(moat__conn_t *c, const char *p, size_t len)
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
