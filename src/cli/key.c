/* moat key: new, renew, list, show, import, export, delete. Each change is one store transaction. */
#include "cli/groups.h"
#include "cli/keymgr_int.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SANS MOAT_CA_MAX_SANS
#define MAX_KEY_FILE (MOAT_PKI_MAX_IMPORT_BYTES)

/* ------------------------------------------------------------------------------------------------ */
/* Shared by new and renew: the progress of a slow key generation, and what to do next. */

typedef struct progress {
    const moat_keymgr_new_res_t *res; /* its algorithm is set before the generation starts */
    unsigned long tested;
    int tty;
    const char *csr_out; /* where the request goes */
    int force;           /* it may replace a file there */
} progress_t;

/* The request file is checked once the key manager accepted the request: a typo in the name says so first. */
static int on_accepted(void *arg, moat_err_t *err)
{
    const progress_t *p = arg;
    return moat__km_check_new_file(p->csr_out, p->force, "--force", err);
}

/* On a terminal, RSA generation (which can take a while) shows how far it got. */
static int on_progress(void *arg, int phase)
{
    progress_t *p = arg;
    const char *alg = p->res->algorithm;
    if (phase == MOAT_KEYMGR_GEN_START) {
        p->tty = strncmp(alg, "rsa-", 4) == 0 && isatty(STDERR_FILENO);
        if (p->tty)
            fprintf(stderr, "generating %s key (this can take a while)...", alg);
    } else if (!p->tty) {
        return 1;
    } else if (phase == MOAT_KEYMGR_GEN_DONE || phase == MOAT_KEYMGR_GEN_FAILED) {
        fprintf(stderr, "\rgenerating %s key: %s                                \n", alg,
                phase == MOAT_KEYMGR_GEN_DONE ? "done" : "failed");
    } else if (phase != 0 || (++p->tested % 8) == 0) {
        fprintf(stderr, "\rgenerating %s key: %lu candidates tested%s", alg, p->tested,
                phase == 2 ? ", prime found" : "              ");
    }
    fflush(stderr);
    return 1;
}

/* Writes the request where it goes (after the commit) and says what to do next. */
static int print_next(const moat_cli_t *cli, const char *name, const char *csr_out,
                      const moat_keymgr_new_res_t *res, const char *what, moat_err_t *err)
{
    if (csr_out != NULL &&
        moat__km_write_after_commit(csr_out, res->csr_pem, res->csr_pem_len, 0644, err) != 0)
        return err->code;
    if (cli->json) {
        /* The request is in the result: standard output carries one JSON document. */
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", name);
        moat_json_kv_str(&j, "state", "pending");
        moat_json_kv_bool(&j, "renewal", res->renewal);
        moat_json_kv_str(&j, "algorithm", res->key_algorithm);
        moat_json_kv_bool(&j, "exportable", res->exportable);
        moat_json_kv_str(&j, "key_fingerprint", res->key_fingerprint[0] ? res->key_fingerprint : NULL);
        moat_json_kv_str(&j, "csr_out", csr_out);
        moat_json_kv_str(&j, "csr", res->csr_pem);
        moat_cli_json_end(&j);
        return 0;
    }
    if (csr_out != NULL) {
        if (!cli->quiet)
            printf("%s key \"%s\" is pending; its request is in %s\n"
                   "next: have it signed (moat ca sign %s --out %s.pem, or any CA), then:\n"
                   "      moat cert install %s %s.pem\n",
                   what, name, csr_out, csr_out, name, name, name);
        return 0;
    }
    fwrite(res->csr_pem, 1, res->csr_pem_len, stdout);
    if (!cli->quiet)
        fprintf(stderr,
                "moat: %s key \"%s\" is pending; the request is above (--csr-out FILE writes it to a file)\n"
                "      have it signed, then: moat cert install %s CERT.pem\n",
                what, name, name);
    return 0;
}

/* Joins the --san options into one list and checks it before a slow key generation, so a typo fails at once.
 */
