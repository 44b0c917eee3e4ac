/* Unit tests for the upstream response head reader (http/uhead.c): framing, keep-alive, and refusals. */
#include "http/http.h"
#include "harness.h"

static moat_http_uhead_t h;

static int parse(const char *s, int head)
{
    return moat_http_uhead_parse(&h, s, strlen(s), 16384, head);
}

static void test_framing(void)
{
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: app\r\n\r\nhello", 0), 0);
    CHECK_EQ(h.status, 200);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_LENGTH);
    CHECK_EQ(h.content_length, 5);
    CHECK_EQ(h.keep_alive, 1);
    CHECK_EQ(h.head_len, strlen("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: app\r\n\r\n"));
    CHECK_EQ(h.n_headers, 2);
    moat_http_str_t n, v;
    moat_http_uhead_field(&h, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: app\r\n\r\nhello", 1, &n, &v);
    CHECK(n.len == 6 && memcmp(n.p, "Server", 6) == 0 && v.len == 3 && memcmp(v.p, "app", 3) == 0);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0), 0);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_CHUNKED);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1), 0);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_NONE); /* HEAD */
    CHECK_EQ(parse("HTTP/1.0 200 OK\nContent-Type: text/plain\n\nrest", 0), 0);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_CLOSE);
    CHECK_EQ(h.keep_alive, 0);
    CHECK_EQ(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 0), 0);
    CHECK_EQ(h.keep_alive, 1);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_NONE);
    CHECK_EQ(parse("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 0), 0);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_NONE);
    CHECK_EQ(h.keep_alive, 0);
    CHECK_EQ(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 0), 0);
    CHECK_EQ(h.frame, MOAT_HTTP_UFRAME_NONE);
    CHECK_EQ(
        parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0), 0);
    CHECK_EQ(h.upgrade, 1);
    CHECK_EQ(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0), 0);
    CHECK_EQ(h.status, 100);
    CHECK_EQ(h.head_len, 25);
    CHECK_EQ(parse("HTTP/1.1 200\r\nContent-Length: 3, 3\r\n\r\n", 0), 0);
    CHECK_EQ(h.content_length, 3);
}

static void test_refused(void)
{
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5", 0), MOAT_E_AGAIN);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0),
             MOAT_E_INVAL);
    CHECK_STR(h.error, "both Content-Length and Transfer-Encoding");
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 2000 OK\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/2 200 OK\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("HTTP/1.1 099 x\r\n\r\n", 0), MOAT_E_INVAL);
    CHECK_EQ(parse("\r\n\r\n", 0), MOAT_E_INVAL);
    char big[20000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    CHECK_EQ(moat_http_uhead_parse(&h, big, sizeof(big), 16384, 0), MOAT_E_LIMIT);
}

int main(void)
{
    RUN(test_framing);
    RUN(test_refused);
    return harness_done();
}
