/* plan: which certificates a site serves (see plan.h). */
#include "plan/plan.h"

#include "pki/pki.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

/* How well <x> covers a site's hosts, by the rule clients apply (moat_plan_cert_covers): every host covered
 * beats some, and a name the certificate holds as it is beats one a wildcard covers. */
static void cover_score(X509 *x, const moat_strlist_t *hosts, int *covered, int *exact)
{
    *covered = *exact = 0;
    for (size_t h = 0; h < hosts->n; h++) {
        const char *host = hosts->v[h];
        if (!moat_plan_cert_covers(x, host))
            continue;
        (*covered)++;
        *exact +=
            moat_pki_is_ip_literal(host) ||
            X509_check_host(x, host, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS,
                            NULL) == 1;
    }
}

/* The slot a parsed certificate serves in: 0 ECDSA/EdDSA, 1 RSA, -1 not a TLS server certificate. */
static int slot_of(X509 *x)
{
    /* serverAuth (or no EKU) and not a CA: X509_check_purpose applies the EKU/KU rules. */
    if (X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) == 1 && X509_check_ca(x) == 0) {
        EVP_PKEY *pk = X509_get0_pubkey(x);
        return pk != NULL && EVP_PKEY_is_a(pk, "RSA") ? 1 : 0;
    }
    return -1;
}

int moat_plan_cert_slot(const moat_store_cert_t *c)
{
    const unsigned char *p = c->der.data;
    X509 *x = d2i_X509(NULL, &p, (long)c->der.len);
    int slot = x != NULL ? slot_of(x) : -1;
    X509_free(x);
    return slot;
}

void moat_plan_site_dispose(moat_plan_site_t *p)
{
    if (p == NULL)
        return;
    for (size_t l = 0; l < p->nlists; l++)
        moat_store_cert_list_dispose(&p->lists[l]);
    moat_store_key_dispose(&p->key);
    memset(p, 0, sizeof(*p));
}

static int pick_auto(moat_store_t *st, const moat_site_t *site, int64_t now, moat_plan_site_t *p,
                     moat_err_t *err)
{
    int best_cov[2] = {0, 0}, best_exact[2] = {0, 0};
    int rc;

    for (size_t h = 0; h < site->hosts.n && p->nlists < MOAT_PLAN_MAX_HOSTS; h++) {
        if ((rc = moat_store_cert_find_host(st, site->hosts.v[h], now, &p->lists[p->nlists], err)) != 0)
            return rc;
        p->nlists++;
    }
    for (size_t l = 0; l < p->nlists; l++) {
        for (size_t i = 0; i < p->lists[l].n; i++) {
            const moat_store_cert_t *c = &p->lists[l].items[i], *b;
            const unsigned char *der = c->der.data;
            X509 *x;
            int slot, cov = 0, exact = 0;
            if (c->not_before > now || c->not_after <= now)
                continue;
            x = d2i_X509(NULL, &der, (long)c->der.len);
            if ((slot = x != NULL ? slot_of(x) : -1) >= 0)
                cover_score(x, &site->hosts, &cov, &exact);
            X509_free(x);
            if (slot < 0)
                continue;
            b = p->certs[slot];
            if (b == NULL || cov > best_cov[slot] || (cov == best_cov[slot] && exact > best_exact[slot]) ||
                (cov == best_cov[slot] && exact == best_exact[slot] &&
                 (c->not_after > b->not_after ||
                  (c->not_after == b->not_after && c->installed > b->installed)))) {
                p->certs[slot] = c;
                best_cov[slot] = cov;
                best_exact[slot] = exact;
            }
        }
    }
    if (p->certs[0] == NULL && p->certs[1] == NULL) {
        moat_err_set(err, MOAT_E_NOTFOUND,
                     "site \"%s\": no valid server certificate in the store matches its hosts", site->name);
        return moat_err_hint(
            err, "issue one with: moat ca issue NAME --cn %s (or name a key with certificate: NAME)",
            site->name);
    }
    return 0;
}

