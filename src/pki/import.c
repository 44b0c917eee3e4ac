/*
 * pki: import of keys and certificates from PEM, DER, PKCS#8 (plain and encrypted), PKCS#7 and PKCS#12,
 * and PKCS#12 export.
 *
 * Every password-based KDF and MAC is inspected before it runs: a hostile file can ask for 2^31
 * iterations, which would pin a core for hours. Decryption runs in a private library context with the
 * default and legacy providers, so that old .pfx files (RC2, 3DES) open without changing what the rest
 * of moat sees in the default context.
 */
#include "pki/pki_int.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <pthread.h>
#include <string.h>

/* Nesting of safeContentsBag inside safeContentsBag; real files use none. */
#define MAX_BAG_DEPTH 4
/* Objects in one file; real bundles hold a handful. */
#define MAX_OBJECTS 1000

static OSSL_LIB_CTX *legacy_ctx;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;

static void legacy_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    /* Loading one provider explicitly disables the implicit default one: load both. */
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "default") != NULL &&
        OSSL_PROVIDER_load(ctx, "legacy") != NULL) {
        legacy_ctx = ctx;
    } else {
        /* Without the legacy module, modern files still work in the default context. */
        OSSL_LIB_CTX_free(ctx);
        legacy_ctx = NULL;
    }
    ERR_clear_error();
}

/* The context for decryption: default + legacy, or NULL (the default context) if legacy is missing. */
static OSSL_LIB_CTX *decrypt_ctx(void)
{
    (void)pthread_once(&legacy_once, legacy_init); /* cannot fail once the once-control is static */
    return legacy_ctx;
}

typedef struct {
    moat_pki_import_t *out;
    const char *password; /* NULL when none was given */
    int passlen;
    moat_err_t *err;
    int objects;
} ctx_t;

static int add_key(ctx_t *c, EVP_PKEY *key)
{
    EVP_PKEY **keys;
    if (++c->objects > MAX_OBJECTS) {
        EVP_PKEY_free(key);
        return moat_err_set(c->err, MOAT_E_LIMIT, "the file holds more than %d objects", MAX_OBJECTS);
    }
    keys = moat_realloc(c->out->keys, (c->out->nkeys + 1) * sizeof(*keys));
    if (keys == NULL) {
        EVP_PKEY_free(key);
        return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory importing keys");
    }
    keys[c->out->nkeys++] = key;
    c->out->keys = keys;
    return 0;
}

static int add_cert(ctx_t *c, X509 *cert)
{
    if (++c->objects > MAX_OBJECTS) {
        X509_free(cert);
        return moat_err_set(c->err, MOAT_E_LIMIT, "the file holds more than %d objects", MAX_OBJECTS);
    }
    if (sk_X509_push(c->out->certs, cert) <= 0) {
        X509_free(cert);
        return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory importing certificates");
    }
    return 0;
}

static int check_iter(const ASN1_INTEGER *iter, const char *what, moat_err_t *err)
{
    int64_t n = 0;
    if (iter == NULL || ASN1_INTEGER_get_int64(&n, iter) != 1 || n < 1) {
        ERR_clear_error();
        return moat_err_set(err, MOAT_E_INVAL, "the %s has an invalid iteration count", what);
    }
    if (n > MOAT_PKI_MAX_ITERATIONS) {
        moat_err_set(err, MOAT_E_LIMIT, "the %s asks for %lld iterations, more than the %ld moat accepts",
                     what, (long long)n, MOAT_PKI_MAX_ITERATIONS);
        return moat_err_hint(err,
                             "re-export the file with a normal iteration count (a few hundred thousand)");
    }
    return 0;
}

