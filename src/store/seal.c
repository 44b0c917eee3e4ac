/*
 * Row sets: a row's own code (mac.c) says that moat wrote it, not that it is still the newest copy, nor
 * that no row is missing. The seal row records, for every authenticated table, how many rows moat's last
 * change left and a digest of their codes; a row removed, a removed row put back, or an older copy of a
 * row put back (a certificate's record from before its revocation, an old CA row with a lower CRL number)
 * makes the table differ from its seal, and moat refuses to read that table.
 *
 * A table's digest is the XOR of one element per row, e = HMAC(row key, "moat row set element v1" ||
 * code), so that a change costs one element out and one in, never a pass over the table. Elements are
 * never stored, and the digests are kept masked with a keystream from a fresh random nonce at every
 * change, so that whoever reads the file over time learns nothing about any element (knowing them would
 * let an attacker look for another set of old rows with the same XOR). The seal's own code covers the
 * epoch (counts the changes), the nonce and every table's count and masked digest.
 *
 * moat's connection collects a transaction's changes with temporary triggers into temp.moat_delta (part
 * of the transaction: a statement or transaction rolled back takes its changes along), and
 * moat_store_commit() folds them into the seal just before COMMIT. A store without a seal row has empty
 * tables (a new store, or one whose rows were all removed by moat).
 *
 * Not detected: the whole store put back as it was at an earlier change (every table and the seal
 * together), which is what restoring a backup does; see docs/store.md.
 */
#include "store/store_int.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define NONCE_LEN 16
#define DIGEST_LEN 32
#define ENTRY_LEN (8 + DIGEST_LEN) /* a table's count (big-endian) and masked digest */
#define SETS_LEN (MOAT__T_COUNT * ENTRY_LEN)

static const char elem_info[] = "moat row set element v1";
static const char mask_info[] = "moat row set mask v1";
static const char seal_info[] = "moat seal v1";

typedef struct seal {
    int present;
    int64_t epoch;
    int64_t n[MOAT__T_COUNT];
    uint8_t d[MOAT__T_COUNT][DIGEST_LEN];
} seal_t;

static void put64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        p[i] = (uint8_t)v;
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

int moat__store_set_element(const moat_store_t *st, const void *mac, size_t len, uint8_t out[32])
{
    uint8_t msg[sizeof(elem_info) + DIGEST_LEN + 8];
    size_t take = len < DIGEST_LEN ? len : DIGEST_LEN;
    if (len == 0 || mac == NULL) { /* a row moat has not sealed yet (inside its INSERT) */
        memset(out, 0, 32);
        return 0;
    }
    /* A code of another length (written by hand) still gets an element of its own. */
    memcpy(msg, elem_info, sizeof(elem_info));
    memcpy(msg + sizeof(elem_info), mac, take);
    put64(msg + sizeof(elem_info) + take, (int64_t)len);
    return moat__store_row_mac(st, msg, sizeof(elem_info) + take + 8, out);
}

/* XORs table <t>'s mask for <nonce> into <d>. */
static int mask(const moat_store_t *st, const uint8_t nonce[NONCE_LEN], int t, uint8_t d[DIGEST_LEN])
{
    uint8_t msg[sizeof(mask_info) + NONCE_LEN + 1], m[32];
    int rc;
    memcpy(msg, mask_info, sizeof(mask_info));
    memcpy(msg + sizeof(mask_info), nonce, NONCE_LEN);
    msg[sizeof(msg) - 1] = (uint8_t)t;
    if ((rc = moat__store_row_mac(st, msg, sizeof(msg), m)) != 0)
        return rc;
    for (int i = 0; i < DIGEST_LEN; i++)
        d[i] ^= m[i];
    OPENSSL_cleanse(m, sizeof(m));
    return 0;
}

/* The seal's code over its epoch, nonce and masked sets. */
static int seal_code(const moat_store_t *st, int64_t epoch, const uint8_t *nonce, const uint8_t *sets,
                     uint8_t out[32])
{
    uint8_t msg[sizeof(seal_info) + 8 + NONCE_LEN + SETS_LEN];
    memcpy(msg, seal_info, sizeof(seal_info));
    put64(msg + sizeof(seal_info), epoch);
    memcpy(msg + sizeof(seal_info) + 8, nonce, NONCE_LEN);
    memcpy(msg + sizeof(seal_info) + 8 + NONCE_LEN, sets, SETS_LEN);
    return moat__store_row_mac(st, msg, sizeof(msg), out);
}

