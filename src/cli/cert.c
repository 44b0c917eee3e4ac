/* moat cert: install, export, history, rollback. Each change is one store transaction. */
#include "cli/groups.h"
#include "cli/keymgr_int.h"

#include <openssl/x509.h>
#include <string.h>
#include <time.h>

#define MAX_CERT_FILE (4L * 1024 * 1024)

static int cert_install(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[2], *chain_file = NULL;
    int force = 0, no_fetch = 0, rc;
    unsigned char *cert_data = NULL, *chain_data = NULL;
    size_t cert_len = 0, chain_len = 0;
    moat_store_t *st = NULL;
    moat_keymgr_install_res_t res = {0};
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--chain", &chain_file, NULL, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {"--no-fetch", NULL, &no_fetch, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat cert install NAME CERT.pem [--chain CHAIN.pem] [--force] [--no-fetch]",
        "Installs the signed certificate of key NAME. Its public key must match the key's pending\n"
        "request (or its current key). The chain comes from --chain, from certificates bundled in\n"
        "CERT.pem (any order) and from moat's own CA; moat orders and checks it. A renewed certificate\n"
        "replaces the old one at once (the old one stays in 'moat cert history NAME'); a running server\n"
        "picks it up. Installing the same certificate again with its intermediates completes its chain.\n\n"
        "When no intermediate is given, moat fetches it from the certificate's AIA caIssuers URL\n"
        "(plain http, 5 seconds and 64 KiB at most) and uses it only if it signed the certificate.\n\n"
        "  --chain FILE   intermediate (and root) certificates, PEM, DER or PKCS#7\n"
        "  --force        install even if the certificate is expired or not yet valid\n"
        "  --no-fetch     never fetch a missing intermediate\n\n"
        "example: moat cert install www www.pem --chain intermediate.pem\n",
        opts,
        pos,
        2,
        2};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_check_name(pos[0], &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_read_file(pos[1], MAX_CERT_FILE, &cert_data, &cert_len, &err) != 0 ||
        (chain_file != NULL &&
         moat__km_read_file(chain_file, MAX_CERT_FILE, &chain_data, &chain_len, &err) != 0))
        goto fail;
    if (moat__km_open(cli, 0, &st, &err) != 0)
        goto fail;
    {
        moat_keymgr_install_req_t req = {pos[0],     pos[1],    cert_data,  cert_len,      chain_file,
                                         chain_data, chain_len, force != 0, no_fetch == 0, NULL};
        req.cfg = cfg = moat_cli_change_config(cli);
        if (moat_keymgr_install(st, &req, &res, &err) != 0)
            goto fail;
        moat_cli_change_notes(cli, &res.notes);
    }
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "action", res.chain_completed ? "chain_completed" : "installed");
        moat_json_kv_bool(&j, "renewal", res.renewal);
        moat_json_kv_int(&j, "chain_length", (int64_t)res.nchain);
        moat_json_kv_str(&j, "chain_ends_below", res.missing);
        moat_json_kv_str(&j, "chain_fetched_from", res.fetched.n > 0 ? res.fetched.url : NULL);
        moat_json_kv_bool(&j, "server_usage", res.server_usage);
        moat__km_json_cert_info(&j, &res.ci);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(res.ci.not_after, t, sizeof(t));
        if (res.chain_completed)
            printf("completed the chain of the certificate of \"%s\": %zu certificate%s above it\n", pos[0],
                   res.nchain, res.nchain == 1 ? "" : "s");
        else
            printf("installed the certificate of \"%s\": key \"%s\" is %s\n", pos[0], pos[0],
                   res.ci.not_after <= time(NULL)   ? "expired (installed with --force)"
                   : res.ci.not_before > time(NULL) ? "not valid yet (installed with --force)"
                                                    : "active"); /* the state 'key list' shows */
        printf("  subject %s\n  issuer  %s\n  valid until %s (%ld days)\n", res.ci.subject, res.ci.issuer, t,
               moat__km_days_left(res.ci.not_after, time(NULL)));
        if (res.fetched.n > 0)
            printf("fetched the missing intermediate from %s (its AIA caIssuers URL); it signed the "
                   "certificate\n",
                   res.fetched.url);
        else if (res.fetched.note[0] != '\0')
            fprintf(stderr, "moat: could not fetch the missing intermediate: %s\n", res.fetched.note);
        if (res.renewal)
            printf(
                "the renewed key and certificate replace the old ones; 'moat cert history %s' keeps them\n",
                pos[0]);
        if (res.missing != NULL && !res.ci.self_signed && res.nchain == 0)
            printf("issued directly by \"%s\": clients must trust it (as they do a root CA); if an "
                   "intermediate issued it, add it with --chain\n",
                   res.missing);
        else if (res.missing != NULL && !res.ci.self_signed)
            printf("chain: %zu certificate%s, ending below \"%s\", which clients must already trust\n",
                   res.nchain, res.nchain == 1 ? "" : "s", res.missing);
        if (!res.server_usage)
            fprintf(stderr, "moat: warning: this certificate is not for TLS servers (no serverAuth usage)\n");
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_keymgr_install_res_dispose(&res);
    moat_config_unref(cfg);
    moat_free(&cert_data);
    moat_free(&chain_data);
    moat_store_close(st);
    return rc;
}

