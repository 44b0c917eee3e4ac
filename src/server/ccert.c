/*
 * Client certificates (DESIGN "Client certificates"): the handshake asks and verifies, but never fails
 * for a client-certificate reason; each request gets a verdict, with expiry and revocation checked
 * again (a resumed session carries an old verdict).
 *
 * Revocation, for every certificate of the client's chain below its anchor: those issued by moat's own CA
 * are checked against the generation's snapshot of its revocations; the others against the CRLs of
 * their http distribution points, which the fetcher keeps (crlfetch.c). A certificate that names no
 * such point, or whose CRL is missing or out of date, is "revocation-unknown", which the site's
 * client_revocation_unknown decides (deny by default).
 */
#include "server/conn.h"
#include "core/x509name.h"

#include "pki/pki.h"

#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/*
 * Whether moat's CA issued <x>. A name is not enough: another trusted CA may carry the same one (a
 * migration that kept the old CA's name), and its certificates must be checked against its own CRLs. The
 * issuer from the verified chain must be one of moat's CA certificates; without a chain (a resumed
 * session) the certificate's authority key identifier must be a moat CA's subject key identifier, which
 * moat writes into everything it issues.
 */
static int issued_by_moat(const moat__conn_t *c, X509 *x, X509 *issuer)
{
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    for (size_t i = 0; i < c->wg->nmoat_ca; i++) {
        X509 *ca = c->wg->moat_ca[i];
        const ASN1_OCTET_STRING *skid;
        if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)) != 0)
            continue;
        if (issuer != NULL) {
            if (X509_cmp(issuer, ca) == 0)
                return 1;
            continue;
        }
        skid = X509_get0_subject_key_id(ca);
        if (akid != NULL && skid != NULL && ASN1_OCTET_STRING_cmp(akid, skid) == 0)
            return 1;
    }
    return 0;
}

/* Revocation of a certificate moat's CA issued, from the generation's snapshot: 1 revoked, 0 not. */
static int moat_ca_revoked(const moat__conn_t *c, const char *serial)
{
    const moat__gen_t *gen = c->wg->gen;
    return gen->nrevoked > 0 &&
           bsearch(serial, gen->revoked, gen->nrevoked, sizeof(char *), cmp_serial) != NULL;
}

/*
 * Revocation of <x> (issued by <issuer>, NULL when unknown: a resumed session keeps no chain) from the
 * CRLs of its distribution points: 1 revoked, 0 not (a CRL in date does not list it), -1 unknown (no
 * http distribution point, no CRL fetched yet, or only out-of-date ones). A serial listed by any CRL that
 * verified is revoked, in date or not: revocation is final. A point the snapshot does not know yet is
 * left for the fetcher; it, and a point whose first fetch has not finished, set *pending so that the
 * request can wait for the answer (moat__conn_wait_crl).
 */
static int crl_revoked(moat__conn_t *c, X509 *x, X509 *issuer, const char *serial, long long now,
                       int *pending)
{
    char urls[4][MOAT_PKI_URL_SIZE];
    size_t n = moat_pki_cert_crl_urls(x, urls, MOAT_ARRAY_LEN(urls));
    const moat__crlset_t *set = moat__worker_crls(c->w);
    const unsigned char *name;
    size_t name_len;
    int fresh = 0;

    if (X509_NAME_get0_der(X509_get_issuer_name(x), &name, &name_len) != 1)
        return -1;
    /* A CRL added by hand for the issuer ('moat trust crl add') covers every certificate it issued. */
    for (size_t i = 0; set != NULL && i < set->n; i++) {
        const moat__crl_entry_t *e = &set->e[i];
        if (strncmp(e->url, MOAT_STORE_CRL_ADDED, strlen(MOAT_STORE_CRL_ADDED)) != 0 || e->fetched_at == 0 ||
            e->issuer_name_len != name_len || memcmp(e->issuer_name, name, name_len) != 0)
            continue;
        if (e->nrevoked > 0 && bsearch(serial, e->revoked, e->nrevoked, sizeof(char *), cmp_serial) != NULL)
            return 1;
        fresh |= e->next_update > now;
    }
    if (n == 0)
        return fresh ? 0 : -1;
    for (size_t u = 0; u < n; u++) {
        int known = 0;
        for (size_t i = 0; set != NULL && i < set->n; i++) {
            const moat__crl_entry_t *e = &set->e[i];
            if (strcmp(e->url, urls[u]) != 0 || e->issuer_name_len != name_len ||
                memcmp(e->issuer_name, name, name_len) != 0)
                continue;
            known = 1;
            if (e->fetched_at == 0) {
                *pending |= e->pending;
                continue;
            }
            if (e->nrevoked > 0 &&
                bsearch(serial, e->revoked, e->nrevoked, sizeof(char *), cmp_serial) != NULL)
                return 1;
            fresh |= e->next_update > now;
        }
        if (!known && issuer != NULL && moat__crlf_want(c->w->srv->crlf, urls[u], issuer) >= 0)
            *pending = 1; /* a fetch follows, or the note is left again when the request is retried */
    }
    return fresh ? 0 : -1;
}

