/* An HTTP/2 request's fields, checked and written as an HTTP/1.1 head (see h2req.h). */
#include "server/h2req.h"

#include "core/core.h"

#include <string.h>
#include <strings.h>

/* Appends <n> bytes to the head, growing it. 0 or -1. */
static int put(moat__h2req_t *q, const void *p, size_t n)
{
    if (q->hlen + n > q->hcap) {
        size_t cap = q->hcap ? q->hcap * 2 : 512;
        char *b;
        while (cap < q->hlen + n)
            cap *= 2;
        if ((b = moat_realloc(q->head, cap)) == NULL)
            return -1;
        q->head = b;
        q->hcap = cap;
    }
    memcpy(q->head + q->hlen, p, n);
    q->hlen += n;
    return 0;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *d = moat_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* True when <p> holds a byte that ends or splits a line of an HTTP/1.1 head. */
static int breaks_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= '\r' && (p[i] == '\r' || p[i] == '\n' || p[i] == '\0'))
            return 1;
    return 0;
}

/* True when <p> holds a space or a control byte: it would split the request line. */
static int breaks_request_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] == 0x7f)
            return 1;
    return 0;
}

/* A field name as RFC 9113 8.2.1 allows it: lowercase token characters. */
static int name_ok(const uint8_t *p, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if ((unsigned)(ch - 'a') < 26u || ch == '-' || (unsigned)(ch - '0') < 10u)
            continue; /* nearly every name is made of these */
        if (ch == '\0' || strchr(tchar, ch) == NULL)
            return 0;
    }
    return 1;
}

moat__h2req_rc_t moat__h2req_field(moat__h2req_t *q, const uint8_t *name, size_t nlen, const uint8_t *value,
                                   size_t vlen, size_t max_bytes)
{
    if (q->too_big)
        return MOAT__H2REQ_OK;
    if (breaks_line(value, vlen))
        return MOAT__H2REQ_MALFORMED;
    /* RFC 9113 6.5.2: the size of a field is its name, value and 32. */
    if (q->hlen + nlen + vlen + 32 > max_bytes) {
        q->too_big = 1;
        return MOAT__H2REQ_OK;
    }
    if (nlen > 0 && name[0] == ':') {
        char **slot = NULL;
        if (q->seen_regular)
            return MOAT__H2REQ_MALFORMED; /* RFC 9113 8.3: pseudo-headers come first */
        if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
            if (q->method[0] != '\0' || vlen == 0 || breaks_request_line(value, vlen))
                return MOAT__H2REQ_MALFORMED;
            if (vlen >= sizeof(q->method)) {
                q->too_big = 1; /* no method moat knows is that long: 431 like any field too large */
                return MOAT__H2REQ_OK;
            }
            memcpy(q->method, value, vlen);
            q->method[vlen] = '\0';
            return MOAT__H2REQ_OK;
        }
        if (nlen == 5 && memcmp(name, ":path", 5) == 0)
            slot = &q->path;
        else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
            slot = &q->authority;
        else if (nlen == 7 && memcmp(name, ":scheme", 7) == 0)
            return MOAT__H2REQ_OK; /* nghttp2 checked it; the listener says https */
        else
            return MOAT__H2REQ_MALFORMED; /* an unknown pseudo-header (RFC 9113 8.3) */
        if (*slot != NULL || vlen == 0 || breaks_request_line(value, vlen))
            return MOAT__H2REQ_MALFORMED;
        return (*slot = dup_n(value, vlen)) != NULL ? MOAT__H2REQ_OK : MOAT__H2REQ_NOMEM;
    }
    if (!name_ok(name, nlen))
        return MOAT__H2REQ_MALFORMED;
    q->seen_regular = 1;
    if (nlen == 4 && memcmp(name, "host", 4) == 0) {
        if (q->host != NULL)
            return MOAT__H2REQ_MALFORMED; /* two Host fields */
        /* RFC 9113 8.3.1: a Host field that names another authority than :authority is malformed. */
        if (q->authority != NULL &&
            (strlen(q->authority) != vlen || strncasecmp(q->authority, (const char *)value, vlen) != 0))
            return MOAT__H2REQ_MALFORMED;
        if ((q->host = dup_n(value, vlen)) == NULL)
            return MOAT__H2REQ_NOMEM;
    }
    if (put(q, name, nlen) != 0 || put(q, ": ", 2) != 0 || put(q, value, vlen) != 0 || put(q, "\r\n", 2) != 0)
        return MOAT__H2REQ_NOMEM;
    q->regular++;
    return MOAT__H2REQ_OK;
}

int moat__h2req_head(moat__h2req_t *q)
{
    moat__h2req_t h = {0};
    int host_line;

    if (q->too_big)
        return 431;
    if (q->path == NULL || q->method[0] == '\0')
        return 400; /* CONNECT and the like: no :path */
    host_line = q->host == NULL && q->authority != NULL;
    if (put(&h, q->method, strlen(q->method)) != 0 || put(&h, " ", 1) != 0 ||
        put(&h, q->path, strlen(q->path)) != 0 || put(&h, " HTTP/1.1\r\n", 11) != 0 ||
        (host_line && (put(&h, "Host: ", 6) != 0 || put(&h, q->authority, strlen(q->authority)) != 0 ||
                       put(&h, "\r\n", 2) != 0)) ||
        (q->hlen > 0 && put(&h, q->head, q->hlen) != 0) || put(&h, "\r\n", 2) != 0) {
        moat_free(&h.head);
        return 500;
    }
    moat_free(&q->head);
    q->head = h.head;
    q->hlen = h.hlen;
    q->hcap = h.hcap;
    return 0;
}

void moat__h2req_dispose(moat__h2req_t *q)
{
    moat_free(&q->path);
    moat_free(&q->authority);
    moat_free(&q->head);
    moat_free(&q->host);
    memset(q, 0, sizeof(*q));
}