static int join_sans(const char **list, size_t n, char *out, size_t outsz, moat_err_t *err)
{
    GENERAL_NAMES *gn = NULL;
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, outsz - o, "%s%s", o ? "," : "", list[i]);
        if (w < 0 || (size_t)w >= outsz - o)
            return moat_err_set(err, MOAT_E_LIMIT, "--san: too many names (at most %zu bytes in all)", outsz);
        o += (size_t)w;
    }
    if (out[0] != '\0' && moat_pki_sans_parse(out, &gn, err) != 0)
        return moat_err_prefix(err, "--san");
    GENERAL_NAMES_free(gn);
    return 0;
}

/* Runs key new or key renew and prints the outcome. */
static int make_key(moat_cli_t *cli, const moat_keymgr_new_req_t *req, bool renew, const char *csr_out,
                    int force)
{
    moat_keymgr_new_res_t res = {0};
    progress_t p = {&res, 0, 0, csr_out, force};
    moat_keymgr_new_req_t r = *req;
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    int rc;

    r.on_progress = on_progress;
    r.on_accepted = on_accepted;
    r.progress_arg = &p;
    if ((rc = moat__km_open(cli, renew ? 0 : MOAT_STORE_CREATE, &st, &err)) == 0) {
        r.cfg = cfg = moat_cli_change_config(cli);
        rc = renew ? moat_keymgr_key_renew(st, &r, &res, &err) : moat_keymgr_key_new(st, &r, &res, &err);
    }
    moat_config_unref(cfg);
    moat_store_close(st);
    if (rc == 0) {
        moat_cli_change_notes(cli, &res.notes);
        if (strcmp(res.algorithm, "ed25519") == 0)
            fputs("moat: warning: browsers do not accept ed25519 certificates for servers; use it for "
                  "clients and internal tools, or choose ec-p256\n",
                  stderr);
        if (res.kept_earlier && !cli->quiet)
            fprintf(stderr,
                    "moat: the earlier request of \"%s\" is kept: a certificate issued for it can still be "
                    "installed\n",
                    req->name);
        rc = print_next(cli, req->name, csr_out, &res, res.renewal ? "renewal:" : "new", &err);
    }
    moat_keymgr_new_res_dispose(&res);
    return rc == 0 ? MOAT_EXIT_OK : moat_cli_fail(cli, &err);
}

/* ------------------------------------------------------------------------------------------------ */

