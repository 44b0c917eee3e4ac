/*
 * HTTP/1.x request head parser: incremental, in place, limits enforced while reading.
 */
#include "http/http_int.h"

#include <stddef.h>
#include <string.h>

/* The character-class table, built from the ABNF in RFC 9110 §5.6.2 and RFC 3986 §3.2.2. */
#define T MOAT__HTTP_TCHAR
#define F MOAT__HTTP_FVCHAR
#define V MOAT__HTTP_VCHAR
#define H MOAT__HTTP_HOST
#define X MOAT__HTTP_HEX
const uint8_t moat__http_cc[256] = {
    /* 0x00-0x1f: only HTAB is allowed in a field value */
    [0x09] = F,
    [' '] = F,
    ['!'] = T | F | V | H,
    ['"'] = F | V,
    ['#'] = T | F | V,
    ['$'] = T | F | V | H,
    ['%'] = T | F | V | H,
    ['&'] = T | F | V | H,
    ['\''] = T | F | V | H,
    ['('] = F | V | H,
    [')'] = F | V | H,
    ['*'] = T | F | V | H,
    ['+'] = T | F | V | H,
    [','] = F | V | H,
    ['-'] = T | F | V | H,
    ['.'] = T | F | V | H,
    ['/'] = F | V,
    ['0'] = T | F | V | H | X,
    ['1'] = T | F | V | H | X,
    ['2'] = T | F | V | H | X,
    ['3'] = T | F | V | H | X,
    ['4'] = T | F | V | H | X,
    ['5'] = T | F | V | H | X,
    ['6'] = T | F | V | H | X,
    ['7'] = T | F | V | H | X,
    ['8'] = T | F | V | H | X,
    ['9'] = T | F | V | H | X,
    [':'] = F | V,
    [';'] = F | V | H,
    ['<'] = F | V,
    ['='] = F | V | H,
    ['>'] = F | V,
    ['?'] = F | V,
    ['@'] = F | V,
    ['A'] = T | F | V | H | X,
    ['B'] = T | F | V | H | X,
    ['C'] = T | F | V | H | X,
    ['D'] = T | F | V | H | X,
    ['E'] = T | F | V | H | X,
    ['F'] = T | F | V | H | X,
    ['G'] = T | F | V | H,
    ['H'] = T | F | V | H,
    ['I'] = T | F | V | H,
    ['J'] = T | F | V | H,
    ['K'] = T | F | V | H,
    ['L'] = T | F | V | H,
    ['M'] = T | F | V | H,
    ['N'] = T | F | V | H,
    ['O'] = T | F | V | H,
    ['P'] = T | F | V | H,
    ['Q'] = T | F | V | H,
    ['R'] = T | F | V | H,
    ['S'] = T | F | V | H,
    ['T'] = T | F | V | H,
    ['U'] = T | F | V | H,
    ['V'] = T | F | V | H,
    ['W'] = T | F | V | H,
    ['X'] = T | F | V | H,
    ['Y'] = T | F | V | H,
    ['Z'] = T | F | V | H,
    ['['] = F | V,
    ['\\'] = F | V,
    [']'] = F | V,
    ['^'] = T | F | V,
    ['_'] = T | F | V | H,
    ['`'] = T | F | V,
    ['a'] = T | F | V | H | X,
    ['b'] = T | F | V | H | X,
    ['c'] = T | F | V | H | X,
    ['d'] = T | F | V | H | X,
    ['e'] = T | F | V | H | X,
    ['f'] = T | F | V | H | X,
    ['g'] = T | F | V | H,
    ['h'] = T | F | V | H,
    ['i'] = T | F | V | H,
    ['j'] = T | F | V | H,
    ['k'] = T | F | V | H,
    ['l'] = T | F | V | H,
    ['m'] = T | F | V | H,
    ['n'] = T | F | V | H,
    ['o'] = T | F | V | H,
    ['p'] = T | F | V | H,
    ['q'] = T | F | V | H,
    ['r'] = T | F | V | H,
    ['s'] = T | F | V | H,
    ['t'] = T | F | V | H,
    ['u'] = T | F | V | H,
    ['v'] = T | F | V | H,
    ['w'] = T | F | V | H,
    ['x'] = T | F | V | H,
    ['y'] = T | F | V | H,
    ['z'] = T | F | V | H,
    ['{'] = F | V,
    ['|'] = T | F | V,
    ['}'] = F | V,
    ['~'] = T | F | V | H,
    /* 0x7f is a control character; 0x80-0xff are obs-text, allowed in field values only */
    [0x80 ... 0xff] = F,
};
#undef T
#undef F
#undef V
#undef H
#undef X

