/*
 * http: HTTP/1.1 request parsing, body framing, path normalisation, static files and response heads.
 *
 * Everything here works without allocating: the request parser keeps offsets into the caller's read
 * buffer, the body decoder walks the same buffer in place, and responses are written into a buffer the
 * caller provides. Nothing in this module does network I/O; the server owns sockets and TLS.
 *
 * A request's life, as the server drives it:
 *
 *     moat_http_req_t req;               // embedded in the connection, or taken from its pool
 *     moat_http_req_reset(&req);
 *     rc = moat_http_req_parse(&req, rbuf, rlen, &limits);   // again after every read, same rbuf start
 *     if (rc == MOAT_E_AGAIN) -> read more (the parser enforces the limits itself)
 *     if (rc < 0)             -> answer req.status (400/413/414/431/501/505) and close
 *     // rc == 0: the head is rbuf[0, req.head_len); a body (if any) follows it.
 *     moat_http_body_init(&body, &req, limits.body_bytes);
 *     ... route on req.target (OCSP, /.well-known/moat/) before normalising ...
 *     moat_http_path_normalize(req.path.p, req.path.len, pathbuf, sizeof(pathbuf), &plen, &query, &status);
 *     moat_http_static_serve(&root, &req, pathbuf, &resp);   // or moat_http_resp_init() + fields
 *     moat_http_resp_write_head(&resp, wbuf, wcap, &wlen);  // then the file or in-memory body
 *     moat_http_body_skip(&body, ...) until it returns 0  // keeps the connection in sync
 *     next request starts at rbuf + req.head_len + body bytes consumed
 */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H

#include "config/config.h"
#include "core/core.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------------- */
/* Strings and limits                                                                                   */

/* A borrowed byte range (not NUL-terminated). p is NULL and len 0 when absent. */
typedef struct moat_http_str {
    const char *p;
    size_t len;
} moat_http_str_t;

/* Case-insensitive (ASCII) comparison of a slice with a C string: 1 if equal. */
int moat_http_str_ieq(moat_http_str_t s, const char *cstr);

/* A bounded writer of heads: bytes go on at p + n while they fit in cap; the first piece that does not fit
 * sets <full> and nothing more is written (the caller checks <full> once, at the end). */
typedef struct moat_http_out {
    char *p;
    size_t n, cap;
    int full;
} moat_http_out_t;

