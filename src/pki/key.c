/*
 * pki: key algorithms, generation, PKCS#8 and SubjectPublicKeyInfo encodings, fingerprints, time.
 */
#include "pki/pki_int.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <strings.h>
#include <string.h>

static const struct {
    moat_pki_alg_t alg;
    const char *name;
} alg_names[] = {
    {MOAT_PKI_ALG_EC_P256, "ec-p256"},   {MOAT_PKI_ALG_EC_P384, "ec-p384"},
    {MOAT_PKI_ALG_RSA_2048, "rsa-2048"}, {MOAT_PKI_ALG_RSA_3072, "rsa-3072"},
    {MOAT_PKI_ALG_RSA_4096, "rsa-4096"}, {MOAT_PKI_ALG_ED25519, "ed25519"},
};

int moat_pki_alg_parse(const char *name, moat_pki_alg_t *out, moat_err_t *err)
{
    for (size_t i = 0; name != NULL && i < MOAT_ARRAY_LEN(alg_names); i++) {
        if (strcasecmp(name, alg_names[i].name) == 0) {
            *out = alg_names[i].alg;
            return 0;
        }
    }
    moat_err_set(err, MOAT_E_INVAL, "unknown key algorithm \"%s\"", name ? name : "");
    return moat_err_hint(err, "use one of ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519");
}

const char *moat_pki_alg_name(moat_pki_alg_t alg)
{
    for (size_t i = 0; i < MOAT_ARRAY_LEN(alg_names); i++)
        if (alg_names[i].alg == alg)
            return alg_names[i].name;
    return "other";
}

/* The curve of an EC key as OpenSSL names it ("prime256v1"), or "" if it has none. */
static void ec_group(const EVP_PKEY *key, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, buf, size, &len) != 1)
        buf[0] = '\0';
    ERR_clear_error();
}

moat_pki_alg_t moat_pki_key_alg(const EVP_PKEY *key)
{
    if (key == NULL)
        return MOAT_PKI_ALG_OTHER;
    if (EVP_PKEY_is_a(key, "RSA")) {
        switch (EVP_PKEY_get_bits(key)) {
        case 2048:
            return MOAT_PKI_ALG_RSA_2048;
        case 3072:
            return MOAT_PKI_ALG_RSA_3072;
        case 4096:
            return MOAT_PKI_ALG_RSA_4096;
        }
        return MOAT_PKI_ALG_OTHER;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64];
        ec_group(key, group, sizeof(group));
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            return MOAT_PKI_ALG_EC_P256;
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            return MOAT_PKI_ALG_EC_P384;
        return MOAT_PKI_ALG_OTHER;
    }
    if (EVP_PKEY_is_a(key, "ED25519"))
        return MOAT_PKI_ALG_ED25519;
    return MOAT_PKI_ALG_OTHER;
}

void moat_pki_key_describe(const EVP_PKEY *key, char *buf, size_t size)
{
    moat_pki_alg_t alg = moat_pki_key_alg(key);
    if (size == 0)
        return;
    if (key == NULL) {
        snprintf(buf, size, "none");
    } else if (alg != MOAT_PKI_ALG_OTHER) {
        snprintf(buf, size, "%s", moat_pki_alg_name(alg));
    } else if (EVP_PKEY_is_a(key, "RSA")) {
        snprintf(buf, size, "rsa-%d", EVP_PKEY_get_bits(key));
    } else if (EVP_PKEY_is_a(key, "RSA-PSS")) {
        snprintf(buf, size, "rsa-pss-%d", EVP_PKEY_get_bits(key));
    } else if (EVP_PKEY_is_a(key, "EC")) {
        char group[64];
        ec_group(key, group, sizeof(group));
        snprintf(buf, size, "ec-%s", group[0] ? group : "unknown");
    } else if (EVP_PKEY_is_a(key, "ED448")) {
        snprintf(buf, size, "ed448");
    } else {
        const char *t = EVP_PKEY_get0_type_name(key);
        snprintf(buf, size, "%s", t ? t : "unknown");
    }
}

