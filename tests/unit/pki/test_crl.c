#include "fixtures.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static void test_reasons(void)
{
    moat_err_t err = {0};
    moat_pki_reason_t r;
    CHECK_EQ(moat_pki_reason_parse("key-compromise", &r, &err), 0);
    CHECK_EQ(r, MOAT_PKI_REASON_KEY_COMPROMISE);
    CHECK_EQ(moat_pki_reason_parse("keyCompromise", &r, &err), 0);
    CHECK_EQ(r, MOAT_PKI_REASON_KEY_COMPROMISE);
    CHECK_EQ(moat_pki_reason_parse("SUPERSEDED", &r, &err), 0);
    CHECK_EQ(r, MOAT_PKI_REASON_SUPERSEDED);
    CHECK_EQ(moat_pki_reason_parse("cessationOfOperation", &r, &err), 0);
    CHECK_EQ(r, MOAT_PKI_REASON_CESSATION_OF_OPERATION);
    CHECK_EQ(moat_pki_reason_parse("stolen", &r, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "stolen");
    CHECK_CONTAINS(err.hint, "key-compromise");
    CHECK_EQ(moat_pki_reason_parse("key", &r, &err), MOAT_E_INVAL);
    CHECK_STR(moat_pki_reason_name(MOAT_PKI_REASON_CA_COMPROMISE), "ca-compromise");
    CHECK_STR(moat_pki_reason_name(42), "unknown");
}

static void test_crl(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *lk = fx_key(MOAT_PKI_ALG_EC_P256),
             *other = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "CRL Root"), *leaf = fx_issue(ca, ca_key, lk, "revoked.example.com", 0);
    moat_pki_cert_info_t info;
    time_t now = time(NULL);
    X509_CRL *crl = NULL;
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *num;
    ASN1_ENUMERATED *reason;
    unsigned char *der = NULL;
    char *pem = NULL;
    size_t len = 0;

    CHECK_EQ(moat_pki_cert_info(leaf, &info, &err), 0);
    {
        moat_pki_revoked_t entries[] = {
            {.serial = info.serial, .revoked_at = now - 60, .reason = MOAT_PKI_REASON_KEY_COMPROMISE},
            {.serial = "0A1B2C", .revoked_at = now - 120, .reason = MOAT_PKI_REASON_UNSPECIFIED},
        };
        CHECK_EQ(moat_pki_crl_new(ca, ca_key, 7, now, now + 86400, entries, 2, &crl, &err), 0);
    }
    CHECK_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    CHECK_EQ(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    CHECK(num != NULL && ASN1_INTEGER_get(num) == 7);
    ASN1_INTEGER_free(num);
    CHECK(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) >= 0);
    CHECK_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
    CHECK_EQ(X509_CRL_get0_by_cert(crl, &rev, leaf), 1);
    reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
    CHECK(reason != NULL && ASN1_ENUMERATED_get(reason) == MOAT_PKI_REASON_KEY_COMPROMISE);
    ASN1_ENUMERATED_free(reason);

    /* A verifier that checks CRLs rejects the revoked leaf. */
    {
        X509_STORE *st = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        X509_STORE_add_cert(st, ca);
        X509_STORE_add_crl(st, crl);
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
        X509_STORE_CTX_init(ctx, st, leaf, NULL);
        CHECK(X509_verify_cert(ctx) != 1);
        CHECK_EQ(X509_STORE_CTX_get_error(ctx), X509_V_ERR_CERT_REVOKED);
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(st);
        ERR_clear_error();
    }
    CHECK_EQ(moat_pki_crl_to_der(crl, &der, &len, &err), 0);
    CHECK(len > 100);
    CHECK_EQ(moat_pki_crl_to_pem(crl, &pem, &len, &err), 0);
    CHECK_CONTAINS(pem, "-----BEGIN X509 CRL-----");
    /* The same text OpenSSL's own writer gives. */
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *mem;
        long n;
        CHECK(b != NULL && PEM_write_bio_X509_CRL(b, crl) == 1);
        n = BIO_get_mem_data(b, &mem);
        CHECK_EQ((size_t)n, len);
        CHECK(memcmp(mem, pem, len) == 0);
        BIO_free(b);
    }
    moat_free(&der);
    moat_free(&pem);
    X509_CRL_free(crl);
    crl = NULL;

    /* An empty CRL is fine. */
    CHECK_EQ(moat_pki_crl_new(ca, ca_key, 0, now, now + 3600, NULL, 0, &crl, &err), 0);
    X509_CRL_free(crl);
    crl = NULL;
    /* Bad input. */
    {
        moat_pki_revoked_t bad = {.serial = "XYZ", .revoked_at = now, .reason = 0};
        moat_pki_revoked_t badr = {.serial = "01", .revoked_at = now, .reason = 7};
        CHECK_EQ(moat_pki_crl_new(ca, ca_key, 1, now, now + 10, &bad, 1, &crl, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "XYZ");
        CHECK_EQ(moat_pki_crl_new(ca, ca_key, 1, now, now + 10, &badr, 1, &crl, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_crl_new(ca, ca_key, 1, now, now, NULL, 0, &crl, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_crl_new(ca, ca_key, -1, now, now + 10, NULL, 0, &crl, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_crl_new(ca, other, 1, now, now + 10, NULL, 0, &crl, &err), MOAT_E_PKI);
        CHECK(crl == NULL);
    }
    CHECK_EQ(ERR_peek_error(), 0);
    moat_pki_cert_info_dispose(&info);
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(other);
}

/* Another CA's CRL: accepted only when its issuer signed it; serial keys, times and scope. */
static void test_crl_verify(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *lk = fx_key(MOAT_PKI_ALG_EC_P256),
             *other_key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "Corp Root"), *other = fx_root(other_key, "Other Root"),
         *leaf = fx_issue(ca, ca_key, lk, "alice", 0);
    time_t now = time(NULL);
    X509_CRL *crl = NULL;
    moat_pki_crl_info_t info;
    unsigned char *der = NULL;
    char *pem = NULL;
    size_t len = 0, plen = 0;
    char key[MOAT_PKI_SERIAL_KEY_SIZE];
    moat_pki_revoked_t entries[] = {
        {.serial = "00FF", .revoked_at = now - 60, .reason = MOAT_PKI_REASON_KEY_COMPROMISE},
        {.serial = "0A1B2C", .revoked_at = now - 120, .reason = MOAT_PKI_REASON_UNSPECIFIED},
    };

    CHECK_EQ(moat_pki_crl_new(ca, ca_key, 3, now - 10, now + 3600, entries, 2, &crl, &err), 0);
    CHECK_EQ(moat_pki_crl_to_der(crl, &der, &len, &err), 0);
    CHECK_EQ(moat_pki_crl_to_pem(crl, &pem, &plen, &err), 0);
    CHECK_EQ(moat_pki_crl_verify(der, len, ca, &info, &err), 0);
    CHECK_EQ(info.nrevoked, 2);
    if (info.nrevoked == 2) {
        CHECK_STR(info.revoked[0], "0A1B2C");
        CHECK_STR(info.revoked[1], "FF");
    }
    CHECK_EQ((long long)info.this_update, (long long)(now - 10));
    CHECK_EQ((long long)info.next_update, (long long)(now + 3600));
    moat_pki_crl_info_dispose(&info);
    CHECK_EQ(moat_pki_crl_verify((unsigned char *)pem, plen, ca, &info, &err), 0);
    CHECK_EQ(info.nrevoked, 2);
    moat_pki_crl_info_dispose(&info);

    /* Another CA, a broken signature, trailing bytes, garbage: refused with the reason. */
    CHECK_EQ(moat_pki_crl_verify(der, len, other, &info, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "issued by another CA");
    der[len - 3] ^= 0x55;
    CHECK_EQ(moat_pki_crl_verify(der, len, ca, &info, &err), MOAT_E_INVAL);
    der[len - 3] ^= 0x55;
    {
        unsigned char *longer = moat_malloc(len + 1);
        memcpy(longer, der, len);
        longer[len] = 0;
        CHECK_EQ(moat_pki_crl_verify(longer, len + 1, ca, &info, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "follow");
        moat_free(&longer);
    }
    CHECK_EQ(moat_pki_crl_verify((const unsigned char *)"hello", 5, ca, &info, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "not a CRL");
    CHECK(info.revoked == NULL && info.nrevoked == 0);
    moat_free(&der);
    moat_free(&pem);

    /* A CRL signed by an impostor that took the issuer's name does not verify. */
    {
        X509 *twin = fx_root(other_key, "Corp Root");
        X509_CRL *forged = NULL;
        CHECK_EQ(moat_pki_crl_new(twin, other_key, 1, now, now + 60, NULL, 0, &forged, &err), 0);
        CHECK_EQ(moat_pki_crl_to_der(forged, &der, &len, &err), 0);
        CHECK_EQ(moat_pki_crl_verify(der, len, ca, &info, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "signature");
        moat_free(&der);
        X509_CRL_free(forged);
        X509_free(twin);
    }
    /* A delta CRL is not complete. */
    {
        ASN1_INTEGER *base = ASN1_INTEGER_new();
        ASN1_INTEGER_set(base, 2);
        CHECK_EQ(X509_CRL_add1_ext_i2d(crl, NID_delta_crl, base, 1, 0), 1);
        CHECK(X509_CRL_sign(crl, ca_key, NULL) > 0);
        ASN1_INTEGER_free(base);
        CHECK_EQ(moat_pki_crl_to_der(crl, &der, &len, &err), 0);
        CHECK_EQ(moat_pki_crl_verify(der, len, ca, &info, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "delta");
        moat_free(&der);
    }

    /* Serial keys are moat's one spelling of a serial: whole bytes, like the store's (issue 11). */
    {
        ASN1_INTEGER *a = ASN1_INTEGER_new();
        ASN1_INTEGER_set(a, 0x0a);
        CHECK_EQ(moat_pki_serial_key(a, key), 0);
        CHECK_STR(key, "0A");
        ASN1_INTEGER_set(a, 0);
        CHECK_EQ(moat_pki_serial_key(a, key), 0);
        CHECK_STR(key, "00");
        ASN1_INTEGER_free(a);
    }

    /* Distribution points: http URLs only, none for a certificate without the extension. */
    {
        char urls[4][MOAT_PKI_URL_SIZE];
        X509V3_CTX ctx;
        X509_EXTENSION *ext;
        CHECK_EQ(moat_pki_cert_crl_urls(leaf, urls, 4), 0);
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, ca, leaf, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_crl_distribution_points,
                                  "URI:ldap://x/cn=crl,URI:http://127.0.0.1:8/a.crl,URI:HTTP://crl.example/b,"
                                  "URI:http://crl.example/a\x7f");
        CHECK(ext != NULL);
        CHECK_EQ(X509_add_ext(leaf, ext, -1), 1);
        X509_EXTENSION_free(ext);
        CHECK_EQ(moat_pki_cert_crl_urls(leaf, urls, 4), 2);
        CHECK_STR(urls[0], "http://127.0.0.1:8/a.crl");
        CHECK_STR(urls[1], "HTTP://crl.example/b");
        CHECK_EQ(moat_pki_cert_crl_urls(leaf, urls, 1), 1);
    }
    CHECK_EQ(ERR_peek_error(), 0);
    X509_CRL_free(crl);
    X509_free(ca);
    X509_free(other);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(other_key);
}

int main(void)
{
    RUN(test_reasons);
    RUN(test_crl);
    RUN(test_crl_verify);
    return harness_done();
}
