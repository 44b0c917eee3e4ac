/*
 * Trust anchors, CA state and the table of issued certificates.
 */
#include "store/store_int.h"

#include <ctype.h>
#include <string.h>

/* ---- trust anchors ---- */

void moat_store_anchor_dispose(moat_store_anchor_t *a)
{
    if (a == NULL)
        return;
    moat_store_blob_dispose(&a->der);
    moat_free(&a->subject);
}

void moat_store_anchor_list_dispose(moat_store_anchor_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_anchor_dispose);
}

#define ANCHOR_COLS                                                                                          \
    "id, name, der, subject, fingerprint, not_after, created, " MOAT__ROW_OK(anchors,                        \
                                                                             "anchors") " FROM anchors"

static int read_anchors(moat_store_t *st, moat_store_stmt_t *s, moat_store_anchor_list_t *out,
                        moat_err_t *err)
{
    size_t cap = 0;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_ANCHORS), NULL, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    while ((rc = st->ops->step(s, err)) == 1) {
        moat_store_anchor_t *a;
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading trust anchors");
            break;
        }
        a = &out->items[out->n];
        memset(a, 0, sizeof(*a));
        a->id = st->ops->column_int(s, 0);
        (void)moat_strlcpy(a->name, st->ops->column_text(s, 1), sizeof(a->name)); /* checked on write */
        (void)moat_strlcpy(a->fingerprint, st->ops->column_text(s, 4), sizeof(a->fingerprint));
        a->not_after = st->ops->column_int(s, 5);
        a->created = st->ops->column_int(s, 6);
        if ((rc = moat__store_copy_blob(s, st->ops, 2, &a->der, err)) != 0 ||
            (a->subject = moat__store_copy_text(s, st->ops, 3, err)) == NULL) {
            moat_store_anchor_dispose(a);
            rc = err->code;
            break;
        }
        if ((rc = moat__store_row_check(st, s, 7, err, "trust anchor \"%s\"", a->name)) != 0) {
            moat_store_anchor_dispose(a);
            break;
        }
        out->n++;
    }
    st->ops->finalize(s);
    if (rc != 0)
        moat_store_anchor_list_dispose(out);
    return rc;
}

int moat_store_anchor_add(moat_store_t *st, const char *name, const uint8_t *der, size_t len, moat_err_t *err)
{
    moat__cert_meta_t m;
    int rc, own = 0;
    int64_t n = 0;

    if ((rc = moat__store_check_name("trust anchor", name, err)) != 0)
        return rc;
    if ((rc = moat__store_cert_meta(der, len, &m, err)) != 0)
        return moat_err_prefix(err, "trust anchor \"%s\"", name);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0) {
        moat__store_cert_meta_dispose(&m);
        return rc;
    }
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM anchors WHERE name = ?", "t", name);
    if (rc == 0 && n > 0) {
        moat_err_set(err, MOAT_E_EXISTS, "there is already a trust anchor named \"%s\"", name);
        rc = moat_err_hint(err, "choose another --name, or 'moat trust remove %s' first", name);
    }
    if (rc == 0)
        rc = moat__store_int(st, &n, err, "SELECT count(*) FROM anchors WHERE fingerprint = ?", "t",
                             m.fingerprint);
    if (rc == 0 && n > 0)
        rc = moat_err_set(err, MOAT_E_EXISTS, "this certificate (%s) is already a trust anchor", m.subject);
    if (rc == 0)
        rc = moat__store_run(st, err,
                             "INSERT INTO anchors (name, der, subject, fingerprint, not_after, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             "tbttii", name, (const void *)der, len, m.subject, m.fingerprint, m.not_after,
                             moat__store_now());
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    moat__store_cert_meta_dispose(&m);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_anchor_remove(moat_store_t *st, const char *name, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;
    if ((rc = moat__store_check_name("trust anchor", name, err)) != 0)
        return rc;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM anchors WHERE name = ?", "t", name);
    if (rc == 0 && n == 0) {
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no trust anchor named \"%s\"", name);
        rc = moat_err_hint(err, "'moat trust list' shows the trust anchors");
    }
    if (rc == 0)
        rc = moat__store_run(st, err, "DELETE FROM anchors WHERE name = ?", "t", name);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_anchor_get(moat_store_t *st, const char *name, moat_store_anchor_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    moat_store_anchor_list_t l;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = moat__store_check_name("trust anchor", name, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err, "SELECT " ANCHOR_COLS " WHERE name = ?", "t", name)) != 0)
        return rc;
    if ((rc = read_anchors(st, s, &l, err)) != 0)
        return rc;
    if (l.n == 0) {
        moat_free(&l.items);
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no trust anchor named \"%s\"", name);
        return moat_err_hint(err, "'moat trust list' shows the trust anchors");
    }
    *out = l.items[0];
    moat_free(&l.items);
    return 0;
}