/* Checks the iteration count of a password-based encryption algorithm (PBES1, PKCS#12 PBE or PBES2). */
static int check_pbe(const X509_ALGOR *alg, const char *what, moat_err_t *err)
{
    const ASN1_OBJECT *oid;
    const void *pval;
    int ptype, nid, rc;
    X509_ALGOR_get0(&oid, &ptype, &pval, alg);
    nid = OBJ_obj2nid(oid);
    if (ptype != V_ASN1_SEQUENCE)
        return moat_err_set(err, MOAT_E_INVAL, "the %s has malformed encryption parameters", what);
    if (nid == NID_pbes2) {
        PBE2PARAM *pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
        PBKDF2PARAM *kdf;
        if (pbe2 == NULL || pbe2->keyfunc == NULL) {
            PBE2PARAM_free(pbe2);
            ERR_clear_error();
            return moat_err_set(err, MOAT_E_INVAL, "the %s has malformed PBES2 parameters", what);
        }
        if (OBJ_obj2nid(pbe2->keyfunc->algorithm) != NID_id_pbkdf2) {
            char name[64];
            OBJ_obj2txt(name, sizeof(name), pbe2->keyfunc->algorithm, 0);
            PBE2PARAM_free(pbe2);
            moat_err_set(err, MOAT_E_INVAL, "the %s uses key derivation %s, which moat does not support",
                         what, name);
            return moat_err_hint(err, "re-export it with PBKDF2 (the default of current tools)");
        }
        kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter);
        PBE2PARAM_free(pbe2);
        if (kdf == NULL) {
            ERR_clear_error();
            return moat_err_set(err, MOAT_E_INVAL, "the %s has malformed PBKDF2 parameters", what);
        }
        rc = check_iter(kdf->iter, what, err);
        PBKDF2PARAM_free(kdf);
        return rc;
    } else {
        /* PKCS#5 v1.5 and PKCS#12 PBE algorithms share PBEParameter { salt, iterations }. */
        PBEPARAM *pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);
        if (pbe == NULL) {
            ERR_clear_error();
            return moat_err_set(err, MOAT_E_INVAL, "the %s has malformed encryption parameters", what);
        }
        rc = check_iter(pbe->iter, what, err);
        PBEPARAM_free(pbe);
        return rc;
    }
}

static int need_password(ctx_t *c, const char *what)
{
    moat_err_set(c->err, MOAT_E_PASSWORD, "the %s is encrypted and no password was given", what);
    return moat_err_hint(c->err, "give its password with --password-file FILE");
}

static int wrong_password(ctx_t *c, const char *what)
{
    ERR_clear_error();
    moat_err_set(c->err, MOAT_E_PASSWORD, "wrong password for the %s (or the file is damaged)", what);
    return moat_err_hint(c->err, "check the password file: its first line is the password");
}

/* Decrypts an EncryptedPrivateKeyInfo and adds the key. <may_try>: a password (possibly the empty one
 * of a PKCS#12 file) is worth trying; otherwise the key is reported as needing one. */
static int add_encrypted_p8(ctx_t *c, const X509_SIG *sig, const char *what, bool may_try, const char *pass,
                            int passlen)
{
    const X509_ALGOR *alg;
    const ASN1_OCTET_STRING *data;
    PKCS8_PRIV_KEY_INFO *p8;
    EVP_PKEY *key;
    int rc;
    X509_SIG_get0(sig, &alg, &data);
    if ((rc = check_pbe(alg, what, c->err)) < 0)
        return rc;
    if (!may_try)
        return need_password(c, what);
    p8 = PKCS8_decrypt_ex(sig, pass, passlen, decrypt_ctx(), NULL);
    if (p8 == NULL)
        return c->password == NULL ? need_password(c, what) : wrong_password(c, what);
    key = EVP_PKCS82PKEY_ex(p8, decrypt_ctx(), NULL);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (key == NULL)
        return moat_err_ossl(c->err, MOAT_E_INVAL, "the decrypted %s is not a usable key", what);
    c->out->used_password = c->password != NULL;
    return add_key(c, key);
}

static int add_p8(ctx_t *c, const PKCS8_PRIV_KEY_INFO *p8, const char *what)
{
    EVP_PKEY *key = EVP_PKCS82PKEY_ex(p8, decrypt_ctx(), NULL);
    if (key == NULL) {
        moat_err_ossl(c->err, MOAT_E_INVAL, "the %s holds a key moat cannot read", what);
        return moat_err_hint(c->err, "keys must be RSA, EC (P-256, P-384, ...) or Ed25519");
    }
    return add_key(c, key);
}

