/*
 * doctor local checks: each failure is built in a real store (and config file, and socket), then
 * moat_doctor_local() must name it. Cases the command line refuses to create (a certificate on the
 * wrong key, an anchor that is not a CA) are built through the store API directly.
 */
#include "config/config.h"
#include "doctor/doctor.h"
#include "harness.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static int seq;

typedef struct fx {
    char store[300], master[300], config[300];
    moat_store_t *st;
    moat_doctor_report_t r;
} fx_t;

static void fx_open(fx_t *f)
{
    moat_err_t err = {0};
    memset(f, 0, sizeof(*f));
    seq++;
    snprintf(f->store, sizeof(f->store), "%s/s%d.db", dir, seq);
    snprintf(f->master, sizeof(f->master), "%s/s%d.db.key", dir, seq);
    snprintf(f->config, sizeof(f->config), "%s/c%d.yaml", dir, seq);
    if (moat_store_open(f->store, f->master, MOAT_STORE_CREATE, &f->st, &err) != 0)
        fprintf(stderr, "store open: %s\n", err.msg);
    moat_doctor_report_init(&f->r);
}

static void fx_config(fx_t *f, const char *yaml)
{
    FILE *c = fopen(f->config, "w");
    if (c != NULL) {
        fputs(yaml, c);
        fclose(c);
    }
}

/* Closes the store (doctor opens its own read-only connection) and runs the local checks. */
static void fx_run(fx_t *f, int with_config)
{
    moat_doctor_opts_t o;
    moat_err_t err = {0};
    moat_store_close(f->st);
    f->st = NULL;
    moat_doctor_opts_init(&o);
    o.system_trust = 0;
    o.timeout_ms = 1000;
    CHECK_EQ(moat_doctor_local(with_config ? f->config : NULL, f->store, &o, &f->r, &err), 0);
    if (err.code)
        fprintf(stderr, "doctor: %s\n", err.msg);
}

static void fx_done(fx_t *f)
{
    moat_store_close(f->st);
    moat_doctor_report_dispose(&f->r);
}

static const moat_doctor_finding_t *finding(fx_t *f, const char *id)
{
    const moat_doctor_finding_t *x = moat_doctor_find(&f->r, id);
    if (x == NULL) {
        fprintf(stderr, "  (%s: finding %s missing; got:", harness_current, id);
        for (size_t i = 0; i < f->r.nfindings; i++)
            fprintf(stderr, " %s", f->r.findings[i].id);
        fprintf(stderr, ")\n");
    }
    return x;
}

/* ---- PKI in memory ---- */

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long from_days, long to_days,
                       X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    static long serial = 1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
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
    if (!ca && (ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "serverAuth")) != NULL) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

static moat_store_blob_t der_of(X509 *x)
{
    moat_store_blob_t b = {0};
    unsigned char *p = NULL;
    int n = i2d_X509(x, &p);
    if (n > 0) {
        b.data = moat_malloc((size_t)n);
        memcpy(b.data, p, (size_t)n);
        b.len = (size_t)n;
    }
    OPENSSL_free(p);
    return b;
}

/* Adds key <name> in <state>; returns its row id (0 on failure). */
static int64_t add_key(fx_t *f, const char *name, moat_key_state_t state, EVP_PKEY *pk, int exportable)
{
    moat_store_key_t k = {0};
    moat_err_t err = {0};
    unsigned char *spki = NULL, *p8der = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    int slen = i2d_PUBKEY(pk, &spki), plen = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &p8der) : -1;
    int64_t id = 0;
    moat_strlcpy(k.name, name, sizeof(k.name));
    k.state = state;
    moat_strlcpy(k.algorithm, "ec-p256", sizeof(k.algorithm));
    k.exportable = exportable;
    k.pubkey.data = spki;
    k.pubkey.len = (size_t)slen;
    if (moat_store_key_add(f->st, &k, p8der, (size_t)plen, &err) == 0)
        id = k.id;
    else
        fprintf(stderr, "key add %s: %s\n", name, err.msg);
    k.pubkey.data = NULL;
    OPENSSL_free(spki);
    OPENSSL_clear_free(p8der, plen > 0 ? (size_t)plen : 0);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return id;
}

