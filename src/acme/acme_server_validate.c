/*
 * Validation of ACME challenges, on a service thread: http-01 (RFC 8555 §8.3) over moat's HTTP client,
 * tls-alpn-01 (RFC 8737) with OpenSSL, dns-01 (RFC 8555 §8.4) with the system resolver. Each attempt has
 * a deadline, failures are retried a bounded number of times, and the result is written to the store.
 */
#include "acme/acme_server_int.h"
#include "core/loop.h"
#include "http/http.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <resolv.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ATTEMPTS 3
#define ATTEMPT_TIMEOUT_MS 10000
#define RETRY_PAUSE_MS 2000
#define REDIRECTS_MAX 10

/* "[v6]" for URLs, the address or name as is otherwise. */
static void url_host(const char *type, const char *value, char *out, size_t outsz)
{
    if (strcmp(type, "ip") == 0 && strchr(value, ':') != NULL)
        snprintf(out, outsz, "[%s]", value);
    else
        snprintf(out, outsz, "%s", value);
}

static int http01(const char *type, const char *value, const char *token, const char *keyauth, long port,
                  const atomic_int *stop, moat_acme_problem_t *p)
{
    char host[300], url[1024];
    url_host(type, value, host, sizeof host);
    snprintf(url, sizeof url, "http://%s:%ld/.well-known/acme-challenge/%s", host, port, token);
    for (int hop = 0; hop <= REDIRECTS_MAX; hop++) {
        moat_http_fetch_t f = {0};
        moat_http_client_resp_t r;
        moat_err_t err = {0};
        uint8_t *body = NULL;
        size_t bl = 0;
        f.url = url;
        f.max_body = 8192;
        f.timeout_ms = ATTEMPT_TIMEOUT_MS;
        f.stop = stop;
        if (moat_http_fetch(&f, &r, &body, &bl, &err) != 0)
            return moat_acme_problem_set(p, MOAT_ACME_PROB_CONNECTION, "http-01: %s", err.msg);
        if (r.status >= 301 && r.status <= 308 && r.location[0] != '\0') {
            moat_free(&body);
            /* RFC 8555 §8.3: redirects are followed; only to http here, since the name has no certificate
             * yet. */
            if (strncmp(r.location, "http://", 7) != 0)
                return moat_acme_problem_set(p, MOAT_ACME_PROB_CONNECTION,
                                             "http-01: redirect to %.200s is not http://", r.location);
            snprintf(url, sizeof url, "%s", r.location);
            continue;
        }
        /* RFC 8555 §8.3: the body is the key authorization; trailing whitespace is tolerated. */
        while (bl > 0 &&
               (body[bl - 1] == '\n' || body[bl - 1] == '\r' || body[bl - 1] == ' ' || body[bl - 1] == '\t'))
            bl--;
        int ok = r.status == 200 && bl == strlen(keyauth) && memcmp(body, keyauth, bl) == 0;
        moat_free(&body);
        if (!ok)
            return moat_acme_problem_set(p, MOAT_ACME_PROB_INCORRECT_RESPONSE,
                                         "http-01: %s answered %d without the key authorization", url,
                                         r.status);
        return 0;
    }
    return moat_acme_problem_set(p, MOAT_ACME_PROB_CONNECTION, "http-01: more than %d redirects",
                                 REDIRECTS_MAX);
}

/* A blocking TCP connection to <host>:<port> whose sends and receives time out. -1 with <p> set. */
static int dial(const char *host, long port, const atomic_int *stop, moat_acme_problem_t *p)
{
    struct addrinfo *res = NULL;
    moat_err_t err = {0};
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    if (moat_resolve(host, ps, 0, moat_clock_ms() + ATTEMPT_TIMEOUT_MS, stop, &res, &err) != 0) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_DNS, "%s", err.msg);
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        struct timeval tv = {ATTEMPT_TIMEOUT_MS / 1000, 0};
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        /* SO_SNDTIMEO bounds connect() too on Linux. */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        moat_acme_problem_set(p, MOAT_ACME_PROB_CONNECTION, "cannot connect to %s port %ld", host, port);
    return fd;
}

/* RFC 8737 §3: a self-signed certificate for exactly the name, with the critical acmeIdentifier extension
 * holding SHA-256 of the key authorization, over ALPN acme-tls/1. */
