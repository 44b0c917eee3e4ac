/*
 * Request path normalisation: percent-decoding and dot-segment removal (RFC 3986 §2.1, §5.2.4).
 */
#include "http/http_int.h"

#include <string.h>

/*
 * Ends the segment out[seg, *o): drops "." and pops the previous segment for "..".
 * Returns -1 if ".." would leave the root.
 */
static int end_segment(char *out, size_t seg, size_t *o)
{
    size_t n = *o - seg;
    if (n == 1 && out[seg] == '.') {
        *o = seg;
    } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
        if (seg <= 1)
            return -1;
        size_t p = seg - 1; /* the '/' before ".." */
        while (p > 0 && out[p - 1] != '/')
            p--;
        /* p is now the start of the previous segment, right after its '/'. */
        if (p == 0)
            return -1;
        *o = p;
    }
    return 0;
}

static int refuse(int *status, int code, int rc)
{
    if (status != NULL)
        *status = code;
    return rc;
}

int moat_http_path_normalize(const char *t, size_t len, char *out, size_t out_size, size_t *out_len,
                             moat_http_str_t *query, int *status)
{
    size_t i, o = 1, seg = 1, end = len;

    if (query != NULL) {
        query->p = NULL;
        query->len = 0;
    }
    if (status != NULL)
        *status = 0;
    for (i = 0; i < len; i++) {
        if (t[i] == '?' || t[i] == '#') {
            end = i;
            break;
        }
    }
    if (end < len && t[end] == '?' && query != NULL) {
        size_t q = end + 1, qe = q;
        while (qe < len && t[qe] != '#')
            qe++;
        query->p = t + q;
        query->len = qe - q;
    }
    /* "?q" is the path of an absolute-form target with an empty path (RFC 9112 §3.2.2): "/" then. */
    if (len == 0 || (t[0] != '/' && t[0] != '?'))
        return refuse(status, 400, MOAT_E_INVAL);
    if (out_size < 2)
        return refuse(status, 414, MOAT_E_LIMIT);
    out[0] = '/';

    for (i = 1; i < end; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '%') {
            int hi, lo;
            if (end - i < 3 || (hi = moat_hex_digit((unsigned char)t[i + 1])) < 0 ||
                (lo = moat_hex_digit((unsigned char)t[i + 2])) < 0)
                return refuse(status, 400, MOAT_E_INVAL);
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
            /* An encoded NUL would cut the path short at the open() call; control bytes have no place
             * in a file name we serve and would end up in logs. */
            if (c < 0x20 || c == 0x7f)
                return refuse(status, 400, MOAT_E_INVAL);
        } else if (c < 0x20 || c == 0x7f) {
            return refuse(status, 400, MOAT_E_INVAL);
        }
        /* A decoded "/" (%2F) separates segments too: the file system will treat it so, and so must
         * the dot-segment check. */
        if (c == '/') {
            if (end_segment(out, seg, &o) != 0)
                return refuse(status, 400, MOAT_E_INVAL);
            if (out[o - 1] != '/') {
                if (o + 1 >= out_size)
                    return refuse(status, 414, MOAT_E_LIMIT);
                out[o++] = '/';
            }
            seg = o;
            continue;
        }
        if (o + 1 >= out_size)
            return refuse(status, 414, MOAT_E_LIMIT);
        out[o++] = (char)c;
    }
    if (end_segment(out, seg, &o) != 0)
        return refuse(status, 400, MOAT_E_INVAL);
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return 0;
}
