/*
 * ACME orders (RFC 8555 §7.4-7.6): new orders under the site's allow list and hourly limits,
 * authorizations and challenges, finalization through the CA service (the same issuance as moat ca
 * sign), certificate download with the chain, revocation, and ACME renewal information (RFC 9773).
 */
#include "acme/acme_server_int.h"
#include "ca/ca.h"
#include "pki/pki.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

#define MAX_IDENTIFIERS 100

/* ---- allow rules ----------------------------------------------------------------------------------- */

static int in_range(const char *rule, const char *ip)
{
    char addr[64];
    unsigned char net[16], a[16];
    const char *slash = strchr(rule, '/');
    size_t n = (size_t)(slash - rule);
    long bits = 0;
    if (n >= sizeof addr)
        return 0;
    memcpy(addr, rule, n);
    addr[n] = '\0';
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, net) != 1 || inet_pton(fam, ip, a) != 1 ||
        moat_parse_long(slash + 1, 0, fam == AF_INET6 ? 128 : 32, &bits) != 0)
        return 0;
    for (long i = 0; i < bits; i++)
        if (((net[i / 8] ^ a[i / 8]) >> (7 - i % 8)) & 1)
            return 0;
    return 1;
}

/* One DNS rule: "name" itself, or "*.zone" covering exactly one label below zone (and "*.zone" itself). */
static int dns_match(const char *rule, const char *name)
{
    if (strcasecmp(rule, name) == 0)
        return 1;
    if (rule[0] == '*' && rule[1] == '.') {
        const char *dot = strchr(name, '.');
        if (name[0] == '*' && name[1] == '.')
            return 0; /* a wildcard is covered only by the same wildcard, matched above */
        return dot != NULL && dot != name && strcasecmp(dot + 1, rule + 2) == 0;
    }
    return 0;
}

int moat__acme_allowed(const moat_acme_server_conf_t *conf, const char *type, const char *value, char *why,
                       size_t whysz)
{
    int ip = strcmp(type, "ip") == 0;
    size_t off = 0;
    for (size_t i = 0; i < conf->allow.n; i++) {
        const char *r = conf->allow.v[i];
        if (strchr(r, '/') != NULL ? ip && in_range(r, value)
            : !ip                  ? dns_match(r, value)
                                   : strcmp(r, value) == 0)
            return 0;
    }
    off = (size_t)snprintf(why, whysz, "%s %s is outside this server's acme_server.allow rule (",
                           ip ? "address" : "name", value);
    for (size_t i = 0; i < conf->allow.n && off < whysz; i++)
        off += (size_t)snprintf(why + off, whysz - off, "%s%s", i ? ", " : "", conf->allow.v[i]);
    if (off < whysz)
        snprintf(why + off, whysz - off, ")");
    return -1;
}

/* Normalises an identifier in place: DNS names lower-cased and checked, IP addresses in canonical form. */
static int check_identifier(acme_ctx_t *c, const char *type, char *value, size_t valsz)
{
    if (strcmp(type, "ip") == 0) {
        unsigned char a[16];
        int fam = strchr(value, ':') ? AF_INET6 : AF_INET;
        if (inet_pton(fam, value, a) != 1 || inet_ntop(fam, a, value, (socklen_t)valsz) == NULL)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "\"%.64s\" is not an IP address",
                                         value);
        return 0;
    }
    if (strcmp(type, "dns") != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNSUPPORTED_IDENTIFIER,
                                     "identifier type \"%.32s\" is not dns or ip", type);
    size_t n = strlen(value);
    if (n == 0 || n > 253)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER, "name of %zu bytes", n);
    /* RFC 8738 §3: an address is an "ip" identifier; as a "dns" one its certificate would carry it as a
     * DNS name no client matches (and the CSR's IP SAN would differ from the order at finalize). */
    unsigned char addr[16];
    if (inet_pton(AF_INET, value, addr) == 1 || inet_pton(AF_INET6, value, addr) == 1)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
                                     "\"%.64s\" is an IP address: order it as an identifier of type \"ip\" "
                                     "(RFC 8738), not \"dns\"",
                                     value);
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)value[i];
        value[i] = (char)tolower(ch);
        if (ch == '.') {
            if (label == 0)
                return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
                                             "\"%.200s\" has an empty label", value);
            label = 0;
        } else if (isalnum(ch) || ch == '-' || (ch == '*' && i == 0 && value[1] == '.')) {
            if (++label > 63)
                return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
                                             "\"%.200s\" has a label over 63 bytes", value);
        } else {
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
                                         "\"%.200s\" is not a DNS name (letters, digits, '-', '.')", value);
        }
    }
    if (label == 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
                                     "\"%.200s\" ends with a dot", value);
    return 0;
}

/* ---- storing and showing --------------------------------------------------------------------------- */

