/*
 * Private to server/: one request, whatever protocol carried it, and the interface its answer is
 * written through.
 *
 * HTTP/1.1 (conn.c) and HTTP/2 (h2.c) each fill a moat__request_t (the parsed request in <req>, the
 * connection in <conn>) and hand it to moat__request_handle(), which chooses the site (Host, 421), and
 * answers: the https redirect, HSTS, OCSP, whoami, CA publication, client-certificate verdicts and the
 * 403 page, static files. The answer is a moat_http_resp_t sent through the request's writer; the
 * access log line is written from the request once its response is done. Nothing here knows the
 * protocol: the writer does.
 */
#ifndef MOAT_SERVER_REQUEST_H
#define MOAT_SERVER_REQUEST_H

#include "server/conn.h"

/* How long a request whose client certificate names a CRL the server has not fetched yet waits for the
 * first fetch, before it is answered "revocation-unknown". */
#define MOAT__CRL_WAIT_MS 5000

/* A response field handed on from an upstream. */
typedef struct moat__px_field {
    moat_http_str_t name, value;
} moat__px_field_t;

/* What a protocol provides to answer a request. */
typedef struct moat__writer {
    const char *proto; /* its ALPN name: "http/1.1", "h2" (the access log and whoami say it) */
    /* Sends r->resp: its head, then the body (in memory or r->resp.fd), read with moat__request_body_read.
     * An in-memory body may live on the caller's stack or in a thread-local buffer: it is copied or sent
     * before the request is handled again. */
    void (*send)(moat__request_t *r);
    /* The request was parked (for a CRL, moat__request_wait_crl, or for the ACME service) and may leave
     * the connection's timers. */
    void (*park)(moat__request_t *r);
    /* Handles a parked request again (a new CRL snapshot, a retry tick, a stop, or an ACME answer). */
    void (*resume)(moat__request_t *r);

    /* Proxied requests (proxy.c). The response head from the upstream: status, the fields to hand on,
     * and the body's length (-1: unknown; the writer frames it). 0, or -1 (the request fails). */
    int (*px_head)(moat__request_t *r, int status, const moat__px_field_t *f, size_t n, int64_t length);
    /* Response body bytes: how many were taken (0: the output is full; px_wake follows once it drained),
     * or -1. */
    long (*px_data)(moat__request_t *r, const char *p, size_t len);
    /* The response body is complete. 0 or -1. */
    int (*px_end)(moat__request_t *r);
    /* Request body bytes from the client into buf (at most cap): how many (0: none now), *end set when
     * the body is complete; -1 when the client's body is malformed, too large (r->body.status) or cut. With
     * <raw> (a WebSocket tunnel), the bytes as they come. */
    long (*px_body_in)(moat__request_t *r, char *buf, size_t cap, int raw, int *end);
    /* The upstream side has news (bytes, room, an error, a timeout): work on the request. */
    void (*px_wake)(moat__request_t *r);
    /* The request was handed to the proxy: the protocol lets it drive the request from now on. */
    void (*px_begin)(moat__request_t *r);
} moat__writer_t;

typedef struct moat__proxy moat__proxy_t;

/* One request and its response. Taken from w->rstates when a request starts, given back when it is
 * done (HTTP/1.1: when the connection waits idle). */
struct moat__request {
    moat__conn_t *conn;        /* the connection that carried it: site, TLS, client certificate */
    const moat__writer_t *out; /* the protocol's writer */
    void *stream;              /* the writer's own (HTTP/2: its stream), or NULL */
    moat_http_req_t req;
    moat_http_body_t body;
    moat_http_resp_t resp;
    char *post; /* the body a handler reads (moat__request_body_keep), else NULL: from the small pool, or
                 * the big one when post_big */
    size_t post_len, post_cap;
    moat__acme_call_t *acme;      /* with the ACME service (acme_route.c), or NULL */
    const char *ccert;            /* client-certificate verdict of this request ("ok" or a reason), or NULL */
    const char *access;           /* why an access rule refused it (401/403, a fixed token), or NULL */
    unsigned resp_active : 1,     /* resp is set up (an fd to close) */
        head_ok : 1,              /* the head parsed: method and target are known (access log) */
        ccert_denied : 1,         /* refused for its client certificate: logged as 403.7 */
        crl_waited : 1,           /* parked for a CRL already; crl_deadline_ms is when that stops */
        post_big : 1,             /* post is from the big pool */
        body_unread : 1;          /* handled before its body was read: the connection closes after */
    int status;                   /* response status, for the access log */
    uint64_t file_left, file_off; /* body bytes still to send, and where they come from */
    uint64_t body_sent;           /* response body bytes, for the access log */
    uint64_t crl_deadline_ms;
    struct timespec t0; /* when the request's first byte was seen */
    moat_list_t wnode;  /* in w->q_crl while parked */
    moat__proxy_t *px;  /* the proxied request's upstream side (proxy.c), or NULL */
};

/* How many bytes of a request body the server keeps for the handler of <path>: an OCSP POST
 * (MOAT_PKI_OCSP_MAX_REQUEST), an ACME POST (MOAT_ACME_BODY_MAX); 0 when the body is discarded. A body
 * larger than that is answered 413. */
size_t moat__request_body_keep(int post, moat_http_str_t path);
/* Gives <r> a buffer for a body of up to <keep> bytes in r->post (the request's end gives it back). 0, or
 * -1 when memory is exhausted. */