static int cert_export(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *out = "-";
    int with_chain = 0, der_out = 0, rc;
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    char *pem = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--chain", NULL, &with_chain, NULL, NULL, 0},
        {"--der", NULL, &der_out, NULL, NULL, 0},
        {"--out", &out, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {"moat cert export NAME [--chain] [--der] [--out FILE]",
                                "Writes the current certificate of NAME (public, no key).\n\n"
                                "  --chain      add the intermediate certificates after it (PEM only)\n"
                                "  --der        DER instead of PEM\n"
                                "  --out FILE   write to FILE (default: standard output)\n\n"
                                "example: moat cert export www --chain --out www-chain.pem\n",
                                opts,
                                pos,
                                1,
                                1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (with_chain && der_out)
        return moat_cli_usage(cmd.usage, "--der holds one certificate: leave out --chain or --der");
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &k, &err) != 0) {
        if (err.code == MOAT_E_NOTFOUND) {
            moat_err_set(&err, MOAT_E_NOTFOUND, "no key named \"%s\"", pos[0]);
            moat_err_hint(&err, "'moat key list' shows the keys in this store");
        }
        goto fail;
    }
    if (k.cert == NULL) {
        moat_err_set(&err, MOAT_E_STATE, "key \"%s\" is pending: it has no certificate yet", pos[0]);
        moat_err_hint(&err, "have its request signed, then: moat cert install %s CERT.pem", pos[0]);
        goto fail;
    }
    if (moat_keymgr_cert_load(k.cert, &cert, &chain, &err) != 0)
        goto fail;
    if (der_out) {
        if (moat_pki_cert_to_der(cert, &der, &len, &err) != 0 ||
            moat__km_write_file(out, der, len, 0644, &err) != 0)
            goto fail;
    } else if (moat_pki_cert_to_pem(cert, with_chain ? chain : NULL, &pem, &len, &err) != 0 ||
               moat__km_write_file(out, pem, len, 0644, &err) != 0) {
        goto fail;
    }
    rc = MOAT_EXIT_OK;
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_free(&pem);
    moat_free(&der);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc;
}

