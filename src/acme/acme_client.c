/*
 * The ACME client's protocol layer (RFC 8555 §6-7): the directory, nonces, JWS-signed POSTs with the
 * account key (ES256), badNonce retried, problem documents turned into errors for people, and the
 * account (registered once, EAB when the server requires it).
 *
 * Everything here blocks, bounded by deadlines: it runs on the ACME thread, never on a worker's loop.
 */
#include "acme/acme_int.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <string.h>

#define ACME_TIMEOUT_MS 30000
#define ACME_MAX_BODY (1u << 20)
#define ACME_NONCE_RETRIES 10

void moat__acme_resp_dispose(moat__acme_resp_t *r)
{
    json_decref(r->json);
    r->json = NULL;
    moat_free(&r->body);
    r->body_len = 0;
}

/* One HTTP exchange with the ACME server; keeps the nonce it sends back. */
static int exchange(moat__acme_client_t *c, const char *method, const char *url, const char *body,
                    moat__acme_resp_t *out, moat_err_t *err)
{
    moat_http_fetch_t f = {.method = method,
                           .url = url,
                           .https = 1,
                           .trust = c->trust,
                           .accept = "application/json, application/pem-certificate-chain",
                           .content_type = body != NULL ? "application/jose+json" : NULL,
                           .body = body,
                           .body_len = body != NULL ? strlen(body) : 0,
                           .max_body = ACME_MAX_BODY,
                           .timeout_ms = ACME_TIMEOUT_MS,
                           .stop = c->stop};
    moat_http_client_resp_t r;
    int rc;

    memset(out, 0, sizeof(*out));
    out->retry_after = -1;
    if ((rc = moat_http_fetch(&f, &r, &out->body, &out->body_len, err)) != 0) {
        moat_err_prefix(err, "ACME server");
        return rc;
    }
    out->status = r.status;
    out->retry_after = r.retry_after;
    if (r.status >= 400)
        c->retry_after = r.retry_after;
    moat_strlcpy(out->location, r.location, sizeof(out->location));
    moat_strlcpy(out->content_type, r.content_type, sizeof(out->content_type));
    out->nalternates = r.nalternates;
    for (size_t i = 0; i < r.nalternates; i++)
        moat_strlcpy(out->alternates[i], r.alternates[i], sizeof(out->alternates[i]));
    if (r.nonce[0] != '\0')
        moat_strlcpy(c->nonce, r.nonce, sizeof(c->nonce));
    if (strncmp(r.content_type, "application/json", 16) == 0 ||
        strncmp(r.content_type, "application/problem+json", 24) == 0) {
        moat_err_t je = {0};
        out->json = moat_acme_json_parse((const char *)out->body, out->body_len, &je);
    }
    return 0;
}

/* Fills <err> from a problem document (RFC 7807, RFC 8555 §6.7) or the bare status. */
int moat__acme_problem(const moat__acme_resp_t *r, const char *doing, moat_err_t *err)
{
    const char *type = moat_acme_json_str(r->json, "type");
    const char *detail = moat_acme_json_str(r->json, "detail");
    const char *shortt =
        type != NULL && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0 ? type + 27 : type;
    int code = MOAT_E_INVAL;

    if (shortt != NULL && strcmp(shortt, "rateLimited") == 0)
        code = MOAT_E_AGAIN;
    if (shortt != NULL)
        moat_err_set(err, code, "%s: the ACME server answered %d %s: %.150s", doing, r->status, shortt,
                     detail != NULL ? detail : "(no detail)");
    else
        moat_err_set(err, code, "%s: the ACME server answered HTTP %d", doing, r->status);
    if (shortt != NULL && strcmp(shortt, "rateLimited") == 0)
        moat_err_hint(err, "rate limited; moat retries after the time the server gave");
    else if (shortt != NULL && strcmp(shortt, "accountDoesNotExist") == 0)
        moat_err_hint(err, "the account is unknown to this server; moat registers a new one on the next try");
    else if (shortt != NULL && strcmp(shortt, "externalAccountRequired") == 0)
        moat_err_hint(err, "the CA requires external account binding: set acme.eab {kid, hmac_file}");
    else if (shortt != NULL && strcmp(shortt, "userActionRequired") == 0)
        moat_err_hint(err, "the terms of service changed or need agreeing: set acme.accept_terms: true");
    return code;
}

int moat__acme_expect(moat__acme_resp_t *r, int status, const char *doing, moat_err_t *err)
{
    int rc;
    if (r->status == status)
        return 0;
    rc = moat__acme_problem(r, doing, err);
    moat__acme_resp_dispose(r);
    return rc;
}

int moat__acme_get(moat__acme_client_t *c, const char *url, moat__acme_resp_t *out, moat_err_t *err)
{
    return exchange(c, "GET", url, NULL, out, err);
}