static int tls_alpn01(const char *type, const char *value, const char *keyauth, long port,
                      const atomic_int *stop, moat_acme_problem_t *p)
{
    static const unsigned char alpn[] = "\x0a"
                                        "acme-tls/1";
    unsigned char want[32];
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int rc = -1, fd = dial(value, port, stop, p);
    if (fd < 0)
        return -1;
    (void)EVP_Digest(keyauth, strlen(keyauth), want, NULL, EVP_sha256(), NULL);
    if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL || (ssl = SSL_new(ctx)) == NULL ||
        SSL_set_alpn_protos(ssl, alpn, sizeof alpn - 1) != 0 || !SSL_set_fd(ssl, fd) ||
        (strcmp(type, "dns") == 0 && !SSL_set_tlsext_host_name(ssl, value))) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_SERVER_INTERNAL, "tls-alpn-01: setting up TLS");
        goto out;
    }
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL); /* the certificate is self-signed by design */
    if (SSL_connect(ssl) != 1) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_TLS, "tls-alpn-01: TLS handshake with %s port %ld failed",
                              value, port);
        goto out;
    }
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(ssl, &proto, &plen);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (plen != 10 || memcmp(proto, "acme-tls/1", 10) != 0 || cert == NULL) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_TLS, "tls-alpn-01: %s did not select acme-tls/1", value);
        goto out;
    }
    /* Exactly one SAN, the identifier. */
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int names_ok = gens != NULL && sk_GENERAL_NAME_num(gens) == 1;
    if (names_ok) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        unsigned char a[16];
        int fam = strchr(value, ':') ? AF_INET6 : AF_INET;
        if (strcmp(type, "dns") == 0)
            names_ok = g->type == GEN_DNS && (size_t)g->d.dNSName->length == strlen(value) &&
                       strncasecmp((const char *)g->d.dNSName->data, value, strlen(value)) == 0;
        else
            names_ok = g->type == GEN_IPADD && inet_pton(fam, value, a) == 1 &&
                       g->d.iPAddress->length == (fam == AF_INET ? 4 : 16) &&
                       memcmp(g->d.iPAddress->data, a, (size_t)g->d.iPAddress->length) == 0;
    }
    GENERAL_NAMES_free(gens);
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int idx = oid ? X509_get_ext_by_OBJ(cert, oid, -1) : -1;
    ASN1_OBJECT_free(oid);
    X509_EXTENSION *ext = idx >= 0 ? X509_get_ext(cert, idx) : NULL;
    int ext_ok = 0;
    if (ext != NULL && X509_EXTENSION_get_critical(ext)) {
        const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
        const unsigned char *q = v->data;
        ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &q, v->length);
        ext_ok = inner != NULL && inner->length == 32 && memcmp(inner->data, want, 32) == 0;
        ASN1_OCTET_STRING_free(inner);
    }
    if (!names_ok)
        moat_acme_problem_set(p, MOAT_ACME_PROB_INCORRECT_RESPONSE,
                              "tls-alpn-01: the certificate must name exactly %s", value);
    else if (!ext_ok)
        moat_acme_problem_set(
            p, MOAT_ACME_PROB_INCORRECT_RESPONSE,
            "tls-alpn-01: no critical acmeIdentifier extension with this key authorization");
    else
        rc = 0;
out:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return rc;
}

/* RFC 8555 §8.4: a TXT record at _acme-challenge.NAME holding base64url(SHA-256(key authorization)). */
static int dns01(const char *value, const char *keyauth, const char *resolver, moat_acme_problem_t *p)
{
    unsigned char md[32], ans[4096];
    char want[64], qname[300];
    struct __res_state rs;
    (void)EVP_Digest(keyauth, strlen(keyauth), md, NULL, EVP_sha256(), NULL);
    if (moat_b64url_encode(md, 32, want, sizeof want) < 0)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_SERVER_INTERNAL, "encoding");
    snprintf(qname, sizeof qname, "_acme-challenge.%s", value[0] == '*' ? value + 2 : value);
    memset(&rs, 0, sizeof rs);
    if (res_ninit(&rs) != 0)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_DNS, "dns-01: no resolver configuration");
    rs.retrans = 3;
    rs.retry = 2;
    if (resolver != NULL && resolver[0] != '\0') {
        /* acme_server.dns_resolver (checked when the config loaded): that server alone is asked. */
        moat_listen_t l;
        moat_err_t err = {0};
        if (moat_listen_parse(resolver, &l, &err) != 0 || l.family != AF_INET) {
            res_nclose(&rs);
            return moat_acme_problem_set(p, MOAT_ACME_PROB_SERVER_INTERNAL, "dns-01: resolver %s", resolver);
        }
        memset(&rs.nsaddr_list[0], 0, sizeof rs.nsaddr_list[0]);
        rs.nsaddr_list[0].sin_family = AF_INET;
        rs.nsaddr_list[0].sin_port = htons(l.port);
        rs.nsaddr_list[0].sin_addr = l.addr.v4;
        rs.nscount = 1;
    }
    int n = res_nquery(&rs, qname, ns_c_in, ns_t_txt, ans, sizeof ans);
    int rc = moat_acme_problem_set(p, MOAT_ACME_PROB_INCORRECT_RESPONSE, "dns-01: no TXT record %s at %s",
                                   want, qname);
    ns_msg msg;
    if (n < 0) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_DNS, "dns-01: looking up TXT %s failed", qname);
    } else if (ns_initparse(ans, n, &msg) == 0) {
        for (int i = 0; i < ns_msg_count(msg, ns_s_an) && rc != 0; i++) {
            ns_rr rr;
            if (ns_parserr(&msg, ns_s_an, i, &rr) != 0 || ns_rr_type(rr) != ns_t_txt)
                continue;
            const unsigned char *d = ns_rr_rdata(rr);
            int len = ns_rr_rdlen(rr);
            /* One character-string holds the 43 characters. */
            if (len >= 1 && d[0] == 43 && len >= 44 && memcmp(d + 1, want, 43) == 0)
                rc = 0;
        }
    }
    res_nclose(&rs);
    return rc;
}