int moat_store_anchor_list(moat_store_t *st, moat_store_anchor_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_query(st, &s, err, "SELECT " ANCHOR_COLS " ORDER BY name", "")) != 0)
        return rc;
    return read_anchors(st, s, out, err);
}

/* ---- CA state ---- */

static const char *const role_names[] = {"root", "intermediate"};

const char *moat_store_ca_role_name(moat_ca_role_t role)
{
    return (unsigned)role < MOAT_ARRAY_LEN(role_names) ? role_names[role] : "unknown";
}

static int role_ok(moat_ca_role_t role, moat_err_t *err)
{
    if ((unsigned)role >= MOAT_ARRAY_LEN(role_names))
        return moat_err_set(err, MOAT_E_INVAL, "unknown CA role %d", (int)role);
    return 0;
}

void moat_store_ca_dispose(moat_store_ca_t *ca)
{
    if (ca != NULL)
        moat_store_blob_dispose(&ca->der);
}

int moat_store_ca_get(moat_store_t *st, moat_ca_role_t role, moat_store_ca_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    char what[32];
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = role_ok(role, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT key_id, der, base_url, crl_number, created, updated, " MOAT__ROW_OK(
                                    ca, "ca") " FROM ca "
                                              "WHERE role = ?",
                                "t", moat_store_ca_role_name(role))) != 0)
        return rc;
    snprintf(what, sizeof(what), "the %s CA", moat_store_ca_role_name(role));
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_CA), what, err)) == 0)
        rc = st->ops->step(s, err);
    if (rc == 1) {
        out->role = role;
        out->key_id = st->ops->column_is_null(s, 0) ? 0 : st->ops->column_int(s, 0);
        (void)moat_strlcpy(out->base_url, st->ops->column_text(s, 2),
                           sizeof(out->base_url)); /* checked on set */
        out->crl_number = st->ops->column_int(s, 3);
        out->created = st->ops->column_int(s, 4);
        out->updated = st->ops->column_int(s, 5);
        if ((rc = moat__store_row_check(st, s, 6, err, "%s", what)) == 0)
            rc = moat__store_copy_blob(s, st->ops, 1, &out->der, err);
    } else if (rc == 0) {
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no %s CA in this store", moat_store_ca_role_name(role));
        rc = moat_err_hint(err, role == MOAT_CA_ROOT ? "create one with 'moat ca init'"
                                                     : "create one with 'moat ca init --intermediate'");
    }
    st->ops->finalize(s);
    return rc;
}

int moat_store_ca_set(moat_store_t *st, const moat_store_ca_t *ca, moat_err_t *err)
{
    moat__cert_meta_t m;
    int rc, own = 0;
    int64_t now = moat__store_now();

    if ((rc = role_ok(ca->role, err)) != 0)
        return rc;
    if (strnlen(ca->base_url, sizeof(ca->base_url)) >= sizeof(ca->base_url))
        return moat_err_set(err, MOAT_E_INVAL, "CA base URL too long");
    /* Parsing proves the DER is a certificate before it can be served. */
    if ((rc = moat__store_cert_meta(ca->der.data, ca->der.len, &m, err)) != 0)
        return moat_err_prefix(err, "%s CA certificate", moat_store_ca_role_name(ca->role));
    moat__store_cert_meta_dispose(&m);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if (ca->key_id != 0) {
        int64_t n = 0;
        rc = moat__store_int(st, &n, err, "SELECT count(*) FROM keys WHERE id = ?", "i", ca->key_id);
        if (rc == 0 && n == 0)
            rc = moat_err_set(err, MOAT_E_NOTFOUND, "CA key id %lld is not in the store",
                              (long long)ca->key_id);
    }
    if (rc == 0) {
        static const char sql[] =
            "INSERT INTO ca (role, key_id, der, base_url, crl_number, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (role) DO UPDATE SET key_id = excluded.key_id, "
            "der = excluded.der, base_url = excluded.base_url, crl_number = excluded.crl_number, "
            "updated = excluded.updated";
        const char *role = moat_store_ca_role_name(ca->role);
        if (ca->key_id != 0)
            rc = moat__store_run(st, err, sql, "tibtiii", role, ca->key_id, (const void *)ca->der.data,
                                 ca->der.len, ca->base_url, ca->crl_number, now, now);
        else /* the key was taken offline */
            rc = moat__store_run(st, err, sql, "tnbtiii", role, (const void *)ca->der.data, ca->der.len,
                                 ca->base_url, ca->crl_number, now, now);
    }
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_ca_set_url(moat_store_t *st, const char *base_url, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;
    if (base_url == NULL || strlen(base_url) >= sizeof(((moat_store_ca_t *)0)->base_url))
        return moat_err_set(err, MOAT_E_INVAL, "CA base URL missing or too long");
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM ca", "");
    if (rc == 0 && n == 0) {
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no CA in this store");
        rc = moat_err_hint(err, "create one with 'moat ca init'");
    }
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE ca SET base_url = ?, updated = ?", "ti", base_url,
                             moat__store_now());
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_ca_next_crl_number(moat_store_t *st, moat_ca_role_t role, int64_t *out, moat_err_t *err)
{
    int rc, own = 0;
    if ((rc = role_ok(role, err)) != 0)
        return rc;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    /* An older CA row put back would hand out a CRL number again. */
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_CA), NULL, err)) == 0)
        rc = moat__store_run(st, err, "UPDATE ca SET crl_number = crl_number + 1 WHERE role = ?", "t",
                             moat_store_ca_role_name(role));
    if (rc == 0)
        rc = moat__store_int(st, out, err, "SELECT crl_number FROM ca WHERE role = ?", "t",
                             moat_store_ca_role_name(role));
    if (rc == MOAT_E_NOTFOUND)
        moat_err_set(err, MOAT_E_NOTFOUND, "there is no %s CA in this store", moat_store_ca_role_name(role));
    return moat__store_auto_end(st, own, rc, err);
}