static int put(acme_ctx_t *c, moat_store_acme_kind_t kind, const char *id, const char *parent,
               const char *lookup, json_t *doc, int64_t created, int64_t expires)
{
    moat_store_acme_obj_t o = {0};
    moat_err_t err = {0};
    o.kind = kind;
    (void)moat_strlcpy(o.id, id, sizeof o.id);
    (void)moat_strlcpy(o.parent, parent, sizeof o.parent);
    (void)moat_strlcpy(o.account, c->acct.id, sizeof o.account);
    (void)moat_strlcpy(o.lookup, lookup, sizeof o.lookup);
    (void)moat_strlcpy(o.status, moat_acme_json_str(doc, "status"), sizeof o.status);
    o.created = created ? created : c->now;
    o.expires = expires;
    o.doc = moat_acme_json_dump(doc);
    int rc = o.doc ? moat_store_acme_put(c->st, &o, &err) : MOAT_E_NOMEM;
    free(o.doc);
    if (rc != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "saving: %s", err.msg);
    return 0;
}

/* Loads <kind>/<id> of the signing account: its row in <o>, its document returned (owned). */
static json_t *load(acme_ctx_t *c, moat_store_acme_kind_t kind, const char *id, moat_store_acme_obj_t *o)
{
    moat_err_t err = {0};
    static const char *const what[] = {"account", "order", "authorization", "challenge"};
    if (moat_store_acme_get(c->st, kind, id, o, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "no %s %.64s", what[kind], id);
        c->prob.status = 404;
        return NULL;
    }
    if (strcmp(o->account, c->acct.id) != 0) {
        moat_store_acme_obj_dispose(o);
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED, "%s %.64s belongs to another account",
                              what[kind], id);
        return NULL;
    }
    json_t *doc = moat_acme_json_parse(o->doc, strlen(o->doc), &err);
    if (doc == NULL) {
        moat_store_acme_obj_dispose(o);
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "stored %s: %s", what[kind], err.msg);
    }
    return doc;
}

static json_t *chall_view(acme_ctx_t *c, const moat_store_acme_obj_t *o, const json_t *doc)
{
    char url[400];
    moat__acme_url(c, "chall", o->id, url, sizeof url);
    json_t *v = json_pack("{sOssssss}", "type", json_object_get(doc, "type"), "url", url, "status", o->status,
                          "token", moat_acme_json_str(doc, "token"));
    if (v == NULL)
        return NULL;
    if (json_object_get(doc, "validated") != NULL)
        json_object_set(v, "validated", json_object_get(doc, "validated"));
    if (json_object_get(doc, "error") != NULL)
        json_object_set(v, "error", json_object_get(doc, "error"));
    return v;
}

static json_t *authz_view(acme_ctx_t *c, const moat_store_acme_obj_t *o, const json_t *doc)
{
    moat_store_acme_list_t l;
    moat_err_t err = {0};
    char t[32];
    moat__acme_time(o->expires, t, sizeof t);
    const char *status = o->status;
    if (strcmp(status, "pending") == 0 && c->now > o->expires)
        status = "expired";
    json_t *v = json_pack("{sOssss}", "identifier", json_object_get(doc, "identifier"), "status", status,
                          "expires", t);
    json_t *arr = json_array();
    if (v == NULL || arr == NULL ||
        moat_store_acme_list(c->st, MOAT_STORE_ACME_CHALL, 1, o->id, 8, &l, &err) != 0) {
        json_decref(v);
        json_decref(arr);
        return NULL;
    }
    for (size_t i = 0; i < l.n; i++) {
        json_t *cd = moat_acme_json_parse(l.items[i].doc, strlen(l.items[i].doc), &err);
        /* A valid authorization lists the challenge that validated it; RFC 8555 §7.1.4 allows the rest too.
         */
        if (cd != NULL)
            json_array_append_new(arr, chall_view(c, &l.items[i], cd));
        json_decref(cd);
        /* Polling a challenge left processing with no validation under way queues it again. */
        if (strcmp(l.items[i].status, "processing") == 0 &&
            !moat__acme_validation_pending(c->svc, l.items[i].id))
            (void)moat_strlcpy(c->resp->validate, l.items[i].id, sizeof c->resp->validate);
    }
    moat_store_acme_list_dispose(&l);
    json_object_set_new(v, "challenges", arr);
    if (json_is_true(json_object_get(doc, "wildcard")))
        json_object_set_new(v, "wildcard", json_true());
    return v;
}

