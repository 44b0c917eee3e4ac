/* keymgr: a key and its certificate from a file, as a new key or the new material of one (key import). */
#include "keymgr/km_int.h"

#include <openssl/x509.h>
#include <string.h>

void moat_keymgr_import_res_dispose(moat_keymgr_import_res_t *res)
{
    moat_free(&res->missing);
    memset(res, 0, sizeof(*res));
}

/* The key of <imp>, with the certificate it pairs with (*leaf, borrowed, or NULL) and the chain the rest
 * of the file forms above it. */
static int pair(const moat_keymgr_import_req_t *req, X509 **leaf, moat_store_blob_t **blobs, size_t *nblobs,
                moat_keymgr_import_res_t *res, moat_err_t *err)
{
    const moat_pki_import_t *imp = req->imp;
    STACK_OF(X509) *pile = NULL;
    int i, rc;

    *leaf = NULL;
    if (imp->nkeys == 0) {
        rc = moat_err_set(err, MOAT_E_INVAL, "%s holds no private key (%d certificate%s)", req->file,
                          sk_X509_num(imp->certs), sk_X509_num(imp->certs) == 1 ? "" : "s");
        moat_err_hint(err,
                      "to complete a pending key use 'moat cert install NAME %s'; "
                      "to trust a CA use 'moat trust add'",
                      req->file);
        return rc;
    }
    if (imp->nkeys > 1) {
        rc = moat_err_set(err, MOAT_E_INVAL, "%s holds %zu private keys; a name holds one", req->file,
                          imp->nkeys);
        moat_err_hint(err, "split the file and import each key under its own name");
        return rc;
    }
    /* Pair the key with its certificate; every other certificate is a candidate for the chain. */
    i = moat_pki_find_cert_for_key(imp->keys[0], imp->certs);
    if (i < 0 && sk_X509_num(imp->certs) > 0) {
        rc = moat_err_set(err, MOAT_E_INVAL, "none of the %d certificates in %s matches its private key",
                          sk_X509_num(imp->certs), req->file);
        moat_err_hint(err, "the file mixes a key and unrelated certificates; import the matching pair");
        return rc;
    }
    if (i < 0)
        return 0;
    *leaf = sk_X509_value(imp->certs, i);
    if ((pile = sk_X509_dup(imp->certs)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    (void)sk_X509_delete(pile, i); /* borrowed pointers: the import owns them */
    if ((rc = moat_keymgr_chain_blobs(*leaf, pile, blobs, nblobs, &res->missing, err)) != 0)
        moat_err_prefix(err, "%s", req->file);
    sk_X509_free(pile);
    return rc;
}

/* Refuses what the import must not do to the store: a name in use (without replace), nothing to replace,
 * the key under another name, a key that is not the one of the certificate it would replace. */
static int check_target(moat_store_t *st, const moat_keymgr_import_req_t *req, const moat_store_blob_t *spki,
                        const X509 *leaf, const moat_store_key_t *cur, bool have_cur,
                        const moat_keymgr_import_res_t *res, moat_err_t *err)
{
    moat_store_key_t other = {0};
    int rc;

    if (have_cur && !req->replace) {
        moat_err_set(err, MOAT_E_EXISTS, "a key named \"%s\" already exists", req->name);
        return moat_err_hint(err,
                             "add --replace to replace its material with the file's, or choose another name");
    }
    if (!have_cur && req->replace) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\" to replace", req->name);
        return moat_err_hint(err, "leave out --replace to import it as a new key");
    }
    if ((rc = moat_store_key_find_pubkey(st, spki->data, spki->len, &other, err)) == 0) {
        bool same = have_cur && other.id == cur->id;
        if (!same) {
            rc = moat_err_set(err, MOAT_E_EXISTS, "the key in %s is already in the store as \"%s\"",
                              req->file, other.name);
            moat_err_hint(err, "use that name, or 'moat key import %s %s --replace' to refresh it",
                          other.name, req->file);
        }
        moat_store_key_dispose(&other);
        if (!same)
            return rc;
    } else if (rc != MOAT_E_NOTFOUND) {
        return rc;
    }
    moat_err_clear(err);
    if (have_cur && leaf == NULL && cur->cert != NULL &&
        (cur->pubkey.len != spki->len || memcmp(cur->pubkey.data, spki->data, spki->len) != 0)) {
        char cfp[MOAT_PKI_FINGERPRINT_SIZE] = "";
        EVP_PKEY *ck = NULL;
        moat_err_t e = {0};
        if (moat_pki_pubkey_from_der(cur->pubkey.data, cur->pubkey.len, &ck, &e) != 0 ||
            moat_pki_pubkey_fingerprint(ck, cfp, &e) != 0)
            cfp[0] = '\0';
        EVP_PKEY_free(ck);
        moat_err_set(err, MOAT_E_PKI,
                     "the key in %s (%.23s...) does not match the certificate of \"%s\" (%.23s...)",
                     req->file, res->key_fingerprint, req->name, cfp);
        return moat_err_hint(err,
                             "import a file that holds the key with its certificate, or the original key");
    }
    return 0;
}

