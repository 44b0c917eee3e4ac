/* moat serve, moat reload. */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "server/server.h"
#include "store/store.h"

int moat_cli_serve(moat_cli_t *cli, int argc, char **argv)
{
    moat_server_opts_t opts = {0};
    moat_err_t err = {0};
    char store[4096], mkey[4096];
    int check = 0, rc;
    const moat__km_opt_t options[] = {
        {"--check|-t", NULL, &check, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat serve [-c moat.yaml] [--check|-t]",
        "Serves the sites of moat.yaml over HTTPS in the foreground, with certificates from the\n"
        "store. Store changes apply by themselves; config changes on SIGHUP or 'moat reload'.\n\n"
        "  -c FILE        the config (else MOAT_CONFIG, else ./moat.yaml)\n"
        "  --check, -t    validate the config, the store and the certificates, then exit\n\n"
        "Signals: SIGTERM/SIGINT stop (requests in flight finish), SIGHUP reloads the config,\n"
        "SIGUSR1 reopens the logs. The pid is written to STORE.pid.\n\n"
        "example: moat serve -c /etc/moat/moat.yaml\n",
        options,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    opts.check_only = check;
    opts.config_path = cli->config_path;
    if (opts.config_path == NULL)
        return moat_cli_usage(cmd.usage,
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
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat reload [-c moat.yaml]",
        "Asks the server running on this store to re-read its config (SIGHUP to the pid in\n"
        "STORE.pid) and waits for the outcome. A config that fails to load is refused and the\n"
        "old one keeps serving; the reason is printed (exit 1), logged and kept in the store.\n\n"
        "example: moat reload -c /etc/moat/moat.yaml\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat_cli_store_path(cli, store, sizeof(store), NULL, &err) != 0)
        return moat_cli_fail(cli, &err);
    return moat_cli_served_reload(cli, store);
}
