/*
 * store: the one source of truth for key material. Keys (private keys encrypted at rest under the master
 * key), certificates with their chains and history, CA state, trust anchors, the audit log, settings,
 * the schema version and the generation counter the server reloads on.
 *
 * Backends sit behind a small vtable (moat_store_ops_t, store_int.h); SQLite is the embedded one.
 *
 * Rules for callers:
 * - Never call any of this from an event-loop thread: every call may block on disk (fsync) or wait up to
 *   the busy timeout for another writer. The server reads the store from its control thread only.
 * - One command = one transaction: moat_store_begin(), any number of writes, moat_store_commit(). On any
 *   failure call moat_store_rollback() and nothing has changed. A write function called outside a
 *   transaction runs in a transaction of its own.
 * - Every write that changes served material (keys, certificates, trust anchors, CA) bumps the
 *   generation counter once per transaction, inside that transaction.
 * - Functions return 0 or a negative MOAT_E_* with <err> filled (what failed, why, what to do).
 *   NOTFOUND/EXISTS/STATE are ordinary answers and leave the transaction usable; any other failure
 *   inside a transaction means the caller must roll back.
 * - Records handed out are owned by the caller: release them with the matching *_dispose() function
 *   (safe on a zeroed or already disposed record). Plaintext private keys are returned in buffers the
 *   caller releases with moat_free_secret(); the store cleanses its own copies.
 * - Times are Unix seconds (UTC). Names are 1..MOAT_STORE_NAME_MAX-1 bytes of [A-Za-z0-9._@-].
 */
#ifndef MOAT_STORE_H
#define MOAT_STORE_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

#define MOAT_STORE_NAME_MAX MOAT_NAME_MAX /* key, anchor and CA names, including the NUL */
#define MOAT_STORE_FPR_LEN 64             /* SHA-256 fingerprint: 64 lowercase hex digits */
#define MOAT_STORE_SERIAL_MAX 72          /* certificate serial: uppercase hex, no separators, + NUL */
#define MOAT_STORE_SCHEMA_VERSION 6       /* the newest schema this binary writes */
#define MOAT_STORE_MASTER_KEY_LEN 32      /* AES-256 */
#define MOAT_STORE_MAX_BLOB (1 << 20)     /* largest DER/CSR the store accepts (1 MiB) */

typedef struct moat_store moat_store_t;             /* an open store (one connection) */
typedef struct moat_store_ops moat_store_ops_t;     /* backend vtable: store_int.h */
typedef struct moat_store_watch moat_store_watch_t; /* the cheap change poll for the server */

/* A byte string. Owned by whoever holds the record that contains it. */
typedef struct moat_store_blob {
    uint8_t *data;
    size_t len;
} moat_store_blob_t;

void moat_store_blob_dispose(moat_store_blob_t *b);

/* ---------------------------------------------------------------------------------------------------
 * Opening and closing
 */

enum {
    MOAT_STORE_CREATE = 1 << 0,   /* create the store (folder 0700, file 0600) and master key if missing */
    MOAT_STORE_READONLY = 1 << 1, /* never write: no migration, no creation (restore --dry-run, doctor) */
    MOAT_STORE_NO_MASTER_KEY = 1 << 2 /* do not load the master key: private keys cannot be read or
                                         written (listing, backup, info) */
};

/*
 * Opens the store at <path> (a file path; "sqlite:PATH" is accepted too) with the master key file
 * <master_key_path> (NULL only with MOAT_STORE_NO_MASTER_KEY).
 *
 * Creates the store only with MOAT_STORE_CREATE; otherwise a missing store is MOAT_E_NOTFOUND with a hint.
 * The master key (32 random bytes, 0600) is created on first use, i.e. when the store holds no private
 * key yet; a missing master key for a store that holds keys is MOAT_E_PERM naming the path and saying
 * that the keys cannot be decrypted without it.
 * Refused with MOAT_E_PERM and a "chmod 600 PATH" hint: a store file or master key readable by others or
 * writable by group/others. Refused with MOAT_E_INVAL: a file that is not a moat store (left unmodified).
 * Refused with MOAT_E_VERSION: a store whose schema is newer than MOAT_STORE_SCHEMA_VERSION ("upgrade
 * moat"). An older schema is migrated in one transaction (not with MOAT_STORE_READONLY).
 * On success *out owns the store; close it with moat_store_close().
 */
int moat_store_open(const char *path, const char *master_key_path, unsigned flags, moat_store_t **out,
                    moat_err_t *err) MOAT_MUST_CHECK;
/*
 * For commands that need no master key: opens as with MOAT_STORE_NO_MASTER_KEY added to <flags>, but with
 * the master key <master_key_path> when it exists and can be read, so that the rows read are checked and
 * an older store can be upgraded. Never creates a master key.
 */
