/*
 * pki: keys, certificate requests, certificates, chains, import/export (PEM, DER, PKCS#8, PKCS#12) and
 * the certificate authority's signing, CRL and OCSP primitives.
 *
 * A pure library: OpenSSL objects and byte buffers in, OpenSSL objects and byte buffers out. It knows
 * nothing of the store or the command line.
 *
 * Conventions for the whole header:
 * - Functions return 0 or a negative MOAT_E_* code with <err> filled (what failed, why, and a hint).
 *   Nothing is written to an output parameter on failure.
 * - Byte buffers and strings returned through `unsigned char **out, size_t *out_len` or `char **out` are
 *   allocated with moat_malloc(): release them with moat_free(&p). Buffers holding private key material
 *   (PKCS#8 DER, PKCS#12, key PEM) must be released with moat_free_secret(&p, len).
 * - Returned OpenSSL objects (EVP_PKEY *, X509 *, X509_REQ *, X509_CRL *, STACK_OF(X509) *) are new
 *   references owned by the caller (free with EVP_PKEY_free, X509_free, sk_X509_pop_free(sk, X509_free),
 * ...). Arguments are borrowed: the library never keeps or frees them.
 * - Times are time_t in UTC.
 */
#ifndef MOAT_PKI_H
#define MOAT_PKI_H

#include "core/core.h"

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------------------
 * Algorithms and keys
 */

/* The key algorithms moat creates. Keys imported from elsewhere may be of another kind (rsa-1024,
 * ec-secp256k1, ...): they map to MOAT_PKI_ALG_OTHER and are described by moat_pki_key_describe(). */
typedef enum moat_pki_alg {
    MOAT_PKI_ALG_OTHER = 0,
    MOAT_PKI_ALG_EC_P256,  /* "ec-p256", the default */
    MOAT_PKI_ALG_EC_P384,  /* "ec-p384" */
    MOAT_PKI_ALG_RSA_2048, /* "rsa-2048" */
    MOAT_PKI_ALG_RSA_3072, /* "rsa-3072" */
    MOAT_PKI_ALG_RSA_4096, /* "rsa-4096" */
    MOAT_PKI_ALG_ED25519   /* "ed25519": browsers do not accept it for servers */
} moat_pki_alg_t;
#define MOAT_PKI_ALG_DEFAULT MOAT_PKI_ALG_EC_P256

/* Parses "ec-p256" "ec-p384" "rsa-2048" "rsa-3072" "rsa-4096" "ed25519" (case-insensitive). Anything
 * else: MOAT_E_INVAL, the message names the value and the hint lists the accepted names. */