enum {
    FL_HOST = 1u << 0,
    FL_CL = 1u << 1,
    FL_TE = 1u << 2,
    FL_CLOSE = 1u << 3,
    FL_KEEP = 1u << 4,
    FL_RANGE_DUP = 1u << 5,
    FL_ABSOLUTE = 1u << 6,
    FL_EXPECT = 1u << 7,
    FL_COND = 1u << 8,
};

enum { ST_START = 0, ST_FIELDS = 1, ST_DONE = 2 };

/* The longest Content-Length accepted before the body limit applies: far below UINT64_MAX. */
#define CL_MAX ((uint64_t)1 << 62)

/* Eight bytes with their ASCII capitals made small (other bytes as they are): each byte's low seven bits
 * plus an offset carry into its top bit from 'A' on, and from past 'Z' on. */
static inline uint64_t lower8(uint64_t x)
{
    const uint64_t low7 = x & 0x7f7f7f7f7f7f7f7full, ascii = ~x & 0x8080808080808080ull;
    const uint64_t from_a = low7 + 0x3f3f3f3f3f3f3f3full, past_z = low7 + 0x2525252525252525ull;
    return x | (((from_a ^ past_z) & ascii) >> 2);
}

int moat__http_ieq(const char *a, const char *b, size_t n)
{
    size_t i = 0;
    /* field names and tokens are compared on every request: eight bytes at a time */
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y && lower8(x) != lower8(y))
            return 0;
    }
    for (; i < n; i++)
        if (moat__http_lower((unsigned char)a[i]) != moat__http_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int moat_http_str_ieq(moat_http_str_t s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || moat__http_ieq(s.p, cstr, n));
}

void moat_http_req_reset(moat_http_req_t *req)
{
    /* Everything before the header array is small; the array itself is only read below n_headers. */
    memset(req, 0, offsetof(moat_http_req_t, headers));
    req->status = 0;
    req->error = NULL;
    req->scan_ = 0;
    req->line_ = 0;
    req->state_ = ST_START;
    req->flags_ = 0;
    req->method_off_ = req->target_off_ = req->path_off_ = req->auth_off_ = req->auth_len_ = 0;
    req->hdr_host_ = req->hdr_range_ = req->hdr_if_range_ = req->hdr_ims_ = req->hdr_inm_ = -1;
    req->hdr_im_ = req->hdr_ius_ = -1;
}

static int fail(moat_http_req_t *req, int status, const char *why)
{
    req->status = status;
    req->error = why;
    return status == 413 || status == 414 || status == 431 ? MOAT_E_LIMIT : MOAT_E_INVAL;
}

moat_http_method_t moat_http_method_from(moat_http_str_t s)
{
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    static const struct {
        const char *name;
        size_t len;
        moat_http_method_t id;
    } methods[] = {
        {"GET", 3, MOAT_HTTP_GET},     {"HEAD", 4, MOAT_HTTP_HEAD},       {"POST", 4, MOAT_HTTP_POST},
        {"PUT", 3, MOAT_HTTP_PUT},     {"DELETE", 6, MOAT_HTTP_DELETE},   {"OPTIONS", 7, MOAT_HTTP_OPTIONS},
        {"TRACE", 5, MOAT_HTTP_TRACE}, {"CONNECT", 7, MOAT_HTTP_CONNECT}, {"PATCH", 5, MOAT_HTTP_PATCH},
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(methods); i++)
        if (s.len == methods[i].len && memcmp(s.p, methods[i].name, s.len) == 0)
            return methods[i].id;
    return MOAT_HTTP_METHOD_OTHER;
}

