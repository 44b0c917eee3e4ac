/* Request handling glue: site choice (SNI, Host, 421), the https redirect, HSTS, static files, and the
 * access log. Parsing, paths, files and response heads come from http/. */
#include "server/server_int.h"

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

static void start_send(moat__conn_t *c, size_t len)
{
    c->opos = 0;
    c->olen = len;
    c->status = c->rs->resp.status;
    c->state = CONN_SEND;
    c->deadline_ms = c->w->loop.now_ms + (uint64_t)c->wg->gen->cfg->limits.idle_timeout_s * 1000u;
    moat_list_push_tail(&c->w->q_idle, &c->tnode);
}

size_t moat__conn_body_read(moat__conn_t *c, char *buf, size_t want)
{
    const moat_http_resp_t *resp = &c->rs->resp;
    ssize_t n;
    if (want > c->file_left)
        want = (size_t)c->file_left;
    if (resp->fd < 0) {
        memcpy(buf, resp->body + c->file_off, want);
        n = (ssize_t)want;
    } else {
        do
            n = pread(resp->fd, buf, want, (off_t)c->file_off);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return 0;
    }
    c->file_left -= (uint64_t)n;
    c->file_off += (uint64_t)n;
    c->body_sent += (uint64_t)n;
    return (size_t)n;
}

static void send_resp(moat__conn_t *c)
{
    moat_http_resp_t *resp = &c->rs->resp;
    size_t cap, len = 0;
    int has_body = !resp->head_only && resp->content_length > 0 && (resp->fd >= 0 || resp->body != NULL);
    int bulk = has_body && resp->content_length > c->w->small.size / 2;

    if (moat__conn_out_bufs(c, bulk) != 0) {
        c->state = CONN_CLOSING;
        return;
    }
    cap = c->ocap;
    c->file_left = 0;

    if (resp->body != NULL && moat_http_resp_write(resp, c->obuf, cap, &len) == 0) {
        if (!resp->head_only)
            c->body_sent += resp->content_length;
        start_send(c, len);
        return;
    }
    if (moat_http_resp_write_head(resp, c->obuf, cap, &len) != 0) {
        moat_http_resp_error(resp, 500);
        resp->keep_alive = 0;
        if (moat_http_resp_write(resp, c->obuf, cap, &len) != 0)
            len = 0;
        start_send(c, len);
        return;
    }
    if (has_body) {
        /* The head and the first part of the body leave in one TLS record and one send; an in-memory
         * body larger than the buffer (a long CRL) streams on like a file. */
        c->file_left = resp->content_length;
        c->file_off = resp->fd >= 0 ? resp->file_offset : 0;
        len += moat__conn_body_read(c, c->obuf + len, cap - len);
    }
    start_send(c, len);
}

