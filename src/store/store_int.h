/*
 * store internals: the backend vtable, the store object, query helpers shared by the store's modules.
 * Private to src/store/.
 */
#ifndef MOAT_STORE_INT_H
#define MOAT_STORE_INT_H

#include "store/store.h"

#include <stdarg.h>

typedef struct moat_store_stmt moat_store_stmt_t; /* a prepared statement of the backend */

/*
 * A backend: statement-level primitives, so that the store's logic is written once in portable SQL
 * (placeholders are "?"; a PostgreSQL backend rewrites them to $n). Every function that can fail fills
 * <err> with what failed and the backend's own message.
 */
struct moat_store_ops {
    const char *name;
    /* Opens st->path (st->flags says create/readonly); does not check the schema. */
    int (*open)(moat_store_t *st, moat_err_t *err);
    void (*close)(moat_store_t *st);
    /* Runs one or more parameterless statements. */
    int (*exec)(moat_store_t *st, const char *sql, moat_err_t *err);
    int (*prepare)(moat_store_t *st, const char *sql, moat_store_stmt_t **out, moat_err_t *err);
    int (*bind_int)(moat_store_stmt_t *s, int idx, int64_t v, moat_err_t *err);
    int (*bind_text)(moat_store_stmt_t *s, int idx, const char *v, moat_err_t *err);
    int (*bind_blob)(moat_store_stmt_t *s, int idx, const void *v, size_t len, moat_err_t *err);
    int (*bind_null)(moat_store_stmt_t *s, int idx, moat_err_t *err);
    /* 1: a row is ready, 0: done, <0: error. */
    int (*step)(moat_store_stmt_t *s, moat_err_t *err);
    int (*column_is_null)(moat_store_stmt_t *s, int col);
    int64_t (*column_int)(moat_store_stmt_t *s, int col);
    const char *(*column_text)(moat_store_stmt_t *s, int col); /* "" for NULL; valid until next step */
    const void *(*column_blob)(moat_store_stmt_t *s, int col, size_t *len);
    void (*finalize)(moat_store_stmt_t *s);
    /* Id of the row the last INSERT created. */
    int64_t (*last_id)(moat_store_t *st);
    /* Write transaction (SQLite: BEGIN IMMEDIATE), commit, rollback. */
    int (*begin)(moat_store_t *st, moat_err_t *err);
    int (*commit)(moat_store_t *st, moat_err_t *err);
    void (*rollback)(moat_store_t *st);
    /* Whole-store copies: to a new file, and from a file over the live store in one transaction. */
    int (*backup_to)(moat_store_t *st, const char *dest, moat_err_t *err);
    int (*replace_from)(moat_store_t *st, const char *src, moat_err_t *err);
    /* Copies the store file <src> (not necessarily a moat store) consistently into the existing file <dest>.
     */
    int (*copy_file)(const char *src, const char *dest, moat_err_t *err);
    /* "ok" or the first problem, into <out>. */
    int (*integrity)(moat_store_t *st, char *out, size_t outsz, moat_err_t *err);
    /* A number that changes whenever another connection (any process) committed to the store since the
     * last call; this connection's own commits do not change it. */
    int (*data_version)(moat_store_t *st, int64_t *out, moat_err_t *err);
};

extern const moat_store_ops_t moat__store_sqlite_ops;

enum {
    MOAT__STORE_NO_PERM_CHECK = 1 << 16, /* internal: a temporary copy (restore) */
    MOAT__STORE_QUIET_JOURNAL = 1 << 17  /* internal: rollback journal instead of WAL (backup files) */
};

/* The tables whose rows are authenticated, in the order of the seal (seal.c). */
enum {
    MOAT__T_KEYS,
    MOAT__T_CERTS,
    MOAT__T_CERT_CHAIN,
    MOAT__T_ANCHORS,
    MOAT__T_CA,
    MOAT__T_ISSUED,
    MOAT__T_CRLS,       /* schema 6 */
    MOAT__T_CERT_NAMES, /* schema 6 */
    MOAT__T_COUNT
};
#define MOAT__T_BIT(t) (1u << (t))

typedef struct moat__mac_table {
    const char *name;
    const char *cols;  /* the columns the row's code covers */
    const char *label; /* SQL naming a row for people */
    const char *what;  /* the rows, for people ("trust anchors") */
} moat__mac_table_t;
extern const moat__mac_table_t moat__mac_tables[MOAT__T_COUNT];

/* The check of every authenticated table's set of rows against the seal, cached per connection. */
typedef struct moat__row_sets {
    int collecting; /* this connection collects its changes (a writable one) */
    int valid;      /* the fields below describe the store at data version <dv> */
    int tx_valid;   /* checked inside the open write transaction (nobody else can commit) */
    int64_t dv;     /* the backend's data_version when checked */
    int seal_bad;   /* the seal row's own code does not verify */
    unsigned bad;   /* MOAT__T_BIT() of each table whose rows are not the set moat last wrote */
    int64_t have[MOAT__T_COUNT], want[MOAT__T_COUNT]; /* rows found; rows moat's last change left */
} moat__row_sets_t;

