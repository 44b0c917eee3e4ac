/* ca: loading moat's CA from the store and issuing under the profile's policy and the name constraints. */
#include "ca/ca.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

void moat_ca_dispose(moat_ca_t *ca)
{
    moat_store_ca_dispose(&ca->row);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    memset(ca, 0, sizeof(*ca));
}

int moat_ca_none(moat_err_t *err)
{
    moat_err_set(err, MOAT_E_NOTFOUND, "this store has no CA yet");
    return moat_err_hint(err, "create one with 'moat ca init [--cn NAME]'");
}

int moat_ca_load(moat_store_t *st, moat_ca_role_t role, bool need_key, moat_ca_t *ca, moat_err_t *err)
{
    int rc;

    memset(ca, 0, sizeof(*ca));
    if ((rc = moat_store_ca_get(st, role, &ca->row, err)) != 0)
        return rc == MOAT_E_NOTFOUND && role == MOAT_CA_ROOT ? moat_ca_none(err) : rc;
    if ((rc = moat_pki_cert_parse(ca->row.der.data, ca->row.der.len, &ca->cert, err)) != 0)
        goto fail;
    if (!need_key)
        return 0;
    if (ca->row.key_id == 0) {
        moat_err_set(err, MOAT_E_STATE, "the %s CA's key is offline (it was exported and removed)",
                     moat_store_ca_role_name(role));
        moat_err_hint(err, "%s",
                      role == MOAT_CA_ROOT
                          ? "the intermediate issues certificates; to use the root, bring it back "
                            "with: moat ca import-root FILE.p12 --password-file F"
                          : "make a new intermediate with 'moat ca init --intermediate'");
        rc = err->code;
        goto fail;
    }
    /* The key manager uses the CA (a restore keeps it whole): the CA reads its key from the store itself. */
    {
        uint8_t *der = NULL;
        size_t len = 0;
        if ((rc = moat_store_key_private(st, ca->row.key_id, &der, &len, err)) == 0) {
            rc = moat_pki_key_from_pkcs8(der, len, &ca->key, err);
            moat_free_secret(&der, len);
            if (rc == 0)
                return 0;
        }
    }
fail:
    moat_ca_dispose(ca);
    return rc;
}

static int key_row_add(moat_store_t *st, const char *name, EVP_PKEY *key, const char *algorithm,
                       bool exportable, const moat_store_blob_t *csr_der, int64_t *id, moat_err_t *err)
{
    moat_store_key_t k = {0};
    unsigned char *pkcs8 = NULL;
    size_t pkcs8_len = 0;
    int rc;

    if (id != NULL)
        *id = 0;
    if ((rc = moat_pki_key_to_pkcs8(key, &pkcs8, &pkcs8_len, err)) != 0 ||
        (rc = moat_pki_pubkey_to_der(key, &k.pubkey.data, &k.pubkey.len, err)) != 0)
        goto out;
    (void)moat_strlcpy(k.name, name, sizeof(k.name)); /* the store checks the name */
    if (algorithm != NULL)
        (void)moat_strlcpy(k.algorithm, algorithm, sizeof(k.algorithm));
    else
        moat_pki_key_describe(key, k.algorithm, sizeof(k.algorithm));
    k.state = MOAT_KEY_PENDING;
    k.exportable = exportable;
    if (csr_der != NULL)
        k.csr = *csr_der; /* borrowed: cleared before the dispose below */
    rc = moat_store_key_add(st, &k, pkcs8, pkcs8_len, err);
    memset(&k.csr, 0, sizeof(k.csr));
    if (rc == 0 && id != NULL)
        *id = k.id;
out:
    moat_free_secret(&pkcs8, pkcs8_len);
    moat_store_key_dispose(&k);
    return rc;
}

int moat_ca_load_issuing(moat_store_t *st, bool need_key, moat_ca_t *ca, moat_err_t *err)
{
    int rc = moat_ca_load(st, MOAT_CA_INTERMEDIATE, need_key, ca, err);
    if (rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    return moat_ca_load(st, MOAT_CA_ROOT, need_key, ca, err);
}

size_t moat_ca_chain(const moat_ca_t *ca, moat_store_blob_t *out)
{
    if (ca->row.role != MOAT_CA_INTERMEDIATE)
        return 0;
    out->data = ca->row.der.data;
    out->len = ca->row.der.len;
    return 1;
}

int moat_ca_policy_load(moat_store_t *st, moat_pki_profile_t prof, moat_ca_policy_t *pol, moat_err_t *err)
{
    char key[64], val[32];
    long days;
    int rc;

    memset(pol, 0, sizeof(*pol));
    pol->p.max_days = prof == MOAT_PKI_PROFILE_CLIENT ? MOAT_PKI_CLIENT_MAX_DAYS : MOAT_PKI_SERVER_MAX_DAYS;
    snprintf(key, sizeof(key), "ca.policy.%s.max_days", moat_pki_profile_name(prof));
    rc = moat_store_setting_get(st, key, val, sizeof(val), err);
    if (rc == 0 && moat_parse_long(val, 1, 36500, &days) == 0)
        pol->p.max_days = (int)days;
    else if (rc != 0 && rc != MOAT_E_NOTFOUND)
        return rc;
    moat_err_clear(err);
    snprintf(key, sizeof(key), "ca.policy.%s.names", moat_pki_profile_name(prof));
    rc = moat_store_setting_get(st, key, pol->names, sizeof(pol->names), err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        pol->names[0] = '\0';
    } else if (rc != 0) {
        return rc;
    }
    for (char *p = pol->names; pol->names[0] != '\0';) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*p != '\0' && pol->p.npatterns < MOAT_CA_POLICY_PATTERNS_MAX)
            pol->patterns[pol->p.npatterns++] = p;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (pol->p.npatterns > 0)
        pol->p.patterns = pol->patterns;
    return 0;
}