/* The order's status from its authorizations (pending -> ready or invalid), saved when it changes. */
static int order_refresh(acme_ctx_t *c, moat_store_acme_obj_t *o, json_t *doc)
{
    moat_store_acme_list_t l;
    moat_err_t err = {0};
    const char *st = o->status, *next = st;
    if (strcmp(st, "pending") != 0)
        return 0;
    if (c->now > o->expires) {
        next = "invalid";
    } else {
        if (moat_store_acme_list(c->st, MOAT_STORE_ACME_AUTHZ, 1, o->id, MAX_IDENTIFIERS, &l, &err) != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
        size_t valid = 0;
        int bad = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (strcmp(l.items[i].status, "valid") == 0)
                valid++;
            else if (strcmp(l.items[i].status, "pending") != 0 || c->now > l.items[i].expires)
                bad = 1;
        }
        next = bad ? "invalid" : valid == l.n && l.n > 0 ? "ready" : "pending";
        moat_store_acme_list_dispose(&l);
    }
    if (strcmp(next, st) == 0)
        return 0;
    json_object_set_new(doc, "status", json_string(next));
    (void)moat_strlcpy(o->status, next, sizeof o->status);
    if (strcmp(next, "invalid") == 0)
        json_object_set_new(doc, "error",
                            json_pack("{ssss}", "type", moat_acme_problem_urn(MOAT_ACME_PROB_UNAUTHORIZED),
                                      "detail", "an authorization failed or expired"));
    return put(c, MOAT_STORE_ACME_ORDER, o->id, "", o->lookup, doc, o->created, o->expires);
}

static json_t *order_view(acme_ctx_t *c, const moat_store_acme_obj_t *o, const json_t *doc)
{
    char t[32], url[400];
    size_t i;
    json_t *id;
    moat__acme_time(o->expires, t, sizeof t);
    moat__acme_url(c, "order", o->id, url, sizeof url);
    strncat(url, "/finalize", sizeof url - strlen(url) - 1);
    json_t *v = json_pack("{sssssOss}", "status", o->status, "expires", t, "identifiers",
                          json_object_get(doc, "identifiers"), "finalize", url);
    json_t *arr = json_array();
    if (v == NULL || arr == NULL) {
        json_decref(v);
        json_decref(arr);
        return NULL;
    }
    json_array_foreach(json_object_get(doc, "authz"), i, id)
    {
        moat__acme_url(c, "authz", json_string_value(id), url, sizeof url);
        json_array_append_new(arr, json_string(url));
    }
    json_object_set_new(v, "authorizations", arr);
    if (strcmp(o->status, "valid") == 0) {
        moat__acme_url(c, "cert", o->lookup, url, sizeof url);
        json_object_set_new(v, "certificate", json_string(url));
    }
    if (json_object_get(doc, "error") != NULL)
        json_object_set(v, "error", json_object_get(doc, "error"));
    if (json_object_get(doc, "profile") != NULL)
        json_object_set(v, "profile", json_object_get(doc, "profile"));
    return v;
}

/* ---- new order ------------------------------------------------------------------------------------- */

static int over_limit(acme_ctx_t *c, moat_store_acme_kind_t kind, const char *account, const char *lookup,
                      const char *status, long limit, const char *what)
{
    int64_t n = 0;
    moat_err_t err = {0};
    if (moat_store_acme_count(c->st, kind, account, lookup, status, c->now - 3600, &n, &err) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
    if (n >= limit) {
        c->resp->retry_after = 3600;
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_RATE_LIMITED,
                                     "%s: %lld in the last hour (limit %ld)", what, (long long)n, limit);
    }
    return 0;
}

static int new_challenges(acme_ctx_t *c, const char *authz_id, const char *type, int wildcard, json_t *ids)
{
    static const char *const all[] = {"http-01", "tls-alpn-01", "dns-01"};
    const moat_strlist_t *offer = &c->req->conf->challenges;
    size_t n = offer->n ? offer->n : MOAT_ARRAY_LEN(all);
    for (size_t i = 0; i < n; i++) {
        const char *ct = offer->n ? offer->v[i] : all[i];
        /* RFC 8555 §8.4 / RFC 8738 §7: wildcards validate over DNS only; addresses never do. */
        if ((wildcard && strcmp(ct, "dns-01") != 0) || (strcmp(type, "ip") == 0 && strcmp(ct, "dns-01") == 0))
            continue;
        char id[ACME_ID_LEN + 1], token[ACME_TOKEN_LEN + 1];
        if (moat__acme_random_id(id) != 0 || moat__acme_random_token(token) != 0)
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "no randomness");
        json_t *doc = json_pack("{ssssss}", "type", ct, "status", "pending", "token", token);
        int rc = doc ? put(c, MOAT_STORE_ACME_CHALL, id, authz_id, token, doc, 0, 0) : -1;
        json_decref(doc);
        if (rc != 0)
            return -1;
        json_array_append_new(ids, json_string(id));
    }
    if (json_array_size(ids) == 0)
        return moat_acme_problem_set(
            &c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER,
            "no offered challenge can validate this identifier (a wildcard needs dns-01)");
    return 0;
}

