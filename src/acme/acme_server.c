/*
 * The ACME server (RFC 8555): routing under /acme/, the JWS checks every POST goes through (nonce, url,
 * jwk or kid as the endpoint wants, signature), the directory, nonces, accounts with external account
 * binding, and key rollover. Orders and what hangs off them are in acme_order.c.
 */
#include "acme/acme_server_int.h"
#include "pki/pki.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <time.h>

void moat_acme_response_dispose(moat_acme_response_t *r)
{
    moat_free(&r->body);
}

int moat__acme_random_id(char *out)
{
    unsigned char raw[ACME_ID_LEN / 2];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    moat_hex_lower(raw, sizeof raw, out);
    return 0;
}

int moat__acme_random_token(char *out)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    return moat_b64url_encode(raw, sizeof raw, out, ACME_TOKEN_LEN + 1) == ACME_TOKEN_LEN ? 0 : -1;
}

void moat__acme_time(int64_t t, char *out, size_t outsz)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void moat__acme_url(const acme_ctx_t *c, const char *kind, const char *id, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s/%s/%s", c->base, kind, id);
    if (n < 0 || (size_t)n >= outsz)
        out[0] = '\0'; /* ids and hosts are bounded well below the buffers: never a cut URL */
}

int moat__acme_reply_json(acme_ctx_t *c, int status, json_t *doc)
{
    char *text = doc != NULL ? moat_acme_json_dump(doc) : NULL;
    json_decref(doc);
    if (text == NULL)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
    c->resp->status = status;
    c->resp->content_type = "application/json";
    c->resp->body = text;
    c->resp->body_len = strlen(text);
    return 0;
}

void moat__acme_link(acme_ctx_t *c, const char *url, const char *rel)
{
    if (c->resp->nlinks < MOAT_ARRAY_LEN(c->resp->link))
        snprintf(c->resp->link[c->resp->nlinks++], sizeof c->resp->link[0], "<%s>;rel=\"%s\"", url, rel);
}

/* ---- directory and nonces -------------------------------------------------------------------------- */

static int directory(acme_ctx_t *c)
{
    char u[8][400];
    static const char *const names[] = {"newNonce",   "newAccount", "newOrder",
                                        "revokeCert", "keyChange",  "renewalInfo"};
    static const char *const paths[] = {"new-nonce",   "new-account", "new-order",
                                        "revoke-cert", "key-change",  "renewal-info"};
    json_t *d = json_object();
    for (size_t i = 0; d != NULL && i < MOAT_ARRAY_LEN(names); i++) {
        snprintf(u[i], sizeof u[i], "%s/%s", c->base, paths[i]);
        json_object_set_new(d, names[i], json_string(u[i]));
    }
    const moat_acme_server_conf_t *conf = c->req->conf;
    json_t *meta =
        json_pack("{sbs{ss}}", "externalAccountRequired", conf->eab_required ? 1 : 0, "profiles",
                  conf->profile == MOAT_PKI_PROFILE_CLIENT ? "client" : "server",
                  conf->profile == MOAT_PKI_PROFILE_CLIENT ? "certificates for clients (clientAuth)"
                                                           : "certificates for TLS servers (serverAuth)");
    if (d != NULL && meta != NULL)
        json_object_set_new(d, "meta", meta);
    else
        json_decref(meta);
    return moat__acme_reply_json(c, 200, d);
}

/* ---- accounts -------------------------------------------------------------------------------------- */

/* The account document as served: status, contact, orders (the stored jwk stays inside). */
static json_t *account_view(acme_ctx_t *c, const char *id, const json_t *doc)
{
    char orders[400];
    snprintf(orders, sizeof orders, "%s/acct/%s/orders", c->base, id);
    json_t *v = json_pack("{sOsOss}", "status", json_object_get(doc, "status"), "contact",
                          json_object_get(doc, "contact"), "orders", orders);
    if (v != NULL && json_object_get(doc, "termsOfServiceAgreed") != NULL)
        json_object_set(v, "termsOfServiceAgreed", json_object_get(doc, "termsOfServiceAgreed"));
    return v;
}

