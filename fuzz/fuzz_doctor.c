/*
 * Fuzzes what doctor reads from the outside world: the endpoint argument (first byte 0) and a stapled
 * OCSP response sent by a remote server (first byte 1), checked against a fixed chain. Findings are
 * fine; crashes, leaks and undefined behaviour are not.
 */
#include "doctor/doctor_int.h"

#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static STACK_OF(X509) * chain;
static X509_STORE *trust;

static X509 *make(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), issuer ? 2 : 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

/* One fixed issuer and leaf for the whole run (kept until exit on purpose). */
static void setup(void)
{
    EVP_PKEY *ck = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
    X509 *ca = make(ck, "Fuzz CA", NULL, NULL), *leaf = make(lk, "leaf.example", ca, ck);
    chain = sk_X509_new_null();
    sk_X509_push(chain, leaf);
    sk_X509_push(chain, ca);
    trust = X509_STORE_new();
    X509_STORE_add_cert(trust, ca);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(lk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    moat_doctor_report_t r;
    if (size < 1)
        return 0;
    moat_doctor_report_init(&r);
    if (data[0] == 0) {
        char buf[1024];
        moat_doctor_target_t t;
        moat_err_t err = {0};
        size_t n = size - 1 < sizeof(buf) - 1 ? size - 1 : sizeof(buf) - 1;
        memcpy(buf, data + 1, n);
        buf[n] = '\0';
        (void)!moat_doctor_target_parse(buf, &t, &err); /* usage errors are fine */
    } else {
        if (chain == NULL)
            setup();
        moat__doctor_check_ocsp(&r, "fuzz", data + 1, (long)(size - 1), chain, trust, data[0] & 2,
                                data[0] & 4);
    }
    moat_doctor_report_dispose(&r);
    return 0;
}
