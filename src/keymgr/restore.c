/* keymgr: a store restore that keeps moat's CA whole (see moat_keymgr_restore in keymgr.h). */
#include "ca/ca.h"
#include "keymgr/keymgr.h"

#include <openssl/x509.h>
#include <string.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether the stored CRL of <role> lists exactly the certificates of <role> revoked in <st>: *complete. */
static int crl_complete(moat_store_t *st, moat_ca_role_t role, bool *complete, moat_err_t *err)
{
    moat_store_issued_list_t il = {0};
    X509_CRL *crl = NULL;
    char *pem = NULL, **want = NULL, **have = NULL;
    size_t nwant = 0, nhave = 0;
    int rc;

    *complete = false;
    if ((pem = moat_malloc(MOAT_CA_CRL_PEM_MAX)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory");
    if ((rc = moat_ca_crl_stored(st, role, pem, MOAT_CA_CRL_PEM_MAX, &crl, err)) != 0 ||
        (rc = moat_store_issued_list(st, MOAT_ISSUED_REVOKED_ONLY, 0, &il, err)) != 0)
        goto out;
    STACK_OF(X509_REVOKED) *rev = crl != NULL ? X509_CRL_get_REVOKED(crl) : NULL;
    size_t ncrl = (size_t)(rev != NULL ? sk_X509_REVOKED_num(rev) : 0);
    if ((il.n > 0 && (want = moat_calloc(il.n, sizeof(*want))) == NULL) ||
        (ncrl > 0 && (have = moat_calloc(ncrl, sizeof(*have))) == NULL)) {
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < il.n; i++)
        if (il.items[i].issuer == role && il.items[i].revoked != 0)
            want[nwant++] = il.items[i].serial;
    for (size_t i = 0; i < ncrl; i++) {
        char key[MOAT_PKI_SERIAL_KEY_SIZE];
        const ASN1_INTEGER *sn = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rev, (int)i));
        if ((rc = moat_pki_serial_key(sn, key)) != 0 || (have[nhave] = moat_strdup(key)) == NULL) {
            rc = rc != 0 ? moat_err_set(err, rc, "reading the serials of the %s CA's CRL",
                                        moat_store_ca_role_name(role))
                         : moat_err_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
        nhave++;
    }
    if (nwant == nhave && nwant == 0) {
        *complete = true;
    } else if (nwant == nhave) {
        qsort(want, nwant, sizeof(*want), cmp_str);
        qsort(have, nhave, sizeof(*have), cmp_str);
        *complete = true;
        for (size_t i = 0; *complete && i < nwant; i++)
            *complete = strcmp(want[i], have[i]) == 0;
    }
out:
    for (size_t i = 0; i < nhave; i++)
        moat_free(&have[i]);
    moat_free(&have);
    moat_free(&want);
    moat_store_issued_list_dispose(&il);
    X509_CRL_free(crl);
    moat_free(&pem);
    return rc;
}

/*
 * The CRL a restore keeps is the live one or the backup's, whichever has the higher number; when the two
 * stores revoked different certificates it lacks some revocations. Then it is re-signed, listing every
 * revocation kept, with the next number above both.
 */
static int re_sign_crls(moat_store_t *rs, moat_store_diff_t *diff, moat_err_t *err)
{
    for (int r = MOAT_CA_ROOT; r <= MOAT_CA_INTERMEDIATE; r++) {
        moat_ca_role_t role = (moat_ca_role_t)r;
        moat_ca_t ca = {0};
        moat_store_ca_t row = {0};
        char sfx[96];
        bool complete = false;
        int rc = moat_store_ca_get(rs, role, &row, err);

        moat_store_ca_dispose(&row);
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(err);
            continue;
        }
        if (rc != 0 || (rc = crl_complete(rs, role, &complete, err)) != 0)
            return rc;
        if (complete)
            continue;
        if ((rc = moat_ca_load(rs, role, true, &ca, err)) != 0) {
            moat_err_prefix(err, "re-signing the %s CA's CRL to list the revocations of both stores",
                            moat_store_ca_role_name(role));
            return rc;
        }
        rc = moat_ca_crl_refresh(rs, role, ca.cert, ca.key, err);
        moat_ca_dispose(&ca);
        if (rc == 0)
            rc = moat_store_ca_get(rs, role, &row, err);
        if (rc != 0)
            return rc;
        snprintf(sfx, sizeof(sfx), " (re-signed as number %lld: it lists every revocation kept)",
                 (long long)row.crl_number);
        moat_store_ca_dispose(&row);
        if ((rc = moat_store_diff_add(diff, "crl", moat_store_ca_role_name(role), sfx, MOAT_DIFF_CHANGED,
                                      err)) != 0)
            return rc;
    }
    return 0;
}

/* What the check before commit of a restore needs: the live store (the state the server loads today). */
typedef struct restore_check {
    moat_store_t *live;
    const moat_config_t *cfg;
    moat_plan_notes_t *notes;
} restore_check_t;

static int before_commit(moat_store_t *restored, moat_store_diff_t *diff, void *arg, moat_err_t *err)
{
    const restore_check_t *c = arg;
    char hint[sizeof(err->hint)];
    int rc = re_sign_crls(restored, diff, err);

    if (rc != 0 || (rc = moat_plan_check_change_from(restored, c->live, c->cfg, 0, c->notes, err)) == 0)
        return 0;
    if (rc == MOAT_E_STATE) {
        (void)moat_strlcpy(hint, err->hint, sizeof(hint));
        moat_err_hint(err, "%s; to restore it all the same, run the restore again with --force", hint);
    }
    return rc;
}

int moat_keymgr_restore(moat_store_t *st, const char *src, bool dry_run, const moat_config_t *cfg,
                        moat_plan_notes_t *notes, moat_store_diff_t *diff, moat_err_t *err)
{
    restore_check_t check = {st, cfg, notes};
    moat_store_restore_hook_t hook = {before_commit, &check};

    notes->text[0] = '\0';
    return moat_store_restore_with(st, src, dry_run, &hook, diff, err);
}