int moat_ca_urls(const moat_ca_t *ca, moat_pki_urls_t *urls, const moat_pki_urls_t **out, moat_err_t *err)
{
    *out = NULL;
    if (ca->row.base_url[0] == '\0')
        return 0;
    if (moat_pki_urls_from_base(ca->row.base_url, ca->row.role == MOAT_CA_ROOT, urls, err) != 0)
        return err->code;
    *out = urls;
    return 0;
}

/* Refuses <cert> when clients would reject it under <ca>'s name constraints, naming its names. */
static int check_constraints(const moat_ca_t *ca, X509 *cert, moat_err_t *err)
{
    moat_pki_cert_info_t ci = {0};
    moat_err_t e = {0};
    char why[128];

    if (moat_pki_name_constraints_check(ca->cert, cert, err) == 0)
        return 0;
    (void)moat_strlcpy(why, err->msg, sizeof(why));
    if (moat_pki_cert_info(cert, &ci, &e) != 0)
        moat_err_set(err, MOAT_E_PERM, "the names break the %s CA's name constraints (%s)",
                     moat_store_ca_role_name(ca->row.role), why);
    else
        moat_err_set(err, MOAT_E_PERM, "%.80s (names %.80s) breaks the %s CA's name constraints (%s)",
                     ci.subject, ci.sans ? ci.sans : "none", moat_store_ca_role_name(ca->row.role), why);
    moat_pki_cert_info_dispose(&ci);
    return moat_err_hint(err, "ask for names inside the CA's permitted domains ('moat ca cert' shows them); "
                              "clients reject any other");
}

/* How many subject alternative names <csr> asks for (0 without the extension). */
static int csr_san_count(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    GENERAL_NAMES *names = exts != NULL ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    int n = names != NULL ? sk_GENERAL_NAME_num(names) : 0;
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error(); /* a request without extensions is no error */
    return n;
}

int moat_ca_issue(moat_store_t *st, const moat_ca_t *ca, X509_REQ *csr, const moat_ca_issue_req_t *req,
                  X509 **out, moat_err_t *err)
{
    moat_ca_policy_t pol;
    moat_pki_urls_t urls;
    const moat_pki_urls_t *u = NULL;
    moat_pki_csr_info_t ri = {0};
    moat_pki_sign_opts_t so = {0};
    moat_store_issued_t is = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    X509 *cert = NULL;
    int rc, days, nsans;

    *out = NULL;
    if ((rc = moat_pki_csr_verify(csr, err)) != 0)
        return rc;
    if ((nsans = csr_san_count(csr)) > MOAT_CA_MAX_SANS) {
        moat_err_set(err, MOAT_E_LIMIT,
                     "the request asks for %d subject alternative names; moat's CA puts at most %d "
                     "in one certificate",
                     nsans, MOAT_CA_MAX_SANS);
        return moat_err_hint(err, "split the names over several certificates");
    }
    if ((rc = moat_pki_csr_info(csr, &ri, err)) != 0)
        return rc;
    if (ri.requests_ca) {
        moat_pki_csr_info_dispose(&ri);
        moat_err_set(err, MOAT_E_PERM, "the request asks for a CA certificate (basicConstraints CA:TRUE)");
        return moat_err_hint(err, "moat's CA issues end-entity certificates only; for a sub-CA use "
                                  "'moat ca init --intermediate'");
    }
    moat_pki_csr_info_dispose(&ri);
    if ((rc = moat_ca_policy_load(st, req->profile, &pol, err)) != 0)
        return rc;
    days = req->days > 0 ? (int)req->days : pol.p.max_days;
    if ((rc = moat_pki_policy_check(&pol.p, csr, days, err)) != 0) {
        if (err->hint[0] == '\0')
            moat_err_hint(err, "'moat ca policy %s' shows the %s profile's rules",
                          moat_pki_profile_name(req->profile), moat_pki_profile_name(req->profile));
        return rc;
    }
    if ((rc = moat_ca_urls(ca, &urls, &u, err)) != 0)
        return rc;
    so.profile = req->profile;
    so.days = days;
    so.clamp = req->days == 0; /* a default validity may be shortened to the CA's; an explicit one may not */
    so.urls = u;
    if ((rc = moat_pki_ca_sign(ca->cert, ca->key, csr, &so, &cert, err)) != 0)
        return rc;
    if ((rc = check_constraints(ca, cert, err)) != 0 ||
        (rc = moat_pki_cert_to_der(cert, &der, &der_len, err)) != 0)
        goto out;
    (void)moat_strlcpy(is.name, req->name ? req->name : "", sizeof(is.name));
    (void)moat_strlcpy(is.profile, moat_pki_profile_name(req->profile), sizeof(is.profile));
    is.issuer = ca->row.role;
    is.der.data = der;
    is.der.len = der_len;
    if ((rc = moat_store_issued_add(st, &is, err)) != 0)
        goto out;
    *out = cert;
    cert = NULL;
out:
    moat_free(&der);
    X509_free(cert);
    return rc;
}

int moat_ca_key_add(moat_store_t *st, const char *name, EVP_PKEY *key, const char *algorithm, bool exportable,
                    const moat_store_blob_t *csr_der, int64_t *id, moat_err_t *err)
{
    int rc = moat_ca_key_name_check(st, name, err);
    return rc != 0 ? rc : key_row_add(st, name, key, algorithm, exportable, csr_der, id, err);
}

int moat_ca_own_key_add(moat_store_t *st, moat_ca_role_t role, EVP_PKEY *key, bool exportable, int64_t *id,
                        moat_err_t *err)
{
    return key_row_add(st, moat_ca_key_name(role), key, NULL, exportable, NULL, id, err);
}
