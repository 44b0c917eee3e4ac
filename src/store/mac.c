/*
 * Authenticated rows: the rows that decide what is trusted and served carry an HMAC-SHA256 under a key
 * derived from the master key (crypt.c), over the table's name and every column of MOAT__MAC_COLS_<table>.
 * Whoever can write the store file but does not hold the master key cannot add, change or move such a
 * row: its code does not verify, and moat refuses it where it reads it. Removing a row, or putting back
 * an older copy of it, is not detected by the row's own code: the seal finds that (seal.c).
 *
 * moat's connection seals what it writes with temporary triggers (never stored in the file), which call
 * the connection's moat_row_mac(); the SQL functions are registered by the backend (sqlite.c).
 */
#include "store/store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const moat__mac_table_t moat__mac_tables[MOAT__T_COUNT] = {
    [MOAT__T_KEYS] = {"keys", MOAT__MAC_COLS_keys, "'key \"' || name || '\" (id ' || id || ')'", "keys"},
    [MOAT__T_CERTS] = {"certs", MOAT__MAC_COLS_certs, "'certificate ' || id || ' (' || subject || ')'",
                       "certificates"},
    [MOAT__T_CERT_CHAIN] = {"cert_chain", MOAT__MAC_COLS_cert_chain,
                            "'chain certificate ' || (pos + 1) || ' of certificate ' || cert_id",
                            "chain certificates"},
    [MOAT__T_ANCHORS] = {"anchors", MOAT__MAC_COLS_anchors, "'trust anchor \"' || name || '\"'",
                         "trust anchors"},
    [MOAT__T_CA] = {"ca", MOAT__MAC_COLS_ca, "'the ' || role || ' CA'", "CA rows"},
    [MOAT__T_ISSUED] = {"issued", MOAT__MAC_COLS_issued, "'issued certificate ' || serial",
                        "records of issued certificates"},
    [MOAT__T_CRLS] = {"crls", MOAT__MAC_COLS_crls,
                      "'the cached CRL of ' || issuer_subject || ' from ' || url", "cached CRLs"},
    [MOAT__T_CERT_NAMES] = {"cert_names", MOAT__MAC_COLS_cert_names,
                            "'host name ' || name || ' of certificate ' || cert_id",
                            "certificate host names"},
};

int moat__store_row_refused(moat_store_t *st, const char *what, moat_err_t *err)
{
    moat_err_set(err, MOAT_E_STORE,
                 "%s in the store %s was changed without the master key (its authentication code does not "
                 "verify); moat does not use it",
                 what, st->path);
    return moat_err_hint(err,
                         "'moat doctor' lists every such row; restore the store from a backup ('moat store "
                         "restore FILE'), or remove the row and make it again with moat");
}

int moat__store_row_check(moat_store_t *st, moat_store_stmt_t *s, int col, moat_err_t *err, const char *fmt,
                          ...)
{
    char what[512];
    va_list ap;
    int64_t v = st->ops->column_is_null(s, col) ? 1 : st->ops->column_int(s, col);
    if (v == 1 || v == -1)
        return 0; /* 1: verifies; -1: no master key, unchecked */
    va_start(ap, fmt);
    (void)vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (v >= 2 && v - 2 < MOAT__T_COUNT) /* the row verifies, its table's set of rows does not */
        return moat__store_set_refused(st, (int)(v - 2), what, err);
    return moat__store_row_refused(st, what, err);
}

