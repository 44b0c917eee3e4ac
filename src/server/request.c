/* Request handling glue: site choice (SNI, Host, 421), the https redirect, HSTS, static files, and the
 * access log. Parsing, paths, files and response heads come from http/. */
#include "server/request.h"
#include "core/x509name.h"

#include "acme/acme.h"

#include <openssl/bn.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WELL_KNOWN "/.well-known/moat/"

/* /.well-known/moat, with or without the slash, and what is under it: clients that do not trust moat's
 * root yet (or CRL and OCSP clients, which do not follow redirects) fetch it over plain http. */
static int well_known(moat_http_str_t path)
{
    size_t n = sizeof(WELL_KNOWN) - 2; /* without the slash */
    if (path.len < n || memcmp(path.p, WELL_KNOWN, n) != 0)
        return 0;
    return path.len == n || path.p[n] == '/' || path.p[n] == '?';
}

/* Copies a Host name (no port) into <out> without IPv6 brackets, NUL-terminated; 0 if too long/empty. */
static size_t host_copy(moat_http_str_t h, char *out, size_t outsz)
{
    const char *p = h.p;
    size_t n = h.len;
    if (n >= 2 && p[0] == '[' && p[n - 1] == ']')
        p++, n -= 2;
    if (n == 0 || n >= outsz)
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/* HSTS pins a name for every port; never for localhost or IP literals (browsers ignore it for IPs). */
static int hsts_allowed(const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (host[0] == '\0' || strcasecmp(host, "localhost") == 0)
        return 0;
    return inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1;
}

static unsigned https_port(const moat_site_t *site)
{
    return site->nlisten > 0 ? site->listen[0].port : 443;
}

size_t moat__request_body_read(moat__request_t *r, char *buf, size_t want)
{
    const moat_http_resp_t *resp = &r->resp;
    ssize_t n;
    if (want > r->file_left)
        want = (size_t)r->file_left;
    if (resp->fd < 0) {
        memcpy(buf, resp->body + r->file_off, want);
        n = (ssize_t)want;
    } else {
        do
            n = pread(resp->fd, buf, want, (off_t)r->file_off);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return 0;
    }
    r->file_left -= (uint64_t)n;
    r->file_off += (uint64_t)n;
    r->body_sent += (uint64_t)n;
    return (size_t)n;
}

size_t moat__request_body_keep(int post, moat_http_str_t path)
{
    if (!post)
        return 0;
    if (moat__ocsp_path(path))
        return MOAT_PKI_OCSP_MAX_REQUEST;
    return moat__acme_body_keep(path);
}

int moat__request_post_buf(moat__request_t *r, size_t keep)
{
    moat__worker_t *w = r->conn->w;
    if (r->post != NULL)
        return 0;
    r->post_big = keep > w->small.size;
    r->post = moat_bufpool_get(r->post_big ? &w->big : &w->small);
    r->post_cap = keep;
    r->post_len = 0;
    return r->post != NULL ? 0 : -1;
}

void moat__request_begin(moat__request_t *r, moat__conn_t *c, const moat__writer_t *out)
{
    r->conn = c;
    r->out = out;
    r->resp.fd = -1;
    r->resp.owned_body_ = NULL;
    r->resp_active = 0;
    r->head_ok = 0;
    r->ccert_denied = 0;
    r->crl_waited = 0;
    r->ccert = NULL;
    r->access = NULL;
    r->status = 0;
    r->file_left = r->file_off = r->body_sent = 0;
    r->post_len = r->post_cap = 0;
    r->post_big = 0;
    r->acme = NULL;
    r->stream = NULL;
    r->px = NULL;
    r->body_unread = 0;
    r->wnode.next = r->wnode.prev = NULL;
    moat_http_req_reset(&r->req);
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
}

void moat__request_end(moat__request_t *r)
{
    moat_list_remove(&r->wnode);
    moat__proxy_end(r);
    if (r->resp_active) {
        moat_http_resp_dispose(&r->resp);
        r->resp_active = 0;
    }
    moat__acme_cancel(r);
    moat_bufpool_put(r->post_big ? &r->conn->w->big : &r->conn->w->small, (void **)&r->post);
}

/* Sends what r->resp holds through the protocol's writer. */
static void respond(moat__request_t *r)
{
    r->status = r->resp.status;
    r->out->send(r);
}

/* Answers an http-01 validation request from the ACME client's table (1: answered, 200 or 404). */
static int acme_http01(moat__request_t *r, const moat_http_req_t *req, moat_http_resp_t *resp)
{
    static _Thread_local char body[256];
    const size_t pl = sizeof(MOAT_ACME_HTTP01_PREFIX) - 1;
    size_t n;

    if (req->path.len <= pl || memcmp(req->path.p, MOAT_ACME_HTTP01_PREFIX, pl) != 0)
        return 0;
    if (!moat_acme_http01_lookup(req->path.p + pl, req->path.len - pl, body, sizeof(body))) {
        moat_http_resp_init(resp, req, 404);
        moat_http_resp_error(resp, 404);
        respond(r);
        return 1;
    }
    n = strlen(body);
    moat_http_resp_init(resp, req, 200);
    resp->content_type = "application/octet-stream";
    resp->body = body;
    resp->content_length = n;
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store"); /* room: a fresh response */
    respond(r);
    return 1;
}

/* The site that answers <r>: chosen by SNI, else by Host among the listener's sites; NULL when the Host
 * names another site than the certificate was chosen for (421). <host> receives the Host name ("" if
 * none). */
static const moat_site_t *pick_site(moat__request_t *r, char *host, size_t hostsz)
{
    moat__conn_t *c = r->conn;
    const moat_http_req_t *req = &r->req;
    const moat_listener_t *l = c->wg->gen->bind_listener[c->bind];
    const moat_site_t *site = c->site, *named = NULL;

    host[0] = '\0';
    if (req->host_name.len > 0 && host_copy(req->host_name, host, hostsz) > 0 && l != NULL)
        named = moat_listener_find_site(l, host);
    if (!c->secure)
        return named != NULL ? named : site;
    if (c->sni_matched) {
        /* RFC 9110 §15.5.20: the certificate of this connection was chosen for another name. */
        if (req->host.len > 0 && !moat_site_matches_host(site, req->host.p, req->host.len))
            return NULL;
        return site;
    }
    return named != NULL ? named : site; /* no SNI (or an unknown name): the Host field picks */
}

int moat__request_proxied(moat__request_t *r)
{
    char host[256], stack[1024], *path = stack;
    size_t plen = 0, need = r->req.path.len + 16;
    const moat_site_t *site = pick_site(r, host, sizeof(host));
    const moat_location_t *loc = NULL;
    int st = 0;

    if (site == NULL || site->nlocations == 0)
        return 0;
    if (need > sizeof(stack) && (path = moat_malloc(need)) == NULL)
        return 0;
    if (moat_http_path_normalize(r->req.path.p, r->req.path.len, path, path == stack ? sizeof(stack) : need,
                                 &plen, NULL, &st) == 0)
        loc = moat_site_location_for_path(site, path);
    if (path != stack)
        moat_free(&path);
    return loc != NULL && loc->upstream != NULL;
}

static void handle(moat__request_t *r, int status, char *path, size_t pathsz)
{
    moat__conn_t *c = r->conn;
    moat_http_resp_t *resp = &r->resp;
    moat_http_req_t *req = &r->req;
    const moat_site_t *site;
    const moat__gen_site_t *gs;
    char host[256] = "";
    moat_http_str_t query = {NULL, 0};
    size_t plen = 0;
    int st = 0, routed;

    r->resp_active = 1;
    if (status != 0 && moat__acme_refuse(r, status)) {
        respond(r);
        return;
    }
    if (status != 0) {
        /* The stream is out of sync after a framing error: answer and close. */
        moat_http_resp_init(resp, NULL, status);
        moat_http_resp_error(resp, status);
        resp->keep_alive = 0;
        respond(r);
        return;
    }
    site = pick_site(r, host, sizeof(host));
    if (site == NULL) {
        moat_http_resp_init(resp, req, 421);
        moat_http_resp_error(resp, 421);
        respond(r);
        return;
    }
    c->site = site;
    gs = &c->wg->gen->sites[site->index];
    /* RFC 8555 §8.3: http-01 validation requests are answered on plain http, before any redirect. */
    if (!c->secure && acme_http01(r, req, resp))
        return;
    if (!c->secure && site->require_secure_channel && !well_known(req->path)) {
        moat_http_resp_init(resp, req, 301);
        if (moat_http_resp_redirect_https(resp, req, site->name, https_port(site)) != 0)
            moat_http_resp_error(resp, 400);
        respond(r);
        return;
    }
    /* DESIGN traps: OCSP GET requests carry base64 ('/', '+', '=') in the path: routed before normalising. */
    if (moat__ocsp_serve(r, site)) {
        respond(r);
        return;
    }
    if (moat_http_path_normalize(req->path.p, req->path.len, path, pathsz, &plen, &query, &st) != 0) {
        moat_http_resp_init(resp, req, st ? st : 400);
        moat_http_resp_error(resp, st ? st : 400);
        respond(r);
        return;
    }
    /* The client-certificate self check answers whatever the location asks (DESIGN "Client certificates"),
     * and the CA publication too: people fetch the root before they can have a certificate. */
    if (moat__whoami(r, site, path, query) || moat__publish(r, site, path)) {
        respond(r);
        return;
    }
    /* RFC 8555 §6.1: ACME is served over https only; what it answers needs no client certificate. */
    if (c->secure && (routed = moat__acme_route(r, site, path)) != 0) {
        if (routed == 1)
            respond(r);
        return;
    }
    if (gs->wants_ccert) {
        moat_ccert_t mode = moat_site_ccert_for_path(site, path);
        if (mode != MOAT_CCERT_OFF) {
            int pending = 0;
            const char *why = c->secure ? moat__ccert_verdict(c, &pending) : "none";
            if (why != NULL && mode == MOAT_CCERT_REQUIRED && pending && moat__request_wait_crl(r)) {
                /* The first fetch of a CRL this certificate needs is under way: refusing now would
                 * turn away the first visit of every new client. The request is handled again. */
                return;
            }
            r->ccert = why != NULL ? why : "ok";
            if (why != NULL && mode == MOAT_CCERT_REQUIRED) {
                /* DESIGN: never a bare 403.7: the page, a header and the log say why. */
                char page[2048], detail[1024], unchecked[512];
                size_t n;
                int which = strcmp(why, "revocation-unknown") == 0 &&
                            moat__ccert_unchecked(c, unchecked, sizeof(unchecked)) == 0;
                /* In words for the person, with the token kept for scripts (and the header). */
                snprintf(detail, sizeof(detail),
                         "A valid client certificate is required here: %s%s%s%s (reason: %s).",
                         moat__ccert_reason_text(why), which ? " (the certificate \"" : "",
                         which ? unchecked : "", which ? "\" has no CRL moat could check)" : "", why);
                moat_http_resp_init(resp, req, 403);
                moat_http_resp_error(resp, 403);
                n = moat_http_error_page_format(page, sizeof(page), 403, detail);
                if (n > 0) {
                    resp->body = page;
                    resp->content_length = n;
                }
                (void)moat_http_resp_add_header(resp, "X-Moat-Client-Cert", why); /* a fixed token */
                r->ccert_denied = 1;
                respond(r);
                return;
            }
        }
    }
    const char *loc_path, *refused;
    const moat_static_conf_t *sc = moat_site_static_for_path(site, path, &loc_path);
    int acc = moat_http_access_check(sc, (const struct sockaddr *)&c->peer, req, &refused);
    if (acc != 0) {
        r->access = refused; /* the access log says why, like the page and X-Moat-Access */
        moat_http_access_refuse(resp, req, sc, acc, refused);
        respond(r);
        return;
    }
    const moat_location_t *loc = site->nlocations > 0 ? moat_site_location_for_path(site, path) : NULL;
    if (loc != NULL && loc->upstream != NULL) {
        moat__proxy_start(r, site, loc);
        return;
    }
    /* Files chosen by Accept-Encoding (precompressed) are not for the cache, which ignores the field. */
    int cache = gs->has_root && sc->precompressed.n == 0;
    if (cache && moat__fcache_serve(r, site->index, path, plen)) {
        moat_http_static_headers(sc, resp);
    } else {
        (void)moat_http_static_serve(gs->has_root ? &gs->root : NULL, req, path, sc, loc_path, resp);
        if (cache)
            moat__fcache_store(r, site->index, path, plen);
    }
    if (c->secure && site->require_secure_channel && site->hsts_max_age > 0 &&
        hsts_allowed(host[0] ? host : site->name))
        resp->hsts_max_age = site->hsts_max_age;
    respond(r);
}

void moat__request_handle(moat__request_t *r, int status)
{
    char stack[MOAT_HTTP_DEFAULT_REQUEST_LINE_BYTES + 16], *path = stack;
    size_t need = r->req.path.len + 16;

    /* request_line_bytes may allow a longer path than the usual buffer holds: those take their own. */
    if (need > sizeof(stack) && (path = moat_malloc(need)) == NULL) {
        r->resp_active = 1;
        moat_http_resp_init(&r->resp, &r->req, 500);
        moat_http_resp_error(&r->resp, 500);
        respond(r);
        return;
    }
    handle(r, status, path, path == stack ? sizeof(stack) : need);
    if (path != stack)
        moat_free(&path);
}

/* ---- access log --------------------------------------------------------------------------------- */

void moat__access_flush(moat__worker_t *w)
{
    int fd = atomic_load(&w->srv->access_fd);
    size_t off = 0;
    while (fd >= 0 && off < w->alog_len) {
        ssize_t n = write(fd, w->alog + off, w->alog_len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    w->alog_len = 0;
    w->alog_flushed_ms = w->loop.now_ms;
}

static size_t put_escaped(char *out, size_t cap, const char *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return o;
}

static void access_log_line(moat__request_t *r);

void moat__access_log(moat__request_t *r)
{
    /* Asked for every response: without an access log, nothing is prepared (the line's buffers are
     * large and zeroed). */
    moat__metrics_request(r);
    if (atomic_load(&r->conn->w->srv->access_fd) >= 0)
        access_log_line(r);
}

static void access_log_line(moat__request_t *r)
{
    const moat__conn_t *c = r->conn;
    moat__worker_t *w = c->w;
    static _Thread_local time_t cached_sec;
    static _Thread_local char cached_time[32];
    char peer[INET6_ADDRSTRLEN + 8] = "-", target[1100] = "-", method[24] = "-", subject[420];
    const char *sni = NULL, *ver = "-", *cipher = "-";
    struct timespec now;
    time_t t;
    long long us;
    int n;

    t = time(NULL);
    if (t != cached_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(cached_time, sizeof(cached_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
        cached_sec = t;
    }
    moat__conn_peer_text(c, peer, sizeof(peer));
    subject[0] = '\0';
    if (r->ccert != NULL && c->ssl != NULL && SSL_get0_peer_certificate(c->ssl) != NULL) {
        /* who presented it: subject (escaped for the log line) and serial */
        X509 *peer_cert = SSL_get0_peer_certificate(c->ssl);
        char line[400];
        moat_x509_name_text(X509_get_subject_name(peer_cert), line, sizeof(line));
        put_escaped(subject, sizeof(subject), line, strlen(line));
        {
            char hex[MOAT_PKI_SERIAL_KEY_SIZE];
            size_t sl = strlen(subject);
            if (moat_pki_serial_key(X509_get0_serialNumber(peer_cert), hex) == 0 &&
                sl + 9 + strlen(hex) < sizeof(subject))
                snprintf(subject + sl, sizeof(subject) - sl, " serial=%s", hex);
        }
    }
    if (c->ssl != NULL) {
        sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
        ver = SSL_get_version(c->ssl);
        cipher = SSL_get_cipher_name(c->ssl);
    }
    if (r->head_ok) {
        put_escaped(method, sizeof(method), r->req.method.p, r->req.method.len);
        put_escaped(target, sizeof(target), r->req.target.p,
                    r->req.target.len > 1024 ? 1024 : r->req.target.len);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (long long)(now.tv_sec - r->t0.tv_sec) * 1000000 + (now.tv_nsec - r->t0.tv_nsec) / 1000;
    if (w->alog_len + 2048 > ACCESS_LOG_BUF)
        moat__access_flush(w);
    /* time client sni tls-version cipher protocol "method target" status body-bytes duration client-cert
     * [subject=...] [access=REASON] */
    n = snprintf(w->alog + w->alog_len, ACCESS_LOG_BUF - w->alog_len,
                 "%s %s %s %s %s %s \"%s %s\" %d%s %llu %lld.%03lldms ccert=%s%s%s%s%s\n", cached_time, peer,
                 sni != NULL ? sni : "-", ver ? ver : "-", cipher ? cipher : "-", r->out->proto, method,
                 target, r->status, r->ccert_denied ? ".7" : "", (unsigned long long)r->body_sent, us / 1000,
                 us % 1000, r->ccert != NULL ? r->ccert : "-", subject[0] ? " subject=" : "", subject,
                 r->access != NULL ? " access=" : "", r->access != NULL ? r->access : "");
    if (n > 0 && (size_t)n < ACCESS_LOG_BUF - w->alog_len) {
        w->alog_len += (size_t)n;
        if (r->px != NULL && w->alog[w->alog_len - 1] == '\n') {
            /* upstream=ADDR ustatus=N utime=T.TTTms [upstream_error=REASON], before the line end */
            size_t m = moat__proxy_log(r, w->alog + w->alog_len - 1, ACCESS_LOG_BUF - w->alog_len);
            w->alog_len += m;
            w->alog[w->alog_len - 1] = '\n';
        }
    }
}