static int save_account(acme_ctx_t *c, const char *id, const char *thumb, json_t *doc, int64_t created)
{
    moat_store_acme_obj_t o = {0};
    moat_err_t err = {0};
    o.kind = MOAT_STORE_ACME_ACCOUNT;
    (void)moat_strlcpy(o.id, id, sizeof o.id);
    (void)moat_strlcpy(o.lookup, thumb, sizeof o.lookup);
    (void)moat_strlcpy(o.status, moat_acme_json_str(doc, "status"), sizeof o.status);
    o.created = created;
    o.doc = moat_acme_json_dump(doc);
    int rc = o.doc != NULL ? moat_store_acme_put(c->st, &o, &err) : MOAT_E_NOMEM;
    free(o.doc);
    if (rc != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "saving the account: %s",
                                     err.msg);
    return 0;
}

/* RFC 8555 §7.3: contact URLs are mailto: only here (moat sends no mail, but keeps what it is told). */
static int check_contact(acme_ctx_t *c, const json_t *contact)
{
    size_t i;
    json_t *v;
    if (contact == NULL)
        return 0;
    if (!json_is_array(contact) || json_array_size(contact) > 8)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                     "contact must be a list of at most 8 URLs");
    json_array_foreach(contact, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL || strncmp(s, "mailto:", 7) != 0 || strlen(s) > 256 || strchr(s, ',') != NULL)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                         "contact \"%.64s\" is not one mailto: URL",
                                         s ? s : "(not a string)");
    }
    return 0;
}

/* RFC 8555 §7.3.4: the binding is a JWS by the EAB key (HS256) over the account key, for this url. */
static int check_eab(acme_ctx_t *c, const json_t *eab, const json_t *jwk, char *kid_out, size_t kidsz)
{
    moat_acme_jws_t inner;
    moat_acme_problem_t p = {0};
    moat_err_t err = {0};
    char *text = moat_acme_json_dump(eab);
    int rc = -1;
    kid_out[0] = '\0';
    if (text == NULL)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
    /* The inner JWS is HMAC-signed, which moat_acme_jws_parse refuses for account keys: read it here. */
    json_t *o = moat_acme_json_parse(text, strlen(text), &err);
    free(text);
    memset(&inner, 0, sizeof inner);
    (void)p;
    const char *prot = o ? moat_acme_json_str(o, "protected") : NULL,
               *pay = o ? moat_acme_json_str(o, "payload") : NULL,
               *sig = o ? moat_acme_json_str(o, "signature") : NULL;
    unsigned char *hdr = NULL, *payload = NULL, *sigb = NULL, *key = NULL;
    size_t hl = 0, pl = 0, sl = 0, kl = 0;
    json_t *h = NULL, *pj = NULL;
    char account[MOAT_STORE_ACME_ID_MAX];
    if (prot == NULL || pay == NULL || sig == NULL ||
        moat_b64url_decode(prot, strlen(prot), &hdr, &hl, &err) ||
        moat_b64url_decode(pay, strlen(pay), &payload, &pl, &err) ||
        moat_b64url_decode(sig, strlen(sig), &sigb, &sl, &err) ||
        (h = moat_acme_json_parse((char *)hdr, hl, &err)) == NULL ||
        (pj = moat_acme_json_parse((char *)payload, pl, &err)) == NULL) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "externalAccountBinding is not a JWS: %s",
                              err.msg);
        goto out;
    }
    const char *alg = moat_acme_json_str(h, "alg"), *kid = moat_acme_json_str(h, "kid"),
               *url = moat_acme_json_str(h, "url");
    char want_url[400];
    snprintf(want_url, sizeof want_url, "%s/new-account", c->base);
    if (alg == NULL || strcmp(alg, "HS256") != 0 || kid == NULL || url == NULL ||
        strcmp(url, want_url) != 0 || json_object_get(h, "nonce") != NULL) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "externalAccountBinding needs alg HS256, a kid, url %s and no nonce", want_url);
        goto out;
    }
    if (!json_equal(pj, (json_t *)jwk)) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "externalAccountBinding payload is not the account key of this request");
        goto out;
    }
    if (moat_store_acme_eab_get(c->st, kid, &key, &kl, account, sizeof account, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                              "external account key \"%.64s\" is not known to this server", kid);
        goto out;
    }
    unsigned char mac[32];
    unsigned int ml = 0;
    size_t inl = strlen(prot) + 1 + strlen(pay);
    char *input = moat_malloc(inl + 1);
    if (input != NULL) {
        snprintf(input, inl + 1, "%s.%s", prot, pay);
        (void)HMAC(EVP_sha256(), key, (int)kl, (unsigned char *)input, inl, mac, &ml);
    }
    moat_free(&input);
    if (ml != 32 || sl != 32 || CRYPTO_memcmp(mac, sigb, 32) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                              "externalAccountBinding signature does not verify with key \"%.64s\"", kid);
        goto out;
    }
    if (account[0] != '\0') {
        moat_acme_problem_set(
            &c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
            "external account key \"%.64s\" has enrolled an account already; mint another with "
            "'moat acme eab new'",
            kid);
        goto out;
    }
    (void)moat_strlcpy(kid_out, kid, kidsz);
    rc = 0;
