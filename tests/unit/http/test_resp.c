#include "harness.h"

#include "http/http.h"

static void parse(moat_http_req_t *req, const char *s)
{
    moat_http_req_reset(req);
    CHECK_EQ(moat_http_req_parse(req, s, strlen(s), NULL), 0);
}

static const char *head(const moat_http_resp_t *r, char *buf, size_t size)
{
    size_t len = 0;
    CHECK_EQ(moat_http_resp_write_head(r, buf, size - 1, &len), 0);
    buf[len] = '\0';
    return buf;
}

static void test_ok_head(void)
{
    moat_http_req_t req;
    moat_http_resp_t r;
    char buf[2048];
    parse(&req, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_http_resp_init(&r, &req, 200);
    r.now = 784111777;
    r.content_type = "text/plain; charset=utf-8";
    r.content_length = 12;
    r.last_modified = 0;
    memcpy(r.etag, "\"abc\"", 6);
    r.accept_ranges = 1;
    r.hsts_max_age = 31536000;
    CHECK_EQ(moat_http_resp_add_header(&r, "X-Moat-Client-Cert", "expired"), 0);
    const char *h = head(&r, buf, sizeof(buf));
    CHECK_STR(h, "HTTP/1.1 200 OK\r\n"
                 "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                 "Server: moat\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 12\r\n"
                 "ETag: \"abc\"\r\n"
                 "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                 "Accept-Ranges: bytes\r\n"
                 "Strict-Transport-Security: max-age=31536000\r\n"
                 "X-Moat-Client-Cert: expired\r\n"
                 "\r\n");
    /* Too small a buffer: an error, never a truncated head. */
    size_t len;
    CHECK_EQ(moat_http_resp_write_head(&r, buf, 100, &len), MOAT_E_LIMIT);
}

static void test_connection_headers(void)
{
    moat_http_req_t req;
    moat_http_resp_t r;
    char buf[1024];
    parse(&req, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    moat_http_resp_init(&r, &req, 204);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nConnection: keep-alive\r\n");
    CHECK(strstr(buf, "Content-Length") == NULL);
    parse(&req, "GET / HTTP/1.0\r\n\r\n");
    moat_http_resp_init(&r, &req, 200);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nConnection: close\r\n");
    CHECK_CONTAINS(buf, "Content-Length: 0\r\n");
    moat_http_resp_init(&r, NULL, 400);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "Connection: close");
}

static void test_add_header_refuses_injection(void)
{
    moat_http_resp_t r;
    moat_http_resp_init(&r, NULL, 200);
    CHECK_EQ(moat_http_resp_add_header(&r, "X-A", "a\r\nSet-Cookie: x"), MOAT_E_INVAL);
    CHECK_EQ(moat_http_resp_add_header(&r, "X A", "a"), MOAT_E_INVAL);
    CHECK_EQ(moat_http_resp_add_header(&r, "", "a"), MOAT_E_INVAL);
    CHECK_EQ(moat_http_resp_add_header(&r, "X-B", "tab\tok"), 0);
    for (int i = 1; i < MOAT_HTTP_RESP_EXTRA; i++)
        CHECK_EQ(moat_http_resp_add_header(&r, "X-C", "v"), 0);
    CHECK_EQ(moat_http_resp_add_header(&r, "X-D", "v"), MOAT_E_LIMIT);
    CHECK_EQ(r.n_extra, MOAT_HTTP_RESP_EXTRA);
}

static void test_error_pages(void)
{
    static const int codes[] = {301, 400, 403, 404, 405, 413, 414, 416, 421, 431, 500, 501, 505};
    moat_http_req_t req;
    moat_http_resp_t r;
    char buf[4096], want[64];
    parse(&req, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    for (size_t i = 0; i < MOAT_ARRAY_LEN(codes); i++) {
        size_t len;
        moat_http_resp_init(&r, &req, 200);
        moat_http_resp_error(&r, codes[i]);
        CHECK_EQ(moat_http_resp_write(&r, buf, sizeof(buf) - 1, &len), 0);
        buf[len] = '\0';
        snprintf(want, sizeof(want), "HTTP/1.1 %d %s\r\n", codes[i], moat_http_status_reason(codes[i]));
        CHECK(strncmp(buf, want, strlen(want)) == 0);
        snprintf(want, sizeof(want), "<h1>%d %s</h1>", codes[i], moat_http_status_reason(codes[i]));
        CHECK_CONTAINS(buf, want);
        CHECK_CONTAINS(buf, "Content-Type: text/html; charset=utf-8\r\n");
        const char *body = strstr(buf, "\r\n\r\n") + 4;
        snprintf(want, sizeof(want), "Content-Length: %zu\r\n", strlen(body));
        CHECK_CONTAINS(buf, want);
        int closes = codes[i] == 400 || codes[i] == 413 || codes[i] == 414 || codes[i] == 431 ||
                     codes[i] == 501 || codes[i] == 505;
        CHECK_EQ(strstr(buf, "Connection: close") != NULL, closes);
    }
    moat_http_resp_init(&r, &req, 200);
    moat_http_resp_error(&r, 405);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nAllow: GET, HEAD\r\n");
    CHECK_STR(moat_http_status_reason(431), "Request Header Fields Too Large");
    CHECK_STR(moat_http_status_reason(299), "Unknown");
    /* An unknown status still gets a page, and a sane status line. */
    moat_http_resp_init(&r, &req, 200);
    moat_http_resp_error(&r, 599);
    CHECK(r.body != NULL && r.content_length > 0);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "HTTP/1.1 599 Unknown\r\n");

    /* HEAD: same head, no body. */
    size_t len;
    parse(&req, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_http_resp_init(&r, &req, 200);
    moat_http_resp_error(&r, 404);
    CHECK_EQ(moat_http_resp_write(&r, buf, sizeof(buf) - 1, &len), 0);
    buf[len] = '\0';
    CHECK(strstr(buf, "<html>") == NULL);
    CHECK(strstr(buf, "Content-Length: 0") == NULL);
    CHECK_EQ(moat_http_resp_write(&r, buf, 20, &len), MOAT_E_LIMIT);
}

static void test_detail_page(void)
{
    char page[1024];
    size_t n = moat_http_error_page_format(page, sizeof(page), 403, "client certificate <expired> & \"old\"");
    CHECK(n > 0);
    page[n < sizeof(page) ? n : sizeof(page) - 1] = '\0';
    CHECK_CONTAINS(page, "403 Forbidden");
    CHECK_CONTAINS(page, "client certificate &lt;expired&gt; &amp; &quot;old&quot;");
    CHECK(strstr(page, "<expired>") == NULL);
    CHECK_EQ(moat_http_error_page_format(page, 50, 403, "x"), 0);
}

static void test_redirect(void)
{
    moat_http_req_t req;
    moat_http_resp_t r;
    char buf[2048];
    parse(&req, "GET /a/b?c=d HTTP/1.1\r\nHost: www.example.com:80\r\n\r\n");
    CHECK_EQ(moat_http_resp_redirect_https(&r, &req, NULL, 443), 0);
    CHECK_EQ(r.status, 301);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nLocation: https://www.example.com/a/b?c=d\r\n");
    CHECK_CONTAINS(buf, "HTTP/1.1 301 Moved Permanently\r\n");
    CHECK_EQ(moat_http_resp_redirect_https(&r, &req, NULL, 8443), 0);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nLocation: https://www.example.com:8443/a/b?c=d\r\n");
    parse(&req, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    CHECK_EQ(moat_http_resp_redirect_https(&r, &req, NULL, 443), 0);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nLocation: https://[::1]/\r\n");
    parse(&req, "GET /x HTTP/1.0\r\n\r\n");
    CHECK_EQ(moat_http_resp_redirect_https(&r, &req, NULL, 443), MOAT_E_INVAL);
    CHECK_EQ(moat_http_resp_redirect_https(&r, &req, "site.example", 443), 0);
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nLocation: https://site.example/x\r\n");
    CHECK_CONTAINS(buf, "Connection: close");
}

static void test_content_range(void)
{
    moat_http_resp_t r;
    char buf[1024];
    moat_http_resp_init(&r, NULL, 206);
    r.content_range = 1;
    r.range_first = 10;
    r.range_last = 19;
    r.range_total = 100;
    r.content_length = 10;
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nContent-Range: bytes 10-19/100\r\n");
    CHECK_CONTAINS(buf, "HTTP/1.1 206 Partial Content\r\n");
    r.content_range = 2;
    CHECK_CONTAINS(head(&r, buf, sizeof(buf)), "\r\nContent-Range: bytes */100\r\n");
}

int main(void)
{
    RUN(test_ok_head);
    RUN(test_connection_headers);
    RUN(test_add_header_refuses_injection);
    RUN(test_error_pages);
    RUN(test_detail_page);
    RUN(test_redirect);
    RUN(test_content_range);
    return harness_done();
}
