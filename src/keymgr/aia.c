/*
 * keymgr: a chain completed from the certificates' own AIA caIssuers URLs, for a leaf installed without
 * its intermediate. Plain http only, bounded in time and size, and a fetched certificate is used only when
 * it signed the certificate below it.
 */
#include "http/http.h"
#include "keymgr/keymgr.h"

#include <openssl/x509.h>
#include <string.h>

/* An issuer certificate (or a .p7c with a few) is a few kilobytes. */
#define AIA_MAX_BYTES (64 * 1024)
#define AIA_TIMEOUT_MS 5000
/* Intermediates fetched one above the other at most. */
#define AIA_MAX_HOPS 4
#define AIA_MAX_URLS 4

/* GET <url>; on success the certificate of the answer that issued <below>, as a new reference. */
static X509 *fetch_issuer(const char *url, X509 *below, moat_err_t *err)
{
    const moat_http_fetch_t f = {.url = url,
                                 .accept = "application/pkix-cert, application/pkcs7-mime, */*",
                                 .max_body = AIA_MAX_BYTES,
                                 .timeout_ms = AIA_TIMEOUT_MS};
    moat_http_client_resp_t r;
    uint8_t *body = NULL;
    size_t len = 0;
    STACK_OF(X509) *certs = NULL;
    X509 *found = NULL;

    if (moat_http_fetch(&f, &r, &body, &len, err) != 0)
        return NULL;
    if (r.status != 200) {
        moat_err_set(err, MOAT_E_INVAL, "%s answered HTTP %d", url, r.status);
    } else if (moat_pki_certs_parse(body, len, &certs, err) != 0) {
        moat_err_prefix(err, "%s", url);
    } else {
        for (int i = 0; i < sk_X509_num(certs) && found == NULL; i++)
            if (moat_pki_cert_issued_by(below, sk_X509_value(certs, i)) &&
                X509_up_ref(sk_X509_value(certs, i)) == 1)
                found = sk_X509_value(certs, i);
        if (found == NULL)
            moat_err_set(err, MOAT_E_PKI, "the certificate at %s did not sign the one below it", url);
    }
    sk_X509_pop_free(certs, X509_free);
    moat_free(&body);
    return found;
}

int moat_keymgr_fetch_issuers(X509 *leaf, STACK_OF(X509) * pile, moat_keymgr_fetched_t *out, moat_err_t *err)
{
    memset(out, 0, sizeof(*out));
    for (int hop = 0; hop < AIA_MAX_HOPS; hop++) {
        STACK_OF(X509) *chain = NULL;
        char *missing = NULL, urls[AIA_MAX_URLS][MOAT_PKI_URL_SIZE];
        moat_err_t e = {0};
        X509 *top, *got = NULL;
        size_t n;

        /* A pile that does not connect is the install's error to report, with its own words. */
        if (moat_pki_chain_build(leaf, pile, &chain, &missing, &e) != 0)
            return 0;
        top = sk_X509_num(chain) > 0 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : leaf;
        /* Done: the chain reaches a root, or the caller gave an intermediate (its root is the client's). */
        if (missing == NULL || (hop == 0 && sk_X509_num(chain) > 0)) {
            moat_free(&missing);
            sk_X509_pop_free(chain, X509_free);
            return 0;
        }
        moat_free(&missing);
        n = moat_pki_cert_ca_issuers_urls(top, urls, AIA_MAX_URLS);
        for (size_t i = 0; i < n && got == NULL; i++) {
            moat_err_clear(&e);
            got = fetch_issuer(urls[i], top, &e);
            if (got != NULL && out->n == 0)
                moat_strlcpy(out->url, urls[i], sizeof(out->url));
        }
        sk_X509_pop_free(chain, X509_free);
        if (got == NULL) {
            if (n > 0 && out->n == 0)
                snprintf(out->note, sizeof(out->note), "%s", e.msg);
            return 0;
        }
        if (!sk_X509_push(pile, got)) {
            X509_free(got);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        }
        out->n++;
        if (X509_check_issued(got, got) == X509_V_OK)
            return 0;
    }
    return 0;
}
