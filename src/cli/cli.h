/*
 * cli: one file per command group. Shared here: global options, store location, passwords,
 * how failures are reported, and the exit codes (0 ok, 1 failure, 2 usage).
 */
#ifndef MOAT_CLI_H
#define MOAT_CLI_H

#include "core/core.h"
#include "core/json.h"
#include "store/store.h"

#include <stddef.h>

enum { MOAT_EXIT_OK = 0, MOAT_EXIT_FAIL = 1, MOAT_EXIT_USAGE = 2 };

/* What the running server did with a change (served.c). */
enum {
    MOAT_SERVED_UNASKED = 0,  /* not waited for yet */
    MOAT_SERVED_NO_SERVER,    /* no server runs on the store */
    MOAT_SERVED_NO_ANSWER,    /* it did not tell the outcome in time */
    MOAT_SERVED_APPLIED,      /* it serves the change */
    MOAT_SERVED_REFUSED,      /* it refused the whole change and serves the generation before */
    MOAT_SERVED_SITE_REFUSED, /* it serves the change, but one or more sites keep their last good state */
};
typedef struct moat_cli_served {
    int state;            /* MOAT_SERVED_* */
    long pid;             /* the server's */
    long long generation; /* the store generation the change made */
    long long serving;    /* the generation the server serves */
    char reason[512];     /* why it refused ("" if it did not) */
    char store[4096];     /* the store's path */
} moat_cli_served_t;

/* Global options, accepted anywhere on the command line (before "--"). */
typedef struct moat_cli {
    const char *store_arg;    /* --store URL|PATH */
    const char *config_path;  /* -c / --config, else MOAT_CONFIG, else ./moat.yaml when present */
    const char *config_from;  /* "-c", "MOAT_CONFIG", "./moat.yaml"; NULL without a config */
    const char *master_key;   /* --master-key FILE, else MOAT_MASTER_KEY_FILE */
    int json;                 /* --json */
    int quiet;                /* -q / --quiet */
    moat_cli_served_t served; /* filled by moat_cli_served_json() / moat_cli_served_report() */
} moat_cli_t;

/* A command group: argv[0] is the group name ("key"), argv[1] its subcommand. */
typedef struct moat_cli_group {
    const char *name;
    const char *summary;
    int (*run)(moat_cli_t *cli, int argc, char **argv);
} moat_cli_group_t;

/* Removes the global options from argv (in place) into <cli>; returns 0 or MOAT_E_USAGE with err set.
 * Every command finds its config the same way: -c, else MOAT_CONFIG, else ./moat.yaml when present. */
int moat_cli_parse_globals(moat_cli_t *cli, int *argc, char **argv, moat_err_t *err);

/* Prints "moat: <msg>" and the hint on stderr; returns the exit code for err->code (2 for usage). */
int moat_cli_fail(const moat_cli_t *cli, const moat_err_t *err);
/* Prints a usage error and "<usage>" on stderr; returns MOAT_EXIT_USAGE. */
int moat_cli_usage(const char *usage, const char *fmt, ...) MOAT_PRINTF(2, 3);

/*
 * The store every command finds the same way: --store > MOAT_STORE > "store:" in the config (-c,
 * MOAT_CONFIG or ./moat.yaml) > /var/lib/moat/moat.db as root, else $XDG_DATA_HOME/moat/moat.db.
 * Writes an absolute path into <out>. <source> (may be NULL) receives where it came from. When the store
 * comes from a ./moat.yaml nobody named, says once on stderr which config and store are used.
 */
int moat_cli_store_path(const moat_cli_t *cli, char *out, size_t outsz, const char **source, moat_err_t *err);
/* The master key file: --master-key > MOAT_MASTER_KEY_FILE > "<store path>.key" beside the store. */
int moat_cli_master_key_path(const moat_cli_t *cli, const char *store_path, char *out, size_t outsz,
                             moat_err_t *err);
/* moat_store_open() that says on stderr when it upgraded an older store, and where the old file is. */
int moat_cli_store_open(const moat_cli_t *cli, const char *path, const char *mk, unsigned flags,
                        moat_store_t **st, moat_err_t *err);

/*
 * Reads a password from <file> (first line, newline stripped), or prompts on the terminal when <file>
 * is NULL and stdin is a tty (twice when <confirm>). Never from argv. <out> is cleansed on failure.
 */
int moat_cli_read_password(const char *file, const char *prompt, int confirm, char *out, size_t outsz,
                           moat_err_t *err);

/*
 * A command that changed what is served, after its commit to <st>: waits (up to 10 s, once per run) for the
 * server running on the store (found by its pid file, as moat reload finds it) to take up the store's
 * generation. moat_cli_served_json() adds "server": {"state": "applied"|"refused"|"no-server"|"no-answer",
 * "pid", "generation", "serving_generation", "refusal"} to the command's JSON result object;
 * moat_cli_served_report() says the outcome ("applied the change: serving store generation N", the refusal
 * and why on stderr, or that no server runs) and returns the exit code: 1 when the server refused it.
 */
void moat_cli_served_json(moat_cli_t *cli, moat_store_t *st, moat_json_t *j);
/* The --json result of a command, one object on stdout: moat_cli_json_begin() opens it, moat_cli_json_end()
 * closes it, and moat_cli_json_end_served() adds what the server did with the change on <st>
 * (moat_cli_served_json) before it closes it. */
void moat_cli_json_begin(moat_json_t *j);
void moat_cli_json_end(moat_json_t *j);
void moat_cli_json_end_served(moat_cli_t *cli, moat_store_t *st, moat_json_t *j);
int moat_cli_served_report(moat_cli_t *cli, moat_store_t *st) MOAT_MUST_CHECK;
/* moat reload: SIGHUP to the server on <store_path>, then the same wait and report. */
int moat_cli_served_reload(moat_cli_t *cli, const char *store_path) MOAT_MUST_CHECK;

/* ---- the check before commit (plan/plan.h, moat_plan_check_change) ---- */

typedef struct moat_config moat_config_t;
typedef struct moat_plan_notes moat_plan_notes_t;

/*
 * The configuration a changing command checks its change against: the one -c, MOAT_CONFIG or
 * ./moat.yaml names (what moat serve runs), loaded; NULL when there is none. A config that does not load
 * cannot be checked against (the server would not load it either): that is said on stderr, and NULL.
 * Release it with moat_config_unref().
 */
moat_config_t *moat_cli_change_config(const moat_cli_t *cli);
/* Prints the notes of a check that let the change through ("moat: note: ..." on stderr). */
void moat_cli_change_notes(const moat_cli_t *cli, const moat_plan_notes_t *notes);

#endif
