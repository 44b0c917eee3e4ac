/*
 * plan: the serving plan, what a site serves, decided once for every front end that needs to know
 * (moat serve's loader, serve --check, doctor): which certificates of the store a site's
 * "certificate:" setting selects, by the same rule, so that a prediction never disagrees with the server.
 *
 * Built on config/ and store/; knows nothing of TLS contexts, event loops or the command line. Reads
 * only, on the caller's store connection (inside its transaction when it has one, so a change can be
 * checked before it commits).
 */
#ifndef MOAT_PLAN_H
#define MOAT_PLAN_H

#include "config/config.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>

/* Most hosts of one site the automatic choice looks at. */
#define MOAT_PLAN_MAX_HOSTS 64

/* The certificates one site serves: at most one per slot, [0] ECDSA (or another non-RSA key), [1] RSA;
 * the TLS handshake picks between them by what the client supports. */
typedef struct moat_plan_site {
    const moat_store_cert_t *certs[2]; /* borrowed from the lists below; NULL where the slot is empty */
    moat_store_cert_list_t lists[MOAT_PLAN_MAX_HOSTS]; /* owned: certificate: auto's candidates */
    size_t nlists;
    moat_store_key_t key; /* owned: certificate: NAME's key */
} moat_plan_site_t;

/*
 * The slot a stored certificate serves in: 1 for an RSA key, 0 otherwise; -1 when it must not serve at
 * all (not a TLS server certificate by its key usage and extended key usage, or a CA).
 */
int moat_plan_cert_slot(const moat_store_cert_t *c);

/*
 * Decides what <site> serves at <now> into <out> (dispose it in every case).
 *   certificate: NAME  the active key's certificate: MOAT_E_NOTFOUND without that key, MOAT_E_STATE when it
 *                      has no certificate, or one that is expired, not yet valid or not a server certificate.
 *   certificate: auto  per slot, the valid server certificate that covers the most of the site's hosts,
 *                      then the most exactly (not by a wildcard), then the latest not_after, then the
 *                      latest installed; MOAT_E_NOTFOUND when none covers any host.
 * Errors name the site and say what to do.
 */
int moat_plan_site(moat_store_t *st, const moat_site_t *site, int64_t now, moat_plan_site_t *out,
                   moat_err_t *err) MOAT_MUST_CHECK;
void moat_plan_site_dispose(moat_plan_site_t *p);

/* ---- client-certificate anchors ---- */

/* The client_trust name of moat's own CA (its root and intermediate), always available. */
#define MOAT_PLAN_CA_ANCHOR "moat-ca"

/* The anchors one site verifies client certificates against (DER certificates). */
typedef struct moat_plan_anchors {
    moat_store_blob_t *der; /* owned */
    size_t n;
} moat_plan_anchors_t;

/*
 * The anchors of <site> (which asks for client certificates) into <out> (dispose it in every case): the
 * names of its client_trust, MOAT_PLAN_CA_ANCHOR being moat's CA, or by default moat's CA and every
 * anchor of the store. A name the store lacks is MOAT_E_NOTFOUND and no anchor at all MOAT_E_STATE: the
 * server does not load the site (fail closed). Errors name the site and say what to do.
 */
int moat_plan_site_anchors(moat_store_t *st, const moat_site_t *site, moat_plan_anchors_t *out,
                           moat_err_t *err) MOAT_MUST_CHECK;
void moat_plan_anchors_dispose(moat_plan_anchors_t *a);
/* Appends copies of the anchors of <from> to <to>. */
int moat_plan_anchors_copy(const moat_plan_anchors_t *from, moat_plan_anchors_t *to,
                           moat_err_t *err) MOAT_MUST_CHECK;
/*
 * Trust anchors by name, the rule of client_trust: and of an upstream's tls.trust: into <out> (dispose it
 * in every case): MOAT_PLAN_CA_ANCHOR is moat's CA (nothing when the store has none), any other name the
 * store's anchor of that name; no names: moat's CA and every anchor of the store. On an error
 * (MOAT_E_NOTFOUND: no such anchor) *bad is the index of the name that failed, for the caller's message.
 */
int moat_plan_anchors_named(moat_store_t *st, const moat_strlist_t *names, moat_plan_anchors_t *out,
                            size_t *bad, moat_err_t *err) MOAT_MUST_CHECK;
/* Whether <site> verifies client certificates against anchor <name> by the same rule: it asks for client
 * certificates, and its client_trust names <name> or is empty (every anchor). */
bool moat_plan_site_trusts(const moat_site_t *site, const char *name);

/*
 * Whether stored certificate <c> is one moat's CA issued and revoked (*revoked 1) or not (0): the
 * server serves it with a "revoked" OCSP staple, and clients that check revocation refuse it.
 */
int moat_plan_cert_revoked(moat_store_t *st, const moat_store_cert_t *c, int *revoked,
                           moat_err_t *err) MOAT_MUST_CHECK;

/* ---- the document root ---- */

/*
 * Opens the root: folder of <site> (which has one) into <root> as the server serves it, or fails naming
 * the site, the folder and why (the server does not serve the site; doctor reports it).
 */
int moat_plan_site_root(const moat_site_t *site, moat_http_root_t *root, moat_err_t *err) MOAT_MUST_CHECK;

