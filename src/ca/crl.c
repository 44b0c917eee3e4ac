/* ca: the CRLs of moat's CA, kept in settings "ca.crl.<role>" (PEM) for publication. */
#include "ca/ca.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

int moat_ca_crl_refresh(moat_store_t *st, moat_ca_role_t role, X509 *ca_cert, EVP_PKEY *ca_key,
                        moat_err_t *err)
{
    moat_store_issued_list_t il = {0};
    moat_pki_revoked_t *entries = NULL;
    size_t n = 0;
    int64_t number;
    X509_CRL *crl = NULL;
    char *pem = NULL, key[64];
    size_t pem_len = 0;
    time_t now = time(NULL);
    long days = MOAT_CA_CRL_DAYS;
    int rc;

    if ((rc = moat_ca_crl_days(st, &days, err)) != 0 ||
        (rc = moat_store_issued_list(st, MOAT_ISSUED_REVOKED_ONLY, 0, &il, err)) != 0)
        return rc;
    if (il.n > 0 && (entries = moat_calloc(il.n, sizeof(*entries))) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < il.n; i++) {
        if (il.items[i].issuer != role || il.items[i].revoked == 0)
            continue;
        entries[n].serial = il.items[i].serial;
        entries[n].revoked_at = (time_t)il.items[i].revoked;
        entries[n].reason = il.items[i].reason;
        n++;
    }
    if ((rc = moat_store_ca_next_crl_number(st, role, &number, err)) != 0 ||
        (rc = moat_pki_crl_new(ca_cert, ca_key, (long)number, now, now + (time_t)days * 86400, entries, n,
                               &crl, err)) != 0 ||
        (rc = moat_pki_crl_to_pem(crl, &pem, &pem_len, err)) != 0)
        goto out;
    snprintf(key, sizeof(key), "ca.crl.%s", moat_store_ca_role_name(role));
    rc = moat_store_setting_set(st, key, pem, err);
out:
    moat_free(&pem);
    X509_CRL_free(crl);
    moat_free(&entries);
    moat_store_issued_list_dispose(&il);
    return rc;
}

int moat_ca_crl_stored(moat_store_t *st, moat_ca_role_t role, char *pem, size_t pemsz, X509_CRL **crl,
                       moat_err_t *err)
{
    char key[64];
    BIO *b;
    int rc;

    *crl = NULL;
    snprintf(key, sizeof(key), "ca.crl.%s", moat_store_ca_role_name(role));
    rc = moat_store_setting_get(st, key, pem, pemsz, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        pem[0] = '\0';
        return 0;
    }
    if (rc != 0)
        return rc;
    if ((b = BIO_new_mem_buf(pem, -1)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    *crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    BIO_free(b);
    if (*crl == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "the stored CRL of the %s CA does not parse",
                             moat_store_ca_role_name(role));
    return 0;
}

bool moat_ca_crl_due(const X509_CRL *crl, time_t now)
{
    const ASN1_TIME *next = crl ? X509_CRL_get0_nextUpdate(crl) : NULL;
    const ASN1_TIME *last = crl ? X509_CRL_get0_lastUpdate(crl) : NULL;
    time_t t, from;
    moat_err_t e = {0};
    if (next == NULL || last == NULL || moat_pki_asn1_time_to_time(next, &t, &e) != 0 ||
        moat_pki_asn1_time_to_time(last, &from, &e) != 0 || t <= from)
        return true;
    return now > t - (t - from) / 2;
}

int moat_ca_crl_days(moat_store_t *st, long *days, moat_err_t *err)
{
    char v[32];
    int rc = moat_store_setting_get(st, "ca.crl.days", v, sizeof(v), err);
    *days = MOAT_CA_CRL_DAYS;
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0;
    }
    if (rc == 0 && moat_parse_long(v, MOAT_CA_CRL_DAYS_MIN, MOAT_CA_CRL_DAYS_MAX, days) != 0)
        *days = MOAT_CA_CRL_DAYS; /* only moat_ca_crl_days_set() writes it */
    return rc;
}

int moat_ca_crl_days_set(moat_store_t *st, long days, moat_err_t *err)
{
    char v[32];
    if (days < MOAT_CA_CRL_DAYS_MIN || days > MOAT_CA_CRL_DAYS_MAX)
        return moat_err_set(err, MOAT_E_INVAL, "a CRL lifetime is %d to %d days, not %ld",
                            MOAT_CA_CRL_DAYS_MIN, MOAT_CA_CRL_DAYS_MAX, days);
    snprintf(v, sizeof(v), "%ld", days);
    return moat_store_setting_set(st, "ca.crl.days", v, err);
}

int moat_ca_crl_resign(moat_store_t *st, moat_ca_role_t role, X509 *ca_cert, EVP_PKEY *ca_key,
                       const char *why, moat_err_t *err)
{
    int rc = moat_store_begin(st, err);
    if (rc != 0)
        return rc;
    if ((rc = moat_ca_crl_refresh(st, role, ca_cert, ca_key, err)) != 0 ||
        (rc = moat_ca_audit(st, "ca.crl", moat_store_ca_role_name(role), err, "%s", why)) != 0 ||
        (rc = moat_ca_commit(st, NULL, 0, NULL, err)) != 0)
        moat_store_rollback(st);
    return rc;
}
