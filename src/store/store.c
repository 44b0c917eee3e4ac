/*
 * store: opening, transactions and the query helpers the other store modules use.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t moat__store_now(void)
{
    return (int64_t)time(NULL);
}

void moat_store_blob_dispose(moat_store_blob_t *b)
{
    if (b == NULL)
        return;
    moat_free(&b->data);
    b->len = 0;
}

int moat__store_check_name(const char *what, const char *name, moat_err_t *err)
{
    return moat_name_check(what, name, err);
}

/* Binds arguments described by <types> (see store_int.h). */
static int bind_args(moat_store_t *st, moat_store_stmt_t *s, const char *types, va_list ap, moat_err_t *err)
{
    int rc = 0, idx = 1;
    for (const char *t = types; *t != '\0' && rc == 0; t++, idx++) {
        switch (*t) {
        case 'i':
            rc = st->ops->bind_int(s, idx, va_arg(ap, int64_t), err);
            break;
        case 'd':
            rc = st->ops->bind_int(s, idx, (int64_t)va_arg(ap, int), err);
            break;
        case 't': {
            const char *v = va_arg(ap, const char *);
            rc = v != NULL ? st->ops->bind_text(s, idx, v, err) : st->ops->bind_null(s, idx, err);
            break;
        }
        case 'b': {
            const void *v = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            rc = st->ops->bind_blob(s, idx, v, len, err);
            break;
        }
        case 'n':
            rc = st->ops->bind_null(s, idx, err);
            break;
        default:
            moat_panic("bad store query argument type '%c'", *t);
        }
    }
    return rc;
}

static int vquery(moat_store_t *st, moat_store_stmt_t **out, moat_err_t *err, const char *sql,
                  const char *types, va_list ap)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    if ((rc = st->ops->prepare(st, sql, &s, err)) != 0)
        return rc;
    if ((rc = bind_args(st, s, types, ap, err)) != 0) {
        st->ops->finalize(s);
        return rc;
    }
    *out = s;
    return 0;
}

int moat__store_query(moat_store_t *st, moat_store_stmt_t **out, moat_err_t *err, const char *sql,
                      const char *types, ...)
{
    va_list ap;
    int rc;
    va_start(ap, types);
    rc = vquery(st, out, err, sql, types, ap);
    va_end(ap);
    return rc;
}

int moat__store_run(moat_store_t *st, moat_err_t *err, const char *sql, const char *types, ...)
{
    moat_store_stmt_t *s = NULL;
    va_list ap;
    int rc;
    va_start(ap, types);
    if ((rc = vquery(st, &s, err, sql, types, ap)) == 0) {
        while ((rc = st->ops->step(s, err)) == 1)
            ;
        st->ops->finalize(s);
    }
    va_end(ap);
    return rc;
}

int moat__store_int(moat_store_t *st, int64_t *out, moat_err_t *err, const char *sql, const char *types, ...)
{
    moat_store_stmt_t *s = NULL;
    va_list ap;
    int rc;
    va_start(ap, types);
    rc = vquery(st, &s, err, sql, types, ap);
    va_end(ap);
    if (rc != 0)
        return rc;
    rc = st->ops->step(s, err);
    if (rc == 1) {
        *out = st->ops->column_int(s, 0);
        rc = 0;
    } else if (rc == 0) {
        rc = moat_err_set(err, MOAT_E_NOTFOUND, "no such row in the store");
    }
    st->ops->finalize(s);
    return rc;
}