int moat_store_open_key_if_readable(const char *path, const char *master_key_path, unsigned flags,
                                    moat_store_t **out, moat_err_t *err) MOAT_MUST_CHECK;
/* Rolls back an open transaction, closes, cleanses the master key in memory and frees. NULL is fine. */
void moat_store_close(moat_store_t *st);

/* The absolute path of the store file, and of the master key file ("" when none). Borrowed. */
const char *moat_store_path(const moat_store_t *st);
/* When this open upgraded an older store: the copy of the old file it kept, with *from its old schema
 * version; else NULL. (Only a writing open upgrades; a read-only one refuses an older store.) */
const char *moat_store_upgraded(const moat_store_t *st, int *from);
const char *moat_store_master_key_path(const moat_store_t *st);
/* The backend name ("sqlite"). */
const char *moat_store_backend(const moat_store_t *st);
/* The schema version of the open store (after any migration). */
int moat_store_schema_version(const moat_store_t *st);

/*
 * Authenticated rows. Keys, installed certificates, their chains and host names, trust anchors, the CA,
 * the issued certificates (with their revocations) and the cached CRLs carry an HMAC-SHA256 under a key
 * derived from the master key: a change made without the master key (a plain sqlite3 write by whoever can
 * write the store file) does not verify, and moat refuses the row where it reads it (MOAT_E_STORE naming
 * the row). The seal row records each of these tables' set of rows: a row removed, or an older copy of a
 * row put back, makes moat refuse to read that table (MOAT_E_STORE naming it). A store opened without its
 * master key reads rows unchecked and cannot change them (nor remove them).
 */
/* Loads the master key <master_key_path> into a store opened with MOAT_STORE_NO_MASTER_KEY (never creates
 * one), so that its rows are checked. */
int moat_store_use_master_key(moat_store_t *st, const char *master_key_path, moat_err_t *err) MOAT_MUST_CHECK;
/* Calls <bad> with a description ("trust anchor \"x\"") of every row whose code does not verify, and
 * counts them into *nbad. Needs the master key (MOAT_E_PERM without it). */
int moat_store_rows_verify(moat_store_t *st, void (*bad)(void *arg, const char *what), void *arg,
                           size_t *nbad, moat_err_t *err) MOAT_MUST_CHECK;
/* Calls <bad> with a sentence for every table whose rows are not the set moat last wrote (a row removed,
 * or an older copy put back), counting them into *nbad. Needs the master key (MOAT_E_PERM without it). */
