/* Private to acme/: the ACME server's request context and the pieces its files share. */
#ifndef MOAT_ACME_SERVER_INT_H
#define MOAT_ACME_SERVER_INT_H

#include "acme/acme.h"
#include "config/config.h"
#include "store/store.h"

#include <stdatomic.h>

/* Random object ids: 16 bytes in hex (store names allow [A-Za-z0-9._@-]; ca list shows "acme@ID"). */
#define ACME_ID_LEN 32
/* Challenge tokens: 32 bytes, base64url (RFC 8555 §8.1: at least 128 bits). */
#define ACME_TOKEN_LEN 43
/* How long an order and its authorizations live. */
#define ACME_ORDER_LIFETIME_S (7 * 24 * 3600)

/* One request being answered. */
typedef struct acme_ctx {
    moat_acme_service_t *svc;
    moat_store_t *st;
    const moat_acme_request_t *req;
    moat_acme_response_t *resp;
    moat_acme_problem_t prob;
    char base[320];             /* "https://HOST/acme" */
    moat_acme_jws_t jws;        /* the request's JWS, once parsed */
    moat_store_acme_obj_t acct; /* the signing account, for kid-signed requests */
    json_t *acct_doc;           /* acct.doc parsed (owned) */
    int64_t now;
} acme_ctx_t;

/* A new random id (ACME_ID_LEN hex digits) into <out> (ACME_ID_LEN + 1 bytes). */
int moat__acme_random_id(char *out);
/* A new challenge token (ACME_TOKEN_LEN base64url characters) into <out>. */
int moat__acme_random_token(char *out);
/* Sets the response body to <doc> (reference taken) with <status> and the JSON content type. */
int moat__acme_reply_json(acme_ctx_t *c, int status, json_t *doc);
/* Sets resp->location to base + "/" + <kind> + "/" + <id>. */
void moat__acme_url(const acme_ctx_t *c, const char *kind, const char *id, char *out, size_t outsz);
/* Adds a Link field <url>;rel="<rel>" to the response. */
void moat__acme_link(acme_ctx_t *c, const char *url, const char *rel);
/* RFC 3339 UTC time. */
void moat__acme_time(int64_t t, char *out, size_t outsz);

/* acme_server_order.c: the order endpoints. Each returns 0 with the reply set, or -1 with c->prob set. */
int moat__acme_new_order(acme_ctx_t *c);
int moat__acme_order(acme_ctx_t *c, const char *id);
int moat__acme_orders_list(acme_ctx_t *c, const char *acct_id);
int moat__acme_authz(acme_ctx_t *c, const char *id);
int moat__acme_chall(acme_ctx_t *c, const char *id);
int moat__acme_finalize(acme_ctx_t *c, const char *id);
int moat__acme_cert(acme_ctx_t *c, const char *id);
int moat__acme_revoke(acme_ctx_t *c);
int moat__acme_renewal_info(acme_ctx_t *c, const char *certid);
/* Where <type>/<value> may be certified by <conf>: NULL when an allow rule covers it, else a sentence
 * naming the rule in <why>. */
int moat__acme_allowed(const moat_acme_server_conf_t *conf, const char *type, const char *value, char *why,
                       size_t whysz);

/* acme_server_validate.c: runs the validation of challenge <chall_id> (blocking, bounded by its deadline) and
 * records the result. Called on a service thread, never on an event loop. */
void moat__acme_validate(moat_store_t *st, const char *chall_id, long http01_port, long tls_alpn01_port,
                         const char *dns_resolver, const atomic_int *stop);

/* acme_server_service.c: queues a validation of <chall_id> for a service thread, connecting to these ports.
 */
int moat__acme_queue_validation(moat_acme_service_t *svc, const char *chall_id, long http01_port,
                                long tls_alpn01_port, const char *dns_resolver);
/* True when a validation of <chall_id> is queued or running: a challenge left processing without one (a
 * full queue, a server restarted) is queued again when it is polled. */
int moat__acme_validation_pending(moat_acme_service_t *svc, const char *chall_id);
/* Sets how many requests and validations may wait (256 by default; tests make it full with 0). */
void moat__acme_service_queue_max(moat_acme_service_t *svc, size_t n);
/* acme_server.c: the nonce source of <svc>. */
moat_acme_nonces_t *moat__acme_nonces(moat_acme_service_t *svc);

#endif
