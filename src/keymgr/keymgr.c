/* keymgr: the key manager's rules, shared by every front end that stores keys and certificates. */
#include "keymgr/km_int.h"
#include "ca/ca.h"
#include "tls/tls.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int moat_keymgr_cert_load(const moat_store_cert_t *c, X509 **cert, STACK_OF(X509) * *chain, moat_err_t *err)
{
    int rc;
    *cert = NULL;
    *chain = NULL;
    if ((rc = moat_pki_cert_parse(c->der.data, c->der.len, cert, err)) != 0)
        return rc;
    if ((*chain = sk_X509_new_null()) == NULL)
        goto nomem;
    for (size_t i = 0; i < c->chain_n; i++) {
        X509 *x = NULL;
        if ((rc = moat_pki_cert_parse(c->chain[i].data, c->chain[i].len, &x, err)) != 0)
            goto fail;
        if (!sk_X509_push(*chain, x)) {
            X509_free(x);
            goto nomem;
        }
    }
    return 0;
nomem:
    rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory loading a certificate chain");
fail:
    X509_free(*cert);
    sk_X509_pop_free(*chain, X509_free);
    *cert = NULL;
    *chain = NULL;
    return rc;
}

int moat_keymgr_private_key(moat_store_t *st, int64_t id, EVP_PKEY **out, moat_err_t *err)
{
    uint8_t *der = NULL;
    size_t len = 0;
    int rc;
    if ((rc = moat_store_key_private(st, id, &der, &len, err)) != 0)
        return rc;
    rc = moat_pki_key_from_pkcs8(der, len, out, err);
    moat_free_secret(&der, len);
    return rc;
}

int moat_keymgr_check_loadable(moat_store_t *st, int64_t key_id, const uint8_t *der, size_t der_len,
                               const moat_store_blob_t *chain, size_t nchain, moat_err_t *err)
{
    uint8_t *key = NULL;
    size_t key_len = 0;
    const unsigned char **cd = NULL;
    size_t *cl = NULL;
    moat_tls_lib_t *lib = NULL;
    SSL_CTX *ctx = NULL;
    moat_tls_cert_src_t src = {0};
    int rc;

    if ((rc = moat_store_key_private(st, key_id, &key, &key_len, err)) != 0)
        return rc;
    if (nchain > 0 && ((cd = moat_calloc(nchain, sizeof(*cd))) == NULL ||
                       (cl = moat_calloc(nchain, sizeof(*cl))) == NULL)) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nchain; i++) {
        cd[i] = chain[i].data;
        cl[i] = chain[i].len;
    }
    src.cert_der = der;
    src.cert_len = der_len;
    src.key_der = key;
    src.key_len = key_len;
    src.chain_der = cd;
    src.chain_len = cl;
    src.nchain = nchain;
    if ((lib = moat_tls_lib_new(err)) == NULL) {
        rc = err->code ? err->code : moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    if ((ctx = moat_tls_ctx_new(lib, &src, 1, "moat-check", err)) == NULL) {
        if (err->code == 0)
            moat_err_set(err, MOAT_E_PKI, "the TLS context could not be built");
        moat_err_prefix(err, "the server would refuse this certificate");
        rc = err->code;
        goto out;
    }
    rc = 0;
out:
    SSL_CTX_free(ctx);
    moat_tls_lib_free(lib);
    moat_free(&cd);
    moat_free(&cl);
    moat_free_secret(&key, key_len);
    return rc;
}

void moat_keymgr_blobs_dispose(moat_store_blob_t **blobs, size_t n)
{
    for (size_t i = 0; *blobs != NULL && i < n; i++)
        moat_store_blob_dispose(&(*blobs)[i]);
    moat_free(blobs);
}

