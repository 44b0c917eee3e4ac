/* ca/crl.c: the CRLs of moat's CA re-signed into the store, read back, and when they fall due. */
#include "../pki/fixtures.h"

#include "ca/ca.h"

#include <openssl/pem.h>
#include <unistd.h>

static char dir[64], path[128], keyfile[128];

static moat_store_t *open_store(void)
{
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    snprintf(dir, sizeof(dir), "/tmp/moat-ca-test-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/moat.db", dir);
    snprintf(keyfile, sizeof(keyfile), "%s/moat.db.key", dir);
    CHECK_EQ(moat_store_open(path, keyfile, MOAT_STORE_CREATE, &st, &err), 0);
    return st;
}

static void remove_store(moat_store_t *st)
{
    char f[160];
    const char *suffix[] = {"", "-wal", "-shm", ".key"};
    moat_store_close(st);
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        (void)unlink(f);
    }
    (void)rmdir(dir);
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    long v = n != NULL ? ASN1_INTEGER_get(n) : -1;
    ASN1_INTEGER_free(n);
    return v;
}

static void test_refresh_and_read_back(void)
{
    moat_store_t *st = open_store();
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *k1 = fx_key(MOAT_PKI_ALG_EC_P256),
             *k2 = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "CRL Unit Root");
    X509 *revoked = fx_issue(ca, ca_key, k1, "gone.example.com", MOAT_PKI_PROFILE_SERVER);
    X509 *kept = fx_issue(ca, ca_key, k2, "kept.example.com", MOAT_PKI_PROFILE_SERVER);
    moat_store_ca_t row = {.role = MOAT_CA_ROOT};
    moat_store_issued_t is = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    char *pem = malloc(MOAT_CA_CRL_PEM_MAX);
    X509_CRL *crl = NULL;
    moat_pki_cert_info_t info = {0};
    X509 *certs[2] = {revoked, kept};

    /* No CRL yet: none read back, and one is due. */
    CHECK_EQ(moat_ca_crl_stored(st, MOAT_CA_ROOT, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err), 0);
    CHECK(crl == NULL);
    CHECK(moat_ca_crl_due(NULL, time(NULL)));

    CHECK_EQ(moat_store_begin(st, &err), 0);
    CHECK_EQ(moat_pki_cert_to_der(ca, &der, &der_len, &err), 0);
    row.der.data = der;
    row.der.len = der_len;
    CHECK_EQ(moat_store_ca_set(st, &row, &err), 0);
    moat_free(&der);
    for (int i = 0; i < 2; i++) {
        memset(&is, 0, sizeof(is));
        CHECK_EQ(moat_pki_cert_to_der(certs[i], &der, &der_len, &err), 0);
        is.der.data = der;
        is.der.len = der_len;
        is.issuer = MOAT_CA_ROOT;
        snprintf(is.profile, sizeof(is.profile), "server");
        CHECK_EQ(moat_store_issued_add(st, &is, &err), 0);
        moat_free(&der);
    }
    CHECK_EQ(moat_pki_cert_info(revoked, &info, &err), 0);
    CHECK_EQ(moat_store_issued_revoke(st, info.serial, 1700000000, MOAT_PKI_REASON_KEY_COMPROMISE, &err), 0);
    CHECK_EQ(moat_ca_crl_refresh(st, MOAT_CA_ROOT, ca, ca_key, &err), 0);
    CHECK_EQ(moat_store_commit(st, &err), 0);

    CHECK_EQ(moat_ca_crl_stored(st, MOAT_CA_ROOT, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err), 0);
    CHECK(crl != NULL);
    CHECK_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    CHECK_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
    {
        X509_REVOKED *r = NULL;
        CHECK_EQ(X509_CRL_get0_by_cert(crl, &r, revoked), 1);
        CHECK_EQ(X509_CRL_get0_by_cert(crl, &r, kept), 0);
    }
    /* Fresh: not due now, due once half of its week has passed. */
    CHECK(!moat_ca_crl_due(crl, time(NULL)));
    CHECK(!moat_ca_crl_due(crl, time(NULL) + MOAT_CA_CRL_DAYS * 86400 / 2 - 60));
    CHECK(moat_ca_crl_due(crl, time(NULL) + MOAT_CA_CRL_DAYS * 86400 / 2 + 60));
    /* Each re-signing takes the next CRL number. */
    {
        long n = crl_number(crl);
        X509_CRL_free(crl);
        CHECK_EQ(moat_store_begin(st, &err), 0);
        CHECK_EQ(moat_ca_crl_refresh(st, MOAT_CA_ROOT, ca, ca_key, &err), 0);
        CHECK_EQ(moat_store_commit(st, &err), 0);
        CHECK_EQ(moat_ca_crl_stored(st, MOAT_CA_ROOT, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err), 0);
        CHECK_EQ(crl_number(crl), n + 1);
    }
    X509_CRL_free(crl);
    crl = NULL;
    /* A stored CRL that does not parse is an error naming the CA, nothing returned. */
    CHECK_EQ(moat_store_setting_set(st, "ca.crl.root", "not a CRL", &err), 0);
    CHECK_EQ(moat_ca_crl_stored(st, MOAT_CA_ROOT, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err), MOAT_E_PKI);
    CHECK(crl == NULL);
    CHECK_CONTAINS(err.msg, "root CA");

    moat_pki_cert_info_dispose(&info);
    free(pem);
    X509_free(ca);
    X509_free(revoked);
    X509_free(kept);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    remove_store(st);
}

int main(void)
{
    RUN(test_refresh_and_read_back);
    return harness_done();
}