int moat_pki_alg_parse(const char *name, moat_pki_alg_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* The name of <alg> in the vocabulary above; "other" for MOAT_PKI_ALG_OTHER. Static string. */
const char *moat_pki_alg_name(moat_pki_alg_t alg);
/* Which of the algorithms above <key> is; MOAT_PKI_ALG_OTHER for anything else (or NULL). */
moat_pki_alg_t moat_pki_key_alg(const EVP_PKEY *key);
/* Writes a description of any key into <buf>: the moat name when there is one ("ec-p256"), else
 * "rsa-<bits>", "ec-<curve>", "ed448", or the OpenSSL type name. Always terminated. */
void moat_pki_key_describe(const EVP_PKEY *key, char *buf, size_t size);
/* Key size in bits (RSA modulus, EC field, 255 for ed25519); 0 if unknown. */
int moat_pki_key_bits(const EVP_PKEY *key);

/* Progress during key generation (RSA prime search). <phase> follows OpenSSL's BN_GENCB convention
 * (0: candidate tested, 1: prime passed a round, 2: prime found, 3: done). Return 0 to abort. */
typedef int (*moat_pki_on_progress_t)(void *arg, int phase);
/* Generates a new key pair of <alg> (not MOAT_PKI_ALG_OTHER). <on_progress> may be NULL; it is called
 * from this thread only. On success *out is a new key owned by the caller. */
int moat_pki_key_generate(moat_pki_alg_t alg, moat_pki_on_progress_t on_progress, void *arg, EVP_PKEY **out,
                          moat_err_t *err) MOAT_MUST_CHECK;

/* The private key as unencrypted PKCS#8 DER (PrivateKeyInfo), for the store to encrypt. Secret: free with
 * moat_free_secret(out, *out_len). MOAT_E_INVAL if <key> has no private part. */
int moat_pki_key_to_pkcs8(const EVP_PKEY *key, unsigned char **out, size_t *out_len,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* Reads unencrypted PKCS#8 DER back into a private key (*out owned by the caller). Trailing bytes or
 * anything that is not PKCS#8: MOAT_E_INVAL. */
int moat_pki_key_from_pkcs8(const unsigned char *der, size_t len, EVP_PKEY **out,
                            moat_err_t *err) MOAT_MUST_CHECK;
/* The private key as PEM "PRIVATE KEY" (unencrypted PKCS#8). Secret: moat_free_secret(out, *out_len).
 * *out is NUL-terminated; *out_len excludes the NUL. */
int moat_pki_key_to_pem(const EVP_PKEY *key, char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;
/* The public key as SubjectPublicKeyInfo DER (works for private keys too: only the public part). */
int moat_pki_pubkey_to_der(const EVP_PKEY *key, unsigned char **out, size_t *out_len,
                           moat_err_t *err) MOAT_MUST_CHECK;
/* Reads SubjectPublicKeyInfo DER into a public-only key. */
int moat_pki_pubkey_from_der(const unsigned char *der, size_t len, EVP_PKEY **out,
                             moat_err_t *err) MOAT_MUST_CHECK;
/* True when both keys have the same public key (private parts are not compared). NULL never equals. */
bool moat_pki_pubkey_eq(const EVP_PKEY *a, const EVP_PKEY *b);

/* SHA-256 fingerprints as upper-case hex pairs joined by colons: "AB:CD:...", 95 chars + NUL. */
#define MOAT_PKI_FINGERPRINT_SIZE 96
/* Writes the lowercase hex fingerprint <hex> as uppercase colon pairs ("CD:6E:76:..."), the one form moat
 * shows fingerprints in. */
void moat_pki_fingerprint_colon(const char *hex, char out[MOAT_PKI_FINGERPRINT_SIZE]);
/* Fingerprint of the DER SubjectPublicKeyInfo of <key>. */
int moat_pki_pubkey_fingerprint(const EVP_PKEY *key, char out[MOAT_PKI_FINGERPRINT_SIZE],
                                moat_err_t *err) MOAT_MUST_CHECK;
/* Fingerprint of the DER certificate (what browsers and `openssl x509 -fingerprint -sha256` show). */
int moat_pki_cert_fingerprint(const X509 *cert, char out[MOAT_PKI_FINGERPRINT_SIZE],
                              moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Time
 */

/* "2026-04-30T12:00:00Z" plus NUL. */
#define MOAT_PKI_TIME_SIZE MOAT_TIME_SIZE
/* Formats <t> as RFC 3339 UTC into <buf> (moat_time_rfc3339); returns buf. */
char *moat_pki_time_format(time_t t, char buf[MOAT_PKI_TIME_SIZE]);
/* Converts an ASN1_TIME (UTCTime or GeneralizedTime) to time_t; MOAT_E_INVAL if it is malformed. */
int moat_pki_asn1_time_to_time(const ASN1_TIME *t, time_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Names and subject alternative names
 */

/* Subject fields of a request or certificate. Any field may be NULL (absent); cn is required when
 * building a request. country must be two letters. */
typedef struct moat_pki_subject {
    const char *cn;    /* commonName */
    const char *o;     /* organizationName */
    const char *ou;    /* organizationalUnitName */
    const char *l;     /* localityName */
    const char *st;    /* stateOrProvinceName */
    const char *c;     /* countryName, two letters */
    const char *email; /* emailAddress */
} moat_pki_subject_t;

/*
 * SAN lists in text are comma-separated "TYPE:value" items: "DNS:www.example.com,IP:192.0.2.1,
 * email:a@example.com,URI:https://example.com/". Types are case-insensitive (DNS, IP, email, URI);
 * IP accepts IPv4 and IPv6 literals. Whitespace around items is ignored. Empty items, unknown types,
 * empty values, DNS names with characters outside [A-Za-z0-9.*-] and bad IP literals are MOAT_E_INVAL
 * naming the item. The same format is produced by the info functions below (IPv6 in RFC 5952 form).
 */
/* Parses <text> into a new GENERAL_NAMES (free with GENERAL_NAMES_free). */
int moat_pki_sans_parse(const char *text, GENERAL_NAMES **out, moat_err_t *err) MOAT_MUST_CHECK;
/* Formats <names> as text (see above); other name types (dirName, otherName, ...) are written as
 * "othername:<type>" so that nothing is silently hidden. "" when empty. */
int moat_pki_sans_format(const GENERAL_NAMES *names, char **out, moat_err_t *err) MOAT_MUST_CHECK;
/* True when <s> is an IPv4 or IPv6 literal. */
bool moat_pki_is_ip_literal(const char *s);

/* ------------------------------------------------------------------------------------------------------
 * Certificate signing requests (PKCS#10)
 */

/* Builds and signs a request for <key> (which must hold the private part). <sans> in the text format
 * above, or NULL/"" to copy the CN into the SANs: IP:cn when the CN is an IP literal, email:cn when it
 * holds an '@', else DNS:cn; a CN that is none of these ("Alice Smith") gives no SAN.
 * Signed with SHA-256 (ed25519: no digest). *out owned by the caller. */
int moat_pki_csr_new(EVP_PKEY *key, const moat_pki_subject_t *subject, const char *sans, X509_REQ **out,
                     moat_err_t *err) MOAT_MUST_CHECK;
/* PEM ("CERTIFICATE REQUEST"; NUL-terminated, *out_len excludes the NUL) and DER encodings. */
int moat_pki_csr_to_pem(X509_REQ *csr, char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;
int moat_pki_csr_to_der(X509_REQ *csr, unsigned char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;
/* Reads one request from PEM (the first CERTIFICATE REQUEST / NEW CERTIFICATE REQUEST block) or DER.
 * Does NOT check the signature: call moat_pki_csr_verify() before trusting it. */
int moat_pki_csr_parse(const unsigned char *data, size_t len, X509_REQ **out,
                       moat_err_t *err) MOAT_MUST_CHECK;
/* Checks the request's self-signature with its own public key. A bad signature is MOAT_E_PKI with
 * "the request's signature does not verify" and a hint; an unusable key is MOAT_E_PKI too. */
int moat_pki_csr_verify(X509_REQ *csr, moat_err_t *err) MOAT_MUST_CHECK;

/* What a request asks for. Strings owned by the struct; release with moat_pki_csr_info_dispose(). */
typedef struct moat_pki_csr_info {
    char *subject;    /* one line, RFC 2253 order and escaping: "CN=www.example.com,O=Example" */
    char *cn;         /* first commonName, or NULL */
    char *sans;       /* requested SANs in the text format, "" when none */
    char key_alg[32]; /* moat_pki_key_describe() of the public key */
    int key_bits;     /* moat_pki_key_bits() */
    bool requests_ca; /* the request carries basicConstraints CA:TRUE */
} moat_pki_csr_info_t;
int moat_pki_csr_info(X509_REQ *csr, moat_pki_csr_info_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_pki_csr_info_dispose(moat_pki_csr_info_t *info);
/* The public key of the request (new reference) or NULL with err set. */
EVP_PKEY *moat_pki_csr_get1_pubkey(X509_REQ *csr, moat_err_t *err);

/* ------------------------------------------------------------------------------------------------------
 * Certificates
 */

/* Reads one certificate from PEM (the first CERTIFICATE block) or DER. */
int moat_pki_cert_parse(const unsigned char *data, size_t len, X509 **out, moat_err_t *err) MOAT_MUST_CHECK;
/* Reads every CERTIFICATE block of a PEM text (or one DER certificate) into a new stack, in file order.
 * Zero certificates: MOAT_E_INVAL "no certificate found". Free with sk_X509_pop_free(sk, X509_free). */
int moat_pki_certs_parse(const unsigned char *data, size_t len, STACK_OF(X509) * *out,
                         moat_err_t *err) MOAT_MUST_CHECK;
/* PEM of one certificate, or of <cert> followed by <chain> (chain may be NULL). NUL-terminated. */
int moat_pki_cert_to_pem(X509 *cert, STACK_OF(X509) * chain, char **out, size_t *out_len,
                         moat_err_t *err) MOAT_MUST_CHECK;
int moat_pki_cert_to_der(X509 *cert, unsigned char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;

/* Key usage bits (moat_pki_cert_info_t.key_usage), same values as X509v3 KU_* . */
#define MOAT_PKI_KU_DIGITAL_SIGNATURE 0x0080
#define MOAT_PKI_KU_KEY_ENCIPHERMENT 0x0020
#define MOAT_PKI_KU_KEY_AGREEMENT 0x0008
#define MOAT_PKI_KU_KEY_CERT_SIGN 0x0004
#define MOAT_PKI_KU_CRL_SIGN 0x0002
/* Extended key usage bits (moat_pki_cert_info_t.ext_key_usage). */
#define MOAT_PKI_EKU_SERVER_AUTH 0x01
#define MOAT_PKI_EKU_CLIENT_AUTH 0x02
#define MOAT_PKI_EKU_CODE_SIGNING 0x04
#define MOAT_PKI_EKU_EMAIL 0x08
#define MOAT_PKI_EKU_OCSP_SIGNING 0x10
#define MOAT_PKI_EKU_ANY 0x20

/* Everything moat shows about a certificate. Strings owned by the struct: moat_pki_cert_info_dispose(). */
typedef struct moat_pki_cert_info {
    char *subject;   /* one line, RFC 2253: "CN=www.example.com,O=Example" */
    char *cn;        /* first commonName of the subject, or NULL */
    char *sans;      /* SANs in the text format ("DNS:a,IP:192.0.2.1"), "" when none */
    char *issuer;    /* one line, RFC 2253 */
    char *issuer_cn; /* first commonName of the issuer, or NULL */
    char *serial;    /* upper-case hex without separators, "00" for zero, "-" prefix if negative */
    time_t not_before;
    time_t not_after;
    char fingerprint[MOAT_PKI_FINGERPRINT_SIZE];     /* SHA-256 of the DER certificate */
    char key_fingerprint[MOAT_PKI_FINGERPRINT_SIZE]; /* SHA-256 of the DER public key */
    bool is_ca;                                      /* basicConstraints CA:TRUE */
    int path_len;                                    /* basicConstraints pathLenConstraint, -1 when absent */
    bool has_key_usage;                              /* keyUsage extension present */
    unsigned key_usage;                              /* MOAT_PKI_KU_* bits (0 when absent) */
    bool has_ext_key_usage;                          /* extendedKeyUsage extension present */
    unsigned ext_key_usage;                          /* MOAT_PKI_EKU_* bits (0 when absent) */
    bool self_signed; /* issuer == subject and the signature verifies with its own key */
    char key_alg[32]; /* moat_pki_key_describe() of the public key: "ec-p256", "rsa-2048", ... */
    int key_bits;     /* moat_pki_key_bits() */
    char sig_alg[48]; /* signature algorithm's short name: "ecdsa-with-SHA256", "ED25519", ... */
} moat_pki_cert_info_t;
int moat_pki_cert_info(const X509 *cert, moat_pki_cert_info_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_pki_cert_info_dispose(moat_pki_cert_info_t *info);
/* True when the certificate may be used for TLS servers (no EKU, or serverAuth/anyExtendedKeyUsage) */
bool moat_pki_cert_is_server(const X509 *cert);
/* ... for TLS clients (no EKU, or clientAuth/anyExtendedKeyUsage). */
bool moat_pki_cert_is_client(const X509 *cert);

/* Checks that <now> lies within the certificate's validity. Failure is MOAT_E_PKI with the dates in the
 * message: "certificate \"CN=www\" expired on 2026-04-30T12:00:00Z" or "... is not valid before
 * 2027-01-01T00:00:00Z", and a hint. */
int moat_pki_cert_check_time(const X509 *cert, time_t now, moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Chains
 */

/* Orders a certificate pile into the chain above <leaf>.
 * <pile> holds the candidate certificates (from --chain, or bundled with the leaf in one PEM); it may
 * contain the leaf itself and duplicates (both skipped) and may be NULL. Starting at the leaf, each
 * issuer is looked up by name and authority/subject key identifier and its signature is checked.
 * On success *chain is a new stack of the certificates above the leaf, issuer first: intermediates, then
 * the root if the pile had it (the leaf is not included). *missing_issuer (if not NULL) is set to NULL
 * when the chain ends in a self-signed certificate, else to the RFC 2253 name of the issuer that the pile
 * did not contain (usually a root the client already trusts; moat_free() it).
 * Errors (MOAT_E_PKI, nothing returned):
 * - a certificate whose issuer is in the pile but whose signature does not verify with its key;
 * - certificates in the pile that are not part of the chain: if the chain's top issuer is missing the
 *   message says which issuer is missing ("missing link"), otherwise it names the unrelated certificate.
 */
int moat_pki_chain_build(X509 *leaf, STACK_OF(X509) * pile, STACK_OF(X509) * *chain, char **missing_issuer,
                         moat_err_t *err) MOAT_MUST_CHECK;

/* Index in <certs> of the certificate whose public key equals <key>'s; when several match, the one with
 * the latest notAfter. -1 when none does. */
int moat_pki_find_cert_for_key(const EVP_PKEY *key, STACK_OF(X509) * certs);

/* ------------------------------------------------------------------------------------------------------
 * Import (PEM, DER, PKCS#8, encrypted PKCS#8, PKCS#12)
 */

/* Maximum PBKDF2 / PKCS#12 KDF / MAC iteration count accepted on import: checked before any work. */
#define MOAT_PKI_MAX_ITERATIONS 10000000L
/* Maximum input size accepted by moat_pki_import(). */
#define MOAT_PKI_MAX_IMPORT_BYTES (16L * 1024 * 1024)

/* What an import found. Owned by the struct: release with moat_pki_import_dispose(). */
typedef struct moat_pki_import {
    EVP_PKEY **keys; /* private keys, in file order */
    size_t nkeys;
    STACK_OF(X509) * certs; /* certificates, in file order; never NULL after success */
    char *friendly_name;    /* PKCS#12 friendlyName of the first key (or certificate), else NULL */
    const char *format;     /* static: "PEM", "DER certificate", "PKCS#8", "encrypted PKCS#8", "PKCS#12" */
    bool used_password;     /* the password decrypted something */
} moat_pki_import_t;

/*
 * Reads every private key and certificate from <data>: PEM with any number of objects (CERTIFICATE,
 * TRUSTED CERTIFICATE, PRIVATE KEY, ENCRYPTED PRIVATE KEY, RSA/EC PRIVATE KEY, including traditional
 * PEM encryption), DER (certificate, PKCS#8, encrypted PKCS#8) and PKCS#12 (.pfx), modern (AES/PBKDF2)
 * or legacy (RC2/3DES, read through a private library context with the legacy provider).
 * <password> is used only when <have_password> is true (it may then be "", the empty password).
 * Errors, nothing returned:
 * - MOAT_E_PASSWORD: the input is encrypted and no password was given, or the password is wrong;
 * - MOAT_E_LIMIT: an iteration count above MOAT_PKI_MAX_ITERATIONS, or an input above the size cap;
 * - MOAT_E_INVAL: corrupt input, or a recognised but unsupported object (the message names it);
 *   input with no key and no certificate at all.
 */
int moat_pki_import(const unsigned char *data, size_t len, const char *password, bool have_password,
                    moat_pki_import_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_pki_import_dispose(moat_pki_import_t *imp);

/* ------------------------------------------------------------------------------------------------------
 * Export (PKCS#12)
 */

/* Builds a PKCS#12 file with <key>, <cert> (must match the key), <chain> (may be NULL; issuer first)
 * and <friendly_name> (may be NULL) under <password> (not NULL; may be "").
 * Modern: AES-256-CBC with PBKDF2-HMAC-SHA256 for the key and certificates, SHA-256 MAC.
 * <legacy>: PBE-SHA1-3DES for key and certificates, SHA-1 MAC (old Windows, appliances).
 * Secret output: moat_free_secret(out, *out_len). */
int moat_pki_pkcs12_export(EVP_PKEY *key, X509 *cert, STACK_OF(X509) * chain, const char *friendly_name,
                           const char *password, bool legacy, unsigned char **out, size_t *out_len,
                           moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Certificate authority
 */

/* Where the CA publishes, under a base URL "http://ca.example.com[:port][/prefix]" (ca init --url). */
#define MOAT_PKI_PUBLISH_DIR "/.well-known/moat/"
#define MOAT_PKI_PATH_CA_PEM "/.well-known/moat/ca.pem"     /* the issuing CA certificate, PEM */
#define MOAT_PKI_PATH_CA_DER "/.well-known/moat/ca.der"     /* the issuing CA certificate, DER */
#define MOAT_PKI_PATH_ROOT_PEM "/.well-known/moat/root.pem" /* the root certificate, PEM */
#define MOAT_PKI_PATH_ROOT_DER "/.well-known/moat/root.der" /* the root certificate, DER */
#define MOAT_PKI_PATH_CRL "/.well-known/moat/ca.crl"        /* CRL of the issuing CA, DER */
#define MOAT_PKI_PATH_ROOT_CRL "/.well-known/moat/root.crl" /* CRL of the root (covers intermediates) */
#define MOAT_PKI_PATH_TRUST_PAGE "/.well-known/moat/"       /* how to trust the root (HTML) */
#define MOAT_PKI_PATH_OCSP "/.well-known/moat/ocsp"         /* OCSP responder: POST, or GET <path>/<b64> */

/* URLs written into issued certificates (an empty string leaves that extension out). */
typedef struct moat_pki_urls {
    char crl[512];        /* CRL distribution point */
    char ocsp[512];       /* AIA OCSP */
    char ca_issuers[512]; /* AIA caIssuers (DER certificate of the issuer) */
} moat_pki_urls_t;
/* Fills <out> from <base> (trailing slashes ignored) for certificates issued by the root (<by_root>:
 * root.crl, root.der) or by the issuing intermediate (ca.crl, ca.der). The OCSP URL is the same for both.
 * MOAT_E_INVAL unless <base> starts with http:// or https:// and has a host. */
int moat_pki_urls_from_base(const char *base, bool by_root, moat_pki_urls_t *out,
                            moat_err_t *err) MOAT_MUST_CHECK;

/* Makes a self-signed root: subject CN=<cn>, basicConstraints CA:TRUE critical, keyUsage keyCertSign +
 * cRLSign critical, SKI (+ AKI), 159-bit random serial, notBefore = now - 1 h, notAfter = now + <days>.
 * Signed with SHA-256 (no digest for ed25519). <days> 1..36500. */
int moat_pki_ca_root_new(EVP_PKEY *key, const char *cn, int days, X509 **out,
                         moat_err_t *err) MOAT_MUST_CHECK;

/* Options for an intermediate CA. */
typedef struct moat_pki_intermediate_opts {
    const char *cn;
    int days;                         /* 1..36500; notAfter never past the root's own */
    const char *const *permitted_dns; /* name constraints: permitted DNS subtrees ("example.com"), or NULL */
    size_t npermitted_dns;
    const moat_pki_urls_t *urls; /* CDP/AIA pointing at the root's publications, or NULL */
} moat_pki_intermediate_opts_t;
/* Makes an intermediate CA for <key> signed by <root_cert>/<root_key>: CA:TRUE pathlen 0 critical,
 * keyCertSign + cRLSign critical, SKI/AKI, optional critical nameConstraints. notAfter is clamped to the
 * root's notAfter (moat_pki_cert_info() shows the result). MOAT_E_PKI if <root_key> does not match
 * <root_cert>. */
int moat_pki_ca_intermediate_new(X509 *root_cert, EVP_PKEY *root_key, EVP_PKEY *key,
                                 const moat_pki_intermediate_opts_t *opts, X509 **out,
                                 moat_err_t *err) MOAT_MUST_CHECK;

typedef enum moat_pki_profile {
    MOAT_PKI_PROFILE_SERVER = 0, /* serverAuth; digitalSignature (+ keyEncipherment for RSA keys) */
    MOAT_PKI_PROFILE_CLIENT      /* clientAuth; digitalSignature */
} moat_pki_profile_t;
/* "server" / "client"; anything else MOAT_E_INVAL. */
int moat_pki_profile_parse(const char *name, moat_pki_profile_t *out, moat_err_t *err) MOAT_MUST_CHECK;
const char *moat_pki_profile_name(moat_pki_profile_t profile);

/* Options for signing a request. */
typedef struct moat_pki_sign_opts {
    moat_pki_profile_t profile;
    int days;                    /* requested validity, >= 1 */
    bool clamp;                  /* notAfter past the CA's own: true = clamp to it, false = refuse */
    const moat_pki_urls_t *urls; /* CDP/AIA URLs, or NULL for none */
    time_t now;                  /* 0 = the current time */
} moat_pki_sign_opts_t;
/*
 * Issues a certificate for <csr> with <ca_cert>/<ca_key>. The request's self-signature is verified
 * first. From the request only the subject and the SANs are copied (never its other extensions); a
 * request asking for CA:TRUE is refused (MOAT_E_PERM). The certificate gets: 159-bit random positive
 * serial, basicConstraints CA:FALSE critical, profile KU (critical) and EKU, SKI/AKI, notBefore = now - 1 h,
 * notAfter = now + days (past the CA's notAfter: clamped, or MOAT_E_PKI naming the CA's expiry when
 * !clamp), optional CDP and AIA, signed with SHA-256 (no digest for an ed25519 CA key). A CA key that
 * does not match the CA certificate, or a CA certificate that is not a CA, is MOAT_E_PKI.
 */
int moat_pki_ca_sign(X509 *ca_cert, EVP_PKEY *ca_key, X509_REQ *csr, const moat_pki_sign_opts_t *opts,
                     X509 **out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Checks the names of <cert> (subject, SANs, and a common name that reads as a host name when there is
 * no DNS SAN) against the nameConstraints of <issuer>, as a verifying client does (RFC 5280 4.2.1.10).
 * 0 when <issuer> has none or all names are inside them; MOAT_E_PERM saying which rule broke otherwise.
 */
int moat_pki_name_constraints_check(const X509 *issuer, const X509 *cert, moat_err_t *err) MOAT_MUST_CHECK;

/* Issuance policy of a profile (issue 4): maximum validity and allowed names. */
typedef struct moat_pki_policy {
    int max_days;                /* 0 = no maximum; defaults: server 90, client 365 */
    const char *const *patterns; /* allowed names, or NULL = any name */
    size_t npatterns;
} moat_pki_policy_t;
#define MOAT_PKI_SERVER_MAX_DAYS 90
#define MOAT_PKI_CLIENT_MAX_DAYS 365
/*
 * Checks <days> and every name of <csr> (subject CN, emailAddress, and each DNS/IP/email/URI SAN)
 * against <policy>. A pattern is a name ("www.example.com"), "*.example.com" (any name ending in
 * ".example.com", at any depth), "*@example.com" (any e-mail address at that domain) or "*" (anything);
 * comparison is case-insensitive. Failure is MOAT_E_PERM naming the offending name or the maximum.
 */
int moat_pki_policy_check(const moat_pki_policy_t *policy, X509_REQ *csr, int days,
                          moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Revocation: CRL
 */

/* RFC 5280 CRLReason codes. */
typedef enum moat_pki_reason {
    MOAT_PKI_REASON_UNSPECIFIED = 0,
    MOAT_PKI_REASON_KEY_COMPROMISE = 1,
    MOAT_PKI_REASON_CA_COMPROMISE = 2,
    MOAT_PKI_REASON_AFFILIATION_CHANGED = 3,
    MOAT_PKI_REASON_SUPERSEDED = 4,
    MOAT_PKI_REASON_CESSATION_OF_OPERATION = 5,
    MOAT_PKI_REASON_CERTIFICATE_HOLD = 6,
    MOAT_PKI_REASON_REMOVE_FROM_CRL = 8,
    MOAT_PKI_REASON_PRIVILEGE_WITHDRAWN = 9,
    MOAT_PKI_REASON_AA_COMPROMISE = 10
} moat_pki_reason_t;
/* Parses "unspecified", "key-compromise" (or "keyCompromise"), "ca-compromise", "affiliation-changed",
 * "superseded", "cessation-of-operation", "certificate-hold", "privilege-withdrawn", "aa-compromise";
 * case-insensitive, '-' optional. MOAT_E_INVAL with the list in the hint otherwise. */
int moat_pki_reason_parse(const char *name, moat_pki_reason_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* "key-compromise", ...; "unknown" for a value outside the enum. */
const char *moat_pki_reason_name(int reason);

/* One revoked certificate. */
typedef struct moat_pki_revoked {
    const char *serial; /* hex, as in moat_pki_cert_info_t.serial */
    time_t revoked_at;
    int reason; /* moat_pki_reason_t; MOAT_PKI_REASON_UNSPECIFIED entries carry no reason code */
} moat_pki_revoked_t;
/* Builds a v2 CRL signed by <ca_cert>/<ca_key>: issuer, thisUpdate, nextUpdate, CRL number <number>,
 * AKI, and the entries with their reason codes. Serials that are not hex are MOAT_E_INVAL. */
int moat_pki_crl_new(X509 *ca_cert, EVP_PKEY *ca_key, long number, time_t this_update, time_t next_update,
                     const moat_pki_revoked_t *entries, size_t nentries, X509_CRL **out,
                     moat_err_t *err) MOAT_MUST_CHECK;
int moat_pki_crl_to_der(X509_CRL *crl, unsigned char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;
int moat_pki_crl_to_pem(X509_CRL *crl, char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;

/* A serial number in moat's one spelling (moat_serial_canon: upper-case hex of whole bytes, "00" for
 * zero), as shown and as a lookup key. RFC 5280 caps
 * serials at 20 bytes; a longer one is MOAT_E_LIMIT, MOAT_E_NOMEM when memory runs out. */
#define MOAT_PKI_SERIAL_KEY_SIZE 48
int moat_pki_serial_key(const ASN1_INTEGER *serial, char out[MOAT_PKI_SERIAL_KEY_SIZE]) MOAT_MUST_CHECK;

/* What a verified CRL of another CA says. */
typedef struct moat_pki_crl_info {
    time_t this_update;
    time_t next_update; /* 0 when the CRL names none: never fresh */
    char **revoked;     /* owned: serial keys (moat_pki_serial_key), sorted with strcmp */
    size_t nrevoked;
} moat_pki_crl_info_t;
void moat_pki_crl_info_dispose(moat_pki_crl_info_t *info);
/* Decodes CRL <data> (DER, or PEM) and accepts it only when <issuer> issued it: same name, a key usage
 * that allows CRL signing, a signature that verifies with its key, and a complete CRL (no delta, no
 * indirect or partitioned scope, no unknown critical extension). Freshness is the caller's business:
 * an out-of-date CRL verifies. MOAT_E_INVAL with the reason otherwise; <out> is then empty. */
int moat_pki_crl_verify(const unsigned char *data, size_t len, X509 *issuer, moat_pki_crl_info_t *out,
                        moat_err_t *err) MOAT_MUST_CHECK;
/* The http:// URLs (at most <max>) of the CRL distribution points of <cert> that name a complete CRL of
 * its issuer (full names; points with reasons or another CRL issuer are skipped). Returns their count. */
#define MOAT_PKI_URL_SIZE 512
size_t moat_pki_cert_crl_urls(X509 *cert, char (*urls)[MOAT_PKI_URL_SIZE], size_t max);
/* The http:// URLs (at most <max>) of the AIA caIssuers entries of <cert>: where its issuer's certificate
 * is published (DER, PEM or a PKCS#7 bundle). Returns their count. */
size_t moat_pki_cert_ca_issuers_urls(X509 *cert, char (*urls)[MOAT_PKI_URL_SIZE], size_t max);

/* ------------------------------------------------------------------------------------------------------
 * Revocation: OCSP (RFC 6960)
 */

/* Maximum OCSP request size accepted (DER, before base64). */
#define MOAT_PKI_OCSP_MAX_REQUEST 8192

typedef enum moat_pki_ocsp_status {
    MOAT_PKI_OCSP_GOOD = 0,
    MOAT_PKI_OCSP_REVOKED = 1,
    MOAT_PKI_OCSP_UNKNOWN = 2
} moat_pki_ocsp_status_t;

/* Status of one certificate, filled by the caller's lookup. */
typedef struct moat_pki_ocsp_answer {
    moat_pki_ocsp_status_t status;
    time_t revoked_at; /* REVOKED only */
    int reason;        /* REVOKED only: moat_pki_reason_t, or -1 for none */
} moat_pki_ocsp_answer_t;
/* Looks up the certificate with serial <serial> (hex, as moat_pki_cert_info_t.serial) issued by the
 * responder's CA. Returns 0 with <answer> filled, or a negative code: the whole response then becomes
 * "tryLater" (a store that is busy or failing). */
typedef int (*moat_pki_ocsp_lookup_t)(void *arg, const char *serial, moat_pki_ocsp_answer_t *answer);

/* Decodes the request of an OCSP GET: <b64> is the path part after MOAT_PKI_PATH_OCSP "/" (URL-encoded
 * base64; %XX escapes are decoded first). Output: DER bytes, moat_free() them. Bad base64 or an input
 * over MOAT_PKI_OCSP_MAX_REQUEST is MOAT_E_INVAL. */
int moat_pki_ocsp_get_decode(const char *b64, size_t len, unsigned char **out, size_t *out_len,
                             moat_err_t *err) MOAT_MUST_CHECK;
/* Parses a DER OCSP request (strictly: trailing bytes are an error). *out: free with OCSP_REQUEST_free. */
int moat_pki_ocsp_request_parse(const unsigned char *der, size_t len, OCSP_REQUEST **out,
                                moat_err_t *err) MOAT_MUST_CHECK;

/* Options for building responses. */
typedef struct moat_pki_ocsp_opts {
    X509 *ca_cert; /* the issuing CA: signs the response and is the responder (by name) */
    EVP_PKEY *ca_key;
    moat_pki_ocsp_lookup_t lookup;
    void *lookup_arg;
    time_t now;            /* 0 = the current time; thisUpdate = producedAt = now */
    long next_update_secs; /* nextUpdate = now + this; 0 = leave nextUpdate out */
} moat_pki_ocsp_opts_t;

/*
 * Answers a DER OCSP request (POST body, or the output of moat_pki_ocsp_get_decode()). Returns 0 with a
 * DER OCSPResponse in *out (moat_free() it) whenever an answer exists, including error statuses:
 * - malformed request (bad DER, trailing bytes, no CertID, more than 32 CertIDs) -> malformedRequest;
 * - the lookup failing -> tryLater;  signing failing -> internalError;
 * - no CertID about this CA -> unauthorized (RFC 5019 2.2.3);
 * - otherwise successful: a BasicOCSPResponse signed by the CA (responder ID = CA key hash), one
 *   SingleResponse per CertID (CertIDs of another issuer in a mixed request are "unknown"), thisUpdate =
 *   now, nextUpdate = now + next_update_secs, the request's nonce echoed.
 * *status_out (may be NULL) receives the OCSPResponseStatus (OCSP_RESPONSE_STATUS_*); for an error status
 * <err> holds the reason for the log (its code is set although 0 is returned).
 * A negative return (MOAT_E_NOMEM, MOAT_E_PKI, MOAT_E_INVAL for missing options) means no answer at all.
 */
int moat_pki_ocsp_respond(const moat_pki_ocsp_opts_t *opts, const unsigned char *req, size_t req_len,
                          unsigned char **out, size_t *out_len, int *status_out,
                          moat_err_t *err) MOAT_MUST_CHECK;

/* An unsigned OCSPResponse carrying only the error <status> (OCSP_RESPONSE_STATUS_MALFORMEDREQUEST,
 * _INTERNALERROR, _TRYLATER, _UNAUTHORIZED; RFC 6960 §2.3), for a responder that has no CA to sign with.
 * DER in *out (moat_free() it). MOAT_E_INVAL for OCSP_RESPONSE_STATUS_SUCCESSFUL or an unknown status. */
int moat_pki_ocsp_error(int status, unsigned char **out, size_t *out_len, moat_err_t *err) MOAT_MUST_CHECK;

/* Builds a signed OCSP response for <leaf> without a request (for stapling): the status comes from
 * opts->lookup. DER in *out (moat_free() it). MOAT_E_PKI if <leaf> was not issued by opts->ca_cert. */
int moat_pki_ocsp_staple(const moat_pki_ocsp_opts_t *opts, X509 *leaf, unsigned char **out, size_t *out_len,
                         moat_err_t *err) MOAT_MUST_CHECK;

/* ------------------------------------------------------------------------------------------------------
 * Inspection (moat inspect): what a file holds
 */

typedef enum moat_pki_obj_kind {
    MOAT_PKI_OBJ_CERT = 0, /* cert */
    MOAT_PKI_OBJ_CSR,      /* csr */
    MOAT_PKI_OBJ_CRL,      /* crl */
    MOAT_PKI_OBJ_KEY,      /* key: a private key (only its public part is ever described) */
    MOAT_PKI_OBJ_PUBKEY,   /* key: a public key */
    MOAT_PKI_OBJ_LOCKED,   /* encrypted and no password given: label says what ("PKCS#12") */
    MOAT_PKI_OBJ_OTHER     /* a PEM block of another kind: label is its PEM name */
} moat_pki_obj_kind_t;

typedef struct moat_pki_obj {
    moat_pki_obj_kind_t kind;
    const char *container; /* static: "PEM", "DER", "PKCS#7", "PKCS#12", "PKCS#8", ... */
    X509 *cert;            /* owned, MOAT_PKI_OBJ_CERT */
    X509_REQ *csr;         /* owned, MOAT_PKI_OBJ_CSR */
    X509_CRL *crl;         /* owned, MOAT_PKI_OBJ_CRL */
    EVP_PKEY *key;         /* owned, MOAT_PKI_OBJ_KEY / MOAT_PKI_OBJ_PUBKEY */
    char label[64];
} moat_pki_obj_t;

typedef struct moat_pki_inspect {
    moat_pki_obj_t *objs; /* in file order (a PKCS#12's keys before its certificates) */
    size_t n, cap;
    bool used_password; /* the password decrypted something */
} moat_pki_inspect_t;

/*
 * Reads every object of <data>: PEM with any number of blocks, or one DER object (certificate, request,
 * CRL, PKCS#7, public key, PKCS#8 or encrypted PKCS#8 key, PKCS#12). Encrypted keys and PKCS#12 files
 * are opened with <password> when <have_password>; without one they are listed as MOAT_PKI_OBJ_LOCKED.
 * Errors (nothing returned): MOAT_E_INVAL for damaged or unknown input, MOAT_E_PASSWORD for a wrong
 * password, MOAT_E_LIMIT for an input above MOAT_PKI_MAX_IMPORT_BYTES or more than 1000 objects.
 */
int moat_pki_inspect(const unsigned char *data, size_t len, const char *password, bool have_password,
                     moat_pki_inspect_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* The same for certificates already in hand (a TLS server's chain): new references, <container> static. */
int moat_pki_inspect_certs(STACK_OF(X509) * certs, const char *container, moat_pki_inspect_t *out,
                           moat_err_t *err) MOAT_MUST_CHECK;
void moat_pki_inspect_dispose(moat_pki_inspect_t *in);

/* True when <issuer> issued <cert>: names and key identifiers match and the signature verifies. */
bool moat_pki_cert_issued_by(X509 *cert, X509 *issuer);

/* One entry of a CRL. */
typedef struct moat_pki_crl_entry {
    char serial[MOAT_PKI_SERIAL_KEY_SIZE]; /* moat_pki_serial_key() */
    time_t revoked_at;
    int reason; /* moat_pki_reason_t, -1 when the entry carries none */
} moat_pki_crl_entry_t;

/* What a CRL says, without checking who signed it (moat_pki_crl_verify() does that). */
typedef struct moat_pki_crl_desc {
    char *issuer; /* RFC 2253 */
    time_t this_update;
    time_t next_update; /* 0 when absent */
    char *number;       /* CRL number in hex, or NULL when absent */
    bool delta;         /* a delta CRL */
    char sig_alg[48];
    moat_pki_crl_entry_t *entries; /* the first nshown of nentries (at most 100,000) */
    size_t nentries, nshown;
} moat_pki_crl_desc_t;
int moat_pki_crl_describe(X509_CRL *crl, moat_pki_crl_desc_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_pki_crl_desc_dispose(moat_pki_crl_desc_t *d);

#endif
