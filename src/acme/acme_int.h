/*
 * Private to the ACME client (acme_client.c, acme_order.c, acme_renew.c): the protocol session, the
 * responses it reads, and the order run.
 */
#ifndef MOAT_ACME_INT_H
#define MOAT_ACME_INT_H

#include "acme/acme.h"
#include "config/config.h"
#include "http/http.h"
#include "store/store.h"

#include <openssl/x509.h>
#include <stdatomic.h>

typedef struct moat__acme_client {
    const char *directory_url; /* borrowed from the config */
    X509_STORE *trust;         /* borrowed: anchors for the server's TLS; NULL = system store */
    const atomic_int *stop;    /* borrowed; may be NULL */
    EVP_PKEY *account_key;     /* borrowed */
    json_t *jwk;               /* owned: the account key's public JWK */
    char thumbprint[64];       /* RFC 7638, base64url */
    json_t *dir;               /* owned: the directory */
    char nonce[160];           /* the next nonce to use, "" when none is held */
    char account_url[512];     /* the kid, "" until known */
    const char *email;         /* borrowed; NULL = no contact */
    int accept_terms;
    const char *eab_kid;  /* borrowed; NULL = no binding */
    const char *eab_hmac; /* borrowed: base64url MAC key text */
    unsigned bad_nonces;  /* badNonce answers retried (for the tests and the log) */
    long retry_after;     /* Retry-After of the last error answer (seconds), -1 when none */
} moat__acme_client_t;

typedef struct moat__acme_resp {
    int status;
    json_t *json;  /* owned: the body when it is JSON, else NULL */
    uint8_t *body; /* owned: the raw body, NUL-terminated */
    size_t body_len;
    char location[256];
    char content_type[128];
    long retry_after; /* seconds, -1 when not given */
    char alternates[MOAT_HTTP_CLIENT_LINKS][256];
    size_t nalternates;
} moat__acme_resp_t;

void moat__acme_resp_dispose(moat__acme_resp_t *r);
int moat__acme_client_init(moat__acme_client_t *c, EVP_PKEY *account_key, moat_err_t *err) MOAT_MUST_CHECK;
void moat__acme_client_dispose(moat__acme_client_t *c);
int moat__acme_directory(moat__acme_client_t *c, moat_err_t *err) MOAT_MUST_CHECK;
const char *moat__acme_dir_url(const moat__acme_client_t *c, const char *name);
/* A signed POST of <payload> (NULL: POST-as-GET) to <url>, with the JWK (new account) or the kid. Any
 * status is returned in <out>; badNonce answers are retried with the nonce they carry. */
int moat__acme_post(moat__acme_client_t *c, const char *url, const json_t *payload, int use_jwk,
                    moat__acme_resp_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Registers (known = 0) or looks up (known = 1) the account; sets c->account_url. */
int moat__acme_account(moat__acme_client_t *c, int known, moat_err_t *err) MOAT_MUST_CHECK;
/* RFC 8555 §7.3.5: tells the server that the account's key is now <new_key> (c->account_url set). */
int moat__acme_key_change(moat__acme_client_t *c, EVP_PKEY *new_key, moat_err_t *err) MOAT_MUST_CHECK;
/* Fills <err> from the problem document in <r>, prefixed by <doing>; MOAT_E_AGAIN when rate limited. */
int moat__acme_problem(const moat__acme_resp_t *r, const char *doing, moat_err_t *err);
/* 0 when <r> answered <status>; else <r>'s problem document, prefixed by <doing>, in <err> (as
 * moat__acme_problem) and <r> disposed. */
int moat__acme_expect(moat__acme_resp_t *r, int status, const char *doing, moat_err_t *err);
int moat__acme_key_authz(const moat__acme_client_t *c, const char *token, char *out, size_t outsz,
                         moat_err_t *err) MOAT_MUST_CHECK;

/* One renewal of the site's certificate, resumed from the store when an order is under way (acme_order.c).
 * On failure *retry_after holds the server's Retry-After of its last error answer (-1: none).
 * <replaces>: the ARI certificate id of the certificate being replaced, or NULL. On success the new
 * certificate is installed (generation bumped, audited) and <summary> says what was issued. */
int moat__acme_order_run(moat_store_t *st, const moat_site_t *site, const moat_acme_conf_t *conf,
                         const char *replaces, const atomic_int *stop, char *summary, size_t summary_sz,
                         long *retry_after, moat_err_t *err) MOAT_MUST_CHECK;

/* ARI (acme_ari.c). */
typedef struct moat__acme_ari {
    char certid[200]; /* base64url(AKI) "." base64url(serial) */
    long long start;  /* the suggested window, epoch seconds */
    long long end;
    long long recheck; /* when to ask again (Retry-After) */
} moat__acme_ari_t;
/* The RFC 9773 §4.1 certificate id of DER certificate <der>. */
int moat__acme_ari_certid(const uint8_t *der, size_t len, char *out, size_t outsz,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* Reads the window for <certid>; MOAT_E_NOTFOUND when the directory has no renewalInfo. */
int moat__acme_ari_fetch(moat__acme_client_t *c, const char *certid, long long now, moat__acme_ari_t *out,
                         moat_err_t *err) MOAT_MUST_CHECK;
/* An unauthenticated GET (the directory, renewalInfo). */
int moat__acme_get(moat__acme_client_t *c, const char *url, moat__acme_resp_t *out,
                   moat_err_t *err) MOAT_MUST_CHECK;
/* Asks the CA for the renewal window of <site>'s current certificate when the last answer is due for a
 * refresh, and records it in the store (acme.ari.NAME). 0 also when there is nothing to ask. */
int moat__acme_ari_refresh(moat_store_t *st, const moat_site_t *site, const moat_acme_conf_t *conf,
                           const atomic_int *stop, long long now, moat_err_t *err) MOAT_MUST_CHECK;
/* The recorded window for <name>, if any (1) . */
int moat__acme_ari_read(moat_store_t *st, const char *name, moat__acme_ari_t *out);

/* The store settings under which the client keeps its state. */
#define MOAT__ACME_ACCOUNT_KEY "acme-account" /* the account key's name in the key store */
void moat__acme_setting_name(char *out, size_t outsz, const char *what, const char *name);

#endif
