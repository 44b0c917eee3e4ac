/*
 * moat import DIR|nginx.conf|apache.conf: finds every key and certificate a previous server used
 * (import/), has the key manager bring them into the store in one transaction (moat_keymgr_import_found),
 * and says what it found, what it imported and what it left behind.
 */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "core/x509name.h"
#include "import/import.h"

#include <limits.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

static const char *action_text(moat_keymgr_found_action_t a, int dry_run, int has_cert)
{
    switch (a) {
    case MOAT_KEYMGR_FOUND_IMPORT:
        return dry_run ? (has_cert ? "would import" : "would import (no certificate)")
                       : (has_cert ? "imported" : "imported (no certificate)");
    case MOAT_KEYMGR_FOUND_RENEWAL:
        return dry_run ? "would add as renewal" : "added as renewal";
    case MOAT_KEYMGR_FOUND_EXISTS:
        return "already in store";
    case MOAT_KEYMGR_FOUND_CERT_ADDED:
        return dry_run ? "would add certificate" : "certificate added";
    }
    return "?";
}

static const char *action_json(moat_keymgr_found_action_t a)
{
    switch (a) {
    case MOAT_KEYMGR_FOUND_IMPORT:
        return "import";
    case MOAT_KEYMGR_FOUND_RENEWAL:
        return "renewal";
    case MOAT_KEYMGR_FOUND_EXISTS:
        return "exists";
    case MOAT_KEYMGR_FOUND_CERT_ADDED:
        return "certificate-added";
    }
    return "?";
}

/* ---- output ---- */

static void fmt_day(time_t t, char *out, size_t outsz)
{
    struct tm tm;
    if (t == 0 || gmtime_r(&t, &tm) == NULL)
        snprintf(out, outsz, "-");
    else
        strftime(out, outsz, "%Y-%m-%d", &tm);
}

typedef struct counts {
    size_t imported, renewals, existing, certs_added, orphan_keys, warnings;
} counts_t;

static counts_t count(const moat_import_result_t *res, const moat_keymgr_found_t *out)
{
    counts_t c = {0};
    for (size_t i = 0; i < res->npairs; i++) {
        switch (out[i].action) {
        case MOAT_KEYMGR_FOUND_IMPORT:
            c.imported++;
            break;
        case MOAT_KEYMGR_FOUND_RENEWAL:
            c.renewals++;
            break;
        case MOAT_KEYMGR_FOUND_EXISTS:
            c.existing++;
            break;
        case MOAT_KEYMGR_FOUND_CERT_ADDED:
            c.certs_added++;
            break;
        }
        if (res->pairs[i].cert == NULL)
            c.orphan_keys++;
        if (out[i].warning[0] != '\0')
            c.warnings++;
    }
    return c;
}

static void print_text(const char *source, const moat_import_scan_t *scan, const moat_import_result_t *res,
                       const moat_keymgr_found_t *out, int dry_run, const char *store_path)
{
    counts_t c = count(res, out);
    printf("%s %s (%s): %zu file%s with keys or certificates%s%s\n",
           dry_run ? "dry run, nothing changed:" : "scanned", source, scan->kind, res->nfiles_read,
           res->nfiles_read == 1 ? "" : "s", dry_run ? "" : "; store ", dry_run ? "" : store_path);
    if (res->npairs > 0) {
        printf("\n%-24s %-30s %-10s %-10s %s\n", "NAME", "ACTION", "KEY", "EXPIRES", "FROM");
        for (size_t i = 0; i < res->npairs; i++) {
            const moat_import_pair_t *p = &res->pairs[i];
            char day[16];
            fmt_day(p->not_after, day, sizeof(day));
            printf("%-24s %-30s %-10s %-10s %s%s\n", out[i].name,
                   action_text(out[i].action, dry_run, p->cert != NULL), p->algorithm, day, p->file->path,
                   p->grouped && !p->current ? " (history)" : "");
        }
    }
    if (c.orphan_keys > 0) {
        printf("\nkeys without a certificate (%s as pending keys; install one with 'moat cert install NAME "
               "CERT.pem'):\n",
               dry_run ? "would be imported" : "imported");
        for (size_t i = 0; i < res->npairs; i++)
            if (res->pairs[i].cert == NULL)
                printf("  %-26s %s (%s)\n", out[i].name, res->pairs[i].file->path,
                       res->pairs[i].file->origin);
    }
    if (c.warnings > 0) {
        printf(
            "\nimported, but the server would refuse them (fix before serving; 'moat doctor' explains):\n");
        for (size_t i = 0; i < res->npairs; i++)
            if (out[i].warning[0] != '\0')
                printf("  %-26s %s\n", out[i].name, out[i].warning);
    }
    if (res->norphan_certs > 0) {
        printf("\ncertificates without a key (not imported: a certificate alone cannot serve):\n");
        for (size_t i = 0; i < res->norphan_certs; i++) {
            char subject[256];
            printf("  %-26s %s\n",
                   (moat_x509_name_text(X509_get_subject_name(res->orphan_certs[i].cert), subject,
                                        sizeof(subject)),
                    subject),
                   res->orphan_certs[i].file->path);
        }
    }
    if (res->nproblems > 0) {
        printf("\nfiles not opened:\n");
        for (size_t i = 0; i < res->nproblems; i++)
            printf("  %s: %s\n", res->problems[i].file->path, res->problems[i].msg);
    }
    if (scan->nnotes > 0) {
        printf("\nnot followed:\n");
        for (size_t i = 0; i < scan->nnotes; i++)
            printf("  %s\n", scan->notes[i]);
    }
    printf("\n%s%zu imported, %zu renewal%s, %zu already in the store, %zu certificate%s added, %zu key%s "
           "without "
           "a certificate, %zu certificate%s without a key, %zu file%s not opened\n",
           dry_run ? "would be: " : "", c.imported, c.renewals, c.renewals == 1 ? "" : "s", c.existing,
           c.certs_added, c.certs_added == 1 ? "" : "s", c.orphan_keys, c.orphan_keys == 1 ? "" : "s",
           res->norphan_certs, res->norphan_certs == 1 ? "" : "s", res->nproblems,
           res->nproblems == 1 ? "" : "s");
}

