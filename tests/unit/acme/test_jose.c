#include "acme/acme.h"
#include "harness.h"

#include <openssl/evp.h>
#include <string.h>

static void test_b64url_roundtrip(void)
{
    const unsigned char in[] = {0xfb, 0xff, 0xfe, 0x00, 0x41};
    char out[16];
    for (size_t n = 0; n <= sizeof in; n++) {
        int len = moat_b64url_encode(in, n, out, sizeof out);
        CHECK_EQ(len, MOAT_B64URL_LEN(n));
        unsigned char *dec = NULL;
        size_t dl = 0;
        moat_err_t err = {0};
        CHECK_EQ(moat_b64url_decode(out, (size_t)len, &dec, &dl, &err), 0);
        CHECK_EQ(dl, n);
        CHECK(n == 0 || memcmp(dec, in, n) == 0);
        moat_free(&dec);
    }
    CHECK_EQ(moat_b64url_encode(in, 3, out, sizeof out), 4);
    CHECK_STR(out, "-__-");
    CHECK_EQ(moat_b64url_encode(in, 3, out, 4), MOAT_E_LIMIT);
}

static void test_b64url_refuses(void)
{
    static const char *const bad[] = {"AA==", "A+B/", "QQ QQ", "A", "QR"};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
        unsigned char *dec = NULL;
        size_t dl = 0;
        moat_err_t err = {0};
        CHECK_EQ(moat_b64url_decode(bad[i], strlen(bad[i]), &dec, &dl, &err), MOAT_E_INVAL);
        CHECK(dec == NULL);
        CHECK(err.msg[0] != '\0');
    }
}

static void test_json_parse(void)
{
    moat_err_t err = {0};
    json_t *v = moat_acme_json_parse("{\"a\":\"b\",\"n\":1}", 15, &err);
    CHECK(v != NULL);
    CHECK_STR(moat_acme_json_str(v, "a"), "b");
    CHECK(moat_acme_json_str(v, "n") == NULL);
    CHECK(moat_acme_json_str(v, "none") == NULL);
    json_decref(v);
    CHECK(moat_acme_json_parse("{\"a\":1,\"a\":2}", 13, &err) == NULL);
    CHECK_EQ(err.code, MOAT_E_INVAL);
    CHECK(moat_acme_json_parse("[1]", 3, &err) == NULL);
    CHECK_CONTAINS(err.msg, "not an object");
    CHECK(moat_acme_json_parse("{\"a\":", 5, &err) == NULL);
    CHECK_CONTAINS(err.msg, "does not parse");
}

/* RFC 7638 §3.1 example key and its thumbprint. */
static void test_thumbprint_rfc7638(void)
{
    const char *text =
        "{\"kty\":\"RSA\",\"n\":"
        "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
        "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRw"
        "r3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\",\"e\":\"AQAB\",\"alg\":\"RS256\","
        "\"kid\":\"2011-04-29\"}";
    moat_err_t err = {0};
    json_t *jwk = moat_acme_json_parse(text, strlen(text), &err);
    CHECK(jwk != NULL);
    char tp[64];
    CHECK_EQ(moat_acme_jwk_thumbprint(jwk, tp, sizeof tp, &err), 0);
    CHECK_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    EVP_PKEY *key = NULL;
    CHECK_EQ(moat_acme_jwk_to_pkey(jwk, &key, &err), 0);
    CHECK(key != NULL && EVP_PKEY_is_a(key, "RSA"));
    EVP_PKEY_free(key);
    json_object_set_new(jwk, "d", json_string("AQAB"));
    CHECK_EQ(moat_acme_jwk_to_pkey(jwk, &key, &err), MOAT_E_INVAL);
    CHECK_CONTAINS(err.msg, "private member");
    json_decref(jwk);
}

static void roundtrip(const char *alg, const char *param)
{
    /* RSA takes its size as a variadic argument: without one it reads whatever is there, and a huge
     * value makes the key generation run for minutes. */
    EVP_PKEY *key = strcmp(alg, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                    : param                 ? EVP_PKEY_Q_keygen(NULL, NULL, alg, param)
                                            : EVP_PKEY_Q_keygen(NULL, NULL, alg);
    CHECK(key != NULL);
    moat_err_t err = {0};
    json_t *jwk = moat_acme_jwk_from_pkey(key, &err);
    CHECK(jwk != NULL);
    EVP_PKEY *back = NULL;
    CHECK_EQ(moat_acme_jwk_to_pkey(jwk, &back, &err), 0);
    CHECK(back != NULL && EVP_PKEY_eq(key, back) == 1);
    char tp[64];
    CHECK_EQ(moat_acme_jwk_thumbprint(jwk, tp, sizeof tp, &err), 0);
    CHECK_EQ(strlen(tp), 43);
    EVP_PKEY_free(back);
    EVP_PKEY_free(key);
    json_decref(jwk);
}

static void test_jwk_roundtrip(void)
{
    roundtrip("EC", "P-256");
    roundtrip("EC", "P-384");
    roundtrip("ED25519", NULL);
    roundtrip("RSA", NULL);
}

static void test_jwk_refuses(void)
{
    static const char *const bad[] = {
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-192\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"oct\",\"k\":\"AA\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}",
        /* 32 zero bytes for x and y: not a point on P-256. */
        ("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
         "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"),
    };
    for (size_t i = 0; i < MOAT_ARRAY_LEN(bad); i++) {
        moat_err_t err = {0};
        json_t *jwk = moat_acme_json_parse(bad[i], strlen(bad[i]), &err);
        CHECK(jwk != NULL);
        EVP_PKEY *key = NULL;
        CHECK_EQ(moat_acme_jwk_to_pkey(jwk, &key, &err), MOAT_E_INVAL);
        CHECK(key == NULL);
        json_decref(jwk);
    }
}

int main(void)
{
    RUN(test_b64url_roundtrip);
    RUN(test_b64url_refuses);
    RUN(test_json_parse);
    RUN(test_thumbprint_rfc7638);
    RUN(test_jwk_roundtrip);
    RUN(test_jwk_refuses);
    return harness_done();
}
