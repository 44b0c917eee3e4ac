/*
 * JWS for ACME (RFC 8555 §6.2): the flattened JSON serialisation with one protected header, verified with
 * ES256, ES384, RS256 or EdDSA through OpenSSL's EVP interface.
 */
#include "acme/acme.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <string.h>

static const struct {
    const char *name;
    moat_acme_alg_t alg;
} algs[] = {{"ES256", MOAT_ACME_JWS_ES256},
            {"ES384", MOAT_ACME_JWS_ES384},
            {"RS256", MOAT_ACME_JWS_RS256},
            {"EdDSA", MOAT_ACME_JWS_EDDSA}};

void moat_acme_jws_dispose(moat_acme_jws_t *jws)
{
    json_decref(jws->header);
    json_decref(jws->payload);
    moat_free(&jws->sig);
    moat_free(&jws->signing_input);
    memset(jws, 0, sizeof *jws);
}

/* Decodes the base64url string member <name> of <obj>. */
static int member_b64(const json_t *obj, const char *name, unsigned char **out, size_t *len,
                      moat_acme_problem_t *p)
{
    moat_err_t err = {0};
    const char *s = moat_acme_json_str(obj, name);
    if (s == NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS has no \"%s\" string", name);
    if (moat_b64url_decode(s, strlen(s), out, len, &err) != 0)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS \"%s\": %s", name, err.msg);
    return 0;
}

static int parse_header(moat_acme_jws_t *jws, const unsigned char *text, size_t n, moat_acme_problem_t *p)
{
    moat_err_t err = {0};
    const char *alg;
    if ((jws->header = moat_acme_json_parse((const char *)text, n, &err)) == NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS protected header: %s", err.msg);
    if ((alg = moat_acme_json_str(jws->header, "alg")) == NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS protected header has no \"alg\"");
    size_t i = 0;
    while (i < MOAT_ARRAY_LEN(algs) && strcmp(alg, algs[i].name) != 0)
        i++;
    if (i == MOAT_ARRAY_LEN(algs))
        return moat_acme_problem_set(
            p, MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM,
            "JWS algorithm \"%.32s\" is not accepted: use ES256, ES384, RS256 or EdDSA", alg);
    jws->alg = algs[i].alg;
    /* RFC 8555 §6.5: a request without a nonce is a badNonce, so the client fetches one and retries. */
    if ((jws->nonce = moat_acme_json_str(jws->header, "nonce")) == NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_BAD_NONCE, "JWS protected header has no \"nonce\"");
    if ((jws->url = moat_acme_json_str(jws->header, "url")) == NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS protected header has no \"url\"");
    json_t *jwk = json_object_get(jws->header, "jwk");
    json_t *kid = json_object_get(jws->header, "kid");
    if ((jwk == NULL) == (kid == NULL))
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED,
                                     "JWS protected header must have exactly one of \"jwk\" and \"kid\"");
    if (jwk != NULL && !json_is_object(jwk))
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS \"jwk\" is not an object");
    if (kid != NULL && !json_is_string(kid))
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS \"kid\" is not a string");
    jws->jwk = jwk;
    jws->kid = kid != NULL ? json_string_value(kid) : NULL;
    /* RFC 7515 §4.1.11: a "crit" this server does not understand must be refused; it understands none. */
    if (json_object_get(jws->header, "crit") != NULL)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED,
                                     "JWS \"crit\" extensions are not supported");
    return 0;
}

