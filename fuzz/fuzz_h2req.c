/*
 * Fuzzes moat's checks of an HTTP/2 request's fields and the HTTP/1.1 head written from them
 * (server/h2req.c), then parses that head as the server does. Input: fields, each a length byte, the
 * name, two length bytes (big-endian), the value; a field cut short ends the input.
 *
 * What must hold, whatever the fields: the head is one request (it parses with the same limits, its head
 * ends where the buffer ends: nothing was smuggled in after it), its method and target are :method and
 * :path, it carries exactly the regular fields given (plus the Host written from :authority), and a
 * field with CR, LF or NUL in its value, a pseudo-header after a regular one, twice or unknown, a
 * Host that disagrees with :authority never make a request.
 */
#include "http/http.h"
#include "server/h2req.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BYTES 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat__h2req_t q = {0};
    moat_http_limits_t hl = {.request_line_bytes = 8192,
                             .header_bytes = MAX_BYTES + 64,
                             .body_bytes = 1 << 20,
                             .header_fields = 100};
    moat_http_req_t req;
    size_t off = 0;
    int malformed = 0, status;

    while (off < size) {
        size_t nlen = data[off], vlen;
        const uint8_t *name, *value;
        moat__h2req_rc_t rc;
        if (off + 1 + nlen + 2 > size)
            break;
        name = data + off + 1;
        vlen = (size_t)data[off + 1 + nlen] << 8 | data[off + 2 + nlen];
        if (off + 3 + nlen + vlen > size)
            break;
        value = data + off + 3 + nlen;
        off += 3 + nlen + vlen;
        rc = moat__h2req_field(&q, name, nlen, value, vlen, MAX_BYTES);
        assert(rc == MOAT__H2REQ_OK || rc == MOAT__H2REQ_MALFORMED);
        if (rc == MOAT__H2REQ_MALFORMED) {
            /* Nothing in the value may break a line of the head it would go into. */
            malformed = 1;
            break;
        }
        if (!q.too_big) {
            assert(memchr(value, '\r', vlen) == NULL && memchr(value, '\n', vlen) == NULL);
            assert(memchr(value, '\0', vlen) == NULL);
        }
    }
    if (malformed) {
        moat__h2req_dispose(&q);
        return 0;
    }
    status = moat__h2req_head(&q);
    assert(status == 0 || status == 400 || status == 431);
    if (status == 0) {
        unsigned want = q.regular + (q.host == NULL && q.authority != NULL);
        int rc;
        assert(q.path != NULL && q.method[0] != '\0');
        if (q.host != NULL && q.authority != NULL)
            assert(strcasecmp(q.host, q.authority) == 0);
        memset(&req, 0, sizeof(req));
        rc = moat_http_req_parse(&req, q.head, q.hlen, &hl);
        assert(rc != MOAT_E_AGAIN); /* a whole head: it never waits for more */
        if (rc == 0) {
            assert(req.head_len == q.hlen); /* one request, nothing after it */
            assert(req.method.len == strlen(q.method) && memcmp(req.method.p, q.method, req.method.len) == 0);
            assert(req.target.len == strlen(q.path) && memcmp(req.target.p, q.path, req.target.len) == 0);
            assert(req.n_headers == want);
        }
    }
    moat__h2req_dispose(&q);
    return 0;
}
