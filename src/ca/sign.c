/*
 * ca: what moat ca sign and moat ca issue do, for every front end: a request signed by the issuing CA
 * (recorded, audited), or a new key with its certificate and chain stored in one checked transaction.
 */
#include "ca/ca.h"

#include <openssl/x509.h>
#include <string.h>

void moat_ca_signed_dispose(moat_ca_signed_t *s)
{
    X509_free(s->cert);
    sk_X509_pop_free(s->chain, X509_free);
    moat_pki_cert_info_dispose(&s->ci);
    memset(s, 0, sizeof(*s));
}

/* Loads the issuing CA with its key, and the chain clients need above its certificates into out->chain. */
static int issuing(moat_store_t *st, moat_ca_t *ca, moat_ca_signed_t *out, moat_err_t *err)
{
    int rc;

    if ((rc = moat_ca_load_issuing(st, true, ca, err)) != 0)
        return rc;
    out->issuing = ca->row.role;
    if ((out->chain = sk_X509_new_null()) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    /* The intermediate goes after the leaf: installing the file (or serving it) needs it. */
    if (ca->row.role == MOAT_CA_INTERMEDIATE) {
        if (X509_up_ref(ca->cert) != 1)
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        if (!sk_X509_push(out->chain, ca->cert)) {
            X509_free(ca->cert);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    return 0;
}

int moat_ca_sign(moat_store_t *st, X509_REQ *csr, const moat_ca_issue_req_t *req, const char *source,
                 moat_ca_signed_t *out, moat_err_t *err)
{
    moat_ca_t ca = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = issuing(st, &ca, out, err)) != 0 || (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = moat_ca_issue(st, &ca, csr, req, &out->cert, err)) != 0)
        moat_err_prefix(err, "%s", source);
    else if ((rc = moat_pki_cert_info(out->cert, &out->ci, err)) == 0 &&
             (rc = moat_ca_audit(st, "ca.sign", out->ci.serial, err,
                                 "subject %s, profile %s, names %s, until %lld, from %s", out->ci.subject,
                                 moat_pki_profile_name(req->profile), out->ci.sans,
                                 (long long)out->ci.not_after, source)) == 0)
        rc = moat_store_commit(st, err);
    if (rc != 0)
        moat_store_rollback(st);
out:
    if (rc != 0)
        moat_ca_signed_dispose(out);
    moat_ca_dispose(&ca);
    return rc;
}

int moat_ca_issue_key(moat_store_t *st, const moat_ca_issue_key_req_t *r, moat_ca_signed_t *out,
                      moat_err_t *err)
{
    moat_ca_issue_req_t ir = r->issue;
    moat_store_key_t old = {0};
    moat_ca_t ca = {0};
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int64_t key_id = 0;
    moat_store_blob_t chain = {0};
    size_t nchain;
    char sans[8192];
    int rc;

    memset(out, 0, sizeof(*out));
    out->exportable = r->exportable < 0 ? ir.profile == MOAT_PKI_PROFILE_CLIENT : r->exportable != 0;
    ir.name = r->name;
    if ((rc = moat_store_key_get(st, r->name, MOAT_KEY_CURRENT, &old, err)) == 0) {
        moat_store_key_dispose(&old);
        moat_err_set(err, MOAT_E_EXISTS, "a key named \"%s\" already exists", r->name);
        return moat_err_hint(
            err, "choose another name, or renew it with 'moat key renew %s' and 'moat ca sign'", r->name);
    }
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    if ((rc = moat_ca_join(r->sans, r->nsans, "--san", sans, sizeof(sans), err)) != 0 ||
        (rc = moat_ca_key_name_check(st, r->name, err)) != 0 || (rc = issuing(st, &ca, out, err)) != 0 ||
        (rc = moat_pki_key_generate(r->alg, NULL, NULL, &key, err)) != 0 ||
        (rc = moat_pki_csr_new(key, &r->subject, sans[0] ? sans : NULL, &csr, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    nchain = moat_ca_chain(&ca, &chain); /* borrowed from ca.row */
    if ((rc = moat_ca_issue(st, &ca, csr, &ir, &out->cert, err)) != 0 ||
        (rc = moat_ca_key_add(st, r->name, key, moat_pki_alg_name(r->alg), out->exportable, NULL, &key_id,
                              err)) != 0 ||
        (rc = moat_pki_cert_info(out->cert, &out->ci, err)) != 0 ||
        (rc = moat_pki_cert_to_der(out->cert, &der, &der_len, err)) != 0 ||
        (rc = moat_store_cert_install(st, key_id, der, der_len, nchain ? &chain : NULL, nchain, NULL, err)) !=
            0 ||
        (rc = moat_ca_audit(st, "ca.issue", out->ci.serial, err,
                            "key %s, subject %s, profile %s, names %s, exportable %s", r->name,
                            out->ci.subject, moat_pki_profile_name(ir.profile), out->ci.sans,
                            out->exportable ? "yes" : "no")) != 0 ||
        (rc = moat_ca_commit(st, r->cfg, 0, &out->notes, err)) != 0)
        moat_store_rollback(st);
out:
    if (rc != 0)
        moat_ca_signed_dispose(out);
    moat_free(&der);
    EVP_PKEY_free(key);
    X509_REQ_free(csr);
    moat_ca_dispose(&ca);
    return rc;
}

int moat_ca_client_key(moat_store_t *st, const char *name, moat_store_key_t *k, moat_err_t *err)
{
    moat_store_issued_t is = {0};
    int rc;

    if (moat_store_key_get(st, name, MOAT_KEY_CURRENT, k, err) != 0 ||
        moat_store_issued_get(st, name, &is, err) != 0 || strcmp(is.name, name) != 0) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "moat's CA has issued no certificate named \"%s\"", name);
        moat_err_hint(err,
                      "issue one with 'moat ca issue %s --cn CN --profile client'; 'moat ca list' shows them",
                      name);
    } else if (strcmp(is.profile, "client") != 0) {
        rc = moat_err_set(err, MOAT_E_STATE, "\"%s\" is a %s certificate, not a client certificate", name,
                          is.profile);
        moat_err_hint(err, "a server key is exported with 'moat key export %s' (if exportable)", name);
    } else if (is.revoked != 0) {
        rc = moat_err_set(err, MOAT_E_STATE, "the certificate of \"%s\" (serial %s) is revoked", name,
                          is.serial);
        moat_err_hint(err, "issue a new one under another name");
    } else {
        rc = 0;
    }
    if (rc != 0)
        moat_store_key_dispose(k);
    moat_store_issued_dispose(&is);
    return rc;
}
