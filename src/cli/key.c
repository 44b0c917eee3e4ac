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
/* Shared by new and renew: generate, build the request, store it, write it. */

typedef struct progress {
    const char *alg;
    unsigned long tested;
    int shown;
} progress_t;

static int on_progress(void *arg, int phase)
{
    progress_t *p = arg;
    if (phase == 0 && (++p->tested % 8) != 0)
        return 1;
    fprintf(stderr, "\rgenerating %s key: %lu candidates tested%s", p->alg, p->tested,
            phase == 2 ? ", prime found" : "              ");
    fflush(stderr);
    p->shown = 1;
    return 1;
}

static int generate(moat_pki_alg_t alg, EVP_PKEY **key, moat_err_t *err)
{
    progress_t p = {moat_pki_alg_name(alg), 0, 0};
    int rsa = alg == MOAT_PKI_ALG_RSA_2048 || alg == MOAT_PKI_ALG_RSA_3072 || alg == MOAT_PKI_ALG_RSA_4096;
    int tty = rsa && isatty(STDERR_FILENO);
    int rc;

    if (tty) {
        fprintf(stderr, "generating %s key (this can take a while)...", p.alg);
        fflush(stderr);
    }
    rc = moat_pki_key_generate(alg, tty ? on_progress : NULL, &p, key, err);
    if (tty)
        fprintf(stderr, "\rgenerating %s key: %s                                \n", p.alg,
                rc == 0 ? "done" : "failed");
    return rc;
}

/* A new key and its request, ready for the store. */
typedef struct fresh {
    EVP_PKEY *key;
    unsigned char *csr_der;
    size_t csr_der_len;
    char *csr_pem;
    size_t csr_pem_len;
} fresh_t;

static void fresh_dispose(fresh_t *f)
{
    EVP_PKEY_free(f->key);
    moat_free(&f->csr_der);
    moat_free(&f->csr_pem);
    memset(f, 0, sizeof(*f));
}

static int fresh_make(moat_pki_alg_t alg, const moat_pki_subject_t *subj, const char *sans, fresh_t *f,
                      moat_err_t *err)
{
    X509_REQ *csr = NULL;
    int rc;
    memset(f, 0, sizeof(*f));
    if ((rc = generate(alg, &f->key, err)) != 0)
        return rc;
    if ((rc = moat_pki_csr_new(f->key, subj, sans, &csr, err)) != 0 ||
        (rc = moat_pki_csr_to_der(csr, &f->csr_der, &f->csr_der_len, err)) != 0 ||
        (rc = moat_pki_csr_to_pem(csr, &f->csr_pem, &f->csr_pem_len, err)) != 0) {
        X509_REQ_free(csr);
        fresh_dispose(f);
        return rc;
    }
    X509_REQ_free(csr);
    return 0;
}

/* Adds the fresh key as pending <name> (setting the pending key <replace_id> aside, so that its certificate
 * can still be installed), audits, writes the request file, commits. */
static int fresh_store(moat_store_t *st, const char *name, const char *algname, int exportable, fresh_t *f,
                       const char *csr_out, const char *action, int64_t replace_id, moat_err_t *err)
{
    moat_store_blob_t csr;
    char fpr[MOAT_PKI_FINGERPRINT_SIZE] = "";
    int rc;

    if (moat_store_begin(st, err) != 0)
        return err->code;
    if (replace_id != 0 && (rc = moat_store_key_set_aside(st, replace_id, err)) != 0)
        goto fail;
    csr.data = f->csr_der; /* borrowed from <f> */
    csr.len = f->csr_der_len;
    if ((rc = moat_keymgr_key_add(st, name, f->key, algname, exportable != 0, &csr, NULL, err)) != 0)
        goto fail;
    if (moat_pki_pubkey_fingerprint(f->key, fpr, err) != 0)
        goto fail;
    if ((rc = moat__km_audit(st, action, name, err, "algorithm %s, exportable %s, key %s", algname,
                             exportable ? "yes" : "no", fpr)) != 0)
        goto fail;
    return moat__km_commit_write(st, csr_out, f->csr_pem, f->csr_pem_len, 0644, err);
fail:
    moat_store_rollback(st);
    return err->code;
}

