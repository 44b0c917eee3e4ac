/* Shared by the key manager commands: see keymgr_int.h. */
#include "cli/keymgr_int.h"
#include "tls/tls.h"

#include <errno.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The option <arg> (its first <n> bytes) names: a name may list aliases, "--dry-run|-n". */
static const moat__km_opt_t *find_opt(const moat__km_opt_t *opts, const char *arg, size_t n)
{
    for (; opts->name != NULL; opts++)
        for (const char *alt = opts->name; *alt != '\0'; alt += *alt == '|') {
            size_t len = strcspn(alt, "|");
            if (len == n && strncmp(alt, arg, n) == 0)
                return opts;
            alt += len;
        }
    return NULL;
}

/* The <i>-th positional argument the usage line names: its words that start with a capital ("NAME",
 * "CERT.pem", "DIR|nginx.conf"), before the first option or optional part. NULL when it names none. */
static const char *positional_name(const char *usage, int i)
{
    for (const char *p = usage; *p != '\0' && *p != '[' && *p != '-';) {
        if (*p >= 'A' && *p <= 'Z' && (p == usage || p[-1] == ' ') && i-- == 0)
            return p;
        p += strcspn(p, " ");
        p += strspn(p, " ");
    }
    return NULL;
}

static void print_help(const moat__km_cmd_t *cmd)
{
    printf("usage: %s\n", cmd->usage);
    if (cmd->help != NULL && cmd->help[0] != '\0')
        printf("\n%s", cmd->help);
}

int moat__km_parse(const moat__km_cmd_t *cmd, int argc, char **argv)
{
    int npos = 0, only_pos = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL, *eq;
        const moat__km_opt_t *o;
        size_t n;

        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            print_help(cmd);
            return MOAT_EXIT_OK;
        }
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (npos >= cmd->pos_max)
                return moat_cli_usage(cmd->usage, "unexpected argument \"%s\"", a);
            cmd->pos[npos++] = a;
            continue;
        }
        eq = strchr(a, '=');
        n = eq != NULL ? (size_t)(eq - a) : strlen(a);
        if ((o = find_opt(cmd->opts, a, n)) == NULL)
            return moat_cli_usage(cmd->usage, "unknown option \"%.*s\"", (int)n, a);
        if (o->flag != NULL) {
            if (eq != NULL)
                return moat_cli_usage(cmd->usage, "option %.*s takes no value", (int)n, a);
            *o->flag = 1;
            continue;
        }
        if (eq != NULL)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return moat_cli_usage(cmd->usage, "option %.*s needs a value", (int)n, a);
        if (o->value != NULL) {
            *o->value = val;
        } else {
            if (*o->count >= o->max)
                return moat_cli_usage(cmd->usage, "option %.*s given more than %zu times", (int)n, a, o->max);
            o->list[(*o->count)++] = val;
        }
    }
    if (npos < cmd->pos_min) {
        const char *name = positional_name(cmd->usage, npos);
        if (name == NULL)
            return moat_cli_usage(cmd->usage, "missing argument%s", cmd->pos_min - npos > 1 ? "s" : "");
        return moat_cli_usage(cmd->usage, "missing %.*s", (int)strcspn(name, " "), name);
    }
    for (int i = npos; i < cmd->pos_max; i++)
        cmd->pos[i] = NULL;
    return -1;
}

static void print_group(FILE *out, const char *group, const char *summary, const moat__km_sub_t *subs,
                        size_t nsubs)
{
    fprintf(out, "usage: moat %s COMMAND [options]   (%s)\n\ncommands:\n", group, summary);
    for (size_t i = 0; i < nsubs; i++)
        fprintf(out, "  %-14s %s\n", subs[i].name, subs[i].summary);
    fprintf(out, "\n'moat %s COMMAND --help' describes a command.\n", group);
}

