/* moat inspect: what a file, standard input or a TLS server holds, for people or as JSON. */
#include "cli/groups.h"
#include "cli/keymgr_int.h"
#include "doctor/doctor.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PASSWORD_MAX 1024

static const char inspect_usage[] =
    "moat inspect FILE|-|HOST:PORT|https://HOST[:PORT] [--password-file FILE] "
    "[--timeout SECONDS] [--json]";

static const char *kind_name(const moat_pki_obj_t *o)
{
    switch (o->kind) {
    case MOAT_PKI_OBJ_CERT:
        return "certificate";
    case MOAT_PKI_OBJ_CSR:
        return "certificate request";
    case MOAT_PKI_OBJ_CRL:
        return "crl";
    case MOAT_PKI_OBJ_KEY:
        return "private key";
    case MOAT_PKI_OBJ_PUBKEY:
        return "public key";
    case MOAT_PKI_OBJ_LOCKED:
        return "encrypted";
    default:
        return "other";
    }
}

/* JSON "type": one word. */
static const char *kind_token(const moat_pki_obj_t *o)
{
    static const char *const t[] = {"certificate", "csr",       "crl",  "private_key",
                                    "public_key",  "encrypted", "other"};
    return t[o->kind];
}

static void ku_text(unsigned ku, char *out, size_t outsz)
{
    static const struct {
        unsigned bit;
        const char *name;
    } n[] = {{MOAT_PKI_KU_DIGITAL_SIGNATURE, "digitalSignature"},
             {MOAT_PKI_KU_KEY_ENCIPHERMENT, "keyEncipherment"},
             {MOAT_PKI_KU_KEY_AGREEMENT, "keyAgreement"},
             {MOAT_PKI_KU_KEY_CERT_SIGN, "keyCertSign"},
             {MOAT_PKI_KU_CRL_SIGN, "cRLSign"}};
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < MOAT_ARRAY_LEN(n); i++)
        if ((ku & n[i].bit) && o < outsz)
            o += (size_t)snprintf(out + o, outsz - o, "%s%s", o ? "," : "", n[i].name);
}

static void eku_text(unsigned eku, char *out, size_t outsz)
{
    static const struct {
        unsigned bit;
        const char *name;
    } n[] = {{MOAT_PKI_EKU_SERVER_AUTH, "serverAuth"},   {MOAT_PKI_EKU_CLIENT_AUTH, "clientAuth"},
             {MOAT_PKI_EKU_CODE_SIGNING, "codeSigning"}, {MOAT_PKI_EKU_EMAIL, "emailProtection"},
             {MOAT_PKI_EKU_OCSP_SIGNING, "OCSPSigning"}, {MOAT_PKI_EKU_ANY, "anyExtendedKeyUsage"}};
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < MOAT_ARRAY_LEN(n); i++)
        if ((eku & n[i].bit) && o < outsz)
            o += (size_t)snprintf(out + o, outsz - o, "%s%s", o ? "," : "", n[i].name);
}

/* Comma lists as JSON arrays. */
static void json_list(moat_json_t *j, const char *key, const char *list)
{
    moat_json_key(j, key);
    moat__km_json_sans(j, list);
}

static void when(time_t t, time_t now, char *out, size_t outsz)
{
    char ts[MOAT_PKI_TIME_SIZE];
    long d = moat__km_days_left(t, now);
    moat_pki_time_format(t, ts);
    if (t >= now)
        snprintf(out, outsz, "%s (in %ld day%s)", ts, d, d == 1 ? "" : "s");
    else
        snprintf(out, outsz, "%s (%ld day%s ago)", ts, -d, d == -1 ? "" : "s");
}

/* Whether the certificate after <i> in the list signed it: how a chain reads. */
static const char *issued_by_next(const moat_pki_inspect_t *in, size_t i)
{
    if (i + 1 >= in->n || in->objs[i + 1].kind != MOAT_PKI_OBJ_CERT)
        return NULL;
    return moat_pki_cert_issued_by(in->objs[i].cert, in->objs[i + 1].cert) ? "yes" : "no";
}

