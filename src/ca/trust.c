/*
 * ca: the trust anchors that verify client certificates (moat trust add, moat trust remove), for every
 * front end. Each change is one transaction, checked against the serving plan before it commits.
 */
#include "ca/ca.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void moat_ca_trust_added_dispose(moat_ca_trust_added_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        moat_pki_cert_info_dispose(&a->items[i].info);
    a->n = 0;
}

/* An anchor name derived from the subject's CN ("Corp Root CA 2" -> "corp-root-ca-2"). */
static void name_from_cn(const char *cn, char *out, size_t outsz)
{
    size_t o = 0;
    int dash = 0;
    for (const char *p = cn ? cn : ""; *p && o + 1 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c)) {
            if (dash && o > 0 && o + 2 < outsz)
                out[o++] = '-';
            out[o++] = (char)tolower(c);
            dash = 0;
        } else {
            dash = 1;
        }
    }
    out[o] = '\0';
    if (o == 0)
        (void)moat_strlcpy(out, "anchor", outsz);
}

/* Why a certificate cannot be a trust anchor, or NULL when it can. */
static const char *anchor_refusal(const moat_pki_cert_info_t *info)
{
    if (!info->is_ca)
        return "it is not a CA certificate (no basicConstraints CA:TRUE), so it cannot vouch for client "
               "certificates";
    if (info->has_key_usage && !(info->key_usage & MOAT_PKI_KU_KEY_CERT_SIGN))
        return "its keyUsage does not allow signing certificates (no keyCertSign)";
    return NULL;
}

/* Checks every certificate of <certs> and names it, before anything is written. */
static int trust_vet(STACK_OF(X509) * certs, const moat_ca_trust_add_req_t *req, moat_ca_trust_added_t *out,
                     moat_err_t *err)
{
    int n = sk_X509_num(certs);
    time_t now = time(NULL);

    if (n > (int)MOAT_CA_TRUST_ADD_MAX)
        return moat_err_set(err, MOAT_E_LIMIT, "%s holds %d certificates; at most %d are added at once",
                            req->source, n, MOAT_CA_TRUST_ADD_MAX);
    for (int i = 0; i < n; i++) {
        moat_ca_trust_anchor_t *a = &out->items[i];
        const char *why;
        int rc;
        if ((rc = moat_pki_cert_info(sk_X509_value(certs, i), &a->info, err)) != 0)
            return rc;
        out->n++;
        if ((why = anchor_refusal(&a->info)) != NULL) {
            moat_err_set(err, MOAT_E_INVAL, "%s: certificate %d (\"%s\") cannot be a trust anchor: %s",
                         req->source, i + 1, a->info.subject, why);
            return moat_err_hint(err, "add the CA that issued it instead (its issuer is \"%s\")",
                                 a->info.issuer);
        }
        if (a->info.not_after < now && !req->force) {
            char when[MOAT_PKI_TIME_SIZE];
            moat_err_set(err, MOAT_E_PKI, "%s: certificate \"%s\" expired on %s", req->source,
                         a->info.subject, moat_pki_time_format(a->info.not_after, when));
            return moat_err_hint(err, "get the CA's current certificate, or pass --force to add it anyway");
        }
        if (req->name != NULL && n == 1)
            (void)moat_strlcpy(a->name, req->name, sizeof(a->name));
        else if (req->name != NULL)
            snprintf(a->name, sizeof(a->name), "%.*s-%d", (int)sizeof(a->name) - 12, req->name, i + 1);
        else
            name_from_cn(a->info.cn ? a->info.cn : a->info.subject, a->name, sizeof(a->name));
        if (strcmp(a->name, MOAT_PLAN_CA_ANCHOR) == 0)
            (void)moat_strlcpy(a->name, "moat-ca-external", sizeof(a->name));
    }
    return 0;
}

int moat_ca_trust_add(moat_store_t *st, const moat_ca_trust_add_req_t *req, moat_ca_trust_added_t *out,
                      moat_err_t *err)
{
    STACK_OF(X509) *certs = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (req->name != NULL && strcmp(req->name, MOAT_PLAN_CA_ANCHOR) == 0) {
        moat_err_set(err, MOAT_E_INVAL, "\"%s\" is the name of moat's own CA and always trusted", req->name);
        return moat_err_hint(err, "choose another --name");
    }
    if ((rc = moat_pki_certs_parse(req->data, req->len, &certs, err)) != 0) {
        moat_err_prefix(err, "reading %s", req->source);
        return rc;
    }
    if ((rc = trust_vet(certs, req, out, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        goto out;
    for (size_t i = 0; i < out->n; i++) {
        const moat_ca_trust_anchor_t *a = &out->items[i];
        unsigned char *der = NULL;
        size_t der_len = 0;
        char detail[1024];
        if ((rc = moat_pki_cert_to_der(sk_X509_value(certs, (int)i), &der, &der_len, err)) != 0)
            goto rollback;
        rc = moat_store_anchor_add(st, a->name, der, der_len, err);
        OPENSSL_free(der);
        if (rc == MOAT_E_EXISTS)
            moat_err_hint(err, "'moat trust list' shows the anchors; --name N picks another name");
        snprintf(detail, sizeof(detail), "subject %s, fingerprint %s", a->info.subject, a->info.fingerprint);
        if (rc != 0 || (rc = moat_store_audit_add(st, "trust.add", a->name, detail, err)) != 0)
            goto rollback;
    }
    if ((rc = moat_ca_commit(st, req->cfg, 0, &out->notes, err)) != 0)
        goto rollback;
    goto out;
rollback:
    moat_store_rollback(st);
out:
    if (rc != 0)
        moat_ca_trust_added_dispose(out);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int moat_ca_trust_remove(moat_store_t *st, const moat_config_t *cfg, const char *name,
                         moat_ca_trust_removed_t *out, moat_err_t *err)
{
    moat_store_anchor_t a = {0};
    char detail[600];
    int rc;

    memset(out, 0, sizeof(*out));
    if (strcmp(name, MOAT_PLAN_CA_ANCHOR) == 0) {
        moat_err_set(err, MOAT_E_INVAL, "\"%s\" is moat's own CA, not a stored anchor", name);
        return moat_err_hint(err, "to stop trusting it for a site, list other anchors in its client_trust:");
    }
    if ((rc = moat_store_anchor_get(st, name, &a, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_set(err, MOAT_E_NOTFOUND, "no trust anchor named \"%s\"", name);
            moat_err_hint(err, "'moat trust list' shows the anchors");
        }
        return rc;
    }
    (void)moat_strlcpy(out->subject, a.subject, sizeof(out->subject));
    snprintf(detail, sizeof(detail), "subject %s", a.subject);
    moat_store_anchor_dispose(&a);
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    if ((rc = moat_store_anchor_remove(st, name, err)) != 0 ||
        (rc = moat_store_audit_add(st, "trust.remove", name, detail, err)) != 0 ||
        (rc = moat_ca_commit(st, cfg, 0, &out->notes, err)) != 0)
        moat_store_rollback(st);
    return rc;
}
