/* The server_name extension of a ClientHello (RFC 6066 section 3), read from its raw bytes. */
#include "tls/tls.h"

#include <string.h>

int moat_tls_hello_sni(const unsigned char *p, size_t len, char *out, size_t outsz)
{
    size_t list, n;
    if (len < 5)
        return -1;
    list = ((size_t)p[0] << 8) | p[1];
    if (list != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name)
        return -1;
    n = ((size_t)p[3] << 8) | p[4];
    if (n == 0 || n + 3 > list || n >= outsz || memchr(p + 5, '\0', n) != NULL)
        return -1;
    memcpy(out, p + 5, n);
    out[n] = '\0';
    return 1;
}
