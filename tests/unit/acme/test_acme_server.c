/* The ACME server's answers through moat_acme_handle on a real store: directory, nonces, accounts, and
 * the refusals (replayed nonce, wrong url, bad signature, jwk where a kid is wanted, a name outside
 * allow, EAB required), each a problem document. */
#include "acme/acme.h"
#include "config/config.h"
#include "harness.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static moat_acme_service_t *svc;
static moat_store_t *st;
static moat_acme_server_conf_t conf;
static char *allow[] = {"localhost", "*.corp.test"};

static void call(const char *method, const char *path, const char *body, moat_acme_response_t *r)
{
    moat_acme_request_t q = {
        method, path, "acme.test", "application/jose+json", body, body ? strlen(body) : 0, &conf};
    moat_acme_handle(svc, st, &q, r);
}

static char *fresh_nonce(char *out)
{
    moat_acme_response_t r;
    call("HEAD", "/acme/new-nonce", NULL, &r);
    CHECK_EQ(r.status, 200);
    strcpy(out, r.nonce);
    moat_acme_response_dispose(&r);
    return out;
}

static void expect_problem(const moat_acme_response_t *r, int status, const char *type)
{
    CHECK_EQ(r->status, status);
    CHECK(r->body != NULL);
    CHECK_CONTAINS(r->body, type);
    CHECK(r->nonce[0] != '\0');
}

static void test_flow(void)
{
    moat_err_t err = {0};
    moat_acme_response_t r;
    char nonce[64], url[256], kid[256];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
             *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    json_t *pl = json_pack("{sb}", "termsOfServiceAgreed", 1);

    call("GET", "/acme/directory", NULL, &r);
    CHECK_EQ(r.status, 200);
    CHECK_CONTAINS(r.body, "\"newAccount\":\"https://acme.test/acme/new-account\"");
    moat_acme_response_dispose(&r);

    snprintf(url, sizeof url, "https://acme.test/acme/new-account");
    char *body = moat_acme_jws_sign(key, NULL, fresh_nonce(nonce), url, pl, &err);
    call("POST", "/acme/new-account", body, &r);
    CHECK_EQ(r.status, 201);
    CHECK_CONTAINS(r.location, "https://acme.test/acme/acct/");
    snprintf(kid, sizeof kid, "%s", r.location);
    moat_acme_response_dispose(&r);
    /* The same body again: its nonce was used. */
    call("POST", "/acme/new-account", body, &r);
    expect_problem(&r, 400, "badNonce");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* A url that is not where the request went. */
    body = moat_acme_jws_sign(key, NULL, fresh_nonce(nonce), "https://acme.test/acme/new-order", pl, &err);
    call("POST", "/acme/new-account", body, &r);
    expect_problem(&r, 403, "unauthorized");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* Signed by another key than the account's. */
    json_t *order = json_pack("{s[{ssss}]}", "identifiers", "type", "dns", "value", "localhost");
    body =
        moat_acme_jws_sign(other, kid, fresh_nonce(nonce), "https://acme.test/acme/new-order", order, &err);
    call("POST", "/acme/new-order", body, &r);
    expect_problem(&r, 400, "does not verify");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* A jwk where the account's kid is wanted. */
    body = moat_acme_jws_sign(key, NULL, fresh_nonce(nonce), "https://acme.test/acme/new-order", order, &err);
    call("POST", "/acme/new-order", body, &r);
    expect_problem(&r, 400, "wants a kid");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* A name outside allow: refused naming the rule. */
    json_t *bad = json_pack("{s[{ssss}]}", "identifiers", "type", "dns", "value", "www.example.org");
    body = moat_acme_jws_sign(key, kid, fresh_nonce(nonce), "https://acme.test/acme/new-order", bad, &err);
    call("POST", "/acme/new-order", body, &r);
    expect_problem(&r, 400, "rejectedIdentifier");
    CHECK_CONTAINS(r.body, "acme_server.allow rule (localhost, *.corp.test)");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* An order inside allow: pending, one authorization with its challenges. */
    body = moat_acme_jws_sign(key, kid, fresh_nonce(nonce), "https://acme.test/acme/new-order", order, &err);
    call("POST", "/acme/new-order", body, &r);
    CHECK_EQ(r.status, 201);
    CHECK_CONTAINS(r.body, "\"status\":\"pending\"");
    CHECK_CONTAINS(r.body, "/acme/authz/");
    moat_acme_response_dispose(&r);
    moat_free(&body);

    /* EAB required: an account without a binding is refused. */
    conf.eab_required = 1;
    body = moat_acme_jws_sign(other, NULL, fresh_nonce(nonce), url, pl, &err);
    call("POST", "/acme/new-account", body, &r);
    expect_problem(&r, 400, "externalAccountRequired");
    moat_acme_response_dispose(&r);
    moat_free(&body);
    conf.eab_required = 0;

    json_decref(order);
    json_decref(bad);
    json_decref(pl);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

int main(void)
{
    char dir[] = "/tmp/moat-acme-test-XXXXXX", db[128], mk[140];
    moat_err_t err = {0};
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(db, sizeof db, "%s/moat.db", dir);
    snprintf(mk, sizeof mk, "%s/moat.db.key", dir);
    CHECK_EQ(moat_store_open(db, mk, MOAT_STORE_CREATE, &st, &err), 0);
    svc = moat_acme_service_new(db, mk, 1, &err);
    CHECK(svc != NULL);
    conf.allow.v = allow;
    conf.allow.n = 2;
    conf.http01_port = 80;
    conf.tls_alpn01_port = 443;
    conf.orders_per_hour = 300;
    conf.failures_per_hour = 60;
    if (st != NULL && svc != NULL)
        RUN(test_flow);
    moat_acme_service_free(svc);
    moat_store_close(st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return harness_done();
}
