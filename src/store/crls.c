/*
 * CRLs the server fetched for client-certificate CAs other than moat's: a cache that survives restarts,
 * so a server starts with the revocation lists it had instead of failing closed until the first fetch.
 */
#include "store/store_int.h"

#include <string.h>

void moat_store_crl_dispose(moat_store_crl_t *c)
{
    if (c == NULL)
        return;
    moat_store_blob_dispose(&c->issuer_der);
    moat_store_blob_dispose(&c->der);
}

void moat_store_crl_list_dispose(moat_store_crl_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_crl_dispose);
}

int moat_store_crl_save(moat_store_t *st, const moat_store_crl_t *c, moat_err_t *err)
{
    int rc, own = 0;
    if (c->url[0] == '\0' || strlen(c->issuer_fp) != MOAT_STORE_FPR_LEN || c->issuer_der.len == 0)
        return moat_err_set(err, MOAT_E_INVAL, "a cached CRL needs a URL and its issuing certificate");
    if ((rc = moat__store_writable(st, err)) != 0)
        return rc;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(
        st, err,
        "INSERT INTO crls (url, issuer_fp, issuer_der, issuer_subject, der, this_update, next_update, "
        "revoked, fetched_at, attempted_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (url, issuer_fp) DO UPDATE SET issuer_der = excluded.issuer_der, "
        "issuer_subject = excluded.issuer_subject, der = excluded.der, "
        "this_update = excluded.this_update, next_update = excluded.next_update, "
        "revoked = excluded.revoked, fetched_at = excluded.fetched_at, "
        "attempted_at = excluded.attempted_at, error = excluded.error",
        "ttbtbiiiiit", c->url, c->issuer_fp, (const void *)c->issuer_der.data, c->issuer_der.len,
        c->issuer_subject, (const void *)c->der.data, c->der.len, c->this_update, c->next_update, c->revoked,
        c->fetched_at, c->attempted_at, c->error);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_crl_list(moat_store_t *st, moat_store_crl_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    size_t cap = 0;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT url, issuer_fp, issuer_der, issuer_subject, der, this_update, "
                                "next_update, revoked, fetched_at, attempted_at, error, " MOAT__ROW_OK(
                                    crls, "crls") " FROM crls ORDER BY url, issuer_fp",
                                "")) != 0)
        return rc;
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_CRLS), NULL, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    while ((rc = st->ops->step(s, err)) == 1) {
        moat_store_crl_t *c;
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading cached CRLs");
            break;
        }
        c = &out->items[out->n];
        memset(c, 0, sizeof(*c));
        /* Written by moat_store_crl_save() from bounded fields: a cut only shortens a display text. */
        (void)moat_strlcpy(c->url, st->ops->column_text(s, 0), sizeof(c->url));
        (void)moat_strlcpy(c->issuer_fp, st->ops->column_text(s, 1), sizeof(c->issuer_fp));
        (void)moat_strlcpy(c->issuer_subject, st->ops->column_text(s, 3), sizeof(c->issuer_subject));
        c->this_update = st->ops->column_int(s, 5);
        c->next_update = st->ops->column_int(s, 6);
        c->revoked = st->ops->column_int(s, 7);
        c->fetched_at = st->ops->column_int(s, 8);
        c->attempted_at = st->ops->column_int(s, 9);
        (void)moat_strlcpy(c->error, st->ops->column_text(s, 10), sizeof(c->error));
        if ((rc = moat__store_row_check(st, s, 11, err, "the cached CRL of %s from %s", c->issuer_subject,
                                        c->url)) != 0 ||
            (rc = moat__store_copy_blob(s, st->ops, 2, &c->issuer_der, err)) != 0 ||
            (rc = moat__store_copy_blob(s, st->ops, 4, &c->der, err)) != 0) {
            moat_store_crl_dispose(c);
            break;
        }
        out->n++;
    }
    st->ops->finalize(s);
    if (rc != 0)
        moat_store_crl_list_dispose(out);
    return rc;
}
