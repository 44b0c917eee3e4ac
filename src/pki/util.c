/*
 * pki: small helpers shared by the pki/ sources (buffers, names, serials, extensions, signing).
 */
#include "pki/pki_int.h"

#include <openssl/bn.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

int moat__pki_bio_take(BIO *b, bool nul, unsigned char **out, size_t *len, moat_err_t *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    unsigned char *buf;
    if (n < 0)
        return moat_err_set(err, MOAT_E_PKI, "reading an encoded object back from memory");
    buf = moat_malloc((size_t)n + (nul ? 1 : 0) + (n == 0 ? 1 : 0));
    if (buf == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encoding an object");
    if (n > 0)
        memcpy(buf, data, (size_t)n);
    if (nul)
        buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return 0;
}

int moat__pki_der_take(unsigned char **der, int n, const char *what, unsigned char **out, size_t *out_len,
                       moat_err_t *err)
{
    unsigned char *buf;
    if (n <= 0)
        return moat_err_ossl(err, MOAT_E_PKI, "encoding %s", what);
    if ((buf = moat_malloc((size_t)n)) == NULL) {
        OPENSSL_clear_free(*der, (size_t)n);
        *der = NULL;
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encoding %s", what);
    }
    memcpy(buf, *der, (size_t)n);
    OPENSSL_clear_free(*der, (size_t)n);
    *der = NULL;
    *out = buf;
    *out_len = (size_t)n;
    return 0;
}

int moat__pki_pem_of_der(const char *label, const unsigned char *der, size_t len, const char *what,
                         char **out, size_t *out_len, moat_err_t *err)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc;
    if (b == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encoding %s", what);
    if (len > LONG_MAX || PEM_write_bio(b, label, "", der, (long)len) <= 0) {
        BIO_free(b);
        return moat_err_ossl(err, MOAT_E_PKI, "encoding %s", what);
    }
    rc = moat__pki_bio_take(b, true, (unsigned char **)out, out_len, err);
    BIO_free(b);
    return rc;
}

char *moat__pki_name_cn(const X509_NAME *name)
{
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    char *s;
    int n;
    if (i < 0)
        return NULL;
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (n < 0) {
        ERR_clear_error();
        return NULL;
    }
    /* An embedded NUL would make the CN look like another name: refuse to show it as text. */
    if (memchr(utf8, '\0', (size_t)n) != NULL) {
        OPENSSL_free(utf8);
        return NULL;
    }
    s = moat_strdup((const char *)utf8);
    OPENSSL_free(utf8);
    return s;
}

const char *moat__pki_sign_digest(const EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL;
    return "SHA256";
}

ASN1_INTEGER *moat__pki_random_serial(moat_err_t *err)
{
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *serial = NULL;
    if (bn == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory making a serial number");
        return NULL;
    }
    /* 159 random bits: positive and at most 20 octets in DER, as RFC 5280 §4.1.2.2 requires. */
    do {
        if (BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
            BN_free(bn);
            moat_err_ossl(err, MOAT_E_PKI, "drawing a random serial number");
            return NULL;
        }
    } while (BN_is_zero(bn));
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (serial == NULL)
        moat_err_ossl(err, MOAT_E_NOMEM, "encoding a serial number");
    return serial;
}

char *moat__pki_serial_hex(const ASN1_INTEGER *serial)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex, *s;
    if (bn == NULL) {
        ERR_clear_error();
        return NULL;
    }
    hex = BN_bn2hex(bn);
    BN_free(bn);
    if (hex == NULL)
        return NULL;
    s = moat_strdup(strcmp(hex, "0") == 0 ? "00" : hex);
    OPENSSL_free(hex);
    return s;
}

ASN1_INTEGER *moat__pki_serial_from_hex(const char *hex, moat_err_t *err)
{
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai;
    size_t n = hex ? strlen(hex) : 0;
    const char *digits = hex;
    if (n > 0 && hex[0] == '-')
        digits++;
    if (n == 0 || n > 128 || *digits == '\0' || strspn(digits, "0123456789abcdefABCDEF") != strlen(digits)) {
        moat_err_set(err, MOAT_E_INVAL, "\"%.64s\" is not a hexadecimal serial number", hex ? hex : "");
        return NULL;
    }
    if (BN_hex2bn(&bn, hex) == 0) {
        moat_err_ossl(err, MOAT_E_NOMEM, "parsing serial number %s", hex);
        return NULL;
    }
    ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (ai == NULL)
        moat_err_ossl(err, MOAT_E_NOMEM, "encoding serial number %s", hex);
    return ai;
}

