/*
 * The ACME server's state: one table of JSON documents (accounts, orders, authorizations, challenges)
 * with the columns its lookups need, and the external account binding keys, sealed.
 */
#include "store/store_int.h"

#include <string.h>

static const char *const kind_names[] = {"account", "order", "authz", "chall"};

#define OBJ_COLUMNS "kind, id, parent, account, lookup, status, created, expires, doc"

void moat_store_acme_obj_dispose(moat_store_acme_obj_t *o)
{
    moat_free(&o->doc);
}

void moat_store_acme_list_dispose(moat_store_acme_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_acme_obj_dispose);
}

int moat_store_acme_put(moat_store_t *st, const moat_store_acme_obj_t *o, moat_err_t *err)
{
    int rc;
    if ((rc = moat__store_writable(st, err)) != 0)
        return rc;
    if (o->doc == NULL || strlen(o->doc) > MOAT_STORE_ACME_DOC_MAX)
        return moat_err_set(err, MOAT_E_LIMIT, "ACME %s %s: document missing or over %d bytes",
                            kind_names[o->kind], o->id, MOAT_STORE_ACME_DOC_MAX);
    return moat__store_run(
        st, err, "INSERT OR REPLACE INTO acme_objects (" OBJ_COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "ttttttiit", kind_names[o->kind], o->id, o->parent, o->account, o->lookup, o->status,
        (int64_t)(o->created ? o->created : moat__store_now()), o->expires, o->doc);
}

static int read_obj(moat_store_t *st, moat_store_stmt_t *s, moat_store_acme_obj_t *o, moat_err_t *err)
{
    const char *kind = st->ops->column_text(s, 0);
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < MOAT_ARRAY_LEN(kind_names); i++)
        if (strcmp(kind, kind_names[i]) == 0)
            o->kind = (moat_store_acme_kind_t)i;
    (void)moat_strlcpy(o->id, st->ops->column_text(s, 1), sizeof o->id); /* written from the same bounds */
    (void)moat_strlcpy(o->parent, st->ops->column_text(s, 2), sizeof o->parent);
    (void)moat_strlcpy(o->account, st->ops->column_text(s, 3), sizeof o->account);
    (void)moat_strlcpy(o->lookup, st->ops->column_text(s, 4), sizeof o->lookup);
    (void)moat_strlcpy(o->status, st->ops->column_text(s, 5), sizeof o->status);
    o->created = st->ops->column_int(s, 6);
    o->expires = st->ops->column_int(s, 7);
    return (o->doc = moat__store_copy_text(s, st->ops, 8, err)) == NULL ? err->code : 0;
}

/* Runs a query over acme_objects expecting one row. */
static int get_one(moat_store_t *st, moat_store_acme_obj_t *o, moat_err_t *err, const char *what,
                   const char *sql, const char *kind, const char *arg)
{
    moat_store_stmt_t *s = NULL;
    int rc = moat__store_query(st, &s, err, sql, "tt", kind, arg);
    memset(o, 0, sizeof *o);
    if (rc != 0)
        return rc;
    rc = st->ops->step(s, err);
    if (rc == 1)
        rc = read_obj(st, s, o, err);
    else if (rc == 0)
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "no ACME %s %s", what, arg);
    st->ops->finalize(s);
    return rc;
}

int moat_store_acme_get(moat_store_t *st, moat_store_acme_kind_t kind, const char *id,
                        moat_store_acme_obj_t *o, moat_err_t *err)
{
    return get_one(st, o, err, kind_names[kind],
                   "SELECT " OBJ_COLUMNS " FROM acme_objects WHERE kind = ? AND id = ?", kind_names[kind],
                   id);
}

int moat_store_acme_find(moat_store_t *st, moat_store_acme_kind_t kind, const char *lookup,
                         moat_store_acme_obj_t *o, moat_err_t *err)
{
    return get_one(st, o, err, kind_names[kind],
                   "SELECT " OBJ_COLUMNS
                   " FROM acme_objects WHERE kind = ? AND lookup = ? ORDER BY created DESC LIMIT 1",
                   kind_names[kind], lookup);
}

