/*
 * One renewal of a site's certificate: account, order, authorizations, challenges, finalize, download,
 * install through the key manager's checks. Every step that the ACME server remembers is written to the
 * store first (the order URL and the pending key), so that a server killed in the middle resumes the same
 * order on its next start instead of ordering again, and a pending key is never left without its order.
 */
#include "acme/acme_int.h"

#include "keymgr/keymgr.h"
#include "core/loop.h"
#include "pki/pki.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define POLL_LIMIT_MS 120000 /* an authorization or order still pending after this is retried later */
#define HOOK_TIMEOUT_MS 60000

void moat__acme_setting_name(char *out, size_t outsz, const char *what, const char *name)
{
    snprintf(out, outsz, "acme.%s.%s", what, name);
}

/* The account URL is kept per directory (a site may use another CA than the others). */
static void account_setting(char *out, size_t outsz, const char *directory)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char hex[17];
    SHA256((const unsigned char *)directory, strlen(directory), md);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    moat__acme_setting_name(out, outsz, "account", hex);
}

static int sleep_ms(long ms, const atomic_int *stop)
{
    uint64_t end = moat_clock_ms() + (uint64_t)ms;
    while (moat_clock_ms() < end) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (stop != NULL && atomic_load(stop))
            return MOAT_E_AGAIN;
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* A new EC P-256 key, never exportable, as the pending key of <name> (with a request naming <sans> when
 * <cn> is set), through the key manager; *id its row. */
static int new_key(moat_store_t *st, const char *name, const char *cn, const char *sans, int64_t *id,
                   moat_err_t *err)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    unsigned char *csr_der = NULL;
    size_t csr_len = 0;
    moat_store_blob_t blob;
    int rc, own = !moat_store_in_transaction(st);

    if ((rc = moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &key, err)) != 0)
        return rc;
    if (cn != NULL) {
        moat_pki_subject_t subj = {.cn = cn};
        if ((rc = moat_pki_csr_new(key, &subj, sans, &csr, err)) != 0 ||
            (rc = moat_pki_csr_to_der(csr, &csr_der, &csr_len, err)) != 0)
            goto out;
    }
    blob.data = csr_der;
    blob.len = csr_len;
    if (own && (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = moat_keymgr_key_add(st, name, key, "ec-p256", false, cn != NULL ? &blob : NULL, id, err)) !=
            0 ||
        (rc = moat_store_audit_add(st, "acme.key", name,
                                   cn != NULL ? "pending key for an ACME order" : "ACME account key", err)) !=
            0) {
        if (own)
            moat_store_rollback(st);
        goto out;
    }
    if (own)
        rc = moat_store_commit(st, err);
out:
    moat_free(&csr_der);
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    return rc;
}

static X509_STORE *trust_store(moat_store_t *st, const moat_strlist_t *names, moat_err_t *err)
{
    X509_STORE *xs;
    if (names->n == 0)
        return NULL;
    if ((xs = X509_STORE_new()) == NULL) {
        moat_err_set(err, MOAT_E_NOMEM, "allocating a trust store");
        return NULL;
    }
    for (size_t i = 0; i < names->n; i++) {
        moat_store_anchor_t a = {0};
        X509 *x = NULL;
        if (moat_store_anchor_get(st, names->v[i], &a, err) != 0 ||
            moat_pki_cert_parse(a.der.data, a.der.len, &x, err) != 0 || X509_STORE_add_cert(xs, x) != 1) {
            moat_err_prefix(err, "acme.trust \"%s\"", names->v[i]);
            if (err->code == MOAT_E_NOTFOUND)
                moat_err_hint(err, "add the ACME server's CA with: moat trust add FILE --name %s",
                              names->v[i]);
            moat_store_anchor_dispose(&a);
            X509_free(x);
            X509_STORE_free(xs);
            return NULL;
        }
        moat_store_anchor_dispose(&a);
        X509_free(x);
    }
    return xs;
}