int moat__store_copy_blob(moat_store_stmt_t *s, const moat_store_ops_t *ops, int col, moat_store_blob_t *out,
                          moat_err_t *err)
{
    size_t len = 0;
    const void *p = ops->column_blob(s, col, &len);
    out->data = NULL;
    out->len = 0;
    if (len == 0 || p == NULL)
        return 0;
    if ((out->data = moat_malloc(len)) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the store");
    memcpy(out->data, p, len);
    out->len = len;
    return 0;
}

char *moat__store_copy_text(moat_store_stmt_t *s, const moat_store_ops_t *ops, int col, moat_err_t *err)
{
    char *t = moat_strdup(ops->column_text(s, col));
    if (t == NULL)
        moat_err_set(err, MOAT_E_NOMEM, "out of memory reading the store");
    return t;
}

int moat__store_writable(moat_store_t *st, moat_err_t *err)
{
    if (st->flags & MOAT_STORE_READONLY)
        return moat_err_set(err, MOAT_E_STATE, "the store %s was opened read-only", st->path);
    return 0;
}

int moat__store_auto_begin(moat_store_t *st, int *own, moat_err_t *err)
{
    int rc;
    *own = 0;
    if ((rc = moat__store_writable(st, err)) != 0)
        return rc;
    if (st->in_tx)
        return 0;
    if ((rc = moat_store_begin(st, err)) != 0)
        return rc;
    *own = 1;
    return 0;
}

int moat__store_auto_end(moat_store_t *st, int own, int rc, moat_err_t *err)
{
    if (!own)
        return rc;
    if (rc != 0) {
        moat_store_rollback(st);
        return rc;
    }
    return moat_store_commit(st, err);
}

/* Creates the folders of <path> that do not exist yet, 0700. */
static int make_parents(const char *path, moat_err_t *err)
{
    char dir[PATH_MAX];
    if (moat_strlcpy(dir, path, sizeof(dir)) != 0)
        return moat_err_set(err, MOAT_E_INVAL, "path too long: %s", path);
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            moat_err_set(err, MOAT_E_IO, "cannot create folder %s for the store: %s", dir, strerror(errno));
            return moat_err_hint(err, "create it yourself (mode 0700) or choose another --store");
        }
        *p = '/';
    }
    return 0;
}