int moat__km_dispatch(moat_cli_t *cli, const char *group, const char *summary, const moat__km_sub_t *subs,
                      size_t nsubs, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "moat: %s: missing command\n", group);
        print_group(stderr, group, summary, subs, nsubs);
        return MOAT_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        print_group(stdout, group, summary, subs, nsubs);
        return MOAT_EXIT_OK;
    }
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(cli, argc - 1, argv + 1);
    fprintf(stderr, "moat: %s: unknown command \"%s\"\n", group, argv[1]);
    print_group(stderr, group, summary, subs, nsubs);
    return MOAT_EXIT_USAGE;
}

int moat__km_read_file(const char *path, size_t max, unsigned char **out, size_t *len, moat_err_t *err)
{
    FILE *f;
    unsigned char *buf;
    size_t n = 0, cap = 4096;
    int e;

    *out = NULL;
    *len = 0;
    if (strcmp(path, "-") == 0)
        f = stdin;
    else if ((f = fopen(path, "rb")) == NULL) {
        e = errno;
        moat_err_set(err, e == ENOENT ? MOAT_E_NOTFOUND : MOAT_E_IO, "cannot read %s: %s", path, strerror(e));
        return moat_err_hint(err, "check the path and that you may read it");
    }
    if ((buf = moat_malloc(cap + 1)) == NULL)
        goto nomem;
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n > max) {
            moat_free_secret(&buf, cap + 1);
            if (f != stdin)
                fclose(f);
            return moat_err_set(err, MOAT_E_LIMIT,
                                "%s is larger than %zu bytes: not a key or certificate file", path, max);
        }
        if (n < cap) {
            if (ferror(f)) {
                e = errno;
                moat_free_secret(&buf, cap + 1);
                if (f != stdin)
                    fclose(f);
                return moat_err_set(err, MOAT_E_IO, "cannot read %s: %s", path, strerror(e));
            }
            break;
        }
        {
            unsigned char *nb = moat_malloc(cap * 2 + 1);
            if (nb == NULL)
                goto nomem;
            memcpy(nb, buf, n);
            moat_free_secret(&buf, cap + 1); /* the file may hold a private key */
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
nomem:
    moat_free(&buf);
    if (f != stdin)
        fclose(f);
    return moat_err_set(err, MOAT_E_NOMEM, "out of memory reading %s", path);
}

int moat__km_check_new_file(const char *path, int force, const char *force_opt, moat_err_t *err)
{
    struct stat sb;
    if (path == NULL || strcmp(path, "-") == 0 || force || lstat(path, &sb) != 0)
        return 0;
    moat_err_set(err, MOAT_E_EXISTS, "%s already exists; nothing was changed", path);
    return moat_err_hint(err, "pass %s to overwrite it, or choose another file", force_opt);
}

int moat__km_write_file(const char *path, const void *data, size_t len, int mode, moat_err_t *err)
{
    return moat_file_write(path, data, len, mode, err);
}

void moat__km_fmt_time(time_t t, char *out, size_t outsz)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, outsz, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        (void)moat_strlcpy(out, "?", outsz); /* only for dates outside struct tm's range */
}

long moat__km_days_left(time_t t, time_t now)
{
    double d = difftime(t, now) / 86400.0;
    return d < 0 ? (long)d - (d != (long)d ? 1 : 0) : (long)d;
}

int moat__km_parse_days(const char *s, long *out, moat_err_t *err)
{
    if (moat_parse_long(s, 1, 36500, out) != 0)
        return moat_err_set(err, MOAT_E_USAGE,
                            "--days must be a whole number of days from 1 to 36500, not \"%s\"", s);
    return 0;
}

int moat__km_open(const moat_cli_t *cli, unsigned flags, moat_store_t **st, moat_err_t *err)
{
    char path[PATH_MAX], mk[PATH_MAX];
    int rc;

    *st = NULL;
    if ((rc = moat_cli_store_path(cli, path, sizeof(path), NULL, err)) != 0)
        return rc;
    if ((rc = moat_cli_master_key_path(cli, path, mk, sizeof(mk), err)) != 0)
        return rc;
    return moat_cli_store_open(cli, path, (flags & MOAT_STORE_NO_MASTER_KEY) ? NULL : mk, flags, st, err);
}