/*
 * Checks a Host value or an absolute-form authority: reg-name or IP-literal, then an optional ":port".
 * Sets *name_len to the length without the port. Empty is valid (RFC 9112 §3.2: a target without an
 * authority is sent with an empty Host).
 */
static int host_check(const char *p, size_t n, size_t *name_len)
{
    size_t i = 0;
    if (n > 0 && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!moat__http_is((unsigned char)p[i], MOAT__HTTP_HEX) && p[i] != ':' && p[i] != '.')
                return -1;
        if (i == n || i == 1)
            return -1;
        i++; /* past ']' */
    } else {
        while (i < n && moat__http_is((unsigned char)p[i], MOAT__HTTP_HOST))
            i++;
    }
    *name_len = i;
    if (i == n)
        return 0;
    if (p[i] != ':' || n - i - 1 > 5)
        return -1;
    for (i++; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return -1;
    return 0;
}

static int parse_version(const char *p, size_t n, int *minor)
{
    if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' || p[7] < '0' ||
        p[7] > '9')
        return 400;
    if (p[5] != '1')
        return 505;
    /* RFC 9110 §2.5: a higher minor version is processed as the highest one we implement. */
    *minor = p[7] == '0' ? 0 : 1;
    return 0;
}

static int parse_request_line(moat_http_req_t *req, const char *buf, size_t s, size_t e)
{
    size_t i = s, m_end, t_start, t_end;
    int minor = 1, rc;

    while (i < e && moat__http_is((unsigned char)buf[i], MOAT__HTTP_TCHAR))
        i++;
    if (i == s || i == e || buf[i] != ' ')
        return fail(req, 400, "malformed request line (method)");
    m_end = i;
    t_start = ++i;
    while (i < e && moat__http_is((unsigned char)buf[i], MOAT__HTTP_VCHAR))
        i++;
    if (i == t_start || i == e || buf[i] != ' ')
        return fail(req, 400, "malformed request line (target)");
    t_end = i++;
    if ((rc = parse_version(buf + i, e - i, &minor)) != 0)
        return fail(req, rc, rc == 505 ? "HTTP version not supported" : "malformed request line (version)");

    req->method_off_ = (uint32_t)s;
    req->method.len = m_end - s;
    req->method_id = moat_http_method_from((moat_http_str_t){buf + s, m_end - s});
    req->target_off_ = (uint32_t)t_start;
    req->target.len = t_end - t_start;
    req->version_minor = minor;

    const char *t = buf + t_start;
    size_t tl = t_end - t_start;
    if (t[0] == '/') {
        req->path_off_ = (uint32_t)t_start;
        req->path.len = tl;
    } else if (tl == 1 && t[0] == '*') {
        if (req->method_id != MOAT_HTTP_OPTIONS)
            return fail(req, 400, "asterisk-form target with a method other than OPTIONS");
    } else if (req->method_id == MOAT_HTTP_CONNECT) {
        size_t nl;
        if (host_check(t, tl, &nl) != 0 || nl == 0)
            return fail(req, 400, "malformed CONNECT target");
        req->flags_ |= FL_ABSOLUTE;
        req->auth_off_ = (uint32_t)t_start;
        req->auth_len_ = (uint32_t)tl;
    } else {
        /* RFC 9112 §3.2.2: a server must accept the absolute form; its authority replaces Host. */
        size_t skip = 0, a, nl;
        if (tl > 7 && moat__http_ieq(t, "http://", 7))
            skip = 7;
        else if (tl > 8 && moat__http_ieq(t, "https://", 8))
            skip = 8;
        else
            return fail(req, 400, "request target is neither a path nor an absolute URL");
        for (a = skip; a < tl && t[a] != '/' && t[a] != '?' && t[a] != '#'; a++)
            if (t[a] == '@')
                return fail(req, 400, "user information in the request target");
        if (host_check(t + skip, a - skip, &nl) != 0 || nl == 0)
            return fail(req, 400, "malformed authority in the request target");
        if (a < tl && t[a] == '#')
            return fail(req, 400, "fragment in the request target");
        req->flags_ |= FL_ABSOLUTE;
        req->auth_off_ = (uint32_t)(t_start + skip);
        req->auth_len_ = (uint32_t)(a - skip);
        req->path_off_ = (uint32_t)(t_start + a);
        req->path.len = tl - a; /* empty: "/" is used */
    }
    return 0;
}