struct moat_store {
    const moat_store_ops_t *ops;
    void *db; /* backend connection (sqlite3 *) */
    unsigned flags;
    char path[4096];
    char mk_path[4096];
    unsigned char mk[MOAT_STORE_MASTER_KEY_LEN]; /* cleansed on close */
    int have_mk;
    unsigned char row_key[32]; /* HKDF of the master key: the rows' authentication codes (mac.c) */
    int have_row_key;
    int unchecked;                /* reads take rows as they are (a restore reading the store it replaces) */
    int created;                  /* the store file was created by this open */
    int in_tx;                    /* inside moat_store_begin() */
    int tx_bumped;                /* the generation was bumped in this transaction */
    int schema;                   /* schema version after open */
    int schema_found;             /* schema version before any migration by this open (0: created) */
    char upgrade_copy[4096 + 32]; /* the copy of the file kept before this open upgraded it, or "" */
    void *dv_stmt;                /* the backend's prepared data_version query, or NULL */
    moat__row_sets_t sets;        /* what the last check of the row sets found (seal.c) */
};

/* Query helpers. <types> names the arguments: 'i' int64_t, 'd' int, 't' const char *, 'b' const void * +
 * size_t, 'n' (no argument) NULL. */
int moat__store_query(moat_store_t *st, moat_store_stmt_t **out, moat_err_t *err, const char *sql,
                      const char *types, ...);
/* Runs a statement to completion; *changes (may be NULL) receives the rows it changed (via a count). */
int moat__store_run(moat_store_t *st, moat_err_t *err, const char *sql, const char *types, ...);
/* Runs a query that yields one integer (0 rows: MOAT_E_NOTFOUND). */
int moat__store_int(moat_store_t *st, int64_t *out, moat_err_t *err, const char *sql, const char *types, ...);
int moat__store_copy_blob(moat_store_stmt_t *s, const moat_store_ops_t *ops, int col, moat_store_blob_t *out,
                          moat_err_t *err);
char *moat__store_copy_text(moat_store_stmt_t *s, const moat_store_ops_t *ops, int col, moat_err_t *err);

/* Begins a transaction unless one is open; *own says whether this call must end it. */
int moat__store_auto_begin(moat_store_t *st, int *own, moat_err_t *err);
/* Ends a transaction begun by moat__store_auto_begin(): commits when rc == 0, else rolls back. */
int moat__store_auto_end(moat_store_t *st, int own, int rc, moat_err_t *err);
/* Refuses writes on a read-only store. */
int moat__store_writable(moat_store_t *st, moat_err_t *err);

int moat__store_check_name(const char *what, const char *name, moat_err_t *err);
int64_t moat__store_now(void);

/* Master key and private-key encryption (crypt.c). */
int moat__store_mk_load(moat_store_t *st, int may_create, int64_t nkeys, moat_err_t *err);
/* Encrypts <plain> for key row <id>: *out is a new buffer (version || nonce || ciphertext || tag). */
int moat__store_seal(const moat_store_t *st, int64_t id, const uint8_t *plain, size_t len, uint8_t **out,
                     size_t *outlen, moat_err_t *err);
/* Decrypts; *plain is a new buffer the caller frees with moat_free_secret(). */
int moat__store_open_sealed(const moat_store_t *st, int64_t id, const uint8_t *sealed, size_t len,
                            uint8_t **plain, size_t *plainlen, moat_err_t *err);
/* Checks that a file's mode lets nobody else read it nor group/others write it. */
int moat__store_check_mode(const char *what, const char *path, int strict, moat_err_t *err);

/*
 * Authenticated rows (mac.c). MOAT__MAC_COLS_<table> lists the columns a row's code covers, in order;
 * the SQL function moat_row_mac('<table>', cols...) computes it and moat_row_ok('<table>', mac, cols...)
 * says 1 (verifies), 0 (does not) or -1 (no master key: unchecked). Both exist only on moat's own
 * connections and only for top-level SQL and TEMP triggers (SQLITE_DIRECTONLY): a trigger planted in the
 * store cannot compute a code. Temporary triggers seal every row this connection writes.
 */
#define MOAT__MAC_COLS_anchors "id, name, der, subject, fingerprint, not_after, created"
#define MOAT__MAC_COLS_ca "role, key_id, der, base_url, crl_number, created, updated"
#define MOAT__MAC_COLS_issued                                                                                \
    "id, serial, name, subject, profile, issuer, der, issued_at, not_after, revoked, reason"
#define MOAT__MAC_COLS_certs                                                                                 \
    "id, key_id, der, subject, issuer, sans, serial, fingerprint, not_before, not_after, installed, "        \
    "is_current"