static int add_pkcs7_certs(ctx_t *c, PKCS7 *p7, const char *what)
{
    STACK_OF(X509) *certs = moat__pki_pkcs7_certs(p7);
    int rc;
    if (certs == NULL && !PKCS7_type_is_signed(p7) && !PKCS7_type_is_signedAndEnveloped(p7))
        return moat_err_set(c->err, MOAT_E_INVAL, "the %s is not a certificate bundle (PKCS#7 signedData)",
                            what);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (!X509_up_ref(x))
            return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory importing certificates");
        if ((rc = add_cert(c, x)) < 0)
            return rc;
    }
    return 0;
}

/* ---- PKCS#12 ---- */

static int p12_bags(ctx_t *c, const STACK_OF(PKCS12_SAFEBAG) * bags, const char *pass, int passlen,
                    int depth);

static void take_friendly_name(ctx_t *c, const PKCS12_SAFEBAG *bag, bool is_key)
{
    char *name;
    /* The key's name wins over a certificate's; the first of each kind is kept. */
    if (c->out->friendly_name != NULL && !is_key)
        return;
    if ((name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *)bag)) == NULL)
        return;
    if (c->out->friendly_name == NULL || (is_key && c->out->nkeys == 1)) {
        char *copy = moat_strdup(name);
        if (copy != NULL) {
            moat_free(&c->out->friendly_name);
            c->out->friendly_name = copy;
        }
    }
    OPENSSL_free(name);
}

static int p12_bag(ctx_t *c, const PKCS12_SAFEBAG *bag, const char *pass, int passlen, int depth)
{
    int rc = 0;
    switch (PKCS12_SAFEBAG_get_nid(bag)) {
    case NID_keyBag:
        if ((rc = add_p8(c, PKCS12_SAFEBAG_get0_p8inf(bag), "PKCS#12 key")) == 0)
            take_friendly_name(c, bag, true);
        return rc;
    case NID_pkcs8ShroudedKeyBag:
        if ((rc = add_encrypted_p8(c, PKCS12_SAFEBAG_get0_pkcs8(bag), "PKCS#12 key", true, pass, passlen)) ==
            0)
            take_friendly_name(c, bag, true);
        return rc;
    case NID_certBag: {
        X509 *x;
        if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
            return 0; /* SDSI certificates: nothing TLS can use */
        if ((x = PKCS12_SAFEBAG_get1_cert(bag)) == NULL)
            return moat_err_ossl(c->err, MOAT_E_INVAL, "a certificate in the PKCS#12 file is damaged");
        if ((rc = add_cert(c, x)) == 0)
            take_friendly_name(c, bag, false);
        return rc;
    }
    case NID_safeContentsBag:
        if (depth >= MAX_BAG_DEPTH)
            return moat_err_set(c->err, MOAT_E_LIMIT, "the PKCS#12 file nests its contents too deeply");
        return p12_bags(c, PKCS12_SAFEBAG_get0_safes(bag), pass, passlen, depth + 1);
    default:
        return 0; /* CRL and secret bags carry nothing to import */
    }
}

static int p12_bags(ctx_t *c, const STACK_OF(PKCS12_SAFEBAG) * bags, const char *pass, int passlen, int depth)
{
    int rc;
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++)
        if ((rc = p12_bag(c, sk_PKCS12_SAFEBAG_value(bags, i), pass, passlen, depth)) < 0)
            return rc;
    return 0;
}