int moat__http_list_next(const char *p, size_t n, size_t *pos, moat_http_str_t *el)
{
    size_t i = *pos, s, e;
    if (i > n)
        return 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    s = i;
    while (i < n && p[i] != ',')
        i++;
    e = i;
    while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    el->p = p + s;
    el->len = e - s;
    *pos = i + 1;
    return 1;
}

static int parse_content_length(moat_http_req_t *req, const char *v, size_t n)
{
    size_t pos = 0;
    moat_http_str_t el;
    while (moat__http_list_next(v, n, &pos, &el)) {
        uint64_t x = 0;
        if (el.len == 0)
            return fail(req, 400, "invalid Content-Length");
        for (size_t i = 0; i < el.len; i++) {
            if (el.p[i] < '0' || el.p[i] > '9')
                return fail(req, 400, "invalid Content-Length");
            x = x * 10 + (uint64_t)(el.p[i] - '0');
            if (x > CL_MAX)
                return fail(req, 400, "Content-Length too large to be valid");
        }
        /* RFC 9110 §8.6: repeated identical values may be folded into one; different ones are fatal. */
        if ((req->flags_ & FL_CL) && x != req->content_length)
            return fail(req, 400, "several different Content-Length values");
        req->flags_ |= FL_CL;
        req->content_length = x;
    }
    return 0;
}

static int parse_transfer_encoding(moat_http_req_t *req, const char *v, size_t n)
{
    size_t pos = 0;
    moat_http_str_t el;
    int any = 0;
    while (moat__http_list_next(v, n, &pos, &el)) {
        if (el.len == 0)
            continue; /* RFC 9110 §5.6.1: empty list elements are ignored */
        any = 1;
        for (size_t i = 0; i < el.len; i++)
            if (!moat__http_is((unsigned char)el.p[i], MOAT__HTTP_TCHAR))
                return fail(req, 501, "unsupported transfer coding");
        if (!moat_http_str_ieq(el, "chunked"))
            return fail(req, 501, "unsupported transfer coding");
        /* Chunked must be applied once, and last: a second one is an attempt to confuse framing. */
        if (req->flags_ & FL_TE)
            return fail(req, 400, "chunked transfer coding applied twice");
        req->flags_ |= FL_TE;
    }
    if (!any)
        return fail(req, 400, "empty Transfer-Encoding");
    return 0;
}

static void parse_connection(moat_http_req_t *req, const char *v, size_t n)
{
    size_t pos = 0;
    moat_http_str_t el;
    while (moat__http_list_next(v, n, &pos, &el)) {
        if (moat_http_str_ieq(el, "close"))
            req->flags_ |= FL_CLOSE;
        else if (moat_http_str_ieq(el, "keep-alive"))
            req->flags_ |= FL_KEEP;
    }
}

/*
 * Length of the run of field-value bytes at p[0, n): n if all are allowed. Eight bytes at a time: a word
 * is clean when none of its bytes is below 0x20 or equal to 0x7f (bytes >= 0x80 are obs-text and fine);
 * a word holding a HTAB, or a bad byte, is looked at byte by byte.
 */
