/* moat ca revoke and moat ca crl: revocation, with the CRL re-signed on every change. */
#include "ca/ca.h"
#include "cli/keymgr_int.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

int moat__km_ca_crl_cmd(moat_cli_t *cli, int argc, char **argv)
{
    const char *out = "-", *days_s = NULL;
    int der_out = 0, want_root = 0, rc, keyless = 0;
    long days = 0;
    moat_store_t *st = NULL;
    moat_store_ca_t row = {0};
    moat_ca_t ca = {0};
    char *pem = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    X509_CRL *crl = NULL;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--der", NULL, &der_out, NULL, NULL, 0},
        {"--root", NULL, &want_root, NULL, NULL, 0},
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--days", &days_s, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca crl [--der] [--root] [--out FILE] [--days N]",
        "Prints the current certificate revocation list of the issuing CA (or of the root with\n"
        "--root). It is re-signed on every revocation, and here when half of its lifetime has passed.\n\n"
        "  --der        DER instead of PEM\n  --root       the root's CRL (it lists revoked "
        "intermediates)\n  --out FILE   write to FILE (default: standard output)\n"
        "  --days N     how long the CA's CRLs are valid from now on (1-366, default 7), and re-sign this\n"
        "               one with it; a root taken offline wants a long one\n\n"
        "example: moat ca crl --out ca.crl\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (days_s != NULL && moat_parse_long(days_s, MOAT_CA_CRL_DAYS_MIN, MOAT_CA_CRL_DAYS_MAX, &days) != 0)
        return moat_cli_usage(cmd.usage, "--days takes %d to %d days, not \"%s\"", MOAT_CA_CRL_DAYS_MIN,
                              MOAT_CA_CRL_DAYS_MAX, days_s);
    if (moat__km_open(cli, 0, &st, &err) != 0) {
        if (days_s != NULL)
            return moat_cli_fail(cli, &err); /* setting it needs the key to re-sign */
        /* Without the master key the stored CRL can still be printed, just not re-signed. */
        if (err.code != MOAT_E_PERM || moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
            return moat_cli_fail(cli, &err);
        keyless = 1;
        moat_err_clear(&err);
    }
    if ((pem = moat_malloc(MOAT_CA_CRL_PEM_MAX)) == NULL) {
        moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
        goto fail;
    }
    rc = want_root ? MOAT_E_NOTFOUND : moat_store_ca_get(st, MOAT_CA_INTERMEDIATE, &row, &err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(&err);
        rc = moat_store_ca_get(st, MOAT_CA_ROOT, &row, &err);
        if (rc == MOAT_E_NOTFOUND)
            moat_ca_none(&err);
    }
    if (rc != 0)
        goto fail;
    if ((rc = moat_ca_crl_stored(st, row.role, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err)) != 0) {
        /* An unreadable CRL is replaced when the key can sign a new one (doctor names this fix). */
        if (rc != MOAT_E_PKI || keyless || row.key_id == 0)
            goto fail;
        fprintf(stderr, "moat: the stored CRL of the %s CA does not parse; signing a new one\n",
                moat_store_ca_role_name(row.role));
        moat_err_clear(&err);
    }
    if (days_s != NULL || moat_ca_crl_due(crl, time(NULL))) {
        if (days_s != NULL && row.key_id == 0) {
            moat_err_set(&err, MOAT_E_STATE, "the %s CA's key is offline: its CRL cannot be re-signed",
                         moat_store_ca_role_name(row.role));
            moat_err_hint(&err, "bring the key back first; the CRL lifetime was not changed");
            goto fail;
        }
        if (keyless || row.key_id == 0) {
            if (crl == NULL) {
                moat_err_set(&err, MOAT_E_STATE,
                             "the %s CA has no CRL and its key is not available to sign one",
                             moat_store_ca_role_name(row.role));
                moat_err_hint(&err, "%s", keyless ? "pass --master-key FILE" : "bring the CA key back first");
                goto fail;
            }
            fprintf(stderr, "moat: warning: the CRL is due for re-signing and the CA key is not available\n");
        } else {
            X509_CRL_free(crl);
            crl = NULL;
            if (moat_ca_load(st, row.role, 1, &ca, &err) != 0 || moat_store_begin(st, &err) != 0)
                goto fail;
            /* The generation bump makes a running server publish the new CRL. */
            if ((days_s != NULL && moat_ca_crl_days_set(st, days, &err) != 0) ||
                moat_ca_crl_refresh(st, row.role, ca.cert, ca.key, &err) != 0 ||
                moat_store_generation_bump(st, &err) != 0 ||
                moat__km_audit(st, "ca.crl", moat_store_ca_role_name(row.role), &err, "re-signed%s%s",
                               days_s != NULL ? ", CRLs now valid for days: " : " before expiry",
                               days_s != NULL ? days_s : "") != 0) {
                moat_store_rollback(st);
                goto fail;
            }
            if (moat__km_commit(st, NULL, &err) != 0 ||
                moat_ca_crl_stored(st, row.role, pem, MOAT_CA_CRL_PEM_MAX, &crl, &err) != 0)
                goto fail;
        }
    }
    if (der_out) {
        if (moat_pki_crl_to_der(crl, &der, &der_len, &err) != 0 ||
            moat__km_write_file(out, der, der_len, 0644, &err) != 0)
            goto fail;
    } else if (moat__km_write_file(out, pem, strlen(pem), 0644, &err) != 0) {
        goto fail;
    }
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_free(&pem);
    moat_free(&der);
    X509_CRL_free(crl);
    moat_ca_dispose(&ca);
    moat_store_ca_dispose(&row);
    moat_store_close(st);
    return rc;
}

int moat__km_ca_revoke_cmd(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *reason_s = NULL;
    moat_pki_reason_t reason = MOAT_PKI_REASON_UNSPECIFIED;
    moat_store_t *st = NULL;
    moat_store_issued_t is = {0};
    moat_ca_t ca = {0};
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {
        {"--reason", &reason_s, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca revoke NAME|SERIAL [--reason R]",
        "Revokes a certificate moat's CA issued (by key name or serial) and re-signs the CRL; a running\n"
        "server's OCSP responder answers \"revoked\" from then on.\n\n"
        "  --reason R   unspecified (default), key-compromise, ca-compromise, affiliation-changed,\n"
        "               superseded, cessation-of-operation, certificate-hold, privilege-withdrawn\n\n"
        "example: moat ca revoke alice --reason key-compromise\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (reason_s != NULL && moat_pki_reason_parse(reason_s, &reason, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_issued_get(st, pos[0], &is, &err) != 0) {
        if (err.code == MOAT_E_NOTFOUND) {
            moat_err_set(&err, MOAT_E_NOTFOUND,
                         "moat's CA has issued no certificate with serial or name \"%s\"", pos[0]);
            moat_err_hint(&err, "'moat ca list' shows what it issued");
        }
        goto fail;
    }
    if (is.revoked != 0) {
        char t[64];
        moat__km_fmt_time((time_t)is.revoked, t, sizeof(t));
        moat_err_set(&err, MOAT_E_STATE, "serial %s was already revoked on %s (%s)", is.serial, t,
                     moat_pki_reason_name(is.reason));
        goto fail;
    }
    if (moat_ca_load(st, is.issuer, 1, &ca, &err) != 0)
        goto fail;
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (moat_store_issued_revoke(st, is.serial, (int64_t)time(NULL), (int)reason, &err) != 0 ||
        moat_ca_crl_refresh(st, is.issuer, ca.cert, ca.key, &err) != 0 ||
        moat_store_generation_bump(st, &err) != 0 ||
        moat__km_audit(st, "ca.revoke", is.serial, &err, "subject %s, name %s, reason %s", is.subject,
                       is.name[0] ? is.name : "-", moat_pki_reason_name((int)reason)) != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat__km_commit(st, NULL, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "serial", is.serial);
        moat_json_kv_str(&j, "name", is.name[0] ? is.name : NULL);
        moat_json_kv_str(&j, "subject", is.subject);
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(is.issuer));
        moat_json_kv_str(&j, "reason", moat_pki_reason_name((int)reason));
        moat_json_kv_time(&j, "revoked_at", (int64_t)time(NULL));
        moat_json_kv_bool(&j, "crl_resigned", 1);
        moat_cli_served_json(cli, st, &j);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else if (!cli->quiet)
        printf("revoked serial %s (%s%s%s), reason %s; the CRL is re-signed\n", is.serial, is.subject,
               is.name[0] ? ", key " : "", is.name, moat_pki_reason_name((int)reason));
    rc = moat_cli_served_report(cli, st);
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_store_issued_dispose(&is);
    moat_ca_dispose(&ca);
    moat_store_close(st);
    return rc;
}