static int attempt(const char *ctype, const char *itype, const char *value, const char *token,
                   const char *keyauth, long http_port, long alpn_port, const char *dns_resolver,
                   const atomic_int *stop, moat_acme_problem_t *p)
{
    if (strcmp(ctype, "http-01") == 0)
        return http01(itype, value, token, keyauth, http_port, stop, p);
    if (strcmp(ctype, "tls-alpn-01") == 0)
        return tls_alpn01(itype, value, keyauth, alpn_port, stop, p);
    if (strcmp(ctype, "dns-01") == 0)
        return dns01(value, keyauth, dns_resolver, p);
    return moat_acme_problem_set(p, MOAT_ACME_PROB_SERVER_INTERNAL, "unknown challenge type %s", ctype);
}

static void set_status(moat_store_acme_obj_t *o, json_t *doc, const char *status)
{
    json_object_set_new(doc, "status", json_string(status));
    (void)moat_strlcpy(o->status, status, sizeof o->status);
}

static int save(moat_store_t *st, moat_store_acme_obj_t *o, json_t *doc, moat_err_t *err)
{
    char *text = moat_acme_json_dump(doc);
    if (text == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    char *old = o->doc;
    o->doc = text;
    int rc = moat_store_acme_put(st, o, err);
    o->doc = old;
    free(text);
    return rc;
}

void moat__acme_validate(moat_store_t *st, const char *chall_id, long http01_port, long tls_alpn01_port,
                         const char *dns_resolver, const atomic_int *stop)
{
    moat_store_acme_obj_t ch = {0}, az = {0}, ac = {0};
    moat_err_t err = {0};
    moat_acme_problem_t p = {0};
    json_t *cd = NULL, *ad = NULL, *acd = NULL;
    char keyauth[160], thumb[64];
    int ok = -1;

    if (moat_store_acme_get(st, MOAT_STORE_ACME_CHALL, chall_id, &ch, &err) != 0 ||
        moat_store_acme_get(st, MOAT_STORE_ACME_AUTHZ, ch.parent, &az, &err) != 0 ||
        moat_store_acme_get(st, MOAT_STORE_ACME_ACCOUNT, ch.account, &ac, &err) != 0 ||
        (cd = moat_acme_json_parse(ch.doc, strlen(ch.doc), &err)) == NULL ||
        (ad = moat_acme_json_parse(az.doc, strlen(az.doc), &err)) == NULL ||
        (acd = moat_acme_json_parse(ac.doc, strlen(ac.doc), &err)) == NULL ||
        moat_acme_jwk_thumbprint(json_object_get(acd, "jwk"), thumb, sizeof thumb, &err) != 0)
        goto out; /* the objects are gone or damaged: nothing to record the result on */
    const char *token = moat_acme_json_str(cd, "token"), *ctype = moat_acme_json_str(cd, "type");
    const json_t *ident = json_object_get(ad, "identifier");
    const char *itype = moat_acme_json_str(ident, "type"), *value = moat_acme_json_str(ident, "value");
    if (token == NULL || ctype == NULL || itype == NULL || value == NULL ||
        strcmp(ch.status, "processing") != 0)
        goto out;
    snprintf(keyauth, sizeof keyauth, "%s.%s", token, thumb);
    for (int i = 0; i < ATTEMPTS && ok != 0 && !atomic_load(stop); i++) {
        if (i > 0) {
            struct timespec ts = {RETRY_PAUSE_MS / 1000, 0};
            nanosleep(&ts, NULL);
        }
        ok = attempt(ctype, itype, value, token, keyauth, http01_port, tls_alpn01_port, dns_resolver, stop,
                     &p);
    }
    if (atomic_load(stop) && ok != 0)
        goto out; /* stopping: the challenge stays processing, as nothing was learnt */
    if (moat_store_begin(st, &err) != 0)
        goto out;
    char t[32];
    moat__acme_time((int64_t)time(NULL), t, sizeof t);
    if (ok == 0) {
        set_status(&ch, cd, "valid");
        json_object_set_new(cd, "validated", json_string(t));
        set_status(&az, ad, "valid");
    } else {
        set_status(&ch, cd, "invalid");
        json_object_set_new(cd, "error", moat_acme_problem_json(&p));
        set_status(&az, ad, "invalid");
    }
    if (save(st, &ch, cd, &err) != 0 || save(st, &az, ad, &err) != 0 || moat_store_commit(st, &err) != 0)
        moat_store_rollback(st);
out:
    json_decref(cd);
    json_decref(ad);
    json_decref(acd);
    moat_store_acme_obj_dispose(&ch);
    moat_store_acme_obj_dispose(&az);
    moat_store_acme_obj_dispose(&ac);
}
