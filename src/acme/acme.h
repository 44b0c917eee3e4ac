/*
 * acme: moat's CA answering ACME (RFC 8555) for other machines, and the JOSE pieces (JSON members, JWK
 * thumbprints) that both ACME roles share; base64url is core's (moat_b64url_encode).
 *
 * JSON comes from libjansson; nothing here parses JSON by hand. Functions fill moat_err_t and never log.
 */
#ifndef MOAT_ACME_H
#define MOAT_ACME_H

#include "core/core.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- shared JOSE helpers (jose.c) ---- */

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

/* ---- problem documents (RFC 7807 with the RFC 8555 §6.7 types) ---- */

typedef enum {
    MOAT_ACME_PROB_MALFORMED = 0,
    MOAT_ACME_PROB_BAD_NONCE,
    MOAT_ACME_PROB_BAD_SIGNATURE_ALGORITHM,
    MOAT_ACME_PROB_BAD_PUBLIC_KEY,
    MOAT_ACME_PROB_UNAUTHORIZED,
    MOAT_ACME_PROB_ACCOUNT_DOES_NOT_EXIST,
    MOAT_ACME_PROB_EXTERNAL_ACCOUNT_REQUIRED,
    MOAT_ACME_PROB_REJECTED_IDENTIFIER,
    MOAT_ACME_PROB_UNSUPPORTED_IDENTIFIER,
    MOAT_ACME_PROB_BAD_CSR,
    MOAT_ACME_PROB_ORDER_NOT_READY,
    MOAT_ACME_PROB_RATE_LIMITED,
    MOAT_ACME_PROB_ALREADY_REVOKED,
    MOAT_ACME_PROB_BAD_REVOCATION_REASON,
    MOAT_ACME_PROB_CONNECTION,
    MOAT_ACME_PROB_INCORRECT_RESPONSE,
    MOAT_ACME_PROB_DNS,
    MOAT_ACME_PROB_TLS,
    MOAT_ACME_PROB_SERVER_INTERNAL,
    MOAT_ACME_PROB__COUNT
} moat_acme_prob_type_t;

/* A refusal: the problem type, the HTTP status it goes with, and a sentence for the client's user. */
typedef struct moat_acme_problem {
    moat_acme_prob_type_t type;
    int status;
    char detail[256];
} moat_acme_problem_t;

/* Sets <p> (type, the type's usual status, formatted detail); returns -1 so that refusing is one line. */
int moat_acme_problem_set(moat_acme_problem_t *p, moat_acme_prob_type_t type, const char *fmt, ...)
    MOAT_PRINTF(3, 4);
/* "urn:ietf:params:acme:error:<name>" of <type>. */
const char *moat_acme_problem_urn(moat_acme_prob_type_t type);
/* The problem document of <p> as a new JSON object ({"type", "detail", "status"}); NULL on OOM. */
json_t *moat_acme_problem_json(const moat_acme_problem_t *p);

/* ---- JWS (RFC 7515 flattened JSON serialisation, as RFC 8555 §6.2 restricts it; jws.c) ---- */

/* Largest JWS body accepted, in bytes (a CSR of a few kB, base64url, inside JSON). */
#define MOAT_ACME_JWS_MAX 65536

typedef enum {
    MOAT_ACME_JWS_ES256,
    MOAT_ACME_JWS_ES384,
    MOAT_ACME_JWS_RS256,
    MOAT_ACME_JWS_EDDSA
} moat_acme_alg_t;

/* A parsed, not yet verified, JWS. Every pointer is owned by it or borrowed from its members. */
typedef struct moat_acme_jws {
    json_t *header;      /* owned: the decoded protected header */
    json_t *payload;     /* owned: the decoded payload object; NULL for POST-as-GET (empty payload) */
    moat_acme_alg_t alg; /* from the header, one of the four accepted */
    const char *nonce;   /* borrowed from header */
    const char *url;     /* borrowed from header */
    const char *kid;     /* borrowed from header: account URL, or NULL when the header has a jwk */
    const json_t *jwk;   /* borrowed from header: the signer's public JWK, or NULL when it has a kid */
    unsigned char *sig;  /* owned: the decoded signature */
    size_t sig_len;
    char *signing_input; /* owned: "protected.payload" as received */
    size_t signing_input_len;
} moat_acme_jws_t;

/*
 * Parses <body> (<n> bytes: {"protected", "payload", "signature"} and nothing else) into <jws>. Refused,
 * with <p> set: bad JSON or base64url, an unprotected header, an alg outside ES256/ES384/RS256/EdDSA
 * (badSignatureAlgorithm), no nonce (badNonce) or url, both or neither of jwk and kid, a payload that is
 * neither empty nor a JSON object. On failure <jws> holds nothing to free. Returns 0 or -1.
 */
