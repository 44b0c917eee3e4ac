#include "harness.h"

#include "http/http.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char top[256];  /* temp folder holding the root and a file outside it */
static char base[300]; /* the document root */

static void write_file(const char *rel, const char *content)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(content, f);
        fclose(f);
    }
    /* A fixed mtime makes Last-Modified and If-Modified-Since checks exact. */
    struct timeval tv[2] = {{784111777, 0}, {784111777, 0}};
    CHECK_EQ(utimes(p, tv), 0);
}

static void setup(void)
{
    char p[512];
    snprintf(top, sizeof(top), "/tmp/moat-test-static-XXXXXX");
    CHECK(mkdtemp(top) != NULL);
    snprintf(base, sizeof(base), "%s/root", top);
    CHECK_EQ(mkdir(base, 0755), 0);
    snprintf(p, sizeof(p), "%s/secret.txt", top);
    FILE *f = fopen(p, "w");
    fputs("outside the root\n", f);
    fclose(f);
    write_file("index.html", "<h1>home</h1>\n");
    write_file("a.txt", "0123456789");
    write_file("empty.css", "");
    write_file("Photo.JPG", "jpeg");
    snprintf(p, sizeof(p), "%s/sub", base);
    CHECK_EQ(mkdir(p, 0755), 0);
    write_file("sub/index.html", "sub index");
    snprintf(p, sizeof(p), "%s/noindex", base);
    CHECK_EQ(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/escape-abs", base);
    CHECK_EQ(symlink(top, p), 0);
    snprintf(p, sizeof(p), "%s/escape-rel", base);
    CHECK_EQ(symlink("../secret.txt", p), 0);
    snprintf(p, sizeof(p), "%s/sub/up", base);
    CHECK_EQ(symlink("../a.txt", p), 0);
    snprintf(p, sizeof(p), "%s/odd %%?name", base);
    CHECK_EQ(mkdir(p, 0755), 0);
    {
        char target[600];
        snprintf(target, sizeof(target), "%s/a.txt", base);
        snprintf(p, sizeof(p), "%s/abs-in", base);
        CHECK_EQ(symlink(target, p), 0);
        snprintf(target, sizeof(target), "%s/sub", base);
        snprintf(p, sizeof(p), "%s/abs-in-dir", base);
        CHECK_EQ(symlink(target, p), 0);
    }
    write_file("future.txt", "later");
    snprintf(p, sizeof(p), "%s/future.txt", base);
    {
        struct timeval tv[2] = {{1956528000, 0}, {1956528000, 0}}; /* 2032 */
        CHECK_EQ(utimes(p, tv), 0);
    }
    snprintf(p, sizeof(p), "%s/magic", base);
    CHECK_EQ(symlink("/proc/self/root/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/fifo", base);
    CHECK_EQ(mkfifo(p, 0644), 0);
    write_file("locked.txt", "no");
    snprintf(p, sizeof(p), "%s/locked.txt", base);
    CHECK_EQ(chmod(p, 0), 0);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    CHECK_EQ(system(cmd), 0);
}

/* Parses <raw> (a whole request head), normalises its path and serves it. */
static int serve(const moat_http_root_t *root, const char *raw, moat_http_resp_t *resp, moat_http_req_t *req)
{
    char path[1024];
    size_t len;
    int status;
    moat_http_req_reset(req);
    CHECK_EQ(moat_http_req_parse(req, raw, strlen(raw), NULL), 0);
    if (moat_http_path_normalize(req->path.p, req->path.len, path, sizeof(path), &len, NULL, &status) != 0) {
        moat_http_resp_init(resp, req, status);
        moat_http_resp_error(resp, status);
        return status;
    }
    return moat_http_static_serve(root, req, path, NULL, NULL, resp);
}

static int get(const moat_http_root_t *root, const char *target, moat_http_resp_t *resp)
{
    static char raw[1024];
    static moat_http_req_t req;
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target);
    return serve(root, raw, resp, &req);
}

static char *body(const moat_http_resp_t *r, char *buf, size_t size)
{
    CHECK(r->fd >= 0);
    CHECK(r->content_length < size);
    ssize_t n = pread(r->fd, buf, (size_t)r->content_length, (off_t)r->file_offset);
    CHECK_EQ(n, (ssize_t)r->content_length);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void check_root(int use_openat2)
{
    moat_http_root_t root;
    moat_http_resp_t r;
    moat_err_t err = {0};
    char buf[256];
    CHECK_EQ(moat_http_root_open(&root, base, &err), 0);
    if (!use_openat2)
        root.use_openat2 = 0;

    CHECK_EQ(get(&root, "/a.txt", &r), 200);
    CHECK_STR(body(&r, buf, sizeof(buf)), "0123456789");
    CHECK_STR(r.content_type, "text/plain; charset=utf-8");
    CHECK_EQ(r.content_length, 10);
    CHECK_EQ(r.accept_ranges, 1);
    CHECK_EQ(r.last_modified, 784111777);
    CHECK(r.etag[0] == '"' && r.etag[strlen(r.etag) - 1] == '"');
    moat_http_resp_dispose(&r);
    CHECK_EQ(r.fd, -1);
    moat_http_resp_dispose(&r);

    CHECK_EQ(get(&root, "/", &r), 200);
    CHECK_STR(body(&r, buf, sizeof(buf)), "<h1>home</h1>\n");
    CHECK_STR(r.content_type, "text/html; charset=utf-8");
    moat_http_resp_dispose(&r);
    CHECK_EQ(get(&root, "/sub/", &r), 200);
    CHECK_STR(body(&r, buf, sizeof(buf)), "sub index");
    moat_http_resp_dispose(&r);
    CHECK_EQ(get(&root, "/sub/up", &r), 200); /* a symlink that stays inside */
    CHECK_STR(body(&r, buf, sizeof(buf)), "0123456789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(get(&root, "/Photo.JPG", &r), 200);
    CHECK_STR(r.content_type, "image/jpeg");
    moat_http_resp_dispose(&r);
    CHECK_EQ(get(&root, "/empty.css", &r), 200);
    CHECK_EQ(r.content_length, 0);
    moat_http_resp_dispose(&r);

    /* Directory without the slash: 301 to the slash form, query kept. */
    CHECK_EQ(get(&root, "/sub?x=1", &r), 301);
    char h[1024];
    size_t len;
    CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK_CONTAINS(h, "\r\nLocation: /sub/?x=1\r\n");
    CHECK_EQ(r.fd, -1);
    CHECK_EQ(get(&root, "/s%75b", &r), 301);
    CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK_CONTAINS(h, "\r\nLocation: /sub/\r\n");
    /* The Location comes from the normalised path: never a scheme-relative "//host" (an open redirect),
     * never a backslash browsers read as "/", never the fragment. */
    static const char *const hostile[] = {
        "//evil.example/../sub", "/\\evil.example/../sub", "/%5Cevil.example/../sub", "/sub#x", "/./sub",
        "/noindex/../sub"};
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        CHECK_EQ(get(&root, hostile[i], &r), 301);
        CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
        h[len] = '\0';
        CHECK_CONTAINS(h, "\r\nLocation: /sub/\r\n");
    }
    CHECK_EQ(get(&root, "/s%75b?q=%2F#frag", &r), 301);
    CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK_CONTAINS(h, "\r\nLocation: /sub/?q=%2F\r\n");
    CHECK_EQ(get(&root, "/odd%20%25%3Fname", &r), 301);
    CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK_CONTAINS(h, "\r\nLocation: /odd%20%25%3Fname/\r\n");
    /* An absolute symlink that stays inside the root is followed; one leaving it is not. */
    CHECK_EQ(get(&root, "/abs-in", &r), 200);
    CHECK_STR(body(&r, buf, sizeof(buf)), "0123456789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(get(&root, "/abs-in-dir/index.html", &r), 200);
    CHECK_STR(body(&r, buf, sizeof(buf)), "sub index");
    moat_http_resp_dispose(&r);

    CHECK_EQ(get(&root, "/missing", &r), 404);
    CHECK(r.body != NULL);
    CHECK_EQ(r.fd, -1);
    CHECK_EQ(get(&root, "/a.txt/", &r), 404);
    CHECK_EQ(get(&root, "/noindex/", &r), 404);
    CHECK_EQ(get(&root, "/fifo", &r), 404);
    CHECK_EQ(r.fd, -1);
    CHECK_EQ(get(&root, "/escape-abs/secret.txt", &r), 404);
    CHECK_EQ(get(&root, "/escape-rel", &r), 404);
    CHECK_EQ(get(&root, "/magic", &r), 404);
    CHECK_EQ(get(&root, "/../secret.txt", &r), 400);
    CHECK_EQ(get(&root, "/sub/%2e%2e/%2e%2e/secret.txt", &r), 400);
    if (geteuid() != 0) {
        CHECK_EQ(get(&root, "/locked.txt", &r), 403);
    } else if (use_openat2) {
        /* root reads everything: check 403 as an unprivileged user in a child process. */
        pid_t pid = fork();
        if (pid == 0) {
            int ok = setgid(65534) == 0 && setuid(65534) == 0 && get(&root, "/locked.txt", &r) == 403 &&
                     get(&root, "/a.txt", &r) == 200;
            _exit(ok ? 0 : 1);
        }
        int ws = 0;
        CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
        CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    moat_http_root_close(&root);
}

static void test_openat2(void)
{
    check_root(1);
}

static void test_realpath_fallback(void)
{
    check_root(0);
}

static void test_methods(void)
{
    moat_http_root_t root;
    moat_http_resp_t r;
    moat_http_req_t req;
    moat_err_t err = {0};
    CHECK_EQ(moat_http_root_open(&root, base, &err), 0);
    CHECK_EQ(serve(&root, "HEAD /a.txt HTTP/1.1\r\nHost: a\r\n\r\n", &r, &req), 200);
    CHECK_EQ(r.fd, -1);
    CHECK_EQ(r.content_length, 10);
    CHECK_EQ(r.head_only, 1);
    CHECK_EQ(serve(&root, "POST /a.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n", &r, &req), 405);
    CHECK_STR(r.allow, "GET, HEAD");
    CHECK_EQ(serve(&root, "DELETE /a.txt HTTP/1.1\r\nHost: a\r\n\r\n", &r, &req), 405);
    moat_http_root_close(&root);
}

static void test_conditional(void)
{
    moat_http_root_t root;
    moat_http_resp_t r;
    moat_http_req_t req;
    moat_err_t err = {0};
    char raw[512], etag[MOAT_HTTP_ETAG_MAX];
    CHECK_EQ(moat_http_root_open(&root, base, &err), 0);
    CHECK_EQ(get(&root, "/a.txt", &r), 200);
    memcpy(etag, r.etag, sizeof(etag));
    moat_http_resp_dispose(&r);

    snprintf(raw, sizeof(raw), "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\", %s\r\n\r\n", etag);
    CHECK_EQ(serve(&root, raw, &r, &req), 304);
    CHECK_EQ(r.fd, -1);
    CHECK_STR(r.etag, etag);
    char h[1024];
    size_t len;
    CHECK_EQ(moat_http_resp_write(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK(strstr(h, "Content-Length") == NULL);
    CHECK_CONTAINS(h, "HTTP/1.1 304 Not Modified\r\n");
    CHECK_CONTAINS(h, "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    snprintf(raw, sizeof(raw), "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: W/%s\r\n\r\n", etag);
    CHECK_EQ(serve(&root, raw, &r, &req), 304);
    CHECK_EQ(serve(&root, "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: *\r\n\r\n", &r, &req), 304);
    snprintf(raw, sizeof(raw),
             "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\nIf-None-Match: %s\r\n\r\n", etag);
    CHECK_EQ(serve(&root, raw, &r, &req), 304);
    /* A non-matching If-None-Match wins over a matching If-Modified-Since. */
    CHECK_EQ(serve(&root,
                   "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n"
                   "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
                   &r, &req),
             200);
    moat_http_resp_dispose(&r);
    CHECK_EQ(
        serve(&root,
              "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
              &r, &req),
        304);
    CHECK_EQ(
        serve(&root,
              "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n\r\n",
              &r, &req),
        200);
    moat_http_resp_dispose(&r);
    CHECK_EQ(serve(&root, "GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: yesterday\r\n\r\n", &r, &req),
             200);
    moat_http_resp_dispose(&r);

    /* RFC 9110 §13.2.2: If-Match (strong), else If-Unmodified-Since, before If-None-Match and Range. */
    static const struct {
        const char *fields;
        int status;
    } pre[] = {
        {"If-Match: \"nope\"\r\n", 412},
        {"If-Match: *\r\n", 200},
        {"If-Match: \"nope\"\r\nIf-Match: @\r\n", 200},
        {"If-Match: W/@\r\n", 412},
        {"If-Match: \"nope\"\r\nRange: bytes=0-4\r\n", 412},
        {"If-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n", 412},
        {"If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n", 200},
        {"If-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\nRange: bytes=0-4\r\n", 412},
        {"If-Unmodified-Since: not a date\r\n", 200},
        /* IUS is ignored when If-Match is present */
        {"If-Match: @\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n", 200},
        {"If-Match: @\r\nIf-None-Match: @\r\n", 304},
        {"If-Match: @\r\nRange: bytes=0-4\r\n", 206},
    };
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
        char fields[256];
        size_t o = 0;
        for (const char *c = pre[i].fields; *c && o + MOAT_HTTP_ETAG_MAX < sizeof(fields); c++) {
            if (*c == '@') {
                memcpy(fields + o, etag, strlen(etag));
                o += strlen(etag);
            } else {
                fields[o++] = *c;
            }
        }
        fields[o] = '\0';
        snprintf(raw, sizeof(raw), "GET /a.txt HTTP/1.1\r\nHost: a\r\n%s\r\n", fields);
        int got = serve(&root, raw, &r, &req);
        if (got != pre[i].status)
            fprintf(stderr, "  preconditions: %s\n", fields);
        CHECK_EQ(got, pre[i].status);
        moat_http_resp_dispose(&r);
    }
    snprintf(raw, sizeof(raw), "HEAD /a.txt HTTP/1.1\r\nHost: a\r\nIf-Match: \"nope\"\r\n\r\n");
    CHECK_EQ(serve(&root, raw, &r, &req), 412);
    CHECK_EQ(serve(&root, "GET /missing HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n", &r, &req), 404);

    /* RFC 9110 §8.8.2.1: a modification time in the future goes out as the response's Date. */
    CHECK_EQ(get(&root, "/future.txt", &r), 200);
    CHECK(r.last_modified <= time(NULL) && r.last_modified > 1700000000);
    CHECK_EQ(r.last_modified, r.now);
    moat_http_resp_dispose(&r);
    moat_http_root_close(&root);
}

/* moat_http_not_modified on its own, for in-memory answers (the CA publication): ETag first, then the
 * date, which an answer without one (-1) never matches. */
static void test_not_modified(void)
{
    static const char ims[] =
        "GET /x HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
    static const char inm[] = "GET /x HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"a\", \"b\"\r\n\r\n";
    moat_http_req_t req;
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, ims, strlen(ims), NULL), 0);
    CHECK_EQ(moat_http_not_modified(&req, "\"b\"", 784111777), 1);
    CHECK_EQ(moat_http_not_modified(&req, "\"b\"", 784111778), 0);
    CHECK_EQ(moat_http_not_modified(&req, "\"b\"", (time_t)-1), 0);
    moat_http_req_reset(&req);
    CHECK_EQ(moat_http_req_parse(&req, inm, strlen(inm), NULL), 0);
    CHECK_EQ(moat_http_not_modified(&req, "\"b\"", (time_t)-1), 1);
    CHECK_EQ(moat_http_not_modified(&req, "\"c\"", 0), 0);
}

static int ranged(const moat_http_root_t *root, const char *range, const char *if_range, moat_http_resp_t *r)
{
    static char raw[512];
    static moat_http_req_t req;
    snprintf(raw, sizeof(raw), "GET /a.txt HTTP/1.1\r\nHost: a\r\nRange: %s\r\n%s%s%s\r\n", range,
             if_range ? "If-Range: " : "", if_range ? if_range : "", if_range ? "\r\n" : "");
    return serve(root, raw, r, &req);
}

static void test_ranges(void)
{
    moat_http_root_t root;
    moat_http_resp_t r;
    moat_err_t err = {0};
    char buf[64], etag[MOAT_HTTP_ETAG_MAX];
    CHECK_EQ(moat_http_root_open(&root, base, &err), 0);
    CHECK_EQ(get(&root, "/a.txt", &r), 200);
    memcpy(etag, r.etag, sizeof(etag));
    moat_http_resp_dispose(&r);

    CHECK_EQ(ranged(&root, "bytes=2-4", NULL, &r), 206);
    CHECK_STR(body(&r, buf, sizeof(buf)), "234");
    CHECK_EQ(r.range_first, 2);
    CHECK_EQ(r.range_last, 4);
    CHECK_EQ(r.range_total, 10);
    CHECK_EQ(r.content_range, 1);
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=7-", NULL, &r), 206);
    CHECK_STR(body(&r, buf, sizeof(buf)), "789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=-3", NULL, &r), 206);
    CHECK_STR(body(&r, buf, sizeof(buf)), "789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=-300", NULL, &r), 206);
    CHECK_STR(body(&r, buf, sizeof(buf)), "0123456789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=5-99999999999999999999999", NULL, &r), 206);
    CHECK_STR(body(&r, buf, sizeof(buf)), "56789");
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "Bytes = 1-1", NULL, &r), 200); /* not the grammar: ignored */
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes= 1-1 ", NULL, &r), 206);
    moat_http_resp_dispose(&r);

    /* Unsatisfiable: 416 with the size. */
    CHECK_EQ(ranged(&root, "bytes=10-", NULL, &r), 416);
    CHECK_EQ(r.content_range, 2);
    CHECK_EQ(r.range_total, 10);
    CHECK_EQ(r.fd, -1);
    char h[1024];
    size_t len;
    CHECK_EQ(moat_http_resp_write_head(&r, h, sizeof(h) - 1, &len), 0);
    h[len] = '\0';
    CHECK_CONTAINS(h, "HTTP/1.1 416 Range Not Satisfiable\r\n");
    CHECK_CONTAINS(h, "\r\nContent-Range: bytes */10\r\n");
    CHECK_EQ(ranged(&root, "bytes=-0", NULL, &r), 416);
    CHECK_EQ(ranged(&root, "bytes=99999999999999999999999-", NULL, &r), 416);

    /* Ignored: several ranges, other units, bad syntax. */
    static const char *const ignored[] = {"bytes=0-1,3-4", "items=0-1", "bytes=5-2", "bytes=a-b", "bytes=",
                                          "bytes=-",       "bytes=1",   "bytes=--1", "bytes"};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(ignored); i++) {
        CHECK_EQ(ranged(&root, ignored[i], NULL, &r), 200);
        CHECK_EQ(r.content_length, 10);
        moat_http_resp_dispose(&r);
    }

    /* If-Range: strong ETag or exact date, else the whole file. */
    CHECK_EQ(ranged(&root, "bytes=0-0", etag, &r), 206);
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=0-0", "\"other\"", &r), 200);
    moat_http_resp_dispose(&r);
    char weak[80];
    snprintf(weak, sizeof(weak), "W/%s", etag);
    CHECK_EQ(ranged(&root, "bytes=0-0", weak, &r), 200);
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=0-0", "Sun, 06 Nov 1994 08:49:37 GMT", &r), 206);
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=0-0", "Sun, 06 Nov 1994 08:49:38 GMT", &r), 200);
    moat_http_resp_dispose(&r);
    CHECK_EQ(ranged(&root, "bytes=0-0", "garbage", &r), 200);
    moat_http_resp_dispose(&r);

    /* HEAD ignores Range. */
    moat_http_req_t req;
    CHECK_EQ(serve(&root, "HEAD /a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-0\r\n\r\n", &r, &req), 200);
    /* The empty file has no satisfiable range but a suffix one (RFC 9110 §14.1.2), which is ignored. */
    CHECK_EQ(serve(&root, "GET /empty.css HTTP/1.1\r\nHost: a\r\nRange: bytes=0-\r\n\r\n", &r, &req), 416);
    CHECK_EQ(serve(&root, "GET /empty.css HTTP/1.1\r\nHost: a\r\nRange: bytes=-1\r\n\r\n", &r, &req), 200);
    CHECK_EQ(r.content_length, 0);
    moat_http_resp_dispose(&r);
    moat_http_root_close(&root);
}

