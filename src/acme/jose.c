/*
 * JOSE pieces shared by the ACME client and server: JSON members through libjansson, and JWKs
 * (RFC 7517/7518/8037) with their RFC 7638 thumbprints. base64url (RFC 7515 §2) is core's (core/b64url.c).
 */
#include "acme/acme.h"

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <string.h>

const char *moat_acme_json_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

json_t *moat_acme_json_parse(const char *text, size_t n, moat_err_t *err)
{
    json_error_t je;
    json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL) {
        moat_err_set(err, MOAT_E_INVAL, "JSON does not parse at %d:%d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        moat_err_set(err, MOAT_E_INVAL, "JSON is not an object");
        return NULL;
    }
    return v;
}

char *moat_acme_json_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT);
}

/* Decodes the base64url member <name> of <jwk> into a new buffer. */
static int jwk_bytes(const json_t *jwk, const char *name, unsigned char **out, size_t *len, moat_err_t *err)
{
    const char *s = moat_acme_json_str(jwk, name);
    if (s == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "JWK has no \"%s\" member", name);
    int rc = moat_b64url_decode(s, strlen(s), out, len, err);
    if (rc < 0)
        return moat_err_prefix(err, "JWK member \"%s\": ", name);
    return 0;
}

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **key, moat_err_t *err)
{
    int rc = 0;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        rc = moat_err_ossl(err, MOAT_E_INVAL, "JWK is not a valid %s public key", type);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return rc;
}

static int jwk_ec(const json_t *jwk, EVP_PKEY **key, moat_err_t *err)
{
    static const struct {
        const char *crv, *group;
        size_t len;
    } curves[] = {{"P-256", "prime256v1", 32}, {"P-384", "secp384r1", 48}, {"P-521", "secp521r1", 66}};
    const char *crv = moat_acme_json_str(jwk, "crv");
    size_t ci = MOAT_ARRAY_LEN(curves);
    for (size_t i = 0; crv != NULL && i < MOAT_ARRAY_LEN(curves); i++)
        if (strcmp(crv, curves[i].crv) == 0)
            ci = i;
    if (ci == MOAT_ARRAY_LEN(curves))
        return moat_err_set(err, MOAT_E_INVAL, "EC JWK curve \"%s\" is not P-256, P-384 or P-521",
                            crv ? crv : "(none)");
    unsigned char *x = NULL, *y = NULL, pt[1 + 2 * 66];
    size_t xl = 0, yl = 0;
    int rc = jwk_bytes(jwk, "x", &x, &xl, err);
    if (rc == 0)
        rc = jwk_bytes(jwk, "y", &y, &yl, err);
    if (rc == 0 && (xl != curves[ci].len || yl != curves[ci].len))
        rc = moat_err_set(err, MOAT_E_INVAL, "EC JWK coordinates must be %zu bytes for %s", curves[ci].len,
                          curves[ci].crv);
    if (rc == 0) {
        pt[0] = 4;
        memcpy(pt + 1, x, xl);
        memcpy(pt + 1 + xl, y, yl);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld == NULL ||
            !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[ci].group, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + xl + yl))
            rc = moat_err_ossl(err, MOAT_E_NOMEM, "building an EC key from a JWK");
        else
            rc = pkey_fromdata("EC", bld, key, err);
        OSSL_PARAM_BLD_free(bld);
    }
    moat_free(&x);
    moat_free(&y);
    /* EVP_PKEY_fromdata does not check that the point is on the curve; a point off it is refused here. */
    if (rc == 0) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, *key, NULL);
        if (c == NULL || EVP_PKEY_public_check(c) != 1) {
            EVP_PKEY_free(*key);
            *key = NULL;
            rc = moat_err_ossl(err, MOAT_E_INVAL, "EC JWK point is not on curve %s", curves[ci].crv);
        }
        EVP_PKEY_CTX_free(c);
    }
    return rc;
}

