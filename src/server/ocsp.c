/*
 * The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile's caching) at MOAT_PKI_PATH_OCSP on
 * sites with ca_publish, and moat's CA as the server signs with it.
 *
 * The control thread loads the CA certificates, their keys and a snapshot of what the CA issued and revoked
 * with every generation: a revocation bumps the store generation, so the next generation (within the
 * 500 ms store poll) answers "revoked". Workers sign in their loop with their own copies of the keys.
 */
#include "server/request.h"

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <string.h>
#include <strings.h>

/* Responses say when to ask again; a revocation reaches the responder at once, but a relying party that
 * cached a "good" answer keeps it until then. */
#define OCSP_NEXT_UPDATE_SECS 3600
/*
 * An ECDSA signature costs ~50 us, an RSA-2048 one ~1 ms: too much to pay per request inside an event loop
 * under a flood of identical queries. Answers to requests without a nonce (browsers and RFC 5019 clients
 * send none) are kept per worker and generation for CACHE_SECS, keyed by the request's bytes: a new
 * generation (revocation) starts with an empty cache, so no stale status outlives it. Requests with a
 * nonce must get it echoed and are signed every time.
 */
#define CACHE_SECS 60
#define CACHE_SLOTS 64
#define CACHE_KEY_MAX 512
typedef struct cache_entry {
    unsigned char key[CACHE_KEY_MAX]; /* the request DER */
    size_t key_len;
    unsigned char *resp; /* owned: the DER response */
    size_t resp_len;
    uint64_t expires_ms; /* loop clock */
} cache_entry_t;

struct moat__ocsp_wgen {
    const moat__ca_signer_t *signer; /* borrowed from the generation */
    X509 *cert[2];                   /* owned: this worker's copies */
    EVP_PKEY *key[2];
    cache_entry_t cache[CACHE_SLOTS];
    size_t next_slot; /* round-robin eviction */
};

/* ---- the signer (control thread) ----------------------------------------------------------------- */

/* Uppercase hex without leading zeros, so that "0A1B" from one formatter equals "A1B" from another. */
static const char *serial_trim(const char *s)
{
    while (s[0] == '0' && s[1] != '\0')
        s++;
    return s;
}

static int cmp_issued(const void *a, const void *b)
{
    return strcasecmp(((const moat__ca_issued_t *)a)->serial, ((const moat__ca_issued_t *)b)->serial);
}

static int site_cert_from_moat_ca(const moat__gen_t *gen, const moat__ca_signer_t *s)
{
    for (size_t i = 0; i < gen->cfg->nsites; i++) {
        for (size_t j = 0; j < gen->sites[i].ncerts; j++) {
            const unsigned char *p = gen->sites[i].certs[j].cert_der;
            X509 *leaf = d2i_X509(NULL, &p, (long)gen->sites[i].certs[j].cert_len);
            int ours = 0;
            for (int r = 0; leaf != NULL && r < 2; r++)
                ours |= s->cert[r] != NULL && X509_check_issued(s->cert[r], leaf) == X509_V_OK;
            X509_free(leaf);
            if (ours)
                return 1;
        }
    }
    ERR_clear_error();
    return 0;
}