int moat__km_check_name(const char *name, moat_err_t *err)
{
    return moat_name_check("key", name, err);
}

void moat__km_fpr_colon(const char *hex, char out[MOAT_PKI_FINGERPRINT_SIZE])
{
    moat_pki_fingerprint_colon(hex, out);
}

void moat__km_spki_fingerprint(const moat_store_blob_t *spki, char out[MOAT_PKI_FINGERPRINT_SIZE])
{
    EVP_PKEY *k = NULL;
    moat_err_t e = {0};
    out[0] = '\0';
    if (spki->len == 0 || moat_pki_pubkey_from_der(spki->data, spki->len, &k, &e) != 0)
        return;
    if (moat_pki_pubkey_fingerprint(k, out, &e) != 0)
        out[0] = '\0';
    EVP_PKEY_free(k);
}

const char *moat__km_view_state(const moat__km_view_t *v, time_t now)
{
    const moat_store_cert_t *c = v->key->cert;
    if (v->key->state == MOAT_KEY_PENDING || c == NULL)
        return "pending";
    if (v->revoked)
        return "revoked";
    if (c->not_after < (int64_t)now)
        return "expired";
    return "active";
}

void moat__km_view_check_revoked(moat_store_t *st, moat__km_view_t *v)
{
    moat_store_issued_t is = {0};
    moat_err_t e = {0};
    v->revoked = 0;
    if (v->key->cert == NULL)
        return;
    if (moat_store_issued_get(st, v->key->cert->serial, &is, &e) == 0) {
        v->revoked = is.revoked != 0 && strcasecmp(is.serial, v->key->cert->serial) == 0;
        moat_store_issued_dispose(&is);
    }
}

/* Splits "DNS:a,IP:b" into JSON array items. */
void moat__km_json_sans(moat_json_t *j, const char *sans)
{
    moat_json_arr_begin(j);
    while (sans != NULL && *sans != '\0') {
        const char *comma = strchr(sans, ',');
        size_t n = comma ? (size_t)(comma - sans) : strlen(sans);
        char item[512];
        while (n > 0 && *sans == ' ') {
            sans++;
            n--;
        }
        if (n > 0 && n < sizeof(item)) {
            memcpy(item, sans, n);
            item[n] = '\0';
            moat_json_str(j, item);
        }
        sans = comma ? comma + 1 : NULL;
    }
    moat_json_arr_end(j);
}

void moat__km_json_cert_info(moat_json_t *j, const moat_pki_cert_info_t *ci)
{
    moat_json_kv_str(j, "subject", ci->subject);
    moat_json_key(j, "sans");
    moat__km_json_sans(j, ci->sans);
    moat_json_kv_str(j, "issuer", ci->issuer);
    moat_json_kv_str(j, "serial", ci->serial);
    moat_json_kv_time(j, "not_before", ci->not_before);
    moat_json_kv_time(j, "not_after", ci->not_after);
    moat_json_kv_str(j, "fingerprint", ci->fingerprint);
    moat_json_kv_str(j, "key_fingerprint", ci->key_fingerprint);
    moat_json_kv_str(j, "key_algorithm", ci->key_alg);
}