int moat__acme_new_order(acme_ctx_t *c)
{
    const json_t *pl = c->jws.payload, *idents = pl ? json_object_get(pl, "identifiers") : NULL, *it;
    const moat_acme_server_conf_t *conf = c->req->conf;
    char oid[ACME_ID_LEN + 1], why[512];
    size_t i;
    moat_err_t err = {0};

    if (!json_is_array(idents) || json_array_size(idents) == 0 || json_array_size(idents) > MAX_IDENTIFIERS)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                     "identifiers must list 1 to %d identifiers", MAX_IDENTIFIERS);
    if (json_object_get(pl, "notBefore") != NULL || json_object_get(pl, "notAfter") != NULL)
        return moat_acme_problem_set(
            &c->prob, MOAT_ACME_PROB_MALFORMED,
            "notBefore and notAfter are not supported: the lifetime is the server's (%ld days)", conf->days);
    const char *profile = moat_acme_json_str(pl, "profile");
    const char *own = conf->profile == MOAT_PKI_PROFILE_CLIENT ? "client" : "server";
    if (profile != NULL && strcmp(profile, own) != 0)
        return moat_acme_problem_set(
            &c->prob, MOAT_ACME_PROB_MALFORMED,
            "profile \"%.32s\" is not offered; this server issues the \"%s\" profile", profile, own);
    if (over_limit(c, MOAT_STORE_ACME_ORDER, c->acct.id, NULL, NULL, conf->orders_per_hour,
                   "orders of this account") ||
        over_limit(c, MOAT_STORE_ACME_CHALL, c->acct.id, NULL, "invalid", conf->failures_per_hour,
                   "failed validations of this account"))
        return -1;
    json_t *list = json_array(), *authz = json_array();
    if (list == NULL || authz == NULL || moat__acme_random_id(oid) != 0) {
        json_decref(list);
        json_decref(authz);
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
    }
    int rc = 0;
    json_array_foreach(idents, i, it)
    {
        const char *type = moat_acme_json_str(it, "type"), *val = moat_acme_json_str(it, "value");
        char value[256];
        if (type == NULL || val == NULL || strlen(val) >= sizeof value) {
            rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                       "identifier %zu needs a type and a value", i);
            break;
        }
        snprintf(value, sizeof value, "%s", val);
        if ((rc = check_identifier(c, type, value, sizeof value)) != 0)
            break;
        if (moat__acme_allowed(conf, type, value, why, sizeof why) != 0) {
            rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_REJECTED_IDENTIFIER, "%s", why);
            break;
        }
        if ((rc = over_limit(c, MOAT_STORE_ACME_AUTHZ, "", value, NULL, conf->orders_per_hour, value)) != 0)
            break;
        int wildcard = value[0] == '*';
        char aid[ACME_ID_LEN + 1];
        json_t *chall = json_array();
        if (moat__acme_random_id(aid) != 0 || chall == NULL) {
            json_decref(chall);
            rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
            break;
        }
        if ((rc = new_challenges(c, aid, type, wildcard, chall)) != 0) {
            json_decref(chall);
            break;
        }
        /* RFC 8555 §7.1.4: the authorization's identifier drops the "*." of a wildcard. */
        json_t *adoc =
            json_pack("{s{ssss}sssbso}", "identifier", "type", type, "value", wildcard ? value + 2 : value,
                      "status", "pending", "wildcard", wildcard, "challenges", chall);
        rc = adoc ? put(c, MOAT_STORE_ACME_AUTHZ, aid, oid, value, adoc, 0, c->now + ACME_ORDER_LIFETIME_S)
                  : -1;
        json_decref(adoc);
        if (rc != 0)
            break;
        json_array_append_new(list, json_pack("{ssss}", "type", type, "value", value));
        json_array_append_new(authz, json_string(aid));
    }
    if (rc != 0) {
        json_decref(list);
        json_decref(authz);
        return -1;
    }
    json_t *doc = json_pack("{sssoso}", "status", "pending", "identifiers", list, "authz", authz);
    if (doc != NULL && moat_acme_json_str(pl, "replaces") != NULL)
        json_object_set(doc, "replaces", json_object_get(pl, "replaces"));
    if (doc != NULL && profile != NULL)
        json_object_set_new(doc, "profile", json_string(profile));
    moat_store_acme_obj_t o = {0};
    o.kind = MOAT_STORE_ACME_ORDER;
    (void)moat_strlcpy(o.id, oid, sizeof o.id);
    (void)moat_strlcpy(o.status, "pending", sizeof o.status);
    o.created = c->now;
    o.expires = c->now + ACME_ORDER_LIFETIME_S;
    char *names = doc ? moat_acme_json_dump(json_object_get(doc, "identifiers")) : NULL;
    rc = doc != NULL ? put(c, MOAT_STORE_ACME_ORDER, oid, "", "", doc, o.created, o.expires) : -1;
    if (rc == 0 && moat_store_audit_add(c->st, "acme.order", oid, names, &err) != 0)
        rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
    free(names);
    if (rc == 0) {
        moat__acme_url(c, "order", oid, c->resp->location, sizeof c->resp->location);
        rc = moat__acme_reply_json(c, 201, order_view(c, &o, doc));
    } else if (c->prob.detail[0] == '\0') {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
    }
    json_decref(doc);
    return rc;
}