/*
 * Decodes the seal's columns (epoch, nonce, sets, mac at <col> of <s>) into <out>. Returns 1 when there is
 * no seal row (NULL epoch), 0 when it verifies, MOAT_E_STORE when its code does not.
 */
static int seal_decode(moat_store_t *st, moat_store_stmt_t *s, int col, seal_t *out)
{
    size_t nl = 0, sl = 0, ml = 0;
    const uint8_t *nonce, *sets, *mac;
    uint8_t want[32];
    int rc;

    memset(out, 0, sizeof(*out));
    if (st->ops->column_is_null(s, col))
        return 1;
    out->present = 1;
    out->epoch = st->ops->column_int(s, col);
    nonce = st->ops->column_blob(s, col + 1, &nl);
    sets = st->ops->column_blob(s, col + 2, &sl);
    mac = st->ops->column_blob(s, col + 3, &ml);
    if (nl != NONCE_LEN || sl != SETS_LEN || ml != sizeof(want) || nonce == NULL || sets == NULL ||
        mac == NULL)
        return MOAT_E_STORE;
    if ((rc = seal_code(st, out->epoch, nonce, sets, want)) != 0)
        return rc;
    if (CRYPTO_memcmp(want, mac, sizeof(want)) != 0)
        return MOAT_E_STORE;
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        out->n[t] = get64(sets + t * ENTRY_LEN);
        memcpy(out->d[t], sets + t * ENTRY_LEN + 8, DIGEST_LEN);
        if ((rc = mask(st, nonce, t, out->d[t])) != 0)
            return rc;
    }
    return 0;
}

/* Writes <sl> as the seal under a fresh nonce; <valid> 0 keeps a seal found changed failing. */
static int seal_write(moat_store_t *st, seal_t *sl, int valid, moat_err_t *err)
{
    uint8_t nonce[NONCE_LEN], sets[SETS_LEN], code[32];
    int rc;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return moat_err_ossl(err, MOAT_E_PKI, "no random bytes for the store's seal");
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        uint8_t *e = sets + t * ENTRY_LEN;
        put64(e, sl->n[t]);
        memcpy(e + 8, sl->d[t], DIGEST_LEN);
        if ((rc = mask(st, nonce, t, e + 8)) != 0)
            return moat_err_set(err, rc, "sealing the store's rows needs its master key");
    }
    if ((rc = seal_code(st, sl->epoch, nonce, sets, code)) != 0)
        return moat_err_set(err, rc, "sealing the store's rows needs its master key");
    return moat__store_run(st, err,
                           "INSERT INTO seal (id, epoch, nonce, sets, mac) VALUES (1, ?, ?, ?, ?) "
                           "ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, nonce = excluded.nonce, "
                           "sets = excluded.sets, mac = excluded.mac",
                           "ibbb", sl->epoch, (const void *)nonce, sizeof(nonce), (const void *)sets,
                           sizeof(sets), (const void *)code, valid ? sizeof(code) : (size_t)0);
}

int moat__store_sets_install(moat_store_t *st, moat_err_t *err)
{
    char sql[2048];
    int rc;

    /* The changes collected (XORs of elements) never reach a temporary file. */
    if ((rc = st->ops->exec(st,
                            "PRAGMA temp_store = MEMORY;"
                            "CREATE TEMP TABLE IF NOT EXISTS moat_delta (t INTEGER PRIMARY KEY, "
                            "x BLOB NOT NULL, n INTEGER NOT NULL)",
                            err)) != 0)
        return moat_err_prefix(err, "preparing the store's row sets");
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        const char *name = moat__mac_tables[t].name;
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO temp.moat_delta (t, x, n) VALUES (%d, zeroblob(32), 0);"
                 "CREATE TEMP TRIGGER IF NOT EXISTS moat_set_%s_i AFTER INSERT ON main.%s BEGIN "
                 "UPDATE moat_delta SET x = moat_set_xor(x, NEW.mac), n = n + 1 WHERE t = %d; END;"
                 "CREATE TEMP TRIGGER IF NOT EXISTS moat_set_%s_u AFTER UPDATE OF mac ON main.%s BEGIN "
                 "UPDATE moat_delta SET x = moat_set_xor(x, OLD.mac, NEW.mac) WHERE t = %d; END;"
                 "CREATE TEMP TRIGGER IF NOT EXISTS moat_set_%s_d AFTER DELETE ON main.%s BEGIN "
                 "UPDATE moat_delta SET x = moat_set_xor(x, OLD.mac), n = n - 1 WHERE t = %d; END;",
                 t, name, name, t, name, name, t, name, name, t);
        if ((rc = st->ops->exec(st, sql, err)) != 0)
            return moat_err_prefix(err, "preparing the store's row sets");
    }
    st->sets.collecting = 1;
    return 0;
}