static int pick_named(moat_store_t *st, const moat_site_t *site, int64_t now, moat_plan_site_t *p,
                      moat_err_t *err)
{
    const char *name = site->certificate;
    const moat_store_cert_t *c;
    int rc, slot;

    if ((rc = moat_store_key_get(st, name, MOAT_KEY_WANT_ACTIVE, &p->key, err)) != 0) {
        moat_err_prefix(err, "site \"%s\": certificate \"%s\"", site->name, name);
        if (rc == MOAT_E_NOTFOUND)
            moat_err_hint(err,
                          "install a certificate for key \"%s\" (moat cert install %s CERT.pem) or use "
                          "certificate: auto",
                          name, name);
        return rc;
    }
    if ((c = p->key.cert) == NULL) {
        moat_err_set(err, MOAT_E_STATE, "site \"%s\": key \"%s\" has no certificate", site->name, name);
        return moat_err_hint(err, "install one with: moat cert install %s CERT.pem", name);
    }
    if (c->not_after <= now || c->not_before > now) {
        moat_err_set(err, MOAT_E_STATE, "site \"%s\": the certificate of key \"%s\" is %s", site->name, name,
                     c->not_after <= now ? "expired" : "not yet valid");
        return moat_err_hint(err, "renew it: moat key renew %s, then moat cert install", name);
    }
    if ((slot = moat_plan_cert_slot(c)) < 0) {
        moat_err_set(err, MOAT_E_STATE,
                     "site \"%s\": the certificate of key \"%s\" is not a TLS server certificate", site->name,
                     name);
        return moat_err_hint(err, "issue a server certificate for it (profile server)");
    }
    p->certs[slot] = c;
    return 0;
}

int moat_plan_site(moat_store_t *st, const moat_site_t *site, int64_t now, moat_plan_site_t *out,
                   moat_err_t *err)
{
    memset(out, 0, sizeof(*out));
    return site->certificate != NULL ? pick_named(st, site, now, out, err)
                                     : pick_auto(st, site, now, out, err);
}

/* ---- client-certificate anchors ---- */

void moat_plan_anchors_dispose(moat_plan_anchors_t *a)
{
    if (a != NULL)
        MOAT_ARRAY_DISPOSE(a->der, a->n, moat_store_blob_dispose);
}

bool moat_plan_site_trusts(const moat_site_t *site, const char *name)
{
    if (!moat_site_wants_client_cert(site))
        return false;
    for (size_t k = 0; k < site->client_trust.n; k++)
        if (strcmp(site->client_trust.v[k], name) == 0)
            return true;
    return site->client_trust.n == 0;
}

