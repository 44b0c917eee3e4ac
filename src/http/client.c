/*
 * The client side of HTTP/1.1 for fetching CRLs: http:// URL parsing and response parsing. A response
 * comes from any server named in a certificate, so everything here treats it as hostile: bounded head,
 * bounded body, one framing (ambiguous framing is refused rather than guessed), no redirects.
 */
#include "http/http_int.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#define CLIENT_HEAD_MAX 16384

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int moat_http_url_parse(const char *url, moat_http_url_t *out, moat_err_t *err)
{
    return moat_http_url_parse_ex(url, 0, out, err);
}

int moat_http_url_parse_ex(const char *url, unsigned flags, moat_http_url_t *out, moat_err_t *err)
{
    const char *p, *auth_end, *hs, *he, *path;
    size_t n = url != NULL ? strlen(url) : 0, skip = 7;
    long port = 80;

    memset(out, 0, sizeof(*out));
    if ((flags & MOAT_HTTP_URL_HTTPS) && n >= 9 && strncasecmp(url, "https://", 8) == 0) {
        out->tls = 1;
        port = 443;
        skip = 8;
    } else if (n < 8 || strncasecmp(url, "http://", 7) != 0) {
        return moat_err_set(err, MOAT_E_INVAL,
                            (flags & MOAT_HTTP_URL_HTTPS) ? "only http:// and https:// URLs are fetched"
                                                          : "only http:// URLs are fetched");
    }
    if (n >= MOAT_HTTP_URL_MAX)
        return moat_err_set(err, MOAT_E_LIMIT, "URL longer than %d bytes", MOAT_HTTP_URL_MAX - 1);
    for (p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return moat_err_set(err, MOAT_E_INVAL, "the URL has a space, control or non-ASCII byte");
    p = url + skip;
    auth_end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL)
        return moat_err_set(err, MOAT_E_INVAL, "the URL carries user information");
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(auth_end - hs));
        if (he == NULL || he == hs)
            return moat_err_set(err, MOAT_E_INVAL, "the URL's IPv6 address has no closing bracket");
        for (const char *q = hs; q < he; q++)
            if (moat_hex_digit((unsigned char)*q) < 0 && *q != ':' && *q != '.')
                return moat_err_set(err, MOAT_E_INVAL, "the URL's IPv6 address has a bad character");
        p = he + 1;
    } else {
        hs = p;
        he = p + strcspn(p, ":/?#");
        if (he > auth_end)
            he = auth_end;
        if (he == hs)
            return moat_err_set(err, MOAT_E_INVAL, "the URL has no host");
        for (const char *q = hs; q < he; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                  *q == '.' || *q == '-' || *q == '_'))
                return moat_err_set(err, MOAT_E_INVAL, "the URL's host has a bad character");
        p = he;
    }
    if ((size_t)(he - hs) >= sizeof(out->host))
        return moat_err_set(err, MOAT_E_LIMIT, "the URL's host is too long");
    memcpy(out->host, hs, (size_t)(he - hs));
    if (p < auth_end) {
        char digits[8];
        if (*p != ':' || auth_end - p - 1 < 1 || auth_end - p - 1 > 5)
            return moat_err_set(err, MOAT_E_INVAL, "the URL's port is not a number from 1 to 65535");
        memcpy(digits, p + 1, (size_t)(auth_end - p - 1));
        digits[auth_end - p - 1] = '\0';
        if (strspn(digits, "0123456789") != strlen(digits) || moat_parse_long(digits, 1, 65535, &port) != 0)
            return moat_err_set(err, MOAT_E_INVAL, "the URL's port is not a number from 1 to 65535");
    }
    out->port = (unsigned)port;
    if (strchr(out->host, ':') != NULL)
        snprintf(out->hostport, sizeof(out->hostport), "[%s]:%u", out->host, out->port);
    else
        snprintf(out->hostport, sizeof(out->hostport), "%s:%u", out->host, out->port);
    /* RFC 9110 §7.2: the default port may be left out; "host:80" is equally valid, keep it uniform. */
    path = auth_end;
    n = strcspn(path, "#");
    if (n == 0)
        moat_strlcpy(out->path, "/", sizeof(out->path));
    else if (*path != '/') {
        /* "http://host?x": the query of the root. */
        if (n + 1 >= sizeof(out->path))
            return moat_err_set(err, MOAT_E_LIMIT, "the URL's path is too long");
        out->path[0] = '/';
        memcpy(out->path + 1, path, n);
    } else {
        memcpy(out->path, path, n); /* fits: the whole URL is shorter than the path buffer */
    }
    return 0;
}