int moat_pki_key_bits(const EVP_PKEY *key)
{
    if (key == NULL)
        return 0;
    if (EVP_PKEY_is_a(key, "ED25519"))
        return 255;
    if (EVP_PKEY_is_a(key, "ED448"))
        return 448;
    return EVP_PKEY_get_bits(key) > 0 ? EVP_PKEY_get_bits(key) : 0;
}

typedef struct {
    moat_pki_on_progress_t fn;
    void *arg;
} progress_t;

static int on_keygen(EVP_PKEY_CTX *ctx)
{
    progress_t *p = EVP_PKEY_CTX_get_app_data(ctx);
    if (p == NULL || p->fn == NULL)
        return 1;
    return p->fn(p->arg, EVP_PKEY_CTX_get_keygen_info(ctx, 0)) != 0;
}

int moat_pki_key_generate(moat_pki_alg_t alg, moat_pki_on_progress_t on_progress, void *arg, EVP_PKEY **out,
                          moat_err_t *err)
{
    const char *type;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *key = NULL;
    progress_t progress = {on_progress, arg};
    int ok;

    switch (alg) {
    case MOAT_PKI_ALG_EC_P256:
    case MOAT_PKI_ALG_EC_P384:
        type = "EC";
        break;
    case MOAT_PKI_ALG_RSA_2048:
    case MOAT_PKI_ALG_RSA_3072:
    case MOAT_PKI_ALG_RSA_4096:
        type = "RSA";
        break;
    case MOAT_PKI_ALG_ED25519:
        type = "ED25519";
        break;
    default:
        return moat_err_set(err, MOAT_E_INVAL, "cannot generate a key: no algorithm chosen");
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (ctx == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "generating a %s key", moat_pki_alg_name(alg));
    ok = EVP_PKEY_keygen_init(ctx) > 0;
    if (ok && alg == MOAT_PKI_ALG_EC_P256)
        ok = EVP_PKEY_CTX_set_group_name(ctx, "P-256") > 0;
    else if (ok && alg == MOAT_PKI_ALG_EC_P384)
        ok = EVP_PKEY_CTX_set_group_name(ctx, "P-384") > 0;
    else if (ok && strcmp(type, "RSA") == 0)
        ok = EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, alg == MOAT_PKI_ALG_RSA_2048   ? 2048
                                                   : alg == MOAT_PKI_ALG_RSA_3072 ? 3072
                                                                                  : 4096) > 0;
    if (ok) {
        EVP_PKEY_CTX_set_app_data(ctx, &progress);
        EVP_PKEY_CTX_set_cb(ctx, on_keygen);
        ok = EVP_PKEY_generate(ctx, &key) > 0;
    }
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        EVP_PKEY_free(key);
        return moat_err_ossl(err, MOAT_E_PKI, "generating a %s key failed", moat_pki_alg_name(alg));
    }
    *out = key;
    return 0;
}