int moat__acme_order(acme_ctx_t *c, const char *id)
{
    moat_store_acme_obj_t o;
    json_t *doc = load(c, MOAT_STORE_ACME_ORDER, id, &o);
    if (doc == NULL)
        return -1;
    int rc = order_refresh(c, &o, doc);
    if (rc == 0)
        rc = moat__acme_reply_json(c, 200, order_view(c, &o, doc));
    if (strcmp(o.status, "processing") == 0)
        c->resp->retry_after = 1;
    json_decref(doc);
    moat_store_acme_obj_dispose(&o);
    return rc;
}

int moat__acme_orders_list(acme_ctx_t *c, const char *acct_id)
{
    moat_store_acme_list_t l;
    moat_err_t err = {0};
    char url[400];
    if (strcmp(acct_id, c->acct.id) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                                     "these are another account's orders");
    if (moat_store_acme_list(c->st, MOAT_STORE_ACME_ORDER, 0, acct_id, 1000, &l, &err) != 0)
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
    json_t *arr = json_array();
    /* RFC 8555 §7.1.2.1: pending, ready, processing and valid orders; invalid ones may be left out. */
    for (size_t i = 0; arr != NULL && i < l.n; i++) {
        if (strcmp(l.items[i].status, "invalid") == 0)
            continue;
        moat__acme_url(c, "order", l.items[i].id, url, sizeof url);
        json_array_append_new(arr, json_string(url));
    }
    moat_store_acme_list_dispose(&l);
    return moat__acme_reply_json(c, 200, arr ? json_pack("{so}", "orders", arr) : NULL);
}

/* ---- authorizations and challenges ------------------------------------------------------------------ */

int moat__acme_authz(acme_ctx_t *c, const char *id)
{
    moat_store_acme_obj_t o;
    json_t *doc = load(c, MOAT_STORE_ACME_AUTHZ, id, &o);
    int rc = 0;
    if (doc == NULL)
        return -1;
    const char *want = c->jws.payload ? moat_acme_json_str(c->jws.payload, "status") : NULL;
    if (want != NULL) {
        if (strcmp(want, "deactivated") != 0)
            rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                       "an authorization's status can only be set to deactivated");
        else {
            json_object_set_new(doc, "status", json_string("deactivated"));
            (void)moat_strlcpy(o.status, "deactivated", sizeof o.status);
            rc = put(c, MOAT_STORE_ACME_AUTHZ, o.id, o.parent, o.lookup, doc, o.created, o.expires);
        }
    }
    if (rc == 0)
        rc = moat__acme_reply_json(c, 200, authz_view(c, &o, doc));
    json_decref(doc);
    moat_store_acme_obj_dispose(&o);
    return rc;
}

int moat__acme_chall(acme_ctx_t *c, const char *id)
{
    moat_store_acme_obj_t o, a;
    json_t *doc = load(c, MOAT_STORE_ACME_CHALL, id, &o), *adoc = NULL;
    char url[400];
    int rc = 0;
    if (doc == NULL)
        return -1;
    if ((adoc = load(c, MOAT_STORE_ACME_AUTHZ, o.parent, &a)) == NULL) {
        json_decref(doc);
        moat_store_acme_obj_dispose(&o);
        return -1;
    }
    /* RFC 8555 §7.5.1: a POST with a payload ({}) asks for validation; POST-as-GET only reads. */
    if (c->jws.payload != NULL && strcmp(o.status, "pending") == 0) {
        if (strcmp(a.status, "pending") != 0 || c->now > a.expires)
            rc = moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "the authorization is %s",
                                       c->now > a.expires ? "expired" : a.status);
        else {
            json_object_set_new(doc, "status", json_string("processing"));
            (void)moat_strlcpy(o.status, "processing", sizeof o.status);
            rc = put(c, MOAT_STORE_ACME_CHALL, o.id, o.parent, o.lookup, doc, o.created, o.expires);
            /* The validation reads the challenge back from the store: it is queued once this commits, and a
             * queue that is full leaves it processing until the client polls it (or its authorization)
             * again, which queues it again. */
            if (rc == 0)
                (void)moat_strlcpy(c->resp->validate, o.id, sizeof c->resp->validate);
        }
    } else if (strcmp(o.status, "processing") == 0 && !moat__acme_validation_pending(c->svc, o.id)) {
        (void)moat_strlcpy(c->resp->validate, o.id, sizeof c->resp->validate);
    }
    if (rc == 0) {
        moat__acme_url(c, "authz", o.parent, url, sizeof url);
        moat__acme_link(c, url, "up");
        rc = moat__acme_reply_json(c, 200, chall_view(c, &o, doc));
        if (strcmp(o.status, "processing") == 0)
            c->resp->retry_after = 1;
    }
    json_decref(doc);
    json_decref(adoc);
    moat_store_acme_obj_dispose(&o);
    moat_store_acme_obj_dispose(&a);
    return rc;
}

/* ---- finalize ------------------------------------------------------------------------------------- */

