/*
 * The running server keeps moat's CRLs fresh: a CRL is re-signed on every revocation (moat ca revoke) and,
 * here, once half of its validity has passed, so that relying parties never hold an expired one even
 * when nobody runs moat ca crl.
 */
#include "ca/ca.h"
#include "server/server_int.h"

#include <string.h>
#include <time.h>

static const moat_log_ctx_t logctx = {"ca", NULL};

/* Re-signs the CRL of <role>: 1 when it did, 0 when it was not due (or cannot be signed), < 0 on error. */
static int refresh_role(moat_store_t *st, moat_ca_role_t role, char *pem, moat_err_t *err)
{
    moat__ca_signer_t s;
    X509_CRL *crl = NULL;
    int due, rc;

    memset(&s, 0, sizeof(s));
    if ((rc = moat_ca_crl_stored(st, role, pem, MOAT_CA_CRL_PEM_MAX, &crl, err)) != 0 &&
        rc != MOAT_E_PKI) /* an unreadable CRL is replaced */
        return rc;
    moat_err_clear(err);
    due = moat_ca_crl_due(crl, time(NULL));
    X509_CRL_free(crl);
    if (!due)
        return 0;
    if ((rc = moat__ocsp_signer_load_role(&s, st, role, err)) != 0)
        goto out;
    /* No such CA, or its key is offline: nothing can sign; doctor reports the CRL as due. */
    if (s.cert[role] == NULL || s.key[role] == NULL)
        goto out;
    if ((rc = moat_ca_crl_resign(st, role, s.cert[role], s.key[role],
                                 "re-signed by the server before its next update", err)) == 0)
        rc = 1;
out:
    moat__ocsp_signer_dispose(&s);
    return rc;
}

void moat__crl_refresh_due(moat_store_t *st)
{
    char *pem = moat_malloc(MOAT_CA_CRL_PEM_MAX);
    moat_err_t err = {0};

    if (pem == NULL) {
        moat_log(MOAT_LOG_ERR, &logctx, "out of memory checking the CRLs");
        return;
    }
    for (int r = 0; r < 2; r++) {
        int rc = refresh_role(st, (moat_ca_role_t)r, pem, &err);
        if (rc == 1)
            moat_log(MOAT_LOG_NOTICE, &logctx, "re-signed the CRL of moat's %s CA before its next update",
                     moat_store_ca_role_name((moat_ca_role_t)r));
        else if (rc < 0)
            moat_log(MOAT_LOG_ERR, &logctx, "re-signing the CRL of moat's %s CA: %s%s%s",
                     moat_store_ca_role_name((moat_ca_role_t)r), err.msg, err.hint[0] ? "; " : "", err.hint);
        moat_err_clear(&err);
    }
    moat_free(&pem);
}
