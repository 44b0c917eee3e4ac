/*
 * ca: revocation and the CRL of the day (moat ca revoke, moat ca crl), for every front end: a revocation
 * re-signs its CA's CRL in the same checked transaction; the CRL read is re-signed first when it is due.
 */
#include "ca/ca.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void moat_ca_revoked_dispose(moat_ca_revoked_t *r)
{
    moat_store_issued_dispose(&r->is);
}

int moat_ca_revoke(moat_store_t *st, const moat_config_t *cfg, const char *which, moat_pki_reason_t reason,
                   bool force, moat_ca_revoked_t *out, moat_err_t *err)
{
    char detail[512];
    int rc;

    memset(out, 0, sizeof(*out));
    out->reason = reason;
    if ((rc = moat_store_issued_get(st, which, &out->is, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_set(err, MOAT_E_NOTFOUND,
                         "moat's CA has issued no certificate with serial or name \"%s\"", which);
            moat_err_hint(err, "'moat ca list' shows what it issued");
        }
        return rc;
    }
    if (out->is.revoked != 0) {
        char t[MOAT_PKI_TIME_SIZE];
        return moat_err_set(err, MOAT_E_STATE, "serial %s was already revoked on %s (%s)", out->is.serial,
                            moat_pki_time_format((time_t)out->is.revoked, t),
                            moat_pki_reason_name(out->is.reason));
    }
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    out->when = (int64_t)time(NULL);
    snprintf(detail, sizeof(detail), "subject %s, name %s, reason %s", out->is.subject,
             out->is.name[0] ? out->is.name : "-", moat_pki_reason_name((int)reason));
    if ((rc = moat_ca_revoke_write(st, &out->is, out->when, (int)reason, "ca.revoke", detail, err)) != 0 ||
        (rc = moat_ca_commit(st, cfg, force ? 0 : MOAT_PLAN_REFUSE_REVOKED, &out->notes, err)) != 0)
        moat_store_rollback(st);
    return rc;
}

int moat_ca_revoke_write(moat_store_t *st, const moat_store_issued_t *is, int64_t when, int reason,
                         const char *action, const char *detail, moat_err_t *err)
{
    moat_ca_t ca = {0};
    int rc;
    if ((rc = moat_ca_load(st, is->issuer, true, &ca, err)) == 0 &&
        (rc = moat_store_issued_revoke(st, is->serial, when, reason, err)) == 0 &&
        (rc = moat_ca_crl_refresh(st, is->issuer, ca.cert, ca.key, err)) == 0)
        rc = moat_ca_audit(st, action, is->serial, err, "%s", detail);
    moat_ca_dispose(&ca);
    return rc;
}

void moat_ca_crl_res_dispose(moat_ca_crl_res_t *r)
{
    moat_free(&r->pem);
    X509_CRL_free(r->crl);
    r->crl = NULL;
}

/* The CA whose CRL is read: the root when asked for, else the issuing one. */
static int crl_role(moat_store_t *st, bool root, moat_store_ca_t *row, moat_err_t *err)
{
    int rc = root ? MOAT_E_NOTFOUND : moat_store_ca_get(st, MOAT_CA_INTERMEDIATE, row, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        rc = moat_store_ca_get(st, MOAT_CA_ROOT, row, err);
        if (rc == MOAT_E_NOTFOUND)
            moat_ca_none(err);
    }
    return rc;
}

/* Re-signs the CRL of <role> (and sets the CRL lifetime first when <days> > 0) in one transaction. */
static int crl_resign(moat_store_t *st, moat_ca_role_t role, long days, moat_err_t *err)
{
    moat_ca_t ca = {0};
    int rc;

    if ((rc = moat_ca_load(st, role, true, &ca, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        goto out;
    /* The generation bump makes a running server publish the new CRL. */
    if ((days > 0 && (rc = moat_ca_crl_days_set(st, days, err)) != 0) ||
        (rc = moat_ca_crl_refresh(st, role, ca.cert, ca.key, err)) != 0 ||
        (rc = days > 0 ? moat_ca_audit(st, "ca.crl", moat_store_ca_role_name(role), err,
                                       "re-signed, CRLs now valid for days: %ld", days)
                       : moat_store_audit_add(st, "ca.crl", moat_store_ca_role_name(role),
                                              "re-signed before expiry", err)) != 0 ||
        (rc = moat_ca_commit(st, NULL, 0, NULL, err)) != 0)
        moat_store_rollback(st);
out:
    moat_ca_dispose(&ca);
    return rc;
}

int moat_ca_crl_current(moat_store_t *st, const moat_ca_crl_req_t *req, moat_ca_crl_res_t *res,
                        moat_err_t *err)
{
    moat_store_ca_t row = {0};
    bool nokey;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((res->pem = moat_malloc(MOAT_CA_CRL_PEM_MAX)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    if ((rc = crl_role(st, req->root, &row, err)) != 0)
        goto out;
    res->role = row.role;
    nokey = req->keyless || row.key_id == 0;
    if ((rc = moat_ca_crl_stored(st, row.role, res->pem, MOAT_CA_CRL_PEM_MAX, &res->crl, err)) != 0) {
        /* An unreadable CRL is replaced when the key can sign a new one (doctor names this fix). */
        if (rc != MOAT_E_PKI || nokey)
            goto out;
        snprintf(res->note, sizeof(res->note),
                 "the stored CRL of the %s CA does not parse; signing a new one",
                 moat_store_ca_role_name(row.role));
        moat_err_clear(err);
    }
    rc = 0;
    if (req->set_days <= 0 && !moat_ca_crl_due(res->crl, time(NULL)))
        goto out;
    if (req->set_days > 0 && row.key_id == 0) {
        rc = moat_err_set(err, MOAT_E_STATE, "the %s CA's key is offline: its CRL cannot be re-signed",
                          moat_store_ca_role_name(row.role));
        moat_err_hint(err,
                      "bring the key back first (moat ca import-root); the CRL lifetime was not changed");
        goto out;
    }
    if (nokey) {
        if (res->crl == NULL) {
            rc = moat_err_set(err, MOAT_E_STATE,
                              "the %s CA has no CRL and its key is not available to sign one",
                              moat_store_ca_role_name(row.role));
            moat_err_hint(err, "%s",
                          req->keyless ? "pass --master-key FILE"
                                       : "bring the CA key back first (moat ca import-root)");
            goto out;
        }
        snprintf(res->note, sizeof(res->note),
                 "warning: the CRL is due for re-signing and the CA key is not available");
        goto out;
    }
    X509_CRL_free(res->crl);
    res->crl = NULL;
    if ((rc = crl_resign(st, row.role, req->set_days, err)) != 0 ||
        (rc = moat_ca_crl_stored(st, row.role, res->pem, MOAT_CA_CRL_PEM_MAX, &res->crl, err)) != 0)
        goto out;
    res->resigned = true;
out:
    if (rc != 0)
        moat_ca_crl_res_dispose(res);
    moat_store_ca_dispose(&row);
    return rc;
}
