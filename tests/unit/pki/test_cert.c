#include "fixtures.h"

#include <openssl/err.h>

static void test_info_leaf(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *key = fx_key(MOAT_PKI_ALG_RSA_2048);
    X509 *ca = fx_root(ca_key, "Test Root"), *leaf = fx_issue(ca, ca_key, key, "www.example.com", 0);
    moat_pki_cert_info_t info;
    char fp[MOAT_PKI_FINGERPRINT_SIZE], kfp[MOAT_PKI_FINGERPRINT_SIZE];
    time_t now = time(NULL);

    CHECK_EQ(moat_pki_cert_info(leaf, &info, &err), 0);
    CHECK_STR(info.subject, "CN=www.example.com");
    CHECK_STR(info.cn, "www.example.com");
    CHECK_STR(info.sans, "DNS:www.example.com");
    CHECK_STR(info.issuer, "CN=Test Root");
    CHECK_STR(info.issuer_cn, "Test Root");
    CHECK(strlen(info.serial) >= 2 && strlen(info.serial) <= 40);
    CHECK(info.not_before <= now - 3500 && info.not_before >= now - 3700);
    CHECK(info.not_after >= now + 90 * 86400 - 100 && info.not_after <= now + 90 * 86400 + 100);
    CHECK_EQ(moat_pki_cert_fingerprint(leaf, fp, &err), 0);
    CHECK_STR(info.fingerprint, fp);
    CHECK_EQ(moat_pki_pubkey_fingerprint(key, kfp, &err), 0);
    CHECK_STR(info.key_fingerprint, kfp);
    CHECK(!info.is_ca);
    CHECK(info.has_key_usage);
    CHECK_EQ(info.key_usage, MOAT_PKI_KU_DIGITAL_SIGNATURE | MOAT_PKI_KU_KEY_ENCIPHERMENT);
    CHECK(info.has_ext_key_usage);
    CHECK_EQ(info.ext_key_usage, MOAT_PKI_EKU_SERVER_AUTH);
    CHECK(!info.self_signed);
    CHECK_STR(info.key_alg, "rsa-2048");
    CHECK_EQ(info.key_bits, 2048);
    CHECK_STR(info.sig_alg, "ecdsa-with-SHA256");
    CHECK(moat_pki_cert_is_server(leaf));
    CHECK(!moat_pki_cert_is_client(leaf));
    moat_pki_cert_info_dispose(&info);
    moat_pki_cert_info_dispose(&info); /* idempotent */

    CHECK_EQ(moat_pki_cert_info(ca, &info, &err), 0);
    CHECK(info.is_ca);
    CHECK(info.self_signed);
    CHECK_EQ(info.path_len, -1);
    CHECK_EQ(info.key_usage, MOAT_PKI_KU_KEY_CERT_SIGN | MOAT_PKI_KU_CRL_SIGN);
    CHECK(!info.has_ext_key_usage);
    CHECK(moat_pki_cert_is_server(ca)); /* no EKU: any purpose */
    moat_pki_cert_info_dispose(&info);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

static void test_parse_and_pem(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "Root"), *leaf = fx_issue(ca, ca_key, key, "a.example.com", 0), *back = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *all = NULL;
    char *pem = NULL;
    unsigned char *der = NULL;
    size_t pemlen = 0, derlen = 0;
    sk_X509_push(chain, ca);
    CHECK_EQ(moat_pki_cert_to_pem(leaf, chain, &pem, &pemlen, &err), 0);
    CHECK_EQ(moat_pki_certs_parse((unsigned char *)pem, pemlen, &all, &err), 0);
    CHECK_EQ(sk_X509_num(all), 2);
    CHECK_EQ(X509_cmp(sk_X509_value(all, 0), leaf), 0);
    CHECK_EQ(X509_cmp(sk_X509_value(all, 1), ca), 0);
    sk_X509_pop_free(all, X509_free);
    CHECK_EQ(moat_pki_cert_parse((unsigned char *)pem, pemlen, &back, &err), 0);
    CHECK_EQ(X509_cmp(back, leaf), 0);
    X509_free(back);
    CHECK_EQ(moat_pki_cert_to_der(leaf, &der, &derlen, &err), 0);
    CHECK_EQ(moat_pki_cert_parse(der, derlen, &back, &err), 0);
    X509_free(back);
    CHECK_EQ(moat_pki_certs_parse(der, derlen, &all, &err), 0);
    CHECK_EQ(sk_X509_num(all), 1);
    sk_X509_pop_free(all, X509_free);
    all = NULL;
    /* Truncated DER, damaged PEM, text without certificates. */
    CHECK_EQ(moat_pki_cert_parse(der, derlen - 10, &back, &err), MOAT_E_INVAL);
    pem[pemlen / 2] = '#';
    CHECK_EQ(moat_pki_certs_parse((unsigned char *)pem, pemlen, &all, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "damaged");
    CHECK_EQ(moat_pki_certs_parse((const unsigned char *)"-----BEGIN FOO-----\n", 20, &all, &err),
             MOAT_E_INVAL);
    CHECK_EQ(moat_pki_certs_parse(NULL, 0, &all, &err), MOAT_E_INVAL);
    CHECK(all == NULL);
    CHECK_EQ(ERR_peek_error(), 0);
    moat_free(&pem);
    moat_free(&der);
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

static void test_check_time(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(key, "Clock Root");
    moat_pki_cert_info_t info;
    char when[MOAT_PKI_TIME_SIZE];
    CHECK_EQ(moat_pki_cert_info(ca, &info, &err), 0);
    CHECK_EQ(moat_pki_cert_check_time(ca, time(NULL), &err), 0);
    CHECK_EQ(moat_pki_cert_check_time(ca, info.not_after + 1, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "expired on ");
    CHECK_CONTAINS(err.msg, moat_pki_time_format(info.not_after, when));
    CHECK_CONTAINS(err.msg, "Clock Root");
    CHECK_EQ(moat_pki_cert_check_time(ca, info.not_before - 1, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "not valid before ");
    CHECK_CONTAINS(err.msg, moat_pki_time_format(info.not_before, when));
    moat_pki_cert_info_dispose(&info);
    X509_free(ca);
    EVP_PKEY_free(key);
}

/* root -> inter -> leaf, plus an unrelated root. */
static void test_chain(void)
{
    moat_err_t err = {0};
    EVP_PKEY *rk = fx_key(MOAT_PKI_ALG_EC_P256), *ik = fx_key(MOAT_PKI_ALG_EC_P256),
             *lk = fx_key(MOAT_PKI_ALG_EC_P256), *ok = fx_key(MOAT_PKI_ALG_EC_P256),
             *fk = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *root = fx_root(rk, "Chain Root"), *inter = fx_intermediate(root, rk, ik, "Chain Inter"),
         *leaf = fx_issue(inter, ik, lk, "leaf.example.com", 0), *other = fx_root(ok, "Other Root"),
         *fake_inter = fx_intermediate(root, rk, fk, "Chain Inter");
    STACK_OF(X509) *pile = sk_X509_new_null(), *chain = NULL;
    char *missing = NULL;

    /* Shuffled, with the leaf and a duplicate in the pile. */
    sk_X509_push(pile, root);
    sk_X509_push(pile, leaf);
    sk_X509_push(pile, inter);
    sk_X509_push(pile, inter);
    CHECK_EQ(moat_pki_chain_build(leaf, pile, &chain, &missing, &err), 0);
    CHECK_EQ(sk_X509_num(chain), 2);
    CHECK_EQ(X509_cmp(sk_X509_value(chain, 0), inter), 0);
    CHECK_EQ(X509_cmp(sk_X509_value(chain, 1), root), 0);
    CHECK(missing == NULL);
    sk_X509_pop_free(chain, X509_free);
    chain = NULL;

    /* Without the root: complete up to a missing (trusted) issuer. */
    sk_X509_zero(pile);
    sk_X509_push(pile, inter);
    CHECK_EQ(moat_pki_chain_build(leaf, pile, &chain, &missing, &err), 0);
    CHECK_EQ(sk_X509_num(chain), 1);
    CHECK_STR(missing, "CN=Chain Root");
    moat_free(&missing);
    sk_X509_pop_free(chain, X509_free);
    chain = NULL;

    /* Empty pile. */
    CHECK_EQ(moat_pki_chain_build(leaf, NULL, &chain, &missing, &err), 0);
    CHECK_EQ(sk_X509_num(chain), 0);
    CHECK_STR(missing, "CN=Chain Inter");
    moat_free(&missing);
    sk_X509_pop_free(chain, X509_free);
    chain = NULL;

    /* Missing link: root given, intermediate missing. */
    sk_X509_zero(pile);
    sk_X509_push(pile, root);
    CHECK_EQ(moat_pki_chain_build(leaf, pile, &chain, &missing, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "missing link");
    CHECK_CONTAINS(err.msg, "CN=Chain Inter");
    CHECK(chain == NULL);

    /* Unrelated certificate. */
    sk_X509_zero(pile);
    sk_X509_push(pile, inter);
    sk_X509_push(pile, root);
    sk_X509_push(pile, other);
    CHECK_EQ(moat_pki_chain_build(leaf, pile, &chain, &missing, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "Other Root");
    CHECK_CONTAINS(err.msg, "not part of the chain");

    /* Same name, different key: the signature check catches it. */
    sk_X509_zero(pile);
    sk_X509_push(pile, fake_inter);
    CHECK_EQ(moat_pki_chain_build(leaf, pile, &chain, &missing, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "does not verify");
    CHECK_EQ(ERR_peek_error(), 0);

    /* A self-signed leaf has an empty, complete chain. */
    CHECK_EQ(moat_pki_chain_build(root, NULL, &chain, &missing, &err), 0);
    CHECK_EQ(sk_X509_num(chain), 0);
    CHECK(missing == NULL);
    sk_X509_pop_free(chain, X509_free);

    /* Pairing by key: latest notAfter wins. */
    sk_X509_zero(pile);
    sk_X509_push(pile, root);
    sk_X509_push(pile, leaf);
    CHECK_EQ(moat_pki_find_cert_for_key(lk, pile), 1);
    CHECK_EQ(moat_pki_find_cert_for_key(rk, pile), 0);
    CHECK_EQ(moat_pki_find_cert_for_key(ok, pile), -1);
    CHECK_EQ(moat_pki_find_cert_for_key(NULL, pile), -1);

    sk_X509_free(pile);
    X509_free(root);
    X509_free(inter);
    X509_free(leaf);
    X509_free(other);
    X509_free(fake_inter);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(ok);
    EVP_PKEY_free(fk);
}

int main(void)
{
    RUN(test_info_leaf);
    RUN(test_parse_and_pem);
    RUN(test_check_time);
    RUN(test_chain);
    return harness_done();
}
