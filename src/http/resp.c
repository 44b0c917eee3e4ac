/*
 * Response heads, built-in error pages and redirects, written into caller buffers.
 */
#include "http/http_int.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

static const struct {
    int code;
    const char *reason;
    const char *text;
} statuses[] = {
    {100, "Continue", NULL},
    {101, "Switching Protocols", NULL},
    {200, "OK", NULL},
    {201, "Created", NULL},
    {202, "Accepted", NULL},
    {204, "No Content", NULL},
    {206, "Partial Content", NULL},
    {301, "Moved Permanently", "The document has moved."},
    {302, "Found", "The document has moved."},
    {303, "See Other", "The document is elsewhere."},
    {304, "Not Modified", NULL},
    {307, "Temporary Redirect", "The document has moved."},
    {308, "Permanent Redirect", "The document has moved."},
    {400, "Bad Request", "The request could not be understood by this server."},
    {401, "Unauthorized", "Authentication is required."},
    {403, "Forbidden", "You do not have permission to access this resource."},
    {404, "Not Found", "The requested resource was not found on this server."},
    {405, "Method Not Allowed", "This resource accepts only GET and HEAD."},
    {408, "Request Timeout", "The request took too long to arrive."},
    {409, "Conflict", "The request conflicts with the state of the resource."},
    {410, "Gone", "The requested resource is no longer available."},
    {411, "Length Required", "The request needs a Content-Length."},
    {412, "Precondition Failed", "A precondition of the request did not hold."},
    {413, "Content Too Large", "The request body is larger than this server accepts."},
    {414, "URI Too Long", "The request line is longer than this server accepts."},
    {415, "Unsupported Media Type", "The request body has a type this resource does not accept."},
    {416, "Range Not Satisfiable", "The requested byte range lies outside the resource."},
    {417, "Expectation Failed", "The Expect header field cannot be met."},
    {421, "Misdirected Request", "This connection does not serve the requested host."},
    {426, "Upgrade Required", "The request needs another protocol."},
    {429, "Too Many Requests", "Too many requests; try again later."},
    {431, "Request Header Fields Too Large",
     "The request header fields are larger than this server accepts."},
    {500, "Internal Server Error", "The server failed to answer the request."},
    {501, "Not Implemented", "The server does not support a feature this request needs."},
    {502, "Bad Gateway", "An upstream server answered badly."},
    {503, "Service Unavailable", "The server cannot answer right now; try again later."},
    {504, "Gateway Timeout", "An upstream server did not answer in time."},
    {505, "HTTP Version Not Supported", "This server speaks HTTP/1.0 and HTTP/1.1."},
};

static int status_index(int code)
{
    for (size_t i = 0; i < MOAT_ARRAY_LEN(statuses); i++)
        if (statuses[i].code == code)
            return (int)i;
    return -1;
}

const char *moat_http_status_reason(int status)
{
    int i = status_index(status);
    return i >= 0 ? statuses[i].reason : "Unknown";
}

const char *moat_http_html_entity(char c)
{
    switch (c) {
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '&':
        return "&amp;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    default:
        return NULL;
    }
}

/* The built-in pages, formatted once at first use and read-only afterwards, so responses only copy. */
#define PAGE_MAX 512
static char pages[MOAT_ARRAY_LEN(statuses)][PAGE_MAX];
static size_t page_lens[MOAT_ARRAY_LEN(statuses)];
static pthread_once_t pages_once = PTHREAD_ONCE_INIT;