#define MOAT__MAC_COLS_cert_chain "cert_id, pos, der"
#define MOAT__MAC_COLS_keys                                                                                  \
    "id, name, state, algorithm, exportable, private_enc, pubkey, csr, created, updated"
#define MOAT__MAC_COLS_crls                                                                                  \
    "url, issuer_fp, issuer_der, issuer_subject, der, this_update, next_update, revoked, fetched_at, "       \
    "attempted_at, error"
#define MOAT__MAC_COLS_cert_names "cert_id, name"
/* A result column: whether the row of <table> that <outer> (the query's name for it) reads verifies. */
#define MOAT__ROW_OK(table, outer)                                                                           \
    "(SELECT moat_row_ok('" #table "', mac, " MOAT__MAC_COLS_##table                                         \
        ") FROM " #table " moat_x WHERE moat_x.rowid = " outer ".rowid)"
/* The HMAC of one encoded row; 0 or MOAT_E_PERM without the master key. */
int moat__store_row_mac(const moat_store_t *st, const uint8_t *msg, size_t len, uint8_t out[32]);
/* Refuses a row (MOAT_E_STORE) whose MOAT__ROW_OK column <col> of <s> says 0; <what> names it. */
int moat__store_row_check(moat_store_t *st, moat_store_stmt_t *s, int col, moat_err_t *err, const char *fmt,
                          ...) MOAT_PRINTF(5, 6);
/* Fills <err>: row <what> was changed without the master key (MOAT_E_STORE). */
int moat__store_row_refused(moat_store_t *st, const char *what, moat_err_t *err);
/* On a writable connection: refuses a store with triggers of its own, installs the sealing triggers. */
int moat__store_mac_install(moat_store_t *st, moat_err_t *err);
/* Loads the master key for a migration that seals rows (MOAT_E_PERM when the command runs without it). */
int moat__store_need_row_key(moat_store_t *st, moat_err_t *err);
/* Adds the mac column to tables [first, first + n) and seals their existing rows (needs the master key
 * when there are rows): schema 5 (keys .. issued) and 6 (crls, cert_names). */
int moat__store_mac_migrate(moat_store_t *st, int first, int n, moat_err_t *err);

/*
 * Row sets (seal.c): the seal row records, per authenticated table, how many rows moat's last change left
 * and a keyed digest of their codes, so that a row removed, or an older copy of one put back, is found.
 * Temporary triggers collect each transaction's changes; moat_store_commit() folds them into the seal.
 */
/* The element of one row code in its table's digest (32 bytes; 0 for an empty code). */
int moat__store_set_element(const moat_store_t *st, const void *mac, size_t len, uint8_t out[32]);
/* On a writable connection: the temporary table and triggers that collect a transaction's changes. */
int moat__store_sets_install(moat_store_t *st, moat_err_t *err);
/* Before COMMIT: folds the transaction's changes into the seal (nothing when there were none). */
int moat__store_sets_commit(moat_store_t *st, moat_err_t *err);
/* Schema 6: the seal row, made from the rows there are (only when there are any). */
int moat__store_sets_reset(moat_store_t *st, moat_err_t *err);
/* Whether table <t>'s rows are the set moat last wrote: 1 yes, 0 no, -1 unchecked (no master key, a
 * restore reading what it replaces), <0 an error. Checks again when another connection committed. */
int moat__store_set_state(moat_store_t *st, int t, moat_err_t *err);
/* Refuses (MOAT_E_STORE naming the table) when a table of <mask> is not the set moat last wrote; <what>
 * (or NULL) names what was being read. */
int moat__store_sets_check(moat_store_t *st, unsigned mask, const char *what, moat_err_t *err);
/* Fills <err> for table <t> found changed; <what> names what moat was reading, or is NULL. */
int moat__store_set_refused(moat_store_t *st, int t, const char *what, moat_err_t *err);

/* Certificate metadata parsed from DER (certs.c). */
typedef struct moat__cert_meta {
    char *subject, *issuer, *sans;
    char serial[MOAT_STORE_SERIAL_MAX];
    char fingerprint[MOAT_STORE_FPR_LEN + 1];
    int64_t not_before, not_after;
} moat__cert_meta_t;
int moat__store_cert_meta(const uint8_t *der, size_t len, moat__cert_meta_t *m, moat_err_t *err);
void moat__store_cert_meta_dispose(moat__cert_meta_t *m);
/* Rewrites cert_names for certificate <cert_id> from its SAN string. */
int moat__store_cert_names_set(moat_store_t *st, int64_t cert_id, const char *sans, moat_err_t *err);

/* Schema (schema.c). */
int moat__store_schema_prepare(moat_store_t *st, moat_err_t *err);
extern const char *const moat__store_schema_v1;

#endif
