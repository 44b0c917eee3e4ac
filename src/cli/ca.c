/*
 * moat ca: the in-house certificate authority. A root (ca init), optionally an intermediate that then
 * issues (ca init --intermediate), signing of outside requests (ca sign), key + certificate in one step
 * (ca issue), client bundles (ca export-client), revocation with a CRL re-signed on every change, the
 * inventory (ca list) and per-profile policies. Each change is one store transaction.
 */
#include "cli/groups.h"
#include "ca/ca.h"
#include "cli/keymgr_int.h"

#include <openssl/crypto.h>

#include <limits.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

#define MAX_CSR_FILE (1L * 1024 * 1024)
#define MAX_SANS MOAT_CA_MAX_SANS
#define MAX_PATTERNS 64

/* ------------------------------------------------------------------------------------------------ */
/* ca init [--intermediate] */

static int ca_init(moat_cli_t *cli, int argc, char **argv)
{
    const char *cn = NULL, *days_s = NULL, *alg_s = NULL, *url = NULL, *permit_l[MAX_PATTERNS];
    size_t npermit = 0;
    int exportable = 0, inter = 0, rc;
    moat_ca_init_req_t req = {0};
    moat_ca_init_res_t res = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_err_t err = {0};
    const char *key_name;
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
    req.role = inter ? MOAT_CA_INTERMEDIATE : MOAT_CA_ROOT;
    req.cn = cn;
    req.alg = MOAT_PKI_ALG_DEFAULT;
    req.url = url;
    req.exportable = exportable != 0;
    req.permit = permit_l;
    req.npermit = npermit;
    if ((days_s != NULL && moat__km_parse_days(days_s, &req.days, &err) != 0) ||
        (alg_s != NULL && moat_pki_alg_parse(alg_s, &req.alg, &err) != 0))
        return moat_cli_fail(cli, &err);
    req.cfg = cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0 || moat_ca_init(st, &req, &res, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    moat_cli_change_notes(cli, &res.notes);
    key_name = moat_ca_key_name(req.role);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "role", inter ? "intermediate" : "root");
        moat_json_kv_str(&j, "key_name", key_name);
        moat_json_kv_bool(&j, "exportable", exportable);
        moat__km_json_cert_info(&j, &res.ci);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(res.ci.not_after, t, sizeof(t));
        printf("created the %s CA \"%s\" (%s), valid until %s\n", inter ? "intermediate" : "root",
               res.ci.subject, res.ci.key_alg, t);
        printf("  fingerprint %s\n", res.ci.fingerprint);
        printf("  its key is stored as \"%s\" (%sexportable)\n", key_name, exportable ? "" : "not ");
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
out:
    moat_ca_init_res_dispose(&res);
    moat_config_unref(cfg);
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
    moat_store_t *st = NULL;
    moat_ca_signed_t s = {0};
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
    if (moat__km_open(cli, 0, &st, &err) != 0 || moat_ca_sign(st, csr, &r, pos[0], &s, &err) != 0 ||
        moat_pki_cert_to_pem(s.cert, s.chain, &pem, &pem_len, &err) != 0)
        goto fail;
    if (moat__km_write_file(out, pem, pem_len, 0644, &err) != 0) {
        moat_err_hint(&err, "the certificate is recorded in the store and its audit log; only the file is "
                            "missing: free the space or fix the path and sign again");
        goto fail;
    }
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "out", strcmp(out, "-") == 0 ? NULL : out);
        moat_json_kv_str(&j, "profile", moat_pki_profile_name(r.profile));
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(s.issuing));
        moat_json_kv_int(&j, "chain_length", sk_X509_num(s.chain));
        moat__km_json_cert_info(&j, &s.ci);
        moat_cli_json_end(&j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(s.ci.not_after, t, sizeof(t));
        printf("signed %s (%s profile, serial %s), valid until %s: %s\n", s.ci.subject,
               moat_pki_profile_name(r.profile), s.ci.serial, t, out);
        if (sk_X509_num(s.chain) > 0)
            printf("  followed by moat's intermediate CA certificate, which clients need with it\n");
    }
    rc = MOAT_EXIT_OK;
    goto done;
fail:
    rc = moat_cli_fail(cli, &err);
done:
    moat_ca_signed_dispose(&s);
    moat_free(&data);
    moat_free(&pem);
    X509_REQ_free(csr);
    moat_store_close(st);
    return rc;
}

