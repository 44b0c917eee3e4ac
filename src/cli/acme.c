/* moat acme: the ACME client's view of the sites with certificate: acme (status), a renewal asked of the
 * running server (renew), the account key rollover, and the external account binding keys of moat's ACME
 * server (eab new). */
#include "cli/groups.h"
#include "cli/keymgr_int.h"

#include "acme/acme.h"
#include "ca/ca.h"
#include "config/config.h"
#include "server/server.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define RENEW_WAIT_S 300

static int open_config(const moat_cli_t *cli, moat_config_t **cfg, moat_err_t *err)
{
    if (cli->config_path == NULL) {
        moat_err_set(err, MOAT_E_USAGE, "no config: the ACME sites are named in moat.yaml");
        return moat_err_hint(err, "give it with -c moat.yaml (or MOAT_CONFIG)");
    }
    return moat_config_load(cli->config_path, cfg, NULL, err);
}

static void print_status(FILE *f, const moat_acme_status_t *s, long long now)
{
    char t[64];
    fprintf(f, "%s (site %s)\n  state: %s\n", s->name, s->site, s->state);
    if (s->not_after > 0) {
        moat__km_fmt_time((time_t)s->not_after, t, sizeof(t));
        fprintf(f, "  expires: %s (in %ld days)\n", t, moat__km_days_left((time_t)s->not_after, (time_t)now));
    }
    moat__km_fmt_time((time_t)(s->next > now ? s->next : now), t, sizeof(t));
    fprintf(f, "  next attempt: %s (%s)\n", s->next > now ? t : "now", s->why);
    if (s->order_pending)
        fprintf(f, "  order under way: a pending key waits for it\n");
    if (s->last_error[0] != '\0')
        fprintf(f, "  last error (%u in a row): %s\n", s->failures, s->last_error);
}

static void json_status(moat_json_t *j, const moat_acme_status_t *s)
{
    moat_json_obj_begin(j);
    moat_json_kv_str(j, "name", s->name);
    moat_json_kv_str(j, "site", s->site);
    moat_json_kv_str(j, "state", s->state);
    moat_json_kv_time(j, "not_after", s->not_after);
    moat_json_kv_time(j, "next", s->next);
    moat_json_kv_str(j, "why", s->why);
    moat_json_kv_bool(j, "order_pending", s->order_pending);
    moat_json_kv_int(j, "failures", s->failures);
    moat_json_kv_time(j, "last_try", s->last_try);
    moat_json_kv_str(j, "last_error", s->last_error[0] ? s->last_error : NULL);
    moat_json_obj_end(j);
}

static int acme_status(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat acme status [NAME] [--json]",
        "Shows each certificate of a site with certificate: acme: its state, expiry, when it\n"
        "renews and why, and the last error. NAME (acme.HOST) shows one.\n\n"
        "  --json    an array: one object per certificate\n\n"
        "example: moat acme status www\n",
        opts,
        pos,
        0,
        1};
    moat_err_t err = {0};
    moat_config_t *cfg = NULL;
    moat_store_t *st = NULL;
    moat_json_t j;
    long long now = (long long)time(NULL);
    size_t shown = 0;
    int rc;

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (open_config(cli, &cfg, &err) != 0 ||
        moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0) {
        moat_config_unref(cfg);
        return moat_cli_fail(cli, &err);
    }
    if (cli->json) {
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
    }
    for (size_t i = 0; i < cfg->nsites; i++) {
        moat_acme_status_t s;
        if (!cfg->sites[i].acme || (pos[0] != NULL && strcmp(pos[0], cfg->sites[i].certificate) != 0))
            continue;
        if (moat_acme_status_get(st, cfg, i, now, &s, &err) != 0)
            break;
        if (cli->json)
            json_status(&j, &s);
        else
            print_status(stdout, &s, now);
        shown++;
    }
    if (cli->json) {
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    }
    moat_store_close(st);
    moat_config_unref(cfg);
    if (err.code != 0)
        return moat_cli_fail(cli, &err);
    if (pos[0] != NULL && shown == 0) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "no site with certificate: acme orders \"%s\"", pos[0]);
        moat_err_hint(&err, "moat acme status lists them");
        return moat_cli_fail(cli, &err);
    }
    if (shown == 0 && !cli->json && !cli->quiet)
        printf("no site uses certificate: acme\n");
    return MOAT_EXIT_OK;
}

