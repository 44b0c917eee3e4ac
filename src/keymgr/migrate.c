/*
 * keymgr: moat import, what a previous server's files bring into the store. The scan and the pairing are
 * import/'s; here each pair found is recognised (already in the store, a newer certificate of a stored
 * key, a newer generation of a certbot lineage) or stored under a free name, in one transaction.
 */
#include "keymgr/km_int.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

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
static int store_pair(moat_store_t *st, const moat_import_pair_t *p, const char *name, bool exportable,
                      char *warning, size_t warnsz, moat_err_t *err)
{
    int64_t key_id = 0;
    int rc;

    if ((rc = moat_keymgr_key_add(st, name, p->key, p->algorithm, exportable, NULL, &key_id, err)) != 0)
        return rc;
    /* Older certificates of the same key first, so that the newest ends up current. */
    for (int i = 0; i < sk_X509_num(p->older) && rc == 0; i++) {
        char ignored[256]; /* history: only the certificate that ends up current must load */
        rc = install_cert(st, key_id, sk_X509_value(p->older, i), p->chain, ignored, sizeof(ignored), err);
    }
    if (rc == 0 && p->cert != NULL)
        rc = install_cert(st, key_id, p->cert, p->chain, warning, warnsz, err);
    if (rc == 0)
        rc = moat_store_audit_addf(st, "key.import", name, err,
                                   "from %s (moat import), algorithm %s, exportable %s, key %s%s",
                                   p->file->path, p->algorithm, exportable ? "yes" : "no", p->fingerprint,
                                   p->cert ? ", with certificate" : "");
    return rc;
}

/* The key in the store with the same public key as <p>: *found says whether there is one. */
static int find_existing(moat_store_t *st, const moat_import_pair_t *p, moat_store_key_t *out, bool *found,
                         moat_err_t *err)
{
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    int rc;
    *found = false;
    if (st == NULL)
        return 0;
    if ((rc = moat_pki_pubkey_to_der(p->key, &spki, &spki_len, err)) != 0)
        return rc;
    rc = moat_store_key_find_pubkey(st, spki, spki_len, out, err);
    moat_free(&spki);
    *found = rc == 0;
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    return 0;
}

/* *found when certificate <cert> is in the history of <name> (a retired key's certificate, say). */
static int in_history(moat_store_t *st, const char *name, X509 *cert, bool *found, moat_err_t *err)
{
    moat_store_cert_list_t list = {0};
    unsigned char *der = NULL;
    char hex[MOAT_STORE_FPR_LEN + 1];
    int rc, len;
    *found = false;
    if (st == NULL || cert == NULL || name[0] == '\0')
        return 0;
    if ((len = i2d_X509(cert, &der)) <= 0)
        return moat_err_ossl(err, MOAT_E_PKI, "encoding a certificate");
    rc = moat_store_fingerprint(der, (size_t)len, hex, err);
    OPENSSL_free(der);
    if (rc != 0 || (rc = moat_store_cert_list(st, name, &list, err)) != 0)
        return rc;
    for (size_t i = 0; i < list.n; i++)
        *found = *found || strcmp(list.items[i].fingerprint, hex) == 0;
    moat_store_cert_list_dispose(&list);
    return 0;
}

/* Whether <name> is taken, in the store or by a pair of this import (<done>). */
static int name_free(moat_store_t *st, const char *name, const moat_keymgr_found_t *done, size_t ndone,
                     bool *is_free, moat_err_t *err)
{
    moat_store_key_t k = {0};
    bool taken = false;
    int rc = 0;
    for (size_t i = 0; i < ndone && !taken; i++)
        taken = strcmp(done[i].name, name) == 0;
    if (!taken && st != NULL)
        rc = moat__keymgr_key_find(st, name, MOAT_KEY_CURRENT, &k, &taken, err);
    moat_store_key_dispose(&k);
    *is_free = !taken;
    return rc;
}

/* The store name of a certbot lineage imported before: the name of any of its keys still in use. */
static int group_store_name(moat_store_t *st, const moat_import_result_t *res, size_t first, char *out,
                            size_t outsz, moat_err_t *err)
{
    out[0] = '\0';
    for (size_t j = first;
         j < res->npairs && res->pairs[j].grouped && strcmp(res->pairs[j].name, res->pairs[first].name) == 0;
         j++) {
        moat_store_key_t have = {0};
        bool found = false;
        int rc = find_existing(st, &res->pairs[j], &have, &found, err);
        if (found)
            (void)moat_strlcpy(out, have.name, outsz);
        moat_store_key_dispose(&have);
        if (rc != 0 || found)
            return rc;
    }
    return 0;
}