/* The dns-01 hook: HOOK set|clear NAME VALUE, with a deadline. */
static int run_hook(const char *hook, const char *verb, const char *name, const char *value, moat_err_t *err)
{
    char *argv[] = {(char *)hook, (char *)verb, (char *)name, (char *)value, NULL};
    pid_t pid;
    int status = 0, e;
    uint64_t end = moat_clock_ms() + HOOK_TIMEOUT_MS;

    if ((e = posix_spawn(&pid, hook, NULL, NULL, argv, environ)) != 0)
        return moat_err_set(err, MOAT_E_IO, "running the dns_hook %s: %s", hook, strerror(e));
    if ((e = moat_child_wait(pid, end, &status)) < 0)
        return moat_err_set(err, MOAT_E_IO, "waiting for the dns_hook: %s", strerror(errno));
    if (e > 0)
        return moat_err_set(err, MOAT_E_IO, "the dns_hook %s %s did not finish within %d s", hook, verb,
                            HOOK_TIMEOUT_MS / 1000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return moat_err_set(err, MOAT_E_IO, "the dns_hook %s %s %s failed (exit status %d)", hook, verb, name,
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

typedef struct run {
    moat_store_t *st;
    const moat_site_t *site;
    const moat_acme_conf_t *conf;
    moat__acme_client_t c;
    char order_setting[200];
    char order_url[512];
    int64_t pending_id;
} run_t;

/* Waits (honouring Retry-After) until the object at <url> leaves "pending"/"processing". */
static int poll_object(run_t *r, const char *url, const char *doing, moat__acme_resp_t *out, moat_err_t *err)
{
    uint64_t end = moat_clock_ms() + POLL_LIMIT_MS;
    long wait = 500;
    for (;;) {
        const char *status;
        int rc = moat__acme_post(&r->c, url, NULL, 0, out, err);
        if (rc != 0)
            return rc;
        if (out->status != 200) {
            rc = moat__acme_problem(out, doing, err);
            moat__acme_resp_dispose(out);
            return rc;
        }
        status = moat_acme_json_str(out->json, "status");
        if (status == NULL || (strcmp(status, "pending") != 0 && strcmp(status, "processing") != 0))
            return 0;
        if (out->retry_after >= 0)
            wait = out->retry_after * 1000 > 10000 ? 10000 : (out->retry_after * 1000 ?: 500);
        moat__acme_resp_dispose(out);
        if (moat_clock_ms() + (uint64_t)wait > end)
            return moat_err_set(err, MOAT_E_AGAIN, "%s: still pending after %d s", doing,
                                POLL_LIMIT_MS / 1000);
        if (sleep_ms(wait, r->c.stop) != 0)
            return moat_err_set(err, MOAT_E_AGAIN, "%s: the server is stopping", doing);
        if (wait < 4000)
            wait *= 2;
    }
}

/* The error of an invalid authorization: the failed challenge's problem document. */
static int authz_failed(const json_t *authz, const char *ident, moat_err_t *err)
{
    json_t *chs = json_object_get(authz, "challenges"), *ch;
    size_t i;
    json_array_foreach(chs, i, ch)
    {
        json_t *e = json_object_get(ch, "error");
        if (json_is_object(e)) {
            const char *type = moat_acme_json_str(e, "type"), *detail = moat_acme_json_str(e, "detail");
            moat_err_set(err, MOAT_E_INVAL, "%s challenge for %s failed: %s: %.150s",
                         moat_acme_json_str(ch, "type") ? moat_acme_json_str(ch, "type") : "a", ident,
                         type && strncmp(type, "urn:ietf:params:acme:error:", 27) == 0
                             ? type + 27
                             : (type ? type : "error"),
                         detail ? detail : "(no detail)");
            return moat_err_hint(
                err, "check that the ACME server reaches this server for %s; moat retries later", ident);
        }
    }
    return moat_err_set(err, MOAT_E_INVAL, "the authorization for %s is invalid", ident);
}

static int site_has_challenge(const moat_acme_conf_t *conf, const char *type)
{
    if (conf->challenges.n == 0)
        return strcmp(type, "tls-alpn-01") == 0 || strcmp(type, "http-01") == 0;
    for (size_t i = 0; i < conf->challenges.n; i++)
        if (strcmp(conf->challenges.v[i], type) == 0)
            return 1;
    return 0;
}

/* Picks the challenge to answer: the first of the configured ones the server offers that this site can
 * answer (http-01 needs an http_listen, dns-01 a hook). */
static json_t *pick_challenge(run_t *r, json_t *authz, int wildcard)
{
    int is_ip = moat_pki_is_ip_literal(moat_acme_json_str(json_object_get(authz, "identifier"), "value")
                                           ? moat_acme_json_str(json_object_get(authz, "identifier"), "value")
                                           : "");
    static const char *const order[] = {"tls-alpn-01", "http-01", "dns-01"};
    const moat_strlist_t *pref = &r->conf->challenges;
    size_t n = pref->n > 0 ? pref->n : 2;
    for (size_t p = 0; p < n; p++) {
        const char *want = pref->n > 0 ? pref->v[p] : order[p];
        json_t *chs = json_object_get(authz, "challenges"), *ch;
        size_t i;
        if (strcmp(want, "http-01") == 0 && (r->site->nhttp_listen == 0 || wildcard))
            continue;
        /* RFC 8738 §6: an IP identifier is validated over reverse-DNS SNI, which moat does not answer. */
        if (strcmp(want, "tls-alpn-01") == 0 && (wildcard || is_ip))
            continue;
        if (!site_has_challenge(r->conf, want))
            continue;
        json_array_foreach(chs, i, ch)
        {
            const char *type = moat_acme_json_str(ch, "type");
            if (type != NULL && strcmp(type, want) == 0)
                return ch;
        }
    }
    return NULL;
}

/* The tls-alpn-01 certificate (RFC 8737 §3): self-signed for <ident> alone, with the critical
 * acmeIdentifier extension holding the SHA-256 of the key authorization. */
static int tlsalpn_cert(const char *ident, const char *key_authz, X509 **out_cert, EVP_PKEY **out_key,
                        moat_err_t *err)
{
    unsigned char md[SHA256_DIGEST_LENGTH], der[2 + SHA256_DIGEST_LENGTH];
    EVP_PKEY *key = NULL;
    X509 *x = X509_new();
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    GENERAL_NAMES *sans = NULL;
    char san[300];
    int rc;

    SHA256((const unsigned char *)key_authz, strlen(key_authz), md);
    der[0] = 0x04; /* the extension's value is the DER of an OCTET STRING holding the hash */
    der[1] = SHA256_DIGEST_LENGTH;
    memcpy(der + 2, md, sizeof(md));
    snprintf(san, sizeof(san), "%s:%s", moat_pki_is_ip_literal(ident) ? "IP" : "DNS", ident);
    if ((rc = moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &key, err)) != 0 ||
        (rc = moat_pki_sans_parse(san, &sans, err)) != 0)
        goto out;
    if (x == NULL || oid == NULL || val == NULL || ASN1_OCTET_STRING_set(val, der, sizeof(der)) != 1 ||
        (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, val)) == NULL || X509_set_version(x, 2) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                   (const unsigned char *)"acme", -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) == NULL || X509_set_pubkey(x, key) != 1 ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 1, X509V3_ADD_DEFAULT) != 1 ||
        X509_add_ext(x, ext, -1) != 1 || X509_sign(x, key, EVP_sha256()) <= 0) {
        rc = moat_err_ossl(err, MOAT_E_PKI, "making the tls-alpn-01 certificate for %s", ident);
        goto out;
    }
    *out_cert = x;
    *out_key = key;
    x = NULL;
    key = NULL;
