/*
 * import: finds every key and certificate a previous server used, and pairs them, so that `moat
 * import` can move them into the store without losing any.
 *
 * Two steps, neither of which touches the store:
 * 1. moat_import_scan(): from a directory, an nginx config or an Apache config, the list of files to
 *    read, each with where it was found (nginx ssl_certificate*, Apache SSLCertificate*, following
 *    include/Include/IncludeOptional with globs; certbot's live/ and archive/; any file in a directory).
 * 2. moat_import_analyse(): reads those files (PEM, DER, PKCS#8, PKCS#12), pairs keys and certificates
 *    by public key, builds chains, groups certbot history, and reports orphans and the encrypted files
 *    it could not open.
 * Writing the result into the store is the command's job (src/cli/import.c).
 */
#ifndef MOAT_IMPORT_H
#define MOAT_IMPORT_H

#include "core/core.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* certbot's layout: live/<name>/ holds the current files, archive/<name>/ every version. */
typedef enum moat_import_certbot {
    MOAT_IMPORT_CERTBOT_NONE = 0,
    MOAT_IMPORT_CERTBOT_LIVE = 1,   /* current */
    MOAT_IMPORT_CERTBOT_ARCHIVE = 2 /* history */
} moat_import_certbot_t;

/* One file to read. All strings are owned by the scan. */
typedef struct moat_import_file {
    char *path;      /* absolute path as found (a certbot live/ symlink stays a live/ path) */
    char *real;      /* realpath(): the same file found twice is read once */
    char *origin;    /* where it was found: "/etc/nginx/sites-enabled/a:12 ssl_certificate", "directory" */
    char *name_hint; /* a name for it: certbot lineage, server_name / ServerName, or NULL */
    moat_import_certbot_t certbot;
    bool referenced; /* a server config names it: failing to read it is worth a report */
} moat_import_file_t;

typedef struct moat_import_scan {
    moat_import_file_t *files;
    size_t nfiles;
    char **notes; /* what could not be followed: "nginx.conf:14: ssl_certificate uses a variable", ... */
    size_t nnotes;
    char *kind;     /* "directory", "nginx", "apache" or "file" */
    char **configs; /* the server configs read (real paths), each once */
    size_t nconfigs;
} moat_import_scan_t;

/*
 * Scans <path>: a directory (walked recursively; nginx/Apache configs inside are followed too), an
 * nginx config, an Apache config, or a single key/certificate file. Referenced files that are missing
 * become notes, not errors. Fails (err set, *out empty) only when <path> itself cannot be read or
 * memory runs out. Bounded: include depth 16, 20,000 files, symlinked folders not followed.
 */
int moat_import_scan(const char *path, moat_import_scan_t *out, moat_err_t *err) MOAT_MUST_CHECK;
void moat_import_scan_dispose(moat_import_scan_t *scan);

/* Parses the nginx config <path> alone into <scan> (appending); exposed for tests and the fuzzer. */
int moat_import_scan_nginx(const char *path, moat_import_scan_t *scan, moat_err_t *err) MOAT_MUST_CHECK;
/* Parses the Apache config <path> alone into <scan> (appending). */
int moat_import_scan_apache(const char *path, moat_import_scan_t *scan, moat_err_t *err) MOAT_MUST_CHECK;

/* ---- analysis ---- */

/* One certificate found, with the file it came from. */
typedef struct moat_import_cert {
    X509 *cert;                     /* owned */
    const moat_import_file_t *file; /* borrowed from the scan */
} moat_import_cert_t;

/* A private key with its certificates: what becomes one key (or one step of a name's history). */
typedef struct moat_import_pair {
    EVP_PKEY *key;                  /* owned */
    const moat_import_file_t *file; /* where the key was found (borrowed) */
    char fingerprint[96];           /* SHA-256 of the public key, "AB:CD:..." */
    char algorithm[32];             /* "ec-p256", "rsa-2048", ... */
    X509 *cert;                     /* owned: its certificate (certbot live first, else newest), or NULL */
    const moat_import_file_t *cert_file; /* where cert was found (borrowed), or NULL */
    STACK_OF(X509) * older;              /* owned: other certificates of the same key, oldest first */
    STACK_OF(X509) * chain;              /* owned: intermediates above cert, issuer first, no root */
    char *chain_missing; /* the issuer the chain stops below (clients must have it), or NULL */
    char *subject;       /* cert's subject (RFC 2253), or NULL */
    time_t not_after;    /* of cert; 0 without one */
    char name[128];      /* proposed store name (certbot lineage, server name, CN, ...) */
    bool grouped;        /* shares <name> with other pairs: certbot history of one lineage */
    bool current;        /* the newest of its group (certbot live, or latest notBefore) */
} moat_import_pair_t;

/* A file that could not be opened or read. */
typedef struct moat_import_problem {
    const moat_import_file_t *file; /* borrowed */
    int code;                       /* MOAT_E_PASSWORD: encrypted; MOAT_E_LIMIT, MOAT_E_INVAL, MOAT_E_IO */
    char msg[MOAT_ERR_MSG_MAX];
} moat_import_problem_t;

typedef struct moat_import_result {
    moat_import_pair_t *pairs; /* keys, sorted by name; within a certbot lineage oldest first */
    size_t npairs;
    moat_import_cert_t *orphan_certs; /* end-entity certificates with no key */
    size_t norphan_certs;
    size_t nca_certs;                /* CA certificates seen (used for chains, not imported) */
    moat_import_problem_t *problems; /* encrypted or unreadable files */
    size_t nproblems;
    size_t nfiles_read;    /* files that held a key or certificate */
    size_t nfiles_skipped; /* files in a directory that held neither (not reported one by one) */
} moat_import_result_t;

/*
 * Reads every file of <scan>, with <password> for encrypted ones (NULL: none given; then an encrypted
 * file is a MOAT_E_PASSWORD problem). Keys found twice (same public key) count once; certificates too.
 * Pairs keys with certificates by public key; names pairs (unique within the result, characters
 * [A-Za-z0-9._@-]); builds chains from every certificate seen. A key's certificate is the one certbot's
 * live/ names, else the one issued last (latest notBefore). Fails only for memory.
 */
int moat_import_analyse(const moat_import_scan_t *scan, const char *password, moat_import_result_t *out,
                        moat_err_t *err) MOAT_MUST_CHECK;
void moat_import_result_dispose(moat_import_result_t *res);

/* Turns <in> into a store key name in <out>: "*.example.com" -> "wildcard.example.com", other characters
 * outside [A-Za-z0-9._@-] -> '-'; empty -> "imported". */
void moat_import_name_sanitise(const char *in, char *out, size_t outsz);

#endif
