/*
 * The schema: version 1 as first shipped, then one migration per version. A new store is made by
 * creating version 1 and running every migration, so the upgrade path is exercised on every install.
 * Types are the portable subset (INTEGER, TEXT, BLOB -> BYTEA on PostgreSQL).
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define MOAT_APPLICATION_ID 1836016756 /* "moat" in the SQLite header */

/* Version 1, kept byte for byte: tests/data/store/schema_v1.sql is this text plus sample rows. */
const char *const moat__store_schema_v1 =
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);\n"
    "CREATE TABLE keys (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL,\n"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),\n"
    "  algorithm TEXT NOT NULL,\n"
    "  exportable INTEGER NOT NULL DEFAULT 0,\n"
    "  private_enc BLOB NOT NULL,\n"
    "  pubkey BLOB NOT NULL,\n"
    "  csr BLOB,\n"
    "  created INTEGER NOT NULL,\n"
    "  updated INTEGER NOT NULL\n"
    ");\n"
    "CREATE UNIQUE INDEX keys_live_name ON keys (name, state) WHERE state <> 'retired';\n"
    "CREATE TABLE certs (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  key_id INTEGER NOT NULL REFERENCES keys (id) ON DELETE CASCADE,\n"
    "  der BLOB NOT NULL,\n"
    "  subject TEXT NOT NULL,\n"
    "  issuer TEXT NOT NULL,\n"
    "  sans TEXT NOT NULL,\n"
    "  serial TEXT NOT NULL,\n"
    "  fingerprint TEXT NOT NULL,\n"
    "  not_before INTEGER NOT NULL,\n"
    "  not_after INTEGER NOT NULL,\n"
    "  installed INTEGER NOT NULL,\n"
    "  is_current INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE INDEX certs_key ON certs (key_id);\n"
    "CREATE TABLE cert_chain (\n"
    "  cert_id INTEGER NOT NULL REFERENCES certs (id) ON DELETE CASCADE,\n"
    "  pos INTEGER NOT NULL,\n"
    "  der BLOB NOT NULL,\n"
    "  PRIMARY KEY (cert_id, pos)\n"
    ");\n"
    "CREATE TABLE anchors (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL UNIQUE,\n"
    "  der BLOB NOT NULL,\n"
    "  subject TEXT NOT NULL,\n"
    "  fingerprint TEXT NOT NULL UNIQUE,\n"
    "  not_after INTEGER NOT NULL,\n"
    "  created INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE ca (\n"
    "  role TEXT PRIMARY KEY CHECK (role IN ('root', 'intermediate')),\n"
    "  key_id INTEGER REFERENCES keys (id) ON DELETE SET NULL,\n"
    "  der BLOB NOT NULL,\n"
    "  base_url TEXT NOT NULL DEFAULT '',\n"
    "  crl_number INTEGER NOT NULL DEFAULT 0,\n"
    "  created INTEGER NOT NULL,\n"
    "  updated INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE issued (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  serial TEXT NOT NULL UNIQUE,\n"
    "  name TEXT NOT NULL DEFAULT '',\n"
    "  subject TEXT NOT NULL,\n"
    "  profile TEXT NOT NULL,\n"
    "  issuer TEXT NOT NULL,\n"
    "  der BLOB NOT NULL,\n"
    "  issued_at INTEGER NOT NULL,\n"
    "  not_after INTEGER NOT NULL,\n"
    "  revoked INTEGER NOT NULL DEFAULT 0,\n"
    "  reason INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE TABLE audit (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  at INTEGER NOT NULL,\n"
    "  actor TEXT NOT NULL,\n"
    "  action TEXT NOT NULL,\n"
    "  object TEXT NOT NULL,\n"
    "  detail TEXT NOT NULL DEFAULT ''\n"
    ");\n"
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE server_status (\n"
    "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
    "  applied_generation INTEGER NOT NULL,\n"
    "  refusal TEXT NOT NULL,\n"
    "  pid INTEGER NOT NULL,\n"
    "  updated INTEGER NOT NULL\n"
    ");\n"
    "INSERT INTO meta (name, value) VALUES ('application', 'moat');\n"
    "INSERT INTO meta (name, value) VALUES ('schema_version', '1');\n"
    "INSERT INTO generation (id, value) VALUES (1, 1);\n"
    "INSERT INTO server_status (id, applied_generation, refusal, pid, updated) VALUES (1, -1, '', 0, 0);\n"
    "PRAGMA application_id = 1836016756;\n"
    "PRAGMA user_version = 1;\n";

/*
 * Version 2: host names of certificates get their own indexed table (certificate: auto looks them up
 * per site), and the server can record which generation it refused.
 */
static int migrate_v2(moat_store_t *st, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc;
    static const char ddl[] =
        "CREATE TABLE cert_names (\n"
        "  cert_id INTEGER NOT NULL REFERENCES certs (id) ON DELETE CASCADE,\n"
        "  name TEXT NOT NULL,\n"
        "  PRIMARY KEY (cert_id, name)\n"
        ");\n"
        "CREATE INDEX cert_names_name ON cert_names (name);\n"
        "ALTER TABLE server_status ADD COLUMN refused_generation INTEGER NOT NULL DEFAULT 0;\n";

    if ((rc = st->ops->exec(st, ddl, err)) != 0)
        return rc;
    if ((rc = moat__store_query(st, &s, err, "SELECT id, sans FROM certs ORDER BY id", "")) != 0)
        return rc;
    /* A second statement may run while this one reads: SQLite and PostgreSQL both allow it in one
     * transaction, and cert_names is not the table being read. */
    while ((rc = st->ops->step(s, err)) == 1) {
        char *sans = moat__store_copy_text(s, st->ops, 1, err);
        if (sans == NULL) {
            rc = err->code;
            break;
        }
        rc = moat__store_cert_names_set(st, st->ops->column_int(s, 0), sans, err);
        moat_free(&sans);
        if (rc != 0)
            break;
    }
    st->ops->finalize(s);
    return rc;
}

/*
 * Version 3: CRLs of the client-certificate CAs moat does not run itself, fetched by the server from
 * their distribution points. One row per (URL, issuing CA): the issuing certificate is kept so that a
 * refreshed CRL is verified against the same key; der is the last CRL that verified (empty until one did).
 */
static int migrate_v3(moat_store_t *st, moat_err_t *err)
{
    static const char ddl[] = "CREATE TABLE crls (\n"
                              "  url TEXT NOT NULL,\n"
                              "  issuer_fp TEXT NOT NULL,\n"
                              "  issuer_der BLOB NOT NULL,\n"
                              "  issuer_subject TEXT NOT NULL,\n"
                              "  der BLOB NOT NULL,\n"
                              "  this_update INTEGER NOT NULL DEFAULT 0,\n"
                              "  next_update INTEGER NOT NULL DEFAULT 0,\n"
                              "  revoked INTEGER NOT NULL DEFAULT 0,\n"
                              "  fetched_at INTEGER NOT NULL DEFAULT 0,\n"
                              "  attempted_at INTEGER NOT NULL DEFAULT 0,\n"
                              "  error TEXT NOT NULL DEFAULT '',\n"
                              "  PRIMARY KEY (url, issuer_fp)\n"
                              ");\n";
    return st->ops->exec(st, ddl, err);
}

/*
 * Version 4: the ACME server's state. Accounts, orders, authorizations and challenges are JSON documents
 * (as served, RFC 8555 §7.1) keyed by kind and id, with the columns lookups need beside them; external
 * account binding keys have their own table since the HMAC key is sealed under the master key.
 */
static int migrate_v4(moat_store_t *st, moat_err_t *err)
{
    static const char ddl[] = "CREATE TABLE acme_objects (\n"
                              "  kind TEXT NOT NULL CHECK (kind IN ('account', 'order', 'authz', 'chall')),\n"
                              "  id TEXT NOT NULL,\n"
                              "  parent TEXT NOT NULL DEFAULT '',\n"
                              "  account TEXT NOT NULL DEFAULT '',\n"
                              "  lookup TEXT NOT NULL DEFAULT '',\n"
                              "  status TEXT NOT NULL,\n"
                              "  created INTEGER NOT NULL,\n"
                              "  expires INTEGER NOT NULL DEFAULT 0,\n"
                              "  doc TEXT NOT NULL,\n"
                              "  PRIMARY KEY (kind, id)\n"
                              ");\n"
                              "CREATE INDEX acme_objects_lookup ON acme_objects (kind, lookup);\n"
                              "CREATE INDEX acme_objects_parent ON acme_objects (kind, parent);\n"
                              "CREATE INDEX acme_objects_account ON acme_objects (kind, account, created);\n"
                              "CREATE TABLE acme_eab (\n"
                              "  id INTEGER PRIMARY KEY,\n"
                              "  kid TEXT NOT NULL UNIQUE,\n"
                              "  hmac BLOB NOT NULL,\n"
                              "  created INTEGER NOT NULL,\n"
                              "  account TEXT NOT NULL DEFAULT ''\n"
                              ");\n";
    return st->ops->exec(st, ddl, err);
}

/*
 * Version 5: keys, certificates, chains, trust anchors, the CA and issued certificates get a mac column,
 * their authentication code under the master key (mac.c); every existing row is sealed here, so the
 * master key is loaded (or, for a store without private keys, made) during this step.
 */
static int migrate_v5(moat_store_t *st, moat_err_t *err)
{
    return moat__store_mac_migrate(st, MOAT__T_KEYS, MOAT__T_ISSUED + 1, err);
}

/*
 * Version 6: the cached CRLs and the certificates' host names are authenticated too, and the seal row
 * records every authenticated table's set of rows (seal.c), made here from the rows there are.
 */
static int migrate_v6(moat_store_t *st, moat_err_t *err)
{
    static const char ddl[] = "CREATE TABLE seal (\n"
                              "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
                              "  epoch INTEGER NOT NULL,\n"
                              "  nonce BLOB NOT NULL,\n"
                              "  sets BLOB NOT NULL,\n"
                              "  mac BLOB NOT NULL\n"
                              ");\n";
    int rc;
    if ((rc = st->ops->exec(st, ddl, err)) != 0 ||
        (rc = moat__store_mac_migrate(st, MOAT__T_CRLS, MOAT__T_COUNT - MOAT__T_CRLS, err)) != 0)
        return rc;
    return moat__store_sets_reset(st, err);
}

typedef int (*migration_fn)(moat_store_t *st, moat_err_t *err);
/* migrations[i] takes a store from version i+1 to i+2. */
static const migration_fn migrations[] = {migrate_v2, migrate_v3, migrate_v4, migrate_v5, migrate_v6};

static int migrate(moat_store_t *st, int from, moat_err_t *err)
{
    int rc = 0, v;
    char sql[96];

    for (v = from; v < MOAT_STORE_SCHEMA_VERSION && rc == 0; v++) {
        if ((rc = migrations[v - 1](st, err)) != 0) {
            moat_err_prefix(err, "upgrading the store from schema %d to %d", v, v + 1);
            break;
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        if ((rc = st->ops->exec(st, sql, err)) != 0)
            break;
        snprintf(sql, sizeof(sql), "%d", v + 1);
        rc = moat__store_run(st, err, "UPDATE meta SET value = ? WHERE name = 'schema_version'", "t", sql);
    }
    return rc;
}

static int identify(moat_store_t *st, int64_t *app_id, int64_t *version, int64_t *tables, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc = moat__store_query(st, &s, err,
                               "SELECT (SELECT application_id FROM pragma_application_id()), "
                               "(SELECT user_version FROM pragma_user_version()), "
                               "(SELECT count(*) FROM sqlite_master)",
                               "");
    if (rc != 0)
        return rc;
    if ((rc = st->ops->step(s, err)) == 1) {
        *app_id = st->ops->column_int(s, 0);
        *version = st->ops->column_int(s, 1);
        *tables = st->ops->column_int(s, 2);
        rc = 0;
    } else if (rc == 0) {
        rc = moat_err_set(err, MOAT_E_STORE, "reading the store's header returned nothing");
    }
    st->ops->finalize(s);
    return rc;
}

/*
 * Switches to WAL unless it already is. Changing the journal mode needs the database to itself and does
 * not wait on the busy handler, so while another process is opening the same new store, retry.
 */
static int set_wal(moat_store_t *st, moat_err_t *err)
{
    moat_store_stmt_t *s = NULL;
    int rc = 0;
    for (int attempt = 0; attempt < 200; attempt++) {
        if ((rc = moat__store_query(st, &s, err, "PRAGMA journal_mode", "")) != 0)
            return rc;
        rc = st->ops->step(s, err);
        if (rc == 1 && strcmp(st->ops->column_text(s, 0), "wal") == 0) {
            st->ops->finalize(s);
            return 0;
        }
        st->ops->finalize(s);
        if (rc < 0 && rc != MOAT_E_AGAIN)
            return rc;
        if ((rc = st->ops->exec(st, "PRAGMA journal_mode=WAL", err)) == 0) {
            int64_t dummy = 0;
            /* The pragma answers with the mode now in force; check it took. */
            if ((rc = moat__store_int(st, &dummy, err,
                                      "SELECT journal_mode = 'wal' FROM pragma_journal_mode()", "")) != 0)
                return rc;
            if (dummy)
                return 0;
            moat_err_set(err, MOAT_E_STORE, "cannot switch the store to write-ahead logging");
            return moat_err_hint(err, "keep the store on a local disk, not on a network share");
        }
        if (rc != MOAT_E_AGAIN)
            return rc;
        usleep(25000);
    }
    return rc;
}

static int not_a_store(moat_store_t *st, const char *why, moat_err_t *err)
{
    moat_err_set(err, MOAT_E_INVAL, "%s is not a moat store (%s); it was not changed", st->path, why);
    return moat_err_hint(err, "check --store, MOAT_STORE or the config's store: setting");
}

/* Copies the store to "<path>.schema<N>.bak" (0600) before it is upgraded from version <from>. */
static int keep_old(moat_store_t *st, int from, moat_err_t *err)
{
    char copy[sizeof(st->upgrade_copy)];
    int fd, rc;
    if ((size_t)snprintf(copy, sizeof(copy), "%s.schema%d.bak", st->path, from) >= sizeof(copy))
        return moat_err_set(err, MOAT_E_INVAL, "store path too long: %s", st->path);
    if ((fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
        moat_err_set(err, MOAT_E_IO, "cannot keep a copy of %s before upgrading it: %s: %s", st->path, copy,
                     strerror(errno));
        return moat_err_hint(err, "make room or fix the folder's permissions; the store was not changed");
    }
    close(fd);
    if ((rc = st->ops->backup_to(st, copy, err)) != 0) {
        (void)unlink(copy);
        return moat_err_prefix(err, "keeping a copy of %s before upgrading it (the store was not changed)",
                               st->path);
    }
    (void)moat_strlcpy(st->upgrade_copy, copy, sizeof(st->upgrade_copy));
    return 0;
}

int moat__store_schema_prepare(moat_store_t *st, moat_err_t *err)
{
    int64_t app_id = 0, version = 0, tables = 0;
    int rc, ro = (st->flags & MOAT_STORE_READONLY) != 0;

    /* Only reads until we know the file is ours: a foreign file must not be modified. One statement, so
     * that the three values come from one snapshot even while another process creates the store. */
    if ((rc = identify(st, &app_id, &version, &tables, err)) != 0) {
        if (err->code == MOAT_E_INVAL)
            return not_a_store(st, "not an SQLite database", err);
        return moat_err_prefix(err, "%s", st->path);
    }
    if (app_id != MOAT_APPLICATION_ID) {
        if (app_id != 0 || tables != 0)
            return not_a_store(st, "another application's database", err);
        if (!st->created && !(st->flags & MOAT_STORE_CREATE))
            return not_a_store(st, "an empty file", err);
        if (ro)
            return not_a_store(st, "an empty file", err);
    } else if (version > MOAT_STORE_SCHEMA_VERSION) {
        moat_err_set(err, MOAT_E_VERSION,
                     "%s has store schema version %lld, but this moat supports versions up to %d", st->path,
                     (long long)version, MOAT_STORE_SCHEMA_VERSION);
        return moat_err_hint(err,
                             "upgrade moat to a version that knows this store; the store was not changed");
    } else if (version < 1) {
        return not_a_store(st, "no schema version", err);
    }

    if (!ro) {
        /* WAL: readers never block the writer; FULL: a commit survives power loss. */
        if ((rc = set_wal(st, err)) != 0)
            return moat_err_prefix(err, "%s", st->path);
    }
    if ((rc = st->ops->exec(st, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON",
                            err)) != 0)
        return moat_err_prefix(err, "%s", st->path);

    st->schema_found = app_id == MOAT_APPLICATION_ID ? (int)version : 0;
    if (app_id == MOAT_APPLICATION_ID && version == MOAT_STORE_SCHEMA_VERSION) {
        st->schema = (int)version;
        return 0;
    }
    if (ro) {
        moat_err_set(err, MOAT_E_VERSION, "%s has store schema version %lld and needs an upgrade to %d",
                     st->path, (long long)version, MOAT_STORE_SCHEMA_VERSION);
        return moat_err_hint(err, "run 'moat store upgrade' (it keeps a copy of the old file), then retry");
    }
    /* An upgrade keeps the old file first: a moat that is rolled back can still open its store. */
    if (app_id == MOAT_APPLICATION_ID && !(st->flags & MOAT__STORE_NO_PERM_CHECK) &&
        (rc = keep_old(st, (int)version, err)) != 0)
        return rc;
    /* Creation or upgrade: one transaction, so a crash leaves the old version (or no schema) behind. */
    if ((rc = st->ops->begin(st, err)) != 0)
        return moat_err_prefix(err, "%s", st->path);
    /* Re-read inside the write lock: another process may have created or upgraded it meanwhile. */
    if ((rc = moat__store_int(st, &app_id, err, "PRAGMA application_id", "")) == 0) {
        if (app_id != MOAT_APPLICATION_ID) {
            rc = st->ops->exec(st, moat__store_schema_v1, err);
            version = 1;
        } else {
            rc = moat__store_int(st, &version, err, "PRAGMA user_version", "");
        }
    }
    if (rc == 0 && version < MOAT_STORE_SCHEMA_VERSION) {
        /* Inside this transaction: a master key check recorded during the upgrade joins it. */
        st->in_tx = 1;
        rc = migrate(st, (int)version, err);
        st->in_tx = 0;
    }
    if (rc == 0)
        rc = st->ops->commit(st, err);
    else
        st->ops->rollback(st);
    if (rc != 0)
        return moat_err_prefix(err, "%s", st->path);
    st->schema = MOAT_STORE_SCHEMA_VERSION;
    return 0;
}