static int import_p12(ctx_t *c, PKCS12 *p12)
{
    const char *pass = c->password;
    int passlen = c->passlen, rc = 0;
    STACK_OF(PKCS7) * safes;

    c->out->format = "PKCS#12";
    if (PKCS12_mac_present(p12)) {
        const ASN1_INTEGER *iter = NULL;
        const X509_ALGOR *macalg = NULL;
        PKCS12_get0_mac(NULL, &macalg, NULL, &iter, p12);
        /* An absent count means 1 (RFC 7292 MacData default). */
        if (iter != NULL && (rc = check_iter(iter, "PKCS#12 integrity check (MAC)", c->err)) < 0)
            return rc;
        if (pass == NULL) {
            /* Files "without a password" use the empty one, encoded as absent or as an empty string. */
            if (PKCS12_verify_mac(p12, NULL, 0))
                pass = NULL;
            else if (PKCS12_verify_mac(p12, "", 0))
                pass = "";
            else
                return need_password(c, "PKCS#12 file");
        } else if (!PKCS12_verify_mac(p12, pass, passlen)) {
            /* The empty password has two encodings; some tools wrote the other one. */
            if (!(passlen == 0 && PKCS12_verify_mac(p12, NULL, 0)))
                return wrong_password(c, "PKCS#12 file");
            pass = NULL;
        }
        c->out->used_password = c->password != NULL;
        ERR_clear_error();
    }
    if ((safes = PKCS12_unpack_authsafes(p12)) == NULL)
        return moat_err_ossl(c->err, MOAT_E_INVAL, "the PKCS#12 file's contents are damaged");
    for (int i = 0; rc == 0 && i < sk_PKCS7_num(safes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(safes, i);
        STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
        int nid = OBJ_obj2nid(p7->type);
        if (nid == NID_pkcs7_data) {
            bags = PKCS12_unpack_p7data(p7);
        } else if (nid == NID_pkcs7_encrypted) {
            PKCS7_ENC_CONTENT *enc = (p7->d.encrypted != NULL) ? p7->d.encrypted->enc_data : NULL;
            if (enc == NULL || enc->algorithm == NULL || enc->enc_data == NULL) {
                rc = moat_err_set(c->err, MOAT_E_INVAL, "the PKCS#12 file's encrypted contents are damaged");
                break;
            }
            if ((rc = check_pbe(enc->algorithm, "PKCS#12 certificate bag", c->err)) < 0)
                break;
            bags = PKCS12_item_decrypt_d2i_ex(enc->algorithm, ASN1_ITEM_rptr(PKCS12_SAFEBAGS), pass, passlen,
                                              enc->enc_data, 1, decrypt_ctx(), NULL);
            if (bags == NULL) {
                unsigned long e = ERR_peek_last_error();
                if (ERR_GET_LIB(e) == ERR_LIB_EVP && ERR_GET_REASON(e) == EVP_R_UNSUPPORTED_ALGORITHM) {
                    rc = moat_err_ossl(
                        c->err, MOAT_E_INVAL,
                        "the PKCS#12 file uses an encryption algorithm this machine cannot read");
                    moat_err_hint(c->err,
                                  "install the OpenSSL legacy provider, or re-export the file with AES");
                } else {
                    rc = c->password == NULL ? need_password(c, "PKCS#12 file")
                                             : wrong_password(c, "PKCS#12 file");
                }
                break;
            }
            c->out->used_password = c->password != NULL;
        } else {
            continue; /* enveloped (public-key) privacy mode: nothing a password opens */
        }
        if (bags == NULL) {
            rc = moat_err_ossl(c->err, MOAT_E_INVAL, "the PKCS#12 file's contents are damaged");
            break;
        }
        rc = p12_bags(c, bags, pass, passlen, 0);
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
    sk_PKCS7_pop_free(safes, PKCS7_free);
    return rc;
}

/* ---- PEM ---- */

static int pem_cb(char *buf, int size, int rwflag, void *u)
{
    ctx_t *c = u;
    (void)rwflag;
    if (c->password == NULL || c->passlen > size)
        return -1;
    memcpy(buf, c->password, (size_t)c->passlen);
    return c->passlen;
}

/* A traditional ("RSA PRIVATE KEY", "EC PRIVATE KEY") key, possibly with PEM encryption headers. */
static int pem_traditional_key(ctx_t *c, const char *name, const char *header, const unsigned char *data,
                               long len)
{
    bool encrypted = header != NULL && strstr(header, "ENCRYPTED") != NULL;
    BIO *b = BIO_new(BIO_s_secmem());
    EVP_PKEY *key = NULL;
    if (b == NULL)
        return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory importing a key");
    if (encrypted && c->password == NULL) {
        BIO_free(b);
        return need_password(c, "private key");
    }
    /* Re-wrapping the block lets the decoders handle every traditional form and its encryption. */
    if (PEM_write_bio(b, name, header, data, len) > 0)
        key = PEM_read_bio_PrivateKey_ex(b, NULL, pem_cb, c, decrypt_ctx(), NULL);
    BIO_free(b);
    if (key == NULL) {
        if (encrypted)
            return wrong_password(c, "private key");
        moat_err_ossl(c->err, MOAT_E_INVAL, "the %s block is damaged or of an unsupported kind", name);
        return moat_err_hint(c->err, "check that the file was copied completely");
    }
    if (encrypted)
        c->out->used_password = true;
    return add_key(c, key);
}

static int pem_block(ctx_t *c, const char *name, const char *header, const unsigned char *data, long len)
{
    const unsigned char *p = data;
    if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0 ||
        strcmp(name, "TRUSTED CERTIFICATE") == 0) {
        X509 *x =
            strcmp(name, "TRUSTED CERTIFICATE") == 0 ? d2i_X509_AUX(NULL, &p, len) : d2i_X509(NULL, &p, len);
        if (x == NULL) {
            moat_err_ossl(c->err, MOAT_E_INVAL, "certificate %d in the PEM text is damaged",
                          sk_X509_num(c->out->certs) + 1);
            return moat_err_hint(c->err, "check that the file was copied completely");
        }
        return add_cert(c, x);
    }
    if (strcmp(name, "PRIVATE KEY") == 0) {
        PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);
        int rc;
        if (p8 == NULL)
            return moat_err_ossl(c->err, MOAT_E_INVAL, "the PRIVATE KEY block is damaged");
        rc = add_p8(c, p8, "PRIVATE KEY block");
        PKCS8_PRIV_KEY_INFO_free(p8);
        return rc;
    }
    if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0) {
        X509_SIG *sig = d2i_X509_SIG(NULL, &p, len);
        int rc;
        if (sig == NULL)
            return moat_err_ossl(c->err, MOAT_E_INVAL, "the ENCRYPTED PRIVATE KEY block is damaged");
        rc = add_encrypted_p8(c, sig, "private key", c->password != NULL, c->password, c->passlen);
        X509_SIG_free(sig);
        return rc;
    }
    if (strcmp(name, "RSA PRIVATE KEY") == 0 || strcmp(name, "EC PRIVATE KEY") == 0)
        return pem_traditional_key(c, name, header, data, len);
    if (strcmp(name, "PKCS7") == 0 || strcmp(name, "CERTIFICATE CHAIN") == 0) {
        PKCS7 *p7 = d2i_PKCS7(NULL, &p, len);
        int rc;
        if (p7 == NULL)
            return moat_err_ossl(c->err, MOAT_E_INVAL, "the PKCS7 block is damaged");
        rc = add_pkcs7_certs(c, p7, "PKCS7 block");
        PKCS7_free(p7);
        return rc;
    }
    /* openssl ecparam -genkey writes the curve before the key: it adds nothing. */
    if (strcmp(name, "EC PARAMETERS") == 0)
        return 0;
    moat_err_set(c->err, MOAT_E_INVAL,
                 "the PEM text holds a \"%.60s\" block, which is not a key or certificate", name);
    if (strstr(name, "REQUEST") != NULL)
        return moat_err_hint(c->err, "a request is signed by a CA (moat ca sign), not imported");
    return moat_err_hint(c->err, "keep only certificates and private keys in the file");
}

