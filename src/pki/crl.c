/*
 * pki: certificate revocation lists and CRL reason codes.
 */
#include "pki/pki_int.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

static const moat_named_t reasons[] = {
    {MOAT_PKI_REASON_UNSPECIFIED, "unspecified"},
    {MOAT_PKI_REASON_KEY_COMPROMISE, "key-compromise"},
    {MOAT_PKI_REASON_CA_COMPROMISE, "ca-compromise"},
    {MOAT_PKI_REASON_AFFILIATION_CHANGED, "affiliation-changed"},
    {MOAT_PKI_REASON_SUPERSEDED, "superseded"},
    {MOAT_PKI_REASON_CESSATION_OF_OPERATION, "cessation-of-operation"},
    {MOAT_PKI_REASON_CERTIFICATE_HOLD, "certificate-hold"},
    {MOAT_PKI_REASON_PRIVILEGE_WITHDRAWN, "privilege-withdrawn"},
    {MOAT_PKI_REASON_AA_COMPROMISE, "aa-compromise"},
};

/* Compares ignoring case and dashes, so "keyCompromise", "key-compromise" and "KEY-COMPROMISE" agree. */
static bool same_reason(const char *a, const char *b)
{
    for (;;) {
        while (*a == '-' || *a == '_')
            a++;
        while (*b == '-' || *b == '_')
            b++;
        if (*a == '\0' || *b == '\0')
            return *a == *b;
        if (((unsigned char)*a | 0x20) != ((unsigned char)*b | 0x20))
            return false;
        a++;
        b++;
    }
}

int moat_pki_reason_parse(const char *name, moat_pki_reason_t *out, moat_err_t *err)
{
    for (size_t i = 0; name != NULL && i < MOAT_ARRAY_LEN(reasons); i++) {
        if (same_reason(name, reasons[i].name)) {
            *out = (moat_pki_reason_t)reasons[i].code;
            return 0;
        }
    }
    moat_err_set(err, MOAT_E_INVAL, "unknown revocation reason \"%.60s\"", name ? name : "");
    return moat_err_hint(err,
                         "use unspecified, key-compromise, ca-compromise, affiliation-changed, superseded, "
                         "cessation-of-operation, certificate-hold or privilege-withdrawn");
}

const char *moat_pki_reason_name(int reason)
{
    const char *name = moat_named_find(reasons, MOAT_ARRAY_LEN(reasons), reason);
    return name != NULL ? name : "unknown";
}

static bool valid_reason(int reason)
{
    return reason >= 0 && reason <= 10 && reason != 7;
}

static int add_entry(X509_CRL *crl, const moat_pki_revoked_t *e, moat_err_t *err)
{
    X509_REVOKED *rev;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    int rc = 0;

    if (!valid_reason(e->reason))
        return moat_err_set(err, MOAT_E_INVAL,
                            "revocation reason %d of serial %.64s is not a CRL reason code", e->reason,
                            e->serial ? e->serial : "");
    if ((rev = X509_REVOKED_new()) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building the CRL");
    if ((serial = moat__pki_serial_from_hex(e->serial, err)) == NULL) {
        X509_REVOKED_free(rev);
        return err ? err->code : MOAT_E_INVAL;
    }
    when = ASN1_TIME_set(NULL, e->revoked_at);
    if (when == NULL || X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
        X509_REVOKED_set_revocationDate(rev, when) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "adding serial %s to the CRL", e->serial);
        goto done;
    }
    /* RFC 5280 §5.3.1: the unspecified reason is expressed by leaving the extension out. */
    if (e->reason != MOAT_PKI_REASON_UNSPECIFIED) {
        if ((reason = ASN1_ENUMERATED_new()) == NULL || ASN1_ENUMERATED_set(reason, e->reason) != 1 ||
            X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) != 1) {
            rc = moat_err_ossl(err, MOAT_E_PKI, "adding the reason of serial %s to the CRL", e->serial);
            goto done;
        }
    }
    if (X509_CRL_add0_revoked(crl, rev) != 1) {
        rc = moat_err_ossl(err, MOAT_E_NOMEM, "adding serial %s to the CRL", e->serial);
        goto done;
    }
    rev = NULL;
done:
    X509_REVOKED_free(rev);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    ASN1_ENUMERATED_free(reason);
    return rc;
}

int moat_pki_crl_new(X509 *ca_cert, EVP_PKEY *ca_key, long number, time_t this_update, time_t next_update,
                     const moat_pki_revoked_t *entries, size_t nentries, X509_CRL **out, moat_err_t *err)
{
    X509_CRL *crl = NULL;
    ASN1_TIME *tu = NULL, *nu = NULL;
    ASN1_INTEGER *num = NULL;
    AUTHORITY_KEYID *akid = NULL;
    const ASN1_OCTET_STRING *ski;
    const char *mdname;
    EVP_MD *md = NULL;
    int rc;

    if ((rc = moat__pki_check_ca_key(ca_cert, ca_key, err)) < 0)
        return rc;
    if (number < 0)
        return moat_err_set(err, MOAT_E_INVAL, "CRL number %ld is negative", number);
    if (next_update <= this_update)
        return moat_err_set(err, MOAT_E_INVAL, "the CRL's next update must come after its this-update time");
    if (nentries > 0 && entries == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no CRL entries given");
    rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory building the CRL");
    if ((crl = X509_CRL_new()) == NULL || (tu = ASN1_TIME_set(NULL, this_update)) == NULL ||
        (nu = ASN1_TIME_set(NULL, next_update)) == NULL || (num = ASN1_INTEGER_new()) == NULL ||
        ASN1_INTEGER_set_int64(num, number) != 1)
        goto done;
    if (X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, tu) != 1 || X509_CRL_set1_nextUpdate(crl, nu) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "building the CRL");
        goto done;
    }
    if ((ski = X509_get0_subject_key_id(ca_cert)) != NULL) {
        if ((akid = AUTHORITY_KEYID_new()) == NULL || (akid->keyid = ASN1_OCTET_STRING_dup(ski)) == NULL ||
            X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) != 1) {
            rc = moat_err_ossl(err, MOAT_E_PKI, "adding the authority key identifier to the CRL");
            goto done;
        }
    }
    for (size_t i = 0; i < nentries; i++)
        if ((rc = add_entry(crl, &entries[i], err)) < 0)
            goto done;
    /* DER of a SET OF needs a canonical order; sorting also makes lookups by serial fast. */
    if (X509_CRL_sort(crl) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "sorting the CRL");
        goto done;
    }
    mdname = moat__pki_sign_digest(ca_key);
    if (mdname != NULL && (md = EVP_MD_fetch(NULL, mdname, NULL)) == NULL) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "fetching %s", mdname);
        goto done;
    }
    if (X509_CRL_sign(crl, ca_key, md) <= 0) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "signing the CRL");
        goto done;
    }
    *out = crl;
    crl = NULL;
    rc = 0;
    moat_err_clear(err);
done:
    EVP_MD_free(md);
    X509_CRL_free(crl);
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID_free(akid);
    return rc;
}

int moat_pki_crl_to_der(X509_CRL *crl, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der = NULL;
    return moat__pki_der_take(&der, i2d_X509_CRL(crl, &der), "the CRL", out, out_len, err);
}

int moat_pki_crl_to_pem(X509_CRL *crl, char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der;
    size_t len;
    int rc;
    if ((rc = moat_pki_crl_to_der(crl, &der, &len, err)) < 0)
        return rc;
    rc = moat__pki_pem_of_der(PEM_STRING_X509_CRL, der, len, "the CRL as PEM", out, out_len, err);
    moat_free(&der);
    return rc;
}
