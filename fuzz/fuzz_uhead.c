/*
 * Fuzzes the reverse proxy's reader of upstream response heads: the input is a response (the first byte
 * says whether the request was HEAD), parsed whole and at every length a reader could have seen; what it
 * returns must stay inside the buffer and agree with itself, and a body that follows is decoded.
 */
#include "http/http.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static moat_http_uhead_t h, h2;
    const char *buf;
    int head, rc;
    if (size == 0)
        return 0;
    head = data[0] & 1;
    buf = (const char *)data + 1;
    size--;
    rc = moat_http_uhead_parse(&h, buf, size, 16384, head);
    if (rc == 0) {
        assert(h.head_len <= size && h.status >= 100 && h.status <= 599);
        assert(h.n_headers <= MOAT_HTTP_MAX_HEADERS);
        for (size_t i = 0; i < h.n_headers; i++) {
            moat_http_str_t n, v;
            moat_http_uhead_field(&h, buf, i, &n, &v);
            assert(n.len > 0 && n.p + n.len <= buf + h.head_len && v.p + v.len <= buf + h.head_len);
            assert(memchr(v.p, '\n', v.len) == NULL && memchr(v.p, '\r', v.len) == NULL);
        }
        if (head)
            assert(h.frame == MOAT_HTTP_UFRAME_NONE);
        if (h.frame == MOAT_HTTP_UFRAME_LENGTH || h.frame == MOAT_HTTP_UFRAME_CHUNKED) {
            moat_http_body_t b;
            size_t off = h.head_len;
            moat_http_body_init_uhead(&b, &h);
            while (off < size) {
                size_t used = 0;
                moat_http_str_t d;
                int r2 = moat_http_body_decode(&b, buf + off, size - off, &used, &d);
                assert(used <= size - off);
                off += used;
                if (r2 != MOAT_E_AGAIN || used == 0)
                    break;
            }
        }
        /* A shorter read never sees a complete head that the whole one does not start with. */
        for (size_t cut = 0; cut < h.head_len; cut += 1 + cut / 8)
            assert(moat_http_uhead_parse(&h2, buf, cut, 16384, head) != 0);
    }
    return 0;
}
