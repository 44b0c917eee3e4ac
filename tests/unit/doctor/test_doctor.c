/* doctor: the findings model, its outputs, endpoint parsing and the certificate checks. */
#include "doctor/doctor.h"
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

static char *capture_text(const moat_doctor_report_t *r, int color, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    if (json)
        moat_doctor_print_json(r, f);
    else
        moat_doctor_print_text(r, f, color);
    fclose(f);
    return buf;
}

static void test_target_parse(void)
{
    moat_doctor_target_t t;
    moat_err_t err = {0};
    CHECK_EQ(moat_doctor_target_parse("https://www.example.com:8443/x?y", &t, &err), 0);
    CHECK_STR(t.host, "www.example.com");
    CHECK_STR(t.port, "8443");
    CHECK_EQ(t.is_ip, 0);
    CHECK_EQ(moat_doctor_target_parse("example.org", &t, &err), 0);
    CHECK_STR(t.port, "443");
    CHECK_EQ(moat_doctor_target_parse("HTTPS://[::1]:4433", &t, &err), 0);
    CHECK_STR(t.host, "::1");
    CHECK_STR(t.port, "4433");
    CHECK_EQ(t.is_ip, 1);
    CHECK_EQ(moat_doctor_target_parse("::1", &t, &err), 0);
    CHECK_STR(t.host, "::1");
    CHECK_STR(t.port, "443");
    CHECK_EQ(moat_doctor_target_parse("127.0.0.1:1", &t, &err), 0);
    CHECK_EQ(t.is_ip, 1);

    CHECK_EQ(moat_doctor_target_parse("http://x", &t, &err), MOAT_E_USAGE);
    CHECK_CONTAINS(err.msg, "only https://");
    CHECK_EQ(moat_doctor_target_parse("x:0", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("x:65536", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("x:", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse(":443", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("[::1", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("[::1]x", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("[]:443", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("https:///path", &t, &err), MOAT_E_USAGE);
    CHECK_EQ(moat_doctor_target_parse("a:b:c", &t, &err), MOAT_E_USAGE);
}

static void test_report_model(void)
{
    moat_doctor_report_t r;
    moat_doctor_finding_t *f;
    moat_doctor_report_init(&r);
    for (int i = 0; i < 40; i++) /* past the first growth */
        moat_doctor_fact(&r, "site a", "n", "%d", i);
    f = moat_doctor_add(&r, MOAT_DOCTOR_WARNING, "cert-expiring", "site a", "expires in %d days", 3);
    moat_doctor_why(f, "because");
    moat_doctor_fix(f, "moat key renew %s", "a");
    moat_doctor_add(&r, MOAT_DOCTOR_ERROR, "cert-expired", "site b", "expired");
    moat_doctor_add(&r, MOAT_DOCTOR_INFO, "ocsp-not-stapled", "site a", "no staple");
    moat_doctor_why(NULL, "ignored"); /* allocation failures pass NULL on */
    CHECK_EQ(r.nfacts, 40);
    CHECK_EQ(moat_doctor_count(&r, MOAT_DOCTOR_ERROR), 1);
    CHECK_EQ(moat_doctor_count(&r, MOAT_DOCTOR_WARNING), 1);
    CHECK_EQ(moat_doctor_count(&r, MOAT_DOCTOR_INFO), 1);
    CHECK(moat_doctor_find(&r, "cert-expired") != NULL);
    CHECK(moat_doctor_find(&r, "nope") == NULL);
    CHECK_STR(moat_doctor_find(&r, "cert-expiring")->fix, "moat key renew a");
    CHECK_STR(moat_doctor_sev_name(MOAT_DOCTOR_WARNING), "warning");
    moat_doctor_report_dispose(&r);
    CHECK(r.findings == NULL && r.facts == NULL);
}

static void test_text_output(void)
{
    moat_doctor_report_t r;
    char *out;
    moat_doctor_finding_t *f;
    moat_doctor_report_init(&r);
    moat_strlcpy(r.target, "moat.yaml", sizeof(r.target));
    moat_strlcpy(r.store, "/var/lib/moat/moat.db", sizeof(r.store));
    moat_doctor_add(&r, MOAT_DOCTOR_INFO, "i1", "site a", "an info");
    f = moat_doctor_add(&r, MOAT_DOCTOR_ERROR, "e1", "site a", "an error");
    moat_doctor_fix(f, "do this");
    moat_doctor_add(&r, MOAT_DOCTOR_WARNING, "w1", "site b", "a warning");
    moat_doctor_fact(&r, "site b", "protocols", "TLSv1.3");

    out = capture_text(&r, 0, 0);
    CHECK_CONTAINS(out, "doctor: moat.yaml\n");
    CHECK_CONTAINS(out, "store:  /var/lib/moat/moat.db\n");
    CHECK_CONTAINS(out,
                   "\nsite a\n  error   [e1] an error\n          fix: do this\n  info    [i1] an info\n");
    CHECK_CONTAINS(out, "\nsite b\n  protocols    TLSv1.3\n  warning [w1] a warning\n");
    CHECK_CONTAINS(out, "1 error, 1 warning, 1 info");
    CHECK(strchr(out, '\033') == NULL);
    free(out);

    out = capture_text(&r, 1, 0);
    CHECK_CONTAINS(out, "\033[1;31merror  \033[0m");
    free(out);
    moat_doctor_report_dispose(&r);
}

static void test_json_output(void)
{
    moat_doctor_report_t r;
    char *out;
    moat_doctor_report_init(&r);
    moat_doctor_add(&r, MOAT_DOCTOR_ERROR, "name-mismatch", "https://a:1", "the \"name\" is wrong");
    moat_doctor_fact(&r, "https://a:1", "cipher", "TLS_AES_128_GCM_SHA256");
    out = capture_text(&r, 0, 1);
    CHECK_CONTAINS(out, "\"store\": null");
    CHECK_CONTAINS(out, "\"id\": \"name-mismatch\"");
    CHECK_CONTAINS(out, "\"what\": \"the \\\"name\\\" is wrong\"");
    CHECK_CONTAINS(out, "\"key\": \"cipher\"");
    CHECK_CONTAINS(out, "\"errors\": 1");
    free(out);
    moat_doctor_report_dispose(&r);
}

/* A self-signed or issued certificate made in memory; days relative to now. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long from_days, long to_days,
                       X509 *issuer, EVP_PKEY *issuer_key, int ca, const EVP_MD *md)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(from_days * 7 + to_days + 1000));
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    if (san != NULL && (ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san)) != NULL) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if ((ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE")) !=
        NULL) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, issuer_key ? issuer_key : key, md);
    return x;
}

static int has(const moat_doctor_report_t *r, const char *id)
{
    return moat_doctor_find(r, id) != NULL;
}

static void test_chain_checks(void)
{
    EVP_PKEY *rk = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
    X509 *root = make_cert(rk, "Unit Root", NULL, -1, 3650, NULL, NULL, 1, EVP_sha256());
    X509 *good = make_cert(lk, "www.example.com", "DNS:www.example.com,DNS:*.example.org", -1, 90, root, rk,
                           0, EVP_sha256());
    X509 *expired =
        make_cert(lk, "www.example.com", "DNS:www.example.com", -30, -1, root, rk, 0, EVP_sha256());
    X509 *future = make_cert(lk, "www.example.com", "DNS:www.example.com", 2, 30, root, rk, 0, EVP_sha256());
    X509 *soon = make_cert(lk, "www.example.com", "DNS:www.example.com", -1, 10, root, rk, 0, EVP_sha256());
    X509 *cnonly = make_cert(lk, "www.example.com", NULL, -1, 90, root, rk, 0, EVP_sha256());
    X509 *sha1 = make_cert(lk, "www.example.com", "DNS:www.example.com", -1, 90, root, rk, 0, EVP_sha1());
    X509_STORE *trust = X509_STORE_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    moat_doctor_opts_t o;
    moat_doctor_report_t r;

    moat_doctor_opts_init(&o);
    X509_STORE_add_cert(trust, root);

    /* Healthy: no findings at all, wildcard SAN matched. */
    moat_doctor_report_init(&r);
    sk_X509_push(chain, good);
    moat_doctor_check_chain(&r, "s", chain, "www.example.com", trust, "unit trust", &o, "www");
    moat_doctor_check_name(&r, "s", good, "a.example.org", "www");
    CHECK_EQ(r.nfindings, 0);
    for (size_t i = 0; i < r.nfindings; i++)
        fprintf(stderr, "unexpected: %s %s\n", r.findings[i].id, r.findings[i].what);
    moat_doctor_check_name(&r, "s", good, "example.com", "www");
    CHECK(has(&r, "name-mismatch"));
    CHECK_CONTAINS(moat_doctor_find(&r, "name-mismatch")->fix, "moat key renew www --san DNS:example.com");
    moat_doctor_report_dispose(&r);

    /* The same leaf against an empty trust store: the root's issuer is unknown. */
    moat_doctor_report_init(&r);
    {
        X509_STORE *empty = X509_STORE_new();
        moat_doctor_check_chain(&r, "s", chain, NULL, empty, "nothing", &o, NULL);
        X509_STORE_free(empty);
    }
    CHECK(has(&r, "chain-incomplete"));
    moat_doctor_report_dispose(&r);

    /* Root sent too but untrusted. */
    moat_doctor_report_init(&r);
    sk_X509_push(chain, root);
    {
        X509_STORE *empty = X509_STORE_new();
        moat_doctor_check_chain(&r, "s", chain, NULL, empty, "nothing", &o, NULL);
        X509_STORE_free(empty);
    }
    CHECK(has(&r, "untrusted-root"));
    CHECK(!has(&r, "chain-incomplete"));
    moat_doctor_report_dispose(&r);

    struct {
        X509 *leaf;
        const char *id;
    } cases[] = {{expired, "cert-expired"},
                 {future, "cert-not-yet-valid"},
                 {soon, "cert-expiring"},
                 {cnonly, "name-only-in-cn"},
                 {sha1, "sha1-signature"}};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(cases); i++) {
        moat_doctor_report_init(&r);
        (void)sk_X509_set(chain, 0, cases[i].leaf);
        moat_doctor_check_chain(&r, "s", chain, "www.example.com", trust, "unit trust", &o, "www");
        CHECK(has(&r, cases[i].id));
        if (!has(&r, cases[i].id))
            fprintf(stderr, "missing %s\n", cases[i].id);
        moat_doctor_report_dispose(&r);
    }

    /* --days 5 silences a certificate with 10 days left. */
    o.days = 5;
    moat_doctor_report_init(&r);
    (void)sk_X509_set(chain, 0, soon);
    moat_doctor_check_chain(&r, "s", chain, "www.example.com", trust, "unit trust", &o, "www");
    CHECK(!has(&r, "cert-expiring"));
    moat_doctor_report_dispose(&r);

    /* Self-signed leaf. */
    moat_doctor_report_init(&r);
    {
        X509 *self =
            make_cert(lk, "www.example.com", "DNS:www.example.com", -1, 90, NULL, NULL, 0, EVP_sha256());
        STACK_OF(X509) *one = sk_X509_new_null();
        sk_X509_push(one, self);
        moat_doctor_check_chain(&r, "s", one, "www.example.com", trust, "unit trust", &o, NULL);
        CHECK(has(&r, "self-signed"));
        sk_X509_free(one);
        X509_free(self);
    }
    moat_doctor_report_dispose(&r);

    /* No certificate at all. */
    moat_doctor_report_init(&r);
    moat_doctor_check_chain(&r, "s", NULL, NULL, trust, "unit trust", &o, NULL);
    CHECK(has(&r, "no-certificate"));
    moat_doctor_report_dispose(&r);

    sk_X509_free(chain);
    X509_STORE_free(trust);
    X509_free(root);
    X509_free(good);
    X509_free(expired);
    X509_free(future);
    X509_free(soon);
    X509_free(cnonly);
    X509_free(sha1);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(lk);
}

int main(void)
{
    RUN(test_target_parse);
    RUN(test_report_model);
    RUN(test_text_output);
    RUN(test_json_output);
    RUN(test_chain_checks);
    return harness_done();
}
