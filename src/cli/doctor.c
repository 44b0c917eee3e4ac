/* moat doctor: findings about a TLS endpoint (remote) or this machine's config, store and listeners. */
#include "cli/groups.h"
#include "config/config.h"
#include "doctor/doctor.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char USAGE[] =
    "moat doctor [-c moat.yaml] [--days N] [--timeout SECONDS] [--ca FILE] [--no-system-trust]\n"
    "                   [--color auto|always|never] [https://HOST[:PORT] | HOST:PORT]";

static void help(void)
{
    printf("usage: %s\n\n"
           "Without an endpoint, inspects the config, the store and the live listeners of this machine.\n"
           "With https://HOST[:PORT] (or HOST:PORT), inspects that TLS endpoint from outside: addresses,\n"
           "protocol versions, cipher, the chain as sent, trust, names, validity, keys, signatures and\n"
           "stapled OCSP.\n\n"
           "Each finding has a severity (error, warning, info), a stable id, what is wrong, why it matters\n"
           "and the command that fixes it.\n\n"
           "options:\n"
           "  --days N            warn about certificates expiring within N days (default 30)\n"
           "  --timeout SECONDS   per connection and handshake (default 5)\n"
           "  --ca FILE           also trust the CA certificates in FILE (PEM)\n"
           "  --no-system-trust   do not use the system trust store\n"
           "  --color WHEN        auto (default: on a terminal, unless NO_COLOR is set), always, never\n"
           "  --json              machine-readable findings\n\n"
           "exit status: 0 no errors found (warnings allowed), 1 errors found or doctor failed, 2 usage\n\n"
           "example: moat doctor https://www.example.com\n",
           USAGE);
}

static int use_color(const char *when)
{
    const char *no = getenv("NO_COLOR"), *term = getenv("TERM");
    if (strcmp(when, "always") == 0)
        return 1;
    if (strcmp(when, "never") == 0)
        return 0;
    if (no != NULL && no[0] != '\0')
        return 0;
    if (term != NULL && strcmp(term, "dumb") == 0)
        return 0;
    return isatty(STDOUT_FILENO);
}

/*
 * The store doctor inspects. A config named with -c that is invalid is a finding of the report, not a
 * reason to print none: the store it names (or, when it names none that can be read, the default) is
 * still checked.
 */
static int doctor_store_path(const moat_cli_t *cli, char *out, size_t outsz, moat_err_t *err)
{
    moat_cli_t nocfg;
    char named[4096];
    if (moat_cli_store_path(cli, out, outsz, NULL, err) == 0)
        return 0;
    if (err->code != MOAT_E_CONFIG || cli->config_path == NULL)
        return err->code;
    moat_err_clear(err);
    if (moat_config_named_store(cli->config_path, named, sizeof(named)) == 0)
        return moat_path_absolute(named, out, outsz, err);
    nocfg = *cli;
    nocfg.config_path = NULL;
    return moat_cli_store_path(&nocfg, out, outsz, NULL, err);
}

int moat_cli_doctor(moat_cli_t *cli, int argc, char **argv)
{
    moat_doctor_opts_t o;
    moat_doctor_report_t r;
    moat_err_t err = {0};
    const char *target = NULL, *color = "auto";
    char store[4096], mk[4096];
    long v;
    int rc;

    moat_doctor_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help();
            return MOAT_EXIT_OK;
        } else if (strcmp(a, "--days") == 0) {
            if (i + 1 >= argc || moat_parse_long(argv[++i], 0, 3650, &v) != 0)
                return moat_cli_usage(USAGE, "--days needs a number of days (0-3650)");
            o.days = (int)v;
        } else if (strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc || moat_parse_long(argv[++i], 1, 300, &v) != 0)
                return moat_cli_usage(USAGE, "--timeout needs a number of seconds (1-300)");
            o.timeout_ms = (int)v * 1000;
        } else if (strcmp(a, "--ca") == 0) {
            if (i + 1 >= argc)
                return moat_cli_usage(USAGE, "--ca needs a PEM file");
            o.ca_file = argv[++i];
        } else if (strcmp(a, "--no-system-trust") == 0) {
            o.system_trust = 0;
        } else if (strcmp(a, "--color") == 0 || strncmp(a, "--color=", 8) == 0) {
            if (a[7] == '=')
                color = a + 8;
            else if (i + 1 < argc)
                color = argv[++i];
            else
                return moat_cli_usage(USAGE, "--color needs auto, always or never");
            if (strcmp(color, "auto") != 0 && strcmp(color, "always") != 0 && strcmp(color, "never") != 0)
                return moat_cli_usage(USAGE, "--color needs auto, always or never, not \"%s\"", color);
        } else if (a[0] == '-' && a[1] != '\0') {
            return moat_cli_usage(USAGE, "unknown option \"%s\"", a);
        } else if (target == NULL) {
            target = a;
        } else {
            return moat_cli_usage(USAGE, "one endpoint at a time (got \"%s\" and \"%s\")", target, a);
        }
    }

    moat_doctor_report_init(&r);
    if (target != NULL) {
        /* A store that cannot be located only means moat's own CA is not trusted for this endpoint. */
        if (moat_cli_store_path(cli, store, sizeof(store), NULL, &err) == 0)
            o.store_path = store;
        moat_err_clear(&err);
        rc = moat_doctor_remote(target, &o, &r, &err);
    } else {
        if (doctor_store_path(cli, store, sizeof(store), &err) != 0) {
            moat_doctor_report_dispose(&r);
            return moat_cli_fail(cli, &err);
        }
        if (moat_cli_master_key_path(cli, store, mk, sizeof(mk), &err) == 0)
            o.master_key_path = mk;
        moat_err_clear(&err);
        rc = moat_doctor_local(cli->config_path, store, &o, &r, &err);
    }
    if (rc != 0) {
        moat_doctor_report_dispose(&r);
        return moat_cli_fail(cli, &err);
    }
    if (cli->json)
        moat_doctor_print_json(&r, stdout);
    else
        moat_doctor_print_text(&r, stdout, use_color(color));
    fflush(stdout);
    rc = moat_doctor_count(&r, MOAT_DOCTOR_ERROR) > 0 || r.oom ? MOAT_EXIT_FAIL : MOAT_EXIT_OK;
    if (rc != MOAT_EXIT_OK)
        fprintf(stderr, "moat: doctor found %zu error%s (see above)\n",
                moat_doctor_count(&r, MOAT_DOCTOR_ERROR),
                moat_doctor_count(&r, MOAT_DOCTOR_ERROR) == 1 ? "" : "s");
    moat_doctor_report_dispose(&r);
    return rc;
}