/* The seal as it stands (a missing one: every table empty); 1 when its code does not verify. */
static int seal_read(moat_store_t *st, seal_t *sl, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(sl, 0, sizeof(*sl));
    if ((rc = moat__store_query(st, &s, err, "SELECT epoch, nonce, sets, mac FROM seal WHERE id = 1", "")) !=
        0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1) {
        rc = seal_decode(st, s, 0, sl);
        if (rc == MOAT_E_STORE) {
            int64_t epoch = sl->epoch;
            memset(sl, 0, sizeof(*sl));
            sl->epoch = epoch;
            rc = 1;
        } else if (rc < 0) {
            rc = moat_err_set(err, rc, "reading the store's seal needs its master key");
        }
    }
    st->ops->finalize(s);
    return rc;
}

int moat__store_sets_commit(moat_store_t *st, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    seal_t sl;
    int64_t dn[MOAT__T_COUNT] = {0};
    uint8_t dx[MOAT__T_COUNT][DIGEST_LEN] = {{0}};
    int rc, changed = 0, broken;

    if (!st->sets.collecting)
        return 0;
    if ((rc = moat__store_query(st, &s, err, "SELECT t, x, n FROM temp.moat_delta", "")) != 0)
        return rc;
    while ((rc = st->ops->step(s, err)) == 1) {
        int64_t t = st->ops->column_int(s, 0);
        size_t len = 0;
        const uint8_t *x = st->ops->column_blob(s, 1, &len);
        if (t < 0 || t >= MOAT__T_COUNT || len != DIGEST_LEN || x == NULL)
            continue;
        memcpy(dx[t], x, DIGEST_LEN);
        dn[t] = st->ops->column_int(s, 2);
        for (int i = 0; i < DIGEST_LEN; i++)
            changed |= x[i];
        changed |= dn[t] != 0;
    }
    st->ops->finalize(s);
    if (rc != 0 || !changed)
        return rc;
    if ((broken = seal_read(st, &sl, err)) < 0)
        return broken;
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        sl.n[t] += dn[t];
        for (int i = 0; i < DIGEST_LEN; i++)
            sl.d[t][i] ^= dx[t][i];
    }
    sl.epoch++;
    /* A seal changed without the master key stays failing: folding into it must not make it verify. */
    if ((rc = seal_write(st, &sl, !broken, err)) != 0)
        return rc;
    OPENSSL_cleanse(&sl, sizeof(sl));
    return moat__store_run(st, err, "UPDATE temp.moat_delta SET x = zeroblob(32), n = 0", "");
}

int moat__store_sets_reset(moat_store_t *st, moat_err_t *err)
{
    char sql[256];
    seal_t sl;
    int64_t rows = 0;
    int rc;

    memset(&sl, 0, sizeof(sl));
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", moat__mac_tables[t].name);
        if ((rc = moat__store_int(st, &sl.n[t], err, sql, "")) != 0)
            return rc;
        rows += sl.n[t];
    }
    if (rows == 0) /* no seal row: every table empty */
        return moat__store_run(st, err, "DELETE FROM seal", "");
    if ((rc = moat__store_need_row_key(st, err)) != 0)
        return rc;
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        moat_store_stmt_t *s = NULL;
        size_t len = 0;
        const void *d;
        snprintf(sql, sizeof(sql), "SELECT moat_set_sum(mac) FROM %s", moat__mac_tables[t].name);
        if ((rc = moat__store_query(st, &s, err, sql, "")) != 0)
            return rc;
        if ((rc = st->ops->step(s, err)) == 1) {
            d = st->ops->column_blob(s, 0, &len);
            if (len == DIGEST_LEN && d != NULL)
                memcpy(sl.d[t], d, DIGEST_LEN);
            rc = 0;
        }
        st->ops->finalize(s);
        if (rc != 0)
            return rc;
    }
    sl.epoch = 1;
    rc = seal_write(st, &sl, 1, err);
    OPENSSL_cleanse(&sl, sizeof(sl));
    return rc;
}