int moat_keymgr_chain_blobs(X509 *leaf, STACK_OF(X509) * pile, moat_store_blob_t **blobs, size_t *n,
                            char **missing, moat_err_t *err)
{
    STACK_OF(X509) *chain = NULL;
    int rc;
    size_t total;

    *blobs = NULL;
    *n = 0;
    if ((rc = moat_pki_chain_build(leaf, pile, &chain, missing, err)) != 0)
        return rc;
    total = (size_t)sk_X509_num(chain);
    if (total > 0 && (*blobs = moat_calloc(total, sizeof(**blobs))) == NULL) {
        sk_X509_pop_free(chain, X509_free);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < total; i++) {
        X509 *x = sk_X509_value(chain, (int)i);
        /* A self-signed top is the root: clients must have it already, so servers never send it. */
        if (X509_check_issued(x, x) == X509_V_OK && X509_self_signed(x, 1) == 1)
            break;
        if ((rc = moat_pki_cert_to_der(x, &(*blobs)[i].data, &(*blobs)[i].len, err)) != 0) {
            moat_keymgr_blobs_dispose(blobs, *n);
            *n = 0;
            sk_X509_pop_free(chain, X509_free);
            return rc;
        }
        (*n)++;
    }
    sk_X509_pop_free(chain, X509_free);
    return 0;
}

int moat_keymgr_import_cert(moat_store_t *st, int64_t key_id, X509 *leaf, const moat_store_blob_t *chain,
                            size_t nchain, char *warning, size_t warnsz, moat_err_t *err)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    moat_err_t lerr = {0};
    int rc;

    warning[0] = '\0';
    if ((rc = moat_pki_cert_to_der(leaf, &der, &der_len, err)) != 0)
        return rc;
    rc = moat_store_cert_install(st, key_id, der, der_len, chain, nchain, NULL, err);
    if (rc == MOAT_E_EXISTS) {
        moat_err_clear(err); /* already there (--replace, or a second import): nothing to do twice */
        rc = 0;
    }
    if (rc == 0 && moat_keymgr_check_loadable(st, key_id, der, der_len, chain, nchain, &lerr) != 0) {
        if (lerr.code == MOAT_E_PKI)
            (void)moat_strlcpy(warning, lerr.msg, warnsz); /* a cut warning still says why */
        else {
            *err = lerr;
            rc = lerr.code;
        }
    }
    moat_free(&der);
    return rc;
}

int moat_keymgr_pile_add_ca(moat_store_t *st, X509 *leaf, STACK_OF(X509) * pile, moat_err_t *err)
{
    moat_store_ca_t row = {0};
    X509 *x = NULL;
    int rc = moat_store_ca_get(st, MOAT_CA_INTERMEDIATE, &row, err);

    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0; /* a leaf of the root needs nothing: servers never send the root */
    }
    if (rc == 0)
        rc = moat_pki_cert_parse(row.der.data, row.der.len, &x, err);
    moat_store_ca_dispose(&row);
    if (rc != 0)
        return rc;
    if (X509_check_issued(x, leaf) != X509_V_OK) {
        X509_free(x);
        return 0;
    }
    for (int i = 0; i < sk_X509_num(pile); i++)
        if (X509_cmp(sk_X509_value(pile, i), x) == 0) {
            X509_free(x);
            return 0;
        }
    if (!sk_X509_push(pile, x)) {
        X509_free(x);
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    }
    return 0;
}

void moat_keymgr_install_res_dispose(moat_keymgr_install_res_t *res)
{
    moat_pki_cert_info_dispose(&res->ci);
    moat_free(&res->missing);
    memset(res, 0, sizeof(*res));
}

/* Index in <certs> of the certificate whose public key is <spki>, or -1. */
static int find_for_spki(const moat_store_blob_t *spki, STACK_OF(X509) * certs)
{
    EVP_PKEY *k = NULL;
    moat_err_t e = {0};
    int i;
    if (spki->len == 0 || moat_pki_pubkey_from_der(spki->data, spki->len, &k, &e) != 0)
        return -1;
    i = moat_pki_find_cert_for_key(k, certs);
    EVP_PKEY_free(k);
    return i;
}

