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

/* Reads the stored CRL of <role> into <pem> (<pemsz> bytes) and parses it: *crl (owned by the caller) is
 * NULL when there is none yet. A stored CRL that does not parse is MOAT_E_PKI. */
int moat_ca_crl_stored(moat_store_t *st, moat_ca_role_t role, char *pem, size_t pemsz, X509_CRL **crl,
                       moat_err_t *err) MOAT_MUST_CHECK;

/* True when <crl> (NULL: none) is due for re-signing at <now>: no nextUpdate, or half of its own lifetime
 * (nextUpdate - thisUpdate) passed, so that relying parties never see it expire. */
bool moat_ca_crl_due(const X509_CRL *crl, time_t now);

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