static int key_new(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *cn = NULL, *alg_s = NULL, *csr_out = NULL, *sans_l[MAX_SANS];
    const char *o = NULL, *ou = NULL, *l = NULL, *st_ = NULL, *c = NULL, *email = NULL;
    size_t nsans = 0;
    int exportable = 0, force = 0, rc;
    char sans[8192];
    moat_pki_alg_t alg = MOAT_PKI_ALG_DEFAULT;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--cn", &cn, NULL, NULL, NULL, 0},
        {"--san", NULL, NULL, sans_l, &nsans, MAX_SANS},
        {"--alg", &alg_s, NULL, NULL, NULL, 0},
        {"--org", &o, NULL, NULL, NULL, 0},
        {"--ou", &ou, NULL, NULL, NULL, 0},
        {"--locality", &l, NULL, NULL, NULL, 0},
        {"--state", &st_, NULL, NULL, NULL, 0},
        {"--country", &c, NULL, NULL, NULL, 0},
        {"--email", &email, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {"--csr-out", &csr_out, NULL, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat key new NAME --cn CN [--san DNS:x,IP:y,...] [--alg ALG] [--org O] [--ou OU] [--locality L]\n"
        "                    [--state ST] [--country CC] [--email E] [--exportable] [--csr-out FILE "
        "[--force]]",
        "Makes a new key pair and a certificate request (PKCS#10) for it. The key waits in the store as\n"
        "\"pending\" until its certificate is installed with 'moat cert install NAME CERT.pem'.\n\n"
        "  --cn CN          the subject's common name (required)\n"
        "  --san LIST       subject alternative names, DNS:name, IP:address, email:addr, URI:uri,\n"
        "                   comma-separated or repeated; default: the CN\n"
        "  --alg ALG        ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519\n"
        "                   (browsers do not accept ed25519 for servers)\n"
        "  --org, --ou, --locality, --state, --country, --email   more subject fields\n"
        "  --exportable     allow 'moat key export' later; without it the private key never leaves\n"
        "                   the store (this cannot be changed afterwards)\n"
        "  --csr-out FILE   write the request to FILE (default: standard output)\n"
        "  --force          overwrite an existing --csr-out FILE\n\n"
        "example: moat key new www --cn www.example.com --san DNS:www.example.com,DNS:example.com "
        "--csr-out www.csr\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (cn == NULL)
        return moat_cli_usage(cmd.usage, "--cn is required: the name the certificate is for");
    if (moat__km_check_new_file(csr_out, force, "--force", &err) != 0 ||
        moat__km_check_name(pos[0], &err) != 0 ||
        (alg_s != NULL && moat_pki_alg_parse(alg_s, &alg, &err) != 0) ||
        join_sans(sans_l, nsans, sans, sizeof(sans), &err) != 0)
        return moat_cli_fail(cli, &err);
    if (c != NULL && (strlen(c) != 2 || c[0] < 'A' || c[0] > 'z' || c[1] < 'A' || c[1] > 'z')) {
        moat_err_set(&err, MOAT_E_INVAL, "--country must be a two-letter ISO 3166 code, not \"%s\"", c);
        moat_err_hint(&err, "for example --country FR or --country US");
        return moat_cli_fail(cli, &err);
    }
    moat_pki_subject_t subj = {cn, o, ou, l, st_, c, email};
    moat_keymgr_new_req_t req = {pos[0],          &subj, NULL, sans, alg, true,
                                 exportable != 0, NULL,  NULL, NULL, NULL};
    return make_key(cli, &req, false, csr_out, force);
}

static int key_renew(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *csr_out = NULL, *alg_s = NULL, *new_cn = NULL, *sans_l[MAX_SANS];
    size_t nsans = 0;
    int exportable = 0, force = 0, rc;
    char new_sans[8192];
    moat_pki_alg_t alg = MOAT_PKI_ALG_DEFAULT;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--csr-out", &csr_out, NULL, NULL, NULL, 0},
        {"--alg", &alg_s, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {"--cn", &new_cn, NULL, NULL, NULL, 0},
        {"--san", NULL, NULL, sans_l, &nsans, MAX_SANS},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat key renew NAME [--cn CN] [--san LIST] [--csr-out FILE [--force]] [--alg ALG] [--exportable]",
        "Makes a new pending key and request for NAME with the same subject and names, or with the\n"
        "names --cn and --san give. The current key\n"
        "and certificate keep serving until the new certificate is installed with 'moat cert install',\n"
        "so 'certificate: NAME' in the config keeps working. Renewing again makes a newer request; the\n"
        "earlier one is kept, and its certificate can still be installed until 'moat key delete NAME'.\n\n"
        "  --cn CN          a new common name; without --san the names become the CN alone\n"
        "  --san LIST       new subject alternative names (DNS:x,IP:y,...; repeatable), replacing the old\n"
        "  --csr-out FILE   write the request to FILE (default: standard output)\n"
        "  --alg ALG        algorithm of the new key (default: the same as the current key)\n"
        "  --exportable     make the new key exportable (an exportable key stays exportable)\n"
        "  --force          overwrite an existing --csr-out FILE\n\n"
        "example: moat key renew www --csr-out www-2027.csr\n"
        "example: moat key renew www --san DNS:www.example.com,DNS:shop.example.com --csr-out www.csr\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (new_cn != NULL && new_cn[0] == '\0')
        return moat_cli_usage(cmd.usage, "--cn needs a name: the name the certificate is for");
    if (join_sans(sans_l, nsans, new_sans, sizeof(new_sans), &err) != 0 ||
        (alg_s != NULL && moat_pki_alg_parse(alg_s, &alg, &err) != 0))
        return moat_cli_fail(cli, &err);
    moat_keymgr_new_req_t req = {pos[0],          NULL, new_cn, new_sans, alg, alg_s != NULL,
                                 exportable != 0, NULL, NULL,   NULL,     NULL};
    return make_key(cli, &req, true, csr_out, force);
}

/* ------------------------------------------------------------------------------------------------ */

static int key_list(moat_cli_t *cli, int argc, char **argv)
{
    size_t wname = 20;
    moat_store_t *st = NULL;
    moat_store_key_list_t kl = {0};
    moat_err_t err = {0};
    time_t now = time(NULL);
    int rc, shown = 0;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat key list [--json]",
        "Lists the keys in the store: name, state (pending, active, expired, revoked),\n"
        "algorithm, whether it is exportable, expiry and subject.\n\n"
        "example: moat key list --json\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    /* A missing store is an error naming the path: a mistyped --store must not look like an empty one. */
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_list(st, &kl, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    moat_json_t j;
    if (cli->json) {
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
    }
    for (size_t i = 0; i < kl.n; i++) {
        moat__km_view_t v = {&kl.items[i], NULL, 0};
        /* Keys come ordered by name: an active key and a pending renewal of the same name are one entry. */
        if (i + 1 < kl.n && strcmp(kl.items[i + 1].name, kl.items[i].name) == 0) {
            const moat_store_key_t *a = &kl.items[i], *b = &kl.items[i + 1];
            v.key = a->state == MOAT_KEY_ACTIVE ? a : b;
            v.renewal = a->state == MOAT_KEY_ACTIVE ? b : a;
            i++;
        }
        moat__km_view_check_revoked(st, &v);
        if (cli->json) {
            moat__km_view_json(&j, &v, now);
            continue;
        }
        if (!shown++) {
            /* The NAME column is as wide as the longest name: a long one does not push the rest over. */
            for (size_t k = 0; k < kl.n; k++)
                wname = strlen(kl.items[k].name) > wname ? strlen(kl.items[k].name) : wname;
            printf("%-*s %-8s %-9s %-10s %-24s %s\n", (int)wname, "NAME", "STATE", "ALGORITHM", "EXPORTABLE",
                   "NOT AFTER (DAYS LEFT)", "SUBJECT");
        }
        {
            const moat_store_cert_t *c = v.key->cert;
            char t[64] = "-", exp[48];
            if (c != NULL) {
                moat__km_fmt_time((time_t)c->not_after, t, sizeof(t));
                t[10] = '\0';
                snprintf(exp, sizeof(exp), "%.10s (%ld)", t, moat__km_days_left((time_t)c->not_after, now));
            } else {
                moat_strlcpy(exp, "-", sizeof(exp));
            }
            printf("%-*s %-8s %-9s %-10s %-24s %s%s\n", (int)wname, v.key->name, moat__km_view_state(&v, now),
                   v.key->algorithm, v.key->exportable ? "yes" : "no", exp,
                   c ? c->subject : "(waiting for its certificate)", v.renewal ? "  [renewal pending]" : "");
        }
    }
    if (cli->json) {
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    } else if (!shown) {
        printf(
            "no keys yet: 'moat key new NAME --cn CN' makes one, 'moat key import NAME FILE' imports one\n");
    }
    moat_store_key_list_dispose(&kl);
    moat_store_close(st);
    return MOAT_EXIT_OK;
}

/* Gets the active key of <name> (and a pending renewal), or else the pending key. */
static int get_view(moat_store_t *st, const char *name, moat_store_key_t *a, moat_store_key_t *p,
                    moat__km_view_t *v, moat_err_t *err)
{
    int have_a = 0, have_p = 0;
    if (moat_store_key_get(st, name, MOAT_KEY_WANT_ACTIVE, a, err) == 0)
        have_a = 1;
    else if (err->code != MOAT_E_NOTFOUND)
        return err->code;
    moat_err_clear(err);
    if (moat_store_key_get(st, name, MOAT_KEY_WANT_PENDING, p, err) == 0)
        have_p = 1;
    else if (err->code != MOAT_E_NOTFOUND)
        return err->code;
    moat_err_clear(err);
    if (!have_a && !have_p) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\"", name);
        return moat_err_hint(err, "'moat key list' shows the keys in this store");
    }
    v->key = have_a ? a : p;
    v->renewal = have_a && have_p ? p : NULL;
    v->revoked = 0;
    moat__km_view_check_revoked(st, v);
    return 0;
}

static int key_show(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_store_t *st = NULL;
    moat_store_key_t a = {0}, p = {0};
    moat__km_view_t v;
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat key show NAME [--json]",
        "Shows one key: state, algorithm, exportability, its certificate (subject,\n"
        "names, issuer, validity, fingerprint) and any renewal waiting for its\n"
        "certificate.\n\n"
        "  --json    one object, the same fields as an entry of 'moat key list --json'\n\n"
        "example: moat key show www\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (get_view(st, pos[0], &a, &p, &v, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
    } else {
        if (cli->json) {
            moat_json_t j;
            moat_json_init(&j, stdout, 1);
            moat__km_view_json(&j, &v, time(NULL));
            moat_json_finish(&j);
        } else {
            moat__km_view_text(stdout, &v, time(NULL));
        }
        rc = MOAT_EXIT_OK;
    }
    moat_store_key_dispose(&a);
    moat_store_key_dispose(&p);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

static int key_delete(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    moat_plan_notes_t notes;
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat key delete NAME",
        "Deletes the key NAME, any renewal waiting for its certificate, and its\n"
        "certificates and their history. Refused while a site of the configuration (-c,\n"
        "MOAT_CONFIG or ./moat.yaml) serves it with 'certificate: NAME': change the site first.\n"
        "Export it first if you may need it again.\n\n"
        "example: moat key delete old-www\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    cfg = moat_cli_change_config(cli);
    if (moat_keymgr_key_delete(st, cfg, pos[0], &k, &notes, &err) != 0)
        goto fail;
    moat_cli_change_notes(cli, &notes);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_bool(&j, "deleted", 1);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet)
        printf("deleted key \"%s\" and its certificates\n", pos[0]);
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_store_key_dispose(&k);
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

static int key_import(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[2], *pwfile = NULL;
    int exportable = 0, replace = 0, rc, have_pw = 0;
    unsigned char *data = NULL;
    size_t len = 0;
    char pw[1024];
    moat_pki_import_t imp = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_keymgr_import_res_t res = {0};
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {"--replace", NULL, &replace, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat key import NAME FILE [--password-file F] [--exportable] [--replace]",
        "Imports a private key and its certificate (and chain) as NAME. FILE may be PEM (any mix of keys\n"
        "and certificates), DER, PKCS#8 (encrypted or not) or PKCS#12 (.pfx/.p12, modern or legacy).\n"
        "The key is paired with its certificate by public key; other certificates form the chain.\n\n"
        "  --password-file F  read the file's password from F (else a prompt on a terminal)\n"
        "  --exportable       allow 'moat key export' of this key later (default: never)\n"
        "  --replace          replace the material of the existing key NAME: the way to make a\n"
        "                     non-exportable key exportable, from its original file\n\n"
        "example: moat key import www www.pfx --password-file pw.txt\n",
        opts,
        pos,
        2,
        2};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_check_name(pos[0], &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_read_file(pos[1], MAX_KEY_FILE, &data, &len, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (pwfile != NULL) {
        if (moat__km_password(pwfile, NULL, 0, 1, pw, sizeof(pw), &err) != 0)
            goto fail;
        have_pw = 1;
    }
    rc = moat_pki_import(data, len, have_pw ? pw : NULL, have_pw, &imp, &err);
    if (rc == MOAT_E_PASSWORD && !have_pw && isatty(STDIN_FILENO)) {
        moat_err_clear(&err);
        if (moat__km_password(NULL, "Password for the file: ", 0, 1, pw, sizeof(pw), &err) != 0)
            goto fail;
        have_pw = 1;
        rc = moat_pki_import(data, len, pw, 1, &imp, &err);
    }
    if (rc != 0) {
        moat_err_prefix(&err, "importing %s", pos[1]);
        if (rc == MOAT_E_PASSWORD && !have_pw && err.hint[0] == '\0')
            moat_err_hint(&err, "pass --password-file FILE");
        goto fail;
    }
    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0)
        goto fail;
    {
        moat_keymgr_import_req_t req = {pos[0], pos[1], &imp, exportable != 0, replace != 0, NULL};
        req.cfg = cfg = moat_cli_change_config(cli);
        if (moat_keymgr_key_import(st, &req, &res, &err) != 0)
            goto fail;
    }
    moat_cli_change_notes(cli, &res.notes);
    if (cli->json) {
        moat_json_t j;
        moat_pki_cert_info_t ci = {0};
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "action", res.replaced ? "replaced" : "imported");
        moat_json_kv_str(&j, "format", imp.format);
        moat_json_kv_str(&j, "algorithm", res.algorithm);
        moat_json_kv_bool(&j, "exportable", exportable);
        moat_json_kv_str(&j, "key_fingerprint", res.key_fingerprint);
        moat_json_kv_str(&j, "state", res.leaf != NULL ? "active" : "pending");
        moat_json_kv_int(&j, "chain_length", (int64_t)res.nchain);
        moat_json_kv_str(&j, "chain_ends_below", res.missing);
        moat_json_key(&j, "certificate");
        if (res.leaf != NULL && moat_pki_cert_info(res.leaf, &ci, &err) == 0) {
            moat_json_obj_begin(&j);
            moat__km_json_cert_info(&j, &ci);
            moat_json_obj_end(&j);
        } else {
            moat_json_null(&j);
        }
        moat_pki_cert_info_dispose(&ci);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        printf("%s key \"%s\" from %s (%s, %s, %sexportable)\n", res.replaced ? "replaced" : "imported",
               pos[0], pos[1], imp.format, res.algorithm, exportable ? "" : "not ");
        if (res.leaf != NULL) {
            moat_pki_cert_info_t ci = {0};
            if (moat_pki_cert_info(res.leaf, &ci, &err) == 0) {
                char t[64];
                moat__km_fmt_time(ci.not_after, t, sizeof(t));
                printf("certificate: %s, issued by %s, valid until %s\n", ci.subject, ci.issuer, t);
                if (moat_pki_cert_check_time(res.leaf, time(NULL), &err) != 0)
                    fprintf(stderr, "moat: warning: %s\n", err.msg);
                moat_pki_cert_info_dispose(&ci);
            }
            if (res.load_warning[0] != '\0')
                fprintf(stderr, "moat: warning: %s\n", res.load_warning);
            if (res.missing != NULL && res.nchain == 0)
                printf("issued directly by \"%s\": clients must trust it (as they do a root CA)\n",
                       res.missing);
            else if (res.missing != NULL)
                printf("chain: %zu certificate%s; ends below \"%s\", which clients must already trust\n",
                       res.nchain, res.nchain == 1 ? "" : "s", res.missing);
        } else {
            printf("no certificate in the file: the key is pending; install its certificate with\n"
                   "  moat cert install %s CERT.pem\n",
                   pos[0]);
        }
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&data, len);
    moat_keymgr_import_res_dispose(&res);
    moat_pki_import_dispose(&imp);
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

/* The key "key export" hands out: any key of that name (the export policy decides). */
static int export_find(moat_store_t *st, const char *name, moat_store_key_t *k, moat_err_t *err)
{
    int rc = moat_store_key_get(st, name, MOAT_KEY_CURRENT, k, err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_set(err, MOAT_E_NOTFOUND, "no key named \"%s\" to export", name);
        moat_err_hint(err, "'moat key list' shows the keys in this store");
    }
    return rc;
}

static int key_export(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_export_t ex = {
        "moat key export NAME --out FILE.p12 [--password-file F] [--legacy] [--force]",
        "Writes the key NAME with its certificate and chain as a PKCS#12 file (mode 0600), protected by\n"
        "the password in F. Only keys created or imported with --exportable can be exported; every\n"
        "export is recorded in the audit log.\n\n"
        "  --out FILE.p12     where to write it\n"
        "  --password-file F  the password (first line of F); without it, asked twice on the terminal\n"
        "  --legacy           PBE-SHA1-3DES instead of AES-256-CBC, for old Windows and appliances\n"
        "  --force            overwrite an existing FILE.p12\n\n"
        "example: moat key export www --out www.p12 --password-file pw.txt\n",
        export_find,
        "key.export",
        {"exported key", "with its certificate", "; the export is in the audit log"}};
    return moat__km_export_cmd(cli, &ex, argc, argv);
}

/* Prints the pending request of NAME again (as IIS shows a pending request), for a CA that lost it. */
static int key_csr(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *out = NULL;
    int force = 0, rc;
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    X509_REQ *req = NULL;
    char *pem = NULL;
    size_t pem_len = 0;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat key csr NAME [--out FILE [--force]]",
        "Prints the certificate request (PKCS#10, PEM) of the pending key NAME again: the one 'moat key\n"
        "new' or 'moat key renew' made and that waits for its certificate.\n\n"
        "  --out FILE   write it to FILE instead of standard output\n"
        "  --force      overwrite an existing FILE\n"
        "  --json       {\"name\", \"csr\": PEM text}\n\n"
        "example: moat key csr www --out www.csr\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_check_new_file(out, force, "--force", &err) != 0 ||
        moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    rc = moat_store_key_get(st, pos[0], MOAT_KEY_WANT_PENDING, &k, &err);
    if (rc == MOAT_E_NOTFOUND) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "key \"%s\" has no pending request", pos[0]);
        moat_err_hint(&err, "'moat key renew %s' makes a new one; 'moat key list' shows the keys", pos[0]);
    } else if (rc == 0 && k.csr.len == 0) {
        rc = moat_err_set(&err, MOAT_E_STATE, "the pending key \"%s\" has no stored request", pos[0]);
        moat_err_hint(&err, "'moat key renew %s' makes a new key and request", pos[0]);
    }
    if (rc == 0 && (rc = moat_pki_csr_parse(k.csr.data, k.csr.len, &req, &err)) == 0)
        rc = moat_pki_csr_to_pem(req, &pem, &pem_len, &err);
    if (rc == 0 && cli->json && out == NULL) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "csr", pem);
        moat_cli_json_end(&j);
    } else if (rc == 0) {
        rc = moat__km_write_file(out ? out : "-", pem, pem_len, 0644, &err);
    }
    X509_REQ_free(req);
    moat_free(&pem);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc == 0 ? MOAT_EXIT_OK : moat_cli_fail(cli, &err);
}

/* ------------------------------------------------------------------------------------------------ */

int moat_cli_key(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"new", "make a key pair and a certificate request (pending until its certificate is installed)",
         key_new},
        {"renew", "make a new pending key and request under the same name", key_renew},
        {"csr", "print the request of a pending key again", key_csr},
        {"list", "list the keys with their state and expiry", key_list},
        {"show", "show one key and its certificate", key_show},
        {"import", "import a key (and certificate) from PEM, DER, PKCS#8 or PKCS#12", key_import},
        {"export", "export an exportable key with its certificate as PKCS#12", key_export},
        {"delete", "delete a key and its certificates", key_delete},
    };
    return moat__km_dispatch(cli, "key", "keys and certificate requests", subs, MOAT_ARRAY_LEN(subs), argc,
                             argv);
}