size_t moat__http_value_scan(const unsigned char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, x;
        memcpy(&w, p + i, 8);
        x = w ^ (ones * 0x7f);
        if (((w - ones * 0x20) & ~w & highs) | ((x - ones) & ~x & highs))
            break;
    }
    for (; i < n; i++)
        if (!moat__http_is(p[i], MOAT__HTTP_FVCHAR))
            return i;
    return n;
}

static int parse_field(moat_http_req_t *req, const char *buf, size_t s, size_t e)
{
    size_t i = s, vs, ve;
    if (buf[s] == ' ' || buf[s] == '\t')
        return fail(req, 400, "obsolete line folding in a header field");
    while (i < e && moat__http_is((unsigned char)buf[i], MOAT__HTTP_TCHAR))
        i++;
    if (i == s || i == e || buf[i] != ':')
        return fail(req, 400, "malformed header field name");
    size_t name_len = i - s;
    for (vs = i + 1; vs < e && (buf[vs] == ' ' || buf[vs] == '\t'); vs++)
        ;
    for (ve = e; ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'); ve--)
        ;
    if (moat__http_value_scan((const unsigned char *)buf + vs, ve - vs) != ve - vs)
        return fail(req, 400, "control character in a header field value");
    if (req->n_headers >= req->max_fields_)
        return fail(req, 431, "too many header fields");

    int16_t idx = (int16_t)req->n_headers;
    moat_http_hdr_t *h = &req->headers[req->n_headers++];
    h->name_off = (uint32_t)s;
    h->name_len = (uint32_t)name_len;
    h->value_off = (uint32_t)vs;
    h->value_len = (uint32_t)(ve - vs);

    const char *name = buf + s, *v = buf + vs;
    size_t vl = ve - vs, nl;
    switch (name_len) {
    case 4:
        if (moat__http_ieq(name, "host", 4)) {
            /* RFC 9112 §3.2: several Host fields make the request invalid; answer 400, do not pick one. */
            if (req->flags_ & FL_HOST)
                return fail(req, 400, "several Host header fields");
            if (host_check(v, vl, &nl) != 0)
                return fail(req, 400, "invalid Host header field");
            req->flags_ |= FL_HOST;
            req->hdr_host_ = idx;
        }
        break;
    case 5:
        if (moat__http_ieq(name, "range", 5)) {
            req->flags_ |= FL_COND;
            if (req->hdr_range_ >= 0)
                req->flags_ |= FL_RANGE_DUP;
            req->hdr_range_ = idx;
        }
        break;
    case 6:
        if (moat__http_ieq(name, "expect", 6) && moat_http_str_ieq((moat_http_str_t){v, vl}, "100-continue"))
            req->flags_ |= FL_EXPECT;
        break;
    case 8:
        if (moat__http_ieq(name, "if-range", 8)) {
            req->flags_ |= FL_COND;
            req->hdr_if_range_ = idx;
        } else if (moat__http_ieq(name, "if-match", 8)) {
            req->flags_ |= FL_COND;
            if (req->hdr_im_ < 0)
                req->hdr_im_ = idx;
        }
        break;
    case 10:
        if (moat__http_ieq(name, "connection", 10))
            parse_connection(req, v, vl);
        break;
    case 13:
        if (moat__http_ieq(name, "if-none-match", 13)) {
            req->flags_ |= FL_COND;
            if (req->hdr_inm_ < 0)
                req->hdr_inm_ = idx;
        }
        break;
    case 14:
        if (moat__http_ieq(name, "content-length", 14))
            return parse_content_length(req, v, vl);
        break;
    case 17:
        if (moat__http_ieq(name, "transfer-encoding", 17))
            return parse_transfer_encoding(req, v, vl);
        if (moat__http_ieq(name, "if-modified-since", 17)) {
            req->flags_ |= FL_COND;
            req->hdr_ims_ = idx;
        }
        break;
    case 19:
        if (moat__http_ieq(name, "if-unmodified-since", 19)) {
            req->flags_ |= FL_COND;
            req->hdr_ius_ = idx;
        }
        break;
    default:
        break;
    }
    return 0;
}

static moat_http_str_t hdr_value(const moat_http_req_t *req, const char *buf, int idx)
{
    moat_http_str_t s = {NULL, 0};
    if (idx >= 0) {
        s.p = buf + req->headers[idx].value_off;
        s.len = req->headers[idx].value_len;
    }
    return s;
}

static int finish(moat_http_req_t *req, const char *buf, uint64_t body_bytes)
{
    unsigned f = req->flags_;
    size_t nl = 0;
    if (req->version_minor == 1 && !(f & FL_HOST))
        return fail(req, 400, "HTTP/1.1 request without a Host header field");
    if ((f & FL_TE) && (f & FL_CL))
        return fail(req, 400, "both Content-Length and Transfer-Encoding");
    /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means its framing cannot be trusted. */
    if ((f & FL_TE) && req->version_minor == 0)
        return fail(req, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if ((f & FL_CL) && req->content_length > body_bytes)
        return fail(req, 413, "Content-Length above the body limit");

    req->base = buf;
    req->method.p = buf + req->method_off_;
    req->target.p = buf + req->target_off_;
    if (req->path.len > 0)
        req->path.p = buf + req->path_off_;
    else if (f & FL_ABSOLUTE && req->method_id != MOAT_HTTP_CONNECT) {
        req->path.p = "/";
        req->path.len = 1;
    }
    if (f & FL_ABSOLUTE) {
        req->host.p = buf + req->auth_off_;
        req->host.len = req->auth_len_;
    } else {
        req->host = hdr_value(req, buf, req->hdr_host_);
    }
    if (req->host.p != NULL && host_check(req->host.p, req->host.len, &nl) == 0) {
        req->host_name.p = req->host.p;
        req->host_name.len = nl;
    }
    req->keep_alive = (f & FL_CLOSE) ? 0 : req->version_minor == 1 ? 1 : (f & FL_KEEP) != 0;
    if (f & FL_TE)
        req->body_kind = MOAT_HTTP_BODY_CHUNKED;
    else if ((f & FL_CL) && req->content_length > 0)
        req->body_kind = MOAT_HTTP_BODY_LENGTH;
    else
        req->body_kind = MOAT_HTTP_BODY_NONE;
    req->expect_continue = (f & FL_EXPECT) != 0;
    if (!(f & FL_RANGE_DUP))
        req->range = hdr_value(req, buf, req->hdr_range_);
    req->if_range = hdr_value(req, buf, req->hdr_if_range_);
    req->if_modified_since = hdr_value(req, buf, req->hdr_ims_);
    req->if_none_match = hdr_value(req, buf, req->hdr_inm_);
    req->if_match = hdr_value(req, buf, req->hdr_im_);
    req->if_unmodified_since = hdr_value(req, buf, req->hdr_ius_);
    req->conditional = (f & FL_COND) != 0;
    req->state_ = ST_DONE;
    return 0;
}

int moat_http_req_parse(moat_http_req_t *req, const char *buf, size_t len, const moat_http_limits_t *limits)
{
    size_t rl_max = MOAT_HTTP_DEFAULT_REQUEST_LINE_BYTES, hb_max = MOAT_HTTP_DEFAULT_HEADER_BYTES;
    uint64_t body_max = MOAT_HTTP_DEFAULT_BODY_BYTES;
    size_t fields_max = MOAT_HTTP_DEFAULT_HEADER_FIELDS;
    int rc;

    if (limits != NULL) {
        if (limits->header_fields > 0)
            fields_max =
                limits->header_fields < MOAT_HTTP_MAX_HEADERS ? limits->header_fields : MOAT_HTTP_MAX_HEADERS;
        if (limits->request_line_bytes > 0)
            rl_max = limits->request_line_bytes;
        if (limits->header_bytes > 0)
            hb_max = limits->header_bytes;
        if (limits->body_bytes > 0)
            body_max = limits->body_bytes;
    }
    req->max_fields_ = (uint16_t)fields_max;
    /* Offsets are kept in 32 bits. */
    if (hb_max > UINT32_MAX)
        hb_max = UINT32_MAX;
    if (req->status != 0)
        return req->status == 413 || req->status == 414 || req->status == 431 ? MOAT_E_LIMIT : MOAT_E_INVAL;
    if (req->state_ == ST_DONE) {
        req->base = buf;
        return finish(req, buf, body_max);
    }

    for (;;) {
        size_t ls = req->line_, end, le;
        const char *lf = req->scan_ < len ? memchr(buf + req->scan_, '\n', len - req->scan_) : NULL;
        if (lf == NULL) {
            /* The current line has no end yet: refuse as soon as it is sure to fail, in the same order
             * as the checks on a complete line below. */
            req->scan_ = len;
            if (req->state_ == ST_START && len > ls) {
                /* A request line starts with a method token: refuse binary junk (a TLS ClientHello sent
                 * to the plain port) at once instead of waiting for a line end that may never come. */
                if (buf[ls] == '\r' ? len > ls + 1 : !moat__http_is((unsigned char)buf[ls], MOAT__HTTP_TCHAR))
                    return fail(req, 400, "request does not start with a method");
                /* (its last byte may be the CR of the line end, hence the + 1) */
                if (len - ls > rl_max + 1)
                    return fail(req, 414, "request line too long");
            }
            if (len >= hb_max)
                return fail(req, 431, "request head too large");
            return MOAT_E_AGAIN;
        }
        end = (size_t)(lf - buf);
        le = end;
        if (le > ls && buf[le - 1] == '\r')
            le--;
        req->line_ = req->scan_ = end + 1;
        if (req->state_ == ST_START) {
            if (le == ls) {
                /* RFC 9112 §2.2: ignore empty lines before the request line (they still count). */
                if (end + 1 >= hb_max)
                    return fail(req, 431, "request head too large");
                continue;
            }
            if (!moat__http_is((unsigned char)buf[ls], MOAT__HTTP_TCHAR))
                return fail(req, 400, "request does not start with a method");
            if (le - ls > rl_max)
                return fail(req, 414, "request line too long");
        }
        if (end + 1 > hb_max)
            return fail(req, 431, "request head too large");
        /* A CR anywhere but right before LF (a bare CR, RFC 9112 §2.2) is refused by the character checks
         * of the request line and of field names and values: never guess what it meant. */
        if (req->state_ == ST_START) {
            if ((rc = parse_request_line(req, buf, ls, le)) != 0)
                return rc;
            req->state_ = ST_FIELDS;
            continue;
        }
        if (le == ls) {
            req->head_len = end + 1;
            return finish(req, buf, body_max);
        }
        if ((rc = parse_field(req, buf, ls, le)) != 0)
            return rc;
    }
}

void moat_http_req_header(const moat_http_req_t *req, size_t i, moat_http_str_t *name, moat_http_str_t *value)
{
    const moat_http_hdr_t *h = &req->headers[i];
    name->p = req->base + h->name_off;
    name->len = h->name_len;
    value->p = req->base + h->value_off;
    value->len = h->value_len;
}

int moat_http_req_find(const moat_http_req_t *req, const char *name, size_t *from, moat_http_str_t *value)
{
    size_t n = strlen(name);
    for (size_t i = *from; i < req->n_headers; i++) {
        const moat_http_hdr_t *h = &req->headers[i];
        if (h->name_len == n && moat__http_ieq(req->base + h->name_off, name, n)) {
            value->p = req->base + h->value_off;
            value->len = h->value_len;
            *from = i + 1;
            return 1;
        }
    }
    return 0;
}
