/* Unit tests for src/import/analyse.c on a tree made by tests/data/import/make-tree.sh with openssl. */
#include "harness.h"
#include "import/import.h"

#include <limits.h>
#include <unistd.h>

static char root[64];

static const moat_import_pair_t *pair_named(const moat_import_result_t *r, const char *name, int current)
{
    for (size_t i = 0; i < r->npairs; i++)
        if (strcmp(r->pairs[i].name, name) == 0 && (current < 0 || r->pairs[i].current == (current != 0)))
            return &r->pairs[i];
    return NULL;
}

static const moat_import_problem_t *problem_for(const moat_import_result_t *r, const char *suffix)
{
    for (size_t i = 0; i < r->nproblems; i++) {
        const char *p = r->problems[i].file->path;
        size_t n = strlen(p), m = strlen(suffix);
        if (n >= m && strcmp(p + n - m, suffix) == 0)
            return &r->problems[i];
    }
    return NULL;
}

static void analyse(const char *password, moat_import_scan_t *scan, moat_import_result_t *res)
{
    char path[PATH_MAX];
    moat_err_t err = {0};
    snprintf(path, sizeof(path), "%s/out", root);
    CHECK_EQ(moat_import_scan(path, scan, &err), 0);
    CHECK_EQ(moat_import_analyse(scan, password, res, &err), 0);
}

static void test_without_password(void)
{
    moat_import_scan_t scan;
    moat_import_result_t res;
    const moat_import_pair_t *p;
    const moat_import_problem_t *pb;
    analyse(NULL, &scan, &res);
    /* a.test, b (www.b.test), ex.test twice, orphan.key */
    CHECK_EQ(res.npairs, 5);
    p = pair_named(&res, "a.test", 1);
    CHECK(p != NULL);
    if (p != NULL) {
        CHECK(p->cert != NULL);
        CHECK_EQ(sk_X509_num(p->chain), 1); /* the intermediate; the root is not in the tree */
        CHECK_STR(p->chain_missing, "CN=Import Test Root");
        CHECK_STR(p->algorithm, "ec-p256");
        CHECK_STR(p->subject, "CN=a.test");
        CHECK(!p->grouped);
    }
    p = pair_named(&res, "www.b.test", 1);
    CHECK(p != NULL && p->cert != NULL && p->file->referenced);
    p = pair_named(&res, "ex.test", 1);
    CHECK(p != NULL);
    if (p != NULL) {
        CHECK(p->grouped);
        CHECK_EQ(p->cert_file->certbot, MOAT_IMPORT_CERTBOT_LIVE);
        CHECK_CONTAINS(p->cert_file->path, "/live/ex.test/cert.pem");
        CHECK_EQ(sk_X509_num(p->chain), 1);
    }
    p = pair_named(&res, "ex.test", 0);
    CHECK(p != NULL && p->grouped && p->cert_file->certbot == MOAT_IMPORT_CERTBOT_ARCHIVE);
    CHECK(res.pairs[0].current || strcmp(res.pairs[0].name, "ex.test") != 0);
    /* The orphan key: no certificate, a name from its fingerprint. */
    for (size_t i = 0; i < res.npairs; i++)
        if (res.pairs[i].cert == NULL) {
            CHECK_CONTAINS(res.pairs[i].file->path, "/certs/orphan.key");
            CHECK(strncmp(res.pairs[i].name, "imported-", 9) == 0);
        }
    /* Encrypted files are problems that ask for a password. */
    CHECK_EQ(res.nproblems, 2);
    pb = problem_for(&res, "/certs/enc.key");
    CHECK(pb != NULL && pb->code == MOAT_E_PASSWORD);
    if (pb != NULL)
        CHECK_CONTAINS(pb->msg, "--password-file");
    pb = problem_for(&res, "/p12/site.p12");
    CHECK(pb != NULL && pb->code == MOAT_E_PASSWORD);
    /* lonely.pem and enc.pem (its key stayed closed) have no key. */
    CHECK_EQ(res.norphan_certs, 2);
    CHECK_EQ(res.nca_certs, 1);
    CHECK(res.nfiles_skipped >= 1); /* certbot's README */
    moat_import_result_dispose(&res);
    moat_import_scan_dispose(&scan);
}

static void test_with_password(void)
{
    moat_import_scan_t scan;
    moat_import_result_t res;
    const moat_import_pair_t *p;
    analyse("secret", &scan, &res);
    CHECK_EQ(res.npairs, 7);
    CHECK_EQ(res.nproblems, 0);
    CHECK_EQ(res.norphan_certs, 1);
    p = pair_named(&res, "enc.test", 1);
    CHECK(p != NULL && p->cert != NULL);
    p = pair_named(&res, "p12-site", 1); /* the PKCS#12 friendlyName */
    CHECK(p != NULL && p->cert != NULL && sk_X509_num(p->chain) == 1);
    moat_import_result_dispose(&res);
    moat_import_scan_dispose(&scan);

    analyse("wrong", &scan, &res);
    CHECK_EQ(res.nproblems, 2);
    if (res.nproblems > 0)
        CHECK_CONTAINS(res.problems[0].msg, "the password given does not open it");
    moat_import_result_dispose(&res);
    moat_import_scan_dispose(&scan);
}

int main(void)
{
    const char *data = getenv("MOAT_TEST_DATA");
    char cmd[PATH_MAX * 3];
    FILE *p;
    int rc;
    if (data == NULL) {
        fprintf(stderr, "MOAT_TEST_DATA is not set\n");
        return 1;
    }
    snprintf(root, sizeof(root), "/tmp/moat-analyse-XXXXXX");
    if (mkdtemp(root) == NULL)
        return 1;
    snprintf(cmd, sizeof(cmd), "sh '%s/import/make-tree.sh' '%s/out' '%s/work'", data, root, root);
    p = popen(cmd, "r");
    rc = p != NULL ? pclose(p) : -1;
    if (rc != 0) {
        fprintf(stderr, "make-tree.sh failed (%d)\n", rc);
        return 1;
    }
    RUN(test_without_password);
    RUN(test_with_password);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    p = popen(cmd, "r");
    if (p != NULL)
        pclose(p);
    return harness_done();
}
