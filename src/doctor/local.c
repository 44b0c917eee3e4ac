/*
 * Local diagnosis: the config, the store and the live listeners of this machine. The store is opened
 * read-only and without the master key: doctor never needs a private key and never changes anything.
 */
#include "doctor/doctor_int.h"

#include "acme/acme.h"

#include "config/config.h"
#include "plan/plan.h"
#include "server/server.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct local {
    moat_doctor_report_t *r;
    const moat_doctor_opts_t *o;
    const char *config_path;
    moat_store_t *st;   /* owned */
    moat_config_t *cfg; /* owned; NULL without a (valid) config */
    X509_STORE *trust;  /* owned: system + --ca + moat's CA and anchors */
    char trust_desc[256];
    moat_store_key_list_t keys; /* active and pending keys */
    char **bound;               /* key names some site serves (borrowed from keys), nbound of them */
    size_t nbound;
    int64_t ca_key_ids[2]; /* key rows of the CA (root, intermediate); 0 when none */
    const char *site_name; /* the site check_site_plan() is at */
    int have_ca;
    int server_alive;
    int64_t server_pid;
} local_t;

/* The leaf and chain of a stored certificate as a stack (leaf first); NULL when it does not parse. */
static STACK_OF(X509) * cert_stack(const moat_store_cert_t *c)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    const unsigned char *p = c->der.data;
    X509 *x;
    if (sk == NULL)
        return NULL;
    if ((x = d2i_X509(NULL, &p, (long)c->der.len)) == NULL || !sk_X509_push(sk, x)) {
        X509_free(x);
        sk_X509_free(sk);
        ERR_clear_error();
        return NULL;
    }
    for (size_t i = 0; i < c->chain_n; i++) {
        p = c->chain[i].data;
        if ((x = d2i_X509(NULL, &p, (long)c->chain[i].len)) == NULL || !sk_X509_push(sk, x)) {
            X509_free(x);
            ERR_clear_error();
            break;
        }
    }
    return sk;
}

static X509 *der_to_x509(const moat_store_blob_t *b)
{
    const unsigned char *p = b->data;
    X509 *x = b->len ? d2i_X509(NULL, &p, (long)b->len) : NULL;
    if (x == NULL)
        ERR_clear_error();
    return x;
}

int moat_doctor_store_anchors(moat_store_t *st, X509_STORE **out, moat_err_t *err)
{
    X509_STORE *xs = X509_STORE_new();
    moat_store_anchor_list_t al = {0};
    moat_err_t e = {0};
    int rc;
    if (xs == NULL)
        return moat_err_ossl(err, MOAT_E_NOMEM, "creating a trust store");
    for (int role = MOAT_CA_ROOT; role <= MOAT_CA_INTERMEDIATE; role++) {
        moat_store_ca_t ca = {0};
        if (moat_store_ca_get(st, (moat_ca_role_t)role, &ca, &e) == 0) {
            X509 *x = der_to_x509(&ca.der);
            if (x != NULL && X509_STORE_add_cert(xs, x) != 1)
                ERR_clear_error();
            X509_free(x);
        }
        moat_store_ca_dispose(&ca);
    }
    if ((rc = moat_store_anchor_list(st, &al, err)) != 0) {
        X509_STORE_free(xs);
        return rc;
    }
    for (size_t i = 0; i < al.n; i++) {
        X509 *x = der_to_x509(&al.items[i].der);
        if (x != NULL && X509_STORE_add_cert(xs, x) != 1)
            ERR_clear_error();
        X509_free(x);
    }
    moat_store_anchor_list_dispose(&al);
    *out = xs;
    return 0;
}

X509_STORE *moat__doctor_anchors_at(const char *store_path)
{
    moat_store_t *st = NULL;
    moat_err_t e = {0};
    X509_STORE *xs = NULL;
    struct stat sb;
    if (store_path == NULL || stat(store_path, &sb) != 0)
        return NULL;
    if (moat_store_open(store_path, NULL, MOAT_STORE_READONLY | MOAT_STORE_NO_MASTER_KEY, &st, &e) != 0)
        return NULL;
    if (moat_doctor_store_anchors(st, &xs, &e) != 0)
        xs = NULL;
    moat_store_close(st);
    return xs;
}

static void time_str(int64_t t, char *out, size_t outsz)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, outsz, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        moat_strlcpy(out, "?", outsz);
}

static int is_bound(const local_t *l, const char *name)
{
    for (size_t i = 0; i < l->nbound; i++)
        if (strcmp(l->bound[i], name) == 0)
            return 1;
    return 0;
}

static void bind_key(local_t *l, const char *name)
{
    char **p;
    if (is_bound(l, name))
        return;
    if ((p = moat_realloc(l->bound, (l->nbound + 1) * sizeof(*p))) == NULL) {
        l->r->oom = 1;
        return;
    }
    l->bound = p;
    l->bound[l->nbound++] = (char *)name;
}

static const moat_store_key_t *find_key(const local_t *l, const char *name, moat_key_state_t state)
{
    for (size_t i = 0; i < l->keys.n; i++)
        if (strcmp(l->keys.items[i].name, name) == 0 && l->keys.items[i].state == state)
            return &l->keys.items[i];
    return NULL;
}

/* ---- store ------------------------------------------------------------------------------------- */

