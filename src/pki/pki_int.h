/*
 * pki: helpers shared by the pki/ sources only.
 */
#ifndef MOAT_PKI_INT_H
#define MOAT_PKI_INT_H

#include "pki/pki.h"

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/pkcs7.h>

/* Copies the contents of memory BIO <b> into a new moat_malloc() buffer; <nul> adds a terminating NUL
 * (not counted in *len). <secret> cleanses the BIO's copy as well. */
int moat__pki_bio_take(BIO *b, bool nul, unsigned char **out, size_t *len, moat_err_t *err);
/* Takes the <n> bytes of DER that an i2d_...() call allocated at *<der> (n <= 0: that encoding failed) into
 * a new moat_malloc() buffer, and frees (cleanses) OpenSSL's: return moat__pki_der_take(&der,
 * i2d_X509(x, &der), ...). Errors say "encoding <what>". */
int moat__pki_der_take(unsigned char **der, int n, const char *what, unsigned char **out, size_t *out_len,
                       moat_err_t *err);
/* The whole of <der> decoded as <it> (a new object to free with ASN1_item_free(.., it)), or NULL with <err>
 * saying "not <what>" or "<what> followed by N stray bytes": DER with anything after it is refused. */
void *moat__pki_d2i_whole(const ASN1_ITEM *it, const unsigned char *der, size_t len, const char *what,
                          moat_err_t *err);
/* <der> as one PEM block of type <label> (PEM_STRING_X509_REQ...), NUL-terminated, in a new moat_malloc()
 * buffer: what PEM_write_bio_<type>() writes. Errors say "encoding <what>". */
int moat__pki_pem_of_der(const char *label, const unsigned char *der, size_t len, const char *what,
                         char **out, size_t *out_len, moat_err_t *err);
/* First commonName of <name> as UTF-8, NULL when absent or unreadable. */
char *moat__pki_name_cn(const X509_NAME *name);
/* The digest name to sign with for <key>: "SHA256", or NULL for keys that sign without a digest
 * (ed25519, ed448). */
const char *moat__pki_sign_digest(const EVP_PKEY *key);
/* A new 159-bit random positive serial. */
ASN1_INTEGER *moat__pki_random_serial(moat_err_t *err);
/* Hex of an ASN1_INTEGER as in moat_pki_cert_info_t.serial; NULL on allocation failure. */
char *moat__pki_serial_hex(const ASN1_INTEGER *serial);
/* Parses such hex back; NULL with err set. */
ASN1_INTEGER *moat__pki_serial_from_hex(const char *hex, moat_err_t *err);
/* Sets notBefore/notAfter of <cert> from time_t values. */
int moat__pki_set_validity(X509 *cert, time_t not_before, time_t not_after, moat_err_t *err);
/* Adds an extension given in openssl.cnf text (e.g. "critical,CA:TRUE") with <issuer>/<subject> as the
 * context (for SKI/AKI). */
int moat__pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value, moat_err_t *err);
/* Signs <cert> with <key>, choosing the digest with moat__pki_sign_digest(). */
int moat__pki_sign_cert(X509 *cert, EVP_PKEY *key, moat_err_t *err);
/* Checks that <key> holds the private half of <cert>'s public key. */
int moat__pki_check_ca_key(X509 *ca_cert, EVP_PKEY *ca_key, moat_err_t *err);
/* Adds CDP and AIA extensions from <urls> (NULL or empty strings: nothing). */
int moat__pki_add_urls(X509 *cert, const moat_pki_urls_t *urls, moat_err_t *err);
/* Builds an X509_NAME from subject fields (country first, CN, then e-mail). */
int moat__pki_subject_name(const moat_pki_subject_t *s, X509_NAME **out, moat_err_t *err);
/* True when <data> looks like PEM text (a BEGIN line somewhere in it). */
bool moat__pki_is_pem(const unsigned char *data, size_t len);
/* The certificates of a PKCS#7 bundle (.p7b/.p7c: signedData, or signedAndEnveloped), borrowed from
 * <p7>; NULL when <p7> is another kind of PKCS#7 object. */
STACK_OF(X509) * moat__pki_pkcs7_certs(PKCS7 *p7);
/* The extensions a request asks for, or NULL when there are none (or they cannot be decoded). */
STACK_OF(X509_EXTENSION) * moat__pki_csr_exts(X509_REQ *csr);

#endif