out:
    GENERAL_NAMES_free(sans);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(val);
    ASN1_OBJECT_free(oid);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static int dns01_value(const char *key_authz, char *out, size_t outsz)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key_authz, strlen(key_authz), md);
    return moat_b64url_encode(md, sizeof(md), out, outsz) < 0 ? -1 : 0;
}

/* Answers one authorization and waits for its verdict. */
static int do_authz(run_t *r, const char *url, moat_err_t *err)
{
    moat__acme_resp_t a = {0}, cr = {0};
    json_t *ch, *ident_obj, *empty = NULL;
    const char *status, *type, *token, *ident, *ch_url;
    char key_authz[320], dns_name[300], dns_value[64];
    char type_buf[32], ident_buf[256], token_buf[128], url_buf[512], ch_status_buf[32];
    const char *ch_status = NULL;
    int rc, wildcard, answered = 0;

    if ((rc = moat__acme_post(&r->c, url, NULL, 0, &a, err)) != 0 ||
        (rc = moat__acme_expect(&a, 200, "reading an authorization", err)) != 0)
        return rc;
    status = moat_acme_json_str(a.json, "status");
    ident_obj = json_object_get(a.json, "identifier");
    ident = moat_acme_json_str(ident_obj, "value");
    wildcard = json_is_true(json_object_get(a.json, "wildcard"));
    if (ident == NULL)
        ident = "?";
    if (status != NULL && strcmp(status, "valid") == 0) {
        moat__acme_resp_dispose(&a);
        return 0;
    }
    if (status == NULL || strcmp(status, "pending") != 0) {
        rc = authz_failed(a.json, ident, err);
        moat__acme_resp_dispose(&a);
        return rc;
    }
    if ((ch = pick_challenge(r, a.json, wildcard)) == NULL) {
        rc = moat_err_set(err, MOAT_E_INVAL, "no challenge for %s that this site can answer is offered",
                          ident);
        moat_err_hint(err, "allow http-01 (with an http_listen), tls-alpn-01 or dns-01 (with a dns_hook) in "
                           "acme.challenges");
        goto out;
    }
    /* Copies: the authorization's JSON is replaced while the validation is waited for. */
    moat_strlcpy(type_buf, moat_acme_json_str(ch, "type"), sizeof(type_buf));
    moat_strlcpy(ident_buf, ident, sizeof(ident_buf));
    type = type_buf;
    ident = ident_buf;
    token = moat_acme_json_str(ch, "token");
    ch_url = moat_acme_json_str(ch, "url");
    if (moat_acme_json_str(ch, "status") != NULL &&
        moat_strlcpy(ch_status_buf, moat_acme_json_str(ch, "status"), sizeof(ch_status_buf)) == 0)
        ch_status = ch_status_buf;
    if (token != NULL && moat_strlcpy(token_buf, token, sizeof(token_buf)) == 0)
        token = token_buf;
    else
        token = NULL;
    if (ch_url != NULL && moat_strlcpy(url_buf, ch_url, sizeof(url_buf)) == 0)
        ch_url = url_buf;
    else
        ch_url = NULL;
    if (token == NULL || ch_url == NULL ||
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789-_") != strlen(token)) {
        rc = moat_err_set(err, MOAT_E_INVAL, "the %s challenge for %s has no usable token or URL", type,
                          ident);
        goto out;
    }
    if ((rc = moat__acme_key_authz(&r->c, token, key_authz, sizeof(key_authz), err)) != 0)
        goto out;
    if (strcmp(type, "http-01") == 0) {
        if ((rc = moat_acme_http01_add(token, key_authz, err)) != 0)
            goto out;
    } else if (strcmp(type, "dns-01") == 0) {
        snprintf(dns_name, sizeof(dns_name), "_acme-challenge.%s.", ident);
        if (dns01_value(key_authz, dns_value, sizeof(dns_value)) != 0) {
            rc = moat_err_set(err, MOAT_E_PKI, "hashing a dns-01 key authorization");
            goto out;
        }
        if ((rc = run_hook(r->conf->dns_hook, "set", dns_name, dns_value, err)) != 0)
            goto out;
    } else if (strcmp(type, "tls-alpn-01") == 0) {
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        if ((rc = tlsalpn_cert(ident, key_authz, &cert, &key, err)) == 0)
            rc = moat_acme_tlsalpn_add(ident, cert, key, err);
        X509_free(cert);
        EVP_PKEY_free(key);
        if (rc != 0)
            goto out;
    } else {
        rc = moat_err_set(err, MOAT_E_INVAL, "%s is not answered by this build", type);
        goto out;
    }
    answered = 1;
    /* RFC 8555 §7.5.1: an empty object tells the server to validate. A challenge already processing was
     * started before a stop: the answer is up again, wait for the verdict. */
    if (ch_status == NULL || strcmp(ch_status, "processing") != 0) {
        empty = json_object();
        rc = moat__acme_post(&r->c, ch_url, empty, 0, &cr, err);
        json_decref(empty);
        if (rc != 0)
            goto out;
        if (cr.status != 200) {
            rc = moat__acme_problem(&cr, "starting a challenge", err);
            goto out;
        }
    }
    moat__acme_resp_dispose(&a);
    /* Wait for the authorization's verdict. */
    {
        uint64_t end = moat_clock_ms() + POLL_LIMIT_MS;
        long wait = 500;
        for (;;) {
            if ((rc = moat__acme_post(&r->c, url, NULL, 0, &a, err)) != 0)
                goto out;
            status = moat_acme_json_str(a.json, "status");
            if (a.status != 200) {
                rc = moat__acme_problem(&a, "reading an authorization", err);
                goto out;
            }
            if (status != NULL && strcmp(status, "valid") == 0)
                break;
            if (status == NULL || strcmp(status, "pending") != 0) {
                rc = authz_failed(a.json, ident, err);
                goto out;
            }
            if (a.retry_after > 0)
                wait = a.retry_after > 10 ? 10000 : a.retry_after * 1000;
            moat__acme_resp_dispose(&a);
            if (moat_clock_ms() + (uint64_t)wait > end) {
                rc = moat_err_set(err, MOAT_E_AGAIN, "the %s challenge for %s is still pending after %d s",
                                  type, ident, POLL_LIMIT_MS / 1000);
                goto out;
            }
            if (sleep_ms(wait, r->c.stop) != 0) {
                rc = moat_err_set(err, MOAT_E_AGAIN, "stopping during the %s challenge for %s", type, ident);
                goto out;
            }
            if (wait < 2000)
                wait *= 2;
        }
    }
    rc = 0;
out:
    if (answered && strcmp(type, "http-01") == 0)
        moat_acme_http01_remove(token);
    if (answered && strcmp(type, "tls-alpn-01") == 0)
        moat_acme_tlsalpn_remove(ident);
    if (answered && strcmp(type, "dns-01") == 0) {
        moat_err_t e2 = {0};
        (void)run_hook(r->conf->dns_hook, "clear", dns_name, dns_value,
                       &e2); /* best effort: the record is spent */
    }
    moat__acme_resp_dispose(&a);
    moat__acme_resp_dispose(&cr);
    return rc;
}