/* Revocation of <x>: 1 revoked, 0 not, -1 unknown (*pending set when a first fetch may still tell). */
static int cert_revoked(moat__conn_t *c, X509 *x, X509 *issuer, long long now, int *pending)
{
    char serial[MOAT_PKI_SERIAL_KEY_SIZE];
    if (moat_pki_serial_key(X509_get0_serialNumber(x), serial) != 0)
        return -1; /* a serial longer than RFC 5280 allows (or no memory): nothing can vouch for it */
    if (issued_by_moat(c, x, issuer))
        return moat_ca_revoked(c, serial);
    return crl_revoked(c, x, issuer, serial, now, pending);
}

/* Revocation of the client's chain: every certificate below the anchor is checked (an intermediate
 * revoked by its root revokes everything under it). 1 revoked, 0 not, -1 unknown. */
static int chain_revoked(moat__conn_t *c, X509 *peer, long long now, int *pending)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(c->ssl);
    int n = chain != NULL ? sk_X509_num(chain) : 0, unknown = 0;

    if (n < 2 || sk_X509_value(chain, 0) != peer)
        return cert_revoked(c, peer, NULL, now, pending);
    for (int i = 0; i + 1 < n; i++) {
        int r = cert_revoked(c, sk_X509_value(chain, i), sk_X509_value(chain, i + 1), now, pending);
        if (r == 1)
            return 1;
        unknown |= r < 0;
    }
    return unknown ? -1 : 0;
}

const char *moat__reason_words(const moat__reason_text_t *texts, size_t n, const char *token,
                               const char *otherwise)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(token, texts[i].token) == 0)
            return texts[i].text;
    return otherwise;
}

const char *moat__ccert_reason_text(const char *reason)
{
    static const moat__reason_text_t texts[] = {
        {"none", "your browser or client sent no client certificate"},
        {"expired", "the client certificate has expired"},
        {"not-yet-valid", "the client certificate is not valid yet (check the clock, or wait)"},
        {"untrusted", "the client certificate was not issued by a CA this site trusts"},
        {"revoked", "the client certificate has been revoked"},
        {"revocation-unknown", "whether the client certificate was revoked could not be checked"},
        {"wrong-purpose", "the certificate is not made for client authentication"},
        {"malformed", "the client certificate could not be read"},
    };
    return moat__reason_words(texts, MOAT_ARRAY_LEN(texts), reason, "the client certificate was refused");
}

int moat__ccert_unchecked(moat__conn_t *c, char *out, size_t outsz)
{
    STACK_OF(X509) *chain = c->ssl != NULL ? SSL_get0_verified_chain(c->ssl) : NULL;
    X509 *peer = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    long long now = (long long)time(NULL);
    int n = chain != NULL ? sk_X509_num(chain) : 0, pending = 0;
    X509 *bad = NULL;

    if (peer == NULL)
        return -1;
    if (n < 2 || sk_X509_value(chain, 0) != peer)
        bad = cert_revoked(c, peer, NULL, now, &pending) < 0 ? peer : NULL;
    for (int i = 0; bad == NULL && i + 1 < n; i++)
        if (cert_revoked(c, sk_X509_value(chain, i), sk_X509_value(chain, i + 1), now, &pending) < 0)
            bad = sk_X509_value(chain, i);
    if (bad == NULL)
        return -1;
    moat_x509_name_text(X509_get_subject_name(bad), out, outsz);
    return out[0] != '\0' ? 0 : -1;
}

const char *moat__ccert_verdict(moat__conn_t *c, int *pending)
{
    X509 *peer = c->ssl != NULL ? SSL_get0_peer_certificate(c->ssl) : NULL;
    long e;
    const char *r;
    int rev, wait = 0;
    long long now;

    if (pending != NULL)
        *pending = 0;
    if (peer == NULL)
        return "none";
    e = c->ccert_err >= 0 ? c->ccert_err : SSL_get_verify_result(c->ssl);
    if ((r = reason_of(e)) != NULL)
        return r;
    if (!c->ccert_dates) {
        /* The certificate cannot change within a connection (no renegotiation): its dates are read once,
         * and each request compares them with the clock (X509_cmp_current_time parses both every time). */
        time_t nb, na;
        moat_err_t err = {0};
        if (moat_pki_asn1_time_to_time(X509_get0_notBefore(peer), &nb, &err) != 0 ||
            moat_pki_asn1_time_to_time(X509_get0_notAfter(peer), &na, &err) != 0)
            return "malformed"; /* verification already said so; never a pass */
        c->ccert_not_before = (int64_t)nb;
        c->ccert_not_after = (int64_t)na;
        c->ccert_dates = 1;
    }
    now = (long long)time(NULL);
    if (c->ccert_not_after <= now)
        return "expired";
    if (c->ccert_not_before > now)
        return "not-yet-valid";
    if (X509_check_purpose(peer, X509_PURPOSE_SSL_CLIENT, 0) != 1)
        return "wrong-purpose";
    rev = chain_revoked(c, peer, now, &wait);
    if (rev == 1)
        return "revoked";
    if (rev < 0 && c->site->client_revocation_unknown != MOAT_REVOCATION_UNKNOWN_ALLOW) {
        if (pending != NULL)
            *pending = wait;
        return "revocation-unknown";
    }
    return NULL;
}