int moat__store_mac_install(moat_store_t *st, moat_err_t *err)
{
    char sql[1024], name[128];
    moat_store_stmt_t *s = NULL;
    int rc;

    /* moat keeps no trigger in the store: one there was planted, and could rewrite what moat writes. */
    if ((rc = moat__store_query(st, &s, err, "SELECT name FROM sqlite_master WHERE type = 'trigger' LIMIT 1",
                                "")) != 0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1)
        (void)moat_strlcpy(name, st->ops->column_text(s, 0), sizeof(name));
    st->ops->finalize(s);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        moat_err_set(err, MOAT_E_STORE, "the store %s holds a trigger \"%s\" that moat did not make",
                     st->path, name);
        return moat_err_hint(err,
                             "someone changed the store's schema; restore the store from a backup ('moat "
                             "store restore FILE')");
    }
    /* First: it sets where temporary tables live, which drops any made before. */
    if ((rc = moat__store_sets_install(st, err)) != 0)
        return rc;
    for (size_t i = 0; i < MOAT__T_COUNT; i++) {
        const moat__mac_table_t *t = &moat__mac_tables[i];
        snprintf(sql, sizeof(sql),
                 "CREATE TEMP TRIGGER IF NOT EXISTS moat_seal_%s_i AFTER INSERT ON main.%s BEGIN "
                 "UPDATE %s SET mac = moat_row_mac('%s', %s) WHERE rowid = NEW.rowid; END;"
                 "CREATE TEMP TRIGGER IF NOT EXISTS moat_seal_%s_u AFTER UPDATE OF %s ON main.%s BEGIN "
                 "UPDATE %s SET mac = moat_row_mac('%s', %s) WHERE rowid = NEW.rowid; END;",
                 t->name, t->name, t->name, t->name, t->cols, t->name, t->cols, t->name, t->name, t->name,
                 t->cols);
        if ((rc = st->ops->exec(st, sql, err)) != 0)
            return moat_err_prefix(err, "preparing the store's row authentication");
    }
    return 0;
}

int moat__store_need_row_key(moat_store_t *st, moat_err_t *err)
{
    int64_t nkeys = 0;
    int rc;
    if (st->have_mk)
        return 0;
    if (st->flags & MOAT_STORE_NO_MASTER_KEY) {
        moat_err_set(err, MOAT_E_PERM,
                     "this version of moat authenticates the store's rows under its master key, and this "
                     "command was run without it");
        return moat_err_hint(err, "run 'moat store info' once with the master key to upgrade the store");
    }
    if ((rc = moat__store_int(st, &nkeys, err, "SELECT count(*) FROM keys", "")) != 0 ||
        (rc = moat__store_mk_load(st, 1, nkeys, err)) != 0)
        return rc;
    if (!st->have_mk)
        return moat_err_set(err, MOAT_E_PERM, "the store's master key %s is missing", st->mk_path);
    return 0;
}

int moat__store_mac_migrate(moat_store_t *st, int first, int count, moat_err_t *err)
{
    char sql[512];
    int64_t rows = 0, n = 0;
    int rc;
    const moat__mac_table_t *tables = moat__mac_tables + first;

    for (int i = 0; i < count; i++) {
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN mac BLOB NOT NULL DEFAULT x''", tables[i].name);
        if ((rc = st->ops->exec(st, sql, err)) != 0)
            return rc;
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i].name);
        if ((rc = moat__store_int(st, &n, err, sql, "")) != 0)
            return rc;
        rows += n;
    }
    if (rows == 0)
        return 0;
    if ((rc = moat__store_need_row_key(st, err)) != 0)
        return rc;
    for (int i = 0; i < count; i++) {
        snprintf(sql, sizeof(sql), "UPDATE %s SET mac = moat_row_mac('%s', %s)", tables[i].name,
                 tables[i].name, tables[i].cols);
        if ((rc = st->ops->exec(st, sql, err)) != 0)
            return rc;
    }
    return 0;
}

int moat_store_rows_verify(moat_store_t *st, void (*bad)(void *arg, const char *what), void *arg,
                           size_t *nbad, moat_err_t *err)
{
    char sql[1024];
    int rc = 0;

    *nbad = 0;
    if (!st->have_row_key) {
        moat_err_set(err, MOAT_E_PERM, "checking the store's rows needs its master key");
        return moat_err_hint(err, "pass --master-key FILE or set MOAT_MASTER_KEY_FILE");
    }
    for (size_t i = 0; i < MOAT__T_COUNT && rc == 0; i++) {
        const moat__mac_table_t *t = &moat__mac_tables[i];
        moat_store_stmt_t *s = NULL;
        snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE moat_row_ok('%s', mac, %s) = 0 ORDER BY rowid",
                 t->label, t->name, t->name, t->cols);
        if ((rc = moat__store_query(st, &s, err, sql, "")) != 0)
            break;
        while ((rc = st->ops->step(s, err)) == 1) {
            (*nbad)++;
            if (bad != NULL)
                bad(arg, st->ops->column_text(s, 0));
        }
        st->ops->finalize(s);
    }
    return rc;
}