static int server_alive(int64_t pid)
{
    if (pid <= 0 || pid > INT_MAX)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/*
 * What the running server recorded about OCSP stapling (MOAT_STORE_SETTING_STAPLING): one entry per
 * certificate it cannot staple, 'site NAME, key "KEY": reason', one per line.
 */
static void check_stapling(local_t *l)
{
    char text[2048], *entry, *save = NULL;
    moat_err_t e = {0};

    if (!l->server_alive ||
        moat_store_setting_get(l->st, MOAT_STORE_SETTING_STAPLING, text, sizeof(text), &e) != 0)
        return;
    for (entry = strtok_r(text, "\n", &save); entry != NULL; entry = strtok_r(NULL, "\n", &save)) {
        char site[128] = "", key[128] = "", subject[160];
        const char *reason = strstr(entry, "\": "), *q;
        moat_doctor_finding_t *f;
        while (*entry == ' ')
            entry++;
        if (strncmp(entry, "site ", 5) == 0 && (q = strchr(entry, ',')) != NULL &&
            (size_t)(q - entry - 5) < sizeof(site))
            memcpy(site, entry + 5, (size_t)(q - entry - 5));
        if ((q = strchr(entry, '"')) != NULL && reason != NULL && reason > q &&
            (size_t)(reason - q - 1) < sizeof(key))
            memcpy(key, q + 1, (size_t)(reason - q - 1));
        reason = reason != NULL ? reason + 3 : entry;
        snprintf(subject, sizeof(subject), "site %s", site[0] ? site : "?");
        f = moat_doctor_add(
            l->r, MOAT_DOCTOR_ERROR, "ocsp-stapling-failed", subject,
            "OCSP stapling is configured (moat's CA issued the certificate of key \"%s\") but "
            "failing: %s",
            key[0] ? key : "?", reason);
        moat_doctor_why(f,
                        "clients get no stapled response: they ask the responder themselves (slower, and it "
                        "tells the CA who visits) or, when they require stapling, refuse the site");
        if (strstr(reason, "offline") != NULL)
            moat_doctor_fix(
                f,
                "issue the site a certificate from the intermediate, whose key is online: moat ca "
                "issue %s-new --cn HOST, then certificate: %s-new (or moat cert install); the server "
                "staples it at once",
                key[0] ? key : "NAME", key[0] ? key : "NAME");
        else
            moat_doctor_fix(f,
                            "look at the server's error log for the cause; the server retries every minute "
                            "and after moat reload%s%s",
                            l->config_path ? " -c " : "", l->config_path ? l->config_path : "");
    }
}

static void check_server_status(local_t *l)
{
    moat_store_server_status_t s;
    moat_err_t e = {0};
    int64_t gen = 0;
    moat_doctor_finding_t *f;
    char when[64];

    /*
     * The server notices a store change within about half a second: a change made just before doctor
     * ran is not a finding, so give the server a moment before calling it behind.
     */
    for (int attempt = 0; attempt < 8; attempt++) {
        if (moat_store_generation(l->st, &gen, &e) != 0 || moat_store_server_status_get(l->st, &s, &e) != 0) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "store-unreadable", "server", "%s", e.msg);
            moat_doctor_fix(f, "%s", e.hint[0] ? e.hint : "check the store file's permissions");
            return;
        }
        if (s.applied_generation < 0 || s.applied_generation >= gen || !server_alive(s.pid) ||
            (s.refused_generation >= gen && s.refusal[0] != '\0'))
            break;
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    l->server_pid = s.pid;
    l->server_alive = s.applied_generation >= 0 && server_alive(s.pid);
    moat_doctor_fact(l->r, "store", "generation", "%lld", (long long)gen);
    if (s.applied_generation < 0) {
        moat_doctor_fact(l->r, "server", "status", "no moat server has run on this store");
        return;
    }
    time_str(s.updated, when, sizeof(when));
    moat_doctor_fact(l->r, "server", "status", "%s (pid %lld), generation %lld, last report %s",
                     l->server_alive ? "running" : "not running", (long long)s.pid,
                     (long long)s.applied_generation, when);
    /* The server clears the refusal when a later reload succeeds; a refused config reload keeps the number.
     * Sites that keep their last good state are numbered by the generation that brought their refusal,
     * which may be older than the one applied. */
    if (s.refusal[0]) {
        if (s.refused_generation > s.applied_generation)
            f = moat_doctor_add(
                l->r, MOAT_DOCTOR_ERROR, "change-refused", "server",
                "the server refused store generation %lld and keeps serving generation %lld: %s",
                (long long)s.refused_generation, (long long)s.applied_generation, s.refusal);
        else
            f = moat_doctor_add(
                l->r, MOAT_DOCTOR_ERROR, "change-refused", "server",
                "the server refused its last reload and keeps serving what it loaded before: %s", s.refusal);
        moat_doctor_why(f, "the change is in the store but not served: clients still see the old state");
        moat_doctor_fix(f, "fix the cause above (the findings below name it), or undo the change (moat cert "
                           "rollback NAME); the server picks up the next good generation by itself");
    } else if (l->server_alive && s.applied_generation < gen) {
        f = moat_doctor_add(
            l->r, MOAT_DOCTOR_ERROR, "server-behind", "server",
            "the running server (pid %lld) serves store generation %lld, but the store is at %lld",
            (long long)s.pid, (long long)s.applied_generation, (long long)gen);
        moat_doctor_why(f, "changes committed to the store are not served yet");
        moat_doctor_fix(f, "look at the server's error log; moat reload%s%s asks it to reload now",
                        l->config_path ? " -c " : "", l->config_path ? l->config_path : "");
    }
}

static void check_ca(local_t *l)
{
    static const char *subjects[] = {"ca root", "ca intermediate"};
    for (int role = MOAT_CA_ROOT; role <= MOAT_CA_INTERMEDIATE; role++) {
        moat_store_ca_t ca = {0};
        moat_err_t e = {0};
        X509 *x;
        if (moat_store_ca_get(l->st, (moat_ca_role_t)role, &ca, &e) != 0)
            continue;
        l->have_ca = 1;
        l->ca_key_ids[role] = ca.key_id;
        if ((x = der_to_x509(&ca.der)) != NULL) {
            char name[256], until[64];
            int days = 0;
            moat_doctor_finding_t *f;
            moat__doctor_short_name(x, name, sizeof(name));
            moat__doctor_time(X509_get0_notAfter(x), until, sizeof(until));
            moat_doctor_fact(l->r, subjects[role], "certificate", "%s, until %s%s", name, until,
                             ca.key_id == 0 ? ", key offline" : "");
            (void)moat__doctor_days_left(X509_get0_notAfter(x), &days);
            if (X509_cmp_time(X509_get0_notAfter(x), NULL) < 0) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "ca-expired", subjects[role],
                                    "moat's %s CA certificate %s expired on %s",
                                    role ? "intermediate" : "root", name, until);
                moat_doctor_why(f, "every certificate it issued fails to verify, and it can issue no more");
                moat_doctor_fix(f, "%s",
                                role ? "moat ca init --intermediate (then reissue the certificates)"
                                     : "moat ca init with a new root, then reissue and redistribute it");
            } else if (days < (l->o->days > 90 ? l->o->days : 90)) {
                /* A CA needs more notice than a leaf: clients must receive the new root first. */
                f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "ca-expiring", subjects[role],
                                    "moat's %s CA certificate %s expires on %s (in %d days)",
                                    role ? "intermediate" : "root", name, until, days);
                moat_doctor_why(f, "certificates it issued stop verifying when it expires, and new ones are "
                                   "clamped to its lifetime");
                moat_doctor_fix(f, "%s",
                                role ? "moat ca init --intermediate --days 1825"
                                     : "plan a new root: moat ca init, and distribute it to clients");
            }
            X509_free(x);
        }
        moat_store_ca_dispose(&ca);
    }
}

#define MAX_CRL_PEM (4 * 1024 * 1024)

/* moat's CRLs (kept as PEM in the settings "ca.crl.<role>"): out of date, or past half their life. */
static void check_crls(local_t *l)
{
    static const char *subjects[] = {"ca root", "ca intermediate"};
    char *pem = moat_malloc(MAX_CRL_PEM);
    if (pem == NULL) {
        l->r->oom = 1;
        return;
    }
    for (int role = MOAT_CA_ROOT; role <= MOAT_CA_INTERMEDIATE; role++) {
        char key[64], next_s[64];
        moat_err_t e = {0};
        BIO *b;
        X509_CRL *crl = NULL;
        const ASN1_TIME *last, *next;
        moat_doctor_finding_t *f;
        int d_left = 0, s_left = 0, d_life = 0, s_life = 0;
        snprintf(key, sizeof(key), "ca.crl.%s", moat_store_ca_role_name((moat_ca_role_t)role));
        if (moat_store_setting_get(l->st, key, pem, MAX_CRL_PEM, &e) != 0)
            continue; /* none issued yet */
        if ((b = BIO_new_mem_buf(pem, -1)) != NULL) {
            crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
            BIO_free(b);
        }
        if (crl == NULL) {
            ERR_clear_error();
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "crl-unreadable", subjects[role],
                                "the stored CRL of moat's %s CA does not parse",
                                role ? "intermediate" : "root");
            moat_doctor_fix(f, "moat ca crl%s re-signs it", role ? "" : " --root");
            continue;
        }
        last = X509_CRL_get0_lastUpdate(crl);
        next = X509_CRL_get0_nextUpdate(crl);
        moat__doctor_time(next, next_s, sizeof(next_s));
        moat_doctor_fact(l->r, subjects[role], "crl", "next update %s", next ? next_s : "not given");
        if (next != NULL && ASN1_TIME_diff(&d_left, &s_left, NULL, next) == 1 &&
            ASN1_TIME_diff(&d_life, &s_life, last, next) == 1) {
            long left = (long)d_left * 86400 + s_left, life = (long)d_life * 86400 + s_life;
            if (left < 0) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "crl-expired", subjects[role],
                                    "the CRL of moat's %s CA was due for an update on %s",
                                    role ? "intermediate" : "root", next_s);
                moat_doctor_why(
                    f, "clients that check revocation treat an out-of-date CRL as unknown status and "
                       "refuse the certificates it covers (fail closed)");
                moat_doctor_fix(f,
                                "moat ca crl%s re-signs it (a running moat serve re-signs it by itself; "
                                "without one, run it from cron at least every 3 days)",
                                role ? "" : " --root");
            } else if (left < life / 2) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "crl-expiring", subjects[role],
                                    "the CRL of moat's %s CA is due for an update on %s (in %ld hours)",
                                    role ? "intermediate" : "root", next_s, left / 3600);
                moat_doctor_why(
                    f, "once it is out of date, clients that check revocation refuse the certificates "
                       "it covers");
                moat_doctor_fix(f,
                                "moat ca crl%s re-signs it (a running moat serve re-signs it by itself; "
                                "without one, run it from cron at least every 3 days)",
                                role ? "" : " --root");
            }
        }
        X509_CRL_free(crl);
    }
    moat_free(&pem);
}