static int anchor_add(moat_plan_anchors_t *a, const moat_store_blob_t *b, moat_err_t *err)
{
    moat_store_blob_t *d = moat_realloc(a->der, (a->n + 1) * sizeof(*d));
    if (d == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "copying trust anchors");
    a->der = d;
    if ((d[a->n].data = moat_malloc(b->len ? b->len : 1)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "copying trust anchors");
    memcpy(d[a->n].data, b->data, b->len);
    d[a->n++].len = b->len;
    return 0;
}

int moat_plan_anchors_copy(const moat_plan_anchors_t *from, moat_plan_anchors_t *to, moat_err_t *err)
{
    for (size_t i = 0; i < from->n; i++) {
        int rc = anchor_add(to, &from->der[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* moat's own CA: its root and, when there is one, its intermediate. */
static int anchors_moat_ca(moat_store_t *st, moat_plan_anchors_t *a, moat_err_t *err)
{
    static const moat_ca_role_t roles[2] = {MOAT_CA_ROOT, MOAT_CA_INTERMEDIATE};
    for (size_t i = 0; i < MOAT_ARRAY_LEN(roles); i++) {
        moat_store_ca_t ca = {0};
        int rc = moat_store_ca_get(st, roles[i], &ca, err);
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(err);
            continue;
        }
        if (rc == 0)
            rc = anchor_add(a, &ca.der, err);
        moat_store_ca_dispose(&ca);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int moat_plan_anchors_named(moat_store_t *st, const moat_strlist_t *names, moat_plan_anchors_t *out,
                            size_t *bad, moat_err_t *err)
{
    int rc = 0;

    memset(out, 0, sizeof(*out));
    *bad = 0;
    if (names->n == 0) {
        moat_store_anchor_list_t al = {0};
        if ((rc = anchors_moat_ca(st, out, err)) != 0 || (rc = moat_store_anchor_list(st, &al, err)) != 0)
            return rc;
        for (size_t i = 0; rc == 0 && i < al.n; i++)
            rc = anchor_add(out, &al.items[i].der, err);
        moat_store_anchor_list_dispose(&al);
        return rc;
    }
    for (size_t t = 0; rc == 0 && t < names->n; t++) {
        moat_store_anchor_t a = {0};
        *bad = t;
        if (strcmp(names->v[t], MOAT_PLAN_CA_ANCHOR) == 0)
            rc = anchors_moat_ca(st, out, err);
        else if ((rc = moat_store_anchor_get(st, names->v[t], &a, err)) == 0)
            rc = anchor_add(out, &a.der, err);
        moat_store_anchor_dispose(&a);
    }
    return rc;
}

int moat_plan_site_anchors(moat_store_t *st, const moat_site_t *site, moat_plan_anchors_t *out,
                           moat_err_t *err)
{
    size_t bad;
    int rc = moat_plan_anchors_named(st, &site->client_trust, out, &bad, err);

    if (rc != 0 && site->client_trust.n > 0 && rc != MOAT_E_NOMEM) {
        const char *name = site->client_trust.v[bad];
        moat_err_prefix(err, "site \"%s\": client_trust \"%s\"", site->name, name);
        if (rc == MOAT_E_NOTFOUND)
            moat_err_hint(err, "add it with: moat trust add FILE --name %s", name);
    }
    if (rc != 0)
        return rc;
    if (out->n == 0) {
        moat_err_set(err, MOAT_E_STATE,
                     "site \"%s\" asks for client certificates but has no usable trust anchor", site->name);
        return moat_err_hint(err,
                             "create moat's CA (moat ca init) or add one: moat trust add FILE; until then "
                             "the site does not load");
    }
    return 0;
}

int moat_plan_cert_revoked(moat_store_t *st, const moat_store_cert_t *c, int *revoked, moat_err_t *err)
{
    moat_store_issued_t is = {0};
    int rc = moat_store_issued_get(st, c->serial, &is, err);

    *revoked = 0;
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0;
    }
    /* The same serial from another CA is another certificate: the bytes decide. */
    if (rc == 0)
        *revoked = is.revoked != 0 && strcmp(is.serial, c->serial) == 0 && is.der.len == c->der.len &&
                   memcmp(is.der.data, c->der.data, c->der.len) == 0;
    moat_store_issued_dispose(&is);
    return rc;
}

/* ---- the document root ---- */

int moat_plan_site_root(const moat_site_t *site, moat_http_root_t *root, moat_err_t *err)
{
    int rc = moat_http_root_open(root, site->root, err);
    if (rc != 0)
        moat_err_prefix(err, "site \"%s\": root", site->name);
    return rc;
}

/* ---- what a loaded site serves wrong ---- */

bool moat_plan_cert_covers(X509 *leaf, const char *host)
{
    char probe[300];

    if (moat_pki_is_ip_literal(host))
        return X509_check_ip_asc(leaf, host, 0) == 1;
    if (strncmp(host, "*.", 2) == 0) {
        /* Only a wildcard certificate covers every name under a wildcard host: a name no one issues a
         * certificate for stands for them all. */
        if (snprintf(probe, sizeof(probe), "moat-any-name%s", host + 1) >= (int)sizeof(probe))
            return false;
        host = probe;
    }
    return X509_check_host(leaf, host, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1;
}

int moat_plan_site_problems(moat_store_t *st, const moat_site_t *site, const moat_plan_site_t *plan,
                            moat_plan_problem_fn fn, void *arg, moat_err_t *err)
{
    X509 *leaf[2] = {NULL, NULL};
    moat_plan_problem_t p;
    int rc = 0, revoked;

    for (int slot = 0; slot < 2; slot++) {
        const moat_store_cert_t *c = plan->certs[slot];
        const unsigned char *der;
        if (c == NULL)
            continue;
        der = c->der.data;
        leaf[slot] = d2i_X509(NULL, &der, (long)c->der.len);
        if ((rc = moat_plan_cert_revoked(st, c, &revoked, err)) != 0)
            goto out;
        if (!revoked)
            continue;
        memset(&p, 0, sizeof(p));
        p.kind = MOAT_PLAN_REVOKED;
        p.cert = c;
        (void)moat_plan_served_revoked(site->name, c->key_name, c->serial, p.what, sizeof(p.what));
        (void)snprintf(p.hint, sizeof(p.hint),
                       "give the site a new certificate (moat ca issue, or moat key renew %s, moat ca sign "
                       "and moat cert install)",
                       c->key_name);
        fn(arg, &p);
    }
    if (leaf[0] == NULL && leaf[1] == NULL)
        goto out; /* nothing served (certificate: acme before its first issuance) */
    for (size_t h = 0; h < site->hosts.n; h++) {
        const char *host = site->hosts.v[h];
        int slot;
        if ((leaf[0] != NULL && moat_plan_cert_covers(leaf[0], host)) ||
            (leaf[1] != NULL && moat_plan_cert_covers(leaf[1], host)))
            continue;
        slot = plan->certs[0] != NULL ? 0 : 1;
        memset(&p, 0, sizeof(p));
        p.kind = MOAT_PLAN_UNCOVERED;
        p.host = host;
        (void)snprintf(p.what, sizeof(p.what),
                       "site \"%s\": no certificate it serves covers %s (key \"%s\" names %s): clients "
                       "asking for %s refuse the handshake (name mismatch)",
                       site->name, host, plan->certs[slot]->key_name,
                       plan->certs[slot]->sans != NULL && plan->certs[slot]->sans[0] ? plan->certs[slot]->sans
                                                                                     : "nothing",
                       host);
        (void)snprintf(p.hint, sizeof(p.hint),
                       "give key \"%s\" a certificate that names %s too (moat key renew %s --san %s:%s,... "
                       "with its other names, have the request signed, moat cert install %s), or remove %s "
                       "from the site's hosts",
                       plan->certs[slot]->key_name, host, plan->certs[slot]->key_name,
                       moat_pki_is_ip_literal(host) ? "IP" : "DNS", host, plan->certs[slot]->key_name, host);
        fn(arg, &p);
    }
out:
    X509_free(leaf[0]);
    X509_free(leaf[1]);
    return rc;
}

/* ---- the check before commit ---- */

/* What the server makes of one site in one state of the store. */
typedef struct site_verdict {
    int loads;                             /* 1: it loads; else <why> says why not */
    moat_err_t why;                        /* the refusal */
    char fpr[2][MOAT_STORE_FPR_LEN + 1];   /* what it serves per slot ("" for none) */
    char key[2][MOAT_STORE_NAME_MAX];      /* the key of that certificate */
    char serial[2][MOAT_STORE_SERIAL_MAX]; /* its serial */
    int revoked[2];                        /* moat's CA revoked it */
} site_verdict_t;

/* A refusal of the server is an answer about the site; any other failure is an error of the check. */
static int refusal(int rc)
{
    return rc == MOAT_E_NOTFOUND || rc == MOAT_E_STATE;
}

static int site_verdict(moat_store_t *st, const moat_site_t *site, int64_t now, site_verdict_t *v,
                        moat_err_t *err)
{
    moat_plan_site_t plan;
    int rc;

    memset(v, 0, sizeof(*v));
    v->loads = 1;
    rc = moat_plan_site(st, site, now, &plan, &v->why);
    for (int slot = 0; rc == 0 && slot < 2; slot++) {
        const moat_store_cert_t *c = plan.certs[slot];
        if (c == NULL)
            continue;
        (void)moat_strlcpy(v->fpr[slot], c->fingerprint, sizeof(v->fpr[slot]));
        (void)moat_strlcpy(v->key[slot], c->key_name, sizeof(v->key[slot]));
        (void)moat_strlcpy(v->serial[slot], c->serial, sizeof(v->serial[slot]));
        rc = moat_plan_cert_revoked(st, c, &v->revoked[slot], &v->why);
    }
    moat_plan_site_dispose(&plan);
    if (rc != 0 && site->acme && refusal(rc)) {
        /* certificate: acme before its first issuance: the server loads the site without one */
        moat_err_clear(&v->why);
        rc = 0;
    }
    if (rc == 0 && moat_site_wants_client_cert(site)) {
        moat_plan_anchors_t a;
        rc = moat_plan_site_anchors(st, site, &a, &v->why);
        moat_plan_anchors_dispose(&a);
    }
    if (rc == 0)
        return 0;
    if (!refusal(rc)) {
        *err = v->why;
        return rc;
    }
    v->loads = 0;
    return 0;
}

static void note_add(moat_plan_notes_t *notes, const char *fmt, ...) MOAT_PRINTF(2, 3);
static void note_add(moat_plan_notes_t *notes, const char *fmt, ...)
{
    size_t o = strlen(notes->text);
    va_list ap;
    va_start(ap, fmt);
    if (o + 2 < sizeof(notes->text)) {
        (void)vsnprintf(notes->text + o, sizeof(notes->text) - o - 1, fmt, ap);
        o = strlen(notes->text);
        notes->text[o] = '\n';
        notes->text[o + 1] = '\0';
    }
    va_end(ap);
}

/* Appends <text> to the list <buf> ("; " apart; nothing for "" or a text the list has already). */
static void refusal_add(char *buf, size_t bufsz, const char *text)
{
    size_t o = strlen(buf);
    if (text[0] == '\0' || strstr(buf, text) != NULL || o + 3 >= bufsz)
        return;
    if (o > 0) {
        memcpy(buf + o, "; ", 3);
        o += 2;
    }
    (void)moat_strlcpy(buf + o, text, bufsz - o);
}

int moat_plan_served_revoked(const char *site, const char *key, const char *serial, char *out, size_t outsz)
{
    int n = snprintf(out, outsz,
                     "site \"%s\" serves the certificate of key \"%s\" (serial %s), which is revoked: the "
                     "server goes on serving it with a \"revoked\" OCSP staple and clients that check "
                     "revocation refuse it",
                     site, key, serial);
    return n < 0 ? 0 : n;
}

int moat_plan_check_change(moat_store_t *st, const moat_config_t *cfg, moat_plan_notes_t *notes,
                           moat_err_t *err)
{
    return moat_plan_check_change_flags(st, cfg, 0, notes, err);
}

int moat_plan_check_change_flags(moat_store_t *st, const moat_config_t *cfg, unsigned flags,
                                 moat_plan_notes_t *notes, moat_err_t *err)
{
    return moat_plan_check_change_from(st, NULL, cfg, flags, notes, err);
}

int moat_plan_commit(moat_store_t *st, const moat_config_t *cfg, unsigned flags, moat_plan_notes_t *notes,
                     moat_err_t *err)
{
    moat_plan_notes_t none;
    int rc = moat_plan_check_change_flags(st, cfg, flags, notes != NULL ? notes : &none, err);
    if (rc == 0)
        rc = moat_store_commit(st, err);
    if (rc != 0)
        moat_store_rollback(st);
    return rc;
}

int moat_plan_check_change_from(moat_store_t *st, moat_store_t *was, const moat_config_t *cfg, unsigned flags,
                                moat_plan_notes_t *notes, moat_err_t *err)
{
    moat_store_t *before = was;
    int64_t now = (int64_t)time(NULL);
    size_t refused = 0;
    moat_err_t *all = NULL; /* every refusal: the messages, then the hints, each "; " apart */
    site_verdict_t *after = NULL, *prev = NULL;
    int rc = 0;

    notes->text[0] = '\0';
    if (cfg == NULL || cfg->nsites == 0)
        return 0;
    if ((after = moat_calloc(2, sizeof(*after))) == NULL || (all = moat_calloc(1, sizeof(*all))) == NULL) {
        moat_free(&after);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory checking the change");
    }
    prev = &after[1];
    for (size_t i = 0; rc == 0 && i < cfg->nsites; i++) {
        const moat_site_t *site = &cfg->sites[i];
        int need_prev;
        if ((rc = site_verdict(st, site, now, after, err)) != 0)
            break;
        need_prev = !after->loads || after->revoked[0] || after->revoked[1];
        if (!need_prev)
            continue;
        if (before == NULL &&
            (rc = moat_store_open(moat_store_path(st), NULL, MOAT_STORE_READONLY | MOAT_STORE_NO_MASTER_KEY,
                                  &before, err)) != 0) {
            moat_err_prefix(err, "checking the change: reading the store as it was");
            break;
        }
        if ((rc = site_verdict(before, site, now, prev, err)) != 0) {
            moat_err_prefix(err, "checking the change: reading the store as it was");
            break;
        }
        if (!after->loads) {
            if (prev->loads) {
                refusal_add(all->msg, sizeof(all->msg), after->why.msg);
                refusal_add(all->hint, sizeof(all->hint), after->why.hint);
                refused++;
            }
            continue;
        }
        for (int slot = 0; rc == 0 && slot < 2; slot++) {
            char why[MOAT_ERR_MSG_MAX];
            if (!after->revoked[slot] ||
                (prev->loads && prev->revoked[slot] && strcmp(prev->fpr[slot], after->fpr[slot]) == 0))
                continue;
            (void)moat_plan_served_revoked(site->name, after->key[slot], after->serial[slot], why,
                                           sizeof(why));
            if (flags & MOAT_PLAN_REFUSE_REVOKED) {
                moat_err_set(err, MOAT_E_STATE, "%s", why);
                moat_err_hint(err,
                              "give the site a new certificate first (moat key renew %s, moat ca sign, moat "
                              "cert install), or go ahead with --force (a compromised key); nothing was "
                              "changed",
                              after->key[slot]);
                rc = MOAT_E_STATE;
            } else {
                note_add(notes,
                         "%s; give the site a new one (moat ca issue, or moat key renew %s and moat ca sign)",
                         why, after->key[slot]);
            }
        }
    }
    if (rc == 0 && refused > 0) {
        moat_err_set(err, MOAT_E_STATE, "the server would not load this change: %s", all->msg);
        moat_err_hint(err, "%s%snothing was changed", all->hint, all->hint[0] ? "; " : "");
        rc = MOAT_E_STATE;
    }
    if (before != was)
        moat_store_close(before);
    moat_free(&all);
    moat_free(&after);
    return rc;
}