/* Adds the DNS and IP names of <csr> (SANs and the CN) to <out> as "dns:name" / "ip:addr" strings. */
static int csr_names(X509_REQ *csr, json_t *out)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    char buf[300], ip[64];
    int rc = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            snprintf(buf, sizeof buf, "dns:%.*s", s->length, (const char *)s->data);
            for (char *p = buf + 4; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        } else if (g->type == GEN_IPADD && (g->d.iPAddress->length == 4 || g->d.iPAddress->length == 16)) {
            inet_ntop(g->d.iPAddress->length == 4 ? AF_INET : AF_INET6, g->d.iPAddress->data, ip, sizeof ip);
            snprintf(buf, sizeof buf, "ip:%s", ip);
        } else {
            rc = -1; /* e-mail, URI, ...: nothing an order can authorize */
            break;
        }
        json_object_set_new(out, buf, json_true());
    }
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME *subj = X509_REQ_get_subject_name(csr);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (rc == 0 && idx >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        unsigned char *u = NULL;
        int n = ASN1_STRING_to_UTF8(&u, cn);
        if (n > 0) {
            unsigned char a[16];
            char cnv[256];
            snprintf(cnv, sizeof cnv, "%.*s", n, (char *)u);
            int isip = inet_pton(strchr(cnv, ':') ? AF_INET6 : AF_INET, cnv, a) == 1;
            snprintf(buf, sizeof buf, "%s:%s", isip ? "ip" : "dns", cnv);
            for (char *p = buf + (isip ? 3 : 4); !isip && *p; p++)
                *p = (char)tolower((unsigned char)*p);
            json_object_set_new(out, buf, json_true());
        }
        OPENSSL_free(u);
    }
    return rc;
}

int moat__acme_finalize(acme_ctx_t *c, const char *id)
{
    moat_store_acme_obj_t o;
    moat_err_t err = {0};
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    EVP_PKEY *csr_key = NULL, *acct_key = NULL;
    moat_ca_t ca = {0};
    moat_pki_cert_info_t ci = {0};
    unsigned char *der = NULL;
    size_t dl = 0;
    json_t *doc = load(c, MOAT_STORE_ACME_ORDER, id, &o), *want = json_object(), *got = json_object(), *it;
    int rc = -1;
    size_t i;

    if (doc == NULL || want == NULL || got == NULL)
        goto out;
    if (order_refresh(c, &o, doc) != 0)
        goto out;
    if (strcmp(o.status, "ready") != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_ORDER_NOT_READY, "the order is %s, not ready",
                              o.status);
        goto out;
    }
    const char *csr64 = c->jws.payload ? moat_acme_json_str(c->jws.payload, "csr") : NULL;
    if (csr64 == NULL || moat_b64url_decode(csr64, strlen(csr64), &der, &dl, &err) != 0 ||
        moat_pki_csr_parse(der, dl, &csr, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_CSR, "csr is not a base64url DER request: %s",
                              err.msg[0] ? err.msg : "missing");
        goto out;
    }
    json_array_foreach(json_object_get(doc, "identifiers"), i, it)
    {
        char k[300];
        snprintf(k, sizeof k, "%s:%s", moat_acme_json_str(it, "type"), moat_acme_json_str(it, "value"));
        json_object_set_new(want, k, json_true());
    }
    if (csr_names(csr, got) != 0 || !json_equal(want, got)) {
        char *w = moat_acme_json_dump(want), *g = moat_acme_json_dump(got);
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_CSR,
                              "the request's names %.200s are not the order's identifiers %.200s",
                              g ? g : "?", w ? w : "?");
        free(w);
        free(g);
        goto out;
    }
    /* RFC 8555 §11.1: the certificate key must not be the account key. */
    if ((csr_key = moat_pki_csr_get1_pubkey(csr, &err)) == NULL ||
        moat_acme_jwk_to_pkey(json_object_get(c->acct_doc, "jwk"), &acct_key, &err) != 0 ||
        EVP_PKEY_eq(csr_key, acct_key) == 1) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_CSR, "the request's key %s",
                              csr_key ? "is the account key; use another key" : "cannot be read");
        goto out;
    }
    char name[MOAT_STORE_NAME_MAX];
    snprintf(name, sizeof name, "acme@%s", c->acct.id);
    moat_ca_issue_req_t ir = {(moat_pki_profile_t)c->req->conf->profile, c->req->conf->days, name};
    if (moat_ca_load_issuing(c->st, true, &ca, &err) != 0 ||
        moat_ca_issue(c->st, &ca, csr, &ir, &cert, &err) != 0) {
        moat_acme_problem_set(
            &c->prob, err.code == MOAT_E_PERM ? MOAT_ACME_PROB_BAD_CSR : MOAT_ACME_PROB_SERVER_INTERNAL,
            "moat's CA refused: %s", err.msg);
        goto out;
    }
    if (moat_pki_cert_info(cert, &ci, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
        goto out;
    }
    json_object_set_new(doc, "status", json_string("valid"));
    (void)moat_strlcpy(o.status, "valid", sizeof o.status);
    (void)moat_strlcpy(o.lookup, ci.serial, sizeof o.lookup);
    char detail[600];
    snprintf(detail, sizeof detail, "order %s, account %s, names %s, until %lld", o.id, c->acct.id, ci.sans,
             (long long)ci.not_after);
    if (put(c, MOAT_STORE_ACME_ORDER, o.id, "", ci.serial, doc, o.created, o.expires) != 0)
        goto out;
    if (moat_store_audit_add(c->st, "acme.issue", ci.serial, detail, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
        goto out;
    }
    moat__acme_url(c, "order", o.id, c->resp->location, sizeof c->resp->location);
    rc = moat__acme_reply_json(c, 200, order_view(c, &o, doc));
out:
    moat_pki_cert_info_dispose(&ci);
    moat_ca_dispose(&ca);
    EVP_PKEY_free(csr_key);
    EVP_PKEY_free(acct_key);
    X509_free(cert);
    X509_REQ_free(csr);
    moat_free(&der);
    json_decref(want);
    json_decref(got);
    if (doc != NULL) {
        json_decref(doc);
        moat_store_acme_obj_dispose(&o);
    }
    return rc;
}

/* ---- certificates ---------------------------------------------------------------------------------- */

int moat__acme_cert(acme_ctx_t *c, const char *serial)
{
    moat_store_acme_obj_t o = {0};
    moat_store_issued_t is = {0};
    moat_err_t err = {0};
    moat_ca_t ca = {0};
    moat_store_blob_t chain[1];
    X509 *leaf = NULL, *inter = NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    char *pem = NULL;
    size_t pl = 0;
    int rc = -1;

    if (moat_store_acme_find(c->st, MOAT_STORE_ACME_ORDER, serial, &o, &err) != 0 ||
        strcmp(o.account, c->acct.id) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                              "certificate %.80s is not one of this account's", serial);
        goto out;
    }
    if (moat_store_issued_get(c->st, serial, &is, &err) != 0 ||
        moat_pki_cert_parse(is.der.data, is.der.len, &leaf, &err) != 0 ||
        moat_ca_load(c->st, is.issuer, false, &ca, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
        goto out;
    }
    if (moat_ca_chain(&ca, chain) == 1) {
        if (moat_pki_cert_parse(chain[0].data, chain[0].len, &inter, &err) != 0 || sk == NULL ||
            !sk_X509_push(sk, inter)) {
            moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "the intermediate: %s", err.msg);
            goto out;
        }
        inter = NULL; /* owned by sk */
    } else if (sk == NULL || !X509_up_ref(ca.cert) || !sk_X509_push(sk, ca.cert)) {
        /* Issued by the root itself: the chain is the root, as clients expect an issuer after the leaf. */
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "out of memory");
        goto out;
    }
    if (moat_pki_cert_to_pem(leaf, sk, &pem, &pl, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "%s", err.msg);
        goto out;
    }
    c->resp->status = 200;
    c->resp->content_type = "application/pem-certificate-chain";
    c->resp->body = pem;
    c->resp->body_len = pl;
    pem = NULL;
    rc = 0;