/* The pid of the server running on <store>, or 0. */
static long server_pid(const char *store)
{
    moat_err_t err = {0};
    long pid = 0;
    return moat_server_find(store, &pid, &err) == 0 ? pid : 0;
}

static int acme_renew(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat acme renew NAME",
        "Asks the running server to renew the ACME certificate NAME (acme.HOST) now, waits\n"
        "for the attempt (up to 5 minutes) and says what happened. The current certificate\n"
        "keeps serving whatever the outcome.\n\n"
        "example: moat acme renew www\n",
        opts,
        pos,
        1,
        1};
    moat_err_t err = {0};
    moat_config_t *cfg = NULL;
    moat_store_t *st = NULL;
    char store[4096];
    long long asked = (long long)time(NULL);
    size_t site = (size_t)-1;
    moat_acme_status_t s;
    long pid;
    int rc, done = 0;

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (open_config(cli, &cfg, &err) != 0)
        return moat_cli_fail(cli, &err);
    for (size_t i = 0; i < cfg->nsites; i++)
        if (cfg->sites[i].acme && strcmp(cfg->sites[i].certificate, pos[0]) == 0)
            site = i;
    if (site == (size_t)-1) {
        moat_config_unref(cfg);
        moat_err_set(&err, MOAT_E_NOTFOUND, "no site with certificate: acme orders \"%s\"", pos[0]);
        moat_err_hint(&err, "moat acme status lists them");
        return moat_cli_fail(cli, &err);
    }
    if (moat_cli_store_path(cli, store, sizeof(store), NULL, &err) != 0 ||
        moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
        goto fail;
    if ((pid = server_pid(store)) == 0) {
        moat_err_set(&err, MOAT_E_STATE,
                     "no moat server runs on store %s: the server renews ACME certificates", store);
        moat_err_hint(&err, "start it with: moat serve -c %s", cli->config_path);
        goto fail;
    }
    if (moat_acme_renew_request(st, pos[0], asked, &err) != 0)
        goto fail;
    if (!cli->quiet)
        printf("asked moat (pid %ld) to renew %s; waiting for the attempt\n", pid, pos[0]);
    fflush(stdout);
    for (int i = 0; i < RENEW_WAIT_S * 5 && !done; i++) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (moat_acme_status_get(st, cfg, site, (long long)time(NULL), &s, &err) != 0)
            goto fail;
        done = s.last_try >= asked && strcmp(s.why, "asked by moat acme renew") != 0;
    }
    if (!done) {
        moat_err_set(&err, MOAT_E_AGAIN, "the server did not finish renewing %s within %d s", pos[0],
                     RENEW_WAIT_S);
        moat_err_hint(&err, "it goes on; see moat acme status %s", pos[0]);
        goto fail;
    }
    if (s.failures > 0) {
        moat_err_set(&err, MOAT_E_INVAL, "renewing %s failed, the current certificate is kept: %s", pos[0],
                     s.last_error);
        goto fail;
    }
    if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time((time_t)s.not_after, t, sizeof(t));
        printf("renewed %s: the new certificate is valid until %s and is being served\n", pos[0], t);
    }
    moat_store_close(st);
    moat_config_unref(cfg);
    return MOAT_EXIT_OK;
fail:
    moat_store_close(st);
    moat_config_unref(cfg);
    return moat_cli_fail(cli, &err);
}