static int save_order(run_t *r, moat_err_t *err)
{
    char text[800];
    snprintf(text, sizeof(text), "{\"order\":\"%s\",\"key\":%lld}", r->order_url, (long long)r->pending_id);
    return moat_store_setting_set(r->st, r->order_setting, text, err);
}

/* The SANs of the site's hosts for the CSR, and the identifiers for the order. */
static int identifiers(const moat_site_t *site, json_t **ids, char *sans, size_t sanssz)
{
    size_t o = 0;
    *ids = json_array();
    if (*ids == NULL)
        return -1;
    sans[0] = '\0';
    for (size_t i = 0; i < site->hosts.n; i++) {
        const char *h = site->hosts.v[i];
        int ip = moat_pki_is_ip_literal(h);
        json_array_append_new(*ids, json_pack("{s:s, s:s}", "type", ip ? "ip" : "dns", "value", h));
        o += (size_t)snprintf(sans + o, o < sanssz ? sanssz - o : 0, "%s%s:%s", i ? "," : "",
                              ip ? "IP" : "DNS", h);
    }
    return o < sanssz ? 0 : -1;
}

/* Starts a new order (RFC 8555 §7.4) and records it with its pending key before anything else. */
static int new_order(run_t *r, const char *replaces, moat_err_t *err)
{
    moat_store_key_t pk = {0};
    json_t *ids = NULL, *req = NULL;
    moat__acme_resp_t o = {0};
    char sans[2048];
    int rc;

    if (identifiers(r->site, &ids, sans, sizeof(sans)) != 0) {
        json_decref(ids);
        return moat_err_set(err, MOAT_E_LIMIT, "site \"%s\" has too many hosts for one certificate",
                            r->site->name);
    }
    /* A pending key left by an order that never reached the server is taken over, not doubled. */
    if (moat_store_key_get(r->st, r->site->certificate, MOAT_KEY_WANT_PENDING, &pk, err) == 0) {
        r->pending_id = pk.id;
        moat_store_key_dispose(&pk);
    } else if (err->code != MOAT_E_NOTFOUND || (rc = new_key(r->st, r->site->certificate, r->site->hosts.v[0],
                                                             sans, &r->pending_id, err)) != 0) {
        json_decref(ids);
        return err->code;
    }
    req = json_pack("{s:o}", "identifiers", ids);
    if (req != NULL && r->conf->profile != NULL)
        json_object_set_new(req, "profile", json_string(r->conf->profile));
    if (req != NULL && replaces != NULL)
        json_object_set_new(req, "replaces", json_string(replaces));
    if (req == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory building an order");
    rc = moat__acme_post(&r->c, moat__acme_dir_url(&r->c, "newOrder"), req, 0, &o, err);
    json_decref(req);
    if (rc != 0)
        return rc;
    if (o.status != 201 || o.location[0] == '\0') {
        rc = moat__acme_problem(&o, "ordering a certificate", err);
        moat__acme_resp_dispose(&o);
        return rc;
    }
    moat_strlcpy(r->order_url, o.location, sizeof(r->order_url));
    moat__acme_resp_dispose(&o);
    return save_order(r, err);
}

/* The common name of the last certificate in a PEM chain (the top issuer's subject CN when self-issued
 * ones are left out): what preferred_chain names. */
static int chain_matches(const uint8_t *pem, size_t len, const char *want)
{
    STACK_OF(X509) *certs = NULL;
    moat_err_t e = {0};
    int match = 0;
    if (moat_pki_certs_parse(pem, len, &certs, &e) != 0)
        return 0;
    for (int i = 0; i < sk_X509_num(certs) && !match; i++) {
        X509 *x = sk_X509_value(certs, i);
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, cn, sizeof(cn)) > 0 &&
            strcmp(cn, want) == 0 && i == sk_X509_num(certs) - 1)
            match = 1;
    }
    sk_X509_pop_free(certs, X509_free);
    return match;
}