/* Checks every table against the seal in one statement (one snapshot); fills st->sets. */
static int verify(moat_store_t *st, int64_t dv, moat_err_t *err)
{
    char sql[4096];
    size_t off = 0;
    moat_store_stmt_t *s = NULL;
    moat__row_sets_t *r = &st->sets;
    seal_t sl;
    int rc, col_seal = 2 * MOAT__T_COUNT, col_delta = col_seal + 4;

    off += (size_t)snprintf(sql + off, sizeof(sql) - off, "SELECT ");
    for (int t = 0; t < MOAT__T_COUNT; t++)
        off += (size_t)snprintf(sql + off, sizeof(sql) - off,
                                "(SELECT count(*) FROM main.%s), (SELECT moat_set_sum(mac) FROM main.%s), ",
                                moat__mac_tables[t].name, moat__mac_tables[t].name);
    off += (size_t)snprintf(
        sql + off, sizeof(sql) - off,
        "(SELECT epoch FROM main.seal WHERE id = 1), (SELECT nonce FROM main.seal WHERE id = "
        "1), (SELECT sets FROM main.seal WHERE id = 1), (SELECT mac FROM main.seal WHERE id "
        "= 1)");
    /* Inside moat's own transaction: what it changed so far is not in the seal yet. */
    for (int t = 0; r->collecting && t < MOAT__T_COUNT; t++)
        off +=
            (size_t)snprintf(sql + off, sizeof(sql) - off,
                             ", (SELECT x FROM temp.moat_delta WHERE t = %d), (SELECT n FROM temp.moat_delta "
                             "WHERE t = %d)",
                             t, t);
    if (off >= sizeof(sql))
        moat_panic("row set query too long");
    if ((rc = moat__store_query(st, &s, err, sql, "")) != 0)
        return rc;
    if ((rc = st->ops->step(s, err)) != 1) {
        st->ops->finalize(s);
        return rc < 0 ? rc
                      : moat_err_set(err, MOAT_E_STORE, "checking the store's row sets returned nothing");
    }
    rc = seal_decode(st, s, col_seal, &sl);
    if (rc < 0 && rc != MOAT_E_STORE) {
        st->ops->finalize(s);
        return moat_err_set(err, rc, "checking the store's row sets needs its master key");
    }
    r->seal_bad = rc == MOAT_E_STORE;
    r->bad = 0;
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        size_t len = 0;
        const uint8_t *have = st->ops->column_blob(s, 2 * t + 1, &len);
        uint8_t want[DIGEST_LEN];
        memcpy(want, sl.d[t], DIGEST_LEN);
        r->have[t] = st->ops->column_int(s, 2 * t);
        r->want[t] = sl.n[t];
        if (r->collecting) {
            size_t xl = 0;
            const uint8_t *x = st->ops->column_blob(s, col_delta + 2 * t, &xl);
            for (size_t i = 0; x != NULL && xl == DIGEST_LEN && i < DIGEST_LEN; i++)
                want[i] ^= x[i];
            r->want[t] += st->ops->column_int(s, col_delta + 2 * t + 1);
        }
        if (r->seal_bad || have == NULL || len != DIGEST_LEN || r->have[t] != r->want[t] ||
            CRYPTO_memcmp(have, want, DIGEST_LEN) != 0)
            r->bad |= MOAT__T_BIT(t);
        OPENSSL_cleanse(want, sizeof(want));
    }
    st->ops->finalize(s);
    OPENSSL_cleanse(&sl, sizeof(sl));
    r->dv = dv;
    r->valid = 1;
    r->tx_valid = st->in_tx;
    return 0;
}

int moat__store_set_state(moat_store_t *st, int t, moat_err_t *err)
{
    moat__row_sets_t *r = &st->sets;
    int rc;
    if (!st->have_row_key || st->unchecked || st->schema < 6 || t < 0 || t >= MOAT__T_COUNT)
        return -1;
    /* Inside moat's own write transaction nobody else can commit: one check serves it all. */
    if (!(r->valid && st->in_tx && r->tx_valid)) {
        int64_t dv = 0;
        if ((rc = st->ops->data_version(st, &dv, err)) != 0)
            return rc;
        if ((!r->valid || dv != r->dv) && (rc = verify(st, dv, err)) != 0)
            return rc;
    }
    return (r->bad & MOAT__T_BIT(t)) ? 0 : 1;
}

