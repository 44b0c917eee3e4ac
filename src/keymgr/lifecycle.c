/* keymgr: the changes of a key's life after its certificate: rollback and deletion (keymgr.h). */
#include "keymgr/km_int.h"

#include <string.h>

int moat_keymgr_rollback(moat_store_t *st, const moat_config_t *cfg, const char *name, moat_store_cert_t *now,
                         moat_plan_notes_t *notes, moat_err_t *err)
{
    char detail[128];
    int rc;

    memset(now, 0, sizeof(*now));
    notes->text[0] = '\0';
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    rc = moat_store_cert_rollback(st, name, now, err);
    if (rc == MOAT_E_STATE) {
        moat_err_set(err, MOAT_E_STATE, "\"%s\" has no earlier certificate to roll back to", name);
        moat_err_hint(err, "'moat cert history %s' lists its certificates", name);
    } else if (rc == MOAT_E_NOTFOUND) {
        moat_err_set(err, MOAT_E_NOTFOUND, "\"%s\" has no certificate to roll back", name);
        moat_err_hint(err, "'moat key list' shows the keys and their state");
    }
    if (rc == 0)
        rc = moat_keymgr_check_loadable(st, now->key_id, now->der.data, now->der.len, now->chain,
                                        now->chain_n, err);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    if (rc == 0) {
        (void)snprintf(detail, sizeof(detail), "to serial %s", now->serial);
        rc = moat_store_audit_add(st, "cert.rollback", name, detail, err);
    }
    return moat__keymgr_finish(st, cfg, notes, rc, err);
}

int moat_keymgr_key_delete(moat_store_t *st, const moat_config_t *cfg, const char *name,
                           moat_store_key_t *deleted, moat_plan_notes_t *notes, moat_err_t *err)
{
    char detail[160];
    int rc;

    memset(deleted, 0, sizeof(*deleted));
    notes->text[0] = '\0';
    if ((rc = moat_store_key_get(st, name, MOAT_KEY_CURRENT, deleted, err)) != 0) {
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\" to delete", name);
            moat_err_hint(err, "'moat key list' shows the keys in this store");
        }
        return rc;
    }
    for (int role = MOAT_CA_ROOT; role <= MOAT_CA_INTERMEDIATE; role++) {
        moat_store_ca_t ca = {0};
        rc = moat_store_ca_get(st, (moat_ca_role_t)role, &ca, err);
        int used = rc == 0 && ca.key_id == deleted->id;
        moat_store_ca_dispose(&ca);
        if (rc == MOAT_E_NOTFOUND) {
            moat_err_clear(err);
            continue;
        }
        if (rc != 0)
            return rc;
        if (used) {
            moat_err_set(err, MOAT_E_PERM, "key \"%s\" is the key of moat's %s CA", name,
                         moat_store_ca_role_name((moat_ca_role_t)role));
            return moat_err_hint(err,
                                 "take a root offline with 'moat ca export-root --out FILE --remove-key'");
        }
    }
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    (void)snprintf(detail, sizeof(detail), "algorithm %s, state %s", deleted->algorithm,
                   moat_store_key_state_name(deleted->state));
    if ((rc = moat_store_key_delete(st, name, err)) == 0 && (rc = moat_store_generation_bump(st, err)) == 0)
        rc = moat_store_audit_add(st, "key.delete", name, detail, err);
    return moat__keymgr_finish(st, cfg, notes, rc, err);
}