static int ca_issue(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *cn = NULL, *prof_s = NULL, *days_s = NULL, *alg_s = NULL, *sans_l[MAX_SANS];
    const char *o = NULL, *ou = NULL, *email = NULL;
    size_t nsans = 0;
    int exportable = 0, not_exportable = 0, rc;
    moat_ca_issue_key_req_t r = {0};
    moat_ca_signed_t s = {0};
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
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
    r.alg = MOAT_PKI_ALG_DEFAULT;
    if (moat__km_check_name(pos[0], &err) != 0 || parse_profile(prof_s, &r.issue.profile, &err) != 0 ||
        (days_s != NULL && moat__km_parse_days(days_s, &r.issue.days, &err) != 0) ||
        (alg_s != NULL && moat_pki_alg_parse(alg_s, &r.alg, &err) != 0))
        return moat_cli_fail(cli, &err);
    r.name = pos[0];
    r.subject = (moat_pki_subject_t){cn, o, ou, NULL, NULL, NULL, email};
    r.sans = sans_l;
    r.nsans = nsans;
    r.exportable = exportable ? 1 : not_exportable ? 0 : -1;
    r.cfg = cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, 0, &st, &err) != 0 || moat_ca_issue_key(st, &r, &s, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    moat_cli_change_notes(cli, &s.notes);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "state", "active");
        moat_json_kv_str(&j, "profile", moat_pki_profile_name(r.issue.profile));
        moat_json_kv_str(&j, "issuing_ca", moat_store_ca_role_name(s.issuing));
        moat_json_kv_bool(&j, "exportable", s.exportable);
        moat__km_json_cert_info(&j, &s.ci);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        char t[64];
        moat__km_fmt_time(s.ci.not_after, t, sizeof(t));
        printf("issued \"%s\": %s (%s profile, serial %s), valid until %s\n", pos[0], s.ci.subject,
               moat_pki_profile_name(r.issue.profile), s.ci.serial, t);
        if (r.issue.profile == MOAT_PKI_PROFILE_CLIENT && s.exportable)
            printf("client keys are exportable: hand it over with\n"
                   "  moat ca export-client %s --out %s.p12 --password-file FILE\n",
                   pos[0], pos[0]);
        else
            printf("the key is %sexportable; sites use it with 'certificate: %s'\n",
                   s.exportable ? "" : "not ", pos[0]);
    }
    rc = moat_cli_served_report(cli, st);
out:
    moat_ca_signed_dispose(&s);
    moat_config_unref(cfg);
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
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "role", moat_store_ca_role_name(ca.row.role));
        moat__km_json_cert_info(&j, &ci);
        moat_json_kv_str(&j, "pem", pem);
        moat_cli_json_end(&j);
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
    static const moat__km_export_t ex = {
        "moat ca export-client NAME --out FILE.p12 [--password-file F] [--legacy] [--force]",
        "Writes the client certificate NAME (from 'moat ca issue NAME --profile client') with its key and\n"
        "the CA chain as a PKCS#12 bundle that browsers, curl and operating systems import. Audited.\n\n"
        "  --out FILE.p12     where to write it (mode 0600)\n"
        "  --password-file F  the password that protects it (first line of F); without it, asked twice\n"
        "                     on the terminal\n"
        "  --legacy           PBE-SHA1-3DES, for old Windows and macOS keychains and appliances\n"
        "  --force            overwrite an existing FILE.p12\n\n"
        "example: moat ca export-client alice --out alice.p12 --password-file pw.txt\n",
        moat_ca_client_key,
        "ca.export-client",
        {"wrote the client certificate", "with its key and CA chain", ""}};
    return moat__km_export_cmd(cli, &ex, argc, argv);
}

/* The export password: from --password-file, else asked twice on the terminal. */
static int export_password(void *arg, char *out, size_t outsz, moat_err_t *err)
{
    return moat__km_password(arg, "Export password: ", 1, 0, out, outsz, err);
}

static int ca_export_root(moat_cli_t *cli, int argc, char **argv)
{
    const char *out = NULL, *pwfile = NULL;
    int legacy = 0, remove = 0, rc;
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_ca_export_root_req_t req = {0};
    moat_plan_notes_t notes;
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
    req.out = out;
    req.password = export_password;
    req.password_arg = (void *)pwfile;
    req.legacy = legacy != 0;
    req.remove_key = remove != 0;
    req.cfg = cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, 0, &st, &err) != 0 || moat_ca_export_root(st, &req, &notes, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    moat_cli_change_notes(cli, &notes);
    if (!cli->quiet) {
        printf("wrote the root CA key and certificate to %s (PKCS#12)\n", out);
        if (remove)
            printf("the root key is no longer in the store: keep %s and its password offline\n"
                   "(it comes back with: moat ca import-root %s --password-file F)\n",
                   out, out);
    }
    rc = remove ? moat_cli_served_report(cli, st) : MOAT_EXIT_OK;
out:
    moat_config_unref(cfg);
    moat_store_close(st);
    return rc;
}

