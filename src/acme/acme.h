/*
 * acme: moat's CA answering ACME (RFC 8555) for other machines, and the JOSE pieces (base64url, JSON
 * members, JWK thumbprints) that both ACME roles share.
 *
 * JSON comes from libjansson; nothing here parses JSON by hand. Functions fill moat_err_t and never log.
 */
#ifndef MOAT_ACME_H
#define MOAT_ACME_H

#include "core/core.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- shared JOSE helpers (jose.c) ---- */

/* Length of the base64url text (no padding) for <n> bytes, without the NUL. */
#define MOAT_ACME_B64URL_LEN(n) (((n)*4 + 2) / 3)

/* Writes <in> as unpadded base64url into <out> (<outsz> bytes, NUL-terminated). Returns the text length,
 * or MOAT_E_LIMIT when <out> is too small. */
int moat_acme_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz) MOAT_MUST_CHECK;
/* Encodes into a new string (moat_free() it); NULL on allocation failure. */
char *moat_acme_b64url_encode_new(const unsigned char *in, size_t n);
/* Decodes unpadded base64url <in> (<n> chars; padding, '+', '/', whitespace are refused, as RFC 7515 §2
 * says). *out is a new NUL-terminated buffer of *outlen bytes (moat_free() it). MOAT_E_INVAL on bad text. */
int moat_acme_b64url_decode(const char *in, size_t n, unsigned char **out, size_t *outlen,
                            moat_err_t *err) MOAT_MUST_CHECK;

/* The string member <key> of object <obj>, or NULL when absent or not a string. Borrowed from <obj>. */
const char *moat_acme_json_str(const json_t *obj, const char *key);
/* Parses <n> bytes of JSON that must be an object (duplicate keys refused, depth limited by jansson).
 * Returns a new reference or NULL with <err> set (MOAT_E_INVAL, with jansson's line:column). */
json_t *moat_acme_json_parse(const char *text, size_t n, moat_err_t *err);
/* Serialises <v> compactly into a new string (moat_free() it); NULL on failure. */
char *moat_acme_json_dump(const json_t *v);

/* Public key from a JWK object (RFC 7517/7518/8037): EC P-256/P-384/P-521, RSA (2048-8192 bits), OKP
 * Ed25519. A JWK with private members ("d", "p", ...) is refused. *key is new (EVP_PKEY_free it). */
int moat_acme_jwk_to_pkey(const json_t *jwk, EVP_PKEY **key, moat_err_t *err) MOAT_MUST_CHECK;
/* The public JWK of <key> as a new JSON object (EC, RSA, Ed25519); NULL with <err> set otherwise. */
json_t *moat_acme_jwk_from_pkey(EVP_PKEY *key, moat_err_t *err);
/* RFC 7638 thumbprint (SHA-256 over the required members in lexical order) of <jwk>, base64url-encoded
 * into <out> (44 bytes at least). */
int moat_acme_jwk_thumbprint(const json_t *jwk, char *out, size_t outsz, moat_err_t *err) MOAT_MUST_CHECK;

#endif