/* The CRLs the server fetched for client certificates of other CAs: one missing or out of date leaves
 * that CA's certificates "revocation-unknown" (refused by default). */
static void check_client_crls(local_t *l)
{
    moat_store_crl_list_t cl = {0};
    moat_err_t e = {0};
    int64_t now = (int64_t)time(NULL);
    if (moat_store_crl_list(l->st, &cl, &e) != 0)
        return; /* an older store has no CRL cache: nothing fetched, nothing to report */
    for (size_t i = 0; i < cl.n; i++) {
        const moat_store_crl_t *c = &cl.items[i];
        char subject[64 + MOAT_STORE_URL_MAX], when[64];
        moat_doctor_finding_t *f = NULL;
        snprintf(subject, sizeof(subject), "crl %s", c->url);
        time_str(c->next_update, when, sizeof(when));
        if (c->der.len == 0) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "client-crl-missing", subject,
                                "no CRL of %s could be fetched from %s%s%s", c->issuer_subject, c->url,
                                c->error[0] ? ": " : "", c->error);
        } else if (c->next_update <= now) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "client-crl-out-of-date", subject,
                                "the CRL of %s from %s was due for an update on %s%s%s", c->issuer_subject,
                                c->url, when, c->error[0] ? "; last attempt: " : "", c->error);
        } else {
            moat_doctor_fact(l->r, subject, "crl", "%lld revoked, next update %s", (long long)c->revoked,
                             when);
            if (c->error[0] != '\0') {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "client-crl-failing", subject,
                                    "the last attempt to refresh the CRL of %s failed: %s", c->issuer_subject,
                                    c->error);
                moat_doctor_why(f,
                                "the CRL held is in date until %s; after that, the certificates it covers "
                                "are revocation-unknown",
                                when);
                moat_doctor_fix(f, "make %s reachable from this host over http, with a CRL signed by %s",
                                c->url, c->issuer_subject);
                continue;
            }
        }
        if (f != NULL) {
            moat_doctor_why(f,
                            "client certificates of this CA are revocation-unknown: refused, unless the site "
                            "sets client_revocation_unknown: allow");
            moat_doctor_fix(f, "make %s reachable from this host over http, with a CRL in date signed by %s",
                            c->url, c->issuer_subject);
        }
    }
    moat_store_crl_list_dispose(&cl);
}

static void check_anchors(local_t *l)
{
    moat_store_anchor_list_t al = {0};
    moat_err_t e = {0};
    if (moat_store_anchor_list(l->st, &al, &e) != 0)
        return;
    for (size_t i = 0; i < al.n; i++) {
        const moat_store_anchor_t *a = &al.items[i];
        char subject[160], until[64];
        X509 *x = der_to_x509(&a->der);
        moat_doctor_finding_t *f;
        int days = 0;
        snprintf(subject, sizeof(subject), "anchor %s", a->name);
        if (x == NULL) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "anchor-unreadable", subject,
                                "trust anchor %s does not parse as a certificate", a->name);
            moat_doctor_fix(f, "moat trust remove %s, then moat trust add FILE --name %s", a->name, a->name);
            continue;
        }
        moat__doctor_time(X509_get0_notAfter(x), until, sizeof(until));
        moat_doctor_fact(l->r, subject, "certificate", "%s, until %s", a->subject ? a->subject : "?", until);
        if (X509_check_ca(x) < 1) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "anchor-not-ca", subject,
                                "trust anchor %s (%s) is not a CA certificate", a->name, a->subject);
            moat_doctor_why(f, "client certificates can only chain to a CA; this anchor verifies nothing");
            moat_doctor_fix(f,
                            "moat trust remove %s, and add the CA that issued it instead: moat trust add "
                            "CA.pem --name %s",
                            a->name, a->name);
        }
        (void)moat__doctor_days_left(X509_get0_notAfter(x), &days);
        if (X509_cmp_time(X509_get0_notAfter(x), NULL) < 0) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "anchor-expired", subject,
                                "trust anchor %s expired on %s", a->name, until);
            moat_doctor_why(f, "client certificates chaining to it are refused as untrusted");
            moat_doctor_fix(f, "moat trust remove %s, then moat trust add NEW-CA.pem --name %s", a->name,
                            a->name);
        } else if (days < l->o->days) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "anchor-expiring", subject,
                                "trust anchor %s expires on %s (in %d days)", a->name, until, days);
            moat_doctor_why(f, "client certificates chaining to it will be refused as untrusted");
            moat_doctor_fix(f, "get the CA's renewed certificate and moat trust add it before then");
        }
        X509_free(x);
    }
    moat_store_anchor_list_dispose(&al);
}

/* ---- sites ------------------------------------------------------------------------------------- */

/* Checks name coverage for every host of <site> ("*.example.com" by a representative name). */
static void check_site_names(local_t *l, const char *subject, const moat_site_t *site, X509 *leaf,
                             const char *key_name)
{
    for (size_t i = 0; i < site->hosts.n; i++) {
        const char *h = site->hosts.v[i];
        if (strncmp(h, "*.", 2) == 0) {
            if (!moat_plan_cert_covers(leaf, h)) {
                char sans[400];
                moat_doctor_finding_t *f;
                moat__doctor_sans(leaf, sans, sizeof(sans));
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "name-mismatch", subject,
                                    "the certificate does not cover %s: its names are %s", h,
                                    sans[0] ? sans : "none");
                moat_doctor_why(f, "clients connecting to names under %s refuse the certificate", h + 2);
                moat_doctor_fix(f,
                                "moat key renew %s --san DNS:%s --csr-out %s.csr (keeping the other names), "
                                "have it signed, then moat cert install %s %s.crt",
                                key_name, h, key_name, key_name, key_name);
            }
        } else
            moat_doctor_check_name(l->r, subject, leaf, h, key_name);
    }
}

/* The checks of a served certificate: chain, validity, names, key match. */
static void check_served(local_t *l, const char *subject, const moat_site_t *site, const moat_store_key_t *k)
{
    STACK_OF(X509) * sk;
    if (k->cert == NULL)
        return;
    if ((sk = cert_stack(k->cert)) == NULL) {
        moat_doctor_finding_t *f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "cert-unreadable", subject,
                                                   "the certificate of key %s does not parse", k->name);
        moat_doctor_fix(f, "install it again: moat cert install %s CERT.pem --chain CHAIN.pem --force",
                        k->name);
        return;
    }
    moat_doctor_fact(l->r, subject, "key", "%s (%s%s)", k->name, k->algorithm,
                     k->exportable ? ", exportable" : "");
    moat_doctor_check_chain(l->r, subject, sk, NULL, l->trust, l->trust_desc, l->o, k->name);
    if (site != NULL)
        check_site_names(l, subject, site, sk_X509_value(sk, 0), k->name);
    sk_X509_pop_free(sk, X509_free);
}

/* The client trust of a site that asks for client certificates: each name of client_trust that does not
 * resolve, and whether the server loads the site by its rule (moat_plan_site_anchors). */