int moat_store_sets_verify(moat_store_t *st, void (*bad)(void *arg, const char *what), void *arg,
                           size_t *nbad, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Transactions. Writers take the write lock at begin (SQLite: BEGIN IMMEDIATE), waiting up to the busy
 * timeout; a store busy for longer is MOAT_E_AGAIN. Nested begin is MOAT_E_STATE.
 */
int moat_store_begin(moat_store_t *st, moat_err_t *err) MOAT_MUST_CHECK;
/* A full-disk or I/O failure at commit is MOAT_E_IO ("the disk is full ..."), and nothing changed. */
int moat_store_commit(moat_store_t *st, moat_err_t *err) MOAT_MUST_CHECK;
/* Undoes everything since begin; a no-op outside a transaction. */
void moat_store_rollback(moat_store_t *st);
/* 1 inside a transaction opened by moat_store_begin(), else 0. */
int moat_store_in_transaction(const moat_store_t *st);

/* ---------------------------------------------------------------------------------------------------
 * Keys. A name has at most one active key and at most one pending key at a time: "key new" makes a
 * pending key, installing its certificate makes it active; "key renew" adds a pending key beside the
 * active one, which keeps serving until the renewal's certificate is installed. The key a renewal
 * replaces becomes retired (kept for certificate history and rollback).
 */
typedef enum {
    MOAT_KEY_PENDING = 0, /* waiting for its certificate */
    MOAT_KEY_ACTIVE = 1,  /* has a current certificate, is served */
    MOAT_KEY_RETIRED = 2  /* replaced by a renewal; kept for history */
} moat_key_state_t;

/* Which key of a name to get. */
typedef enum {
    MOAT_KEY_CURRENT = 0, /* the active key if there is one, else the pending one */
    MOAT_KEY_WANT_ACTIVE = 1,
    MOAT_KEY_WANT_PENDING = 2
} moat_key_which_t;

typedef struct moat_store_cert moat_store_cert_t;

typedef struct moat_store_key {
    int64_t id;                     /* stable row id */
    char name[MOAT_STORE_NAME_MAX]; /* the name the config refers to */
    moat_key_state_t state;
    char algorithm[32];       /* "ec-p256", "ec-p384", "rsa-2048", ..., "ed25519" */
    int exportable;           /* 1: "key export" allowed */
    moat_store_blob_t pubkey; /* SubjectPublicKeyInfo DER */
    moat_store_blob_t csr;    /* PKCS#10 DER of a pending key; empty when none */
    int64_t created;
    int64_t updated;
    moat_store_cert_t *cert; /* owned: the current certificate of this key, NULL if none */
} moat_store_key_t;

typedef struct moat_store_key_list {
    moat_store_key_t *items; /* owned */
    size_t n;
} moat_store_key_list_t;

const char *moat_store_key_state_name(moat_key_state_t state); /* "pending", "active", "retired" */
void moat_store_key_dispose(moat_store_key_t *k);
void moat_store_key_list_dispose(moat_store_key_list_t *l);

/*
 * Adds a key. From <k> the store reads name, state (PENDING or ACTIVE), algorithm, exportable, pubkey and
 * csr (may be empty); id/created/updated are set by the store and written back into <k>->id etc.
 * <priv_der>/<priv_len>: the PKCS#8 PrivateKeyInfo DER in plaintext (borrowed; the caller cleanses it);
 * encrypted with AES-256-GCM under the master key, the key id as associated data.
 * MOAT_E_EXISTS if the name already has a key in that state (a pending key beside an active one is the
 * renewal case and allowed). MOAT_E_INVAL for a bad name, algorithm or empty DER.
 */
int moat_store_key_add(moat_store_t *st, moat_store_key_t *k, const uint8_t *priv_der, size_t priv_len,
                       moat_err_t *err) MOAT_MUST_CHECK;
/* Gets a key of <name> into *out (with its current certificate, if any). MOAT_E_NOTFOUND if none. */
int moat_store_key_get(moat_store_t *st, const char *name, moat_key_which_t which, moat_store_key_t *out,
                       moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_key_get_by_id(moat_store_t *st, int64_t id, moat_store_key_t *out,
                             moat_err_t *err) MOAT_MUST_CHECK;
/* Active and pending keys (not retired), ordered by name then state, each with its current certificate. */
int moat_store_key_list(moat_store_t *st, moat_store_key_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Finds the non-retired key whose SubjectPublicKeyInfo DER equals <spki>. MOAT_E_NOTFOUND if none. */
int moat_store_key_find_pubkey(moat_store_t *st, const uint8_t *spki, size_t spki_len, moat_store_key_t *out,
                               moat_err_t *err) MOAT_MUST_CHECK;
/*
 * Decrypts the private key of key <id>: *der receives a new buffer with the PKCS#8 DER, *len its length;
 * free it with moat_free_secret(der, len). MOAT_E_PERM without a master key, MOAT_E_PKI if the ciphertext
 * does not authenticate (wrong master key or tampered store).
 */
int moat_store_key_private(moat_store_t *st, int64_t id, uint8_t **der, size_t *len,
                           moat_err_t *err) MOAT_MUST_CHECK;
/* Replaces algorithm, public key, private key (and clears the CSR) of key <id> ("key import --replace"). */
int moat_store_key_replace(moat_store_t *st, int64_t id, const char *algorithm, const uint8_t *spki,
                           size_t spki_len, const uint8_t *priv_der, size_t priv_len,
                           moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_key_set_exportable(moat_store_t *st, int64_t id, int exportable,
                                  moat_err_t *err) MOAT_MUST_CHECK;
/* Sets (or with len 0 clears) the pending CSR of key <id>. */
int moat_store_key_set_csr(moat_store_t *st, int64_t id, const uint8_t *csr, size_t len,
                           moat_err_t *err) MOAT_MUST_CHECK;
/*
 * A renewal replaces the pending request of a name: key <id> (pending) is set aside (retired, with its
 * request kept) so that the certificate a CA returns for it can still be installed. MOAT_E_STATE unless
 * <id> is pending.
 */
int moat_store_key_set_aside(moat_store_t *st, int64_t id, moat_err_t *err) MOAT_MUST_CHECK;
/* The request of <name> set aside by a renewal whose public key is <spki> (never certified).
 * MOAT_E_NOTFOUND if none. */
int moat_store_key_find_set_aside(moat_store_t *st, const char *name, const uint8_t *spki, size_t spki_len,
                                  moat_store_key_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Makes the set-aside request <id> the pending key of its name again; the pending key it replaces (if any)
 * is set aside in turn. */
int moat_store_key_restore_pending(moat_store_t *st, int64_t id, moat_err_t *err) MOAT_MUST_CHECK;
/* Deletes one key row (a pending renewal, say) and its certificates. MOAT_E_NOTFOUND if none. */
int moat_store_key_delete_id(moat_store_t *st, int64_t id, moat_err_t *err) MOAT_MUST_CHECK;
/* Deletes every key of <name> (active, pending, retired) and all their certificates. */
int moat_store_key_delete(moat_store_t *st, const char *name, moat_err_t *err) MOAT_MUST_CHECK;

/* The store's fingerprint of a DER object: SHA-256, MOAT_STORE_FPR_LEN lowercase hex digits and a NUL. */
int moat_store_fingerprint(const uint8_t *der, size_t len, char out[MOAT_STORE_FPR_LEN + 1],
                           moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Certificates. Each belongs to one key row; a name's certificates across its keys form its history.
 * The metadata (subject, issuer, SANs, serial, dates, fingerprint) is parsed from the DER by the store.
 */
struct moat_store_cert {
    int64_t id;
    int64_t key_id;                     /* the key row this certificate certifies */
    char key_name[MOAT_STORE_NAME_MAX]; /* that key's name */
    moat_store_blob_t der;              /* the certificate */
    moat_store_blob_t *chain;           /* owned: intermediates in order (issuer of der first), no root */
    size_t chain_n;
    char *subject; /* owned: RFC 2253 string */
    char *issuer;  /* owned: RFC 2253 string */
    char *sans;    /* owned: "DNS:www.example.com,IP:192.0.2.1" ("" when none) */
    char serial[MOAT_STORE_SERIAL_MAX];
    char fingerprint[MOAT_STORE_FPR_LEN + 1]; /* SHA-256 of der, lowercase hex */
    int64_t not_before;
    int64_t not_after;
    int64_t installed; /* when it was installed */
    int current;       /* 1: the one served for its name */
};

typedef struct moat_store_cert_list {
    moat_store_cert_t *items; /* owned */
    size_t n;
} moat_store_cert_list_t;

void moat_store_cert_dispose(moat_store_cert_t *c);
void moat_store_cert_list_dispose(moat_store_cert_list_t *l);

/*
 * Installs certificate <der> with chain <chain>[0..chain_n) (intermediates, issuer first) for key row
 * <key_id>, as the current certificate of that key's name: the previous current certificate stays as
 * history, the key becomes active and a different previously active key of the name becomes retired.
 * The caller has checked that the certificate matches the key and the chain (pki). MOAT_E_INVAL if the
 * DER does not parse; MOAT_E_NOTFOUND for an unknown key; MOAT_E_EXISTS if this exact certificate is
 * already stored for the name. *cert_id (may be NULL) receives the new row id.
 */
int moat_store_cert_install(moat_store_t *st, int64_t key_id, const uint8_t *der, size_t der_len,
                            const moat_store_blob_t *chain, size_t chain_n, int64_t *cert_id,
                            moat_err_t *err) MOAT_MUST_CHECK;
/*
 * Replaces the chain of stored certificate <cert_id> with <chain>[0..chain_n) (completing the chain of a
 * certificate installed without its intermediates), and bumps the generation. MOAT_E_NOTFOUND for an
 * unknown row.
 */
int moat_store_cert_chain_set(moat_store_t *st, int64_t cert_id, const moat_store_blob_t *chain,
                              size_t chain_n, moat_err_t *err) MOAT_MUST_CHECK;
/* The current certificate of <name>. MOAT_E_NOTFOUND if the name has none. */
int moat_store_cert_current(moat_store_t *st, const char *name, moat_store_cert_t *out,
                            moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_cert_get(moat_store_t *st, int64_t cert_id, moat_store_cert_t *out,
                        moat_err_t *err) MOAT_MUST_CHECK;
/* Every certificate of <name> (history), newest installation first. Empty list if none. */
int moat_store_cert_list(moat_store_t *st, const char *name, moat_store_cert_list_t *out,
                         moat_err_t *err) MOAT_MUST_CHECK;
/*
 * "cert rollback": makes the certificate installed before the current one current again (and its key
 * active; the key of the rolled-back certificate becomes retired if it is another key). The rolled-back
 * certificate stays in history. *out (may be NULL) receives the now current certificate.
 * MOAT_E_NOTFOUND if <name> has no current certificate, MOAT_E_STATE if there is none before it.
 */
int moat_store_cert_rollback(moat_store_t *st, const char *name, moat_store_cert_t *out,
                             moat_err_t *err) MOAT_MUST_CHECK;
/*
 * Current certificates of active keys whose SANs match host name <host> (exact, case-insensitive, or a
 * "*.example.com" wildcard covering exactly one label; an IP literal matches IP SANs), valid at <now>,
 * newest not_after first (certificate: auto chooses among them by the serving plan, plan/plan.h).
 */
int moat_store_cert_find_host(moat_store_t *st, const char *host, int64_t now, moat_store_cert_list_t *out,
                              moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Trust anchors (client-certificate roots, corp roots).
 */
typedef struct moat_store_anchor {
    int64_t id;
    char name[MOAT_STORE_NAME_MAX];
    moat_store_blob_t der;
    char *subject; /* owned: RFC 2253 */
    char fingerprint[MOAT_STORE_FPR_LEN + 1];
    int64_t not_after;
    int64_t created;
} moat_store_anchor_t;

typedef struct moat_store_anchor_list {
    moat_store_anchor_t *items;
    size_t n;
} moat_store_anchor_list_t;

void moat_store_anchor_dispose(moat_store_anchor_t *a);
void moat_store_anchor_list_dispose(moat_store_anchor_list_t *l);
/* Adds certificate <der> as anchor <name>. MOAT_E_EXISTS for a taken name or an already trusted cert. */
int moat_store_anchor_add(moat_store_t *st, const char *name, const uint8_t *der, size_t len,
                          moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_anchor_remove(moat_store_t *st, const char *name, moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_anchor_get(moat_store_t *st, const char *name, moat_store_anchor_t *out,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* All anchors, by name. */
int moat_store_anchor_list(moat_store_t *st, moat_store_anchor_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * CRLs fetched for client-certificate CAs other than moat's (the server's cache). Writing them does not
 * bump the generation: the server hands fresh CRLs to its workers itself, without a reload.
 */
#define MOAT_STORE_URL_MAX 512 /* a CRL distribution point URL, including the NUL */
/* The "url" of a CRL an administrator added for a trust anchor ('moat trust crl add NAME FILE'):
 * "trust:NAME". Such a CRL is never fetched; it vouches for every certificate its CA issued. */
#define MOAT_STORE_CRL_ADDED "trust:"

typedef struct moat_store_crl {
    char url[MOAT_STORE_URL_MAX];
    char issuer_fp[MOAT_STORE_FPR_LEN + 1]; /* SHA-256 of issuer_der, lowercase hex */
    moat_store_blob_t issuer_der;           /* the issuing CA certificate the CRL is verified against */
    char issuer_subject[256];               /* RFC 2253, for listings (cut if longer) */
    moat_store_blob_t der;                  /* the last CRL that verified; len 0 when none yet */
    int64_t this_update, next_update;       /* of that CRL */
    int64_t revoked;                        /* entries in it */
    int64_t fetched_at;                     /* when it was fetched; 0: never */
    int64_t attempted_at;                   /* last attempt, successful or not */
    char error[MOAT_ERR_MSG_MAX];           /* why the last attempt failed; "" after a success */
} moat_store_crl_t;

typedef struct moat_store_crl_list {
    moat_store_crl_t *items;
    size_t n;
} moat_store_crl_list_t;

void moat_store_crl_dispose(moat_store_crl_t *c);
void moat_store_crl_list_dispose(moat_store_crl_list_t *l);
/* Creates or replaces the row of (c->url, c->issuer_fp) with every field of <c>. */
int moat_store_crl_save(moat_store_t *st, const moat_store_crl_t *c, moat_err_t *err) MOAT_MUST_CHECK;
/* Every cached CRL, by URL. */
int moat_store_crl_list(moat_store_t *st, moat_store_crl_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * CA state: one row per role (root, intermediate) and the table of issued certificates.
 */
typedef enum { MOAT_CA_ROOT = 0, MOAT_CA_INTERMEDIATE = 1 } moat_ca_role_t;

typedef struct moat_store_ca {
    moat_ca_role_t role;
    int64_t key_id;        /* the CA's key row; 0 when the key was taken offline */
    moat_store_blob_t der; /* the CA certificate */
    char base_url[512];    /* public base URL for CDP/AIA; "" when unset */
    int64_t crl_number;    /* last CRL number used */
    int64_t created;
    int64_t updated;
} moat_store_ca_t;

const char *moat_store_ca_role_name(moat_ca_role_t role); /* "root", "intermediate" */
void moat_store_ca_dispose(moat_store_ca_t *ca);
/* MOAT_E_NOTFOUND when that CA has not been set up ("moat ca init"). */
int moat_store_ca_get(moat_store_t *st, moat_ca_role_t role, moat_store_ca_t *out,
                      moat_err_t *err) MOAT_MUST_CHECK;
/* Creates or replaces the row of ca->role (key_id, der, base_url, crl_number). */
int moat_store_ca_set(moat_store_t *st, const moat_store_ca_t *ca, moat_err_t *err) MOAT_MUST_CHECK;
/* Sets the base URL of every CA row ("ca set-url"). MOAT_E_NOTFOUND if there is no CA. */
int moat_store_ca_set_url(moat_store_t *st, const char *base_url, moat_err_t *err) MOAT_MUST_CHECK;
/* Increments and returns the CRL number of <role> in *out. */
int moat_store_ca_next_crl_number(moat_store_t *st, moat_ca_role_t role, int64_t *out,
                                  moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_store_issued {
    int64_t id;
    char serial[MOAT_STORE_SERIAL_MAX]; /* uppercase hex, unique */
    char name[MOAT_STORE_NAME_MAX];     /* key name for "ca issue", "" for "ca sign" */
    char *subject;                      /* owned: RFC 2253 */
    char profile[16];                   /* "server" | "client" */
    moat_ca_role_t issuer;              /* which CA signed it */
    moat_store_blob_t der;              /* the issued certificate */
    int64_t issued;
    int64_t not_after;
    int64_t revoked; /* 0 = not revoked, else when */
    int reason;      /* CRL reason code (RFC 5280 5.3.1) when revoked */
} moat_store_issued_t;

typedef struct moat_store_issued_list {
    moat_store_issued_t *items;
    size_t n;
} moat_store_issued_list_t;

enum {
    MOAT_ISSUED_REVOKED_ONLY = 1 << 0 /* list only revoked certificates */
};

void moat_store_issued_dispose(moat_store_issued_t *i);
void moat_store_issued_list_dispose(moat_store_issued_list_t *l);
/* Records an issued certificate; serial/subject/not_after are parsed from i->der when left empty/0.
 * MOAT_E_EXISTS for a serial already recorded. */
int moat_store_issued_add(moat_store_t *st, const moat_store_issued_t *i, moat_err_t *err) MOAT_MUST_CHECK;
/* By serial (hex, any case, optional colons) or, failing that, by name (newest). */
int moat_store_issued_get(moat_store_t *st, const char *serial_or_name, moat_store_issued_t *out,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* Newest first. <flags>: MOAT_ISSUED_*. <expiring_before> > 0: only those with not_after before it. */
int moat_store_issued_list(moat_store_t *st, unsigned flags, int64_t expiring_before,
                           moat_store_issued_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Marks <serial> revoked at <when> with <reason>. MOAT_E_STATE if already revoked. */
int moat_store_issued_revoke(moat_store_t *st, const char *serial, int64_t when, int reason,
                             moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Audit log: append-only. Never put key material, passwords or tokens in it.
 */
typedef struct moat_store_audit {
    int64_t id;
    int64_t time;
    char actor[64];   /* the Unix user name that ran the command */
    char action[64];  /* "key.new", "key.export", "cert.install", "store.backup", ... */
    char object[256]; /* what it acted on: key name, serial, file */
    char *detail;     /* owned: free text ("" when none) */
} moat_store_audit_t;

typedef struct moat_store_audit_list {
    moat_store_audit_t *items;
    size_t n;
} moat_store_audit_list_t;

void moat_store_audit_list_dispose(moat_store_audit_list_t *l);
/* Appends an entry; the actor is the effective user's name, the time now. <detail> may be NULL. */
int moat_store_audit_add(moat_store_t *st, const char *action, const char *object, const char *detail,
                         moat_err_t *err) MOAT_MUST_CHECK;
/* The same with the detail formatted from <fmt> (cut at 1,023 bytes: a cut detail is still a record). */
int moat_store_audit_addf(moat_store_t *st, const char *action, const char *object, moat_err_t *err,
                          const char *fmt, ...) MOAT_PRINTF(5, 6) MOAT_MUST_CHECK;
/* The newest <limit> entries (0 = all), newest first. */
int moat_store_audit_list(moat_store_t *st, size_t limit, moat_store_audit_list_t *out,
                          moat_err_t *err) MOAT_MUST_CHECK;
/* Like moat_store_audit_list, only entries at or after <since> (Unix seconds; 0: all) and, when <object>
 * is not NULL, those that acted on it: a key of that name, or a certificate moat's CA issued under it. */
int moat_store_audit_query(moat_store_t *st, int64_t since, const char *object, size_t limit,
                           moat_store_audit_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Settings: small key/value strings.
 */
/* Copies the value into <out>; MOAT_E_NOTFOUND if unset, MOAT_E_LIMIT if it does not fit. */
int moat_store_setting_get(moat_store_t *st, const char *key, char *out, size_t outsz,
                           moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_setting_set(moat_store_t *st, const char *key, const char *value,
                           moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_setting_delete(moat_store_t *st, const char *key, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * Generation counter and the running server's status.
 */
int moat_store_generation(moat_store_t *st, int64_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Bumps the generation (once per transaction; further calls in the same transaction are no-ops). */
int moat_store_generation_bump(moat_store_t *st, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_store_server_status {
    int64_t applied_generation; /* the generation the server runs; -1 if it never ran */
    int64_t refused_generation; /* the newest generation it refused; 0 if none */
    char refusal[512];          /* why it refused that one; "" if none */
    int64_t pid;                /* the server's process id */
    int64_t updated;            /* when the server last wrote this */
} moat_store_server_status_t;

/* Setting in which the running server records why OCSP stapling fails, one line per certificate
 * ("site www, key \"www\": reason"); absent while every staple it should send is ready. */
#define MOAT_STORE_SETTING_STAPLING "server.ocsp_stapling"

/* Writes the status (its own short transaction if none is open). Does not bump the generation. */
int moat_store_server_status_set(moat_store_t *st, const moat_store_server_status_t *s,
                                 moat_err_t *err) MOAT_MUST_CHECK;
/* A store on which no server ever ran answers applied_generation = -1, pid 0. */
int moat_store_server_status_get(moat_store_t *st, moat_store_server_status_t *out,
                                 moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The server's cheap change poll: a dedicated connection (it only reads) whose PRAGMA data_version moves when
 * any other connection commits. Open it once on the control thread, then call moat_store_watch_changed()
 * every <=500 ms: *changed = 1 when something was committed since the previous call (then read the
 * generation with moat_store_generation() on the ordinary connection).
 */
int moat_store_watch_open(const char *path, moat_store_watch_t **out, moat_err_t *err) MOAT_MUST_CHECK;
int moat_store_watch_changed(moat_store_watch_t *w, int *changed, moat_err_t *err) MOAT_MUST_CHECK;
void moat_store_watch_close(moat_store_watch_t *w);

/* ---------------------------------------------------------------------------------------------------
 * Backup, restore, information
 */

/*
 * Writes a consistent copy of the store to <dest> (0600) with the online backup API, safe while a server
 * runs. MOAT_E_EXISTS if <dest> exists and !<force>. Not inside a transaction. The copy's private keys
 * stay encrypted: restoring it needs the same master key. Audited as "store.backup".
 */
int moat_store_backup(moat_store_t *st, const char *dest, int force, moat_err_t *err) MOAT_MUST_CHECK;

/* KEPT: the live store's state is kept over the backup's (issued certificates, revocations, CRL numbers). */
typedef enum {
    MOAT_DIFF_ADDED = 0,
    MOAT_DIFF_REMOVED = 1,
    MOAT_DIFF_CHANGED = 2,
    MOAT_DIFF_KEPT = 3
} moat_diff_change_t;

typedef struct moat_store_diff_item {
    const char *kind; /* static: "key", "cert", "anchor", "ca", "issued", "revoked", "crl" */
    char name[MOAT_STORE_NAME_MAX + 80];
    moat_diff_change_t change;
} moat_store_diff_item_t;

typedef struct moat_store_diff {
    moat_store_diff_item_t *items; /* owned */
    size_t n;
    int backup_schema;           /* schema version of the backup */
    int64_t backup_generation;   /* its generation counter */
    size_t keys, certs, anchors; /* counts in the backup */
} moat_store_diff_t;

const char *moat_store_diff_change_name(moat_diff_change_t c); /* "added", "removed", "changed", "kept" */
void moat_store_diff_dispose(moat_store_diff_t *d);

/*
 * Validates backup file <src> against the open store and describes what restoring it would change
 * (relative to the current store). Checks: a moat store, schema not newer than this binary, integrity
 * ok, every private key in it decrypts with this store's master key, and it keeps every CA that issued
 * a certificate (else MOAT_E_STATE: those could never be revoked again). Changes nothing.
 */
int moat_store_restore_check(moat_store_t *st, const char *src, moat_store_diff_t *diff,
                             moat_err_t *err) MOAT_MUST_CHECK;
/*
 * Runs moat_store_restore_check() and then replaces the whole content of the store with <src>
 * atomically (one transaction: either all of the backup or the store as before), migrates it if its
 * schema is older, bumps the generation so a running server reloads, and audits "store.restore". The
 * audit log and the server status are not restored: the live ones are kept. Nor is moat's CA taken back:
 * certificates issued since the backup, revocations and higher CRL numbers (with the live CRL) are
 * carried into the restored store (the diff lists them as MOAT_DIFF_KEPT).
 * Not inside a transaction. <diff> (may be NULL) receives what changed.
 */
int moat_store_restore(moat_store_t *st, const char *src, moat_store_diff_t *diff,
                       moat_err_t *err) MOAT_MUST_CHECK;

/*
 * What a service above the store checks and repairs in a restore: called on the restored store
 * <restored> inside its transaction, after what the restore keeps was carried forward and before it
 * commits (a dry run rolls back after it). It may change <restored> and add to <diff>
 * (moat_store_diff_add); a failure refuses the restore, with the store unchanged.
 */
typedef struct moat_store_restore_hook {
    int (*before_commit)(moat_store_t *restored, moat_store_diff_t *diff, void *arg, moat_err_t *err);
    void *arg;
} moat_store_restore_hook_t;

/*
 * moat_store_restore() (or with <dry_run> moat_store_restore_check(), which then also carries forward
 * and runs <hook> on a temporary copy, changing nothing) with <hook> (may be NULL).
 */
int moat_store_restore_with(moat_store_t *st, const char *src, int dry_run,
                            const moat_store_restore_hook_t *hook, moat_store_diff_t *diff,
                            moat_err_t *err) MOAT_MUST_CHECK;

/* Adds an item to <d>: "<name><suffix>" of <kind> (a static string). MOAT_E_NOMEM. */
int moat_store_diff_add(moat_store_diff_t *d, const char *kind, const char *name, const char *suffix,
                        moat_diff_change_t change, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_store_info {
    int schema_version;
    int64_t generation;
    int64_t file_bytes; /* the store file */
    int64_t wal_bytes;  /* its write-ahead log */
    size_t keys, pending_keys, certs, anchors, issued, audit_entries;
    int has_ca_root, has_ca_intermediate;
} moat_store_info_t;

int moat_store_info(moat_store_t *st, moat_store_info_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/* ---------------------------------------------------------------------------------------------------
 * ACME server state (acme.c): accounts, orders, authorizations and challenges as JSON documents
 */

typedef enum {
    MOAT_STORE_ACME_ACCOUNT,
    MOAT_STORE_ACME_ORDER,
    MOAT_STORE_ACME_AUTHZ,
    MOAT_STORE_ACME_CHALL
} moat_store_acme_kind_t;

#define MOAT_STORE_ACME_ID_MAX 64
#define MOAT_STORE_ACME_LOOKUP_MAX 256
#define MOAT_STORE_ACME_DOC_MAX (256 * 1024)

typedef struct moat_store_acme_obj {
    moat_store_acme_kind_t kind;
    char id[MOAT_STORE_ACME_ID_MAX];
    char parent[MOAT_STORE_ACME_ID_MAX];     /* order of an authz, authz of a challenge; "" for others */
    char account[MOAT_STORE_ACME_ID_MAX];    /* owning account ("" for an account itself) */
    char lookup[MOAT_STORE_ACME_LOOKUP_MAX]; /* account: key thumbprint; order: certificate serial */
    char status[16];
    int64_t created, expires;
    char *doc; /* owned: the JSON document */
} moat_store_acme_obj_t;

typedef struct moat_store_acme_list {
    moat_store_acme_obj_t *items;
    size_t n;
} moat_store_acme_list_t;

/* Inserts or replaces <o> (by kind and id). Not a served-material change: no generation bump. */
int moat_store_acme_put(moat_store_t *st, const moat_store_acme_obj_t *o, moat_err_t *err) MOAT_MUST_CHECK;
/* Reads the object <kind>/<id> into <o> (MOAT_E_NOTFOUND when absent). */
int moat_store_acme_get(moat_store_t *st, moat_store_acme_kind_t kind, const char *id,
                        moat_store_acme_obj_t *o, moat_err_t *err) MOAT_MUST_CHECK;
/* Reads the newest object of <kind> whose lookup column is <lookup> (MOAT_E_NOTFOUND when none). */
int moat_store_acme_find(moat_store_t *st, moat_store_acme_kind_t kind, const char *lookup,
                         moat_store_acme_obj_t *o, moat_err_t *err) MOAT_MUST_CHECK;
/* Lists objects of <kind> whose parent (by_parent) or account (else) is <id>, oldest first, at most <max>. */
int moat_store_acme_list(moat_store_t *st, moat_store_acme_kind_t kind, int by_parent, const char *id,
                         size_t max, moat_store_acme_list_t *out, moat_err_t *err) MOAT_MUST_CHECK;
/* Counts objects of <kind> of <account> ("" = any) with lookup <lookup> (NULL = any) created at or after
 * <since> whose status is <status> (NULL = any): the rate limits. */
int moat_store_acme_count(moat_store_t *st, moat_store_acme_kind_t kind, const char *account,
                          const char *lookup, const char *status, int64_t since, int64_t *n,
                          moat_err_t *err) MOAT_MUST_CHECK;
void moat_store_acme_obj_dispose(moat_store_acme_obj_t *o);
void moat_store_acme_list_dispose(moat_store_acme_list_t *l);

/* External account binding keys (RFC 8555 §7.3.4): the HMAC key sealed under the master key. */
int moat_store_acme_eab_add(moat_store_t *st, const char *kid, const uint8_t *hmac, size_t len,
                            moat_err_t *err) MOAT_MUST_CHECK;
/* The HMAC key of <kid> (*hmac: release with moat_free_secret) and the account bound to it ("" if none). */
int moat_store_acme_eab_get(moat_store_t *st, const char *kid, uint8_t **hmac, size_t *len, char *account,
                            size_t accountsz, moat_err_t *err) MOAT_MUST_CHECK;
/* Binds <kid> to <account>: MOAT_E_STATE when it is bound already (each key enrolls one account). */
int moat_store_acme_eab_bind(moat_store_t *st, const char *kid, const char *account,
                             moat_err_t *err) MOAT_MUST_CHECK;

#endif
