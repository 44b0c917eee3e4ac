/*
 * The ACME server in moat serve: requests under /acme/ on a site with acme_server are handed to the ACME
 * service (acme/acme_server_service.c), whose threads do the store transactions, the signing and the
 * validations. The request is parked meanwhile (the connection, or the HTTP/2 stream, waits; the worker
 * goes on with the others); the service posts the answer back to the worker, which handles the request
 * again and sends it. A request whose connection or stream goes first is cancelled: its answer, when it
 * comes, is dropped.
 *
 * Every refusal, the server's own ones too (a body over MOAT_ACME_BODY_MAX, a full queue), is a problem
 * document (RFC 7807 with the RFC 8555 types).
 */
#include "server/request.h"

#include "acme/acme.h"

#include <stdio.h>
#include <string.h>

#define ACME_PREFIX "/acme/"
/* What a client is told to wait when the service's queue is full. */
#define ACME_BUSY_RETRY_S 2

/* One request with the service: the job and what it borrows, owned here, so that it outlives the
 * request it came from when that one is cancelled. */
struct moat__acme_call {
    moat_acme_job_t job;
    moat__worker_t *w;
    moat__request_t *r; /* NULL once the request went (cancelled): the answer is dropped */
    moat__wgen_t *wg;   /* reference: job.req.conf lives in its config */
    int done;           /* the answer is in job.resp */
    char retry_after[24];
    struct moat__acme_call *next; /* in w->acme_done */
    char strings[];               /* method, path, host, content type, body */
};

static int acme_path(moat_http_str_t path)
{
    const size_t n = sizeof(ACME_PREFIX) - 1;
    return path.len >= n && memcmp(path.p, ACME_PREFIX, n) == 0;
}

size_t moat__acme_body_keep(moat_http_str_t path)
{
    return acme_path(path) ? MOAT_ACME_BODY_MAX : 0;
}

/* Sets r->resp to the problem document <type>/<status>/<detail> (a thread-local body: it is copied or
 * sent before this worker handles another request). */
static void problem(moat__request_t *r, moat_acme_prob_type_t type, int status, long retry_after,
                    const char *detail)
{
    static _Thread_local char body[512], retry[24];
    moat_acme_problem_t p = {0};
    moat_http_resp_t *resp = &r->resp;
    json_t *doc;
    char *text;

    (void)moat_acme_problem_set(&p, type, "%s", detail);
    p.status = status;
    doc = moat_acme_problem_json(&p);
    text = doc != NULL ? moat_acme_json_dump(doc) : NULL;
    json_decref(doc);
    moat_http_resp_init(resp, &r->req, status);
    if (status == 413)
        moat_http_resp_error(resp, 413); /* the body was not read to its end: the connection closes */
    if (text != NULL && strlen(text) < sizeof(body)) {
        memcpy(body, text, strlen(text) + 1);
        resp->body = body;
        resp->content_length = strlen(body);
        resp->content_type = "application/problem+json";
    }
    moat_free(&text);
    if (retry_after >= 0) {
        snprintf(retry, sizeof(retry), "%ld", retry_after);
        (void)moat_http_resp_add_header(resp, "Retry-After", retry);
    }
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store");
}

int moat__acme_refuse(moat__request_t *r, int status)
{
    char detail[160];
    if (status != 413 || !r->head_ok || !acme_path(r->req.path))
        return 0;
    snprintf(detail, sizeof(detail), "the request body is larger than the %d bytes an ACME request may have",
             MOAT_ACME_BODY_MAX);
    r->resp_active = 1;
    problem(r, MOAT_ACME_PROB_MALFORMED, 413, -1, detail);
    return 1;
}

/* Runs on a service thread: the answer goes back to the worker that carries the request. */
static void on_done(moat_acme_job_t *job)
{
    moat__acme_call_t *call = (moat__acme_call_t *)job;
    moat__worker_t *w = call->w;
    pthread_mutex_lock(&w->acme_lock);
    call->next = w->acme_done;
    w->acme_done = call;
    pthread_mutex_unlock(&w->acme_lock);
    moat_loop_wake(&w->loop);
}

static void call_free(moat__acme_call_t *call)
{
    moat_acme_response_dispose(&call->job.resp);
    moat__wgen_release(call->wg);
    moat_free(&call);
}

/* Copies <s> to *pp and moves *pp on past its NUL. */
static const char *put(char **pp, const char *s, size_t n)
{
    char *d = *pp;
    memcpy(d, s, n);
    d[n] = '\0';
    *pp += n + 1;
    return d;
}

