/* keymgr: new keys and their requests, for a new name (key new) or a renewal (key renew). */
#include "keymgr/km_int.h"

#include <openssl/x509.h>
#include <string.h>

void moat_keymgr_new_res_dispose(moat_keymgr_new_res_t *res)
{
    moat_free(&res->csr_pem);
    memset(res, 0, sizeof(*res));
}

/* Copies a subject field out of <name> into <buf>; NULL when absent. */
static const char *name_field(const X509_NAME *name, int nid, char *buf, int size)
{
    if (name == NULL || X509_NAME_get_text_by_NID(name, nid, buf, size) <= 0)
        return NULL;
    return buf;
}

/* The subject fields of a renewal, copied out of the certificate or request being renewed. */
typedef struct subject_buf {
    char cn[256], o[256], ou[256], l[256], s[256], c[8], email[256];
} subject_buf_t;

static moat_pki_subject_t subject_of(const X509_NAME *n, subject_buf_t *b)
{
    moat_pki_subject_t sj = {
        name_field(n, NID_commonName, b->cn, sizeof(b->cn)),
        name_field(n, NID_organizationName, b->o, sizeof(b->o)),
        name_field(n, NID_organizationalUnitName, b->ou, sizeof(b->ou)),
        name_field(n, NID_localityName, b->l, sizeof(b->l)),
        name_field(n, NID_stateOrProvinceName, b->s, sizeof(b->s)),
        name_field(n, NID_countryName, b->c, sizeof(b->c)),
        name_field(n, NID_pkcs9_emailAddress, b->email, sizeof(b->email)),
    };
    return sj;
}

/* Generates the key (telling req->on_progress), builds the request and stores both as pending <name>,
 * setting the pending key <replace_id> aside (its certificate can still be installed), audited as <action>,
 * in one transaction. */
static int make_and_store(moat_store_t *st, const moat_keymgr_new_req_t *req, moat_pki_alg_t alg,
                          const moat_pki_subject_t *subj, const char *sans, bool exportable,
                          int64_t replace_id, const char *action, moat_keymgr_new_res_t *res, moat_err_t *err)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    moat_store_blob_t der = {0};
    int rc;

    if (req->on_accepted != NULL && (rc = req->on_accepted(req->progress_arg, err)) != 0)
        return rc;
    (void)moat_strlcpy(res->algorithm, moat_pki_alg_name(alg), sizeof(res->algorithm));
    res->exportable = exportable;
    if (req->on_progress != NULL)
        (void)req->on_progress(req->progress_arg, MOAT_KEYMGR_GEN_START);
    rc = moat_pki_key_generate(alg, req->on_progress, req->progress_arg, &key, err);
    if (req->on_progress != NULL)
        (void)req->on_progress(req->progress_arg, rc == 0 ? MOAT_KEYMGR_GEN_DONE : MOAT_KEYMGR_GEN_FAILED);
    if (rc != 0)
        return rc;
    moat_pki_key_describe(key, res->key_algorithm, sizeof(res->key_algorithm));
    if ((rc = moat_pki_csr_new(key, subj, sans != NULL && sans[0] != '\0' ? sans : NULL, &csr, err)) != 0 ||
        (rc = moat_pki_csr_to_der(csr, &der.data, &der.len, err)) != 0 ||
        (rc = moat_pki_csr_to_pem(csr, &res->csr_pem, &res->csr_pem_len, err)) != 0 ||
        (rc = moat_pki_pubkey_fingerprint(key, res->key_fingerprint, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if (replace_id != 0)
        rc = moat_store_key_set_aside(st, replace_id, err);
    if (rc == 0)
        rc = moat_keymgr_key_add(st, req->name, key, res->algorithm, exportable, &der, NULL, err);
    if (rc == 0)
        rc = moat_store_audit_addf(st, action, req->name, err, "algorithm %s, exportable %s, key %s",
                                   res->algorithm, exportable ? "yes" : "no", res->key_fingerprint);
    rc = moat__keymgr_finish(st, req->cfg, &res->notes, rc, err);
out:
    if (rc != 0)
        moat_free(&res->csr_pem);
    moat_store_blob_dispose(&der);
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    return rc;
}

int moat_keymgr_key_new(moat_store_t *st, const moat_keymgr_new_req_t *req, moat_keymgr_new_res_t *res,
                        moat_err_t *err)
{
    moat_store_key_t old = {0};
    bool found;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = moat_name_check("key", req->name, err)) != 0)
        return rc;
    if ((rc = moat__keymgr_key_find(st, req->name, MOAT_KEY_CURRENT, &old, &found, err)) != 0)
        return rc;
    if (found) {
        rc = moat_err_set(err, MOAT_E_EXISTS, "a key named \"%s\" already exists (%s)", req->name,
                          moat_store_key_state_name(old.state));
        moat_err_hint(err,
                      "to replace its key and certificate use 'moat key renew %s'; or choose another name",
                      req->name);
        moat_store_key_dispose(&old);
        return rc;
    }
    return make_and_store(st, req, req->alg, req->subject, req->sans, req->exportable, 0, "key.new", res,
                          err);
}