/* ---- issued certificates ---- */

void moat_store_issued_dispose(moat_store_issued_t *i)
{
    if (i == NULL)
        return;
    moat_free(&i->subject);
    moat_store_blob_dispose(&i->der);
}

void moat_store_issued_list_dispose(moat_store_issued_list_t *l)
{
    if (l != NULL)
        MOAT_ARRAY_DISPOSE(l->items, l->n, moat_store_issued_dispose);
}

int moat_store_issued_add(moat_store_t *st, const moat_store_issued_t *i, moat_err_t *err)
{
    moat__cert_meta_t m;
    char serial[MOAT_STORE_SERIAL_MAX];
    int rc, own = 0;
    int64_t n = 0;

    if (strcmp(i->profile, "server") != 0 && strcmp(i->profile, "client") != 0)
        return moat_err_set(err, MOAT_E_INVAL, "unknown certificate profile \"%s\"", i->profile);
    if ((rc = role_ok(i->issuer, err)) != 0)
        return rc;
    if (i->name[0] != '\0' && (rc = moat__store_check_name("key", i->name, err)) != 0)
        return rc;
    if ((rc = moat__store_cert_meta(i->der.data, i->der.len, &m, err)) != 0)
        return moat_err_prefix(err, "recording an issued certificate");
    if (i->serial[0] != '\0' &&
        (moat_serial_canon(i->serial, serial, sizeof(serial)) != 0 || strcmp(serial, m.serial) != 0)) {
        moat__store_cert_meta_dispose(&m);
        return moat_err_set(err, MOAT_E_INVAL, "serial %s does not match the certificate's serial %s",
                            i->serial, m.serial);
    }
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0) {
        moat__store_cert_meta_dispose(&m);
        return rc;
    }
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM issued WHERE serial = ?", "t", m.serial);
    if (rc == 0 && n > 0)
        rc = moat_err_set(err, MOAT_E_EXISTS, "a certificate with serial %s was already issued", m.serial);
    if (rc == 0)
        rc = moat__store_run(
            st, err,
            "INSERT INTO issued (serial, name, subject, profile, issuer, der, issued_at, not_after, "
            "revoked, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
            "tttttbii", m.serial, i->name, i->subject && i->subject[0] ? i->subject : m.subject, i->profile,
            moat_store_ca_role_name(i->issuer), (const void *)i->der.data, i->der.len,
            i->issued ? i->issued : moat__store_now(), i->not_after ? i->not_after : m.not_after);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err); /* the CRL and OCSP answers change */
    moat__store_cert_meta_dispose(&m);
    return moat__store_auto_end(st, own, rc, err);
}

#define ISSUED_COLS                                                                                          \
    "id, serial, name, subject, profile, issuer, der, issued_at, not_after, revoked, reason, " MOAT__ROW_OK( \
        issued, "issued") " FROM issued"