static int jwk_rsa(const json_t *jwk, EVP_PKEY **key, moat_err_t *err)
{
    unsigned char *n = NULL, *e = NULL;
    size_t nl = 0, el = 0;
    int rc = jwk_bytes(jwk, "n", &n, &nl, err);
    if (rc == 0)
        rc = jwk_bytes(jwk, "e", &e, &el, err);
    if (rc == 0 && (nl < 256 || nl > 1024 || n[0] == 0))
        rc = moat_err_set(err, MOAT_E_INVAL, "RSA JWK modulus must be 2048 to 8192 bits (no leading zero)");
    if (rc == 0 && (el == 0 || el > 8))
        rc = moat_err_set(err, MOAT_E_INVAL, "RSA JWK exponent has %zu bytes", el);
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    if (rc == 0) {
        bn = BN_bin2bn(n, (int)nl, NULL);
        be = BN_bin2bn(e, (int)el, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (bn == NULL || be == NULL || bld == NULL ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
            rc = moat_err_ossl(err, MOAT_E_NOMEM, "building an RSA key from a JWK");
        else
            rc = pkey_fromdata("RSA", bld, key, err);
    }
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    moat_free(&n);
    moat_free(&e);
    return rc;
}

static int jwk_okp(const json_t *jwk, EVP_PKEY **key, moat_err_t *err)
{
    const char *crv = moat_acme_json_str(jwk, "crv");
    if (crv == NULL || strcmp(crv, "Ed25519") != 0)
        return moat_err_set(err, MOAT_E_INVAL, "OKP JWK curve \"%s\" is not Ed25519", crv ? crv : "(none)");
    unsigned char *x = NULL;
    size_t xl = 0;
    int rc = jwk_bytes(jwk, "x", &x, &xl, err);
    if (rc == 0 && xl != 32)
        rc = moat_err_set(err, MOAT_E_INVAL, "Ed25519 JWK key must be 32 bytes, not %zu", xl);
    if (rc == 0 && (*key = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, xl)) == NULL)
        rc = moat_err_ossl(err, MOAT_E_INVAL, "JWK is not a valid Ed25519 public key");
    moat_free(&x);
    return rc;
}

int moat_acme_jwk_to_pkey(const json_t *jwk, EVP_PKEY **key, moat_err_t *err)
{
    static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
    *key = NULL;
    if (!json_is_object(jwk))
        return moat_err_set(err, MOAT_E_INVAL, "JWK is not a JSON object");
    for (size_t i = 0; i < MOAT_ARRAY_LEN(private_members); i++)
        if (json_object_get(jwk, private_members[i]) != NULL)
            return moat_err_set(err, MOAT_E_INVAL, "JWK carries the private member \"%s\"",
                                private_members[i]);
    const char *kty = moat_acme_json_str(jwk, "kty");
    if (kty == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "JWK has no \"kty\"");
    if (strcmp(kty, "EC") == 0)
        return jwk_ec(jwk, key, err);
    if (strcmp(kty, "RSA") == 0)
        return jwk_rsa(jwk, key, err);
    if (strcmp(kty, "OKP") == 0)
        return jwk_okp(jwk, key, err);
    return moat_err_set(err, MOAT_E_INVAL, "JWK key type \"%s\" is not EC, RSA or OKP", kty);
}

/* Sets member <name> of <obj> to the base64url of <bn>, left-padded with zeros to <len> bytes (0: none). */
static int set_bn(json_t *obj, const char *name, const BIGNUM *bn, int len)
{
    unsigned char buf[1024];
    int n = len > 0 ? len : BN_num_bytes(bn);
    if (n <= 0 || n > (int)sizeof buf || BN_bn2binpad(bn, buf, n) != n)
        return -1;
    char *s = moat_b64url_encode_new(buf, (size_t)n);
    if (s == NULL)
        return -1;
    int rc = json_object_set_new(obj, name, json_string(s));
    moat_free(&s);
    return rc;
}

json_t *moat_acme_jwk_from_pkey(EVP_PKEY *key, moat_err_t *err)
{
    json_t *jwk = json_object();
    BIGNUM *a = NULL, *b = NULL;
    int ok = 0;
    if (jwk == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory building a JWK");
        return NULL;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[32];
        const char *crv = NULL;
        int len = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL)) {
            if (strcmp(group, "prime256v1") == 0)
                crv = "P-256", len = 32;
            else if (strcmp(group, "secp384r1") == 0)
                crv = "P-384", len = 48;
            else if (strcmp(group, "secp521r1") == 0)
                crv = "P-521", len = 66;
        }
        ok = crv != NULL && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) &&
             EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) &&
             json_object_set_new(jwk, "kty", json_string("EC")) == 0 &&
             json_object_set_new(jwk, "crv", json_string(crv)) == 0 && set_bn(jwk, "x", a, len) == 0 &&
             set_bn(jwk, "y", b, len) == 0;
    } else if (EVP_PKEY_is_a(key, "RSA")) {
        ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) &&
             EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) &&
             json_object_set_new(jwk, "kty", json_string("RSA")) == 0 && set_bn(jwk, "n", a, 0) == 0 &&
             set_bn(jwk, "e", b, 0) == 0;
    } else if (EVP_PKEY_is_a(key, "ED25519")) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        char x[64];
        ok = EVP_PKEY_get_raw_public_key(key, raw, &rl) && rl == 32 &&
             moat_b64url_encode(raw, rl, x, sizeof x) > 0 &&
             json_object_set_new(jwk, "kty", json_string("OKP")) == 0 &&
             json_object_set_new(jwk, "crv", json_string("Ed25519")) == 0 &&
             json_object_set_new(jwk, "x", json_string(x)) == 0;
    }
    BN_free(a);
    BN_free(b);
    if (!ok) {
        json_decref(jwk);
        moat_err_ossl(err, MOAT_E_PKI,
                      "key type cannot be written as a JWK (EC P-256/384/521, RSA, Ed25519)");
        return NULL;
    }
    return jwk;
}

