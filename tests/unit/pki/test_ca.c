#include "fixtures.h"
#include "pki/pki_int.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

static void test_root(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_ED25519);
    X509 *root = NULL;
    moat_pki_cert_info_t info;
    int crit = -1;
    BASIC_CONSTRAINTS *bc;
    CHECK_EQ(moat_pki_ca_root_new(key, "Ed Root", 365, &root, &err), 0);
    CHECK_EQ(moat_pki_cert_info(root, &info, &err), 0);
    CHECK(info.is_ca);
    CHECK(info.self_signed);
    CHECK_STR(info.subject, "CN=Ed Root");
    CHECK_STR(info.sig_alg, "ED25519");
    CHECK_EQ(info.key_usage, MOAT_PKI_KU_KEY_CERT_SIGN | MOAT_PKI_KU_CRL_SIGN);
    CHECK(info.not_after - info.not_before == 365 * 86400 + 3600);
    moat_pki_cert_info_dispose(&info);
    bc = X509_get_ext_d2i(root, NID_basic_constraints, &crit, NULL);
    CHECK(bc != NULL && bc->ca);
    CHECK_EQ(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(X509_get_ext_d2i(root, NID_key_usage, &crit, NULL));
    CHECK_EQ(crit, 1);
    CHECK(X509_get0_subject_key_id(root) != NULL);
    X509_free(root);
    root = NULL;
    CHECK_EQ(moat_pki_ca_root_new(key, "", 365, &root, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_ca_root_new(key, "R", 0, &root, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "0 days");
    CHECK_EQ(moat_pki_ca_root_new(key, "R", 40000, &root, &err), MOAT_E_INVAL);
    CHECK(root == NULL);
    EVP_PKEY_free(key);
}

static int verify_chain(X509 *leaf, X509 *root, X509 *inter, int purpose)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int ok;
    X509_STORE_add_cert(st, root);
    if (inter != NULL)
        sk_X509_push(untrusted, inter);
    X509_STORE_CTX_init(ctx, st, leaf, untrusted);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    ok = X509_verify_cert(ctx);
    if (ok != 1)
        fprintf(stderr, "verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    sk_X509_free(untrusted);
    ERR_clear_error();
    return ok;
}

/* Hex of a positive serial of at most 159 bits: BN_bn2hex gives whole bytes, so 40 digits with the top
 * bit clear, or fewer digits when the top byte happens to be zero (1 draw in 128). */
static int serial_ok(const char *hex)
{
    size_t n = strlen(hex);
    return n > 0 && n <= 40 && n % 2 == 0 && (n < 40 || hex[0] <= '7') && hex[0] != '-';
}

static void test_random_serials(void)
{
    moat_err_t err = {0};
    int short_ones = 0;
    for (int i = 0; i < 2000; i++) {
        ASN1_INTEGER *s = moat__pki_random_serial(&err);
        char *hex = s != NULL ? moat__pki_serial_hex(s) : NULL;
        CHECK(hex != NULL && serial_ok(hex));
        short_ones += hex != NULL && strlen(hex) < 40;
        moat_free(&hex);
        ASN1_INTEGER_free(s);
    }
    CHECK(short_ones < 100); /* about 16 expected: the draws are really 159 bits wide */
}

static void test_sign_profiles(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *rsa = fx_key(MOAT_PKI_ALG_RSA_2048),
             *ec = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "Sign Root"), *x = NULL;
    moat_pki_urls_t urls;
    moat_pki_sign_opts_t opts = {.profile = MOAT_PKI_PROFILE_SERVER, .days = 30, .urls = &urls};
    X509_REQ *req = fx_csr(rsa, "srv.example.com", "DNS:srv.example.com,IP:127.0.0.1");
    moat_pki_cert_info_t info;
    AUTHORITY_INFO_ACCESS *aia;
    CRL_DIST_POINTS *cdp;

    CHECK_EQ(moat_pki_urls_from_base("http://ca.example.com:8080/", false, &urls, &err), 0);
    CHECK_STR(urls.crl, "http://ca.example.com:8080/.well-known/moat/ca.crl");
    CHECK_STR(urls.ocsp, "http://ca.example.com:8080/.well-known/moat/ocsp");
    CHECK_STR(urls.ca_issuers, "http://ca.example.com:8080/.well-known/moat/ca.der");
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), 0);
    CHECK_EQ(moat_pki_cert_info(x, &info, &err), 0);
    CHECK_STR(info.sans, "DNS:srv.example.com,IP:127.0.0.1");
    CHECK_EQ(info.key_usage, MOAT_PKI_KU_DIGITAL_SIGNATURE | MOAT_PKI_KU_KEY_ENCIPHERMENT);
    CHECK_EQ(info.ext_key_usage, MOAT_PKI_EKU_SERVER_AUTH);
    CHECK(!info.is_ca);
    CHECK(serial_ok(info.serial));
    CHECK_EQ(info.not_after - info.not_before, 30 * 86400 + 3600);
    moat_pki_cert_info_dispose(&info);
    CHECK(X509_get0_authority_key_id(x) != NULL);
    CHECK(X509_get0_subject_key_id(x) != NULL);
    aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
    CHECK(aia != NULL && sk_ACCESS_DESCRIPTION_num(aia) == 2);
    AUTHORITY_INFO_ACCESS_free(aia);
    cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    CHECK(cdp != NULL && sk_DIST_POINT_num(cdp) == 1);
    CRL_DIST_POINTS_free(cdp);
    CHECK_EQ(verify_chain(x, ca, NULL, X509_PURPOSE_SSL_SERVER), 1);
    X509_free(x);
    x = NULL;
    X509_REQ_free(req);

    /* Client profile, EC key: digitalSignature only, clientAuth. */
    req = fx_csr(ec, "alice@example.com", NULL);
    opts.profile = MOAT_PKI_PROFILE_CLIENT;
    opts.urls = NULL;
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), 0);
    CHECK_EQ(moat_pki_cert_info(x, &info, &err), 0);
    CHECK_EQ(info.key_usage, MOAT_PKI_KU_DIGITAL_SIGNATURE);
    CHECK_EQ(info.ext_key_usage, MOAT_PKI_EKU_CLIENT_AUTH);
    CHECK_STR(info.sans, "email:alice@example.com");
    moat_pki_cert_info_dispose(&info);
    CHECK(X509_get_ext_by_NID(x, NID_info_access, -1) < 0);
    CHECK_EQ(verify_chain(x, ca, NULL, X509_PURPOSE_SSL_CLIENT), 1);
    X509_free(x);
    X509_REQ_free(req);

    {
        moat_pki_profile_t p;
        CHECK_EQ(moat_pki_profile_parse("client", &p, &err), 0);
        CHECK_EQ(p, MOAT_PKI_PROFILE_CLIENT);
        CHECK_STR(moat_pki_profile_name(p), "client");
        CHECK_EQ(moat_pki_profile_parse("code", &p, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "code");
    }
    CHECK_EQ(moat_pki_urls_from_base("ftp://x", false, &urls, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_urls_from_base("http://", false, &urls, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_urls_from_base("http://a b", false, &urls, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_urls_from_base("http://a,b", false, &urls, &err), MOAT_E_INVAL);
    CHECK_EQ(moat_pki_urls_from_base("https://ca.example.com/pki", true, &urls, &err), 0);
    CHECK_STR(urls.crl, "https://ca.example.com/pki/.well-known/moat/root.crl");
    CHECK_STR(urls.ca_issuers, "https://ca.example.com/pki/.well-known/moat/root.der");
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

/* A request with extra extensions: only SANs may reach the certificate. */
static void test_only_sans_copied(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *key = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = fx_root(ca_key, "Copy Root"), *x = NULL;
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    moat_pki_sign_opts_t opts = {.profile = MOAT_PKI_PROFILE_SERVER, .days = 10};
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    moat_pki_cert_info_t info;

    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"copy.example.com", -1, -1,
                               0);
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    CHECK_EQ(moat_pki_sans_parse("DNS:copy.example.com", &names, &err), 0);
    X509V3_add1_i2d(&exts, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
    ASN1_OCTET_STRING_set(ski, (const unsigned char *)"\x01\x02", 2);
    X509V3_add1_i2d(&exts, NID_subject_key_identifier, ski, 0, X509V3_ADD_DEFAULT);
    X509V3_add1_i2d(&exts, NID_ext_key_usage, NULL, 0, X509V3_ADD_DEFAULT); /* ignored: NULL value */
    X509_REQ_add_extensions(req, exts);
    X509_REQ_sign(req, key, EVP_sha256());
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), 0);
    CHECK_EQ(moat_pki_cert_info(x, &info, &err), 0);
    CHECK_STR(info.sans, "DNS:copy.example.com");
    moat_pki_cert_info_dispose(&info);
    /* Our SKI is the key hash, not the request's 0102. */
    CHECK(ASN1_STRING_length(X509_get0_subject_key_id(x)) == 20);
    X509_free(x);
    x = NULL;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    exts = NULL;

    /* CA:TRUE asked for: refused. */
    bc->ca = 1;
    X509_REQ_free(req);
    req = X509_REQ_new();
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    X509V3_add1_i2d(&exts, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT);
    X509_REQ_add_extensions(req, exts);
    X509_REQ_sign(req, key, EVP_sha256());
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "CA:TRUE");
    CHECK(x == NULL);

    /* No SANs in the request: the CN becomes one. */
    X509_REQ_free(req);
    req = X509_REQ_new();
    X509_REQ_set_subject_name(req, name);
    X509_REQ_set_pubkey(req, key);
    X509_REQ_sign(req, key, EVP_sha256());
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), 0);
    CHECK_EQ(moat_pki_cert_info(x, &info, &err), 0);
    CHECK_STR(info.sans, "DNS:copy.example.com");
    moat_pki_cert_info_dispose(&info);
    X509_free(x);

    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(names);
    ASN1_OCTET_STRING_free(ski);
    BASIC_CONSTRAINTS_free(bc);
    X509_NAME_free(name);
    X509_REQ_free(req);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    ERR_clear_error();
}