static void warn_alg(moat_pki_alg_t alg)
{
    if (alg == MOAT_PKI_ALG_ED25519)
        fputs("moat: warning: browsers do not accept ed25519 certificates for servers; use it for "
              "clients and internal tools, or choose ec-p256\n",
              stderr);
}

static void print_next(const moat_cli_t *cli, const char *name, const char *csr_out, const fresh_t *f,
                       const char *what, int exportable)
{
    if (cli->json) {
        /* The request is in the result: standard output carries one JSON document. */
        char alg[32], fpr[MOAT_PKI_FINGERPRINT_SIZE] = "";
        moat_err_t e = {0};
        moat_json_t j;
        moat_pki_key_describe(f->key, alg, sizeof(alg));
        if (moat_pki_pubkey_fingerprint(f->key, fpr, &e) != 0)
            fpr[0] = '\0';
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", name);
        moat_json_kv_str(&j, "state", "pending");
        moat_json_kv_bool(&j, "renewal", strcmp(what, "new") != 0);
        moat_json_kv_str(&j, "algorithm", alg);
        moat_json_kv_bool(&j, "exportable", exportable);
        moat_json_kv_str(&j, "key_fingerprint", fpr[0] ? fpr : NULL);
        moat_json_kv_str(&j, "csr_out", csr_out);
        moat_json_kv_str(&j, "csr", f->csr_pem);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
        return;
    }
    if (csr_out != NULL) {
        if (!cli->quiet)
            printf("%s key \"%s\" is pending; its request is in %s\n"
                   "next: have it signed (moat ca sign %s --out %s.pem, or any CA), then:\n"
                   "      moat cert install %s %s.pem\n",
                   what, name, csr_out, csr_out, name, name, name);
        return;
    }
    fwrite(f->csr_pem, 1, f->csr_pem_len, stdout);
    if (!cli->quiet)
        fprintf(stderr,
                "moat: %s key \"%s\" is pending; the request is above (--csr-out FILE writes it to a file)\n"
                "      have it signed, then: moat cert install %s CERT.pem\n",
                what, name, name);
}