static void test_root_errors(void)
{
    moat_http_root_t root;
    moat_err_t err = {0};
    char p[512];
    CHECK_EQ(moat_http_root_open(&root, "/nonexistent/moat-root", &err), MOAT_E_NOTFOUND);
    CHECK_CONTAINS(err.msg, "/nonexistent/moat-root");
    CHECK(err.hint[0] != '\0');
    CHECK_EQ(root.fd, -1);
    moat_http_root_close(&root);
    snprintf(p, sizeof(p), "%s/a.txt", base);
    moat_err_clear(&err);
    CHECK(moat_http_root_open(&root, p, &err) < 0);
    CHECK_CONTAINS(err.hint, "folder");
}

static void test_mime(void)
{
    static const char *const cases[][2] = {
        {"a.html", "text/html; charset=utf-8"},
        {"a.HTM", "text/html; charset=utf-8"},
        {"a.css", "text/css; charset=utf-8"},
        {"a.js", "text/javascript; charset=utf-8"},
        {"a.mjs", "text/javascript; charset=utf-8"},
        {"a.json", "application/json; charset=utf-8"},
        {"a.svg", "image/svg+xml; charset=utf-8"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.ico", "image/x-icon"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.xml", "application/xml; charset=utf-8"},
        {"a.pdf", "application/pdf"},
        {"a.wasm", "application/wasm"},
        {"a.woff2", "font/woff2"},
        {"a.woff", "font/woff"},
        {"a.mp4", "video/mp4"},
        {"a.7z", "application/x-7z-compressed"},
        {"a.zip", "application/zip"},
        {"a.webmanifest", "application/manifest+json; charset=utf-8"},
        {"noext", "application/octet-stream"},
        {"a.unknown", "application/octet-stream"},
        {"a.", "application/octet-stream"},
        {"dir.d/file", "application/octet-stream"},
        {".html", "text/html; charset=utf-8"},
        {"a.tar.gz", "application/gzip"},
        {"a.htmlx", "application/octet-stream"},
        /* what nginx's and Debian's tables know too */
        {"subs.vtt", "text/vtt; charset=utf-8"},
        {"live.m3u8", "application/vnd.apple.mpegurl"},
        {"seg1.TS", "video/mp2t"},
        {"a.mpd", "application/dash+xml"},
        {"a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"a.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
        {"a.odt", "application/vnd.oasis.opendocument.text"},
        {"a.jxl", "image/jxl"},
        {"a.glb", "model/gltf-binary"},
        {"a.opus", "audio/ogg"},
        {"a.yaml", "application/yaml"},
        {"a.3gp", "video/3gpp"},
        {"a.deb", "application/vnd.debian.binary-package"},
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(cases); i++)
        CHECK_STR(moat_http_mime_type(cases[i][0], strlen(cases[i][0])), cases[i][1]);
}

int main(void)
{
    setup();
    RUN(test_openat2);
    RUN(test_realpath_fallback);
    RUN(test_methods);
    RUN(test_conditional);
    RUN(test_not_modified);
    RUN(test_ranges);
    RUN(test_root_errors);
    RUN(test_mime);
    teardown();
    return harness_done();
}
