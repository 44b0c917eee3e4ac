/*
 * HTTP/2 (RFC 9113) over libnghttp2, on connections whose handshake chose "h2" by ALPN.
 *
 * nghttp2 does the framing, HPACK, flow control, the stream states and the checks of RFC 9113 section 8
 * (uppercase or connection-specific fields, pseudo-header errors, a content-length that disagrees with
 * DATA: each a stream error, the request never handed on). What moat adds:
 *
 * - each request becomes a moat__request_t: its pseudo-headers and fields are written as an HTTP/1.1
 *   head and parsed by the same parser with the same limits (431, 414, 413), so request handling
 *   (request.c) is the one path of both protocols; the response head comes from the same writer
 *   (moat_http_resp_write_head) and is turned into HPACK fields;
 * - limits and abuse: 100 concurrent streams, SETTINGS_MAX_HEADER_LIST_SIZE from limits.header_bytes,
 *   nghttp2's Rapid Reset rate limit and CONTINUATION limit, and a per-connection budget of frames that do
 *   no work (empty DATA, PING, SETTINGS, PRIORITY, WINDOW_UPDATE) and of the resets moat sends itself
 *   (MadeYouReset): past it, GOAWAY ENHANCE_YOUR_CALM;
 * - a graceful stop and a reload send GOAWAY: streams in flight finish on the connection's generation.
 *
 * Output: nghttp2_session_mem_send()'s frames are gathered in obuf and encrypted in large writes (one
 * TLS record carries many frames), then sent with one send().
 */
#include "server/h2req.h"
#include "server/request.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <string.h>
#include <strings.h>

#define H2_MAX_STREAMS 100
/* Frames that make no progress (empty DATA, PING, SETTINGS, PRIORITY, WINDOW_UPDATE, RST_STREAM moat
 * sent) a connection may send beyond this allowance plus a few per request, before it is told to calm. */
#define H2_IDLE_FRAME_ALLOWANCE 1000
#define H2_IDLE_FRAMES_PER_REQUEST 4
/* Resets moat sends (a stream error the client caused) past which the connection ends. */
#define H2_MAX_RESETS_SENT 100
/* Rapid Reset (CVE-2023-44487): RST_STREAM frames from the client, a token bucket. */
#define H2_RESET_BURST 200
#define H2_RESET_RATE 33
#define H2_MAX_CONTINUATIONS 8

typedef struct h2_stream {
    moat__request_t *r; /* from w->rstates */
    int32_t id;
    moat__h2req_t q; /* its fields, checked, then its HTTP/1.1 head (h2req.c) */
    uint64_t body_in;
    unsigned handled : 1, responded : 1;
    unsigned proxied : 1, /* handed to the proxy before its body: DATA goes to pxin */
        in_eof : 1,       /* the client's END_STREAM came */
        px_eof : 1,       /* the proxied response's body is complete */
        kick : 1,         /* the proxy may go on (room came on one side) */
        parsed : 1;       /* stream_parse ran: parse_rc is its outcome */
    int parse_rc;
    char *body_copy;    /* owned: an in-memory response body, copied (its source may be short-lived) */
    char *pxin, *pxout; /* big pool: proxied request body in, response body out */
    size_t pxin_len, pxout_len, pxout_pos;
    moat_list_t node; /* in h->streams */
} h2_stream_t;

struct moat__h2 {
    nghttp2_session *s;
    moat_list_t streams;
    const uint8_t *pend; /* frames nghttp2 gave that are not in obuf yet */
    size_t pend_len;
    unsigned long idle_frames; /* frames that did no work */
    unsigned long requests;
    unsigned long resets_sent;
    unsigned goaway : 1, calm : 1;
};

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

/* ---- streams ------------------------------------------------------------------------------------ */