int moat__acme_directory(moat__acme_client_t *c, moat_err_t *err)
{
    moat__acme_resp_t r;
    int rc;

    if ((rc = exchange(c, "GET", c->directory_url, NULL, &r, err)) != 0)
        return rc;
    if (r.status != 200 || !json_is_object(r.json)) {
        rc = r.status != 200
                 ? moat__acme_problem(&r, "reading the ACME directory", err)
                 : moat_err_set(err, MOAT_E_INVAL, "the ACME directory %s is not JSON", c->directory_url);
        moat__acme_resp_dispose(&r);
        return rc;
    }
    json_decref(c->dir);
    c->dir = json_incref(r.json);
    moat__acme_resp_dispose(&r);
    if (moat__acme_dir_url(c, "newNonce") == NULL || moat__acme_dir_url(c, "newAccount") == NULL ||
        moat__acme_dir_url(c, "newOrder") == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "the ACME directory %s lacks newNonce, newAccount or newOrder",
                            c->directory_url);
    return 0;
}

const char *moat__acme_dir_url(const moat__acme_client_t *c, const char *name)
{
    return moat_acme_json_str(c->dir, name);
}

static int fresh_nonce(moat__acme_client_t *c, moat_err_t *err)
{
    moat__acme_resp_t r;
    int rc;

    c->nonce[0] = '\0';
    if ((rc = exchange(c, "GET", moat__acme_dir_url(c, "newNonce"), NULL, &r, err)) != 0)
        return rc;
    moat__acme_resp_dispose(&r);
    if (c->nonce[0] == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "the ACME server's newNonce gave no Replay-Nonce");
    return 0;
}

int moat__acme_post(moat__acme_client_t *c, const char *url, const json_t *payload, int use_jwk,
                    moat__acme_resp_t *out, moat_err_t *err)
{
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (url == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "the ACME server gave no URL for this step");
    for (int attempt = 0;; attempt++) {
        char nonce[sizeof(c->nonce)];
        char *body;
        const char *type;

        if (c->nonce[0] == '\0' && (rc = fresh_nonce(c, err)) != 0)
            break;
        moat_strlcpy(nonce, c->nonce, sizeof(nonce));
        c->nonce[0] = '\0'; /* each nonce is good for one request */
        if ((body = moat_acme_jws_sign(c->account_key, use_jwk ? NULL : c->account_url, nonce, url, payload,
                                       err)) == NULL) {
            rc = err->code;
            break;
        }
        rc = exchange(c, "POST", url, body, out, err);
        moat_free(&body);
        if (rc != 0)
            break;
        /* RFC 8555 §6.5: a badNonce answer carries a fresh nonce; retry with it. */
        type = moat_acme_json_str(out->json, "type");
        if (out->status == 400 && type != NULL && strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0 &&
            attempt < ACME_NONCE_RETRIES) {
            moat__acme_resp_dispose(out);
            c->bad_nonces++;
            /* The nonce it sent may be refused as well; a fresh one from newNonce is the safe choice. */
            c->nonce[0] = '\0';
            continue;
        }
        break;
    }
    return rc;
}

/* RFC 8555 §7.3.4: the external account binding, a JWS over the account's JWK with the CA's MAC key. */
static json_t *eab_binding(moat__acme_client_t *c, const char *url, moat_err_t *err)
{
    unsigned char *mac_key = NULL, mac[64];
    size_t key_len = 0;
    unsigned mac_len = 0;
    char *ph = NULL, *ph64 = NULL, *pl = NULL, *pl64 = NULL, *input = NULL, *sig64 = NULL;
    json_t *out = NULL, *phj;

    if (moat_b64url_decode(c->eab_hmac, strlen(c->eab_hmac), &mac_key, &key_len, err) != 0) {
        moat_err_prefix(err, "the eab hmac_file");
        return NULL;
    }
    phj = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", c->eab_kid, "url", url);
    if (phj == NULL || (ph = moat_acme_json_dump(phj)) == NULL ||
        (pl = moat_acme_json_dump(c->jwk)) == NULL ||
        (ph64 = moat_b64url_encode_new((unsigned char *)ph, strlen(ph))) == NULL ||
        (pl64 = moat_b64url_encode_new((unsigned char *)pl, strlen(pl))) == NULL ||
        (input = moat_malloc(strlen(ph64) + strlen(pl64) + 2)) == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "out of memory building the account binding");
        goto out;
    }
    snprintf(input, strlen(ph64) + strlen(pl64) + 2, "%s.%s", ph64, pl64);
    if (HMAC(EVP_sha256(), mac_key, (int)key_len, (unsigned char *)input, strlen(input), mac, &mac_len) ==
        NULL) {
        moat_err_ossl(err, MOAT_E_PKI, "computing the account binding MAC");
        goto out;
    }
    if ((sig64 = moat_b64url_encode_new(mac, mac_len)) == NULL ||
        (out = json_pack("{s:s, s:s, s:s}", "protected", ph64, "payload", pl64, "signature", sig64)) == NULL)
        moat_err_set(err, MOAT_E_NOMEM, "out of memory building the account binding");
