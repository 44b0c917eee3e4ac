/*
 * moat trust: the trust anchors that verify client certificates (issue: client certificates). moat's
 * own CA is always available as the anchor "moat-ca"; these are the others (a corporate root, a
 * partner's CA). Every change bumps the generation, so a running server applies it without a restart.
 */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "ca/ca.h"
#include "config/config.h"

#include <limits.h>
#include <openssl/err.h>
#include <string.h>
#include <time.h>

#define TRUST_FILE_MAX (4u << 20)

static int trust_add(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *name = NULL;
    int force = 0, rc;
    moat_err_t err = {0};
    unsigned char *data = NULL;
    moat_store_t *st = NULL;
    moat_ca_trust_add_req_t req = {0};
    moat_ca_trust_added_t added = {0};
    const moat__km_opt_t opts[] = {
        {"--name", &name, NULL, NULL, NULL, 0}, {"--force", NULL, &force, NULL, NULL, 0}, {0}};
    const moat__km_cmd_t cmd = {
        "moat trust add FILE [--name N] [--force]",
        "Adds the CA certificate(s) in FILE (PEM with one or more certificates, or DER) as trust\n"
        "anchors for client certificates. Each must be a CA certificate; a leaf certificate is\n"
        "refused with the reason. Several certificates get the names N-1, N-2, ... (or names made\n"
        "from their common names). Sites use them by name in 'client_trust:' and, by default, all of\n"
        "them together with moat's own CA (\"moat-ca\"). A running server applies the change at once.\n\n"
        "  --name N   the anchor's name (default: from the certificate's common name)\n"
        "  --force    add an expired certificate anyway (it verifies nothing until replaced)\n\n"
        "example: moat trust add corp-root.pem --name corp\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (name != NULL && moat__km_check_name(name, &err) != 0)
        return moat_cli_fail(cli, &err);
    req.source = pos[0];
    req.name = name;
    req.force = force != 0;
    if (moat__km_read_file(pos[0], TRUST_FILE_MAX, &data, &req.len, &err) != 0)
        return moat_cli_fail(cli, &err);
    req.data = data;
    req.cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0 ||
        moat_ca_trust_add(st, &req, &added, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    moat_cli_change_notes(cli, &added.notes);
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < added.n; i++) {
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "name", added.items[i].name);
            moat__km_json_cert_info(&j, &added.items[i].info);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    }
    for (size_t i = 0; i < added.n && !cli->quiet && !cli->json; i++) {
        char when[64];
        moat__km_fmt_time(added.items[i].info.not_after, when, sizeof(when));
        printf("trusted \"%s\" as anchor \"%s\" (valid until %s)\n  fingerprint %s\n",
               added.items[i].info.subject, added.items[i].name, when, added.items[i].info.fingerprint);
    }
    rc = moat_cli_served_report(cli, st);
out:
    moat_ca_trust_added_dispose(&added);
    moat_config_unref((moat_config_t *)req.cfg);
    moat_free(&data);
    moat_store_close(st);
    return rc;
}

/* The sites of the config (if one is named) whose client trust includes anchor <name>. */
static void sites_using(const moat_config_t *cfg, const char *name, char *out, size_t outsz)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; cfg != NULL && i < cfg->nsites; i++) {
        const moat_site_t *s = &cfg->sites[i];
        if (moat_plan_site_trusts(s, name) && o + strlen(s->name) + 3 < outsz)
            o += (size_t)snprintf(out + o, outsz - o, "%s%s", o ? ", " : "", s->name);
    }
}

/* The CRLs the server fetched for these anchors and the CAs under them (the store's cache). */
static void print_crls(moat_store_t *st, time_t now)
{
    moat_store_crl_list_t cl = {0};
    moat_err_t err = {0};
    if (moat_store_crl_list(st, &cl, &err) != 0) {
        printf("\nCRLs: cannot read them from the store: %s\n", err.msg);
        return;
    }
    if (cl.n > 0)
        printf(
            "\nCRLs for client certificates (fetched by the server, or added with 'moat trust crl add'):\n");
    for (size_t i = 0; i < cl.n; i++) {
        const moat_store_crl_t *c = &cl.items[i];
        char next[64], fetched[64];
        if (strncmp(c->url, MOAT_STORE_CRL_ADDED, strlen(MOAT_STORE_CRL_ADDED)) == 0)
            printf("  added by hand for anchor \"%s\" (never fetched)\n    issuer %s\n",
                   c->url + strlen(MOAT_STORE_CRL_ADDED), c->issuer_subject);
        else
            printf("  %s\n    issuer %s\n", c->url, c->issuer_subject);
        if (c->der.len > 0) {
            moat__km_fmt_time((time_t)c->next_update, next, sizeof(next));
            moat__km_fmt_time((time_t)c->fetched_at, fetched, sizeof(fetched));
            printf("    %lld revoked, next update %s (%s), fetched %s\n", (long long)c->revoked, next,
                   c->next_update > (int64_t)now ? "in date" : "OUT OF DATE: revocation-unknown", fetched);
        } else {
            printf("    no CRL yet: its certificates are revocation-unknown\n");
        }
        if (c->error[0] != '\0')
            printf("    last attempt: %s\n", c->error);
    }
    moat_store_crl_list_dispose(&cl);
}