out:
    moat_free(&pem);
    sk_X509_pop_free(sk, X509_free);
    X509_free(inter);
    X509_free(leaf);
    moat_ca_dispose(&ca);
    moat_store_issued_dispose(&is);
    moat_store_acme_obj_dispose(&o);
    return rc;
}

/* RFC 8555 §7.6: by the account that ordered it (kid) or by the certificate's own key (jwk). */
int moat__acme_revoke(acme_ctx_t *c)
{
    const json_t *pl = c->jws.payload;
    const char *b64 = pl ? moat_acme_json_str(pl, "certificate") : NULL;
    moat_err_t err = {0};
    unsigned char *der = NULL;
    size_t dl = 0;
    X509 *cert = NULL;
    EVP_PKEY *jwk_key = NULL;
    moat_pki_cert_info_t ci = {0};
    moat_store_issued_t is = {0};
    moat_store_acme_obj_t o = {0};
    int rc = -1;
    json_int_t reason = 0;

    if (json_object_get(pl, "reason") != NULL) {
        reason = json_integer_value(json_object_get(pl, "reason"));
        /* RFC 5280 §5.3.1 codes a subscriber may give: not 2 (CA compromise), 6 (hold), 7 (unused), 8. */
        if (!json_is_integer(json_object_get(pl, "reason")) ||
            !(reason == 0 || reason == 1 || reason == 3 || reason == 4 || reason == 5 || reason == 9))
            return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_BAD_REVOCATION_REASON,
                                         "reason %lld is not allowed (0, 1, 3, 4, 5 or 9)",
                                         (long long)reason);
    }
    if (b64 == NULL || moat_b64url_decode(b64, strlen(b64), &der, &dl, &err) != 0 ||
        moat_pki_cert_parse(der, dl, &cert, &err) != 0 || moat_pki_cert_info(cert, &ci, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "certificate is not base64url DER: %s",
                              err.msg);
        goto out;
    }
    if (moat_store_issued_get(c->st, ci.serial, &is, &err) != 0 || is.der.len != dl ||
        memcmp(is.der.data, der, dl) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "certificate %s was not issued by this CA",
                              ci.serial);
        goto out;
    }
    if (c->jws.jwk != NULL) {
        if (moat_acme_jwk_to_pkey(c->jws.jwk, &jwk_key, &err) != 0 ||
            EVP_PKEY_eq(jwk_key, X509_get0_pubkey(cert)) != 1) {
            moat_acme_problem_set(
                &c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                "the request is signed neither by the certificate's key nor by its account");
            goto out;
        }
    } else if (moat_store_acme_find(c->st, MOAT_STORE_ACME_ORDER, ci.serial, &o, &err) != 0 ||
               strcmp(o.account, c->acct.id) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_UNAUTHORIZED,
                              "certificate %s was not ordered by this account", ci.serial);
        goto out;
    }
    if (is.revoked != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_ALREADY_REVOKED, "certificate %s is revoked already",
                              ci.serial);
        goto out;
    }
    char detail[200];
    snprintf(detail, sizeof detail, "by %s, reason %lld", c->jws.jwk ? "the certificate's key" : c->acct.id,
             (long long)reason);
    /* Written as moat ca revoke writes it, in this transaction. */
    if (moat_ca_revoke_write(c->st, &is, c->now, (int)reason, "acme.revoke", detail, &err) != 0) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_SERVER_INTERNAL, "revoking %s: %s", ci.serial,
                              err.msg);
        goto out;
    }
    c->resp->status = 200;
    rc = 0;
