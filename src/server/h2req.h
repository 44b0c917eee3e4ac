/*
 * Private to server/: an HTTP/2 request's fields as moat takes them (h2req.c), before request handling.
 *
 * nghttp2 checks the framing and RFC 9113 section 8 (names, values, pseudo-headers, connection-specific
 * fields). moat then writes the request as an HTTP/1.1 head for the one request path (request.c), so it
 * checks again what would change meaning in that head: a CR, LF or NUL in a value, a space in the
 * request line, a pseudo-header after a regular field, twice, or unknown, a second Host field or one
 * that names another authority than :authority (RFC 9113 8.3.1). Pure code, no connection: the fuzz
 * harness drives it directly (fuzz/fuzz_h2req.c).
 */
#ifndef MOAT_SERVER_H2REQ_H
#define MOAT_SERVER_H2REQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct moat__h2req {
    char method[24];
    char *path;      /* owned, NUL-terminated; NULL until :path */
    char *authority; /* owned, NUL-terminated; NULL until :authority */
    char *head; /* owned: "name: value\r\n" lines of the regular fields, then (moat__h2req_head) the head */
    size_t hlen, hcap;
    char *host;           /* owned: the Host field's value, when one was sent */
    unsigned regular;     /* regular fields taken */
    unsigned too_big : 1, /* the fields passed <max_bytes>: 431 */
        seen_regular : 1;
} moat__h2req_t;

/* Outcomes of moat__h2req_field(). */
typedef enum {
    MOAT__H2REQ_OK = 0,
    MOAT__H2REQ_MALFORMED, /* a stream error (PROTOCOL_ERROR): the request is never handed on */
    MOAT__H2REQ_NOMEM
} moat__h2req_rc_t;

/* Takes one field of the request (as nghttp2 decoded it). Past <max_bytes> of fields (name, value and 4
 * bytes of framing each, plus 32 for the one being added) the request is marked too big and later fields
 * are dropped: moat__h2req_head() then answers 431. */
moat__h2req_rc_t moat__h2req_field(moat__h2req_t *q, const uint8_t *name, size_t nlen, const uint8_t *value,
                                   size_t vlen, size_t max_bytes);
/* Writes the request as an HTTP/1.1 head into q->head/q->hlen (the request line, Host from :authority
 * when no Host field came, the fields, the blank line). 0, or the status to answer: 431 (too big), 400
 * (no :method or :path: CONNECT and the like), 500 (out of memory). */
int moat__h2req_head(moat__h2req_t *q);
/* Frees what <q> holds and zeroes it (ready for another request). */
void moat__h2req_dispose(moat__h2req_t *q);

#endif