int moat__ocsp_signer_load_role(moat__ca_signer_t *s, moat_store_t *st, moat_ca_role_t role, moat_err_t *err)
{
    moat_store_ca_t ca;
    const unsigned char *p;
    int rc;

    memset(&ca, 0, sizeof(ca));
    rc = moat_store_ca_get(st, role, &ca, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0;
    }
    if (rc != 0)
        return rc;
    if ((s->cert_der[role] = moat_malloc(ca.der.len ? ca.der.len : 1)) == NULL) {
        moat_store_ca_dispose(&ca);
        return moat_err_set(err, MOAT_E_NOMEM, "copying the CA certificate");
    }
    memcpy(s->cert_der[role], ca.der.data, ca.der.len);
    s->cert_len[role] = ca.der.len;
    p = s->cert_der[role];
    if ((s->cert[role] = d2i_X509(NULL, &p, (long)ca.der.len)) == NULL) {
        moat_store_ca_dispose(&ca);
        return moat_err_ossl(err, MOAT_E_PKI, "the stored certificate of moat's %s CA does not parse",
                             moat_store_ca_role_name(role));
    }
    /* An offline root (ca export-root --remove-key) signs nothing: its certificates get no staple, and
     * the responder answers "unauthorized" for them. */
    if (ca.key_id != 0) {
        uint8_t *key = NULL;
        size_t keylen = 0;
        if ((rc = moat_store_key_private(st, ca.key_id, &key, &keylen, err)) != 0) {
            moat_store_ca_dispose(&ca);
            return moat_err_prefix(err, "reading the key of moat's %s CA", moat_store_ca_role_name(role));
        }
        s->key_der[role] = key;
        s->key_len[role] = keylen;
        if ((rc = moat_pki_key_from_pkcs8(key, keylen, &s->key[role], err)) != 0) {
            moat_store_ca_dispose(&ca);
            return moat_err_prefix(err, "the key of moat's %s CA", moat_store_ca_role_name(role));
        }
    }
    moat_store_ca_dispose(&ca);
    return 0;
}

int moat__ocsp_signer_load(moat__gen_t *gen, moat_store_t *st, moat_err_t *err)
{
    moat__ca_signer_t *s = &gen->signer;
    moat_store_issued_list_t il;
    int rc;

    for (size_t i = 0; i < gen->cfg->nsites; i++)
        gen->ocsp |= gen->cfg->sites[i].ca_publish;
    for (int r = 0; r < 2; r++)
        if ((rc = moat__ocsp_signer_load_role(s, st, (moat_ca_role_t)r, err)) != 0)
            return rc;
    /* The keys stay in memory only when something will sign with them. */
    if (!gen->ocsp && !site_cert_from_moat_ca(gen, s)) {
        moat__ocsp_signer_dispose(s);
        return 0;
    }
    if (s->cert[0] == NULL && s->cert[1] == NULL)
        return 0;
    memset(&il, 0, sizeof(il));
    if ((rc = moat_store_issued_list(st, 0, 0, &il, err)) != 0)
        return rc;
    if ((s->issued = moat_calloc(il.n ? il.n : 1, sizeof(*s->issued))) == NULL) {
        moat_store_issued_list_dispose(&il);
        return moat_err_set(err, MOAT_E_NOMEM, "copying the issued certificates");
    }
    for (size_t i = 0; i < il.n; i++) {
        moat__ca_issued_t *e = &s->issued[s->nissued];
        if ((e->serial = moat_strdup(serial_trim(il.items[i].serial))) == NULL) {
            moat_store_issued_list_dispose(&il);
            return moat_err_set(err, MOAT_E_NOMEM, "copying the issued certificates");
        }
        e->role = (int)il.items[i].issuer;
        e->revoked = (long long)il.items[i].revoked;
        e->reason = il.items[i].reason;
        s->nissued++;
    }
    moat_store_issued_list_dispose(&il);
    qsort(s->issued, s->nissued, sizeof(*s->issued), cmp_issued);
    return 0;
}

void moat__ocsp_signer_forget_keys(moat__ca_signer_t *s)
{
    for (int r = 0; r < 2; r++)
        if (s->key_der[r] != NULL)
            moat_free_secret(&s->key_der[r], s->key_len[r]);
}

void moat__ocsp_signer_dispose(moat__ca_signer_t *s)
{
    moat__ocsp_signer_forget_keys(s);
    for (int r = 0; r < 2; r++) {
        moat_free(&s->cert_der[r]);
        X509_free(s->cert[r]);
        EVP_PKEY_free(s->key[r]);
        s->cert[r] = NULL;
        s->key[r] = NULL;
    }
    for (size_t i = 0; i < s->nissued; i++)
        moat_free(&s->issued[i].serial);
    moat_free(&s->issued);
    s->nissued = 0;
}

