/*
 * Request bodies: Content-Length and chunked framing (RFC 9112 §6, §7.1), decoded in place.
 */
#include "http/http_int.h"

#include <string.h>

enum {
    CS_SIZE_START, /* first hex digit of a chunk size */
    CS_SIZE,       /* more hex digits */
    CS_BWS,        /* whitespace after the size: only ';' may follow */
    CS_EXT,        /* chunk extension, ignored */
    CS_SIZE_LF,    /* LF after the size line's CR */
    CS_DATA,       /* chunk payload */
    CS_DATA_CR,    /* CRLF after the payload */
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line, or the final blank line */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_END_LF, /* LF of the final blank line */
    CS_DONE
};

/* A chunk-size line (digits and extensions) longer than this is refused. */
#define SIZE_LINE_MAX 4096
/* The whole trailer section longer than this is refused. */
#define TRAILER_MAX 8192

void moat_http_body_init(moat_http_body_t *b, const moat_http_req_t *req, uint64_t limit)
{
    memset(b, 0, sizeof(*b));
    b->limit = limit > 0 ? limit : MOAT_HTTP_DEFAULT_BODY_BYTES;
    b->kind = (int)req->body_kind;
    if (b->kind == MOAT_HTTP_BODY_LENGTH)
        b->remaining = req->content_length;
    b->state_ = CS_SIZE_START;
}

static int bad(moat_http_body_t *b, int status, const char *why)
{
    b->status = status;
    b->error = why;
    return status == 413 ? MOAT_E_LIMIT : MOAT_E_INVAL;
}

/* The size line ended: start the payload, or the trailer section after the last chunk. */
static int size_line_done(moat_http_body_t *b)
{
    if (b->remaining == 0) {
        b->state_ = CS_TRAILER_START;
        b->count_ = 0;
        return 0;
    }
    if (b->remaining > b->limit - b->total)
        return bad(b, 413, "chunked body above the body limit");
    b->state_ = CS_DATA;
    return 0;
}