int moat__request_post_buf(moat__request_t *r, size_t keep);

/* Sets <r> up for a new request on <c>, written through <out>. */
void moat__request_begin(moat__request_t *r, moat__conn_t *c, const moat__writer_t *out);
/* Disposes of the response of <r> (closes its file) after its access log line. */
void moat__request_end(moat__request_t *r);

/* request.c: answers the request parsed in r->req (or the parse error when <status> != 0). */
void moat__request_handle(moat__request_t *r, int status);
/* Copies up to <want> more response body bytes (of r->file_left, from r->file_off: the file of the
 * response, or its in-memory body) into <buf>; returns how many, 0 on a read error or a file that shrank
 * (errno tells which). */
size_t moat__request_body_read(moat__request_t *r, char *buf, size_t want);
/* Access log line for the finished response of <r>. */
void moat__access_log(moat__request_t *r);

/* worker.c: parks <r> until the next CRL snapshot or its wait runs out (MOAT__CRL_WAIT_MS from the first
 * park); it is then handled again (r->out->resume). Returns 1 when parked, 0 when the wait is over (the
 * verdict stands) or the server is stopping. */
int moat__request_wait_crl(moat__request_t *r);

/* fcache.c: answers an unconditional GET/HEAD of a small file from the worker's cache (1: done, the
 * response is in r->resp with an in-memory body), or stores the file just answered. */
int moat__fcache_serve(moat__request_t *r, size_t site, const char *path, size_t plen);
void moat__fcache_store(moat__request_t *r, size_t site, const char *path, size_t plen);

/* request.c: 1 when the request in r->req goes to an upstream (its site's location has proxy:), for the
 * protocols to hand it on before its body arrives. */
int moat__request_proxied(moat__request_t *r);

/* proxy.c: the reverse proxy. */
typedef enum { MOAT__PX_WAIT, MOAT__PX_MORE, MOAT__PX_DONE, MOAT__PX_FAIL } moat__px_run_t;
/* Hands <r> to the upstream of <loc> (from request.c once the site's rules let it through); the answer
 * comes through the writer's px_* functions, or a 502/503/504 page through send. */
void moat__proxy_start(moat__request_t *r, const moat_site_t *site, const moat_location_t *loc);
/* Works on a proxied request until it would block: WAIT (nothing to do now), MORE (output was staged or
 * the request's state moved: call again once it left), DONE (the response is complete), FAIL (the client
 * connection must close). */
moat__px_run_t moat__proxy_run(moat__request_t *r);
/* Frees the upstream side of <r> (from moat__request_end): a finished upstream connection goes back to
 * its pool, one cut off is closed. */
void moat__proxy_end(moat__request_t *r);
/* proxy_check.c (serve --check): connects once to every upstream server and says which answer (a warning
 * for each that does not, and for one that is a listener of moat itself). */
void moat__proxy_check(const moat_config_t *cfg, moat_store_t *st);
/* Writes " upstream=ADDR ustatus=N utime=T.TTTms[ upstream_error=REASON]" at <out> (room: <cap> + 1
 * bytes, the last for the caller's line end); returns its length. */
size_t moat__proxy_log(const moat__request_t *r, char *out, size_t cap);

/* whoami.c: answers MOAT_WHOAMI_PATH (the verdict, subject, serial, issuer and not after of this
 * connection's client certificate, and the protocol; text, or JSON for "Accept: application/json" /
 * "?format=json"). Returns 1 when <path> was that endpoint and r->resp is filled, else 0. */
#define MOAT_WHOAMI_PATH "/.well-known/moat/whoami"
int moat__whoami(moat__request_t *r, const moat_site_t *site, const char *path, moat_http_str_t query);
/* publish.c: answers the CA publication paths under /.well-known/moat/ (MOAT_PKI_PATH_* but OCSP): from
 * gen->pub on sites with ca_publish, 404 on the others. Returns 1 when <path> was one and r->resp is
 * filled. */
int moat__publish(moat__request_t *r, const moat_site_t *site, const char *path);
/* ocsp.c: answers an OCSP request on <site> (raw path, before normalisation). 1: r->resp is filled; 0:
 * not the responder's path or the site does not publish. */
int moat__ocsp_serve(moat__request_t *r, const moat_site_t *site);
/* True when <path> (raw) is the OCSP responder's. */
int moat__ocsp_path(moat_http_str_t path);

/* acme_route.c: the ACME server under /acme/ on sites with acme_server. */
/* The body an ACME request keeps (MOAT_ACME_BODY_MAX when <path> is under /acme/, else 0). */
size_t moat__acme_body_keep(moat_http_str_t path);
/* Answers <path> (normalised) on <site> when it is an ACME request: 0 when it is not; 1 when r->resp is
 * filled (the service's answer, or a refusal); 2 when the request was handed to the service and parked
 * (it is handled again when the answer comes). */
int moat__acme_route(moat__request_t *r, const moat_site_t *site, const char *path);
/* A request the server refuses with <status> before it is handled (413: a body over the limit): 1 when
 * it is an ACME request and r->resp is its problem document, else 0. */
int moat__acme_refuse(moat__request_t *r, int status);
/* The request's end: an ACME request still with the service is cancelled (its answer is dropped). */
void moat__acme_cancel(moat__request_t *r);
/* Worker side: takes the answers the service posted and handles their requests again. */
void moat__acme_answers(moat__worker_t *w);

#endif