void moat__km_view_json(moat_json_t *j, const moat__km_view_t *v, time_t now)
{
    const moat_store_key_t *k = v->key;
    const moat_store_cert_t *c = k->cert;
    char fpr[MOAT_PKI_FINGERPRINT_SIZE];
    moat_pki_csr_info_t ci = {0};
    X509_REQ *csr = NULL;
    moat_err_t e = {0};

    moat_json_obj_begin(j);
    moat_json_kv_str(j, "name", k->name);
    moat_json_kv_str(j, "state", moat__km_view_state(v, now));
    moat_json_kv_str(j, "algorithm", k->algorithm);
    moat_json_kv_bool(j, "exportable", k->exportable);
    if (c == NULL && k->csr.len > 0 && moat_pki_csr_parse(k->csr.data, k->csr.len, &csr, &e) == 0)
        if (moat_pki_csr_info(csr, &ci, &e) != 0)
            memset(&ci, 0, sizeof(ci));
    moat_json_kv_str(j, "subject", c ? c->subject : ci.subject);
    moat_json_key(j, "sans");
    moat__km_json_sans(j, c ? c->sans : ci.sans);
    moat_json_kv_str(j, "issuer", c ? c->issuer : NULL);
    moat_json_kv_str(j, "serial", c ? c->serial : NULL);
    moat_json_kv_time(j, "not_before", c ? c->not_before : 0);
    moat_json_kv_time(j, "not_after", c ? c->not_after : 0);
    moat_json_key(j, "days_left");
    if (c)
        moat_json_int(j, moat__km_days_left((time_t)c->not_after, now));
    else
        moat_json_null(j);
    if (c)
        moat__km_fpr_colon(c->fingerprint, fpr);
    moat_json_kv_str(j, "fingerprint", c ? fpr : NULL);
    moat__km_spki_fingerprint(&k->pubkey, fpr);
    moat_json_kv_str(j, "key_fingerprint", fpr);
    moat_json_kv_bool(j, "renewal_pending", v->renewal != NULL);
    if (v->renewal != NULL) {
        moat_json_kv_str(j, "renewal_algorithm", v->renewal->algorithm);
        moat__km_spki_fingerprint(&v->renewal->pubkey, fpr);
        moat_json_kv_str(j, "renewal_key_fingerprint", fpr);
    }
    moat_json_kv_time(j, "created", k->created);
    moat_json_obj_end(j);
    moat_pki_csr_info_dispose(&ci);
    X509_REQ_free(csr);
}

void moat__km_view_text(FILE *out, const moat__km_view_t *v, time_t now)
{
    const moat_store_key_t *k = v->key;
    const moat_store_cert_t *c = k->cert;
    char fpr[MOAT_PKI_FINGERPRINT_SIZE], t[64];
    moat_pki_csr_info_t ci = {0};
    X509_REQ *csr = NULL;
    moat_err_t e = {0};

    if (c == NULL && k->csr.len > 0 && moat_pki_csr_parse(k->csr.data, k->csr.len, &csr, &e) == 0)
        if (moat_pki_csr_info(csr, &ci, &e) != 0)
            memset(&ci, 0, sizeof(ci));
    fprintf(out, "name:            %s\n", k->name);
    fprintf(out, "state:           %s\n", moat__km_view_state(v, now));
    fprintf(out, "algorithm:       %s\n", k->algorithm);
    fprintf(out, "exportable:      %s\n", k->exportable ? "yes" : "no (it can never leave the store)");
    if (c != NULL) {
        fprintf(out, "subject:         %s\n", c->subject);
        fprintf(out, "names (SANs):    %s\n", c->sans[0] ? c->sans : "(none)");
        fprintf(out, "issuer:          %s\n", c->issuer);
        fprintf(out, "serial:          %s\n", c->serial);
        moat__km_fmt_time((time_t)c->not_before, t, sizeof(t));
        fprintf(out, "not before:      %s\n", t);
        moat__km_fmt_time((time_t)c->not_after, t, sizeof(t));
        fprintf(out, "not after:       %s (%ld days left)\n", t,
                moat__km_days_left((time_t)c->not_after, now));
        moat__km_fpr_colon(c->fingerprint, fpr);
        fprintf(out, "fingerprint:     %s\n", fpr);
    } else {
        fprintf(out, "subject:         %s\n", ci.subject ? ci.subject : "(no request stored)");
        if (ci.sans != NULL)
            fprintf(out, "names (SANs):    %s\n", ci.sans[0] ? ci.sans : "(none)");
        fprintf(out,
                "certificate:     none yet: have the request signed, then 'moat cert install %s CERT.pem'\n",
                k->name);
    }
    moat__km_spki_fingerprint(&k->pubkey, fpr);
    fprintf(out, "key fingerprint: %s\n", fpr);
    if (v->renewal != NULL) {
        moat__km_spki_fingerprint(&v->renewal->pubkey, fpr);
        fprintf(out,
                "renewal:         a new %s key waits for its certificate (key %s);\n"
                "                 the current certificate keeps serving until it is installed\n",
                v->renewal->algorithm, fpr);
    }
    moat__km_fmt_time((time_t)k->created, t, sizeof(t));
    fprintf(out, "created:         %s\n", t);
    moat_pki_csr_info_dispose(&ci);
    X509_REQ_free(csr);
}

