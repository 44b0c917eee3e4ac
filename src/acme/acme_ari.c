/*
 * ACME Renewal Information (RFC 9773): the certificate's id (AKI keyIdentifier "." serial), the window
 * the CA suggests, fetched again after its Retry-After (6 h when it gives none), and kept in the store
 * so that the renewal time survives a restart and shows in moat acme status.
 */
#include "acme/acme_int.h"

#include "pki/pki.h"

#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

#define ARI_DEFAULT_RETRY 21600
#define ARI_MIN_RETRY 1
#define ARI_MAX_RETRY 86400

int moat__acme_ari_certid(const uint8_t *der, size_t len, char *out, size_t outsz, moat_err_t *err)
{
    X509 *x = NULL;
    const ASN1_OCTET_STRING *aki;
    unsigned char *ser = NULL;
    int n, rc = 0;
    char a64[128], s64[128];

    if ((rc = moat_pki_cert_parse(der, len, &x, err)) != 0)
        return rc;
    aki = X509_get0_authority_key_id(x);
    n = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &ser);
    /* The serial's DER content octets: after the INTEGER tag and a short-form length (serials are at
     * most 20 bytes). */
    if (aki == NULL || n < 3 || ser[1] != n - 2 ||
        moat_b64url_encode(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki), a64, sizeof(a64)) <
            0 ||
        moat_b64url_encode(ser + 2, (size_t)n - 2, s64, sizeof(s64)) < 0 ||
        (size_t)snprintf(out, outsz, "%s.%s", a64, s64) >= outsz)
        rc = moat_err_set(err, MOAT_E_PKI, "the certificate has no authority key identifier or a bad serial");
    OPENSSL_free(ser);
    X509_free(x);
    return rc;
}

/* An RFC 3339 time (moat_time_parse) to epoch seconds; -1 when it is not one. */
static long long rfc3339(const char *s)
{
    int64_t t;
    return moat_time_parse(s, 0, &t) == 0 ? (long long)t : -1;
}

int moat__acme_ari_fetch(moat__acme_client_t *c, const char *certid, long long now, moat__acme_ari_t *out,
                         moat_err_t *err)
{
    const char *base = moat__acme_dir_url(c, "renewalInfo");
    char url[1024];
    moat__acme_resp_t r;
    json_t *w;
    int rc;

    memset(out, 0, sizeof(*out));
    if (base == NULL)
        return MOAT_E_NOTFOUND; /* the CA offers no ARI: the lifetime rule decides */
    snprintf(url, sizeof(url), "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", certid);
    if ((rc = moat__acme_get(c, url, &r, err)) != 0 ||
        (rc = moat__acme_expect(&r, 200, "reading the renewal information", err)) != 0)
        return rc;
    w = json_object_get(r.json, "suggestedWindow");
    out->start = rfc3339(moat_acme_json_str(w, "start"));
    out->end = rfc3339(moat_acme_json_str(w, "end"));
    if (out->start < 0 || out->end < out->start) {
        moat__acme_resp_dispose(&r);
        return moat_err_set(err, MOAT_E_INVAL, "the renewal information has no usable suggestedWindow");
    }
    {
        long ra = r.retry_after >= 0 ? r.retry_after : ARI_DEFAULT_RETRY;
        out->recheck = now + (ra < ARI_MIN_RETRY ? ARI_MIN_RETRY : ra > ARI_MAX_RETRY ? ARI_MAX_RETRY : ra);
    }
    moat_strlcpy(out->certid, certid, sizeof(out->certid));
    moat__acme_resp_dispose(&r);
    return 0;
}
