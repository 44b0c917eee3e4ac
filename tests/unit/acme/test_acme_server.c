/* The ACME server's answers through moat_acme_handle on a real store: directory, nonces, accounts, and
 * the refusals (replayed nonce, wrong url, bad signature, jwk where a kid is wanted, a name outside
 * allow, EAB required), each a problem document; renewalInfo before and after
 * acme_server.renew_issued_before. */
#include "acme/acme.h"
#include "acme/acme_server_int.h"
#include "config/config.h"
#include "harness.h"
#include "store/store.h"

#include <openssl/x509v3.h>
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
    (void)moat_strlcpy(kid, r.location, sizeof kid);
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

    /* A name outside allow: refused naming the rule. An address ordered as a dns identifier: refused,
     * saying to use "ip" (RFC 8738). */
    static const char *const refused[][2] = {
        {"www.example.org", "acme_server.allow rule (localhost, *.corp.test)"},
        {"127.0.0.1", "identifier of type \\\"ip\\\""},
    };
    json_t *bad = NULL;
    for (size_t i = 0; i < MOAT_ARRAY_LEN(refused); i++) {
        json_decref(bad);
        bad = json_pack("{s[{ssss}]}", "identifiers", "type", "dns", "value", refused[i][0]);
        body =
            moat_acme_jws_sign(key, kid, fresh_nonce(nonce), "https://acme.test/acme/new-order", bad, &err);
        call("POST", "/acme/new-order", body, &r);
        expect_problem(&r, 400, "rejectedIdentifier");
        CHECK_CONTAINS(r.body, refused[i][1]);
        moat_acme_response_dispose(&r);
        moat_free(&body);
    }

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

