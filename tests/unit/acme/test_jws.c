#include "acme/acme.h"
#include "harness.h"

#include <openssl/evp.h>
#include <string.h>

static EVP_PKEY *keygen(const char *alg)
{
    if (strcmp(alg, "RSA") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (strcmp(alg, "ED25519") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", alg);
}

/* Signs and verifies with each accepted algorithm, with a jwk and with a kid. */
static void test_sign_verify(void)
{
    static const char *const kinds[] = {"P-256", "P-384", "RSA", "ED25519"};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(kinds); i++) {
        EVP_PKEY *key = keygen(kinds[i]);
        moat_err_t err = {0};
        json_t *pl = json_pack("{ss}", "hello", "world");
        char *body = moat_acme_jws_sign(key, NULL, "n0nce", "https://a.test/acme/new-account", pl, &err);
        CHECK(body != NULL);
        moat_acme_jws_t jws;
        moat_acme_problem_t p = {0};
        CHECK_EQ(moat_acme_jws_parse(body, strlen(body), &jws, &p), 0);
        CHECK_STR(jws.nonce, "n0nce");
        CHECK_STR(jws.url, "https://a.test/acme/new-account");
        CHECK(jws.jwk != NULL && jws.kid == NULL);
        EVP_PKEY *pub = NULL;
        CHECK_EQ(moat_acme_jwk_to_pkey(jws.jwk, &pub, &err), 0);
        CHECK_EQ(moat_acme_jws_verify(&jws, pub, &p), 0);
        CHECK_STR(moat_acme_json_str(jws.payload, "hello"), "world");
        /* Another key of the same kind does not verify it. */
        EVP_PKEY *other = keygen(kinds[i]);
        CHECK_EQ(moat_acme_jws_verify(&jws, other, &p), -1);
        CHECK_EQ(p.type, MOAT_ACME_PROB_MALFORMED);
        CHECK_CONTAINS(p.detail, "does not verify");
        moat_acme_jws_dispose(&jws);
        moat_free(&body);

        /* POST-as-GET with a kid. */
        body = moat_acme_jws_sign(key, "https://a.test/acme/acct/1", "n1", "https://a.test/acme/order/1",
                                  NULL, &err);
        CHECK(body != NULL);
        CHECK_EQ(moat_acme_jws_parse(body, strlen(body), &jws, &p), 0);
        CHECK(jws.payload == NULL && jws.jwk == NULL);
        CHECK_STR(jws.kid, "https://a.test/acme/acct/1");
        CHECK_EQ(moat_acme_jws_verify(&jws, pub, &p), 0);
        moat_acme_jws_dispose(&jws);
        moat_free(&body);
        EVP_PKEY_free(other);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(key);
        json_decref(pl);
    }
}

/* A signature changed in one bit, and a payload swapped under the signature, are refused. */
static void test_tampered(void)
{
    EVP_PKEY *key = keygen("P-256");
    moat_err_t err = {0};
    json_t *pl = json_pack("{ss}", "a", "b");
    char *body = moat_acme_jws_sign(key, NULL, "n", "https://a.test/x", pl, &err);
    json_t *o = json_loads(body, 0, NULL);
    char sig[128];
    snprintf(sig, sizeof sig, "%s", json_string_value(json_object_get(o, "signature")));
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    json_object_set_new(o, "signature", json_string(sig));
    char *bad = json_dumps(o, 0);
    moat_acme_jws_t jws;
    moat_acme_problem_t p = {0};
    CHECK_EQ(moat_acme_jws_parse(bad, strlen(bad), &jws, &p), 0);
    EVP_PKEY *pub = NULL;
    CHECK_EQ(moat_acme_jwk_to_pkey(jws.jwk, &pub, &err), 0);
    CHECK_EQ(moat_acme_jws_verify(&jws, pub, &p), -1);
    moat_acme_jws_dispose(&jws);
    free(bad);
    /* An ES256 signature checked against an Ed25519 key: the alg does not fit. */
    CHECK_EQ(moat_acme_jws_parse(body, strlen(body), &jws, &p), 0);
    EVP_PKEY *ed = keygen("ED25519");
    CHECK_EQ(moat_acme_jws_verify(&jws, ed, &p), -1);
    CHECK_EQ(p.type, MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM);
    moat_acme_jws_dispose(&jws);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    json_decref(o);
    json_decref(pl);
    moat_free(&body);
}

static char *b64(const char *s)
{
    return moat_b64url_encode_new((const unsigned char *)s, strlen(s));
}

/* Builds {"protected": b64(hdr), "payload": b64(pay), "signature": "AAAA"} plus <extra> members. */
static char *jws_of(const char *hdr, const char *pay, const char *extra)
{
    char *h = b64(hdr), *p = b64(pay), *out = moat_malloc(4096);
    snprintf(out, 4096, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"AAAA\"%s}", h, p, extra);
    moat_free(&h);
    moat_free(&p);
    return out;
}

static void refused(const char *hdr, const char *pay, const char *extra, moat_acme_prob_type_t type,
                    const char *detail)
{
    char *body = jws_of(hdr, pay, extra);
    moat_acme_jws_t jws;
    moat_acme_problem_t p = {0};
    CHECK_EQ(moat_acme_jws_parse(body, strlen(body), &jws, &p), -1);
    CHECK_EQ(p.type, type);
    CHECK_CONTAINS(p.detail, detail);
    CHECK(jws.header == NULL && jws.sig == NULL);
    moat_free(&body);
}

static void test_header_rules(void)
{
    const char *jwk = "\"jwk\":{\"kty\":\"EC\"}";
    char h[512];
    snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"nonce\":\"n\",\"url\":\"u\",%s}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM, "HS256");
    snprintf(h, sizeof h, "{\"alg\":\"none\",\"nonce\":\"n\",\"url\":\"u\",%s}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM, "none");
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"url\":\"u\",%s}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_BAD_NONCE, "nonce");
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"nonce\":\"n\",%s}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_MALFORMED, "url");
    refused("{\"alg\":\"ES256\",\"nonce\":\"n\",\"url\":\"u\"}", "{}", "", MOAT_ACME_PROB_MALFORMED,
            "exactly one");
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"nonce\":\"n\",\"url\":\"u\",\"kid\":\"k\",%s}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_MALFORMED, "exactly one");
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"nonce\":\"n\",\"url\":\"u\",%s,\"crit\":[\"x\"]}", jwk);
    refused(h, "{}", "", MOAT_ACME_PROB_MALFORMED, "crit");
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"nonce\":\"n\",\"url\":\"u\",%s}", jwk);
    refused(h, "{}", ",\"header\":{}", MOAT_ACME_PROB_MALFORMED, "not allowed");
    refused(h, "[1]", "", MOAT_ACME_PROB_MALFORMED, "payload");
    refused("not json", "{}", "", MOAT_ACME_PROB_MALFORMED, "protected header");
    moat_acme_jws_t jws;
    moat_acme_problem_t p = {0};
    CHECK_EQ(
        moat_acme_jws_parse("{\"protected\":\"e30=\",\"payload\":\"\",\"signature\":\"\"}", 52, &jws, &p),
        -1);
    CHECK_EQ(moat_acme_jws_parse("[]", 2, &jws, &p), -1);
}

