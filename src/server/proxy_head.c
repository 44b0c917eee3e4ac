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

/* The fields moat decides on, each way: one look at the name's length (and its letters when that
 * matches) per field. */
enum {
    F_OTHER,
    F_HOP,        /* hop-by-hop (RFC 9110 7.6.1, and the obsolete ones): never handed on */
    F_CONNECTION, /* hop-by-hop, and names more of them */
    F_UPGRADE,    /* hop-by-hop, but a 101's is handed on */
    F_CLIENT,     /* set by moat on the request: never taken from the client (Host, framing, RFC 9440,
                     Forwarded, X-Forwarded-*) */
    F_LENGTH,     /* Content-Length: moat frames the body */
    F_HSTS,
};

static int field_kind(moat_http_str_t name)
{
    static const struct {
        const char *name;
        unsigned char len, kind;
    } fields[] = {
        {"connection", 10, F_CONNECTION},
        {"keep-alive", 10, F_HOP},
        {"proxy-connection", 16, F_HOP},
        {"te", 2, F_HOP},
        {"trailer", 7, F_HOP},
        {"transfer-encoding", 17, F_HOP},
        {"upgrade", 7, F_UPGRADE},
        {"content-length", 14, F_LENGTH},
        {"host", 4, F_CLIENT},
        {"expect", 6, F_CLIENT},
        {"client-cert", 11, F_CLIENT},
        {"client-cert-chain", 17, F_CLIENT},
        {"forwarded", 9, F_CLIENT},
        {"x-forwarded-for", 15, F_CLIENT},
        {"x-forwarded-proto", 17, F_CLIENT},
        {"x-forwarded-host", 16, F_CLIENT},
        {"strict-transport-security", 25, F_HSTS},
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(fields); i++)
        if (fields[i].len == name.len && strncasecmp(fields[i].name, name.p, name.len) == 0)
            return fields[i].kind;
    return F_OTHER;
}

/* The next token of a Connection value <v> from *pos on (256 at most): 1 and <tok>, or 0 at the end. */
static int next_token(moat_http_str_t v, size_t *pos, unsigned *n, moat_http_str_t *tok)
{
    while (*pos <= v.len && (*n)++ < 256) {
        size_t s = *pos, e;
        while (s < v.len && (v.p[s] == ' ' || v.p[s] == '\t' || v.p[s] == ','))
            s++;
        e = s;
        while (e < v.len && v.p[e] != ',' && v.p[e] != ' ' && v.p[e] != '\t')
            e++;
        *pos = e + 1;
        if (e > s) {
            *tok = (moat_http_str_t){v.p + s, e - s};
            return 1;
        }
    }
    return 0;
}

/* 1 when <name> is one of the tokens of a Connection value <v> (fields the sender marked hop-by-hop). */
static int named_by(moat_http_str_t v, moat_http_str_t name)
{
    size_t pos = 0;
    unsigned n = 0;
    moat_http_str_t tok;
    while (next_token(v, &pos, &n, &tok))
        if (tok.len == name.len && strncasecmp(tok.p, name.p, name.len) == 0)
            return 1;
    return 0;
}

/* 1 when a Connection value names a field besides Keep-Alive (hop-by-hop anyway): "keep-alive", the usual
 * value of an HTTP/1.1 server, then costs no look per field. */
static int names_more(moat_http_str_t v)
{
    size_t pos = 0;
    unsigned n = 0;
    moat_http_str_t tok;
    while (next_token(v, &pos, &n, &tok))
        if (tok.len != 10 || strncasecmp(tok.p, "keep-alive", 10) != 0)
            return 1;
    return 0;
}

static void put_field(moat_http_out_t *o, const char *name, moat_http_str_t v)
{
    moat_http_out_puts(o, name);
    moat_http_out_put(o, ": ", 2);
    moat_http_out_put(o, v.p, v.len);
    moat_http_out_put(o, "\r\n", 2);
}