static int print_cert(moat_json_t *j, const moat_pki_inspect_t *in, size_t i, time_t now, moat_err_t *err)
{
    moat_pki_cert_info_t ci;
    char ku[128] = "", eku[128] = "", buf[96];
    const char *next = issued_by_next(in, i);
    if (moat_pki_cert_info(in->objs[i].cert, &ci, err) != 0)
        return err->code;
    if (ci.has_key_usage)
        ku_text(ci.key_usage, ku, sizeof(ku));
    if (ci.has_ext_key_usage)
        eku_text(ci.ext_key_usage, eku, sizeof(eku));
    if (j != NULL) {
        moat_json_kv_str(j, "subject", ci.subject);
        json_list(j, "sans", ci.sans);
        moat_json_kv_str(j, "issuer", ci.issuer);
        moat_json_kv_str(j, "serial", ci.serial);
        moat_json_kv_time(j, "not_before", ci.not_before);
        moat_json_kv_time(j, "not_after", ci.not_after);
        moat_json_kv_int(j, "days_left", moat__km_days_left(ci.not_after, now));
        moat_json_kv_bool(j, "expired", ci.not_after < now);
        moat_json_kv_str(j, "key_algorithm", ci.key_alg);
        moat_json_kv_int(j, "key_bits", ci.key_bits);
        moat_json_kv_str(j, "signature_algorithm", ci.sig_alg);
        moat_json_kv_bool(j, "is_ca", ci.is_ca);
        if (ci.is_ca && ci.path_len >= 0)
            moat_json_kv_int(j, "path_length", ci.path_len);
        moat_json_kv_bool(j, "self_signed", ci.self_signed);
        json_list(j, "key_usage", ku);
        json_list(j, "extended_key_usage", eku);
        moat_json_kv_str(j, "fingerprint", ci.fingerprint);
        moat_json_kv_str(j, "key_fingerprint", ci.key_fingerprint);
        if (next != NULL)
            moat_json_kv_bool(j, "issued_by_next", next[0] == 'y');
    } else {
        printf("  subject:      %s\n", ci.subject);
        printf("  names:        %s\n", ci.sans[0] ? ci.sans : "(none)");
        printf("  issuer:       %s%s\n", ci.issuer, ci.self_signed ? "  (self-signed)" : "");
        printf("  serial:       %s\n", ci.serial);
        when(ci.not_before, now, buf, sizeof(buf));
        printf("  not before:   %s\n", buf);
        when(ci.not_after, now, buf, sizeof(buf));
        printf("  not after:    %s%s\n", buf, ci.not_after < now ? "  EXPIRED" : "");
        printf("  key:          %s (%d bits)\n", ci.key_alg, ci.key_bits);
        printf("  signature:    %s\n", ci.sig_alg);
        if (ci.is_ca && ci.path_len >= 0)
            printf("  ca:           yes, path length %d\n", ci.path_len);
        else
            printf("  ca:           %s\n", ci.is_ca ? "yes" : "no");
        if (ku[0])
            printf("  key usage:    %s\n", ku);
        if (eku[0])
            printf("  ext key usage: %s\n", eku);
        printf("  sha256:       %s\n", ci.fingerprint);
        printf("  key sha256:   %s\n", ci.key_fingerprint);
        if (next != NULL)
            printf("  issued by the next certificate: %s\n", next);
    }
    moat_pki_cert_info_dispose(&ci);
    return 0;
}

