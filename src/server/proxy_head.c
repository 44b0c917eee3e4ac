/*
 * The fields the reverse proxy hands on, each way.
 *
 * To the server: the request line in origin form, Host as the client sent it, the client's fields but
 * the hop-by-hop ones (Connection and those it names, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade), Expect (moat answers it), Content-Length (moat frames the body), and
 * never Client-Cert, Client-Cert-Chain or any X-Moat-* field from the client; then Forwarded (RFC 7239)
 * and X-Forwarded-For/-Proto/-Host, replaced unless the peer is in trusted_proxies (then extended), the
 * verified client certificate as RFC 9440 Client-Cert / Client-Cert-Chain when the location asks, and
 * the body's framing.
 *
 * To the client: the server's fields but the hop-by-hop ones (the writer frames the body), with HSTS
 * added on sites that send it.
 */
#include "server/proxy_int.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>
#include <strings.h>

static int hop_by_hop(moat_http_str_t name)
{
    static const char *const names[] = {"connection", "keep-alive",        "proxy-connection", "te",
                                        "trailer",    "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(names); i++)
        if (moat_http_str_ieq(name, names[i]))
            return 1;
    return 0;
}

/* 1 when <name> is one of the tokens of a Connection value <v> (fields the sender marked hop-by-hop). */
static int named_by(moat_http_str_t v, moat_http_str_t name)
{
    size_t pos = 0, n = 0;
    while (pos <= v.len) {
        size_t s = pos, e;
        while (s < v.len && (v.p[s] == ' ' || v.p[s] == '\t' || v.p[s] == ','))
            s++;
        e = s;
        while (e < v.len && v.p[e] != ',' && v.p[e] != ' ' && v.p[e] != '\t')
            e++;
        if (e > s && e - s == name.len && strncasecmp(v.p + s, name.p, name.len) == 0)
            return 1;
        pos = e + 1;
        if (++n > 256)
            break;
    }
    return 0;
}

typedef struct out {
    char *p;
    size_t len, cap;
    int full;
} out_t;

static void put(out_t *o, const char *p, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_field(out_t *o, const char *name, moat_http_str_t v)
{
    puts_(o, name);
    put(o, ": ", 2);
    put(o, v.p, v.len);
    put(o, "\r\n", 2);
}

/* ":BASE64:" of <der> (an RFC 8941 byte sequence). */
static void put_bytes(out_t *o, const unsigned char *der, int len)
{
    size_t need = 4 * (((size_t)len + 2) / 3) + 3;
    if (len <= 0 || o->full || need > o->cap - o->len) {
        o->full = 1;
        return;
    }
    o->p[o->len++] = ':';
    o->len += (size_t)EVP_EncodeBlock((unsigned char *)o->p + o->len, der, len);
    o->p[o->len++] = ':';
}

static void put_cert(out_t *o, X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    put_bytes(o, der, len);
    OPENSSL_free(der);
}

/* RFC 9440: the certificate the client presented and the chain moat verified it with (without it). */
static void client_cert(out_t *o, moat__conn_t *c)
{
    X509 *leaf = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    STACK_OF(X509) * chain;
    int n;
    if (leaf == NULL)
        return;
    puts_(o, "Client-Cert: ");
    put_cert(o, leaf);
    put(o, "\r\n", 2);
    chain = SSL_get0_verified_chain(c->ssl);
    n = chain != NULL ? sk_X509_num(chain) : 0;
    if (n <= 1)
        return;
    puts_(o, "Client-Cert-Chain: ");
    for (int i = 1; i < n; i++) {
        if (i > 1)
            put(o, ", ", 2);
        put_cert(o, sk_X509_value(chain, i));
    }
    put(o, "\r\n", 2);
}

static int peer_trusted(const moat__conn_t *c)
{
    const moat_strlist_t *l = &c->wg->gen->cfg->trusted_proxies;
    for (size_t i = 0; i < l->n; i++) {
        moat_cidr_t cidr;
        if (moat_cidr_parse(l->v[i], &cidr) == 0 &&
            moat_cidr_contains(&cidr, (const struct sockaddr *)&c->peer))
            return 1;
    }
    return 0;
}

/* Joins every value of the field <name> of <req> with ", " (trusted proxies' lists). */
static void joined(out_t *o, const moat_http_req_t *req, const char *name, int *any)
{
    size_t from = 0;
    moat_http_str_t v;
    while (moat_http_req_find(req, name, &from, &v)) {
        if (*any)
            put(o, ", ", 2);
        put(o, v.p, v.len);
        *any = 1;
    }
}

int moat__proxy_head(moat__proxy_t *px)
{
    moat__request_t *r = px->r;
    moat__conn_t *c = r->conn;
    const moat_http_req_t *req = &r->req;
    out_t o = {px->out, 0, c->w->big.size - 64, 0};
    char ip[INET6_ADDRSTRLEN] = "unknown";
    moat_http_str_t conn_v = {NULL, 0}, upgrade_v = {NULL, 0}, v, name;
    int trusted = peer_trusted(c), any, ws = 0;
    size_t from = 0;

    if (c->peer.family == AF_INET)
        inet_ntop(AF_INET, &c->peer.v4.sin_addr, ip, sizeof(ip));
    else if (c->peer.family == AF_INET6)
        inet_ntop(AF_INET6, &c->peer.v6.sin6_addr, ip, sizeof(ip));
    (void)moat_http_req_find(req, "connection", &from, &conn_v);
    from = 0;
    /* WebSocket (RFC 6455) over HTTP/1.1: GET with Connection: upgrade and Upgrade: websocket */
    if (r->stream == NULL && req->method_id == MOAT_HTTP_GET &&
        moat_http_req_find(req, "upgrade", &from, &upgrade_v) && conn_v.len > 0 &&
        named_by(conn_v, (moat_http_str_t){"upgrade", 7}) &&
        named_by(upgrade_v, (moat_http_str_t){"websocket", 9}))
        ws = 1;
    put(&o, req->method.p, req->method.len);
    put(&o, " ", 1);
    if (req->path.len == 0 || req->path.p[0] != '/')
        put(&o, "/", 1);
    put(&o, req->path.p, req->path.len);
    puts_(&o, " HTTP/1.1\r\n");
    if (req->host.len > 0)
        put_field(&o, "Host", req->host);
    for (size_t i = 0; i < req->n_headers; i++) {
        moat_http_req_header(req, i, &name, &v);
        if (hop_by_hop(name) || moat_http_str_ieq(name, "host") ||
            moat_http_str_ieq(name, "content-length") || moat_http_str_ieq(name, "expect") ||
            moat_http_str_ieq(name, "client-cert") || moat_http_str_ieq(name, "client-cert-chain") ||
            moat_http_str_ieq(name, "forwarded") || moat_http_str_ieq(name, "x-forwarded-for") ||
            moat_http_str_ieq(name, "x-forwarded-proto") || moat_http_str_ieq(name, "x-forwarded-host") ||
            (name.len >= 7 && strncasecmp(name.p, "x-moat-", 7) == 0) ||
            (conn_v.len > 0 && named_by(conn_v, name)))
            continue;
        put(&o, name.p, name.len);
        put(&o, ": ", 2);
        put(&o, v.p, v.len);
        put(&o, "\r\n", 2);
    }
    /* X-Forwarded-*: a trusted proxy's values are kept (the client's address appended); others replaced */
    puts_(&o, "X-Forwarded-For: ");
    any = 0;
    if (trusted)
        joined(&o, req, "x-forwarded-for", &any);
    if (any)
        put(&o, ", ", 2);
    puts_(&o, ip);
    put(&o, "\r\n", 2);
    from = 0;
    if (trusted && moat_http_req_find(req, "x-forwarded-proto", &from, &v))
        put_field(&o, "X-Forwarded-Proto", v);
    else
        puts_(&o, c->secure ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    from = 0;
    if (trusted && moat_http_req_find(req, "x-forwarded-host", &from, &v))
        put_field(&o, "X-Forwarded-Host", v);
    else if (req->host.len > 0)
        put_field(&o, "X-Forwarded-Host", req->host);
    puts_(&o, "Forwarded: ");
    any = 0;
    if (trusted)
        joined(&o, req, "forwarded", &any);
    if (any)
        put(&o, ", ", 2);
    puts_(&o, c->peer.family == AF_INET6 ? "for=\"[" : "for=");
    puts_(&o, ip);
    puts_(&o, c->peer.family == AF_INET6 ? "]\"" : "");
    if (req->host.len > 0) {
        puts_(&o, ";host=\"");
        put(&o, req->host.p, req->host.len); /* a Host value holds no quote or backslash (parse.c) */
        puts_(&o, "\"");
    }
    puts_(&o, c->secure ? ";proto=https\r\n" : ";proto=http\r\n");
    if (px->loc->forward_client_cert == MOAT_FWD_CERT_RFC9440 && r->ccert != NULL &&
        strcmp(r->ccert, "ok") == 0)
        client_cert(&o, c);
    if (ws) {
        puts_(&o, "Connection: Upgrade\r\n");
        put_field(&o, "Upgrade", upgrade_v);
        px->upgrade = 1;
    }
    if (req->body_kind == MOAT_HTTP_BODY_LENGTH) {
        char cl[48];
        snprintf(cl, sizeof(cl), "Content-Length: %llu\r\n", (unsigned long long)req->content_length);
        puts_(&o, cl);
    } else if (req->body_kind == MOAT_HTTP_BODY_CHUNKED) {
        puts_(&o, "Transfer-Encoding: chunked\r\n");
        px->chunked_out = 1;
    }
    put(&o, "\r\n", 2);
    if (o.full)
        return -1;
    px->olen = o.len;
    px->opos = 0;
    return 0;
}

size_t moat__proxy_resp_fields(moat__proxy_t *px, moat__px_field_t *f, size_t cap)
{
    static _Thread_local char hsts[48];
    const moat_http_uhead_t *h = px->uh;
    const moat__conn_t *c = px->r->conn;
    moat_http_str_t conn_v = {NULL, 0}, name, v;
    size_t n = 0;
    int has_hsts = 0;

    for (size_t i = 0; i < h->n_headers; i++) {
        moat_http_uhead_field(h, px->in, i, &name, &v);
        if (moat_http_str_ieq(name, "connection"))
            conn_v = v;
    }
    for (size_t i = 0; i < h->n_headers && n + 3 < cap; i++) {
        moat_http_uhead_field(h, px->in, i, &name, &v);
        if (moat_http_str_ieq(name, "content-length")) {
            if (px->head_request) {
                uint64_t x = 0;
                for (size_t k = 0; k < v.len && v.p[k] >= '0' && v.p[k] <= '9' && x < (1ull << 48); k++)
                    x = x * 10 + (uint64_t)(v.p[k] - '0');
                px->head_cl = (int64_t)x;
            }
            continue;
        }
        if (h->status == 101 && moat_http_str_ieq(name, "upgrade")) {
            f[n++] = (moat__px_field_t){name, v};
            continue;
        }
        if (hop_by_hop(name) || (conn_v.len > 0 && named_by(conn_v, name)))
            continue;
        if (moat_http_str_ieq(name, "strict-transport-security"))
            has_hsts = 1;
        f[n++] = (moat__px_field_t){name, v};
    }
    if (h->status == 101)
        f[n++] = (moat__px_field_t){{"Connection", 10}, {"Upgrade", 7}};
    if (!has_hsts && c->secure && px->site->require_secure_channel && px->site->hsts_max_age > 0) {
        int k = snprintf(hsts, sizeof(hsts), "max-age=%ld", px->site->hsts_max_age);
        f[n++] = (moat__px_field_t){{"Strict-Transport-Security", 25}, {hsts, (size_t)k}};
    }
    return n;
}