static void stream_free(moat__conn_t *c, h2_stream_t *st)
{
    moat_list_remove(&st->node);
    if (st->r != NULL) {
        moat__request_end(st->r);
        moat_bufpool_put(&c->w->rstates, (void **)&st->r);
    }
    moat__h2req_dispose(&st->q);
    moat_free(&st->body_copy);
    moat_bufpool_put(&c->w->big, (void **)&st->pxin);
    moat_bufpool_put(&c->w->big, (void **)&st->pxout);
    moat_free(&st);
}

/* ---- the response writer ------------------------------------------------------------------------ */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    h2_stream_t *st = src->ptr;
    size_t n;
    (void)s, (void)id, (void)user;
    if (st->r->file_left == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    errno = 0;
    if ((n = moat__request_body_read(st->r, (char *)buf, length)) == 0) {
        moat__conn_log(st->r->conn, MOAT_LOG_ERR, "stream=%d reading a file to send: %s", st->id,
                       errno == 0 ? "the file shrank while being sent" : strerror(errno));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    if (st->r->file_left == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Names of HTTP/1.1 fields that HTTP/2 forbids (RFC 9113 8.2.2). */
static int connection_specific(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } names[] = {{"connection", 10},
                 {"keep-alive", 10},
                 {"proxy-connection", 16},
                 {"transfer-encoding", 17},
                 {"upgrade", 7}};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(names); i++)
        if (names[i].len == len && strncasecmp(names[i].name, name, len) == 0)
            return 1;
    return 0;
}

#define H2_MAX_FIELDS (MOAT_HTTP_RESP_EXTRA + 16)

static void h2_send(moat__request_t *r)
{
    static _Thread_local char head[8192];
    h2_stream_t *st = r->stream;
    moat__conn_t *c = r->conn;
    moat_http_resp_t *resp = &r->resp;
    nghttp2_nv nv[H2_MAX_FIELDS];
    nghttp2_data_provider dp, *dpp = NULL;
    size_t len = 0, n = 0;
    char *p, *end;
    int has_body;

    resp->keep_alive = 1; /* HTTP/2 has no Connection field: whatever the status, nothing to close */
    resp->http10_keep_alive = 0;
    if (moat_http_resp_write_head(resp, head, sizeof(head), &len) != 0) {
        moat_http_resp_error(resp, 500);
        resp->keep_alive = 1;
        r->status = 500;
        if (moat_http_resp_write_head(resp, head, sizeof(head), &len) != 0)
            len = 0;
    }
    /* The status line, then "Name: value" lines: lowercased in place into HPACK fields. */
    p = memchr(head, ' ', len);
    end = head + len;
    if (p == NULL || end - p < 4) {
        (void)nghttp2_submit_rst_stream(c->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)p + 1, 7, 3, NGHTTP2_NV_FLAG_NONE};
    p = memchr(p, '\n', (size_t)(end - p));
    while (p != NULL && ++p < end && n < H2_MAX_FIELDS) {
        char *eol = memchr(p, '\r', (size_t)(end - p)), *colon;
        if (eol == NULL || eol == p)
            break; /* the blank line */
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && !connection_specific(p, (size_t)(colon - p))) {
            char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            for (char *q = p; q < colon; q++)
                if (*q >= 'A' && *q <= 'Z')
                    *q = (char)(*q - 'A' + 'a');
            nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p), (size_t)(eol - v),
                                   NGHTTP2_NV_FLAG_NONE};
        }
        p = memchr(eol, '\n', (size_t)(end - eol));
    }
    has_body = !resp->head_only && resp->content_length > 0 && (resp->fd >= 0 || resp->body != NULL) &&
               resp->status != 304 && resp->status >= 200;
    r->file_left = 0;
    if (has_body) {
        if (resp->fd < 0) {
            /* The body may be on the caller's stack or in a thread-local buffer: it is copied. */
            if ((st->body_copy = moat_malloc((size_t)resp->content_length)) == NULL) {
                (void)nghttp2_submit_rst_stream(c->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
                return;
            }
            memcpy(st->body_copy, resp->body, (size_t)resp->content_length);
            resp->body = st->body_copy;
        }
        r->file_left = resp->content_length;
        r->file_off = resp->fd >= 0 ? resp->file_offset : 0;
        if (resp->content_length > c->w->small.size / 2)
            (void)moat__conn_out_bufs(c, 1); /* a file streams: many records per send (else small ones) */
        dp.source.ptr = st;
        dp.read_callback = read_body;
        dpp = &dp;
    }
    st->responded = 1;
    if (nghttp2_submit_response(c->h2->s, st->id, nv, n, dpp) != 0)
        (void)nghttp2_submit_rst_stream(c->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

static void h2_park(moat__request_t *r)
{
    (void)r; /* the stream waits; the connection goes on with the others */
}

static void h2_resume(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    moat__request_handle(r, 0);
    moat__conn_run(c);
}

/* ---- proxied responses ------------------------------------------------------------------------------ */

static ssize_t read_px(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                       nghttp2_data_source *src, void *user)
{
    h2_stream_t *st = src->ptr;
    size_t n = st->pxout_len - st->pxout_pos;
    (void)s, (void)id, (void)user;
    if (n == 0) {
        if (st->px_eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > length)
        n = length;
    memcpy(buf, st->pxout + st->pxout_pos, n);
    st->pxout_pos += n;
    if (st->pxout_pos == st->pxout_len) {
        st->pxout_pos = st->pxout_len = 0;
        st->kick = 1; /* room: the proxy reads on */
        if (st->px_eof)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int h2_px_head(moat__request_t *r, int status, const moat__px_field_t *f, size_t n, int64_t length)
{
    static _Thread_local char names[8192];
    static _Thread_local nghttp2_nv nv[MOAT_HTTP_MAX_HEADERS + 8];
    h2_stream_t *st = r->stream;
    moat__conn_t *c = r->conn;
    char code[12];
    size_t k = 0, used = 0;
    nghttp2_data_provider dp;

    if (status < 200)
        return 0; /* no interim answers on HTTP/2 */
    snprintf(code, sizeof(code), "%d", status);
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < n && k < MOAT_ARRAY_LEN(nv) - 1; i++) {
        /* field names are lowercase on HTTP/2 */
        if (connection_specific(f[i].name.p, f[i].name.len) || used + f[i].name.len > sizeof(names))
            continue;
        for (size_t j = 0; j < f[i].name.len; j++) {
            char ch = f[i].name.p[j];
            names[used + j] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        nv[k++] = (nghttp2_nv){(uint8_t *)names + used, (uint8_t *)f[i].value.p, f[i].name.len,
                               f[i].value.len, NGHTTP2_NV_FLAG_NONE};
        used += f[i].name.len;
    }
    if (length >= 0) {
        static _Thread_local char cl[24];
        int m = snprintf(cl, sizeof(cl), "%lld", (long long)length);
        nv[k++] =
            (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)cl, 14, (size_t)m, NGHTTP2_NV_FLAG_NONE};
    }
    r->status = status;
    st->responded = 1;
    if (length == -2 || length == 0 || r->req.method_id == MOAT_HTTP_HEAD) {
        st->px_eof = 1;
        return nghttp2_submit_response(c->h2->s, st->id, nv, k, NULL) == 0 ? 0 : -1;
    }
    if (st->pxout == NULL && (st->pxout = moat_bufpool_get(&c->w->big)) == NULL)
        return -1;
    dp.source.ptr = st;
    dp.read_callback = read_px;
    return nghttp2_submit_response(c->h2->s, st->id, nv, k, &dp) == 0 ? 0 : -1;
}

static long h2_px_data(moat__request_t *r, const char *p, size_t len)
{
    h2_stream_t *st = r->stream;
    moat__conn_t *c = r->conn;
    size_t room;
    if (st->px_eof)
        return (long)len; /* HEAD: no body goes out */
    room = c->w->big.size - st->pxout_len;
    if (len > room)
        len = room;
    if (len == 0)
        return 0;
    memcpy(st->pxout + st->pxout_len, p, len);
    st->pxout_len += len;
    r->body_sent += len;
    (void)nghttp2_session_resume_data(c->h2->s, st->id);
    return (long)len;
}

static int h2_px_end(moat__request_t *r)
{
    h2_stream_t *st = r->stream;
    if (!st->px_eof) {
        st->px_eof = 1;
        (void)nghttp2_session_resume_data(r->conn->h2->s, st->id);
    }
    return 0;
}

static long h2_px_body_in(moat__request_t *r, char *buf, size_t cap, int raw, int *end)
{
    h2_stream_t *st = r->stream;
    moat__conn_t *c = r->conn;
    size_t n = st->pxin_len < cap ? st->pxin_len : cap;
    (void)raw;
    *end = 0;
    if (st->q.too_big || st->body_in > (uint64_t)moat__conn_limits(c)->body_bytes) {
        r->body.status = 413;
        r->body.error = "request body above limits.body_bytes";
        return -1;
    }
    if (n > 0) {
        memcpy(buf, st->pxin, n);
        memmove(st->pxin, st->pxin + n, st->pxin_len - n);
        st->pxin_len -= n;
        (void)nghttp2_session_consume(c->h2->s, st->id, n); /* the client may send as much again */
    }
    if (st->pxin_len == 0 && st->in_eof)
        *end = 1;
    return (long)n;
}

/* Works on a proxied stream; a proxy failure after the head resets the stream. */
static void h2_px_drive(moat__request_t *r)
{
    h2_stream_t *st = r->stream;
    for (int i = 0; i < 8 && r->px != NULL; i++) {
        moat__px_run_t rc = moat__proxy_run(r);
        if (rc == MOAT__PX_FAIL) {
            (void)nghttp2_submit_rst_stream(r->conn->h2->s, NGHTTP2_FLAG_NONE, st->id,
                                            NGHTTP2_INTERNAL_ERROR);
            return;
        }
        if (rc != MOAT__PX_MORE)
            return;
    }
    st->kick = 1; /* more to do: after the frames went */
}

static void h2_px_wake(moat__request_t *r)
{
    moat__conn_t *c = r->conn;
    h2_px_drive(r);
    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
    moat__conn_run(c);
}

static void h2_px_begin(moat__request_t *r)
{
    h2_stream_t *st = r->stream;
    st->proxied = 1;
    st->kick = 1; /* a kept upstream connection raises no event: the first run is moat's */
}

static const moat__writer_t h2_writer = {"h2",       h2_send,   h2_park,       h2_resume,  h2_px_head,
                                         h2_px_data, h2_px_end, h2_px_body_in, h2_px_wake, h2_px_begin};

/* ---- requests ----------------------------------------------------------------------------------- */

/* The whole request is in: parse its head as HTTP/1.1 and handle it. */
/* Writes the request's head as HTTP/1.1 and parses it (once): 0, or the status to answer. */
static int stream_parse(moat__conn_t *c, h2_stream_t *st)
{
    const moat_limits_t *lim = moat__conn_limits(c);
    moat__request_t *r = st->r;
    moat_http_limits_t hl;
    int rc;

    if (st->parsed)
        return st->parse_rc;
    st->parsed = 1;
    if ((rc = moat__h2req_head(&st->q)) != 0)
        return st->parse_rc = rc;
    hl.request_line_bytes = (size_t)lim->request_line_bytes;
    hl.header_bytes =
        (size_t)lim->header_bytes + 64; /* the HTTP/1.1 framing added here is not the client's */
    hl.body_bytes = (uint64_t)lim->body_bytes;
    hl.header_fields = (size_t)lim->header_fields;
    rc = moat_http_req_parse(&r->req, st->q.head, st->q.hlen, &hl);
    if (rc < 0)
        return st->parse_rc = r->req.status ? r->req.status : 400;
    r->head_ok = 1;
    return st->parse_rc = 0;
}

/* The whole request is in: parse its head as HTTP/1.1 and handle it. */
static void stream_handle(moat__conn_t *c, h2_stream_t *st)
{
    const moat_limits_t *lim = moat__conn_limits(c);
    moat__request_t *r = st->r;
    int rc;

    if (st->handled)
        return;
    st->handled = 1;
    if ((rc = stream_parse(c, st)) != 0) {
        moat__request_handle(r, rc);
        return;
    }
    if (r->post != NULL && st->body_in > r->post_cap) {
        moat__request_handle(r, 413); /* a body its handler reads, over that handler's limit */
        return;
    }
    if (st->body_in > (uint64_t)lim->body_bytes) {
        moat__request_handle(r, 413);
        return;
    }
    moat__request_handle(r, 0);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    moat__conn_t *c = user;
    h2_stream_t *st;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->h2->goaway)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* refused: the connection is going away */
    if ((st = moat_calloc(1, sizeof(*st))) == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if ((st->r = moat_bufpool_get(&c->w->rstates)) == NULL) {
        moat_free(&st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->r->post = NULL;
    moat__request_begin(st->r, c, &h2_writer);
    st->r->stream = st;
    st->id = f->hd.stream_id;
    moat_list_push_tail(&c->h2->streams, &st->node);
    c->h2->requests++;
    (void)nghttp2_session_set_stream_user_data(s, st->id, st);
    moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    moat__conn_t *c = user;
    h2_stream_t *st;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers are not looked at */
    if ((st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) == NULL)
        return 0;
    switch (moat__h2req_field(&st->q, name, nlen, value, vlen, (size_t)moat__conn_limits(c)->header_bytes)) {
    case MOAT__H2REQ_OK:
        return 0;
    case MOAT__H2REQ_MALFORMED:
        /* RFC 9113 8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR. */
        (void)nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    case MOAT__H2REQ_NOMEM:
        break;
    }
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *user)
{
    moat__conn_t *c = user;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    (void)flags;
    if (st != NULL && st->proxied && st->r->px != NULL) {
        /* held until the proxy sends it on (the stream's window bounds it: consumed as it leaves); never a
         * byte past the content-length the upstream was told (nghttp2 resets such a stream too) */
        if (st->r->req.body_kind == MOAT_HTTP_BODY_LENGTH && st->body_in + len > st->r->req.content_length)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->body_in += len;
        if (st->pxin == NULL && (st->pxin = moat_bufpool_get(&c->w->big)) == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (len > c->w->big.size - st->pxin_len)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* beyond the window moat gave */
        memcpy(st->pxin + st->pxin_len, data, len);
        st->pxin_len += len;
        st->kick = 1;
        return 0;
    }
    (void)nghttp2_session_consume(s, id, len); /* read (or dropped) now: the window opens again */
    if (st == NULL || st->handled)
        return 0;
    st->body_in += len;
    if (st->body_in > (uint64_t)moat__conn_limits(c)->body_bytes) {
        /* 413 now; the rest of the body is not read (the stream is reset once the answer is sent). */
        stream_handle(c, st);
        return 0;
    }
    /* A POST to a handler that reads its body (OCSP, ACME) keeps it, up to that handler's limit. */
    if (st->r->post == NULL && strcmp(st->q.method, "POST") == 0 && st->q.path != NULL) {
        size_t keep = moat__request_body_keep(1, (moat_http_str_t){st->q.path, strlen(st->q.path)});
        if (keep > 0 && moat__request_post_buf(st->r, keep) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (st->r->post != NULL) {
        if (st->body_in > st->r->post_cap) {
            stream_handle(c, st); /* 413 now; the rest of the body is not read */
            return 0;
        }
        memcpy(st->r->post + st->r->post_len, data, len);
        st->r->post_len += len;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    moat__conn_t *c = user;
    moat__h2_t *h = c->h2;
    h2_stream_t *st;

    switch (f->hd.type) {
    case NGHTTP2_DATA:
        if (f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            h->idle_frames++;
        break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
    case NGHTTP2_WINDOW_UPDATE:
        h->idle_frames++;
        break;
    default:
        break;
    }
    if (h->idle_frames > H2_IDLE_FRAME_ALLOWANCE + H2_IDLE_FRAMES_PER_REQUEST * h->requests && !h->calm) {
        h->calm = 1;
        moat__conn_log(c, MOAT_LOG_INFO, "HTTP/2: %lu frames that do no work: GOAWAY", h->idle_frames);
        (void)nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    st = (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA)
             ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id)
             : NULL;
    if (st == NULL)
        return 0;
    if (st->proxied) {
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            st->in_eof = 1;
            st->kick = 1;
        }
        return 0;
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        stream_handle(c, st);
    } else if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !st->handled &&
               stream_parse(c, st) == 0 && moat__request_proxied(st->r)) {
        /* A request body for an upstream streams as it comes: handed on now. Its framing upstream is
         * moat's: chunked unless the client gave a content-length (nghttp2 holds the DATA to it). */
        st->handled = 1;
        if (st->r->req.body_kind == MOAT_HTTP_BODY_NONE)
            st->r->req.body_kind = MOAT_HTTP_BODY_CHUNKED;
        moat__request_handle(st->r, 0);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    moat__conn_t *c = user;
    moat__h2_t *h = c->h2;
    /* MadeYouReset (CVE-2025-8671): frames that make moat reset streams cost the client; the stream's
     * work stops with it (on_stream_close). */
    if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code != NGHTTP2_NO_ERROR &&
        ++h->resets_sent > H2_MAX_RESETS_SENT && !h->calm) {
        h->calm = 1;
        moat__conn_log(c, MOAT_LOG_INFO, "HTTP/2: %lu streams reset for errors: GOAWAY", h->resets_sent);
        (void)nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *user)
{
    moat__conn_t *c = user;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    (void)error;
    if (st == NULL)
        return 0;
    if (st->responded)
        moat__access_log(st->r);
    (void)nghttp2_session_set_stream_user_data(s, id, NULL);
    stream_free(c, st);
    return 0;
}

/* ---- the session -------------------------------------------------------------------------------- */

static int setup_once(void)
{
    if (callbacks != NULL)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_option_set_stream_reset_rate_limit(options, H2_RESET_BURST, H2_RESET_RATE);
    nghttp2_option_set_max_continuations(options, H2_MAX_CONTINUATIONS);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    /* DATA is consumed as it is used (at once, or as a proxied body leaves): a client cannot send more
     * than its window ahead of the upstream. */
    nghttp2_option_set_no_auto_window_update(options, 1);
    return 0;
}

int moat__h2_start(moat__conn_t *c)
{
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    const moat_limits_t *lim = moat__conn_limits(c);
    nghttp2_settings_entry set[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    int rc;

    pthread_mutex_lock(&once);
    rc = setup_once();
    pthread_mutex_unlock(&once);
    if (rc != 0 || (c->h2 = moat_calloc(1, sizeof(*c->h2))) == NULL)
        return -1;
    moat_list_init(&c->h2->streams);
    if (nghttp2_session_server_new2(&c->h2->s, callbacks, c, options) != 0) {
        moat_free(&c->h2);
        return -1;
    }
    if (nghttp2_submit_settings(c->h2->s, NGHTTP2_FLAG_NONE, set, MOAT_ARRAY_LEN(set)) != 0)
        return -1;
    return 0;
}

void moat__h2_free(moat__conn_t *c)
{
    moat__h2_t *h = c->h2;
    if (h == NULL)
        return;
    nghttp2_session_del(h->s); /* calls on_stream_close for the streams still open */
    while (!moat_list_empty(&h->streams)) {
        h2_stream_t *st = moat_container_of(h->streams.next, h2_stream_t, node);
        if (st->responded) /* cut off: logged with the bytes that did leave */
            moat__access_log(st->r);
        stream_free(c, st);
    }
    moat_free(&c->h2);
}

void moat__h2_shutdown(moat__conn_t *c)
{
    moat__h2_t *h = c->h2;
    if (h == NULL || h->goaway)
        return;
    h->goaway = 1;
    (void)nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                                NGHTTP2_NO_ERROR, NULL, 0);
}

int moat__h2_idle(const moat__conn_t *c)
{
    return c->h2 == NULL || moat_list_empty(&c->h2->streams);
}

/* Gathers nghttp2's frames in obuf and encrypts them into wbuf. 0: nothing more to send; 1: wbuf is
 * full (flush first); -1: failed. */
static int produce(moat__conn_t *c)
{
    moat__h2_t *h = c->h2;
    if (c->obuf == NULL && moat__conn_out_bufs(c, 0) != 0)
        return -1;
    for (;;) {
        while (h->pend_len > 0 && c->olen < c->ocap) {
            size_t n = h->pend_len < c->ocap - c->olen ? h->pend_len : c->ocap - c->olen;
            memcpy(c->obuf + c->olen, h->pend, n);
            c->olen += n;
            h->pend += n;
            h->pend_len -= n;
        }
        if (h->pend_len == 0 && c->olen < c->ocap) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->s, &data);
            if (n < 0)
                return -1;
            if (n > 0) {
                h->pend = data;
                h->pend_len = (size_t)n;
                continue;
            }
        }
        if (c->olen == c->opos) {
            c->opos = c->olen = 0;
            return 0;
        }
        {
            long w = moat__conn_write(c, c->obuf + c->opos, c->olen - c->opos);
            if (w < 0)
                return -1;
            c->opos += (size_t)w;
            if (c->opos < c->olen)
                return 1;
            c->opos = c->olen = 0;
        }
    }
}

int moat__h2_run(moat__conn_t *c)
{
    moat__h2_t *h = c->h2;
    for (;;) {
        int p;
        if (c->io.wlen > 0) {
            moat__flush_t f = moat__conn_flush(c);
            if (f == FLUSH_FAILED)
                return -1;
            if (f == FLUSH_BLOCKED) {
                /* A client that does not read: the idle timeout bounds how long it holds us. */
                moat__conn_timer(c, &c->w->q_idle, moat__conn_limits(c)->idle_timeout_s);
                return 0;
            }
        }
        for (moat_list_t *n = h->streams.next; n != &h->streams; n = n->next) {
            h2_stream_t *st = moat_container_of(n, h2_stream_t, node);
            if (st->kick && st->r != NULL && st->r->px != NULL) {
                st->kick = 0;
                h2_px_drive(st->r);
            }
        }
        if ((p = produce(c)) < 0)
            return -1;
        if (p == 1 || c->io.wlen > 0)
            continue;
        if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
            c->state = CONN_CLOSING; /* GOAWAY sent and every stream done */
            return 0;
        }
        if (c->hlen > 0) {
            ssize_t n = nghttp2_session_mem_recv(h->s, (const uint8_t *)c->hbuf, c->hlen);
            c->hlen = 0;
            if (n < 0) {
                /* A connection error: nghttp2 queued its GOAWAY; send it, then close. */
                moat__conn_log(c, MOAT_LOG_INFO, "HTTP/2: %s", nghttp2_strerror((int)n));
                if (n != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
                    (void)nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
                (void)produce(c);
                if (c->io.wlen > 0)
                    (void)moat__conn_flush(c);
                return -1;
            }
            continue;
        }
        switch (moat__conn_tls_pull(c)) {
        case PULL_GOT:
            continue;
        case PULL_WANT_FLUSH:
            continue;
        case PULL_PEER_CLOSED:
            c->peer_closed = 1;
            c->state = CONN_CLOSING;
            return 0;
        case PULL_FAILED:
            return -1;
        case PULL_WANT_READ:
            break;
        }
        switch (moat__conn_sock_read(c)) {
        case READ_GOT:
            continue;
        case READ_EOF:
            return -1;
        case READ_NONE:
            break;
        }
        if (moat_list_empty(&h->streams))
            moat__conn_release_idle_bufs(c);
        return 0;
    }
}