int moat_keymgr_key_renew(moat_store_t *st, const moat_keymgr_new_req_t *req, moat_keymgr_new_res_t *res,
                          moat_err_t *err)
{
    moat_store_key_t active = {0}, pending = {0};
    bool have_active = false, have_pending = false;
    const moat_store_key_t *base;
    X509 *cert = NULL;
    X509_REQ *csr = NULL;
    const X509_NAME *subj = NULL;
    char *sans = NULL;
    subject_buf_t buf;
    moat_pki_subject_t sj;
    moat_pki_alg_t alg = req->alg;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = moat__keymgr_key_find(st, req->name, MOAT_KEY_WANT_ACTIVE, &active, &have_active, err)) != 0 ||
        (rc = moat__keymgr_key_find(st, req->name, MOAT_KEY_WANT_PENDING, &pending, &have_pending, err)) != 0)
        goto out;
    if (!have_active && !have_pending) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\" to renew", req->name);
        moat_err_hint(err, "'moat key list' shows the keys; 'moat key new %s --cn CN' makes a new one",
                      req->name);
        goto out;
    }
    /* The names to renew come from the serving certificate, else from the waiting request. */
    base = have_active ? &active : &pending;
    if (have_active && active.cert != NULL) {
        moat_pki_cert_info_t ci = {0};
        if ((rc = moat_pki_cert_parse(active.cert->der.data, active.cert->der.len, &cert, err)) != 0 ||
            (rc = moat_pki_cert_info(cert, &ci, err)) != 0)
            goto out;
        sans = moat_strdup(ci.sans);
        moat_pki_cert_info_dispose(&ci);
        subj = X509_get_subject_name(cert);
    } else if (base->csr.len > 0) {
        moat_pki_csr_info_t ri = {0};
        if ((rc = moat_pki_csr_parse(base->csr.data, base->csr.len, &csr, err)) != 0 ||
            (rc = moat_pki_csr_info(csr, &ri, err)) != 0)
            goto out;
        sans = moat_strdup(ri.sans);
        moat_pki_csr_info_dispose(&ri);
        subj = X509_REQ_get_subject_name(csr);
    } else {
        rc = moat_err_set(err, MOAT_E_STATE,
                          "key \"%s\" has neither a certificate nor a request to renew from", req->name);
        moat_err_hint(err, "delete it and make a new one: moat key delete %s; moat key new %s --cn CN",
                      req->name, req->name);
        goto out;
    }
    if (!req->alg_given && moat_pki_alg_parse(base->algorithm, &alg, err) != 0) {
        rc = moat_err_set(err, MOAT_E_INVAL, "key \"%s\" is %s, which moat does not generate", req->name,
                          base->algorithm);
        moat_err_hint(err, "choose the new key's algorithm with --alg (ec-p256 is a good default)");
        goto out;
    }
    sj = subject_of(subj, &buf);
    if (req->cn != NULL)
        sj.cn = req->cn;
    if ((req->sans != NULL && req->sans[0] != '\0') || req->cn != NULL) {
        /* New names replace the old ones; a new CN alone is the only name (as 'key new' does). */
        moat_free(&sans);
        sans = moat_strdup(req->sans != NULL ? req->sans : "");
    }
    if (sans == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    if (sj.cn == NULL) {
        rc = moat_err_set(err, MOAT_E_INVAL, "the certificate of \"%s\" has no common name to renew",
                          req->name);
        moat_err_hint(err, "make a new key instead: moat key new NAME --cn CN");
        goto out;
    }
    res->renewal = have_active;
    res->kept_earlier = have_pending;
    /* An exportable key stays exportable: the renewal replaces it for the same uses. */
    rc = make_and_store(st, req, alg, &sj, sans, base->exportable || req->exportable,
                        have_pending ? pending.id : 0, "key.renew", res, err);
out:
    moat_free(&sans);
    X509_free(cert);
    X509_REQ_free(csr);
    moat_store_key_dispose(&active);
    moat_store_key_dispose(&pending);
    return rc;
}