static void print_json(const char *source, const moat_import_scan_t *scan, const moat_import_result_t *res,
                       const moat_keymgr_found_t *out, int dry_run, const char *store_path)
{
    moat_json_t j;
    counts_t c = count(res, out);
    moat_cli_json_begin(&j);
    moat_json_kv_str(&j, "source", source);
    moat_json_kv_str(&j, "kind", scan->kind);
    moat_json_kv_bool(&j, "dry_run", dry_run);
    moat_json_kv_str(&j, "store", store_path);
    moat_json_key(&j, "keys");
    moat_json_arr_begin(&j);
    for (size_t i = 0; i < res->npairs; i++) {
        const moat_import_pair_t *p = &res->pairs[i];
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", out[i].name);
        moat_json_kv_str(&j, "action", action_json(out[i].action));
        moat_json_kv_str(&j, "algorithm", p->algorithm);
        moat_json_kv_str(&j, "fingerprint", p->fingerprint);
        moat_json_kv_str(&j, "file", p->file->path);
        moat_json_kv_str(&j, "origin", p->file->origin);
        moat_json_kv_bool(&j, "history", p->grouped && !p->current);
        moat_json_kv_str(&j, "warning", out[i].warning[0] ? out[i].warning : NULL);
        moat_json_key(&j, "certificate");
        if (p->cert == NULL) {
            moat_json_null(&j);
        } else {
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "subject", p->subject);
            moat_json_kv_time(&j, "not_after", (int64_t)p->not_after);
            moat_json_kv_str(&j, "file", p->cert_file->path);
            moat_json_kv_int(&j, "chain", sk_X509_num(p->chain));
            moat_json_kv_str(&j, "chain_ends_below", p->chain_missing);
            moat_json_kv_int(&j, "older_certificates", sk_X509_num(p->older));
            moat_json_obj_end(&j);
        }
        moat_json_obj_end(&j);
    }
    moat_json_arr_end(&j);
    moat_json_key(&j, "certificates_without_key");
    moat_json_arr_begin(&j);
    for (size_t i = 0; i < res->norphan_certs; i++) {
        char subject[256];
        moat_json_obj_begin(&j);
        moat_json_kv_str(
            &j, "subject",
            (moat_x509_name_text(X509_get_subject_name(res->orphan_certs[i].cert), subject, sizeof(subject)),
             subject));
        moat_json_kv_str(&j, "file", res->orphan_certs[i].file->path);
        moat_json_obj_end(&j);
    }
    moat_json_arr_end(&j);
    moat_json_key(&j, "files_not_opened");
    moat_json_arr_begin(&j);
    for (size_t i = 0; i < res->nproblems; i++) {
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "file", res->problems[i].file->path);
        moat_json_kv_str(&j, "error", moat_err_name(res->problems[i].code));
        moat_json_kv_str(&j, "reason", res->problems[i].msg);
        moat_json_obj_end(&j);
    }
    moat_json_arr_end(&j);
    moat_json_key(&j, "not_followed");
    moat_json_arr_begin(&j);
    for (size_t i = 0; i < scan->nnotes; i++)
        moat_json_str(&j, scan->notes[i]);
    moat_json_arr_end(&j);
    moat_json_key(&j, "summary");
    moat_json_obj_begin(&j);
    moat_json_kv_int(&j, "imported", (int64_t)c.imported);
    moat_json_kv_int(&j, "renewals", (int64_t)c.renewals);
    moat_json_kv_int(&j, "existing", (int64_t)c.existing);
    moat_json_kv_int(&j, "certificates_added", (int64_t)c.certs_added);
    moat_json_kv_int(&j, "keys_without_certificate", (int64_t)c.orphan_keys);
    moat_json_kv_int(&j, "certificates_without_key", (int64_t)res->norphan_certs);
    moat_json_kv_int(&j, "files_not_opened", (int64_t)res->nproblems);
    moat_json_obj_end(&j);
    moat_cli_json_end(&j);
}