static void test_sign_refusals(void)
{
    moat_err_t err = {0};
    EVP_PKEY *ca_key = fx_key(MOAT_PKI_ALG_EC_P256), *key = fx_key(MOAT_PKI_ALG_EC_P256),
             *other = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *ca = NULL, *x = NULL, *leaf;
    X509_REQ *req = fx_csr(key, "r.example.com", NULL);
    moat_pki_sign_opts_t opts = {.profile = MOAT_PKI_PROFILE_SERVER, .days = 400};
    moat_pki_cert_info_t ca_info, info;
    char when[MOAT_PKI_TIME_SIZE];
    unsigned char *der = NULL;
    size_t len = 0;
    X509_REQ *bad = NULL;
    char *p;

    CHECK_EQ(moat_pki_ca_root_new(ca_key, "Short Root", 100, &ca, &err), 0);
    CHECK_EQ(moat_pki_cert_info(ca, &ca_info, &err), 0);
    /* Past the CA's notAfter: refused naming the CA's expiry, or clamped. */
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, moat_pki_time_format(ca_info.not_after, when));
    CHECK_CONTAINS(err.msg, "400 days");
    opts.clamp = true;
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), 0);
    CHECK_EQ(moat_pki_cert_info(x, &info, &err), 0);
    CHECK_EQ(info.not_after, ca_info.not_after);
    moat_pki_cert_info_dispose(&info);
    X509_free(x);
    x = NULL;
    opts.days = 0;
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), MOAT_E_INVAL);
    opts.days = 10;
    /* Wrong CA key. */
    CHECK_EQ(moat_pki_ca_sign(ca, other, req, &opts, &x, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "does not match");
    /* Not a CA. */
    leaf = fx_issue(ca, ca_key, other, "leaf.example.com", 0);
    CHECK_EQ(moat_pki_ca_sign(leaf, other, req, &opts, &x, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "not a CA");
    /* CA expired (signing "now" is after its end). */
    opts.now = ca_info.not_after + 10;
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, req, &opts, &x, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "expired on");
    opts.now = 0;
    /* Tampered request. */
    CHECK_EQ(moat_pki_csr_to_der(req, &der, &len, &err), 0);
    p = memmem(der, len, "r.example", 9);
    if (p != NULL)
        p[0] = 's';
    CHECK_EQ(moat_pki_csr_parse(der, len, &bad, &err), 0);
    CHECK_EQ(moat_pki_ca_sign(ca, ca_key, bad, &opts, &x, &err), MOAT_E_PKI);
    CHECK_CONTAINS(err.msg, "signature does not verify");
    CHECK(x == NULL);
    CHECK_EQ(ERR_peek_error(), 0);
    moat_free(&der);
    X509_REQ_free(bad);
    moat_pki_cert_info_dispose(&ca_info);
    X509_free(leaf);
    X509_free(ca);
    X509_REQ_free(req);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_intermediate(void)
{
    moat_err_t err = {0};
    EVP_PKEY *rk = fx_key(MOAT_PKI_ALG_EC_P384), *ik = fx_key(MOAT_PKI_ALG_EC_P256),
             *lk = fx_key(MOAT_PKI_ALG_EC_P256);
    X509 *root = fx_root(rk, "Int Root"), *inter = NULL, *leaf = NULL;
    const char *permitted[] = {"example.com", "example.org"};
    moat_pki_intermediate_opts_t io = {
        .cn = "Int Issuing", .days = 99999, .permitted_dns = permitted, .npermitted_dns = 2};
    moat_pki_sign_opts_t so = {.profile = MOAT_PKI_PROFILE_SERVER, .days = 30, .clamp = true};
    moat_pki_cert_info_t info, rinfo;
    X509_REQ *req;

    CHECK_EQ(moat_pki_ca_intermediate_new(root, rk, ik, &io, &inter, &err), MOAT_E_INVAL);
    io.days = 5000; /* longer than the root: clamped */
    CHECK_EQ(moat_pki_ca_intermediate_new(root, rk, ik, &io, &inter, &err), 0);
    CHECK_EQ(moat_pki_cert_info(inter, &info, &err), 0);
    CHECK_EQ(moat_pki_cert_info(root, &rinfo, &err), 0);
    CHECK(info.is_ca);
    CHECK_EQ(info.path_len, 0);
    CHECK(!info.self_signed);
    CHECK_STR(info.issuer, "CN=Int Root");
    CHECK_EQ(info.not_after, rinfo.not_after);
    CHECK_STR(info.sig_alg, "ecdsa-with-SHA256");
    moat_pki_cert_info_dispose(&info);
    moat_pki_cert_info_dispose(&rinfo);
    CHECK(X509_get_ext_by_NID(inter, NID_name_constraints, -1) >= 0);

    req = fx_csr(lk, "www.example.com", NULL);
    CHECK_EQ(moat_pki_ca_sign(inter, ik, req, &so, &leaf, &err), 0);
    CHECK_EQ(verify_chain(leaf, root, inter, X509_PURPOSE_SSL_SERVER), 1);
    X509_free(leaf);
    leaf = NULL;
    X509_REQ_free(req);
    /* Outside the name constraints: signed, but no verifier accepts it. */
    req = fx_csr(lk, "www.example.net", NULL);
    CHECK_EQ(moat_pki_ca_sign(inter, ik, req, &so, &leaf, &err), 0);
    CHECK(verify_chain(leaf, root, inter, X509_PURPOSE_SSL_SERVER) != 1);
    X509_free(leaf);
    X509_REQ_free(req);

    /* Bad constraints, wrong root key. */
    {
        const char *bad[] = {"*.example.com"};
        X509 *y = NULL;
        moat_pki_intermediate_opts_t b = {.cn = "X", .days = 10, .permitted_dns = bad, .npermitted_dns = 1};
        CHECK_EQ(moat_pki_ca_intermediate_new(root, rk, ik, &b, &y, &err), MOAT_E_INVAL);
        CHECK_CONTAINS(err.msg, "*.example.com");
        b.npermitted_dns = 0;
        CHECK_EQ(moat_pki_ca_intermediate_new(root, ik, ik, &b, &y, &err), MOAT_E_PKI);
        CHECK(y == NULL);
    }
    X509_free(root);
    X509_free(inter);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
}

static void test_policy(void)
{
    moat_err_t err = {0};
    EVP_PKEY *key = fx_key(MOAT_PKI_ALG_EC_P256);
    const char *pats[] = {"*.example.com", "example.com", "*@example.com", "10.0.0.1"};
    moat_pki_policy_t pol = {.max_days = MOAT_PKI_SERVER_MAX_DAYS, .patterns = pats, .npatterns = 4};
    X509_REQ *req = fx_csr(key, "www.example.com",
                           "DNS:www.example.com,DNS:a.b.example.com,DNS:example.com,"
                           "IP:10.0.0.1,email:bob@example.com");
    CHECK_EQ(moat_pki_policy_check(&pol, req, 90, &err), 0);
    CHECK_EQ(moat_pki_policy_check(&pol, req, 91, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "90 days");
    X509_REQ_free(req);

    req = fx_csr(key, "www.example.com", "DNS:www.example.com,DNS:evil.example.net");
    CHECK_EQ(moat_pki_policy_check(&pol, req, 30, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "DNS:evil.example.net");
    X509_REQ_free(req);

    req = fx_csr(key, "notexample.com", NULL);
    CHECK_EQ(moat_pki_policy_check(&pol, req, 30, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "notexample.com");
    X509_REQ_free(req);

    req = fx_csr(key, "eve@evil.com", NULL);
    CHECK_EQ(moat_pki_policy_check(&pol, req, 30, &err), MOAT_E_PERM);
    CHECK_CONTAINS(err.msg, "eve@evil.com");
    X509_REQ_free(req);

    /* Any name, no maximum. */
    pol.patterns = NULL;
    pol.max_days = 0;
    req = fx_csr(key, "anything.test", NULL);
    CHECK_EQ(moat_pki_policy_check(&pol, req, 3650, &err), 0);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

int main(void)
{
    RUN(test_root);
    RUN(test_random_serials);
    RUN(test_sign_profiles);
    RUN(test_only_sans_copied);
    RUN(test_sign_refusals);
    RUN(test_intermediate);
    RUN(test_policy);
    return harness_done();
}
