/*
 * Keys: one row per key pair; a name has at most one active and one pending row (a partial unique index
 * enforces it), plus any number of retired ones kept for certificate history.
 */
#include "store/store_int.h"

#include <openssl/crypto.h>
#include <string.h>

#define KEY_COLS                                                                                             \
    "id, name, state, algorithm, exportable, pubkey, csr, created, updated, " MOAT__ROW_OK(keys, "keys")

static const char *const state_names[] = {"pending", "active", "retired"};

const char *moat_store_key_state_name(moat_key_state_t state)
{
    return (unsigned)state < MOAT_ARRAY_LEN(state_names) ? state_names[state] : "unknown";
}

static moat_key_state_t state_parse(const char *s)
{
    for (size_t i = 0; i < MOAT_ARRAY_LEN(state_names); i++)
        if (strcmp(s, state_names[i]) == 0)
            return (moat_key_state_t)i;
    return MOAT_KEY_RETIRED; /* the schema's CHECK allows nothing else */
}

void moat_store_key_dispose(moat_store_key_t *k)
{
    if (k == NULL)
        return;
    moat_store_blob_dispose(&k->pubkey);
    moat_store_blob_dispose(&k->csr);
    if (k->cert != NULL) {
        moat_store_cert_dispose(k->cert);
        moat_free(&k->cert);
    }
}

void moat_store_key_list_dispose(moat_store_key_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_key_dispose);
}

static int algorithm_ok(const char *alg)
{
    static const char *const known[] = {"ec-p256",  "ec-p384", "ec-p521", "rsa-2048", "rsa-3072",
                                        "rsa-4096", "ed25519", "ed448",   "rsa"};
    if (alg == NULL)
        return 0;
    for (size_t i = 0; i < MOAT_ARRAY_LEN(known); i++)
        if (strcmp(alg, known[i]) == 0)
            return 1;
    /* Imported keys of other sizes: "rsa-1024", "rsa-8192", "ec-<curve>". */
    return (strncmp(alg, "rsa-", 4) == 0 || strncmp(alg, "ec-", 3) == 0) && strlen(alg) < 32 &&
           alg[4] != '\0';
}

/* Reads the current row of <s> (KEY_COLS) into <k>. */
static int read_key(moat_store_t *st, moat_store_stmt_t *s, moat_store_key_t *k, moat_err_t *err)
{
    int rc;
    memset(k, 0, sizeof(*k));
    k->id = st->ops->column_int(s, 0);
    (void)moat_strlcpy(k->name, st->ops->column_text(s, 1), sizeof(k->name)); /* names are checked on write */
    k->state = state_parse(st->ops->column_text(s, 2));
    (void)moat_strlcpy(k->algorithm, st->ops->column_text(s, 3), sizeof(k->algorithm));
    k->exportable = st->ops->column_int(s, 4) != 0;
    if ((rc = moat__store_copy_blob(s, st->ops, 5, &k->pubkey, err)) != 0 ||
        (rc = moat__store_copy_blob(s, st->ops, 6, &k->csr, err)) != 0) {
        moat_store_key_dispose(k);
        return rc;
    }
    k->created = st->ops->column_int(s, 7);
    k->updated = st->ops->column_int(s, 8);
    if ((rc = moat__store_row_check(st, s, 9, err, "key \"%s\" (id %lld)", k->name, (long long)k->id)) != 0)
        moat_store_key_dispose(k);
    return rc;
}