static void json_crls(moat_json_t *j, const moat_store_crl_list_t *cl, const unsigned char *under, time_t now)
{
    moat_json_key(j, "crls");
    moat_json_arr_begin(j);
    for (size_t i = 0; i < cl->n; i++) {
        const moat_store_crl_t *c = &cl->items[i];
        if (!under[i])
            continue;
        moat_json_obj_begin(j);
        moat_json_kv_str(j, "url", c->url);
        moat_json_kv_str(j, "issuer", c->issuer_subject);
        moat_json_kv_bool(j, "held", c->der.len > 0);
        if (c->der.len > 0) {
            moat_json_kv_int(j, "revoked", c->revoked);
            moat_json_kv_time(j, "this_update", c->this_update);
            moat_json_kv_time(j, "next_update", c->next_update);
            moat_json_kv_bool(j, "in_date", c->next_update > (int64_t)now);
            moat_json_kv_time(j, "fetched_at", c->fetched_at);
        }
        moat_json_kv_time(j, "attempted_at", c->attempted_at);
        moat_json_kv_str(j, "last_error", c->error);
        moat_json_obj_end(j);
    }
    moat_json_arr_end(j);
}

static int trust_list(moat_cli_t *cli, int argc, char **argv)
{
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_store_anchor_list_t l = {0};
    moat_ca_t ca = {0};
    moat_config_t *cfg = NULL;
    int rc, have_ca;
    time_t now = time(NULL);
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat trust list [-c moat.yaml] [--json]",
        "Lists the trust anchors for client certificates: name, subject, fingerprint and expiry, and,\n"
        "with a config, which sites use each. \"moat-ca\" is moat's own CA.\n\n"
        "example: moat trust list --json\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (cli->config_path != NULL && moat_config_load(cli->config_path, &cfg, NULL, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0 ||
        moat_store_anchor_list(st, &l, &err) != 0)
        goto fail;
    have_ca = moat_ca_load(st, MOAT_CA_ROOT, false, &ca, &err) == 0;
    if (!have_ca && err.code != MOAT_E_NOTFOUND)
        goto fail;
    moat_err_clear(&err);

    if (cli->json) {
        moat_json_t j;
        char used[1024];
        moat_ca_trust_crls_t crls;
        if (moat_ca_trust_crls_load(st, &crls, &err) != 0)
            goto fail;
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < l.n + (size_t)have_ca; i++) {
            int is_ca = i == l.n;
            const char *nm = is_ca ? MOAT_PLAN_CA_ANCHOR : l.items[i].name;
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "name", nm);
            if (is_ca) {
                moat_pki_cert_info_t info = {0};
                if (moat_pki_cert_info(ca.cert, &info, &err) == 0) {
                    moat_json_kv_str(&j, "subject", info.subject);
                    moat_json_kv_str(&j, "fingerprint", info.fingerprint);
                    moat_json_kv_time(&j, "not_after", (int64_t)info.not_after);
                    moat_json_kv_int(&j, "days_left", moat__km_days_left(info.not_after, now));
                }
                moat_pki_cert_info_dispose(&info);
                moat_err_clear(&err);
            } else {
                char fpr[MOAT_PKI_FINGERPRINT_SIZE];
                moat__km_fpr_colon(l.items[i].fingerprint, fpr);
                moat_json_kv_str(&j, "subject", l.items[i].subject);
                moat_json_kv_str(&j, "fingerprint", fpr);
                moat_json_kv_time(&j, "not_after", l.items[i].not_after);
                moat_json_kv_int(&j, "days_left", moat__km_days_left((time_t)l.items[i].not_after, now));
            }
            moat_json_kv_bool(&j, "builtin", is_ca);
            if (!is_ca) {
                /* moat's own CA needs no fetched CRL: its revocations are in the store */
                if (crls.list.n > 0)
                    moat_ca_trust_crls_under(&crls, &l.items[i]);
                json_crls(&j, &crls.list, crls.under, now);
            }
            moat_json_key(&j, "sites");
            moat_json_arr_begin(&j);
            sites_using(cfg, nm, used, sizeof(used));
            for (char *save = NULL, *p = strtok_r(used, ",", &save); p; p = strtok_r(NULL, ",", &save))
                moat_json_str(&j, p[0] == ' ' ? p + 1 : p);
            moat_json_arr_end(&j);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_finish(&j);
        moat_ca_trust_crls_dispose(&crls);
    } else {
        if (have_ca)
            printf("%-20s moat's own CA (always available; 'moat ca cert' prints it)\n", MOAT_PLAN_CA_ANCHOR);
        if (l.n == 0)
            printf("no other trust anchors (add one with 'moat trust add FILE --name N')\n");
        for (size_t i = 0; i < l.n; i++) {
            char when[64], fpr[MOAT_PKI_FINGERPRINT_SIZE], used[1024];
            moat__km_fmt_time((time_t)l.items[i].not_after, when, sizeof(when));
            moat__km_fpr_colon(l.items[i].fingerprint, fpr);
            sites_using(cfg, l.items[i].name, used, sizeof(used));
            printf("%-20s %s\n%-20s   expires %s (%ld days)\n%-20s   fingerprint %s\n", l.items[i].name,
                   l.items[i].subject, "", when, moat__km_days_left((time_t)l.items[i].not_after, now), "",
                   fpr);
            if (cfg != NULL)
                printf("%-20s   used by %s\n", "", used[0] ? used : "no site");
        }
        print_crls(st, now);
    }
    rc = MOAT_EXIT_OK;
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_ca_dispose(&ca);
    moat_store_anchor_list_dispose(&l);
    moat_store_close(st);
    moat_config_unref(cfg);
    return rc;
}

