#include "harness.h"

#include "http/http.h"

static void init_chunked(moat_http_body_t *b, uint64_t limit)
{
    moat_http_req_t req;
    moat_http_req_reset(&req);
    req.body_kind = MOAT_HTTP_BODY_CHUNKED;
    moat_http_body_init(b, &req, limit);
}

/* Decodes all of <s> in one buffer, collecting the payload; returns the final code and bytes used. */
static int decode_all(moat_http_body_t *b, const char *s, size_t len, char *payload, size_t *plen,
                      size_t *used)
{
    size_t off = 0;
    int rc;
    *plen = 0;
    for (;;) {
        size_t u;
        moat_http_str_t d;
        rc = moat_http_body_decode(b, s + off, len - off, &u, &d);
        if (d.len > 0) {
            memcpy(payload + *plen, d.p, d.len);
            *plen += d.len;
        }
        off += u;
        if (rc != MOAT_E_AGAIN || off == len)
            break;
    }
    *used = off;
    return rc;
}

static void test_content_length(void)
{
    moat_http_req_t req;
    moat_http_body_t b;
    const char *s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, s, strlen(s), NULL), 0);
    moat_http_body_init(&b, &req, 0);
    size_t used;
    moat_http_str_t d;
    CHECK_EQ(moat_http_body_decode(&b, s + req.head_len, 3, &used, &d), MOAT_E_AGAIN);
    CHECK_EQ(used, 3);
    CHECK_EQ(d.len, 3);
    CHECK_EQ(moat_http_body_decode(&b, s + req.head_len + 3, strlen(s) - req.head_len - 3, &used, &d), 0);
    CHECK_EQ(used, 2);
    CHECK(memcmp(d.p, "lo", 2) == 0);
    CHECK_EQ(b.total, 5);

    /* No body: done at once, nothing consumed. */
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, "GET / HTTP/1.0\r\n\r\n", 18, NULL), 0);
    moat_http_body_init(&b, &req, 0);
    CHECK_EQ(moat_http_body_skip(&b, "GET", 3, &used), 0);
    CHECK_EQ(used, 0);

    /* Above the limit. */
    req.body_kind = MOAT_HTTP_BODY_LENGTH;
    req.content_length = 11;
    moat_http_body_init(&b, &req, 10);
    CHECK_EQ(moat_http_body_skip(&b, "0123456789ab", 12, &used), MOAT_E_LIMIT);
    CHECK_EQ(b.status, 413);
}

static void test_chunked_ok(void)
{
    moat_http_body_t b;
    char payload[256];
    size_t plen, used;
    const char *s =
        "5\r\nhello\r\n6;name=value;x\r\n world\r\nA \t;ext\r\n0123456789\r\n0\r\nTrailer: yes\r\n\r\nNEXT";
    init_chunked(&b, 0);
    CHECK_EQ(decode_all(&b, s, strlen(s), payload, &plen, &used), 0);
    CHECK_EQ(used, strlen(s) - 4);
    CHECK_EQ(plen, 21);
    CHECK(memcmp(payload, "hello world0123456789", 21) == 0);

    /* Bare LF line ends are accepted as in the head; leading zeros and upper-case hex too. */
    init_chunked(&b, 0);
    s = "00001\nx\n0\n\n";
    CHECK_EQ(decode_all(&b, s, strlen(s), payload, &plen, &used), 0);
    CHECK_EQ(used, strlen(s));
    CHECK_EQ(plen, 1);

    /* One byte at a time. */
    s = "3\r\nabc\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n";
    init_chunked(&b, 0);
    size_t got = 0;
    int rc = MOAT_E_AGAIN;
    for (size_t i = 0; i < strlen(s); i++) {
        moat_http_str_t d;
        rc = moat_http_body_decode(&b, s + i, 1, &used, &d);
        CHECK_EQ(used, 1);
        got += d.len;
        if (rc != MOAT_E_AGAIN)
            break;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(got, 34);
    CHECK_EQ(b.total, 34);

    /* Skipping consumes exactly the body. */
    init_chunked(&b, 0);
    s = "2\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    CHECK_EQ(moat_http_body_skip(&b, s, strlen(s), &used), 0);
    CHECK_EQ(used, 12);
    /* Calling again after the end consumes nothing. */
    CHECK_EQ(moat_http_body_skip(&b, s + used, strlen(s) - used, &used), 0);
    CHECK_EQ(used, 0);
}

static void expect_bad(const char *s, int status, uint64_t limit)
{
    moat_http_body_t b;
    size_t used;
    init_chunked(&b, limit);
    int rc = moat_http_body_skip(&b, s, strlen(s), &used);
    CHECK(rc == MOAT_E_INVAL || rc == MOAT_E_LIMIT);
    if (b.status != status)
        fprintf(stderr, "  input: %s\n", s);
    CHECK_EQ(b.status, status);
    CHECK(b.error != NULL);
    /* Errors are sticky. */
    CHECK_EQ(moat_http_body_skip(&b, "0\r\n\r\n", 5, &used), rc);
}

static void test_chunked_bad(void)
{
    expect_bad("x\r\n", 400, 0);
    expect_bad("\r\n", 400, 0);
    expect_bad("0x5\r\nhello\r\n0\r\n\r\n", 400, 0);
    expect_bad("-5\r\n", 400, 0);
    expect_bad("+5\r\n", 400, 0);
    expect_bad(" 5\r\n", 400, 0);
    expect_bad("5 \r\nhello\r\n", 400, 0);
    expect_bad("5\rhello\r\n", 400, 0);
    expect_bad("5\r\nhelloX\r\n", 400, 0);
    expect_bad("5\r\nhello\rX", 400, 0);
    expect_bad("5;a\x01\r\n", 400, 0);
    expect_bad("10000000000000000\r\n", 400, 0);
    expect_bad("0\r\nbad trailer\r\n\r\n", 400, 0);
    expect_bad("0\r\n folded: x\r\n\r\n", 400, 0);
    expect_bad("0\r\nX: a\x7f\r\n\r\n", 400, 0);
    expect_bad("0\r\nX: a\rb\r\n\r\n", 400, 0);
    expect_bad("0\r\n\rX", 400, 0);
    expect_bad("b\r\n", 413, 10);
    expect_bad("5\r\nhello\r\n6\r\n", 413, 10);
    expect_bad("fffffffffffffff\r\n", 413, 0);
    /* An endless chunk extension or trailer cannot hold the connection. */
    char long_ext[6000];
    memset(long_ext, 'a', sizeof(long_ext) - 1);
    long_ext[sizeof(long_ext) - 1] = '\0';
    long_ext[0] = '1';
    long_ext[1] = ';';
    expect_bad(long_ext, 400, 0);
    long_ext[0] = '0';
    long_ext[1] = '0';
    expect_bad(long_ext, 400, 0);
    char trailer[10000];
    size_t n = (size_t)snprintf(trailer, sizeof(trailer), "0\r\n");
    while (n + 12 < sizeof(trailer))
        n += (size_t)snprintf(trailer + n, sizeof(trailer) - n, "X: abcdef\r\n");
    expect_bad(trailer, 400, 0);
}

int main(void)
{
    RUN(test_content_length);
    RUN(test_chunked_ok);
    RUN(test_chunked_bad);
    return harness_done();
}