/* Attaches the current certificate of key <k>, if it has one. */
static int attach_cert(moat_store_t *st, moat_store_key_t *k, moat_err_t *err)
{
    int64_t cert_id = 0;
    moat_store_cert_t *c;
    int rc = moat__store_int(st, &cert_id, err, "SELECT id FROM certs WHERE key_id = ? AND is_current = 1",
                             "i", k->id);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_clear(err);
        return 0;
    }
    if (rc != 0)
        return rc;
    if ((c = moat_calloc(1, sizeof(*c))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the store");
    if ((rc = moat_store_cert_get(st, cert_id, c, err)) != 0) {
        moat_free(&c);
        return rc;
    }
    k->cert = c;
    return 0;
}

/* Runs a query returning KEY_COLS rows; one row into *out, or MOAT_E_NOTFOUND. */
/* A key is read with its current certificate and chain. */
#define KEY_TABLES (MOAT__T_BIT(MOAT__T_KEYS) | MOAT__T_BIT(MOAT__T_CERTS) | MOAT__T_BIT(MOAT__T_CERT_CHAIN))

static int get_one(moat_store_t *st, moat_store_stmt_t *s, moat_store_key_t *out, moat_err_t *err)
{
    int rc = moat__store_sets_check(st, KEY_TABLES, NULL, err);
    if (rc == 0)
        rc = st->ops->step(s, err);
    if (rc == 1)
        rc = read_key(st, s, out, err);
    else if (rc == 0)
        rc = MOAT_E_NOTFOUND;
    st->ops->finalize(s);
    if (rc == 0 && (rc = attach_cert(st, out, err)) != 0)
        moat_store_key_dispose(out);
    return rc;
}

int moat_store_key_get(moat_store_t *st, const char *name, moat_key_which_t which, moat_store_key_t *out,
                       moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    const char *sql;

    memset(out, 0, sizeof(*out));
    if ((rc = moat__store_check_name("key", name, err)) != 0)
        return rc;
    switch (which) {
    case MOAT_KEY_WANT_ACTIVE:
        sql = "SELECT " KEY_COLS " FROM keys WHERE name = ? AND state = 'active'";
        break;
    case MOAT_KEY_WANT_PENDING:
        sql = "SELECT " KEY_COLS " FROM keys WHERE name = ? AND state = 'pending'";
        break;
    default:
        sql = "SELECT " KEY_COLS " FROM keys WHERE name = ? AND state <> 'retired' "
              "ORDER BY CASE state WHEN 'active' THEN 0 ELSE 1 END LIMIT 1";
        break;
    }
    if ((rc = moat__store_query(st, &s, err, sql, "t", name)) != 0)
        return rc;
    rc = get_one(st, s, out, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no %skey named \"%s\"",
                     which == MOAT_KEY_WANT_ACTIVE    ? "active "
                     : which == MOAT_KEY_WANT_PENDING ? "pending "
                                                      : "",
                     name);
        moat_err_hint(err, "'moat key list' shows the keys in the store");
    }
    return rc;
}

int moat_store_key_get_by_id(moat_store_t *st, int64_t id, moat_store_key_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = moat__store_query(st, &s, err, "SELECT " KEY_COLS " FROM keys WHERE id = ?", "i", id)) != 0)
        return rc;
    rc = get_one(st, s, out, err);
    if (rc == MOAT_E_NOTFOUND)
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no key with id %lld", (long long)id);
    return rc;
}

/* The key that <sql> finds by public key (?1) and, when <name> is given, name (?2). */
static int find_by_pubkey(moat_store_t *st, const char *sql, const char *name, const uint8_t *spki,
                          size_t spki_len, moat_store_key_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    if (spki == NULL || spki_len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "no public key given");
    if ((rc = moat__store_query(st, &s, err, sql, name != NULL ? "bt" : "b", (const void *)spki, spki_len,
                                name)) != 0)
        return rc;
    return get_one(st, s, out, err);
}

int moat_store_key_find_pubkey(moat_store_t *st, const uint8_t *spki, size_t spki_len, moat_store_key_t *out,
                               moat_err_t *err)
{
    int rc = find_by_pubkey(st,
                            "SELECT " KEY_COLS " FROM keys WHERE pubkey = ?1 AND state <> 'retired' "
                            "ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END LIMIT 1",
                            NULL, spki, spki_len, out, err);
    if (rc == MOAT_E_NOTFOUND)
        moat_err_set(err, MOAT_E_NOTFOUND, "no key in the store has this public key");
    return rc;
}

