#include "fixtures.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>

static int import_buf(const void *data, size_t len, const char *pw, moat_pki_import_t *imp, moat_err_t *err)
{
    return moat_pki_import(data, len, pw, pw != NULL, imp, err);
}

static void test_pem_bundle(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *cert = fx_root(key, "bundle");
    char *cpem = NULL, *kpem = NULL, *all;
    size_t clen = 0, klen = 0;
    moat_pki_import_t imp;

    CHECK_EQ(moat_pki_cert_to_pem(cert, NULL, &cpem, &clen, &err), 0);
    CHECK_EQ(moat_pki_key_to_pem(key, &kpem, &klen, &err), 0);
    all = malloc(clen + klen + 64);
    snprintf(all, clen + klen + 64, "Bag Attributes: x\n%s\nsome text\n%s", kpem, cpem);
    CHECK_EQ(import_buf(all, strlen(all), NULL, &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK_EQ(sk_X509_num(imp.certs), 1);
    CHECK_STR(imp.format, "PEM");
    CHECK(!imp.used_password);
    CHECK(moat_pki_pubkey_eq(imp.keys[0], key));
    CHECK_EQ(moat_pki_find_cert_for_key(imp.keys[0], imp.certs), 0);
    moat_pki_import_dispose(&imp);
    moat_pki_import_dispose(&imp);

    /* A certificate only: fine. A CSR: refused with a hint. Damaged base64: refused. */
    CHECK_EQ(import_buf(cpem, clen, NULL, &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 0);
    moat_pki_import_dispose(&imp);
    {
        X509_REQ *req = fx_csr(key, "csr.example.com", NULL);
        char *rpem = NULL;
        size_t rlen = 0;
        CHECK_EQ(moat_pki_csr_to_pem(req, &rpem, &rlen, &err), 0);
        CHECK_EQ(import_buf(rpem, rlen, NULL, &imp, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "CERTIFICATE REQUEST");
        CHECK_CONTAINS(err.hint, "ca sign");
        moat_free(&rpem);
        X509_REQ_free(req);
    }
    cpem[clen / 2] = '*';
    CHECK_EQ(import_buf(cpem, clen, NULL, &imp, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "damaged");
    CHECK(imp.certs == NULL && imp.keys == NULL);
    CHECK_EQ(import_buf("-----BEGIN NOTHING-----\n", 24, NULL, &imp, &err), MOAT_E_INVAL);
    CHECK_EQ(import_buf("", 0, NULL, &imp, &err), MOAT_E_INVAL);
    CHECK_EQ(ERR_peek_error(), 0);
    free(all);
    moat_free(&cpem);
    moat_free_secret(&kpem, klen);
    X509_free(cert);
    EVP_PKEY_free(key);
}

static void test_encrypted_pkcs8_pem(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_ED25519);
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    moat_pki_import_t imp;

    PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), "pw", 2, NULL, NULL);
    len = BIO_get_mem_data(b, &data);
    CHECK_EQ(import_buf(data, (size_t)len, "pw", &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK(imp.used_password);
    CHECK(moat_pki_pubkey_eq(imp.keys[0], key));
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(data, (size_t)len, "wrong", &imp, &err), MOAT_E_PASSWORD);
    CHECK_CONTAINS(err.msg, "wrong password");
    CHECK_EQ(import_buf(data, (size_t)len, NULL, &imp, &err), MOAT_E_PASSWORD);
    CHECK_CONTAINS(err.msg, "no password");
    CHECK_CONTAINS(err.hint, "--password-file");
    CHECK_EQ(ERR_peek_error(), 0);
    BIO_free(b);
    EVP_PKEY_free(key);
}

static void test_fixtures(void)
{
    moat_err_t err = {0};
    moat_pki_import_t imp;
    size_t len;
    unsigned char *d;

    d = fx_read("rsa_trad_enc.pem", &len);
    CHECK_EQ(import_buf(d, len, "secret", &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK(imp.nkeys == 1 && moat_pki_key_alg(imp.keys[0]) == MOAT_PKI_ALG_RSA_2048);
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(d, len, "nope", &imp, &err), MOAT_E_PASSWORD);
    CHECK_EQ(import_buf(d, len, NULL, &imp, &err), MOAT_E_PASSWORD);
    free(d);

    d = fx_read("ec_trad.pem", &len);
    CHECK_EQ(import_buf(d, len, NULL, &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK(imp.nkeys == 1 && moat_pki_key_alg(imp.keys[0]) == MOAT_PKI_ALG_EC_P256);
    moat_pki_import_dispose(&imp);
    free(d);

    d = fx_read("ec_p8_enc.der", &len);
    CHECK_EQ(import_buf(d, len, "secret", &imp, &err), 0);
    CHECK_STR(imp.format, "encrypted PKCS#8");
    CHECK_EQ(imp.nkeys, 1);
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(d, len, "", &imp, &err), MOAT_E_PASSWORD);
    CHECK_EQ(import_buf(d, len - 3, "secret", &imp, &err), MOAT_E_INVAL);
    free(d);

    d = fx_read("rsa.crt", &len);
    CHECK_EQ(import_buf(d, len, NULL, &imp, &err), 0);
    CHECK_EQ(sk_X509_num(imp.certs), 1);
    moat_pki_import_dispose(&imp);
    free(d);

    /* Legacy .pfx: RC2-40 certificate bag, 3DES key bag, SHA-1 MAC. */
    d = fx_read("legacy.pfx", &len);
    CHECK_EQ(import_buf(d, len, "secret", &imp, &err), 0);
    CHECK_STR(imp.format, "PKCS#12");
    CHECK_EQ(imp.nkeys, 1);
    CHECK_EQ(sk_X509_num(imp.certs), 1);
    CHECK_STR(imp.friendly_name, "legacy friendly");
    CHECK(imp.used_password);
    CHECK(imp.nkeys == 1 && moat_pki_find_cert_for_key(imp.keys[0], imp.certs) == 0);
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(d, len, "Secret", &imp, &err), MOAT_E_PASSWORD);
    CHECK_CONTAINS(err.msg, "wrong password for the PKCS#12 file");
    CHECK_EQ(import_buf(d, len, NULL, &imp, &err), MOAT_E_PASSWORD);
    CHECK_CONTAINS(err.msg, "no password");
    CHECK_EQ(import_buf(d, len / 2, "secret", &imp, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "truncated");
    free(d);

    d = fx_read("modern.pfx", &len);
    CHECK_EQ(import_buf(d, len, "secret", &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK_EQ(sk_X509_num(imp.certs), 1);
    CHECK_STR(imp.friendly_name, "modern friendly");
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(d, len, "x", &imp, &err), MOAT_E_PASSWORD);
    free(d);

    /* Exported with an empty password: opens without one, and with "". */
    d = fx_read("nopass.pfx", &len);
    CHECK_EQ(import_buf(d, len, NULL, &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    CHECK(!imp.used_password);
    moat_pki_import_dispose(&imp);
    CHECK_EQ(import_buf(d, len, "", &imp, &err), 0);
    CHECK_EQ(imp.nkeys, 1);
    moat_pki_import_dispose(&imp);
    free(d);
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_der_forms(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P384);
    X509 *cert = fx_root(key, "der");
    unsigned char *der = NULL, junk[300];
    size_t len = 0;
    moat_pki_import_t imp;

    CHECK_EQ(moat_pki_cert_to_der(cert, &der, &len, &err), 0);
    CHECK_EQ(import_buf(der, len, NULL, &imp, &err), 0);
    CHECK_STR(imp.format, "DER certificate");
    moat_pki_import_dispose(&imp);
    moat_free(&der);
    CHECK_EQ(moat_pki_key_to_pkcs8(key, &der, &len, &err), 0);
    CHECK_EQ(import_buf(der, len, NULL, &imp, &err), 0);
    CHECK_STR(imp.format, "PKCS#8");
    CHECK_EQ(imp.nkeys, 1);
    moat_pki_import_dispose(&imp);
    moat_free_secret(&der, len);
    RAND_bytes(junk, sizeof(junk));
    junk[0] = 0x30; /* a SEQUENCE of 255 random bytes: complete, but nothing moat knows */
    junk[1] = 0x81;
    junk[2] = 0xff;
    CHECK_EQ(import_buf(junk, sizeof(junk), NULL, &imp, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.hint, "PKCS#12");
    CHECK_EQ(ERR_peek_error(), 0);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* The iteration caps are enforced before any key derivation runs. */
static void test_iteration_caps(void)
{
    moat_err_t err = {0};
    moat_pki_import_t imp;
    unsigned char salt[8] = {1, 2, 3, 4, 5, 6, 7, 8}, iv[16] = {0};
    unsigned char *der = NULL;
    int n;
    time_t t0 = time(NULL);

    /* Encrypted PKCS#8 asking for 2^31-1 PBKDF2 iterations. */
    {
        X509_ALGOR *alg = PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), 2147483647, salt, 8, iv, NID_hmacWithSHA256);
        X509_SIG *sig = X509_SIG_new();
        X509_ALGOR *a = NULL;
        ASN1_OCTET_STRING *digest = NULL;
        X509_SIG_getm(sig, &a, &digest);
        CHECK_EQ(X509_ALGOR_copy(a, alg), 1);
        ASN1_OCTET_STRING_set(digest, salt, 8);
        n = i2d_X509_SIG(sig, &der);
        CHECK(n > 0);
        CHECK_EQ(import_buf(der, (size_t)n, "pw", &imp, &err), MOAT_E_LIMIT);
        CHECK_CONTAINS(err.msg, "2147483647 iterations");
        CHECK_EQ(import_buf(der, (size_t)n, NULL, &imp, &err), MOAT_E_LIMIT);
        OPENSSL_free(der);
        der = NULL;
        X509_SIG_free(sig);
        X509_ALGOR_free(alg);
    }
    /* PKCS#12 whose MAC asks for 2^31-1 iterations. */
    {
        EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
        X509 *cert = fx_root(key, "mac");
        PKCS12 *p12 =
            PKCS12_create("pw", NULL, key, cert, NULL, NID_aes_256_cbc, NID_aes_256_cbc, 1000, -1, 0);
        CHECK(p12 != NULL);
        CHECK_EQ(PKCS12_setup_mac(p12, 2147483647, salt, 8, EVP_sha256()), 1);
        n = i2d_PKCS12(p12, &der);
        CHECK_EQ(import_buf(der, (size_t)n, "pw", &imp, &err), MOAT_E_LIMIT);
        CHECK_CONTAINS(err.msg, "MAC");
        OPENSSL_free(der);
        PKCS12_free(p12);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    CHECK(time(NULL) - t0 < 10);
    ERR_clear_error();
}

static void test_export_roundtrip(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *key = fx_key(MOAT_PKI_ALG_RSA_2048),
             *other = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "Export Root"), *leaf = fx_issue(ca, ca_key, key, "exp.example.com", 0);
    STACK_OF(X509) *chain = sk_X509_new_null();
    moat_pki_import_t imp;
    unsigned char *p12der = NULL;
    size_t len = 0;
    sk_X509_push(chain, ca);

    for (int legacy = 0; legacy <= 1; legacy++) {
        const unsigned char *p;
        PKCS12 *p12;
        const X509_ALGOR *macalg = NULL;
        const ASN1_OBJECT *obj = NULL;
        CHECK_EQ(
            moat_pki_pkcs12_export(key, leaf, chain, "exp name", "pass word", legacy, &p12der, &len, &err),
            0);
        p = p12der;
        p12 = d2i_PKCS12(NULL, &p, (long)len);
        CHECK(p12 != NULL);
        PKCS12_get0_mac(NULL, &macalg, NULL, NULL, p12);
        X509_ALGOR_get0(&obj, NULL, NULL, macalg);
        CHECK_EQ(OBJ_obj2nid(obj), legacy ? NID_sha1 : NID_sha256);
        PKCS12_free(p12);
        CHECK_EQ(import_buf(p12der, len, "pass word", &imp, &err), 0);
        CHECK_EQ(imp.nkeys, 1);
        CHECK_EQ(sk_X509_num(imp.certs), 2);
        CHECK_STR(imp.friendly_name, "exp name");
        CHECK(imp.nkeys == 1 && moat_pki_pubkey_eq(imp.keys[0], key));
        CHECK(imp.nkeys == 1 && EVP_PKEY_eq(imp.keys[0], key) == 1);
        CHECK(imp.nkeys == 1 &&
              X509_cmp(sk_X509_value(imp.certs, moat_pki_find_cert_for_key(imp.keys[0], imp.certs)), leaf) ==
                  0);
        moat_pki_import_dispose(&imp);
        CHECK_EQ(import_buf(p12der, len, "pass-word", &imp, &err), MOAT_E_PASSWORD);
        moat_free_secret(&p12der, len);
    }
    CHECK_EQ(moat_pki_pkcs12_export(other, leaf, NULL, NULL, "pw", false, &p12der, &len, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "does not belong");
    CHECK_EQ(moat_pki_pkcs12_export(key, leaf, NULL, NULL, NULL, false, &p12der, &len, &err), MOAT_E_INVAL);
    CHECK(p12der == NULL);
    sk_X509_free(chain);
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

int main(void)
{
    RUN(test_pem_bundle);
    RUN(test_encrypted_pkcs8_pem);
    RUN(test_fixtures);
    RUN(test_der_forms);
    RUN(test_iteration_caps);
    RUN(test_export_roundtrip);
    return harness_done();
}