static void install(fx_t *f, int64_t key_id, X509 *leaf, X509 *inter)
{
    moat_store_blob_t d = der_of(leaf), c = {0};
    moat_err_t err = {0};
    if (inter != NULL)
        c = der_of(inter);
    if (moat_store_cert_install(f->st, key_id, d.data, d.len, inter ? &c : NULL, inter ? 1 : 0, NULL, &err) !=
        0)
        fprintf(stderr, "install: %s\n", err.msg);
    moat_store_blob_dispose(&d);
    moat_store_blob_dispose(&c);
}

static EVP_PKEY *root_key, *inter_key;
static X509 *root_cert, *inter_cert;

/* moat's CA in the store: root + intermediate (the trust anchor for the certificates below). */
static void add_ca(fx_t *f, long root_days)
{
    moat_store_ca_t ca = {0};
    moat_err_t err = {0};
    X509 *root =
        root_days == 3650 ? root_cert : make_cert(root_key, "Unit Root", NULL, -1, root_days, NULL, NULL, 1);
    ca.role = MOAT_CA_ROOT;
    ca.key_id = add_key(f, "moat-ca-root", MOAT_KEY_ACTIVE, root_key, 0);
    ca.der = der_of(root);
    if (moat_store_ca_set(f->st, &ca, &err) != 0)
        fprintf(stderr, "ca set: %s\n", err.msg);
    moat_store_blob_dispose(&ca.der);
    if (root != root_cert)
        X509_free(root);
}

#define SITE_FMT                                                                                             \
    "sites:\n"                                                                                               \
    "  - hosts: [%s]\n"                                                                                      \
    "    listen: [\"127.0.0.1:%d\"]\n"                                                                       \
    "    certificate: %s\n"                                                                                  \
    "%s"

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static void site_config(fx_t *f, const char *hosts, int port, const char *cert, const char *extra)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), SITE_FMT, hosts, port, cert, extra ? extra : "");
    fx_config(f, buf);
}

/* ---- tests ---- */

static void test_store_missing(void)
{
    fx_t f;
    moat_doctor_opts_t o;
    moat_err_t err = {0};
    memset(&f, 0, sizeof(f));
    moat_doctor_report_init(&f.r);
    moat_doctor_opts_init(&o);
    snprintf(f.store, sizeof(f.store), "%s/none/moat.db", dir);
    CHECK_EQ(moat_doctor_local(NULL, f.store, &o, &f.r, &err), 0);
    CHECK(finding(&f, "store-missing") != NULL);
    CHECK_STR(f.r.store, f.store);
    moat_doctor_report_dispose(&f.r);
}

static void test_pending_key(void)
{
    fx_t f;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    fx_open(&f);
    add_key(&f, "www", MOAT_KEY_PENDING, k, 0);
    fx_run(&f, 0);
    CHECK(finding(&f, "key-pending") != NULL);
    CHECK(finding(&f, "no-config") != NULL);
    CHECK(finding(&f, "key-no-backup") != NULL);
    CHECK_EQ(moat_doctor_count(&f.r, MOAT_DOCTOR_ERROR), 0);
    fx_done(&f);
    EVP_PKEY_free(k);
}

static void test_site_key_missing_and_pending(void)
{
    fx_t f;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    fx_open(&f);
    add_key(&f, "pend", MOAT_KEY_PENDING, k, 0);
    fx_config(&f, "sites:\n"
                  "  - hosts: [a.example]\n    listen: [\"127.0.0.1:1\"]\n    certificate: nosuchkey\n"
                  "  - hosts: [b.example]\n    listen: [\"127.0.0.1:1\"]\n    certificate: pend\n");
    fx_run(&f, 1);
    CHECK(finding(&f, "site-key-missing") != NULL);
    if (finding(&f, "site-key-missing"))
        CHECK_STR(finding(&f, "site-key-missing")->subject, "site a.example");
    CHECK(finding(&f, "site-key-pending") != NULL);
    CHECK(finding(&f, "listener-down") != NULL);
    CHECK(finding(&f, "shared-listener") != NULL);
    if (finding(&f, "shared-listener"))
        CHECK_EQ(finding(&f, "shared-listener")->severity, MOAT_DOCTOR_WARNING);
    fx_done(&f);
    EVP_PKEY_free(k);
}

