/*
 * Helpers for the store tests: temporary folders, real keys and certificates made with OpenSSL.
 */
#ifndef MOAT_STORE_TESTUTIL_H
#define MOAT_STORE_TESTUTIL_H

#include "store/store.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh temporary folder; the path goes into <out>. */
static inline void tu_tmpdir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/moat-store-test-XXXXXX");
    if (mkdtemp(out) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

static inline void tu_rmrf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* A generated key pair with its DER forms. */
typedef struct tu_key {
    EVP_PKEY *pkey;
    unsigned char *priv; /* PKCS#8 DER */
    int priv_len;
    unsigned char *pub; /* SubjectPublicKeyInfo DER */
    int pub_len;
} tu_key_t;

static inline void tu_key_new(tu_key_t *k)
{
    PKCS8_PRIV_KEY_INFO *p8;
    memset(k, 0, sizeof(*k));
    k->pkey = EVP_EC_gen("P-256");
    p8 = EVP_PKEY2PKCS8(k->pkey);
    k->priv_len = i2d_PKCS8_PRIV_KEY_INFO(p8, &k->priv);
    PKCS8_PRIV_KEY_INFO_free(p8);
    k->pub_len = i2d_PUBKEY(k->pkey, &k->pub);
}

static inline void tu_key_free(tu_key_t *k)
{
    EVP_PKEY_free(k->pkey);
    OPENSSL_clear_free(k->priv, (size_t)k->priv_len);
    OPENSSL_free(k->pub);
    memset(k, 0, sizeof(*k));
}

/* A self-signed certificate for <k> with subject CN <cn> and SAN list <san> ("DNS:a,IP:b"); DER out. */
static inline unsigned char *tu_cert(const tu_key_t *k, const char *cn, const char *san, long serial,
                                     long from_s, long to_s, int *len)
{
    X509 *x = X509_new();
    X509_NAME *n;
    X509V3_CTX c;
    unsigned char *der = NULL;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k->pkey);
    if (san != NULL) {
        X509_EXTENSION *e;
        X509V3_set_ctx_nodb(&c);
        X509V3_set_ctx(&c, x, x, NULL, NULL, 0);
        e = X509V3_EXT_conf_nid(NULL, &c, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, k->pkey, EVP_sha256());
    *len = i2d_X509(x, &der);
    X509_free(x);
    return der;
}

/* Does file <path> contain the bytes <needle>? (-1 if it cannot be read) */
static inline int tu_file_contains(const char *path, const void *needle, size_t nlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long sz;
    int found = 0;
    if (f == NULL)
        return -1;
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)sz + 1);
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz)
        sz = 0;
    fclose(f);
    for (long i = 0; i + (long)nlen <= sz && !found; i++)
        found = memcmp(buf + i, needle, nlen) == 0;
    free(buf);
    return found;
}

static inline int tu_mode(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    return (int)(sb.st_mode & 0777);
}

/* Adds a pending key named <name> made from <k>; returns its id (0 on failure, printed). */
static inline int64_t tu_add_key(moat_store_t *st, const char *name, const tu_key_t *k, int state,
                                 moat_err_t *err)
{
    moat_store_key_t rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.name, sizeof(rec.name), "%s", name);
    snprintf(rec.algorithm, sizeof(rec.algorithm), "ec-p256");
    rec.state = (moat_key_state_t)state;
    rec.pubkey.data = k->pub;
    rec.pubkey.len = (size_t)k->pub_len;
    if (moat_store_key_add(st, &rec, k->priv, (size_t)k->priv_len, err) != 0) {
        fprintf(stderr, "key_add %s: %s\n", name, err->msg);
        return 0;
    }
    return rec.id;
}

#endif
