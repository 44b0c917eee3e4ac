/*
 * ca: moat's certificate authority as kept in the store, for every front end that issues or publishes
 * (moat ca, moat serve, the ACME server): loading the CA, issuing under the profile's policy and the CA's
 * name constraints, and the CRLs, re-signed on every revocation and before their next update.
 *
 * Signing comes from pki/, storage from store/; this module joins them and knows nothing of the command
 * line or the event loops. Every function runs on the caller's store connection (the control thread's,
 * in the server) and writes only inside the caller's transaction.
 */
#ifndef MOAT_CA_H
#define MOAT_CA_H

#include "config/config.h"
#include "core/core.h"
#include "pki/pki.h"
#include "plan/plan.h"
#include "store/store.h"

#include <stdbool.h>
#include <time.h>

/* moat's CA of one role as loaded from the store: its row, certificate and (when asked for) key. */
typedef struct moat_ca {
    moat_store_ca_t row;
    X509 *cert;    /* owned */
    EVP_PKEY *key; /* owned; NULL when not loaded */
} moat_ca_t;

/* Frees what <ca> owns and zeroes it (a zeroed moat_ca_t is fine). */
void moat_ca_dispose(moat_ca_t *ca);

/* Sets "this store has no CA yet" with the hint to run ca init; returns MOAT_E_NOTFOUND. */
int moat_ca_none(moat_err_t *err);

/*
 * Loads the CA of <role> into <ca> (zeroed first). With <need_key> its private key is decrypted too;
 * a key taken offline (moat ca export-root --remove-key) is MOAT_E_STATE saying so. A missing root is
 * moat_ca_none(); a missing intermediate MOAT_E_NOTFOUND. On failure <ca> holds nothing.
 */
int moat_ca_load(moat_store_t *st, moat_ca_role_t role, bool need_key, moat_ca_t *ca,
                 moat_err_t *err) MOAT_MUST_CHECK;

/* Loads the CA that issues: the intermediate when there is one, else the root. */
int moat_ca_load_issuing(moat_store_t *st, bool need_key, moat_ca_t *ca, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Stores <key> as the pending key of <name> inside the caller's transaction (PKCS#8 under the master key,
 * with its public key and, when <csr_der> is not NULL, its request); <algorithm> is the name key list
 * shows (NULL: described from the key). The CA's own keys and the keys it issues with (ca init, ca issue,
 * ca import-root) enter the store here; the key manager's moat_keymgr_key_add is the same step. *id (may
 * be NULL) receives the key row. MOAT_E_EXISTS when the name has a pending key (moat_store_key_add);
 * MOAT_E_PERM for the name of a CA key while the store has a CA (moat_ca_key_name_check): a key imported
 * under it would be an orphan, and an offline root comes back with moat ca import-root.
 */
int moat_ca_key_add(moat_store_t *st, const char *name, EVP_PKEY *key, const char *algorithm, bool exportable,
                    const moat_store_blob_t *csr_der, int64_t *id, moat_err_t *err) MOAT_MUST_CHECK;