int moat_store_acme_list(moat_store_t *st, moat_store_acme_kind_t kind, int by_parent, const char *id,
                         size_t max, moat_store_acme_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc = moat__store_query(
        st, &s, err,
        by_parent ? "SELECT " OBJ_COLUMNS
                    " FROM acme_objects WHERE kind = ? AND parent = ? ORDER BY created, id LIMIT ?"
                  : "SELECT " OBJ_COLUMNS
                    " FROM acme_objects WHERE kind = ? AND account = ? ORDER BY created, id LIMIT ?",
        "tti", kind_names[kind], id, (int64_t)max);
    memset(out, 0, sizeof *out);
    if (rc != 0)
        return rc;
    if (max > 0 && (out->items = moat_calloc(max, sizeof *out->items)) == NULL)
        rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory listing ACME objects");
    while (rc == 0 && out->n < max && (rc = st->ops->step(s, err)) == 1) {
        rc = read_obj(st, s, &out->items[out->n], err);
        if (rc == 0)
            out->n++;
    }
    st->ops->finalize(s);
    if (rc != 0)
        moat_store_acme_list_dispose(out);
    return rc;
}

int moat_store_acme_count(moat_store_t *st, moat_store_acme_kind_t kind, const char *account,
                          const char *lookup, const char *status, int64_t since, int64_t *n, moat_err_t *err)
{
    const char *l = lookup ? lookup : "", *s = status ? status : "";
    return moat__store_int(st, n, err,
                           "SELECT count(*) FROM acme_objects WHERE kind = ? AND (? = '' OR account = ?) "
                           "AND (? = '' OR lookup = ?) AND (? = '' OR status = ?) AND created >= ?",
                           "ttttttti", kind_names[kind], account, account, l, l, s, s, since);
}

/* EAB keys are sealed like private keys, under an id space of their own (negative) so that a sealed EAB
 * key can never be opened as a private key's. */
int moat_store_acme_eab_add(moat_store_t *st, const char *kid, const uint8_t *hmac, size_t len,
                            moat_err_t *err)
{
    int own = 0, rc;
    int64_t id = 0;
    uint8_t *sealed = NULL;
    size_t slen = 0;
    if ((rc = moat__store_writable(st, err)) != 0 || (rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(st, err, "INSERT INTO acme_eab (kid, hmac, created) VALUES (?, x'', ?)", "ti", kid,
                         moat__store_now());
    if (rc == 0)
        id = st->ops->last_id(st);
    if (rc == 0)
        rc = moat__store_seal(st, -id, hmac, len, &sealed, &slen, err);
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE acme_eab SET hmac = ? WHERE id = ?", "bi", sealed, slen, id);
    moat_free(&sealed);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_acme_eab_get(moat_store_t *st, const char *kid, uint8_t **hmac, size_t *len, char *account,
                            size_t accountsz, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc = moat__store_query(st, &s, err, "SELECT id, hmac, account FROM acme_eab WHERE kid = ?", "t", kid);
    *hmac = NULL;
    *len = 0;
    if (rc != 0)
        return rc;
    rc = st->ops->step(s, err);
    if (rc == 1) {
        size_t bl = 0;
        const void *b = st->ops->column_blob(s, 1, &bl);
        rc = moat__store_open_sealed(st, -st->ops->column_int(s, 0), b, bl, hmac, len, err);
        (void)moat_strlcpy(account, st->ops->column_text(s, 2), accountsz); /* account ids are short */
    } else if (rc == 0) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "no external account key \"%s\"", kid);
    }
    st->ops->finalize(s);
    return rc;
}

int moat_store_acme_eab_bind(moat_store_t *st, const char *kid, const char *account, moat_err_t *err)
{
    int64_t n = 0;
    int rc = moat__store_writable(st, err);
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE acme_eab SET account = ? WHERE kid = ? AND account = ''", "tt",
                             account, kid);
    if (rc == 0)
        rc = moat__store_int(st, &n, err, "SELECT count(*) FROM acme_eab WHERE kid = ? AND account = ?", "tt",
                             kid, account);
    if (rc == 0 && n != 1)
        rc = moat_err_set(err, MOAT_E_STATE, "external account key \"%s\" is bound to another account", kid);
    return rc;
}