int moat__ocsp_lookup(void *arg, const char *serial, moat_pki_ocsp_answer_t *a)
{
    const moat__ocsp_lookup_arg_t *la = arg;
    const moat__ca_signer_t *s = la->signer;
    int role = la->role;
    moat__ca_issued_t probe = {.serial = (char *)serial_trim(serial)};
    const moat__ca_issued_t *e = bsearch(&probe, s->issued, s->nissued, sizeof(*s->issued), cmp_issued);
    a->reason = -1;
    /* A serial this CA never issued is "unknown", never "good" (RFC 6960 §2.2). */
    if (e == NULL || e->role != role) {
        a->status = MOAT_PKI_OCSP_UNKNOWN;
    } else if (e->revoked != 0) {
        a->status = MOAT_PKI_OCSP_REVOKED;
        a->revoked_at = (time_t)e->revoked;
        a->reason = e->reason;
    } else {
        a->status = MOAT_PKI_OCSP_GOOD;
    }
    return 0;
}

/* ---- the worker's part --------------------------------------------------------------------------- */

moat__ocsp_wgen_t *moat__ocsp_wgen_new(const moat__gen_t *gen, moat_err_t *err)
{
    const moat__ca_signer_t *s = &gen->signer;
    moat__ocsp_wgen_t *o = moat_calloc(1, sizeof(*o));

    if (o == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating the OCSP responder");
        return NULL;
    }
    o->signer = s;
    for (int r = 0; r < 2; r++) {
        const unsigned char *p = s->cert_der[r];
        if (p == NULL)
            continue;
        if ((o->cert[r] = d2i_X509(NULL, &p, (long)s->cert_len[r])) == NULL) {
            moat_err_ossl(err, MOAT_E_PKI, "decoding the certificate of moat's %s CA",
                          moat_store_ca_role_name((moat_ca_role_t)r));
            moat__ocsp_wgen_free(o);
            return NULL;
        }
        if (s->key_der[r] != NULL &&
            moat_pki_key_from_pkcs8(s->key_der[r], s->key_len[r], &o->key[r], err) != 0) {
            moat_err_prefix(err, "the key of moat's %s CA", moat_store_ca_role_name((moat_ca_role_t)r));
            moat__ocsp_wgen_free(o);
            return NULL;
        }
    }
    return o;
}

void moat__ocsp_wgen_free(moat__ocsp_wgen_t *o)
{
    if (o == NULL)
        return;
    for (int r = 0; r < 2; r++) {
        X509_free(o->cert[r]);
        EVP_PKEY_free(o->key[r]);
    }
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        moat_free(&o->cache[i].resp);
    moat_free(&o);
}

/* ---- answering ------------------------------------------------------------------------------------ */

static int path_is(const moat_http_str_t *path, size_t *rest)
{
    size_t n = sizeof(MOAT_PKI_PATH_OCSP) - 1;
    if (path->len < n || memcmp(path->p, MOAT_PKI_PATH_OCSP, n) != 0)
        return 0;
    if (path->len > n && path->p[n] != '/' && path->p[n] != '?')
        return 0;
    *rest = n;
    return 1;
}

int moat__ocsp_path(moat_http_str_t path)
{
    size_t rest;
    return path_is(&path, &rest);
}

/* A nonce-free request, small enough to be a cache key. */
static int cacheable(const unsigned char *der, size_t len)
{
    OCSP_REQUEST *req = NULL;
    moat_err_t e = {0};
    int ok;
    if (len > CACHE_KEY_MAX || moat_pki_ocsp_request_parse(der, len, &req, &e) != 0)
        return 0;
    ok = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1) < 0;
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return ok;
}

static cache_entry_t *cache_find(moat__ocsp_wgen_t *o, const unsigned char *der, size_t len, uint64_t now)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        cache_entry_t *e = &o->cache[i];
        if (e->resp != NULL && e->key_len == len && e->expires_ms > now && memcmp(e->key, der, len) == 0)
            return e;
    }
    return NULL;
}

