/* base64url without padding (RFC 4648 §5, as RFC 7515 §2 uses it): ACME's JOSE objects, nonces and
 * tokens, and the external account keys moat's CA mints. */
#include "core/core.h"

static const char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int moat_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz)
{
    size_t need = MOAT_B64URL_LEN(n), o = 0;
    if (outsz < need + 1)
        return MOAT_E_LIMIT;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url_chars[(v >> 18) & 63];
        out[o++] = b64url_chars[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url_chars[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url_chars[v & 63];
    }
    out[o] = '\0';
    return (int)o;
}

char *moat_b64url_encode_new(const unsigned char *in, size_t n)
{
    size_t sz = MOAT_B64URL_LEN(n) + 1;
    char *s = moat_malloc(sz);
    if (s != NULL && moat_b64url_encode(in, n, s, sz) < 0)
        moat_free(&s);
    return s;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int moat_b64url_decode(const char *in, size_t n, unsigned char **out, size_t *outlen, moat_err_t *err)
{
    *out = NULL;
    *outlen = 0;
    /* A length of 1 mod 4 cannot come from any byte string. */
    if (n % 4 == 1)
        return moat_err_set(err, MOAT_E_INVAL, "base64url text of %zu characters is truncated", n);
    unsigned char *buf = moat_malloc(n / 4 * 3 + 3);
    if (buf == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory decoding base64url");
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            moat_free(&buf);
            return moat_err_set(err, MOAT_E_INVAL,
                                "character %zu is not base64url (padding and '+', '/' "
                                "are not allowed)",
                                i + 1);
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero, or two texts would decode to the same bytes. */
    if (acc != 0) {
        moat_free(&buf);
        return moat_err_set(err, MOAT_E_INVAL, "base64url text has non-zero trailing bits");
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}
