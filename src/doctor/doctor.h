/*
 * doctor: checks and findings. Every check adds findings to a report: a severity, a stable id
 * ("cert-expired"), the subject it is about (a site, a key, an endpoint), what is wrong, why it
 * matters and the exact command that fixes it. Facts (protocols, cipher, chain) describe what was
 * seen. The report prints for people (grouped by subject, coloured on a tty) or as JSON.
 */
#ifndef MOAT_DOCTOR_H
#define MOAT_DOCTOR_H

#include "core/core.h"

#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { MOAT_DOCTOR_ERROR = 0, MOAT_DOCTOR_WARNING = 1, MOAT_DOCTOR_INFO = 2 } moat_doctor_sev_t;

typedef struct moat_doctor_finding {
    moat_doctor_sev_t severity;
    char id[48];                 /* stable, for scripts and tests: "cert-expired" */
    char subject[192];           /* "https://www.example.com:443", "site www.example.com", "key www" */
    char what[MOAT_ERR_MSG_MAX]; /* what is wrong */
    char why[MOAT_ERR_MSG_MAX];  /* why it matters */
    char fix[MOAT_ERR_MSG_MAX];  /* the command (or action) that fixes it */
} moat_doctor_finding_t;

typedef struct moat_doctor_fact {
    char subject[192];
    char key[32]; /* "protocols", "cipher", "chain[0]" */
    char value[MOAT_ERR_MSG_MAX];
} moat_doctor_fact_t;

typedef struct moat_doctor_report {
    moat_doctor_finding_t *findings; /* owned */
    size_t nfindings, findings_cap;
    moat_doctor_fact_t *facts; /* owned */
    size_t nfacts, facts_cap;
    char target[512]; /* what was inspected: a URL or a config path */
    char store[4096]; /* absolute store path inspected; empty when none */
    int oom;          /* an allocation failed: some findings were lost */
} moat_doctor_report_t;

void moat_doctor_report_init(moat_doctor_report_t *r);
void moat_doctor_report_dispose(moat_doctor_report_t *r);

/*
 * Adds a finding and returns it so that why/fix can be filled in; NULL when out of memory (r->oom is
 * then set, and moat_doctor_why/fix accept NULL). <what> is a printf format.
 */
moat_doctor_finding_t *moat_doctor_add(moat_doctor_report_t *r, moat_doctor_sev_t sev, const char *id,
                                       const char *subject, const char *what, ...) MOAT_PRINTF(5, 6);