int moat_acme_jwk_thumbprint(const json_t *jwk, char *out, size_t outsz, moat_err_t *err)
{
    /* RFC 7638 §3.2: only the required members, sorted, no whitespace. */
    static const struct {
        const char *kty;
        const char *members[3];
    } required[] = {{"EC", {"crv", "x", "y"}}, {"RSA", {"e", "n", NULL}}, {"OKP", {"crv", "x", NULL}}};
    const char *kty = moat_acme_json_str(jwk, "kty");
    size_t ki = MOAT_ARRAY_LEN(required);
    for (size_t i = 0; kty != NULL && i < MOAT_ARRAY_LEN(required); i++)
        if (strcmp(kty, required[i].kty) == 0)
            ki = i;
    if (ki == MOAT_ARRAY_LEN(required))
        return moat_err_set(err, MOAT_E_INVAL, "JWK key type \"%s\" has no thumbprint", kty ? kty : "(none)");
    json_t *canon = json_pack("{ss}", "kty", kty);
    int rc = canon == NULL ? moat_err_set(err, MOAT_E_NOMEM, "out of memory hashing a JWK") : 0;
    for (size_t i = 0; rc == 0 && i < 3 && required[ki].members[i] != NULL; i++) {
        const char *name = required[ki].members[i], *v = moat_acme_json_str(jwk, name);
        if (v == NULL)
            rc = moat_err_set(err, MOAT_E_INVAL, "JWK has no \"%s\" member", name);
        else if (json_object_set_new(canon, name, json_string(v)) != 0)
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory hashing a JWK");
    }
    char *text = rc == 0 ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(canon);
    if (rc == 0 && text == NULL)
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory hashing a JWK");
    if (rc == 0) {
        unsigned char md[32];
        unsigned int mdl = 0;
        if (!EVP_Digest(text, strlen(text), md, &mdl, EVP_sha256(), NULL))
            rc = moat_err_ossl(err, MOAT_E_PKI, "hashing a JWK");
        else if (moat_b64url_encode(md, mdl, out, outsz) < 0)
            rc = moat_err_set(err, MOAT_E_LIMIT, "thumbprint buffer too small");
    }
    free(text);
    return rc;
}
