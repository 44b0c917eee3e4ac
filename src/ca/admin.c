/*
 * ca: the CA's own life, for every front end: creating the root and the intermediate, taking the root
 * offline and bringing it back, its public base URL and the profiles' policies. Each change is one
 * transaction, audited, checked against the serving plan before it commits.
 */
#include "ca/ca.h"
#include "core/x509name.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int moat_ca_join(const char *const *items, size_t n, const char *what, char *out, size_t outsz,
                 moat_err_t *err)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, outsz - o, "%s%s", o ? "," : "", items[i]);
        if (w < 0 || (size_t)w >= outsz - o)
            return moat_err_set(err, MOAT_E_LIMIT, "%s: too many names (at most %zu bytes in all)", what,
                                outsz - 1);
        o += (size_t)w;
    }
    return 0;
}

int moat_ca_audit(moat_store_t *st, const char *action, const char *object, moat_err_t *err, const char *fmt,
                  ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return moat_store_audit_add(st, action, object, detail, err);
}

int moat_ca_commit(moat_store_t *st, const moat_config_t *cfg, unsigned flags, moat_plan_notes_t *notes,
                   moat_err_t *err)
{
    int rc = moat_store_generation_bump(st, err);
    if (rc != 0) {
        moat_store_rollback(st);
        return rc;
    }
    return moat_plan_commit(st, cfg, flags, notes, err);
}

const char *moat_ca_key_name(moat_ca_role_t role)
{
    return role == MOAT_CA_ROOT ? MOAT_CA_ROOT_KEY : MOAT_CA_INTER_KEY;
}

void moat_ca_init_res_dispose(moat_ca_init_res_t *r)
{
    moat_pki_cert_info_dispose(&r->ci);
}

void moat_ca_import_root_res_dispose(moat_ca_import_root_res_t *r)
{
    moat_pki_cert_info_dispose(&r->ci);
}

/* Stores a CA key + certificate as key row <keyname> and CA row <role>, with its first CRL. */
static int store_ca(moat_store_t *st, moat_ca_role_t role, EVP_PKEY *key, X509 *cert, bool exportable,
                    const char *base_url, moat_err_t *err)
{
    moat_store_ca_t row = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    int64_t key_id = 0;
    int rc;

    if ((rc = moat_pki_cert_to_der(cert, &der, &der_len, err)) != 0 ||
        (rc = moat_ca_own_key_add(st, role, key, exportable, &key_id, err)) != 0 ||
        (rc = moat_store_cert_install(st, key_id, der, der_len, NULL, 0, NULL, err)) != 0)
        goto out;
    row.role = role;
    row.key_id = key_id;
    row.der.data = der;
    row.der.len = der_len;
    (void)moat_strlcpy(row.base_url, base_url ? base_url : "", sizeof(row.base_url));
    if ((rc = moat_store_ca_set(st, &row, err)) == 0)
        rc = moat_ca_crl_refresh(st, role, cert, key, err);
out:
    moat_free(&der);
    return rc;
}

/* Refuses a CA of <role> that exists already, or a key that holds its key name. */
static int init_refusals(moat_store_t *st, moat_ca_role_t role, moat_err_t *err)
{
    moat_store_ca_t existing = {0};
    moat_store_key_t clash = {0};
    int rc = moat_store_ca_get(st, role, &existing, err);

    if (rc == 0) {
        char t[MOAT_PKI_TIME_SIZE];
        moat_err_set(err, MOAT_E_EXISTS, "this store already has %s CA (created %s)",
                     role == MOAT_CA_INTERMEDIATE ? "an intermediate" : "a root",
                     moat_pki_time_format((time_t)existing.created, t));
        moat_store_ca_dispose(&existing);
        return moat_err_hint(err, "'moat ca cert%s' shows it", role == MOAT_CA_INTERMEDIATE ? "" : " --root");
    }
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    if ((rc = moat_store_key_get(st, moat_ca_key_name(role), MOAT_KEY_CURRENT, &clash, err)) == 0) {
        moat_err_set(err, MOAT_E_EXISTS, "a key named \"%s\" exists; moat's CA keeps its key under that name",
                     clash.name);
        moat_store_key_dispose(&clash);
        return moat_err_hint(err, "rename it: export or delete it, then import it under another name");
    }
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    return 0;
}

