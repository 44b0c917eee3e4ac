/*
 * pki: what a file holds, for 'moat inspect': every certificate, request, CRL and key of PEM text (any
 * number of blocks), DER, PKCS#7 and PKCS#12 bundles, in file order. Private keys go through
 * moat_pki_import() (its iteration caps and legacy PKCS#12 support); nothing secret leaves this file
 * except as an EVP_PKEY the caller only describes.
 */
#include "pki/pki_int.h"
#include "core/x509name.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <string.h>

/* Objects in one input; real bundles hold a handful. */
#define MAX_OBJECTS 1000
/* Entries of one CRL described. */
#define MAX_CRL_ENTRIES 100000

typedef struct ictx {
    moat_pki_inspect_t *out;
    const char *password;
    bool have_password;
    moat_err_t *err;
} ictx_t;

static moat_pki_obj_t *add_obj(ictx_t *c, moat_pki_obj_kind_t kind, const char *container)
{
    moat_pki_inspect_t *o = c->out;
    if (o->n >= MAX_OBJECTS) {
        moat_err_set(c->err, MOAT_E_LIMIT, "more than %d objects in one file", MAX_OBJECTS);
        moat_err_hint(c->err, "split the file; real bundles hold a handful of certificates");
        return NULL;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        moat_pki_obj_t *p = moat_realloc(o->objs, cap * sizeof(*p));
        if (p == NULL) {
            moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
            return NULL;
        }
        o->objs = p;
        o->cap = cap;
    }
    moat_pki_obj_t *ob = &o->objs[o->n++];
    memset(ob, 0, sizeof(*ob));
    ob->kind = kind;
    ob->container = container;
    return ob;
}

static int add_cert(ictx_t *c, X509 *x, const char *container)
{
    moat_pki_obj_t *ob;
    if (x == NULL || (ob = add_obj(c, MOAT_PKI_OBJ_CERT, container)) == NULL) {
        X509_free(x);
        return x == NULL ? moat_err_set(c->err, MOAT_E_NOMEM, "out of memory") : c->err->code;
    }
    ob->cert = x;
    return 0;
}

static int add_crl(ictx_t *c, X509_CRL *crl, const char *container)
{
    moat_pki_obj_t *ob;
    if (crl == NULL || (ob = add_obj(c, MOAT_PKI_OBJ_CRL, container)) == NULL) {
        X509_CRL_free(crl);
        return crl == NULL ? moat_err_set(c->err, MOAT_E_NOMEM, "out of memory") : c->err->code;
    }
    ob->crl = crl;
    return 0;
}

static int add_pkcs7(ictx_t *c, PKCS7 *p7)
{
    STACK_OF(X509) *certs = moat__pki_pkcs7_certs(p7);
    STACK_OF(X509_CRL) *crls = NULL;
    int rc = 0;
    if (PKCS7_type_is_signed(p7) && p7->d.sign != NULL)
        crls = p7->d.sign->crl;
    else if (PKCS7_type_is_signedAndEnveloped(p7) && p7->d.signed_and_enveloped != NULL)
        crls = p7->d.signed_and_enveloped->crl;
    else
        return moat_err_set(c->err, MOAT_E_INVAL, "a PKCS#7 object of type %s, not a certificate bundle",
                            OBJ_nid2sn(OBJ_obj2nid(p7->type)));
    for (int i = 0; rc == 0 && i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        rc = X509_up_ref(x) == 1 ? add_cert(c, x, "PKCS#7")
                                 : moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
    }
    for (int i = 0; rc == 0 && i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *x = sk_X509_CRL_value(crls, i);
        rc = X509_CRL_up_ref(x) == 1 ? add_crl(c, x, "PKCS#7")
                                     : moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
    }
    if (rc == 0 && sk_X509_num(certs) == 0 && sk_X509_CRL_num(crls) == 0) {
        moat_pki_obj_t *ob = add_obj(c, MOAT_PKI_OBJ_OTHER, "PKCS#7");
        if (ob == NULL)
            return c->err->code;
        moat_strlcpy(ob->label, "empty PKCS#7 bundle", sizeof(ob->label));
    }
    return rc;
}

/* Keys (and a PKCS#12's certificates) through the import path. A missing password is not an error
 * here: the object is listed as locked. */