/* ---- what a loaded site serves wrong ---- */

/*
 * Whether certificate <leaf> covers <host> as a client checks it: an IP literal against the IP names, a
 * DNS name against the DNS names (never the common name), a wildcard host ("*.example.com") only by a
 * certificate that covers every name under it.
 */
bool moat_plan_cert_covers(X509 *leaf, const char *host);

/* What serve --check and doctor say of a site the server loads, beyond the refusals of moat_plan_site(). */
typedef enum moat_plan_problem_kind {
    MOAT_PLAN_REVOKED,   /* it serves a certificate moat's CA revoked (moat_plan_served_revoked) */
    MOAT_PLAN_UNCOVERED, /* a host of the site that no certificate it serves covers */
} moat_plan_problem_kind_t;

typedef struct moat_plan_problem {
    moat_plan_problem_kind_t kind;
    const moat_store_cert_t *cert; /* MOAT_PLAN_REVOKED: that certificate; UNCOVERED: NULL */
    const char *host;              /* MOAT_PLAN_UNCOVERED: that host; else NULL */
    char what[MOAT_ERR_MSG_MAX];   /* the sentence, naming the site */
    char hint[MOAT_ERR_MSG_MAX];   /* what to do */
} moat_plan_problem_t;

typedef void (*moat_plan_problem_fn)(void *arg, const moat_plan_problem_t *p);

/*
 * Calls <fn> for every problem of what <plan> (moat_plan_site() of <site>) serves: each certificate moat's
 * CA revoked, then each host of the site that none of its certificates covers (a client asking for it
 * refuses the handshake). Returns 0, or an error reading the store.
 */
int moat_plan_site_problems(moat_store_t *st, const moat_site_t *site, const moat_plan_site_t *plan,
                            moat_plan_problem_fn fn, void *arg, moat_err_t *err) MOAT_MUST_CHECK;

/* ---- the check before commit ---- */

/* What a change that the check let through does to the sites: lines for the user ("" when none). */
typedef struct moat_plan_notes {
    char text[MOAT_ERR_MSG_MAX]; /* one note a line, each ending in '\n' */
} moat_plan_notes_t;

/*
 * THE CHECK BEFORE COMMIT, for every command that changes keys, certificates, trust anchors or the CA
 * (trust add/remove, ca init/revoke/export-root/import-root, cert install/rollback, key delete/renew,
 * store restore). Call it inside the transaction, after the writes and before moat_store_commit():
 *
 *     if (moat_plan_check_change(st, cfg, &notes, err) != 0) { moat_store_rollback(st); fail; }
 *
 * For every site of <cfg> (the configuration the server runs; NULL or no sites: nothing to check) it
 * builds the serving plan on the uncommitted transaction of <st> by the server's own rules: the
 * certificates moat_plan_site() picks and, for a site that asks for client certificates, its anchors
 * (moat_plan_site_anchors()). A site the server loads from the committed store and would not load after
 * the change refuses it: MOAT_E_STATE "the server would not load this change: site ...", the reason and
 * what to do for every such site ("; " apart), and the caller rolls back. A site that did not load before the
 * change does not block it. Certificates moat's CA revoked that a site still serves after the change (and did
 * not serve revoked before) are not refused (a revocation must always be possible) but said in <notes>. The
 * committed state is read through a second, read-only connection to the same store.
 */
int moat_plan_check_change(moat_store_t *st, const moat_config_t *cfg, moat_plan_notes_t *notes,
                           moat_err_t *err) MOAT_MUST_CHECK;

/* moat_plan_check_change() with MOAT_PLAN_* <flags>. */
#define MOAT_PLAN_REFUSE_REVOKED                                                                             \
    1u /* a certificate moat's CA revoked that a site would newly serve is a                                 \
        * refusal, not a note (moat ca revoke without --force) */
int moat_plan_check_change_flags(moat_store_t *st, const moat_config_t *cfg, unsigned flags,
                                 moat_plan_notes_t *notes, moat_err_t *err) MOAT_MUST_CHECK;
/*
 * The end of a change to what is served, for every service that makes one: moat_plan_check_change_flags()
 * on the open transaction, then the commit; on a refusal or any failure the transaction is rolled back.
 */
int moat_plan_commit(moat_store_t *st, const moat_config_t *cfg, unsigned flags, moat_plan_notes_t *notes,
                     moat_err_t *err) MOAT_MUST_CHECK;
/* moat_plan_check_change_flags() of a change made in a store other than the one it replaces (a restore
 * fills a copy): <was> is the store as it was, read as the committed state (NULL: <st>'s own, as above). */
int moat_plan_check_change_from(moat_store_t *st, moat_store_t *was, const moat_config_t *cfg, unsigned flags,
                                moat_plan_notes_t *notes, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * What the server does with a certificate moat's CA revoked that a site serves, said once for the check
 * before commit and its readers: it loads and serves it, with a "revoked" OCSP staple, and clients that
 * check revocation refuse it. Writes the sentence naming <site>, <key> and <serial> to <out>; returns
 * its length as snprintf does.
 */
int moat_plan_served_revoked(const char *site, const char *key, const char *serial, char *out, size_t outsz);

#endif