static void test_problem(void)
{
    moat_acme_problem_t p;
    CHECK_EQ(moat_acme_problem_set(&p, MOAT_ACME_PROB_REJECTED_IDENTIFIER, "name %s", "x.test"), -1);
    json_t *j = moat_acme_problem_json(&p);
    CHECK_STR(moat_acme_json_str(j, "type"), "urn:ietf:params:acme:error:rejectedIdentifier");
    CHECK_STR(moat_acme_json_str(j, "detail"), "name x.test");
    CHECK_EQ(json_integer_value(json_object_get(j, "status")), 400);
    json_decref(j);
    CHECK_STR(moat_acme_problem_urn(MOAT_ACME_PROB_RATE_LIMITED), "urn:ietf:params:acme:error:rateLimited");
}

static void test_nonces(void)
{
    moat_err_t err = {0};
    moat_acme_nonces_t *ns = moat_acme_nonces_new(&err), *other = moat_acme_nonces_new(&err);
    char a[64], b[64], c[64];
    CHECK_EQ(moat_acme_nonce_new(ns, a, sizeof a), 0);
    CHECK_EQ(strlen(a), MOAT_ACME_NONCE_LEN);
    CHECK_EQ(moat_acme_nonce_new(ns, b, sizeof b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ(moat_acme_nonce_use(ns, b), 0);
    CHECK_EQ(moat_acme_nonce_use(ns, b), -1); /* replayed */
    CHECK_EQ(moat_acme_nonce_use(ns, a), 0);
    CHECK_EQ(moat_acme_nonce_new(other, c, sizeof c), 0);
    CHECK_EQ(moat_acme_nonce_use(ns, c), -1); /* another secret's */
    CHECK_EQ(moat_acme_nonce_use(ns, "short"), -1);
    /* Forged: a nonce with one character changed. */
    CHECK_EQ(moat_acme_nonce_new(ns, a, sizeof a), 0);
    a[10] = a[10] == 'A' ? 'B' : 'A';
    CHECK_EQ(moat_acme_nonce_use(ns, a), -1);
    /* Older than the window: refused, even never used. */
    CHECK_EQ(moat_acme_nonce_new(ns, a, sizeof a), 0);
    for (int i = 0; i < MOAT_ACME_NONCE_WINDOW; i++)
        CHECK_EQ(moat_acme_nonce_new(ns, b, sizeof b), 0);
    CHECK_EQ(moat_acme_nonce_use(ns, a), -1);
    CHECK_EQ(moat_acme_nonce_use(ns, b), 0);
    moat_acme_nonces_free(ns);
    moat_acme_nonces_free(other);
}

/* JWSs signed by python's cryptography (the fuzz seeds) verify here: the formats match another
 * implementation's, not only our own signer's. */
static void test_foreign_signatures(void)
{
    static const char *const seeds[] = {"es256-jwk", "eddsa-jwk", "rs256-jwk"};
    const char *data = getenv("MOAT_TEST_DATA");
    for (size_t i = 0; data != NULL && i < MOAT_ARRAY_LEN(seeds); i++) {
        char path[1024], body[8192];
        snprintf(path, sizeof path, "%s/../../fuzz/corpus/jws/%s", data, seeds[i]);
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        if (f == NULL)
            continue;
        size_t n = fread(body, 1, sizeof body, f);
        fclose(f);
        moat_acme_jws_t jws;
        moat_acme_problem_t p = {0};
        moat_err_t err = {0};
        EVP_PKEY *key = NULL;
        CHECK_EQ(moat_acme_jws_parse(body, n, &jws, &p), 0);
        CHECK_EQ(moat_acme_jwk_to_pkey(jws.jwk, &key, &err), 0);
        CHECK_EQ(moat_acme_jws_verify(&jws, key, &p), 0);
        EVP_PKEY_free(key);
        moat_acme_jws_dispose(&jws);
    }
    CHECK(data != NULL);
}

int main(void)
{
    RUN(test_foreign_signatures);
    RUN(test_sign_verify);
    RUN(test_tampered);
    RUN(test_header_rules);
    RUN(test_problem);
    RUN(test_nonces);
    return harness_done();
}
