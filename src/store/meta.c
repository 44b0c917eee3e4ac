/*
 * Small tables: generation counter, server status, audit log, settings.
 */
#include "store/store_int.h"

#include <pwd.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

int moat_store_generation(moat_store_t *st, int64_t *out, moat_err_t *err)
{
    return moat__store_int(st, out, err, "SELECT value FROM generation WHERE id = 1", "");
}

int moat_store_generation_bump(moat_store_t *st, moat_err_t *err)
{
    int rc, own = 0;
    if (st->in_tx && st->tx_bumped)
        return 0;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(st, err, "UPDATE generation SET value = value + 1 WHERE id = 1", "");
    if (rc == 0)
        st->tx_bumped = 1;
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_server_status_set(moat_store_t *st, const moat_store_server_status_t *s, moat_err_t *err)
{
    int rc, own = 0;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(
        st, err,
        "UPDATE server_status SET applied_generation = ?, refused_generation = ?, refusal = ?, "
        "pid = ?, updated = ? WHERE id = 1",
        "iitii", s->applied_generation, s->refused_generation, s->refusal, s->pid,
        s->updated ? s->updated : moat__store_now());
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_server_status_get(moat_store_t *st, moat_store_server_status_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    out->applied_generation = -1;
    if ((rc = moat__store_query(st, &s, err,
                                "SELECT applied_generation, refused_generation, refusal, pid, updated "
                                "FROM server_status WHERE id = 1",
                                "")) != 0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1) {
        out->applied_generation = st->ops->column_int(s, 0);
        out->refused_generation = st->ops->column_int(s, 1);
        (void)moat_strlcpy(out->refusal, st->ops->column_text(s, 2), sizeof(out->refusal)); /* cut is fine */
        out->pid = st->ops->column_int(s, 3);
        out->updated = st->ops->column_int(s, 4);
        rc = 0;
    }
    st->ops->finalize(s);
    return rc;
}

static void actor_name(char *out, size_t n)
{
    struct passwd pw, *res = NULL;
    char buf[1024];
    uid_t uid = geteuid();
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
        (void)moat_strlcpy(out, res->pw_name, n); /* a cut user name is still recognisable */
    else
        snprintf(out, n, "uid %u", (unsigned)uid);
}

int moat_store_audit_add(moat_store_t *st, const char *action, const char *object, const char *detail,
                         moat_err_t *err)
{
    char actor[64];
    int rc, own = 0;
    if (action == NULL || action[0] == '\0' || strlen(action) >= 64)
        return moat_err_set(err, MOAT_E_INVAL, "an audit entry needs an action of 1 to 63 bytes");
    if (object == NULL)
        object = "";
    if (strlen(object) >= 256 || (detail != NULL && strlen(detail) > 4096))
        return moat_err_set(err, MOAT_E_INVAL, "audit object or detail too long");
    actor_name(actor, sizeof(actor));
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(st, err,
                         "INSERT INTO audit (at, actor, action, object, detail) VALUES (?, ?, ?, ?, ?)",
                         "itttt", moat__store_now(), actor, action, object, detail ? detail : "");
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_audit_addf(moat_store_t *st, const char *action, const char *object, moat_err_t *err,
                          const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(detail, sizeof(detail), fmt, ap); /* a truncated detail is still a useful record */
    va_end(ap);
    return moat_store_audit_add(st, action, object, detail, err);
}

void moat_store_audit_list_dispose(moat_store_audit_list_t *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        moat_free(&l->items[i].detail);
    moat_free(&l->items);
    l->n = 0;
}

int moat_store_audit_list(moat_store_t *st, size_t limit, moat_store_audit_list_t *out, moat_err_t *err)
{
    return moat_store_audit_query(st, 0, NULL, limit, out, err);
}

int moat_store_audit_query(moat_store_t *st, int64_t since, const char *object, size_t limit,
                           moat_store_audit_list_t *out, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    size_t cap = 0;
    int rc;
    out->items = NULL;
    out->n = 0;
    if ((rc = moat__store_query(
             st, &s, err,
             "SELECT id, at, actor, action, object, detail FROM audit WHERE at >= ?1 AND (?2 IS NULL OR "
             "object = ?2 "
             "OR object IN (SELECT serial FROM issued WHERE name = ?2)) ORDER BY id DESC LIMIT ?3",
             "iti", since, object, limit ? (int64_t)limit : (int64_t)-1)) != 0)
        return rc;
    while ((rc = st->ops->step(s, err)) == 1) {
        moat_store_audit_t *a;
        if (moat_array_reserve(&out->items, &cap, out->n) != 0) {
            rc = moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the audit log");
            break;
        }
        a = &out->items[out->n];
        memset(a, 0, sizeof(*a));
        a->id = st->ops->column_int(s, 0);
        a->time = st->ops->column_int(s, 1);
        /* Field sizes match what audit_add accepts; longer actors are cut on the way in. */
        (void)moat_strlcpy(a->actor, st->ops->column_text(s, 2), sizeof(a->actor));
        (void)moat_strlcpy(a->action, st->ops->column_text(s, 3), sizeof(a->action));
        (void)moat_strlcpy(a->object, st->ops->column_text(s, 4), sizeof(a->object));
        if ((a->detail = moat__store_copy_text(s, st->ops, 5, err)) == NULL) {
            rc = err->code;
            break;
        }
        out->n++;
    }
    st->ops->finalize(s);
    if (rc != 0)
        moat_store_audit_list_dispose(out);
    return rc;
}

static int setting_key_ok(const char *key, moat_err_t *err)
{
    if (key == NULL || key[0] == '\0' || strlen(key) >= 128)
        return moat_err_set(err, MOAT_E_INVAL, "a setting name must be 1 to 127 bytes");
    return 0;
}

int moat_store_setting_get(moat_store_t *st, const char *key, char *out, size_t outsz, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    if ((rc = setting_key_ok(key, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err, "SELECT value FROM settings WHERE name = ?", "t", key)) != 0)
        return rc;
    rc = st->ops->step(s, err);
    if (rc == 1) {
        rc = moat_strlcpy(out, st->ops->column_text(s, 0), outsz);
        if (rc != 0)
            rc = moat_err_set(err, MOAT_E_LIMIT, "setting \"%s\" is longer than %zu bytes", key, outsz - 1);
    } else if (rc == 0) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "setting \"%s\" is not set", key);
    }
    st->ops->finalize(s);
    return rc;
}

int moat_store_setting_set(moat_store_t *st, const char *key, const char *value, moat_err_t *err)
{
    int rc, own = 0;
    if ((rc = setting_key_ok(key, err)) != 0)
        return rc;
    if (value == NULL || strlen(value) > 65536)
        return moat_err_set(err, MOAT_E_INVAL, "setting \"%s\": value missing or longer than 64 KiB", key);
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_run(st, err,
                         "INSERT INTO settings (name, value) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                         "tt", key, value);
    return moat__store_auto_end(st, own, rc, err);
}

int moat_store_setting_delete(moat_store_t *st, const char *key, moat_err_t *err)
{
    int rc, own = 0;
    int64_t n = 0;
    if ((rc = setting_key_ok(key, err)) != 0)
        return rc;
    if ((rc = moat__store_auto_begin(st, &own, err)) != 0)
        return rc;
    rc = moat__store_int(st, &n, err, "SELECT count(*) FROM settings WHERE name = ?", "t", key);
    if (rc == 0 && n == 0)
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "setting \"%s\" is not set", key);
    if (rc == 0)
        rc = moat__store_run(st, err, "DELETE FROM settings WHERE name = ?", "t", key);
    return moat__store_auto_end(st, own, rc, err);
}