static int acme_rollover(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat acme rollover",
        "Replaces the ACME account key (RFC 8555 key change): a new key is made, the ACME server of\n"
        "acme.directory is told, then the store keeps only the new key. Certificates are not touched.\n\n"
        "example: moat acme rollover\n",
        opts,
        pos,
        0,
        0};
    moat_err_t err = {0};
    moat_config_t *cfg = NULL;
    moat_store_t *st = NULL;
    char summary[700];
    int rc;

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (open_config(cli, &cfg, &err) != 0 || moat__km_open(cli, 0, &st, &err) != 0 ||
        moat_acme_rollover(st, cfg, summary, sizeof(summary), &err) != 0) {
        moat_store_close(st);
        moat_config_unref(cfg);
        return moat_cli_fail(cli, &err);
    }
    if (!cli->quiet)
        printf("rolled over: %s\n", summary);
    moat_store_close(st);
    moat_config_unref(cfg);
    return MOAT_EXIT_OK;
}

static int eab_new(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1] = {NULL};
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat acme eab new [--json]",
        "Mints an external account binding key for moat's ACME server (sites with acme_server;\n"
        "required there with eab: required): a key id and an HMAC key to give to one machine's\n"
        "ACME client, which binds its new account with them (RFC 8555 7.3.4). Each key enrolls\n"
        "one account. The HMAC key is printed only now; the store keeps it sealed.\n"
        "\n"
        "Examples:\n"
        "  moat acme eab new\n"
        "  lego --server https://ca.example.com/acme/directory --eab --kid KID --hmac HMAC \\\n"
        "       --email ops@example.com --accept-tos --domains www.example.com --http run\n"
        "  certbot certonly --server https://ca.example.com/acme/directory \\\n"
        "       --eab-kid KID --eab-hmac-key HMAC -d www.example.com --standalone\n"
        "  moat --json acme eab new     {\"kid\": ..., \"hmac\": ..., \"created\": ..., \"account\": null}\n",
        opts,
        pos,
        0,
        0};
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    char kid[64], hmac[64];
    int rc;

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, 0, &st, &err) != 0 ||
        moat_ca_eab_new(st, kid, sizeof(kid), hmac, sizeof(hmac), &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    moat_store_close(st);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "kid", kid);
        moat_json_kv_str(&j, "hmac", hmac);
        moat_json_kv_time(&j, "created", (int64_t)time(NULL));
        moat_json_kv_str(&j, "account", NULL); /* the account it enrolls, once one does */
        moat_cli_json_end(&j);
    } else {
        printf("external account binding key %s (enrolls one account)\n"
               "  kid:  %s\n"
               "  hmac: %s\n"
               "give both to the machine's ACME client (lego --eab --kid KID --hmac HMAC, certbot\n"
               "--eab-kid KID --eab-hmac-key HMAC); the HMAC key is not shown again\n",
               kid, kid, hmac);
    }
    OPENSSL_cleanse(hmac, sizeof(hmac));
    return MOAT_EXIT_OK;
}

static int acme_eab(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"new", "mint a key id and HMAC key that enrolls one account", eab_new},
    };
    return moat__km_dispatch(cli, "acme eab",
                             "external account binding keys of moat's ACME server (RFC 8555 7.3.4)", subs,
                             MOAT_ARRAY_LEN(subs), argc, argv);
}

int moat_cli_acme(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"status", "state, expiry, next renewal and last error of each ACME certificate", acme_status},
        {"renew", "ask the running server to renew one now, and wait for the outcome", acme_renew},
        {"rollover", "replace the ACME account key (the server is told first)", acme_rollover},
        {"eab", "external account binding keys of moat's ACME server: new", acme_eab},
    };
    return moat__km_dispatch(cli, "acme", "ACME: certificates that renew themselves, and moat's ACME server",
                             subs, MOAT_ARRAY_LEN(subs), argc, argv);
}