static void check_client_trust(local_t *l, const char *subject, const moat_site_t *site)
{
    moat_plan_anchors_t a;
    moat_doctor_finding_t *f;
    moat_err_t e = {0};
    int rc;

    if (!moat_site_wants_client_cert(site))
        return;
    for (size_t i = 0; i < site->client_trust.n; i++) {
        const char *n = site->client_trust.v[i];
        moat_store_anchor_t an = {0};
        if (strcmp(n, MOAT_PLAN_CA_ANCHOR) == 0) {
            if (!l->have_ca) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "client-trust-unknown", subject,
                                    "client_trust names moat-ca, but this store has no CA");
                moat_doctor_why(f, "no client certificate can chain to a CA that does not exist");
                moat_doctor_fix(f, "moat ca init, or remove moat-ca from client_trust");
            }
            continue;
        }
        if (moat_store_anchor_get(l->st, n, &an, &e) != 0) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "client-trust-unknown", subject,
                                "client_trust names %s, which is not a trust anchor in the store", n);
            moat_doctor_why(f, "the server does not load the site (fail closed): it is not served");
            moat_doctor_fix(f, "moat trust add CA.pem --name %s (moat trust list shows the names)", n);
        }
        moat_store_anchor_dispose(&an);
        moat_err_clear(&e);
    }
    rc = moat_plan_site_anchors(l->st, site, &a, &e);
    moat_plan_anchors_dispose(&a);
    if (rc == MOAT_E_STATE) {
        f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "client-trust-missing", subject,
                            "client certificates are asked for but the site has no trust anchor");
        moat_doctor_why(f, "the server refuses to load a site that asks for client certificates it cannot "
                           "verify (fail closed): the site is not served");
        moat_doctor_fix(f,
                        "moat ca init (moat's own CA), or moat trust add CA.pem --name NAME and list it in "
                        "client_trust");
    }
}

/* 1 for the keys the ACME client manages: its account key and the keys of sites with certificate: acme. */
static int is_acme_key(const local_t *l, const char *name)
{
    if (strcmp(name, "acme-account") == 0)
        return 1;
    for (size_t i = 0; l->cfg != NULL && i < l->cfg->nsites; i++)
        if (l->cfg->sites[i].acme && strcmp(l->cfg->sites[i].certificate, name) == 0)
            return 1;
    return 0;
}

/* certificate: acme: what the ACME client last did, and why the site has no certificate if it has none.
 * Returns 1 when the site has no active key (the finding here replaces the generic ones). */
static int check_acme(local_t *l, const char *subject, size_t index)
{
    const moat_site_t *site = &l->cfg->sites[index];
    const moat_store_key_t *act = find_key(l, site->certificate, MOAT_KEY_ACTIVE);
    const moat_store_key_t *pend = find_key(l, site->certificate, MOAT_KEY_PENDING);
    long long now = (long long)time(NULL);
    moat_acme_status_t st;
    moat_doctor_finding_t *f;
    moat_err_t e = {0};
    char when[64];

    if (find_key(l, "acme-account", MOAT_KEY_PENDING) != NULL ||
        find_key(l, "acme-account", MOAT_KEY_ACTIVE) != NULL)
        bind_key(l, "acme-account");
    if (pend != NULL)
        bind_key(l, pend->name);
    if (moat_acme_status_get(l->st, l->cfg, index, now, &st, &e) != 0) {
        f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "acme-state-unreadable", subject, "%s", e.msg);
        return act == NULL;
    }
    moat_doctor_fact(l->r, subject, "acme", "%s, next attempt %s (%s)", st.state,
                     st.next > now ? (snprintf(when, sizeof(when), "in %lld s", st.next - now), when) : "now",
                     st.why);
    if (st.failures > 0) {
        f = moat_doctor_add(l->r, act != NULL ? MOAT_DOCTOR_WARNING : MOAT_DOCTOR_ERROR,
                            "acme-renewal-failing", subject,
                            "ordering its certificate (key %s) failed %u time%s in a row: %s",
                            site->certificate, st.failures, st.failures == 1 ? "" : "s", st.last_error);
        moat_doctor_why(f, "%s",
                        act != NULL ? "the current certificate is kept, and expires unless a renewal succeeds"
                                    : "the site has no certificate: its handshakes fail");
        moat_doctor_fix(
            f,
            "fix the cause above; the server retries by itself (in %lld s), or now with: moat acme "
            "renew %s",
            st.next > now ? st.next - now : 0, site->certificate);
    } else if (act == NULL) {
        f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "acme-not-issued", subject,
                            "certificate: acme has not obtained a certificate yet (key %s%s)",
                            site->certificate, st.order_pending ? ": an order is under way" : "");
        moat_doctor_why(f, "the site's handshakes fail until the certificate is installed");
        moat_doctor_fix(f, "keep moat serve running; moat acme status %s shows the progress",
                        site->certificate);
    }
    if (act != NULL) {
        bind_key(l, act->name);
        check_served(l, subject, site, act);
    }
    return 1;
}

static void upstream_finding(void *arg, int ok, const char *upstream, const char *server, const char *what)
{
    local_t *l = arg;
    char subject[192];
    moat_doctor_finding_t *f;
    snprintf(subject, sizeof(subject), "upstream %s", upstream);
    if (ok) {
        moat_doctor_fact(l->r, subject, server, "answers%s%s%s", what != NULL ? " (" : "",
                         what != NULL ? what : "", what != NULL ? ")" : "");
        return;
    }
    if (strncmp(what, "TLS: ", 5) == 0) {
        f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "upstream-tls", subject, "server %s: %s", server,
                            what + 5);
        moat_doctor_why(f, "requests for the locations that proxy to it get 502 (X-Moat-Upstream: tls-verify "
                           "or tls-handshake)");
        moat_doctor_fix(f, "give tls.trust the CA that issued the server's certificate, tls.server_name the "
                           "name in it, tls.client_key a key with a certificate the server accepts");
        return;
    }
    if (strncmp(what, "is moat's own", 13) == 0) {
        f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "upstream-loop", subject, "server %s %s", server, what);
        moat_doctor_fix(f, "point servers: at the application's own address and port");
        return;
    }
    f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "upstream-down", subject, "server %s: %s", server, what);
    moat_doctor_why(f,
                    "requests for the locations that proxy to it get 502 (or 503 once every server failed)");
    moat_doctor_fix(f, "start the application, or correct servers: in the config");
}

/* The reverse proxy's upstreams: each server answers, and none is moat itself. */
static void check_upstreams(local_t *l)
{
    moat_server_check_upstreams(l->cfg, l->st, upstream_finding, l);
}

static void revoked_finding(void *arg, const moat_plan_problem_t *p)
{
    local_t *l = arg;
    moat_doctor_finding_t *f;
    char subject[192];
    if (p->kind != MOAT_PLAN_REVOKED)
        return; /* a host no certificate covers: name-mismatch and site-no-certificate say it */
    snprintf(subject, sizeof(subject), "site %s", l->site_name);
    f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "cert-revoked", subject, "%s", p->what);
    moat_doctor_why(f,
                    "moat's CA revoked the certificate (moat ca list --revoked); the server still serves it");
    moat_doctor_fix(f, "%s", p->hint);
}

/* What the serving plan says of the site, by the server's rules: its root: folder opens, and what it
 * serves is not revoked (moat_plan_site_problems). */
