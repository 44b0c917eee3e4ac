/*
 * Client certificates (DESIGN "Client certificates"): the handshake asks and verifies, but never fails
 * for a client-certificate reason; each request gets a verdict, with expiry and revocation checked
 * again (a resumed session carries an old verdict).
 *
 * Revocation: certificates issued by moat's own CA are checked against the generation's snapshot of
 * its revocations. For other anchors the server has no revocation source, so their certificates get
 * "revocation-unknown", which the site's client_revocation_unknown decides (deny by default).
 */
#include "server/server_int.h"

#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

int moat__ccert_on_verify(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    moat__conn_t *c = ssl != NULL ? moat__conn_of(ssl) : NULL;
    if (!ok && c != NULL && c->ccert_err < 0)
        c->ccert_err = X509_STORE_CTX_get_error(x);
    return 1; /* never fail the handshake: the request answers 403 with the reason */
}

static const char *reason_of(long e)
{
    switch (e) {
    case X509_V_OK:
        return NULL;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "not-yet-valid";
    case X509_V_ERR_INVALID_PURPOSE:
        return "wrong-purpose";
    case X509_V_ERR_CERT_REVOKED:
        return "revoked";
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_INVALID_EXTENSION:
    case X509_V_ERR_INVALID_NON_CA:
        return "malformed";
    default:
        return "untrusted";
    }
}

static int cmp_serial(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(char *const *)elem);
}

/* 1 revoked, 0 not, -1 not issued by moat's CA (no revocation source). */
static int moat_ca_revoked(const moat__conn_t *c, X509 *peer)
{
    const moat__wgen_t *wg = c->wg;
    int ours = 0, revoked = 0;
    BIGNUM *bn;
    char *hex, *h;

    for (size_t i = 0; i < wg->nmoat_ca && !ours; i++)
        ours = X509_NAME_cmp(X509_get_issuer_name(peer), X509_get_subject_name(wg->moat_ca[i])) == 0;
    if (!ours)
        return -1;
    if (wg->gen->nrevoked == 0)
        return 0;
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL);
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    if (hex == NULL)
        return 1; /* cannot tell: treat as revoked rather than let it through */
    for (h = hex; h[0] == '0' && h[1] != '\0'; h++)
        ;
    revoked = bsearch(h, wg->gen->revoked, wg->gen->nrevoked, sizeof(char *), cmp_serial) != NULL;
    OPENSSL_free(hex);
    return revoked;
}

const char *moat__ccert_verdict(moat__conn_t *c)
{
    X509 *peer = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    long e;
    const char *r;
    int rev;

    if (peer == NULL)
        return "none";
    e = c->ccert_err >= 0 ? c->ccert_err : SSL_get_verify_result(c->ssl);
    if ((r = reason_of(e)) != NULL)
        return r;
    if (X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0)
        return "expired";
    if (X509_cmp_current_time(X509_get0_notBefore(peer)) >= 0)
        return "not-yet-valid";
    if (X509_check_purpose(peer, X509_PURPOSE_SSL_CLIENT, 0) != 1)
        return "wrong-purpose";
    rev = moat_ca_revoked(c, peer);
    if (rev == 1)
        return "revoked";
    if (rev < 0 && c->site->client_revocation_unknown != MOAT_REVOCATION_UNKNOWN_ALLOW)
        return "revocation-unknown";
    return NULL;
}
