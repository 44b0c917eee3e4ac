/* moat serve, moat reload. */
#include "cli/groups.h"
#include "server/server.h"
#include "store/store.h"

#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char serve_usage[] = "moat serve [-c moat.yaml] [--check|-t]";
static const char reload_usage[] = "moat reload [-c moat.yaml]";

int moat_cli_serve(moat_cli_t *cli, int argc, char **argv)
{
    moat_server_opts_t opts = {0};
    moat_err_t err = {0};
    char store[4096], mkey[4096];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s\n\n"
                   "Serves the sites of moat.yaml over HTTPS in the foreground, with certificates from the\n"
                   "store. Store changes apply by themselves; config changes on SIGHUP or 'moat reload'.\n\n"
                   "  -c FILE        the config (else MOAT_CONFIG, else ./moat.yaml)\n"
                   "  --check, -t    validate the config, the store and the certificates, then exit\n\n"
                   "Signals: SIGTERM/SIGINT stop (requests in flight finish), SIGHUP reloads the config,\n"
                   "SIGUSR1 reopens the logs. The pid is written to STORE.pid.\n\n"
                   "example: moat serve -c /etc/moat/moat.yaml\n",
                   serve_usage);
            return MOAT_EXIT_OK;
        }
        if (strcmp(argv[i], "--check") == 0 || strcmp(argv[i], "-t") == 0)
            opts.check_only = 1;
        else
            return moat_cli_usage(serve_usage, "unknown argument \"%s\"", argv[i]);
    }
    opts.config_path = cli->config_path;
    if (opts.config_path == NULL)
        return moat_cli_usage(serve_usage,
                              "no config: give one with -c FILE, set MOAT_CONFIG, or run where moat.yaml is");
    if (moat_cli_store_path(cli, store, sizeof(store), NULL, &err) != 0 ||
        moat_cli_master_key_path(cli, store, mkey, sizeof(mkey), &err) != 0)
        return moat_cli_fail(cli, &err);
    opts.store_path = store;
    opts.master_key_path = mkey;
    opts.quiet = cli->quiet;
    if (moat_server_run(&opts, &err) != 0)
        return moat_cli_fail(cli, &err);
    return MOAT_EXIT_OK;
}

int moat_cli_reload(moat_cli_t *cli, int argc, char **argv)
{
    moat_err_t err = {0};
    char store[4096];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s\n\n"
                   "Asks the server running on this store to re-read its config (SIGHUP to the pid in\n"
                   "STORE.pid) and waits for the outcome. A config that fails to load is refused and the\n"
                   "old one keeps serving; the reason is printed (exit 1), logged and kept in the store.\n\n"
                   "example: moat reload -c /etc/moat/moat.yaml\n",
                   reload_usage);
            return MOAT_EXIT_OK;
        }
        return moat_cli_usage(reload_usage, "unknown argument \"%s\"", argv[i]);
    }
    if (moat_cli_store_path(cli, store, sizeof(store), NULL, &err) != 0)
        return moat_cli_fail(cli, &err);
    return moat_cli_served_reload(cli, store);
}