int moat_acme_jws_parse(const char *body, size_t n, moat_acme_jws_t *jws, moat_acme_problem_t *p);
/* Verifies the signature of <jws> with <key>, which must fit the alg (EC P-256 for ES256, P-384 for ES384,
 * RSA of 2048 bits or more for RS256, Ed25519 for EdDSA). Returns 0, or -1 with <p> set (malformed for a bad
 * signature, badSignatureAlgorithm for a key that does not fit). */
int moat_acme_jws_verify(const moat_acme_jws_t *jws, EVP_PKEY *key, moat_acme_problem_t *p);
/* Signs <payload> (NULL: POST-as-GET) with <key> into a new flattened JWS string (moat_free() it): the
 * protected header carries alg, nonce (left out when NULL: the inner JWS of a key change), url and kid
 * (when not NULL) or else the key's jwk. For the ACME
 * client and for tests. NULL with <err> set on failure. */
char *moat_acme_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                         const json_t *payload, moat_err_t *err);
/* Frees what <jws> owns; safe on a zeroed one. */
void moat_acme_jws_dispose(moat_acme_jws_t *jws);

/* ---- replay-protected nonces (nonce.c) ---- */

typedef struct moat_acme_nonces moat_acme_nonces_t;

/* A nonce source with a random secret; the last MOAT_ACME_NONCE_WINDOW nonces issued are accepted once
 * each, older ones are refused (the client retries with a fresh one, RFC 8555 §6.5). Thread-safe. */
#define MOAT_ACME_NONCE_WINDOW 8192
moat_acme_nonces_t *moat_acme_nonces_new(moat_err_t *err);
void moat_acme_nonces_free(moat_acme_nonces_t *ns);
/* Writes a new nonce (base64url, NUL-terminated) into <out>; <outsz> at least MOAT_ACME_NONCE_LEN + 1. */
#define MOAT_ACME_NONCE_LEN 43
int moat_acme_nonce_new(moat_acme_nonces_t *ns, char *out, size_t outsz) MOAT_MUST_CHECK;
/* Accepts <nonce> once: 0 when it was issued by <ns>, is within the window and was not used before; else
 * -1 (forged, too old, or replayed). */
int moat_acme_nonce_use(moat_acme_nonces_t *ns, const char *nonce) MOAT_MUST_CHECK;

/* ---- challenge answers the server gives (acme_chall.c) ---- */

/* http-01 (RFC 8555 §8.3): the body to serve at /.well-known/acme-challenge/<token> while a validation
 * runs. Thread-safe: the ACME thread adds and removes, workers look up. At most 64 at once (MOAT_E_LIMIT). */
int moat_acme_http01_add(const char *token, const char *key_authz, moat_err_t *err) MOAT_MUST_CHECK;
void moat_acme_http01_remove(const char *token);
/* Copies the key authorization for <token> (<len> bytes, not NUL-terminated) into <out>; 1 when found. */
int moat_acme_http01_lookup(const char *token, size_t len, char *out, size_t outsz);
/* tls-alpn-01 (RFC 8737): the certificate to present to a ClientHello for <name> that offers only the
 * acme-tls/1 protocol. The ACME thread sets (new references taken) and removes; a worker's lookup gets new
 * references (X509_free, EVP_PKEY_free) and returns 1, or 0 when no validation for <name> runs. */
int moat_acme_tlsalpn_add(const char *name, X509 *cert, EVP_PKEY *key, moat_err_t *err) MOAT_MUST_CHECK;
void moat_acme_tlsalpn_remove(const char *name);
int moat_acme_tlsalpn_lookup(const char *name, X509 **cert, EVP_PKEY **key);
/* The ALPN protocol of tls-alpn-01, as it is written in a protocol list (length byte first). */
#define MOAT_ACME_TLS_ALPN                                                                                   \
    "\x0a"                                                                                                   \
    "acme-tls/1"

/* The path prefix the server answers before any redirect. */
#define MOAT_ACME_HTTP01_PREFIX "/.well-known/acme-challenge/"

/* ---- the renewal thread (acme_renew.c) ---- */

typedef struct moat_config moat_config_t;
typedef struct moat_store moat_store_t;
typedef struct moat_acme_renewer moat_acme_renewer_t;

/*
 * Starts the thread that orders and renews the certificates of the sites with certificate: acme in
 * <cfg> (a reference is taken). It owns <st> (its own store connection, with the master key) from here
 * on, also on failure. Nothing it does runs on a worker's event loop.
 */
int moat_acme_renewer_start(moat_store_t *st, moat_config_t *cfg, moat_acme_renewer_t **out,
                            moat_err_t *err) MOAT_MUST_CHECK;
/* Hands a reloaded config to the thread (a reference is taken; the old one is released). */
void moat_acme_renewer_set_config(moat_acme_renewer_t *r, moat_config_t *cfg);
/* Stops the thread (an order in flight gives up within a second and resumes on the next start). NULL ok. */
void moat_acme_renewer_stop(moat_acme_renewer_t *r);