int moat_pki_key_to_pkcs8(const EVP_PKEY *key, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    PKCS8_PRIV_KEY_INFO *p8;
    unsigned char *der = NULL;
    int n;

    if (key == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no key to encode");
    p8 = EVP_PKEY2PKCS8(key);
    if (p8 == NULL)
        return moat_err_ossl(err, MOAT_E_INVAL, "encoding the private key as PKCS#8 (is it a private key?)");
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return moat__pki_der_take(&der, n, "the private key as PKCS#8", out, out_len, err);
}

int moat_pki_key_from_pkcs8(const unsigned char *der, size_t len, EVP_PKEY **out, moat_err_t *err)
{
    PKCS8_PRIV_KEY_INFO *p8 =
        moat__pki_d2i_whole(ASN1_ITEM_rptr(PKCS8_PRIV_KEY_INFO), der, len, "a PKCS#8 private key", err);
    EVP_PKEY *key;

    if (p8 == NULL)
        return err->code;
    key = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (key == NULL)
        return moat_err_ossl(err, MOAT_E_INVAL, "decoding the PKCS#8 private key");
    *out = key;
    return 0;
}

int moat_pki_key_to_pem(const EVP_PKEY *key, char **out, size_t *out_len, moat_err_t *err)
{
    BIO *b = BIO_new(BIO_s_secmem());
    int rc;
    if (b == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encoding a private key");
    if (PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(b);
        return moat_err_ossl(err, MOAT_E_INVAL, "encoding the private key as PEM (is it a private key?)");
    }
    rc = moat__pki_bio_take(b, true, (unsigned char **)out, out_len, err);
    BIO_free(b);
    return rc;
}

int moat_pki_pubkey_to_der(const EVP_PKEY *key, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der = NULL;
    if (key == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no key to encode");
    return moat__pki_der_take(&der, i2d_PUBKEY(key, &der), "the public key", out, out_len, err);
}

int moat_pki_pubkey_from_der(const unsigned char *der, size_t len, EVP_PKEY **out, moat_err_t *err)
{
    X509_PUBKEY *spki =
        moat__pki_d2i_whole(ASN1_ITEM_rptr(X509_PUBKEY), der, len, "a SubjectPublicKeyInfo public key", err);
    EVP_PKEY *key = spki != NULL ? X509_PUBKEY_get(spki) : NULL;
    X509_PUBKEY_free(spki);
    if (spki != NULL && key == NULL)
        moat_err_ossl(err, MOAT_E_INVAL, "the public key's algorithm or value is not supported");
    if (key == NULL)
        return err->code;
    *out = key;
    return 0;
}

bool moat_pki_pubkey_eq(const EVP_PKEY *a, const EVP_PKEY *b)
{
    int r;
    if (a == NULL || b == NULL)
        return false;
    r = EVP_PKEY_eq(a, b);
    /* A type mismatch is reported as -1 with an error queued: not equal, and nothing to report. */
    ERR_clear_error();
    return r == 1;
}

static void hex_colons(const unsigned char *md, unsigned n, char out[MOAT_PKI_FINGERPRINT_SIZE])
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (unsigned i = 0; i < n && o + 3 <= MOAT_PKI_FINGERPRINT_SIZE; i++) {
        if (i > 0)
            out[o++] = ':';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
    }
    out[o] = '\0';
}

int moat_pki_pubkey_fingerprint(const EVP_PKEY *key, char out[MOAT_PKI_FINGERPRINT_SIZE], moat_err_t *err)
{
    unsigned char *der, md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    size_t len;
    int rc;
    if ((rc = moat_pki_pubkey_to_der(key, &der, &len, err)) < 0)
        return rc;
    rc = EVP_Digest(der, len, md, &n, EVP_sha256(), NULL);
    moat_free(&der);
    if (rc != 1)
        return moat_err_ossl(err, MOAT_E_PKI, "hashing the public key");
    hex_colons(md, n, out);
    return 0;
}

int moat_pki_cert_fingerprint(const X509 *cert, char out[MOAT_PKI_FINGERPRINT_SIZE], moat_err_t *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (cert == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no certificate to fingerprint");
    if (X509_digest(cert, EVP_sha256(), md, &n) != 1)
        return moat_err_ossl(err, MOAT_E_PKI, "hashing the certificate");
    hex_colons(md, n, out);
    return 0;
}

char *moat_pki_time_format(time_t t, char buf[MOAT_PKI_TIME_SIZE])
{
    return moat_time_rfc3339((int64_t)t, buf);
}

int moat_pki_asn1_time_to_time(const ASN1_TIME *t, time_t *out, moat_err_t *err)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return moat_err_ossl(err, MOAT_E_INVAL, "malformed time in certificate");
    *out = timegm(&tm);
    return 0;
}
