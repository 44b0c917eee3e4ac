/*
 * pki: certificates: parse, encode, describe, check dates, order chains, pair with keys.
 */
#include "pki/pki_int.h"
#include "core/x509name.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

#define MAX_OBJECT_BYTES (16 * 1024 * 1024)

int moat_pki_cert_parse(const unsigned char *data, size_t len, X509 **out, moat_err_t *err)
{
    X509 *cert;
    if (data == NULL || len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the certificate is empty");
    if (len > MAX_OBJECT_BYTES)
        return moat_err_set(err, MOAT_E_LIMIT, "the certificate file is larger than 16 MiB");
    if (moat__pki_is_pem(data, len)) {
        BIO *b = BIO_new_mem_buf(data, (int)len);
        if (b == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading a certificate");
        cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        if (cert == NULL) {
            moat_err_ossl(err, MOAT_E_INVAL, "no readable CERTIFICATE block in the PEM text");
            return moat_err_hint(err, "give an X.509 certificate in PEM or DER form");
        }
    } else {
        cert = moat__pki_d2i_whole(ASN1_ITEM_rptr(X509), data, len, "a certificate (PEM or DER X.509)", err);
        if (cert == NULL)
            return moat_err_hint(err, "give an X.509 certificate in PEM or DER form, or a PKCS#7 .p7b/.p7c");
    }
    ERR_clear_error();
    *out = cert;
    return 0;
}

STACK_OF(X509) * moat__pki_pkcs7_certs(PKCS7 *p7)
{
    if (PKCS7_type_is_signed(p7) && p7->d.sign != NULL)
        return p7->d.sign->cert;
    if (PKCS7_type_is_signedAndEnveloped(p7) && p7->d.signed_and_enveloped != NULL)
        return p7->d.signed_and_enveloped->cert;
    return NULL;
}

/* A PKCS#7 bundle (what Windows CAs return, .p7b/.p7c) as a new stack of its certificates, in file order.
 * Returns 1 when <data> was not PKCS#7 (nothing set), 0 or a negative error when it was. */
static int certs_from_pkcs7(const unsigned char *data, size_t len, int pem, STACK_OF(X509) * *out,
                            moat_err_t *err)
{
    PKCS7 *p7 = NULL;
    STACK_OF(X509) * in, *certs;
    if (pem) {
        static const char begin[] = "-----BEGIN PKCS7-----";
        BIO *b;
        if (memmem(data, len, begin, sizeof(begin) - 1) == NULL)
            return 1;
        if ((b = BIO_new_mem_buf(data, (int)len)) == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading certificates");
        p7 = PEM_read_bio_PKCS7(b, NULL, NULL, NULL);
        BIO_free(b);
        if (p7 == NULL) {
            moat_err_ossl(err, MOAT_E_INVAL, "the PKCS7 block in the PEM text is damaged");
            return moat_err_hint(err, "check that the file was copied completely (BEGIN/END lines, base64)");
        }
    } else {
        const unsigned char *p = data;
        if ((p7 = d2i_PKCS7(NULL, &p, (long)len)) == NULL || p != data + len) {
            PKCS7_free(p7);
            ERR_clear_error();
            return 1;
        }
    }
    in = moat__pki_pkcs7_certs(p7);
    if (in == NULL || sk_X509_num(in) == 0) {
        PKCS7_free(p7);
        moat_err_set(err, MOAT_E_INVAL, "the PKCS#7 file holds no certificate");
        return moat_err_hint(err,
                             "ask the CA for the certificate itself (PEM, DER or a .p7b with the chain)");
    }
    if ((certs = X509_chain_up_ref(in)) == NULL) {
        PKCS7_free(p7);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading certificates");
    }
    PKCS7_free(p7);
    ERR_clear_error();
    *out = certs;
    return 0;
}

int moat_pki_certs_parse(const unsigned char *data, size_t len, STACK_OF(X509) * *out, moat_err_t *err)
{
    STACK_OF(X509) * certs;
    BIO *b;
    X509 *cert;
    unsigned long e;
    int rc;

    if (data == NULL || len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the certificate file is empty");
    if (len > MAX_OBJECT_BYTES)
        return moat_err_set(err, MOAT_E_LIMIT, "the certificate file is larger than 16 MiB");
    if ((rc = certs_from_pkcs7(data, len, moat__pki_is_pem(data, len), out, err)) <= 0)
        return rc;
    if (!moat__pki_is_pem(data, len)) {
        rc = moat_pki_cert_parse(data, len, &cert, err);
        if (rc < 0)
            return rc;
        if ((certs = sk_X509_new_null()) == NULL || sk_X509_push(certs, cert) <= 0) {
            X509_free(cert);
            sk_X509_free(certs);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading certificates");
        }
        *out = certs;
        return 0;
    }
    if ((certs = sk_X509_new_null()) == NULL || (b = BIO_new_mem_buf(data, (int)len)) == NULL) {
        sk_X509_free(certs);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading certificates");
    }
    ERR_clear_error();
    while ((cert = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(certs, cert) <= 0) {
            X509_free(cert);
            BIO_free(b);
            sk_X509_pop_free(certs, X509_free);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading certificates");
        }
    }
    BIO_free(b);
    /* The loop ends at the end of the text (no start line) or at a damaged block. */
    e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        sk_X509_pop_free(certs, X509_free);
        moat_err_ossl(err, MOAT_E_INVAL, "certificate %d in the PEM text is damaged", sk_X509_num(certs) + 1);
        return moat_err_hint(err, "check that the file was copied completely");
    }
    ERR_clear_error();
    if (sk_X509_num(certs) == 0) {
        sk_X509_free(certs);
        moat_err_set(err, MOAT_E_INVAL, "no certificate found in the PEM text");
        return moat_err_hint(err,
                             "give the certificate as PEM (BEGIN CERTIFICATE), DER or PKCS#7 (.p7b/.p7c)");
    }
    *out = certs;
    return 0;
}

int moat_pki_cert_to_pem(X509 *cert, STACK_OF(X509) * chain, char **out, size_t *out_len, moat_err_t *err)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc, ok;
    if (b == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory encoding a certificate");
    ok = PEM_write_bio_X509(b, cert) == 1;
    for (int i = 0; ok && chain != NULL && i < sk_X509_num(chain); i++)
        ok = PEM_write_bio_X509(b, sk_X509_value(chain, i)) == 1;
    if (!ok) {
        BIO_free(b);
        return moat_err_ossl(err, MOAT_E_PKI, "encoding a certificate as PEM");
    }
    rc = moat__pki_bio_take(b, true, (unsigned char **)out, out_len, err);
    BIO_free(b);
    return rc;
}

int moat_pki_cert_to_der(X509 *cert, unsigned char **out, size_t *out_len, moat_err_t *err)
{
    unsigned char *der = NULL;
    return moat__pki_der_take(&der, i2d_X509(cert, &der), "a certificate as DER", out, out_len, err);
}

static unsigned map_eku(uint32_t xku)
{
    unsigned r = 0;
    if (xku & XKU_SSL_SERVER)
        r |= MOAT_PKI_EKU_SERVER_AUTH;
    if (xku & XKU_SSL_CLIENT)
        r |= MOAT_PKI_EKU_CLIENT_AUTH;
    if (xku & XKU_CODE_SIGN)
        r |= MOAT_PKI_EKU_CODE_SIGNING;
    if (xku & XKU_SMIME)
        r |= MOAT_PKI_EKU_EMAIL;
    if (xku & XKU_OCSP_SIGN)
        r |= MOAT_PKI_EKU_OCSP_SIGNING;
    if (xku & XKU_ANYEKU)
        r |= MOAT_PKI_EKU_ANY;
    return r;
}

int moat_pki_cert_info(const X509 *cert, moat_pki_cert_info_t *out, moat_err_t *err)
{
    /* The extension cache functions take a non-const X509 (they fill the cache once, under a lock). */
    X509 *x = (X509 *)cert;
    GENERAL_NAMES *names;
    uint32_t flags;
    EVP_PKEY *key;
    int rc, nid;

    memset(out, 0, sizeof(*out));
    if (cert == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "no certificate to describe");
    flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_INVALID) {
        ERR_clear_error();
        return moat_err_set(err, MOAT_E_INVAL, "the certificate has malformed or duplicate extensions");
    }
    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    rc = moat_pki_sans_format(names, &out->sans, err);
    GENERAL_NAMES_free(names);
    if (rc < 0)
        return rc;
    out->subject = moat_x509_name_dup(X509_get_subject_name(cert));
    out->cn = moat__pki_name_cn(X509_get_subject_name(cert));
    out->issuer = moat_x509_name_dup(X509_get_issuer_name(cert));
    out->issuer_cn = moat__pki_name_cn(X509_get_issuer_name(cert));
    out->serial = moat__pki_serial_hex(X509_get0_serialNumber(cert));
    if (out->subject == NULL || out->issuer == NULL || out->serial == NULL) {
        moat_pki_cert_info_dispose(out);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory describing a certificate");
    }
    if ((rc = moat_pki_asn1_time_to_time(X509_get0_notBefore(cert), &out->not_before, err)) < 0 ||
        (rc = moat_pki_asn1_time_to_time(X509_get0_notAfter(cert), &out->not_after, err)) < 0 ||
        (rc = moat_pki_cert_fingerprint(cert, out->fingerprint, err)) < 0) {
        moat_pki_cert_info_dispose(out);
        return rc;
    }
    key = X509_get0_pubkey(cert);
    if (key == NULL) {
        moat_pki_cert_info_dispose(out);
        return moat_err_ossl(err, MOAT_E_INVAL, "the certificate's public key cannot be read");
    }
    if ((rc = moat_pki_pubkey_fingerprint(key, out->key_fingerprint, err)) < 0) {
        moat_pki_cert_info_dispose(out);
        return rc;
    }
    moat_pki_key_describe(key, out->key_alg, sizeof(out->key_alg));
    out->key_bits = moat_pki_key_bits(key);
    out->is_ca = (flags & EXFLAG_CA) != 0;
    out->path_len = (int)X509_get_pathlen(x);
    out->has_key_usage = (flags & EXFLAG_KUSAGE) != 0;
    out->key_usage = out->has_key_usage ? (unsigned)(X509_get_key_usage(x) & 0xffff) : 0;
    out->has_ext_key_usage = (flags & EXFLAG_XKUSAGE) != 0;
    out->ext_key_usage = out->has_ext_key_usage ? map_eku(X509_get_extended_key_usage(x)) : 0;
    out->self_signed = X509_self_signed(x, 1) == 1;
    nid = X509_get_signature_nid(cert);
    snprintf(out->sig_alg, sizeof(out->sig_alg), "%s", nid != NID_undef ? OBJ_nid2ln(nid) : "unknown");
    ERR_clear_error();
    return 0;
}

void moat_pki_cert_info_dispose(moat_pki_cert_info_t *info)
{
    if (info == NULL)
        return;
    moat_free(&info->subject);
    moat_free(&info->cn);
    moat_free(&info->sans);
    moat_free(&info->issuer);
    moat_free(&info->issuer_cn);
    moat_free(&info->serial);
}

static bool eku_allows(const X509 *cert, uint32_t want)
{
    X509 *x = (X509 *)cert;
    if (!(X509_get_extension_flags(x) & EXFLAG_XKUSAGE))
        return true;
    return (X509_get_extended_key_usage(x) & (want | XKU_ANYEKU)) != 0;
}

bool moat_pki_cert_is_server(const X509 *cert)
{
    return cert != NULL && eku_allows(cert, XKU_SSL_SERVER);
}

bool moat_pki_cert_is_client(const X509 *cert)
{
    return cert != NULL && eku_allows(cert, XKU_SSL_CLIENT);
}

/* A short, readable name for messages: the CN if there is one, else the whole subject. */
static void cert_label(const X509 *cert, char *buf, size_t size)
{
    char *s = moat__pki_name_cn(X509_get_subject_name(cert));
    if (s == NULL)
        s = moat_x509_name_dup(X509_get_subject_name(cert));
    snprintf(buf, size, "%s", s ? s : "?");
    moat_free(&s);
}

int moat_pki_cert_check_time(const X509 *cert, time_t now, moat_err_t *err)
{
    time_t nb, na;
    char when[MOAT_PKI_TIME_SIZE], label[128];
    int rc;
    if ((rc = moat_pki_asn1_time_to_time(X509_get0_notBefore(cert), &nb, err)) < 0 ||
        (rc = moat_pki_asn1_time_to_time(X509_get0_notAfter(cert), &na, err)) < 0)
        return rc;
    cert_label(cert, label, sizeof(label));
    if (now > na) {
        moat_err_set(err, MOAT_E_PKI, "certificate \"%s\" expired on %s", label,
                     moat_pki_time_format(na, when));
        return moat_err_hint(err, "get a renewed certificate from its issuer");
    }
    if (now < nb) {
        moat_err_set(err, MOAT_E_PKI, "certificate \"%s\" is not valid before %s", label,
                     moat_pki_time_format(nb, when));
        return moat_err_hint(err, "check this machine's clock, or wait until the certificate becomes valid");
    }
    return 0;
}

/* True when <cert> names itself as issuer and its signature verifies with its own key. */
static bool self_signed(X509 *cert)
{
    bool r = X509_self_signed(cert, 1) == 1;
    ERR_clear_error();
    return r;
}

static bool in_stack(STACK_OF(X509) * sk, X509 *cert)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), cert) == 0)
            return true;
    return false;
}

