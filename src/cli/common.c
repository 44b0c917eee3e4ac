#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

/* --json seen on the command line: usage errors, printed before a command has its moat_cli_t, follow it. */
static int json_errors;
/* The note naming an implicit ./moat.yaml is printed once per run. */
static int told_config;

/* Options that take a value, and whether they can be written --opt=value. */
static int take_value(const char *arg, const char *name, int *i, int argc, char **argv, const char **out,
                      moat_err_t *err)
{
    size_t n = strlen(name);
    if (strcmp(arg, name) == 0) {
        if (*i + 1 >= argc)
            return moat_err_set(err, MOAT_E_USAGE, "option %s needs a value", name);
        *out = argv[++*i];
        return 1;
    }
    if (strncmp(arg, name, n) == 0 && arg[n] == '=' && name[1] == '-') {
        *out = arg + n + 1;
        return 1;
    }
    return 0;
}

int moat_cli_parse_globals(moat_cli_t *cli, int *argc, char **argv, moat_err_t *err)
{
    int out = 1, i, rc;
    for (i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        if ((rc = take_value(a, "--store", &i, *argc, argv, &cli->store_arg, err)) != 0 ||
            (rc = take_value(a, "--config", &i, *argc, argv, &cli->config_path, err)) != 0 ||
            (rc = take_value(a, "-c", &i, *argc, argv, &cli->config_path, err)) != 0 ||
            (rc = take_value(a, "--master-key", &i, *argc, argv, &cli->master_key, err)) != 0) {
            if (rc < 0)
                return rc;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            cli->json = 1;
            json_errors = 1;
            continue;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            cli->quiet = 1;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    if (cli->config_path != NULL)
        cli->config_from = "-c";
    else if ((cli->config_path = getenv("MOAT_CONFIG")) != NULL && cli->config_path[0] != '\0')
        cli->config_from = "MOAT_CONFIG";
    else if (access("moat.yaml", F_OK) == 0) {
        cli->config_path = "moat.yaml";
        cli->config_from = "./moat.yaml";
    } else
        cli->config_path = NULL;
    if (cli->master_key == NULL)
        cli->master_key = getenv("MOAT_MASTER_KEY_FILE");
    return 0;
}

/* Under --json an error is one object on stderr, so that a script reads the same shape for every
 * command: {"error": {"code": "not-found", "message": "...", "hint": "..."}}. */
static void json_error(const char *code, const char *msg, const char *hint)
{
    moat_json_t j;
    moat_json_init(&j, stderr, 0);
    moat_json_obj_begin(&j);
    moat_json_key(&j, "error");
    moat_json_obj_begin(&j);
    moat_json_kv_str(&j, "code", code);
    moat_json_kv_str(&j, "message", msg);
    moat_json_kv_str(&j, "hint", hint[0] ? hint : NULL);
    moat_json_obj_end(&j);
    moat_json_obj_end(&j);
    moat_json_finish(&j);
}

int moat_cli_fail(const moat_cli_t *cli, const moat_err_t *err)
{
    const char *msg = err->msg[0] ? err->msg : moat_err_name(err->code);
    if ((cli != NULL && cli->json) || json_errors)
        json_error(moat_err_name(err->code), msg, err->hint);
    else {
        fprintf(stderr, "moat: %s\n", msg);
        if (err->hint[0])
            fprintf(stderr, "      %s\n", err->hint);
    }
    return err->code == MOAT_E_USAGE ? MOAT_EXIT_USAGE : MOAT_EXIT_FAIL;
}

int moat_cli_usage(const char *usage, const char *fmt, ...)
{
    va_list ap;
    if (json_errors) {
        char msg[MOAT_ERR_MSG_MAX], hint[MOAT_ERR_HINT_MAX];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(hint, sizeof(hint), "usage: %s", usage);
        json_error(moat_err_name(MOAT_E_USAGE), msg, hint);
        return MOAT_EXIT_USAGE;
    }
    fputs("moat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return MOAT_EXIT_USAGE;
}

/* Weak so that the config subsystem can provide the real "store:" lookup without a link cycle. */
__attribute__((weak)) int moat_config_store_path(const char *config_path, char *out, size_t outsz,
                                                 moat_err_t *err);

/* "sqlite:PATH" names the file PATH (docs/store.md); a path is taken as it is. */
static const char *store_file(const char *arg)
{
    return strncmp(arg, "sqlite:", 7) == 0 ? arg + 7 : arg;
}

int moat_cli_store_path(const moat_cli_t *cli, char *out, size_t outsz, const char **source, moat_err_t *err)
{
    const char *env, *src;
    char tmp[PATH_MAX];

    if (cli->store_arg != NULL) {
        src = "--store";
        if (moat_path_absolute(store_file(cli->store_arg), out, outsz, err) != 0)
            return err->code;
    } else if ((env = getenv("MOAT_STORE")) != NULL && env[0] != '\0') {
        src = "MOAT_STORE";
        if (moat_path_absolute(store_file(env), out, outsz, err) != 0)
            return err->code;
    } else if (cli->config_path != NULL && moat_config_store_path != NULL &&
               moat_config_store_path(cli->config_path, tmp, sizeof(tmp), err) == 0 && tmp[0] != '\0') {
        src = "config";
        if (moat_path_absolute(tmp, out, outsz, err) != 0)
            return err->code;
    } else {
        if (cli->config_path != NULL && err->code != 0)
            return err->code; /* the config was named but could not be read */
        if (geteuid() == 0) {
            src = "default";
            if (moat_strlcpy(out, "/var/lib/moat/moat.db", outsz) != 0)
                return moat_err_set(err, MOAT_E_INVAL, "store path too long");
        } else {
            const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
            int n;
            src = "default";
            if (xdg != NULL && xdg[0] == '/')
                n = snprintf(out, outsz, "%s/moat/moat.db", xdg);
            else if (home != NULL && home[0] == '/')
                n = snprintf(out, outsz, "%s/.local/share/moat/moat.db", home);
            else {
                moat_err_set(err, MOAT_E_INVAL, "cannot find a default store: HOME is not set");
                return moat_err_hint(err, "pass --store PATH or set MOAT_STORE");
            }
            if (n < 0 || (size_t)n >= outsz)
                return moat_err_set(err, MOAT_E_INVAL, "store path too long");
        }
    }
    if (source != NULL)
        *source = src;
    if (strcmp(src, "config") == 0 && cli->config_from != NULL &&
        strcmp(cli->config_from, "./moat.yaml") == 0 && !cli->quiet && !cli->json && !told_config) {
        told_config = 1;
        fprintf(stderr, "moat: using ./moat.yaml and its store %s\n", out);
    }
    return 0;
}

int moat_cli_store_open(const moat_cli_t *cli, const char *path, const char *mk, unsigned flags,
                        moat_store_t **st, moat_err_t *err)
{
    const char *copy;
    char own_mk[PATH_MAX];
    moat_err_t ignored = {0};
    int from = 0, rc;
    /* A command that needs no master key still uses it when it can read it: the rows it shows are checked,
     * and an older store can be upgraded (schema 5 seals its rows under the master key). */
    if ((flags & MOAT_STORE_NO_MASTER_KEY) &&
        moat_cli_master_key_path(cli, path, own_mk, sizeof(own_mk), &ignored) == 0)
        rc = moat_store_open_key_if_readable(path, own_mk, flags, st, err);
    else
        rc = moat_store_open(path, mk, flags, st, err);
    if (rc == 0 && (copy = moat_store_upgraded(*st, &from)) != NULL && !cli->quiet)
        fprintf(stderr, "moat: upgraded store %s from schema %d to %d; the old file is kept as %s\n", path,
                from, MOAT_STORE_SCHEMA_VERSION, copy);
    return rc;
}

int moat_cli_master_key_path(const moat_cli_t *cli, const char *store_path, char *out, size_t outsz,
                             moat_err_t *err)
{
    if (cli->master_key != NULL)
        return moat_path_absolute(cli->master_key, out, outsz, err);
    if ((size_t)snprintf(out, outsz, "%s.key", store_path) >= outsz)
        return moat_err_set(err, MOAT_E_INVAL, "master key path too long");
    return 0;
}

static int prompt_tty(const char *prompt, char *out, size_t outsz)
{
    struct termios old, quiet;
    FILE *tty = fopen("/dev/tty", "r+");
    int ok = 0;
    if (tty == NULL)
        return -1;
    if (tcgetattr(fileno(tty), &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        (void)tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        /* The prompt comes after the flush: an answer typed (or sent by a script) once the prompt shows
         * is never thrown away. */
        fputs(prompt, tty);
        fflush(tty);
        ok = fgets(out, (int)outsz, tty) != NULL;
        (void)tcsetattr(fileno(tty), TCSAFLUSH, &old);
    }
    fputc('\n', tty);
    fclose(tty);
    if (!ok)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int moat_cli_read_password(const char *file, const char *prompt, int confirm, char *out, size_t outsz,
                           moat_err_t *err)
{
    if (file != NULL) {
        FILE *f = fopen(file, "r");
        size_t n;
        if (f == NULL)
            return moat_err_set(err, MOAT_E_IO, "cannot read password file %s: %s", file, strerror(errno));
        n = fread(out, 1, outsz - 1, f);
        fclose(f);
        out[n] = '\0';
        out[strcspn(out, "\r\n")] = '\0';
        return 0;
    }
    if (!isatty(STDIN_FILENO)) {
        moat_err_set(err, MOAT_E_PASSWORD, "a password is needed and stdin is not a terminal");
        return moat_err_hint(err, "pass --password-file FILE");
    }
    if (prompt_tty(prompt, out, outsz) != 0)
        return moat_err_set(err, MOAT_E_PASSWORD, "could not read a password from the terminal");
    if (confirm) {
        char again[256];
        int same;
        if (prompt_tty("Again: ", again, sizeof(again)) != 0) {
            OPENSSL_cleanse(out, outsz);
            return moat_err_set(err, MOAT_E_PASSWORD, "could not read a password from the terminal");
        }
        same = strcmp(out, again) == 0;
        OPENSSL_cleanse(again, sizeof(again));
        if (!same) {
            OPENSSL_cleanse(out, outsz);
            return moat_err_set(err, MOAT_E_PASSWORD, "the two passwords differ");
        }
    }
    return 0;
}
