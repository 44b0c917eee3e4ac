/*
 * moat ca: the in-house certificate authority. A root (ca init), optionally an intermediate that then
 * issues (ca init --intermediate), signing of outside requests (ca sign), key + certificate in one step
 * (ca issue), client bundles (ca export-client), revocation with a CRL re-signed on every change, the
 * inventory (ca list) and per-profile policies. Each change is one store transaction.
 */
#include "cli/groups.h"
#include "ca/ca.h"
#include "cli/keymgr_int.h"

#include <limits.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CSR_FILE (1L * 1024 * 1024)
#define MAX_SANS MOAT_CA_MAX_SANS
#define MAX_PATTERNS 64
#define ROOT_DAYS 3650
#define INTER_DAYS 1825

static int ca_urls(const moat_ca_t *ca, moat_pki_urls_t *urls, const moat_pki_urls_t **out, moat_err_t *err)
{
    *out = NULL;
    if (ca->row.base_url[0] == '\0')
        return 0;
    if (moat_pki_urls_from_base(ca->row.base_url, ca->row.role == MOAT_CA_ROOT, urls, err) != 0)
        return err->code;
    *out = urls;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* ca init [--intermediate] */

/* Stores a CA key + certificate as key row <keyname> and CA row <role>, with its first CRL. */
static int store_ca(moat_store_t *st, moat_ca_role_t role, const char *keyname, EVP_PKEY *key, X509 *cert,
                    int exportable, const char *base_url, moat_err_t *err)
{
    moat_store_ca_t row = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    int64_t key_id = 0;
    int rc;

    if ((rc = moat_pki_cert_to_der(cert, &der, &der_len, err)) != 0 ||
        (rc = moat_keymgr_key_add(st, keyname, key, NULL, exportable, NULL, &key_id, err)) != 0)
        goto out;
    if ((rc = moat_store_cert_install(st, key_id, der, der_len, NULL, 0, NULL, err)) != 0)
        goto out;
    row.role = role;
    row.key_id = key_id;
    row.der.data = der;
    row.der.len = der_len;
    (void)moat_strlcpy(row.base_url, base_url ? base_url : "", sizeof(row.base_url));
    rc = moat_store_ca_set(st, &row, err);
    if (rc == 0)
        rc = moat_ca_crl_refresh(st, role, cert, key, err);
out:
    moat_free(&der);
    return rc;
}

static int ca_init(moat_cli_t *cli, int argc, char **argv)
{
    const char *cn = NULL, *days_s = NULL, *alg_s = NULL, *url = NULL, *permit_l[MAX_PATTERNS];
    size_t npermit = 0;
    int exportable = 0, inter = 0, rc;
    long days;
    moat_pki_alg_t alg = MOAT_PKI_ALG_DEFAULT;
    moat_pki_urls_t urls;
    moat_store_t *st = NULL;
    moat_store_key_t clash = {0};
    moat_ca_t root = {0};
    moat_store_ca_t existing = {0};
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    moat_pki_cert_info_t ci = {0};
    moat_err_t err = {0};
    const moat_ca_role_t role = MOAT_CA_ROOT;
    const moat__km_opt_t opts[] = {
        {"--cn", &cn, NULL, NULL, NULL, 0},
        {"--days", &days_s, NULL, NULL, NULL, 0},
        {"--alg", &alg_s, NULL, NULL, NULL, 0},
        {"--url", &url, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {"--intermediate", NULL, &inter, NULL, NULL, 0},
        {"--permit", NULL, NULL, permit_l, &npermit, MAX_PATTERNS},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca init [--cn CN] [--days N] [--alg ALG] [--url BASE] [--exportable]\n"
        "       moat ca init --intermediate [--cn CN] [--days N] [--alg ALG] [--permit DOMAIN ...]",
        "Creates moat's certificate authority: a self-signed root, or with --intermediate an intermediate\n"
        "signed by the root, which then issues every certificate (the root can go offline: see\n"
        "'moat ca export-root').\n\n"
        "  --cn CN          the CA's name (default \"moat Root CA\" / \"moat Intermediate CA\")\n"
        "  --days N         validity (default 3650 for the root, 1825 for an intermediate)\n"
        "  --alg ALG        ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519\n"
        "  --url BASE       public base URL (http://ca.example.com) written into issued certificates\n"
        "                   as CRL and OCSP locations; see 'moat ca set-url'\n"
        "  --exportable     allow the CA key to be exported (needed to take the root offline)\n"
        "  --permit DOMAIN  (intermediate) name constraint: only names under DOMAIN; repeatable\n\n"
        "example: moat ca init --cn \"Example Internal CA\" --url http://ca.example.com\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    days = inter ? INTER_DAYS : ROOT_DAYS;
    if (days_s != NULL && moat__km_parse_days(days_s, &days, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (alg_s != NULL && moat_pki_alg_parse(alg_s, &alg, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (url != NULL && inter)
        return moat_cli_usage(cmd.usage, "--url applies to the whole CA: use 'moat ca set-url BASE'");
    if (npermit > 0 && !inter)
        return moat_cli_usage(cmd.usage, "--permit applies to an intermediate (--intermediate)");
    if (url != NULL && moat_pki_urls_from_base(url, true, &urls, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_ca_get(st, inter ? MOAT_CA_INTERMEDIATE : role, &existing, &err) == 0) {
        char t[64];
        moat__km_fmt_time((time_t)existing.created, t, sizeof(t));
        moat_err_set(&err, MOAT_E_EXISTS, "this store already has %s CA (created %s)",
                     inter ? "an intermediate" : "a root", t);
        moat_err_hint(&err, "'moat ca cert%s' shows it", inter ? "" : " --root");
        moat_store_ca_dispose(&existing);
        goto fail;
    } else if (err.code != MOAT_E_NOTFOUND) {
        goto fail;
    }
    moat_err_clear(&err);
    if (moat_store_key_get(st, inter ? MOAT__KM_CA_INTER_KEY : MOAT__KM_CA_ROOT_KEY, MOAT_KEY_CURRENT, &clash,
                           &err) == 0) {
        moat_err_set(&err, MOAT_E_EXISTS,
                     "a key named \"%s\" exists; moat's CA keeps its key under that name", clash.name);
        moat_err_hint(&err, "rename it: export or delete it, then import it under another name");
        goto fail;
    } else if (err.code != MOAT_E_NOTFOUND) {
        goto fail;
    }
    moat_err_clear(&err);
    if (inter && moat_ca_load(st, MOAT_CA_ROOT, 1, &root, &err) != 0)
        goto fail;
    if (moat_pki_key_generate(alg, NULL, NULL, &key, &err) != 0)
        goto fail;
    if (inter) {
        moat_pki_urls_t rurls;
        const moat_pki_urls_t *ru = NULL;
        moat_pki_intermediate_opts_t io = {cn ? cn : "moat Intermediate CA", (int)days, permit_l, npermit,
                                           NULL};
        if (ca_urls(&root, &rurls, &ru, &err) != 0)
            goto fail;
        io.urls = ru;
        if (moat_pki_ca_intermediate_new(root.cert, root.key, key, &io, &cert, &err) != 0)
            goto fail;
    } else if (moat_pki_ca_root_new(key, cn ? cn : "moat Root CA", (int)days, &cert, &err) != 0) {
        goto fail;
    }
    if (moat_pki_cert_info(cert, &ci, &err) != 0)
        goto fail;
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (store_ca(st, inter ? MOAT_CA_INTERMEDIATE : MOAT_CA_ROOT,
                 inter ? MOAT__KM_CA_INTER_KEY : MOAT__KM_CA_ROOT_KEY, key, cert, exportable,
                 inter ? root.row.base_url : url, &err) != 0 ||
        moat_store_generation_bump(st, &err) != 0 ||
        moat__km_audit(st, inter ? "ca.init-intermediate" : "ca.init", ci.subject, &err,
                       "serial %s, %s, %ld days, key exportable %s", ci.serial, ci.key_alg, days,
                       exportable ? "yes" : "no") != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat__km_commit(st, NULL, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "role", inter ? "intermediate" : "root");
        moat_json_kv_str(&j, "key_name", inter ? MOAT__KM_CA_INTER_KEY : MOAT__KM_CA_ROOT_KEY);
        moat_json_kv_bool(&j, "exportable", exportable);
        moat__km_json_cert_info(&j, &ci);
        moat_cli_served_json(cli, st, &j);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(ci.not_after, t, sizeof(t));
        printf("created the %s CA \"%s\" (%s), valid until %s\n", inter ? "intermediate" : "root", ci.subject,
               ci.key_alg, t);
        printf("  fingerprint %s\n", ci.fingerprint);
        printf("  its key is stored as \"%s\" (%sexportable)\n",
               inter ? MOAT__KM_CA_INTER_KEY : MOAT__KM_CA_ROOT_KEY, exportable ? "" : "not ");
        if (inter)
            printf("the intermediate now issues; sites send it with their certificates\n");
        else
            printf("clients trust it with: moat ca cert --root > root.pem (then add root.pem to their trust "
                   "store)\n");
        if (!inter && url == NULL)
            printf("note: no --url, so certificates from this CA name no CRL or OCSP location and clients "
                   "cannot check revocation;\n      set one with: moat ca set-url http://HOST (a site with "
                   "ca_publish: true serves them)\n");
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_pki_cert_info_dispose(&ci);
    EVP_PKEY_free(key);
    X509_free(cert);
    moat_ca_dispose(&root);
    moat_store_key_dispose(&clash);
    moat_store_close(st);
    return rc;
}

static int parse_profile(const char *s, moat_pki_profile_t *p, moat_err_t *err)
{
    *p = MOAT_PKI_PROFILE_SERVER;
    if (s != NULL && moat_pki_profile_parse(s, p, err) != 0)
        return moat_err_hint(err, "--profile is server (TLS servers) or client (people, devices)");
    return 0;
}

static int ca_sign(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *out = NULL, *prof_s = NULL, *days_s = NULL;
    moat_ca_issue_req_t r = {MOAT_PKI_PROFILE_SERVER, 0, NULL};
    unsigned char *data = NULL;
    size_t len = 0;
    char *pem = NULL;
    size_t pem_len = 0;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    moat_store_t *st = NULL;
    moat_pki_cert_info_t ci = {0};
    moat_ca_t ca = {0};
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--profile", &prof_s, NULL, NULL, NULL, 0},
        {"--days", &days_s, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca sign CSR.pem --out CERT.pem [--profile server|client] [--days N]",
        "Signs a certificate request (PKCS#10, PEM or DER) with moat's issuing CA after checking its\n"
        "signature and the profile's policy. Only the subject and the names are taken from the request.\n\n"
        "  --out FILE     where to write the certificate (PEM)\n"
        "  --profile P    server (default: serverAuth) or client (clientAuth)\n"
        "  --days N       validity (default and maximum: the profile's, 90 / 365 days)\n\n"
        "example: moat ca sign www.csr --out www.pem --days 90\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (out == NULL)
        return moat_cli_usage(cmd.usage, "--out is required");
    if (parse_profile(prof_s, &r.profile, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (days_s != NULL && moat__km_parse_days(days_s, &r.days, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_read_file(pos[0], MAX_CSR_FILE, &data, &len, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_pki_csr_parse(data, len, &csr, &err) != 0) {
        moat_err_prefix(&err, "reading %s", pos[0]);
        goto fail;
    }
    if (moat__km_open(cli, 0, &st, &err) != 0)
        goto fail;
    if (moat_ca_load_issuing(st, 1, &ca, &err) != 0)
        goto fail;
    if (ca.row.role == MOAT_CA_INTERMEDIATE) {
        /* The intermediate goes after the leaf: installing the file (or serving it) needs it. */
        X509 *inter = NULL;
        if ((chain = sk_X509_new_null()) == NULL || X509_up_ref(ca.cert) != 1) {
            moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
            goto fail;
        }
        inter = ca.cert;
        if (!sk_X509_push(chain, inter)) {
            X509_free(inter);
            moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (moat_ca_issue(st, &ca, csr, &r, &cert, &err) != 0) {
        moat_store_rollback(st);
        moat_err_prefix(&err, "%s", pos[0]);
        goto fail;
    }
    if (moat_pki_cert_info(cert, &ci, &err) != 0 ||
        moat_pki_cert_to_pem(cert, chain, &pem, &pem_len, &err) != 0 ||
        moat__km_audit(st, "ca.sign", ci.serial, &err,
                       "subject %s, profile %s, names %s, until %lld, from %s", ci.subject,
                       moat_pki_profile_name(r.profile), ci.sans, (long long)ci.not_after, pos[0]) != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat__km_commit_write(st, out, pem, pem_len, 0644, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "out", strcmp(out, "-") == 0 ? NULL : out);
        moat_json_kv_str(&j, "profile", moat_pki_profile_name(r.profile));
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(ca.row.role));
        moat_json_kv_int(&j, "chain_length", chain != NULL ? sk_X509_num(chain) : 0);
        moat__km_json_cert_info(&j, &ci);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(ci.not_after, t, sizeof(t));
        printf("signed %s (%s profile, serial %s), valid until %s: %s\n", ci.subject,
               moat_pki_profile_name(r.profile), ci.serial, t, out);
        if (chain != NULL)
            printf("  followed by moat's intermediate CA certificate, which clients need with it\n");
    }
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_pki_cert_info_dispose(&ci);
    moat_free(&data);
    moat_free(&pem);
    X509_REQ_free(csr);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    moat_ca_dispose(&ca);
    moat_store_close(st);
    return rc;
}

static int ca_issue(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *cn = NULL, *prof_s = NULL, *days_s = NULL, *alg_s = NULL, *sans_l[MAX_SANS];
    const char *o = NULL, *ou = NULL, *email = NULL;
    size_t nsans = 0;
    int exportable = 0, not_exportable = 0, rc;
    moat_ca_issue_req_t r = {MOAT_PKI_PROFILE_SERVER, 0, NULL};
    moat_pki_alg_t alg = MOAT_PKI_ALG_DEFAULT;
    char sans[8192] = "";
    moat_store_t *st = NULL;
    moat_store_key_t old = {0};
    moat_pki_cert_info_t ci = {0};
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int64_t key_id = 0;
    moat_store_blob_t chain = {0};
    size_t nchain = 0;
    moat_ca_t ca = {0};
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--cn", &cn, NULL, NULL, NULL, 0},
        {"--san", NULL, NULL, sans_l, &nsans, MAX_SANS},
        {"--profile", &prof_s, NULL, NULL, NULL, 0},
        {"--days", &days_s, NULL, NULL, NULL, 0},
        {"--alg", &alg_s, NULL, NULL, NULL, 0},
        {"--org", &o, NULL, NULL, NULL, 0},
        {"--ou", &ou, NULL, NULL, NULL, 0},
        {"--email", &email, NULL, NULL, NULL, 0},
        {"--exportable", NULL, &exportable, NULL, NULL, 0},
        {"--not-exportable", NULL, &not_exportable, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca issue NAME --cn CN [--san LIST] [--profile server|client] [--days N] [--alg ALG]\n"
        "                   [--org O] [--ou OU] [--email E] [--exportable | --not-exportable]",
        "Creates a key and its certificate from moat's CA in one step, stored as key NAME (active).\n"
        "Client keys are exportable by default: they exist to be handed to a person with\n"
        "'moat ca export-client NAME --out NAME.p12 --password-file F'. Server keys are not, unless\n"
        "--exportable.\n\n"
        "  --cn CN            the subject's common name (required); copied into the SANs when none given\n"
        "  --san LIST         subject alternative names (DNS:, IP:, email:, URI:), repeatable\n"
        "  --profile P        server (default) or client\n"
        "  --days N           validity (default and maximum: the profile's)\n"
        "  --alg ALG          key algorithm (default ec-p256)\n"
        "  --org O, --ou OU, --email E   more subject fields\n  --exportable, --not-exportable   whether "
        "'moat key export' may hand the key out later\n\n"
        "example: moat ca issue intranet --cn intranet.example.com --san DNS:intranet.example.com\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (cn == NULL)
        return moat_cli_usage(cmd.usage, "--cn is required");
    if (exportable && not_exportable)
        return moat_cli_usage(cmd.usage, "--exportable and --not-exportable contradict each other");
    if (moat__km_check_name(pos[0], &err) != 0 || parse_profile(prof_s, &r.profile, &err) != 0 ||
        (days_s != NULL && moat__km_parse_days(days_s, &r.days, &err) != 0) ||
        (alg_s != NULL && moat_pki_alg_parse(alg_s, &alg, &err) != 0))
        return moat_cli_fail(cli, &err);
    for (size_t i = 0, n = 0; i < nsans; i++) {
        int w = snprintf(sans + n, sizeof(sans) - n, "%s%s", n ? "," : "", sans_l[i]);
        if (w < 0 || (size_t)w >= sizeof(sans) - n) {
            moat_err_set(&err, MOAT_E_LIMIT, "--san: too many names");
            return moat_cli_fail(cli, &err);
        }
        n += (size_t)w;
    }
    if (r.profile == MOAT_PKI_PROFILE_CLIENT && !not_exportable)
        exportable = 1;
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &old, &err) == 0) {
        moat_err_set(&err, MOAT_E_EXISTS, "a key named \"%s\" already exists", pos[0]);
        moat_err_hint(&err, "choose another name, or renew it with 'moat key renew %s' and 'moat ca sign'",
                      pos[0]);
        goto fail;
    } else if (err.code != MOAT_E_NOTFOUND) {
        goto fail;
    }
    moat_err_clear(&err);
    if (moat_ca_load_issuing(st, 1, &ca, &err) != 0)
        goto fail;
    {
        moat_pki_subject_t subj = {cn, o, ou, NULL, NULL, NULL, email};
        if (moat_pki_key_generate(alg, NULL, NULL, &key, &err) != 0 ||
            moat_pki_csr_new(key, &subj, sans[0] ? sans : NULL, &csr, &err) != 0)
            goto fail;
    }
    nchain = moat_ca_chain(&ca, &chain); /* borrowed from ca.row */
    r.name = pos[0];
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (moat_ca_issue(st, &ca, csr, &r, &cert, &err) != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat_keymgr_key_add(st, pos[0], key, moat_pki_alg_name(alg), exportable != 0, NULL, &key_id, &err) !=
            0 ||
        moat_pki_cert_info(cert, &ci, &err) != 0 || moat_pki_cert_to_der(cert, &der, &der_len, &err) != 0 ||
        moat_store_cert_install(st, key_id, der, der_len, nchain ? &chain : NULL, nchain, NULL, &err) != 0 ||
        moat_store_generation_bump(st, &err) != 0 ||
        moat__km_audit(st, "ca.issue", ci.serial, &err,
                       "key %s, subject %s, profile %s, names %s, exportable %s", pos[0], ci.subject,
                       moat_pki_profile_name(r.profile), ci.sans, exportable ? "yes" : "no") != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat__km_commit(st, NULL, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "state", "active");
        moat_json_kv_str(&j, "profile", moat_pki_profile_name(r.profile));
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(ca.row.role));
        moat_json_kv_bool(&j, "exportable", exportable);
        moat__km_json_cert_info(&j, &ci);
        moat_cli_served_json(cli, st, &j);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(ci.not_after, t, sizeof(t));
        printf("issued \"%s\": %s (%s profile, serial %s), valid until %s\n", pos[0], ci.subject,
               moat_pki_profile_name(r.profile), ci.serial, t);
        if (r.profile == MOAT_PKI_PROFILE_CLIENT && exportable)
            printf("client keys are exportable: hand it over with\n"
                   "  moat ca export-client %s --out %s.p12 --password-file FILE\n",
                   pos[0], pos[0]);
        else
            printf("the key is %sexportable; sites use it with 'certificate: %s'\n", exportable ? "" : "not ",
                   pos[0]);
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    moat_pki_cert_info_dispose(&ci);
    moat_free(&der);
    EVP_PKEY_free(key);
    X509_REQ_free(csr);
    X509_free(cert);
    moat_ca_dispose(&ca);
    moat_store_key_dispose(&old);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

static int ca_cert(moat_cli_t *cli, int argc, char **argv)
{
    const char *out = "-";
    int der_out = 0, want_root = 0, rc;
    moat_store_t *st = NULL;
    moat_ca_t ca = {0};
    char *pem = NULL;
    size_t len = 0;
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--der", NULL, &der_out, NULL, NULL, 0},
        {"--root", NULL, &want_root, NULL, NULL, 0},
        {"--out", &out, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca cert [--der] [--root] [--out FILE]",
        "Prints the issuing CA certificate (the intermediate if there is one), or with\n"
        "--root the root that clients must trust.\n\n"
        "  --der        DER instead of PEM\n  --root       the root instead of the issuing CA\n  --out "
        "FILE   write to FILE (default: standard output)\n\n"
        "example: moat ca cert --root --out root.pem\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if ((want_root ? moat_ca_load(st, MOAT_CA_ROOT, 0, &ca, &err) : moat_ca_load_issuing(st, 0, &ca, &err)) !=
        0)
        goto fail;
    if (cli->json && strcmp(out, "-") == 0 && !der_out) {
        moat_pki_cert_info_t ci = {0};
        moat_json_t j;
        if (moat_pki_cert_info(ca.cert, &ci, &err) != 0 ||
            moat_pki_cert_to_pem(ca.cert, NULL, &pem, &len, &err) != 0) {
            moat_pki_cert_info_dispose(&ci);
            goto fail;
        }
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "role", moat_store_ca_role_name(ca.row.role));
        moat__km_json_cert_info(&j, &ci);
        moat_json_kv_str(&j, "pem", pem);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
        moat_pki_cert_info_dispose(&ci);
    } else if (der_out) {
        if (moat__km_write_file(out, ca.row.der.data, ca.row.der.len, 0644, &err) != 0)
            goto fail;
    } else if (moat_pki_cert_to_pem(ca.cert, NULL, &pem, &len, &err) != 0 ||
               moat__km_write_file(out, pem, len, 0644, &err) != 0) {
        goto fail;
    }
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_free(&pem);
    moat_ca_dispose(&ca);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

static int ca_export_client(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *out = NULL, *pwfile = NULL;
    int legacy = 0, force = 0, rc;
    moat_store_t *st = NULL;
    moat_store_issued_t is = {0};
    moat_store_key_t k = {0};
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--legacy", NULL, &legacy, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca export-client NAME --out FILE.p12 [--password-file F] [--legacy] [--force]",
        "Writes the client certificate NAME (from 'moat ca issue NAME --profile client') with its key and\n"
        "the CA chain as a PKCS#12 bundle that browsers, curl and operating systems import. Audited.\n\n"
        "  --out FILE.p12     where to write it (mode 0600)\n"
        "  --password-file F  the password that protects it (first line of F); without it, asked twice\n"
        "                     on the terminal\n"
        "  --legacy           PBE-SHA1-3DES, for old Windows and macOS keychains and appliances\n"
        "  --force            overwrite an existing FILE.p12\n\n"
        "example: moat ca export-client alice --out alice.p12 --password-file pw.txt\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (out == NULL)
        return moat_cli_usage(cmd.usage, "--out is required");
    if (moat__km_check_new_file(out, force, "--force", &err) != 0 || moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &k, &err) != 0 ||
        moat_store_issued_get(st, pos[0], &is, &err) != 0 || strcmp(is.name, pos[0]) != 0) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "moat's CA has issued no certificate named \"%s\"", pos[0]);
        moat_err_hint(&err,
                      "issue one with 'moat ca issue %s --cn CN --profile client'; 'moat ca list' shows them",
                      pos[0]);
        goto fail;
    }
    if (strcmp(is.profile, "client") != 0) {
        moat_err_set(&err, MOAT_E_STATE, "\"%s\" is a %s certificate, not a client certificate", pos[0],
                     is.profile);
        moat_err_hint(&err, "a server key is exported with 'moat key export %s' (if exportable)", pos[0]);
        goto fail;
    }
    if (is.revoked != 0) {
        moat_err_set(&err, MOAT_E_STATE, "the certificate of \"%s\" (serial %s) is revoked", pos[0],
                     is.serial);
        moat_err_hint(&err, "issue a new one under another name");
        goto fail;
    }
    if (moat__km_export_p12(st, &k, out, pwfile, legacy, "ca.export-client", &err) != 0)
        goto fail;
    if (!cli->quiet)
        printf("wrote the client certificate \"%s\" with its key and CA chain to %s (PKCS#12%s)\n", pos[0],
               out, legacy ? ", legacy encryption" : "");
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_store_issued_dispose(&is);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc;
}

static int ca_export_root(moat_cli_t *cli, int argc, char **argv)
{
    const char *out = NULL, *pwfile = NULL;
    int legacy = 0, remove = 0, rc;
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    moat_store_ca_t inter = {0};
    moat_ca_t root = {0};
    unsigned char *p12 = NULL;
    size_t p12_len = 0;
    char pw[1024];
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--remove-key", NULL, &remove, NULL, NULL, 0},
        {"--legacy", NULL, &legacy, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca export-root --out FILE.p12 --password-file F [--remove-key] [--legacy]",
        "Writes the root CA's key and certificate as PKCS#12 (only if the root was created with\n"
        "--exportable). With --remove-key the root key then leaves the store: the root goes offline,\n"
        "which needs an intermediate to keep issuing ('moat ca init --intermediate'). Keep the file\n"
        "and its password somewhere safe and offline. Audited.\n\n"
        "  --out FILE.p12      where to write it (0600)\n  --password-file F   the file's "
        "password (first line of F)\n  --remove-key        take the root key out of the store once written\n "
        " --legacy            3DES and SHA-1, for old Windows and appliances\n\n"
        "example: moat ca export-root --out root.p12 --password-file pw.txt --remove-key\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (out == NULL || pwfile == NULL)
        return moat_cli_usage(cmd.usage, "%s is required", out == NULL ? "--out" : "--password-file");
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_ca_load(st, MOAT_CA_ROOT, 1, &root, &err) != 0)
        goto fail;
    if (moat_store_key_get_by_id(st, root.row.key_id, &k, &err) != 0)
        goto fail;
    if (!k.exportable) {
        moat_err_set(&err, MOAT_E_PERM,
                     "the root CA key is not exportable: it was created without --exportable");
        moat_err_hint(&err, "it can only stay in this store; a root meant to go offline is made with "
                            "'moat ca init --exportable'");
        goto fail;
    }
    if (remove) {
        if (moat_store_ca_get(st, MOAT_CA_INTERMEDIATE, &inter, &err) != 0) {
            if (err.code == MOAT_E_NOTFOUND) {
                moat_err_set(&err, MOAT_E_STATE,
                             "the root key cannot leave: there is no intermediate to issue");
                moat_err_hint(&err, "create one first: moat ca init --intermediate");
            }
            goto fail;
        }
    }
    if (moat__km_password(pwfile, "Export password: ", 1, 0, pw, sizeof(pw), &err) != 0)
        goto fail;
    if (moat_pki_pkcs12_export(root.key, root.cert, NULL, "moat root CA", pw, legacy, &p12, &p12_len, &err) !=
        0)
        goto fail;
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (moat__km_audit(st, "ca.export-root", k.name, &err, "to %s%s", out, remove ? ", key removed" : "") !=
        0)
        goto rollback;
    if (remove) {
        /* The key leaves the store: its only copy is the file, so the file comes first. */
        moat_store_ca_t row = root.row;
        row.key_id = 0;
        if (moat__km_write_file(out, p12, p12_len, 0600, &err) != 0)
            goto rollback;
        if (moat_store_ca_set(st, &row, &err) != 0 || moat_store_key_delete(st, k.name, &err) != 0 ||
            moat_store_generation_bump(st, &err) != 0) {
            moat_store_rollback(st);
            (void)unlink(out); /* the export did not happen: the key stays in the store */
            goto fail;
        }
        if (moat__km_commit(st, out, &err) != 0)
            goto fail;
    } else if (moat__km_commit_write(st, out, p12, p12_len, 0600, &err) != 0) {
        goto fail;
    }
    if (!cli->quiet) {
        printf("wrote the root CA key and certificate to %s (PKCS#12)\n", out);
        if (remove)
            printf("the root key is no longer in the store: keep %s and its password offline\n", out);
    }
    rc = remove ? moat_cli_served_report(cli, st) : MOAT_EXIT_OK;
    goto done;
rollback:
    moat_store_rollback(st); /* nothing was written at <out>: a file already there stays */
fail:
    rc = moat_cli_fail(cli, &err);
done:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&p12, p12_len);
    moat_store_ca_dispose(&inter);
    moat_store_key_dispose(&k);
    moat_ca_dispose(&root);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

static int ca_list(moat_cli_t *cli, int argc, char **argv)
{
    const char *exp_s = NULL;
    int revoked_only = 0, rc;
    long exp_days = 0;
    moat_store_t *st = NULL;
    moat_store_issued_list_t il = {0};
    time_t now = time(NULL);
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--revoked", NULL, &revoked_only, NULL, NULL, 0},
        {"--expiring", &exp_s, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca list [--revoked] [--expiring DAYS] [--json]",
        "Lists every certificate moat's CA issued, newest first.\n\n"
        "  --revoked         only revoked certificates\n"
        "  --expiring DAYS   only those expiring within DAYS days (already expired too)\n"
        "  --json            an array: serial, name, subject, profile, issuing_ca, dates, revocation\n\n"
        "example: moat ca list --expiring 30\n",
        opts,
        NULL,
        0,
        0};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (exp_s != NULL && moat_parse_long(exp_s, 0, 36500, &exp_days) != 0)
        return moat_cli_usage(cmd.usage, "--expiring takes a number of days, not \"%s\"", exp_s);
    if (moat__km_open(cli, MOAT_STORE_NO_MASTER_KEY | MOAT_STORE_READONLY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_issued_list(st, revoked_only ? MOAT_ISSUED_REVOKED_ONLY : 0,
                               exp_s != NULL ? (int64_t)now + exp_days * 86400 + 1 : 0, &il, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    if (cli->json) {
        moat_json_t j;
        char b[MOAT_PKI_TIME_SIZE];
        moat_json_init(&j, stdout, 1);
        moat_json_arr_begin(&j);
        for (size_t i = 0; i < il.n; i++) {
            const moat_store_issued_t *x = &il.items[i];
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "serial", x->serial);
            moat_json_kv_str(&j, "name", x->name[0] ? x->name : NULL);
            moat_json_kv_str(&j, "subject", x->subject);
            moat_json_kv_str(&j, "profile", x->profile);
            moat_json_kv_str(&j, "issuing_ca",
                             moat_store_ca_role_name(x->issuer)); /* "issuer" is a DN elsewhere */
            moat_json_kv_str(&j, "issued", moat_pki_time_format((time_t)x->issued, b));
            moat_json_kv_str(&j, "not_after", moat_pki_time_format((time_t)x->not_after, b));
            moat_json_kv_int(&j, "days_left", moat__km_days_left((time_t)x->not_after, now));
            moat_json_kv_bool(&j, "revoked", x->revoked != 0);
            moat_json_key(&j, "revoked_at");
            if (x->revoked != 0)
                moat_json_str(&j, moat_pki_time_format((time_t)x->revoked, b));
            else
                moat_json_null(&j);
            moat_json_kv_str(&j, "reason", x->revoked != 0 ? moat_pki_reason_name(x->reason) : NULL);
            moat_json_obj_end(&j);
        }
        moat_json_arr_end(&j);
        moat_json_finish(&j);
    } else if (il.n == 0) {
        printf("no certificates%s\n", revoked_only ? " revoked" : exp_s ? " expiring then" : " issued yet");
    } else {
        printf("%-40s %-16s %-7s %-10s %-12s %s\n", "SERIAL", "NAME", "PROFILE", "NOT AFTER", "STATUS",
               "SUBJECT");
        for (size_t i = 0; i < il.n; i++) {
            const moat_store_issued_t *x = &il.items[i];
            char t[64], status[32];
            moat__km_fmt_time((time_t)x->not_after, t, sizeof(t));
            t[10] = '\0';
            if (x->revoked != 0)
                snprintf(status, sizeof(status), "revoked");
            else if (x->not_after < (int64_t)now)
                snprintf(status, sizeof(status), "expired");
            else
                snprintf(status, sizeof(status), "%ld days", moat__km_days_left((time_t)x->not_after, now));
            printf("%-40s %-16s %-7s %-10s %-12s %s\n", x->serial, x->name[0] ? x->name : "-", x->profile, t,
                   status, x->subject);
        }
    }
    moat_store_issued_list_dispose(&il);
    moat_store_close(st);
    return MOAT_EXIT_OK;
}

static int ca_set_url(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1];
    moat_pki_urls_t urls;
    moat_store_t *st = NULL;
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {{0}};
    const moat__km_cmd_t cmd = {
        "moat ca set-url BASE",
        "Sets the public base URL (http://ca.example.com) under which a site with 'ca_publish: true'\n"
        "serves the CA certificates, CRL and OCSP. Certificates issued from now on point there (CRL\n"
        "distribution point, OCSP and CA issuers); earlier ones keep what they have.\n\n"
        "example: moat ca set-url http://ca.example.com\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat_pki_urls_from_base(pos[0], true, &urls, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_begin(st, &err) != 0)
        goto fail;
    rc = moat_store_ca_set_url(st, pos[0], &err);
    if (rc == MOAT_E_NOTFOUND)
        moat_ca_none(&err);
    if (rc != 0 || moat_store_generation_bump(st, &err) != 0 ||
        moat__km_audit(st, "ca.set-url", pos[0], &err, "CRL %s, OCSP %s", urls.crl, urls.ocsp) != 0) {
        moat_store_rollback(st);
        goto fail;
    }
    if (moat__km_commit(st, NULL, &err) != 0)
        goto fail;
    if (!cli->quiet)
        printf("CA base URL set to %s\n  OCSP %s\n  CRL  %s\n", pos[0], urls.ocsp, urls.crl);
    rc = moat_cli_served_report(cli, st);
    moat_store_close(st);
    return rc;
fail:
    moat_store_close(st);
    return moat_cli_fail(cli, &err);
}

static int ca_policy(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *max_s = NULL, *allow_l[MAX_PATTERNS];
    size_t nallow = 0;
    int any = 0, rc;
    long max_days = 0;
    moat_pki_profile_t prof;
    moat_store_t *st = NULL;
    moat_ca_policy_t pol;
    moat_err_t err = {0};
    char key[64], val[4096] = "";
    const moat__km_opt_t opts[] = {
        {"--max-days", &max_s, NULL, NULL, NULL, 0},
        {"--allow", NULL, NULL, allow_l, &nallow, MAX_PATTERNS},
        {"--allow-any", NULL, &any, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca policy server|client [--max-days N] [--allow PATTERN ...] [--allow-any] [--json]",
        "Shows or sets the issuing policy of a profile: the longest validity, and the names a request\n"
        "may carry (CN, e-mail and every SAN). A request outside the policy is refused, naming the name.\n\n"
        "  --max-days N     longest validity (defaults: server 90, client 365)\n"
        "  --allow PATTERN  allowed names: www.example.com, *.example.com (any depth), *@example.com;\n"
        "                   repeatable or comma-separated; replaces the list\n"
        "  --allow-any      remove the name restriction\n"
        "  --json           the policy as one object\n\n"
        "example: moat ca policy server --max-days 90 --allow \"*.example.com\"\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat_pki_profile_parse(pos[0], &prof, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (any && nallow > 0)
        return moat_cli_usage(cmd.usage, "--allow and --allow-any contradict each other");
    if (max_s != NULL && moat_parse_long(max_s, 1, 36500, &max_days) != 0)
        return moat_cli_usage(cmd.usage, "--max-days takes 1 to 36500 days, not \"%s\"", max_s);
    for (size_t i = 0, n = 0; i < nallow; i++) {
        int w = snprintf(val + n, sizeof(val) - n, "%s%s", n ? "," : "", allow_l[i]);
        if (w < 0 || (size_t)w >= sizeof(val) - n)
            return moat_cli_usage(cmd.usage, "--allow: too many patterns");
        n += (size_t)w;
    }
    if (moat__km_open(cli, (max_s || nallow || any) ? 0 : MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (max_s || nallow || any) {
        char num[32];
        if (moat_store_begin(st, &err) != 0)
            goto fail;
        snprintf(num, sizeof(num), "%ld", max_days);
        snprintf(key, sizeof(key), "ca.policy.%s.max_days", moat_pki_profile_name(prof));
        if (max_s != NULL && moat_store_setting_set(st, key, num, &err) != 0)
            goto rollback;
        snprintf(key, sizeof(key), "ca.policy.%s.names", moat_pki_profile_name(prof));
        if (nallow > 0 && moat_store_setting_set(st, key, val, &err) != 0)
            goto rollback;
        if (any) {
            rc = moat_store_setting_delete(st, key, &err);
            if (rc != 0 && rc != MOAT_E_NOTFOUND)
                goto rollback;
            moat_err_clear(&err);
        }
        if (moat__km_audit(st, "ca.policy", moat_pki_profile_name(prof), &err, "max days %s, names %s",
                           max_s ? max_s : "unchanged",
                           any      ? "any"
                           : nallow ? val
                                    : "unchanged") != 0)
            goto rollback;
        if (moat__km_commit(st, NULL, &err) != 0)
            goto fail;
    }
    if (moat_ca_policy_load(st, prof, &pol, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "profile", moat_pki_profile_name(prof));
        moat_json_kv_int(&j, "max_days", pol.p.max_days);
        moat_json_key(&j, "allow");
        if (pol.p.npatterns == 0) {
            moat_json_null(&j);
        } else {
            moat_json_arr_begin(&j);
            for (size_t i = 0; i < pol.p.npatterns; i++)
                moat_json_str(&j, pol.patterns[i]);
            moat_json_arr_end(&j);
        }
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else {
        printf("profile %s: at most %d days; names: ", moat_pki_profile_name(prof), pol.p.max_days);
        if (pol.p.npatterns == 0)
            printf("any\n");
        for (size_t i = 0; i < pol.p.npatterns; i++)
            printf("%s%s", pol.patterns[i], i + 1 < pol.p.npatterns ? ", " : "\n");
    }
    moat_store_close(st);
    return MOAT_EXIT_OK;
rollback:
    moat_store_rollback(st);
fail:
    moat_store_close(st);
    return moat_cli_fail(cli, &err);
}

int moat_cli_ca(moat_cli_t *cli, int argc, char **argv)
{
    static const moat__km_sub_t subs[] = {
        {"init", "create the root CA (or with --intermediate, an intermediate)", ca_init},
        {"sign", "sign a certificate request", ca_sign},
        {"issue", "create a key and its certificate in one step", ca_issue},
        {"cert", "print the issuing (or root) CA certificate", ca_cert},
        {"list", "list the certificates the CA issued", ca_list},
        {"revoke", "revoke a certificate and re-sign the CRL", moat__km_ca_revoke_cmd},
        {"crl", "print the current certificate revocation list", moat__km_ca_crl_cmd},
        {"export-client", "write a client certificate and key as PKCS#12", ca_export_client},
        {"export-root", "export the root key (and take it offline)", ca_export_root},
        {"set-url", "set the public base URL for CRL, OCSP and CA certificates", ca_set_url},
        {"policy", "show or set a profile's validity and name policy", ca_policy},
    };
    return moat__km_dispatch(cli, "ca", "moat's certificate authority", subs, MOAT_ARRAY_LEN(subs), argc,
                             argv);
}
