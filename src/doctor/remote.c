/*
 * Remote diagnosis: inspect a TLS endpoint from outside, as a client would see it. Every connection is
 * non-blocking with a deadline, so a dead or silent endpoint costs at most the timeout per attempt.
 */
#include "doctor/doctor_int.h"

#include "core/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <strings.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int moat_doctor_target_parse(const char *s, moat_doctor_target_t *t, moat_err_t *err)
{
    const char *p = s, *end, *colon = NULL;
    char port[16] = "443";
    long num;
    size_t hlen;
    unsigned char buf[16];

    memset(t, 0, sizeof(*t));
    if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else if (strstr(p, "://") != NULL) {
        moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": only https:// endpoints speak TLS", s);
        return moat_err_hint(err, "give https://HOST[:PORT] or HOST:PORT");
    }
    /* The authority ends at the path, query or fragment. */
    end = p + strcspn(p, "/?#");
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL)
            return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": missing ']' after an IPv6 address",
                                s);
        hlen = (size_t)(close - p - 1);
        if (hlen == 0 || hlen >= sizeof(t->host))
            return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": bad IPv6 address", s);
        memcpy(t->host, p + 1, hlen);
        if (close + 1 < end) {
            if (close[1] != ':')
                return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": expected ':PORT' after ']'",
                                    s);
            colon = close + 1;
        }
    } else {
        const char *c = memchr(p, ':', (size_t)(end - p));
        /* More than one colon without brackets: a bare IPv6 address, default port. */
        if (c != NULL && memchr(c + 1, ':', (size_t)(end - c - 1)) != NULL)
            c = NULL;
        hlen = (size_t)((c ? c : end) - p);
        if (hlen == 0 || hlen >= sizeof(t->host)) {
            moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": no host name", s);
            return moat_err_hint(err, "give https://HOST[:PORT] or HOST:PORT");
        }
        memcpy(t->host, p, hlen);
        colon = c;
    }
    if (colon != NULL) {
        size_t plen = (size_t)(end - colon - 1);
        if (plen == 0 || plen >= sizeof(port))
            return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": bad port", s);
        memcpy(port, colon + 1, plen);
        port[plen] = '\0';
    }
    if (moat_parse_long(port, 1, 65535, &num) != 0)
        return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": port \"%s\" is not in 1-65535", s,
                            port);
    snprintf(t->port, sizeof(t->port), "%ld", num);
    t->is_ip = inet_pton(AF_INET, t->host, buf) == 1 || inet_pton(AF_INET6, t->host, buf) == 1;
    if (!t->is_ip && strchr(t->host, ':') != NULL)
        return moat_err_set(err, MOAT_E_USAGE, "cannot inspect \"%s\": \"%s\" is not an IPv6 address", s,
                            t->host);
    return 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void addr_str(const struct sockaddr *sa, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outsz, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outsz, "%s:%u", ip, ntohs(s4->sin_port));
    }
}

enum { CONN_OK, CONN_REFUSED, CONN_TIMEOUT, CONN_ERROR };

/* Connects with a deadline; returns CONN_* and the socket (non-blocking) in *fd on success. */
static int tcp_connect(const struct sockaddr *sa, socklen_t salen, int timeout_ms, int *fd, int *eno)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    *fd = -1;
    *eno = 0;
    if (s < 0) {
        *eno = errno;
        return CONN_ERROR;
    }
    if (connect(s, sa, salen) != 0) {
        struct pollfd pfd = {.fd = s, .events = POLLOUT};
        int n;
        if (errno != EINPROGRESS) {
            *eno = errno;
            close(s);
            return *eno == ECONNREFUSED ? CONN_REFUSED : CONN_ERROR;
        }
        do
            n = poll(&pfd, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n == 0) {
            close(s);
            return CONN_TIMEOUT;
        }
        if (n < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            *eno = soerr ? soerr : errno;
            close(s);
            return *eno == ECONNREFUSED ? CONN_REFUSED : (*eno == ETIMEDOUT ? CONN_TIMEOUT : CONN_ERROR);
        }
    }
    *fd = s;
    return CONN_OK;
}