int moat_ca_init(moat_store_t *st, const moat_ca_init_req_t *req, moat_ca_init_res_t *res, moat_err_t *err)
{
    const bool inter = req->role == MOAT_CA_INTERMEDIATE;
    moat_ca_t root = {0};
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    res->days = req->days > 0 ? req->days : inter ? MOAT_CA_INTER_DAYS : MOAT_CA_ROOT_DAYS;
    if (req->url != NULL && inter) {
        moat_err_set(err, MOAT_E_USAGE, "--url applies to the whole CA");
        return moat_err_hint(err, "use 'moat ca set-url BASE'");
    }
    if (req->npermit > 0 && !inter)
        return moat_err_set(err, MOAT_E_USAGE, "--permit applies to an intermediate (--intermediate)");
    if (req->url != NULL) {
        moat_pki_urls_t urls;
        if ((rc = moat_pki_urls_from_base(req->url, true, &urls, err)) != 0)
            return rc;
    }
    if ((rc = init_refusals(st, req->role, err)) != 0)
        return rc;
    if (inter && (rc = moat_ca_load(st, MOAT_CA_ROOT, true, &root, err)) != 0)
        return rc;
    if ((rc = moat_pki_key_generate(req->alg, NULL, NULL, &key, err)) != 0)
        goto out;
    if (inter) {
        moat_pki_urls_t rurls;
        moat_pki_intermediate_opts_t io = {req->cn ? req->cn : "moat Intermediate CA", (int)res->days,
                                           req->permit, req->npermit, NULL};
        if ((rc = moat_ca_urls(&root, &rurls, &io.urls, err)) != 0 ||
            (rc = moat_pki_ca_intermediate_new(root.cert, root.key, key, &io, &cert, err)) != 0)
            goto out;
    } else if ((rc = moat_pki_ca_root_new(key, req->cn ? req->cn : "moat Root CA", (int)res->days, &cert,
                                          err)) != 0) {
        goto out;
    }
    if ((rc = moat_pki_cert_info(cert, &res->ci, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = store_ca(st, req->role, key, cert, req->exportable, inter ? root.row.base_url : req->url,
                       err)) != 0 ||
        (rc = moat_ca_audit(st, inter ? "ca.init-intermediate" : "ca.init", res->ci.subject, err,
                            "serial %s, %s, %ld days, key exportable %s", res->ci.serial, res->ci.key_alg,
                            res->days, req->exportable ? "yes" : "no")) != 0 ||
        (rc = moat_ca_commit(st, req->cfg, 0, &res->notes, err)) != 0)
        moat_store_rollback(st);
out:
    if (rc != 0)
        moat_ca_init_res_dispose(res);
    EVP_PKEY_free(key);
    X509_free(cert);
    moat_ca_dispose(&root);
    return rc;
}

int moat_ca_export_root(moat_store_t *st, const moat_ca_export_root_req_t *req, moat_plan_notes_t *notes,
                        moat_err_t *err)
{
    moat_store_key_t k = {0};
    moat_store_ca_t inter = {0};
    moat_ca_t root = {0};
    unsigned char *p12 = NULL;
    size_t p12_len = 0;
    char pw[1024];
    int rc;

    notes->text[0] = '\0';
    pw[0] = '\0';
    if ((rc = moat_ca_load(st, MOAT_CA_ROOT, true, &root, err)) != 0 ||
        (rc = moat_store_key_get_by_id(st, root.row.key_id, &k, err)) != 0)
        goto out;
    if (!k.exportable) {
        rc = moat_err_set(err, MOAT_E_PERM,
                          "the root CA key is not exportable: it was created without --exportable");
        moat_err_hint(err, "it can only stay in this store; a root meant to go offline is made with "
                           "'moat ca init --exportable'");
        goto out;
    }
    if (req->remove_key && (rc = moat_store_ca_get(st, MOAT_CA_INTERMEDIATE, &inter, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            rc = moat_err_set(err, MOAT_E_STATE,
                              "the root key cannot leave: there is no intermediate to issue");
            moat_err_hint(err, "create one first: moat ca init --intermediate");
        }
        goto out;
    }
    if ((rc = req->password(req->password_arg, pw, sizeof(pw), err)) != 0 ||
        (rc = moat_pki_pkcs12_export(root.key, root.cert, NULL, "moat root CA", pw, req->legacy, &p12,
                                     &p12_len, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = moat_ca_audit(st, "ca.export-root", k.name, err, "to %s%s", req->out,
                            req->remove_key ? ", key removed" : "")) != 0) {
        moat_store_rollback(st); /* nothing was written at req->out: a file already there stays */
        goto out;
    }
    if (!req->remove_key) {
        /* What is handed out is on record before it exists. */
        if ((rc = moat_store_commit(st, err)) != 0) {
            moat_store_rollback(st);
            goto out;
        }
        if ((rc = moat_file_write(req->out, p12, p12_len, 0600, err)) != 0)
            moat_err_hint(err,
                          "the export itself is recorded in the store and its audit log; only the file is "
                          "missing: free the space or fix the path and write it again");
        goto out;
    }
    /* The key leaves the store: its only copy is the file, so the file comes first. */
    root.row.key_id = 0;
    if ((rc = moat_file_write(req->out, p12, p12_len, 0600, err)) != 0) {
        moat_store_rollback(st);
        goto out;
    }
    if ((rc = moat_store_ca_set(st, &root.row, err)) != 0 ||
        (rc = moat_store_key_delete(st, k.name, err)) != 0 ||
        (rc = moat_ca_commit(st, req->cfg, 0, notes, err)) != 0) {
        moat_store_rollback(st);
        if (strcmp(req->out, "-") != 0)
            (void)unlink(req->out); /* the export did not happen: the key stays in the store */
    }
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&p12, p12_len);
    moat_store_ca_dispose(&inter);
    moat_store_key_dispose(&k);
    moat_ca_dispose(&root);
    return rc;
}

int moat_ca_key_name_check(moat_store_t *st, const char *name, moat_err_t *err)
{
    moat_store_ca_t row = {0};
    moat_ca_role_t role;
    int rc;

    if (strcmp(name, MOAT_CA_ROOT_KEY) == 0)
        role = MOAT_CA_ROOT;
    else if (strcmp(name, MOAT_CA_INTER_KEY) == 0)
        role = MOAT_CA_INTERMEDIATE;
    else
        return 0;
    if ((rc = moat_store_ca_get(st, MOAT_CA_ROOT, &row, err)) == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0;
    }
    moat_store_ca_dispose(&row);
    if (rc != 0)
        return rc;
    moat_err_set(err, MOAT_E_PERM, "\"%s\" is the name of moat's %s CA key", name,
                 moat_store_ca_role_name(role));
    return moat_err_hint(
        err, "%s",
        role == MOAT_CA_ROOT
            ? "bring an offline root back with: moat ca import-root FILE.p12 --password-file F"
            : "choose another name");
}

/* The key and certificate of a PKCS#12 (or PEM) file that must be moat's root <root>. */
static int root_from_file(const moat_ca_t *root, const moat_ca_import_root_req_t *req, EVP_PKEY **key,
                          moat_err_t *err)
{
    moat_pki_import_t imp = {0};
    int rc, found = 0;

    *key = NULL;
    if ((rc = moat_pki_import(req->data, req->len, req->password ? req->password : "", req->password != NULL,
                              &imp, err)) != 0)
        return moat_err_prefix(err, "reading %s", req->file);
    for (int i = 0; i < sk_X509_num(imp.certs); i++)
        found = found || X509_cmp(sk_X509_value(imp.certs, i), root->cert) == 0;
    if (!found) {
        char subj[256] = "no certificate";
        if (sk_X509_num(imp.certs) > 0)
            moat_x509_name_text(X509_get_subject_name(sk_X509_value(imp.certs, 0)), subj, sizeof(subj));
        rc = moat_err_set(err, MOAT_E_INVAL, "%s holds %s, not the certificate of moat's root CA", req->file,
                          subj);
        moat_err_hint(err, "give the file 'moat ca export-root' wrote; 'moat ca cert --root' shows the root");
        goto out;
    }
    for (size_t i = 0; i < imp.nkeys && *key == NULL; i++)
        if (X509_check_private_key(root->cert, imp.keys[i]) == 1) {
            *key = imp.keys[i];
            imp.keys[i] = NULL;
        }
    if (*key == NULL) {
        rc = moat_err_set(err, MOAT_E_INVAL, "%s holds no private key of moat's root CA", req->file);
        moat_err_hint(err, "give the file 'moat ca export-root' wrote, with its key");
    }
out:
    moat_pki_import_dispose(&imp);
    return rc;
}

/* The key row the root's key goes back into: one a key import put under MOAT_CA_ROOT_KEY when it is the
 * same key, else a new row. */
static int root_key_row(moat_store_t *st, moat_ca_t *root, EVP_PKEY *key, bool *adopted, int64_t *id,
                        moat_err_t *err)
{
    moat_store_key_t k = {0};
    unsigned char *spki = NULL;
    int len, rc = moat_store_key_get(st, MOAT_CA_ROOT_KEY, MOAT_KEY_CURRENT, &k, err);

    *adopted = false;
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        if ((rc = moat_ca_own_key_add(st, MOAT_CA_ROOT, key, true, id, err)) != 0)
            return rc;
        return moat_store_cert_install(st, *id, root->row.der.data, root->row.der.len, NULL, 0, NULL, err);
    }
    if (rc != 0)
        return rc;
    len = i2d_PUBKEY(key, &spki);
    if (len > 0 && (size_t)len == k.pubkey.len && memcmp(spki, k.pubkey.data, k.pubkey.len) == 0) {
        *adopted = true;
        *id = k.id;
        if (k.cert == NULL || k.cert->der.len != root->row.der.len ||
            memcmp(k.cert->der.data, root->row.der.data, k.cert->der.len) != 0)
            rc = moat_store_cert_install(st, k.id, root->row.der.data, root->row.der.len, NULL, 0, NULL, err);
        if (rc == MOAT_E_EXISTS) {
            moat_err_clear(err);
            rc = 0;
        }
        if (rc == 0 && !k.exportable)
            rc = moat_store_key_set_exportable(st, k.id, 1, err);
    } else {
        rc = moat_err_set(err, MOAT_E_EXISTS, "a key named \"%s\" exists that is not the root's key",
                          MOAT_CA_ROOT_KEY);
        moat_err_hint(err, "rename it: export or delete it, then import it under another name");
    }
    OPENSSL_free(spki);
    moat_store_key_dispose(&k);
    return rc;
}

int moat_ca_import_root(moat_store_t *st, const moat_ca_import_root_req_t *req,
                        moat_ca_import_root_res_t *res, moat_err_t *err)
{
    moat_ca_t root = {0};
    EVP_PKEY *key = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = moat_ca_load(st, MOAT_CA_ROOT, false, &root, err)) != 0)
        return rc;
    if (root.row.key_id != 0) {
        rc = moat_err_set(err, MOAT_E_STATE, "the root CA's key is in the store already");
        moat_err_hint(err, "nothing to bring back; 'moat ca export-root --remove-key' takes it offline");
        goto out;
    }
    if ((rc = root_from_file(&root, req, &key, err)) != 0 ||
        (rc = moat_pki_cert_info(root.cert, &res->ci, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = root_key_row(st, &root, key, &res->adopted, &root.row.key_id, err)) != 0 ||
        (rc = moat_store_ca_set(st, &root.row, err)) != 0 ||
        (rc = moat_ca_crl_refresh(st, MOAT_CA_ROOT, root.cert, key, err)) != 0 ||
        (rc = moat_ca_audit(st, "ca.import-root", MOAT_CA_ROOT_KEY, err,
                            "subject %s, root key back online%s, CRL re-signed", res->ci.subject,
                            res->adopted ? " (the key imported earlier)" : "")) != 0 ||
        (rc = moat_ca_commit(st, req->cfg, 0, &res->notes, err)) != 0)
        moat_store_rollback(st);
out:
    if (rc != 0)
        moat_ca_import_root_res_dispose(res);
    EVP_PKEY_free(key);
    moat_ca_dispose(&root);
    return rc;
}

