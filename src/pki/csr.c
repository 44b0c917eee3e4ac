/*
 * pki: PKCS#10 certificate requests: build, encode, parse, verify, describe.
 */
#include "pki/pki_int.h"
#include "core/x509name.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

/* Requests and certificates are small; anything bigger is not one. */
#define MAX_OBJECT_BYTES (1024 * 1024)

static int add_field(X509_NAME *name, int nid, const char *label, const char *value, moat_err_t *err)
{
    /* emailAddress is an IA5String and countryName a PrintableString: both ASCII only. */
    int type = (nid == NID_pkcs9_emailAddress || nid == NID_countryName) ? MBSTRING_ASC : MBSTRING_UTF8;
    if (value == NULL)
        return 0;
    if (*value == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "the %s field is empty", label);
    if (nid == NID_countryName && (strlen(value) != 2 || !((value[0] >= 'A' && value[0] <= 'Z') ||
                                                           (value[0] >= 'a' && value[0] <= 'z')))) {
        moat_err_set(err, MOAT_E_INVAL, "country \"%.40s\" is not a two-letter code", value);
        return moat_err_hint(err, "use an ISO 3166 code such as US, DE or FR");
    }
    if (X509_NAME_add_entry_by_NID(name, nid, type, (const unsigned char *)value, -1, -1, 0) != 1) {
        moat_err_ossl(err, MOAT_E_INVAL, "the %s field \"%.60s\" cannot be used", label, value);
        return moat_err_hint(err, "shorten it (64 characters for most fields) and use plain text");
    }
    return 0;
}

int moat__pki_subject_name(const moat_pki_subject_t *s, X509_NAME **out, moat_err_t *err)
{
    X509_NAME *name = X509_NAME_new();
    int rc;
    if (name == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building a subject name");
    /* Most significant first, as X.500 and openssl req order them. */
    if ((rc = add_field(name, NID_countryName, "country", s->c, err)) < 0 ||
        (rc = add_field(name, NID_stateOrProvinceName, "state", s->st, err)) < 0 ||
        (rc = add_field(name, NID_localityName, "locality", s->l, err)) < 0 ||
        (rc = add_field(name, NID_organizationName, "organization", s->o, err)) < 0 ||
        (rc = add_field(name, NID_organizationalUnitName, "organizational unit", s->ou, err)) < 0 ||
        (rc = add_field(name, NID_commonName, "common name", s->cn, err)) < 0 ||
        (rc = add_field(name, NID_pkcs9_emailAddress, "e-mail", s->email, err)) < 0) {
        X509_NAME_free(name);
        return rc;
    }
    *out = name;
    return 0;
}

/* The SANs implied by a CN when none are given: an IP literal, an e-mail address or a DNS name. */
static int sans_from_cn(const char *cn, GENERAL_NAMES **out, moat_err_t *err)
{
    char text[320];
    moat_err_t ignore = {0};
    if (strlen(cn) > 255)
        return moat_err_set(err, MOAT_E_INVAL, "common name is longer than 255 characters");
    if (moat_pki_is_ip_literal(cn))
        snprintf(text, sizeof(text), "IP:%s", cn);
    else if (strchr(cn, '@') != NULL)
        snprintf(text, sizeof(text), "email:%s", cn);
    else
        snprintf(text, sizeof(text), "DNS:%s", cn);
    /* A CN that is no name at all ("Alice Smith") simply gets no SAN. */
    if (moat_pki_sans_parse(text, out, &ignore) < 0)
        *out = NULL;
    return 0;
}

int moat_pki_csr_new(EVP_PKEY *key, const moat_pki_subject_t *subject, const char *sans, X509_REQ **out,
                     moat_err_t *err)
{
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    GENERAL_NAMES *names = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    const char *mdname;
    EVP_MD *md = NULL;
    int rc;

    if (key == NULL || subject == NULL || subject->cn == NULL || subject->cn[0] == '\0') {
        moat_err_set(err, MOAT_E_INVAL, "a certificate request needs a key and a common name");
        return moat_err_hint(err, "give the common name with --cn");
    }
    if ((rc = moat__pki_subject_name(subject, &name, err)) < 0)
        return rc;
    if (sans != NULL && sans[0] != '\0')
        rc = moat_pki_sans_parse(sans, &names, err);
    else
        rc = sans_from_cn(subject->cn, &names, err);
    if (rc < 0)
        goto done;
    rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory building a certificate request");
    if ((req = X509_REQ_new()) == NULL)
        goto done;
    if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "building a certificate request");
        goto done;
    }
    if (names != NULL && sk_GENERAL_NAME_num(names) > 0) {
        if (X509V3_add1_i2d(&exts, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) != 1 ||
            X509_REQ_add_extensions(req, exts) != 1) {
            rc = moat_err_ossl(err, MOAT_E_PKI, "adding SANs to the certificate request");
            goto done;
        }
    }
    mdname = moat__pki_sign_digest(key);
    if (mdname != NULL && (md = EVP_MD_fetch(NULL, mdname, NULL)) == NULL) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "fetching %s", mdname);
        goto done;
    }
    if (X509_REQ_sign(req, key, md) <= 0) {
        rc = moat_err_ossl(err, MOAT_E_PKI,
                           "signing the certificate request (does the key have its private part?)");
        goto done;
    }
    *out = req;
    req = NULL;
    rc = 0;
    moat_err_clear(err);