enum { HS_OK, HS_REFUSED, HS_TIMEOUT, HS_CLOSED, HS_NOT_TLS, HS_CONNECT };

typedef struct hs {
    int rc;           /* HS_* */
    int conn;         /* CONN_* when rc == HS_CONNECT */
    int fd;           /* owned while ssl is set */
    SSL *ssl;         /* owned: the finished handshake when rc == HS_OK */
    char reason[256]; /* why the handshake failed */
} hs_t;

static void hs_close(hs_t *h)
{
    if (h->ssl != NULL) {
        /* A polite close_notify; the socket is non-blocking, so this never waits. */
        (void)SSL_shutdown(h->ssl);
        SSL_free(h->ssl);
        h->ssl = NULL;
    }
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

/* Connects to <sa> and handshakes with SNI <sni> (NULL: none); the outcome is in <h>. */
static void handshake(SSL_CTX *ctx, const char *sni, const struct sockaddr *sa, socklen_t salen,
                      int timeout_ms, int want_status, hs_t *h)
{
    long deadline = now_ms() + timeout_ms;
    int eno, c;

    memset(h, 0, sizeof(*h));
    h->fd = -1;
    if ((c = tcp_connect(sa, salen, timeout_ms, &h->fd, &eno)) != CONN_OK) {
        h->rc = HS_CONNECT;
        h->conn = c;
        snprintf(h->reason, sizeof(h->reason), "%s",
                 c == CONN_TIMEOUT ? "connection timed out" : strerror(eno ? eno : ECONNREFUSED));
        return;
    }
    if ((h->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(h->ssl, h->fd) != 1 ||
        (sni != NULL && SSL_set_tlsext_host_name(h->ssl, sni) != 1) ||
        (want_status && SSL_set_tlsext_status_type(h->ssl, TLSEXT_STATUSTYPE_ocsp) != 1)) {
        h->rc = HS_REFUSED;
        snprintf(h->reason, sizeof(h->reason), "cannot set up a TLS client: %s",
                 ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        return;
    }
    for (;;) {
        int ret, e, left;
        struct pollfd pfd = {.fd = h->fd};
        ERR_clear_error();
        errno = 0;
        ret = SSL_connect(h->ssl);
        if (ret == 1) {
            h->rc = HS_OK;
            return;
        }
        e = SSL_get_error(h->ssl, ret);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int n;
            if ((left = (int)(deadline - now_ms())) <= 0) {
                h->rc = HS_TIMEOUT;
                snprintf(h->reason, sizeof(h->reason), "no TLS answer within %d ms", timeout_ms);
                return;
            }
            pfd.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            do
                n = poll(&pfd, 1, left);
            while (n < 0 && errno == EINTR);
            if (n == 0) {
                h->rc = HS_TIMEOUT;
                snprintf(h->reason, sizeof(h->reason), "no TLS answer within %d ms", timeout_ms);
                return;
            }
            continue;
        }
        if (e == SSL_ERROR_SSL) {
            unsigned long ossl = ERR_peek_last_error();
            int r = ERR_GET_REASON(ossl);
            const char *rs = ERR_reason_error_string(ossl);
            snprintf(h->reason, sizeof(h->reason), "%s", rs ? rs : "handshake failed");
            if (r == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                h->rc = HS_CLOSED;
            else if (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG ||
                     r == SSL_R_RECORD_LENGTH_MISMATCH)
                h->rc = HS_NOT_TLS;
            else
                h->rc = HS_REFUSED;
        } else {
            h->rc = HS_CLOSED;
            snprintf(h->reason, sizeof(h->reason), "%s",
                     errno ? strerror(errno) : "the connection was closed without an answer");
        }
        ERR_clear_error();
        return;
    }
}

/* A client context for one probe: [min,max] protocol versions, everything allowed (SECLEVEL 0). */
static SSL_CTX *probe_ctx(int min, int max, const char *ciphers)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    /*
     * Debian's OpenSSL defaults to security level 2, which silently disables TLS 1.0/1.1 and short keys:
     * a probe must see what the server accepts, so everything is set here, not taken from openssl.cnf.
     */
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_LEGACY_SERVER_CONNECT | SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set_min_proto_version(ctx, min) != 1 || SSL_CTX_set_max_proto_version(ctx, max) != 1 ||
        SSL_CTX_set_cipher_list(ctx, ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(
            ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256:X448:P-384:P-521:ffdhe2048:ffdhe3072:ffdhe4096") != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

static const char *ALL_CIPHERS = "ALL:!aNULL:!eNULL:@SECLEVEL=0";

static const struct {
    int version;
    const char *name;
    moat_doctor_sev_t sev; /* when accepted */
    const char *id;
} PROTOCOLS[] = {
    {TLS1_VERSION, "TLSv1.0", MOAT_DOCTOR_ERROR, "tls1.0-accepted"},
    {TLS1_1_VERSION, "TLSv1.1", MOAT_DOCTOR_WARNING, "tls1.1-accepted"},
    {TLS1_2_VERSION, "TLSv1.2", MOAT_DOCTOR_INFO, NULL},
    {TLS1_3_VERSION, "TLSv1.3", MOAT_DOCTOR_INFO, NULL},
};

static void probe_protocols(moat_doctor_report_t *r, const char *subject, const moat_doctor_target_t *t,
                            const struct addrinfo *ai, const moat_doctor_opts_t *o)
{
    char accepted[128] = "", refused[128] = "";
    size_t la = 0, lr = 0;
    int modern = 0;
    for (size_t i = 0; i < MOAT_ARRAY_LEN(PROTOCOLS); i++) {
        SSL_CTX *ctx = probe_ctx(PROTOCOLS[i].version, PROTOCOLS[i].version, ALL_CIPHERS);
        hs_t h;
        if (ctx == NULL) {
            lr += (size_t)snprintf(refused + lr, sizeof(refused) - lr, "%s%s (cannot probe)", lr ? ", " : "",
                                   PROTOCOLS[i].name);
            continue;
        }
        handshake(ctx, t->is_ip ? NULL : t->host, ai->ai_addr, ai->ai_addrlen, o->timeout_ms, 0, &h);
        if (h.rc == HS_OK) {
            la += (size_t)snprintf(accepted + la, sizeof(accepted) - la, "%s%s", la ? " " : "",
                                   PROTOCOLS[i].name);
            if (PROTOCOLS[i].id != NULL) {
                moat_doctor_finding_t *f =
                    moat_doctor_add(r, PROTOCOLS[i].sev, PROTOCOLS[i].id, subject,
                                    "the server accepts %s (negotiated with cipher %s)", PROTOCOLS[i].name,
                                    SSL_CIPHER_get_name(SSL_get_current_cipher(h.ssl)));
                moat_doctor_why(f,
                                "%s is deprecated (RFC 8996): it relies on SHA-1/MD5 and CBC constructions "
                                "with known attacks, and current browsers no longer speak it",
                                PROTOCOLS[i].name);
                moat_doctor_fix(f,
                                "allow TLS 1.2 and 1.3 only (moat serve does so by default; elsewhere e.g. "
                                "nginx: ssl_protocols TLSv1.2 TLSv1.3;)");
            } else
                modern = 1;
        } else if (i < MOAT_ARRAY_LEN(PROTOCOLS)) {
            lr += (size_t)snprintf(refused + lr, sizeof(refused) - lr, "%s%s", lr ? " " : "",
                                   PROTOCOLS[i].name);
        }
        hs_close(&h);
        SSL_CTX_free(ctx);
        if (la >= sizeof(accepted) || lr >= sizeof(refused))
            break;
    }
    moat_doctor_fact(r, subject, "protocols", "accepted: %s; refused: %s", accepted[0] ? accepted : "none",
                     refused[0] ? refused : "none");
    if (!modern) {
        moat_doctor_finding_t *f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "no-modern-tls", subject,
                                                   "the server accepts neither TLS 1.2 nor TLS 1.3");
        moat_doctor_why(f, "current clients speak only TLS 1.2 and 1.3 and cannot connect");
        moat_doctor_fix(f, "enable TLS 1.2 and 1.3 on the server (moat serve does by default)");
    }

    /* 3DES (Sweet32) is the weakest cipher this OpenSSL can still offer. */
    {
        SSL_CTX *ctx = probe_ctx(TLS1_VERSION, TLS1_2_VERSION, "3DES:@SECLEVEL=0");
        hs_t h;
        if (ctx == NULL)
            return;
        handshake(ctx, t->is_ip ? NULL : t->host, ai->ai_addr, ai->ai_addrlen, o->timeout_ms, 0, &h);
        if (h.rc == HS_OK) {
            moat_doctor_finding_t *f = moat_doctor_add(r, MOAT_DOCTOR_WARNING, "weak-cipher", subject,
                                                       "the server accepts the cipher %s",
                                                       SSL_CIPHER_get_name(SSL_get_current_cipher(h.ssl)));
            moat_doctor_why(f, "64-bit block ciphers (3DES) leak plaintext on long connections (Sweet32)");
            moat_doctor_fix(f, "offer AEAD ciphers only (AES-GCM, ChaCha20-Poly1305), as moat serve does");
        }
        hs_close(&h);
        SSL_CTX_free(ctx);
    }
}

/* The issuer of <leaf>: the next certificate sent, or one found in <trust>. New reference or NULL. */
static X509 *issuer_of(X509 *leaf, STACK_OF(X509) * chain, X509_STORE *trust)
{
    X509 *issuer = NULL;
    for (int i = 1; i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK) {
            X509_up_ref(sk_X509_value(chain, i));
            return sk_X509_value(chain, i);
        }
    if (trust != NULL) {
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        if (ctx != NULL && X509_STORE_CTX_init(ctx, trust, leaf, NULL) == 1)
            (void)X509_STORE_CTX_get1_issuer(&issuer, ctx, leaf); /* not found leaves it NULL */
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
    }
    return issuer;
}

void moat__doctor_check_ocsp(moat_doctor_report_t *r, const char *subject, const unsigned char *der, long len,
                             STACK_OF(X509) * chain, X509_STORE *trust, int chain_trusted, int configured)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *id = NULL;
    X509 *leaf = sk_X509_value(chain, 0), *issuer = NULL;
    int status, reason, st;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    moat_doctor_finding_t *f;
    char problem[256] = "";

    if (der == NULL || len <= 0) {
        if (configured) {
            f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "ocsp-stapling-failed", subject,
                                "OCSP stapling is configured but the server sent no OCSP response");
            moat_doctor_why(f,
                            "clients fall back to asking the CA themselves (slower, and a privacy leak), or "
                            "fail when the certificate requires stapling");
            moat_doctor_fix(f,
                            "check that the server can reach the responder named in the certificate's AIA");
        } else {
            moat_doctor_fact(r, subject, "ocsp", "not stapled");
            f = moat_doctor_add(r, MOAT_DOCTOR_INFO, "ocsp-not-stapled", subject,
                                "the server does not staple an OCSP response");
            moat_doctor_why(f,
                            "clients that check revocation must ask the CA themselves: slower, and it tells "
                            "the CA who visits");
            moat_doctor_fix(f, "enable OCSP stapling on the server");
        }
        return;
    }
    if ((resp = d2i_OCSP_RESPONSE(NULL, &p, len)) == NULL) {
        snprintf(problem, sizeof(problem), "the stapled OCSP response (%ld bytes) cannot be parsed", len);
        goto failed;
    }
    if ((st = OCSP_response_status(resp)) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(problem, sizeof(problem), "the stapled OCSP response says \"%s\"",
                 OCSP_response_status_str(st));
        goto failed;
    }
    if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
        snprintf(problem, sizeof(problem), "the stapled OCSP response has no basic response");
        goto failed;
    }
    if ((issuer = issuer_of(leaf, chain, trust)) == NULL) {
        snprintf(problem, sizeof(problem),
                 "the stapled OCSP response cannot be matched: the certificate's issuer is unknown");
        goto failed;
    }
    if ((id = OCSP_cert_to_id(NULL, leaf, issuer)) == NULL ||
        OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd) != 1) {
        snprintf(problem, sizeof(problem), "the stapled OCSP response is about another certificate");
        goto failed;
    }
    if (OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
        char when[64];
        moat__doctor_time(nextupd ? nextupd : thisupd, when, sizeof(when));
        snprintf(problem, sizeof(problem), "the stapled OCSP response is out of date (next update %s)", when);
        goto failed;
    }
    if (chain_trusted && trust != NULL) {
        STACK_OF(X509) *certs = sk_X509_dup(chain);
        /* A response signed by the issuing CA itself may carry no certificate (RFC 6960 §4.2.2.2), and
         * a root that issued the leaf is not in the chain a server sends: the issuer found above signs. */
        int ok =
            certs != NULL && sk_X509_push(certs, issuer) > 0 && OCSP_basic_verify(bs, certs, trust, 0) == 1;
        sk_X509_free(certs);
        if (!ok) {
            snprintf(problem, sizeof(problem), "the stapled OCSP response's signature does not verify: %s",
                     ERR_reason_error_string(ERR_peek_last_error()));
            goto failed;
        }
    }
    if (status == V_OCSP_CERTSTATUS_REVOKED) {
        char when[64];
        moat__doctor_time(rev, when, sizeof(when));
        moat_doctor_fact(r, subject, "ocsp", "stapled: revoked");
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "cert-revoked", subject,
                            "the certificate was revoked on %s (reason: %s)", when,
                            reason >= 0 ? OCSP_crl_reason_str(reason) : "none given");
        moat_doctor_why(f, "clients that check revocation refuse it");
        moat_doctor_fix(f,
                        "install a new certificate: moat key renew <key> --csr-out KEY.csr, have it signed, "
                        "moat cert install <key> KEY.crt");
    } else {
        char when[64];
        moat__doctor_time(nextupd, when, sizeof(when));
        moat_doctor_fact(r, subject, "ocsp", "stapled: %s, next update %s", OCSP_cert_status_str(status),
                         nextupd ? when : "not given");
    }
    goto done;