int moat_ca_set_url(moat_store_t *st, const char *base, moat_pki_urls_t *urls, moat_err_t *err)
{
    int rc;

    if ((rc = moat_pki_urls_from_base(base, true, urls, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        return rc;
    rc = moat_store_ca_set_url(st, base, err);
    if (rc == MOAT_E_NOTFOUND)
        moat_ca_none(err);
    if (rc != 0 ||
        (rc = moat_ca_audit(st, "ca.set-url", base, err, "CRL %s, OCSP %s", urls->crl, urls->ocsp)) != 0 ||
        (rc = moat_ca_commit(st, NULL, 0, NULL, err)) != 0)
        moat_store_rollback(st);
    return rc;
}

int moat_ca_policy_set(moat_store_t *st, moat_pki_profile_t prof, const moat_ca_policy_change_t *c,
                       moat_err_t *err)
{
    const char *pname = moat_pki_profile_name(prof);
    char key[64], val[MOAT_CA_POLICY_NAMES_MAX] = "", num[32] = "unchanged";
    int rc;

    if ((rc = moat_ca_join(c->allow, c->nallow, "--allow", val, sizeof(val), err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        return rc;
    if (c->max_days > 0) {
        snprintf(num, sizeof(num), "%ld", c->max_days);
        snprintf(key, sizeof(key), "ca.policy.%s.max_days", pname);
        if ((rc = moat_store_setting_set(st, key, num, err)) != 0)
            goto rollback;
    }
    snprintf(key, sizeof(key), "ca.policy.%s.names", pname);
    if (c->nallow > 0 && (rc = moat_store_setting_set(st, key, val, err)) != 0)
        goto rollback;
    if (c->allow_any) {
        rc = moat_store_setting_delete(st, key, err);
        if (rc != 0 && rc != MOAT_E_NOTFOUND)
            goto rollback;
        moat_err_clear(err);
    }
    if ((rc = moat_ca_audit(st, "ca.policy", pname, err, "max days %s, names %s", num,
                            c->allow_any ? "any"
                            : c->nallow  ? val
                                         : "unchanged")) != 0 ||
        (rc = moat_store_commit(st, err)) != 0)
        goto rollback;
    return 0;
rollback:
    moat_store_rollback(st);
    return rc;
}
