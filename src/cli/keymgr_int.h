/*
 * Private to the key manager commands (key.c, cert.c, ca.c): option parsing, files written
 * atomically, the store opened the way every command opens it, and the key/certificate views that
 * `key list`, `key show`, `cert history` and `ca list` print.
 */
#ifndef MOAT_CLI_KEYMGR_INT_H
#define MOAT_CLI_KEYMGR_INT_H

#include "ca/ca.h"
#include "cli/cli.h"
#include "keymgr/keymgr.h"
#include "pki/pki.h"
#include "store/store.h"

#include <stddef.h>
#include <time.h>

/* One option of a subcommand. Exactly one of value, flag or list is set. */
typedef struct moat__km_opt {
    const char *name;   /* "--cn", or with aliases "--dry-run|-n" */
    const char **value; /* option takes a value: where it goes (last one wins) */
    int *flag;          /* option is a flag: set to 1 */
    const char **list;  /* repeatable option: values appended here */
    size_t *count;      /* entries used in list */
    size_t max;         /* capacity of list */
} moat__km_opt_t;

/* What a subcommand accepts, and its help text. */
typedef struct moat__km_cmd {
    const char *usage;          /* "moat key new NAME --cn CN [...]" */
    const char *help;           /* the rest of the --help text (options, examples) */
    const moat__km_opt_t *opts; /* terminated by a zero entry */
    const char **pos;           /* positional arguments out */
    int pos_min, pos_max;       /* how many positional arguments are accepted */
} moat__km_cmd_t;

/*
 * Parses argv[1..argc) (argv[0] is the subcommand name) against <cmd>. Accepts "--opt value" and
 * "--opt=value", "--" ends the options. Returns -1 when parsing succeeded, else an exit code to
 * return at once: 0 after printing --help on stdout, 2 after a usage error on stderr.
 */
int moat__km_parse(const moat__km_cmd_t *cmd, int argc, char **argv);

/* Prints the subcommands of a group (for "moat key --help" and usage errors). */
typedef struct moat__km_sub {
    const char *name;
    const char *summary;
    int (*run)(moat_cli_t *cli, int argc, char **argv);
} moat__km_sub_t;

/* Dispatches argv[1] to one of <subs> (argv[0] is the group); handles --help and unknown names. */
int moat__km_dispatch(moat_cli_t *cli, const char *group, const char *summary, const moat__km_sub_t *subs,
                      size_t nsubs, int argc, char **argv);

/* Reads a whole file (at most <max> bytes) into a new NUL-terminated buffer; caller frees. */
int moat__km_read_file(const char *path, size_t max, unsigned char **out, size_t *len, moat_err_t *err);

/* Writes <data> to <path> as moat_file_write() does (atomic for a regular file, in place for a device
 * or FIFO, "-" is stdout). Commands that also change the store commit first (moat__km_write_after_commit). */
int moat__km_write_file(const char *path, const void *data, size_t len, int mode, moat_err_t *err);
/* Refuses (MOAT_E_EXISTS, with a hint naming <force_opt>) to replace an existing <path> unless <force>,
 * as 'moat store backup' does; "-" (stdout) and NULL always pass. Call it before the store changes. */
int moat__km_check_new_file(const char *path, int force, const char *force_opt, moat_err_t *err);

/* Formats a time as "2026-11-23 08:41:35 UTC" (always UTC). */
void moat__km_fmt_time(time_t t, char *out, size_t outsz);
/* Whole days from now until <t> (negative once past). */
long moat__km_days_left(time_t t, time_t now);

/* Parses --days: 1..36500; returns 0 or exit-code-ready usage error (MOAT_E_USAGE in err). */
int moat__km_parse_days(const char *s, long *out, moat_err_t *err);

/*
 * Opens the store every command finds (moat_cli_store_path) with its master key. <flags> are
 * MOAT_STORE_*: writers pass MOAT_STORE_CREATE, readers that never touch private keys
 * MOAT_STORE_NO_MASTER_KEY.
 */