failed:
    moat_doctor_fact(r, subject, "ocsp", "stapled, failing");
    f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "ocsp-stapling-failed", subject, "%s", problem);
    moat_doctor_why(f, "clients that check the staple reject the handshake or ignore it and fall back");
    moat_doctor_fix(
        f, "check the server's OCSP responder configuration; for moat's own CA: moat ca cert and the "
           "/.well-known/moat/ocsp endpoint");
done:
    ERR_clear_error();
    OCSP_CERTID_free(id);
    X509_free(issuer);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
}

int moat__doctor_fetch(const struct sockaddr *sa, socklen_t salen, const char *sni, int timeout_ms,
                       moat__doctor_fetch_t *out)
{
    SSL_CTX *ctx = probe_ctx(TLS1_VERSION, TLS1_3_VERSION, ALL_CIPHERS);
    hs_t h;
    memset(out, 0, sizeof(*out));
    if (ctx == NULL) {
        out->status = MOAT__DOCTOR_HS_FAILED;
        snprintf(out->reason, sizeof(out->reason), "cannot set up a TLS client");
        return -1;
    }
    handshake(ctx, sni, sa, salen, timeout_ms, 1, &h);
    snprintf(out->reason, sizeof(out->reason), "%s", h.reason);
    switch (h.rc) {
    case HS_OK: {
        const unsigned char *p = NULL;
        long n = SSL_get_tlsext_status_ocsp_resp(h.ssl, &p);
        out->status = MOAT__DOCTOR_OK;
        snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(h.ssl));
        snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_CIPHER_get_name(SSL_get_current_cipher(h.ssl)));
        out->chain = X509_chain_up_ref(SSL_get_peer_cert_chain(h.ssl));
        if (n > 0 && p != NULL && (out->ocsp = moat_malloc((size_t)n)) != NULL) {
            memcpy(out->ocsp, p, (size_t)n);
            out->ocsp_len = n;
        }
        break;
    }
    case HS_CONNECT:
        out->status = h.conn == CONN_REFUSED   ? MOAT__DOCTOR_CONN_REFUSED
                      : h.conn == CONN_TIMEOUT ? MOAT__DOCTOR_CONN_TIMEOUT
                                               : MOAT__DOCTOR_CONN_ERROR;
        break;
    case HS_TIMEOUT:
        out->status = MOAT__DOCTOR_HS_TIMEOUT;
        break;
    case HS_NOT_TLS:
        out->status = MOAT__DOCTOR_NOT_TLS;
        break;
    default:
        out->status = MOAT__DOCTOR_HS_FAILED;
    }
    hs_close(&h);
    SSL_CTX_free(ctx);
    return out->status == MOAT__DOCTOR_OK ? 0 : -1;
}