static void cache_put(moat__ocsp_wgen_t *o, const unsigned char *der, size_t len, unsigned char *resp,
                      size_t resp_len, uint64_t now)
{
    cache_entry_t *e = &o->cache[o->next_slot];
    o->next_slot = (o->next_slot + 1) % CACHE_SLOTS;
    moat_free(&e->resp);
    memcpy(e->key, der, len);
    e->key_len = len;
    e->resp = resp;
    e->resp_len = resp_len;
    e->expires_ms = now + CACHE_SECS * 1000u;
}

/* Signs the answer to <der>: the intermediate first (it issues), then the root when the request is
 * about neither (unauthorized). Returns 0 with a response (error statuses included), or < 0. */
static int respond(moat__ocsp_wgen_t *o, const unsigned char *der, size_t len, unsigned char **out,
                   size_t *out_len, int *status, moat_err_t *err)
{
    int roles[2] = {MOAT_CA_INTERMEDIATE, MOAT_CA_ROOT}, tried = 0;
    for (int i = 0; i < 2; i++) {
        int r = roles[i], rc;
        moat__ocsp_lookup_arg_t la = {o->signer, r};
        moat_pki_ocsp_opts_t opts = {.ca_cert = o->cert[r],
                                     .ca_key = o->key[r],
                                     .lookup = moat__ocsp_lookup,
                                     .lookup_arg = &la,
                                     .next_update_secs = OCSP_NEXT_UPDATE_SECS};
        if (o->cert[r] == NULL || o->key[r] == NULL)
            continue;
        if (tried)
            moat_free(out);
        tried = 1;
        rc = moat_pki_ocsp_respond(&opts, der, len, out, out_len, status, err);
        if (rc != 0 || *status != OCSP_RESPONSE_STATUS_UNAUTHORIZED)
            return rc;
    }
    if (tried)
        return 0;
    /* No CA key to sign with: tell malformed requests apart, then say we cannot answer. */
    {
        OCSP_REQUEST *req = NULL;
        if (moat_pki_ocsp_request_parse(der, len, &req, err) != 0) {
            *status = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
        } else {
            OCSP_REQUEST_free(req);
            *status = OCSP_RESPONSE_STATUS_UNAUTHORIZED;
            moat_err_set(err, MOAT_E_STATE, "moat's CA has no key online to sign OCSP responses");
        }
    }
    ERR_clear_error();
    {
        moat_err_t e2 = {0};
        return moat_pki_ocsp_error(*status, out, out_len, &e2) != 0 ? e2.code : 0;
    }
}

static const char *status_name(int status)
{
    return OCSP_response_status_str(status);
}

static int serve(moat__request_t *r, size_t rest);

int moat__ocsp_serve(moat__request_t *r, const moat_site_t *site)
{
    size_t rest;
    /* Every request asks: the answer for all the others costs two compares, not the setup below. */
    if (!site->ca_publish || !path_is(&r->req.path, &rest))
        return 0;
    return serve(r, rest);
}