out:
    moat_store_acme_obj_dispose(&o);
    moat_store_issued_dispose(&is);
    moat_pki_cert_info_dispose(&ci);
    EVP_PKEY_free(jwk_key);
    X509_free(cert);
    moat_free(&der);
    return rc;
}

/* ---- renewal information (RFC 9773) --------------------------------------------------------------- */

int moat__acme_renewal_info(acme_ctx_t *c, const char *certid)
{
    const char *dot = strchr(certid, '.');
    unsigned char *raw = NULL;
    size_t rl = 0;
    moat_err_t err = {0};
    moat_store_issued_t is = {0};
    X509 *cert = NULL;
    char serial[MOAT_STORE_SERIAL_MAX];
    int rc = -1;

    if (dot == NULL || moat_b64url_decode(dot + 1, strlen(dot + 1), &raw, &rl, &err) != 0 || rl == 0 ||
        rl > 20) {
        moat_free(&raw);
        return moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                                     "certID is base64url(authority key id) \".\" base64url(serial)");
    }
    size_t skip = 0;
    while (skip + 1 < rl && raw[skip] == 0)
        skip++;
    moat_hex_lower(raw + skip, rl - skip, serial);
    for (char *p = serial; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    moat_free(&raw);
    if (moat_store_issued_get(c->st, serial, &is, &err) != 0 ||
        moat_pki_cert_parse(is.der.data, is.der.len, &cert, &err)) {
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED, "no certificate with serial %s", serial);
        c->prob.status = 404;
        goto out;
    }
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    unsigned char *akid = NULL;
    size_t al = 0;
    if (aki == NULL || moat_b64url_decode(certid, (size_t)(dot - certid), &akid, &al, &err) != 0 ||
        al != (size_t)aki->length || memcmp(akid, aki->data, al) != 0) {
        moat_free(&akid);
        moat_acme_problem_set(&c->prob, MOAT_ACME_PROB_MALFORMED,
                              "certID's key identifier is not the issuer's of %s", serial);
        c->prob.status = 404;
        goto out;
    }
    moat_free(&akid);
    int64_t nb = 0, na = is.not_after;
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm) == 1)
        nb = (int64_t)timegm(&tm);
    int64_t life = na > nb ? na - nb : 1, start, end;
    int64_t cutoff = 0;
    if (moat_time_parse(c->req->conf->renew_issued_before, 0, &cutoff) != 0)
        cutoff = 0;
    if (is.revoked != 0 || (cutoff > 0 && is.issued < cutoff)) {
        /* RFC 9773 §4.2: a window in the past asks for renewal now (revoked, or issued before the
         * operator's acme_server.renew_issued_before). */
        start = c->now - 3600;
        end = c->now - 1;
    } else {
        start = nb + life * 2 / 3;
        end = nb + life * 5 / 6;
    }
    char s[32], e[32];
    moat__acme_time(start, s, sizeof s);
    moat__acme_time(end, e, sizeof e);
    long retry = (long)(life / 10);
    c->resp->retry_after = retry < 60 ? 60 : retry > 6 * 3600 ? 6 * 3600 : retry;
    rc = moat__acme_reply_json(c, 200, json_pack("{s{ssss}}", "suggestedWindow", "start", s, "end", e));
out:
    X509_free(cert);
    moat_store_issued_dispose(&is);
    return rc;
}