out:
    if (key != NULL)
        moat_free_secret(&key, kl);
    moat_free(&hdr);
    moat_free(&payload);
    moat_free(&sigb);
    json_decref(h);
    json_decref(pj);
    json_decref(o);
    return rc;
}

static int new_account(acme_ctx_t *c)
{
    const json_t *pl = c->jws.payload;
    const json_t *jwk = c->jws.jwk;
    char thumb[64], id[ACME_ID_LEN + 1], url[400], eab_kid[MOAT_STORE_ACME_LOOKUP_MAX];
    moat_store_acme_obj_t existing = {0};
    moat_err_t err = {0};

    if (pl == NULL)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "newAccount needs a payload");
    if (moat_acme_jwk_thumbprint(jwk, thumb, sizeof thumb, &err) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_PUBLIC_KEY, "%s", err.msg);
    if (moat_store_acme_find(c->st, MOAT_STORE_ACME_ACCOUNT, thumb, &existing, &err) == 0) {
        /* RFC 8555 §7.3.1: the key has an account: answer with it, change nothing. */
        json_t *doc = moat_acme_json_parse(existing.doc, strlen(existing.doc), &err);
        moat__acme_url(c, "acct", existing.id, c->resp->location, sizeof c->resp->location);
        int rc = doc ? moat__acme_reply_json(c, 200, account_view(c, existing.id, doc)) : -1;
        json_decref(doc);
        moat_store_acme_obj_dispose(&existing);
        if (rc != 0 && c->prob.detail[0] == '\0')
            moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "stored account does not parse");
        return rc;
    }
    if (json_is_true(json_object_get(pl, "onlyReturnExisting")))
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_ACCOUNT_DOES_NOT_EXIST,
                                     "no account has this key");
    if (check_contact(c, json_object_get(pl, "contact")) != 0)
        return -1;
    const json_t *eab = json_object_get(pl, "externalAccountBinding");
    eab_kid[0] = '\0';
    if (eab == NULL && c->req->conf->eab_required)
        return moat_acme_problem_set(
            &c->prob, MOAT_ACME_PROB_EXTERNAL_ACCOUNT_REQUIRED,
            "this server enrolls accounts with an external account binding only; ask its "
            "administrator for a key id and HMAC key ('moat acme eab new')");
    if (eab != NULL && check_eab(c, eab, jwk, eab_kid, sizeof eab_kid) != 0)
        return -1;
    if (moat__acme_random_id(id) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "no randomness");
    json_t *contact = json_object_get(pl, "contact");
    json_t *doc = json_pack("{sssosOsbss}", "status", "valid", "contact",
                            contact ? json_incref(contact) : json_array(), "jwk", jwk, "termsOfServiceAgreed",
                            json_is_true(json_object_get(pl, "termsOfServiceAgreed")), "eab", eab_kid);
    if (doc == NULL)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
    int rc = save_account(c, id, thumb, doc, c->now);
    if (rc == 0 && eab_kid[0] != '\0' && moat_store_acme_eab_bind(c->st, eab_kid, id, &err) != 0)
        rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED, "%s", err.msg);
    if (rc == 0 && moat_store_audit_add(c->st, "acme.account", id,
                                        eab_kid[0] ? eab_kid : "no external binding", &err) != 0)
        rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
    if (rc == 0) {
        moat__acme_url(c, "acct", id, url, sizeof url);
        (void)moat_strlcpy(c->resp->location, url, sizeof c->resp->location);
        rc = moat__acme_reply_json(c, 201, account_view(c, id, doc));
    }
    json_decref(doc);
    return rc;
}