static void check_site_plan(local_t *l, const char *subject, const moat_site_t *site)
{
    moat_plan_site_t plan;
    moat_err_t e = {0};

    if (site->root != NULL) {
        moat_http_root_t root;
        if (moat_plan_site_root(site, &root, &e) != 0) {
            moat_doctor_finding_t *f =
                moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "site-root-unusable", subject, "%s", e.msg);
            moat_doctor_why(f, "the server cannot serve the site's files, and does not load the site");
            moat_doctor_fix(f, "%s", e.hint[0] ? e.hint : "create the folder or correct root: in the config");
            moat_err_clear(&e);
        } else {
            moat_http_root_close(&root);
        }
    }
    if (moat_plan_site(l->st, site, (int64_t)time(NULL), &plan, &e) == 0) {
        l->site_name = site->name;
        if (moat_plan_site_problems(l->st, site, &plan, revoked_finding, l, &e) != 0)
            moat_doctor_fact(l->r, subject, "revocation", "not checked: %s", e.msg);
    }
    moat_err_clear(&e);
    moat_plan_site_dispose(&plan);
}

static void check_sites(local_t *l)
{
    for (size_t s = 0; s < l->cfg->nsites; s++) {
        const moat_site_t *site = &l->cfg->sites[s];
        char subject[192];
        moat_doctor_finding_t *f;
        snprintf(subject, sizeof(subject), "site %s", site->name);
        moat_doctor_fact(l->r, subject, "certificate", "%s", site->certificate ? site->certificate : "auto");
        if (site->acme && check_acme(l, subject, s)) {
            /* The ACME client's finding says it all: the site has no certificate yet. */
        } else if (site->certificate != NULL) {
            const moat_store_key_t *act = find_key(l, site->certificate, MOAT_KEY_ACTIVE);
            const moat_store_key_t *pend = find_key(l, site->certificate, MOAT_KEY_PENDING);
            if (act != NULL) {
                bind_key(l, act->name);
                check_served(l, subject, site, act);
            } else if (pend != NULL) {
                bind_key(l, pend->name);
                f = moat_doctor_add(
                    l->r, MOAT_DOCTOR_ERROR, "site-key-pending", subject,
                    "certificate: %s names a key that is still pending (no certificate installed)",
                    site->certificate);
                moat_doctor_why(f, "the site has nothing to serve until the certificate is installed");
                moat_doctor_fix(f,
                                "have its request signed (moat ca sign %s.csr --out %s.crt), then moat cert "
                                "install %s %s.crt",
                                site->certificate, site->certificate, site->certificate, site->certificate);
            } else {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "site-key-missing", subject,
                                    "certificate: %s names a key that is not in the store %s",
                                    site->certificate, moat_store_path(l->st));
                moat_doctor_why(f, "the server cannot load the site without its key");
                moat_doctor_fix(
                    f,
                    "create it (moat key new %s --cn %s), import it (moat key import %s FILE), or "
                    "fix the name (moat key list shows the keys)",
                    site->certificate, site->hosts.n ? site->hosts.v[0] : "HOST", site->certificate);
            }
        } else {
            /* certificate: auto — what the server picks (the serving plan), checked once per key; then
             * each host no valid certificate covers. */
            moat_plan_site_t plan;
            moat_err_t pe = {0};
            if (moat_plan_site(l->st, site, (int64_t)time(NULL), &plan, &pe) == 0) {
                for (int slot = 0; slot < 2; slot++) {
                    const moat_store_key_t *k;
                    if (plan.certs[slot] == NULL)
                        continue;
                    if ((k = find_key(l, plan.certs[slot]->key_name, MOAT_KEY_ACTIVE)) != NULL &&
                        !is_bound(l, k->name)) {
                        bind_key(l, k->name);
                        check_served(l, subject, NULL, k);
                    }
                    moat_doctor_fact(l->r, subject, "auto", "%s -> key %s", slot ? "RSA" : "ECDSA",
                                     plan.certs[slot]->key_name);
                }
            }
            moat_err_clear(&pe);
            moat_plan_site_dispose(&plan);
            for (size_t h = 0; h < site->hosts.n; h++) {
                moat_store_cert_list_t cl = {0};
                moat_err_t e = {0};
                const char *host = site->hosts.v[h];
                if (moat_store_cert_find_host(l->st, host, (int64_t)time(NULL), &cl, &e) == 0 && cl.n > 0) {
                    /* covered: the plan above says which certificate serves it */
                } else {
                    /* Name the certificate that would have matched but is not valid now, if any. */
                    const moat_store_key_t *stale = NULL;
                    for (size_t i = 0; i < l->keys.n && stale == NULL; i++) {
                        const moat_store_key_t *k = &l->keys.items[i];
                        STACK_OF(X509) *sk = k->cert ? cert_stack(k->cert) : NULL;
                        if (sk != NULL && X509_check_host(sk_X509_value(sk, 0), host, 0, 0, NULL) == 1)
                            stale = k;
                        sk_X509_pop_free(sk, X509_free);
                    }
                    if (stale != NULL && !is_bound(l, stale->name)) {
                        bind_key(l, stale->name);
                        check_served(l, subject, NULL, stale);
                    }
                    f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "site-no-certificate", subject,
                                        "certificate: auto finds no valid server certificate for %s%s%s%s",
                                        host, stale ? " (key " : "", stale ? stale->name : "",
                                        stale ? "'s certificate covers it but is not valid now)" : "");
                    moat_doctor_why(f, "clients asking for %s get no certificate for it", host);
                    if (stale != NULL)
                        moat_doctor_fix(f,
                                        "moat key renew %s --csr-out %s.csr, have it signed, then moat cert "
                                        "install %s %s.crt",
                                        stale->name, stale->name, stale->name, stale->name);
                    else
                        moat_doctor_fix(
                            f,
                            "moat ca issue NAME --cn %s --san DNS:%s (moat's CA), or moat key new "
                            "NAME --cn %s, have the request signed, and moat cert install NAME CERT.pem",
                            host, host, host);
                }
                moat_store_cert_list_dispose(&cl);
            }
        }
        check_client_trust(l, subject, site);
        check_site_plan(l, subject, site);
    }
}

/* ---- listeners --------------------------------------------------------------------------------- */

