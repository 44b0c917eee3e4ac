/*
 * Fuzzes the ClientHello server_name reader (moat_tls_hello_sni) and the ALPN choice
 * (moat_tls_alpn_choose): whatever the client sends, a name read is NUL-terminated, has no NUL inside
 * and fits; a protocol chosen points inside the client's list.
 */
#include "tls/tls.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[256];
    const unsigned char *proto = NULL;
    unsigned char plen = 0;
    int r = moat_tls_hello_sni(data, size, out, sizeof(out));
    moat_tls_alpn_t id;

    assert(r == 1 || r == -1);
    if (r == 1) {
        size_t n = strlen(out);
        assert(n > 0 && n < sizeof(out) && n + 5 <= size && memcmp(out, data + 5, n) == 0);
    }
    id = moat_tls_alpn_choose(data, size,
                              MOAT_TLS_ALPN_BIT(MOAT_TLS_ALPN_H2) | MOAT_TLS_ALPN_BIT(MOAT_TLS_ALPN_HTTP11),
                              &proto, &plen);
    if (id != MOAT_TLS_ALPN_NONE) {
        const char *name = moat_tls_alpn_name(id);
        assert(name != NULL && proto > data && proto + plen <= data + size);
        assert(strlen(name) == plen && memcmp(proto, name, plen) == 0);
    }
    return 0;
}