static void test_served_certificate_checks(void)
{
    fx_t f;
    EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256"), *c = EVP_EC_gen("P-256"),
             *d = EVP_EC_gen("P-256");
    X509 *good = make_cert(a, "www.example.com", "DNS:www.example.com", -1, 90, inter_cert, inter_key, 0);
    X509 *unused = make_cert(b, "old.example.com", "DNS:old.example.com", -1, 90, inter_cert, inter_key, 0);
    X509 *expired = make_cert(c, "exp.example.com", "DNS:exp.example.com", -30, -1, inter_cert, inter_key, 0);
    X509 *nointer =
        make_cert(d, "chain.example.com", "DNS:chain.example.com", -1, 10, inter_cert, inter_key, 0);
    int port = free_port();
    char cfg[2048];
    fx_open(&f);
    add_ca(&f, 3650);
    install(&f, add_key(&f, "www", MOAT_KEY_ACTIVE, a, 1), good, inter_cert);
    install(&f, add_key(&f, "old", MOAT_KEY_ACTIVE, b, 1), unused, inter_cert);
    install(&f, add_key(&f, "exp", MOAT_KEY_ACTIVE, c, 1), expired, inter_cert);
    install(&f, add_key(&f, "chain", MOAT_KEY_ACTIVE, d, 1), nointer, NULL);
    snprintf(cfg, sizeof(cfg),
             "sites:\n"
             "  - hosts: [www.example.com, api.example.com]\n    default: true\n"
             "    listen: [\"127.0.0.1:%d\"]\n    certificate: www\n"
             "  - hosts: [exp.example.com]\n    listen: [\"127.0.0.1:%d\"]\n    certificate: auto\n"
             "  - hosts: [chain.example.com]\n    listen: [\"127.0.0.1:%d\"]\n    certificate: chain\n",
             port, port, port);
    fx_config(&f, cfg);
    fx_run(&f, 1);
    CHECK(finding(&f, "name-mismatch") != NULL);
    if (finding(&f, "name-mismatch")) {
        CHECK_STR(finding(&f, "name-mismatch")->subject, "site www.example.com");
        CHECK_CONTAINS(finding(&f, "name-mismatch")->what, "api.example.com");
    }
    CHECK(finding(&f, "key-unused") != NULL);
    if (finding(&f, "key-unused"))
        CHECK_STR(finding(&f, "key-unused")->subject, "key old");
    CHECK(finding(&f, "site-no-certificate") != NULL);
    if (finding(&f, "site-no-certificate"))
        CHECK_CONTAINS(finding(&f, "site-no-certificate")->what, "key exp");
    CHECK(finding(&f, "cert-expired") != NULL);
    CHECK(finding(&f, "chain-incomplete") != NULL);
    if (finding(&f, "chain-incomplete"))
        CHECK_STR(finding(&f, "chain-incomplete")->subject, "site chain.example.com");
    CHECK(finding(&f, "cert-expiring") != NULL);
    CHECK(finding(&f, "shared-listener") != NULL);
    if (finding(&f, "shared-listener")) {
        CHECK_EQ(finding(&f, "shared-listener")->severity, MOAT_DOCTOR_INFO);
        CHECK_CONTAINS(finding(&f, "shared-listener")->what, "a client without SNI gets www.example.com");
    }
    /* Exportable keys need no backup; moat's CA key is not exportable. */
    CHECK(finding(&f, "key-no-backup") != NULL);
    if (finding(&f, "key-no-backup"))
        CHECK_STR(finding(&f, "key-no-backup")->subject, "key moat-ca-root");
    CHECK(moat_doctor_find(&f.r, "untrusted-root") == NULL);
    fx_done(&f);
    X509_free(good);
    X509_free(unused);
    X509_free(expired);
    X509_free(nointer);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
    EVP_PKEY_free(c);
    EVP_PKEY_free(d);
}

