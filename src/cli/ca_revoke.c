/* moat ca revoke and moat ca crl: revocation, with the CRL re-signed on every change. */
#include "ca/ca.h"
#include "cli/keymgr_int.h"

#include <stdio.h>
#include <string.h>

int moat__km_ca_crl_cmd(moat_cli_t *cli, int argc, char **argv)
{
    const char *out = "-", *days_s = NULL;
    int der_out = 0, want_root = 0, rc;
    moat_ca_crl_req_t req = {0};
    moat_ca_crl_res_t res = {0};
    moat_store_t *st = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
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
    if (days_s != NULL &&
        moat_parse_long(days_s, MOAT_CA_CRL_DAYS_MIN, MOAT_CA_CRL_DAYS_MAX, &req.set_days) != 0)
        return moat_cli_usage(cmd.usage, "--days takes %d to %d days, not \"%s\"", MOAT_CA_CRL_DAYS_MIN,
                              MOAT_CA_CRL_DAYS_MAX, days_s);
    req.root = want_root != 0;
    if (moat__km_open(cli, 0, &st, &err) != 0) {
        if (days_s != NULL)
            return moat_cli_fail(cli, &err); /* setting it needs the key to re-sign */
        /* Without the master key the stored CRL can still be printed, just not re-signed. */
        if (err.code != MOAT_E_PERM || moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
            return moat_cli_fail(cli, &err);
        req.keyless = true;
        moat_err_clear(&err);
    }
    if (moat_ca_crl_current(st, &req, &res, &err) != 0)
        goto fail;
    if (res.note[0] != '\0')
        fprintf(stderr, "moat: %s\n", res.note);
    if (der_out) {
        if (moat_pki_crl_to_der(res.crl, &der, &der_len, &err) != 0 ||
            moat__km_write_file(out, der, der_len, 0644, &err) != 0)
            goto fail;
    } else if (moat__km_write_file(out, res.pem, strlen(res.pem), 0644, &err) != 0) {
        goto fail;
    }
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_free(&der);
    moat_ca_crl_res_dispose(&res);
    moat_store_close(st);
    return rc;
}

int moat__km_ca_revoke_cmd(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *reason_s = NULL;
    moat_pki_reason_t reason = MOAT_PKI_REASON_UNSPECIFIED;
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_ca_revoked_t res = {0};
    moat_err_t err = {0};
    int rc, force = 0;
    const moat__km_opt_t opts[] = {
        {"--reason", &reason_s, NULL, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca revoke NAME|SERIAL [--reason R] [--force]",
        "Revokes a certificate moat's CA issued (by key name or serial) and re-signs the CRL; a running\n"
        "server's OCSP responder answers \"revoked\" from then on. A certificate a site of the\n"
        "configuration serves is refused, naming the site: the server would go on serving it with a\n"
        "\"revoked\" staple, which clients that check revocation refuse. Give the site a new certificate\n"
        "first, or revoke it anyway with --force (a compromised key).\n\n"
        "  --reason R   unspecified (default), key-compromise, ca-compromise, affiliation-changed,\n"
        "               superseded, cessation-of-operation, certificate-hold, privilege-withdrawn\n"
        "  --force      revoke a certificate a site still serves\n\n"
        "example: moat ca revoke alice --reason key-compromise\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (reason_s != NULL && moat_pki_reason_parse(reason_s, &reason, &err) != 0)
        return moat_cli_fail(cli, &err);
    cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, 0, &st, &err) != 0 ||
        moat_ca_revoke(st, cfg, pos[0], reason, force != 0, &res, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto done;
    }
    moat_cli_change_notes(cli, &res.notes);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "serial", res.is.serial);
        moat_json_kv_str(&j, "name", res.is.name[0] ? res.is.name : NULL);
        moat_json_kv_str(&j, "subject", res.is.subject);
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(res.is.issuer));
        moat_json_kv_str(&j, "reason", moat_pki_reason_name((int)reason));
        moat_json_kv_time(&j, "revoked_at", res.when);
        moat_json_kv_bool(&j, "crl_resigned", 1);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet)
        printf("revoked serial %s (%s%s%s), reason %s; the CRL is re-signed\n", res.is.serial, res.is.subject,
               res.is.name[0] ? ", key " : "", res.is.name, moat_pki_reason_name((int)reason));
    rc = moat_cli_served_report(cli, st);
done:
    moat_ca_revoked_dispose(&res);
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}