/* The process holding a listening TCP socket on <port> (family 4 or 6), or 0 when none is visible. */
static long port_owner(int v6, unsigned port, char *comm, size_t commsz, int *listening)
{
    char line[512];
    unsigned long inodes[16];
    size_t ninodes = 0;
    FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
    DIR *proc;
    struct dirent *de;
    long owner = 0;

    comm[0] = '\0';
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL && ninodes < MOAT_ARRAY_LEN(inodes)) {
        char local[64], remote[64], st[8];
        unsigned long inode;
        unsigned lport;
        char *colon;
        /* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*s %63s %63s %7s %*s %*s %*s %*s %*s %lu", local, remote, st, &inode) != 4)
            continue;
        if (strcmp(st, "0A") != 0 || (colon = strrchr(local, ':')) == NULL)
            continue;
        lport = (unsigned)strtoul(colon + 1, NULL, 16);
        if (lport == port)
            inodes[ninodes++] = inode;
    }
    fclose(f);
    *listening |= ninodes > 0;
    if (ninodes == 0 || (proc = opendir("/proc")) == NULL)
        return 0;
    while (owner == 0 && (de = readdir(proc)) != NULL) {
        char fddir[300];
        DIR *fds;
        struct dirent *fe;
        long pid;
        if (moat_parse_long(de->d_name, 1, LONG_MAX, &pid) != 0)
            continue;
        snprintf(fddir, sizeof(fddir), "/proc/%ld/fd", pid);
        if ((fds = opendir(fddir)) == NULL)
            continue; /* another user's process: not visible */
        while (owner == 0 && (fe = readdir(fds)) != NULL) {
            char link[600], target[64];
            ssize_t n;
            snprintf(link, sizeof(link), "%s/%s", fddir, fe->d_name);
            if ((n = readlink(link, target, sizeof(target) - 1)) <= 0)
                continue;
            target[n] = '\0';
            for (size_t i = 0; i < ninodes; i++) {
                char want[40];
                snprintf(want, sizeof(want), "socket:[%lu]", inodes[i]);
                if (strcmp(target, want) == 0)
                    owner = pid;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    if (owner > 0) {
        char path[64];
        FILE *c;
        snprintf(path, sizeof(path), "/proc/%ld/comm", owner);
        if ((c = fopen(path, "r")) != NULL) {
            if (fgets(comm, (int)commsz, c) != NULL)
                comm[strcspn(comm, "\n")] = '\0';
            fclose(c);
        }
    }
    return owner;
}

/* The SNI a client would send to reach <site>: its first plain host name (NULL for IP-only sites). */
static const char *site_sni(const moat_site_t *site, char *buf, size_t bufsz)
{
    for (size_t i = 0; i < site->hosts.n; i++) {
        const char *h = site->hosts.v[i];
        unsigned char ip[16];
        if (inet_pton(AF_INET, h, ip) == 1 || inet_pton(AF_INET6, h, ip) == 1)
            continue;
        if (strncmp(h, "*.", 2) == 0) {
            snprintf(buf, bufsz, "www%s", h + 1);
            return buf;
        }
        return h;
    }
    return NULL;
}

/* The fingerprints the server serves for <site> by the serving plan (one per key type); "" if unknown. */
static void expected_fpr(local_t *l, const moat_site_t *site, char out[2][MOAT_STORE_FPR_LEN + 1])
{
    moat_plan_site_t plan;
    moat_err_t e = {0};
    out[0][0] = out[1][0] = '\0';
    if (moat_plan_site(l->st, site, (int64_t)time(NULL), &plan, &e) == 0)
        for (int slot = 0; slot < 2; slot++)
            if (plan.certs[slot] != NULL)
                moat_strlcpy(out[slot], plan.certs[slot]->fingerprint, sizeof(out[slot]));
    moat_err_clear(&e);
    moat_plan_site_dispose(&plan);
}

static void check_listener_addr(local_t *l, const moat_listener_t *ln, int family)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char subject[192], addr[80], comm[64];
    moat_doctor_finding_t *f;
    int listening = 0;
    long owner;

    if (moat_listen_sockaddr(&ln->addr, family, &ss, &len) != 0)
        return;
    /* A wildcard listener is reached through loopback; a specific address through itself. */
    if (ln->addr.any) {
        if (family == AF_INET)
            ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else
            ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    }
    if (family == AF_INET6) {
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "[%s]:%u", ip, ln->addr.port);
    } else {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%u", ip, ln->addr.port);
    }
    snprintf(subject, sizeof(subject), "listener %s", ln->addr.text);
    owner = port_owner(family == AF_INET6, ln->addr.port, comm, sizeof(comm), &listening);

    for (size_t s = 0; s < ln->nsites; s++) {
        const moat_site_t *site = ln->sites[s];
        char snibuf[300], want[2][MOAT_STORE_FPR_LEN + 1];
        const char *sni = site_sni(site, snibuf, sizeof(snibuf));
        moat__doctor_fetch_t fe;
        (void)moat__doctor_fetch((struct sockaddr *)&ss, len, sni, l->o->timeout_ms, &fe);
        switch (fe.status) {
        case MOAT__DOCTOR_CONN_REFUSED:
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "listener-down", subject,
                                "nothing listens on %s (listen: %s of site %s)", addr, ln->addr.text,
                                site->name);
            moat_doctor_why(f, "clients get \"connection refused\"");
            if (l->server_alive)
                moat_doctor_fix(f,
                                "the running server (pid %lld) did not bind it: listeners change only on a "
                                "restart; restart moat serve%s%s",
                                (long long)l->server_pid, l->config_path ? " -c " : "",
                                l->config_path ? l->config_path : "");
            else
                moat_doctor_fix(f, "start the server: moat serve%s%s", l->config_path ? " -c " : "",
                                l->config_path ? l->config_path : "");
            moat__doctor_fetch_dispose(&fe);
            return; /* one finding per address */
        case MOAT__DOCTOR_CONN_TIMEOUT:
        case MOAT__DOCTOR_HS_TIMEOUT:
            f = moat_doctor_add(
                l->r, MOAT_DOCTOR_ERROR,
                fe.status == MOAT__DOCTOR_HS_TIMEOUT ? "listener-no-answer" : "listener-timeout", subject,
                "%s %s within %d ms", addr,
                fe.status == MOAT__DOCTOR_HS_TIMEOUT ? "accepts connections but sends no TLS answer"
                                                     : "does not accept a connection",
                l->o->timeout_ms);
            moat_doctor_why(f, "clients hang until they give up");
            moat_doctor_fix(f, "find what holds the port (ss -ltnp 'sport = :%u'); restart moat serve",
                            ln->addr.port);
            moat__doctor_fetch_dispose(&fe);
            goto owner;
        case MOAT__DOCTOR_CONN_ERROR:
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "listener-unreachable", subject,
                                "cannot connect to %s: %s", addr, fe.reason);
            moat_doctor_fix(f, "check that %s is an address of this machine (ip addr)", addr);
            moat__doctor_fetch_dispose(&fe);
            return;
        case MOAT__DOCTOR_NOT_TLS:
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "listener-not-tls", subject,
                                "%s answers, but not with TLS (%s)", addr, fe.reason);
            moat_doctor_why(f, "clients expecting https there fail");
            moat_doctor_fix(f,
                            "find what holds the port (ss -ltnp 'sport = :%u') and stop it, or move the site",
                            ln->addr.port);
            moat__doctor_fetch_dispose(&fe);
            goto owner;
        case MOAT__DOCTOR_HS_FAILED:
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "listener-handshake-failed", subject,
                                "the TLS handshake with %s for %s failed: %s", addr, sni ? sni : "(no SNI)",
                                fe.reason);
            moat_doctor_why(f, "clients of site %s cannot connect", site->name);
            moat_doctor_fix(f, "look at the server's error log; moat serve --check%s%s validates the sites",
                            l->config_path ? " -c " : "", l->config_path ? l->config_path : "");
            moat__doctor_fetch_dispose(&fe);
            continue;
        default:
            break;
        }
        /* Connected: is it serving what the store says? */
        expected_fpr(l, site, want);
        if (fe.chain != NULL && sk_X509_num(fe.chain) > 0) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned mdlen = 0;
            char got[2 * EVP_MAX_MD_SIZE + 1] = "", name[256];
            X509 *leaf = sk_X509_value(fe.chain, 0);
            if (X509_digest(leaf, EVP_sha256(), md, &mdlen) == 1)
                moat_hex_lower(md, mdlen, got);
            moat__doctor_short_name(leaf, name, sizeof(name));
            moat_doctor_fact(l->r, subject, "serves", "%s for %s: %s, %s, %s", addr, sni ? sni : "(no SNI)",
                             name, fe.version, fe.cipher);
            if ((want[0][0] || want[1][0]) && strcmp(want[0], got) != 0 && strcmp(want[1], got) != 0) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "listener-wrong-cert", subject,
                                    "%s serves %s for %s, not the certificate the store holds for site %s",
                                    addr, name, sni ? sni : "(no SNI)", site->name);
                moat_doctor_why(f, "clients see an old or foreign certificate");
                if (owner > 0 && (!l->server_alive || owner != l->server_pid))
                    moat_doctor_fix(f,
                                    "the port is held by %s (pid %ld), not by the server of this store: stop "
                                    "it, then start moat serve",
                                    comm[0] ? comm : "another process", owner);
                else
                    moat_doctor_fix(f, "check the server's error log; moat reload asks it to reload");
            }
            if (fe.ocsp != NULL) {
                int trusted = 1;
                moat__doctor_check_ocsp(l->r, subject, fe.ocsp, fe.ocsp_len, fe.chain, l->trust, trusted, 1);
            }
        }
        moat__doctor_fetch_dispose(&fe);
    }