static void test_cert_key_mismatch(void)
{
    fx_t f;
    EVP_PKEY *a = EVP_EC_gen("P-256"), *b = EVP_EC_gen("P-256");
    X509 *for_b = make_cert(b, "www.example.com", "DNS:www.example.com", -1, 90, inter_cert, inter_key, 0);
    fx_open(&f);
    add_ca(&f, 3650);
    install(&f, add_key(&f, "www", MOAT_KEY_ACTIVE, a, 1), for_b, inter_cert);
    fx_run(&f, 0);
    CHECK(finding(&f, "cert-key-mismatch") != NULL);
    fx_done(&f);
    X509_free(for_b);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

/* A CRL of the root, in the store setting the CA commands keep it in. */
static void add_crl(fx_t *f, const char *setting, long last_days, long next_days)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    BIO *b = BIO_new(BIO_s_mem());
    moat_err_t err = {0};
    char *pem = NULL;
    long n;
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(root_cert));
    X509_gmtime_adj(t, last_days * 86400);
    X509_CRL_set1_lastUpdate(crl, t);
    X509_gmtime_adj(t, next_days * 86400);
    X509_CRL_set1_nextUpdate(crl, t);
    X509_CRL_sign(crl, root_key, EVP_sha256());
    PEM_write_bio_X509_CRL(b, crl);
    n = BIO_get_mem_data(b, &pem);
    {
        char *z = moat_calloc(1, (size_t)n + 1);
        memcpy(z, pem, (size_t)n);
        if (moat_store_setting_set(f->st, setting, z, &err) != 0)
            fprintf(stderr, "setting: %s\n", err.msg);
        moat_free(&z);
    }
    BIO_free(b);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
}

static void test_crls(void)
{
    fx_t f;
    fx_open(&f);
    add_ca(&f, 3650);
    add_crl(&f, "ca.crl.root", -8, -1);
    add_crl(&f, "ca.crl.intermediate", -5, 2);
    fx_run(&f, 0);
    CHECK(finding(&f, "crl-expired") != NULL);
    if (finding(&f, "crl-expired"))
        CHECK_STR(finding(&f, "crl-expired")->subject, "ca root");
    CHECK(finding(&f, "crl-expiring") != NULL);
    if (finding(&f, "crl-expiring")) {
        CHECK_STR(finding(&f, "crl-expiring")->subject, "ca intermediate");
        CHECK_CONTAINS(finding(&f, "crl-expiring")->fix, "moat ca crl");
    }
    fx_done(&f);

    /* A fresh CRL is no finding. */
    fx_open(&f);
    add_ca(&f, 3650);
    add_crl(&f, "ca.crl.root", 0, 7);
    fx_run(&f, 0);
    CHECK(moat_doctor_find(&f.r, "crl-expiring") == NULL && moat_doctor_find(&f.r, "crl-expired") == NULL);
    fx_done(&f);
}

static void test_ca_and_anchors(void)
{
    fx_t f;
    moat_err_t err = {0};
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *leaf = make_cert(k, "leaf", "DNS:leaf", -1, 90, NULL, NULL, 0);
    X509 *old = make_cert(k, "Old Corp CA", NULL, -100, -1, NULL, NULL, 1);
    moat_store_blob_t d1 = der_of(leaf), d2 = der_of(old);
    fx_open(&f);
    add_ca(&f, 20);
    if (moat_store_anchor_add(f.st, "leafy", d1.data, d1.len, &err) != 0)
        fprintf(stderr, "anchor add: %s\n", err.msg);
    if (moat_store_anchor_add(f.st, "oldcorp", d2.data, d2.len, &err) != 0)
        fprintf(stderr, "anchor add: %s\n", err.msg);
    fx_run(&f, 0);
    CHECK(finding(&f, "ca-expiring") != NULL);
    CHECK(finding(&f, "anchor-not-ca") != NULL);
    if (finding(&f, "anchor-not-ca"))
        CHECK_STR(finding(&f, "anchor-not-ca")->subject, "anchor leafy");
    CHECK(finding(&f, "anchor-expired") != NULL);
    fx_done(&f);
    moat_store_blob_dispose(&d1);
    moat_store_blob_dispose(&d2);
    X509_free(leaf);
    X509_free(old);
    EVP_PKEY_free(k);
}

static void test_client_trust(void)
{
    fx_t f;
    fx_open(&f);
    site_config(&f, "a.example", 1, "auto",
                "    client_certificate: optional\n    locations:\n      - path: /p\n"
                "        client_certificate: required\n"
                "  - hosts: [b.example]\n    listen: [\"127.0.0.1:1\"]\n    client_certificate: required\n"
                "    client_trust: [corp]\n");
    fx_run(&f, 1);
    CHECK(finding(&f, "client-trust-missing") != NULL);
    if (finding(&f, "client-trust-missing"))
        CHECK_STR(finding(&f, "client-trust-missing")->subject, "site a.example");
    CHECK(finding(&f, "client-trust-unknown") != NULL);
    if (finding(&f, "client-trust-unknown"))
        CHECK_CONTAINS(finding(&f, "client-trust-unknown")->what, "corp");
    fx_done(&f);
}