/* Parses the certificates of <data> (<source> names it in errors) and appends them to *pile. */
static int parse_certs(const char *source, const unsigned char *data, size_t len, STACK_OF(X509) * *pile,
                       moat_err_t *err)
{
    STACK_OF(X509) *got = NULL;
    if (moat_pki_certs_parse(data, len, &got, err) != 0)
        return moat_err_prefix(err, "reading %s", source);
    if (*pile == NULL) {
        *pile = got;
        return 0;
    }
    while (sk_X509_num(got) > 0) {
        X509 *x = sk_X509_shift(got);
        if (!sk_X509_push(*pile, x)) {
            X509_free(x);
            sk_X509_pop_free(got, X509_free);
            return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    sk_X509_free(got);
    return 0;
}

/* The error for a certificate file that holds no certificate of <key> (pending or current). */
static int no_match(moat_store_t *st, const moat_keymgr_install_req_t *req, STACK_OF(X509) * certs,
                    const moat_store_key_t *key, bool pending, moat_err_t *err)
{
    char kfp[MOAT_PKI_FINGERPRINT_SIZE] = "?", cfp[MOAT_PKI_FINGERPRINT_SIZE] = "?";
    moat_err_t e = {0};
    X509 *first = sk_X509_value(certs, 0);
    EVP_PKEY *pk = first ? X509_get0_pubkey(first) : NULL, *kk = NULL;
    moat_store_key_t other = {0};
    unsigned char *spki = NULL;
    size_t spki_len = 0;

    if (key->pubkey.len > 0 && moat_pki_pubkey_from_der(key->pubkey.data, key->pubkey.len, &kk, &e) == 0 &&
        moat_pki_pubkey_fingerprint(kk, kfp, &e) != 0)
        (void)moat_strlcpy(kfp, "?", sizeof(kfp));
    EVP_PKEY_free(kk);
    if (pk != NULL && moat_pki_pubkey_fingerprint(pk, cfp, &e) != 0)
        (void)moat_strlcpy(cfp, "?", sizeof(cfp));
    moat_err_set(err, MOAT_E_PKI, "%s does not match key \"%s\": certificate key %.23s..., %s key %.23s...",
                 req->source, req->name, cfp, pending ? "pending" : "current", kfp);
    if (pk != NULL && moat_pki_pubkey_to_der(pk, &spki, &spki_len, &e) == 0 &&
        moat_store_key_find_pubkey(st, spki, spki_len, &other, &e) == 0)
        moat_err_hint(err, "it is the certificate of key \"%s\": moat cert install %s %s", other.name,
                      other.name, req->source);
    else
        moat_err_hint(err, "install the certificate that was issued for the request of \"%s\"", req->name);
    moat_free(&spki);
    moat_store_key_dispose(&other);
    return err->code;
}

/* The request of <name> a renewal set aside whose key certifies one of <certs>: *li its index, else -1. */
static int find_set_aside(moat_store_t *st, const char *name, STACK_OF(X509) * certs, moat_store_key_t *out,
                          int *li, moat_err_t *err)
{
    *li = -1;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        unsigned char *spki = NULL;
        size_t spki_len = 0;
        int rc;
        if ((rc = moat_pki_pubkey_to_der(X509_get0_pubkey(sk_X509_value(certs, i)), &spki, &spki_len, err)) !=
            0)
            return rc;
        rc = moat_store_key_find_set_aside(st, name, spki, spki_len, out, err);
        moat_free(&spki);
        if (rc == 0) {
            *li = i;
            return 0;
        }
        if (rc != MOAT_E_NOTFOUND)
            return rc;
        moat_err_clear(err);
    }
    return 0;
}

/* The stored certificate of <name> with fingerprint <fpr>: its row id and how long its chain is, or 0. */
static int find_installed(moat_store_t *st, const char *name, const char *fpr, int64_t *id, size_t *nchain,
                          moat_err_t *err)
{
    moat_store_cert_list_t l = {0};
    int rc;
    *id = 0;
    if ((rc = moat_store_cert_list(st, name, &l, err)) != 0)
        return rc;
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.items[i].fingerprint, fpr) == 0) {
            *id = l.items[i].id;
            *nchain = l.items[i].chain_n;
            break;
        }
    moat_store_cert_list_dispose(&l);
    return 0;
}

