#include "harness.h"

#include "pki/pki.h"

#include <openssl/err.h>
#include <string.h>

static void test_alg_names(void)
{
    moat_err_t err = {0};
    moat_pki_alg_t alg = MOAT_PKI_ALG_OTHER;
    static const char *names[] = {"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(names); i++) {
        CHECK_EQ(moat_pki_alg_parse(names[i], &alg, &err), 0);
        CHECK_STR(moat_pki_alg_name(alg), names[i]);
    }
    CHECK_EQ(moat_pki_alg_parse("EC-P256", &alg, &err), 0);
    CHECK_EQ(alg, MOAT_PKI_ALG_EC_P256);
    CHECK_EQ(MOAT_PKI_ALG_DEFAULT, MOAT_PKI_ALG_EC_P256);
    CHECK_EQ(moat_pki_alg_parse("dsa-1024", &alg, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "dsa-1024");
    CHECK_CONTAINS(err.hint, "ec-p256");
    CHECK_EQ(moat_pki_alg_parse("", &alg, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_alg_parse(NULL, &alg, &err), MOAT_E_INVAL);
    CHECK_STR(moat_pki_alg_name(MOAT_PKI_ALG_OTHER), "other");
}

static int progress_calls;
static int on_progress(void *arg, int phase)
{
    (void)phase;
    CHECK(arg == &progress_calls);
    progress_calls++;
    return 1;
}

static int abort_progress(void *arg, int phase)
{
    (void)arg;
    (void)phase;
    return 0;
}

static void test_generate_each(void)
{
    moat_err_t err = {0};
    static const moat_pki_alg_t algs[] = {MOAT_PKI_ALG_EC_P256, MOAT_PKI_ALG_EC_P384, MOAT_PKI_ALG_ED25519,
                                          MOAT_PKI_ALG_RSA_2048};
    static const int bits[] = {256, 384, 255, 2048};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(algs); i++) {
        EVP_PKEY *key = NULL;
        char desc[32];
        CHECK_EQ(moat_pki_key_generate(algs[i], NULL, NULL, &key, &err), 0);
        CHECK_EQ(moat_pki_key_alg(key), algs[i]);
        CHECK_EQ(moat_pki_key_bits(key), bits[i]);
        moat_pki_key_describe(key, desc, sizeof(desc));
        CHECK_STR(desc, moat_pki_alg_name(algs[i]));
        EVP_PKEY_free(key);
    }
}

static void test_generate_progress(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = NULL;
    progress_calls = 0;
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_RSA_2048, on_progress, &progress_calls, &key, &err), 0);
    CHECK(progress_calls > 0);
    EVP_PKEY_free(key);
    key = NULL;
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_RSA_2048, abort_progress, NULL, &key, &err), MOAT_E_PKI);
    CHECK(key == NULL);
    CHECK_CONTAINS(err.msg, "rsa-2048");
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_OTHER, NULL, NULL, &key, &err), MOAT_E_INVAL);
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_other_key_describe(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    char desc[32];
    CHECK(key != NULL);
    CHECK_EQ(moat_pki_key_alg(key), MOAT_PKI_ALG_OTHER);
    moat_pki_key_describe(key, desc, sizeof(desc));
    CHECK_STR(desc, "ec-secp256k1");
    EVP_PKEY_free(key);
    key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    moat_pki_key_describe(key, desc, sizeof(desc));
    CHECK_STR(desc, "rsa-1024");
    CHECK_EQ(moat_pki_key_alg(key), MOAT_PKI_ALG_OTHER);
    EVP_PKEY_free(key);
    moat_pki_key_describe(NULL, desc, sizeof(desc));
    CHECK_STR(desc, "none");
}