static int add_via_import(ictx_t *c, const unsigned char *data, size_t len, const char *locked_label)
{
    moat_pki_import_t imp;
    moat_err_t e = {0};
    moat_pki_obj_t *ob;
    int rc;

    if (moat_pki_import(data, len, c->password, c->have_password, &imp, &e) != 0) {
        if (e.code == MOAT_E_PASSWORD && !c->have_password) {
            if ((ob = add_obj(c, MOAT_PKI_OBJ_LOCKED, locked_label)) == NULL)
                return c->err->code;
            moat_strlcpy(ob->label, locked_label, sizeof(ob->label));
            return 0;
        }
        *c->err = e;
        return e.code;
    }
    rc = 0;
    for (size_t i = 0; rc == 0 && i < imp.nkeys; i++) {
        if ((ob = add_obj(c, MOAT_PKI_OBJ_KEY, imp.format)) == NULL) {
            rc = c->err->code;
            break;
        }
        ob->key = imp.keys[i];
        imp.keys[i] = NULL;
    }
    for (int i = 0; rc == 0 && i < sk_X509_num(imp.certs); i++) {
        X509 *x = sk_X509_value(imp.certs, i);
        rc = X509_up_ref(x) == 1 ? add_cert(c, x, imp.format)
                                 : moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
    }
    if (rc == 0 && imp.used_password)
        c->out->used_password = true;
    moat_pki_import_dispose(&imp);
    return rc;
}

/* One DER object: certificate, request, CRL, PKCS#7, public key, else a key or PKCS#12. Each candidate must
 * take every byte. */
static int inspect_der(ictx_t *c, const unsigned char *data, size_t len, const char *container)
{
    const unsigned char *p;
    long n = (long)len;
    {
        X509 *x;
        p = data;
        if ((x = d2i_X509(NULL, &p, n)) != NULL) {
            if (p == data + len)
                return add_cert(c, x, container);
            X509_free(x);
        }
    }
    {
        X509_REQ *r;
        p = data;
        if ((r = d2i_X509_REQ(NULL, &p, n)) != NULL) {
            moat_pki_obj_t *ob;
            if (p == data + len) {
                if ((ob = add_obj(c, MOAT_PKI_OBJ_CSR, container)) == NULL) {
                    X509_REQ_free(r);
                    return c->err->code;
                }
                ob->csr = r;
                return 0;
            }
            X509_REQ_free(r);
        }
    }
    {
        X509_CRL *crl;
        p = data;
        if ((crl = d2i_X509_CRL(NULL, &p, n)) != NULL) {
            if (p == data + len)
                return add_crl(c, crl, container);
            X509_CRL_free(crl);
        }
    }
    {
        PKCS7 *p7;
        p = data;
        if ((p7 = d2i_PKCS7(NULL, &p, n)) != NULL) {
            int rc = p == data + len ? add_pkcs7(c, p7) : 1;
            PKCS7_free(p7);
            if (rc != 1)
                return rc;
        }
    }
    {
        EVP_PKEY *k;
        p = data;
        if ((k = d2i_PUBKEY(NULL, &p, n)) != NULL) {
            moat_pki_obj_t *ob;
            if (p == data + len) {
                if ((ob = add_obj(c, MOAT_PKI_OBJ_PUBKEY, container)) == NULL) {
                    EVP_PKEY_free(k);
                    return c->err->code;
                }
                ob->key = k;
                return 0;
            }
            EVP_PKEY_free(k);
        }
    }
    ERR_clear_error();
    {
        PKCS12 *p12;
        p = data;
        p12 = d2i_PKCS12(NULL, &p, n);
        PKCS12_free(p12);
        ERR_clear_error();
        int rc = add_via_import(c, data, len, p12 != NULL ? "PKCS#12" : "encrypted private key");
        if (rc == MOAT_E_INVAL && p12 == NULL) {
            moat_err_set(c->err, MOAT_E_INVAL,
                         "not a certificate, request, CRL, key or bundle moat can read");
            moat_err_hint(c->err, "moat reads certificates, requests (CSR), CRLs, keys, PKCS#7 (.p7b) and "
                                  "PKCS#12 (.p12/.pfx), as PEM or DER");
        }
        return rc;
    }
}

