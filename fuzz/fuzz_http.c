/*
 * Fuzzes the HTTP/1 request head parser (whole and incremental), the body decoder, and the response
 * writer fed from what was parsed. Small limits make every limit reachable.
 */
#include "http/http.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const moat_http_limits_t limits = {
    .request_line_bytes = 200, .header_bytes = 1024, .body_bytes = 4096};

static void check_head(const moat_http_req_t *req, size_t len)
{
    assert(req->head_len > 0 && req->head_len <= len && req->head_len <= limits.header_bytes);
    assert(req->version_minor == 0 || req->version_minor == 1);
    assert(req->n_headers <= MOAT_HTTP_MAX_HEADERS);
    assert(req->method.len > 0 && req->target.len > 0);
    assert(req->body_kind != MOAT_HTTP_BODY_LENGTH || req->content_length <= limits.body_bytes);
    for (size_t i = 0; i < req->n_headers; i++) {
        moat_http_str_t n, v;
        moat_http_req_header(req, i, &n, &v);
        assert(n.p + n.len <= req->base + req->head_len && v.p + v.len <= req->base + req->head_len);
        assert(memchr(v.p, '\r', v.len) == NULL && memchr(v.p, '\n', v.len) == NULL);
    }
}

/* A response built from hostile request data must still be one clean head. */
static void check_response(const moat_http_req_t *req)
{
    moat_http_resp_t resp;
    char out[16384];
    size_t len;
    if (moat_http_resp_redirect_https(&resp, req, "fallback.example", 8443) != 0)
        return;
    if (moat_http_resp_write_head(&resp, out, sizeof(out), &len) != 0)
        return;
    assert(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i + 1 < len; i++) {
        assert(out[i] != '\0');
        if (out[i] == '\n')
            assert(i > 0 && out[i - 1] == '\r');
        if (out[i] == '\r')
            assert(out[i + 1] == '\n');
    }
    for (size_t i = 0; i + 4 < len; i++)
        assert(memcmp(out + i, "\r\n\r\n", 4) != 0);
}

static void fuzz_body(moat_http_body_t *b, const char *p, size_t n)
{
    /* Feed in two pieces to exercise the resumable states. */
    size_t cut = n / 3, used, off = 0;
    int rc = moat_http_body_skip(b, p, cut, &used);
    assert(used <= cut);
    if (rc == MOAT_E_AGAIN) {
        assert(used == cut);
        off = cut;
        rc = moat_http_body_skip(b, p + off, n - off, &used);
        assert(used <= n - off);
    }
    if (rc < 0 && rc != MOAT_E_AGAIN)
        assert(b->status == 400 || b->status == 413);
    assert(b->total <= b->limit);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    moat_http_req_t *whole = malloc(sizeof(*whole)), *parts = malloc(sizeof(*parts));
    if (whole == NULL || parts == NULL) {
        free(whole);
        free(parts);
        return 0;
    }

    moat_http_req_reset(whole);
    int rc = moat_http_req_parse(whole, buf, size, &limits);

    /* Incremental parsing, through a buffer that moves, must agree with parsing in one go. */
    moat_http_req_reset(parts);
    int rc2 = MOAT_E_AGAIN;
    size_t step = size > 7 ? size / 7 : 1;
    for (size_t n = 0; rc2 == MOAT_E_AGAIN;) {
        n = n + step > size ? size : n + step;
        char *copy = malloc(n ? n : 1);
        if (copy == NULL)
            break;
        memcpy(copy, buf, n);
        rc2 = moat_http_req_parse(parts, copy, n, &limits);
        if (rc2 == 0) {
            assert(rc == 0 && parts->head_len == whole->head_len);
            assert(parts->n_headers == whole->n_headers && parts->keep_alive == whole->keep_alive);
            assert(parts->body_kind == whole->body_kind && parts->content_length == whole->content_length);
        }
        free(copy);
        if (n == size)
            break;
    }
    if (rc2 != MOAT_E_AGAIN && rc2 != 0) {
        /* Incremental parsing refuses exactly what parsing in one go refuses, for the same reason. */
        assert(rc == rc2 && parts->status == whole->status);
        assert(parts->status >= 400 && parts->status <= 505 && parts->error != NULL);
    }

    if (rc == 0) {
        check_head(whole, size);
        check_response(whole);
        char path[2048];
        size_t plen;
        int status;
        if (whole->path.len > 0)
            (void)!moat_http_path_normalize(whole->path.p, whole->path.len, path, sizeof(path), &plen, NULL,
                                            &status);
        time_t t;
        if (whole->if_modified_since.len > 0)
            (void)!moat_http_date_parse(whole->if_modified_since.p, whole->if_modified_since.len, &t);
        moat_http_body_t b;
        moat_http_body_init(&b, whole, limits.body_bytes);
        fuzz_body(&b, buf + whole->head_len, size - whole->head_len);
    } else if (rc != MOAT_E_AGAIN) {
        assert(whole->status >= 400 && whole->error != NULL);
    }

    /* The chunked decoder on the raw input too. */
    moat_http_req_reset(parts);
    parts->body_kind = MOAT_HTTP_BODY_CHUNKED;
    moat_http_body_t cb;
    moat_http_body_init(&cb, parts, 512);
    fuzz_body(&cb, buf, size);

    free(whole);
    free(parts);
    return 0;
}