int moat__store_sets_check(moat_store_t *st, unsigned mask, const char *what, moat_err_t *err)
{
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        int rc;
        if (!(mask & MOAT__T_BIT(t)))
            continue;
        if ((rc = moat__store_set_state(st, t, err)) == 0)
            return moat__store_set_refused(st, t, what, err);
        if (rc < -1)
            return rc;
    }
    return 0;
}

/* The sentence saying how table <t> differs from the seal. */
static void how(const moat_store_t *st, int t, char *out, size_t outsz)
{
    const moat__row_sets_t *r = &st->sets;
    const char *what = moat__mac_tables[t].what, *name = moat__mac_tables[t].name;
    if (r->seal_bad)
        snprintf(out, outsz,
                 "the store's seal (the record of the rows moat wrote) was changed without the master key, "
                 "so its %s (table %s) cannot be trusted",
                 what, name);
    else if (r->have[t] < r->want[t])
        snprintf(out, outsz,
                 "the store's %s (table %s) are %lld where moat's last change left %lld: %s removed without "
                 "the master key",
                 what, name, (long long)r->have[t], (long long)r->want[t],
                 r->want[t] - r->have[t] == 1 ? "a row was" : "rows were");
    else if (r->have[t] > r->want[t])
        snprintf(out, outsz,
                 "the store's %s (table %s) are %lld where moat's last change left %lld: %s that moat had "
                 "removed %s put back without the master key",
                 what, name, (long long)r->have[t], (long long)r->want[t],
                 r->have[t] - r->want[t] == 1 ? "a row" : "rows",
                 r->have[t] - r->want[t] == 1 ? "was" : "were");
    else
        snprintf(out, outsz,
                 "the store's %s (table %s) are not the rows moat last wrote: an older copy of a row was put "
                 "back (or a row replaced by another) without the master key",
                 what, name);
}

/* The first row of table <t> whose own code does not verify, named into <out>: 1 found, 0 none, <0 error. */
static int first_bad_row(moat_store_t *st, int t, char *out, size_t outsz, moat_err_t *err)
{
    const moat__mac_table_t *m = &moat__mac_tables[t];
    moat_store_stmt_t *s = NULL;
    char sql[1024];
    int rc;
    snprintf(sql, sizeof(sql),
             "SELECT %s FROM %s WHERE moat_row_ok('%s', mac, %s) = 0 ORDER BY rowid LIMIT 1", m->label,
             m->name, m->name, m->cols);
    if ((rc = moat__store_query(st, &s, err, sql, "")) != 0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1)
        (void)moat_strlcpy(out, st->ops->column_text(s, 0), outsz); /* a cut name still names it */
    st->ops->finalize(s);
    return rc;
}

int moat__store_set_refused(moat_store_t *st, int t, const char *what, moat_err_t *err)
{
    char why[512], row[512];
    int rc;
    /* A row changed or added by hand also changes its table's set: the row is what to name. */
    if ((rc = first_bad_row(st, t, row, sizeof(row), err)) < 0)
        return rc;
    if (rc == 1)
        return moat__store_row_refused(st, row, err);
    how(st, t, why, sizeof(why));
    if (what != NULL)
        moat_err_set(err, MOAT_E_STORE, "%s in the store %s: moat does not use it, since %s", what, st->path,
                     why);
    else
        moat_err_set(err, MOAT_E_STORE, "%s (store %s); moat does not use them", why, st->path);
    return moat_err_hint(err, "'moat doctor' lists what was changed; restore the store from a backup ('moat "
                              "store restore FILE')");
}

int moat_store_sets_verify(moat_store_t *st, void (*bad)(void *arg, const char *what), void *arg,
                           size_t *nbad, moat_err_t *err)
{
    char why[512];
    *nbad = 0;
    if (!st->have_row_key) {
        moat_err_set(err, MOAT_E_PERM, "checking the store's rows needs its master key");
        return moat_err_hint(err, "pass --master-key FILE or set MOAT_MASTER_KEY_FILE");
    }
    for (int t = 0; t < MOAT__T_COUNT; t++) {
        int rc = moat__store_set_state(st, t, err);
        if (rc < -1)
            return rc;
        if (rc != 0)
            continue;
        /* A table with rows whose own code fails is reported by moat_store_rows_verify(), row by row. */
        if ((rc = first_bad_row(st, t, why, sizeof(why), err)) < 0)
            return rc;
        if (rc == 1)
            continue;
        (*nbad)++;
        how(st, t, why, sizeof(why));
        if (bad != NULL)
            bad(arg, why);
    }
    return 0;
}