static int inspect_pem(ictx_t *c, const unsigned char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    int rc = 0, blocks = 0;
    if (b == NULL)
        return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (PEM_read_bio(b, &name, &header, &der, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
                rc = moat_err_set(c->err, MOAT_E_INVAL, "PEM block %d is damaged (its base64 or END line)",
                                  blocks + 1);
            break;
        }
        blocks++;
        if (strstr(name, "PRIVATE KEY") != NULL) {
            /* Written back as the one block it was, headers (traditional encryption) included. */
            BIO *one = BIO_new(BIO_s_mem());
            BUF_MEM *bm = NULL;
            if (one == NULL || PEM_write_bio(one, name, header, der, dlen) <= 0) {
                rc = moat_err_set(c->err, MOAT_E_NOMEM, "out of memory");
            } else {
                BIO_get_mem_ptr(one, &bm);
                rc = add_via_import(c, (const unsigned char *)bm->data, bm->length,
                                    strcmp(name, "ENCRYPTED PRIVATE KEY") == 0 || strstr(header, "ENCRYPTED")
                                        ? "encrypted private key"
                                        : "private key");
            }
            BIO_free(one);
            OPENSSL_cleanse(der, (size_t)dlen);
        } else if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0 ||
                   strcmp(name, "TRUSTED CERTIFICATE") == 0) {
            const unsigned char *p = der;
            X509 *x = strcmp(name, "TRUSTED CERTIFICATE") == 0 ? d2i_X509_AUX(NULL, &p, dlen)
                                                               : d2i_X509(NULL, &p, dlen);
            if (x == NULL || p != der + dlen) {
                X509_free(x);
                rc =
                    moat_err_ossl(c->err, MOAT_E_INVAL, "the certificate in PEM block %d is damaged", blocks);
            } else {
                rc = add_cert(c, x, "PEM");
            }
        } else if (strcmp(name, "CERTIFICATE REQUEST") == 0 || strcmp(name, "NEW CERTIFICATE REQUEST") == 0 ||
                   strcmp(name, "X509 CRL") == 0 || strcmp(name, "PKCS7") == 0 ||
                   strcmp(name, "PUBLIC KEY") == 0) {
            size_t before = c->out->n;
            rc = inspect_der(c, der, (size_t)dlen, "PEM");
            if (rc == 0 && c->out->n == before)
                rc = moat_err_set(c->err, MOAT_E_INVAL, "PEM block %d (%s) is damaged", blocks, name);
            else if (rc != 0)
                moat_err_prefix(c->err, "PEM block %d (%s)", blocks, name);
        } else {
            moat_pki_obj_t *ob = add_obj(c, MOAT_PKI_OBJ_OTHER, "PEM");
            if (ob == NULL)
                rc = c->err->code;
            else
                snprintf(ob->label, sizeof(ob->label), "%.50s", name);
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        if (rc != 0)
            break;
    }
    BIO_free(b);
    if (rc == 0 && blocks == 0)
        rc = moat_err_set(c->err, MOAT_E_INVAL, "the PEM text holds no BEGIN/END block");
    return rc;
}

int moat_pki_inspect(const unsigned char *data, size_t len, const char *password, bool have_password,
                     moat_pki_inspect_t *out, moat_err_t *err)
{
    ictx_t c = {out, password, have_password, err};
    int rc;
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        moat_err_set(err, MOAT_E_INVAL, "the input is empty");
        return moat_err_hint(err, "give a certificate, request, CRL, key, .p7b or .p12 file");
    }
    if (len > (size_t)MOAT_PKI_MAX_IMPORT_BYTES) {
        moat_err_set(err, MOAT_E_LIMIT, "the input is %zu bytes; at most %ld are read", len,
                     (long)MOAT_PKI_MAX_IMPORT_BYTES);
        return moat_err_hint(err,
                             "certificates, keys and bundles are a few kilobytes: is it the right file?");
    }
    rc = moat__pki_is_pem(data, len) ? inspect_pem(&c, data, len) : inspect_der(&c, data, len, "DER");
    if (rc != 0) {
        if (err->hint[0] == '\0') {
            if (err->code == MOAT_E_PASSWORD)
                moat_err_hint(err, "give the right password with --password-file FILE");
            else
                moat_err_hint(err, "moat reads certificates, requests (CSR), CRLs, keys, PKCS#7 (.p7b) and "
                                   "PKCS#12 (.p12/.pfx), as PEM or DER");
        }
        moat_pki_inspect_dispose(out);
        ERR_clear_error();
        return rc;
    }
    ERR_clear_error();
    return 0;
}