void moat__doctor_fetch_dispose(moat__doctor_fetch_t *f)
{
    sk_X509_pop_free(f->chain, X509_free);
    f->chain = NULL;
    moat_free(&f->ocsp);
    f->ocsp_len = 0;
}

static void describe_session(moat_doctor_report_t *r, const char *subject, SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    int group = SSL_get_negotiated_group(ssl);
    const char *gname = group != 0 ? SSL_group_to_name(ssl, group) : NULL;
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    moat_doctor_fact(r, subject, "negotiated", "%s, %s%s%s", SSL_get_version(ssl), SSL_CIPHER_get_name(c),
                     gname ? ", key exchange " : "", gname ? gname : "");
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alen > 0)
        moat_doctor_fact(r, subject, "alpn", "%.*s", (int)alen, (const char *)alpn);
    else
        moat_doctor_fact(r, subject, "alpn", "none (the server chose no protocol: HTTP/1.1)");
    if (SSL_CIPHER_get_kx_nid(c) == NID_kx_rsa) {
        moat_doctor_finding_t *f =
            moat_doctor_add(r, MOAT_DOCTOR_WARNING, "no-forward-secrecy", subject,
                            "the negotiated cipher %s uses RSA key exchange", SSL_CIPHER_get_name(c));
        moat_doctor_why(f,
                        "without (EC)DHE, whoever obtains the server key later can decrypt recorded traffic");
        moat_doctor_fix(f, "prefer ECDHE cipher suites (moat serve offers only those)");
    }
}

