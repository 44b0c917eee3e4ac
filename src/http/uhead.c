/*
 * The reverse proxy's reader of upstream response heads. An application server is trusted more than a
 * client, but not with the framing of the client's connection: every rule that keeps a request from
 * smuggling a second one keeps a response from it too (one Content-Length, chunked once and last, no
 * obs-fold, no control bytes), and what is not clear is refused (502 bad-response).
 */
#include "http/http_int.h"

#include <string.h>

#define CL_MAX 0xFFFFFFFFFFFFull /* 256 TiB: far beyond any real body, and no overflow */

static int bad(moat_http_uhead_t *h, const char *why)
{
    h->error = why;
    return MOAT_E_INVAL;
}

static int status_line(moat_http_uhead_t *h, const char *p, size_t n)
{
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return bad(h, "not an HTTP/1.x status line");
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9')
            return bad(h, "a status code that is not three digits");
    if (n > 12 && p[12] != ' ')
        return bad(h, "no space after the status code");
    h->version_minor = p[7] - '0';
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (h->status < 100 || h->status > 599)
        return bad(h, "a status code out of 100-599");
    if (n > 13 && moat__http_value_scan((const unsigned char *)p + 13, n - 13) != n - 13)
        return bad(h, "a control byte in the reason phrase");
    return 0;
}

enum { F_CL = 1, F_TE = 2, F_CLOSE = 4, F_KEEP = 8, F_UPGRADE = 16 };