int moat_keymgr_key_import(moat_store_t *st, const moat_keymgr_import_req_t *req,
                           moat_keymgr_import_res_t *res, moat_err_t *err)
{
    EVP_PKEY *key;
    X509 *leaf = NULL;
    moat_store_key_t cur = {0};
    moat_store_blob_t spki = {0}, *blobs = NULL;
    unsigned char *pkcs8 = NULL;
    size_t pkcs8_len = 0, nblobs = 0;
    bool have_cur = false;
    int64_t id = 0;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = moat_name_check("key", req->name, err)) != 0 ||
        (rc = pair(req, &leaf, &blobs, &nblobs, res, err)) != 0)
        goto out;
    key = req->imp->keys[0];
    res->leaf = leaf;
    res->nchain = nblobs;
    moat_pki_key_describe(key, res->algorithm, sizeof(res->algorithm));
    if ((rc = moat_pki_key_to_pkcs8(key, &pkcs8, &pkcs8_len, err)) != 0 ||
        (rc = moat_pki_pubkey_to_der(key, &spki.data, &spki.len, err)) != 0 ||
        (rc = moat_pki_pubkey_fingerprint(key, res->key_fingerprint, err)) != 0)
        goto out;
    if ((rc = moat__keymgr_key_find(st, req->name, MOAT_KEY_CURRENT, &cur, &have_cur, err)) != 0)
        goto out;
    res->replaced = have_cur;
    if ((rc = check_target(st, req, &spki, leaf, &cur, have_cur, res, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if (have_cur) {
        rc = moat_store_key_replace(st, cur.id, res->algorithm, spki.data, spki.len, pkcs8, pkcs8_len, err);
        if (rc == 0)
            rc = moat_store_key_set_exportable(st, cur.id, req->exportable, err);
        id = cur.id;
    } else {
        rc = moat_keymgr_key_add(st, req->name, key, res->algorithm, req->exportable, NULL, &id, err);
    }
    if (rc == 0 && leaf != NULL)
        rc = moat_keymgr_import_cert(st, id, leaf, blobs, nblobs, res->load_warning,
                                     sizeof(res->load_warning), err);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    if (rc == 0)
        rc = moat_store_audit_addf(st, have_cur ? "key.replace" : "key.import", req->name, err,
                                   "from %s (%s), algorithm %s, exportable %s, key %s%s", req->file,
                                   req->imp->format, res->algorithm, req->exportable ? "yes" : "no",
                                   res->key_fingerprint, leaf ? ", with certificate" : "");
    rc = moat__keymgr_finish(st, req->cfg, &res->notes, rc, err);
out:
    if (rc != 0)
        moat_free(&res->missing);
    moat_free_secret(&pkcs8, pkcs8_len);
    moat_store_blob_dispose(&spki);
    moat_keymgr_blobs_dispose(&blobs, nblobs);
    moat_store_key_dispose(&cur);
    return rc;
}