static int join_sans(const char **list, size_t n, char *out, size_t outsz, moat_err_t *err)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, outsz - o, "%s%s", o ? "," : "", list[i]);
        if (w < 0 || (size_t)w >= outsz - o)
            return moat_err_set(err, MOAT_E_LIMIT, "--san: too many names (at most %zu bytes in all)", outsz);
        o += (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */

static int key_new(moat_cli_t *cli, int argc, char **argv)
{
    const char *name, *pos[1], *cn = NULL, *alg_s = NULL, *csr_out = NULL, *sans_l[MAX_SANS];
    const char *o = NULL, *ou = NULL, *l = NULL, *st_ = NULL, *c = NULL, *email = NULL;
    size_t nsans = 0;
    int exportable = 0, force = 0, rc;
    char sans[8192];
    moat_pki_alg_t alg = MOAT_PKI_ALG_DEFAULT;
    GENERAL_NAMES *gn = NULL;
    moat_store_t *st = NULL;
    moat_store_key_t old = {0};
    fresh_t f = {0};
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
    name = pos[0];
    if (cn == NULL)
        return moat_cli_usage(cmd.usage, "--cn is required: the name the certificate is for");
    if (moat__km_check_new_file(csr_out, force, "--force", &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat__km_check_name(name, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (alg_s != NULL && moat_pki_alg_parse(alg_s, &alg, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (join_sans(sans_l, nsans, sans, sizeof(sans), &err) != 0)
        return moat_cli_fail(cli, &err);
    /* Check the names before a slow key generation, so that a typo fails at once. */
    if (sans[0] != '\0') {
        if (moat_pki_sans_parse(sans, &gn, &err) != 0) {
            moat_err_prefix(&err, "--san");
            return moat_cli_fail(cli, &err);
        }
        GENERAL_NAMES_free(gn);
    }
    if (c != NULL && (strlen(c) != 2 || c[0] < 'A' || c[0] > 'z' || c[1] < 'A' || c[1] > 'z')) {
        moat_err_set(&err, MOAT_E_INVAL, "--country must be a two-letter ISO 3166 code, not \"%s\"", c);
        moat_err_hint(&err, "for example --country FR or --country US");
        return moat_cli_fail(cli, &err);
    }
    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, name, MOAT_KEY_CURRENT, &old, &err) == 0) {
        moat_err_set(&err, MOAT_E_EXISTS, "a key named \"%s\" already exists (%s)", name,
                     moat_store_key_state_name(old.state));
        moat_err_hint(
            &err, "to replace its key and certificate use 'moat key renew %s'; or choose another name", name);
        moat_store_key_dispose(&old);
        goto fail;
    } else if (err.code != MOAT_E_NOTFOUND) {
        goto fail;
    }
    moat_err_clear(&err);
    {
        moat_pki_subject_t subj = {cn, o, ou, l, st_, c, email};
        if (fresh_make(alg, &subj, sans[0] ? sans : NULL, &f, &err) != 0)
            goto fail;
    }
    if (fresh_store(st, name, moat_pki_alg_name(alg), exportable, &f, csr_out, "key.new", 0, &err) != 0)
        goto fail;
    warn_alg(alg);
    print_next(cli, name, csr_out, &f, "new", exportable);
    fresh_dispose(&f);
    moat_store_close(st);
    return MOAT_EXIT_OK;
fail:
    fresh_dispose(&f);
    moat_store_close(st);
    return moat_cli_fail(cli, &err);
}

/* Copies a subject field out of <name> into <buf>; NULL when absent. */
static const char *name_field(const X509_NAME *name, int nid, char *buf, int size)
{
    if (name == NULL || X509_NAME_get_text_by_NID(name, nid, buf, size) <= 0)
        return NULL;
    return buf;
}

static int key_renew(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *csr_out = NULL, *alg_s = NULL, *new_cn = NULL, *sans_l[MAX_SANS];
    size_t nsans = 0;
    int exportable = 0, force = 0, rc;
    char new_sans[8192];
    moat_store_t *st = NULL;
    moat_store_key_t active = {0}, pending = {0};
    int have_active = 0, have_pending = 0, base_exportable = 0;
    X509 *cert = NULL;
    X509_REQ *req = NULL;
    char *sans = NULL;
    fresh_t f = {0};
    moat_pki_alg_t alg;
    moat_err_t err = {0};
    char cn[256], o[256], ou[256], l[256], s[256], c[8], email[256];
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
    if (join_sans(sans_l, nsans, new_sans, sizeof(new_sans), &err) != 0)
        return moat_cli_fail(cli, &err);
    /* Check the names before a slow key generation, so that a typo fails at once. */
    if (new_sans[0] != '\0') {
        GENERAL_NAMES *gn = NULL;
        if (moat_pki_sans_parse(new_sans, &gn, &err) != 0) {
            moat_err_prefix(&err, "--san");
            return moat_cli_fail(cli, &err);
        }
        GENERAL_NAMES_free(gn);
    }
    if (moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_WANT_ACTIVE, &active, &err) == 0)
        have_active = 1;
    else if (err.code != MOAT_E_NOTFOUND)
        goto fail;
    moat_err_clear(&err);
    if (moat_store_key_get(st, pos[0], MOAT_KEY_WANT_PENDING, &pending, &err) == 0)
        have_pending = 1;
    else if (err.code != MOAT_E_NOTFOUND)
        goto fail;
    moat_err_clear(&err);
    if (!have_active && !have_pending) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "no key named \"%s\" to renew", pos[0]);
        moat_err_hint(&err, "'moat key list' shows the keys; 'moat key new %s --cn CN' makes a new one",
                      pos[0]);
        goto fail;
    }
    if (moat__km_check_new_file(csr_out, force, "--force", &err) != 0) {
        goto fail;
    }
    {
        const moat_store_key_t *base = have_active ? &active : &pending;
        const X509_NAME *subj = NULL;
        if (have_active && active.cert != NULL) {
            moat_pki_cert_info_t ci = {0};
            if (moat_pki_cert_parse(active.cert->der.data, active.cert->der.len, &cert, &err) != 0 ||
                moat_pki_cert_info(cert, &ci, &err) != 0)
                goto fail;
            sans = moat_strdup(ci.sans);
            moat_pki_cert_info_dispose(&ci);
            subj = X509_get_subject_name(cert);
        } else if (base->csr.len > 0) {
            moat_pki_csr_info_t ri = {0};
            if (moat_pki_csr_parse(base->csr.data, base->csr.len, &req, &err) != 0 ||
                moat_pki_csr_info(req, &ri, &err) != 0)
                goto fail;
            sans = moat_strdup(ri.sans);
            moat_pki_csr_info_dispose(&ri);
            subj = X509_REQ_get_subject_name(req);
        } else {
            moat_err_set(&err, MOAT_E_STATE,
                         "key \"%s\" has neither a certificate nor a request to renew from", pos[0]);
            moat_err_hint(&err, "delete it and make a new one: moat key delete %s; moat key new %s --cn CN",
                          pos[0], pos[0]);
            goto fail;
        }
        if (sans == NULL) {
            moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
            goto fail;
        }
        if (alg_s != NULL) {
            if (moat_pki_alg_parse(alg_s, &alg, &err) != 0)
                goto fail;
        } else if (moat_pki_alg_parse(base->algorithm, &alg, &err) != 0) {
            moat_err_set(&err, MOAT_E_INVAL, "key \"%s\" is %s, which moat does not generate", pos[0],
                         base->algorithm);
            moat_err_hint(&err, "choose the new key's algorithm with --alg (ec-p256 is a good default)");
            goto fail;
        }
        {
            moat_pki_subject_t sj = {
                name_field(subj, NID_commonName, cn, sizeof(cn)),
                name_field(subj, NID_organizationName, o, sizeof(o)),
                name_field(subj, NID_organizationalUnitName, ou, sizeof(ou)),
                name_field(subj, NID_localityName, l, sizeof(l)),
                name_field(subj, NID_stateOrProvinceName, s, sizeof(s)),
                name_field(subj, NID_countryName, c, sizeof(c)),
                name_field(subj, NID_pkcs9_emailAddress, email, sizeof(email)),
            };
            if (new_cn != NULL)
                sj.cn = new_cn;
            if (new_sans[0] != '\0' || new_cn != NULL) {
                /* New names replace the old ones; a new CN alone is the only name (as 'key new' does). */
                moat_free(&sans);
                if ((sans = moat_strdup(new_sans)) == NULL) {
                    moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
                    goto fail;
                }
            }
            if (sj.cn == NULL) {
                moat_err_set(&err, MOAT_E_INVAL, "the certificate of \"%s\" has no common name to renew",
                             pos[0]);
                moat_err_hint(&err, "make a new key instead: moat key new NAME --cn CN");
                goto fail;
            }
            if (fresh_make(alg, &sj, sans[0] ? sans : NULL, &f, &err) != 0)
                goto fail;
        }
        base_exportable = base->exportable;
        if (fresh_store(st, pos[0], moat_pki_alg_name(alg), base->exportable || exportable, &f, csr_out,
                        "key.renew", have_pending ? pending.id : 0, &err) != 0)
            goto fail;
    }
    warn_alg(alg);
    if (have_pending && !cli->quiet)
        fprintf(stderr,
                "moat: the earlier request of \"%s\" is kept: a certificate issued for it can still be "
                "installed\n",
                pos[0]);
    print_next(cli, pos[0], csr_out, &f, have_active ? "renewal:" : "new", base_exportable || exportable);
    rc = MOAT_EXIT_OK;
    goto out;
fail:
    rc = moat_cli_fail(cli, &err);
out:
    fresh_dispose(&f);
    moat_free(&sans);
    X509_free(cert);
    X509_REQ_free(req);
    moat_store_key_dispose(&active);
    moat_store_key_dispose(&pending);
    moat_store_close(st);
    return rc;
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
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_bool(&j, "deleted", 1);
        moat_cli_served_json(cli, st, &j);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
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
    moat_store_key_t cur = {0}, other = {0}, k = {0};
    int have_cur = 0, leaf_i = -1;
    X509 *leaf = NULL;
    STACK_OF(X509) *pile = NULL;
    char *missing = NULL;
    unsigned char *pkcs8 = NULL, *spki = NULL;
    size_t pkcs8_len = 0, spki_len = 0;
    moat_store_blob_t *blobs = NULL;
    size_t nblobs = 0;
    char algname[32], fpr[MOAT_PKI_FINGERPRINT_SIZE], load_warning[256] = "";
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
    if (imp.nkeys == 0) {
        moat_err_set(&err, MOAT_E_INVAL, "%s holds no private key (%d certificate%s)", pos[1],
                     sk_X509_num(imp.certs), sk_X509_num(imp.certs) == 1 ? "" : "s");
        moat_err_hint(&err,
                      "to complete a pending key use 'moat cert install NAME %s'; "
                      "to trust a CA use 'moat trust add'",
                      pos[1]);
        goto fail;
    }
    if (imp.nkeys > 1) {
        moat_err_set(&err, MOAT_E_INVAL, "%s holds %zu private keys; a name holds one", pos[1], imp.nkeys);
        moat_err_hint(&err, "split the file and import each key under its own name");
        goto fail;
    }
    /* Pair the key with its certificate; every other certificate is a candidate for the chain. */
    leaf_i = moat_pki_find_cert_for_key(imp.keys[0], imp.certs);
    if (leaf_i < 0 && sk_X509_num(imp.certs) > 0) {
        moat_err_set(&err, MOAT_E_INVAL, "none of the %d certificates in %s matches its private key",
                     sk_X509_num(imp.certs), pos[1]);
        moat_err_hint(&err, "the file mixes a key and unrelated certificates; import the matching pair");
        goto fail;
    }
    if (leaf_i >= 0) {
        leaf = sk_X509_value(imp.certs, leaf_i);
        if ((pile = sk_X509_dup(imp.certs)) == NULL) {
            moat_err_set(&err, MOAT_E_NOMEM, "out of memory");
            goto fail;
        }
        (void)sk_X509_delete(pile, leaf_i); /* borrowed pointers: the import owns them */
        if (moat_keymgr_chain_blobs(leaf, pile, &blobs, &nblobs, &missing, &err) != 0) {
            moat_err_prefix(&err, "%s", pos[1]);
            goto fail;
        }
    }
    moat_pki_key_describe(imp.keys[0], algname, sizeof(algname));
    if (moat_pki_key_to_pkcs8(imp.keys[0], &pkcs8, &pkcs8_len, &err) != 0 ||
        moat_pki_pubkey_to_der(imp.keys[0], &spki, &spki_len, &err) != 0 ||
        moat_pki_pubkey_fingerprint(imp.keys[0], fpr, &err) != 0)
        goto fail;

    if (moat__km_open(cli, MOAT_STORE_CREATE, &st, &err) != 0)
        goto fail;
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &cur, &err) == 0)
        have_cur = 1;
    else if (err.code != MOAT_E_NOTFOUND)
        goto fail;
    moat_err_clear(&err);
    if (have_cur && !replace) {
        moat_err_set(&err, MOAT_E_EXISTS, "a key named \"%s\" already exists", pos[0]);
        moat_err_hint(&err, "add --replace to replace its material with the file's, or choose another name");
        goto fail;
    }
    if (!have_cur && replace) {
        moat_err_set(&err, MOAT_E_NOTFOUND, "no key named \"%s\" to replace", pos[0]);
        moat_err_hint(&err, "leave out --replace to import it as a new key");
        goto fail;
    }
    if (moat_store_key_find_pubkey(st, spki, spki_len, &other, &err) == 0) {
        if (!have_cur || other.id != cur.id) {
            moat_err_set(&err, MOAT_E_EXISTS, "the key in %s is already in the store as \"%s\"", pos[1],
                         other.name);
            moat_err_hint(&err, "use that name, or 'moat key import %s %s --replace' to refresh it",
                          other.name, pos[1]);
            goto fail;
        }
    } else if (err.code != MOAT_E_NOTFOUND) {
        goto fail;
    }
    moat_err_clear(&err);
    if (have_cur && leaf == NULL && cur.cert != NULL &&
        (cur.pubkey.len != spki_len || memcmp(cur.pubkey.data, spki, spki_len) != 0)) {
        char cfp[MOAT_PKI_FINGERPRINT_SIZE];
        moat__km_spki_fingerprint(&cur.pubkey, cfp);
        moat_err_set(&err, MOAT_E_PKI,
                     "the key in %s (%.23s...) does not match the certificate of \"%s\" (%.23s...)", pos[1],
                     fpr, pos[0], cfp);
        moat_err_hint(&err, "import a file that holds the key with its certificate, or the original key");
        goto fail;
    }

    if (moat_store_begin(st, &err) != 0)
        goto fail;
    if (have_cur) {
        if (moat_store_key_replace(st, cur.id, algname, spki, spki_len, pkcs8, pkcs8_len, &err) != 0 ||
            moat_store_key_set_exportable(st, cur.id, exportable, &err) != 0)
            goto rollback;
        k.id = cur.id;
    } else {
        if (moat_keymgr_key_add(st, pos[0], imp.keys[0], algname, exportable != 0, NULL, &k.id, &err) != 0)
            goto rollback;
    }
    if (leaf != NULL &&
        moat_keymgr_import_cert(st, k.id, leaf, blobs, nblobs, load_warning, sizeof(load_warning), &err) != 0)
        goto rollback;
    if (moat_store_generation_bump(st, &err) != 0 ||
        moat__km_audit(st, have_cur ? "key.replace" : "key.import", pos[0], &err,
                       "from %s (%s), algorithm %s, exportable %s, key %s%s", pos[1], imp.format, algname,
                       exportable ? "yes" : "no", fpr, leaf ? ", with certificate" : "") != 0)
        goto rollback;
    if (moat__km_commit(st, NULL, &err) != 0)
        goto fail;

    if (cli->json) {
        moat_json_t j;
        moat_pki_cert_info_t ci = {0};
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "action", have_cur ? "replaced" : "imported");
        moat_json_kv_str(&j, "format", imp.format);
        moat_json_kv_str(&j, "algorithm", algname);
        moat_json_kv_bool(&j, "exportable", exportable);
        moat_json_kv_str(&j, "key_fingerprint", fpr);
        moat_json_kv_str(&j, "state", leaf != NULL ? "active" : "pending");
        moat_json_kv_int(&j, "chain_length", (int64_t)nblobs);
        moat_json_kv_str(&j, "chain_ends_below", missing);
        moat_json_key(&j, "certificate");
        if (leaf != NULL && moat_pki_cert_info(leaf, &ci, &err) == 0) {
            moat_json_obj_begin(&j);
            moat__km_json_cert_info(&j, &ci);
            moat_json_obj_end(&j);
        } else {
            moat_json_null(&j);
        }
        moat_pki_cert_info_dispose(&ci);
        moat_cli_served_json(cli, st, &j);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
    } else if (!cli->quiet) {
        printf("%s key \"%s\" from %s (%s, %s, %sexportable)\n", have_cur ? "replaced" : "imported", pos[0],
               pos[1], imp.format, algname, exportable ? "" : "not ");
        if (leaf != NULL) {
            moat_pki_cert_info_t ci = {0};
            if (moat_pki_cert_info(leaf, &ci, &err) == 0) {
                char t[64];
                moat__km_fmt_time(ci.not_after, t, sizeof(t));
                printf("certificate: %s, issued by %s, valid until %s\n", ci.subject, ci.issuer, t);
                if (moat_pki_cert_check_time(leaf, time(NULL), &err) != 0)
                    fprintf(stderr, "moat: warning: %s\n", err.msg);
                moat_pki_cert_info_dispose(&ci);
            }
            if (load_warning[0] != '\0')
                fprintf(stderr, "moat: warning: %s\n", load_warning);
            if (missing != NULL && nblobs == 0)
                printf("issued directly by \"%s\": clients must trust it (as they do a root CA)\n", missing);
            else if (missing != NULL)
                printf("chain: %zu certificate%s; ends below \"%s\", which clients must already trust\n",
                       nblobs, nblobs == 1 ? "" : "s", missing);
        } else {
            printf("no certificate in the file: the key is pending; install its certificate with\n"
                   "  moat cert install %s CERT.pem\n",
                   pos[0]);
        }
    }
    rc = moat_cli_served_report(cli, st);
    goto out;
