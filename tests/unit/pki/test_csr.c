#include "fixtures.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static void test_build_and_parse(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    moat_pki_subject_t subj = {.cn = "www.example.com",
                               .o = "Example Ltd",
                               .ou = "Web",
                               .l = "Berlin",
                               .st = "Berlin",
                               .c = "DE",
                               .email = "ops@example.com"};
    X509_REQ *req = NULL, *back = NULL;
    char *pem = NULL;
    unsigned char *der = NULL;
    size_t pemlen = 0, derlen = 0;
    moat_pki_csr_info_t info;
    EVP_PKEY *pub;

    CHECK_EQ(moat_pki_csr_new(key, &subj,
                              "DNS:www.example.com, DNS:example.com,IP:192.0.2.7,IP:2001:db8::1,"
                              "email:a@example.com,URI:https://example.com/x",
                              &req, &err),
             0);
    CHECK_EQ(moat_pki_csr_verify(req, &err), 0);
    CHECK_EQ(moat_pki_csr_to_pem(req, &pem, &pemlen, &err), 0);
    CHECK_CONTAINS(pem, "-----BEGIN CERTIFICATE REQUEST-----");
    CHECK_EQ(moat_pki_csr_to_der(req, &der, &derlen, &err), 0);
    /* The same bytes OpenSSL's own writers give. */
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *mem;
        long n;
        CHECK(b != NULL && PEM_write_bio_X509_REQ(b, req) == 1);
        n = BIO_get_mem_data(b, &mem);
        CHECK_EQ((size_t)n, pemlen);
        CHECK(memcmp(mem, pem, pemlen) == 0);
        CHECK_EQ(pem[pemlen], '\0');
        BIO_free(b);
        CHECK_EQ(i2d_X509_REQ(req, NULL), (int)derlen);
    }

    CHECK_EQ(moat_pki_csr_parse((unsigned char *)pem, pemlen, &back, &err), 0);
    CHECK_EQ(moat_pki_csr_verify(back, &err), 0);
    CHECK_EQ(moat_pki_csr_info(back, &info, &err), 0);
    CHECK_STR(info.cn, "www.example.com");
    CHECK_STR(info.subject, "emailAddress=ops@example.com,CN=www.example.com,OU=Web,O=Example Ltd,L=Berlin,"
                            "ST=Berlin,C=DE");
    CHECK_STR(info.sans,
              "DNS:www.example.com,DNS:example.com,IP:192.0.2.7,IP:2001:db8::1,email:a@example.com,"
              "URI:https://example.com/x");
    CHECK_STR(info.key_alg, "ec-p256");
    CHECK_EQ(info.key_bits, 256);
    CHECK(!info.requests_ca);
    moat_pki_csr_info_dispose(&info);
    pub = moat_pki_csr_get1_pubkey(back, &err);
    CHECK(moat_pki_pubkey_eq(pub, key));
    EVP_PKEY_free(pub);
    X509_REQ_free(back);
    back = NULL;

    CHECK_EQ(moat_pki_csr_parse(der, derlen, &back, &err), 0);
    CHECK_EQ(moat_pki_csr_verify(back, &err), 0);
    X509_REQ_free(back);
    back = NULL;
    /* Trailing bytes after DER are refused. */
    {
        unsigned char *longer = malloc(derlen + 1);
        memcpy(longer, der, derlen);
        longer[derlen] = 0;
        CHECK_EQ(moat_pki_csr_parse(longer, derlen + 1, &back, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "stray");
        free(longer);
    }
    moat_free(&pem);
    moat_free(&der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_cn_copied(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_ED25519);
    moat_pki_csr_info_t info;
    X509_REQ *req = fx_csr(key, "host.example.com", NULL);
    CHECK_EQ(moat_pki_csr_verify(req, &err), 0);
    CHECK_EQ(moat_pki_csr_info(req, &info, &err), 0);
    CHECK_STR(info.sans, "DNS:host.example.com");
    CHECK_STR(info.key_alg, "ed25519");
    moat_pki_csr_info_dispose(&info);
    X509_REQ_free(req);

    req = fx_csr(key, "192.0.2.1", "");
    CHECK_EQ(moat_pki_csr_info(req, &info, &err), 0);
    CHECK_STR(info.sans, "IP:192.0.2.1");
    moat_pki_csr_info_dispose(&info);
    X509_REQ_free(req);

    req = fx_csr(key, "alice@example.com", NULL);
    CHECK_EQ(moat_pki_csr_info(req, &info, &err), 0);
    CHECK_STR(info.sans, "email:alice@example.com");
    moat_pki_csr_info_dispose(&info);
    X509_REQ_free(req);

    req = fx_csr(key, "Alice Smith", NULL);
    CHECK_EQ(moat_pki_csr_info(req, &info, &err), 0);
    CHECK_STR(info.sans, "");
    CHECK_STR(info.cn, "Alice Smith");
    moat_pki_csr_info_dispose(&info);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_bad_input(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256), *pub = NULL;
    moat_pki_subject_t subj = {.cn = "x.example.com"};
    X509_REQ *req = NULL;
    unsigned char *der = NULL;
    size_t len = 0;

    CHECK_EQ(moat_pki_csr_new(key, &subj, "DNS:ok.example.com,FTP:x", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "FTP");
    CHECK_EQ(moat_pki_csr_new(key, &subj, "DNS:bad name", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "bad name");
    CHECK_EQ(moat_pki_csr_new(key, &subj, "IP:300.1.1.1", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "300.1.1.1");
    CHECK_EQ(moat_pki_csr_new(key, &subj, "DNS:a.example.com,,DNS:b", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "empty item");
    CHECK_EQ(moat_pki_csr_new(key, &subj, "www.example.com", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "no type");
    CHECK_EQ(moat_pki_csr_new(key, &subj, "email:nobody", &req, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_csr_new(key, &subj, "DNS:", &req, &err), MOAT_E_INVAL);
    subj.c = "Germany";
    CHECK_EQ(moat_pki_csr_new(key, &subj, NULL, &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "two-letter");
    subj.c = NULL;
    subj.cn = "";
    CHECK_EQ(moat_pki_csr_new(key, &subj, NULL, &req, &err), MOAT_E_INVAL);
    subj.cn = "this-common-name-is-far-too-long-for-the-sixty-four-character-upper-bound.example.com";
    CHECK_EQ(moat_pki_csr_new(key, &subj, "DNS:x.example.com", &req, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "common name");
    CHECK(req == NULL);

    /* A public-only key cannot sign its request. */
    CHECK_EQ(moat_pki_pubkey_to_der(key, &der, &len, &err), 0);
    CHECK_EQ(moat_pki_pubkey_from_der(der, len, &pub, &err), 0);
    subj.cn = "x.example.com";
    CHECK_EQ(moat_pki_csr_new(pub, &subj, NULL, &req, &err), MOAT_E_PKI);
    moat_free(&der);
    EVP_PKEY_free(pub);

    CHECK_EQ(moat_pki_csr_parse((const unsigned char *)"hello", 5, &req, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_csr_parse((const unsigned char *)"-----BEGIN CERTIFICATE REQUEST-----\n!!\n", 40, &req,
                                &err),
             MOAT_E_INVAL);
    CHECK_EQ(moat_pki_csr_parse(NULL, 0, &req, &err), MOAT_E_INVAL);
    CHECK(req == NULL);
    CHECK_EQ(ERR_peek_error(), 0);
    EVP_PKEY_free(key);
}

static void test_bad_signature(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509_REQ *req = fx_csr(key, "tamper.example.com", NULL), *back = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    char *p;
    CHECK_EQ(moat_pki_csr_to_der(req, &der, &len, &err), 0);
    /* Change one letter of the CN inside the signed part. */
    p = memmem(der, len, "tamper", 6);
    CHECK(p != NULL);
    if (p != NULL)
        p[0] = 'T';
    CHECK_EQ(moat_pki_csr_parse(der, len, &back, &err), 0);
    CHECK_EQ(moat_pki_csr_verify(back, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "signature does not verify");
    CHECK(err.hint[0] != '\0');
    CHECK_EQ(ERR_peek_error(), 0);
    X509_REQ_free(back);
    moat_free(&der);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_requests_ca(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    moat_pki_csr_info_t info;
    bc->ca = 1;
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"evil", -1, -1, 0);
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    X509V3_add1_i2d(&exts, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT);
    X509_REQ_add_extensions(req, exts);
    X509_REQ_sign(req, key, EVP_sha256());
    CHECK_EQ(moat_pki_csr_verify(req, &err), 0);
    CHECK_EQ(moat_pki_csr_info(req, &info, &err), 0);
    CHECK(info.requests_ca);
    moat_pki_csr_info_dispose(&info);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    BASIC_CONSTRAINTS_free(bc);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

static void test_sans_text(void)
{
    moat_err_t err = {0};
    GENERAL_NAMES *names = NULL;
    char *text = NULL;
    CHECK_EQ(moat_pki_sans_parse("dns:A.example.com,ip:::1,Email:x@y.z,uri:urn:x", &names, &err), 0);
    CHECK_EQ(moat_pki_sans_format(names, &text, &err), 0);
    CHECK_STR(text, "DNS:A.example.com,IP:::1,email:x@y.z,URI:urn:x");
    moat_free(&text);
    GENERAL_NAMES_free(names);
    CHECK_EQ(moat_pki_sans_format(NULL, &text, &err), 0);
    CHECK_STR(text, "");
    moat_free(&text);
    CHECK(moat_pki_is_ip_literal("10.0.0.1"));
    CHECK(moat_pki_is_ip_literal("fe80::1"));
    CHECK(!moat_pki_is_ip_literal("example.com"));
    CHECK(!moat_pki_is_ip_literal(NULL));
    CHECK_EQ(moat_pki_sans_parse("", &names, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_sans_parse("URI:no-scheme", &names, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_sans_parse("DNS:.example.com", &names, &err), MOAT_E_INVAL);
}

int main(void)
{
    RUN(test_build_and_parse);
    RUN(test_cn_copied);
    RUN(test_bad_input);
    RUN(test_bad_signature);
    RUN(test_requests_ca);
    RUN(test_sans_text);
    return harness_done();
}