/* POST to the account URL: read it, change its contact, or deactivate it (RFC 8555 §7.3.2, §7.3.6). */
static int account(acme_ctx_t *c, const char *id)
{
    if (strcmp(id, c->acct.id) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED, "this is another account");
    const json_t *pl = c->jws.payload;
    int changed = 0;
    if (pl != NULL) {
        const json_t *contact = json_object_get(pl, "contact");
        const char *status = moat_acme_json_str(pl, "status");
        if (contact != NULL) {
            if (check_contact(c, contact) != 0)
                return -1;
            json_object_set(c->acct_doc, "contact", (json_t *)contact);
            changed = 1;
        }
        if (status != NULL) {
            if (strcmp(status, "deactivated") != 0)
                return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                             "an account's status can only be set to deactivated");
            json_object_set_new(c->acct_doc, "status", json_string("deactivated"));
            changed = 1;
        }
    }
    if (changed && save_account(c, id, c->acct.lookup, c->acct_doc, c->acct.created) != 0)
        return -1;
    moat__acme_url(c, "acct", id, c->resp->location, sizeof c->resp->location);
    return moat__acme_reply_json(c, 200, account_view(c, id, c->acct_doc));
}

/* RFC 8555 §7.3.5: the payload is a JWS by the new key over {account, oldKey}. */
static int key_change(acme_ctx_t *c)
{
    moat_acme_jws_t inner;
    moat_acme_problem_t p = {0};
    moat_err_t err = {0};
    EVP_PKEY *newkey = NULL;
    char *text = c->jws.payload ? moat_acme_json_dump(c->jws.payload) : NULL;
    char acct_url[400], thumb[64];
    moat_store_acme_obj_t other = {0};
    int rc = -1;

    if (text == NULL)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "keyChange needs a JWS as payload");
    if (moat_acme_jws_parse(text, strlen(text), &inner, &p) != 0) {
        free(text);
        c->prob = p;
        c->prob.type = c->prob.type == MOAT_ACME_PROB_BAD_NONCE ? MOAT_ACME_PROB_MALFORMED : c->prob.type;
        if (strstr(p.detail, "nonce") != NULL)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "keyChange inner JWS: %s",
                                         p.detail);
        return -1;
    }
    free(text);
    moat__acme_url(c, "acct", c->acct.id, acct_url, sizeof acct_url);
    const json_t *old = json_object_get(c->acct_doc, "jwk");
    if (inner.jwk == NULL)
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "keyChange inner JWS must carry the new jwk");
    else if (strcmp(inner.url, c->jws.url) != 0)
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "keyChange inner url differs from the outer one");
    else if (inner.payload == NULL || moat_acme_json_str(inner.payload, "account") == NULL ||
             strcmp(moat_acme_json_str(inner.payload, "account"), acct_url) != 0)
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "keyChange inner payload must name account %s", acct_url);
    else if (!json_equal(json_object_get(inner.payload, "oldKey"), (json_t *)old))
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "keyChange oldKey is not this account's key");
    else if (moat_acme_jwk_to_pkey(inner.jwk, &newkey, &err) != 0)
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_PUBLIC_KEY, "new key: %s", err.msg);
    else if (moat_acme_jws_verify(&inner, newkey, &c->prob) != 0)
        ;
    else if (moat_acme_jwk_thumbprint(inner.jwk, thumb, sizeof thumb, &err) != 0)
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_PUBLIC_KEY, "%s", err.msg);
    else if (moat_store_acme_find(c->st, MOAT_STORE_ACME_ACCOUNT, thumb, &other, &err) == 0) {
        moat__acme_url(c, "acct", other.id, c->resp->location, sizeof c->resp->location);
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "the new key belongs to another account");
        c->prob.status = 409;
        moat_store_acme_obj_dispose(&other);
    } else {
        json_object_set(c->acct_doc, "jwk", (json_t *)inner.jwk);
        if (save_account(c, c->acct.id, thumb, c->acct_doc, c->acct.created) == 0 &&
            moat_store_audit_add(c->st, "acme.key-change", c->acct.id, thumb, &err) == 0)
            rc = moat__acme_reply_json(c, 200, account_view(c, c->acct.id, c->acct_doc));
        else if (c->prob.detail[0] == '\0')
            moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
    }
    EVP_PKEY_free(newkey);
    moat_acme_jws_dispose(&inner);
    return rc;
}