rollback:
    moat_store_rollback(st);
fail:
    rc = moat_cli_fail(cli, &err);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&data, len);
    moat_free_secret(&pkcs8, pkcs8_len);
    moat_free(&spki);
    moat_keymgr_blobs_dispose(&blobs, nblobs);
    moat_free(&missing);
    sk_X509_free(pile);
    moat_pki_import_dispose(&imp);
    moat_store_key_dispose(&cur);
    moat_store_key_dispose(&other);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */

int moat__km_export_p12(moat_store_t *st, const moat_store_key_t *k, const char *out, const char *pwfile,
                        int legacy, const char *action, moat_err_t *err)
{
    unsigned char *p12 = NULL;
    size_t p12_len = 0;
    char pw[1024];
    int rc;

    if (!k->exportable || k->cert == NULL) /* refused before a password is asked for */
        return moat_keymgr_export_p12(st, k, "", legacy, &p12, &p12_len, err);
    if ((rc = moat__km_password(pwfile, "Export password: ", 1, 0, pw, sizeof(pw), err)) != 0)
        return rc;
    if ((rc = moat_keymgr_export_p12(st, k, pw, legacy, &p12, &p12_len, err)) != 0 ||
        (rc = moat_store_begin(st, err)) != 0)
        goto out;
    if ((rc = moat__km_audit(st, action, k->name, err, "to %s, PKCS#12 %s", out,
                             legacy ? "legacy (PBE-SHA1-3DES)" : "AES-256-CBC/PBKDF2")) != 0) {
        moat_store_rollback(st);
        goto out;
    }
    rc = moat__km_commit_write(st, out, p12, p12_len, 0600, err);
out:
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&p12, p12_len);
    return rc;
}