/* Validates a chunked body starting at <p> (without changing it). Returns 0 when complete (*decoded: its
 * size, *end: the offset past the trailers), MOAT_E_AGAIN, or an error. */
static int chunked_scan(const uint8_t *p, size_t len, size_t max_body, size_t *decoded, size_t *end,
                        moat_err_t *err)
{
    size_t i = 0, total = 0;
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        while (i < len && moat_hex_digit(p[i]) >= 0) {
            if (++digits > 15)
                return moat_err_set(err, MOAT_E_INVAL, "a chunk size is too long");
            size = size * 16 + (uint64_t)moat_hex_digit(p[i++]);
        }
        if (i == len)
            return MOAT_E_AGAIN;
        if (digits == 0)
            return moat_err_set(err, MOAT_E_INVAL, "a chunk does not start with its size");
        /* Chunk extensions carry nothing moat uses; skip them to the end of the line. */
        while (i < len && p[i] != '\r' && p[i] != '\n') {
            if (p[i] < 0x20 && p[i] != '\t')
                return moat_err_set(err, MOAT_E_INVAL, "a control byte in a chunk line");
            i++;
        }
        if (i + 2 > len)
            return MOAT_E_AGAIN;
        if (p[i] != '\r' || p[i + 1] != '\n')
            return moat_err_set(err, MOAT_E_INVAL, "a chunk line does not end with CRLF");
        i += 2;
        if (size == 0)
            break;
        if (size > max_body - total)
            return moat_err_set(err, MOAT_E_LIMIT, "the body is larger than %zu bytes", max_body);
        total += (size_t)size;
        if (len - i < size + 2)
            return MOAT_E_AGAIN;
        i += (size_t)size;
        if (p[i] != '\r' || p[i + 1] != '\n')
            return moat_err_set(err, MOAT_E_INVAL, "chunk data is not followed by CRLF");
        i += 2;
    }
    /* Trailer fields, then an empty line. */
    for (;;) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        if (nl == NULL)
            return len - i > CLIENT_HEAD_MAX ? moat_err_set(err, MOAT_E_LIMIT, "the trailers are too large")
                                             : MOAT_E_AGAIN;
        if (nl == p + i || nl[-1] != '\r')
            return moat_err_set(err, MOAT_E_INVAL, "a trailer line does not end with CRLF");
        if (nl == p + i + 1) {
            *end = (size_t)(nl - p) + 1;
            break;
        }
        i = (size_t)(nl - p) + 1;
    }
    *decoded = total;
    return 0;
}

/* Moves the chunk data of a validated chunked body together at its start. */
static void chunked_compact(uint8_t *p)
{
    size_t in = 0, out = 0;
    for (;;) {
        size_t size = 0;
        while (moat_hex_digit(p[in]) >= 0)
            size = size * 16 + (size_t)moat_hex_digit(p[in++]);
        while (p[in] != '\n')
            in++;
        in++;
        if (size == 0)
            return;
        memmove(p + out, p + in, size);
        out += size;
        in += size + 2;
    }
}

/* Copies a header value for the caller, printable ASCII only (anything else becomes '?'), cut to fit. */
static void copy_value(char *dst, size_t dstsz, const uint8_t *v, size_t vlen)
{
    size_t n = vlen < dstsz - 1 ? vlen : dstsz - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = v[i] >= 0x20 && v[i] < 0x7f ? (char)v[i] : '?';
    dst[n] = '\0';
}