/* Installs the downloaded chain for the pending key with the checks of cert install (the key manager's
 * install, in its own transaction), then drops the order record. A crash between the two leaves the
 * order recorded with its key active: the next run sees that and only drops the record. */
static int install(run_t *r, const uint8_t *pem, size_t len, char *summary, size_t summary_sz,
                   moat_err_t *err)
{
    moat_keymgr_install_req_t req = {.name = r->site->certificate,
                                     .source = "the ACME server's certificate",
                                     .cert_data = pem,
                                     .cert_len = len};
    moat_keymgr_install_res_t res = {0};
    moat_store_key_t pk = {0};
    int rc;

    if ((rc = moat_store_key_get_by_id(r->st, r->pending_id, &pk, err)) != 0)
        return rc;
    rc = pk.state == MOAT_KEY_PENDING
             ? 0
             : moat_err_set(err, MOAT_E_STATE, "the order's key is no longer pending");
    moat_store_key_dispose(&pk);
    if (rc != 0 || (rc = moat_keymgr_install(r->st, &req, &res, err)) != 0) {
        moat_err_prefix(err, "installing the certificate of order %s", r->order_url);
        return rc;
    }
    snprintf(summary, summary_sz, "installed: serial %s, issuer %s, valid until %lld", res.ci.serial,
             res.ci.issuer, (long long)res.ci.not_after);
    if ((rc = moat_store_begin(r->st, err)) == 0) {
        if ((rc = moat_store_audit_add(r->st, "acme.install", r->site->certificate, r->order_url, err)) !=
                0 ||
            (rc = moat_store_setting_delete(r->st, r->order_setting, err)) != 0)
            moat_store_rollback(r->st);
        else
            rc = moat_store_commit(r->st, err);
    }
    moat_keymgr_install_res_dispose(&res);
    return rc;
}

static int finalize_and_fetch(run_t *r, moat__acme_resp_t *o, char *summary, size_t summary_sz,
                              moat_err_t *err)
{
    const char *status = moat_acme_json_str(o->json, "status");
    moat__acme_resp_t f = {0}, c = {0};
    moat_store_key_t pk = {0};
    int rc = 0;

    if (status != NULL && strcmp(status, "ready") == 0) {
        char *csr64 = NULL;
        json_t *req;
        if ((rc = moat_store_key_get_by_id(r->st, r->pending_id, &pk, err)) != 0)
            return rc;
        if (pk.csr.len == 0) {
            moat_store_key_dispose(&pk);
            return moat_err_set(err, MOAT_E_STATE, "the pending key of %s has no request",
                                r->site->certificate);
        }
        csr64 = moat_b64url_encode_new(pk.csr.data, pk.csr.len);
        moat_store_key_dispose(&pk);
        req = csr64 != NULL ? json_pack("{s:s}", "csr", csr64) : NULL;
        moat_free(&csr64);
        if (req == NULL)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory building the finalize request");
        rc = moat__acme_post(&r->c, moat_acme_json_str(o->json, "finalize"), req, 0, &f, err);
        json_decref(req);
        if (rc != 0 || (rc = moat__acme_expect(&f, 200, "finalizing the order", err)) != 0)
            return rc;
        moat__acme_resp_dispose(&f);
    }
    moat__acme_resp_dispose(o);
    if ((rc = poll_object(r, r->order_url, "reading the order", o, err)) != 0)
        return rc;
    status = moat_acme_json_str(o->json, "status");
    if (status == NULL || strcmp(status, "valid") != 0 || moat_acme_json_str(o->json, "certificate") == NULL)
        return moat_err_set(err, MOAT_E_INVAL, "the order ended %s, not valid",
                            status ? status : "without a status");
    if ((rc = moat__acme_post(&r->c, moat_acme_json_str(o->json, "certificate"), NULL, 0, &c, err)) != 0 ||
        (rc = moat__acme_expect(&c, 200, "downloading the certificate", err)) != 0)
        return rc;
    /* RFC 8555 §7.4.2: alternate chains come as Link rel="alternate"; take the one preferred_chain names. */
    if (r->conf->preferred_chain != NULL && !chain_matches(c.body, c.body_len, r->conf->preferred_chain)) {
        for (size_t i = 0; i < c.nalternates; i++) {
            moat__acme_resp_t alt = {0};
            char url[256];
            moat_strlcpy(url, c.alternates[i], sizeof(url));
            if (moat__acme_post(&r->c, url, NULL, 0, &alt, err) == 0 && alt.status == 200 &&
                chain_matches(alt.body, alt.body_len, r->conf->preferred_chain)) {
                moat__acme_resp_dispose(&c);
                c = alt;
                break;
            }
            moat__acme_resp_dispose(&alt);
        }
        moat_err_clear(err);
    }
    rc = install(r, c.body, c.body_len, summary, summary_sz, err);
    moat__acme_resp_dispose(&c);
    return rc;
}

