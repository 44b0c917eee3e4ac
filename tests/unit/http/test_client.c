#include "harness.h"

#include "http/http.h"

static int parse(const char *text, int eof, size_t max_body, moat_http_client_resp_t *r, char *body)
{
    size_t len = strlen(text);
    uint8_t *buf = malloc(len + 1);
    moat_err_t err = {0};
    int rc;
    memcpy(buf, text, len + 1);
    rc = moat_http_client_parse(buf, len, eof, max_body, r, &err);
    if (rc == 0 && body != NULL) {
        memcpy(body, buf + r->body_off, r->body_len);
        body[r->body_len] = '\0';
    }
    free(buf);
    return rc;
}

static void test_url(void)
{
    moat_http_url_t u;
    moat_err_t err = {0};
    CHECK_EQ(moat_http_url_parse("http://crl.example.com/ca.crl", &u, &err), 0);
    CHECK_STR(u.host, "crl.example.com");
    CHECK_EQ(u.port, 80);
    CHECK_STR(u.path, "/ca.crl");
    CHECK_STR(u.hostport, "crl.example.com:80");
    CHECK_EQ(moat_http_url_parse("HTTP://127.0.0.1:8080/a/b.crl?x=1#frag", &u, &err), 0);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_EQ(u.port, 8080);
    CHECK_STR(u.path, "/a/b.crl?x=1");
    CHECK_EQ(moat_http_url_parse("http://[::1]:81", &u, &err), 0);
    CHECK_STR(u.host, "::1");
    CHECK_STR(u.hostport, "[::1]:81");
    CHECK_STR(u.path, "/");
    CHECK_EQ(moat_http_url_parse("http://h?q", &u, &err), 0);
    CHECK_STR(u.path, "/?q");
    CHECK_EQ(moat_http_url_parse("https://crl.example/x", &u, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "only http://");
    CHECK_EQ(moat_http_url_parse("ldap://x/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://user:pw@h/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h:0/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h:65536/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h:+80/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h:/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http:///x", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://[::1/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h/a b", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h\r\nX: y/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse("http://h%2f/", &u, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_http_url_parse(NULL, &u, &err), MOAT_E_INVAL);
    {
        char big[700];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big, "http://h/", 9);
        CHECK_EQ(moat_http_url_parse(big, &u, &err), MOAT_E_LIMIT);
    }
}

static void test_response(void)
{
    moat_http_client_resp_t r;
    char body[256];
    const char *ok =
        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: 5\r\n\r\nhello";

    CHECK_EQ(parse(ok, 0, 100, &r, body), 0);
    CHECK_EQ(r.status, 200);
    CHECK_STR(body, "hello");
    /* Incremental: every prefix asks for more, then it completes. */
    for (size_t n = 0; n < strlen(ok); n++) {
        char part[200];
        memcpy(part, ok, n);
        part[n] = '\0';
        CHECK_EQ(parse(part, 0, 100, &r, NULL), MOAT_E_AGAIN);
        CHECK(parse(part, 1, 100, &r, NULL) < 0);
    }
    /* Until close, chunked, HTTP/1.0, no reason phrase. */
    CHECK_EQ(parse("HTTP/1.0 200 OK\r\n\r\nabc", 0, 100, &r, NULL), MOAT_E_AGAIN);
    CHECK_EQ(parse("HTTP/1.0 200 OK\r\n\r\nabc", 1, 100, &r, body), 0);
    CHECK_STR(body, "abc");
    CHECK_EQ(
        parse(
            "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            0, 100, &r, body),
        0);
    CHECK_STR(body, "abcde");
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 0, 100, &r, NULL),
             MOAT_E_AGAIN);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 1, 100, &r, NULL),
             MOAT_E_INVAL);
    /* Status and Location of a redirect (not followed by the caller). */
    CHECK_EQ(parse("HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\x01x\r\nContent-Length: 0\r\n\r\n", 0,
                   100, &r, NULL),
             MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 302 Found\r\nLocation: http://elsewhere/x\r\nContent-Length: 0\r\n\r\n", 0, 100,
                   &r, NULL),
             0);
    CHECK_EQ(r.status, 302);
    CHECK_STR(r.location, "http://elsewhere/x");
    CHECK_EQ(parse("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", 0, 100, &r, NULL), 0);
    CHECK_EQ(r.status, 404);

    /* Limits. */
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 0, 100, &r, NULL), MOAT_E_LIMIT);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n", 0, 100, &r, NULL),
             MOAT_E_LIMIT);
    CHECK_EQ(
        parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n", 0, 100, &r, NULL),
        MOAT_E_INVAL);
    {
        char *big = malloc(20000);
        memset(big, 'a', 19999);
        big[19999] = '\0';
        memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
        CHECK_EQ(parse(big, 0, 100, &r, NULL), MOAT_E_LIMIT);
        memcpy(big, "HTTP/1.1 200 OK\r\n\r\n", 19);
        CHECK_EQ(parse(big, 0, 100, &r, NULL), MOAT_E_LIMIT);
        free(big);
    }

    /* Malformed or ambiguous: refused, never guessed. */
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
        "HTTP/1.1 200 OK\nX: a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], 1, 100, &r, NULL);
        if (rc >= 0 || rc == MOAT_E_AGAIN)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(rc < 0 && rc != MOAT_E_AGAIN);
    }
}

int main(void)
{
    RUN(test_url);
    RUN(test_response);
    return harness_done();
}