static int serve(moat__request_t *r, size_t rest)
{
    static _Thread_local char cache_control[96];
    moat_http_resp_t *resp = &r->resp;
    moat_http_req_t *req = &r->req;
    moat__ocsp_wgen_t *o = r->conn->wg->ocsp;
    unsigned char *der = NULL, *answer = NULL;
    size_t len = 0, alen = 0, end;
    int status = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, fresh = 1, can_cache, rc;
    cache_entry_t *hit = NULL;
    moat_err_t err = {0};
    uint64_t now = r->conn->w->loop.now_ms;

    if (req->method_id == MOAT_HTTP_POST) {
        der = (unsigned char *)r->post;
        len = r->post_len;
    } else if (req->method_id == MOAT_HTTP_GET || req->method_id == MOAT_HTTP_HEAD) {
        /* RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}. The base64
         * holds '/' and '+': taken from the raw path, never a normalised one (DESIGN traps). */
        for (end = rest; end < req->path.len && req->path.p[end] != '?'; end++)
            ;
        if (end > rest + 1 &&
            moat_pki_ocsp_get_decode(req->path.p + rest + 1, end - rest - 1, &der, &len, &err) != 0)
            der = NULL;
        else if (end <= rest + 1)
            moat_err_set(&err, MOAT_E_INVAL, "the OCSP GET request carries no request");
    } else {
        moat_http_resp_init(resp, req, 405);
        moat_http_resp_error(resp, 405);
        resp->allow = "GET, HEAD, POST";
        return 1;
    }

    /* Only cacheable requests are ever stored, so identical bytes found in the cache need no parsing. */
    if (der != NULL && o != NULL && len <= CACHE_KEY_MAX)
        hit = cache_find(o, der, len, now);
    can_cache = hit != NULL || (der != NULL && o != NULL && cacheable(der, len));
    if (hit != NULL) {
        answer = hit->resp;
        alen = hit->resp_len;
        status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
        fresh = 0;
    } else if (der != NULL && o != NULL) {
        rc = respond(o, der, len, &answer, &alen, &status, &err);
        if (rc != 0) {
            moat__conn_log(r->conn, MOAT_LOG_ERR, "OCSP: answering a request: %s", err.msg);
            status = OCSP_RESPONSE_STATUS_INTERNALERROR;
        }
    } else if (der != NULL) {
        /* Only reachable when the generation has no responder part at all (no CA). */
        status = OCSP_RESPONSE_STATUS_UNAUTHORIZED;
        moat_err_set(&err, MOAT_E_STATE, "this store has no CA (moat ca init)");
    }
    if (answer == NULL) {
        moat_err_t e2 = {0};
        if (moat_pki_ocsp_error(status, &answer, &alen, &e2) != 0) {
            moat__conn_log(r->conn, MOAT_LOG_ERR, "OCSP: building an error response: %s", e2.msg);
            moat_http_resp_init(resp, req, 500);
            moat_http_resp_error(resp, 500);
            if (der != (unsigned char *)r->post)
                moat_free(&der);
            return 1;
        }
    }
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL)
        moat__conn_log(r->conn, status == OCSP_RESPONSE_STATUS_INTERNALERROR ? MOAT_LOG_ERR : MOAT_LOG_INFO,
                       "OCSP: answered %s: %s", status_name(status), err.msg[0] ? err.msg : "-");

    moat_http_resp_init(resp, req, 200);
    resp->content_type = "application/ocsp-response";
    if (status == OCSP_RESPONSE_STATUS_SUCCESSFUL && can_cache) {
        uint64_t left_ms = hit != NULL ? hit->expires_ms - now : CACHE_SECS * 1000u;
        /* RFC 5019 §6.2: HTTP caches may keep it as long as the responder itself does. */
        snprintf(cache_control, sizeof(cache_control), "max-age=%llu, public, no-transform, must-revalidate",
                 (unsigned long long)(left_ms / 1000));
        (void)moat_http_resp_add_header(resp, "Cache-Control", cache_control);
        if (fresh)
            cache_put(o, der, len, answer, alen, now);
        fresh = 0; /* the cache owns it now */
    } else {
        /* Error statuses and nonce-bound answers are for this request only. */
        (void)moat_http_resp_add_header(resp, "Cache-Control", "no-store");
    }
    /* The head and the body are copied into the connection's buffer before this returns (send_resp), so
     * a thread-local copy outlives the call long enough. */
    {
        static _Thread_local char body[16384];
        if (alen > sizeof(body)) {
            moat_http_resp_init(resp, req, 500);
            moat_http_resp_error(resp, 500);
        } else {
            memcpy(body, answer, alen);
            resp->body = body;
            resp->content_length = alen;
        }
    }
    if (fresh)
        moat_free(&answer);
    if (der != (unsigned char *)r->post)
        moat_free(&der);
    return 1;
}