/* The EAB MAC key: base64url text, surrounding whitespace ignored. */
static int read_hmac(const char *path, char *out, size_t outsz, moat_err_t *err)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL)
        return moat_err_set(err, MOAT_E_IO, "acme.eab.hmac_file %s: %s", path, strerror(errno));
    n = fread(out, 1, outsz - 1, f);
    if (!feof(f)) {
        fclose(f);
        OPENSSL_cleanse(out, outsz);
        return moat_err_set(err, MOAT_E_LIMIT, "acme.eab.hmac_file %s is longer than an HMAC key", path);
    }
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
        out[--n] = '\0';
    if (n == 0)
        return moat_err_set(err, MOAT_E_INVAL, "acme.eab.hmac_file %s is empty", path);
    return 0;
}

int moat__acme_order_run(moat_store_t *st, const moat_site_t *site, const moat_acme_conf_t *conf,
                         const char *replaces, const atomic_int *stop, char *summary, size_t summary_sz,
                         long *retry_after, moat_err_t *err)
{
    run_t r = {.st = st, .site = site, .conf = conf, .c = {.retry_after = -1}};
    moat_store_key_t ak = {0};
    EVP_PKEY *akey = NULL;
    X509_STORE *trust = NULL;
    char acct_setting[200], acct_url[512] = "", state[800] = "", hmac[512] = "";
    moat__acme_resp_t o = {0};
    json_t *authzs, *az;
    size_t i;
    int rc;

    summary[0] = '\0';
    *retry_after = -1;
    moat__acme_setting_name(r.order_setting, sizeof(r.order_setting), "order", site->certificate);
    if (conf->trust.n > 0 && (trust = trust_store(st, &conf->trust, err)) == NULL)
        return err->code;
    if (conf->eab_hmac_file != NULL && (rc = read_hmac(conf->eab_hmac_file, hmac, sizeof(hmac), err)) != 0)
        goto out;
    /* The account key: made once, never exportable, kept in the store like any other key. */
    if (moat_store_key_get(st, MOAT__ACME_ACCOUNT_KEY, MOAT_KEY_CURRENT, &ak, err) != 0) {
        int64_t id = 0;
        if (err->code != MOAT_E_NOTFOUND ||
            (rc = new_key(st, MOAT__ACME_ACCOUNT_KEY, NULL, NULL, &id, err)) != 0 ||
            (rc = moat_store_key_get_by_id(st, id, &ak, err)) != 0) {
            rc = err->code;
            goto out;
        }
    }
    if ((rc = moat_keymgr_private_key(st, ak.id, &akey, err)) != 0)
        goto out;
    r.c.directory_url = conf->directory;
    r.c.trust = trust;
    r.c.stop = stop;
    r.c.email = conf->email;
    r.c.accept_terms = conf->accept_terms > 0;
    r.c.eab_kid = conf->eab_kid;
    r.c.eab_hmac = hmac;
    if ((rc = moat__acme_client_init(&r.c, akey, err)) != 0 || (rc = moat__acme_directory(&r.c, err)) != 0)
        goto out;
    account_setting(acct_setting, sizeof(acct_setting), conf->directory);
    if (moat_store_setting_get(st, acct_setting, acct_url, sizeof(acct_url), err) == 0) {
        moat_strlcpy(r.c.account_url, acct_url, sizeof(r.c.account_url));
    } else {
        if ((rc = moat__acme_account(&r.c, 0, err)) != 0 ||
            (rc = moat_store_setting_set(st, acct_setting, r.c.account_url, err)) != 0 ||
            (rc = moat_store_audit_add(st, "acme.account", conf->directory, r.c.account_url, err)) != 0)
            goto out;
    }
    /* Resume the order under way, if the store has one. */
    if (moat_store_setting_get(st, r.order_setting, state, sizeof(state), err) == 0) {
        json_t *js = moat_acme_json_parse(state, strlen(state), err);
        const char *u = moat_acme_json_str(js, "order");
        json_t *k = json_object_get(js, "key");
        moat_store_key_t pk = {0};
        int installed = 0;
        if (u != NULL && json_is_integer(k) &&
            moat_store_key_get_by_id(st, (int64_t)json_integer_value(k), &pk, err) == 0) {
            if (pk.state == MOAT_KEY_PENDING) {
                moat_strlcpy(r.order_url, u, sizeof(r.order_url));
                r.pending_id = pk.id;
            } else if (pk.state == MOAT_KEY_ACTIVE && pk.cert != NULL) {
                installed = 1; /* stopped after the install, before the record was dropped */
            }
        }
        moat_store_key_dispose(&pk);
        json_decref(js);
        if (installed) {
            moat_strlcpy(summary, "was installed already; its order record is dropped", summary_sz);
            rc = moat_store_setting_delete(st, r.order_setting, err);
            goto out;
        }
        if (r.order_url[0] != '\0') {
            rc = moat__acme_post(&r.c, r.order_url, NULL, 0, &o, err);
            const char *status = rc == 0 ? moat_acme_json_str(o.json, "status") : NULL;
            if (rc == 0 && (o.status != 200 || status == NULL || strcmp(status, "invalid") == 0)) {
                /* A lost or failed order: start a new one with the same pending key. */
                moat__acme_resp_dispose(&o);
                r.order_url[0] = '\0';
            } else if (rc != 0) {
                goto out;
            }
        }
    }
    moat_err_clear(err);
    if (r.order_url[0] == '\0') {
        if ((rc = new_order(&r, replaces, err)) != 0)
            goto out;
        if ((rc = moat__acme_post(&r.c, r.order_url, NULL, 0, &o, err)) != 0)
            goto out;
    }
    if (o.status != 200) {
        rc = moat__acme_problem(&o, "reading the order", err);
        goto out;
    }
    authzs = json_object_get(o.json, "authorizations");
    json_array_foreach(authzs, i, az)
    {
        if (!json_is_string(az)) {
            rc = moat_err_set(err, MOAT_E_INVAL, "the order lists an authorization that is not a URL");
            goto out;
        }
        if ((rc = do_authz(&r, json_string_value(az), err)) != 0)
            goto out;
    }
    moat__acme_resp_dispose(&o);
    if ((rc = poll_object(&r, r.order_url, "reading the order", &o, err)) != 0)
        goto out;
    {
        const char *status = moat_acme_json_str(o.json, "status");
        if (status != NULL && strcmp(status, "invalid") == 0) {
            json_t *e = json_object_get(o.json, "error");
            rc =
                moat_err_set(err, MOAT_E_INVAL, "the order became invalid: %.180s",
                             moat_acme_json_str(e, "detail") ? moat_acme_json_str(e, "detail") : "no detail");
            /* The pending key stays and is taken over by the next order. */
            if (moat_store_setting_delete(st, r.order_setting, &(moat_err_t){0}) != 0) {
                /* Not fatal: a recorded order that reads as invalid is dropped on the next run. */
            }
            goto out;
        }
    }
    rc = finalize_and_fetch(&r, &o, summary, summary_sz, err);
out:
    *retry_after = r.c.retry_after;
    moat__acme_resp_dispose(&o);
    moat__acme_client_dispose(&r.c);
    moat_store_key_dispose(&ak);
    EVP_PKEY_free(akey);
    X509_STORE_free(trust);
    OPENSSL_cleanse(hmac, sizeof(hmac));
    return rc;
}