static int trust_remove(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_ca_trust_removed_t res;
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat trust remove NAME",
        "Removes trust anchor NAME. Client certificates issued under it stop being accepted as soon\n"
        "as the running server applies the change. A removal that leaves a site of the config (-c)\n"
        "requiring client certificates without the anchors it needs is refused, since the server\n"
        "would not load it.\n\n"
        "example: moat trust remove corp\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0 ||
        moat_ca_trust_remove(st, cfg, pos[0], &res, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
    } else {
        moat_cli_change_notes(cli, &res.notes);
        if (!cli->quiet)
            printf("removed trust anchor \"%s\" (%s)\n", pos[0], res.subject);
        rc = moat_cli_served_report(cli, st);
    }
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}

static int trust_install_local(moat_cli_t *cli, int argc, char **argv)
{
    const char *root_dir = NULL, *nssdb = NULL;
    int remove = 0, rc;
    moat_err_t err = {0};
    moat_store_t *st = NULL;
    moat_ca_t ca = {0};
    moat_ca_local_res_t res;
    const moat__km_opt_t opts[] = {
        {"--remove", NULL, &remove, NULL, NULL, 0},
        {"--root", &root_dir, NULL, NULL, NULL, 0},
        {"--nssdb", &nssdb, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat trust install-local [--remove] [--root DIR] [--nssdb DIR]",
        "Makes this machine trust moat's root CA, as 'caddy trust' does: the root goes "
        "into\n" MOAT_CA_LOCAL_DIR " as moat-<fingerprint>.crt and update-ca-certificates\n"
        "rebuilds /etc/ssl/certs (curl, wget, python, Go and openssl read it), and into the NSS database\n"
        "browsers read ($HOME/.pki/nssdb, when it exists) with certutil. Needs root for the system store.\n"
        "Running it again changes nothing. (For client certificates, see 'moat trust add'.)\n\n"
        "  --remove      take moat's root out of the same stores\n"
        "  --root DIR    work on the file system under DIR (an image being built) instead of /\n"
        "  --nssdb DIR   the NSS database to use; \"\" for none\n\n"
        "example: sudo moat trust install-local\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0 ||
        moat_ca_load(st, MOAT_CA_ROOT, false, &ca, &err) != 0)
        goto fail;
    {
        moat_ca_local_opts_t o = {root_dir, nssdb, remove != 0};
        if (moat_ca_install_local(ca.cert, &o, &res, &err) != 0)
            goto fail;
    }
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "action", remove ? "removed" : "installed");
        moat_json_kv_str(&j, "name", res.name);
        moat_json_kv_str(&j, "file", res.file);
        moat_json_kv_bool(&j, "system_changed", res.system_changed);
        moat_json_kv_str(&j, "bundle", res.bundle);
        moat_json_kv_str(&j, "nssdb", res.nssdb[0] ? res.nssdb : NULL);
        moat_json_kv_bool(&j, "nss_changed", res.nss_changed);
        moat_cli_json_end(&j);
    } else if (!cli->quiet) {
        char subj[256] = "moat's CA";
        (void)X509_NAME_get_text_by_NID(X509_get_subject_name(ca.cert), NID_commonName, subj, sizeof(subj));
        if (remove)
            printf(res.system_changed ? "removed moat's root (%s) from the system trust store: %s\n"
                                      : "moat's root (%s) was not in the system trust store (%s)\n",
                   subj, res.file);
        else
            printf(res.system_changed ? "added moat's root (%s) to the system trust store: %s\n"
                                      : "moat's root (%s) was in the system trust store already: %s\n",
                   subj, res.file);
        if (res.nssdb[0])
            printf("%s the NSS database %s (browsers)\n",
                   res.nss_changed ? (remove ? "removed from" : "added to")
                                   : (remove ? "not in" : "already in"),
                   res.nssdb);
        else if (!remove)
            printf("no NSS database for this user ($HOME/.pki/nssdb): browsers that keep their own trust "
                   "need the root imported there (--nssdb DIR)\n");
    }
    rc = MOAT_EXIT_OK;
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_ca_dispose(&ca);
    moat_store_close(st);
    return rc;
}