/* Hands <r> to the service. 0: parked; -1: the queue is full or memory ran out (r->resp says so). */
static int submit(moat__request_t *r, const moat_site_t *site, const char *path)
{
    moat__conn_t *c = r->conn;
    moat__worker_t *w = c->w;
    moat_http_str_t ctype = {NULL, 0};
    size_t from = 0, plen = strlen(path);
    moat__acme_call_t *call;
    char *p;

    (void)moat_http_req_find(&r->req, "Content-Type", &from, &ctype);
    call = moat_calloc(1, sizeof(*call) + r->req.method.len + plen + r->req.host.len + ctype.len +
                              r->post_len + 5);
    if (call == NULL) {
        problem(r, MOAT_ACME_PROB_SERVER_INTERNAL, 503, ACME_BUSY_RETRY_S, "the server is out of memory");
        return -1;
    }
    p = call->strings;
    call->job.req.method = put(&p, r->req.method.p, r->req.method.len);
    call->job.req.path = put(&p, path, plen);
    call->job.req.host = put(&p, r->req.host.p, r->req.host.len);
    call->job.req.content_type = ctype.p != NULL ? put(&p, ctype.p, ctype.len) : NULL;
    if (r->post != NULL) {
        call->job.req.body = put(&p, r->post, r->post_len);
        call->job.req.body_len = r->post_len;
    }
    call->job.req.conf = &site->acme_server;
    call->job.on_done = on_done;
    call->w = w;
    call->r = r;
    call->wg = c->wg;
    c->wg->refs++;
    if (w->srv->acme_svc == NULL || moat_acme_service_submit(w->srv->acme_svc, &call->job) != 0) {
        call_free(call);
        problem(r, MOAT_ACME_PROB_SERVER_INTERNAL, 503, ACME_BUSY_RETRY_S,
                "the ACME service is busy (its queue is full); retry after the time Retry-After gives");
        return -1;
    }
    r->acme = call;
    return 0;
}

/* Sets r->resp to the service's answer in r->acme. */
static void answer(moat__request_t *r)
{
    moat__acme_call_t *call = r->acme;
    moat_acme_response_t *a = &call->job.resp;
    moat_http_resp_t *resp = &r->resp;

    /* The body was read to its end: a refusal keeps the connection (badNonce is a 400 clients retry). */
    moat_http_resp_init(resp, &r->req, a->status > 0 ? a->status : 500);
    if (a->status == 0) {
        problem(r, MOAT_ACME_PROB_SERVER_INTERNAL, 500, -1, "the ACME service gave no answer");
        return;
    }
    resp->body = a->body;
    resp->content_length = a->body != NULL ? a->body_len : 0;
    resp->content_type = a->body != NULL ? a->content_type : NULL;
    if (a->location[0] != '\0')
        resp->location[0] = (moat_http_str_t){a->location, strlen(a->location)};
    for (size_t i = 0; i < a->nlinks; i++)
        (void)moat_http_resp_add_header(resp, "Link", a->link[i]);
    if (a->nonce[0] != '\0')
        (void)moat_http_resp_add_header(resp, "Replay-Nonce", a->nonce);
    if (a->retry_after >= 0) {
        snprintf(call->retry_after, sizeof(call->retry_after), "%ld", a->retry_after);
        (void)moat_http_resp_add_header(resp, "Retry-After", call->retry_after);
    }
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store");
}

int moat__acme_route(moat__request_t *r, const moat_site_t *site, const char *path)
{
    moat_http_str_t p = {path, strlen(path)};
    if (site->acme_server.allow.n == 0 || !acme_path(p))
        return 0;
    if (r->acme != NULL && r->acme->done) {
        answer(r);
        return 1;
    }
    if (submit(r, site, path) != 0)
        return 1;
    r->resp_active = 0; /* nothing answered yet: handled again when the answer comes */
    r->out->park(r);
    return 2;
}

void moat__acme_cancel(moat__request_t *r)
{
    moat__acme_call_t *call = r->acme;
    if (call == NULL)
        return;
    r->acme = NULL;
    if (call->done)
        call_free(call); /* answered (or answering): the service is done with it */
    else
        call->r = NULL; /* still with the service: freed when its answer comes */
}

void moat__acme_answers(moat__worker_t *w)
{
    moat__acme_call_t *list;
    pthread_mutex_lock(&w->acme_lock);
    list = w->acme_done;
    w->acme_done = NULL;
    pthread_mutex_unlock(&w->acme_lock);
    while (list != NULL) {
        moat__acme_call_t *call = list;
        list = call->next;
        call->done = 1;
        if (call->r == NULL)
            call_free(call);
        else
            call->r->out->resume(call->r);
    }
}