/* RFC 8288: Link: <URL>; rel="alternate" (the ACME alternate chains, RFC 8555 §7.4.2). Other relations
 * and values moat cannot hold are ignored. */
static void link_value(const uint8_t *v, size_t vlen, moat_http_client_resp_t *out)
{
    const uint8_t *gt;
    char params[256];
    size_t ulen;

    if (vlen < 2 || v[0] != '<' || (gt = memchr(v, '>', vlen)) == NULL)
        return;
    ulen = (size_t)(gt - v - 1);
    copy_value(params, sizeof(params), gt + 1, vlen - (size_t)(gt + 1 - v));
    if (strstr(params, "rel=\"alternate\"") == NULL && strstr(params, "rel=alternate") == NULL)
        return;
    if (out->nalternates >= MOAT_HTTP_CLIENT_LINKS || ulen >= sizeof(out->alternates[0]))
        return;
    copy_value(out->alternates[out->nalternates++], sizeof(out->alternates[0]), v + 1, ulen);
}

static int header_value(const uint8_t *v, size_t vlen, moat_http_client_resp_t *out, int *chunked,
                        int *have_cl, uint64_t *cl, const uint8_t *name, size_t nlen, moat_err_t *err)
{
    if (nlen == 14 && strncasecmp((const char *)name, "Content-Length", 14) == 0) {
        uint64_t n = 0;
        if (vlen == 0 || vlen > 18)
            return moat_err_set(err, MOAT_E_INVAL, "a bad Content-Length");
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return moat_err_set(err, MOAT_E_INVAL, "a bad Content-Length");
            n = n * 10 + (uint64_t)(v[i] - '0');
        }
        if (*have_cl && n != *cl)
            return moat_err_set(err, MOAT_E_INVAL, "two different Content-Length fields");
        *have_cl = 1;
        *cl = n;
    } else if (nlen == 17 && strncasecmp((const char *)name, "Transfer-Encoding", 17) == 0) {
        if (vlen != 7 || strncasecmp((const char *)v, "chunked", 7) != 0 || *chunked)
            return moat_err_set(err, MOAT_E_INVAL, "a transfer coding other than chunked");
        *chunked = 1;
    } else if (nlen == 8 && strncasecmp((const char *)name, "Location", 8) == 0) {
        copy_value(out->location, sizeof(out->location), v, vlen);
    } else if (nlen == 12 && strncasecmp((const char *)name, "Replay-Nonce", 12) == 0) {
        copy_value(out->nonce, sizeof(out->nonce), v, vlen);
    } else if (nlen == 12 && strncasecmp((const char *)name, "Content-Type", 12) == 0) {
        copy_value(out->content_type, sizeof(out->content_type), v, vlen);
    } else if (nlen == 11 && strncasecmp((const char *)name, "Retry-After", 11) == 0) {
        /* RFC 9110 §10.2.3: delay-seconds or an HTTP date; kept as seconds from the Date of receipt. */
        char tmp[64];
        long secs;
        time_t when;
        copy_value(tmp, sizeof(tmp), v, vlen);
        if (moat_parse_long(tmp, 0, 31536000, &secs) == 0)
            out->retry_after = secs;
        else if (moat_http_date_parse(tmp, strlen(tmp), &when) == 0)
            out->retry_after = when > time(NULL) ? (long)(when - time(NULL)) : 0;
    } else if (nlen == 4 && strncasecmp((const char *)name, "Link", 4) == 0) {
        link_value(v, vlen, out);
    }
    return 0;
}

