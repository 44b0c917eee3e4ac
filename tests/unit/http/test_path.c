#include "harness.h"

#include "http/http.h"

static void ok(const char *target, const char *want)
{
    char out[256];
    size_t len = 0;
    int status = -1;
    int rc = moat_http_path_normalize(target, strlen(target), out, sizeof(out), &len, NULL, &status);
    if (rc != 0)
        fprintf(stderr, "  target: %s\n", target);
    CHECK_EQ(rc, 0);
    CHECK_EQ(status, 0);
    if (rc == 0) {
        CHECK_STR(out, want);
        CHECK_EQ(len, strlen(want));
    }
}

static void bad(const char *target, int want_status)
{
    char out[256];
    size_t len = 0;
    int status = 0;
    int rc = moat_http_path_normalize(target, strlen(target), out, sizeof(out), &len, NULL, &status);
    if (rc == 0)
        fprintf(stderr, "  target %s gave %s\n", target, out);
    CHECK(rc != 0);
    CHECK_EQ(status, want_status);
}

static void test_plain(void)
{
    ok("/", "/");
    ok("/index.html", "/index.html");
    ok("/docs/", "/docs/");
    ok("/a/b/c.txt", "/a/b/c.txt");
    ok("/a+b", "/a+b");
}

static void test_decoding(void)
{
    ok("/a%20b", "/a b");
    ok("/%41%62", "/Ab");
    ok("/caf%C3%A9", "/caf\xc3\xa9");
    ok("/a%2fb", "/a/b");
    bad("/a%", 400);
    bad("/a%2", 400);
    bad("/a%zz", 400);
    bad("/a%00b", 400);
    bad("/a%0a", 400);
    bad("/a%7f", 400);
    bad("/a\x01", 400);
}

static void test_dot_segments(void)
{
    ok("/a/./b", "/a/b");
    ok("/a/../b", "/b");
    ok("/a/b/..", "/a/");
    ok("/a/b/../", "/a/");
    ok("/a/.", "/a/");
    ok("/.", "/");
    ok("/a/..", "/");
    ok("/a//b///c", "/a/b/c");
    ok("//", "/");
    ok("/a/.../b", "/a/.../b");
    ok("/a/..b/c", "/a/..b/c");
    ok("/.hidden", "/.hidden");
    ok("/a/b/c/../../d", "/a/d");
    ok("/a/%2e/b", "/a/b");
    ok("/a/%2E%2e/b", "/b");
    ok("/a/.%2e/b", "/b");
    bad("/..", 400);
    bad("/../etc/passwd", 400);
    bad("/a/../../etc/passwd", 400);
    bad("/%2e%2e/etc/passwd", 400);
    bad("/a%2f..%2f..%2fetc", 400);
    bad("/a/b/../../..", 400);
    bad("//..", 400);
    bad("/./..", 400);
}

static void test_query_and_forms(void)
{
    char out[64];
    size_t len;
    moat_http_str_t q;
    int status;
    const char *t = "/search/?q=%2e%2e/x&y=1#frag";
    CHECK_EQ(moat_http_path_normalize(t, strlen(t), out, sizeof(out), &len, &q, &status), 0);
    CHECK_STR(out, "/search/");
    CHECK_EQ(q.len, strlen("q=%2e%2e/x&y=1"));
    CHECK(memcmp(q.p, "q=%2e%2e/x&y=1", q.len) == 0);
    t = "/x";
    CHECK_EQ(moat_http_path_normalize(t, strlen(t), out, sizeof(out), &len, &q, &status), 0);
    CHECK(q.p == NULL && q.len == 0);
    ok("/a?", "/a");
    ok("/a#b", "/a");
    bad("", 400);
    bad("*", 400);
    bad("a/b", 400);
    bad("http://x/", 400);
    /* A small output buffer: 414, never a truncated path. */
    t = "/0123456789";
    CHECK_EQ(moat_http_path_normalize(t, strlen(t), out, 8, &len, NULL, &status), MOAT_E_LIMIT);
    CHECK_EQ(status, 414);
    CHECK_EQ(moat_http_path_normalize(t, strlen(t), out, 12, &len, NULL, &status), 0);
    CHECK_EQ(moat_http_path_normalize(t, strlen(t), out, 11, &len, NULL, NULL), MOAT_E_LIMIT);
}

int main(void)
{
    RUN(test_plain);
    RUN(test_decoding);
    RUN(test_dot_segments);
    RUN(test_query_and_forms);
    return harness_done();
}