/* The URL of member <key> (or of element 0 of the array <key>) of the JSON body of <r>, into <out>. */
static void body_url(const moat_acme_response_t *r, const char *key, char *out, size_t outsz)
{
    moat_err_t err = {0};
    json_t *doc = moat_acme_json_parse(r->body, r->body_len, &err),
           *v = doc ? json_object_get(doc, key) : NULL;
    if (json_is_array(v))
        v = json_array_get(v, 0);
    snprintf(out, outsz, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(doc);
}

/* POSTs <payload> (NULL: POST-as-GET) signed by <key> as <kid> to <url> (https://acme.test/acme/...). */
static void post(EVP_PKEY *key, const char *kid, const char *url, const json_t *payload,
                 moat_acme_response_t *r)
{
    moat_err_t err = {0};
    char nonce[64];
    char *body = moat_acme_jws_sign(key, kid, fresh_nonce(nonce), url, payload, &err);
    CHECK(body != NULL);
    call("POST", url + strlen("https://acme.test"), body, r);
    moat_free(&body);
}

/* A validation the full queue could not take is not dropped: polling the authorization queues it. */
static void test_full_queue(void)
{
    moat_acme_response_t r;
    char kid[256], authz[256], chall[256], id[64];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    json_t *pl = json_pack("{sb}", "termsOfServiceAgreed", 1), *empty = json_object();
    json_t *order = json_pack("{s[{ssss}]}", "identifiers", "type", "dns", "value", "localhost");

    post(key, NULL, "https://acme.test/acme/new-account", pl, &r);
    CHECK_EQ(r.status, 201);
    (void)moat_strlcpy(kid, r.location, sizeof kid);
    moat_acme_response_dispose(&r);
    post(key, kid, "https://acme.test/acme/new-order", order, &r);
    CHECK_EQ(r.status, 201);
    body_url(&r, "authorizations", authz, sizeof authz);
    moat_acme_response_dispose(&r);
    post(key, kid, authz, NULL, &r);
    CHECK_EQ(r.status, 200);
    {
        moat_err_t err = {0};
        json_t *doc = moat_acme_json_parse(r.body, r.body_len, &err);
        json_t *ch = json_array_get(json_object_get(doc, "challenges"), 0);
        snprintf(chall, sizeof chall, "%s",
                 moat_acme_json_str(ch, "url") ? moat_acme_json_str(ch, "url") : "");
        json_decref(doc);
    }
    moat_acme_response_dispose(&r);
    CHECK(strstr(chall, "/acme/chall/") != NULL);
    snprintf(id, sizeof id, "%s", strrchr(chall, '/') + 1);

    moat__acme_service_queue_max(svc, 0);
    post(key, kid, chall, empty, &r);
    CHECK_EQ(r.status, 200);
    CHECK_CONTAINS(r.body, "\"status\":\"processing\"");
    CHECK(r.retry_after > 0);
    CHECK(!moat__acme_validation_pending(svc, id));
    moat_acme_response_dispose(&r);

    moat__acme_service_queue_max(svc, 256);
    post(key, kid, authz, NULL, &r);
    CHECK_EQ(r.status, 200);
    moat_acme_response_dispose(&r);
    CHECK(moat__acme_validation_pending(svc, id));

    json_decref(order);
    json_decref(empty);
    json_decref(pl);
    EVP_PKEY_free(key);
}

/* Records a self-signed certificate with serial <serial> issued at <issued>; its certID into <certid>. */
static void add_issued(long serial, int64_t issued, char *certid, size_t idsz)
{
    moat_err_t err = {0};
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509V3_CTX v3;
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"a", -1,
                               -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, NULL);
    X509_time_adj_ex(X509_getm_notAfter(x), 30, 0, NULL);
    X509_set_pubkey(x, k);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ski = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(x, ski, -1);
    X509_EXTENSION *aki = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
    X509_add_ext(x, aki, -1);
    CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    CHECK(n > 0);
    moat_store_issued_t is = {0};
    snprintf(is.profile, sizeof is.profile, "server");
    is.der.data = der;
    is.der.len = (size_t)n;
    is.issued = issued;
    CHECK_EQ(moat_store_issued_add(st, &is, &err), 0);
    const ASN1_OCTET_STRING *id = X509_get0_authority_key_id(x);
    unsigned char ser[8];
    size_t sl = 0;
    for (long v = serial; v > 0; v >>= 8)
        sl++;
    for (size_t i = 0; i < sl; i++)
        ser[sl - 1 - i] = (unsigned char)(serial >> (8 * i));
    char a64[128], s64[32];
    CHECK(id != NULL && moat_b64url_encode(id->data, (size_t)id->length, a64, sizeof a64) >= 0 &&
          moat_b64url_encode(ser, sl, s64, sizeof s64) >= 0);
    snprintf(certid, idsz, "%s.%s", a64, s64);
    OPENSSL_free(der);
    X509_EXTENSION_free(ski);
    X509_EXTENSION_free(aki);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* The start of the suggested window renewalInfo answers for <certid>. */
static int64_t window_start(const char *certid)
{
    moat_err_t err = {0};
    moat_acme_response_t r;
    char path[256];
    snprintf(path, sizeof path, "/acme/renewal-info/%s", certid);
    call("GET", path, NULL, &r);
    CHECK_EQ(r.status, 200);
    json_t *doc = r.body ? moat_acme_json_parse(r.body, r.body_len, &err) : NULL;
    int64_t t = -1;
    CHECK_EQ(moat_time_parse(moat_acme_json_str(json_object_get(doc, "suggestedWindow"), "start"), 0, &t), 0);
    json_decref(doc);
    moat_acme_response_dispose(&r);
    return t;
}

/* renew_issued_before: certificates issued before it are told to renew now, later ones keep their window
 * (two thirds into the lifetime). */
static void test_renew_issued_before(void)
{
    char old[256], young[256], cut[MOAT_TIME_SIZE];
    int64_t now = (int64_t)time(NULL);
    add_issued(0x51AB01, now - 100, old, sizeof old);
    add_issued(0x51AB02, now + 100, young, sizeof young);
    CHECK(window_start(old) > now + 86400);
    conf.renew_issued_before = moat_time_rfc3339(now, cut);
    CHECK(window_start(old) <= now);
    CHECK(window_start(young) > now + 86400);
    conf.renew_issued_before = NULL;
    CHECK(window_start(old) > now + 86400);
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
    if (st != NULL && svc != NULL) {
        RUN(test_flow);
        RUN(test_full_queue);
        RUN(test_renew_issued_before);
    }
    moat_acme_service_free(svc);
    moat_store_close(st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return harness_done();
}