int moat_store_key_list(moat_store_t *st, moat_store_key_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    size_t cap = 0;
    int rc;

    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT " KEY_COLS " FROM keys WHERE state <> 'retired' "
                                "ORDER BY name, CASE state WHEN 'active' THEN 0 ELSE 1 END",
                                "")) != 0)
        return rc;
    if ((rc = moat__store_sets_check(st, KEY_TABLES, NULL, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    while ((rc = st->ops->step(s, err)) == 1) {
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory listing keys");
            break;
        }
        if ((rc = read_key(st, s, &out->items[out->n], err)) != 0)
            break;
        out->n++;
    }
    st->ops->finalize(s);
    for (size_t i = 0; rc == 0 && i < out->n; i++)
        rc = attach_cert(st, &out->items[i], err);
    if (rc != 0)
        moat_store_key_list_dispose(out);
    return rc;
}

/* Encrypts <priv> for row <id> and stores it. */
static int put_private(moat_store_t *st, int64_t id, const uint8_t *priv, size_t len, moat_err_t *err)
{
    uint8_t *sealed = NULL;
    size_t slen = 0;
    int rc = moat__store_seal(st, id, priv, len, &sealed, &slen, err);
    if (rc != 0)
        return rc;
    rc = moat__store_run(st, err, "UPDATE keys SET private_enc = ? WHERE id = ?", "bi", (const void *)sealed,
                         slen, id);
    moat_free(&sealed);
    return rc;
}

int moat_store_key_add(moat_store_t *st, moat_store_key_t *k, const uint8_t *priv_der, size_t priv_len,
                       moat_err_t *err)
{
    int rc, own = 0;
    int64_t now = moat__store_now(), taken = 0;

    if ((rc = moat__store_check_name("key", k->name, err)) != 0)
        return rc;
    if (k->state != MOAT_KEY_PENDING && k->state != MOAT_KEY_ACTIVE)
        return moat_err_set(err, MOAT_E_INVAL, "a new key must be pending or active");
    if (!algorithm_ok(k->algorithm))
        return moat_err_set(err, MOAT_E_INVAL, "unknown key algorithm \"%s\"", k->algorithm);
    if (priv_der == NULL || priv_len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "key \"%s\": no private key given", k->name);
    if (k->pubkey.data == NULL || k->pubkey.len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "key \"%s\": no public key given", k->name);
    if (k->pubkey.len > MOAT_STORE_MAX_BLOB || k->csr.len > MOAT_STORE_MAX_BLOB ||
        priv_len > MOAT_STORE_MAX_BLOB)
        return moat_err_set(err, MOAT_E_LIMIT, "key \"%s\": key or request larger than %d bytes", k->name,
                            MOAT_STORE_MAX_BLOB);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &taken, err, "SELECT count(*) FROM keys WHERE name = ? AND state = ?", "tt",
                         k->name, moat_store_key_state_name(k->state));
    if (rc == 0 && taken > 0) {
        moat_err_set(err, MOAT_E_EXISTS, "key \"%s\" already has %s key", k->name,
                     k->state == MOAT_KEY_PENDING ? "a pending" : "an active");
        rc = moat_err_hint(err, k->state == MOAT_KEY_PENDING
                                    ? "install its certificate with 'moat cert install', or delete it first"
                                    : "choose another name, or 'moat key delete' it first");
    }
    if (rc == 0)
        rc =
            moat__store_run(st, err,
                            "INSERT INTO keys (name, state, algorithm, exportable, private_enc, pubkey, csr, "
                            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            "tttdbbbii", k->name, moat_store_key_state_name(k->state), k->algorithm,
                            k->exportable ? 1 : 0, (const void *)"", (size_t)0, (const void *)k->pubkey.data,
                            k->pubkey.len, (const void *)k->csr.data, k->csr.len, now, now);
    if (rc == 0) {
        k->id = st->ops->last_id(st);
        k->created = k->updated = now;
        rc = put_private(st, k->id, priv_der, priv_len, err);
    }
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    if (rc != 0)
        k->id = 0;
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_private(moat_store_t *st, int64_t id, uint8_t **der, size_t *len, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;

    *der = NULL;
    *len = 0;
    if ((rc = moat__store_query(st, &s, err, "SELECT private_enc, name FROM keys WHERE id = ?", "i", id)) !=
        0)
        return rc;
    rc = st->ops->step(s, err);
    if (rc == 1) {
        size_t slen = 0;
        const void *sealed = st->ops->column_blob(s, 0, &slen);
        rc = moat__store_open_sealed(st, id, sealed, slen, der, len, err);
        if (rc != 0)
            moat_err_prefix(err, "key \"%s\"", st->ops->column_text(s, 1));
    } else if (rc == 0) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "there is no key with id %lld", (long long)id);
    }
    st->ops->finalize(s);
    return rc;
}

/* Checks that key row <id> exists; MOAT_E_NOTFOUND otherwise. */
static int key_exists(moat_store_t *st, int64_t id, moat_err_t *err)
{
    int64_t n = 0;
    int rc = moat__store_int(st, &n, err, "SELECT count(*) FROM keys WHERE id = ?", "i", id);
    if (rc == 0 && n == 0)
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "there is no key with id %lld", (long long)id);
    return rc;
}