static int key_export(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *out = NULL, *pwfile = NULL;
    int legacy = 0, force = 0, rc;
    moat_store_t *st = NULL;
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
        "moat key export NAME --out FILE.p12 [--password-file F] [--legacy] [--force]",
        "Writes the key NAME with its certificate and chain as a PKCS#12 file (mode 0600), protected by\n"
        "the password in F. Only keys created or imported with --exportable can be exported; every\n"
        "export is recorded in the audit log.\n\n"
        "  --out FILE.p12     where to write it\n"
        "  --password-file F  the password (first line of F); without it, asked twice on the terminal\n"
        "  --legacy           PBE-SHA1-3DES instead of AES-256-CBC, for old Windows and appliances\n"
        "  --force            overwrite an existing FILE.p12\n\n"
        "example: moat key export www --out www.p12 --password-file pw.txt\n",
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
    if (moat_store_key_get(st, pos[0], MOAT_KEY_CURRENT, &k, &err) != 0) {
        if (err.code == MOAT_E_NOTFOUND) {
            moat_err_set(&err, MOAT_E_NOTFOUND, "no key named \"%s\" to export", pos[0]);
            moat_err_hint(&err, "'moat key list' shows the keys in this store");
        }
        rc = moat_cli_fail(cli, &err);
    } else if (moat__km_export_p12(st, &k, out, pwfile, legacy, "key.export", &err) != 0) {
        rc = moat_cli_fail(cli, &err);
    } else {
        if (!cli->quiet)
            printf("exported key \"%s\" with its certificate to %s (PKCS#12%s); the export is in the audit "
                   "log\n",
                   pos[0], out, legacy ? ", legacy encryption" : "");
        rc = MOAT_EXIT_OK;
    }
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc;
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
        moat_json_init(&j, stdout, 1);
        moat_json_obj_begin(&j);
        moat_json_kv_str(&j, "name", pos[0]);
        moat_json_kv_str(&j, "csr", pem);
        moat_json_obj_end(&j);
        moat_json_finish(&j);
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
