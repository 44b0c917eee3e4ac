/*
 * Fuzzes the CRL fetcher's HTTP client parsing. The first input byte picks the end-of-stream flag and the
 * body limit; the rest is a response, parsed whole and in every split a reader could see. The input is
 * also read as a URL.
 */
#include "http/http.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, int eof, size_t max_body)
{
    moat_http_client_resp_t r;
    moat_err_t err = {0};
    uint8_t *buf = malloc(size ? size : 1);
    int rc;
    if (buf == NULL)
        return;
    if (size > 0)
        memcpy(buf, data, size);
    rc = moat_http_client_parse(buf, size, eof, max_body, &r, &err);
    if (rc == 0) {
        assert(r.status >= 200 && r.status <= 599);
        assert(r.body_off <= size && r.body_len <= size - r.body_off && r.body_len <= max_body);
        assert(strlen(r.location) < sizeof(r.location));
    } else {
        assert(rc < 0 && (rc == MOAT_E_AGAIN || err.msg[0] != '\0'));
        assert(!(eof && rc == MOAT_E_AGAIN));
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_http_url_t u;
    moat_err_t err = {0};
    char *url;
    size_t max_body;
    int eof;

    if (size < 1)
        return 0;
    eof = data[0] & 1;
    max_body = (size_t)(data[0] >> 1) * 64;
    data++;
    size--;
    check(data, size, eof, max_body);
    check(data, size / 2, 0, max_body);

    url = malloc(size + 1);
    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    if (moat_http_url_parse(url, &u, &err) == 0) {
        assert(u.host[0] != '\0' && u.port >= 1 && u.port <= 65535 && u.path[0] == '/');
        for (const char *p = u.path; *p; p++)
            assert((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
    }
    free(url);
    return 0;
}