int moat__acme_ari_read(moat_store_t *st, const char *name, moat__acme_ari_t *out)
{
    char key[200], text[512];
    moat_err_t e = {0};
    json_t *js;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    moat__acme_setting_name(key, sizeof(key), "ari", name);
    if (moat_store_setting_get(st, key, text, sizeof(text), &e) != 0 ||
        (js = moat_acme_json_parse(text, strlen(text), &e)) == NULL)
        return 0;
    if (moat_acme_json_str(js, "certid") != NULL &&
        moat_strlcpy(out->certid, moat_acme_json_str(js, "certid"), sizeof(out->certid)) == 0) {
        out->start = json_integer_value(json_object_get(js, "start"));
        out->end = json_integer_value(json_object_get(js, "end"));
        out->recheck = json_integer_value(json_object_get(js, "recheck"));
        ok = 1;
    }
    json_decref(js);
    return ok;
}

int moat__acme_ari_refresh(moat_store_t *st, const moat_site_t *site, const moat_acme_conf_t *conf,
                           const atomic_int *stop, long long now, moat_err_t *err)
{
    moat__acme_client_t c = {0};
    moat_store_cert_t cur = {0};
    moat__acme_ari_t have, got;
    X509_STORE *trust = NULL;
    char certid[200], key[200];
    json_t *js = NULL;
    char *text = NULL;
    int rc;

    if ((rc = moat_store_cert_current(st, site->certificate, &cur, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(err);
            return 0; /* nothing issued yet: no window to ask for */
        }
        return rc;
    }
    rc = moat__acme_ari_certid(cur.der.data, cur.der.len, certid, sizeof(certid), err);
    moat_store_cert_dispose(&cur);
    if (rc != 0)
        return rc;
    if (moat__acme_ari_read(st, site->certificate, &have) && strcmp(have.certid, certid) == 0 &&
        have.recheck > now)
        return 0;
    if (conf->trust.n > 0 && (trust = trust_store(st, &conf->trust, err)) == NULL)
        return err->code;
    c.directory_url = conf->directory;
    c.trust = trust;
    c.stop = stop;
    if ((rc = moat__acme_directory(&c, err)) == 0)
        rc = moat__acme_ari_fetch(&c, certid, now, &got, err);
    if (rc == MOAT_E_NOTFOUND) {
        /* No ARI at this CA: remember that for a day, the lifetime rule decides meanwhile. */
        memset(&got, 0, sizeof(got));
        moat_strlcpy(got.certid, certid, sizeof(got.certid));
        got.recheck = now + 86400;
        moat_err_clear(err);
        rc = 0;
    }
    if (rc == 0) {
        moat__acme_setting_name(key, sizeof(key), "ari", site->certificate);
        js = json_pack("{s:s, s:I, s:I, s:I}", "certid", got.certid, "start", (json_int_t)got.start, "end",
                       (json_int_t)got.end, "recheck", (json_int_t)got.recheck);
        text = js != NULL ? moat_acme_json_dump(js) : NULL;
        rc = text != NULL ? moat_store_setting_set(st, key, text, err)
                          : moat_err_set(err, MOAT_E_NOMEM, "out of memory recording the renewal window");
    }
    json_decref(js);
    moat_free(&text);
    moat__acme_client_dispose(&c);
    X509_STORE_free(trust);
    return rc;
}

int moat_acme_rollover(moat_store_t *st, const moat_config_t *cfg, char *summary, size_t summary_sz,
                       moat_err_t *err)
{
    moat_acme_conf_t conf = cfg->acme;
    moat__acme_client_t c = {.retry_after = -1};
    moat_store_key_t ak = {0};
    EVP_PKEY *old = NULL, *fresh = NULL;
    X509_STORE *trust = NULL;
    char setting[200], url[512];
    int64_t id = 0;
    int rc;

    for (size_t i = 0; conf.directory == NULL && i < cfg->nsites; i++)
        if (cfg->sites[i].acme)
            moat_config_site_acme(cfg, &cfg->sites[i], &conf);
    if (conf.directory == NULL)
        return moat_err_set(err, MOAT_E_CONFIG, "the config has no acme: directory");
    /* One key serves the accounts at every directory: changing it at one server would lock the others out. */
    for (size_t i = 0; i < cfg->nsites; i++) {
        moat_acme_conf_t o;
        char other[200], u[512];
        if (!cfg->sites[i].acme)
            continue;
        moat_config_site_acme(cfg, &cfg->sites[i], &o);
        account_setting(other, sizeof(other), o.directory);
        if (strcmp(o.directory, conf.directory) != 0 &&
            moat_store_setting_get(st, other, u, sizeof(u), err) == 0) {
            moat_err_set(err, MOAT_E_STATE,
                         "key rollover refused: the account key also holds an account at %s, and %s would "
                         "then refuse the old key",
                         o.directory, o.directory);
            return moat_err_hint(err,
                                 "one key signs for every ACME server in the config, so it cannot change at "
                                 "one of them; keep the current key, or leave one ACME server in the config");
        }
    }
    moat_err_clear(err);
    account_setting(setting, sizeof(setting), conf.directory);
    if (moat_store_setting_get(st, setting, url, sizeof(url), err) != 0) {
        moat_err_set(err, MOAT_E_STATE, "no ACME account is registered at %s yet", conf.directory);
        return moat_err_hint(err, "the server registers it with its first order; roll over after that");
    }
    if ((rc = moat_store_key_get(st, MOAT__ACME_ACCOUNT_KEY, MOAT_KEY_CURRENT, &ak, err)) != 0 ||
        (rc = moat_keymgr_private_key(st, ak.id, &old, err)) != 0 ||
        (rc = moat_pki_key_generate(MOAT_PKI_ALG_EC_P256, NULL, NULL, &fresh, err)) != 0)
        goto out;
    if (conf.trust.n > 0 && (trust = trust_store(st, &conf.trust, err)) == NULL) {
        rc = err->code;
        goto out;
    }
    c.directory_url = conf.directory;
    c.trust = trust;
    moat_strlcpy(c.account_url, url, sizeof(c.account_url));
    if ((rc = moat__acme_client_init(&c, old, err)) != 0 || (rc = moat__acme_directory(&c, err)) != 0 ||
        (rc = moat__acme_key_change(&c, fresh, err)) != 0)
        goto out;
    /* The server knows only the new key from here on: replace the stored one in one commit. */
    if ((rc = moat_store_begin(st, err)) != 0)
        goto lost;
    if ((rc = moat_store_key_delete_id(st, ak.id, err)) != 0 ||
        (rc = moat_keymgr_key_add(st, MOAT__ACME_ACCOUNT_KEY, fresh, "ec-p256", false, NULL, &id, err)) !=
            0 ||
        (rc = moat_store_audit_add(st, "acme.rollover", conf.directory, url, err)) != 0) {
        moat_store_rollback(st);
        goto lost;
    }
    if ((rc = moat_store_commit(st, err)) != 0)
        goto lost;
    snprintf(summary, summary_sz, "the account %s now signs with a new key", url);
    goto out;
lost:
    moat_err_prefix(err, "the ACME server took the new account key but the store could not keep it");
out:
    moat__acme_client_dispose(&c);
    moat_store_key_dispose(&ak);
    EVP_PKEY_free(old);
    EVP_PKEY_free(fresh);
    X509_STORE_free(trust);
    return rc;
}