int moat_cli_import(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL}, *pwfile = NULL;
    int dry_run = 0, exportable = 0, rc, code = MOAT_EXIT_OK;
    char pw[1024] = "";
    moat_import_scan_t scan = {0};
    moat_import_result_t res = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_plan_notes_t notes = {0};
    moat_keymgr_found_t *out = NULL;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--dry-run", NULL, &dry_run, NULL, NULL, 0},
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat import DIR|nginx.conf|apache.conf [--dry-run] [--password-file F] [--exportable]",
        "Finds every key and certificate a previous server used and imports them into the store, in one\n"
        "transaction: nginx ssl_certificate/ssl_certificate_key and Apache SSLCertificateFile/KeyFile/\n"
        "ChainFile (following include, Include and IncludeOptional), certbot's live/ (current) and\n"
        "archive/ (history) folders, and any PEM, DER, PKCS#8 or PKCS#12 file in a folder.\n"
        "Keys are paired with certificates by public key and imported with their chains; keys already in\n"
        "the store are not imported twice. Keys without a certificate are imported as pending keys;\n"
        "certificates without a key, and files that could not be opened, are listed.\n\n"
        "  --dry-run          show what would be imported; change nothing\n"
        "  --password-file F  the password of encrypted keys and PKCS#12 files (first line of F)\n"
        "  --exportable       allow 'moat key export' of the imported keys later (default: never)\n\n"
        "Exit status: 0 when everything found was imported (or was already there), 1 when some file\n"
        "could not be opened (encrypted, unreadable) or the import failed (then nothing changed).\n\n"
        "example: moat import /etc/nginx/nginx.conf --dry-run\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (pwfile != NULL && moat__km_password(pwfile, NULL, 0, 1, pw, sizeof(pw), &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_import_scan(pos[0], &scan, &err) != 0)
        goto fail;
    rc = moat_import_analyse(&scan, pwfile ? pw : NULL, &res, &err);
    OPENSSL_cleanse(pw, sizeof(pw));
    if (rc != 0)
        goto fail;
    if (res.npairs > 0 && (out = moat_calloc(res.npairs, sizeof(*out))) == NULL) {
        moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
        goto fail;
    }
    /* A dry run reads the store (to say what exists) but never creates or changes it. */
    if (dry_run) {
        rc = moat__km_open(cli, MOAT_STORE_READONLY | MOAT_STORE_NO_MASTER_KEY, &st, &err);
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(&err);
            st = NULL;
        } else if (rc != 0) {
            goto fail;
        }
    } else if (res.npairs > 0 && moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0) {
        goto fail;
    }
    cfg = dry_run ? NULL : moat_cli_change_config(cli);
    if (moat_keymgr_import_found(st, &res, dry_run, exportable, cfg, out, &notes, &err) != 0)
        goto fail;
    if (!dry_run)
        moat_cli_change_notes(cli, &notes);
    if (cli->json)
        print_json(pos[0], &scan, &res, out, dry_run, st ? moat_store_path(st) : "");
    else if (!cli->quiet)
        print_text(pos[0], &scan, &res, out, dry_run, st ? moat_store_path(st) : "");
    if (st != NULL && !dry_run)
        code = moat_cli_served_report(cli, st);
    if (res.nproblems > 0) {
        size_t enc = 0;
        for (size_t i = 0; i < res.nproblems; i++)
            enc += res.problems[i].code == MOAT_E_PASSWORD;
        if (enc == res.nproblems)
            moat_err_set(&err, MOAT_E_PASSWORD, "%zu file%s could not be opened (encrypted)", res.nproblems,
                         res.nproblems == 1 ? "" : "s");
        else if (enc > 0)
            moat_err_set(&err, MOAT_E_PASSWORD,
                         "%zu files could not be opened: %zu encrypted, %zu damaged or unreadable",
                         res.nproblems, enc, res.nproblems - enc);
        else
            moat_err_set(&err, MOAT_E_INVAL, "%zu file%s could not be opened (damaged or unreadable)",
                         res.nproblems, res.nproblems == 1 ? "" : "s");
        if (enc > 0)
            moat_err_hint(
                &err, "run again with --password-file FILE: what is imported already is not imported twice");
        else
            moat_err_hint(&err, "%s says why for each file; fix or remove them, then run the import again",
                          cli->json ? "\"files_not_opened\" in the output" : "the list above");
        code = moat_cli_fail(cli, &err);
    }
    goto out;
fail:
    code = moat_cli_fail(cli, &err);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_config_unref(cfg);
    moat_store_close(st);
    moat_free(&out);
    moat_import_result_dispose(&res);
    moat_import_scan_dispose(&scan);
    return code;
}