int moat_http_body_decode(moat_http_body_t *b, const char *buf, size_t len, size_t *used,
                          moat_http_str_t *data)
{
    size_t i = 0;
    int rc;

    data->p = NULL;
    data->len = 0;
    *used = 0;
    if (b->status != 0)
        return b->status == 413 ? MOAT_E_LIMIT : MOAT_E_INVAL;
    if (b->kind == MOAT_HTTP_BODY_NONE)
        return 0;
    if (b->kind == MOAT_HTTP_BODY_LENGTH) {
        if (b->remaining > b->limit - b->total)
            return bad(b, 413, "Content-Length above the body limit");
        size_t n = b->remaining < len ? (size_t)b->remaining : len;
        data->p = buf;
        data->len = n;
        b->remaining -= n;
        b->total += n;
        *used = n;
        return b->remaining == 0 ? 0 : MOAT_E_AGAIN;
    }
    if (b->state_ == CS_DONE)
        return 0;

    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        int h;
        switch (b->state_) {
        case CS_DATA: {
            size_t n = b->remaining < len - i ? (size_t)b->remaining : len - i;
            data->p = buf + i;
            data->len = n;
            b->remaining -= n;
            b->total += n;
            if (b->remaining == 0)
                b->state_ = CS_DATA_CR;
            *used = i + n;
            return MOAT_E_AGAIN;
        }
        case CS_SIZE_START:
            if ((h = moat_hex_digit(c)) < 0)
                return bad(b, 400, "invalid chunk size");
            b->remaining = (uint64_t)h;
            b->count_ = 1;
            b->state_ = CS_SIZE;
            break;
        case CS_SIZE:
            if (++b->count_ > SIZE_LINE_MAX)
                return bad(b, 400, "chunk size line too long");
            if ((h = moat_hex_digit(c)) >= 0) {
                if (b->remaining > (UINT64_MAX >> 4))
                    return bad(b, 400, "chunk size overflows");
                b->remaining = (b->remaining << 4) | (uint64_t)h;
            } else if (c == ';') {
                b->state_ = CS_EXT;
            } else if (c == ' ' || c == '\t') {
                b->state_ = CS_BWS;
            } else if (c == '\r') {
                b->state_ = CS_SIZE_LF;
            } else if (c == '\n') {
                if ((rc = size_line_done(b)) != 0)
                    return rc;
            } else {
                return bad(b, 400, "invalid chunk size");
            }
            break;
        case CS_BWS:
            if (++b->count_ > SIZE_LINE_MAX)
                return bad(b, 400, "chunk size line too long");
            if (c == ';')
                b->state_ = CS_EXT;
            else if (c != ' ' && c != '\t')
                return bad(b, 400, "invalid chunk size");
            break;
        case CS_EXT:
            if (++b->count_ > SIZE_LINE_MAX)
                return bad(b, 400, "chunk extension too long");
            if (c == '\r')
                b->state_ = CS_SIZE_LF;
            else if (c == '\n') {
                if ((rc = size_line_done(b)) != 0)
                    return rc;
            } else if (!moat__http_is(c, MOAT__HTTP_FVCHAR))
                return bad(b, 400, "control character in a chunk extension");
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                return bad(b, 400, "bare CR in a chunk size line");
            if ((rc = size_line_done(b)) != 0)
                return rc;
            break;
        case CS_DATA_CR:
            if (c == '\r')
                b->state_ = CS_DATA_LF;
            else if (c == '\n')
                b->state_ = CS_SIZE_START;
            else
                return bad(b, 400, "chunk data not followed by CRLF");
            break;
        case CS_DATA_LF:
            if (c != '\n')
                return bad(b, 400, "chunk data not followed by CRLF");
            b->state_ = CS_SIZE_START;
            break;
        case CS_TRAILER_START:
            if (++b->count_ > TRAILER_MAX)
                return bad(b, 400, "trailer section too large");
            if (c == '\r')
                b->state_ = CS_END_LF;
            else if (c == '\n') {
                b->state_ = CS_DONE;
                *used = i + 1;
                return 0;
            } else if (moat__http_is(c, MOAT__HTTP_TCHAR))
                b->state_ = CS_TRAILER_NAME;
            else
                return bad(b, 400, "malformed trailer field");
            break;
        case CS_TRAILER_NAME:
            if (++b->count_ > TRAILER_MAX)
                return bad(b, 400, "trailer section too large");
            if (c == ':')
                b->state_ = CS_TRAILER_VALUE;
            else if (!moat__http_is(c, MOAT__HTTP_TCHAR))
                return bad(b, 400, "malformed trailer field");
            break;
        case CS_TRAILER_VALUE:
            if (++b->count_ > TRAILER_MAX)
                return bad(b, 400, "trailer section too large");
            if (c == '\r')
                b->state_ = CS_TRAILER_LF;
            else if (c == '\n')
                b->state_ = CS_TRAILER_START;
            else if (!moat__http_is(c, MOAT__HTTP_FVCHAR))
                return bad(b, 400, "control character in a trailer field");
            break;
        case CS_TRAILER_LF:
            if (c != '\n')
                return bad(b, 400, "bare CR in a trailer field");
            b->state_ = CS_TRAILER_START;
            break;
        case CS_END_LF:
            if (c != '\n')
                return bad(b, 400, "bare CR after the last chunk");
            b->state_ = CS_DONE;
            *used = i + 1;
            return 0;
        default:
            return bad(b, 400, "chunked decoder in an impossible state");
        }
        i++;
    }
    *used = i;
    return MOAT_E_AGAIN;
}

int moat_http_body_skip(moat_http_body_t *b, const char *buf, size_t len, size_t *used)
{
    size_t off = 0;
    for (;;) {
        size_t u = 0;
        moat_http_str_t d;
        int rc = moat_http_body_decode(b, buf + off, len - off, &u, &d);
        off += u;
        if (rc != MOAT_E_AGAIN || off == len || u == 0) {
            *used = off;
            return rc;
        }
    }
}