static void test_pkcs8_roundtrip(void)
{
    moat_err_t err = {0};
    static const moat_pki_alg_t algs[] = {MOAT_PKI_ALG_EC_P256, MOAT_PKI_ALG_ED25519};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(algs); i++) {
        EVP_PKEY *key = NULL, *back = NULL, *pub = NULL;
        unsigned char *der = NULL, *pder = NULL;
        size_t len = 0, plen = 0;
        char *pem = NULL;
        size_t pemlen = 0;
        CHECK_EQ(moat_pki_key_generate(algs[i], NULL, NULL, &key, &err), 0);
        CHECK_EQ(moat_pki_key_to_pkcs8(key, &der, &len, &err), 0);
        CHECK_EQ(moat_pki_key_from_pkcs8(der, len, &back, &err), 0);
        CHECK(moat_pki_pubkey_eq(key, back));
        CHECK_EQ(EVP_PKEY_eq(key, back), 1);
        /* Trailing garbage and truncation are refused. */
        CHECK_EQ(moat_pki_key_from_pkcs8(der, len - 1, &pub, &err), MOAT_E_INVAL);
        moat_free_secret(&der, len);
        CHECK(der == NULL);

        CHECK_EQ(moat_pki_pubkey_to_der(key, &pder, &plen, &err), 0);
        CHECK_EQ(moat_pki_pubkey_from_der(pder, plen, &pub, &err), 0);
        CHECK(moat_pki_pubkey_eq(pub, key));
        /* A public key is not a private key. */
        CHECK_EQ(moat_pki_key_from_pkcs8(pder, plen, &back, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_key_to_pkcs8(pub, &der, &len, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_key_to_pem(key, &pem, &pemlen, &err), 0);
        CHECK_CONTAINS(pem, "-----BEGIN PRIVATE KEY-----");
        CHECK_EQ(strlen(pem), pemlen);
        moat_free_secret(&pem, pemlen);
        moat_free(&pder);
        EVP_PKEY_free(key);
        EVP_PKEY_free(back);
        EVP_PKEY_free(pub);
    }
    {
        unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x00, 0x00};
        EVP_PKEY *k = NULL;
        CHECK_EQ(moat_pki_key_from_pkcs8(junk, sizeof(junk), &k, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_pubkey_from_der(junk, sizeof(junk), &k, &err), MOAT_E_INVAL);
        CHECK_EQ(moat_pki_key_from_pkcs8(NULL, 0, &k, &err), MOAT_E_INVAL);
        CHECK(k == NULL);
    }
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_eq_and_fingerprint(void)
{
    moat_err_t err = {0};
    EVP_PKEY *a = NULL, *b = NULL, *r = NULL;
    char fa[MOAT_PKI_FINGERPRINT_SIZE], fb[MOAT_PKI_FINGERPRINT_SIZE];
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &a, &err), 0);
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &b, &err), 0);
    CHECK_EQ(moat_pki_key_generate(MOAT_PKI_ALG_ED25519, NULL, NULL, &r, &err), 0);
    CHECK(moat_pki_pubkey_eq(a, a));
    CHECK(!moat_pki_pubkey_eq(a, b));
    CHECK(!moat_pki_pubkey_eq(a, r));
    CHECK(!moat_pki_pubkey_eq(a, NULL));
    CHECK_EQ(ERR_peek_error(), 0);
    CHECK_EQ(moat_pki_pubkey_fingerprint(a, fa, &err), 0);
    CHECK_EQ(moat_pki_pubkey_fingerprint(b, fb, &err), 0);
    CHECK_EQ(strlen(fa), 95);
    CHECK_EQ(fa[2], ':');
    CHECK(strcmp(fa, fb) != 0);
    CHECK_EQ(moat_pki_pubkey_fingerprint(a, fb, &err), 0);
    CHECK_STR(fa, fb);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    EVP_PKEY_free(r);
}

static void test_time(void)
{
    char buf[MOAT_PKI_TIME_SIZE];
    moat_err_t err = {0};
    ASN1_TIME *t = ASN1_TIME_set(NULL, 1777550400); /* 2026-04-30T12:00:00Z */
    time_t back = 0;
    CHECK_STR(moat_pki_time_format(0, buf), "1970-01-01T00:00:00Z");
    CHECK_STR(moat_pki_time_format(1777550400, buf), "2026-04-30T12:00:00Z");
    CHECK_EQ(moat_pki_asn1_time_to_time(t, &back, &err), 0);
    CHECK_EQ(back, 1777550400);
    ASN1_TIME_free(t);
    /* GeneralizedTime past 2049 */
    t = ASN1_TIME_set(NULL, (time_t)2600000000);
    CHECK_EQ(moat_pki_asn1_time_to_time(t, &back, &err), 0);
    CHECK_EQ(back, 2600000000);
    ASN1_TIME_free(t);
    CHECK_EQ(moat_pki_asn1_time_to_time(NULL, &back, &err), MOAT_E_INVAL);
}

int main(void)
{
    RUN(test_alg_names);
    RUN(test_generate_each);
    RUN(test_generate_progress);
    RUN(test_other_key_describe);
    RUN(test_pkcs8_roundtrip);
    RUN(test_eq_and_fingerprint);
    RUN(test_time);
    return harness_done();
}
