/*
 * The SQLite backend: one file, WAL, synchronous=FULL, BEGIN IMMEDIATE for writers with a busy timeout.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 10000

struct moat_store_stmt {
    sqlite3_stmt *stmt;
    sqlite3 *db;
};

/*
 * SQLite says "read-only" when the file-format bytes of the header (offsets 18 and 19: 1 for a rollback
 * journal, 2 for WAL) name a version it does not know, which is a damaged header, not a permission.
 * Returns 1 with the two bytes in <b> when that is so.
 */
static int header_damaged(sqlite3 *db, unsigned char b[2])
{
    const char *path = db != NULL ? sqlite3_db_filename(db, "main") : NULL;
    int fd, bad = 0;
    if (path == NULL || path[0] == '\0' || (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return 0;
    if (pread(fd, b, 2, 18) == 2 && (b[0] < 1 || b[0] > 2 || b[1] < 1 || b[1] > 2))
        bad = 1;
    close(fd);
    return bad;
}

/* Turns an SQLite result into a moat code and a sentence a person can act on. */
static int sqlite_fail(sqlite3 *db, int rc, const char *doing, moat_err_t *err)
{
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_FULL:
        moat_err_set(err, MOAT_E_IO, "%s: the disk is full (%s); nothing was changed", doing, msg);
        return moat_err_hint(err, "free some space on the store's file system and try again");
    case SQLITE_IOERR:
        moat_err_set(err, MOAT_E_IO, "%s: I/O error (%s); nothing was changed", doing, msg);
        return moat_err_hint(err, "check the disk (free space, file size limits, errors in the kernel log)");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        moat_err_set(err, MOAT_E_AGAIN, "%s: the store is busy (%s)", doing, msg);
        return moat_err_hint(err, "another moat command is writing; try again");
    case SQLITE_NOTADB:
        return moat_err_set(err, MOAT_E_INVAL, "%s: not a moat store (%s)", doing, msg);
    case SQLITE_CORRUPT:
        moat_err_set(err, MOAT_E_STORE, "%s: the store is damaged (%s)", doing, msg);
        return moat_err_hint(err, "restore it from a backup with 'moat store restore FILE'");
    case SQLITE_READONLY: {
        unsigned char b[2];
        if (header_damaged(db, b)) {
            moat_err_set(err, MOAT_E_STORE,
                         "%s: the store is damaged: its header names file format %u/%u (bytes 18-19), "
                         "where SQLite writes 1 or 2",
                         doing, b[0], b[1]);
            return moat_err_hint(err, "restore it from a backup with 'moat store restore FILE'");
        }
        moat_err_set(err, MOAT_E_PERM, "%s: the store is read-only (%s)", doing, msg);
        return moat_err_hint(err, "check the permissions of the store file and its folder");
    }
    case SQLITE_CANTOPEN:
        moat_err_set(err, MOAT_E_IO, "%s: cannot open the store file (%s)", doing, msg);
        return moat_err_hint(err, "check that the folder exists and that you may write to it");
    case SQLITE_CONSTRAINT:
        return moat_err_set(err, MOAT_E_EXISTS, "%s: %s", doing, msg);
    case SQLITE_NOMEM:
        return moat_err_set(err, MOAT_E_NOMEM, "%s: out of memory", doing);
    default:
        return moat_err_set(err, MOAT_E_STORE, "%s: %s", doing, msg);
    }
}

/*
 * The rows' authentication codes (mac.c): each argument is encoded as 0x00 (NULL) or 0x01, a 4-byte
 * big-endian length and its bytes (numbers as SQLite's text for them), after a version string.
 */
static int row_code(sqlite3_context *ctx, int argc, sqlite3_value **argv, uint8_t out[32])
{
    moat_store_t *st = sqlite3_user_data(ctx);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;
    static const char version[] = "moat row v1";

    for (int pass = 0; pass < 2; pass++) {
        len = sizeof(version);
        if (pass == 1)
            memcpy(buf, version, sizeof(version));
        for (int i = 0; i < argc; i++) {
            int null = sqlite3_value_type(argv[i]) == SQLITE_NULL;
            const void *p = null ? NULL : sqlite3_value_blob(argv[i]);
            size_t n = null ? 0 : (size_t)sqlite3_value_bytes(argv[i]);
            if (pass == 1) {
                buf[len] = null ? 0 : 1;
                if (!null) {
                    buf[len + 1] = (uint8_t)(n >> 24);
                    buf[len + 2] = (uint8_t)(n >> 16);
                    buf[len + 3] = (uint8_t)(n >> 8);
                    buf[len + 4] = (uint8_t)n;
                    if (n > 0)
                        memcpy(buf + len + 5, p, n);
                }
            }
            len += null ? 1 : 5 + n;
        }
        if (pass == 0 && (buf = moat_malloc(cap = len)) == NULL) {
            sqlite3_result_error_nomem(ctx);
            return -1;
        }
    }
    rc = moat__store_row_mac(st, buf, len, out);
    moat_free_secret(&buf, cap); /* the row of a key holds its sealed private key */
    if (rc == MOAT_E_PERM) {
        sqlite3_result_error(
            ctx,
            "the store was opened without its master key, which authenticates every change to "
            "keys, certificates, trust anchors and the CA",
            -1);
        return -1;
    }
    if (rc != 0) {
        sqlite3_result_error(ctx, "computing a row's authentication code failed", -1);
        return -1;
    }
    return 0;
}

/* moat_row_mac(table, cols...): the row's code. */
static void fn_row_mac(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    uint8_t mac[32];
    if (row_code(ctx, argc, argv, mac) == 0)
        sqlite3_result_blob(ctx, mac, sizeof(mac), SQLITE_TRANSIENT);
}

/* moat_row_ok(table, mac, cols...): 1 when <mac> is the row's code, 0 when not, -1 without the master key. */
static void fn_row_ok(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    moat_store_t *st = sqlite3_user_data(ctx);
    sqlite3_value *cols[64];
    uint8_t mac[32];
    const void *have;

    if (!st->have_row_key || st->unchecked) {
        sqlite3_result_int(ctx, -1);
        return;
    }
    if (argc < 2 || argc - 1 > (int)MOAT_ARRAY_LEN(cols)) {
        sqlite3_result_error(ctx, "moat_row_ok: wrong number of arguments", -1);
        return;
    }
    cols[0] = argv[0];
    for (int i = 2; i < argc; i++)
        cols[i - 1] = argv[i];
    if (row_code(ctx, argc - 1, cols, mac) != 0)
        return;
    have = sqlite3_value_blob(argv[1]);
    if (have == NULL || sqlite3_value_bytes(argv[1]) != (int)sizeof(mac) ||
        CRYPTO_memcmp(have, mac, sizeof(mac)) != 0) {
        sqlite3_result_int(ctx, 0);
        return;
    }
    /* The row verifies; is its table the set of rows moat last wrote? Checked in this statement's snapshot,
     * so that a row put back between a check and the read is still found. */
    {
        const char *table = (const char *)sqlite3_value_text(argv[0]);
        moat_err_t err = {0};
        for (int t = 0; table != NULL && t < MOAT__T_COUNT; t++) {
            if (strcmp(table, moat__mac_tables[t].name) != 0)
                continue;
            int ok = moat__store_set_state(st, t, &err);
            if (ok < -1) {
                if (err.code == MOAT_E_NOMEM)
                    sqlite3_result_error_nomem(ctx);
                else
                    sqlite3_result_error(ctx, err.msg, -1);
                return;
            }
            sqlite3_result_int(ctx, ok == 0 ? 2 + t : 1);
            return;
        }
    }
    sqlite3_result_int(ctx, 1);
}

/* moat_set_xor(acc, code...): <acc> (32 bytes) XOR the set element of every code (seal.c). Only inside an
 * explicit transaction: the changes it collects are folded into the seal by moat_store_commit(). */
static void fn_set_xor(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    moat_store_t *st = sqlite3_user_data(ctx);
    uint8_t acc[32], e[32];
    const uint8_t *a = argc > 0 ? sqlite3_value_blob(argv[0]) : NULL;

    if (sqlite3_get_autocommit(st->db)) {
        sqlite3_result_error(ctx, "a change to an authenticated table outside a store transaction", -1);
        return;
    }
    if (a == NULL || sqlite3_value_bytes(argv[0]) != (int)sizeof(acc)) {
        sqlite3_result_error(ctx, "moat_set_xor: bad accumulator", -1);
        return;
    }
    memcpy(acc, a, sizeof(acc));
    for (int i = 1; i < argc; i++) {
        int rc =
            moat__store_set_element(st, sqlite3_value_blob(argv[i]), (size_t)sqlite3_value_bytes(argv[i]), e);
        if (rc == MOAT_E_PERM) {
            sqlite3_result_error(
                ctx,
                "the store was opened without its master key, which authenticates every change "
                "to keys, certificates, trust anchors and the CA",
                -1);
            return;
        }
        if (rc != 0) {
            sqlite3_result_error(ctx, "computing a row's set element failed", -1);
            return;
        }
        for (size_t j = 0; j < sizeof(acc); j++)
            acc[j] ^= e[j];
    }
    sqlite3_result_blob(ctx, acc, sizeof(acc), SQLITE_TRANSIENT);
}

/* moat_set_sum(code): the XOR of the set elements of a table's codes (an aggregate; 32 zero bytes for none).
 */
static void fn_set_sum_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    moat_store_t *st = sqlite3_user_data(ctx);
    uint8_t *acc = sqlite3_aggregate_context(ctx, 32), e[32];
    if (acc == NULL) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (argc != 1 || moat__store_set_element(st, sqlite3_value_blob(argv[0]),
                                             (size_t)sqlite3_value_bytes(argv[0]), e) != 0) {
        sqlite3_result_error(ctx, "computing a row's set element failed", -1);
        return;
    }
    for (size_t j = 0; j < 32; j++)
        acc[j] ^= e[j];
}