/* ---- the JWS checks every POST passes -------------------------------------------------------------- */

typedef enum { AUTH_KID, AUTH_JWK, AUTH_EITHER } auth_t;

static int authenticate(acme_ctx_t *c, auth_t want)
{
    moat_err_t err = {0};
    char url[700];
    EVP_PKEY *key = NULL;

    if (c->req->content_type == NULL || strncmp(c->req->content_type, "application/jose+json", 21) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                     "ACME requests are POSTs of Content-Type application/jose+json");
    if (moat_acme_jws_parse(c->req->body ? c->req->body : "", c->req->body_len, &c->jws, &c->prob) != 0)
        return -1;
    if (moat_acme_nonce_use(moat__acme_nonces(c->svc), c->jws.nonce) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_NONCE,
                                     "nonce is unknown, used before or too old; fetch a new one and retry");
    /* RFC 8555 §6.4: the url in the protected header must be the URL the request was sent to. */
    snprintf(url, sizeof url, "https://%s%s", c->req->host, c->req->path);
    if (strcmp(c->jws.url, url) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                                     "JWS url \"%.200s\" is not the URL this request was sent to (%.200s)",
                                     c->jws.url, url);
    if (c->jws.jwk != NULL) {
        if (want == AUTH_KID)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                         "this endpoint wants a kid (the account URL), not a jwk");
        if (moat_acme_jwk_to_pkey(c->jws.jwk, &key, &err) != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_PUBLIC_KEY, "%s", err.msg);
    } else {
        char prefix[400];
        if (want == AUTH_JWK)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                         "this endpoint wants the account key as a jwk, not a kid");
        snprintf(prefix, sizeof prefix, "%s/acct/", c->base);
        size_t pl = strlen(prefix);
        const char *id = c->jws.kid;
        if (strncmp(id, prefix, pl) != 0 || strlen(id + pl) != ACME_ID_LEN ||
            moat_store_acme_get(c->st, MOAT_STORE_ACME_ACCOUNT, id + pl, &c->acct, &err) != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_ACCOUNT_DOES_NOT_EXIST,
                                         "kid \"%.200s\" is no account of this server", id);
        if ((c->acct_doc = moat_acme_json_parse(c->acct.doc, strlen(c->acct.doc), &err)) == NULL ||
            moat_acme_jwk_to_pkey(json_object_get(c->acct_doc, "jwk"), &key, &err) != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "stored account: %s",
                                         err.msg);
        if (strcmp(c->acct.status, "valid") != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED, "account is %s",
                                         c->acct.status);
    }
    int rc = moat_acme_jws_verify(&c->jws, key, &c->prob);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- routing --------------------------------------------------------------------------------------- */

/* When <path> is "<prefix><id>" (one segment) copies the id and returns 1. */
static int segment(const char *path, const char *prefix, char *id, size_t idsz, const char *suffix)
{
    size_t pl = strlen(prefix), sl = suffix ? strlen(suffix) : 0;
    if (strncmp(path, prefix, pl) != 0)
        return 0;
    const char *rest = path + pl;
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= idsz)
        return 0;
    if (suffix != NULL ? strcmp(rest + n, suffix) != 0 : rest[n] != '\0')
        return 0;
    (void)sl;
    memcpy(id, rest, n);
    id[n] = '\0';
    return 1;
}

static int route_post(acme_ctx_t *c, const char *p)
{
    char id[MOAT_STORE_ACME_LOOKUP_MAX];
    if (strcmp(p, "/new-account") == 0)
        return authenticate(c, AUTH_JWK) == 0 ? new_account(c) : -1;
    if (strcmp(p, "/revoke-cert") == 0)
        return authenticate(c, AUTH_EITHER) == 0 ? moat__acme_revoke(c) : -1;
    if (authenticate(c, AUTH_KID) != 0)
        return -1;
    if (strcmp(p, "/new-order") == 0)
        return moat__acme_new_order(c);
    if (strcmp(p, "/key-change") == 0)
        return key_change(c);
    if (segment(p, "/acct/", id, sizeof id, "/orders"))
        return moat__acme_orders_list(c, id);
    if (segment(p, "/acct/", id, sizeof id, NULL))
        return account(c, id);
    if (segment(p, "/order/", id, sizeof id, "/finalize"))
        return moat__acme_finalize(c, id);
    if (segment(p, "/order/", id, sizeof id, NULL))
        return moat__acme_order(c, id);
    if (segment(p, "/authz/", id, sizeof id, NULL))
        return moat__acme_authz(c, id);
    if (segment(p, "/chall/", id, sizeof id, NULL))
        return moat__acme_chall(c, id);
    if (segment(p, "/cert/", id, sizeof id, NULL))
        return moat__acme_cert(c, id);
    moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "no ACME resource at %.200s", c->req->path);
    c->prob.status = 404;
    return -1;
}

