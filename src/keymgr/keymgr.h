/*
 * keymgr: the key manager, for every front end that stores keys and certificates (moat key/cert/import,
 * the ACME client): decrypting a stored key, the server's loader check run before a change commits,
 * chains ordered for the store, and installing a certificate for a key with its chain completed.
 *
 * Built on pki/, store/ and tls/; knows nothing of the command line. Functions that change the store
 * write only inside the caller's transaction unless they say otherwise.
 */
#ifndef MOAT_KEYMGR_H
#define MOAT_KEYMGR_H

#include "core/core.h"
#include "config/config.h"
#include "import/import.h"
#include "pki/pki.h"
#include "plan/plan.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Certificate and chain of a store record as OpenSSL objects (new references; chain may be empty). */
int moat_keymgr_cert_load(const moat_store_cert_t *c, X509 **cert, STACK_OF(X509) * *chain,
                          moat_err_t *err) MOAT_MUST_CHECK;

/* The private key of key row <id>, decrypted (new reference). MOAT_E_PERM without a master key. */
int moat_keymgr_private_key(moat_store_t *st, int64_t id, EVP_PKEY **out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The check the server runs before it serves a certificate, run before a change commits: builds the
 * TLS context of key row <key_id> (its private key, decrypted) with certificate <der> and <chain>, in a
 * library context of its own. Failure: MOAT_E_PKI saying that the server would refuse it, and why.
 */
int moat_keymgr_check_loadable(moat_store_t *st, int64_t key_id, const uint8_t *der, size_t der_len,
                               const moat_store_blob_t *chain, size_t nchain,
                               moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Orders <pile> into the chain above <leaf> (moat_pki_chain_build) and encodes it for the store:
 * intermediates, issuer first, without a self-signed root (clients have it; servers never send it).
 * *blobs (free with moat_keymgr_blobs_dispose) and *n receive them, *missing (owned, may be NULL) the
 * issuer the chain ends below.
 */
int moat_keymgr_chain_blobs(X509 *leaf, STACK_OF(X509) * pile, moat_store_blob_t **blobs, size_t *n,
                            char **missing, moat_err_t *err) MOAT_MUST_CHECK;
void moat_keymgr_blobs_dispose(moat_store_blob_t **blobs, size_t n);

/*
 * Adds moat's intermediate CA certificate to <pile> when it issued <leaf> and <pile> lacks it, so that
 * a certificate moat's CA issued always gets its chain. Nothing is added for any other leaf (a chain
 * builder refuses unrelated certificates).
 */
int moat_keymgr_pile_add_ca(moat_store_t *st, X509 *leaf, STACK_OF(X509) * pile,
                            moat_err_t *err) MOAT_MUST_CHECK;

/*
 * What "key import" and "moat import" do with a key's certificate, inside the caller's transaction:
 * installs <leaf> with <chain> for key row <key_id> (the same certificate stored already is not an
 * error), then runs the server's loader check. An importer must not lose a key, so a pair the server
 * would refuse stays, and the reason goes to <warning> ("" when none); other failures are errors.
 */
int moat_keymgr_import_cert(moat_store_t *st, int64_t key_id, X509 *leaf, const moat_store_blob_t *chain,
                            size_t nchain, char *warning, size_t warnsz, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The one way a new private key enters the store, inside the caller's transaction: <key> is stored as
 * the pending key of <name> (PKCS#8, encrypted under the master key) with its public key and, when
 * <csr_der> is not NULL, its request. <algorithm> is the name shown in key list (NULL: described from the
 * key). The plaintext copy is cleansed. *id (may be NULL) receives the key row. MOAT_E_EXISTS when the
 * name already has a pending key (see moat_store_key_add).
 */
int moat_keymgr_key_add(moat_store_t *st, const char *name, EVP_PKEY *key, const char *algorithm,
                        bool exportable, const moat_store_blob_t *csr_der, int64_t *id,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* What moat_keymgr_fetch_issuers() did. */
typedef struct moat_keymgr_fetched {
    size_t n;                    /* certificates fetched and added to the pile */
    char url[MOAT_PKI_URL_SIZE]; /* where the first came from */
    char note[MOAT_ERR_MSG_MAX]; /* why nothing could be fetched from the URLs there were, or "" */
} moat_keymgr_fetched_t;

/*
 * For a leaf whose pile holds no certificate above it: fetches its issuer from the leaf's AIA caIssuers
 * URL (http://, 5 s and 64 KiB per request, DER, PEM or PKCS#7), uses it only when it signed the leaf,
 * and climbs the same way (at most 4 certificates) until a self-signed one or a certificate with no URL.
 * What was fetched is added to <pile>. A failed fetch is not an error: out->note says why. Returns 0, or
 * MOAT_E_NOMEM.
 */
int moat_keymgr_fetch_issuers(X509 *leaf, STACK_OF(X509) * pile, moat_keymgr_fetched_t *out,
                              moat_err_t *err) MOAT_MUST_CHECK;

/* A certificate to install for a key. */
typedef struct moat_keymgr_install_req {
    const char *name;               /* the key's name */
    const char *source;             /* where the certificate came from, for messages ("www.crt") */
    const unsigned char *cert_data; /* the certificate file (PEM or DER), the leaf among its certificates */
    size_t cert_len;
    const char *chain_source;        /* where the chain came from, for messages, or NULL */
    const unsigned char *chain_data; /* more certificates for the chain, any order, or NULL */
    size_t chain_len;
    bool force;         /* install although expired or not yet valid */
    bool fetch_issuers; /* a missing intermediate may be fetched (moat_keymgr_fetch_issuers) */
    /* The configuration the change is checked against before the commit (moat_plan_check_change), or
     * NULL; <force> skips the check, as it skips the validity refusal. */
    const moat_config_t *cfg;
} moat_keymgr_install_req_t;

/* What moat_keymgr_install() did. */
typedef struct moat_keymgr_install_res {
    moat_pki_cert_info_t ci; /* the installed certificate */
    bool renewal;            /* a pending renewal replaced the active key */
    bool chain_completed;    /* the certificate was installed already; only its chain was completed */
    bool server_usage;       /* the certificate is for TLS servers (serverAuth) */
    size_t nchain;           /* intermediates stored with it */
    char *missing;           /* owned: the issuer the chain ends below (a root clients must trust), or NULL */
    moat_keymgr_fetched_t fetched; /* intermediates fetched over AIA caIssuers */
    moat_plan_notes_t notes;       /* what the check before commit noted */
} moat_keymgr_install_res_t;

void moat_keymgr_install_res_dispose(moat_keymgr_install_res_t *res);

/*
 * Installs the certificate of key <req->name> in a transaction of its own: the certificate of
 * <req->cert_data> whose public key is the name's pending key (a renewal or a new key), else its active key.
 * The chain is built from the file's other certificates, <req->chain_data> and moat's own CA certificates, so
 * a certificate moat's CA issued always gets its intermediate. The same certificate installed already is
 * not an error when the new chain is longer: its chain is completed (res->chain_completed). Before the
 * commit the server's loader check runs on the result. Refused with why and what to do: no such key,
 * no certificate for its key (naming the key it belongs to when the store has it), expired or not yet
 * valid without <force>, a chain that does not connect, a pair the server would not load, and the same
 * certificate with nothing to add. The store is unchanged on failure.
 */
int moat_keymgr_install(moat_store_t *st, const moat_keymgr_install_req_t *req,
                        moat_keymgr_install_res_t *res, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * "cert rollback": makes the certificate key <name> had before its current one current again, in a
 * transaction of its own, after the loader check and the check before commit against <cfg> (may be NULL)
 * refused nothing. *now receives the certificate made current (dispose it in every case). MOAT_E_NOTFOUND:
 * no certificate to roll back; MOAT_E_STATE: none before it; each with what to do.
 */
int moat_keymgr_rollback(moat_store_t *st, const moat_config_t *cfg, const char *name, moat_store_cert_t *now,
                         moat_plan_notes_t *notes, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * "key delete": deletes every key of <name>, its pending renewals and its certificates, in a transaction of
 * its own. Refused: no such key (MOAT_E_NOTFOUND), the key of moat's CA (MOAT_E_PERM), and a deletion that
 * leaves a site of <cfg> (may be NULL) that loads today unable to load (MOAT_E_STATE, the check before
 * commit). *deleted receives the key that was current, for the caller's message (dispose it).
 */
int moat_keymgr_key_delete(moat_store_t *st, const moat_config_t *cfg, const char *name,
                           moat_store_key_t *deleted, moat_plan_notes_t *notes,
                           moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The export policy and the bundle, for every front end that hands out a key (key export, ca
 * export-client): key <k> leaves the store only when it was made or imported exportable (MOAT_E_PERM
 * saying how to get an exportable one) and has a certificate (MOAT_E_STATE). Then *p12 (freed by the caller
 * with moat_free_secret) is its PKCS#12 with the certificate and chain under <password> (AES-256-CBC and
 * PBKDF2, or PBE-SHA1-3DES with <legacy>). Nothing is written or audited here.
 */
int moat_keymgr_export_p12(moat_store_t *st, const moat_store_key_t *k, const char *password, bool legacy,
                           unsigned char **p12, size_t *p12_len, moat_err_t *err) MOAT_MUST_CHECK;

/* The phases a key generation reports to moat_keymgr_new_req_t.on_progress besides moat_pki_key_generate's
 * own (0, 1, 2): before it starts, and after it ended. */
#define MOAT_KEYMGR_GEN_START (-1)
#define MOAT_KEYMGR_GEN_DONE (-2)
#define MOAT_KEYMGR_GEN_FAILED (-3)

/* A new key and its request: for a new name (key new) or a renewal (key renew). */
typedef struct moat_keymgr_new_req {
    const char *name;
    const moat_pki_subject_t *subject; /* key new: the subject (cn required); ignored by renew */
    const char *cn;                    /* renew: a new common name, or NULL for the current one */
    const char *sans;                  /* SANs in the text form, or NULL/"" (new: the CN; renew: see below) */
    moat_pki_alg_t alg;                /* the key's algorithm (renew: only when alg_given) */
    bool alg_given;                    /* renew: false keeps the current key's algorithm */
    bool exportable;
    moat_pki_on_progress_t on_progress; /* may be NULL: told MOAT_KEYMGR_GEN_* and the generation's phases */
    /* May be NULL: called once the request passed the checks, before the key is generated; a failure
     * (with <err> set) stops with nothing changed. A front end checks where the request will go. */
    int (*on_accepted)(void *arg, moat_err_t *err);
    void *progress_arg; /* for both */
    /* The configuration the change is checked against before the commit (moat_plan_check_change), or
     * NULL. */
    const moat_config_t *cfg;
} moat_keymgr_new_req_t;

/* What moat_keymgr_key_new()/moat_keymgr_key_renew() made. */
typedef struct moat_keymgr_new_res {
    char algorithm[32];     /* the algorithm's name (moat_pki_alg_name), set before the generation starts */
    char key_algorithm[32]; /* the key as described from itself (moat_pki_key_describe) */
    char key_fingerprint[MOAT_PKI_FINGERPRINT_SIZE];
    bool exportable;   /* of the new key (a renewal of an exportable key stays exportable) */
    bool renewal;      /* an active key keeps serving until the new key's certificate is installed */
    bool kept_earlier; /* an earlier pending request was set aside (its certificate can still be installed) */
    char *csr_pem;     /* owned: the request, PEM */
    size_t csr_pem_len;
    moat_plan_notes_t notes; /* what the check before commit noted */
} moat_keymgr_new_res_t;

void moat_keymgr_new_res_dispose(moat_keymgr_new_res_t *res);

/*
 * moat key new: generates a key of req->alg and a request for req->subject and req->sans, and stores both
 * as the pending key <req->name> in a transaction of its own, audited "key.new". Refused before the
 * generation (which can be slow) for a bad name (MOAT_E_INVAL) or a name in use (MOAT_E_EXISTS, saying to
 * renew it). The request leaves through res->csr_pem, after the commit.
 */
int moat_keymgr_key_new(moat_store_t *st, const moat_keymgr_new_req_t *req, moat_keymgr_new_res_t *res,
                        moat_err_t *err) MOAT_MUST_CHECK;

/*
 * moat key renew: a new pending key and request for the existing name <req->name>, with the subject and
 * names of its current certificate (else of its waiting request); req->cn and req->sans replace them (a
 * new CN alone is the only name). The algorithm stays unless req->alg_given. An earlier pending key is set
 * aside, not deleted, so that its certificate can still be installed. One transaction, audited
 * "key.renew", checked before its commit against the sites of req->cfg. Refused with why and what to do: no
 * such key, nothing to renew from, no common name, an algorithm moat does not generate.
 */
int moat_keymgr_key_renew(moat_store_t *st, const moat_keymgr_new_req_t *req, moat_keymgr_new_res_t *res,
                          moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The export of a key as a file (key export, ca export-client): moat_keymgr_export_p12() under
 * <password>, then audited <action> ("to <to>" and the encryption) in a transaction of its own. *p12
 * (freed by the caller with moat_free_secret) is for the caller to write, after this commit.
 */
int moat_keymgr_export(moat_store_t *st, const moat_store_key_t *k, const char *password, bool legacy,
                       const char *action, const char *to, unsigned char **p12, size_t *p12_len,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* moat key import: a key read from a file (moat_pki_import). */
typedef struct moat_keymgr_import_req {
    const char *name;
    const char *file;             /* where it came from, for the messages and the audit */
    const moat_pki_import_t *imp; /* what the file holds (borrowed) */
    bool exportable;
    bool replace;             /* new material for the existing key <name> */
    const moat_config_t *cfg; /* checked against before the commit (moat_plan_check_change), or NULL */
} moat_keymgr_import_req_t;

typedef struct moat_keymgr_import_res {
    bool replaced;      /* the material of an existing key was replaced */
    char algorithm[32]; /* the key, as described from itself */
    char key_fingerprint[MOAT_PKI_FINGERPRINT_SIZE];
    X509 *leaf;              /* borrowed from req->imp: its certificate, or NULL */
    size_t nchain;           /* intermediates stored with it */
    char *missing;           /* owned: the issuer the chain ends below, or NULL */
    char load_warning[256];  /* why the server would refuse the pair, or "" */
    moat_plan_notes_t notes; /* what the check before commit noted */
} moat_keymgr_import_res_t;

void moat_keymgr_import_res_dispose(moat_keymgr_import_res_t *res);

/*
 * moat key import: stores the one key of req->imp as <name> (pending), or with req->replace as the new
 * material of the existing key <name>, paired by public key with its certificate in the file (then
 * active, the other certificates ordered into its chain). One transaction: the generation bumped, audited
 * "key.import" or "key.replace", checked before the commit against the sites of req->cfg. Refused with why
 * and what to do: no key or several keys in the file, no certificate of the file matching the key, a name
 * in use (without replace) or nothing to replace, the key in the store under another name, a key that
 * does not match the current certificate it would replace. A pair the server would refuse is stored (an
 * importer must not lose a key) with the reason in res->load_warning.
 */
int moat_keymgr_key_import(moat_store_t *st, const moat_keymgr_import_req_t *req,
                           moat_keymgr_import_res_t *res, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * moat store restore: replaces the store with backup <src> (moat_store_restore_with; with <dry_run> only
 * checks and fills <diff>) so that moat's CA stays whole. On top of what the store carries forward
 * (issued certificates, revocations, the higher CRL number), a CRL that does not list every revocation
 * kept (the two stores revoked different certificates) is re-signed with the next number above both;
 * the diff says so ("crl", MOAT_DIFF_CHANGED). Refused, the store unchanged, when that CA's key is offline,
 * and by the check before commit against the sites of <cfg> (may be NULL: nothing to check; a dry run
 * checks too): a restore that leaves a site that loads today unable to load (its key missing, its
 * certificate expired, an anchor it needs gone) is MOAT_E_STATE naming the site and the reason, with
 * --force as the way to restore all the same. <notes> receives what the check noted.
 */
int moat_keymgr_restore(moat_store_t *st, const char *src, bool dry_run, const moat_config_t *cfg,
                        moat_plan_notes_t *notes, moat_store_diff_t *diff, moat_err_t *err) MOAT_MUST_CHECK;

/* What moat import did (or, in a dry run, would do) with one key it found. */
typedef enum {
    MOAT_KEYMGR_FOUND_IMPORT,     /* a new key (with its certificate, if any) */
    MOAT_KEYMGR_FOUND_RENEWAL,    /* a newer generation of a certbot lineage already in the store */
    MOAT_KEYMGR_FOUND_EXISTS,     /* the key is in the store already */
    MOAT_KEYMGR_FOUND_CERT_ADDED, /* the key was in the store; its newer certificate was not */
} moat_keymgr_found_action_t;

typedef struct moat_keymgr_found {
    moat_keymgr_found_action_t action;
    char name[MOAT_STORE_NAME_MAX]; /* the store name used (or found) */
    char warning[256];              /* why the server would refuse the imported pair; "" when it loads */
} moat_keymgr_found_t;

/*
 * moat import: brings every pair of <res> into the store, one transaction, and says in out[i] (res->npairs
 * entries) what became of pair i. A key already stored (found by public key, or its certificate in a
 * name's history) is not stored twice, only its newer certificate added; a certbot lineage keeps one
 * name, each newer generation a renewal; any other key is stored pending under its name, or "<name>-2",
 * ..., when that is taken, audited "key.import", with its certificates (a pair the server would refuse
 * stays, the reason in out[i].warning). The generation is bumped when anything changed, and the change
 * checked before the commit against the sites of <cfg> (may be NULL), <notes> saying what the check noted.
 * With <dry_run>, or without a store (<st> NULL), only decides: the store is read, never changed.
 */
int moat_keymgr_import_found(moat_store_t *st, const moat_import_result_t *res, bool dry_run, bool exportable,
                             const moat_config_t *cfg, moat_keymgr_found_t *out, moat_plan_notes_t *notes,
                             moat_err_t *err) MOAT_MUST_CHECK;

#endif