int moat__km_write_after_commit(const char *out, const void *data, size_t len, int mode, moat_err_t *err)
{
    if (out == NULL || moat__km_write_file(out, data, len, mode, err) == 0)
        return 0;
    return moat_err_hint(err,
                         "the change itself is recorded in the store and its audit log; only the file is "
                         "missing: free the space or fix the path and write it again");
}

int moat__km_password(const char *file, const char *prompt, int confirm, int allow_empty, char *out,
                      size_t outsz, moat_err_t *err)
{
    int rc = moat_cli_read_password(file, prompt, confirm, out, outsz, err);
    if (rc != 0)
        return rc;
    if (!allow_empty && out[0] == '\0') {
        if (file != NULL)
            moat_err_set(err, MOAT_E_PASSWORD, "the password file %s is empty", file);
        else
            moat_err_set(err, MOAT_E_PASSWORD, "an empty password is not allowed here");
        return moat_err_hint(err, "a PKCS#12 file protects a private key: give it a real password");
    }
    return 0;
}

int moat__km_export_cmd(moat_cli_t *cli, const moat__km_export_t *ex, int argc, char **argv)
{
    const char *pos[1], *out = NULL, *pwfile = NULL;
    int legacy = 0, force = 0, rc;
    moat_store_t *st = NULL;
    moat_store_key_t k = {0};
    unsigned char *p12 = NULL;
    size_t p12_len = 0;
    char pw[1024];
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--out", &out, NULL, NULL, NULL, 0},
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--legacy", NULL, &legacy, NULL, NULL, 0},
        {"--force", NULL, &force, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {ex->usage, ex->help, opts, pos, 1, 1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (out == NULL)
        return moat_cli_usage(cmd.usage, "--out is required");
    if (moat__km_check_new_file(out, force, "--force", &err) != 0 || moat__km_open(cli, 0, &st, &err) != 0)
        return moat_cli_fail(cli, &err);
    pw[0] = '\0';
    if ((rc = ex->find(st, pos[0], &k, &err)) == 0) {
        if (!k.exportable || k.cert == NULL) /* refused before a password is asked for */
            rc = moat_keymgr_export_p12(st, &k, "", legacy, &p12, &p12_len, &err);
        else if ((rc = moat__km_password(pwfile, "Export password: ", 1, 0, pw, sizeof(pw), &err)) == 0 &&
                 (rc = moat_keymgr_export(st, &k, pw, legacy, ex->action, out, &p12, &p12_len, &err)) == 0)
            rc = moat__km_write_after_commit(out, p12, p12_len, 0600, &err);
    }
    if (rc == 0 && !cli->quiet)
        printf("%s \"%s\" %s to %s (PKCS#12%s)%s\n", ex->done[0], pos[0], ex->done[1], out,
               legacy ? ", legacy encryption" : "", ex->done[2]);
    OPENSSL_cleanse(pw, sizeof(pw));
    moat_free_secret(&p12, p12_len);
    moat_store_key_dispose(&k);
    moat_store_close(st);
    return rc == 0 ? MOAT_EXIT_OK : moat_cli_fail(cli, &err);
}