static inline void moat_http_out_put(moat_http_out_t *w, const char *s, size_t n)
{
    if (w->full || w->cap - w->n < n) {
        w->full = 1;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

static inline void moat_http_out_puts(moat_http_out_t *w, const char *s)
{
    moat_http_out_put(w, s, strlen(s));
}

/* <v> in decimal. */
static inline void moat_http_out_putu(moat_http_out_t *w, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    moat_http_out_put(w, tmp + i, sizeof(tmp) - i);
}

/* Limits from the config's `limits:` block (DESIGN). Zero means "use the default" given here. */
typedef struct moat_http_limits {
    size_t request_line_bytes; /* request line without its line end; longer -> 414 (default 8192) */
    size_t header_bytes;       /* whole head, request line to blank line inclusive; larger -> 431 (16384) */
    uint64_t body_bytes;       /* decoded request body; larger -> 413 (1048576) */
    size_t header_fields; /* header fields at most; one more -> 431 (100, at most MOAT_HTTP_MAX_HEADERS) */
} moat_http_limits_t;

#define MOAT_HTTP_DEFAULT_REQUEST_LINE_BYTES 8192
#define MOAT_HTTP_DEFAULT_HEADER_BYTES 16384
#define MOAT_HTTP_DEFAULT_BODY_BYTES 1048576

/* MOAT_HTTP_MAX_HEADERS (room for header fields in a request) and MOAT_HTTP_DEFAULT_HEADER_FIELDS: with
 * limits.header_fields in config/config.h, which the config checks against them. */

/* ---------------------------------------------------------------------------------------------------- */
/* Request head parser                                                                                  */

typedef enum moat_http_method {
    MOAT_HTTP_METHOD_OTHER = 0, /* a valid token we do not know; see req.method */
    MOAT_HTTP_GET,
    MOAT_HTTP_HEAD,
    MOAT_HTTP_POST,
    MOAT_HTTP_PUT,
    MOAT_HTTP_DELETE,
    MOAT_HTTP_OPTIONS,
    MOAT_HTTP_TRACE,
    MOAT_HTTP_CONNECT,
    MOAT_HTTP_PATCH
} moat_http_method_t;

typedef enum moat_http_body_kind {
    MOAT_HTTP_BODY_NONE = 0, /* no Content-Length, no Transfer-Encoding (or Content-Length: 0) */
    MOAT_HTTP_BODY_LENGTH,   /* Content-Length: req.content_length bytes follow the head */
    MOAT_HTTP_BODY_CHUNKED   /* Transfer-Encoding: chunked */
} moat_http_body_kind_t;

/* One header field, as offsets from the start of the request (req.base). Use moat_http_req_header(). */
typedef struct moat_http_hdr {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len; /* value without surrounding whitespace */
} moat_http_hdr_t;

/*
 * One request: parser state and result. Reset it with moat_http_req_reset() before each request.
 * The moat_http_str_t fields point into the buffer given to the last moat_http_req_parse() call and are
 * valid once it returned 0, for as long as that buffer is left unchanged.
 */
typedef struct moat_http_req {
    /* Result, valid when moat_http_req_parse() returned 0. */
    const char *base; /* the buffer of the last parse call (start of the request) */
    size_t head_len;  /* bytes of the head, blank line included: the body or next request starts here */
    moat_http_method_t method_id;
    moat_http_str_t method;    /* "GET" */
    moat_http_str_t target;    /* request-target as sent: "/a%20b?x=1", "http://h/p", "*" */
    moat_http_str_t path;      /* origin-form part of the target: "/a%20b?x=1" (from an absolute-form too;
                                * "https://h?x=1" gives "?x=1", "https://h" gives "/") */
    int version_minor;         /* 0 (HTTP/1.0) or 1 (HTTP/1.1; also any higher 1.x, RFC 9110 §2.5) */
    moat_http_str_t host;      /* authority: from an absolute-form target, else the Host field ("h:8443") */
    moat_http_str_t host_name; /* host without the port: "h", "[::1]"; empty if no Host */
    int keep_alive;            /* 1: the connection may carry another request after this one */
    moat_http_body_kind_t body_kind;
    uint64_t content_length;  /* when body_kind == MOAT_HTTP_BODY_LENGTH */
    int expect_continue;      /* Expect: 100-continue was sent */
    moat_http_str_t range;    /* Range value, empty if absent or sent more than once */
    moat_http_str_t if_range; /* If-Range value */
    moat_http_str_t if_modified_since;
    moat_http_str_t if_none_match; /* first If-None-Match field; moat_http_static_serve() reads all of them */
    moat_http_str_t if_match;      /* first If-Match field; moat_http_static_serve() reads all of them */
    moat_http_str_t if_unmodified_since;
    int conditional; /* 1: a Range, If-Range, If-Match, If-None-Match, If-Modified-Since or
                      * If-Unmodified-Since field was sent, even an empty one */
    size_t n_headers;
    moat_http_hdr_t headers[MOAT_HTTP_MAX_HEADERS];

    /* On failure: the status to answer and a short static reason for the error log. */
    int status;        /* 400, 413, 414, 431, 501 or 505; 0 while parsing or on success */
    const char *error; /* "several Host header fields", never NULL after a failure */

    /* Private parser state. */
    size_t scan_; /* bytes already searched for a line end */
    size_t line_; /* start of the current line */
    int state_;   /* 0 before the request line, 1 in the header fields, 2 done */
    unsigned flags_;
    uint32_t method_off_, target_off_, path_off_, auth_off_, auth_len_; /* offsets: the buffer may move */
    int16_t hdr_host_, hdr_range_, hdr_if_range_, hdr_ims_, hdr_inm_;   /* header indexes, -1: absent */
    int16_t hdr_im_, hdr_ius_;
    uint16_t max_fields_; /* limits.header_fields of this parse */
} moat_http_req_t;

/* Prepares <req> for a new request (cheap: does not clear the header array). */
void moat_http_req_reset(moat_http_req_t *req);

/*
 * Parses the request head at buf[0, len). Call it again with the same request start and more bytes
 * after each read; the buffer may move between calls as long as its contents are kept. Work already done
 * is not repeated. <limits> may be NULL (defaults).
 *
 * Returns:
 *   0              the head is complete: req->head_len bytes; derived fields are set.
 *   MOAT_E_AGAIN   the head is incomplete and within the limits: read more.
 *   MOAT_E_LIMIT   a limit was exceeded: req->status is 413 (Content-Length above body_bytes),
 *                  414 (request line) or 431 (head size or field count).
 *   MOAT_E_INVAL   bad input: req->status is 400, 501 (a transfer coding other than chunked) or 505
 *                  (an HTTP version other than 1.0 / 1.1). req->error says why.
 * After a failure, answer req->status and close the connection: the stream is out of sync.
 *
 * Rules (RFC 9112, strict where leniency enables smuggling):
 * - Line ends: CRLF, and a bare LF is accepted everywhere a line ends (RFC 9112 §2.2). A CR that is not
 *   followed by LF -> 400. Empty lines before the request line are skipped.
 * - Request line: METHOD SP target SP HTTP/1.x with single spaces; the method is a token; the target
 *   is visible ASCII: origin-form "/...", absolute-form "http(s)://authority/...", "*" (OPTIONS only) or
 *   authority-form (CONNECT only); an absolute form with an empty path ("https://h?q") means "/?q".
 *   "HTTP/1.d" above 1.1 is taken as 1.1 (RFC 9110 §2.5); another major version -> 505; else -> 400.
 * - Header fields: token name directly followed by ':'; value of VCHAR/SP/HTAB/obs-text. Obs-fold
 *   (a line starting with SP/HTAB), NUL or any other control character -> 400.
 * - Host: two Host fields -> 400; HTTP/1.1 without Host -> 400; invalid characters -> 400.
 * - Connection: comma-separated tokens; "close" wins; HTTP/1.1 defaults to keep-alive and HTTP/1.0
 *   needs "keep-alive".
 * - Content-Length: digits only; repeated fields or list members must all be equal (else 400); above
 *   limits->body_bytes -> 413.
 * - Transfer-Encoding: only "chunked" (once) is understood; other codings -> 501; "chunked" repeated,
 *   empty, or in an HTTP/1.0 request -> 400; with Content-Length as well -> 400.
 */
int moat_http_req_parse(moat_http_req_t *req, const char *buf, size_t len,
                        const moat_http_limits_t *limits) MOAT_MUST_CHECK;

/* Header field <i> (< req->n_headers) of a parsed request: name and value slices. */
void moat_http_req_header(const moat_http_req_t *req, size_t i, moat_http_str_t *name,
                          moat_http_str_t *value);

/*
 * Finds the first header field named <name> (case-insensitive) at index >= *from; on success sets
 * *value, sets *from to the index after it (so a loop finds every field) and returns 1; else 0.
 */
int moat_http_req_find(const moat_http_req_t *req, const char *name, size_t *from, moat_http_str_t *value);

/* "GET" -> MOAT_HTTP_GET, ... ; unknown -> MOAT_HTTP_METHOD_OTHER. */
moat_http_method_t moat_http_method_from(moat_http_str_t s);

/* ---------------------------------------------------------------------------------------------------- */
/* Request bodies                                                                                       */

/*
 * Request body decoder for Content-Length and chunked bodies; a static server uses it to discard
 * bodies (moat_http_body_skip) so the next pipelined request is found at the right place, and the OCSP
 * responder to read them (moat_http_body_decode). No allocation; state is a few integers.
 */
typedef struct moat_http_body {
    uint64_t limit;     /* most payload bytes accepted (body_bytes) */
    uint64_t total;     /* payload bytes seen so far */
    uint64_t remaining; /* bytes left in the Content-Length body or in the current chunk */
    int kind;           /* moat_http_body_kind_t */
    int state_;         /* chunked decoder state (private) */
    uint32_t count_;    /* bytes in the current chunk-size line or trailer section (private) */
    int status;         /* on failure: 400 or 413 */
    const char *error;  /* on failure: short static reason */
} moat_http_body_t;

/* Sets up the decoder for <req>'s body (kind and length come from the head); 0 limit = default. */
void moat_http_body_init(moat_http_body_t *b, const moat_http_req_t *req, uint64_t limit);

/*
 * Decodes body bytes from buf[0, len): *used is set to the bytes consumed, and *data to the payload
 * found in them (in place; at most one contiguous span per call, possibly empty).
 * Returns 0 when the body is complete (the next request starts at buf + *used), MOAT_E_AGAIN when the
 * caller should call again with the rest of its buffer (if *used < len) or with more input, or on bad
 * framing MOAT_E_INVAL (b->status 400: bad chunk size, missing CRLF after a chunk, bare CR, oversized
 * chunk extension or trailer) or MOAT_E_LIMIT (b->status 413: payload above the limit).
 * Chunk extensions are ignored; trailer fields are checked for framing and discarded.
 */
int moat_http_body_decode(moat_http_body_t *b, const char *buf, size_t len, size_t *used,
                          moat_http_str_t *data) MOAT_MUST_CHECK;

/* Like moat_http_body_decode() but discards the payload and consumes as much of buf as it can. */
int moat_http_body_skip(moat_http_body_t *b, const char *buf, size_t len, size_t *used) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------- */
/* Upstream response heads (the reverse proxy)                                                          */

/* How the body of an upstream response is framed. */
typedef enum moat_http_uframe {
    MOAT_HTTP_UFRAME_NONE = 0, /* no body: HEAD, 1xx, 204, 304, or Content-Length: 0 */
    MOAT_HTTP_UFRAME_LENGTH,   /* Content-Length bytes */
    MOAT_HTTP_UFRAME_CHUNKED,  /* Transfer-Encoding: chunked */
    MOAT_HTTP_UFRAME_CLOSE     /* neither: the body ends when the server closes */
} moat_http_uframe_t;

/* A response head from an upstream server, as offsets into the buffer it was parsed from. */
typedef struct moat_http_uhead {
    int status;        /* 100-599 */
    int version_minor; /* 0 or 1 */
    size_t head_len;   /* bytes of the head, blank line included */
    moat_http_uframe_t frame;
    uint64_t content_length; /* when frame is MOAT_HTTP_UFRAME_LENGTH */
    int keep_alive;          /* the server keeps the connection after this response */
    int upgrade;             /* 101 with Connection: upgrade */
    size_t n_headers;
    moat_http_hdr_t headers[MOAT_HTTP_MAX_HEADERS];
    const char *error; /* on failure: why, for the log */
} moat_http_uhead_t;

/*
 * Parses the response head at buf[0, len) of a request whose method was HEAD when <head_request>.
 * Returns 0 (head_len bytes; the body follows), MOAT_E_AGAIN (incomplete, below <max_head>), MOAT_E_LIMIT
 * (a head larger than <max_head> or more than MOAT_HTTP_MAX_HEADERS fields) or MOAT_E_INVAL (not a
 * response moat forwards: bad status line, a bad or folded field, a control byte, Content-Length and
 * Transfer-Encoding together, differing Content-Lengths, a transfer coding other than chunked once).
 * The reply of a server is taken as strictly as a client's request: an ambiguity is a 502, never a
 * guess that could desynchronise the connection. CRLF or bare LF end lines.
 */
int moat_http_uhead_parse(moat_http_uhead_t *h, const char *buf, size_t len, size_t max_head,
                          int head_request) MOAT_MUST_CHECK;
/* Field <i> of a parsed upstream head, against the buffer it was parsed from. */
void moat_http_uhead_field(const moat_http_uhead_t *h, const char *buf, size_t i, moat_http_str_t *name,
                           moat_http_str_t *value);
/* Sets up <b> to decode a response body framed as <h> says (LENGTH or CHUNKED; no limit). */
void moat_http_body_init_uhead(moat_http_body_t *b, const moat_http_uhead_t *h);

/* ---------------------------------------------------------------------------------------------------- */
/* Paths                                                                                                */

/*
 * Turns an origin-form target (req.path; "?q" alone, from "https://h?q", stands for "/?q") into a
 * file-system path below a site's root:
 * stops at '?' (the query is returned in *query without its '?', empty if none), stops at '#',
 * percent-decodes, then removes dot segments (RFC 3986 §5.2.4) and collapses repeated slashes.
 * The result in out (NUL-terminated, *out_len bytes) always starts with '/', never contains a "."
 * or ".." segment, "//" or a NUL, and a trailing slash of the target is kept ("/docs/" stays "/docs/").
 * Route OCSP and /.well-known/moat/ on the raw target first: base64 in OCSP URLs is not a path.
 *
 * Returns 0, or MOAT_E_INVAL with *status = 400 for: a target not starting with '/', bad or truncated
 * percent-escapes, an encoded NUL or control character, or a ".." that would climb above the root
 * (always 400, never clamped: such a request is malformed or hostile). MOAT_E_LIMIT (*status 414) if
 * out is too small. <query> and <status> may be NULL.
 */
int moat_http_path_normalize(const char *target, size_t len, char *out, size_t out_size, size_t *out_len,
                             moat_http_str_t *query, int *status) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------- */
/* HTTP dates (IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT")                                            */

#define MOAT_HTTP_DATE_LEN 29

/* Writes the IMF-fixdate of <t> into out (at least MOAT_HTTP_DATE_LEN + 1 bytes, NUL-terminated). */
void moat_http_date_format(time_t t, char *out);

/*
 * Parses an HTTP-date: IMF-fixdate, and the obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and
 * asctime ("Sun Nov  6 08:49:37 1994") forms (RFC 9110 §5.6.7). Returns 0 and sets *out, or
 * MOAT_E_INVAL for anything else (callers then ignore the field, as RFC 9110 asks).
 */
int moat_http_date_parse(const char *s, size_t len, time_t *out) MOAT_MUST_CHECK;

/*
 * The Date header value for <now>, formatted at most once per second per thread and cached.
 * Returns a thread-local NUL-terminated string valid until the next call on this thread.
 */
const char *moat_http_date_cached(time_t now);

/* ---------------------------------------------------------------------------------------------------- */
/* Responses                                                                                            */

/* Most extra header fields (beyond those with their own member) one response can carry. */
#define MOAT_HTTP_RESP_EXTRA 16
#define MOAT_HTTP_ETAG_MAX 64
#define MOAT_HTTP_LOCATION_MAX 2048

/*
 * What to send. Fill it with moat_http_resp_init() and then the members you need, or let
 * moat_http_static_serve() / moat_http_resp_error() / moat_http_resp_redirect_https() fill it.
 * All strings are borrowed and must outlive moat_http_resp_write_head().
 */
typedef struct moat_http_resp {
    int status;
    int keep_alive;           /* 0: "Connection: close" is sent and the caller closes after the body */
    int http10_keep_alive;    /* request was HTTP/1.0 with keep-alive: "Connection: keep-alive" is sent */
    int head_only;            /* HEAD request: headers describe the body, which is not sent */
    time_t now;               /* for Date; 0 = time(NULL) */
    const char *content_type; /* NULL: none */
    uint64_t content_length;  /* body bytes (of the range for 206) */
    int no_content_length;    /* 1: no Content-Length (304) */
    char etag[MOAT_HTTP_ETAG_MAX]; /* with quotes; empty: none */
    time_t last_modified;          /* -1: none */
    int accept_ranges;             /* 1: "Accept-Ranges: bytes" */
    int content_range;             /* 1: "Content-Range: bytes first-last/total"; 2: "bytes * /total" (416) */
    uint64_t range_first, range_last, range_total;
    moat_http_str_t location[4]; /* Location, concatenated from up to four pieces (empty ones skipped) */
    char location_port_[8];      /* storage for a ":8443" piece */
    const char *allow;           /* Allow value for 405, e.g. "GET, HEAD" */
    long hsts_max_age;           /* >= 0: "Strict-Transport-Security: max-age=N"; -1: none */
    size_t n_extra;
    struct {
        const char *name, *value;
    } extra[MOAT_HTTP_RESP_EXTRA];

    /* The body: an in-memory one (error pages, CA files) or a file range. */
    const char *body;     /* in-memory body of content_length bytes, or NULL */
    int fd;               /* owned: file to send from, or -1; closed by moat_http_resp_dispose() */
    uint64_t file_offset; /* first byte of the file to send */
    char *owned_body_;    /* owned: a generated body (folder listing), freed by moat_http_resp_dispose() */
    struct stat st;       /* of fd, when a file is served */
    /* Storage for a Location built here (the folder redirect); after st: moat_http_resp_init() leaves it. */
    char location_buf_[MOAT_HTTP_LOCATION_MAX];
    char content_type_[128]; /* a Content-Type with the configured charset */
    char cache_control_[64]; /* the Cache-Control of cache: {max_age, immutable} */
} moat_http_resp_t;

/*
 * Starts a response with <status>, taking keep-alive, HTTP/1.0 and HEAD from <req> (NULL: a request
 * that could not be parsed: no keep-alive). No body, no fd, no HSTS.
 */
void moat_http_resp_init(moat_http_resp_t *resp, const moat_http_req_t *req, int status);

/* Closes resp->fd if open. Safe to call twice. */
void moat_http_resp_dispose(moat_http_resp_t *resp);

/*
 * Adds "name: value". Returns 0, MOAT_E_LIMIT when MOAT_HTTP_RESP_EXTRA fields are already set, or
 * MOAT_E_INVAL if the name is not a token or the value holds CR, LF or another control character
 * (header injection). Both strings are borrowed. Callers passing fixed names and values to a response
 * with room may ignore the result; a value from outside must be checked.
 */
int moat_http_resp_add_header(moat_http_resp_t *resp, const char *name, const char *value);

/*
 * Turns <resp> into the built-in error page for <status>: text/html with the status, its reason and a
 * sentence, for every status moat_http_status_reason() knows (301 400 403 404 405 413 414 416 421 431
 * 500 501 505 among them); a status it does not know gets the 400 or 500 page under its own status line.
 * 405 sets Allow: GET, HEAD. keep_alive is left as it is, except for 400, 413, 414, 431, 501 and 505,
 * after which the stream cannot be trusted: there it becomes 0. Any fd is closed.
 */
void moat_http_resp_error(moat_http_resp_t *resp, int status);

/*
 * Formats an error page with an extra sentence <detail> (HTML-escaped) into buf, e.g. for 403 with the
 * client-certificate reason; returns its length (0 if it did not fit). Point resp->body at buf and set
 * resp->content_length to the result after moat_http_resp_error().
 */
size_t moat_http_error_page_format(char *buf, size_t size, int status, const char *detail);

/*
 * 301 to "https://" + host + [":" port] + req->path, for require_secure_channel. The host is
 * req->host_name, or <fallback_host> when the request had none (HTTP/1.0); port 443 is left out.
 * Returns 0, or MOAT_E_INVAL when there is no host to redirect to (answer 400).
 */
int moat_http_resp_redirect_https(moat_http_resp_t *resp, const moat_http_req_t *req,
                                  const char *fallback_host, unsigned port) MOAT_MUST_CHECK;

/*
 * Writes the response head (status line to blank line) into buf[0, size): status line, Date, Server:
 * moat, Content-Type, Content-Length, ETag, Last-Modified, Accept-Ranges, Content-Range, Location, Allow,
 * Strict-Transport-Security, the extra fields, and Connection when needed. Sets *len.
 * Returns 0, or MOAT_E_LIMIT if it did not fit (nothing useful in buf then).
 */
int moat_http_resp_write_head(const moat_http_resp_t *resp, char *buf, size_t size,
                              size_t *len) MOAT_MUST_CHECK;

/*
 * The head followed by the in-memory body (unless head_only), so small responses go out in one send.
 * Returns 0, or MOAT_E_LIMIT if both do not fit (use write_head and send the body separately).
 */
int moat_http_resp_write(const moat_http_resp_t *resp, char *buf, size_t size, size_t *len) MOAT_MUST_CHECK;

/* "Not Found" for 404; "Unknown" for codes it does not know. */
const char *moat_http_status_reason(int status);

/* The HTML entity standing for c in text and attribute values ("&lt;" for '<', also > & " '), or NULL
 * when c is safe as it is. */
const char *moat_http_html_entity(char c);

/* ---------------------------------------------------------------------------------------------------- */
/* Static files                                                                                         */

/* A site's document root, opened once per config generation and shared read-only by all workers. */
typedef struct moat_http_root {
    int fd;          /* owned: O_PATH|O_DIRECTORY descriptor of the root */
    int use_openat2; /* 1: openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS); 0: realpath fallback */
    char real[4096]; /* realpath of the root, for the fallback */
    size_t real_len;
} moat_http_root_t;

/*
 * Opens <dir> as a document root. Returns 0, or MOAT_E_IO / MOAT_E_NOTFOUND / MOAT_E_PERM with <err>
 * naming the folder and the reason (and a hint).
 */
int moat_http_root_open(moat_http_root_t *root, const char *dir, moat_err_t *err) MOAT_MUST_CHECK;
/* Closes the root descriptor (safe after a failed open, which leaves fd at -1). */
void moat_http_root_close(moat_http_root_t *root);

/*
 * Answers a request for the normalised <path> (from moat_http_path_normalize) under <root> with the
 * static settings <conf> in force there (moat_site_static_for_path; NULL: the defaults) and the path
 * of the location they come from (<loc_path>, NULL for the site), filling <resp> completely (resp is
 * initialised here; the caller may then add HSTS):
 * - redirect.to set: that redirect, for every method (keep_path: the path below the location and the
 *   query are appended, percent-encoded);
 * - 405 + Allow: GET, HEAD for other methods; 404 when <root> is NULL;
 * - 200 with fd, Content-Type (mime_types, then the built-in table; text types with charset),
 *   Content-Length, ETag, Last-Modified, Accept-Ranges;
 * - preconditions of RFC 9110 §13.2.2: 412 (If-Match, If-Unmodified-Since), 304 (If-None-Match,
 *   If-Modified-Since), then If-Range;
 * - 206 + Content-Range for one satisfiable byte range; 416 + "Content-Range: bytes * /size" for an
 *   unsatisfiable one; several ranges, other units or bad Range syntax: the whole file, 200;
 * - a folder serves the first of its index names that exists (index.html by default); a folder named
 *   without a trailing slash -> 301 to the normalised path with "/" added (query kept, no fragment);
 *   no index: the listing when enabled, else 404;
 * - a path with a dot segment (/.git/config) -> 404 unless dotfiles: allow or dotfiles_allow covers it
 *   (/.well-known/acme-challenge/ always passes);
 * - a missing file with fallback set -> the fallback file, 200;
 * - 404 for a missing file, for anything that is not a regular file or directory, and for a path
 *   escaping the root through a symlink (symlinks staying inside are followed); 403 when the file or a
 *   folder on the way is not readable by the server;
 * - an error status with a page in error_pages: that file is the body;
 * - then moat_http_static_headers().
 * ETag: strong, "<mtime seconds hex>.<mtime nanoseconds hex>-<size hex>-<inode hex>" in quotes.
 * Returns the status it chose (also in resp->status). The caller sends resp->content_length bytes from
 * resp->fd at resp->file_offset (or resp->body; none for HEAD), and calls moat_http_resp_dispose().
 */
struct moat_static_conf;
int moat_http_static_serve(const moat_http_root_t *root, const moat_http_req_t *req, const char *path,
                           const struct moat_static_conf *conf, const char *loc_path, moat_http_resp_t *resp);

/*
 * The response fields of <conf> (NULL: the defaults): X-Content-Type-Options: nosniff unless off or
 * removed; on answers below 400 also Cache-Control from cache: and the headers: list; remove_headers
 * takes off those and ETag, Last-Modified, Accept-Ranges. For answers made elsewhere from the same
 * settings (the small-file cache).
 */
void moat_http_static_headers(const struct moat_static_conf *conf, moat_http_resp_t *resp);

/*
 * 1 when the client's copy is current and the answer is 304 (RFC 9110 §13.2.2 steps 3 and 4):
 * If-None-Match matches <etag> (weak comparison, "*" too), or, without If-None-Match, If-Modified-Since
 * is not older than <mtime> (-1: no date to compare, If-Modified-Since is then ignored).
 */
int moat_http_not_modified(const moat_http_req_t *req, const char *etag, time_t mtime);

/*
 * The access rules of <conf> for a request from <peer> (NULL: not checked): deny (403,
 * "address-denied"), then allow when not empty (403, "address-not-allowed"), then basic_auth when it has
 * users (401, "no-credentials" or "bad-credentials"; crypt(3) hashes, successes remembered per thread
 * for a minute). Returns 0 when the request may go on, else the status, *reason set to the token.
 */
struct sockaddr;
int moat_http_access_check(const struct moat_static_conf *conf, const struct sockaddr *peer,
                           const moat_http_req_t *req, const char **reason);

/* Turns <resp> into the refusal for moat_http_access_check(): the page with the reason, X-Moat-Access:
 * REASON, and for 401 WWW-Authenticate: Basic with the realm (RFC 7617). */
void moat_http_access_refuse(moat_http_resp_t *resp, const moat_http_req_t *req,
                             const struct moat_static_conf *conf, int status, const char *reason);

/*
 * The preconditions of RFC 9110 §13.2.2 for a representation with <etag> and <mtime> (-1: no date):
 * 412 when If-Match does not match (strong comparison, "*" matches) or, without If-Match, the
 * representation changed after If-Unmodified-Since; else 304 for GET/HEAD when moat_http_not_modified();
 * else 0 (perform the method; If-Range is the caller's, step 5). Cheap when req->conditional is 0.
 */
int moat_http_preconditions(const moat_http_req_t *req, const char *etag, time_t mtime);

/* MIME type for a file name by its extension ("text/html; charset=utf-8"); default
 * "application/octet-stream". Text types carry charset=utf-8. */
const char *moat_http_mime_type(const char *name, size_t len);

/* ---------------------------------------------------------------------------------------------------- */
/* The client side (CRL fetching): parsing only; the caller owns the socket                            */

#define MOAT_HTTP_URL_MAX 512

typedef struct moat_http_url {
    char host[256];               /* a name or an IP literal (IPv6 without brackets) */
    unsigned port;                /* 80 unless given */
    char hostport[270];           /* the Host field: "[::1]:8080", "crl.example" */
    char path[MOAT_HTTP_URL_MAX]; /* origin form: path and query, fragment dropped; "/" at least */
    int tls;                      /* 1 for https:// (port 443 unless given) */
} moat_http_url_t;

/* Splits an http:// URL. Refused (MOAT_E_INVAL / MOAT_E_LIMIT with the reason): other schemes, user
 * information, spaces, control or non-ASCII bytes, a bad host or port, and URLs of MOAT_HTTP_URL_MAX
 * bytes or more. */
int moat_http_url_parse(const char *url, moat_http_url_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* The same with <flags>: MOAT_HTTP_URL_HTTPS accepts https:// as well (out->tls = 1). */
#define MOAT_HTTP_URL_HTTPS 1u
int moat_http_url_parse_ex(const char *url, unsigned flags, moat_http_url_t *out,
                           moat_err_t *err) MOAT_MUST_CHECK;

#define MOAT_HTTP_CLIENT_LINKS 4

typedef struct moat_http_client_resp {
    int status;
    size_t body_off; /* the body is buf[body_off, body_off + body_len) */
    size_t body_len;
    char location[256];     /* a redirect's Location (printable ASCII, cut), "" if none */
    char nonce[160];        /* Replay-Nonce (ACME), "" if none */
    char content_type[128]; /* Content-Type, "" if none */
    long retry_after;       /* Retry-After in seconds from now, -1 if none */
    char alternates[MOAT_HTTP_CLIENT_LINKS][256]; /* Link: <...>; rel="alternate" URLs */
    size_t nalternates;
} moat_http_client_resp_t;

/* Parses the response in buf[0, len) to a GET sent with "Connection: close"; <eof>: the server has closed.
 * Call again with more bytes (from the same start) after MOAT_E_AGAIN. Returns 0 when the response is
 * complete: a chunked body has then been decoded in place. Errors: MOAT_E_LIMIT for a head over 16 KiB or
 * a body over <max_body>, MOAT_E_INVAL for anything malformed or ambiguous (both Content-Length and
 * Transfer-Encoding, differing Content-Lengths, folded lines, codings other than chunked, a body cut
 * short by the close). The status is the caller's business. */
int moat_http_client_parse(uint8_t *buf, size_t len, int eof, size_t max_body, moat_http_client_resp_t *out,
                           moat_err_t *err) MOAT_MUST_CHECK;

typedef struct x509_store_st X509_STORE;

/* One request (fetch.c). */
typedef struct moat_http_fetch {
    const char *method;       /* "GET" (NULL) or "POST" */
    const char *url;          /* http://, or https:// when <https> is set */
    int https;                /* 1: https:// URLs are accepted (and verified) */
    X509_STORE *trust;        /* borrowed: anchors for https; NULL = the system trust store */
    const char *accept;       /* the Accept value; NULL = any */
    const char *content_type; /* of <body>; NULL = none */
    const void *body;         /* borrowed; NULL = none */
    size_t body_len;
    size_t max_body;        /* a larger response body is MOAT_E_LIMIT */
    int timeout_ms;         /* connect to the last byte */
    const atomic_int *stop; /* may be NULL: once set, the fetch gives up within 200 ms */
} moat_http_fetch_t;

/*
 * Sends one request and reads the response (any status: it is the caller's business). On success *body
 * is a new buffer of *body_len bytes plus a NUL (moat_free it) and <r> holds the status and headers.
 * Errors (err says which host and why): MOAT_E_IO (resolve, connect, timeout, stop), MOAT_E_PKI (TLS, a
 * certificate that does not verify for the URL's host), MOAT_E_INVAL / MOAT_E_LIMIT (a bad response).
 */
int moat_http_fetch(const moat_http_fetch_t *f, moat_http_client_resp_t *r, uint8_t **body, size_t *body_len,
                    moat_err_t *err) MOAT_MUST_CHECK;

#endif
