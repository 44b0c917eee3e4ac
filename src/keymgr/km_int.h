/* Private to keymgr/: what its services share. */
#ifndef MOAT_KEYMGR_KM_INT_H
#define MOAT_KEYMGR_KM_INT_H

#include "keymgr/keymgr.h"

/* Ends the change a service made in its own transaction: when <rc> is 0, moat_plan_commit() against <cfg>
 * (a NULL <cfg> checks nothing; it fills <notes>, which may be NULL); else the rollback. Returns the
 * result. */
int moat__keymgr_finish(moat_store_t *st, const moat_config_t *cfg, moat_plan_notes_t *notes, int rc,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* moat_store_key_get() where no such key is an answer, not an error: *found says which. */
int moat__keymgr_key_find(moat_store_t *st, const char *name, moat_key_which_t which, moat_store_key_t *k,
                          bool *found, moat_err_t *err) MOAT_MUST_CHECK;

#endif
