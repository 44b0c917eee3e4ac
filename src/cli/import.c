/*
 * moat import DIR|nginx.conf|apache.conf: moves every key and certificate a previous server used into
 * the store, in one transaction, and says what it found, what it imported and what it left behind.
 */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "import/import.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

typedef enum {
    ACT_IMPORT,     /* a new key (with its certificate, if any) */
    ACT_RENEWAL,    /* a newer generation of a certbot lineage already in the store */
    ACT_EXISTS,     /* the key is in the store already */
    ACT_CERT_ADDED, /* the key was in the store; its newer certificate was not */
} action_t;

typedef struct outcome {
    action_t action;
    char name[MOAT_STORE_NAME_MAX]; /* the store name used (or found) */
    char warning[256];              /* why the server would refuse the imported pair; "" when it loads */
} outcome_t;

static const char *action_text(action_t a, int dry_run, int has_cert)
{
    switch (a) {
    case ACT_IMPORT:
        return dry_run ? (has_cert ? "would import" : "would import (no certificate)")
                       : (has_cert ? "imported" : "imported (no certificate)");
    case ACT_RENEWAL:
        return dry_run ? "would add as renewal" : "added as renewal";
    case ACT_EXISTS:
        return "already in store";
    case ACT_CERT_ADDED:
        return dry_run ? "would add certificate" : "certificate added";
    }
    return "?";
}

static const char *action_json(action_t a)
{
    switch (a) {
    case ACT_IMPORT:
        return "import";
    case ACT_RENEWAL:
        return "renewal";
    case ACT_EXISTS:
        return "exists";
    case ACT_CERT_ADDED:
        return "certificate-added";
    }
    return "?";
}

/*
 * Installs <cert> for key row <key_id> the way "key import" does (chain as store blobs, the server's loader
 * check after). The chain was built for the pair's newest certificate: an older one it does not fit is
 * stored without a chain. A refusal by the loader is kept in <warning>.
 */
static int install_cert(moat_store_t *st, int64_t key_id, X509 *cert, STACK_OF(X509) * chain, char *warning,
                        size_t warnsz, moat_err_t *err)
{
    moat_store_blob_t *blobs = NULL;
    size_t n = 0;
    char *missing = NULL;
    int rc = moat_keymgr_chain_blobs(cert, chain, &blobs, &n, &missing, err);
    if (rc == MOAT_E_PKI) {
        moat_err_clear(err);
        rc = 0;
    }
    if (rc == 0)
        rc = moat_keymgr_import_cert(st, key_id, cert, blobs, n, warning, warnsz, err);
    moat_free(&missing);
    moat_keymgr_blobs_dispose(&blobs, n);
    return rc;
}

/* Adds <p>'s key under <name> as a pending key, then its older certificates and its certificate. */
static int store_pair(moat_store_t *st, const moat_import_pair_t *p, const char *name, int exportable,
                      char *warning, size_t warnsz, moat_err_t *err)
{
    int64_t key_id = 0;
    int rc;

    if ((rc = moat_keymgr_key_add(st, name, p->key, p->algorithm, exportable != 0, NULL, &key_id, err)) != 0)
        return rc;
    /* Older certificates of the same key first, so that the newest ends up current. */
    for (int i = 0; i < sk_X509_num(p->older) && rc == 0; i++) {
        char ignored[256]; /* history: only the certificate that ends up current must load */
        rc = install_cert(st, key_id, sk_X509_value(p->older, i), p->chain, ignored, sizeof(ignored), err);
    }
    if (rc == 0 && p->cert != NULL)
        rc = install_cert(st, key_id, p->cert, p->chain, warning, warnsz, err);
    if (rc == 0)
        rc = moat__km_audit(st, "key.import", name, err,
                            "from %s (moat import), algorithm %s, exportable %s, key %s%s", p->file->path,
                            p->algorithm, exportable ? "yes" : "no", p->fingerprint,
                            p->cert ? ", with certificate" : "");
    return rc;
}

/* The key in the store with the same public key as <p>, if any (rc 0), else MOAT_E_NOTFOUND. */
static int find_existing(moat_store_t *st, const moat_import_pair_t *p, moat_store_key_t *out,
                         moat_err_t *err)
{
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    int rc;
    if ((rc = moat_pki_pubkey_to_der(p->key, &spki, &spki_len, err)) != 0)
        return rc;
    rc = moat_store_key_find_pubkey(st, spki, spki_len, out, err);
    moat_free(&spki);
    return rc;
}