static int print_csr(moat_json_t *j, X509_REQ *csr, moat_err_t *err)
{
    moat_pki_csr_info_t ri;
    moat_err_t verr = {0};
    int ok = moat_pki_csr_verify(csr, &verr) == 0;
    char fpr[MOAT_PKI_FINGERPRINT_SIZE] = "";
    EVP_PKEY *pub = moat_pki_csr_get1_pubkey(csr, &verr);
    if (pub != NULL && moat_pki_pubkey_fingerprint(pub, fpr, &verr) != 0)
        fpr[0] = '\0';
    EVP_PKEY_free(pub);
    if (moat_pki_csr_info(csr, &ri, err) != 0)
        return err->code;
    if (j != NULL) {
        moat_json_kv_str(j, "subject", ri.subject);
        json_list(j, "sans", ri.sans);
        moat_json_kv_str(j, "key_algorithm", ri.key_alg);
        moat_json_kv_int(j, "key_bits", ri.key_bits);
        moat_json_kv_str(j, "key_fingerprint", fpr[0] ? fpr : NULL);
        moat_json_kv_bool(j, "requests_ca", ri.requests_ca);
        moat_json_kv_bool(j, "signature_valid", ok);
    } else {
        printf("  subject:      %s\n", ri.subject);
        printf("  names:        %s\n", ri.sans[0] ? ri.sans : "(none)");
        printf("  key:          %s (%d bits)\n", ri.key_alg, ri.key_bits);
        if (fpr[0])
            printf("  key sha256:   %s\n", fpr);
        if (ri.requests_ca)
            printf("  asks for:     a CA certificate (basicConstraints CA:TRUE)\n");
        printf("  signature:    %s\n", ok ? "valid (signed by its own key)" : "DOES NOT VERIFY");
    }
    moat_pki_csr_info_dispose(&ri);
    return 0;
}

static int print_crl(moat_json_t *j, X509_CRL *crl, time_t now, moat_err_t *err)
{
    moat_pki_crl_desc_t d;
    char buf[96], ts[MOAT_PKI_TIME_SIZE];
    if (moat_pki_crl_describe(crl, &d, err) != 0)
        return err->code;
    if (j != NULL) {
        moat_json_kv_str(j, "issuer", d.issuer);
        moat_json_kv_time(j, "this_update", d.this_update);
        moat_json_kv_time(j, "next_update", d.next_update);
        moat_json_kv_bool(j, "stale", d.next_update != 0 && d.next_update < now);
        moat_json_kv_str(j, "number", d.number);
        moat_json_kv_bool(j, "delta", d.delta);
        moat_json_kv_str(j, "signature_algorithm", d.sig_alg);
        moat_json_kv_int(j, "revoked_count", (int64_t)d.nentries);
        moat_json_key(j, "revoked");
        moat_json_arr_begin(j);
        for (size_t k = 0; k < d.nshown; k++) {
            moat_json_obj_begin(j);
            moat_json_kv_str(j, "serial", d.entries[k].serial);
            moat_json_kv_time(j, "revoked_at", d.entries[k].revoked_at);
            moat_json_kv_str(j, "reason",
                             d.entries[k].reason >= 0 ? moat_pki_reason_name(d.entries[k].reason) : NULL);
            moat_json_obj_end(j);
        }
        moat_json_arr_end(j);
    } else {
        printf("  issuer:       %s\n", d.issuer);
        moat_pki_time_format(d.this_update, ts);
        printf("  this update:  %s\n", ts);
        if (d.next_update != 0) {
            when(d.next_update, now, buf, sizeof(buf));
            printf("  next update:  %s%s\n", buf, d.next_update < now ? "  STALE" : "");
        } else {
            printf("  next update:  (none)\n");
        }
        if (d.number != NULL)
            printf("  number:       %s%s\n", d.number, d.delta ? " (delta CRL)" : "");
        printf("  signature:    %s\n", d.sig_alg);
        printf("  revoked:      %zu certificate%s\n", d.nentries, d.nentries == 1 ? "" : "s");
        for (size_t k = 0; k < d.nshown && k < 50; k++) {
            moat_pki_time_format(d.entries[k].revoked_at, ts);
            printf("    %s  %s%s%s\n", d.entries[k].serial, ts, d.entries[k].reason >= 0 ? "  " : "",
                   d.entries[k].reason >= 0 ? moat_pki_reason_name(d.entries[k].reason) : "");
        }
        if (d.nentries > 50)
            printf("    ... and %zu more (--json lists them all)\n", d.nentries - 50);
    }
    moat_pki_crl_desc_dispose(&d);
    return 0;
}