owner:
    if (owner > 0 && (!l->server_alive || owner != l->server_pid)) {
        if (strcmp(comm, "moat") == 0)
            f = moat_doctor_add(
                l->r, MOAT_DOCTOR_ERROR, "port-held", subject,
                "%s is held by another moat server (pid %ld), which does not run on this store", addr, owner);
        else
            f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "port-held", subject,
                                "%s is held by another process: %s (pid %ld)", addr, comm[0] ? comm : "?",
                                owner);
        moat_doctor_why(f, "moat cannot bind a port another process listens on; clients reach that process "
                           "instead");
        moat_doctor_fix(f, "stop %s (kill %ld) or move it to another port, then start moat serve",
                        comm[0] ? comm : "it", owner);
    } else if (owner == 0 && listening && !l->server_alive) {
        f = moat_doctor_add(
            l->r, MOAT_DOCTOR_ERROR, "port-held", subject,
            "port %u on %s is held by a process of another user, and no moat server runs on this "
            "store",
            ln->addr.port, addr);
        moat_doctor_why(f, "moat cannot bind a port another process listens on");
        moat_doctor_fix(f, "find it (sudo ss -ltnp 'sport = :%u') and stop it, then start moat serve",
                        ln->addr.port);
    }
}

static void check_listeners(local_t *l)
{
    for (size_t i = 0; i < l->cfg->nlisteners; i++) {
        const moat_listener_t *ln = &l->cfg->listeners[i];
        char subject[192];
        if (!ln->secure)
            continue;
        snprintf(subject, sizeof(subject), "listener %s", ln->addr.text);
        if (ln->nsites > 1) {
            char names[400] = "";
            size_t len = 0;
            moat_doctor_finding_t *f;
            for (size_t s = 0; s < ln->nsites && len < sizeof(names) - 2; s++)
                len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", s ? ", " : "",
                                        ln->sites[s]->name);
            if (ln->default_site != NULL) {
                f = moat_doctor_add(l->r, MOAT_DOCTOR_INFO, "shared-listener", subject,
                                    "%zu sites share %s (%s): SNI picks one; a client without SNI gets %s",
                                    ln->nsites, ln->addr.text, names, ln->default_site->name);
                moat_doctor_why(f,
                                "clients without SNI (very old ones, some scripts, IP-address URLs) all land "
                                "on the default site");
                moat_doctor_fix(f,
                                "nothing to do if %s is the right default; else set default: true on another "
                                "site",
                                ln->default_site->name);
            } else {
                f = moat_doctor_add(
                    l->r, MOAT_DOCTOR_WARNING, "shared-listener", subject,
                    "%zu sites share %s (%s) and none is default: a client without SNI is refused "
                    "(unrecognized_name)",
                    ln->nsites, ln->addr.text, names);
                moat_doctor_why(
                    f, "clients that send no SNI (old ones, scripts, IP-address URLs) cannot connect");
                moat_doctor_fix(f, "set default: true on the site such clients should get");
            }
        }
        if (ln->addr.family == AF_UNSPEC || ln->addr.family == AF_INET)
            check_listener_addr(l, ln, AF_INET);
        if (ln->addr.family == AF_UNSPEC || ln->addr.family == AF_INET6)
            check_listener_addr(l, ln, AF_INET6);
    }
}

/* ---- keys -------------------------------------------------------------------------------------- */

static int backed_up_after(local_t *l, int64_t when)
{
    moat_store_audit_list_t al = {0};
    moat_err_t e = {0};
    int found = 0;
    if (moat_store_audit_list(l->st, 0, &al, &e) != 0)
        return 0;
    for (size_t i = 0; i < al.n && !found; i++)
        found = strcmp(al.items[i].action, "store.backup") == 0 && al.items[i].time >= when;
    moat_store_audit_list_dispose(&al);
    return found;
}

static void check_keys(local_t *l)
{
    for (size_t i = 0; i < l->keys.n; i++) {
        const moat_store_key_t *k = &l->keys.items[i];
        char subject[192], when[64];
        moat_doctor_finding_t *f;
        int is_ca = k->id == l->ca_key_ids[0] || k->id == l->ca_key_ids[1];
        snprintf(subject, sizeof(subject), "key %s", k->name);
        time_str(k->created, when, sizeof(when));

        if (!k->exportable && !backed_up_after(l, k->updated > k->created ? k->updated : k->created)) {
            f = moat_doctor_add(l->r, MOAT_DOCTOR_INFO, "key-no-backup", subject,
                                "key %s is not exportable and no store backup was made since it was %s",
                                k->name, k->updated > k->created ? "changed" : "created");
            moat_doctor_why(f,
                            "the store is its only copy: losing the store (or the master key) loses the key");
            moat_doctor_fix(f,
                            "moat store backup FILE, and keep a copy of the master key (%s.key unless "
                            "--master-key says otherwise): the backup cannot be opened without it",
                            moat_store_path(l->st));
        }
        if (k->state == MOAT_KEY_PENDING && is_acme_key(l, k->name))
            continue; /* the ACME account key never gets a certificate; an order's key is check_acme's */
        if (k->state == MOAT_KEY_PENDING) {
            const moat_store_key_t *act = find_key(l, k->name, MOAT_KEY_ACTIVE);
            if (act != NULL)
                f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "key-pending", subject,
                                    "a renewal of key %s was started on %s and never completed: the old "
                                    "certificate keeps serving",
                                    k->name, when);
            else
                f = moat_doctor_add(l->r, MOAT_DOCTOR_WARNING, "key-pending", subject,
                                    "key %s has been pending since %s: its certificate was never installed",
                                    k->name, when);
            moat_doctor_why(f, "a key without its certificate serves nothing");
            moat_doctor_fix(
                f,
                "have its request signed (moat ca sign %s.csr --out %s.crt), then moat cert install %s "
                "%s.crt; or drop it (moat key delete %s)",
                k->name, k->name, k->name, k->name, k->name);
            continue;
        }
        if (k->cert != NULL) {
            X509 *x = der_to_x509(&k->cert->der);
            if (x != NULL) {
                X509_PUBKEY *xpk = X509_get_X509_PUBKEY(x);
                unsigned char *spki = NULL;
                int n = xpk ? i2d_X509_PUBKEY(xpk, &spki) : -1;
                if (n > 0 && ((size_t)n != k->pubkey.len || memcmp(spki, k->pubkey.data, (size_t)n) != 0)) {
                    f = moat_doctor_add(l->r, MOAT_DOCTOR_ERROR, "cert-key-mismatch", subject,
                                        "the certificate of key %s (%s) was issued for another key", k->name,
                                        k->cert->subject ? k->cert->subject : "?");
                    moat_doctor_why(
                        f, "the server cannot prove it holds the certificate's key: handshakes fail");
                    moat_doctor_fix(
                        f,
                        "install the certificate issued for this key (moat cert install %s CERT.pem "
                        "--force), or roll back (moat cert rollback %s)",
                        k->name, k->name);
                }
                OPENSSL_free(spki);
                /* Server certificates not served by any site: bound to nothing. */
                if (l->cfg != NULL && !is_ca && !is_bound(l, k->name) && X509_check_ca(x) == 0 &&
                    X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) == 1) {
                    f = moat_doctor_add(
                        l->r, MOAT_DOCTOR_WARNING, "key-unused", subject,
                        "key %s is bound to no site: no site names it and certificate: auto picks "
                        "another certificate for every host",
                        k->name);
                    moat_doctor_why(f,
                                    "a certificate nobody serves is usually a forgotten step: the site still "
                                    "serves the old one, or the host is missing from hosts:");
                    moat_doctor_fix(
                        f, "add certificate: %s to the site in %s, or delete it (moat key delete %s)",
                        k->name, l->config_path, k->name);
                }
                /* Without a config nothing is known about bindings: check every server certificate. */
                if (l->cfg == NULL && !is_ca && X509_check_ca(x) == 0 &&
                    X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) == 1)
                    check_served(l, subject, NULL, k);
                X509_free(x);
            }
        }
    }
}