/* What the client knows about one certificate, for moat acme status and doctor. */
typedef struct moat_acme_status {
    char name[160];       /* the key name (acme.HOST) */
    char site[256];       /* the site's first host */
    char state[16];       /* "none" (never issued), "valid", "ordering", "failing" */
    long long not_after;  /* of the current certificate; 0 when none */
    long long next;       /* when the next attempt or renewal is due (epoch seconds) */
    char why[96];         /* why then: "first issuance", "1/3 of the lifetime left", "ARI window", ... */
    char last_error[320]; /* the last failure, "" when the last attempt succeeded */
    long long last_try;   /* epoch seconds, 0 if never */
    unsigned failures;    /* attempts in a row that failed */
    int order_pending;    /* an order (and its pending key) is recorded in the store */
    char ari_certid[200]; /* the RFC 9773 id of the current certificate when the CA gave a window, else "" */
} moat_acme_status_t;

/* The status of <site>'s ACME certificate from the store (read only). */
int moat_acme_status_get(moat_store_t *st, const moat_config_t *cfg, size_t site_index, long long now,
                         moat_acme_status_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Account key rollover (RFC 8555 §7.3.5) at the ACME server of the top-level acme: block (else the first
 * site's): a new key, the server told, then the stored account key replaced in one commit and audited.
 * Refused when the account is not registered yet, or another directory holds an account under the same
 * key (its server would no longer know the key). <summary> says what changed. */
int moat_acme_rollover(moat_store_t *st, const moat_config_t *cfg, char *summary, size_t summary_sz,
                       moat_err_t *err) MOAT_MUST_CHECK;
/* Asks a running server to renew key <name> now (a request in the store the thread picks up). */
int moat_acme_renew_request(moat_store_t *st, const char *name, long long now,
                            moat_err_t *err) MOAT_MUST_CHECK;

/* ---- the ACME server (acme_server*.c) ---- */

typedef struct moat_acme_server_conf moat_acme_server_conf_t; /* config/config.h */
typedef struct moat_acme_service moat_acme_service_t;

/* Largest ACME request body read (the JWS limit); larger gets 413 before it is parsed. */
#define MOAT_ACME_BODY_MAX MOAT_ACME_JWS_MAX

/* One HTTP request under /acme/. Strings are borrowed for the duration of the call. */
typedef struct moat_acme_request {
    const char *method;       /* "GET", "HEAD", "POST" */
    const char *path;         /* the request target's path, "/acme/..." (no query) */
    const char *host;         /* the Host (or :authority) the client used, with its port if any */
    const char *content_type; /* may be NULL */
    const char *body;         /* may be NULL */
    size_t body_len;
    const moat_acme_server_conf_t *conf; /* the site's acme_server settings */
} moat_acme_request_t;

/* The answer. body is owned (moat_free it, or moat_acme_response_dispose). */
typedef struct moat_acme_response {
    int status;
    const char *content_type; /* static string, or NULL for no body */
    char location[512];
    char link[2][600]; /* full Link field values: <url>;rel="up" */
    size_t nlinks;
    char nonce[MOAT_ACME_NONCE_LEN + 1]; /* Replay-Nonce, "" for none */
    long retry_after;                    /* seconds, -1: none */
    char *body;
    size_t body_len;
    char validate[64]; /* internal: a challenge to validate once the request's transaction commits */
} moat_acme_response_t;

void moat_acme_response_dispose(moat_acme_response_t *r);

/*
 * Starts the ACME service of a server: <threads> service threads (each with its own connection to the
 * store at <store_path>, master key <mk_path>) that answer requests and run validations off the event
 * loops. NULL with <err> set on failure.
 */
moat_acme_service_t *moat_acme_service_new(const char *store_path, const char *mk_path, int threads,
                                           moat_err_t *err);
/* Stops the threads (a validation in flight gives up within 200 ms); requests not answered yet are
 * answered 503 through their callback, and later submissions are refused. Safe to call twice. */
void moat_acme_service_stop(moat_acme_service_t *svc);
/* Stops (if not yet) and frees everything. NULL is fine. */
void moat_acme_service_free(moat_acme_service_t *svc);

/* A request handed to the service. The caller fills req (and keeps what it points to alive until
 * on_done), the service fills resp and calls on_done(job) on a service thread. */
typedef struct moat_acme_job moat_acme_job_t;
struct moat_acme_job {
    moat_acme_request_t req;
    moat_acme_response_t resp;
    void (*on_done)(moat_acme_job_t *job);
    void *arg;             /* the caller's */
    moat_acme_job_t *next; /* the service's queue */
};
/* Queues <job>; MOAT_E_LIMIT when the queue is full (the caller answers 503). */
int moat_acme_service_submit(moat_acme_service_t *svc, moat_acme_job_t *job) MOAT_MUST_CHECK;

/* Answers <req> on the calling thread with store connection <st> (what a service thread does; tests
 * call it directly). Validations it starts are queued to <svc>'s threads. */
void moat_acme_handle(moat_acme_service_t *svc, moat_store_t *st, const moat_acme_request_t *req,
                      moat_acme_response_t *resp);

#endif