int moat_doctor_remote(const char *target, const moat_doctor_opts_t *o, moat_doctor_report_t *r,
                       moat_err_t *err)
{
    moat_doctor_target_t t;
    struct addrinfo *res = NULL;
    const struct addrinfo *chosen = NULL;
    char subject[300], addr[80], trust_desc[256];
    moat_doctor_finding_t *f;
    moat_err_t rerr = {0};
    X509_STORE *trust = NULL;
    SSL_CTX *ctx = NULL;
    hs_t h = {.fd = -1};
    STACK_OF(X509) *chain = NULL;
    unsigned char *ocsp = NULL;
    long olen = 0;

    if (moat_doctor_target_parse(target, &t, err) != 0)
        return err->code;
    if (strchr(t.host, ':') != NULL)
        snprintf(subject, sizeof(subject), "[%s]:%s", t.host, t.port);
    else
        snprintf(subject, sizeof(subject), "%s:%s", t.host, t.port);
    snprintf(r->target, sizeof(r->target), "https://%s", subject);

    if (moat_resolve(t.host, t.port, t.is_ip, moat_clock_ms() + (uint64_t)o->timeout_ms, NULL, &res, &rerr) !=
        0) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "dns-failure", subject, "%s", rerr.msg);
        moat_doctor_why(f, "clients cannot find the server's address");
        moat_doctor_fix(f, "check the name's DNS records (A/AAAA) or /etc/hosts, and the resolver in "
                           "/etc/resolv.conf");
        return 0;
    }

    /* Every address: clients pick any of them, so one dead address is a finding of its own. */
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd, eno;
        long t0 = now_ms();
        int c = tcp_connect(ai->ai_addr, ai->ai_addrlen, o->timeout_ms, &fd, &eno);
        addr_str(ai->ai_addr, addr, sizeof(addr));
        switch (c) {
        case CONN_OK:
            close(fd);
            if (chosen == NULL)
                chosen = ai;
            moat_doctor_fact(r, subject, "address", "%s: connected in %ld ms", addr, now_ms() - t0);
            break;
        case CONN_REFUSED:
            moat_doctor_fact(r, subject, "address", "%s: refused", addr);
            f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "connection-refused", subject,
                                "the connection to %s was refused: nothing listens on port %s", addr, t.port);
            moat_doctor_why(f, "clients get \"connection refused\" at once");
            moat_doctor_fix(f,
                            "start the server (moat serve -c moat.yaml) and check that a site listens on %s "
                            "(listen: [\"*:%s\"]); a firewall rejecting the port looks the same",
                            addr, t.port);
            break;
        case CONN_TIMEOUT:
            moat_doctor_fact(r, subject, "address", "%s: no answer in %d ms", addr, o->timeout_ms);
            f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "connection-timeout", subject,
                                "connecting to %s timed out after %d ms", addr, o->timeout_ms);
            moat_doctor_why(
                f, "packets are dropped on the way (a firewall, a wrong address or route), so clients "
                   "hang until they give up");
            moat_doctor_fix(
                f, "check firewalls and routing to %s, and that the address belongs to the server", addr);
            break;
        default:
            moat_doctor_fact(r, subject, "address", "%s: %s", addr, strerror(eno));
            f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "connection-failed", subject,
                                "connecting to %s failed: %s", addr, strerror(eno));
            moat_doctor_why(f, "clients cannot reach the server at this address");
            moat_doctor_fix(f, "check the network path and routing to %s", addr);
        }
    }
    if (chosen == NULL)
        goto out;

    {
        /* moat's own CA and trust anchors count too when the store is here. */
        moat_doctor_opts_t with_store = *o;
        X509_STORE *anchors = o->anchors == NULL ? moat__doctor_anchors_at(o->store_path) : NULL;
        if (anchors != NULL) {
            with_store.anchors = anchors;
            moat_strlcpy(r->store, o->store_path, sizeof(r->store));
        }
        trust = moat_doctor_trust_new(&with_store, trust_desc, sizeof(trust_desc), err);
        X509_STORE_free(anchors);
        if (trust == NULL) {
            freeaddrinfo(res);
            return err->code;
        }
    }
    if ((ctx = probe_ctx(TLS1_VERSION, TLS1_3_VERSION, ALL_CIPHERS)) == NULL) {
        X509_STORE_free(trust);
        freeaddrinfo(res);
        return moat_err_ossl(err, MOAT_E_PKI, "setting up a TLS client");
    }
    /* Offered as a browser does: the fact says which protocol the server chose. */
    (void)SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2\x08http/1.1", 12);
    addr_str(chosen->ai_addr, addr, sizeof(addr));
    handshake(ctx, t.is_ip ? NULL : t.host, chosen->ai_addr, chosen->ai_addrlen, o->timeout_ms, 1, &h);
    switch (h.rc) {
    case HS_OK:
        break;
    case HS_TIMEOUT:
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "handshake-timeout", subject,
                            "%s accepts connections but sent no TLS answer within %d ms", addr,
                            o->timeout_ms);
        moat_doctor_why(
            f, "clients hang until they give up: the process listening there is stuck, overloaded, or "
               "not a TLS server");
        moat_doctor_fix(f, "find what holds the port (ss -ltnp 'sport = :%s') and restart or reconfigure it",
                        t.port);
        goto out;
    case HS_NOT_TLS:
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "not-tls", subject, "%s answers, but not with TLS (%s)",
                            addr, h.reason);
        moat_doctor_why(f, "this is usually a plain HTTP port, or another protocol");
        moat_doctor_fix(
            f, "use the https port of the server, or make the listener speak TLS (in moat: listen: for "
               "https, http_listen: for plain HTTP)");
        goto out;
    case HS_CLOSED:
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "handshake-closed", subject,
                            "%s closed the connection during the TLS handshake (%s)", addr, h.reason);
        moat_doctor_why(f,
                        "the server refuses the handshake: with SNI %s it has no site, or it is not a TLS "
                        "server",
                        t.is_ip ? "absent" : t.host);
        moat_doctor_fix(f, "check that a site lists %s in hosts:, or is the default site (default: true)",
                        t.host);
        goto out;
    default:
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "handshake-failed", subject,
                            "the TLS handshake with %s failed: %s", addr, h.reason);
        moat_doctor_why(f, "no client can connect");
        if (strstr(h.reason, "unrecognized name") != NULL)
            moat_doctor_fix(f, "add %s to a site's hosts:, or mark one site default: true", t.host);
        else
            moat_doctor_fix(f, "look at the server's error log for the handshake failure");
        goto out;
    }

    describe_session(r, subject, h.ssl);
    {
        const unsigned char *p = NULL;
        long n = SSL_get_tlsext_status_ocsp_resp(h.ssl, &p);
        chain = X509_chain_up_ref(SSL_get_peer_cert_chain(h.ssl));
        if (n > 0 && p != NULL && (ocsp = moat_malloc((size_t)n)) != NULL) {
            memcpy(ocsp, p, (size_t)n);
            olen = n;
        }
    }
    /* Servers that handle one connection at a time (openssl s_server) would stall the probes. */
    hs_close(&h);
    probe_protocols(r, subject, &t, chosen, o);
    if (chain != NULL && sk_X509_num(chain) > 0) {
        int trusted;
        moat_doctor_check_chain(r, subject, chain, t.host, trust, trust_desc, o, NULL);
        trusted = moat_doctor_find(r, "untrusted-root") == NULL &&
                  moat_doctor_find(r, "self-signed") == NULL &&
                  moat_doctor_find(r, "chain-incomplete") == NULL && moat_doctor_find(r, "untrusted") == NULL;
        moat__doctor_check_ocsp(r, subject, ocsp, olen, chain, trust, trusted, 0);
    } else
        moat_doctor_check_chain(r, subject, NULL, t.host, trust, trust_desc, o, NULL);