static int cert_history(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    moat_store_cert_list_t cl = {0};
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat cert history NAME [--json]",
        "Lists every certificate NAME has had, newest first; the current one is marked.\n"
        "'moat cert rollback NAME' goes back to the one before the current one.\n\n"
        "  --json    an array of the certificates: serial, subject, issuer, validity, fingerprint, "
        "current\n\n"
        "example: moat cert history www\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &k, &err) != 0) {
        if (err.code == MOAT_E_NOTFOUND) {
            moat_err_set(&err, MOAT_E_NOTFOUND, "no key named \"%s\"", pos[0]);
            moat_err_hint(&err, "'moat key list' shows the keys in this store");
        }
        goto fail;
    }
    if (moat_store_cert_list(st, pos[0], &cl, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        char buf[MOAT_PKI_TIME_SIZE], fpr[MOAT_PKI_FINGERPRINT_SIZE];
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < cl.n; i++) {
            const moat_store_cert_t *c = &cl.items[i];
            moat_json_obj_begin(&j);
            moat__km_fpr_colon(c->fingerprint, fpr);
            moat_json_kv_str(&j, "fingerprint", fpr);
            moat_json_kv_str(&j, "serial", c->serial);
            moat_json_kv_str(&j, "subject", c->subject);
            moat_json_kv_str(&j, "issuer", c->issuer);
            moat_json_kv_str(&j, "not_before", moat_pki_time_format((time_t)c->not_before, buf));
            moat_json_kv_str(&j, "not_after", moat_pki_time_format((time_t)c->not_after, buf));
            moat_json_kv_str(&j, "installed", moat_pki_time_format((time_t)c->installed, buf));
            moat_json_kv_bool(&j, "current", c->current);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    } else if (cl.n == 0) {
        printf("\"%s\" has had no certificate yet\n", pos[0]);
    } else {
        size_t wserial = strlen("SERIAL");
        for (size_t i = 0; i < cl.n; i++) /* whole serials: two certificates never look the same */
            wserial = strlen(cl.items[i].serial) > wserial ? strlen(cl.items[i].serial) : wserial;
        printf("  %-19s %-10s %-*s %s\n", "INSTALLED", "NOT AFTER", (int)wserial, "SERIAL",
               "FINGERPRINT (SHA-256)");
        for (size_t i = 0; i < cl.n; i++) {
            const moat_store_cert_t *c = &cl.items[i];
            char inst[64], na[64], fpr[MOAT_PKI_FINGERPRINT_SIZE];
            moat__km_fmt_time((time_t)c->installed, inst, sizeof(inst));
            moat__km_fmt_time((time_t)c->not_after, na, sizeof(na));
            inst[19] = '\0';
            na[10] = '\0';
            moat__km_fpr_colon(c->fingerprint, fpr);
            printf("%c %-19s %-10s %-*s %s\n", c->current ? '*' : ' ', inst, na, (int)wserial, c->serial,
                   fpr);
        }
        printf("(* = current)\n");
    }
    rc = MOAT_EXIT_OK;
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_store_cert_list_dispose(&cl);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc;
}

static int cert_rollback(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_store_t *st = NULL;
    moat_store_cert_t now = {0};
    moat_plan_notes_t notes;
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat cert rollback NAME",
        "Makes the certificate (and key) NAME had before the current one current again;\n"
        "a running server picks it up. The replaced certificate stays in the history.\n\n"
        "example: moat cert rollback www\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    cfg = moat_cli_change_config(cli);
    if (moat_keymgr_rollback(st, cfg, pos[0], &now, &notes, &err) != 0)
        goto fail;
    moat_cli_change_notes(cli, &notes);
    if (cli->json) {
        char fpr[MOAT_PKI_FINGERPRINT_SIZE];
        moat_json_t j;
        moat__km_fpr_colon(now.fingerprint, fpr);
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "fingerprint", fpr);
        moat_json_kv_str(&j, "serial", now.serial);
        moat_json_kv_time(&j, "not_after", now.not_after);
        moat_json_kv_bool(&j, "expired", now.not_after < (int64_t)time(NULL));
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        char t[64], fpr[MOAT_PKI_FINGERPRINT_SIZE];
        moat__km_fmt_time((time_t)now.not_after, t, sizeof(t));
        moat__km_fpr_colon(now.fingerprint, fpr);
        printf("rolled back \"%s\" to certificate %s (serial %s), valid until %s\n", pos[0], fpr, now.serial,
               t);
        if (now.not_after < (int64_t)time(NULL))
            fprintf(stderr, "moat: warning: that certificate expired on %s\n", t);
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_store_cert_dispose(&now);
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}

int moat_cli_cert(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"install", "install the signed certificate of a key (completes a pending key)", cert_install},
        {"export", "write a key's certificate (and chain), PEM or DER", cert_export},
        {"history", "list the certificates a key has had", cert_history},
        {"rollback", "go back to the previous certificate", cert_rollback},
    };
    return moat__km_dispatch(cli, "cert", "certificates of the keys", subs, MOAT_ARRAY_LEN(subs), argc, argv);
}