out:
    json_decref(phj);
    moat_free_secret(&mac_key, key_len);
    OPENSSL_cleanse(mac, sizeof(mac));
    moat_free(&ph);
    moat_free(&ph64);
    moat_free(&pl);
    moat_free(&pl64);
    moat_free(&input);
    moat_free(&sig64);
    return out;
}

int moat__acme_account(moat__acme_client_t *c, int known, moat_err_t *err)
{
    const char *url = moat__acme_dir_url(c, "newAccount");
    json_t *meta = json_object_get(c->dir, "meta"), *req;
    moat__acme_resp_t r;
    int rc;

    if (known)
        req = json_pack("{s:b}", "onlyReturnExisting", 1);
    else
        req = json_pack("{s:b}", "termsOfServiceAgreed", c->accept_terms ? 1 : 0);
    if (req == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building the account request");
    if (!known && c->email != NULL) {
        char contact[300];
        snprintf(contact, sizeof(contact), "mailto:%s", c->email);
        json_object_set_new(req, "contact", json_pack("[s]", contact));
    }
    if (!known && json_is_true(json_object_get(meta, "externalAccountRequired")) && c->eab_kid == NULL) {
        json_decref(req);
        moat_err_set(err, MOAT_E_PERM, "the ACME server %s requires an external account binding",
                     c->directory_url);
        return moat_err_hint(err, "set acme.eab {kid, hmac_file} with the values the CA gave");
    }
    if (!known && c->eab_kid != NULL) {
        json_t *b = eab_binding(c, url, err);
        if (b == NULL) {
            json_decref(req);
            return err->code;
        }
        json_object_set_new(req, "externalAccountBinding", b);
    }
    rc = moat__acme_post(c, url, req, 1, &r, err);
    json_decref(req);
    if (rc != 0)
        return rc;
    if (r.status != 200 && r.status != 201) {
        rc = moat__acme_problem(&r, known ? "looking up the ACME account" : "registering the ACME account",
                                err);
        moat__acme_resp_dispose(&r);
        return rc;
    }
    if (r.location[0] == '\0') {
        moat__acme_resp_dispose(&r);
        return moat_err_set(err, MOAT_E_INVAL, "the ACME server gave the account no URL (Location)");
    }
    moat_strlcpy(c->account_url, r.location, sizeof(c->account_url));
    moat__acme_resp_dispose(&r);
    return 0;
}

/* The key authorization of a challenge token (RFC 8555 §8.1): token "." thumbprint. */
int moat__acme_key_authz(const moat__acme_client_t *c, const char *token, char *out, size_t outsz,
                         moat_err_t *err)
{
    if ((size_t)snprintf(out, outsz, "%s.%s", token, c->thumbprint) >= outsz)
        return moat_err_set(err, MOAT_E_LIMIT, "a challenge token is too long");
    return 0;
}

int moat__acme_client_init(moat__acme_client_t *c, EVP_PKEY *account_key, moat_err_t *err)
{
    if ((c->jwk = moat_acme_jwk_from_pkey(account_key, err)) == NULL)
        return err->code;
    if (moat_acme_jwk_thumbprint(c->jwk, c->thumbprint, sizeof(c->thumbprint), err) != 0)
        return err->code;
    c->account_key = account_key;
    return 0;
}

void moat__acme_client_dispose(moat__acme_client_t *c)
{
    json_decref(c->jwk);
    json_decref(c->dir);
    c->jwk = c->dir = NULL;
}

int moat__acme_key_change(moat__acme_client_t *c, EVP_PKEY *new_key, moat_err_t *err)
{
    const char *url = moat__acme_dir_url(c, "keyChange");
    json_t *payload, *inner = NULL;
    moat__acme_resp_t r;
    char *text;
    int rc;

    if (url == NULL)
        return moat_err_set(err, MOAT_E_STATE, "the ACME server %s offers no key change", c->directory_url);
    if ((payload = json_pack("{s:s, s:O}", "account", c->account_url, "oldKey", c->jwk)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building a key change");
    text = moat_acme_jws_sign(new_key, NULL, NULL, url, payload, err);
    json_decref(payload);
    if (text == NULL || (inner = moat_acme_json_parse(text, strlen(text), err)) == NULL) {
        moat_free(&text);
        return err->code;
    }
    moat_free(&text);
    rc = moat__acme_post(c, url, inner, 0, &r, err);
    json_decref(inner);
    if (rc != 0)
        return rc;
    if (r.status != 200)
        rc = moat__acme_problem(&r, "changing the account key", err);
    moat__acme_resp_dispose(&r);
    return rc;
}