int moat_store_key_replace(moat_store_t *st, int64_t id, const char *algorithm, const uint8_t *spki,
                           size_t spki_len, const uint8_t *priv_der, size_t priv_len, moat_err_t *err)
{
    int rc, own = 0;
    if (!algorithm_ok(algorithm))
        return moat_err_set(err, MOAT_E_INVAL, "unknown key algorithm \"%s\"", algorithm ? algorithm : "");
    if (spki == NULL || spki_len == 0 || priv_der == NULL || priv_len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "replacing a key needs its public and private key");
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = key_exists(st, id, err)) == 0)
        rc = moat__store_run(
            st, err, "UPDATE keys SET algorithm = ?, pubkey = ?, csr = NULL, updated = ? WHERE id = ?",
            "tbii", algorithm, (const void *)spki, spki_len, moat__store_now(), id);
    if (rc == 0)
        rc = put_private(st, id, priv_der, priv_len, err);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_set_exportable(moat_store_t *st, int64_t id, int exportable, moat_err_t *err)
{
    int rc, own = 0;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = key_exists(st, id, err)) == 0)
        rc = moat__store_run(st, err, "UPDATE keys SET exportable = ?, updated = ? WHERE id = ?", "dii",
                             exportable ? 1 : 0, moat__store_now(), id);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_set_csr(moat_store_t *st, int64_t id, const uint8_t *csr, size_t len, moat_err_t *err)
{
    int rc, own = 0;
    if (len > MOAT_STORE_MAX_BLOB)
        return moat_err_set(err, MOAT_E_LIMIT, "certificate request larger than %d bytes",
                            MOAT_STORE_MAX_BLOB);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = key_exists(st, id, err)) == 0) {
        if (csr != NULL && len > 0)
            rc = moat__store_run(st, err, "UPDATE keys SET csr = ?, updated = ? WHERE id = ?", "bii",
                                 (const void *)csr, len, moat__store_now(), id);
        else
            rc = moat__store_run(st, err, "UPDATE keys SET csr = NULL, updated = ? WHERE id = ?", "ii",
                                 moat__store_now(), id);
    }
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_set_aside(moat_store_t *st, int64_t id, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc =
        moat__store_int(st, &n, err, "SELECT count(*) FROM keys WHERE id = ? AND state = 'pending'", "i", id);
    if (rc == 0 && n == 0)
        rc = moat_err_set(err, MOAT_E_STATE, "key %lld is not a pending request", (long long)id);
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE keys SET state = 'retired', updated = ? WHERE id = ?", "ii",
                             moat__store_now(), id);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_find_set_aside(moat_store_t *st, const char *name, const uint8_t *spki, size_t spki_len,
                                  moat_store_key_t *out, moat_err_t *err)
{
    return find_by_pubkey(st,
                          "SELECT " KEY_COLS " FROM keys WHERE pubkey = ?1 AND name = ?2 AND "
                          "state = 'retired' AND csr IS NOT NULL AND "
                          "NOT EXISTS (SELECT 1 FROM certs c WHERE c.key_id = keys.id) "
                          "ORDER BY id DESC LIMIT 1",
                          name, spki, spki_len, out, err);
}

int moat_store_key_restore_pending(moat_store_t *st, int64_t id, moat_err_t *err)
{
    int rc, own = 0;
    int64_t now = moat__store_now();
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = key_exists(st, id, err)) == 0)
        /* Set the current request aside first: the unique index allows one pending key per name. */
        rc = moat__store_run(st, err,
                             "UPDATE keys SET state = 'retired', updated = ? WHERE state = 'pending' AND "
                             "name = (SELECT name FROM keys WHERE id = ?)",
                             "ii", now, id);
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE keys SET state = 'pending', updated = ? WHERE id = ?", "ii",
                             now, id);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_delete_id(moat_store_t *st, int64_t id, moat_err_t *err)
{
    int rc, own = 0;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = key_exists(st, id, err)) == 0)
        rc = moat__store_run(st, err, "DELETE FROM keys WHERE id = ?", "i", id);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_key_delete(moat_store_t *st, const char *name, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;
    if ((rc = moat__store_check_name("key", name, err)) != 0)
        return rc;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM keys WHERE name = ?", "t", name);
    if (rc == 0 && n == 0) {
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no key named \"%s\"", name);
        rc = moat_err_hint(err, "'moat key list' shows the keys in the store");
    }
    if (rc == 0)
        rc = moat__store_run(st, err, "DELETE FROM keys WHERE name = ?", "t", name);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}