void moat_doctor_why(moat_doctor_finding_t *f, const char *fmt, ...) MOAT_PRINTF(2, 3);
void moat_doctor_fix(moat_doctor_finding_t *f, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Adds a fact about <subject>. */
void moat_doctor_fact(moat_doctor_report_t *r, const char *subject, const char *key, const char *fmt, ...)
    MOAT_PRINTF(4, 5);

/* How many findings of <sev>; moat_doctor_find() returns the first finding with <id> (or NULL). */
size_t moat_doctor_count(const moat_doctor_report_t *r, moat_doctor_sev_t sev);
const moat_doctor_finding_t *moat_doctor_find(const moat_doctor_report_t *r, const char *id);
const char *moat_doctor_sev_name(moat_doctor_sev_t sev);

/* Human output, grouped by subject in the order subjects first appeared; ANSI colours when <color>. */
void moat_doctor_print_text(const moat_doctor_report_t *r, FILE *out, int color);
/* {"target", "store", "subjects": [{"subject", "facts": [{"key","value"}]}], "findings": [...],
 * "summary": {"errors","warnings","info"}} */
void moat_doctor_print_json(const moat_doctor_report_t *r, FILE *out);

/* Options shared by the checks. */
typedef struct moat_doctor_opts {
    int days;                    /* warn when a certificate expires within this many days (default 30) */
    int timeout_ms;              /* per connection attempt and per handshake (default 5000) */
    const char *ca_file;         /* extra trust anchors (PEM file), may be NULL */
    X509_STORE *anchors;         /* moat's own CA and trust anchors (borrowed), may be NULL */
    int system_trust;            /* also verify against the system trust store */
    const char *store_path;      /* remote: when this store exists, also trust moat's CA and trust anchors */
    const char *master_key_path; /* local: the store's master key, to check its rows (may be NULL) */
} moat_doctor_opts_t;

void moat_doctor_opts_init(moat_doctor_opts_t *o);

/* A parsed endpoint: "https://host:port/path", "host:port", "[v6]:port" or "host" (port 443). */
typedef struct moat_doctor_target {
    char host[256]; /* without brackets */
    char port[8];
    int is_ip; /* host is an IP literal: no SNI is sent, names are matched as IP addresses */
} moat_doctor_target_t;

/* Parses <s>; returns 0 or MOAT_E_USAGE with err saying what is wrong. */
int moat_doctor_target_parse(const char *s, moat_doctor_target_t *t, moat_err_t *err) MOAT_MUST_CHECK;

/* What a TLS endpoint sends, for 'moat inspect HOST:PORT'. */
typedef struct moat_doctor_peer {
    STACK_OF(X509) * chain; /* owned: the certificates as sent, leaf first */
    char version[16];       /* negotiated protocol */
    char cipher[64];
    char address[80]; /* the address that answered */
} moat_doctor_peer_t;
/* Handshakes with <target> (as moat_doctor_target_parse reads it), trying each address in turn; fills
 * <out> from the first that answers. MOAT_E_USAGE for a bad target, MOAT_E_IO (with the reason) when no
 * address gave a handshake. Free out->chain with sk_X509_pop_free(chain, X509_free). */
int moat_doctor_peer_chain(const char *target, int timeout_ms, moat_doctor_peer_t *out,
                           moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Inspects a TLS endpoint from outside: connection (refused, timeout, DNS failure), protocol versions,
 * cipher, the chain as sent, trust, names, validity, key strength, signatures and stapled OCSP.
 * Problems with the endpoint are findings, not errors: returns 0, or a negative MOAT_E_* only when
 * <target> cannot be parsed or the checks themselves could not run (err set).
 */
int moat_doctor_remote(const char *target, const moat_doctor_opts_t *o, moat_doctor_report_t *r,
                       moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Inspects this machine: the config at <config_path> (may be NULL), the store at <store_path> (absolute)
 * and the live listeners. Returns 0 with findings added, or a negative MOAT_E_* (err set) only when
 * the checks themselves could not run.
 */
int moat_doctor_local(const char *config_path, const char *store_path, const moat_doctor_opts_t *o,
                      moat_doctor_report_t *r, moat_err_t *err) MOAT_MUST_CHECK;

typedef struct moat_store moat_store_t;

/*
 * moat's own CA certificates (root, intermediate) and every trust anchor of <st>, as a new X509_STORE
 * in *out (caller frees). Returns 0 or a negative MOAT_E_* with err set.
 */
int moat_doctor_store_anchors(moat_store_t *st, X509_STORE **out, moat_err_t *err) MOAT_MUST_CHECK;

/*
 * Checks a certificate chain as a server sends it (leaf first, borrowed) for <host> (NULL: no name
 * check; IP literals are matched as addresses): order, completeness, trust (against <trust>,
 * described for people by <trust_desc>), validity, key strength, signature digests, purpose.
 * <subject> names the findings; <key_name> (may be NULL) is the moat key serving it, used in fixes.
 */
void moat_doctor_check_chain(moat_doctor_report_t *r, const char *subject, STACK_OF(X509) * chain,
                             const char *host, X509_STORE *trust, const char *trust_desc,
                             const moat_doctor_opts_t *o, const char *key_name);

/* Checks that <leaf> covers <host> (an IP literal is matched against IP addresses only). */
void moat_doctor_check_name(moat_doctor_report_t *r, const char *subject, X509 *leaf, const char *host,
                            const char *key_name);

/*
 * A trust store for the checks: the system store when o->system_trust, o->ca_file, and o->anchors'
 * certificates. Returns a new store (caller frees) or NULL with err set. <desc> receives a short
 * description ("the system trust store and ca.pem").
 */
X509_STORE *moat_doctor_trust_new(const moat_doctor_opts_t *o, char *desc, size_t descsz, moat_err_t *err);

#endif