int moat_store_open(const char *path, const char *master_key_path, unsigned flags, moat_store_t **out,
                    moat_err_t *err)
{
    moat_store_t *st;
    struct stat sb;
    int rc, exists;
    int64_t nkeys = 0;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return moat_err_set(err, MOAT_E_INVAL, "no store path given");
    if (strncmp(path, "sqlite:", 7) == 0)
        path += 7;
    if (strstr(path, "://") != NULL) {
        moat_err_set(err, MOAT_E_INVAL, "store \"%s\": this moat supports SQLite stores only", path);
        return moat_err_hint(err, "pass a file path as --store");
    }
    if (master_key_path == NULL && !(flags & MOAT_STORE_NO_MASTER_KEY))
        return moat_err_set(err, MOAT_E_INVAL, "no master key path given for store %s", path);
    /* The master key lives in the handle: pages kept out of core dumps and swap. */
    if ((st = moat_secret_alloc(sizeof(*st))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory opening the store");
    st->ops = &moat__store_sqlite_ops;
    st->flags = flags;
    if (moat_strlcpy(st->path, path, sizeof(st->path)) != 0 ||
        (master_key_path != NULL && moat_strlcpy(st->mk_path, master_key_path, sizeof(st->mk_path)) != 0)) {
        moat_secret_free(&st, sizeof(*st));
        return moat_err_set(err, MOAT_E_INVAL, "store path too long: %s", path);
    }

    exists = stat(path, &sb) == 0;
    if (!exists && errno != ENOENT) {
        rc = moat_err_set(err, MOAT_E_IO, "cannot access store %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!exists) {
        int fd;
        if (!(flags & MOAT_STORE_CREATE) || (flags & MOAT_STORE_READONLY)) {
            moat_err_set(err, MOAT_E_NOTFOUND, "there is no store at %s", path);
            rc = moat_err_hint(err, "create one with 'moat key new' or 'moat ca init', or pass --store PATH");
            goto fail;
        }
        if ((rc = make_parents(path, err)) != 0)
            goto fail;
        /* Created here with 0600 so that SQLite (which would use the umask) never makes it readable. */
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            close(fd);
            st->created = 1;
        } else if (errno != EEXIST) {
            rc = moat_err_set(err, MOAT_E_IO, "cannot create store %s: %s", path, strerror(errno));
            goto fail;
        }
        /* EEXIST: another process is creating the same store right now; it is opened like any other. */
    }
    if (!st->created) {
        if (stat(path, &sb) != 0) {
            rc = moat_err_set(err, MOAT_E_IO, "cannot access store %s: %s", path, strerror(errno));
            goto fail;
        }
        if (!S_ISREG(sb.st_mode)) {
            rc = moat_err_set(err, MOAT_E_INVAL, "store %s is not a regular file", path);
            goto fail;
        }
        if (!(flags & MOAT__STORE_NO_PERM_CHECK) && (rc = moat__store_check_mode("store", path, 0, err)) != 0)
            goto fail;
    }

    if ((rc = st->ops->open(st, err)) != 0)
        goto fail;
    if ((rc = moat__store_schema_prepare(st, err)) != 0)
        goto fail;
    /* From here on other processes may use the new store: a later failure must not remove it. */
    st->created = 0;
    if (!(flags & MOAT_STORE_NO_MASTER_KEY) && !st->have_mk) {
        if ((rc = moat__store_int(st, &nkeys, err, "SELECT count(*) FROM keys", "")) != 0)
            goto fail;
        if ((rc = moat__store_mk_load(st, !(flags & MOAT_STORE_READONLY), nkeys, err)) != 0)
            goto fail;
    }
    /* What this connection writes is sealed under the master key (and refused without it). */
    if (!(flags & MOAT_STORE_READONLY) && (rc = moat__store_mac_install(st, err)) != 0)
        goto fail;
    *out = st;
    return 0;

fail:
    if (st->db != NULL)
        st->ops->close(st);
    /* A store this call created but could not set up is removed again: no half-made store remains. */
    if (st->created) {
        char side[PATH_MAX + 8];
        (void)unlink(st->path);
        snprintf(side, sizeof(side), "%s-wal", st->path);
        (void)unlink(side);
        snprintf(side, sizeof(side), "%s-shm", st->path);
        (void)unlink(side);
    }
    moat_secret_free(&st, sizeof(*st));
    return rc;
}

int moat_store_open_key_if_readable(const char *path, const char *master_key_path, unsigned flags,
                                    moat_store_t **out, moat_err_t *err)
{
    flags &= ~(unsigned)MOAT_STORE_NO_MASTER_KEY;
    if (master_key_path != NULL && master_key_path[0] != '\0' && access(master_key_path, R_OK) == 0 &&
        moat_store_open(path, master_key_path, flags, out, err) == 0)
        return 0;
    moat_err_clear(err);
    return moat_store_open(path, NULL, flags | MOAT_STORE_NO_MASTER_KEY, out, err);
}

void moat_store_close(moat_store_t *st)
{
    if (st == NULL)
        return;
    if (st->in_tx)
        moat_store_rollback(st);
    st->ops->close(st);
    moat_secret_free(&st, sizeof(*st));
}

const char *moat_store_path(const moat_store_t *st)
{
    return st->path;
}

const char *moat_store_upgraded(const moat_store_t *st, int *from)
{
    if (st->upgrade_copy[0] == '\0')
        return NULL;
    *from = st->schema_found;
    return st->upgrade_copy;
}

const char *moat_store_master_key_path(const moat_store_t *st)
{
    return st->mk_path;
}

const char *moat_store_backend(const moat_store_t *st)
{
    return st->ops->name;
}

int moat_store_schema_version(const moat_store_t *st)
{
    return st->schema;
}

int moat_store_begin(moat_store_t *st, moat_err_t *err)
{
    int rc;
    if ((rc = moat__store_writable(st, err)) != 0)
        return rc;
    if (st->in_tx)
        return moat_err_set(err, MOAT_E_STATE, "a store transaction is already open");
    if ((rc = st->ops->begin(st, err)) != 0)
        return rc;
    st->in_tx = 1;
    st->tx_bumped = 0;
    st->sets.tx_valid = 0;
    return 0;
}

int moat_store_commit(moat_store_t *st, moat_err_t *err)
{
    int rc;
    if (!st->in_tx)
        return moat_err_set(err, MOAT_E_STATE, "no store transaction is open");
    /* The seal takes this transaction's changes to authenticated tables, in the same commit. */
    if ((rc = moat__store_sets_commit(st, err)) != 0) {
        moat_store_rollback(st);
        return moat_err_prefix(err, "%s", st->path);
    }
    st->in_tx = 0;
    st->tx_bumped = 0;
    st->sets.tx_valid = 0;
    if ((rc = st->ops->commit(st, err)) != 0) {
        st->sets.valid = 0;
        return moat_err_prefix(err, "%s", st->path);
    }
    return 0;
}

void moat_store_rollback(moat_store_t *st)
{
    if (st == NULL || !st->in_tx)
        return;
    st->ops->rollback(st);
    st->in_tx = 0;
    st->tx_bumped = 0;
    st->sets.valid = st->sets.tx_valid = 0;
}

int moat_store_in_transaction(const moat_store_t *st)
{
    return st->in_tx;
}