/* 1 in *found when certificate <cert> is in the history of <name> (a retired key's certificate, say). */
static int in_history(moat_store_t *st, const char *name, X509 *cert, int *found, moat_err_t *err)
{
    moat_store_cert_list_t list = {0};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    int rc;
    *found = 0;
    if (st == NULL || cert == NULL || name[0] == '\0')
        return 0;
    if (!X509_digest(cert, EVP_sha256(), md, &mdlen))
        return moat_err_ossl(err, MOAT_E_PKI, "hashing a certificate");
    moat_hex_lower(md, mdlen, hex);
    if ((rc = moat_store_cert_list(st, name, &list, err)) != 0)
        return rc;
    for (size_t i = 0; i < list.n; i++)
        if (strcmp(list.items[i].fingerprint, hex) == 0)
            *found = 1;
    moat_store_cert_list_dispose(&list);
    return 0;
}

static int name_free(moat_store_t *st, const char *name, outcome_t *done, size_t ndone, int *is_free,
                     moat_err_t *err)
{
    moat_store_key_t k = {0};
    int rc;
    for (size_t i = 0; i < ndone; i++) {
        if (strcmp(done[i].name, name) == 0) {
            *is_free = 0;
            return 0;
        }
    }
    if (st == NULL) {
        *is_free = 1;
        return 0;
    }
    rc = moat_store_key_get(st, name, MOAT_KEY_CURRENT, &k, err);
    moat_store_key_dispose(&k);
    if (rc == 0) {
        *is_free = 0;
        return 0;
    }
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    *is_free = 1;
    return 0;
}

/* The store name of a certbot lineage imported before: the name of any of its keys still in use. */
static int group_store_name(moat_store_t *st, const moat_import_result_t *res, size_t first, char *out,
                            size_t outsz, moat_err_t *err)
{
    out[0] = '\0';
    for (size_t j = first; st != NULL && j < res->npairs && res->pairs[j].grouped &&
                           strcmp(res->pairs[j].name, res->pairs[first].name) == 0;
         j++) {
        moat_store_key_t have = {0};
        int rc = find_existing(st, &res->pairs[j], &have, err);
        if (rc == 0) {
            (void)moat_strlcpy(out, have.name, outsz);
            moat_store_key_dispose(&have);
            return 0;
        }
        moat_store_key_dispose(&have);
        if (rc != MOAT_E_NOTFOUND)
            return rc;
        moat_err_clear(err);
    }
    return 0;
}

/*
 * Decides (and unless <dry_run> performs; <st> may be NULL for a dry run with no store yet) what happens
 * to every pair, inside the caller's transaction. A certbot lineage keeps one store name: its oldest
 * generation is imported first and each newer one is added as a renewal, so the store's history matches
 * certbot's; generations already there (even retired ones) are recognised by their certificates.
 */