static int import_pem(ctx_t *c, const unsigned char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    int rc = 0;
    if (b == NULL)
        return moat_err_set(c->err, MOAT_E_NOMEM, "out of memory importing");
    c->out->format = "PEM";
    ERR_clear_error();
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *body = NULL;
        long blen = 0;
        if (PEM_read_bio(b, &name, &header, &body, &blen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (!(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
                moat_err_ossl(c->err, MOAT_E_INVAL, "the PEM text is damaged after %d object(s)", c->objects);
                rc = moat_err_hint(c->err,
                                   "check that the file was copied completely (BEGIN/END lines, base64)");
            }
            ERR_clear_error();
            break;
        }
        rc = pem_block(c, name, header, body, blen);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_clear_free(body, (size_t)blen);
        if (rc < 0)
            break;
    }
    BIO_free(b);
    return rc;
}

/* ---- DER ---- */

static int import_der(ctx_t *c, const unsigned char *data, size_t len)
{
    const unsigned char *p;
    long l = (long)len;
    int rc;

    p = data;
    {
        PKCS12 *p12 = d2i_PKCS12(NULL, &p, l);
        if (p12 != NULL && p == data + len) {
            rc = import_p12(c, p12);
            PKCS12_free(p12);
            return rc;
        }
        PKCS12_free(p12);
    }
    p = data;
    {
        X509 *x = d2i_X509(NULL, &p, l);
        if (x != NULL && p == data + len) {
            c->out->format = "DER certificate";
            return add_cert(c, x);
        }
        X509_free(x);
    }
    p = data;
    {
        X509_SIG *sig = d2i_X509_SIG(NULL, &p, l);
        if (sig != NULL && p == data + len) {
            c->out->format = "encrypted PKCS#8";
            rc = add_encrypted_p8(c, sig, "private key", c->password != NULL, c->password, c->passlen);
            X509_SIG_free(sig);
            return rc;
        }
        X509_SIG_free(sig);
    }
    p = data;
    {
        PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, l);
        if (p8 != NULL && p == data + len) {
            c->out->format = "PKCS#8";
            rc = add_p8(c, p8, "PKCS#8 key");
            PKCS8_PRIV_KEY_INFO_free(p8);
            return rc;
        }
        PKCS8_PRIV_KEY_INFO_free(p8);
    }
    p = data;
    {
        PKCS7 *p7 = d2i_PKCS7(NULL, &p, l);
        if (p7 != NULL && p == data + len) {
            c->out->format = "PKCS#7";
            rc = add_pkcs7_certs(c, p7, "PKCS#7 file");
            PKCS7_free(p7);
            return rc;
        }
        PKCS7_free(p7);
    }
    p = data;
    {
        EVP_PKEY *key = d2i_AutoPrivateKey_ex(NULL, &p, l, decrypt_ctx(), NULL);
        if (key != NULL && p == data + len) {
            c->out->format = "DER private key";
            return add_key(c, key);
        }
        EVP_PKEY_free(key);
    }
    ERR_clear_error();
    {
        /* Say "truncated" when the outer DER header announces more bytes than the file has. */
        const unsigned char *q = data;
        long olen = 0;
        int tag = 0, xclass = 0;
        if (data[0] == 0x30 && (ASN1_get_object(&q, &olen, &tag, &xclass, l) & 0x80) != 0 &&
            olen > l - (long)(q - data)) {
            ERR_clear_error();
            moat_err_set(c->err, MOAT_E_INVAL,
                         "the file is truncated: it announces %ld bytes of content, %ld are present", olen,
                         l - (long)(q - data));
            return moat_err_hint(c->err, "copy the file again, completely (in binary mode)");
        }
        ERR_clear_error();
    }
    moat_err_set(c->err, MOAT_E_INVAL, "not a key or certificate moat can read");
    return moat_err_hint(c->err, "give PEM, DER, PKCS#8 (plain or encrypted) or PKCS#12 (.pfx/.p12)");
}