int moat_pki_chain_build(X509 *leaf, STACK_OF(X509) * pile, STACK_OF(X509) * *chain, char **missing_issuer,
                         moat_err_t *err)
{
    STACK_OF(X509) *unplaced = sk_X509_new_null(), *out = sk_X509_new_null();
    X509 *cur = leaf;
    char *missing = NULL;
    char a[128], b[128];
    int rc = 0;

    if (unplaced == NULL || out == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory ordering the chain");
        goto fail;
    }
    if (leaf == NULL) {
        rc = moat_err_set(err, MOAT_E_INVAL, "no certificate to build a chain for");
        goto fail;
    }
    /* Candidates: the pile without the leaf and without duplicates (bundles often repeat the leaf). */
    for (int i = 0; pile != NULL && i < sk_X509_num(pile); i++) {
        X509 *c = sk_X509_value(pile, i);
        if (X509_cmp(c, leaf) == 0 || in_stack(unplaced, c))
            continue;
        if (sk_X509_push(unplaced, c) <= 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory ordering the chain");
            goto fail;
        }
    }
    /* Each round moves one certificate from unplaced to out, so the loop is bounded by the pile size. */
    while (!self_signed(cur)) {
        int found = -1, bad_sig = -1;
        for (int i = 0; i < sk_X509_num(unplaced) && found < 0; i++) {
            X509 *c = sk_X509_value(unplaced, i);
            bool named = X509_NAME_cmp(X509_get_subject_name(c), X509_get_issuer_name(cur)) == 0;
            if (X509_check_issued(c, cur) == X509_V_OK && X509_verify(cur, X509_get0_pubkey(c)) == 1)
                found = i;
            else if (named)
                bad_sig = i; /* the right name, but another key (key identifiers or signature differ) */
        }
        ERR_clear_error();
        if (found < 0 && bad_sig >= 0) {
            cert_label(cur, a, sizeof(a));
            cert_label(sk_X509_value(unplaced, bad_sig), b, sizeof(b));
            rc = moat_err_set(err, MOAT_E_PKI,
                              "the signature of \"%s\" does not verify with the key of \"%s\" from the chain "
                              "(same name, different key)",
                              a, b);
            moat_err_hint(err, "the chain file holds a different certificate of the same name; get the "
                               "issuer's current chain");
            goto fail;
        }
        if (found < 0) {
            if ((missing = moat_x509_name_dup(X509_get_issuer_name(cur))) == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory ordering the chain");
                goto fail;
            }
            break;
        }
        cur = sk_X509_delete(unplaced, found);
        if (sk_X509_push(out, cur) <= 0 || !X509_up_ref(cur)) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory ordering the chain");
            goto fail;
        }
    }
    if (sk_X509_num(unplaced) > 0) {
        cert_label(sk_X509_value(unplaced, 0), b, sizeof(b));
        if (missing != NULL) {
            cert_label(cur, a, sizeof(a));
            rc =
                moat_err_set(err, MOAT_E_PKI,
                             "missing link in the chain: no certificate for \"%.100s\", the issuer of \"%s\" "
                             "(the bundle's \"%s\" does not connect)",
                             missing, a, b);
            moat_err_hint(err, "add the missing intermediate certificate to the chain file");
        } else {
            cert_label(leaf, a, sizeof(a));
            rc = moat_err_set(err, MOAT_E_PKI, "certificate \"%s\" is not part of the chain of \"%s\"", b, a);
            moat_err_hint(err, "remove unrelated certificates from the chain file");
        }
        goto fail;
    }
    sk_X509_free(unplaced);
    *chain = out;
    if (missing_issuer != NULL)
        *missing_issuer = missing;
    else
        moat_free(&missing);
    return 0;
fail:
    sk_X509_free(unplaced);
    sk_X509_pop_free(out, X509_free);
    moat_free(&missing);
    return rc;
}

int moat_pki_find_cert_for_key(const EVP_PKEY *key, STACK_OF(X509) * certs)
{
    int best = -1;
    for (int i = 0; key != NULL && i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (!moat_pki_pubkey_eq(key, X509_get0_pubkey(c)))
            continue;
        if (best < 0 ||
            ASN1_TIME_compare(X509_get0_notAfter(c), X509_get0_notAfter(sk_X509_value(certs, best))) > 0)
            best = i;
    }
    ERR_clear_error();
    return best;
}