typedef struct bad_rows {
    moat_doctor_report_t *r;
    const char *store_path;
} bad_rows_t;

static void bad_row(void *arg, const char *what)
{
    bad_rows_t *b = arg;
    moat_doctor_finding_t *f = moat_doctor_add(b->r, MOAT_DOCTOR_ERROR, "store-row-tampered", "store",
                                               "%s was changed without the master key", what);
    moat_doctor_why(f,
                    "its authentication code does not verify: someone who can write %s but does not hold the "
                    "master key changed it, and moat refuses to use it (the server does not load the store)",
                    b->store_path);
    moat_doctor_fix(
        f, "restore the store from a backup (moat store restore FILE), or remove the row and make it "
           "again with moat; then find out who could write the store file");
}

static void bad_set(void *arg, const char *what)
{
    bad_rows_t *b = arg;
    moat_doctor_finding_t *f =
        moat_doctor_add(b->r, MOAT_DOCTOR_ERROR, "store-rows-tampered", "store", "%s", what);
    moat_doctor_why(f,
                    "the rows of that table are not the set moat last wrote (a row removed, or an older copy "
                    "put back): someone who can write %s but does not hold the master key changed it, and "
                    "moat refuses to read the table",
                    b->store_path);
    moat_doctor_fix(f, "restore the store from a backup made before the change (moat store restore FILE); "
                       "then find out who could write the store file");
}

/* Checks the authentication code of every row, and that each table holds the rows moat last wrote, on a
 * connection of its own that holds the master key. */
static void check_rows(local_t *l, moat_doctor_report_t *r, const char *store_path, const char *mk)
{
    moat_store_t *st = NULL;
    moat_err_t e = {0};
    bad_rows_t b = {r, store_path};
    size_t nbad = 0;

    (void)l;
    if (mk != NULL && access(mk, R_OK) == 0 &&
        moat_store_open(store_path, mk, MOAT_STORE_READONLY, &st, &e) == MOAT_E_PERM) {
        /* The store's own check, the one that stops moat serve: a master key others can read or change. */
        moat_doctor_finding_t *f =
            moat_doctor_add(r, MOAT_DOCTOR_ERROR, "master-key-mode", "store", "%s", e.msg);
        moat_doctor_why(f, "moat serve refuses to start with it, and whoever can read it can decrypt every "
                           "private key of the store");
        moat_doctor_fix(f, "%s", e.hint[0] ? e.hint : "chmod 600 the master key");
        return;
    }
    if (st == NULL || moat_store_rows_verify(st, bad_row, &b, &nbad, &e) != 0 ||
        moat_store_sets_verify(st, bad_set, &b, &nbad, &e) != 0) {
        moat_doctor_fact(r, "store", "rows", "not checked: %s",
                         e.msg[0] ? e.msg : "the master key cannot be read by this user");
    } else if (nbad == 0) {
        moat_doctor_fact(
            r, "store", "rows",
            "every key, certificate, trust anchor, CA and CRL row verifies, and no row is missing");
    }
    moat_store_close(st);
}

int moat_doctor_local(const char *config_path, const char *store_path, const moat_doctor_opts_t *o,
                      moat_doctor_report_t *r, moat_err_t *err)
{
    local_t l;
    moat_err_t e = {0};
    moat_doctor_finding_t *f;
    moat_store_info_t info;
    moat_doctor_opts_t opts = *o;
    X509_STORE *anchors = NULL;
    char *errors = NULL;
    int rc = 0;

    memset(&l, 0, sizeof(l));
    l.r = r;
    l.o = o;
    l.config_path = config_path;
    moat_strlcpy(r->target, config_path ? config_path : "this machine (no config: -c moat.yaml)",
                 sizeof(r->target));
    moat_strlcpy(r->store, store_path, sizeof(r->store));

    if (config_path != NULL && moat_config_load(config_path, &l.cfg, &errors, &e) != 0) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "config-invalid", "config", "%s",
                            errors && errors[0] ? errors : e.msg);
        moat_doctor_why(f, "the server refuses to start (or to reload) with this config");
        moat_doctor_fix(f, "correct %s at the places named; moat serve --check -c %s checks it again",
                        config_path, config_path);
        moat_free(&errors);
        memset(&e, 0, sizeof(e));
    }
    if (l.cfg != NULL)
        moat_doctor_fact(r, "config", "sites", "%zu site%s, %zu listener%s", l.cfg->nsites,
                         l.cfg->nsites == 1 ? "" : "s", l.cfg->nlisteners, l.cfg->nlisteners == 1 ? "" : "s");

    rc = moat_store_open(store_path, NULL, MOAT_STORE_READONLY | MOAT_STORE_NO_MASTER_KEY, &l.st, &e);
    if (rc == MOAT_E_NOTFOUND) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "store-missing", "store", "there is no store at %s",
                            store_path);
        moat_doctor_why(f,
                        "every key, certificate and trust anchor lives in the store: without it nothing can "
                        "be served");
        moat_doctor_fix(
            f, "create it with your first key (moat key new NAME --cn HOST) or CA (moat ca init), or "
               "point moat at the right one (--store, MOAT_STORE, or store: in the config)");
        rc = 0;
        goto out;
    } else if (rc != 0) {
        f = moat_doctor_add(r, MOAT_DOCTOR_ERROR, "store-unusable", "store", "%s", e.msg);
        moat_doctor_why(f, "no moat command can use this store");
        moat_doctor_fix(f, "%s", e.hint[0] ? e.hint : "check the path and the file's permissions");
        rc = 0;
        goto out;
    }
    if (moat_store_info(l.st, &info, &e) == 0)
        moat_doctor_fact(r, "store", "contents",
                         "schema %d, %zu key%s (%zu pending), %zu certificate%s, %zu trust anchor%s, CA: %s",
                         info.schema_version, info.keys, info.keys == 1 ? "" : "s", info.pending_keys,
                         info.certs, info.certs == 1 ? "" : "s", info.anchors, info.anchors == 1 ? "" : "s",
                         info.has_ca_intermediate ? "root + intermediate"
                         : info.has_ca_root       ? "root"
                                                  : "none");

    check_rows(&l, r, store_path, o->master_key_path);
    if ((rc = moat_doctor_store_anchors(l.st, &anchors, err)) != 0)
        goto out;
    opts.anchors = anchors;
    if ((l.trust = moat_doctor_trust_new(&opts, l.trust_desc, sizeof(l.trust_desc), err)) == NULL) {
        rc = err->code;
        goto out;
    }
    if ((rc = moat_store_key_list(l.st, &l.keys, err)) != 0)
        goto out;

    check_server_status(&l);
    check_stapling(&l);
    check_ca(&l);
    check_crls(&l);
    check_anchors(&l);
    check_client_crls(&l);
    if (l.cfg != NULL) {
        check_sites(&l);
        check_listeners(&l);
        check_upstreams(&l);
    } else if (config_path == NULL) {
        f = moat_doctor_add(r, MOAT_DOCTOR_INFO, "no-config", "config",
                            "no config given: sites, listeners and key bindings were not checked");
        moat_doctor_fix(f, "moat doctor -c moat.yaml (or set MOAT_CONFIG)");
    }
    check_keys(&l);

out:
    moat_free(&l.bound);
    moat_store_key_list_dispose(&l.keys);
    X509_STORE_free(l.trust);
    X509_STORE_free(anchors);
    moat_store_close(l.st);
    moat_config_unref(l.cfg);
    return rc;
}
