/*
 * Private to src/http: character classes and small helpers shared by the module's files.
 */
#ifndef MOAT_HTTP_INT_H
#define MOAT_HTTP_INT_H

#include "http/http.h"

#include <stdint.h>

/* Character classes (RFC 9110 §5.6.2 tchar, field-vchar), one bit each. */
enum {
    MOAT__HTTP_TCHAR = 1,  /* token character */
    MOAT__HTTP_FVCHAR = 2, /* allowed in a field value: VCHAR, SP, HTAB, obs-text */
    MOAT__HTTP_VCHAR = 4,  /* visible ASCII 0x21-0x7e (request-target) */
    MOAT__HTTP_HOST = 8,   /* reg-name / IP-literal characters of a Host value */
    MOAT__HTTP_HEX = 16
};
extern const uint8_t moat__http_cc[256];

static inline int moat__http_is(unsigned char c, int cls)
{
    return (moat__http_cc[c] & cls) != 0;
}

static inline int moat__http_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive compare of n bytes: 1 if equal. */
int moat__http_ieq(const char *a, const char *b, size_t n);

/* Next comma-separated element of a list value p[0, n) from *pos, OWS trimmed; returns 0 at the end. */
int moat__http_list_next(const char *p, size_t n, size_t *pos, moat_http_str_t *el);
/* Length of the run of field-value bytes (VCHAR, SP, HTAB, obs-text) at p[0, n): n if all are allowed. */
size_t moat__http_value_scan(const unsigned char *p, size_t n);

/* Weak (W/ ignored) or strong comparison of entity-tag <tag> with a list field value ("*" matches). */
int moat__http_etag_list_match(moat_http_str_t list, const char *etag, int strong);

#endif