/* ":BASE64:" of <der> (an RFC 8941 byte sequence). */
static void put_bytes(moat_http_out_t *o, const unsigned char *der, int len)
{
    size_t need = 4 * (((size_t)len + 2) / 3) + 3;
    if (len <= 0 || o->full || need > o->cap - o->n) {
        o->full = 1;
        return;
    }
    o->p[o->n++] = ':';
    o->n += (size_t)EVP_EncodeBlock((unsigned char *)o->p + o->n, der, len);
    o->p[o->n++] = ':';
}

static void put_cert(moat_http_out_t *o, X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    put_bytes(o, der, len);
    OPENSSL_free(der);
}

/* RFC 9440: the certificate the client presented and the chain moat verified it with (without it). */
static void client_cert(moat_http_out_t *o, moat__conn_t *c)
{
    X509 *leaf = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    STACK_OF(X509) * chain;
    int n;
    if (leaf == NULL)
        return;
    moat_http_out_puts(o, "Client-Cert: ");
    put_cert(o, leaf);
    moat_http_out_put(o, "\r\n", 2);
    chain = SSL_get0_verified_chain(c->ssl);
    n = chain != NULL ? sk_X509_num(chain) : 0;
    if (n <= 1)
        return;
    moat_http_out_puts(o, "Client-Cert-Chain: ");
    for (int i = 1; i < n; i++) {
        if (i > 1)
            moat_http_out_put(o, ", ", 2);
        put_cert(o, sk_X509_value(chain, i));
    }
    moat_http_out_put(o, "\r\n", 2);
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

/* The start of a list field moat extends with its own element: "<name>: ", then from a trusted proxy
 * every value <req> has of the field (lower-case <lc>), each followed by ", ". */
static void list_start(moat_http_out_t *o, const moat_http_req_t *req, int trusted, const char *name,
                       const char *lc)
{
    size_t from = 0;
    moat_http_str_t v;
    moat_http_out_puts(o, name);
    moat_http_out_put(o, ": ", 2);
    while (trusted && moat_http_req_find(req, lc, &from, &v)) {
        moat_http_out_put(o, v.p, v.len);
        moat_http_out_put(o, ", ", 2);
    }
}

int moat__proxy_head(moat__proxy_t *px, char *buf, size_t cap, size_t *len)
{
    moat__request_t *r = px->r;
    moat__conn_t *c = r->conn;
    const moat_http_req_t *req = &r->req;
    moat_http_out_t o = {buf, 0, cap, 0};
    char ip[INET6_ADDRSTRLEN] = "unknown";
    moat_http_str_t conn_v = {NULL, 0}, upgrade_v = {NULL, 0}, v, name;
    int trusted = peer_trusted(c), ws = 0;
    size_t from = 0;

    if (c->peer.family == AF_INET || c->peer.family == AF_INET6)
        moat__conn_peer_text(c, ip, sizeof(ip));
    (void)moat_http_req_find(req, "connection", &from, &conn_v);
    from = 0;
    /* WebSocket (RFC 6455) over HTTP/1.1: GET with Connection: upgrade and Upgrade: websocket */
    if (r->stream == NULL && req->method_id == MOAT_HTTP_GET &&
        moat_http_req_find(req, "upgrade", &from, &upgrade_v) && conn_v.len > 0 &&
        named_by(conn_v, (moat_http_str_t){"upgrade", 7}) &&
        named_by(upgrade_v, (moat_http_str_t){"websocket", 9}))
        ws = 1;
    moat_http_out_put(&o, req->method.p, req->method.len);
    moat_http_out_put(&o, " ", 1);
    if (req->path.len == 0 || req->path.p[0] != '/')
        moat_http_out_put(&o, "/", 1);
    moat_http_out_put(&o, req->path.p, req->path.len);
    moat_http_out_puts(&o, " HTTP/1.1\r\n");
    if (req->host.len > 0)
        put_field(&o, "Host", req->host);
    for (size_t i = 0; i < req->n_headers; i++) {
        int kind;
        moat_http_req_header(req, i, &name, &v);
        kind = field_kind(name);
        if ((kind != F_OTHER && kind != F_HSTS) ||
            (name.len >= 7 && strncasecmp(name.p, "x-moat-", 7) == 0) ||
            (conn_v.len > 0 && named_by(conn_v, name)))
            continue;
        moat_http_out_put(&o, name.p, name.len);
        moat_http_out_put(&o, ": ", 2);
        moat_http_out_put(&o, v.p, v.len);
        moat_http_out_put(&o, "\r\n", 2);
    }
    /* X-Forwarded-*: a trusted proxy's values are kept (the client's address appended); others replaced */
    list_start(&o, req, trusted, "X-Forwarded-For", "x-forwarded-for");
    moat_http_out_puts(&o, ip);
    moat_http_out_put(&o, "\r\n", 2);
    from = 0;
    if (trusted && moat_http_req_find(req, "x-forwarded-proto", &from, &v))
        put_field(&o, "X-Forwarded-Proto", v);
    else
        moat_http_out_puts(&o, c->secure ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    from = 0;
    if (trusted && moat_http_req_find(req, "x-forwarded-host", &from, &v))
        put_field(&o, "X-Forwarded-Host", v);
    else if (req->host.len > 0)
        put_field(&o, "X-Forwarded-Host", req->host);
    list_start(&o, req, trusted, "Forwarded", "forwarded");
    moat_http_out_puts(&o, c->peer.family == AF_INET6 ? "for=\"[" : "for=");
    moat_http_out_puts(&o, ip);
    moat_http_out_puts(&o, c->peer.family == AF_INET6 ? "]\"" : "");
    if (req->host.len > 0) {
        moat_http_out_puts(&o, ";host=\"");
        moat_http_out_put(&o, req->host.p,
                          req->host.len); /* a Host value holds no quote or backslash (parse.c) */
        moat_http_out_puts(&o, "\"");
    }
    moat_http_out_puts(&o, c->secure ? ";proto=https\r\n" : ";proto=http\r\n");
    if (px->loc->forward_client_cert == MOAT_FWD_CERT_RFC9440 && r->ccert != NULL &&
        strcmp(r->ccert, "ok") == 0)
        client_cert(&o, c);
    if (ws) {
        moat_http_out_puts(&o, "Connection: Upgrade\r\n");
        put_field(&o, "Upgrade", upgrade_v);
        px->upgrade = 1;
    }
    if (req->body_kind == MOAT_HTTP_BODY_LENGTH) {
        moat_http_out_puts(&o, "Content-Length: ");
        moat_http_out_putu(&o, req->content_length);
        moat_http_out_put(&o, "\r\n", 2);
    } else if (req->body_kind == MOAT_HTTP_BODY_CHUNKED) {
        moat_http_out_puts(&o, "Transfer-Encoding: chunked\r\n");
        px->chunked_out = 1;
    }
    moat_http_out_put(&o, "\r\n", 2);
    if (o.full)
        return -1;
    *len = o.n;
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
        if (name.len == 10 && field_kind(name) == F_CONNECTION)
            conn_v = v;
    }
    if (conn_v.len > 0 && !names_more(conn_v))
        conn_v.len = 0;
    for (size_t i = 0; i < h->n_headers && n + 3 < cap; i++) {
        int kind;
        moat_http_uhead_field(h, px->in, i, &name, &v);
        kind = field_kind(name);
        if (kind == F_LENGTH) {
            if (px->head_request) {
                uint64_t x = 0;
                for (size_t k = 0; k < v.len && v.p[k] >= '0' && v.p[k] <= '9' && x < (1ull << 48); k++)
                    x = x * 10 + (uint64_t)(v.p[k] - '0');
                px->head_cl = (int64_t)x;
            }
            continue;
        }
        if (h->status == 101 && kind == F_UPGRADE) {
            f[n++] = (moat__px_field_t){name, v};
            continue;
        }
        if (kind == F_HOP || kind == F_CONNECTION || kind == F_UPGRADE ||
            (conn_v.len > 0 && named_by(conn_v, name)))
            continue;
        if (kind == F_HSTS)
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