static size_t page_write(char *buf, size_t size, int code, const char *reason, const char *text,
                         const char *detail)
{
    moat_http_out_t w = {buf, 0, size, 0};
    char num[4] = {(char)('0' + code / 100 % 10), (char)('0' + code / 10 % 10), (char)('0' + code % 10), 0};
    moat_http_out_puts(&w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    moat_http_out_puts(&w, num);
    moat_http_out_put(&w, " ", 1);
    moat_http_out_puts(&w, reason);
    moat_http_out_puts(&w, "</title></head>\n<body><h1>");
    moat_http_out_puts(&w, num);
    moat_http_out_put(&w, " ", 1);
    moat_http_out_puts(&w, reason);
    moat_http_out_puts(&w, "</h1>\n<p>");
    moat_http_out_puts(&w, text);
    moat_http_out_puts(&w, "</p>\n");
    if (detail != NULL && detail[0] != '\0') {
        moat_http_out_puts(&w, "<p>");
        for (const char *d = detail; *d; d++) {
            const char *entity = moat_http_html_entity(*d);
            if (entity != NULL)
                moat_http_out_puts(&w, entity);
            else
                moat_http_out_put(&w, d, 1);
        }
        moat_http_out_puts(&w, "</p>\n");
    }
    moat_http_out_puts(&w, "<hr><address>moat</address></body></html>\n");
    return w.full ? 0 : w.n;
}

static void pages_init(void)
{
    for (size_t i = 0; i < MOAT_ARRAY_LEN(statuses); i++)
        if (statuses[i].text != NULL)
            page_lens[i] =
                page_write(pages[i], PAGE_MAX, statuses[i].code, statuses[i].reason, statuses[i].text, NULL);
}

static const char *page_for(int code, size_t *len)
{
    int i = status_index(code);
    (void)pthread_once(&pages_once, pages_init); /* cannot fail with a valid once-control */
    if (i < 0 || statuses[i].text == NULL)
        i = status_index(code >= 500 ? 500 : 400);
    *len = page_lens[i];
    return pages[i];
}

size_t moat_http_error_page_format(char *buf, size_t size, int status, const char *detail)
{
    int i = status_index(status);
    const char *reason = i >= 0 ? statuses[i].reason : "Error";
    const char *text = i >= 0 && statuses[i].text != NULL ? statuses[i].text : "The request failed.";
    return page_write(buf, size, status, reason, text, detail);
}

void moat_http_resp_init(moat_http_resp_t *resp, const moat_http_req_t *req, int status)
{
    memset(resp, 0, offsetof(moat_http_resp_t, st));
    resp->status = status;
    resp->fd = -1;
    resp->last_modified = (time_t)-1;
    resp->hsts_max_age = -1;
    if (req != NULL && req->status == 0) {
        resp->keep_alive = req->keep_alive;
        resp->http10_keep_alive = req->version_minor == 0 && req->keep_alive;
        resp->head_only = req->method_id == MOAT_HTTP_HEAD;
    }
}

void moat_http_resp_dispose(moat_http_resp_t *resp)
{
    if (resp->owned_body_ != NULL) {
        if (resp->body == resp->owned_body_)
            resp->body = NULL;
        moat_free(&resp->owned_body_);
    }
    if (resp->fd >= 0) {
        (void)close(resp->fd); /* read-only file: nothing to flush, nothing to report */
        resp->fd = -1;
    }
}

int moat_http_resp_add_header(moat_http_resp_t *resp, const char *name, const char *value)
{
    if (resp->n_extra == MOAT_HTTP_RESP_EXTRA)
        return MOAT_E_LIMIT;
    if (name[0] == '\0')
        return MOAT_E_INVAL;
    for (const char *p = name; *p; p++)
        if (!moat__http_is((unsigned char)*p, MOAT__HTTP_TCHAR))
            return MOAT_E_INVAL;
    for (const char *p = value; *p; p++)
        if (!moat__http_is((unsigned char)*p, MOAT__HTTP_FVCHAR))
            return MOAT_E_INVAL;
    resp->extra[resp->n_extra].name = name;
    resp->extra[resp->n_extra].value = value;
    resp->n_extra++;
    return 0;
}

void moat_http_resp_error(moat_http_resp_t *resp, int status)
{
    size_t len;
    moat_http_resp_dispose(resp);
    resp->status = status;
    resp->body = page_for(status, &len);
    resp->content_length = len;
    resp->content_type = "text/html; charset=utf-8";
    resp->no_content_length = 0;
    resp->etag[0] = '\0';
    resp->last_modified = (time_t)-1;
    resp->accept_ranges = 0;
    resp->content_range = 0;
    resp->file_offset = 0;
    if (status == 405 && resp->allow == NULL)
        resp->allow = "GET, HEAD";
    /* After these the request stream cannot be trusted (or was not read): close. */
    if (status == 400 || status == 413 || status == 414 || status == 431 || status == 501 || status == 505) {
        resp->keep_alive = 0;
        resp->http10_keep_alive = 0;
    }
}

int moat_http_resp_redirect_https(moat_http_resp_t *resp, const moat_http_req_t *req,
                                  const char *fallback_host, unsigned port)
{
    moat_http_str_t host = req->host_name;
    if (host.len == 0) {
        if (fallback_host == NULL || fallback_host[0] == '\0')
            return MOAT_E_INVAL;
        host.p = fallback_host;
        host.len = strlen(fallback_host);
    }
    moat_http_resp_init(resp, req, 301);
    moat_http_resp_error(resp, 301);
    resp->location[0] = (moat_http_str_t){"https://", 8};
    resp->location[1] = host;
    if (port != 443 && port != 0 && port <= 65535) {
        moat_http_out_t w = {resp->location_port_, 0, sizeof(resp->location_port_), 0};
        moat_http_out_put(&w, ":", 1);
        moat_http_out_putu(&w, port);
        resp->location[2] = (moat_http_str_t){resp->location_port_, w.n};
    }
    if (req->path.len > 0)
        resp->location[3] = req->path;
    else
        resp->location[3] = (moat_http_str_t){"/", 1};
    return 0;
}

int moat_http_resp_write_head(const moat_http_resp_t *r, char *buf, size_t size, size_t *len)
{
    moat_http_out_t w = {buf, 0, size, 0};
    int code = r->status;

    moat_http_out_puts(&w, "HTTP/1.1 ");
    if (code < 100 || code > 999)
        code = 500;
    moat_http_out_putu(&w, (uint64_t)code);
    moat_http_out_put(&w, " ", 1);
    moat_http_out_puts(&w, moat_http_status_reason(code));
    moat_http_out_puts(&w, "\r\nDate: ");
    moat_http_out_put(&w, moat_http_date_cached(r->now != 0 ? r->now : time(NULL)), MOAT_HTTP_DATE_LEN);
    moat_http_out_puts(&w, "\r\nServer: moat\r\n");
    if (r->content_type != NULL) {
        moat_http_out_puts(&w, "Content-Type: ");
        moat_http_out_puts(&w, r->content_type);
        moat_http_out_put(&w, "\r\n", 2);
    }
    /* RFC 9110 §8.6: no Content-Length on 1xx, 204 or 304. */
    if (!r->no_content_length && code >= 200 && code != 204 && code != 304) {
        moat_http_out_puts(&w, "Content-Length: ");
        moat_http_out_putu(&w, r->content_length);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->etag[0] != '\0') {
        moat_http_out_puts(&w, "ETag: ");
        moat_http_out_puts(&w, r->etag);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->last_modified != (time_t)-1) {
        /* One file answered many times in a row is the common case: its date is formatted once. */
        static _Thread_local time_t lm_at = (time_t)-1;
        static _Thread_local char lm[MOAT_HTTP_DATE_LEN + 1];
        if (r->last_modified != lm_at) {
            moat_http_date_format(r->last_modified, lm);
            lm_at = r->last_modified;
        }
        moat_http_out_puts(&w, "Last-Modified: ");
        moat_http_out_put(&w, lm, MOAT_HTTP_DATE_LEN);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->accept_ranges)
        moat_http_out_puts(&w, "Accept-Ranges: bytes\r\n");
    if (r->content_range == 1) {
        moat_http_out_puts(&w, "Content-Range: bytes ");
        moat_http_out_putu(&w, r->range_first);
        moat_http_out_put(&w, "-", 1);
        moat_http_out_putu(&w, r->range_last);
        moat_http_out_put(&w, "/", 1);
        moat_http_out_putu(&w, r->range_total);
        moat_http_out_put(&w, "\r\n", 2);
    } else if (r->content_range == 2) {
        moat_http_out_puts(&w, "Content-Range: bytes */");
        moat_http_out_putu(&w, r->range_total);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->location[0].len + r->location[1].len + r->location[2].len + r->location[3].len > 0) {
        moat_http_out_puts(&w, "Location: ");
        for (int i = 0; i < 4; i++)
            if (r->location[i].len > 0)
                moat_http_out_put(&w, r->location[i].p, r->location[i].len);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->allow != NULL) {
        moat_http_out_puts(&w, "Allow: ");
        moat_http_out_puts(&w, r->allow);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (r->hsts_max_age >= 0) {
        moat_http_out_puts(&w, "Strict-Transport-Security: max-age=");
        moat_http_out_putu(&w, (uint64_t)r->hsts_max_age);
        moat_http_out_put(&w, "\r\n", 2);
    }
    for (size_t i = 0; i < r->n_extra && i < MOAT_HTTP_RESP_EXTRA; i++) {
        moat_http_out_puts(&w, r->extra[i].name);
        moat_http_out_put(&w, ": ", 2);
        moat_http_out_puts(&w, r->extra[i].value);
        moat_http_out_put(&w, "\r\n", 2);
    }
    if (!r->keep_alive)
        moat_http_out_puts(&w, "Connection: close\r\n");
    else if (r->http10_keep_alive)
        moat_http_out_puts(&w, "Connection: keep-alive\r\n");
    moat_http_out_put(&w, "\r\n", 2);
    if (w.full)
        return MOAT_E_LIMIT;
    *len = w.n;
    return 0;
}

int moat_http_resp_write(const moat_http_resp_t *r, char *buf, size_t size, size_t *len)
{
    size_t n;
    int rc = moat_http_resp_write_head(r, buf, size, &n);
    if (rc != 0)
        return rc;
    if (r->body != NULL && !r->head_only && r->status != 304 && r->status != 204) {
        if (size - n < r->content_length)
            return MOAT_E_LIMIT;
        memcpy(buf + n, r->body, (size_t)r->content_length);
        n += (size_t)r->content_length;
    }
    *len = n;
    return 0;
}