static void test_server_status(void)
{
    fx_t f;
    moat_store_server_status_t s = {0};
    moat_err_t err = {0};
    int64_t gen = 0;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    fx_open(&f);
    add_key(&f, "a", MOAT_KEY_PENDING, k, 1);
    CHECK_EQ(moat_store_generation(f.st, &gen, &err), 0);
    s.applied_generation = gen - 1;
    s.pid = getpid(); /* alive: the server is running but behind */
    s.updated = time(NULL);
    CHECK_EQ(moat_store_server_status_set(f.st, &s, &err), 0);
    fx_run(&f, 0);
    CHECK(finding(&f, "server-behind") != NULL);
    CHECK(moat_doctor_find(&f.r, "change-refused") == NULL);
    fx_done(&f);

    fx_open(&f);
    add_key(&f, "a", MOAT_KEY_PENDING, k, 1);
    CHECK_EQ(moat_store_generation(f.st, &gen, &err), 0);
    s.applied_generation = gen - 1;
    s.refused_generation = gen;
    moat_strlcpy(s.refusal, "site b.example requires client certificates and has no usable trust anchor",
                 sizeof(s.refusal));
    CHECK_EQ(moat_store_server_status_set(f.st, &s, &err), 0);
    fx_run(&f, 0);
    CHECK(finding(&f, "change-refused") != NULL);
    if (finding(&f, "change-refused"))
        CHECK_CONTAINS(finding(&f, "change-refused")->what, "no usable trust anchor");
    CHECK(moat_doctor_find(&f.r, "server-behind") == NULL);
    fx_done(&f);
    EVP_PKEY_free(k);
}

static void test_port_held(void)
{
    fx_t f;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    char pid[32];
    CHECK(s >= 0);
    CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(listen(s, 4), 0);
    CHECK_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
    fx_open(&f);
    site_config(&f, "a.example", ntohs(a.sin_port), "auto", NULL);
    fx_run(&f, 1);
    /* It accepts (the kernel completes the handshake) but never answers. */
    CHECK(finding(&f, "listener-no-answer") != NULL);
    CHECK(finding(&f, "port-held") != NULL);
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    if (finding(&f, "port-held"))
        CHECK_CONTAINS(finding(&f, "port-held")->what, pid);
    fx_done(&f);
    close(s);
}

static void test_backup_clears_no_backup(void)
{
    fx_t f;
    moat_err_t err = {0};
    char bak[320];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    fx_open(&f);
    add_key(&f, "a", MOAT_KEY_PENDING, k, 0);
    snprintf(bak, sizeof(bak), "%s/backup%d.db", dir, seq);
    CHECK_EQ(moat_store_backup(f.st, bak, 0, &err), 0);
    fx_run(&f, 0);
    CHECK(moat_doctor_find(&f.r, "key-no-backup") == NULL);
    fx_done(&f);
    EVP_PKEY_free(k);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    char tmpl[] = "/tmp/moat-doctor-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        return 1;
    moat_strlcpy(dir, tmpl, sizeof(dir));
    root_key = EVP_EC_gen("P-256");
    inter_key = EVP_EC_gen("P-256");
    root_cert = make_cert(root_key, "Unit Root", NULL, -1, 3650, NULL, NULL, 1);
    inter_cert = make_cert(inter_key, "Unit Intermediate", NULL, -1, 3000, root_cert, root_key, 1);

    RUN(test_store_missing);
    RUN(test_pending_key);
    RUN(test_site_key_missing_and_pending);
    RUN(test_served_certificate_checks);
    RUN(test_cert_key_mismatch);
    RUN(test_ca_and_anchors);
    RUN(test_crls);
    RUN(test_client_trust);
    RUN(test_server_status);
    RUN(test_port_held);
    RUN(test_backup_clears_no_backup);

    X509_free(root_cert);
    X509_free(inter_cert);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    /* The temporary folder holds only this test's stores, master keys, backups and configs. */
    (void)nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return harness_done();
}