int moat__km_open(const moat_cli_t *cli, unsigned flags, moat_store_t **st, moat_err_t *err);

/* Checks a key name before any work is done (the store checks again). */
int moat__km_check_name(const char *name, moat_err_t *err);

/* Store fingerprint (64 lowercase hex) to the form openssl prints ("AB:CD:..."). */
void moat__km_fpr_colon(const char *hex, char out[MOAT_PKI_FINGERPRINT_SIZE]);
/* SHA-256 fingerprint of a SubjectPublicKeyInfo DER, in the colon form; "" if it does not parse. */
void moat__km_spki_fingerprint(const moat_store_blob_t *spki, char out[MOAT_PKI_FINGERPRINT_SIZE]);

/* What "key list"/"key show" say about one name: the key that serves (or waits) and a pending renewal. */
typedef struct moat__km_view {
    const moat_store_key_t *key;     /* borrowed: active key, or the pending one if the name has no other */
    const moat_store_key_t *renewal; /* borrowed: a pending key beside the active one, or NULL */
    int revoked;                     /* the current certificate was revoked by moat's CA */
} moat__km_view_t;

/* The displayed state: pending, active, expired or revoked. */
const char *moat__km_view_state(const moat__km_view_t *v, time_t now);
void moat__km_view_json(moat_json_t *j, const moat__km_view_t *v, time_t now);
void moat__km_view_text(FILE *out, const moat__km_view_t *v, time_t now);
/* The fields of a certificate in --json results (subject, sans, issuer, serial, not_before, not_after,
 * fingerprint, key_fingerprint, key_algorithm), the names 'key list --json' uses. */
void moat__km_json_cert_info(moat_json_t *j, const moat_pki_cert_info_t *ci);
/* A SAN list in the text format as a JSON array of strings ("DNS:a", "IP:192.0.2.1"). */
void moat__km_json_sans(moat_json_t *j, const char *sans);
/* Fills v->revoked from the CA's issued table (certificates moat's CA signed). */
void moat__km_view_check_revoked(moat_store_t *st, moat__km_view_t *v);

/*
 * Writes <data> to <out> (NULL: nothing) after a service committed the change it belongs to: what a
 * command hands out (a certificate, an export, a request) is on record in the store and its audit log
 * before it exists, so a kill or a power loss can leave a record without a file (harmless: it can still
 * be revoked) but never a file without a record. A write that fails says the change stands and only the
 * file is missing.
 */
int moat__km_write_after_commit(const char *out, const void *data, size_t len, int mode, moat_err_t *err);

/* Reads the password for an export or import: from <file>, else a prompt on a tty. Never empty for an export.
 */
int moat__km_password(const char *file, const char *prompt, int confirm, int allow_empty, char *out,
                      size_t outsz, moat_err_t *err);

/* A command that hands a key out as PKCS#12 (key export, ca export-client): what differs between them. */
typedef struct moat__km_export {
    const char *usage, *help;
    /* the key NAME names, or an error saying why that one may not leave (dispose it in every case) */
    int (*find)(moat_store_t *st, const char *name, moat_store_key_t *k, moat_err_t *err);
    const char *action;  /* audited as */
    const char *done[3]; /* printed after it: "<done[0]> "NAME" <done[1]> to FILE (PKCS#12)<done[2]>" */
} moat__km_export_t;

/*
 * Runs it: NAME --out FILE.p12 [--password-file F] [--legacy] [--force]. The export policy refuses before a
 * password is asked for; the export is audited (moat_keymgr_export) before the file (0600) is written.
 */
int moat__km_export_cmd(moat_cli_t *cli, const moat__km_export_t *ex, int argc, char **argv);

/* moat ca revoke, moat ca crl (ca_revoke.c). */
int moat__km_ca_revoke_cmd(moat_cli_t *cli, int argc, char **argv);
int moat__km_ca_crl_cmd(moat_cli_t *cli, int argc, char **argv);

#endif