int moat_keymgr_install(moat_store_t *st, const moat_keymgr_install_req_t *req,
                        moat_keymgr_install_res_t *res, moat_err_t *err)
{
    moat_store_key_t pend = {0}, act = {0}, aside = {0};
    bool have_pend = false, have_act = false;
    const moat_store_key_t *target = NULL;
    STACK_OF(X509) *certs = NULL, *pile = NULL;
    moat_store_blob_t *blobs = NULL;
    size_t nblobs = 0, had_chain = 0;
    unsigned char *der = NULL;
    size_t der_len = 0;
    char fpr[MOAT_STORE_FPR_LEN + 1], detail[1024];
    int64_t existing = 0;
    X509 *leaf;
    int rc, li = -1;

    memset(res, 0, sizeof(*res));
    if ((rc = moat_store_key_get(st, req->name, MOAT_KEY_WANT_PENDING, &pend, err)) == 0)
        have_pend = true;
    else if (rc != MOAT_E_NOTFOUND)
        goto out;
    moat_err_clear(err);
    if ((rc = moat_store_key_get(st, req->name, MOAT_KEY_WANT_ACTIVE, &act, err)) == 0)
        have_act = true;
    else if (rc != MOAT_E_NOTFOUND)
        goto out;
    moat_err_clear(err);
    if (!have_pend && !have_act) {
        rc =
            moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\" to install a certificate for", req->name);
        moat_err_hint(err,
                      "make the key and its request first (moat key new %s --cn CN), or import key and "
                      "certificate together (moat key import %s FILE)",
                      req->name, req->name);
        goto out;
    }
    if ((rc = parse_certs(req->source, req->cert_data, req->cert_len, &certs, err)) != 0 ||
        (req->chain_data != NULL && (rc = parse_certs(req->chain_source ? req->chain_source : "the chain",
                                                      req->chain_data, req->chain_len, &pile, err)) != 0))
        goto out;
    if (pile == NULL && (pile = sk_X509_new_null()) == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    /* The certificate for the waiting key first, else a re-issued certificate for the current key. */
    if (have_pend && (li = find_for_spki(&pend.pubkey, certs)) >= 0) {
        target = &pend;
        res->renewal = have_act;
    } else if (have_act && (li = find_for_spki(&act.pubkey, certs)) >= 0) {
        target = &act;
    } else if ((rc = find_set_aside(st, req->name, certs, &aside, &li, err)) != 0) {
        goto out;
    } else if (li >= 0) {
        target = &aside; /* the certificate of an earlier request that a renewal set aside */
        res->renewal = have_act;
    } else {
        rc = no_match(st, req, certs, have_pend ? &pend : &act, have_pend, err);
        goto out;
    }
    leaf = sk_X509_value(certs, li);
    if ((rc = moat_pki_cert_info(leaf, &res->ci, err)) != 0)
        goto out;
    if (!req->force && (rc = moat_pki_cert_check_time(leaf, time(NULL), err)) != 0) {
        moat_err_hint(err, "check the certificate you were sent; --force installs it anyway");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (x == leaf)
            continue;
        if (X509_up_ref(x) != 1 || !sk_X509_push(pile, x)) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
    }
    /* moat's own CA last: a chain the caller sent wins, and an intermediate moat has is never dropped. */
    if ((rc = moat_keymgr_pile_add_ca(st, leaf, pile, err)) != 0)
        goto out;
    if (req->fetch_issuers && (rc = moat_keymgr_fetch_issuers(leaf, pile, &res->fetched, err)) != 0)
        goto out;
    if ((rc = moat_keymgr_chain_blobs(leaf, pile, &blobs, &nblobs, &res->missing, err)) != 0) {
        moat_err_prefix(err, "the chain of %s", req->source);
        goto out;
    }
    if ((rc = moat_pki_cert_to_der(leaf, &der, &der_len, err)) != 0 ||
        (rc = moat_store_fingerprint(der, der_len, fpr, err)) != 0 ||
        (rc = find_installed(st, req->name, fpr, &existing, &had_chain, err)) != 0)
        goto out;
    if (existing != 0 && nblobs <= had_chain) {
        rc = moat_err_set(err, MOAT_E_EXISTS, "this certificate is already installed for \"%s\"%s", req->name,
                          had_chain > 0 ? " with its chain" : "");
        moat_err_hint(err,
                      "'moat cert history %s' lists the certificates; to complete its chain, give the "
                      "intermediates with --chain",
                      req->name);
        goto out;
    }
    /* Check before commit: the server must be able to load what is installed. */
    if ((rc = moat_keymgr_check_loadable(st, target->id, der, der_len, blobs, nblobs, err)) != 0)
        goto out;
    snprintf(detail, sizeof(detail), "serial %s, subject %s, issuer %s, fingerprint %s%s%s%s%s",
             res->ci.serial, res->ci.subject, res->ci.issuer, res->ci.fingerprint,
             req->force ? ", forced" : "", existing ? ", chain completed" : "",
             res->fetched.n ? ", intermediate fetched from " : "", res->fetched.n ? res->fetched.url : "");
    if ((rc = moat_store_begin(st, err)) != 0)
        goto out;
    if (existing != 0)
        rc = moat_store_cert_chain_set(st, existing, blobs, nblobs, err);
    else if (target != &aside || (rc = moat_store_key_restore_pending(st, aside.id, err)) == 0)
        rc = moat_store_cert_install(st, target->id, der, der_len, blobs, nblobs, NULL, err);
    if (rc == 0)
        rc = moat_store_audit_add(st, existing ? "cert.chain" : "cert.install", req->name, detail, err);
    if (rc == 0 && !req->force)
        rc = moat_plan_check_change(st, req->cfg, &res->notes, err);
    if (rc == 0)
        rc = moat_store_commit(st, err);
    if (rc != 0) {
        moat_store_rollback(st);
        goto out;
    }
    res->chain_completed = existing != 0;
    res->nchain = nblobs;
    res->server_usage = moat_pki_cert_is_server(leaf);
out:
    if (rc != 0)
        moat_keymgr_install_res_dispose(res);
    moat_free(&der);
    moat_keymgr_blobs_dispose(&blobs, nblobs);
    sk_X509_pop_free(pile, X509_free);
    sk_X509_pop_free(certs, X509_free);
    moat_store_key_dispose(&pend);
    moat_store_key_dispose(&act);
    moat_store_key_dispose(&aside);
    return rc;
}

