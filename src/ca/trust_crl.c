/*
 * ca: a CRL an administrator adds for a trust anchor whose certificates name no distribution point
 * ('moat trust crl add NAME FILE'). It is checked against the anchor, kept in the store's CRL cache under
 * "trust:NAME" and never fetched; the server applies it with the next generation.
 */
#include "ca/ca.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

/* The CRL of <data> (PEM or DER) as DER. */
static int crl_der(const unsigned char *data, size_t len, unsigned char **der, size_t *der_len,
                   moat_err_t *err)
{
    X509_CRL *crl = NULL;
    int rc;
    if (len > 0 && memmem(data, len, "-----BEGIN X509 CRL-----", 24) != NULL) {
        BIO *b = BIO_new_mem_buf(data, (int)len);
        crl = b != NULL ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else {
        const unsigned char *p = data;
        crl = d2i_X509_CRL(NULL, &p, (long)len);
    }
    if (crl == NULL)
        return moat_err_ossl(err, MOAT_E_INVAL, "not a CRL (PEM or DER)");
    rc = moat_pki_crl_to_der(crl, der, der_len, err);
    X509_CRL_free(crl);
    return rc;
}

int moat_ca_trust_crl_add(moat_store_t *st, const char *anchor, const unsigned char *data, size_t len,
                          moat_ca_trust_crl_t *out, moat_err_t *err)
{
    moat_store_anchor_t a = {0};
    moat_store_crl_list_t list = {0};
    moat_store_crl_t row;
    moat_pki_crl_info_t info = {0};
    X509 *issuer = NULL;
    const unsigned char *p;
    unsigned char *der = NULL;
    size_t der_len = 0;
    char detail[512];
    time_t now = time(NULL);
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&row, 0, sizeof(row));
    if ((rc = moat_store_anchor_get(st, anchor, &a, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_set(err, MOAT_E_NOTFOUND, "no trust anchor named \"%s\"", anchor);
            moat_err_hint(err, "'moat trust list' shows the anchors; add the CA first with 'moat trust add'");
        }
        return rc;
    }
    p = a.der.data;
    if ((issuer = d2i_X509(NULL, &p, (long)a.der.len)) == NULL) {
        rc = moat_err_ossl(err, MOAT_E_INVAL, "the certificate of anchor \"%s\" does not decode", anchor);
        goto out;
    }
    if ((rc = moat_pki_crl_verify(data, len, issuer, &info, err)) != 0) {
        moat_err_prefix(err, "this CRL is not one of anchor \"%s\" (%s)", anchor, a.subject);
        moat_err_hint(err, "'moat inspect FILE' shows who issued the CRL; give the CRL of that CA");
        goto out;
    }
    if (info.next_update != 0 && info.next_update <= now) {
        char t[MOAT_PKI_TIME_SIZE];
        rc = moat_err_set(err, MOAT_E_STATE, "this CRL is out of date: its nextUpdate was %s",
                          moat_pki_time_format(info.next_update, t));
        moat_err_hint(err, "an out-of-date CRL vouches for nothing; get a fresh one from the CA");
        goto out;
    }
    if ((rc = crl_der(data, len, &der, &der_len, err)) != 0)
        goto out;
    snprintf(row.url, sizeof(row.url), "%s%s", MOAT_STORE_CRL_ADDED, anchor);
    if ((rc = moat_store_fingerprint(a.der.data, a.der.len, row.issuer_fp, err)) != 0)
        goto out;
    /* A newer CRL replaces an older one, never the other way round. */
    if ((rc = moat_store_crl_list(st, &list, err)) != 0)
        goto out;
    for (size_t i = 0; i < list.n; i++)
        if (strcmp(list.items[i].url, row.url) == 0 && strcmp(list.items[i].issuer_fp, row.issuer_fp) == 0 &&
            list.items[i].der.len > 0 && list.items[i].this_update > (int64_t)info.this_update) {
            char t[MOAT_PKI_TIME_SIZE];
            rc = moat_err_set(err, MOAT_E_STATE, "anchor \"%s\" has a newer CRL already (thisUpdate %s)",
                              anchor, moat_pki_time_format((time_t)list.items[i].this_update, t));
            moat_err_hint(err, "'moat trust list' shows it; give a CRL issued after it");
            goto out;
        }
    row.issuer_der = a.der; /* borrowed */
    moat_strlcpy(row.issuer_subject, a.subject, sizeof(row.issuer_subject));
    row.der.data = der;
    row.der.len = der_len;
    row.this_update = (int64_t)info.this_update;
    row.next_update = (int64_t)info.next_update;
    row.revoked = (int64_t)info.nrevoked;
    row.fetched_at = row.attempted_at = (int64_t)now;
    snprintf(detail, sizeof(detail), "anchor %s, %zu revoked, next update %lld", anchor, info.nrevoked,
             (long long)info.next_update);
    if ((rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = moat_store_crl_save(st, &row, err)) != 0 ||
        (rc = moat_store_audit_add(st, "trust.crl.add", anchor, detail, err)) != 0 ||
        (rc = moat_ca_commit(st, NULL, 0, NULL, err)) != 0) {
        moat_store_rollback(st);
        goto out;
    }
    out->this_update = info.this_update;
    out->next_update = info.next_update;
    out->revoked = info.nrevoked;
    moat_strlcpy(out->issuer, a.subject, sizeof(out->issuer));
out:
    moat_free(&der);
    moat_pki_crl_info_dispose(&info);
    moat_store_crl_list_dispose(&list);
    X509_free(issuer);
    moat_store_anchor_dispose(&a);
    return rc;
}

int moat_ca_trust_crls_load(moat_store_t *st, moat_ca_trust_crls_t *out, moat_err_t *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = moat_store_crl_list(st, &out->list, err)) != 0)
        return rc;
    if (out->list.n == 0)
        return 0;
    if ((out->issuers = moat_calloc(out->list.n, sizeof(*out->issuers))) == NULL ||
        (out->under = moat_calloc(out->list.n, 1)) == NULL) {
        moat_ca_trust_crls_dispose(out);
        return moat_err_set(err, MOAT_E_NOMEM, "listing the CRLs");
    }
    for (size_t i = 0; i < out->list.n; i++)
        if (moat_pki_cert_parse(out->list.items[i].issuer_der.data, out->list.items[i].issuer_der.len,
                                &out->issuers[i], NULL) != 0)
            out->issuers[i] = NULL; /* unreadable: matched only by its fingerprint */
    return 0;
}