static void fn_set_sum_final(sqlite3_context *ctx)
{
    static const uint8_t zero[32];
    const uint8_t *acc = sqlite3_aggregate_context(ctx, 0);
    sqlite3_result_blob(ctx, acc != NULL ? acc : zero, 32, SQLITE_TRANSIENT);
}

static int sq_open(moat_store_t *st, moat_err_t *err)
{
    sqlite3 *db = NULL;
    int rc, oflags = (st->flags & MOAT_STORE_READONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;

    /* The file itself was created (0600) by the caller: SQLite must never create it with the umask's mode. */
    rc = sqlite3_open_v2(st->path, &db, oflags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sqlite_fail(db, rc, "opening the store", err);
        moat_err_prefix(err, "%s", st->path);
        sqlite3_close(db);
        return err->code;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* Only top-level SQL and TEMP triggers may call them: a trigger or view planted in the file cannot. */
    if ((rc = sqlite3_create_function_v2(db, "moat_row_mac", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY, st,
                                         fn_row_mac, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_create_function_v2(db, "moat_row_ok", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY, st,
                                         fn_row_ok, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_create_function_v2(db, "moat_set_xor", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY, st,
                                         fn_set_xor, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_create_function_v2(db, "moat_set_sum", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, st, NULL,
                                         fn_set_sum_step, fn_set_sum_final, NULL)) != SQLITE_OK) {
        sqlite_fail(db, rc, "opening the store", err);
        sqlite3_close(db);
        return err->code;
    }
    st->db = db;
    return 0;
}

static void sq_close(moat_store_t *st)
{
    (void)sqlite3_finalize(st->dv_stmt);
    st->dv_stmt = NULL;
    if (st->db != NULL)
        (void)sqlite3_close_v2(st->db); /* statements are always finalized by their users */
    st->db = NULL;
}

static int sq_exec(moat_store_t *st, const char *sql, moat_err_t *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sqlite_fail(st->db, rc, "updating the store", err);
    return 0;
}

static int sq_prepare(moat_store_t *st, const char *sql, moat_store_stmt_t **out, moat_err_t *err)
{
    moat_store_stmt_t *s = moat_calloc(1, sizeof(*s));
    int rc;
    if (s == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory preparing a store query");
    rc = sqlite3_prepare_v2(st->db, sql, -1, &s->stmt, NULL);
    if (rc != SQLITE_OK) {
        moat_free(&s);
        return sqlite_fail(st->db, rc, "reading the store", err);
    }
    s->db = st->db;
    *out = s;
    return 0;
}

static int bind_rc(moat_store_stmt_t *s, int rc, moat_err_t *err)
{
    if (rc != SQLITE_OK)
        return sqlite_fail(s->db, rc, "preparing a store query", err);
    return 0;
}

static int sq_bind_int(moat_store_stmt_t *s, int idx, int64_t v, moat_err_t *err)
{
    return bind_rc(s, sqlite3_bind_int64(s->stmt, idx, v), err);
}

static int sq_bind_text(moat_store_stmt_t *s, int idx, const char *v, moat_err_t *err)
{
    return bind_rc(s, sqlite3_bind_text(s->stmt, idx, v, -1, SQLITE_TRANSIENT), err);
}

static int sq_bind_blob(moat_store_stmt_t *s, int idx, const void *v, size_t len, moat_err_t *err)
{
    /* A zero-length blob must still be a blob, not NULL. */
    static const unsigned char empty[1];
    return bind_rc(s, sqlite3_bind_blob64(s->stmt, idx, len ? v : empty, len, SQLITE_TRANSIENT), err);
}

static int sq_bind_null(moat_store_stmt_t *s, int idx, moat_err_t *err)
{
    return bind_rc(s, sqlite3_bind_null(s->stmt, idx), err);
}

static int sq_step(moat_store_stmt_t *s, moat_err_t *err)
{
    int rc = sqlite3_step(s->stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sqlite_fail(s->db, rc, "accessing the store", err);
}

static int sq_column_is_null(moat_store_stmt_t *s, int col)
{
    return sqlite3_column_type(s->stmt, col) == SQLITE_NULL;
}

static int64_t sq_column_int(moat_store_stmt_t *s, int col)
{
    return sqlite3_column_int64(s->stmt, col);
}

static const char *sq_column_text(moat_store_stmt_t *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s->stmt, col);
    return t != NULL ? (const char *)t : "";
}

static const void *sq_column_blob(moat_store_stmt_t *s, int col, size_t *len)
{
    const void *b = sqlite3_column_blob(s->stmt, col);
    int n = sqlite3_column_bytes(s->stmt, col);
    *len = n > 0 ? (size_t)n : 0;
    return b;
}

static void sq_finalize(moat_store_stmt_t *s)
{
    if (s == NULL)
        return;
    (void)sqlite3_finalize(s->stmt); /* its error was already reported by step */
    moat_free(&s);
}

static int64_t sq_last_id(moat_store_t *st)
{
    return sqlite3_last_insert_rowid(st->db);
}

static int sq_begin(moat_store_t *st, moat_err_t *err)
{
    int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sqlite_fail(st->db, rc, "starting a store transaction", err);
    return 0;
}

static int sq_commit(moat_store_t *st, moat_err_t *err)
{
    int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite_fail(st->db, rc, "committing to the store", err);
        /* A failed COMMIT may leave the transaction open (SQLITE_BUSY); make sure nothing half-done stays. */
        if (!sqlite3_get_autocommit(st->db))
            (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return err->code;
    }
    return 0;
}

static void sq_rollback(moat_store_t *st)
{
    if (st->db != NULL && !sqlite3_get_autocommit(st->db))
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL); /* nothing more can be done if it fails */
}

static int copy_db(sqlite3 *dst, sqlite3 *src, const char *doing, moat_err_t *err)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    int rc;
    if (b == NULL)
        return sqlite_fail(dst, sqlite3_errcode(dst), doing, err);
    /* One step copies everything under one read lock on the source and one write transaction on the
     * destination: the destination is either untouched or a complete copy. */
    do {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(50);
    } while (rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    (void)sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        return sqlite_fail(dst, rc, doing, err);
    return 0;
}

static int sq_backup_to(moat_store_t *st, const char *dest, moat_err_t *err)
{
    sqlite3 *out = NULL;
    int rc;

    rc = sqlite3_open_v2(dest, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sqlite_fail(out, rc, "opening the backup file", err);
        sqlite3_close(out);
        return err->code;
    }
    rc = copy_db(out, st->db, "writing the backup", err);
    /* A backup is one self-contained file: no write-ahead log beside it. */
    if (rc == 0 && (rc = sqlite3_exec(out, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL)) != SQLITE_OK)
        rc = sqlite_fail(out, rc, "finishing the backup", err);
    if (sqlite3_close(out) != SQLITE_OK && rc == 0)
        rc = moat_err_set(err, MOAT_E_IO, "closing the backup file %s failed", dest);
    return rc;
}

static int sq_replace_from(moat_store_t *st, const char *src, moat_err_t *err)
{
    sqlite3 *in = NULL;
    int rc;

    rc = sqlite3_open_v2(src, &in, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sqlite_fail(in, rc, "opening the restored copy", err);
        sqlite3_close(in);
        return err->code;
    }
    sqlite3_busy_timeout(in, BUSY_TIMEOUT_MS);
    rc = copy_db(st->db, in, "replacing the store", err);
    sqlite3_close(in);
    return rc;
}

static int sq_copy_file(const char *src, const char *dest, moat_err_t *err)
{
    sqlite3 *in = NULL, *out = NULL;
    int rc;

    rc = sqlite3_open_v2(src, &in, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(in, rc, "opening", err);
        goto done;
    }
    sqlite3_busy_timeout(in, BUSY_TIMEOUT_MS);
    rc = sqlite3_open_v2(dest, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(out, rc, "writing a temporary copy", err);
        goto done;
    }
    rc = copy_db(out, in, "reading", err);
done:
    sqlite3_close(in);
    sqlite3_close(out);
    return rc;
}

static int sq_integrity(moat_store_t *st, char *out, size_t outsz, moat_err_t *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL);
    if (rc != SQLITE_OK)
        return sqlite_fail(st->db, rc, "checking the store", err);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        (void)moat_strlcpy(out, t != NULL ? (const char *)t : "",
                           outsz); /* a cut message is still a problem */
        rc = 0;
    } else {
        rc = sqlite_fail(st->db, rc, "checking the store", err);
    }
    sqlite3_finalize(s);
    return rc;
}

static int sq_data_version(moat_store_t *st, int64_t *out, moat_err_t *err)
{
    sqlite3_stmt *s = st->dv_stmt;
    int rc;
    if (s == NULL) {
        rc = sqlite3_prepare_v3(st->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
        if (rc != SQLITE_OK)
            return sqlite_fail(st->db, rc, "reading the store", err);
        st->dv_stmt = s;
    }
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    (void)sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return sqlite_fail(st->db, rc, "reading the store", err);
    return 0;
}

const moat_store_ops_t moat__store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .bind_int = sq_bind_int,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .column_is_null = sq_column_is_null,
    .column_int = sq_column_int,
    .column_text = sq_column_text,
    .column_blob = sq_column_blob,
    .finalize = sq_finalize,
    .last_id = sq_last_id,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .backup_to = sq_backup_to,
    .replace_from = sq_replace_from,
    .copy_file = sq_copy_file,
    .integrity = sq_integrity,
    .data_version = sq_data_version,
};

/* The change poll: its own read-only connection, so that data_version sees every other writer. */
struct moat_store_watch {
    sqlite3 *db;
    sqlite3_stmt *q;
    int64_t last;
    int primed;
};

int moat_store_watch_open(const char *path, moat_store_watch_t **out, moat_err_t *err)
{
    moat_store_watch_t *w;
    int rc;
    const char *p = strncmp(path, "sqlite:", 7) == 0 ? path + 7 : path;

    if ((w = moat_calloc(1, sizeof(*w))) == NULL)
        return moat_err_set(err, MOAT_E_NOMEM, "out of memory opening the store watch");
    /* Read-write (it never writes): a read-only connection to a WAL database depends on the -shm file
     * being there already. No SQLITE_OPEN_CREATE: a missing store stays an error. */
    rc = sqlite3_open_v2(p, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(w->db, "PRAGMA data_version", -1, &w->q, NULL);
    if (rc != SQLITE_OK) {
        sqlite_fail(w->db, rc, "watching the store for changes", err);
        moat_err_prefix(err, "%s", p);
        moat_store_watch_close(w);
        return err->code;
    }
    sqlite3_busy_timeout(w->db, BUSY_TIMEOUT_MS);
    {
        int ignored;
        /* Remember where we start, so that the first poll reports only later commits. */
        if (moat_store_watch_changed(w, &ignored, err) != 0) {
            moat_store_watch_close(w);
            return err->code;
        }
    }
    *out = w;
    return 0;
}

int moat_store_watch_changed(moat_store_watch_t *w, int *changed, moat_err_t *err)
{
    int rc;
    int64_t v;

    *changed = 0;
    rc = sqlite3_step(w->q);
    if (rc != SQLITE_ROW) {
        sqlite_fail(w->db, rc, "polling the store for changes", err);
        sqlite3_reset(w->q);
        return err->code;
    }
    v = sqlite3_column_int64(w->q, 0);
    sqlite3_reset(w->q);
    if (w->primed && v != w->last)
        *changed = 1;
    w->last = v;
    w->primed = 1;
    return 0;
}

void moat_store_watch_close(moat_store_watch_t *w)
{
    if (w == NULL)
        return;
    sqlite3_finalize(w->q);
    sqlite3_close(w->db);
    moat_free(&w);
}