/* moat_ca_key_add of the CA's own key of <role>, under moat_ca_key_name(role) (ca init, ca import-root). */
int moat_ca_own_key_add(moat_store_t *st, moat_ca_role_t role, EVP_PKEY *key, bool exportable, int64_t *id,
                        moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The certificates a site sends above a leaf of <ca>: the intermediate's own certificate when <ca> is the
 * intermediate (borrowed from ca->row), none for the root. Returns how many (0 or 1) were put in <out>.
 */
size_t moat_ca_chain(const moat_ca_t *ca, moat_store_blob_t *out);

/* Largest stored name policy of one profile ("ca.policy.<profile>.names", comma-separated). */
#define MOAT_CA_POLICY_NAMES_MAX 4096
/* Subject alternative names in one certificate: --san and a signed request alike (public CAs allow about
 * 100 to 250). */
#define MOAT_CA_MAX_SANS 64
#define MOAT_CA_POLICY_PATTERNS_MAX 64

/* The issuance policy of one profile as stored (settings "ca.policy.<profile>.max_days" and ".names"). */
typedef struct moat_ca_policy {
    moat_pki_policy_t p; /* p.patterns points into names */
    char names[MOAT_CA_POLICY_NAMES_MAX];
    const char *patterns[MOAT_CA_POLICY_PATTERNS_MAX];
} moat_ca_policy_t;

/* Reads the policy of <prof>; defaults (90/365 days, any name) where nothing is stored. */
int moat_ca_policy_load(moat_store_t *st, moat_pki_profile_t prof, moat_ca_policy_t *pol,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* What to issue. */
typedef struct moat_ca_issue_req {
    moat_pki_profile_t profile;
    long days;        /* 0 = the policy's maximum (then clamped to the CA's own validity) */
    const char *name; /* key name recorded with the certificate ("ca issue"), or NULL ("ca sign") */
} moat_ca_issue_req_t;

/*
 * Issues a certificate for <csr> with <ca> (loaded with its key) and records it in the CA's issued table,
 * inside the caller's transaction (so a later failure rolls the record back with everything else). Refused
 * before signing: a request whose self-signature fails, one asking for CA:TRUE (MOAT_E_PERM), one the
 * profile's policy refuses (MOAT_E_PERM naming the name or the maximum); after signing, before anything is
 * stored: a certificate whose names break the CA's name constraints (MOAT_E_PERM naming the names, as
 * clients would reject it). *out (owned by the caller) is the certificate.
 */
int moat_ca_issue(moat_store_t *st, const moat_ca_t *ca, X509_REQ *csr, const moat_ca_issue_req_t *req,
                  X509 **out, moat_err_t *err) MOAT_MUST_CHECK;

/* How long a CRL is valid (nextUpdate - thisUpdate) unless the CA's setting "ca.crl.days" says otherwise
 * (moat ca crl --days N, MOAT_CA_CRL_DAYS_MIN to MOAT_CA_CRL_DAYS_MAX). An offline root's CRL wants a long
 * one: it is re-signed only when the root key comes back. */
#define MOAT_CA_CRL_DAYS 7
#define MOAT_CA_CRL_DAYS_MIN 1
#define MOAT_CA_CRL_DAYS_MAX 366

/* The CRL lifetime of this store's CA in days (MOAT_CA_CRL_DAYS when unset). */
int moat_ca_crl_days(moat_store_t *st, long *days, moat_err_t *err) MOAT_MUST_CHECK;
/* Sets it (MOAT_E_INVAL outside the range, saying it); CRLs signed from then on use it. */
int moat_ca_crl_days_set(moat_store_t *st, long days, moat_err_t *err) MOAT_MUST_CHECK;
/* Largest CRL PEM read back from the store. */
#define MOAT_CA_CRL_PEM_MAX (4L * 1024 * 1024)

/*
 * Re-signs the CRL of the CA <role> (all its revoked issued certificates, the next CRL number, valid for
 * moat_ca_crl_days()) with <ca_cert>/<ca_key> and stores it as PEM in setting "ca.crl.<role>"
 * ("ca.crl.root", "ca.crl.intermediate"), inside the caller's transaction.
 */
int moat_ca_crl_refresh(moat_store_t *st, moat_ca_role_t role, X509 *ca_cert, EVP_PKEY *ca_key,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* Re-signs the CRL of <role> with <ca_cert>/<ca_key> in a transaction of its own, the generation bumped,
 * audited "ca.crl" with <why>: what the running server does when a CRL is due. */
int moat_ca_crl_resign(moat_store_t *st, moat_ca_role_t role, X509 *ca_cert, EVP_PKEY *ca_key,
                       const char *why, moat_err_t *err) MOAT_MUST_CHECK;

/* Reads the stored CRL of <role> into <pem> (<pemsz> bytes) and parses it: *crl (owned by the caller) is
 * NULL when there is none yet. A stored CRL that does not parse is MOAT_E_PKI. */
int moat_ca_crl_stored(moat_store_t *st, moat_ca_role_t role, char *pem, size_t pemsz, X509_CRL **crl,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* True when <crl> (NULL: none) is due for re-signing at <now>: no nextUpdate, or half of its own lifetime
 * (nextUpdate - thisUpdate) passed, so that relying parties never see it expire. */
bool moat_ca_crl_due(const X509_CRL *crl, time_t now);

/* Joins <n> items with commas into <out> ("" for none): MOAT_E_LIMIT, naming <what>, when they do not fit. */
int moat_ca_join(const char *const *items, size_t n, const char *what, char *out, size_t outsz,
                 moat_err_t *err) MOAT_MUST_CHECK;

/* Appends to the audit log, the detail formatted (a detail cut at 1 KiB is still a useful record). */
int moat_ca_audit(moat_store_t *st, const char *action, const char *object, moat_err_t *err, const char *fmt,
                  ...) MOAT_PRINTF(5, 6) MOAT_MUST_CHECK;

/*
 * The end of every CA change, inside its transaction: the generation bumped (a running server takes the
 * change up), the change checked against the sites of <cfg> (moat_plan_check_change_flags with <flags>;
 * cfg NULL: nothing to check; <notes> may be NULL) and committed (moat_plan_commit). On a failure the
 * transaction is rolled back.
 */
int moat_ca_commit(moat_store_t *st, const moat_config_t *cfg, unsigned flags, moat_plan_notes_t *notes,
                   moat_err_t *err) MOAT_MUST_CHECK;

/* The CRL and OCSP locations the certificates of <ca> name, from its base URL: *out is <urls>, or NULL
 * when the CA has no base URL. */
int moat_ca_urls(const moat_ca_t *ca, moat_pki_urls_t *urls, const moat_pki_urls_t **out,
                 moat_err_t *err) MOAT_MUST_CHECK;

/* ---- the CA's life: ca init, export-root, import-root, set-url, policy (ca/admin.c) ---- */

/* The names of the key rows that hold the CA's keys (they show in key list). */
#define MOAT_CA_ROOT_KEY "moat-ca-root"
#define MOAT_CA_INTER_KEY "moat-ca-intermediate"
#define MOAT_CA_ROOT_DAYS 3650
#define MOAT_CA_INTER_DAYS 1825

/* The key name of the CA of <role>. */
const char *moat_ca_key_name(moat_ca_role_t role);

typedef struct moat_ca_init_req {
    moat_ca_role_t role;
    const char *cn;            /* NULL: "moat Root CA" / "moat Intermediate CA" */
    long days;                 /* 0: MOAT_CA_ROOT_DAYS / MOAT_CA_INTER_DAYS */
    moat_pki_alg_t alg;        /* the CA key's algorithm */
    const char *url;           /* root only: the public base URL (moat ca set-url), or NULL */
    bool exportable;           /* the key may be exported (needed to take the root offline) */
    const char *const *permit; /* intermediate only: permitted DNS subtrees (name constraints) */
    size_t npermit;
    const moat_config_t *cfg; /* what the change is checked against, or NULL */
} moat_ca_init_req_t;

typedef struct moat_ca_init_res {
    moat_pki_cert_info_t ci; /* the CA's certificate */
    long days;               /* its validity as asked */
    moat_plan_notes_t notes;
} moat_ca_init_res_t;

void moat_ca_init_res_dispose(moat_ca_init_res_t *r);

/*
 * Creates the CA of req->role in one transaction: its key (stored as moat_ca_key_name()), its certificate
 * (self-signed, or signed by the root, which must have its key, for an intermediate) and its first CRL,
 * audited, generation bumped, checked before commit. Refused with the reason: a CA of that role exists
 * already, a key holds the CA's key name, --url for an intermediate, --permit for a root.
 */
int moat_ca_init(moat_store_t *st, const moat_ca_init_req_t *req, moat_ca_init_res_t *res,
                 moat_err_t *err) MOAT_MUST_CHECK;

/* Asks for the password of an export (a file, a prompt): called only once the export is allowed. */
typedef int (*moat_ca_password_fn)(void *arg, char *out, size_t outsz, moat_err_t *err);

typedef struct moat_ca_export_root_req {
    const char *out;              /* the PKCS#12 file (0600; "-" standard output) */
    moat_ca_password_fn password; /* its password */
    void *password_arg;
    bool legacy;              /* PBE-SHA1-3DES */
    bool remove_key;          /* the root key then leaves the store (the root goes offline) */
    const moat_config_t *cfg; /* what the change is checked against, or NULL */
} moat_ca_export_root_req_t;

/*
 * Writes the root CA's key and certificate as PKCS#12 to req->out, audited. Refused (MOAT_E_PERM) for a
 * root made without --exportable. With req->remove_key (refused without an intermediate, which then
 * issues) the file is written first, then the root's key row is deleted and its CA row keeps the
 * certificate with no key, in one checked transaction: a failure removes the file again. Otherwise the
 * audit commits first and the file is written after.
 */
int moat_ca_export_root(moat_store_t *st, const moat_ca_export_root_req_t *req, moat_plan_notes_t *notes,
                        moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_ca_import_root_req {
    const unsigned char *data; /* the PKCS#12 (or PEM) file moat ca export-root wrote */
    size_t len;
    const char *file; /* its name, for messages */
    const char *password;
    const moat_config_t *cfg; /* what the change is checked against, or NULL */
} moat_ca_import_root_req_t;

typedef struct moat_ca_import_root_res {
    moat_pki_cert_info_t ci; /* the root's certificate */
    bool adopted;            /* the key was in the store already under MOAT_CA_ROOT_KEY (key import) */
    moat_plan_notes_t notes;
} moat_ca_import_root_res_t;

void moat_ca_import_root_res_dispose(moat_ca_import_root_res_t *r);

/*
 * Brings an offline root back (after moat ca export-root --remove-key): the key of req->data must be the
 * key of the root certificate the store holds (a file of another CA is refused, naming it). It becomes the
 * root's key again, exportable as it was, stored under MOAT_CA_ROOT_KEY, or that key row is used when a
 * key import already put the same key there (never two rows, never an orphan); another key under that name
 * is refused. The root's CRL is re-signed at once (the next number, the CA's lifetime), audited,
 * generation bumped, checked before commit. MOAT_E_STATE when the root's key is in the store.
 */
int moat_ca_import_root(moat_store_t *st, const moat_ca_import_root_req_t *req,
                        moat_ca_import_root_res_t *res, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Whether a key may be stored under <name> by a key import or a new key: the CA's key names are refused
 * (MOAT_E_PERM) while the store has a CA, saying how the CA's key comes back (moat ca import-root).
 */
int moat_ca_key_name_check(moat_store_t *st, const char *name, moat_err_t *err) MOAT_MUST_CHECK;

/* Sets the public base URL of every CA row (moat ca set-url), audited, generation bumped; *urls receives
 * the CRL and OCSP locations issued certificates will name. */
int moat_ca_set_url(moat_store_t *st, const char *base, moat_pki_urls_t *urls,
                    moat_err_t *err) MOAT_MUST_CHECK;

/* A change of one profile's issuing policy. */
typedef struct moat_ca_policy_change {
    long max_days;            /* 1..36500; 0 unchanged */
    const char *const *allow; /* the allowed names, replacing the list (each may be comma-separated) */
    size_t nallow;
    bool allow_any; /* remove the name restriction */
} moat_ca_policy_change_t;

/* Stores a policy change of <prof> in one audited transaction. MOAT_E_LIMIT when the names do not fit. */
int moat_ca_policy_set(moat_store_t *st, moat_pki_profile_t prof, const moat_ca_policy_change_t *c,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* ---- issuing for the command line: ca sign, ca issue (ca/sign.c) ---- */

/* What ca sign and ca issue made. */
typedef struct moat_ca_signed {
    X509 *cert;              /* owned */
    STACK_OF(X509) * chain;  /* owned: what clients need above it (the intermediate), may be empty */
    moat_pki_cert_info_t ci; /* of cert */
    moat_ca_role_t issuing;  /* which CA signed it */
    bool exportable;         /* ca issue: the key's export policy */
    moat_plan_notes_t notes; /* ca issue: what the check said about the sites */
} moat_ca_signed_t;

void moat_ca_signed_dispose(moat_ca_signed_t *s);

/*
 * Signs the outside request <csr> (from <source>, for the audit) with the issuing CA under req's profile
 * and policy (moat_ca_issue), recorded and audited in one commit. Nothing is installed: the caller writes
 * the certificate and out->chain where it is wanted (after the commit, so nothing leaves unrecorded).
 */
int moat_ca_sign(moat_store_t *st, X509_REQ *csr, const moat_ca_issue_req_t *req, const char *source,
                 moat_ca_signed_t *out, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_ca_issue_key_req {
    const char *name;           /* the new key's name */
    moat_pki_subject_t subject; /* subject.cn required */
    const char *const *sans;    /* "DNS:a,IP:..." each (--san is repeatable), none: from the CN */
    size_t nsans;
    moat_pki_alg_t alg;
    int exportable;            /* 1, 0, or -1: the profile's default (client keys are, server keys not) */
    moat_ca_issue_req_t issue; /* profile and days; issue.name is set from name */
    const moat_config_t *cfg;  /* what the change is checked against, or NULL */
} moat_ca_issue_key_req_t;

/*
 * moat ca issue: a new key and its certificate from the issuing CA in one checked transaction, the key
 * stored as the active key of r->name with the certificate and its chain. MOAT_E_EXISTS for a name that
 * has a key.
 */
int moat_ca_issue_key(moat_store_t *st, const moat_ca_issue_key_req_t *r, moat_ca_signed_t *out,
                      moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The key of the client certificate moat's CA issued under <name> (moat ca export-client), into <k>:
 * MOAT_E_NOTFOUND when the CA issued nothing under that name, MOAT_E_STATE for a server certificate or a
 * revoked one, each with the way on.
 */
int moat_ca_client_key(moat_store_t *st, const char *name, moat_store_key_t *k,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* ---- revocation and the CRL of the day: ca revoke, ca crl (ca/revoke.c) ---- */

typedef struct moat_ca_revoked {
    moat_store_issued_t is; /* the certificate as it was before the revocation */
    int64_t when;
    moat_pki_reason_t reason;
    moat_plan_notes_t notes; /* sites that serve it: clients refuse it from now on */
} moat_ca_revoked_t;

void moat_ca_revoked_dispose(moat_ca_revoked_t *r);

/*
 * Revokes the certificate moat's CA issued with serial (any spelling) or key name <which>, re-signs its
 * CA's CRL and bumps the generation, audited, in one checked transaction. A site of <cfg> that serves it
 * is refused (MOAT_E_STATE naming the site, nothing changed: the server would go on serving it with a
 * "revoked" staple, moat_plan_served_revoked), unless <force> (a compromised key must be revocable), when
 * it is a note. MOAT_E_NOTFOUND for a serial moat did not issue, MOAT_E_STATE for one revoked already.
 */
int moat_ca_revoke(moat_store_t *st, const moat_config_t *cfg, const char *which, moat_pki_reason_t reason,
                   bool force, moat_ca_revoked_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * The one way a revocation is written, inside the caller's transaction (moat_ca_revoke, the ACME server's
 * revokeCert): the issued certificate <is> marked revoked at <when> for <reason>, its CA's CRL re-signed,
 * audited <action> with <detail>.
 */
int moat_ca_revoke_write(moat_store_t *st, const moat_store_issued_t *is, int64_t when, int reason,
                         const char *action, const char *detail, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_ca_crl_req {
    bool root;     /* the root's CRL rather than the issuing CA's */
    long set_days; /* > 0: the CA's CRL lifetime from now on, and re-sign this one with it */
    bool keyless;  /* the store was opened without its master key: print what is stored */
} moat_ca_crl_req_t;

typedef struct moat_ca_crl_res {
    moat_ca_role_t role;
    char *pem;      /* owned: the CRL in PEM */
    X509_CRL *crl;  /* owned */
    bool resigned;  /* it was re-signed (due, unreadable, or a new lifetime) */
    char note[512]; /* what the user should know ("" when nothing) */
} moat_ca_crl_res_t;

void moat_ca_crl_res_dispose(moat_ca_crl_res_t *r);

/*
 * The current CRL of the issuing CA (or the root): the stored one, re-signed first when it is due
 * (moat_ca_crl_due), does not parse, or req->set_days asks for a new lifetime, in one audited transaction
 * that bumps the generation. A due CRL whose key is not available (offline, or req->keyless) is returned
 * as it is with a note; none at all then is MOAT_E_STATE, and a new lifetime for an offline key too.
 */
int moat_ca_crl_current(moat_store_t *st, const moat_ca_crl_req_t *req, moat_ca_crl_res_t *res,
                        moat_err_t *err) MOAT_MUST_CHECK;

/* ---- moat's root in this machine's trust stores (moat trust install-local) ---- */

/* Where Debian keeps certificates the administrator adds; update-ca-certificates reads it. */
#define MOAT_CA_LOCAL_DIR "/usr/local/share/ca-certificates"

typedef struct moat_ca_local_opts {
    const char *root;  /* a file system root to work under (an image being built, a test), NULL = "/" */
    const char *nssdb; /* the NSS database folder; NULL = $HOME/.pki/nssdb when it exists (not under
                        * <root>), "" = none */
    bool remove;       /* take the root out instead */
} moat_ca_local_opts_t;

typedef struct moat_ca_local_res {
    char name[32];       /* "moat-" and 16 hex digits of the root's fingerprint: file and NSS nickname */
    char file[4096];     /* <root>/usr/local/share/ca-certificates/<name>.crt */
    char bundle[4096];   /* the bundle update-ca-certificates rebuilt */
    bool system_changed; /* the file was added (removed) rather than there (absent) already */
    char nssdb[4096];    /* the NSS database used, "" when none */
    bool nss_changed;    /* the certificate was added to (removed from) it */
} moat_ca_local_res_t;

/*
 * Puts <root_cert> into this machine's trust stores: <name>.crt in MOAT_CA_LOCAL_DIR, then
 * update-ca-certificates (with its folders under o->root when given); and the NSS database with certutil
 * (trust "C,,"). With o->remove, takes it out of both. Running it twice changes nothing. Errors say what
 * failed and what to do (root needed, a tool missing); the file is written before the tools run.
 */
int moat_ca_install_local(X509 *root_cert, const moat_ca_local_opts_t *o, moat_ca_local_res_t *res,
                          moat_err_t *err) MOAT_MUST_CHECK;

/* ---- CRLs added by hand for trust anchors (moat trust crl add) ---- */

typedef struct moat_ca_trust_crl {
    char issuer[256]; /* the anchor's subject */
    time_t this_update, next_update;
    size_t revoked;
} moat_ca_trust_crl_t;

/*
 * Adds CRL <data> (PEM or DER) for trust anchor <anchor>, for certificates that name no distribution
 * point: it must verify against the anchor (moat_pki_crl_verify), be in date, and not be older than the
 * one held. Stored in the CRL cache as MOAT_STORE_CRL_ADDED<anchor>, audited, generation bumped, in one
 * transaction of its own. Errors say what is wrong and what to do; the store is unchanged on failure.
 */
int moat_ca_trust_crl_add(moat_store_t *st, const char *anchor, const unsigned char *data, size_t len,
                          moat_ca_trust_crl_t *out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Mints an external account binding key for moat's ACME server (RFC 8555 §7.3.4): a new key id
 * "eab-<32 base64url characters>" into <kid> and a 256-bit HMAC key, base64url, into <hmac> (shown once:
 * the store keeps it sealed under the master key), in one commit with its audit line. Each key enrolls one
 * account.
 */
int moat_ca_eab_new(moat_store_t *st, char *kid, size_t kidsz, char *hmac, size_t hmacsz,
                    moat_err_t *err) MOAT_MUST_CHECK;

/* The store's CRL cache (what the server fetched and what was added by hand), with the certificates of
 * their issuers parsed, for telling which CRLs an anchor covers (moat trust list). */
typedef struct moat_ca_trust_crls {
    moat_store_crl_list_t list;
    X509 **issuers;       /* per CRL: its issuer's certificate, NULL when it does not parse */
    unsigned char *under; /* per CRL: set by moat_ca_trust_crls_under() */
} moat_ca_trust_crls_t;

int moat_ca_trust_crls_load(moat_store_t *st, moat_ca_trust_crls_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_ca_trust_crls_dispose(moat_ca_trust_crls_t *c);
/*
 * Marks in c->under the CRLs issued by <anchor> or by a CA below it whose certificate the cache holds as
 * another CRL's issuer (a corporate root, its departments' CAs): a CA is below when the anchor, or a CA
 * already below it, issued and signed its certificate.
 */
void moat_ca_trust_crls_under(moat_ca_trust_crls_t *c, const moat_store_anchor_t *anchor);

/* ---- trust anchors for client certificates (moat trust add, moat trust remove) ---- */

/* Most certificates one file adds as anchors. */
#define MOAT_CA_TRUST_ADD_MAX 16

typedef struct moat_ca_trust_add_req {
    const char *source;        /* where the certificates come from, for messages ("corp-root.pem") */
    const unsigned char *data; /* PEM with one or more certificates, or DER */
    size_t len;
    const char *name;         /* the anchor's name (several: NAME-1, NAME-2, ...); NULL: from the CN */
    bool force;               /* add an expired certificate anyway */
    const moat_config_t *cfg; /* what the change is checked against (moat_plan_check_change), or NULL */
} moat_ca_trust_add_req_t;

typedef struct moat_ca_trust_anchor {
    char name[MOAT_STORE_NAME_MAX];
    moat_pki_cert_info_t info;
} moat_ca_trust_anchor_t;

typedef struct moat_ca_trust_added {
    moat_ca_trust_anchor_t items[MOAT_CA_TRUST_ADD_MAX];
    size_t n;
    moat_plan_notes_t notes; /* what the check said about the sites */
} moat_ca_trust_added_t;

void moat_ca_trust_added_dispose(moat_ca_trust_added_t *a);

/*
 * Adds every certificate of req->data as a trust anchor, in one transaction, audited, generation bumped,
 * checked before commit. Each must be a CA certificate allowed to sign certificates, and in date (unless
 * req->force); one that is not refuses the whole file with the reason. "moat-ca" is moat's own CA and
 * never a stored name. On failure the store is unchanged and <out> holds nothing.
 */
int moat_ca_trust_add(moat_store_t *st, const moat_ca_trust_add_req_t *req, moat_ca_trust_added_t *out,
                      moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_ca_trust_removed {
    char subject[512];       /* the removed anchor's subject */
    moat_plan_notes_t notes; /* what the check said about the sites */
} moat_ca_trust_removed_t;

/*
 * Removes anchor <name> in one transaction, audited, generation bumped, checked before commit against
 * <cfg>: a site left without the anchors it needs refuses the removal (the server would not load it).
 */
int moat_ca_trust_remove(moat_store_t *st, const moat_config_t *cfg, const char *name,
                         moat_ca_trust_removed_t *out, moat_err_t *err) MOAT_MUST_CHECK;

#endif