static int print_key(moat_json_t *j, const moat_pki_obj_t *o, moat_err_t *err)
{
    char alg[32], fpr[MOAT_PKI_FINGERPRINT_SIZE];
    moat_pki_key_describe(o->key, alg, sizeof(alg));
    if (moat_pki_pubkey_fingerprint(o->key, fpr, err) != 0)
        return err->code;
    if (j != NULL) {
        moat_json_kv_str(j, "key_algorithm", alg);
        moat_json_kv_int(j, "key_bits", moat_pki_key_bits(o->key));
        moat_json_kv_str(j, "key_fingerprint", fpr);
    } else {
        printf("  algorithm:    %s (%d bits)\n", alg, moat_pki_key_bits(o->key));
        printf("  key sha256:   %s  (of the public key)\n", fpr);
        if (o->kind == MOAT_PKI_OBJ_KEY)
            printf("  private part: present, not shown\n");
    }
    return 0;
}

/* Which certificate of the file a private key belongs to (1-based), 0 when none. */
static size_t cert_of_key(const moat_pki_inspect_t *in, size_t k)
{
    for (size_t i = 0; i < in->n; i++)
        if (in->objs[i].kind == MOAT_PKI_OBJ_CERT &&
            moat_pki_pubkey_eq(in->objs[k].key, X509_get0_pubkey(in->objs[i].cert)))
            return i + 1;
    return 0;
}

static int print_all(const moat_cli_t *cli, const char *source, const moat_doctor_peer_t *peer,
                     const moat_pki_inspect_t *in, moat_err_t *err)
{
    time_t now = time(NULL);
    moat_json_t j;
    moat_json_t *jp = cli->json ? &j : NULL;
    if (jp != NULL) {
        moat_cli_json_begin(&j);
        moat_json_kv_str(&j, "source", source);
        if (peer != NULL) {
            moat_json_kv_str(&j, "address", peer->address);
            moat_json_kv_str(&j, "protocol", peer->version);
            moat_json_kv_str(&j, "cipher", peer->cipher);
        }
        moat_json_key(&j, "objects");
        moat_json_arr_begin(&j);
    } else if (peer != NULL) {
        printf("%s (%s): %s, %s; the server sent %zu certificate%s\n", source, peer->address, peer->version,
               peer->cipher, in->n, in->n == 1 ? "" : "s");
    }
    for (size_t i = 0; i < in->n; i++) {
        const moat_pki_obj_t *o = &in->objs[i];
        int rc = 0;
        if (jp != NULL) {
            moat_json_obj_begin(&j);
            moat_json_kv_str(&j, "type", kind_token(o));
            moat_json_kv_str(&j, "format", o->container);
        } else {
            printf("%s[%zu] %s (%s)\n", i ? "\n" : "", i + 1, kind_name(o), o->container);
        }
        switch (o->kind) {
        case MOAT_PKI_OBJ_CERT:
            rc = print_cert(jp, in, i, now, err);
            break;
        case MOAT_PKI_OBJ_CSR:
            rc = print_csr(jp, o->csr, err);
            break;
        case MOAT_PKI_OBJ_CRL:
            rc = print_crl(jp, o->crl, now, err);
            break;
        case MOAT_PKI_OBJ_KEY:
        case MOAT_PKI_OBJ_PUBKEY: {
            size_t c = o->kind == MOAT_PKI_OBJ_KEY ? cert_of_key(in, i) : 0;
            rc = print_key(jp, o, err);
            if (rc == 0 && jp != NULL && o->kind == MOAT_PKI_OBJ_KEY) {
                moat_json_key(&j, "certificate_index");
                if (c > 0)
                    moat_json_int(&j, (int64_t)c - 1);
                else
                    moat_json_null(&j);
            } else if (rc == 0 && c > 0) {
                printf("  matches:      certificate [%zu]\n", c);
            }
            break;
        }
        case MOAT_PKI_OBJ_LOCKED:
            if (jp != NULL)
                moat_json_kv_str(&j, "what", o->label);
            else
                printf("  %s: give its password with --password-file FILE to see inside\n", o->label);
            break;
        default:
            if (jp != NULL)
                moat_json_kv_str(&j, "label", o->label);
            else
                printf("  a PEM block \"%s\", which moat does not read\n", o->label);
        }
        if (rc != 0)
            return rc;
        if (jp != NULL)
            moat_json_obj_end(&j);
    }
    if (jp != NULL) {
        moat_json_arr_end(&j);
        moat_cli_json_end(&j);
    }
    return 0;
}