int moat_acme_jws_parse(const char *body, size_t n, moat_acme_jws_t *jws, moat_acme_problem_t *p)
{
    moat_err_t err = {0};
    json_t *outer = NULL;
    unsigned char *hdr = NULL, *payload = NULL;
    size_t hl = 0, pl = 0;
    int rc = -1;

    memset(jws, 0, sizeof *jws);
    if (n > MOAT_ACME_JWS_MAX)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "request body of %zu bytes is over %d", n,
                                     MOAT_ACME_JWS_MAX);
    if ((outer = moat_acme_json_parse(body, n, &err)) == NULL) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "request body: %s", err.msg);
        goto out;
    }
    /* RFC 8555 §6.2: flattened serialisation only, no unprotected header, one signature. */
    const char *key;
    json_t *v;
    json_object_foreach(outer, key, v)
    {
        if (strcmp(key, "protected") != 0 && strcmp(key, "payload") != 0 && strcmp(key, "signature") != 0) {
            moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED,
                                  "JWS member \"%.32s\" is not allowed (flattened JSON serialisation with a "
                                  "protected header only)",
                                  key);
            goto out;
        }
    }
    const char *prot = moat_acme_json_str(outer, "protected"), *pay = moat_acme_json_str(outer, "payload");
    if (prot == NULL || pay == NULL) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS needs \"protected\" and \"payload\" strings");
        goto out;
    }
    if (member_b64(outer, "protected", &hdr, &hl, p) != 0 ||
        member_b64(outer, "payload", &payload, &pl, p) != 0 ||
        member_b64(outer, "signature", &jws->sig, &jws->sig_len, p) != 0)
        goto out;
    if (parse_header(jws, hdr, hl, p) != 0)
        goto out;
    if (pl > 0 && (jws->payload = moat_acme_json_parse((const char *)payload, pl, &err)) == NULL) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS payload: %s", err.msg);
        goto out;
    }
    size_t a = strlen(prot), b = strlen(pay);
    if ((jws->signing_input = moat_malloc(a + b + 2)) == NULL) {
        moat_acme_problem_set(p, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
        goto out;
    }
    memcpy(jws->signing_input, prot, a);
    jws->signing_input[a] = '.';
    memcpy(jws->signing_input + a + 1, pay, b + 1);
    jws->signing_input_len = a + 1 + b;
    rc = 0;
out:
    moat_free(&hdr);
    moat_free(&payload);
    json_decref(outer);
    if (rc != 0)
        moat_acme_jws_dispose(jws);
    return rc;
}

/* The EC curve size in bytes for ES256/ES384, or 0 when <key> is not on that alg's curve. */
static size_t ec_size_for(const EVP_PKEY *key, moat_acme_alg_t alg)
{
    char group[32];
    if (!EVP_PKEY_is_a(key, "EC") ||
        !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL))
        return 0;
    if (alg == MOAT_ACME_JWS_ES256 && strcmp(group, "prime256v1") == 0)
        return 32;
    if (alg == MOAT_ACME_JWS_ES384 && strcmp(group, "secp384r1") == 0)
        return 48;
    return 0;
}

/* RFC 7518 §3.4: an ES signature is R || S, fixed size; EVP wants DER. */
static int ec_raw_to_der(const unsigned char *sig, size_t len, size_t half, unsigned char **der, int *dlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)half, NULL), *s = BN_bin2bn(sig + half, (int)half, NULL);
    *der = NULL;
    if (len != 2 * half || es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return -1;
    }
    *dlen = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    return *dlen > 0 ? 0 : -1;
}

static const EVP_MD *alg_md(moat_acme_alg_t alg)
{
    switch (alg) {
    case MOAT_ACME_JWS_ES256:
    case MOAT_ACME_JWS_RS256:
        return EVP_sha256();
    case MOAT_ACME_JWS_ES384:
        return EVP_sha384();
    default:
        return NULL; /* EdDSA hashes inside the signature */
    }
}

/* Checks that <key> fits <alg>; 0 or -1 with <p> set. */
static int key_fits(EVP_PKEY *key, moat_acme_alg_t alg, moat_acme_problem_t *p)
{
    int ok = 0;
    switch (alg) {
    case MOAT_ACME_JWS_ES256:
    case MOAT_ACME_JWS_ES384:
        ok = ec_size_for(key, alg) > 0;
        break;
    case MOAT_ACME_JWS_RS256:
        ok = EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048;
        break;
    case MOAT_ACME_JWS_EDDSA:
        ok = EVP_PKEY_is_a(key, "ED25519");
        break;
    }
    if (!ok)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM,
                                     "JWS algorithm %s does not fit the account key", algs[alg].name);
    return 0;
}

int moat_acme_jws_verify(const moat_acme_jws_t *jws, EVP_PKEY *key, moat_acme_problem_t *p)
{
    unsigned char *der = NULL;
    const unsigned char *sig = jws->sig;
    size_t sig_len = jws->sig_len;
    int dlen = 0, ok = 0;

    if (key_fits(key, jws->alg, p) != 0)
        return -1;
    if (jws->alg == MOAT_ACME_JWS_ES256 || jws->alg == MOAT_ACME_JWS_ES384) {
        if (ec_raw_to_der(jws->sig, jws->sig_len, ec_size_for(key, jws->alg), &der, &dlen) != 0) {
            OPENSSL_free(der);
            return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED,
                                         "JWS signature is not a %zu-byte R||S ECDSA signature",
                                         2 * ec_size_for(key, jws->alg));
        }
        sig = der;
        sig_len = (size_t)dlen;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md != NULL &&
        EVP_DigestVerifyInit_ex(md, NULL, alg_md(jws->alg) ? EVP_MD_get0_name(alg_md(jws->alg)) : NULL, NULL,
                                NULL, key, NULL) == 1)
        ok = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)jws->signing_input,
                              jws->signing_input_len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    if (!ok)
        return moat_acme_problem_set(p, MOAT_ACME_PROB_MALFORMED, "JWS signature does not verify");
    return 0;
}