static int read_issued(moat_store_t *st, moat_store_stmt_t *s, moat_store_issued_list_t *out, moat_err_t *err)
{
    size_t cap = 0;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_ISSUED), NULL, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    while ((rc = st->ops->step(s, err)) == 1) {
        moat_store_issued_t *i;
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading issued certificates");
            break;
        }
        i = &out->items[out->n];
        memset(i, 0, sizeof(*i));
        i->id = st->ops->column_int(s, 0);
        /* Lengths are bounded on the way in. */
        (void)moat_strlcpy(i->serial, st->ops->column_text(s, 1), sizeof(i->serial));
        (void)moat_strlcpy(i->name, st->ops->column_text(s, 2), sizeof(i->name));
        (void)moat_strlcpy(i->profile, st->ops->column_text(s, 4), sizeof(i->profile));
        i->issuer =
            strcmp(st->ops->column_text(s, 5), "intermediate") == 0 ? MOAT_CA_INTERMEDIATE : MOAT_CA_ROOT;
        i->issued = st->ops->column_int(s, 7);
        i->not_after = st->ops->column_int(s, 8);
        i->revoked = st->ops->column_int(s, 9);
        i->reason = (int)st->ops->column_int(s, 10);
        if ((i->subject = moat__store_copy_text(s, st->ops, 3, err)) == NULL ||
            (rc = moat__store_copy_blob(s, st->ops, 6, &i->der, err)) != 0) {
            moat_store_issued_dispose(i);
            rc = err->code;
            break;
        }
        if ((rc = moat__store_row_check(st, s, 11, err, "the record of issued certificate %s", i->serial)) !=
            0) {
            moat_store_issued_dispose(i);
            break;
        }
        out->n++;
    }
    st->ops->finalize(s);
    if (rc != 0)
        moat_store_issued_list_dispose(out);
    return rc;
}

int moat_store_issued_get(moat_store_t *st, const char *serial_or_name, moat_store_issued_t *out,
                          moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    moat_store_issued_list_t l;
    char serial[MOAT_STORE_SERIAL_MAX];
    int rc;

    memset(out, 0, sizeof(*out));
    if (serial_or_name == NULL || serial_or_name[0] == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "no serial number or name given");
    if (moat_serial_canon(serial_or_name, serial, sizeof(serial)) != 0)
        serial[0] = '\0';
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT " ISSUED_COLS " WHERE serial = ? OR name = ? "
                                "ORDER BY CASE WHEN serial = ? THEN 0 ELSE 1 END, id DESC LIMIT 1",
                                "ttt", serial, serial_or_name, serial)) != 0)
        return rc;
    if ((rc = read_issued(st, s, &l, err)) != 0)
        return rc;
    if (l.n == 0) {
        moat_free(&l.items);
        moat_err_set(err, MOAT_E_NOTFOUND, "no issued certificate has serial or name \"%s\"", serial_or_name);
        return moat_err_hint(err, "'moat ca list' shows the issued certificates");
    }
    *out = l.items[0];
    moat_free(&l.items);
    return 0;
}

int moat_store_issued_list(moat_store_t *st, unsigned flags, int64_t expiring_before,
                           moat_store_issued_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_query(
             st, &s, err,
             "SELECT " ISSUED_COLS " WHERE (? = 0 OR revoked <> 0) AND (? = 0 OR not_after < ?) "
             "ORDER BY id DESC",
             "dii", (flags & MOAT_ISSUED_REVOKED_ONLY) ? 1 : 0, expiring_before, expiring_before)) != 0)
        return rc;
    return read_issued(st, s, out, err);
}

int moat_store_issued_revoke(moat_store_t *st, const char *serial_in, int64_t when, int reason,
                             moat_err_t *err)
{
    char serial[MOAT_STORE_SERIAL_MAX];
    int rc, own = 0;
    int64_t revoked = 0;

    if (serial_in == NULL || moat_serial_canon(serial_in, serial, sizeof(serial)) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "\"%s\" is not a serial number", serial_in ? serial_in : "");
    if (reason < 0 || reason > 10 || reason == 7)
        return moat_err_set(err, MOAT_E_INVAL, "revocation reason %d is not a CRL reason code", reason);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    if ((rc = moat__store_sets_check(st, MOAT__T_BIT(MOAT__T_ISSUED), NULL, err)) == 0)
        rc = moat__store_int(st, &revoked, err, "SELECT revoked FROM issued WHERE serial = ?", "t", serial);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no issued certificate has serial %s", serial);
        rc = moat_err_hint(err, "'moat ca list' shows the issued certificates");
    } else if (rc == 0 && revoked != 0) {
        rc = moat_err_set(err, MOAT_E_STATE, "certificate %s is already revoked", serial);
    }
    if (rc == 0)
        rc = moat__store_run(st, err, "UPDATE issued SET revoked = ?, reason = ? WHERE serial = ?", "idt",
                             when ? when : moat__store_now(), reason, serial);
    if (rc == 0)
        rc = moat_store_generation_bump(st, err);
    return moat__store_auto_end(st, own, rc, err);
}