/* A new name for pair <p>: its own, else "<name>-2", "-3", ... */
static int free_name(moat_store_t *st, const moat_import_pair_t *p, moat_keymgr_found_t *o,
                     const moat_keymgr_found_t *done, size_t ndone, moat_err_t *err)
{
    bool is_free = false;
    int rc;
    (void)moat_strlcpy(o->name, p->name, sizeof(o->name));
    for (int n = 2; n < 1000; n++) {
        if ((rc = name_free(st, o->name, done, ndone, &is_free, err)) != 0)
            return rc;
        if (is_free)
            break;
        snprintf(o->name, sizeof(o->name), "%.100s-%d", p->name, n);
    }
    return moat_name_check("key", o->name, err);
}

/*
 * Decides (and unless <dry_run> performs, inside the caller's transaction) what happens to every pair. A
 * certbot lineage keeps one store name: its oldest generation is imported first and each newer one is
 * added as a renewal, so the store's history matches certbot's; generations already there (even retired
 * ones) are recognised by their certificates.
 */
static int apply(moat_store_t *st, const moat_import_result_t *res, bool dry_run, bool exportable,
                 moat_keymgr_found_t *out, moat_err_t *err)
{
    const char *group = NULL; /* the lineage being walked */
    char group_name[MOAT_STORE_NAME_MAX] = "";
    int rc;

    for (size_t i = 0; i < res->npairs; i++) {
        const moat_import_pair_t *p = &res->pairs[i];
        moat_store_key_t have = {0};
        moat_keymgr_found_t *o = &out[i];
        bool found;

        if (!p->grouped) {
            group = NULL;
            group_name[0] = '\0';
        } else if (group == NULL || strcmp(group, p->name) != 0) {
            group = p->name;
            if ((rc = group_store_name(st, res, i, group_name, sizeof(group_name), err)) != 0)
                return rc;
        }
        if ((rc = find_existing(st, p, &have, &found, err)) == 0 && found) {
            /* Already imported: at most its newer certificate is missing. */
            (void)moat_strlcpy(o->name, have.name, sizeof(o->name));
            o->action = MOAT_KEYMGR_FOUND_EXISTS;
            if (p->cert != NULL && (have.cert == NULL || have.cert->not_after < (int64_t)p->not_after)) {
                o->action = MOAT_KEYMGR_FOUND_CERT_ADDED;
                if (!dry_run)
                    rc = install_cert(st, have.id, p->cert, p->chain, o->warning, sizeof(o->warning), err);
            }
        }
        moat_store_key_dispose(&have);
        if (rc != 0)
            return rc;
        if (found)
            continue;
        /* A retired generation: its key is no longer found by public key, its certificate is in history. */
        if ((rc = in_history(st, group_name[0] ? group_name : p->name, p->cert, &found, err)) != 0)
            return rc;
        if (found) {
            (void)moat_strlcpy(o->name, group_name[0] ? group_name : p->name, sizeof(o->name));
            o->action = MOAT_KEYMGR_FOUND_EXISTS;
            continue;
        }
        if (group != NULL && group_name[0] != '\0') {
            (void)moat_strlcpy(o->name, group_name, sizeof(o->name));
            o->action = MOAT_KEYMGR_FOUND_RENEWAL;
        } else {
            o->action = MOAT_KEYMGR_FOUND_IMPORT;
            if ((rc = free_name(st, p, o, out, i, err)) != 0)
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

int moat_keymgr_import_found(moat_store_t *st, const moat_import_result_t *res, bool dry_run, bool exportable,
                             const moat_config_t *cfg, moat_keymgr_found_t *out, moat_plan_notes_t *notes,
                             moat_err_t *err)
{
    bool changed = false;
    int rc;

    if (dry_run || st == NULL)
        return apply(st, res, true, exportable, out, err);
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    rc = apply(st, res, false, exportable, out, err);
    for (size_t i = 0; i < res->npairs; i++)
        changed = changed || out[i].action != MOAT_KEYMGR_FOUND_EXISTS;
    if (rc == 0 && changed)
        rc = moat_store_generation_bump(st, err);
    return moat__keymgr_finish(st, cfg, notes, rc, err);
}