done:
    EVP_MD_free(md);
    X509_REQ_free(req);
    X509_NAME_free(name);
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int moat_pki_csr_to_der(X509_REQ *csr, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der = NULL;
    return moat__pki_der_take(&der, i2d_X509_REQ(csr, &der), "the certificate request as DER", out, out_len,
                              err);
}

int moat_pki_csr_to_pem(X509_REQ *csr, char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der;
    size_t len;
    int rc;
    if ((rc = moat_pki_csr_to_der(csr, &der, &len, err)) < 0)
        return rc;
    rc = moat__pki_pem_of_der(PEM_STRING_X509_REQ, der, len, "the certificate request as PEM", out, out_len,
                              err);
    moat_free(&der);
    return rc;
}

bool moat__pki_is_pem(const unsigned char *data, size_t len)
{
    static const char begin[] = "-----BEGIN ";
    for (size_t i = 0; i + sizeof(begin) - 1 <= len; i++)
        if (data[i] == '-' && memcmp(data + i, begin, sizeof(begin) - 1) == 0)
            return true;
    return false;
}

int moat_pki_csr_parse(const unsigned char *data, size_t len, X509_REQ **out, moat_err_t *err)
{
    X509_REQ *req;
    if (data == NULL || len == 0) {
        moat_err_set(err, MOAT_E_INVAL, "the certificate request is empty");
        return moat_err_hint(err,
                             "give the request (PEM or DER) that 'moat key new' or 'moat key renew' wrote; "
                             "'moat key csr NAME' prints a pending one again");
    }
    if (len > MAX_OBJECT_BYTES)
        return moat_err_set(err, MOAT_E_LIMIT, "the certificate request is larger than 1 MiB");
    if (moat__pki_is_pem(data, len)) {
        BIO *b = BIO_new_mem_buf(data, (int)len);
        if (b == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading a certificate request");
        req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
        BIO_free(b);
        if (req == NULL) {
            moat_err_ossl(err, MOAT_E_INVAL, "no readable CERTIFICATE REQUEST block in the PEM text");
            return moat_err_hint(err,
                                 "give a PKCS#10 request (PEM or DER), e.g. from moat key new --csr-out");
        }
    } else {
        const unsigned char *p = data;
        req = d2i_X509_REQ(NULL, &p, (long)len);
        if (req == NULL) {
            moat_err_ossl(err, MOAT_E_INVAL, "not a certificate request (neither PEM nor DER PKCS#10)");
            return moat_err_hint(err,
                                 "give a PKCS#10 request (PEM or DER), e.g. from moat key new --csr-out");
        }
        if (p != data + len) {
            X509_REQ_free(req);
            return moat_err_set(err, MOAT_E_INVAL, "the certificate request is followed by %zu stray bytes",
                                (size_t)(data + len - p));
        }
    }
    ERR_clear_error();
    *out = req;
    return 0;
}

int moat_pki_csr_verify(X509_REQ *csr, moat_err_t *err)
{
    EVP_PKEY *key = X509_REQ_get0_pubkey(csr);
    int r;
    if (key == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "the certificate request's public key cannot be read");
    r = X509_REQ_verify(csr, key);
    if (r == 1)
        return 0;
    if (r == 0) {
        ERR_clear_error();
        moat_err_set(err, MOAT_E_PKI, "the request's signature does not verify: it was altered or damaged");
        return moat_err_hint(err, "make a new request with the key's owner (moat key new / moat key renew)");
    }
    moat_err_ossl(err, MOAT_E_PKI, "the request's signature cannot be checked");
    return moat_err_hint(err, "make a new request with a supported key and signature algorithm");
}

STACK_OF(X509_EXTENSION) * moat__pki_csr_exts(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    ERR_clear_error();
    return exts;
}

EVP_PKEY *moat_pki_csr_get1_pubkey(X509_REQ *csr, moat_err_t *err)
{
    EVP_PKEY *key = X509_REQ_get_pubkey(csr);
    if (key == NULL)
        moat_err_ossl(err, MOAT_E_PKI, "the certificate request's public key cannot be read");
    return key;
}

int moat_pki_csr_info(X509_REQ *csr, moat_pki_csr_info_t *out, moat_err_t *err)
{
    STACK_OF(X509_EXTENSION) *exts = moat__pki_csr_exts(csr);
    GENERAL_NAMES *names = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    EVP_PKEY *key;
    int rc;

    memset(out, 0, sizeof(*out));
    if (exts != NULL) {
        names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
        bc = X509V3_get_d2i(exts, NID_basic_constraints, NULL, NULL);
    }
    out->requests_ca = bc != NULL && bc->ca;
    BASIC_CONSTRAINTS_free(bc);
    rc = moat_pki_sans_format(names, &out->sans, err);
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (rc < 0)
        return rc;
    out->subject = moat_x509_name_dup(X509_REQ_get_subject_name(csr));
    out->cn = moat__pki_name_cn(X509_REQ_get_subject_name(csr));
    if (out->subject == NULL) {
        moat_pki_csr_info_dispose(out);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory describing a certificate request");
    }
    key = X509_REQ_get0_pubkey(csr);
    moat_pki_key_describe(key, out->key_alg, sizeof(out->key_alg));
    out->key_bits = moat_pki_key_bits(key);
    ERR_clear_error();
    return 0;
}

void moat_pki_csr_info_dispose(moat_pki_csr_info_t *info)
{
    if (info == NULL)
        return;
    moat_free(&info->subject);
    moat_free(&info->cn);
    moat_free(&info->sans);
}
