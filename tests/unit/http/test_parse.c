#include "harness.h"

#include "http/http.h"

#include <stdlib.h>
#include <string.h>

static const moat_http_limits_t small = {.request_line_bytes = 64, .header_bytes = 256, .body_bytes = 1000};

/* Parses <s> in one go; returns the parser's result. */
static int parse(moat_http_req_t *req, const char *s, const moat_http_limits_t *lim)
{
    moat_http_req_reset(req);
    return moat_http_req_parse(req, s, strlen(s), lim);
}

static int slice_is(moat_http_str_t s, const char *want)
{
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.p, want, s.len) == 0);
}

/* Expects failure with <status>. */
static void expect_status(const char *s, int status, const moat_http_limits_t *lim)
{
    moat_http_req_t req;
    int rc = parse(&req, s, lim);
    CHECK(rc == MOAT_E_INVAL || rc == MOAT_E_LIMIT);
    if (req.status != status)
        fprintf(stderr, "  input: %.60s... error: %s\n", s, req.error ? req.error : "(none)");
    CHECK_EQ(req.status, status);
    CHECK(req.error != NULL);
}

static void test_simple_get(void)
{
    moat_http_req_t req;
    const char *s = "GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com:8443\r\nUser-Agent: t\r\n\r\n";
    CHECK_EQ(parse(&req, s, NULL), 0);
    CHECK_EQ(req.head_len, strlen(s));
    CHECK_EQ(req.method_id, MOAT_HTTP_GET);
    CHECK(slice_is(req.method, "GET"));
    CHECK(slice_is(req.target, "/index.html?x=1"));
    CHECK(slice_is(req.path, "/index.html?x=1"));
    CHECK(slice_is(req.host, "www.example.com:8443"));
    CHECK(slice_is(req.host_name, "www.example.com"));
    CHECK_EQ(req.version_minor, 1);
    CHECK_EQ(req.keep_alive, 1);
    CHECK_EQ(req.body_kind, MOAT_HTTP_BODY_NONE);
    CHECK_EQ(req.n_headers, 2);
    moat_http_str_t n, v;
    moat_http_req_header(&req, 1, &n, &v);
    CHECK(slice_is(n, "User-Agent"));
    CHECK(slice_is(v, "t"));
    size_t from = 0;
    CHECK(moat_http_req_find(&req, "user-agent", &from, &v));
    CHECK_EQ(from, 2);
    CHECK(!moat_http_req_find(&req, "user-agent", &from, &v));
}