int moat_pki_import(const unsigned char *data, size_t len, const char *password, bool have_password,
                    moat_pki_import_t *out, moat_err_t *err)
{
    ctx_t c;
    int rc;

    memset(out, 0, sizeof(*out));
    if (data == NULL || len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "the file is empty");
    if (len > (size_t)MOAT_PKI_MAX_IMPORT_BYTES)
        return moat_err_set(err, MOAT_E_LIMIT,
                            "the file is larger than %ld MiB, too big for a key or certificate",
                            MOAT_PKI_MAX_IMPORT_BYTES / (1024 * 1024));
    if (have_password && password == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "a password was announced but not given");
    if (have_password && strlen(password) > 1024)
        return moat_err_set(err, MOAT_E_PASSWORD, "the password is longer than 1024 characters");
    memset(&c, 0, sizeof(c));
    c.out = out;
    c.password = have_password ? password : NULL;
    c.passlen = have_password ? (int)strlen(password) : 0;
    c.err = err;
    if ((out->certs = sk_X509_new_null()) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory importing");
    ERR_clear_error();
    rc = moat__pki_is_pem(data, len) ? import_pem(&c, data, len) : import_der(&c, data, len);
    if (rc == 0 && out->nkeys == 0 && sk_X509_num(out->certs) == 0) {
        rc = moat_err_set(err, MOAT_E_INVAL, "the file holds no private key and no certificate");
        moat_err_hint(err, "give PEM, DER, PKCS#8 (plain or encrypted) or PKCS#12 (.pfx/.p12)");
    }
    ERR_clear_error();
    if (rc < 0) {
        moat_pki_import_dispose(out);
        return rc;
    }
    return 0;
}

void moat_pki_import_dispose(moat_pki_import_t *imp)
{
    if (imp == NULL)
        return;
    for (size_t i = 0; i < imp->nkeys; i++)
        EVP_PKEY_free(imp->keys[i]);
    moat_free(&imp->keys);
    imp->nkeys = 0;
    sk_X509_pop_free(imp->certs, X509_free);
    imp->certs = NULL;
    moat_free(&imp->friendly_name);
}

/* ---- export ---- */

/* PBKDF2 and MAC iterations for exports: well under the import cap, costly enough for guessing. */
#define EXPORT_ITER 100000
#define LEGACY_ITER 2048

int moat_pki_pkcs12_export(EVP_PKEY *key, X509 *cert, STACK_OF(X509) * chain, const char *friendly_name,
                           const char *password, bool legacy, unsigned char **out, size_t *out_len,
                           moat_err_t *err)
{
    int nid = legacy ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : NID_aes_256_cbc;
    int iter = legacy ? LEGACY_ITER : EXPORT_ITER;
    PKCS12 *p12;
    BIO *b;
    int rc;

    if (key == NULL || cert == NULL || password == NULL)
        return moat_err_set(err, MOAT_E_INVAL,
                            "exporting PKCS#12 needs a key, its certificate and a password");
    if (!moat_pki_pubkey_eq(key, X509_get0_pubkey(cert))) {
        moat_err_set(err, MOAT_E_PKI, "the certificate does not belong to the key being exported");
        return moat_err_hint(err, "install the key's own certificate first (moat cert install)");
    }
    /* Both legacy and modern keep the MAC out of PKCS12_create so that its digest can be chosen. */
    p12 = PKCS12_create_ex(password, friendly_name, key, cert, chain, nid, nid, iter, -1, 0, NULL, NULL);
    if (p12 == NULL)
        return moat_err_ossl(err, MOAT_E_PKI, "building the PKCS#12 file");
    if (PKCS12_set_mac(p12, password, -1, NULL, 0, iter, legacy ? EVP_sha1() : EVP_sha256()) != 1) {
        PKCS12_free(p12);
        return moat_err_ossl(err, MOAT_E_PKI, "adding the PKCS#12 integrity check");
    }
    if ((b = BIO_new(BIO_s_secmem())) == NULL) {
        PKCS12_free(p12);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building the PKCS#12 file");
    }
    if (i2d_PKCS12_bio(b, p12) != 1)
        rc = moat_err_ossl(err, MOAT_E_PKI, "encoding the PKCS#12 file");
    else
        rc = moat__pki_bio_take(b, false, out, out_len, err);
    BIO_free(b);
    PKCS12_free(p12);
    return rc;
}