static int trust_crl_add(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[2];
    unsigned char *data = NULL;
    size_t len = 0;
    moat_store_t *st = NULL;
    moat_ca_trust_crl_t res;
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat trust crl add NAME FILE",
        "Adds a CRL (PEM or DER) for trust anchor NAME, for client certificates that name no CRL\n"
        "distribution point: without one they can only be revocation-unknown. The CRL must be signed\n"
        "by the anchor and in date; it covers every certificate the anchor issued, moat never fetches\n"
        "it, and adding a newer one replaces it. A running server applies it at once. Past its\n"
        "nextUpdate it vouches for nothing: add a fresh one before then.\n\n"
        "  NAME   the anchor, as 'moat trust list' names it\n"
        "  FILE   the CRL\n\n"
        "example: moat trust crl add corp corp-root.crl\n",
        opts,
        pos,
        2,
        2};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_read_file(pos[1], TRUST_FILE_MAX, &data, &len, &err) != 0 ||
        moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0 ||
        moat_ca_trust_crl_add(st, pos[0], data, len, &res, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "anchor", pos[0]);
        moat_json_kv_str(&j, "issuer", res.issuer);
        moat_json_kv_time(&j, "this_update", res.this_update);
        moat_json_kv_time(&j, "next_update", res.next_update);
        moat_json_kv_int(&j, "revoked_count", (int64_t)res.revoked);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(res.next_update, t, sizeof(t));
        printf("added the CRL of anchor \"%s\" (%s): %zu revoked, next update %s\n", pos[0], res.issuer,
               res.revoked, res.next_update ? t : "none (it never goes out of date)");
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_free(&data);
    moat_store_close(st);
    return rc;
}

static int trust_crl(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"add", "add a CRL for an anchor whose certificates name no distribution point", trust_crl_add},
    };
    return moat__km_dispatch(cli, "trust crl", "CRLs added by hand for trust anchors", subs,
                             MOAT_ARRAY_LEN(subs), argc, argv);
}

int moat_cli_trust(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"add", "trust CA certificate(s) from a file for client certificates", trust_add},
        {"list", "list the trust anchors and the sites that use them", trust_list},
        {"remove", "stop trusting an anchor", trust_remove},
        {"crl", "CRLs for anchors whose certificates name no distribution point: add", trust_crl},
        {"install-local", "make this machine (system store, browsers) trust moat's root CA",
         trust_install_local},
    };
    return moat__km_dispatch(cli, "trust", "trust anchors for client certificates", subs,
                             MOAT_ARRAY_LEN(subs), argc, argv);
}