int moat__pki_set_validity(X509 *cert, time_t not_before, time_t not_after, moat_err_t *err)
{
    ASN1_TIME *nb = ASN1_TIME_set(NULL, not_before), *na = ASN1_TIME_set(NULL, not_after);
    int ok =
        nb != NULL && na != NULL && X509_set1_notBefore(cert, nb) == 1 && X509_set1_notAfter(cert, na) == 1;
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    if (!ok)
        return moat_err_ossl(err, MOAT_E_PKI, "setting the certificate's validity");
    return 0;
}

int moat__pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value, moat_err_t *err)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : cert, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "making the %s extension", OBJ_nid2sn(nid));
    ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!ok)
        return moat_err_ossl(err, MOAT_E_PKI, "adding the %s extension", OBJ_nid2sn(nid));
    return 0;
}

int moat__pki_sign_cert(X509 *cert, EVP_PKEY *key, moat_err_t *err)
{
    const char *mdname = moat__pki_sign_digest(key);
    EVP_MD *md = NULL;
    int ok;
    if (mdname != NULL && (md = EVP_MD_fetch(NULL, mdname, NULL)) == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "fetching %s", mdname);
    ok = X509_sign(cert, key, md) > 0;
    EVP_MD_free(md);
    if (!ok)
        return moat_err_ossl(err, MOAT_E_PKI, "signing the certificate");
    return 0;
}

int moat__pki_check_ca_key(X509 *ca_cert, EVP_PKEY *ca_key, moat_err_t *err)
{
    if (ca_cert == NULL || ca_key == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no CA certificate or key given");
    if (X509_check_private_key(ca_cert, ca_key) != 1) {
        ERR_clear_error();
        moat_err_set(err, MOAT_E_PKI, "the CA key does not match the CA certificate");
        return moat_err_hint(err, "restore the CA key that belongs to this certificate, or re-create the CA");
    }
    return 0;
}

int moat__pki_add_urls(X509 *cert, const moat_pki_urls_t *urls, moat_err_t *err)
{
    char value[1200];
    int rc;
    if (urls == NULL)
        return 0;
    /* The values go through the extension config syntax, where a comma starts a new item. */
    if (strpbrk(urls->crl, ", \t\r\n") || strpbrk(urls->ocsp, ", \t\r\n") ||
        strpbrk(urls->ca_issuers, ", \t\r\n"))
        return moat_err_set(err, MOAT_E_INVAL, "CA URLs must not contain commas or white space");
    if (urls->crl[0] != '\0') {
        snprintf(value, sizeof(value), "URI:%s", urls->crl);
        if ((rc = moat__pki_add_ext(cert, NULL, NID_crl_distribution_points, value, err)) < 0)
            return rc;
    }
    if (urls->ocsp[0] != '\0' || urls->ca_issuers[0] != '\0') {
        size_t o = 0;
        value[0] = '\0';
        if (urls->ocsp[0] != '\0')
            o += (size_t)snprintf(value, sizeof(value), "OCSP;URI:%s", urls->ocsp);
        if (urls->ca_issuers[0] != '\0')
            snprintf(value + o, sizeof(value) - o, "%scaIssuers;URI:%s", o ? "," : "", urls->ca_issuers);
        if ((rc = moat__pki_add_ext(cert, NULL, NID_info_access, value, err)) < 0)
            return rc;
    }
    return 0;
}

void moat_pki_fingerprint_colon(const char *hex, char out[MOAT_PKI_FINGERPRINT_SIZE])
{
    size_t o = 0, n = strlen(hex);
    out[0] = '\0';
    for (size_t i = 0; i + 1 < n && o + 3 < MOAT_PKI_FINGERPRINT_SIZE; i += 2) {
        if (o > 0)
            out[o++] = ':';
        for (int k = 0; k < 2; k++) {
            char c = hex[i + (size_t)k];
            out[o++] = (c >= 'a' && c <= 'f') ? (char)(c - 'a' + 'A') : c;
        }
    }
    out[o] = '\0';
}

void *moat__pki_d2i_whole(const ASN1_ITEM *it, const unsigned char *der, size_t len, const char *what,
                          moat_err_t *err)
{
    const unsigned char *p = der;
    ASN1_VALUE *v;
    if (der == NULL || len == 0 || len > (size_t)LONG_MAX) {
        moat_err_set(err, MOAT_E_INVAL, "empty or oversized %s", what);
        return NULL;
    }
    if ((v = ASN1_item_d2i(NULL, &p, (long)len, it)) == NULL) {
        moat_err_ossl(err, MOAT_E_INVAL, "not %s", what);
        return NULL;
    }
    if (p != der + len) {
        ASN1_item_free(v, it);
        moat_err_set(err, MOAT_E_INVAL, "%s followed by %zu stray bytes", what, (size_t)(der + len - p));
        return NULL;
    }
    return v;
}