int moat_pki_inspect_certs(STACK_OF(X509) * certs, const char *container, moat_pki_inspect_t *out,
                           moat_err_t *err)
{
    ictx_t c = {out, NULL, false, err};
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (X509_up_ref(x) != 1 || add_cert(&c, x, container) != 0) {
            if (err->code == 0)
                moat_err_set(err, MOAT_E_NOMEM, "out of memory");
            moat_pki_inspect_dispose(out);
            return err->code;
        }
    }
    return 0;
}

void moat_pki_inspect_dispose(moat_pki_inspect_t *in)
{
    for (size_t i = 0; i < in->n; i++) {
        X509_free(in->objs[i].cert);
        X509_REQ_free(in->objs[i].csr);
        X509_CRL_free(in->objs[i].crl);
        EVP_PKEY_free(in->objs[i].key);
    }
    moat_free(&in->objs);
    memset(in, 0, sizeof(*in));
}

bool moat_pki_cert_issued_by(X509 *cert, X509 *issuer)
{
    EVP_PKEY *k = X509_get0_pubkey(issuer);
    bool ok = k != NULL && X509_check_issued(issuer, cert) == X509_V_OK && X509_verify(cert, k) == 1;
    ERR_clear_error();
    return ok;
}

int moat_pki_crl_describe(X509_CRL *crl, moat_pki_crl_desc_t *out, moat_err_t *err)
{
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    ASN1_INTEGER *num;
    int n = sk_X509_REVOKED_num(rev), crit = -1;
    time_t t;

    memset(out, 0, sizeof(*out));
    if ((out->issuer = moat_x509_name_dup(X509_CRL_get_issuer(crl))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    if (X509_CRL_get0_lastUpdate(crl) != NULL &&
        moat_pki_asn1_time_to_time(X509_CRL_get0_lastUpdate(crl), &t, err) == 0)
        out->this_update = t;
    if (X509_CRL_get0_nextUpdate(crl) != NULL &&
        moat_pki_asn1_time_to_time(X509_CRL_get0_nextUpdate(crl), &t, err) == 0)
        out->next_update = t;
    moat_err_clear(err);
    if ((num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL)) != NULL) {
        out->number = moat__pki_serial_hex(num);
        ASN1_INTEGER_free(num);
    }
    {
        ASN1_INTEGER *delta = X509_CRL_get_ext_d2i(crl, NID_delta_crl, &crit, NULL);
        out->delta = delta != NULL;
        ASN1_INTEGER_free(delta);
    }
    {
        int nid = X509_CRL_get_signature_nid(crl);
        snprintf(out->sig_alg, sizeof(out->sig_alg), "%s", nid != NID_undef ? OBJ_nid2sn(nid) : "unknown");
    }
    out->nentries = n > 0 ? (size_t)n : 0;
    if (n > MAX_CRL_ENTRIES)
        n = MAX_CRL_ENTRIES;
    if (n > 0 && (out->entries = moat_calloc((size_t)n, sizeof(*out->entries))) == NULL) {
        moat_pki_crl_desc_dispose(out);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(rev, i);
        moat_pki_crl_entry_t *e = &out->entries[out->nshown++];
        ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, &crit, NULL);
        if (moat_pki_serial_key(X509_REVOKED_get0_serialNumber(r), e->serial) != 0)
            moat_strlcpy(e->serial, "(unreadable)", sizeof(e->serial));
        if (moat_pki_asn1_time_to_time(X509_REVOKED_get0_revocationDate(r), &t, err) == 0)
            e->revoked_at = t;
        moat_err_clear(err);
        e->reason = reason != NULL ? (int)ASN1_ENUMERATED_get(reason) : -1;
        ASN1_ENUMERATED_free(reason);
    }
    ERR_clear_error();
    return 0;
}

void moat_pki_crl_desc_dispose(moat_pki_crl_desc_t *d)
{
    moat_free(&d->issuer);
    moat_free(&d->number);
    moat_free(&d->entries);
    memset(d, 0, sizeof(*d));
}
