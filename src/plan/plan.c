/* plan: which certificates a site serves (see plan.h). */
#include "plan/plan.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>

/* How well a certificate's SANs cover a site's hosts: every host covered beats some, exact beats
 * wildcard. The SAN text is "DNS:a,DNS:*.b,IP:192.0.2.1" (store/pki format). */
static void san_score(const char *sans, const moat_strlist_t *hosts, int *covered, int *exact)
{
    *covered = *exact = 0;
    for (size_t h = 0; h < hosts->n; h++) {
        const char *host = hosts->v[h];
        const char *dot = strchr(host, '.');
        int is_exact = 0, is_wild = 0;
        const char *p = sans;
        while (p != NULL && *p != '\0') {
            const char *end = strchr(p, ',');
            size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
            const char *colon = memchr(p, ':', n);
            if (colon != NULL) {
                const char *v = colon + 1;
                size_t vn = n - (size_t)(v - p);
                while (vn > 0 && *v == ' ')
                    v++, vn--;
                if (vn == strlen(host) && strncasecmp(v, host, vn) == 0)
                    is_exact = 1;
                else if (host[0] != '*' && dot != NULL && vn > 2 && v[0] == '*' && v[1] == '.' &&
                         vn - 1 == strlen(dot) && strncasecmp(v + 1, dot, vn - 1) == 0)
                    is_wild = 1;
            }
            p = end != NULL ? end + 1 : NULL;
        }
        *covered += is_exact || is_wild;
        *exact += is_exact;
    }
}

int moat_plan_cert_slot(const moat_store_cert_t *c)
{
    const unsigned char *p = c->der.data;
    X509 *x = d2i_X509(NULL, &p, (long)c->der.len);
    int slot = -1;
    if (x == NULL)
        return -1;
    /* serverAuth (or no EKU) and not a CA: X509_check_purpose applies the EKU/KU rules. */
    if (X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) == 1 && X509_check_ca(x) == 0) {
        EVP_PKEY *pk = X509_get0_pubkey(x);
        slot = pk != NULL && EVP_PKEY_is_a(pk, "RSA") ? 1 : 0;
    }
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
            int slot = moat_plan_cert_slot(c), cov, exact;
            if (slot < 0 || c->not_before > now || c->not_after <= now)
                continue;
            san_score(c->sans, &site->hosts, &cov, &exact);
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
