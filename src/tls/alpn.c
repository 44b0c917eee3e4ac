/* ALPN (RFC 7301): the protocols moat speaks, in its order of preference. */
#include "tls/tls.h"

#include <string.h>

/* Add a protocol here (and its id in tls.h); the server decides per connection which ids it allows. */
static const moat_named_t alpn_table[] = {
    {MOAT_TLS_ALPN_H2, "h2"},
    {MOAT_TLS_ALPN_HTTP11, "http/1.1"},
    {MOAT_TLS_ALPN_ACME, "acme-tls/1"},
};

const char *moat_tls_alpn_name(moat_tls_alpn_t id)
{
    return moat_named_find(alpn_table, MOAT_ARRAY_LEN(alpn_table), (int)id);
}

moat_tls_alpn_t moat_tls_alpn_choose(const unsigned char *in, size_t inlen, unsigned allowed,
                                     const unsigned char **out, unsigned char *outlen)
{
    for (size_t i = 0; i < MOAT_ARRAY_LEN(alpn_table); i++) {
        const char *name = alpn_table[i].name;
        size_t nlen = strlen(name);
        if (!(allowed & MOAT_TLS_ALPN_BIT(alpn_table[i].code)))
            continue;
        /* The client's list: length-prefixed names (a malformed tail ends the walk). */
        for (size_t o = 0; o < inlen && o + 1 + in[o] <= inlen; o += 1u + in[o]) {
            if (in[o] == nlen && memcmp(in + o + 1, name, nlen) == 0) {
                *out = in + o + 1;
                *outlen = in[o];
                return (moat_tls_alpn_t)alpn_table[i].code;
            }
        }
    }
    return MOAT_TLS_ALPN_NONE;
}