static int ca_import_root(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *pwfile = NULL;
    unsigned char *data = NULL;
    char pw[1024] = "";
    moat_store_t *st = NULL;
    moat_config_t *cfg = NULL;
    moat_ca_import_root_req_t req = {0};
    moat_ca_import_root_res_t res = {0};
    moat_err_t err = {0};
    int rc;
    const moat__km_opt_t opts[] = {
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        "moat ca import-root FILE.p12 [--password-file F]",
        "Brings the root CA back online after 'moat ca export-root --remove-key': the key in FILE.p12\n"
        "must be the key of this store's root certificate. It becomes the root's key again (a key\n"
        "imported earlier as \"moat-ca-root\" is taken, never kept twice), and the root's CRL is\n"
        "re-signed at once, so the intermediate's revocation status is fresh. Audited.\n\n"
        "  --password-file F   the file's password (first line of F); without it, asked on the terminal\n\n"
        "example: moat ca import-root root.p12 --password-file pw.txt\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (moat__km_read_file(pos[0], MOAT_PKI_MAX_IMPORT_BYTES, &data, &req.len, &err) != 0 ||
        moat__km_password(pwfile, "Password: ", 0, 1, pw, sizeof(pw), &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    req.data = data;
    req.file = pos[0];
    req.password = pw;
    req.cfg = cfg = moat_cli_change_config(cli);
    if (moat__km_open(cli, 0, &st, &err) != 0 || moat_ca_import_root(st, &req, &res, &err) != 0) {
        rc = moat_cli_fail(cli, &err);
        goto out;
    }
    moat_cli_change_notes(cli, &res.notes);
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "role", "root");
        moat_json_kv_str(&j, "key_name", MOAT_CA_ROOT_KEY);
        moat_json_kv_bool(&j, "adopted", res.adopted);
        moat_json_kv_bool(&j, "crl_resigned", 1);
        moat__km_json_cert_info(&j, &res.ci);
        moat_cli_json_end_served(cli, st, &j);
    } else if (!cli->quiet) {
        printf("the root CA \"%s\" is back online: its key is \"%s\"%s and its CRL is re-signed\n",
               res.ci.subject, MOAT_CA_ROOT_KEY, res.adopted ? " (the key imported earlier)" : "");
    }
    rc = moat_cli_served_report(cli, st);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_ca_import_root_res_dispose(&res);
    moat_config_unref(cfg);
    moat_free(&data);
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
    if (moat__km_open(cli, 0, &st, &err) != 0 || moat_ca_set_url(st, pos[0], &urls, &err) != 0) {
        moat_store_close(st);
        return moat_cli_fail(cli, &err);
    }
    if (!cli->quiet)
        printf("CA base URL set to %s\n  OCSP %s\n  CRL  %s\n", pos[0], urls.ocsp, urls.crl);
    rc = moat_cli_served_report(cli, st);
    moat_store_close(st);
    return rc;
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
    if (moat__km_open(cli, (max_s || nallow || any) ? 0 : MOAT_STORE_NO_MASTER_KEY, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (max_s || nallow || any) {
        moat_ca_policy_change_t c = {max_days, allow_l, nallow, any != 0};
        if (moat_ca_policy_set(st, prof, &c, &err) != 0)
            goto fail;
    }
    if (moat_ca_policy_load(st, prof, &pol, &err) != 0)
        goto fail;
    if (cli->json) {
        moat_json_t j;
        moat_cli_json_begin(&j);
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
        moat_cli_json_end(&j);
    } else {
        printf("profile %s: at most %d days; names: ", moat_pki_profile_name(prof), pol.p.max_days);
        if (pol.p.npatterns == 0)
            printf("any\n");
        for (size_t i = 0; i < pol.p.npatterns; i++)
            printf("%s%s", pol.patterns[i], i + 1 < pol.p.npatterns ? ", " : "\n");
    }
    moat_store_close(st);
    return MOAT_EXIT_OK;
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
        {"import-root", "bring an offline root key back", ca_import_root},
        {"set-url", "set the public base URL for CRL, OCSP and CA certificates", ca_set_url},
        {"policy", "show or set a profile's validity and name policy", ca_policy},
    };
    return moat__km_dispatch(cli, "ca", "moat's certificate authority", subs, MOAT_ARRAY_LEN(subs), argc,
                             argv);
}