static int route(acme_ctx_t *c)
{
    const char *p = c->req->path + 5; /* after "/acme" */
    const char *m = c->req->method;
    char id[MOAT_STORE_ACME_LOOKUP_MAX];
    int get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0;
    if (strcmp(p, "/directory") == 0 && (get || head))
        return directory(c);
    if (strcmp(p, "/new-nonce") == 0 && (get || head)) {
        c->resp->status = head ? 200 : 204; /* RFC 8555 §7.2 */
        return 0;
    }
    if (segment(p, "/renewal-info/", id, sizeof id, NULL) && (get || head))
        return moat__acme_renewal_info(c, id);
    if (strcmp(m, "POST") == 0)
        return route_post(c, p);
    moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "%s is not allowed on %.200s", m, c->req->path);
    c->prob.status = 405;
    return -1;
}

void moat_acme_handle(moat_acme_service_t *svc, moat_store_t *st, const moat_acme_request_t *req,
                      moat_acme_response_t *resp)
{
    acme_ctx_t c;
    moat_err_t err = {0};
    int rc, began = 0;

    memset(&c, 0, sizeof c);
    memset(resp, 0, sizeof *resp);
    resp->retry_after = -1;
    c.svc = svc;
    c.st = st;
    c.req = req;
    c.resp = resp;
    c.now = (int64_t)time(NULL);
    snprintf(c.base, sizeof c.base, "https://%s/acme", req->host);
    if (strlen(req->host) > 256 || strchr(req->host, '/') != NULL) {
        rc = moat_acme_problem_set(&c.prob, MOAT_ACME_PROB_MALFORMED, "bad Host");
    } else if (strcmp(req->method, "POST") == 0 && moat_store_begin(st, &err) != 0) {
        rc = moat_acme_problem_set(&c.prob, MOAT_ACME_PROB_SERVER_INTERNAL, "the store is busy: %s", err.msg);
        resp->retry_after = 1;
    } else {
        began = strcmp(req->method, "POST") == 0;
        rc = route(&c);
    }
    if (began) {
        if (rc == 0 && moat_store_commit(st, &err) != 0)
            rc = moat_acme_problem_set(&c.prob, MOAT_ACME_PROB_SERVER_INTERNAL, "saving: %s", err.msg);
        else if (rc != 0)
            moat_store_rollback(st);
    }
    if (rc == 0 && resp->validate[0] != '\0' &&
        moat__acme_queue_validation(svc, resp->validate, req->conf->http01_port, req->conf->tls_alpn01_port,
                                    req->conf->dns_resolver) != 0)
        resp->retry_after =
            5; /* the queue is full: the challenge stays processing; the next poll sees that */
    if (rc != 0) {
        moat_free(&resp->body);
        moat_acme_problem_t p = c.prob;
        int status = p.status ? p.status : 500;
        json_t *doc = moat_acme_problem_json(&p);
        char *text = doc ? moat_acme_json_dump(doc) : NULL;
        json_decref(doc);
        resp->status = status;
        resp->content_type = text ? "application/problem+json" : NULL;
        resp->body = text;
        resp->body_len = text ? strlen(text) : 0;
    }
    /* RFC 8555 §6.5: every response to a POST and to newNonce carries a fresh nonce; a badNonce most of all.
     */
    if (moat_acme_nonce_new(moat__acme_nonces(svc), resp->nonce, sizeof resp->nonce) != 0)
        resp->nonce[0] = '\0';
    char dir[400];
    snprintf(dir, sizeof dir, "%s/directory", c.base);
    moat__acme_link(&c, dir, "index");
    moat_acme_jws_dispose(&c.jws);
    moat_store_acme_obj_dispose(&c.acct);
    json_decref(c.acct_doc);
}