void moat_ca_trust_crls_dispose(moat_ca_trust_crls_t *c)
{
    for (size_t i = 0; c->issuers != NULL && i < c->list.n; i++)
        X509_free(c->issuers[i]);
    moat_free(&c->issuers);
    moat_free(&c->under);
    moat_store_crl_list_dispose(&c->list);
}

/* Whether <ca> issued and signed <x> (a signature that does not verify is an answer, not an error). */
static int signed_by(X509 *ca, X509 *x)
{
    EVP_PKEY *key = X509_get0_pubkey(ca);
    int ok = key != NULL && X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, key) == 1;
    ERR_clear_error();
    return ok;
}

void moat_ca_trust_crls_under(moat_ca_trust_crls_t *c, const moat_store_anchor_t *anchor)
{
    const moat_store_crl_list_t *cl = &c->list;
    X509 *root = NULL;
    int grew = 1;

    if (moat_pki_cert_parse(anchor->der.data, anchor->der.len, &root, NULL) != 0)
        root = NULL; /* unreadable: only CRLs it issued itself are matched (by fingerprint) */
    for (size_t i = 0; i < cl->n; i++)
        c->under[i] = strcmp(cl->items[i].issuer_fp, anchor->fingerprint) == 0 ||
                      (root != NULL && c->issuers[i] != NULL && signed_by(root, c->issuers[i]));
    /* CAs further down: one level more per pass, until a pass adds none. */
    while (grew) {
        grew = 0;
        for (size_t i = 0; i < cl->n; i++)
            for (size_t k = 0; k < cl->n && !c->under[i] && c->issuers[i] != NULL; k++)
                if (c->under[k] && c->issuers[k] != NULL && signed_by(c->issuers[k], c->issuers[i]))
                    c->under[i] = grew = 1;
    }
    X509_free(root);
}