int moat_keymgr_key_add(moat_store_t *st, const char *name, EVP_PKEY *key, const char *algorithm,
                        bool exportable, const moat_store_blob_t *csr_der, int64_t *id, moat_err_t *err)
{
    return moat_ca_key_add(st, name, key, algorithm, exportable, csr_der, id, err);
}

int moat_keymgr_export_p12(moat_store_t *st, const moat_store_key_t *k, const char *password, bool legacy,
                           unsigned char **p12, size_t *p12_len, moat_err_t *err)
{
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    int rc;

    *p12 = NULL;
    *p12_len = 0;
    if (!k->exportable) {
        moat_err_set(err, MOAT_E_PERM, "key \"%s\" is not exportable: it was %s without --exportable",
                     k->name, k->csr.len > 0 || k->cert == NULL ? "created" : "created or imported");
        return moat_err_hint(
            err,
            "if you have its original .pfx or key file: moat key import %s FILE --exportable "
            "--replace; otherwise make a new exportable key (moat key renew %s --exportable)",
            k->name, k->name);
    }
    if (k->cert == NULL) {
        moat_err_set(err, MOAT_E_STATE, "key \"%s\" has no certificate yet, and PKCS#12 needs one", k->name);
        return moat_err_hint(err, "install its certificate first: moat cert install %s CERT.pem", k->name);
    }
    if ((rc = moat_keymgr_cert_load(k->cert, &cert, &chain, err)) == 0 &&
        (rc = moat_keymgr_private_key(st, k->id, &pkey, err)) == 0)
        rc = moat_pki_pkcs12_export(pkey, cert, chain, k->name, password, legacy, p12, p12_len, err);
    EVP_PKEY_free(pkey);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

int moat__keymgr_key_find(moat_store_t *st, const char *name, moat_key_which_t which, moat_store_key_t *k,
                          bool *found, moat_err_t *err)
{
    int rc = moat_store_key_get(st, name, which, k, err);
    *found = rc == 0;
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    return 0;
}

int moat__keymgr_finish(moat_store_t *st, const moat_config_t *cfg, moat_plan_notes_t *notes, int rc,
                        moat_err_t *err)
{
    if (rc != 0) {
        moat_store_rollback(st);
        return rc;
    }
    return moat_plan_commit(st, cfg, 0, notes, err);
}

int moat_keymgr_export(moat_store_t *st, const moat_store_key_t *k, const char *password, bool legacy,
                       const char *action, const char *to, unsigned char **p12, size_t *p12_len,
                       moat_err_t *err)
{
    int rc;

    if ((rc = moat_keymgr_export_p12(st, k, password, legacy, p12, p12_len, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    rc = moat_store_audit_addf(st, action, k->name, err, "to %s, PKCS#12 %s", to,
                               legacy ? "legacy (PBE-SHA1-3DES)" : "AES-256-CBC/PBKDF2");
    rc = moat__keymgr_finish(st, NULL, NULL, rc, err);
out:
    if (rc != 0)
        moat_free_secret(p12, *p12_len);
    return rc;
}