out:
    sk_X509_pop_free(chain, X509_free);
    moat_free(&ocsp);
    hs_close(&h);
    SSL_CTX_free(ctx);
    X509_STORE_free(trust);
    freeaddrinfo(res);
    return 0;
}

int moat_doctor_peer_chain(const char *target, int timeout_ms, moat_doctor_peer_t *out, moat_err_t *err)
{
    moat_doctor_target_t t;
    struct addrinfo *res = NULL;
    moat__doctor_fetch_t f = {0};
    int rc = MOAT_E_IO;

    memset(out, 0, sizeof(*out));
    if (moat_doctor_target_parse(target, &t, err) != 0)
        return err->code;
    if (moat_resolve(t.host, t.port, t.is_ip, moat_clock_ms() + (uint64_t)timeout_ms, NULL, &res, err) != 0)
        return err->code;
    /* The first address that completes a handshake: what a client would be sent. */
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        addr_str(ai->ai_addr, out->address, sizeof(out->address));
        if (moat__doctor_fetch(ai->ai_addr, ai->ai_addrlen, t.is_ip ? NULL : t.host, timeout_ms, &f) == 0 &&
            f.chain != NULL && sk_X509_num(f.chain) > 0) {
            out->chain = f.chain;
            f.chain = NULL;
            moat_strlcpy(out->version, f.version, sizeof(out->version));
            moat_strlcpy(out->cipher, f.cipher, sizeof(out->cipher));
            rc = 0;
            moat__doctor_fetch_dispose(&f);
            break;
        }
        moat_err_set(err, MOAT_E_IO, "no TLS handshake with %s (%s:%s): %s", out->address, t.host, t.port,
                     f.reason[0] ? f.reason : "the server sent no certificate");
        moat__doctor_fetch_dispose(&f);
    }
    freeaddrinfo(res);
    if (rc != 0 && err->hint[0] == '\0')
        moat_err_hint(err, "check that the server runs and speaks TLS on that port: moat doctor %s", target);
    return rc;
}