/* The JWS alg of <key>, or -1. */
static int key_alg(EVP_PKEY *key)
{
    if (ec_size_for(key, MOAT_ACME_JWS_ES256))
        return MOAT_ACME_JWS_ES256;
    if (ec_size_for(key, MOAT_ACME_JWS_ES384))
        return MOAT_ACME_JWS_ES384;
    if (EVP_PKEY_is_a(key, "RSA"))
        return MOAT_ACME_JWS_RS256;
    if (EVP_PKEY_is_a(key, "ED25519"))
        return MOAT_ACME_JWS_EDDSA;
    return -1;
}

/* Base64url of a JSON value (compact), or of nothing when <v> is NULL. */
static char *b64_json(const json_t *v)
{
    if (v == NULL)
        return moat_strdup("");
    char *text = moat_acme_json_dump(v);
    char *b = text != NULL ? moat_b64url_encode_new((unsigned char *)text, strlen(text)) : NULL;
    free(text);
    return b;
}

char *moat_acme_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                         const json_t *payload, moat_err_t *err)
{
    int alg = key_alg(key);
    json_t *hdr = NULL, *out = NULL;
    char *prot = NULL, *pay = NULL, *input = NULL, *sig64 = NULL, *result = NULL;
    unsigned char *sig = NULL, raw[132];
    size_t sig_len = 0;

    if (alg < 0) {
        moat_err_set(err, MOAT_E_PKI, "key cannot sign a JWS (EC P-256/P-384, RSA, Ed25519)");
        return NULL;
    }
    /* RFC 8555 §7.3.5: the inner JWS of a key change carries no nonce (<nonce> NULL). */
    hdr = nonce != NULL ? json_pack("{ssssss}", "alg", algs[alg].name, "nonce", nonce, "url", url)
                        : json_pack("{ssss}", "alg", algs[alg].name, "url", url);
    if (hdr != NULL) {
        json_t *id = kid != NULL ? json_string(kid) : moat_acme_jwk_from_pkey(key, err);
        if (id == NULL || json_object_set_new(hdr, kid != NULL ? "kid" : "jwk", id) != 0)
            goto out;
    }
    if (hdr == NULL || (prot = b64_json(hdr)) == NULL || (pay = b64_json(payload)) == NULL)
        goto oom;
    size_t a = strlen(prot), b = strlen(pay);
    if ((input = moat_malloc(a + b + 2)) == NULL)
        goto oom;
    snprintf(input, a + b + 2, "%s.%s", prot, pay);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    const EVP_MD *h = alg_md((moat_acme_alg_t)alg);
    int ok = md != NULL &&
             EVP_DigestSignInit_ex(md, NULL, h ? EVP_MD_get0_name(h) : NULL, NULL, NULL, key, NULL) == 1 &&
             EVP_DigestSign(md, NULL, &sig_len, (unsigned char *)input, a + b + 1) == 1 &&
             (sig = moat_malloc(sig_len)) != NULL &&
             EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, a + b + 1) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        moat_err_ossl(err, MOAT_E_PKI, "signing a JWS");
        goto out;
    }
    const unsigned char *s = sig;
    size_t slen = sig_len;
    if (alg == MOAT_ACME_JWS_ES256 || alg == MOAT_ACME_JWS_ES384) {
        size_t half = ec_size_for(key, (moat_acme_alg_t)alg);
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)sig_len);
        ok = es != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)half) == (int)half &&
             BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + half, (int)half) == (int)half;
        ECDSA_SIG_free(es);
        if (!ok) {
            moat_err_ossl(err, MOAT_E_PKI, "converting an ECDSA signature");
            goto out;
        }
        s = raw;
        slen = 2 * half;
    }
    if ((sig64 = moat_b64url_encode_new(s, slen)) == NULL ||
        (out = json_pack("{ssssss}", "protected", prot, "payload", pay, "signature", sig64)) == NULL ||
        (result = moat_acme_json_dump(out)) == NULL)
        goto oom;
    goto out;
oom:
    moat_err_set(err, MOAT_E_NOMEM, "out of memory signing a JWS");
out:
    json_decref(hdr);
    json_decref(out);
    moat_free(&prot);
    moat_free(&pay);
    moat_free(&input);
    moat_free(&sig64);
    moat_free(&sig);
    return result;
}
