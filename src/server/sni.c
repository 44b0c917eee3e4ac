/*
 * The TLS policy of a connection: which site (and so which certificate, session context and
 * client-certificate settings) a ClientHello gets, and which protocol ALPN chooses. The wire parsing is
 * in tls/ (moat_tls_hello_sni, moat_tls_alpn_choose).
 */
#include "server/conn.h"

#include "acme/acme.h"

#include <string.h>
#include <sys/socket.h>

/* Chooses the site of <c> for <sni> (NULL: none) and applies its SSL_CTX and verify settings. */
static int use_site(moat__conn_t *c, SSL *ssl, const char *sni, int *al)
{
    const moat_listener_t *l;
    const moat_site_t *site;
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);

    l = c->wg->gen->bind_listener[c->bind];
    if (l == NULL) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    site = sni != NULL ? moat_listener_find_site(l, sni) : NULL;
    c->sni_matched = site != NULL;
    if (site == NULL) {
        /* No SNI (or an IP literal client) or an unknown name: the site listing the local IP, else the
         * default site, else refuse. Only this path pays for getsockname(). */
        if (getsockname(c->fd, (struct sockaddr *)&local, &llen) != 0)
            memset(&local, 0, sizeof(local));
        site = moat_listener_select(l, sni, (struct sockaddr *)&local);
    }
    if (site == NULL) {
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    c->site = site;
    if (c->wg->ctx[site->index] != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, c->wg->ctx[site->index]);
    /* Switching SSL_CTX does not carry the verify settings: apply the site's here. */
    if (c->wg->gen->sites[site->index].wants_ccert) {
        SSL_CTX *ctx = c->wg->ctx[site->index];
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), moat__ccert_on_verify);
        SSL_set_client_CA_list(ssl, SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx)));
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    }
    return SSL_TLSEXT_ERR_OK;
}

static int on_servername(SSL *ssl, int *al, void *arg)
{
    moat__conn_t *c = moat__conn_of(ssl);
    (void)arg;
    if (c == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (c->site_from_hello)
        return SSL_TLSEXT_ERR_OK;
    return use_site(c, ssl, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), al);
}

/* The host_name of the ClientHello's server_name extension, copied to <out>: 1 when there is one, 0 when
 * the extension is absent, -1 when it is not one moat_tls_hello_sni reads (the servername callback then
 * decides with what OpenSSL parsed). */
static int hello_sni(SSL *ssl, char *out, size_t outsz)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1)
        return 0;
    return moat_tls_hello_sni(p, len, out, outsz);
}

/* 1 when the ClientHello's ALPN list offers exactly acme-tls/1 (RFC 8737 §3: a validation offers nothing
 * else). */
static int hello_wants_acme(SSL *ssl)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len) != 1)
        return 0;
    return len == 2 + sizeof(MOAT_ACME_TLS_ALPN) - 1 && ((size_t)p[0] << 8 | p[1]) == len - 2 &&
           memcmp(p + 2, MOAT_ACME_TLS_ALPN, sizeof(MOAT_ACME_TLS_ALPN) - 1) == 0;
}

/*
 * OpenSSL looks for a session to resume (TLS 1.2 session id or ticket, TLS 1.3 PSK) before it calls the
 * servername callback, and compares its session id context with the connection's at that moment: the
 * first site of the listener. Choosing the site here, before that lookup, puts each site's own context
 * in force, so a session verified for one site never resumes on another whose anchors may not accept
 * its certificate. The servername callback only chooses when the name could not be read here.
 */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    moat__conn_t *c = moat__conn_of(ssl);
    char sni[256];
    int alert = 0, found;
    (void)arg;
    if (c == NULL)
        return SSL_CLIENT_HELLO_SUCCESS;
    found = hello_sni(ssl, sni, sizeof(sni));
    if (use_site(c, ssl, found == 1 ? sni : NULL, &alert) != SSL_TLSEXT_ERR_OK) {
        if (found < 0) /* a name this parser could not read: OpenSSL's parse decides in on_servername */
            return SSL_CLIENT_HELLO_SUCCESS;
        *al = alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /* The choice is final when the name was read here: choosing again per handshake would redo the
     * verify settings, the CA list copy and, without SNI, getsockname(). */
    c->site_from_hello = found >= 0;
    if (found == 1 && hello_wants_acme(ssl)) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        /* RFC 8737 §3: a validation presents the challenge certificate and negotiates acme-tls/1; with no
         * validation running for the name the handshake is refused (no_application_protocol). */
        if (!moat_acme_tlsalpn_lookup(sni, &cert, &key)) {
            *al = SSL_AD_NO_APPLICATION_PROTOCOL;
            return SSL_CLIENT_HELLO_ERROR;
        }
        if (SSL_use_certificate(ssl, cert) != 1 || SSL_use_PrivateKey(ssl, key) != 1) {
            X509_free(cert);
            EVP_PKEY_free(key);
            ERR_clear_error();
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        X509_free(cert);
        EVP_PKEY_free(key);
        c->acme_tls = 1;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The protocols a connection may choose by ALPN: acme-tls/1 alone for a tls-alpn-01 validation. */
static unsigned alpn_allowed(const moat__conn_t *c)
{
    unsigned allowed;
    if (c->acme_tls)
        return MOAT_TLS_ALPN_BIT(MOAT_TLS_ALPN_ACME);
    allowed = MOAT_TLS_ALPN_BIT(MOAT_TLS_ALPN_HTTP11);
    if (c->wg->gen->cfg->http2)
        allowed |= MOAT_TLS_ALPN_BIT(MOAT_TLS_ALPN_H2);
    return allowed;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    moat__conn_t *c = moat__conn_of(ssl);
    (void)arg;
    if (c == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    /* No protocol in common: the handshake goes on without ALPN (HTTP/1.1), as for a client without it;
     * a validation must negotiate acme-tls/1. */
    if (moat_tls_alpn_choose(in, inlen, alpn_allowed(c), out, outlen) == MOAT_TLS_ALPN_NONE)
        return c->acme_tls ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

void moat__wgen_prepare(moat__wgen_t *wg)
{
    for (size_t i = 0; i < wg->gen->cfg->nsites; i++) {
        SSL_CTX_set_tlsext_servername_callback(wg->ctx[i], on_servername);
        SSL_CTX_set_client_hello_cb(wg->ctx[i], on_client_hello, NULL);
        SSL_CTX_set_alpn_select_cb(wg->ctx[i], on_alpn, NULL);
    }
}