/* Answers an http-01 validation request from the ACME client's table (1: answered, 200 or 404). */
static int acme_http01(moat__conn_t *c, const moat_http_req_t *req, moat_http_resp_t *resp)
{
    static _Thread_local char body[256];
    const size_t pl = sizeof(MOAT_ACME_HTTP01_PREFIX) - 1;
    size_t n;

    if (req->path.len <= pl || memcmp(req->path.p, MOAT_ACME_HTTP01_PREFIX, pl) != 0)
        return 0;
    if (!moat_acme_http01_lookup(req->path.p + pl, req->path.len - pl, body, sizeof(body))) {
        moat_http_resp_init(resp, req, 404);
        moat_http_resp_error(resp, 404);
        send_resp(c);
        return 1;
    }
    n = strlen(body);
    moat_http_resp_init(resp, req, 200);
    resp->content_type = "application/octet-stream";
    resp->body = body;
    resp->content_length = n;
    (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store"); /* room: a fresh response */
    send_resp(c);
    return 1;
}

void moat__request_handle(moat__conn_t *c, int status)
{
    moat_http_resp_t *resp = &c->rs->resp;
    moat_http_req_t *req = &c->rs->req;
    const moat_listener_t *l = c->wg->gen->bind_listener[c->bind];
    const moat_site_t *site = c->site, *named = NULL;
    const moat__gen_site_t *gs;
    char host[256] = "";
    char path[MOAT_HTTP_DEFAULT_REQUEST_LINE_BYTES + 16];
    moat_http_str_t query = {NULL, 0};
    size_t plen = 0;
    int st = 0;

    c->resp_active = 1;
    if (status != 0) {
        /* The stream is out of sync after a framing error: answer and close. */
        moat_http_resp_init(resp, NULL, status);
        moat_http_resp_error(resp, status);
        resp->keep_alive = 0;
        send_resp(c);
        return;
    }
    if (req->host_name.len > 0 && host_copy(req->host_name, host, sizeof(host)) > 0 && l != NULL)
        named = moat_listener_find_site(l, host);
    if (!c->secure) {
        site = named != NULL ? named : site;
    } else if (c->sni_matched) {
        /* RFC 9110 §15.5.20: the certificate of this connection was chosen for another name. */
        if (req->host.len > 0 && !moat_site_matches_host(site, req->host.p, req->host.len))
            site = NULL;
    } else if (named != NULL) {
        site = named; /* no SNI (or an unknown name): the Host field picks among this listener's sites */
    }
    if (site == NULL) {
        moat_http_resp_init(resp, req, 421);
        moat_http_resp_error(resp, 421);
        send_resp(c);
        return;
    }
    c->site = site;
    gs = &c->wg->gen->sites[site->index];
    /* RFC 8555 §8.3: http-01 validation requests are answered on plain http, before any redirect. */
    if (!c->secure && acme_http01(c, req, resp))
        return;
    if (!c->secure && site->require_secure_channel && !well_known(req->path)) {
        moat_http_resp_init(resp, req, 301);
        if (moat_http_resp_redirect_https(resp, req, site->name, https_port(site)) != 0)
            moat_http_resp_error(resp, 400);
        send_resp(c);
        return;
    }
    /* DESIGN traps: OCSP GET requests carry base64 ('/', '+', '=') in the path: routed before normalising. */
    if (moat__ocsp_serve(c, site)) {
        send_resp(c);
        return;
    }
    if (moat_http_path_normalize(req->path.p, req->path.len, path, sizeof(path), &plen, &query, &st) != 0) {
        moat_http_resp_init(resp, req, st ? st : 400);
        moat_http_resp_error(resp, st ? st : 400);
        send_resp(c);
        return;
    }
    /* The client-certificate self check answers whatever the location asks (DESIGN "Client certificates"),
     * and the CA publication too: people fetch the root before they can have a certificate. */
    if (moat__whoami(c, site, path, query) || moat__publish(c, site, path)) {
        send_resp(c);
        return;
    }
    if (gs->wants_ccert) {
        moat_ccert_t mode = moat_site_ccert_for_path(site, path);
        if (mode != MOAT_CCERT_OFF) {
            int pending = 0;
            const char *why = c->secure ? moat__ccert_verdict(c, &pending) : "none";
            if (why != NULL && mode == MOAT_CCERT_REQUIRED && pending && moat__conn_wait_crl(c)) {
                /* The first fetch of a CRL this certificate needs is under way: refusing now would
                 * turn away the first visit of every new client. The request is handled again. */
                return;
            }
            c->ccert = why != NULL ? why : "ok";
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
                c->ccert_denied = 1;
                send_resp(c);
                return;
            }
        }
    }
    const char *loc_path, *refused;
    const moat_static_conf_t *sc = moat_site_static_for_path(site, path, &loc_path);
    int acc = moat_http_access_check(sc, (const struct sockaddr *)&c->peer, req, &refused);
    if (acc != 0) {
        moat_http_access_refuse(resp, req, sc, acc, refused);
        send_resp(c);
        return;
    }
    /* Files chosen by Accept-Encoding (precompressed) are not for the cache, which ignores the field. */
    int cache = gs->has_root && sc->precompressed.n == 0;
    if (cache && moat__fcache_serve(c, site->index, path, plen)) {
        moat_http_static_headers(sc, resp);
    } else {
        (void)moat_http_static_serve(gs->has_root ? &gs->root : NULL, req, path, sc, loc_path, resp);
        if (cache)
            moat__fcache_store(c, site->index, path, plen);
    }
    if (c->secure && site->require_secure_channel && site->hsts_max_age > 0 &&
        hsts_allowed(host[0] ? host : site->name))
        resp->hsts_max_age = site->hsts_max_age;
    send_resp(c);
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

void moat__access_log(moat__conn_t *c)
{
    moat__worker_t *w = c->w;
    static _Thread_local time_t cached_sec;
    static _Thread_local char cached_time[32];
    char peer[INET6_ADDRSTRLEN + 8] = "-", target[1100] = "-", method[24] = "-", subject[420];
    const char *sni = NULL, *ver = "-", *cipher = "-";
    struct timespec now;
    time_t t;
    long long us;
    int n;

    if (atomic_load(&w->srv->access_fd) < 0)
        return;
    t = time(NULL);
    if (t != cached_sec) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(cached_time, sizeof(cached_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
        cached_sec = t;
    }
    if (c->peer.family == AF_INET)
        inet_ntop(AF_INET, &c->peer.v4.sin_addr, peer, sizeof(peer));
    else if (c->peer.family == AF_INET6)
        inet_ntop(AF_INET6, &c->peer.v6.sin6_addr, peer, sizeof(peer));
    subject[0] = '\0';
    if (c->ccert != NULL && c->ssl != NULL && SSL_get0_peer_certificate(c->ssl) != NULL) {
        /* who presented it: subject (RFC 2253, escaped) and serial */
        X509 *peer_cert = SSL_get0_peer_certificate(c->ssl);
        char line[400];
        BIO *b = BIO_new(BIO_s_mem());
        if (b != NULL) {
            int n2;
            X509_NAME_print_ex(b, X509_get_subject_name(peer_cert), 0, XN_FLAG_RFC2253);
            n2 = BIO_read(b, line, sizeof(line) - 1);
            line[n2 > 0 ? n2 : 0] = '\0';
            BIO_free(b);
            put_escaped(subject, sizeof(subject), line, strlen(line));
        }
        {
            BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer_cert), NULL);
            char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
            size_t sl = strlen(subject);
            if (hex != NULL && sl + 9 + strlen(hex) < sizeof(subject))
                snprintf(subject + sl, sizeof(subject) - sl, " serial=%s", hex);
            OPENSSL_free(hex);
            BN_free(bn);
        }
    }
    if (c->ssl != NULL) {
        sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
        ver = SSL_get_version(c->ssl);
        cipher = SSL_get_cipher_name(c->ssl);
    }
    if (c->head_ok) {
        put_escaped(method, sizeof(method), c->rs->req.method.p, c->rs->req.method.len);
        put_escaped(target, sizeof(target), c->rs->req.target.p,
                    c->rs->req.target.len > 1024 ? 1024 : c->rs->req.target.len);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (long long)(now.tv_sec - c->req_t0.tv_sec) * 1000000 + (now.tv_nsec - c->req_t0.tv_nsec) / 1000;
    if (w->alog_len + 2048 > ACCESS_LOG_BUF)
        moat__access_flush(w);
    /* time client sni tls-version cipher "method target" status body-bytes duration client-cert */
    n = snprintf(w->alog + w->alog_len, ACCESS_LOG_BUF - w->alog_len,
                 "%s %s %s %s %s \"%s %s\" %d%s %llu %lld.%03lldms ccert=%s%s%s\n", cached_time, peer,
                 sni != NULL ? sni : "-", ver ? ver : "-", cipher ? cipher : "-", method, target, c->status,
                 c->ccert_denied ? ".7" : "", (unsigned long long)c->body_sent, us / 1000, us % 1000,
                 c->ccert != NULL ? c->ccert : "-", subject[0] ? " subject=" : "", subject);
    if (n > 0 && (size_t)n < ACCESS_LOG_BUF - w->alog_len)
        w->alog_len += (size_t)n;
}