static int apply(moat_store_t *st, const moat_import_result_t *res, int dry_run, int exportable,
                 outcome_t *out, moat_err_t *err)
{
    const char *group = NULL; /* the lineage being walked */
    char group_name[MOAT_STORE_NAME_MAX] = "";
    int rc, found;

    for (size_t i = 0; i < res->npairs; i++) {
        const moat_import_pair_t *p = &res->pairs[i];
        moat_store_key_t have = {0};
        outcome_t *o = &out[i];

        if (!p->grouped) {
            group = NULL;
            group_name[0] = '\0';
        } else if (group == NULL || strcmp(group, p->name) != 0) {
            group = p->name;
            if ((rc = group_store_name(st, res, i, group_name, sizeof(group_name), err)) != 0)
                return rc;
        }
        rc = st != NULL ? find_existing(st, p, &have, err) : MOAT_E_NOTFOUND;
        if (rc == 0) {
            /* Already imported: at most its newer certificate is missing. */
            (void)moat_strlcpy(o->name, have.name, sizeof(o->name));
            o->action = ACT_EXISTS;
            if (p->cert != NULL && (have.cert == NULL || have.cert->not_after < (int64_t)p->not_after)) {
                o->action = ACT_CERT_ADDED;
                if (!dry_run && (rc = install_cert(st, have.id, p->cert, p->chain, o->warning,
                                                   sizeof(o->warning), err)) != 0) {
                    moat_store_key_dispose(&have);
                    return rc;
                }
            }
            moat_store_key_dispose(&have);
            continue;
        }
        moat_store_key_dispose(&have);
        if (rc != MOAT_E_NOTFOUND)
            return rc;
        moat_err_clear(err);
        /* A retired generation: its key is no longer found by public key, its certificate is in history. */
        if ((rc = in_history(st, group_name[0] ? group_name : p->name, p->cert, &found, err)) != 0)
            return rc;
        if (found) {
            (void)moat_strlcpy(o->name, group_name[0] ? group_name : p->name, sizeof(o->name));
            o->action = ACT_EXISTS;
            continue;
        }

        if (group != NULL && group_name[0] != '\0') {
            (void)moat_strlcpy(o->name, group_name, sizeof(o->name));
            o->action = ACT_RENEWAL;
        } else {
            int is_free = 0;
            o->action = ACT_IMPORT;
            (void)moat_strlcpy(o->name, p->name, sizeof(o->name));
            for (int n = 2; n < 1000; n++) {
                if ((rc = name_free(st, o->name, out, i, &is_free, err)) != 0)
                    return rc;
                if (is_free)
                    break;
                snprintf(o->name, sizeof(o->name), "%.100s-%d", p->name, n);
            }
            if ((rc = moat__km_check_name(o->name, err)) != 0)
                return rc;
            if (group != NULL)
                (void)moat_strlcpy(group_name, o->name, sizeof(group_name));
        }
        if (!dry_run &&
            (rc = store_pair(st, p, o->name, exportable, o->warning, sizeof(o->warning), err)) != 0) {
            moat_err_prefix(err, "importing %s", p->file->path);
            return rc;
        }
    }
    return 0;
}

/* ---- output ---- */

/* The subject as RFC 2253 text (as everywhere else in moat) into <buf>. */
static const char *subject_of(X509 *cert, char *buf, size_t bufsz)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n = 0;
    buf[0] = '\0';
    if (b != NULL && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0)
        n = BIO_read(b, buf, (int)bufsz - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(b);
    return buf;
}

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

static counts_t count(const moat_import_result_t *res, const outcome_t *out)
{
    counts_t c = {0};
    for (size_t i = 0; i < res->npairs; i++) {
        switch (out[i].action) {
        case ACT_IMPORT:
            c.imported++;
            break;
        case ACT_RENEWAL:
            c.renewals++;
            break;
        case ACT_EXISTS:
            c.existing++;
            break;
        case ACT_CERT_ADDED:
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
                       const outcome_t *out, int dry_run, const char *store_path)
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
            printf("  %-26s %s\n", subject_of(res->orphan_certs[i].cert, subject, sizeof(subject)),
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
                       const outcome_t *out, int dry_run, const char *store_path)
{
    moat_json_t j;
    counts_t c = count(res, out);
    moat_json_init(&j, stdout, 1);
    moat_json_obj_begin(&j);
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
        moat_json_kv_str(&j, "subject", subject_of(res->orphan_certs[i].cert, subject, sizeof(subject)));
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
    moat_json_obj_end(&j);
    moat_json_finish(&j);
}

int moat_cli_import(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL}, *pwfile = NULL;
    int dry_run = 0, exportable = 0, rc, code = MOAT_EXIT_OK;
    char pw[1024] = "";
    moat_import_scan_t scan = {0};
    moat_import_result_t res = {0};
    moat_store_t *st = NULL;
    outcome_t *out = NULL;
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
    if (st != NULL) {
        if (!dry_run && moat_store_begin(st, &err) != 0)
            goto fail;
        if (apply(st, &res, dry_run, exportable, out, &err) != 0) {
            if (dry_run)
                goto fail;
            goto rollback;
        }
        if (!dry_run) {
            counts_t c = count(&res, out);
            if (c.imported + c.renewals + c.certs_added > 0 && moat_store_generation_bump(st, &err) != 0)
                goto rollback;
            if (moat__km_commit(st, NULL, &err) != 0)
                goto fail;
        }
    } else if (apply(NULL, &res, 1, exportable, out, &err) != 0) {
        goto fail; /* a dry run without a store: everything would be new */
    }
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
rollback:
    moat_store_rollback(st);
fail:
    code = moat_cli_fail(cli, &err);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_store_close(st);
    moat_free(&out);
    moat_import_result_dispose(&res);
    moat_import_scan_dispose(&scan);
    return code;
}