int moat_http_client_parse(uint8_t *buf, size_t len, int eof, size_t max_body, moat_http_client_resp_t *out,
                           moat_err_t *err)
{
    const uint8_t *end = NULL, *line, *p;
    size_t head_len, avail;
    int chunked = 0, have_cl = 0, rc;
    uint64_t cl = 0;

    memset(out, 0, sizeof(*out));
    out->retry_after = -1;
    for (size_t i = 0; i + 3 < len && i < CLIENT_HEAD_MAX; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i;
            break;
        }
    if (end == NULL) {
        if (len >= CLIENT_HEAD_MAX)
            return moat_err_set(err, MOAT_E_LIMIT, "the response head is larger than %d bytes",
                                CLIENT_HEAD_MAX);
        return eof ? moat_err_set(err, MOAT_E_INVAL, "the connection closed before the response head ended")
                   : MOAT_E_AGAIN;
    }
    head_len = (size_t)(end - buf) + 4;
    /* Status line: HTTP/1.x SP 3DIGIT [SP reason] */
    if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
        buf[11] > '9' || (end - buf > 12 && buf[12] != ' ' && buf[12] != '\r'))
        return moat_err_set(err, MOAT_E_INVAL, "not an HTTP/1.x response");
    out->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    line = memchr(buf, '\n', (size_t)(end - buf) + 2);
    if (line[-1] != '\r')
        return moat_err_set(err, MOAT_E_INVAL, "the status line does not end with CRLF");
    for (p = buf; p < line; p++)
        if ((*p < 0x20 && *p != '\t' && *p != '\r') || *p == 0x7f)
            return moat_err_set(err, MOAT_E_INVAL, "a control byte in the status line");
    line++;
    while (line < end + 2) {
        const uint8_t *eol = memchr(line, '\n', (size_t)(end + 2 - line)), *colon, *v, *ve;
        if (eol == NULL || eol == line || eol[-1] != '\r')
            return moat_err_set(err, MOAT_E_INVAL, "a header line does not end with CRLF");
        if (*line == ' ' || *line == '\t')
            return moat_err_set(err, MOAT_E_INVAL, "a folded header line");
        for (colon = line; colon < eol - 1 && is_tchar(*colon); colon++)
            ;
        if (colon == line || *colon != ':')
            return moat_err_set(err, MOAT_E_INVAL, "a header line without a valid name");
        for (v = colon + 1; v < eol - 1 && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = eol - 1; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        for (p = v; p < ve; p++)
            if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
                return moat_err_set(err, MOAT_E_INVAL, "a control byte in a header value");
        if ((rc = header_value(v, (size_t)(ve - v), out, &chunked, &have_cl, &cl, line,
                               (size_t)(colon - line), err)) != 0)
            return rc;
        line = eol + 1;
    }
    if (out->status < 200)
        return moat_err_set(err, MOAT_E_INVAL, "an interim (1xx) response to a plain GET");
    if (chunked && have_cl)
        return moat_err_set(err, MOAT_E_INVAL, "both Content-Length and Transfer-Encoding");
    out->body_off = head_len;
    avail = len - head_len;
    if (out->status == 204 || out->status == 304)
        return 0;
    if (chunked) {
        size_t decoded = 0, used = 0;
        rc = chunked_scan(buf + head_len, avail, max_body, &decoded, &used, err);
        if (rc == MOAT_E_AGAIN && eof)
            return moat_err_set(err, MOAT_E_INVAL, "the connection closed inside the chunked body");
        if (rc != 0)
            return rc;
        chunked_compact(buf + head_len);
        out->body_len = decoded;
        return 0;
    }
    if (have_cl) {
        if (cl > max_body)
            return moat_err_set(err, MOAT_E_LIMIT, "the body is larger than %zu bytes", max_body);
        if (avail < cl)
            return eof ? moat_err_set(err, MOAT_E_INVAL, "the connection closed %llu bytes short of the body",
                                      (unsigned long long)(cl - avail))
                       : MOAT_E_AGAIN;
        out->body_len = (size_t)cl;
        return 0;
    }
    if (avail > max_body)
        return moat_err_set(err, MOAT_E_LIMIT, "the body is larger than %zu bytes", max_body);
    if (!eof)
        return MOAT_E_AGAIN;
    out->body_len = avail;
    return 0;
}
