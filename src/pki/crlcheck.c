/*
 * pki: checking CRLs published by other CAs (client-certificate anchors moat does not run), and reading
 * the distribution points of the certificates they issued.
 */
#include "pki/pki_int.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void moat_pki_crl_info_dispose(moat_pki_crl_info_t *info)
{
    if (info != NULL)
        MOAT_ARRAY_DISPOSE(info->revoked, info->nrevoked, moat_free);
}

int moat_pki_serial_key(const ASN1_INTEGER *serial, char out[MOAT_PKI_SERIAL_KEY_SIZE])
{
    char *hex = moat__pki_serial_hex(serial);
    int rc = 0;
    if (hex == NULL)
        return MOAT_E_NOMEM;
    if (moat_strlcpy(out, hex, MOAT_PKI_SERIAL_KEY_SIZE) != 0)
        rc = MOAT_E_LIMIT;
    moat_free(&hex);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Scoped CRLs (indirect, by reason, only some kinds of certificate) would need the matching rules of
 * RFC 5280 §6.3.3; a CRL moat does not fully understand must not vouch for a certificate. */
static int check_scope(X509_CRL *crl, moat_err_t *err)
{
    int crit = 0;
    ISSUING_DIST_POINT *idp;

    if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0)
        return moat_err_set(err, MOAT_E_INVAL, "it is a delta CRL (only complete CRLs are supported)");
    idp = X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, NULL);
    if (idp == NULL && crit != -1) {
        ERR_clear_error();
        return moat_err_set(err, MOAT_E_INVAL, "its issuing distribution point extension is malformed");
    }
    if (idp != NULL) {
        int scoped = idp->onlyuser > 0 || idp->onlyCA > 0 || idp->onlyattr > 0 || idp->indirectCRL > 0 ||
                     idp->onlysomereasons != NULL;
        ISSUING_DIST_POINT_free(idp);
        if (scoped)
            return moat_err_set(err, MOAT_E_INVAL,
                                "it covers only part of its issuer's certificates (indirect, by reason or "
                                "by kind), which moat does not support");
    }
    for (int i = 0; i < X509_CRL_get_ext_count(crl); i++) {
        X509_EXTENSION *ext = X509_CRL_get_ext(crl, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (X509_EXTENSION_get_critical(ext) && nid != NID_issuing_distribution_point &&
            nid != NID_crl_number && nid != NID_authority_key_identifier)
            return moat_err_set(err, MOAT_E_INVAL, "it has a critical extension moat does not know (%s)",
                                nid != NID_undef ? OBJ_nid2sn(nid) : "unknown");
    }
    return 0;
}

static int read_entries(X509_CRL *crl, moat_pki_crl_info_t *out, moat_err_t *err)
{
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    int n = revs != NULL ? sk_X509_REVOKED_num(revs) : 0;

    if (n <= 0)
        return 0;
    if ((out->revoked = moat_calloc((size_t)n, sizeof(char *))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the CRL");
    for (int i = 0; i < n; i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(revs, i);
        char key[MOAT_PKI_SERIAL_KEY_SIZE];
        int rc = moat_pki_serial_key(X509_REVOKED_get0_serialNumber(r), key);
        if (rc == MOAT_E_LIMIT)
            return moat_err_set(err, MOAT_E_INVAL, "entry %d has a serial number longer than 20 bytes",
                                i + 1);
        if (rc != 0 || (out->revoked[out->nrevoked] = moat_strdup(key)) == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the CRL");
        out->nrevoked++;
    }
    qsort(out->revoked, out->nrevoked, sizeof(char *), cmp_str);
    return 0;
}

int moat_pki_crl_verify(const unsigned char *data, size_t len, X509 *issuer, moat_pki_crl_info_t *out,
                        moat_err_t *err)
{
    X509_CRL *crl = NULL;
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    const ASN1_TIME *nu;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len > 11 && memcmp(data, "-----BEGIN ", 11) == 0) {
        BIO *b = BIO_new_mem_buf(data, (int)(len > INT32_MAX ? INT32_MAX : len));
        crl = b != NULL ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else if (len <= LONG_MAX) {
        const unsigned char *p = data;
        crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl != NULL && p != data + len) {
            X509_CRL_free(crl);
            return moat_err_set(err, MOAT_E_INVAL, "not a CRL: %zu bytes follow the DER",
                                len - (size_t)(p - data));
        }
    }
    if (crl == NULL) {
        moat_err_ossl(err, MOAT_E_INVAL, "not a CRL (neither DER nor PEM)");
        return err->code;
    }
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0) {
        rc = moat_err_set(err, MOAT_E_INVAL, "it was issued by another CA than the certificate's issuer");
        goto done;
    }
    if ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) && !(X509_get_key_usage(issuer) & KU_CRL_SIGN)) {
        rc = moat_err_set(err, MOAT_E_INVAL, "its issuer's key usage does not allow signing CRLs");
        goto done;
    }
    if (pk == NULL || X509_CRL_verify(crl, pk) != 1) {
        ERR_clear_error();
        rc = moat_err_set(err, MOAT_E_INVAL, "its signature does not verify with the issuing CA's key");
        goto done;
    }
    if ((rc = check_scope(crl, err)) != 0)
        goto done;
    if ((rc = moat_pki_asn1_time_to_time(X509_CRL_get0_lastUpdate(crl), &out->this_update, err)) < 0)
        goto done;
    nu = X509_CRL_get0_nextUpdate(crl);
    if (nu != NULL && (rc = moat_pki_asn1_time_to_time(nu, &out->next_update, err)) < 0)
        goto done;
    rc = read_entries(crl, out, err);
done:
    X509_CRL_free(crl);
    if (rc != 0)
        moat_pki_crl_info_dispose(out);
    return rc < 0 ? rc : 0;
}

static int printable(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Copies an http:// URI general name into <out>; 0 when <gn> is none (another type or scheme, too long,
 * not printable ASCII: a URL is printable (RFC 3986), anything else would reach logs and requests raw). */
static int http_uri(const GENERAL_NAME *gn, char out[MOAT_PKI_URL_SIZE])
{
    const unsigned char *s;
    int len;
    if (gn->type != GEN_URI)
        return 0;
    s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
    len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
    if (len < 8 || len >= MOAT_PKI_URL_SIZE || strncasecmp((const char *)s, "http://", 7) != 0 ||
        !printable(s, (size_t)len))
        return 0;
    memcpy(out, s, (size_t)len);
    out[len] = '\0';
    return 1;
}

size_t moat_pki_cert_crl_urls(X509 *cert, char (*urls)[MOAT_PKI_URL_SIZE], size_t max)
{
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    size_t n = 0;

    for (int i = 0; dps != NULL && i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        /* A point limited to some reasons, or whose CRL another authority issues, is not a complete CRL
         * of this certificate's issuer. */
        if (dp->distpoint == NULL || dp->distpoint->type != 0 || dp->reasons != NULL || dp->CRLissuer != NULL)
            continue;
        for (int j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname) && n < max; j++)
            n += (size_t)http_uri(sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j), urls[n]);
    }
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    ERR_clear_error();
    return n;
}

size_t moat_pki_cert_ca_issuers_urls(X509 *cert, char (*urls)[MOAT_PKI_URL_SIZE], size_t max)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    size_t n = 0;

    for (int i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia) && n < max; i++) {
        ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) == NID_ad_ca_issuers)
            n += (size_t)http_uri(ad->location, urls[n]);
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error();
    return n;
}