/* A name that is not a file here and reads as an endpoint. */
static int is_endpoint(const char *arg)
{
    struct stat sb;
    if (strncmp(arg, "https://", 8) == 0)
        return 1;
    if (strcmp(arg, "-") == 0 || stat(arg, &sb) == 0)
        return 0;
    return strchr(arg, ':') != NULL && strchr(arg, '/') == NULL;
}

int moat_cli_inspect(moat_cli_t *cli, int argc, char **argv)
{
    const char *pos[1], *pwfile = NULL, *timeout_s = NULL;
    char password[PASSWORD_MAX];
    int have_password = 0, rc;
    long timeout = 10;
    unsigned char *data = NULL;
    size_t len = 0;
    moat_pki_inspect_t in = {0};
    moat_doctor_peer_t peer = {0};
    moat_err_t err = {0};
    const moat__km_opt_t opts[] = {
        {"--password-file", &pwfile, NULL, NULL, NULL, 0},
        {"--timeout", &timeout_s, NULL, NULL, NULL, 0},
        {0},
    };
    const moat__km_cmd_t cmd = {
        inspect_usage,
        "Shows what a file holds -- certificates, a chain, certificate requests (CSR), CRLs, keys,\n"
        "PKCS#7 (.p7b/.p7c) and PKCS#12 (.p12/.pfx) bundles, as PEM or DER -- or what a TLS server\n"
        "sends. A private key is described by its algorithm and public-key fingerprint; its secret part\n"
        "is never printed. Nothing is written and no store is opened.\n\n"
        "  FILE                 the file to read; '-' reads standard input\n"
        "  HOST:PORT, https://HOST[:PORT]   connect and show the chain the server sends\n"
        "  --password-file FILE the password of an encrypted key or PKCS#12 (first line of FILE);\n"
        "                       without it, encrypted objects are listed but not opened\n"
        "  --timeout SECONDS    for HOST:PORT: how long to wait for the server (default 10)\n"
        "  --json               one object: {\"source\", \"objects\": [{\"type\", \"format\", ...}]}\n\n"
        "example: moat inspect www.pem\n"
        "example: moat inspect --json example.com:443\n",
        opts,
        pos,
        1,
        1};

    if ((rc = moat__km_parse(&cmd, argc, argv)) >= 0)
        return rc;
    if (timeout_s != NULL && moat_parse_long(timeout_s, 1, 300, &timeout) != 0)
        return moat_cli_usage(inspect_usage, "--timeout must be 1 to 300 seconds, not \"%s\"", timeout_s);
    if (is_endpoint(pos[0])) {
        if (pwfile != NULL)
            return moat_cli_usage(inspect_usage, "--password-file is for files, not for a server");
        if (moat_doctor_peer_chain(pos[0], (int)timeout * 1000, &peer, &err) != 0)
            return moat_cli_fail(cli, &err);
        if (moat_pki_inspect_certs(peer.chain, "TLS", &in, &err) != 0)
            goto fail;
        rc = print_all(cli, pos[0], &peer, &in, &err);
        goto out;
    }
    if (pwfile != NULL) {
        if (moat_cli_read_password(pwfile, NULL, 0, password, sizeof(password), &err) != 0)
            goto fail;
        have_password = 1;
    }
    if (moat__km_read_file(pos[0], MOAT_PKI_MAX_IMPORT_BYTES, &data, &len, &err) != 0)
        goto fail;
    rc = moat_pki_inspect(data, len, have_password ? password : NULL, have_password, &in, &err);
    moat_free_secret(&data, len);
    if (rc != 0) {
        moat_err_prefix(&err, "%s", strcmp(pos[0], "-") == 0 ? "standard input" : pos[0]);
        goto fail;
    }
    rc = print_all(cli, strcmp(pos[0], "-") == 0 ? "standard input" : pos[0], NULL, &in, &err);
out:
    OPENSSL_cleanse(password, sizeof(password));
    moat_pki_inspect_dispose(&in);
    sk_X509_pop_free(peer.chain, X509_free);
    if (rc != 0)
        return moat_cli_fail(cli, &err);
    return MOAT_EXIT_OK;
fail:
    rc = err.code;
    goto out;
}