static int field(moat_http_uhead_t *h, const char *buf, size_t s, size_t e, unsigned *flags)
{
    size_t i = s, vs, ve, pos = 0;
    moat_http_str_t name, v, el;
    if (buf[s] == ' ' || buf[s] == '\t')
        return bad(h, "obsolete line folding");
    while (i < e && moat__http_is((unsigned char)buf[i], MOAT__HTTP_TCHAR))
        i++;
    if (i == s || i == e || buf[i] != ':')
        return bad(h, "a malformed header field name");
    for (vs = i + 1; vs < e && (buf[vs] == ' ' || buf[vs] == '\t'); vs++)
        ;
    for (ve = e; ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'); ve--)
        ;
    if (moat__http_value_scan((const unsigned char *)buf + vs, ve - vs) != ve - vs)
        return bad(h, "a control byte in a header field value");
    if (h->n_headers >= MOAT_HTTP_MAX_HEADERS) {
        h->error = "too many header fields";
        return MOAT_E_LIMIT;
    }
    h->headers[h->n_headers++] =
        (moat_http_hdr_t){(uint32_t)s, (uint32_t)(i - s), (uint32_t)vs, (uint32_t)(ve - vs)};
    name = (moat_http_str_t){buf + s, i - s};
    v = (moat_http_str_t){buf + vs, ve - vs};
    /* the three fields of the framing, told apart by their lengths first (most fields are none) */
    if (name.len == 14 && moat__http_ieq(name.p, "content-length", 14)) {
        while (moat__http_list_next(v.p, v.len, &pos, &el)) {
            uint64_t x = 0;
            if (el.len == 0)
                return bad(h, "an invalid Content-Length");
            for (size_t k = 0; k < el.len; k++) {
                if (el.p[k] < '0' || el.p[k] > '9' || (x = x * 10 + (uint64_t)(el.p[k] - '0')) > CL_MAX)
                    return bad(h, "an invalid Content-Length");
            }
            if ((*flags & F_CL) && x != h->content_length)
                return bad(h, "several different Content-Length values");
            *flags |= F_CL;
            h->content_length = x;
        }
    } else if (name.len == 17 && moat__http_ieq(name.p, "transfer-encoding", 17)) {
        while (moat__http_list_next(v.p, v.len, &pos, &el)) {
            if (el.len == 0)
                continue;
            if (!moat_http_str_ieq(el, "chunked") || (*flags & F_TE))
                return bad(h, "a transfer coding other than chunked once");
            *flags |= F_TE;
        }
        if (!(*flags & F_TE))
            return bad(h, "an empty Transfer-Encoding");
    } else if (name.len == 10 && moat__http_ieq(name.p, "connection", 10)) {
        while (moat__http_list_next(v.p, v.len, &pos, &el)) {
            if (moat_http_str_ieq(el, "close"))
                *flags |= F_CLOSE;
            else if (moat_http_str_ieq(el, "keep-alive"))
                *flags |= F_KEEP;
            else if (moat_http_str_ieq(el, "upgrade"))
                *flags |= F_UPGRADE;
        }
    }
    return 0;
}

int moat_http_uhead_parse(moat_http_uhead_t *h, const char *buf, size_t len, size_t max_head,
                          int head_request)
{
    size_t lim = len < max_head ? len : max_head, s = 0, e;
    unsigned flags = 0;
    int rc;

    memset(h, 0, offsetof(moat_http_uhead_t, headers));
    h->error = NULL;
    /* One pass: each line is checked as it is found, up to the blank line; a head still open at the
     * end of the bytes is incomplete (or too large). */
    for (;;) {
        const char *nl = s < lim ? memchr(buf + s, '\n', lim - s) : NULL;
        if (nl == NULL) {
            if (len >= max_head) {
                h->error = "a response head larger than the limit";
                return MOAT_E_LIMIT;
            }
            return MOAT_E_AGAIN;
        }
        e = (size_t)(nl - buf);
        if (e > s && buf[e - 1] == '\r')
            e--;
        if (memchr(buf + s, '\r', e - s) != NULL)
            return bad(h, "a bare CR");
        if (e == s) {
            if (s == 0)
                return bad(h, "no status line");
            h->head_len = (size_t)(nl - buf) + 1; /* the blank line */
            break;
        }
        rc = s == 0 ? status_line(h, buf + s, e - s) : field(h, buf, s, e, &flags);
        if (rc != 0)
            return rc;
        s = (size_t)(nl - buf) + 1;
    }
    if ((flags & F_CL) && (flags & F_TE))
        return bad(h, "both Content-Length and Transfer-Encoding");
    if (h->version_minor == 0 && (flags & F_TE))
        return bad(h, "Transfer-Encoding in an HTTP/1.0 response");
    h->keep_alive = h->version_minor == 1 ? !(flags & F_CLOSE) : (flags & F_KEEP) && !(flags & F_CLOSE);
    h->upgrade = h->status == 101 && (flags & F_UPGRADE);
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
        h->frame = MOAT_HTTP_UFRAME_NONE;
    else if (flags & F_TE)
        h->frame = MOAT_HTTP_UFRAME_CHUNKED;
    else if (flags & F_CL)
        h->frame = h->content_length > 0 ? MOAT_HTTP_UFRAME_LENGTH : MOAT_HTTP_UFRAME_NONE;
    else
        h->frame = MOAT_HTTP_UFRAME_CLOSE;
    if (h->frame == MOAT_HTTP_UFRAME_CLOSE)
        h->keep_alive = 0;
    return 0;
}

void moat_http_uhead_field(const moat_http_uhead_t *h, const char *buf, size_t i, moat_http_str_t *name,
                           moat_http_str_t *value)
{
    const moat_http_hdr_t *f = &h->headers[i];
    name->p = buf + f->name_off;
    name->len = f->name_len;
    value->p = buf + f->value_off;
    value->len = f->value_len;
}

void moat_http_body_init_uhead(moat_http_body_t *b, const moat_http_uhead_t *h)
{
    moat_http_req_t r;
    r.body_kind = h->frame == MOAT_HTTP_UFRAME_CHUNKED ? MOAT_HTTP_BODY_CHUNKED : MOAT_HTTP_BODY_LENGTH;
    r.content_length = h->content_length;
    moat_http_body_init(b, &r, UINT64_MAX);
}