static void test_http10_keepalive(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET / HTTP/1.0\r\n\r\n", NULL), 0);
    CHECK_EQ(req.keep_alive, 0);
    CHECK_EQ(req.version_minor, 0);
    CHECK_EQ(req.host_name.len, 0);
    CHECK_EQ(parse(&req, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", NULL), 0);
    CHECK_EQ(req.keep_alive, 1);
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", NULL), 0);
    CHECK_EQ(req.keep_alive, 0);
    CHECK_EQ(
        parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", NULL),
        0);
    CHECK_EQ(req.keep_alive, 0);
}

static void test_incremental(void)
{
    const char *s = "\r\nPOST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nRange: bytes=0-1\r\n"
                    "If-None-Match: \"a\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                    "If-Range: \"a\"\r\nExpect: 100-continue\r\n\r\nhelloGET";
    size_t total = strlen(s), head = total - strlen("helloGET");
    moat_http_req_t req;
    moat_http_req_reset(&req);
    /* One byte at a time, through a buffer that moves on every call. */
    char *prev = NULL;
    int rc = MOAT_E_AGAIN;
    size_t n;
    for (n = 1; n <= total && rc == MOAT_E_AGAIN; n++) {
        char *copy = malloc(n);
        memcpy(copy, s, n);
        rc = moat_http_req_parse(&req, copy, n, NULL);
        free(prev);
        prev = copy;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(n - 1, head);
    CHECK_EQ(req.head_len, head);
    CHECK_EQ(req.method_id, MOAT_HTTP_POST);
    CHECK(slice_is(req.path, "/upload"));
    CHECK(slice_is(req.host, "h"));
    CHECK_EQ(req.body_kind, MOAT_HTTP_BODY_LENGTH);
    CHECK_EQ(req.content_length, 5);
    CHECK(slice_is(req.range, "bytes=0-1"));
    CHECK(slice_is(req.if_none_match, "\"a\""));
    CHECK(slice_is(req.if_range, "\"a\""));
    CHECK(slice_is(req.if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK_EQ(req.expect_continue, 1);
    free(prev);
}

static void test_pipelined(void)
{
    const char *s = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\n";
    moat_http_req_t req;
    CHECK_EQ(parse(&req, s, NULL), 0);
    size_t first = req.head_len;
    CHECK(slice_is(req.path, "/a"));
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, s + first, strlen(s) - first, NULL), 0);
    CHECK(slice_is(req.path, "/b"));
    CHECK_EQ(req.method_id, MOAT_HTTP_HEAD);
    CHECK_EQ(first + req.head_len, strlen(s));
}

static void test_bare_lf(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\nHost: h\n\n", NULL), 0);
    CHECK(slice_is(req.host, "h"));
    CHECK_EQ(req.head_len, 24);
    expect_status("GET / HTTP/1.1\rHost: h\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400, NULL);
}

static void test_absolute_form(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET http://Other.example:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n", NULL), 0);
    CHECK(slice_is(req.host, "Other.example:80"));
    CHECK(slice_is(req.host_name, "Other.example"));
    CHECK(slice_is(req.path, "/p?q"));
    CHECK_EQ(parse(&req, "GET https://x HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 0);
    CHECK(slice_is(req.path, "/"));
    /* RFC 9112 §3.2.2 / RFC 3986 §3: the path of an absolute URI may be empty before its query. */
    CHECK_EQ(parse(&req, "GET https://x:8443?a=1 HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 0);
    CHECK(slice_is(req.path, "?a=1"));
    CHECK(slice_is(req.host_name, "x"));
    {
        char out[64];
        size_t olen;
        moat_http_str_t q;
        CHECK_EQ(moat_http_path_normalize(req.path.p, req.path.len, out, sizeof(out), &olen, &q, NULL), 0);
        CHECK_STR(out, "/");
        CHECK(slice_is(q, "a=1"));
    }
    expect_status("GET https://x#f HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
    CHECK_EQ(parse(&req, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", NULL), 0);
    CHECK_EQ(req.path.len, 0);
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", NULL), 0);
    CHECK(slice_is(req.host_name, "[::1]"));
    expect_status("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET index.html HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
}

/* RFC 9110 §2.5: a higher minor version of HTTP/1 is processed as HTTP/1.1. */
static void test_minor_versions(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET / HTTP/1.2\r\nHost: h\r\n\r\n", NULL), 0);
    CHECK_EQ(req.version_minor, 1);
    CHECK_EQ(req.keep_alive, 1);
    CHECK_EQ(parse(&req, "GET / HTTP/1.9\r\n\r\n", NULL), MOAT_E_INVAL); /* a 1.1 request needs Host */
    CHECK_EQ(req.status, 400);
}

/* Conditional fields: remembered even when empty, so no cache answers such a request. */
static void test_conditional_fields(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL), 0);
    CHECK_EQ(req.conditional, 0);
    static const char *const one[] = {"If-None-Match:",     "If-Match: *",     "If-Unmodified-Since: x",
                                      "If-Modified-Since:", "If-Range: \"a\"", "Range: bytes=0-0"};
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        char raw[128];
        snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n\r\n", one[i]);
        CHECK_EQ(parse(&req, raw, NULL), 0);
        CHECK_EQ(req.conditional, 1);
    }
    CHECK_EQ(parse(&req,
                   "GET / HTTP/1.1\r\nHost: h\r\nIf-Match: \"a\"\r\nIf-Match: \"b\"\r\n"
                   "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
                   NULL),
             0);
    CHECK(slice_is(req.if_match, "\"a\""));
    CHECK(slice_is(req.if_unmodified_since, "Sun, 06 Nov 1994 08:49:37 GMT"));
}

static void test_request_line_errors(void)
{
    expect_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, NULL);
    expect_status("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505, NULL);
    expect_status("GET / HTTP/0.9\r\n\r\n", 505, NULL);
    expect_status("GET / HTTP/1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET / http/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET /\r\n\r\n", 400, NULL);
    expect_status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    expect_status("GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL);
    /* A TLS ClientHello on the plain port is refused from its first byte. */
    moat_http_req_t req;
    const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, hello, 1, NULL), MOAT_E_INVAL);
    CHECK_EQ(req.status, 400);
}

static void test_header_errors(void)
{
    expect_status("GET / HTTP/1.1\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a:99999x\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400, NULL);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[31m\r\n\r\n", 400, NULL);
    /* NUL and controls are refused even inside the string given to strlen() above: check a raw one. */
    moat_http_req_t req;
    const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, raw, sizeof(raw) - 1, NULL), MOAT_E_INVAL);
    CHECK_EQ(req.status, 400);
    /* obs-text and tabs are fine in values */
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tok \r\n\r\n", NULL), 0);
    size_t from = 0;
    moat_http_str_t v;
    CHECK(moat_http_req_find(&req, "x", &from, &v));
    CHECK(slice_is(v, "caf\xc3\xa9\tok"));
}

static void test_framing(void)
{
    moat_http_req_t req;
    CHECK_EQ(
        parse(&req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nContent-Length: 10\r\n\r\n", NULL),
        0);
    CHECK_EQ(req.content_length, 10);
    CHECK_EQ(parse(&req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n", NULL), 0);
    CHECK_EQ(req.content_length, 7);
    CHECK_EQ(parse(&req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", NULL), 0);
    CHECK_EQ(req.body_kind, MOAT_HTTP_BODY_NONE);
    CHECK_EQ(parse(&req, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", NULL), 0);
    CHECK_EQ(req.body_kind, MOAT_HTTP_BODY_CHUNKED);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n", 400,
                  NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,2\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413, &small);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                  400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                  400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, NULL);
    expect_status(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400, NULL);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 501, NULL);
    expect_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, NULL);
}

static void test_limits(void)
{
    char big[1024];
    moat_http_req_t req;
    /* Request line of exactly 64 bytes passes, 65 is 414, and an unterminated one is refused early. */
    snprintf(big, sizeof(big), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ(strlen("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1"), 63);
    CHECK_EQ(parse(&req, big, &small), 0);
    snprintf(big, sizeof(big), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ(parse(&req, big, &small), 0);
    snprintf(big, sizeof(big), "GET /%s HTTP/1.1\r\nHost: a\r\n\r\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect_status(big, 414, &small);
    memset(big, 'a', 200);
    memcpy(big, "GET /", 5);
    moat_http_req_reset(&req);
    /* 65 bytes may still be 64 and a CR; 66 cannot. */
    CHECK_EQ(moat_http_req_parse(&req, big, 65, &small), MOAT_E_AGAIN);
    CHECK_EQ(moat_http_req_parse(&req, big, 66, &small), MOAT_E_LIMIT);
    CHECK_EQ(req.status, 414);
    /* Head of 256 bytes passes, one more is 431, and an unterminated head is refused at the limit. */
    char head[512];
    size_t n = (size_t)snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(head + n, 'b', 256 - n - 4);
    memcpy(head + 252, "\r\n\r\n", 4);
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, head, 256, &small), 0);
    memset(head + n, 'b', 257 - n - 4);
    memcpy(head + 253, "\r\n\r\n", 4);
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, head, 257, &small), MOAT_E_LIMIT);
    CHECK_EQ(req.status, 431);
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, head, 255, &small), MOAT_E_AGAIN);
    CHECK_EQ(moat_http_req_parse(&req, head, 256, &small), MOAT_E_LIMIT);
    CHECK_EQ(req.status, 431);
    /* A stream of empty lines cannot keep a connection forever. */
    memset(big, '\n', 300);
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, big, 300, &small), MOAT_E_LIMIT);
    CHECK_EQ(req.status, 431);
    /* Too many fields: the default of 100 (Host and 99 more pass, one more does not), a configured
     * limit, and the ceiling of MOAT_HTTP_MAX_HEADERS whatever is configured. */
    char many[8192];
    n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < MOAT_HTTP_DEFAULT_HEADER_FIELDS - 1; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: v\r\n", i);
    snprintf(many + n, sizeof(many) - n, "\r\n");
    moat_http_req_t ok_req;
    CHECK_EQ(parse(&ok_req, many, NULL), 0);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "X-last: v\r\n\r\n");
    expect_status(many, 431, NULL);
    moat_http_limits_t ten = {.header_fields = 10};
    CHECK_EQ(parse(&ok_req,
                   "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
                   "F: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
                   &ten),
             0);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
                  "F: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\n",
                  431, &ten);
    char lots[16384];
    moat_http_limits_t huge = {.header_fields = 100000, .header_bytes = sizeof(lots)};
    n = (size_t)snprintf(lots, sizeof(lots), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < MOAT_HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(lots + n, sizeof(lots) - n, "X-%d: v\r\n", i);
    snprintf(lots + n, sizeof(lots) - n, "\r\n");
    expect_status(lots, 431, &huge);
    /* A failed parser stays failed. */
    CHECK_EQ(moat_http_req_parse(&req, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, &small), MOAT_E_LIMIT);
}

static void test_methods(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 0);
    CHECK_EQ(req.method_id, MOAT_HTTP_METHOD_OTHER);
    CHECK(slice_is(req.method, "BREW"));
    CHECK_EQ(parse(&req, "get / HTTP/1.1\r\nHost: a\r\n\r\n", NULL), 0);
    CHECK_EQ(req.method_id, MOAT_HTTP_METHOD_OTHER);
    CHECK_EQ(moat_http_method_from((moat_http_str_t){"DELETE", 6}), MOAT_HTTP_DELETE);
    CHECK_EQ(moat_http_method_from((moat_http_str_t){"PATCH", 5}), MOAT_HTTP_PATCH);
    CHECK_EQ(parse(&req, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", NULL), 0);
    CHECK(slice_is(req.host_name, "example.com"));
    CHECK(moat_http_str_ieq((moat_http_str_t){"HoSt", 4}, "host"));
    CHECK(!moat_http_str_ieq((moat_http_str_t){"Hos", 3}, "host"));
}

static void test_duplicate_range_ignored(void)
{
    moat_http_req_t req;
    CHECK_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n", NULL),
             0);
    CHECK_EQ(req.range.len, 0);
}

/* The case-insensitive compare agrees with byte-wise ASCII folding for every pair of bytes, in the
 * eight-byte words and in the tail: only A-Z meet a-z, never '@' and '`', '[' and '{', or bytes >= 0x80. */
static void test_field_name_compare(void)
{
    char a[12], b[12];
    for (size_t pos = 0; pos < 11; pos += 5) {
        for (int x = 1; x < 256; x++) {
            for (int y = 1; y < 256; y++) {
                int fx = x >= 'A' && x <= 'Z' ? x + 32 : x, fy = y >= 'A' && y <= 'Z' ? y + 32 : y;
                memcpy(a, "content-len", 12);
                memcpy(b, "Content-Len", 12);
                a[pos] = (char)x;
                b[pos] = (char)y;
                if (moat_http_str_ieq((moat_http_str_t){a, 11}, b) != (fx == fy)) {
                    CHECK_EQ(moat_http_str_ieq((moat_http_str_t){a, 11}, b), fx == fy);
                    return;
                }
            }
        }
    }
    CHECK(moat_http_str_ieq((moat_http_str_t){"TRANSFER-ENCODING", 17}, "transfer-encoding"));
    CHECK(!moat_http_str_ieq((moat_http_str_t){"transfer-encodinG ", 18}, "transfer-encoding"));
}

int main(void)
{
    RUN(test_simple_get);
    RUN(test_http10_keepalive);
    RUN(test_incremental);
    RUN(test_pipelined);
    RUN(test_bare_lf);
    RUN(test_absolute_form);
    RUN(test_request_line_errors);
    RUN(test_minor_versions);
    RUN(test_conditional_fields);
    RUN(test_header_errors);
    RUN(test_framing);
    RUN(test_limits);
    RUN(test_methods);
    RUN(test_duplicate_range_ignored);
    RUN(test_field_name_compare);
    return harness_done();
}
